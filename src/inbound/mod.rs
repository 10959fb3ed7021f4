//! The bot in chat (SPEC §3.5): the endpoints each platform calls —
//! `POST /v1/inbound/slack` (slash commands), `/v1/inbound/discord`
//! (interactions), `/v1/inbound/telegram` (webhook updates). Each request
//! is verified (`verify.rs`) before anything in it is parsed; an
//! unverified, stale or malformed one is a `401`, changes nothing and is
//! counted in `herald_inbound_rejected_total{platform,reason}`. Commands
//! are read from the store (`status.rs`) and answered in the platform's
//! format (`answers.rs`); no command stores anything. A press of
//! Acknowledge (`acknowledge.rs`) journals who pressed it; the pressed
//! message is edited at once where that spends no channel budget (Discord's
//! interaction answer, Slack's `response_url`), and every notification of
//! the task by its channel's actor; Telegram's presser gets a notice.

mod acknowledge;
mod answers;
pub mod pushed;
pub(crate) mod status;
pub mod telegram_poll;
pub mod verify;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::ingest::AppState;
use acknowledge::{Press, PressError};
use answers::Answer;
use herald_messaging::Platform;
use status::{HELP, StatusReport};
use verify::Rejected;

/// The longest inbound body read (platforms send a few KiB).
const MAX_INBOUND_BYTES: usize = 64 * 1024;

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A request not believed: counted, `401`, nothing changed.
fn rejected(platform: &'static str, why: Rejected) -> Response {
    crate::metrics::inbound_rejected(platform, why.label());
    tracing::info!(platform, reason = why.label(), "an inbound request was refused");
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": format!("not verified: {why}")})),
    )
        .into_response()
}

/// The configured secret of a platform's account, if it takes requests.
fn inbound_secret(
    state: &AppState,
    account: impl Fn(&crate::config::AdaptersConfig) -> &Option<crate::config::AccountConfig>,
) -> Option<crate::config::Secret> {
    account(&state.config.borrow().adapters)
        .as_ref()
        .and_then(|a| a.inbound_secret.clone())
}

async fn body(request: axum::body::Body) -> Option<Vec<u8>> {
    axum::body::to_bytes(request, MAX_INBOUND_BYTES)
        .await
        .ok()
        .map(|b| b.to_vec())
}

/// A command's words: `status [run]`, `help`.
async fn answer(state: &AppState, words: &str) -> Answer {
    let mut parts = words.split_whitespace();
    match parts.next() {
        Some("status") => {
            let run = parts.next();
            match StatusReport::read(&state.store, run).await {
                Ok(report) => Answer::Status(report),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the status for a command");
                    Answer::Text("herald could not read its store just now; try again in a moment".to_owned())
                }
            }
        }
        None | Some("help") => Answer::Text(HELP.to_owned()),
        Some(other) => Answer::Text(format!("unknown command {other:?}\n{HELP}")),
    }
}

/// `POST /v1/inbound/slack`: a slash command (`/herald status [run]`).
/// Slack's calls to the bot: a slash command or interaction, form-encoded, verified before anything is read.
#[utoipa::path(post, path = "/v1/inbound/slack", tag = "bot",
    request_body(content = String, description = "a slash command or interaction, form-encoded", content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The bot's answer, in Slack's format", body = Object),
        (status = 400, description = "Not a payload the bot understands", body = crate::ingest::shapes::ErrorBody),
        (status = 401, description = "Not signed by Slack (or stale)", body = crate::ingest::shapes::ErrorBody),
        (status = 404, description = "Slack is not configured", body = crate::ingest::shapes::ErrorBody)))]
