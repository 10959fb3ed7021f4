//! Durable state: the event journal, worker tasks, routed channels with
//! their progress-message handles, delivery receipts, rate budgets and the
//! web channel's messages.
//!
//! The rest of herald sees one [`Store`] handle. Behind it is a backend —
//! SQLite (`sqlite/`, the embedded default) — implementing one trait per
//! concern (ingest, receipts, progress, …). Every statement of a backend
//! lives in its folder; what to write is decided outside it (the ingest
//! plan in `ingest/plan.rs`, outcomes in `delivery/receipts.rs`).

mod bot_offsets;
mod budgets;
mod channels;
mod columns;
mod contracts;
mod fallbacks;
mod hints;
mod ids;
mod ingest;
mod leases;
mod postgres;
mod progress;
mod queries;
mod receipts;
mod retention;
mod runtime_channels;
mod sqlite;
mod web;

use std::ops::Deref;
use std::sync::Arc;

pub use bot_offsets::BotOffsetStore;
pub use budgets::{BudgetStore, KeptWindow};
pub use channels::ChannelStore;
pub use contracts::{ContractStore, EscalationDue, OverdueTask, SilentTask};
pub use fallbacks::{FallbackStore, MayMiss, Miss};
pub use hints::{HintFeed, HintStore};
pub use ids::{new_progress_key, new_receipt_id, new_replica_id};
pub use ingest::IngestStore;
pub use leases::{Lease, LeaseRow, LeaseStore, ReplicaRow};
pub use postgres::PgStore;
pub use progress::{ProgressJob, ProgressStore, ProgressWrite, StartedPost};
pub use queries::{
    ChannelBacklog, JournalEntry, QueryStore, ReceiptFilter, ReceiptRow, RunStateCount, StateCount, WorkerRow,
};
pub use receipts::{
    Bookkept, ClaimRequest, Claimable, ClaimedReceipt, ReceiptOutcome, ReceiptStore, ReceiptUpdate,
    UnverifiedReceipt,
};
pub use retention::{Pruned, RetentionStore};
pub use runtime_channels::RuntimeChannelStore;
pub use sqlite::{SqliteStore, held_by_another};
pub use web::{WebMessageRow, WebStore};

/// What can go wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no (I/O, constraint, corrupt file, ...).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored JSON document did not parse.
    #[error("stored JSON is corrupt: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored event is no longer a valid event.
    #[error("stored event is invalid: {0}")]
    Event(#[from] crate::protocol::FieldError),
    /// Another herald process holds this SQLite store: SQLite serves one
    /// process, the other waits for it to stop (see `connecting.rs`).
    #[error("another herald serve is using this store ({0})")]
    InUse(String),
    /// A write found the database in a state its transaction's locks
    /// should have ruled out; nothing of the transaction was kept.
    #[error("write conflict: {0}")]
    Conflict(&'static str),
    /// A delivery write of a channel was refused because the lease it was
    /// made under has passed to another replica (or this replica can no
    /// longer prove it is alive): the writer must stop delivering it.
    #[error("the lease of channel {channel:?} has passed to another replica")]
    LeaseLost {
        /// The channel.
        channel: String,
    },
    /// The shared bookkeeping transaction this request was part of failed
    /// on a connection problem (named here), or the writer making it has
    /// stopped: whether it committed is unknown, and trying again later
    /// can succeed. Each request of the group gets its own copy.
    #[error("the delivery bookkeeping write did not complete: {0}")]
    Unanswered(String),
}

impl StoreError {
    /// Whether trying the same write again later can succeed: the
    /// connection was lost or refused, the pool found none in time, the
    /// server is restarting, or the transaction lost a serialisation or
    /// lock conflict. Decided from sqlx's error kinds and the database's
    /// own error codes (SQLSTATE on PostgreSQL, result codes on SQLite).
    pub fn is_transient(&self) -> bool {
        let e = match self {
            StoreError::Database(e) => e,
            StoreError::Unanswered(_) => return true,
            _ => return false,
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                // PostgreSQL: connection exceptions (08…), server shutting
                // down or starting (57P01–57P03), serialisation failure and
                // deadlock (40001, 40P01). SQLite: BUSY (5, and its extended
                // 261, 517) and LOCKED (6).
                code.starts_with("08")
                    || matches!(
                        &*code,
                        "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "5" | "261" | "517" | "6"
                    )
            }),
            _ => false,
        }
    }
}

