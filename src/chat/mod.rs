//! The chat service: resolve the specialist, load and trim history, append the user message,
//! run the provider call as a detached generation (it finishes, is stored and is accounted
//! even if the client leaves), append the assistant message, and hand one usage row per
//! call to the batched writer.

mod generation;
pub mod idempotency;
pub mod live;
mod prepare;
pub mod prompt;
pub mod specialists;
pub mod titles;

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::budgets::{BudgetError, Budgets, Hold};
use crate::config::ChatConfig;
use crate::domain::{Principal, Role};
use crate::files::{FileError, Files};
use crate::providers::{CallFailure, ChatRequest, Registry, Speaker, Usage};
use crate::store::usage_writer::UsageWriter;
use crate::store::{Store, StoreError};
pub use generation::client_message;
pub use specialists::{Specialist, Specialists};

/// A chat request, as the routes hand it over.
#[derive(Debug, Clone)]
pub struct ChatInput {
    pub specialist_id: String,
    pub message: String,
    pub conversation_id: Option<Uuid>,
    /// Stateless mode: the history comes with the request and nothing but usage is stored.
    pub conversation_history: Option<Vec<(Speaker, String)>>,
    pub file_ids: Vec<Uuid>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    /// The OpenAI-compatible route's extras; the native routes leave them empty.
    pub compat: Compat,
}

