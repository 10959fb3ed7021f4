//! The Agent Fleet control-plane event (`FleetWorkerEvent`, protocol 0.1.0)
//! and its state classes (SPEC §4).
//!
//! Parsing is written by hand over `serde_json::Value` rather than derived,
//! because a rejected batch must name the exact bad field (`"field":
//! "tool"`), which serde's messages do not expose in a typed way.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Longest accepted id (`run_id`, `worker_id`, `task_id`), in bytes. Ids are
/// keys and message titles; unbounded ones would let one client bloat both.
pub const MAX_ID_BYTES: usize = 256;

/// Every `state` the protocol knows, in lifecycle order. Listed in the 400
/// answer to an unknown state.
pub const KNOWN_STATES: &[&str] = &[
    "queued",
    "leased",
    "starting",
    "running",
    "model_wait",
    "running_tool",
    "heartbeat",
    "artifact",
    "interrupted",
    "stale",
    "restarted",
    "escalated",
    "completed",
    "failed",
    "cancelled",
];

/// The states of alerts taken in from Alertmanager and Grafana (SPEC §3.4):
/// herald makes them from those payloads; a worker cannot send them.
pub const ALERT_STATES: &[&str] = &["firing", "resolved"];

/// The seq of herald's `acknowledged` event: one per task, so a second
/// press of Acknowledge (on any platform, on any replica) is a repeat the
/// journal drops, and the first person stays the one named.
pub const ACKNOWLEDGED_SEQ: i64 = -(1 << 41);

/// How an event matters to the people watching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateClass {
    /// Work is moving.
    Progress,
    /// Someone may need to look, but the task is not over.
    Attention,
    /// The task is over: a terminal notification is due.
    Terminal,
}

/// The state tag and the payload fields that sit beside it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum WorkerState {
    Queued,
    Leased {
        #[serde(skip_serializing_if = "Option::is_none")]
        lease_expires_at: Option<String>,
    },
    Starting,
    Running,
    ModelWait {
        #[serde(skip_serializing_if = "Option::is_none")]
        model: Option<String>,
    },
    RunningTool {
        tool: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
    },
    Heartbeat {
        #[serde(skip_serializing_if = "Option::is_none")]
        cpu_percent: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        memory_mb: Option<f64>,
    },
    Artifact {
        kind: String,
        path: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        checksum: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        mime_type: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        size_bytes: Option<u64>,
    },
    Interrupted {
        #[serde(skip_serializing_if = "Option::is_none")]
        signal: Option<String>,
    },
    Stale {
        #[serde(skip_serializing_if = "Option::is_none")]
        last_heartbeat_at: Option<String>,
    },
    Restarted {
        restart_count: u64,
    },
    Escalated {
        channel: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        alert_id: Option<String>,
    },
    Completed {
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
    },
    Failed {
        reason: String,
        recoverable: bool,
    },
    Cancelled {
        #[serde(skip_serializing_if = "Option::is_none")]
        cancelled_by: Option<String>,
    },
    /// Someone pressed Acknowledge in chat (SPEC §3.5): herald's own
    /// event; the task is not escalated further.
    Acknowledged {
        /// Who, as the platform names them (`ana (slack)`).
        by: String,
    },
    /// An alert is firing (attention: its live message is the page).
    Firing {
        #[serde(flatten)]
        alert: AlertDetails,
    },
    /// An alert resolved (terminal).
    Resolved {
        #[serde(flatten)]
        alert: AlertDetails,
    },
}

/// What an on-call engineer reads of an alert, beside its labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AlertDetails {
    /// The `summary` annotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The `description` annotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where it comes from (`generatorURL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
    /// When it started firing (RFC 3339).
    pub starts_at: String,
}

