//! Recently authenticated API keys, so that a burst of requests with one key
//! costs one database read instead of one per request.
//!
//! The trade-off is revocation: a key revoked through this process stops
//! working at once (revoking clears the cache), but another API process
//! keeps accepting it until its cached entry expires — at most `ttl`.
//! Failed authentications are never cached: a new key works at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use segments_store::Principal;
use sha2::{Digest, Sha256};

/// Entries kept at most; beyond it, expired entries are dropped, and if none
/// had expired, everything (the next requests simply read the database).
const CAPACITY: usize = 10_000;

/// Principals by the SHA-256 digest of their secret (the secret itself is
/// not kept), each with the instant it stops being trusted.
#[derive(Debug)]
pub struct AuthCache {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

impl AuthCache {
    /// A zero `ttl` turns caching off.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn digest(secret: &str) -> [u8; 32] {
        Sha256::digest(secret.as_bytes()).into()
    }

    /// The principal `secret` authenticated as, if that was less than `ttl` ago.
    pub fn get(&self, secret: &str) -> Option<Principal> {
        if self.ttl.is_zero() {
            return None;
        }
        let key = Self::digest(secret);
        let entries = self.entries.lock().ok()?;
        entries
            .get(&key)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(principal, _)| *principal)
    }

    pub fn insert(&self, secret: &str, principal: Principal) {
        if self.ttl.is_zero() {
            return;
        }
        let key = Self::digest(secret);
        let now = Instant::now();
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CAPACITY {
                entries.retain(|_, (_, until)| now < *until);
                if entries.len() >= CAPACITY {
                    entries.clear();
                }
            }
            entries.insert(key, (principal, now + self.ttl));
        }
    }

    /// Forgets every entry: after a revocation, nothing this process cached
    /// may outlive it.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use segments_domain::{ApiKeyId, WorkspaceId};

    fn principal(n: i64) -> Principal {
        Principal {
            workspace_id: WorkspaceId(n),
            key_id: ApiKeyId(n),
        }
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = AuthCache::new(Duration::from_millis(50));
        cache.insert("secret", principal(1));
        assert_eq!(cache.get("secret"), Some(principal(1)));
        assert_eq!(cache.get("other"), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get("secret"), None);
    }

    #[test]
    fn a_zero_ttl_caches_nothing_and_clear_forgets_everything() {
        let off = AuthCache::new(Duration::ZERO);
        off.insert("secret", principal(1));
        assert_eq!(off.get("secret"), None);
        let on = AuthCache::new(Duration::from_secs(60));
        on.insert("a", principal(1));
        on.insert("b", principal(2));
        on.clear();
        assert_eq!(on.get("a"), None);
        assert_eq!(on.get("b"), None);
    }

    #[test]
    fn a_full_cache_makes_room() {
        let cache = AuthCache::new(Duration::from_secs(60));
        for i in 0..CAPACITY {
            cache.insert(&format!("k{i}"), principal(1));
        }
        cache.insert("newest", principal(2));
        assert_eq!(cache.get("newest"), Some(principal(2)));
        assert!(cache.entries.lock().map(|e| e.len()).unwrap_or(0) <= CAPACITY);
    }
}
