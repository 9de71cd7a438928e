//! `GET /v1/me/export`: everything the store holds about the caller, as one JSON document
//! written page by page while it streams, so memory stays flat however much there is.
//!
//! The document: `{"format", "user_id", "exported_at", "conversations": [{…, "messages":
//! […]}], "files": […], "usage": […], "api_keys": […]}`. Deleted conversations and files are
//! included (with `deleted_at`) until they are purged: the data is still held.

use std::sync::Arc;
use tracing::Instrument;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc;

use crate::domain::ids::now_utc;
use crate::domain::{ApiKey, Conversation, Message, Principal, StoredFile, UsageRecord};
use crate::store::{Store, StoreError};

/// Rows read per query, and bytes gathered before a chunk is sent.
const PAGE: i64 = 500;
const CHUNK: usize = 64 * 1024;
/// Chunks in flight: with `CHUNK`, the most an export holds while the client reads slowly.
const IN_FLIGHT: usize = 4;

/// The export as a body stream. The reading runs in a task of its own; a client that stops
/// reading stops it, and a storage failure mid-way ends the body with an error, so a
/// truncated export cannot pass for a whole one.
/// `user_hashes`: every hash the user's usage rows are filed under (see `user_hashes`).
pub fn stream(
    store: Arc<dyn Store>,
    principal: &Principal,
    user_hashes: Vec<String>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let owner = principal.user_id.clone();
    tokio::spawn(
        async move {
            let mut out = Writer {
                tx: tx.clone(),
                buf: BytesMut::with_capacity(CHUNK),
            };
            let result = write(store.as_ref(), &owner, &user_hashes, &mut out).await;
            match result {
                Ok(()) => {
                    let _ = out.flush().await;
                }
                Err(Failure::Gone) => {}
                Err(Failure::Store(e)) => {
                    tracing::error!(error = %e, "export failed part way; the body is cut");
                    let _ = tx.send(Err(std::io::Error::other("export failed"))).await;
                }
            }
        }
        .in_current_span(),
    );
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
}

enum Failure {
    /// The client went away.
    Gone,
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

struct Writer {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: BytesMut,
}

impl Writer {
    async fn raw(&mut self, s: &str) -> Result<(), Failure> {
        self.buf.put_slice(s.as_bytes());
        self.maybe_flush().await
    }

    async fn value(&mut self, v: &Value) -> Result<(), Failure> {
        // Serializing into the buffer cannot fail: a Value is always representable.
        let _ = serde_json::to_writer((&mut self.buf).writer(), v);
        self.maybe_flush().await
    }

