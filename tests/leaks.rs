//! Nothing leaks, nothing grows without bound (issue 13): private ids never reach callers who may
//! not see them, `/metrics` can move off the main port, ids are bounded, and a reconnect storm
//! with `--subscriptions` leaves no memory behind.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{Hub, SOON, TempDir, client, free_port, problem, rss_kib, run_cli, token};

const PRIVATE_TOPIC: &str = "users/7/inbox";

/// A public-only subscriber's token: `mercure.subscribe` covers `public/{x}` only.
fn public_token() -> String {
    token(&[], &["public/{x}"])
}

fn inbox_token() -> String {
    token(&[], &["users/{id}/inbox"])
}

async fn publish_private(hub: &Hub, id: &str) {
    hub.publish_ok(&[("topic", PRIVATE_TOPIC), ("id", id), ("private", "on")])
        .await;
}

#[tokio::test]
async fn the_last_event_id_header_names_only_what_the_subscriber_may_see() {
    let hub = Hub::start(&[]);
    hub.publish_ok(&[("topic", "public/a"), ("id", "p1")]).await;
    publish_private(&hub, "secret-1").await;
    let path = "/.well-known/mercure?topic=public/a&topic=users/7/inbox";

    let bearer = format!("Bearer {}", public_token());
    for headers in [
        vec![("last-event-id", "p1")],
        vec![("last-event-id", "p1"), ("authorization", bearer.as_str())],
    ] {
        let stream = hub.subscribe(path, &headers).await;
        assert_eq!(stream.status, 200);
        assert_eq!(stream.header("last-event-id"), Some("p1"), "{headers:?}");
    }
    let stream = hub
        .subscribe(&format!("{path}&lastEventID=earliest"), &[])
        .await;
    assert_eq!(stream.header("last-event-id"), Some("earliest"));

    // The token that covers the private topic is told the newest id.
    let bearer = format!("Bearer {}", inbox_token());
    let stream = hub
        .subscribe(
            path,
            &[("last-event-id", "p1"), ("authorization", bearer.as_str())],
        )
        .await;
    assert_eq!(stream.header("last-event-id"), Some("secret-1"));
}

#[tokio::test]
async fn resuming_from_a_private_id_is_like_resuming_from_an_unknown_one() {
    let hub = Hub::start(&[]);
    publish_private(&hub, "secret-1").await;
    hub.publish_ok(&[("topic", "public/a"), ("id", "p1")]).await;
    let path = "/.well-known/mercure?topic=public/a";

    let mut from_private = hub.subscribe(path, &[("last-event-id", "secret-1")]).await;
    let mut from_unknown = hub.subscribe(path, &[("last-event-id", "never")]).await;
    for stream in [&mut from_private, &mut from_unknown] {
        let gap = stream.next_event().await;
        assert_eq!(gap.event, "herald-gap");
        let body: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
        assert_eq!(body["oldestEventID"], "p1", "the oldest it may see: {body}");
        assert_eq!(stream.next_event().await.id, "p1");
        assert_ne!(stream.header("last-event-id"), Some("secret-1"));
    }

    // With a token that covers it, the private id is a position like any other.
    let bearer = format!("Bearer {}", inbox_token());
    let mut allowed = hub
        .subscribe(
            path,
            &[
                ("last-event-id", "secret-1"),
                ("authorization", bearer.as_str()),
            ],
        )
        .await;
    assert_eq!(allowed.next_event().await.id, "p1", "no gap notice");
}

#[tokio::test]
async fn the_gap_notice_names_the_oldest_update_the_subscriber_may_see() {
    let hub = Hub::start(&["--history-size", "3"]);
    hub.publish_ok(&[("topic", "public/a"), ("id", "p0")]).await;
    publish_private(&hub, "secret-1").await;
    hub.publish_ok(&[("topic", "public/a"), ("id", "p1")]).await;
    hub.publish_ok(&[("topic", "public/a"), ("id", "p2")]).await;
    let path = "/.well-known/mercure?topic=public/a";
    let mut stream = hub.subscribe(path, &[("last-event-id", "p0")]).await;
    let gap = stream.next_event().await;
    assert_eq!(gap.event, "herald-gap");
    let body: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(body["oldestEventID"], "p1", "{body}");

    let bearer = format!("Bearer {}", inbox_token());
    let mut stream = hub
        .subscribe(
            path,
            &[("last-event-id", "p0"), ("authorization", bearer.as_str())],
        )
        .await;
    let gap = stream.next_event().await;
    let body: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(body["oldestEventID"], "secret-1", "{body}");
}

