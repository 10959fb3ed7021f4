//! SQLite: the ingest transaction. It reads the batch's snapshot and writes
//! its plan inside one `BEGIN IMMEDIATE` transaction, which holds SQLite's
//! only write lock from the first read to the commit: nothing can change
//! between what the plan saw and what it writes.
//!
//! Statements are multi-row and return few rows: with sqlx's SQLite driver
//! every returned row is a hop between threads, which dominated the cost of
//! earlier versions.

use std::collections::{HashMap, HashSet};

use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use super::SqliteStore;
use crate::ingest::plan::{Batch, EventKey, IngestPlan, IngestResult, Route, Snapshot, StoredTask, TaskKey};
use crate::store::ingest::{IngestStore, stored_task_from};
use crate::store::{StoreError, new_progress_key, new_receipt_id, now_ms};

/// Rows per multi-row statement; keeps bind parameters well under SQLite's
/// limit (32766) while amortising the per-statement cost.
const CHUNK: usize = 500;

#[async_trait::async_trait]
impl IngestStore for SqliteStore {
    async fn ingest(&self, batch: &Batch<'_>, route: Route<'_>) -> Result<IngestResult, StoreError> {
        let now = now_ms();
        // IMMEDIATE: take the write lock up front. A deferred transaction that
        // reads first cannot upgrade while a channel actor writes, and SQLite
        // answers that with SQLITE_BUSY instead of waiting.
        let _gate = self.write_gate.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let snapshot = Snapshot {
            known: known_events(&mut tx, batch).await?,
            tasks: load_tasks(&mut tx, batch.task_keys()).await?,
        };
        let plan = batch.plan(snapshot, route, now);
        if plan.is_empty() {
            tx.commit().await?;
            return Ok(plan.result(0));
        }
        let created = apply(&mut tx, &plan, now).await?;
        tx.commit().await?;
        Ok(plan.result(created))
    }
}

/// Write a plan; returns how many receipts were created.
async fn apply(
    tx: &mut Transaction<'_, Sqlite>,
    plan: &IngestPlan<'_, '_>,
    now: i64,
) -> Result<usize, StoreError> {
    insert_journal(tx, plan, now).await?;
    // Ids of new tasks follow the largest: this transaction holds SQLite's
    // one write lock, so no other writer can take the same ids.
    let mut next = max_task_id(tx).await? + 1;
    let ids: Vec<i64> = plan
        .tasks
        .iter()
        .map(|t| {
            t.id.unwrap_or_else(|| {
                next += 1;
                next - 1
            })
        })
        .collect();
    upsert_tasks(tx, plan, &ids).await?;
    insert_task_channels(tx, plan, &ids, now).await?;
    mark_progress_dirty(tx, &plan.dirty, now).await?;
    mark_notifications_to_edit(tx, &plan.reedit).await?;
    insert_receipts(tx, plan, &ids, now).await
}

async fn known_events(
    tx: &mut Transaction<'_, Sqlite>,
    batch: &Batch<'_>,
) -> Result<HashSet<EventKey>, StoreError> {
    let mut known = HashSet::new();
    for chunk in batch.events().chunks(CHUNK) {
        // A join with a VALUES list uses the unique index; `(a, b) IN
        // (VALUES ...)` would scan the whole journal.
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("WITH k (r, w, t, s) AS (");
        qb.push_values(chunk, |mut b, p| {
            b.push_bind(p.event.run_id.clone())
                .push_bind(p.event.worker_id.clone())
                .push_bind(p.event.task_id.clone())
                .push_bind(p.event.seq);
        });
        qb.push(
            ") SELECT e.run_id, e.worker_id, e.task_id, e.seq FROM k JOIN events e \
             ON e.run_id = k.r AND e.worker_id = k.w AND e.task_id = k.t AND e.seq = k.s",
        );
        for row in qb.build().fetch_all(&mut **tx).await? {
            known.insert((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?));
        }
    }
    Ok(known)
}

async fn load_tasks(
    tx: &mut Transaction<'_, Sqlite>,
    keys: &[TaskKey],
) -> Result<HashMap<TaskKey, StoredTask>, StoreError> {
    let mut out = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("WITH k (r, w, t) AS (");
        qb.push_values(chunk, |mut b, (run, worker, task)| {
            b.push_bind(run.clone())
                .push_bind(worker.clone())
                .push_bind(task.clone());
        });
        // The channels come along as one JSON column, in the order they
        // were added (rowid), not as rows of their own.
        qb.push(
            ") SELECT id, run_id, worker_id, task_id, state, state_seq, max_seq, terminal, display, labels, \
             version, first_seen_at, updated_at, last_heartbeat_at, deadline_at, stale_since, stale_marks, \
             escalation, escalate_at, (SELECT json_group_array(json_array(channel, json(CASE WHEN progress THEN 'true' ELSE 'false' END))) FROM \
               (SELECT channel, progress FROM task_channels WHERE task = tasks.id ORDER BY rowid)) AS channels \
             FROM k JOIN tasks ON run_id = k.r AND worker_id = k.w AND task_id = k.t",
        );
        for row in qb.build().fetch_all(&mut **tx).await? {
            let (key, task) = stored_task_from(&row)?;
            out.insert(key, task);
        }
    }
    Ok(out)
}

