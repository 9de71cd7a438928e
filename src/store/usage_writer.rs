//! The usage writer: request handlers hand finished usage rows to a bounded queue; one task
//! writes them in batches (by row count or interval) with one multi-row INSERT. A full queue
//! makes senders wait (backpressure) instead of dropping rows; a failed write is retried;
//! on shutdown everything queued is written before the task ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Store;
use crate::domain::UsageRecord;

/// The writer task and the signal that tells it to drain and stop.
type Task = (JoinHandle<()>, tokio::sync::oneshot::Sender<()>);

/// How long the shutdown drain may keep retrying a database that refuses writes.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct UsageWriter {
    tx: mpsc::Sender<UsageRecord>,
    depth: Arc<AtomicUsize>,
    task: Arc<Mutex<Option<Task>>>,
}

impl UsageWriter {
    /// Starts the writer task.
    pub fn spawn(
        store: Arc<dyn Store>,
        capacity: usize,
        batch_rows: usize,
        flush_every: Duration,
    ) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let depth = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(run(
            store,
            rx,
            stop_rx,
            depth.clone(),
            batch_rows.max(1),
            flush_every,
        ));
        Self {
            tx,
            depth,
            task: Arc::new(Mutex::new(Some((task, stop_tx)))),
        }
    }

    /// Queues a row; waits while the queue is full. Every provider call passes here, so
    /// this is also where the calls, tokens and cost are counted for the metrics.
    pub async fn record(&self, row: UsageRecord) {
        count_call(&row);
        self.depth.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.tx.send(row).await {
            // Only after shutdown finished: nothing may be accounted any more. Say so loudly.
            self.depth.fetch_sub(1, Ordering::Relaxed);
            tracing::error!(request_id = %e.0.request_id, "usage row arrived after the writer stopped; it is logged here instead");
        }
    }

    /// Rows queued and not yet written (for metrics).
    pub fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Waits, up to `limit`, until no row is queued or unwritten: everything recorded
    /// before the call is in the database. False at the limit (under steady load the queue
    /// may never be empty).
    pub async fn settle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.depth.load(Ordering::Relaxed) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Writes everything queued, then stops. Call once nothing will record any more.
    pub async fn shutdown(&self) {
        let Some((task, stop)) = self.task.lock().await.take() else {
            return;
        };
        let _ = stop.send(());
        let _ = task.await;
    }
}

/// The call's metrics, labelled as its usage row is: provider, model, outcome.
fn count_call(row: &UsageRecord) {
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    crate::prometheus::record_call(
        &row.provider,
        &row.model,
        row.error_code.as_deref(),
        row.latency_ms as f64 / 1000.0,
        row.ttft_ms.map(|t| t as f64 / 1000.0),
        (n(row.input_tokens), n(row.output_tokens)),
        n(row.cost_nano_usd),
    );
}

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<UsageRecord>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    depth: Arc<AtomicUsize>,
    batch_rows: usize,
    flush_every: Duration,
) {
    let mut batch: Vec<UsageRecord> = Vec::with_capacity(batch_rows);
    let mut deadline: Option<Instant> = None;
    loop {
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            row = rx.recv() => match row {
                Some(row) => {
                    batch.push(row);
                    deadline.get_or_insert_with(|| Instant::now() + flush_every);
                    if batch.len() >= batch_rows {
                        flush(store.as_ref(), &mut batch, &depth, None).await;
                        deadline = None;
                    }
                }
                None => break,
            },
            () = timer => {
                flush(store.as_ref(), &mut batch, &depth, None).await;
                deadline = None;
            }
            _ = &mut stop => break,
        }
    }
    // Drain: no sender may add more once shutdown was asked for; the whole drain is bounded.
    rx.close();
    let give_up = Some(Instant::now() + DRAIN_LIMIT);
    while let Some(row) = rx.recv().await {
        batch.push(row);
        if batch.len() >= batch_rows {
            flush(store.as_ref(), &mut batch, &depth, give_up).await;
        }
    }
    flush(store.as_ref(), &mut batch, &depth, give_up).await;
}

/// Writes a batch, retrying with backoff (the insert is idempotent, so a retry after an
/// unclear commit is safe). While running it never gives up: the queue fills and senders
/// wait, which is the backpressure. During the shutdown drain it gives up at `give_up`, and
/// then logs every row in full so it can be replayed; nothing is dropped silently.
async fn flush(
    store: &dyn Store,
    batch: &mut Vec<UsageRecord>,
    depth: &AtomicUsize,
    give_up: Option<Instant>,
) {
    if batch.is_empty() {
        return;
    }
    let mut wait = Duration::from_millis(100);
    let mut attempt = 0u32;
    let started = Instant::now();
    loop {
        attempt += 1;
        match store.insert_usage(batch).await {
            Ok(()) => {
                metrics::histogram!(crate::prometheus::USAGE_FLUSH)
                    .record(started.elapsed().as_secs_f64());
                depth.fetch_sub(batch.len(), Ordering::Relaxed);
                batch.clear();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = batch.len(), attempt, "usage write failed; retrying");
                if give_up.is_some_and(|at| Instant::now() + wait > at) {
                    break;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
    for row in batch.drain(..) {
        tracing::error!(usage = ?row, "usage row could not be written before shutdown");
        depth.fetch_sub(1, Ordering::Relaxed);
    }
}
