//! The bot in chat (SPEC §3.5) through the real binary, sent each
//! platform's real request shape, signed as the platform signs it: Slack's
//! `/herald status <run>` (v0 HMAC-SHA256 over `v0:<ts>:<body>`), Discord's
//! interactions (Ed25519 over timestamp + body: PING and the `/herald
//! status` command), Telegram's webhook update (`X-Telegram-Bot-Api-Secret-
//! Token`). Verified requests are answered from the store, naming the
//! failed tasks, escaped for the platform; forged, stale or unconfigured
//! ones are 401 and counted; no command stores an event.

mod common;

use common::signing::{
    SLACK_SECRET, TELEGRAM_SECRET, discord_headers, discord_public_key, hex, slack_signature,
};
use common::{Herald, event};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};

fn config() -> String {
    format!(
        "[[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n\
         [adapters.slack]\ntoken = \"xoxb-t\"\nsigning_secret = \"{SLACK_SECRET}\"\n\n\
         [adapters.discord]\ntoken = \"dtoken\"\npublic_key = \"{}\"\n\n\
         [adapters.telegram]\ntoken = \"1:tg\"\nwebhook_secret = \"{TELEGRAM_SECRET}\"\n\n\
         [channels.main]\nadapter = \"web\"\n\n[defaults]\nchannels = [\"main\"]\n",
        discord_public_key()
    )
}

/// Running and failed tasks of run `nightly`, one failure's reason trying
/// to ping everyone and inject markup.
async fn seed(h: &Herald) {
    let (status, body) = h
        .post_events(&json!([
            event("nightly", "builder", "compile", 1, "running", json!({})),
            event(
                "nightly",
                "tester",
                "unit",
                1,
                "failed",
                json!({"reason": "<!channel> @everyone *boom* <b>x</b>"})
            ),
            event(
                "nightly",
                "linter",
                "clippy",
                1,
                "failed",
                json!({"reason": "2 warnings"})
            ),
            event("other", "w", "t", 1, "failed", json!({"reason": "elsewhere"})),
        ]))
        .await;
    assert_eq!(status, 202, "{body}");
}

async fn post(h: &Herald, path: &str, headers: &[(&str, String)], body: String, form: bool) -> (u16, Value) {
    h.post_inbound(path, headers, body, form).await
}

async fn rejected(h: &Herald, platform: &str, reason: &str) -> i64 {
    h.inbound_rejected(platform, reason).await
}

#[tokio::test]
async fn slack_status_is_answered_when_signed_and_fresh_only() {
    let h = Herald::start(&config());
    seed(&h).await;
    let events = h.metric("herald_events_ingested_total").await;
    let body =
        "token=x&team_id=T1&channel_id=C1&user_id=U1&user_name=ana&command=%2Fherald&text=status+nightly\
                &response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1&trigger_id=1.2.3"
            .to_owned();
    let now = chrono::Utc::now().timestamp().to_string();
    let headers = vec![
        ("x-slack-request-timestamp", now.clone()),
        ("x-slack-signature", slack_signature(&now, &body)),
    ];
    let (status, answer) = post(&h, "/v1/inbound/slack", &headers, body.clone(), true).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["response_type"], "ephemeral");
    let text = answer["blocks"][1]["text"]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("tester · unit — failed") && text.contains("linter · clippy — failed"),
        "{text}"
    );
    assert!(text.contains("failed 2") && text.contains("running 1"), "{text}");
    assert!(!text.contains("elsewhere"), "another run: {text}");
    assert!(
        text.contains("&lt;!channel&gt;") && !text.contains("<!channel>"),
        "escaped for Slack: {text}"
    );
    assert_eq!(answer["blocks"][0]["text"]["text"], "herald status — run nightly");

    // A wrong signature, a ten-minute-old timestamp, no signature: 401.
    let bad = vec![
        ("x-slack-request-timestamp", now.clone()),
        ("x-slack-signature", slack_signature(&now, "text=other")),
    ];
    assert_eq!(
        post(&h, "/v1/inbound/slack", &bad, body.clone(), true).await.0,
        401
    );
    let old = (chrono::Utc::now().timestamp() - 600).to_string();
    let stale = vec![
        ("x-slack-request-timestamp", old.clone()),
        ("x-slack-signature", slack_signature(&old, &body)),
    ];
    assert_eq!(
        post(&h, "/v1/inbound/slack", &stale, body.clone(), true).await.0,
        401
    );
    assert_eq!(
        post(&h, "/v1/inbound/slack", &[], body.clone(), true).await.0,
        401
    );
    assert_eq!(rejected(&h, "slack", "bad_signature").await, 1);
    assert_eq!(rejected(&h, "slack", "stale").await, 1);
    assert_eq!(rejected(&h, "slack", "missing").await, 1);
    // Help, and nothing stored by any command.
    let help = "command=%2Fherald&text=help".to_owned();
    let headers = vec![
        ("x-slack-request-timestamp", now.clone()),
        ("x-slack-signature", slack_signature(&now, &help)),
    ];
    let (status, answer) = post(&h, "/v1/inbound/slack", &headers, help, true).await;
    assert_eq!(status, 200);
    assert!(
        answer["text"]
            .as_str()
            .unwrap_or_default()
            .contains("/herald status"),
        "{answer}"
    );
    assert_eq!(h.metric("herald_events_ingested_total").await, events);
}

