//! The worker-task state machine (SPEC §4 "Ordering"): what a task shows
//! after any sequence of events.
//!
//! * The journal keeps every event; this is only the displayed state.
//! * The highest `seq` wins; a lower `seq` arriving late never regresses it.
//! * A terminal state is final: the first terminal event to arrive is shown
//!   for good, whatever its `seq`, because hiding a finished task behind a
//!   late progress event would be the worst possible lie.
//! * Heartbeats refresh liveness but do not change what is shown.
//!
//! Kept pure (no I/O) so property tests can throw any interleaving at it.

use std::collections::BTreeMap;

use crate::escalations::{Condition, EscalationLog};
use crate::protocol::{FleetWorkerEvent, WorkerState};

/// The current state of one worker task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskState {
    /// The state shown (`running_tool`, `completed`, ...).
    pub state: String,
    /// The `seq` of the event shown.
    pub state_seq: i64,
    /// The highest `seq` seen, shown or not.
    pub max_seq: i64,
    /// Whether the task has ended.
    pub terminal: bool,
    /// The event shown.
    pub display: FleetWorkerEvent,
    /// `extra.labels` merged over all events, later events winning.
    pub labels: BTreeMap<String, String>,
    /// Bumped every time what is shown changes; progress messages are
    /// versioned by it so an older rendering never overwrites a newer one.
    pub version: i64,
    /// Unix ms of the first event.
    pub first_seen_at: i64,
    /// Unix ms of the last event.
    pub updated_at: i64,
    /// Unix ms of the last heartbeat.
    pub last_heartbeat_at: Option<i64>,
    /// Unix ms by which the task must end: its first event plus the
    /// newest `extra.timeout_seconds` it sent (else `[contracts]
    /// deadline` applies, which the watcher reads from the config).
    pub deadline_at: Option<i64>,
    /// Unix ms herald marked the task stale (no event for `[contracts]
    /// heartbeat`); cleared by the worker's next event of any kind.
    pub stale_since: Option<i64>,
    /// How many times herald marked it stale (its stale marks have seqs
    /// `-2`, `-3`, …: see `contracts.rs`).
    pub stale_marks: i64,
    /// What herald escalated of the task, and what is still open.
    pub escalation: EscalationLog,
    /// Unix ms when the contract watcher should next weigh escalating the
    /// task: set when something that may escalate happens (a stale mark, a
    /// restart, a failure), moved or cleared by the watcher.
    pub escalate_at: Option<i64>,
}

/// `restart_count` of a `restarted` event, else 0.
fn restart_count(event: &FleetWorkerEvent) -> u64 {
    match event.state {
        WorkerState::Restarted { restart_count } => restart_count,
        _ => 0,
    }
}

/// Whether a worker's event may make the task escalate (the watcher then
/// weighs it at once): a restart, or a failure for good.
fn may_escalate(event: &FleetWorkerEvent) -> bool {
    matches!(event.state, WorkerState::Restarted { .. })
        || (event.state.is_terminal() && matches!(event.state, WorkerState::Failed { .. }))
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// What applying one event changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    /// What is shown changed (progress messages are now stale).
    pub display_changed: bool,
    /// This event ended the task (a terminal notification is due).
    pub became_terminal: bool,
    /// Herald marked the task stale (an attention notification is due).
    pub became_stale: bool,
    /// A herald event that no longer applies (the task ended, or the
    /// worker spoke since herald looked, or it was escalated already): not
    /// journaled.
    pub moot: bool,
    /// Herald escalated the task to this channel (a notification is due
    /// there, and only there).
    pub escalated_to: Option<String>,
    /// Channels whose escalation this event resolves (the task recovered
    /// or ended well): they are notified of it (PagerDuty resolves).
    pub resolves: Vec<String>,
    /// Someone acknowledged the task: its notifications are rendered again.
    pub acknowledged: bool,
    /// Channels with an escalation open when the task was acknowledged:
    /// they are told who is on it (PagerDuty acknowledges the incident).
    pub acknowledged_open: Vec<String>,
}

impl Applied {
    fn moot() -> Applied {
        Applied {
            moot: true,
            ..Applied::default()
        }
    }
}

