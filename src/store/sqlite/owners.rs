//! Everything one owner has, across tables: export pages and the purge path. On SQLite.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{SqliteStore, ts_opt};
use crate::domain::{Conversation, Message, StoredFile, UsageRecord};
use crate::store::{OwnerStore, PurgeReport, StoreError, rows};

#[async_trait]
impl OwnerStore for SqliteStore {
    async fn owner_conversations(
        &self,
        owner: &str,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Conversation>, StoreError> {
        let sql = concat!(
            "SELECT ",
            conversation_columns!(),
            " FROM conversations WHERE owner = ?1 AND (?2 IS NULL OR id > ?2) ORDER BY id LIMIT ?3"
        );
        let rows = sqlx::query(sql)
            .bind(owner)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::conversation).collect()
    }

    async fn messages_after(
        &self,
        conversation_id: Uuid,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Message>, StoreError> {
        let sql = concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?"
        );
        let rows = sqlx::query(sql)
            .bind(conversation_id)
            .bind(after_seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::message).collect()
    }

    async fn owner_files(
        &self,
        owner: &str,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<StoredFile>, StoreError> {
        let sql = concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE owner = ?1 AND (?2 IS NULL OR id > ?2) ORDER BY id LIMIT ?3"
        );
        let rows = sqlx::query(sql)
            .bind(owner)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::file).collect()
    }

    async fn usage_after(
        &self,
        user_hash: &str,
        after: Option<(OffsetDateTime, Uuid)>,
        limit: i64,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        let sql = concat!(
            "SELECT ",
            usage_columns!(),
            " FROM usage_logs WHERE user_hash = ?1",
            " AND (?2 IS NULL OR (created_at, id) > (?2, ?3))",
            " ORDER BY created_at, id LIMIT ?4"
        );
        let rows = sqlx::query(sql)
            .bind(user_hash)
            .bind(ts_opt(after.map(|(t, _)| t))?)
            .bind(after.map(|(_, id)| id))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::usage).collect()
    }

    async fn purge_owner(
        &self,
        owner: &str,
        user_hashes: &[String],
    ) -> Result<(PurgeReport, Vec<(Uuid, String)>), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Opens the append-only trigger's gate; the row is removed before commit, and a
        // failure rolls it back with everything else.
        sqlx::query("INSERT INTO purge_gate (opened_by) VALUES (?)")
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        let mut usage_logs = sqlx::query(
            "DELETE FROM usage_logs WHERE conversation_id IN (SELECT id FROM conversations WHERE owner = ?)",
        )
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        for hash in user_hashes {
            usage_logs += sqlx::query("DELETE FROM usage_logs WHERE user_hash = ?")
                .bind(hash)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        // The search index's copy of the text goes too (it is not tied to rows by a trigger:
        // the lookup by message id is a scan, done once here rather than once per row).
        sqlx::query(
            "DELETE FROM messages_fts WHERE message_id IN (SELECT m.id FROM messages m \
             JOIN conversations c ON c.id = m.conversation_id WHERE c.owner = ?)",
        )
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        let messages = sqlx::query(
            "DELETE FROM messages WHERE conversation_id IN (SELECT id FROM conversations WHERE owner = ?)",
        )
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let file_keys: Vec<(Uuid, String)> =
            sqlx::query_as("DELETE FROM files WHERE owner = ? RETURNING id, storage_key")
                .bind(owner)
                .fetch_all(&mut *tx)
                .await?;
        let mut counts = [0u64; 5];
        counts[1] = file_keys.len() as u64;
        for (n, sql) in [
            (0, "DELETE FROM conversations WHERE owner = ?"),
            (2, "DELETE FROM api_keys WHERE owner = ?"),
            (3, "DELETE FROM idempotency_keys WHERE owner = ?"),
            (4, "DELETE FROM budgets WHERE user_id = ?"),
        ] {
            counts[n] = sqlx::query(sql)
                .bind(owner)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        sqlx::query("DELETE FROM purge_gate")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let [conversations, files, api_keys, idempotency_keys, budgets] = counts;
        let report = PurgeReport {
            conversations,
            messages,
            files,
            api_keys,
            usage_logs,
            idempotency_keys,
            budgets,
        };
        Ok((report, file_keys))
    }
}
