//! The bot in chat (SPEC §3.5): the endpoints each platform calls —
//! `POST /v1/inbound/slack` (slash commands), `/v1/inbound/discord`
//! (interactions), `/v1/inbound/telegram` (webhook updates). Each request
//! is verified (`verify.rs`) before anything in it is parsed; an
//! unverified, stale or malformed one is a `401`, changes nothing and is
//! counted in `herald_inbound_rejected_total{platform,reason}`. Commands
//! are read from the store (`status.rs`) and answered in the platform's
//! format (`answers.rs`); no command stores anything.

mod answers;
mod status;
pub mod verify;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::ingest::AppState;
use answers::Answer;
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
    if field("command").is_none() {
        return rejected("slack", Rejected::Malformed);
    }
    let answer = answer(&state, field("text").unwrap_or("")).await;
    (StatusCode::OK, axum::Json(answers::slack(&answer))).into_response()
}

/// `POST /v1/inbound/discord`: an interaction (PING, the `/herald` command).
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
    match interaction["type"].as_i64() {
        // PING
        Some(1) => (StatusCode::OK, axum::Json(json!({"type": 1}))).into_response(),
        // APPLICATION_COMMAND: `/herald <subcommand> [run]`
        Some(2) => {
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
            let answer = answer(&state, &words).await;
            (StatusCode::OK, axum::Json(answers::discord(&answer))).into_response()
        }
        Some(_) => {
            let answer = Answer::Text("herald does not handle this interaction yet".to_owned());
            (StatusCode::OK, axum::Json(answers::discord(&answer))).into_response()
        }
        None => rejected("discord", Rejected::Malformed),
    }
}

/// `POST /v1/inbound/telegram`: a webhook update (`/status [run]`),
/// answered with a `sendMessage` in the response.
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
    let message = &update["message"];
    let (Some(chat), Some(text)) = (message["chat"]["id"].as_i64(), message["text"].as_str()) else {
        // Not a message herald reads (an edit, a join…): taken, so
        // Telegram does not send it again.
        return (StatusCode::OK, axum::Json(json!({}))).into_response();
    };
    let mut words = text.split_whitespace();
    // `/status@herald_bot run-1` in groups.
    let command = words
        .next()
        .and_then(|c| c.strip_prefix('/'))
        .map(|c| c.split('@').next().unwrap_or(c));
    let answer = match command {
        Some("status") => answer(&state, &format!("status {}", words.collect::<Vec<_>>().join(" "))).await,
        Some("help" | "start") => answer(&state, "help").await,
        _ => return (StatusCode::OK, axum::Json(json!({}))).into_response(),
    };
    (StatusCode::OK, axum::Json(answers::telegram(&answer, chat))).into_response()
}
