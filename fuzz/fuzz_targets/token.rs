//! Fuzz target for token handling: arbitrary header values and query strings go through
//! `extract_token`, and whatever comes out (plus the raw input) through both verifiers. Nothing
//! may panic, and nothing that was not signed with the key may verify. Then the input's JSON (if
//! any) is signed as a claims set with the right key: verification must never panic on whatever
//! shape the `mercure` claim has.
#![no_main]

use std::sync::OnceLock;

use herald::fuzzing::{Algorithm, Authorizer, KeyConfig, extract_token};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const KEY: &str = "fuzz-secret";

fn authorizer() -> &'static Authorizer {
    static AUTH: OnceLock<Authorizer> = OnceLock::new();
    AUTH.get_or_init(|| {
        Authorizer::new(&KeyConfig {
            publisher_key: Some(KEY.into()),
            subscriber_key: Some(KEY.into()),
            algorithm: Algorithm::HS256,
        })
        .expect("authorizer")
    })
}

fuzz_target!(|input: &[u8]| {
    let auth = authorizer();
    // Split into: authorization header | cookie header | query, at 0xFF bytes.
    let mut parts = input.splitn(3, |&b| b == 0xFF);
    let authorization = parts.next().unwrap_or_default();
    let cookie = parts.next().unwrap_or_default();
    let query = parts.next().map(String::from_utf8_lossy);

    let mut headers = HeaderMap::new();
    for (name, value) in [
        (http::header::AUTHORIZATION, authorization),
        (http::header::COOKIE, cookie),
    ] {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(HeaderName::from(name), value);
        }
    }
    if let Some((token, _source)) = extract_token(&headers, query.as_deref()) {
        assert!(!token.trim().is_empty(), "an empty token was extracted");
        assert!(auth.verify_publisher(&token).is_err(), "an unsigned token verified");
        assert!(auth.verify_subscriber(&token).is_err(), "an unsigned token verified");
    }
    let raw = String::from_utf8_lossy(input);
    assert!(auth.verify_publisher(&raw).is_err(), "an unsigned token verified");

    // Signed claims of any shape: must be accepted or refused, never panic.
    if let Ok(claims) = serde_json::from_slice::<serde_json::Value>(input) {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
        );
        if let Ok(token) = token {
            let _ = auth.verify_publisher(&token);
            let _ = auth.verify_subscriber(&token);
        }
    }
});
