//! Metrics recorder (Prometheus) and tracing set-up, installed once per process.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::LogFormat;

/// Commit latency buckets, in seconds: from a memory append to a slow disk fsync.
const COMMIT_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// The process-wide Prometheus handle (installed on first use).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("herald_store_commit_seconds".into()),
                    COMMIT_BUCKETS,
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; ours then renders nothing new.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds histogram samples into buckets every few seconds. The recorder keeps every sample until
/// then; without this, a hub nobody scrapes would keep one sample per commit forever.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("herald-metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the metrics upkeep thread");
    }
}

/// Names and explains every metric, and makes each appear at zero before its first event.
fn describe() {
    metrics::describe_gauge!("herald_connections", "Open client connections");
    metrics::describe_gauge!("herald_subscriptions", "Live subscriptions");
    metrics::describe_counter!("herald_publishes_total", "Updates committed");
    metrics::describe_counter!("herald_deliveries_total", "Updates written to subscribers");
    metrics::describe_counter!(
        "herald_replayed_total",
        "Updates written to subscribers from history"
    );
    metrics::describe_counter!(
        "herald_lagging_subscribers_total",
        "Subscribers that fell behind, by what was done (catch_up from history, or close)"
    );
    metrics::describe_counter!(
        "herald_queue_overflows_total",
        "Queue overflows that made a subscriber lag"
    );
    metrics::describe_counter!(
        "herald_fanout_queued_total",
        "Updates queued for subscribers by the fan-out (one per subscriber and update)"
    );
    metrics::describe_counter!(
        "herald_delivered_bytes_total",
        "Bytes of event streams handed to subscriber connections (events, replay, heartbeats)"
    );
    metrics::describe_counter!(
        "herald_limit_rejections_total",
        "Connections and requests refused by a limit, by limit"
    );
    metrics::describe_histogram!(
        "herald_store_commit_seconds",
        "Time to commit one batch of updates"
    );
    metrics::gauge!("herald_connections").set(0.0);
    metrics::gauge!("herald_subscriptions").set(0.0);
    metrics::counter!("herald_publishes_total").absolute(0);
    metrics::counter!("herald_deliveries_total").absolute(0);
    metrics::counter!("herald_replayed_total").absolute(0);
    metrics::counter!("herald_queue_overflows_total").absolute(0);
    metrics::counter!("herald_fanout_queued_total").absolute(0);
    metrics::counter!("herald_delivered_bytes_total").absolute(0);
    for limit in [
        "connections",
        "connections_per_ip",
        "topics_per_subscription",
        "topic_length",
        "id_length",
        "publish_rate",
        "body",
    ] {
        metrics::counter!("herald_limit_rejections_total", "limit" => limit).absolute(0);
    }
    for action in ["catch_up", "close"] {
        metrics::counter!("herald_lagging_subscribers_total", "action" => action).absolute(0);
    }
    metrics::describe_counter!(
        "herald_subscription_events_dropped_total",
        "Subscription events (--subscriptions) dropped because too many were waiting to be written"
    );
    metrics::describe_counter!(
        "herald_subscription_events_coalesced_total",
        "Subscription events not written because the subscriber left before its join was written"
    );
    metrics::counter!("herald_subscription_events_dropped_total").absolute(0);
    metrics::counter!("herald_subscription_events_coalesced_total").absolute(0);
    // Registered without a sample, so `_count 0` and the buckets show before the first commit.
    let _ = metrics::histogram!("herald_store_commit_seconds");
}

/// Names the cluster feed's metrics and makes them appear at zero (only on clustered nodes).
pub fn describe_bus_metrics() {
    metrics::describe_counter!(
        "herald_bus_gaps_total",
        "Times the cluster feed found updates trimmed before this node could read them"
    );
    metrics::describe_gauge!(
        "herald_bus_lag_seconds",
        "Age of the newest update the cluster feed delivered (now minus its stream time)"
    );
    metrics::counter!("herald_bus_gaps_total").absolute(0);
    metrics::gauge!("herald_bus_lag_seconds").set(0.0);
}

/// Logs to stderr, as text or JSON; `HERALD_LOG` (or `RUST_LOG`) filters, default `info`.
/// Colours only when stderr is a terminal (never in files, pipes or the journal).
pub fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = std::env::var("HERALD_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
