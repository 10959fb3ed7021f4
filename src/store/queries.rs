//! Read-only queries behind the HTTP API: workers, journals, receipts.

use serde::Serialize;
use serde_json::Value;

use super::StoreError;
use super::columns::Columns;

/// A worker task as `GET /v1/workers` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerRow {
    /// Run id.
    pub run_id: String,
    /// Worker id.
    pub worker_id: String,
    /// Task id.
    pub task_id: String,
    /// Displayed state.
    pub state: String,
    /// `seq` of the displayed event.
    pub seq: i64,
    /// Highest `seq` seen.
    pub max_seq: i64,
    /// Whether the task has ended.
    pub terminal: bool,
    /// Merged labels.
    pub labels: Value,
    /// The displayed event.
    pub event: Value,
    /// Channels the task was routed to.
    pub channels: Vec<String>,
    /// Unix ms of the first event.
    pub first_seen_at: i64,
    /// Unix ms of the last event.
    pub updated_at: i64,
    /// Unix ms of the last heartbeat, if any.
    pub last_heartbeat_at: Option<i64>,
}

/// One journaled event.
#[derive(Debug, Clone, Serialize)]
pub struct JournalEntry {
    /// Ingest-order cursor: pass it as `after` to page.
    pub id: i64,
    /// Unix ms when herald accepted it.
    pub received_at: i64,
    /// The event, normalised.
    pub event: Value,
}

/// A delivery receipt as `GET /v1/deliveries` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptRow {
    /// Receipt id (also the idempotency key sent to the platform).
    pub id: String,
    /// Channel name.
    pub channel: String,
    /// `pending`, `sending`, `surfaced` or `failed`.
    pub status: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// Last failure, if any.
    pub last_error: Option<String>,
    /// Unix ms of the next attempt (pending receipts).
    pub next_attempt_at: Option<i64>,
    /// Unix ms the event was accepted.
    pub created_at: i64,
    /// Unix ms the platform confirmed it.
    pub surfaced_at: Option<i64>,
    /// The platform's message id once surfaced.
    pub message_id: Option<String>,
    /// Run id.
    pub run_id: String,
    /// Worker id.
    pub worker_id: String,
    /// Task id.
    pub task_id: String,
    /// The terminal state notified.
    pub state: String,
    /// When it missed its delivery contract (and went to the fallback).
    pub missed_at: Option<i64>,
    /// Why it missed, or — on a fallback — why the channel it stands in
    /// for did.
    pub miss_reason: Option<String>,
    /// On a fallback: the channel that missed.
    pub fallback_for: Option<String>,
}

/// A [`WorkerRow`] from a row of tasks with their channels joined by U+001F.
pub(crate) fn worker_row_from(r: &impl Columns) -> Result<WorkerRow, StoreError> {
    Ok(WorkerRow {
        run_id: r.text("run_id")?,
        worker_id: r.text("worker_id")?,
        task_id: r.text("task_id")?,
        state: r.text("state")?,
        seq: r.int("state_seq")?,
        max_seq: r.int("max_seq")?,
        terminal: r.flag("terminal")?,
        labels: r.json("labels")?,
        event: r.json("display")?,
        channels: r
            .maybe_text("channels")?
            .map(|c| c.split('\u{1f}').map(str::to_owned).collect())
            .unwrap_or_default(),
        first_seen_at: r.int("first_seen_at")?,
        updated_at: r.int("updated_at")?,
        last_heartbeat_at: r.maybe_int("last_heartbeat_at")?,
    })
}

/// A [`JournalEntry`] from a row of events.
pub(crate) fn journal_entry_from(r: &impl Columns) -> Result<JournalEntry, StoreError> {
    Ok(JournalEntry {
        id: r.int("id")?,
        received_at: r.int("received_at")?,
        event: r.json("body")?,
    })
}

/// A [`ReceiptRow`] from a row of receipts joined to their task and event.
pub(crate) fn receipt_row_from(r: &impl Columns) -> Result<ReceiptRow, StoreError> {
    let status = r.text("status")?;
    let pending = status == "pending";
    let next = r.int("next_attempt_at")?;
    Ok(ReceiptRow {
        id: r.text("id")?,
        channel: r.text("channel")?,
        status,
        attempts: r.int("attempts")?,
        last_error: r.maybe_text("last_error")?,
        next_attempt_at: pending.then_some(next),
        created_at: r.int("created_at")?,
        surfaced_at: r.maybe_int("surfaced_at")?,
        message_id: r.maybe_text("message_id")?,
        run_id: r.text("run_id")?,
        worker_id: r.text("worker_id")?,
        task_id: r.text("task_id")?,
        state: r.text("state")?,
        missed_at: r.maybe_int("missed_at")?,
        miss_reason: r.maybe_text("miss_reason")?,
        fallback_for: r.maybe_text("fallback_for")?,
    })
}

/// How many tasks show one state: `stale` tells herald's stale overlay
/// apart from the state shown under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateCount {
    /// The state shown.
    pub state: String,
    /// Open and marked stale by herald.
    pub stale: bool,
    /// How many tasks.
    pub tasks: i64,
}

/// Read-only views for the HTTP API.
#[async_trait::async_trait]
pub trait QueryStore: Send + Sync {
    /// Worker tasks, most recently updated first.
    async fn workers(
        &self,
        run_id: Option<&str>,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<WorkerRow>, StoreError>;

    /// One task's journal in ingest order, after the cursor `after`.
    async fn journal(
        &self,
        run_id: &str,
        worker_id: &str,
        task_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<JournalEntry>, StoreError>;

    /// Who acknowledged a worker task and when, if someone did (`None` too
    /// when there is no such task).
    async fn acknowledgement(
        &self,
        run_id: &str,
        worker_id: &str,
        task_id: &str,
    ) -> Result<Option<crate::escalations::Acknowledgement>, StoreError>;

    /// Whether a worker task exists (to tell an empty journal from a 404).
    async fn task_exists(&self, run_id: &str, worker_id: &str, task_id: &str) -> Result<bool, StoreError>;

    /// Total events in the journal (for tests, benchmarks and metrics).
    async fn event_count(&self) -> Result<i64, StoreError>;

    /// Delivery receipts, newest first, optionally of one status.
    async fn receipts(&self, status: Option<&str>, limit: i64) -> Result<Vec<ReceiptRow>, StoreError>;

    /// Tasks per state shown (of one run, or all).
    async fn state_counts(&self, run_id: Option<&str>) -> Result<Vec<StateCount>, StoreError>;

    /// Open tasks herald marked stale, most recently updated first.
    async fn stale_tasks(&self, run_id: Option<&str>, limit: i64) -> Result<Vec<WorkerRow>, StoreError>;
}
