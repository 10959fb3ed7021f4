//! Discord interactions over the Gateway: a bot whose application has no
//! Interactions Endpoint URL receives its interactions (the `/herald`
//! command, a press of Acknowledge) as `INTERACTION_CREATE` events on the
//! Gateway WebSocket, and answers each through
//! `POST /interactions/{id}/{token}/callback` within Discord's 3 s.
//!
//! serenity's client keeps the connection (hello, identify with no
//! intents — interactions need none —, heartbeats, resume, reconnect).
//! Each interaction is handed on as JSON, in the shape the interactions
//! endpoint receives it, so the core answers it exactly as an HTTP
//! request; the answer is posted back by herald's own HTTP client, like
//! every other call of this adapter.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_messaging::{Listening, NotSurfaced, PushHandler, Pushed};
use reqwest::header::CONTENT_TYPE;
use serenity::all::{
    ClientBuilder, Context, EventHandler, GatewayIntents, HttpBuilder, Interaction, ShardManager,
};

/// How long an interaction's answer may take to be posted (Discord's
/// initial-response deadline).
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// The origin serenity's REST client is pointed at: the API URL without
/// its `/api/v10` (serenity adds its own path to every route).
fn origin(api_url: &str) -> &str {
    let url = api_url.trim_end_matches('/');
    url.strip_suffix("/api/v10")
        .or_else(|| url.strip_suffix("/api"))
        .unwrap_or(url)
}

/// Hands interactions to the core and posts its answers.
struct Interactions {
    handler: Arc<dyn PushHandler>,
    http: reqwest::Client,
    api_url: String,
}

#[async_trait]
impl EventHandler for Interactions {
    async fn interaction_create(&self, _ctx: Context, interaction: Interaction) {
        let (id, token) = (interaction.id(), interaction.token().to_owned());
        tracing::debug!(interaction = %id, "an interaction came over the Gateway");
        let mut payload = match serde_json::to_value(&interaction) {
            Ok(payload) => payload,
            Err(e) => {
                tracing::warn!(error = %e, "a Discord interaction from the Gateway could not be read");
                return;
            }
        };
        // serenity keeps the interaction's type in the enum, not in the
        // serialized object; the endpoint's shape carries it.
        payload["type"] = serde_json::Value::from(u8::from(interaction.kind()));
        let Some(answer) = self.handler.pushed(Pushed::Interaction(payload)).await else {
            tracing::info!(interaction = %id, "a Discord interaction herald cannot read was left unanswered");
            return;
        };
        // The token is a credential for this interaction: it never goes in
        // a log line.
        let url = format!("{}/interactions/{id}/{token}/callback", self.api_url);
        let sent = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .timeout(ANSWER_WITHIN)
            .body(answer.to_string())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {}
            // 40060: another session (a second replica) answered first.
            Ok(r) => tracing::info!(
                status = r.status().as_u16(),
                interaction = %id,
                "Discord did not take the answer to an interaction (already answered elsewhere, or too late)"
            ),
            Err(e) => tracing::warn!(
                error = %herald_messaging::error_chain(&e.without_url()),
                interaction = %id,
                "the answer to a Discord interaction was not sent"
            ),
        }
    }
}

/// Connect to the Gateway as the bot with `token` (REST calls at
/// `api_url`) and hand every interaction to `handler` until the returned
/// [`Listening`] is dropped.
pub async fn listen(
    api_url: &str,
    token: &str,
    http: reqwest::Client,
    handler: Arc<dyn PushHandler>,
) -> Result<Listening, NotSurfaced> {
    // serenity's REST client serves only `GET /gateway` here. Its rate
    // limiter ignores the proxy (it would call discord.com whatever
    // `api_url` says), so it is off: one call per connection needs none.
    let rest = HttpBuilder::new(token)
        .proxy(origin(api_url))
        .ratelimiter_disabled(true)
        .build();
    let interactions = Interactions {
        handler,
        http,
        api_url: api_url.trim_end_matches('/').to_owned(),
    };
    // Connecting (`GET /gateway`, then the WebSocket) happens in the
    // background: herald is ready to take events whether or not Discord
    // answers yet.
    let (shards_tx, shards_rx) = tokio::sync::oneshot::channel::<Arc<ShardManager>>();
    let running = tokio::spawn(async move {
        let mut client = match ClientBuilder::new_with_http(rest, GatewayIntents::empty())
            .event_handler(interactions)
            .await
        {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(error = %e, "could not set up the Discord Gateway client; interactions are not received");
                return;
            }
        };
        // The receiver is gone only when listening already stopped.
        if shards_tx.send(client.shard_manager.clone()).is_err() {
            return;
        }
        if let Err(e) = client.start().await {
            tracing::warn!(error = %e, "the Discord Gateway connection ended; interactions are not received");
        }
    });
    Ok(Listening::new(move || {
        running.abort();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Ok(shards) = shards_rx.await {
                    shards.shutdown_all().await;
                }
            });
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn serenity_is_pointed_at_the_api_urls_origin() {
        assert_eq!(origin("https://discord.com/api/v10"), "https://discord.com");
        assert_eq!(origin("http://127.0.0.1:9/api/v10/"), "http://127.0.0.1:9");
        assert_eq!(origin("http://proxy.example"), "http://proxy.example");
    }
}