/// What only the OpenAI-compatible route asks of a call.
#[derive(Debug, Clone, Default)]
pub struct Compat {
    /// `specialist_id` may also name one of `chat.direct_models`.
    pub allow_direct_model: bool,
    /// The caller's system text: after the specialist's prompt (a direct model's only one).
    pub system: Option<String>,
    pub stop: Vec<String>,
    /// The caller's own end-user id (OpenAI's `user`), mixed into the id the provider sees.
    pub end_user: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("specialist not found")]
    SpecialistNotFound,
    #[error("conversation not found")]
    ConversationNotFound,
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error("attachment not supported: {0}")]
    AttachmentNotSupported(String),
    #[error("role may not chat")]
    Forbidden,
    #[error("provider call failed: {}", .0.error)]
    Provider(CallFailure),
    #[error("the generation was cut: {0}")]
    Cut(&'static str),
    #[error(transparent)]
    Budget(#[from] BudgetError),
    #[error(transparent)]
    Files(#[from] FileError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the generation task failed")]
    Internal,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("no such stream on this instance")]
    StreamNotFound,
}

/// What the caller learns when a call ends.
#[derive(Debug, Clone)]
pub struct ChatOutcome {
    pub content: String,
    pub conversation_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
    pub specialist_id: String,
    pub specialist_name: String,
    pub provider: String,
    pub model: String,
    pub usage: Usage,
    pub cost_nano_usd: i64,
    pub latency: Duration,
    pub provider_latency: Duration,
    pub ttft: Option<Duration>,
    pub finish_reason: String,
}

/// Events of a streamed answer, for the SSE route.
#[derive(Debug, Clone)]
pub enum ChatEvent {
    Delta(String),
    Done(Box<ChatOutcome>),
    Error { code: &'static str, message: String },
}

/// A stream's events as a `Stream`, always ending with `Done` or `Error`: should the
/// generation stop without either (a panic in it drops its sender), an `internal` error
/// ends the stream, so no client takes a cut answer for a whole one.
pub fn events(
    mut rx: mpsc::UnboundedReceiver<ChatEvent>,
) -> impl futures_util::Stream<Item = ChatEvent> + Send {
    use std::task::Poll;
    let mut ended = false;
    futures_util::stream::poll_fn(move |cx| {
        if ended {
            return Poll::Ready(None);
        }
        let polled = rx.poll_recv(cx);
        match &polled {
            Poll::Ready(Some(ChatEvent::Done(_) | ChatEvent::Error { .. })) => {
                ended = true;
            }
            Poll::Ready(None) => {
                ended = true;
                tracing::error!("a generation ended without its last event");
                return Poll::Ready(Some(ChatEvent::Error {
                    code: "internal",
                    message: "The answer ended unexpectedly.".to_owned(),
                }));
            }
            _ => {}
        }
        polled
    })
}

/// Known before the first token: for the stream's `start` event.
#[derive(Debug, Clone)]
pub struct StreamStart {
    pub conversation_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
    pub specialist_id: String,
    pub model: String,
}

/// Everything a generation needs, resolved before it starts.
struct Prepared {
    specialist: Specialist,
    /// The specialist stands in for a model named directly: usage names no specialist.
    direct: bool,
    conversation_id: Option<Uuid>,
    assistant_message_id: Option<Uuid>,
    request: ChatRequest,
    user_hash: String,
    request_id: String,
    started: Instant,
    streamed: bool,
    /// The first message of a conversation that has no title yet: named once answered.
    untitled: Option<String>,
    /// The call's reservation against the user's monthly budget, settled when it is accounted.
    hold: std::sync::Mutex<Option<Hold>>,
    user_id: String,
}

pub struct ChatService {
    store: Arc<dyn Store>,
    providers: Arc<Registry>,
    files: Arc<Files>,
    budgets: Arc<Budgets>,
    specialists: Specialists,
    usage: UsageWriter,
    titles: Arc<titles::Titles>,
    config: ChatConfig,
    /// Running generations, awaited on shutdown.
    generations: TaskTracker,
    /// Fired at the shutdown deadline: running generations stop and are stored as `cut`.
    cut: CancellationToken,
    /// Set when shutdown begins: no new generation starts after it.
    closing: std::sync::atomic::AtomicBool,
    /// Streams a client can pick up again after losing its connection.
    live: Arc<live::LiveStreams>,
}

impl ChatService {
    pub fn new(
        store: Arc<dyn Store>,
        providers: Arc<Registry>,
        files: Arc<Files>,
        budgets: Arc<Budgets>,
        specialists: Specialists,
        config: ChatConfig,
    ) -> Self {
        let usage = UsageWriter::spawn(
            store.clone(),
            config.usage_queue,
            config.usage_batch_rows,
            Duration::from_millis(config.usage_flush_ms),
        );
        let cut = CancellationToken::new();
        let titles = Arc::new(titles::Titles::new(
            store.clone(),
            providers.clone(),
            usage.clone(),
            budgets.clone(),
            config.title_model.clone(),
            cut.clone(),
        ));
        Self {
            store,
            providers,
            files,
            budgets,
            specialists,
            usage,
            titles,
            config,
            generations: TaskTracker::new(),
            cut,
            closing: std::sync::atomic::AtomicBool::new(false),
            live: Arc::default(),
        }
    }

    pub fn specialists(&self) -> &Specialists {
        &self.specialists
    }

    /// The models a role may name directly (`chat.direct_models`), if it may chat at all.
    pub fn direct_models(&self, role: Role) -> &[String] {
        let roles = &self.config.direct_model_roles;
        if role >= Role::User && (roles.is_empty() || roles.iter().any(|r| r == role.as_str())) {
            &self.config.direct_models
        } else {
            &[]
        }
    }

    /// What `name` calls for this role: a specialist, or (when allowed) a direct model as
    /// a specialist of its own with no prompt; `true` for the latter.
    pub fn resolve(
        &self,
        name: &str,
        role: Role,
        allow_direct: bool,
    ) -> Option<(Specialist, bool)> {
        if let Some(s) = self.specialists.get(name).filter(|s| s.allows(role)) {
            return Some((s.clone(), false));
        }
        if !allow_direct || !self.direct_models(role).iter().any(|m| m == name) {
            return None;
        }
        Some((Specialist::direct(name), true))
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub fn usage_queue_depth(&self) -> usize {
        self.usage.queue_depth()
    }

    /// One whole answer. The call runs detached: if the caller goes away it still finishes
    /// and is stored and accounted.
    pub async fn send(
        self: &Arc<Self>,
        principal: &Principal,
        input: ChatInput,
        request_id: String,
    ) -> Result<ChatOutcome, ChatError> {
        if self.closing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ChatError::ShuttingDown);
        }
        let prepared = self.prepare(principal, input, request_id).await?;
        let this = self.clone();
        self.generations
            .spawn(async move { this.complete(prepared).await }.in_current_span())
            .await
            .map_err(|_| ChatError::Internal)?
    }

    /// Waits, up to `limit`, until every usage row recorded so far is written.
    pub async fn settle_usage(&self, limit: Duration) -> bool {
        self.usage.settle(limit).await
    }

    /// A streamed answer: the start info now, the events through the receiver. The
    /// generation does not depend on the receiver being read, or kept.
    pub async fn stream(
        self: &Arc<Self>,
        principal: &Principal,
        input: ChatInput,
        request_id: String,
    ) -> Result<(StreamStart, mpsc::UnboundedReceiver<ChatEvent>), ChatError> {
        if self.closing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ChatError::ShuttingDown);
        }
        let mut prepared = self.prepare(principal, input, request_id).await?;
        prepared.streamed = true;
        let start = StreamStart {
            conversation_id: prepared.conversation_id,
            message_id: prepared.assistant_message_id,
            specialist_id: prepared.specialist.id.clone(),
            model: prepared.specialist.model.clone(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        // A stored conversation's answer can be picked up again; a stateless one has no id
        // to ask for it by.
        let live = prepared.assistant_message_id.map(|id| {
            let live = self.live.open(id, &prepared.user_id);
            (id, live, self.live.clone())
        });
        let sink = live::Sink::new(tx, live);
        let this = self.clone();
        self.generations
            .spawn(async move { this.generate(prepared, sink).await }.in_current_span());
        Ok((start, rx))
    }

    /// A stream of the caller's, from byte `from` of its answer: what this instance has
    /// (running, or ended within [`live::LINGER`]), else `StreamNotFound`.
    pub fn follow(
        &self,
        principal: &Principal,
        message_id: Uuid,
        from: usize,
    ) -> Result<impl futures_util::Stream<Item = (usize, ChatEvent)> + Send + use<>, ChatError>
    {
        let live = self
            .live
            .find(message_id, &principal.user_id)
            .ok_or(ChatError::StreamNotFound)?;
        live.follow(from)
            .map_err(|live::BadOffset| ChatError::Invalid {
                field: "Last-Event-ID",
                problem:
                    "not a position in this answer (send the id of the last event you received)"
                        .to_owned(),
            })
    }

    /// Waits for running generations, cutting them at the deadline; then writes every
    /// queued usage row. Call once the server no longer accepts requests.
    pub async fn shutdown(&self, deadline: Duration) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.generations.close();
        if tokio::time::timeout(deadline, self.generations.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                running = self.generations.len(),
                "cutting generations still running at the deadline"
            );
            self.cut.cancel();
            // Cut generations store what they have and finish promptly; wait for all of them,
            // so none sends a usage row after the writer stopped.
            while tokio::time::timeout(Duration::from_secs(10), self.generations.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    running = self.generations.len(),
                    "generations still finishing after the cut"
                );
            }
        }
        // Settlements still being retried reach the ledger before the process goes.
        self.budgets.close(Duration::from_secs(5)).await;
        self.usage.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn a_stream_without_its_last_event_ends_with_an_error() {
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(ChatEvent::Delta("half".into())).unwrap();
        drop(tx);
        let got: Vec<ChatEvent> = events(rx).collect().await;
        assert!(matches!(
            &got[..],
            [
                ChatEvent::Delta(_),
                ChatEvent::Error {
                    code: "internal",
                    ..
                }
            ]
        ));
    }

    #[tokio::test]
    async fn a_finished_stream_ends_with_its_last_event() {
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(ChatEvent::Error {
            code: "cut",
            message: "x".into(),
        })
        .unwrap();
        // A sender still held does not keep the stream open past its last event.
        let got: Vec<ChatEvent> = events(rx).collect().await;
        assert_eq!(got.len(), 1);
        drop(tx);
    }
}
