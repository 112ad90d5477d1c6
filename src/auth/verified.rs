//! The cache of publisher tokens already verified: a token that verified once is not verified
//! again (signature, base64, JSON) on every publish, until its `exp`.
//!
//! It owns only the memo: keyed by the token's exact text, it holds the [`Claims`] that
//! verification produced, shared ([`Arc`]): a hit costs a reference count, not a copy of the
//! claims (their selector lists, payload and subject). Only successes are kept, so only a holder
//! of the key can put anything in it, and each [`super::Authorizer`] has its own (a new key
//! means a new, empty cache; a key set fetched from a JWKS is never cached). It is bounded
//! twice: at most [`CAPACITY`] entries, and tokens longer than [`MAX_TOKEN_LEN`] are not kept,
//! so an attacker holding valid tokens cannot grow it beyond about
//! `CAPACITY × 3 × MAX_TOKEN_LEN` bytes (claims come from the token). When it is full, expired
//! entries go first, then an arbitrary one.
//!
//! An entry never outlives its token: a lookup at or after `exp` drops the entry and answers
//! [`AuthError::Expired`], as verification itself would.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{AuthError, Claims};

/// Tokens kept at most.
pub(crate) const CAPACITY: usize = 1024;
/// Tokens longer than this (bytes) are verified every time, never kept.
pub(crate) const MAX_TOKEN_LEN: usize = 4096;

/// Verified tokens and their claims, until their `exp`.
#[derive(Default)]
pub(crate) struct VerifiedTokens {
    entries: Mutex<HashMap<Box<str>, Arc<Claims>>>,
}

impl fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedTokens")
            .field("len", &self.len())
            .finish()
    }
}

/// Is a token whose `exp` is `expires_at` still valid at `now` (Unix seconds)? A token is
/// served from the cache only strictly before its `exp`.
fn live(expires_at: Option<u64>, now: u64) -> bool {
    expires_at.is_none_or(|exp| now < exp)
}

impl VerifiedTokens {
    /// The claims of `token` if it verified before and has not expired by `now` (Unix seconds);
    /// `Some(Err(Expired))` (and the entry dropped) once it has; `None` when it is not kept.
    pub(crate) fn get(&self, token: &str, now: u64) -> Option<Result<Arc<Claims>, AuthError>> {
        let mut entries = self.entries.lock();
        let claims = entries.get(token)?;
        if live(claims.expires_at, now) {
            return Some(Ok(Arc::clone(claims)));
        }
        entries.remove(token);
        Some(Err(AuthError::Expired))
    }

    /// Keeps `claims`, just verified from `token`, unless the token is too long or already
    /// expired at `now`.
    pub(crate) fn insert(&self, token: &str, claims: &Claims, now: u64) {
        if token.len() > MAX_TOKEN_LEN || !live(claims.expires_at, now) {
            return;
        }
        let mut entries = self.entries.lock();
        if entries.len() >= CAPACITY && !entries.contains_key(token) {
            entries.retain(|_, kept| live(kept.expires_at, now));
            if entries.len() >= CAPACITY
                && let Some(victim) = entries.keys().next().cloned()
            {
                entries.remove(&victim);
            }
        }
        entries.insert(token.into(), Arc::new(claims.clone()));
    }

    /// Tokens kept.
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn claims(expires_at: Option<u64>) -> Claims {
        Claims {
            publish: Some(vec!["t".into()]),
            expires_at,
            ..Claims::default()
        }
    }

    #[test]
    fn an_entry_is_served_until_its_exp_and_never_after() {
        let cache = VerifiedTokens::default();
        cache.insert("a.b.c", &claims(Some(100)), 50);
        let hit = cache.get("a.b.c", 99).unwrap().unwrap();
        assert_eq!(hit.publish, Some(vec!["t".to_owned()]));
        assert!(matches!(
            cache.get("a.b.c", 100),
            Some(Err(AuthError::Expired))
        ));
        assert_eq!(cache.len(), 0, "an expired entry is dropped");
        assert!(cache.get("a.b.c", 99).is_none());
    }

    #[test]
    fn hits_share_the_kept_claims_instead_of_copying_them() {
        let cache = VerifiedTokens::default();
        cache.insert("a.b.c", &claims(None), 0);
        let first = cache.get("a.b.c", 1).unwrap().unwrap();
        let second = cache.get("a.b.c", 2).unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(first.publish, Some(vec!["t".to_owned()]));
    }

    #[test]
    fn expired_and_oversized_tokens_are_not_kept() {
        let cache = VerifiedTokens::default();
        cache.insert("old", &claims(Some(10)), 10);
        let long = "x".repeat(MAX_TOKEN_LEN + 1);
        cache.insert(&long, &claims(None), 0);
        assert_eq!(cache.len(), 0);
        assert!(cache.get(&long, 0).is_none());
    }

    #[test]
    fn the_bound_holds_however_many_tokens_arrive() {
        let cache = VerifiedTokens::default();
        for n in 0..CAPACITY * 3 {
            cache.insert(&format!("token-{n}"), &claims(None), 0);
            assert!(cache.len() <= CAPACITY);
        }
        assert_eq!(cache.len(), CAPACITY);
        // The newest is always kept.
        let newest = format!("token-{}", CAPACITY * 3 - 1);
        assert!(cache.get(&newest, 0).is_some());
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first() {
        let cache = VerifiedTokens::default();
        cache.insert("lasting", &claims(None), 0);
        for n in 1..CAPACITY {
            cache.insert(&format!("brief-{n}"), &claims(Some(5)), 0);
        }
        assert_eq!(cache.len(), CAPACITY);
        cache.insert("new", &claims(None), 10);
        assert_eq!(cache.len(), 2);
        assert!(cache.get("lasting", 10).is_some());
        assert!(cache.get("new", 10).is_some());
    }
}
