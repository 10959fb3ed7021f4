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
    id: Option<i64>,
    state: TaskState,
    /// Channels routed at creation (new tasks only).
    new_channels: Vec<RoutedChannel>,
    display_changed: bool,
    dirty: bool,
    /// The journal id of the event that ended the task in this commit.
    terminal_event: Option<(i64, usize)>,
}

impl Store {
    /// Commit a group of requests in one transaction. `route` decides the
    /// channels of an event (for a new task, and for a terminal event).
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

        let mut tx = self.pool.begin().await?;

        // 2. Journal; the rows that conflict are duplicates of earlier requests.
        let journal_ids = insert_journal(&mut tx, &pending, now).await?;
        let mut fresh: Vec<(&Pending<'_>, i64)> = Vec::new();
        for p in &pending {
            let key = (
                p.event.run_id.clone(),
                p.event.worker_id.clone(),
                p.event.task_id.clone(),
                p.event.seq,
            );
            match journal_ids.get(&key) {
                Some(id) => {
                    result.reports[p.request].accepted += 1;
                    fresh.push((p, *id));
                }
                None => result.reports[p.request].duplicates += 1,
            }
        }
        if fresh.is_empty() {
            tx.commit().await?;
            return Ok(result);
        }

        // 3. Load the tasks concerned and apply the fresh events in order.
        let mut keys: Vec<TaskKey> = Vec::new();
        let mut key_set: HashSet<TaskKey> = HashSet::new();
        for (p, _) in &fresh {
            let k = task_key(p.event);
            if key_set.insert(k.clone()) {
                keys.push(k);
            }
        }
        let mut tasks: HashMap<TaskKey, LoadedTask> = load_tasks(&mut tx, &keys).await?;
        let mut terminal_routes: HashMap<TaskKey, Vec<RoutedChannel>> = HashMap::new();
        for (index, (p, journal_id)) in fresh.iter().enumerate() {
            let key = task_key(p.event);
            match tasks.get_mut(&key) {
                Some(task) => {
                    let applied = task.state.apply(p.event, &p.json, now);
                    task.display_changed |= applied.display_changed;
                    task.dirty = true;
                    if applied.became_terminal {
                        task.terminal_event = Some((*journal_id, index));
                        terminal_routes.insert(key.clone(), route(&routing_input(p.event, &task.state)));
                    }
                }
                None => {
                    let state = TaskState::new(p.event, &p.json, now);
                    let new_channels = route(&routing_input(p.event, &state));
                    if new_channels.is_empty() {
                        result.unrouted_tasks += 1;
                    }
                    let terminal_event = state.terminal.then_some((*journal_id, index));
                    if state.terminal {
                        terminal_routes.insert(key.clone(), route(&routing_input(p.event, &state)));
                    }
                    tasks.insert(
                        key.clone(),
                        LoadedTask {
                            id: None,
                            state,
                            new_channels,
                            display_changed: true,
                            dirty: true,
                            terminal_event,
                        },
                    );
                }
            }
        }

        // 4. Write task state back; learn the ids of new tasks.
        let ids = upsert_tasks(&mut tx, &tasks).await?;
        for (key, task) in tasks.iter_mut() {
            if task.id.is_none() {
                task.id = ids.get(key).copied();
            }
        }

        // 5. Routed channels of new tasks; progress dirty marks.
        insert_task_channels(&mut tx, &tasks, now, &mut result.touched_channels).await?;
        let changed: Vec<i64> = tasks
            .values()
            .filter(|t| t.display_changed && t.new_channels.is_empty())
            .filter_map(|t| t.id)
            .collect();
        mark_progress_dirty(&mut tx, &changed, now, &mut result.touched_channels).await?;

        // 6. Terminal receipts: the task's channels plus wherever the
        //    terminal event itself routes (so `state = "failed"` routes work).
        let mut receipts: Vec<(i64, String, i64, i64)> = Vec::new();
        for (key, task) in &tasks {
            let (Some(task_id), Some((event_id, _))) = (task.id, task.terminal_event) else {
                continue;
            };
            let mut channels: Vec<RoutedChannel> = if task.new_channels.is_empty() {
                task_channel_names(&mut tx, task_id).await?
            } else {
                task.new_channels.clone()
            };
            for extra in terminal_routes.remove(key).unwrap_or_default() {
                if !channels.iter().any(|c| c.name == extra.name) {
                    add_task_channel(&mut tx, task_id, &extra.name).await?;
                    channels.push(RoutedChannel {
                        name: extra.name,
                        progress: false,
                    });
                }
            }
            for ch in channels {
                receipts.push((task_id, ch.name, event_id, now));
            }
        }
        result.receipts_created = insert_receipts(&mut tx, &receipts, &mut result.touched_channels).await?;

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

async fn insert_journal(
    tx: &mut Transaction<'_, Sqlite>,
    pending: &[Pending<'_>],
    now: i64,
) -> Result<HashMap<(String, String, String, i64), i64>, StoreError> {
    let mut ids = HashMap::with_capacity(pending.len());
    for chunk in pending.chunks(CHUNK) {
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
        qb.push(" ON CONFLICT (run_id, worker_id, task_id, seq) DO NOTHING RETURNING id, run_id, worker_id, task_id, seq");
        for row in qb.build().fetch_all(&mut **tx).await? {
            ids.insert(
                (
                    row.try_get("run_id")?,
                    row.try_get("worker_id")?,
                    row.try_get("task_id")?,
                    row.try_get("seq")?,
                ),
                row.try_get("id")?,
            );
        }
    }
    Ok(ids)
}

async fn load_tasks(
    tx: &mut Transaction<'_, Sqlite>,
    keys: &[TaskKey],
) -> Result<HashMap<TaskKey, LoadedTask>, StoreError> {
    let mut out = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT id, run_id, worker_id, task_id, state, state_seq, max_seq, terminal, display, labels, \
             version, first_seen_at, updated_at, last_heartbeat_at FROM tasks \
             WHERE (run_id, worker_id, task_id) IN (VALUES ",
        );
        let mut sep = qb.separated(", ");
        for (run, worker, task) in chunk {
            sep.push("(")
                .push_bind_unseparated(run.clone())
                .push_unseparated(", ")
                .push_bind_unseparated(worker.clone())
                .push_unseparated(", ")
                .push_bind_unseparated(task.clone())
                .push_unseparated(")");
        }
        qb.push(")");
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
                    id: Some(row.try_get("id")?),
                    state,
                    new_channels: Vec::new(),
                    display_changed: false,
                    dirty: false,
                    terminal_event: None,
                },
            );
        }
    }
    Ok(out)
}

