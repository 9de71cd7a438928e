//! Full-text search over an owner's messages. On Postgres: the stored tsvector column
//! `messages.search` and its GIN index.

use async_trait::async_trait;
use uuid::Uuid;

use super::PostgresStore;
use crate::store::{SearchHit, SearchStore, StoreError, rows};

#[async_trait]
impl SearchStore for PostgresStore {
    async fn search_messages(
        &self,
        owner: &str,
        terms: &str,
        after: Option<(f64, Uuid)>,
        limit: i64,
    ) -> Result<Vec<SearchHit>, StoreError> {
        // websearch_to_tsquery reads quoted phrases as phrases and never fails on syntax.
        let rows = sqlx::query(
            "SELECT * FROM ( \
                SELECT m.id, m.conversation_id, c.title, m.seq, m.role, m.content, m.created_at, \
                       ts_rank(m.search, q.q)::float8 AS rank \
                FROM websearch_to_tsquery('simple', $2) AS q (q), \
                     messages m JOIN conversations c ON c.id = m.conversation_id \
                WHERE m.search @@ q.q \
                  AND c.owner = $1 AND c.deleted_at IS NULL \
             ) hits \
             WHERE $3::float8 IS NULL OR (rank, id) < ($3, $4) \
             ORDER BY rank DESC, id DESC LIMIT $5",
        )
        .bind(owner)
        .bind(terms)
        .bind(after.map(|(rank, _)| rank))
        .bind(after.map(|(_, id)| id))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::search_hit).collect()
    }
}
