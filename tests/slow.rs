//! Subscribers that never read, and idle HTTP/2 connections: on every path (a fresh HTTP/1.1
//! connection, HTTP/1.1 after another request on the same keep-alive connection, h2c) a client
//! that stops reading is closed at `--write-timeout` and counted, what it pins is bounded in
//! bytes (`--queue-bytes`), the hub's memory comes back, and a reader alongside misses nothing.
//! An h2c connection with no stream gets a GOAWAY after `--header-timeout`; one with a live
//! stream stays open.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::util::{Hub, SOON, rss_kib};

/// Serializes the tests that measure the hub's memory or publish tens of megabytes.
pub(crate) static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Size of the updates the stalled subscribers are flooded with.
const BIG: usize = 60 * 1024;

/// A connection with a tiny receive buffer, so the hub's writes block soon once it stops
/// reading.
async fn small_buffer_connection(hub: &Hub) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(hub.addr).await.unwrap()
}

fn subscribe_head(topic: &str) -> String {
    format!("GET /.well-known/mercure?topic={topic} HTTP/1.1\r\nHost: herald\r\n\r\n")
}

/// Reads until `needle` has been seen; panics after `limit`.
async fn read_until(stream: &mut TcpStream, needle: &[u8], limit: Duration) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + limit;
    let mut scanned: usize = 0;
    // Only bytes not searched before are searched (plus an overlap for a needle across reads).
    while !raw[scanned.saturating_sub(needle.len())..]
        .windows(needle.len())
        .any(|w| w == needle)
    {
        scanned = raw.len();
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{:?} not seen in time",
            String::from_utf8_lossy(needle)
        );
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => raw.extend_from_slice(&buffer[..n]),
            other => panic!(
                "{:?} not seen ({other:?}) in {} bytes",
                String::from_utf8_lossy(needle),
                raw.len()
            ),
        }
    }
    raw
}

/// True when the hub closed (or reset) the connection: everything it had sent is read and then
/// the end, within `limit`.
async fn closed_by_hub(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buffer = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/2 client: frames written and read by hand, so nothing reads on our behalf.

mod h2 {
    use super::*;

    pub(super) const DATA: u8 = 0x0;
    pub(super) const HEADERS: u8 = 0x1;
    pub(super) const SETTINGS: u8 = 0x4;
    pub(super) const PING: u8 = 0x6;
    pub(super) const GOAWAY: u8 = 0x7;
    pub(super) const END_STREAM: u8 = 0x1;

    pub(super) struct Frame {
        pub kind: u8,
        pub flags: u8,
        pub stream: u32,
        pub payload: Vec<u8>,
    }

    pub(super) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let length = payload.len() as u32;
        let mut out = length.to_be_bytes()[1..].to_vec();
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// An HPACK string literal: length with a 7-bit prefix, no Huffman coding.
    fn literal(out: &mut Vec<u8>, text: &str) {
        let mut length = text.len();
        if length < 127 {
            out.push(length as u8);
        } else {
            out.push(127);
            length -= 127;
            while length >= 128 {
                out.push((length % 128) as u8 | 0x80);
                length /= 128;
            }
            out.push(length as u8);
        }
        out.extend_from_slice(text.as_bytes());
    }

    /// The connection preface, empty settings, an acknowledgement of the hub's settings, and a
    /// `GET path` on stream 1.
    pub(super) fn open_with_get(path: &str) -> Vec<u8> {
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        out.extend(frame(SETTINGS, 0, 0, &[]));
        out.extend(frame(SETTINGS, 0x1, 0, &[]));
        out.extend(get(1, path));
        out
    }

    /// `GET path` on `stream` (HEADERS with END_STREAM and END_HEADERS).
    pub(super) fn get(stream: u32, path: &str) -> Vec<u8> {
        // :method GET, :scheme http (static table), :path and :authority literals.
        let mut block = vec![0x82, 0x86, 0x04];
        literal(&mut block, path);
        block.push(0x01);
        literal(&mut block, "herald");
        frame(HEADERS, 0x4 | END_STREAM, stream, &block)
    }

    /// Reads one frame; `None` at the end of the connection or after `limit`.
    pub(super) async fn read_frame(stream: &mut TcpStream, limit: Duration) -> Option<Frame> {
        let read = async {
            let mut head = [0u8; 9];
            stream.read_exact(&mut head).await.ok()?;
            let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; length];
            stream.read_exact(&mut payload).await.ok()?;
            Some(Frame {
                kind: head[3],
                flags: head[4],
                stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
                payload,
            })
        };
        tokio::time::timeout(limit, read).await.ok().flatten()
    }
}

