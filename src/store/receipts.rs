//! Durable terminal receipts: claim with a lease, record the outcome
//! (fenced by the attempt it belongs to), reclaim expired leases, recover
//! after a crash, reconcile unverified ones, replay a failed one. The policy
//! that decides *what* to record lives in `delivery/receipts.rs`; this
//! module only stores it.

use std::collections::BTreeMap;

use super::columns::Columns;
use super::{Lease, StoreError};
use crate::protocol::FleetWorkerEvent;

/// An [`UnverifiedReceipt`] from a row.
pub(crate) fn unverified_from(r: &impl Columns) -> Result<UnverifiedReceipt, StoreError> {
    Ok(UnverifiedReceipt {
        id: r.text("id")?,
        created_at: r.int("created_at")?,
        attempted_at: r.int("attempted_at")?,
    })
}

/// Which due receipts a claim takes (and its next-due time counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Claimable {
    /// Not those whose last outcome is unknown (they wait for a look-up).
    pub verified_only: bool,
    /// Not those whose task's live message in the channel is still to be
    /// posted: in a threaded channel a notification is a reply under it,
    /// so it waits for its parent (not for one whose post was given up).
    pub parent_posted: bool,
}

/// A receipt claimed for one delivery attempt, with what to render.
#[derive(Debug, Clone)]
pub struct ClaimedReceipt {
    /// Receipt id (the idempotency key).
    pub id: String,
    /// Its task's row id.
    pub task: i64,
    /// The task's live message in this channel, where it has one: what a
    /// threaded channel's reply goes under.
    pub parent: Option<String>,
    /// The thread opened from that live message, where the platform keeps
    /// replies in one (Discord).
    pub thread: Option<String>,
    /// Channel name.
    pub channel: String,
    /// Attempts including this one.
    pub attempts: i64,
    /// Unix ms the terminal event was accepted.
    pub created_at: i64,
    /// The previous attempt's outcome is unknown: reconcile before sending.
    pub unverified: bool,
    /// Run id.
    pub run_id: String,
    /// Worker id.
    pub worker_id: String,
    /// Task id.
    pub task_id: String,
    /// The terminal event.
    pub event: FleetWorkerEvent,
    /// Unix ms of the task's first event (for the duration).
    pub first_seen_at: i64,
    /// The task's labels.
    pub labels: BTreeMap<String, String>,
    /// Sent in place of another channel's receipt that missed: that
    /// channel, and why.
    pub fallback_for: Option<(String, String)>,
}

/// A receipt whose last attempt has an unknown outcome.
#[derive(Debug, Clone)]
pub struct UnverifiedReceipt {
    /// Receipt id (the idempotency key).
    pub id: String,
    /// When its terminal event was accepted.
    pub created_at: i64,
    /// When its last attempt was claimed.
    pub attempted_at: i64,
}

/// What to record after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptUpdate {
    /// The platform confirmed the message.
    Surfaced {
        /// Platform message id.
        message_id: String,
    },
    /// Try again at `at` (Unix ms).
    Retry {
        /// When.
        at: i64,
        /// Why the attempt failed.
        error: String,
        /// Whether the outcome of this attempt is unknown.
        unverified: bool,
        /// Waiting on the retry schedule because the platform failed (not
        /// on a retry-after): a recovery of the account pulls it forward.
        backoff: bool,
    },
    /// Give up; kept listed and replayable.
    Failed {
        /// Why.
        error: String,
    },
}

/// One attempt's outcome, to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptOutcome {
    /// Receipt id.
    pub id: String,
    /// The attempt it belongs to (the fence).
    pub attempt: i64,
    /// The epoch of the channel lease it was made under (the fence
    /// between replicas).
    pub epoch: i64,
    /// What to record.
    pub update: ReceiptUpdate,
    /// Unix ms of the answer.
    pub at: i64,
}

/// One channel's claim: up to `limit` of its due pending receipts, oldest
/// due first, of those `which` allows, for `lease_ms` from `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The channel's lease the claim is made under (the fence).
    pub lease: Lease,
    /// Unix ms: what is due by then is claimable.
    pub now: i64,
    /// How long the claim holds before it may be reclaimed.
    pub lease_ms: i64,
    /// Most receipts to take.
    pub limit: i64,
    /// Which due receipts qualify.
    pub which: Claimable,
}

/// Outcomes sorted by kind, in their order within each: each kind is
/// recorded by one batched statement of its own (both backends).
#[derive(Debug, Default)]
pub struct OutcomeKinds<'a> {
    /// Confirmed by the platform.
    pub surfaced: Vec<&'a ReceiptOutcome>,
    /// To be tried again.
    pub retry: Vec<&'a ReceiptOutcome>,
    /// Given up on.
    pub failed: Vec<&'a ReceiptOutcome>,
}

