//! What `/` shows an operator at a glance (SPEC §3 `GET /`;
//! docs/operations.md): how many tasks are in each state (all runs, or
//! one), the tasks that need attention, and whether delivery is healthy on
//! every configured channel. Read from the store and this replica's
//! rate-limit counts only, so it answers whatever the platforms are doing.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Config;
use crate::delivery::throttles::Throttles;
use crate::inbound::status::{Attention, StatusReport};
use crate::store::{ChannelBacklog, Store, StoreError};

/// Runs listed in the per-run table (those with the newest events).
pub const RUNS_LISTED: i64 = 20;

/// The phases the headline counts tasks in: `running` is every open task
/// that is neither stale nor a firing alert (queued, model_wait,
/// running_tool, interrupted ... all count as running); the others are
/// the state of that name (`stale`: herald's silence mark).
pub const PHASES: &[&str] = &[
    "running",
    "stale",
    "failed",
    "completed",
    "cancelled",
    "firing",
    "resolved",
];

/// The phase a state shown counts in (see [`PHASES`]); `stale` is a state
/// too (the counts already tell herald's stale mark as `stale`).
pub fn phase(state: &str) -> &'static str {
    PHASES
        .iter()
        .skip(1)
        .find(|p| **p == state)
        .copied()
        .unwrap_or("running")
}

/// Counts per state as counts per phase, every phase in order.
fn phases<'a>(counts: impl IntoIterator<Item = (&'a str, i64)>) -> Vec<StateTally> {
    let mut tallies: Vec<StateTally> = PHASES
        .iter()
        .map(|p| StateTally {
            state: (*p).to_owned(),
            tasks: 0,
        })
        .collect();
    for (state, tasks) in counts {
        let at = PHASES.iter().position(|p| *p == phase(state)).unwrap_or(0);
        if let Some(tally) = tallies.get_mut(at) {
            tally.tasks += tasks;
        }
    }
    tallies
}

/// The overview.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Overview {
    /// When it was read.
    #[serde(serialize_with = "crate::api_time::at")]
    #[schema(value_type = String, format = DateTime)]
    pub generated_at: i64,
    /// The run it is narrowed to, if any.
    pub run: Option<String>,
    /// Tasks per phase, every phase of [`PHASES`] in that order (zeros
    /// too): what the page's headline shows.
    pub phases: Vec<StateTally>,
    /// Tasks per state shown (stale counted as `stale`), most first.
    pub counts: Vec<StateTally>,
    /// The runs with the newest events, newest first, with their counts.
    pub runs: Vec<RunTally>,
    /// Failed, stale and firing tasks, newest first (at most 10).
    pub attention: Vec<Attention>,
    /// Every configured channel, by name.
    pub channels: Vec<ChannelHealth>,
}

/// How many tasks show one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StateTally {
    /// The state (`stale`: open and silent past its limit).
    pub state: String,
    /// How many tasks.
    pub tasks: i64,
}

/// One run's tasks by state.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunTally {
    /// The run.
    pub run_id: String,
    /// Its newest event.
    #[serde(serialize_with = "crate::api_time::at")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
    /// All its tasks.
    pub tasks: i64,
    /// Per phase, as [`Overview::phases`].
    pub phases: Vec<StateTally>,
}

/// Delivery health of one configured channel.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChannelHealth {
    /// Channel name.
    pub name: String,
    /// Its adapter (`discord`, `slack`, `webhook`, `web`, ...).
    pub adapter: String,
    /// Receipts pending or being sent.
    pub pending: i64,
    /// Receipts given up (replayable).
    pub failed: i64,
    /// When the oldest pending receipt was accepted.
    #[serde(serialize_with = "crate::api_time::maybe_at")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub oldest_pending_at: Option<i64>,
    /// The newest error among the receipts not done, secrets redacted.
    pub last_error: Option<String>,
    /// When that error was seen.
    #[serde(serialize_with = "crate::api_time::maybe_at")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_error_at: Option<i64>,
    /// Calls the platform answered with its rate limit in the last hour,
    /// on this replica (each replica counts the channels it delivers).
    pub rate_limited_last_hour: u64,
    /// The channel's page, for a web channel.
    pub page: Option<String>,
}

