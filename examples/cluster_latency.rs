//! Load client for `bench/cluster.sh`: cross-node publish -> delivery latency and throughput.
//!
//! Opens `--subscribers` streams on each `--subscribe` node, then publishes to the `--publish`
//! nodes (round robin), either at a steady `--rate` or, with `--rate 0`, as fast as
//! `--concurrency` publishers in flight allow. Each update carries its send time (microseconds
//! since the run started, one clock: this process); every subscriber records when it got it.
//! Prints one JSON object: acknowledged publishes per second, deliveries per second, latency
//! percentiles, and deliveries missing or duplicated.
//!
//! ```text
//! cargo build --release --example cluster_latency
//! TOKEN=$(target/release/herald token --key bench --publish '*')
//! target/release/examples/cluster_latency --publish 127.0.0.1:8081 \
//!     --subscribe 127.0.0.1:8082 --subscribe 127.0.0.1:8083 --rate 1000 --duration 10s
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::net::SocketAddrV4;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::StreamExt;
use tokio::sync::Semaphore;

#[derive(Debug, Parser)]
struct Args {
    /// A node to publish to (repeatable; round robin), on loopback
    #[arg(long, required = true)]
    publish: Vec<SocketAddrV4>,
    /// A node to subscribe on (repeatable), on loopback
    #[arg(long, required = true)]
    subscribe: Vec<SocketAddrV4>,
    /// Streams per subscribe node
    #[arg(long, default_value_t = 10)]
    subscribers: usize,
    /// A publisher JWT (`herald token --key ... --publish '*'`)
    #[arg(long, env = "TOKEN", hide_env_values = true)]
    token: String,
    /// Updates per second; 0: as fast as the hub acknowledges
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Publishes in flight at once
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long to publish, e.g. `10s`
    #[arg(long, default_value = "10s")]
    duration: humantime::Duration,
    /// Bytes of `data` per update (at least the timestamp)
    #[arg(long, default_value_t = 64)]
    data_size: usize,
    /// The topic of every update
    #[arg(long, default_value = "cluster-bench")]
    topic: String,
}

struct Receipts {
    /// Latency of every delivery, in microseconds.
    latencies: parking_lot::Mutex<Vec<u64>>,
    delivered: AtomicU64,
    duplicates: AtomicU64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if !args
        .publish
        .iter()
        .chain(&args.subscribe)
        .all(|addr| addr.ip().is_loopback())
    {
        eprintln!("every node must be on loopback");
        return ExitCode::from(64);
    }
    // reqwest is built without a crypto provider of its own (plain http here, but it asks).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .unwrap();
    let start = Instant::now();
    let receipts = Arc::new(Receipts {
        latencies: parking_lot::Mutex::new(Vec::new()),
        delivered: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
    });

