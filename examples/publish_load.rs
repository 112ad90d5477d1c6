//! Load client for `bench/fanout-cpu.sh`: publishes updates to a hub on loopback at a steady
//! rate, one raw HTTP/1.1 keep-alive connection, one request at a time (form body, bearer
//! token).
//!
//! ```text
//! cargo build --release --example publish_load
//! TOKEN=$(target/release/herald token --key bench --publish '*')
//! target/release/examples/publish_load --addr 127.0.0.1:8088 --token "$TOKEN" --count 2000 --rate 200
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddrV4;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
struct Args {
    /// The hub, on loopback (127.0.0.0/8 only)
    #[arg(long)]
    addr: SocketAddrV4,
    /// A publisher JWT (`herald token --key ... --publish '*'`)
    #[arg(long, env = "TOKEN", hide_env_values = true)]
    token: String,
    /// The topic of every update
    #[arg(long, default_value = "idle")]
    topic: String,
    /// Number of updates
    #[arg(long, default_value_t = 2_000)]
    count: u64,
    /// Updates per second
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Bytes of `data` per update
    #[arg(long, default_value_t = 64)]
    data_size: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    if !args.addr.ip().is_loopback() {
        eprintln!("--addr must be a loopback address");
        return ExitCode::from(64);
    }
    let data = "x".repeat(args.data_size);
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("topic", &args.topic)
        .append_pair("data", &data)
        .finish();
    let request = format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        args.addr,
        args.token,
        body.len()
    );
    let mut connection = match Connection::open(args.addr).await {
        Ok(connection) => connection,
        Err(error) => {
            eprintln!("cannot connect to {}: {error}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate.max(1) as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut failed = 0u64;
    let mut latencies = Vec::with_capacity(args.count as usize);
    for _ in 0..args.count {
        ticker.tick().await;
        let sent = Instant::now();
        let outcome = tokio::time::timeout(
            Duration::from_secs(10),
            connection.exchange(request.as_bytes()),
        )
        .await;
        latencies.push(sent.elapsed());
        let problem = match outcome {
            Ok(Ok(200)) => continue,
            Ok(Ok(status)) => format!("publish refused: {status}"),
            Ok(Err(error)) => format!("publish failed: {error}"),
            Err(_) => "publish timed out".to_owned(),
        };
        failed += 1;
        if failed <= 5 {
            eprintln!("{problem}");
        }
        // Start again on a fresh connection.
        match Connection::open(args.addr).await {
            Ok(fresh) => connection = fresh,
            Err(error) => {
                eprintln!("cannot reconnect: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |latency| latency.as_secs_f64() * 1000.0)
    };
    println!(
        "publish latency ms: p50 {:.2}, p99 {:.2}, max {:.2}",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    println!(
        "published {} updates ({failed} failed) in {elapsed:.2}s ({:.0}/s)",
        args.count - failed,
        (args.count - failed) as f64 / elapsed
    );
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One keep-alive HTTP/1.1 connection, one request at a time.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(addr: SocketAddrV4) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buffer: Vec::with_capacity(4096),
        })
    }

    /// Sends `request` and reads the whole response (Content-Length or chunked); returns the
    /// status code.
    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<u16> {
        self.stream.write_all(request).await?;
        self.buffer.clear();
        let head_end = loop {
            if let Some(at) = find(&self.buffer, b"\r\n\r\n") {
                break at + 4;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).to_ascii_lowercase();
        let status = head
            .get(9..12)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other("malformed status line"))?;
        let length = head.lines().find_map(|line| {
            line.strip_prefix("content-length:")
                .and_then(|value| value.trim().parse::<usize>().ok())
        });
        match length {
            Some(length) => {
                while self.buffer.len() < head_end + length {
                    self.fill().await?;
                }
            }
            None if head.contains("transfer-encoding: chunked") => {
                while find(&self.buffer[head_end..], b"0\r\n\r\n").is_none() {
                    self.fill().await?;
                }
            }
            None => {}
        }
        Ok(status)
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 4096];
        let read = self.stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
