//! Authorization: publisher and subscriber JWTs, where tokens come from, private updates.

use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};

use crate::util::{Hub, KEY, client, problem, token, token_with};

#[allow(dead_code)]
#[path = "../src/auth/test_keys.rs"]
mod keys;

fn b64(json: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

async fn publish_with(hub: &Hub, token: Option<&str>, topic: &str) -> reqwest::Response {
    let mut request = client()
        .post(hub.url("/.well-known/mercure"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("topic={topic}&data=x"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

fn claims_token(
    claims: serde_json::Value,
    alg: jsonwebtoken::Algorithm,
    key: &EncodingKey,
) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn publishing_needs_a_valid_token_covering_every_topic() {
    let hub = Hub::start(&[]);
    let mut stream = hub.subscribe("/.well-known/mercure?topic=*", &[]).await;
    hub.wait_subscriptions(1).await;
    let hmac = EncodingKey::from_secret(KEY.as_bytes());
    let expired = claims_token(
        serde_json::json!({"mercure": {"publish": ["*"]}, "exp": now() - 10}),
        jsonwebtoken::Algorithm::HS256,
        &hmac,
    );
    let not_yet = claims_token(
        serde_json::json!({"mercure": {"publish": ["*"]}, "nbf": now() + 3600}),
        jsonwebtoken::Algorithm::HS256,
        &hmac,
    );
    let alg_none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(r#"{"mercure":{"publish":["*"]}}"#)
    );
    let wrong_key = token_with("another-secret", &["*"], &[], None);
    for (label, bad) in [
        ("none", None),
        ("garbage", Some("not.a.jwt")),
        ("wrong key", Some(wrong_key.as_str())),
        ("expired", Some(expired.as_str())),
        ("nbf in the future", Some(not_yet.as_str())),
        ("alg none", Some(alg_none.as_str())),
    ] {
        let response = publish_with(&hub, bad, "a").await;
        assert!(
            response.headers().contains_key("www-authenticate"),
            "{label}"
        );
        assert_eq!(problem(response).await.0, 401, "{label}");
    }
    // Valid, but the claim does not cover the topic: 403.
    for claim in [vec![], vec!["b"], vec!["https://example.com/{id}"]] {
        let narrow = token(&claim, &[]);
        let response = publish_with(&hub, Some(&narrow), "a").await;
        assert_eq!(problem(response).await.0, 403, "{claim:?}");
    }
    // Every topic must be covered, alternates included.
    let only_a = token(&["a"], &[]);
    let response = client()
        .post(hub.url("/.well-known/mercure"))
        .bearer_auth(&only_a)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("topic=a&topic=b&data=x")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response).await.0, 403);
    // A subscriber-only token cannot publish.
    let response = publish_with(&hub, Some(&token(&[], &["*"])), "a").await;
    assert_eq!(problem(response).await.0, 403);
    stream.expect_silence(Duration::from_millis(300)).await;
    let response = publish_with(&hub, Some(&only_a), "a").await;
    assert_eq!(response.status(), 200);
    assert_eq!(stream.next_event().await.data, "x");
}

/// Publishes with a token in the query parameter, the header, and/or extra headers (cookie,
/// origin); returns the status.
async fn publish_via(
    hub: &Hub,
    query: Option<&str>,
    bearer: Option<&str>,
    headers: &[(&str, &str)],
) -> u16 {
    let path = match query {
        Some(token) => format!("/.well-known/mercure?authorization={token}"),
        None => "/.well-known/mercure".to_owned(),
    };
    let mut request = client()
        .post(hub.url(&path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("topic=a&data=x");
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn tokens_come_from_header_then_query_then_cookie() {
    let hub = Hub::start(&["--publish-origin", "https://app.example"]);
    let good = token(&["*"], &[]);
    let bad = token_with("wrong", &["*"], &[], None);
    let cookie = format!("theme=dark; mercureAuthorization={good}");
    let from_app = ("origin", "https://app.example");
    // The query parameter alone; the header wins over it.
    assert_eq!(publish_via(&hub, Some(&good), None, &[]).await, 200);
    assert_eq!(publish_via(&hub, Some(&good), Some(&bad), &[]).await, 401);
    // The cookie from an allowed origin, or with a Referer on that origin.
    assert_eq!(
        publish_via(&hub, None, None, &[("cookie", &cookie), from_app]).await,
        200
    );
    let referer = ("referer", "https://app.example/page");
    assert_eq!(
        publish_via(&hub, None, None, &[("cookie", &cookie), referer]).await,
        200
    );
    // The cookie with no origin at all, or a foreign one, is refused (CSRF).
    assert_eq!(
        publish_via(&hub, None, None, &[("cookie", &cookie)]).await,
        403
    );
    let foreign = ("origin", "https://evil.example");
    assert_eq!(
        publish_via(&hub, None, None, &[("cookie", &cookie), foreign]).await,
        403
    );
    // The query parameter wins over the cookie.
    assert_eq!(
        publish_via(&hub, Some(&bad), None, &[("cookie", &cookie), from_app]).await,
        401
    );
}

#[tokio::test]
async fn subscribers_need_a_token_unless_anonymous() {
    let hub = Hub::start_raw(&["--jwt-key", KEY, "--store", "memory:"]);
    let response = client()
        .get(hub.url("/.well-known/mercure?topic=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response).await.0, 401);
    let bad = token_with("wrong", &[], &["*"], None);
    let response = client()
        .get(hub.url(&format!("/.well-known/mercure?topic=a&authorization={bad}")))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response).await.0, 401);
    // A valid token with no subscribe claim receives public updates.
    let plain = token(&[], &[]);
    let mut stream = hub
        .subscribe(
            "/.well-known/mercure?topic=a",
            &[("authorization", &format!("Bearer {plain}"))],
        )
        .await;
    assert_eq!(stream.status, 200);
    hub.wait_subscriptions(1).await;
    hub.publish_ok(&[("topic", "a"), ("data", "public")]).await;
    assert_eq!(stream.next_event().await.data, "public");
    // The cookie works for subscribers too.
    let mut cookie_stream = hub
        .subscribe(
            "/.well-known/mercure?topic=a",
            &[("cookie", &format!("mercureAuthorization={plain}"))],
        )
        .await;
    assert_eq!(cookie_stream.status, 200);
    hub.wait_subscriptions(2).await;
    hub.publish_ok(&[("topic", "a"), ("data", "again")]).await;
    assert_eq!(cookie_stream.next_event().await.data, "again");
}

#[tokio::test]
async fn private_updates_reach_only_subscribers_whose_claim_matches() {
    let hub = Hub::start(&[]);
    let mut anonymous = hub.subscribe("/.well-known/mercure?topic=*", &[]).await;
    let allowed = token(&[], &["secret"]);
    let mut authorized = hub
        .subscribe(
            &format!("/.well-known/mercure?topic=secret&authorization={allowed}"),
            &[],
        )
        .await;
    let other = token(&[], &["elsewhere"]);
    let mut unauthorized = hub
        .subscribe(
            &format!("/.well-known/mercure?topic=secret&authorization={other}"),
            &[],
        )
        .await;
    hub.wait_subscriptions(3).await;
    hub.publish_ok(&[("topic", "secret"), ("data", "hidden"), ("private", "on")])
        .await;
    hub.publish_ok(&[("topic", "secret"), ("data", "visible")])
        .await;
    assert_eq!(authorized.next_event().await.data, "hidden");
    assert_eq!(authorized.next_event().await.data, "visible");
    assert_eq!(anonymous.next_event().await.data, "visible");
    assert_eq!(unauthorized.next_event().await.data, "visible");
    anonymous.expect_silence(Duration::from_millis(200)).await;
    unauthorized
        .expect_silence(Duration::from_millis(200))
        .await;
}

#[tokio::test]
async fn rs256_and_es256_keys_verify_and_refuse_algorithm_confusion() {
    let rsa = Hub::start_raw(&[
        "--jwt-key",
        keys::RSA_PUBLIC,
        "--jwt-algorithm",
        "RS256",
        "--store",
        "memory:",
    ]);
    let rsa_key = EncodingKey::from_rsa_pem(keys::RSA_PRIVATE.as_bytes()).unwrap();
    let claims = serde_json::json!({"mercure": {"publish": ["*"]}});
    let good = claims_token(claims.clone(), jsonwebtoken::Algorithm::RS256, &rsa_key);
    assert_eq!(publish_with(&rsa, Some(&good), "a").await.status(), 200);
    // HS256 signed with the public key as the secret: the classic confusion attack.
    let confused = claims_token(
        claims.clone(),
        jsonwebtoken::Algorithm::HS256,
        &EncodingKey::from_secret(keys::RSA_PUBLIC.as_bytes()),
    );
    assert_eq!(publish_with(&rsa, Some(&confused), "a").await.status(), 401);

    let ec = Hub::start_raw(&[
        "--jwt-key",
        keys::EC_P256_PUBLIC,
        "--jwt-algorithm",
        "ES256",
        "--store",
        "memory:",
    ]);
    let ec_key = EncodingKey::from_ec_pem(keys::EC_P256_PRIVATE.as_bytes()).unwrap();
    let good = claims_token(claims, jsonwebtoken::Algorithm::ES256, &ec_key);
    assert_eq!(publish_with(&ec, Some(&good), "a").await.status(), 200);
    assert_eq!(
        publish_with(&ec, Some(&token(&["*"], &[])), "a")
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn publisher_and_subscriber_keys_can_differ() {
    let hub = Hub::start_raw(&[
        "--publisher-jwt-key",
        "pub-secret",
        "--subscriber-jwt-key",
        "sub-secret",
        "--store",
        "memory:",
    ]);
    let publisher = token_with("pub-secret", &["*"], &[], None);
    let subscriber = token_with("sub-secret", &[], &["*"], None);
    assert_eq!(
        publish_with(&hub, Some(&subscriber), "a").await.status(),
        401
    );
    let mut stream = hub
        .subscribe(
            &format!("/.well-known/mercure?topic=a&authorization={subscriber}"),
            &[],
        )
        .await;
    assert_eq!(stream.status, 200);
    hub.wait_subscriptions(1).await;
    let response = client()
        .get(hub.url(&format!(
            "/.well-known/mercure?topic=a&authorization={publisher}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        publish_with(&hub, Some(&publisher), "a").await.status(),
        200
    );
    assert_eq!(stream.next_event().await.data, "x");
}

#[tokio::test]
async fn a_stream_is_closed_when_its_token_expires() {
    let hub = Hub::start_raw(&["--jwt-key", KEY, "--store", "memory:", "--heartbeat", "60s"]);
    let short = token_with(KEY, &[], &["*"], Some(Duration::from_secs(2)));
    let mut stream = hub
        .subscribe(
            &format!("/.well-known/mercure?topic=a&authorization={short}"),
            &[],
        )
        .await;
    assert_eq!(stream.status, 200);
    hub.wait_subscriptions(1).await;
    let started = std::time::Instant::now();
    assert!(
        stream.read_to_end(Duration::from_secs(6)).await,
        "the stream outlived its token"
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
    hub.wait_subscriptions(0).await;
    // An already expired token is refused outright.
    let expired = claims_token(
        serde_json::json!({"mercure": {"subscribe": ["*"]}, "exp": now() - 1}),
        jsonwebtoken::Algorithm::HS256,
        &EncodingKey::from_secret(KEY.as_bytes()),
    );
    let response = client()
        .get(hub.url(&format!(
            "/.well-known/mercure?topic=a&authorization={expired}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response).await.0, 401);
}
