//! Escalation (SPEC §6.11): when a task has been stale for a while, has
//! restarted too often or has failed, herald sends it — once per condition
//! and channel — to the channels of every `[[escalations]]` entry that
//! matches it (a PagerDuty service, a team's Slack webhook), and resolves
//! what it opened when the task recovers or completes.
//!
//! Kept pure: [`weigh`] decides from a task's stored state, its
//! [`EscalationLog`] and the rules what to send now and when to look again;
//! the contract watcher (`contracts.rs`) turns that into herald's own
//! `escalated` events, which go through ingest like any other event, so the
//! state machine (`tasks.rs`) has the last word on whether each still
//! applies and the journal keeps each once.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alert_policy::PolicyRule;
use crate::routing::{MatchField, Matcher, RoutingInput};

/// One `[[escalations]]` entry, compiled.
#[derive(Debug, Clone)]
pub struct EscalationRule {
    /// All must match (the route matchers of SPEC §5.2).
    pub matchers: Vec<(MatchField, Matcher)>,
    /// Escalate a task that has been stale for this long.
    pub after_stale: Option<Duration>,
    /// Escalate a task whose worker reported this many restarts.
    pub after_restarts: Option<u64>,
    /// Escalate a terminal failure at once.
    pub on_failed: bool,
    /// Where to send it (validated against `[channels]`).
    pub channels: Vec<String>,
}

impl EscalationRule {
    fn matches(&self, input: &RoutingInput<'_>) -> bool {
        crate::routing::all_match(&self.matchers, input)
    }

    /// The rule of a task's own alert policy: its timings (`after_attempts`
    /// counts restarts: the n-th restart ends the n-th attempt), and a
    /// failure for good pages at once — a policy exists to page.
    pub fn of_policy(policy: &PolicyRule) -> EscalationRule {
        EscalationRule {
            matchers: Vec::new(),
            after_stale: policy
                .after_stale_ms
                .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
            after_restarts: policy.after_restarts,
            on_failed: true,
            channels: policy.channels.clone(),
        }
    }
}

/// Why a task is escalated. Each is sent once per channel; a stale task is
/// escalated again only in a new stale spell (a later stale mark).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Condition {
    /// Stale for `after_stale`, in the spell that began with stale mark `mark`.
    Stale {
        /// The task's `stale_marks` when the spell began.
        mark: i64,
    },
    /// Restarted `after_restarts` times.
    Restarts,
    /// Failed for good.
    Failed,
}

impl Condition {
    /// The condition as kept in the log and in `extra.condition`.
    pub fn key(self) -> String {
        match self {
            Condition::Stale { mark } => format!("stale#{mark}"),
            Condition::Restarts => "restarts".to_owned(),
            Condition::Failed => "failed".to_owned(),
        }
    }

    /// The condition back from [`Condition::key`].
    pub fn parse(key: &str) -> Option<Condition> {
        match key {
            "restarts" => Some(Condition::Restarts),
            "failed" => Some(Condition::Failed),
            _ => key
                .strip_prefix("stale#")?
                .parse()
                .ok()
                .map(|mark| Condition::Stale { mark }),
        }
    }
}

/// An escalation still open on a channel: sent, not resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenEscalation {
    /// The channel it went to.
    pub channel: String,
    /// Why ([`Condition::key`]).
    pub condition: String,
}

/// What herald has escalated of one task, kept with the task (one JSON
/// column) so every replica and restart agrees on what was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationLog {
    /// `condition@channel` of everything sent: each is sent once.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub sent: BTreeSet<String>,
    /// Escalations not resolved yet, in the order they were sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open: Vec<OpenEscalation>,
    /// The highest `restart_count` the worker reported.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: u64,
    /// Who acknowledged the task (SPEC §3.5): it is not escalated further.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    /// When (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<i64>,
    /// The task's own alert policy, where herald uses it (the newest the
    /// worker sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRule>,
}

/// Who acknowledged a task, and when: named on its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    /// The person, as the platform names them.
    pub by: String,
    /// Unix ms.
    pub at: i64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `condition@channel`: one entry of [`EscalationLog::sent`].
pub fn sent_key(condition: Condition, channel: &str) -> String {
    format!("{}@{channel}", condition.key())
}

impl EscalationLog {
    /// Who acknowledged the task and when, if someone did.
    pub fn acknowledgement(&self) -> Option<Acknowledgement> {
        Some(Acknowledgement {
            by: self.acknowledged_by.clone()?,
            at: self.acknowledged_at.unwrap_or(0),
        })
    }

    /// Whether `condition` was already sent to `channel`.
    pub fn was_sent(&self, condition: Condition, channel: &str) -> bool {
        self.sent.contains(&sent_key(condition, channel))
    }

    /// Record an escalation as sent and open.
    pub fn record(&mut self, condition: Condition, channel: &str) {
        self.sent.insert(sent_key(condition, channel));
        self.open.push(OpenEscalation {
            channel: channel.to_owned(),
            condition: condition.key(),
        });
    }

