//! Idempotency-Key for `/v1/chat/send`: a repeat with the same key and body within 24 hours
//! gets the stored answer (no second provider call, no second usage row); the same key with
//! another body is refused. Keys are per user.

use sha2::{Digest, Sha256};
use time::Duration;

use crate::domain::ids::now_utc;
use crate::store::{IdempotencyClaim, Store, StoreError};

/// How long a key and its answer are kept.
pub const LIFETIME: Duration = Duration::hours(24);
pub const MAX_KEY_LEN: usize = 255;

#[derive(Debug)]
pub enum Outcome {
    /// Run the request, then `complete` (or `release` on failure).
    Proceed,
    /// The stored answer of the first request.
    Replay(String),
    /// The key was used with another body.
    Reused,
    /// The first request with this key is still running.
    InProgress,
}

/// A key is 1 to 255 visible ASCII characters.
pub fn valid_key(key: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The hash of a JSON body, independent of key order and spacing.
pub fn body_hash(body: &serde_json::Value) -> String {
    let mut canonical = String::new();
    render(body, &mut canonical);
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// JSON with object keys sorted at every level (maps may keep insertion order).
fn render(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                render(&map[k], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                render(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Claims a key. A claim still unanswered after `pending_limit` (longer than any generation
/// may run) belonged to a request that died, and is taken over.
pub async fn begin(
    store: &dyn Store,
    owner: &str,
    key: &str,
    hash: &str,
    pending_limit: Duration,
) -> Result<Outcome, StoreError> {
    let now = now_utc();
    Ok(
        match store
            .claim_idempotency_key(owner, key, hash, now, now - LIFETIME, now - pending_limit)
            .await?
        {
            IdempotencyClaim::Claimed => Outcome::Proceed,
            IdempotencyClaim::Existing { body_hash, .. } if body_hash != hash => Outcome::Reused,
            IdempotencyClaim::Existing {
                response: Some(r), ..
            } => Outcome::Replay(r),
            IdempotencyClaim::Existing { response: None, .. } => Outcome::InProgress,
        },
    )
}

pub async fn complete(store: &dyn Store, owner: &str, key: &str, response: &str) {
    if let Err(e) = store.complete_idempotency_key(owner, key, response).await {
        tracing::warn!(error = %e, "could not store an idempotent answer");
    }
}

pub async fn release(store: &dyn Store, owner: &str, key: &str) {
    if let Err(e) = store.release_idempotency_key(owner, key).await {
        tracing::warn!(error = %e, "could not release an idempotency key");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_order_does_not_matter() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2], "x": null}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a": {"x": null, "y": [1, 2]}, "b": 1}"#).unwrap();
        let c: serde_json::Value =
            serde_json::from_str(r#"{"a": {"x": null, "y": [2, 1]}, "b": 1}"#).unwrap();
        assert_eq!(super::body_hash(&a), super::body_hash(&b));
        assert_ne!(super::body_hash(&a), super::body_hash(&c));
    }
}
