//! The delivery engine: one actor per channel that keeps progress messages
//! current and drives terminal receipts until the platform confirms them.
//!
//! The store is the truth: actors read their work from it, and a wake-up
//! after an ingest commit is only a hint that saves latency.

mod account;
mod attempt;
mod bookkeeping;
pub mod budget;
mod channel;
mod concurrency;
mod door;
pub mod leases;
pub mod receipts;
pub mod throttles;

pub use attempt::receipt_message;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use herald_messaging::{ChannelRef, Messaging, Platform};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::{AccountConfig, ChannelConfig, ChannelTarget, Config, DeliveryConfig};
use crate::store::{Lease, Store, StoreError, now_ms};
use account::{Account, AccountKey};
use channel::ChannelActor;

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

    /// The bot account's adapter of a chat platform, if configured.
    pub fn for_platform(&self, platform: Platform) -> Option<Arc<dyn Messaging>> {
        self.platforms.get(&platform).cloned()
    }

    /// The adapter for a channel: its own, else its platform's.
    pub fn for_channel(&self, channel: &ChannelConfig) -> Option<Arc<dyn Messaging>> {
        self.channels
            .get(&channel.name)
            .or_else(|| self.platforms.get(&channel.platform))
            .cloned()
    }

    /// Which account serves a channel.
    fn account_of(&self, channel: &ChannelConfig) -> AccountKey {
        if self.channels.contains_key(&channel.name) {
            AccountKey::Channel(channel.name.clone())
        } else {
            AccountKey::Platform(channel.platform)
        }
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
    /// The store could not be read (kept rate budgets, orphaned receipts).
    #[error("delivery could not read the store: {0}")]
    Store(#[from] StoreError),
}

/// The wake-up hints of the running channel actors, by channel name. Shared
/// with the ingest writer and replaced when a reload restarts the actors.
/// Wake-ups for channels another replica delivers go to it through the
/// [`Bus`](crate::hints::Bus).
#[derive(Clone, Default)]
pub struct Wakers {
    actors: Arc<RwLock<HashMap<String, Arc<Signal>>>>,
    bus: crate::hints::Bus,
}

/// How the rest of herald pokes one channel actor.
#[derive(Default)]
pub struct Signal {
    /// New work of any kind.
    notify: Notify,
    /// New terminal receipts: interrupt progress work for them.
    urgent: AtomicBool,
}

impl Wakers {
    /// Wake-ups that also reach the other replicas through `bus`.
    pub fn with_bus(bus: crate::hints::Bus) -> Wakers {
        Wakers {
            actors: Arc::default(),
            bus,
        }
    }

    /// Tell the actors of these channels, here and on the other replicas,
    /// that new work is in the store.
    ///
    /// (The actors also poll; a wake-up only saves latency.)
    pub fn wake<'a>(&self, channels: impl IntoIterator<Item = &'a String>) {
        let channels: Vec<String> = channels.into_iter().cloned().collect();
        self.wake_local(&channels);
        if !channels.is_empty() {
            self.bus.send(crate::hints::Hint::Work {
                urgent: Vec::new(),
                touched: channels,
            });
        }
    }

    /// Tell the actors of these channels, here and on the other replicas,
    /// that terminal receipts are due: they go before any progress work
    /// still queued.
    pub fn wake_urgent<'a>(&self, channels: impl IntoIterator<Item = &'a String>) {
        let channels: Vec<String> = channels.into_iter().cloned().collect();
        self.wake_local_urgent(&channels);
        if !channels.is_empty() {
            self.bus.send(crate::hints::Hint::Work {
                urgent: channels,
                touched: Vec::new(),
            });
        }
    }

    /// Wake this replica's actors of these channels (a hint from another).
    pub fn wake_local(&self, channels: &[String]) {
        self.each(channels, |s| s.notify.notify_one());
    }

    /// Wake this replica's actors of these channels for terminal receipts.
    pub fn wake_local_urgent(&self, channels: &[String]) {
        self.each(channels, |s| {
            s.urgent.store(true, Ordering::Release);
            s.notify.notify_one();
        });
    }

    /// Wake every actor of this replica (hints may have been missed).
    pub fn wake_every_local(&self) {
        let map = self.actors.read().unwrap_or_else(PoisonError::into_inner);
        for s in map.values() {
            s.urgent.store(true, Ordering::Release);
            s.notify.notify_one();
        }
    }

    fn each(&self, channels: &[String], f: impl Fn(&Signal)) {
        let map = self.actors.read().unwrap_or_else(PoisonError::into_inner);
        for name in channels {
            if let Some(s) = map.get(name) {
                f(s);
            }
        }
    }

    fn replace(&self, map: HashMap<String, Arc<Signal>>) {
        *self.actors.write().unwrap_or_else(PoisonError::into_inner) = map;
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

/// One running channel actor.
struct Running {
    config: ChannelConfig,
    account: AccountKey,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    wake: Arc<Signal>,
}

/// The account settings an account's adapter was built from, to tell
/// whether a reload changed them.
fn account_config<'a>(config: &'a Config, key: &AccountKey) -> Option<&'a AccountConfig> {
    match key {
        AccountKey::Platform(Platform::Discord) => config.adapters.discord.as_ref(),
        AccountKey::Platform(Platform::Slack) => config.adapters.slack.as_ref(),
        AccountKey::Platform(Platform::Telegram) => config.adapters.telegram.as_ref(),
        // The web channel has no account settings; a webhook channel's
        // settings are its channel config, compared with the channel.
        AccountKey::Platform(_) | AccountKey::Channel(_) => None,
    }
}

