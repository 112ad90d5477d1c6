//! Mercure specifics: URI-template selectors, subscription events and the subscriptions API.

use std::time::Duration;

use herald::auth::{Algorithm, MintClaims, mint_hmac};

use crate::util::{Hub, KEY, client, problem, token};

const SUBSCRIPTIONS_TEMPLATE: &str = "/.well-known/mercure/subscriptions{/topic}{/subscriber}";

fn token_with_payload(subscribe: &[&str], payload: serde_json::Value) -> String {
    mint_hmac(
        KEY.as_bytes(),
        Algorithm::HS256,
        &MintClaims {
            publish: vec![],
            subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
            payload: Some(payload),
            ttl: None,
        },
    )
    .unwrap()
}

fn encode(text: &str) -> String {
    herald::subscriptions::encode_segment(text)
}

#[tokio::test]
async fn uri_template_selectors_match_topics() {
    let hub = Hub::start(&[]);
    let mut stream = hub
        .subscribe(
            &format!(
                "/.well-known/mercure?topic={}",
                encode("https://example.com/books/{id}")
            ),
            &[],
        )
        .await;
    hub.wait_subscriptions(1).await;
    hub.publish_ok(&[
        ("topic", "https://example.com/books/1/reviews"),
        ("data", "no"),
    ])
    .await;
    hub.publish_ok(&[("topic", "https://example.com/authors/1"), ("data", "no")])
        .await;
    hub.publish_ok(&[("topic", "https://example.com/books/42"), ("data", "yes")])
        .await;
    assert_eq!(stream.next_event().await.data, "yes");
    stream.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn alternate_topics_count_for_matching_and_for_private_access() {
    let hub = Hub::start(&[]);
    let claim = token(&[], &["https://example.com/users/{id}"]);
    let mut stream = hub
        .subscribe(
            &format!(
                "/.well-known/mercure?topic=https://example.com/books/1&authorization={claim}"
            ),
            &[],
        )
        .await;
    hub.wait_subscriptions(1).await;
    // Canonical topic matches the selector; the alternate topic matches the claim.
    hub.publish_ok(&[
        ("topic", "https://example.com/books/1"),
        ("topic", "https://example.com/users/7"),
        ("data", "private via alternate"),
        ("private", "on"),
    ])
    .await;
    hub.publish_ok(&[
        ("topic", "https://example.com/books/1"),
        ("topic", "https://example.com/admins/7"),
        ("data", "not allowed"),
        ("private", "on"),
    ])
    .await;
    assert_eq!(stream.next_event().await.data, "private via alternate");
    stream.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn subscription_events_announce_joins_and_leaves() {
    let hub = Hub::start(&["--subscriptions"]);
    let watcher_token = token(&[], &[SUBSCRIPTIONS_TEMPLATE]);
    let mut watcher = hub
        .subscribe(
            &format!(
                "/.well-known/mercure?topic={}&authorization={watcher_token}",
                encode(SUBSCRIPTIONS_TEMPLATE)
            ),
            &[],
        )
        .await;
    hub.wait_subscriptions(1).await;
    // The watcher's own join event may or may not be visible; skip it if it is.
    let member_token = token_with_payload(&[], serde_json::json!({"name": "Ada"}));
    let member = hub
        .subscribe(
            &format!(
                "/.well-known/mercure?topic=https://example.com/room&authorization={member_token}"
            ),
            &[],
        )
        .await;
    let joined = loop {
        let event = watcher.next_event().await;
        let body: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        if body["topic"] == "https://example.com/room" {
            break body;
        }
    };
    assert_eq!(joined["@context"], "https://mercure.rocks/");
    assert_eq!(joined["type"], "Subscription");
    assert_eq!(joined["active"], true);
    assert_eq!(joined["payload"]["name"], "Ada");
    let urn = joined["subscriber"].as_str().unwrap().to_owned();
    assert!(urn.starts_with("urn:uuid:"));
    assert_eq!(
        joined["id"],
        format!(
            "/.well-known/mercure/subscriptions/{}/{}",
            encode("https://example.com/room"),
            encode(&urn)
        )
    );

    // The API lists it.
    let api = |path: String, bearer: Option<String>| {
        let mut request = client().get(hub.url(&path));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    let all: serde_json::Value = api(
        "/.well-known/mercure/subscriptions".into(),
        Some(watcher_token.clone()),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(all["type"], "Subscriptions");
    assert!(all["lastEventID"].as_str().is_some());
    assert!(
        all["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["subscriber"] == urn)
    );
    let one_path = format!(
        "/.well-known/mercure/subscriptions/{}/{}",
        encode("https://example.com/room"),
        encode(&urn)
    );
    let response = api(one_path.clone(), Some(watcher_token.clone()))
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/ld+json");
    let one: serde_json::Value = response.json().await.unwrap();
    assert_eq!(one["subscriber"], urn);
    assert_eq!(one["payload"]["name"], "Ada");
    let by_topic: serde_json::Value = api(
        format!(
            "/.well-known/mercure/subscriptions/{}",
            encode("https://example.com/room")
        ),
        Some(watcher_token.clone()),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(by_topic["subscriptions"].as_array().unwrap().len(), 1);
    // Errors: unknown subscription, no token, a token whose claim does not cover the URL.
    let unknown = format!(
        "/.well-known/mercure/subscriptions/{}/nobody",
        encode("https://example.com/room")
    );
    assert_eq!(
        problem(api(unknown, Some(watcher_token.clone())).await.unwrap())
            .await
            .0,
        404
    );
    assert_eq!(
        problem(api(one_path.clone(), None).await.unwrap()).await.0,
        401
    );
    assert_eq!(
        problem(api(one_path, Some(token(&[], &["other"]))).await.unwrap())
            .await
            .0,
        403
    );

    // Leaving is announced too.
    drop(member);
    let left = loop {
        let event = watcher.next_event().await;
        let body: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        if body["subscriber"] == urn {
            break body;
        }
    };
    assert_eq!(left["active"], false);
}

#[tokio::test]
async fn the_subscriptions_api_is_off_by_default_and_events_stay_private() {
    let hub = Hub::start(&[]);
    let bearer = token(&[], &[SUBSCRIPTIONS_TEMPLATE]);
    let response = client()
        .get(hub.url("/.well-known/mercure/subscriptions"))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response).await.0, 404);

    let hub = Hub::start(&["--subscriptions"]);
    // An anonymous subscriber to the same template sees no subscription events.
    let mut anonymous = hub
        .subscribe(
            &format!(
                "/.well-known/mercure?topic={}",
                encode(SUBSCRIPTIONS_TEMPLATE)
            ),
            &[],
        )
        .await;
    let _other = hub.subscribe("/.well-known/mercure?topic=x", &[]).await;
    hub.wait_subscriptions(2).await;
    anonymous.expect_silence(Duration::from_millis(300)).await;
}
