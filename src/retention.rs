//! Retention (SPEC §6.13, `[store] retention`): what herald keeps is
//! bounded. Finished tasks older than the retention go with their journal,
//! receipts and live-message handles — unless something of theirs is
//! still to be delivered, or failed within `max_age` + retention (a
//! dead letter waits that long to be replayed); web messages unchanged for
//! as long go too. Deletes run in small batches so ingest and delivery,
//! which share the store, wait for one batch at most.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::store::{Store, now_ms};

/// Rows per delete batch.
const BATCH: i64 = 500;
/// How often the store is swept at most (sooner with a short retention).
const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// Pause after the store failed a sweep.
const STORE_RETRY: Duration = Duration::from_secs(30);

/// Before when (Unix ms) a finished task, and a failed receipt, may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Finished tasks last updated before this.
    pub finished_before: i64,
    /// Failed receipts accepted before this.
    pub failed_before: i64,
}

/// The cutoffs at `now` for a retention and the delivery `max_age`.
pub fn cutoffs(now: i64, retention: Duration, max_age: Duration) -> Cutoffs {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
    Cutoffs {
        finished_before: now.saturating_sub(ms(retention)),
        failed_before: now.saturating_sub(ms(retention).saturating_add(ms(max_age))),
    }
}

/// How long between sweeps for a retention: a tenth of it, at most
/// [`SWEEP_EVERY`], at least a second.
pub fn sweep_interval(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(1), SWEEP_EVERY)
}

/// Sweep until the process stops, with the running config's retention.
pub async fn keep_pruning(store: Store, config: watch::Receiver<Arc<Config>>) {
    loop {
        let (retention, max_age) = {
            let c = config.borrow();
            (c.store.retention, c.delivery.max_age)
        };
        let wait = match sweep(&store, cutoffs(now_ms(), retention, max_age)).await {
            Ok(()) => sweep_interval(retention),
            Err(e) => {
                warn!(error = %e, "could not delete what is past retention; trying again");
                STORE_RETRY
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Delete everything past the cutoffs, batch by batch.
pub async fn sweep(store: &Store, cut: Cutoffs) -> Result<(), crate::store::StoreError> {
    let (mut tasks, mut events, mut receipts, mut web) = (0, 0, 0, 0);
    loop {
        let pruned = store
            .prune_tasks(cut.finished_before, cut.failed_before, BATCH)
            .await?;
        crate::metrics::retention_deleted("tasks", pruned.tasks);
        crate::metrics::retention_deleted("events", pruned.events);
        crate::metrics::retention_deleted("receipts", pruned.receipts);
        tasks += pruned.tasks;
        events += pruned.events;
        receipts += pruned.receipts;
        if pruned.tasks < u64::try_from(BATCH).unwrap_or(u64::MAX) {
            break;
        }
        tokio::task::yield_now().await;
    }
    loop {
        let deleted = store.prune_web_messages(cut.finished_before, BATCH).await?;
        crate::metrics::retention_deleted("web_messages", deleted);
        web += deleted;
        if deleted < u64::try_from(BATCH).unwrap_or(u64::MAX) {
            break;
        }
        tokio::task::yield_now().await;
    }
    if tasks + web > 0 {
        info!(
            tasks,
            events,
            receipts,
            web_messages = web,
            "deleted what is past retention"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_receipts_are_kept_max_age_longer_than_finished_tasks() {
        let day = Duration::from_secs(86_400);
        let c = cutoffs(100 * 86_400_000, 30 * day, day);
        assert_eq!(c.finished_before, 70 * 86_400_000);
        assert_eq!(c.failed_before, 69 * 86_400_000);
        // A clock near the epoch never goes negative past i64.
        let c = cutoffs(0, Duration::MAX, Duration::MAX);
        assert!(c.failed_before <= c.finished_before);
    }

    #[test]
    fn sweeps_are_a_tenth_of_the_retention_within_bounds() {
        assert_eq!(sweep_interval(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(sweep_interval(Duration::from_secs(100)), Duration::from_secs(10));
        assert_eq!(sweep_interval(Duration::from_secs(30 * 86_400)), SWEEP_EVERY);
    }
}
