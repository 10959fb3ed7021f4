//! SQLite: deleting what is past retention.

use sqlx::{QueryBuilder, Row, Sqlite};

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::retention::*;

#[async_trait::async_trait]
impl RetentionStore for SqliteStore {
    async fn prune_tasks(
        &self,
        finished_before: i64,
        failed_before: i64,
        limit: i64,
    ) -> Result<Pruned, StoreError> {
        // Behind the ingest writer's gate and write lock: no ingest reads
        // a task's snapshot while it goes.
        let _gate = self.write_gate.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rows = sqlx::query(
            "SELECT t.id, t.run_id, t.worker_id, t.task_id FROM tasks t \
             WHERE t.terminal = 1 AND t.updated_at < ? AND NOT EXISTS (SELECT 1 FROM receipts r \
             WHERE r.task = t.id AND (r.status IN ('pending', 'sending') \
             OR (r.status = 'failed' AND r.created_at >= ?))) AND NOT EXISTS (SELECT 1 FROM task_channels tc \
             WHERE tc.task = t.id AND tc.dirty_since IS NOT NULL) LIMIT ?",
        )
        .bind(finished_before)
        .bind(failed_before)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(Pruned::default());
        }
        let mut pruned = Pruned::default();
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            ids.push(id);
            let events = sqlx::query("DELETE FROM events WHERE run_id = ? AND worker_id = ? AND task_id = ?")
                .bind(row.try_get::<String, _>("run_id")?)
                .bind(row.try_get::<String, _>("worker_id")?)
                .bind(row.try_get::<String, _>("task_id")?)
                .execute(&mut *tx)
                .await?;
            pruned.events += events.rows_affected();
        }
        for table in ["receipts", "task_channels"] {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new(format!("DELETE FROM {table} WHERE task IN "));
            super::push_list(&mut qb, ids.iter().copied());
            let done = qb.build().execute(&mut *tx).await?;
            if table == "receipts" {
                pruned.receipts = done.rows_affected();
            }
        }
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("DELETE FROM tasks WHERE id IN ");
        super::push_list(&mut qb, ids.iter().copied());
        pruned.tasks = qb.build().execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(pruned)
    }

    async fn prune_web_messages(&self, before: i64, limit: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM web_messages WHERE id IN (SELECT id FROM web_messages WHERE updated_at < ? LIMIT ?)",
        )
        .bind(before)
        .bind(limit)
        .execute(&self.delivery)
        .await?;
        Ok(done.rows_affected())
    }
}
