//! One actor per channel. Every platform call it makes passes the channel's
//! [`Door`]; it drains its work from the store: unverified messages first
//! (one batched look-up answers for all of them), then due terminal
//! receipts, then stale progress messages, stalest first. Actors never wait
//! on each other, so a slow, failing or rate-limited channel delays nobody
//! else.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_messaging::{
    Call, ChannelRef, DeliveryOutcome, IdempotencyKey, LookupPage, LookupQuery, MessageHandle, NotSurfaced,
    Outbound, Platform, Probe, Reconciliation, Reply,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::account::Account;
use super::attempt::{Attempts, Landed, failure, receipt_message};
use super::bookkeeping::Bookkeeping;
use super::concurrency::{Answer, Limiter, Ticket};
use super::door::{Door, Slot};
use super::receipts::{backoff, decide_progress};
use crate::config::{DeliveryConfig, InFlight};
use crate::render::{self, TaskView};
use crate::store::{
    ClaimRequest, Claimable, ClaimedReceipt, Lease, ProgressJob, ProgressWrite, ReceiptUpdate, Store,
    StoreError, now_ms,
};

/// How long a claimed receipt stays ours before the actor reclaims it as
/// unverified. Claims are sized to what the door lets through at once, so
/// an attempt never waits long at the door while holding a lease.
const LEASE_MS: i64 = 120_000;
/// Work taken from the store per round at most; small so receipts keep
/// priority.
const BATCH: usize = 16;
/// Most receipts a concurrent channel claims in one statement.
const CLAIM_MAX: usize = 400;
/// Longest idle sleep; the store is the truth and a wake-up only a hint, so a
/// lost wake-up costs at most this much latency.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// How often the actor looks for claims whose lease expired.
const RECLAIM_EVERY: Duration = Duration::from_secs(5);
/// How often an actor looks for notifications to render anew and for the
/// bot's answers to send.
const CHAT_LOOK_EVERY: Duration = Duration::from_secs(1);
/// Pause after the store failed a whole round.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// A look-up reads back to the oldest unverified message's acceptance time
/// less this, for clocks that disagree with the platform's.
const LOOKUP_SKEW: Duration = Duration::from_secs(60);
/// Most candidate ids probed for one lost message; a wider gap between the
/// known messages around it is not worth the chat's budget (resend).
const MAX_PROBES: usize = 10;

/// The ids to probe for one lost message, or why it cannot be probed.
type Candidates = Result<Vec<i64>, &'static str>;

/// Everything one channel actor needs.
pub struct ChannelActor {
    /// Channel name from the config.
    pub name: String,
    /// The lease this replica delivers the channel under; every write of
    /// the channel is fenced by it.
    pub lease: Lease,
    /// Where on the platform.
    pub target: ChannelRef,
    /// Whether this channel shows progress messages.
    pub progress: bool,
    /// The platform account: adapter, shared budgets, health.
    pub account: Arc<Account>,
    /// The store.
    pub store: Store,
    /// Retry schedule, max age, progress interval.
    pub config: DeliveryConfig,
    /// Posts in flight at once, where the platform takes them
    /// concurrently.
    pub in_flight: InFlight,
    /// Where attempt outcomes are recorded and receipts claimed (group
    /// commit).
    pub bookkeeping: Bookkeeping,
    /// Who its failure and attention notifications ping.
    pub mentions: crate::mentions::ChannelMentions,
    /// A task's notifications are replies under its live message.
    pub thread: bool,
    /// Poked after an ingest commit touching this channel.
    pub wake: Arc<super::Signal>,
    /// Becomes true when this actor should stop.
    pub shutdown: watch::Receiver<bool>,
    /// Where its rate-limited answers are counted (the overview).
    pub throttles: super::throttles::Throttles,
}

/// A stable hash of a rendering, to skip edits that would change nothing.
fn rendering_hash(message: &Outbound) -> i64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    message.title.hash(&mut hasher);
    message.state.hash(&mut hasher);
    message.body.hash(&mut hasher);
    for f in &message.fields {
        f.name.hash(&mut hasher);
        f.value.hash(&mut hasher);
    }
    i64::from_ne_bytes(hasher.finish().to_ne_bytes())
}

/// A look-up in progress: the unverified messages of the channel when it
/// began, and where its page range has got to. One pass answers for all of
/// them, one page per (budgeted) call.
struct Pass {
    /// Unverified receipts still unaccounted for, by idempotency key.
    receipts: Vec<String>,
    /// Started progress posts still unaccounted for: post key → task.
    posts: HashMap<String, i64>,
    /// No message of the pass can be older than this.
    since: SystemTime,
    /// Where the next page starts.
    cursor: Option<String>,
    /// After a failed page: not before.
    retry_at: Option<Instant>,
    /// Failed pages in a row.
    failures: i64,
    /// The thread being read (the parent of the replies in `receipts`),
    /// where the platform lists replies apart; `None`: the channel.
    thread: Option<MessageHandle>,
    /// Threads still to read after this one, with their unverified
    /// replies.
    threads: Vec<(MessageHandle, Vec<String>)>,
}

impl Pass {
    fn keys(&self) -> Vec<IdempotencyKey> {
        self.receipts
            .iter()
            .chain(self.posts.keys())
            .map(|k| IdempotencyKey(k.clone()))
            .collect()
    }

    fn is_done(&self) -> bool {
        self.receipts.is_empty() && self.posts.is_empty()
    }

    /// Move on to the next thread; false when none is left.
    fn next_thread(&mut self) -> bool {
        let Some((parent, receipts)) = self.threads.pop() else {
            return false;
        };
        self.thread = Some(parent);
        self.receipts = receipts;
        self.cursor = None;
        true
    }

    /// Every receipt the pass still has to account for, in any thread.
    fn take_all_receipts(&mut self) -> Vec<String> {
        let mut all = std::mem::take(&mut self.receipts);
        for (_, replies) in self.threads.drain(..) {
            all.extend(replies);
        }
        all
    }
}

/// A message with an unknown outcome on a platform that can only be
/// probed.
#[derive(Debug, Clone)]
enum Unknown {
    /// A terminal receipt, by id.
    Receipt(String),
    /// A task's live message post, by task row id.
    Post(i64),
}

/// One lost message being probed for, candidate id by candidate id.
struct ProbeTask {
    unknown: Unknown,
    /// Exactly what was sent.
    message: Outbound,
    /// Ids still to try, lowest first.
    candidates: VecDeque<i64>,
    /// After a failed probe: not before.
    retry_at: Option<Instant>,
    /// Failed probes in a row.
    failures: i64,
}

