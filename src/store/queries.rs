//! Read-only queries behind the HTTP API: workers, journals, receipts.

use serde::Serialize;
use serde_json::Value;

use super::StoreError;
use super::columns::Columns;

/// Which receipts `GET /v1/deliveries` lists (every filter optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiptFilter {
    /// Of this status.
    pub status: Option<String>,
    /// Of this channel.
    pub channel: Option<String>,
    /// Of tasks of this run.
    pub run_id: Option<String>,
    /// Accepted at or after this (Unix ms).
    pub since: Option<i64>,
    /// After this position of the list (`created_at`, `id`): the next page.
    pub after: Option<(i64, String)>,
}

/// A worker task as `GET /v1/workers` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WorkerRow {
    /// The task's row id: its place in the list (newest first), for cursors.
    #[serde(skip)]
    pub row: i64,
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
    #[schema(value_type = Object)]
    pub labels: Value,
    /// The displayed event.
    #[schema(value_type = Object)]
    pub event: Value,
    /// Channels the task was routed to.
    pub channels: Vec<String>,
    /// When the first event arrived (RFC 3339 in the API).
    #[serde(serialize_with = "crate::api_time::at")]
    #[schema(value_type = String, format = DateTime)]
    pub first_seen_at: i64,
    /// When the last event arrived.
    #[serde(serialize_with = "crate::api_time::at")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
    /// When the last heartbeat arrived, if any.
    #[serde(serialize_with = "crate::api_time::maybe_at")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_heartbeat_at: Option<i64>,
}

/// One journaled event.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JournalEntry {
    /// Ingest-order cursor: pass it as `after` to page.
    pub id: i64,
    /// When herald accepted it.
    #[serde(serialize_with = "crate::api_time::at")]
    #[schema(value_type = String, format = DateTime)]
    pub received_at: i64,
    /// The event, normalised.
    #[schema(value_type = Object)]
    pub event: Value,
}

/// A delivery receipt as `GET /v1/deliveries` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    /// When the next attempt is due (pending receipts).
    #[serde(serialize_with = "crate::api_time::maybe_at")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<i64>,
    /// When the event was accepted.
    #[serde(serialize_with = "crate::api_time::at")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// When the platform confirmed it.
    #[serde(serialize_with = "crate::api_time::maybe_at")]
    #[schema(value_type = Option<String>, format = DateTime)]
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
    #[serde(serialize_with = "crate::api_time::maybe_at")]
    #[schema(value_type = Option<String>, format = DateTime)]
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
        row: r.int("id")?,
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

/// How many tasks of one run show one state (the overview's table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStateCount {
    /// The run.
    pub run_id: String,
    /// The state shown.
    pub state: String,
    /// Open and marked stale by herald.
    pub stale: bool,
    /// How many tasks.
    pub tasks: i64,
    /// The newest event of these tasks (Unix ms).
    pub updated_at: i64,
}

/// The receipts of one channel that are not done: what the overview's
/// delivery-health table shows. Channels with none are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelBacklog {
    /// Channel name.
    pub channel: String,
    /// Pending or being sent.
    pub pending: i64,
    /// Given up (replayable).
    pub failed: i64,
    /// When the oldest pending one was accepted (Unix ms).
    pub oldest_pending_at: Option<i64>,
    /// The newest error among them (stored redacted).
    pub last_error: Option<String>,
    /// When that error was seen (its attempt, Unix ms).
    pub last_error_at: Option<i64>,
}

/// Read-only views for the HTTP API.
#[async_trait::async_trait]
pub trait QueryStore: Send + Sync {
    /// Worker tasks, newest first (by when herald first saw them, a
    /// place that never changes, so pages are stable), after row `after`.
    async fn workers(
        &self,
        run_id: Option<&str>,
        state: Option<&str>,
        after: Option<i64>,
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

    /// Delivery receipts that `filter` allows, newest first (accepted
    /// time, then id).
    async fn receipts(&self, filter: &ReceiptFilter, limit: i64) -> Result<Vec<ReceiptRow>, StoreError>;

    /// Tasks per state shown (of one run, or all).
    async fn state_counts(&self, run_id: Option<&str>) -> Result<Vec<StateCount>, StoreError>;

    /// Tasks per run and state shown, for the `runs` runs with the newest
    /// events.
    async fn run_state_counts(&self, runs: i64) -> Result<Vec<RunStateCount>, StoreError>;

    /// Per channel, the receipts not yet done (pending, sending, failed)
    /// and the newest error among them.
    async fn channel_backlogs(&self) -> Result<Vec<ChannelBacklog>, StoreError>;

    /// Open tasks herald marked stale, most recently updated first.
    async fn stale_tasks(&self, run_id: Option<&str>, limit: i64) -> Result<Vec<WorkerRow>, StoreError>;
}

/// A [`RunStateCount`] from a row of `run_state_counts`.
pub(crate) fn run_state_count_from(r: &impl Columns) -> Result<RunStateCount, StoreError> {
    Ok(RunStateCount {
        run_id: r.text("run_id")?,
        state: r.text("state")?,
        stale: r.flag("stale")?,
        tasks: r.int("tasks")?,
        updated_at: r.int("updated_at")?,
    })
}

/// One row of receipts not done, grouped: (channel, status, receipts,
/// oldest accepted).
pub(crate) fn backlog_count_from(r: &impl Columns) -> Result<(String, String, i64, i64), StoreError> {
    Ok((
        r.text("channel")?,
        r.text("status")?,
        r.int("receipts")?,
        r.int("oldest")?,
    ))
}

/// One channel's newest error: (channel, error, when seen).
pub(crate) fn backlog_error_from(r: &impl Columns) -> Result<(String, String, i64), StoreError> {
    Ok((r.text("channel")?, r.text("last_error")?, r.int("seen_at")?))
}

/// Merge backlog counts — rows of (channel, status, receipts, oldest
/// accepted) — with the newest error of each channel, one entry per
/// channel, by name.
pub(crate) fn merge_backlogs(
    counts: Vec<(String, String, i64, i64)>,
    errors: Vec<(String, String, i64)>,
) -> Vec<ChannelBacklog> {
    let mut by_channel: std::collections::BTreeMap<String, ChannelBacklog> =
        std::collections::BTreeMap::new();
    for (channel, status, receipts, oldest) in counts {
        let entry = by_channel
            .entry(channel.clone())
            .or_insert_with(|| ChannelBacklog {
                channel,
                ..ChannelBacklog::default()
            });
        if status == "failed" {
            entry.failed += receipts;
        } else {
            entry.pending += receipts;
            entry.oldest_pending_at = Some(entry.oldest_pending_at.map_or(oldest, |o| o.min(oldest)));
        }
    }
    for (channel, error, at) in errors {
        if let Some(entry) = by_channel.get_mut(&channel) {
            entry.last_error = Some(error);
            entry.last_error_at = Some(at);
        }
    }
    by_channel.into_values().collect()
}
