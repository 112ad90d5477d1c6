//! The load generator behind `herald bench`, a client of a running hub (Herald, or
//! nginx+nchan for side-by-side figures); it never links the server.
//!
//! Opens N subscriptions spread over K topics, publishes R updates a second for a duration, and
//! reports deliveries per second, loss, duplicates, end-to-end latency percentiles and (with
//! `--pid`) the hub's resident memory per connection and CPU time per delivery.
//!
//! The subscriber side is built to cost as little CPU as possible, since it shares the machine
//! with the hub: raw HTTP/1.1 over a `TcpStream`, a small chunked-transfer decoder, the
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
//! `--mode` picks how subscriptions reach the server ([`Mode`]): HTTP/1.1 with the subscribe as
//! the first request on its connection (`h1`) or after a `GET /healthz` on the same keep-alive
//! connection (`h1-reuse`), or HTTP/2 (`h2c` with prior knowledge, `h2-tls` with ALPN), many
//! streams multiplexed on each connection as a browser does.
//!
//! This file holds the flags, the plan and the lead (connect, sample memory, publish, drain);
//! `report` the results; `measure` the histogram and exactly-once counting; `wire` one HTTP/1.1
//! subscription on the socket; `multiplex` HTTP/2 connections and their streams; `mode` the
//! modes and TLS; `workers` the child processes; `target` what differs between Herald and nchan;
//! `procfs` what `/proc` says about the server.
// The flags' doc comments are also `herald bench --help`, where `<topic>` is meant literally.
#![allow(rustdoc::invalid_html_tags)]

use std::io::{IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use clap::Args;
use tokio::sync::Semaphore;

mod auth;
mod measure;
mod mode;
mod multiplex;
mod procfs;
mod report;
mod target;
mod wire;
mod workers;

pub use auth::{BenchAuth, Mint};
use measure::now_micros;
pub use mode::Mode;
use procfs::{clock_ticks_per_second, cpu_ticks, open_file_limit, rss_kib, sum, write_syscalls};
use report::{Published, Summary, print_report, summarize};
pub use target::Server;
use target::Sink;
use wire::LocalShard;
use workers::{RemoteShard, Shard, worker};

/// Connections opened at the same time (more would overflow the hub's accept backlog).
const CONNECT_CONCURRENCY: usize = 256;
/// How long one connection may take to be established and answered.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one publish may take: a server that stops answering publishes (nginx+nchan's
/// HTTP/2 fan-out at 1,000/s did) makes errors, not a run that never ends.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the last deliveries once publishing stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Past `--duration` by this much, no more publishes are sent: a server that stopped answering
/// would otherwise hold the run for one publish timeout per permit, round after round. What was
/// not sent counts as publish errors.
const PUBLISH_OVERTIME: Duration = Duration::from_secs(10);
/// Deliveries idle this long after publishing stops mean nothing more is coming.
const DRAIN_QUIET: Duration = Duration::from_secs(2);
/// How long the connections stay open and quiet after the drain before the server's memory is
/// sampled again.
const DRAINED_SETTLE: Duration = Duration::from_secs(1);
/// One read buffer per thread, shared by every connection it serves.
const READ_BUFFER: usize = 256 * 1024;
/// Source addresses used on loopback: 127.0.0.2 ..= 127.0.0.(1 + SOURCE_ADDRESSES).
const SOURCE_ADDRESSES: usize = 250;
/// Descriptors a process keeps for itself (stdio, the runtime, the publisher's pool).
const RESERVED_FDS: usize = 256;
/// Where the client subcommands look for the hub unless told otherwise (`herald pub` and
/// `herald sub` use the same).
pub const DEFAULT_HUB: &str = "http://127.0.0.1:8088";
/// Exit code for bad usage or configuration (sysexits EX_USAGE), as every `herald` subcommand.
const EXIT_USAGE: u8 = 64;

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
    /// delivery. Several (`--pid 1,2` or `--pid 1 --pid 2`, e.g. nginx's workers) are summed
    #[arg(long, value_name = "PID", value_delimiter = ',')]
    pub pid: Vec<u32>,
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
    /// How subscriptions reach the server: HTTP/1.1 with the subscribe first on a fresh
    /// connection (h1), HTTP/1.1 after a `GET /healthz` on the same keep-alive connection
    /// (h1-reuse), HTTP/2 with prior knowledge on http:// (h2c), HTTP/2 over TLS with ALPN on
    /// https:// (h2-tls). HTTP/2 multiplexes up to --streams-per-connection subscriptions on
    /// each connection, as a browser does
    #[arg(long, value_enum, default_value_t = Mode::H1, value_name = "MODE")]
    pub mode: Mode,
    /// HTTP/2 modes: subscriptions multiplexed on one connection (a browser opens one
    /// connection per origin, up to the server's SETTINGS_MAX_CONCURRENT_STREAMS: 128 for
    /// nginx, 200 for hyper)
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub streams_per_connection: usize,
    /// Publish to this base URL (the same kind as --hub) over HTTP/1.1, whatever --mode the
    /// subscriptions use [default: --hub, in the protocol of --mode]. E.g. h2c subscriptions
    /// on nginx's prior-knowledge `http2` listener with publishes on its HTTP/1.1 one
    #[arg(long, value_name = "URL")]
    pub publish_hub: Option<String>,
    /// h2-tls: trust this PEM certificate (or CA) for the server, e.g. a self-signed one
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// h2-tls: accept any server certificate (a loopback benchmark only)
    #[arg(long)]
    pub insecure: bool,
    #[command(flatten)]
    pub auth: BenchAuth,
    /// Internal: run as a child process holding subscriptions
    #[arg(long, hide = true)]
    pub worker: bool,
    /// Internal: the index of a worker's first subscription
    #[arg(long, hide = true, default_value_t = 0)]
    pub first: usize,
}

