//! The one interface between herald's core and every chat platform.
//!
//! The core (routing, progress scheduling, durable receipts, retries) only
//! ever sees a platform through [`Messaging`]. An adapter turns one
//! platform-neutral [`Outbound`] message into one platform call and classifies
//! the answer into a typed [`DeliveryOutcome`]. Adapters know nothing of
//! events, routes, the store or retry policy; the core never looks at a
//! platform's error strings. That wall is what lets one retry policy serve
//! Discord, Slack, Telegram, webhooks and the built-in web channel alike.

#[cfg(feature = "reqwest")]
pub mod http;
mod limits;
mod lookup;
mod outbound;
mod outcome;
mod text;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use limits::{ALL_CALLS, Budget, Call, EDITS, LOOKUPS, Limits, POSTS, Rate, Scope, WRITES};
pub use lookup::{LookupPage, LookupQuery, Probe, Reconciliation};
pub use outbound::{Field, INCIDENT_KEY_CHARS, MessageKind, Outbound, Severity, Subject, incident_key};
pub use outcome::{DeliveryOutcome, NotSurfaced};
pub use text::{error_chain, hex, truncate_chars};

/// The platform family an adapter speaks to; used for metrics labels and for
/// budgets the platform shares across channels (e.g. Slack's per-workspace
/// `chat.update` limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    /// Discord, through serenity.
    Discord,
    /// Slack, through slack-morphism.
    Slack,
    /// Telegram, through teloxide.
    Telegram,
    /// Signed outgoing webhooks (Standard Webhooks).
    Webhook,
    /// Herald's own built-in web channel.
    Web,
    /// PagerDuty Events API v2 (pages people; no messages to edit).
    #[serde(rename = "pagerduty")]
    PagerDuty,
    /// A Slack incoming webhook (posts only, into one fixed channel).
    SlackWebhook,
}

impl Platform {
    /// The lower-case name used in config (`adapter = "..."`) and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Discord => "discord",
            Platform::Slack => "slack",
            Platform::Telegram => "telegram",
            Platform::Webhook => "webhook",
            Platform::Web => "web",
            Platform::PagerDuty => "pagerduty",
            Platform::SlackWebhook => "slack_webhook",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a message goes: the platform's own id for a channel or chat, plus an
/// optional thread (a Telegram forum topic, a Slack thread) fixed by the
/// config, and for a reply the message it answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChannelRef {
    /// Platform channel id, chat id, web channel name or webhook URL.
    pub id: String,
    /// Optional thread or topic within the channel.
    pub thread: Option<String>,
    /// A post here is a reply under an earlier message of the channel
    /// (`thread = true`: a task's notifications under its live message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Reply>,
}

impl ChannelRef {
    /// A channel without a thread.
    pub fn new(id: impl Into<String>) -> Self {
        ChannelRef {
            id: id.into(),
            thread: None,
            reply: None,
        }
    }

    /// The same channel, posting as a reply under `reply.parent`.
    pub fn replying(&self, reply: Reply) -> ChannelRef {
        ChannelRef {
            reply: Some(reply),
            ..self.clone()
        }
    }
}

/// Where a reply goes: under which message, and in which thread where the
/// platform keeps replies in a thread of their own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reply {
    /// The message replied to (a task's live message).
    pub parent: MessageHandle,
    /// The thread opened from the parent, where replies go into one
    /// (Discord's thread channel, whose id the platform chose); `None`
    /// where a reply names its parent (Slack `thread_ts`, Telegram
    /// `reply_parameters`) or the thread is not open yet.
    pub thread: Option<String>,
}

/// The platform's id for a message that exists: the proof that it surfaced,
/// and what later edits address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MessageHandle(pub String);

impl MessageHandle {
    /// The platform's message id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stable key that identifies one logical message across retries (herald
/// uses the delivery receipt id), so a platform that supports it can refuse a
/// duplicate (Discord `nonce`, Slack `metadata`, webhook `webhook-id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey(pub String);

impl IdempotencyKey {
    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A chat platform, as the core sees it.
///
/// Every call returns a [`DeliveryOutcome`] instead of an error: failing to
/// deliver is an expected, typed result that the retry policy decides on.
#[async_trait]
pub trait Messaging: Send + Sync {
    /// Which platform this is.
    fn platform(&self) -> Platform;

    /// What the platform allows; the core's budgets are built from this.
    fn limits(&self) -> Limits;

    /// What the platform allows for one channel, where that differs by
    /// channel (Telegram groups are stricter than private chats).
    fn channel_limits(&self, _to: &ChannelRef) -> Limits {
        self.limits()
    }

    /// Create a new message.
    async fn post(&self, to: &ChannelRef, msg: &Outbound) -> DeliveryOutcome;

    /// Replace the content of an existing message. Platforms that cannot edit
    /// answer [`NotSurfaced::Unsupported`].
    async fn edit(&self, to: &ChannelRef, at: &MessageHandle, msg: &Outbound) -> DeliveryOutcome;

    /// After a call that surfaced, what the platform said about the rest of
    /// the channel's budget for that kind of call: `Some(wait)` when its
    /// answer showed the budget exhausted (Discord's `X-RateLimit-Remaining:
    /// 0` with `X-RateLimit-Reset-After`), so the next call waits instead of
    /// earning a 429. Platforms without such headers keep the default.
    fn exhausted_for(&self, _to: &ChannelRef, _call: Call) -> Option<Duration> {
        None
    }

