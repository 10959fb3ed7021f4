//! Discord channels as a herald [`Messaging`] adapter.
//!
//! Requests are built with serenity's builders (`CreateMessage`,
//! `EditMessage`) and answers parsed into serenity's `Message` model, but
//! sent with herald's own HTTP client: serenity's `Http` drops the 429
//! headers and body once its built-in rate limiter is off (and herald owns
//! rate budgets and retries), so the hot calls read the answer themselves.
//! See `../shared/STACK-NOTES.md`.

mod classify;
pub mod gateway;
pub mod render;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use herald_messaging::{
    ALL_CALLS, Budget, Call, ChannelRef, DeliveryOutcome, EDITS, Limits, Listening, MessageHandle, Messaging,
    NotSurfaced, Outbound, POSTS, Platform, PushHandler, Rate, Reconciliation,
};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

pub use classify::{Answer, ApiError, classify};

/// Discord's public API, used when no `api_url` is configured.
pub const DEFAULT_API_URL: &str = "https://discord.com/api/v10";

/// Why the adapter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// One Discord bot account.
pub struct DiscordAdapter {
    http: reqwest::Client,
    api_url: String,
    authorization: String,
    /// The bot token, for the Gateway.
    token: String,
    /// Whether interactions are taken over the Gateway.
    gateway: bool,
    /// Per (channel, call): how long the platform's last answer said the
    /// bucket stays empty.
    exhausted: Mutex<HashMap<(String, Call), Duration>>,
}

impl DiscordAdapter {
    /// A bot account at `api_url` (Discord, a proxy, or an emulator).
    /// `timeout` bounds each request; a request that times out after being
    /// sent is `Unverified`, and the resend carries the same nonce.
    pub fn new(api_url: Option<&str>, token: &str, timeout: Duration) -> Result<DiscordAdapter, SetupError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!(
                "DiscordBot (https://github.com/herald, ",
                env!("CARGO_PKG_VERSION"),
                ")"
            ))
            .build()?;
        Ok(DiscordAdapter {
            http,
            api_url: api_url
                .unwrap_or(DEFAULT_API_URL)
                .trim_end_matches('/')
                .to_owned(),
            authorization: format!("Bot {token}"),
            token: token.to_owned(),
            gateway: false,
            exhausted: Mutex::default(),
        })
    }

    /// Take interactions over the Gateway (an application without an
    /// Interactions Endpoint URL), for a herald without a public URL.
    pub fn with_gateway(mut self) -> DiscordAdapter {
        self.gateway = true;
        self
    }

    async fn send(
        &self,
        call: Call,
        to: &ChannelRef,
        request: reqwest::RequestBuilder,
        body: Vec<u8>,
    ) -> DeliveryOutcome {
        let request = request
            .header(AUTHORIZATION, &self.authorization)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return herald_messaging::http::no_answer(e),
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return herald_messaging::http::no_answer(e),
        };
        let answer = classify(status, &headers, &text, call);
        let mut exhausted = self.exhausted.lock().unwrap_or_else(PoisonError::into_inner);
        match answer.exhausted_for {
            Some(wait) => exhausted.insert((to.id.clone(), call), wait),
            None => exhausted.remove(&(to.id.clone(), call)),
        };
        answer.outcome
    }

    fn messages_url(&self, to: &ChannelRef) -> String {
        format!("{}/channels/{}/messages", self.api_url, to.id)
    }
}

fn encode<T: serde::Serialize>(body: &T) -> Result<Vec<u8>, DeliveryOutcome> {
    serde_json::to_vec(body).map_err(|e| {
        DeliveryOutcome::NotSurfaced(NotSurfaced::Permanent {
            reason: format!("could not encode the Discord request: {e}"),
        })
    })
}

#[async_trait]
impl Messaging for DiscordAdapter {
    fn platform(&self) -> Platform {
        Platform::Discord
    }

    /// Observed Discord limits: 5 creates and, separately, 5 edits per 5 s
    /// per channel; 50 requests per second per bot.
    fn limits(&self) -> Limits {
        Limits {
            max_text_chars: render::MAX_CONTENT,
            budgets: vec![
                Budget::channel(POSTS, Rate::new(5, Duration::from_secs(5))),
                Budget::channel(EDITS, Rate::new(5, Duration::from_secs(5))),
                Budget::account(ALL_CALLS, Rate::new(50, Duration::from_secs(1))),
            ],
            enforced_by_platform: true,
        }
    }

    async fn post(&self, to: &ChannelRef, msg: &Outbound) -> DeliveryOutcome {
        let body = match encode(&render::create(msg)) {
            Ok(b) => b,
            Err(outcome) => return outcome,
        };
        let request = self.http.post(self.messages_url(to));
        self.send(Call::Post, to, request, body).await
    }

    async fn edit(&self, to: &ChannelRef, at: &MessageHandle, msg: &Outbound) -> DeliveryOutcome {
        let body = match encode(&render::edit(msg)) {
            Ok(b) => b,
            Err(outcome) => return outcome,
        };
        let request = self
            .http
            .patch(format!("{}/{}", self.messages_url(to), at.as_str()));
        self.send(Call::Edit, to, request, body).await
    }

    fn exhausted_for(&self, to: &ChannelRef, call: Call) -> Option<Duration> {
        self.exhausted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(to.id.clone(), call))
            .copied()
    }

    /// Discord cannot be searched by nonce, but a create with the same
    /// nonce and `enforce_nonce` returns the existing message for several
    /// minutes: resending *is* the reconciliation.
    fn reconciliation(&self, _to: &ChannelRef) -> Reconciliation {
        Reconciliation::Resend
    }

    /// Interactions over the Gateway; `Unsupported` unless asked for.
    async fn listen(&self, handler: Arc<dyn PushHandler>) -> Result<Listening, NotSurfaced> {
        if !self.gateway {
            return Err(NotSurfaced::Unsupported);
        }
        gateway::listen(&self.api_url, &self.token, self.http.clone(), handler).await
    }
}
