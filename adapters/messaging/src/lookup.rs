//! Reconciliation: after a call whose answer was lost, finding out whether
//! the message exists before sending it again.

use std::time::SystemTime;

use crate::{IdempotencyKey, MessageHandle};

/// How a platform answers "did this message arrive?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciliation {
    /// Send again with the same idempotency key. Right where the platform
    /// dedupes on the key (Discord's `nonce` + `enforce_nonce`, webhook
    /// receivers on `webhook-id`), and the only choice where it can neither
    /// dedupe nor be asked (at-least-once).
    Resend,
    /// Ask with [`crate::Messaging::lookup`]: the platform lists recent
    /// messages with the keys herald attached (Slack metadata, the web
    /// channel's store). One look-up answers for every unverified message
    /// of the channel.
    Lookup,
    /// Ask with [`crate::Messaging::probe`]: the platform cannot list
    /// messages, but an edit carrying exactly the text that was sent tells
    /// whether a given id holds it (Telegram's "message is not modified").
    /// The core picks the candidate ids; the adapter refuses to probe where
    /// a probe could change a message that is not the bot's own.
    Probe {
        /// This chat's message ids come from one counter shared with every
        /// other chat of the bot that says so too (Telegram's private chats
        /// and basic groups); otherwise the chat counts its own.
        shared_ids: bool,
    },
}

/// What a probe of one message id found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The id holds exactly this message: it is the lost one.
    Same,
    /// The id held another message of the bot, which now shows this one.
    /// Only possible when something else posts with the same bot token.
    Changed,
    /// The id holds someone else's message (it cannot be edited).
    NotOurs,
    /// No message with this id in this chat.
    Missing,
}

/// What one look-up call asks for.
#[derive(Debug, Clone)]
pub struct LookupQuery<'a> {
    /// The keys being looked for.
    pub keys: &'a [IdempotencyKey],
    /// No message with any of these keys can be older than this: the
    /// page range may stop here.
    pub since: SystemTime,
    /// Where the previous page of the same look-up ended.
    pub cursor: Option<String>,
    /// Look among the replies under this message (a thread), not the
    /// channel's own messages: where a platform lists replies apart
    /// (Slack's `conversations.replies`).
    pub thread: Option<&'a MessageHandle>,
}

/// One page of a look-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupPage {
    /// The keys of the query found on this page, with their messages.
    pub found: Vec<(IdempotencyKey, MessageHandle)>,
    /// Where the next (older) page starts; `None` when this page reached
    /// `since` or the channel's beginning, so keys not found are absent.
    pub next: Option<String>,
}