    async fn maybe_flush(&mut self) -> Result<(), Failure> {
        if self.buf.len() >= CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Failure> {
        let chunk = self.buf.split().freeze();
        self.tx.send(Ok(chunk)).await.map_err(|_| Failure::Gone)
    }
}

async fn write(
    store: &dyn Store,
    owner: &str,
    user_hashes: &[String],
    out: &mut Writer,
) -> Result<(), Failure> {
    let head = json!({
        "format": "colloquy-export/1",
        "user_id": owner,
        "exported_at": rfc3339(now_utc()),
    });
    let head = head.to_string();
    // The head object, left open for the arrays that follow.
    out.raw(&head[..head.len() - 1]).await?;

    out.raw(",\"conversations\":[").await?;
    let mut after = None;
    let mut first = true;
    loop {
        let page = store.owner_conversations(owner, after, PAGE).await?;
        for c in &page {
            if !std::mem::take(&mut first) {
                out.raw(",").await?;
            }
            let head = conversation(c).to_string();
            out.raw(&head[..head.len() - 1]).await?;
            out.raw(",\"messages\":[").await?;
            let mut seq = 0;
            let mut first_message = true;
            loop {
                let messages = store.messages_after(c.id, seq, PAGE).await?;
                for m in &messages {
                    if !std::mem::take(&mut first_message) {
                        out.raw(",").await?;
                    }
                    out.value(&message(m)).await?;
                    seq = m.seq;
                }
                if (messages.len() as i64) < PAGE {
                    break;
                }
            }
            out.raw("]}").await?;
        }
        match page.last() {
            Some(last) if page.len() as i64 == PAGE => after = Some(last.id),
            _ => break,
        }
    }

    out.raw("],\"files\":[").await?;
    let mut after = None;
    let mut first = true;
    loop {
        let page = store.owner_files(owner, after, PAGE).await?;
        for f in &page {
            if !std::mem::take(&mut first) {
                out.raw(",").await?;
            }
            out.value(&file(f)).await?;
        }
        match page.last() {
            Some(last) if page.len() as i64 == PAGE => after = Some(last.id),
            _ => break,
        }
    }

    out.raw("],\"usage\":[").await?;
    let mut first = true;
    for user_hash in user_hashes {
        let mut after = None;
        loop {
            let page = store.usage_after(user_hash, after, PAGE).await?;
            for u in &page {
                if !std::mem::take(&mut first) {
                    out.raw(",").await?;
                }
                out.value(&usage(u)).await?;
            }
            match page.last() {
                Some(last) if page.len() as i64 == PAGE => {
                    after = Some((last.created_at, last.id));
                }
                _ => break,
            }
        }
    }

    out.raw("],\"api_keys\":[").await?;
    let mut before = None;
    let mut first = true;
    loop {
        let page = store.list_api_keys(owner, before, PAGE).await?;
        for k in &page {
            if !std::mem::take(&mut first) {
                out.raw(",").await?;
            }
            out.value(&api_key(k)).await?;
        }
        match page.last() {
            Some(last) if page.len() as i64 == PAGE => before = Some(last.id),
            _ => break,
        }
    }
    out.raw("]}").await
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn rfc3339_opt(t: Option<OffsetDateTime>) -> Value {
    t.map_or(Value::Null, |t| Value::String(rfc3339(t)))
}

fn conversation(c: &Conversation) -> Value {
    json!({
        "id": c.id,
        "title": c.title,
        "specialist_id": c.specialist_id,
        "message_count": c.message_count,
        "created_at": rfc3339(c.created_at),
        "updated_at": rfc3339(c.updated_at),
        "archived_at": rfc3339_opt(c.archived_at),
        "deleted_at": rfc3339_opt(c.deleted_at),
    })
}

fn message(m: &Message) -> Value {
    json!({
        "id": m.id,
        "seq": m.seq,
        "role": m.role,
        "content": m.content,
        "attachments": m.attachments,
        "input_tokens": m.input_tokens,
        "output_tokens": m.output_tokens,
        "status": m.status,
        "created_at": rfc3339(m.created_at),
    })
}

fn file(f: &StoredFile) -> Value {
    json!({
        "id": f.id,
        "name": f.display_name,
        "mime": f.mime,
        "size": f.size,
        "sha256": f.sha256,
        "created_at": rfc3339(f.created_at),
        "deleted_at": rfc3339_opt(f.deleted_at),
    })
}

fn usage(u: &UsageRecord) -> Value {
    json!({
        "id": u.id,
        "request_id": u.request_id,
        "conversation_id": u.conversation_id,
        "specialist_id": u.specialist_id,
        "provider": u.provider,
        "model": u.model,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cached_tokens": u.cached_tokens,
        "usage_estimated": u.usage_estimated,
        "cost_nano_usd": u.cost_nano_usd,
        "latency_ms": u.latency_ms,
        "ttft_ms": u.ttft_ms,
        "streamed": u.streamed,
        "success": u.success,
        "error_code": u.error_code,
        "created_at": rfc3339(u.created_at),
    })
}

fn api_key(k: &ApiKey) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "role": k.role.as_str(),
        "created_at": rfc3339(k.created_at),
        "last_used_at": rfc3339_opt(k.last_used_at),
        "revoked_at": rfc3339_opt(k.revoked_at),
    })
}
