//! Publishing: the form, the JSON alias, ids, framing, validation, size limits.

use std::time::Duration;

use crate::util::{Hub, client, encode_form, problem, token};

async fn post_form(hub: &Hub, path: &str, body: &str) -> reqwest::Response {
    client()
        .post(hub.url(path))
        .bearer_auth(token(&["*"], &[]))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn post_json(hub: &Hub, body: &str) -> reqwest::Response {
    client()
        .post(hub.url("/publish"))
        .bearer_auth(token(&["*"], &[]))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn publish_answers_the_generated_uuid_v7_id_as_text() {
    let hub = Hub::start(&[]);
    let response = post_form(&hub, "/.well-known/mercure", "topic=a&data=x").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let id = response.text().await.unwrap();
    let uuid = id.strip_prefix("urn:uuid:").expect("urn:uuid: prefix");
    assert_eq!(uuid.len(), 36);
    assert_eq!(&uuid[14..15], "7", "UUID version 7: {id}");
}

#[tokio::test]
async fn every_field_is_framed_per_the_event_stream_rules() {
    let hub = Hub::start(&[]);
    let mut stream = hub.subscribe("/.well-known/mercure?topic=a", &[]).await;
    hub.wait_subscriptions(1).await;
    hub.publish_ok(&[
        ("topic", "a"),
        ("id", "custom-1"),
        ("type", "note"),
        ("retry", "2500"),
        ("data", "one\ntwo\r\nthree\rfour"),
    ])
    .await;
    let expected: &[u8] =
        b"id: custom-1\nevent: note\nretry: 2500\ndata: one\ndata: two\ndata: three\ndata: four\n\n";
    assert!(
        stream.read_until(expected, Duration::from_secs(5)).await,
        "{:?}",
        String::from_utf8_lossy(&stream.raw)
    );
    let event = stream.next_event().await;
    assert_eq!(event.id, "custom-1");
    assert_eq!(event.event, "note");
    assert_eq!(event.data, "one\ntwo\nthree\nfour");
    assert_eq!(event.retry, Some(2500));
}

#[tokio::test]
async fn empty_data_still_dispatches_an_event() {
    let hub = Hub::start(&[]);
    let mut stream = hub.subscribe("/.well-known/mercure?topic=a", &[]).await;
    hub.wait_subscriptions(1).await;
    hub.publish_ok(&[("topic", "a"), ("id", "empty")]).await;
    let event = stream.next_event().await;
    assert_eq!((event.id.as_str(), event.data.as_str()), ("empty", ""));
}

#[tokio::test]
async fn the_publish_alias_takes_json_with_any_data() {
    let hub = Hub::start(&[]);
    let mut stream = hub.subscribe("/events?topic=a&topic=b", &[]).await;
    hub.wait_subscriptions(1).await;
    let response = post_json(
        &hub,
        r#"{"topic": ["a", "b"], "data": {"n": 1, "s": "x"}, "id": "j1", "type": "t", "retry": 100}"#,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "j1");
    let response = post_json(&hub, r#"{"topic": "a", "data": "plain\ntext"}"#).await;
    assert_eq!(response.status(), 200);
    let first = stream.next_event().await;
    assert_eq!(first.data, r#"{"n":1,"s":"x"}"#);
    assert_eq!(
        (first.id.as_str(), first.event.as_str(), first.retry),
        ("j1", "t", Some(100))
    );
    assert_eq!(stream.next_event().await.data, "plain\ntext");
    stream.expect_silence(Duration::from_millis(200)).await;
    // The alias takes the form too.
    let response = post_form(&hub, "/publish", "topic=a&data=form").await;
    assert_eq!(response.status(), 200);
    assert_eq!(stream.next_event().await.data, "form");
}

#[tokio::test]
async fn invalid_updates_are_refused_with_400_and_never_dispatched() {
    let hub = Hub::start(&[]);
    let mut stream = hub.subscribe("/.well-known/mercure?topic=*", &[]).await;
    hub.wait_subscriptions(1).await;
    let bad_forms = [
        encode_form(&[("data", "no topic")]),
        encode_form(&[("topic", "a"), ("id", "a\nb")]),
        encode_form(&[("topic", "a"), ("id", "a\rb")]),
        encode_form(&[("topic", "a"), ("id", "a\0b")]),
        encode_form(&[("topic", "a"), ("type", "x\ndata: injected")]),
        encode_form(&[("topic", "a"), ("retry", "soon")]),
        encode_form(&[("topic", "a"), ("retry", "-5")]),
        encode_form(&[("topic", "a"), ("retry", "1.5")]),
    ];
    for body in &bad_forms {
        let response = post_form(&hub, "/.well-known/mercure", body).await;
        let (status, _) = problem(response).await;
        assert_eq!(status, 400, "{body}");
    }
    for body in [
        r#"{"data": "no topic"}"#,
        r#"{"topic": []}"#,
        r#"{"topic": "a", "id": "x\ny"}"#,
        r#"{"topic": "a", "retry": "later"}"#,
        r#"{"topic": "a", "unknown": 1}"#,
        "{not json",
    ] {
        let (status, _) = problem(post_json(&hub, body).await).await;
        assert_eq!(status, 400, "{body}");
    }
    stream.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let hub = Hub::start(&["--max-body", "1KiB"]);
    let big = "x".repeat(2000);
    let response = post_form(&hub, "/.well-known/mercure", &format!("topic=a&data={big}")).await;
    assert_eq!(problem(response).await.0, 413);
    // Without Content-Length (chunked), the limit holds too.
    let chunks: Vec<Result<String, std::io::Error>> =
        vec![Ok("topic=a&data=".into()), Ok(big.clone()), Ok(big)];
    let response = client()
        .post(hub.url("/.well-known/mercure"))
        .bearer_auth(token(&["*"], &[]))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response).await.0, 413);
    let response = post_form(&hub, "/.well-known/mercure", "topic=a&data=small").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn unknown_content_types_get_415() {
    let hub = Hub::start(&[]);
    let response = client()
        .post(hub.url("/.well-known/mercure"))
        .bearer_auth(token(&["*"], &[]))
        .header("content-type", "text/xml")
        .body("<a/>")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response).await.0, 415);
}

#[tokio::test]
async fn concurrent_publishes_each_get_a_distinct_id_and_all_arrive_in_one_order() {
    let hub = std::sync::Arc::new(Hub::start(&[]));
    let mut first = hub.subscribe("/.well-known/mercure?topic=load", &[]).await;
    let mut second = hub.subscribe("/.well-known/mercure?topic=*", &[]).await;
    hub.wait_subscriptions(2).await;
    let mut tasks = Vec::new();
    for publisher in 0..8 {
        let hub = std::sync::Arc::clone(&hub);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..25 {
                let data = format!("{publisher}-{n}");
                ids.push(hub.publish_ok(&[("topic", "load"), ("data", &data)]).await);
            }
            ids
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    assert_eq!(ids.len(), 200);
    let a: Vec<String> = first.events(200).await.into_iter().map(|e| e.id).collect();
    let b: Vec<String> = second.events(200).await.into_iter().map(|e| e.id).collect();
    assert_eq!(a, b, "two subscribers saw different orders");
    assert_eq!(
        a.iter().cloned().collect::<std::collections::HashSet<_>>(),
        ids
    );
}
