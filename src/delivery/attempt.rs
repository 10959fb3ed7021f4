//! One attempt at a terminal receipt: render it, pass the door, post it,
//! let the door and the account learn from the answer, decide what to
//! record by the retry policy, and record it through the group-commit
//! writer. Everything it needs is owned, so a concurrent channel runs each
//! attempt as its own task; an ordered channel awaits them one by one.

use std::sync::Arc;

use herald_messaging::{Call, ChannelRef, DeliveryOutcome, MessageHandle, NotSurfaced, Outbound, Reply};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::warn;

use super::account::Account;
use super::bookkeeping::{Bookkeeping, OutcomeError};
use super::concurrency::{Answer, Ticket};
use super::door::{Door, Slot};
use super::receipts::decide;
use crate::config::DeliveryConfig;
use crate::render::{self, TaskView};
use crate::store::{ClaimedReceipt, Lease, ProgressWrite, ReceiptOutcome, ReceiptUpdate, Store, now_ms};

/// The terminal notification of a receipt: the same text on every attempt
/// (a probe asks for exactly what was sent). `mentions` (the channel's and
/// its routes') go on it where it asks for someone.
pub fn receipt_message(receipt: &ClaimedReceipt, mentions: &[String]) -> Outbound {
    let mut out = render::terminal(
        &TaskView {
            run_id: &receipt.run_id,
            worker_id: &receipt.worker_id,
            task_id: &receipt.task_id,
            event: &receipt.event,
            first_seen_at: receipt.first_seen_at,
            as_of: receipt.created_at,
            labels: &receipt.labels,
            stale: false,
            escalated_to: &[],
            acknowledged: None,
        },
        &receipt.id,
    );
    if render::wants_acknowledgement(&receipt.event) {
        out.mentions = mentions.to_vec();
    }
    match &receipt.fallback_for {
        Some((missed, why)) => render::as_fallback(out, missed, why),
        None => out,
    }
}

/// An update whose error text is safe to store and show: no configured
/// secret in it.
pub fn redacted(update: ReceiptUpdate) -> ReceiptUpdate {
    match update {
        ReceiptUpdate::Retry {
            at,
            error,
            unverified,
            backoff,
        } => ReceiptUpdate::Retry {
            at,
            error: crate::redact::clean(&error),
            unverified,
            backoff,
        },
        ReceiptUpdate::Failed { error } => ReceiptUpdate::Failed {
            error: crate::redact::clean(&error),
        },
        surfaced @ ReceiptUpdate::Surfaced { .. } => surfaced,
    }
}

/// The failure of an outcome, if it is one.
pub fn failure(outcome: &DeliveryOutcome) -> Option<&NotSurfaced> {
    match outcome {
        DeliveryOutcome::Surfaced(_) => None,
        DeliveryOutcome::NotSurfaced(reason) => Some(reason),
    }
}

/// What one channel's attempts share.
pub struct Attempts {
    /// Where on the platform.
    pub target: ChannelRef,
    /// The platform account: adapter, shared budgets, health.
    pub account: Arc<Account>,
    /// The channel's door (its windows are shared with the actor's).
    pub door: Door,
    /// Retry schedule and max age.
    pub config: DeliveryConfig,
    /// Where outcomes are recorded (group commit).
    pub bookkeeping: Bookkeeping,
    /// Becomes true when the channel stops.
    pub shutdown: watch::Receiver<bool>,
    /// The epoch of the channel lease the attempts are made under.
    pub epoch: i64,
    /// Who failure and attention notifications ping.
    pub mentions: crate::mentions::ChannelMentions,
    /// A task's notifications are replies under its live message.
    pub thread: bool,
    /// The store, for the threads replies open (and parents found gone).
    pub store: Store,
    /// The channel lease the attempts are made under.
    pub lease: Lease,
    /// The channel's name.
    pub name: String,
    /// Where its rate-limited answers are counted (the overview).
    pub throttles: super::throttles::Throttles,
}

/// Where one receipt's post goes, or why it cannot be made now.
enum Place {
    /// Post here.
    At(ChannelRef),
    /// Opening the thread it goes into failed (or herald stopped first:
    /// `None`).
    Blocked(Option<NotSurfaced>),
}

/// How an attempt ended.
#[derive(Debug)]
pub struct Landed {
    /// Receipt id.
    pub receipt: String,
    /// Which attempt this was.
    pub attempt: i64,
    /// Unix ms its terminal event was accepted.
    pub created_at: i64,
    /// The platform's answer; `None` when the channel stopped before the
    /// call was made.
    pub outcome: Option<DeliveryOutcome>,
    /// What the policy decided.
    pub update: ReceiptUpdate,
    /// Whether it was recorded (false: a newer attempt owns the receipt).
    pub recorded: Result<bool, OutcomeError>,
}

impl Attempts {
    /// Wait at the channel's door for `call`; `None` when stopping first.
    pub async fn through_door(&self, call: Call) -> Option<Slot> {
        let mut shutdown = self.shutdown.clone();
        if *shutdown.borrow() {
            return None;
        }
        tokio::select! {
            slot = self.door.acquire(call) => Some(slot),
            _ = shutdown.changed() => None,
        }
    }

    /// Let the door, the account and the overview's count of 429s learn
    /// from the platform's answer to `call` at `target` (`None`: it
    /// confirmed the call). Every answer herald gets passes here.
    pub async fn learn(&self, target: &ChannelRef, call: Call, slot: Slot, failure: Option<&NotSurfaced>) {
        let exhausted = self.account.adapter.exhausted_for(target, call);
        self.door.observe(call, slot, failure, exhausted).await;
        self.account.note(failure).await;
        self.throttles.note(&self.name, failure, now_ms());
    }

