//! Tests of the authorizer: algorithms, keys per role, claims, expiry, malformed tokens and algorithm confusion.

use super::test_keys::*;
use super::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
use serde_json::json;

const PUB_SECRET: &str = "publisher-secret-publisher-secret";
const SUB_SECRET: &str = "subscriber-secret-subscriber-secret";

fn hmac_authorizer() -> Authorizer {
    Authorizer::new(&KeyConfig {
        publisher_key: Some(PUB_SECRET.to_owned()),
        subscriber_key: Some(SUB_SECRET.to_owned()),
        algorithm: Algorithm::HS256,
    })
    .unwrap()
}

fn asym_authorizer(alg: Algorithm, public_pem: &str) -> Authorizer {
    Authorizer::new(&KeyConfig {
        publisher_key: Some(public_pem.to_owned()),
        subscriber_key: None,
        algorithm: alg,
    })
    .unwrap()
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    encode(&Header::new(alg.to_jwt()), claims, key).unwrap()
}

fn hs256(secret: &str, claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(secret.as_bytes()),
        claims,
    )
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn assert_invalid(r: Result<Claims, AuthError>) -> String {
    match r {
        Err(AuthError::Invalid(msg)) => msg,
        other => panic!("expected AuthError::Invalid, got {other:?}"),
    }
}

#[test]
fn algorithm_parse_and_display() {
    assert_eq!("hs256".parse::<Algorithm>().unwrap(), Algorithm::HS256);
    assert_eq!("EDDSA".parse::<Algorithm>().unwrap(), Algorithm::EdDSA);
    assert_eq!(" ps512 ".parse::<Algorithm>().unwrap(), Algorithm::PS512);
    assert!("none".parse::<Algorithm>().is_err());
    assert_eq!(Algorithm::EdDSA.to_string(), "EdDSA");
    assert_eq!(Algorithm::default(), Algorithm::HS256);
    for a in Algorithm::ALL {
        assert_eq!(
            a.to_string().to_lowercase().parse::<Algorithm>().unwrap(),
            a
        );
    }
    let a: Algorithm = serde_json::from_value(json!("rs256")).unwrap();
    assert_eq!(a, Algorithm::RS256);
}

#[test]
fn valid_hs256_token_parses_claims() {
    let auth = hmac_authorizer();
    let exp = get_current_timestamp() + 3600;
    let token = hs256(
        PUB_SECRET,
        &json!({
            "mercure": {
                "publish": ["*"],
                "subscribe": ["https://example.com/books/{id}", "urn:x"],
                "payload": {"user": "alice", "n": 1}
            },
            "exp": exp
        }),
    );
    let c = auth.verify_publisher(&token).unwrap();
    assert_eq!(c.publish, Some(vec!["*".to_owned()]));
    assert_eq!(
        c.subscribe,
        Some(vec![
            "https://example.com/books/{id}".to_owned(),
            "urn:x".to_owned()
        ])
    );
    assert_eq!(c.payload, Some(json!({"user": "alice", "n": 1})));
    assert_eq!(c.expires_at, Some(exp));
}

#[test]
fn token_without_exp_is_accepted() {
    let auth = hmac_authorizer();
    let token = hs256(PUB_SECRET, &json!({"mercure": {"publish": []}}));
    let c = auth.verify_publisher(&token).unwrap();
    assert_eq!(c.publish, Some(vec![]));
    assert_eq!(c.subscribe, None);
    assert_eq!(c.expires_at, None);
}

#[test]
fn wrong_secret_is_invalid() {
    let auth = hmac_authorizer();
    let token = hs256("not-the-secret", &json!({"mercure": {"publish": ["*"]}}));
    assert_invalid(auth.verify_publisher(&token));
}

#[test]
fn expired_token_is_expired() {
    let auth = hmac_authorizer();
    let token = hs256(
        PUB_SECRET,
        &json!({"mercure": {"publish": ["*"]}, "exp": get_current_timestamp() - 5}),
    );
    assert!(matches!(
        auth.verify_publisher(&token),
        Err(AuthError::Expired)
    ));
}

