//! Durable terminal receipts: claim with a lease, record the outcome
//! (fenced by the attempt it belongs to), reclaim expired leases, recover
//! after a crash, reconcile unverified ones, replay a failed one. The policy
//! that decides *what* to record lives in `delivery/receipts.rs`; this
//! module only stores it.

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

/// A receipt whose last attempt has an unknown outcome.
#[derive(Debug, Clone)]
pub struct UnverifiedReceipt {
    /// Receipt id (the idempotency key).
    pub id: String,
    /// When its terminal event was accepted.
    pub created_at: i64,
    /// When its last attempt was claimed.
    pub attempted_at: i64,
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
        /// Waiting on the retry schedule because the platform failed (not
        /// on a retry-after): a recovery of the account pulls it forward.
        backoff: bool,
    },
    /// Give up; kept listed and replayable.
    Failed {
        /// Why.
        error: String,
    },
}

/// A receipt as `receipts_by_id` aggregates it.
#[derive(serde::Deserialize)]
struct ReceiptDoc {
    id: String,
    channel: String,
    attempts: i64,
    created_at: i64,
    unverified: i64,
    run_id: String,
    worker_id: String,
    task_id: String,
    first_seen_at: i64,
    labels: BTreeMap<String, String>,
    event: Value,
}

impl ReceiptDoc {
    fn into_claimed(self) -> ClaimedReceipt {
        ClaimedReceipt {
            id: self.id,
            channel: self.channel,
            attempts: self.attempts,
            created_at: self.created_at,
            unverified: self.unverified != 0,
            run_id: self.run_id,
            worker_id: self.worker_id,
            task_id: self.task_id,
            event: self.event,
            first_seen_at: self.first_seen_at,
            labels: self.labels,
        }
    }
}

/// One attempt's outcome, to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptOutcome {
    /// Receipt id.
    pub id: String,
    /// The attempt it belongs to (the fence).
    pub attempt: i64,
    /// What to record.
    pub update: ReceiptUpdate,
    /// Unix ms of the answer.
    pub at: i64,
}

/// Rows per batched outcome statement (well inside SQLite's bind limit).
const FINISH_CHUNK: usize = 200;

/// Record one kind of outcome for many receipts in one statement:
/// `UPDATE receipts … FROM (VALUES …)`, fenced per row on `sending` and
/// the attempt. `columns` binds each row's values after (id, attempt);
/// `set` assigns from them (`v.column3` onwards). Returns the ids recorded.
async fn finish_batch(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    rows: &[&ReceiptOutcome],
    set: &str,
    columns: impl Fn(&mut sqlx::query_builder::Separated<'_, Sqlite, &'static str>, &ReceiptOutcome),
) -> Result<Vec<String>, StoreError> {
    let mut recorded = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(FINISH_CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("UPDATE receipts SET ");
        qb.push(set);
        qb.push(" FROM (");
        qb.push_values(chunk.iter(), |mut b, outcome| {
            b.push_bind(outcome.id.clone()).push_bind(outcome.attempt);
            columns(&mut b, outcome);
        });
        qb.push(
            ") AS v WHERE receipts.id = v.column1 AND receipts.status = 'sending' \
             AND receipts.attempts = v.column2 RETURNING receipts.id",
        );
        for row in qb.build().fetch_all(&mut **tx).await? {
            recorded.push(row.try_get("id")?);
        }
    }
    Ok(recorded)
}

impl Store {
    /// Claim up to `limit` due pending receipts of `channel` for
    /// `lease_ms`, oldest due first; with `verified_only`, not those whose
    /// last outcome is unknown (they wait for a look-up).
    pub async fn claim_receipts(
        &self,
        channel: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
        verified_only: bool,
    ) -> Result<Vec<ClaimedReceipt>, StoreError> {
        let rows = sqlx::query(
            "UPDATE receipts SET status = 'sending', lease_until = ?, attempts = attempts + 1, attempted_at = ? \
             WHERE id IN (SELECT id FROM receipts WHERE channel = ? AND status = 'pending' \
                          AND next_attempt_at <= ? AND (? = 0 OR unverified = 0) \
                          ORDER BY next_attempt_at, created_at LIMIT ?) \
             RETURNING id",
        )
        .bind(now + lease_ms)
        .bind(now)
        .bind(channel)
        .bind(now)
        .bind(verified_only)
        .bind(limit)
        .fetch_all(&self.delivery)
        .await?;
        let ids = rows
            .iter()
            .map(|r| r.try_get::<String, _>("id"))
            .collect::<Result<Vec<_>, _>>()?;
        self.receipts_by_id(&ids).await
    }

