//! The answer to a command in each platform's own format, escaped as
//! every message herald sends (SPEC §6.7): Slack blocks (ephemeral),
//! Discord an interaction response of type 4 (ephemeral, no mention
//! parsed), Telegram HTML sent back in the webhook response.

use serde_json::{Value, json};

use super::status::StatusReport;

/// What a command answers: a status report or a plain sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `/herald status [run]`.
    Status(StatusReport),
    /// Help, or why a command was not understood.
    Text(String),
}

impl Answer {
    fn lines(&self) -> (String, Vec<String>) {
        match self {
            Answer::Status(report) => {
                let mut lines = vec![report.counts_line()];
                let attention = report.attention_lines();
                if !attention.is_empty() {
                    lines.push("Needs attention:".to_owned());
                    lines.extend(attention.into_iter().map(|l| format!("• {l}")));
                }
                (report.headline(), lines)
            }
            Answer::Text(text) => ("herald".to_owned(), vec![text.clone()]),
        }
    }
}

/// Slack: an ephemeral response with blocks and a text fallback.
pub fn slack(answer: &Answer) -> Value {
    let (headline, lines) = answer.lines();
    let escape = herald_slack::render::escape;
    let body: Vec<String> = lines.iter().map(|l| escape(l)).collect();
    json!({
        "response_type": "ephemeral",
        "text": format!("{}\n{}", escape(&headline), body.join("\n")),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": herald_messaging::truncate_chars(&headline, 150)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": herald_messaging::truncate_chars(&body.join("\n"), 3000)}},
        ],
    })
}

/// Discord: `CHANNEL_MESSAGE_WITH_SOURCE`, ephemeral, no mention parsed.
pub fn discord(answer: &Answer) -> Value {
    let (headline, lines) = answer.lines();
    let escape = herald_discord::render::escape;
    let body: Vec<String> = lines.iter().map(|l| escape(l)).collect();
    let content = format!("**{}**\n{}", escape(&headline), body.join("\n"));
    json!({
        "type": 4,
        "data": {
            "content": herald_messaging::truncate_chars(&content, 2000),
            "flags": 64,
            "allowed_mentions": {"parse": []},
        },
    })
}

/// Telegram: a `sendMessage` to the chat, returned as the webhook response.
pub fn telegram(answer: &Answer, chat_id: i64) -> Value {
    let (headline, lines) = answer.lines();
    let escape = herald_telegram::render::escape;
    let body: Vec<String> = lines.iter().map(|l| escape(l)).collect();
    let text = format!("<b>{}</b>\n{}", escape(&headline), body.join("\n"));
    json!({
        "method": "sendMessage",
        "chat_id": chat_id,
        "text": text,
        "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": true},
    })
}

/// Why an acknowledged Slack message could not be replaced.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// The payload's `response_url` is not Slack's (nor the configured API
    /// host's): herald does not POST to it.
    #[error("the response_url is not Slack's")]
    NotSlack,
    /// The request failed or Slack refused it.
    #[error("Slack did not take the replacement: {0}")]
    Http(String),
}

/// Where Slack's `response_url`s point.
const SLACK_HOOKS: &str = "https://hooks.slack.com/";

/// Replace the pressed Slack message through the payload's `response_url`
/// (`replace_original`): Slack's way to edit the message an action came
/// from, outside the Web API's rate tiers. Only Slack's own hooks host is
/// called — or the configured `api_url`'s origin (a proxy, an emulator).
pub async fn slack_replace(
    response_url: &str,
    api_url: Option<&str>,
    msg: &herald_messaging::Outbound,
) -> Result<(), ReplaceError> {
    let origin = |u: &str| reqwest::Url::parse(u).ok().map(|u| u.origin());
    let ours = response_url.starts_with(SLACK_HOOKS)
        || api_url.is_some_and(|api| origin(api).is_some_and(|o| Some(o) == origin(response_url)));
    if !ours {
        return Err(ReplaceError::NotSlack);
    }
    let body = json!({
        "replace_original": true,
        "text": herald_slack::render::fallback(msg),
        "blocks": herald_slack::render::blocks(msg),
    });
    let answer = reqwest::Client::new()
        .post(response_url)
        .timeout(std::time::Duration::from_secs(2))
        .json(&body)
        .send()
        .await
        .map_err(|e| ReplaceError::Http(e.without_url().to_string()))?;
    if answer.status().is_success() {
        Ok(())
    } else {
        Err(ReplaceError::Http(format!("HTTP {}", answer.status().as_u16())))
    }
}