#[test]
fn nbf_in_future_is_invalid() {
    let auth = hmac_authorizer();
    let token = hs256(
        PUB_SECRET,
        &json!({"mercure": {"publish": ["*"]}, "nbf": get_current_timestamp() + 30}),
    );
    let msg = assert_invalid(auth.verify_publisher(&token));
    assert!(msg.contains("nbf"), "{msg}");
    // nbf in the past is fine
    let token = hs256(
        PUB_SECRET,
        &json!({"mercure": {"publish": ["*"]}, "nbf": get_current_timestamp() - 30}),
    );
    auth.verify_publisher(&token).unwrap();
}

#[test]
fn alg_none_is_invalid() {
    let auth = hmac_authorizer();
    let header = b64(&json!({"alg": "none", "typ": "JWT"}));
    let payload = b64(&json!({"mercure": {"publish": ["*"]}}));
    let token = format!("{header}.{payload}.");
    assert_invalid(auth.verify_publisher(&token));
    // and with a garbage signature appended
    assert_invalid(auth.verify_publisher(&format!("{token}AAAA")));
}

#[test]
fn malformed_tokens_are_invalid() {
    let auth = hmac_authorizer();
    assert_invalid(auth.verify_publisher("not-a-jwt"));
    assert_invalid(auth.verify_publisher("a.b.c"));
    assert_invalid(auth.verify_publisher("a.b.c.d"));
    assert!(matches!(
        auth.verify_publisher("  "),
        Err(AuthError::Missing)
    ));
}

#[test]
fn other_hmac_algorithm_is_refused() {
    let auth = hmac_authorizer();
    let token = sign(
        Algorithm::HS512,
        &EncodingKey::from_secret(PUB_SECRET.as_bytes()),
        &json!({"mercure": {"publish": ["*"]}}),
    );
    let msg = assert_invalid(auth.verify_publisher(&token));
    assert!(msg.contains("HS256"), "{msg}");
}

#[test]
fn hs_rs_confusion_is_refused() {
    let auth = asym_authorizer(Algorithm::RS256, RSA_PUBLIC);
    for secret in [RSA_PUBLIC, RSA_PUBLIC.trim()] {
        let token = hs256(secret, &json!({"mercure": {"publish": ["*"]}}));
        assert_invalid(auth.verify_publisher(&token));
    }
}

#[test]
fn rs256_and_ps256_tokens_verify() {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    for alg in [Algorithm::RS256, Algorithm::PS256] {
        let auth = asym_authorizer(alg, RSA_PUBLIC);
        let token = sign(alg, &key, &json!({"mercure": {"publish": ["urn:a"]}}));
        let c = auth.verify_publisher(&token).unwrap();
        assert_eq!(c.publish, Some(vec!["urn:a".to_owned()]));
        // a tampered payload fails
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = b64(&json!({"mercure": {"publish": ["*"]}}));
        parts[1] = &forged;
        assert_invalid(auth.verify_publisher(&parts.join(".")));
    }
}

#[test]
fn es256_es384_and_eddsa_tokens_verify() {
    let cases = [
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(EC_P256_PRIVATE.as_bytes()).unwrap(),
            EC_P256_PUBLIC,
        ),
        (
            Algorithm::ES384,
            EncodingKey::from_ec_pem(EC_P384_PRIVATE.as_bytes()).unwrap(),
            EC_P384_PUBLIC,
        ),
        (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()).unwrap(),
            ED25519_PUBLIC,
        ),
    ];
    for (alg, key, public) in cases {
        let auth = asym_authorizer(alg, public);
        let token = sign(alg, &key, &json!({"mercure": {"subscribe": ["*"]}}));
        let c = auth.verify_publisher(&token).unwrap();
        assert_eq!(c.subscribe, Some(vec!["*".to_owned()]), "{alg}");
    }
    // Ed25519 token presented to an ES256 authorizer: wrong algorithm.
    let auth = asym_authorizer(Algorithm::ES256, EC_P256_PUBLIC);
    let ed = EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()).unwrap();
    let token = sign(Algorithm::EdDSA, &ed, &json!({}));
    assert_invalid(auth.verify_publisher(&token));
}