#[tokio::test]
async fn topic_history_after_a_private_id_is_a_404_like_an_unknown_one() {
    let hub = Hub::start(&[]);
    publish_private(&hub, "secret-1").await;
    hub.publish_ok(&[("topic", "public/a"), ("id", "p1")]).await;
    let base = hub.url("/topics/public%2Fa/events?after=");
    for (id, bearer) in [
        ("secret-1", None),
        ("no-such-id", None),
        ("secret-1", Some(public_token())),
        ("no-such-id", Some(public_token())),
    ] {
        let mut request = client().get(format!("{base}{id}"));
        if let Some(bearer) = &bearer {
            request = request.bearer_auth(bearer);
        }
        let (status, body) = problem(request.send().await.unwrap()).await;
        assert_eq!(status, 404, "{id} {body}");
        let detail = body["detail"].as_str().unwrap().replace(id, "ID");
        assert_eq!(
            detail, "event ID is not in history (never published, or trimmed by retention)",
            "the answer must not tell a private id from an unknown one"
        );
    }
    let response = client()
        .get(format!("{base}secret-1"))
        .bearer_auth(inbox_token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["events"][0]["id"], "p1");
}

#[tokio::test]
async fn metrics_listen_moves_metrics_off_the_main_port() {
    let port = free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let hub = Hub::start(&["--metrics-listen", &metrics_addr]);
    let main = client().get(hub.url("/metrics")).send().await.unwrap();
    assert_eq!(main.status(), 404);
    assert_eq!(
        main.headers()["content-type"],
        "application/problem+json",
        "an ordinary 404 of the API"
    );
    let health = client().get(hub.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "/healthz stays on the main port");

    let metrics = client()
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("herald_connections"), "{text}");
    for path in ["/healthz", "/topics", "/.well-known/mercure?topic=a", "/"] {
        let other = client()
            .get(format!("http://{metrics_addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 404, "{path} is not on the metrics listener");
    }
}

#[test]
fn a_bad_metrics_listen_is_a_configuration_error() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().to_string();
    for (value, env) in [("not-an-address", false), ("also bad", true)] {
        let (code, _, stderr) = if env {
            run_cli(
                &["serve", "--listen", &port],
                &[("HERALD_METRICS_LISTEN", value)],
            )
        } else {
            run_cli(
                &["serve", "--listen", &port, "--metrics-listen", value],
                &[],
            )
        };
        assert_eq!(code, 64, "{stderr}");
        assert!(stderr.contains("--metrics-listen"), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    // The metrics port already taken: a clear start-up error, not a silent half-start.
    let (code, _, stderr) = run_cli(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            "memory:",
            "--metrics-listen",
            &port,
        ],
        &[],
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains(&port), "{stderr}");
}

#[tokio::test]
async fn ids_and_types_longer_than_the_limit_are_refused() {
    let hub = Hub::start(&[]);
    let long = "x".repeat(257);
    let limit = "x".repeat(256);
    for field in ["id", "type"] {
        let (status, body) = hub.publish(&[("topic", "a"), (field, &long)]).await;
        assert_eq!(status, 400, "{field}: {body}");
        assert!(body.contains("256"), "{body}");
        assert!(body.contains(field), "{body}");
        let (status, body) = hub.publish(&[("topic", "a"), (field, &limit)]).await;
        assert_eq!(status, 200, "{field} at the limit: {body}");
    }
    let json = serde_json::json!({"topic": "a", "id": long});
    let response = client()
        .post(hub.url("/publish"))
        .bearer_auth(token(&["*"], &[]))
        .json(&json)
        .send()
        .await
        .unwrap();
    let (status, body) = problem(response).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        hub.metric("herald_limit_rejections_total{limit=\"id_length\"}")
            .await
            >= 3.0
    );

    let small = Hub::start(&["--max-id-length", "8"]);
    let (status, _) = small.publish(&[("topic", "a"), ("id", "123456789")]).await;
    assert_eq!(status, 400);
    let (status, _) = small.publish(&[("topic", "a"), ("id", "12345678")]).await;
    assert_eq!(status, 200);
}

