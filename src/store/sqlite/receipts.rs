//! SQLite: terminal receipts: claims, fenced outcomes, leases, reconciliation, replay.

use serde_json::Value;
use sqlx::{QueryBuilder, Row, Sqlite};
use std::collections::BTreeMap;

use super::SqliteStore;
use crate::store::receipts::*;
use crate::store::{Lease, StoreError};

/// A receipt as `receipts_by_id` aggregates it.
#[derive(serde::Deserialize)]
struct ReceiptDoc {
    id: String,
    task: i64,
    parent: Option<String>,
    thread: Option<String>,
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
    fallback_for: Option<String>,
    miss_reason: Option<String>,
}

impl ReceiptDoc {
    fn into_claimed(self) -> Result<ClaimedReceipt, StoreError> {
        Ok(ClaimedReceipt {
            id: self.id,
            task: self.task,
            parent: self.parent,
            thread: self.thread,
            channel: self.channel,
            attempts: self.attempts,
            created_at: self.created_at,
            unverified: self.unverified != 0,
            run_id: self.run_id,
            worker_id: self.worker_id,
            task_id: self.task_id,
            event: crate::protocol::parse_stored_event(self.event)?,
            first_seen_at: self.first_seen_at,
            labels: self.labels,
            fallback_for: self.fallback_for.zip(self.miss_reason),
        })
    }
}

/// What [`Claimable`] allows, over `receipts`, binding `verified_only`
/// then `parent_posted`: a reply waits while its task's live message in
/// the channel is still due to be posted.
const CLAIMABLE: &str = "(? = 0 OR unverified = 0) AND (? = 0 OR NOT EXISTS (SELECT 1 FROM task_channels tc \
     WHERE tc.task = receipts.task AND tc.channel = receipts.channel AND tc.progress = 1 \
     AND tc.message_id IS NULL AND tc.dirty_since IS NOT NULL))";

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
            b.push_bind(outcome.id.clone())
                .push_bind(outcome.attempt)
                .push_bind(outcome.epoch);
            columns(&mut b, outcome);
        });
        qb.push(
            ") AS v WHERE receipts.id = v.column1 AND receipts.status = 'sending' \
             AND receipts.attempts = v.column2 AND EXISTS (SELECT 1 FROM channel_leases l \
             WHERE l.channel = receipts.channel AND l.epoch = v.column3 AND l.holder IS NOT NULL) \
             RETURNING receipts.id",
        );
        for row in qb.build().fetch_all(&mut **tx).await? {
            recorded.push(row.try_get("id")?);
        }
    }
    Ok(recorded)
}

