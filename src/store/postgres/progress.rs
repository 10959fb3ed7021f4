//! PostgreSQL: live progress messages: which are due, and the versioned writes that record them.

use super::PgStore;
use crate::store::progress::*;
use crate::store::{Lease, StoreError};

/// The task's version, read with a share lock. An ingest that is changing
/// the task holds its row until it commits; waiting for it here means the
/// dirty mark it also writes is visible to the update that follows, which
/// then keeps the message due. (Comparing against a plain subquery in the
/// update would read the version from before that ingest's commit and
/// clear its dirty mark: the newer state would never be shown.)
async fn current_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    task: i64,
) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT version FROM tasks WHERE id = $1 FOR SHARE")
            .bind(task)
            .fetch_one(&mut **tx)
            .await?,
    )
}

#[async_trait::async_trait]
impl ProgressStore for PgStore {
    async fn due_progress(
        &self,
        channel: &str,
        needs_post: bool,
        now: i64,
        min_interval_ms: i64,
        limit: i64,
        skip_started: bool,
    ) -> Result<Vec<ProgressJob>, StoreError> {
        let rows = sqlx::query(
            "SELECT tc.task, tc.message_id, tc.post_key, tc.post_started, tc.shown_hash, tc.failures, t.version, \
             t.run_id, t.worker_id, t.task_id, t.state, t.display, t.labels, \
             t.first_seen_at, t.updated_at, t.terminal, t.stale_since, t.escalation \
             FROM task_channels tc JOIN tasks t ON t.id = tc.task \
             WHERE tc.channel = $1 AND tc.dirty_since IS NOT NULL AND (tc.message_id IS NULL) = $2 \
             AND (tc.last_sent_at IS NULL OR tc.last_sent_at <= $3) \
             AND (tc.retry_at IS NULL OR tc.retry_at <= $4) AND (NOT $5 OR tc.post_started = FALSE) \
             ORDER BY tc.dirty_since, tc.task LIMIT $6",
        )
        .bind(channel)
        .bind(needs_post)
        .bind(now - min_interval_ms)
        .bind(now)
        .bind(skip_started)
        .bind(limit)
        .fetch_all(&self.delivery)
        .await?;
        rows.iter().map(|r| progress_job_from(r, channel)).collect()
    }

