//! Minting HMAC tokens (`herald token`, the start-up curl hint) and random secrets.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use rand::RngCore;
use serde::Serialize;
use serde_json::Value;

use super::{Algorithm, KeyError};

/// What to put in a minted token.
#[derive(Debug, Clone, Default)]
pub struct MintClaims {
    /// `mercure.publish` selectors (left out of the token when empty).
    pub publish: Vec<String>,
    /// `mercure.subscribe` selectors (left out of the token when empty).
    pub subscribe: Vec<String>,
    /// `mercure.payload`.
    pub payload: Option<Value>,
    /// Sets `exp` to now + ttl (rounded up to the second); no `exp` if `None`.
    pub ttl: Option<Duration>,
}

#[derive(Serialize)]
struct TokenClaims<'a> {
    mercure: MercureClaim<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
}

#[derive(Serialize)]
struct MercureClaim<'a> {
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    publish: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    subscribe: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a Value>,
}

/// Mint a token signed with `secret` using an HS* algorithm. Errors if `alg`
/// is not HS256/HS384/HS512 or the secret is empty.
pub fn mint_hmac(secret: &[u8], alg: Algorithm, claims: &MintClaims) -> Result<String, KeyError> {
    if !alg.is_hmac() {
        return Err(KeyError::NotHmac(alg));
    }
    if secret.is_empty() {
        return Err(KeyError::Mint("the secret is empty".to_owned()));
    }
    let exp = claims.ttl.map(|ttl| {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        jsonwebtoken::get_current_timestamp().saturating_add(secs)
    });
    let body = TokenClaims {
        mercure: MercureClaim {
            publish: &claims.publish,
            subscribe: &claims.subscribe,
            payload: claims.payload.as_ref(),
        },
        exp,
    };
    jsonwebtoken::encode(
        &Header::new(alg.to_jwt()),
        &body,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| KeyError::Mint(e.to_string()))
}

/// What to put in a minted Mercure 1.0 access token (`typ: at+jwt`).
#[derive(Debug, Clone, Default)]
pub(crate) struct MintAccessClaims {
    /// `iss`.
    pub issuer: String,
    /// `aud`: the hub's resource identifier.
    pub audience: String,
    /// Topics granted `publish`.
    pub publish: Vec<String>,
    /// Topics granted `subscribe`.
    pub subscribe: Vec<String>,
    /// The granted topics are URL Patterns (`match_type: urlpattern`); `*` stays the wildcard.
    pub urlpattern: bool,
    /// `payload` of the `subscribe` entry.
    pub payload: Option<Value>,
    /// `sub`.
    pub subject: Option<String>,
    /// Lifetime: `exp` is required in access tokens.
    pub ttl: Duration,
}

/// Mint a Mercure 1.0 access token signed with `secret` using an HS* algorithm.
pub(crate) fn mint_access_token(
    secret: &[u8],
    alg: Algorithm,
    claims: &MintAccessClaims,
) -> Result<String, KeyError> {
    if !alg.is_hmac() {
        return Err(KeyError::NotHmac(alg));
    }
    if secret.is_empty() {
        return Err(KeyError::Mint("the secret is empty".to_owned()));
    }
    let topics = |list: &[String]| -> Vec<Value> {
        list.iter()
            .map(|topic| {
                if claims.urlpattern && topic != "*" {
                    serde_json::json!({"match": topic, "match_type": "urlpattern"})
                } else {
                    serde_json::json!({"match": topic})
                }
            })
            .collect()
    };
    let mut details = Vec::new();
    if !claims.publish.is_empty() {
        details.push(serde_json::json!({
            "type": super::access_token::DETAIL_TYPE,
            "actions": ["publish"],
            "topics": topics(&claims.publish),
        }));
    }
    if !claims.subscribe.is_empty() {
        let mut entry = serde_json::json!({
            "type": super::access_token::DETAIL_TYPE,
            "actions": ["subscribe"],
            "topics": topics(&claims.subscribe),
        });
        if let (Some(payload), Some(map)) = (&claims.payload, entry.as_object_mut()) {
            map.insert("payload".into(), payload.clone());
        }
        details.push(entry);
    }
    let now = jsonwebtoken::get_current_timestamp();
    let secs = claims.ttl.as_secs() + u64::from(claims.ttl.subsec_nanos() > 0);
    let mut body = serde_json::json!({
        "iss": claims.issuer,
        "aud": claims.audience,
        "iat": now,
        "exp": now.saturating_add(secs),
        "authorization_details": details,
    });
    if let (Some(subject), Some(map)) = (&claims.subject, body.as_object_mut()) {
        map.insert("sub".into(), Value::from(subject.clone()));
    }
    let mut header = Header::new(alg.to_jwt());
    header.typ = Some("at+jwt".to_owned());
    jsonwebtoken::encode(&header, &body, &EncodingKey::from_secret(secret))
        .map_err(|e| KeyError::Mint(e.to_string()))
}

