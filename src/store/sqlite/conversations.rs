//! Conversations and their append-only messages. On SQLite.

use async_trait::async_trait;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::SqliteStore;
use super::{ts, ts_opt};
use crate::domain::{Conversation, Message, NewMessage};
use crate::store::{ConversationStore, StoreError, rows};

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn create_conversation(&self, c: &Conversation) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO conversations (id, owner, title, specialist_id, message_count, created_at, updated_at, archived_at, deleted_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(c.id)
        .bind(&c.owner)
        .bind(&c.title)
        .bind(&c.specialist_id)
        .bind(c.message_count)
        .bind(ts(c.created_at)?)
        .bind(ts(c.updated_at)?)
        .bind(ts_opt(c.archived_at)?)
        .bind(ts_opt(c.deleted_at)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_conversation(&self, id: Uuid) -> Result<Option<Conversation>, StoreError> {
        let sql = concat!(
            "SELECT ",
            conversation_columns!(),
            " FROM conversations WHERE id = ? AND deleted_at IS NULL"
        );
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::conversation).transpose()
    }

    async fn append_message(&self, m: &NewMessage) -> Result<Message, StoreError> {
        // The UPDATE comes first so the transaction holds SQLite's write lock from its first
        // statement: appends are serialized and numbered without gaps or duplicates.
        let created_at = ts(m.created_at)?;
        let mut tx = self.pool.begin().await?;
        let seq: Option<i64> = sqlx::query_scalar(
            "UPDATE conversations SET message_count = message_count + 1, updated_at = ? \
             WHERE id = ? AND deleted_at IS NULL RETURNING message_count",
        )
        .bind(&created_at)
        .bind(m.conversation_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(seq) = seq else {
            return Err(StoreError::ConversationNotFound(m.conversation_id));
        };
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, seq, role, content, attachments, input_tokens, output_tokens, status, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(m.id)
        .bind(m.conversation_id)
        .bind(seq)
        .bind(m.role.as_str())
        .bind(&m.content)
        .bind(Json(&m.attachments))
        .bind(m.input_tokens)
        .bind(m.output_tokens)
        .bind(m.status.as_str())
        .bind(&created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Message::from_new(m, seq))
    }

    async fn list_messages(&self, conversation_id: Uuid) -> Result<Vec<Message>, StoreError> {
        let sql = concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE conversation_id = ? ORDER BY seq"
        );
        let rows = sqlx::query(sql)
            .bind(conversation_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::message).collect()
    }

    async fn list_conversations(
        &self,
        owner: &str,
        archived: bool,
        after: Option<(OffsetDateTime, Uuid)>,
        limit: i64,
    ) -> Result<Vec<Conversation>, StoreError> {
        let sql = concat!(
            "SELECT ",
            conversation_columns!(),
            " FROM conversations WHERE owner = ?1 AND deleted_at IS NULL",
            " AND (archived_at IS NOT NULL) = ?2",
            " AND (?3 IS NULL OR (updated_at, id) < (?3, ?4))",
            " ORDER BY updated_at DESC, id DESC LIMIT ?5"
        );
        let rows = sqlx::query(sql)
            .bind(owner)
            .bind(archived)
            .bind(ts_opt(after.map(|(t, _)| t))?)
            .bind(after.map(|(_, id)| id))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::conversation).collect()
    }

    async fn update_conversation(
        &self,
        id: Uuid,
        title: Option<Option<&str>>,
        archived_at: Option<Option<OffsetDateTime>>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE conversations SET \
             title = CASE WHEN ?2 THEN ?3 ELSE title END, \
             archived_at = CASE WHEN ?4 THEN ?5 ELSE archived_at END \
             WHERE id = ?1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(title.is_some())
        .bind(title.flatten())
        .bind(archived_at.is_some())
        .bind(ts_opt(archived_at.flatten())?)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_title_if_untitled(&self, id: Uuid, title: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE conversations SET title = ?2 WHERE id = ?1 AND title IS NULL AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(title)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_conversation(&self, id: Uuid, at: OffsetDateTime) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE conversations SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
        )
        .bind(ts(at)?)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn messages_before(
        &self,
        conversation_id: Uuid,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Message>, StoreError> {
        let sql = concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE conversation_id = ?1 AND (?2 IS NULL OR seq < ?2)",
            " ORDER BY seq DESC LIMIT ?3"
        );
        let rows = sqlx::query(sql)
            .bind(conversation_id)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::message).collect()
    }
}