/// Opening and closing a backend.
#[async_trait::async_trait]
pub trait Lifecycle: Send + Sync {
    /// True when the database answers a trivial query (for `/readyz`).
    async fn ping(&self) -> bool;

    /// Close all connections (SQLite: checkpointing the WAL).
    async fn close(&self);

    /// Become the one herald that serves from this store, for as long as
    /// this process lives: [`StoreError::InUse`] while another has it.
    /// Only SQLite is held (one process); on PostgreSQL several replicas
    /// serve at once and channels are leased (`LeaseStore`), so it holds
    /// nothing. `serve` calls it; a handle that only reads or writes
    /// (tests, tools) need not.
    async fn hold(&self) -> Result<(), StoreError>;
}

/// Everything a store backend does.
pub trait Backend:
    IngestStore
    + ReceiptStore
    + ProgressStore
    + QueryStore
    + WebStore
    + BudgetStore
    + ChannelStore
    + LeaseStore
    + HintStore
    + ContractStore
    + FallbackStore
    + RuntimeChannelStore
    + RetentionStore
    + BotOffsetStore
    + Lifecycle
    + std::fmt::Debug
{
}

impl<T> Backend for T where
    T: IngestStore
        + ReceiptStore
        + ProgressStore
        + QueryStore
        + WebStore
        + BudgetStore
        + ChannelStore
        + LeaseStore
        + HintStore
        + ContractStore
        + FallbackStore
        + RuntimeChannelStore
        + RetentionStore
        + BotOffsetStore
        + Lifecycle
        + std::fmt::Debug
{
}

/// A handle to the store, cheap to clone; derefs to its backend.
#[derive(Clone, Debug)]
pub struct Store(Arc<dyn Backend>);

impl Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

/// Append the conditions of a [`ReceiptFilter`] (over `r`, receipts, and
/// `t`, their tasks) to a query that already has a `WHERE`, on either
/// backend.
fn push_receipt_filter<DB>(qb: &mut sqlx::QueryBuilder<DB>, filter: &ReceiptFilter)
where
    DB: sqlx::Database,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    if let Some(status) = &filter.status {
        qb.push(" AND r.status = ").push_bind(status.clone());
    }
    if let Some(channel) = &filter.channel {
        qb.push(" AND r.channel = ").push_bind(channel.clone());
    }
    if let Some(run) = &filter.run_id {
        qb.push(" AND t.run_id = ").push_bind(run.clone());
    }
    if let Some(since) = filter.since {
        qb.push(" AND r.created_at >= ").push_bind(since);
    }
    if let Some((created_at, id)) = &filter.after {
        qb.push(" AND (r.created_at < ")
            .push_bind(*created_at)
            .push(" OR (r.created_at = ")
            .push_bind(*created_at)
            .push(" AND r.id > ")
            .push_bind(id.clone())
            .push("))");
    }
}

/// Append `(a, b, …)` of bound values to a query, on either backend: the
/// `IN` lists of the store's batched statements.
fn push_list<'t, DB, T>(qb: &mut sqlx::QueryBuilder<DB>, items: impl IntoIterator<Item = T>)
where
    DB: sqlx::Database,
    T: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    qb.push("(");
    let mut list = qb.separated(", ");
    for item in items {
        list.push_bind(item);
    }
    qb.push(")");
}

/// Current time as Unix milliseconds, the unit of every stored time.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An event as stored (its normalised JSON), typed again through the
/// same parser ingest uses.
pub(crate) fn decode_event(text: &str) -> Result<crate::protocol::FleetWorkerEvent, StoreError> {
    Ok(crate::protocol::parse_stored_event(serde_json::from_str(text)?)?)
}

/// Whether `url` names a PostgreSQL database (else it is SQLite).
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

impl Store {
    /// Open the store `url` names (creating and migrating it as needed):
    /// `postgres://…` or `postgresql://…` for PostgreSQL, `sqlite://PATH`
    /// otherwise. A PostgreSQL server that does not answer within
    /// `connect_timeout` is an error; the caller may try again.
    pub async fn open(url: &str, connect_timeout: std::time::Duration) -> Result<Store, StoreError> {
        if is_postgres(url) {
            Ok(Store(Arc::new(PgStore::open(url, connect_timeout).await?)))
        } else {
            Ok(Store(Arc::new(SqliteStore::open(url).await?)))
        }
    }
}
