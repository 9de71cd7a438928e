//! Usage rows: one per provider call, written in batches. On Postgres.

use async_trait::async_trait;
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
        // One array per column: the statement is the same whatever the batch size, so it
        // is prepared once per connection (a VALUES list per size would be planned anew).
        let sql = concat!(
            "INSERT INTO usage_logs (",
            usage_columns!(),
            ") SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[], ",
            "$6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bool[], ",
            "$12::bigint[], $13::bigint[], $14::bigint[], $15::bool[], $16::bool[], $17::text[], ",
            "$18::timestamptz[]) ",
            // A retried batch whose first write did commit must not fail on its own rows.
            "ON CONFLICT (id) DO NOTHING"
        );
        fn column<'a, T>(rows: &'a [UsageRecord], f: impl Fn(&'a UsageRecord) -> T) -> Vec<T> {
            rows.iter().map(f).collect()
        }
        sqlx::query(sql)
            .bind(column(rows, |r| r.id))
            .bind(column(rows, |r| r.request_id.as_str()))
            .bind(column(rows, |r| r.user_hash.as_str()))
            .bind(column(rows, |r| r.conversation_id))
            .bind(column(rows, |r| r.specialist_id.as_deref()))
            .bind(column(rows, |r| r.provider.as_str()))
            .bind(column(rows, |r| r.model.as_str()))
            .bind(column(rows, |r| r.input_tokens))
            .bind(column(rows, |r| r.output_tokens))
            .bind(column(rows, |r| r.cached_tokens))
            .bind(column(rows, |r| r.usage_estimated))
            .bind(column(rows, |r| r.cost_nano_usd))
            .bind(column(rows, |r| r.latency_ms))
            .bind(column(rows, |r| r.ttft_ms))
            .bind(column(rows, |r| r.streamed))
            .bind(column(rows, |r| r.success))
            .bind(column(rows, |r| r.error_code.as_deref()))
            .bind(column(rows, |r| r.created_at))
            .execute(&self.pool)
            .await?;
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
