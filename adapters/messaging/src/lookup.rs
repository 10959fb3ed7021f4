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
