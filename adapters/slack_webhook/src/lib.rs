//! A Slack incoming webhook as a herald [`Messaging`] adapter: `POST
//! {url}` with `{text, blocks}` into the one channel the webhook was made
//! for. It cannot edit, cannot be asked what it received, and answers
//! errors as short text bodies (`invalid_payload`, `no_service`, …).
//! The message looks as it does through the Slack bot (the same Block Kit
//! rendering and escaping, from `herald-slack`).

use std::time::Duration;

use async_trait::async_trait;
use herald_messaging::{
    Budget, ChannelRef, DeliveryOutcome, Limits, MessageHandle, Messaging, NotSurfaced, Outbound, Platform,
    Rate, Reconciliation, WRITES,
};
use rand::Rng;
use serde::Serialize;

/// Slack takes about one message a second per incoming webhook (short
/// bursts allowed; herald does not rely on them).
pub const MESSAGES_PER_SECOND: u32 = 1;

/// Why the adapter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SlackWebhookError {
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// One incoming webhook. Its URL is its secret.
pub struct SlackWebhookChannel {
    client: reqwest::Client,
    url: String,
}

/// The request body.
#[derive(Serialize)]
struct Body {
    text: String,
    blocks: serde_json::Value,
}

impl SlackWebhookChannel {
    /// Set up a webhook (`https://hooks.slack.com/services/…`).
    pub fn new(url: &str, timeout: Duration) -> Result<SlackWebhookChannel, SlackWebhookError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(SlackWebhookChannel {
            client,
            url: url.to_owned(),
        })
    }
}

/// An answer as an outcome: `200 ok` surfaced; Slack's documented errors
/// (`400 invalid_payload`, `403 action_prohibited`, `404 no_service`, `410
/// channel_is_archived`, …) permanent; 429 waits its `Retry-After`; 5xx
/// retried.
async fn classify(response: reqwest::Response, handle: String) -> DeliveryOutcome {
    let status = response.status().as_u16();
    let wait = herald_messaging::http::retry_after(&response);
    if status == 200 {
        return DeliveryOutcome::Surfaced(MessageHandle(handle));
    }
    let reason = herald_messaging::http::status_reason(response).await;
    DeliveryOutcome::NotSurfaced(herald_messaging::http::status_outcome(status, wait, reason))
}

#[async_trait]
impl Messaging for SlackWebhookChannel {
    fn platform(&self) -> Platform {
        Platform::SlackWebhook
    }

    fn limits(&self) -> Limits {
        Limits {
            max_text_chars: 3000,
            budgets: vec![Budget::channel(
                WRITES,
                Rate::new(MESSAGES_PER_SECOND, Duration::from_secs(1)),
            )],
            enforced_by_platform: true,
        }
    }

    async fn post(&self, _to: &ChannelRef, msg: &Outbound) -> DeliveryOutcome {
        let blocks = match serde_json::to_value(herald_slack::render::blocks(msg)) {
            Ok(b) => b,
            Err(e) => {
                return DeliveryOutcome::NotSurfaced(NotSurfaced::Permanent {
                    reason: format!("could not encode the message: {e}"),
                });
            }
        };
        let body = Body {
            text: herald_slack::render::fallback(msg),
            blocks,
        };
        // The webhook answers no message id; the idempotency key stands in.
        let handle = msg
            .idempotency_key
            .as_ref()
            .map_or_else(fresh_handle, |k| k.as_str().to_owned());
        match self.client.post(&self.url).json(&body).send().await {
            Ok(response) => classify(response, handle).await,
            Err(e) => herald_messaging::http::no_answer(e),
        }
    }

    /// Incoming webhooks cannot edit.
    async fn edit(&self, _to: &ChannelRef, _at: &MessageHandle, _msg: &Outbound) -> DeliveryOutcome {
        DeliveryOutcome::NotSurfaced(NotSurfaced::Unsupported)
    }

    /// Nothing can be looked up through a webhook: a message whose answer
    /// was lost is sent again (at least once; docs/operations.md says so).
    fn reconciliation(&self, _to: &ChannelRef) -> Reconciliation {
        Reconciliation::Resend
    }
}

fn fresh_handle() -> String {
    let bits: u64 = rand::rng().random();
    format!("sw{bits:016x}")
}
