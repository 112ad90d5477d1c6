//! URI-template subscribers cannot take the hub down: templates over the complexity limit are
//! refused with 400 naming it, allowed-but-expensive ones keep `/healthz`, publishes and
//! `GET /topics` fast, cost little memory each, and SIGTERM ends the process within
//! `--shutdown-timeout` whatever is running.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::util::{Hub, SOON, Stream, client, encode_form, problem, settled_rss_kib, token};

/// The default `--max-template-complexity`.
const DEFAULT_LIMIT: usize = 256;

/// A template with `vars` reserved expressions and no literal prefix, ending in `!`: against a
/// long topic of `a/` every state of its matcher stays alive until the end (the worst case).
/// `tag` makes it distinct from every other template.
fn expensive_template(tag: &str, vars: usize) -> String {
    (0..vars)
        .map(|v| format!("{{+{tag}v{v}}}"))
        .collect::<String>()
        + "!"
}

/// Eight distinct templates whose total complexity is the default limit (8 × 32).
fn hostile_but_allowed(subscriber: usize) -> Vec<String> {
    (0..8)
        .map(|t| expensive_template(&format!("s{subscriber}t{t}"), 5))
        .collect()
}

/// A long topic (about 1.5 KB) no expensive template matches, distinct per `n`.
fn long_topic(n: usize) -> String {
    format!("https://example.com/{n}/{}", "a/".repeat(750))
}

fn subscribe_path(selectors: &[String]) -> String {
    let pairs: Vec<(&str, &str)> = selectors.iter().map(|s| ("topic", s.as_str())).collect();
    format!("/.well-known/mercure?{}", encode_form(&pairs))
}

async fn get(hub: &Hub, path: &str) -> reqwest::Response {
    tokio::time::timeout(SOON, client().get(hub.url(path)).send())
        .await
        .expect("timed out")
        .expect("request")
}

/// Publishes `count` long topics, a few at a time, over one client with one token.
async fn publish_long_topics(hub: &Hub, count: usize) {
    let client = client();
    let token = token(&["*"], &[]);
    for start in (0..count).step_by(50) {
        let publishes = (start..(start + 50).min(count)).map(|n| {
            let request = client
                .post(hub.url("/.well-known/mercure"))
                .bearer_auth(&token)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(encode_form(&[("topic", &long_topic(n)), ("data", "x")]));
            async move {
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 200);
            }
        });
        futures_util::future::join_all(publishes).await;
    }
}

#[tokio::test]
async fn templates_over_the_complexity_limit_get_400_naming_it() {
    let hub = Hub::start(&[]);
    // One 1.9 KB template, as in the report.
    let huge = expensive_template("x", 240);
    assert!(huge.len() > 1800);
    let (status, body) = problem(get(&hub, &subscribe_path(&[huge])).await).await;
    assert_eq!(status, 400);
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("complexity"), "{detail}");
    assert!(detail.contains(&DEFAULT_LIMIT.to_string()), "{detail}");

    // Many small templates that only add up to too much are refused too.
    let many: Vec<String> = (0..20)
        .map(|t| expensive_template(&format!("m{t}"), 6))
        .collect();
    let (status, body) = problem(get(&hub, &subscribe_path(&many)).await).await;
    assert_eq!(status, 400);
    assert!(
        body["detail"].as_str().unwrap().contains("complexity"),
        "{body}"
    );
    assert_eq!(
        hub.metric("herald_limit_rejections_total{limit=\"template_complexity\"}")
            .await,
        2.0
    );

    // Under the limit: accepted, and it works.
    let mut allowed = hub
        .subscribe(&subscribe_path(&hostile_but_allowed(0)), &[])
        .await;
    assert_eq!(allowed.status, 200);
    let mut ordinary = hub
        .subscribe(
            &subscribe_path(&["https://example.com/books/{id}".to_owned()]),
            &[],
        )
        .await;
    assert_eq!(ordinary.status, 200);
    hub.wait_subscriptions(2).await;
    hub.publish_ok(&[("topic", "https://example.com/books/1"), ("data", "b")])
        .await;
    hub.publish_ok(&[("topic", "zz!"), ("data", "z")]).await;
    assert_eq!(ordinary.next_event().await.data, "b");
    assert_eq!(allowed.next_event().await.data, "z");
}

