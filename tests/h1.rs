//! The HTTP/1.1 layer on the wire: a corpus of valid and malformed raw requests, each with the
//! answer it must get; pipelining, keep-alive then subscribe, HTTP/1.0, HEAD, chunked bodies and
//! `Expect: 100-continue`; and the idle memory of a subscriber whose connection served another
//! request first.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::{Hub, SOON, rss_kib, token};

/// Sends `request` on a new connection and reads until the hub closes it (at most `SOON`).
async fn exchange(hub: &Hub, request: &[u8]) -> (String, bool) {
    let mut stream = TcpStream::connect(hub.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    let closed = tokio::time::timeout(SOON, stream.read_to_end(&mut raw))
        .await
        .is_ok();
    (String::from_utf8_lossy(&raw).into_owned(), closed)
}

/// Reads from `stream` until `needle` has arrived (at most `SOON`).
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut raw = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + SOON;
    while !String::from_utf8_lossy(&raw).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buffer[..n]),
        }
    }
    String::from_utf8_lossy(&raw).into_owned()
}

/// The status codes of every response in `raw`, in order.
fn statuses(raw: &str) -> Vec<u16> {
    raw.match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| raw[at + 9..at + 12].parse().ok())
        .collect()
}

#[tokio::test]
async fn a_corpus_of_requests_gets_the_right_answers() {
    let hub = Hub::start(&[]);
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(9000));
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
        "b".repeat(17_000)
    );
    let many_headers = format!(
        "GET / HTTP/1.1\r\n{}\r\n",
        (0..101)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect::<String>()
    );
    // (request, expected statuses in order, whether the hub closes the connection)
    let corpus: Vec<(&str, Vec<u8>, Vec<u16>)> = vec![
        (
            "a plain GET",
            b"GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".to_vec(),
            vec![200],
        ),
        (
            "Content-Length with Transfer-Encoding",
            b"POST /publish HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\
              Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
            vec![400],
        ),
        (
            "a repeated Content-Length",
            b"POST /publish HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx".to_vec(),
            vec![400],
        ),
        (
            "an invalid Content-Length",
            b"POST /publish HTTP/1.1\r\nContent-Length: 1x\r\n\r\nx".to_vec(),
            vec![400],
        ),
        (
            "a bad chunk size",
            b"POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nx\r\n0\r\n\r\n"
                .to_vec(),
            vec![400],
        ),
        (
            "a chunk without its CRLF",
            b"POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy0\r\n\r\n"
                .to_vec(),
            vec![400],
        ),
        (
            "obs-fold",
            b"GET /healthz HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n".to_vec(),
            vec![400],
        ),
        (
            "a transfer coding that is not chunked",
            b"POST /publish HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
            vec![400],
        ),
        ("garbage", b"\x16\x03\x01\x00\xa5\x01\r\n\r\n".to_vec(), vec![400]),
        (
            "an unknown HTTP version",
            b"GET / HTTP/3.0\r\n\r\n".to_vec(),
            vec![400],
        ),
        ("a request line too long", long_target.into_bytes(), vec![414]),
        ("a header too large", long_header.into_bytes(), vec![431]),
        ("too many headers", many_headers.into_bytes(), vec![431]),
        (
            "pipelined requests, answered in order",
            b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\nGET /nope HTTP/1.1\r\nHost: h\r\n\r\n\
              POST /healthz HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
              GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"
                .to_vec(),
            vec![200, 404, 404, 200],
        ),
        (
            "a refusal by a handler keeps the connection",
            b"GET /events HTTP/1.1\r\nHost: h\r\n\r\nGET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"
                .to_vec(),
            vec![400, 200],
        ),
        (
            "a refusal by the parser ends it: the next request is never read",
            b"GET /healthz HTTP/1.1\r\nContent-Length: x\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n"
                .to_vec(),
            vec![400],
        ),
    ];
    for (name, request, expected) in corpus {
        let (answer, closed) = exchange(&hub, &request).await;
        assert_eq!(statuses(&answer), expected, "{name}: {answer}");
        assert!(closed, "{name}: the connection stayed open");
        if expected.last() != Some(&200) {
            assert!(answer.contains("connection: close"), "{name}: {answer}");
        }
    }
    // The hub is still fine.
    assert_eq!(hub.get_json("/healthz").await["status"], "ok");
}

