//! What a group of ingest requests changes, decided without a database.
//!
//! Ingest is *plan, then apply* (SPEC §10): a store backend reads a
//! [`Snapshot`] of the rows a [`Batch`] concerns (inside its write
//! transaction), [`Batch::plan`] decides everything — duplicates, the task
//! state machine, routing at a task's first event and at its end, progress
//! dirty marks, terminal receipts — and the backend writes the resulting
//! [`IngestPlan`] as it is. The decisions live here, once, for every
//! backend; the backends only read and write rows.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::protocol::FleetWorkerEvent;
use crate::routing::RoutingInput;
use crate::tasks::TaskState;

/// `(run_id, worker_id, task_id)`: one worker task.
pub type TaskKey = (String, String, String);

/// `(run_id, worker_id, task_id, seq)`: one event.
pub type EventKey = (String, String, String, i64);

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

/// What one group commit did, for the writer's callers and metrics.
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

/// What the config says about where events go, as the planner asks it.
pub trait Routing: Sync {
    /// The channels of an event (a new task's, and a notifying event's).
    fn route(&self, input: &RoutingInput<'_>) -> Vec<RoutedChannel>;

    /// Whether `channel` gets a notification of an event in `state` (a
    /// channel may skip `resolved` alerts: `notify_resolved = false`).
    fn notifies(&self, _channel: &str, _state: &str) -> bool {
        true
    }
}

/// Any route function routes, and notifies every channel.
impl<F> Routing for F
where
    F: Fn(&RoutingInput<'_>) -> Vec<RoutedChannel> + Sync,
{
    fn route(&self, input: &RoutingInput<'_>) -> Vec<RoutedChannel> {
        self(input)
    }
}

/// How a group commit routes.
pub type Route<'r> = &'r dyn Routing;

/// One event not repeated within its group, with the journal body it gets.
#[derive(Debug)]
pub struct PendingEvent<'e> {
    /// Which request of the group it came in.
    pub request: usize,
    /// The event as parsed.
    pub event: &'e FleetWorkerEvent,
    /// Its normalised JSON text: the journal row's body.
    pub body: String,
}

/// A group of requests with repeats inside the group already counted: what
/// a backend needs to read its [`Snapshot`].
#[derive(Debug)]
pub struct Batch<'e> {
    reports: Vec<RequestReport>,
    pending: Vec<PendingEvent<'e>>,
    task_keys: Vec<TaskKey>,
}

/// A stored task as the planner needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTask {
    /// Its row id.
    pub id: i64,
    /// Its state before this group.
    pub state: TaskState,
    /// The channels it was routed to, in the order they were added.
    pub channels: Vec<RoutedChannel>,
}

/// What the store holds of a batch's events and tasks, read in the same
/// transaction the plan is applied in.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Events of the batch already in the journal.
    pub known: HashSet<EventKey>,
    /// Tasks of the batch that already exist.
    pub tasks: HashMap<TaskKey, StoredTask>,
}

/// A task the plan writes: `id` is `None` for a task this group creates
/// (the backend assigns it, in plan order).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTask {
    /// Which task.
    pub key: TaskKey,
    /// Its row id, when it already exists.
    pub id: Option<i64>,
    /// Its state after this group.
    pub state: TaskState,
}

/// A `task_channels` row to add (unless it exists): `task` indexes
/// [`IngestPlan::tasks`].
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedChannel {
    /// Index into [`IngestPlan::tasks`].
    pub task: usize,
    /// The channel, and whether it keeps a progress message (which is then
    /// due at once).
    pub channel: RoutedChannel,
}

/// A notification receipt to create (unless one exists for the task,
/// channel and event): `task` indexes [`IngestPlan::tasks`].
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedReceipt {
    /// Index into [`IngestPlan::tasks`].
    pub task: usize,
    /// The channel to notify.
    pub channel: String,
    /// The seq of the event it notifies (terminal, or herald's stale mark).
    pub event_seq: i64,
}

