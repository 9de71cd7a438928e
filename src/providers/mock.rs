//! The built-in mock provider: no network, deterministic answers, a configurable pace, and
//! realistic usage, so a fresh checkout chats out of the box. Every answer says it is a mock.

use std::time::Duration;

use async_trait::async_trait;

use super::{
    ChatRequest, ChatResponse, ChunkStream, FinishReason, Part, Provider, ProviderChunk,
    ProviderError, Speaker, Usage, tokens,
};

pub struct MockProvider {
    /// Before the first token.
    first_token: Duration,
    /// Between tokens.
    token_interval: Duration,
}

impl MockProvider {
    pub fn new(first_token: Duration, token_interval: Duration) -> Self {
        Self {
            first_token,
            token_interval,
        }
    }

    /// The answer: labelled, and derived only from the request, so it is reproducible.
    pub fn answer(request: &ChatRequest) -> String {
        let last = request
            .messages
            .iter()
            .rev()
            .find(|m| m.speaker == Speaker::User)
            .and_then(|m| {
                m.parts.iter().find_map(|p| match p {
                    Part::Text(t) => Some(t.as_str()),
                    Part::Image { .. } => None,
                })
            })
            .unwrap_or("");
        let mut echo: String = last.chars().take(500).collect();
        if echo.len() < last.len() {
            echo.push('…');
        }
        format!("[mock] You said: {echo}")
    }

    fn pieces(text: &str, max_tokens: Option<u32>) -> (Vec<String>, FinishReason) {
        // Words with their trailing space, so the pieces concatenate back to the text.
        let mut pieces: Vec<String> = text.split_inclusive(' ').map(str::to_owned).collect();
        match max_tokens {
            Some(max) if pieces.len() > max as usize => {
                pieces.truncate(max as usize);
                (pieces, FinishReason::Length)
            }
            _ => (pieces, FinishReason::Stop),
        }
    }

    fn usage(request: &ChatRequest, content: &str) -> Usage {
        Usage {
            input_tokens: tokens::approximate(&request.prompt_text()),
            output_tokens: tokens::approximate(content),
            cached_input_tokens: 0,
            estimated: false,
        }
    }
}

#[async_trait]
impl Provider for MockProvider {
    fn name(&self) -> &str {
        "mock"
    }

    async fn send(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let (pieces, finish_reason) = Self::pieces(&Self::answer(request), request.max_tokens);
        tokio::time::sleep(self.first_token + self.token_interval * pieces.len() as u32).await;
        let content = pieces.concat();
        Ok(ChatResponse {
            usage: Some(Self::usage(request, &content)),
            content,
            finish_reason,
        })
    }

    async fn stream(&self, request: &ChatRequest) -> Result<ChunkStream, ProviderError> {
        let (pieces, finish_reason) = Self::pieces(&Self::answer(request), request.max_tokens);
        let usage = Self::usage(request, &pieces.concat());
        let (first, every) = (self.first_token, self.token_interval);
        let deltas = futures_util::stream::iter(pieces.into_iter().enumerate()).then(
            move |(i, piece)| async move {
                tokio::time::sleep(if i == 0 { first } else { every }).await;
                Ok(ProviderChunk::Delta(piece))
            },
        );
        let tail = futures_util::stream::iter([
            Ok(ProviderChunk::Finish(finish_reason)),
            Ok(ProviderChunk::Usage(usage)),
        ]);
        use futures_util::StreamExt;
        Ok(Box::pin(deltas.chain(tail)))
    }
}
