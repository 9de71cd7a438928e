//! Retention: archive conversations left inactive for `archive_after_days`, and delete for
//! good those soft-deleted more than `purge_deleted_after_days` ago. A background loop runs
//! it on every instance, but a lease in the database lets only one run it at a time.
//! `run_once` takes the clock as an argument, so tests can move time. Instances' clocks are
//! assumed to agree (NTP) to well within an interval: the lease compares their times.

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

/// Runs the job as `holder`, if the lease is free or already `holder`'s; `clock` tells the
/// time (the cut-off dates come from its first reading). None when another instance holds
/// the lease. Stops, with what it did so far, as soon as the lease is lost.
pub async fn run_once(
    store: &dyn Store,
    config: &RetentionConfig,
    holder: &str,
    clock: &(dyn Fn() -> OffsetDateTime + Send + Sync),
) -> Result<Option<RetentionReport>, StoreError> {
    // Held for two intervals and renewed, by the clock, before every batch: the holder's
    // next run renews it too, so another instance takes over only after the holder missed
    // a run, and never while a long backlog is being worked off.
    let lease = time::Duration::seconds(2 * config.interval_secs as i64);
    let renew = || async {
        let now = clock();
        store.take_lease(LEASE, holder, now, now + lease).await
    };
    let now = clock();
    if !renew().await? {
        return Ok(None);
    }
    let mut report = RetentionReport::default();
    if config.archive_after_days > 0 {
        let before = now - time::Duration::days(i64::from(config.archive_after_days));
        loop {
            let n = store.archive_inactive(before, now, BATCH).await?;
            report.archived += n;
            if n < BATCH as u64 {
                break;
            }
            if !renew().await? {
                return Ok(Some(report));
            }
        }
    }
    if config.purge_deleted_after_days > 0 {
        let before = now - time::Duration::days(i64::from(config.purge_deleted_after_days));
        loop {
            if !renew().await? {
                return Ok(Some(report));
            }
            let n = store.purge_deleted(before, BATCH).await?;
            report.purged_conversations += n.conversations;
            report.purged_messages += n.messages;
            if n.conversations < BATCH as u64 {
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
        match run_once(store.as_ref(), &config, &holder, &now_utc).await {
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
