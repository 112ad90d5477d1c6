//! Load client for `bench/idle-rss.sh` and `bench/fanout-cpu.sh`: opens many SSE subscribers
//! against a hub on loopback and holds them.
//!
//! Each subscriber is one raw TCP connection sending
//! `GET /.well-known/mercure?topic=T HTTP/1.1`; it is counted as connected once the response
//! status line says 200. It then keeps reading (so the hub never blocks on a full socket) and
//! counts the events it receives. The process exits after `--hold-secs`, or as soon as
//! `--expect-events` events have arrived in total.
//!
//! ```text
//! cargo build --release --example idle_subscribers
//! target/release/examples/idle_subscribers --addr 127.0.0.1:8088 --count 10000 --hold-secs 60
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;

#[derive(Debug, Parser)]
struct Args {
    /// The hub, on loopback (127.0.0.0/8 only)
    #[arg(long)]
    addr: SocketAddrV4,
    /// Number of subscribers to open
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// The topic every subscriber selects
    #[arg(long, default_value = "idle")]
    topic: String,
    /// Exit after this many seconds
    #[arg(long, default_value_t = 60)]
    hold_secs: u64,
    /// Spread connections over source addresses 127.0.0.1 ..= 127.0.0.N (ephemeral port limits)
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// Connection attempts in flight at once
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Exit as soon as this many events have been received over all subscribers
    #[arg(long)]
    expect_events: Option<u64>,
    /// Bytes of read buffer per subscriber
    #[arg(long, default_value_t = 2048)]
    read_buffer: usize,
}

#[derive(Default)]
struct Counters {
    connected: AtomicUsize,
    failed: AtomicUsize,
    closed: AtomicUsize,
    events: AtomicU64,
}

/// The marker counted as one event: every frame the hub sends for an update starts with `id: `
/// on a new line (the opening `:` comment and heartbeats do not).
const EVENT_MARKER: &[u8] = b"\nid: ";

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if !args.addr.ip().is_loopback() {
        eprintln!("--addr must be a loopback address");
        return ExitCode::from(64);
    }
    let counters = Arc::new(Counters::default());
    let request = Arc::new(format!(
        "GET /.well-known/mercure?topic={} HTTP/1.1\r\nHost: x\r\n\r\n",
        args.topic
    ));
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.hold_secs);

    for index in 0..args.count {
        let permit = Arc::clone(&permits).acquire_owned().await.unwrap();
        let counters = Arc::clone(&counters);
        let request = Arc::clone(&request);
        let source = Ipv4Addr::new(
            127,
            0,
            0,
            1 + (index % usize::from(args.sources.max(1))) as u8,
        );
        let (addr, buffer) = (args.addr, args.read_buffer);
        tokio::spawn(async move {
            match open(addr, source, &request).await {
                Ok(stream) => {
                    counters.connected.fetch_add(1, Ordering::Relaxed);
                    drop(permit);
                    hold(stream, buffer, &counters).await;
                    counters.closed.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    if counters.failed.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("subscriber {index}: {error}");
                    }
                    drop(permit);
                }
            }
        });
    }
    // Wait for the last attempts to finish.
    let _ = permits.acquire_many(args.concurrency.max(1) as u32).await;
    let connected = counters.connected.load(Ordering::Relaxed);
    let failed = counters.failed.load(Ordering::Relaxed);
    println!(
        "connected {connected} subscribers ({failed} failed) in {:.2}s",
        started.elapsed().as_secs_f64()
    );

    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            _ = tick.tick() => {
                let events = counters.events.load(Ordering::Relaxed);
                if args.expect_events.is_some_and(|expected| events >= expected) {
                    break;
                }
            }
        }
    }
    println!(
        "events received: {}, subscribers closed by the hub: {}",
        counters.events.load(Ordering::Relaxed),
        counters.closed.load(Ordering::Relaxed)
    );
    if failed > 0 || connected < args.count {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Connects from `source`, sends the request, and waits for a 200 status line.
async fn open(addr: SocketAddrV4, source: Ipv4Addr, request: &str) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if source != Ipv4Addr::LOCALHOST {
        socket.bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))?;
    }
    let mut stream = socket.connect(SocketAddr::V4(addr)).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await?;
    if &head != b"HTTP/1.1 200" {
        return Err(std::io::Error::other(format!(
            "unexpected status line {:?}",
            String::from_utf8_lossy(&head)
        )));
    }
    Ok(stream)
}

/// Reads and discards until the hub closes the stream, counting events.
async fn hold(mut stream: TcpStream, buffer: usize, counters: &Counters) {
    let mut buf = vec![0u8; buffer.max(EVENT_MARKER.len() * 2)];
    // The last bytes of the previous read, so a marker cut between two reads is still found.
    let keep = EVENT_MARKER.len() - 1;
    let mut carried = 0;
    loop {
        match stream.read(&mut buf[carried..]).await {
            Ok(0) | Err(_) => return,
            Ok(read) => {
                let filled = carried + read;
                let found = buf[..filled]
                    .windows(EVENT_MARKER.len())
                    .filter(|window| *window == EVENT_MARKER)
                    .count();
                if found > 0 {
                    counters.events.fetch_add(found as u64, Ordering::Relaxed);
                }
                carried = filled.min(keep);
                buf.copy_within(filled - carried..filled, 0);
            }
        }
    }
}
