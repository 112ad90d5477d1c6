//! JWT authorization for the hub: keys, token verification and Mercure claims.
//!
//! This module owns the answer to "may this token publish to / receive topic
//! T?" up to the point of handing back the token's `mercure.publish` /
//! `mercure.subscribe` selectors: it loads the publisher and subscriber keys,
//! verifies signatures with the one configured algorithm, honours `exp` /
//! `nbf`, parses the `mercure` claim, finds a token in a request
//! ([`extract_token`]) and mints HMAC tokens ([`mint_hmac`]).
//!
//! It must not touch HTTP routing or responses, hub state or topic matching,
//! and it does no disk I/O beyond reading a PEM key file named in the
//! configuration, once, in [`Authorizer::new`].

pub mod access_token;
mod extract;
pub mod jwks;
mod mint;
#[cfg(test)]
mod test_keys;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

pub use access_token::{Grants, MatchType, SubscribeEntry, TopicGrant, is_access_token};
pub use extract::{ACCESS_COOKIE, TokenSource, extract_token, extract_token_with};
pub use mint::{
    MintAccessClaims, MintClaims, mint_access_token, mint_admin, mint_hmac, random_secret,
};

/// A JWS signature algorithm. Parsing is case-insensitive (`"hs256"`);
/// display uses the canonical JOSE spelling (`"HS256"`, `"EdDSA"`).
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum Algorithm {
    #[default]
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    ES256,
    ES384,
    PS256,
    PS384,
    PS512,
    EdDSA,
}

