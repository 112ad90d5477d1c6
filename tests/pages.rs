//! The pages and the demo: `/` always, `/chat`, `/clock`, `/console` only with `--demo`, and
//! `POST /chat/send`, which publishes to topic `chat` through the writer.

use std::time::Duration;

use crate::util::{Hub, SOON, client, problem, token};

async fn get(hub: &Hub, path: &str) -> reqwest::Response {
    client().get(hub.url(path)).send().await.unwrap()
}

fn content_type(response: &reqwest::Response) -> &str {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn send_json(hub: &Hub, body: serde_json::Value) -> reqwest::Response {
    client()
        .post(hub.url("/chat/send"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_demo_pages_are_served_only_with_demo() {
    let hub = Hub::start(&[]);
    for path in ["/chat", "/clock", "/console", "/assets/chat.js"] {
        let (status, _) = problem(get(&hub, path).await).await;
        assert_eq!(status, 404, "{path}");
    }
    let index = get(&hub, "/").await;
    assert_eq!(index.status(), 200);
    assert_eq!(content_type(&index), "text/html; charset=utf-8");
    let html = index.text().await.unwrap();
    assert!(
        html.contains("--demo"),
        "the index says how to turn the demo on"
    );
    assert!(!html.contains("href=\"/chat\""));
    for path in [
        "/favicon.ico",
        "/favicon.svg",
        "/assets/herald.css",
        "/assets/herald.js",
    ] {
        assert_eq!(get(&hub, path).await.status(), 200, "{path}");
    }

    let demo = Hub::start(&["--demo"]);
    let index = get(&demo, "/").await.text().await.unwrap();
    for link in ["href=\"/chat\"", "href=\"/clock\"", "href=\"/console\""] {
        assert!(index.contains(link), "{link}");
    }
    for (path, kind) in [
        ("/chat", "text/html; charset=utf-8"),
        ("/clock", "text/html; charset=utf-8"),
        ("/console", "text/html; charset=utf-8"),
        ("/assets/herald.css", "text/css; charset=utf-8"),
        ("/assets/chat.js", "text/javascript; charset=utf-8"),
        ("/assets/clock.js", "text/javascript; charset=utf-8"),
        ("/assets/console.js", "text/javascript; charset=utf-8"),
    ] {
        let response = get(&demo, path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(content_type(&response), kind, "{path}");
        let policy = response.headers()["content-security-policy"]
            .to_str()
            .unwrap();
        assert!(policy.contains("script-src 'self'"), "{path}: {policy}");
    }
    let chat = get(&demo, "/chat").await.text().await.unwrap();
    assert!(chat.contains(r#"name="message""#));
    assert!(chat.contains(r#"id="messages""#));
}

#[tokio::test]
async fn a_chat_message_is_published_to_the_chat_topic() {
    let hub = Hub::start(&["--demo"]);
    let mut stream = hub.subscribe("/events?topic=chat", &[]).await;
    assert_eq!(stream.status, 200);

    let response = send_json(
        &hub,
        serde_json::json!({"name": " Ada ", "message": "hello <b>world</b>"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(content_type(&response), "application/json");
    let answer: serde_json::Value = response.json().await.unwrap();
    let id = answer["id"].as_str().unwrap().to_owned();

    let event = stream.next_event().await;
    assert_eq!(event.id, id);
    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(data["name"], "Ada");
    assert_eq!(data["message"], "hello <b>world</b>");
    assert!(data["at"].as_str().unwrap().ends_with('Z'), "{data}");

    // A form works too; no name means anonymous. The message is stored for replay.
    let response = client()
        .post(hub.url("/chat/send"))
        .form(&[("message", "from a form")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let event = stream.next_event().await;
    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(data["name"], "anonymous");
    assert_eq!(data["message"], "from a form");

    let history: serde_json::Value = get(&hub, "/topics/chat/events").await.json().await.unwrap();
    assert_eq!(history["events"].as_array().unwrap().len(), 2);
    assert_eq!(history["events"][0]["id"], id.as_str());
}

#[tokio::test]
async fn bad_chat_messages_are_refused() {
    let hub = Hub::start(&["--demo"]);
    let mut stream = hub.subscribe("/events?topic=chat", &[]).await;

    for body in [
        serde_json::json!({"name": "Ada", "message": "   "}),
        serde_json::json!({"name": "Ada"}),
        serde_json::json!({"name": "x".repeat(41), "message": "hi"}),
        serde_json::json!({"message": "x".repeat(2001)}),
    ] {
        let (status, _) = problem(send_json(&hub, body).await).await;
        assert_eq!(status, 400);
    }
    let response = client()
        .post(hub.url("/chat/send"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response).await.0, 400);

    let huge = serde_json::json!({"message": "x".repeat(20_000)});
    let (status, _) = problem(send_json(&hub, huge).await).await;
    assert_eq!(status, 413);

    let response = client()
        .post(hub.url("/chat/send"))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response).await.0, 415);

    stream.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn without_demo_sending_needs_a_token_that_covers_chat() {
    let hub = Hub::start(&[]);
    let (status, _) = problem(send_json(&hub, serde_json::json!({"message": "hi"})).await).await;
    assert_eq!(status, 401);

    let elsewhere = token(&["other"], &[]);
    let response = client()
        .post(hub.url("/chat/send"))
        .bearer_auth(elsewhere)
        .json(&serde_json::json!({"message": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response).await.0, 403);

    // The cookie is not enough: a page elsewhere must not post in a visitor's name.
    let response = client()
        .post(hub.url("/chat/send"))
        .header(
            "cookie",
            format!("mercureAuthorization={}", token(&["*"], &[])),
        )
        .json(&serde_json::json!({"message": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response).await.0, 401);

    let response = client()
        .post(hub.url("/chat/send"))
        .bearer_auth(token(&["chat"], &[]))
        .json(&serde_json::json!({"message": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn chat_messages_count_against_the_publish_rate_like_any_publish() {
    let hub = Hub::start(&["--demo", "--publish-rate", "1/s", "--publish-burst", "2"]);
    let hello = || serde_json::json!({"message": "hi"});
    // Anonymous senders draw from their address's bucket: a burst of two, then 429.
    assert_eq!(send_json(&hub, hello()).await.status(), 200);
    assert_eq!(send_json(&hub, hello()).await.status(), 200);
    let refused = send_json(&hub, hello()).await;
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
    // A sender with a token draws from the token's bucket, shared with `POST /publish`.
    let sender = token(&["chat"], &[]);
    let chat = |token: String| {
        client()
            .post(hub.url("/chat/send"))
            .bearer_auth(token)
            .json(&hello())
            .send()
    };
    let publish = |token: String| {
        client()
            .post(hub.url("/publish"))
            .bearer_auth(token)
            .form(&[("topic", "chat"), ("data", "x")])
            .send()
    };
    assert_eq!(chat(sender.clone()).await.unwrap().status(), 200);
    assert_eq!(publish(sender.clone()).await.unwrap().status(), 200);
    assert_eq!(chat(sender.clone()).await.unwrap().status(), 429);
    assert_eq!(publish(sender).await.unwrap().status(), 429);
    assert_eq!(
        hub.metric("herald_limit_rejections_total{limit=\"publish_rate\"}")
            .await,
        3.0
    );
    // After the advertised wait, the anonymous sender may chat again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(send_json(&hub, hello()).await.status(), 200);
}

#[tokio::test]
async fn the_demo_clock_publishes_the_time_to_clock() {
    let hub = Hub::start(&["--demo"]);
    let mut stream = hub.subscribe("/events?topic=clock", &[]).await;
    let event = stream
        .next_event_within(Duration::from_secs(4) + SOON)
        .await
        .expect("a clock tick within one period");
    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
    let message = data["message"].as_str().unwrap();
    let time = message.strip_prefix("Current time is ").unwrap();
    assert_eq!(time.len(), 8, "{message}");
    assert!(
        time.bytes().enumerate().all(|(i, b)| if i == 2 || i == 5 {
            b == b':'
        } else {
            b.is_ascii_digit()
        }),
        "{message}"
    );
    assert_eq!(data.as_object().unwrap().len(), 1, "only `message`: {data}");

    let without = Hub::start(&[]);
    let topics: serde_json::Value = get(&without, "/topics").await.json().await.unwrap();
    assert!(
        !topics.to_string().contains("\"clock\""),
        "no clock without --demo"
    );
}