#[tokio::test]
async fn the_complexity_limit_is_configurable() {
    let huge = expensive_template("x", 240);
    let hub = Hub::start(&["--max-template-complexity", "4000"]);
    let stream = hub
        .subscribe(&subscribe_path(std::slice::from_ref(&huge)), &[])
        .await;
    assert_eq!(stream.status, 200);
    let hub = Hub::start_with_env(
        &["--jwt-key", "k", "--anonymous", "--store", "memory:"],
        &[("HERALD_MAX_TEMPLATE_COMPLEXITY", "10")],
    );
    let (status, body) = problem(
        get(
            &hub,
            &subscribe_path(&["https://example.com/{a}/{b}/{c}".to_owned()]),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().contains("10"), "{body}");
    let (code, _, stderr) = crate::util::run_cli(
        &[
            "serve",
            "--max-template-complexity",
            "0",
            "--store",
            "memory:",
        ],
        &[],
    );
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("--max-template-complexity"), "{stderr}");
    let (code, _, stderr) = crate::util::run_cli(
        &["serve", "--shutdown-timeout", "soon", "--store", "memory:"],
        &[],
    );
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("--shutdown-timeout"), "{stderr}");
}

#[tokio::test]
async fn expensive_template_subscribers_do_not_stall_the_hub() {
    let hub = Hub::start(&["--history-size", "2000"]);
    let t0 = Instant::now();
    publish_long_topics(&hub, 1000).await;
    eprintln!("published in {:?}", t0.elapsed());
    let mut hostile = Vec::new();
    for subscriber in 0..8 {
        hostile.push(
            hub.subscribe(&subscribe_path(&hostile_but_allowed(subscriber)), &[])
                .await,
        );
    }
    let mut ordinary = hub
        .subscribe(
            &subscribe_path(&["https://example.com/{n}/{+rest}".to_owned()]),
            &[],
        )
        .await;
    hub.wait_subscriptions(9).await;

    // Several listings at once, each matching 1,000 long topics against 64 expensive templates.
    let listings: Vec<_> = (0..3)
        .map(|_| {
            let url = hub.url("/topics");
            tokio::spawn(async move {
                let started = Instant::now();
                let body: serde_json::Value = client()
                    .get(url)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                (started.elapsed(), body)
            })
        })
        .collect();
    // Meanwhile the hub answers health checks and publishes at once.
    tokio::time::sleep(Duration::from_millis(20)).await;
    // (The median, and a looser bound on the slowest: this machine is shared with builds.)
    let mut health = Vec::new();
    for _ in 0..11 {
        let started = Instant::now();
        let response = get(&hub, "/healthz").await;
        assert_eq!(response.status(), 200);
        health.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    health.sort();
    assert!(
        health[5] < Duration::from_millis(200),
        "/healthz took {health:?}"
    );
    assert!(
        health[10] < Duration::from_secs(1),
        "/healthz took {health:?}"
    );
    let started = Instant::now();
    hub.publish_ok(&[("topic", &long_topic(5000)), ("data", "live")])
        .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "a publish took {took:?}");
    assert_eq!(ordinary.next_event().await.data, "live");

    for listing in listings {
        let (took, body) = listing.await.unwrap();
        // Debug build on a shared machine: bounded, not fast (before the fix it took minutes).
        assert!(took < Duration::from_secs(15), "GET /topics took {took:?}");
        let topics = body["topics"].as_array().unwrap();
        assert!(topics.len() >= 1000, "{} topics", topics.len());
        // The ordinary template matches every long topic; what was counted is right.
        let first = topics
            .iter()
            .find(|t| t["topic"] == long_topic(0).as_str())
            .unwrap();
        assert!(first["subscribers"].as_u64().unwrap() <= 1, "{first}");
    }
    // Nothing the hostile templates do reached the subscribers.
    for stream in &mut hostile {
        assert!(
            stream
                .next_event_within(Duration::from_millis(50))
                .await
                .is_none()
        );
    }
}

