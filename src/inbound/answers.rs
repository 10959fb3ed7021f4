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