/// Everything one group commit writes, in the order a backend applies it.
#[derive(Debug)]
pub struct IngestPlan<'b, 'e> {
    /// One report per request, in order.
    pub reports: Vec<RequestReport>,
    /// Events to journal.
    pub journal: Vec<&'b PendingEvent<'e>>,
    /// Tasks to insert (new) or update (existing), new ones in creation order.
    pub tasks: Vec<PlannedTask>,
    /// Routed channels to add: a new task's routes, and wherever a terminal
    /// event routes beyond the task's channels.
    pub channels: Vec<PlannedChannel>,
    /// Existing tasks whose display changed: their progress messages are due.
    pub dirty: Vec<i64>,
    /// Existing tasks whose surfaced notifications are to be rendered
    /// again (acknowledged).
    pub reedit: Vec<i64>,
    /// Terminal receipts to create.
    pub receipts: Vec<PlannedReceipt>,
    /// Channels with new work, woken after the commit.
    pub touched_channels: BTreeSet<String>,
    /// Channels with new receipts, woken as urgent.
    pub receipt_channels: BTreeSet<String>,
    /// New tasks no route matched.
    pub unrouted_tasks: usize,
}

impl IngestPlan<'_, '_> {
    /// The result to report once the plan is committed, given how many of
    /// its receipts the backend actually created.
    pub fn result(self, receipts_created: usize) -> IngestResult {
        IngestResult {
            reports: self.reports,
            touched_channels: self.touched_channels,
            receipt_channels: self.receipt_channels,
            receipts_created,
            unrouted_tasks: self.unrouted_tasks,
        }
    }

    /// True when nothing is to be written (every event was a duplicate).
    pub fn is_empty(&self) -> bool {
        self.journal.is_empty()
    }
}

