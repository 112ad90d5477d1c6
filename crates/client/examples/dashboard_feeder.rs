//! Feeds a live dashboard: publishes this machine's load average and memory once a second to
//! topic `dashboard/metrics`, as JSON events of type `metric` with ids `metric-<n>`.
//!
//! Any `EventSource` (or `herald sub dashboard/metrics --json`) can draw it; a dashboard that
//! reconnects gets what it missed from the hub's history.
//!
//! ```sh
//! export HERALD_TOKEN=$(herald token --key "$KEY" --publish 'dashboard/{name}')
//! HERALD_ITERATIONS=10 cargo run -p herald-client --example dashboard_feeder
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_client::{PublishOptions, Publisher};
use serde_json::json;

const TOPIC: &str = "dashboard/metrics";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = std::env::var("HERALD_HUB").unwrap_or_else(|_| "http://127.0.0.1:8088".into());
    let token = std::env::var("HERALD_TOKEN")
        .map_err(|_| "set HERALD_TOKEN to a token that may publish to dashboard/metrics")?;
    // How many samples to send (0 or unset: until interrupted).
    let iterations: u64 = std::env::var("HERALD_ITERATIONS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0);
    let publisher = Publisher::new(&hub)?.with_token(token);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0u64;
    loop {
        ticker.tick().await;
        n += 1;
        let sample = json!({
            "at": SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64,
            "load1": load_average(),
            "mem_available_kib": meminfo("MemAvailable:"),
        });
        let options = PublishOptions::new()
            .event_type("metric")
            .id(format!("metric-{}-{n}", std::process::id()));
        match publisher
            .publish(&[TOPIC], &sample.to_string(), &options)
            .await
        {
            Ok(id) => println!("{id} {sample}"),
            // Keep feeding through a hub restart; say why a sample was skipped.
            Err(error) => eprintln!("dashboard_feeder: sample {n} not published: {error}"),
        }
        if iterations != 0 && n >= iterations {
            return Ok(());
        }
    }
}

/// The 1-minute load average (Linux), or null elsewhere.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A `/proc/meminfo` value in KiB (Linux), or null elsewhere.
fn meminfo(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
