//! Acknowledge (SPEC §3.5) through the real binary and the real platform
//! crates against the Discord, Slack and Telegram emulators: failure and
//! attention notifications carry the button (and endings that need no one
//! do not); a press, signed as each platform signs it, journals one
//! `acknowledged` event naming the first person, edits the pressed message
//! the platform's way (Discord `UPDATE_MESSAGE`, Slack `response_url`,
//! Telegram `editMessageText` in the webhook answer) to say who and when,
//! names them on the live messages, and stops the task's escalation; a
//! second press changes nothing; a token pressed on another message, or
//! one herald never made, changes nothing and is counted.

mod common;
mod emulators;

use std::time::Duration;

use common::signing::{
    SLACK_SECRET, TELEGRAM_SECRET, discord_headers, discord_public_key, slack_headers, telegram_headers,
};
use common::{Herald, event};
use emulators::discord::DiscordEmulator;
use emulators::pagerduty::PagerDutyEmulator;
use emulators::slack::SlackEmulator;
use emulators::telegram::{ChatKind, TelegramEmulator};
use serde_json::{Value, json};

const CHAT: i64 = 777;
const ROUTING_KEY: &str = "R0UTINGKEY0123456789abcdef012345";

struct Platforms {
    discord: DiscordEmulator,
    slack: SlackEmulator,
    telegram: TelegramEmulator,
}

impl Platforms {
    async fn start() -> Platforms {
        let telegram = TelegramEmulator::start("1:tg").await;
        telegram.chat(CHAT, ChatKind::Private);
        Platforms {
            discord: DiscordEmulator::start("dtoken", &["9001"]).await,
            slack: SlackEmulator::start("xoxb-t", &["C1"]).await,
            telegram,
        }
    }

    /// Every task to all three platforms (live messages and notifications),
    /// with the bot's secrets; `more` adds sections.
    fn config(&self, more: &str) -> String {
        format!(
            "[[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n\
             [adapters.discord]\ntoken = \"dtoken\"\napi_url = \"{}\"\npublic_key = \"{}\"\n\n\
             [adapters.slack]\ntoken = \"xoxb-t\"\napi_url = \"{}\"\nsigning_secret = \"{SLACK_SECRET}\"\n\n\
             [adapters.telegram]\ntoken = \"1:tg\"\napi_url = \"{}\"\nwebhook_secret = \"{TELEGRAM_SECRET}\"\n\n\
             [channels.d]\nadapter = \"discord\"\nid = \"9001\"\n\n\
             [channels.s]\nadapter = \"slack\"\nid = \"C1\"\n\n\
             [channels.t]\nadapter = \"telegram\"\nid = \"{CHAT}\"\n\n\
             [defaults]\nchannels = [\"d\", \"s\", \"t\"]\n\n\
             [delivery]\nretry_schedule = [\"200ms\", \"500ms\"]\nprogress_min_interval = \"200ms\"\n\n{more}",
            self.discord.api_url(),
            discord_public_key(),
            self.slack.api_url(),
            self.telegram.api_url(),
        )
    }

    /// Discord's notifications about `task` (their nonce is a receipt id),
    /// oldest first.
    fn discord_notifications(&self, task: &str) -> Vec<Value> {
        self.discord
            .messages("9001")
            .into_iter()
            .filter(|m| is_receipt(m) && m.to_string().contains(&format!("w · {task}")))
            .collect()
    }

    /// The first of them.
    fn discord_notification(&self, task: &str) -> Option<Value> {
        self.discord_notifications(task).into_iter().next()
    }

    fn slack_messages(&self, task: &str) -> Vec<Value> {
        self.slack
            .messages("C1")
            .into_iter()
            .filter(|m| m.to_string().contains(&format!("w · {task}")))
            .collect()
    }

    fn telegram_messages(&self, task: &str) -> Vec<Value> {
        self.telegram
            .messages(CHAT)
            .into_iter()
            .filter(|m| {
                m["text"]
                    .as_str()
                    .is_some_and(|t| t.contains(&format!("w · {task}")))
            })
            .collect()
    }
}

/// Whether a Discord message is a receipt's notification (its nonce is the
/// receipt id, `hr…`; a live message's first post is keyed `hp…`).
fn is_receipt(message: &Value) -> bool {
    message["nonce"].as_str().is_some_and(|n| n.starts_with("hr"))
}

