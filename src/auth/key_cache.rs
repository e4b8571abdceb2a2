//! A short-lived, in-process cache of API key lookups, so authenticating a
//! request costs no database round trip.
//!
//! A key revoked in this process is dropped from the cache at once. Changes
//! made by another replica (or directly in the database) are seen within
//! [`TTL`]. Unknown keys are never cached, so guessing cannot fill it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::auth::policy::KeyAuth;

/// How long a cached lookup is trusted.
pub const TTL: Duration = Duration::from_secs(5);
/// The most keys cached; past it the cache starts over.
const CAPACITY: usize = 100_000;

/// Key lookups by key hash, each with when it was read.
#[derive(Debug, Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<String, (KeyAuth, Instant)>>,
}

impl KeyCache {
    /// The cached lookup of `key_hash`, if it is fresh.
    pub fn get(&self, key_hash: &str) -> Option<KeyAuth> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key_hash)
            .filter(|(_, read_at)| read_at.elapsed() < TTL)
            .map(|(key, _)| key.clone())
    }

    /// Remembers a lookup just read from the database.
    pub fn insert(&self, key_hash: String, key: KeyAuth) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(key_hash, (key, Instant::now()));
    }

    /// Forgets every cached key (after a change that may touch many users).
    pub fn forget_all(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Forgets every cached key of `user_id` (after a revocation, a block or a deletion).
    pub fn forget_user(&self, user_id: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (key, _)| key.standing.user_id != user_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::keys::KeyStanding;

    fn key(id: &str, user_id: &str) -> KeyAuth {
        KeyAuth {
            standing: KeyStanding {
                id: id.into(),
                user_id: user_id.into(),
                key_prefix: "llm_sk_abcdef".into(),
                revoked_at: None,
                expires_at: None,
                user_blocked_at: None,
                user_deleted_at: None,
            },
            policy: Default::default(),
        }
    }

    #[test]
    fn caches_until_forgotten() {
        let cache = KeyCache::default();
        assert!(cache.get("h1").is_none());
        cache.insert("h1".into(), key("k1", "u1"));
        cache.insert("h2".into(), key("k2", "u2"));
        assert_eq!(cache.get("h1").unwrap().standing.id, "k1");
        cache.forget_user("u1");
        assert!(cache.get("h1").is_none());
        assert_eq!(cache.get("h2").unwrap().standing.id, "k2");
    }

    #[test]
    fn stale_entries_are_not_served() {
        let cache = KeyCache::default();
        cache.insert("h1".into(), key("k1", "u1"));
        let stale = Instant::now().checked_sub(TTL + Duration::from_millis(1));
        if let Some(stale) = stale {
            cache.entries.lock().unwrap().get_mut("h1").unwrap().1 = stale;
            assert!(cache.get("h1").is_none());
        }
    }
}