fn target_of(ch: &ChannelConfig) -> ChannelRef {
    match &ch.target {
        ChannelTarget::Chat { id, thread_id } => ChannelRef {
            id: id.clone(),
            thread: thread_id.clone(),
            reply: None,
        },
        ChannelTarget::Webhook(hook) => ChannelRef::new(hook.url.clone()),
        // Their adapter holds the key or URL (both secrets); the channel's
        // name is what the store and the logs see.
        ChannelTarget::PagerDuty(_) | ChannelTarget::SlackWebhook(_) => ChannelRef::new(ch.name.clone()),
    }
}

/// How often receipts of channels no longer in the config are failed (a
/// task routed to a channel before it was removed may still end).
const ORPHAN_SWEEP: Duration = Duration::from_secs(30);

/// How long an actor handing its channel to another replica may finish
/// the call in flight before it is aborted (its receipt is then recovered
/// as unverified by the new holder).
const HANDOVER_DEADLINE: Duration = Duration::from_secs(5);

/// Who this process is among the replicas of its store.
#[derive(Debug, Clone)]
pub struct Replica {
    /// Replica id, new at every start ([`crate::store::new_replica_id`]).
    pub id: String,
    /// Where it listens, shown to operators.
    pub listen: String,
}

/// The delivery engine: runs an actor for every configured channel this
/// replica holds the lease of, and keeps taking, renewing and handing
/// back leases (`leases.rs`) every [`leases::TICK`].
pub struct Delivery {
    engine: Arc<tokio::sync::Mutex<Engine>>,
    throttles: throttles::Throttles,
    leasing: JoinHandle<()>,
    sweeper: JoinHandle<()>,
}

/// The running channel actors, the accounts they share and the leases
/// they run under.
struct Engine {
    store: Store,
    wakers: Wakers,
    delivery: DeliveryConfig,
    accounts: HashMap<AccountKey, Arc<Account>>,
    account_configs: HashMap<AccountKey, Option<AccountConfig>>,
    actors: HashMap<String, Running>,
    /// Channel names the sweeper keeps; written only under reload.
    known: Arc<tokio::sync::RwLock<Vec<String>>>,
    /// Records every actor's attempt outcomes and makes its claims, many
    /// per transaction.
    bookkeeping: bookkeeping::Bookkeeping,
    replica: Replica,
    /// Every configured channel with its account: what may be leased.
    wanted: BTreeMap<String, (ChannelConfig, AccountKey)>,
    /// The leases this replica holds, by channel.
    held: HashMap<String, Lease>,
    /// The route table, for the routes' mentions; replaced on reload.
    routes: crate::mentions::SharedRouter,
    /// The actors' rate-limited answers, for the overview.
    throttles: throttles::Throttles,
}

