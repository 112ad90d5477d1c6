//! `herald bench`: a load generator for a running hub.
//!
//! Opens N subscriptions spread over K topics, publishes R updates a second for a duration, and
//! reports deliveries per second, loss, duplicates, end-to-end latency percentiles and (with
//! `--pid`) the hub's resident memory per connection and CPU time per delivery.
//!
//! The subscriber side is built to cost as little CPU as possible, since it shares the machine
//! with the hub: raw HTTP/1.1 over a [`TcpStream`], a small chunked-transfer decoder, the
//! `herald-sse` parser, and one large read buffer per worker thread (never one per connection).
//! Each payload carries its per-topic sequence number and its send time, so every subscriber
//! counts what it got exactly once (a sliding bitmap spots duplicates) and measures latency.
//! Source addresses are spread over `127.0.0.2-251` when the hub is on loopback, which keeps the
//! ephemeral ports of any one address far from exhaustion; past one process's open-file limit the
//! subscriptions are spread over child processes (`herald bench --worker`, driven over
//! stdin/stdout with JSON lines). Publishing uses `herald-client`'s `Publisher`; with `--server
//! nchan`, the same load goes to nginx+nchan instead (plain `POST /pub/<topic>`), for
//! side-by-side figures.
//!
//! This file holds the flags, the plan and the lead (connect, sample memory, publish, drain,
//! report); `measure` the histogram and exactly-once counting; `wire` one subscription on the
//! socket; `workers` the child processes; `target` what differs between Herald and nchan;
//! `procfs` what `/proc` says about the server.

use std::io::{IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use tokio::sync::Semaphore;

use super::config_error;
use super::publish::{DEFAULT_HUB, PublisherAuth};
use crate::config::open_file_limit;

mod measure;
mod procfs;
mod target;
mod wire;
mod workers;

use measure::{BUCKETS, ShardResult, TopicResult, now_micros, percentile};
use procfs::{clock_ticks_per_second, cpu_ticks, rss_kib};
pub use target::Server;
use target::Sink;
use wire::LocalShard;
use workers::{RemoteShard, Shard, worker};

/// Connections opened at the same time (more would overflow the hub's accept backlog).
const CONNECT_CONCURRENCY: usize = 256;
/// How long one connection may take to be established and answered.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long to wait for the last deliveries once publishing stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Deliveries idle this long after publishing stops mean nothing more is coming.
const DRAIN_QUIET: Duration = Duration::from_secs(2);
/// One read buffer per thread, shared by every connection it serves.
const READ_BUFFER: usize = 256 * 1024;
/// Source addresses used on loopback: 127.0.0.2 ..= 127.0.0.(1 + SOURCE_ADDRESSES).
const SOURCE_ADDRESSES: usize = 250;
/// Descriptors a process keeps for itself (stdio, the runtime, the publisher's pool).
const RESERVED_FDS: usize = 256;

/// `herald bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The hub: its base URL, or the full hub URL (with --server nchan: the base URL under
    /// which nginx serves /sub/<topic> and /pub/<topic>)
    #[arg(long, env = "HERALD_HUB", default_value = DEFAULT_HUB)]
    pub hub: String,
    /// The kind of server --hub is
    #[arg(long, value_enum, default_value_t = Server::Herald, value_name = "KIND")]
    pub server: Server,
    /// Subscriptions to open
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub subscribers: usize,
    /// Topics the subscriptions are spread over (round robin)
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub topics: usize,
    /// Updates published per second, over all topics
    #[arg(long, default_value_t = 100.0, value_name = "R")]
    pub rate: f64,
    /// How long to publish, e.g. `30s`
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub duration: String,
    /// Once connected, hold the connections idle this long before sampling the server's memory
    /// and publishing, e.g. `20s`
    #[arg(long, default_value = "0s", value_name = "DURATION")]
    pub hold: String,
    /// Bytes of data per update (at least the sequence number and timestamp)
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    pub payload: usize,
    /// The server's process id: report its memory (VmRSS) per connection, and its CPU time
    /// (utime + stime, every thread) from the first publish to the end of the drain, per
    /// delivery
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Print one JSON object with the results
    #[arg(long)]
    pub json: bool,
    /// Topics are PREFIX/0 .. PREFIX/K-1 (nchan: PREFIX-0 .. PREFIX-K-1) [default:
    /// herald-bench/<random>, nchan: herald-bench-<random>]. The updates are real: they stay in
    /// the hub's history, and their topics in `GET /topics`, until --history-size or
    /// --history-max-age pushes them out. Bench a hub with `--store memory:` (or a data
    /// directory of its own) to keep them out of real history; a fixed prefix such as
    /// `--topic-prefix bench` keeps them recognisable in /topics.
    #[arg(long, value_name = "PREFIX")]
    pub topic_prefix: Option<String>,
    /// Publishes in flight at once
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub concurrency: usize,
    /// Subscriptions per process; above it, child processes hold them [default: from the
    /// open-file limit, at most 15000]
    #[arg(long, value_name = "N")]
    pub per_process: Option<usize>,
    #[command(flatten)]
    pub auth: PublisherAuth,
    /// Internal: run as a child process holding subscriptions
    #[arg(long, hide = true)]
    pub worker: bool,
    /// Internal: the index of a worker's first subscription
    #[arg(long, hide = true, default_value_t = 0)]
    pub first: usize,
}

