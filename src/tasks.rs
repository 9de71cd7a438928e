//! Background tasks are spawned in one place, see a shutdown signal, and are awaited on
//! shutdown so nothing they hold (accounting rows, generations) is lost.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Background {
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Background {
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns a tracked task. Long-running tasks should select on `shutdown_signal()` and
    /// finish their work (drain queues) when it fires.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// Fires when the server begins to shut down.
    pub fn shutdown_signal(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Signals shutdown and waits up to `grace` for every task to finish.
    /// Returns false when tasks were still running at the deadline.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }

    pub fn running(&self) -> usize {
        self.tracker.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn shutdown_waits_for_tasks_to_drain() {
        let bg = Background::new();
        let drained = Arc::new(AtomicBool::new(false));
        let (signal, flag) = (bg.shutdown_signal(), drained.clone());
        bg.spawn(async move {
            signal.cancelled().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            flag.store(true, Ordering::SeqCst);
        });
        assert!(bg.shutdown(Duration::from_secs(5)).await);
        assert!(drained.load(Ordering::SeqCst));
        assert_eq!(bg.running(), 0);
    }
}
