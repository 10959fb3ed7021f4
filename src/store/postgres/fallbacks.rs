//! PostgreSQL: receipts that may have missed, by the due-index of migration
//! 0006, and misses recorded with their fallback receipt.

use super::PgStore;
use crate::store::fallbacks::*;
use crate::store::{StoreError, new_receipt_id};

#[async_trait::async_trait]
impl FallbackStore for PgStore {
    async fn may_miss(
        &self,
        channel: &str,
        created_before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<MayMiss>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, r.channel, r.status, r.created_at, r.last_error, t.run_id, t.worker_id, t.task_id \
             FROM receipts r JOIN tasks t ON t.id = r.task \
             WHERE r.channel = $1 AND r.status IN ('pending', 'sending', 'failed') AND r.missed_at IS NULL AND r.fallback_for IS NULL \
             AND (r.status = 'failed' OR r.created_at <= $2) ORDER BY r.created_at LIMIT $3",
        )
        .bind(channel)
        .bind(created_before.unwrap_or(i64::MIN))
        .bind(limit)
        .fetch_all(&self.delivery)
        .await?;
        rows.iter().map(may_miss_from).collect()
    }

    async fn record_miss(&self, miss: &Miss, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.delivery.begin().await?;
        let marked = sqlx::query(
            "UPDATE receipts SET missed_at = $1, miss_reason = $2 \
             WHERE id = $3 AND missed_at IS NULL AND status <> 'surfaced'",
        )
        .bind(now)
        .bind(&miss.reason)
        .bind(&miss.receipt)
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() == 0 {
            return Ok(false);
        }
        let event = &miss.journal;
        sqlx::query(
            "INSERT INTO events (run_id, worker_id, task_id, seq, state, body, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&event.run_id)
        .bind(&event.worker_id)
        .bind(&event.task_id)
        .bind(event.seq)
        .bind(event.state.name())
        .bind(serde_json::to_string(event)?)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO receipts (id, task, channel, event_seq, status, created_at, next_attempt_at, \
             fallback_for, miss_reason) \
             SELECT $1, task, $2, event_seq, 'pending', $3, $4, channel, $5 FROM receipts WHERE id = $6 \
             ON CONFLICT (task, channel, event_seq) DO NOTHING",
        )
        .bind(new_receipt_id())
        .bind(&miss.fallback)
        .bind(now)
        .bind(now)
        .bind(&miss.reason)
        .bind(&miss.receipt)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
