//! Server-Sent Events from a provider, parsed by eventsource-stream, with the silence between
//! events bounded and transport errors mapped to provider errors.

use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt};

use super::ProviderError;

/// The events of a streamed response; a read silence longer than `read_timeout` ends the
/// stream with a timeout.
pub fn events(
    response: reqwest::Response,
    read_timeout: Duration,
) -> impl Stream<Item = Result<Event, ProviderError>> + Send {
    let inner = response.bytes_stream().eventsource();
    futures_util::stream::unfold(Box::pin(inner), move |mut inner| async move {
        match tokio::time::timeout(read_timeout, inner.next()).await {
            Err(_) => Some((Err(ProviderError::Timeout), inner)),
            Ok(None) => None,
            Ok(Some(Ok(event))) => Some((Ok(event), inner)),
            Ok(Some(Err(e))) => Some((
                Err(ProviderError::Unavailable(format!("stream broken: {e}"))),
                inner,
            )),
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
