//! Alerts taken in from Prometheus Alertmanager (webhook payload version 4)
//! and Grafana (webhook contact point, version 1) (SPEC §3.4). Each alert
//! becomes a worker task — `run_id` = `alertmanager` or `grafana`,
//! `worker_id` = its `alertname`, `task_id` = its fingerprint (else a
//! stable hash of its labels) `@` its `startsAt`, its labels the task's —
//! and each notification of it an event: `firing` (seq 1, an attention
//! state: its live message is the page) or `resolved` (seq 2, terminal).
//! A repeated notification is the same event again, a duplicate; an alert
//! that fires again after it resolved has a new `startsAt`, so a new task
//! and a new live message.
//!
//! Both payloads are parsed strictly over `serde_json::Value`, like events,
//! so a bad one is a `400` naming its field and nothing is stored.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::protocol::{AlertDetails, FleetWorkerEvent, WorkerState};

/// Who sent a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertSource {
    /// Prometheus Alertmanager.
    Alertmanager,
    /// Grafana alerting.
    Grafana,
}

impl AlertSource {
    /// The tasks' `run_id`.
    pub fn run_id(self) -> &'static str {
        match self {
            AlertSource::Alertmanager => "alertmanager",
            AlertSource::Grafana => "grafana",
        }
    }

    /// The payload `version` it sends.
    fn version(self) -> &'static str {
        match self {
            AlertSource::Alertmanager => "4",
            AlertSource::Grafana => "1",
        }
    }
}

/// Why a payload was refused: the field at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError {
    /// The field (`alerts[2].startsAt`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> PayloadError {
    PayloadError {
        field: field.into(),
        message: message.into(),
    }
}

/// The longest label or annotation value kept (the rest is cut).
const MAX_VALUE_CHARS: usize = 4096;

fn string_map(value: Option<&Value>, field: &str) -> Result<BTreeMap<String, String>, PayloadError> {
    match value {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), herald_messaging::truncate_chars(s, MAX_VALUE_CHARS))),
                _ => Err(bad(format!("{field}.{k}"), "must be a string")),
            })
            .collect(),
        Some(_) => Err(bad(field, "must be an object of strings")),
    }
}

fn time(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<DateTime<Utc>>, PayloadError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| {
                bad(
                    format!("{path}.{key}"),
                    format!("must be an RFC 3339 date-time ({e})"),
                )
            }),
        Some(_) => Err(bad(format!("{path}.{key}"), "must be an RFC 3339 string")),
    }
}

fn text(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, PayloadError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(herald_messaging::truncate_chars(s, MAX_VALUE_CHARS))),
        Some(_) => Err(bad(format!("{path}.{key}"), "must be a string")),
    }
}

/// A stable key of an alert without a fingerprint: a hash of its labels.
fn labels_key(labels: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (k, v) in labels {
        hasher.update(k.as_bytes());
        hasher.update([0]);
        hasher.update(v.as_bytes());
        hasher.update([0]);
    }
    herald_messaging::hex(&hasher.finalize()[..8])
}

/// The events of one payload, in its order.
pub fn parse(source: AlertSource, payload: &Value) -> Result<Vec<FleetWorkerEvent>, PayloadError> {
    let Value::Object(obj) = payload else {
        return Err(bad("", "the payload must be a JSON object"));
    };
    match obj.get("version") {
        Some(Value::String(v)) if v == source.version() => {}
        Some(Value::String(v)) => {
            return Err(bad(
                "version",
                format!(
                    "payload version {v:?} is not supported (expected {:?})",
                    source.version()
                ),
            ));
        }
        Some(_) => return Err(bad("version", "must be a string")),
        None => return Err(bad("version", "is required")),
    }
    let alerts = match obj.get("alerts") {
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad("alerts", "must be an array")),
        None => return Err(bad("alerts", "is required")),
    };
    alerts
        .iter()
        .enumerate()
        .map(|(i, alert)| event(source, alert, &format!("alerts[{i}]")))
        .collect()
}

