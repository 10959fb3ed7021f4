//! Slack channels as a herald [`Messaging`] adapter, through slack-morphism.
//!
//! `chat.postMessage` / `chat.update` with Block Kit and a `text` fallback,
//! `parse = none`. Every message carries metadata (`event_type =
//! "herald_delivery"`, the idempotency key in the payload), so after an
//! unknown outcome `reconcile` finds it again through
//! `conversations.history` with `include_all_metadata`.

mod classify;
pub mod render;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use herald_messaging::{
    Call, ChannelRef, DeliveryOutcome, IdempotencyKey, Limits, MessageHandle, Messaging, NotSurfaced,
    Outbound, Platform, Rate, Reconciled,
};
use slack_morphism::prelude::*;

pub use classify::classify;

/// The metadata `event_type` that marks herald's messages.
pub const METADATA_EVENT_TYPE: &str = "herald_delivery";
/// The metadata payload key holding the idempotency key.
pub const METADATA_KEY: &str = "receipt_id";
/// How far back `reconcile` looks.
const RECONCILE_WINDOW: u16 = 100;

/// Why the adapter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The TLS connector could not be built.
    #[error("could not build the Slack HTTP connector: {0}")]
    Connector(String),
}

/// One Slack workspace (bot token).
pub struct SlackAdapter {
    client: SlackClient<SlackClientHyperHttpsConnector>,
    token: SlackApiToken,
    timeout: Duration,
}

impl SlackAdapter {
    /// A bot token at `api_url` (Slack, a proxy, or an emulator over plain
    /// http: the stock connector is https-only, so this one allows both).
    pub fn new(api_url: Option<&str>, token: &str, timeout: Duration) -> Result<SlackAdapter, SetupError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let mut connector = SlackClientHyperConnector::with_connector(https);
        if let Some(url) = api_url {
            connector = connector.with_slack_api_url(url.trim_end_matches('/'));
        }
        Ok(SlackAdapter {
            client: SlackClient::new(connector),
            token: SlackApiToken::new(SlackApiTokenValue(token.to_owned())),
            timeout,
        })
    }

    fn metadata(key: &IdempotencyKey) -> SlackMessageMetadata {
        SlackMessageMetadata::new(METADATA_EVENT_TYPE.to_owned())
            .with_event_payload(HashMap::from([(METADATA_KEY.to_owned(), key.0.clone())]))
    }

    fn content(msg: &Outbound) -> SlackMessageContent {
        let mut content = SlackMessageContent::new()
            .with_text(render::fallback(msg))
            .with_blocks(render::blocks(msg));
        if let Some(key) = &msg.idempotency_key {
            content = content.with_metadata(Self::metadata(key));
        }
        content
    }

    /// Run one API call under the timeout; an elapsed timeout after the
    /// request left is an unknown outcome.
    async fn timed<T, F>(&self, call: F) -> Result<T, DeliveryOutcome>
    where
        F: std::future::Future<Output = ClientResult<T>>,
    {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(DeliveryOutcome::NotSurfaced(classify(&e, Call::Post))),
            Err(_) => Err(DeliveryOutcome::NotSurfaced(NotSurfaced::Unverified {
                reason: format!("no answer within {:?}", self.timeout),
            })),
        }
    }
}

#[async_trait]
impl Messaging for SlackAdapter {
    fn platform(&self) -> Platform {
        Platform::Slack
    }

    /// Slack: about one message per second per channel (bursts tolerated),
    /// and `chat.update` about 50 per minute per workspace — shared by every
    /// channel of the workspace, which makes edits the scarce budget.
    fn limits(&self) -> Limits {
        Limits {
            max_text_chars: render::MAX_TEXT,
            posts_per_channel: Rate::new(1, Duration::from_secs(1)),
            edits_per_channel: Some(Rate::new(50, Duration::from_secs(60))),
            calls_per_channel: None,
            edits_shared: Some(Rate::new(50, Duration::from_secs(60))),
            global: None,
        }
    }

    async fn post(&self, to: &ChannelRef, msg: &Outbound) -> DeliveryOutcome {
        let mut request =
            SlackApiChatPostMessageRequest::new(SlackChannelId(to.id.clone()), Self::content(msg))
                .with_parse("none".to_owned());
        if let Some(thread) = &to.thread {
            request = request.with_thread_ts(SlackTs(thread.clone()));
        }
        let session = self.client.open_session(&self.token);
        match self.timed(session.chat_post_message(&request)).await {
            Ok(answer) => DeliveryOutcome::Surfaced(MessageHandle(answer.ts.0)),
            Err(outcome) => outcome,
        }
    }

    async fn edit(&self, to: &ChannelRef, at: &MessageHandle, msg: &Outbound) -> DeliveryOutcome {
        let request = SlackApiChatUpdateRequest::new(
            SlackChannelId(to.id.clone()),
            Self::content(msg),
            SlackTs(at.0.clone()),
        )
        .with_parse("none".to_owned());
        let session = self.client.open_session(&self.token);
        let call = session.chat_update(&request);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(answer)) => DeliveryOutcome::Surfaced(MessageHandle(answer.ts.0)),
            Ok(Err(e)) => DeliveryOutcome::NotSurfaced(classify(&e, Call::Edit)),
            Err(_) => DeliveryOutcome::NotSurfaced(NotSurfaced::Unverified {
                reason: format!("no answer within {:?}", self.timeout),
            }),
        }
    }

    /// Look for a recent message whose metadata carries `key`.
    async fn reconcile(&self, to: &ChannelRef, key: &IdempotencyKey) -> Reconciled {
        let request = SlackApiConversationsHistoryRequest::new()
            .with_channel(SlackChannelId(to.id.clone()))
            .with_limit(RECONCILE_WINDOW)
            .with_include_all_metadata(true);
        let session = self.client.open_session(&self.token);
        match self.timed(session.conversations_history(&request)).await {
            Ok(history) => {
                let found = history.messages.iter().find(|m| {
                    m.content.metadata.as_ref().is_some_and(|md| {
                        md.event_type == METADATA_EVENT_TYPE
                            && md
                                .event_payload
                                .as_ref()
                                .and_then(|p| p.get(METADATA_KEY))
                                .is_some_and(|v| v == &key.0)
                    })
                });
                match found {
                    Some(m) => Reconciled::Found(MessageHandle(m.origin.ts.0.clone())),
                    None => Reconciled::Absent,
                }
            }
            Err(_) => Reconciled::Unknown,
        }
    }
}
