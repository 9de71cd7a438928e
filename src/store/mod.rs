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

mod api_keys;
mod budgets;
mod conversations;
mod files;
mod idempotency;
mod maintenance;
mod owners;
mod postgres;
mod rows;
mod search;
mod sqlite;
mod usage;
pub mod usage_writer;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::config::{DatabaseConfig, DatabaseKind};

pub use api_keys::ApiKeyStore;
pub use budgets::{BudgetOverride, BudgetStore};
pub use conversations::ConversationStore;
pub use files::FileStore;
pub use idempotency::{IdempotencyClaim, IdempotencyStore};
pub use maintenance::{MaintenanceStore, PurgedConversations};
pub use owners::{OwnerStore, PurgeReport};
pub use postgres::PostgresStore;
pub use search::{SearchHit, SearchStore};
pub use sqlite::SqliteStore;
pub use usage::{UsageBucket, UsageGroup, UsageOf, UsageStore};

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

/// The storage API. Services own ids and timestamps; the store writes what it is given.
/// Messages have append and list only: there is no update, by design and by trigger.
#[async_trait]
pub trait Store:
    ConversationStore
    + UsageStore
    + ApiKeyStore
    + FileStore
    + IdempotencyStore
    + OwnerStore
    + SearchStore
    + MaintenanceStore
    + BudgetStore
    + Send
    + Sync
    + 'static
{
    /// Which database this is, for logs and readiness.
    fn kind(&self) -> DatabaseKind;

    /// Applies pending migrations.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// One round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The pool's connections: (in use, idle), for the metrics.
    fn pool_connections(&self) -> (u32, u32);

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

/// Maps a stored enum column back, or reports corruption instead of panicking.
fn parse_column<T>(
    value: &str,
    parse: fn(&str) -> Option<T>,
    column: &str,
) -> Result<T, StoreError> {
    parse(value).ok_or_else(|| StoreError::Corrupt(format!("{column} = {value:?}")))
}