    async fn next_progress_due(
        &self,
        channel: &str,
        needs_post: Option<bool>,
        min_interval_ms: i64,
        skip_started: bool,
    ) -> Result<Option<i64>, StoreError> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(GREATEST(COALESCE(last_sent_at + $1, 0), COALESCE(retry_at, 0))) FROM task_channels \
             WHERE channel = $2 AND dirty_since IS NOT NULL AND ($3 IS NULL OR (message_id IS NULL) = $4) \
             AND (NOT $5 OR post_started = FALSE)",
        )
        .bind(min_interval_ms)
        .bind(channel)
        .bind(needs_post)
        .bind(needs_post)
        .bind(skip_started)
        .fetch_one(&self.delivery)
        .await?;
        Ok(due)
    }

    async fn progress_post_started(
        &self,
        task: i64,
        lease: &Lease,
        body: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.delivery.begin().await?;
        super::leases::lock_lease(&mut tx, lease).await?;
        sqlx::query(
            "UPDATE task_channels SET post_started = TRUE, post_started_at = $1, post_body = $2 WHERE task = $3 AND channel = $4",
        )
        .bind(now)
        .bind(body)
        .bind(task)
        .bind(&lease.channel)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn started_progress_posts(&self, channel: &str) -> Result<Vec<StartedPost>, StoreError> {
        let rows = sqlx::query(
            "SELECT tc.task, tc.post_key, t.first_seen_at, COALESCE(tc.post_started_at, t.first_seen_at) AS started_at, \
             tc.post_body FROM task_channels tc JOIN tasks t ON t.id = tc.task \
             WHERE tc.channel = $1 AND tc.post_started = TRUE AND tc.message_id IS NULL",
        )
        .bind(channel)
        .fetch_all(&self.delivery)
        .await?;
        rows.iter().map(started_post_from).collect()
    }

    async fn clear_progress_started(&self, lease: &Lease, tasks: &[i64]) -> Result<(), StoreError> {
        let mut tx = self.delivery.begin().await?;
        super::leases::lock_lease(&mut tx, lease).await?;
        for task in tasks {
            sqlx::query("UPDATE task_channels SET post_started = FALSE WHERE task = $1 AND channel = $2 AND message_id IS NULL")
                .bind(task)
                .bind(&lease.channel)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn progress_staleness_ms(&self, now: i64) -> Result<Option<i64>, StoreError> {
        let oldest: Option<i64> =
            sqlx::query_scalar("SELECT MIN(dirty_since) FROM task_channels WHERE dirty_since IS NOT NULL")
                .fetch_one(&self.delivery)
                .await?;
        Ok(oldest.map(|t| (now - t).max(0)))
    }

    async fn record_thread(
        &self,
        task: i64,
        lease: &Lease,
        parent: &str,
        thread: Option<&str>,
    ) -> Result<(), StoreError> {
        self.fence(lease).await?;
        sqlx::query(
            "UPDATE task_channels SET thread_id = $1 WHERE task = $2 AND channel = $3 AND message_id = $4",
        )
        .bind(thread)
        .bind(task)
        .bind(&lease.channel)
        .bind(parent)
        .execute(&self.delivery)
        .await?;
        Ok(())
    }

    async fn record_progress(
        &self,
        task: i64,
        lease: &Lease,
        write: &ProgressWrite,
        now: i64,
    ) -> Result<(), StoreError> {
        // The lease row is read FOR SHARE: a replica taking the channel
        // over waits for this write, and this write sees its grant.
        let mut tx = self.delivery.begin().await?;
        super::leases::lock_lease(&mut tx, lease).await?;
        let channel = &lease.channel;
        match write {
            ProgressWrite::Shown {
                message_id,
                version,
                text_hash,
            } => {
                let current = current_version(&mut tx, task).await?;
                sqlx::query(
                    "UPDATE task_channels SET posted_at = CASE WHEN message_id IS NOT DISTINCT FROM $1 THEN posted_at ELSE $4 END, \
                     message_id = $1, shown_version = GREATEST(shown_version, $2), \
                     shown_hash = $3, last_sent_at = $4, post_started = FALSE, post_body = NULL, retry_at = NULL, failures = 0, \
                     dirty_since = CASE WHEN $7 <= $2 THEN NULL ELSE dirty_since END \
                     WHERE task = $5 AND channel = $6",
                )
                .bind(message_id)
                .bind(version)
                .bind(text_hash)
                .bind(now)
                .bind(task)
                .bind(channel)
                .bind(current)
                .execute(&mut *tx)
                .await?;
            }
            ProgressWrite::Gone => {
                sqlx::query(
                    "UPDATE task_channels SET message_id = NULL, thread_id = NULL, shown_version = 0, shown_hash = NULL, \
                     post_started = FALSE, post_key = $1, dirty_since = COALESCE(dirty_since, $2), retry_at = NULL \
                     WHERE task = $3 AND channel = $4",
                )
                .bind(crate::store::new_progress_key())
                .bind(now)
                .bind(task)
                .bind(channel)
                .execute(&mut *tx)
                .await?;
            }
            ProgressWrite::Abandon { version } => {
                let current = current_version(&mut tx, task).await?;
                sqlx::query(
                    "UPDATE task_channels SET last_sent_at = $1, retry_at = NULL, failures = 0, \
                     dirty_since = CASE WHEN $5 <= $2 THEN NULL ELSE dirty_since END \
                     WHERE task = $3 AND channel = $4",
                )
                .bind(now)
                .bind(version)
                .bind(task)
                .bind(channel)
                .bind(current)
                .execute(&mut *tx)
                .await?;
            }
            ProgressWrite::Retry { at } => {
                sqlx::query(
                    "UPDATE task_channels SET retry_at = $1, failures = failures + 1 WHERE task = $2 AND channel = $3",
                )
                .bind(at)
                .bind(task)
                .bind(channel)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
