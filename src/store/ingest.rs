//! The ingest transaction (the transactional outbox): journal rows,
//! worker-task state, routed channels, progress dirty marks and terminal
//! receipts, all in one commit. Several HTTP requests are committed
//! together (group commit); each still gets its own report. What to write
//! is decided by `ingest::plan`, without a database; a backend reads the
//! snapshot the plan needs and writes the plan.

use super::StoreError;
use crate::ingest::plan::{Batch, IngestResult, Route};

/// Commits groups of ingest requests.
#[async_trait::async_trait]
pub trait IngestStore: Send + Sync {
    /// Commit a group of requests in one transaction: read what the store
    /// holds of the batch's events and tasks, [`Batch::plan`] it with
    /// `route` (which decides the channels of a new task and of a terminal
    /// event), write the plan. Nothing of the group is stored on error.
    async fn ingest(&self, batch: &Batch<'_>, route: Route<'_>) -> Result<IngestResult, StoreError>;
}
