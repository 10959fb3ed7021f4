//! Slack channels as a herald [`Messaging`] adapter, through slack-morphism.
//!
//! `chat.postMessage` / `chat.update` with Block Kit and a `text` fallback,
//! `parse = none`. Every message carries metadata (`event_type =
//! "herald_delivery"`, the idempotency key in the payload), so after an
//! unknown outcome a look-up finds it again through
//! `conversations.history` with `include_all_metadata`, one page per call.

mod classify;
pub mod render;
pub mod socket_mode;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use herald_messaging::{
    Budget, Call, ChannelRef, DeliveryOutcome, EDITS, IdempotencyKey, LOOKUPS, Limits, Listening, LookupPage,
    LookupQuery, MessageHandle, Messaging, NotSurfaced, Outbound, POSTS, Platform, PushHandler, Rate,
    Reconciliation, Severity,
};
use slack_morphism::prelude::*;

pub use classify::classify;

/// The metadata `event_type` that marks herald's messages.
pub const METADATA_EVENT_TYPE: &str = "herald_delivery";
/// The metadata payload key holding the idempotency key.
pub const METADATA_KEY: &str = "receipt_id";

/// Which `conversations.history` limits the app lives under. Slack rates
/// methods per app per workspace; since 2025 commercially distributed apps
/// outside the Marketplace get far less of this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HistoryTier {
    /// Tier 3: about 50 calls per minute (internal and Marketplace apps).
    #[default]
    Tier3,
    /// Commercially distributed non-Marketplace apps: 1 call per minute,
    /// at most 15 messages per call.
    Limited,
}

impl HistoryTier {
    /// Calls per window.
    pub fn rate(self) -> Rate {
        match self {
            HistoryTier::Tier3 => Rate::new(50, Duration::from_secs(60)),
            HistoryTier::Limited => Rate::new(1, Duration::from_secs(60)),
        }
    }

    /// Messages asked for per call.
    pub fn page_size(self) -> u16 {
        match self {
            HistoryTier::Tier3 => 100,
            HistoryTier::Limited => 15,
        }
    }
}

/// Why the adapter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The TLS connector could not be built.
    #[error("could not build the Slack HTTP connector: {0}")]
    Connector(String),
}

/// One Slack workspace (bot token).
pub struct SlackAdapter {
    client: Arc<SlackClient<SlackClientHyperHttpsConnector>>,
    token: SlackApiToken,
    /// The app-level token (`xapp-…`) for Socket Mode, when configured.
    app_token: Option<String>,
    timeout: Duration,
    history: HistoryTier,
}

impl SlackAdapter {
    /// A bot token at `api_url` (Slack, a proxy, or an emulator over plain
    /// http: the stock connector is https-only, so this one allows both).
    pub fn new(
        api_url: Option<&str>,
        token: &str,
        timeout: Duration,
        history: HistoryTier,
    ) -> Result<SlackAdapter, SetupError> {
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
            client: Arc::new(SlackClient::new(connector)),
            token: SlackApiToken::new(SlackApiTokenValue(token.to_owned())),
            app_token: None,
            timeout,
            history,
        })
    }

    /// Take commands and button presses over Socket Mode with this
    /// app-level token (`xapp-…`), for a herald without a public URL.
    pub fn with_app_token(mut self, app_token: &str) -> SlackAdapter {
        self.app_token = Some(app_token.to_owned());
        self
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
    async fn timed<T, F>(&self, kind: Call, call: F) -> Result<T, NotSurfaced>
    where
        F: std::future::Future<Output = ClientResult<T>>,
    {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(&e, kind)),
            Err(_) => Err(NotSurfaced::Unverified {
                reason: format!("no answer within {:?}", self.timeout),
            }),
        }
    }
}

#[async_trait]
impl Messaging for SlackAdapter {
    fn platform(&self) -> Platform {
        Platform::Slack
    }

    /// Slack: `chat.postMessage` about one message per second per channel;
    /// `chat.update` (Tier 3) about 50 per minute per workspace — shared by
    /// every channel, which makes edits the scarce budget;
    /// `conversations.history` per workspace by [`HistoryTier`].
    fn limits(&self) -> Limits {
        Limits {
            max_text_chars: render::MAX_TEXT,
            budgets: vec![
                Budget::channel(POSTS, Rate::new(1, Duration::from_secs(1))),
                Budget::account(EDITS, Rate::new(50, Duration::from_secs(60))),
                Budget::account(LOOKUPS, self.history.rate()),
            ],
            enforced_by_platform: true,
        }
    }

