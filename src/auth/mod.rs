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

pub(crate) mod access_token;
mod extract;
pub(crate) mod jwks;
mod mint;
#[cfg(test)]
mod test_keys;
mod verified;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

pub(crate) use access_token::{Grants, MatchType, TopicGrant, is_access_token};
pub use extract::extract_token;
pub(crate) use extract::{ACCESS_COOKIE, TokenSource, extract_token_with};
pub(crate) use mint::{MintAccessClaims, mint_access_token, random_secret};
pub use mint::{MintClaims, mint_admin, mint_hmac};

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
    pub(crate) fn as_str(self) -> &'static str {
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
    pub(crate) fn is_hmac(self) -> bool {
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
    /// Publisher tokens verified with `publisher` (the static key), until their `exp`.
    verified_publishers: verified::VerifiedTokens,
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
                verified_publishers: verified::VerifiedTokens::default(),
            }),
        })
    }

    /// Adds JWKS key sets: a role with no static key verifies with its set's cached keys.
    pub(crate) fn with_jwks(
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
                verified_publishers: verified::VerifiedTokens::default(),
            }),
        }
    }

    /// Trusts these issuers for Mercure 1.0 access tokens (`--jwt-issuer`).
    pub(crate) fn with_issuers(self, issuers: Vec<String>) -> Self {
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
                verified_publishers: verified::VerifiedTokens::default(),
            }),
        }
    }

    /// Binds `issuer` to its own key: its access tokens are verified with this key and
    /// algorithm only, and it is trusted.
    pub(crate) fn with_issuer_key(
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
                verified_publishers: verified::VerifiedTokens::default(),
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

    pub(crate) fn has_publisher_key(&self) -> bool {
        self.inner.publisher.is_some() || self.inner.publisher_jwks.is_some()
    }

    pub fn has_subscriber_key(&self) -> bool {
        self.inner.subscriber.is_some() || self.inner.subscriber_jwks.is_some()
    }

    /// Verify a publisher token: signature with the publisher key and the
    /// configured algorithm only, `exp`/`nbf` when present (no leeway), no
    /// `aud`/`iss` checks.
    ///
    /// With a static key, a token that verified is kept ([`verified`]) and answered from memory
    /// until its `exp`: a publisher that sends the same token on every publish pays for one
    /// verification. Refused tokens, and tokens verified with a JWKS, are verified every time.
    pub fn verify_publisher(&self, token: &str) -> Result<Claims, AuthError> {
        match (&self.inner.publisher, &self.inner.publisher_jwks) {
            (None, Some(set)) => self.verify_with_set(set, token),
            (None, None) => Err(AuthError::NoKey),
            (Some(key), _) => {
                let token = token.trim();
                let cache = &self.inner.verified_publishers;
                let now = crate::update::now_ms() / 1000;
                if let Some(known) = cache.get(token, now) {
                    return known.map(|claims| Claims::clone(&claims));
                }
                let claims = self.verify(Some(key), token)?;
                // A Mercure 1.0 access token is never kept, so a kept token is a 0.x one
                // ([`Authorizer::known_publisher`]).
                if !is_access_token(token) {
                    cache.insert(token, &claims, now);
                }
                Ok(claims)
            }
        }
    }

    /// The claims of a Mercure 0.x publisher token that [`Authorizer::verify_publisher`]
    /// verified before and kept (never an access token), or `Expired` once its `exp` passed;
    /// `None` when it is not kept. Lets the publish path skip telling token kinds apart.
    pub(crate) fn known_publisher(&self, token: &str) -> Option<Result<Arc<Claims>, AuthError>> {
        self.inner.publisher.as_ref()?;
        let now = crate::update::now_ms() / 1000;
        self.inner.verified_publishers.get(token.trim(), now)
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
mod tests;
