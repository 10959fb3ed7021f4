//! A worker's own alert policy (`extra.alert_policy`, the Agent Fleet
//! `FleetAlertPolicy`): where to page and when — `channels` of kind
//! `slack {webhook_url}`, `webhook {url, secret?}` or `pager_duty
//! {routing_key, severity?}`, `after_attempts`, `after_minutes_stale`.
//!
//! It names URLs and carries secrets, so an event must not make herald POST
//! wherever it says. This version does not act on it: escalation is what
//! `[[escalations]]` configures (SPEC §5.4), and every event policy is
//! ignored and counted (`herald_event_policies_ignored_total`). What it does
//! do is parse the policy with the same strictness as the event (a bad one is
//! a `400` naming the field), and keep its secrets out of the journal: the
//! policy is stored redacted (routing keys and webhook secrets as `***`,
//! URLs as their origin and `/***`), so no API answer ever shows them.

use serde_json::{Map, Value};

/// Where one channel of an event's policy would page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyChannel {
    /// A Slack incoming webhook.
    Slack {
        /// The webhook URL (a secret in itself).
        webhook_url: String,
    },
    /// A signed webhook.
    Webhook {
        /// Where to POST.
        url: String,
        /// The signing secret.
        secret: Option<String>,
    },
    /// A PagerDuty service.
    PagerDuty {
        /// The integration's routing key.
        routing_key: String,
        /// `critical`, `error`, `warning` or `info`.
        severity: Option<String>,
    },
}

/// An event's alert policy, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetAlertPolicy {
    /// Where to page.
    pub channels: Vec<PolicyChannel>,
    /// Page after this many attempts.
    pub after_attempts: Option<u64>,
    /// Page after the task has been stale this many minutes.
    pub after_minutes_stale: Option<f64>,
}

/// Why a policy was refused: the field (under `extra.alert_policy`) and
/// what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The field at fault, in full (`extra.alert_policy.channels[0].url`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

const FIELD: &str = "extra.alert_policy";

fn error(path: &str, message: &str) -> PolicyError {
    PolicyError {
        field: if path.is_empty() {
            FIELD.to_owned()
        } else {
            format!("{FIELD}.{path}")
        },
        message: message.to_owned(),
    }
}

fn text(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, PolicyError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(error(&format!("{path}.{key}"), "must be a non-empty string")),
    }
}

fn required(obj: &Map<String, Value>, key: &str, path: &str) -> Result<String, PolicyError> {
    text(obj, key, path)?.ok_or_else(|| error(&format!("{path}.{key}"), "is required for this kind"))
}

fn url(obj: &Map<String, Value>, key: &str, path: &str) -> Result<String, PolicyError> {
    let value = required(obj, key, path)?;
    match reqwest::Url::parse(&value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(value),
        _ => Err(error(
            &format!("{path}.{key}"),
            "must be an http:// or https:// URL",
        )),
    }
}

/// Parse `extra.alert_policy`.
pub fn parse(value: &Value) -> Result<FleetAlertPolicy, PolicyError> {
    let Value::Object(obj) = value else {
        return Err(error("", "must be an object"));
    };
    let channels = match obj.get("channels") {
        Some(Value::Array(list)) => list,
        Some(_) => return Err(error("channels", "must be an array")),
        None => return Err(error("channels", "is required")),
    };
    let mut parsed = Vec::with_capacity(channels.len());
    for (i, channel) in channels.iter().enumerate() {
        let path = format!("channels[{i}]");
        let Value::Object(ch) = channel else {
            return Err(error(&path, "must be an object"));
        };
        let kind = text(ch, "kind", &path)?.ok_or_else(|| error(&format!("{path}.kind"), "is required"))?;
        parsed.push(match kind.as_str() {
            "slack" => PolicyChannel::Slack {
                webhook_url: url(ch, "webhook_url", &path)?,
            },
            "webhook" => PolicyChannel::Webhook {
                url: url(ch, "url", &path)?,
                secret: text(ch, "secret", &path)?,
            },
            "pager_duty" => {
                let severity = text(ch, "severity", &path)?;
                if let Some(s) = &severity
                    && !matches!(s.as_str(), "critical" | "error" | "warning" | "info")
                {
                    return Err(error(
                        &format!("{path}.severity"),
                        "must be critical, error, warning or info",
                    ));
                }
                PolicyChannel::PagerDuty {
                    routing_key: required(ch, "routing_key", &path)?,
                    severity,
                }
            }
            _ => {
                return Err(error(
                    &format!("{path}.kind"),
                    "must be slack, webhook or pager_duty",
                ));
            }
        });
    }
    let after_attempts = match obj.get("after_attempts") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n >= 1) => n.as_u64(),
        Some(_) => return Err(error("after_attempts", "must be a positive integer")),
    };
    let after_minutes_stale = match obj.get("after_minutes_stale") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_f64().is_some_and(|m| m > 0.0 && m.is_finite()) => n.as_f64(),
        Some(_) => {
            return Err(error(
                "after_minutes_stale",
                "must be a positive number of minutes",
            ));
        }
    };
    Ok(FleetAlertPolicy {
        channels: parsed,
        after_attempts,
        after_minutes_stale,
    })
}

