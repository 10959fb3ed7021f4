//! Discord without a public URL (SPEC §3.5): with no `public_key` (no
//! interactions endpoint), herald connects to the emulator's Gateway
//! through serenity, answers `/herald status` and a press of Acknowledge
//! through the interaction callback within Discord's 3 s, keeps
//! heartbeating, resumes when the Gateway asks it to reconnect, and
//! connects again after a `kill -9`. The bot token never shows in the log.

mod common;
mod emulators;

use std::time::Duration;

use common::{Herald, event};
use emulators::discord::DiscordEmulator;
use serde_json::{Value, json};

const TOKEN: &str = "gateway-bot-token-secret";
const CHANNEL: &str = "900000000000000001";

fn config(discord: &DiscordEmulator) -> String {
    format!(
        "[[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n\
         [adapters.discord]\ntoken = \"{TOKEN}\"\napi_url = \"{}\"\n\n\
         [channels.d]\nadapter = \"discord\"\nid = \"{CHANNEL}\"\n\n\
         [defaults]\nchannels = [\"d\"]\n\n\
         [delivery]\nretry_schedule = [\"200ms\", \"500ms\"]\nprogress_min_interval = \"200ms\"\n",
        discord.api_url()
    )
}

/// Dispatch an interaction and wait for herald's accepted answer.
async fn answered(h: &Herald, discord: &DiscordEmulator, interaction: Value) -> Value {
    let id = discord.gateway.dispatch(interaction);
    h.wait_for("the interaction answered", Duration::from_secs(10), || async {
        discord.gateway.answer(&id).map(|c| c.body)
    })
    .await
}

async fn acknowledged(h: &Herald) -> Vec<Value> {
    h.journal("run-1", "w", "broken")
        .await
        .into_iter()
        .filter(|e| e["event"]["state"] == "acknowledged")
        .collect()
}

#[tokio::test]
async fn over_the_gateway_commands_and_presses_are_answered_within_discords_rules() {
    let discord = DiscordEmulator::start(TOKEN, &[CHANNEL]).await;
    discord.gateway.set_heartbeat_interval(Duration::from_secs(1));
    let mut h = Herald::start(&config(&discord));
    let (status, body) = h
        .post_events(&json!([
            event(
                "run-1",
                "w",
                "broken",
                1,
                "failed",
                json!({"reason": "exit 2 @everyone <@123>"})
            ),
            event("run-1", "w", "fine", 1, "running", json!({})),
        ]))
        .await;
    assert_eq!(status, 202, "{body}");
    h.wait_for("a ready Gateway session", Duration::from_secs(20), || async {
        (discord.gateway.ready_sessions() == 1).then_some(())
    })
    .await;

    // `/herald status run-1`: an ephemeral reply naming the failed task,
    // pinging no one.
    let answer = answered(
        &h,
        &discord,
        discord.command_interaction(CHANNEL, "status", Some("run-1"), "Ana"),
    )
    .await;
    assert_eq!(answer["type"], 4, "{answer}");
    assert_eq!(answer["data"]["flags"], 64, "{answer}");
    assert_eq!(answer["data"]["allowed_mentions"]["parse"], json!([]), "{answer}");
    assert!(answer.to_string().contains("w · broken"), "{answer}");

    // A press of Acknowledge: the message updated in place (names Ana, no
    // button), one `acknowledged` event.
    let notification = h
        .wait_for("the failure notification", Duration::from_secs(15), || async {
            discord.messages(CHANNEL).into_iter().find(|m| {
                m["components"][0]["components"][0]["custom_id"].is_string()
                    && m.to_string().contains("w · broken")
            })
        })
        .await;
    let message_id = notification["id"].as_str().expect("an id").to_owned();
    let custom_id = notification["components"][0]["components"][0]["custom_id"]
        .as_str()
        .expect("a token")
        .to_owned();
    let update = answered(
        &h,
        &discord,
        discord.press_interaction(CHANNEL, &message_id, &custom_id, "Ana"),
    )
    .await;
    assert_eq!(update["type"], 7, "{update}");
    let pressed = discord
        .messages(CHANNEL)
        .into_iter()
        .find(|m| m["id"] == message_id.as_str())
        .expect("the pressed message");
    let text = pressed.to_string();
    // (Discord markdown escapes the parentheses.)
    assert!(
        text.contains("acknowledged by") && text.contains("Ana \\\\(discord\\\\)"),
        "{pressed}"
    );
    assert_eq!(pressed["components"], json!([]), "{pressed}");
    let acks = acknowledged(&h).await;
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0]["event"]["by"], "Ana (discord)");

    // Heartbeats keep the connection (1 s interval, 3 s watched); asked to
    // reconnect, herald resumes the same session and keeps answering.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let connections = discord.gateway.connections();
    discord.gateway.ask_to_reconnect();
    h.wait_for("resumed on a new connection", Duration::from_secs(20), || async {
        (discord.gateway.connections() > connections && discord.gateway.ready_sessions() == 1).then_some(())
    })
    .await;
    let help = answered(
        &h,
        &discord,
        discord.command_interaction(CHANNEL, "help", None, "Bob"),
    )
    .await;
    assert!(help.to_string().contains("/herald help"), "{help}");

    // After kill -9 the new process identifies again (past Discord's one
    // identify per 5 s; herald cannot know across a kill when the last one
    // was) and answers; the second press changes nothing.
    h.kill9();
    h.wait_for(
        "the killed process's session closed",
        Duration::from_secs(10),
        || async { (discord.gateway.ready_sessions() == 0).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = discord.gateway.connections();
    h.spawn();
    h.wait_for(
        "a ready session after the restart",
        Duration::from_secs(20),
        || async {
            (discord.gateway.connections() > before && discord.gateway.ready_sessions() == 1).then_some(())
        },
    )
    .await;
    let again = answered(
        &h,
        &discord,
        discord.press_interaction(CHANNEL, &message_id, &custom_id, "Bob"),
    )
    .await;
    assert!(again.to_string().contains("Ana"), "{again}");
    assert_eq!(acknowledged(&h).await.len(), 1);

    let violations = discord.gateway.violations();
    assert!(violations.is_empty(), "{violations:?}");
    assert!(
        discord
            .gateway
            .callbacks()
            .iter()
            .all(|c| c.after < Duration::from_secs(3))
    );
    assert_eq!(discord.gateway.auth_failures(), 0);
    assert_eq!(discord.rate_limited(), 0, "{:?}", discord.early());
    assert!(discord.early().is_empty(), "{:?}", discord.early());
    let log = h.log.lock().unwrap().join("\n");
    assert!(!log.contains(TOKEN), "the bot token is in the log");
}