/// A random 256-bit secret, as URL-safe base64 text (43 characters), for runs
/// started without any key. Use the text's bytes as the HMAC secret.
pub(crate) fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Mint an admin token (`{"herald": {"admin": true}}`, no Mercure claim) signed with `secret`,
/// for `POST /admin/backup`. The hub accepts it when it verifies with the publisher key.
pub fn mint_admin(
    secret: &[u8],
    alg: Algorithm,
    ttl: Option<Duration>,
) -> Result<String, KeyError> {
    if !alg.is_hmac() {
        return Err(KeyError::NotHmac(alg));
    }
    if secret.is_empty() {
        return Err(KeyError::Mint("the secret is empty".to_owned()));
    }
    let exp = ttl.map(|ttl| {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        jsonwebtoken::get_current_timestamp().saturating_add(secs)
    });
    let mut body = serde_json::json!({"herald": {"admin": true}});
    if let Some(exp) = exp {
        body["exp"] = exp.into();
    }
    jsonwebtoken::encode(
        &Header::new(alg.to_jwt()),
        &body,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| KeyError::Mint(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::{AuthError, Authorizer, KeyConfig};
    use super::*;
    use serde_json::json;

    fn authorizer(secret: &str, alg: Algorithm) -> Authorizer {
        Authorizer::new(&KeyConfig {
            publisher_key: Some(secret.to_owned()),
            subscriber_key: Some(secret.to_owned()),
            algorithm: alg,
        })
        .unwrap()
    }

    #[test]
    fn minted_access_tokens_verify() {
        let secret = random_secret();
        let auth = authorizer(&secret, Algorithm::HS256).with_issuers(vec!["https://iss".into()]);
        let token = mint_access_token(
            secret.as_bytes(),
            Algorithm::HS256,
            &MintAccessClaims {
                issuer: "https://iss".into(),
                audience: "https://hub/.well-known/mercure".into(),
                publish: vec!["*".into()],
                subscribe: vec!["/books/:id".into()],
                urlpattern: true,
                payload: Some(json!({"a": 1})),
                subject: Some("me".into()),
                ttl: Duration::from_secs(60),
            },
        )
        .unwrap();
        let claims = auth
            .verify_access_token(
                super::super::KeyRole::Subscriber,
                &token,
                "https://hub/.well-known/mercure",
            )
            .unwrap();
        let grants = claims.grants.unwrap();
        assert_eq!(grants.publish[0].pattern, "*");
        assert_eq!(
            grants.subscribe[0].match_type,
            super::super::MatchType::UrlPattern
        );
        assert_eq!(claims.payload, Some(json!({"a": 1})));
    }

    #[test]
    fn minted_tokens_round_trip() {
        let secret = random_secret();
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let claims = MintClaims {
                publish: vec!["*".to_owned()],
                subscribe: vec!["https://example.com/{id}".to_owned()],
                payload: Some(json!({"user": 7})),
                ttl: Some(Duration::from_millis(3_600_500)),
            };
            let token = mint_hmac(secret.as_bytes(), alg, &claims).unwrap();
            let c = authorizer(&secret, alg).verify_publisher(&token).unwrap();
            assert_eq!(c.publish, Some(claims.publish.clone()));
            assert_eq!(c.subscribe, Some(claims.subscribe.clone()));
            assert_eq!(c.payload, claims.payload);
            let now = jsonwebtoken::get_current_timestamp();
            let exp = c.expires_at.unwrap();
            assert!(exp > now + 3590 && exp <= now + 3601, "{exp} vs {now}");
        }
    }

    #[test]
    fn minimal_token_has_no_exp_and_omits_empty_lists() {
        let secret = random_secret();
        let token = mint_hmac(
            secret.as_bytes(),
            Algorithm::HS256,
            &MintClaims {
                subscribe: vec!["*".to_owned()],
                ..MintClaims::default()
            },
        )
        .unwrap();
        let c = authorizer(&secret, Algorithm::HS256)
            .verify_subscriber(&token)
            .unwrap();
        assert_eq!(c.publish, None);
        assert_eq!(c.subscribe, Some(vec!["*".to_owned()]));
        assert_eq!(c.payload, None);
        assert_eq!(c.expires_at, None);
        // the wrong algorithm is refused by the verifier
        let err = authorizer(&secret, Algorithm::HS512).verify_subscriber(&token);
        assert!(matches!(err, Err(AuthError::Invalid(_))));
    }

    #[test]
    fn mint_refuses_non_hmac_and_empty_secret() {
        let err = mint_hmac(b"x", Algorithm::RS256, &MintClaims::default()).unwrap_err();
        assert!(matches!(err, KeyError::NotHmac(Algorithm::RS256)));
        assert!(err.to_string().contains("RS256"));
        let err = mint_hmac(b"", Algorithm::HS256, &MintClaims::default()).unwrap_err();
        assert!(matches!(err, KeyError::Mint(_)));
    }

    #[test]
    fn random_secrets_are_256_bit_and_distinct() {
        let a = random_secret();
        let b = random_secret();
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn admin_tokens_carry_the_admin_claim_and_others_do_not() {
        let secret = random_secret();
        let token = mint_admin(secret.as_bytes(), Algorithm::HS256, None).unwrap();
        let claims = authorizer(&secret, Algorithm::HS256)
            .verify_publisher(&token)
            .unwrap();
        assert!(claims.admin);
        assert_eq!(claims.publish, None);
        let plain = mint_hmac(
            secret.as_bytes(),
            Algorithm::HS256,
            &MintClaims {
                publish: vec!["*".to_owned()],
                ..MintClaims::default()
            },
        )
        .unwrap();
        assert!(
            !authorizer(&secret, Algorithm::HS256)
                .verify_publisher(&plain)
                .unwrap()
                .admin
        );
        assert!(mint_admin(b"", Algorithm::HS256, None).is_err());
    }
}
