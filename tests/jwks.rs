//! Keys from a JWKS URL: served by a small local HTTP server, cached, refetched on rotation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{Hub, client};

/// Serves whatever JSON `document` holds at any path, counting requests.
async fn jwks_server(document: Arc<Mutex<String>>, hits: Arc<AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (document, hits) = (Arc::clone(&document), Arc::clone(&hits));
            tokio::spawn(async move {
                let mut request = [0u8; 2048];
                let _ = socket.read(&mut request).await;
                hits.fetch_add(1, Ordering::SeqCst);
                let body = document.lock().clone();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/.well-known/jwks.json")
}

fn oct_jwk(kid: &str, secret: &str) -> serde_json::Value {
    serde_json::json!({
        "kty": "oct",
        "kid": kid,
        "alg": "HS256",
        "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
    })
}

fn signed(kid: &str, secret: &str) -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        &serde_json::json!({"mercure": {"publish": ["*"]}}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn publish(hub: &Hub, token: &str) -> u16 {
    client()
        .post(hub.url("/.well-known/mercure"))
        .bearer_auth(token)
        .form(&[("topic", "a"), ("data", "x")])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

// Multi-threaded: the JWKS server must answer while the fixture blocks starting the hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_from_a_jwks_url_are_cached_and_rotate() {
    let document = Arc::new(Mutex::new(
        serde_json::json!({"keys": [oct_jwk("k1", "first-secret")]}).to_string(),
    ));
    let hits = Arc::new(AtomicUsize::new(0));
    let url = jwks_server(Arc::clone(&document), Arc::clone(&hits)).await;
    let hub = Hub::start_raw(&["--jwks-url", &url, "--anonymous", "--store", "memory:"]);
    let first = signed("k1", "first-secret");
    for _ in 0..10 {
        assert_eq!(publish(&hub, &first).await, 200);
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "keys are cached, not fetched per token"
    );
    assert_eq!(publish(&hub, &signed("k1", "wrong-secret")).await, 401);

    // The provider rotates to k2: the first token naming it triggers a refetch.
    *document.lock() = serde_json::json!({"keys": [oct_jwk("k2", "second-secret")]}).to_string();
    let second = signed("k2", "second-secret");
    assert_eq!(publish(&hub, &second).await, 401);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while publish(&hub, &second).await != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the JWKS was never refetched"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert_eq!(publish(&hub, &first).await, 401, "k1 was rotated out");
}

#[test]
fn a_jwks_url_must_be_http() {
    let (code, _, stderr) = crate::util::run_cli(&["serve", "--jwks-url", "ftp://x/keys"], &[]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("--jwks-url"), "{stderr}");
}
