//! Usage rows: one per provider call, written in batches. On SQLite.

use async_trait::async_trait;
use sqlx::QueryBuilder;
use time::OffsetDateTime;

use super::SqliteStore;
use super::ts;
use crate::domain::UsageRecord;
use crate::store::{StoreError, UsageBucket, UsageGroup, UsageOf, UsageStore, rows};

/// Sums per group; only the key expression differs between groupings. Times are
/// fixed-width UTC text, so the day is the first ten characters.
macro_rules! summary_sql {
    ($key:literal) => {
        concat!(
            "SELECT ",
            $key,
            " AS key, count(*) AS requests, ",
            "coalesce(sum(success), 0) AS succeeded, ",
            "coalesce(sum(input_tokens), 0) AS input_tokens, ",
            "coalesce(sum(output_tokens), 0) AS output_tokens, ",
            "coalesce(sum(cached_tokens), 0) AS cached_tokens, ",
            "coalesce(sum(cost_nano_usd), 0) AS cost_nano_usd ",
            "FROM usage_logs WHERE (?1 OR user_hash IN (?2, ?3)) ",
            "AND created_at >= ?4 AND created_at < ?5 GROUP BY 1 ORDER BY key IS NULL, key"
        )
    };
}

#[async_trait]
impl UsageStore for SqliteStore {
    async fn usage_summary(
        &self,
        of: UsageOf<'_>,
        from: OffsetDateTime,
        to: OffsetDateTime,
        group: UsageGroup,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        let sql = match group {
            UsageGroup::Day => summary_sql!("substr(created_at, 1, 10)"),
            UsageGroup::Model => summary_sql!("model"),
            UsageGroup::Specialist => summary_sql!("specialist_id"),
        };
        // Two hash slots (a user has at most two); an absent one repeats the first.
        let (everyone, first, second) = match of {
            UsageOf::User(hashes) => {
                let first = hashes.first().map_or("", String::as_str);
                (false, first, hashes.get(1).map_or(first, String::as_str))
            }
            UsageOf::Everyone => (true, "", ""),
        };
        let rows = sqlx::query(sql)
            .bind(everyone)
            .bind(first)
            .bind(second)
            .bind(ts(from)?)
            .bind(ts(to)?)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::usage_bucket).collect()
    }

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