/// Whether a message names Ana as the one who acknowledged (each platform
/// escapes the words its own way).
fn names_ana(message: &Value) -> bool {
    let text = message.to_string();
    text.contains("acknowledged by") && text.contains("Ana")
}

/// The Acknowledge button's token on a Discord message.
fn discord_button(message: &Value) -> Option<String> {
    Some(
        message["components"][0]["components"][0]["custom_id"]
            .as_str()?
            .to_owned(),
    )
}

/// The Acknowledge button's token on a Slack message.
fn slack_button(message: &Value) -> Option<String> {
    message["blocks"].as_array()?.iter().find_map(|b| {
        (b["type"] == "actions").then(|| b["elements"][0]["value"].as_str().map(str::to_owned))?
    })
}

/// The Acknowledge button's token on a Telegram message.
fn telegram_button(message: &Value) -> Option<String> {
    Some(
        message["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
            .as_str()?
            .to_owned(),
    )
}

/// A Discord member pressing a component of `message`.
fn discord_press(message: &Value, token: &str, user: &str) -> String {
    json!({
        "type": 3, "id": "1300000000000000001", "application_id": "1200000000000000001",
        "token": "interaction-token", "version": 1, "guild_id": "1100000000000000001",
        "channel_id": "9001",
        "member": {"user": {"id": "555", "username": user.to_lowercase(), "global_name": user}},
        "message": message,
        "data": {"custom_id": token, "component_type": 2},
    })
    .to_string()
}

/// Slack's `block_actions` payload for a press on message `ts`.
fn slack_press(slack: &SlackEmulator, ts: &str, token: &str, user: &str) -> String {
    let payload = common::slack_press_payload(&slack.response_url("C1", ts), ts, token, user);
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
}

/// Telegram's update for a press on message `message_id`.
fn telegram_press(message_id: i64, token: &str, user: &str) -> String {
    json!({
        "update_id": 1,
        "callback_query": {
            "id": "4382bfdwdsb323b2d9", "chat_instance": "-1",
            "from": {"id": 321, "is_bot": false, "first_name": "Carol", "username": user},
            "message": {"message_id": message_id, "date": 0, "chat": {"id": CHAT, "type": "private"}},
            "data": token,
        },
    })
    .to_string()
}

async fn acknowledged_events(h: &Herald, task: &str) -> Vec<Value> {
    h.journal("r", "w", task)
        .await
        .into_iter()
        .map(|e| e["event"].clone())
        .filter(|e| e["state"] == "acknowledged")
        .collect()
}

#[tokio::test]
async fn acknowledge_is_journaled_once_and_edits_the_pressed_message_on_every_platform() {
    let p = Platforms::start().await;
    let h = Herald::start(&p.config(""));
    let (status, body) = h
        .post_events(&json!([
            event("r", "w", "broken", 1, "running", json!({})),
            event("r", "w", "broken", 2, "failed", json!({"reason": "exit 2"})),
            event("r", "w", "fine", 1, "completed", json!({"summary": "ok"})),
        ]))
        .await;
    assert_eq!(status, 202, "{body}");
    let (discord, slack, telegram) = h
        .wait_for(
            "a notification with a button on every platform",
            Duration::from_secs(15),
            || async {
                let d = p
                    .discord_notification("broken")
                    .filter(|m| discord_button(m).is_some())?;
                let s = p
                    .slack_messages("broken")
                    .into_iter()
                    .find(|m| slack_button(m).is_some())?;
                let t = p
                    .telegram_messages("broken")
                    .into_iter()
                    .find(|m| telegram_button(m).is_some())?;
                Some((d, s, t))
            },
        )
        .await;
    // A task that ended well asks for no one.
    h.wait_for(
        "the completed task's notifications",
        Duration::from_secs(15),
        || async {
            let d = p.discord_notification("fine")?;
            let s = p.slack_messages("fine");
            let t = p.telegram_messages("fine");
            (s.len() == 2 && t.len() == 2).then_some((d, s, t))
        },
    )
    .await;
    assert!(discord_button(&p.discord_notification("fine").expect("shown")).is_none());
    assert!(p.slack_messages("fine").iter().all(|m| slack_button(m).is_none()));
    assert!(
        p.telegram_messages("fine")
            .iter()
            .all(|m| telegram_button(m).is_none())
    );
    assert_eq!(
        p.discord
            .messages("9001")
            .iter()
            .filter(|m| discord_button(m).is_some())
            .count(),
        1,
        "only the failure's notification carries a button"
    );

    // Discord: the press is answered with UPDATE_MESSAGE, applied as
    // Discord applies it: who and when, no button.
    let token = discord_button(&discord).expect("a button");
    assert!(token.starts_with("ack:") && token.len() <= 64, "{token}");
    let press = discord_press(&discord, &token, "Ana");
    let (status, answer) = h
        .post_inbound(
            "/v1/inbound/discord",
            &discord_headers(&press),
            press.clone(),
            false,
        )
        .await;
    assert_eq!((status, answer["type"].as_i64()), (200, Some(7)), "{answer}");
    assert_eq!(answer["data"]["allowed_mentions"]["parse"], json!([]), "{answer}");
    let id = discord["id"].as_str().expect("an id");
    p.discord
        .apply_interaction_response("9001", id, &answer)
        .expect("Discord takes the update");
    let pressed = p.discord_notification("broken").expect("still there");
    assert!(names_ana(&pressed), "{pressed}");
    assert_eq!(pressed["components"], json!([]), "the button is gone: {pressed}");
    let acks = acknowledged_events(&h, "broken").await;
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0]["by"], "Ana (discord)");
    assert_eq!(acks[0]["extra"]["platform"], "discord");
    assert_eq!(acks[0]["extra"]["user_id"], "555");

    // Slack: the first person stays named; the message is replaced through
    // its response_url, its button gone.
    let ts = slack["ts"].as_str().expect("a ts");
    let press = slack_press(&p.slack, ts, &slack_button(&slack).expect("a button"), "bob");
    let (status, _) = h
        .post_inbound("/v1/inbound/slack", &slack_headers(&press), press, true)
        .await;
    assert_eq!(status, 200);
    let replaced = p
        .slack
        .messages("C1")
        .into_iter()
        .find(|m| m["ts"] == ts)
        .expect("still there");
    assert!(names_ana(&replaced), "{replaced}");
    assert!(slack_button(&replaced).is_none(), "{replaced}");

    // Telegram: answered with a notice to the presser naming the first
    // person (an edit there would spend the chat's budget outside its
    // actor); the channel's actor then edits the notification.
    let message_id = telegram["message_id"].as_i64().expect("an id");
    let press = telegram_press(
        message_id,
        &telegram_button(&telegram).expect("a button"),
        "carol",
    );
    let (status, answer) = h
        .post_inbound("/v1/inbound/telegram", &telegram_headers(), press, false)
        .await;
    assert_eq!(
        (status, answer["method"].as_str()),
        (200, Some("answerCallbackQuery")),
        "{answer}"
    );
    assert!(
        answer["text"]
            .as_str()
            .is_some_and(|t| t.contains("Ana (discord) at")),
        "{answer}"
    );
    let (applied, result) = p.telegram.webhook_response(&answer).await;
    assert_eq!(applied, 200, "{result}");
    let edited = h
        .wait_for(
            "the Telegram notification edited",
            Duration::from_secs(15),
            || async {
                p.telegram
                    .messages(CHAT)
                    .into_iter()
                    .find(|m| m["message_id"] == message_id && m["reply_markup"].is_null())
            },
        )
        .await;
    assert!(names_ana(&edited), "{edited}");

    // A second press changes nothing: the same answer, one event.
    let press = discord_press(&pressed, &token, "Dan");
    let (status, again) = h
        .post_inbound("/v1/inbound/discord", &discord_headers(&press), press, false)
        .await;
    assert_eq!((status, again["type"].as_i64()), (200, Some(7)));
    assert!(names_ana(&again), "{again}");
    assert_eq!(acknowledged_events(&h, "broken").await.len(), 1);

    // The live messages name who acknowledged.
    h.wait_for(
        "live messages name the person",
        Duration::from_secs(15),
        || async {
            let live_discord = p
                .discord
                .messages("9001")
                .into_iter()
                .filter(|m| !is_receipt(m) && m.to_string().contains("w · broken"))
                .any(|m| names_ana(&m));
            let live_slack = p
                .slack_messages("broken")
                .iter()
                .filter(|m| m["ts"] != ts)
                .any(names_ana);
            let live_telegram = p
                .telegram_messages("broken")
                .iter()
                .filter(|m| m["message_id"] != message_id)
                .any(names_ana);
            (live_discord && live_slack && live_telegram).then_some(())
        },
    )
    .await;

    // A token pressed on another message, or one herald never made: refused.
    let forged = telegram_press(message_id, &token, "mallory");
    let (status, answer) = h
        .post_inbound("/v1/inbound/telegram", &telegram_headers(), forged, false)
        .await;
    assert_eq!(
        (status, answer["method"].as_str()),
        (200, Some("answerCallbackQuery")),
        "{answer}"
    );
    assert_eq!(h.inbound_rejected("telegram", "button_elsewhere").await, 1);
    let unknown = telegram_press(message_id, "ack:hr00000000000000000000", "mallory");
    let (status, answer) = h
        .post_inbound("/v1/inbound/telegram", &telegram_headers(), unknown, false)
        .await;
    assert_eq!(
        (status, answer["method"].as_str()),
        (200, Some("answerCallbackQuery")),
        "{answer}"
    );
    assert_eq!(h.inbound_rejected("telegram", "unknown_button").await, 1);
    let press = discord_press(&pressed, "ack:", "Eve");
    let (status, answer) = h
        .post_inbound("/v1/inbound/discord", &discord_headers(&press), press, false)
        .await;
    assert_eq!((status, answer["type"].as_i64()), (200, Some(4)), "{answer}");
    assert_eq!(answer["data"]["flags"], 64, "told only to the presser: {answer}");
    assert_eq!(acknowledged_events(&h, "broken").await.len(), 1);
    assert!(acknowledged_events(&h, "fine").await.is_empty());
    // A forged signature is still a 401 before anything is read.
    let press = discord_press(&pressed, &token, "Eve");
    let mut headers = discord_headers(&press);
    headers[1].1 = "00".repeat(64);
    assert_eq!(
        h.post_inbound("/v1/inbound/discord", &headers, press, false)
            .await
            .0,
        401
    );
    assert!(p.discord.early().is_empty() && p.slack.early().is_empty() && p.telegram.early().is_empty());
    assert_eq!(
        p.discord.rate_limited() + p.slack.rate_limited() + p.telegram.rate_limited(),
        0
    );
}

