//! TLS with ALPN (HTTP/2 and HTTP/1.1) and cleartext HTTP/2 (h2c) on the same listener.

use std::time::Duration;

use crate::util::{Hub, KEY, TempDir, run_cli, token};

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files.
fn self_signed(dir: &TempDir) -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (
        cert.to_str().unwrap().to_owned(),
        key.to_str().unwrap().to_owned(),
    )
}

fn insecure_client(http2_only: bool) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true);
    let builder = if http2_only {
        builder.http2_prior_knowledge()
    } else {
        builder
    };
    builder.build().unwrap()
}

async fn first_event(response: reqwest::Response) -> String {
    use futures_util::StreamExt;
    let mut parser = herald_sse::Parser::new();
    let mut body = response.bytes_stream();
    loop {
        if let Some(event) = parser.next_event() {
            return event.data;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("an event in time")
            .expect("the stream ended")
            .unwrap();
        parser.feed(&chunk);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_negotiates_http2_by_alpn_and_streams_events() {
    let dir = TempDir::new("tls");
    let (cert, key) = self_signed(&dir);
    let hub = Hub::start(&["--tls-cert", &cert, "--tls-key", &key]);
    assert!(
        hub.banner[0].starts_with("herald listening on http"),
        "{:?}",
        hub.banner
    );
    let base = format!("https://{}", hub.addr);
    let client = insecure_client(false);
    let stream = client
        .get(format!("{base}/.well-known/mercure?topic=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream.version(),
        reqwest::Version::HTTP_2,
        "ALPN should pick h2"
    );
    let publish = client
        .post(format!("{base}/.well-known/mercure"))
        .bearer_auth(token(&["*"], &[]))
        .form(&[("topic", "a"), ("data", "over TLS")])
        .send()
        .await
        .unwrap();
    assert_eq!(publish.status(), 200);
    assert_eq!(first_event(stream).await, "over TLS");
    // Cleartext to a TLS port is refused (the handshake fails), not served.
    let cleartext = crate::util::client().get(hub.url("/healthz")).send().await;
    assert!(cleartext.is_err() || cleartext.is_ok_and(|r| r.status() != 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_http2_with_prior_knowledge_works_beside_http1() {
    let hub = Hub::start(&[]);
    let h2 = insecure_client(true);
    let stream = h2
        .get(hub.url("/.well-known/mercure?topic=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.version(), reqwest::Version::HTTP_2);
    hub.wait_subscriptions(1).await;
    hub.publish_ok(&[("topic", "a"), ("data", "over h2c")])
        .await;
    assert_eq!(first_event(stream).await, "over h2c");
}

#[test]
fn unusable_certificates_are_configuration_errors() {
    let dir = TempDir::new("badtls");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let garbage = garbage.to_str().unwrap();
    for args in [
        vec![
            "serve",
            "--jwt-key",
            KEY,
            "--store",
            "memory:",
            "--tls-cert",
            garbage,
            "--tls-key",
            garbage,
        ],
        vec![
            "serve",
            "--jwt-key",
            KEY,
            "--store",
            "memory:",
            "--tls-cert",
            "/nonexistent.pem",
            "--tls-key",
            garbage,
        ],
        vec![
            "serve",
            "--jwt-key",
            KEY,
            "--store",
            "memory:",
            "--tls-cert",
            garbage,
        ],
    ] {
        let (code, _, stderr) = run_cli(&args, &[]);
        assert_eq!(code, 64, "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}