impl WorkerState {
    /// The `state` tag as written on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            WorkerState::Queued => "queued",
            WorkerState::Leased { .. } => "leased",
            WorkerState::Starting => "starting",
            WorkerState::Running => "running",
            WorkerState::ModelWait { .. } => "model_wait",
            WorkerState::RunningTool { .. } => "running_tool",
            WorkerState::Heartbeat { .. } => "heartbeat",
            WorkerState::Artifact { .. } => "artifact",
            WorkerState::Interrupted { .. } => "interrupted",
            WorkerState::Stale { .. } => "stale",
            WorkerState::Restarted { .. } => "restarted",
            WorkerState::Escalated { .. } => "escalated",
            WorkerState::Completed { .. } => "completed",
            WorkerState::Failed { .. } => "failed",
            WorkerState::Cancelled { .. } => "cancelled",
            WorkerState::Firing { .. } => "firing",
            WorkerState::Resolved { .. } => "resolved",
            WorkerState::Acknowledged { .. } => "acknowledged",
        }
    }

    /// Progress, attention or terminal (SPEC §4 table).
    pub fn class(&self) -> StateClass {
        match self {
            WorkerState::Interrupted { .. }
            | WorkerState::Stale { .. }
            | WorkerState::Restarted { .. }
            | WorkerState::Escalated { .. }
            | WorkerState::Acknowledged { .. }
            | WorkerState::Firing { .. } => StateClass::Attention,
            WorkerState::Failed { recoverable, .. } => {
                if *recoverable {
                    StateClass::Attention
                } else {
                    StateClass::Terminal
                }
            }
            WorkerState::Completed { .. } | WorkerState::Cancelled { .. } | WorkerState::Resolved { .. } => {
                StateClass::Terminal
            }
            _ => StateClass::Progress,
        }
    }

    /// Whether this event ends the task.
    pub fn is_terminal(&self) -> bool {
        self.class() == StateClass::Terminal
    }

    /// Heartbeats refresh liveness but do not change what a task displays.
    pub fn is_heartbeat(&self) -> bool {
        matches!(self, WorkerState::Heartbeat { .. })
    }
}

/// One status event from a worker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetWorkerEvent {
    /// Per worker task sequence number; `(run_id, worker_id, task_id, seq)`
    /// identifies the event.
    pub seq: i64,
    /// The run this task belongs to.
    pub run_id: String,
    /// The worker doing the task.
    pub worker_id: String,
    /// The task.
    pub task_id: String,
    /// When the worker says it happened, normalised to RFC 3339 UTC.
    #[serde(serialize_with = "serialize_timestamp")]
    pub timestamp: DateTime<Utc>,
    /// The state and its payload.
    #[serde(flatten)]
    pub state: WorkerState,
    /// Free-form extra data; `extra.labels` feeds routing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<Map<String, Value>>,
    /// `extra.alert_policy` as the worker sent it, secrets included: only
    /// on an event just parsed from a worker (the journal keeps the
    /// redacted form in `extra`, never this).
    #[serde(skip)]
    pub policy: Option<std::sync::Arc<crate::alert_policy::FleetAlertPolicy>>,
}

fn serialize_timestamp<S: serde::Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&ts.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

impl FleetWorkerEvent {
    /// Herald made this event (stale mark, deadline failure): its seq is
    /// negative, which no worker may send.
    pub fn is_from_herald(&self) -> bool {
        self.seq < 0
    }

    /// `extra.silent_since` of herald's stale mark: the worker's last
    /// event as herald saw it (Unix ms).
    pub fn silent_since(&self) -> Option<i64> {
        self.extra.as_ref()?.get("silent_since")?.as_i64()
    }

    /// `extra.condition` of herald's `escalated` event: why it escalated.
    pub fn escalation_condition(&self) -> Option<crate::escalations::Condition> {
        crate::escalations::Condition::parse(self.extra.as_ref()?.get("condition")?.as_str()?)
    }

    /// `extra.why` of herald's `escalated` event: why, in words.
    pub fn escalation_reason(&self) -> Option<&str> {
        self.extra.as_ref()?.get("why")?.as_str()
    }

    /// Mark the event's own alert policy as used (the journal says so, and
    /// its task escalates by it).
    pub fn use_policy(&mut self) {
        if let (Some(policy), Some(extra)) = (&self.policy, self.extra.as_mut()) {
            extra.insert("alert_policy".to_owned(), policy.redacted(true));
        }
    }

    /// The escalation rule of the event's own alert policy, when herald
    /// uses it.
    pub fn policy_rule(&self) -> Option<crate::alert_policy::PolicyRule> {
        crate::alert_policy::PolicyRule::of(self.extra.as_ref()?.get("alert_policy")?)
    }

    /// `extra.timeout_seconds`: the task's own deadline, counted from its
    /// first event (validated at parse time).
    pub fn timeout(&self) -> Option<std::time::Duration> {
        self.extra
            .as_ref()?
            .get("timeout_seconds")?
            .as_f64()
            .filter(|s| *s > 0.0 && *s <= MAX_TIMEOUT_SECONDS)
            .map(std::time::Duration::from_secs_f64)
    }