impl TaskState {
    /// The state of a task created by its first event.
    pub fn new(event: &FleetWorkerEvent, now_ms: i64) -> Self {
        let heartbeat = event.state.is_heartbeat();
        TaskState {
            state: event.state.name().to_owned(),
            // A task first seen through a heartbeat has shown nothing real
            // yet: any later non-heartbeat event replaces it.
            state_seq: if heartbeat { -1 } else { event.seq },
            max_seq: event.seq,
            terminal: event.state.is_terminal(),
            display: event.clone(),
            labels: event.labels(),
            version: 1,
            first_seen_at: now_ms,
            updated_at: now_ms,
            last_heartbeat_at: heartbeat.then_some(now_ms),
            deadline_at: event.timeout().map(|t| now_ms.saturating_add(millis(t))),
            stale_since: None,
            stale_marks: 0,
            escalation: EscalationLog {
                restarts: restart_count(event),
                policy: event.policy_rule(),
                ..EscalationLog::default()
            },
            // A task can fail (or report restarts) with its first event.
            escalate_at: may_escalate(event).then_some(now_ms),
        }
    }

    /// Apply a later-arriving event (never a duplicate: the journal filters
    /// those out before).
    pub fn apply(&mut self, event: &FleetWorkerEvent, now_ms: i64) -> Applied {
        if event.is_from_herald() {
            return self.apply_herald(event, now_ms);
        }
        let was_terminal = self.terminal;
        let mut applied = self.apply_worker(event, now_ms);
        // Any word from the worker ends herald's stale mark, and closes the
        // escalations of the stale spell.
        if !was_terminal && self.stale_since.take().is_some() {
            applied.resolves = self.escalation.recover_from_stale();
            if !applied.display_changed {
                self.version += 1;
                applied.display_changed = true;
            }
        }
        if applied.became_terminal {
            if matches!(
                event.state,
                WorkerState::Completed { .. } | WorkerState::Cancelled { .. }
            ) {
                for channel in self.escalation.resolve_all() {
                    if !applied.resolves.contains(&channel) {
                        applied.resolves.push(channel);
                    }
                }
                self.escalate_at = None;
            } else {
                self.escalate_at = Some(now_ms);
            }
        } else if !self.terminal && may_escalate(event) {
            self.escalate_at = Some(now_ms);
        }
        applied
    }

    /// Herald's own events: a deadline failure ends the task like any
    /// terminal event; a stale mark holds only if the worker has said
    /// nothing since herald looked (`extra.silent_since`); an escalation
    /// only while its condition does.
    fn apply_herald(&mut self, event: &FleetWorkerEvent, now_ms: i64) -> Applied {
        // A failure is escalated after the task ended, and acknowledged.
        if let WorkerState::Escalated { channel, .. } = &event.state {
            return self.apply_escalation(event, channel);
        }
        if let WorkerState::Acknowledged { by } = &event.state {
            return self.apply_acknowledged(by, now_ms);
        }
        if self.terminal {
            return Applied::moot();
        }
        if event.state.is_terminal() {
            self.show(event);
            self.terminal = true;
            self.stale_since = None;
            self.escalate_at = Some(now_ms);
            return Applied {
                display_changed: true,
                became_terminal: true,
                ..Applied::default()
            };
        }
        if matches!(event.state, WorkerState::Stale { .. }) {
            let silent_since = event.silent_since().unwrap_or(i64::MIN);
            if self.stale_since.is_some() || self.updated_at > silent_since {
                return Applied::moot();
            }
            self.stale_since = Some(now_ms);
            self.stale_marks += 1;
            self.escalate_at = Some(now_ms);
            self.version += 1;
            return Applied {
                display_changed: true,
                became_stale: true,
                ..Applied::default()
            };
        }
        Applied::moot()
    }

    /// Someone acknowledged the task: named on its live message, and not
    /// escalated further; what is open stays open, to be resolved as
    /// usual, and is told (PagerDuty acknowledges its incident). The first
    /// acknowledgement stands.
    fn apply_acknowledged(&mut self, by: &str, now_ms: i64) -> Applied {
        if self.escalation.acknowledged_by.is_some() {
            return Applied::moot();
        }
        self.escalation.acknowledged_by = Some(by.to_owned());
        self.escalation.acknowledged_at = Some(now_ms);
        self.escalate_at = None;
        self.version += 1;
        Applied {
            display_changed: true,
            acknowledged: true,
            acknowledged_open: self.escalation.open_channels(),
            ..Applied::default()
        }
    }