impl Delivery {
    /// Join the store's replicas as `replica`, take this replica's share
    /// of the configured channels and start their actors, registering
    /// their wake-ups in `wakers`.
    pub async fn start(
        config: &Config,
        store: &Store,
        adapters: &Adapters,
        wakers: &Wakers,
        replica: Replica,
    ) -> Result<Delivery, StartError> {
        store
            .join(&replica.id, &replica.listen, now_ms(), millis(leases::LEASE_TTL))
            .await?;
        info!(replica = %replica.id, "joined the store's replicas");
        let known = Arc::new(tokio::sync::RwLock::new(Vec::new()));
        let sweeper = tokio::spawn(sweep_orphans(store.clone(), known.clone()));
        let mut engine = Engine {
            store: store.clone(),
            wakers: wakers.clone(),
            delivery: config.delivery.clone(),
            accounts: HashMap::new(),
            account_configs: HashMap::new(),
            actors: HashMap::new(),
            known,
            bookkeeping: bookkeeping::Bookkeeping::start(store.clone()),
            replica,
            wanted: BTreeMap::new(),
            held: HashMap::new(),
            routes: crate::mentions::SharedRouter::default(),
            throttles: throttles::Throttles::default(),
        };
        let throttles = engine.throttles.clone();
        engine.apply(config, adapters, Duration::ZERO).await?;
        // The first share is taken before serving: a lone herald starts
        // delivering everything at once, as before replicas.
        engine.tick().await?;
        let engine = Arc::new(tokio::sync::Mutex::new(engine));
        let leasing = tokio::spawn(keep_leasing(engine.clone()));
        Ok(Delivery {
            engine,
            throttles,
            leasing,
            sweeper,
        })
    }

    /// Move to a new config, keeping what did not change: actors of
    /// unchanged channels keep running with their budgets; actors of
    /// changed or removed channels are stopped (their in-flight call may
    /// finish within `deadline`, then they are aborted, never detached);
    /// receipts of removed channels become `failed` (`channel removed from
    /// config`, replayable when it returns). Nothing changes when a channel
    /// has no adapter.
    pub async fn reload(
        &mut self,
        config: &Config,
        adapters: &Adapters,
        deadline: Duration,
    ) -> Result<(), StartError> {
        self.engine.lock().await.apply(config, adapters, deadline).await
    }

    /// The rate-limited answers of this replica's channels in the last
    /// hour, as they keep coming (for the overview page).
    pub fn throttles(&self) -> throttles::Throttles {
        self.throttles.clone()
    }

