//! A worker's own alert policy (`extra.alert_policy`, the Agent Fleet
//! `FleetAlertPolicy`): where to page and when — `channels` of kind
//! `slack {webhook_url}`, `webhook {url, secret}` or `pager_duty
//! {routing_key, severity?}`, `after_attempts`, `after_minutes_stale`.
//!
//! It names URLs and carries secrets, so an event must not make herald POST
//! wherever it says: a policy is used only where `[event_policies] allow =
//! true` and each of its URLs matches `allowed_urls` ([`FleetAlertPolicy::
//! allowed`]); otherwise it is ignored and counted
//! (`herald_event_policies_ignored_total`). A used policy adds a rule to its
//! task's escalations (`escalations.rs`) whose channels are made at run
//! time, one per target ([`RuntimeChannel`], kept by the store, merged into
//! the running config by `reloader.rs`).
//!
//! The policy is parsed with the same strictness as the event (a bad one is
//! a `400` naming the field), and its secrets stay out of the journal: the
//! policy is stored redacted (routing keys and webhook secrets as `***`,
//! URLs as their origin and `/***`), naming the run-time channel of each
//! target and whether it was used, so no API answer ever shows a secret.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

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
        /// The signing secret (`whsec_<base64>`).
        secret: String,
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

fn secret(obj: &Map<String, Value>, path: &str) -> Result<String, PolicyError> {
    let value = required(obj, "secret", path)?;
    herald_webhook::SigningKey::from_secret(&value).map_err(|_| {
        error(
            &format!("{path}.secret"),
            "must be a Standard Webhooks secret (whsec_<base64>)",
        )
    })?;
    Ok(value)
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
                secret: secret(ch, &path)?,
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

impl PolicyChannel {
    /// The run-time channel of this target: `event:<kind>:<hash>`, the
    /// hash of the target's secrets (so equal targets share one channel, and
    /// the name gives nothing away).
    pub fn channel_name(&self) -> String {
        let (kind, secret) = match self {
            PolicyChannel::Slack { webhook_url } => ("slack", webhook_url.clone()),
            PolicyChannel::Webhook { url, secret } => ("webhook", format!("{url}\n{secret}")),
            PolicyChannel::PagerDuty {
                routing_key,
                severity,
            } => (
                "pager_duty",
                format!("{routing_key}\n{}", severity.as_deref().unwrap_or("error")),
            ),
        };
        let digest = Sha256::digest(secret.as_bytes());
        format!("{RUNTIME_PREFIX}{kind}:{}", herald_messaging::hex(&digest[..6]))
    }

    /// The URL it would POST to, if the event names one.
    fn url(&self) -> Option<&str> {
        match self {
            PolicyChannel::Slack { webhook_url } => Some(webhook_url),
            PolicyChannel::Webhook { url, .. } => Some(url),
            PolicyChannel::PagerDuty { .. } => None,
        }
    }

    /// The run-time channel that delivers to it.
    pub fn runtime(&self, config: &EventPoliciesConfig) -> RuntimeChannel {
        let target = match self {
            PolicyChannel::Slack { webhook_url } => RuntimeTarget::SlackWebhook {
                url: webhook_url.clone(),
            },
            PolicyChannel::Webhook { url, secret } => RuntimeTarget::Webhook {
                url: url.clone(),
                secret: secret.clone(),
            },
            PolicyChannel::PagerDuty {
                routing_key,
                severity,
            } => RuntimeTarget::PagerDuty {
                routing_key: routing_key.clone(),
                severity: severity.clone().unwrap_or_else(|| "error".to_owned()),
                api_url: config.pagerduty_api_url.clone(),
            },
        };
        RuntimeChannel {
            name: self.channel_name(),
            target,
        }
    }
}

/// What run-time channel names begin with (config validation refuses it
/// for configured channels).
pub const RUNTIME_PREFIX: &str = "event:";

/// `[event_policies]`: whether, and to where, an event's own policy is used.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPoliciesConfig {
    /// Use events' policies at all.
    pub allow: bool,
    /// Globs every URL a used policy names must match.
    pub allowed_urls: Vec<String>,
    /// Where PagerDuty channels of policies send (`https://events.pagerduty.com`).
    pub pagerduty_api_url: String,
}

impl Default for EventPoliciesConfig {
    fn default() -> Self {
        EventPoliciesConfig {
            allow: false,
            allowed_urls: Vec::new(),
            pagerduty_api_url: crate::config::DEFAULT_PAGERDUTY_URL.to_owned(),
        }
    }
}

