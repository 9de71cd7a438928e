//! Persistence: one `Store` API over Postgres and SQLite. Nothing outside this module knows sqlx.

// Column lists shared by both dialects' SQL (macros, so `concat!` can build static strings
// that sqlx accepts as audited SQL). Defined before the modules that use them.
macro_rules! conversation_columns {
    () => {
        "id, owner, title, specialist_id, message_count, created_at, updated_at, archived_at, deleted_at"
    };
}
macro_rules! message_columns {
    () => {
        "id, conversation_id, seq, role, content, attachments, input_tokens, output_tokens, status, created_at"
    };
}
macro_rules! api_key_columns {
    () => {
        "id, owner, user_hash, name, prefix, hash, role, created_at, last_used_at, revoked_at"
    };
}
macro_rules! file_columns {
    () => {
        "id, owner, display_name, mime, size, sha256, storage_key, created_at, deleted_at"
    };
}
macro_rules! usage_columns {
    () => {
        "id, request_id, user_hash, conversation_id, specialist_id, provider, model, input_tokens, output_tokens, cached_tokens, usage_estimated, cost_nano_usd, latency_ms, ttft_ms, streamed, success, error_code, created_at"
    };
}

mod postgres;
mod rows;
mod sqlite;
pub mod usage_writer;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::{DatabaseConfig, DatabaseKind};
use crate::domain::{ApiKey, Conversation, Message, NewMessage, StoredFile, UsageRecord};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
use sqlx::Row;

/// Errors of the storage layer; `error.rs` decides what a client sees.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("conversation {0} not found")]
    ConversationNotFound(Uuid),
    #[error("conflicting write: {0}")]
    Conflict(String),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("invalid database url: {0}")]
    InvalidUrl(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => Self::Unavailable(e),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Self::Conflict(db.message().to_owned())
            }
            // Postgres connection exceptions (08...), admin shutdown (57P0x), and SQLite's
            // BUSY/LOCKED after the busy timeout: the database, not the request, is at fault.
            sqlx::Error::Database(db)
                if db.code().is_some_and(|c| {
                    c.starts_with("08") || c.starts_with("57P0") || c == "5" || c == "6"
                }) =>
            {
                Self::Unavailable(e)
            }
            _ => Self::Database(e),
        }
    }
}

/// What claiming an idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// The key is ours now: run the request.
    Claimed,
    /// The key was used within its lifetime: its body hash, and its stored answer (None
    /// while the first request still runs).
    Existing {
        body_hash: String,
        response: Option<String>,
    },
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub conversations: u64,
    pub messages: u64,
    pub files: u64,
    pub api_keys: u64,
}

