//! Herald's own side of the worker contract (SPEC §6.10): an open task
//! that has said nothing for `[contracts] heartbeat` is marked stale by
//! herald (its live message says so, an attention notification goes out,
//! the worker's next event clears it), and a task that has not ended by its
//! deadline (`extra.timeout_seconds`, else `[contracts] deadline`) is failed
//! by herald, with the reason `deadline exceeded (<duration>)` — a terminal
//! event like any other. Both are events, journaled and delivered through
//! the same ingest path (receipts, the live message, routing by state).
//!
//! It also sends escalations (SPEC §6.11): tasks whose escalations are due
//! are weighed by `escalations::weigh`, and each escalation to send becomes
//! herald's `escalated` event for one channel (a receipt there, the live
//! message saying `escalated to <channel>`).
//!
//! Herald's events carry negative seqs (no worker may send one, so they
//! never collide with a worker's) and `extra.source = "herald"`. The
//! deadline failure is seq `-1`, the n-th stale mark seq `-(n + 1)`, an
//! escalation [`ESCALATION_SEQ_BASE`] minus a hash of its condition and
//! channel (so the same escalation always has the same seq, whoever makes
//! it and whatever was turned down before): whichever replica or restart
//! notices a task first, the journal keeps it once (and the state machine
//! turns down what no longer applies). Tasks are found through
//! due-indexes (`ContractStore`), never by scanning tasks.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::delivery::Wakers;
use crate::escalations::{DueTask, Escalation, EscalationRule, weigh};
use crate::ingest::writer::IngestWriter;
use crate::protocol::{FleetWorkerEvent, WorkerState};
use crate::routing::RoutingInput;
use crate::store::{EscalationDue, OverdueTask, SilentTask, Store, now_ms};
use herald_messaging::incident_key;

/// The seq of herald's deadline failure of a task.
pub const DEADLINE_SEQ: i64 = -1;

/// Where escalation seqs start (they count down from it by a 39-bit hash;
/// stale marks, counting down from `-2`, never reach it).
pub const ESCALATION_SEQ_BASE: i64 = -(1 << 40);

/// A herald seq below `base` by a 39-bit hash of `key`: the same for the
/// same key, whoever makes it (two keys of one task share one with odds of
/// about one in 10^11 per pair; the second would be taken for the first).
pub fn hashed_seq(base: i64, key: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 8];
    bytes[..5].copy_from_slice(&digest[..5]);
    let hash = u64::from_le_bytes(bytes) & ((1 << 39) - 1);
    base - i64::try_from(hash).unwrap_or(0)
}

/// The seq of one escalation of a task: the same for the same condition
/// and channel.
pub fn escalation_seq(escalation: &Escalation) -> i64 {
    hashed_seq(
        ESCALATION_SEQ_BASE,
        &crate::escalations::sent_key(escalation.condition, &escalation.channel),
    )
}

/// How often the watcher looks (a deadline is noticed within this).
pub const TICK: Duration = Duration::from_secs(1);

/// A firing alert is watched by the alerting system that sent it (it
/// repeats, and resolves): herald's heartbeat and default deadline leave it
/// alone.
const UNWATCHED: &str = "firing";

/// Most overdue tasks failed per look (the rest at the next).
const BATCH: i64 = 500;

/// `extra` of every event herald makes.
fn herald_extra() -> Map<String, Value> {
    let mut extra = Map::new();
    extra.insert("source".to_owned(), Value::String("herald".to_owned()));
    extra
}

/// The deadline a task missed: its own, else the default.
fn missed(task: &OverdueTask, default: Option<Duration>) -> Option<Duration> {
    match task.deadline_at {
        Some(at) => Some(Duration::from_millis(
            u64::try_from(at.saturating_sub(task.first_seen_at)).unwrap_or(0),
        )),
        None => default,
    }
}

