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
        match self.exchange(call, to, request, body).await {
            Ok((_, text, outcome)) => {
                // A reply whose thread was deleted: open a new one.
                match (&outcome, &to.reply) {
                    (DeliveryOutcome::NotSurfaced(NotSurfaced::Permanent { .. }), Some(reply))
                        if reply.thread.is_some() && error_code(&text) == Some(UNKNOWN_CHANNEL) =>
                    {
                        DeliveryOutcome::NotSurfaced(NotSurfaced::Gone)
                    }
                    _ => outcome,
                }
            }
            Err(outcome) => outcome,
        }
    }

    /// Send one request and read its answer (status, body, and what it
    /// means for `call`), noting what the rate-limit headers say about the
    /// channel's bucket.
    async fn exchange(
        &self,
        call: Call,
        to: &ChannelRef,
        request: reqwest::RequestBuilder,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>, DeliveryOutcome), DeliveryOutcome> {
        let request = request
            .header(AUTHORIZATION, &self.authorization)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        let response = request.send().await.map_err(herald_messaging::http::no_answer)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response
            .bytes()
            .await
            .map_err(herald_messaging::http::no_answer)?;
        let answer = classify(status, &headers, &text, call);
        let mut exhausted = self.exhausted.lock().unwrap_or_else(PoisonError::into_inner);
        match answer.exhausted_for {
            Some(wait) => exhausted.insert((to.id.clone(), call), wait),
            None => exhausted.remove(&(to.id.clone(), call)),
        };
        Ok((status, text.to_vec(), answer.outcome))
    }

    /// Where a message to `to` is created: the channel, or for a reply the
    /// thread opened from its parent (a Discord thread is a channel).
    fn messages_url(&self, to: &ChannelRef) -> String {
        let channel = to
            .reply
            .as_ref()
            .and_then(|r| r.thread.as_deref())
            .unwrap_or(&to.id);
        format!("{}/channels/{channel}/messages", self.api_url)
    }
}

/// Longest thread name Discord takes.
pub const MAX_THREAD_NAME: usize = 100;
/// `A thread has already been created for this message`.
const THREAD_ALREADY_CREATED: i64 = 160004;
/// `Unknown Message`: the parent is gone.
const UNKNOWN_MESSAGE: i64 = 10008;
/// `Unknown Channel`: a reply's thread was deleted.
const UNKNOWN_CHANNEL: i64 = 10003;

/// The Discord error code of a failed answer, if it has one.
fn error_code(body: &[u8]) -> Option<i64> {
    serde_json::from_slice::<ApiError>(body).ok().map(|e| e.code)
}

/// The thread's id from a successful answer to a thread creation.
#[derive(serde::Deserialize)]
struct Created {
    id: String,
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

    fn opens_threads(&self) -> bool {
        true
    }

    /// `POST /channels/{id}/messages/{parent}/threads`: a public thread
    /// started from the live message (its id is the parent's). Discord's
    /// "a thread has already been created for this message" means it is
    /// open: the answer lost before, or another replica opened it.
    async fn open_thread(
        &self,
        to: &ChannelRef,
        parent: &MessageHandle,
        name: &str,
    ) -> Result<String, NotSurfaced> {
        let body = encode(&render::thread(name)).map_err(|outcome| match outcome {
            DeliveryOutcome::NotSurfaced(reason) => reason,
            DeliveryOutcome::Surfaced(_) => NotSurfaced::Unsupported,
        })?;
        let url = format!(
            "{}/channels/{}/messages/{}/threads",
            self.api_url,
            to.id,
            parent.as_str()
        );
        let (status, text, outcome) = self
            .exchange(Call::Post, to, self.http.post(url), body)
            .await
            .map_err(|outcome| match outcome {
                DeliveryOutcome::NotSurfaced(reason) => reason,
                DeliveryOutcome::Surfaced(_) => NotSurfaced::Unsupported,
            })?;
        if (200..300).contains(&status) {
            return serde_json::from_slice::<Created>(&text)
                .map(|c| c.id)
                .map_err(|e| NotSurfaced::Unverified {
                    reason: format!("unreadable answer to a thread creation: {e}"),
                });
        }
        match error_code(&text) {
            Some(THREAD_ALREADY_CREATED) => Ok(parent.as_str().to_owned()),
            Some(UNKNOWN_MESSAGE) if status == 404 => Err(NotSurfaced::Gone),
            _ => match outcome {
                DeliveryOutcome::NotSurfaced(reason) => Err(reason),
                DeliveryOutcome::Surfaced(_) => Err(NotSurfaced::Unverified {
                    reason: "unexpected answer to a thread creation".to_owned(),
                }),
            },
        }
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
