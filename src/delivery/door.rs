//! The one door every platform call of a channel passes: posts, edits and
//! reconciliation look-ups alike spend from every budget that counts them
//! (the channel's own and the account's shared ones), and a platform's
//! retry-after holds the door shut for that call, plus a safety margin,
//! measured from when the answer arrived. Where the platform enforces its
//! limits, the windows are written to the store before each call, so a
//! restarted herald keeps spending the same windows instead of starting
//! afresh (a crash loop must never earn a 429).

use std::sync::Arc;
use std::time::Duration;

use herald_messaging::{Budget, Call, Limits, NotSurfaced, Rate, Scope};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::warn;

use super::budget::{SharedWindow, Window, acquire, ready_in, settle, try_acquire};
use crate::store::{KeptWindow, Store, StoreError, now_ms};

/// Added to every retry-after: enough that a platform counting from when
/// it sent its answer, with coarse clocks, never sees an early request.
fn with_margin(retry_after: Duration) -> Duration {
    retry_after + Duration::from_millis(100) + retry_after / 20
}

/// The window herald keeps for a platform's rate: a little longer than the
/// platform's, because the platform counts when requests *arrive*, and two
/// requests sent exactly `per` apart can arrive closer together.
fn padded(rate: Rate) -> Rate {
    let pad = (rate.per / 50).max(Duration::from_millis(20));
    Rate::new(rate.count, rate.per + pad)
}

/// How long a call waits when a shared budget could not be read.
const SHARED_RETRY: Duration = Duration::from_millis(500);

/// One budget and the window that spends it.
#[derive(Clone)]
struct Gate {
    budget: Budget,
    window: SharedWindow,
    /// Where the window is kept in the store.
    key: String,
    /// Spent by every replica of a shared store: the kept window is the
    /// window, changed under its row lock at every call (an account's
    /// budgets; a channel's follow its lease and stay in process).
    shared: bool,
}

fn key_of(owner: &str, budget: &Budget) -> String {
    let calls: Vec<&str> = budget.calls.iter().map(|c| c.as_str()).collect();
    format!(
        "{owner}/{}/{}/{}per{}ms",
        budget.scope.as_str(),
        calls.join("+"),
        budget.rate.count,
        budget.rate.per.as_millis()
    )
}

/// Keeps windows in the store, where the platform enforces its limits.
#[derive(Clone)]
struct Keeper {
    store: Store,
}

impl Keeper {
    async fn open(
        &self,
        owner: &str,
        budgets: impl Iterator<Item = &Budget>,
        shared: bool,
    ) -> Result<Vec<Gate>, StoreError> {
        let gates: Vec<Gate> = budgets
            .map(|b| Gate {
                budget: b.clone(),
                window: Arc::new(Mutex::new(Window::new(padded(b.rate)))),
                key: key_of(owner, b),
                shared,
            })
            .collect();
        let keys: Vec<String> = gates.iter().map(|g| g.key.clone()).collect();
        let kept = self.store.load_budget_windows(&keys).await?;
        let (now, now_ms) = (Instant::now(), now_ms());
        for gate in &gates {
            if let Some(snapshot) = kept.get(&gate.key) {
                gate.window.lock().await.restore(snapshot, now, now_ms);
            }
        }
        Ok(gates)
    }

    async fn save(&self, gates: &[&Gate]) {
        let (now, now_ms) = (Instant::now(), now_ms());
        let mut snapshots = Vec::with_capacity(gates.len());
        // Shared windows are written at every change, under their lock.
        for gate in gates.iter().filter(|g| !g.shared) {
            snapshots.push((gate.key.clone(), gate.window.lock().await.snapshot(now, now_ms)));
        }
        if let Err(e) = self.store.save_budget_windows(&snapshots, now_ms).await {
            warn!(error = %e, "could not keep rate budgets in the store; a restart now may spend them twice");
        }
    }
}

/// Windows for limits that are herald's own ceiling (the platform
/// enforces nothing): no arrival skew to allow for, so no padding.
fn fresh(budgets: impl Iterator<Item = Budget>) -> Vec<Gate> {
    budgets
        .map(|b| Gate {
            window: Arc::new(Mutex::new(Window::new(b.rate))),
            key: String::new(),
            shared: false,
            budget: b,
        })
        .collect()
}

/// The budgets one platform account shares across its channels (Discord's
/// global limit, Slack's per-workspace methods, Telegram's per-bot limit).
#[derive(Clone)]
pub struct AccountBudgets {
    owner: String,
    gates: Vec<Gate>,
    keeper: Option<Keeper>,
}

