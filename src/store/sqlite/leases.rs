//! SQLite: replica registration and channel leases. One process serves a
//! SQLite store (it holds the lock file), so the only live replica is the
//! one that joined through this handle; any other row is a dead process's.
//!
//! The lease tick's writes queue for the write gate on the ingest pool:
//! on the delivery pool (two connections) they slept in SQLite's busy
//! handler behind the bookkeeping writer, holding a connection claims needed
//! (measured: webhook delivery 10–20 % slower).

use sqlx::Row;

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::leases::*;

impl SqliteStore {
    /// [`StoreError::LeaseLost`] unless `lease` is current. A check before
    /// the write is enough here: one process writes a SQLite store.
    pub(super) async fn fence(&self, lease: &Lease) -> Result<(), StoreError> {
        if self.lease_held(lease).await? {
            Ok(())
        } else {
            Err(StoreError::LeaseLost {
                channel: lease.channel.clone(),
            })
        }
    }

    fn joined_as(&self) -> Option<String> {
        self.replica
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[async_trait::async_trait]
impl LeaseStore for SqliteStore {
    async fn join(&self, id: &str, listen: &str, now: i64, ttl_ms: i64) -> Result<(), StoreError> {
        let _gate = self.write_gate.lock().await;
        sqlx::query(
            "INSERT INTO replicas (id, listen, lock_key, started_at, heartbeat_at, expires_at) \
             VALUES (?, ?, 0, ?, ?, ?)",
        )
        .bind(id)
        .bind(listen)
        .bind(now)
        .bind(now)
        .bind(now + ttl_ms)
        .execute(&self.pool)
        .await?;
        *self
            .replica
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(id.to_owned());
        Ok(())
    }

    async fn heartbeat(&self, id: &str, now: i64, ttl_ms: i64) -> Result<(), StoreError> {
        let _gate = self.write_gate.lock().await;
        sqlx::query("UPDATE replicas SET heartbeat_at = ?, expires_at = ? WHERE id = ?")
            .bind(now)
            .bind(now + ttl_ms)
            .bind(id)
            .execute(&self.pool)
            .await?;
        // Rows of earlier processes of this file are dead by definition.
        sqlx::query("DELETE FROM replicas WHERE id <> ? AND expires_at < ?")
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn replicas(&self, _now: i64) -> Result<Vec<ReplicaRow>, StoreError> {
        let me = self.joined_as().unwrap_or_default();
        let rows = sqlx::query(
            "SELECT id, listen, started_at, heartbeat_at, expires_at, id = ? AS alive FROM replicas ORDER BY id",
        )
        .bind(me)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(replica_from).collect()
    }

    async fn channel_leases(&self) -> Result<Vec<LeaseRow>, StoreError> {
        let rows =
            sqlx::query("SELECT channel, holder, epoch, expires_at FROM channel_leases ORDER BY channel")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(lease_row_from).collect()
    }

    async fn renew_leases(&self, id: &str, now: i64, ttl_ms: i64) -> Result<Vec<Lease>, StoreError> {
        let _gate = self.write_gate.lock().await;
        let rows =
            sqlx::query("UPDATE channel_leases SET expires_at = ? WHERE holder = ? RETURNING channel, epoch")
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
        let _gate = self.write_gate.lock().await;
        let live = serde_json::to_string(live)?;
        let epoch: Option<i64> = sqlx::query_scalar(
            "INSERT INTO channel_leases (channel, holder, epoch, expires_at, taken_at) \
             VALUES (?1, ?2, (SELECT COALESCE(MAX(epoch), 0) + 1 FROM channel_leases), ?3, ?4) \
             ON CONFLICT (channel) DO UPDATE SET holder = excluded.holder, epoch = excluded.epoch, \
             expires_at = excluded.expires_at, taken_at = excluded.taken_at \
             WHERE channel_leases.holder IS NULL OR channel_leases.expires_at <= ?4 \
             OR channel_leases.holder NOT IN (SELECT value FROM json_each(?5)) \
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
        let _gate = self.write_gate.lock().await;
        sqlx::query(
            "UPDATE channel_leases SET holder = NULL, expires_at = 0 WHERE channel = ? AND epoch = ?",
        )
        .bind(&lease.channel)
        .bind(lease.epoch)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn lease_held(&self, lease: &Lease) -> Result<bool, StoreError> {
        let held: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM channel_leases WHERE channel = ? AND epoch = ? AND holder IS NOT NULL",
        )
        .bind(&lease.channel)
        .bind(lease.epoch)
        .fetch_optional(&self.pool)
        .await?;
        Ok(held.is_some())
    }

    async fn leave(&self, id: &str) -> Result<(), StoreError> {
        let _gate = self.write_gate.lock().await;
        sqlx::query("UPDATE channel_leases SET holder = NULL, expires_at = 0 WHERE holder = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM replicas WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