async fn insert_journal(
    tx: &mut Transaction<'_, Sqlite>,
    plan: &IngestPlan<'_, '_>,
    now: i64,
) -> Result<(), StoreError> {
    for chunk in plan.journal.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO events (run_id, worker_id, task_id, seq, state, body, received_at) ",
        );
        qb.push_values(chunk, |mut b, p| {
            b.push_bind(p.event.run_id.clone())
                .push_bind(p.event.worker_id.clone())
                .push_bind(p.event.task_id.clone())
                .push_bind(p.event.seq)
                .push_bind(p.event.state.name())
                .push_bind(p.body.clone())
                .push_bind(now);
        });
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn max_task_id(tx: &mut Transaction<'_, Sqlite>) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM tasks")
        .fetch_one(&mut **tx)
        .await?)
}

async fn upsert_tasks(
    tx: &mut Transaction<'_, Sqlite>,
    plan: &IngestPlan<'_, '_>,
    ids: &[i64],
) -> Result<(), StoreError> {
    let mut rows = Vec::with_capacity(plan.tasks.len());
    for (task, id) in plan.tasks.iter().zip(ids) {
        let display = serde_json::to_string(&task.state.display)?;
        let escalation = serde_json::to_string(&task.state.escalation)?;
        rows.push((
            task,
            *id,
            serde_json::to_string(&task.state.labels)?,
            display,
            escalation,
        ));
    }
    for chunk in rows.chunks(CHUNK / 2) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO tasks (id, run_id, worker_id, task_id, state, state_seq, max_seq, terminal, display, \
             labels, version, first_seen_at, updated_at, last_heartbeat_at, deadline_at, stale_since, stale_marks, \
             escalation, escalate_at) ",
        );
        qb.push_values(chunk, |mut b, (t, id, labels, display, escalation)| {
            let (run, worker, task) = &t.key;
            b.push_bind(*id)
                .push_bind(run.clone())
                .push_bind(worker.clone())
                .push_bind(task.clone())
                .push_bind(t.state.state.clone())
                .push_bind(t.state.state_seq)
                .push_bind(t.state.max_seq)
                .push_bind(t.state.terminal)
                .push_bind(display.clone())
                .push_bind(labels.clone())
                .push_bind(t.state.version)
                .push_bind(t.state.first_seen_at)
                .push_bind(t.state.updated_at)
                .push_bind(t.state.last_heartbeat_at)
                .push_bind(t.state.deadline_at)
                .push_bind(t.state.stale_since)
                .push_bind(t.state.stale_marks)
                .push_bind(escalation.clone())
                .push_bind(t.state.escalate_at);
        });
        qb.push(
            " ON CONFLICT (id) DO UPDATE SET state = excluded.state, \
             state_seq = excluded.state_seq, max_seq = excluded.max_seq, terminal = excluded.terminal, \
             display = excluded.display, labels = excluded.labels, version = excluded.version, \
             updated_at = excluded.updated_at, last_heartbeat_at = excluded.last_heartbeat_at, \
             deadline_at = excluded.deadline_at, stale_since = excluded.stale_since, \
             stale_marks = excluded.stale_marks, escalation = excluded.escalation, \
             escalate_at = excluded.escalate_at",
        );
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn insert_task_channels(
    tx: &mut Transaction<'_, Sqlite>,
    plan: &IngestPlan<'_, '_>,
    ids: &[i64],
    now: i64,
) -> Result<(), StoreError> {
    for chunk in plan.channels.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO task_channels (task, channel, progress, dirty_since, post_key) ");
        qb.push_values(chunk, |mut b, row| {
            b.push_bind(ids[row.task])
                .push_bind(row.channel.name.clone())
                .push_bind(row.channel.progress)
                .push_bind(row.channel.progress.then_some(now))
                .push_bind(new_progress_key());
        });
        qb.push(" ON CONFLICT (task, channel) DO NOTHING");
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// The surfaced notifications of `tasks` are to be rendered again.
async fn mark_notifications_to_edit(
    tx: &mut Transaction<'_, Sqlite>,
    tasks: &[i64],
) -> Result<(), StoreError> {
    for task in tasks {
        sqlx::query(
            "UPDATE receipts SET needs_edit = 1 WHERE task = ? AND status = 'surfaced' AND message_id IS NOT NULL",
        )
        .bind(task)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn mark_progress_dirty(
    tx: &mut Transaction<'_, Sqlite>,
    task_ids: &[i64],
    now: i64,
) -> Result<(), StoreError> {
    for chunk in task_ids.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("UPDATE task_channels SET dirty_since = COALESCE(dirty_since, ");
        qb.push_bind(now);
        qb.push(") WHERE progress = 1 AND task IN ");
        super::push_list(&mut qb, chunk.iter().copied());
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn insert_receipts(
    tx: &mut Transaction<'_, Sqlite>,
    plan: &IngestPlan<'_, '_>,
    ids: &[i64],
    now: i64,
) -> Result<usize, StoreError> {
    let mut created = 0;
    for chunk in plan.receipts.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO receipts (id, task, channel, event_seq, status, created_at, next_attempt_at) ",
        );
        qb.push_values(chunk, |mut b, r| {
            b.push_bind(new_receipt_id())
                .push_bind(ids[r.task])
                .push_bind(r.channel.clone())
                .push_bind(r.event_seq)
                .push_bind("pending")
                .push_bind(now)
                .push_bind(now);
        });
        qb.push(" ON CONFLICT (task, channel, event_seq) DO NOTHING");
        let done = qb.build().execute(&mut **tx).await?;
        created += usize::try_from(done.rows_affected()).unwrap_or(usize::MAX);
    }
    Ok(created)
}
