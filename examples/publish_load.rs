//! Load client for `bench/fanout-cpu.sh`: publishes updates to a hub on loopback at a steady
//! rate, one HTTP/1.1 keep-alive connection, one request at a time.
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
    let client = reqwest::Client::builder()
        .http1_only()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("http://{}/.well-known/mercure", args.addr);
    let data = "x".repeat(args.data_size);
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("topic", &args.topic)
        .append_pair("data", &data)
        .finish();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate.max(1) as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut failed = 0u64;
    for _ in 0..args.count {
        ticker.tick().await;
        let response = client
            .post(&url)
            .bearer_auth(&args.token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await;
        match response {
            Ok(response) if response.status().is_success() => {
                let _ = response.bytes().await;
            }
            Ok(response) => {
                failed += 1;
                if failed <= 5 {
                    eprintln!("publish refused: {}", response.status());
                }
            }
            Err(error) => {
                failed += 1;
                if failed <= 5 {
                    eprintln!("publish failed: {error}");
                }
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
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