/// Where a run-time channel delivers, with its secrets (kept by the store,
/// never shown).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuntimeTarget {
    /// A Slack incoming webhook.
    SlackWebhook {
        /// Its URL.
        url: String,
    },
    /// A signed webhook.
    Webhook {
        /// Its URL.
        url: String,
        /// Its signing secret.
        secret: String,
    },
    /// A PagerDuty service.
    PagerDuty {
        /// Its routing key.
        routing_key: String,
        /// Its triggers' severity.
        severity: String,
        /// The Events API.
        api_url: String,
    },
}

/// A channel made at run time for a target of an event's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeChannel {
    /// `event:<kind>:<hash>`.
    pub name: String,
    /// Where it delivers.
    pub target: RuntimeTarget,
}

/// Whether `url` matches one of `globs` (`*` spans any characters, `/`
/// included: a glob names a prefix of URLs as people write them).
fn url_allowed(url: &str, globs: &[String]) -> bool {
    globs.iter().any(|glob| {
        globset::GlobBuilder::new(glob)
            .literal_separator(false)
            .build()
            .is_ok_and(|g| g.compile_matcher().is_match(url))
    })
}

impl FleetAlertPolicy {
    /// Whether `config` lets herald use this policy: `Err` says why not.
    pub fn allowed(&self, config: &EventPoliciesConfig) -> Result<(), &'static str> {
        if !config.allow {
            return Err("[event_policies] allow is not set");
        }
        if self
            .channels
            .iter()
            .filter_map(PolicyChannel::url)
            .any(|u| !url_allowed(u, &config.allowed_urls))
        {
            return Err("a URL it names matches no [event_policies] allowed_urls");
        }
        Ok(())
    }

    /// The policy as the journal keeps it: its shape and timings, the
    /// run-time channel of each target, no secret. `used` says whether
    /// herald acts on it.
    pub fn redacted(&self, used: bool) -> Value {
        let channels: Vec<Value> = self
            .channels
            .iter()
            .map(|ch| {
                let mut v = match ch {
                    PolicyChannel::Slack { webhook_url } => serde_json::json!({
                        "kind": "slack", "webhook_url": redact_url(webhook_url),
                    }),
                    PolicyChannel::Webhook { url, .. } => {
                        serde_json::json!({"kind": "webhook", "url": redact_url(url), "secret": REDACTED})
                    }
                    PolicyChannel::PagerDuty { severity, .. } => {
                        let mut v = serde_json::json!({"kind": "pager_duty", "routing_key": REDACTED});
                        if let Some(s) = severity {
                            v["severity"] = Value::String(s.clone());
                        }
                        v
                    }
                };
                v["channel"] = Value::String(ch.channel_name());
                v
            })
            .collect();
        let mut out = serde_json::json!({ "channels": channels, "used": used });
        if let Some(n) = self.after_attempts {
            out["after_attempts"] = Value::from(n);
        }
        if let Some(m) = self.after_minutes_stale {
            out["after_minutes_stale"] = Value::from(m);
        }
        out
    }
}

/// The escalation rule a used policy gives its task, read back from the
/// redacted policy the journal keeps (`None` when it was not used).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRule {
    /// Escalate after this long stale (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_stale_ms: Option<i64>,
    /// Escalate after this many restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_restarts: Option<u64>,
    /// The run-time channels.
    pub channels: Vec<String>,
}

impl PolicyRule {
    /// The rule of a redacted policy, if herald uses it.
    pub fn of(redacted: &Value) -> Option<PolicyRule> {
        if redacted.get("used")?.as_bool() != Some(true) {
            return None;
        }
        let channels = redacted
            .get("channels")?
            .as_array()?
            .iter()
            .filter_map(|c| c.get("channel")?.as_str())
            .filter(|c| c.starts_with(RUNTIME_PREFIX))
            .map(str::to_owned)
            .collect();
        Some(PolicyRule {
            after_stale_ms: redacted
                .get("after_minutes_stale")
                .and_then(Value::as_f64)
                .map(|m| (m * 60_000.0) as i64),
            after_restarts: redacted.get("after_attempts").and_then(Value::as_u64),
            channels,
        })
    }
}

