//! Server-Sent Events written as bytes: each event is formatted once into one buffer
//! (`frame`), and keep-alive comments come from a timer that is re-armed only when it
//! fires. axum's `Sse` builds each event field by field and resets its keep-alive timer on
//! every event, which was a third of a token's cost in a stream.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::Stream;
use serde::Serialize;
use tokio::time::{Instant, Sleep};

/// One event: `id: N`, `event: name` and `data:` the compact JSON of `data` (which never
/// holds a raw newline, so one `data:` line carries it whole).
pub fn frame(id: usize, name: &str, data: &impl Serialize) -> Bytes {
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(b"id: ");
    buf.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    buf.extend_from_slice(b"\nevent: ");
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b"\ndata: ");
    // Serializing our own event types cannot fail; an empty object stands in if it did.
    if serde_json::to_writer(&mut buf, data).is_err() {
        buf.extend_from_slice(b"{}");
    }
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

/// A data-only event: `data:` the compact JSON of `data`, as OpenAI's streams send them.
pub fn data(data: &impl Serialize) -> Bytes {
    let mut buf = Vec::with_capacity(128);
    buf.extend_from_slice(b"data: ");
    if serde_json::to_writer(&mut buf, data).is_err() {
        buf.extend_from_slice(b"{}");
    }
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

/// One open SSE stream in the `colloquy_sse_streams_open` gauge, for as long as it lives
/// (a stream's body owns it).
pub struct OpenStream;

impl OpenStream {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        metrics::gauge!(crate::prometheus::SSE_STREAMS).increment(1.0);
        Self
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!(crate::prometheus::SSE_STREAMS).decrement(1.0);
    }
}

/// The `text/event-stream` response for a stream of frames, unbuffered by proxies, with a
/// comment sent after every `keepalive` without an event, so proxies do not close an idle
/// stream.
pub fn response<S>(frames: S, keepalive: Duration) -> Response
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    let body = Body::from_stream(KeepAlive {
        frames: Box::pin(frames),
        every: keepalive,
        timer: Box::pin(tokio::time::sleep(keepalive)),
        last: Instant::now(),
    });
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx (and proxies that follow it) not to buffer the stream.
    headers.insert(
        axum::http::HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    response
}

struct KeepAlive<S> {
    frames: Pin<Box<S>>,
    every: Duration,
    timer: Pin<Box<Sleep>>,
    /// When the last frame went out: the timer, when it fires, is moved on to `last + every`
    /// unless that time has passed.
    last: Instant,
}

impl<S: Stream<Item = Bytes>> Stream for KeepAlive<S> {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.frames.as_mut().poll_next(cx) {
            Poll::Ready(Some(frame)) => {
                self.last = Instant::now();
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            let due = self.last + self.every;
            let now = Instant::now();
            if due <= now {
                self.last = now;
                let next = now + self.every;
                self.timer.as_mut().reset(next);
                return Poll::Ready(Some(Ok(Bytes::from_static(b":\n\n"))));
            }
            // An event went out since the timer was set: wait out the rest from it.
            self.timer.as_mut().reset(due);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[test]
    fn a_frame_is_one_event() {
        let bytes = frame(7, "delta", &serde_json::json!({"content": "a\nb"}));
        assert_eq!(
            &bytes[..],
            b"id: 7\nevent: delta\ndata: {\"content\":\"a\\nb\"}\n\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn comments_only_while_no_event_goes_out() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let frames = futures_util::stream::poll_fn({
            let mut rx = rx;
            move |cx| rx.poll_recv(cx)
        });
        let mut stream = KeepAlive {
            frames: Box::pin(frames),
            every: Duration::from_secs(10),
            timer: Box::pin(tokio::time::sleep(Duration::from_secs(10))),
            last: Instant::now(),
        };
        // Events every 6 s keep the comments away.
        for i in 0..3 {
            tokio::time::advance(Duration::from_secs(6)).await;
            tx.send(Bytes::from(format!("e{i}"))).unwrap();
            let got = stream.next().await.unwrap().unwrap();
            assert_eq!(got, format!("e{i}"));
        }
        // Then silence: a comment 10 s after the last event, and 10 s after that.
        let start = Instant::now();
        assert_eq!(&stream.next().await.unwrap().unwrap()[..], b":\n\n");
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert_eq!(&stream.next().await.unwrap().unwrap()[..], b":\n\n");
        assert_eq!(start.elapsed(), Duration::from_secs(20));
        drop(tx);
        assert!(stream.next().await.is_none());
    }
}
