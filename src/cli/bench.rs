//! `herald bench`: a load generator for a running hub.
//!
//! Opens N subscriptions spread over K topics, publishes R updates a second for a duration, and
//! reports deliveries per second, loss, duplicates, end-to-end latency percentiles and (with
//! `--pid`) the hub's resident memory per connection.
//!
//! The subscriber side is built to cost as little CPU as possible, since it shares the machine
//! with the hub: raw HTTP/1.1 over a [`TcpStream`], a small chunked-transfer decoder, the
//! `herald-sse` parser, and one large read buffer per worker thread (never one per connection).
//! Each payload carries its per-topic sequence number and its send time, so every subscriber
//! counts what it got exactly once (a sliding bitmap spots duplicates) and measures latency.
//! Source addresses are spread over `127.0.0.2-251` when the hub is on loopback, which keeps the
//! ephemeral ports of any one address far from exhaustion; past one process's open-file limit the
//! subscriptions are spread over child processes (`herald bench --worker`, driven over
//! stdin/stdout with JSON lines). Publishing uses `herald-client`'s [`Publisher`].

use std::cell::RefCell;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use herald_client::{PublishOptions, Publisher, hub_endpoint};
use herald_sse::Parser;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::config_error;
use super::publish::{DEFAULT_HUB, PublisherAuth};

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
    /// The hub: its base URL, or the full hub URL
    #[arg(long, env = "HERALD_HUB", default_value = DEFAULT_HUB)]
    pub hub: String,
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
    /// Bytes of data per update (at least the sequence number and timestamp)
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    pub payload: usize,
    /// The hub's process id: report its memory (VmRSS) per connection
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Print one JSON object with the results
    #[arg(long)]
    pub json: bool,
    /// Topics are PREFIX/0 .. PREFIX/K-1 [default: herald-bench/<random>]
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
        let url = hub_endpoint(&args.hub)?;
        if url.scheme() != "http" {
            return Err("herald bench speaks plain http:// only".into());
        }
        let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let addr = resolve(&host, port)?;
        let prefix = args
            .topic_prefix
            .clone()
            .unwrap_or_else(|| format!("herald-bench/{:08x}", rand::random::<u32>()));
        let topics = (0..args.topics).map(|k| format!("{prefix}/{k}")).collect();
        let token = args.auth.resolve(&["*"], &["*"])?;
        let mut path = url.path().to_owned();
        path.push('?');
        if let Some(query) = url.query().filter(|query| !query.is_empty()) {
            path.push_str(query);
            path.push('&');
        }
        path.push_str("topic=");
        let request_prefix = format!("GET {path}");
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
            addr,
            spread_sources: matches!(addr.ip(), IpAddr::V4(ip) if ip.is_loopback()),
            request_prefix,
            request_suffix,
            topics,
            prefix,
            token,
            duration,
            rate: args.rate,
            payload: args.payload,
            concurrency: args.concurrency,
            per_process,
        })
    }

    /// The raw request for subscription `index`.
    fn request(&self, index: usize) -> String {
        let topic = self.topic_of(index);
        let encoded: String = form_urlencoded::byte_serialize(topic.as_bytes()).collect();
        format!("{}{encoded}{}", self.request_prefix, self.request_suffix)
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

/// The soft `RLIMIT_NOFILE` of this process, from `/proc/self/limits`.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `VmRSS` of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Latency histogram: log-linear buckets over microseconds (32 per power of two, ~3% wide).

const SUB_BITS: u32 = 5;
const SUB_BUCKETS: usize = 1 << SUB_BITS;
const BUCKETS: usize = SUB_BUCKETS * (64 - SUB_BITS as usize + 1);

fn bucket_of(micros: u64) -> usize {
    if micros < SUB_BUCKETS as u64 {
        return micros as usize;
    }
    let exponent = 63 - micros.leading_zeros(); // >= SUB_BITS
    let shift = exponent - SUB_BITS;
    let mantissa = ((micros >> shift) as usize) & (SUB_BUCKETS - 1);
    SUB_BUCKETS * (shift as usize + 1) + mantissa
}

/// The upper bound (inclusive) of a bucket, in microseconds.
fn bucket_high(bucket: usize) -> u64 {
    if bucket < SUB_BUCKETS {
        return bucket as u64;
    }
    let shift = (bucket / SUB_BUCKETS - 1) as u32;
    let mantissa = (bucket % SUB_BUCKETS) as u64;
    (((SUB_BUCKETS as u64 + mantissa + 1) << shift) - 1).max(1)
}

/// Shared by every connection of one process.
struct Histogram {
    buckets: Box<[AtomicU64]>,
    max: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }

    fn record(&self, micros: u64) {
        if let Some(bucket) = self.buckets.get(bucket_of(micros)) {
            bucket.fetch_add(1, Relaxed);
        }
        self.max.fetch_max(micros, Relaxed);
    }

    /// Non-empty buckets as (index, count).
    fn snapshot(&self) -> Vec<(usize, u64)> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(index, count)| (index, count.load(Relaxed)))
            .filter(|(_, count)| *count > 0)
            .collect()
    }
}