impl<'a> OutcomeKinds<'a> {
    /// Sort `outcomes` by kind.
    pub fn of(outcomes: &'a [ReceiptOutcome]) -> OutcomeKinds<'a> {
        let mut kinds = OutcomeKinds::default();
        for outcome in outcomes {
            match outcome.update {
                ReceiptUpdate::Surfaced { .. } => kinds.surfaced.push(outcome),
                ReceiptUpdate::Retry { .. } => kinds.retry.push(outcome),
                ReceiptUpdate::Failed { .. } => kinds.failed.push(outcome),
            }
        }
        kinds
    }
}

/// What one bookkeeping transaction did ([`ReceiptStore::finish_and_claim`]).
#[derive(Debug)]
pub struct Bookkept {
    /// In the order of the outcomes: whether each was recorded (false: a
    /// newer attempt or another replica owns the receipt now).
    pub recorded: Vec<bool>,
    /// In the order of the claims: the receipts claimed;
    /// [`StoreError::LeaseLost`] when the channel's lease had passed on
    /// (nothing was claimed); another error when the claim committed but
    /// what it claimed could not be read (the caller puts its channel's
    /// orphaned claims back).
    pub claimed: Vec<Result<Vec<ClaimedReceipt>, StoreError>>,
}

/// Terminal receipts: claims, fenced outcomes, leases, reconciliation, replay.
#[async_trait::async_trait]
pub trait ReceiptStore: Send + Sync {
    /// The delivery writer's group commit: record `outcomes` (each fenced,
    /// as [`ReceiptStore::finish_receipts`] says) and make `claims` (each
    /// for its own channel) in one write transaction. SQLite has one
    /// writer at a time: a claim made on its own collides with the outcome
    /// batches and sleeps in SQLite's busy handler, one made here waits
    /// for nothing and shares the commit.
    async fn finish_and_claim(
        &self,
        outcomes: &[ReceiptOutcome],
        claims: &[ClaimRequest],
    ) -> Result<Bookkept, StoreError>;

    /// One claim on its own ([`ReceiptStore::finish_and_claim`] with no
    /// outcomes). [`StoreError::LeaseLost`] once the channel's lease has
    /// passed on.
    async fn claim_receipts(
        &self,
        lease: &Lease,
        now: i64,
        lease_ms: i64,
        limit: i64,
        which: Claimable,
    ) -> Result<Vec<ClaimedReceipt>, StoreError> {
        let claim = ClaimRequest {
            lease: lease.clone(),
            now,
            lease_ms,
            limit,
            which,
        };
        let done = self.finish_and_claim(&[], std::slice::from_ref(&claim)).await?;
        done.claimed
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(StoreError::Unanswered("the store answered no claim".to_owned())))
    }

    /// Receipts with what to render, by id (claimed or not), oldest first.
    /// The rows come back aggregated into one JSON array: with sqlx's
    /// SQLite driver every returned row is a hop to the connection's
    /// thread and back, and a claim returns dozens.
    async fn receipts_by_id(&self, ids: &[String]) -> Result<Vec<ClaimedReceipt>, StoreError>;

    /// Record many attempt outcomes in one transaction (the delivery
    /// engine's group commit). Each is fenced: recorded only while its
    /// receipt is still `sending` in that attempt and its channel's lease
    /// is still the one it was made under, so a late answer never
    /// overwrites a newer state (the claim was reclaimed or replayed, or
    /// the channel passed to another replica). Returns, in order, whether
    /// each was recorded.
    async fn finish_receipts(&self, outcomes: &[ReceiptOutcome]) -> Result<Vec<bool>, StoreError> {
        Ok(self.finish_and_claim(outcomes, &[]).await?.recorded)
    }

    /// Claims of `channel` whose lease expired while `sending` (a store
    /// error, a stuck call) go back to `pending`, due now and unverified:
    /// the lost attempt may have reached the platform. Returns how many.
    async fn reclaim_expired_receipts(&self, lease: &Lease, now: i64) -> Result<u64, StoreError>;

    /// Claims of `channel` left `sending` by no attempt this process still
    /// has (`keep` are the ones it has): a claim whose answer from the
    /// store was lost (the claim committed, herald saw an error), or a
    /// round that failed between claiming and sending. Back to `pending`,
    /// due now and unverified (the attempt may have been sent). Returns how
    /// many. Only the holder of the channel's lease may call it (fenced);
    /// a replica that just took a lease calls it with no `keep` to recover
    /// the previous holder's claims.
    async fn reclaim_unowned_receipts(
        &self,
        lease: &Lease,
        keep: &[String],
        now: i64,
    ) -> Result<u64, StoreError>;

