//! What herald.js needs from the hub: the opt-in `topic:` field (`herald-topic=1`) on live and
//! replayed events, and the client's own files at `/herald.js` and `/herald.d.ts`, for any
//! origin, cacheable by version.

use crate::util::{Hub, SOON, client};

#[tokio::test]
async fn herald_topic_adds_the_canonical_topic_to_live_and_replayed_events() {
    let hub = Hub::start(&[]);
    // History first: one update before anyone subscribes.
    let first = hub
        .publish_ok(&[
            ("topic", "https://example.com/books/1"),
            ("topic", "https://example.com/alt"),
            ("data", "one"),
            ("id", "e1"),
        ])
        .await;
    assert_eq!(first, "e1");
    let mut with = hub
        .subscribe(
            "/.well-known/mercure?topic=https://example.com/books/{id}&herald-topic=1&lastEventID=earliest",
            &[],
        )
        .await;
    let mut without = hub
        .subscribe("/.well-known/mercure?topic=*&lastEventID=earliest", &[])
        .await;
    let mut off = hub
        .subscribe("/.well-known/mercure?topic=*&herald-topic=0", &[])
        .await;
    assert!(with.read_until(b"data: one\n\n", SOON).await);
    assert!(
        with.raw
            .windows(b"topic: https://example.com/books/1\nid: e1\ndata: one\n\n".len())
            .any(|w| w == b"topic: https://example.com/books/1\nid: e1\ndata: one\n\n"),
        "{}",
        String::from_utf8_lossy(&with.raw)
    );
    hub.wait_subscriptions(3).await;
    hub.publish_ok(&[
        ("topic", "https://example.com/books/2"),
        ("data", "two"),
        ("id", "e2"),
        ("type", "note"),
    ])
    .await;
    let needle = b"topic: https://example.com/books/2\nid: e2\nevent: note\ndata: two\n\n";
    assert!(
        with.read_until(needle, SOON).await,
        "{}",
        String::from_utf8_lossy(&with.raw)
    );
    // A standard parser ignores the field: the events are the usual ones.
    for stream in [&mut without, &mut off] {
        assert!(stream.read_until(b"data: two\n\n", SOON).await);
        let text = String::from_utf8_lossy(&stream.raw).into_owned();
        assert!(!text.contains("topic:"), "{text}");
    }
    let event = without.next_event().await;
    assert_eq!(event.data, "one");
}

#[tokio::test]
async fn the_client_is_served_to_any_origin_with_a_versioned_cache() {
    // No --cors-origin at all: the client files still carry `*`.
    let hub = Hub::start(&[]);
    let response = client()
        .get(hub.url("/herald.js"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header(&response, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert!(
        header(&response, "content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(
        header(&response, "cache-control").as_deref(),
        Some("public, max-age=3600")
    );
    let etag = header(&response, "etag").unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(etag.starts_with(&format!("\"{version}-")), "{etag}");
    let body = response.text().await.unwrap();
    assert!(body.contains("export function subscribe"), "{body}");
    assert_eq!(
        body,
        include_str!("../clients/js/herald.js"),
        "served as in the repository"
    );

    // Revalidation: 304 with the same tag.
    let again = client()
        .get(hub.url("/herald.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(header(&again, "etag").as_deref(), Some(etag.as_str()));

    // The versioned URL is immutable; another version is not cached for good.
    let pinned = client()
        .get(hub.url(&format!("/herald.js?v={version}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&pinned, "cache-control").as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    let other = client()
        .get(hub.url("/herald.js?v=0.0.0-other"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&other, "cache-control").as_deref(),
        Some("public, max-age=3600")
    );

    let types = client().get(hub.url("/herald.d.ts")).send().await.unwrap();
    assert_eq!(types.status(), 200);
    assert_eq!(
        header(&types, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(
        types.text().await.unwrap(),
        include_str!("../clients/js/herald.d.ts")
    );
    let wrong = client().post(hub.url("/herald.js")).send().await.unwrap();
    assert_eq!(wrong.status(), 404);
}

#[tokio::test]
async fn a_topic_field_subscriber_is_told_where_its_stream_starts() {
    let hub = Hub::start(&[]);
    // Empty history: everything to come is after `earliest`.
    let first = hub
        .subscribe("/.well-known/mercure?topic=a&herald-topic=1", &[])
        .await;
    assert_eq!(first.header("last-event-id"), Some("earliest"));
    // Without the flag and without a last event id: no header, as before.
    let plain = hub.subscribe("/.well-known/mercure?topic=a", &[]).await;
    assert_eq!(plain.header("last-event-id"), None);
    hub.publish_ok(&[("topic", "a"), ("data", "x"), ("id", "e1")])
        .await;
    let second = hub
        .subscribe("/.well-known/mercure?topic=a&herald-topic=1", &[])
        .await;
    assert_eq!(second.header("last-event-id"), Some("e1"));
    // The newest update is private: an anonymous subscriber is not told its id.
    hub.publish_ok(&[
        ("topic", "a"),
        ("data", "secret"),
        ("id", "p1"),
        ("private", "on"),
    ])
    .await;
    let third = hub
        .subscribe("/.well-known/mercure?topic=a&herald-topic=1", &[])
        .await;
    assert_eq!(third.header("last-event-id"), None);
}
