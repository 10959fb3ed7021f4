//! SQLite: overdue, silent and escalation-due tasks, by the due-indexes of
//! migrations 0007–0009.

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::contracts::*;

#[async_trait::async_trait]
impl ContractStore for SqliteStore {
    async fn overdue_tasks(
        &self,
        now: i64,
        default_deadline_ms: Option<i64>,
        unwatched: &str,
        limit: i64,
    ) -> Result<Vec<OverdueTask>, StoreError> {
        let own = sqlx::query(
            "SELECT run_id, worker_id, task_id, first_seen_at, deadline_at FROM tasks \
             WHERE terminal = 0 AND deadline_at IS NOT NULL AND deadline_at <= ? ORDER BY deadline_at LIMIT ?",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = own.iter().map(overdue_from).collect::<Result<Vec<_>, _>>()?;
        if let Some(deadline) = default_deadline_ms {
            let by_default = sqlx::query(
                "SELECT run_id, worker_id, task_id, first_seen_at, deadline_at FROM tasks \
                 WHERE terminal = 0 AND deadline_at IS NULL AND first_seen_at <= ? AND state <> ? \
                 ORDER BY first_seen_at LIMIT ?",
            )
            .bind(now.saturating_sub(deadline))
            .bind(unwatched)
            .bind(limit)
            .fetch_all(&self.pool)
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
             WHERE terminal = 0 AND stale_since IS NULL AND updated_at <= ? AND state <> ? \
             ORDER BY updated_at LIMIT ?",
        )
        .bind(silent_since)
        .bind(unwatched)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(silent_from).collect()
    }

    async fn escalations_due(&self, now: i64, limit: i64) -> Result<Vec<EscalationDue>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, run_id, worker_id, task_id, state, display, terminal, labels, updated_at, \
             stale_since, stale_marks, escalation, escalate_at \
             FROM tasks WHERE escalate_at IS NOT NULL AND escalate_at <= ? ORDER BY escalate_at LIMIT ?",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(escalation_due_from).collect()
    }

    async fn reschedule_escalation(&self, id: i64, seen: i64, next: Option<i64>) -> Result<(), StoreError> {
        let _gate = self.write_gate.lock().await;
        sqlx::query("UPDATE tasks SET escalate_at = ? WHERE id = ? AND escalate_at = ?")
            .bind(next)
            .bind(id)
            .bind(seen)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