/// Percentiles from merged sparse buckets.
fn percentile(buckets: &[u64], total: u64, quantile: f64) -> u64 {
    if total == 0 {
        return 0;
    }
    let rank = ((total as f64) * quantile).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (index, count) in buckets.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return bucket_high(index);
        }
    }
    buckets
        .iter()
        .rposition(|count| *count > 0)
        .map(bucket_high)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Counting deliveries exactly once per subscription.

/// Which per-topic sequence numbers one subscription has seen: all below `next`, plus a
/// bitmap of the 128 after it (publishes in flight at once can arrive out of order).
#[derive(Debug, Default)]
struct Window {
    next: u64,
    seen: u128,
}

impl Window {
    /// Records `n`; false if it was already seen (a duplicate).
    fn insert(&mut self, n: u64) -> bool {
        if n < self.next {
            return false;
        }
        let mut offset = n - self.next;
        if offset >= 128 {
            // Too far ahead: give up on the oldest gaps (they count as lost).
            let slide = offset - 127;
            self.seen = if slide >= 128 { 0 } else { self.seen >> slide };
            self.next += slide;
            offset = 127;
        }
        let bit = 1u128 << offset;
        if self.seen & bit != 0 {
            return false;
        }
        self.seen |= bit;
        while self.seen & 1 == 1 {
            self.seen >>= 1;
            self.next += 1;
        }
        true
    }
}

/// Per-topic counters of one process.
#[derive(Default)]
struct TopicCounters {
    subscribers: AtomicU64,
    unique: AtomicU64,
    duplicates: AtomicU64,
}

/// What the connections of one process count, shared with the reporting side.
struct Counters {
    connected: AtomicUsize,
    failed: AtomicUsize,
    disconnected: AtomicUsize,
    delivered: AtomicU64,
    last_delivery: AtomicU64,
    topics: Vec<TopicCounters>,
    latency: Histogram,
    first_error: Mutex<Option<String>>,
}

impl Counters {
    fn new(topics: usize) -> Self {
        Self {
            connected: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            disconnected: AtomicUsize::new(0),
            delivered: AtomicU64::new(0),
            last_delivery: AtomicU64::new(0),
            topics: (0..topics).map(|_| TopicCounters::default()).collect(),
            latency: Histogram::new(),
            first_error: Mutex::new(None),
        }
    }

