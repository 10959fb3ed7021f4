//! SQLite: live progress messages: which are due, and the versioned writes that record them.

use super::SqliteStore;
use crate::store::progress::*;
use crate::store::{Lease, StoreError};

#[async_trait::async_trait]
impl ProgressStore for SqliteStore {
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
             WHERE tc.channel = ? AND tc.dirty_since IS NOT NULL AND (tc.message_id IS NULL) = ? \
             AND (tc.last_sent_at IS NULL OR tc.last_sent_at <= ?) \
             AND (tc.retry_at IS NULL OR tc.retry_at <= ?) AND (? = 0 OR tc.post_started = 0) \
             ORDER BY tc.dirty_since, tc.task LIMIT ?",
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
            "SELECT MIN(MAX(COALESCE(last_sent_at + ?, 0), COALESCE(retry_at, 0))) FROM task_channels \
             WHERE channel = ? AND dirty_since IS NOT NULL AND (? IS NULL OR (message_id IS NULL) = ?) \
             AND (? = 0 OR post_started = 0)",
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
        self.fence(lease).await?;
        let channel = &lease.channel;
        sqlx::query(
            "UPDATE task_channels SET post_started = 1, post_started_at = ?, post_body = ? WHERE task = ? AND channel = ?",
        )
        .bind(now)
        .bind(body)
        .bind(task)
        .bind(channel)
        .execute(&self.delivery)
        .await?;
        Ok(())
    }

    async fn started_progress_posts(&self, channel: &str) -> Result<Vec<StartedPost>, StoreError> {
        let rows = sqlx::query(
            "SELECT tc.task, tc.post_key, t.first_seen_at, COALESCE(tc.post_started_at, t.first_seen_at) AS started_at, \
             tc.post_body FROM task_channels tc JOIN tasks t ON t.id = tc.task \
             WHERE tc.channel = ? AND tc.post_started = 1 AND tc.message_id IS NULL",
        )
        .bind(channel)
        .fetch_all(&self.delivery)
        .await?;
        rows.iter().map(started_post_from).collect()
    }

    async fn clear_progress_started(&self, lease: &Lease, tasks: &[i64]) -> Result<(), StoreError> {
        self.fence(lease).await?;
        let channel = &lease.channel;
        for task in tasks {
            sqlx::query("UPDATE task_channels SET post_started = 0 WHERE task = ? AND channel = ? AND message_id IS NULL")
                .bind(task)
                .bind(channel)
                .execute(&self.delivery)
                .await?;
        }
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
            "UPDATE task_channels SET thread_id = ? WHERE task = ? AND channel = ? AND message_id = ?",
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
        self.fence(lease).await?;
        let channel = &lease.channel;
        match write {
            ProgressWrite::Shown {
                message_id,
                version,
                text_hash,
            } => {
                sqlx::query(
                    "UPDATE task_channels SET posted_at = CASE WHEN message_id IS ?1 THEN posted_at ELSE ?4 END, \
                     message_id = ?1, shown_version = MAX(shown_version, ?2), \
                     shown_hash = ?3, last_sent_at = ?4, post_started = 0, post_body = NULL, retry_at = NULL, failures = 0, \
                     dirty_since = CASE WHEN (SELECT version FROM tasks WHERE id = task) <= ?2 \
                                   THEN NULL ELSE dirty_since END \
                     WHERE task = ?5 AND channel = ?6",
                )
                .bind(message_id)
                .bind(version)
                .bind(text_hash)
                .bind(now)
                .bind(task)
                .bind(channel)
                .execute(&self.delivery)
                .await?;
            }
            ProgressWrite::Gone => {
                sqlx::query(
                    "UPDATE task_channels SET message_id = NULL, thread_id = NULL, shown_version = 0, shown_hash = NULL, \
                     post_started = 0, post_key = ?, dirty_since = COALESCE(dirty_since, ?), retry_at = NULL \
                     WHERE task = ? AND channel = ?",
                )
                .bind(crate::store::new_progress_key())
                .bind(now)
                .bind(task)
                .bind(channel)
                .execute(&self.delivery)
                .await?;
            }
            ProgressWrite::Abandon { version } => {
                sqlx::query(
                    "UPDATE task_channels SET last_sent_at = ?, retry_at = NULL, failures = 0, \
                     dirty_since = CASE WHEN (SELECT version FROM tasks WHERE id = task) <= ? \
                                   THEN NULL ELSE dirty_since END \
                     WHERE task = ? AND channel = ?",
                )
                .bind(now)
                .bind(version)
                .bind(task)
                .bind(channel)
                .execute(&self.delivery)
                .await?;
            }
            ProgressWrite::Retry { at } => {
                sqlx::query(
                    "UPDATE task_channels SET retry_at = ?, failures = failures + 1 WHERE task = ? AND channel = ?",
                )
                .bind(at)
                .bind(task)
                .bind(channel)
                .execute(&self.delivery)
                .await?;
            }
        }
        Ok(())
    }
}
