//! Replicas and channel leases: which live herald delivers which channel.
//!
//! What to take, keep or hand back is decided in `delivery/leases.rs`;
//! this module only stores it. Every delivery write of a channel carries
//! the [`Lease`] it is made under and is fenced by it: once the lease has
//! passed to another replica (a new epoch), the write changes nothing.

use super::StoreError;
use super::columns::Columns;

/// The right to deliver one channel, as granted: its epoch is new at every
/// grant, so it names this grant alone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    /// Channel name.
    pub channel: String,
    /// The grant.
    pub epoch: i64,
}

/// A replica as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRow {
    /// Replica id (new at every start).
    pub id: String,
    /// Where it listens (for operators).
    pub listen: String,
    /// Unix ms it joined.
    pub started_at: i64,
    /// Unix ms of its last heartbeat.
    pub heartbeat_at: i64,
    /// Unix ms its registration lapses without a heartbeat.
    pub expires_at: i64,
    /// Whether the database still sees its process: on PostgreSQL its
    /// session lock is held (a dead process's is dropped at once); on
    /// SQLite only the process holding the file is.
    pub alive: bool,
}

/// A channel's lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// Channel name.
    pub channel: String,
    /// Replica holding it; `None` once handed back.
    pub holder: Option<String>,
    /// The grant.
    pub epoch: i64,
    /// Unix ms it lapses unless renewed.
    pub expires_at: i64,
}

/// A [`ReplicaRow`] from a row (`alive` computed by the query).
pub(crate) fn replica_from(r: &impl Columns) -> Result<ReplicaRow, StoreError> {
    Ok(ReplicaRow {
        id: r.text("id")?,
        listen: r.text("listen")?,
        started_at: r.int("started_at")?,
        heartbeat_at: r.int("heartbeat_at")?,
        expires_at: r.int("expires_at")?,
        alive: r.flag("alive")?,
    })
}

/// A [`LeaseRow`] from a row.
pub(crate) fn lease_row_from(r: &impl Columns) -> Result<LeaseRow, StoreError> {
    Ok(LeaseRow {
        channel: r.text("channel")?,
        holder: r.maybe_text("holder")?,
        epoch: r.int("epoch")?,
        expires_at: r.int("expires_at")?,
    })
}

/// Replica registration and channel leases.
#[async_trait::async_trait]
pub trait LeaseStore: Send + Sync {
    /// Register this process as replica `id`, alive until `now + ttl_ms`
    /// unless it beats again. On PostgreSQL it also takes its liveness
    /// lock on a connection of its own, which the server drops when the
    /// process dies.
    async fn join(&self, id: &str, listen: &str, now: i64, ttl_ms: i64) -> Result<(), StoreError>;

    /// Renew the registration. [`StoreError::LeaseLost`] when this process
    /// can no longer prove it is alive (its liveness connection is gone):
    /// others may take its channels, so it must stop delivering and join
    /// again under a new id.
    async fn heartbeat(&self, id: &str, now: i64, ttl_ms: i64) -> Result<(), StoreError>;

    /// Every registered replica, with whether it is alive.
    async fn replicas(&self, now: i64) -> Result<Vec<ReplicaRow>, StoreError>;

    /// Every channel lease.
    async fn channel_leases(&self) -> Result<Vec<LeaseRow>, StoreError>;

    /// Extend every lease `id` holds to `now + ttl_ms`; returns those it
    /// still holds (the others passed to another replica).
    async fn renew_leases(&self, id: &str, now: i64, ttl_ms: i64) -> Result<Vec<Lease>, StoreError>;

    /// Take `channel` for `id` if nobody holds it: never leased, handed
    /// back, lapsed, or held by a replica not in `live`. A new epoch on
    /// success; `None` when a live replica holds it.
    async fn take_lease(
        &self,
        channel: &str,
        id: &str,
        live: &[String],
        now: i64,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError>;

    /// Hand a lease back (its channel is free for any replica at once).
    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError>;

    /// Whether `lease` is still the channel's current grant.
    async fn lease_held(&self, lease: &Lease) -> Result<bool, StoreError>;

    /// Leave: hand back every lease of `id` and remove its registration.
    async fn leave(&self, id: &str) -> Result<(), StoreError>;
}
