//! The results of a run: what the lead and the shards counted, merged into the report that
//! `herald bench` prints (a table, or one JSON object with `--json`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use super::measure::{BUCKETS, ShardResult, TopicResult, percentile};
use super::{BenchArgs, Mode, Plan, Server};

/// The numbers `--json` prints.
#[derive(Debug, Serialize)]
pub(super) struct Report {
    hub: String,
    server: Server,
    mode: Mode,
    subscribers: usize,
    topics: usize,
    rate: f64,
    duration_secs: f64,
    hold_secs: f64,
    payload_bytes: usize,
    processes: usize,
    connections: usize,
    connect_failures: usize,
    disconnects: usize,
    connect_secs: f64,
    published: u64,
    publish_errors: u64,
    publish_rate: f64,
    expected: u64,
    delivered: u64,
    deliveries_per_sec: f64,
    loss: u64,
    loss_ratio: f64,
    duplicates: u64,
    latency_ms: Latency,
    rss_before_kib: Option<u64>,
    rss_after_kib: Option<u64>,
    rss_per_connection_bytes: Option<f64>,
    rss_drained_kib: Option<u64>,
    rss_drained_per_connection_bytes: Option<f64>,
    server_cpu_secs: Option<f64>,
    server_cpu_us_per_delivery: Option<f64>,
    server_write_syscalls: Option<u64>,
    server_writes_per_delivery: Option<f64>,
    first_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

/// Publishing progress, shared with the publish tasks.
#[derive(Default)]
pub(super) struct Published {
    pub(super) sent: AtomicU64,
    pub(super) ok: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) per_topic: Vec<AtomicU64>,
    pub(super) first_error: Mutex<Option<(Option<u16>, String)>>,
}

/// What the lead measured itself.
pub(super) struct Summary {
    pub(super) processes: usize,
    pub(super) connect_secs: f64,
    pub(super) publish_secs: f64,
    pub(super) publish_start_us: u64,
    pub(super) rss_before: Option<u64>,
    pub(super) rss_after: Option<u64>,
    /// After the drain, the connections still open.
    pub(super) rss_drained: Option<u64>,
    /// The server's CPU time from the first publish to the end of the drain.
    pub(super) cpu_secs: Option<f64>,
    /// The server's write system calls over the same span.
    pub(super) write_syscalls: Option<u64>,
}

pub(super) fn summarize(
    plan: &Plan,
    args: &BenchArgs,
    results: &[ShardResult],
    published: &Published,
    summary: Summary,
) -> Report {
    let mut topics = vec![TopicResult::default(); plan.topics.len()];
    let mut buckets = vec![0u64; BUCKETS];
    let mut max_us = 0;
    let mut last_delivery = 0;
    let (mut connections, mut failures, mut disconnects) = (0, 0, 0);
    let mut first_error = None;
    for result in results {
        connections += result.connected;
        failures += result.failed;
        disconnects += result.disconnected;
        last_delivery = last_delivery.max(result.last_delivery_us);
        max_us = max_us.max(result.latency_max_us);
        for (total, part) in topics.iter_mut().zip(&result.topics) {
            total.subscribers += part.subscribers;
            total.unique += part.unique;
            total.duplicates += part.duplicates;
        }
        for (index, count) in &result.latency {
            if let Some(bucket) = buckets.get_mut(*index) {
                *bucket += count;
            }
        }
        if first_error.is_none() {
            first_error.clone_from(&result.first_error);
        }
    }
    let publish_error = published
        .first_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .map(|(_, error)| format!("publish: {error}"));
    let expected: u64 = topics
        .iter()
        .zip(&published.per_topic)
        .map(|(topic, count)| topic.subscribers * count.load(Relaxed))
        .sum();
    let delivered: u64 = topics.iter().map(|topic| topic.unique).sum();
    let duplicates = topics.iter().map(|topic| topic.duplicates).sum();
    let total: u64 = buckets.iter().sum();
    let loss = expected.saturating_sub(delivered);
    let delivery_secs =
        (last_delivery.saturating_sub(summary.publish_start_us) as f64 / 1e6).max(1e-3);
    let millis = |micros: u64| (micros as f64) / 1000.0;
    let published_ok = published.ok.load(Relaxed);
    Report {
        hub: plan.hub.clone(),
        server: plan.server,
        mode: plan.mode,
        subscribers: args.subscribers,
        topics: plan.topics.len(),
        rate: plan.rate,
        duration_secs: plan.duration.as_secs_f64(),
        hold_secs: plan.hold.as_secs_f64(),
        payload_bytes: plan.payload,
        processes: summary.processes,
        connections,
        connect_failures: failures,
        disconnects,
        connect_secs: summary.connect_secs,
        published: published_ok,
        publish_errors: published.errors.load(Relaxed),
        publish_rate: published_ok as f64 / summary.publish_secs.max(1e-3),
        expected,
        delivered,
        deliveries_per_sec: if delivered == 0 {
            0.0
        } else {
            delivered as f64 / delivery_secs
        },
        loss,
        loss_ratio: if expected == 0 {
            0.0
        } else {
            loss as f64 / expected as f64
        },
        duplicates,
        latency_ms: Latency {
            p50: millis(percentile(&buckets, total, 0.50, max_us)),
            p90: millis(percentile(&buckets, total, 0.90, max_us)),
            p99: millis(percentile(&buckets, total, 0.99, max_us)),
            max: millis(max_us),
        },
        rss_before_kib: summary.rss_before,
        rss_after_kib: summary.rss_after,
        rss_drained_kib: summary.rss_drained,
        rss_drained_per_connection_bytes: match (summary.rss_before, summary.rss_drained) {
            (Some(before), Some(drained)) if connections > 0 => {
                Some((drained as f64 - before as f64) * 1024.0 / connections as f64)
            }
            _ => None,
        },
        rss_per_connection_bytes: match (summary.rss_before, summary.rss_after) {
            (Some(before), Some(after)) if connections > 0 => {
                Some((after as f64 - before as f64) * 1024.0 / connections as f64)
            }
            _ => None,
        },
        server_cpu_secs: summary.cpu_secs,
        server_cpu_us_per_delivery: summary
            .cpu_secs
            .filter(|_| delivered > 0)
            .map(|secs| secs * 1e6 / delivered as f64),
        server_write_syscalls: summary.write_syscalls,
        server_writes_per_delivery: summary
            .write_syscalls
            .filter(|_| delivered > 0)
            .map(|writes| writes as f64 / delivered as f64),
        first_error: publish_error.or(first_error),
    }
}

