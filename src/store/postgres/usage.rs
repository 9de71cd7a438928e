//! Usage rows: one per provider call, written in batches. On Postgres.

use async_trait::async_trait;
use sqlx::QueryBuilder;
use time::OffsetDateTime;

use super::PostgresStore;
use crate::domain::UsageRecord;
use crate::store::{StoreError, UsageBucket, UsageGroup, UsageOf, UsageStore, rows};

/// Sums per group; only the key expression differs between groupings.
macro_rules! summary_sql {
    ($key:literal) => {
        concat!(
            "SELECT ",
            $key,
            " AS key, count(*) AS requests, ",
            "count(*) FILTER (WHERE success) AS succeeded, ",
            "coalesce(sum(input_tokens), 0)::bigint AS input_tokens, ",
            "coalesce(sum(output_tokens), 0)::bigint AS output_tokens, ",
            "coalesce(sum(cached_tokens), 0)::bigint AS cached_tokens, ",
            "coalesce(sum(cost_nano_usd), 0)::bigint AS cost_nano_usd ",
            "FROM usage_logs WHERE ($1 OR user_hash = ANY($2)) ",
            "AND created_at >= $3 AND created_at < $4 GROUP BY 1 ",
            // Byte order, as SQLite sorts, whatever the database's collation.
            "ORDER BY (",
            $key,
            ") COLLATE \"C\" NULLS LAST"
        )
    };
}

#[async_trait]
impl UsageStore for PostgresStore {
    async fn usage_summary(
        &self,
        of: UsageOf<'_>,
        from: OffsetDateTime,
        to: OffsetDateTime,
        group: UsageGroup,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        let sql = match group {
            UsageGroup::Day => {
                summary_sql!("to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
            }
            UsageGroup::Model => summary_sql!("model"),
            UsageGroup::Specialist => summary_sql!("specialist_id"),
        };
        let (everyone, hashes): (bool, &[String]) = match of {
            UsageOf::User(hashes) => (false, hashes),
            UsageOf::Everyone => (true, &[]),
        };
        let rows = sqlx::query(sql)
            .bind(everyone)
            .bind(hashes)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::usage_bucket).collect()
    }

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
