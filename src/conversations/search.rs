//! Search over the caller's messages: raw queries made safe for both databases' full-text
//! syntax, ranked cursor pages, and HTML-safe snippets with the matches marked.

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ConversationError, cut, keyset_cursor, open_keyset_cursor, page_size};
use crate::domain::{MessageRole, Principal};
use crate::store::{SearchHit, Store};

/// Words of a query past this many are ignored, and words are cut to `MAX_WORD_CHARS`: a
/// 10 KB query costs no more than a short one.
const MAX_WORDS: usize = 16;
const MAX_WORD_CHARS: usize = 64;
/// Words of context shown before the first match, and the snippet's length in words.
const LEAD_WORDS: usize = 6;
const SNIPPET_WORDS: usize = 30;

/// One matching message, as the search API returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchResult {
    pub conversation_id: Uuid,
    pub conversation_title: Option<String>,
    pub message_id: Uuid,
    /// The message's place in its conversation (use it as `before = seq + 1` to open the
    /// conversation's messages at this point).
    pub seq: i64,
    pub role: MessageRole,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// A stretch of the message around its first match, HTML-escaped, with matched words
    /// wrapped in `<mark>`…`</mark>` and `…` where text was left out.
    pub snippet: String,
    /// Relevance, higher is better; comparable only within one search.
    pub score: f64,
}

/// A query parsed into phrases of plain words; quotes group words into a phrase. Anything
/// else (operators, punctuation, SQL, control characters) only separates words.
#[derive(Debug, Default, PartialEq)]
pub struct Query {
    phrases: Vec<Vec<String>>,
}

impl Query {
    pub fn parse(raw: &str) -> Self {
        let mut phrases: Vec<Vec<String>> = Vec::new();
        let mut phrase: Vec<String> = Vec::new();
        let mut word = String::new();
        let mut quoted = false;
        let mut words = 0;
        for c in raw.chars() {
            if c.is_alphanumeric() {
                if word.chars().count() < MAX_WORD_CHARS {
                    word.push(c);
                }
                continue;
            }
            if !word.is_empty() && words < MAX_WORDS {
                phrase.push(std::mem::take(&mut word));
                words += 1;
            }
            word.clear();
            // Outside quotes every word is its own phrase; a quote opens or closes one.
            if c == '"' {
                quoted = !quoted;
            }
            if (!quoted || c == '"') && !phrase.is_empty() {
                phrases.push(std::mem::take(&mut phrase));
            }
        }
        if !word.is_empty() && words < MAX_WORDS {
            phrase.push(word);
        }
        if !phrase.is_empty() {
            phrases.push(phrase);
        }
        Self { phrases }
    }

    pub fn is_empty(&self) -> bool {
        self.phrases.is_empty()
    }

    /// The store's syntax: `"fox" "lazy dog"`. The words are alphanumeric only, so nothing in
    /// them can close a quote or act as an operator in FTS5 or in websearch_to_tsquery.
    pub fn to_terms(&self) -> String {
        let mut out = String::new();
        for phrase in &self.phrases {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push('"');
            out.push_str(&phrase.join(" "));
            out.push('"');
        }
        out
    }

    fn lowercase_words(&self) -> Vec<String> {
        self.phrases
            .iter()
            .flatten()
            .map(|w| w.to_lowercase())
            .collect()
    }
}

