//! Mercure 1.0 beside 0.x on one hub: `match` subscriptions, access tokens (RFC 9068) and their
//! RFC 6750 answers, 1.0 publish refusals, discovery (RFC 9728).

use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Value, json};

use crate::util::{Hub, KEY, client, encode_form, problem, token};

const ISSUER: &str = "https://issuer.example";
const DETAIL: &str = "https://mercure.rocks/authorization-detail";

/// A hub that trusts [`ISSUER`] and derives its resource identifier from the URL contacted.
fn hub(extra: &[&str]) -> Hub {
    let mut args = vec!["--jwt-issuer", ISSUER];
    args.extend_from_slice(extra);
    Hub::start(&args)
}

fn resource(hub: &Hub) -> String {
    hub.url("/.well-known/mercure")
}

/// An `at+jwt` access token signed with [`KEY`].
fn access_token(claims: Value) -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    encode(&header, &claims, &EncodingKey::from_secret(KEY.as_bytes())).unwrap()
}

fn grant(actions: &[&str], topics: Value) -> Value {
    json!({"type": DETAIL, "actions": actions, "topics": topics})
}

/// Registered claims for `hub` plus these `authorization_details`.
fn claims_for(hub: &Hub, details: Value) -> Value {
    json!({
        "iss": ISSUER, "aud": resource(hub), "sub": "tester",
        "exp": get_current_timestamp() + 600, "authorization_details": details
    })
}

