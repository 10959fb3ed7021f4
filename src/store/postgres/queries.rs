//! PostgreSQL: read-only views for the HTTP API.

use sqlx::{Postgres, QueryBuilder};

use super::PgStore;
use crate::store::StoreError;
use crate::store::columns::Columns;
use crate::store::queries::*;

#[async_trait::async_trait]
impl QueryStore for PgStore {
    async fn workers(
        &self,
        run_id: Option<&str>,
        state: Option<&str>,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<WorkerRow>, StoreError> {
        self.select_workers(run_id, state, after, false, limit).await
    }

    async fn state_counts(&self, run_id: Option<&str>) -> Result<Vec<StateCount>, StoreError> {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT t.state, (t.stale_since IS NOT NULL AND NOT t.terminal) AS stale, COUNT(*) AS tasks FROM tasks t",
        );
        if let Some(run) = run_id {
            qb.push(" WHERE t.run_id = ").push_bind(run.to_owned());
        }
        qb.push(" GROUP BY 1, 2");
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(StateCount {
                    state: r.text("state")?,
                    stale: r.flag("stale")?,
                    tasks: r.int("tasks")?,
                })
            })
            .collect()
    }

    async fn run_state_counts(&self, runs: i64) -> Result<Vec<RunStateCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.run_id, t.state, (t.stale_since IS NOT NULL AND NOT t.terminal) AS stale, \
             COUNT(*) AS tasks, MAX(t.updated_at) AS updated_at FROM tasks t \
             WHERE t.run_id IN (SELECT run_id FROM tasks GROUP BY run_id ORDER BY MAX(updated_at) DESC LIMIT $1) \
             GROUP BY 1, 2, 3",
        )
        .bind(runs)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_state_count_from).collect()
    }

    async fn channel_backlogs(&self) -> Result<Vec<ChannelBacklog>, StoreError> {
        let counts = sqlx::query(
            "SELECT channel, status, COUNT(*) AS receipts, MIN(created_at) AS oldest FROM receipts \
             WHERE status IN ('pending', 'sending', 'failed') GROUP BY channel, status",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(backlog_count_from)
        .collect::<Result<Vec<_>, StoreError>>()?;
        let errors = sqlx::query(
            "SELECT channel, last_error, seen_at FROM (\
               SELECT channel, last_error, COALESCE(attempted_at, created_at) AS seen_at, \
                 ROW_NUMBER() OVER (PARTITION BY channel ORDER BY COALESCE(attempted_at, created_at) DESC) AS newest \
               FROM receipts WHERE status IN ('pending', 'sending', 'failed') AND last_error IS NOT NULL\
             ) AS e WHERE newest = 1",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(backlog_error_from)
        .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(merge_backlogs(counts, errors))
    }

    async fn stale_tasks(&self, run_id: Option<&str>, limit: i64) -> Result<Vec<WorkerRow>, StoreError> {
        self.select_workers(run_id, None, None, true, limit).await
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
        rows.iter().map(journal_entry_from).collect()
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

    async fn acknowledgement(
        &self,
        run_id: &str,
        worker_id: &str,
        task_id: &str,
    ) -> Result<Option<crate::escalations::Acknowledgement>, StoreError> {
        let row =
            sqlx::query("SELECT escalation FROM tasks WHERE run_id = $1 AND worker_id = $2 AND task_id = $3")
                .bind(run_id)
                .bind(worker_id)
                .bind(task_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some(r) => r
                .json::<crate::escalations::EscalationLog>("escalation")?
                .acknowledgement(),
            None => None,
        })
    }

    async fn event_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn receipts(&self, filter: &ReceiptFilter, limit: i64) -> Result<Vec<ReceiptRow>, StoreError> {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT r.id, r.channel, r.status, r.attempts, r.last_error, r.next_attempt_at, r.created_at, \
             r.surfaced_at, r.message_id, r.missed_at, r.miss_reason, r.fallback_for, t.run_id, t.worker_id, \
             t.task_id, e.state \
             FROM receipts r JOIN tasks t ON t.id = r.task JOIN events e ON e.run_id = t.run_id AND e.worker_id = t.worker_id AND e.task_id = t.task_id AND e.seq = r.event_seq",
        );
        qb.push(" WHERE 1 = 1");
        crate::store::push_receipt_filter(&mut qb, filter);
        qb.push(" ORDER BY r.created_at DESC, r.id LIMIT ")
            .push_bind(limit);
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(receipt_row_from).collect()
    }
}

impl PgStore {
    async fn select_workers(
        &self,
        run_id: Option<&str>,
        state: Option<&str>,
        after: Option<i64>,
        stale_only: bool,
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
        if let Some(after) = after {
            qb.push(" AND t.id < ").push_bind(after);
        }
        if stale_only {
            qb.push(" AND t.stale_since IS NOT NULL AND NOT t.terminal");
        }
        // The stale list is read whole (by the bot): most recently
        // updated first. The worker list pages, so by a place that never
        // changes: newest task first.
        qb.push(if stale_only {
            " ORDER BY t.updated_at DESC, t.id DESC LIMIT "
        } else {
            " ORDER BY t.id DESC LIMIT "
        })
        .push_bind(limit);
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(worker_row_from).collect()
    }
}