/// A page of the caller's messages matching `raw`, best first, and the next page's cursor.
/// A query with no words finds nothing; it is not an error.
pub async fn search(
    store: &dyn Store,
    principal: &Principal,
    raw: &str,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<(Vec<SearchResult>, Option<String>), ConversationError> {
    let limit = page_size(limit)?;
    let after = cursor.map(decode_cursor).transpose()?;
    let query = Query::parse(raw);
    if query.is_empty() {
        return Ok((Vec::new(), None));
    }
    let hits = store
        .search_messages(&principal.user_id, &query.to_terms(), after, limit + 1)
        .await?;
    let (hits, next) = cut(hits, limit, |h| encode_cursor(h.rank, h.message_id));
    let words = query.lowercase_words();
    let results = hits.into_iter().map(|h| result(h, &words)).collect();
    Ok((results, next))
}

fn result(hit: SearchHit, words: &[String]) -> SearchResult {
    SearchResult {
        snippet: snippet(&hit.content, words),
        conversation_id: hit.conversation_id,
        conversation_title: hit.conversation_title,
        message_id: hit.message_id,
        seq: hit.seq,
        role: hit.role,
        created_at: hit.created_at,
        score: hit.rank,
    }
}

/// The last hit's rank (its exact bits, so the keyset compares equal) and message id.
fn encode_cursor(rank: f64, id: Uuid) -> String {
    keyset_cursor(&format!("{:016x}", rank.to_bits()), id)
}

fn decode_cursor(cursor: &str) -> Result<(f64, Uuid), ConversationError> {
    open_keyset_cursor(cursor, |bits| {
        let rank = f64::from_bits(u64::from_str_radix(bits, 16).ok()?);
        rank.is_finite().then_some(rank)
    })
}

/// Up to `SNIPPET_WORDS` words of `content` starting a little before the first word that
/// matches, with every matching word marked. Whitespace runs become one space.
pub fn snippet(content: &str, words: &[String]) -> String {
    // Byte ranges of the content's words, found the way the databases split them.
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in content.char_indices() {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, content.len()));
    }
    let matches =
        |&(s, e): &(usize, usize)| words.iter().any(|w| content[s..e].to_lowercase() == *w);
    let first = spans.iter().position(matches).unwrap_or(0);
    let from = first.saturating_sub(LEAD_WORDS);
    let to = (from + SNIPPET_WORDS).min(spans.len());

    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    let mut cursor = if from > 0 { spans[from].0 } else { 0 };
    for span in &spans[from..to] {
        push_text(&mut out, &content[cursor..span.0]);
        let word = &content[span.0..span.1];
        if matches(span) {
            out.push_str("<mark>");
            push_text(&mut out, word);
            out.push_str("</mark>");
        } else {
            push_text(&mut out, word);
        }
        cursor = span.1;
    }
    if to < spans.len() {
        out.push('…');
    } else {
        push_text(&mut out, &content[cursor..]);
    }
    out.trim().to_owned()
}

/// Appends HTML-escaped text, whitespace runs collapsed to one space.
fn push_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_whitespace() => {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn terms(raw: &str) -> String {
        Query::parse(raw).to_terms()
    }

    #[test]
    fn queries_become_quoted_words_only() {
        assert_eq!(terms("quick brown"), r#""quick" "brown""#);
        assert_eq!(terms(r#"say "lazy dog" now"#), r#""say" "lazy dog" "now""#);
        assert_eq!(terms(r#"unclosed "lazy dog"#), r#""unclosed" "lazy dog""#);
        assert_eq!(
            terms("fox* OR NEAR(a b) -x ^y"),
            r#""fox" "OR" "NEAR" "a" "b" "x" "y""#
        );
        assert_eq!(
            terms("'; DROP TABLE messages; --"),
            r#""DROP" "TABLE" "messages""#
        );
        assert_eq!(terms("\0\u{7}\"\"\"  "), "");
        assert_eq!(terms("héllo 世界 🦀"), r#""héllo" "世界""#);
        assert!(Query::parse("").is_empty());
        let long = "a".repeat(10_000);
        assert_eq!(terms(&long), format!("\"{}\"", "a".repeat(MAX_WORD_CHARS)));
        let many = "w ".repeat(5_000);
        assert_eq!(Query::parse(&many).lowercase_words().len(), MAX_WORDS);
    }

    #[test]
    fn snippets_escape_and_mark() {
        let words = vec!["dog".to_owned()];
        assert_eq!(
            snippet("The <b>lazy</b>\n\n Dog & cat", &words),
            "The &lt;b&gt;lazy&lt;/b&gt; <mark>Dog</mark> &amp; cat"
        );
        let long: Vec<String> = (0..100).map(|i| format!("w{i}")).collect();
        let text = long.join(" ");
        let s = snippet(&text, &["w50".to_owned()]);
        assert!(s.starts_with("…w44 "), "{s}");
        assert!(s.contains("<mark>w50</mark>"));
        assert!(s.ends_with("w73…"), "{s}");
        assert_eq!(snippet("no match here", &words), "no match here");
    }

    #[test]
    fn cursors_round_trip_exactly() {
        let id = Uuid::now_v7();
        for rank in [0.0, 0.0607927, -12.5, f64::MIN_POSITIVE] {
            assert_eq!(decode_cursor(&encode_cursor(rank, id)).unwrap(), (rank, id));
        }
        assert!(decode_cursor("bm90IGEgY3Vyc29y").is_err());
        assert!(
            decode_cursor(&URL_SAFE_NO_PAD.encode(format!("{:016x}|{id}", f64::NAN.to_bits())))
                .is_err()
        );
    }
}
