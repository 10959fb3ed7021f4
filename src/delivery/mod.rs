//! The delivery engine: one actor per channel that keeps progress messages
//! current and drives terminal receipts until the platform confirms them.
//!
//! The store is the truth: actors read their work from it, and a wake-up
//! after an ingest commit is only a hint that saves latency.

pub mod budget;
mod channel;
pub mod receipts;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use herald_messaging::{ChannelRef, Messaging, Platform};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::config::{ChannelConfig, ChannelTarget, Config};
use crate::store::Store;
use budget::{SharedBucket, TokenBucket};
use channel::{ChannelActor, SharedBudgets};

/// The adapters delivery uses: one per platform account (Discord, Slack,
/// Telegram, web), or one per channel where each channel is its own
/// endpoint with its own secret (webhooks).
#[derive(Clone, Default)]
pub struct Adapters {
    platforms: HashMap<Platform, Arc<dyn Messaging>>,
    channels: HashMap<String, Arc<dyn Messaging>>,
}

impl Adapters {
    /// Serve every channel of `platform` with `adapter`.
    pub fn insert_platform(&mut self, platform: Platform, adapter: Arc<dyn Messaging>) {
        self.platforms.insert(platform, adapter);
    }

    /// Serve channel `name` with its own `adapter`.
    pub fn insert_channel(&mut self, name: &str, adapter: Arc<dyn Messaging>) {
        self.channels.insert(name.to_owned(), adapter);
    }

    /// The adapter for a channel: its own, else its platform's.
    pub fn for_channel(&self, channel: &ChannelConfig) -> Option<Arc<dyn Messaging>> {
        self.channels
            .get(&channel.name)
            .or_else(|| self.platforms.get(&channel.platform))
            .cloned()
    }
}

/// Why delivery could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A channel uses a platform this build has no adapter for.
    #[error("channel {channel:?} uses the {platform} adapter, which this build of herald does not include")]
    MissingAdapter {
        /// Channel name.
        channel: String,
        /// Its platform.
        platform: Platform,
    },
}

/// The wake-up hints of the running channel actors, by channel name. Shared
/// with the ingest writer and replaced when a reload restarts the actors.
#[derive(Clone, Default)]
pub struct Wakers(Arc<RwLock<HashMap<String, Arc<Signal>>>>);

/// How the rest of herald pokes one channel actor.
#[derive(Default)]
pub struct Signal {
    /// New work of any kind.
    notify: Notify,
    /// New terminal receipts: interrupt progress work for them.
    urgent: AtomicBool,
}

impl Wakers {
    /// Tell the actors of these channels that new work is in the store.
    pub fn wake<'a>(&self, channels: impl IntoIterator<Item = &'a String>) {
        self.each(channels, |s| s.notify.notify_one());
    }

    /// Tell the actors of these channels that terminal receipts are due:
    /// they go before any progress work still queued.
    pub fn wake_urgent<'a>(&self, channels: impl IntoIterator<Item = &'a String>) {
        self.each(channels, |s| {
            s.urgent.store(true, Ordering::Release);
            s.notify.notify_one();
        });
    }

    fn each<'a>(&self, channels: impl IntoIterator<Item = &'a String>, f: impl Fn(&Signal)) {
        let map = self.0.read().unwrap_or_else(PoisonError::into_inner);
        for name in channels {
            if let Some(s) = map.get(name) {
                f(s);
            }
        }
    }

    fn replace(&self, map: HashMap<String, Arc<Signal>>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = map;
    }
}

impl Signal {
    /// Wait for any wake-up.
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// Take the urgent flag (true once per urgent wake-up).
    pub fn take_urgent(&self) -> bool {
        self.urgent.swap(false, Ordering::AcqRel)
    }
}

impl crate::ingest::Waker for Wakers {
    fn wake(&self, channel: &str) {
        Wakers::wake_urgent(self, [&channel.to_owned()]);
    }
}

/// The running channel actors.
pub struct Delivery {
    tasks: Vec<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
}

impl Delivery {
    /// Start one actor per configured channel, registering their wake-ups
    /// in `wakers`.
    pub fn start(
        config: &Config,
        store: &Store,
        adapters: &Adapters,
        wakers: &Wakers,
    ) -> Result<Delivery, StartError> {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut wakers_map = HashMap::new();
        let mut actors = Vec::new();
        let mut shared_by_platform: HashMap<Platform, SharedBudgets> = HashMap::new();
        for ch in config.channels.values() {
            let adapter = adapters
                .for_channel(ch)
                .ok_or_else(|| StartError::MissingAdapter {
                    channel: ch.name.clone(),
                    platform: ch.platform,
                })?;
            let target = match &ch.target {
                ChannelTarget::Chat { id, thread_id } => ChannelRef {
                    id: id.clone(),
                    thread: thread_id.clone(),
                },
                ChannelTarget::Webhook(hook) => ChannelRef::new(hook.url.clone()),
            };
            let shared = shared_by_platform
                .entry(ch.platform)
                .or_insert_with(|| {
                    let limits = adapter.limits();
                    let bucket =
                        |rate| -> SharedBucket { Arc::new(tokio::sync::Mutex::new(TokenBucket::new(rate))) };
                    SharedBudgets {
                        global: limits.global.map(bucket),
                        edits: limits.edits_shared.map(bucket),
                        per_channel: None,
                    }
                })
                .clone();
            let wake = Arc::new(Signal::default());
            wakers_map.insert(ch.name.clone(), wake.clone());
            actors.push(ChannelActor {
                name: ch.name.clone(),
                target,
                progress: ch.progress,
                adapter,
                store: store.clone(),
                config: config.delivery.clone(),
                wake,
                shutdown: shutdown_rx.clone(),
                shared,
            });
        }
        let tasks = actors.into_iter().map(|a| tokio::spawn(a.run())).collect();
        wakers.replace(wakers_map);
        Ok(Delivery { tasks, shutdown })
    }

    /// Stop: actors finish the platform call in flight (up to `deadline`)
    /// and leave everything else pending in the store.
    pub async fn shutdown(self, deadline: Duration) {
        if self.shutdown.send(true).is_err() {
            // Every actor has already exited; nothing to wait for.
            return;
        }
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(deadline, all).await.is_err() {
            warn!(
                ?deadline,
                "delivery did not drain before the deadline; leaving the rest pending"
            );
        }
    }
}