impl AccountBudgets {
    /// The account-scoped budgets of `limits`, with the windows an earlier
    /// process kept. `owner` names the account in stored keys. With
    /// `shared` (several replicas serve the store) the account's windows
    /// are spent in the store, where every replica sees them.
    pub async fn open(
        owner: &str,
        limits: &Limits,
        store: &Store,
        shared: bool,
    ) -> Result<AccountBudgets, StoreError> {
        let account = limits.budgets.iter().filter(|b| b.scope == Scope::Account);
        let keeper = limits
            .enforced_by_platform
            .then(|| Keeper { store: store.clone() });
        let gates = match &keeper {
            Some(k) => k.open(owner, account, shared).await?,
            None => fresh(account.cloned()),
        };
        Ok(AccountBudgets {
            owner: owner.to_owned(),
            gates,
            keeper,
        })
    }

    /// The door of one channel of this account: the account's shared
    /// budgets first, then the channel's own from `limits`.
    pub async fn door(&self, channel: &str, limits: &Limits) -> Result<Door, StoreError> {
        let own = limits.budgets.iter().filter(|b| b.scope == Scope::Channel);
        let owner = format!("{}/{channel}", self.owner);
        let own_gates = match &self.keeper {
            Some(k) => k.open(&owner, own, false).await?,
            None => fresh(own.cloned()),
        };
        let mut gates = self.gates.clone();
        gates.extend(own_gates);
        Ok(Door {
            gates,
            keeper: self.keeper.clone(),
        })
    }
}

/// A call let through the door, to be settled with its answer.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    sent: Instant,
    /// The same moment as kept in shared windows.
    sent_ms: i64,
}

/// Every call of one channel passes here. Clones share the windows.
#[derive(Clone)]
pub struct Door {
    /// Account gates first, then the channel's: the lock order.
    gates: Vec<Gate>,
    keeper: Option<Keeper>,
}

impl Door {
    fn counting(&self, call: Call) -> Vec<&Gate> {
        self.gates.iter().filter(|g| g.budget.counts(call)).collect()
    }

    fn windows(gates: &[&Gate]) -> Vec<SharedWindow> {
        gates.iter().map(|g| g.window.clone()).collect()
    }

    /// How long until `call` may pass (zero: now). Takes nothing.
    /// Shared windows are read from the store (what every replica spent),
    /// so an actor does not block in [`Door::acquire`] on a budget the
    /// other replicas used up while its own work could go ahead.
    pub async fn ready_in(&self, call: Call) -> Duration {
        let counting = self.counting(call);
        let windows = Self::windows(&counting);
        let mut wait = ready_in(&windows.iter().collect::<Vec<_>>()).await;
        for mut window in self.shared_windows(&counting).await {
            wait = wait.max(window.wait_time(Instant::now()));
        }
        wait
    }

    /// How many calls of this kind may pass right now without waiting.
    pub async fn available_now(&self, call: Call) -> usize {
        let now = Instant::now();
        let counting = self.counting(call);
        let mut available = usize::MAX;
        for gate in &counting {
            available = available.min(gate.window.lock().await.available_now(now));
        }
        for mut window in self.shared_windows(&counting).await {
            available = available.min(window.available_now(now));
        }
        available
    }

    /// The shared windows among `gates` as the store has them now; a window
    /// that cannot be read counts as full for a moment.
    async fn shared_windows(&self, gates: &[&Gate]) -> Vec<Window> {
        let shared: Vec<&Gate> = gates.iter().copied().filter(|g| g.shared).collect();
        let Some(keeper) = &self.keeper else {
            return Vec::new();
        };
        if shared.is_empty() {
            return Vec::new();
        }
        let keys: Vec<String> = shared.iter().map(|g| g.key.clone()).collect();
        let kept = match keeper.store.load_budget_windows(&keys).await {
            Ok(kept) => kept,
            Err(e) => {
                warn!(error = %e, "could not read a rate budget shared with the other replicas");
                let mut full = Window::new(Rate::new(1, SHARED_RETRY));
                full.take_at(Instant::now());
                return vec![full];
            }
        };
        let (now, now_ms) = (Instant::now(), now_ms());
        shared
            .iter()
            .map(|gate| {
                let mut window = Window::new(padded(gate.budget.rate));
                if let Some(k) = kept.get(&gate.key) {
                    window.restore_exact(k, now, now_ms);
                }
                window
            })
            .collect()
    }