    fn note_error(&self, error: String) {
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            *first = Some(error);
        }
    }

    fn topic_subscribers(&self) -> Vec<u64> {
        self.topics
            .iter()
            .map(|topic| topic.subscribers.load(Relaxed))
            .collect()
    }

    fn result(&self) -> ShardResult {
        ShardResult {
            connected: self.connected.load(Relaxed),
            failed: self.failed.load(Relaxed),
            disconnected: self.disconnected.load(Relaxed),
            last_delivery_us: self.last_delivery.load(Relaxed),
            topics: self
                .topics
                .iter()
                .map(|topic| TopicResult {
                    subscribers: topic.subscribers.load(Relaxed),
                    unique: topic.unique.load(Relaxed),
                    duplicates: topic.duplicates.load(Relaxed),
                })
                .collect(),
            latency: self.latency.snapshot(),
            latency_max_us: self.latency.max.load(Relaxed),
            first_error: self
                .first_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// What a share of the subscriptions saw, as sent from a worker to the lead.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ShardResult {
    connected: usize,
    failed: usize,
    disconnected: usize,
    last_delivery_us: u64,
    topics: Vec<TopicResult>,
    latency: Vec<(usize, u64)>,
    latency_max_us: u64,
    first_error: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct TopicResult {
    subscribers: u64,
    unique: u64,
    duplicates: u64,
}

// ---------------------------------------------------------------------------------------------
// One subscription: raw HTTP/1.1, chunked decoding, herald-sse.

/// How the response body is delimited.
#[derive(Debug)]
enum Framing {
    Chunked(Chunked),
    Length(u64),
    Close,
}

/// An incremental `Transfer-Encoding: chunked` decoder.
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    size: u64,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Extension,
    Data,
    DataEnd,
    Done,
}

impl Chunked {
    /// Hands the payload bytes of `input` to `out`; false once the last chunk was seen.
    fn decode(&mut self, mut input: &[u8], out: &mut impl FnMut(&[u8])) -> bool {
        while let Some((&byte, rest)) = input.split_first() {
            match self.state {
                ChunkState::Size | ChunkState::Extension => {
                    input = rest;
                    match byte {
                        b'\n' => {
                            self.state = if self.size == 0 {
                                ChunkState::Done
                            } else {
                                ChunkState::Data
                            };
                        }
                        b';' => self.state = ChunkState::Extension,
                        _ if self.state == ChunkState::Extension => {}
                        b'\r' | b' ' | b'\t' => {}
                        _ => {
                            let digit = (byte as char).to_digit(16).unwrap_or(0);
                            self.size = self.size.saturating_mul(16) + u64::from(digit);
                        }
                    }
                }
                ChunkState::Data => {
                    let take = usize::try_from(self.size)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    let (data, rest) = input.split_at(take);
                    out(data);
                    self.size -= take as u64;
                    input = rest;
                    if self.size == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                }
                ChunkState::DataEnd => {
                    input = rest;
                    if byte == b'\n' {
                        self.state = ChunkState::Size;
                        self.size = 0;
                    }
                }
                ChunkState::Done => return false,
            }
        }
        self.state != ChunkState::Done
    }
}

impl Framing {
    /// Hands the body bytes of `input` to `out`; false once the body is complete.
    fn decode(&mut self, input: &[u8], out: &mut impl FnMut(&[u8])) -> bool {
        match self {
            Framing::Chunked(chunked) => chunked.decode(input, out),
            Framing::Length(left) => {
                let take = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                out(input.get(..take).unwrap_or_default());
                *left -= take as u64;
                *left > 0
            }
            Framing::Close => {
                out(input);
                true
            }
        }
    }
}

/// The state of one open subscription.
struct Connection {
    framing: Framing,
    parser: Parser,
    window: Window,
    topic: usize,
}

impl Connection {
    /// Feeds received bytes; false once the body is complete.
    fn feed(&mut self, bytes: &[u8], counters: &Counters) -> bool {
        let parser = &mut self.parser;
        let open = self.framing.decode(bytes, &mut |body| parser.feed(body));
        let mut now = 0;
        while let Some(event) = self.parser.next_event() {
            let mut fields = event.data.split(' ');
            let (Some(Ok(n)), Some(Ok(sent))) = (
                fields.next().map(str::parse::<u64>),
                fields.next().map(str::parse::<u64>),
            ) else {
                continue;
            };
            let Some(topic) = counters.topics.get(self.topic) else {
                continue;
            };
            if self.window.insert(n) {
                if now == 0 {
                    now = now_micros();
                }
                topic.unique.fetch_add(1, Relaxed);
                counters.delivered.fetch_add(1, Relaxed);
                counters.latency.record(now.saturating_sub(sent));
            } else {
                topic.duplicates.fetch_add(1, Relaxed);
            }
        }
        if now != 0 {
            counters.last_delivery.fetch_max(now, Relaxed);
        }
        open
    }
}

thread_local! {
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUFFER]);
}

