//! The PostgreSQL backend: for users who run PostgreSQL already (and back
//! it up), and the engine several replicas share.
//!
//! Differences from SQLite that matter: ids come from the database
//! (identity columns); ingest serialises per task with transaction-scoped
//! advisory locks instead of one database-wide write lock; claims take
//! receipts `FOR UPDATE SKIP LOCKED`, so concurrent claimers never take
//! the same receipt and never wait on each other.

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

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::{Lifecycle, StoreError};

/// The PostgreSQL store.
///
/// Two pools, as on SQLite: `pool` commits with the server's
/// `synchronous_commit` (on by default: ingest answers `202` after the
/// commit is flushed); `delivery` sets `synchronous_commit = off` for
/// delivery bookkeeping (claims, outcomes, progress handles), which a
/// server crash may roll back by its last few commits — that only makes a
/// receipt or progress post look unfinished, and the next attempt
/// reconciles before sending. A crash of herald itself loses nothing
/// either way.
#[derive(Debug)]
pub struct PgStore {
    pool: PgPool,
    delivery: PgPool,
    /// Where to open the holding connection.
    options: PgConnectOptions,
    connect_timeout: Duration,
    /// The replica's liveness connection, holding its session advisory
    /// lock for as long as this process delivers (see `leases.rs`).
    holder: tokio::sync::Mutex<Option<sqlx::PgConnection>>,
    /// The hint listener's task, stopped when the store closes.
    listener: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

use super::push_list;

impl PgStore {
    /// Connect and migrate (`migrations/postgres/`). Fails when the server
    /// cannot be reached within `connect_timeout`; the caller decides
    /// whether to try again.
    pub async fn open(url: &str, connect_timeout: Duration) -> Result<PgStore, StoreError> {
        let options = PgConnectOptions::from_str(url)?.application_name("herald");
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .acquire_timeout(connect_timeout)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let delivery = PgPoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .acquire_timeout(connect_timeout)
            .connect_with(options.clone().options([("synchronous_commit", "off")]))
            .await?;
        Ok(PgStore {
            pool,
            delivery,
            options,
            connect_timeout,
            holder: tokio::sync::Mutex::default(),
            listener: std::sync::Mutex::default(),
        })
    }
}

#[async_trait::async_trait]
impl Lifecycle for PgStore {
    async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    async fn close(&self) {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = listener {
            task.abort();
            // Cancelled is the expected end; it only hands its connection back.
            let _cancelled = task.await.is_err();
        }
        if let Some(conn) = self.holder.lock().await.take() {
            // The liveness lock goes with the session, closed or dropped.
            if let Err(e) = sqlx::Connection::close(conn).await {
                tracing::debug!(error = %e, "the liveness connection did not close cleanly");
            }
        }
        self.delivery.close().await;
        self.pool.close().await;
    }

    async fn hold(&self) -> Result<(), StoreError> {
        // Several replicas share a PostgreSQL store; each channel is
        // leased to one of them (`LeaseStore`), so there is nothing to hold.
        Ok(())
    }
}