pub async fn slack(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let (parts, raw) = request.into_parts();
    let Some(secret) = inbound_secret(&state, |a| &a.slack) else {
        return rejected("slack", Rejected::NotConfigured);
    };
    let Some(bytes) = body(raw).await else {
        return rejected("slack", Rejected::Malformed);
    };
    let now = chrono::Utc::now().timestamp();
    if let Err(why) = verify::slack(
        secret.expose(),
        header(&parts.headers, "x-slack-request-timestamp"),
        header(&parts.headers, "x-slack-signature"),
        &bytes,
        now,
    ) {
        return rejected("slack", why);
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(&bytes).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    // Interactivity (a button) comes as one `payload` field of JSON.
    if let Some(payload) = field("payload") {
        let Ok(payload) = serde_json::from_str::<Value>(payload) else {
            return rejected("slack", Rejected::Malformed);
        };
        slack_action(&state, &payload).await;
        return (StatusCode::OK, "").into_response();
    }
    if field("command").is_none() {
        return rejected("slack", Rejected::Malformed);
    }
    ok_json(slack_command(&state, field("text").unwrap_or("")).await)
}

/// The answer to a Slack slash command with these words, as Slack takes
/// it (HTTP response or Socket Mode acknowledgement).
async fn slack_command(state: &AppState, words: &str) -> Value {
    answers::slack(&answer(state, words).await)
}

/// `POST /v1/inbound/discord`: an interaction (PING, the `/herald` command).
/// Discord's calls to the bot: an interaction, verified before anything is read.
#[utoipa::path(post, path = "/v1/inbound/discord", tag = "bot",
    request_body(content = Object, description = "an interaction", content_type = "application/json"),
    responses((status = 200, description = "The bot's answer, in Discord's format", body = Object),
        (status = 400, description = "Not a payload the bot understands", body = crate::ingest::shapes::ErrorBody),
        (status = 401, description = "Not signed by Discord (or stale)", body = crate::ingest::shapes::ErrorBody),
        (status = 404, description = "Discord is not configured", body = crate::ingest::shapes::ErrorBody)))]
pub async fn discord(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let (parts, raw) = request.into_parts();
    let Some(key) = inbound_secret(&state, |a| &a.discord) else {
        return rejected("discord", Rejected::NotConfigured);
    };
    let Some(bytes) = body(raw).await else {
        return rejected("discord", Rejected::Malformed);
    };
    if let Err(why) = verify::discord(
        key.expose(),
        header(&parts.headers, "x-signature-timestamp"),
        header(&parts.headers, "x-signature-ed25519"),
        &bytes,
    ) {
        return rejected("discord", why);
    }
    let Ok(interaction) = serde_json::from_slice::<Value>(&bytes) else {
        return rejected("discord", Rejected::Malformed);
    };
    match discord_interaction(&state, &interaction).await {
        Some(answer) => ok_json(answer),
        None => rejected("discord", Rejected::Malformed),
    }
}

/// The answer to a Discord interaction, from the interactions endpoint or
/// the Gateway; `None` when it is not one herald can read.
async fn discord_interaction(state: &AppState, interaction: &Value) -> Option<Value> {
    match interaction["type"].as_i64()? {
        // PING
        1 => Some(json!({"type": 1})),
        // APPLICATION_COMMAND: `/herald <subcommand> [run]`
        2 => {
            let sub = &interaction["data"]["options"][0];
            let mut words = sub["name"].as_str().unwrap_or("help").to_owned();
            if let Some(run) = sub["options"]
                .as_array()
                .and_then(|o| o.iter().find(|o| o["name"] == "run"))
                .and_then(|o| o["value"].as_str())
            {
                words.push(' ');
                words.push_str(run);
            }
            Some(answers::discord(&answer(state, &words).await))
        }
        // MESSAGE_COMPONENT: a button herald put on a message.
        3 => discord_component(state, interaction).await,
        _ => Some(answers::discord(&Answer::Text(
            "herald does not handle this interaction yet".to_owned(),
        ))),
    }
}

/// `POST /v1/inbound/telegram`: a webhook update (`/status [run]`, a
/// press of Acknowledge), answered in the response with a Bot API method.
/// Telegram's calls to the bot: an update, verified before anything is read.
#[utoipa::path(post, path = "/v1/inbound/telegram", tag = "bot",
    request_body(content = Object, description = "an update", content_type = "application/json"),
    responses((status = 200, description = "The bot's answer, in Telegram's format", body = Object),
        (status = 400, description = "Not a payload the bot understands", body = crate::ingest::shapes::ErrorBody),
        (status = 401, description = "Not signed by Telegram (or stale)", body = crate::ingest::shapes::ErrorBody),
        (status = 404, description = "Telegram is not configured", body = crate::ingest::shapes::ErrorBody)))]
