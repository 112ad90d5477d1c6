//! Hardening: every limit answers its status (problem+json), slow and hostile clients
//! (slowloris, subscribers that never read, a reconnect storm), private updates checked against
//! an oracle under random topics, selectors and claims, no field injection, JSON logs.
//!
//! The heavy tests (1,000 stalled subscribers, 10,000 connections) take a lock so they never run
//! at the same time as each other.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use jsonwebtoken::{EncodingKey, Header};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::util::{Hub, KEY, SOON, client, encode_form, problem, rss_kib, token};

/// Serializes the tests that hold thousands of sockets.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A TCP connection to the hub, from `source` (a 127.0.0.x address) when given, with a small
/// receive buffer when `small_buffer`.
async fn connect(addr: SocketAddr, source: Option<Ipv4Addr>, small_buffer: bool) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if small_buffer {
        socket.set_recv_buffer_size(4096).unwrap();
    }
    if let Some(source) = source {
        socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
    }
    socket.connect(addr).await.unwrap()
}

/// Sends `request` and reads the whole answer until the server closes (at most `limit`).
async fn exchange(stream: &mut TcpStream, request: &[u8], limit: Duration) -> String {
    let _ = stream.write_all(request).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut raw)).await;
    String::from_utf8_lossy(&raw).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

fn header_of<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Asserts a raw response is a problem+json with `status` and returns its body.
fn assert_problem(response: &str, status: u16) -> serde_json::Value {
    assert_eq!(status_of(response), status, "{response}");
    assert_eq!(
        header_of(response, "content-type"),
        Some("application/problem+json"),
        "{response}"
    );
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap();
    let problem: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(problem["status"].as_u64(), Some(u64::from(status)));
    problem
}

fn subscribe_request(topic: &str) -> Vec<u8> {
    format!("GET /.well-known/mercure?topic={topic} HTTP/1.1\r\nHost: herald\r\n\r\n").into_bytes()
}

/// Reads from `stream` until `needle` was seen (or `limit` passed); returns everything read.
async fn read_until(stream: &mut TcpStream, needle: &[u8], limit: Duration) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + limit;
    while !raw.windows(needle.len()).any(|w| w == needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buffer[..n]),
        }
    }
    raw
}

/// Reads until the response head is complete; returns what was read.
async fn read_head(stream: &mut TcpStream, limit: Duration) -> String {
    String::from_utf8_lossy(&read_until(stream, b"\r\n\r\n", limit).await).into_owned()
}

