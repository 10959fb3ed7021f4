//! The embedded default backend: one SQLite file in WAL mode.

mod bot_offsets;
mod budgets;
mod channels;
mod contracts;
mod fallbacks;
mod hints;
mod ingest;
mod leases;
mod progress;
mod queries;
mod receipts;
mod retention;
mod runtime_channels;
mod web;

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{Lifecycle, StoreError};

/// The SQLite store.
///
/// Two pools on the same file: `pool` commits with `synchronous = FULL`
/// (ingest: a `202` means on disk, even across a power cut); `delivery`
/// commits with `synchronous = NORMAL` (delivery bookkeeping: claims,
/// outcomes, progress handles, web messages). NORMAL in WAL mode survives
/// `kill -9`; a power cut may lose its last commits, which only makes a
/// receipt or progress post look unfinished, and the next attempt
/// reconciles before sending. Measured: fsync per bookkeeping write
/// tripled terminal-notification latency (bench/README.md).
///
/// SQLite has one writer at a time, and a connection that finds the write
/// lock taken sleeps in coarse steps (1, 2, 5, 10 … ms) before it tries
/// again. The two big transactions (the ingest writer's group commit and
/// the delivery bookkeeping writer's outcomes and claims) therefore queue
/// for `write_gate` first, in process, and wake the moment it is free;
/// other writes skip the gate and fall back on the busy timeout. Measured:
/// during a webhook burst the delivery connections slept 1.2 s in 3 s
/// before, none after. Claims are made in the bookkeeping transaction:
/// gated one by one, hundreds of small claims made 1,000 channels twice as
/// slow (each waited its turn behind the others and the big transactions).
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    delivery: SqlitePool,
    write_gate: tokio::sync::Mutex<()>,
    /// The database file, for [`Lifecycle::hold`].
    file: std::path::PathBuf,
    /// `<file>.herald-lock`, locked by [`Lifecycle::hold`] for as long as
    /// this process serves: SQLite is single-process here (a second herald
    /// would deliver everything twice). The kernel drops the lock when the
    /// process dies, `kill -9` included.
    holder: std::sync::Mutex<Option<std::fs::File>>,
    /// The replica id this process joined as (the only live one).
    replica: std::sync::Mutex<Option<String>>,
}

/// Lock the file next to the database that says which herald has it.
/// In-memory databases need none.
fn lock_next_to(file: &std::path::Path) -> Result<Option<std::fs::File>, StoreError> {
    if file.as_os_str().is_empty() || file.to_string_lossy().starts_with(':') {
        return Ok(None);
    }
    let mut path = file.as_os_str().to_owned();
    path.push(".herald-lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse(format!(
            "{} is locked; SQLite serves one herald process, PostgreSQL several",
            std::path::Path::new(&path).display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Database(sqlx::Error::Io(e))),
    }
}

use super::push_list;

/// Whether a running herald holds the SQLite store `url` names, and if so
/// what to tell the operator (`check-config`): SQLite serves one process,
/// a second `serve` on it only waits. Nothing is created or kept locked.
pub fn held_by_another(url: &str) -> Option<String> {
    let file = SqliteConnectOptions::from_str(url)
        .ok()?
        .get_filename()
        .to_owned();
    if file.as_os_str().is_empty() || file.to_string_lossy().starts_with(':') {
        return None;
    }
    let mut path = file.as_os_str().to_owned();
    path.push(".herald-lock");
    let lock = std::fs::OpenOptions::new().write(true).open(&path).ok()?;
    match lock.try_lock() {
        Err(std::fs::TryLockError::WouldBlock) => Some(format!(
            "a running herald serve holds this SQLite store ({}); SQLite serves one process, so a \
             second `herald serve` on it waits as a standby until that one stops. To run several \
             replicas, use PostgreSQL ([store] url = \"postgres://…\").",
            std::path::Path::new(&path).display()
        )),
        Ok(()) | Err(std::fs::TryLockError::Error(_)) => None,
    }
}

impl SqliteStore {
    /// Open (creating if missing) and migrate. SQLite runs in WAL mode with
    /// `synchronous = FULL`: a commit is on disk before ingest answers `202`,
    /// so accepted events survive even a power cut, not only `kill -9`.
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let file = options.get_filename().to_owned();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let delivery = SqlitePoolOptions::new()
            .max_connections(2)
            .min_connections(1)
            .connect_with(options.synchronous(SqliteSynchronous::Normal))
            .await?;
        Ok(SqliteStore {
            pool,
            delivery,
            write_gate: tokio::sync::Mutex::new(()),
            file,
            holder: std::sync::Mutex::default(),
            replica: std::sync::Mutex::default(),
        })
    }
}

#[async_trait::async_trait]
impl Lifecycle for SqliteStore {
    async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    async fn close(&self) {
        self.delivery.close().await;
        self.pool.close().await;
    }

    async fn hold(&self) -> Result<(), StoreError> {
        let lock = lock_next_to(&self.file)?;
        *self
            .holder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = lock;
        Ok(())
    }
}
