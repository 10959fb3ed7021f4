//! Channel ids learned from the platform (a Telegram group that became a
//! supergroup has a new chat id), kept durably so a restart keeps using it.

use super::StoreError;

/// Channel ids learned from the platform.
#[async_trait::async_trait]
pub trait ChannelStore: Send + Sync {
    /// The platform id a channel moved to, if it did.
    async fn moved_channel_target(&self, channel: &str) -> Result<Option<String>, StoreError>;

    /// Record that `channel` now lives at `target_id`.
    async fn move_channel_target(&self, channel: &str, target_id: &str, now: i64) -> Result<(), StoreError>;
}
