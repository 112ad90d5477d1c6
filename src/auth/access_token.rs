//! Mercure 1.0 access tokens (RFC 9068, `typ: at+jwt`) and their `authorization_details`.
//!
//! A token is one of these when its header's `typ` is `at+jwt` or `application/at+jwt` (any
//! case); anything else is a 0.x token (the `mercure` claim), verified as before. An access
//! token is verified with the hub's keys for the role and the one configured algorithm, never
//! with a key it carries (`jwk`, `jku`, `x5u` are refused); `exp` is required, `nbf` enforced,
//! `iss` must be a trusted issuer and `aud` must contain the resource identifier. Its grants are
//! the entries of type [`DETAIL_TYPE`]; one invalid entry rejects the whole token. Compiling the
//! granted patterns into matchers is the caller's job (auth does no topic matching).

use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::{AuthError, Authorizer, Claims, KeyRole};

/// The `authorization_details` type that carries Mercure grants.
pub(crate) const DETAIL_TYPE: &str = "https://mercure.rocks/authorization-detail";
/// Most Mercure entries in one token.
pub(crate) const MAX_DETAILS: usize = 64;
/// Most topics in one entry.
pub(crate) const MAX_TOPICS_PER_DETAIL: usize = 256;
/// Longest granted pattern, in bytes.
pub(crate) const MAX_PATTERN_LENGTH: usize = 2048;

/// How a granted topic is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchType {
    /// Byte for byte (the default); `*` is the wildcard.
    Exact,
    /// A WHATWG URL Pattern.
    UrlPattern,
}

/// One granted topic matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicGrant {
    pub(crate) pattern: String,
    pub(crate) match_type: MatchType,
}

/// What a Mercure 1.0 access token grants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    /// Topics the bearer may publish to (every topic of an update must be covered).
    pub publish: Vec<TopicGrant>,
    /// Topics whose private updates the bearer may receive (one topic of an update suffices).
    pub subscribe: Vec<TopicGrant>,
    /// Each `subscribe` entry's topics and `payload`, in token order: a subscription's events
    /// carry the payload of the first entry whose topics match its matcher string.
    pub(crate) subscribe_entries: Vec<SubscribeEntry>,
}

/// One `subscribe` entry of an access token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SubscribeEntry {
    pub topics: Vec<TopicGrant>,
    pub payload: Option<Value>,
}

/// True when the token's header says it is an RFC 9068 access token.
pub(crate) fn is_access_token(token: &str) -> bool {
    jsonwebtoken::decode_header(token.trim())
        .ok()
        .and_then(|header| header.typ)
        .is_some_and(|typ| is_access_typ(&typ))
}

fn is_access_typ(typ: &str) -> bool {
    typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
}

#[derive(Deserialize)]
struct AccessClaims {
    #[serde(default)]
    exp: Option<Value>,
    #[serde(default)]
    sub: Option<Value>,
    #[serde(default)]
    authorization_details: Option<Value>,
}

impl Authorizer {
    /// Verifies a Mercure 1.0 access token presented for `role`, for the resource `audience`.
    pub(crate) fn verify_access_token(
        &self,
        role: KeyRole,
        token: &str,
        audience: &str,
    ) -> Result<Claims, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("malformed token ({e})")))?;
        if !header.typ.as_deref().is_some_and(is_access_typ) {
            return Err(AuthError::Invalid("typ is not at+jwt".into()));
        }
        if header.jwk.is_some() || header.jku.is_some() || header.x5u.is_some() {
            return Err(AuthError::Invalid(
                "keys carried in the token (jwk, jku, x5u) are refused".into(),
            ));
        }
        if self.inner.issuers.is_empty() {
            return Err(AuthError::Invalid(
                "no issuer is trusted (--jwt-issuer) for access tokens".into(),
            ));
        }
        let mut validation: Validation = self.inner.validation.clone();
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&self.inner.issuers);
        validation.set_audience(&[audience]);
        validation.validate_aud = true;

        // An issuer bound to its own key is verified with that key and algorithm only (the
        // unverified `iss` only picks the key; the verified one must still match).
        if let Some((algorithm, key)) = unverified_issuer(token)
            .as_deref()
            .and_then(|iss| self.inner.issuer_keys.get(iss))
        {
            validation.algorithms = vec![algorithm.to_jwt()];
            return jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
                .map_err(|error| self.map_jwt_error(error))
                .and_then(|data| data.claims.into_claims());
        }
        let (key, set) = match role {
            KeyRole::Publisher => (&self.inner.publisher, &self.inner.publisher_jwks),
            KeyRole::Subscriber => (&self.inner.subscriber, &self.inner.subscriber_jwks),
            KeyRole::Issuer => (&None, &None),
        };
        let keys: Vec<DecodingKey> = match (key, set) {
            (Some(key), _) => vec![key.clone()],
            (None, Some(set)) => {
                let keys: Vec<DecodingKey> = set
                    .keys()
                    .iter()
                    .filter(|key| header.kid.is_none() || key.kid == header.kid)
                    .map(|key| key.key.clone())
                    .collect();
                if keys.is_empty() {
                    set.request_refresh();
                }
                keys
            }
            (None, None) => return Err(AuthError::NoKey),
        };
        let mut last_error = AuthError::Invalid("no key verifies this token".into());
        for key in &keys {
            match jsonwebtoken::decode::<AccessClaims>(token, key, &validation) {
                Ok(data) => return data.claims.into_claims(),
                Err(error) => last_error = self.map_jwt_error(error),
            }
        }
        Err(last_error)
    }
}