/// Record `outcomes` in `tx`, one statement per kind; returns the ids
/// recorded (the others were fenced off).
async fn finish_in(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    outcomes: &[ReceiptOutcome],
) -> Result<std::collections::HashSet<String>, StoreError> {
    let OutcomeKinds {
        surfaced,
        retry,
        failed,
    } = OutcomeKinds::of(outcomes);
    let mut recorded = std::collections::HashSet::new();
    // Each row: (id, attempt, epoch, message_id, surfaced_at).
    recorded.extend(
        finish_batch(
            tx,
            &surfaced,
            "status = 'surfaced', message_id = v.column4, surfaced_at = v.column5, \
                 lease_until = NULL, unverified = 0, backoff = 0",
            |b, outcome| {
                if let ReceiptUpdate::Surfaced { message_id } = &outcome.update {
                    b.push_bind(message_id.clone()).push_bind(outcome.at);
                }
            },
        )
        .await?,
    );
    // Each row: (id, attempt, epoch, next_attempt_at, last_error, unverified, backoff).
    recorded.extend(
        finish_batch(
            tx,
            &retry,
            "status = 'pending', next_attempt_at = v.column4, last_error = v.column5, \
                 unverified = v.column6, backoff = v.column7, lease_until = NULL",
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
    // Each row: (id, attempt, epoch, last_error).
    recorded.extend(
        finish_batch(
            tx,
            &failed,
            "status = 'failed', last_error = v.column4, lease_until = NULL, backoff = 0",
            |b, outcome| {
                if let ReceiptUpdate::Failed { error } = &outcome.update {
                    b.push_bind(error.clone());
                }
            },
        )
        .await?,
    );
    Ok(recorded)
}

/// What each of `claims` took, read by id (`claimed_ids`, in the same
/// order: `None` where the channel's lease had passed on). On failure the
/// error, with the number of claims.
async fn read_claimed(
    store: &SqliteStore,
    claims: &[ClaimRequest],
    claimed_ids: Vec<Option<Vec<String>>>,
) -> Result<Vec<Result<Vec<ClaimedReceipt>, StoreError>>, StoreError> {
    let mut owner = std::collections::HashMap::new();
    for (i, ids) in claimed_ids.iter().enumerate() {
        for id in ids.iter().flatten() {
            owner.insert(id.clone(), i);
        }
    }
    let all: Vec<String> = owner.keys().cloned().collect();
    let rows = store.receipts_by_id(&all).await?;
    let mut claimed: Vec<Result<Vec<ClaimedReceipt>, StoreError>> = claimed_ids
        .into_iter()
        .zip(claims)
        .map(|(ids, claim)| match ids {
            Some(ids) => Ok(Vec::with_capacity(ids.len())),
            None => Err(StoreError::LeaseLost {
                channel: claim.lease.channel.clone(),
            }),
        })
        .collect();
    for receipt in rows {
        if let Some(Ok(list)) = owner.get(&receipt.id).and_then(|&i| claimed.get_mut(i)) {
            list.push(receipt);
        }
    }
    Ok(claimed)
}

/// Make one claim in `tx`: the ids claimed, or `None` when the channel's
/// lease has passed on.
async fn claim_in(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    claim: &ClaimRequest,
) -> Result<Option<Vec<String>>, StoreError> {
    let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "UPDATE receipts SET status = 'sending', lease_until = ?, attempts = attempts + 1, attempted_at = ? \
         WHERE id IN (SELECT id FROM receipts WHERE channel = ? AND status = 'pending' \
                      AND next_attempt_at <= ? AND {CLAIMABLE} \
                      ORDER BY next_attempt_at, created_at LIMIT ?) \
         AND EXISTS (SELECT 1 FROM channel_leases WHERE channel = ? AND epoch = ? AND holder IS NOT NULL) \
         RETURNING id"
    )))
    .bind(claim.now + claim.lease_ms)
    .bind(claim.now)
    .bind(&claim.lease.channel)
    .bind(claim.now)
    .bind(claim.which.verified_only)
    .bind(claim.which.parent_posted)
    .bind(claim.limit)
    .bind(&claim.lease.channel)
    .bind(claim.lease.epoch)
    .fetch_all(&mut **tx)
    .await?;
    if !ids.is_empty() {
        return Ok(Some(ids));
    }
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM channel_leases WHERE channel = ? AND epoch = ? AND holder IS NOT NULL",
    )
    .bind(&claim.lease.channel)
    .bind(claim.lease.epoch)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(held.map(|_| Vec::new()))
}