    /// `extra.labels` as a string map (validated at parse time).
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        if let Some(Value::Object(map)) = self.extra.as_ref().and_then(|e| e.get("labels")) {
            for (k, v) in map {
                if let Value::String(s) = v {
                    labels.insert(k.clone(), s.clone());
                }
            }
        }
        labels
    }

    /// The summary or failure reason: the sentence a person wants to read.
    pub fn detail(&self) -> Option<&str> {
        match &self.state {
            WorkerState::Completed { summary, .. } => summary.as_deref(),
            WorkerState::Failed { reason, .. } => Some(reason),
            WorkerState::Firing { alert } | WorkerState::Resolved { alert } => alert.summary.as_deref(),
            _ => None,
        }
    }
}

/// Why an event was rejected: the offending field and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The JSON field at fault (`"state"`, `"tool"`, `"extra.labels.team"`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
    /// For an unknown state: the states that are accepted.
    pub known_states: Option<Vec<&'static str>>,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
            known_states: None,
        }
    }
}

/// Parse and validate one event object as a worker sends it.
pub fn parse_event(value: Value) -> Result<FleetWorkerEvent, FieldError> {
    parse(value, false)
}

/// Parse an event as the journal keeps it: also herald's own events
/// (stale marks, deadline failures), whose seqs are negative so they can
/// never collide with a worker's (`parse_event` refuses negative seqs).
pub fn parse_stored_event(value: Value) -> Result<FleetWorkerEvent, FieldError> {
    parse(value, true)
}

/// The longest `extra.timeout_seconds` taken (ten years).
const MAX_TIMEOUT_SECONDS: f64 = 315_360_000.0;

fn parse(value: Value, herald_seqs: bool) -> Result<FleetWorkerEvent, FieldError> {
    let Value::Object(mut obj) = value else {
        return Err(FieldError::new("", "an event must be a JSON object"));
    };
    let seq = match obj.get("seq") {
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|s| herald_seqs || *s >= 0)
            .ok_or_else(|| FieldError::new("seq", "must be a non-negative integer"))?,
        Some(_) => return Err(FieldError::new("seq", "must be a non-negative integer")),
        None => return Err(FieldError::new("seq", "is required")),
    };
    let run_id = required_id(&obj, "run_id")?;
    let worker_id = required_id(&obj, "worker_id")?;
    let task_id = required_id(&obj, "task_id")?;
    let timestamp = match obj.get("timestamp") {
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map_err(|e| FieldError::new("timestamp", format!("must be an RFC 3339 date-time ({e})")))?
            .with_timezone(&Utc),
        Some(_) => return Err(FieldError::new("timestamp", "must be an RFC 3339 string")),
        None => return Err(FieldError::new("timestamp", "is required")),
    };
    let state = parse_state(&obj, herald_seqs)?;
    let mut policy = None;
    let extra = match obj.remove("extra") {
        None | Some(Value::Null) => None,
        Some(Value::Object(mut extra)) => {
            validate_labels(&extra)?;
            validate_timeout(&extra)?;
            // The journal holds policies redacted already.
            if !herald_seqs {
                policy = keep_policy_without_secrets(&mut extra)?;
            }
            Some(extra)
        }
        Some(_) => return Err(FieldError::new("extra", "must be an object")),
    };
    Ok(FleetWorkerEvent {
        seq,
        run_id,
        worker_id,
        task_id,
        timestamp,
        state,
        extra,
        policy,
    })
}

/// `extra.alert_policy` is parsed strictly and kept without its secrets
/// (`alert_policy.rs`), as not used until ingest says otherwise.
fn keep_policy_without_secrets(
    extra: &mut Map<String, Value>,
) -> Result<Option<std::sync::Arc<crate::alert_policy::FleetAlertPolicy>>, FieldError> {
    let Some(value) = extra.get("alert_policy").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let policy = crate::alert_policy::parse(value).map_err(|e| FieldError::new(e.field, e.message))?;
    extra.insert("alert_policy".to_owned(), policy.redacted(false));
    Ok(Some(std::sync::Arc::new(policy)))
}

fn validate_timeout(extra: &Map<String, Value>) -> Result<(), FieldError> {
    match extra.get("timeout_seconds") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) if n.as_f64().is_some_and(|s| s > 0.0 && s <= MAX_TIMEOUT_SECONDS) => Ok(()),
        Some(_) => Err(FieldError::new(
            "extra.timeout_seconds",
            "must be a positive number of seconds (at most ten years)",
        )),
    }
}

fn validate_labels(extra: &Map<String, Value>) -> Result<(), FieldError> {
    match extra.get("labels") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(labels)) => {
            for (k, v) in labels {
                if !v.is_string() {
                    return Err(FieldError::new(
                        format!("extra.labels.{k}"),
                        "label values must be strings",
                    ));
                }
            }
            Ok(())
        }
        Some(_) => Err(FieldError::new(
            "extra.labels",
            "must be an object of string values",
        )),
    }
}