#[tokio::test]
async fn discord_pings_pong_and_the_status_command_names_failures_without_pinging() {
    let h = Herald::start(&config());
    seed(&h).await;
    let ping = json!({"id": "1", "application_id": "9", "type": 1, "token": "t", "version": 1}).to_string();
    let (status, answer) = post(
        &h,
        "/v1/inbound/discord",
        &discord_headers(&ping),
        ping.clone(),
        false,
    )
    .await;
    assert_eq!((status, answer.clone()), (200, json!({"type": 1})));
    let command = json!({
        "id": "2", "application_id": "9", "type": 2, "token": "t", "version": 1,
        "channel_id": "9001", "guild_id": "1",
        "member": {"user": {"id": "77", "username": "ana"}},
        "data": {"id": "5", "name": "herald", "type": 1,
                 "options": [{"name": "status", "type": 1, "options": [{"name": "run", "type": 3, "value": "nightly"}]}]}
    })
    .to_string();
    let (status, answer) = post(
        &h,
        "/v1/inbound/discord",
        &discord_headers(&command),
        command.clone(),
        false,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["type"], 4);
    assert_eq!(answer["data"]["flags"], 64, "ephemeral");
    assert_eq!(answer["data"]["allowed_mentions"]["parse"], json!([]));
    let content = answer["data"]["content"].as_str().unwrap_or_default();
    assert!(
        content.contains("tester · unit") && content.contains("linter · clippy"),
        "{content}"
    );
    assert!(!content.contains("*boom*"), "markdown escaped: {content}");
    // Forged: another key's signature, or the body changed after signing.
    let forged_key = SigningKey::from_bytes(&[7u8; 32]);
    let ts = chrono::Utc::now().timestamp().to_string();
    let forged = vec![
        ("x-signature-timestamp", ts.clone()),
        (
            "x-signature-ed25519",
            hex(&forged_key.sign(format!("{ts}{ping}").as_bytes()).to_bytes()),
        ),
    ];
    assert_eq!(
        post(&h, "/v1/inbound/discord", &forged, ping.clone(), false)
            .await
            .0,
        401
    );
    let mut tampered = discord_headers(&ping);
    tampered[0].1 = (chrono::Utc::now().timestamp() + 1).to_string();
    assert_eq!(
        post(&h, "/v1/inbound/discord", &tampered, ping, false).await.0,
        401
    );
    assert_eq!(rejected(&h, "discord", "bad_signature").await, 2);
}

#[tokio::test]
async fn telegram_status_is_answered_in_the_chat_with_the_secret_header_only() {
    let h = Herald::start(&config());
    seed(&h).await;
    let update = json!({
        "update_id": 10,
        "message": {"message_id": 5, "date": 1_700_000_000, "text": "/status@herald_bot nightly",
                    "chat": {"id": -100_123, "type": "supergroup", "title": "ops"},
                    "from": {"id": 42, "is_bot": false, "first_name": "Ana"},
                    "entities": [{"type": "bot_command", "offset": 0, "length": 18}]}
    })
    .to_string();
    let secret = vec![("x-telegram-bot-api-secret-token", TELEGRAM_SECRET.to_owned())];
    let (status, answer) = post(&h, "/v1/inbound/telegram", &secret, update.clone(), false).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["method"], "sendMessage");
    assert_eq!(answer["chat_id"], -100_123);
    assert_eq!(answer["parse_mode"], "HTML");
    let text = answer["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("tester · unit") && text.contains("linter · clippy"),
        "{text}"
    );
    assert!(
        text.contains("&lt;b&gt;x&lt;/b&gt;") && !text.contains("<b>x</b>"),
        "HTML escaped: {text}"
    );
    let wrong = vec![("x-telegram-bot-api-secret-token", "guess".to_owned())];
    assert_eq!(
        post(&h, "/v1/inbound/telegram", &wrong, update.clone(), false)
            .await
            .0,
        401
    );
    assert_eq!(post(&h, "/v1/inbound/telegram", &[], update, false).await.0, 401);
    // A message that is no command is taken and ignored.
    let chatter = json!({"update_id": 11, "message": {"message_id": 6, "date": 1, "text": "hello",
                         "chat": {"id": 5, "type": "private"}}})
    .to_string();
    let (status, answer) = post(&h, "/v1/inbound/telegram", &secret, chatter, false).await;
    assert_eq!((status, answer), (200, json!({})));
}

#[tokio::test]
async fn without_a_configured_secret_every_inbound_request_is_refused() {
    let h = Herald::start(
        "[[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n[channels.main]\nadapter = \"web\"\n\n\
         [defaults]\nchannels = [\"main\"]\n",
    );
    for path in ["/v1/inbound/slack", "/v1/inbound/discord", "/v1/inbound/telegram"] {
        assert_eq!(post(&h, path, &[], "{}".to_owned(), false).await.0, 401, "{path}");
    }
    assert_eq!(rejected(&h, "telegram", "not_configured").await, 1);
}