    async fn post(&self, to: &ChannelRef, msg: &Outbound) -> DeliveryOutcome {
        let mut request =
            SlackApiChatPostMessageRequest::new(SlackChannelId(to.id.clone()), Self::content(msg))
                .with_parse("none".to_owned());
        if let Some(reply) = &to.reply {
            // A failure is also shown in the channel, so a busy channel's
            // readers see it without opening the thread.
            request = request.with_thread_ts(SlackTs(reply.parent.0.clone()));
            if msg.severity == Severity::Failure {
                request = request.with_reply_broadcast(true);
            }
        } else if let Some(thread) = &to.thread {
            request = request.with_thread_ts(SlackTs(thread.clone()));
        }
        let session = self.client.open_session(&self.token);
        match self.timed(Call::Post, session.chat_post_message(&request)).await {
            Ok(answer) => DeliveryOutcome::Surfaced(MessageHandle(answer.ts.0)),
            Err(reason) => DeliveryOutcome::NotSurfaced(reason),
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
        match self.timed(Call::Edit, session.chat_update(&request)).await {
            Ok(answer) => DeliveryOutcome::Surfaced(MessageHandle(answer.ts.0)),
            Err(reason) => DeliveryOutcome::NotSurfaced(reason),
        }
    }

    fn reconciliation(&self, _to: &ChannelRef) -> Reconciliation {
        Reconciliation::Lookup
    }

    /// One `conversations.history` page (newest first, back to
    /// `query.since`), reporting which keys it holds in herald's metadata;
    /// for replies, one `conversations.replies` page of that thread.
    async fn lookup(&self, to: &ChannelRef, query: &LookupQuery<'_>) -> Result<LookupPage, NotSurfaced> {
        if let Some(parent) = query.thread {
            return self.lookup_replies(to, parent, query).await;
        }
        let mut request = SlackApiConversationsHistoryRequest::new()
            .with_channel(SlackChannelId(to.id.clone()))
            .with_limit(self.history.page_size())
            .with_oldest(SlackTs(slack_ts(query.since)))
            .with_include_all_metadata(true);
        if let Some(cursor) = &query.cursor {
            request = request.with_cursor(SlackCursorId(cursor.clone()));
        }
        let session = self.client.open_session(&self.token);
        let history = self
            .timed(Call::Lookup, session.conversations_history(&request))
            .await?;
        Ok(page_of(
            &history.messages,
            history.has_more,
            history.response_metadata,
            query,
        ))
    }

    /// Socket Mode, with the app-level token; `Unsupported` without one.
    async fn listen(&self, handler: Arc<dyn PushHandler>) -> Result<Listening, NotSurfaced> {
        let Some(app_token) = &self.app_token else {
            return Err(NotSurfaced::Unsupported);
        };
        Ok(socket_mode::listen(self.client.clone(), app_token, handler).await)
    }
}

impl SlackAdapter {
    /// One `conversations.replies` page of the thread under `parent`, with
    /// metadata. slack-morphism's request type has no
    /// `include_all_metadata`, so the method is called through its
    /// session's generic GET.
    async fn lookup_replies(
        &self,
        to: &ChannelRef,
        parent: &MessageHandle,
        query: &LookupQuery<'_>,
    ) -> Result<LookupPage, NotSurfaced> {
        let limit = self.history.page_size().to_string();
        let oldest = slack_ts(query.since);
        let params = vec![
            ("channel", Some(to.id.as_str())),
            ("ts", Some(parent.as_str())),
            ("limit", Some(limit.as_str())),
            ("oldest", Some(oldest.as_str())),
            ("include_all_metadata", Some("true")),
            ("cursor", query.cursor.as_deref()),
        ];
        let session = self.client.open_session(&self.token);
        let call = session
            .http_session_api
            .http_get::<SlackApiConversationsRepliesResponse, _, _>("conversations.replies", &params, None);
        let replies = self.timed(Call::Lookup, call).await?;
        Ok(page_of(
            &replies.messages,
            replies.has_more,
            replies.response_metadata,
            query,
        ))
    }
}

/// Which of the query's keys a page of messages holds (in herald's
/// metadata), and where the next page starts.
fn page_of(
    messages: &[SlackHistoryMessage],
    has_more: Option<bool>,
    metadata: Option<SlackResponseMetadata>,
    query: &LookupQuery<'_>,
) -> LookupPage {
    let found = messages
        .iter()
        .filter_map(|m| {
            let metadata = m.content.metadata.as_ref()?;
            if metadata.event_type != METADATA_EVENT_TYPE {
                return None;
            }
            let value = metadata.event_payload.as_ref()?.get(METADATA_KEY)?;
            let key = query.keys.iter().find(|k| value == &k.0)?;
            Some((key.clone(), MessageHandle(m.origin.ts.0.clone())))
        })
        .collect();
    let next = match has_more {
        Some(true) => metadata
            .and_then(|md| md.next_cursor)
            .map(|c| c.0)
            .filter(|c| !c.is_empty()),
        _ => None,
    };
    LookupPage { found, next }
}

/// A time as Slack's `ts` (`seconds.micros`).
fn slack_ts(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:06}", since.as_secs(), since.subsec_micros())
}