#[tokio::test]
async fn an_acknowledged_task_is_not_escalated() {
    let p = Platforms::start().await;
    let pd = PagerDutyEmulator::start().await;
    let h = Herald::start(&p.config(&format!(
        "[channels.oncall]\nadapter = \"pagerduty\"\nrouting_key = \"{ROUTING_KEY}\"\napi_url = \"{}\"\n\n\
         [contracts]\nheartbeat = \"2s\"\n\n\
         [[escalations]]\nchannels = [\"oncall\"]\nafter_stale = \"5s\"\n",
        pd.api_url()
    )));
    let (status, body) = h
        .post_events(&json!([
            event("r", "w", "seen", 1, "running", json!({})),
            event("r", "w", "unseen", 1, "running", json!({})),
        ]))
        .await;
    assert_eq!(status, 202, "{body}");
    // Both go silent: herald marks them stale and posts an attention
    // notification with a button.
    let notice = h
        .wait_for("the stale notice of `seen`", Duration::from_secs(15), || async {
            p.discord_notifications("seen")
                .into_iter()
                .find(|m| discord_button(m).is_some())
        })
        .await;
    assert!(notice.to_string().contains("stale"), "{notice}");
    let press = discord_press(&notice, &discord_button(&notice).expect("a button"), "Ana");
    let (status, answer) = h
        .post_inbound("/v1/inbound/discord", &discord_headers(&press), press, false)
        .await;
    assert_eq!((status, answer["type"].as_i64()), (200, Some(7)), "{answer}");
    // The other one is escalated after 5 s of silence; the acknowledged one
    // never is.
    let key = |task: &str| format!("herald/r/w/{task}");
    h.wait_for("`unseen` paged", Duration::from_secs(20), || async {
        pd.events()
            .iter()
            .any(|e| e["dedup_key"] == key("unseen").as_str())
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let paged: Vec<Value> = pd
        .events()
        .into_iter()
        .filter(|e| e["dedup_key"] == key("seen").as_str())
        .collect();
    assert!(paged.is_empty(), "an acknowledged task was paged: {paged:?}");
    let journal = h.journal("r", "w", "seen").await;
    let states: Vec<&str> = journal
        .iter()
        .filter_map(|e| e["event"]["state"].as_str())
        .collect();
    assert!(
        states.contains(&"stale") && states.contains(&"acknowledged"),
        "{states:?}"
    );
    assert!(!states.contains(&"escalated"), "{states:?}");
}

#[tokio::test]
async fn acknowledging_a_paged_task_acknowledges_its_incident_until_it_resolves() {
    let p = Platforms::start().await;
    let pd = PagerDutyEmulator::start().await;
    let h = Herald::start(&p.config(&format!(
        "[channels.oncall]\nadapter = \"pagerduty\"\nrouting_key = \"{ROUTING_KEY}\"\napi_url = \"{}\"\n\n\
         [contracts]\nheartbeat = \"2s\"\n\n\
         [[escalations]]\nchannels = [\"oncall\"]\nafter_stale = \"1s\"\n",
        pd.api_url()
    )));
    let (status, body) = h
        .post_events(&json!([event("r", "w", "paged", 1, "running", json!({}))]))
        .await;
    assert_eq!(status, 202, "{body}");
    let key = "herald/r/w/paged";
    let alert = |pd: &PagerDutyEmulator| pd.alerts().get(key).cloned();
    h.wait_for("the silent task paged", Duration::from_secs(20), || async {
        alert(&pd).filter(|a| a.status == "triggered")
    })
    .await;
    // Someone presses Acknowledge on the stale notice in Discord: the
    // incident is acknowledged (same dedup key), not resolved.
    let notice = h
        .wait_for("the stale notice", Duration::from_secs(15), || async {
            p.discord_notifications("paged")
                .into_iter()
                .find(|m| discord_button(m).is_some())
        })
        .await;
    let press = discord_press(&notice, &discord_button(&notice).expect("a button"), "Ana");
    let (status, answer) = h
        .post_inbound("/v1/inbound/discord", &discord_headers(&press), press, false)
        .await;
    assert_eq!((status, answer["type"].as_i64()), (200, Some(7)), "{answer}");
    let acknowledged = h
        .wait_for("the incident acknowledged", Duration::from_secs(15), || async {
            alert(&pd).filter(|a| a.status == "acknowledged")
        })
        .await;
    assert_eq!((acknowledged.triggers, acknowledged.acknowledges), (1, 1));
    let sent: Vec<Value> = pd
        .events()
        .into_iter()
        .filter(|e| e["event_action"] == "acknowledge")
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["dedup_key"], key);
    // The worker finishes: the incident is resolved.
    let (status, _) = h
        .post_events(&json!([event("r", "w", "paged", 2, "completed", json!({}))]))
        .await;
    assert_eq!(status, 202);
    let resolved = h
        .wait_for("the incident resolved", Duration::from_secs(15), || async {
            alert(&pd).filter(|a| a.status == "resolved")
        })
        .await;
    assert_eq!(
        (resolved.triggers, resolved.acknowledges, resolved.resolves),
        (1, 1, 1)
    );
    assert_eq!(pd.over_limit(), 0);
}

#[tokio::test]
async fn a_command_in_a_chat_herald_delivers_to_is_answered_by_that_channels_actor() {
    let p = Platforms::start().await;
    let h = Herald::start(&p.config(""));
    let (status, body) = h
        .post_events(&json!([event(
            "r",
            "w",
            "broken",
            1,
            "failed",
            json!({"reason": "exit 2"})
        )]))
        .await;
    assert_eq!(status, 202, "{body}");
    h.wait_for("the notification", Duration::from_secs(15), || async {
        (p.telegram_messages("broken").len() == 2).then_some(())
    })
    .await;
    // At once, while the chat's one-message-a-second window is spent: the
    // answer waits for the actor instead of going in the webhook response.
    let update = json!({"update_id": 7, "message": {
        "message_id": 1, "date": 0, "text": "/status",
        "chat": {"id": CHAT, "type": "private"}, "from": {"id": 321, "is_bot": false, "first_name": "Ada"},
    }})
    .to_string();
    let (status, answer) = h
        .post_inbound("/v1/inbound/telegram", &telegram_headers(), update, false)
        .await;
    assert_eq!((status, answer), (200, json!({})));
    h.wait_for("the answer in the chat", Duration::from_secs(15), || async {
        p.telegram
            .messages(CHAT)
            .into_iter()
            .any(|m| m["text"].as_str().is_some_and(|t| t.contains("Needs attention")))
            .then_some(())
    })
    .await;
    assert_eq!(p.telegram.rate_limited(), 0);
    assert!(p.telegram.early().is_empty(), "{:?}", p.telegram.early());
}
