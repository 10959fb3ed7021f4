//! Group commit for the delivery engine's bookkeeping: one task records
//! every channel's attempt outcomes (surfaced, retry, failed) and makes
//! every channel's claims. What arrives while a transaction runs is done
//! together in the next, many receipts per transaction, so a burst of
//! concurrent deliveries shares its commits instead of paying one each,
//! and a claim never waits on SQLite's busy handler behind an outcome
//! batch (it is in the same transaction).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::store::{ClaimRequest, ClaimedReceipt, ReceiptOutcome, Store, StoreError};

/// Requests waiting for the writer; beyond this, senders wait.
const QUEUE: usize = 4096;
/// Most requests done in one transaction.
const MAX_GROUP: usize = 512;
/// The longest wait between tries while the store is unreachable.
const MAX_STORE_WAIT: Duration = Duration::from_secs(2);

/// Why an outcome was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum OutcomeError {
    /// The writer task has stopped (herald is shutting down).
    #[error("the delivery bookkeeping writer has stopped")]
    Stopped,
    /// The store refused the write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One request to the writer, with where its answer goes.
enum Job {
    Outcome {
        outcome: ReceiptOutcome,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    Claim {
        claim: ClaimRequest,
        reply: oneshot::Sender<Result<Vec<ClaimedReceipt>, StoreError>>,
    },
}

/// The handle channel actors record outcomes and claim receipts through;
/// cheap to clone.
#[derive(Clone)]
pub struct Bookkeeping {
    tx: mpsc::Sender<Job>,
}

impl Bookkeeping {
    /// Start the writer task; it runs until every handle is dropped.
    pub fn start(store: Store) -> Bookkeeping {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, rx));
        Bookkeeping { tx }
    }

    /// Record one outcome; resolves once it is committed. True when it was
    /// recorded, false when the attempt was no longer current (fenced: the
    /// lease expired and a newer attempt took over).
    pub async fn record(&self, outcome: ReceiptOutcome) -> Result<bool, OutcomeError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job::Outcome { outcome, reply })
            .await
            .map_err(|_| OutcomeError::Stopped)?;
        Ok(answer.await.map_err(|_| OutcomeError::Stopped)??)
    }

    /// Claim a channel's due receipts; resolves once the claim is
    /// committed. [`StoreError::LeaseLost`] once the channel's lease has
    /// passed on; [`StoreError::Unanswered`] when the writer has stopped or
    /// the transaction failed in a way that leaves unknown whether the
    /// claim committed (the caller reclaims its channel's orphans).
    pub async fn claim(&self, claim: ClaimRequest) -> Result<Vec<ClaimedReceipt>, StoreError> {
        let stopped = || StoreError::Unanswered("the delivery bookkeeping writer has stopped".to_owned());
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job::Claim { claim, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The writer: take what is queued, do it in one transaction, answer each.
async fn run(store: Store, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut jobs, MAX_GROUP).await > 0 {
        let mut outcomes = Vec::new();
        let mut outcome_replies = Vec::new();
        let mut claims = Vec::new();
        let mut claim_replies = Vec::new();
        for job in jobs.drain(..) {
            match job {
                Job::Outcome { outcome, reply } => {
                    outcomes.push(outcome);
                    outcome_replies.push(reply);
                }
                Job::Claim { claim, reply } => {
                    claims.push(claim);
                    claim_replies.push(reply);
                }
            }
        }
        match store.finish_and_claim(&outcomes, &claims).await {
            Ok(done) => {
                answer_outcomes(outcome_replies, done.recorded.into_iter().map(Ok));
                for (reply, claimed) in claim_replies.into_iter().zip(done.claimed) {
                    // A stopped actor no longer waits: its claims expire
                    // with their lease and are reclaimed.
                    let _gone = reply.send(claimed).is_err();
                }
            }
            Err(e) if e.is_transient() => {
                // Whether the claims committed is unknown: each claimer
                // learns so and puts back what it may have claimed. The
                // outcomes are known and fenced, so they are tried again.
                let said = e.to_string();
                for reply in claim_replies {
                    let _gone = reply.send(Err(StoreError::Unanswered(said.clone()))).is_err();
                }
                let answers = retry_outcomes(&store, &outcomes, e).await;
                answer_outcomes(outcome_replies, answers);
            }
            Err(e) => {
                // One bad row must not fail its neighbours: each on its
                // own, so every sender gets its own answer.
                warn!(error = %e, outcomes = outcomes.len(), claims = claims.len(), "group commit of delivery bookkeeping failed; doing each on its own");
                answer_outcomes(outcome_replies, one_by_one(&store, &outcomes).await);
                for (claim, reply) in claims.into_iter().zip(claim_replies) {
                    let one = store
                        .claim_receipts(&claim.lease, claim.now, claim.lease_ms, claim.limit, claim.which)
                        .await;
                    let _gone = reply.send(one).is_err();
                }
            }
        }
    }
}

/// Send each outcome's sender its answer.
fn answer_outcomes(
    replies: Vec<oneshot::Sender<Result<bool, StoreError>>>,
    answers: impl IntoIterator<Item = Result<bool, StoreError>>,
) {
    for (reply, answer) in replies.into_iter().zip(answers) {
        // An actor that was stopped no longer waits; the outcome is
        // recorded regardless.
        let _gone = reply.send(answer).is_err();
    }
}

/// Record each outcome in its own write, so that one bad row does not
/// fail its neighbours: each gets its own answer.
async fn one_by_one(store: &Store, outcomes: &[ReceiptOutcome]) -> Vec<Result<bool, StoreError>> {
    let mut answers = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        let one = store.finish_receipts(std::slice::from_ref(outcome)).await;
        answers.push(one.map(|recorded| recorded.first().copied().unwrap_or(false)));
    }
    answers
}

/// Record outcomes whose first try failed on `first` (transient), trying
/// again for as long as the store is unreachable: the outcomes are known
/// and only this process holds them, so waiting for the store costs
/// latency, while giving up would leave each receipt to its lease
/// (minutes). Retrying is safe because every write is fenced by its
/// attempt. An error another try cannot fix is each outcome's answer
/// (recorded one by one, so one bad row does not fail its neighbours).
async fn retry_outcomes(
    store: &Store,
    outcomes: &[ReceiptOutcome],
    first: StoreError,
) -> Vec<Result<bool, StoreError>> {
    if outcomes.is_empty() {
        return Vec::new();
    }
    warn!(error = %first, outcomes = outcomes.len(), "store unreachable; holding delivery outcomes until it answers");
    let mut wait = Duration::from_millis(50);
    let mut failures = 1u32;
    loop {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_STORE_WAIT);
        match store.finish_receipts(outcomes).await {
            Ok(recorded) => {
                info!(
                    outcomes = outcomes.len(),
                    failures, "store reachable again; delivery outcomes recorded"
                );
                return recorded.into_iter().map(Ok).collect();
            }
            Err(e) if e.is_transient() => failures += 1,
            Err(e) => {
                warn!(error = %e, outcomes = outcomes.len(), "delivery outcomes could not be recorded together; recording them one by one");
                return one_by_one(store, outcomes).await;
            }
        }
    }
}
