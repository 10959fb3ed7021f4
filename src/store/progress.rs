//! Progress messages: which (channel, task) messages are stale, and the
//! versioned write that records what a message now shows.

use std::collections::BTreeMap;

use super::columns::Columns;
use super::{Lease, StoreError};
use crate::escalations::EscalationLog;
use crate::protocol::FleetWorkerEvent;

/// One progress message that needs posting or editing, with the task state
/// to render into it.
#[derive(Debug, Clone)]
pub struct ProgressJob {
    /// Task row id.
    pub task: i64,
    /// Channel name.
    pub channel: String,
    /// The platform message to edit; `None` means post a new one.
    pub message_id: Option<String>,
    /// The task version this rendering shows.
    pub version: i64,
    /// Idempotency key of the message's post.
    pub post_key: String,
    /// Hash of the rendering the message shows now.
    pub shown_hash: Option<i64>,
    /// A post was sent earlier whose outcome was never recorded (crash):
    /// reconcile before posting again.
    pub post_started: bool,
    /// Run id.
    pub run_id: String,
    /// Worker id.
    pub worker_id: String,
    /// Task id.
    pub task_id: String,
    /// Displayed state.
    pub state: String,
    /// The displayed event.
    pub display: FleetWorkerEvent,
    /// The task's labels.
    pub labels: BTreeMap<String, String>,
    /// Unix ms of the first event (for elapsed time).
    pub first_seen_at: i64,
    /// Unix ms of the last event.
    pub updated_at: i64,
    /// Whether the task has ended.
    pub terminal: bool,
    /// Since when herald has marked it stale (Unix ms), if it has.
    pub stale_since: Option<i64>,
    /// Channels it is escalated to (open escalations).
    pub escalated_to: Vec<String>,
    /// Who acknowledged it, if someone did.
    pub acknowledged: Option<crate::escalations::Acknowledgement>,
    /// Failed sends in a row (for the retry schedule).
    pub failures: i64,
}

/// A progress post whose outcome is unknown.
#[derive(Debug, Clone)]
pub struct StartedPost {
    /// Task row id.
    pub task: i64,
    /// The post's idempotency key.
    pub post_key: String,
    /// When the task was first seen.
    pub first_seen_at: i64,
    /// When the post was sent.
    pub started_at: i64,
    /// What it carried (JSON of the rendered message), where kept.
    pub body: Option<String>,
}

/// The result of sending a progress rendering.
#[derive(Debug, Clone)]
pub enum ProgressWrite {
    /// The platform shows `version` in message `message_id`.
    Shown {
        /// The platform's message id (new after a post).
        message_id: String,
        /// The task version that was rendered.
        version: i64,
        /// Hash of the rendering, `None` when unknown (adopted after a crash).
        text_hash: Option<i64>,
    },
    /// The message no longer exists: forget it (and its post key) so the
    /// next round posts a new one.
    Gone,
    /// Give up on this rendering (permanent error); the message stays dirty
    /// only if a newer version arrives.
    Abandon {
        /// The version that could not be shown.
        version: i64,
    },
    /// The send failed; try again no earlier than `at` (Unix ms). A post
    /// whose outcome is unknown stays marked started, so the next attempt
    /// reconciles first.
    Retry {
        /// Not before.
        at: i64,
    },
}

/// A [`ProgressJob`] from a row with the task and handle columns.
pub(crate) fn progress_job_from(r: &impl Columns, channel: &str) -> Result<ProgressJob, StoreError> {
    let escalation = r.json::<EscalationLog>("escalation")?;
    Ok(ProgressJob {
        labels: r.json("labels")?,
        task: r.int("task")?,
        channel: channel.to_owned(),
        message_id: r.maybe_text("message_id")?,
        version: r.int("version")?,
        post_key: r.text("post_key")?,
        post_started: r.flag("post_started")?,
        shown_hash: r.maybe_int("shown_hash")?,
        run_id: r.text("run_id")?,
        worker_id: r.text("worker_id")?,
        task_id: r.text("task_id")?,
        state: r.text("state")?,
        display: super::decode_event(&r.text("display")?)?,
        first_seen_at: r.int("first_seen_at")?,
        updated_at: r.int("updated_at")?,
        terminal: r.flag("terminal")?,
        stale_since: r.maybe_int("stale_since")?,
        escalated_to: escalation.open_channels(),
        acknowledged: escalation.acknowledgement(),
        failures: r.int("failures")?,
    })
}