fn q(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn publish_with(hub: &Hub, token: &str, form: &[(&str, &str)]) -> reqwest::Response {
    client()
        .post(hub.url("/.well-known/mercure"))
        .bearer_auth(token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(form))
        .send()
        .await
        .unwrap()
}

fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn match_exact_and_urlpattern_subscribers_get_what_0x_subscribers_get() {
    let hub = hub(&[]);
    let path = format!(
        "/.well-known/mercure?match={}&match_urlpattern={}",
        q("https://example.com/books/1"),
        q("/books/:id")
    );
    let mut v1 = hub.subscribe(&path, &[]).await;
    assert_eq!(v1.status, 200);
    let mut v0 = hub
        .subscribe(
            &format!(
                "/.well-known/mercure?topic={}&topic={}",
                q("https://example.com/books/1"),
                q("/books/{id}")
            ),
            &[],
        )
        .await;
    hub.wait_subscriptions(2).await;
    hub.publish_ok(&[("topic", "https://example.com/books/1"), ("data", "exact")])
        .await;
    hub.publish_ok(&[("topic", "https://example.com/books/2"), ("data", "no")])
        .await;
    // A relative topic resolves against the hub's URL, as the relative pattern does.
    hub.publish_ok(&[("topic", "/books/7"), ("data", "relative")])
        .await;
    hub.publish_ok(&[("topic", "/books/7/reviews"), ("data", "no")])
        .await;
    // Exact is byte for byte: another case or an equivalent spelling is another topic.
    hub.publish_ok(&[("topic", "https://EXAMPLE.com/books/1"), ("data", "no")])
        .await;
    for stream in [&mut v1, &mut v0] {
        assert_eq!(stream.next_event().await.data, "exact");
        assert_eq!(stream.next_event().await.data, "relative");
        stream.expect_silence(Duration::from_millis(200)).await;
    }
    // A 1.0 token grant publishes too, and both protocols' subscribers get it.
    let publisher = access_token(claims_for(
        &hub,
        json!([grant(
            &["publish"],
            json!([{"match": "/books/:id", "match_type": "urlpattern"}])
        )]),
    ));
    let response = publish_with(&hub, &publisher, &[("topic", "/books/9"), ("data", "v1")]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    let id = response.text().await.unwrap();
    for stream in [&mut v1, &mut v0] {
        let event = stream.next_event().await;
        assert_eq!(
            (event.data.as_str(), event.id.as_str()),
            ("v1", id.as_str())
        );
    }
}

#[tokio::test]
async fn a_wildcard_match_and_a_topic_that_is_not_a_url() {
    let hub = hub(&[]);
    let mut all = hub.subscribe("/.well-known/mercure?match=*", &[]).await;
    let mut pattern = hub
        .subscribe(
            &format!("/.well-known/mercure?match_urlpattern={}", q("*://*/*")),
            &[],
        )
        .await;
    hub.wait_subscriptions(2).await;
    hub.publish_ok(&[("topic", "http://[::1"), ("data", "not a url")])
        .await;
    hub.publish_ok(&[("topic", "https://example.com/x"), ("data", "url")])
        .await;
    assert_eq!(all.next_event().await.data, "not a url");
    assert_eq!(all.next_event().await.data, "url");
    assert_eq!(pattern.next_event().await.data, "url");
    pattern.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn bad_subscribe_requests_get_400() {
    let hub = hub(&[]);
    for query in [
        "Match=a",
        "MATCH_EXACT=a",
        "match_regex=a",
        "matchExact=a",
        "match=a&topic=b",
        "topic=b&match_urlpattern=%2Fa",
        "match=%FF",
        "match=a%00b",
        "match=a%7Fb",
        "match=a%C2%85b",
        "match=a%E2%80%8Bb",
        "match_urlpattern=%2Fbooks%2F(",
        "match_urlpattern=https%3A%2F%2Fexample.com%2F(%3F%3Cx%3Ea)",
        "last_event_id=x",
    ] {
        let response = client()
            .get(hub.url(&format!("/.well-known/mercure?{query}")))
            .send()
            .await
            .unwrap();
        let (status, body) = problem(response).await;
        assert_eq!(status, 400, "{query}: {body}");
    }
    let response = client()
        .get(hub.url("/.well-known/mercure?match=a&topic=b"))
        .send()
        .await
        .unwrap();
    let (_, body) = problem(response).await;
    assert!(body["detail"].as_str().unwrap().contains("cannot be mixed"));
}

#[tokio::test]
async fn last_event_id_and_the_mercure_last_event_id_field() {
    let hub = hub(&[]);
    let first = hub.publish_ok(&[("topic", "t"), ("data", "1")]).await;
    let second = hub.publish_ok(&[("topic", "t"), ("data", "2")]).await;

    let mut resumed = hub
        .subscribe(
            &format!("/.well-known/mercure?match=t&last_event_id={first}"),
            &[],
        )
        .await;
    assert_eq!(
        resumed.header("mercure-last-event-id"),
        Some(first.as_str())
    );
    assert_eq!(resumed.header("last-event-id"), None);
    assert_eq!(resumed.next_event().await.id, second);

    // The header wins over the query parameter.
    let mut header_wins = hub
        .subscribe(
            "/.well-known/mercure?match=t&last_event_id=unknown-id",
            &[("Last-Event-ID", &second)],
        )
        .await;
    assert_eq!(
        header_wins.header("mercure-last-event-id"),
        Some(second.as_str())
    );
    header_wins.expect_silence(Duration::from_millis(200)).await;

    for asked in ["unknown-id", "earliest"] {
        let mut stream = hub
            .subscribe(
                &format!("/.well-known/mercure?match=t&last_event_id={asked}"),
                &[],
            )
            .await;
        assert_eq!(
            stream.header("mercure-last-event-id"),
            Some("earliest"),
            "{asked}"
        );
        let mut data = Vec::new();
        while let Some(event) = stream.next_event_within(Duration::from_millis(300)).await {
            if event.event == "message" {
                data.push(event.data);
            }
        }
        assert_eq!(data, ["1", "2"], "{asked}: everything kept is replayed");
    }
    // No cursor asked, no cursor told.
    let fresh = hub.subscribe("/.well-known/mercure?match=t", &[]).await;
    assert_eq!(fresh.header("mercure-last-event-id"), None);
    // 0.x keeps its own header.
    let old = hub
        .subscribe(
            &format!("/.well-known/mercure?topic=t&lastEventID={first}"),
            &[],
        )
        .await;
    assert_eq!(old.header("last-event-id"), Some(second.as_str()));
    assert_eq!(old.header("mercure-last-event-id"), None);
}

/// The data of the `message` events that arrive before a quiet spell.
async fn replayed(stream: &mut crate::util::Stream) -> Vec<String> {
    let mut data = Vec::new();
    while let Some(event) = stream.next_event_within(Duration::from_millis(300)).await {
        if event.event == "message" {
            data.push(event.data);
        }
    }
    data
}

#[tokio::test]
async fn a_duplicated_id_resumes_after_its_earliest_occurrence_for_1_0_only() {
    let dir = crate::util::TempDir::new("duplicate-ids");
    for store in ["memory:", dir.str()] {
        let hub = Hub::start_raw(&[
            "--jwt-key",
            KEY,
            "--anonymous",
            "--jwt-issuer",
            ISSUER,
            "--store",
            store,
        ]);
        for (id, data) in [("dup", "1"), ("x", "2"), ("dup", "3"), ("y", "4")] {
            hub.publish_ok(&[("topic", "t"), ("id", id), ("data", data)])
                .await;
        }
        // 1.0, header or query parameter: after the earliest `dup`.
        for (query, headers) in [
            ("&last_event_id=dup", vec![]),
            ("", vec![("Last-Event-ID", "dup")]),
        ] {
            let mut v1 = hub
                .subscribe(&format!("/.well-known/mercure?match=t{query}"), &headers)
                .await;
            assert_eq!(v1.header("mercure-last-event-id"), Some("dup"), "{store}");
            assert_eq!(replayed(&mut v1).await, ["2", "3", "4"], "{store}");
        }
        // 0.x keeps what it always got: after the newest.
        let mut v0 = hub
            .subscribe("/.well-known/mercure?topic=t&lastEventID=dup", &[])
            .await;
        assert_eq!(v0.header("last-event-id"), Some("y"), "{store}");
        assert_eq!(replayed(&mut v0).await, ["4"], "{store}");

        // An occurrence the subscriber may not see does not exist for it: the earliest it may
        // see is the one resumed from, and the private one's place is not given away.
        hub.publish_ok(&[
            ("topic", "secret"),
            ("id", "shared"),
            ("data", "private"),
            ("private", "on"),
        ])
        .await;
        hub.publish_ok(&[("topic", "t"), ("id", "between"), ("data", "5")])
            .await;
        hub.publish_ok(&[("topic", "t"), ("id", "shared"), ("data", "6")])
            .await;
        hub.publish_ok(&[("topic", "t"), ("id", "after"), ("data", "7")])
            .await;
        let mut anonymous = hub
            .subscribe("/.well-known/mercure?match=*&last_event_id=shared", &[])
            .await;
        assert_eq!(
            anonymous.header("mercure-last-event-id"),
            Some("shared"),
            "{store}"
        );
        assert_eq!(replayed(&mut anonymous).await, ["7"], "{store}");
        // A reader of the private topic resumes after the earliest occurrence it may see.
        let reader = access_token(claims_for(
            &hub,
            json!([grant(&["subscribe"], json!([{"match": "secret"}]))]),
        ));
        let mut allowed = hub
            .subscribe(
                "/.well-known/mercure?match=*&last_event_id=shared",
                &[("Authorization", &format!("Bearer {reader}"))],
            )
            .await;
        assert_eq!(replayed(&mut allowed).await, ["5", "6", "7"], "{store}");
    }
}

#[tokio::test]
async fn the_query_method_with_a_form_body_subscribes() {
    let hub = hub(&[]);
    let first = hub.publish_ok(&[("topic", "q/1"), ("data", "old")]).await;
    let method = reqwest::Method::from_bytes(b"QUERY").unwrap();
    let response = tokio::time::timeout(
        crate::util::SOON,
        client()
            .request(method.clone(), hub.url("/.well-known/mercure?match=q%2F2"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "match_urlpattern={}&last_event_id={first}",
                q("/q/:n")
            ))
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["mercure-last-event-id"], first.as_str());
    let mut stream = crate::util::Stream::from_response(response);
    hub.publish_ok(&[("topic", "/q/3"), ("data", "pattern")])
        .await;
    assert_eq!(stream.next_event().await.data, "pattern");

    // A body that is not a form is refused.
    let response = client()
        .request(method, hub.url("/.well-known/mercure"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response).await.0, 415);
}

#[tokio::test]
async fn access_tokens_grant_private_updates_and_replay_is_reauthorized() {
    let hub = hub(&[]);
    let secret = hub
        .publish_ok(&[
            ("topic", "https://example.com/users/7"),
            ("data", "secret"),
            ("private", ""),
        ])
        .await;
    hub.publish_ok(&[("topic", "https://example.com/news"), ("data", "public")])
        .await;
    let reader = access_token(claims_for(
        &hub,
        json!([grant(
            &["subscribe"],
            json!([{"match": "https://example.com/users/:id", "match_type": "urlpattern"}])
        )]),
    ));
    let stranger = access_token(claims_for(
        &hub,
        json!([grant(
            &["subscribe"],
            json!([{"match": "https://example.com/other"}])
        )]),
    ));
    let path = "/.well-known/mercure?match=*&last_event_id=earliest";
    let mut allowed = hub
        .subscribe(path, &[("Authorization", &format!("Bearer {reader}"))])
        .await;
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.next_event().await.data, "secret");
    assert_eq!(allowed.next_event().await.data, "public");
    // Replay re-authorizes against the current token: the private update is not sent.
    let mut denied = hub
        .subscribe(path, &[("Authorization", &format!("Bearer {stranger}"))])
        .await;
    assert_eq!(denied.next_event().await.data, "public");
    // Resuming from a private id the token may not read tells `earliest`, never that id.
    let resumed = hub
        .subscribe(
            &format!("/.well-known/mercure?match=*&last_event_id={secret}"),
            &[("Authorization", &format!("Bearer {stranger}"))],
        )
        .await;
    assert_eq!(resumed.header("mercure-last-event-id"), Some("earliest"));
    // The 1.0 cookie carries a token; the header wins over it.
    let mut cookie = hub
        .subscribe(
            "/.well-known/mercure?match=*&last_event_id=earliest",
            &[("Cookie", &format!("__Secure-mercure_access_token={reader}"))],
        )
        .await;
    assert_eq!(cookie.next_event().await.data, "secret");
    let mut both = hub
        .subscribe(
            "/.well-known/mercure?match=*&last_event_id=earliest",
            &[
                ("Authorization", &format!("Bearer {stranger}")),
                ("Cookie", &format!("__Secure-mercure_access_token={reader}")),
            ],
        )
        .await;
    assert_eq!(both.next_event().await.data, "public");
}

#[tokio::test]
async fn token_refusals_follow_rfc_6750() {
    let hub = Hub::start_raw(&[
        "--jwt-key",
        KEY,
        "--store",
        "memory:",
        "--jwt-issuer",
        ISSUER,
    ]);
    let metadata = hub.url("/.well-known/oauth-protected-resource/.well-known/mercure");
    let subscribe = |token: Option<String>, query: &'static str| {
        let mut request = client().get(hub.url(&format!("/.well-known/mercure?{query}")));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    // No token: a bare challenge with resource_metadata.
    let response = subscribe(None, "match=a").await.unwrap();
    assert_eq!(
        challenge(&response),
        format!("Bearer resource_metadata=\"{metadata}\"")
    );
    assert_eq!(problem(response).await.0, 401);

    let good = claims_for(
        &hub,
        json!([grant(&["subscribe"], json!([{"match": "*"}]))]),
    );
    let response = subscribe(Some(access_token(good.clone())), "match=a")
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);

    let mut bad = Vec::new();
    for (field, value) in [
        ("iss", json!("https://untrusted.example")),
        (
            "aud",
            json!("https://elsewhere.example/.well-known/mercure"),
        ),
        ("exp", json!(get_current_timestamp() - 10)),
        ("nbf", json!(get_current_timestamp() + 600)),
        (
            "authorization_details",
            json!([grant(
                &["subscribe"],
                json!([{"match": "a", "match_type": "regex"}])
            )]),
        ),
        (
            "authorization_details",
            json!([{"type": DETAIL, "actions": ["subscribe", 1], "topics": [{"match": "a"}]}]),
        ),
        (
            "authorization_details",
            json!([grant(
                &["subscribe"],
                json!([{"match": "/(", "match_type": "urlpattern"}])
            )]),
        ),
    ] {
        let mut claims = good.clone();
        claims[field] = value;
        bad.push(access_token(claims));
    }
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    bad.push(access_token(no_exp));
    // A 0.x token signed with another key is refused the 1.0 way on a 1.0 request.
    bad.push(crate::util::token_with("another-key", &[], &["*"], None));
    for token in bad {
        let response = subscribe(Some(token), "match=a").await.unwrap();
        assert_eq!(
            challenge(&response),
            format!("Bearer error=\"invalid_token\", resource_metadata=\"{metadata}\"")
        );
        assert_eq!(problem(response).await.0, 401);
    }
    // An access token in the query string: a malformed presentation.
    let response = client()
        .get(hub.url(&format!(
            "/.well-known/mercure?match=a&authorization={}",
            access_token(good.clone())
        )))
        .send()
        .await
        .unwrap();
    assert!(challenge(&response).starts_with("Bearer error=\"invalid_request\""));
    assert_eq!(problem(response).await.0, 400);

    // Publishing: a grant that does not cover every topic is 403 insufficient_scope, and
    // nothing is dispatched.
    let publisher = access_token(claims_for(
        &hub,
        json!([grant(
            &["publish", "dance"],
            json!([{"match": "https://example.com/a"}])
        )]),
    ));
    let response = publish_with(
        &hub,
        &publisher,
        &[
            ("topic", "https://example.com/a"),
            ("topic", "https://example.com/b"),
        ],
    )
    .await;
    assert!(challenge(&response).starts_with("Bearer error=\"insufficient_scope\""));
    assert_eq!(problem(response).await.0, 403);
    let response = publish_with(&hub, &publisher, &[("topic", "https://example.com/a")]).await;
    assert_eq!(response.status(), 200);
    // A subscribe-only token cannot publish.
    let reader = access_token(good);
    let response = publish_with(&hub, &reader, &[("topic", "https://example.com/a")]).await;
    assert_eq!(problem(response).await.0, 403);
    // No token at all on publish: 401 with resource_metadata.
    let response = client()
        .post(hub.url("/.well-known/mercure"))
        .form(&[("topic", "a")])
        .send()
        .await
        .unwrap();
    assert!(challenge(&response).contains("resource_metadata="));
    assert_eq!(problem(response).await.0, 401);
}

#[tokio::test]
async fn a_configured_resource_identifier_is_the_audience() {
    let id = "https://localhost/.well-known/mercure";
    let hub = hub(&["--resource-identifier", id]);
    let mut claims = json!({
        "iss": ISSUER, "aud": [id], "exp": get_current_timestamp() + 60,
        "authorization_details": [grant(&["publish"], json!([{"match": "*"}]))]
    });
    let response = publish_with(&hub, &access_token(claims.clone()), &[("topic", "x")]).await;
    assert_eq!(response.status(), 200);
    claims["aud"] = json!(resource(&hub));
    let response = publish_with(&hub, &access_token(claims), &[("topic", "x")]).await;
    assert_eq!(problem(response).await.0, 401);
}

#[tokio::test]
async fn publish_refusals_for_access_tokens() {
    let hub = hub(&[]);
    let publisher = access_token(claims_for(
        &hub,
        json!([grant(&["publish"], json!([{"match": "*"}]))]),
    ));
    for form in [
        vec![("topic", "*")],
        vec![("topic", "/.well-known/mercure")],
        vec![("topic", "/.well-known/mercure/subscriptions/exact/a/b")],
        vec![(
            "topic",
            "https://elsewhere.example/a/../.well-known/%6Dercure/x",
        )],
        vec![("topic", "ok"), ("topic", "/.well-known/mercure/x")],
        vec![("topic", "ok"), ("id", "#fragment")],
        vec![("topic", "ok"), ("id", "earliest")],
        vec![("topic", "ok"), ("id", "a\u{200b}b")],
        vec![("topic", "ok"), ("type", "mercure")],
        vec![("topic", "ok"), ("retry", "1s")],
        vec![("topic", "ok"), ("retry", "-1")],
    ] {
        let response = publish_with(&hub, &publisher, &form).await;
        let (status, body) = problem(response).await;
        assert_eq!(status, 400, "{form:?}: {body}");
    }
    // The first topic is canonical; `private` alone makes the update private.
    let mut public = hub
        .subscribe("/.well-known/mercure?match=canonical", &[])
        .await;
    hub.wait_subscriptions(1).await;
    let response = publish_with(
        &hub,
        &publisher,
        &[
            ("topic", "canonical"),
            ("topic", "alternate"),
            ("private", "false"),
            ("data", "p"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = publish_with(&hub, &publisher, &[("topic", "canonical"), ("data", "q")]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(public.next_event().await.data, "q");
    // 0.x publishers keep what they had: a 0.x token may still publish to `*`.
    let response = publish_with(&hub, &token(&["*"], &[]), &[("topic", "*")]).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn discovery_metadata_lists_every_member() {
    let hub = hub(&["--subscriptions", "--cookie-name", "my_cookie"]);
    let document = hub
        .get_json("/.well-known/oauth-protected-resource/.well-known/mercure")
        .await;
    assert_eq!(document["resource"], resource(&hub));
    assert_eq!(document["authorization_servers"], json!([ISSUER]));
    assert_eq!(
        document["authorization_details_types_supported"],
        json!([DETAIL])
    );
    assert_eq!(document["bearer_methods_supported"], json!(["header"]));
    assert_eq!(document["mercure_cookie"], "my_cookie");
    assert_eq!(
        document["mercure_matcher_types_supported"],
        json!(["exact", "urlpattern"])
    );
    assert_eq!(document["mercure_subscriptions"], true);

    let plain = Hub::start(&[]);
    let document = plain
        .get_json("/.well-known/oauth-protected-resource/.well-known/mercure")
        .await;
    assert_eq!(document["mercure_cookie"], "__Secure-mercure_access_token");
    assert!(document.get("mercure_subscriptions").is_none());
    assert!(document.get("authorization_servers").is_none());
}

#[test]
fn bad_mercure_1_flags_exit_64() {
    for args in [
        vec!["--resource-identifier", "not a url"],
        vec!["--resource-identifier", "ftp://x/y"],
        vec!["--cookie-name", "bad;name"],
    ] {
        let mut all = vec!["serve", "--store", "memory:", "--listen", "127.0.0.1:0"];
        all.extend(args.iter());
        let (code, _, stderr) = crate::util::run_cli(&all, &[]);
        assert_eq!(code, 64, "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

#[tokio::test]
async fn a_0x_watcher_and_a_1_0_watcher_each_see_every_subscription_in_their_format() {
    let hub = hub(&["--subscriptions"]);
    let template = "/.well-known/mercure/subscriptions{/topic}{/subscriber}";
    let old_watcher = token(&[], &[template]);
    let mut old = hub
        .subscribe(
            &format!("/.well-known/mercure?topic={}", q(template)),
            &[("Authorization", &format!("Bearer {old_watcher}"))],
        )
        .await;
    let pattern = "/.well-known/mercure/subscriptions/:type/:match/:subscriber";
    let new_watcher = access_token(claims_for(
        &hub,
        json!([grant(
            &["subscribe"],
            json!([{"match": "/.well-known/mercure/subscriptions/*", "match_type": "urlpattern"}])
        )]),
    ));
    let mut new = hub
        .subscribe(
            &format!("/.well-known/mercure?match_urlpattern={}", q(pattern)),
            &[("Authorization", &format!("Bearer {new_watcher}"))],
        )
        .await;
    assert_eq!((old.status, new.status), (200, 200));
    hub.wait_subscriptions(2).await;
    // Each watcher may see its own and the other's joins first: those are skipped below.
    let interesting = ["https://example.com/a b", "plain"];

    let payload_token = access_token(claims_for(
        &hub,
        json!([{"type": DETAIL, "actions": ["subscribe"], "topics": [{"match": "*"}],
                "payload": {"user": "ada"}}]),
    ));
    let v1_subscriber = hub
        .subscribe(
            &format!(
                "/.well-known/mercure?match={}",
                q("https://example.com/a b")
            ),
            &[("Authorization", &format!("Bearer {payload_token}"))],
        )
        .await;
    let v0_subscriber = hub.subscribe("/.well-known/mercure?topic=plain", &[]).await;
    hub.wait_subscriptions(4).await;

    let mut seen_v1 = Vec::new();
    for _ in 0..4 {
        let event = new.next_event().await;
        assert_eq!(event.event, "mercure");
        let body: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(body["type"], "subscription");
        assert!(body.get("@context").is_none());
        if interesting.iter().any(|m| body["match"] == *m) {
            seen_v1.push(body);
        }
        if seen_v1.len() == 2 {
            break;
        }
    }
    let exact = seen_v1
        .iter()
        .find(|body| body["match"] == "https://example.com/a b")
        .expect("the 1.0 subscriber's subscription");
    assert_eq!(exact["match_type"], "exact");
    assert_eq!(exact["active"], true);
    assert_eq!(exact["payload"], json!({"user": "ada"}));
    let subscriber = exact["subscriber"].as_str().unwrap();
    assert_eq!(
        exact["id"],
        format!(
            "/.well-known/mercure/subscriptions/exact/{}/{}",
            "https%3A%2F%2Fexample.com%2Fa%20b",
            herald::subscriptions::encode_segment(subscriber)
        )
    );
    assert!(seen_v1.iter().any(|body| body["match"] == "plain"));

    let mut seen_v0 = Vec::new();
    for _ in 0..4 {
        let event = old.next_event().await;
        assert_eq!(event.event, "message");
        let body: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(body["type"], "Subscription");
        let topic = body["topic"].as_str().unwrap().to_owned();
        if interesting.contains(&topic.as_str()) {
            seen_v0.push(topic);
        }
        if seen_v0.len() == 2 {
            break;
        }
    }
    seen_v0.sort();
    assert_eq!(seen_v0, ["https://example.com/a b", "plain"]);

    // The 1.0 API: plain JSON, the cursor in the Link header. (The watcher's grant covers
    // `subscriptions/*`, not the collection itself; `*` does.)
    let response = client()
        .get(hub.url("/.well-known/mercure/subscriptions"))
        .bearer_auth(&new_watcher)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response).await.0, 403);
    let response = client()
        .get(hub.url("/.well-known/mercure/subscriptions"))
        .bearer_auth(&payload_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let link = response.headers()["link"].to_str().unwrap().to_owned();
    assert!(link.contains("rel=\"mercure\""), "{link}");
    assert!(link.contains("last-event-id=\""), "{link}");
    assert!(link.contains("content-type=\"application/json\""), "{link}");
    let all: Value = response.json().await.unwrap();
    assert_eq!(all["type"], "subscriptions");
    assert_eq!(all["subscriptions"].as_array().unwrap().len(), 4);
    let one = client()
        .get(hub.url(exact["id"].as_str().unwrap()))
        .bearer_auth(&new_watcher)
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    let one: Value = one.json().await.unwrap();
    assert_eq!(one["match"], "https://example.com/a b");
    let missing = client()
        .get(hub.url("/.well-known/mercure/subscriptions/exact/nothing/nobody"))
        .bearer_auth(&new_watcher)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(missing).await.0, 404);
    // A token without a grant on the path: 403 insufficient_scope.
    let response = client()
        .get(hub.url("/.well-known/mercure/subscriptions"))
        .bearer_auth(&payload_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "`*` covers the API");
    let narrow = access_token(claims_for(
        &hub,
        json!([grant(
            &["subscribe"],
            json!([{"match": "https://example.com/only"}])
        )]),
    ));
    let response = client()
        .get(hub.url("/.well-known/mercure/subscriptions"))
        .bearer_auth(&narrow)
        .send()
        .await
        .unwrap();
    assert!(challenge(&response).starts_with("Bearer error=\"insufficient_scope\""));
    assert_eq!(problem(response).await.0, 403);
    drop((v1_subscriber, v0_subscriber));
}

#[tokio::test]
async fn each_subscription_event_carries_the_payload_of_the_grant_that_matched_it() {
    let hub = hub(&["--subscriptions"]);
    let watcher = access_token(claims_for(
        &hub,
        json!([grant(&["subscribe"], json!([{"match": "*"}]))]),
    ));
    let pattern = "/.well-known/mercure/subscriptions/:type/:match/:subscriber";
    let mut watch = hub
        .subscribe(
            &format!("/.well-known/mercure?match_urlpattern={}", q(pattern)),
            &[("Authorization", &format!("Bearer {watcher}"))],
        )
        .await;
    hub.wait_subscriptions(1).await;
    // Three `subscribe` entries: the first that matches a subscription's matcher string (as a
    // topic) gives its payload, or none when it has none, whatever the later entries carry.
    let subscriber = access_token(claims_for(
        &hub,
        json!([
            {"type": DETAIL, "actions": ["subscribe"],
             "topics": [{"match": "https://example.com/quiet"}]},
            {"type": DETAIL, "actions": ["subscribe"],
             "topics": [{"match": "https://example.com/books/:id", "match_type": "urlpattern"}],
             "payload": {"shelf": "books"}},
            {"type": DETAIL, "actions": ["subscribe"], "topics": [{"match": "*"}],
             "payload": {"shelf": "other"}},
        ]),
    ));
    let matchers = [
        (
            "match",
            "https://example.com/books/1",
            Some(json!({"shelf": "books"})),
        ),
        (
            "match_urlpattern",
            "https://example.com/books/:id",
            Some(json!({"shelf": "books"})),
        ),
        (
            "match",
            "https://example.com/news",
            Some(json!({"shelf": "other"})),
        ),
        ("match", "https://example.com/quiet", None),
    ];
    let query: Vec<String> = matchers
        .iter()
        .map(|(name, value, _)| format!("{name}={}", q(value)))
        .collect();
    let _subscribed = hub
        .subscribe(
            &format!("/.well-known/mercure?{}", query.join("&")),
            &[("Authorization", &format!("Bearer {subscriber}"))],
        )
        .await;
    let mut events = Vec::new();
    while events.len() < matchers.len() {
        let body: Value = serde_json::from_str(&watch.next_event().await.data).unwrap();
        if body["subscriber"] != json!(null) && body["match"] != pattern {
            events.push(body);
        }
    }
    for (_, value, payload) in &matchers {
        let event = events
            .iter()
            .find(|body| body["match"] == *value)
            .unwrap_or_else(|| panic!("no event for {value}: {events:?}"));
        assert_eq!(event.get("payload"), payload.as_ref(), "{value}");
        // The subscriptions API shows the same document.
        let one: Value = client()
            .get(hub.url(event["id"].as_str().unwrap()))
            .bearer_auth(&watcher)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(one.get("payload"), payload.as_ref(), "{value} (API)");
    }
}

#[tokio::test]
async fn herald_token_mints_1_0_tokens_and_herald_sub_matches() {
    let hub = Hub::start_raw(&["--jwt-key", KEY, "--store", "memory:"]);
    let audience = resource(&hub);
    let mint = |role: &str, topic: &str, urlpattern: bool| {
        let mut args = vec![
            "token",
            "--key",
            KEY,
            "--issuer",
            ISSUER,
            "--audience",
            &audience,
            role,
            topic,
        ];
        if urlpattern {
            args.push("--urlpattern");
        }
        let (code, out, stderr) = crate::util::run_cli(&args, &[]);
        assert_eq!(code, 0, "{stderr}");
        out.trim().to_owned()
    };
    let publisher = mint("--publish", "/books/:id", true);
    let reader = mint("--subscribe", "*", false);
    // The hub trusts no issuer yet: refused.
    let response = publish_with(&hub, &publisher, &[("topic", "/books/1")]).await;
    assert_eq!(problem(response).await.0, 401);
    drop(hub);

    // The same tokens on a hub that trusts the issuer and has the same resource identifier.
    let hub = Hub::start_raw(&[
        "--jwt-key",
        KEY,
        "--store",
        "memory:",
        "--resource-identifier",
        &audience,
    ]);
    let response = publish_with(&hub, &publisher, &[("topic", "/books/1")]).await;
    assert_eq!(problem(response).await.0, 401, "no --jwt-issuer");
    let hub = Hub::start_with_env(
        &[
            "--jwt-key",
            KEY,
            "--store",
            "memory:",
            "--resource-identifier",
            &audience,
        ],
        &[("HERALD_JWT_ISSUER", ISSUER)],
    );
    let response = publish_with(&hub, &publisher, &[("topic", "/books/1"), ("data", "x")]).await;
    assert_eq!(
        response.status(),
        200,
        "HERALD_JWT_ISSUER trusts the issuer"
    );
    let response = publish_with(&hub, &publisher, &[("topic", "/authors/1")]).await;
    assert_eq!(problem(response).await.0, 403);

    // (The resource identifier names the first hub's port; this hub listens elsewhere.)
    let base = hub.url("");
    let env = [("HERALD_HUB", base.as_str())];
    let sub = std::thread::spawn({
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let reader = reader.clone();
        move || {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            crate::util::run_cli(
                &[
                    "sub",
                    "--match-urlpattern",
                    "/books/:id",
                    "--token",
                    &reader,
                    "--last-event-id",
                    "earliest",
                    "--count",
                    "1",
                    "--json",
                    "--timeout",
                    "10s",
                ],
                &env,
            )
        }
    });
    let (code, out, stderr) = sub.join().unwrap();
    assert_eq!(code, 0, "{stderr}");
    let line: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["data"], "x");
    // Mixing protocols on the command line is refused before any request.
    let (code, _, stderr) = crate::util::run_cli(&["sub", "t", "--match", "u"], &env);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[test]
fn the_config_file_sets_the_mercure_1_0_options() {
    let dir = crate::util::TempDir::new("mercure1-config");
    let file = dir.path().join("herald.toml");
    std::fs::write(
        &file,
        format!(
            "jwt-key = \"{KEY}\"\nstore = \"memory:\"\njwt-issuer = [\"{ISSUER}\"]\n\
             resource-identifier = \"https://localhost/.well-known/mercure\"\n\
             cookie-name = \"from_file\"\n"
        ),
    )
    .unwrap();
    let hub = Hub::start_raw(&["--config", file.to_str().unwrap()]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let document =
        runtime.block_on(hub.get_json("/.well-known/oauth-protected-resource/.well-known/mercure"));
    assert_eq!(
        document["resource"],
        "https://localhost/.well-known/mercure"
    );
    assert_eq!(document["mercure_cookie"], "from_file");
    assert_eq!(document["authorization_servers"], json!([ISSUER]));
}

#[tokio::test]
async fn the_json_views_judge_access_tokens_by_the_same_rule() {
    let hub = hub(&[]);
    hub.publish_ok(&[
        ("topic", "https://example.com/users/7"),
        ("data", "secret"),
        ("private", ""),
    ])
    .await;
    hub.publish_ok(&[("topic", "https://example.com/news"), ("data", "public")])
        .await;
    let reader = access_token(claims_for(
        &hub,
        json!([grant(
            &["subscribe"],
            json!([{"match": "https://example.com/users/:id", "match_type": "urlpattern"}])
        )]),
    ));
    let stranger = access_token(claims_for(
        &hub,
        json!([grant(
            &["subscribe"],
            json!([{"match": "https://example.com/users/{id}"}])
        )]),
    ));
    let listing = |token: String| {
        let url = hub.url("/topics");
        async move {
            let response = client().get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            body["topics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["topic"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let seen = listing(reader.clone()).await;
    assert!(
        seen.contains(&"https://example.com/users/7".to_owned()),
        "{seen:?}"
    );
    // An exact grant is byte for byte: the template-looking text is not a template.
    let hidden = listing(stranger.clone()).await;
    assert!(
        !hidden.contains(&"https://example.com/users/7".to_owned()),
        "{hidden:?}"
    );
    assert!(hidden.contains(&"https://example.com/news".to_owned()));

    let events = |token: String| {
        let url = hub.url(&format!(
            "/topics/{}/events",
            q("https://example.com/users/7")
        ));
        async move {
            let response = client().get(url).bearer_auth(token).send().await.unwrap();
            let body: Value = response.json().await.unwrap();
            body["events"].as_array().map(Vec::len).unwrap_or(0)
        }
    };
    assert_eq!(events(reader).await, 1);
    assert_eq!(events(stranger).await, 0);
}

#[tokio::test]
async fn the_1_0_cursors_are_exposed_to_browsers_and_the_flags_are_documented() {
    let hub = hub(&["--cors-origin", "https://app.example"]);
    let response = client()
        .get(hub.url("/.well-known/oauth-protected-resource/.well-known/mercure"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    for name in ["Mercure-Last-Event-ID", "Link", "Last-Event-ID"] {
        assert!(exposed.split(", ").any(|n| n == name), "{exposed}");
    }
    let (code, help, _) = crate::util::run_cli(&["serve", "--help"], &[]);
    assert_eq!(code, 0);
    for flag in [
        "--jwt-issuer",
        "HERALD_JWT_ISSUER",
        "--resource-identifier",
        "HERALD_RESOURCE_IDENTIFIER",
        "--cookie-name",
        "HERALD_COOKIE_NAME",
    ] {
        assert!(help.contains(flag), "{flag}");
    }
}

#[tokio::test]
async fn the_config_file_binds_an_issuer_to_its_own_key() {
    let dir = crate::util::TempDir::new("mercure1-issuer-keys");
    let file = dir.path().join("herald.toml");
    let own = "the-partner-issuer-secret-0123456789";
    std::fs::write(
        &file,
        format!(
            "jwt-key = \"{KEY}\"\nstore = \"memory:\"\njwt-issuer = \"{ISSUER}\"\n\
             [issuer-keys.\"https://partner.example\"]\nkey = \"{own}\"\nalgorithm = \"HS384\"\n"
        ),
    )
    .unwrap();
    let hub = Hub::start_raw(&["--config", file.to_str().unwrap()]);
    let mut claims = claims_for(&hub, json!([grant(&["publish"], json!([{"match": "*"}]))]));
    claims["iss"] = json!("https://partner.example");
    let mut header = Header::new(jsonwebtoken::Algorithm::HS384);
    header.typ = Some("at+jwt".into());
    let partner = encode(&header, &claims, &EncodingKey::from_secret(own.as_bytes())).unwrap();
    let response = publish_with(&hub, &partner, &[("topic", "x")]).await;
    assert_eq!(response.status(), 200);
    // Signed with the hub's key instead: this issuer's tokens only verify with its own.
    let forged = encode(&header, &claims, &EncodingKey::from_secret(KEY.as_bytes())).unwrap();
    let response = publish_with(&hub, &forged, &[("topic", "x")]).await;
    assert_eq!(problem(response).await.0, 401);
    // The other trusted issuer keeps the hub's key.
    let mut ours = claims.clone();
    ours["iss"] = json!(ISSUER);
    let response = publish_with(&hub, &access_token(ours), &[("topic", "x")]).await;
    assert_eq!(response.status(), 200);
    let document = hub
        .get_json("/.well-known/oauth-protected-resource/.well-known/mercure")
        .await;
    assert_eq!(
        document["authorization_servers"],
        json!([ISSUER, "https://partner.example"])
    );

    std::fs::write(
        &file,
        "store = \"memory:\"\n[issuer-keys.\"https://partner.example\"]\nkey = \"k\"\nalgorithm = \"none\"\n",
    )
    .unwrap();
    let (code, _, stderr) = crate::util::run_cli(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 64, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