#[test]
fn publisher_and_subscriber_keys_differ() {
    let auth = hmac_authorizer();
    let sub = hs256(SUB_SECRET, &json!({"mercure": {"subscribe": ["*"]}}));
    let publ = hs256(PUB_SECRET, &json!({"mercure": {"publish": ["*"]}}));
    auth.verify_subscriber(&sub).unwrap();
    auth.verify_publisher(&publ).unwrap();
    assert_invalid(auth.verify_publisher(&sub));
    assert_invalid(auth.verify_subscriber(&publ));
}

#[test]
fn missing_role_key_is_nokey() {
    let auth = Authorizer::new(&KeyConfig {
        publisher_key: Some(PUB_SECRET.to_owned()),
        ..KeyConfig::default()
    })
    .unwrap();
    assert!(auth.has_publisher_key());
    assert!(!auth.has_subscriber_key());
    let token = hs256(PUB_SECRET, &json!({}));
    assert!(matches!(
        auth.verify_subscriber(&token),
        Err(AuthError::NoKey)
    ));
}

#[test]
fn bad_claim_shapes_are_invalid() {
    let auth = hmac_authorizer();
    for claims in [
        json!({"mercure": {"publish": "*"}}),
        json!({"mercure": {"publish": [1, 2]}}),
        json!({"mercure": {"subscribe": {"a": 1}}}),
        json!({"mercure": {"subscribe": ["ok", null]}}),
        json!({"mercure": "publish everything"}),
        json!({"exp": "tomorrow"}),
    ] {
        let token = hs256(PUB_SECRET, &claims);
        assert_invalid(auth.verify_publisher(&token));
    }
}

#[test]
fn missing_mercure_claim_gives_empty_claims() {
    let auth = hmac_authorizer();
    let token = hs256(PUB_SECRET, &json!({"sub": "bob", "aud": "elsewhere"}));
    let c = auth.verify_publisher(&token).unwrap();
    assert_eq!(c.publish, None);
    assert_eq!(c.subscribe, None);
    assert_eq!(c.payload, None);
    assert_eq!(c.expires_at, None);
}

#[test]
fn key_errors_name_the_role() {
    let err = Authorizer::new(&KeyConfig {
        publisher_key: Some(String::new()),
        subscriber_key: None,
        algorithm: Algorithm::HS256,
    })
    .unwrap_err();
    assert!(matches!(err, KeyError::EmptySecret { .. }));
    assert!(err.to_string().starts_with("publisher key"), "{err}");

    let err = Authorizer::new(&KeyConfig {
        publisher_key: None,
        subscriber_key: Some("/nonexistent/herald/key.pem".to_owned()),
        algorithm: Algorithm::RS256,
    })
    .unwrap_err();
    assert!(matches!(err, KeyError::ReadFile { .. }));
    let msg = err.to_string();
    assert!(msg.starts_with("subscriber key"), "{msg}");
    assert!(msg.contains("/nonexistent/herald/key.pem"), "{msg}");
    assert!(!msg.contains('\n'));

    let bad = "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n";
    let cases = [
        (Algorithm::RS256, bad),
        (Algorithm::RS256, RSA_PRIVATE),
        (Algorithm::RS256, EC_P256_PUBLIC),
        (Algorithm::ES256, RSA_PUBLIC),
        (Algorithm::ES256, EC_P384_PUBLIC),
        (Algorithm::ES384, EC_P256_PUBLIC),
        (Algorithm::EdDSA, EC_P256_PUBLIC),
        (Algorithm::EdDSA, ED25519_PRIVATE),
    ];
    for (alg, pem) in cases {
        let err = Authorizer::new(&KeyConfig {
            publisher_key: Some(pem.to_owned()),
            subscriber_key: None,
            algorithm: alg,
        })
        .unwrap_err();
        assert!(matches!(err, KeyError::BadPem { .. }), "{alg}: {err}");
        let msg = err.to_string();
        assert!(msg.starts_with("publisher key"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }
}

#[test]
fn pem_from_file_and_escaped_newlines() {
    let path = std::env::temp_dir().join(format!(
        "herald-auth-test-{}-{}.pem",
        std::process::id(),
        get_current_timestamp()
    ));
    std::fs::write(&path, ED25519_PUBLIC).unwrap();
    let auth = asym_authorizer(Algorithm::EdDSA, path.to_str().unwrap());
    let _ = std::fs::remove_file(&path);
    let key = EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()).unwrap();
    let token = sign(Algorithm::EdDSA, &key, &json!({}));
    auth.verify_publisher(&token).unwrap();

    // PEM text with literal "\n" sequences, as environment variables often carry.
    let escaped = EC_P256_PUBLIC.replace('\n', "\\n");
    let auth = asym_authorizer(Algorithm::ES256, &escaped);
    let key = EncodingKey::from_ec_pem(EC_P256_PRIVATE.as_bytes()).unwrap();
    let token = sign(Algorithm::ES256, &key, &json!({}));
    auth.verify_publisher(&token).unwrap();
}

#[test]
fn debug_output_redacts_keys() {
    let cfg = KeyConfig {
        publisher_key: Some(PUB_SECRET.to_owned()),
        subscriber_key: None,
        algorithm: Algorithm::HS256,
    };
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains(PUB_SECRET), "{dbg}");
    let dbg = format!("{:?}", Authorizer::new(&cfg).unwrap());
    assert!(!dbg.contains(PUB_SECRET), "{dbg}");
}

