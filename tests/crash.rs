//! Crash safety against every chat platform at once: the real binary is
//! `kill -9`'d every two seconds while tasks run and finish, and the
//! emulators fail a share of calls (HTTP 500, answers lost after the call
//! was applied). Afterwards every terminal notification must have arrived,
//! on Discord and Slack exactly once with exactly one live message per
//! task, and no platform may have seen a request inside a retry-after.

mod common;
mod emulators;

use std::time::{Duration, Instant};

use common::{Herald, event};
use emulators::chaos::Chaos;
use emulators::discord::DiscordEmulator;
use emulators::slack::SlackEmulator;
use emulators::tally::{self, Shown};
use emulators::telegram::{ChatKind, TelegramEmulator};
use serde_json::{Value, json};

const TASKS_PER_CHANNEL: usize = 5;
const DISCORD: [&str; 4] = ["9001", "9002", "9003", "9004"];
const SLACK: [&str; 4] = ["C1", "C2", "C3", "C4"];
const TELEGRAM: [i64; 4] = [501, 502, 503, 504];

fn config(discord: &DiscordEmulator, slack: &SlackEmulator, telegram: &TelegramEmulator) -> String {
    let mut text = format!(
        "[[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n\
         [adapters.discord]\ntoken = \"dtoken\"\napi_url = \"{}\"\ntimeout = \"1s\"\n\n\
         [adapters.slack]\ntoken = \"xoxb-t\"\napi_url = \"{}\"\ntimeout = \"1s\"\n\n\
         [adapters.telegram]\ntoken = \"1:tg\"\napi_url = \"{}\"\ntimeout = \"1s\"\n\n\
         [delivery]\nretry_schedule = [\"200ms\", \"500ms\", \"1s\"]\nprogress_min_interval = \"3s\"\n\n",
        discord.api_url(),
        slack.api_url(),
        telegram.api_url()
    );
    for (i, id) in DISCORD.iter().enumerate() {
        text.push_str(&format!(
            "[channels.d{i}]\nadapter = \"discord\"\nid = \"{id}\"\n\n"
        ));
    }
    for (i, id) in SLACK.iter().enumerate() {
        text.push_str(&format!(
            "[channels.s{i}]\nadapter = \"slack\"\nid = \"{id}\"\n\n"
        ));
    }
    for (i, id) in TELEGRAM.iter().enumerate() {
        text.push_str(&format!(
            "[channels.t{i}]\nadapter = \"telegram\"\nid = \"{id}\"\n\n"
        ));
    }
    // Run rN goes to the N-th channel of every platform.
    for i in 0..4 {
        text.push_str(&format!(
            "[[routes]]\nmatch = {{ run_id = \"r{i}\" }}\nchannels = [\"d{i}\", \"s{i}\", \"t{i}\"]\n\n"
        ));
    }
    text
}

/// Task ids no platform's escaping changes (Discord escapes `-`).
fn task_name(channel: usize, n: usize) -> String {
    format!("tsk{channel}{n:02}")
}

const TASK_LEN: usize = 6;

fn discord_shown(emu: &DiscordEmulator, channel: &str) -> Shown {
    let messages: Vec<(String, bool)> = emu.messages(channel).iter().map(tally::discord_message).collect();
    Shown::count(&messages, "tsk", TASK_LEN)
}

fn slack_shown(emu: &SlackEmulator, channel: &str) -> Shown {
    let messages: Vec<(String, bool)> = emu.messages(channel).iter().map(tally::slack_message).collect();
    Shown::count(&messages, "tsk", TASK_LEN)
}

fn telegram_shown(emu: &TelegramEmulator, chat: i64) -> Shown {
    let messages: Vec<(String, bool)> = emu.messages(chat).iter().map(tally::telegram_message).collect();
    Shown::count(&messages, "tsk", TASK_LEN)
}

async fn settled(h: &Herald, expected: usize) -> bool {
    let (_, body) = h.get("/v1/deliveries?status=surfaced&limit=1000").await;
    let surfaced = body["deliveries"].as_array().map_or(0, Vec::len);
    let (_, pending) = h.get("/v1/deliveries?status=pending&limit=1000").await;
    let pending = pending["deliveries"].as_array().map_or(0, Vec::len);
    surfaced == expected && pending == 0
}

