//! Where a bot's pulled updates have got to (Telegram `getUpdates`, for a
//! bot without a public URL): kept in the store, so an update is handled
//! once — not again after a restart, and by one replica only. And the
//! bot's answers waiting for a channel's actor to send them.

use super::StoreError;

/// Keeping a bot's update offset.
#[async_trait::async_trait]
pub trait BotOffsetStore: Send + Sync {
    /// The last update taken for `bot`, if any.
    async fn last_update(&self, bot: &str) -> Result<Option<i64>, StoreError>;

    /// Take update `id` of `bot` for handling: true for the first caller
    /// (the offset moves to it), false when it or a later one was taken.
    /// Taken before it is handled: a crash in between loses that one
    /// update rather than answering it twice.
    async fn take_update(&self, bot: &str, id: i64) -> Result<bool, StoreError>;

    /// Keep an answer (a platform method as JSON) for `channel`'s actor.
    async fn queue_answer(&self, channel: &str, answer: &serde_json::Value) -> Result<(), StoreError>;

    /// Up to `limit` answers waiting for `channel`, oldest first.
    async fn queued_answers(
        &self,
        channel: &str,
        limit: i64,
    ) -> Result<Vec<(i64, serde_json::Value)>, StoreError>;

    /// Forget answers sent (or that can never be), under the channel's lease.
    async fn answers_sent(&self, lease: &super::Lease, ids: &[i64]) -> Result<(), StoreError>;
}
