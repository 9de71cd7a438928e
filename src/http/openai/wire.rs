//! OpenAI's response shapes: the completion, the stream's chunks and the model list. Chunks
//! borrow their text: one is serialized per token.

use serde::Serialize;
use utoipa::ToSchema;

use crate::chat::ChatOutcome;

/// `POST /v1/chat/completions` without `stream`: OpenAI's `chat.completion` object.
#[derive(Debug, Serialize, ToSchema)]
pub struct Completion {
    #[schema(example = "chatcmpl-0193a1b2c3d4e5f6a7b8c9d0e1f2a3b4")]
    pub id: String,
    #[schema(example = "chat.completion")]
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The `model` asked for.
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: WireUsage,
    #[schema(value_type = Option<String>)]
    pub system_fingerprint: Option<()>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<()>,
    /// `stop`, `length` or `content_filter`.
    pub finish_reason: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantMessage {
    #[schema(example = "assistant")]
    pub role: &'static str,
    pub content: String,
    #[schema(value_type = Option<String>)]
    pub refusal: Option<()>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct WireUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: PromptTokensDetails,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct PromptTokensDetails {
    pub cached_tokens: u64,
}

impl WireUsage {
    pub fn of(outcome: &ChatOutcome) -> Self {
        let u = outcome.usage;
        Self {
            prompt_tokens: u.input_tokens,
            completion_tokens: u.output_tokens,
            total_tokens: u.input_tokens + u.output_tokens,
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: u.cached_input_tokens,
            },
        }
    }
}

/// OpenAI's finish reasons for ours: an answer we cut short reads as `length`.
pub fn finish_reason(ours: &str) -> &'static str {
    match ours {
        "length" | "cut" => "length",
        "content_filter" => "content_filter",
        "tool_calls" => "tool_calls",
        _ => "stop",
    }
}

impl Completion {
    pub fn new(id: String, created: u64, model: String, outcome: ChatOutcome) -> Self {
        let usage = WireUsage::of(&outcome);
        Self {
            id,
            object: "chat.completion",
            created,
            model,
            choices: vec![Choice {
                index: 0,
                finish_reason: finish_reason(&outcome.finish_reason),
                message: AssistantMessage {
                    role: "assistant",
                    content: outcome.content,
                    refusal: None,
                },
                logprobs: None,
            }],
            usage,
            system_fingerprint: None,
        }
    }
}

/// One `chat.completion.chunk` of a stream.
#[derive(Debug, Serialize)]
pub struct Chunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub system_fingerprint: Option<()>,
    pub choices: &'a [ChunkChoice<'a>],
    /// Absent unless usage was asked for; then `null` on every chunk but the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<WireUsage>>,
}

#[derive(Debug, Serialize)]
pub struct ChunkChoice<'a> {
    pub index: u32,
    pub delta: Delta<'a>,
    pub logprobs: Option<()>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Default, Serialize)]
pub struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
}

/// `GET /v1/models`: OpenAI's list of model objects.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    #[schema(example = "list")]
    pub object: &'static str,
    pub data: Vec<Model>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Model {
    /// What to send as `model`: a specialist id, or a provider/model named directly.
    #[schema(example = "general")]
    pub id: String,
    #[schema(example = "model")]
    pub object: &'static str,
    /// Unix seconds; 0, as the server does not know when a model was made.
    pub created: u64,
    /// `colloquy` for a specialist; the provider for a model named directly.
    pub owned_by: String,
}
