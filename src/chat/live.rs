//! Streams of this instance that a client can pick up again after losing its connection
//! (`GET /v1/chat/stream/{message_id}` with `Last-Event-ID`): each answer's text so far and
//! its last event, kept while it runs and for [`LINGER`] after.
//!
//! Positions are byte offsets into the answer's text, which is what stream event ids are:
//! a client that saw the event with id `n` has the first `n` bytes of the answer.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use super::ChatEvent;

/// How long an ended stream can still be picked up: long enough for a client to notice a
/// dropped connection and reconnect; later, the stored message is the answer.
pub const LINGER: Duration = Duration::from_secs(60);

/// The streams in progress (and lately ended) on this instance, by assistant message id.
#[derive(Default)]
pub struct LiveStreams {
    inner: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    streams: HashMap<Uuid, Arc<Live>>,
    /// Ended streams in the order they ended: dropped from `streams` once past `LINGER`.
    ended: VecDeque<(Instant, Uuid)>,
}

impl Registry {
    fn sweep(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.ended.front() {
            if now.duration_since(at) < LINGER {
                break;
            }
            self.ended.pop_front();
            self.streams.remove(&id);
        }
    }
}

impl LiveStreams {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a stream that is about to start.
    pub fn open(&self, id: Uuid, owner: &str) -> Arc<Live> {
        let live = Arc::new(Live {
            owner: owner.to_owned(),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        });
        let mut registry = self.registry();
        registry.sweep(Instant::now());
        registry.streams.insert(id, live.clone());
        live
    }

    /// The stream has sent its last event: it stays for `LINGER`, then goes.
    fn ended(&self, id: Uuid) {
        let now = Instant::now();
        let mut registry = self.registry();
        registry.ended.push_back((now, id));
        registry.sweep(now);
    }

    /// The caller's stream with this id, if this instance has it. Another user's is as
    /// good as missing: its existence is not revealed.
    pub fn find(&self, id: Uuid, owner: &str) -> Option<Arc<Live>> {
        let mut registry = self.registry();
        registry.sweep(Instant::now());
        registry
            .streams
            .get(&id)
            .filter(|live| live.owner == owner)
            .cloned()
    }

