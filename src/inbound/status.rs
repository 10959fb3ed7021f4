//! `/herald status [run]`: what a person in the channel asks herald — how
//! many tasks are in each state, and which need attention (failed, stale,
//! firing), newest first. Read from the store only, so the answer makes
//! the platforms' 3-second deadlines whatever the platforms are doing.

use std::collections::BTreeMap;

use crate::store::{Store, StoreError, WorkerRow};

/// Most tasks listed as needing attention.
pub const ATTENTION_LISTED: usize = 10;

/// One task that needs attention, as the answer (and the overview page)
/// lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Attention {
    /// The task's run.
    pub run_id: String,
    /// The task's worker (an alert: its name).
    pub worker_id: String,
    /// The task (an alert: its fingerprint).
    pub task_id: String,
    /// `worker · task` (an alert: its name and where).
    pub title: String,
    /// `failed`, `stale` or `firing`.
    pub state: String,
    /// The reason, the summary, or since when it is silent.
    pub detail: Option<String>,
    /// Its last event (newest first; RFC 3339 in the API).
    #[serde(serialize_with = "crate::api_time::at")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

/// The answer, before any platform's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// The run asked about, if one was.
    pub run: Option<String>,
    /// Tasks per state shown, stale counted as `stale`, most first.
    pub counts: Vec<(String, i64)>,
    /// Tasks that need attention, newest first.
    pub attention: Vec<Attention>,
}

impl StatusReport {
    /// Read it from the store.
    pub async fn read(store: &Store, run: Option<&str>) -> Result<StatusReport, StoreError> {
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for c in store.state_counts(run).await? {
            let state = if c.stale { "stale".to_owned() } else { c.state };
            *counts.entry(state).or_default() += c.tasks;
        }
        let limit = i64::try_from(ATTENTION_LISTED).unwrap_or(10);
        let mut attention: Vec<Attention> = Vec::new();
        for state in ["failed", "firing"] {
            for row in store.workers(run, Some(state), None, limit).await? {
                attention.push(entry(&row, state));
            }
        }
        for row in store.stale_tasks(run, limit).await? {
            attention.push(entry(&row, "stale"));
        }
        attention.sort_by_key(|a| std::cmp::Reverse(a.updated_at));
        attention.truncate(ATTENTION_LISTED);
        let mut counts: Vec<(String, i64)> = counts.into_iter().collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(StatusReport {
            run: run.map(str::to_owned),
            counts,
            attention,
        })
    }

    /// The headline (`herald status — run nightly-7`).
    pub fn headline(&self) -> String {
        match &self.run {
            Some(run) => format!("herald status — run {run}"),
            None => "herald status — all runs".to_owned(),
        }
    }

    /// `running 3 · failed 2` (or `no tasks`).
    pub fn counts_line(&self) -> String {
        if self.counts.is_empty() {
            return "no tasks".to_owned();
        }
        self.counts
            .iter()
            .map(|(state, n)| format!("{} {n}", crate::render::state_words(state)))
            .collect::<Vec<_>>()
            .join(" · ")
    }

    /// One line per task needing attention (raw text: each platform escapes it).
    pub fn attention_lines(&self) -> Vec<String> {
        self.attention
            .iter()
            .map(|a| match &a.detail {
                Some(d) => format!("{} — {}: {d}", a.title, a.state),
                None => format!("{} — {}", a.title, a.state),
            })
            .collect()
    }
}

fn entry(row: &WorkerRow, state: &str) -> Attention {
    let detail = match state {
        "failed" => row
            .event
            .get("reason")
            .and_then(|r| r.as_str())
            .map(str::to_owned),
        "firing" => row
            .event
            .get("summary")
            .and_then(|r| r.as_str())
            .map(str::to_owned),
        _ => chrono::DateTime::<chrono::Utc>::from_timestamp_millis(row.updated_at)
            .map(|t| format!("no event since {}", t.format("%H:%M:%S UTC"))),
    };
    let title = match state {
        "firing" => row.worker_id.clone(),
        _ => format!("{} · {}", row.worker_id, row.task_id),
    };
    Attention {
        run_id: row.run_id.clone(),
        worker_id: row.worker_id.clone(),
        task_id: row.task_id.clone(),
        title,
        state: state.to_owned(),
        detail: detail.map(|d| herald_messaging::truncate_chars(&d, 200)),
        updated_at: row.updated_at,
    }
}

/// What `/herald help` says.
pub const HELP: &str = "herald answers:\n/herald status [run] — tasks by state, and those that need attention\n/herald help — this";
