//! Threads (SPEC §5.4, §6.12): with `thread = true` a channel shows one
//! line per task — its live message — and the task's notifications are
//! replies under it: a Discord thread started from the live message, a
//! Slack `thread_ts` reply (broadcast to the channel for failures), a
//! Telegram reply. A notification whose task's live message is not posted
//! yet waits for it; a deleted parent or thread is replaced; and `kill -9`
//! during threaded delivery duplicates nothing on Discord and Slack.

mod common;
mod emulators;

use std::time::{Duration, Instant};

use common::{Herald, event};
use emulators::chaos::Chaos;
use emulators::discord::{DiscordEmulator, Fault as DiscordFault};
use emulators::slack::{Fault as SlackFault, SlackEmulator};
use emulators::tally::{self, Shown};
use emulators::telegram::{ChatKind, TelegramEmulator};
use serde_json::{Value, json};

const CHAT: i64 = 4500;
/// Task ids no platform's escaping changes (Discord escapes `-`).
const TASK_LEN: usize = 6;

fn config(
    discord: &DiscordEmulator,
    slack: &SlackEmulator,
    telegram: &TelegramEmulator,
    extra: &str,
) -> String {
    format!(
        "[[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n\
         [adapters.discord]\ntoken = \"dtoken\"\napi_url = \"{}\"\ntimeout = \"1s\"\n\n\
         [adapters.slack]\ntoken = \"xoxb-t\"\napi_url = \"{}\"\ntimeout = \"1s\"\n\n\
         [adapters.telegram]\ntoken = \"1:tg\"\napi_url = \"{}\"\ntimeout = \"1s\"\n\n\
         [channels.d]\nadapter = \"discord\"\nid = \"9001\"\nthread = true\nmention_on_failure = [\"<@111>\"]\n\n\
         [channels.s]\nadapter = \"slack\"\nid = \"C1\"\nthread = true\nmention_on_failure = [\"<@U024BE7LH>\"]\n\n\
         [channels.t]\nadapter = \"telegram\"\nid = \"{CHAT}\"\nthread = true\nmention_on_failure = [\"tg://user?id=4242\"]\n\n\
         [defaults]\nchannels = [\"d\", \"s\", \"t\"]\n\n\
         [delivery]\nretry_schedule = [\"200ms\", \"500ms\", \"1s\"]\nprogress_min_interval = \"200ms\"\n{extra}",
        discord.api_url(),
        slack.api_url(),
        telegram.api_url(),
    )
}

/// The task a message is about (`tsk…`), if it names one.
fn task_of(text: &str) -> Option<String> {
    let start = text.find("tsk")?;
    text.get(start..start + TASK_LEN).map(str::to_owned)
}

/// Discord: the channel's own messages (live ones), and per thread (by
/// the task its starter message names) the messages in it.
fn discord_view(discord: &DiscordEmulator) -> (Shown, Vec<(String, Shown)>) {
    let top: Vec<(String, bool)> = discord
        .messages("9001")
        .iter()
        .map(tally::discord_message)
        .collect();
    let top_shown = Shown::count(&top, "tsk", TASK_LEN);
    let mut threads = Vec::new();
    for (thread, _) in discord.threads("9001") {
        let starter = discord
            .messages("9001")
            .into_iter()
            .find(|m| m["id"] == thread.as_str())
            .map(|m| m.to_string())
            .unwrap_or_default();
        let inside: Vec<(String, bool)> = discord
            .messages(&thread)
            .iter()
            .map(tally::discord_message)
            .collect();
        threads.push((
            task_of(&starter).unwrap_or_default(),
            Shown::count(&inside, "tsk", TASK_LEN),
        ));
    }
    (top_shown, threads)
}

/// Slack: the channel's parents (messages that are not replies), and per
/// parent (by task) its replies.
fn slack_view(slack: &SlackEmulator) -> (Shown, Vec<(String, Vec<Value>)>) {
    let parents: Vec<Value> = slack
        .messages("C1")
        .into_iter()
        .filter(|m| m["thread_ts"].is_null() || m["thread_ts"] == m["ts"])
        .collect();
    let top: Vec<(String, bool)> = parents.iter().map(tally::slack_message).collect();
    let replies = parents
        .iter()
        .map(|p| {
            let task = task_of(&p.to_string()).unwrap_or_default();
            (task, slack.replies("C1", p["ts"].as_str().unwrap_or("")))
        })
        .collect();
    (Shown::count(&top, "tsk", TASK_LEN), replies)
}

