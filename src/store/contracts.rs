//! What herald's own contract watcher reads: open tasks past their
//! deadline, found through due-indexes (never a scan of every task). What
//! to do about them is `contracts.rs`'s business.

use super::StoreError;
use super::columns::Columns;

/// An open task past its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverdueTask {
    /// Run id.
    pub run_id: String,
    /// Worker id.
    pub worker_id: String,
    /// Task id.
    pub task_id: String,
    /// Unix ms of its first event.
    pub first_seen_at: i64,
    /// Its own deadline (`extra.timeout_seconds`), if it has one.
    pub deadline_at: Option<i64>,
}

/// An [`OverdueTask`] from a row.
pub(crate) fn overdue_from(r: &impl Columns) -> Result<OverdueTask, StoreError> {
    Ok(OverdueTask {
        run_id: r.text("run_id")?,
        worker_id: r.text("worker_id")?,
        task_id: r.text("task_id")?,
        first_seen_at: r.int("first_seen_at")?,
        deadline_at: r.maybe_int("deadline_at")?,
    })
}

/// The contract watcher's reads.
#[async_trait::async_trait]
pub trait ContractStore: Send + Sync {
    /// Open tasks whose own deadline is at or before `now`, and — with
    /// `default_deadline_ms` — open tasks without one whose first event is
    /// that long ago; at most `limit` of each, the most overdue first.
    async fn overdue_tasks(
        &self,
        now: i64,
        default_deadline_ms: Option<i64>,
        limit: i64,
    ) -> Result<Vec<OverdueTask>, StoreError>;
}
