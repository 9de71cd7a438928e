//! Server-Sent Events from a provider: a small parser of the WHATWG event-stream format,
//! with the silence between chunks bounded and transport errors mapped to provider errors.
//!
//! Hand-written rather than a crate because it runs once per token of every stream: the
//! general parser it replaces cost about 7,000 instructions an event (bench/RESULTS.md);
//! this one splits lines in place and allocates only the event's data.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{Stream, StreamExt};

use super::ProviderError;

/// One event: its type (`event:`, "message" when absent) and its `data:` lines joined by
/// newlines. `id:` and `retry:` are of no use to a one-shot stream and are skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event: String,
    pub data: String,
}

/// The longest line accepted: a provider sending more without a line break is broken.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Turns chunks of bytes into events; lines may be split anywhere between chunks.
#[derive(Default)]
pub struct Parser {
    /// The unfinished line.
    line: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
    /// The last chunk ended with CR: an LF starting the next one belongs to that line end.
    after_cr: bool,
    /// The first line may start with a byte-order mark.
    started: bool,
}

impl Parser {
    pub fn feed(
        &mut self,
        mut bytes: &[u8],
        out: &mut VecDeque<Event>,
    ) -> Result<(), ProviderError> {
        if self.after_cr && bytes.first() == Some(&b'\n') {
            bytes = &bytes[1..];
        }
        self.after_cr = false;
        while let Some(end) = memchr::memchr2(b'\n', b'\r', bytes) {
            if self.line.is_empty() {
                self.line_done(&bytes[..end], out);
            } else {
                self.line.extend_from_slice(&bytes[..end]);
                let line = std::mem::take(&mut self.line);
                self.line_done(&line, out);
                self.line = line;
                self.line.clear();
            }
            let cr = bytes[end] == b'\r';
            bytes = &bytes[end + 1..];
            if cr {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
        }
        self.line.extend_from_slice(bytes);
        if self.line.len() > MAX_LINE_BYTES {
            return Err(ProviderError::Protocol("stream line too long".into()));
        }
        Ok(())
    }

    /// At the end of the body: an event not yet closed by a blank line still counts, so a
    /// provider that omits the last one loses nothing.
    pub fn finish(&mut self, out: &mut VecDeque<Event>) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, out);
        }
        self.dispatch(out);
    }

    fn line_done(&mut self, mut line: &[u8], out: &mut VecDeque<Event>) {
        if !self.started {
            self.started = true;
            line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return; // a comment (keep-alive)
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.push_str(&String::from_utf8_lossy(value));
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut VecDeque<Event>) {
        if self.has_data {
            let event = if self.event.is_empty() {
                "message".to_owned()
            } else {
                std::mem::take(&mut self.event)
            };
            out.push_back(Event {
                event,
                data: std::mem::take(&mut self.data),
            });
        }
        self.event.clear();
        self.data.clear();
        self.has_data = false;
    }
}

struct Reading<B> {
    body: B,
    parser: Parser,
    ready: VecDeque<Event>,
    done: bool,
}

/// The events of a streamed response; a read silence longer than `read_timeout` ends the
/// stream with a timeout.
pub fn events(
    response: reqwest::Response,
    read_timeout: Duration,
) -> impl Stream<Item = Result<Event, ProviderError>> + Send {
    let state = Reading {
        body: Box::pin(response.bytes_stream()),
        parser: Parser::default(),
        ready: VecDeque::new(),
        done: false,
    };
    futures_util::stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(event) = st.ready.pop_front() {
                return Some((Ok(event), st));
            }
            if st.done {
                return None;
            }
            match tokio::time::timeout(read_timeout, st.body.next()).await {
                Err(_) => {
                    st.done = true;
                    return Some((Err(ProviderError::Timeout), st));
                }
                Ok(None) => {
                    st.done = true;
                    st.parser.finish(&mut st.ready);
                }
                Ok(Some(Err(e))) => {
                    st.done = true;
                    let error = ProviderError::Unavailable(format!("stream broken: {e}"));
                    return Some((Err(error), st));
                }
                Ok(Some(Ok(chunk))) => {
                    if let Err(e) = st.parser.feed(&chunk, &mut st.ready) {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                }
            }
        }
    })
}

/// The `Retry-After` of a 429: seconds, or `retry-after-ms`.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
    {
        return Some(Duration::from_secs_f64((ms / 1000.0).clamp(0.0, 3600.0)));
    }
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .map(|s| Duration::from_secs_f64(s.clamp(0.0, 3600.0)))
}

/// Maps a transport error of reqwest.
pub fn transport(e: &reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Timeout
    } else {
        // Connection refused, reset, DNS: nothing reached the provider, or nothing came back.
        ProviderError::Unavailable(if e.is_connect() {
            "connection failed".into()
        } else {
            "transport error".into()
        })
    }
}

/// Reads at most 4 KiB of an error body, for the logs and for classifying it.
pub async fn error_body(response: reqwest::Response) -> String {
    let mut stream = response.bytes_stream();
    let mut bytes = Vec::new();
    while bytes.len() < 4096 {
        match stream.next().await {
            Some(Ok(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(4096);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A body that broke after the provider answered 200: it has already generated (and
/// billed) the answer, so this is not retried, unlike a connection that never got through.
pub fn broken_body(e: &reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Timeout
    } else {
        ProviderError::Protocol("the answer broke off".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Vec<Event> {
        let mut parser = Parser::default();
        let mut out = VecDeque::new();
        for c in chunks {
            parser.feed(c, &mut out).unwrap();
        }
        parser.finish(&mut out);
        out.into()
    }

    fn ev(event: &str, data: &str) -> Event {
        Event {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn events_fields_comments_and_line_ends() {
        let got = parse(&[
            b"\xEF\xBB\xBFdata: one\n\n: keep-alive\n\nevent: ping\ndata:{}\r\n\r\n",
            b"id: 7\nretry: 10\ndata: a\ndata:  b\rdata\r\r",
        ]);
        assert_eq!(
            got,
            vec![
                ev("message", "one"),
                ev("ping", "{}"),
                ev("message", "a\n b\n")
            ]
        );
    }

    #[test]
    fn split_anywhere_gives_the_same_events() {
        let whole: &[u8] =
            "event: delta\r\ndata: {\"t\":\"h\u{e9}llo\"}\r\n\r\ndata: [DONE]\n\n".as_bytes();
        let expected = parse(&[whole]);
        assert_eq!(expected.len(), 2);
        assert_eq!(expected[0], ev("delta", "{\"t\":\"h\u{e9}llo\"}"));
        for cut in 1..whole.len() {
            assert_eq!(
                parse(&[&whole[..cut], &whole[cut..]]),
                expected,
                "cut at {cut}"
            );
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(parse(&bytes), expected);
    }

    #[test]
    fn no_data_no_event_and_a_last_event_without_blank_line_counts() {
        assert!(parse(&[b"event: x\n\n\n"]).is_empty());
        assert_eq!(parse(&[b"data: tail"]), vec![ev("message", "tail")]);
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut parser = Parser::default();
        let mut out = VecDeque::new();
        let chunk = vec![b'x'; 1024 * 1024];
        let mut failed = false;
        for _ in 0..20 {
            if parser.feed(&chunk, &mut out).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
    }
}
