//! Slack without a public URL (SPEC §3.5): with an `app_token`, herald
//! opens Socket Mode connections to the emulator (`apps.connections.open`,
//! one-use tickets), answers `/herald status` in the acknowledgement
//! within Slack's 3 s, takes a press of Acknowledge (journaled once even
//! when Slack sends the envelope again; the message replaced through its
//! `response_url`), and reconnects when Slack refreshes its connections.
//! The app token never shows in the log.

mod common;
mod emulators;

use std::time::Duration;

use common::{Herald, event};
use emulators::slack::SlackEmulator;
use emulators::slack_socket::SocketMode;
use serde_json::{Value, json};

const APP_TOKEN: &str = "xapp-1-A1-secret-app-token";

fn config(slack: &SlackEmulator) -> String {
    format!(
        "[[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n\
         [adapters.slack]\ntoken = \"xoxb-t\"\napi_url = \"{}\"\napp_token = \"{APP_TOKEN}\"\n\n\
         [channels.s]\nadapter = \"slack\"\nid = \"C1\"\n\n\
         [defaults]\nchannels = [\"s\"]\n\n\
         [delivery]\nretry_schedule = [\"200ms\", \"500ms\"]\nprogress_min_interval = \"200ms\"\n",
        slack.api_url()
    )
}

fn command(text: &str) -> Value {
    json!({
        "token": "legacy", "team_id": "T1", "team_domain": "ops", "channel_id": "C1",
        "channel_name": "ops", "user_id": "U1", "user_name": "ana", "command": "/herald",
        "text": text, "api_app_id": "A1", "is_enterprise_install": "false",
        "response_url": "https://hooks.slack.com/commands/T1/1/x", "trigger_id": "1.2.3",
    })
}

fn press(slack: &SlackEmulator, ts: &str, token: &str) -> Value {
    common::slack_press_payload(&slack.response_url("C1", ts), ts, token, "ana")
}

/// The Acknowledge button's token on a Slack message.
fn button(message: &Value) -> Option<String> {
    message["blocks"].as_array()?.iter().find_map(|b| {
        (b["type"] == "actions").then(|| b["elements"][0]["value"].as_str().map(str::to_owned))?
    })
}

/// Push a slash command and wait for its acknowledgement's payload.
async fn ask(h: &Herald, socket: &SocketMode, words: &str) -> Value {
    let id = socket
        .push("slash_commands", command(words))
        .expect("an open connection");
    h.wait_for(
        "the command's acknowledgement",
        Duration::from_secs(10),
        || async { socket.ack(&id).map(|a| a.payload) },
    )
    .await
}

#[tokio::test]
async fn over_socket_mode_commands_are_answered_and_presses_taken_once() {
    let slack = SlackEmulator::start("xoxb-t", &["C1"]).await;
    let socket = slack.enable_socket_mode(APP_TOKEN).await;
    let mut h = Herald::start(&config(&slack));
    let (status, body) = h
        .post_events(&json!([
            event(
                "run-1",
                "w",
                "broken",
                1,
                "failed",
                json!({"reason": "exit <2> & *boom*"})
            ),
            event("run-1", "w", "fine", 1, "running", json!({})),
        ]))
        .await;
    assert_eq!(status, 202, "{body}");
    h.wait_for("both connections", Duration::from_secs(20), || async {
        (socket.connections() == 2).then_some(())
    })
    .await;

    // `/herald status run-1`: answered in the acknowledgement, in Block
    // Kit (validated by the emulator), ephemeral, naming the failed task
    // with its reason escaped.
    let answer = ask(&h, &socket, "status run-1").await;
    assert_eq!(answer["response_type"], "ephemeral", "{answer}");
    let text = answer.to_string();
    assert!(text.contains("w · broken"), "{answer}");
    assert!(text.contains("&lt;2&gt; &amp;"), "{answer}");
    assert!(!text.contains("exit <2>"), "{answer}");
    let help = ask(&h, &socket, "help").await;
    assert!(help.to_string().contains("status [run]"), "{help}");

    // A press of Acknowledge on the failure notification.
    let notification = h
        .wait_for(
            "the notification with its button",
            Duration::from_secs(15),
            || async { slack.messages("C1").into_iter().find(|m| button(m).is_some()) },
        )
        .await;
    let ts = notification["ts"].as_str().expect("a ts").to_owned();
    let token = button(&notification).expect("a button");
    let pressed = socket
        .push("interactive", press(&slack, &ts, &token))
        .expect("an open connection");
    let ack = h
        .wait_for("the press acknowledged", Duration::from_secs(10), || async {
            socket.ack(&pressed)
        })
        .await;
    assert!(ack.payload.is_null(), "{:?}", ack.payload);
    let replaced = h
        .wait_for(
            "the pressed message replaced",
            Duration::from_secs(10),
            || async {
                slack
                    .messages("C1")
                    .into_iter()
                    .find(|m| m["ts"] == ts.as_str() && button(m).is_none())
            },
        )
        .await;
    let replaced_text = replaced.to_string();
    assert!(
        replaced_text.contains("acknowledged by") && replaced_text.contains("ana (slack)"),
        "{replaced}"
    );
    // Slack sends the envelope again (its acknowledgement lost): still one
    // acknowledgement in the journal.
    socket.push_again(&pressed).expect("sent again");
    h.wait_for("the resend acknowledged", Duration::from_secs(10), || async {
        socket.ack(&pressed)
    })
    .await;
    let acknowledged: Vec<Value> = h
        .journal("run-1", "w", "broken")
        .await
        .into_iter()
        .filter(|e| e["event"]["state"] == "acknowledged")
        .collect();
    assert_eq!(acknowledged.len(), 1, "{acknowledged:?}");
    assert_eq!(acknowledged[0]["event"]["by"], "ana (slack)", "{acknowledged:?}");

    // Slack refreshes its connections: herald opens new ones and answers
    // on them.
    let accepted = socket.accepted();
    socket.refresh();
    h.wait_for(
        "new connections after the refresh",
        Duration::from_secs(30),
        || async { (socket.accepted() >= accepted + 2 && socket.connections() == 2).then_some(()) },
    )
    .await;
    let again = ask(&h, &socket, "status").await;
    assert!(again.to_string().contains("w · broken"), "{again}");

    // Everything within Slack's rules: every envelope acknowledged within
    // 3 s, no payload where none is accepted, no refused connection, no
    // 429 on any method, nothing inside a retry-after.
    assert!(socket.violations().is_empty(), "{:?}", socket.violations());
    assert!(socket.acks().iter().all(|a| a.after < Duration::from_secs(3)));
    assert_eq!(slack.rate_limited(), 0, "{:?}", slack.early());
    assert!(slack.early().is_empty(), "{:?}", slack.early());
    assert!(slack.calls("apps.connections.open") >= 4);
    // A restart opens fresh connections with fresh tickets.
    h.kill9();
    h.wait_for(
        "the dead process's connections closed",
        Duration::from_secs(10),
        || async { (socket.connections() == 0).then_some(()) },
    )
    .await;
    h.spawn();
    h.wait_for("herald connected again", Duration::from_secs(30), || async {
        (socket.connections() == 2).then_some(())
    })
    .await;
    let after_restart = ask(&h, &socket, "status").await;
    assert!(
        after_restart.to_string().contains("w · broken"),
        "{after_restart}"
    );
    assert!(socket.violations().is_empty(), "{:?}", socket.violations());
    let log = h.log.lock().unwrap().join("\n");
    assert!(!log.contains(APP_TOKEN), "the app token is in the log");
    assert!(!log.contains("secret-app-token"), "the app token is in the log");
}
