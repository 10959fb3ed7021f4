//! Channel ids learned from the platform (a Telegram group that became a
//! supergroup has a new chat id), kept durably so a restart keeps using it.

use super::{Store, StoreError};

impl Store {
    /// The platform id a channel moved to, if it did.
    pub async fn moved_channel_target(&self, channel: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT target_id FROM channel_targets WHERE channel = ?")
                .bind(channel)
                .fetch_optional(&self.delivery)
                .await?,
        )
    }

    /// Record that `channel` now lives at `target_id`.
    pub async fn move_channel_target(
        &self,
        channel: &str,
        target_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
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