fn event(source: AlertSource, alert: &Value, path: &str) -> Result<FleetWorkerEvent, PayloadError> {
    let Value::Object(a) = alert else {
        return Err(bad(path, "must be an object"));
    };
    let firing = match a.get("status") {
        Some(Value::String(s)) if s == "firing" => true,
        Some(Value::String(s)) if s == "resolved" => false,
        Some(_) => {
            return Err(bad(
                format!("{path}.status"),
                "must be \"firing\" or \"resolved\"",
            ));
        }
        None => return Err(bad(format!("{path}.status"), "is required")),
    };
    let labels = string_map(a.get("labels"), &format!("{path}.labels"))?;
    let annotations = string_map(a.get("annotations"), &format!("{path}.annotations"))?;
    let alertname = labels
        .get("alertname")
        .filter(|n| !n.is_empty())
        .cloned()
        .ok_or_else(|| bad(format!("{path}.labels.alertname"), "is required"))?;
    let starts_at =
        time(a, "startsAt", path)?.ok_or_else(|| bad(format!("{path}.startsAt"), "is required"))?;
    let ends_at = time(a, "endsAt", path)?;
    let fingerprint = text(a, "fingerprint", path)?.unwrap_or_else(|| labels_key(&labels));
    let starts = starts_at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let details = AlertDetails {
        summary: annotations.get("summary").cloned(),
        description: annotations.get("description").cloned(),
        generator_url: text(a, "generatorURL", path)?,
        starts_at: starts.clone(),
    };
    let (seq, timestamp, state) = if firing {
        (1, starts_at, WorkerState::Firing { alert: details })
    } else {
        // Alertmanager sets endsAt on a resolved alert; without it the
        // moment it was heard of is when it resolved.
        let ended = ends_at.filter(|e| *e >= starts_at).unwrap_or_else(Utc::now);
        (2, ended, WorkerState::Resolved { alert: details })
    };
    let mut extra = Map::new();
    extra.insert(
        "labels".to_owned(),
        Value::Object(labels.into_iter().map(|(k, v)| (k, Value::String(v))).collect()),
    );
    if !annotations.is_empty() {
        extra.insert(
            "annotations".to_owned(),
            Value::Object(
                annotations
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
            ),
        );
    }
    Ok(FleetWorkerEvent {
        seq,
        run_id: source.run_id().to_owned(),
        worker_id: herald_messaging::truncate_chars(&alertname, crate::protocol::MAX_ID_BYTES / 4),
        task_id: format!("{}@{starts}", herald_messaging::truncate_chars(&fingerprint, 64)),
        timestamp,
        state,
        extra: Some(extra),
        policy: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(alerts: Value) -> Value {
        json!({"version": "4", "status": "firing", "receiver": "herald", "groupLabels": {},
               "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am", "groupKey": "{}",
               "truncatedAlerts": 0, "alerts": alerts})
    }

    fn alert(status: &str) -> Value {
        json!({"status": status, "labels": {"alertname": "DiskFull", "instance": "db-1", "team": "infra"},
               "annotations": {"summary": "disk 95%"}, "startsAt": "2026-12-01T10:00:00.123Z",
               "endsAt": "2026-12-01T10:05:00Z", "generatorURL": "http://prom/x", "fingerprint": "f00d"})
    }

    #[test]
    fn each_alert_is_a_task_firing_then_resolved_with_its_labels() {
        let events = parse(
            AlertSource::Alertmanager,
            &payload(json!([alert("firing"), alert("resolved")])),
        )
        .expect("valid");
        let (firing, resolved) = (&events[0], &events[1]);
        assert_eq!(firing.run_id, "alertmanager");
        assert_eq!(firing.worker_id, "DiskFull");
        assert_eq!(firing.task_id, "f00d@2026-12-01T10:00:00.123Z");
        assert_eq!(resolved.task_id, firing.task_id, "the same task");
        assert_eq!((firing.seq, resolved.seq), (1, 2));
        assert_eq!(firing.state.name(), "firing");
        assert!(resolved.state.is_terminal() && !firing.state.is_terminal());
        assert_eq!(resolved.timestamp.to_rfc3339(), "2026-12-01T10:05:00+00:00");
        assert_eq!(firing.labels().get("team").map(String::as_str), Some("infra"));
        // The journal reads it back as it was.
        let stored =
            crate::protocol::parse_stored_event(serde_json::to_value(firing).expect("json")).expect("back");
        assert_eq!(&stored, firing);
        // Without a fingerprint: a stable hash of the labels.
        let mut bare = alert("firing");
        bare.as_object_mut().expect("an object").remove("fingerprint");
        let a = parse(
            AlertSource::Grafana,
            &json!({"version": "1", "alerts": [bare.clone()]}),
        )
        .expect("valid");
        let b = parse(AlertSource::Grafana, &json!({"version": "1", "alerts": [bare]})).expect("valid");
        assert_eq!(a[0].task_id, b[0].task_id);
        assert_eq!(a[0].run_id, "grafana");
        // A worker cannot send alert states.
        assert!(crate::protocol::parse_event(serde_json::to_value(firing).expect("json")).is_err());
    }

    #[test]
    fn a_bad_payload_names_its_field() {
        let mut no_name = alert("firing");
        no_name["labels"]
            .as_object_mut()
            .expect("labels")
            .remove("alertname");
        let cases = [
            (json!({"version": "3", "alerts": []}), "version"),
            (json!({"alerts": []}), "version"),
            (json!({"version": "4"}), "alerts"),
            (payload(json!([{"status": "pending"}])), "alerts[0].status"),
            (payload(json!([no_name])), "alerts[0].labels.alertname"),
            (
                payload(
                    json!([alert("firing"), {"status": "firing", "labels": {"alertname": "x"}, "startsAt": "yesterday"}]),
                ),
                "alerts[1].startsAt",
            ),
            (
                payload(
                    json!([{"status": "firing", "labels": {"alertname": "x", "n": 3}, "startsAt": "2026-12-01T10:00:00Z"}]),
                ),
                "alerts[0].labels.n",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(
                parse(AlertSource::Alertmanager, &body)
                    .expect_err("refused")
                    .field,
                field,
                "{body}"
            );
        }
        assert_eq!(
            parse(AlertSource::Grafana, &payload(json!([])))
                .expect_err("v4 is not Grafana's")
                .field,
            "version"
        );
    }
}