/// Terminal receipts in flight on a channel that takes posts
/// concurrently: claimed in batches, sent as their own tasks, as many at
/// once as the limiter allows.
struct Flight {
    limiter: Limiter,
    /// Claimed, not yet sent.
    queue: VecDeque<ClaimedReceipt>,
    /// Attempts under way (posting, or recording what the receiver said).
    tasks: JoinSet<Landed>,
    /// Every receipt claimed and not yet landed (queued or under way).
    ids: std::collections::HashSet<String>,
    /// Where attempts' tickets come back with the receiver's answers.
    answers: mpsc::UnboundedReceiver<Answer>,
    /// Cloned into each attempt's ticket.
    tickets: mpsc::UnboundedSender<Answer>,
}

impl Flight {
    /// Give the limiter every answer that came back so far.
    fn take_answers(&mut self) {
        while let Ok(answer) = self.answers.try_recv() {
            self.limiter.finish(answer);
        }
    }
}

/// What the actor keeps between rounds.
struct State {
    door: Door,
    /// What every attempt at a receipt shares.
    attempts: Arc<Attempts>,
    /// Receipts in flight, where the platform takes posts concurrently
    /// (else one attempt at a time).
    flight: Option<Flight>,
    /// The platform reconciles by looking up (else by resending).
    lookup: bool,
    /// The platform reconciles by probing.
    probe: bool,
    /// This chat's message ids come from a counter shared with the bot's
    /// other such chats.
    shared_ids: bool,
    /// Lost messages being probed for, one at a time.
    probes: VecDeque<ProbeTask>,
    /// Unverified work may exist that no pass has looked at yet.
    needs_check: bool,
    pass: Option<Pass>,
    /// A look-up failed for good once already (warned once per channel).
    warned_fallback: bool,
    next_reclaim: Instant,
    /// When to look again for notifications to render anew (acknowledged)
    /// and for the bot's answers to send.
    next_chat_look: Instant,
    /// A round failed on the store: a claim may have committed without
    /// herald seeing its receipts. The next round reclaims them.
    orphans: bool,
}

/// What a round did.
#[derive(Default)]
struct Round {
    /// Something was sent (or attempted).
    sent: bool,
    /// Posts are due but the door allows none for this long.
    posts_blocked: Option<Duration>,
    /// Edits are due but the door allows none for this long.
    edits_blocked: Option<Duration>,
    /// A look-up is due but cannot be made for this long.
    lookup_blocked: Option<Duration>,
    /// As many posts as allowed are in flight: more receipts wait for one
    /// of them to land, not for their due time.
    flight_full: bool,
}

impl State {
    /// Whether unverified work waits for a check (look-up or probe)
    /// instead of being resent.
    fn checks(&self) -> bool {
        self.lookup || self.probe
    }

    /// Which due receipts may be claimed now: not those waiting for a
    /// check, and in a threaded channel not replies whose parent is still
    /// to be posted.
    fn claimable(&self) -> Claimable {
        Claimable {
            verified_only: self.checks(),
            parent_posted: self.attempts.thread,
        }
    }
}

