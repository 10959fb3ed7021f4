//! PostgreSQL: the ingest transaction. Several herald processes may ingest
//! at once, so the transaction first takes a transaction-scoped advisory
//! lock per task of the batch (in one order, so two batches never
//! deadlock): from then until the commit no other ingest reads or writes
//! those tasks, and the snapshot the plan is made from stays true. Other
//! tasks ingest in parallel. Rows go in as arrays (`unnest`), one
//! statement per table; task ids come from the database.

use std::collections::{HashMap, HashSet};

use sqlx::{Postgres, Row, Transaction};

use super::PgStore;
use crate::ingest::plan::{Batch, EventKey, IngestPlan, IngestResult, Route, Snapshot, StoredTask, TaskKey};
use crate::store::ingest::{IngestStore, stored_task_from};
use crate::store::{StoreError, new_progress_key, new_receipt_id, now_ms};

#[async_trait::async_trait]
impl IngestStore for PgStore {
    async fn ingest(&self, batch: &Batch<'_>, route: Route<'_>) -> Result<IngestResult, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        lock_tasks(&mut tx, batch.task_keys()).await?;
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

/// Columns of a batch of task keys, for `unnest`.
fn key_columns(keys: &[TaskKey]) -> (Vec<&str>, Vec<&str>, Vec<&str>) {
    let mut runs = Vec::with_capacity(keys.len());
    let mut workers = Vec::with_capacity(keys.len());
    let mut tasks = Vec::with_capacity(keys.len());
    for (r, w, t) in keys {
        runs.push(r.as_str());
        workers.push(w.as_str());
        tasks.push(t.as_str());
    }
    (runs, workers, tasks)
}

/// One advisory lock per task, taken in hash order. The sorted subquery
/// feeds the outer scan in its order, so every batch locks in the same
/// order. Two tasks whose hashes collide share a lock, which only
/// serialises them.
pub(super) async fn lock_tasks(
    tx: &mut Transaction<'_, Postgres>,
    keys: &[TaskKey],
) -> Result<(), StoreError> {
    let (runs, workers, tasks) = key_columns(keys);
    sqlx::query(
        "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT \
         hashtextextended(r || chr(31) || w || chr(31) || t, 7411) AS h \
         FROM unnest($1::text[], $2::text[], $3::text[]) AS k (r, w, t) ORDER BY h) AS sorted",
    )
    .bind(&runs)
    .bind(&workers)
    .bind(&tasks)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn known_events(
    tx: &mut Transaction<'_, Postgres>,
    batch: &Batch<'_>,
) -> Result<HashSet<EventKey>, StoreError> {
    let events = batch.events();
    let runs: Vec<&str> = events.iter().map(|p| p.event.run_id.as_str()).collect();
    let workers: Vec<&str> = events.iter().map(|p| p.event.worker_id.as_str()).collect();
    let tasks: Vec<&str> = events.iter().map(|p| p.event.task_id.as_str()).collect();
    let seqs: Vec<i64> = events.iter().map(|p| p.event.seq).collect();
    let rows = sqlx::query(
        "SELECT e.run_id, e.worker_id, e.task_id, e.seq \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS k (r, w, t, s) \
         JOIN events e ON e.run_id = k.r AND e.worker_id = k.w AND e.task_id = k.t AND e.seq = k.s",
    )
    .bind(&runs)
    .bind(&workers)
    .bind(&tasks)
    .bind(&seqs)
    .fetch_all(&mut **tx)
    .await?;
    let mut known = HashSet::with_capacity(rows.len());
    for row in rows {
        known.insert((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?));
    }
    Ok(known)
}

async fn load_tasks(
    tx: &mut Transaction<'_, Postgres>,
    keys: &[TaskKey],
) -> Result<HashMap<TaskKey, StoredTask>, StoreError> {
    let (runs, workers, tasks) = key_columns(keys);
    let rows = sqlx::query(
        "SELECT id, run_id, worker_id, task_id, state, state_seq, max_seq, terminal, display, labels, \
         version, first_seen_at, updated_at, last_heartbeat_at, deadline_at, stale_since, stale_marks, \
         escalation, escalate_at, COALESCE((SELECT json_agg(json_build_array(channel, progress) ORDER BY position) \
                   FROM task_channels WHERE task = tasks.id)::text, '[]') AS channels \
         FROM unnest($1::text[], $2::text[], $3::text[]) AS k (r, w, t) \
         JOIN tasks ON run_id = k.r AND worker_id = k.w AND task_id = k.t",
    )
    .bind(&runs)
    .bind(&workers)
    .bind(&tasks)
    .fetch_all(&mut **tx)
    .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let (key, task) = stored_task_from(&row)?;
        out.insert(key, task);
    }
    Ok(out)
}

/// Write a plan; returns how many receipts were created.
async fn apply(
    tx: &mut Transaction<'_, Postgres>,
    plan: &IngestPlan<'_, '_>,
    now: i64,
) -> Result<usize, StoreError> {
    insert_journal(tx, plan, now).await?;
    let ids = write_tasks(tx, plan).await?;
    insert_task_channels(tx, plan, &ids, now).await?;
    if !plan.dirty.is_empty() {
        sqlx::query(
            "UPDATE task_channels SET dirty_since = COALESCE(dirty_since, $1) WHERE progress AND task = ANY($2)",
        )
        .bind(now)
        .bind(&plan.dirty)
        .execute(&mut **tx)
        .await?;
    }
    if !plan.reedit.is_empty() {
        sqlx::query(
            "UPDATE receipts SET needs_edit = TRUE WHERE task = ANY($1) AND status = 'surfaced' \
             AND message_id IS NOT NULL",
        )
        .bind(&plan.reedit)
        .execute(&mut **tx)
        .await?;
    }
    insert_receipts(tx, plan, &ids, now).await
}

/// The journal rows. The snapshot under the task locks already left out
/// every known event; `ON CONFLICT DO NOTHING` is the database's own
/// guarantee on top, and a conflict there means the locks did not hold —
/// the transaction is abandoned rather than applied to a wrong state.
async fn insert_journal(
    tx: &mut Transaction<'_, Postgres>,
    plan: &IngestPlan<'_, '_>,
    now: i64,
) -> Result<(), StoreError> {
    let events = &plan.journal;
    let runs: Vec<&str> = events.iter().map(|p| p.event.run_id.as_str()).collect();
    let workers: Vec<&str> = events.iter().map(|p| p.event.worker_id.as_str()).collect();
    let tasks: Vec<&str> = events.iter().map(|p| p.event.task_id.as_str()).collect();
    let seqs: Vec<i64> = events.iter().map(|p| p.event.seq).collect();
    let states: Vec<&str> = events.iter().map(|p| p.event.state.name()).collect();
    let bodies: Vec<&str> = events.iter().map(|p| p.body.as_str()).collect();
    let done = sqlx::query(
        "INSERT INTO events (run_id, worker_id, task_id, seq, state, body, received_at) \
         SELECT r, w, t, s, st, b, $7 FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], \
         $5::text[], $6::text[]) WITH ORDINALITY AS k (r, w, t, s, st, b, n) ORDER BY n \
         ON CONFLICT (run_id, worker_id, task_id, seq) DO NOTHING",
    )
    .bind(&runs)
    .bind(&workers)
    .bind(&tasks)
    .bind(&seqs)
    .bind(&states)
    .bind(&bodies)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if usize::try_from(done.rows_affected()).ok() != Some(events.len()) {
        return Err(StoreError::Conflict(
            "an event of this batch was journaled concurrently despite the task lock",
        ));
    }
    Ok(())
}

/// Insert new tasks (ids from the database) and update existing ones;
/// returns every planned task's id, in plan order.
async fn write_tasks(
    tx: &mut Transaction<'_, Postgres>,
    plan: &IngestPlan<'_, '_>,
) -> Result<Vec<i64>, StoreError> {
    #[derive(Default)]
    struct Columns<'p> {
        ids: Vec<i64>,
        runs: Vec<&'p str>,
        workers: Vec<&'p str>,
        tasks: Vec<&'p str>,
        states: Vec<&'p str>,
        state_seqs: Vec<i64>,
        max_seqs: Vec<i64>,
        terminals: Vec<bool>,
        displays: Vec<String>,
        labels: Vec<String>,
        versions: Vec<i64>,
        first_seen: Vec<i64>,
        updated: Vec<i64>,
        heartbeats: Vec<Option<i64>>,
        deadlines: Vec<Option<i64>>,
        stale_since: Vec<Option<i64>>,
        stale_marks: Vec<i64>,
        escalations: Vec<String>,
        escalate_at: Vec<Option<i64>>,
    }
    let mut new = Columns::default();
    let mut old = Columns::default();
    for task in &plan.tasks {
        let c = if task.id.is_some() { &mut old } else { &mut new };
        let (run, worker, id) = &task.key;
        // Only existing tasks are updated by id; new ones get theirs.
        if let Some(id) = task.id {
            c.ids.push(id);
        }
        c.runs.push(run);
        c.workers.push(worker);
        c.tasks.push(id);
        c.states.push(&task.state.state);
        c.state_seqs.push(task.state.state_seq);
        c.max_seqs.push(task.state.max_seq);
        c.terminals.push(task.state.terminal);
        c.displays.push(serde_json::to_string(&task.state.display)?);
        c.labels.push(serde_json::to_string(&task.state.labels)?);
        c.versions.push(task.state.version);
        c.first_seen.push(task.state.first_seen_at);
        c.updated.push(task.state.updated_at);
        c.heartbeats.push(task.state.last_heartbeat_at);
        c.deadlines.push(task.state.deadline_at);
        c.stale_since.push(task.state.stale_since);
        c.stale_marks.push(task.state.stale_marks);
        c.escalations.push(serde_json::to_string(&task.state.escalation)?);
        c.escalate_at.push(task.state.escalate_at);
    }
    let mut assigned: HashMap<(String, String, String), i64> = HashMap::new();
    if !new.runs.is_empty() {
        let rows = sqlx::query(
            "INSERT INTO tasks (run_id, worker_id, task_id, state, state_seq, max_seq, terminal, display, labels, \
             version, first_seen_at, updated_at, last_heartbeat_at, deadline_at, stale_since, stale_marks, \
             escalation, escalate_at) \
             SELECT r, w, t, st, ss, ms, te, d, l, v, f, u, h, dl, sn, sm, es, ea FROM unnest($1::text[], \
             $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::boolean[], $8::text[], \
             $9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], \
             $15::bigint[], $16::bigint[], $17::text[], $18::bigint[]) WITH ORDINALITY \
             AS k (r, w, t, st, ss, ms, te, d, l, v, f, u, h, dl, sn, sm, es, ea, n) ORDER BY n \
             RETURNING id, run_id, worker_id, task_id",
        )
        .bind(&new.runs)
        .bind(&new.workers)
        .bind(&new.tasks)
        .bind(&new.states)
        .bind(&new.state_seqs)
        .bind(&new.max_seqs)
        .bind(&new.terminals)
        .bind(&new.displays)
        .bind(&new.labels)
        .bind(&new.versions)
        .bind(&new.first_seen)
        .bind(&new.updated)
        .bind(&new.heartbeats)
        .bind(&new.deadlines)
        .bind(&new.stale_since)
        .bind(&new.stale_marks)
        .bind(&new.escalations)
        .bind(&new.escalate_at)
        .fetch_all(&mut **tx)
        .await?;
        for row in rows {
            assigned.insert(
                (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?),
                row.try_get(0)?,
            );
        }
    }
    if !old.ids.is_empty() {
        sqlx::query(
            "UPDATE tasks SET state = k.st, state_seq = k.ss, max_seq = k.ms, terminal = k.te, display = k.d, \
             labels = k.l, version = k.v, updated_at = k.u, last_heartbeat_at = k.h, deadline_at = k.dl, \
             stale_since = k.sn, stale_marks = k.sm, escalation = k.es, escalate_at = k.ea \
             FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::boolean[], $6::text[], \
             $7::text[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], \
             $14::text[], $15::bigint[]) \
             AS k (id, st, ss, ms, te, d, l, v, u, h, dl, sn, sm, es, ea) \
             WHERE tasks.id = k.id",
        )
        .bind(&old.ids)
        .bind(&old.states)
        .bind(&old.state_seqs)
        .bind(&old.max_seqs)
        .bind(&old.terminals)
        .bind(&old.displays)
        .bind(&old.labels)
        .bind(&old.versions)
        .bind(&old.updated)
        .bind(&old.heartbeats)
        .bind(&old.deadlines)
        .bind(&old.stale_since)
        .bind(&old.stale_marks)
        .bind(&old.escalations)
        .bind(&old.escalate_at)
        .execute(&mut **tx)
        .await?;
    }
    plan.tasks
        .iter()
        .map(|t| match t.id {
            Some(id) => Ok(id),
            None => assigned
                .get(&t.key)
                .copied()
                .ok_or(StoreError::Conflict("a new task was not given an id")),
        })
        .collect()
}

