//! Worker-task state → platform-neutral [`Outbound`] message (SPEC §6.9):
//! every message names its worker task and run, says its state in words, and
//! a terminal notification carries the summary or reason.

use std::collections::BTreeMap;

use chrono::SecondsFormat;
use herald_messaging::{Field, IdempotencyKey, MessageKind, Outbound, Severity, Subject};

use crate::escalations::Acknowledgement;
use crate::protocol::{FleetWorkerEvent, WorkerState};

/// What a message is about: the task's identity and displayed event.
#[derive(Debug, Clone, Copy)]
pub struct TaskView<'a> {
    /// Run id.
    pub run_id: &'a str,
    /// Worker id.
    pub worker_id: &'a str,
    /// Task id.
    pub task_id: &'a str,
    /// The event to show.
    pub event: &'a FleetWorkerEvent,
    /// Unix ms of the task's first event.
    pub first_seen_at: i64,
    /// Unix ms of the moment shown (last update, or now for a live view).
    pub as_of: i64,
    /// The task's labels.
    pub labels: &'a BTreeMap<String, String>,
    /// Herald marked the task stale (the worker's last event was at
    /// `as_of`): a live message says so over the last state shown.
    pub stale: bool,
    /// Channels the task is escalated to: a live message names them.
    pub escalated_to: &'a [String],
    /// Who acknowledged the task: its messages name them.
    pub acknowledged: Option<&'a Acknowledgement>,
}

/// The live progress message of a task.
pub fn progress(view: &TaskView<'_>) -> Outbound {
    message(view, MessageKind::Progress, "elapsed", None)
}

/// The notification of a receipt, keyed by its receipt id: a task's end,
/// herald's stale mark or escalation, or — when the event notified is a
/// progress event, which only an escalation's resolution notifies — the
/// task's recovery (PagerDuty resolves on it).
pub fn terminal(view: &TaskView<'_>, receipt_id: &str) -> Outbound {
    let mut out = message(
        view,
        MessageKind::Terminal,
        "duration",
        Some(IdempotencyKey(receipt_id.to_owned())),
    );
    if wants_acknowledgement(view.event) {
        out.acknowledge = Some(acknowledge_token(receipt_id));
    }
    if view.event.state.class() == crate::protocol::StateClass::Progress {
        out.state = format!("recovered ({})", state_words(view.event.state.name()));
        out.severity = Severity::Success;
        out.body = Some("the worker is heard from again".to_owned());
    }
    out
}

/// Whether a notification asks for someone (SPEC §3.5): a failure for good
/// or an attention state (stale, escalated, firing, a recoverable failure)
/// carries an Acknowledge button; endings that need no one do not.
pub fn wants_acknowledgement(event: &FleetWorkerEvent) -> bool {
    matches!(severity(&event.state), Severity::Failure | Severity::Attention)
        && !matches!(event.state, WorkerState::Acknowledged { .. })
}

/// The token of a receipt's Acknowledge button (Slack value, Discord
/// `custom_id`, Telegram `callback_data`, at most 64 bytes): `ack:` and the
/// receipt id. A press is believed only for the message that receipt
/// posted, in its channel (`inbound/acknowledge.rs`).
pub fn acknowledge_token(receipt_id: &str) -> String {
    format!("ack:{receipt_id}")
}

/// A notification once someone acknowledged it: who and when, no button.
pub fn as_acknowledged(mut out: Outbound, ack: &Acknowledgement) -> Outbound {
    out.acknowledge = None;
    out.fields.push(acknowledged_field(ack));
    out
}

fn acknowledged_field(ack: &Acknowledgement) -> Field {
    field("acknowledged by", acknowledgement_words(ack))
}

/// `Ana (discord) at 10:04:05 UTC`.
pub fn acknowledgement_words(ack: &Acknowledgement) -> String {
    format!("{} at {}", ack.by, utc_time(ack.at))
}

