//! The scenarios of the public Mercure conformance suites (`dunglas/mercure`,
//! `conformance-tests/`: the 0.x one with `topic=`, the 1.0 one with `match=` /
//! `match_urlpattern=` and an RFC 9068 publisher token), written again in Rust and run against
//! one hub started with exactly the command line the issue names. `docs/PROTOCOL.md`
//! ("Conformance") maps each scenario to the test that covers it.
//!
//! What each scenario checks, as the suites do: a subscriber opens a stream with some selectors
//! (anonymously), a publisher posts an update with a custom id and two-line data (one line
//! empty) to some topics, possibly private; the update must arrive, as a `message` with that id
//! and that data, or must not. A successful publish answers 200 `text/plain` with the id. Where
//! the suites wait two seconds for nothing, these tests publish a public control update the
//! subscriber does select, and check that it arrives first: the same proof, without the wait.

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::util::{Hub, TempDir, client, encode_form};

/// The issue's key (the reference hub's default development key).
const CONFORMANCE_KEY: &str = "!ChangeThisMercureHubJWTSecretKey!";
const ISSUER: &str = "https://localhost";
const RESOURCE: &str = "https://localhost/.well-known/mercure";

/// `herald serve` with exactly the issue's flags (the fixture adds only `--listen
/// 127.0.0.1:0`), in a fresh working directory, so the default store (`./herald-data`) is
/// created there.
fn conformance_hub(dir: &TempDir) -> Hub {
    Hub::start_in(
        &[
            "--jwt-issuer",
            ISSUER,
            "--resource-identifier",
            RESOURCE,
            "--jwt-key",
            CONFORMANCE_KEY,
            "--anonymous",
        ],
        &[],
        Some(dir.path()),
    )
}

/// The 0.x suite's publisher token: HS256, no `typ`, no `exp`, `mercure.publish` and
/// `mercure.subscribe` `["*"]`.
fn token_0x() -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = None;
    let claims = json!({"mercure": {"publish": ["*"], "subscribe": ["*"]}});
    encode(
        &header,
        &claims,
        &EncodingKey::from_secret(CONFORMANCE_KEY.as_bytes()),
    )
    .unwrap()
}

/// The 1.0 suite's publisher token: `typ: at+jwt`, `aud` the resource identifier, `iss` the
/// trusted issuer, `exp` in 2100, one entry granting `publish` on `*` and one `subscribe` on `*`.
fn token_1_0() -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    let detail = "https://mercure.rocks/authorization-detail";
    let claims = json!({
        "aud": RESOURCE,
        "iss": ISSUER,
        "authorization_details": [
            {"type": detail, "actions": ["publish"], "topics": [{"match": "*"}]},
            {"type": detail, "actions": ["subscribe"], "topics": [{"match": "*"}]},
        ],
        "exp": 4_102_444_800_u64,
    });
    encode(
        &header,
        &claims,
        &EncodingKey::from_secret(CONFORMANCE_KEY.as_bytes()),
    )
    .unwrap()
}

/// One scenario of a suite.
struct Scenario {
    name: &'static str,
    update_topics: Vec<String>,
    selectors: Vec<String>,
    must_be_received: bool,
    private: bool,
}

fn scenario(
    name: &'static str,
    update_topics: &[&str],
    selectors: &[&str],
    must_be_received: bool,
    private: bool,
) -> Scenario {
    Scenario {
        name,
        update_topics: update_topics.iter().map(|t| (*t).to_owned()).collect(),
        selectors: selectors.iter().map(|s| (*s).to_owned()).collect(),
        must_be_received,
        private,
    }
}

