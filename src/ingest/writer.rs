//! Group commit: one task owns ingest writes. Requests queue up while a
//! commit is in flight and are then committed together, so concurrent
//! clients share one fsync instead of paying one each.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::error;

use crate::config::Config;
use crate::ingest::plan::{Batch, IngestResult, RequestReport, RoutedChannel, Routing};
use crate::protocol::FleetWorkerEvent;
use crate::store::{Store, StoreError};

/// Requests waiting for the writer; beyond this, handlers wait (backpressure).
const QUEUE: usize = 1024;
/// Most events committed in one transaction.
const MAX_GROUP_EVENTS: usize = 20_000;

/// Why a batch was not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    /// The writer task has stopped (herald is shutting down): nothing of
    /// the batch was stored; the client should send it again.
    #[error("the ingest writer has stopped")]
    Stopped,
    /// The transaction failed; nothing of the group was stored. Shared by
    /// every request of the group.
    #[error("could not store events: {0}")]
    Store(Arc<StoreError>),
}

struct Job {
    events: Vec<FleetWorkerEvent>,
    reply: oneshot::Sender<Result<RequestReport, CommitError>>,
}

/// What happens after a commit: wake the channels, count metrics.
pub type OnCommit = Box<dyn Fn(&IngestResult) + Send + Sync>;

/// The handle handlers use to commit events.
#[derive(Clone)]
pub struct IngestWriter {
    tx: mpsc::Sender<Job>,
}

impl IngestWriter {
    /// Start the writer task.
    pub fn start(store: Store, config: watch::Receiver<Arc<Config>>, on_commit: OnCommit) -> IngestWriter {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, config, rx, on_commit));
        IngestWriter { tx }
    }

    /// Commit `events` durably; resolves after the transaction committed.
    pub async fn commit(&self, events: Vec<FleetWorkerEvent>) -> Result<RequestReport, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { events, reply })
            .await
            .map_err(|_| CommitError::Stopped)?;
        answer.await.map_err(|_| CommitError::Stopped)?
    }
}

/// The running config as the planner asks it.
pub struct ConfigRouting<'c>(pub &'c Config);

impl Routing for ConfigRouting<'_> {
    fn route(&self, input: &crate::routing::RoutingInput<'_>) -> Vec<RoutedChannel> {
        route_channels(self.0, input)
    }

    /// A channel with `notify_resolved = false` gets no notification of a
    /// resolved alert (its live message still says so).
    fn notifies(&self, channel: &str, state: &str) -> bool {
        state != "resolved" || self.0.channels.get(channel).is_none_or(|c| c.notify_resolved)
    }
}

/// The channels an event routes to, with their progress setting.
pub fn route_channels(config: &Config, input: &crate::routing::RoutingInput<'_>) -> Vec<RoutedChannel> {
    config
        .router
        .route(input)
        .into_iter()
        .map(|name| {
            let progress = config.channels.get(&name).is_some_and(|c| c.progress);
            RoutedChannel { name, progress }
        })
        .collect()
}

async fn run(
    store: Store,
    config: watch::Receiver<Arc<Config>>,
    mut rx: mpsc::Receiver<Job>,
    on_commit: OnCommit,
) {
    while let Some(first) = rx.recv().await {
        let mut total = first.events.len();
        let mut jobs = vec![first];
        while total < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(job) => {
                    total += job.events.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let requests: Vec<Vec<FleetWorkerEvent>> =
            jobs.iter_mut().map(|j| std::mem::take(&mut j.events)).collect();
        let cfg = config.borrow().clone();
        let route = ConfigRouting(&cfg);
        let started = std::time::Instant::now();
        let committed = match Batch::new(&requests) {
            Ok(batch) => store.ingest(&batch, &route).await,
            Err(e) => Err(StoreError::Json(e)),
        };
        match committed {
            Ok(result) => {
                tracing::debug!(
                    events = total,
                    requests = requests.len(),
                    elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "group committed"
                );
                on_commit(&result);
                for (job, report) in jobs.into_iter().zip(result.reports) {
                    // A handler that went away (client hung up) no longer
                    // needs the answer; its events are committed regardless.
                    let _gone = job.reply.send(Ok(report)).is_err();
                }
            }
            Err(e) => {
                error!(error = %e, events = total, "ingest commit failed");
                let e = Arc::new(e);
                for job in jobs {
                    let _gone = job.reply.send(Err(CommitError::Store(e.clone()))).is_err();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stopped_writer_says_so_instead_of_losing_the_batch_silently() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let writer = IngestWriter { tx };
        let answer = writer.commit(Vec::new()).await;
        assert!(matches!(answer, Err(CommitError::Stopped)), "{answer:?}");
    }
}
