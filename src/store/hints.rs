//! Hints between the replicas of one store (PostgreSQL `LISTEN/NOTIFY`):
//! "this channel has new work", "this web message changed". A hint only
//! saves latency; the store stays the truth, and every reader also polls.
//! What a hint says is `src/hints.rs`'s business; here it is text.

use tokio::sync::mpsc;

use super::StoreError;

/// What a hint listener yields: a hint's text, or `None` when the
/// connection was lost and hints may have been missed meanwhile.
pub type HintFeed = mpsc::Receiver<Option<String>>;

/// Hints between replicas.
#[async_trait::async_trait]
pub trait HintStore: Send + Sync {
    /// Whether other processes can share this store (else there is no one
    /// to hint).
    fn shared(&self) -> bool;

    /// Send a hint to every replica listening (this one included).
    async fn announce(&self, hint: &str) -> Result<(), StoreError>;

    /// Start listening for hints; `None` where the store is not shared.
    async fn listen(&self) -> Result<Option<HintFeed>, StoreError>;
}
