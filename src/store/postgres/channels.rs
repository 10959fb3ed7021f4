//! PostgreSQL: channel ids learned from the platform.

use super::PgStore;
use crate::store::StoreError;
use crate::store::channels::*;

#[async_trait::async_trait]
impl ChannelStore for PgStore {
    async fn moved_channel_target(&self, channel: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT target_id FROM channel_targets WHERE channel = $1")
                .bind(channel)
                .fetch_optional(&self.delivery)
                .await?,
        )
    }

    async fn move_channel_target(&self, channel: &str, target_id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO channel_targets (channel, target_id, moved_at) VALUES ($1, $2, $3) \
             ON CONFLICT (channel) DO UPDATE SET target_id = excluded.target_id, moved_at = excluded.moved_at",
        )
        .bind(channel)
        .bind(target_id)
        .bind(now)
        .execute(&self.delivery)
        .await?;
        Ok(())
    }
}
