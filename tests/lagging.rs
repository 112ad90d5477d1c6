//! Slow consumers: bounded queues, catch-up from history, or close and resume.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::util::{Hub, SOON};

/// A subscriber that does not read: a raw socket with a tiny receive buffer.
async fn stalled_subscriber(hub: &Hub, topic: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(hub.addr).await.unwrap();
    stream
        .write_all(
            format!("GET /.well-known/mercure?topic={topic} HTTP/1.1\r\nHost: x\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    stream
}

/// Reads the whole response body (chunked) until `needle` appears or the stream ends.
async fn read_all_until(stream: &mut TcpStream, needle: &[u8], limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut raw = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut scanned: usize = 0;
    loop {
        // Only look at bytes not searched before (plus an overlap for a needle across reads).
        let from = scanned.saturating_sub(needle.len());
        if raw[from..].windows(needle.len()).any(|w| w == needle) {
            return (raw, false);
        }
        scanned = raw.len();
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out; read {} bytes", raw.len());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (raw, true),
            Ok(Ok(n)) => raw.extend_from_slice(&buffer[..n]),
            Err(_) => panic!("timed out; read {} bytes", raw.len()),
        }
    }
}

fn ids_in(raw: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(raw)
        .lines()
        .filter_map(|line| line.strip_prefix("id: ").map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_slow_subscriber_catches_up_from_history_and_misses_nothing() {
    // The subscriber stalls for as long as publishing takes: keep --write-timeout out of the way.
    let hub = Hub::start(&[
        "--queue-size",
        "4",
        "--history-size",
        "10000",
        "--write-timeout",
        "10min",
    ]);
    let mut slow = stalled_subscriber(&hub, "flood").await;
    hub.wait_subscriptions(1).await;
    let payload = "x".repeat(16 * 1024);
    let total = 600;
    for n in 0..total {
        hub.publish_ok(&[
            ("topic", "flood"),
            ("id", &format!("m{n}")),
            ("data", &payload),
        ])
        .await;
    }
    assert!(
        hub.metric("herald_queue_overflows_total").await >= 1.0,
        "the queue never overflowed"
    );
    let last = format!("id: m{}\n", total - 1);
    let (raw, ended) = read_all_until(&mut slow, last.as_bytes(), Duration::from_secs(30)).await;
    assert!(!ended);
    assert!(
        hub.metric("herald_lagging_subscribers_total{action=\"catch_up\"}")
            .await
            >= 1.0
    );
    let expected: Vec<String> = (0..total).map(|n| format!("m{n}")).collect();
    assert_eq!(
        ids_in(&raw),
        expected,
        "every update, in order, exactly once"
    );
    // Live again afterwards.
    hub.publish_ok(&[("topic", "flood"), ("id", "after"), ("data", "x")])
        .await;
    let (raw, _) = read_all_until(&mut slow, b"id: after\n", SOON).await;
    assert!(!raw.is_empty());
}

#[tokio::test]
async fn without_history_for_it_a_slow_subscriber_is_closed_and_resumes_with_a_gap() {
    // The subscriber stalls for as long as publishing takes: keep --write-timeout out of the way.
    let hub = Hub::start(&[
        "--queue-size",
        "4",
        "--history-size",
        "5",
        "--write-timeout",
        "10min",
    ]);
    let mut slow = stalled_subscriber(&hub, "flood").await;
    hub.wait_subscriptions(1).await;
    let payload = "y".repeat(16 * 1024);
    for n in 0..400 {
        hub.publish_ok(&[
            ("topic", "flood"),
            ("id", &format!("m{n}")),
            ("data", &payload),
        ])
        .await;
    }
    // The stream ends (after what was queued), so the client reconnects.
    let (raw, ended) = read_all_until(&mut slow, b"never appears", Duration::from_secs(30)).await;
    assert!(ended, "the lagging stream should be closed");
    assert!(
        raw.ends_with(b"0\r\n\r\n"),
        "a clean end of the chunked body"
    );
    assert!(
        hub.metric("herald_lagging_subscribers_total{action=\"close\"}")
            .await
            >= 1.0
    );
    hub.wait_subscriptions(0).await;
    let seen = ids_in(&raw);
    let last_seen = seen.last().expect("some updates were written").clone();
    // Reconnecting with Last-Event-ID tells the client about the gap, then replays what is kept.
    let mut resumed = hub
        .subscribe(
            "/.well-known/mercure?topic=flood",
            &[("last-event-id", &last_seen)],
        )
        .await;
    assert_eq!(resumed.next_event().await.event, "herald-gap");
    let kept: Vec<String> = resumed.events(5).await.into_iter().map(|e| e.id).collect();
    assert_eq!(kept, ["m395", "m396", "m397", "m398", "m399"]);
}

#[tokio::test]
async fn stalled_subscribers_keep_memory_bounded() {
    let hub = Hub::start(&["--queue-size", "64", "--history-size", "100"]);
    let mut stalled = Vec::new();
    for _ in 0..200 {
        stalled.push(stalled_subscriber(&hub, "big").await);
    }
    hub.wait_subscriptions(200).await;
    let before = crate::util::rss_kib(hub.pid());
    let payload = "z".repeat(64 * 1024);
    for n in 0..160 {
        hub.publish_ok(&[
            ("topic", "big"),
            ("id", &format!("b{n}")),
            ("data", &payload),
        ])
        .await;
    }
    // 10 MB published to 200 readers that never read: 2 GB if anything were copied per reader.
    let after = crate::util::rss_kib(hub.pid());
    let grown_mb = after.saturating_sub(before) / 1024;
    assert!(grown_mb < 200, "RSS grew by {grown_mb} MB");
}
