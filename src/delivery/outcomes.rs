//! Group commit for delivery outcomes: one task records every channel's
//! attempt outcomes (surfaced, retry, failed). Outcomes queue while a
//! commit runs and are then recorded together, many receipts per
//! transaction, so a burst of concurrent deliveries shares its commits
//! instead of paying one each.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::store::{ReceiptOutcome, Store, StoreError};

/// Outcomes waiting for the writer; beyond this, senders wait.
const QUEUE: usize = 4096;
/// Most outcomes recorded in one transaction.
const MAX_GROUP: usize = 512;
/// The longest wait between tries while the store is unreachable.
const MAX_STORE_WAIT: Duration = Duration::from_secs(2);

/// Why an outcome was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum OutcomeError {
    /// The writer task has stopped (herald is shutting down).
    #[error("the delivery outcome writer has stopped")]
    Stopped,
    /// The store refused the write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Job {
    outcome: ReceiptOutcome,
    reply: oneshot::Sender<Result<bool, StoreError>>,
}

/// The handle channel actors record outcomes through; cheap to clone.
#[derive(Clone)]
pub struct OutcomeWriter {
    tx: mpsc::Sender<Job>,
}

impl OutcomeWriter {
    /// Start the writer task; it runs until every handle is dropped.
    pub fn start(store: Store) -> OutcomeWriter {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, rx));
        OutcomeWriter { tx }
    }

    /// Record one outcome; resolves once it is committed. True when it was
    /// recorded, false when the attempt was no longer current (fenced: the
    /// lease expired and a newer attempt took over).
    pub async fn record(&self, outcome: ReceiptOutcome) -> Result<bool, OutcomeError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { outcome, reply })
            .await
            .map_err(|_| OutcomeError::Stopped)?;
        Ok(answer.await.map_err(|_| OutcomeError::Stopped)??)
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut jobs, MAX_GROUP).await > 0 {
        let outcomes: Vec<ReceiptOutcome> = jobs.iter().map(|j| j.outcome.clone()).collect();
        match commit(&store, &outcomes).await {
            Ok(recorded) => {
                for (job, done) in jobs.drain(..).zip(recorded) {
                    // An actor that was stopped no longer waits; the
                    // outcome is recorded regardless.
                    let _gone = job.reply.send(Ok(done)).is_err();
                }
            }
            Err(e) => {
                // One bad row must not fail its neighbours: record each on
                // its own, so every sender gets its own answer.
                warn!(error = %e, outcomes = jobs.len(), "group commit of delivery outcomes failed; recording them one by one");
                for job in jobs.drain(..) {
                    let one = store.finish_receipts(std::slice::from_ref(&job.outcome)).await;
                    let answer = one.map(|r| r.first().copied().unwrap_or(false));
                    let _gone = job.reply.send(answer).is_err();
                }
            }
        }
    }
}

/// Record a group, trying again for as long as the store is unreachable:
/// the outcomes are known and only this process holds them, so waiting
/// for the store costs latency, while giving up would leave each receipt
/// to its lease (minutes). Retrying is safe because every write is fenced
/// by its attempt. Errors that another try cannot fix are returned.
async fn commit(store: &Store, outcomes: &[ReceiptOutcome]) -> Result<Vec<bool>, StoreError> {
    let mut wait = Duration::from_millis(50);
    let mut failures = 0u32;
    loop {
        match store.finish_receipts(outcomes).await {
            Ok(recorded) => {
                if failures > 0 {
                    info!(
                        outcomes = outcomes.len(),
                        failures, "store reachable again; delivery outcomes recorded"
                    );
                }
                return Ok(recorded);
            }
            Err(e) if e.is_transient() => {
                if failures == 0 {
                    warn!(error = %e, outcomes = outcomes.len(), "store unreachable; holding delivery outcomes until it answers");
                }
                failures += 1;
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_STORE_WAIT);
            }
            Err(e) => return Err(e),
        }
    }
}