async fn upsert_tasks(
    tx: &mut Transaction<'_, Sqlite>,
    tasks: &HashMap<TaskKey, LoadedTask>,
) -> Result<HashMap<TaskKey, i64>, StoreError> {
    let dirty: Vec<(&TaskKey, &LoadedTask)> = tasks.iter().filter(|(_, t)| t.dirty).collect();
    let mut ids = HashMap::new();
    for chunk in dirty.chunks(CHUNK / 2) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO tasks (run_id, worker_id, task_id, state, state_seq, max_seq, terminal, display, labels, \
             version, first_seen_at, updated_at, last_heartbeat_at) ",
        );
        let mut err: Option<serde_json::Error> = None;
        qb.push_values(chunk, |mut b, ((run, worker, task), t)| {
            let labels = serde_json::to_string(&t.state.labels).unwrap_or_else(|e| {
                err = Some(e);
                String::new()
            });
            b.push_bind(run.clone())
                .push_bind(worker.clone())
                .push_bind(task.clone())
                .push_bind(t.state.state.clone())
                .push_bind(t.state.state_seq)
                .push_bind(t.state.max_seq)
                .push_bind(t.state.terminal)
                .push_bind(t.state.display.to_string())
                .push_bind(labels)
                .push_bind(t.state.version)
                .push_bind(t.state.first_seen_at)
                .push_bind(t.state.updated_at)
                .push_bind(t.state.last_heartbeat_at);
        });
        if let Some(e) = err {
            return Err(e.into());
        }
        qb.push(
            " ON CONFLICT (run_id, worker_id, task_id) DO UPDATE SET state = excluded.state, \
             state_seq = excluded.state_seq, max_seq = excluded.max_seq, terminal = excluded.terminal, \
             display = excluded.display, labels = excluded.labels, version = excluded.version, \
             updated_at = excluded.updated_at, last_heartbeat_at = excluded.last_heartbeat_at \
             RETURNING id, run_id, worker_id, task_id",
        );
        for row in qb.build().fetch_all(&mut **tx).await? {
            ids.insert(
                (
                    row.try_get("run_id")?,
                    row.try_get("worker_id")?,
                    row.try_get("task_id")?,
                ),
                row.try_get("id")?,
            );
        }
    }
    Ok(ids)
}

