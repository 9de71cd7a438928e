//! Automatic titles: after a conversation's first exchange a cheap model names it, in the
//! background; when that fails the first message, cut at a word boundary, is the title.
//! Only an untitled conversation is named, so a title the user set is never overwritten.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::budgets::{Budgets, Payer};
use crate::domain::ids::now_utc;
use crate::domain::{UsageRecord, new_id};
use crate::providers::{ChatMessage, ChatRequest, Registry, Speaker};
use crate::store::Store;
use crate::store::usage_writer::UsageWriter;

/// Longest generated title, and longest fallback, in characters.
const MAX_TITLE_CHARS: usize = 80;
const MAX_FALLBACK_CHARS: usize = 60;
/// How much of the first message the model sees.
const PROMPT_CHARS: usize = 2_000;
const INSTRUCTIONS: &str = "You name conversations. Reply with a title of at most six words \
     for the conversation that starts with the user's message: no quotes, no final \
     punctuation, nothing else.";

/// What naming one conversation needs: the first message and whose call it is.
pub(super) struct Untitled {
    pub conversation_id: Uuid,
    pub first_message: String,
    pub user_id: String,
    pub user_hash: String,
    pub request_id: String,
}

pub(super) struct Titles {
    store: Arc<dyn Store>,
    providers: Arc<Registry>,
    usage: UsageWriter,
    budgets: Arc<Budgets>,
    /// provider/model; empty: always the fallback.
    model: String,
    /// Fired at the shutdown deadline: the fallback is stored without waiting for the model.
    cut: CancellationToken,
    timeout: Duration,
}

impl Titles {
    pub(super) fn new(
        store: Arc<dyn Store>,
        providers: Arc<Registry>,
        usage: UsageWriter,
        budgets: Arc<Budgets>,
        model: String,
        cut: CancellationToken,
    ) -> Self {
        Self {
            store,
            providers,
            usage,
            budgets,
            model,
            cut,
            timeout: Duration::from_secs(30),
        }
    }

    /// Names the conversation unless it has a title by the time the name is ready.
    pub(super) async fn name(self: Arc<Self>, untitled: Untitled) {
        let title = match self.generate(&untitled).await {
            Some(title) => title,
            None => fallback(&untitled.first_message),
        };
        match self
            .store
            .set_title_if_untitled(untitled.conversation_id, &title)
            .await
        {
            Ok(_) => {}
            Err(e) => tracing::warn!(
                error = %e,
                conversation = %untitled.conversation_id,
                "could not store the conversation's title"
            ),
        }
    }

    /// The model's title, cleaned; None when there is no model, it fails, or says nothing
    /// usable. The call is accounted like any other.
    async fn generate(&self, untitled: &Untitled) -> Option<String> {
        // No model, or shutting down past the deadline: the fallback, and no call made.
        if self.model.is_empty() || self.cut.is_cancelled() {
            return None;
        }
        let prompt: String = untitled.first_message.chars().take(PROMPT_CHARS).collect();
        let mut request = ChatRequest {
            model: String::new(),
            system: Some(INSTRUCTIONS.to_owned()),
            messages: vec![ChatMessage::text(Speaker::User, prompt)],
            temperature: Some(0.2),
            max_tokens: Some(24),
            stop: Vec::new(),
            user: Some(untitled.user_hash.clone()),
        };
        let chain = [self.model.clone()];
        // A title is a call like any other: within the user's budget, or not made.
        let payer = Payer {
            user_id: &untitled.user_id,
            user_hash: &untitled.user_hash,
        };
        let hold = match self.budgets.admit(payer, &chain, &mut request).await {
            Ok(hold) => hold,
            Err(e) => {
                tracing::info!(error = %e, conversation = %untitled.conversation_id, "no title call: the budget does not allow it");
                return None;
            }
        };
        let started = tokio::time::Instant::now();
        // None: cut by shutdown (`cut`), Some(None): our own deadline passed.
        let call = tokio::select! {
            r = tokio::time::timeout(self.timeout, self.providers.send(&chain, &request)) => Some(r.ok()),
            () = self.cut.cancelled() => None,
        };
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let mut row = UsageRecord {
            id: new_id(),
            request_id: untitled.request_id.clone(),
            user_hash: untitled.user_hash.clone(),
            conversation_id: Some(untitled.conversation_id),
            specialist_id: None,
            provider: crate::providers::registry::split_model(&self.model)
                .map(|(p, _)| p.to_owned())
                .unwrap_or_default(),
            model: self.model.clone(),
            input_tokens: 0,
            output_tokens: 0,
            cached_tokens: 0,
            usage_estimated: false,
            cost_nano_usd: 0,
            latency_ms: ms(started.elapsed()),
            ttft_ms: None,
            streamed: false,
            success: false,
            error_code: None,
            created_at: now_utc(),
        };
        let title = match call {
            Some(Some(Ok(c))) => {
                row.provider = c.provider;
                row.model = c.model;
                row.input_tokens = c.usage.input_tokens as i64;
                row.output_tokens = c.usage.output_tokens as i64;
                row.cached_tokens = c.usage.cached_input_tokens as i64;
                row.usage_estimated = c.usage.estimated;
                row.cost_nano_usd = c.cost_nano_usd;
                row.success = true;
                clean(&c.content)
            }
            Some(Some(Err(f))) => {
                tracing::info!(error = %f.error, conversation = %untitled.conversation_id, "title generation failed; using the first message");
                row.error_code = Some(f.error.code().to_owned());
                None
            }
            // Cut by the deadline or shutdown: the prompt may already be billed, so it is
            // estimated and priced, as a cut chat answer is (never a silent zero).
            cut => {
                let (usage, cost) = self.providers.estimated_cost(&self.model, &request, "");
                row.input_tokens = usage.input_tokens as i64;
                row.usage_estimated = true;
                row.cost_nano_usd = cost;
                let code = if cut.is_none() {
                    "cut"
                } else {
                    "upstream_timeout"
                };
                row.error_code = Some(code.to_owned());
                None
            }
        };
        if let Some(hold) = hold {
            hold.settle(row.cost_nano_usd).await;
        }
        self.usage.record(row).await;
        title
    }
}