/// Herald's terminal failure of an overdue task.
pub fn deadline_failure(
    task: &OverdueTask,
    default: Option<Duration>,
    now: DateTime<Utc>,
) -> Option<FleetWorkerEvent> {
    let deadline = missed(task, default)?;
    // Whole seconds read better, and a deadline is never finer.
    let shown = Duration::from_secs(deadline.as_secs().max(1));
    Some(FleetWorkerEvent {
        seq: DEADLINE_SEQ,
        run_id: task.run_id.clone(),
        worker_id: task.worker_id.clone(),
        task_id: task.task_id.clone(),
        timestamp: now,
        state: WorkerState::Failed {
            reason: format!("deadline exceeded ({})", humantime::format_duration(shown)),
            recoverable: false,
        },
        extra: Some(herald_extra()),
        policy: None,
    })
}

/// Herald's stale mark of a task that has been silent since its last event
/// (`extra.silent_since` lets the state machine tell whether the worker
/// spoke after herald looked).
pub fn stale_mark(task: &SilentTask, now: DateTime<Utc>) -> FleetWorkerEvent {
    let mut extra = herald_extra();
    extra.insert("silent_since".to_owned(), Value::from(task.updated_at));
    let last = DateTime::<Utc>::from_timestamp_millis(task.updated_at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    FleetWorkerEvent {
        seq: -(task.stale_marks + 2),
        run_id: task.run_id.clone(),
        worker_id: task.worker_id.clone(),
        task_id: task.task_id.clone(),
        timestamp: now,
        state: WorkerState::Stale {
            last_heartbeat_at: last,
        },
        extra: Some(extra),
        policy: None,
    }
}

/// Herald's escalation of `task` to one channel.
pub fn escalation_event(
    task: &EscalationDue,
    escalation: &Escalation,
    now: DateTime<Utc>,
) -> FleetWorkerEvent {
    let mut extra = herald_extra();
    extra.insert("condition".to_owned(), Value::String(escalation.condition.key()));
    extra.insert("why".to_owned(), Value::String(escalation.why.clone()));
    FleetWorkerEvent {
        seq: escalation_seq(escalation),
        run_id: task.run_id.clone(),
        worker_id: task.worker_id.clone(),
        task_id: task.task_id.clone(),
        timestamp: now,
        state: WorkerState::Escalated {
            channel: escalation.channel.clone(),
            alert_id: Some(incident_key(&task.run_id, &task.worker_id, &task.task_id)),
        },
        extra: Some(extra),
        policy: None,
    }
}

/// When to weigh a task's escalations again: its row id, the due time it
/// was read with, the next (`None`: when something happens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextLook {
    /// Task row id.
    pub task: i64,
    /// `escalate_at` as read.
    pub seen: i64,
    /// When to look again.
    pub at: Option<i64>,
}

/// Weigh the escalations of the tasks due at `now`: the events to commit,
/// and when to look at each task again.
pub fn escalations(
    due: &[EscalationDue],
    rules: &[EscalationRule],
    now: DateTime<Utc>,
) -> (Vec<FleetWorkerEvent>, Vec<NextLook>) {
    let mut events = Vec::new();
    let mut next = Vec::with_capacity(due.len());
    for task in due {
        let weighed = weigh(
            &DueTask {
                input: RoutingInput {
                    run_id: &task.run_id,
                    worker_id: &task.worker_id,
                    task_id: &task.task_id,
                    state: &task.state,
                    labels: &task.labels,
                },
                terminal: task.terminal,
                failure: match &task.display.state {
                    WorkerState::Failed { reason, .. } if task.terminal => Some(reason),
                    _ => None,
                },
                updated_at: task.updated_at,
                stale_since: task.stale_since,
                stale_marks: task.stale_marks,
                log: &task.escalation,
            },
            rules,
            now.timestamp_millis(),
        );
        for escalation in &weighed.send {
            events.push(escalation_event(task, escalation, now));
        }
        next.push(NextLook {
            task: task.id,
            seen: task.escalate_at,
            at: weighed.next_at,
        });
    }
    (events, next)
}

