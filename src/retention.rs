//! Retention: archive conversations left inactive for `archive_after_days`, and delete for
//! good those soft-deleted more than `purge_deleted_after_days` ago. A background loop runs
//! it on every instance, but a lease in the database lets only one run it at a time.
//! `run_once` takes the clock as an argument, so tests can move time.

use std::sync::Arc;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::config::RetentionConfig;
use crate::domain::ids::now_utc;
use crate::store::{Store, StoreError};

/// The lease's name in `job_leases`.
pub const LEASE: &str = "retention";
/// Rows changed per statement: a big backlog is worked off in short transactions.
const BATCH: i64 = 500;

/// What one run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub archived: u64,
    pub purged_conversations: u64,
    pub purged_messages: u64,
}

/// Runs the job as `holder` at time `now`, if the lease is free or already `holder`'s.
/// None when another instance holds it.
pub async fn run_once(
    store: &dyn Store,
    config: &RetentionConfig,
    holder: &str,
    now: OffsetDateTime,
) -> Result<Option<RetentionReport>, StoreError> {
    // Held for two intervals and renewed between batches: the holder's next run renews it,
    // so another instance takes over only after the holder missed a run.
    let lease = time::Duration::seconds(2 * config.interval_secs as i64);
    if !store.take_lease(LEASE, holder, now, now + lease).await? {
        return Ok(None);
    }
    let mut report = RetentionReport::default();
    if config.archive_after_days > 0 {
        let before = now - time::Duration::days(i64::from(config.archive_after_days));
        loop {
            let n = store.archive_inactive(before, now, BATCH).await?;
            report.archived += n;
            if n < BATCH as u64 || !store.take_lease(LEASE, holder, now, now + lease).await? {
                break;
            }
        }
    }
    if config.purge_deleted_after_days > 0 {
        let before = now - time::Duration::days(i64::from(config.purge_deleted_after_days));
        loop {
            let n = store.purge_deleted(before, BATCH).await?;
            report.purged_conversations += n.conversations;
            report.purged_messages += n.messages;
            if n.conversations < BATCH as u64
                || !store.take_lease(LEASE, holder, now, now + lease).await?
            {
                break;
            }
        }
    }
    Ok(Some(report))
}

/// The job on this instance, every `interval_secs` until shutdown. Does nothing when both
/// retention periods are 0.
pub async fn run_loop(
    store: Arc<dyn Store>,
    config: RetentionConfig,
    holder: String,
    shutdown: CancellationToken,
) {
    if config.archive_after_days == 0 && config.purge_deleted_after_days == 0 {
        return;
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(config.interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        match run_once(store.as_ref(), &config, &holder, now_utc()).await {
            Ok(Some(report)) if report != RetentionReport::default() => tracing::info!(
                archived = report.archived,
                purged_conversations = report.purged_conversations,
                purged_messages = report.purged_messages,
                "retention ran"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention failed; it runs again next interval"),
        }
    }
}
