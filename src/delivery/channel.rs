//! One actor per channel. It owns the channel's rate budget and drains its
//! work from the store: terminal receipts first, then stale progress
//! messages, stalest first. Actors never wait on each other, so a slow,
//! failing or rate-limited channel delays nobody else.

use std::sync::Arc;
use std::time::Duration;

use herald_messaging::{
    Call, ChannelRef, DeliveryOutcome, MessageHandle, Messaging, NotSurfaced, Reconciled,
};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::budget::{SharedBucket, TokenBucket, acquire, ready_in};
use super::receipts::decide;
use crate::config::DeliveryConfig;
use crate::render::{self, TaskView};
use crate::store::{ClaimedReceipt, ProgressJob, ProgressWrite, ReceiptUpdate, Store, now_ms};

/// How long a claimed receipt stays ours before another process may take it.
const LEASE_MS: i64 = 60_000;
/// Work taken from the store per round; small so receipts keep priority.
const BATCH: i64 = 16;
/// Longest idle sleep; the store is the truth and a wake-up only a hint, so a
/// lost wake-up costs at most this much latency.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Pause after the store failed a whole round.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// Pause of a channel's progress after a transient failure.
const PROGRESS_BACKOFF: Duration = Duration::from_secs(2);

/// Everything one channel actor needs.
pub struct ChannelActor {
    /// Channel name from the config.
    pub name: String,
    /// Where on the platform.
    pub target: ChannelRef,
    /// Whether this channel shows progress messages.
    pub progress: bool,
    /// The platform.
    pub adapter: Arc<dyn Messaging>,
    /// The store.
    pub store: Store,
    /// Retry schedule, max age, progress interval.
    pub config: DeliveryConfig,
    /// Poked after an ingest commit touching this channel.
    pub wake: Arc<super::Signal>,
    /// Becomes true on shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// Budgets shared with the other channels of the same account.
    pub shared: SharedBudgets,
}

/// Buckets one platform account shares across its channels.
#[derive(Clone, Default)]
pub struct SharedBudgets {
    /// Every call of the account (Discord 50/s, Telegram 30/s).
    pub global: Option<SharedBucket>,
    /// Edits of the account (Slack's per-workspace `chat.update`).
    pub edits: Option<SharedBucket>,
    /// Posts and edits of this one channel together (Telegram), set by the
    /// actor from the channel's limits.
    pub per_channel: Option<SharedBucket>,
}

impl SharedBudgets {
    fn for_posts(&self) -> Vec<&SharedBucket> {
        self.global.iter().chain(self.per_channel.iter()).collect()
    }

    fn for_edits(&self) -> Vec<&SharedBucket> {
        self.global
            .iter()
            .chain(self.edits.iter())
            .chain(self.per_channel.iter())
            .collect()
    }
}

/// A stable hash of a rendering, to skip edits that would change nothing.
fn rendering_hash(message: &herald_messaging::Outbound) -> i64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    message.title.hash(&mut hasher);
    message.state.hash(&mut hasher);
    message.body.hash(&mut hasher);
    for f in &message.fields {
        f.name.hash(&mut hasher);
        f.value.hash(&mut hasher);
    }
    i64::from_ne_bytes(hasher.finish().to_ne_bytes())
}

struct Budgets {
    posts: TokenBucket,
    edits: Option<TokenBucket>,
}

/// What a round did.
struct Round {
    /// Something was sent (or attempted).
    sent: bool,
    /// Progress posts are due but their budget allows nothing for this long.
    posts_blocked: Option<Duration>,
    /// Progress edits are due but their budget allows nothing for this long.
    edits_blocked: Option<Duration>,
}

