//! Several replicas on one PostgreSQL database (SPEC §10): three `herald
//! serve` processes with the same config share the channels by lease; one
//! is `kill -9`'d and left down, another killed and restarted, while the
//! chat emulators fail 5 % of calls. Afterwards every terminal
//! notification has arrived, on Discord and Slack exactly once with
//! exactly one live message per (channel, task), and no platform saw a
//! request over a limit or inside a retry-after.
//!
//! SQLite serves one process (`store_connection.rs` checks that a second
//! one waits), so on the SQLite pass of the suite these tests say so and
//! end.

mod common;
mod emulators;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Herald, event};
use emulators::chaos::Chaos;
use emulators::discord::DiscordEmulator;
use emulators::slack::SlackEmulator;
use emulators::tally::{self, Shown};
use emulators::telegram::{ChatKind, TelegramEmulator};
use serde_json::{Value, json};

const CHANNELS: usize = 10;
const TASKS_PER_CHANNEL: usize = 20;
const TASK_LEN: usize = 6;

fn discord_id(i: usize) -> String {
    format!("{}", 9100 + i)
}

fn slack_id(i: usize) -> String {
    format!("C{}", 100 + i)
}

fn telegram_id(i: usize) -> i64 {
    600 + i64::try_from(i).unwrap()
}

/// The config every replica runs: the same channels, routes and store.
fn config(
    store: &str,
    discord: &DiscordEmulator,
    slack: &SlackEmulator,
    telegram: &TelegramEmulator,
) -> String {
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nurl = \"{store}\"\n\n\
         [[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n\
         [adapters.discord]\ntoken = \"dtoken\"\napi_url = \"{}\"\ntimeout = \"1s\"\n\n\
         [adapters.slack]\ntoken = \"xoxb-t\"\napi_url = \"{}\"\ntimeout = \"1s\"\n\n\
         [adapters.telegram]\ntoken = \"1:tg\"\napi_url = \"{}\"\ntimeout = \"1s\"\n\n\
         [delivery]\nretry_schedule = [\"200ms\", \"500ms\", \"1s\"]\nprogress_min_interval = \"3s\"\n\n",
        discord.api_url(),
        slack.api_url(),
        telegram.api_url()
    );
    for i in 0..CHANNELS {
        text.push_str(&format!(
            "[channels.d{i}]\nadapter = \"discord\"\nid = \"{}\"\n\n\
             [channels.s{i}]\nadapter = \"slack\"\nid = \"{}\"\n\n\
             [channels.t{i}]\nadapter = \"telegram\"\nid = \"{}\"\n\n\
             [[routes]]\nmatch = {{ run_id = \"r{i}\" }}\nchannels = [\"d{i}\", \"s{i}\", \"t{i}\"]\n\n",
            discord_id(i),
            slack_id(i),
            telegram_id(i)
        ));
    }
    text
}

/// Task ids no platform's escaping changes.
fn task_name(channel: usize, n: usize) -> String {
    format!("tsk{channel}{n:02}")
}

fn tasks_of(channel: usize) -> Vec<String> {
    (0..TASKS_PER_CHANNEL).map(|n| task_name(channel, n)).collect()
}

fn discord_shown(emu: &DiscordEmulator, i: usize) -> Shown {
    let messages: Vec<(String, bool)> = emu
        .messages(&discord_id(i))
        .iter()
        .map(tally::discord_message)
        .collect();
    Shown::count(&messages, "tsk", TASK_LEN)
}

fn slack_shown(emu: &SlackEmulator, i: usize) -> Shown {
    let messages: Vec<(String, bool)> = emu
        .messages(&slack_id(i))
        .iter()
        .map(tally::slack_message)
        .collect();
    Shown::count(&messages, "tsk", TASK_LEN)
}

fn telegram_shown(emu: &TelegramEmulator, i: usize) -> Shown {
    let messages: Vec<(String, bool)> = emu
        .messages(telegram_id(i))
        .iter()
        .map(tally::telegram_message)
        .collect();
    Shown::count(&messages, "tsk", TASK_LEN)
}

