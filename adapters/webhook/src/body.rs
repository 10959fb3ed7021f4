//! The webhook body: a stable, versioned JSON document (docs/webhooks.md).

use herald_messaging::{MessageKind, Outbound};
use serde_json::{Value, json};

/// The `version` field of every body; bumped only on a breaking change.
pub const WEBHOOK_VERSION: u32 = 1;

/// The bytes to send for delivery `id` of `msg`. The same message and id
/// always give the same bytes, so a retried delivery is identical.
pub fn document(id: &str, msg: &Outbound) -> Result<Vec<u8>, serde_json::Error> {
    let state = msg
        .subject
        .as_ref()
        .map_or_else(|| msg.state.replace(' ', "_"), |s| s.state.clone());
    let kind = match msg.kind {
        MessageKind::Progress => "progress",
        MessageKind::Terminal => "terminal",
    };
    let event_type = match msg.kind {
        MessageKind::Terminal => format!("task.{state}"),
        MessageKind::Progress => "task.progress".to_owned(),
    };
    let task = match &msg.subject {
        Some(s) => json!({
            "run_id": s.run_id,
            "worker_id": s.worker_id,
            "task_id": s.task_id,
            "labels": s.labels,
        }),
        None => Value::Null,
    };
    let fields: serde_json::Map<String, Value> = msg
        .fields
        .iter()
        .map(|f| (f.name.clone(), Value::String(f.value.clone())))
        .collect();
    let doc = json!({
        "version": WEBHOOK_VERSION,
        "id": id,
        "type": event_type,
        "kind": kind,
        "task": task,
        "state": state,
        "severity": msg.severity,
        "title": msg.title,
        "summary": msg.body,
        "occurred_at": msg.subject.as_ref().and_then(|s| s.occurred_at.clone()),
        "fields": fields,
        "link": msg.link,
    });
    serde_json::to_vec(&doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_messaging::{Field, Severity, Subject};
    use std::collections::BTreeMap;

    #[test]
    fn terminal_document_carries_ids_state_labels_and_summary() {
        let msg = Outbound {
            kind: MessageKind::Terminal,
            title: "w · t".into(),
            state: "failed".into(),
            severity: Severity::Failure,
            fields: vec![Field {
                name: "run".into(),
                value: "r1".into(),
            }],
            body: Some("disk full".into()),
            idempotency_key: None,
            subject: Some(Subject {
                run_id: "r1".into(),
                worker_id: "w".into(),
                task_id: "t".into(),
                state: "failed".into(),
                labels: BTreeMap::from([("team".to_string(), "infra".to_string())]),
                occurred_at: Some("2026-06-12T17:02:00Z".into()),
            }),
            link: None,
            acknowledge: None,
            mentions: Vec::new(),
        };
        let bytes = document("hr1", &msg).unwrap();
        assert_eq!(bytes, document("hr1", &msg).unwrap(), "same input, same bytes");
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["id"], "hr1");
        assert_eq!(v["type"], "task.failed");
        assert_eq!(v["task"]["labels"]["team"], "infra");
        assert_eq!(v["summary"], "disk full");
        assert_eq!(v["occurred_at"], "2026-06-12T17:02:00Z");
    }
}
