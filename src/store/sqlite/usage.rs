//! Usage rows: one per provider call, written in batches. On SQLite.

use async_trait::async_trait;
use sqlx::QueryBuilder;

use super::SqliteStore;
use super::ts;
use crate::domain::UsageRecord;
use crate::store::{StoreError, UsageStore, rows};

#[async_trait]
impl UsageStore for SqliteStore {
    async fn insert_usage(&self, rows: &[UsageRecord]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let times = rows
            .iter()
            .map(|r| ts(r.created_at))
            .collect::<Result<Vec<_>, _>>()?;
        let mut qb = QueryBuilder::new(concat!("INSERT INTO usage_logs (", usage_columns!(), ") "));
        qb.push_values(rows.iter().zip(times), |mut b, (r, created_at)| {
            b.push_bind(r.id)
                .push_bind(r.request_id.clone())
                .push_bind(r.user_hash.clone())
                .push_bind(r.conversation_id)
                .push_bind(r.specialist_id.clone())
                .push_bind(r.provider.clone())
                .push_bind(r.model.clone())
                .push_bind(r.input_tokens)
                .push_bind(r.output_tokens)
                .push_bind(r.cached_tokens)
                .push_bind(r.usage_estimated)
                .push_bind(r.cost_nano_usd)
                .push_bind(r.latency_ms)
                .push_bind(r.ttft_ms)
                .push_bind(r.streamed)
                .push_bind(r.success)
                .push_bind(r.error_code.clone())
                .push_bind(created_at);
        });
        // A retried batch whose first write did commit must not fail on its own rows.
        qb.push(" ON CONFLICT (id) DO NOTHING");
        qb.build().execute(&self.pool).await?;
        Ok(())
    }

    async fn list_usage(
        &self,
        user_hash: &str,
        limit: i64,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        let sql = concat!(
            "SELECT ",
            usage_columns!(),
            " FROM usage_logs WHERE user_hash = ? ORDER BY created_at DESC, id DESC LIMIT ?"
        );
        let rows = sqlx::query(sql)
            .bind(user_hash)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::usage).collect()
    }
}
