//! Tokens already verified, so a client that sends the same bearer token on every request
//! pays for its signature check and claim parsing once, not each time.
//!
//! An entry lives until the token's `exp` (plus the configured leeway, as verification
//! allows), never longer than [`MAX_AGE`], and only while the key set it was verified
//! against is current: a key withdrawn from the identity provider's JWKS stops working
//! with the fetch that sees it gone. Only successes are cached: a bad token
//! is verified (and refused) every time, and cannot crowd the cache.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::domain::Principal;

/// The longest a verified token is trusted without checking its signature again.
pub const MAX_AGE: Duration = Duration::from_secs(60);

pub struct TokenCache {
    entries: RwLock<HashMap<Box<str>, Entry>>,
    capacity: usize,
}

struct Entry {
    principal: Principal,
    /// Unix seconds after which the entry is stale.
    valid_until: u64,
    /// The key set's generation when the token was verified.
    generation: u64,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            capacity,
        }
    }

    pub fn get(&self, token: &str, generation: u64) -> Option<Principal> {
        let now = unix_now();
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(token)
            .filter(|e| now <= e.valid_until && e.generation == generation)
            .map(|e| e.principal.clone())
    }

    /// Remembers a verified token until `expires_at` (its `exp` plus leeway, Unix seconds).
    pub fn insert(&self, token: &str, principal: &Principal, expires_at: u64, generation: u64) {
        let now = unix_now();
        let valid_until = expires_at.min(now + MAX_AGE.as_secs());
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, e| now <= e.valid_until);
            // Still full of live tokens: start over rather than grow. A dropped token is
            // only verified again.
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(
            token.into(),
            Entry {
                principal: principal.clone(),
                valid_until,
                generation,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.read().unwrap().len()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AuthMethod, Role};

    fn principal(id: &str) -> Principal {
        Principal {
            user_id: id.into(),
            email: None,
            role: Role::User,
            method: AuthMethod::Jwt,
            user_hash: "h".into(),
        }
    }

    #[test]
    fn expired_entries_are_not_returned() {
        let cache = TokenCache::new(10);
        let now = unix_now();
        cache.insert("fresh", &principal("a"), now + 100, 1);
        cache.insert("stale", &principal("b"), now - 1, 1);
        assert_eq!(cache.get("fresh", 1).unwrap().user_id, "a");
        assert!(cache.get("stale", 1).is_none());
        assert!(cache.get("unknown", 1).is_none());
        // The key set changed since: verify again.
        assert!(cache.get("fresh", 2).is_none());
    }

    #[test]
    fn stays_within_its_capacity() {
        let cache = TokenCache::new(100);
        let later = unix_now() + 1000;
        for i in 0..1000 {
            cache.insert(&format!("t{i}"), &principal("a"), later, 0);
            assert!(cache.len() <= 100);
        }
        assert!(cache.get("t999", 0).is_some());
    }
}
