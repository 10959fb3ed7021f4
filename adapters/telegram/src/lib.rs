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
//! Telegram cannot be asked which messages exist. After an unknown outcome
//! the core probes candidate ids with an `editMessageText` carrying exactly
//! the text that was sent: "message is not modified" means that id is the
//! lost message. Probing is refused in broadcast channels, where an admin
//! bot could edit other admins' posts; there delivery is at-least-once.

pub mod render;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use herald_messaging::{
    ALL_CALLS, Budget, ChannelRef, DeliveryOutcome, Limits, MessageHandle, Messaging, NotSurfaced, Outbound,
    Platform, Probe, Rate, Reconciliation,
};
use serde::Deserialize;
use teloxide::ApiError;
use teloxide::payloads::{EditMessageText, SendMessage};
use teloxide::types::{
    ChatId, LinkPreviewOptions, Message, MessageId, ParseMode, Recipient, ReplyMarkup, ReplyParameters,
    ResponseParameters, ThreadId,
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
    /// Per-request timeout (a long poll gets its wait on top).
    timeout: Duration,
    /// Per chat id: whether it may be probed (false: a broadcast channel).
    probeable: Mutex<HashMap<String, bool>>,
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
            timeout,
            probeable: Mutex::default(),
        })
    }

    /// One Bot API call: the HTTP status and body, or the outcome of a
    /// transport failure.
    async fn send<T: serde::Serialize>(
        &self,
        method: &str,
        payload: &T,
    ) -> Result<(u16, Vec<u8>), DeliveryOutcome> {
        let response = self
            .http
            .post(format!("{}/{method}", self.base))
            .json(payload)
            .send()
            .await
            .map_err(herald_messaging::http::no_answer)?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(herald_messaging::http::no_answer)?;
        Ok((status, body.to_vec()))
    }

    async fn call<T: serde::Serialize>(
        &self,
        method: &str,
        payload: &T,
        editing: Option<&MessageHandle>,
    ) -> DeliveryOutcome {
        match self.send(method, payload).await {
            Ok((status, body)) => classify(status, &body, editing),
            Err(outcome) => outcome,
        }
    }

    /// Private chats and basic groups may always be probed (a bot can edit
    /// only its own messages there); supergroups and channels share the
    /// `-100…` ids, so `getChat` tells them apart, once per chat.
    async fn may_probe(&self, to: &ChannelRef) -> Result<bool, NotSurfaced> {
        if !(to.id.starts_with("-100") || to.id.starts_with('@')) {
            return Ok(true);
        }
        if let Some(known) = self
            .probeable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&to.id)
        {
            return Ok(*known);
        }
        let chat = recipient(to).map_err(not_surfaced)?;
        let (status, body) = self
            .send("getChat", &serde_json::json!({ "chat_id": chat }))
            .await
            .map_err(not_surfaced)?;
        let envelope: Envelope = serde_json::from_slice(&body).map_err(|_| NotSurfaced::Transient {
            reason: format!("HTTP {status} without a Bot API answer"),
        })?;
        if !envelope.ok {
            return Err(not_surfaced(classify(status, &body, None)));
        }
        let kind = envelope
            .result
            .as_ref()
            .and_then(|chat| chat.get("type"))
            .and_then(|t| t.as_str())
            .unwrap_or("channel")
            .to_owned();
        let probeable = kind != "channel";
        self.probeable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(to.id.clone(), probeable);
        Ok(probeable)
    }
}