/// The `iss` of a token, read without verifying it (only to choose the key).
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

impl AccessClaims {
    fn into_claims(self) -> Result<Claims, AuthError> {
        let expires_at = self.exp.as_ref().and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        });
        let subject = match self.sub {
            Some(Value::String(subject)) => Some(subject),
            _ => None,
        };
        let (grants, payload) = parse_details(self.authorization_details)?;
        Ok(Claims {
            publish: None,
            subscribe: None,
            payload,
            expires_at,
            subject,
            grants: Some(grants),
            // The admin endpoints take herald's own admin token, never an access token.
            admin: false,
        })
    }
}

fn invalid(reason: &str) -> AuthError {
    AuthError::Invalid(format!("authorization_details: {reason}"))
}

/// The grants and the first `subscribe` entry's payload. Entries of other types are not ours
/// and are ignored; an invalid Mercure entry rejects the token.
pub(crate) fn parse_details(details: Option<Value>) -> Result<(Grants, Option<Value>), AuthError> {
    let mut grants = Grants::default();
    let mut payload = None;
    let entries = match details {
        None | Some(Value::Null) => return Ok((grants, None)),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(invalid("not an array")),
    };
    let mut mercure_entries = 0;
    for entry in entries {
        let Value::Object(mut entry) = entry else {
            return Err(invalid("an entry is not an object"));
        };
        if entry.get("type").and_then(Value::as_str) != Some(DETAIL_TYPE) {
            continue;
        }
        mercure_entries += 1;
        if mercure_entries > MAX_DETAILS {
            return Err(invalid("too many entries"));
        }
        let (mut publish, mut subscribe) = (false, false);
        match entry.remove("actions") {
            Some(Value::Array(actions)) if !actions.is_empty() => {
                for action in actions {
                    match action {
                        Value::String(action) if action == "publish" => publish = true,
                        Value::String(action) if action == "subscribe" => subscribe = true,
                        // An action the hub does not know grants nothing.
                        Value::String(_) => {}
                        _ => return Err(invalid("an action is not a string")),
                    }
                }
            }
            _ => return Err(invalid("`actions` must be a non-empty array of strings")),
        }
        let topics = match entry.remove("topics") {
            Some(Value::Array(topics))
                if !topics.is_empty() && topics.len() <= MAX_TOPICS_PER_DETAIL =>
            {
                topics
            }
            _ => {
                return Err(invalid(
                    "`topics` must be a non-empty array (within limits)",
                ));
            }
        };
        let mut parsed = Vec::with_capacity(topics.len());
        for topic in topics {
            let Value::Object(topic) = topic else {
                return Err(invalid("a topic is not an object"));
            };
            let pattern = match topic.get("match") {
                Some(Value::String(pattern)) if pattern.len() <= MAX_PATTERN_LENGTH => pattern,
                _ => {
                    return Err(invalid(
                        "a topic's `match` must be a string (within limits)",
                    ));
                }
            };
            let match_type = match topic.get("match_type") {
                None | Some(Value::Null) => MatchType::Exact,
                Some(Value::String(kind)) if kind == "exact" => MatchType::Exact,
                Some(Value::String(kind)) if kind == "urlpattern" => MatchType::UrlPattern,
                _ => return Err(invalid("unknown `match_type`")),
            };
            parsed.push(TopicGrant {
                pattern: pattern.clone(),
                match_type,
            });
        }
        let entry_payload = match entry.remove("payload") {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(Value::Object(map)),
            Some(_) => return Err(invalid("`payload` must be an object")),
        };
        if publish {
            grants.publish.extend(parsed.iter().cloned());
        }
        if subscribe {
            if payload.is_none() {
                payload.clone_from(&entry_payload);
            }
            grants.subscribe_entries.push(SubscribeEntry {
                topics: parsed.clone(),
                payload: entry_payload,
            });
            grants.subscribe.extend(parsed);
        }
    }
    Ok((grants, payload))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::{Algorithm, KeyConfig};
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
    use serde_json::json;

    const SECRET: &str = "access-token-secret-access-token";
    const ISS: &str = "https://issuer.example";
    const AUD: &str = "https://hub.example/.well-known/mercure";

    fn authorizer() -> Authorizer {
        Authorizer::new(&KeyConfig {
            publisher_key: Some(SECRET.into()),
            subscriber_key: Some(SECRET.into()),
            algorithm: Algorithm::HS256,
        })
        .unwrap()
        .with_issuers(vec![ISS.to_owned()])
    }

    fn sign_with(header: &Header, claims: &Value) -> String {
        encode(header, claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
    }

    fn at_header() -> Header {
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        header
    }

    fn claims(details: Value) -> Value {
        json!({
            "iss": ISS, "aud": [AUD, "other"], "exp": get_current_timestamp() + 600,
            "sub": "alice", "authorization_details": details
        })
    }

    fn detail(actions: Value, topics: Value) -> Value {
        json!({"type": DETAIL_TYPE, "actions": actions, "topics": topics})
    }

    fn verify(token: &str) -> Result<Claims, AuthError> {
        authorizer().verify_access_token(KeyRole::Subscriber, token, AUD)
    }

    #[test]
    fn a_valid_token_gives_its_grants() {
        let token = sign_with(
            &at_header(),
            &claims(json!([
                {"type": "https://other.example/detail", "whatever": 1},
                {"type": DETAIL_TYPE, "actions": ["subscribe", "fly"],
                 "topics": [{"match": "/books/:id", "match_type": "urlpattern"}, {"match": "*"}],
                 "payload": {"user": "alice"}},
                detail(json!(["publish"]), json!([{"match": "https://x/a", "match_type": "exact"}])),
            ])),
        );
        assert!(is_access_token(&token));
        let verified = verify(&token).unwrap();
        let grants = verified.grants.unwrap();
        assert_eq!(grants.subscribe.len(), 2);
        assert_eq!(grants.subscribe[0].match_type, MatchType::UrlPattern);
        assert_eq!(grants.subscribe[1].match_type, MatchType::Exact);
        assert_eq!(grants.publish[0].pattern, "https://x/a");
        assert_eq!(verified.payload, Some(json!({"user": "alice"})));
        // Each subscribe entry keeps its own topics and payload, for subscription events.
        assert_eq!(
            grants.subscribe_entries,
            [SubscribeEntry {
                topics: grants.subscribe.clone(),
                payload: Some(json!({"user": "alice"})),
            }]
        );
        assert_eq!(verified.subject.as_deref(), Some("alice"));
        // typ is case-insensitive, and application/at+jwt counts too.
        let mut header = at_header();
        header.typ = Some("Application/AT+JWT".into());
        verify(&sign_with(&header, &claims(json!([])))).unwrap();
    }

    #[test]
    fn registered_claims_are_enforced() {
        let now = get_current_timestamp();
        let base = claims(json!([]));
        let cases = [
            ("no exp", {
                let mut c = base.clone();
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
            ("expired", {
                let mut c = base.clone();
                c["exp"] = json!(now - 5);
                c
            }),
            ("nbf in the future", {
                let mut c = base.clone();
                c["nbf"] = json!(now + 60);
                c
            }),
            ("untrusted iss", {
                let mut c = base.clone();
                c["iss"] = json!("https://evil.example");
                c
            }),
            ("no iss", {
                let mut c = base.clone();
                c.as_object_mut().unwrap().remove("iss");
                c
            }),
            ("wrong aud", {
                let mut c = base.clone();
                c["aud"] = json!("https://elsewhere.example/.well-known/mercure");
                c
            }),
            ("no aud", {
                let mut c = base.clone();
                c.as_object_mut().unwrap().remove("aud");
                c
            }),
        ];
        for (name, claims) in cases {
            let token = sign_with(&at_header(), &claims);
            assert!(verify(&token).is_err(), "{name} must be refused");
        }
        // aud as a plain string works.
        let mut single = base.clone();
        single["aud"] = json!(AUD);
        verify(&sign_with(&at_header(), &single)).unwrap();
    }

    #[test]
    fn header_tricks_are_refused() {
        let claims = claims(json!([]));
        // Not at+jwt: not an access token.
        let plain = sign_with(&Header::new(jsonwebtoken::Algorithm::HS256), &claims);
        assert!(!is_access_token(&plain));
        assert!(verify(&plain).is_err());
        // Wrong algorithm.
        let mut hs512 = at_header();
        hs512.alg = jsonwebtoken::Algorithm::HS512;
        assert!(verify(&sign_with(&hs512, &claims)).is_err());
        // Keys carried in the token.
        for (name, value) in [
            ("jku", json!("https://evil.example/jwks")),
            ("x5u", json!("https://evil.example/cert")),
        ] {
            let mut header = serde_json::to_value(at_header()).unwrap();
            header[name] = value;
            let signed = sign_with(&at_header(), &claims);
            let payload = signed.split('.').nth(1).unwrap();
            let head = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
            let message = format!("{head}.{payload}");
            let signature = jsonwebtoken::crypto::sign(
                message.as_bytes(),
                &EncodingKey::from_secret(SECRET.as_bytes()),
                jsonwebtoken::Algorithm::HS256,
            )
            .unwrap();
            assert!(verify(&format!("{message}.{signature}")).is_err(), "{name}");
        }
        // alg none.
        let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        assert!(verify(&format!("{head}.{body}.")).is_err());
        // No trusted issuer at all.
        let untrusting = Authorizer::new(&KeyConfig {
            publisher_key: Some(SECRET.into()),
            subscriber_key: Some(SECRET.into()),
            algorithm: Algorithm::HS256,
        })
        .unwrap();
        let token = sign_with(&at_header(), &claims);
        assert!(
            untrusting
                .verify_access_token(KeyRole::Subscriber, &token, AUD)
                .is_err()
        );
    }

    #[test]
    fn one_invalid_entry_rejects_the_token() {
        let good = detail(json!(["subscribe"]), json!([{"match": "*"}]));
        for bad in [
            json!({"not": "an array"}),
            json!([
                good,
                detail(json!(["subscribe", 3]), json!([{"match": "a"}]))
            ]),
            json!([good, detail(json!([]), json!([{"match": "a"}]))]),
            json!([good, detail(json!("subscribe"), json!([{"match": "a"}]))]),
            json!([good, detail(json!(["subscribe"]), json!([]))]),
            json!([good, {"type": DETAIL_TYPE, "actions": ["subscribe"]}]),
            json!([
                good,
                detail(
                    json!(["subscribe"]),
                    json!([{"match": "a", "match_type": "regex"}])
                )
            ]),
            json!([good, detail(json!(["subscribe"]), json!([{"match": 1}]))]),
            json!([good, detail(json!(["subscribe"]), json!(["a"]))]),
            json!([good, {"type": DETAIL_TYPE, "actions": ["subscribe"], "topics": [{"match": "a"}], "payload": "x"}]),
            json!([good, 7]),
        ] {
            let token = sign_with(&at_header(), &claims(bad.clone()));
            assert!(verify(&token).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn an_issuer_with_its_own_key_is_verified_with_it_only() {
        let own = "issuer-own-secret-issuer-own-secret";
        let auth = authorizer()
            .with_issuer_key("https://own.example", own, Algorithm::HS384)
            .unwrap();
        let mut claims = claims(json!([]));
        claims["iss"] = json!("https://own.example");
        let mut header = at_header();
        header.alg = jsonwebtoken::Algorithm::HS384;
        let token = encode(&header, &claims, &EncodingKey::from_secret(own.as_bytes())).unwrap();
        auth.verify_access_token(KeyRole::Publisher, &token, AUD)
            .unwrap();
        // The hub's key does not verify this issuer's tokens, even with the right algorithm.
        let forged = encode(
            &header,
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert!(
            auth.verify_access_token(KeyRole::Publisher, &forged, AUD)
                .is_err()
        );
        let forged = sign_with(&at_header(), &claims);
        assert!(
            auth.verify_access_token(KeyRole::Publisher, &forged, AUD)
                .is_err()
        );
        // The other issuers keep the hub's keys.
        verify(&sign_with(&at_header(), &super::tests::claims(json!([])))).unwrap();
    }

    #[test]
    fn unknown_actions_grant_nothing() {
        let token = sign_with(
            &at_header(),
            &claims(json!([detail(json!(["fly"]), json!([{"match": "*"}]))])),
        );
        let grants = verify(&token).unwrap().grants.unwrap();
        assert!(grants.publish.is_empty() && grants.subscribe.is_empty());
    }
}