/// A [`StartedPost`] from a row.
pub(crate) fn started_post_from(r: &impl Columns) -> Result<StartedPost, StoreError> {
    Ok(StartedPost {
        task: r.int("task")?,
        post_key: r.text("post_key")?,
        first_seen_at: r.int("first_seen_at")?,
        started_at: r.int("started_at")?,
        body: r.maybe_text("post_body")?,
    })
}

/// Live progress messages: which are due, and the versioned writes that record them.
#[async_trait::async_trait]
pub trait ProgressStore: Send + Sync {
    /// Stale progress messages of `channel` that may be sent now (their last
    /// send is at least `min_interval_ms` old), stalest first: those still
    /// to be posted (`needs_post`) or those to be edited. Platforms budget
    /// creates and edits separately, so the actor asks for each.
    /// With `skip_started`, posts whose earlier attempt has an unknown
    /// outcome are left for a look-up.
    async fn due_progress(
        &self,
        channel: &str,
        needs_post: bool,
        now: i64,
        min_interval_ms: i64,
        limit: i64,
        skip_started: bool,
    ) -> Result<Vec<ProgressJob>, StoreError>;

    /// When the next stale progress message of `channel` becomes sendable
    /// (Unix ms), or `None` when nothing is stale; of those still to be
    /// posted, of those to be edited, or of both (`needs_post = None`).
    async fn next_progress_due(
        &self,
        channel: &str,
        needs_post: Option<bool>,
        min_interval_ms: i64,
        skip_started: bool,
    ) -> Result<Option<i64>, StoreError>;

    /// Note durably that a progress post is about to be sent, so that after a
    /// crash the next attempt reconciles instead of posting a duplicate.
    /// `body` is what the post carries (JSON), kept so that a platform
    /// that can only be probed can be asked for exactly that message.
    async fn progress_post_started(
        &self,
        task: i64,
        lease: &Lease,
        body: &str,
        now: i64,
    ) -> Result<(), StoreError>;

    /// Progress posts of `channel` whose outcome is unknown (a crash or a
    /// lost answer after `post_started`): what a look-up or a probe must
    /// find or rule out.
    async fn started_progress_posts(&self, channel: &str) -> Result<Vec<StartedPost>, StoreError>;

    /// A look-up ruled these posts out: post them (same key).
    async fn clear_progress_started(&self, lease: &Lease, tasks: &[i64]) -> Result<(), StoreError>;

    /// How long the stalest progress message has waited for its update
    /// (ms), or `None` when every message is current.
    async fn progress_staleness_ms(&self, now: i64) -> Result<Option<i64>, StoreError>;

    /// Keep the thread opened from a task's live message `parent` (where
    /// the platform keeps replies in a thread of their own), so every later
    /// reply, after restarts and on other replicas, goes into it. Not kept
    /// when the live message is no longer `parent`. Fenced by the lease.
    /// `None` forgets it (the thread was deleted: the next reply opens
    /// another).
    async fn record_thread(
        &self,
        task: i64,
        lease: &Lease,
        parent: &str,
        thread: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Record a progress send. Versioned: the dirty mark is cleared only if
    /// the task has not moved past the rendered version meanwhile, and the
    /// shown version never goes backwards. Fenced by the channel's lease
    /// ([`StoreError::LeaseLost`] once it has passed on).
    async fn record_progress(
        &self,
        task: i64,
        lease: &Lease,
        write: &ProgressWrite,
        now: i64,
    ) -> Result<(), StoreError>;
}
