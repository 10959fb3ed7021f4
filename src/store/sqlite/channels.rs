//! SQLite: channel ids learned from the platform.

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::channels::*;

#[async_trait::async_trait]
impl ChannelStore for SqliteStore {
    async fn moved_channel_target(&self, channel: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT target_id FROM channel_targets WHERE channel = ?")
                .bind(channel)
                .fetch_optional(&self.delivery)
                .await?,
        )
    }

    async fn move_channel_target(&self, channel: &str, target_id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO channel_targets (channel, target_id, moved_at) VALUES (?, ?, ?) \
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