pub async fn telegram(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let (parts, raw) = request.into_parts();
    let Some(secret) = inbound_secret(&state, |a| &a.telegram) else {
        return rejected("telegram", Rejected::NotConfigured);
    };
    if let Err(why) = verify::telegram(
        secret.expose(),
        header(&parts.headers, "x-telegram-bot-api-secret-token"),
    ) {
        return rejected("telegram", why);
    }
    let Some(update) = body(raw)
        .await
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return rejected("telegram", Rejected::Malformed);
    };
    ok_json(telegram_update(&state, &update).await)
}

/// The bot's answer to one Telegram update, pushed (webhook) or pulled
/// (`telegram_poll.rs`): a Bot API method as JSON, or `{}` when the update
/// asks for nothing (an edit, a join, another bot's command…).
pub async fn telegram_update(state: &AppState, update: &Value) -> Value {
    if update["callback_query"].is_object() {
        return telegram_callback(state, &update["callback_query"]).await;
    }
    let message = &update["message"];
    let (Some(chat), Some(text)) = (message["chat"]["id"].as_i64(), message["text"].as_str()) else {
        return json!({});
    };
    let mut words = text.split_whitespace();
    // `/status@herald_bot run-1` in groups.
    let command = words
        .next()
        .and_then(|c| c.strip_prefix('/'))
        .map(|c| c.split('@').next().unwrap_or(c));
    let answer = match command {
        Some("status") => answer(state, &format!("status {}", words.collect::<Vec<_>>().join(" "))).await,
        Some("help" | "start") => answer(state, "help").await,
        _ => return json!({}),
    };
    let reply = answers::telegram(&answer, chat);
    // In a chat herald delivers to, the answer is that channel's actor's
    // to send, within the chat's limits (a reply beside it could take the
    // slot it counted on); elsewhere (a private chat with the bot) it goes
    // at once.
    let Some(channel) = telegram_channel(state, chat) else {
        return reply;
    };
    match state.store.queue_answer(&channel, &reply).await {
        Ok(()) => {
            state.waker.wake(&channel);
            json!({})
        }
        Err(e) => {
            tracing::warn!(error = %e, channel, "could not queue the bot's answer; answering at once");
            reply
        }
    }
}

/// The configured Telegram channel of chat `chat`, if any.
fn telegram_channel(state: &AppState, chat: i64) -> Option<String> {
    let id = chat.to_string();
    state
        .config
        .borrow()
        .channels
        .values()
        .find(|c| {
            c.platform == Platform::Telegram
                && matches!(&c.target, crate::config::ChannelTarget::Chat { id: i, .. } if *i == id)
        })
        .map(|c| c.name.clone())
}

/// A verified press that changed nothing: counted, logged, and answered
/// in the platform's way by the caller.
fn press_refused(platform: &'static str, why: &PressError) {
    crate::metrics::inbound_rejected(platform, why.label());
    match why {
        PressError::Store(_) | PressError::Commit(_) => {
            tracing::warn!(platform, error = %why, "a press of Acknowledge was not recorded");
        }
        _ => tracing::info!(
            platform,
            reason = why.label(),
            "a press of Acknowledge was refused"
        ),
    }
}