    /// The channels with an open escalation, each once, in order sent.
    pub fn open_channels(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for open in &self.open {
            if !out.contains(&open.channel) {
                out.push(open.channel.clone());
            }
        }
        out
    }

    /// The task recovered from its stale spell: close the stale
    /// escalations. Returns the channels left with nothing open (they get
    /// the recovery, PagerDuty a resolve).
    pub fn recover_from_stale(&mut self) -> Vec<String> {
        let before = self.open_channels();
        self.open
            .retain(|o| !matches!(Condition::parse(&o.condition), Some(Condition::Stale { .. })));
        let after = self.open_channels();
        before.into_iter().filter(|c| !after.contains(c)).collect()
    }

    /// The task ended well (or was cancelled): close everything. Returns the
    /// channels that had something open.
    pub fn resolve_all(&mut self) -> Vec<String> {
        let channels = self.open_channels();
        self.open.clear();
        channels
    }
}

/// What the watcher knows of a task due for a look.
#[derive(Debug, Clone)]
pub struct DueTask<'a> {
    /// The task, as routing sees it (its state is the state shown).
    pub input: RoutingInput<'a>,
    /// Whether it has ended.
    pub terminal: bool,
    /// The failure reason shown, when it failed.
    pub failure: Option<&'a str>,
    /// Unix ms of its last event from the worker.
    pub updated_at: i64,
    /// Since when herald has marked it stale.
    pub stale_since: Option<i64>,
    /// How many stale marks it has had (the current spell's mark).
    pub stale_marks: i64,
    /// What was escalated so far.
    pub log: &'a EscalationLog,
}

/// One escalation to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    /// The channel it goes to.
    pub channel: String,
    /// Why.
    pub condition: Condition,
    /// Why, in words, for the message (`stale: no event for 10m`).
    pub why: String,
}

/// What to do about a task now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Weighed {
    /// Escalations to send now, each once.
    pub send: Vec<Escalation>,
    /// When to look again (a stale spell not yet long enough), Unix ms.
    pub next_at: Option<i64>,
}