/// Watch deadlines, heartbeats, escalations and delivery contracts until
/// the process stops: every [`TICK`], fail the overdue tasks, mark the
/// silent ones and send due escalations through `writer`, and send missed
/// notifications to their fallbacks (`fallbacks.rs`), waking them with
/// `wakers` (the config is read afresh each time, so a reload applies at
/// once).
pub async fn watch(store: Store, writer: IngestWriter, config: watch::Receiver<Arc<Config>>, wakers: Wakers) {
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let contracts = config.borrow().contracts.clone();
        let now = Utc::now();
        match store
            .overdue_tasks(now_ms(), contracts.deadline.map(millis), UNWATCHED, BATCH)
            .await
        {
            Ok(overdue) => {
                let events: Vec<FleetWorkerEvent> = overdue
                    .iter()
                    .filter_map(|task| deadline_failure(task, contracts.deadline, now))
                    .collect();
                commit(&writer, events, "tasks past their deadline were failed by herald").await;
            }
            Err(e) => warn!(error = %e, "could not look for tasks past their deadline; trying again"),
        }
        if let Some(heartbeat) = contracts.heartbeat {
            match store
                .silent_tasks(now_ms() - millis(heartbeat), UNWATCHED, BATCH)
                .await
            {
                Ok(silent) => {
                    let events: Vec<FleetWorkerEvent> =
                        silent.iter().map(|task| stale_mark(task, now)).collect();
                    commit(&writer, events, "silent tasks were marked stale by herald").await;
                }
                Err(e) => warn!(error = %e, "could not look for silent tasks; trying again"),
            }
        }
        let rules = config.borrow().escalations.clone();
        match store.escalations_due(now_ms(), BATCH).await {
            Ok(due) if !due.is_empty() => {
                let (events, next) = escalations(&due, &rules, Utc::now());
                // Looked at again only once what was due is committed.
                if commit(&writer, events, "tasks were escalated by herald").await {
                    for look in next {
                        if let Err(e) = store.reschedule_escalation(look.task, look.seen, look.at).await {
                            warn!(error = %e, "could not schedule a task's next escalation look; trying again");
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "could not look for tasks to escalate; trying again"),
        }
        let current = config.borrow().clone();
        crate::fallbacks::look(&store, &current, &wakers).await;
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Commit herald's events like a worker's; `done` is logged when some took
/// effect (the rest no longer applied: the task ended or the worker spoke).
/// False when the commit failed (the same events are made again next time).
async fn commit(writer: &IngestWriter, events: Vec<FleetWorkerEvent>, done: &'static str) -> bool {
    if events.is_empty() {
        return true;
    }
    let count = events.len();
    match writer.commit(events).await {
        Ok(report) => {
            if report.accepted > 0 {
                info!(events = report.accepted, "{done}");
            }
            true
        }
        Err(e) => {
            warn!(error = %e, events = count, "could not commit herald's own events; trying again");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(deadline_at: Option<i64>) -> OverdueTask {
        OverdueTask {
            run_id: "r".into(),
            worker_id: "w".into(),
            task_id: "t".into(),
            first_seen_at: 1_000,
            deadline_at,
        }
    }

    #[test]
    fn a_task_fails_with_the_deadline_it_missed_and_herald_as_its_source() {
        let now = Utc::now();
        let own = deadline_failure(&task(Some(5_000)), Some(Duration::from_secs(3600)), now).unwrap();
        assert_eq!(own.seq, DEADLINE_SEQ);
        match &own.state {
            WorkerState::Failed { reason, recoverable } => {
                assert_eq!(reason, "deadline exceeded (4s)");
                assert!(!recoverable);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(own.extra.as_ref().unwrap()["source"], "herald");
        let default = deadline_failure(&task(None), Some(Duration::from_secs(6 * 3600)), now).unwrap();
        assert!(
            matches!(&default.state, WorkerState::Failed { reason, .. } if reason == "deadline exceeded (6h)")
        );
        assert!(deadline_failure(&task(None), None, now).is_none());
        // Herald's own events go back through the stored-event parser.
        let text = serde_json::to_value(&own).unwrap();
        let back = crate::protocol::parse_stored_event(text.clone()).unwrap();
        assert_eq!(back.seq, DEADLINE_SEQ);
        assert!(
            crate::protocol::parse_event(text).is_err(),
            "a worker cannot send herald's seqs"
        );
    }
}
