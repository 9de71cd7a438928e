//! A JWKS kept warm: fetched at start-up and in the background, refetched once when a token
//! names an unknown key id (never more often than the configured floor, so a stream of
//! made-up key ids cannot make us hammer the identity provider), and kept when the
//! endpoint is down.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::AuthError;
use crate::config::AuthConfig;

/// Bound on a JWKS document: identity providers publish a handful of keys.
const MAX_JWKS_BYTES: usize = 256 * 1024;

struct Key {
    key: DecodingKey,
    /// The `alg` the JWK declares, if any; a token must then use exactly it.
    alg: Option<Algorithm>,
}

#[derive(Clone)]
pub struct Jwks {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    client: reqwest::Client,
    accepted: Vec<Algorithm>,
    refresh: Duration,
    min_refetch: Duration,
    keys: RwLock<HashMap<String, Arc<Key>>>,
    /// Bumped whenever the key set is replaced, so tokens verified with an older set are
    /// verified again (see `token_cache`).
    generation: AtomicU64,
    /// When the last fetch caused by an unknown key id began: the floor between such
    /// fetches is measured from it (scheduled refreshes do not count against it).
    last_on_demand: Mutex<Option<Instant>>,
    /// Serializes fetches, so concurrent unknown-kid tokens cause one request.
    fetching: tokio::sync::Mutex<()>,
}

impl Jwks {
    pub fn new(config: &AuthConfig) -> Result<Self, String> {
        crate::tls::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let accepted = config
            .jwks_algorithms
            .iter()
            .filter_map(|a| Algorithm::from_str(a).ok())
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                url: config.jwks_url.clone(),
                client,
                accepted,
                refresh: Duration::from_secs(config.jwks_refresh_secs),
                min_refetch: Duration::from_secs(config.jwks_min_refetch_secs),
                keys: RwLock::new(HashMap::new()),
                generation: AtomicU64::new(0),
                last_on_demand: Mutex::new(None),
                fetching: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Changes whenever the key set is replaced.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.inner.accepted.contains(&alg)
    }

    /// The key for `kid` (or the only key, when the token names none). An unknown kid
    /// triggers one refetch if the floor allows it and `may_fetch` is set.
    pub async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        may_fetch: bool,
    ) -> Result<DecodingKey, AuthError> {
        if let Some(found) = self.lookup(kid) {
            return check_alg(&found, alg);
        }
        if may_fetch {
            // Look again whatever the fetch did: a concurrent request may have fetched the
            // new keys while this one waited for its turn.
            self.fetch_if_allowed().await;
            if let Some(found) = self.lookup(kid) {
                return check_alg(&found, alg);
            }
        }
        Err(AuthError::UnknownKey)
    }

    fn lookup(&self, kid: Option<&str>) -> Option<Arc<Key>> {
        let keys = self.inner.keys.read().ok()?;
        match kid {
            Some(kid) => keys.get(kid).cloned(),
            None if keys.len() == 1 => keys.values().next().cloned(),
            None => None,
        }
    }

    /// Fetches unless the last on-demand fetch began less than the floor ago. True when it
    /// fetched.
    async fn fetch_if_allowed(&self) -> bool {
        let _one_at_a_time = self.inner.fetching.lock().await;
        {
            let Ok(mut last) = self.inner.last_on_demand.lock() else {
                return false;
            };
            if last.is_some_and(|t| t.elapsed() < self.inner.min_refetch) {
                return false;
            }
            *last = Some(Instant::now());
        }
        self.fetch().await.is_ok()
    }

    /// Fetches and replaces the key set; on failure the cached keys stay.
    pub async fn fetch(&self) -> Result<usize, String> {
        let result = self.download().await;
        match &result {
            Ok(n) => tracing::info!(keys = n, "jwks: fetched"),
            Err(e) => tracing::warn!(error = %e, "jwks: fetch failed; keeping the cached keys"),
        }
        result
    }

    async fn download(&self) -> Result<usize, String> {
        let response = self
            .inner
            .client
            .get(&self.inner.url)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n as usize > MAX_JWKS_BYTES)
        {
            return Err("document too large".into());
        }
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        if bytes.len() > MAX_JWKS_BYTES {
            return Err("document too large".into());
        }
        let set: JwkSet = serde_json::from_slice(&bytes).map_err(|e| format!("not a JWKS: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            match to_key(jwk) {
                Some((kid, key)) => {
                    keys.insert(kid, Arc::new(key));
                }
                None => tracing::debug!("jwks: skipping a key without kid or of an unusable type"),
            }
        }
        let n = keys.len();
        if let Ok(mut current) = self.inner.keys.write() {
            *current = keys;
        }
        self.inner.generation.fetch_add(1, Ordering::Release);
        Ok(n)
    }

    /// Refreshes every `jwks_refresh_secs` until shutdown.
    pub async fn refresh_loop(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.inner.refresh) => {
                    let _ = self.fetch().await;
                }
            }
        }
    }
}

fn to_key(jwk: &Jwk) -> Option<(String, Key)> {
    let kid = jwk.common.key_id.clone()?;
    let key = DecodingKey::from_jwk(jwk).ok()?;
    if key.family() == jsonwebtoken::AlgorithmFamily::Hmac {
        // A symmetric key published in a JWKS would let anyone who reads it sign tokens.
        return None;
    }
    let alg = jwk.common.key_algorithm.and_then(key_algorithm);
    Some((kid, Key { key, alg }))
}

fn key_algorithm(k: KeyAlgorithm) -> Option<Algorithm> {
    Algorithm::from_str(&format!("{k:?}")).ok()
}

fn check_alg(found: &Key, alg: Algorithm) -> Result<DecodingKey, AuthError> {
    match found.alg {
        Some(declared) if declared != alg => Err(AuthError::WrongAlgorithm),
        _ if found.key.family() != alg.family() => Err(AuthError::WrongAlgorithm),
        _ => Ok(found.key.clone()),
    }
}