#[tokio::test]
async fn topics_counts_pattern_subscribers_per_distinct_template() {
    let hub = Hub::start(&[]);
    hub.publish_ok(&[("topic", "https://example.com/books/1"), ("data", "x")])
        .await;
    hub.publish_ok(&[("topic", "https://example.com/users/1"), ("data", "x")])
        .await;
    let books = "https://example.com/books/{id}".to_owned();
    let mut streams = Vec::new();
    for _ in 0..5 {
        streams.push(
            hub.subscribe(&subscribe_path(std::slice::from_ref(&books)), &[])
                .await,
        );
    }
    // Selecting a topic both exactly and through a template counts once.
    streams.push(
        hub.subscribe(
            &subscribe_path(&[books.clone(), "https://example.com/books/1".to_owned()]),
            &[],
        )
        .await,
    );
    streams.push(hub.subscribe(&subscribe_path(&["*".to_owned()]), &[]).await);
    hub.wait_subscriptions(7).await;
    let body = hub.get_json("/topics").await;
    let count = |topic: &str| {
        body["topics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["topic"] == topic)
            .unwrap_or_else(|| panic!("{topic} missing from {body}"))["subscribers"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(count("https://example.com/books/1"), 7, "{body}");
    assert_eq!(count("https://example.com/users/1"), 1, "{body}");
    assert_eq!(body["subscriber_counts_complete"], true, "{body}");
}

#[tokio::test]
async fn template_subscribers_cost_little_memory_each() {
    let hub = Hub::start(&["--history-size", "2000"]);
    publish_long_topics(&hub, 600).await;
    // Warm up with subscribers of the same kind and listings, so the allocator's pools, the
    // runtime's threads and every process-wide cache exist before anything is measured: a
    // one-off growth there (several MB) would otherwise be charged to the subscribers.
    let mut streams: Vec<Stream> = Vec::new();
    let warm_up = 50;
    subscribe_templates(&hub, &mut streams, 0..warm_up).await;
    list_topics(&hub, 2).await;
    // Then batches of subscribers, each measured as a delta of settled figures: a true
    // per-subscriber cost shows in every batch, a one-off growth of the process (a new allocator
    // arena, a bigger table) in one only, so the smallest batch figure is the subscribers' own.
    let batch = 200;
    let mut subscribed_costs = Vec::new();
    let mut listed_costs = Vec::new();
    for first in (warm_up..).step_by(batch).take(2) {
        let before = settled_rss_kib(&hub).await;
        subscribe_templates(&hub, &mut streams, first..first + batch).await;
        let subscribed = settled_rss_kib(&hub).await;
        // A listing fills whatever caches the templates have (bounded for the whole process).
        list_topics(&hub, 1).await;
        let after = settled_rss_kib(&hub).await;
        let per_subscriber = |kib: u64| kib.saturating_sub(before) * 1024 / batch as u64;
        eprintln!(
            "RSS {before} KiB, {subscribed} KiB with {batch} more template subscribers, {after} \
             KiB after a listing: {} then {} bytes per subscriber",
            per_subscriber(subscribed),
            per_subscriber(after)
        );
        subscribed_costs.push(per_subscriber(subscribed));
        listed_costs.push(per_subscriber(after));
    }
    let subscribed_cost = subscribed_costs.iter().min().copied().unwrap_or(u64::MAX);
    let listed_cost = listed_costs.iter().min().copied().unwrap_or(u64::MAX);
    assert!(
        subscribed_cost < 16 * 1024,
        "each template subscriber holds {subscribed_cost} bytes (batches: {subscribed_costs:?})"
    );
    assert!(
        listed_cost < 64 * 1024,
        "with their answer caches, each template subscriber holds {listed_cost} bytes \
         (batches: {listed_costs:?})"
    );
}

/// Opens one expensive-template subscriber per number in `subscribers` into `streams`, and
/// waits until the hub counts every stream in `streams`.
async fn subscribe_templates(
    hub: &Hub,
    streams: &mut Vec<Stream>,
    subscribers: std::ops::Range<usize>,
) {
    for subscriber in subscribers {
        streams.push(
            hub.subscribe(&subscribe_path(&hostile_but_allowed(subscriber)), &[])
                .await,
        );
    }
    hub.wait_subscriptions(streams.len() as u64).await;
}

/// `count` `/topics` listings.
async fn list_topics(hub: &Hub, count: usize) {
    for _ in 0..count {
        let _ = hub.get_json("/topics").await;
    }
}

/// A subscriber that never reads: the hub cannot finish writing to it.
async fn stalled_subscriber(hub: &Hub, topic: &str) -> TcpStream {
    let mut socket = TcpStream::connect(hub.addr).await.unwrap();
    let request = format!(
        "GET /.well-known/mercure?topic={topic} HTTP/1.1\r\nHost: {}\r\n\r\n",
        hub.addr
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    socket
}

#[tokio::test]
async fn sigterm_exits_within_the_shutdown_timeout_whatever_is_running() {
    let mut hub = Hub::start(&[
        "--shutdown-timeout",
        "1s",
        "--history-size",
        "2000",
        "--max-body",
        "4MiB",
    ]);
    publish_long_topics(&hub, 300).await;
    let _stalled = stalled_subscriber(&hub, "big").await;
    let mut hostile = Vec::new();
    for subscriber in 0..4 {
        hostile.push(
            hub.subscribe(&subscribe_path(&hostile_but_allowed(subscriber)), &[])
                .await,
        );
    }
    hub.wait_subscriptions(5).await;
    // Fill the stalled subscriber's socket buffers so its stream can never end cleanly.
    let big = "x".repeat(2 * 1024 * 1024);
    for _ in 0..6 {
        hub.publish_ok(&[("topic", "big"), ("data", &big)]).await;
    }
    // Listings in flight when the signal arrives.
    for _ in 0..3 {
        let url = hub.url("/topics");
        tokio::spawn(async move { client().get(url).send().await });
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    hub.signal("TERM");
    let status = hub
        .wait_exit(Duration::from_secs(4))
        .expect("the hub was still running 4 s after SIGTERM");
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_millis(1800),
        "SIGTERM with --shutdown-timeout 1s took {took:?}"
    );
}