/// What one drain of the socket found.
enum Drained {
    Pending,
    Finished,
    Failed(std::io::Error),
}

/// Reads everything the socket has into this thread's buffer and feeds it; never waits.
fn drain(stream: &TcpStream, connection: &mut Connection, counters: &Counters) -> Drained {
    READ_BUF.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        loop {
            match stream.try_read(&mut buffer) {
                Ok(0) => return Drained::Finished,
                Ok(n) => {
                    let bytes = buffer.get(..n).unwrap_or_default();
                    if !connection.feed(bytes, counters) {
                        return Drained::Finished;
                    }
                    if n < buffer.len() {
                        return Drained::Pending;
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    return Drained::Pending;
                }
                Err(error) => return Drained::Failed(error),
            }
        }
    })
}

/// Connects, sends the request, reads the response head; the connection is ready to read.
async fn open(plan: &Plan, index: usize) -> Result<(TcpStream, Connection, Vec<u8>), String> {
    let socket = match plan.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|error| format!("socket: {error}"))?;
    if plan.spread_sources {
        let last = 2 + (index % SOURCE_ADDRESSES) as u8;
        let source = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), 0);
        socket
            .bind(source)
            .map_err(|error| format!("bind {source}: {error}"))?;
    }
    let mut stream = socket
        .connect(plan.addr)
        .await
        .map_err(|error| format!("connect {}: {error}", plan.addr))?;
    let _ = stream.set_nodelay(true);
    stream
        .write_all(plan.request(index).as_bytes())
        .await
        .map_err(|error| format!("send the request: {error}"))?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 2048];
    let end = loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|error| format!("read the response: {error}"))?;
        if n == 0 {
            return Err("the hub closed the connection before answering".into());
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(end) = head.windows(4).position(|window| window == b"\r\n\r\n") {
            break end;
        }
        if head.len() > 64 * 1024 {
            return Err("the response head is too large".into());
        }
    };
    let rest = head.split_off(end + 4);
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).unwrap_or_default();
    if status != "200" {
        return Err(format!("the hub answered {}", status_line.trim()));
    }
    let mut framing = Framing::Close;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            framing = Framing::Chunked(Chunked::default());
        } else if name.eq_ignore_ascii_case("content-length")
            && !matches!(framing, Framing::Chunked(_))
        {
            framing = Framing::Length(value.parse().unwrap_or(0));
        }
    }
    let connection = Connection {
        framing,
        parser: Parser::new(),
        window: Window::default(),
        topic: plan.topic_index(index),
    };
    Ok((stream, connection, rest))
}

/// One subscription from connect to close.
async fn subscription(
    plan: Arc<Plan>,
    index: usize,
    counters: Arc<Counters>,
    gate: Arc<Semaphore>,
) {
    let permit = gate.acquire().await;
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, open(&plan, index)).await;
    drop(permit);
    let (stream, mut connection, rest) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(error)) => {
            counters.failed.fetch_add(1, Relaxed);
            counters.note_error(error);
            return;
        }
        Err(_) => {
            counters.failed.fetch_add(1, Relaxed);
            counters.note_error(format!("no answer within {CONNECT_TIMEOUT:?}"));
            return;
        }
    };
    if let Some(topic) = counters.topics.get(connection.topic) {
        topic.subscribers.fetch_add(1, Relaxed);
    }
    counters.connected.fetch_add(1, Relaxed);
    if connection.feed(&rest, &counters) {
        loop {
            if stream.readable().await.is_err() {
                break;
            }
            match drain(&stream, &mut connection, &counters) {
                Drained::Pending => {}
                Drained::Finished => break,
                Drained::Failed(error) => {
                    counters.note_error(format!("read: {error}"));
                    break;
                }
            }
        }
    }
    counters.disconnected.fetch_add(1, Relaxed);
}

/// This process's share of the subscriptions.
struct LocalShard {
    counters: Arc<Counters>,
    count: usize,
    tasks: JoinSet<()>,
}

impl LocalShard {
    fn start(plan: &Arc<Plan>, first: usize, count: usize) -> Self {
        let counters = Arc::new(Counters::new(plan.topics.len()));
        let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
        let mut tasks = JoinSet::new();
        for index in first..first + count {
            tasks.spawn(subscription(
                Arc::clone(plan),
                index,
                Arc::clone(&counters),
                Arc::clone(&gate),
            ));
        }
        Self {
            counters,
            count,
            tasks,
        }
    }