async fn insert_task_channels(
    tx: &mut Transaction<'_, Sqlite>,
    tasks: &HashMap<TaskKey, LoadedTask>,
    now: i64,
    touched: &mut BTreeSet<String>,
) -> Result<(), StoreError> {
    let rows: Vec<(i64, &RoutedChannel)> = tasks
        .values()
        .filter_map(|t| t.id.map(|id| (id, &t.new_channels)))
        .flat_map(|(id, chans)| chans.iter().map(move |c| (id, c)))
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
        for (_, ch) in chunk {
            if ch.progress {
                touched.insert(ch.name.clone());
            }
        }
    }
    Ok(())
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
        qb.push(") WHERE progress = 1 AND task IN (");
        let mut sep = qb.separated(", ");
        for id in chunk {
            sep.push_bind(*id);
        }
        qb.push(") RETURNING channel");
        for row in qb.build().fetch_all(&mut **tx).await? {
            touched.insert(row.try_get("channel")?);
        }
    }
    Ok(())
}

async fn task_channel_names(
    tx: &mut Transaction<'_, Sqlite>,
    task: i64,
) -> Result<Vec<RoutedChannel>, StoreError> {
    let rows = sqlx::query("SELECT channel, progress FROM task_channels WHERE task = ? ORDER BY rowid")
        .bind(task)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(RoutedChannel {
                name: r.try_get("channel")?,
                progress: r.try_get("progress")?,
            })
        })
        .collect()
}

async fn add_task_channel(
    tx: &mut Transaction<'_, Sqlite>,
    task: i64,
    channel: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO task_channels (task, channel, progress, post_key) VALUES (?, ?, 0, ?) ON CONFLICT DO NOTHING",
    )
    .bind(task)
    .bind(channel)
    .bind(super::receipts::new_progress_key())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn insert_receipts(
    tx: &mut Transaction<'_, Sqlite>,
    receipts: &[(i64, String, i64, i64)],
    touched: &mut BTreeSet<String>,
) -> Result<usize, StoreError> {
    let mut created = 0;
    for chunk in receipts.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO receipts (id, task, channel, event_id, status, created_at, next_attempt_at) ",
        );
        qb.push_values(chunk, |mut b, (task, channel, event_id, now)| {
            b.push_bind(super::receipts::new_receipt_id())
                .push_bind(*task)
                .push_bind(channel.clone())
                .push_bind(*event_id)
                .push_bind("pending")
                .push_bind(*now)
                .push_bind(*now);
        });
        qb.push(" ON CONFLICT (task, channel) DO NOTHING RETURNING channel");
        for row in qb.build().fetch_all(&mut **tx).await? {
            touched.insert(row.try_get("channel")?);
            created += 1;
        }
    }
    Ok(created)
}
