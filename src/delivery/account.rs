//! One platform account as the channel actors share it: its adapter, the
//! budgets every channel of the account spends together, and whether the
//! platform is failing, so that the first answer after an outage pulls the
//! whole account's waiting work forward.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use herald_messaging::{Messaging, NotSurfaced};
use tracing::{info, warn};

use super::Wakers;
use super::door::AccountBudgets;
use crate::store::{Store, StoreError, now_ms};

/// How often a failing account is probed with one waiting receipt.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Which account a channel belongs to: a bot account per platform, or the
/// channel itself where each channel is its own endpoint (webhooks).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AccountKey {
    /// The one account of a chat platform (or the web channel).
    Platform(herald_messaging::Platform),
    /// A channel with an adapter of its own.
    Channel(String),
}

impl AccountKey {
    /// The account's name in stored budget keys.
    pub fn owner(&self) -> String {
        match self {
            AccountKey::Platform(p) => p.as_str().to_owned(),
            AccountKey::Channel(name) => format!("channel:{name}"),
        }
    }
}

/// Everything the channels of one account share.
pub struct Account {
    /// The platform, through its adapter.
    pub adapter: Arc<dyn Messaging>,
    /// The account-wide budgets; each channel's door is built from these.
    pub budgets: AccountBudgets,
    /// True after a platform failure, until the next confirmed call.
    failing: AtomicBool,
    /// When the last probe of a failing platform was allowed.
    last_probe: Mutex<Option<Instant>>,
    /// The account's channels (config names), for pulling work forward.
    channels: RwLock<Vec<String>>,
    /// Those of its channels whose message ids share one counter.
    shared_ids: RwLock<Vec<String>>,
    store: Store,
    wakers: Wakers,
}

impl Account {
    /// Open the account's budgets (with windows an earlier process kept).
    pub async fn open(
        key: &AccountKey,
        adapter: Arc<dyn Messaging>,
        store: &Store,
        wakers: &Wakers,
    ) -> Result<Account, StoreError> {
        let budgets = AccountBudgets::open(&key.owner(), &adapter.limits(), store, store.shared()).await?;
        Ok(Account {
            adapter,
            budgets,
            failing: AtomicBool::new(false),
            last_probe: Mutex::new(None),
            channels: RwLock::default(),
            shared_ids: RwLock::default(),
            store: store.clone(),
            wakers: wakers.clone(),
        })
    }

    /// Set the account's channels, and which of them take message ids
    /// from the counter they share.
    pub fn set_channels(&self, channels: Vec<String>, shared_ids: Vec<String>) {
        *self.channels.write().unwrap_or_else(PoisonError::into_inner) = channels;
        *self.shared_ids.write().unwrap_or_else(PoisonError::into_inner) = shared_ids;
    }

    /// The channels whose message ids share one counter.
    pub fn shared_id_channels(&self) -> Vec<String> {
        self.shared_ids
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The account's channels (config names).
    pub fn channels(&self) -> Vec<String> {
        self.channels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Learn from one call's outcome. When a platform that was failing
    /// confirms a call, the receipts of every channel of the account that
    /// wait on backoff become due now, and their actors are woken: an
    /// outage of any length is followed by delivery at the budgets' pace,
    /// not by the last grown backoff step.
    /// `failure` is `None` when the platform confirmed the call.
    pub async fn note(&self, failure: Option<&NotSurfaced>) {
        match failure {
            None => {
                if self.failing.swap(false, Ordering::AcqRel) {
                    self.recovered().await;
                }
            }
            Some(NotSurfaced::Transient { .. } | NotSurfaced::Unverified { .. }) => {
                // The first probe comes one interval after the failure; the
                // retry schedule's own first step is usually sooner.
                if !self.failing.swap(true, Ordering::AcqRel) {
                    *self.last_probe.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
                }
            }
            Some(_) => {}
        }
    }

    /// While the platform is failing, when the next probe may go out: one
    /// receipt waiting on backoff is tried every `PROBE_EVERY` for the
    /// whole account, so a recovery is noticed within seconds however long
    /// the schedule's steps have grown. `None` while the platform works.
    pub fn next_probe(&self) -> Option<Instant> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        let last = *self.last_probe.lock().unwrap_or_else(PoisonError::into_inner);
        Some(last.map_or_else(Instant::now, |t| t + PROBE_EVERY))
    }

    /// Take the account's probe if one is due now (one caller wins).
    pub fn take_probe(&self) -> bool {
        if !self.failing.load(Ordering::Acquire) {
            return false;
        }
        let mut last = self.last_probe.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|t| now < t + PROBE_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    async fn recovered(&self) {
        let channels = self.channels();
        let platform = self.adapter.platform();
        match self.store.pull_forward(&channels, now_ms()).await {
            Ok(0) => {}
            Ok(pulled) => {
                info!(%platform, pulled, "the platform answers again; work waiting on backoff is due now");
                crate::metrics::pulled_forward(platform.as_str(), pulled);
            }
            Err(e) => {
                warn!(%platform, error = %e, "could not pull waiting receipts forward; they keep their backoff")
            }
        }
        self.wakers.wake(&channels);
    }
}