#[tokio::test]
async fn http10_head_and_bodyless_answers() {
    let hub = Hub::start(&[]);
    let (answer, closed) = exchange(&hub, b"GET /healthz HTTP/1.0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(closed);
    // HTTP/1.0 with keep-alive: two answers on one connection.
    let (answer, _) = exchange(
        &hub,
        b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /healthz HTTP/1.0\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&answer), vec![200, 200], "{answer}");
    assert!(answer.contains("connection: keep-alive"), "{answer}");
    // HEAD: the head of the answer, with its length, and no body.
    let (answer, _) = exchange(
        &hub,
        b"HEAD /herald.js HTTP/1.1\r\nHost: h\r\n\r\nGET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (first, rest) = answer.split_once("\r\n\r\n").unwrap();
    assert!(first.contains("content-length: "), "{first}");
    assert!(
        rest.starts_with("HTTP/1.1 200 OK"),
        "no body after a HEAD: {rest}"
    );
}

#[tokio::test]
async fn chunked_and_expect_continue_publishes_are_read() {
    let hub = Hub::start(&["--max-body", "64KiB"]);
    let token = token(&["*"], &[]);
    let mut reader = hub.subscribe("/.well-known/mercure?topic=t", &[]).await;
    hub.wait_subscriptions(1).await;
    // A chunked body, split mid-field, with an extension and a trailer.
    let request = format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n8;ext=1\r\ntopic=t&\r\nE\r\nid=c1&data=one\r\n0\r\nX-Trailer: 1\r\n\r\n"
    );
    let (answer, _) = exchange(&hub, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("c1"), "{answer}");
    assert_eq!(reader.next_event().await.data, "one");

    // Expect: 100-continue: the hub asks for the body, then answers.
    let body = "topic=t&id=c2&data=two";
    let head = format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\n\r\n",
        body.len()
    );
    let mut stream = TcpStream::connect(hub.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let interim = read_until(&mut stream, "\r\n\r\n").await;
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(body.as_bytes()).await.unwrap();
    let answer = read_until(&mut stream, "c2").await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert_eq!(reader.next_event().await.data, "two");

    // A declared body over --max-body is refused (after the token, before the body is read) and
    // the connection closed.
    let request = format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 999999999\r\n\r\n"
    );
    let (answer, closed) = exchange(&hub, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(closed);
    // The same with the body sent: the answer arrives whole, not destroyed by a reset.
    let body = "x".repeat(200_000);
    let request = format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (answer, closed) = exchange(&hub, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(answer.ends_with('}'), "{answer}");
    assert!(closed);
}

#[tokio::test]
async fn a_subscribe_after_another_request_on_the_connection_streams() {
    let hub = Hub::start(&[]);
    let mut stream = TcpStream::connect(hub.addr).await.unwrap();
    stream
        .write_all(
            b"OPTIONS /.well-known/mercure HTTP/1.1\r\nHost: h\r\nOrigin: http://a\r\n\
              Access-Control-Request-Method: GET\r\n\r\n\
              GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n\
              GET /.well-known/mercure?topic=k HTTP/1.1\r\nHost: h\r\n\r\n",
        )
        .await
        .unwrap();
    let opened = read_until(&mut stream, "text/event-stream").await;
    assert_eq!(statuses(&opened).len(), 3, "{opened}");
    hub.wait_subscriptions(1).await;
    // A request pipelined during the stream is kept, not dropped: served when the stream ends.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    hub.publish_ok(&[("topic", "k"), ("id", "k1"), ("data", "kept")])
        .await;
    let event = read_until(&mut stream, "data: kept").await;
    assert!(event.contains("id: k1\ndata: kept\n"), "{event}");
    assert_eq!(hub.subscriptions().await, 1);

    // HTTP/1.0: the stream is delimited by the close, not chunked.
    let mut old = TcpStream::connect(hub.addr).await.unwrap();
    old.write_all(b"GET /.well-known/mercure?topic=k HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let head = read_until(&mut old, "\r\n\r\n").await;
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    hub.wait_subscriptions(2).await;
    hub.publish_ok(&[("topic", "k"), ("id", "k2"), ("data", "raw")])
        .await;
    let raw = read_until(&mut old, "data: raw").await;
    assert!(raw.contains("id: k2\ndata: raw\n\n"), "{raw}");
    assert!(!raw.contains("\r\n"), "no chunk framing: {raw:?}");
}

/// Opens `count` idle subscribers; `after_get` sends `GET /healthz` on each connection first.
/// Returns the hub's RSS growth per subscriber, in bytes.
async fn idle_bytes_per_subscriber(count: usize, after_get: bool) -> u64 {
    let hub = Hub::start(&[]);
    // Warm the allocator and the runtime with a few of the same connections first.
    let mut warm = Vec::new();
    for _ in 0..20 {
        warm.push(open_idle(&hub, after_get).await);
    }
    hub.wait_subscriptions(20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = rss_kib(hub.pid());
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        streams.push(open_idle(&hub, after_get).await);
    }
    hub.wait_subscriptions((count + 20) as u64).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = rss_kib(hub.pid()).saturating_sub(baseline);
    drop((streams, warm));
    grown * 1024 / count as u64
}

async fn open_idle(hub: &Hub, after_get: bool) -> TcpStream {
    let mut stream = TcpStream::connect(hub.addr).await.unwrap();
    if after_get {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        read_until(&mut stream, "}").await;
    }
    stream
        .write_all(b"GET /.well-known/mercure?topic=idle HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut stream, "\r\n\r\n").await;
    stream
}

#[tokio::test]
async fn a_subscriber_after_a_get_on_its_connection_is_as_lean_as_a_fresh_one() {
    let _heavy = crate::slow::HEAVY.lock().await;
    let fresh = idle_bytes_per_subscriber(1000, false).await;
    let reused = idle_bytes_per_subscriber(1000, true).await;
    eprintln!("idle bytes per subscriber: fresh {fresh}, after GET / {reused}");
    assert!(
        reused <= fresh + fresh / 4 + 1024,
        "after a GET: {reused} B per subscriber; fresh: {fresh} B"
    );
    assert!(reused < 8 * 1024, "{reused} B per subscriber");
}

/// HEAD gets the head GET gets, without a body, on every route that answers GET, over HTTP/1.1
/// and over h2c; a HEAD of an event stream leaves no subscription behind and announces none.
#[tokio::test]
async fn head_answers_like_get_without_a_body_over_http1_and_h2c() {
    let hub = Hub::start(&["--subscriptions", "--demo"]);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let h2c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let h1 = crate::util::client();
    // A subscriber of the subscription events: a HEAD must not show up there.
    let mut watcher = hub
        .subscribe(
            "/.well-known/mercure?topic=%2F.well-known%2Fmercure%2Fsubscriptions%7B%2Fsubscription%7D%7B%2Fsubscriber%7D",
            &[(
                "authorization",
                &format!("Bearer {}", token(&[], &["*"])),
            )],
        )
        .await;
    assert_eq!(watcher.status, 200);
    let paths = [
        "/.well-known/mercure?topic=a",
        "/events?topic=a",
        "/topics/a/events",
        "/topics",
        "/healthz",
        "/herald.js",
        "/metrics",
        "/.well-known/mercure/subscriptions",
        "/chat",
        "/no-such-page",
    ];
    for (client, label) in [(&h1, "HTTP/1.1"), (&h2c, "h2c")] {
        for path in paths {
            let get = client.get(hub.url(path)).send().await.unwrap();
            let head = tokio::time::timeout(SOON, client.head(hub.url(path)).send())
                .await
                .unwrap_or_else(|_| panic!("{label} HEAD {path} hung"))
                .unwrap_or_else(|error| panic!("{label} HEAD {path}: {error}"));
            assert_eq!(head.status(), get.status(), "{label} HEAD {path}");
            assert_eq!(
                head.headers().get("content-type"),
                get.headers().get("content-type"),
                "{label} HEAD {path}"
            );
            let body = tokio::time::timeout(SOON, head.bytes())
                .await
                .unwrap()
                .unwrap();
            assert!(body.is_empty(), "{label} HEAD {path} sent a body: {body:?}");
        }
        assert!(
            hub.get_json("/healthz").await["subscriptions"].as_u64() <= Some(1),
            "HEAD left subscriptions open"
        );
    }
    hub.wait_subscriptions(1).await;
    // The watcher saw itself arrive, then the GET subscribers come and go, but no HEAD: 4 GET
    // streams (2 subscribe paths, 2 protocols), each announced active then inactive.
    let mut announced = 0;
    while watcher
        .next_event_within(Duration::from_millis(500))
        .await
        .is_some()
    {
        announced += 1;
    }
    assert_eq!(
        announced,
        1 + 4 * 2,
        "one active and one inactive event per GET stream"
    );
}

/// A head that arrives a byte at a time is answered as a whole one is, and an over-long request
/// line trickled in is refused with 414 once it passes the limit, without waiting for its end.
#[tokio::test]
async fn a_head_trickled_a_byte_at_a_time_is_answered() {
    let hub = Hub::start(&[]);
    let mut stream = TcpStream::connect(hub.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    for byte in b"GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" {
        stream.write_all(&[*byte]).await.unwrap();
    }
    let answer = read_until(&mut stream, "\"status\"").await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");

    let mut stream = TcpStream::connect(hub.addr).await.unwrap();
    stream.write_all(b"GET /").await.unwrap();
    let line = vec![b'a'; 8 * 1024];
    for piece in line.chunks(512) {
        stream.write_all(piece).await.unwrap();
    }
    let answer = read_until(&mut stream, "\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 414 "), "{answer}");
}
