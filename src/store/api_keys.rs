//! API keys: hashed secrets, looked up by their display prefix.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use crate::domain::ApiKey;

#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError>;

    /// Keys whose display prefix is `prefix` (normally one), revoked ones included.
    async fn api_keys_by_prefix(&self, prefix: &str) -> Result<Vec<ApiKey>, StoreError>;

    async fn get_api_key(&self, id: Uuid) -> Result<Option<ApiKey>, StoreError>;

    /// An owner's keys, newest first, revoked ones included; `before` is the cursor (the
    /// last id of the previous page).
    async fn list_api_keys(
        &self,
        owner: &str,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<ApiKey>, StoreError>;

    /// Marks a key revoked unless it already is; true when this call revoked it.
    async fn revoke_api_key(&self, id: Uuid, at: OffsetDateTime) -> Result<bool, StoreError>;

    /// Records when a key was last seen (at most once per cache period per instance).
    async fn touch_api_key(&self, id: Uuid, at: OffsetDateTime) -> Result<(), StoreError>;
}