fn required_id(obj: &Map<String, Value>, field: &str) -> Result<String, FieldError> {
    match obj.get(field) {
        Some(Value::String(s)) if s.is_empty() => Err(FieldError::new(field, "must not be empty")),
        Some(Value::String(s)) if s.len() > MAX_ID_BYTES => Err(FieldError::new(
            field,
            format!("must be at most {MAX_ID_BYTES} bytes"),
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(FieldError::new(field, "must be a string")),
        None => Err(FieldError::new(field, "is required")),
    }
}

fn opt_string(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(FieldError::new(field, "must be a string")),
    }
}

fn req_string(obj: &Map<String, Value>, field: &str) -> Result<String, FieldError> {
    opt_string(obj, field)?.ok_or_else(|| FieldError::new(field, "is required for this state"))
}

fn opt_f64(obj: &Map<String, Value>, field: &str) -> Result<Option<f64>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(FieldError::new(field, "must be a number")),
    }
}

fn opt_u64(obj: &Map<String, Value>, field: &str) -> Result<Option<u64>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| FieldError::new(field, "must be a non-negative integer")),
        Some(_) => Err(FieldError::new(field, "must be a non-negative integer")),
    }
}

fn opt_i64(obj: &Map<String, Value>, field: &str) -> Result<Option<i64>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| FieldError::new(field, "must be an integer")),
        Some(_) => Err(FieldError::new(field, "must be an integer")),
    }
}

/// `stored`: the journal also holds alert states (which workers cannot send).
fn parse_state(obj: &Map<String, Value>, stored: bool) -> Result<WorkerState, FieldError> {
    let name = match obj.get("state") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(FieldError::new("state", "must be a string")),
        None => return Err(FieldError::new("state", "is required")),
    };
    let state = match name {
        "queued" => WorkerState::Queued,
        "leased" => WorkerState::Leased {
            lease_expires_at: opt_string(obj, "lease_expires_at")?,
        },
        "starting" => WorkerState::Starting,
        "running" => WorkerState::Running,
        "model_wait" => WorkerState::ModelWait {
            model: opt_string(obj, "model")?,
        },
        "running_tool" => WorkerState::RunningTool {
            tool: req_string(obj, "tool")?,
            call_id: opt_string(obj, "call_id")?,
        },
        "heartbeat" => WorkerState::Heartbeat {
            cpu_percent: opt_f64(obj, "cpu_percent")?,
            memory_mb: opt_f64(obj, "memory_mb")?,
        },
        "artifact" => WorkerState::Artifact {
            kind: req_string(obj, "kind")?,
            path: req_string(obj, "path")?,
            checksum: opt_string(obj, "checksum")?,
            mime_type: opt_string(obj, "mime_type")?,
            size_bytes: opt_u64(obj, "size_bytes")?,
        },
        "interrupted" => WorkerState::Interrupted {
            signal: opt_string(obj, "signal")?,
        },
        "stale" => WorkerState::Stale {
            last_heartbeat_at: opt_string(obj, "last_heartbeat_at")?,
        },
        "restarted" => WorkerState::Restarted {
            restart_count: opt_u64(obj, "restart_count")?
                .ok_or_else(|| FieldError::new("restart_count", "is required for this state"))?,
        },
        "escalated" => WorkerState::Escalated {
            channel: req_string(obj, "channel")?,
            alert_id: opt_string(obj, "alert_id")?,
        },
        "completed" => WorkerState::Completed {
            exit_code: opt_i64(obj, "exit_code")?,
            summary: opt_string(obj, "summary")?,
        },
        "failed" => WorkerState::Failed {
            reason: req_string(obj, "reason")?,
            recoverable: match obj.get("recoverable") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(FieldError::new("recoverable", "must be a boolean")),
            },
        },
        "cancelled" => WorkerState::Cancelled {
            cancelled_by: opt_string(obj, "cancelled_by")?,
        },
        "acknowledged" if stored => WorkerState::Acknowledged {
            by: req_string(obj, "by")?,
        },
        "firing" if stored => WorkerState::Firing {
            alert: alert_details(obj)?,
        },
        "resolved" if stored => WorkerState::Resolved {
            alert: alert_details(obj)?,
        },
        other => {
            return Err(FieldError {
                field: "state".into(),
                message: format!("unknown state {other:?}"),
                known_states: Some(KNOWN_STATES.to_vec()),
            });
        }
    };
    Ok(state)
}