    /// Receipts with what to render, by id (claimed or not), oldest first.
    /// The rows come back aggregated into one JSON array: with sqlx's
    /// SQLite driver every returned row is a hop to the connection's
    /// thread and back, and a claim returns dozens.
    pub async fn receipts_by_id(&self, ids: &[String]) -> Result<Vec<ClaimedReceipt>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT json_group_array(json_object('id', r.id, 'channel', r.channel, 'attempts', r.attempts, \
             'created_at', r.created_at, 'unverified', r.unverified, 'run_id', t.run_id, \
             'worker_id', t.worker_id, 'task_id', t.task_id, 'first_seen_at', t.first_seen_at, \
             'labels', json(t.labels), 'event', json(e.body))) AS rows \
             FROM receipts r JOIN tasks t ON t.id = r.task \
             JOIN events e ON e.run_id = t.run_id AND e.worker_id = t.worker_id AND e.task_id = t.task_id \
             AND e.seq = r.event_seq WHERE r.id IN ",
        );
        super::push_list(&mut qb, ids);
        let rows: String = qb.build().fetch_one(&self.delivery).await?.try_get("rows")?;
        let rows: Vec<ReceiptDoc> = serde_json::from_str(&rows)?;
        let mut out: Vec<ClaimedReceipt> = rows.into_iter().map(ReceiptDoc::into_claimed).collect();
        out.sort_by_key(|r| r.created_at);
        Ok(out)
    }

    /// Record the outcome of attempt number `attempt` on a claimed
    /// receipt. Fenced: only while the receipt is still `sending` in that
    /// attempt, so a late answer never overwrites a newer state (the lease
    /// expired and the receipt was reclaimed, or replayed). Returns whether
    /// it was recorded.
    pub async fn finish_receipt(
        &self,
        id: &str,
        attempt: i64,
        update: &ReceiptUpdate,
        now: i64,
    ) -> Result<bool, StoreError> {
        let outcome = ReceiptOutcome {
            id: id.to_owned(),
            attempt,
            update: update.clone(),
            at: now,
        };
        let recorded = self.finish_receipts(std::slice::from_ref(&outcome)).await?;
        Ok(recorded.first().copied().unwrap_or(false))
    }

    /// Record many outcomes in one transaction (the delivery engine's
    /// group commit), each fenced like [`Store::finish_receipt`]. Returns,
    /// in order, whether each was recorded.
    pub async fn finish_receipts(&self, outcomes: &[ReceiptOutcome]) -> Result<Vec<bool>, StoreError> {
        let (mut surfaced, mut retry, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        for outcome in outcomes {
            match outcome.update {
                ReceiptUpdate::Surfaced { .. } => surfaced.push(outcome),
                ReceiptUpdate::Retry { .. } => retry.push(outcome),
                ReceiptUpdate::Failed { .. } => failed.push(outcome),
            }
        }
        let _gate = self.write_gate.lock().await;
        let mut tx = self.delivery.begin_with("BEGIN IMMEDIATE").await?;
        let mut recorded = std::collections::HashSet::new();
        // Each row: (id, attempt, message_id, surfaced_at).
        recorded.extend(
            finish_batch(
                &mut tx,
                &surfaced,
                "status = 'surfaced', message_id = v.column3, surfaced_at = v.column4, \
                 lease_until = NULL, unverified = 0, backoff = 0",
                |b, outcome| {
                    if let ReceiptUpdate::Surfaced { message_id } = &outcome.update {
                        b.push_bind(message_id.clone()).push_bind(outcome.at);
                    }
                },
            )
            .await?,
        );
        // Each row: (id, attempt, next_attempt_at, last_error, unverified, backoff).
        recorded.extend(
            finish_batch(
                &mut tx,
                &retry,
                "status = 'pending', next_attempt_at = v.column3, last_error = v.column4, \
                 unverified = v.column5, backoff = v.column6, lease_until = NULL",
                |b, outcome| {
                    if let ReceiptUpdate::Retry {
                        at,
                        error,
                        unverified,
                        backoff,
                    } = &outcome.update
                    {
                        b.push_bind(*at)
                            .push_bind(error.clone())
                            .push_bind(*unverified)
                            .push_bind(*backoff);
                    }
                },
            )
            .await?,
        );
        // Each row: (id, attempt, last_error).
        recorded.extend(
            finish_batch(
                &mut tx,
                &failed,
                "status = 'failed', last_error = v.column3, lease_until = NULL, backoff = 0",
                |b, outcome| {
                    if let ReceiptUpdate::Failed { error } = &outcome.update {
                        b.push_bind(error.clone());
                    }
                },
            )
            .await?,
        );
        tx.commit().await?;
        Ok(outcomes.iter().map(|o| recorded.contains(&o.id)).collect())
    }

    /// Claims of `channel` whose lease expired while `sending` (a store
    /// error, a stuck call) go back to `pending`, due now and unverified:
    /// the lost attempt may have reached the platform. Returns how many.
    pub async fn reclaim_expired_receipts(&self, channel: &str, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE receipts SET status = 'pending', lease_until = NULL, next_attempt_at = ?, unverified = 1, \
             last_error = 'lease expired before the outcome of the attempt was recorded' \
             WHERE channel = ? AND status = 'sending' AND lease_until < ?",
        )
        .bind(now)
        .bind(channel)
        .bind(now)
        .execute(&self.delivery)
        .await?;
        Ok(done.rows_affected())
    }

    /// Pending receipts of `channel` whose last outcome is unknown: what a
    /// look-up or a probe must find or rule out.
    pub async fn unverified_receipts(&self, channel: &str) -> Result<Vec<UnverifiedReceipt>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, created_at, COALESCE(attempted_at, created_at) AS attempted_at FROM receipts \
             WHERE channel = ? AND status = 'pending' AND unverified = 1",
        )
        .bind(channel)
        .fetch_all(&self.delivery)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UnverifiedReceipt {
                    id: r.try_get("id")?,
                    created_at: r.try_get("created_at")?,
                    attempted_at: r.try_get("attempted_at")?,
                })
            })
            .collect()
    }

    /// Messages herald knows it has in these channels (terminal
    /// notifications and live messages), as (channel, platform message
    /// id, when it was confirmed).
    pub async fn owned_messages(
        &self,
        channels: &[String],
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        let mut out = Vec::new();
        for channel in channels {
            let rows = sqlx::query(
                "SELECT message_id, surfaced_at AS at FROM receipts \
                 WHERE channel = ? AND status = 'surfaced' AND message_id IS NOT NULL \
                 UNION ALL SELECT message_id, COALESCE(posted_at, 0) AS at FROM task_channels \
                 WHERE channel = ? AND message_id IS NOT NULL",
            )
            .bind(channel)
            .bind(channel)
            .fetch_all(&self.delivery)
            .await?;
            for r in rows {
                out.push((
                    channel.clone(),
                    r.try_get("message_id")?,
                    r.try_get::<Option<i64>, _>("at")?.unwrap_or(0),
                ));
            }
        }
        Ok(out)
    }

    /// Whether `message_id` is a message herald knows it has in any of
    /// `channels`.
    pub async fn owns_message(&self, channels: &[String], message_id: &str) -> Result<bool, StoreError> {
        if channels.is_empty() {
            return Ok(false);
        }
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT EXISTS (SELECT 1 FROM receipts WHERE message_id = ");
        qb.push_bind(message_id);
        qb.push(" AND status = 'surfaced' AND channel IN ");
        super::push_list(&mut qb, channels);
        qb.push(") OR EXISTS (SELECT 1 FROM task_channels WHERE message_id = ");
        qb.push_bind(message_id);
        qb.push(" AND channel IN ");
        super::push_list(&mut qb, channels);
        qb.push(")");
        Ok(qb.build_query_scalar::<bool>().fetch_one(&self.delivery).await?)
    }

    /// A look-up found the message of an unverified receipt: surfaced.
    pub async fn surface_unverified_receipt(
        &self,
        id: &str,
        message_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE receipts SET status = 'surfaced', message_id = ?, surfaced_at = ?, unverified = 0, backoff = 0 \
             WHERE id = ? AND status = 'pending' AND unverified = 1",
        )
        .bind(message_id)
        .bind(now)
        .bind(id)
        .execute(&self.delivery)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A look-up ruled these receipts' messages out (or could never be
    /// made): send them, due now. `note`, when given, becomes their
    /// `last_error` (why they are sent without a check).
    pub async fn clear_unverified_receipts(
        &self,
        ids: &[String],
        note: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        for chunk in ids.chunks(500) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("UPDATE receipts SET unverified = 0, next_attempt_at = ");
            qb.push_bind(now);
            if let Some(note) = note {
                qb.push(", last_error = ").push_bind(note);
            }
            qb.push(" WHERE status = 'pending' AND unverified = 1 AND id IN ");
            super::push_list(&mut qb, chunk);
            qb.build().execute(&self.delivery).await?;
        }
        Ok(())
    }

    /// Unverified receipts of `channel` accepted before `cutoff` that could
    /// not be checked in time: failed with `error` (kept, replayable).
    pub async fn fail_unverified_before(
        &self,
        channel: &str,
        cutoff: i64,
        error: &str,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE receipts SET status = 'failed', last_error = ?, backoff = 0 \
             WHERE channel = ? AND status = 'pending' AND unverified = 1 AND created_at < ?",
        )
        .bind(error)
        .bind(channel)
        .bind(cutoff)
        .execute(&self.delivery)
        .await?;
        Ok(done.rows_affected())
    }

    /// The platform answers again: receipts of these channels waiting on
    /// the retry schedule become due now (progress messages likewise).
    /// Returns how many receipts were pulled forward.
    pub async fn pull_forward(&self, channels: &[String], now: i64) -> Result<u64, StoreError> {
        if channels.is_empty() {
            return Ok(0);
        }
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("UPDATE receipts SET next_attempt_at = ");
        qb.push_bind(now);
        qb.push(" WHERE status = 'pending' AND backoff = 1 AND next_attempt_at > ");
        qb.push_bind(now);
        qb.push(" AND channel IN ");
        super::push_list(&mut qb, channels);
        let done = qb.build().execute(&self.delivery).await?;
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("UPDATE task_channels SET retry_at = NULL WHERE retry_at > ");
        qb.push_bind(now);
        qb.push(" AND channel IN ");
        super::push_list(&mut qb, channels);
        qb.build().execute(&self.delivery).await?;
        Ok(done.rows_affected())
    }

    /// The earliest receipt of `channel` waiting on backoff becomes due now
    /// (a probe of a failing platform). Returns whether there was one.
    pub async fn pull_forward_one(&self, channel: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE receipts SET next_attempt_at = ? WHERE id = (SELECT id FROM receipts \
             WHERE channel = ? AND status = 'pending' AND backoff = 1 AND next_attempt_at > ? \
             ORDER BY next_attempt_at LIMIT 1)",
        )
        .bind(now)
        .bind(channel)
        .bind(now)
        .execute(&self.delivery)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether `channel` has receipts waiting on backoff.
    pub async fn has_backoff(&self, channel: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM receipts WHERE channel = ? AND status = 'pending' AND backoff = 1)",
        )
        .bind(channel)
        .fetch_one(&self.delivery)
        .await?)
    }

    /// Receipts still to deliver to channels the config no longer has:
    /// failed with `channel removed from config` (replayable once it is
    /// back). Returns how many.
    pub async fn fail_receipts_outside(&self, known: &[String]) -> Result<u64, StoreError> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "UPDATE receipts SET status = 'failed', lease_until = NULL, backoff = 0, \
             last_error = 'channel removed from config' WHERE status IN ('pending', 'sending')",
        );
        if !known.is_empty() {
            qb.push(" AND channel NOT IN ");
            super::push_list(&mut qb, known);
        }
        Ok(qb.build().execute(&self.delivery).await?.rows_affected())
    }

    /// After a crash: every receipt left `sending` goes back to `pending`,
    /// due now and marked unverified (the crash may have come after the
    /// platform applied the message). Returns how many were recovered.
    pub async fn recover_receipts(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE receipts SET status = 'pending', lease_until = NULL, next_attempt_at = ?, unverified = 1, \
             last_error = 'interrupted before the outcome was recorded' \
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

    /// When the next pending receipt of `channel` is due (Unix ms); with
    /// `verified_only`, of those not waiting for a look-up.
    pub async fn next_receipt_due(
        &self,
        channel: &str,
        verified_only: bool,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM receipts WHERE channel = ? AND status = 'pending' \
             AND (? = 0 OR unverified = 0)",
        )
        .bind(channel)
        .bind(verified_only)
        .fetch_one(&self.delivery)
        .await?)
    }

    /// When the earliest `sending` claim of `channel` expires (Unix ms).
    pub async fn next_lease_expiry(&self, channel: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(lease_until) FROM receipts WHERE channel = ? AND status = 'sending'",
        )
        .bind(channel)
        .fetch_one(&self.delivery)
        .await?)
    }

    /// Receipts per status, for the `herald_receipts` gauge: the tallies
    /// triggers keep with every change (no count over the table).
    pub async fn receipt_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, n FROM receipt_tallies")
            .fetch_all(&self.delivery)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect()
    }
}