#[tokio::test(start_paused = true)]
async fn a_cached_publisher_token_is_refused_once_its_exp_passes() {
    let auth = hmac_authorizer();
    let exp = crate::update::now_ms() / 1000 + 2;
    let token = hs256(
        PUB_SECRET,
        &json!({"exp": exp, "mercure": {"publish": ["*"]}}),
    );
    assert_eq!(
        auth.verify_publisher(&token).unwrap().publish,
        Some(vec!["*".to_owned()])
    );
    assert_eq!(
        auth.inner.verified_publishers.len(),
        1,
        "kept after one use"
    );
    assert!(
        auth.verify_publisher(&token).is_ok(),
        "served from the cache"
    );
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        auth.verify_publisher(&token).unwrap_err(),
        AuthError::Expired
    );
    assert_eq!(auth.inner.verified_publishers.len(), 0);
}

#[test]
fn a_cached_publisher_token_is_not_honoured_by_another_key_or_role() {
    let auth = hmac_authorizer();
    let token = hs256(PUB_SECRET, &json!({"mercure": {"publish": ["*"]}}));
    auth.verify_publisher(&token).unwrap();
    auth.verify_publisher(&token).unwrap();
    // The subscriber key never saw it, cache or not.
    assert_invalid(auth.verify_subscriber(&token));
    // A hub with another publisher key (a key change) starts with an empty cache.
    let rotated = Authorizer::new(&KeyConfig {
        publisher_key: Some("another-publisher-secret-another".to_owned()),
        subscriber_key: None,
        algorithm: Algorithm::HS256,
    })
    .unwrap();
    assert_invalid(rotated.verify_publisher(&token));
    // Refusals and a tampered copy are never kept.
    assert_invalid(auth.verify_publisher(&format!("{token}AAAA")));
    assert_eq!(auth.inner.verified_publishers.len(), 1);
}

#[test]
fn the_publisher_token_cache_stays_bounded() {
    let auth = hmac_authorizer();
    for n in 0..verified::CAPACITY + 50 {
        let token = hs256(
            PUB_SECRET,
            &json!({"sub": n, "mercure": {"publish": ["*"]}}),
        );
        auth.verify_publisher(&token).unwrap();
    }
    assert_eq!(auth.inner.verified_publishers.len(), verified::CAPACITY);
}

#[test]
fn an_access_token_is_never_kept_as_a_publisher_token() {
    let auth = hmac_authorizer();
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".to_owned());
    let access = encode(
        &header,
        &json!({"mercure": {"publish": ["*"]}}),
        &EncodingKey::from_secret(PUB_SECRET.as_bytes()),
    )
    .unwrap();
    auth.verify_publisher(&access).unwrap();
    assert!(auth.known_publisher(&access).is_none());
    let plain = hs256(PUB_SECRET, &json!({"mercure": {"publish": ["*"]}}));
    assert!(auth.known_publisher(&plain).is_none(), "not verified yet");
    auth.verify_publisher(&plain).unwrap();
    assert!(matches!(auth.known_publisher(&plain), Some(Ok(_))));
}