    /// Herald's escalation of the task to `channel`: it holds while its
    /// condition does and was not sent there before (another replica, or
    /// an earlier look, may have sent it).
    fn apply_escalation(&mut self, event: &FleetWorkerEvent, channel: &str) -> Applied {
        let Some(condition) = event.escalation_condition() else {
            return Applied::moot();
        };
        let holds = match condition {
            Condition::Failed => self.terminal && self.state == "failed",
            Condition::Restarts => !self.terminal,
            Condition::Stale { mark } => {
                !self.terminal && self.stale_since.is_some() && self.stale_marks == mark
            }
        };
        if !holds || self.escalation.acknowledged_by.is_some() || self.escalation.was_sent(condition, channel)
        {
            return Applied::moot();
        }
        self.escalation.record(condition, channel);
        self.version += 1;
        Applied {
            display_changed: true,
            escalated_to: Some(channel.to_owned()),
            ..Applied::default()
        }
    }

    fn apply_worker(&mut self, event: &FleetWorkerEvent, now_ms: i64) -> Applied {
        self.escalation.restarts = self.escalation.restarts.max(restart_count(event));
        if let Some(policy) = event.policy_rule() {
            self.escalation.policy = Some(policy);
        }
        self.max_seq = self.max_seq.max(event.seq);
        self.updated_at = self.updated_at.max(now_ms);
        for (k, v) in event.labels() {
            self.labels.insert(k, v);
        }
        if let Some(timeout) = event.timeout() {
            self.deadline_at = Some(self.first_seen_at.saturating_add(millis(timeout)));
        }
        if self.terminal {
            return Applied::default();
        }
        if event.state.is_terminal() {
            self.show(event);
            self.terminal = true;
            return Applied {
                display_changed: true,
                became_terminal: true,
                ..Applied::default()
            };
        }
        if event.state.is_heartbeat() {
            self.last_heartbeat_at = Some(now_ms);
            return Applied::default();
        }
        if event.seq > self.state_seq {
            self.show(event);
            return Applied {
                display_changed: true,
                ..Applied::default()
            };
        }
        Applied::default()
    }

