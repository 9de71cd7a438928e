//! API keys: hashed secrets, looked up by their display prefix. On SQLite.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::SqliteStore;
use super::{ts, ts_opt};
use crate::domain::ApiKey;
use crate::store::{ApiKeyStore, StoreError, rows};

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn insert_api_key(&self, k: &ApiKey) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO api_keys (",
            api_key_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(k.id)
        .bind(&k.owner)
        .bind(&k.user_hash)
        .bind(&k.name)
        .bind(&k.prefix)
        .bind(&k.hash)
        .bind(k.role.as_str())
        .bind(ts(k.created_at)?)
        .bind(ts_opt(k.last_used_at)?)
        .bind(ts_opt(k.revoked_at)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn api_keys_by_prefix(&self, prefix: &str) -> Result<Vec<ApiKey>, StoreError> {
        let sql = concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE prefix = ?"
        );
        let rows = sqlx::query(sql).bind(prefix).fetch_all(&self.pool).await?;
        rows.iter().map(rows::api_key).collect()
    }

    async fn get_api_key(&self, id: Uuid) -> Result<Option<ApiKey>, StoreError> {
        let sql = concat!("SELECT ", api_key_columns!(), " FROM api_keys WHERE id = ?");
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::api_key).transpose()
    }

    async fn list_api_keys(
        &self,
        owner: &str,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<ApiKey>, StoreError> {
        let sql = concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE owner = ?1 AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
        );
        let rows = sqlx::query(sql)
            .bind(owner)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::api_key).collect()
    }

    async fn revoke_api_key(&self, id: Uuid, at: OffsetDateTime) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(ts(at)?)
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn touch_api_key(&self, id: Uuid, at: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
            .bind(ts(at)?)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
