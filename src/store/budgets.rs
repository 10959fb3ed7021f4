//! Rate budget windows kept across restarts (see `delivery/door.rs`).

use std::collections::HashMap;

use super::StoreError;
use super::columns::Columns;

/// A rate budget window as kept in the store, in Unix milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeptWindow {
    /// Sends still inside the window.
    pub sends: Vec<i64>,
    /// Nothing may be sent before this.
    pub paused_until: Option<i64>,
}

/// A kept window and its key from a row of `budget_windows`.
pub(crate) fn kept_window_from(r: &impl Columns) -> Result<(String, KeptWindow), StoreError> {
    Ok((
        r.text("key")?,
        KeptWindow {
            sends: r.json("sends")?,
            paused_until: r.maybe_int("paused_until")?,
        },
    ))
}

/// Rate budget windows kept across restarts (platforms that enforce their limits).
#[async_trait::async_trait]
pub trait BudgetStore: Send + Sync {
    /// The kept windows among `keys`.
    async fn load_budget_windows(&self, keys: &[String]) -> Result<HashMap<String, KeptWindow>, StoreError>;

    /// Keep these windows (one transaction).
    async fn save_budget_windows(&self, windows: &[(String, KeptWindow)], now: i64)
    -> Result<(), StoreError>;

    /// Change one kept window under its row lock: the budgets every
    /// replica of a shared store spends together (an account's). `change`
    /// gets the kept window (empty when none is kept) and returns the one
    /// to keep, or `None` to leave it as it is. What to change is the
    /// caller's decision (`delivery/door.rs`); here it is only locked,
    /// read and written.
    async fn change_budget_window(
        &self,
        key: &str,
        now: i64,
        change: &(dyn Fn(KeptWindow) -> Option<KeptWindow> + Send + Sync),
    ) -> Result<(), StoreError>;
}