/// The storage API. Services own ids and timestamps; the store writes what it is given.
/// Messages have append and list only: there is no update, by design and by trigger.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which database this is, for logs and readiness.
    fn kind(&self) -> DatabaseKind;

    /// Applies pending migrations.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// One round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    async fn create_conversation(&self, conversation: &Conversation) -> Result<(), StoreError>;

    /// A conversation by id, unless soft-deleted.
    async fn get_conversation(&self, id: Uuid) -> Result<Option<Conversation>, StoreError>;

    /// Appends a message, numbering it after the conversation's last one and touching the
    /// conversation's `updated_at`, atomically.
    async fn append_message(&self, message: &NewMessage) -> Result<Message, StoreError>;

    /// An owner's live conversations, most recently active first, archived ones or the
    /// others, after the keyset `(updated_at, id)` of the previous page.
    async fn list_conversations(
        &self,
        owner: &str,
        archived: bool,
        after: Option<(OffsetDateTime, Uuid)>,
        limit: i64,
    ) -> Result<Vec<Conversation>, StoreError>;

    /// Sets a live conversation's title and/or archive time (`None`: leave it as it is);
    /// false when there is no such live conversation.
    async fn update_conversation(
        &self,
        id: Uuid,
        title: Option<Option<&str>>,
        archived_at: Option<Option<OffsetDateTime>>,
    ) -> Result<bool, StoreError>;

    /// Soft-deletes a conversation: gone from lists and reads; its rows stay until purged.
    async fn delete_conversation(&self, id: Uuid, at: OffsetDateTime) -> Result<bool, StoreError>;

    /// A conversation's messages in order.
    async fn list_messages(&self, conversation_id: Uuid) -> Result<Vec<Message>, StoreError>;

    /// Up to `limit` messages with `seq` below `before` (all when `None`), newest first: a
    /// keyset page over the (conversation_id, seq) index, stable while messages are appended.
    async fn messages_before(
        &self,
        conversation_id: Uuid,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Message>, StoreError>;

    /// Writes usage rows in one statement (the batched writer's flush).
    async fn insert_usage(&self, rows: &[UsageRecord]) -> Result<(), StoreError>;

    /// A user's usage rows, newest first.
    async fn list_usage(&self, user_hash: &str, limit: i64)
    -> Result<Vec<UsageRecord>, StoreError>;

    async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError>;

    /// Keys whose display prefix is `prefix` (normally one), revoked ones included.
    async fn api_keys_by_prefix(&self, prefix: &str) -> Result<Vec<ApiKey>, StoreError>;

    async fn get_api_key(&self, id: Uuid) -> Result<Option<ApiKey>, StoreError>;

    /// An owner's keys, newest first, revoked ones included; `before` is the cursor (the
    /// last id of the previous page).
    async fn list_api_keys(
        &self,
        owner: &str,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<ApiKey>, StoreError>;

    /// Marks a key revoked unless it already is; true when this call revoked it.
    async fn revoke_api_key(&self, id: Uuid, at: OffsetDateTime) -> Result<bool, StoreError>;

    /// Records when a key was last seen (at most once per cache period per instance).
    async fn touch_api_key(&self, id: Uuid, at: OffsetDateTime) -> Result<(), StoreError>;

    async fn insert_file(&self, file: &StoredFile) -> Result<(), StoreError>;

    /// A file by id, unless deleted.
    async fn get_file(&self, id: Uuid) -> Result<Option<StoredFile>, StoreError>;

    /// An owner's live files, newest first; `before` is the cursor.
    async fn list_files(
        &self,
        owner: &str,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<StoredFile>, StoreError>;

    /// Removes a file's row for good (undoing a failed upload).
    async fn remove_file(&self, id: Uuid) -> Result<(), StoreError>;

    /// Marks a file deleted; true when this call did.
    async fn delete_file(&self, id: Uuid, at: OffsetDateTime) -> Result<bool, StoreError>;

    /// Claims `key` for `owner` unless a claim newer than `not_before` exists (older ones are
    /// replaced, and so are unanswered ones older than `pending_before`: their request died).
    async fn claim_idempotency_key(
        &self,
        owner: &str,
        key: &str,
        body_hash: &str,
        now: OffsetDateTime,
        not_before: OffsetDateTime,
        pending_before: OffsetDateTime,
    ) -> Result<IdempotencyClaim, StoreError>;

    /// Stores the answer of a claimed key.
    async fn complete_idempotency_key(
        &self,
        owner: &str,
        key: &str,
        response: &str,
    ) -> Result<(), StoreError>;

    /// Gives a claimed key back (its request failed), so it can be retried.
    async fn release_idempotency_key(&self, owner: &str, key: &str) -> Result<(), StoreError>;

    /// Deletes everything an owner has: the only path allowed to delete messages.
    async fn purge_owner(&self, owner: &str) -> Result<PurgeReport, StoreError>;

    /// Closes the pool, waiting for connections to be returned.
    async fn close(&self);
}

/// Connects to the database `config.url` names. Creates a SQLite file (and its folder) if missing.
pub async fn connect(config: &DatabaseConfig) -> Result<Arc<dyn Store>, StoreError> {
    let acquire = Duration::from_secs(config.acquire_timeout_secs);
    match DatabaseKind::of(&config.url) {
        Some(DatabaseKind::Postgres) => Ok(Arc::new(
            PostgresStore::connect(&config.url, config.max_connections, acquire).await?,
        )),
        Some(DatabaseKind::Sqlite) => Ok(Arc::new(
            SqliteStore::connect(&config.url, config.max_connections, acquire).await?,
        )),
        None => Err(StoreError::InvalidUrl(
            "expected postgres:// or sqlite:".into(),
        )),
    }
}

fn claim_from<R: Row>(row: Option<R>) -> Result<IdempotencyClaim, StoreError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    match row {
        None => Ok(IdempotencyClaim::Claimed),
        Some(row) => Ok(IdempotencyClaim::Existing {
            body_hash: row.try_get("body_hash")?,
            response: row.try_get("response")?,
        }),
    }
}

/// Maps a stored enum column back, or reports corruption instead of panicking.
fn parse_column<T>(
    value: &str,
    parse: fn(&str) -> Option<T>,
    column: &str,
) -> Result<T, StoreError> {
    parse(value).ok_or_else(|| StoreError::Corrupt(format!("{column} = {value:?}")))
}
