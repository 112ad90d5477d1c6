//! Keys from a JWKS URL (`--jwks-url`): fetched at start-up, cached, refreshed on a schedule and
//! when a token names a key id the cache does not know (at most once per
//! [`MIN_REFETCH`]), so key rotation at the identity provider needs no restart.
//!
//! Verification never waits on the network: it uses the cached keys; an unknown key id answers
//! "unknown key" now and schedules a refetch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

/// How often keys are refetched without being asked.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(300);
/// The least time between two fetches.
pub(crate) const MIN_REFETCH: Duration = Duration::from_secs(5);
/// One fetch gives up after this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A JWKS document larger than this is refused.
const MAX_DOCUMENT: usize = 1024 * 1024;

/// One key of the set.
pub(crate) struct CachedKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
}

/// The cached key set of one URL.
pub(crate) struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: RwLock<Arc<Vec<CachedKey>>>,
    last_fetch: Mutex<Option<Instant>>,
    wake: Notify,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// A cache for `url`, empty until the first fetch.
    pub(crate) fn new(url: String) -> Result<Jwks, String> {
        // reqwest is built without a TLS crypto provider of its own: use ring, once per process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build an HTTP client for {url}: {e}"))?;
        Ok(Jwks {
            url,
            client,
            keys: RwLock::new(Arc::new(Vec::new())),
            last_fetch: Mutex::new(None),
            wake: Notify::new(),
        })
    }

    /// The current keys.
    pub(crate) fn keys(&self) -> Arc<Vec<CachedKey>> {
        Arc::clone(&self.keys.read())
    }

    /// Asks the refresher for a fetch (a token named an unknown key id).
    pub(crate) fn request_refresh(&self) {
        self.wake.notify_one();
    }

    /// Fetches the set now; returns the number of usable keys.
    pub(crate) async fn fetch(&self) -> Result<usize, String> {
        *self.last_fetch.lock() = Some(Instant::now());
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| format!("cannot fetch {}: {e}", self.url))?;
        if !response.status().is_success() {
            return Err(format!("{} answered {}", self.url, response.status()));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("cannot read {}: {e}", self.url))?;
        if body.len() > MAX_DOCUMENT {
            return Err(format!("{} is larger than {MAX_DOCUMENT} bytes", self.url));
        }
        let set: JwkSet = serde_json::from_slice(&body)
            .map_err(|e| format!("{} is not a JWK set: {e}", self.url))?;
        let keys: Vec<CachedKey> = set
            .keys
            .iter()
            .filter_map(|jwk| {
                DecodingKey::from_jwk(jwk).ok().map(|key| CachedKey {
                    kid: jwk.common.key_id.clone(),
                    key,
                })
            })
            .collect();
        let count = keys.len();
        *self.keys.write() = Arc::new(keys);
        Ok(count)
    }

    /// Keeps the cache fresh, after a first [`Jwks::fetch`]: every [`REFRESH_EVERY`], and when
    /// asked (not more often than [`MIN_REFETCH`]). Runs until dropped: a background task
    /// ([`crate::shutdown::Tasks::spawn`]).
    pub(crate) async fn keep_fresh(self: Arc<Self>) {
        let jwks = self;
        loop {
            let _ = tokio::time::timeout(REFRESH_EVERY, jwks.wake.notified()).await;
            let since = jwks.last_fetch.lock().map(|at| at.elapsed());
            if let Some(wait) = since.and_then(|since| MIN_REFETCH.checked_sub(since)) {
                tokio::time::sleep(wait).await;
            }
            match jwks.fetch().await {
                Ok(count) => tracing::debug!(url = %jwks.url, count, "JWKS refreshed"),
                Err(error) => {
                    tracing::warn!(%error, "JWKS refresh failed; keeping the old keys");
                }
            }
        }
    }
}
