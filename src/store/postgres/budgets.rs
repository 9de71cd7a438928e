//! Monthly spend caps set per user, and spend in a period. On Postgres.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::PostgresStore;
use crate::store::{BudgetOverride, BudgetStore, StoreError};

#[async_trait]
impl BudgetStore for PostgresStore {
    async fn get_budget(&self, user_id: &str) -> Result<Option<BudgetOverride>, StoreError> {
        let row: Option<(String, Option<i64>, String, OffsetDateTime)> = sqlx::query_as(
            "SELECT user_id, monthly_nano_usd, updated_by, updated_at FROM budgets WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(user_id, monthly_nano_usd, updated_by, updated_at)| BudgetOverride {
                user_id,
                monthly_nano_usd,
                updated_by,
                updated_at,
            },
        ))
    }

    async fn put_budget(&self, budget: &BudgetOverride) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO budgets (user_id, monthly_nano_usd, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE SET \
             monthly_nano_usd = excluded.monthly_nano_usd, updated_by = excluded.updated_by, \
             updated_at = excluded.updated_at",
        )
        .bind(&budget.user_id)
        .bind(budget.monthly_nano_usd)
        .bind(&budget.updated_by)
        .bind(budget.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_budget(&self, user_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM budgets WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn spent_between(
        &self,
        user_hashes: &[String],
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        let total: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(cost_nano_usd), 0)::bigint FROM usage_logs \
             WHERE user_hash = ANY($1) AND created_at >= $2 AND created_at < $3",
        )
        .bind(user_hashes)
        .bind(from)
        .bind(to)
        .fetch_one(&self.pool)
        .await?;
        Ok(total)
    }
}
