//! PostgreSQL: terminal receipts: claims, fenced outcomes, leases, reconciliation, replay.

use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};

use super::PgStore;
use crate::store::receipts::*;
use crate::store::{Lease, StoreError};

/// The columns a claimed receipt is rendered from (constant text: the
/// statements built from it bind every value), over `r` (receipts),
/// `t` (its task) and `e` (its terminal event).
const CLAIMED_COLUMNS: &str = "r.id, r.channel, r.attempts, r.created_at, r.unverified, t.run_id, t.worker_id, \
     t.task_id, t.first_seen_at, t.labels, e.body, r.fallback_for, r.miss_reason, r.task, \
     tc.message_id AS parent, tc.thread_id AS thread";

/// Joins a receipt `r` to its task, its terminal event, and the task's
/// live message in the receipt's channel (`tc`, where it has one).
const CLAIMED_JOINS: &str = "JOIN tasks t ON t.id = r.task JOIN events e ON e.run_id = t.run_id \
     AND e.worker_id = t.worker_id AND e.task_id = t.task_id AND e.seq = r.event_seq \
     LEFT JOIN task_channels tc ON tc.task = r.task AND tc.channel = r.channel AND tc.progress";

/// What [`Claimable`] allows, over `receipts`, with `verified_only` bound
/// as `$V` and `parent_posted` as `$P` (the caller substitutes the
/// placeholders' numbers): a reply waits while its task's live message in
/// the channel is still due to be posted.
fn claimable(verified: u8, parent: u8) -> String {
    format!(
        "(NOT ${verified} OR receipts.unverified = FALSE) AND (NOT ${parent} OR NOT EXISTS \
         (SELECT 1 FROM task_channels tc WHERE tc.task = receipts.task AND tc.channel = receipts.channel \
         AND tc.progress AND tc.message_id IS NULL AND tc.dirty_since IS NOT NULL))"
    )
}

fn claimed_from_row(row: &PgRow) -> Result<ClaimedReceipt, StoreError> {
    let labels: String = row.try_get("labels")?;
    let body: String = row.try_get("body")?;
    Ok(ClaimedReceipt {
        id: row.try_get("id")?,
        task: row.try_get("task")?,
        parent: row.try_get("parent")?,
        thread: row.try_get("thread")?,
        channel: row.try_get("channel")?,
        attempts: row.try_get("attempts")?,
        created_at: row.try_get("created_at")?,
        unverified: row.try_get("unverified")?,
        run_id: row.try_get("run_id")?,
        worker_id: row.try_get("worker_id")?,
        task_id: row.try_get("task_id")?,
        event: crate::store::decode_event(&body)?,
        first_seen_at: row.try_get("first_seen_at")?,
        labels: serde_json::from_str(&labels)?,
        fallback_for: row
            .try_get::<Option<String>, _>("fallback_for")?
            .zip(row.try_get::<Option<String>, _>("miss_reason")?),
    })
}

/// Rows per batched outcome statement (well inside the bind limit).
const FINISH_CHUNK: usize = 200;

/// Record one kind of outcome for many receipts in one statement:
/// `UPDATE receipts … FROM (VALUES …)`, fenced per row on `sending` and
/// the attempt and the channel lease. `columns` binds each row's values
/// after (id, attempt, epoch); `set` assigns from them (`v.column4` onwards). Returns the ids recorded.
async fn finish_batch(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    rows: &[&ReceiptOutcome],
    set: &str,
    columns: impl Fn(&mut sqlx::query_builder::Separated<'_, Postgres, &'static str>, &ReceiptOutcome),
) -> Result<Vec<String>, StoreError> {
    let mut recorded = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(FINISH_CHUNK) {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new("UPDATE receipts SET ");
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
    tx: &mut sqlx::Transaction<'_, Postgres>,
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
                 lease_until = NULL, unverified = FALSE, backoff = FALSE",
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
            "status = 'failed', last_error = v.column4, lease_until = NULL, backoff = FALSE",
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

/// Make one claim in `tx`: the receipts claimed, or `None` when the
/// channel's lease has passed on. SKIP LOCKED: a receipt another replica
/// is claiming right now is left to it instead of waited for (and then
/// claimed twice).
async fn claim_in(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    claim: &ClaimRequest,
) -> Result<Option<Vec<ClaimedReceipt>>, StoreError> {
    let claimable = claimable(5, 8);
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH r AS (UPDATE receipts SET status = 'sending', lease_until = $1, attempts = attempts + 1, \
         attempted_at = $2 WHERE id IN (SELECT id FROM receipts WHERE channel = $3 AND status = 'pending' \
         AND next_attempt_at <= $4 AND {claimable} \
         ORDER BY next_attempt_at, created_at LIMIT $6 FOR UPDATE SKIP LOCKED) \
         AND EXISTS (SELECT 1 FROM channel_leases WHERE channel = $3 AND epoch = $7 AND holder IS NOT NULL) \
         RETURNING id, channel, attempts, created_at, unverified, task, event_seq, fallback_for, miss_reason) \
         SELECT {CLAIMED_COLUMNS} FROM r {CLAIMED_JOINS} ORDER BY r.created_at"
    )))
    .bind(claim.now + claim.lease_ms)
    .bind(claim.now)
    .bind(&claim.lease.channel)
    .bind(claim.now)
    .bind(claim.which.verified_only)
    .bind(claim.limit)
    .bind(claim.lease.epoch)
    .bind(claim.which.parent_posted)
    .fetch_all(&mut **tx)
    .await?;
    if !rows.is_empty() {
        return Ok(Some(rows.iter().map(claimed_from_row).collect::<Result<_, _>>()?));
    }
    let held: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM channel_leases WHERE channel = $1 AND epoch = $2 AND holder IS NOT NULL",
    )
    .bind(&claim.lease.channel)
    .bind(claim.lease.epoch)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(held.map(|_| Vec::new()))
}

