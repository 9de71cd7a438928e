//! Usage rows: one per provider call, written in batches. On Postgres.

use async_trait::async_trait;
use sqlx::QueryBuilder;

use super::PostgresStore;
use crate::domain::UsageRecord;
use crate::store::{StoreError, UsageStore, rows};

#[async_trait]
impl UsageStore for PostgresStore {
    async fn insert_usage(&self, rows: &[UsageRecord]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut qb = QueryBuilder::new(concat!("INSERT INTO usage_logs (", usage_columns!(), ") "));
        qb.push_values(rows, |mut b, r| {
            b.push_bind(r.id)
                .push_bind(&r.request_id)
                .push_bind(&r.user_hash)
                .push_bind(r.conversation_id)
                .push_bind(&r.specialist_id)
                .push_bind(&r.provider)
                .push_bind(&r.model)
                .push_bind(r.input_tokens)
                .push_bind(r.output_tokens)
                .push_bind(r.cached_tokens)
                .push_bind(r.usage_estimated)
                .push_bind(r.cost_nano_usd)
                .push_bind(r.latency_ms)
                .push_bind(r.ttft_ms)
                .push_bind(r.streamed)
                .push_bind(r.success)
                .push_bind(&r.error_code)
                .push_bind(r.created_at);
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
            " FROM usage_logs WHERE user_hash = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        let rows = sqlx::query(sql)
            .bind(user_hash)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::usage).collect()
    }
}
