//! PostgreSQL: run-time channels (migration 0007).

use sqlx::Row;

use super::PgStore;
use crate::alert_policy::RuntimeChannel;
use crate::store::StoreError;
use crate::store::runtime_channels::*;

#[async_trait::async_trait]
impl RuntimeChannelStore for PgStore {
    async fn register_runtime_channels(&self, channels: &[RuntimeChannel]) -> Result<(), StoreError> {
        let now = crate::store::now_ms();
        for channel in channels {
            sqlx::query(
                "INSERT INTO runtime_channels (name, target, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(&channel.name)
            .bind(serde_json::to_string(&channel.target)?)
            .bind(now)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    async fn runtime_channels(&self) -> Result<Vec<RuntimeChannel>, StoreError> {
        let rows = sqlx::query("SELECT name, target FROM runtime_channels ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| runtime_channel_from(r.try_get("name")?, &r.try_get::<String, _>("target")?))
            .collect()
    }
}