fn ok_json(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

/// Slack `block_actions`: herald's Acknowledge button. The pressed message
/// is replaced through the payload's `response_url`; the request itself is
/// answered with nothing (an empty 200, a bare acknowledgement).
async fn slack_action(state: &AppState, payload: &Value) {
    let action = payload["actions"].as_array().and_then(|a| {
        a.iter()
            .find(|a| a["action_id"] == herald_slack::render::ACKNOWLEDGE_ACTION)
    });
    let (Some(action), Some(chat), Some(message)) = (
        action,
        payload["channel"]["id"].as_str(),
        payload["container"]["message_ts"]
            .as_str()
            .or(payload["message"]["ts"].as_str()),
    ) else {
        // Another app's action, or a payload herald does not read.
        return;
    };
    let user = &payload["user"];
    let press = Press {
        platform: Platform::Slack,
        token: action["value"].as_str().unwrap_or_default().to_owned(),
        chat: chat.to_owned(),
        message: message.to_owned(),
        person: person_name(&[&user["name"], &user["username"], &user["id"]], "slack"),
        person_id: user["id"].as_str().unwrap_or_default().to_owned(),
    };
    match acknowledge::acknowledge(state, &press).await {
        Ok(done) => {
            let url = payload["response_url"].as_str().unwrap_or_default();
            let api_url = state
                .config
                .borrow()
                .adapters
                .slack
                .as_ref()
                .and_then(|a| a.api_url.clone());
            if let Err(e) = answers::slack_replace(url, api_url.as_deref(), &done.message).await {
                tracing::warn!(error = %e, "the acknowledged Slack message could not be replaced");
            }
        }
        Err(why) => press_refused("slack", &why),
    }
}

/// Discord `MESSAGE_COMPONENT`: answered with `UPDATE_MESSAGE`, the pressed
/// message edited in place; `None` when the press names no message.
async fn discord_component(state: &AppState, interaction: &Value) -> Option<Value> {
    let user = if interaction["member"]["user"].is_object() {
        &interaction["member"]["user"]
    } else {
        &interaction["user"]
    };
    let (Some(token), Some(chat), Some(message)) = (
        interaction["data"]["custom_id"].as_str(),
        interaction["channel_id"]
            .as_str()
            .or(interaction["message"]["channel_id"].as_str()),
        interaction["message"]["id"].as_str(),
    ) else {
        return None;
    };
    let press = Press {
        platform: Platform::Discord,
        token: token.to_owned(),
        chat: chat.to_owned(),
        message: message.to_owned(),
        person: person_name(&[&user["global_name"], &user["username"], &user["id"]], "discord"),
        person_id: user["id"].as_str().unwrap_or_default().to_owned(),
    };
    Some(match acknowledge::acknowledge(state, &press).await {
        Ok(done) => match herald_discord::render::update_interaction(&done.message) {
            Ok(update) => update,
            Err(e) => {
                tracing::warn!(error = %e, "the acknowledged Discord message could not be rendered");
                answers::discord(&Answer::Text(format!("acknowledged by {}", done.by.by)))
            }
        },
        Err(why) => {
            press_refused("discord", &why);
            answers::discord(&Answer::Text(why.to_string()))
        }
    })
}

/// Telegram `callback_query`: answered in the webhook response with
/// `answerCallbackQuery`, a notice to the person who pressed saying who
/// acknowledged and when (or why nothing changed). The pressed message is
/// not edited here: an edit counts against the chat's one-per-second and
/// twenty-per-minute limits, which only the channel's actor spends (an
/// edit answered in a webhook response that Telegram refuses for a limit
/// is lost unseen). The actor edits it, as it edits the task's other
/// notifications and its live message.
async fn telegram_callback(state: &AppState, query: &Value) -> Value {
    let message = &query["message"];
    let (Some(token), Some(chat), Some(message_id), Some(query_id)) = (
        query["data"].as_str(),
        message["chat"]["id"].as_i64(),
        message["message_id"].as_i64(),
        query["id"].as_str(),
    ) else {
        return json!({});
    };
    let from = &query["from"];
    let username = from["username"].as_str().map(|u| Value::String(format!("@{u}")));
    let press = Press {
        platform: Platform::Telegram,
        token: token.to_owned(),
        chat: chat.to_string(),
        message: message_id.to_string(),
        person: person_name(
            &[
                username.as_ref().unwrap_or(&Value::Null),
                &from["first_name"],
                &from["id"],
            ],
            "telegram",
        ),
        person_id: from["id"].as_i64().map(|i| i.to_string()).unwrap_or_default(),
    };
    match acknowledge::acknowledge(state, &press).await {
        Ok(done) => json!({
            "method": "answerCallbackQuery",
            "callback_query_id": query_id,
            "text": herald_messaging::truncate_chars(
                &format!("acknowledged by {}", crate::render::acknowledgement_words(&done.by)),
                200,
            ),
        }),
        Err(why) => {
            press_refused("telegram", &why);
            json!({
                "method": "answerCallbackQuery",
                "callback_query_id": query_id,
                "text": why.to_string(),
            })
        }
    }
}

/// The first of the platform's names for a person that is set, with the
/// platform: `ana (slack)`.
fn person_name(candidates: &[&Value], platform: &str) -> String {
    let name = candidates
        .iter()
        .find_map(|v| match v {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "someone".to_owned());
    format!("{} ({platform})", herald_messaging::truncate_chars(&name, 64))
}
