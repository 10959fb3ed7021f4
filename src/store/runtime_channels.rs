//! Channels made at run time for the targets of events' own alert policies
//! (`alert_policy.rs`): kept so that every replica and every restart
//! delivers to them, with their secrets, which no API shows.

use super::StoreError;
use crate::alert_policy::RuntimeChannel;

/// Keeping and reading run-time channels.
#[async_trait::async_trait]
pub trait RuntimeChannelStore: Send + Sync {
    /// Keep `channels` (a name already kept is left as it is: the name is
    /// a hash of the target).
    async fn register_runtime_channels(&self, channels: &[RuntimeChannel]) -> Result<(), StoreError>;

    /// Every run-time channel, by name.
    async fn runtime_channels(&self) -> Result<Vec<RuntimeChannel>, StoreError>;
}

/// A run-time channel from its row.
pub(crate) fn runtime_channel_from(name: String, target: &str) -> Result<RuntimeChannel, StoreError> {
    Ok(RuntimeChannel {
        name,
        target: serde_json::from_str(target)?,
    })
}
