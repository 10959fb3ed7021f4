//! Telegram chats as a herald [`Messaging`] adapter.
//!
//! Requests are teloxide's payload types (`SendMessage`, `EditMessageText`)
//! and answers parse into teloxide's `Message`, `ApiError` and
//! `ResponseParameters`; they travel over herald's own HTTP client because
//! teloxide's transport sleeps a fixed 10 s on every 5xx before returning,
//! which would stall a channel actor far beyond the retry schedule. Using
//! teloxide's `ApiError` keeps Telegram's error descriptions mapped by the
//! library, typed, never matched as text here.
//!
//! Telegram cannot be asked which messages exist, so terminal delivery is
//! at-least-once: after an unknown outcome the message is sent again. Keep
//! the timeout generous; short timeouts are what make duplicates.

pub mod render;

use std::time::Duration;

use async_trait::async_trait;
use herald_messaging::{
    Budget, ChannelRef, DeliveryOutcome, Limits, MessageHandle, Messaging, NotSurfaced, Outbound, Platform,
    Rate, Reconciliation, WRITES,
};
use serde::Deserialize;
use teloxide::ApiError;
use teloxide::payloads::{EditMessageText, SendMessage};
use teloxide::types::{
    ChatId, LinkPreviewOptions, Message, MessageId, ParseMode, Recipient, ResponseParameters, ThreadId,
};

/// Telegram's public Bot API, used when no `api_url` is configured.
pub const DEFAULT_API_URL: &str = "https://api.telegram.org";

/// Why the adapter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// One bot.
pub struct TelegramAdapter {
    http: reqwest::Client,
    base: String,
}

/// The Bot API envelope: `{ok, result}` or `{ok: false, error_code,
/// description, parameters}`.
#[derive(Debug, Deserialize)]
struct Envelope {
    ok: bool,
    result: Option<serde_json::Value>,
    error_code: Option<u16>,
    description: Option<String>,
    parameters: Option<ResponseParameters>,
}

impl TelegramAdapter {
    /// A bot at `api_url` (Telegram, a local Bot API server, an emulator).
    pub fn new(api_url: Option<&str>, token: &str, timeout: Duration) -> Result<TelegramAdapter, SetupError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()?;
        let api = api_url.unwrap_or(DEFAULT_API_URL).trim_end_matches('/');
        Ok(TelegramAdapter {
            http,
            base: format!("{api}/bot{token}"),
        })
    }

    async fn call<T: serde::Serialize>(
        &self,
        method: &str,
        payload: &T,
        editing: Option<&MessageHandle>,
    ) -> DeliveryOutcome {
        let response = match self
            .http
            .post(format!("{}/{method}", self.base))
            .json(payload)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return transport_error(&e),
        };
        let status = response.status().as_u16();
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return transport_error(&e),
        };
        classify(status, &body, editing)
    }
}

fn recipient(to: &ChannelRef) -> Result<Recipient, DeliveryOutcome> {
    if let Ok(id) = to.id.parse::<i64>() {
        return Ok(Recipient::Id(ChatId(id)));
    }
    if to.id.starts_with('@') {
        return Ok(Recipient::ChannelUsername(to.id.clone()));
    }
    Err(DeliveryOutcome::NotSurfaced(NotSurfaced::Permanent {
        reason: format!("{:?} is not a Telegram chat id or @channel name", to.id),
    }))
}

/// Groups, supergroups and channels: negative chat ids and `@username`s.
fn is_group(to: &ChannelRef) -> bool {
    to.id.starts_with('-') || to.id.starts_with('@')
}

fn thread(to: &ChannelRef) -> Option<ThreadId> {
    to.thread
        .as_ref()
        .and_then(|t| t.parse::<i32>().ok())
        .map(|id| ThreadId(MessageId(id)))
}

fn no_preview() -> LinkPreviewOptions {
    LinkPreviewOptions {
        is_disabled: true,
        url: None,
        prefer_small_media: false,
        prefer_large_media: false,
        show_above_text: false,
    }
}