fn signed(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Limits

#[tokio::test]
async fn the_connection_limit_answers_503_with_retry_after_and_frees_slots() {
    let hub = Hub::start(&["--max-connections", "3"]);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect(hub.addr, None, false).await;
        stream.write_all(&subscribe_request("held")).await.unwrap();
        assert_eq!(status_of(&read_head(&mut stream, SOON).await), 200);
        held.push(stream);
    }
    let mut extra = connect(hub.addr, None, false).await;
    let response = exchange(
        &mut extra,
        b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n",
        SOON,
    )
    .await;
    let problem = assert_problem(&response, 503);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("3 connections")
    );
    assert_eq!(header_of(&response, "retry-after"), Some("5"));
    assert_eq!(header_of(&response, "connection"), Some("close"));
    // A closed connection frees its slot.
    held.pop();
    let deadline = Instant::now() + SOON;
    loop {
        let mut stream = connect(hub.addr, None, false).await;
        let response = exchange(
            &mut stream,
            b"GET /metrics HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            SOON,
        )
        .await;
        if status_of(&response) == 200 {
            let refused: f64 = response
                .lines()
                .find_map(|line| {
                    line.strip_prefix("herald_limit_rejections_total{limit=\"connections\"} ")
                })
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0.0);
            assert!(refused >= 1.0, "{response}");
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_per_address_limit_answers_429_and_other_addresses_still_connect() {
    let hub = Hub::start(&["--max-connections-per-ip", "2"]);
    let source = Ipv4Addr::new(127, 0, 0, 9);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(hub.addr, Some(source), false).await;
        stream.write_all(&subscribe_request("a")).await.unwrap();
        assert_eq!(status_of(&read_head(&mut stream, SOON).await), 200);
        held.push(stream);
    }
    let mut third = connect(hub.addr, Some(source), false).await;
    let response = exchange(&mut third, &subscribe_request("a"), SOON).await;
    assert_problem(&response, 429);
    assert_eq!(header_of(&response, "retry-after"), Some("10"));
    // Another address is not affected.
    let mut other = connect(hub.addr, Some(Ipv4Addr::new(127, 0, 0, 10)), false).await;
    other.write_all(&subscribe_request("a")).await.unwrap();
    assert_eq!(status_of(&read_head(&mut other, SOON).await), 200);
    drop(held);
    drop(other);
    let deadline = Instant::now() + SOON;
    loop {
        let mut again = connect(hub.addr, Some(source), false).await;
        let response = exchange(
            &mut again,
            b"GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            SOON,
        )
        .await;
        if status_of(&response) == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the address was never let in again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn topic_limits_answer_400_problems() {
    let hub = Hub::start(&[
        "--max-topics-per-subscription",
        "3",
        "--max-topic-length",
        "64",
    ]);
    let url = |query: &str| hub.url(&format!("/.well-known/mercure?{query}"));
    let ok = client()
        .get(url("topic=a&topic=b&topic=c"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    drop(ok);
    let (status, body) = problem(
        client()
            .get(url("topic=a&topic=b&topic=c&topic=d"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().contains("at most 3"));
    let long = "x".repeat(65);
    let (status, _) = problem(
        client()
            .get(url(&format!("topic={long}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    // The length limit holds for published topics too.
    let (status, _) = hub.publish(&[("topic", &long), ("data", "x")]).await;
    assert_eq!(status, 400);
    assert_eq!(
        hub.metric("herald_limit_rejections_total{limit=\"topics_per_subscription\"}")
            .await,
        1.0
    );
    assert_eq!(
        hub.metric("herald_limit_rejections_total{limit=\"topic_length\"}")
            .await,
        2.0
    );
}

#[tokio::test]
async fn the_publish_rate_answers_429_with_retry_after_per_publisher() {
    let hub = Hub::start(&["--publish-rate", "1/s", "--publish-burst", "2"]);
    let alice = signed(serde_json::json!({"sub": "alice", "mercure": {"publish": ["*"]}}));
    // Another token for the same subject shares the bucket.
    let alice_again = signed(serde_json::json!({"sub": "alice", "mercure": {"publish": ["a"]}}));
    let bob = signed(serde_json::json!({"sub": "bob", "mercure": {"publish": ["*"]}}));
    let post = |token: String| {
        client()
            .post(hub.url("/.well-known/mercure"))
            .bearer_auth(token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode_form(&[("topic", "a"), ("data", "x")]))
            .send()
    };
    assert_eq!(post(alice.clone()).await.unwrap().status(), 200);
    assert_eq!(post(alice_again.clone()).await.unwrap().status(), 200);
    let refused = post(alice.clone()).await.unwrap();
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .unwrap()
            .to_str()
            .unwrap(),
        "1"
    );
    let (status, body) = problem(refused).await;
    assert_eq!(status, 429);
    assert!(body["detail"].as_str().unwrap().contains("1/s"), "{body}");
    assert_eq!(post(bob).await.unwrap().status(), 200);
    // Tokens without `sub` count per token.
    assert_eq!(hub.publish(&[("topic", "a")]).await.0, 200);
    // After the advertised wait, alice may publish again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(post(alice).await.unwrap().status(), 200);
    assert_eq!(
        hub.metric("herald_limit_rejections_total{limit=\"publish_rate\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn oversized_headers_get_431_from_hyper_and_bodies_413() {
    let hub = Hub::start(&["--max-body", "1KiB"]);
    let mut stream = connect(hub.addr, None, false).await;
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20 * 1024)
    );
    let response = exchange(&mut stream, request.as_bytes(), SOON).await;
    // hyper answers before any handler runs: the status is right, the body is empty.
    assert_eq!(status_of(&response), 431, "{response}");
    // More than 100 headers is refused the same way.
    let mut stream = connect(hub.addr, None, false).await;
    let many: String = (0..120).map(|n| format!("X-H{n}: v\r\n")).collect();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: h\r\n{many}\r\n");
    let response = exchange(&mut stream, request.as_bytes(), SOON).await;
    assert_eq!(status_of(&response), 431, "{response}");
    let (status, _) = hub
        .publish(&[("topic", "a"), ("data", &"x".repeat(2000))])
        .await;
    assert_eq!(status, 413);
    assert_eq!(
        hub.metric("herald_limit_rejections_total{limit=\"body\"}")
            .await,
        1.0
    );
}

// ---------------------------------------------------------------------------------------------
// The HTTP/1.1 layer (src/http/h1) on subscribe streams: heads in pieces, keep-alive, refusals.

#[tokio::test]
async fn a_subscribe_head_in_pieces_opens_a_chunked_stream() {
    let hub = Hub::start(&[]);
    let mut stream = connect(hub.addr, None, false).await;
    let request = b"GET /events?topic=pieces HTTP/1.1\r\nHost: h\r\nLast-Event-ID: nope\r\n\r\n";
    for piece in request.chunks(7) {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let head = read_head(&mut stream, SOON).await;
    assert_eq!(status_of(&head), 200, "{head}");
    assert_eq!(header_of(&head, "content-type"), Some("text/event-stream"));
    assert_eq!(header_of(&head, "transfer-encoding"), Some("chunked"));
    assert_eq!(header_of(&head, "x-accel-buffering"), Some("no"));
    assert_eq!(header_of(&head, "last-event-id"), Some("earliest"));
    assert!(header_of(&head, "date").is_some(), "{head}");
    hub.wait_subscriptions(1).await;
    hub.publish_ok(&[("topic", "pieces"), ("data", "one"), ("id", "p1")])
        .await;
    let raw = read_until(&mut stream, b"id: p1\ndata: one\n\n\r\n", SOON).await;
    let text = String::from_utf8_lossy(&raw);
    // Each chunk is framed: size in hex, CRLF, the frames, CRLF.
    assert!(text.contains("12\r\nid: p1\ndata: one\n\n\r\n"), "{text:?}");
}

/// One rule for every HTTP/1.1 request: a handler's refusal is an ordinary response, so the
/// connection stays open and the next request (here pipelined) is answered on it.
#[tokio::test]
async fn a_refused_subscribe_is_a_problem_and_the_connection_stays_open() {
    let hub = Hub::start(&[]);
    let mut stream = connect(hub.addr, None, false).await;
    let response = exchange(
        &mut stream,
        b"GET /.well-known/mercure HTTP/1.1\r\nHost: h\r\nOrigin: https://elsewhere\r\n\r\n\
          GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        SOON,
    )
    .await;
    let (refusal, health) = response
        .split_once("HTTP/1.1 200 OK")
        .unwrap_or_else(|| panic!("no answer to the second request: {response}"));
    let problem = assert_problem(refusal, 400);
    assert!(problem["detail"].as_str().unwrap().contains("topic"));
    assert_eq!(header_of(refusal, "connection"), None);
    let length: usize = header_of(refusal, "content-length")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(refusal.split_once("\r\n\r\n").unwrap().1.len(), length);
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    assert!(health.contains("connection: close"), "{health}");
}

#[tokio::test]
async fn other_requests_on_the_connection_go_to_hyper_first() {
    let hub = Hub::start(&[]);
    // Keep-alive: a request hyper serves, then a subscription on the same connection.
    let mut stream = connect(hub.addr, None, false).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let raw = read_until(&mut stream, b"}", SOON).await;
    assert_eq!(status_of(&String::from_utf8_lossy(&raw)), 200);
    stream.write_all(&subscribe_request("after")).await.unwrap();
    let raw = read_until(&mut stream, b"\r\n:\n", SOON).await;
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    hub.wait_subscriptions(1).await;
    hub.publish_ok(&[("topic", "after"), ("data", "kept alive")])
        .await;
    read_until(&mut stream, b"data: kept alive\n", SOON).await;

    // HTTP/1.0 subscribers are hyper's too: the stream ends when the connection does.
    let mut old = connect(hub.addr, None, false).await;
    old.write_all(b"GET /.well-known/mercure?topic=old HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let raw = read_until(&mut old, b"\r\n:\n", SOON).await;
    assert_eq!(status_of(&String::from_utf8_lossy(&raw)), 200);
    hub.wait_subscriptions(2).await;
    hub.publish_ok(&[("topic", "old"), ("data", "1.0")]).await;
    read_until(&mut old, b"data: 1.0\n\n", SOON).await;

    // A subscribe head too large is refused by hyper as any other.
    let mut big = connect(hub.addr, None, false).await;
    let request = format!(
        "GET /events?topic=x HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20 * 1024)
    );
    let response = exchange(&mut big, request.as_bytes(), SOON).await;
    assert_eq!(status_of(&response), 431, "{response}");
}

#[tokio::test]
async fn a_subscriber_that_keeps_sending_is_cut_off() {
    let hub = Hub::start(&[]);
    let mut stream = connect(hub.addr, None, false).await;
    stream
        .write_all(&subscribe_request("chatty"))
        .await
        .unwrap();
    read_until(&mut stream, b"\r\n:\n", SOON).await;
    hub.wait_subscriptions(1).await;
    // A little is read and ignored...
    stream.write_all(b"hello?").await.unwrap();
    hub.publish_ok(&[("topic", "chatty"), ("data", "still")])
        .await;
    read_until(&mut stream, b"data: still\n", SOON).await;
    // ...but past the size of a request head the connection is closed.
    let garbage = vec![b'g'; 64 * 1024];
    let _ = stream.write_all(&garbage).await;
    hub.wait_subscriptions(0).await;
}

// ---------------------------------------------------------------------------------------------
// Slow and hostile clients

/// Writes `bytes` one at a time, `every` apart, until the server closes; returns when it did.
async fn trickle(mut stream: TcpStream, bytes: Vec<u8>, every: Duration) -> Option<Duration> {
    let start = Instant::now();
    let (mut reader, mut writer) = stream.split();
    let writing = async {
        for byte in bytes.iter().cycle() {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(every).await;
        }
    };
    let reading = async {
        let mut sink = Vec::new();
        let _ = reader.read_to_end(&mut sink).await;
    };
    tokio::select! {
        () = reading => Some(start.elapsed()),
        () = writing => Some(start.elapsed()),
        () = tokio::time::sleep(Duration::from_secs(8)) => None,
    }
}

#[tokio::test]
async fn slowloris_and_silent_connections_are_cut_off_by_the_header_timeout() {
    let hub = Hub::start(&["--header-timeout", "1s"]);
    // A well-behaved subscriber on the same hub is not affected by the deadline.
    let mut subscriber = hub.subscribe("/.well-known/mercure?topic=calm", &[]).await;

    let mut headers = b"GET /healthz HTTP/1.1\r\nHost: h\r\n".to_vec();
    headers.extend_from_slice(&b"X-Slow: y\r\n".repeat(100));
    let h2_preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // A subscribe request's head is read by the hub itself, not hyper: same deadline.
    let mut subscribe = b"GET /.well-known/mercure?topic=t HTTP/1.1\r\nHost: h\r\n".to_vec();
    subscribe.extend_from_slice(&b"X-Slow: y\r\n".repeat(100));
    let cases = [
        ("headers trickled", headers),
        ("HTTP/2 preface trickled", h2_preface),
        ("subscribe head trickled", subscribe),
    ];
    for (label, bytes) in cases {
        let stream = connect(hub.addr, None, false).await;
        let elapsed = trickle(stream, bytes, Duration::from_millis(100))
            .await
            .unwrap_or_else(|| panic!("{label}: never cut off"));
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
            "{label}: cut off after {elapsed:?}"
        );
    }
    // A connection that sends nothing at all.
    let mut silent = connect(hub.addr, None, false).await;
    let start = Instant::now();
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "a silent connection was never closed");
    assert!(start.elapsed() >= Duration::from_millis(900));

    // The subscriber, open for more than the timeout, still receives.
    hub.publish_ok(&[("topic", "calm"), ("data", "still here")])
        .await;
    assert_eq!(subscriber.next_event().await.data, "still here");
    assert_eq!(hub.get_json("/healthz").await["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_stalled_subscribers_and_10_mb_leave_memory_bounded() {
    let _heavy = HEAVY.lock().await;
    let hub = Hub::start(&["--history-size", "100"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = rss_kib(hub.pid());
    let count = 1000;
    let mut stalled = Vec::with_capacity(count);
    for n in 0..count {
        // Spread over source addresses, as real clients are.
        let source = Ipv4Addr::new(127, 0, 1, (n % 200) as u8 + 1);
        let mut stream = connect(hub.addr, Some(source), true).await;
        stream.write_all(&subscribe_request("flood")).await.unwrap();
        stalled.push(stream);
    }
    hub.wait_subscriptions(count as u64).await;
    let subscribed = rss_kib(hub.pid());

    // 10 MB: 640 updates of 16 KiB, each fanned out to every stalled subscriber.
    let payload = "x".repeat(16 * 1024);
    let started = Instant::now();
    for n in 0..640 {
        hub.publish_ok(&[
            ("topic", "flood"),
            ("id", &format!("f{n}")),
            ("data", &payload),
        ])
        .await;
    }
    let published = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(hub.pid());
    let grown_mib = after.saturating_sub(subscribed) / 1024;
    eprintln!(
        "stalled: idle {idle} KiB, {count} subscribers {subscribed} KiB, after 10 MB {after} KiB \
         (+{grown_mib} MiB), published in {published:?}"
    );
    // 1,000 copies of 10 MB would be 10 GB; what stays is history (100 updates), what the
    // kernel did not take, and one chunk per subscriber at most.
    assert!(grown_mib < 160, "RSS grew by {grown_mib} MiB");
    // The hub still serves: a fresh subscriber gets the next update at once.
    let mut fresh = hub.subscribe("/.well-known/mercure?topic=flood", &[]).await;
    hub.publish_ok(&[("topic", "flood"), ("data", "after")])
        .await;
    let mut event = fresh.next_event().await;
    while event.data != "after" {
        event = fresh.next_event().await;
    }
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(15);
    while hub.subscriptions().await > 1 {
        assert!(
            Instant::now() < deadline,
            "stalled subscribers were not removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_of_10000_clients_is_survived() {
    let _heavy = HEAVY.lock().await;
    let hub = Hub::start(&["--heartbeat", "30s"]);
    let addr = hub.addr;
    let count: usize = 10_000;
    let started = Instant::now();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<Result<TcpStream, String>>(count);
    for n in 0..count {
        let done = done_tx.clone();
        tokio::spawn(async move {
            let source = Ipv4Addr::new(127, 0, 2 + (n / 250) as u8, (n % 250) as u8 + 1);
            let result = async {
                let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
                socket
                    .bind(SocketAddr::new(IpAddr::V4(source), 0))
                    .map_err(|e| e.to_string())?;
                let mut stream =
                    tokio::time::timeout(Duration::from_secs(30), socket.connect(addr))
                        .await
                        .map_err(|_| "connect timed out".to_owned())?
                        .map_err(|e| e.to_string())?;
                stream
                    .write_all(&subscribe_request("storm"))
                    .await
                    .map_err(|e| e.to_string())?;
                let head = read_head(&mut stream, Duration::from_secs(30)).await;
                if head.starts_with("HTTP/1.1 200") {
                    Ok(stream)
                } else {
                    Err(format!("answered {head:?}"))
                }
            }
            .await;
            let _ = done.send(result).await;
        });
    }
    drop(done_tx);
    let mut open = Vec::with_capacity(count);
    let mut failures = Vec::new();
    while let Some(result) = done_rx.recv().await {
        match result {
            Ok(stream) => open.push(stream),
            Err(error) => failures.push(error),
        }
    }
    let connected_in = started.elapsed();
    assert!(
        failures.is_empty(),
        "{} of {count} failed, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(open.len(), count);
    hub.wait_subscriptions(count as u64).await;
    eprintln!("storm: {count} subscribers connected in {connected_in:?}");
    assert!(
        connected_in < Duration::from_secs(60),
        "took {connected_in:?}"
    );

    // Every one of them receives the next update.
    hub.publish_ok(&[("topic", "storm"), ("data", "after-the-storm")])
        .await;
    let mut readers = tokio::task::JoinSet::new();
    for mut stream in open {
        readers.spawn(async move {
            let mut raw = Vec::new();
            let mut buffer = [0u8; 512];
            let deadline = Instant::now() + Duration::from_secs(30);
            while !raw.windows(15).any(|w| w == b"after-the-storm") {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, stream.read(&mut buffer)).await {
                    Ok(Ok(n)) if n > 0 => raw.extend_from_slice(&buffer[..n]),
                    _ => return false,
                }
            }
            true
        });
    }
    let mut received = 0;
    while let Some(result) = readers.join_next().await {
        received += usize::from(result.unwrap());
    }
    assert_eq!(received, count, "not every subscriber got the update");
    assert_eq!(hub.get_json("/healthz").await["status"], "ok");
    // All gone: the hub forgets them.
    let deadline = Instant::now() + Duration::from_secs(30);
    while hub.subscriptions().await > 0 {
        assert!(Instant::now() < deadline, "subscribers were not removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Security

const TOPICS: &[&str] = &[
    "https://example.com/books/1",
    "https://example.com/books/2",
    "https://example.com/books/1/reviews",
    "https://example.com/authors/7",
    "urn:herald:a",
    "urn:herald:b",
];

const SELECTORS: &[&str] = &[
    "https://example.com/books/1",
    "https://example.com/books/2",
    "https://example.com/books/{id}",
    "https://example.com/{kind}/1",
    "https://example.com/{kind}/{id}",
    "https://example.com/books/{id}/reviews",
    "https://example.com/nothing",
    "urn:herald:a",
    "urn:herald:{x}",
    "*",
];

const SENTINEL: &str = "urn:herald-test:sentinel";

/// The oracle's matcher, written independently of the hub's: `*`, exact, or `{name}` standing
/// for any run of unreserved characters (RFC 6570 simple expansion; undefined gives "").
fn oracle_matches(selector: &str, topic: &str) -> bool {
    if selector == "*" {
        return true;
    }
    static COMPILED: std::sync::OnceLock<std::collections::HashMap<&'static str, regex::Regex>> =
        std::sync::OnceLock::new();
    let compiled = COMPILED.get_or_init(|| {
        SELECTORS
            .iter()
            .map(|selector| (*selector, oracle_regex(selector)))
            .collect()
    });
    match compiled.get(selector) {
        Some(regex) => regex.is_match(topic),
        None => oracle_regex(selector).is_match(topic),
    }
}

fn oracle_regex(selector: &str) -> regex::Regex {
    let mut pattern = String::from("^");
    let mut rest = selector;
    while let Some(open) = rest.find('{') {
        pattern.push_str(&regex::escape(&rest[..open]));
        let close = rest[open..].find('}').unwrap() + open;
        pattern.push_str("[A-Za-z0-9._~-]*");
        rest = &rest[close + 1..];
    }
    pattern.push_str(&regex::escape(rest));
    pattern.push('$');
    regex::Regex::new(&pattern).unwrap()
}

struct Subscriber {
    selectors: Vec<&'static str>,
    /// `None`: anonymous; `Some(list)`: a token whose `mercure.subscribe` is the list.
    claim: Option<Vec<&'static str>>,
}

struct Published {
    id: String,
    topics: Vec<&'static str>,
    private: bool,
}

impl Subscriber {
    fn should_receive(&self, update: &Published) -> bool {
        let selected = update
            .topics
            .iter()
            .any(|topic| self.selectors.iter().any(|s| oracle_matches(s, topic)));
        let allowed = !update.private
            || self.claim.as_ref().is_some_and(|claim| {
                update
                    .topics
                    .iter()
                    .any(|topic| claim.iter().any(|s| oracle_matches(s, topic)))
            });
        selected && allowed
    }
}

#[tokio::test]
async fn private_updates_reach_exactly_whom_the_oracle_says() {
    let seed: u64 = std::env::var("HERALD_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x4e52_4c44);
    let hub = Hub::start(&[]);
    for round in 0..3u64 {
        let mut rng = StdRng::seed_from_u64(seed + round);
        let subscribers: Vec<Subscriber> = (0..30)
            .map(|_| {
                let count = rng.random_range(1..=3);
                let selectors = SELECTORS
                    .choose_multiple(&mut rng, count)
                    .copied()
                    .collect();
                let claim = match rng.random_range(0..3) {
                    0 => None,
                    _ => {
                        let count = rng.random_range(0..=3);
                        Some(
                            SELECTORS
                                .choose_multiple(&mut rng, count)
                                .copied()
                                .collect(),
                        )
                    }
                };
                Subscriber { selectors, claim }
            })
            .collect();
        let mut streams = Vec::new();
        for subscriber in &subscribers {
            let mut query = String::from("/.well-known/mercure?");
            for selector in subscriber.selectors.iter().chain([&SENTINEL]) {
                query.push_str(&encode_form(&[("topic", selector)]));
                query.push('&');
            }
            let headers = subscriber
                .claim
                .as_ref()
                .map(|claim| format!("Bearer {}", token(&[], claim)));
            let headers: Vec<(&str, &str)> = headers
                .as_deref()
                .map(|value| vec![("authorization", value)])
                .unwrap_or_default();
            let stream = hub.subscribe(&query, &headers).await;
            assert_eq!(stream.status, 200);
            streams.push(stream);
        }
        hub.wait_subscriptions(30).await;

        let mut published = Vec::new();
        for n in 0..150 {
            let count = rng.random_range(1..=3);
            let mut topics: Vec<&str> = TOPICS.choose_multiple(&mut rng, count).copied().collect();
            topics.shuffle(&mut rng);
            let private = rng.random_bool(0.5);
            let id = format!("r{round}-u{n}");
            let mut form: Vec<(&str, &str)> = topics.iter().map(|t| ("topic", *t)).collect();
            form.push(("id", &id));
            form.push(("data", "x"));
            if private {
                form.push(("private", "on"));
            }
            hub.publish_ok(&form).await;
            published.push(Published {
                id,
                topics,
                private,
            });
        }
        let sentinel = format!("r{round}-sentinel");
        hub.publish_ok(&[("topic", SENTINEL), ("id", &sentinel)])
            .await;

        for (index, (subscriber, stream)) in subscribers.iter().zip(&mut streams).enumerate() {
            let mut received = Vec::new();
            loop {
                let event = stream.next_event().await;
                if event.id == sentinel {
                    break;
                }
                received.push(event.id);
            }
            let expected: Vec<String> = published
                .iter()
                .filter(|update| subscriber.should_receive(update))
                .map(|update| update.id.clone())
                .collect();
            assert_eq!(
                received,
                expected,
                "seed {} round {round} subscriber {index}: selectors {:?}, claim {:?}",
                seed + round,
                subscriber.selectors,
                subscriber.claim
            );
        }
        drop(streams);
        hub.wait_subscriptions(0).await;
    }
}

#[tokio::test]
async fn no_field_can_be_injected_through_id_type_topic_or_data() {
    let hub = Hub::start(&["--subscriptions"]);
    let watcher_token = token(&[], &["*"]);
    let mut everything = hub
        .subscribe(
            "/.well-known/mercure?topic=*",
            &[("authorization", &format!("Bearer {watcher_token}"))],
        )
        .await;
    hub.wait_subscriptions(1).await;
    // The watcher's own subscription event.
    let own = everything.next_event().await;
    assert!(own.data.contains("\"active\":true"), "{own:?}");

    // id and type with any line break are refused, in the form and in JSON.
    for (field, value) in [
        ("id", "a\rretry: 1"),
        ("id", "a\r\nevent: x"),
        ("type", "t\rid: x"),
        ("type", "t\r\ndata: x"),
    ] {
        let (status, _) = hub.publish(&[("topic", "a"), (field, value)]).await;
        assert_eq!(status, 400, "{field} {value:?}");
        let body = serde_json::json!({"topic": "a", field: value}).to_string();
        let response = client()
            .post(hub.url("/publish"))
            .bearer_auth(token(&["*"], &[]))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(problem(response).await.0, 400, "json {field} {value:?}");
    }

    // Data with every kind of line break stays data.
    let data = "one\r\nid: evil\rretry: 1\n\nevent: fake\r\rdata: x";
    let id = hub.publish_ok(&[("topic", "a"), ("data", data)]).await;
    let event = everything.next_event().await;
    assert_eq!(event.id, id);
    assert_eq!(event.event, "message");
    assert_eq!(event.retry, None);
    assert_eq!(
        event.data,
        "one\nid: evil\nretry: 1\n\nevent: fake\n\ndata: x"
    );

    // A topic with CR/LF is accepted but never written into the stream: topics are not fields.
    let evil_topic = "t\r\nid: evil\r\n\r\ndata: injected";
    let (status, id) = hub
        .publish(&[("topic", evil_topic), ("data", "clean")])
        .await;
    assert_eq!(status, 200, "{id}");
    let event = everything.next_event().await;
    assert_eq!(
        (event.id.as_str(), event.data.as_str()),
        (id.as_str(), "clean")
    );
    // A subscriber selecting that exact topic gets it, and its subscription event carries the
    // topic inside JSON, escaped, on one data line.
    let query = format!(
        "/.well-known/mercure?{}",
        encode_form(&[("topic", evil_topic)])
    );
    let mut exact = hub.subscribe(&query, &[]).await;
    let announced = everything.next_event().await;
    let document: serde_json::Value = serde_json::from_str(&announced.data).unwrap();
    assert_eq!(document["topic"], evil_topic, "{announced:?}");
    let id = hub
        .publish_ok(&[("topic", evil_topic), ("data", "exact")])
        .await;
    let event = exact.next_event().await;
    assert_eq!(
        (event.id.as_str(), event.data.as_str()),
        (id.as_str(), "exact")
    );
    // Nothing in either stream ever started a line with what the attacker wrote.
    for raw in [&everything.raw, &exact.raw] {
        let text = String::from_utf8_lossy(raw);
        for line in text.split(['\r', '\n']) {
            assert!(
                !(line.starts_with("id: evil") || line.starts_with("data: injected")),
                "injected line {line:?} in {text}"
            );
        }
    }
    // The topic list is JSON: the topic comes back intact.
    let topics = hub.get_json("/topics").await;
    assert!(topics.to_string().contains("t\\r\\nid: evil"), "{topics}");
}

#[tokio::test]
async fn json_logs_are_one_json_object_per_line() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            "memory:",
            "--jwt-key",
            KEY,
            "--log-format",
            "json",
        ])
        .env("HERALD_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr = first
        .trim()
        .strip_prefix("herald listening on http://")
        .unwrap()
        .to_owned();
    // A refused request logs at debug level.
    let response = client()
        .get(format!("http://{addr}/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|line| !line.is_empty()).collect();
    assert!(lines.len() >= 2, "too few log lines: {stderr}");
    let mut messages = BTreeSet::new();
    for line in &lines {
        let record: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(record["level"].is_string(), "{line}");
        assert!(record["timestamp"].is_string(), "{line}");
        if let Some(message) = record["fields"]["message"].as_str() {
            messages.insert(message.to_owned());
        }
    }
    assert!(
        messages.iter().any(|m| m.contains("shutting down")),
        "{messages:?}"
    );
}
