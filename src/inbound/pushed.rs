//! The bot without a public URL, over a connection herald opens (SPEC
//! §3.5): Slack Socket Mode when `[adapters.slack]` has an `app_token`,
//! Discord's Gateway when `[adapters.discord]` has no `public_key` (no
//! interactions endpoint). The platform pushes commands and button presses
//! over it (`Messaging::listen`); each is handled exactly as its HTTP
//! request would be (`slack_command`, `slack_action`,
//! `discord_interaction`). Nothing needs verifying: the connection itself
//! was opened with the platform's credential. A platform sends a request
//! again when its answer was lost, and every replica keeps its own
//! connection; a second press is a journal duplicate and a status read
//! changes nothing, so neither matters.

use std::sync::Arc;

use async_trait::async_trait;
use herald_messaging::{Listening, Messaging, NotSurfaced, Platform, PushHandler, Pushed};
use serde_json::Value;
use tracing::{info, warn};

use crate::ingest::AppState;

/// Whether the config asks `platform` to push over a connection herald
/// opens: Slack with an app-level token, Discord without the public key
/// of an interactions endpoint.
pub fn wanted(config: &crate::config::Config, platform: Platform) -> bool {
    match platform {
        Platform::Slack => config
            .adapters
            .slack
            .as_ref()
            .is_some_and(|a| a.app_token.is_some()),
        Platform::Discord => config
            .adapters
            .discord
            .as_ref()
            .is_some_and(|a| a.inbound_secret.is_none()),
        _ => false,
    }
}

/// Hands pushed requests to the inbound handlers of one platform.
struct Pushes {
    state: AppState,
    platform: Platform,
}

#[async_trait]
impl PushHandler for Pushes {
    async fn pushed(&self, push: Pushed) -> Option<Value> {
        match (self.platform, push) {
            (Platform::Slack, Pushed::Command(fields)) => {
                fields["command"].as_str()?;
                Some(super::slack_command(&self.state, fields["text"].as_str().unwrap_or("")).await)
            }
            (Platform::Slack, Pushed::Interaction(payload)) => {
                super::slack_action(&self.state, &payload).await;
                None
            }
            (Platform::Discord, Pushed::Interaction(interaction)) => {
                let answer = super::discord_interaction(&self.state, &interaction).await;
                if answer.is_none() {
                    crate::metrics::inbound_rejected("discord", super::verify::Rejected::Malformed.label());
                }
                answer
            }
            (platform, _) => {
                warn!(%platform, "a pushed request herald does not handle was ignored");
                None
            }
        }
    }
}

/// Open the platform's connection; it stays open while the answer is kept.
/// `None` (logged) when the adapter cannot listen.
pub async fn start(state: AppState, platform: Platform, adapter: Arc<dyn Messaging>) -> Option<Listening> {
    let how = match platform {
        Platform::Slack => "Slack app_token set: taking commands and presses over Socket Mode",
        _ => "no Discord public_key: taking interactions over the Gateway",
    };
    match adapter.listen(Arc::new(Pushes { state, platform })).await {
        Ok(listening) => {
            info!("{how}");
            Some(listening)
        }
        Err(NotSurfaced::Unsupported) => {
            warn!(%platform, "the adapter cannot open a connection for commands");
            None
        }
        Err(e) => {
            warn!(%platform, error = %e, "could not open a connection for commands");
            None
        }
    }
}