/// Runs the benchmark (or, with `--worker`, one child's share of it).
pub fn run(args: &BenchArgs) -> ExitCode {
    let plan = match Plan::new(args) {
        Ok(plan) => plan,
        Err(error) => return config_error(error),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("herald: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    if args.worker {
        return runtime.block_on(worker(plan, args.first, args.subscribers));
    }
    match runtime.block_on(lead(plan, args)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("\nherald: bench failed: {error}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The plan: what every connection needs to know.

/// Everything fixed before the first connection.
#[derive(Debug, Clone)]
struct Plan {
    hub: String,
    server: Server,
    /// Where the lead publishes (see [`Server::publish_base`]).
    publish_base: String,
    addr: SocketAddr,
    /// Bind each connection to one of 127.0.0.2..=251 first.
    spread_sources: bool,
    /// `GET <path>?…topic=` up to the topic (already percent-encoded).
    request_prefix: String,
    /// `Host:` and the other request headers, ending with the blank line.
    request_suffix: String,
    topics: Vec<String>,
    prefix: String,
    token: Option<String>,
    duration: Duration,
    hold: Duration,
    rate: f64,
    payload: usize,
    concurrency: usize,
    per_process: usize,
}

impl Plan {
    fn new(args: &BenchArgs) -> Result<Plan, String> {
        if args.subscribers == 0 && !args.worker {
            return Err("--subscribers must be at least 1".into());
        }
        if args.topics == 0 {
            return Err("--topics must be at least 1".into());
        }
        if !(args.rate.is_finite() && args.rate > 0.0) {
            return Err("--rate must be a positive number of updates per second".into());
        }
        if args.concurrency == 0 {
            return Err("--concurrency must be at least 1".into());
        }
        let duration = humantime::parse_duration(&args.duration)
            .map_err(|error| format!("invalid --duration: {error}"))?;
        let hold = humantime::parse_duration(&args.hold)
            .map_err(|error| format!("invalid --hold: {error}"))?;
        let server = args.server;
        let url = server.endpoint(&args.hub)?;
        if url.scheme() != "http" {
            return Err("herald bench speaks plain http:// only".into());
        }
        let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let addr = resolve(&host, port)?;
        let prefix = args
            .topic_prefix
            .clone()
            .unwrap_or_else(|| server.default_prefix());
        server.check_prefix(&prefix)?;
        let topics = (0..args.topics).map(|k| server.topic(&prefix, k)).collect();
        let token = match server {
            Server::Herald => args.auth.resolve(&["*"], &["*"])?,
            Server::Nchan => None,
        };
        let request_prefix = format!("GET {}", server.subscribe_target(&url));
        let host_header = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        let mut request_suffix =
            format!(" HTTP/1.1\r\nHost: {host_header}\r\nAccept: text/event-stream\r\n");
        if let Some(token) = &token {
            request_suffix.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request_suffix.push_str("\r\n");
        let per_process = match args.per_process {
            Some(0) => return Err("--per-process must be at least 1".into()),
            Some(n) => n,
            None => open_file_limit()
                .map(|limit| limit.saturating_sub(RESERVED_FDS).clamp(100, 15_000))
                .unwrap_or(15_000),
        };
        Ok(Plan {
            hub: args.hub.clone(),
            server,
            publish_base: server.publish_base(&args.hub, &url),
            addr,
            spread_sources: matches!(addr.ip(), IpAddr::V4(ip) if ip.is_loopback()),
            request_prefix,
            request_suffix,
            topics,
            prefix,
            token,
            duration,
            hold,
            rate: args.rate,
            payload: args.payload,
            concurrency: args.concurrency,
            per_process,
        })
    }

    /// The raw request for subscription `index`.
    fn request(&self, index: usize) -> String {
        let topic = self.server.encode_topic(self.topic_of(index));
        format!("{}{topic}{}", self.request_prefix, self.request_suffix)
    }

    fn topic_index(&self, index: usize) -> usize {
        index % self.topics.len()
    }

    fn topic_of(&self, index: usize) -> &str {
        self.topics
            .get(self.topic_index(index))
            .map(String::as_str)
            .unwrap_or_default()
    }
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve {host}: {error}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {host}"))
}

// ---------------------------------------------------------------------------------------------
// The lead: connect, measure memory, publish, drain, report.

/// The numbers `--json` prints.
#[derive(Debug, Serialize)]
struct Report {
    hub: String,
    server: Server,
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
    server_cpu_secs: Option<f64>,
    server_cpu_us_per_delivery: Option<f64>,
    first_error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

/// Publishing progress, shared with the publish tasks.
#[derive(Default)]
struct Published {
    sent: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    per_topic: Vec<AtomicU64>,
    first_error: Mutex<Option<(Option<u16>, String)>>,
}

/// Progress on stderr: one line rewritten in place on a terminal, a line a second otherwise.
struct Progress {
    terminal: bool,
    dirty: bool,
}

impl Progress {
    fn show(&mut self, line: &str) {
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(stderr, "\r\x1b[2K{line}");
            self.dirty = true;
        } else {
            let _ = writeln!(stderr, "{line}");
        }
        let _ = stderr.flush();
    }

    fn done(&mut self) {
        if self.dirty {
            eprintln!();
            self.dirty = false;
        }
    }
}

async fn lead(plan: Plan, args: &BenchArgs) -> Result<ExitCode, String> {
    let plan = Arc::new(plan);
    let mut progress = Progress {
        terminal: std::io::stderr().is_terminal(),
        dirty: false,
    };
    let subscribers = args.subscribers;
    let rss_before = args.pid.and_then(rss_kib);
    if args.pid.is_some() && rss_before.is_none() {
        return Err(format!(
            "cannot read /proc/{}/status: is --pid the hub's process id?",
            args.pid.unwrap_or_default()
        ));
    }
    let clock_ticks = match args.pid {
        Some(_) => Some(clock_ticks_per_second().ok_or(
            "cannot read the clock tick rate (AT_CLKTCK in /proc/self/auxv) to measure CPU time",
        )?),
        None => None,
    };

    // Connect.
    let connect_start = Instant::now();
    let mut shards = Vec::new();
    if subscribers <= plan.per_process {
        shards.push(Shard::Local(LocalShard::start(&plan, 0, subscribers)));
    } else {
        let mut first = 0;
        while first < subscribers {
            let count = plan.per_process.min(subscribers - first);
            shards.push(Shard::Remote(RemoteShard::spawn(&plan, first, count)?));
            first += count;
        }
    }
    let processes =
        shards.len() + usize::from(shards.iter().any(|shard| matches!(shard, Shard::Remote(_))));
    let connect_deadline = connect_start
        + CONNECT_TIMEOUT
        + Duration::from_millis(u64::try_from(subscribers).unwrap_or(u64::MAX) / 2);
    let mut last_shown = Instant::now();
    loop {
        let connected: usize = shards.iter().map(Shard::connected).sum();
        let failed: usize = shards.iter().map(Shard::failed).sum();
        if shards.iter().all(Shard::ready) || Instant::now() > connect_deadline {
            break;
        }
        if last_shown.elapsed() >= Duration::from_secs(1) {
            progress.show(&format!(
                "herald bench: connecting {connected}/{subscribers} ({failed} failed)"
            ));
            last_shown = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_secs = connect_start.elapsed().as_secs_f64();
    let connected: usize = shards.iter().map(Shard::connected).sum();
    if connected == 0 {
        progress.done();
        let mut error = None;
        for shard in shards {
            error = error.or(shard.finish().await.first_error);
        }
        return Err(format!(
            "no subscription could be opened: {}",
            error.unwrap_or_else(|| "unknown error".into())
        ));
    }
    // Hold the connections idle if asked, and let the hub settle its allocations before
    // sampling its memory.
    let hold_start = Instant::now();
    while let Some(left) = plan
        .hold
        .checked_sub(hold_start.elapsed())
        .filter(|left| !left.is_zero())
    {
        let connected: usize = shards.iter().map(Shard::connected).sum();
        progress.show(&format!(
            "herald bench: holding {connected} connections, {:.0}s left",
            left.as_secs_f64()
        ));
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_after = args.pid.and_then(rss_kib);

    // Publish.
    let published = Arc::new(Published {
        per_topic: (0..plan.topics.len()).map(|_| AtomicU64::new(0)).collect(),
        ..Published::default()
    });
    let client = herald_client::reqwest::Client::builder()
        .pool_max_idle_per_host(plan.concurrency)
        .build()
        .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
    let sink = Arc::new(Sink::new(
        plan.server,
        &plan.publish_base,
        plan.token.as_deref(),
        client,
    )?);
    let in_flight = Arc::new(Semaphore::new(plan.concurrency));
    let total = (plan.rate * plan.duration.as_secs_f64()).round().max(1.0) as u64;
    let cpu_before = args.pid.and_then(cpu_ticks);
    let publish_start = Instant::now();
    let publish_start_us = now_micros();
    let mut last_shown = publish_start;
    let mut last_delivered = 0u64;
    let mut seq = 0u64;
    let topics = plan.topics.len() as u64;
    while seq < total {
        let elapsed = publish_start.elapsed();
        let due = ((elapsed.as_secs_f64() * plan.rate) as u64 + 1).min(total);
        while seq < due {
            let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                break;
            };
            let topic_index = (seq % topics) as usize;
            let n = seq / topics;
            let topic = plan.topics.get(topic_index).cloned().unwrap_or_default();
            let data = payload(n, now_micros(), plan.payload);
            let sink = Arc::clone(&sink);
            let published = Arc::clone(&published);
            published.sent.fetch_add(1, Relaxed);
            tokio::spawn(async move {
                match sink.publish(topic, data).await {
                    Ok(_) => {
                        published.ok.fetch_add(1, Relaxed);
                        if let Some(count) = published.per_topic.get(topic_index) {
                            count.fetch_add(1, Relaxed);
                        }
                    }
                    Err(failure) => {
                        published.errors.fetch_add(1, Relaxed);
                        let mut first = published
                            .first_error
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        if first.is_none() {
                            *first = Some(failure);
                        }
                    }
                }
                drop(permit);
            });
            seq += 1;
        }
        let refused = published
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some((Some(401 | 403), error)) = refused {
            progress.done();
            for shard in shards {
                shard.finish().await;
            }
            return Err(format!(
                "publishing is refused: {error} ({})",
                plan.server.refused_hint()
            ));
        }
        if last_shown.elapsed() >= Duration::from_secs(1) {
            let delivered: u64 = shards.iter().map(Shard::delivered).sum();
            let secs = last_shown.elapsed().as_secs_f64();
            progress.show(&format!(
                "herald bench: {:>4.0}s/{:.0}s  connections {connected}  published {}  delivered {delivered} ({:.0}/s)  errors {}",
                publish_start.elapsed().as_secs_f64(),
                plan.duration.as_secs_f64(),
                published.ok.load(Relaxed),
                (delivered - last_delivered.min(delivered)) as f64 / secs,
                published.errors.load(Relaxed),
            ));
            last_delivered = delivered;
            last_shown = Instant::now();
        }
        // Sleep until the next update is due (at most 50 ms, so progress stays fresh).
        let next_due = Duration::from_secs_f64((seq as f64) / plan.rate);
        let wait = next_due
            .saturating_sub(publish_start.elapsed())
            .min(Duration::from_millis(50));
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
    // Wait for the publishes in flight.
    let permits = u32::try_from(plan.concurrency).unwrap_or(u32::MAX);
    let _all = in_flight.acquire_many(permits).await;
    let publish_secs = publish_start.elapsed().as_secs_f64();

    // Drain: until everything expected arrived, or deliveries stop.
    let mut per_topic = vec![0u64; plan.topics.len()];
    for shard in &shards {
        for (total, part) in per_topic.iter_mut().zip(shard.topic_subscribers()) {
            *total += part;
        }
    }
    let expected: u64 = per_topic
        .iter()
        .zip(&published.per_topic)
        .map(|(subscribers, count)| subscribers * count.load(Relaxed))
        .sum();
    let drain_start = Instant::now();
    let mut last_change = Instant::now();
    let mut last_seen = u64::MAX;
    loop {
        let delivered: u64 = shards.iter().map(Shard::delivered).sum();
        if delivered >= expected {
            break;
        }
        if delivered != last_seen {
            last_seen = delivered;
            last_change = Instant::now();
        }
        if last_change.elapsed() > DRAIN_QUIET || drain_start.elapsed() > DRAIN_LIMIT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_after = args.pid.and_then(cpu_ticks);
    progress.done();

    // Collect.
    let mut results = Vec::new();
    for shard in shards {
        results.push(shard.finish().await);
    }
    let report = summarize(
        &plan,
        args,
        &results,
        &published,
        Summary {
            processes,
            connect_secs,
            publish_secs,
            publish_start_us,
            rss_before,
            rss_after,
            cpu_secs: match (cpu_before, cpu_after, clock_ticks) {
                (Some(before), Some(after), Some(hz)) => {
                    Some(after.saturating_sub(before) as f64 / hz as f64)
                }
                _ => None,
            },
        },
    );
    if args.json {
        match serde_json::to_string(&report) {
            Ok(json) => println!("{json}"),
            Err(error) => return Err(format!("cannot encode the report: {error}")),
        }
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// `"<n> <sent µs> xxxx…"`, padded to `size` bytes.
fn payload(n: u64, sent: u64, size: usize) -> String {
    let mut data = format!("{n} {sent} ");
    if data.len() < size {
        data.extend(std::iter::repeat_n('x', size - data.len()));
    }
    data
}

/// What the lead measured itself.
struct Summary {
    processes: usize,
    connect_secs: f64,
    publish_secs: f64,
    publish_start_us: u64,
    rss_before: Option<u64>,
    rss_after: Option<u64>,
    /// The server's CPU time from the first publish to the end of the drain.
    cpu_secs: Option<f64>,
}

fn summarize(
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

fn print_report(report: &Report) {
    println!(
        "herald bench: {} on {} of {}, {} updates/s for {:.1}s, {}-byte payloads ({} process{})",
        plural(report.subscribers, "subscriber"),
        plural(report.topics, "topic"),
        report.server.name(),
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
    if let Some(secs) = report.server_cpu_secs {
        let per_delivery = report
            .server_cpu_us_per_delivery
            .map(|micros| format!(": {micros:.2} µs per delivery"))
            .unwrap_or_default();
        println!("  hub CPU      {secs:.2} s (user + kernel){per_delivery}");
    }
    if let Some(error) = &report.first_error {
        println!("  first error  {error}");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn plan_of(args: &[&str]) -> Result<Plan, String> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map_err(|error| error.to_string())?;
        Plan::new(&cli.bench)
    }

    #[test]
    fn nchan_subscriptions_go_to_sub_and_carry_no_token() {
        let plan = plan_of(&[
            "--server",
            "nchan",
            "--hub",
            "http://127.0.0.1:9",
            "--topics",
            "3",
            "--topic-prefix",
            "load",
            "--key",
            "secret",
        ])
        .unwrap();
        assert_eq!(plan.topics, ["load-0", "load-1", "load-2"]);
        assert_eq!(
            plan.request(4),
            "GET /sub/load-1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nAccept: text/event-stream\r\n\r\n"
        );
        assert_eq!(plan.token, None);
        assert_eq!(plan.publish_base, "http://127.0.0.1:9/pub/");
        let error = plan_error(&["--server", "nchan", "--topic-prefix", "a/b"]);
        assert!(error.contains("path"), "{error}");
        assert!(plan_error(&["--server", "nginx"]).contains("nginx"));
        assert!(plan_error(&["--hold", "forever"]).contains("--hold"));
        assert_eq!(plan_of(&["--hold", "20s"]).unwrap().hold.as_secs(), 20);
    }

    fn plan_error(args: &[&str]) -> String {
        match plan_of(args) {
            Ok(plan) => panic!("accepted: {plan:?}"),
            Err(error) => error,
        }
    }

    #[test]
    fn herald_subscriptions_are_unchanged() {
        let plan = plan_of(&[
            "--hub",
            "http://127.0.0.1:9",
            "--topics",
            "2",
            "--topic-prefix",
            "load",
            "--token",
            "t",
        ])
        .unwrap();
        assert_eq!(plan.server, Server::Herald);
        assert_eq!(plan.topics, ["load/0", "load/1"]);
        assert_eq!(
            plan.request(1),
            "GET /.well-known/mercure?topic=load%2F1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\
             Accept: text/event-stream\r\nAuthorization: Bearer t\r\n\r\n"
        );
        assert_eq!(plan.publish_base, "http://127.0.0.1:9");
        assert!(plan.prefix.starts_with("load"));
        let default = plan_of(&["--hub", "http://127.0.0.1:9"]).unwrap();
        assert!(default.prefix.starts_with("herald-bench/"), "{default:?}");
    }

    #[test]
    fn payloads_carry_number_and_time_and_have_the_size_asked() {
        let data = payload(42, 1_700_000_000_000_000, 64);
        assert_eq!(data.len(), 64);
        let mut fields = data.split(' ');
        assert_eq!(fields.next(), Some("42"));
        assert_eq!(fields.next(), Some("1700000000000000"));
        assert_eq!(payload(1, 2, 0), "1 2 ");
    }
}
