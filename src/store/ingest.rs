//! The ingest transaction: journal rows, worker-task state, routing at a
//! task's first event, progress dirty marks and terminal receipts, all in one
//! commit (the transactional outbox). Several HTTP requests are committed
//! together (group commit); each still gets its own report.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::Value;
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use super::{Store, StoreError, now_ms};
use crate::protocol::FleetWorkerEvent;
use crate::routing::RoutingInput;
use crate::tasks::TaskState;

/// Rows per multi-row statement; keeps bind parameters well under SQLite's
/// limit (32766) while amortising the per-statement cost.
const CHUNK: usize = 500;

/// A channel an event routes to, and whether it keeps a progress message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedChannel {
    /// Channel name from the config.
    pub name: String,
    /// Whether the channel gets the live progress message.
    pub progress: bool,
}

/// Per-request counts for the `202` answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestReport {
    /// Events newly journaled.
    pub accepted: usize,
    /// Events already known (same run, worker, task and seq).
    pub duplicates: usize,
}

/// What one group commit did.
#[derive(Debug, Clone, Default)]
pub struct IngestResult {
    /// One report per request, in order.
    pub reports: Vec<RequestReport>,
    /// Channels with new work (progress or receipts): their actors are woken.
    pub touched_channels: BTreeSet<String>,
    /// Channels with new terminal receipts: woken as urgent, so they
    /// interrupt progress work.
    pub receipt_channels: BTreeSet<String>,
    /// Terminal receipts created.
    pub receipts_created: usize,
    /// New tasks that no route matched.
    pub unrouted_tasks: usize,
}

type TaskKey = (String, String, String);

struct Pending<'a> {
    request: usize,
    event: &'a FleetWorkerEvent,
    json: Value,
    body: String,
}

struct LoadedTask {
    id: i64,
    /// Created by this commit.
    is_new: bool,
    state: TaskState,
    /// Channels routed at creation (new tasks only).
    new_channels: Vec<RoutedChannel>,
    display_changed: bool,
    dirty: bool,
    /// The seq of the event that ended the task in this commit.
    terminal_seq: Option<i64>,
}