/// A notification sent in place of one `missed` missed (`why`): marked as a
/// fallback in its headline, naming the channel and why.
pub fn as_fallback(mut out: Outbound, missed: &str, why: &str) -> Outbound {
    out.title = format!("{} (fallback for {missed})", out.title);
    out.fields
        .insert(0, field("fallback for", format!("{missed}: {why}")));
    out
}

fn message(
    view: &TaskView<'_>,
    kind: MessageKind,
    time_label: &str,
    key: Option<IdempotencyKey>,
) -> Outbound {
    if let WorkerState::Firing { alert } | WorkerState::Resolved { alert } = &view.event.state {
        return alert_message(view, alert, kind, key);
    }
    let state = view.event.state.name();
    let mut fields = identity_fields(view);
    fields.push(field(time_label, format_elapsed(view.as_of - view.first_seen_at)));
    if view.stale {
        fields.push(field(
            "last event",
            format!("{} ({})", utc_time(view.as_of), state_words(state)),
        ));
    }
    fields.extend(detail_fields(&view.event.state));
    if !view.escalated_to.is_empty() && !matches!(view.event.state, WorkerState::Escalated { .. }) {
        fields.push(field("escalated to", view.escalated_to.join(", ")));
    }
    if let Some(ack) = view.acknowledged {
        fields.push(acknowledged_field(ack));
    }
    let (words, severity) = if view.stale {
        (
            format!("stale (no event since {})", utc_time(view.as_of)),
            Severity::Attention,
        )
    } else {
        (state_words(state), severity(&view.event.state))
    };
    Outbound {
        kind,
        title: title(view),
        state: words,
        severity,
        fields,
        body: body(view.event),
        idempotency_key: key,
        subject: Some(Subject {
            run_id: view.run_id.to_owned(),
            worker_id: view.worker_id.to_owned(),
            task_id: view.task_id.to_owned(),
            state: state.to_owned(),
            labels: view.labels.clone(),
            occurred_at: Some(view.event.timestamp.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        }),
        link: None,
        acknowledge: None,
        mentions: Vec::new(),
    }
}

/// Labels that say where an alert is, when it has no `instance`.
const PLACE_LABELS: &[&str] = &[
    "instance",
    "pod",
    "service",
    "job",
    "host",
    "node",
    "namespace",
    "cluster",
];

/// An alert as an on-call engineer reads it: what (`HighLatency`), where
/// (`on api-1:9090`), how bad (severity), since when, what it says
/// (summary, description) and where to look (its source link).
fn alert_message(
    view: &TaskView<'_>,
    alert: &crate::protocol::AlertDetails,
    kind: MessageKind,
    key: Option<IdempotencyKey>,
) -> Outbound {
    let firing = matches!(view.event.state, WorkerState::Firing { .. });
    let place = PLACE_LABELS
        .iter()
        .find_map(|l| view.labels.get(*l).map(|v| (*l, v)));
    let title = match place {
        Some((_, where_)) => format!("{} on {where_}", view.worker_id),
        None => view.worker_id.to_owned(),
    };
    let mut fields = Vec::new();
    if let Some(severity) = view.labels.get("severity") {
        fields.push(field("severity", severity.clone()));
    }
    if let Some((label, value)) = place {
        fields.push(field(label, value.clone()));
    }
    let since = chrono::DateTime::parse_from_rfc3339(&alert.starts_at)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        })
        .unwrap_or_else(|_| alert.starts_at.clone());
    fields.push(field("since", since));
    if !firing {
        fields.push(field(
            "resolved",
            view.event.timestamp.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        ));
        if kind == MessageKind::Terminal
            && let Ok(started) = chrono::DateTime::parse_from_rfc3339(&alert.starts_at)
        {
            let lasted = view.event.timestamp.timestamp_millis() - started.timestamp_millis();
            fields.push(field("duration", format_elapsed(lasted)));
        }
    }
    fields.push(field("from", view.run_id.to_owned()));
    if let Some(ack) = view.acknowledged {
        fields.push(acknowledged_field(ack));
    }
    let body = match (&alert.summary, &alert.description) {
        (Some(s), Some(d)) if s != d => Some(format!("{s}\n{d}")),
        (Some(s), _) => Some(s.clone()),
        (None, d) => d.clone(),
    };
    Outbound {
        kind,
        title,
        state: if firing { "firing" } else { "resolved" }.to_owned(),
        severity: match (firing, view.labels.get("severity").map(String::as_str)) {
            (false, _) => Severity::Success,
            (true, Some("critical" | "page" | "error")) => Severity::Failure,
            (true, _) => Severity::Attention,
        },
        fields,
        body,
        idempotency_key: key,
        subject: Some(Subject {
            run_id: view.run_id.to_owned(),
            worker_id: view.worker_id.to_owned(),
            task_id: view.task_id.to_owned(),
            state: view.event.state.name().to_owned(),
            labels: view.labels.clone(),
            occurred_at: Some(view.event.timestamp.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        }),
        link: alert
            .generator_url
            .clone()
            .filter(|u| u.starts_with("http://") || u.starts_with("https://")),
        acknowledge: None,
        mentions: Vec::new(),
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

/// A Unix-ms moment as `HH:MM:SS UTC`.
fn utc_time(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%H:%M:%S UTC").to_string())
}

/// A state name in words: `running_tool` → `running tool`.
pub fn state_words(state: &str) -> String {
    state.replace('_', " ")
}

fn severity(state: &WorkerState) -> Severity {
    match state {
        WorkerState::Completed { .. } => Severity::Success,
        // Only notified to where an escalation is open: someone is on it.
        WorkerState::Cancelled { .. } | WorkerState::Acknowledged { .. } => Severity::Neutral,
        WorkerState::Failed {
            recoverable: true, ..
        } => Severity::Attention,
        WorkerState::Failed { .. } => Severity::Failure,
        WorkerState::Interrupted { .. }
        | WorkerState::Stale { .. }
        | WorkerState::Restarted { .. }
        | WorkerState::Escalated { .. } => Severity::Attention,
        _ => Severity::Progress,
    }
}

fn body(event: &FleetWorkerEvent) -> Option<String> {
    match &event.state {
        WorkerState::Completed { summary, .. } => summary.clone(),
        WorkerState::Failed { reason, .. } => Some(reason.clone()),
        WorkerState::Escalated { .. } => event.escalation_reason().map(str::to_owned),
        _ => None,
    }
}

fn detail_fields(state: &WorkerState) -> Vec<Field> {
    let mut out = Vec::new();
    let mut push = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            out.push(field(name, value));
        }
    };
    match state {
        WorkerState::RunningTool { tool, .. } => push("tool", Some(tool.clone())),
        WorkerState::ModelWait { model } => push("model", model.clone()),
        WorkerState::Artifact { kind, path, .. } => {
            push("artifact", Some(path.clone()));
            push("kind", Some(kind.clone()));
        }
        WorkerState::Interrupted { signal } => push("signal", signal.clone()),
        WorkerState::Stale { last_heartbeat_at } => push("last heartbeat", last_heartbeat_at.clone()),
        WorkerState::Restarted { restart_count } => push("restarts", Some(restart_count.to_string())),
        WorkerState::Escalated { channel, .. } => push("escalated to", Some(channel.clone())),
        WorkerState::Completed { exit_code, .. } => push("exit code", exit_code.map(|c| c.to_string())),
        WorkerState::Cancelled { cancelled_by } => push("cancelled by", cancelled_by.clone()),
        WorkerState::Leased { lease_expires_at } => push("lease expires", lease_expires_at.clone()),
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
    use crate::protocol::parse_event;
    use serde_json::json;

    fn event(fields: serde_json::Value) -> FleetWorkerEvent {
        let mut body = json!({"seq": 9, "run_id": "r", "worker_id": "w", "task_id": "t",
                              "timestamp": "2026-12-01T00:00:00Z"});
        if let (Some(b), serde_json::Value::Object(f)) = (body.as_object_mut(), fields) {
            b.extend(f);
        }
        parse_event(body).expect("a valid event")
    }

    #[test]
    fn terminal_names_task_state_and_summary() {
        let event = event(json!({"state": "failed", "reason": "out of memory"}));
        let view = TaskView {
            run_id: "nightly-7",
            worker_id: "worker-a",
            task_id: "build",
            event: &event,
            first_seen_at: 0,
            as_of: 75_000,
            labels: &BTreeMap::new(),
            stale: false,
            escalated_to: &[],
            acknowledged: None,
        };
        let msg = terminal(&view, "hr1");
        assert_eq!(msg.title, "worker-a · build");
        assert_eq!(msg.state, "failed");
        assert_eq!(msg.severity, Severity::Failure);
        assert_eq!(msg.body.as_deref(), Some("out of memory"));
        let text = msg.plain_text();
        assert!(text.contains("nightly-7") && text.contains("1m 15s"), "{text}");
        assert_eq!(msg.idempotency_key, Some(IdempotencyKey("hr1".into())));
        let subject = msg.subject.expect("a subject");
        assert_eq!(subject.occurred_at.as_deref(), Some("2026-12-01T00:00:00Z"));
    }

    #[test]
    fn progress_shows_tool() {
        let event = event(json!({"state": "running_tool", "tool": "cargo test"}));
        let view = TaskView {
            run_id: "r",
            worker_id: "w",
            task_id: "t",
            event: &event,
            first_seen_at: 0,
            as_of: 3_600_000,
            labels: &BTreeMap::new(),
            stale: false,
            escalated_to: &[],
            acknowledged: None,
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

    #[test]
    fn escalations_say_why_recoveries_resolve_and_live_messages_name_where_it_went() {
        let escalated = crate::protocol::parse_stored_event(json!({
            "seq": -1_099_511_627_777_i64, "run_id": "r", "worker_id": "w", "task_id": "t",
            "timestamp": "2026-12-01T00:00:00Z", "state": "escalated", "channel": "oncall",
            "alert_id": "herald/r/w/t",
            "extra": {"source": "herald", "condition": "stale#1", "why": "stale: no event for 6s"}
        }))
        .expect("herald's escalation");
        let labels = BTreeMap::new();
        fn view<'a>(
            event: &'a FleetWorkerEvent,
            labels: &'a BTreeMap<String, String>,
            escalated_to: &'a [String],
        ) -> TaskView<'a> {
            TaskView {
                run_id: "r",
                worker_id: "w",
                task_id: "t",
                event,
                first_seen_at: 0,
                as_of: 6_000,
                labels,
                stale: false,
                escalated_to,
                acknowledged: None,
            }
        }
        let page = terminal(&view(&escalated, &labels, &[]), "hr1");
        assert_eq!(page.state, "escalated");
        assert_eq!(page.severity, Severity::Attention);
        assert_eq!(page.body.as_deref(), Some("stale: no event for 6s"));
        assert!(
            page.fields
                .iter()
                .any(|f| f.name == "escalated to" && f.value == "oncall")
        );

        let running = event(json!({"state": "running"}));
        let recovered = terminal(&view(&running, &labels, &[]), "hr2");
        assert_eq!(recovered.state, "recovered (running)");
        assert_eq!(recovered.severity, Severity::Success);

        let open = ["oncall".to_owned(), "hook".to_owned()];
        let live = progress(&view(&running, &labels, &open));
        assert_eq!(live.state, "running");
        assert!(
            live.fields
                .iter()
                .any(|f| f.name == "escalated to" && f.value == "oncall, hook")
        );
    }

    #[test]
    fn an_alert_reads_what_where_how_bad_since_when_and_where_to_look() {
        let firing = crate::alerts::parse(
            crate::alerts::AlertSource::Alertmanager,
            &json!({"version": "4", "alerts": [{
                "status": "firing",
                "labels": {"alertname": "HighLatency", "instance": "api-1:9090", "severity": "critical"},
                "annotations": {"summary": "p99 above 2 s", "description": "for 10 minutes"},
                "startsAt": "2026-12-01T10:00:00Z",
                "generatorURL": "http://prometheus/graph?g0.expr=x",
                "fingerprint": "abc123"
            }]}),
        )
        .expect("a payload")
        .remove(0);
        let labels = firing.labels();
        let view = TaskView {
            run_id: &firing.run_id,
            worker_id: &firing.worker_id,
            task_id: &firing.task_id,
            event: &firing,
            first_seen_at: 0,
            as_of: 0,
            labels: &labels,
            stale: false,
            escalated_to: &[],
            acknowledged: None,
        };
        let live = progress(&view);
        assert_eq!(live.title, "HighLatency on api-1:9090");
        assert_eq!(live.state, "firing");
        assert_eq!(live.severity, Severity::Failure, "critical is red");
        assert_eq!(live.body.as_deref(), Some("p99 above 2 s\nfor 10 minutes"));
        let text = live.plain_text();
        for part in [
            "severity: critical",
            "instance: api-1:9090",
            "since: 2026-12-01 10:00:00 UTC",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
        assert_eq!(live.link.as_deref(), Some("http://prometheus/graph?g0.expr=x"));
        let mut resolved = firing.clone();
        resolved.seq = 2;
        resolved.timestamp = chrono::DateTime::parse_from_rfc3339("2026-12-01T10:12:30Z")
            .expect("a time")
            .with_timezone(&chrono::Utc);
        resolved.state = match &firing.state {
            WorkerState::Firing { alert } => WorkerState::Resolved { alert: alert.clone() },
            other => other.clone(),
        };
        let note = terminal(
            &TaskView {
                event: &resolved,
                ..view
            },
            "hr1",
        );
        assert_eq!(
            (note.state.as_str(), note.severity),
            ("resolved", Severity::Success)
        );
        assert!(
            note.plain_text().contains("duration: 12m 30s"),
            "{}",
            note.plain_text()
        );
        assert!(
            !progress(&TaskView {
                event: &resolved,
                ..view
            })
            .plain_text()
            .contains("duration")
        );
    }

    #[test]
    fn failures_and_attention_ask_for_someone_and_endings_that_need_no_one_do_not() {
        let labels = BTreeMap::new();
        let view = |event| TaskView {
            run_id: "r",
            worker_id: "w",
            task_id: "t",
            event,
            first_seen_at: 0,
            as_of: 1_000,
            labels: &labels,
            stale: false,
            escalated_to: &[],
            acknowledged: None,
        };
        let failed = crate::protocol::parse_event(serde_json::json!({
            "seq": 1, "run_id": "r", "worker_id": "w", "task_id": "t",
            "timestamp": "2026-01-01T00:00:00Z", "state": "failed", "reason": "boom",
        }))
        .expect("an event");
        let out = terminal(&view(&failed), "hr1");
        assert_eq!(out.acknowledge.as_deref(), Some("ack:hr1"));
        let ack = Acknowledgement {
            by: "ana (slack)".into(),
            at: 3_723_000,
        };
        let done = as_acknowledged(out, &ack);
        assert_eq!(done.acknowledge, None);
        let last = done.fields.last().expect("a field");
        assert_eq!(
            (last.name.as_str(), last.value.as_str()),
            ("acknowledged by", "ana (slack) at 01:02:03 UTC")
        );
        let mut completed = failed.clone();
        completed.state = WorkerState::Completed {
            exit_code: None,
            summary: None,
        };
        assert_eq!(terminal(&view(&completed), "hr2").acknowledge, None);
    }
}
