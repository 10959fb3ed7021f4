//! Telegram without a public URL (SPEC §3.5): when `[adapters.telegram]`
//! has no `webhook_secret`, herald pulls the bot's updates by long polling
//! (`getUpdates`) and answers each as the webhook path would
//! (`telegram_update`), calling the Bot API with the answer. Each update is
//! taken in the store before it is handled (`BotOffsetStore`), so none is
//! answered twice — not after a restart (Telegram sends updates again until
//! a poll moves past them), not by a second replica.

use std::sync::Arc;
use std::time::Duration;

use herald_messaging::{Messaging, NotSurfaced};
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::ingest::AppState;

/// The bot's name in the store's offsets.
pub const BOT: &str = "telegram";
/// How long one poll waits on Telegram's side for an update.
const WAIT: Duration = Duration::from_secs(25);
/// The longest pause between failed polls.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Whether the config asks for pulling: a Telegram account without a
/// webhook secret.
pub fn wanted(config: &crate::config::Config) -> bool {
    config
        .adapters
        .telegram
        .as_ref()
        .is_some_and(|a| a.inbound_secret.is_none())
}

/// Pull and answer updates for as long as the task runs.
pub async fn run(state: AppState, bot: Arc<dyn Messaging>) {
    info!("no Telegram webhook_secret: pulling the bot's updates (getUpdates)");
    let mut failures: u32 = 0;
    loop {
        let pause = match poll_once(&state, bot.as_ref()).await {
            Ok(()) => {
                if failures > 0 {
                    info!(failures, "Telegram updates are pulled again");
                }
                failures = 0;
                continue;
            }
            Err(PollError::RateLimited(wait)) => wait,
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    warn!(error = %e, "could not pull Telegram updates; trying again");
                } else {
                    debug!(error = %e, failures, "could not pull Telegram updates");
                }
                backoff(failures)
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// Why a poll did not go through.
#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error("the store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("Telegram: {0}")]
    Telegram(NotSurfaced),
    #[error("Telegram asked to wait {0:?}")]
    RateLimited(Duration),
}

/// One long poll and the updates it brought, oldest first. Stops at the
/// first update the store could not take: the next poll starts from the
/// last one taken, so the rest come again.
async fn poll_once(state: &AppState, bot: &dyn Messaging) -> Result<(), PollError> {
    let after = state.store.last_update(BOT).await?;
    let updates = match bot.pull_updates(after, WAIT).await {
        Ok(updates) => updates,
        Err(NotSurfaced::RateLimited { retry_after, .. }) => return Err(PollError::RateLimited(retry_after)),
        Err(e) => return Err(PollError::Telegram(e)),
    };
    for update in updates {
        let Some(id) = update["update_id"].as_i64() else {
            warn!("a Telegram update without an update_id was skipped");
            continue;
        };
        if !state.store.take_update(BOT, id).await? {
            // Taken already (an earlier run, or another replica).
            continue;
        }
        answer(state, bot, &update).await;
    }
    Ok(())
}

/// Answer one update through the Bot API (a failed answer is logged: the
/// update was taken, and answering twice would be worse than once late).
async fn answer(state: &AppState, bot: &dyn Messaging, update: &Value) {
    let answer = super::telegram_update(state, update).await;
    if answer.get("method").is_none() {
        return;
    }
    if let Err(e) = bot.answer(&answer).await {
        warn!(error = %e, method = answer["method"].as_str().unwrap_or_default(), "a Telegram answer was not taken");
    }
}

/// 1 s, 2 s, 4 s … at most [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(5)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_polls_back_off_to_thirty_seconds() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