    fn settled(&self) -> usize {
        self.counters.connected.load(Relaxed) + self.counters.failed.load(Relaxed)
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes, past one process's open-file limit.

/// A line from a worker on its stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WorkerLine {
    Status {
        connected: usize,
        failed: usize,
        delivered: u64,
    },
    /// Every subscription is open or failed: how many are open on each topic.
    Ready(Vec<u64>),
    Result(ShardResult),
}

/// `herald bench --worker`: hold `count` subscriptions, report on stdout, finish on stdin EOF
/// or a `stop` line.
async fn worker(plan: Plan, first: usize, count: usize) -> ExitCode {
    let plan = Arc::new(plan);
    let mut shard = LocalShard::start(&plan, first, count);
    let (stop_sender, mut stop) = mpsc::unbounded_channel::<()>();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            match line {
                Ok(line) if line.trim() == "stop" => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = stop_sender.send(());
    });
    let send = |line: &WorkerLine| -> bool {
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer(&mut stdout, line).is_ok()
            && writeln!(stdout).is_ok()
            && stdout.flush().is_ok()
    };
    let mut ready = false;
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = stop.recv() => break,
            _ = ticker.tick() => {
                let counters = &shard.counters;
                let status = WorkerLine::Status {
                    connected: counters.connected.load(Relaxed),
                    failed: counters.failed.load(Relaxed),
                    delivered: counters.delivered.load(Relaxed),
                };
                if !send(&status) {
                    break;
                }
                if !ready && shard.settled() >= shard.count {
                    ready = true;
                    if !send(&WorkerLine::Ready(shard.counters.topic_subscribers())) {
                        break;
                    }
                }
            }
        }
    }
    let result = shard.counters.result();
    shard.tasks.abort_all();
    if send(&WorkerLine::Result(result)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The lead's handle on one worker process.
struct RemoteShard {
    child: Child,
    stdin: Option<ChildStdin>,
    count: usize,
    connected: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    delivered: Arc<AtomicU64>,
    /// Subscriptions per topic, once the worker is ready (or an empty list if it died).
    ready: Arc<Mutex<Option<Vec<u64>>>>,
    result: mpsc::UnboundedReceiver<ShardResult>,
}

impl RemoteShard {
    fn spawn(plan: &Plan, first: usize, count: usize) -> Result<Self, String> {
        let exe = std::env::current_exe()
            .map_err(|error| format!("cannot find the herald executable: {error}"))?;
        let mut command = Command::new(exe);
        command
            .arg("bench")
            .arg("--worker")
            .arg("--hub")
            .arg(&plan.hub)
            .arg("--subscribers")
            .arg(count.to_string())
            .arg("--first")
            .arg(first.to_string())
            .arg("--topics")
            .arg(plan.topics.len().to_string())
            .arg("--topic-prefix")
            .arg(&plan.prefix)
            .env_remove("HERALD_KEY")
            .env_remove("HERALD_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(token) = &plan.token {
            command.env("HERALD_TOKEN", token);
        }
        let mut child = command
            .spawn()
            .map_err(|error| format!("cannot start a worker process: {error}"))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or("a worker process has no stdout")?;
        let connected = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let delivered = Arc::new(AtomicU64::new(0));
        let ready = Arc::new(Mutex::new(None));
        let (sender, result) = mpsc::unbounded_channel();
        {
            let (connected, failed, delivered, ready) = (
                Arc::clone(&connected),
                Arc::clone(&failed),
                Arc::clone(&delivered),
                Arc::clone(&ready),
            );
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    match serde_json::from_str::<WorkerLine>(&line) {
                        Ok(WorkerLine::Status {
                            connected: c,
                            failed: f,
                            delivered: d,
                        }) => {
                            connected.store(c, Relaxed);
                            failed.store(f, Relaxed);
                            delivered.store(d, Relaxed);
                        }
                        Ok(WorkerLine::Ready(topics)) => {
                            *ready.lock().unwrap_or_else(PoisonError::into_inner) = Some(topics);
                        }
                        Ok(WorkerLine::Result(result)) => {
                            let _ = sender.send(result);
                        }
                        Err(_) => {}
                    }
                }
                // The worker is gone: whatever it has is all there is.
                let mut ready = ready.lock().unwrap_or_else(PoisonError::into_inner);
                if ready.is_none() {
                    *ready = Some(Vec::new());
                }
            });
        }
        Ok(Self {
            child,
            stdin,
            count,
            connected,
            failed,
            delivered,
            ready,
            result,
        })
    }

    async fn finish(mut self) -> ShardResult {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let result = tokio::time::timeout(Duration::from_secs(10), self.result.recv()).await;
        let _ = self.child.kill();
        let _ = self.child.wait();
        match result {
            Ok(Some(result)) => result,
            _ => ShardResult {
                failed: self.count,
                first_error: Some("a worker process gave no result".into()),
                ..ShardResult::default()
            },
        }
    }
}

