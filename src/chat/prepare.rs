//! Preparing a chat call: validation, the specialist, history (stored, sent along or none),
//! attachments, and the user message stored before the provider is called.

use base64::Engine;
use tokio::time::Instant;
use uuid::Uuid;

use super::{ChatError, ChatInput, ChatService, Prepared, Specialist, prompt};
use crate::budgets::Payer;
use crate::domain::ids::now_utc;
use crate::domain::{
    Conversation, MessageRole, MessageStatus, NewMessage, Principal, Role, new_id,
};
use crate::files::FileError;
use crate::providers::{ChatMessage, ChatRequest, Part, Speaker};

/// Files one message may attach.
pub const MAX_ATTACHMENTS: usize = 10;
/// Messages read per round trip while gathering a stored conversation's history.
const HISTORY_PAGE: i64 = 100;
/// The largest `max_tokens` a request may ask for.
pub const MAX_TOKENS_LIMIT: u32 = 1_000_000;

impl ChatService {
    pub(super) async fn prepare(
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
        if input
            .max_tokens
            .is_some_and(|n| n == 0 || n > MAX_TOKENS_LIMIT)
        {
            return Err(ChatError::Invalid {
                field: "max_tokens",
                problem: format!("between 1 and {MAX_TOKENS_LIMIT}"),
            });
        }
        let (specialist, direct) = self
            .resolve(
                &input.specialist_id,
                principal.role,
                input.compat.allow_direct_model,
            )
            .ok_or(ChatError::SpecialistNotFound)?;

        // History: stored, sent along (stateless), or none (a new conversation). Both a
        // conversation and sent history (the OpenAI-compatible route with a conversation
        // named): the sent history is the prompt, and the exchange is appended.
        let mut untitled = None;
        let (conversation_id, mut messages) =
            match (input.conversation_id, &input.conversation_history) {
                (Some(id), Some(history)) => {
                    let conversation = self.owned_conversation(principal, id).await?;
                    self.check_sent_history(history)?;
                    untitled = (conversation.title.is_none() && conversation.message_count == 0)
                        .then(|| message.clone());
                    (
                        Some(conversation.id),
                        history
                            .iter()
                            .map(|(s, c)| ChatMessage::text(*s, c.clone()))
                            .collect(),
                    )
                }
                (Some(id), None) => {
                    let conversation = self.owned_conversation(principal, id).await?;
                    // Newest pages first, only as far back as the budget reaches: a long
                    // conversation costs no more to continue than a short one.
                    let mut history = prompt::History::new(self.config.context_budget_tokens);
                    let mut before = None;
                    loop {
                        let page = self
                            .store
                            .messages_before(conversation.id, before, HISTORY_PAGE)
                            .await?;
                        let more = history.take_newest_first(page.iter());
                        match page.last() {
                            Some(oldest) if more && page.len() as i64 == HISTORY_PAGE => {
                                before = Some(oldest.seq);
                            }
                            _ => break,
                        }
                    }
                    untitled = (conversation.title.is_none() && conversation.message_count == 0)
                        .then(|| message.clone());
                    (Some(conversation.id), history.finish())
                }
                (None, Some(history)) => {
                    self.check_sent_history(history)?;
                    (
                        None,
                        history
                            .iter()
                            .map(|(s, c)| ChatMessage::text(*s, c.clone()))
                            .collect(),
                    )
                }
                // A new conversation: created below, once everything else checked out.
                (None, None) => (None, Vec::new()),
            };
        let new_conversation =
            input.conversation_id.is_none() && input.conversation_history.is_none();

        // Attachments: the caller's files; text into the prompt, images to models that take them.
        let mut texts = Vec::new();
        let mut images = Vec::new();
        let mut attached = Vec::new();
        let mut budget = self.config.attachment_budget_chars;
        let mut file_ids = input.file_ids.clone();
        file_ids.sort_unstable();
        file_ids.dedup();
        if file_ids.len() > MAX_ATTACHMENTS {
            return Err(ChatError::Invalid {
                field: "file_ids",
                problem: format!("at most {MAX_ATTACHMENTS} files"),
            });
        }
        for id in &file_ids {
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
            if budget == 0 {
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

        messages.push(prompt::user_turn(&message, &texts, images));
        let compat = input.compat;
        if let Some(system) = &compat.system
            && system.chars().count() > self.config.max_message_chars
        {
            return Err(ChatError::Invalid {
                field: "system",
                problem: format!("at most {} characters", self.config.max_message_chars),
            });
        }
        let system = match (specialist.system_prompt.as_str(), compat.system) {
            ("", None) => None,
            (ours, None) => Some(ours.to_owned()),
            ("", Some(theirs)) => Some(theirs),
            (ours, Some(theirs)) => Some(format!("{ours}\n\n{theirs}")),
        };
        let mut request = ChatRequest {
            model: String::new(),
            system,
            messages,
            temperature: input.temperature.or(specialist.temperature),
            max_tokens: input.max_tokens.or(specialist.max_tokens),
            stop: compat.stop,
            user: Some(match &compat.end_user {
                None => principal.user_hash.clone(),
                Some(end_user) => end_user_hash(&principal.user_hash, end_user),
            }),
        };
        // The budget is checked before anything is stored: a refused call leaves nothing
        // behind. A failure below drops the hold, which releases it.
        let payer = Payer {
            user_id: &principal.user_id,
            user_hash: &principal.user_hash,
        };
        let hold = self
            .budgets
            .admit(payer, &specialist.chain(), &mut request)
            .await?;

        let conversation_id = if new_conversation {
            untitled = Some(message.clone());
            Some(self.new_conversation(principal, &specialist).await?)
        } else {
            conversation_id
        };
        // The user message is stored before the provider is called.
        if let Some(conversation_id) = conversation_id {
            self.store
                .append_message(&NewMessage {
                    id: new_id(),
                    conversation_id,
                    role: MessageRole::User,
                    content: message,
                    attachments: serde_json::Value::Array(attached),
                    input_tokens: None,
                    output_tokens: None,
                    status: MessageStatus::Complete,
                    created_at: now_utc(),
                })
                .await?;
        }
        Ok(Prepared {
            assistant_message_id: conversation_id.map(|_| new_id()),
            conversation_id,
            specialist,
            direct,
            request,
            user_hash: principal.user_hash.clone(),
            user_id: principal.user_id.clone(),
            request_id,
            started,
            streamed: false,
            untitled,
            hold: std::sync::Mutex::new(hold),
        })
    }

    async fn owned_conversation(
        &self,
        principal: &Principal,
        id: Uuid,
    ) -> Result<Conversation, ChatError> {
        match self.store.get_conversation(id).await? {
            Some(c) if c.owner == principal.user_id => Ok(c),
            _ => Err(ChatError::ConversationNotFound),
        }
    }

    /// History sent with the request: as many entries, and as long, as the config allows.
    fn check_sent_history(&self, history: &[(Speaker, String)]) -> Result<(), ChatError> {
        if history.len() > self.config.max_history_messages {
            return Err(ChatError::Invalid {
                field: "conversation_history",
                problem: format!("at most {} entries", self.config.max_history_messages),
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
        Ok(())
    }

    async fn new_conversation(
        &self,
        principal: &Principal,
        specialist: &Specialist,
    ) -> Result<Uuid, ChatError> {
        let now = now_utc();
        // Untitled until its first answer is stored: then `titles` names it.
        let conversation = Conversation {
            id: new_id(),
            owner: principal.user_id.clone(),
            title: None,
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
}

/// The id a provider sees for one of a user's own end users: a hash of both, so it is stable
/// per end user and says nothing about either.
fn end_user_hash(user_hash: &str, end_user: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(user_hash.as_bytes())
        .chain_update([0u8])
        .chain_update(end_user.as_bytes())
        .finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}