/// `1 topic`, `2 topics`.
fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

pub(super) fn print_report(report: &Report) {
    println!(
        "herald bench: {} on {} of {}{}, {} updates/s for {:.1}s, {}-byte payloads ({} process{})",
        plural(report.subscribers, "subscriber"),
        plural(report.topics, "topic"),
        report.server.name(),
        match report.mode {
            Mode::H1 => String::new(),
            mode => format!(" over {}", mode.name()),
        },
        report.rate,
        report.duration_secs,
        report.payload_bytes,
        report.processes,
        if report.processes == 1 { "" } else { "es" },
    );
    println!(
        "  connections  {} established, {} failed, {} dropped ({:.2}s to connect{})",
        report.connections,
        report.connect_failures,
        report.disconnects,
        report.connect_secs,
        if report.hold_secs > 0.0 {
            format!(", then held {:.0}s", report.hold_secs)
        } else {
            String::new()
        }
    );
    println!(
        "  published    {} ({:.1}/s), {} errors",
        report.published, report.publish_rate, report.publish_errors
    );
    println!(
        "  deliveries   {} of {} expected ({:.0}/s), loss {} ({:.3}%), duplicates {}",
        report.delivered,
        report.expected,
        report.deliveries_per_sec,
        report.loss,
        report.loss_ratio * 100.0,
        report.duplicates
    );
    println!(
        "  latency      p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        report.latency_ms.p50, report.latency_ms.p90, report.latency_ms.p99, report.latency_ms.max
    );
    if let (Some(before), Some(after), Some(per)) = (
        report.rss_before_kib,
        report.rss_after_kib,
        report.rss_per_connection_bytes,
    ) {
        println!(
            "  hub memory   RSS {:.1} MiB -> {:.1} MiB: {:.1} KiB per connection",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            per / 1024.0
        );
    }
    if let (Some(drained), Some(per)) = (
        report.rss_drained_kib,
        report.rss_drained_per_connection_bytes,
    ) {
        println!(
            "  drained      RSS {:.1} MiB once the deliveries drained: {:.1} KiB per connection",
            drained as f64 / 1024.0,
            per / 1024.0
        );
    }

    if let Some(secs) = report.server_cpu_secs {
        let per_delivery = report
            .server_cpu_us_per_delivery
            .map(|micros| format!(": {micros:.2} µs per delivery"))
            .unwrap_or_default();
        println!("  hub CPU      {secs:.2} s (user + kernel){per_delivery}");
    }
    if let (Some(writes), Some(per)) = (
        report.server_write_syscalls,
        report.server_writes_per_delivery,
    ) {
        println!("  hub writes   {writes} write calls: {per:.3} per delivery");
    }
    if let Some(error) = &report.first_error {
        println!("  first error  {error}");
    }
}
