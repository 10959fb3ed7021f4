//! What herald's own contract watcher reads: open tasks past their
//! deadline, silent ones, and tasks whose escalations are due, each found
//! through a due-index (never a scan of every task). What to do about them
//! is `contracts.rs`'s and `escalations.rs`'s business.

use std::collections::BTreeMap;

use super::StoreError;
use super::columns::Columns;
use crate::escalations::EscalationLog;
use crate::protocol::FleetWorkerEvent;

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

/// An open task that has said nothing for a while and is not marked stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilentTask {
    /// Run id.
    pub run_id: String,
    /// Worker id.
    pub worker_id: String,
    /// Task id.
    pub task_id: String,
    /// Unix ms of its last event from the worker.
    pub updated_at: i64,
    /// How many times herald has marked it stale before.
    pub stale_marks: i64,
}

/// A [`SilentTask`] from a row.
pub(crate) fn silent_from(r: &impl Columns) -> Result<SilentTask, StoreError> {
    Ok(SilentTask {
        run_id: r.text("run_id")?,
        worker_id: r.text("worker_id")?,
        task_id: r.text("task_id")?,
        updated_at: r.int("updated_at")?,
        stale_marks: r.int("stale_marks")?,
    })
}

/// An open or failed task whose escalations are due to be weighed.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationDue {
    /// Task row id.
    pub id: i64,
    /// Run id.
    pub run_id: String,
    /// Worker id.
    pub worker_id: String,
    /// Task id.
    pub task_id: String,
    /// The state shown.
    pub state: String,
    /// The event shown (a failure's reason).
    pub display: FleetWorkerEvent,
    /// Whether it has ended.
    pub terminal: bool,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Unix ms of its last event from the worker.
    pub updated_at: i64,
    /// Since when herald has marked it stale.
    pub stale_since: Option<i64>,
    /// How many stale marks it has had.
    pub stale_marks: i64,
    /// What was escalated so far.
    pub escalation: EscalationLog,
    /// When it became due (the watcher moves it only if it is unchanged).
    pub escalate_at: i64,
}

/// An [`EscalationDue`] from a row.
pub(crate) fn escalation_due_from(r: &impl Columns) -> Result<EscalationDue, StoreError> {
    Ok(EscalationDue {
        id: r.int("id")?,
        run_id: r.text("run_id")?,
        worker_id: r.text("worker_id")?,
        task_id: r.text("task_id")?,
        state: r.text("state")?,
        display: super::decode_event(&r.text("display")?)?,
        terminal: r.flag("terminal")?,
        labels: r.json("labels")?,
        updated_at: r.int("updated_at")?,
        stale_since: r.maybe_int("stale_since")?,
        stale_marks: r.int("stale_marks")?,
        escalation: r.json("escalation")?,
        escalate_at: r.int("escalate_at")?,
    })
}

/// The contract watcher's reads.
#[async_trait::async_trait]
pub trait ContractStore: Send + Sync {
    /// Open tasks whose own deadline is at or before `now`, and — with
    /// `default_deadline_ms` — open tasks without one whose first event is
    /// that long ago; at most `limit` of each, the most overdue first.
    /// Tasks showing `unwatched` (a firing alert: its source watches it)
    /// are left out of the default deadline.
    async fn overdue_tasks(
        &self,
        now: i64,
        default_deadline_ms: Option<i64>,
        unwatched: &str,
        limit: i64,
    ) -> Result<Vec<OverdueTask>, StoreError>;

    /// Open tasks not marked stale whose last event is at or before
    /// `silent_since`, the longest silent first, at most `limit`.
    /// Tasks showing `unwatched` are left out.
    async fn silent_tasks(
        &self,
        silent_since: i64,
        unwatched: &str,
        limit: i64,
    ) -> Result<Vec<SilentTask>, StoreError>;

    /// Tasks whose escalations are due to be weighed at `now`, the longest
    /// due first, at most `limit`.
    async fn escalations_due(&self, now: i64, limit: i64) -> Result<Vec<EscalationDue>, StoreError>;

    /// Weigh task `id` again at `next` (`None`: not until something
    /// happens), unless it became due anew since `seen` was read.
    async fn reschedule_escalation(&self, id: i64, seen: i64, next: Option<i64>) -> Result<(), StoreError>;
}