// ---------------------------------------------------------------------------------------------
// The write timeout, on each path

/// How a stalled subscriber reaches the hub.
#[derive(Debug, Clone, Copy)]
enum Path {
    /// A fresh HTTP/1.1 connection (the hub's own event-stream path).
    Fresh,
    /// HTTP/1.1, after `GET /healthz` on the same keep-alive connection (hyper's path).
    AfterHealthz,
    /// h2c with prior knowledge.
    H2c,
}

/// Opens a subscription to `topic` on `path` and leaves it unread once it is live.
async fn stalled_subscriber(hub: &Hub, path: Path, topic: &str) -> TcpStream {
    let mut stream = small_buffer_connection(hub).await;
    match path {
        Path::Fresh => {
            stream
                .write_all(subscribe_head(topic).as_bytes())
                .await
                .unwrap();
            read_until(&mut stream, b"\r\n\r\n", SOON).await;
        }
        Path::AfterHealthz => {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n")
                .await
                .unwrap();
            let health = read_until(&mut stream, b"}", SOON).await;
            assert!(health.starts_with(b"HTTP/1.1 200"));
            stream
                .write_all(subscribe_head(topic).as_bytes())
                .await
                .unwrap();
            read_until(&mut stream, b"text/event-stream", SOON).await;
        }
        Path::H2c => {
            let open = h2::open_with_get(&format!("/.well-known/mercure?topic={topic}"));
            stream.write_all(&open).await.unwrap();
            loop {
                let frame = h2::read_frame(&mut stream, SOON).await.expect("a frame");
                if frame.kind == h2::HEADERS && frame.stream == 1 {
                    break;
                }
            }
        }
    }
    stream
}

/// Publishes `BIG` updates to `topic` every few milliseconds until stopped; returns their ids.
fn flood(hub: &Hub, topic: &'static str, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let url = hub.url("/.well-known/mercure");
    tokio::spawn(async move {
        let client = crate::util::client();
        let token = crate::util::token(&["*"], &[]);
        let payload = "x".repeat(BIG);
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) && sent < 2000 {
            let id = format!("u{sent}");
            let response = client
                .post(&url)
                .bearer_auth(&token)
                .form(&[("topic", topic), ("id", &id), ("data", &payload)])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            sent += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        sent
    })
}

/// A subscriber that never reads, on `path`, is closed at the write deadline and counted;
/// a reader of the same topic meanwhile gets every update in order; the hub's memory returns.
async fn stalled_subscriber_is_closed_at_the_write_deadline(path: Path) {
    let _heavy = HEAVY.lock().await;
    let hub = Hub::start(&[
        "--write-timeout",
        "2s",
        "--history-size",
        "50",
        "--heartbeat",
        "1s",
    ]);
    let mut reader = hub.subscribe("/.well-known/mercure?topic=flood", &[]).await;
    hub.wait_subscriptions(1).await;
    // Warm up the allocator with the same traffic, then take the baseline.
    hub.publish_ok(&[
        ("topic", "flood"),
        ("id", "warm"),
        ("data", &"w".repeat(BIG)),
    ])
    .await;
    assert_eq!(reader.next_event().await.id, "warm");
    let baseline = rss_kib(hub.pid());

    let mut stalled = stalled_subscriber(&hub, path, "flood").await;
    hub.wait_subscriptions(2).await;
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = flood(&hub, "flood", Arc::clone(&stop));
    let started = Instant::now();
    // The stalled subscriber is dropped once its writes have waited 2 s; the reader stays.
    let deadline = started + Duration::from_secs(30);
    let mut received = Vec::new();
    loop {
        // Keep the reader reading while we wait.
        let window = Instant::now() + Duration::from_millis(250);
        while let Some(left) = window.checked_duration_since(Instant::now()) {
            match reader.next_event_within(left).await {
                Some(event) => received.push(event.id),
                None => break,
            }
        }
        // Closed and counted (history is short, so the lag policy may end the stream first:
        // the connection must still be closed at the write deadline).
        if hub.subscriptions().await == 1 && hub.metric("herald_write_timeouts_total").await >= 1.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{path:?}: the stalled subscriber was never closed"
        );
    }
    let closed_after = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let sent = publisher.await.unwrap();
    assert!(
        hub.metric("herald_write_timeouts_total").await >= 1.0,
        "{path:?}: the write timeout was not counted"
    );
    assert!(
        closed_by_hub(&mut stalled, SOON).await,
        "{path:?}: the connection is still open"
    );
    // Every update, in order, for the reader.
    while received.len() < sent as usize {
        let event = reader.next_event().await;
        received.push(event.id);
    }
    let expected: Vec<String> = (0..sent).map(|n| format!("u{n}")).collect();
    assert_eq!(received, expected, "{path:?}: the reader missed updates");
    // Memory comes back once the stalled subscriber is gone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(hub.pid());
    eprintln!(
        "{path:?}: closed after {closed_after:?} and {sent} updates of {BIG} B; \
         RSS {baseline} KiB -> {after} KiB"
    );
    assert!(
        after < baseline + 16 * 1024,
        "{path:?}: RSS {baseline} KiB -> {after} KiB"
    );
}

