//! Receipts that missed their delivery contract (SPEC §6.10): not surfaced
//! within `[contracts] surface_within`, or failed for good, on a channel
//! with a `fallback`. The store finds them through a due-index and records
//! a miss once, together with the receipt sent to the fallback in its
//! place; what counts as a miss is `fallbacks.rs`'s business.

use super::StoreError;
use super::columns::Columns;
use crate::protocol::FleetWorkerEvent;

/// A receipt that may have missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MayMiss {
    /// Receipt id.
    pub id: String,
    /// Its channel.
    pub channel: String,
    /// `pending`, `sending` or `failed`.
    pub status: String,
    /// Unix ms it was created (or replayed).
    pub created_at: i64,
    /// Why its last attempt failed (redacted when stored).
    pub last_error: Option<String>,
    /// Its task's run id.
    pub run_id: String,
    /// Its task's worker id.
    pub worker_id: String,
    /// Its task's id.
    pub task_id: String,
}

/// A [`MayMiss`] from a row.
pub(crate) fn may_miss_from(r: &impl Columns) -> Result<MayMiss, StoreError> {
    Ok(MayMiss {
        id: r.text("id")?,
        channel: r.text("channel")?,
        status: r.text("status")?,
        created_at: r.int("created_at")?,
        last_error: r.maybe_text("last_error")?,
        run_id: r.text("run_id")?,
        worker_id: r.text("worker_id")?,
        task_id: r.text("task_id")?,
    })
}

/// A miss to record: the receipt, where it falls back, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Miss {
    /// The receipt that missed.
    pub receipt: String,
    /// The channel that missed it.
    pub channel: String,
    /// Its channel's fallback.
    pub fallback: String,
    /// Why, in words (`not surfaced within 5m`).
    pub reason: String,
    /// Herald's event that journals the miss in the task's journal.
    pub journal: FleetWorkerEvent,
}

/// Finding and recording misses.
#[async_trait::async_trait]
pub trait FallbackStore: Send + Sync {
    /// Receipts of `channel` not surfaced, not missed yet and not a
    /// fallback themselves, that are failed or — with `created_before` —
    /// older than it; the oldest first, at most `limit`.
    async fn may_miss(
        &self,
        channel: &str,
        created_before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<MayMiss>, StoreError>;

    /// Record `miss` once, in one transaction: mark the receipt missed,
    /// journal its event, and create a receipt of the same notification on
    /// the fallback channel (unless that channel has one already). False when it was recorded before or
    /// the receipt surfaced meanwhile.
    async fn record_miss(&self, miss: &Miss, now: i64) -> Result<bool, StoreError>;
}
