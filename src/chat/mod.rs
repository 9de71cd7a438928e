//! The chat service: resolve the specialist, load and trim history, append the user message,
//! run the provider call as a detached generation (it finishes, is stored and is accounted
//! even if the client leaves), append the assistant message, and hand one usage row per
//! call to the batched writer.

pub mod idempotency;
pub mod prompt;
pub mod specialists;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::config::ChatConfig;
use crate::domain::ids::now_utc;
use crate::domain::{
    Conversation, MessageRole, MessageStatus, NewMessage, Principal, Role, UsageRecord, new_id,
};
use crate::files::{FileError, Files};
use crate::providers::registry::estimate;
use crate::providers::{
    CallFailure, ChatMessage, ChatRequest, Completion, Part, ProviderError, Registry, Speaker,
    StreamEvent, Usage,
};
use crate::store::usage_writer::UsageWriter;
use crate::store::{Store, StoreError};
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
    Files(#[from] FileError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the generation task failed")]
    Internal,
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
    conversation_id: Option<Uuid>,
    assistant_message_id: Option<Uuid>,
    request: ChatRequest,
    user_hash: String,
    request_id: String,
    started: Instant,
    streamed: bool,
}

pub struct ChatService {
    store: Arc<dyn Store>,
    providers: Arc<Registry>,
    files: Arc<Files>,
    specialists: Specialists,
    usage: UsageWriter,
    config: ChatConfig,
    /// Running generations, awaited on shutdown.
    generations: TaskTracker,
    /// Fired at the shutdown deadline: running generations stop and are stored as `cut`.
    cut: CancellationToken,
}

impl ChatService {
    pub fn new(
        store: Arc<dyn Store>,
        providers: Arc<Registry>,
        files: Arc<Files>,
        specialists: Specialists,
        config: ChatConfig,
    ) -> Self {
        let usage = UsageWriter::spawn(
            store.clone(),
            config.usage_queue,
            config.usage_batch_rows,
            Duration::from_millis(config.usage_flush_ms),
        );
        Self {
            store,
            providers,
            files,
            specialists,
            usage,
            config,
            generations: TaskTracker::new(),
            cut: CancellationToken::new(),
        }
    }

    pub fn specialists(&self) -> &Specialists {
        &self.specialists
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
        let prepared = self.prepare(principal, input, request_id).await?;
        let this = self.clone();
        self.generations
            .spawn(async move { this.complete(prepared).await })
            .await
            .map_err(|_| ChatError::Internal)?
    }