/// A random lower-case hex string, as the suites use for topics.
fn random() -> String {
    (0..20)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// The 0.x suite (`topic=`, URI templates).
fn suite_0x() -> Vec<Scenario> {
    let r: Vec<String> = (0..6).map(|_| random()).collect();
    let uri = |n: usize| format!("https://example.net/foo/{}", r[n]);
    vec![
        scenario("raw string", &[&r[0]], &[&r[0]], true, false),
        scenario(
            "multiple topics",
            &[&random(), &r[1]],
            &[&r[1]],
            true,
            false,
        ),
        scenario(
            "multiple topic selectors",
            &[&r[2]],
            &["foo", &r[2]],
            true,
            false,
        ),
        scenario("URI", &[&uri(3)], &[&uri(3)], true, false),
        scenario(
            "URI template",
            &[&uri(4)],
            &["https://example.net/foo/{random}"],
            true,
            false,
        ),
        scenario(
            "nonmatching raw string",
            &["will-not-match}"],
            &["another-name"],
            false,
            false,
        ),
        scenario(
            "nonmatching URI",
            &["https://example.net/foo/will-not-match}"],
            &["https://example.net/foo/another-name"],
            false,
            false,
        ),
        scenario(
            "nonmatching URI template",
            &["https://example.net/foo/will-not-match}"],
            &["https://example.net/bar/{var}"],
            false,
            false,
        ),
        scenario("private raw string", &[&r[0]], &[&r[0]], false, true),
        scenario("private URI", &[&uri(3)], &[&uri(3)], false, true),
        scenario(
            "private URI template",
            &[&uri(4)],
            &["https://example.net/foo/{random}"],
            false,
            true,
        ),
    ]
}

/// The 1.0 suite (`match=`, `match_urlpattern=` for selectors with a `/:name` placeholder).
fn suite_1_0() -> Vec<Scenario> {
    let r: Vec<String> = (0..6).map(|_| random()).collect();
    let uri = |n: usize| format!("https://example.net/foo/{}", r[n]);
    vec![
        scenario("raw string", &[&r[0]], &[&r[0]], true, false),
        scenario(
            "multiple topic selectors",
            &[&r[2]],
            &["foo", &r[2]],
            true,
            false,
        ),
        scenario("URI", &[&uri(3)], &[&uri(3)], true, false),
        scenario(
            "URL pattern",
            &[&uri(4)],
            &["https://example.net/foo/:random"],
            true,
            false,
        ),
        scenario(
            "nonmatching raw string",
            &["will-not-match"],
            &["another-name"],
            false,
            false,
        ),
        scenario(
            "nonmatching URI",
            &["https://example.net/foo/will-not-match"],
            &["https://example.net/foo/another-name"],
            false,
            false,
        ),
        scenario(
            "nonmatching URL pattern",
            &["https://example.net/foo/will-not-match"],
            &["https://example.net/bar/:var"],
            false,
            false,
        ),
        scenario("private raw string", &[&r[0]], &[&r[0]], false, true),
        scenario("private URI", &[&uri(3)], &[&uri(3)], false, true),
        scenario(
            "private URL pattern",
            &[&uri(4)],
            &["https://example.net/foo/:random"],
            false,
            true,
        ),
    ]
}

/// Which protocol a suite subscribes with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Protocol {
    V0,
    V1,
}

/// The subscribe query of `selectors`, as the suite builds it.
fn subscribe_query(protocol: Protocol, selectors: &[String]) -> String {
    let pairs: Vec<(&str, &str)> = selectors
        .iter()
        .map(|selector| {
            let name = match protocol {
                Protocol::V0 => "topic",
                Protocol::V1 if has_placeholder(selector) => "match_urlpattern",
                Protocol::V1 => "match",
            };
            (name, selector.as_str())
        })
        .collect();
    encode_form(&pairs)
}

