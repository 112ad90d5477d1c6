//! The name of every metric the hub exports: the one place each is written. Code that records a
//! metric names it with these constants; [`super::prometheus`] (and, on clustered nodes,
//! [`super::describe_bus_metrics`]) describes every one of them. docs/OPERATIONS.md lists them.

/// Gauge: open client connections.
pub(crate) const CONNECTIONS: &str = "herald_connections";
/// Gauge: live subscriptions.
pub(crate) const SUBSCRIPTIONS: &str = "herald_subscriptions";
/// Counter: updates committed.
pub(crate) const PUBLISHES_TOTAL: &str = "herald_publishes_total";
/// Counter: updates written to subscribers.
pub(crate) const DELIVERIES_TOTAL: &str = "herald_deliveries_total";
/// Counter: updates written to subscribers from history.
pub(crate) const REPLAYED_TOTAL: &str = "herald_replayed_total";
/// Counter, label `action` (`catch_up`, `close`): subscribers that fell behind.
pub(crate) const LAGGING_SUBSCRIBERS_TOTAL: &str = "herald_lagging_subscribers_total";
/// Counter: pushes that found a subscriber's queue full.
pub(crate) const QUEUE_OVERFLOWS_TOTAL: &str = "herald_queue_overflows_total";
/// Counter: updates queued for subscribers by the fan-out.
pub(crate) const FANOUT_QUEUED_TOTAL: &str = "herald_fanout_queued_total";
/// Counter: bytes of event streams handed to subscriber connections.
pub(crate) const DELIVERED_BYTES_TOTAL: &str = "herald_delivered_bytes_total";
/// Counter, label `limit`: connections and requests refused by a limit.
pub(crate) const LIMIT_REJECTIONS_TOTAL: &str = "herald_limit_rejections_total";
/// Histogram: time to commit one batch of updates.
pub(crate) const STORE_COMMIT_SECONDS: &str = "herald_store_commit_seconds";
/// Counter: `--subscriptions` events dropped because too many were waiting.
pub(crate) const SUBSCRIPTION_EVENTS_DROPPED_TOTAL: &str =
    "herald_subscription_events_dropped_total";
/// Counter: `--subscriptions` joins not written because the subscriber left first.
pub(crate) const SUBSCRIPTION_EVENTS_COALESCED_TOTAL: &str =
    "herald_subscription_events_coalesced_total";
/// Counter: connections closed by `--write-timeout`.
pub(crate) const WRITE_TIMEOUTS_TOTAL: &str = "herald_write_timeouts_total";
/// Counter (clustered nodes only): times the cluster feed found updates trimmed before this node
/// could read them.
pub(crate) const BUS_GAPS_TOTAL: &str = "herald_bus_gaps_total";
/// Gauge (clustered nodes only): age of the newest update the cluster feed delivered.
pub(crate) const BUS_LAG_SECONDS: &str = "herald_bus_lag_seconds";

/// Every metric (those in [`BUS`] only on clustered nodes).
#[cfg(test)]
pub(crate) const ALL: &[&str] = &[
    CONNECTIONS,
    SUBSCRIPTIONS,
    PUBLISHES_TOTAL,
    DELIVERIES_TOTAL,
    REPLAYED_TOTAL,
    LAGGING_SUBSCRIBERS_TOTAL,
    QUEUE_OVERFLOWS_TOTAL,
    FANOUT_QUEUED_TOTAL,
    DELIVERED_BYTES_TOTAL,
    LIMIT_REJECTIONS_TOTAL,
    STORE_COMMIT_SECONDS,
    SUBSCRIPTION_EVENTS_DROPPED_TOTAL,
    SUBSCRIPTION_EVENTS_COALESCED_TOTAL,
    WRITE_TIMEOUTS_TOTAL,
    BUS_GAPS_TOTAL,
    BUS_LAG_SECONDS,
];

/// The metrics only a clustered node has (described when its feed starts).
#[cfg(test)]
pub(crate) const BUS: &[&str] = &[BUS_GAPS_TOTAL, BUS_LAG_SECONDS];

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_described_and_every_described_metric_is_listed() {
        let handle = super::super::prometheus();
        super::super::describe_bus_metrics();
        let text = handle.render();
        for name in ALL {
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} is not described:\n{text}"
            );
        }
        for described in text.lines().filter_map(|line| line.strip_prefix("# HELP ")) {
            let name = described.split(' ').next().unwrap();
            assert!(ALL.contains(&name), "{name} is described but not in ALL");
        }
        for name in BUS {
            assert!(ALL.contains(name), "{name} is not in ALL");
        }
    }

    /// The names are written here and nowhere else in the crate's source.
    #[test]
    fn no_other_source_file_spells_a_metric_name() {
        fn visit(dir: &std::path::Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    visit(&path, found);
                } else if path.extension().is_some_and(|ext| ext == "rs")
                    && !path.ends_with("telemetry/names.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap();
                    if text.contains("\"herald_") {
                        found.push(path.display().to_string());
                    }
                }
            }
        }
        let mut found = Vec::new();
        visit(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        assert!(found.is_empty(), "metric names spelled out in {found:?}");
    }
}
