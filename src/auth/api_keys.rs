//! API keys: `ck_` + 256 random bits (base64url). Only the SHA-256 is stored; a short prefix
//! is kept in clear to find the row and to show in lists. Verified keys are cached briefly so
//! a warm key costs no database round trip.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use crate::domain::Principal;

pub const KEY_PREFIX: &str = "ck_";
/// `ck_` plus 9 characters: enough to find one row, far too little to guess the key.
pub const DISPLAY_PREFIX_LEN: usize = 12;
const RANDOM_BYTES: usize = 32;
/// The encoded length of a whole key.
const KEY_LEN: usize = 3 + 43;
/// Bound on cached verdicts; past it expired entries go, then everything.
const CACHE_CAP: usize = 10_000;

/// A new key: the secret (shown once), its display prefix and its hash.
pub struct GeneratedKey {
    pub secret: String,
    pub prefix: String,
    pub hash: String,
}

pub fn generate() -> Result<GeneratedKey, getrandom::Error> {
    let mut bytes = [0u8; RANDOM_BYTES];
    getrandom::fill(&mut bytes)?;
    let secret = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    Ok(GeneratedKey {
        prefix: secret[..DISPLAY_PREFIX_LEN].to_owned(),
        hash: hash(&secret),
        secret,
    })
}

/// Hex SHA-256 of a key. A fast hash is right here: the key has 256 bits of entropy.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The display prefix of a well-formed key, or None.
pub fn prefix_of(secret: &str) -> Option<&str> {
    let well_formed = secret.len() == KEY_LEN
        && secret.starts_with(KEY_PREFIX)
        && secret[3..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| &secret[..DISPLAY_PREFIX_LEN])
}

/// Constant-time comparison of two hex hashes.
pub fn hashes_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Verdicts by key hash, each good for the cache period: a principal, or "revoked".
pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Option<Principal>, Instant)>>,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Some(verdict) when a fresh one is cached.
    pub fn get(&self, hash: &str) -> Option<Option<Principal>> {
        let entries = self.entries.lock().ok()?;
        let (verdict, at) = entries.get(hash)?;
        (at.elapsed() < self.ttl).then(|| verdict.clone())
    }

    pub fn put(&self, hash: String, verdict: Option<Principal>) {
        if self.ttl.is_zero() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= CACHE_CAP {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= CACHE_CAP {
                entries.clear();
            }
        }
        entries.insert(hash, (verdict, Instant::now()));
    }

    /// Forgets a key at once (revocation on this instance).
    pub fn forget(&self, hash: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(hash);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a.secret, b.secret);
        assert_eq!(prefix_of(&a.secret), Some(a.prefix.as_str()));
        assert!(hashes_match(&hash(&a.secret), &a.hash));
        assert!(!hashes_match(&a.hash, &b.hash));
        assert_eq!(prefix_of("ck_short"), None);
        assert_eq!(prefix_of(&a.secret.replace("ck_", "xx_")), None);
    }
}
