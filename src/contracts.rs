//! Herald's own side of the worker contract (SPEC §6.10): an open task
//! that has said nothing for `[contracts] heartbeat` is marked stale by
//! herald (its live message says so, an attention notification goes out,
//! the worker's next event clears it), and a task that has not ended by its
//! deadline (`extra.timeout_seconds`, else `[contracts] deadline`) is failed
//! by herald, with the reason `deadline exceeded (<duration>)` — a terminal
//! event like any other. Both are events, journaled and delivered through
//! the same ingest path (receipts, the live message, routing by state).
//!
//! Herald's events carry negative seqs (no worker may send one, so they
//! never collide with a worker's) and `extra.source = "herald"`. The
//! deadline failure is seq `-1`, the n-th stale mark seq `-(n + 1)`:
//! whichever replica or restart notices a task first, the journal keeps it
//! once. Tasks are found through due-indexes (`ContractStore`), never by
//! scanning tasks.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::ingest::writer::IngestWriter;
use crate::protocol::{FleetWorkerEvent, WorkerState};
use crate::store::{OverdueTask, SilentTask, Store, now_ms};

/// The seq of herald's deadline failure of a task.
pub const DEADLINE_SEQ: i64 = -1;

/// How often the watcher looks (a deadline is noticed within this).
pub const TICK: Duration = Duration::from_secs(1);

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
    }
}

/// Watch deadlines and heartbeats until the process stops: every
/// [`TICK`], fail the overdue tasks and mark the silent ones through
/// `writer` (the config is read afresh each time, so a reload applies at
/// once).
pub async fn watch(store: Store, writer: IngestWriter, config: watch::Receiver<Arc<Config>>) {
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let contracts = config.borrow().contracts.clone();
        let now = Utc::now();
        match store
            .overdue_tasks(now_ms(), contracts.deadline.map(millis), BATCH)
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
            match store.silent_tasks(now_ms() - millis(heartbeat), BATCH).await {
                Ok(silent) => {
                    let events: Vec<FleetWorkerEvent> =
                        silent.iter().map(|task| stale_mark(task, now)).collect();
                    commit(&writer, events, "silent tasks were marked stale by herald").await;
                }
                Err(e) => warn!(error = %e, "could not look for silent tasks; trying again"),
            }
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Commit herald's events like a worker's; `done` is logged when some took
/// effect (the rest no longer applied: the task ended or the worker spoke).
async fn commit(writer: &IngestWriter, events: Vec<FleetWorkerEvent>, done: &'static str) {
    if events.is_empty() {
        return;
    }
    let count = events.len();
    match writer.commit(events).await {
        Ok(report) if report.accepted > 0 => info!(tasks = report.accepted, "{done}"),
        Ok(_) => {}
        Err(e) => warn!(error = %e, tasks = count, "could not commit herald's own events; trying again"),
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
