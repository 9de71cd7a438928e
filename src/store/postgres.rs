//! The Store on Postgres: one round trip per call where the dialect allows it.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::QueryBuilder;
use sqlx::postgres::{PgPool, PgPoolOptions};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{IdempotencyClaim, PurgeReport, Store, StoreError, rows};
use crate::config::DatabaseKind;
use crate::domain::{ApiKey, Conversation, Message, NewMessage, StoredFile, UsageRecord};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn connect(url: &str, max: u32, acquire: Duration) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(acquire)
            .connect(url)
            .await?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn kind(&self) -> DatabaseKind {
        DatabaseKind::Postgres
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_conversation(&self, c: &Conversation) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO conversations (id, owner, title, specialist_id, message_count, created_at, updated_at, archived_at, deleted_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(c.id)
        .bind(&c.owner)
        .bind(&c.title)
        .bind(&c.specialist_id)
        .bind(c.message_count)
        .bind(c.created_at)
        .bind(c.updated_at)
        .bind(c.archived_at)
        .bind(c.deleted_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_conversation(&self, id: Uuid) -> Result<Option<Conversation>, StoreError> {
        let sql = concat!(
            "SELECT ",
            conversation_columns!(),
            " FROM conversations WHERE id = $1 AND deleted_at IS NULL"
        );
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::conversation).transpose()
    }

    async fn append_message(&self, m: &NewMessage) -> Result<Message, StoreError> {
        // One statement: the UPDATE takes the conversation's row lock, so concurrent appends
        // are numbered one after another, and both writes commit or neither does.
        let seq: Option<i64> = sqlx::query_scalar(
            "WITH c AS ( \
                UPDATE conversations SET message_count = message_count + 1, updated_at = $9 \
                WHERE id = $2 AND deleted_at IS NULL RETURNING message_count) \
             INSERT INTO messages (id, conversation_id, seq, role, content, attachments, input_tokens, output_tokens, status, created_at) \
             SELECT $1, $2, c.message_count, $3, $4, $5, $6, $7, $8, $9 FROM c RETURNING seq",
        )
        .bind(m.id)
        .bind(m.conversation_id)
        .bind(m.role.as_str())
        .bind(&m.content)
        .bind(&m.attachments)
        .bind(m.input_tokens)
        .bind(m.output_tokens)
        .bind(m.status.as_str())
        .bind(m.created_at)
        .fetch_optional(&self.pool)
        .await?;
        match seq {
            Some(seq) => Ok(Message::from_new(m, seq)),
            None => Err(StoreError::ConversationNotFound(m.conversation_id)),
        }
    }

    async fn list_messages(&self, conversation_id: Uuid) -> Result<Vec<Message>, StoreError> {
        let sql = concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE conversation_id = $1 ORDER BY seq"
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
            " FROM conversations WHERE owner = $1 AND deleted_at IS NULL",
            " AND (archived_at IS NOT NULL) = $2",
            " AND ($3::timestamptz IS NULL OR (updated_at, id) < ($3, $4))",
            " ORDER BY updated_at DESC, id DESC LIMIT $5"
        );
        let rows = sqlx::query(sql)
            .bind(owner)
            .bind(archived)
            .bind(after.map(|(t, _)| t))
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
             title = CASE WHEN $2 THEN $3 ELSE title END, \
             archived_at = CASE WHEN $4 THEN $5 ELSE archived_at END \
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(title.is_some())
        .bind(title.flatten())
        .bind(archived_at.is_some())
        .bind(archived_at.flatten())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_conversation(&self, id: Uuid, at: OffsetDateTime) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE conversations SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(at)
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
            " FROM messages WHERE conversation_id = $1 AND ($2::bigint IS NULL OR seq < $2)",
            " ORDER BY seq DESC LIMIT $3"
        );
        let rows = sqlx::query(sql)
            .bind(conversation_id)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::message).collect()
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

    async fn insert_api_key(&self, k: &ApiKey) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO api_keys (",
            api_key_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(k.id)
        .bind(&k.owner)
        .bind(&k.user_hash)
        .bind(&k.name)
        .bind(&k.prefix)
        .bind(&k.hash)
        .bind(k.role.as_str())
        .bind(k.created_at)
        .bind(k.last_used_at)
        .bind(k.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn api_keys_by_prefix(&self, prefix: &str) -> Result<Vec<ApiKey>, StoreError> {
        let sql = concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE prefix = $1"
        );
        let rows = sqlx::query(sql).bind(prefix).fetch_all(&self.pool).await?;
        rows.iter().map(rows::api_key).collect()
    }

    async fn get_api_key(&self, id: Uuid) -> Result<Option<ApiKey>, StoreError> {
        let sql = concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE id = $1"
        );
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::api_key).transpose()
    }

    async fn list_api_keys(
        &self,
        owner: &str,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<ApiKey>, StoreError> {
        let sql = concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE owner = $1 AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        );
        let rows = sqlx::query(sql)
            .bind(owner)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::api_key).collect()
    }

    async fn revoke_api_key(&self, id: Uuid, at: OffsetDateTime) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(at)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn touch_api_key(&self, id: Uuid, at: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_file(&self, f: &StoredFile) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO files (",
            file_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(f.id)
        .bind(&f.owner)
        .bind(&f.display_name)
        .bind(&f.mime)
        .bind(f.size)
        .bind(&f.sha256)
        .bind(&f.storage_key)
        .bind(f.created_at)
        .bind(f.deleted_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_file(&self, id: Uuid) -> Result<Option<StoredFile>, StoreError> {
        let sql = concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE id = $1 AND deleted_at IS NULL"
        );
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::file).transpose()
    }

    async fn list_files(
        &self,
        owner: &str,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<StoredFile>, StoreError> {
        let sql = concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE owner = $1 AND deleted_at IS NULL AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        );
        let rows = sqlx::query(sql)
            .bind(owner)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::file).collect()
    }

    async fn remove_file(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM files WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_file(&self, id: Uuid, at: OffsetDateTime) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE files SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL")
                .bind(id)
                .bind(at)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn claim_idempotency_key(
        &self,
        owner: &str,
        key: &str,
        body_hash: &str,
        now: OffsetDateTime,
        not_before: OffsetDateTime,
        pending_before: OffsetDateTime,
    ) -> Result<IdempotencyClaim, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE owner = $1 AND key = $2 \
             AND (created_at < $3 OR (response IS NULL AND created_at < $4))",
        )
        .bind(owner)
        .bind(key)
        .bind(not_before)
        .bind(pending_before)
        .execute(&mut *tx)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (owner, key, body_hash, response, created_at) VALUES ($1, $2, $3, NULL, $4) \
             ON CONFLICT (owner, key) DO NOTHING",
        )
        .bind(owner)
        .bind(key)
        .bind(body_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let existing = if inserted == 1 {
            None
        } else {
            sqlx::query(
                "SELECT body_hash, response FROM idempotency_keys WHERE owner = $1 AND key = $2",
            )
            .bind(owner)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?
        };
        tx.commit().await?;
        super::claim_from(existing)
    }

    async fn complete_idempotency_key(
        &self,
        owner: &str,
        key: &str,
        response: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE idempotency_keys SET response = $3 WHERE owner = $1 AND key = $2")
            .bind(owner)
            .bind(key)
            .bind(response)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn release_idempotency_key(&self, owner: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE owner = $1 AND key = $2 AND response IS NULL",
        )
        .bind(owner)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn purge_owner(&self, owner: &str) -> Result<PurgeReport, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Opens the append-only trigger's purge path for this transaction only.
        sqlx::query("SELECT set_config('colloquy.purge', 'on', true)")
            .execute(&mut *tx)
            .await?;
        let messages = sqlx::query(
            "DELETE FROM messages WHERE conversation_id IN (SELECT id FROM conversations WHERE owner = $1)",
        )
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let conversations = sqlx::query("DELETE FROM conversations WHERE owner = $1")
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let files = sqlx::query("DELETE FROM files WHERE owner = $1")
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let api_keys = sqlx::query("DELETE FROM api_keys WHERE owner = $1")
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(PurgeReport {
            conversations,
            messages,
            files,
            api_keys,
        })
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