    /// A streamed answer: the start info now, the events through the receiver. The
    /// generation does not depend on the receiver being read, or kept.
    pub async fn stream(
        self: &Arc<Self>,
        principal: &Principal,
        input: ChatInput,
        request_id: String,
    ) -> Result<(StreamStart, mpsc::UnboundedReceiver<ChatEvent>), ChatError> {
        let mut prepared = self.prepare(principal, input, request_id).await?;
        prepared.streamed = true;
        let start = StreamStart {
            conversation_id: prepared.conversation_id,
            message_id: prepared.assistant_message_id,
            specialist_id: prepared.specialist.id.clone(),
            model: prepared.specialist.model.clone(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let this = self.clone();
        self.generations
            .spawn(async move { this.generate(prepared, tx).await });
        Ok((start, rx))
    }

    /// Waits for running generations, cutting them at the deadline; then writes every
    /// queued usage row. Call once the server no longer accepts requests.
    pub async fn shutdown(&self, deadline: Duration) {
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
            let _ = tokio::time::timeout(Duration::from_secs(10), self.generations.wait()).await;
        }
        self.usage.shutdown().await;
    }

    async fn prepare(
        &self,
        principal: &Principal,
        input: ChatInput,
        request_id: String,
    ) -> Result<Prepared, ChatError> {
        let started = Instant::now();
        if !principal.has_role(Role::User) {
            return Err(ChatError::Forbidden);
        }
        let message = input.message.trim().to_owned();
        if message.is_empty() {
            return Err(ChatError::Invalid {
                field: "message",
                problem: "must not be empty".into(),
            });
        }
        if message.chars().count() > self.config.max_message_chars {
            return Err(ChatError::Invalid {
                field: "message",
                problem: format!("at most {} characters", self.config.max_message_chars),
            });
        }
        if let Some(t) = input.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(ChatError::Invalid {
                field: "temperature",
                problem: "between 0 and 2".into(),
            });
        }
        if input.max_tokens == Some(0) {
            return Err(ChatError::Invalid {
                field: "max_tokens",
                problem: "at least 1".into(),
            });
        }
        let specialist = self
            .specialists
            .get(&input.specialist_id)
            .filter(|s| s.allows(principal.role))
            .ok_or(ChatError::SpecialistNotFound)?
            .clone();

        // History: stored, sent along (stateless), or none (a new conversation).
        let (conversation_id, mut messages) =
            match (input.conversation_id, &input.conversation_history) {
                (Some(_), Some(_)) => {
                    return Err(ChatError::Invalid {
                        field: "conversation_history",
                        problem: "cannot be combined with conversation_id".into(),
                    });
                }
                (Some(id), None) => {
                    let conversation = match self.store.get_conversation(id).await? {
                        Some(c) if c.owner == principal.user_id => c,
                        _ => return Err(ChatError::ConversationNotFound),
                    };
                    let stored = self.store.list_messages(conversation.id).await?;
                    (
                        Some(conversation.id),
                        prompt::history(&stored, self.config.context_budget_tokens),
                    )
                }
                (None, Some(history)) => {
                    if history.len() > self.config.max_history_messages {
                        return Err(ChatError::Invalid {
                            field: "conversation_history",
                            problem: format!(
                                "at most {} entries",
                                self.config.max_history_messages
                            ),
                        });
                    }
                    if history
                        .iter()
                        .any(|(_, c)| c.chars().count() > self.config.max_message_chars)
                    {
                        return Err(ChatError::Invalid {
                            field: "conversation_history",
                            problem: format!(
                                "entries of at most {} characters",
                                self.config.max_message_chars
                            ),
                        });
                    }
                    (
                        None,
                        history
                            .iter()
                            .map(|(s, c)| ChatMessage::text(*s, c.clone()))
                            .collect(),
                    )
                }
                (None, None) => (
                    Some(
                        self.new_conversation(principal, &specialist, &message)
                            .await?,
                    ),
                    Vec::new(),
                ),
            };

        // Attachments: the caller's files; text into the prompt, images to models that take them.
        let mut texts = Vec::new();
        let mut images = Vec::new();
        let mut attached = Vec::new();
        let mut budget = self.config.attachment_budget_chars;
        for id in &input.file_ids {
            let file = self.files.get(principal, *id).await?;
            attached.push(serde_json::json!({"file_id": file.id, "name": file.display_name, "mime": file.mime}));
            if file.mime.starts_with("image/") {
                if !specialist.accepts_images {
                    return Err(ChatError::AttachmentNotSupported(format!(
                        "{} does not take images",
                        specialist.name
                    )));
                }
                if file.size as u64 > self.config.max_image_bytes {
                    return Err(ChatError::AttachmentNotSupported(format!(
                        "images up to {} bytes",
                        self.config.max_image_bytes
                    )));
                }
                let bytes = self.files.bytes(principal, file.id).await?;
                images.push(Part::Image {
                    mime: file.mime.clone(),
                    base64: base64::engine::general_purpose::STANDARD.encode(bytes),
                });
                continue;
            }
            let (text, _) =
                self.files
                    .text(principal, file.id)
                    .await
                    .map_err(|e| match e {
                        FileError::UnsupportedType(_) => ChatError::AttachmentNotSupported(
                            format!("no text in {}", file.display_name),
                        ),
                        other => ChatError::Files(other),
                    })?;
            let text: String = text.chars().take(budget).collect();
            budget -= text.chars().count();
            texts.push((file.display_name.clone(), text));
        }

        // The user message is stored before the provider is called.
        if let Some(conversation_id) = conversation_id {
            self.store
                .append_message(&NewMessage {
                    id: new_id(),
                    conversation_id,
                    role: MessageRole::User,
                    content: message.clone(),
                    attachments: serde_json::Value::Array(attached),
                    input_tokens: None,
                    output_tokens: None,
                    status: MessageStatus::Complete,
                    created_at: now_utc(),
                })
                .await?;
        }
        messages.push(prompt::user_turn(&message, &texts, images));
        let request = ChatRequest {
            model: String::new(),
            system: Some(specialist.system_prompt.clone()),
            messages,
            temperature: input.temperature.or(specialist.temperature),
            max_tokens: input.max_tokens.or(specialist.max_tokens),
            stop: Vec::new(),
            user: Some(principal.user_hash.clone()),
        };
        Ok(Prepared {
            assistant_message_id: conversation_id.map(|_| new_id()),
            conversation_id,
            specialist,
            request,
            user_hash: principal.user_hash.clone(),
            request_id,
            started,
            streamed: false,
        })
    }

    async fn new_conversation(
        &self,
        principal: &Principal,
        specialist: &Specialist,
        message: &str,
    ) -> Result<Uuid, ChatError> {
        let now = now_utc();
        let mut title: String = message.chars().take(60).collect();
        if title.len() < message.len() {
            title.push('…');
        }
        let conversation = Conversation {
            id: new_id(),
            owner: principal.user_id.clone(),
            title: Some(title),
            specialist_id: Some(specialist.id.clone()),
            message_count: 0,
            created_at: now,
            updated_at: now,
            archived_at: None,
            deleted_at: None,
        };
        self.store.create_conversation(&conversation).await?;
        Ok(conversation.id)
    }