    fn show(&mut self, event: &FleetWorkerEvent) {
        self.state = event.state.name().to_owned();
        self.state_seq = event.seq;
        self.display = event.clone();
        self.version += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{parse_event, parse_stored_event};
    use proptest::prelude::*;
    use serde_json::json;

    const STATES: &[&str] = &[
        "queued",
        "running",
        "model_wait",
        "heartbeat",
        "completed",
        "failed",
        "cancelled",
    ];

    fn event(seq: i64, state: &str) -> FleetWorkerEvent {
        let mut v = json!({"seq": seq, "run_id": "r", "worker_id": "w", "task_id": "t",
            "timestamp": "2026-01-01T00:00:00Z", "state": state});
        if state == "failed" {
            v["reason"] = json!("boom");
        }
        parse_event(v).unwrap()
    }

    /// Replays events through the journal's duplicate filter and the state
    /// machine, as ingest does.
    fn replay(events: &[(i64, &str)]) -> Option<TaskState> {
        let mut seen = std::collections::HashSet::new();
        let mut state: Option<TaskState> = None;
        for (i, (seq, name)) in events.iter().enumerate() {
            if !seen.insert(*seq) {
                continue;
            }
            let ev = event(*seq, name);
            match &mut state {
                None => state = Some(TaskState::new(&ev, i as i64)),
                Some(s) => {
                    s.apply(&ev, i as i64);
                }
            }
        }
        state
    }

    #[test]
    fn late_lower_seq_does_not_regress() {
        let s = replay(&[(1, "queued"), (3, "model_wait"), (2, "running")]).unwrap();
        assert_eq!(s.state, "model_wait");
        assert_eq!(s.max_seq, 3);
    }

    #[test]
    fn terminal_is_final() {
        let s = replay(&[(1, "running"), (2, "completed"), (5, "running"), (6, "failed")]).unwrap();
        assert_eq!(s.state, "completed");
        assert!(s.terminal);
        assert_eq!(s.max_seq, 6);
    }

    fn stale_mark(silent_since: i64) -> FleetWorkerEvent {
        parse_stored_event(json!({"seq": -2, "run_id": "r", "worker_id": "w", "task_id": "t",
            "timestamp": "2026-01-01T00:00:00Z", "state": "stale",
            "extra": {"source": "herald", "silent_since": silent_since}}))
        .unwrap()
    }

    #[test]
    fn a_stale_mark_holds_until_the_worker_speaks_and_only_if_it_stayed_silent() {
        let mut s = TaskState::new(&event(1, "running"), 10);
        let applied = s.apply(&stale_mark(10), 100);
        assert!(applied.became_stale && applied.display_changed && !applied.moot);
        assert_eq!(
            (s.stale_since, s.stale_marks, s.state.as_str()),
            (Some(100), 1, "running")
        );
        // A second mark while stale changes nothing.
        assert!(s.apply(&stale_mark(10), 110).moot);
        // Any event from the worker (a heartbeat too) clears it.
        let applied = s.apply(&event(2, "heartbeat"), 120);
        assert!(applied.display_changed);
        assert_eq!(s.stale_since, None);
        // The worker spoke after herald looked: the mark is moot.
        assert!(s.apply(&stale_mark(10), 130).moot);
        assert_eq!(s.stale_since, None);
        // A finished task is never marked.
        let mut done = TaskState::new(&event(1, "completed"), 10);
        assert!(done.apply(&stale_mark(10), 100).moot);
    }

    fn escalation(condition: &str, channel: &str) -> FleetWorkerEvent {
        parse_stored_event(
            json!({"seq": -1_099_511_627_776_i64, "run_id": "r", "worker_id": "w", "task_id": "t",
            "timestamp": "2026-01-01T00:00:00Z", "state": "escalated", "channel": channel,
            "extra": {"source": "herald", "condition": condition, "why": "stale"}}),
        )
        .unwrap()
    }

    #[test]
    fn an_escalation_holds_once_while_its_condition_does_and_recovery_or_the_end_resolves_it() {
        let mut s = TaskState::new(&event(1, "running"), 10);
        assert_eq!(s.escalate_at, None);
        // Not stale: an escalation for a stale spell does not hold.
        assert!(s.apply(&escalation("stale#1", "oncall"), 20).moot);
        s.apply(&stale_mark(10), 100);
        assert_eq!(s.escalate_at, Some(100), "a stale mark is weighed at once");
        assert!(
            s.apply(&escalation("stale#2", "oncall"), 110).moot,
            "another spell's"
        );
        let applied = s.apply(&escalation("stale#1", "oncall"), 110);
        assert_eq!(applied.escalated_to.as_deref(), Some("oncall"));
        assert!(applied.display_changed && !applied.moot);
        assert!(s.apply(&escalation("stale#1", "oncall"), 111).moot, "sent once");
        assert_eq!(s.escalation.open_channels(), ["oncall"]);
        // The worker speaks: the stale escalation is resolved.
        let applied = s.apply(&event(2, "running"), 120);
        assert_eq!(applied.resolves, ["oncall"]);
        assert!(s.escalation.open_channels().is_empty());
        // Restarts: weighed at once, escalated once, resolved by the end.
        let mut restarted = event(4, "running");
        restarted.state = WorkerState::Restarted { restart_count: 3 };
        s.apply(&restarted, 140);
        assert_eq!((s.escalation.restarts, s.escalate_at), (3, Some(140)));
        assert!(!s.apply(&escalation("restarts", "hook"), 150).moot);
        let applied = s.apply(&event(5, "completed"), 160);
        assert_eq!(applied.resolves, ["hook"]);
        assert_eq!(s.escalate_at, None);
        // A failure is escalated after the end; the acknowledged are not.
        let mut failed = TaskState::new(&event(1, "failed"), 10);
        assert_eq!(failed.escalate_at, Some(10));
        assert!(failed.apply(&escalation("restarts", "oncall"), 20).moot);
        let applied = failed.apply(&escalation("failed", "oncall"), 20);
        assert!(!applied.moot && applied.resolves.is_empty());
        let mut acked = TaskState::new(&event(1, "failed"), 10);
        acked.escalation.acknowledged_by = Some("ana".into());
        assert!(acked.apply(&escalation("failed", "oncall"), 20).moot);
        // A completed task is never escalated for failing.
        let mut done = TaskState::new(&event(1, "completed"), 10);
        assert!(done.apply(&escalation("failed", "oncall"), 20).moot);
    }

    #[test]
    fn the_first_acknowledgement_stands_and_stops_escalation() {
        let ack = |by: &str| {
            let mut e = event(1, "running");
            e.seq = crate::protocol::ACKNOWLEDGED_SEQ;
            e.state = WorkerState::Acknowledged { by: by.into() };
            e
        };
        // A failed task, acknowledged after it ended: named, not escalated.
        let mut s = TaskState::new(&event(1, "failed"), 10);
        let applied = s.apply(&ack("ana"), 20);
        assert!(applied.display_changed && !applied.moot);
        assert_eq!(
            s.escalation.acknowledgement(),
            Some(crate::escalations::Acknowledgement {
                by: "ana".into(),
                at: 20
            })
        );
        assert_eq!((s.escalate_at, s.state.as_str()), (None, "failed"));
        assert!(s.apply(&escalation("failed", "oncall"), 30).moot);
        // A second press, by anyone, changes nothing.
        let version = s.version;
        assert!(s.apply(&ack("bob"), 40).moot);
        assert_eq!(
            (s.escalation.acknowledged_by.as_deref(), s.version),
            (Some("ana"), version)
        );
        // A stale task acknowledged stays stale, and its mark is not escalated.
        let mut stale = TaskState::new(&event(1, "running"), 10);
        stale.apply(&stale_mark(10), 100);
        stale.apply(&ack("ana"), 110);
        assert_eq!(stale.stale_since, Some(100));
        assert!(stale.apply(&escalation("stale#1", "oncall"), 120).moot);
        // Acknowledged while escalated: the channels with something open
        // are told (PagerDuty acknowledges), and later resolved as usual.
        let mut paged = TaskState::new(&event(1, "running"), 10);
        paged.apply(&stale_mark(10), 100);
        assert!(!paged.apply(&escalation("stale#1", "oncall"), 110).moot);
        let applied = paged.apply(&ack("ana"), 120);
        assert_eq!(applied.acknowledged_open, ["oncall"]);
        assert_eq!(paged.apply(&event(2, "running"), 130).resolves, ["oncall"]);
    }

    #[test]
    fn heartbeat_does_not_change_display() {
        let s = replay(&[(1, "running"), (2, "heartbeat")]).unwrap();
        assert_eq!(s.state, "running");
        assert_eq!(s.version, 1);
        assert!(s.last_heartbeat_at.is_some());
    }

    proptest! {
        /// For any interleaving (duplicates, any order): if no terminal event
        /// arrived, the task shows its highest-seq non-heartbeat event;
        /// otherwise it shows the first terminal event to arrive, and nothing
        /// after it changes that.
        #[test]
        fn display_follows_highest_seq_and_terminal_is_final(
            events in proptest::collection::vec((0i64..20, proptest::sample::select(STATES)), 1..40)
        ) {
            let state = replay(&events).unwrap();
            let mut seen = std::collections::HashSet::new();
            let unique: Vec<(i64, &str)> = events.iter().filter(|(s, _)| seen.insert(*s)).cloned().collect();
            let first_terminal = unique.iter().find(|(_, n)| ["completed", "failed", "cancelled"].contains(n));
            match first_terminal {
                Some((seq, name)) => {
                    prop_assert!(state.terminal);
                    prop_assert_eq!(&state.state, name);
                    prop_assert_eq!(state.state_seq, *seq);
                }
                None => {
                    prop_assert!(!state.terminal);
                    let shown = unique.iter().filter(|(_, n)| *n != "heartbeat").max_by_key(|(s, _)| *s);
                    match shown {
                        Some((seq, name)) => {
                            prop_assert_eq!(&state.state, name);
                            prop_assert_eq!(state.state_seq, *seq);
                        }
                        None => prop_assert_eq!(state.state.as_str(), "heartbeat"),
                    }
                }
            }
            prop_assert_eq!(state.max_seq, unique.iter().map(|(s, _)| *s).max().unwrap());
        }
    }
}