#[tokio::test]
async fn notifications_are_replies_under_each_tasks_one_live_message_on_all_three_platforms() {
    let discord = DiscordEmulator::start("dtoken", &["9001"]).await;
    let slack = SlackEmulator::start("xoxb-t", &["C1"]).await;
    let telegram = TelegramEmulator::start("1:tg").await;
    telegram.chat(CHAT, ChatKind::Group);
    let h = Herald::start(&config(&discord, &slack, &telegram, ""));
    // `tsk001` runs then completes, `tsk002` runs then fails, `tsk003`
    // fails at its first event (its reply must wait for its live message).
    let (status, body) = h
        .post_events(&json!([
            event("r", "w", "tsk001", 1, "running", json!({})),
            event("r", "w", "tsk002", 1, "running", json!({})),
            event("r", "w", "tsk003", 1, "failed", json!({"reason": "exit 3"})),
        ]))
        .await;
    assert_eq!(status, 202, "{body}");
    h.wait_for("the live messages", Duration::from_secs(20), || async {
        (discord.messages("9001").len() >= 2 && slack.messages("C1").len() >= 2).then_some(())
    })
    .await;
    let (status, body) = h
        .post_events(&json!([
            event("r", "w", "tsk001", 2, "completed", json!({"summary": "all good"})),
            event(
                "r",
                "w",
                "tsk002",
                2,
                "failed",
                json!({"reason": "exit 2 @everyone <@999> <!here> @admin"})
            ),
        ]))
        .await;
    assert_eq!(status, 202, "{body}");
    let tasks = ["tsk001", "tsk002", "tsk003"].map(str::to_owned);
    h.wait_for("every notification", Duration::from_secs(30), || async {
        let (_, pending) = h.get("/v1/deliveries?status=pending").await;
        let (_, surfaced) = h.get("/v1/deliveries?status=surfaced").await;
        let done = pending["deliveries"].as_array().is_some_and(Vec::is_empty)
            && surfaced["deliveries"].as_array().map_or(0, Vec::len) == 9;
        done.then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;

    // Discord: three messages in the channel, all live ones showing the
    // end; each task's notification is the one message of its own thread,
    // started from its live message and named after it.
    let (top, threads) = discord_view(&discord);
    assert_eq!(
        top.faults(&tasks),
        (3, 0, 0),
        "no notification in the channel itself: {top:?}"
    );
    assert_eq!(discord.messages("9001").len(), 3, "{top:?}");
    assert!(ended(&top, &tasks), "every live message shows its end: {top:?}");
    assert_eq!(threads.len(), 3, "{threads:?}");
    for (task, inside) in &threads {
        assert_eq!(
            inside.faults(std::slice::from_ref(task)),
            (0, 0, 0),
            "thread of {task}: {inside:?}"
        );
        assert_eq!(
            inside.terminal.len(),
            1,
            "only {task}'s notification is in its thread: {inside:?}"
        );
    }
    let names: Vec<String> = discord.threads("9001").into_iter().map(|(_, n)| n).collect();
    assert!(names.iter().all(|n| n.contains("tsk")), "{names:?}");

    // Slack: three parents; each has exactly its notification as a reply,
    // the failures also sent to the channel.
    let (parents, replies) = slack_view(&slack);
    assert_eq!(parents.faults(&tasks), (3, 0, 0), "{parents:?}");
    assert_eq!(replies.len(), 3);
    for (task, list) in &replies {
        assert_eq!(list.len(), 1, "{task}: {list:?}");
        let reply = &list[0];
        assert_eq!(task_of(&reply.to_string()).as_deref(), Some(task.as_str()));
        assert!(
            tally::slack_message(reply).1,
            "the reply is {task}'s notification"
        );
        let broadcast = reply["subtype"] == "thread_broadcast";
        assert_eq!(
            broadcast,
            task != "tsk001",
            "failures reach the channel too: {reply}"
        );
    }
    assert_eq!(
        slack.top_level("C1").len(),
        5,
        "three live messages and two broadcast failures in the channel"
    );

    // Telegram: three live messages, and three notifications each replying
    // to its own task's live message.
    let messages = telegram.messages(CHAT);
    assert_eq!(messages.len(), 6, "{messages:?}");
    for m in messages.iter().filter(|m| tally::telegram_message(m).1) {
        let parent_id = &m["reply_to_message"]["message_id"];
        let parent = messages
            .iter()
            .find(|p| &p["message_id"] == parent_id)
            .unwrap_or_else(|| panic!("a notification that replies to nothing: {m}"));
        assert_eq!(
            task_of(parent["text"].as_str().unwrap_or("")),
            task_of(m["text"].as_str().unwrap_or("")),
            "{m} replies to {parent}"
        );
        assert!(
            !tally::telegram_message(parent).1,
            "the parent is the live message"
        );
    }
    assert_eq!(
        messages
            .iter()
            .filter(|m| !m["reply_to_message"].is_null())
            .count(),
        3
    );
    // Only the configured people are pinged, once per failure, by the
    // replies; nothing from the event text.
    let who = |pings: Vec<String>| {
        let mut pings = pings;
        pings.sort();
        pings
    };
    assert_eq!(
        who(discord.pings().into_iter().map(|(_, p)| p).collect()),
        ["user:111", "user:111"],
        "{:?}",
        discord.pings()
    );
    assert!(
        discord.pings().iter().all(|(channel, _)| channel != "9001"),
        "the pings come from replies in threads"
    );
    assert_eq!(
        who(slack.pings().into_iter().map(|(_, p)| p).collect()),
        ["U024BE7LH", "U024BE7LH"]
    );
    assert_eq!(
        who(telegram.pings().into_iter().map(|(_, p)| p).collect()),
        ["user:4242", "user:4242"]
    );
    assert_eq!(
        discord.rate_limited() + slack.rate_limited() + telegram.rate_limited(),
        0
    );
    assert!(discord.early().is_empty() && slack.early().is_empty() && telegram.early().is_empty());
}

#[tokio::test]
async fn a_deleted_live_message_or_thread_is_replaced_and_the_reply_goes_under_the_new_one() {
    let discord = DiscordEmulator::start("dtoken", &["9001"]).await;
    let slack = SlackEmulator::start("xoxb-t", &["C1"]).await;
    let telegram = TelegramEmulator::start("1:tg").await;
    telegram.chat(CHAT, ChatKind::Private);
    let h = Herald::start(&config(
        &discord,
        &slack,
        &telegram,
        "\n[contracts]\nheartbeat = \"2s\"\n",
    ));
    // Both go silent: their stale notices open their threads. Then a
    // moderator deletes `tsk001`'s thread, and the tasks fail.
    let (status, body) = h
        .post_events(&json!([
            event("r", "w", "tsk001", 1, "running", json!({})),
            event("r", "w", "tsk002", 1, "running", json!({})),
        ]))
        .await;
    assert_eq!(status, 202, "{body}");
    let thread = h
        .wait_for(
            "tsk001's stale notice in its thread",
            Duration::from_secs(20),
            || async {
                let thread = threads_id(&discord, "tsk001");
                discord
                    .threads("9001")
                    .into_iter()
                    .any(|(id, _)| id == thread && !discord.messages(&id).is_empty())
                    .then_some(thread)
            },
        )
        .await;
    let deleted_thread = thread.clone();
    discord.delete_thread(&thread);
    // `tsk002`'s live message is deleted by a person everywhere.
    let live = |list: Vec<Value>, field: &str| {
        list.into_iter()
            .find(|m| m.to_string().contains("tsk002"))
            .map(|m| {
                m[field]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| m[field].to_string())
            })
    };
    let d_live = live(discord.messages("9001"), "id").expect("tsk002's live message on Discord");
    discord.delete("9001", &d_live);
    let s_live = live(slack.messages("C1"), "ts").expect("tsk002's live message on Slack");
    slack.delete("C1", &s_live);
    let (status, body) = h
        .post_events(&json!([
            event("r", "w", "tsk001", 2, "failed", json!({"reason": "exit 1"})),
            event("r", "w", "tsk002", 2, "failed", json!({"reason": "exit 2"})),
        ]))
        .await;
    assert_eq!(status, 202, "{body}");
    h.wait_for("the failures", Duration::from_secs(30), || async {
        let (_, body) = h.get("/v1/deliveries?status=surfaced").await;
        let failures = body["deliveries"]
            .as_array()
            .map_or(0, |d| d.iter().filter(|r| r["state"] == "failed").count());
        (failures == 6).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;

    // Discord: the failure whose thread was deleted is in a new thread
    // started from the same live message; `tsk002` has a new live message
    // with its failure in that message's thread. The channel itself holds
    // live messages only, one per task.
    let (top, _) = discord_view(&discord);
    assert!(top.terminal.is_empty(), "{top:?}");
    assert_eq!(top.progress.get("tsk001"), Some(&1), "{top:?}");
    assert_eq!(top.progress.get("tsk002"), Some(&1), "posted anew once: {top:?}");
    let failures_in_thread = |task: &str, reason: &str| {
        let thread = threads_id(&discord, task);
        discord
            .messages(&thread)
            .iter()
            .filter(|m| m.to_string().contains(reason))
            .count()
    };
    assert_eq!(failures_in_thread("tsk001", "exit 1"), 1);
    assert_eq!(failures_in_thread("tsk002", "exit 2"), 1);
    assert!(
        discord
            .threads("9001")
            .iter()
            .any(|(id, _)| *id == deleted_thread),
        "a thread is started again from the live message whose thread was deleted"
    );
    assert_ne!(
        threads_id(&discord, "tsk002"),
        d_live,
        "tsk002's live message was posted anew"
    );
    // Slack and Telegram: nothing is lost; the deleted parent's reply is
    // a fresh message, and the live message is posted anew.
    let notices = |all: Vec<(String, bool)>, reason: &str| {
        all.iter()
            .filter(|(text, terminal)| *terminal && text.contains(reason))
            .count()
    };
    let slack_all: Vec<(String, bool)> = slack.messages("C1").iter().map(tally::slack_message).collect();
    assert_eq!(notices(slack_all.clone(), "exit 1"), 1, "{slack_all:?}");
    assert_eq!(notices(slack_all.clone(), "exit 2"), 1, "{slack_all:?}");
    let shown = Shown::count(&slack_all, "tsk", TASK_LEN);
    assert!(
        shown
            .live_text
            .get("tsk002")
            .is_some_and(|t| t.contains("failed")),
        "{shown:?}"
    );
    assert_ne!(
        slack
            .top_level("C1")
            .iter()
            .find(|m| m.to_string().contains("tsk002") && !tally::slack_message(m).1)
            .map(|m| m["ts"].clone()),
        Some(json!(s_live)),
        "tsk002's live message was posted anew"
    );
    let telegram_all: Vec<(String, bool)> = telegram
        .messages(CHAT)
        .iter()
        .map(tally::telegram_message)
        .collect();
    assert_eq!(notices(telegram_all.clone(), "exit 1"), 1, "{telegram_all:?}");
    assert_eq!(notices(telegram_all.clone(), "exit 2"), 1, "{telegram_all:?}");
    assert!(discord.early().is_empty() && slack.early().is_empty());
}

/// Whether each of `tasks` has a live message, showing how it ended.
fn ended(shown: &Shown, tasks: &[String]) -> bool {
    tasks.iter().all(|t| {
        shown
            .live_text
            .get(t)
            .is_some_and(|text| text.contains("completed") || text.contains("failed"))
    })
}

/// The tasks of one crash run.
fn crash_tasks() -> Vec<String> {
    (0..6).map(|n| format!("tsk{n:03}")).collect()
}

#[tokio::test]
async fn kill_nine_during_threaded_delivery_duplicates_nothing_on_discord_and_slack() {
    let discord = DiscordEmulator::start("dtoken", &["9001"]).await;
    let slack = SlackEmulator::start("xoxb-t", &["C1"]).await;
    let telegram = TelegramEmulator::start("1:tg").await;
    telegram.chat(CHAT, ChatKind::Private);
    // Lost answers (applied, never answered) and 5xx on both platforms.
    discord.chaos(Some(Chaos::new(0.1, 0.15, 21)));
    slack.chaos(Some(Chaos::new(0.1, 0.15, 22)));
    let mut h = Herald::start(&config(&discord, &slack, &telegram, ""));
    let tasks = crash_tasks();
    let started = Instant::now();
    let mut kills = 0;
    for step in 0..5usize {
        // The tasks start, then end (two of them failing); herald is
        // killed every 1.2 s meanwhile.
        let batch: Vec<Value> = match step {
            0 => tasks
                .iter()
                .map(|t| event("r", "w", t, 1, "running", json!({})))
                .collect(),
            1 => tasks
                .iter()
                .map(|t| {
                    let state = if t.ends_with('1') || t.ends_with('4') {
                        "failed"
                    } else {
                        "completed"
                    };
                    event(
                        "r",
                        "w",
                        t,
                        2,
                        state,
                        json!({"summary": format!("{t} done"), "reason": "exit 1"}),
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        if step == 1 {
            // The first calls the endings cause (Discord's first thread
            // creation, Slack's first replies) are applied and never
            // answered: what herald must find again, not send twice.
            h.wait_for("the live messages", Duration::from_secs(30), || async {
                let live = discord.messages("9001").len() == tasks.len()
                    && slack.messages("C1").len() == tasks.len();
                live.then_some(())
            })
            .await;
            // Targeted, so the edits of the live messages cannot take them.
            discord.inject_on(
                "thread-",
                vec![DiscordFault::ApplyThenHang, DiscordFault::ApplyThenHang],
            );
            slack.inject_on(
                "post:",
                vec![SlackFault::ApplyThenHang, SlackFault::ApplyThenHang],
            );
        }
        if !batch.is_empty() {
            let (status, body) = h.post_events(&json!(batch)).await;
            assert_eq!(status, 202, "{body}");
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        h.kill9();
        kills += 1;
        h.spawn();
    }
    discord.chaos(None);
    slack.chaos(None);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, pending) = h.get("/v1/deliveries?status=pending&limit=100").await;
        let (_, surfaced) = h.get("/v1/deliveries?status=surfaced&limit=100").await;
        let settled = pending["deliveries"].as_array().is_some_and(Vec::is_empty)
            && surfaced["deliveries"].as_array().map_or(0, Vec::len) == 3 * tasks.len();
        let (top, _) = discord_view(&discord);
        let (parents, _) = slack_view(&slack);
        if settled && ended(&top, &tasks) && ended(&parents, &tasks) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not settled: pending {pending}\ndiscord {top:?}\nslack {parents:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Discord: one live message per task in the channel, one thread per
    // task, one notification in each.
    let (top, threads) = discord_view(&discord);
    assert_eq!(discord.messages("9001").len(), tasks.len(), "{top:?}");
    assert_eq!(top.faults(&tasks).2, 0, "no live message posted twice: {top:?}");
    assert_eq!(threads.len(), tasks.len(), "{threads:?}");
    for (task, inside) in &threads {
        assert_eq!(
            inside.faults(std::slice::from_ref(task)),
            (0, 0, 0),
            "thread of {task} (lost, duplicated): {inside:?}"
        );
        assert_eq!(discord.messages(&threads_id(&discord, task)).len(), 1, "{task}");
    }
    // Slack: one parent per task, exactly one reply under each.
    let (parents, replies) = slack_view(&slack);
    assert_eq!(parents.faults(&tasks).2, 0, "{parents:?}");
    assert_eq!(parents.live_text.len(), tasks.len(), "{parents:?}");
    for (task, list) in &replies {
        assert_eq!(list.len(), 1, "{task} (lost or duplicated reply): {list:?}");
    }
    let faults = |statuses: Vec<u16>| {
        (
            statuses.iter().filter(|s| **s == 0).count(),
            statuses.iter().filter(|s| **s >= 500).count(),
        )
    };
    let (d_lost, d_failed) = faults(discord.seen().iter().map(|s| s.status).collect());
    let (s_lost, s_failed) = faults(slack.seen().iter().map(|s| s.status).collect());
    eprintln!(
        "{kills} kills, settled after {:?}: answers lost / 5xx: discord {d_lost} / {d_failed}, slack {s_lost} / {s_failed}; \
         thread creations {}, conversations.replies {}, history {}, 429s {} / {}",
        started.elapsed(),
        discord.seen().iter().filter(|s| s.method == "THREAD").count(),
        slack.calls("conversations.replies"),
        slack.calls("conversations.history"),
        discord.rate_limited(),
        slack.rate_limited(),
    );
    assert!(
        slack.calls("conversations.replies") > 0,
        "the lost replies were looked for in their threads"
    );
    assert!(
        discord.seen().iter().filter(|s| s.method == "THREAD").count() > tasks.len(),
        "a thread creation whose answer was lost was made again (and answered with the same thread)"
    );
    assert!(discord.early().is_empty(), "{:?}", discord.early());
    assert!(slack.early().is_empty(), "{:?}", slack.early());
}

/// The thread of `task`'s live message on Discord.
fn threads_id(discord: &DiscordEmulator, task: &str) -> String {
    discord
        .messages("9001")
        .into_iter()
        .find(|m| m.to_string().contains(task))
        .and_then(|m| m["id"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::test]
async fn acknowledge_on_a_reply_in_a_discord_thread_is_believed() {
    let discord = DiscordEmulator::start("dtoken", &["9001"]).await;
    let slack = SlackEmulator::start("xoxb-t", &["C1"]).await;
    let telegram = TelegramEmulator::start("1:tg").await;
    telegram.chat(CHAT, ChatKind::Private);
    // No `public_key`: Discord's interactions come over the Gateway.
    let h = Herald::start(&config(&discord, &slack, &telegram, ""));
    let (status, body) = h
        .post_events(&json!([event(
            "r",
            "w",
            "tsk009",
            1,
            "failed",
            json!({"reason": "exit 9"})
        )]))
        .await;
    assert_eq!(status, 202, "{body}");
    let (thread, reply) = h
        .wait_for("the failure in its thread", Duration::from_secs(20), || async {
            let thread = threads_id(&discord, "tsk009");
            let reply = discord.messages(&thread).into_iter().next()?;
            Some((thread, reply))
        })
        .await;
    h.wait_for("a ready Gateway session", Duration::from_secs(20), || async {
        (discord.gateway.ready_sessions() == 1).then_some(())
    })
    .await;
    let custom_id = reply["components"][0]["components"][0]["custom_id"]
        .as_str()
        .expect("an Acknowledge button")
        .to_owned();
    let message_id = reply["id"].as_str().expect("an id").to_owned();
    // Discord names the thread as the press's channel.
    let id = discord
        .gateway
        .dispatch(discord.press_interaction(&thread, &message_id, &custom_id, "Ana"));
    let answer = h
        .wait_for("the press answered", Duration::from_secs(10), || async {
            discord.gateway.answer(&id).map(|c| c.body)
        })
        .await;
    assert_eq!(
        answer["type"], 7,
        "the pressed reply is updated in place: {answer}"
    );
    let acks: Vec<Value> = h
        .journal("r", "w", "tsk009")
        .await
        .into_iter()
        .filter(|e| e["event"]["state"] == "acknowledged")
        .collect();
    assert_eq!(acks.len(), 1, "{acks:?}");
}

#[tokio::test]
async fn without_the_permission_to_open_threads_a_discord_notification_goes_to_the_channel() {
    let discord = DiscordEmulator::start("dtoken", &["9001"]).await;
    let slack = SlackEmulator::start("xoxb-t", &["C1"]).await;
    let telegram = TelegramEmulator::start("1:tg").await;
    telegram.chat(CHAT, ChatKind::Private);
    discord.forbid_threads("9001");
    let h = Herald::start(&config(&discord, &slack, &telegram, ""));
    let (status, body) = h
        .post_events(&json!([event(
            "r",
            "w",
            "tsk010",
            1,
            "failed",
            json!({"reason": "exit 10"})
        )]))
        .await;
    assert_eq!(status, 202, "{body}");
    h.wait_for(
        "the notification in the channel",
        Duration::from_secs(20),
        || async {
            let messages: Vec<(String, bool)> = discord
                .messages("9001")
                .iter()
                .map(tally::discord_message)
                .collect();
            let shown = Shown::count(&messages, "tsk", TASK_LEN);
            (shown.terminal.get("tsk010") == Some(&1) && shown.progress.get("tsk010") == Some(&1))
                .then_some(())
        },
    )
    .await;
    assert!(discord.threads("9001").is_empty());
    let refused = discord
        .seen()
        .iter()
        .filter(|s| s.method == "THREAD" && s.status == 403)
        .count();
    assert_eq!(refused, 1, "one thread creation was tried and refused");
}