impl Store {
    /// Commit a group of requests in one transaction. `route` decides the
    /// channels of an event (for a new task, and for a terminal event).
    ///
    /// Statements are multi-row and return few or no rows: with sqlx's SQLite
    /// driver every returned row is a hop between threads, which dominated
    /// the cost of earlier versions.
    pub async fn ingest(
        &self,
        requests: &[Vec<FleetWorkerEvent>],
        route: &(dyn Fn(&RoutingInput<'_>) -> Vec<RoutedChannel> + Sync),
    ) -> Result<IngestResult, StoreError> {
        let now = now_ms();
        let mut result = IngestResult {
            reports: vec![RequestReport::default(); requests.len()],
            ..IngestResult::default()
        };

        // 1. Drop repeats within the group; serialise the rest.
        let mut seen: HashSet<(&str, &str, &str, i64)> = HashSet::new();
        let mut pending: Vec<Pending<'_>> = Vec::new();
        for (request, events) in requests.iter().enumerate() {
            for event in events {
                let key = (
                    event.run_id.as_str(),
                    event.worker_id.as_str(),
                    event.task_id.as_str(),
                    event.seq,
                );
                if !seen.insert(key) {
                    result.reports[request].duplicates += 1;
                    continue;
                }
                let json = serde_json::to_value(event)?;
                let body = json.to_string();
                pending.push(Pending {
                    request,
                    event,
                    json,
                    body,
                });
            }
        }

        // IMMEDIATE: take the write lock up front. A deferred transaction that
        // reads first cannot upgrade while a channel actor writes, and SQLite
        // answers that with SQLITE_BUSY instead of waiting.
        let _gate = self.write_gate.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;

        // 2. Events already journaled are duplicates; journal the rest.
        let known = known_events(&mut tx, &pending).await?;
        let mut fresh: Vec<&Pending<'_>> = Vec::with_capacity(pending.len());
        for p in &pending {
            // Usually nothing is known: skip building keys on that hot path.
            let is_known = !known.is_empty()
                && known.contains(&(
                    p.event.run_id.clone(),
                    p.event.worker_id.clone(),
                    p.event.task_id.clone(),
                    p.event.seq,
                ));
            if is_known {
                result.reports[p.request].duplicates += 1;
            } else {
                result.reports[p.request].accepted += 1;
                fresh.push(p);
            }
        }
        if fresh.is_empty() {
            tx.commit().await?;
            return Ok(result);
        }
        insert_journal(&mut tx, &fresh, now).await?;

        // 3. Load the tasks concerned and apply the fresh events in order.
        let mut keys: Vec<TaskKey> = Vec::new();
        let mut key_set: HashSet<TaskKey> = HashSet::new();
        for p in &fresh {
            let k = task_key(p.event);
            if key_set.insert(k.clone()) {
                keys.push(k);
            }
        }
        let mut tasks: HashMap<TaskKey, LoadedTask> = load_tasks(&mut tx, &keys).await?;
        let mut next_id: Option<i64> = None;
        let mut terminal_routes: HashMap<TaskKey, Vec<RoutedChannel>> = HashMap::new();
        for p in &fresh {
            let key = task_key(p.event);
            match tasks.get_mut(&key) {
                Some(task) => {
                    let applied = task.state.apply(p.event, &p.json, now);
                    task.display_changed |= applied.display_changed;
                    task.dirty = true;
                    if applied.became_terminal {
                        task.terminal_seq = Some(p.event.seq);
                        terminal_routes.insert(key.clone(), route(&routing_input(p.event, &task.state)));
                    }
                }
                None => {
                    let id = match next_id {
                        Some(id) => id,
                        None => max_task_id(&mut tx).await? + 1,
                    };
                    next_id = Some(id + 1);
                    let state = TaskState::new(p.event, &p.json, now);
                    let new_channels = route(&routing_input(p.event, &state));
                    if new_channels.is_empty() {
                        result.unrouted_tasks += 1;
                    }
                    let terminal_seq = state.terminal.then_some(p.event.seq);
                    if state.terminal {
                        terminal_routes.insert(key.clone(), new_channels.clone());
                    }
                    tasks.insert(
                        key.clone(),
                        LoadedTask {
                            id,
                            is_new: true,
                            state,
                            new_channels,
                            display_changed: true,
                            dirty: true,
                            terminal_seq,
                        },
                    );
                }
            }
        }

        // 4. Write task state back.
        upsert_tasks(&mut tx, &tasks).await?;

        // 5. Routed channels of new tasks; progress dirty marks of old ones.
        insert_task_channels(&mut tx, &tasks, now, &mut result.touched_channels).await?;
        let changed: Vec<i64> = tasks
            .values()
            .filter(|t| t.display_changed && !t.is_new)
            .map(|t| t.id)
            .collect();
        mark_progress_dirty(&mut tx, &changed, now, &mut result.touched_channels).await?;

        // 6. Terminal receipts: the task's channels plus wherever the
        //    terminal event itself routes (so `state = "failed"` routes work).
        let ended_old: Vec<i64> = tasks
            .values()
            .filter(|t| t.terminal_seq.is_some() && !t.is_new)
            .map(|t| t.id)
            .collect();
        let mut old_channels = channels_of(&mut tx, &ended_old).await?;
        let mut receipts: Vec<(i64, String, i64)> = Vec::new();
        let mut added: Vec<(i64, String)> = Vec::new();
        for (key, task) in &tasks {
            let Some(seq) = task.terminal_seq else { continue };
            let mut channels: Vec<String> = if task.is_new {
                task.new_channels.iter().map(|c| c.name.clone()).collect()
            } else {
                old_channels.remove(&task.id).unwrap_or_default()
            };
            for extra in terminal_routes.remove(key).unwrap_or_default() {
                if !channels.contains(&extra.name) {
                    added.push((task.id, extra.name.clone()));
                    channels.push(extra.name);
                }
            }
            receipts.extend(channels.into_iter().map(|ch| (task.id, ch, seq)));
        }
        add_task_channels(&mut tx, &added).await?;
        result.receipts_created =
            insert_receipts(&mut tx, &receipts, now, &mut result.receipt_channels).await?;

        tx.commit().await?;
        Ok(result)
    }
}

fn task_key(event: &FleetWorkerEvent) -> TaskKey {
    (
        event.run_id.clone(),
        event.worker_id.clone(),
        event.task_id.clone(),
    )
}

fn routing_input<'a>(event: &'a FleetWorkerEvent, state: &'a TaskState) -> RoutingInput<'a> {
    RoutingInput {
        run_id: &event.run_id,
        worker_id: &event.worker_id,
        task_id: &event.task_id,
        state: event.state.name(),
        labels: &state.labels,
    }
}

async fn known_events(
    tx: &mut Transaction<'_, Sqlite>,
    pending: &[Pending<'_>],
) -> Result<HashSet<(String, String, String, i64)>, StoreError> {
    let mut known = HashSet::new();
    for chunk in pending.chunks(CHUNK) {
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

async fn insert_journal(
    tx: &mut Transaction<'_, Sqlite>,
    fresh: &[&Pending<'_>],
    now: i64,
) -> Result<(), StoreError> {
    for chunk in fresh.chunks(CHUNK) {
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

async fn load_tasks(
    tx: &mut Transaction<'_, Sqlite>,
    keys: &[TaskKey],
) -> Result<HashMap<TaskKey, LoadedTask>, StoreError> {
    let mut out = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("WITH k (r, w, t) AS (");
        qb.push_values(chunk, |mut b, (run, worker, task)| {
            b.push_bind(run.clone())
                .push_bind(worker.clone())
                .push_bind(task.clone());
        });
        qb.push(
            ") SELECT id, run_id, worker_id, task_id, state, state_seq, max_seq, terminal, display, labels, \
             version, first_seen_at, updated_at, last_heartbeat_at FROM k JOIN tasks \
             ON run_id = k.r AND worker_id = k.w AND task_id = k.t",
        );
        for row in qb.build().fetch_all(&mut **tx).await? {
            let key: TaskKey = (
                row.try_get("run_id")?,
                row.try_get("worker_id")?,
                row.try_get("task_id")?,
            );
            let display: String = row.try_get("display")?;
            let labels: String = row.try_get("labels")?;
            let state = TaskState {
                state: row.try_get("state")?,
                state_seq: row.try_get("state_seq")?,
                max_seq: row.try_get("max_seq")?,
                terminal: row.try_get("terminal")?,
                display: serde_json::from_str(&display)?,
                labels: serde_json::from_str(&labels)?,
                version: row.try_get("version")?,
                first_seen_at: row.try_get("first_seen_at")?,
                updated_at: row.try_get("updated_at")?,
                last_heartbeat_at: row.try_get("last_heartbeat_at")?,
            };
            out.insert(
                key,
                LoadedTask {
                    id: row.try_get("id")?,
                    is_new: false,
                    state,
                    new_channels: Vec::new(),
                    display_changed: false,
                    dirty: false,
                    terminal_seq: None,
                },
            );
        }
    }
    Ok(out)
}

async fn upsert_tasks(
    tx: &mut Transaction<'_, Sqlite>,
    tasks: &HashMap<TaskKey, LoadedTask>,
) -> Result<(), StoreError> {
    let mut dirty: Vec<(&TaskKey, &LoadedTask, String)> = Vec::new();
    for (key, task) in tasks.iter().filter(|(_, t)| t.dirty) {
        dirty.push((key, task, serde_json::to_string(&task.state.labels)?));
    }
    for chunk in dirty.chunks(CHUNK / 2) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO tasks (id, run_id, worker_id, task_id, state, state_seq, max_seq, terminal, display, \
             labels, version, first_seen_at, updated_at, last_heartbeat_at) ",
        );
        qb.push_values(chunk, |mut b, ((run, worker, task), t, labels)| {
            b.push_bind(t.id)
                .push_bind(run.clone())
                .push_bind(worker.clone())
                .push_bind(task.clone())
                .push_bind(t.state.state.clone())
                .push_bind(t.state.state_seq)
                .push_bind(t.state.max_seq)
                .push_bind(t.state.terminal)
                .push_bind(t.state.display.to_string())
                .push_bind(labels.clone())
                .push_bind(t.state.version)
                .push_bind(t.state.first_seen_at)
                .push_bind(t.state.updated_at)
                .push_bind(t.state.last_heartbeat_at);
        });
        qb.push(
            " ON CONFLICT (id) DO UPDATE SET state = excluded.state, \
             state_seq = excluded.state_seq, max_seq = excluded.max_seq, terminal = excluded.terminal, \
             display = excluded.display, labels = excluded.labels, version = excluded.version, \
             updated_at = excluded.updated_at, last_heartbeat_at = excluded.last_heartbeat_at",
        );
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn insert_task_channels(
    tx: &mut Transaction<'_, Sqlite>,
    tasks: &HashMap<TaskKey, LoadedTask>,
    now: i64,
    touched: &mut BTreeSet<String>,
) -> Result<(), StoreError> {
    let rows: Vec<(i64, &RoutedChannel)> = tasks
        .values()
        .filter(|t| t.is_new)
        .flat_map(|t| t.new_channels.iter().map(move |c| (t.id, c)))
        .collect();
    for chunk in rows.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO task_channels (task, channel, progress, dirty_since, post_key) ");
        qb.push_values(chunk, |mut b, (id, ch)| {
            b.push_bind(*id)
                .push_bind(ch.name.clone())
                .push_bind(ch.progress)
                .push_bind(ch.progress.then_some(now))
                .push_bind(super::receipts::new_progress_key());
        });
        qb.push(" ON CONFLICT (task, channel) DO NOTHING");
        qb.build().execute(&mut **tx).await?;
        touched.extend(
            chunk
                .iter()
                .filter(|(_, ch)| ch.progress)
                .map(|(_, ch)| ch.name.clone()),
        );
    }
    Ok(())
}

fn push_id_list(qb: &mut QueryBuilder<Sqlite>, ids: &[i64]) {
    qb.push("(");
    let mut sep = qb.separated(", ");
    for id in ids {
        sep.push_bind(*id);
    }
    qb.push(")");
}

async fn mark_progress_dirty(
    tx: &mut Transaction<'_, Sqlite>,
    task_ids: &[i64],
    now: i64,
    touched: &mut BTreeSet<String>,
) -> Result<(), StoreError> {
    for chunk in task_ids.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("UPDATE task_channels SET dirty_since = COALESCE(dirty_since, ");
        qb.push_bind(now);
        qb.push(") WHERE progress = 1 AND task IN ");
        push_id_list(&mut qb, chunk);
        qb.build().execute(&mut **tx).await?;

        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT DISTINCT channel FROM task_channels WHERE progress = 1 AND task IN ");
        push_id_list(&mut qb, chunk);
        for row in qb.build().fetch_all(&mut **tx).await? {
            touched.insert(row.try_get(0)?);
        }
    }
    Ok(())
}

async fn channels_of(
    tx: &mut Transaction<'_, Sqlite>,
    task_ids: &[i64],
) -> Result<HashMap<i64, Vec<String>>, StoreError> {
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    for chunk in task_ids.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT task, channel FROM task_channels WHERE task IN ");
        push_id_list(&mut qb, chunk);
        qb.push(" ORDER BY task, rowid");
        for row in qb.build().fetch_all(&mut **tx).await? {
            out.entry(row.try_get(0)?).or_default().push(row.try_get(1)?);
        }
    }
    Ok(out)
}

async fn add_task_channels(
    tx: &mut Transaction<'_, Sqlite>,
    rows: &[(i64, String)],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO task_channels (task, channel, progress, post_key) ");
        qb.push_values(chunk, |mut b, (task, channel)| {
            b.push_bind(*task)
                .push_bind(channel.clone())
                .push_bind(false)
                .push_bind(super::receipts::new_progress_key());
        });
        qb.push(" ON CONFLICT (task, channel) DO NOTHING");
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn insert_receipts(
    tx: &mut Transaction<'_, Sqlite>,
    receipts: &[(i64, String, i64)],
    now: i64,
    touched: &mut BTreeSet<String>,
) -> Result<usize, StoreError> {
    let mut created = 0;
    for chunk in receipts.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO receipts (id, task, channel, event_seq, status, created_at, next_attempt_at) ",
        );
        qb.push_values(chunk, |mut b, (task, channel, seq)| {
            b.push_bind(super::receipts::new_receipt_id())
                .push_bind(*task)
                .push_bind(channel.clone())
                .push_bind(*seq)
                .push_bind("pending")
                .push_bind(now)
                .push_bind(now);
        });
        qb.push(" ON CONFLICT (task, channel) DO NOTHING");
        let done = qb.build().execute(&mut **tx).await?;
        created += usize::try_from(done.rows_affected()).unwrap_or(usize::MAX);
        touched.extend(chunk.iter().map(|(_, ch, _)| ch.clone()));
    }
    Ok(created)
}