/// Classify one HTTP answer. `editing` is the message an edit addressed:
/// "message is not modified" means it already shows this text.
pub fn classify(status: u16, body: &[u8], editing: Option<&MessageHandle>) -> DeliveryOutcome {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
        // Not the Bot API's JSON (a proxy's HTML error page, a truncated body).
        let reason = format!("HTTP {status} without a Bot API answer");
        return DeliveryOutcome::NotSurfaced(if status >= 500 || status == 0 {
            NotSurfaced::Transient { reason }
        } else if (200..300).contains(&status) {
            NotSurfaced::Unverified { reason }
        } else {
            NotSurfaced::Permanent { reason }
        });
    };
    if envelope.ok {
        return match envelope.result.map(serde_json::from_value::<Message>) {
            Some(Ok(message)) => DeliveryOutcome::Surfaced(MessageHandle(message.id.0.to_string())),
            other => DeliveryOutcome::NotSurfaced(NotSurfaced::Unverified {
                reason: format!("unreadable success answer: {other:?}"),
            }),
        };
    }
    let code = envelope.error_code.unwrap_or(status);
    let description = envelope.description.unwrap_or_default();
    let reason = format!("Telegram {code}: {description}");
    match envelope.parameters {
        Some(ResponseParameters::RetryAfter(after)) => {
            return DeliveryOutcome::NotSurfaced(NotSurfaced::RateLimited {
                retry_after: after.duration(),
                global: false,
            });
        }
        Some(ResponseParameters::MigrateToChatId(id)) => {
            return DeliveryOutcome::NotSurfaced(NotSurfaced::Moved {
                to: ChannelRef::new(id.0.to_string()),
            });
        }
        None => {}
    }
    let api_error: ApiError = serde_json::from_value(serde_json::Value::String(description))
        .unwrap_or_else(|_| ApiError::Unknown(reason.clone()));
    let outcome = match (api_error, editing) {
        (ApiError::MessageNotModified, Some(handle)) => return DeliveryOutcome::Surfaced(handle.clone()),
        (ApiError::MessageToEditNotFound | ApiError::MessageCantBeEdited, Some(_)) => NotSurfaced::Gone,
        (
            ApiError::ChatNotFound
            | ApiError::BotBlocked
            | ApiError::BotKicked
            | ApiError::BotKickedFromSupergroup
            | ApiError::BotKickedFromChannel
            | ApiError::UserDeactivated
            | ApiError::CantInitiateConversation
            | ApiError::CantTalkWithBots
            | ApiError::NotEnoughRightsToPostMessages
            | ApiError::InvalidToken,
            _,
        ) => NotSurfaced::Permanent { reason },
        _ => match code {
            429 => NotSurfaced::RateLimited {
                retry_after: Duration::from_secs(1),
                global: false,
            },
            500..=599 => NotSurfaced::Transient { reason },
            _ => NotSurfaced::Permanent { reason },
        },
    };
    DeliveryOutcome::NotSurfaced(outcome)
}

fn transport_error(e: &reqwest::Error) -> DeliveryOutcome {
    let reason = herald_messaging::error_chain(e);
    DeliveryOutcome::NotSurfaced(if e.is_connect() {
        NotSurfaced::Transient { reason }
    } else {
        NotSurfaced::Unverified { reason }
    })
}

#[async_trait]
impl Messaging for TelegramAdapter {
    fn platform(&self) -> Platform {
        Platform::Telegram
    }

    /// Bot API limits (Telegram's bot FAQ): about 30 messages per second
    /// per bot and one per second per chat; edits count like messages.
    fn limits(&self) -> Limits {
        Limits {
            max_text_chars: render::MAX_TEXT,
            budgets: vec![
                Budget::channel(WRITES, Rate::new(1, Duration::from_secs(1))),
                Budget::account(WRITES, Rate::new(30, Duration::from_secs(1))),
            ],
            enforced_by_platform: true,
        }
    }

    /// Groups, supergroups and channels (negative ids, `@channel`) are
    /// limited twice: one message per second per chat *and* 20 per minute
    /// per group.
    fn channel_limits(&self, to: &ChannelRef) -> Limits {
        let mut limits = self.limits();
        if is_group(to) {
            limits
                .budgets
                .push(Budget::channel(WRITES, Rate::new(20, Duration::from_secs(60))));
        }
        limits
    }

    async fn post(&self, to: &ChannelRef, msg: &Outbound) -> DeliveryOutcome {
        let chat = match recipient(to) {
            Ok(c) => c,
            Err(outcome) => return outcome,
        };
        let mut payload = SendMessage::new(chat, render::html(msg));
        payload.parse_mode = Some(ParseMode::Html);
        payload.link_preview_options = Some(no_preview());
        payload.message_thread_id = thread(to);
        self.call("sendMessage", &payload, None).await
    }

    async fn edit(&self, to: &ChannelRef, at: &MessageHandle, msg: &Outbound) -> DeliveryOutcome {
        let chat = match recipient(to) {
            Ok(c) => c,
            Err(outcome) => return outcome,
        };
        let Ok(id) = at.as_str().parse::<i32>() else {
            return DeliveryOutcome::NotSurfaced(NotSurfaced::Gone);
        };
        let mut payload = EditMessageText::new(chat, MessageId(id), render::html(msg));
        payload.parse_mode = Some(ParseMode::Html);
        payload.link_preview_options = Some(no_preview());
        self.call("editMessageText", &payload, Some(at)).await
    }

    /// Telegram offers no way to read a chat's messages back: resend
    /// (at-least-once).
    fn reconciliation(&self, _to: &ChannelRef) -> Reconciliation {
        Reconciliation::Resend
    }
}