    /// Stop: actors finish the platform call in flight (up to `deadline`)
    /// and leave everything else pending in the store; then every lease
    /// goes back at once, for the other replicas to take.
    pub async fn shutdown(self, deadline: Duration) {
        self.sweeper.abort();
        self.leasing.abort();
        let mut engine = self.engine.lock().await;
        stop_all(engine.actors.drain().collect(), deadline).await;
        engine.held.clear();
        if let Err(e) = engine.store.leave(&engine.replica.id).await {
            warn!(error = %e, "could not hand the channel leases back; other replicas take them when they lapse");
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Tick the engine's leases until stopped.
async fn keep_leasing(engine: Arc<tokio::sync::Mutex<Engine>>) {
    let mut ticks = tokio::time::interval(leases::TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = engine.lock().await.tick().await {
            warn!(error = %e, "could not renew or take channel leases; trying again");
        }
    }
}

impl Engine {
    async fn apply(
        &mut self,
        config: &Config,
        adapters: &Adapters,
        deadline: Duration,
    ) -> Result<(), StartError> {
        let mut wanted = Vec::new();
        for ch in config.channels.values() {
            let adapter = adapters
                .for_channel(ch)
                .ok_or_else(|| StartError::MissingAdapter {
                    channel: ch.name.clone(),
                    platform: ch.platform,
                })?;
            wanted.push((ch, adapters.account_of(ch), adapter));
        }
        self.routes.replace(config.router.clone());
        let known_names = self.known.clone();
        let mut known = known_names.write().await;
        let delivery_changed = self.delivery != config.delivery;
        // Accounts: keep those whose settings did not change.
        let mut accounts = HashMap::new();
        let mut account_configs = HashMap::new();
        for (_, key, adapter) in &wanted {
            if accounts.contains_key(key) {
                continue;
            }
            let settings = account_config(config, key).cloned();
            let kept = self
                .accounts
                .get(key)
                .filter(|_| self.account_configs.get(key) == Some(&settings));
            let account = match kept {
                Some(a) => a.clone(),
                None => Arc::new(Account::open(key, adapter.clone(), &self.store, &self.wakers).await?),
            };
            accounts.insert(key.clone(), account);
            account_configs.insert(key.clone(), settings);
        }
        // Actors: stop those whose channel, account or delivery settings changed.
        let mut stopping = Vec::new();
        let names: Vec<String> = self.actors.keys().cloned().collect();
        for name in names {
            let keep = config.channels.get(&name).is_some_and(|ch| {
                let running = &self.actors[&name];
                !delivery_changed
                    && running.config == *ch
                    && running.account == adapters.account_of(ch)
                    && self
                        .accounts
                        .get(&running.account)
                        .zip(accounts.get(&running.account))
                        .is_some_and(|(old, new)| Arc::ptr_eq(old, new))
            });
            if !keep && let Some(running) = self.actors.remove(&name) {
                stopping.push((name, running));
            }
        }
        stop_all(stopping, deadline).await;
        for (key, account) in &accounts {
            let mine: Vec<&ChannelConfig> = wanted
                .iter()
                .filter(|(_, k, _)| k == key)
                .map(|(ch, _, _)| *ch)
                .collect();
            let shared = mine
                .iter()
                .filter(|ch| {
                    matches!(
                        account.adapter.reconciliation(&target_of(ch)),
                        herald_messaging::Reconciliation::Probe { shared_ids: true }
                    )
                })
                .map(|ch| ch.name.clone())
                .collect();
            account.set_channels(mine.iter().map(|ch| ch.name.clone()).collect(), shared);
        }
        self.accounts = accounts;
        self.account_configs = account_configs;
        self.delivery = config.delivery.clone();
        self.wanted = wanted
            .iter()
            .map(|(ch, key, _)| (ch.name.clone(), ((*ch).clone(), key.clone())))
            .collect();
        let held: Vec<String> = self.held.keys().cloned().collect();
        for name in held {
            self.start_actor(&name);
        }
        self.publish_wakers();
        *known = config.channels.keys().cloned().collect();
        let failed = self.store.fail_receipts_outside(&known).await?;
        if failed > 0 {
            warn!(
                failed,
                "receipts of channels no longer in the config are failed (replayable if the channel returns)"
            );
        }
        Ok(())
    }

    /// Start the actor of a held, configured channel unless it runs.
    fn start_actor(&mut self, name: &str) {
        if self.actors.get(name).is_some_and(|r| !r.task.is_finished()) {
            return;
        }
        let (Some(lease), Some((ch, key))) = (self.held.get(name), self.wanted.get(name)) else {
            return;
        };
        let Some(account) = self.accounts.get(key).cloned() else {
            return;
        };
        let (stop, stop_rx) = watch::channel(false);
        let wake = Arc::new(Signal::default());
        let actor = ChannelActor {
            name: ch.name.clone(),
            lease: lease.clone(),
            target: target_of(ch),
            progress: ch.progress,
            in_flight: ch.in_flight,
            bookkeeping: self.bookkeeping.clone(),
            account,
            store: self.store.clone(),
            config: self.delivery.clone(),
            mentions: crate::mentions::ChannelMentions {
                channel: ch.name.clone(),
                platform: ch.platform,
                own: ch.mention_on_failure.clone(),
                routes: self.routes.clone(),
            },
            thread: ch.thread,
            wake: wake.clone(),
            shutdown: stop_rx,
            throttles: self.throttles.clone(),
        };
        self.actors.insert(
            ch.name.clone(),
            Running {
                config: ch.clone(),
                account: key.clone(),
                stop,
                task: tokio::spawn(actor.run()),
                wake,
            },
        );
    }

    fn publish_wakers(&self) {
        self.wakers.replace(
            self.actors
                .iter()
                .map(|(name, r)| (name.clone(), r.wake.clone()))
                .collect(),
        );
    }

    /// One lease tick: beat, renew, stop what was lost, hand back what is
    /// above this replica's share, take what is free up to it.
    async fn tick(&mut self) -> Result<(), StoreError> {
        let now = now_ms();
        let ttl = millis(leases::LEASE_TTL);
        let me = self.replica.id.clone();
        let alive = match self.store.heartbeat(&me, now, ttl).await {
            Ok(()) => self
                .store
                .replicas(now)
                .await?
                .into_iter()
                .filter(|r| r.alive)
                .map(|r| r.id)
                .collect::<Vec<_>>(),
            Err(StoreError::LeaseLost { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        if !alive.contains(&me) {
            // Others may already deliver this replica's channels: stop
            // everything, and join again as a new replica.
            warn!(replica = %me, "this replica can no longer prove it is alive; it stops every channel and joins again");
            stop_all(self.actors.drain().collect(), HANDOVER_DEADLINE).await;
            self.held.clear();
            self.publish_wakers();
            self.replica.id = crate::store::new_replica_id();
            self.store
                .join(&self.replica.id, &self.replica.listen, now_ms(), ttl)
                .await?;
            info!(replica = %self.replica.id, "joined the store's replicas again");
            return Ok(());
        }
        let renewed: HashSet<Lease> = self
            .store
            .renew_leases(&me, now, ttl)
            .await?
            .into_iter()
            .collect();
        let lost: Vec<String> = self
            .held
            .iter()
            .filter(|(_, lease)| !renewed.contains(*lease))
            .map(|(name, _)| name.clone())
            .collect();
        let mut changed = !lost.is_empty();
        for name in &lost {
            warn!(channel = %name, "the channel's lease passed to another replica");
            self.held.remove(name);
        }
        self.stop_actors(&lost).await;
        // Leases the store says are this replica's but it does not know
        // (a take whose answer was lost, a hand-back that failed): adopt
        // them, or they would be renewed and never delivered.
        for lease in renewed {
            if !self.held.contains_key(&lease.channel) {
                self.adopt(lease).await?;
                changed = true;
            }
        }
        let rows = self.store.channel_leases().await?;
        let channels: Vec<String> = self.wanted.keys().cloned().collect();
        let plan = leases::plan(&me, &alive, &channels, &rows, now);
        self.stop_actors(&plan.release).await;
        for name in &plan.release {
            if let Some(lease) = self.held.remove(name) {
                self.store.release_lease(&lease).await?;
                info!(channel = %name, "handed the channel to another replica");
                changed = true;
            }
        }
        for name in &plan.take {
            if let Some(lease) = self.store.take_lease(name, &me, &alive, now, ttl).await? {
                self.adopt(lease).await?;
                changed = true;
            }
        }
        // Start actors for new leases, and again for any that ended on
        // their own while the lease is still held.
        let held: Vec<String> = self.held.keys().cloned().collect();
        for name in held {
            if self.actors.get(&name).is_none_or(|r| r.task.is_finished()) {
                self.start_actor(&name);
                changed = true;
            }
        }
        if changed {
            self.publish_wakers();
        }
        Ok(())
    }

    /// Start delivering a channel under a lease just taken: whatever the
    /// previous holder had in flight is recovered as unverified (checked,
    /// or resent under its key, before it goes out again).
    async fn adopt(&mut self, lease: Lease) -> Result<(), StoreError> {
        let recovered = self.store.reclaim_unowned_receipts(&lease, &[], now_ms()).await?;
        info!(channel = %lease.channel, epoch = lease.epoch, "took the channel's lease");
        if recovered > 0 {
            info!(
                channel = %lease.channel,
                recovered,
                "receipts the previous holder left in flight will be reconciled and resent"
            );
        }
        self.held.insert(lease.channel.clone(), lease);
        Ok(())
    }

    /// Stop these channels' actors together (each may finish its call in
    /// flight within the hand-over deadline).
    async fn stop_actors(&mut self, names: &[String]) {
        let stopping: Vec<(String, Running)> = names
            .iter()
            .filter_map(|name| self.actors.remove(name).map(|r| (name.clone(), r)))
            .collect();
        stop_all(stopping, HANDOVER_DEADLINE).await;
    }
}

/// Ask actors to stop, give them `deadline` to finish their call in
/// flight, then abort the rest (an aborted call's receipt keeps its lease
/// and is reclaimed, checked and resent).
async fn stop_all(actors: Vec<(String, Running)>, deadline: Duration) {
    if actors.is_empty() {
        return;
    }
    let mut tasks = Vec::with_capacity(actors.len());
    for (name, running) in actors {
        // A send error means the actor has already exited.
        let _exited = running.stop.send(true).is_err();
        tasks.push((name, running.task));
    }
    let started = tokio::time::Instant::now();
    let mut aborted = HashSet::new();
    for (name, mut task) in tasks {
        let left = deadline.saturating_sub(started.elapsed());
        if tokio::time::timeout(left, &mut task).await.is_err() {
            task.abort();
            aborted.insert(name);
        }
    }
    if !aborted.is_empty() {
        warn!(?deadline, channels = ?aborted, "channel actors did not stop before the deadline and were aborted; their work stays in the store");
    } else {
        info!("channel actors stopped");
    }
}

/// Now and then, fail receipts of channels no longer in the config.
async fn sweep_orphans(store: Store, known: Arc<tokio::sync::RwLock<Vec<String>>>) {
    loop {
        tokio::time::sleep(ORPHAN_SWEEP).await;
        let known = known.read().await;
        match store.fail_receipts_outside(&known).await {
            Ok(0) => {}
            Ok(failed) => warn!(
                failed,
                "receipts of channels no longer in the config are failed (replayable if the channel returns)"
            ),
            Err(e) => warn!(error = %e, "could not sweep receipts of removed channels"),
        }
    }
}