/// What stands for a secret in the journal.
pub const REDACTED: &str = "***";

/// A URL's origin followed by `/***`: where it points, not what it holds.
fn redact_url(value: &str) -> String {
    match reqwest::Url::parse(value) {
        Ok(u) => format!("{}/{REDACTED}", u.origin().ascii_serialization()),
        Err(_) => REDACTED.to_owned(),
    }
}

impl FleetAlertPolicy {
    /// The policy as the journal keeps it: its shape and timings, no secret.
    pub fn redacted(&self) -> Value {
        let channels: Vec<Value> = self
            .channels
            .iter()
            .map(|ch| match ch {
                PolicyChannel::Slack { webhook_url } => serde_json::json!({
                    "kind": "slack", "webhook_url": redact_url(webhook_url),
                }),
                PolicyChannel::Webhook { url, secret } => {
                    let mut v = serde_json::json!({"kind": "webhook", "url": redact_url(url)});
                    if secret.is_some() {
                        v["secret"] = Value::String(REDACTED.to_owned());
                    }
                    v
                }
                PolicyChannel::PagerDuty { severity, .. } => {
                    let mut v = serde_json::json!({"kind": "pager_duty", "routing_key": REDACTED});
                    if let Some(s) = severity {
                        v["severity"] = Value::String(s.clone());
                    }
                    v
                }
            })
            .collect();
        let mut out = serde_json::json!({ "channels": channels });
        if let Some(n) = self.after_attempts {
            out["after_attempts"] = Value::from(n);
        }
        if let Some(m) = self.after_minutes_stale {
            out["after_minutes_stale"] = Value::from(m);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_policy_is_parsed_strictly_and_kept_without_its_secrets() {
        let policy = parse(&json!({
            "channels": [
                {"kind": "slack", "webhook_url": "https://hooks.slack.com/services/T0/B0/s3cr3t"},
                {"kind": "webhook", "url": "https://ops.example.com:8443/hook?token=abc", "secret": "whsec_x"},
                {"kind": "pager_duty", "routing_key": "R0UTINGKEY", "severity": "critical"},
            ],
            "after_attempts": 3,
            "after_minutes_stale": 10,
            "note": "unknown fields are ignored, as on events",
        }))
        .expect("a valid policy");
        assert_eq!(policy.channels.len(), 3);
        assert_eq!(policy.after_attempts, Some(3));
        let kept = policy.redacted().to_string();
        for secret in ["s3cr3t", "token=abc", "whsec_x", "R0UTINGKEY", "/services/"] {
            assert!(!kept.contains(secret), "{secret} in {kept}");
        }
        assert!(
            kept.contains("https://hooks.slack.com/***") && kept.contains("https://ops.example.com:8443/***")
        );
        // The redacted policy still parses (the journal is read back).
        assert!(parse(&policy.redacted()).is_ok());
    }

    #[test]
    fn a_bad_policy_names_its_field() {
        let cases = [
            (json!([1]), "extra.alert_policy"),
            (json!({}), "extra.alert_policy.channels"),
            (
                json!({"channels": [{"kind": "email"}]}),
                "extra.alert_policy.channels[0].kind",
            ),
            (
                json!({"channels": [{"kind": "slack"}]}),
                "extra.alert_policy.channels[0].webhook_url",
            ),
            (
                json!({"channels": [{"kind": "webhook", "url": "ftp://x/y"}]}),
                "extra.alert_policy.channels[0].url",
            ),
            (
                json!({"channels": [{"kind": "pager_duty", "routing_key": "k", "severity": "high"}]}),
                "extra.alert_policy.channels[0].severity",
            ),
            (
                json!({"channels": [], "after_attempts": 0}),
                "extra.alert_policy.after_attempts",
            ),
            (
                json!({"channels": [], "after_minutes_stale": "10"}),
                "extra.alert_policy.after_minutes_stale",
            ),
        ];
        for (policy, field) in cases {
            assert_eq!(parse(&policy).expect_err("refused").field, field, "{policy}");
        }
    }
}
