//! An OpenAI Chat Completions request, read into a `ChatInput`. Every parameter is either
//! honoured, accepted at the one value that changes nothing, or refused with a 400 naming
//! it: a client is never answered as if a setting it sent had applied when it did not.

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::chat::{ChatInput, Compat};
use crate::error::ApiError;
use crate::providers::Speaker;

/// Most stop sequences a request may carry (OpenAI's own bound).
const MAX_STOP: usize = 4;

/// The body of `POST /v1/chat/completions`: OpenAI's Chat Completions request. Also
/// accepted, at their neutral values only: `top_p` 1, `presence_penalty` and
/// `frequency_penalty` 0, `logprobs` false, empty `tools`/`functions`/`logit_bias`,
/// `tool_choice` "none" or "auto" (with no tools), `response_format` {"type": "text"},
/// `store` false, `service_tier` "auto"/"default", `modalities` ["text"]; and ignored:
/// `metadata`, `parallel_tool_calls`, `prompt_cache_key`. Anything else is refused.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CompletionRequest {
    /// A specialist id, or a model the server lets you name directly (see `GET /v1/models`).
    #[schema(example = "general")]
    pub model: String,
    /// The conversation so far: `system`/`developer` messages (after the specialist's own
    /// prompt), then `user` and `assistant` turns, ending with the `user` message to answer.
    pub messages: Vec<WireMessage>,
    #[serde(default)]
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// 0 to 2; defaults to the specialist's.
    pub temperature: Option<f32>,
    /// Deprecated by OpenAI in favour of `max_completion_tokens`; either is honoured.
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    /// Up to 4 sequences where the model stops: a string or an array of strings.
    pub stop: Option<Stop>,
    /// Only 1.
    pub n: Option<u32>,
    /// Your end user's id: the provider sees a hash of it, stable per end user.
    pub user: Option<String>,
    /// OpenAI's newer name for `user`.
    pub safety_identifier: Option<String>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// Send a last chunk with the call's token usage (and `"usage": null` on the others).
    pub include_usage: Option<bool>,
    /// Accepted; chunks are not padded.
    pub include_obfuscation: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct WireMessage {
    /// `system`, `developer`, `user` or `assistant`.
    #[schema(example = "user")]
    pub role: String,
    /// A string, or an array of `{"type": "text", "text": ...}` parts.
    #[schema(value_type = Option<Object>)]
    pub content: Option<Value>,
    /// Accepted and not passed on.
    pub name: Option<String>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub rest: Map<String, Value>,
}

/// The request, ready for the chat service.
#[derive(Debug)]
pub struct Parsed {
    pub input: ChatInput,
    pub stream: bool,
    pub include_usage: bool,
}

fn unsupported(param: &str, message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "unsupported_parameter", message)
        .with_details(serde_json::json!({ "field": param }))
}

fn invalid(param: &str, problem: &str) -> ApiError {
    ApiError::invalid_field(param, format!("Invalid field `{param}`: {problem}"))
}