/// Long tasks run, then complete; short ones are first seen completed.
fn is_long(n: usize) -> bool {
    n.is_multiple_of(2)
}

/// The events of one step of the scenario, for every channel's tasks.
fn step_events(step: usize) -> Vec<Value> {
    let mut events = Vec::new();
    for channel in 0..CHANNELS {
        for n in 0..TASKS_PER_CHANNEL {
            let task = task_name(channel, n);
            let (seq, state, payload) = match (step, is_long(n)) {
                (0, true) => (1, "running", json!({})),
                (1, false) => (1, "completed", json!({"summary": format!("{task} done")})),
                (2, true) => (2, "completed", json!({"summary": format!("{task} done")})),
                _ => continue,
            };
            events.push(event(&format!("r{channel}"), "w", &task, seq, state, payload));
        }
    }
    events
}

/// Post `events` in batches of 25, round-robin over the live replicas.
async fn post_round_robin(replicas: &[&Herald], events: &[Value]) {
    for (i, batch) in events.chunks(25).enumerate() {
        let h = replicas[i % replicas.len()];
        let (status, body) = h.post_events(&json!(batch)).await;
        assert_eq!(status, 202, "{body}");
    }
}

/// `GET /v1/replicas` of `h`.
async fn replicas_view(h: &Herald) -> Value {
    let (status, body) = h.get("/v1/replicas").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Wait until the live replicas hold every channel, `live` of them alive,
/// each with a fair share; returns how long it took.
async fn wait_for_cover(h: &Herald, live: usize, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let view = replicas_view(h).await;
        let alive: Vec<&Value> = view["replicas"]
            .as_array()
            .map(|r| r.iter().filter(|r| r["alive"] == json!(true)).collect())
            .unwrap_or_default();
        let counts: Vec<usize> = alive
            .iter()
            .map(|r| r["channels"].as_array().map_or(0, Vec::len))
            .collect();
        let fair = counts
            .iter()
            .max()
            .zip(counts.iter().min())
            .is_some_and(|(a, b)| a - b <= 1);
        if alive.len() == live && view["unheld"].as_array().is_some_and(Vec::is_empty) && fair {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "no fair cover by {live} replicas within {within:?}: {view:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn receipts_settled(h: &Herald, expected: usize) -> bool {
    let (_, body) = h.get("/v1/deliveries?status=surfaced&limit=1000").await;
    let surfaced = body["deliveries"].as_array().map_or(0, Vec::len);
    let (_, pending) = h.get("/v1/deliveries?status=pending&limit=1000").await;
    let pending = pending["deliveries"].as_array().map_or(0, Vec::len);
    surfaced == expected && pending == 0
}

fn all_completed(shown: &Shown) -> bool {
    shown.live_text.len() == TASKS_PER_CHANNEL && shown.live_text.values().all(|t| t.contains("completed"))
}

fn log_tail(h: &Herald) -> String {
    let log = h.log.lock().unwrap();
    log.iter()
        .rev()
        .take(25)
        .rev()
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn three_replicas_with_two_killed_lose_and_duplicate_nothing() {
    if !common::store::on_postgres() {
        eprintln!("replicas need PostgreSQL; SQLite serves one process (see store_connection.rs)");
        return;
    }
    let discord_ids: Vec<String> = (0..CHANNELS).map(discord_id).collect();
    let slack_ids: Vec<String> = (0..CHANNELS).map(slack_id).collect();
    let discord_refs: Vec<&str> = discord_ids.iter().map(String::as_str).collect();
    let slack_refs: Vec<&str> = slack_ids.iter().map(String::as_str).collect();
    let discord = DiscordEmulator::start("dtoken", &discord_refs).await;
    let slack = SlackEmulator::start("xoxb-t", &slack_refs).await;
    let telegram = TelegramEmulator::start("1:tg").await;
    for i in 0..CHANNELS {
        telegram.chat(telegram_id(i), ChatKind::Private);
    }
    discord.chaos(Some(Chaos::new(0.05, 0.02, 21)));
    slack.chaos(Some(Chaos::new(0.05, 0.02, 22)));
    telegram.chaos(Some(Chaos::new(0.05, 0.02, 23)));

    let store = common::store::url(Path::new("/nonexistent"));
    let make = |_: &Path| config(&store, &discord, &slack, &telegram);
    let mut a = Herald::start_full(make);
    let mut b = Herald::start_full(make);
    let c = Herald::start_full(make);
    let cover = wait_for_cover(&c, 3, Duration::from_secs(20)).await;
    eprintln!("3 replicas share the 30 channels after {cover:?}");
    let started = Instant::now();

    post_round_robin(&[&a, &b, &c], &step_events(0)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    post_round_robin(&[&a, &b, &c], &step_events(1)).await;

    // A dies for good: its channels pass to B and C.
    a.kill9();
    let takeover = wait_for_cover(&c, 2, Duration::from_secs(15)).await;
    eprintln!("a killed replica's channels were taken over after {takeover:?}");
    post_round_robin(&[&b, &c], &step_events(2)).await;

    // B dies mid-delivery and comes back as a new replica.
    tokio::time::sleep(Duration::from_secs(3)).await;
    b.kill9();
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.spawn();
    let rejoin = wait_for_cover(&c, 2, Duration::from_secs(20)).await;
    eprintln!("the restarted replica holds a fair share after {rejoin:?}");

    // Faults stop; the replicas must now settle on their own.
    tokio::time::sleep(Duration::from_secs(5)).await;
    discord.chaos(None);
    slack.chaos(None);
    telegram.chaos(None);
    let expected = 3 * CHANNELS * TASKS_PER_CHANNEL;
    let deadline = Instant::now() + Duration::from_secs(360);
    loop {
        let receipts = receipts_settled(&c, expected).await;
        let d = (0..CHANNELS).all(|i| all_completed(&discord_shown(&discord, i)));
        let s = (0..CHANNELS).all(|i| all_completed(&slack_shown(&slack, i)));
        let t = (0..CHANNELS).all(|i| all_completed(&telegram_shown(&telegram, i)));
        if receipts && d && s && t {
            break;
        }
        if Instant::now() > deadline {
            let (_, pending) = c.get("/v1/deliveries?status=pending&limit=1000").await;
            let (_, failed) = c.get("/v1/deliveries?status=failed&limit=1000").await;
            panic!(
                "not settled: receipts {receipts}, discord {d}, slack {s}, telegram {t}\n\
                 pending {pending}\nfailed {failed}\nreplicas {:#}\nlog of c:\n{}\nlog of b:\n{}",
                replicas_view(&c).await,
                log_tail(&c),
                log_tail(&b)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = started.elapsed();

    let mut telegram_duplicates = 0;
    let mut telegram_reposts = 0;
    for i in 0..CHANNELS {
        let shown = discord_shown(&discord, i);
        assert_eq!(
            shown.faults(&tasks_of(i)),
            (0, 0, 0),
            "Discord d{i} (lost, duplicates, re-posts)"
        );
        let shown = slack_shown(&slack, i);
        assert_eq!(
            shown.faults(&tasks_of(i)),
            (0, 0, 0),
            "Slack s{i} (lost, duplicates, re-posts)"
        );
        let (lost, duplicates, reposts) = telegram_shown(&telegram, i).faults(&tasks_of(i));
        assert_eq!(lost, 0, "Telegram t{i} lost notifications");
        telegram_duplicates += duplicates;
        telegram_reposts += reposts;
    }
    let limited = (
        discord.rate_limited(),
        slack.rate_limited(),
        telegram.rate_limited(),
    );
    let early = (discord.early(), slack.early(), telegram.early());
    eprintln!(
        "settled after {elapsed:?}: 429s discord {} slack {} telegram {}; early requests {} / {} / {}; \
         slack history calls {}, chat.update calls {}; telegram duplicates {telegram_duplicates}, re-posted live messages {telegram_reposts}",
        limited.0,
        limited.1,
        limited.2,
        early.0.len(),
        early.1.len(),
        early.2.len(),
        slack.calls("conversations.history"),
        slack.calls("chat.update"),
    );
    assert_eq!(
        limited,
        (0, 0, 0),
        "requests over a limit (429s) on Discord, Slack, Telegram"
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

#[tokio::test]
async fn any_replica_serves_a_live_page_and_sigterm_hands_channels_back_at_once() {
    if !common::store::on_postgres() {
        eprintln!("replicas need PostgreSQL; SQLite serves one process (see store_connection.rs)");
        return;
    }
    let store = common::store::url(Path::new("/nonexistent"));
    let make = |_: &Path| {
        let mut text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nurl = \"{store}\"\n\n\
             [[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n\
             [defaults]\nchannels = [\"w0\"]\n\n"
        );
        for i in 0..6 {
            text.push_str(&format!("[channels.w{i}]\nadapter = \"web\"\n\n"));
        }
        text
    };
    let mut a = Herald::start_full(make);
    let b = Herald::start_full(make);
    wait_for_cover(&b, 2, Duration::from_secs(20)).await;

    // A viewer on the replica that does not deliver w0, an event posted
    // to it too: the holder is woken by a hint and the page by another.
    let view = replicas_view(&b).await;
    let holder = view["replicas"]
        .as_array()
        .and_then(|r| {
            r.iter().find(|r| {
                r["channels"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["channel"] == "w0"))
            })
        })
        .and_then(|r| r["listen"].as_str())
        .expect("someone holds w0")
        .to_owned();
    let a_holds = a.base.ends_with(&holder);
    let other = if a_holds { &b } else { &a };
    let mut res = other
        .client
        .get(other.url("/channels/w0/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let posted = Instant::now();
    let (status, _) = other
        .post_events(&json!([event("r", "w", "live", 1, "running", json!({}))]))
        .await;
    assert_eq!(status, 202);
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = res.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: post") && seen.contains("w · live") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "{seen}");
    let latency = posted.elapsed();
    eprintln!("posted to one replica, delivered by the other, shown live on the first after {latency:?}");
    // Without hints the holder would find the work at its next poll (up
    // to 5 s) and the page would never hear of it.
    assert!(latency < Duration::from_millis(1500), "{latency:?}");
    drop(res);

    let started = Instant::now();
    assert_eq!(a.terminate(), Some(0));
    let handover = wait_for_cover(&b, 1, Duration::from_secs(5)).await;
    eprintln!(
        "SIGTERM: channels handed over {:?} after the stop began",
        started.elapsed()
    );
    assert!(handover < Duration::from_secs(5));
    let (status, _) = b
        .post_events(&json!([event("r", "w", "after", 1, "completed", json!({}))]))
        .await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = b.get("/v1/deliveries?status=surfaced").await;
        if body["deliveries"]
            .as_array()
            .is_some_and(|d| d.iter().any(|r| r["task_id"] == "after"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "not delivered: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_replica_whose_liveness_session_dies_stops_and_joins_again() {
    if !common::store::on_postgres() {
        eprintln!("replicas need PostgreSQL; SQLite serves one process (see store_connection.rs)");
        return;
    }
    use sqlx::Connection;
    let store = common::store::url(Path::new("/nonexistent"));
    let make = |_: &Path| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nurl = \"{store}\"\n\n\
             [[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n\
             [channels.main]\nadapter = \"web\"\n\n[defaults]\nchannels = [\"main\"]\n"
        )
    };
    let h = Herald::start_full(make);
    wait_for_cover(&h, 1, Duration::from_secs(20)).await;
    let before = replicas_view(&h).await["replicas"][0]["id"].clone();
    // Cut the session that holds the replica's liveness lock, as a network
    // cut between it and the database would: others could now take its
    // channels, so it must stop delivering them and join again.
    let mut admin = sqlx::PgConnection::connect(&store).await.unwrap();
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks \
         WHERE locktype = 'advisory' AND classid = 1751478881::oid AND objsubid = 2 AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(cut, vec![true], "one liveness session to cut");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !h
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("joined the store's replicas again"))
    {
        assert!(Instant::now() < deadline, "did not join again:\n{}", log_tail(&h));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        h.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("can no longer prove it is alive")),
        "{}",
        log_tail(&h)
    );
    wait_for_cover(&h, 1, Duration::from_secs(15)).await;
    let after = replicas_view(&h).await;
    let alive: Vec<&Value> = after["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["alive"] == json!(true))
        .collect();
    assert_eq!(alive.len(), 1);
    assert_ne!(alive[0]["id"], before, "a new replica id after joining again");
    let (status, _) = h
        .post_events(&json!([event("r", "w", "after-cut", 1, "completed", json!({}))]))
        .await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = h.get("/v1/deliveries?status=surfaced").await;
        if body["deliveries"]
            .as_array()
            .is_some_and(|d| d.iter().any(|r| r["task_id"] == "after-cut"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered: {body}\n{}",
            log_tail(&h)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn two_replicas_spend_one_slack_workspace_edit_budget() {
    if !common::store::on_postgres() {
        eprintln!("replicas need PostgreSQL; SQLite serves one process (see store_connection.rs)");
        return;
    }
    let ids: Vec<String> = (0..CHANNELS).map(slack_id).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let slack = SlackEmulator::start("xoxb-t", &refs).await;
    let store = common::store::url(Path::new("/nonexistent"));
    let make = |_: &Path| {
        let mut text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nurl = \"{store}\"\n\n\
             [[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n\
             [adapters.slack]\ntoken = \"xoxb-t\"\napi_url = \"{}\"\ntimeout = \"1s\"\n\n\
             [delivery]\nprogress_min_interval = \"1s\"\n\n",
            slack.api_url()
        );
        for i in 0..CHANNELS {
            text.push_str(&format!(
                "[channels.s{i}]\nadapter = \"slack\"\nid = \"{}\"\n\n\
                 [[routes]]\nmatch = {{ run_id = \"r{i}\" }}\nchannels = [\"s{i}\"]\n\n",
                slack_id(i)
            ));
        }
        text
    };
    let a = Herald::start_full(make);
    let b = Herald::start_full(make);
    wait_for_cover(&b, 2, Duration::from_secs(20)).await;
    // One task per channel, changing every second for 20 s: 10 edits a
    // second wanted, against Slack's 50 chat.update per minute for the
    // whole workspace. Each replica alone would spend 50 a minute.
    let step = |seq: i64, state: &str, payload: Value| -> Vec<Value> {
        (0..CHANNELS)
            .map(|i| {
                event(
                    &format!("r{i}"),
                    "w",
                    &task_name(i, 0),
                    seq,
                    state,
                    payload.clone(),
                )
            })
            .collect()
    };
    post_round_robin(&[&a, &b], &step(1, "running", json!({}))).await;
    for seq in 2..22 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        post_round_robin(
            &[&a, &b],
            &step(seq, "running_tool", json!({"tool": format!("step {seq}")})),
        )
        .await;
    }
    post_round_robin(&[&a, &b], &step(22, "completed", json!({"summary": "done"}))).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let done = (0..CHANNELS).all(|i| {
            let shown = slack_shown(&slack, i);
            shown.live_text.len() == 1 && shown.live_text.values().all(|t| t.contains("completed"))
        });
        if done && receipts_settled(&b, CHANNELS).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not settled; log of b:\n{}",
            log_tail(&b)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let updates = slack.calls("chat.update");
    eprintln!(
        "chat.update calls {updates}, 429s {}, early {}",
        slack.rate_limited(),
        slack.early().len()
    );
    assert!(
        updates >= 50,
        "the workspace budget was never reached ({updates} edits)"
    );
    assert_eq!(slack.rate_limited(), 0, "requests over Slack's limits");
    assert!(slack.early().is_empty(), "{:?}", slack.early());
    for i in 0..CHANNELS {
        assert_eq!(slack_shown(&slack, i).faults(&[task_name(i, 0)]), (0, 0, 0));
    }
}
