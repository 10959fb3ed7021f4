//! The ingest transaction (the transactional outbox): journal rows,
//! worker-task state, routed channels, progress dirty marks and terminal
//! receipts, all in one commit. Several HTTP requests are committed
//! together (group commit); each still gets its own report. What to write
//! is decided by `ingest::plan`, without a database; a backend reads the
//! snapshot the plan needs and writes the plan.

use super::StoreError;
use super::columns::Columns;
use crate::ingest::plan::{Batch, IngestResult, Route, RoutedChannel, StoredTask, TaskKey};
use crate::tasks::TaskState;

/// A task's routed channels as the snapshot query aggregates them: a JSON
/// array of `[name, progress]`, in the order they were added.
#[derive(serde::Deserialize)]
struct ChannelDoc(String, bool);

/// A stored task from a row of `tasks` with its `channels` aggregated.
pub(crate) fn stored_task_from(r: &impl Columns) -> Result<(TaskKey, StoredTask), StoreError> {
    let key: TaskKey = (r.text("run_id")?, r.text("worker_id")?, r.text("task_id")?);
    let state = TaskState {
        state: r.text("state")?,
        state_seq: r.int("state_seq")?,
        max_seq: r.int("max_seq")?,
        terminal: r.flag("terminal")?,
        display: super::decode_event(&r.text("display")?)?,
        labels: r.json("labels")?,
        version: r.int("version")?,
        first_seen_at: r.int("first_seen_at")?,
        updated_at: r.int("updated_at")?,
        last_heartbeat_at: r.maybe_int("last_heartbeat_at")?,
        deadline_at: r.maybe_int("deadline_at")?,
        stale_since: r.maybe_int("stale_since")?,
        stale_marks: r.int("stale_marks")?,
        escalation: r.json("escalation")?,
        escalate_at: r.maybe_int("escalate_at")?,
    };
    let channels: Vec<ChannelDoc> = r.json("channels")?;
    let channels = channels
        .into_iter()
        .map(|ChannelDoc(name, progress)| RoutedChannel { name, progress })
        .collect();
    Ok((
        key,
        StoredTask {
            id: r.int("id")?,
            state,
            channels,
        },
    ))
}

/// Commits groups of ingest requests.
#[async_trait::async_trait]
pub trait IngestStore: Send + Sync {
    /// Commit a group of requests in one transaction: read what the store
    /// holds of the batch's events and tasks, [`Batch::plan`] it with
    /// `route` (which decides the channels of a new task and of a terminal
    /// event), write the plan. Nothing of the group is stored on error.
    async fn ingest(&self, batch: &Batch<'_>, route: Route<'_>) -> Result<IngestResult, StoreError>;
}