impl Drop for RemoteShard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The subscriptions, wherever they live.
enum Shard {
    Local(LocalShard),
    Remote(RemoteShard),
}

impl Shard {
    fn connected(&self) -> usize {
        match self {
            Shard::Local(shard) => shard.counters.connected.load(Relaxed),
            Shard::Remote(shard) => shard.connected.load(Relaxed),
        }
    }

    fn failed(&self) -> usize {
        match self {
            Shard::Local(shard) => shard.counters.failed.load(Relaxed),
            Shard::Remote(shard) => shard.failed.load(Relaxed),
        }
    }

    fn ready(&self) -> bool {
        match self {
            Shard::Local(shard) => shard.settled() >= shard.count,
            Shard::Remote(shard) => shard
                .ready
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some(),
        }
    }

    /// Open subscriptions per topic (known once ready).
    fn topic_subscribers(&self) -> Vec<u64> {
        match self {
            Shard::Local(shard) => shard.counters.topic_subscribers(),
            Shard::Remote(shard) => shard
                .ready
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .unwrap_or_default(),
        }
    }

    fn delivered(&self) -> u64 {
        match self {
            Shard::Local(shard) => shard.counters.delivered.load(Relaxed),
            Shard::Remote(shard) => shard.delivered.load(Relaxed),
        }
    }

