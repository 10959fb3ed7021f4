//! Slack without a public URL (SPEC §3.5): when `[adapters.slack]` has an
//! `app_token`, herald opens Socket Mode connections
//! (`Messaging::listen`) and Slack pushes slash commands and button
//! presses over them. Each is handled exactly as its HTTP request would be
//! (`slack_command`, `slack_action`); nothing needs verifying, since the
//! connection itself was opened with the app-level token. A command is
//! answered in its acknowledgement; a press is acknowledged bare and the
//! pressed message replaced through its `response_url`. Slack sends an
//! envelope again when its acknowledgement is lost; a second press is a
//! journal duplicate and a second status read changes nothing, so every
//! replica may listen.

use std::sync::Arc;

use async_trait::async_trait;
use herald_messaging::{Listening, Messaging, NotSurfaced, PushHandler, Pushed};
use serde_json::Value;
use tracing::{info, warn};

use crate::ingest::AppState;

/// Whether the config asks for Socket Mode: a Slack account with an
/// app-level token.
pub fn wanted(config: &crate::config::Config) -> bool {
    config
        .adapters
        .slack
        .as_ref()
        .is_some_and(|a| a.app_token.is_some())
}

/// Hands pushed requests to the inbound handlers.
struct Pushes {
    state: AppState,
}

#[async_trait]
impl PushHandler for Pushes {
    async fn pushed(&self, push: Pushed) -> Option<Value> {
        match push {
            Pushed::Command(fields) => {
                fields["command"].as_str()?;
                Some(super::slack_command(&self.state, fields["text"].as_str().unwrap_or("")).await)
            }
            Pushed::Interaction(payload) => {
                super::slack_action(&self.state, &payload).await;
                None
            }
        }
    }
}

/// Open the Socket Mode connections; they stay open while the answer is
/// kept. `None` (logged) when the adapter cannot listen.
pub async fn start(state: AppState, slack: Arc<dyn Messaging>) -> Option<Listening> {
    match slack.listen(Arc::new(Pushes { state })).await {
        Ok(listening) => {
            info!("Slack app_token set: taking commands and presses over Socket Mode");
            Some(listening)
        }
        Err(NotSurfaced::Unsupported) => {
            warn!("the Slack adapter cannot open Socket Mode connections");
            None
        }
        Err(e) => {
            warn!(error = %e, "could not open Slack Socket Mode connections");
            None
        }
    }
}
