//! Operations and the edges of routing: health, metrics, the index page, 404 and 405.

use crate::util::{Hub, client, problem};

#[tokio::test]
async fn healthz_and_metrics_answer() {
    let hub = Hub::start(&[]);
    let health = hub.get_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    let _stream = hub.subscribe("/.well-known/mercure?topic=a", &[]).await;
    hub.wait_subscriptions(1).await;
    hub.publish_ok(&[("topic", "a"), ("data", "x")]).await;
    let text = client()
        .get(hub.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "herald_connections",
        "herald_subscriptions",
        "herald_publishes_total",
        "herald_deliveries_total",
        "herald_lagging_subscribers_total",
        "herald_store_commit_seconds_bucket",
    ] {
        assert!(text.contains(name), "missing {name} in:\n{text}");
    }
    assert_eq!(hub.metric("herald_subscriptions").await, 1.0);
    assert_eq!(hub.metric("herald_publishes_total").await, 1.0);
    assert!(hub.metric("herald_connections").await >= 1.0);
}

#[tokio::test]
async fn the_index_page_and_favicon_are_served() {
    let hub = Hub::start(&[]);
    let response = client().get(hub.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("EventSource") && page.contains("curl"));
    let response = client().get(hub.url("/favicon.ico")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_are_problems() {
    let hub = Hub::start(&[]);
    let response = client().get(hub.url("/nope")).send().await.unwrap();
    assert_eq!(problem(response).await.0, 404);
    let response = client()
        .delete(hub.url("/.well-known/mercure"))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("allow"));
    assert_eq!(problem(response).await.0, 405);
    let response = client().get(hub.url("/publish")).send().await.unwrap();
    assert_eq!(problem(response).await.0, 405);
}
