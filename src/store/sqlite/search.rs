//! Full-text search over an owner's messages. On SQLite: the FTS5 table `messages_fts`.

use async_trait::async_trait;
use uuid::Uuid;

use super::SqliteStore;
use crate::store::{SearchHit, SearchStore, StoreError, rows};

#[async_trait]
impl SearchStore for SqliteStore {
    async fn search_messages(
        &self,
        owner: &str,
        terms: &str,
        after: Option<(f64, Uuid)>,
        limit: i64,
    ) -> Result<Vec<SearchHit>, StoreError> {
        // bm25 is lower-is-better and only callable where the MATCH is, so the matches are
        // ranked in a materialized CTE and negated to share Postgres's order.
        let rows = sqlx::query(
            "WITH hits AS MATERIALIZED ( \
                SELECT message_id, -bm25(messages_fts) AS rank FROM messages_fts \
                WHERE messages_fts MATCH ?2) \
             SELECT m.id, m.conversation_id, c.title, m.seq, m.role, m.content, m.created_at, hits.rank \
             FROM hits JOIN messages m ON m.id = hits.message_id \
                  JOIN conversations c ON c.id = m.conversation_id \
             WHERE c.owner = ?1 AND c.deleted_at IS NULL \
               AND (?3 IS NULL OR (hits.rank, m.id) < (?3, ?4)) \
             ORDER BY hits.rank DESC, m.id DESC LIMIT ?5",
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
