//! PostgreSQL: read-only views for the HTTP API.

use sqlx::{Postgres, QueryBuilder, Row};

use super::PgStore;
use crate::store::StoreError;
use crate::store::queries::*;

#[async_trait::async_trait]
impl QueryStore for PgStore {
    async fn workers(
        &self,
        run_id: Option<&str>,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<WorkerRow>, StoreError> {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT t.id, t.run_id, t.worker_id, t.task_id, t.state, t.state_seq, t.max_seq, t.terminal, \
             t.labels, t.display, t.first_seen_at, t.updated_at, t.last_heartbeat_at, \
             (SELECT string_agg(channel, chr(31) ORDER BY position) FROM task_channels WHERE task = t.id) AS channels \
             FROM tasks t WHERE 1 = 1",
        );
        if let Some(run) = run_id {
            qb.push(" AND t.run_id = ").push_bind(run.to_owned());
        }
        if let Some(state) = state {
            qb.push(" AND t.state = ").push_bind(state.to_owned());
        }
        qb.push(" ORDER BY t.updated_at DESC, t.id DESC LIMIT ")
            .push_bind(limit);
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let labels: String = r.try_get("labels")?;
                let display: String = r.try_get("display")?;
                let channels: Option<String> = r.try_get("channels")?;
                Ok(WorkerRow {
                    run_id: r.try_get("run_id")?,
                    worker_id: r.try_get("worker_id")?,
                    task_id: r.try_get("task_id")?,
                    state: r.try_get("state")?,
                    seq: r.try_get("state_seq")?,
                    max_seq: r.try_get("max_seq")?,
                    terminal: r.try_get("terminal")?,
                    labels: serde_json::from_str(&labels)?,
                    event: serde_json::from_str(&display)?,
                    channels: channels
                        .map(|c| c.split('\u{1f}').map(str::to_owned).collect())
                        .unwrap_or_default(),
                    first_seen_at: r.try_get("first_seen_at")?,
                    updated_at: r.try_get("updated_at")?,
                    last_heartbeat_at: r.try_get("last_heartbeat_at")?,
                })
            })
            .collect()
    }

    async fn journal(
        &self,
        run_id: &str,
        worker_id: &str,
        task_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, body, received_at FROM events \
             WHERE run_id = $1 AND worker_id = $2 AND task_id = $3 AND id > $4 ORDER BY id LIMIT $5",
        )
        .bind(run_id)
        .bind(worker_id)
        .bind(task_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let body: String = r.try_get("body")?;
                Ok(JournalEntry {
                    id: r.try_get("id")?,
                    received_at: r.try_get("received_at")?,
                    event: serde_json::from_str(&body)?,
                })
            })
            .collect()
    }

    async fn task_exists(&self, run_id: &str, worker_id: &str, task_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM tasks WHERE run_id = $1 AND worker_id = $2 AND task_id = $3")
            .bind(run_id)
            .bind(worker_id)
            .bind(task_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn event_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn receipts(&self, status: Option<&str>, limit: i64) -> Result<Vec<ReceiptRow>, StoreError> {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT r.id, r.channel, r.status, r.attempts, r.last_error, r.next_attempt_at, r.created_at, \
             r.surfaced_at, r.message_id, t.run_id, t.worker_id, t.task_id, e.state \
             FROM receipts r JOIN tasks t ON t.id = r.task JOIN events e ON e.run_id = t.run_id AND e.worker_id = t.worker_id AND e.task_id = t.task_id AND e.seq = r.event_seq",
        );
        if let Some(status) = status {
            qb.push(" WHERE r.status = ").push_bind(status.to_owned());
        }
        qb.push(" ORDER BY r.created_at DESC, r.id LIMIT ")
            .push_bind(limit);
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                let pending = status == "pending";
                let next: i64 = r.try_get("next_attempt_at")?;
                Ok(ReceiptRow {
                    id: r.try_get("id")?,
                    channel: r.try_get("channel")?,
                    status,
                    attempts: r.try_get("attempts")?,
                    last_error: r.try_get("last_error")?,
                    next_attempt_at: pending.then_some(next),
                    created_at: r.try_get("created_at")?,
                    surfaced_at: r.try_get("surfaced_at")?,
                    message_id: r.try_get("message_id")?,
                    run_id: r.try_get("run_id")?,
                    worker_id: r.try_get("worker_id")?,
                    task_id: r.try_get("task_id")?,
                    state: r.try_get("state")?,
                })
            })
            .collect()
    }
}