/// Decide what of `task` to escalate at `now` under `rules`.
pub fn weigh(task: &DueTask<'_>, rules: &[EscalationRule], now: i64) -> Weighed {
    let mut out = Weighed::default();
    if task.log.acknowledged_by.is_some() {
        return out;
    }
    let mut seen: BTreeSet<(Condition, String)> = BTreeSet::new();
    let own = task.log.policy.as_ref().map(EscalationRule::of_policy);
    for rule in rules.iter().filter(|r| r.matches(&task.input)).chain(own.iter()) {
        let mut conditions: Vec<(Condition, String)> = Vec::new();
        if rule.on_failed
            && task.terminal
            && let Some(reason) = task.failure
        {
            conditions.push((Condition::Failed, format!("failed: {reason}")));
        }
        if let Some(after) = rule.after_restarts
            && !task.terminal
            && task.log.restarts >= after
        {
            let times = if task.log.restarts == 1 { "time" } else { "times" };
            conditions.push((
                Condition::Restarts,
                format!("restarted {} {times}", task.log.restarts),
            ));
        }
        if let (Some(after), Some(since), false) = (rule.after_stale, task.stale_since, task.terminal) {
            let due = since.saturating_add(millis(after));
            if now >= due {
                let silent = Duration::from_millis(u64::try_from(now - task.updated_at).unwrap_or(0));
                conditions.push((
                    Condition::Stale {
                        mark: task.stale_marks,
                    },
                    format!("stale: no event for {}", whole_seconds(silent)),
                ));
            } else {
                out.next_at = Some(out.next_at.map_or(due, |n| n.min(due)));
            }
        }
        for (condition, why) in conditions {
            for channel in &rule.channels {
                if task.log.was_sent(condition, channel) || !seen.insert((condition, channel.clone())) {
                    continue;
                }
                out.send.push(Escalation {
                    channel: channel.clone(),
                    condition,
                    why: why.clone(),
                });
            }
        }
    }
    out
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A duration in whole seconds, as people read it (`1m 5s`).
fn whole_seconds(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs().max(1))).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    type Labels = BTreeMap<String, String>;

    fn rule(
        after_stale: Option<u64>,
        after_restarts: Option<u64>,
        on_failed: bool,
        channels: &[&str],
    ) -> EscalationRule {
        EscalationRule {
            matchers: vec![(
                MatchField::Label("team".into()),
                Matcher::parse("infra").expect("a matcher"),
            )],
            after_stale: after_stale.map(Duration::from_secs),
            after_restarts,
            on_failed,
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    struct Task {
        labels: Labels,
        state: &'static str,
        terminal: bool,
        failure: Option<&'static str>,
        stale_since: Option<i64>,
        stale_marks: i64,
        log: EscalationLog,
    }

    impl Task {
        fn infra() -> Task {
            Task {
                labels: [("team".to_owned(), "infra".to_owned())].into(),
                state: "running",
                terminal: false,
                failure: None,
                stale_since: None,
                stale_marks: 0,
                log: EscalationLog::default(),
            }
        }

        fn weigh(&self, rules: &[EscalationRule], now: i64) -> Weighed {
            weigh(
                &DueTask {
                    input: RoutingInput {
                        run_id: "r",
                        worker_id: "w",
                        task_id: "t",
                        state: self.state,
                        labels: &self.labels,
                    },
                    terminal: self.terminal,
                    failure: self.failure,
                    updated_at: 1_000,
                    stale_since: self.stale_since,
                    stale_marks: self.stale_marks,
                    log: &self.log,
                },
                rules,
                now,
            )
        }
    }

    #[test]
    fn a_stale_task_is_escalated_once_its_spell_is_long_enough_and_looked_at_again_until_then() {
        let rules = [rule(Some(10), None, false, &["oncall", "hook"])];
        let mut task = Task::infra();
        task.stale_since = Some(5_000);
        task.stale_marks = 1;
        let early = task.weigh(&rules, 9_000);
        assert!(early.send.is_empty());
        assert_eq!(early.next_at, Some(15_000));
        let due = task.weigh(&rules, 15_000);
        assert_eq!(due.next_at, None);
        let sent: Vec<_> = due
            .send
            .iter()
            .map(|e| (e.channel.as_str(), e.condition))
            .collect();
        assert_eq!(
            sent,
            [
                ("oncall", Condition::Stale { mark: 1 }),
                ("hook", Condition::Stale { mark: 1 })
            ]
        );
        assert_eq!(due.send[0].why, "stale: no event for 14s");
        // Once sent, not again in the same spell; a new spell is new.
        task.log.record(Condition::Stale { mark: 1 }, "oncall");
        task.log.record(Condition::Stale { mark: 1 }, "hook");
        assert!(task.weigh(&rules, 20_000).send.is_empty());
        task.stale_marks = 2;
        assert_eq!(task.weigh(&rules, 20_000).send.len(), 2);
    }

    #[test]
    fn restarts_and_failures_escalate_at_once_and_only_what_the_rule_asks_for() {
        let rules = [rule(None, Some(3), true, &["oncall"])];
        let mut task = Task::infra();
        task.log.restarts = 2;
        assert!(task.weigh(&rules, 1).send.is_empty());
        task.log.restarts = 3;
        let restarts = task.weigh(&rules, 1);
        assert_eq!(restarts.send.len(), 1);
        assert_eq!(restarts.send[0].why, "restarted 3 times");
        task.terminal = true;
        task.state = "failed";
        task.failure = Some("exit 1");
        let failed = task.weigh(&rules, 1);
        assert_eq!(
            failed.send.len(),
            1,
            "a finished task is not escalated for its restarts"
        );
        assert_eq!(failed.send[0].condition, Condition::Failed);
        assert_eq!(failed.send[0].why, "failed: exit 1");
        // A completed task has no failure.
        task.state = "completed";
        task.failure = None;
        assert!(task.weigh(&rules, 1).send.is_empty());
    }

    #[test]
    fn unmatched_or_acknowledged_tasks_are_not_escalated_and_two_rules_send_a_channel_one() {
        let rules = [
            rule(None, None, true, &["oncall"]),
            rule(None, None, true, &["oncall", "hook"]),
        ];
        let mut task = Task::infra();
        task.terminal = true;
        task.state = "failed";
        task.failure = Some("boom");
        let both = task.weigh(&rules, 1);
        let channels: Vec<_> = both.send.iter().map(|e| e.channel.as_str()).collect();
        assert_eq!(channels, ["oncall", "hook"]);
        task.labels.insert("team".into(), "web".into());
        assert!(task.weigh(&rules, 1).send.is_empty());
        task.labels.insert("team".into(), "infra".into());
        task.log.acknowledged_by = Some("ana".into());
        assert!(task.weigh(&rules, 1).send.is_empty());
    }

    #[test]
    fn recovery_resolves_only_channels_left_with_nothing_open() {
        let mut log = EscalationLog::default();
        log.record(Condition::Stale { mark: 1 }, "oncall");
        log.record(Condition::Stale { mark: 1 }, "hook");
        log.record(Condition::Restarts, "hook");
        assert_eq!(log.recover_from_stale(), ["oncall"]);
        assert_eq!(log.open_channels(), ["hook"]);
        assert_eq!(log.resolve_all(), ["hook"]);
        assert!(log.open.is_empty());
        assert!(log.was_sent(Condition::Restarts, "hook"));
        for c in [
            Condition::Stale { mark: 7 },
            Condition::Restarts,
            Condition::Failed,
        ] {
            assert_eq!(Condition::parse(&c.key()), Some(c));
        }
        assert_eq!(Condition::parse("stale#x"), None);
        let text = serde_json::to_string(&log).expect("json");
        assert_eq!(serde_json::from_str::<EscalationLog>(&text).expect("back"), log);
        assert_eq!(
            serde_json::from_str::<EscalationLog>("{}").expect("empty"),
            EscalationLog::default()
        );
    }
}