impl ChannelActor {
    /// Run until shutdown. Errors from the store are logged and retried:
    /// the actor must outlive a briefly locked or full database.
    pub async fn run(mut self) {
        match self.store.moved_channel_target(&self.name).await {
            Ok(Some(id)) => {
                info!(channel = %self.name, from = %self.target.id, to = %id, "using the id the platform moved this channel to");
                self.target.id = id;
            }
            Ok(None) => {}
            Err(e) => warn!(channel = %self.name, error = %e, "could not read a moved channel id"),
        }
        let limits = self.adapter.channel_limits(&self.target);
        if let Some(rate) = limits.calls_per_channel {
            self.shared.per_channel = Some(Arc::new(tokio::sync::Mutex::new(TokenBucket::new(rate))));
        }
        let mut budgets = Budgets {
            posts: TokenBucket::new(limits.posts_per_channel),
            edits: limits.edits_per_channel.map(TokenBucket::new),
        };
        info!(channel = %self.name, platform = %self.adapter.platform(), "channel actor started");
        while !*self.shutdown.borrow() {
            let blocked = match self.round(&mut budgets).await {
                Ok(Round { sent: true, .. }) => continue,
                Ok(round) => [round.posts_blocked, round.edits_blocked],
                Err(e) => {
                    warn!(channel = %self.name, error = %e, "delivery round failed; retrying");
                    [Some(STORE_RETRY), Some(STORE_RETRY)]
                }
            };
            let sleep = match self.next_due(blocked).await {
                Ok(Some(due)) => {
                    Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0)).min(IDLE_POLL)
                }
                Ok(None) => IDLE_POLL,
                Err(e) => {
                    warn!(channel = %self.name, error = %e, "could not read next due time");
                    IDLE_POLL
                }
            };
            if sleep.is_zero() {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = self.shutdown.changed() => {}
            }
        }
        info!(channel = %self.name, "channel actor stopped");
    }

    /// When the next piece of work is due (Unix ms). Progress posts and
    /// edits that their budget blocks are due no earlier than it allows.
    async fn next_due(
        &self,
        blocked: [Option<Duration>; 2],
    ) -> Result<Option<i64>, crate::store::StoreError> {
        let mut next = self.store.next_receipt_due(&self.name).await?;
        if self.progress {
            for (needs_post, blocked_for) in [(true, blocked[0]), (false, blocked[1])] {
                let due = self
                    .store
                    .next_progress_due(&self.name, Some(needs_post), self.min_interval_ms())
                    .await?;
                let unblocked =
                    blocked_for.map(|b| now_ms() + i64::try_from(b.as_millis()).unwrap_or(i64::MAX / 4));
                let due = match (due, unblocked) {
                    (Some(d), Some(u)) => Some(d.max(u)),
                    (d, _) => d,
                };
                next = match (next, due) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        Ok(next)
    }

    fn min_interval_ms(&self) -> i64 {
        i64::try_from(self.config.progress_min_interval.as_millis()).unwrap_or(i64::MAX / 2)
    }

    /// One round of work: due receipts first, then stale progress messages,
    /// posts and edits each as far as their own budget allows (a channel
    /// whose create budget is spent can still edit).
    async fn round(&mut self, budgets: &mut Budgets) -> Result<Round, crate::store::StoreError> {
        self.wake.take_urgent();
        let receipts = self
            .store
            .claim_receipts(&self.name, now_ms(), LEASE_MS, BATCH)
            .await?;
        let mut round = Round {
            sent: !receipts.is_empty(),
            posts_blocked: None,
            edits_blocked: None,
        };
        for receipt in receipts {
            self.deliver_receipt(receipt, budgets).await?;
        }
        if round.sent || !self.progress || *self.shutdown.borrow() {
            return Ok(round);
        }
        for call in [Call::Post, Call::Edit] {
            let jobs = self
                .store
                .due_progress(
                    &self.name,
                    call == Call::Post,
                    now_ms(),
                    self.min_interval_ms(),
                    BATCH,
                )
                .await?;
            for job in jobs {
                // New terminal receipts pre-empt the rest of the progress batch.
                if *self.shutdown.borrow() || self.wake.take_urgent() {
                    return Ok(round);
                }
                let wait = match (call, budgets.edits.as_mut()) {
                    (Call::Edit, Some(edits)) => ready_in(edits, &self.shared.for_edits()).await,
                    _ => ready_in(&mut budgets.posts, &self.shared.for_posts()).await,
                };
                if !wait.is_zero() {
                    match call {
                        Call::Post => round.posts_blocked = Some(wait),
                        Call::Edit => round.edits_blocked = Some(wait),
                    }
                    break;
                }
                round.sent = true;
                if !self.send_progress(job, budgets).await? {
                    return Ok(round);
                }
            }
        }
        Ok(round)
    }

    async fn deliver_receipt(
        &mut self,
        receipt: ClaimedReceipt,
        budgets: &mut Budgets,
    ) -> Result<(), crate::store::StoreError> {
        let message = render::terminal(
            &TaskView {
                run_id: &receipt.run_id,
                worker_id: &receipt.worker_id,
                task_id: &receipt.task_id,
                event: &receipt.event,
                first_seen_at: receipt.first_seen_at,
                as_of: receipt.created_at,
                labels: &receipt.labels,
            },
            &receipt.id,
        );
        let outcome = if receipt.unverified {
            let key = herald_messaging::IdempotencyKey(receipt.id.clone());
            match self.adapter.reconcile(&self.target, &key).await {
                Reconciled::Found(handle) => DeliveryOutcome::Surfaced(handle),
                Reconciled::Absent | Reconciled::Unsupported => self.post(&message, budgets).await,
                // The platform could not be asked: posting now could
                // duplicate; try again on the schedule, still unverified.
                Reconciled::Unknown => DeliveryOutcome::NotSurfaced(NotSurfaced::Unverified {
                    reason: "could not check whether the earlier attempt arrived".to_owned(),
                }),
            }
        } else {
            self.post(&message, budgets).await
        };
        self.follow_move(&outcome).await?;
        let now = now_ms();
        crate::metrics::delivery(self.adapter.platform().as_str(), "terminal", outcome.label());
        let update = decide(&outcome, receipt.attempts, receipt.created_at, now, &self.config);
        match &update {
            ReceiptUpdate::Surfaced { .. } => {
                crate::metrics::surfaced_latency((now - receipt.created_at) as f64 / 1000.0);
                debug!(channel = %self.name, receipt = %receipt.id, latency_ms = now - receipt.created_at, "terminal notification surfaced")
            }
            ReceiptUpdate::Retry { error, .. } => {
                info!(channel = %self.name, receipt = %receipt.id, attempts = receipt.attempts, %error, "terminal notification will be retried")
            }
            ReceiptUpdate::Failed { error } => {
                warn!(channel = %self.name, receipt = %receipt.id, %error, "terminal notification failed")
            }
        }
        self.store.finish_receipt(&receipt.id, &update, now).await
    }

    async fn post(&self, message: &herald_messaging::Outbound, budgets: &mut Budgets) -> DeliveryOutcome {
        acquire(&mut budgets.posts, &self.shared.for_posts()).await;
        let outcome = self.adapter.post(&self.target, message).await;
        self.note_rate_limit(&outcome, &mut budgets.posts).await;
        if let Some(wait) = self.adapter.exhausted_for(&self.target, Call::Post) {
            budgets.posts.pause(wait);
        }
        outcome
    }

    /// Feed a platform's retry-after into the bucket it concerns: the
    /// account-wide one for a global limit, else this channel's.
    async fn note_rate_limit(&self, outcome: &DeliveryOutcome, local: &mut TokenBucket) {
        if let DeliveryOutcome::NotSurfaced(NotSurfaced::RateLimited { retry_after, global }) = outcome {
            match (&self.shared.global, global) {
                (Some(shared), true) => shared.lock().await.pause(*retry_after),
                _ => local.pause(*retry_after),
            }
        }
    }

    /// The platform moved the channel: use (and remember) its new id.
    async fn follow_move(&mut self, outcome: &DeliveryOutcome) -> Result<(), crate::store::StoreError> {
        if let DeliveryOutcome::NotSurfaced(NotSurfaced::Moved { to }) = outcome {
            info!(channel = %self.name, from = %self.target.id, to = %to.id, "channel moved; following it");
            self.store
                .move_channel_target(&self.name, &to.id, now_ms())
                .await?;
            self.target.id = to.id.clone();
        }
        Ok(())
    }

    /// Sleep, but wake early on shutdown.
    async fn pause(&self, how_long: Duration) {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(how_long) => {}
            _ = shutdown.changed() => {}
        }
    }

    /// Send one progress rendering. Returns false when the channel should
    /// stop sending progress for this round (rate limited, failing).
    async fn send_progress(
        &mut self,
        job: ProgressJob,
        budgets: &mut Budgets,
    ) -> Result<bool, crate::store::StoreError> {
        let mut message = render::progress(&TaskView {
            run_id: &job.run_id,
            worker_id: &job.worker_id,
            task_id: &job.task_id,
            event: &job.display,
            first_seen_at: job.first_seen_at,
            as_of: job.updated_at,
            labels: &job.labels,
        });
        let text_hash = rendering_hash(&message);
        if let (Some(id), Some(shown)) = (&job.message_id, job.shown_hash)
            && shown == text_hash
        {
            // Nothing visible changed (e.g. only the seq moved): no call,
            // no budget spent.
            let write = ProgressWrite::Shown {
                message_id: id.clone(),
                version: job.version,
                text_hash: Some(text_hash),
            };
            self.store
                .record_progress(job.task, &job.channel, &write, now_ms())
                .await?;
            return Ok(true);
        }
        let outcome = match (&job.message_id, budgets.edits.as_mut()) {
            (Some(id), Some(edits)) => {
                acquire(edits, &self.shared.for_edits()).await;
                let handle = MessageHandle(id.clone());
                let outcome = self.adapter.edit(&self.target, &handle, &message).await;
                self.note_rate_limit(&outcome, edits).await;
                if let Some(wait) = self.adapter.exhausted_for(&self.target, Call::Edit) {
                    edits.pause(wait);
                }
                outcome
            }
            (Some(_), None) => DeliveryOutcome::NotSurfaced(NotSurfaced::Unsupported),
            (None, _) => {
                let key = herald_messaging::IdempotencyKey(job.post_key.clone());
                let earlier = if job.post_started {
                    self.adapter.reconcile(&self.target, &key).await
                } else {
                    Reconciled::Absent
                };
                match earlier {
                    // The post before a crash did land: adopt it; the next
                    // round edits it to the newest state.
                    Reconciled::Found(handle) => {
                        let write = ProgressWrite::Shown {
                            message_id: handle.0,
                            version: 0,
                            text_hash: None,
                        };
                        self.store
                            .record_progress(job.task, &job.channel, &write, now_ms())
                            .await?;
                        return Ok(true);
                    }
                    Reconciled::Unknown => DeliveryOutcome::NotSurfaced(NotSurfaced::Unverified {
                        reason: "could not check whether the earlier post arrived".to_owned(),
                    }),
                    Reconciled::Absent | Reconciled::Unsupported => {
                        self.store.progress_post_started(job.task, &job.channel).await?;
                        message.idempotency_key = Some(key);
                        self.post(&message, budgets).await
                    }
                }
            }
        };
        self.follow_move(&outcome).await?;
        let now = now_ms();
        crate::metrics::delivery(self.adapter.platform().as_str(), "progress", outcome.label());
        let (write, keep_going) = match outcome {
            DeliveryOutcome::Surfaced(handle) => (
                ProgressWrite::Shown {
                    message_id: handle.0,
                    version: job.version,
                    text_hash: Some(text_hash),
                },
                true,
            ),
            // A message in a chat that moved cannot be edited in its new
            // home: post a new one there.
            DeliveryOutcome::NotSurfaced(NotSurfaced::Gone | NotSurfaced::Moved { .. }) => {
                (ProgressWrite::Gone, true)
            }
            DeliveryOutcome::NotSurfaced(NotSurfaced::RateLimited { .. }) => return Ok(false),
            DeliveryOutcome::NotSurfaced(
                reason @ (NotSurfaced::Permanent { .. } | NotSurfaced::Unsupported),
            ) => {
                warn!(channel = %self.name, task = job.task, %reason, "progress message abandoned");
                (ProgressWrite::Abandon { version: job.version }, true)
            }
            DeliveryOutcome::NotSurfaced(reason) => {
                info!(channel = %self.name, task = job.task, %reason, "progress update failed; will retry");
                self.pause(PROGRESS_BACKOFF).await;
                return Ok(false);
            }
        };
        self.store
            .record_progress(job.task, &job.channel, &write, now)
            .await?;
        Ok(keep_going)
    }
}
