//! Authentication, free of HTTP: bearer JWTs (HS256 secret, JWKS, PEM) and API keys into a
//! `Principal`, with the email-domain allow-list and the usage hash of the user.

pub mod api_keys;
pub mod jwks;
pub mod jwt;
pub mod keys;
mod token_cache;

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

pub use jwt::JwtVerifier;
pub use keys::{KeySetupError, KeySources};

use crate::config::{AuthConfig, Secret};
use crate::domain::ids::now_utc;
use crate::domain::{AuthMethod, Principal, Role};
use crate::store::Store;
use crate::tasks::Background;

/// Why a credential was refused. The reason is logged; the credential never is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials")]
    Missing,
    #[error("Authorization scheme is not Bearer")]
    WrongScheme,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token has the wrong issuer")]
    WrongIssuer,
    #[error("token has the wrong audience")]
    WrongAudience,
    #[error("token algorithm not accepted")]
    WrongAlgorithm,
    #[error("token signed by an unknown key")]
    UnknownKey,
    #[error("token signature invalid")]
    BadSignature,
    #[error("token claims invalid: {0}")]
    BadClaims(&'static str),
    #[error("token malformed")]
    Malformed,
    #[error("email domain not allowed")]
    DomainNotAllowed,
    #[error("unknown API key")]
    UnknownApiKey,
    #[error("API key revoked")]
    RevokedApiKey,
    #[error("credential store unavailable")]
    Unavailable,
}

impl AuthError {
    /// A fixed label for metrics (never the credential, never a message with data in it).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::WrongScheme => "wrong_scheme",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::WrongAlgorithm => "wrong_algorithm",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::BadClaims(_) => "bad_claims",
            Self::Malformed => "malformed",
            Self::DomainNotAllowed => "domain_not_allowed",
            Self::UnknownApiKey => "unknown_api_key",
            Self::RevokedApiKey => "revoked_api_key",
            Self::Unavailable => "unavailable",
        }
    }
}