    fn deadline(&self, p: &Prepared) -> Instant {
        p.started + Duration::from_secs(self.config.max_generation_secs)
    }

    /// The non-streamed generation.
    async fn complete(&self, p: Prepared) -> Result<ChatOutcome, ChatError> {
        let chain = p.specialist.chain();
        let result = tokio::select! {
            r = self.providers.send(&chain, &p.request) => r.map_err(Some),
            () = tokio::time::sleep_until(self.deadline(&p)) => Err(None),
            () = self.cut.cancelled() => Err(None),
        };
        match result {
            Ok(c) => {
                let outcome = self.finish(&p, &c, MessageStatus::Complete, None).await?;
                Ok(outcome)
            }
            Err(Some(failure)) => {
                self.fail(&p, &failure).await?;
                Err(ChatError::Provider(failure))
            }
            Err(None) => {
                let partial = self.cut_completion(&p, String::new(), None);
                self.finish(&p, &partial, MessageStatus::Cut, Some("cut"))
                    .await?;
                Err(ChatError::Cut("the answer took longer than allowed"))
            }
        }
    }

    /// The streamed generation: forwards text as it comes, whatever happens to the client.
    async fn generate(&self, p: Prepared, tx: mpsc::UnboundedSender<ChatEvent>) {
        let chain = p.specialist.chain();
        let deadline = self.deadline(&p);
        let opened = tokio::select! {
            r = self.providers.stream(&chain, &p.request) => r.map_err(Some),
            () = tokio::time::sleep_until(deadline) => Err(None),
            () = self.cut.cancelled() => Err(None),
        };
        let mut stream = match opened {
            Ok(s) => s,
            Err(Some(failure)) => {
                let _ = self.fail(&p, &failure).await;
                let _ = tx.send(error_event(&failure.error));
                return;
            }
            Err(None) => {
                let partial = self.cut_completion(&p, String::new(), None);
                let _ = self
                    .finish(&p, &partial, MessageStatus::Cut, Some("cut"))
                    .await;
                let _ = tx.send(ChatEvent::Error {
                    code: "cut",
                    message: "The answer was cut.".into(),
                });
                return;
            }
        };
        let mut content = String::new();
        let mut ttft = None;
        enum Next {
            Event(Option<Box<StreamEvent>>),
            Cut,
        }
        loop {
            let next = tokio::select! {
                e = stream.next() => Next::Event(e.map(Box::new)),
                () = tokio::time::sleep_until(deadline) => Next::Cut,
                () = self.cut.cancelled() => Next::Cut,
            };
            let event = match next {
                Next::Event(Some(event)) => *event,
                Next::Event(None) => return,
                Next::Cut => {
                    let partial = self.cut_completion(&p, std::mem::take(&mut content), ttft);
                    let _ = self
                        .finish(&p, &partial, MessageStatus::Cut, Some("cut"))
                        .await;
                    let _ = tx.send(ChatEvent::Error {
                        code: "cut",
                        message: "The answer was cut.".into(),
                    });
                    return;
                }
            };
            match event {
                StreamEvent::Delta(text) => {
                    ttft.get_or_insert_with(|| p.started.elapsed());
                    content.push_str(&text);
                    // A client that left is not an error: the generation goes on.
                    let _ = tx.send(ChatEvent::Delta(text));
                }
                StreamEvent::Done(c) => {
                    match self.finish(&p, &c, MessageStatus::Complete, None).await {
                        Ok(outcome) => {
                            let _ = tx.send(ChatEvent::Done(Box::new(outcome)));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "could not store a finished answer");
                            let _ = tx.send(ChatEvent::Error {
                                code: "internal",
                                message: "The answer could not be stored.".into(),
                            });
                        }
                    }
                    return;
                }
                StreamEvent::Failed { error, partial } => {
                    let _ = self
                        .finish(&p, &partial, MessageStatus::Cut, Some(error.code()))
                        .await;
                    let _ = tx.send(error_event(&error));
                    return;
                }
            }
        }
    }

    /// A completion for an answer we stopped ourselves: usage estimated.
    fn cut_completion(&self, p: &Prepared, content: String, ttft: Option<Duration>) -> Completion {
        let mut request = p.request.clone();
        request.model = crate::providers::registry::split_model(&p.specialist.model)
            .map(|(_, m)| m.to_owned())
            .unwrap_or_default();
        let usage = estimate(&request, &content);
        let provider = crate::providers::registry::split_model(&p.specialist.model)
            .map(|(p, _)| p.to_owned())
            .unwrap_or_default();
        Completion {
            cost_nano_usd: self
                .providers
                .pricing()
                .cost_nano_usd(&p.specialist.model, &usage),
            content,
            usage,
            finish_reason: crate::providers::FinishReason::Cut,
            provider,
            model: p.specialist.model.clone(),
            latency: p.started.elapsed(),
            ttft,
            attempts: 1,
        }
    }

    /// Stores the assistant message and accounts the call.
    async fn finish(
        &self,
        p: &Prepared,
        c: &Completion,
        status: MessageStatus,
        error_code: Option<&str>,
    ) -> Result<ChatOutcome, ChatError> {
        if let (Some(conversation_id), Some(id)) = (p.conversation_id, p.assistant_message_id) {
            self.store
                .append_message(&NewMessage {
                    id,
                    conversation_id,
                    role: MessageRole::Assistant,
                    content: c.content.clone(),
                    attachments: serde_json::json!([]),
                    input_tokens: Some(c.usage.input_tokens as i64),
                    output_tokens: Some(c.usage.output_tokens as i64),
                    status,
                    created_at: now_utc(),
                })
                .await?;
        }
        let latency = p.started.elapsed();
        self.account(
            p,
            &c.provider,
            &c.model,
            c.usage,
            c.cost_nano_usd,
            latency,
            c.ttft,
            error_code,
        )
        .await;
        Ok(ChatOutcome {
            content: c.content.clone(),
            conversation_id: p.conversation_id,
            message_id: p.assistant_message_id,
            specialist_id: p.specialist.id.clone(),
            specialist_name: p.specialist.name.clone(),
            provider: c.provider.clone(),
            model: c.model.clone(),
            usage: c.usage,
            cost_nano_usd: c.cost_nano_usd,
            latency,
            provider_latency: c.latency,
            ttft: c.ttft,
            finish_reason: c.finish_reason.as_str().to_owned(),
        })
    }

    /// A call that produced nothing: an empty assistant message with status `error`, and a
    /// failed usage row.
    async fn fail(&self, p: &Prepared, f: &CallFailure) -> Result<(), ChatError> {
        if let (Some(conversation_id), Some(id)) = (p.conversation_id, p.assistant_message_id) {
            self.store
                .append_message(&NewMessage {
                    id,
                    conversation_id,
                    role: MessageRole::Assistant,
                    content: String::new(),
                    attachments: serde_json::json!([]),
                    input_tokens: None,
                    output_tokens: None,
                    status: MessageStatus::Error,
                    created_at: now_utc(),
                })
                .await?;
        }
        let model = f
            .model
            .clone()
            .unwrap_or_else(|| p.specialist.model.clone());
        let provider = f.provider.clone().unwrap_or_else(|| "none".to_owned());
        self.account(
            p,
            &provider,
            &model,
            Usage::default(),
            0,
            p.started.elapsed(),
            None,
            Some(f.error.code()),
        )
        .await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn account(
        &self,
        p: &Prepared,
        provider: &str,
        model: &str,
        usage: Usage,
        cost_nano_usd: i64,
        latency: Duration,
        ttft: Option<Duration>,
        error_code: Option<&str>,
    ) {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.usage
            .record(UsageRecord {
                id: new_id(),
                request_id: p.request_id.clone(),
                user_hash: p.user_hash.clone(),
                conversation_id: p.conversation_id,
                specialist_id: Some(p.specialist.id.clone()),
                provider: provider.to_owned(),
                model: model.to_owned(),
                input_tokens: usage.input_tokens as i64,
                output_tokens: usage.output_tokens as i64,
                cached_tokens: usage.cached_input_tokens as i64,
                usage_estimated: usage.estimated,
                cost_nano_usd,
                latency_ms: ms(latency),
                ttft_ms: ttft.map(ms),
                streamed: p.streamed,
                success: error_code.is_none(),
                error_code: error_code.map(str::to_owned),
                created_at: now_utc(),
            })
            .await;
    }
}

fn error_event(error: &ProviderError) -> ChatEvent {
    ChatEvent::Error {
        code: error.code(),
        message: client_message(error).to_owned(),
    }
}

/// What a client is told about a provider failure: fixed sentences, never upstream text.
pub fn client_message(error: &ProviderError) -> &'static str {
    match error.code() {
        "upstream_timeout" => "The model did not answer in time.",
        "upstream_rate_limited" => {
            "The model's provider is rate limiting this server; try again shortly."
        }
        "upstream_unavailable" => "The model's provider is unavailable right now.",
        "context_length_exceeded" => "The conversation is too long for this model.",
        "content_filtered" => "The provider refused this content.",
        "provider_not_configured" => "This specialist's model is not configured on this server.",
        _ => "The model's provider returned an error.",
    }
}