    // Subscribe everywhere first, and wait until every stream is open.
    let opened = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let mut streams = Vec::new();
    for node in &args.subscribe {
        for _ in 0..args.subscribers {
            let url = format!(
                "http://{node}/.well-known/mercure?topic={}",
                args.topic.replace('/', "%2F")
            );
            let client = client.clone();
            let receipts = Arc::clone(&receipts);
            let opened = Arc::clone(&opened);
            let done = Arc::clone(&done);
            streams.push(tokio::spawn(async move {
                let response = client.get(&url).send().await.unwrap();
                assert_eq!(response.status(), 200, "subscribe on {url}");
                let mut body = response.bytes_stream();
                let mut parser = herald_sse::Parser::new();
                let mut seen = HashSet::new();
                let mut latencies = Vec::new();
                let mut announced = false;
                loop {
                    let chunk =
                        match tokio::time::timeout(Duration::from_millis(500), body.next()).await {
                            Ok(Some(Ok(chunk))) => chunk,
                            Ok(_) => break,
                            // Quiet: the end once publishing is over and everything had time to arrive.
                            Err(_) if done.load(Ordering::Relaxed) => break,
                            Err(_) => continue,
                        };
                    if !announced {
                        opened.fetch_add(1, Ordering::Relaxed);
                        announced = true;
                    }
                    let now = start.elapsed().as_micros() as u64;
                    parser.feed(&chunk);
                    while let Some(event) = parser.next_event() {
                        let Some(sent) = event
                            .data
                            .split(' ')
                            .next()
                            .and_then(|t| t.parse::<u64>().ok())
                        else {
                            continue;
                        };
                        if seen.insert(event.id) {
                            latencies.push(now.saturating_sub(sent));
                        } else {
                            receipts.duplicates.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                receipts
                    .delivered
                    .fetch_add(latencies.len() as u64, Ordering::Relaxed);
                receipts.latencies.lock().extend(latencies);
            }));
        }
    }
    let expected_streams = (args.subscribe.len() * args.subscribers) as u64;
    let deadline = Instant::now() + Duration::from_secs(20);
    while opened.load(Ordering::Relaxed) < expected_streams {
        if Instant::now() > deadline {
            eprintln!(
                "only {} of {expected_streams} streams opened",
                opened.load(Ordering::Relaxed)
            );
            return ExitCode::FAILURE;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Publish.
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let slots = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let padding = "x".repeat(args.data_size.saturating_sub(21));
    let duration: Duration = args.duration.into();
    let publish_start = Instant::now();
    let mut n: u64 = 0;
    let mut tasks = Vec::new();
    while publish_start.elapsed() < duration {
        if args.rate > 0 {
            let due = publish_start + Duration::from_secs_f64(n as f64 / args.rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = Arc::clone(&slots).acquire_owned().await.unwrap();
        let node = args.publish[(n as usize) % args.publish.len()];
        let client = client.clone();
        let token = args.token.clone();
        let topic = args.topic.clone();
        let padding = padding.clone();
        let acked = Arc::clone(&acked);
        let failed = Arc::clone(&failed);
        let id = format!("b{n}");
        tasks.push(tokio::spawn(async move {
            let sent = start.elapsed().as_micros() as u64;
            let data = format!("{sent:020} {padding}");
            let result = client
                .post(format!("http://{node}/.well-known/mercure"))
                .bearer_auth(token)
                .form(&[("topic", topic.as_str()), ("id", &id), ("data", &data)])
                .send()
                .await;
            match result {
                Ok(response) if response.status() == 200 => acked.fetch_add(1, Ordering::Relaxed),
                _ => failed.fetch_add(1, Ordering::Relaxed),
            };
            drop(permit);
        }));
        n += 1;
    }
    for task in tasks {
        let _ = task.await;
    }
    let publish_secs = publish_start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    for stream in streams {
        let _ = stream.await;
    }

    let acked = acked.load(Ordering::Relaxed);
    let mut latencies = std::mem::take(&mut *receipts.latencies.lock());
    latencies.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() - 1) as f64 * p).round() as usize;
        latencies[index] as f64 / 1000.0
    };
    let delivered = receipts.delivered.load(Ordering::Relaxed);
    let expected = acked * expected_streams;
    let summary = serde_json::json!({
        "publish_nodes": args.publish.len(),
        "subscribe_nodes": args.subscribe.len(),
        "streams": expected_streams,
        "target_rate": args.rate,
        "acknowledged": acked,
        "failed": failed.load(Ordering::Relaxed),
        "publishes_per_sec": (acked as f64 / publish_secs).round(),
        "deliveries_per_sec": (delivered as f64 / publish_secs).round(),
        "delivered": delivered,
        "missing": expected.saturating_sub(delivered),
        "duplicates": receipts.duplicates.load(Ordering::Relaxed),
        "latency_ms": {
            "p50": percentile(0.50),
            "p90": percentile(0.90),
            "p99": percentile(0.99),
            "max": percentile(1.0),
        },
    });
    println!("{summary}");
    if delivered < expected || receipts.duplicates.load(Ordering::Relaxed) > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
