//! The API-key service: create (role at most the caller's, secret shown once), list and
//! revoke, owner-scoped with admin override. Creation and revocation are audit events.

use uuid::Uuid;

use crate::auth::{Authenticator, api_keys};
use crate::domain::ids::now_utc;
use crate::domain::{ApiKey, AuthMethod, Principal, Role, new_id};
use crate::store::{Store, StoreError};

pub const MAX_NAME_CHARS: usize = 100;
pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("api key not found")]
    NotFound,
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("no randomness: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct CreatedKey {
    pub key: ApiKey,
    /// The whole key: returned once, never stored.
    pub secret: String,
}

pub async fn create(
    store: &dyn Store,
    principal: &Principal,
    name: &str,
    role: Option<Role>,
) -> Result<CreatedKey, ApiKeyError> {
    require_token(principal)?;
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ApiKeyError::Invalid {
            field: "name",
            problem: format!("1 to {MAX_NAME_CHARS} printable characters"),
        });
    }
    let role = role.unwrap_or(principal.role);
    if role > principal.role {
        return Err(ApiKeyError::Forbidden(
            "A key cannot have a higher role than its creator.",
        ));
    }
    let generated = api_keys::generate().map_err(|e| ApiKeyError::Random(e.to_string()))?;
    let key = ApiKey {
        id: new_id(),
        owner: principal.user_id.clone(),
        user_hash: principal.user_hash.clone(),
        name: name.to_owned(),
        prefix: generated.prefix,
        hash: generated.hash,
        role,
        created_at: now_utc(),
        last_used_at: None,
        revoked_at: None,
    };
    store.insert_api_key(&key).await?;
    tracing::info!(target: "colloquy::audit", event = "api_key_created", key_id = %key.id, prefix = %key.prefix, role = role.as_str(), by = %principal.user_hash);
    Ok(CreatedKey {
        key,
        secret: generated.secret,
    })
}

/// Keys are managed with a token, never with a key: a leaked key must not be able to mint a
/// sibling that outlives its own revocation.
fn require_token(principal: &Principal) -> Result<(), ApiKeyError> {
    if principal.method == AuthMethod::ApiKey {
        return Err(ApiKeyError::Forbidden(
            "API keys cannot create or revoke API keys; use a token.",
        ));
    }
    Ok(())
}

/// A page of keys, newest first, and whether more follow. Admins may name another owner;
/// anyone else asking for another owner's keys is told there are none to see (404).
pub async fn list(
    store: &dyn Store,
    principal: &Principal,
    owner: Option<&str>,
    cursor: Option<Uuid>,
    limit: Option<i64>,
) -> Result<(Vec<ApiKey>, bool), ApiKeyError> {
    let owner = owner.unwrap_or(&principal.user_id);
    if owner != principal.user_id && principal.role != Role::Admin {
        return Err(ApiKeyError::NotFound);
    }
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiKeyError::Invalid {
            field: "limit",
            problem: format!("between 1 and {MAX_PAGE}"),
        });
    }
    let mut keys = store.list_api_keys(owner, cursor, limit + 1).await?;
    let has_more = keys.len() as i64 > limit;
    keys.truncate(limit as usize);
    Ok((keys, has_more))
}

/// Revokes a key of the caller's (or any key, for an admin). Revoking twice is fine.
pub async fn revoke(
    store: &dyn Store,
    auth: &Authenticator,
    principal: &Principal,
    id: Uuid,
) -> Result<(), ApiKeyError> {
    require_token(principal)?;
    let key = store.get_api_key(id).await?.ok_or(ApiKeyError::NotFound)?;
    if key.owner != principal.user_id && principal.role != Role::Admin {
        return Err(ApiKeyError::NotFound);
    }
    if store.revoke_api_key(id, now_utc()).await? {
        tracing::info!(target: "colloquy::audit", event = "api_key_revoked", key_id = %id, prefix = %key.prefix, by = %principal.user_hash);
    }
    auth.forget_key(&key.hash);
    Ok(())
}