#[async_trait::async_trait]
impl ReceiptStore for SqliteStore {
    async fn receipts_by_id(&self, ids: &[String]) -> Result<Vec<ClaimedReceipt>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT json_group_array(json_object('id', r.id, 'channel', r.channel, 'attempts', r.attempts, \
             'created_at', r.created_at, 'unverified', r.unverified, 'run_id', t.run_id, \
             'worker_id', t.worker_id, 'task_id', t.task_id, 'first_seen_at', t.first_seen_at, \
             'labels', json(t.labels), 'event', json(e.body), 'fallback_for', r.fallback_for, \
             'miss_reason', r.miss_reason, 'task', r.task, 'parent', tc.message_id, \
             'thread', tc.thread_id)) AS rows \
             FROM receipts r JOIN tasks t ON t.id = r.task \
             JOIN events e ON e.run_id = t.run_id AND e.worker_id = t.worker_id AND e.task_id = t.task_id \
             AND e.seq = r.event_seq \
             LEFT JOIN task_channels tc ON tc.task = r.task AND tc.channel = r.channel AND tc.progress = 1 \
             WHERE r.id IN ",
        );
        super::push_list(&mut qb, ids);
        let rows: String = qb.build().fetch_one(&self.delivery).await?.try_get("rows")?;
        let rows: Vec<ReceiptDoc> = serde_json::from_str(&rows)?;
        let mut out = rows
            .into_iter()
            .map(ReceiptDoc::into_claimed)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|r| r.created_at);
        Ok(out)
    }

    async fn finish_and_claim(
        &self,
        outcomes: &[ReceiptOutcome],
        claims: &[ClaimRequest],
    ) -> Result<Bookkept, StoreError> {
        let gate = self.write_gate.lock().await;
        let mut tx = self.delivery.begin_with("BEGIN IMMEDIATE").await?;
        let recorded = finish_in(&mut tx, outcomes).await?;
        let mut claimed_ids = Vec::with_capacity(claims.len());
        for claim in claims {
            claimed_ids.push(claim_in(&mut tx, claim).await?);
        }
        tx.commit().await?;
        drop(gate);
        // What to render is read after the commit: a read does not hold
        // up the next writer. Should it fail, the outcomes stand and each
        // claim is answered with the error.
        let claimed = match read_claimed(self, claims, claimed_ids).await {
            Ok(claimed) => claimed,
            Err(e) => {
                let said = e.to_string();
                (0..claims.len())
                    .map(|_| Err(StoreError::Unanswered(said.clone())))
                    .collect()
            }
        };
        Ok(Bookkept {
            recorded: outcomes.iter().map(|o| recorded.contains(&o.id)).collect(),
            claimed,
        })
    }

    async fn reclaim_expired_receipts(&self, lease: &Lease, now: i64) -> Result<u64, StoreError> {
        self.fence(lease).await?;
        let done = sqlx::query(
            "UPDATE receipts SET status = 'pending', lease_until = NULL, next_attempt_at = ?, unverified = 1, \
             last_error = 'lease expired before the outcome of the attempt was recorded' \
             WHERE channel = ? AND status = 'sending' AND lease_until < ?",
        )
        .bind(now)
        .bind(&lease.channel)
        .bind(now)
        .execute(&self.delivery)
        .await?;
        Ok(done.rows_affected())
    }

    async fn reclaim_unowned_receipts(
        &self,
        lease: &Lease,
        keep: &[String],
        now: i64,
    ) -> Result<u64, StoreError> {
        self.fence(lease).await?;
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "UPDATE receipts SET status = 'pending', lease_until = NULL, unverified = 1, \
             last_error = 'the claim of this attempt was interrupted before it was sent', next_attempt_at = ",
        );
        qb.push_bind(now);
        qb.push(" WHERE status = 'sending' AND channel = ")
            .push_bind(lease.channel.clone());
        if !keep.is_empty() {
            qb.push(" AND id NOT IN ");
            super::push_list(&mut qb, keep);
        }
        Ok(qb.build().execute(&self.delivery).await?.rows_affected())
    }

    async fn unverified_receipts(&self, channel: &str) -> Result<Vec<UnverifiedReceipt>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, created_at, COALESCE(attempted_at, created_at) AS attempted_at FROM receipts \
             WHERE channel = ? AND status = 'pending' AND unverified = 1",
        )
        .bind(channel)
        .fetch_all(&self.delivery)
        .await?;
        rows.iter().map(unverified_from).collect()
    }

    async fn owned_messages(&self, channels: &[String]) -> Result<Vec<(String, String, i64)>, StoreError> {
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

    async fn owns_message(&self, channels: &[String], message_id: &str) -> Result<bool, StoreError> {
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

    async fn surface_unverified_receipt(
        &self,
        lease: &Lease,
        id: &str,
        message_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.fence(lease).await?;
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

    async fn clear_unverified_receipts(
        &self,
        lease: &Lease,
        ids: &[String],
        note: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.fence(lease).await?;
        for chunk in ids.chunks(500) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("UPDATE receipts SET unverified = 0, next_attempt_at = ");
            qb.push_bind(now);
            if let Some(note) = note {
                qb.push(", last_error = ").push_bind(note);
            }
            qb.push(" WHERE status = 'pending' AND unverified = 1 AND channel = ")
                .push_bind(lease.channel.clone())
                .push(" AND id IN ");
            super::push_list(&mut qb, chunk);
            qb.build().execute(&self.delivery).await?;
        }
        Ok(())
    }

    async fn fail_unverified_before(
        &self,
        lease: &Lease,
        cutoff: i64,
        error: &str,
    ) -> Result<u64, StoreError> {
        self.fence(lease).await?;
        let channel = &lease.channel;
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

    async fn pull_forward(&self, channels: &[String], now: i64) -> Result<u64, StoreError> {
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

    async fn pull_forward_one(&self, channel: &str, now: i64) -> Result<bool, StoreError> {
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

    async fn has_backoff(&self, channel: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM receipts WHERE channel = ? AND status = 'pending' AND backoff = 1)",
        )
        .bind(channel)
        .fetch_one(&self.delivery)
        .await?)
    }

    async fn fail_receipts_outside(&self, known: &[String]) -> Result<u64, StoreError> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "UPDATE receipts SET status = 'failed', lease_until = NULL, backoff = 0, \
             last_error = 'channel removed from config' WHERE status IN ('pending', 'sending') \
             AND channel NOT IN (SELECT name FROM runtime_channels)",
        );
        if !known.is_empty() {
            qb.push(" AND channel NOT IN ");
            super::push_list(&mut qb, known);
        }
        Ok(qb.build().execute(&self.delivery).await?.rows_affected())
    }

    async fn replay_receipt(&self, id: &str, now: i64) -> Result<Option<String>, StoreError> {
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

    async fn replay_failed(&self, channel: Option<&str>, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let channels: Vec<String> = sqlx::query_scalar(
            "UPDATE receipts SET status = 'pending', next_attempt_at = ?, created_at = ?, lease_until = NULL \
             WHERE status = 'failed' AND (? IS NULL OR channel = ?) RETURNING channel",
        )
        .bind(now)
        .bind(now)
        .bind(channel)
        .bind(channel)
        .fetch_all(&self.delivery)
        .await?;
        let mut counts: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
        for c in channels {
            *counts.entry(c).or_default() += 1;
        }
        Ok(counts.into_iter().collect())
    }

    async fn receipt_status(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT status FROM receipts WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.delivery)
            .await?)
    }

    async fn notifications_to_edit(
        &self,
        channel: &str,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, message_id FROM receipts WHERE channel = ? AND needs_edit = 1 \
             AND message_id IS NOT NULL LIMIT ?",
        )
        .bind(channel)
        .bind(limit)
        .fetch_all(&self.delivery)
        .await?)
    }

    async fn notifications_edited(&self, lease: &Lease, ids: &[String]) -> Result<(), StoreError> {
        self.fence(lease).await?;
        for id in ids {
            sqlx::query("UPDATE receipts SET needs_edit = 0 WHERE id = ? AND channel = ?")
                .bind(id)
                .bind(&lease.channel)
                .execute(&self.delivery)
                .await?;
        }
        Ok(())
    }

    async fn receipt_placement(&self, id: &str) -> Result<Option<(String, Option<String>)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT channel, message_id FROM receipts WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.delivery)
                .await?,
        )
    }

    async fn next_receipt_due(&self, channel: &str, which: Claimable) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT MIN(next_attempt_at) FROM receipts WHERE channel = ? AND status = 'pending' AND {CLAIMABLE}"
        )))
        .bind(channel)
        .bind(which.verified_only)
        .bind(which.parent_posted)
        .fetch_one(&self.delivery)
        .await?)
    }

    async fn next_lease_expiry(&self, channel: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(lease_until) FROM receipts WHERE channel = ? AND status = 'sending'",
        )
        .bind(channel)
        .fetch_one(&self.delivery)
        .await?)
    }

    async fn receipt_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, n FROM receipt_tallies")
            .fetch_all(&self.delivery)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect()
    }
}