fn is_firing(event: &FleetWorkerEvent) -> bool {
    matches!(event.state, crate::protocol::WorkerState::Firing { .. })
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

/// A task while the group is applied to it.
struct Working {
    key: TaskKey,
    id: Option<i64>,
    state: TaskState,
    channels: Vec<RoutedChannel>,
    display_changed: bool,
    /// Someone acknowledged the task: its notifications are edited.
    acknowledged: bool,
    terminal_seq: Option<i64>,
    /// Where the terminal event routes (checked against `channels`).
    terminal_routes: Vec<RoutedChannel>,
    /// Attention events that notify (herald's stale marks), with where
    /// each routes.
    attention: Vec<(i64, Vec<RoutedChannel>)>,
    /// Events that notify one channel whatever the routes say: herald's
    /// escalation to it, and what acknowledges or resolves an escalation
    /// open there.
    direct: Vec<(i64, String)>,
    /// An alert began firing (its seq): channels with a live message show
    /// it there; those without one (PagerDuty, a Slack webhook) are notified.
    firing: Option<i64>,
}

impl<'e> Batch<'e> {
    /// Count repeats within the group and serialise the rest.
    pub fn new(requests: &'e [Vec<FleetWorkerEvent>]) -> Result<Batch<'e>, serde_json::Error> {
        let mut reports = vec![RequestReport::default(); requests.len()];
        let mut seen: HashSet<(&str, &str, &str, i64)> = HashSet::new();
        let mut keys_seen: HashSet<(&str, &str, &str)> = HashSet::new();
        let mut pending = Vec::new();
        let mut task_keys = Vec::new();
        for (request, events) in requests.iter().enumerate() {
            for event in events {
                let (r, w, t) = (
                    event.run_id.as_str(),
                    event.worker_id.as_str(),
                    event.task_id.as_str(),
                );
                if !seen.insert((r, w, t, event.seq)) {
                    reports[request].duplicates += 1;
                    continue;
                }
                if keys_seen.insert((r, w, t)) {
                    task_keys.push(task_key(event));
                }
                let body = serde_json::to_string(event)?;
                pending.push(PendingEvent { request, event, body });
            }
        }
        Ok(Batch {
            reports,
            pending,
            task_keys,
        })
    }

    /// The events to look up in the journal.
    pub fn events(&self) -> &[PendingEvent<'e>] {
        &self.pending
    }

    /// The tasks to load, each once, in first-seen order.
    pub fn task_keys(&self) -> &[TaskKey] {
        &self.task_keys
    }

    /// Decide what the group writes, given what the store holds.
    pub fn plan<'b>(&'b self, snapshot: Snapshot, route: Route<'_>, now: i64) -> IngestPlan<'b, 'e> {
        let Snapshot { known, mut tasks } = snapshot;
        let mut plan = IngestPlan {
            reports: self.reports.clone(),
            journal: Vec::with_capacity(self.pending.len()),
            tasks: Vec::new(),
            channels: Vec::new(),
            dirty: Vec::new(),
            reedit: Vec::new(),
            receipts: Vec::new(),
            touched_channels: BTreeSet::new(),
            receipt_channels: BTreeSet::new(),
            unrouted_tasks: 0,
        };

        // Events already journaled are duplicates; the rest are applied in
        // arrival order to their task.
        let mut working: Vec<Working> = Vec::new();
        let mut index: HashMap<TaskKey, usize> = HashMap::new();
        for p in &self.pending {
            let is_known = !known.is_empty()
                && known.contains(&(
                    p.event.run_id.clone(),
                    p.event.worker_id.clone(),
                    p.event.task_id.clone(),
                    p.event.seq,
                ));
            if is_known {
                plan.reports[p.request].duplicates += 1;
                continue;
            }
            let key = task_key(p.event);
            // Herald's own events are about tasks that exist; one that no
            // longer applies is not kept (see `TaskState::apply`).
            if p.event.is_from_herald() && !index.contains_key(&key) && !tasks.contains_key(&key) {
                plan.reports[p.request].duplicates += 1;
                continue;
            }
            if !p.event.is_from_herald() {
                plan.reports[p.request].accepted += 1;
                plan.journal.push(p);
            }

            let slot = match index.get(&key) {
                Some(&i) => i,
                None => {
                    let i = working.len();
                    index.insert(key.clone(), i);
                    match tasks.remove(&key) {
                        Some(stored) => working.push(Working {
                            key,
                            id: Some(stored.id),
                            state: stored.state,
                            channels: stored.channels,
                            display_changed: false,
                            acknowledged: false,
                            terminal_seq: None,
                            terminal_routes: Vec::new(),
                            attention: Vec::new(),
                            direct: Vec::new(),
                            firing: None,
                        }),
                        None => {
                            let state = TaskState::new(p.event, now);
                            let channels = route.route(&routing_input(p.event, &state));
                            if channels.is_empty() {
                                plan.unrouted_tasks += 1;
                            }
                            let terminal = state.terminal;
                            working.push(Working {
                                key,
                                id: None,
                                state,
                                terminal_routes: if terminal { channels.clone() } else { Vec::new() },
                                channels,
                                display_changed: true,
                                acknowledged: false,
                                terminal_seq: terminal.then_some(p.event.seq),
                                attention: Vec::new(),
                                direct: Vec::new(),
                                firing: is_firing(p.event).then_some(p.event.seq),
                            });
                        }
                    }
                    // The first event of a new task is its creation: nothing
                    // more to apply.
                    if working[i].id.is_none() {
                        continue;
                    }
                    i
                }
            };
            let task = &mut working[slot];
            let applied = task.state.apply(p.event, now);
            if p.event.is_from_herald() {
                if applied.moot {
                    plan.reports[p.request].duplicates += 1;
                    continue;
                }
                plan.reports[p.request].accepted += 1;
                plan.journal.push(p);
            }
            task.display_changed |= applied.display_changed;
            task.acknowledged |= applied.acknowledged;
            if applied.became_terminal {
                task.terminal_seq = Some(p.event.seq);
                task.terminal_routes = route.route(&routing_input(p.event, &task.state));
            }
            if applied.became_stale {
                task.attention
                    .push((p.event.seq, route.route(&routing_input(p.event, &task.state))));
            }
            if is_firing(p.event) && applied.display_changed {
                task.firing = Some(p.event.seq);
            }
            let seq = p.event.seq;
            task.direct.extend(applied.escalated_to.map(|c| (seq, c)));
            task.direct.extend(applied.resolves.into_iter().map(|c| (seq, c)));
            task.direct
                .extend(applied.acknowledged_open.into_iter().map(|c| (seq, c)));
        }

        // New tasks first (creation order), then updates: every task with
        // an accepted event changed (max_seq, updated_at at least).
        working.sort_by_key(|t| t.id.is_some());
        for (i, task) in working.into_iter().enumerate() {
            // This task's receipts start here: a repeat is looked for among
            // them only, not among every receipt of the group.
            let first_receipt = plan.receipts.len();
            match task.id {
                None => {
                    for channel in &task.channels {
                        if channel.progress {
                            plan.touched_channels.insert(channel.name.clone());
                        }
                        plan.channels.push(PlannedChannel {
                            task: i,
                            channel: channel.clone(),
                        });
                    }
                }
                Some(id) if task.display_changed => {
                    let progress = task.channels.iter().filter(|c| c.progress);
                    plan.touched_channels.extend(progress.map(|c| c.name.clone()));
                    plan.dirty.push(id);
                    if task.acknowledged {
                        plan.touched_channels
                            .extend(task.channels.iter().map(|c| c.name.clone()));
                        plan.reedit.push(id);
                    }
                }
                Some(_) => {}
            }
            // A notification per event that notifies: to the task's
            // channels, plus wherever the event itself routes (so `state =
            // "failed"` or `state = "stale"` routes work).
            // (seq, state notified, where the event itself routes)
            let mut notifying: Vec<(i64, &str, Vec<RoutedChannel>)> = task
                .attention
                .iter()
                .map(|(seq, routes)| (*seq, "stale", routes.clone()))
                .collect();
            if let Some(seq) = task.terminal_seq {
                notifying.push((seq, task.state.state.as_str(), task.terminal_routes.clone()));
            }
            let mut names: Vec<String> = task.channels.iter().map(|c| c.name.clone()).collect();
            for (seq, state, routes) in notifying {
                for extra in &routes {
                    if !names.contains(&extra.name) {
                        names.push(extra.name.clone());
                        plan.channels.push(PlannedChannel {
                            task: i,
                            channel: RoutedChannel {
                                name: extra.name.clone(),
                                progress: false,
                            },
                        });
                    }
                }
                for name in &names {
                    let routed_here = task.channels.iter().any(|c| &c.name == name)
                        || routes.iter().any(|r| &r.name == name);
                    if !routed_here || !route.notifies(name, state) {
                        continue;
                    }
                    plan.receipt_channels.insert(name.clone());
                    plan.receipts.push(PlannedReceipt {
                        task: i,
                        channel: name.clone(),
                        event_seq: seq,
                    });
                }
            }
            if let Some(seq) = task.firing {
                for channel in task.channels.iter().filter(|c| !c.progress) {
                    let receipt = PlannedReceipt {
                        task: i,
                        channel: channel.name.clone(),
                        event_seq: seq,
                    };
                    if route.notifies(&channel.name, "firing")
                        && !plan.receipts[first_receipt..].contains(&receipt)
                    {
                        plan.receipt_channels.insert(receipt.channel.clone());
                        plan.receipts.push(receipt);
                    }
                }
            }
            // Not a routed channel of the task: it hears only what its
            // escalation sends (a later stale mark pages by the rules, not
            // because an earlier one did).
            for (seq, channel) in task.direct {
                let receipt = PlannedReceipt {
                    task: i,
                    channel,
                    event_seq: seq,
                };
                if !plan.receipts[first_receipt..].contains(&receipt) {
                    plan.receipt_channels.insert(receipt.channel.clone());
                    plan.receipts.push(receipt);
                }
            }
            plan.tasks.push(PlannedTask {
                key: task.key,
                id: task.id,
                state: task.state,
            });
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_event;
    use serde_json::json;

    fn ev(task: &str, seq: i64, state: &str) -> FleetWorkerEvent {
        let mut body = json!({
            "seq": seq, "run_id": "r", "worker_id": "w", "task_id": task,
            "timestamp": "2026-12-01T00:00:00Z", "state": state,
        });
        if state == "failed" {
            body["reason"] = json!("boom");
        }
        parse_event(body).expect("valid event")
    }

    fn to(names: &[(&str, bool)]) -> Vec<RoutedChannel> {
        names
            .iter()
            .map(|(n, p)| RoutedChannel {
                name: (*n).to_owned(),
                progress: *p,
            })
            .collect()
    }

    /// Every task goes to `main` (with progress); failures also to `oncall`.
    fn route(input: &RoutingInput<'_>) -> Vec<RoutedChannel> {
        if input.state == "failed" {
            to(&[("main", true), ("oncall", false)])
        } else {
            to(&[("main", true)])
        }
    }

    fn stored(id: i64, event: &FleetWorkerEvent, channels: Vec<RoutedChannel>) -> StoredTask {
        StoredTask {
            id,
            state: TaskState::new(event, 1),
            channels,
        }
    }

    #[test]
    fn a_new_task_is_routed_once_and_its_progress_channel_woken() {
        let requests = vec![vec![ev("t", 1, "queued"), ev("t", 2, "running")]];
        let batch = Batch::new(&requests).unwrap();
        assert_eq!(batch.task_keys().len(), 1);
        let plan = batch.plan(Snapshot::default(), &route, 10);
        assert_eq!(
            plan.reports,
            vec![RequestReport {
                accepted: 2,
                duplicates: 0
            }]
        );
        assert_eq!(plan.journal.len(), 2);
        assert_eq!(plan.tasks.len(), 1);
        assert_eq!(plan.tasks[0].id, None);
        assert_eq!(plan.tasks[0].state.state, "running");
        assert_eq!(
            plan.channels,
            vec![PlannedChannel {
                task: 0,
                channel: to(&[("main", true)])[0].clone()
            }]
        );
        assert!(plan.dirty.is_empty(), "a new task's channel rows are created due");
        assert!(plan.receipts.is_empty());
        assert_eq!(plan.touched_channels, BTreeSet::from(["main".to_owned()]));
    }

    #[test]
    fn repeats_within_the_group_and_in_the_journal_are_duplicates() {
        let requests = vec![
            vec![ev("t", 1, "queued"), ev("t", 2, "running")],
            vec![ev("t", 2, "running"), ev("t", 3, "running")],
        ];
        let batch = Batch::new(&requests).unwrap();
        assert_eq!(batch.events().len(), 3);
        let first = ev("t", 1, "queued");
        let snapshot = Snapshot {
            known: HashSet::from([("r".into(), "w".into(), "t".into(), 1)]),
            tasks: HashMap::from([(task_key(&first), stored(7, &first, to(&[("main", true)])))]),
        };
        let plan = batch.plan(snapshot, &route, 10);
        assert_eq!(
            plan.reports,
            vec![
                RequestReport {
                    accepted: 1,
                    duplicates: 1
                },
                RequestReport {
                    accepted: 1,
                    duplicates: 1
                }
            ]
        );
        assert_eq!(plan.tasks[0].id, Some(7));
        assert_eq!(plan.tasks[0].state.state_seq, 3);
        assert_eq!(plan.dirty, vec![7]);
        assert!(plan.channels.is_empty(), "an existing task keeps its routes");
    }

    #[test]
    fn a_terminal_event_creates_receipts_for_the_task_channels_and_its_own_routes() {
        let first = ev("t", 1, "running");
        let requests = vec![vec![ev("t", 2, "failed")]];
        let batch = Batch::new(&requests).unwrap();
        let snapshot = Snapshot {
            known: HashSet::new(),
            tasks: HashMap::from([(
                task_key(&first),
                stored(3, &first, to(&[("audit", false), ("main", true)])),
            )]),
        };
        let plan = batch.plan(snapshot, &route, 10);
        let receipts: Vec<&str> = plan.receipts.iter().map(|r| r.channel.as_str()).collect();
        assert_eq!(receipts, vec!["audit", "main", "oncall"]);
        assert!(plan.receipts.iter().all(|r| r.event_seq == 2 && r.task == 0));
        assert_eq!(
            plan.channels,
            vec![PlannedChannel {
                task: 0,
                channel: to(&[("oncall", false)])[0].clone()
            }],
            "the terminal route is added to the task's channels, without progress"
        );
        assert_eq!(plan.receipt_channels.len(), 3);
    }

    #[test]
    fn a_task_that_ends_at_its_first_event_is_notified_once_per_channel() {
        let requests = vec![vec![ev("a", 1, "failed"), ev("b", 1, "completed")]];
        let batch = Batch::new(&requests).unwrap();
        let plan = batch.plan(Snapshot::default(), &route, 10);
        let receipts: Vec<(usize, &str)> = plan
            .receipts
            .iter()
            .map(|r| (r.task, r.channel.as_str()))
            .collect();
        assert_eq!(receipts, vec![(0, "main"), (0, "oncall"), (1, "main")]);
    }

    #[test]
    fn a_late_event_after_the_end_changes_no_display_and_notifies_nobody() {
        let end = ev("t", 5, "completed");
        let requests = vec![vec![ev("t", 4, "running")]];
        let batch = Batch::new(&requests).unwrap();
        let snapshot = Snapshot {
            known: HashSet::new(),
            tasks: HashMap::from([(task_key(&end), stored(1, &end, to(&[("main", true)])))]),
        };
        let plan = batch.plan(snapshot, &route, 10);
        assert_eq!(plan.journal.len(), 1, "journaled all the same");
        assert!(plan.dirty.is_empty() && plan.receipts.is_empty() && plan.touched_channels.is_empty());
        assert_eq!(plan.tasks[0].state.state, "completed");
    }

    #[test]
    fn an_unrouted_new_task_is_counted() {
        let requests = vec![vec![ev("t", 1, "queued")]];
        let batch = Batch::new(&requests).unwrap();
        let plan = batch.plan(Snapshot::default(), &|_: &RoutingInput<'_>| Vec::new(), 10);
        assert_eq!(plan.unrouted_tasks, 1);
        assert!(plan.channels.is_empty());
    }

    fn stale_mark(silent_since: i64) -> FleetWorkerEvent {
        crate::protocol::parse_stored_event(json!({
            "seq": -2, "run_id": "r", "worker_id": "w", "task_id": "t",
            "timestamp": "2026-12-01T00:00:00Z", "state": "stale",
            "extra": {"source": "herald", "silent_since": silent_since},
        }))
        .expect("a stale mark")
    }

    #[test]
    fn an_acknowledgement_edits_the_tasks_messages_and_notifies_nobody() {
        let end = ev("t", 2, "failed");
        let ack = crate::protocol::parse_stored_event(json!({
            "seq": crate::protocol::ACKNOWLEDGED_SEQ, "run_id": "r", "worker_id": "w", "task_id": "t",
            "timestamp": "2026-12-01T00:00:00Z", "state": "acknowledged", "by": "ana (slack)",
            "extra": {"source": "herald"},
        }))
        .expect("an acknowledgement");
        let snapshot = || Snapshot {
            known: HashSet::new(),
            tasks: HashMap::from([(
                task_key(&end),
                stored(4, &end, to(&[("audit", false), ("main", true)])),
            )]),
        };
        let requests = vec![vec![ack.clone()]];
        let batch = Batch::new(&requests).unwrap();
        let plan = batch.plan(snapshot(), &route, 10);
        assert_eq!(plan.journal.len(), 1);
        assert_eq!((plan.dirty.clone(), plan.reedit.clone()), (vec![4], vec![4]));
        assert!(plan.receipts.is_empty(), "an acknowledgement notifies no one");
        assert_eq!(
            plan.touched_channels
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            vec!["audit", "main"],
            "every channel of the task may hold a notification to edit"
        );
        // Acknowledged already (the stored task says so): moot, not kept.
        let mut acked = snapshot();
        for task in acked.tasks.values_mut() {
            task.state.escalation.acknowledged_by = Some("bob (discord)".into());
        }
        let batch = Batch::new(&requests).unwrap();
        let plan = batch.plan(acked, &route, 10);
        assert!(plan.journal.is_empty() && plan.reedit.is_empty() && plan.dirty.is_empty());
    }

    #[test]
    fn a_stale_mark_notifies_and_a_moot_one_is_not_kept() {
        let first = ev("t", 1, "running");
        let mut snapshot = Snapshot::default();
        snapshot.tasks.insert(
            ("r".into(), "w".into(), "t".into()),
            stored(7, &first, to(&[("main", true)])),
        );
        let requests = vec![vec![stale_mark(1)]];
        let batch = Batch::new(&requests).unwrap();
        let plan = batch.plan(snapshot, &route, 50);
        assert_eq!(plan.journal.len(), 1);
        assert_eq!(plan.dirty, vec![7]);
        assert_eq!(
            plan.receipts,
            vec![PlannedReceipt {
                task: 0,
                channel: "main".into(),
                event_seq: -2
            }]
        );
        assert_eq!(plan.tasks[0].state.stale_since, Some(50));
        // The worker spoke after herald looked (silent_since is older than
        // its last event): nothing is written.
        let mut snapshot = Snapshot::default();
        snapshot.tasks.insert(
            ("r".into(), "w".into(), "t".into()),
            stored(7, &first, to(&[("main", true)])),
        );
        let requests = vec![vec![stale_mark(0)]];
        let batch = Batch::new(&requests).unwrap();
        let plan = batch.plan(snapshot, &route, 50);
        assert!(plan.journal.is_empty() && plan.receipts.is_empty());
        // A mark for a task the store does not have is not kept either.
        let plan = batch.plan(Snapshot::default(), &route, 50);
        assert!(plan.journal.is_empty() && plan.tasks.is_empty());
    }

    #[test]
    fn an_escalation_notifies_only_its_channel_and_the_end_notifies_what_it_resolves() {
        let first = ev("t", 1, "running");
        let key: TaskKey = ("r".into(), "w".into(), "t".into());
        let mut stale = stored(7, &first, to(&[("main", true)]));
        stale.state.apply(&stale_mark(1), 40);
        let escalated = crate::protocol::parse_stored_event(serde_json::json!({
            "seq": -1_099_511_627_776_i64, "run_id": "r", "worker_id": "w", "task_id": "t",
            "timestamp": "2026-12-01T00:00:00Z", "state": "escalated", "channel": "oncall",
            "extra": {"source": "herald", "condition": "stale#1", "why": "stale: no event for 5s"}
        }))
        .expect("herald's escalation");
        let mut snapshot = Snapshot::default();
        snapshot.tasks.insert(key.clone(), stale);
        let requests = vec![vec![escalated]];
        let batch = Batch::new(&requests).unwrap();
        let plan = batch.plan(snapshot, &route, 50);
        assert_eq!(plan.journal.len(), 1);
        assert_eq!(plan.dirty, vec![7], "the live message names the escalation");
        assert_eq!(
            plan.receipts,
            vec![PlannedReceipt {
                task: 0,
                channel: "oncall".into(),
                event_seq: -1_099_511_627_776
            }]
        );
        assert!(
            plan.channels.is_empty(),
            "an escalation channel is no routed channel"
        );
        // The task completes: its routed channel and the escalation's.
        let mut escalated_task = stored(7, &first, to(&[("main", true)]));
        escalated_task.state = plan.tasks[0].state.clone();
        let mut snapshot = Snapshot::default();
        snapshot.tasks.insert(key, escalated_task);
        let requests = vec![vec![ev("t", 2, "completed")]];
        let batch = Batch::new(&requests).unwrap();
        let plan = batch.plan(snapshot, &route, 60);
        let notified: Vec<&str> = plan.receipts.iter().map(|r| r.channel.as_str()).collect();
        assert_eq!(notified, ["main", "oncall"]);
        assert!(plan.channels.is_empty());
    }

    #[test]
    fn a_firing_alert_notifies_only_channels_without_a_live_message() {
        let firing = crate::alerts::parse(
            crate::alerts::AlertSource::Alertmanager,
            &serde_json::json!({"version": "4", "alerts": [{"status": "firing",
                "labels": {"alertname": "A"}, "startsAt": "2026-12-01T10:00:00Z"}]}),
        )
        .expect("a payload");
        let both = |_: &RoutingInput<'_>| to(&[("chat", true), ("pager", false)]);
        let requests = vec![firing];
        let batch = Batch::new(&requests).unwrap();
        let plan = batch.plan(Snapshot::default(), &both, 10);
        let notified: Vec<&str> = plan.receipts.iter().map(|r| r.channel.as_str()).collect();
        assert_eq!(
            notified,
            ["pager"],
            "the chat channel shows it as its live message"
        );
    }
}