fn not_surfaced(outcome: DeliveryOutcome) -> NotSurfaced {
    match outcome {
        DeliveryOutcome::NotSurfaced(reason) => reason,
        DeliveryOutcome::Surfaced(_) => NotSurfaced::Transient {
            reason: "unexpected answer".to_owned(),
        },
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

/// A reply quotes its parent (the task's live message); a parent deleted
/// meanwhile makes it a plain message in the chat rather than an error.
fn reply_to(to: &ChannelRef) -> Option<ReplyParameters> {
    let parent = to.reply.as_ref()?.parent.as_str().parse::<i32>().ok()?;
    let mut reply = ReplyParameters::new(MessageId(parent));
    reply.allow_sending_without_reply = Some(true);
    Some(reply)
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

#[async_trait]
impl Messaging for TelegramAdapter {
    fn platform(&self) -> Platform {
        Platform::Telegram
    }

    /// Bot API limits (Telegram's bot FAQ): about 30 messages per second
    /// per bot and one per second per chat; edits (and so probes) count
    /// like messages.
    fn limits(&self) -> Limits {
        Limits {
            max_text_chars: render::MAX_TEXT,
            budgets: vec![
                Budget::channel(ALL_CALLS, Rate::new(1, Duration::from_secs(1))),
                Budget::account(ALL_CALLS, Rate::new(30, Duration::from_secs(1))),
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
                .push(Budget::channel(ALL_CALLS, Rate::new(20, Duration::from_secs(60))));
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
        payload.reply_parameters = reply_to(to);
        payload.reply_markup = render::keyboard(msg).map(ReplyMarkup::InlineKeyboard);
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
        payload.reply_markup = render::keyboard(msg);
        self.call("editMessageText", &payload, Some(at)).await
    }

    /// Telegram offers no way to read a chat's messages back: probe. A
    /// bot's private chats and basic groups take their message ids from one
    /// counter; supergroups and channels count per chat.
    fn reconciliation(&self, to: &ChannelRef) -> Reconciliation {
        Reconciliation::Probe {
            shared_ids: !(to.id.starts_with("-100") || to.id.starts_with('@')),
        }
    }

    /// `getUpdates` (long polling): waits up to `wait` on Telegram's side,
    /// so this one request may take that long plus the usual timeout. A
    /// `409` (a webhook is set, or another poller holds the bot) is
    /// `Transient`: the caller waits and tries again.
    async fn pull_updates(
        &self,
        after: Option<i64>,
        wait: Duration,
    ) -> Result<Vec<serde_json::Value>, NotSurfaced> {
        let payload = serde_json::json!({
            "offset": after.map(|a| a + 1),
            "timeout": wait.as_secs(),
            "allowed_updates": ["message", "callback_query"],
        });
        let response = self
            .http
            .post(format!("{}/getUpdates", self.base))
            .timeout(wait + self.timeout)
            .json(&payload)
            .send()
            .await
            .map_err(|e| not_surfaced(herald_messaging::http::no_answer(e)))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| not_surfaced(herald_messaging::http::no_answer(e)))?;
        match serde_json::from_slice::<Envelope>(&body) {
            Ok(Envelope {
                ok: true,
                result: Some(serde_json::Value::Array(updates)),
                ..
            }) => Ok(updates),
            _ if status == 409 => Err(NotSurfaced::Transient {
                reason: "Telegram 409: another getUpdates poller or a webhook holds this bot".to_owned(),
            }),
            _ => Err(not_surfaced(classify(status, &body, None))),
        }
    }

    /// Call the answer's `method` with the rest of it as arguments.
    async fn answer(&self, answer: &serde_json::Value) -> Result<(), NotSurfaced> {
        let Some(method) = answer["method"]
            .as_str()
            .filter(|m| m.chars().all(char::is_alphanumeric))
        else {
            return Err(NotSurfaced::Permanent {
                reason: "an answer without a Bot API method".to_owned(),
            });
        };
        let mut arguments = answer.clone();
        if let Some(map) = arguments.as_object_mut() {
            map.remove("method");
        }
        let (status, body) = self.send(method, &arguments).await.map_err(not_surfaced)?;
        match serde_json::from_slice::<Envelope>(&body) {
            Ok(Envelope { ok: true, .. }) => Ok(()),
            _ => Err(not_surfaced(classify(status, &body, None))),
        }
    }

    /// `editMessageText` with exactly the text, parse mode and preview
    /// options a send carried. Refused (`Unsupported`) in broadcast
    /// channels.
    async fn probe(&self, to: &ChannelRef, id: &MessageHandle, msg: &Outbound) -> Result<Probe, NotSurfaced> {
        if !self.may_probe(to).await? {
            return Err(NotSurfaced::Unsupported);
        }
        let chat = recipient(to).map_err(not_surfaced)?;
        let Ok(message_id) = id.as_str().parse::<i32>() else {
            return Ok(Probe::Missing);
        };
        let mut payload = EditMessageText::new(chat, MessageId(message_id), render::html(msg));
        payload.parse_mode = Some(ParseMode::Html);
        payload.link_preview_options = Some(no_preview());
        payload.reply_markup = render::keyboard(msg);
        let (status, body) = self
            .send("editMessageText", &payload)
            .await
            .map_err(not_surfaced)?;
        let envelope: Option<Envelope> = serde_json::from_slice(&body).ok();
        if envelope.as_ref().is_some_and(|e| e.ok) {
            return Ok(Probe::Changed);
        }
        let description = envelope
            .as_ref()
            .and_then(|e| e.description.clone())
            .unwrap_or_default();
        match serde_json::from_value::<ApiError>(serde_json::Value::String(description)) {
            Ok(ApiError::MessageNotModified) => Ok(Probe::Same),
            Ok(ApiError::MessageCantBeEdited) => Ok(Probe::NotOurs),
            Ok(ApiError::MessageToEditNotFound) => Ok(Probe::Missing),
            _ => Err(not_surfaced(classify(status, &body, None))),
        }
    }
}