impl Algorithm {
    const ALL: [Algorithm; 12] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::EdDSA,
    ];

    /// The canonical JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// True for the shared-secret algorithms (HS256/384/512).
    pub fn is_hmac(self) -> bool {
        matches!(self, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    }

    fn to_jwt(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as J;
        match self {
            Algorithm::HS256 => J::HS256,
            Algorithm::HS384 => J::HS384,
            Algorithm::HS512 => J::HS512,
            Algorithm::RS256 => J::RS256,
            Algorithm::RS384 => J::RS384,
            Algorithm::RS512 => J::RS512,
            Algorithm::ES256 => J::ES256,
            Algorithm::ES384 => J::ES384,
            Algorithm::PS256 => J::PS256,
            Algorithm::PS384 => J::PS384,
            Algorithm::PS512 => J::PS512,
            Algorithm::EdDSA => J::EdDSA,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An algorithm name that [`Algorithm::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown JWT algorithm {0:?} (expected one of HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, PS256, PS384, PS512, EdDSA)"
)]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownAlgorithm(s.to_owned()))
    }
}

impl TryFrom<String> for Algorithm {
    type Error = UnknownAlgorithm;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Key material as configured. HS*: the string is the raw secret bytes.
/// RS*/PS*/ES*/EdDSA: a PEM public key, given either as the PEM text itself
/// or as a path to a PEM file (anything not starting with `-----BEGIN`).
#[derive(Clone, Default)]
pub struct KeyConfig {
    pub publisher_key: Option<String>,
    pub subscriber_key: Option<String>,
    pub algorithm: Algorithm,
}

impl fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |k: &Option<String>| k.as_ref().map(|_| "[redacted]");
        f.debug_struct("KeyConfig")
            .field("publisher_key", &redact(&self.publisher_key))
            .field("subscriber_key", &redact(&self.subscriber_key))
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

/// Which key a [`KeyError`] is about. Displays as "publisher key" / "subscriber key".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    Publisher,
    Subscriber,
    /// A Mercure 1.0 issuer's own key (TOML `issuer-keys`).
    Issuer,
}

impl fmt::Display for KeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyRole::Publisher => "publisher key",
            KeyRole::Subscriber => "subscriber key",
            KeyRole::Issuer => "issuer key",
        })
    }
}

/// A key that cannot be used, or a token that cannot be minted. One-line messages.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{role}: the {alg} secret is empty")]
    EmptySecret { role: KeyRole, alg: Algorithm },
    #[error("{role}: the {alg} key is empty (expected PEM text or a path to a PEM file)")]
    EmptyKey { role: KeyRole, alg: Algorithm },
    #[error("{role}: cannot read PEM file {path:?}: {error}")]
    ReadFile {
        role: KeyRole,
        path: String,
        error: std::io::Error,
    },
    #[error("{role}: not a usable {alg} public key: {reason}")]
    BadPem {
        role: KeyRole,
        alg: Algorithm,
        reason: String,
    },
    #[error("cannot mint a token with {0}: only HS256, HS384 and HS512 are supported")]
    NotHmac(Algorithm),
    #[error("cannot mint a token: {0}")]
    Mint(String),
}

/// Why a request's token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no authorization token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token expired")]
    Expired,
    #[error("no key is configured for this role")]
    NoKey,
}

/// The Mercure-relevant contents of a verified token.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    /// `mercure.publish` topic selectors; `None` if the claim is absent.
    pub publish: Option<Vec<String>>,
    /// `mercure.subscribe` topic selectors; `None` if the claim is absent.
    pub subscribe: Option<Vec<String>>,
    /// `mercure.payload`, passed through untouched.
    pub payload: Option<Value>,
    /// `exp` in unix seconds, if present.
    pub expires_at: Option<u64>,
    /// `sub`, when it is a string (the publish rate limit counts per subject).
    pub subject: Option<String>,
    /// `herald.admin` is `true`: the token may use the admin endpoints (`POST /admin/backup`)
    /// when it verifies with the publisher key.
    pub admin: bool,
    /// The grants of a Mercure 1.0 access token ([`access_token`]); `None` for a 0.x token.
    pub grants: Option<Grants>,
}

/// Verifies publisher and subscriber tokens. Cheap to clone (shared inside).
#[derive(Clone, Debug)]
pub struct Authorizer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    algorithm: Algorithm,
    publisher: Option<DecodingKey>,
    subscriber: Option<DecodingKey>,
    publisher_jwks: Option<Arc<jwks::Jwks>>,
    subscriber_jwks: Option<Arc<jwks::Jwks>>,
    validation: Validation,
    /// Trusted `iss` values of Mercure 1.0 access tokens (`--jwt-issuer`).
    issuers: Vec<String>,
    /// Issuers verified with their own key and algorithm only (TOML `issuer-keys`).
    issuer_keys: std::collections::HashMap<String, (Algorithm, DecodingKey)>,
}

impl Authorizer {
    /// Load the configured keys. Fails on an empty secret, an unreadable PEM
    /// file or a PEM that is not a public key usable with the algorithm.
    pub fn new(cfg: &KeyConfig) -> Result<Self, KeyError> {
        let alg = cfg.algorithm;
        let load =
            |role, key: &Option<String>| key.as_deref().map(|k| load_key(role, alg, k)).transpose();
        let publisher = load(KeyRole::Publisher, &cfg.publisher_key)?;
        let subscriber = load(KeyRole::Subscriber, &cfg.subscriber_key)?;

        let mut validation = Validation::new(alg.to_jwt());
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;

        Ok(Self {
            inner: Arc::new(Inner {
                algorithm: alg,
                publisher,
                subscriber,
                publisher_jwks: None,
                subscriber_jwks: None,
                validation,
                issuers: Vec::new(),
                issuer_keys: std::collections::HashMap::new(),
            }),
        })
    }

    /// Adds JWKS key sets: a role with no static key verifies with its set's cached keys.
    pub fn with_jwks(
        self,
        publisher: Option<Arc<jwks::Jwks>>,
        subscriber: Option<Arc<jwks::Jwks>>,
    ) -> Self {
        let inner = &self.inner;
        Self {
            inner: Arc::new(Inner {
                algorithm: inner.algorithm,
                publisher: inner.publisher.clone(),
                subscriber: inner.subscriber.clone(),
                publisher_jwks: publisher,
                subscriber_jwks: subscriber,
                validation: inner.validation.clone(),
                issuers: inner.issuers.clone(),
                issuer_keys: inner.issuer_keys.clone(),
            }),
        }
    }

    /// Trusts these issuers for Mercure 1.0 access tokens (`--jwt-issuer`).
    pub fn with_issuers(self, issuers: Vec<String>) -> Self {
        let inner = &self.inner;
        Self {
            inner: Arc::new(Inner {
                algorithm: inner.algorithm,
                publisher: inner.publisher.clone(),
                subscriber: inner.subscriber.clone(),
                publisher_jwks: inner.publisher_jwks.clone(),
                subscriber_jwks: inner.subscriber_jwks.clone(),
                validation: inner.validation.clone(),
                issuers,
                issuer_keys: inner.issuer_keys.clone(),
            }),
        }
    }

    /// Binds `issuer` to its own key: its access tokens are verified with this key and
    /// algorithm only, and it is trusted.
    pub fn with_issuer_key(
        self,
        issuer: &str,
        key: &str,
        algorithm: Algorithm,
    ) -> Result<Self, KeyError> {
        let decoding = load_key(KeyRole::Issuer, algorithm, key)?;
        let inner = &self.inner;
        let mut issuer_keys = inner.issuer_keys.clone();
        issuer_keys.insert(issuer.to_owned(), (algorithm, decoding));
        let mut issuers = inner.issuers.clone();
        if !issuers.iter().any(|known| known == issuer) {
            issuers.push(issuer.to_owned());
        }
        Ok(Self {
            inner: Arc::new(Inner {
                algorithm: inner.algorithm,
                publisher: inner.publisher.clone(),
                subscriber: inner.subscriber.clone(),
                publisher_jwks: inner.publisher_jwks.clone(),
                subscriber_jwks: inner.subscriber_jwks.clone(),
                validation: inner.validation.clone(),
                issuers,
                issuer_keys,
            }),
        })
    }

    /// True when some issuer is trusted for access tokens.
    pub fn trusts_issuers(&self) -> bool {
        !self.inner.issuers.is_empty()
    }

    /// The one algorithm tokens must be signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.algorithm
    }

    pub fn has_publisher_key(&self) -> bool {
        self.inner.publisher.is_some() || self.inner.publisher_jwks.is_some()
    }

    pub fn has_subscriber_key(&self) -> bool {
        self.inner.subscriber.is_some() || self.inner.subscriber_jwks.is_some()
    }

    /// Verify a publisher token: signature with the publisher key and the
    /// configured algorithm only, `exp`/`nbf` when present (no leeway), no
    /// `aud`/`iss` checks.
    pub fn verify_publisher(&self, token: &str) -> Result<Claims, AuthError> {
        match (&self.inner.publisher, &self.inner.publisher_jwks) {
            (None, Some(set)) => self.verify_with_set(set, token),
            (key, _) => self.verify(key.as_ref(), token),
        }
    }

    /// Verify a subscriber token, as [`Authorizer::verify_publisher`] but with
    /// the subscriber key.
    pub fn verify_subscriber(&self, token: &str) -> Result<Claims, AuthError> {
        match (&self.inner.subscriber, &self.inner.subscriber_jwks) {
            (None, Some(set)) => self.verify_with_set(set, token),
            (key, _) => self.verify(key.as_ref(), token),
        }
    }

    /// Verifies with the cached JWKS keys: the one named by the token's `kid`, or each key when
    /// the token names none. An unknown `kid` schedules a refetch (key rotation).
    fn verify_with_set(&self, set: &jwks::Jwks, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token.trim())
            .map_err(|e| AuthError::Invalid(format!("malformed token ({e})")))?;
        let keys = set.keys();
        let mut candidates = keys
            .iter()
            .filter(|key| header.kid.is_none() || key.kid == header.kid)
            .peekable();
        if candidates.peek().is_none() {
            set.request_refresh();
            return Err(AuthError::Invalid(match header.kid {
                Some(kid) => format!("unknown key id {kid:?} (the JWKS is being refetched)"),
                None => "no key in the JWKS verifies this token".to_owned(),
            }));
        }
        let mut last_error = AuthError::NoKey;
        for candidate in candidates {
            match self.verify(Some(&candidate.key), token) {
                Ok(claims) => return Ok(claims),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    fn verify(&self, key: Option<&DecodingKey>, token: &str) -> Result<Claims, AuthError> {
        let key = key.ok_or(AuthError::NoKey)?;
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let data = jsonwebtoken::decode::<RawClaims>(token, key, &self.inner.validation)
            .map_err(|e| self.map_jwt_error(e))?;
        data.claims.into_claims()
    }

    fn map_jwt_error(&self, e: jsonwebtoken::errors::Error) -> AuthError {
        let msg = match e.kind() {
            ErrorKind::ExpiredSignature => return AuthError::Expired,
            ErrorKind::ImmatureSignature => "not valid yet (nbf is in the future)".to_owned(),
            ErrorKind::InvalidSignature => "bad signature".to_owned(),
            ErrorKind::InvalidAlgorithm => format!(
                "wrong algorithm (only {} is accepted)",
                self.inner.algorithm
            ),
            ErrorKind::InvalidClaimFormat(claim) => format!("malformed `{claim}` claim"),
            ErrorKind::InvalidToken
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_) => format!("malformed token ({e})"),
            _ => e.to_string(),
        };
        AuthError::Invalid(msg)
    }
}

/// Build the decoding key for one role, reading a PEM file if needed.
fn load_key(role: KeyRole, alg: Algorithm, key: &str) -> Result<DecodingKey, KeyError> {
    if alg.is_hmac() {
        if key.is_empty() {
            return Err(KeyError::EmptySecret { role, alg });
        }
        return Ok(DecodingKey::from_secret(key.as_bytes()));
    }

    let trimmed = key.trim();
    if trimmed.is_empty() {
        return Err(KeyError::EmptyKey { role, alg });
    }
    let pem = if trimmed.starts_with("-----BEGIN") {
        // Keys passed through environment variables often carry literal "\n".
        if trimmed.contains('\n') {
            trimmed.to_owned()
        } else {
            trimmed.replace("\\n", "\n")
        }
    } else {
        std::fs::read_to_string(trimmed).map_err(|error| KeyError::ReadFile {
            role,
            path: trimmed.to_owned(),
            error,
        })?
    };

    let bad = |reason: String| KeyError::BadPem { role, alg, reason };
    if pem.contains("PRIVATE KEY-----") {
        return Err(bad(
            "this is a private key; configure the matching public key".to_owned(),
        ));
    }
    let parsed = match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => DecodingKey::from_rsa_pem(pem.as_bytes()),
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem.as_bytes()),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem.as_bytes()),
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            return Err(bad("not an asymmetric algorithm".to_owned()));
        }
    };
    let decoding = parsed.map_err(|e| bad(describe_pem_error(&e, alg)))?;

    // The EdDSA verifier slices the first 32 bytes: make sure they exist.
    if alg == Algorithm::EdDSA && decoding.try_get_as_bytes().map(<[u8]>::len).ok() != Some(32) {
        return Err(bad("not an Ed25519 public key".to_owned()));
    }
    // Build a verifier once so that e.g. a P-384 key configured for ES256 is
    // refused now rather than on every request.
    jsonwebtoken::crypto::verify("", b"", &decoding, alg.to_jwt())
        .map_err(|e| bad(describe_pem_error(&e, alg)))?;
    Ok(decoding)
}

fn describe_pem_error(e: &jsonwebtoken::errors::Error, alg: Algorithm) -> String {
    let family = match alg {
        Algorithm::ES256 => "EC P-256",
        Algorithm::ES384 => "EC P-384",
        Algorithm::EdDSA => "Ed25519",
        _ => "RSA",
    };
    match e.kind() {
        ErrorKind::InvalidKeyFormat
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_) => {
            format!("expected a PEM-encoded {family} public key")
        }
        _ => format!("expected a PEM-encoded {family} public key ({e})"),
    }
}

/// The registered and Mercure claims we read, before validation of their shape.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    mercure: Option<Value>,
    #[serde(default)]
    exp: Option<Value>,
    #[serde(default)]
    sub: Option<Value>,
    #[serde(default)]
    herald: Option<Value>,
}

impl RawClaims {
    fn into_claims(self) -> Result<Claims, AuthError> {
        // jsonwebtoken has already refused an `exp` that is not a number.
        let expires_at = self.exp.as_ref().and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        });
        let subject = match self.sub {
            Some(Value::String(subject)) => Some(subject),
            _ => None,
        };
        let admin = self
            .herald
            .as_ref()
            .and_then(|herald| herald.get("admin"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut mercure = match self.mercure {
            None | Some(Value::Null) => {
                return Ok(Claims {
                    expires_at,
                    subject,
                    admin,
                    ..Claims::default()
                });
            }
            Some(Value::Object(map)) => map,
            Some(_) => {
                return Err(AuthError::Invalid(
                    "the `mercure` claim is not an object".to_owned(),
                ));
            }
        };
        Ok(Claims {
            publish: selectors(mercure.remove("publish"), "publish")?,
            subscribe: selectors(mercure.remove("subscribe"), "subscribe")?,
            payload: mercure.remove("payload").filter(|v| !v.is_null()),
            expires_at,
            subject,
            admin,
            grants: None,
        })
    }
}

fn selectors(value: Option<Value>, name: &str) -> Result<Option<Vec<String>>, AuthError> {
    let invalid = || AuthError::Invalid(format!("`mercure.{name}` is not an array of strings"));
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(invalid()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(invalid()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
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
}
