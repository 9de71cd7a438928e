//! The Store on an embedded SQLite file (WAL mode): the zero-setup default.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::QueryBuilder;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::types::Json;
use time::OffsetDateTime;
use time::format_description::well_known::{Iso8601, iso8601};
use uuid::Uuid;

use super::{IdempotencyClaim, PurgeReport, Store, StoreError, rows};
use crate::config::DatabaseKind;
use crate::domain::{ApiKey, Conversation, Message, NewMessage, StoredFile, UsageRecord};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Times are stored as fixed-width RFC 3339 text (`2026-01-02T03:04:05.123456Z`), so text
/// order is time order; a trimmed fraction would sort `…05Z` after `…05.5Z`.
const TIME_FORMAT: Iso8601<
    {
        iso8601::Config::DEFAULT
            .set_time_precision(iso8601::TimePrecision::Second {
                decimal_digits: std::num::NonZeroU8::new(6),
            })
            .encode()
    },
> = Iso8601;

fn ts(t: OffsetDateTime) -> Result<String, StoreError> {
    t.to_offset(time::UtcOffset::UTC)
        .format(&TIME_FORMAT)
        .map_err(|e| StoreError::Corrupt(format!("unformattable time: {e}")))
}

fn ts_opt(t: Option<OffsetDateTime>) -> Result<Option<String>, StoreError> {
    t.map(ts).transpose()
}

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str, max: u32, acquire: Duration) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(e.to_string()))?
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let file = options.get_filename();
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::InvalidUrl(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .acquire_timeout(acquire)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn kind(&self) -> DatabaseKind {
        DatabaseKind::Sqlite
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

    async fn insert_api_key(&self, k: &ApiKey) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO api_keys (",
            api_key_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(k.id)
        .bind(&k.owner)
        .bind(&k.user_hash)
        .bind(&k.name)
        .bind(&k.prefix)
        .bind(&k.hash)
        .bind(k.role.as_str())
        .bind(ts(k.created_at)?)
        .bind(ts_opt(k.last_used_at)?)
        .bind(ts_opt(k.revoked_at)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn api_keys_by_prefix(&self, prefix: &str) -> Result<Vec<ApiKey>, StoreError> {
        let sql = concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE prefix = ?"
        );
        let rows = sqlx::query(sql).bind(prefix).fetch_all(&self.pool).await?;
        rows.iter().map(rows::api_key).collect()
    }

    async fn get_api_key(&self, id: Uuid) -> Result<Option<ApiKey>, StoreError> {
        let sql = concat!("SELECT ", api_key_columns!(), " FROM api_keys WHERE id = ?");
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
            " FROM api_keys WHERE owner = ?1 AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
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
            sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(ts(at)?)
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn touch_api_key(&self, id: Uuid, at: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
            .bind(ts(at)?)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_file(&self, f: &StoredFile) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO files (",
            file_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(f.id)
        .bind(&f.owner)
        .bind(&f.display_name)
        .bind(&f.mime)
        .bind(f.size)
        .bind(&f.sha256)
        .bind(&f.storage_key)
        .bind(ts(f.created_at)?)
        .bind(ts_opt(f.deleted_at)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_file(&self, id: Uuid) -> Result<Option<StoredFile>, StoreError> {
        let sql = concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE id = ? AND deleted_at IS NULL"
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
            " FROM files WHERE owner = ?1 AND deleted_at IS NULL AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
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
        sqlx::query("DELETE FROM files WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_file(&self, id: Uuid, at: OffsetDateTime) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE files SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL")
                .bind(ts(at)?)
                .bind(id)
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
            "DELETE FROM idempotency_keys WHERE owner = ? AND key = ? \
             AND (created_at < ? OR (response IS NULL AND created_at < ?))",
        )
        .bind(owner)
        .bind(key)
        .bind(ts(not_before)?)
        .bind(ts(pending_before)?)
        .execute(&mut *tx)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (owner, key, body_hash, response, created_at) VALUES (?, ?, ?, NULL, ?) \
             ON CONFLICT (owner, key) DO NOTHING",
        )
        .bind(owner)
        .bind(key)
        .bind(body_hash)
        .bind(ts(now)?)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let existing = if inserted == 1 {
            None
        } else {
            sqlx::query(
                "SELECT body_hash, response FROM idempotency_keys WHERE owner = ? AND key = ?",
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
        sqlx::query("UPDATE idempotency_keys SET response = ? WHERE owner = ? AND key = ?")
            .bind(response)
            .bind(owner)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn release_idempotency_key(&self, owner: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE owner = ? AND key = ? AND response IS NULL",
        )
        .bind(owner)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn purge_owner(&self, owner: &str) -> Result<PurgeReport, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Opens the append-only trigger's gate; the row is removed before commit, and a
        // failure rolls it back with everything else.
        sqlx::query("INSERT INTO purge_gate (opened_by) VALUES (?)")
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
        let conversations = sqlx::query("DELETE FROM conversations WHERE owner = ?")
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let files = sqlx::query("DELETE FROM files WHERE owner = ?")
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let api_keys = sqlx::query("DELETE FROM api_keys WHERE owner = ?")
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM purge_gate")
            .execute(&mut *tx)
            .await?;
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