/// Runs the benchmark (or, with `--worker`, one child's share of it). `mint` makes the tokens
/// that `--key` and `--subscriber-key` ask for (the caller owns the token format).
pub fn run(args: &BenchArgs, mint: Mint) -> ExitCode {
    let plan = match Plan::new(args, mint) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("herald: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
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
    /// Publishes go over HTTP/1.1 (`--publish-hub`), not in the protocol of `mode`.
    publish_http1: bool,
    addr: SocketAddr,
    /// Bind each connection to one of 127.0.0.2..=251 first.
    spread_sources: bool,
    mode: Mode,
    /// `<path>?…topic=` up to the topic (already percent-encoded).
    target_prefix: String,
    /// `host[:port]`: the `Host:` header, HTTP/2's `:authority`.
    authority: String,
    /// The host name TLS checks the certificate against.
    host: String,
    /// HTTP/1.1: `Host:` and the other request headers, ending with the blank line.
    request_suffix: String,
    /// `h1-reuse`: the request sent first on each connection.
    warm_up: Option<String>,
    /// HTTP/2: streams per connection.
    streams_per_connection: usize,
    /// `h2-tls`: the TLS client, and `--ca` (for worker processes).
    tls: Option<mode::Tls>,
    ca: Option<std::path::PathBuf>,
    topics: Vec<String>,
    prefix: String,
    /// The publisher's token.
    token: Option<String>,
    /// The subscriptions' token (none: anonymous).
    subscriber_token: Option<String>,
    /// What the subscriptions sent, and what to do when the hub refuses them.
    refused_hint: &'static str,
    duration: Duration,
    hold: Duration,
    rate: f64,
    payload: usize,
    concurrency: usize,
    per_process: usize,
}

impl Plan {
    fn new(args: &BenchArgs, mint: Mint) -> Result<Plan, String> {
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
        let mode = args.mode;
        if url.scheme() != mode.scheme() {
            return Err(format!(
                "--mode {} needs a {}:// hub URL, not {}",
                mode.name(),
                mode.scheme(),
                url
            ));
        }
        if args.streams_per_connection == 0 {
            return Err("--streams-per-connection must be at least 1".into());
        }
        let tls = match mode {
            Mode::H2Tls => Some(mode::Tls::new(args.ca.as_deref(), args.insecure)?),
            _ => None,
        };
        let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let addr = resolve(&host, port)?;
        let prefix = args
            .topic_prefix
            .clone()
            .unwrap_or_else(|| server.default_prefix());
        server.check_prefix(&prefix)?;
        let topics = (0..args.topics).map(|k| server.topic(&prefix, k)).collect();
        let tokens = match server {
            Server::Herald => args.auth.tokens(mint)?,
            Server::Nchan => auth::Tokens::default(),
        };
        let publish_base = match &args.publish_hub {
            Some(hub) => {
                let endpoint = server
                    .endpoint(hub)
                    .map_err(|error| format!("--publish-hub: {error}"))?;
                server.publish_base(hub, &endpoint)
            }
            None => server.publish_base(&args.hub, &url),
        };
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        let mut request_suffix =
            format!(" HTTP/1.1\r\nHost: {authority}\r\nAccept: text/event-stream\r\n");
        if let Some(token) = &tokens.subscriber {
            request_suffix.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request_suffix.push_str("\r\n");
        let warm_up = (mode == Mode::H1Reuse)
            .then(|| format!("GET /healthz HTTP/1.1\r\nHost: {authority}\r\n\r\n"));
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
            publish_base,
            publish_http1: args.publish_hub.is_some(),
            addr,
            spread_sources: matches!(addr.ip(), IpAddr::V4(ip) if ip.is_loopback()),
            mode,
            target_prefix: server.subscribe_target(&url),
            authority,
            host,
            request_suffix,
            warm_up,
            streams_per_connection: args.streams_per_connection,
            tls,
            ca: args.ca.clone(),
            topics,
            prefix,
            token: tokens.publisher,
            subscriber_token: tokens.subscriber,
            refused_hint: match server {
                Server::Herald => args.auth.subscribe_refused_hint(),
                Server::Nchan => "is /sub/ an nchan_subscriber location open to this client?",
            },
            duration,
            hold,
            rate: args.rate,
            payload: args.payload,
            concurrency: args.concurrency,
            per_process,
        })
    }

    /// The request target (path and query) of subscription `index`.
    fn target(&self, index: usize) -> String {
        let topic = self.server.encode_topic(self.topic_of(index));
        format!("{}{topic}", self.target_prefix)
    }

    /// The raw HTTP/1.1 request for subscription `index`.
    fn request(&self, index: usize) -> String {
        format!("GET {}{}", self.target(index), self.request_suffix)
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
    let pids = &args.pid;
    let rss_before = sum(pids, rss_kib);
    if let Some(pid) = pids.iter().find(|pid| rss_kib(**pid).is_none()) {
        return Err(format!(
            "cannot read /proc/{pid}/status: is --pid the hub's process id?"
        ));
    }
    let clock_ticks = match pids.is_empty() {
        false => Some(clock_ticks_per_second().ok_or(
            "cannot read the clock tick rate (AT_CLKTCK in /proc/self/auxv) to measure CPU time",
        )?),
        true => None,
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
    let rss_after = sum(pids, rss_kib);

    // Publish.
    let published = Arc::new(Published {
        per_topic: (0..plan.topics.len()).map(|_| AtomicU64::new(0)).collect(),
        ..Published::default()
    });
    let mut client = herald_client::reqwest::Client::builder()
        .pool_max_idle_per_host(plan.concurrency)
        .timeout(PUBLISH_TIMEOUT);
    if plan.publish_http1 {
        client = client.http1_only();
    } else if plan.mode == Mode::H2c {
        // Publishes go over HTTP/2 too: nginx's cleartext `http2` listener speaks nothing else.
        client = client.http2_prior_knowledge();
    }
    if let Some(tls) = &plan.tls {
        // The publisher reaches the same TLS listener: it trusts what the subscriptions trust.
        if tls.insecure {
            client = client.danger_accept_invalid_certs(true);
        } else if let Some(pem) = &tls.ca_pem {
            let certificate = herald_client::reqwest::Certificate::from_pem(pem)
                .map_err(|error| format!("--ca: {error}"))?;
            client = client.add_root_certificate(certificate);
        }
    }
    let client = client
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
    let cpu_before = sum(pids, cpu_ticks);
    let writes_before = sum(pids, write_syscalls);
    let publish_start = Instant::now();
    let publish_start_us = now_micros();
    let mut last_shown = publish_start;
    let mut last_delivered = 0u64;
    let mut seq = 0u64;
    let topics = plan.topics.len() as u64;
    'publishing: while seq < total {
        let elapsed = publish_start.elapsed();
        let due = ((elapsed.as_secs_f64() * plan.rate) as u64 + 1).min(total);
        while seq < due {
            if publish_start.elapsed() > plan.duration + PUBLISH_OVERTIME {
                give_up_publishing(&published, total - seq);
                break 'publishing;
            }
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
    let cpu_after = sum(pids, cpu_ticks);
    let writes_after = sum(pids, write_syscalls);
    // Memory once the burst has drained, the connections still open: what the server kept.
    let rss_drained = if pids.is_empty() {
        None
    } else {
        tokio::time::sleep(DRAINED_SETTLE).await;
        sum(pids, rss_kib)
    };
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
            rss_drained,
            cpu_secs: match (cpu_before, cpu_after, clock_ticks) {
                (Some(before), Some(after), Some(hz)) => {
                    Some(after.saturating_sub(before) as f64 / hz as f64)
                }
                _ => None,
            },
            write_syscalls: match (writes_before, writes_after) {
                (Some(before), Some(after)) => Some(after.saturating_sub(before)),
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

/// Counts `unsent` publishes as failed: the server fell too far behind to send them in time.
fn give_up_publishing(published: &Published, unsent: u64) {
    published.errors.fetch_add(unsent, Relaxed);
    let mut first = published
        .first_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if first.is_none() {
        *first = Some((
            None,
            format!(
                "the server fell behind: {unsent} publishes not sent within --duration + {} s",
                PUBLISH_OVERTIME.as_secs()
            ),
        ));
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

    fn fake_mint(key: &str, publish: &[&str], subscribe: &[&str]) -> Result<String, String> {
        Ok(format!(
            "{key}.{}.{}",
            publish.join(","),
            subscribe.join(",")
        ))
    }

    fn plan_of(args: &[&str]) -> Result<Plan, String> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map_err(|error| error.to_string())?;
        Plan::new(&cli.bench, fake_mint)
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

    #[test]
    fn publishes_go_to_the_publish_hub_over_http1_when_given() {
        let base = [
            "--server",
            "nchan",
            "--mode",
            "h2c",
            "--hub",
            "http://127.0.0.1:9",
        ];
        let plan = plan_of(&base).unwrap();
        assert_eq!(plan.publish_base, "http://127.0.0.1:9/pub/");
        assert!(!plan.publish_http1);
        let plan =
            plan_of(&[&base[..], &["--publish-hub", "http://127.0.0.1:8"]].concat()).unwrap();
        assert_eq!(plan.publish_base, "http://127.0.0.1:8/pub/");
        assert!(plan.publish_http1);
        let error = plan_error(&[&base[..], &["--publish-hub", "not a url"]].concat());
        assert!(error.contains("--publish-hub"), "{error}");
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
            "--subscriber-token",
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
    fn the_key_signs_the_publisher_and_subscriptions_are_anonymous_unless_told() {
        let base = ["--hub", "http://127.0.0.1:9", "--topic-prefix", "p"];
        let plan = plan_of(&[&base[..], &["--key", "pk"]].concat()).unwrap();
        assert_eq!(plan.token.as_deref(), Some("pk.*."));
        assert_eq!(plan.subscriber_token, None);
        assert!(
            !plan.request(0).contains("Authorization"),
            "{}",
            plan.request(0)
        );
        assert!(plan.refused_hint.contains("--subscriber-key"));
        let plan =
            plan_of(&[&base[..], &["--key", "pk", "--subscriber-key", "sk"]].concat()).unwrap();
        assert_eq!(plan.token.as_deref(), Some("pk.*."));
        assert!(
            plan.request(0).contains("Authorization: Bearer sk..*\r\n"),
            "{}",
            plan.request(0)
        );
        let plan = plan_of(&[&base[..], &["--subscriber-token", "st"]].concat()).unwrap();
        assert_eq!(plan.token, None);
        assert!(plan.request(0).contains("Authorization: Bearer st\r\n"));
    }

    #[test]
    fn modes_shape_the_connection() {
        let plan = plan_of(&["--hub", "http://localhost:9", "--mode", "h1-reuse"]).unwrap();
        assert_eq!(
            plan.warm_up.as_deref(),
            Some("GET /healthz HTTP/1.1\r\nHost: localhost:9\r\n\r\n")
        );
        assert_eq!(
            plan_of(&["--hub", "http://localhost:9"]).unwrap().warm_up,
            None
        );
        let plan = plan_of(&[
            "--hub",
            "http://localhost:9",
            "--mode",
            "h2c",
            "--topic-prefix",
            "p",
        ])
        .unwrap();
        assert_eq!(plan.target(1), "/.well-known/mercure?topic=p%2F0");
        assert_eq!(plan.authority, "localhost:9");
        assert!(plan.tls.is_none());
        let error = plan_error(&[
            "--hub",
            "http://localhost:9",
            "--mode",
            "h2-tls",
            "--insecure",
        ]);
        assert!(error.contains("https://"), "{error}");
        let error = plan_error(&["--hub", "https://localhost:9", "--mode", "h2c"]);
        assert!(error.contains("http://"), "{error}");
        let error = plan_error(&["--hub", "https://localhost:9", "--mode", "h2-tls"]);
        assert!(error.contains("--ca"), "{error}");
        let plan = plan_of(&[
            "--hub",
            "https://localhost:9",
            "--mode",
            "h2-tls",
            "--insecure",
        ])
        .unwrap();
        assert!(plan.tls.is_some());
        assert!(plan_error(&["--streams-per-connection", "0"]).contains("streams"));
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
