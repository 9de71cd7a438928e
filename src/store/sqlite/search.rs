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
        // Not bm25: its scores depend on the whole table's statistics, so any insert between
        // two pages would move every score and the keyset cursor would skip or repeat hits.
        // This rank is the document's own: BM25's term-frequency saturation with a fixed
        // length norm (200 characters), where the frequency is the number of matched tokens
        // (highlight() inserts one char(1) before each). Like Postgres's ts_rank, it depends
        // on the message alone. Auxiliary functions only work where the MATCH is, hence the
        // materialized CTE.
        let rows = sqlx::query(
            "WITH hits AS MATERIALIZED ( \
                SELECT message_id, \
                       length(highlight(messages_fts, 0, char(1), '')) - length(content) AS tf, \
                       length(content) AS len \
                FROM messages_fts WHERE messages_fts MATCH ?2), \
             ranked AS ( \
                SELECT message_id, tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len / 200.0)) AS rank \
                FROM hits) \
             SELECT m.id, m.conversation_id, c.title, m.seq, m.role, m.content, m.created_at, ranked.rank \
             FROM ranked JOIN messages m ON m.id = ranked.message_id \
                  JOIN conversations c ON c.id = m.conversation_id \
             WHERE c.owner = ?1 AND c.deleted_at IS NULL \
               AND (?3 IS NULL OR (ranked.rank, m.id) < (?3, ?4)) \
             ORDER BY ranked.rank DESC, m.id DESC LIMIT ?5",
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