/// Events may carry their own `extra.alert_policy`. One that `config`
/// allows is marked used (its task escalates by it) and its targets are
/// returned, to be kept as run-time channels before the events are
/// committed; the rest are ignored — counted, and the first logged (an
/// event must not make herald POST wherever it says).
pub fn use_allowed(
    config: &EventPoliciesConfig,
    events: &mut [crate::protocol::FleetWorkerEvent],
) -> Vec<RuntimeChannel> {
    static LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let mut channels: Vec<RuntimeChannel> = Vec::new();
    let mut ignored = 0;
    let mut why = None;
    for event in events.iter_mut() {
        let Some(policy) = event.policy.clone() else {
            continue;
        };
        match policy.allowed(config) {
            Ok(()) => {
                event.use_policy();
                for target in &policy.channels {
                    let channel = target.runtime(config);
                    if !channels.contains(&channel) {
                        channels.push(channel);
                    }
                }
            }
            Err(reason) => {
                ignored += 1;
                why.get_or_insert(reason);
            }
        }
    }
    if ignored > 0 {
        crate::metrics::event_policies_ignored(ignored);
        if !LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                reason = why.unwrap_or_default(),
                "events carry their own extra.alert_policy that herald may not use: ignored, and each counted in \
                 herald_event_policies_ignored_total (logged once)"
            );
        }
    }
    channels
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
                {"kind": "webhook", "url": "https://ops.example.com:8443/hook?token=abc",
                 "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
                {"kind": "pager_duty", "routing_key": "R0UTINGKEY", "severity": "critical"},
            ],
            "after_attempts": 3,
            "after_minutes_stale": 10,
            "note": "unknown fields are ignored, as on events",
        }))
        .expect("a valid policy");
        assert_eq!(policy.channels.len(), 3);
        assert_eq!(policy.after_attempts, Some(3));
        let kept = policy.redacted(true);
        let text = kept.to_string();
        for secret in ["s3cr3t", "token=abc", "MfKQ9r8G", "R0UTINGKEY", "/services/"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(
            text.contains("https://hooks.slack.com/***") && text.contains("https://ops.example.com:8443/***")
        );
        // The journal's form gives the task its rule, naming run-time
        // channels only; an unused policy gives none.
        let rule = PolicyRule::of(&kept).expect("a used policy");
        assert_eq!(rule.after_stale_ms, Some(600_000));
        assert_eq!(rule.after_restarts, Some(3));
        assert_eq!(rule.channels.len(), 3);
        assert!(rule.channels.iter().all(|c| c.starts_with(RUNTIME_PREFIX)));
        assert_eq!(PolicyRule::of(&policy.redacted(false)), None);
        // A worker cannot say its policy is used, nor name a channel.
        let forged = parse(
            &json!({"channels": [{"kind": "slack", "webhook_url": "https://h/x", "channel": "oncall"}],
                                   "used": true}),
        )
        .expect("valid");
        assert_eq!(PolicyRule::of(&forged.redacted(false)), None);
        assert!(forged.redacted(false).to_string().contains("event:slack:"));
    }

    #[test]
    fn a_policy_is_used_only_where_allowed_and_each_url_matches() {
        let policy = parse(&json!({"channels": [
            {"kind": "slack", "webhook_url": "https://hooks.slack.com/services/T0/B0/x"},
            {"kind": "pager_duty", "routing_key": "k"},
        ]}))
        .expect("valid");
        let mut config = EventPoliciesConfig::default();
        assert!(policy.allowed(&config).is_err(), "not allowed by default");
        config.allow = true;
        assert!(policy.allowed(&config).is_err(), "no URL allowed");
        config.allowed_urls = vec!["https://hooks.slack.com/services/T0/*".into()];
        assert!(policy.allowed(&config).is_ok());
        config.allowed_urls = vec!["https://hooks.slack.com/services/T9/*".into()];
        assert!(policy.allowed(&config).is_err(), "another workspace");
        // Equal targets share a channel; the name shows no secret.
        let a = policy.channels[0].channel_name();
        let again = parse(&json!({"channels": [{"kind": "slack", "webhook_url": "https://hooks.slack.com/services/T0/B0/x"}]}))
            .expect("valid");
        assert_eq!(a, again.channels[0].channel_name());
        assert!(a.starts_with("event:slack:") && !a.contains("T0"));
        match policy.channels[1].runtime(&config).target {
            RuntimeTarget::PagerDuty {
                severity, api_url, ..
            } => {
                assert_eq!(
                    (severity.as_str(), api_url.as_str()),
                    ("error", "https://events.pagerduty.com")
                );
            }
            other => panic!("{other:?}"),
        }
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
                json!({"channels": [{"kind": "webhook", "url": "https://x/y", "secret": "plain"}]}),
                "extra.alert_policy.channels[0].secret",
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
