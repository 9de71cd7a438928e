//! Row decoding shared by both dialects: the same column names decode into the same domain
//! types, so the two stores cannot drift apart in what they return.

use serde_json::Value;
use sqlx::types::Json;
use sqlx::{ColumnIndex, Database, Decode, Row, Type};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{SearchHit, StoreError, UsageBucket, parse_column};
use crate::domain::{
    ApiKey, Conversation, Message, MessageRole, MessageStatus, Role, StoredFile, UsageRecord,
};

/// A Rust type a column decodes into, on database `DB`.
pub(super) trait Column<'r, DB: Database>: Decode<'r, DB> + Type<DB> {}
impl<'r, DB: Database, T: Decode<'r, DB> + Type<DB>> Column<'r, DB> for T {}

pub(super) fn conversation<'r, R>(row: &'r R) -> Result<Conversation, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    Uuid: Column<'r, R::Database>,
    String: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
    OffsetDateTime: Column<'r, R::Database>,
{
    Ok(Conversation {
        id: row.try_get("id")?,
        owner: row.try_get("owner")?,
        title: row.try_get("title")?,
        specialist_id: row.try_get("specialist_id")?,
        message_count: row.try_get("message_count")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        archived_at: row.try_get("archived_at")?,
        deleted_at: row.try_get("deleted_at")?,
    })
}

pub(super) fn message<'r, R>(row: &'r R) -> Result<Message, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    Uuid: Column<'r, R::Database>,
    String: Column<'r, R::Database>,
    &'r str: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
    Json<Value>: Column<'r, R::Database>,
    OffsetDateTime: Column<'r, R::Database>,
{
    let attachments: Json<Value> = row.try_get("attachments")?;
    Ok(Message {
        id: row.try_get("id")?,
        conversation_id: row.try_get("conversation_id")?,
        seq: row.try_get("seq")?,
        role: parse_column(row.try_get("role")?, MessageRole::parse, "messages.role")?,
        content: row.try_get("content")?,
        attachments: attachments.0,
        input_tokens: row.try_get("input_tokens")?,
        output_tokens: row.try_get("output_tokens")?,
        status: parse_column(
            row.try_get("status")?,
            MessageStatus::parse,
            "messages.status",
        )?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn usage<'r, R>(row: &'r R) -> Result<UsageRecord, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    Uuid: Column<'r, R::Database>,
    String: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
    bool: Column<'r, R::Database>,
    OffsetDateTime: Column<'r, R::Database>,
{
    Ok(UsageRecord {
        id: row.try_get("id")?,
        request_id: row.try_get("request_id")?,
        user_hash: row.try_get("user_hash")?,
        conversation_id: row.try_get("conversation_id")?,
        specialist_id: row.try_get("specialist_id")?,
        provider: row.try_get("provider")?,
        model: row.try_get("model")?,
        input_tokens: row.try_get("input_tokens")?,
        output_tokens: row.try_get("output_tokens")?,
        cached_tokens: row.try_get("cached_tokens")?,
        usage_estimated: row.try_get("usage_estimated")?,
        cost_nano_usd: row.try_get("cost_nano_usd")?,
        latency_ms: row.try_get("latency_ms")?,
        ttft_ms: row.try_get("ttft_ms")?,
        streamed: row.try_get("streamed")?,
        success: row.try_get("success")?,
        error_code: row.try_get("error_code")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn api_key<'r, R>(row: &'r R) -> Result<ApiKey, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    Uuid: Column<'r, R::Database>,
    String: Column<'r, R::Database>,
    &'r str: Column<'r, R::Database>,
    OffsetDateTime: Column<'r, R::Database>,
{
    Ok(ApiKey {
        id: row.try_get("id")?,
        owner: row.try_get("owner")?,
        user_hash: row.try_get("user_hash")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        hash: row.try_get("hash")?,
        role: parse_column(row.try_get("role")?, Role::parse, "api_keys.role")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

pub(super) fn file<'r, R>(row: &'r R) -> Result<StoredFile, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    Uuid: Column<'r, R::Database>,
    String: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
    OffsetDateTime: Column<'r, R::Database>,
{
    Ok(StoredFile {
        id: row.try_get("id")?,
        owner: row.try_get("owner")?,
        display_name: row.try_get("display_name")?,
        mime: row.try_get("mime")?,
        size: row.try_get("size")?,
        sha256: row.try_get("sha256")?,
        storage_key: row.try_get("storage_key")?,
        created_at: row.try_get("created_at")?,
        deleted_at: row.try_get("deleted_at")?,
    })
}

pub(super) fn search_hit<'r, R>(row: &'r R) -> Result<SearchHit, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    Uuid: Column<'r, R::Database>,
    String: Column<'r, R::Database>,
    &'r str: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
    f64: Column<'r, R::Database>,
    OffsetDateTime: Column<'r, R::Database>,
{
    Ok(SearchHit {
        message_id: row.try_get("id")?,
        conversation_id: row.try_get("conversation_id")?,
        conversation_title: row.try_get("title")?,
        seq: row.try_get("seq")?,
        role: parse_column(row.try_get("role")?, MessageRole::parse, "messages.role")?,
        content: row.try_get("content")?,
        created_at: row.try_get("created_at")?,
        rank: row.try_get("rank")?,
    })
}

pub(super) fn usage_bucket<'r, R>(row: &'r R) -> Result<UsageBucket, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    String: Column<'r, R::Database>,
    i64: Column<'r, R::Database>,
{
    Ok(UsageBucket {
        key: row.try_get("key")?,
        requests: row.try_get("requests")?,
        succeeded: row.try_get("succeeded")?,
        input_tokens: row.try_get("input_tokens")?,
        output_tokens: row.try_get("output_tokens")?,
        cached_tokens: row.try_get("cached_tokens")?,
        cost_nano_usd: row.try_get("cost_nano_usd")?,
    })
}
