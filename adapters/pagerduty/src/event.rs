//! The Events API v2 event herald sends for one notification.

use std::collections::BTreeMap;

use herald_messaging::{Outbound, Severity};
use serde::Serialize;

/// PagerDuty's limit on `payload.summary`.
pub const SUMMARY_CHARS: usize = 1024;

/// `payload.severity`, as the Events API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PagerDutySeverity {
    /// critical
    Critical,
    /// error
    Error,
    /// warning
    Warning,
    /// info
    Info,
}

impl PagerDutySeverity {
    /// From config text (`critical`, `error`, `warning`, `info`).
    pub fn parse(text: &str) -> Option<PagerDutySeverity> {
        match text {
            "critical" => Some(PagerDutySeverity::Critical),
            "error" => Some(PagerDutySeverity::Error),
            "warning" => Some(PagerDutySeverity::Warning),
            "info" => Some(PagerDutySeverity::Info),
            _ => None,
        }
    }
}

/// `event_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Open (or update) the task's alert.
    Trigger,
    /// Someone is on it: the incident stops notifying, stays open.
    Acknowledge,
    /// Close it.
    Resolve,
}

/// The protocol state of herald's event saying someone acknowledged the
/// task in chat.
const ACKNOWLEDGED: &str = "acknowledged";

/// What a notification does to the task's alert: someone acknowledging
/// the task in chat acknowledges it; a task that ended well, or was
/// cancelled, resolves it; anything else (failed, stale, deadline,
/// escalated) triggers it.
pub fn action_for(msg: &Outbound) -> Action {
    if msg.subject.as_ref().is_some_and(|s| s.state == ACKNOWLEDGED) {
        return Action::Acknowledge;
    }
    match msg.severity {
        Severity::Success | Severity::Neutral => Action::Resolve,
        Severity::Progress | Severity::Attention | Severity::Failure => Action::Trigger,
    }
}

/// The alert's key: the task's incident key (stable for run, worker and
/// task), so every trigger and the resolve of one task address the same
/// alert.
pub fn dedup_key(msg: &Outbound) -> String {
    match &msg.subject {
        Some(s) => s.incident_key(),
        None => {
            let name = msg
                .idempotency_key
                .as_ref()
                .map_or(msg.title.as_str(), |k| k.as_str());
            herald_messaging::truncate_chars(&format!("herald/{name}"), herald_messaging::INCIDENT_KEY_CHARS)
        }
    }
}

/// `payload`.
#[derive(Debug, Serialize)]
pub struct Payload {
    summary: String,
    source: String,
    severity: PagerDutySeverity,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    class: Option<String>,
    custom_details: BTreeMap<String, String>,
}

/// One of a trigger's `links`.
#[derive(Debug, Serialize)]
pub struct EventLink {
    href: String,
    text: &'static str,
}

/// The body of `POST /v2/enqueue`.
#[derive(Debug, Serialize)]
pub struct EnqueueEvent {
    routing_key: String,
    event_action: Action,
    /// The alert's key.
    pub dedup_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Payload>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    links: Vec<EventLink>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<&'static str>,
}

/// The event for one notification. An acknowledge or a resolve carries no
/// payload (the Events API ignores one).
pub fn event_for(msg: &Outbound, routing_key: &str, severity: PagerDutySeverity) -> EnqueueEvent {
    let action = action_for(msg);
    let payload = (action == Action::Trigger).then(|| {
        let mut summary = format!("{} — {}", msg.title, msg.state);
        if let Some(body) = &msg.body {
            summary.push_str(": ");
            summary.push_str(body);
        }
        let mut custom_details: BTreeMap<String, String> = msg
            .fields
            .iter()
            .map(|f| (f.name.clone(), f.value.clone()))
            .collect();
        if let Some(s) = &msg.subject {
            for (k, v) in &s.labels {
                custom_details.insert(format!("label {k}"), v.clone());
            }
        }
        Payload {
            summary: herald_messaging::truncate_chars(&summary, SUMMARY_CHARS),
            source: msg
                .subject
                .as_ref()
                .map_or_else(|| "herald".to_owned(), |s| s.worker_id.clone()),
            severity,
            timestamp: msg.subject.as_ref().and_then(|s| s.occurred_at.clone()),
            component: msg.subject.as_ref().map(|s| s.task_id.clone()),
            group: msg.subject.as_ref().map(|s| s.run_id.clone()),
            class: msg.subject.as_ref().map(|s| s.state.clone()),
            custom_details,
        }
    });
    EnqueueEvent {
        routing_key: routing_key.to_owned(),
        event_action: action,
        dedup_key: dedup_key(msg),
        payload,
        links: match (&msg.link, action) {
            (Some(href), Action::Trigger) => vec![EventLink {
                href: href.clone(),
                text: "source",
            }],
            _ => Vec::new(),
        },
        client: (action == Action::Trigger).then_some("herald"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_messaging::{MessageKind, Subject};

    fn msg(severity: Severity, task: &str) -> Outbound {
        Outbound {
            kind: MessageKind::Terminal,
            title: "w · t".into(),
            state: "failed".into(),
            severity,
            fields: vec![],
            body: Some("boom".into()),
            idempotency_key: None,
            subject: Some(Subject {
                run_id: "r".into(),
                worker_id: "w".into(),
                task_id: task.into(),
                state: "failed".into(),
                labels: Default::default(),
                occurred_at: None,
            }),
            link: None,
            acknowledge: None,
            mentions: Vec::new(),
        }
    }

    #[test]
    fn an_acknowledgement_in_chat_acknowledges_the_same_alert_without_a_payload() {
        let failed = event_for(&msg(Severity::Failure, "t"), "k", PagerDutySeverity::Error);
        let mut acknowledged = msg(Severity::Neutral, "t");
        if let Some(s) = acknowledged.subject.as_mut() {
            s.state = "acknowledged".into();
        }
        let ack = event_for(&acknowledged, "k", PagerDutySeverity::Error);
        assert_eq!(ack.event_action, Action::Acknowledge);
        assert_eq!(ack.dedup_key, failed.dedup_key);
        let body = serde_json::to_value(&ack).unwrap();
        assert_eq!(body["event_action"], "acknowledge");
        assert!(
            body.get("payload").is_none() && body.get("client").is_none(),
            "{body}"
        );
    }

    #[test]
    fn failures_trigger_and_successes_resolve_the_same_alert() {
        let failed = event_for(&msg(Severity::Failure, "t"), "k", PagerDutySeverity::Error);
        let done = event_for(&msg(Severity::Success, "t"), "k", PagerDutySeverity::Error);
        assert_eq!(failed.event_action, Action::Trigger);
        assert_eq!(done.event_action, Action::Resolve);
        assert_eq!(failed.dedup_key, done.dedup_key);
        assert_eq!(failed.dedup_key, "herald/r/w/t");
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["payload"]["summary"], "w · t — failed: boom");
        assert_eq!(json["payload"]["severity"], "error");
        assert!(serde_json::to_value(&done).unwrap().get("payload").is_none());
    }

    #[test]
    fn long_ids_hash_into_a_key_pagerduty_takes() {
        let key = dedup_key(&msg(Severity::Failure, &"x".repeat(400)));
        assert!(key.len() <= 255 && key.starts_with("herald/sha256/"), "{key}");
    }
}
