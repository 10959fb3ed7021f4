//! PostgreSQL: overdue, silent and escalation-due tasks, by the
//! due-indexes of migrations 0003–0005.

use super::PgStore;
use crate::store::StoreError;
use crate::store::contracts::*;

#[async_trait::async_trait]
impl ContractStore for PgStore {
    async fn overdue_tasks(
        &self,
        now: i64,
        default_deadline_ms: Option<i64>,
        unwatched: &str,
        limit: i64,
    ) -> Result<Vec<OverdueTask>, StoreError> {
        let own = sqlx::query(
            "SELECT run_id, worker_id, task_id, first_seen_at, deadline_at FROM tasks \
             WHERE NOT terminal AND deadline_at IS NOT NULL AND deadline_at <= $1 ORDER BY deadline_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.delivery)
        .await?;
        let mut out = own.iter().map(overdue_from).collect::<Result<Vec<_>, _>>()?;
        if let Some(deadline) = default_deadline_ms {
            let by_default = sqlx::query(
                "SELECT run_id, worker_id, task_id, first_seen_at, deadline_at FROM tasks \
                 WHERE NOT terminal AND deadline_at IS NULL AND first_seen_at <= $1 AND state <> $2 \
                 ORDER BY first_seen_at LIMIT $3",
            )
            .bind(now.saturating_sub(deadline))
            .bind(unwatched)
            .bind(limit)
            .fetch_all(&self.delivery)
            .await?;
            for row in &by_default {
                out.push(overdue_from(row)?);
            }
        }
        Ok(out)
    }

    async fn silent_tasks(
        &self,
        silent_since: i64,
        unwatched: &str,
        limit: i64,
    ) -> Result<Vec<SilentTask>, StoreError> {
        let rows = sqlx::query(
            "SELECT run_id, worker_id, task_id, updated_at, stale_marks FROM tasks \
             WHERE NOT terminal AND stale_since IS NULL AND updated_at <= $1 AND state <> $2 \
             ORDER BY updated_at LIMIT $3",
        )
        .bind(silent_since)
        .bind(unwatched)
        .bind(limit)
        .fetch_all(&self.delivery)
        .await?;
        rows.iter().map(silent_from).collect()
    }

    async fn escalations_due(&self, now: i64, limit: i64) -> Result<Vec<EscalationDue>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, run_id, worker_id, task_id, state, display, terminal, labels, updated_at, \
             stale_since, stale_marks, escalation, escalate_at \
             FROM tasks WHERE escalate_at IS NOT NULL AND escalate_at <= $1 ORDER BY escalate_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(escalation_due_from).collect()
    }

    async fn reschedule_escalation(&self, id: i64, seen: i64, next: Option<i64>) -> Result<(), StoreError> {
        sqlx::query("UPDATE tasks SET escalate_at = $1 WHERE id = $2 AND escalate_at = $3")
            .bind(next)
            .bind(id)
            .bind(seen)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