fn alert_details(obj: &Map<String, Value>) -> Result<AlertDetails, FieldError> {
    Ok(AlertDetails {
        summary: opt_string(obj, "summary")?,
        description: opt_string(obj, "description")?,
        generator_url: opt_string(obj, "generator_url")?,
        starts_at: req_string(obj, "starts_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base(state: &str) -> Value {
        json!({"seq": 1, "run_id": "r", "worker_id": "w", "task_id": "t",
               "timestamp": "2026-06-12T17:02:00Z", "state": state})
    }

    #[test]
    fn parses_spec_example_and_ignores_unknown_fields() {
        let ev = parse_event(json!({"seq": 3, "run_id": "run-002", "worker_id": "worker-a",
            "task_id": "task-1", "timestamp": "2026-06-12T17:02:00Z", "state": "completed",
            "exit_code": 0, "summary": "ok", "extra": {"labels": {"team": "infra"}},
            "surprise": true}))
        .unwrap();
        assert_eq!(ev.state.name(), "completed");
        assert!(ev.state.is_terminal());
        assert_eq!(ev.labels().get("team").map(String::as_str), Some("infra"));
        let out = serde_json::to_value(&ev).unwrap();
        assert_eq!(out["state"], "completed");
        assert_eq!(out["summary"], "ok");
        assert!(out.get("surprise").is_none());
    }

    #[test]
    fn unknown_state_lists_known_states() {
        let err = parse_event(base("exploded")).unwrap_err();
        assert_eq!(err.field, "state");
        assert_eq!(err.known_states.unwrap().len(), KNOWN_STATES.len());
    }

    #[test]
    fn missing_payload_field_is_named() {
        assert_eq!(parse_event(base("running_tool")).unwrap_err().field, "tool");
        assert_eq!(parse_event(base("failed")).unwrap_err().field, "reason");
        let mut v = base("running");
        v["seq"] = json!(-1);
        assert_eq!(parse_event(v).unwrap_err().field, "seq");
        let mut v = base("running");
        v["timestamp"] = json!("yesterday");
        assert_eq!(parse_event(v).unwrap_err().field, "timestamp");
        let mut v = base("running");
        v["extra"] = json!({"labels": {"team": 3}});
        assert_eq!(parse_event(v).unwrap_err().field, "extra.labels.team");
    }

    #[test]
    fn failed_is_terminal_unless_recoverable() {
        let mut v = base("failed");
        v["reason"] = json!("oom");
        assert_eq!(
            parse_event(v.clone()).unwrap().state.class(),
            StateClass::Terminal
        );
        v["recoverable"] = json!(true);
        assert_eq!(parse_event(v).unwrap().state.class(), StateClass::Attention);
    }

    /// The store keeps events as their normalised JSON and types them
    /// again with `parse_event`: every state, with every field, must come
    /// back equal.
    #[test]
    fn the_stored_form_parses_back_to_the_same_event() {
        let samples = [
            json!({"state": "queued"}),
            json!({"state": "leased", "lease_expires_at": "2026-06-12T17:10:00Z"}),
            json!({"state": "starting"}),
            json!({"state": "running", "extra": {"labels": {"team": "infra"}, "note": [1, 2]}}),
            json!({"state": "model_wait", "model": "m-1"}),
            json!({"state": "running_tool", "tool": "cargo test", "call_id": "c1"}),
            json!({"state": "heartbeat", "cpu_percent": 12.5, "memory_mb": 300.0}),
            json!({"state": "artifact", "kind": "log", "path": "/a", "checksum": "x", "mime_type": "text/plain", "size_bytes": 12}),
            json!({"state": "interrupted", "signal": "SIGTERM"}),
            json!({"state": "stale", "last_heartbeat_at": "2026-06-12T17:00:00Z"}),
            json!({"state": "restarted", "restart_count": 2}),
            json!({"state": "escalated", "channel": "oncall", "alert_id": "a1"}),
            json!({"state": "completed", "exit_code": 0, "summary": "ok"}),
            json!({"state": "failed", "reason": "oom", "recoverable": true}),
            json!({"state": "cancelled", "cancelled_by": "alice"}),
        ];
        for sample in samples {
            let mut v = base(sample["state"].as_str().unwrap());
            v.as_object_mut()
                .unwrap()
                .extend(sample.as_object().unwrap().clone());
            let event = parse_event(v).unwrap();
            let stored = serde_json::to_value(&event).unwrap();
            assert_eq!(parse_event(stored).unwrap(), event, "{sample}");
        }
    }
}