/// Opens a subscription on a raw connection, waits for its response head, and hangs up.
async fn connect_and_leave(addr: std::net::SocketAddr, topic: &str) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    // Twenty selectors: every connect and every leave is twenty subscription events.
    let selectors: Vec<String> = (0..20).map(|n| format!("topic={topic}/{n}")).collect();
    let request = format!(
        "GET /.well-known/mercure?{} HTTP/1.1\r\nHost: storm\r\n\r\n",
        selectors.join("&")
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut buffer = [0u8; 512];
    matches!(
        tokio::time::timeout(SOON, stream.read(&mut buffer)).await,
        Ok(Ok(n)) if n > 0
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_with_subscription_events_leaves_no_memory_behind() {
    // The durable store: each commit waits for fsync, so a storm outpaces the writer.
    let dir = TempDir::new("storm");
    let hub = Hub::start_raw(&[
        "--jwt-key",
        crate::util::KEY,
        "--anonymous",
        "--subscriptions",
        "--store",
        dir.str(),
    ]);
    let watcher_token = token(
        &[],
        &["/.well-known/mercure/subscriptions{/topic}{/subscriber}"],
    );
    let mut watcher = hub
        .subscribe(
            "/.well-known/mercure?topic=/.well-known/mercure/subscriptions{/topic}{/subscriber}",
            &[("authorization", &format!("Bearer {watcher_token}"))],
        )
        .await;
    // Warm up the allocator and the runtime, then take the baseline.
    for round in 0..50 {
        connect_and_leave(hub.addr, &format!("warm/{round}")).await;
    }
    hub.wait_subscriptions(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = rss_kib(hub.pid());

    let storm_end = Instant::now() + Duration::from_secs(4);
    let clients: Vec<_> = (0..400)
        .map(|client_index| {
            let addr = hub.addr;
            tokio::spawn(async move {
                let mut connects = 0u64;
                while Instant::now() < storm_end {
                    let topic = format!("storm/{client_index}/{connects}");
                    if connect_and_leave(addr, &topic).await {
                        connects += 1;
                    }
                }
                connects
            })
        })
        .collect();
    // The hub stays responsive during the storm.
    let mut slowest_health = Duration::ZERO;
    while Instant::now() < storm_end {
        let asked = Instant::now();
        let response = client().get(hub.url("/healthz")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        slowest_health = slowest_health.max(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut connects = 0;
    for client in clients {
        connects += client.await.unwrap();
    }
    assert!(connects > 500, "the storm made only {connects} connections");
    assert!(
        slowest_health < Duration::from_secs(2),
        "/healthz took {slowest_health:?} during the storm"
    );
    hub.wait_subscriptions(1).await;

    // Whatever was queued drains within seconds (no backlog of events still being written) ...
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut published = hub.metric("herald_publishes_total").await;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = hub.metric("herald_publishes_total").await;
        if now == published {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "subscription events were still being written 10 s after the storm ({now})"
        );
        published = now;
    }
    // ... and memory comes back near the baseline.
    let deadline = Instant::now() + Duration::from_secs(20);
    let grown = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let grown = rss_kib(hub.pid()).saturating_sub(baseline);
        if grown < 30 * 1024 || Instant::now() > deadline {
            break grown;
        }
    };
    assert!(
        grown < 30 * 1024,
        "RSS grew by {grown} KiB after a storm of {connects} connections"
    );
    eprintln!("storm: {connects} connections, RSS grew by {grown} KiB, {published} events written");
    // The watcher still sees subscription events, and the counters are exported.
    let event = watcher.next_event_within(SOON).await.expect("an event");
    assert!(event.data.contains("\"Subscription\""), "{}", event.data);
    let coalesced = hub
        .metric("herald_subscription_events_coalesced_total")
        .await;
    let dropped = hub.metric("herald_subscription_events_dropped_total").await;
    assert!(
        published + coalesced + dropped >= 20.0 * connects as f64,
        "every join was written, coalesced with its leave, or dropped and counted: \
         {published} + {coalesced} + {dropped} < 20 × {connects}"
    );
}

/// `GET /topics` as `bearer` sees it: topic name -> its view.
async fn listing(
    hub: &Hub,
    bearer: Option<&str>,
) -> (String, serde_json::Map<String, serde_json::Value>) {
    let mut request = client().get(hub.url("/topics"));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    let topics = body["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|view| (view["topic"].as_str().unwrap().to_owned(), view.clone()))
        .collect();
    (text, topics)
}

#[tokio::test]
async fn the_topics_listing_shows_each_caller_only_what_it_could_subscribe_to() {
    let hub = Hub::start(&[]);
    publish_private(&hub, "secret-1").await;
    hub.publish_ok(&[("topic", "public/a"), ("id", "p1")]).await;
    hub.publish_ok(&[("topic", "public/a"), ("id", "secret-2"), ("private", "on")])
        .await;
    let inbox = format!("Bearer {}", inbox_token());
    let _private_subscriber = hub
        .subscribe(
            "/.well-known/mercure?topic=users/8/inbox",
            &[("authorization", inbox.as_str())],
        )
        .await;
    let _public_subscriber = hub.subscribe("/.well-known/mercure?topic=lobby", &[]).await;
    hub.wait_subscriptions(2).await;

    let (text, topics) = listing(&hub, None).await;
    assert!(
        !text.contains("secret") && !text.contains("users/"),
        "{text}"
    );
    assert_eq!(topics["public/a"]["events"], 1, "{text}");
    assert_eq!(topics["public/a"]["last_event_id"], "p1", "{text}");
    assert_eq!(topics["lobby"]["subscribers"], 1, "{text}");
    assert_eq!(topics.len(), 2, "{text}");

    // `public/{x}` covers public/a, private updates included, and nothing of users/.
    let (text, topics) = listing(&hub, Some(&public_token())).await;
    assert!(
        !text.contains("users/") && !text.contains("secret-1"),
        "{text}"
    );
    assert_eq!(topics["public/a"]["events"], 2, "{text}");
    assert_eq!(topics["public/a"]["last_event_id"], "secret-2", "{text}");
    assert_eq!(topics.len(), 2, "{text}");

    let (text, topics) = listing(&hub, Some(&inbox_token())).await;
    assert_eq!(
        topics["users/7/inbox"]["last_event_id"], "secret-1",
        "{text}"
    );
    assert_eq!(topics["users/8/inbox"]["subscribers"], 1, "{text}");
    assert_eq!(
        topics["public/a"]["last_event_id"], "p1",
        "its claim does not cover public/a: {text}"
    );

    let (text, topics) = listing(&hub, Some(&token(&[], &["*"]))).await;
    assert_eq!(topics["public/a"]["events"], 2, "{text}");
    assert_eq!(topics["public/a"]["last_event_id"], "secret-2", "{text}");
    assert_eq!(topics.len(), 4, "{text}");
}

#[tokio::test]
async fn subscription_topics_are_listed_only_to_those_allowed_to_watch_them() {
    let hub = Hub::start(&["--subscriptions"]);
    let _subscriber = hub.subscribe("/.well-known/mercure?topic=lobby", &[]).await;
    hub.wait_subscriptions(1).await;
    let watcher = token(
        &[],
        &["/.well-known/mercure/subscriptions{/topic}{/subscriber}"],
    );
    let deadline = Instant::now() + SOON;
    loop {
        let (_, topics) = listing(&hub, Some(&watcher)).await;
        if topics
            .keys()
            .any(|topic| topic.starts_with("/.well-known/mercure/subscriptions/"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watcher never saw the subscription event"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (text, _) = listing(&hub, None).await;
    assert!(
        !text.contains("/.well-known/mercure/subscriptions"),
        "{text}"
    );
    assert!(!text.contains("urn:uuid"), "no subscriber id: {text}");
}

#[tokio::test]
async fn without_anonymous_the_topics_listing_needs_a_token() {
    let hub = Hub::start_raw(&["--jwt-key", crate::util::KEY, "--store", "memory:"]);
    let (status, body) = problem(client().get(hub.url("/topics")).send().await.unwrap()).await;
    assert_eq!(status, 401, "{body}");
    let response = client()
        .get(hub.url("/topics"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let (_, topics) = listing(&hub, Some(&public_token())).await;
    assert!(topics.is_empty());
}

#[tokio::test]
async fn the_subscriptions_api_cursor_names_only_what_the_watcher_may_see() {
    let hub = Hub::start(&["--subscriptions"]);
    hub.publish_ok(&[("topic", "public/a"), ("id", "p1")]).await;
    publish_private(&hub, "secret-1").await;
    let watcher = token(
        &[],
        &["/.well-known/mercure/subscriptions{/topic}{/subscriber}"],
    );
    let response = client()
        .get(hub.url("/.well-known/mercure/subscriptions"))
        .bearer_auth(&watcher)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["lastEventID"], "earliest", "{body}");
    hub.publish_ok(&[("topic", "public/a"), ("id", "p2")]).await;
    let body: serde_json::Value = client()
        .get(hub.url("/.well-known/mercure/subscriptions"))
        .bearer_auth(&watcher)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["lastEventID"], "p2", "{body}");
}