/// Counts and whether each live message ended completed, for failure output.
fn brief(shown: &Shown) -> String {
    let done: Vec<(&String, bool)> = shown
        .live_text
        .iter()
        .map(|(task, text)| (task, text.contains("completed")))
        .collect();
    format!(
        "progress {:?} terminal {:?} completed {done:?}",
        shown.progress, shown.terminal
    )
}

fn all_completed(shown: &Shown) -> bool {
    shown.live_text.len() == TASKS_PER_CHANNEL && shown.live_text.values().all(|t| t.contains("completed"))
}

fn tasks_of(channel: usize) -> Vec<String> {
    (0..TASKS_PER_CHANNEL).map(|n| task_name(channel, n)).collect()
}

#[tokio::test]
async fn kill_nine_every_two_seconds_with_platform_faults_loses_and_duplicates_nothing() {
    let discord = DiscordEmulator::start("dtoken", &DISCORD).await;
    let slack = SlackEmulator::start("xoxb-t", &SLACK).await;
    let telegram = TelegramEmulator::start("1:tg").await;
    for chat in TELEGRAM {
        telegram.chat(chat, ChatKind::Private);
    }
    for (i, emu_seed) in [11u64, 12, 13].iter().enumerate() {
        let chaos = Some(Chaos::new(0.1, 0.1, *emu_seed));
        match i {
            0 => discord.chaos(chaos),
            1 => slack.chaos(chaos),
            _ => telegram.chaos(chaos),
        }
    }
    let mut h = Herald::start(&config(&discord, &slack, &telegram));
    let started = Instant::now();
    let mut kills = 0;
    // Three states per task, posted in steps between kills.
    for step in 0..6usize {
        let mut batch: Vec<Value> = Vec::new();
        for channel in 0..4 {
            for n in 0..TASKS_PER_CHANNEL {
                let task = task_name(channel, n);
                let (seq, state, payload) = match step {
                    0 => (1, "running", json!({})),
                    1 | 2 => (
                        step as i64 + 1,
                        "running_tool",
                        json!({"tool": format!("step {step}")}),
                    ),
                    3 => (4, "completed", json!({"summary": format!("{task} done")})),
                    _ => continue,
                };
                batch.push(event(&format!("r{channel}"), "w", &task, seq, state, payload));
            }
        }
        if !batch.is_empty() {
            let (status, body) = h.post_events(&json!(batch)).await;
            assert_eq!(status, 202, "{body}");
        }
        tokio::time::sleep(Duration::from_millis(2000)).await;
        h.kill9();
        kills += 1;
        h.spawn();
    }
    // Faults stop; herald must now settle on its own.
    discord.chaos(None);
    slack.chaos(None);
    telegram.chaos(None);
    let expected = 3 * 4 * TASKS_PER_CHANNEL;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let receipts = settled(&h, expected).await;
        let d = DISCORD.iter().all(|c| all_completed(&discord_shown(&discord, c)));
        let s = SLACK.iter().all(|c| all_completed(&slack_shown(&slack, c)));
        let t = TELEGRAM
            .iter()
            .all(|c| all_completed(&telegram_shown(&telegram, *c)));
        if receipts && d && s && t {
            break;
        }
        if Instant::now() > deadline {
            let (_, pending) = h.get("/v1/deliveries?status=pending&limit=1000").await;
            let (_, failed) = h.get("/v1/deliveries?status=failed&limit=1000").await;
            panic!(
                "not settled: receipts {receipts}, discord {d}, slack {s}, telegram {t}\n\
                 pending {pending}\nfailed {failed}\nslack: {:?}\ndiscord: {:?}\ntelegram: {:?}\nlog tail:\n{}",
                SLACK
                    .iter()
                    .map(|c| brief(&slack_shown(&slack, c)))
                    .collect::<Vec<_>>(),
                DISCORD
                    .iter()
                    .map(|c| brief(&discord_shown(&discord, c)))
                    .collect::<Vec<_>>(),
                TELEGRAM
                    .iter()
                    .map(|c| brief(&telegram_shown(&telegram, *c)))
                    .collect::<Vec<_>>(),
                h.log
                    .lock()
                    .unwrap()
                    .iter()
                    .rev()
                    .take(30)
                    .rev()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed();

    let mut telegram_duplicates = 0;
    let mut telegram_reposts = 0;
    for (channel, id) in DISCORD.iter().enumerate() {
        let shown = discord_shown(&discord, id);
        assert_eq!(
            shown.faults(&tasks_of(channel)),
            (0, 0, 0),
            "Discord {id} (lost, duplicates, re-posts): {}",
            brief(&shown)
        );
    }
    for (channel, id) in SLACK.iter().enumerate() {
        let shown = slack_shown(&slack, id);
        assert_eq!(
            shown.faults(&tasks_of(channel)),
            (0, 0, 0),
            "Slack {id} (lost, duplicates, re-posts): {}",
            brief(&shown)
        );
    }
    for (channel, id) in TELEGRAM.iter().enumerate() {
        let shown = telegram_shown(&telegram, *id);
        let (lost, duplicates, reposts) = shown.faults(&tasks_of(channel));
        assert_eq!(lost, 0, "Telegram {id} lost notifications: {}", brief(&shown));
        telegram_duplicates += duplicates;
        telegram_reposts += reposts;
    }
    let early = (discord.early(), slack.early(), telegram.early());
    eprintln!(
        "{kills} kills, settled after {elapsed:?}: 429s discord {} slack {} telegram {}; \
         early requests {} / {} / {}; history calls {}; telegram duplicates {telegram_duplicates}, \
         re-posted progress messages {telegram_reposts}",
        discord.rate_limited(),
        slack.rate_limited(),
        telegram.rate_limited(),
        early.0.len(),
        early.1.len(),
        early.2.len(),
        slack.calls("conversations.history"),
    );
    assert!(
        early.0.is_empty(),
        "Discord saw requests inside a retry-after: {:?}",
        early.0
    );
    assert!(
        early.1.is_empty(),
        "Slack saw requests inside a retry-after: {:?}",
        early.1
    );
    assert!(
        early.2.is_empty(),
        "Telegram saw requests inside a retry-after: {:?}",
        early.2
    );
}

/// A burst of 5,000 terminal notifications to one webhook channel, many in
/// flight at once, with herald `kill -9`'d twice mid-burst: every receipt
/// arrives, each under one stable `webhook-id` (a resend after a crash
/// reuses it, so a receiver that dedupes on it sees each exactly once).
#[tokio::test]
async fn kill_nine_during_a_webhook_burst_delivers_every_receipt_under_one_id() {
    use emulators::webhook::{Load, Receiver};
    use std::collections::{HashMap, HashSet};
    const BURST: usize = 5000;
    let rx = Receiver::start_loaded(Load {
        base: Duration::from_millis(5),
        ..Load::default()
    })
    .await;
    let config = format!(
        "[[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n\
         [channels.hook]\nadapter = \"webhook\"\nurl = \"{}\"\n\
         secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\n\
         [defaults]\nchannels = [\"hook\"]\n",
        rx.url()
    );
    let mut h = Herald::start(&config);
    h.post_terminal_burst(BURST, 1000).await;
    let mut kills = 0;
    for at in [BURST / 5, BURST / 2] {
        rx.wait_for(at, Duration::from_secs(60)).await;
        h.kill9();
        kills += 1;
        h.spawn();
    }
    let task_of = |r: &emulators::webhook::Received| -> String {
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        body["task"]["task_id"].as_str().unwrap().to_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let ids = loop {
        let mut ids: HashMap<String, HashSet<String>> = HashMap::new();
        for r in rx.received() {
            ids.entry(r.headers["webhook-id"].clone())
                .or_default()
                .insert(task_of(&r));
        }
        let settled = h.receipt_gauge("surfaced").await == BURST as i64
            && h.receipt_gauge("pending").await == 0
            && h.receipt_gauge("sending").await == 0;
        if ids.len() >= BURST && settled {
            break ids;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {BURST} webhook-ids arrived",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ids.len(), BURST, "one webhook-id per receipt, no more");
    let mut tasks = HashSet::new();
    for (id, tasks_of_id) in &ids {
        assert_eq!(tasks_of_id.len(), 1, "webhook-id {id} carried several tasks");
        assert!(
            tasks.insert(tasks_of_id.iter().next().unwrap().clone()),
            "a task arrived under two ids"
        );
    }
    assert_eq!(tasks.len(), BURST, "every task's notification arrived");
    let requests = rx.received().len();
    eprintln!(
        "{kills} kills: {requests} requests for {BURST} receipts ({} resent under the same id), peak in flight {}",
        requests - BURST,
        rx.peak()
    );
}
