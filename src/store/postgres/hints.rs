//! PostgreSQL: hints travel on the `herald_hints` notification channel.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use super::PgStore;
use crate::store::StoreError;
use crate::store::hints::*;

/// The notification channel.
const CHANNEL: &str = "herald_hints";

/// Hints queued for the process before the oldest are dropped (they are
/// hints; the pollers catch up).
const BUFFER: usize = 1024;

#[async_trait::async_trait]
impl HintStore for PgStore {
    fn shared(&self) -> bool {
        true
    }

    async fn announce(&self, hint: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(hint)
            .execute(&self.delivery)
            .await?;
        Ok(())
    }

    async fn listen(&self) -> Result<Option<HintFeed>, StoreError> {
        let mut listener = PgListener::connect_with(&self.delivery).await?;
        listener.listen(CHANNEL).await?;
        let (tx, rx) = mpsc::channel(BUFFER);
        let task = tokio::spawn(async move {
            loop {
                // `try_recv` says `None` when the connection dropped (the
                // next call reconnects): hints may have been missed.
                let item = match listener.try_recv().await {
                    Ok(Some(n)) => Some(n.payload().to_owned()),
                    Ok(None) => None,
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the PostgreSQL hint listener; reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        });
        // Closing the store stops it (it holds one of the pool's connections).
        if let Some(old) = self
            .listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(task)
        {
            old.abort();
        }
        Ok(Some(rx))
    }
}
