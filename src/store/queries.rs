//! Read-only queries behind the HTTP API: workers, journals, receipts.

use serde::Serialize;
use serde_json::Value;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{Store, StoreError};

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

impl Store {
    /// Worker tasks, most recently updated first.
    pub async fn workers(
        &self,
        run_id: Option<&str>,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<WorkerRow>, StoreError> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT t.id, t.run_id, t.worker_id, t.task_id, t.state, t.state_seq, t.max_seq, t.terminal, \
             t.labels, t.display, t.first_seen_at, t.updated_at, t.last_heartbeat_at, \
             (SELECT group_concat(channel, char(31)) FROM task_channels WHERE task = t.id) AS channels \
             FROM tasks t WHERE 1 = 1",
        );
        if let Some(run) = run_id {
            qb.push(" AND t.run_id = ").push_bind(run.to_owned());
        }
        if let Some(state) = state {
            qb.push(" AND t.state = ").push_bind(state.to_owned());
        }
        qb.push(" ORDER BY t.updated_at DESC, t.id DESC LIMIT ")
            .push_bind(limit);
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let labels: String = r.try_get("labels")?;
                let display: String = r.try_get("display")?;
                let channels: Option<String> = r.try_get("channels")?;
                Ok(WorkerRow {
                    run_id: r.try_get("run_id")?,
                    worker_id: r.try_get("worker_id")?,
                    task_id: r.try_get("task_id")?,
                    state: r.try_get("state")?,
                    seq: r.try_get("state_seq")?,
                    max_seq: r.try_get("max_seq")?,
                    terminal: r.try_get("terminal")?,
                    labels: serde_json::from_str(&labels)?,
                    event: serde_json::from_str(&display)?,
                    channels: channels
                        .map(|c| c.split('\u{1f}').map(str::to_owned).collect())
                        .unwrap_or_default(),
                    first_seen_at: r.try_get("first_seen_at")?,
                    updated_at: r.try_get("updated_at")?,
                    last_heartbeat_at: r.try_get("last_heartbeat_at")?,
                })
            })
            .collect()
    }

    /// One task's journal in ingest order, after the cursor `after`.
    pub async fn journal(
        &self,
        run_id: &str,
        worker_id: &str,
        task_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, body, received_at FROM events \
             WHERE run_id = ? AND worker_id = ? AND task_id = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(run_id)
        .bind(worker_id)
        .bind(task_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let body: String = r.try_get("body")?;
                Ok(JournalEntry {
                    id: r.try_get("id")?,
                    received_at: r.try_get("received_at")?,
                    event: serde_json::from_str(&body)?,
                })
            })
            .collect()
    }

    /// Whether a worker task exists (to tell an empty journal from a 404).
    pub async fn task_exists(
        &self,
        run_id: &str,
        worker_id: &str,
        task_id: &str,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM tasks WHERE run_id = ? AND worker_id = ? AND task_id = ?")
            .bind(run_id)
            .bind(worker_id)
            .bind(task_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Total events in the journal (for tests, benchmarks and metrics).
    pub async fn event_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Delivery receipts, newest first, optionally of one status.
    pub async fn receipts(&self, status: Option<&str>, limit: i64) -> Result<Vec<ReceiptRow>, StoreError> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT r.id, r.channel, r.status, r.attempts, r.last_error, r.next_attempt_at, r.created_at, \
             r.surfaced_at, r.message_id, t.run_id, t.worker_id, t.task_id, e.state \
             FROM receipts r JOIN tasks t ON t.id = r.task JOIN events e ON e.run_id = t.run_id AND e.worker_id = t.worker_id AND e.task_id = t.task_id AND e.seq = r.event_seq",
        );
        if let Some(status) = status {
            qb.push(" WHERE r.status = ").push_bind(status.to_owned());
        }
        qb.push(" ORDER BY r.created_at DESC, r.id LIMIT ")
            .push_bind(limit);
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                let pending = status == "pending";
                let next: i64 = r.try_get("next_attempt_at")?;
                Ok(ReceiptRow {
                    id: r.try_get("id")?,
                    channel: r.try_get("channel")?,
                    status,
                    attempts: r.try_get("attempts")?,
                    last_error: r.try_get("last_error")?,
                    next_attempt_at: pending.then_some(next),
                    created_at: r.try_get("created_at")?,
                    surfaced_at: r.try_get("surfaced_at")?,
                    message_id: r.try_get("message_id")?,
                    run_id: r.try_get("run_id")?,
                    worker_id: r.try_get("worker_id")?,
                    task_id: r.try_get("task_id")?,
                    state: r.try_get("state")?,
                })
            })
            .collect()
    }
}