/// Reads the request; `conversation` is the `X-Conversation-Id` header's, if sent.
pub fn parse(body: CompletionRequest, conversation: Option<Uuid>) -> Result<Parsed, ApiError> {
    check_rest(&body.rest)?;
    if body.n.is_some_and(|n| n != 1) {
        return Err(unsupported("n", "Only `n` = 1 is supported.".into()));
    }
    let stream = body.stream.unwrap_or(false);
    if body.stream_options.is_some() && !stream {
        return Err(invalid(
            "stream_options",
            "only allowed when `stream` is true",
        ));
    }
    let include_usage = body
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let max_tokens = match (body.max_tokens, body.max_completion_tokens) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid(
                "max_completion_tokens",
                "differs from `max_tokens`; send one of them",
            ));
        }
        (a, b) => b.or(a),
    };
    let stop = match body.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    if stop.len() > MAX_STOP || stop.iter().any(String::is_empty) {
        return Err(invalid("stop", "up to 4 non-empty sequences"));
    }
    let end_user = match (body.user, body.safety_identifier) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid(
                "safety_identifier",
                "differs from `user`; send one of them",
            ));
        }
        (a, b) => b.or(a).filter(|u| !u.is_empty()),
    };

    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<(Speaker, String)> = Vec::with_capacity(body.messages.len());
    for (i, message) in body.messages.into_iter().enumerate() {
        let speaker = match message.role.as_str() {
            "system" | "developer" => None,
            "user" => Some(Speaker::User),
            "assistant" => Some(Speaker::Assistant),
            "tool" | "function" => {
                return Err(unsupported(
                    &format!("messages[{i}].role"),
                    "Tool messages are not supported (there are no tools).".into(),
                ));
            }
            other => {
                return Err(invalid(
                    &format!("messages[{i}].role"),
                    &format!("`{other}` is not system, developer, user or assistant"),
                ));
            }
        };
        for (key, value) in &message.rest {
            match key.as_str() {
                _ if value.is_null() => {}
                "tool_calls" | "function_call" => {
                    return Err(unsupported(
                        &format!("messages[{i}].{key}"),
                        "Tool calls are not supported.".into(),
                    ));
                }
                // An earlier answer's refusal text: the content says what was said.
                "refusal" if speaker == Some(Speaker::Assistant) => {}
                _ => {
                    return Err(unsupported(
                        &format!("messages[{i}].{key}"),
                        format!("Unrecognized message field `{key}`."),
                    ));
                }
            }
        }
        let text = text_of(message.content, i)?;
        // Providers refuse empty turns; refused here, it is the caller's 400, not a 502
        // that SDKs would retry.
        if text.trim().is_empty() {
            return Err(invalid(
                &format!("messages[{i}].content"),
                "must not be empty (tool calls are not supported)",
            ));
        }
        match speaker {
            None => system.push(text),
            Some(speaker) => turns.push((speaker, text)),
        }
    }
    let message = match turns.pop() {
        Some((Speaker::User, text)) => text,
        _ => {
            return Err(invalid(
                "messages",
                "must end with the user message to answer",
            ));
        }
    };
    Ok(Parsed {
        input: ChatInput {
            specialist_id: body.model,
            message,
            conversation_id: conversation,
            // Always sent: the request carries the whole conversation, stored or not.
            conversation_history: Some(turns),
            file_ids: Vec::new(),
            temperature: body.temperature,
            max_tokens,
            compat: Compat {
                allow_direct_model: true,
                system: (!system.is_empty()).then(|| system.join("\n\n")),
                stop,
                end_user,
            },
        },
        stream,
        include_usage,
    })
}

/// A message's text: a string, or text parts joined by newlines.
fn text_of(content: Option<Value>, i: usize) -> Result<String, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, part) in parts.into_iter().enumerate() {
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(text))) => texts.push(text.clone()),
                    (Some(kind @ ("image_url" | "input_audio" | "file")), _) => {
                        return Err(unsupported(
                            &format!("messages[{i}].content[{j}]"),
                            format!(
                                "`{kind}` parts are not supported here; attach files through /v1/files and the native chat routes."
                            ),
                        ));
                    }
                    _ => {
                        return Err(invalid(
                            &format!("messages[{i}].content[{j}]"),
                            "a part must be {\"type\": \"text\", \"text\": \"...\"}",
                        ));
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        Some(_) => Err(invalid(
            &format!("messages[{i}].content"),
            "must be a string or an array of text parts",
        )),
    }
}

