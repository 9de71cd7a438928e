//! Running a generation: the provider call (whole or streamed) within the generation bound
//! and the shutdown cut, then the assistant message and exactly one usage row.

use std::time::Duration;
use tracing::Instrument;

use futures_util::StreamExt;
use tokio::time::Instant;

use super::live::Sink;
use super::{ChatError, ChatEvent, ChatOutcome, ChatService, Prepared, titles};
use crate::domain::ids::now_utc;
use crate::domain::{MessageRole, MessageStatus, NewMessage, UsageRecord, new_id};
use crate::providers::registry::GenerationStream;
use crate::providers::{CallFailure, Completion, ProviderError, StreamEvent, Usage};

impl ChatService {
    fn deadline(&self, p: &Prepared) -> Instant {
        p.started + Duration::from_secs(self.config.max_generation_secs)
    }

    /// The non-streamed generation.
    pub(super) async fn complete(&self, p: Prepared) -> Result<ChatOutcome, ChatError> {
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
                let partial = self.cut_completion(&p, None, String::new(), None);
                self.finish(&p, &partial, MessageStatus::Cut, Some("cut"))
                    .await?;
                Err(ChatError::Cut("the answer took longer than allowed"))
            }
        }
    }

    /// The streamed generation: forwards text as it comes, whatever happens to the client.
    pub(super) async fn generate(&self, p: Prepared, mut sink: Sink) {
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
                sink.end(error_event(&failure.error));
                return;
            }
            Err(None) => {
                let partial = self.cut_completion(&p, None, String::new(), None);
                let _ = self
                    .finish(&p, &partial, MessageStatus::Cut, Some("cut"))
                    .await;
                sink.end(ChatEvent::Error {
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
            let ended_early = match next {
                Next::Event(Some(event)) => Ok(*event),
                // The registry always ends with Done or Failed; were a stream to end
                // without either, what it produced is still stored and accounted.
                Next::Event(None) => Err(("upstream_error", "The answer ended early.")),
                Next::Cut => Err(("cut", "The answer was cut.")),
            };
            let event = match ended_early {
                Ok(event) => event,
                Err((code, message)) => {
                    let content = std::mem::take(&mut content);
                    let answering = answering(&stream);
                    self.end_early(&p, answering, content, ttft, code, message, &mut sink)
                        .await;
                    return;
                }
            };
            match event {
                StreamEvent::Delta(text) => {
                    ttft.get_or_insert_with(|| p.started.elapsed());
                    content.push_str(&text);
                    sink.delta(text);
                }
                StreamEvent::Done(c) => {
                    match self.finish(&p, &c, MessageStatus::Complete, None).await {
                        Ok(outcome) => {
                            sink.end(ChatEvent::Done(Box::new(outcome)));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "could not store a finished answer");
                            sink.end(ChatEvent::Error {
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
                    sink.end(error_event(&error));
                    return;
                }
            }
        }
    }

    /// Stores and accounts what a stream produced before it stopped without its end (cut by
    /// us, or ended by the provider), and tells the client.
    #[allow(clippy::too_many_arguments)]
    async fn end_early(
        &self,
        p: &Prepared,
        answering: (String, String),
        content: String,
        ttft: Option<Duration>,
        code: &'static str,
        message: &str,
        sink: &mut Sink,
    ) {
        let partial = self.cut_completion(p, Some(answering), content, ttft);
        let _ = self
            .finish(p, &partial, MessageStatus::Cut, Some(code))
            .await;
        sink.end(ChatEvent::Error {
            code,
            message: message.to_owned(),
        });
    }

    /// A completion for an answer we stopped ourselves: usage estimated.
    fn cut_completion(
        &self,
        p: &Prepared,
        answering: Option<(String, String)>,
        content: String,
        ttft: Option<Duration>,
    ) -> Completion {
        // The model that was answering when we stopped it (a fallback, perhaps); before any
        // answer started, the specialist's own.
        let (provider, model) = answering.unwrap_or_else(|| {
            let provider = crate::providers::registry::split_model(&p.specialist.model)
                .map(|(p, _)| p.to_owned())
                .unwrap_or_default();
            (provider, p.specialist.model.clone())
        });
        let (usage, cost_nano_usd) = self.providers.estimated_cost(&model, &p.request, &content);
        Completion {
            cost_nano_usd,
            content,
            usage,
            finish_reason: crate::providers::FinishReason::Cut,
            provider,
            model,
            latency: p.started.elapsed(),
            ttft,
            attempts: 1,
        }
    }

    /// Accounts the call, then stores the assistant message: the usage row comes first so a
    /// storage failure can never leave a provider call unaccounted.
    async fn finish(
        &self,
        p: &Prepared,
        c: &Completion,
        status: MessageStatus,
        error_code: Option<&str>,
    ) -> Result<ChatOutcome, ChatError> {
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
        self.append_answer(p, &c.content, Some(c.usage), status)
            .await?;
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

    /// Appends the assistant message (in conversation mode); a failure is logged here.
    async fn append_answer(
        &self,
        p: &Prepared,
        content: &str,
        usage: Option<Usage>,
        status: MessageStatus,
    ) -> Result<(), ChatError> {
        let (Some(conversation_id), Some(id)) = (p.conversation_id, p.assistant_message_id) else {
            return Ok(());
        };
        let appended = self
            .store
            .append_message(&NewMessage {
                id,
                conversation_id,
                role: MessageRole::Assistant,
                content: content.to_owned(),
                attachments: serde_json::json!([]),
                input_tokens: usage.map(|u| u.input_tokens as i64),
                output_tokens: usage.map(|u| u.output_tokens as i64),
                status,
                created_at: now_utc(),
            })
            .await;
        match &appended {
            Err(e) => {
                tracing::error!(error = %e, conversation = %conversation_id, "could not store the assistant message");
            }
            // The first exchange is complete: name the conversation, off the request path
            // (tracked with the generations, so shutdown waits for it).
            Ok(_) => {
                if let Some(first_message) = &p.untitled {
                    let untitled = titles::Untitled {
                        conversation_id,
                        first_message: first_message.clone(),
                        user_id: p.user_id.clone(),
                        user_hash: p.user_hash.clone(),
                        request_id: p.request_id.clone(),
                    };
                    self.generations
                        .spawn(self.titles.clone().name(untitled).in_current_span());
                }
            }
        }
        Ok(appended.map(drop)?)
    }

    /// A call that produced nothing: a failed usage row, then an empty assistant message
    /// with status `error`.
    async fn fail(&self, p: &Prepared, f: &CallFailure) -> Result<(), ChatError> {
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
        self.append_answer(p, "", None, MessageStatus::Error).await
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
        // The reservation becomes the call's cost (taken once: a call is accounted once).
        let hold = p.hold.lock().ok().and_then(|mut h| h.take());
        if let Some(hold) = hold {
            hold.settle(cost_nano_usd).await;
        }
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.usage
            .record(UsageRecord {
                id: new_id(),
                request_id: p.request_id.clone(),
                user_hash: p.user_hash.clone(),
                conversation_id: p.conversation_id,
                specialist_id: (!p.direct).then(|| p.specialist.id.clone()),
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

/// The provider and model answering a stream (after any fallback).
fn answering(stream: &GenerationStream) -> (String, String) {
    (stream.provider.clone(), stream.model.clone())
}