/// `/:` followed by a letter or `_`: a URL Pattern named group.
fn has_placeholder(selector: &str) -> bool {
    selector.match_indices("/:").any(|(at, _)| {
        selector[at + 2..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
    })
}

/// A topic the selector matches: its placeholder (`{var}` or `:var`) filled with `control`.
fn control_topic(selector: &str) -> String {
    if let (Some(open), Some(close)) = (selector.find('{'), selector.find('}')) {
        return format!("{}control{}", &selector[..open], &selector[close + 1..]);
    }
    if let Some(at) = selector.rfind("/:") {
        return format!("{}/control", &selector[..at]);
    }
    selector.to_owned()
}

async fn post(hub: &Hub, token: &str, form: &[(&str, &str)]) -> reqwest::Response {
    client()
        .post(hub.url("/.well-known/mercure"))
        .bearer_auth(token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(form))
        .send()
        .await
        .unwrap()
}

/// Runs every scenario of a suite against `hub`, in order, as the suite would.
async fn run_suite(hub: &Hub, protocol: Protocol, scenarios: Vec<Scenario>, token: &str) {
    for (n, scenario) in scenarios.into_iter().enumerate() {
        let label = format!("{protocol:?} suite, {:?}", scenario.name);
        let update_id = format!("id-{}", Value::from(scenario.update_topics.clone()));
        let data = format!("data for\n\n        {}", scenario.name);
        let mut stream = hub
            .subscribe(
                &format!(
                    "/.well-known/mercure?{}",
                    subscribe_query(protocol, &scenario.selectors)
                ),
                &[],
            )
            .await;
        assert_eq!(stream.status, 200, "{label}: subscribe");
        let mut form: Vec<(&str, &str)> = scenario
            .update_topics
            .iter()
            .map(|topic| ("topic", topic.as_str()))
            .collect();
        form.extend([("id", update_id.as_str()), ("data", data.as_str())]);
        if scenario.private {
            form.push(("private", "on"));
        }
        let response = post(hub, token, &form).await;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.text().await.unwrap();
        assert_eq!(status, 200, "{label}: publish answered {body}");
        assert!(
            content_type == "text/plain" || content_type.starts_with("text/plain;"),
            "{label}: {content_type}"
        );
        assert_eq!(body, update_id, "{label}: the body is the custom id");

        if scenario.must_be_received {
            let event = stream.next_event().await;
            assert_eq!(
                (event.event.as_str(), event.id.as_str(), event.data.as_str()),
                ("message", update_id.as_str(), data.as_str()),
                "{label}"
            );
        } else {
            let control = control_topic(&scenario.selectors[0]);
            let control_id = format!("control-{n}");
            let response = post(
                hub,
                token,
                &[
                    ("topic", &control),
                    ("id", &control_id),
                    ("data", "control"),
                ],
            )
            .await;
            assert_eq!(response.status(), 200, "{label}: control publish");
            let event = stream.next_event().await;
            assert_eq!(
                (event.id.as_str(), event.data.as_str()),
                (control_id.as_str(), "control"),
                "{label}: the update must not be received"
            );
        }
    }
}

#[tokio::test]
async fn both_conformance_suites_pass_against_one_hub_with_the_issues_command_line() {
    let dir = TempDir::new("conformance");
    let hub = conformance_hub(&dir);
    // The suites load the hub's pages first (`/` and, in the stub suite, `/ui`); a browser's
    // `page.goto` only needs an answer.
    let index = client().get(hub.url("/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    let ui = client().get(hub.url("/ui")).send().await.unwrap();
    assert!(ui.status().as_u16() < 500, "{}", ui.status());
    run_suite(&hub, Protocol::V0, suite_0x(), &token_0x()).await;
    run_suite(&hub, Protocol::V1, suite_1_0(), &token_1_0()).await;
    // And each suite's publisher with the other suite's subscribers: one hub, both protocols.
    run_suite(&hub, Protocol::V0, suite_0x(), &token_1_0()).await;
    run_suite(&hub, Protocol::V1, suite_1_0(), &token_0x()).await;
    assert!(
        dir.path().join("herald-data").exists(),
        "the default store is in the working directory"
    );
}

#[test]
fn placeholders_and_control_topics() {
    assert!(has_placeholder("https://example.net/foo/:random"));
    assert!(!has_placeholder("https://example.net/foo/{random}"));
    assert!(!has_placeholder("https://example.net:8080/foo"));
    assert_eq!(
        control_topic("https://example.net/bar/{var}"),
        "https://example.net/bar/control"
    );
    assert_eq!(
        control_topic("https://example.net/bar/:var"),
        "https://example.net/bar/control"
    );
    assert_eq!(control_topic("another-name"), "another-name");
}
