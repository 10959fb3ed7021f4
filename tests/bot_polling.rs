//! The bot without a public URL (SPEC §3.5): with no `webhook_secret`,
//! herald pulls its Telegram updates by long polling (`getUpdates`) from
//! the emulator, answers `/status` in the chat and a press of Acknowledge
//! (journaled, the notification edited by the channel's actor), and after a
//! `kill -9` and a restart — with Telegram sending every update again —
//! answers none of them twice.

mod common;
mod emulators;

use std::time::Duration;

use common::{Herald, event};
use emulators::telegram::{ChatKind, TelegramEmulator};
use serde_json::{Value, json};

const CHAT: i64 = 777;

fn config(telegram: &TelegramEmulator) -> String {
    format!(
        "[[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n\
         [adapters.telegram]\ntoken = \"1:tg\"\napi_url = \"{}\"\n\n\
         [channels.t]\nadapter = \"telegram\"\nid = \"{CHAT}\"\n\n\
         [defaults]\nchannels = [\"t\"]\n\n\
         [delivery]\nretry_schedule = [\"200ms\", \"500ms\"]\nprogress_min_interval = \"200ms\"\n",
        telegram.api_url()
    )
}

fn command(text: &str) -> Value {
    json!({"message": {
        "message_id": 1, "date": 0, "text": text,
        "chat": {"id": CHAT, "type": "private", "first_name": "Ada"},
        "from": {"id": 321, "is_bot": false, "first_name": "Ada", "username": "ada"},
    }})
}

fn press(message_id: i64, token: &str) -> Value {
    json!({"callback_query": {
        "id": "cq-1", "chat_instance": "-1", "data": token,
        "from": {"id": 321, "is_bot": false, "first_name": "Ada", "username": "ada"},
        "message": {"message_id": message_id, "date": 0, "chat": {"id": CHAT, "type": "private"}},
    }})
}

/// What herald sent to the chat with `sendMessage` that contains `text`.
fn sent(telegram: &TelegramEmulator, text: &str) -> usize {
    telegram
        .seen()
        .iter()
        .filter(|s| s.method == "sendmessage" && s.status == 200)
        .filter(|s| s.args["text"].as_str().is_some_and(|t| t.contains(text)))
        .count()
}

fn answered_callbacks(telegram: &TelegramEmulator) -> Vec<Value> {
    telegram
        .seen()
        .into_iter()
        .filter(|s| s.method == "answercallbackquery" && s.status == 200)
        .map(|s| s.args)
        .collect()
}

#[tokio::test]
async fn without_a_public_url_telegram_updates_are_pulled_and_answered_once() {
    let telegram = TelegramEmulator::start("1:tg").await;
    telegram.chat(CHAT, ChatKind::Private);
    let mut h = Herald::start(&config(&telegram));
    let (status, body) = h
        .post_events(&json!([event(
            "r",
            "w",
            "broken",
            1,
            "failed",
            json!({"reason": "exit 2"})
        ),]))
        .await;
    assert_eq!(status, 202, "{body}");
    let notification = h
        .wait_for(
            "the notification with its button",
            Duration::from_secs(15),
            || async {
                telegram
                    .messages(CHAT)
                    .into_iter()
                    .find(|m| !m["reply_markup"].is_null())
            },
        )
        .await;
    // The answer to /status in a chat herald delivers to is sent by the
    // channel's actor, inside the chat's one-message-a-second limit.
    telegram.push_update(command("/status"));
    h.wait_for("the status answer", Duration::from_secs(40), || async {
        (sent(&telegram, "w · broken") >= 1 && sent(&telegram, "Needs attention") == 1).then_some(())
    })
    .await;

    let token = notification["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        .as_str()
        .expect("a token")
        .to_owned();
    let message_id = notification["message_id"].as_i64().expect("an id");
    telegram.push_update(press(message_id, &token));
    h.wait_for(
        "the press answered and the notification edited",
        Duration::from_secs(40),
        || async {
            let answered = answered_callbacks(&telegram).len() == 1;
            let edited = telegram
                .messages(CHAT)
                .into_iter()
                .any(|m| m["message_id"] == message_id && m["reply_markup"].is_null());
            (answered && edited).then_some(())
        },
    )
    .await;
    let answers = answered_callbacks(&telegram);
    assert!(
        answers[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("@ada (telegram)")),
        "{answers:?}"
    );
    let acks: Vec<Value> = h
        .journal("r", "w", "broken")
        .await
        .into_iter()
        .filter(|e| e["event"]["state"] == "acknowledged")
        .collect();
    assert_eq!(acks.len(), 1, "{acks:?}");

    // kill -9, and Telegram sends every update again: herald answers only
    // what is new.
    h.kill9();
    telegram.keep_confirmed(true);
    h.spawn();
    telegram.push_update(command("/help"));
    h.wait_for(
        "the answer to the new command",
        Duration::from_secs(40),
        || async { (sent(&telegram, "status [run]") >= 1).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sent(&telegram, "Needs attention"), 1, "/status answered twice");
    assert_eq!(answered_callbacks(&telegram).len(), 1, "a press answered twice");
    assert_eq!(telegram.rate_limited(), 0, "{:?}", telegram.early());
    assert!(telegram.early().is_empty(), "{:?}", telegram.early());
}

#[tokio::test]
async fn a_bot_whose_webhook_is_set_is_not_pulled_in_a_loop() {
    let telegram = TelegramEmulator::start("1:tg").await;
    telegram.chat(CHAT, ChatKind::Private);
    telegram.set_webhook(true);
    let h = Herald::start(&config(&telegram));
    // Telegram refuses getUpdates while a webhook is set: herald backs off
    // (1 s, 2 s, 4 s …) instead of hammering the API, and still delivers.
    let (status, _) = h
        .post_events(&json!([event("r", "w", "t1", 1, "completed", json!({}))]))
        .await;
    assert_eq!(status, 202);
    h.wait_for("the notification", Duration::from_secs(15), || async {
        (telegram.messages(CHAT).len() == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let conflicts = telegram.conflicts();
    assert!(
        (1..=5).contains(&conflicts),
        "{conflicts} refused polls in about 5 s"
    );
    // Once the webhook is gone, updates are pulled.
    telegram.set_webhook(false);
    telegram.push_update(command("/help"));
    h.wait_for("the answer", Duration::from_secs(40), || async {
        (sent(&telegram, "status [run]") >= 1).then_some(())
    })
    .await;
}