    async fn finish(self) -> ShardResult {
        match self {
            Shard::Local(mut shard) => {
                let result = shard.counters.result();
                shard.tasks.abort_all();
                result
            }
            Shard::Remote(shard) => shard.finish().await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The lead: connect, measure memory, publish, drain, report.

/// The numbers `--json` prints.
#[derive(Debug, Serialize)]
struct Report {
    hub: String,
    subscribers: usize,
    topics: usize,
    rate: f64,
    duration_secs: f64,
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
    // Let the hub settle its allocations before sampling its memory.
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
    let mut publisher =
        Publisher::with_client(&plan.hub, client).map_err(|error| error.to_string())?;
    if let Some(token) = &plan.token {
        publisher = publisher.with_token(token.clone());
    }
    let publisher = Arc::new(publisher);
    let in_flight = Arc::new(Semaphore::new(plan.concurrency));
    let total = (plan.rate * plan.duration.as_secs_f64()).round().max(1.0) as u64;
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
            let publisher = Arc::clone(&publisher);
            let published = Arc::clone(&published);
            published.sent.fetch_add(1, Relaxed);
            tokio::spawn(async move {
                match publisher
                    .publish(&[topic], &data, &PublishOptions::new())
                    .await
                {
                    Ok(_) => {
                        published.ok.fetch_add(1, Relaxed);
                        if let Some(count) = published.per_topic.get(topic_index) {
                            count.fetch_add(1, Relaxed);
                        }
                    }
                    Err(error) => {
                        published.errors.fetch_add(1, Relaxed);
                        let mut first = published
                            .first_error
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        if first.is_none() {
                            *first = Some((error.status(), error.to_string()));
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
                "publishing is refused: {error} (give --token or --key)"
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
        subscribers: args.subscribers,
        topics: plan.topics.len(),
        rate: plan.rate,
        duration_secs: plan.duration.as_secs_f64(),
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
            p50: millis(percentile(&buckets, total, 0.50)),
            p90: millis(percentile(&buckets, total, 0.90)),
            p99: millis(percentile(&buckets, total, 0.99)),
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
        first_error: publish_error.or(first_error),
    }
}

fn print_report(report: &Report) {
    println!(
        "herald bench: {} subscribers on {} topics, {} updates/s for {:.1}s, {}-byte payloads ({} process{})",
        report.subscribers,
        report.topics,
        report.rate,
        report.duration_secs,
        report.payload_bytes,
        report.processes,
        if report.processes == 1 { "" } else { "es" },
    );
    println!(
        "  connections  {} established, {} failed, {} dropped ({:.2}s to connect)",
        report.connections, report.connect_failures, report.disconnects, report.connect_secs
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
    if let Some(error) = &report.first_error {
        println!("  first error  {error}");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut previous = 0;
        for micros in (0..100_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let bucket = bucket_of(micros);
            assert!(bucket < BUCKETS);
            assert!(bucket >= previous || micros > 100_000);
            previous = bucket;
            let high = bucket_high(bucket);
            assert!(
                high >= micros,
                "{micros} in bucket {bucket} whose top is {high}"
            );
            // Within ~3.2% of the value.
            assert!(high - micros <= micros / 31 + 1, "{micros}: {high}");
        }
    }

    #[test]
    fn percentiles_come_from_the_buckets() {
        let histogram = Histogram::new();
        for micros in 1..=1000 {
            histogram.record(micros);
        }
        let mut buckets = vec![0; BUCKETS];
        for (index, count) in histogram.snapshot() {
            buckets[index] = count;
        }
        let p50 = percentile(&buckets, 1000, 0.5);
        assert!((500..=520).contains(&p50), "{p50}");
        let p99 = percentile(&buckets, 1000, 0.99);
        assert!((990..=1023).contains(&p99), "{p99}");
        assert_eq!(percentile(&buckets, 0, 0.5), 0);
    }

    #[test]
    fn the_window_counts_each_number_once_in_any_order() {
        let mut window = Window::default();
        let order = [0, 2, 1, 1, 5, 3, 4, 0, 6, 2];
        let fresh: Vec<bool> = order.iter().map(|n| window.insert(*n)).collect();
        assert_eq!(
            fresh,
            [
                true, true, true, false, true, true, true, false, true, false
            ]
        );
        assert_eq!(window.next, 7);
        // A gap far ahead slides the window; the skipped numbers are lost.
        assert!(window.insert(1000));
        assert!(!window.insert(1000));
        assert!(window.insert(999));
        assert!(!window.insert(10));
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        for split in 0..wire.len() {
            let mut decoder = Chunked::default();
            let mut out = Vec::new();
            let (a, b) = wire.split_at(split);
            let open_a = decoder.decode(a, &mut |bytes| out.extend_from_slice(bytes));
            let open_b = decoder.decode(b, &mut |bytes| out.extend_from_slice(bytes));
            assert_eq!(out, b"hello, world", "split at {split}");
            assert!(open_a || split >= wire.len() - 5);
            assert!(!open_b);
        }
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

    #[test]
    fn a_connection_counts_deliveries_and_duplicates() {
        let counters = Counters::new(1);
        let mut connection = Connection {
            framing: Framing::Close,
            parser: Parser::new(),
            window: Window::default(),
            topic: 0,
        };
        let sent = now_micros();
        let wire = format!(
            ": hello\n\nid: a\ndata: 0 {sent} x\n\nid: b\ndata: 1 {sent}\n\ndata: 1 {sent}\n\ndata: junk\n\n"
        );
        assert!(connection.feed(wire.as_bytes(), &counters));
        assert_eq!(counters.delivered.load(Relaxed), 2);
        assert_eq!(counters.topics[0].unique.load(Relaxed), 2);
        assert_eq!(counters.topics[0].duplicates.load(Relaxed), 1);
        assert_eq!(
            counters
                .latency
                .snapshot()
                .iter()
                .map(|(_, c)| c)
                .sum::<u64>(),
            2
        );
    }
}