    /// How many streams are held (running or lingering), for tests and metrics.
    pub fn len(&self) -> usize {
        self.registry().streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One stream's text so far and, once it ended, its last event.
pub struct Live {
    owner: String,
    state: Mutex<State>,
    /// Woken on every change, for the followers that wait on it.
    changed: Notify,
}

#[derive(Default)]
struct State {
    text: String,
    end: Option<ChatEvent>,
    /// Followers waiting: with none (the usual case) a token wakes nobody.
    followers: usize,
}

/// Why a stream cannot be followed from the offset asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct BadOffset;

impl Live {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a delta's text.
    fn push(&self, text: &str) {
        let mut state = self.state();
        state.text.push_str(text);
        let wake = state.followers > 0;
        drop(state);
        if wake {
            self.changed.notify_waiters();
        }
    }

    /// Records the last event (`Done` or `Error`).
    fn end(&self, event: ChatEvent) {
        let mut state = self.state();
        state.end = Some(event);
        let wake = state.followers > 0;
        drop(state);
        if wake {
            self.changed.notify_waiters();
        }
    }

    /// The answer from byte `from` on, as it comes: deltas (with the offset after each),
    /// then the last event. `from` beyond what was sent, or inside a character, is refused.
    pub fn follow(
        self: Arc<Self>,
        from: usize,
    ) -> Result<impl futures_util::Stream<Item = (usize, ChatEvent)> + Send, BadOffset> {
        {
            let mut state = self.state();
            if !state.text.is_char_boundary(from) {
                return Err(BadOffset);
            }
            state.followers += 1;
        }
        let follower = Follower {
            live: self,
            offset: from,
            finished: false,
        };
        Ok(futures_util::stream::unfold(follower, |mut f| async move {
            let item = f.next().await?;
            Some((item, f))
        }))
    }
}

struct Follower {
    live: Arc<Live>,
    offset: usize,
    finished: bool,
}

impl Follower {
    async fn next(&mut self) -> Option<(usize, ChatEvent)> {
        if self.finished {
            return None;
        }
        loop {
            // Enabled before the state is read, so a change made after the read wakes it.
            let changed = self.live.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let state = self.live.state();
                if state.text.len() > self.offset {
                    let text = state.text[self.offset..].to_owned();
                    self.offset = state.text.len();
                    return Some((self.offset, ChatEvent::Delta(text)));
                }
                if let Some(end) = &state.end {
                    self.finished = true;
                    return Some((self.offset, end.clone()));
                }
            }
            changed.await;
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.live.state().followers -= 1;
    }
}

/// Where a generation sends its events: the first client's channel and, for a stored
/// conversation's answer, the registry that lets a client pick it up again. Dropped without
/// its last event (a panic in the generation), it records an `internal` error, so neither a
/// follower nor the registry waits forever.
pub(super) struct Sink {
    tx: tokio::sync::mpsc::UnboundedSender<ChatEvent>,
    live: Option<(Uuid, Arc<Live>, Arc<LiveStreams>)>,
    ended: bool,
}

impl Sink {
    pub(super) fn new(
        tx: tokio::sync::mpsc::UnboundedSender<ChatEvent>,
        live: Option<(Uuid, Arc<Live>, Arc<LiveStreams>)>,
    ) -> Self {
        Self {
            tx,
            live,
            ended: false,
        }
    }

    pub(super) fn delta(&self, text: String) {
        if let Some((_, live, _)) = &self.live {
            live.push(&text);
        }
        // A client that left is not an error: the generation goes on.
        let _ = self.tx.send(ChatEvent::Delta(text));
    }

    /// The last event: `Done` or `Error`.
    pub(super) fn end(&mut self, event: ChatEvent) {
        self.ended = true;
        if let Some((id, live, streams)) = &self.live {
            // The registry has the text already: the outcome's copy of it is not kept.
            let kept = match &event {
                ChatEvent::Done(outcome) => ChatEvent::Done(Box::new(super::ChatOutcome {
                    content: String::new(),
                    ..(**outcome).clone()
                })),
                other => other.clone(),
            };
            live.end(kept);
            streams.ended(*id);
        }
        let _ = self.tx.send(event);
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if !self.ended {
            self.end(ChatEvent::Error {
                code: "internal",
                message: "The answer ended unexpectedly.".to_owned(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn text(event: &ChatEvent) -> &str {
        match event {
            ChatEvent::Delta(t) => t,
            _ => panic!("not a delta: {event:?}"),
        }
    }

    #[tokio::test]
    async fn a_follower_gets_the_rest_then_what_comes_then_the_end() {
        let streams = Arc::new(LiveStreams::default());
        let id = Uuid::now_v7();
        let live = streams.open(id, "alice");
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut sink = Sink::new(tx, Some((id, live, streams.clone())));
        sink.delta("héllo ".into());
        assert!(
            streams.find(id, "bob").is_none(),
            "another user's stream is hidden"
        );
        let found = streams.find(id, "alice").unwrap();
        // Inside the two bytes of "é".
        assert_eq!(found.clone().follow(2).err(), Some(BadOffset));
        assert_eq!(found.clone().follow(99).err(), Some(BadOffset));
        let mut follow = Box::pin(found.follow(3).unwrap());
        let (offset, first) = follow.next().await.unwrap();
        assert_eq!((offset, text(&first)), (7, "llo "));
        let waiting = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(item) = follow.next().await {
                got.push(item);
            }
            got
        });
        tokio::task::yield_now().await;
        sink.delta("world".into());
        sink.end(ChatEvent::Error {
            code: "cut",
            message: "cut".into(),
        });
        let got = waiting.await.unwrap();
        let joined: String = got
            .iter()
            .filter(|(_, e)| matches!(e, ChatEvent::Delta(_)))
            .map(|(_, e)| text(e).to_owned())
            .collect();
        assert_eq!(joined, "world");
        let (last_offset, last) = got.last().unwrap();
        assert_eq!(*last_offset, 12);
        assert!(matches!(last, ChatEvent::Error { code: "cut", .. }));
        assert_eq!(streams.len(), 1, "it lingers after its end");
    }

    #[tokio::test(start_paused = true)]
    async fn ended_streams_go_after_the_linger() {
        let streams = Arc::new(LiveStreams::default());
        let id = Uuid::now_v7();
        let live = streams.open(id, "alice");
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        drop(Sink::new(tx, Some((id, live, streams.clone()))));
        // Dropped without an end: it ended with an internal error.
        let found = streams.find(id, "alice").unwrap();
        let mut follow = Box::pin(found.follow(0).unwrap());
        assert!(matches!(
            follow.next().await.unwrap().1,
            ChatEvent::Error {
                code: "internal",
                ..
            }
        ));
        tokio::time::advance(LINGER + Duration::from_secs(1)).await;
        assert!(streams.find(id, "alice").is_none());
        assert!(streams.is_empty());
    }
}