    /// Where a receipt's post goes: the channel, or in a threaded channel
    /// a reply under its task's live message — first opening the thread
    /// from it where the platform keeps replies in one (one call through
    /// the door, its id kept for every later reply).
    async fn place(&self, receipt: &ClaimedReceipt, message: &Outbound) -> Place {
        let Some(parent) = receipt.parent.as_ref().filter(|_| self.thread) else {
            return Place::At(self.target.clone());
        };
        let parent = MessageHandle(parent.clone());
        let mut thread = receipt.thread.clone();
        if thread.is_none() && self.account.adapter.opens_threads() {
            let Some(slot) = self.through_door(Call::Post).await else {
                return Place::Blocked(None);
            };
            let opened = self
                .account
                .adapter
                .open_thread(&self.target, &parent, &message.title)
                .await;
            self.learn(&self.target, Call::Post, slot, opened.as_ref().err())
                .await;
            match opened {
                Ok(id) => {
                    // If it cannot be kept, the next reply opens it again
                    // and the platform answers with the same thread.
                    if let Err(e) = self
                        .store
                        .record_thread(receipt.task, &self.lease, parent.as_str(), Some(&id))
                        .await
                    {
                        warn!(channel = %self.lease.channel, error = %e, "could not keep the thread of a task's replies");
                    }
                    thread = Some(id);
                }
                // Not allowed to open threads here (a missing permission):
                // the notification goes to the channel itself rather than
                // nowhere.
                Err(NotSurfaced::Permanent { reason }) => {
                    warn!(channel = %self.lease.channel, %reason, "cannot open a thread for a task's replies; posting the notification in the channel");
                    return Place::At(self.target.clone());
                }
                Err(reason) => {
                    if reason == NotSurfaced::Gone {
                        self.parent_gone(receipt).await;
                    }
                    return Place::Blocked(Some(reason));
                }
            }
        }
        Place::At(self.target.replying(Reply { parent, thread }))
    }

    /// A reply's parent (or its thread) no longer exists: forget the
    /// thread, and where the parent itself is gone the live message too,
    /// which is then posted anew; the reply goes under the new one.
    async fn parent_gone(&self, receipt: &ClaimedReceipt) {
        let Some(parent) = &receipt.parent else {
            return;
        };
        let forgotten = if receipt.thread.is_some() {
            self.store
                .record_thread(receipt.task, &self.lease, parent, None)
                .await
        } else {
            self.store
                .record_progress(receipt.task, &self.lease, &ProgressWrite::Gone, now_ms())
                .await
        };
        if let Err(e) = forgotten {
            warn!(channel = %self.lease.channel, error = %e, "could not forget a reply's missing parent; the reply is retried under it");
        }
    }

    /// Deliver one claimed receipt and record the outcome. A concurrent
    /// channel's `ticket` goes back with the answer, before the outcome is
    /// recorded.
    pub async fn deliver(&self, receipt: ClaimedReceipt, ticket: Option<Ticket>) -> Landed {
        let message = receipt_message(&receipt, &self.mentions.for_receipt(&receipt));
        // An unverified receipt reaches here only where resending is the
        // reconciliation (the same key: nonce, webhook-id); look-up and
        // probe platforms settle theirs first.
        let place = self.place(&receipt, &message).await;
        let slot = match place {
            Place::At(_) => self.through_door(Call::Post).await,
            Place::Blocked(_) => None,
        };
        let (outcome, answer, update) = match (place, slot) {
            (Place::At(target), Some(slot)) => {
                let started = Instant::now();
                let outcome = self.account.adapter.post(&target, &message).await;
                let rtt = started.elapsed();
                self.learn(&target, Call::Post, slot, failure(&outcome)).await;
                if outcome == DeliveryOutcome::NotSurfaced(NotSurfaced::Gone) {
                    self.parent_gone(&receipt).await;
                }
                let update = self.decided(&outcome, &receipt);
                let answer = Answer::of(&outcome, rtt);
                (Some(outcome), answer, update)
            }
            (Place::Blocked(Some(reason)), _) => {
                let outcome = DeliveryOutcome::NotSurfaced(reason);
                let update = self.decided(&outcome, &receipt);
                (Some(outcome), Answer::Neutral, update)
            }
            (Place::At(_) | Place::Blocked(None), _) => {
                let update = ReceiptUpdate::Retry {
                    at: now_ms(),
                    error: "herald stopped before this attempt was sent".to_owned(),
                    unverified: receipt.unverified,
                    backoff: false,
                };
                (None, Answer::Neutral, update)
            }
        };
        if let Some(ticket) = ticket {
            ticket.answer(answer);
        }
        let recorded = self
            .bookkeeping
            .record(ReceiptOutcome {
                id: receipt.id.clone(),
                attempt: receipt.attempts,
                epoch: self.epoch,
                update: update.clone(),
                at: now_ms(),
            })
            .await;
        Landed {
            receipt: receipt.id.clone(),
            attempt: receipt.attempts,
            created_at: receipt.created_at,
            outcome,
            update,
            recorded,
        }
    }

    /// What the retry policy makes of an attempt's outcome, safe to store.
    fn decided(&self, outcome: &DeliveryOutcome, receipt: &ClaimedReceipt) -> ReceiptUpdate {
        redacted(decide(
            outcome,
            receipt.attempts,
            receipt.created_at,
            now_ms(),
            &self.config,
        ))
    }
}
