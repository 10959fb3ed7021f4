//! What a person sees in a channel, counted per task: how many live
//! (progress) messages and terminal notifications each task has, and what
//! its live message says now. Shared by the crash tests and the bench.

use std::collections::BTreeMap;

/// One channel's messages, per task.
#[derive(Debug, Default)]
pub struct Shown {
    /// Live messages per task (more than one is a re-post).
    pub progress: BTreeMap<String, usize>,
    /// Terminal notifications per task (more than one is a duplicate).
    pub terminal: BTreeMap<String, usize>,
    /// The newest text of each task's live message.
    pub live_text: BTreeMap<String, String>,
}

impl Shown {
    /// Count `(text, is_terminal)` messages; a task is named in the text
    /// as `prefix` followed by `len - prefix.len()` more characters.
    pub fn count(messages: &[(String, bool)], prefix: &str, len: usize) -> Shown {
        let mut shown = Shown::default();
        for (text, terminal) in messages {
            let Some(start) = text.find(prefix) else { continue };
            let Some(task) = text.get(start..start + len) else {
                continue;
            };
            let task = task.to_owned();
            if *terminal {
                *shown.terminal.entry(task).or_default() += 1;
            } else {
                *shown.progress.entry(task.clone()).or_default() += 1;
                shown.live_text.insert(task, text.clone());
            }
        }
        shown
    }

    /// Tasks whose terminal notification is missing, duplicated, and
    /// whose live message was posted more than once, among `tasks`.
    pub fn faults(&self, tasks: &[String]) -> (usize, usize, usize) {
        let mut lost = 0;
        let mut duplicates = 0;
        let mut reposts = 0;
        for task in tasks {
            match self.terminal.get(task).copied().unwrap_or(0) {
                0 => lost += 1,
                n => duplicates += n - 1,
            }
            reposts += self.progress.get(task).copied().unwrap_or(0).saturating_sub(1);
        }
        (lost, duplicates, reposts)
    }

    /// Whether every one of `tasks` has a live message that says `state`.
    pub fn all_show(&self, tasks: &[String], state: &str) -> bool {
        tasks
            .iter()
            .all(|t| self.live_text.get(t).is_some_and(|text| text.contains(state)))
    }
}

/// A Discord message as (text, is terminal): terminal notifications carry
/// the receipt id (`hr…`) as their nonce.
pub fn discord_message(m: &serde_json::Value) -> (String, bool) {
    let terminal = m["nonce"].as_str().is_some_and(|n| n.starts_with("hr"));
    (m.to_string(), terminal)
}

/// A Slack message: terminal notifications carry the receipt id in their
/// metadata.
pub fn slack_message(m: &serde_json::Value) -> (String, bool) {
    let key = m["metadata"]["event_payload"]["receipt_id"]
        .as_str()
        .unwrap_or("");
    (m.to_string(), key.starts_with("hr"))
}

/// A Telegram message: terminal notifications show a duration (live
/// messages an elapsed time).
pub fn telegram_message(m: &serde_json::Value) -> (String, bool) {
    let text = m["text"].as_str().unwrap_or("").to_owned();
    let terminal = text.contains("\nduration:");
    (text, terminal)
}
