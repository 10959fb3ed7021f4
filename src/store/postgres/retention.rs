//! PostgreSQL: deleting what is past retention.

use sqlx::Row;

use super::PgStore;
use crate::store::StoreError;
use crate::store::retention::*;

/// Which finished tasks may go: nothing left to deliver — no receipt
/// owed, no live message still to be brought up to date (`$1` finished
/// before, `$2` failed receipts accepted before).
const PRUNABLE: &str = "SELECT t.id, t.run_id, t.worker_id, t.task_id FROM tasks t \
     WHERE t.terminal AND t.updated_at < $1 AND NOT EXISTS (SELECT 1 FROM receipts r \
     WHERE r.task = t.id AND (r.status IN ('pending', 'sending') \
     OR (r.status = 'failed' AND r.created_at >= $2))) \
     AND NOT EXISTS (SELECT 1 FROM task_channels tc WHERE tc.task = t.id AND tc.dirty_since IS NOT NULL)";

#[async_trait::async_trait]
impl RetentionStore for PgStore {
    async fn prune_tasks(
        &self,
        finished_before: i64,
        failed_before: i64,
        limit: i64,
    ) -> Result<Pruned, StoreError> {
        let mut tx = self.pool.begin().await?;
        let candidates = sqlx::query(sqlx::AssertSqlSafe(format!("{PRUNABLE} LIMIT $3")))
            .bind(finished_before)
            .bind(failed_before)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        if candidates.is_empty() {
            return Ok(Pruned::default());
        }
        let keys = candidates
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("run_id")?,
                    r.try_get("worker_id")?,
                    r.try_get("task_id")?,
                ))
            })
            .collect::<Result<Vec<(String, String, String)>, StoreError>>()?;
        // The ingest transaction's own locks, in its order: an ingest of
        // one of these tasks either committed before (and is seen by the
        // check below) or waits for this one.
        super::ingest::lock_tasks(&mut tx, &keys).await?;
        let ids: Vec<i64> = candidates
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        // The task rows first: a progress write reads its task `FOR SHARE`
        // before it touches the task's live-message rows, so it waits here
        // instead of deadlocking with the deletes below.
        sqlx::query("SELECT id FROM tasks WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        let still: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM ({PRUNABLE}) AS p WHERE id = ANY($3)"
        )))
        .bind(finished_before)
        .bind(failed_before)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let events = sqlx::query(
            "DELETE FROM events e USING tasks t WHERE t.id = ANY($1) AND e.run_id = t.run_id \
             AND e.worker_id = t.worker_id AND e.task_id = t.task_id",
        )
        .bind(&still)
        .execute(&mut *tx)
        .await?;
        let receipts = sqlx::query("DELETE FROM receipts WHERE task = ANY($1)")
            .bind(&still)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM task_channels WHERE task = ANY($1)")
            .bind(&still)
            .execute(&mut *tx)
            .await?;
        let tasks = sqlx::query("DELETE FROM tasks WHERE id = ANY($1)")
            .bind(&still)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Pruned {
            tasks: tasks.rows_affected(),
            events: events.rows_affected(),
            receipts: receipts.rows_affected(),
        })
    }

    async fn prune_web_messages(&self, before: i64, limit: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM web_messages WHERE id IN (SELECT id FROM web_messages WHERE updated_at < $1 LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&self.delivery)
        .await?;
        Ok(done.rows_affected())
    }
}
