//! PostgreSQL: replica registration and channel leases, shared by every
//! replica on the database.
//!
//! A replica proves it is alive twice: a heartbeat row (`expires_at`) and
//! a session advisory lock `(HERALD_NS, lock_key)` held on a connection of
//! its own. The server drops the lock the moment the process's socket
//! closes, so a `kill -9` is seen at the next look, not after a timeout;
//! the heartbeat covers a process that hangs or is cut off.

use sqlx::{Connection, Row};

use super::PgStore;
use crate::store::StoreError;
use crate::store::leases::*;

/// First key of every replica's liveness lock ("hera").
const HERALD_NS: i32 = 0x6865_7261;

/// Whether each replica's liveness lock is held, as the server sees it.
/// (`pg_locks` shows the whole cluster: advisory locks of other databases,
/// whose replicas number their keys from 1 too, must not count.)
const ALIVE: &str = "expires_at > $1 AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' \
     AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND l.classid = 1751478881::oid AND l.objid = replicas.lock_key::oid AND l.objsubid = 2)";

impl PgStore {
    /// [`StoreError::LeaseLost`] unless `lease` is current: asked after a
    /// fenced write changed nothing, to tell "nothing to do" from "no
    /// longer yours".
    pub(super) async fn fence(&self, lease: &Lease) -> Result<(), StoreError> {
        if self.lease_held(lease).await? {
            Ok(())
        } else {
            Err(StoreError::LeaseLost {
                channel: lease.channel.clone(),
            })
        }
    }
}

#[async_trait::async_trait]
impl LeaseStore for PgStore {
    async fn join(&self, id: &str, listen: &str, now: i64, ttl_ms: i64) -> Result<(), StoreError> {
        let mut holder = self.holder.lock().await;
        let mut conn = tokio::time::timeout(
            self.connect_timeout,
            sqlx::PgConnection::connect_with(&self.options),
        )
        .await
        .map_err(|_| StoreError::Database(sqlx::Error::PoolTimedOut))??;
        let key: i32 = sqlx::query_scalar("SELECT nextval('replica_lock_keys')::integer")
            .fetch_one(&mut conn)
            .await?;
        sqlx::query("SELECT pg_advisory_lock($1, $2)")
            .bind(HERALD_NS)
            .bind(key)
            .execute(&mut conn)
            .await?;
        sqlx::query(
            "INSERT INTO replicas (id, listen, lock_key, started_at, heartbeat_at, expires_at) \
             VALUES ($1, $2, $3, $4, $4, $5)",
        )
        .bind(id)
        .bind(listen)
        .bind(key)
        .bind(now)
        .bind(now + ttl_ms)
        .execute(&mut conn)
        .await?;
        *holder = Some(conn);
        Ok(())
    }