/// The parameters Colloquy does not model: refused unless null or at their neutral value.
fn check_rest(rest: &Map<String, Value>) -> Result<(), ApiError> {
    for (key, value) in rest {
        let neutral = match key.as_str() {
            _ if value.is_null() => true,
            "top_p" => value.as_f64() == Some(1.0),
            "presence_penalty" | "frequency_penalty" => value.as_f64() == Some(0.0),
            "logprobs" | "store" => value == &Value::Bool(false),
            "tools" | "functions" => value.as_array().is_some_and(Vec::is_empty),
            "logit_bias" => value.as_object().is_some_and(Map::is_empty),
            "tool_choice" | "function_call" => value == "none" || value == "auto",
            "response_format" => value.get("type").and_then(Value::as_str) == Some("text"),
            "service_tier" => value == "auto" || value == "default",
            "modalities" => value
                .as_array()
                .is_some_and(|m| m.len() == 1 && m[0] == "text"),
            // Bookkeeping for OpenAI's own features; they change nothing in the answer.
            "metadata" | "parallel_tool_calls" | "prompt_cache_key" => true,
            "seed" | "top_logprobs" | "audio" | "prediction" | "reasoning_effort"
            | "web_search_options" | "verbosity" => false,
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_parameter",
                    format!("Unrecognized request argument supplied: {key}"),
                )
                .with_details(serde_json::json!({ "field": key })));
            }
        };
        if !neutral {
            return Err(unsupported(
                key,
                format!("`{key}` is not supported by this server with that value."),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: Value) -> Result<Parsed, ApiError> {
        parse(serde_json::from_value(body).unwrap(), None)
    }

    #[test]
    fn messages_become_system_history_and_the_last_user_turn() {
        let p = parsed(serde_json::json!({
            "model": "general",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
            ],
            "max_completion_tokens": 50, "stop": "END", "user": "u-1", "top_p": 1, "n": 1
        }))
        .unwrap();
        assert_eq!(p.input.message, "a\nb");
        assert_eq!(p.input.conversation_history.as_deref().unwrap().len(), 2);
        assert_eq!(
            p.input.compat.system.as_deref(),
            Some("Be brief.\n\nUse French.")
        );
        assert_eq!(p.input.max_tokens, Some(50));
        assert_eq!(p.input.compat.stop, vec!["END"]);
        assert_eq!(p.input.compat.end_user.as_deref(), Some("u-1"));
        assert!(!p.stream);
    }

    #[test]
    fn refusals_name_the_parameter() {
        let cases = [
            (
                serde_json::json!({"top_p": 0.5}),
                "top_p",
                "unsupported_parameter",
            ),
            (serde_json::json!({"n": 2}), "n", "unsupported_parameter"),
            (
                serde_json::json!({"seed": 1}),
                "seed",
                "unsupported_parameter",
            ),
            (
                serde_json::json!({"tools": [{"type": "function"}]}),
                "tools",
                "unsupported_parameter",
            ),
            (
                serde_json::json!({"frobnicate": true}),
                "frobnicate",
                "unknown_parameter",
            ),
            (
                serde_json::json!({"stream_options": {"include_usage": true}}),
                "stream_options",
                "invalid_field",
            ),
            (
                serde_json::json!({"max_tokens": 5, "max_completion_tokens": 6}),
                "max_completion_tokens",
                "invalid_field",
            ),
            (
                serde_json::json!({"stop": ["a", "b", "c", "d", "e"]}),
                "stop",
                "invalid_field",
            ),
        ];
        for (extra, param, code) in cases {
            let mut body =
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            let err = parsed(body).unwrap_err();
            assert_eq!(err.code(), code, "{param}");
            assert_eq!(err.details().unwrap()["field"], param);
        }
    }

    #[test]
    fn empty_turns_are_refused() {
        for content in [Value::Null, Value::from(""), serde_json::json!([])] {
            let err = parsed(serde_json::json!({"model": "m", "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": content},
                {"role": "user", "content": "y"}
            ]}))
            .unwrap_err();
            assert_eq!(err.details().unwrap()["field"], "messages[1].content");
        }
    }

    #[test]
    fn the_last_message_must_be_the_users() {
        let err = parsed(serde_json::json!({"model": "m", "messages": [
            {"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}
        ]}))
        .unwrap_err();
        assert_eq!(err.details().unwrap()["field"], "messages");
        let err = parsed(serde_json::json!({"model": "m", "messages": [
            {"role": "tool", "content": "x", "tool_call_id": "t"}
        ]}))
        .unwrap_err();
        assert_eq!(err.code(), "unsupported_parameter");
        let err = parsed(serde_json::json!({"model": "m", "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}
        ]}))
        .unwrap_err();
        assert_eq!(err.details().unwrap()["field"], "messages[0].content[0]");
    }
}
