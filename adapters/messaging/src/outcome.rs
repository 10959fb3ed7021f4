//! Typed results of a platform call. The retry policy in the core decides
//! from these variants alone, never from error text.

use std::fmt;
use std::time::Duration;

use crate::{ChannelRef, MessageHandle};

/// The result of one `post` or `edit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The platform confirmed the message exists and gave its id.
    Surfaced(MessageHandle),
    /// The message is not known to exist; the reason says what to do next.
    NotSurfaced(NotSurfaced),
}

impl DeliveryOutcome {
    /// A short, stable label for metrics: `surfaced` or the reason's label.
    pub fn label(&self) -> &'static str {
        match self {
            DeliveryOutcome::Surfaced(_) => "surfaced",
            DeliveryOutcome::NotSurfaced(reason) => reason.label(),
        }
    }
}

/// Why a message did not surface, classified by the adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotSurfaced {
    /// The platform asked us to wait (HTTP 429 or equivalent).
    RateLimited {
        /// How long the platform asked for.
        retry_after: Duration,
        /// True when the limit is the account's (Discord's global limit, a
        /// Slack method limited per workspace) rather than this channel's:
        /// the core then holds every channel of the account for that call.
        global: bool,
    },
    /// A passing fault (5xx, connection refused or reset): retry on schedule.
    Transient {
        /// Human-readable detail for receipts and logs.
        reason: String,
    },
    /// Retrying cannot help (unknown channel, missing access, bad token).
    Permanent {
        /// Human-readable detail for receipts and logs.
        reason: String,
    },
    /// The request was sent but the answer was lost (timeout): the message
    /// may exist. Reconcile before resending.
    Unverified {
        /// Human-readable detail for receipts and logs.
        reason: String,
    },
    /// The message addressed by an edit no longer exists (deleted by a
    /// person, or never existed): post a new one and re-key it.
    Gone,
    /// The channel moved (Telegram group → supergroup): store the new id and
    /// retry there.
    Moved {
        /// Where the channel lives now.
        to: ChannelRef,
    },
    /// The platform cannot do this at all (e.g. edit a webhook delivery).
    Unsupported,
}

impl NotSurfaced {
    /// A short, stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            NotSurfaced::RateLimited { .. } => "rate_limited",
            NotSurfaced::Transient { .. } => "transient",
            NotSurfaced::Permanent { .. } => "permanent",
            NotSurfaced::Unverified { .. } => "unverified",
            NotSurfaced::Gone => "gone",
            NotSurfaced::Moved { .. } => "moved",
            NotSurfaced::Unsupported => "unsupported",
        }
    }
}

impl fmt::Display for NotSurfaced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotSurfaced::RateLimited { retry_after, global } => {
                let scope = if *global { "globally " } else { "" };
                write!(f, "rate limited {scope}for {retry_after:?}")
            }
            NotSurfaced::Transient { reason } => write!(f, "transient: {reason}"),
            NotSurfaced::Permanent { reason } => write!(f, "permanent: {reason}"),
            NotSurfaced::Unverified { reason } => write!(f, "unverified: {reason}"),
            NotSurfaced::Gone => f.write_str("message gone"),
            NotSurfaced::Moved { to } => write!(f, "channel moved to {}", to.id),
            NotSurfaced::Unsupported => f.write_str("unsupported by the platform"),
        }
    }
}
