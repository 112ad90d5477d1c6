//! Metrics recorder (Prometheus) and tracing set-up, installed once per process.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::LogFormat;

pub(crate) mod names;

/// Commit latency buckets, in seconds: from a memory append to a slow disk fsync.
const COMMIT_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// The process-wide Prometheus handle (installed on first use).
pub(crate) fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(names::STORE_COMMIT_SECONDS.into()),
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
    metrics::describe_gauge!(names::CONNECTIONS, "Open client connections");
    metrics::describe_gauge!(names::SUBSCRIPTIONS, "Live subscriptions");
    metrics::describe_counter!(names::PUBLISHES_TOTAL, "Updates committed");
    metrics::describe_counter!(names::DELIVERIES_TOTAL, "Updates written to subscribers");
    metrics::describe_counter!(
        names::REPLAYED_TOTAL,
        "Updates written to subscribers from history"
    );
    metrics::describe_counter!(
        names::LAGGING_SUBSCRIBERS_TOTAL,
        "Subscribers that fell behind, by what was done (catch_up from history, or close)"
    );
    metrics::describe_counter!(
        names::QUEUE_OVERFLOWS_TOTAL,
        "Queue overflows that made a subscriber lag"
    );
    metrics::describe_counter!(
        names::FANOUT_QUEUED_TOTAL,
        "Updates queued for subscribers by the fan-out (one per subscriber and update)"
    );
    metrics::describe_counter!(
        names::DELIVERED_BYTES_TOTAL,
        "Bytes of event streams handed to subscriber connections (events, replay, heartbeats)"
    );
    metrics::describe_counter!(
        names::LIMIT_REJECTIONS_TOTAL,
        "Connections and requests refused by a limit, by limit"
    );
    metrics::describe_histogram!(
        names::STORE_COMMIT_SECONDS,
        "Time to commit one batch of updates"
    );
    metrics::gauge!(names::CONNECTIONS).set(0.0);
    metrics::gauge!(names::SUBSCRIPTIONS).set(0.0);
    metrics::counter!(names::PUBLISHES_TOTAL).absolute(0);
    metrics::counter!(names::DELIVERIES_TOTAL).absolute(0);
    metrics::counter!(names::REPLAYED_TOTAL).absolute(0);
    metrics::counter!(names::QUEUE_OVERFLOWS_TOTAL).absolute(0);
    metrics::counter!(names::FANOUT_QUEUED_TOTAL).absolute(0);
    metrics::counter!(names::DELIVERED_BYTES_TOTAL).absolute(0);
    for limit in [
        "connections",
        "connections_per_ip",
        "topics_per_subscription",
        "topic_length",
        "id_length",
        "template_complexity",
        "publish_rate",
        "body",
    ] {
        metrics::counter!(names::LIMIT_REJECTIONS_TOTAL, "limit" => limit).absolute(0);
    }
    for action in ["catch_up", "close"] {
        metrics::counter!(names::LAGGING_SUBSCRIBERS_TOTAL, "action" => action).absolute(0);
    }
    metrics::describe_counter!(
        names::SUBSCRIPTION_EVENTS_DROPPED_TOTAL,
        "Subscription events (--subscriptions) dropped because too many were waiting to be written"
    );
    metrics::describe_counter!(
        names::SUBSCRIPTION_EVENTS_COALESCED_TOTAL,
        "Subscription events not written because the subscriber left before its join was written"
    );
    metrics::describe_counter!(
        names::WRITE_TIMEOUTS_TOTAL,
        "Connections closed because a write waited longer than --write-timeout (a client that stopped reading)"
    );
    metrics::counter!(names::WRITE_TIMEOUTS_TOTAL).absolute(0);
    metrics::counter!(names::SUBSCRIPTION_EVENTS_DROPPED_TOTAL).absolute(0);
    metrics::counter!(names::SUBSCRIPTION_EVENTS_COALESCED_TOTAL).absolute(0);
    // Registered without a sample, so `_count 0` and the buckets show before the first commit.
    let _ = metrics::histogram!(names::STORE_COMMIT_SECONDS);
}

/// Names the cluster feed's metrics and makes them appear at zero (only on clustered nodes).
pub(crate) fn describe_bus_metrics() {
    metrics::describe_counter!(
        names::BUS_GAPS_TOTAL,
        "Times the cluster feed found updates trimmed before this node could read them"
    );
    metrics::describe_gauge!(
        names::BUS_LAG_SECONDS,
        "Age of the newest update the cluster feed delivered (now minus its stream time)"
    );
    metrics::counter!(names::BUS_GAPS_TOTAL).absolute(0);
    metrics::gauge!(names::BUS_LAG_SECONDS).set(0.0);
}

/// Logs to stderr, as text or JSON; `HERALD_LOG` (or `RUST_LOG`) filters, default `info`.
/// Colours only when stderr is a terminal (never in files, pipes or the journal).
pub(crate) fn init_tracing(format: LogFormat) {
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