    /// Whether the channel takes several new messages at once and promises
    /// no order between them, so the core may keep many posts in flight
    /// (webhook receivers, which dedupe on `webhook-id` and order by
    /// `occurred_at`; herald's own web channel). Chat platforms keep the
    /// default: their messages stay in order, one call at a time, within
    /// budgets too tight for concurrency to help.
    fn accepts_concurrent_posts(&self, _to: &ChannelRef) -> bool {
        false
    }

    /// Whether a reply needs a thread opened from its parent first
    /// ([`Messaging::open_thread`]: Discord), rather than naming the parent
    /// in the post itself (Slack, Telegram).
    fn opens_threads(&self) -> bool {
        false
    }

    /// Open the thread of replies under message `parent`, titled `name`,
    /// and return its id; a thread that is already open is no error (its
    /// id is returned). One platform call, budgeted by the core as
    /// [`Call::Post`]. [`NotSurfaced::Gone`] when the parent no longer
    /// exists. Only called where [`Messaging::opens_threads`].
    async fn open_thread(
        &self,
        _to: &ChannelRef,
        _parent: &MessageHandle,
        _name: &str,
    ) -> Result<String, NotSurfaced> {
        Err(NotSurfaced::Unsupported)
    }

    /// How this platform finds out whether a message sent with an unknown
    /// outcome exists (see [`Reconciliation`]).
    fn reconciliation(&self, _to: &ChannelRef) -> Reconciliation {
        Reconciliation::Resend
    }

    /// One page of the channel's recent messages, newest first, reporting
    /// which of `query.keys` it holds: one platform call, which the core
    /// budgets as [`Call::Lookup`] and repeats with the returned cursor
    /// until every key is found or the page range reaches `query.since`.
    /// Only called where [`Messaging::reconciliation`] is
    /// [`Reconciliation::Lookup`].
    async fn lookup(&self, _to: &ChannelRef, _query: &LookupQuery<'_>) -> Result<LookupPage, NotSurfaced> {
        Err(NotSurfaced::Unsupported)
    }

    /// Edit message `id` to exactly `msg` as it was sent, to learn whether
    /// `id` is the message whose answer was lost (see [`Probe`]). One
    /// platform call, budgeted by the core as [`Call::Lookup`]. Only called
    /// where [`Messaging::reconciliation`] is [`Reconciliation::Probe`];
    /// `Err(Unsupported)` where this chat must never be probed.
    async fn probe(
        &self,
        _to: &ChannelRef,
        _id: &MessageHandle,
        _msg: &Outbound,
    ) -> Result<Probe, NotSurfaced> {
        Err(NotSurfaced::Unsupported)
    }

    /// Updates people sent the bot, pulled from the platform, for a bot
    /// without a public URL (Telegram `getUpdates`): those after update
    /// `after` (which the platform may then forget), waiting up to `wait`
    /// for one. `Err(Unsupported)` where the platform only pushes.
    async fn pull_updates(
        &self,
        _after: Option<i64>,
        _wait: std::time::Duration,
    ) -> Result<Vec<serde_json::Value>, NotSurfaced> {
        Err(NotSurfaced::Unsupported)
    }

    /// Carry out the bot's answer to a pulled update: a platform method
    /// and its arguments, as a webhook response would carry it (Telegram
    /// `{"method": "sendMessage", …}`). `Err(Unsupported)` where answers
    /// only go back in webhook responses.
    async fn answer(&self, _answer: &serde_json::Value) -> Result<(), NotSurfaced> {
        Err(NotSurfaced::Unsupported)
    }

    /// Keep a connection open to the platform over which it pushes what
    /// people send the bot, for a bot without a public URL (Slack Socket
    /// Mode), handing each to `handler` and sending its answer back on the
    /// connection. Returns once listening has started; the connection is
    /// kept (reconnected, refreshed) until the returned [`Listening`] is
    /// dropped. `Err(Unsupported)` where the platform does not push this
    /// way or no credential for it is configured.
    async fn listen(&self, _handler: Arc<dyn PushHandler>) -> Result<Listening, NotSurfaced> {
        Err(NotSurfaced::Unsupported)
    }
}

/// One request a platform pushed over a connection herald opened.
#[derive(Debug, Clone, PartialEq)]
pub enum Pushed {
    /// A slash command: its fields as the platform sends them over HTTP
    /// (Slack: `command`, `text`, `user_id`, `channel_id`, …).
    Command(serde_json::Value),
    /// An interaction (a button pressed): the platform's payload, as the
    /// `payload` field of an HTTP interactivity request would carry it.
    Interaction(serde_json::Value),
}

/// Where pushed requests go. The answer (a command's reply, in the
/// platform's format) is sent back on the connection; `None` acknowledges
/// without a reply.
#[async_trait]
pub trait PushHandler: Send + Sync {
    /// Handle one pushed request; must answer within the platform's
    /// acknowledgement deadline (Slack: 3 s).
    async fn pushed(&self, push: Pushed) -> Option<serde_json::Value>;
}

/// A connection kept open by [`Messaging::listen`]; dropping it closes it.
pub struct Listening {
    stop: Option<Box<dyn FnOnce() + Send>>,
}

impl Listening {
    /// A listening that runs `stop` when dropped.
    pub fn new(stop: impl FnOnce() + Send + 'static) -> Listening {
        Listening {
            stop: Some(Box::new(stop)),
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

impl fmt::Debug for Listening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Listening")
    }
}
