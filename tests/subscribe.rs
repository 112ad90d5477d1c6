//! Subscribing: headers, the opening comment, selectors, heartbeats, vanished clients.

use std::time::{Duration, Instant};

use crate::util::{Hub, SOON, client, problem};

#[tokio::test]
async fn stream_opens_with_sse_headers_and_a_comment_at_once() {
    let hub = Hub::start(&[]);
    let started = Instant::now();
    let mut stream = hub.subscribe("/.well-known/mercure?topic=a", &[]).await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert!(stream.header("cache-control").unwrap().contains("no-cache"));
    assert_eq!(stream.header("x-accel-buffering"), Some("no"));
    assert!(stream.read_until(b":", SOON).await);
    assert!(stream.raw.starts_with(b":"), "{:?}", stream.raw);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn published_updates_arrive_as_exact_frames() {
    let hub = Hub::start(&[]);
    let mut stream = hub.subscribe("/.well-known/mercure?topic=a", &[]).await;
    hub.wait_subscriptions(1).await;
    hub.publish_ok(&[("topic", "a"), ("data", "hello"), ("id", "e1")])
        .await;
    assert!(stream.read_until(b"id: e1\ndata: hello\n\n", SOON).await);
    assert_eq!(&stream.raw[..], b":\nid: e1\ndata: hello\n\n");
}

#[tokio::test]
async fn several_topics_are_ored_and_others_are_not_received() {
    let hub = Hub::start(&[]);
    let mut stream = hub
        .subscribe("/.well-known/mercure?topic=a&topic=b", &[])
        .await;
    hub.wait_subscriptions(1).await;
    hub.publish_ok(&[("topic", "c"), ("data", "not for you")])
        .await;
    hub.publish_ok(&[("topic", "b"), ("data", "b1")]).await;
    hub.publish_ok(&[("topic", "a"), ("data", "a1")]).await;
    let events = stream.events(2).await;
    assert_eq!(events[0].data, "b1");
    assert_eq!(events[1].data, "a1");
    stream.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn star_matches_every_topic_and_events_is_an_alias() {
    let hub = Hub::start(&[]);
    let mut stream = hub.subscribe("/events?topic=*", &[]).await;
    assert_eq!(stream.status, 200);
    hub.wait_subscriptions(1).await;
    hub.publish_ok(&[("topic", "x"), ("data", "1")]).await;
    hub.publish_ok(&[("topic", "https://example.com/y"), ("data", "2")])
        .await;
    let events = stream.events(2).await;
    assert_eq!([&*events[0].data, &*events[1].data], ["1", "2"]);
}

#[tokio::test]
async fn an_update_on_two_selected_topics_arrives_once() {
    let hub = Hub::start(&[]);
    let mut stream = hub
        .subscribe("/.well-known/mercure?topic=a&topic=b&topic=*", &[])
        .await;
    hub.wait_subscriptions(1).await;
    hub.publish_ok(&[("topic", "a"), ("topic", "b"), ("data", "once")])
        .await;
    assert_eq!(stream.next_event().await.data, "once");
    stream.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn no_topic_is_a_bad_request() {
    let hub = Hub::start(&[]);
    for path in [
        "/.well-known/mercure",
        "/events",
        "/.well-known/mercure?foo=bar",
    ] {
        let response = client().get(hub.url(path)).send().await.unwrap();
        let (status, body) = problem(response).await;
        assert_eq!(status, 400, "{path}");
        assert!(body["detail"].as_str().unwrap().contains("topic"));
    }
}

#[tokio::test]
async fn heartbeats_come_from_the_configured_interval() {
    let hub = Hub::start(&["--heartbeat", "300ms"]);
    let mut stream = hub.subscribe("/.well-known/mercure?topic=quiet", &[]).await;
    // The opening comment, then two heartbeats, one interval apart.
    let started = Instant::now();
    let mut arrivals = Vec::new();
    while stream.raw.len() < 3 * 2 {
        assert!(started.elapsed() < SOON, "no heartbeats: {:?}", stream.raw);
        let before = stream.raw.len();
        stream.read_chunk(SOON).await;
        for _ in 0..(stream.raw.len() - before) / 2 {
            arrivals.push(Instant::now());
        }
    }
    let (first, second) = (arrivals[1], arrivals[2]);
    assert!(
        second - first >= Duration::from_millis(200),
        "heartbeats {:?} apart, the interval is 300 ms",
        second - first
    );
    // Each one a lone `:` line: no blank line, so no client sees an (empty) event.
    assert_eq!(stream.raw, b":\n".repeat(stream.raw.len() / 2));
    assert!(
        stream
            .next_event_within(Duration::from_millis(10))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_vanished_client_is_removed_at_once_not_at_the_next_heartbeat() {
    let hub = Hub::start(&["--heartbeat", "60s"]);
    let stream = hub.subscribe("/.well-known/mercure?topic=a", &[]).await;
    hub.wait_subscriptions(1).await;
    assert_eq!(hub.metric("herald_subscriptions").await, 1.0);
    drop(stream);
    let started = Instant::now();
    hub.wait_subscriptions(0).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(hub.metric("herald_subscriptions").await, 0.0);
}

#[tokio::test]
async fn a_reset_connection_is_removed_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hub = Hub::start(&["--heartbeat", "60s"]);
    let mut socket = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
    socket
        .write_all(b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 64];
    let read = socket.read(&mut head).await.unwrap();
    assert!(head[..read].starts_with(b"HTTP/1.1 200"));
    hub.wait_subscriptions(1).await;
    // SO_LINGER 0: close with RST.
    socket.set_zero_linger().unwrap();
    drop(socket);
    hub.wait_subscriptions(0).await;
}

/// Comments (the opening one and heartbeats) are a lone `:` line, before and after events alike:
/// the only blank line on the wire is the one that ends the event. Clients that dispatch on every
/// blank line (`@microsoft/fetch-event-source`) would otherwise hand `onmessage` empty data.
#[tokio::test]
async fn comments_are_a_lone_colon_line_and_only_events_end_with_a_blank_line() {
    let hub = Hub::start(&["--heartbeat", "200ms"]);
    let mut stream = hub.subscribe("/.well-known/mercure?topic=a", &[]).await;
    assert!(stream.read_until(b":\n", SOON).await);
    assert_eq!(stream.raw, b":\n", "the opening comment alone");
    hub.wait_subscriptions(1).await;
    hub.publish_ok(&[("topic", "a"), ("data", "{\"n\":1}"), ("id", "e1")])
        .await;
    let frame = "id: e1\ndata: {\"n\":1}\n\n";
    assert!(
        stream
            .read_until(format!("{frame}:\n").as_bytes(), SOON)
            .await
    );
    let raw = String::from_utf8(stream.raw.clone()).unwrap();
    let (before, after) = raw.split_once(frame).unwrap();
    assert!(
        !before.is_empty() && before == ":\n".repeat(before.len() / 2),
        "{raw:?}"
    );
    assert!(
        !after.is_empty() && after == ":\n".repeat(after.len() / 2),
        "{raw:?}"
    );
    assert_eq!(raw.matches("\n\n").count(), 1, "{raw:?}");
    assert_eq!(stream.next_event().await.data, "{\"n\":1}");
    stream.expect_silence(Duration::from_millis(500)).await;
}

/// `event-source-polyfill` (npm) resumes with the query parameter `lastEventId` (lower-case d),
/// never with a header.
#[tokio::test]
async fn the_polyfills_last_event_id_parameter_resumes_and_the_header_still_wins() {
    let hub = Hub::start(&[]);
    for id in ["1", "2", "3"] {
        hub.publish_ok(&[("topic", "a"), ("id", id), ("data", id)])
            .await;
    }
    let ids = |events: Vec<herald_sse::Event>| -> Vec<String> {
        events.into_iter().map(|event| event.id).collect()
    };

    let mut polyfill = hub
        .subscribe("/.well-known/mercure?topic=a&lastEventId=2", &[])
        .await;
    assert_eq!(polyfill.header("last-event-id"), Some("3"));
    assert_eq!(ids(polyfill.events(1).await), ["3"]);
    polyfill.expect_silence(Duration::from_millis(200)).await;

    // The header (what EventSource sends) wins over any query parameter.
    let mut both = hub
        .subscribe(
            "/.well-known/mercure?topic=a&lastEventId=2",
            &[("last-event-id", "1")],
        )
        .await;
    assert_eq!(ids(both.events(2).await), ["2", "3"]);

    // The polyfill appends its own to a URL that already names one (`lastEventID=1`, written by
    // the app): the one it appends is what it has seen, so it wins.
    let mut appended = hub
        .subscribe(
            "/.well-known/mercure?topic=a&lastEventID=1&lastEventId=2",
            &[],
        )
        .await;
    assert_eq!(ids(appended.events(1).await), ["3"]);
    appended.expect_silence(Duration::from_millis(200)).await;

    // An id history does not hold is a gap, as with every other spelling.
    let mut unknown = hub
        .subscribe("/.well-known/mercure?topic=a&lastEventId=gone", &[])
        .await;
    let gap = unknown.next_event().await;
    assert_eq!(gap.event, "herald-gap");
    assert_eq!(ids(unknown.events(3).await), ["1", "2", "3"]);
}
