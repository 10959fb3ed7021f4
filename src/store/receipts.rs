//! Durable terminal receipts: claim with a lease, record the outcome,
//! recover after a crash, replay a failed one. The policy that decides *what*
//! to record lives in `delivery::policy`; this module only stores it.

use rand::Rng;
use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{Store, StoreError};

/// Make a receipt id: `hr` + 20 hex digits (80 random bits), 22 characters,
/// within Discord's 25-character nonce limit.
pub fn new_receipt_id() -> String {
    let bits: u128 = rand::rng().random::<u128>() >> 48;
    format!("hr{bits:020x}")
}

/// Make the idempotency key of a progress message's first post: `hp` + 20
/// hex digits, distinct from receipt ids.
pub fn new_progress_key() -> String {
    let bits: u128 = rand::rng().random::<u128>() >> 48;
    format!("hp{bits:020x}")
}

/// A receipt claimed for one delivery attempt, with what to render.
#[derive(Debug, Clone)]
pub struct ClaimedReceipt {
    /// Receipt id (the idempotency key).
    pub id: String,
    /// Channel name.
    pub channel: String,
    /// Attempts including this one.
    pub attempts: i64,
    /// Unix ms the terminal event was accepted.
    pub created_at: i64,
    /// The previous attempt's outcome is unknown: reconcile before sending.
    pub unverified: bool,
    /// Run id.
    pub run_id: String,
    /// Worker id.
    pub worker_id: String,
    /// Task id.
    pub task_id: String,
    /// The terminal event's JSON.
    pub event: Value,
    /// Unix ms of the task's first event (for the duration).
    pub first_seen_at: i64,
    /// The task's labels.
    pub labels: BTreeMap<String, String>,
}

/// What to record after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptUpdate {
    /// The platform confirmed the message.
    Surfaced {
        /// Platform message id.
        message_id: String,
    },
    /// Try again at `at` (Unix ms).
    Retry {
        /// When.
        at: i64,
        /// Why the attempt failed.
        error: String,
        /// Whether the outcome of this attempt is unknown.
        unverified: bool,
    },
    /// Give up; kept listed and replayable.
    Failed {
        /// Why.
        error: String,
    },
}

impl Store {
    /// Claim up to `limit` due pending receipts of `channel` for
    /// `lease_ms`, oldest due first.
    pub async fn claim_receipts(
        &self,
        channel: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedReceipt>, StoreError> {
        let rows = sqlx::query(
            "UPDATE receipts SET status = 'sending', lease_until = ?, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM receipts WHERE channel = ? AND status = 'pending' \
                          AND next_attempt_at <= ? ORDER BY next_attempt_at, created_at LIMIT ?) \
             RETURNING id",
        )
        .bind(now + lease_ms)
        .bind(channel)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.delivery)
        .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT r.id, r.channel, r.attempts, r.created_at, r.unverified, t.run_id, t.worker_id, \
             t.task_id, t.first_seen_at, t.labels, e.body FROM receipts r JOIN tasks t ON t.id = r.task \
             JOIN events e ON e.run_id = t.run_id AND e.worker_id = t.worker_id AND e.task_id = t.task_id \
             AND e.seq = r.event_seq WHERE r.id IN (",
        );
        let mut ids = qb.separated(", ");
        for row in &rows {
            ids.push_bind(row.try_get::<String, _>("id")?);
        }
        qb.push(")");
        let mut out = Vec::with_capacity(rows.len());
        for r in qb.build().fetch_all(&self.delivery).await? {
            let body: String = r.try_get("body")?;
            let labels: String = r.try_get("labels")?;
            out.push(ClaimedReceipt {
                labels: serde_json::from_str(&labels)?,
                id: r.try_get("id")?,
                channel: r.try_get("channel")?,
                attempts: r.try_get("attempts")?,
                created_at: r.try_get("created_at")?,
                unverified: r.try_get("unverified")?,
                run_id: r.try_get("run_id")?,
                worker_id: r.try_get("worker_id")?,
                task_id: r.try_get("task_id")?,
                event: serde_json::from_str(&body)?,
                first_seen_at: r.try_get("first_seen_at")?,
            });
        }
        out.sort_by_key(|r| r.created_at);
        Ok(out)
    }

    /// Record the outcome of an attempt on a claimed receipt.
    pub async fn finish_receipt(&self, id: &str, update: &ReceiptUpdate, now: i64) -> Result<(), StoreError> {
        match update {
            ReceiptUpdate::Surfaced { message_id } => {
                sqlx::query(
                    "UPDATE receipts SET status = 'surfaced', message_id = ?, surfaced_at = ?, \
                     lease_until = NULL, unverified = 0 WHERE id = ?",
                )
                .bind(message_id)
                .bind(now)
                .bind(id)
                .execute(&self.delivery)
                .await?;
            }
            ReceiptUpdate::Retry {
                at,
                error,
                unverified,
            } => {
                sqlx::query(
                    "UPDATE receipts SET status = 'pending', next_attempt_at = ?, last_error = ?, \
                     unverified = ?, lease_until = NULL WHERE id = ?",
                )
                .bind(at)
                .bind(error)
                .bind(unverified)
                .bind(id)
                .execute(&self.delivery)
                .await?;
            }
            ReceiptUpdate::Failed { error } => {
                sqlx::query(
                    "UPDATE receipts SET status = 'failed', last_error = ?, lease_until = NULL WHERE id = ?",
                )
                .bind(error)
                .bind(id)
                .execute(&self.delivery)
                .await?;
            }
        }
        Ok(())
    }

    /// After a crash: every receipt left `sending` goes back to `pending`,
    /// due now and marked unverified (the crash may have come after the
    /// platform applied the message). Returns how many were recovered.
    pub async fn recover_receipts(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE receipts SET status = 'pending', lease_until = NULL, next_attempt_at = ?, unverified = 1, \
             last_error = COALESCE(last_error, 'interrupted before the outcome was recorded') \
             WHERE status = 'sending'",
        )
        .bind(now)
        .execute(&self.delivery)
        .await?;
        Ok(done.rows_affected())
    }

    /// Re-drive a failed receipt (dead-letter replay). Returns its channel,
    /// or `None` when there is no failed receipt with that id.
    pub async fn replay_receipt(&self, id: &str, now: i64) -> Result<Option<String>, StoreError> {
        let channel: Option<String> = sqlx::query_scalar(
            "UPDATE receipts SET status = 'pending', next_attempt_at = ?, created_at = ?, lease_until = NULL \
             WHERE id = ? AND status = 'failed' RETURNING channel",
        )
        .bind(now)
        .bind(now)
        .bind(id)
        .fetch_optional(&self.delivery)
        .await?;
        Ok(channel)
    }

    /// The status of one receipt, if it exists.
    pub async fn receipt_status(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT status FROM receipts WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.delivery)
            .await?)
    }

    /// When the next pending receipt of `channel` is due (Unix ms).
    pub async fn next_receipt_due(&self, channel: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM receipts WHERE channel = ? AND status = 'pending'",
        )
        .bind(channel)
        .fetch_one(&self.delivery)
        .await?)
    }

    /// Receipts per status, for the `herald_receipts` gauge.
    pub async fn receipt_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM receipts GROUP BY status")
            .fetch_all(&self.delivery)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect()
    }
}
