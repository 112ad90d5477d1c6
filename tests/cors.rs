//! CORS: allowed origins are echoed with credentials, `*` never comes with credentials, others
//! get nothing.

use crate::util::{Hub, client};

async fn preflight(hub: &Hub, origin: &str) -> reqwest::Response {
    client()
        .request(reqwest::Method::OPTIONS, hub.url("/.well-known/mercure"))
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header(
            "access-control-request-headers",
            "authorization, last-event-id",
        )
        .send()
        .await
        .unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn an_allowed_origin_is_echoed_with_credentials() {
    let hub = Hub::start(&[
        "--cors-origin",
        "https://a.example",
        "--cors-origin",
        "https://b.example",
    ]);
    let response = preflight(&hub, "https://b.example").await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some("https://b.example")
    );
    assert_eq!(
        header(&response, "access-control-allow-credentials"),
        Some("true")
    );
    let allowed = header(&response, "access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    for needed in ["authorization", "last-event-id", "cache-control"] {
        assert!(allowed.contains(needed), "{allowed}");
    }
    let stream = hub
        .subscribe(
            "/.well-known/mercure?topic=a",
            &[("origin", "https://a.example")],
        )
        .await;
    assert_eq!(
        stream.header("access-control-allow-origin"),
        Some("https://a.example")
    );
    assert_eq!(
        stream.header("access-control-allow-credentials"),
        Some("true")
    );
}

#[tokio::test]
async fn other_origins_get_no_cors_headers() {
    let hub = Hub::start(&["--cors-origin", "https://a.example"]);
    let response = preflight(&hub, "https://evil.example").await;
    assert!(header(&response, "access-control-allow-origin").is_none());
    assert!(header(&response, "access-control-allow-credentials").is_none());
    let stream = hub
        .subscribe(
            "/.well-known/mercure?topic=a",
            &[("origin", "https://evil.example")],
        )
        .await;
    assert!(stream.header("access-control-allow-origin").is_none());
    // No list at all: nothing either.
    let closed = Hub::start(&[]);
    let response = preflight(&closed, "https://a.example").await;
    assert!(header(&response, "access-control-allow-origin").is_none());
}

#[tokio::test]
async fn star_allows_any_origin_but_never_with_credentials() {
    let hub = Hub::start(&["--cors-origin", "*"]);
    let response = preflight(&hub, "https://anything.example").await;
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    assert!(header(&response, "access-control-allow-credentials").is_none());
}

#[tokio::test]
async fn star_never_comes_with_credentials_on_any_response() {
    // `*` in a list with named origins still means "any origin, without credentials".
    let hub = Hub::start(&["--cors-origin", "https://a.example", "--cors-origin", "*"]);
    for origin in ["https://a.example", "https://evil.example", "null"] {
        let stream = hub
            .subscribe(
                "/.well-known/mercure?topic=a",
                &[("origin", origin), ("cookie", "mercureAuthorization=x")],
            )
            .await;
        assert_eq!(stream.header("access-control-allow-origin"), Some("*"));
        assert!(stream.header("access-control-allow-credentials").is_none());
        let preflight = preflight(&hub, origin).await;
        assert!(header(&preflight, "access-control-allow-credentials").is_none());
        // Errors too: a refused publish and an unknown path.
        for response in [
            client()
                .post(hub.url("/.well-known/mercure"))
                .header("origin", origin)
                .header("cookie", "mercureAuthorization=x")
                .body("topic=a")
                .send()
                .await
                .unwrap(),
            client()
                .get(hub.url("/nowhere"))
                .header("origin", origin)
                .send()
                .await
                .unwrap(),
        ] {
            assert!(response.status().is_client_error());
            assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
            assert!(header(&response, "access-control-allow-credentials").is_none());
        }
    }
}

#[tokio::test]
async fn an_allowed_origin_may_send_the_headers_it_asks_for() {
    let hub = Hub::start(&["--cors-origin", "https://a.example"]);
    let asked = |origin: &'static str, headers: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, hub.url("/.well-known/mercure"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", headers)
            .send()
    };
    let response = asked("https://a.example", "authorization, x-custom-header")
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let allowed = header(&response, "access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    let names: Vec<&str> = allowed.split(',').map(str::trim).collect();
    for needed in ["authorization", "x-custom-header", "last-event-id"] {
        assert!(names.contains(&needed), "{allowed}");
    }
    assert_eq!(
        names
            .iter()
            .filter(|name| **name == "authorization")
            .count(),
        1,
        "{allowed}"
    );
    let vary = response
        .headers()
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ")
        .to_ascii_lowercase();
    assert!(vary.contains("access-control-request-headers"), "{vary}");
    assert!(vary.contains("origin"), "{vary}");
    // The header really reaches the hub on the stream request itself.
    let stream = hub
        .subscribe(
            "/.well-known/mercure?topic=a",
            &[("origin", "https://a.example"), ("x-custom-header", "v")],
        )
        .await;
    assert_eq!(stream.status, 200);
    // Another origin is allowed nothing, whatever it asks for.
    let refused = asked("https://evil.example", "x-custom-header")
        .await
        .unwrap();
    assert!(header(&refused, "access-control-allow-headers").is_none());
    assert!(header(&refused, "access-control-allow-origin").is_none());
}