impl Overview {
    /// Read it: counts and attention of `run` (or all runs), every channel
    /// of `config` with its backlog and this replica's rate limits.
    pub async fn read(
        store: &Store,
        config: &Config,
        throttles: &Throttles,
        run: Option<&str>,
        now: i64,
    ) -> Result<Overview, StoreError> {
        let report = StatusReport::read(store, run).await?;
        let runs = run_tallies(store.run_state_counts(RUNS_LISTED).await?);
        let backlogs: BTreeMap<String, ChannelBacklog> = store
            .channel_backlogs()
            .await?
            .into_iter()
            .map(|b| (b.channel.clone(), b))
            .collect();
        let limited = throttles.last_hour(now);
        let channels = config
            .channels
            .values()
            .map(|c| {
                let backlog = backlogs.get(&c.name).cloned().unwrap_or_default();
                ChannelHealth {
                    name: c.name.clone(),
                    adapter: c.platform.as_str().to_owned(),
                    pending: backlog.pending,
                    failed: backlog.failed,
                    oldest_pending_at: backlog.oldest_pending_at,
                    // Stored errors are redacted when written; again here
                    // in case a secret was added to the config since.
                    last_error: backlog.last_error.map(|e| crate::redact::clean(&e)),
                    last_error_at: backlog.last_error_at,
                    rate_limited_last_hour: limited.get(&c.name).copied().unwrap_or(0),
                    page: web_page(c),
                }
            })
            .collect();
        Ok(Overview {
            generated_at: now,
            phases: phases(report.counts.iter().map(|(s, n)| (s.as_str(), *n))),
            run: report.run,
            counts: report
                .counts
                .into_iter()
                .map(|(state, tasks)| StateTally { state, tasks })
                .collect(),
            runs,
            attention: report.attention,
            channels,
        })
    }
}

/// The page of a web channel (`/channels/{id}`).
fn web_page(channel: &crate::config::ChannelConfig) -> Option<String> {
    match (&channel.platform, &channel.target) {
        (herald_messaging::Platform::Web, crate::config::ChannelTarget::Chat { id, .. }) => {
            Some(format!("/channels/{id}"))
        }
        _ => None,
    }
}

/// Rows of (run, state, stale) counts as one tally per run, newest run
/// first, each run's states most first (stale counted as `stale`).
fn run_tallies(rows: Vec<crate::store::RunStateCount>) -> Vec<RunTally> {
    let mut runs: BTreeMap<String, (i64, BTreeMap<String, i64>)> = BTreeMap::new();
    for row in rows {
        let (updated, states) = runs.entry(row.run_id).or_default();
        *updated = (*updated).max(row.updated_at);
        let state = if row.stale { "stale".to_owned() } else { row.state };
        *states.entry(state).or_default() += row.tasks;
    }
    let mut tallies: Vec<RunTally> = runs
        .into_iter()
        .map(|(run_id, (updated_at, states))| RunTally {
            tasks: states.values().sum(),
            run_id,
            updated_at,
            phases: phases(states.iter().map(|(s, n)| (s.as_str(), *n))),
        })
        .collect();
    tallies.sort_by(|a, b| {
        b.updated_at
            .cmp(&a.updated_at)
            .then_with(|| a.run_id.cmp(&b.run_id))
    });
    tallies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RunStateCount;

    fn row(run: &str, state: &str, stale: bool, tasks: i64, at: i64) -> RunStateCount {
        RunStateCount {
            run_id: run.into(),
            state: state.into(),
            stale,
            tasks,
            updated_at: at,
        }
    }

    #[test]
    fn runs_are_tallied_newest_first_with_stale_apart() {
        let tallies = run_tallies(vec![
            row("old", "completed", false, 4, 100),
            row("new", "running", false, 2, 300),
            row("new", "running", true, 1, 250),
            row("new", "model_wait", true, 2, 200),
            row("new", "completed", false, 5, 290),
        ]);
        assert_eq!(tallies.len(), 2);
        assert_eq!(tallies[0].run_id, "new");
        assert_eq!(tallies[0].updated_at, 300);
        assert_eq!(tallies[0].tasks, 10);
        let counts: Vec<(&str, i64)> = tallies[0]
            .phases
            .iter()
            .map(|c| (c.state.as_str(), c.tasks))
            .collect();
        assert_eq!(
            counts,
            vec![
                ("running", 2),
                ("stale", 3),
                ("failed", 0),
                ("completed", 5),
                ("cancelled", 0),
                ("firing", 0),
                ("resolved", 0)
            ]
        );
        assert_eq!(tallies[1].run_id, "old");
        assert_eq!(tallies[1].tasks, 4);
    }

    #[test]
    fn every_open_state_but_stale_and_firing_counts_as_running() {
        for state in crate::protocol::KNOWN_STATES {
            let expected = match *state {
                "stale" | "completed" | "failed" | "cancelled" => state,
                _ => "running",
            };
            assert_eq!(phase(state), expected, "{state}");
        }
        assert_eq!(phase("firing"), "firing");
        assert_eq!(phase("resolved"), "resolved");
        assert_eq!(phase("acknowledged"), "running");
    }
}