/// A credential as presented.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// `Authorization: Bearer <jwt>`
    Jwt(&'a str),
    /// `Authorization: Bearer ck_...` or `X-Api-Key: ck_...`
    ApiKey(&'a str),
}

/// Distinct verified tokens remembered at once (see `token_cache`).
const TOKEN_CACHE_CAPACITY: usize = 10_000;

pub struct Authenticator {
    jwt: JwtVerifier,
    store: Arc<dyn Store>,
    keys: api_keys::KeyCache,
    tokens: token_cache::TokenCache,
    default_role: Role,
    allowed_domains: Vec<String>,
    pepper: Secret,
    background: Background,
}

impl Authenticator {
    pub fn new(
        config: &AuthConfig,
        store: Arc<dyn Store>,
        background: Background,
    ) -> Result<Self, KeySetupError> {
        Ok(Self {
            jwt: JwtVerifier::new(config, KeySources::new(config)?),
            store,
            keys: api_keys::KeyCache::new(Duration::from_secs(config.api_key_cache_secs)),
            tokens: token_cache::TokenCache::new(TOKEN_CACHE_CAPACITY),
            default_role: Role::parse(&config.default_role).unwrap_or(Role::Viewer),
            allowed_domains: config
                .allowed_email_domains
                .iter()
                .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
                .collect(),
            pepper: config.user_hash_pepper.clone(),
            background,
        })
    }

    /// Fetches the JWKS once and starts its background refresh (no-op without a JWKS).
    pub async fn start(&self) {
        if let Some(jwks) = self.jwt.keys().jwks() {
            let _ = jwks.fetch().await;
            self.background
                .spawn(jwks.clone().refresh_loop(self.background.shutdown_signal()));
        }
    }

    pub async fn authenticate(&self, credential: Credential<'_>) -> Result<Principal, AuthError> {
        match credential {
            Credential::Jwt(token) => self.authenticate_jwt(token, true).await,
            Credential::ApiKey(key) => self.authenticate_key(key, true).await,
        }
    }

    /// Authentication that does no I/O: signatures with keys already held, API keys
    /// already cached. Used for addresses that are being rate limited, so a flood cannot
    /// make us fetch or query, while callers with good credentials still get through.
    pub async fn authenticate_offline(
        &self,
        credential: Credential<'_>,
    ) -> Result<Principal, AuthError> {
        match credential {
            Credential::Jwt(token) => self.authenticate_jwt(token, false).await,
            Credential::ApiKey(key) => self.authenticate_key(key, false).await,
        }
    }

    async fn authenticate_jwt(&self, token: &str, may_fetch: bool) -> Result<Principal, AuthError> {
        // Read before verifying: a key set replaced meanwhile makes the entry stale at once.
        let generation = self.jwt.keys().generation();
        if let Some(principal) = self.tokens.get(token, generation) {
            return Ok(principal);
        }
        let claims = self.jwt.verify(token, may_fetch).await?;
        if !self.allowed_domains.is_empty() {
            // An unverified address proves nothing about its domain.
            if claims.email_verified == Some(false) {
                return Err(AuthError::DomainNotAllowed);
            }
            let domain = claims
                .email
                .as_deref()
                .and_then(|e| e.rsplit_once('@'))
                .map(|(_, d)| d);
            if !domain.is_some_and(|d| self.allowed_domains.iter().any(|a| a == d)) {
                return Err(AuthError::DomainNotAllowed);
            }
        }
        let role = claims
            .roles
            .iter()
            .copied()
            .max()
            .unwrap_or(self.default_role);
        let principal = Principal {
            user_hash: self.user_hash(claims.email.as_deref(), &claims.subject),
            user_id: claims.subject,
            email: claims.email,
            role,
            method: AuthMethod::Jwt,
        };
        self.tokens
            .insert(token, &principal, claims.valid_until, generation);
        Ok(principal)
    }

    async fn authenticate_key(&self, key: &str, may_query: bool) -> Result<Principal, AuthError> {
        let prefix = api_keys::prefix_of(key).ok_or(AuthError::UnknownApiKey)?;
        let hash = api_keys::hash(key);
        if let Some(verdict) = self.keys.get(&hash) {
            return verdict.ok_or(AuthError::RevokedApiKey);
        }
        if !may_query {
            return Err(AuthError::UnknownApiKey);
        }
        let candidates = self.store.api_keys_by_prefix(prefix).await.map_err(|e| {
            tracing::error!(error = %e, "api key lookup failed");
            AuthError::Unavailable
        })?;
        let found = candidates
            .into_iter()
            .find(|k| api_keys::hashes_match(&k.hash, &hash));
        // Unknown keys are not cached: random keys would crowd out the real ones. The
        // per-address limit bounds how often they reach the database.
        let Some(found) = found else {
            return Err(AuthError::UnknownApiKey);
        };
        if found.revoked_at.is_some() {
            self.keys.put(hash, None);
            return Err(AuthError::RevokedApiKey);
        }
        let principal = Principal {
            user_id: found.owner.clone(),
            email: None,
            role: found.role,
            method: AuthMethod::ApiKey,
            user_hash: found.user_hash.clone(),
        };
        self.keys.put(hash, Some(principal.clone()));
        // At most once per cache period per instance, and off the request path.
        let store = self.store.clone();
        self.background.spawn(
            async move {
                if let Err(e) = store.touch_api_key(found.id, now_utc()).await {
                    tracing::warn!(error = %e, "could not record api key use");
                }
            }
            .in_current_span(),
        );
        Ok(principal)
    }

    /// Drops a revoked key from this instance's cache at once.
    pub fn forget_key(&self, hash: &str) {
        self.keys.forget(hash);
    }

    /// SHA-256(pepper ‖ lowercase email), or of the user id when there is no email.
    pub fn user_hash(&self, email: Option<&str>, user_id: &str) -> String {
        crate::domain::principal::user_hash(self.pepper.expose(), email, user_id)
    }
}