async fn insert_task_channels(
    tx: &mut Transaction<'_, Postgres>,
    plan: &IngestPlan<'_, '_>,
    ids: &[i64],
    now: i64,
) -> Result<(), StoreError> {
    if plan.channels.is_empty() {
        return Ok(());
    }
    let tasks: Vec<i64> = plan.channels.iter().map(|c| ids[c.task]).collect();
    let names: Vec<&str> = plan.channels.iter().map(|c| c.channel.name.as_str()).collect();
    let progress: Vec<bool> = plan.channels.iter().map(|c| c.channel.progress).collect();
    let dirty: Vec<Option<i64>> = plan
        .channels
        .iter()
        .map(|c| c.channel.progress.then_some(now))
        .collect();
    let keys: Vec<String> = plan.channels.iter().map(|_| new_progress_key()).collect();
    sqlx::query(
        "INSERT INTO task_channels (task, channel, progress, dirty_since, post_key) \
         SELECT t, c, p, d, k FROM unnest($1::bigint[], $2::text[], $3::boolean[], $4::bigint[], $5::text[]) \
         WITH ORDINALITY AS v (t, c, p, d, k, n) ORDER BY n ON CONFLICT (task, channel) DO NOTHING",
    )
    .bind(&tasks)
    .bind(&names)
    .bind(&progress)
    .bind(&dirty)
    .bind(&keys)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_receipts(
    tx: &mut Transaction<'_, Postgres>,
    plan: &IngestPlan<'_, '_>,
    ids: &[i64],
    now: i64,
) -> Result<usize, StoreError> {
    if plan.receipts.is_empty() {
        return Ok(0);
    }
    let receipt_ids: Vec<String> = plan.receipts.iter().map(|_| new_receipt_id()).collect();
    let tasks: Vec<i64> = plan.receipts.iter().map(|r| ids[r.task]).collect();
    let channels: Vec<&str> = plan.receipts.iter().map(|r| r.channel.as_str()).collect();
    let seqs: Vec<i64> = plan.receipts.iter().map(|r| r.event_seq).collect();
    let done = sqlx::query(
        "INSERT INTO receipts (id, task, channel, event_seq, status, created_at, next_attempt_at) \
         SELECT i, t, c, s, 'pending', $5, $5 FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[]) \
         AS v (i, t, c, s) ON CONFLICT (task, channel, event_seq) DO NOTHING",
    )
    .bind(&receipt_ids)
    .bind(&tasks)
    .bind(&channels)
    .bind(&seqs)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
}
