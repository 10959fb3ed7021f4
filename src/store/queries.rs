//! Read-only queries behind the HTTP API: workers, journals, receipts.

use serde::Serialize;
use serde_json::Value;

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
}

use super::StoreError;

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

    /// Whether a worker task exists (to tell an empty journal from a 404).
    async fn task_exists(&self, run_id: &str, worker_id: &str, task_id: &str) -> Result<bool, StoreError>;

    /// Total events in the journal (for tests, benchmarks and metrics).
    async fn event_count(&self) -> Result<i64, StoreError>;

    /// Delivery receipts, newest first, optionally of one status.
    async fn receipts(&self, status: Option<&str>, limit: i64) -> Result<Vec<ReceiptRow>, StoreError>;
}