    /// Wait until `call` may pass, spend it from every budget that counts
    /// it, and (where the platform enforces its limits) keep the windows
    /// in the store before the call is made. The slot goes back to
    /// [`Door::observe`] with the answer.
    pub async fn acquire(&self, call: Call) -> Slot {
        let gates = self.counting(call);
        let shared: Vec<&Gate> = gates.iter().copied().filter(|g| g.shared).collect();
        let local: Vec<&Gate> = gates.iter().copied().filter(|g| !g.shared).collect();
        // Every window is spent in this process first, shared ones too (a
        // mirror of this process's own sends): the channels of one process
        // contend there, in memory, as they always did, instead of racing
        // each other through the store. Then the shared windows are spent
        // in the store, where the other replicas' sends are.
        let windows = Self::windows(&gates);
        let windows: Vec<&SharedWindow> = windows.iter().collect();
        loop {
            let sent = acquire(&windows).await;
            let sent_ms = now_ms();
            if let Some(wait) = self.take_shared(&shared, sent_ms).await {
                // Another replica spent it: this process's mirror keeps the
                // send it took (it frees up within the window; never more
                // calls than allowed, at worst one fewer).
                tokio::time::sleep(wait).await;
                continue;
            }
            if let Some(keeper) = &self.keeper {
                keeper.save(&local).await;
            }
            return Slot { sent, sent_ms };
        }
    }

    /// Let `call` through now if every budget allows it, else say how long
    /// until one might: for work that should step aside rather than wait
    /// (a live message's edit while posts are due).
    pub async fn try_acquire(&self, call: Call) -> Result<Slot, Duration> {
        let gates = self.counting(call);
        let shared: Vec<&Gate> = gates.iter().copied().filter(|g| g.shared).collect();
        let local: Vec<&Gate> = gates.iter().copied().filter(|g| !g.shared).collect();
        let windows = Self::windows(&gates);
        let sent = try_acquire(&windows.iter().collect::<Vec<_>>()).await?;
        let sent_ms = now_ms();
        if let Some(wait) = self.take_shared(&shared, sent_ms).await {
            return Err(wait);
        }
        if let Some(keeper) = &self.keeper {
            keeper.save(&local).await;
        }
        Ok(Slot { sent, sent_ms })
    }

    /// Spend one send at `at_ms` from each shared window, under its row
    /// lock; how long to wait first when one of them is full (sends taken
    /// from the windows before it stay taken: counted, never exceeded).
    async fn take_shared(&self, gates: &[&Gate], at_ms: i64) -> Option<Duration> {
        let keeper = self.keeper.as_ref()?;
        for gate in gates {
            let rate = padded(gate.budget.rate);
            let wait = std::sync::Mutex::new(Duration::ZERO);
            let change = |kept: KeptWindow| {
                let now = Instant::now();
                let mut window = Window::new(rate);
                window.restore_exact(&kept, now, at_ms);
                let w = window.wait_time(now);
                if w.is_zero() {
                    window.take_at(now);
                    Some(window.snapshot(now, at_ms))
                } else {
                    *wait.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = w;
                    None
                }
            };
            if let Err(e) = keeper.store.change_budget_window(&gate.key, at_ms, &change).await {
                warn!(error = %e, "could not spend a rate budget shared with the other replicas; waiting");
                return Some(SHARED_RETRY);
            }
            let w = *wait.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !w.is_zero() {
                return Some(w);
            }
        }
        None
    }

    /// Change each shared window under its row lock.
    async fn change_shared(
        &self,
        gates: &[&Gate],
        change: impl Fn(&Gate, KeptWindow) -> Option<KeptWindow> + Sync,
    ) {
        let Some(keeper) = &self.keeper else {
            return;
        };
        for gate in gates.iter().filter(|g| g.shared) {
            let one = |kept: KeptWindow| change(gate, kept);
            if let Err(e) = keeper.store.change_budget_window(&gate.key, now_ms(), &one).await {
                warn!(error = %e, "could not update a rate budget shared with the other replicas");
            }
        }
    }

