//! What a platform allows, declared by its adapter as a list of budgets,
//! so the core's one door per channel can spend them without ever earning
//! a 429.

use std::time::Duration;

/// The kinds of platform call, which platforms often limit separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Call {
    /// A new message.
    Post,
    /// An edit of an existing message.
    Edit,
    /// A read that finds earlier messages again (Slack
    /// `conversations.history`, a Telegram probe): reconciliation.
    Lookup,
}

impl Call {
    /// A short, stable name for logs, metrics and stored budget keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Call::Post => "post",
            Call::Edit => "edit",
            Call::Lookup => "lookup",
        }
    }
}

/// Posts only.
pub const POSTS: &[Call] = &[Call::Post];
/// Edits only.
pub const EDITS: &[Call] = &[Call::Edit];
/// Look-ups only.
pub const LOOKUPS: &[Call] = &[Call::Lookup];
/// Posts and edits counted together (Telegram's per-chat limits).
pub const WRITES: &[Call] = &[Call::Post, Call::Edit];
/// Every call (Discord's global limit).
pub const ALL_CALLS: &[Call] = &[Call::Post, Call::Edit, Call::Lookup];

/// A request rate: at most `count` calls per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// How many calls fit in one window.
    pub count: u32,
    /// The window length.
    pub per: Duration,
}

impl Rate {
    /// `count` calls per `per`.
    pub const fn new(count: u32, per: Duration) -> Self {
        Rate { count, per }
    }

    /// The steady-state spacing between two calls at this rate.
    pub fn interval(&self) -> Duration {
        if self.count == 0 {
            return self.per;
        }
        self.per / self.count
    }
}

/// Who shares a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One platform channel or chat.
    Channel,
    /// Every channel of the account (bot, workspace).
    Account,
}

impl Scope {
    /// A short, stable name for stored budget keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Channel => "channel",
            Scope::Account => "account",
        }
    }
}

/// One limit of the platform: the calls it counts, who shares it, the rate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Budget {
    /// Per channel or per account.
    pub scope: Scope,
    /// The calls this limit counts; a call spends from every budget that
    /// counts it.
    pub calls: &'static [Call],
    /// How many per window.
    pub rate: Rate,
}

impl Budget {
    /// A limit of one channel.
    pub const fn channel(calls: &'static [Call], rate: Rate) -> Budget {
        Budget {
            scope: Scope::Channel,
            calls,
            rate,
        }
    }

    /// A limit shared by every channel of the account.
    pub const fn account(calls: &'static [Call], rate: Rate) -> Budget {
        Budget {
            scope: Scope::Account,
            calls,
            rate,
        }
    }

    /// Whether `call` spends from this budget.
    pub fn counts(&self, call: Call) -> bool {
        self.calls.contains(&call)
    }
}

/// What a platform allows, declared by its adapter so the core can spend
/// budgets that never earn a 429 in steady state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest message text the platform accepts, in characters.
    pub max_text_chars: usize,
    /// Every limit the platform applies to the calls herald makes. A call
    /// kind no budget counts is not limited.
    pub budgets: Vec<Budget>,
    /// True when the platform itself enforces these limits (answers 429
    /// past them): the core then keeps the budgets' windows and any
    /// retry-after in the store, so a restarted herald does not spend a
    /// window twice. False for limits that are only herald's own ceiling.
    pub enforced_by_platform: bool,
}
