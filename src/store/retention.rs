//! Retention (SPEC §6.13): finished tasks are deleted with their journal,
//! receipts and live-message handles once they are old enough, in small
//! batches, and web messages no one has changed for as long. What is old
//! enough is decided by `crate::retention`; this module only deletes.

use super::StoreError;

/// What one batch of pruning deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Worker tasks.
    pub tasks: u64,
    /// Journal events.
    pub events: u64,
    /// Delivery receipts.
    pub receipts: u64,
}

/// Deleting what is past retention.
#[async_trait::async_trait]
pub trait RetentionStore: Send + Sync {
    /// Delete up to `limit` finished tasks last updated before
    /// `finished_before` (Unix ms) that have nothing left to deliver: no
    /// receipt pending or being sent, no failed one accepted at or after
    /// `failed_before` (those wait to be replayed), and no live message
    /// still to be brought up to date. Each goes with
    /// its journal, its receipts and its live-message handles, in one
    /// transaction that ingest of the same task waits for.
    async fn prune_tasks(
        &self,
        finished_before: i64,
        failed_before: i64,
        limit: i64,
    ) -> Result<Pruned, StoreError>;

    /// Delete up to `limit` web messages last changed before `before`.
    async fn prune_web_messages(&self, before: i64, limit: i64) -> Result<u64, StoreError>;
}