    /// Learn from an answer: a retry-after holds the budgets it concerns
    /// (the account's for a global limit, else the channel's) for that
    /// long plus a margin; `exhausted` (the platform said the budget is
    /// empty for this long) holds the channel's budgets for the call.
    pub async fn observe(
        &self,
        call: Call,
        slot: Slot,
        failure: Option<&NotSurfaced>,
        exhausted: Option<Duration>,
    ) {
        let settled = if self.keeper.is_some() {
            // Limits the platform enforces count the call from its answer
            // (see `Window::settle`); herald's own ceilings need not.
            let counting = self.counting(call);
            let windows = Self::windows(&counting);
            settle(&windows.iter().collect::<Vec<_>>(), slot.sent).await;
            let answered = now_ms();
            self.change_shared(&counting, |_, mut kept| {
                let i = kept.sends.iter().rposition(|t| *t == slot.sent_ms)?;
                kept.sends.remove(i);
                let at = kept.sends.partition_point(|t| *t <= answered);
                kept.sends.insert(at, answered);
                Some(kept)
            })
            .await;
            counting
        } else {
            Vec::new()
        };
        let mut held = Vec::new();
        if let Some(NotSurfaced::RateLimited { retry_after, global }) = failure {
            let scope = if *global { Scope::Account } else { Scope::Channel };
            held.extend(
                self.hold(call, scope, with_margin(*retry_after), Hold::Paced)
                    .await,
            );
        }
        if let Some(wait) = exhausted {
            held.extend(
                self.hold(call, Scope::Channel, with_margin(wait), Hold::UntilReset)
                    .await,
            );
        }
        if let Some(keeper) = &self.keeper {
            // Kept again as settled (and held): a restart from here on
            // counts the call from its answer, not from when it left.
            let mut keep = settled;
            for gate in held {
                if !keep.iter().any(|g| g.key == gate.key) {
                    keep.push(gate);
                }
            }
            keeper.save(&keep).await;
        }
    }

    /// Pause the budgets of `scope` that count `call`; where there is none
    /// of that scope, every budget that counts it.
    async fn hold(&self, call: Call, scope: Scope, wait: Duration, how: Hold) -> Vec<&Gate> {
        let counting = self.counting(call);
        let mut chosen: Vec<&Gate> = counting
            .iter()
            .copied()
            .filter(|g| g.budget.scope == scope)
            .collect();
        if chosen.is_empty() {
            chosen = counting;
        }
        for gate in &chosen {
            let mut window = gate.window.lock().await;
            match how {
                Hold::Paced => window.pause(wait),
                Hold::UntilReset => window.hold(wait),
            }
        }
        self.change_shared(&chosen, |gate, kept| {
            let (now, now_ms) = (Instant::now(), now_ms());
            let mut window = Window::new(padded(gate.budget.rate));
            window.restore_exact(&kept, now, now_ms);
            match how {
                Hold::Paced => window.pause(wait),
                Hold::UntilReset => window.hold(wait),
            }
            Some(window.snapshot(now, now_ms))
        })
        .await;
        chosen
    }
}

/// How a held budget resumes.
#[derive(Clone, Copy)]
enum Hold {
    /// After a 429: paced, one slot every `per / count`, since the
    /// platform's window is unknown and the burst that hit it must not
    /// repeat at once.
    Paced,
    /// After "bucket empty until reset": the platform's bucket is full
    /// again at the reset.
    UntilReset,
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_messaging::{ALL_CALLS, Budget};

    async fn store(dir: &std::path::Path) -> Store {
        let url = match std::env::var("HERALD_TEST_STORE") {
            Ok(s) if s == "postgres" => std::env::var("HERALD_TEST_PG_URL").expect("HERALD_TEST_PG_URL"),
            _ => format!("sqlite://{}", dir.join("budgets.db").display()),
        };
        Store::open(&url, Duration::from_secs(10)).await.unwrap()
    }

    /// Two replicas' doors on one account budget of 5 per second: every
    /// call from both counts in one window, so no second holds more than 5
    /// of them (each alone would allow 5, both together 10).
    #[tokio::test]
    async fn replicas_spend_one_shared_account_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let owner = format!("test-{}", crate::store::new_progress_key());
        let limits = Limits {
            max_text_chars: 100,
            budgets: vec![Budget::account(ALL_CALLS, Rate::new(5, Duration::from_secs(1)))],
            enforced_by_platform: true,
        };
        let mut tasks = Vec::new();
        for replica in 0..2 {
            let budgets = AccountBudgets::open(&owner, &limits, &store, true).await.unwrap();
            let door = budgets.door(&format!("c{replica}"), &limits).await.unwrap();
            tasks.push(tokio::spawn(async move {
                let mut times = Vec::new();
                for _ in 0..8 {
                    let slot = door.acquire(Call::Post).await;
                    times.push(std::time::Instant::now());
                    door.observe(Call::Post, slot, None, None).await;
                }
                times
            }));
        }
        let mut times = Vec::new();
        for task in tasks {
            times.extend(task.await.unwrap());
        }
        times.sort();
        assert_eq!(times.len(), 16);
        for (i, t) in times.iter().enumerate() {
            let within = times[i..]
                .iter()
                .take_while(|u| u.duration_since(*t) < Duration::from_secs(1))
                .count();
            assert!(within <= 5, "{within} calls within one second from call {i}");
        }
    }
}