#[async_trait::async_trait]
impl ReceiptStore for PgStore {
    async fn receipts_by_id(&self, ids: &[String]) -> Result<Vec<ClaimedReceipt>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CLAIMED_COLUMNS} FROM receipts r {CLAIMED_JOINS} WHERE r.id = ANY($1) ORDER BY r.created_at"
        )))
        .bind(ids)
        .fetch_all(&self.delivery)
        .await?;
        rows.iter().map(claimed_from_row).collect()
    }

    async fn finish_and_claim(
        &self,
        outcomes: &[ReceiptOutcome],
        claims: &[ClaimRequest],
    ) -> Result<Bookkept, StoreError> {
        let mut tx = self.delivery.begin().await?;
        let recorded = finish_in(&mut tx, outcomes).await?;
        let mut claimed = Vec::with_capacity(claims.len());
        for claim in claims {
            let taken = claim_in(&mut tx, claim).await?;
            claimed.push(taken.ok_or_else(|| StoreError::LeaseLost {
                channel: claim.lease.channel.clone(),
            }));
        }
        tx.commit().await?;
        Ok(Bookkept {
            recorded: outcomes.iter().map(|o| recorded.contains(&o.id)).collect(),
            claimed,
        })
    }

    async fn reclaim_expired_receipts(&self, lease: &Lease, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE receipts SET status = 'pending', lease_until = NULL, next_attempt_at = $1, unverified = TRUE, \
             last_error = 'lease expired before the outcome of the attempt was recorded' \
             WHERE channel = $2 AND status = 'sending' AND lease_until < $3 \
             AND EXISTS (SELECT 1 FROM channel_leases WHERE channel = $2 AND epoch = $4 AND holder IS NOT NULL)",
        )
        .bind(now)
        .bind(&lease.channel)
        .bind(now)
        .bind(lease.epoch)
        .execute(&self.delivery)
        .await?;
        if done.rows_affected() == 0 {
            self.fence(lease).await?;
        }
        Ok(done.rows_affected())
    }

    async fn reclaim_unowned_receipts(
        &self,
        lease: &Lease,
        keep: &[String],
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
            "UPDATE receipts SET status = 'pending', lease_until = NULL, unverified = TRUE, \
             last_error = 'the claim of this attempt was interrupted before it was sent', next_attempt_at = ",
        );
        qb.push_bind(now);
        qb.push(" WHERE status = 'sending' AND channel = ")
            .push_bind(lease.channel.clone());
        if !keep.is_empty() {
            qb.push(" AND id NOT IN ");
            super::push_list(&mut qb, keep);
        }
        qb.push(" AND EXISTS (SELECT 1 FROM channel_leases WHERE channel = ")
            .push_bind(lease.channel.clone())
            .push(" AND epoch = ")
            .push_bind(lease.epoch)
            .push(" AND holder IS NOT NULL)");
        let done = qb.build().execute(&self.delivery).await?.rows_affected();
        if done == 0 {
            self.fence(lease).await?;
        }
        Ok(done)
    }

    async fn unverified_receipts(&self, channel: &str) -> Result<Vec<UnverifiedReceipt>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, created_at, COALESCE(attempted_at, created_at) AS attempted_at FROM receipts \
             WHERE channel = $1 AND status = 'pending' AND unverified = TRUE",
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
                 WHERE channel = $1 AND status = 'surfaced' AND message_id IS NOT NULL \
                 UNION ALL SELECT message_id, COALESCE(posted_at, 0) AS at FROM task_channels \
                 WHERE channel = $2 AND message_id IS NOT NULL",
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
        let mut qb: QueryBuilder<Postgres> =
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
        let done = sqlx::query(
            "UPDATE receipts SET status = 'surfaced', message_id = $1, surfaced_at = $2, unverified = FALSE, backoff = FALSE \
             WHERE id = $3 AND status = 'pending' AND unverified = TRUE \
             AND EXISTS (SELECT 1 FROM channel_leases WHERE channel = $4 AND epoch = $5 AND holder IS NOT NULL)",
        )
        .bind(message_id)
        .bind(now)
        .bind(id)
        .bind(&lease.channel)
        .bind(lease.epoch)
        .execute(&self.delivery)
        .await?;
        if done.rows_affected() == 0 {
            self.fence(lease).await?;
        }
        Ok(done.rows_affected() == 1)
    }

    async fn clear_unverified_receipts(
        &self,
        lease: &Lease,
        ids: &[String],
        note: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.delivery.begin().await?;
        super::leases::lock_lease(&mut tx, lease).await?;
        for chunk in ids.chunks(500) {
            let mut qb: QueryBuilder<Postgres> =
                QueryBuilder::new("UPDATE receipts SET unverified = FALSE, next_attempt_at = ");
            qb.push_bind(now);
            if let Some(note) = note {
                qb.push(", last_error = ").push_bind(note);
            }
            qb.push(" WHERE status = 'pending' AND unverified = TRUE AND channel = ")
                .push_bind(lease.channel.clone())
                .push(" AND id IN ");
            super::push_list(&mut qb, chunk);
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn fail_unverified_before(
        &self,
        lease: &Lease,
        cutoff: i64,
        error: &str,
    ) -> Result<u64, StoreError> {
        let mut tx = self.delivery.begin().await?;
        super::leases::lock_lease(&mut tx, lease).await?;
        let done = sqlx::query(
            "UPDATE receipts SET status = 'failed', last_error = $1, backoff = FALSE \
             WHERE channel = $2 AND status = 'pending' AND unverified = TRUE AND created_at < $3",
        )
        .bind(error)
        .bind(&lease.channel)
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn pull_forward(&self, channels: &[String], now: i64) -> Result<u64, StoreError> {
        if channels.is_empty() {
            return Ok(0);
        }
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new("UPDATE receipts SET next_attempt_at = ");
        qb.push_bind(now);
        qb.push(" WHERE status = 'pending' AND backoff = TRUE AND next_attempt_at > ");
        qb.push_bind(now);
        qb.push(" AND channel IN ");
        super::push_list(&mut qb, channels);
        let done = qb.build().execute(&self.delivery).await?;
        let mut qb: QueryBuilder<Postgres> =
            QueryBuilder::new("UPDATE task_channels SET retry_at = NULL WHERE retry_at > ");
        qb.push_bind(now);
        qb.push(" AND channel IN ");
        super::push_list(&mut qb, channels);
        qb.build().execute(&self.delivery).await?;
        Ok(done.rows_affected())
    }

    async fn pull_forward_one(&self, channel: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE receipts SET next_attempt_at = $1 WHERE id = (SELECT id FROM receipts \
             WHERE channel = $2 AND status = 'pending' AND backoff = TRUE AND next_attempt_at > $3 \
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
            "SELECT EXISTS (SELECT 1 FROM receipts WHERE channel = $1 AND status = 'pending' AND backoff = TRUE)",
        )
        .bind(channel)
        .fetch_one(&self.delivery)
        .await?)
    }

    async fn fail_receipts_outside(&self, known: &[String]) -> Result<u64, StoreError> {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
            "UPDATE receipts SET status = 'failed', lease_until = NULL, backoff = FALSE, \
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
            "UPDATE receipts SET status = 'pending', next_attempt_at = $1, created_at = $2, lease_until = NULL \
             WHERE id = $3 AND status = 'failed' RETURNING channel",
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
            "UPDATE receipts SET status = 'pending', next_attempt_at = $1, created_at = $2, lease_until = NULL \
             WHERE status = 'failed' AND ($3::TEXT IS NULL OR channel = $3) RETURNING channel",
        )
        .bind(now)
        .bind(now)
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
        Ok(sqlx::query_scalar("SELECT status FROM receipts WHERE id = $1")
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
            "SELECT id, message_id FROM receipts WHERE channel = $1 AND needs_edit \
             AND message_id IS NOT NULL LIMIT $2",
        )
        .bind(channel)
        .bind(limit)
        .fetch_all(&self.delivery)
        .await?)
    }

    async fn notifications_edited(&self, lease: &Lease, ids: &[String]) -> Result<(), StoreError> {
        let mut tx = self.delivery.begin().await?;
        super::leases::lock_lease(&mut tx, lease).await?;
        sqlx::query("UPDATE receipts SET needs_edit = FALSE WHERE id = ANY($1) AND channel = $2")
            .bind(ids)
            .bind(&lease.channel)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn receipt_placement(&self, id: &str) -> Result<Option<(String, Option<String>)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT channel, message_id FROM receipts WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.delivery)
                .await?,
        )
    }

    async fn next_receipt_due(&self, channel: &str, which: Claimable) -> Result<Option<i64>, StoreError> {
        let claimable = claimable(2, 3);
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT MIN(next_attempt_at) FROM receipts WHERE channel = $1 AND status = 'pending' AND {claimable}"
        )))
        .bind(channel)
        .bind(which.verified_only)
        .bind(which.parent_posted)
        .fetch_one(&self.delivery)
        .await?)
    }

    async fn next_lease_expiry(&self, channel: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(lease_until) FROM receipts WHERE channel = $1 AND status = 'sending'",
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