fn system_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl ChannelActor {
    /// Run until shutdown. Errors from the store are logged and retried:
    /// the actor must outlive a briefly locked or full database.
    pub async fn run(mut self) {
        match self.store.moved_channel_target(&self.name).await {
            Ok(Some(id)) => {
                info!(channel = %self.name, from = %self.target.id, to = %id, "using the id the platform moved this channel to");
                self.target.id = id;
            }
            Ok(None) => {}
            Err(e) => warn!(channel = %self.name, error = %e, "could not read a moved channel id"),
        }
        let mut state = loop {
            match self.open_state().await {
                Ok(s) => break s,
                Err(e) => {
                    warn!(channel = %self.name, error = %e, "could not read the channel's rate budgets; retrying");
                    if self.pause(STORE_RETRY).await {
                        return;
                    }
                }
            }
        };
        info!(channel = %self.name, platform = %self.account.adapter.platform(), "channel actor started");
        while !*self.shutdown.borrow() {
            let round = match self.round(&mut state).await {
                Ok(Round { sent: true, .. }) => continue,
                Ok(round) => round,
                Err(StoreError::LeaseLost { .. }) => {
                    warn!(channel = %self.name, epoch = self.lease.epoch, "the channel's lease passed to another replica; this replica stops delivering it");
                    break;
                }
                Err(e) => {
                    warn!(channel = %self.name, error = %e, "delivery round failed; retrying");
                    state.orphans = true;
                    // The round may have failed after it took up the
                    // check (planning probes, settling one): plan again
                    // from the store, or its unverified receipts would
                    // wait for a check nobody makes.
                    state.needs_check = true;
                    Round {
                        posts_blocked: Some(STORE_RETRY),
                        edits_blocked: Some(STORE_RETRY),
                        lookup_blocked: Some(STORE_RETRY),
                        ..Round::default()
                    }
                }
            };
            let sleep = match self.next_due(&state, &round).await {
                Ok(Some(due)) => {
                    Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0)).min(IDLE_POLL)
                }
                Ok(None) => IDLE_POLL,
                Err(e) => {
                    warn!(channel = %self.name, error = %e, "could not read next due time");
                    IDLE_POLL
                }
            };
            if sleep.is_zero() {
                continue;
            }
            let (tasks, answers) = match state.flight.as_mut() {
                Some(Flight {
                    tasks,
                    answers,
                    limiter,
                    ..
                }) => (Some(tasks), Some((answers, limiter))),
                None => (None, None),
            };
            let landing = async move {
                match tasks {
                    Some(tasks) if !tasks.is_empty() => tasks.join_next().await,
                    _ => std::future::pending().await,
                }
            };
            let answered = async move {
                // An answer frees a place: the next round fills it. (The
                // flight holds a sender, so `recv` ends only with it.)
                match answers {
                    Some((answers, limiter)) => match answers.recv().await {
                        Some(answer) => limiter.finish(answer),
                        None => std::future::pending().await,
                    },
                    None => std::future::pending().await,
                }
            };
            let landed = tokio::select! {
                landed = landing => landed,
                () = answered => None,
                _ = self.wake.notified() => None,
                _ = tokio::time::sleep(sleep) => None,
                _ = self.shutdown.changed() => None,
            };
            if let Some(landed) = landed {
                self.land(&mut state, landed).await;
            }
        }
        self.ground(&mut state).await;
        info!(channel = %self.name, "channel actor stopped");
    }

    /// Take in an attempt that ran as its own task.
    async fn land(&mut self, state: &mut State, joined: Result<Landed, tokio::task::JoinError>) {
        let Some(flight) = state.flight.as_mut() else {
            return;
        };
        match joined {
            Ok(landed) => {
                flight.ids.remove(&landed.receipt);
                self.report(state, landed).await;
            }
            Err(e) => {
                // Its ticket went back with its task. Its lease expires; the receipt is reclaimed and resent
                // with the same key.
                warn!(channel = %self.name, error = %e, "a delivery attempt ended abnormally; its receipt is retried once its lease expires");
            }
        }
    }

    /// Stopping: receipts claimed but not sent go back unchanged; attempts
    /// under way finish (within the engine's stop deadline) and are
    /// recorded.
    async fn ground(&mut self, state: &mut State) {
        let Some(flight) = state.flight.as_mut() else {
            return;
        };
        let queued: Vec<ClaimedReceipt> = flight.queue.drain(..).collect();
        for receipt in queued {
            // The shutdown flag is set: `deliver` records it as not sent.
            let landed = state.attempts.deliver(receipt, None).await;
            self.report(state, landed).await;
        }
        while let Some(flight) = state.flight.as_mut() {
            let Some(joined) = flight.tasks.join_next().await else {
                break;
            };
            self.land(state, joined).await;
        }
    }

    async fn open_state(&self) -> Result<State, StoreError> {
        let limits = self.account.adapter.channel_limits(&self.target);
        let door = self.account.budgets.door(&self.target.id, &limits).await?;
        let how = self.account.adapter.reconciliation(&self.target);
        let attempts = Arc::new(Attempts {
            target: self.target.clone(),
            account: self.account.clone(),
            door: door.clone(),
            config: self.config.clone(),
            bookkeeping: self.bookkeeping.clone(),
            shutdown: self.shutdown.clone(),
            epoch: self.lease.epoch,
            mentions: self.mentions.clone(),
            thread: self.thread,
            store: self.store.clone(),
            lease: self.lease.clone(),
            name: self.name.clone(),
            throttles: self.throttles.clone(),
        });
        let flight = self
            .account
            .adapter
            .accepts_concurrent_posts(&self.target)
            .then(|| {
                let (tickets, answers) = mpsc::unbounded_channel();
                Flight {
                    limiter: Limiter::new(self.in_flight),
                    queue: VecDeque::new(),
                    tasks: JoinSet::new(),
                    ids: std::collections::HashSet::new(),
                    answers,
                    tickets,
                }
            });
        Ok(State {
            door,
            attempts,
            flight,
            lookup: how == Reconciliation::Lookup,
            probe: matches!(how, Reconciliation::Probe { .. }),
            shared_ids: how == Reconciliation::Probe { shared_ids: true },
            probes: VecDeque::new(),
            needs_check: true,
            pass: None,
            warned_fallback: false,
            next_reclaim: Instant::now(),
            next_chat_look: Instant::now(),
            orphans: false,
        })
    }

    /// When the next piece of work is due (Unix ms). Work the door blocks
    /// is due no earlier than it allows.
    async fn next_due(&self, state: &State, round: &Round) -> Result<Option<i64>, StoreError> {
        let now = now_ms();
        let after = |due: Option<i64>, blocked: Option<Duration>| match (due, blocked) {
            (Some(d), Some(b)) => Some(d.max(now + millis(b))),
            (d, _) => d,
        };
        let mut candidates = Vec::new();
        if !round.flight_full {
            candidates.push(after(
                self.store.next_receipt_due(&self.name, state.claimable()).await?,
                round.posts_blocked,
            ));
        }
        if self.progress {
            let interval = self.min_interval_ms();
            let posts = self
                .store
                .next_progress_due(&self.name, Some(true), interval, state.checks())
                .await?;
            let edits = self
                .store
                .next_progress_due(&self.name, Some(false), interval, state.checks())
                .await?;
            candidates.push(after(posts, round.posts_blocked));
            candidates.push(after(edits, round.edits_blocked));
        }
        if let Some(probe) = self.account.next_probe()
            && self.store.has_backoff(&self.name).await?
        {
            let wait = probe.saturating_duration_since(Instant::now());
            candidates.push(Some(now + millis(wait)));
        }
        if state.pass.is_some() || !state.probes.is_empty() || (state.needs_check && state.checks()) {
            candidates.push(Some(now + round.lookup_blocked.map_or(0, millis)));
        }
        Ok(candidates.into_iter().flatten().min())
    }

    /// A claim of up to `limit` of the channel's due receipts, now.
    fn claim(&self, limit: i64, which: Claimable) -> ClaimRequest {
        ClaimRequest {
            lease: self.lease.clone(),
            now: now_ms(),
            lease_ms: LEASE_MS,
            limit,
            which,
        }
    }

    fn min_interval_ms(&self) -> i64 {
        millis(self.config.progress_min_interval)
    }

    /// Sleep, but wake early on shutdown. True when shutting down.
    async fn pause(&self, how_long: Duration) -> bool {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(how_long) => {}
            _ = shutdown.changed() => {}
        }
        *self.shutdown.borrow()
    }

    /// Wait at the door for `call`; `None` when shutting down first.
    async fn through_door(&self, state: &State, call: Call) -> Option<Slot> {
        state.attempts.through_door(call).await
    }

    /// Let the door, the account and the 429 counts learn from an answer
    /// (`None`: the platform confirmed the call).
    async fn observe(&self, state: &State, call: Call, slot: Slot, failure: Option<&NotSurfaced>) {
        state.attempts.learn(&self.target, call, slot, failure).await;
    }

    /// One round of work: reclaim expired claims now and then, advance a
    /// look-up, deliver due receipts as far as the door allows, then stale
    /// progress messages, posts and edits each as far as their own budget
    /// allows (a channel whose create budget is spent can still edit).
    async fn round(&mut self, state: &mut State) -> Result<Round, StoreError> {
        self.wake.take_urgent();
        let mut round = Round::default();
        if state.orphans {
            let keep: Vec<String> = state
                .flight
                .as_ref()
                .map(|f| f.ids.iter().cloned().collect())
                .unwrap_or_default();
            let reclaimed = self
                .store
                .reclaim_unowned_receipts(&self.lease, &keep, now_ms())
                .await?;
            state.orphans = false;
            if reclaimed > 0 {
                warn!(channel = %self.name, reclaimed, "claims interrupted by a store error are reclaimed; they will be checked before resending");
                state.needs_check = true;
            }
        }
        if Instant::now() >= state.next_reclaim {
            state.next_reclaim = Instant::now() + RECLAIM_EVERY;
            let reclaimed = self.store.reclaim_expired_receipts(&self.lease, now_ms()).await?;
            if reclaimed > 0 {
                warn!(channel = %self.name, reclaimed, "claims whose lease expired are reclaimed; they will be checked before resending");
                state.needs_check = true;
            }
            self.look_for_unchecked(state).await?;
        }
        // The platform is failing: now and then one receipt waiting on
        // backoff goes early, to notice the recovery.
        if self.account.next_probe().is_some()
            && self.store.has_backoff(&self.name).await?
            && self.account.take_probe()
        {
            self.store.pull_forward_one(&self.name, now_ms()).await?;
        }
        if state.lookup {
            self.lookup_step(state, &mut round).await?;
        } else if state.probe {
            self.probe_step(state, &mut round).await?;
        }
        if state.flight.is_some() {
            self.fly(state, &mut round).await?;
        } else {
            let free = state.door.available_now(Call::Post).await;
            if free == 0 {
                round.posts_blocked = Some(state.door.ready_in(Call::Post).await);
            } else {
                let limit = i64::try_from(free.min(BATCH)).unwrap_or(1);
                let receipts = self
                    .bookkeeping
                    .claim(self.claim(limit, state.claimable()))
                    .await?;
                round.sent |= !receipts.is_empty();
                for receipt in receipts {
                    let landed = state.attempts.deliver(receipt, None).await;
                    self.report(state, landed).await;
                }
            }
        }
        if !round.sent && Instant::now() >= state.next_chat_look {
            self.edit_notifications(state, &mut round).await?;
            self.send_answers(state, &mut round).await?;
        }
        if round.sent || !self.progress || *self.shutdown.borrow() {
            return Ok(round);
        }
        for call in [Call::Post, Call::Edit] {
            let jobs = self
                .store
                .due_progress(
                    &self.name,
                    call == Call::Post,
                    now_ms(),
                    self.min_interval_ms(),
                    i64::try_from(BATCH).unwrap_or(16),
                    state.checks(),
                )
                .await?;
            for job in jobs {
                // New terminal receipts pre-empt the rest of the progress batch.
                if *self.shutdown.borrow() || self.wake.take_urgent() {
                    return Ok(round);
                }
                let wait = state.door.ready_in(call).await;
                if !wait.is_zero() {
                    match call {
                        Call::Post => round.posts_blocked = Some(wait),
                        _ => round.edits_blocked = Some(wait),
                    }
                    break;
                }
                round.sent = true;
                if !self.send_progress(job, state).await? {
                    return Ok(round);
                }
            }
        }
        Ok(round)
    }

    /// Keep as many receipts in flight as the limiter allows: take in the
    /// answers and the attempts that landed, claim due receipts in batches
    /// (when the queue is down to half the limit, up to twice the limit
    /// ahead, as far as the door allows), start attempts.
    async fn fly(&mut self, state: &mut State, round: &mut Round) -> Result<(), StoreError> {
        while let Some(joined) = state.flight.as_mut().and_then(|f| f.tasks.try_join_next()) {
            self.land(state, joined).await;
        }
        let which = state.claimable();
        let Some(flight) = state.flight.as_mut() else {
            return Ok(());
        };
        flight.take_answers();
        let limit = flight.limiter.limit();
        let ahead = flight.queue.len() + flight.limiter.in_flight();
        // Refill when the queue runs low, not after every landing: one
        // claim then takes many receipts. Answered attempts still being
        // recorded count too, up to as many again: a store that records
        // slowly holds claims back instead of piling them up.
        if flight.queue.len() <= limit / 2 && ahead < 2 * limit && flight.ids.len() < 4 * limit {
            let free = state.door.available_now(Call::Post).await;
            if free == 0 {
                round.posts_blocked = Some(state.door.ready_in(Call::Post).await);
            } else {
                // Not capped by `free`: an attempt waits at the door
                // itself, and a claim sized to the window's few free
                // slots would mean a claim per landing.
                let want = (2 * limit - ahead).min(CLAIM_MAX);
                let receipts = self
                    .bookkeeping
                    .claim(self.claim(i64::try_from(want).unwrap_or(1), which))
                    .await?;
                flight.ids.extend(receipts.iter().map(|r| r.id.clone()));
                flight.queue.extend(receipts);
            }
        }
        while flight.limiter.room() > 0
            && let Some(receipt) = flight.queue.pop_front()
        {
            flight.limiter.start();
            let attempts = state.attempts.clone();
            let ticket = Ticket::new(flight.tickets.clone());
            flight
                .tasks
                .spawn(async move { attempts.deliver(receipt, Some(ticket)).await });
            round.sent = true;
        }
        round.flight_full = flight.limiter.room() == 0;
        Ok(())
    }

    /// Log, count and follow up one attempt's outcome (already recorded).
    async fn report(&mut self, state: &mut State, landed: Landed) {
        let Landed {
            receipt,
            attempt,
            created_at,
            outcome,
            update,
            recorded,
            ..
        } = landed;
        if let Some(outcome) = &outcome {
            crate::metrics::delivery(
                self.account.adapter.platform().as_str(),
                "terminal",
                outcome.label(),
            );
            if let Err(e) = self.follow_move(state, outcome).await {
                warn!(channel = %self.name, error = %e, "could not record the channel's new id");
            }
        }
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                crate::metrics::late_outcome();
                warn!(channel = %self.name, %receipt, attempt, "outcome arrived after the receipt passed to a newer attempt; not recorded");
                return;
            }
            Err(e) => {
                // Affects only this receipt: its lease expires and it is
                // reclaimed, checked, and resent.
                warn!(channel = %self.name, %receipt, error = %e, "could not record a delivery attempt; its lease will expire and it is retried");
                return;
            }
        }
        match &update {
            ReceiptUpdate::Surfaced { .. } => {
                let latency = now_ms() - created_at;
                crate::metrics::surfaced_latency(latency as f64 / 1000.0);
                debug!(channel = %self.name, %receipt, latency_ms = latency, "terminal notification surfaced")
            }
            ReceiptUpdate::Retry {
                error, unverified, ..
            } => {
                state.needs_check |= *unverified;
                if outcome.is_some() {
                    info!(channel = %self.name, %receipt, attempts = attempt, %error, "terminal notification will be retried")
                }
            }
            ReceiptUpdate::Failed { error } => {
                warn!(channel = %self.name, %receipt, %error, "terminal notification failed")
            }
        }
    }

    /// Where unverified work waits for a check, make sure one is under way:
    /// with no look-up pass, no probes and no check asked for, nothing
    /// would ever claim such a receipt (claims skip it until it is
    /// checked). Seen once in the PostgreSQL chaos bench: one receipt left
    /// pending and unverified for ten minutes.
    async fn look_for_unchecked(&self, state: &mut State) -> Result<(), StoreError> {
        if !state.checks() || state.needs_check || state.pass.is_some() || !state.probes.is_empty() {
            return Ok(());
        }
        let receipts = self.store.unverified_receipts(&self.name).await?.len();
        let posts = self.store.started_progress_posts(&self.name).await?.len();
        if receipts + posts > 0 {
            warn!(channel = %self.name, receipts, posts, "work with an unknown outcome waited with no check under way; checking it now");
            state.needs_check = true;
        }
        Ok(())
    }

    /// Advance the channel's look-up by one page, if one is needed and the
    /// door allows it: every unverified receipt and started progress post
    /// of the channel is settled by the same pages.
    async fn lookup_step(&mut self, state: &mut State, round: &mut Round) -> Result<(), StoreError> {
        if state.pass.is_none() {
            if !state.needs_check {
                return Ok(());
            }
            state.needs_check = false;
            state.pass = self.begin_pass().await?;
        }
        let Some(pass) = state.pass.as_ref() else {
            return Ok(());
        };
        if let Some(at) = pass.retry_at
            && at > Instant::now()
        {
            round.lookup_blocked = Some(at - Instant::now());
            return Ok(());
        }
        let wait = state.door.ready_in(Call::Lookup).await;
        if !wait.is_zero() {
            round.lookup_blocked = Some(wait);
            return Ok(());
        }
        let keys = pass.keys();
        let query = LookupQuery {
            keys: &keys,
            since: pass.since,
            cursor: pass.cursor.clone(),
            thread: pass.thread.as_ref(),
        };
        let Some(slot) = self.through_door(state, Call::Lookup).await else {
            return Ok(());
        };
        round.sent = true;
        let answer = self.account.adapter.lookup(&self.target, &query).await;
        self.observe(state, Call::Lookup, slot, answer.as_ref().err())
            .await;
        let label = answer.as_ref().map_or_else(NotSurfaced::label, |_| "surfaced");
        crate::metrics::delivery(self.account.adapter.platform().as_str(), "lookup", label);
        match answer {
            Ok(page) => self.apply_page(state, page).await,
            Err(reason) => self.lookup_failed(state, reason).await,
        }
    }

    /// The platform can never be asked about `count` unverified messages:
    /// they are sent again. Warns once per channel, counts them, and
    /// returns the note their receipts keep.
    fn fall_back(&self, state: &mut State, reason: &NotSurfaced, count: usize) -> String {
        let platform = self.account.adapter.platform();
        if !state.warned_fallback {
            state.warned_fallback = true;
            warn!(channel = %self.name, %platform, %reason, "cannot check whether earlier attempts arrived; sending them again, which may duplicate");
        }
        crate::metrics::reconcile_fallback(platform.as_str(), count);
        format!("could not check whether an earlier attempt arrived ({reason}); sent again")
    }

    /// Collect the channel's unverified work into a new pass.
    async fn begin_pass(&self) -> Result<Option<Pass>, StoreError> {
        let receipts = self.store.unverified_receipts(&self.name).await?;
        let posts = self.store.started_progress_posts(&self.name).await?;
        let oldest = receipts
            .iter()
            .map(|r| r.created_at)
            .chain(posts.iter().map(|p| p.first_seen_at))
            .min();
        let Some(oldest) = oldest else {
            return Ok(None);
        };
        info!(channel = %self.name, receipts = receipts.len(), posts = posts.len(), "checking whether messages with an unknown outcome arrived");
        let ids: Vec<String> = receipts.into_iter().map(|r| r.id).collect();
        let (top, threads) = self.by_thread(ids).await?;
        let mut pass = Pass {
            receipts: top,
            posts: posts.into_iter().map(|p| (p.post_key, p.task)).collect(),
            since: system_time(oldest - millis(LOOKUP_SKEW)),
            cursor: None,
            retry_at: None,
            failures: 0,
            thread: None,
            threads,
        };
        if pass.is_done() {
            pass.next_thread();
        }
        Ok(Some(pass))
    }

    /// Unverified receipts split by where they were posted: in the channel,
    /// or (a threaded channel's replies) under each parent.
    async fn by_thread(
        &self,
        ids: Vec<String>,
    ) -> Result<(Vec<String>, Vec<(MessageHandle, Vec<String>)>), StoreError> {
        if !self.thread || ids.is_empty() {
            return Ok((ids, Vec::new()));
        }
        let mut top = Vec::new();
        let mut threads: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for receipt in self.store.receipts_by_id(&ids).await? {
            match receipt.parent {
                Some(parent) => threads.entry(parent).or_default().push(receipt.id),
                None => top.push(receipt.id),
            }
        }
        let threads = threads
            .into_iter()
            .map(|(parent, replies)| (MessageHandle(parent), replies))
            .collect();
        Ok((top, threads))
    }

    async fn apply_page(&mut self, state: &mut State, page: LookupPage) -> Result<(), StoreError> {
        let Some(pass) = state.pass.as_mut() else {
            return Ok(());
        };
        let now = now_ms();
        for (key, handle) in page.found {
            if let Some(i) = pass.receipts.iter().position(|r| *r == key.0) {
                pass.receipts.swap_remove(i);
                if self
                    .store
                    .surface_unverified_receipt(&self.lease, &key.0, handle.as_str(), now)
                    .await?
                {
                    info!(channel = %self.name, receipt = %key.0, "the earlier attempt did arrive; not sending again");
                }
            } else if let Some(task) = pass.posts.remove(&key.0) {
                // Adopt the post that landed; the next round edits it to
                // the newest state.
                let write = ProgressWrite::Shown {
                    message_id: handle.0,
                    version: 0,
                    text_hash: None,
                };
                self.store.record_progress(task, &self.lease, &write, now).await?;
            }
        }
        pass.failures = 0;
        pass.retry_at = None;
        if page.next.is_some() && !pass.is_done() {
            pass.cursor = page.next;
            return Ok(());
        }
        // The page range is read: what was not found never arrived.
        let absent: Vec<String> = std::mem::take(&mut pass.receipts);
        let posts: Vec<i64> = pass.posts.drain().map(|(_, task)| task).collect();
        if !pass.next_thread() {
            state.pass = None;
        }
        self.store
            .clear_unverified_receipts(&self.lease, &absent, None, now)
            .await?;
        self.store.clear_progress_started(&self.lease, &posts).await?;
        if !absent.is_empty() || !posts.is_empty() {
            info!(channel = %self.name, receipts = absent.len(), posts = posts.len(), "earlier attempts did not arrive; sending them");
        }
        Ok(())
    }

    /// A look-up page failed. A rate limit waits (the door holds); a
    /// passing fault retries on the schedule; a look-up that can never be
    /// made falls back to sending, because a notification that arrives
    /// twice beats one that never arrives.
    async fn lookup_failed(&mut self, state: &mut State, reason: NotSurfaced) -> Result<(), StoreError> {
        let Some(pass) = state.pass.as_mut() else {
            return Ok(());
        };
        match reason {
            NotSurfaced::RateLimited { .. } => Ok(()),
            NotSurfaced::Permanent { .. } | NotSurfaced::Unsupported => {
                let receipts = pass.take_all_receipts();
                let posts: Vec<i64> = pass.posts.drain().map(|(_, task)| task).collect();
                state.pass = None;
                let note = self.fall_back(state, &reason, receipts.len() + posts.len());
                self.store
                    .clear_unverified_receipts(
                        &self.lease,
                        &receipts,
                        Some(&crate::redact::clean(&note)),
                        now_ms(),
                    )
                    .await?;
                self.store.clear_progress_started(&self.lease, &posts).await
            }
            reason => {
                pass.failures += 1;
                let wait = backoff(&self.config.retry_schedule, pass.failures);
                pass.retry_at = Some(Instant::now() + wait);
                info!(channel = %self.name, %reason, ?wait, "could not check whether earlier attempts arrived; asking again later");
                let cutoff = now_ms() - millis(self.config.max_age);
                let error = format!(
                    "not surfaced within max_age ({}): could not check whether an earlier attempt arrived ({reason})",
                    humantime::format_duration(self.config.max_age)
                );
                let failed = self
                    .store
                    .fail_unverified_before(&self.lease, cutoff, &crate::redact::clean(&error))
                    .await?;
                if failed > 0 {
                    warn!(channel = %self.name, failed, "unverified notifications reached max_age");
                    pass.receipts.clear();
                    state.needs_check = true;
                    state.pass = None;
                }
                Ok(())
            }
        }
    }

    /// Advance probing by one candidate id, if a lost message waits and the
    /// door allows it. A probe is an edit carrying exactly what was sent:
    /// only the lost message itself answers "not modified".
    async fn probe_step(&mut self, state: &mut State, round: &mut Round) -> Result<(), StoreError> {
        // A new message with an unknown outcome may lie in the ids being
        // probed: plan again with it, so two unknowns are never confused.
        if state.needs_check {
            state.needs_check = false;
            state.probes = self.plan_probes(state).await?;
        }
        let Some(task) = state.probes.front() else {
            return Ok(());
        };
        if let Some(at) = task.retry_at
            && at > Instant::now()
        {
            round.lookup_blocked = Some(at - Instant::now());
            return Ok(());
        }
        let Some(candidate) = task.candidates.front().copied() else {
            if let Some(task) = state.probes.pop_front() {
                self.settle(&task.unknown, None).await?;
            }
            return Ok(());
        };
        // Messages herald sent since the plan took ids of the open range.
        if self
            .store
            .owns_message(&self.same_counter(state), &candidate.to_string())
            .await?
        {
            if let Some(task) = state.probes.front_mut() {
                task.candidates.pop_front();
            }
            return Ok(());
        }
        let wait = state.door.ready_in(Call::Lookup).await;
        if !wait.is_zero() {
            round.lookup_blocked = Some(wait);
            return Ok(());
        }
        let Some(slot) = self.through_door(state, Call::Lookup).await else {
            return Ok(());
        };
        round.sent = true;
        let handle = MessageHandle(candidate.to_string());
        let answer = self
            .account
            .adapter
            .probe(&self.target, &handle, &task.message)
            .await;
        self.observe(state, Call::Lookup, slot, answer.as_ref().err())
            .await;
        let label = answer.as_ref().map_or_else(NotSurfaced::label, |_| "surfaced");
        crate::metrics::delivery(self.account.adapter.platform().as_str(), "probe", label);
        match answer {
            Ok(found @ (Probe::Same | Probe::Changed)) => {
                if found == Probe::Changed {
                    warn!(channel = %self.name, message = candidate, "a probe changed a message of this bot that herald did not know; is another program posting with the same bot token?");
                }
                if let Some(task) = state.probes.pop_front() {
                    info!(channel = %self.name, message = candidate, "the earlier attempt did arrive; not sending again");
                    self.settle(&task.unknown, Some(handle)).await?;
                }
            }
            Ok(Probe::NotOurs | Probe::Missing) => {
                if let Some(task) = state.probes.front_mut() {
                    task.candidates.pop_front();
                    task.failures = 0;
                    task.retry_at = None;
                }
            }
            Err(NotSurfaced::RateLimited { .. }) => {}
            Err(reason @ (NotSurfaced::Permanent { .. } | NotSurfaced::Unsupported)) => {
                let all: Vec<ProbeTask> = state.probes.drain(..).collect();
                let note = self.fall_back(state, &reason, all.len());
                for task in all {
                    self.resend(&task.unknown, &note).await?;
                }
            }
            Err(reason) => {
                if let Some(task) = state.probes.front_mut() {
                    task.failures += 1;
                    let wait = backoff(&self.config.retry_schedule, task.failures);
                    task.retry_at = Some(Instant::now() + wait);
                    info!(channel = %self.name, %reason, ?wait, "could not probe for an earlier attempt; trying again later");
                }
            }
        }
        Ok(())
    }

    /// Decide, for every message of the channel with an unknown outcome,
    /// which ids to probe. Its message, if it arrived, lies between the
    /// last message herald knows it sent before it and the first it knows
    /// it sent after (ids grow within a chat). Where two unknown messages
    /// share that gap, or the gap is open below or too wide, or what was
    /// sent is not kept, a probe could not tell them apart: those are sent
    /// again (and may duplicate).
    async fn plan_probes(&self, state: &State) -> Result<VecDeque<ProbeTask>, StoreError> {
        let receipts = self.store.unverified_receipts(&self.name).await?;
        let posts = self.store.started_progress_posts(&self.name).await?;
        if receipts.is_empty() && posts.is_empty() {
            return Ok(VecDeque::new());
        }
        let ids: Vec<String> = receipts.iter().map(|r| r.id.clone()).collect();
        let rendered: HashMap<String, Outbound> = self
            .store
            .receipts_by_id(&ids)
            .await?
            .iter()
            .map(|r| (r.id.clone(), receipt_message(r, &self.mentions.for_receipt(r))))
            .collect();
        let mut unknowns: Vec<(Unknown, i64, Option<Outbound>)> = receipts
            .iter()
            .map(|r| {
                (
                    Unknown::Receipt(r.id.clone()),
                    r.attempted_at,
                    rendered.get(&r.id).cloned(),
                )
            })
            .collect();
        for post in &posts {
            let message = post
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str::<Outbound>(b).ok());
            unknowns.push((Unknown::Post(post.task), post.started_at, message));
        }
        let parse = |(_, id, at): &(String, String, i64)| id.parse::<i64>().ok().map(|id| (id, *at));
        // Known messages of this chat bound a lost one from above (the
        // actor sends one message at a time); below, every chat whose ids
        // come from the same counter does (a message confirmed before the
        // lost one was sent has a lower id).
        let here: Vec<(i64, i64)> = self
            .store
            .owned_messages(std::slice::from_ref(&self.name))
            .await?
            .iter()
            .filter_map(parse)
            .collect();
        let counter: Vec<(i64, i64)> = self
            .store
            .owned_messages(&self.same_counter(state))
            .await?
            .iter()
            .filter_map(parse)
            .collect();
        let anywhere: HashSet<i64> = self
            .store
            .owned_messages(&self.same_counter(state))
            .await?
            .iter()
            .filter_map(parse)
            .map(|(id, _)| id)
            .collect();
        let gap = |attempted: i64| -> (Option<i64>, Option<i64>) {
            let below = counter
                .iter()
                .filter(|(_, at)| *at <= attempted)
                .map(|(id, _)| *id)
                .max();
            let above = here
                .iter()
                .filter(|(_, at)| *at > attempted)
                .map(|(id, _)| *id)
                .min();
            (below, above)
        };
        // Candidate ids per lost message: unknown ids of the gap, at most
        // MAX_PROBES of them.
        let planned: Vec<(Unknown, Option<Outbound>, Candidates)> = unknowns
            .into_iter()
            .map(|(unknown, attempted, message)| {
                let candidates = match gap(attempted) {
                    (None, _) => Err("no message of herald's before it to probe from"),
                    (Some(low), high) => {
                        let open: Vec<i64> = (low + 1..high.unwrap_or(i64::MAX))
                            .filter(|id| !anywhere.contains(id))
                            .take(MAX_PROBES + 1)
                            .collect();
                        if high.is_some() && open.len() > MAX_PROBES {
                            Err("the gap to probe is too wide")
                        } else {
                            Ok(open.into_iter().take(MAX_PROBES).collect())
                        }
                    }
                };
                (unknown, message, candidates)
            })
            .collect();
        // Two lost messages whose candidates overlap cannot be told apart:
        // a probe with one's text could overwrite the other.
        let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
        for (_, _, candidates) in &planned {
            for id in candidates.iter().flatten() {
                *seen.entry(*id).or_default() += 1;
            }
        }
        let mut tasks = VecDeque::new();
        for (unknown, message, candidates) in planned {
            let why_not = match (&message, &candidates) {
                (None, _) => Some("what was sent is not kept"),
                (_, Err(why)) => Some(*why),
                (_, Ok(ids)) if ids.iter().any(|id| seen[id] > 1) => {
                    Some("another message with an unknown outcome may hold the same ids")
                }
                _ => None,
            };
            let (Some(message), Ok(candidates), None) = (message, candidates, why_not) else {
                let note = format!(
                    "could not check whether an earlier attempt arrived ({}); sent again",
                    why_not.unwrap_or("nothing to probe")
                );
                self.resend(&unknown, &note).await?;
                continue;
            };
            tasks.push_back(ProbeTask {
                unknown,
                message,
                candidates: candidates.into(),
                retry_at: None,
                failures: 0,
            });
        }
        if !tasks.is_empty() {
            info!(channel = %self.name, messages = tasks.len(), "probing for messages with an unknown outcome");
        }
        Ok(tasks)
    }

    /// The channels whose message ids come from the same counter as this
    /// one's (an id herald owns there is not a candidate here).
    fn same_counter(&self, state: &State) -> Vec<String> {
        if state.shared_ids {
            self.account.shared_id_channels()
        } else {
            vec![self.name.clone()]
        }
    }

    /// A probe settled an unknown message: found at `handle`, or absent.
    async fn settle(&self, unknown: &Unknown, handle: Option<MessageHandle>) -> Result<(), StoreError> {
        let now = now_ms();
        match (unknown, handle) {
            (Unknown::Receipt(id), Some(handle)) => {
                self.store
                    .surface_unverified_receipt(&self.lease, id, handle.as_str(), now)
                    .await?;
            }
            (Unknown::Receipt(id), None) => {
                self.store
                    .clear_unverified_receipts(&self.lease, std::slice::from_ref(id), None, now)
                    .await?
            }
            (Unknown::Post(task), Some(handle)) => {
                let write = ProgressWrite::Shown {
                    message_id: handle.0,
                    version: 0,
                    text_hash: None,
                };
                self.store
                    .record_progress(*task, &self.lease, &write, now)
                    .await?;
            }
            (Unknown::Post(task), None) => self.store.clear_progress_started(&self.lease, &[*task]).await?,
        }
        Ok(())
    }

    /// Send an unknown message again without a check, saying why.
    async fn resend(&self, unknown: &Unknown, note: &str) -> Result<(), StoreError> {
        match unknown {
            Unknown::Receipt(id) => {
                self.store
                    .clear_unverified_receipts(
                        &self.lease,
                        std::slice::from_ref(id),
                        Some(&crate::redact::clean(note)),
                        now_ms(),
                    )
                    .await
            }
            Unknown::Post(task) => {
                info!(channel = %self.name, task, %note, "posting a live message again");
                self.store.clear_progress_started(&self.lease, &[*task]).await
            }
        }
    }

    /// The platform moved the channel: use (and remember) its new id, and
    /// spend the new chat's budgets from now on.
    async fn follow_move(&mut self, state: &mut State, outcome: &DeliveryOutcome) -> Result<(), StoreError> {
        if let DeliveryOutcome::NotSurfaced(NotSurfaced::Moved { to }) = outcome {
            info!(channel = %self.name, from = %self.target.id, to = %to.id, "channel moved; following it");
            self.store
                .move_channel_target(&self.name, &to.id, now_ms())
                .await?;
            self.target.id = to.id.clone();
            // Attempts already under way finish against the old id.
            let flight = state.flight.take();
            *state = self.open_state().await?;
            if flight.is_some() {
                state.flight = flight;
            }
        }
        Ok(())
    }

    /// Send one progress rendering. Returns false when the channel should
    /// stop sending progress for this round (rate limited, failing).
    /// Render anew the notifications whose task was acknowledged (who and
    /// when, no button), one budgeted edit each; looked for once a second.
    /// Those that carried no button, or sit where nothing can be edited,
    /// are settled without a call.
    async fn edit_notifications(&mut self, state: &mut State, round: &mut Round) -> Result<(), StoreError> {
        state.next_chat_look = Instant::now() + CHAT_LOOK_EVERY;
        let marked = self
            .store
            .notifications_to_edit(&self.name, i64::try_from(BATCH).unwrap_or(16))
            .await?;
        if marked.is_empty() {
            return Ok(());
        }
        let handles: HashMap<String, String> = marked.into_iter().collect();
        let ids: Vec<String> = handles.keys().cloned().collect();
        let receipts = self.store.receipts_by_id(&ids).await?;
        let mut settled: Vec<String> = ids
            .iter()
            .filter(|id| !receipts.iter().any(|r| &r.id == *id))
            .cloned()
            .collect();
        for receipt in receipts {
            let acknowledgement = self
                .store
                .acknowledgement(&receipt.run_id, &receipt.worker_id, &receipt.task_id)
                .await?;
            let (Some(ack), Some(message_id)) = (acknowledgement, handles.get(&receipt.id)) else {
                settled.push(receipt.id);
                continue;
            };
            let has_buttons = matches!(
                self.account.adapter.platform(),
                Platform::Discord | Platform::Slack | Platform::Telegram
            );
            if !has_buttons || !render::wants_acknowledgement(&receipt.event) {
                settled.push(receipt.id);
                continue;
            }
            let Ok(slot) = state.door.try_acquire(Call::Edit).await else {
                round.edits_blocked = Some(state.door.ready_in(Call::Edit).await);
                state.next_chat_look = Instant::now();
                break;
            };
            let mentions = self.mentions.for_receipt(&receipt);
            let message = render::as_acknowledged(super::attempt::receipt_message(&receipt, &mentions), &ack);
            let handle = MessageHandle(message_id.clone());
            // A reply in a thread of its own is addressed through it.
            let target = match (&receipt.parent, &receipt.thread) {
                (Some(parent), Some(thread)) if self.thread => self.target.replying(Reply {
                    parent: MessageHandle(parent.clone()),
                    thread: Some(thread.clone()),
                }),
                _ => self.target.clone(),
            };
            let outcome = self.account.adapter.edit(&target, &handle, &message).await;
            self.observe(state, Call::Edit, slot, failure(&outcome)).await;
            crate::metrics::delivery(
                self.account.adapter.platform().as_str(),
                "acknowledged",
                outcome.label(),
            );
            round.sent = true;
            if super::receipts::notification_edit_settled(&outcome) {
                settled.push(receipt.id);
            } else {
                info!(channel = %self.name, receipt = %receipt.id, outcome = %outcome.label(), "an acknowledged notification was not edited; will retry");
                break;
            }
        }
        if !settled.is_empty() {
            self.store.notifications_edited(&self.lease, &settled).await?;
        }
        Ok(())
    }

    /// Send the bot's answers to commands in this chat (`/status`), each
    /// a budgeted post; one the platform refuses for good is dropped (and
    /// logged), one it could not take now waits for the next look.
    async fn send_answers(&mut self, state: &mut State, round: &mut Round) -> Result<(), StoreError> {
        let queued = self
            .store
            .queued_answers(&self.name, i64::try_from(BATCH).unwrap_or(16))
            .await?;
        let mut done = Vec::new();
        for (id, answer) in queued {
            let Ok(slot) = state.door.try_acquire(Call::Post).await else {
                round.posts_blocked = Some(state.door.ready_in(Call::Post).await);
                state.next_chat_look = Instant::now();
                break;
            };
            let result = self.account.adapter.answer(&answer).await;
            self.observe(state, Call::Post, slot, result.as_ref().err()).await;
            round.sent = true;
            match result {
                Ok(()) => done.push(id),
                Err(reason) if super::receipts::refused_for_good(&reason) => {
                    warn!(channel = %self.name, error = %reason, "the bot's answer was refused for good; dropped");
                    done.push(id);
                }
                Err(reason) => {
                    info!(channel = %self.name, error = %reason, "the bot's answer was not taken; will retry");
                    break;
                }
            }
        }
        if !done.is_empty() {
            self.store.answers_sent(&self.lease, &done).await?;
        }
        Ok(())
    }

    async fn send_progress(&mut self, job: ProgressJob, state: &mut State) -> Result<bool, StoreError> {
        let mut message = render::progress(&TaskView {
            run_id: &job.run_id,
            worker_id: &job.worker_id,
            task_id: &job.task_id,
            event: &job.display,
            first_seen_at: job.first_seen_at,
            as_of: job.updated_at,
            labels: &job.labels,
            stale: job.stale_since.is_some() && !job.terminal,
            escalated_to: &job.escalated_to,
            acknowledged: job.acknowledged.as_ref(),
        });
        let text_hash = rendering_hash(&message);
        if let (Some(id), Some(shown)) = (&job.message_id, job.shown_hash)
            && shown == text_hash
        {
            // Nothing visible changed (e.g. only the seq moved): no call,
            // no budget spent.
            let write = ProgressWrite::Shown {
                message_id: id.clone(),
                version: job.version,
                text_hash: Some(text_hash),
            };
            self.store
                .record_progress(job.task, &self.lease, &write, now_ms())
                .await?;
            return Ok(true);
        }
        // A live message steps aside when its budget is spent (another
        // channel of the account, or another replica, may have taken the
        // last slot since the round looked): it never holds the actor, so
        // due posts and notifications go on.
        let (call, outcome) = match &job.message_id {
            Some(id) => {
                let Ok(slot) = state.door.try_acquire(Call::Edit).await else {
                    return Ok(false);
                };
                let handle = MessageHandle(id.clone());
                let outcome = self.account.adapter.edit(&self.target, &handle, &message).await;
                self.observe(state, Call::Edit, slot, failure(&outcome)).await;
                (Call::Edit, outcome)
            }
            None => {
                let Ok(slot) = state.door.try_acquire(Call::Post).await else {
                    return Ok(false);
                };
                // Marked before sending, so a crash or a lost answer leads
                // to a check (or, where resending is the check, a resend
                // with the same key) instead of a second message.
                message.idempotency_key = Some(IdempotencyKey(job.post_key.clone()));
                let body = serde_json::to_string(&message)?;
                self.store
                    .progress_post_started(job.task, &self.lease, &body, now_ms())
                    .await?;
                let outcome = self.account.adapter.post(&self.target, &message).await;
                self.observe(state, Call::Post, slot, failure(&outcome)).await;
                (Call::Post, outcome)
            }
        };
        self.follow_move(state, &outcome).await?;
        let now = now_ms();
        crate::metrics::delivery(
            self.account.adapter.platform().as_str(),
            "progress",
            outcome.label(),
        );
        let mut write = decide_progress(&outcome, job.version, job.failures, now, &self.config);
        let keep_going = match &mut write {
            ProgressWrite::Shown {
                text_hash: hash,
                version,
                ..
            } => {
                if call == Call::Post && job.post_started {
                    // A resend of a post whose first attempt may have
                    // landed: the platform may answer with that earlier
                    // message as it was (Discord's nonce returns the
                    // existing message unchanged), so what it shows is
                    // unknown. Adopt it; the next round edits it to the
                    // newest state.
                    *version = 0;
                    *hash = None;
                } else {
                    *hash = Some(text_hash);
                }
                true
            }
            ProgressWrite::Gone => true,
            ProgressWrite::Abandon { .. } => {
                warn!(channel = %self.name, task = job.task, reason = %outcome.label(), "progress message abandoned");
                true
            }
            ProgressWrite::Retry { .. } => {
                if call == Call::Post
                    && matches!(
                        outcome,
                        DeliveryOutcome::NotSurfaced(NotSurfaced::Unverified { .. })
                    )
                {
                    state.needs_check = true;
                }
                info!(channel = %self.name, task = job.task, outcome = %outcome.label(), "progress update failed; will retry");
                false
            }
        };
        self.store
            .record_progress(job.task, &self.lease, &write, now)
            .await?;
        // A post the platform refused (an error answer) was not made. If
        // it was the first attempt, nothing can have landed: it is no
        // longer "started" (else, where a look-up settles started posts, it
        // would wait for a check nothing asks for, and the live message
        // would never appear; found by tests/replicas.rs on PostgreSQL). If
        // an earlier attempt's outcome is unknown, it stays started — a
        // later post with the same key may be answered with that earlier
        // message as it landed, which must be adopted, not taken as the
        // newest state (tests/crash.rs) — and a check is asked for.
        let refused = matches!(
            &outcome,
            DeliveryOutcome::NotSurfaced(reason) if !matches!(reason, NotSurfaced::Unverified { .. })
        );
        if call == Call::Post && refused && matches!(write, ProgressWrite::Retry { .. }) {
            if job.post_started {
                state.needs_check = true;
            } else {
                self.store
                    .clear_progress_started(&self.lease, &[job.task])
                    .await?;
            }
        }
        Ok(keep_going)
    }
}