    /// Pending receipts of `channel` whose last outcome is unknown: what a
    /// look-up or a probe must find or rule out.
    async fn unverified_receipts(&self, channel: &str) -> Result<Vec<UnverifiedReceipt>, StoreError>;

    /// Messages herald knows it has in these channels (terminal
    /// notifications and live messages), as (channel, platform message
    /// id, when it was confirmed).
    async fn owned_messages(&self, channels: &[String]) -> Result<Vec<(String, String, i64)>, StoreError>;

    /// Whether `message_id` is a message herald knows it has in any of
    /// `channels`.
    async fn owns_message(&self, channels: &[String], message_id: &str) -> Result<bool, StoreError>;

    /// A look-up found the message of an unverified receipt: surfaced.
    async fn surface_unverified_receipt(
        &self,
        lease: &Lease,
        id: &str,
        message_id: &str,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// A look-up ruled these receipts' messages out (or could never be
    /// made): send them, due now. `note`, when given, becomes their
    /// `last_error` (why they are sent without a check).
    async fn clear_unverified_receipts(
        &self,
        lease: &Lease,
        ids: &[String],
        note: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError>;

    /// Unverified receipts of `channel` accepted before `cutoff` that could
    /// not be checked in time: failed with `error` (kept, replayable).
    async fn fail_unverified_before(
        &self,
        lease: &Lease,
        cutoff: i64,
        error: &str,
    ) -> Result<u64, StoreError>;

    /// The platform answers again: receipts of these channels waiting on
    /// the retry schedule become due now (progress messages likewise).
    /// Returns how many receipts were pulled forward.
    async fn pull_forward(&self, channels: &[String], now: i64) -> Result<u64, StoreError>;

    /// The earliest receipt of `channel` waiting on backoff becomes due now
    /// (a probe of a failing platform). Returns whether there was one.
    async fn pull_forward_one(&self, channel: &str, now: i64) -> Result<bool, StoreError>;

    /// Whether `channel` has receipts waiting on backoff.
    async fn has_backoff(&self, channel: &str) -> Result<bool, StoreError>;

    /// Receipts still to deliver to channels the config no longer has:
    /// failed with `channel removed from config` (replayable once it is
    /// back). Returns how many.
    async fn fail_receipts_outside(&self, known: &[String]) -> Result<u64, StoreError>;

    /// Re-drive a failed receipt (dead-letter replay). Returns its channel,
    /// or `None` when there is no failed receipt with that id.
    async fn replay_receipt(&self, id: &str, now: i64) -> Result<Option<String>, StoreError>;

    /// Re-drive every failed receipt (of `channel`, or of all channels):
    /// due now, like [`ReceiptStore::replay_receipt`]. Returns how many
    /// per channel.
    async fn replay_failed(&self, channel: Option<&str>, now: i64) -> Result<Vec<(String, i64)>, StoreError>;

    /// The status of one receipt, if it exists.
    async fn receipt_status(&self, id: &str) -> Result<Option<String>, StoreError>;

    /// Up to `limit` surfaced notifications of `channel` marked to be
    /// rendered again (their task was acknowledged): receipt id and the
    /// platform's message id.
    async fn notifications_to_edit(
        &self,
        channel: &str,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError>;

    /// Clear the marks of `ids` (edited, or nothing to edit), under the
    /// channel's lease.
    async fn notifications_edited(&self, lease: &Lease, ids: &[String]) -> Result<(), StoreError>;

    /// Where one receipt was posted: its channel and the platform's message
    /// id (`None` until it surfaced), if the receipt exists. A pressed
    /// button is believed only for that message.
    async fn receipt_placement(&self, id: &str) -> Result<Option<(String, Option<String>)>, StoreError>;

    /// When the next pending receipt of `channel` that `which` allows is
    /// due (Unix ms).
    async fn next_receipt_due(&self, channel: &str, which: Claimable) -> Result<Option<i64>, StoreError>;

    /// When the earliest `sending` claim of `channel` expires (Unix ms).
    async fn next_lease_expiry(&self, channel: &str) -> Result<Option<i64>, StoreError>;

    /// Receipts per status, for the `herald_receipts` gauge: the tallies
    /// triggers keep with every change (no count over the table).
    async fn receipt_counts(&self) -> Result<Vec<(String, i64)>, StoreError>;
}
