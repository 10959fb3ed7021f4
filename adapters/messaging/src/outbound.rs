//! The platform-neutral message the core hands to an adapter. Each adapter
//! renders and escapes it for its own platform; nothing here is pre-escaped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::IdempotencyKey;

/// Whether a message is the live progress message of a worker task (edited
/// in place) or a terminal notification (a new message that notifies people).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// The one live message per (channel, worker task).
    Progress,
    /// The notification of a completed, failed or cancelled task.
    Terminal,
}

/// How a message should look: adapters map it to colours or emoji.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Work is moving normally.
    Progress,
    /// Someone should look (interrupted, stale, escalated, recoverable failure).
    Attention,
    /// Ended well.
    Success,
    /// Ended badly.
    Failure,
    /// Ended neither well nor badly (cancelled).
    Neutral,
}

impl Severity {
    /// A coloured circle or mark for platforms that render Unicode emoji.
    pub fn emoji(self) -> &'static str {
        match self {
            Severity::Progress => "🔵",
            Severity::Attention => "🟠",
            Severity::Success => "✅",
            Severity::Failure => "❌",
            Severity::Neutral => "⚪",
        }
    }
}

/// One labelled value shown with a message ("worker" → "worker-a").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// Short label.
    pub name: String,
    /// The value, raw event text: the adapter escapes it.
    pub value: String,
}

/// What a message is about, as data: for machine receivers (webhooks) that
/// want ids and labels rather than prose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// Run id.
    pub run_id: String,
    /// Worker id.
    pub worker_id: String,
    /// Task id.
    pub task_id: String,
    /// The state as the protocol names it (`running_tool`).
    pub state: String,
    /// The task's labels.
    pub labels: BTreeMap<String, String>,
    /// When the shown event happened, as the worker reported it (RFC 3339).
    pub occurred_at: Option<String>,
}

/// Longest incident key: PagerDuty's limit on `dedup_key`, the tightest of
/// the incident platforms.
pub const INCIDENT_KEY_CHARS: usize = 255;

/// The key of a worker task's incident (`herald/<run>/<worker>/<task>`):
/// every trigger and the resolve of one task name the same alert, and
/// herald journals it as the escalation's `alert_id`. Hashed when the ids
/// are too long for [`INCIDENT_KEY_CHARS`].
pub fn incident_key(run_id: &str, worker_id: &str, task_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let key = format!("herald/{run_id}/{worker_id}/{task_id}");
    if key.chars().count() <= INCIDENT_KEY_CHARS {
        return key;
    }
    let digest = Sha256::digest(key.as_bytes());
    format!("herald/sha256/{}", crate::hex(&digest))
}

impl Subject {
    /// The task's incident key ([`incident_key`]).
    pub fn incident_key(&self) -> String {
        incident_key(&self.run_id, &self.worker_id, &self.task_id)
    }
}

/// A message to show, before any platform rendering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbound {
    /// Progress (edited in place) or terminal (new, notifying).
    pub kind: MessageKind,
    /// The headline: which work this is about.
    pub title: String,
    /// The state in words (`running`, `completed`, ...).
    pub state: String,
    /// Colour or emoji hint.
    pub severity: Severity,
    /// Labelled details (run, worker, task, elapsed, tool, ...).
    pub fields: Vec<Field>,
    /// The summary or failure reason, if any.
    pub body: Option<String>,
    /// Stable across retries of the same logical message.
    pub idempotency_key: Option<IdempotencyKey>,
    /// The worker task behind the message, as data.
    pub subject: Option<Subject>,
    /// Where to look (an alert's source, `http(s)://` only): adapters make
    /// it a link in their own way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// The token of an Acknowledge button, on notifications that ask for
    /// someone: chat adapters show the button (Slack block button, Discord
    /// component, Telegram inline keyboard) and the platform sends the
    /// token back when it is pressed. Others ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledge: Option<String>,
    /// Who to ping, in the platform's own mention syntax (Slack `<@U…>`,
    /// `<!subteam^S…>`, `<!here>`; Discord `<@id>`, `<@&role>`; Telegram
    /// `tg://user?id=…`), checked by the adapter's crate at config load.
    /// Set only on failure and attention notifications of a channel that
    /// asks for it (`mention_on_failure`); never taken from event text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<String>,
}

impl Outbound {
    /// A plain-text rendering for platforms or fallbacks without markup.
    /// It is not escaped: callers escape it for their platform.
    pub fn plain_text(&self) -> String {
        let mut text = format!("{} — {}", self.title, self.state);
        for field in &self.fields {
            text.push_str(&format!("\n{}: {}", field.name, field.value));
        }
        if let Some(body) = &self.body {
            text.push_str("\n\n");
            text.push_str(body);
        }
        if let Some(link) = &self.link {
            text.push('\n');
            text.push_str(link);
        }
        text
    }
}
