//! The JSON views: `/topics` and `/topics/{topic}/events`.

use crate::util::{Hub, client, problem, token};

async fn get_json(hub: &Hub, path: &str) -> serde_json::Value {
    let response = client().get(hub.url(path)).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

#[tokio::test]
async fn topics_lists_live_subscribers_and_history() {
    let hub = Hub::start(&[]);
    let _a1 = hub.subscribe("/.well-known/mercure?topic=a", &[]).await;
    let _a2 = hub
        .subscribe("/.well-known/mercure?topic=a&topic=*", &[])
        .await;
    let _star = hub.subscribe("/.well-known/mercure?topic=*", &[]).await;
    hub.wait_subscriptions(3).await;
    hub.publish_ok(&[("topic", "b"), ("id", "b1")]).await;
    hub.publish_ok(&[("topic", "b"), ("id", "b2")]).await;
    let listing = get_json(&hub, "/topics").await;
    let topics = listing["topics"].as_array().unwrap();
    let find = |name: &str| topics.iter().find(|t| t["topic"] == name).cloned().unwrap();
    let a = find("a");
    assert_eq!(
        a["subscribers"], 3,
        "two exact subscribers plus one `*`: {a}"
    );
    assert_eq!(a["last_event_id"], serde_json::Value::Null);
    let b = find("b");
    assert_eq!(b["subscribers"], 2, "the two `*` subscribers: {b}");
    assert_eq!(b["last_event_id"], "b2");
    assert_eq!(b["events"], 2);
    assert_eq!(listing["subscriptions"], 3);
}

#[tokio::test]
async fn topic_history_pages_after_an_id() {
    let hub = Hub::start(&[]);
    let topic = "https://example.com/books/1";
    for id in ["1", "2", "3", "4"] {
        hub.publish_ok(&[
            ("topic", topic),
            ("id", id),
            ("data", &format!("d{id}")),
            ("type", "t"),
        ])
        .await;
    }
    hub.publish_ok(&[("topic", "elsewhere"), ("id", "x")]).await;
    let encoded = "https%3A%2F%2Fexample.com%2Fbooks%2F1";
    let page = get_json(&hub, &format!("/topics/{encoded}/events?after=1&limit=2")).await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["id"], "2");
    assert_eq!(events[0]["data"], "d2");
    assert_eq!(events[0]["type"], "t");
    assert_eq!(events[0]["topics"][0], topic);
    assert!(events[0]["published_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(page["last_event_id"], "3");
    let all = get_json(&hub, &format!("/topics/{encoded}/events")).await;
    assert_eq!(all["events"].as_array().unwrap().len(), 4);
    // An unknown id, a bad limit.
    let response = client()
        .get(hub.url(&format!("/topics/{encoded}/events?after=nope")))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response).await.0, 404);
    let response = client()
        .get(hub.url(&format!("/topics/{encoded}/events?limit=0")))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response).await.0, 400);
}

#[tokio::test]
async fn topic_history_hides_private_updates_without_a_matching_token() {
    let hub = Hub::start(&[]);
    hub.publish_ok(&[("topic", "p"), ("id", "secret"), ("private", "on")])
        .await;
    hub.publish_ok(&[("topic", "p"), ("id", "open")]).await;
    let anonymous = get_json(&hub, "/topics/p/events").await;
    let ids: Vec<_> = anonymous["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(ids, ["open"]);
    let allowed = token(&[], &["p"]);
    let authorized = get_json(&hub, &format!("/topics/p/events?authorization={allowed}")).await;
    assert_eq!(authorized["events"].as_array().unwrap().len(), 2);
}