#[tokio::test]
async fn a_fresh_http1_subscriber_that_never_reads_is_closed_at_the_write_deadline() {
    stalled_subscriber_is_closed_at_the_write_deadline(Path::Fresh).await;
}

#[tokio::test]
async fn a_keep_alive_http1_subscriber_that_never_reads_is_closed_at_the_write_deadline() {
    stalled_subscriber_is_closed_at_the_write_deadline(Path::AfterHealthz).await;
}

#[tokio::test]
async fn an_h2c_subscriber_that_never_reads_is_closed_at_the_write_deadline() {
    stalled_subscriber_is_closed_at_the_write_deadline(Path::H2c).await;
}

#[tokio::test]
async fn a_large_answer_that_is_never_read_is_closed_at_the_write_deadline() {
    let _heavy = HEAVY.lock().await;
    let hub = Hub::start(&["--write-timeout", "2s", "--history-size", "200"]);
    let payload = "j".repeat(BIG);
    for n in 0..120 {
        hub.publish_ok(&[
            ("topic", "big"),
            ("id", &format!("j{n}")),
            ("data", &payload),
        ])
        .await;
    }
    // About 7 MB of JSON, more than the kernel's buffers take, on hyper's path; never read.
    let mut stalled = small_buffer_connection(&hub).await;
    stalled
        .write_all(b"GET /topics/big/events?limit=120 HTTP/1.1\r\nHost: herald\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    while hub.metric("herald_write_timeouts_total").await < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the stalled answer was never cut off"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(closed_by_hub(&mut stalled, SOON).await, "still open");
}

#[tokio::test]
async fn a_tls_subscriber_that_never_reads_is_closed_at_the_write_deadline() {
    let _heavy = HEAVY.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = crate::util::TempDir::new("slow-tls");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let hub = Hub::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--write-timeout",
        "2s",
        "--history-size",
        "50",
    ]);
    let base = format!("https://localhost:{}", hub.addr.port());
    let https = reqwest::Client::builder()
        .no_proxy()
        .resolve("localhost", hub.addr)
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let metric = |name: &'static str| {
        let (https, base) = (https.clone(), base.clone());
        async move {
            let text = https
                .get(format!("{base}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .map_or(0.0, |value| value.trim().parse::<f64>().unwrap())
        }
    };

    // HTTP/1.1 by ALPN over TLS (always hyper's), a tiny receive buffer, never read.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let server = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = small_buffer_connection(&hub).await;
    let mut stalled = connector.connect(server, tcp).await.unwrap();
    stalled
        .write_all(subscribe_head("tls").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(SOON, stalled.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the response head");
        head.extend_from_slice(&buffer[..n]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"));

    let payload = "t".repeat(BIG);
    let token = crate::util::token(&["*"], &[]);
    let started = Instant::now();
    let mut sent = 0;
    while metric("herald_write_timeouts_total").await < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the stalled TLS subscriber was never closed"
        );
        for _ in 0..10 {
            let response = https
                .post(format!("{base}/.well-known/mercure"))
                .bearer_auth(&token)
                .form(&[("topic", "tls"), ("data", payload.as_str())])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            sent += 1;
        }
    }
    eprintln!(
        "TLS: closed after {:?} and {sent} updates",
        started.elapsed()
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
    // The hub closed it: what it had sent, then the end.
    let closed = tokio::time::timeout(SOON, async {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match stalled.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the TLS connection is still open");
}

#[tokio::test]
async fn a_healthy_idle_stream_outlives_the_write_timeout_on_every_path() {
    let hub = Hub::start(&["--write-timeout", "1s", "--heartbeat", "300ms"]);
    // Each path, read promptly: heartbeats for three write timeouts, then an update.
    let mut fresh = hub.subscribe("/.well-known/mercure?topic=calm", &[]).await;
    let mut h2c = small_buffer_connection(&hub).await;
    h2c.write_all(&h2::open_with_get("/.well-known/mercure?topic=calm"))
        .await
        .unwrap();
    hub.wait_subscriptions(2).await;
    let until = Instant::now() + Duration::from_secs(3);
    let mut h2_frames = 0;
    while Instant::now() < until {
        assert!(fresh.read_chunk(SOON).await, "the HTTP/1.1 stream ended");
        let frame = h2::read_frame(&mut h2c, SOON).await.expect("h2c ended");
        assert_ne!(frame.kind, h2::GOAWAY);
        h2_frames += 1;
    }
    assert!(h2_frames >= 5, "{h2_frames} frames");
    hub.publish_ok(&[("topic", "calm"), ("id", "still-here"), ("data", "x")])
        .await;
    assert_eq!(fresh.next_event().await.id, "still-here");
    loop {
        let frame = h2::read_frame(&mut h2c, SOON).await.expect("h2c ended");
        if frame.kind == h2::DATA && String::from_utf8_lossy(&frame.payload).contains("still-here")
        {
            break;
        }
    }
    assert_eq!(hub.metric("herald_write_timeouts_total").await, 0.0);
}

// ---------------------------------------------------------------------------------------------
// The byte budget

#[tokio::test]
async fn stalled_subscribers_pin_at_most_their_byte_budget() {
    let _heavy = HEAVY.lock().await;
    // No write timeout within the test: the budget alone must bound them.
    let hub = Hub::start(&["--write-timeout", "10min", "--history-size", "20"]);
    let topics = ["s0", "s1", "s2", "s3", "s4"];
    // Every path: HTTP/1.1 fresh and after another request, h2c.
    let paths = [
        Path::Fresh,
        Path::AfterHealthz,
        Path::H2c,
        Path::AfterHealthz,
        Path::H2c,
    ];
    let mut stalled = Vec::new();
    for (topic, path) in topics.into_iter().zip(paths) {
        stalled.push(stalled_subscriber(&hub, path, topic).await);
    }
    hub.wait_subscriptions(5).await;
    hub.publish_ok(&[("topic", "warm"), ("data", &"w".repeat(BIG))])
        .await;
    let before = rss_kib(hub.pid());
    // 200 updates of 60 KB for each: without a byte budget each would pin its whole queue
    // (1,024 frames), here 200 × 60 KB × (data + frame) ≈ 24 MB each, 120 MB in all.
    let updates = 200;
    let payload = "z".repeat(BIG);
    let client = crate::util::client();
    let token = crate::util::token(&["*"], &[]);
    for n in 0..updates {
        let mut sends = Vec::new();
        for topic in topics {
            let id = format!("{topic}-{n}");
            sends.push(
                client
                    .post(hub.url("/.well-known/mercure"))
                    .bearer_auth(&token)
                    .form(&[("topic", topic), ("id", id.as_str()), ("data", &payload)])
                    .send(),
            );
        }
        for response in futures_util::future::join_all(sends).await {
            assert_eq!(response.unwrap().status(), 200);
        }
    }
    let after = rss_kib(hub.pid());
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!("5 stalled subscribers, {updates} × {BIG} B each: RSS grew by {grown_mib} MiB");
    assert!(
        hub.metric("herald_queue_overflows_total").await >= 5.0,
        "every stalled subscriber went over its budget"
    );
    assert!(grown_mib < 30, "RSS grew by {grown_mib} MiB");
    assert_eq!(hub.subscriptions().await, 5, "nobody was closed");
    drop(stalled);
}

#[tokio::test]
async fn over_its_byte_budget_a_slow_reader_catches_up_from_history_in_order() {
    // More than the kernel's socket buffers hold, so the queue fills.
    let hub = Hub::start(&[
        "--queue-bytes",
        "256KiB",
        "--history-size",
        "1000",
        "--write-timeout",
        "10min",
    ]);
    let mut slow = stalled_subscriber(&hub, Path::Fresh, "burst").await;
    hub.wait_subscriptions(1).await;
    let payload = "b".repeat(32 * 1024);
    let total = 400;
    for n in 0..total {
        hub.publish_ok(&[
            ("topic", "burst"),
            ("id", &format!("m{n}")),
            ("data", &payload),
        ])
        .await;
    }
    assert!(hub.metric("herald_queue_overflows_total").await >= 1.0);
    // Now it reads everything: catch-up from history, every update once, in order.
    let last = format!("id: m{}\n", total - 1);
    let raw = read_until(&mut slow, last.as_bytes(), Duration::from_secs(30)).await;
    let ids: Vec<String> = String::from_utf8_lossy(&raw)
        .lines()
        .filter_map(|line| line.strip_prefix("id: ").map(str::to_owned))
        .collect();
    let expected: Vec<String> = (0..total).map(|n| format!("m{n}")).collect();
    assert_eq!(ids, expected);
    assert!(
        hub.metric("herald_lagging_subscribers_total{action=\"catch_up\"}")
            .await
            >= 1.0
    );
}

// ---------------------------------------------------------------------------------------------
// Idle HTTP/2 connections

#[tokio::test]
async fn an_h2c_connection_without_a_stream_gets_a_goaway_after_the_header_timeout() {
    let hub = Hub::start(&["--header-timeout", "1s"]);
    let mut stream = TcpStream::connect(hub.addr).await.unwrap();
    stream
        .write_all(&h2::open_with_get("/healthz"))
        .await
        .unwrap();
    // The answer, to its end.
    loop {
        let frame = h2::read_frame(&mut stream, SOON).await.expect("a frame");
        if frame.kind == h2::DATA && frame.stream == 1 && frame.flags & h2::END_STREAM != 0 {
            break;
        }
    }
    let answered = Instant::now();
    // Then nothing is open: a GOAWAY at the idle budget, then the end of the connection.
    let goaway = loop {
        let frame = h2::read_frame(&mut stream, Duration::from_secs(5))
            .await
            .expect("the connection ended without a GOAWAY, or stayed open");
        if frame.kind == h2::GOAWAY {
            break frame;
        }
    };
    let waited = answered.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(4),
        "GOAWAY after {waited:?}"
    );
    // No error (a graceful GOAWAY names the highest stream id first, then the last one).
    assert_eq!(&goaway.payload[4..8], &[0, 0, 0, 0], "error code");
    // As a client would, answer the hub's PING; the connection then ends.
    let deadline = Instant::now() + SOON;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the connection stayed open after its GOAWAY"
        );
        match h2::read_frame(&mut stream, left).await {
            None => break,
            Some(frame) if frame.kind == h2::PING && frame.flags == 0 => {
                let _ = stream
                    .write_all(&h2::frame(h2::PING, 0x1, 0, &frame.payload))
                    .await;
            }
            Some(frame) if frame.kind == h2::GOAWAY => {
                assert_eq!(&frame.payload[..8], &[0, 0, 0, 1, 0, 0, 0, 0]);
            }
            Some(_) => {}
        }
    }
    let mut rest = Vec::new();
    let end = tokio::time::timeout(SOON, stream.read_to_end(&mut rest)).await;
    assert!(end.is_ok(), "the connection stayed open after its GOAWAY");
}

#[tokio::test]
async fn an_h2c_connection_with_a_live_stream_stays_open_past_the_header_timeout() {
    let hub = Hub::start(&["--header-timeout", "1s", "--heartbeat", "5s"]);
    let mut stream = TcpStream::connect(hub.addr).await.unwrap();
    stream
        .write_all(&h2::open_with_get("/.well-known/mercure?topic=kept"))
        .await
        .unwrap();
    hub.wait_subscriptions(1).await;
    // Three idle budgets of quiet (the heartbeat is slower): no GOAWAY, no close.
    let until = Instant::now() + Duration::from_secs(3);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        if let Some(frame) = h2::read_frame(&mut stream, left).await {
            assert_ne!(
                frame.kind,
                h2::GOAWAY,
                "a live stream's connection got a GOAWAY"
            );
        }
    }
    hub.publish_ok(&[("topic", "kept"), ("id", "alive"), ("data", "x")])
        .await;
    loop {
        let frame = h2::read_frame(&mut stream, SOON)
            .await
            .expect("the connection was closed");
        assert_ne!(frame.kind, h2::GOAWAY);
        if frame.kind == h2::DATA && String::from_utf8_lossy(&frame.payload).contains("alive") {
            break;
        }
    }
    // A second stream on the same connection, ended, leaves the first one open.
    stream.write_all(&h2::get(3, "/healthz")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hub.subscriptions().await, 1);
}

// ---------------------------------------------------------------------------------------------
// Configuration

#[test]
fn bad_slow_consumer_limits_exit_64_with_one_line() {
    for (args, env, mentions) in [
        (
            vec!["serve", "--write-timeout", "0s"],
            vec![],
            "--write-timeout",
        ),
        (
            vec!["serve", "--queue-bytes", "lots"],
            vec![],
            "--queue-bytes",
        ),
        (
            vec!["serve"],
            vec![("HERALD_WRITE_TIMEOUT", "soon")],
            "--write-timeout",
        ),
        (
            vec!["serve"],
            vec![("HERALD_QUEUE_BYTES", "0")],
            "--queue-bytes",
        ),
    ] {
        let (code, _, stderr) = crate::util::run_cli(&args, &env);
        assert_eq!(code, 64, "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(mentions), "{stderr}");
    }
}