/// A model's answer as a title: its first line, without a "Title:" label, quotes, markdown
/// or final punctuation, cut to `MAX_TITLE_CHARS`. None when nothing is left.
pub fn clean(answer: &str) -> Option<String> {
    let line = answer.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = match line.get(..6) {
        Some(label) if label.eq_ignore_ascii_case("title:") => &line[6..],
        _ => line,
    };
    let junk = |c: char| {
        matches!(c, '"' | '\'' | '*' | '#' | '`' | '“' | '”' | '‘' | '’') || c.is_whitespace()
    };
    let line = line
        .trim_matches(junk)
        .trim_end_matches(['.', '!', ':', ';', ',']);
    let title = words(line);
    (!title.is_empty()).then(|| cut_at_word(&title, MAX_TITLE_CHARS))
}

/// The first message as a title: one line, cut at a word boundary.
pub fn fallback(first_message: &str) -> String {
    let title = cut_at_word(&words(first_message), MAX_FALLBACK_CHARS);
    if title.is_empty() {
        "Untitled".to_owned()
    } else {
        title
    }
}

/// Whitespace runs (newlines too) as one space, control characters dropped.
fn words(text: &str) -> String {
    text.split_whitespace()
        .map(|w| w.chars().filter(|c| !c.is_control()).collect::<String>())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` if it fits in `max` characters; else its longest run of whole words that does,
/// with `…` (a word longer than half of `max` is cut inside).
fn cut_at_word(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let head: String = text.chars().take(max - 1).collect();
    let cut = match head.rfind(' ') {
        Some(i) if head[..i].chars().count() >= max / 2 => head[..i].trim_end(),
        _ => head.as_str(),
    };
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_cleaned() {
        assert_eq!(
            clean("Title: \"Budget review.\"\n").as_deref(),
            Some("Budget review")
        );
        assert_eq!(
            clean("\n\n  **Trip  to Lisbon**  \nmore").as_deref(),
            Some("Trip to Lisbon")
        );
        assert_eq!(clean("  \n \"\" ..."), None);
        let long = "word ".repeat(40);
        let title = clean(&long).unwrap();
        assert!(
            title.chars().count() <= MAX_TITLE_CHARS && title.ends_with("word…"),
            "{title}"
        );
    }

    #[test]
    fn fallback_cuts_at_a_word() {
        assert_eq!(fallback("  Hello\nthere  "), "Hello there");
        let message =
            "Could you help me plan a three week trip through Portugal and Spain in May please";
        let title = fallback(message);
        assert_eq!(
            title,
            "Could you help me plan a three week trip through Portugal…"
        );
        assert!(title.chars().count() <= MAX_FALLBACK_CHARS);
        let word = "x".repeat(100);
        assert_eq!(fallback(&word).chars().count(), MAX_FALLBACK_CHARS);
        assert_eq!(fallback("\u{7}\u{7}"), "Untitled");
    }
}
