//! Worker-task state → platform-neutral [`Outbound`] message (SPEC §6.9):
//! every message names its worker task and run, says its state in words, and
//! a terminal notification carries the summary or reason.

use std::collections::BTreeMap;

use herald_messaging::{Field, IdempotencyKey, MessageKind, Outbound, Severity, Subject};
use serde_json::Value;

/// What a message is about: the task's identity and displayed event.
#[derive(Debug, Clone, Copy)]
pub struct TaskView<'a> {
    /// Run id.
    pub run_id: &'a str,
    /// Worker id.
    pub worker_id: &'a str,
    /// Task id.
    pub task_id: &'a str,
    /// The event to show (normalised JSON).
    pub event: &'a Value,
    /// Unix ms of the task's first event.
    pub first_seen_at: i64,
    /// Unix ms of the moment shown (last update, or now for a live view).
    pub as_of: i64,
    /// The task's labels.
    pub labels: &'a BTreeMap<String, String>,
}

/// The live progress message of a task.
pub fn progress(view: &TaskView<'_>) -> Outbound {
    message(view, MessageKind::Progress, "elapsed", None)
}

/// The terminal notification of a task, keyed by its receipt id.
pub fn terminal(view: &TaskView<'_>, receipt_id: &str) -> Outbound {
    message(
        view,
        MessageKind::Terminal,
        "duration",
        Some(IdempotencyKey(receipt_id.to_owned())),
    )
}

fn message(
    view: &TaskView<'_>,
    kind: MessageKind,
    time_label: &str,
    key: Option<IdempotencyKey>,
) -> Outbound {
    let state = str_field(view.event, "state").unwrap_or("unknown");
    let mut fields = identity_fields(view);
    fields.push(field(time_label, format_elapsed(view.as_of - view.first_seen_at)));
    fields.extend(detail_fields(view.event));
    Outbound {
        kind,
        title: title(view),
        state: state_words(state),
        severity: severity(view.event),
        fields,
        body: body(view.event),
        idempotency_key: key,
        subject: Some(Subject {
            run_id: view.run_id.to_owned(),
            worker_id: view.worker_id.to_owned(),
            task_id: view.task_id.to_owned(),
            state: state.to_owned(),
            labels: view.labels.clone(),
            occurred_at: str_field(view.event, "timestamp").map(str::to_owned),
        }),
    }
}

fn title(view: &TaskView<'_>) -> String {
    format!("{} · {}", view.worker_id, view.task_id)
}

fn identity_fields(view: &TaskView<'_>) -> Vec<Field> {
    vec![
        field("run", view.run_id.to_owned()),
        field("worker", view.worker_id.to_owned()),
        field("task", view.task_id.to_owned()),
    ]
}

fn field(name: &str, value: String) -> Field {
    Field {
        name: name.to_owned(),
        value,
    }
}

fn str_field<'a>(event: &'a Value, name: &str) -> Option<&'a str> {
    event.get(name).and_then(Value::as_str)
}

/// A state name in words: `running_tool` → `running tool`.
pub fn state_words(state: &str) -> String {
    state.replace('_', " ")
}

fn severity(event: &Value) -> Severity {
    match str_field(event, "state") {
        Some("completed") => Severity::Success,
        Some("cancelled") => Severity::Neutral,
        Some("failed") if event.get("recoverable").and_then(Value::as_bool) == Some(true) => {
            Severity::Attention
        }
        Some("failed") => Severity::Failure,
        Some("interrupted" | "stale" | "restarted" | "escalated") => Severity::Attention,
        _ => Severity::Progress,
    }
}

fn body(event: &Value) -> Option<String> {
    str_field(event, "summary")
        .or_else(|| str_field(event, "reason"))
        .map(str::to_owned)
}

fn detail_fields(event: &Value) -> Vec<Field> {
    let mut out = Vec::new();
    let mut push = |name: &str, key: &str| {
        if let Some(v) = event.get(key) {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push(field(name, text));
        }
    };
    match str_field(event, "state") {
        Some("running_tool") => push("tool", "tool"),
        Some("model_wait") => push("model", "model"),
        Some("artifact") => {
            push("artifact", "path");
            push("kind", "kind");
        }
        Some("interrupted") => push("signal", "signal"),
        Some("stale") => push("last heartbeat", "last_heartbeat_at"),
        Some("restarted") => push("restarts", "restart_count"),
        Some("escalated") => push("escalated to", "channel"),
        Some("completed") => push("exit code", "exit_code"),
        Some("cancelled") => push("cancelled by", "cancelled_by"),
        Some("leased") => push("lease expires", "lease_expires_at"),
        _ => {}
    }
    out
}

/// `75_000` ms → `1m 15s`.
pub fn format_elapsed(ms: i64) -> String {
    let secs = (ms.max(0) + 500) / 1000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn terminal_names_task_state_and_summary() {
        let event = json!({"state": "failed", "reason": "out of memory", "seq": 9});
        let view = TaskView {
            run_id: "nightly-7",
            worker_id: "worker-a",
            task_id: "build",
            event: &event,
            first_seen_at: 0,
            as_of: 75_000,
            labels: &BTreeMap::new(),
        };
        let msg = terminal(&view, "hr1");
        assert_eq!(msg.title, "worker-a · build");
        assert_eq!(msg.state, "failed");
        assert_eq!(msg.severity, Severity::Failure);
        assert_eq!(msg.body.as_deref(), Some("out of memory"));
        let text = msg.plain_text();
        assert!(text.contains("nightly-7") && text.contains("1m 15s"), "{text}");
        assert_eq!(msg.idempotency_key, Some(IdempotencyKey("hr1".into())));
    }

    #[test]
    fn progress_shows_tool() {
        let event = json!({"state": "running_tool", "tool": "cargo test"});
        let view = TaskView {
            run_id: "r",
            worker_id: "w",
            task_id: "t",
            event: &event,
            first_seen_at: 0,
            as_of: 3_600_000,
            labels: &BTreeMap::new(),
        };
        let msg = progress(&view);
        assert_eq!(msg.state, "running tool");
        assert!(
            msg.fields
                .iter()
                .any(|f| f.name == "tool" && f.value == "cargo test")
        );
        assert!(msg.fields.iter().any(|f| f.value == "1h 00m"));
    }
}