    async fn heartbeat(&self, id: &str, now: i64, ttl_ms: i64) -> Result<(), StoreError> {
        let mut holder = self.holder.lock().await;
        let lost = || StoreError::LeaseLost {
            channel: "(every channel: this replica's liveness connection is gone)".to_owned(),
        };
        let Some(conn) = holder.as_mut() else {
            return Err(lost());
        };
        // Beat on the liveness connection itself: if it is gone, so is the
        // lock, and another replica may already hold this one's channels.
        let beat = sqlx::query("UPDATE replicas SET heartbeat_at = $1, expires_at = $2 WHERE id = $3")
            .bind(now)
            .bind(now + ttl_ms)
            .bind(id)
            .execute(&mut *conn)
            .await;
        match beat {
            Ok(done) if done.rows_affected() == 1 => {}
            Ok(_) => {
                *holder = None;
                return Err(lost());
            }
            Err(e) => {
                if let Some(conn) = holder.take() {
                    // Closing a broken connection is expected to fail.
                    if let Err(close) = conn.close_hard().await {
                        tracing::debug!(error = %close, "closing the lost liveness connection");
                    }
                }
                warn_lost(&e);
                return Err(lost());
            }
        }
        // Registrations of replicas gone for a minute are only clutter.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM replicas WHERE expires_at < $2 AND NOT ({ALIVE})"
        )))
        .bind(now)
        .bind(now - 60_000)
        .execute(&self.delivery)
        .await?;
        Ok(())
    }

    async fn replicas(&self, now: i64) -> Result<Vec<ReplicaRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, listen, started_at, heartbeat_at, expires_at, ({ALIVE}) AS alive FROM replicas ORDER BY id"
        )))
        .bind(now)
        .fetch_all(&self.delivery)
        .await?;
        rows.iter().map(replica_from).collect()
    }

    async fn channel_leases(&self) -> Result<Vec<LeaseRow>, StoreError> {
        let rows =
            sqlx::query("SELECT channel, holder, epoch, expires_at FROM channel_leases ORDER BY channel")
                .fetch_all(&self.delivery)
                .await?;
        rows.iter().map(lease_row_from).collect()
    }

    async fn renew_leases(&self, id: &str, now: i64, ttl_ms: i64) -> Result<Vec<Lease>, StoreError> {
        let rows = sqlx::query(
            "UPDATE channel_leases SET expires_at = $1 WHERE holder = $2 RETURNING channel, epoch",
        )
        .bind(now + ttl_ms)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Lease {
                    channel: r.try_get("channel")?,
                    epoch: r.try_get("epoch")?,
                })
            })
            .collect()
    }

    async fn take_lease(
        &self,
        channel: &str,
        id: &str,
        live: &[String],
        now: i64,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        // Lease changes commit with synchronous_commit on (`pool`): a grant
        // a server crash forgot could be granted twice.
        let epoch: Option<i64> = sqlx::query_scalar(
            "INSERT INTO channel_leases (channel, holder, epoch, expires_at, taken_at) \
             VALUES ($1, $2, nextval('lease_epochs'), $3, $4) \
             ON CONFLICT (channel) DO UPDATE SET holder = excluded.holder, epoch = excluded.epoch, \
             expires_at = excluded.expires_at, taken_at = excluded.taken_at \
             WHERE channel_leases.holder IS NULL OR channel_leases.expires_at <= $4 \
             OR channel_leases.holder <> ALL($5) \
             RETURNING epoch",
        )
        .bind(channel)
        .bind(id)
        .bind(now + ttl_ms)
        .bind(now)
        .bind(live)
        .fetch_optional(&self.pool)
        .await?;
        Ok(epoch.map(|epoch| Lease {
            channel: channel.to_owned(),
            epoch,
        }))
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE channel_leases SET holder = NULL, expires_at = 0 WHERE channel = $1 AND epoch = $2",
        )
        .bind(&lease.channel)
        .bind(lease.epoch)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn lease_held(&self, lease: &Lease) -> Result<bool, StoreError> {
        let held: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM channel_leases WHERE channel = $1 AND epoch = $2 AND holder IS NOT NULL",
        )
        .bind(&lease.channel)
        .bind(lease.epoch)
        .fetch_optional(&self.delivery)
        .await?;
        Ok(held.is_some())
    }

    async fn leave(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE channel_leases SET holder = NULL, expires_at = 0 WHERE holder = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM replicas WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if let Some(conn) = self.holder.lock().await.take() {
            // The lock goes with the session, closed or dropped.
            if let Err(e) = conn.close().await {
                tracing::debug!(error = %e, "the liveness connection did not close cleanly");
            }
        }
        Ok(())
    }
}

fn warn_lost(e: &sqlx::Error) {
    tracing::warn!(error = %e, "this replica's liveness connection to PostgreSQL is gone; it stops delivering and joins again");
}

/// Read the lease row `FOR SHARE` inside `tx`: [`StoreError::LeaseLost`]
/// when it is no longer `lease`'s grant.
pub(super) async fn lock_lease(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    lease: &Lease,
) -> Result<(), StoreError> {
    let held: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM channel_leases WHERE channel = $1 AND epoch = $2 AND holder IS NOT NULL FOR SHARE",
    )
    .bind(&lease.channel)
    .bind(lease.epoch)
    .fetch_optional(&mut **tx)
    .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(StoreError::LeaseLost {
            channel: lease.channel.clone(),
        }),
    }
}
