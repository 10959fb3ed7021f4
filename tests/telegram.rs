//! The Telegram adapter (teloxide types) against the Bot API emulator: each
//! outcome, then end to end through the real binary.

mod common;
mod emulators;

use std::time::{Duration, Instant};

use common::outcomes::{not_surfaced, outbound, surfaced};
use common::{Herald, event};
use emulators::telegram::{ChatKind, Fault, TelegramEmulator};
use herald_messaging::{ChannelRef, MessageHandle, MessageKind, Messaging, NotSurfaced};
use herald_telegram::TelegramAdapter;
use serde_json::{Value, json};

const TOKEN: &str = "123456:ABC-test";
const CHAT: i64 = 4242;

async fn setup() -> (TelegramEmulator, TelegramAdapter, ChannelRef) {
    let emu = TelegramEmulator::start(TOKEN).await;
    emu.chat(CHAT, ChatKind::Private);
    let tg = TelegramAdapter::new(Some(&emu.api_url()), TOKEN, Duration::from_secs(2)).unwrap();
    (emu, tg, ChannelRef::new(CHAT.to_string()))
}

#[tokio::test]
async fn send_and_edit_render_event_text_literally() {
    let (emu, tg, to) = setup().await;
    let id = surfaced(
        &tg.post(
            &to,
            &outbound(MessageKind::Progress, "<b>not bold</b> & \"so\"", None),
        )
        .await,
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let id2 = surfaced(
        &tg.edit(
            &to,
            &MessageHandle(id.clone()),
            &outbound(MessageKind::Progress, "next", None),
        )
        .await,
    );
    assert_eq!(id, id2);
    let seen = emu.seen();
    assert_eq!(seen[0].method, "sendmessage");
    assert_eq!(seen[0].args["parse_mode"], "HTML");
    assert_eq!(seen[0].args["link_preview_options"]["is_disabled"], true);
    assert_eq!(seen[1].method, "editmessagetext");
    // The emulator parsed the HTML: the event's tags and ampersand are text.
    let first = &emu.seen()[0];
    let visible = emulators::telegram::parse_html(first.args["text"].as_str().unwrap()).unwrap();
    assert!(visible.contains("<b>not bold</b> & \"so\""), "{visible}");
}

#[tokio::test]
async fn not_modified_counts_as_surfaced() {
    let (_emu, tg, to) = setup().await;
    let msg = outbound(MessageKind::Progress, "same", None);
    let id = surfaced(&tg.post(&to, &msg).await);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        surfaced(&tg.edit(&to, &MessageHandle(id.clone()), &msg).await),
        id
    );
}

#[tokio::test]
async fn flood_control_is_rate_limited_with_retry_after() {
    let (emu, tg, to) = setup().await;
    emu.inject(vec![Fault::RetryAfter(7)]);
    match not_surfaced(tg.post(&to, &outbound(MessageKind::Progress, "x", None)).await) {
        NotSurfaced::RateLimited { retry_after, .. } => assert_eq!(retry_after, Duration::from_secs(7)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn migrated_group_is_moved() {
    let (emu, tg, _) = setup().await;
    emu.chat(-42, ChatKind::Group);
    emu.migrate(-42, -100_042);
    assert_eq!(
        not_surfaced(
            tg.post(
                &ChannelRef::new("-42"),
                &outbound(MessageKind::Terminal, "x", None)
            )
            .await
        ),
        NotSurfaced::Moved {
            to: ChannelRef::new("-100042")
        }
    );
}

#[tokio::test]
async fn unreachable_chats_are_permanent_and_missing_messages_gone() {
    let (emu, tg, to) = setup().await;
    let msg = outbound(MessageKind::Terminal, "x", None);
    assert!(matches!(
        not_surfaced(tg.post(&ChannelRef::new("777"), &msg).await),
        NotSurfaced::Permanent { .. }
    ));
    emu.chat(1, ChatKind::Private);
    emu.block(1, false);
    assert!(matches!(
        not_surfaced(tg.post(&ChannelRef::new("1"), &msg).await),
        NotSurfaced::Permanent { .. }
    ));
    emu.chat(-2, ChatKind::Supergroup);
    emu.block(-2, true);
    assert!(matches!(
        not_surfaced(tg.post(&ChannelRef::new("-2"), &msg).await),
        NotSurfaced::Permanent { .. }
    ));
    assert_eq!(
        not_surfaced(tg.edit(&to, &MessageHandle("999".into()), &msg).await),
        NotSurfaced::Gone
    );
}

#[tokio::test]
async fn server_errors_are_transient_without_a_ten_second_stall() {
    let (emu, tg, to) = setup().await;
    emu.inject(vec![Fault::Http(502)]);
    let started = Instant::now();
    assert!(matches!(
        not_surfaced(tg.post(&to, &outbound(MessageKind::Progress, "x", None)).await),
        NotSurfaced::Transient { .. }
    ));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let nowhere = TelegramAdapter::new(Some(&url), TOKEN, Duration::from_secs(2)).unwrap();
    match not_surfaced(
        nowhere
            .post(&to, &outbound(MessageKind::Progress, "x", None))
            .await,
    ) {
        NotSurfaced::Transient { reason } => {
            // The bot token is in the URL's path: the reason names the host
            // and what failed, never the URL.
            assert!(!reason.contains(TOKEN) && !reason.contains("/bot"), "{reason}");
            assert!(reason.contains("127.0.0.1"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn applied_but_unanswered_is_unverified() {
    let emu = TelegramEmulator::start(TOKEN).await;
    emu.chat(CHAT, ChatKind::Private);
    let tg = TelegramAdapter::new(Some(&emu.api_url()), TOKEN, Duration::from_millis(500)).unwrap();
    emu.inject(vec![Fault::ApplyThenHang]);
    assert!(matches!(
        not_surfaced(
            tg.post(
                &ChannelRef::new(CHAT.to_string()),
                &outbound(MessageKind::Terminal, "x", None)
            )
            .await
        ),
        NotSurfaced::Unverified { .. }
    ));
}

#[tokio::test]
async fn a_ten_thousand_character_summary_is_delivered_within_limits() {
    let (emu, tg, to) = setup().await;
    surfaced(
        &tg.post(&to, &outbound(MessageKind::Terminal, &"<&>".repeat(3400), None))
            .await,
    );
    let m = &emu.messages(CHAT)[0];
    let text = m["text"].as_str().unwrap();
    assert!(text.chars().count() <= 4096);
    assert!(text.ends_with('…'));
}

// ---- end to end through the real binary ----

fn config(emu: &TelegramEmulator, chat: i64, extra: &str) -> String {
    format!(
        "[[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n[adapters.telegram]\ntoken = \"{TOKEN}\"\n\
         api_url = \"{}\"\ntimeout = \"3s\"\n\n[channels.tg]\nadapter = \"telegram\"\nid = \"{chat}\"\n{extra}\n\n\
         [defaults]\nchannels = [\"tg\"]\n\n[delivery]\nretry_schedule = [\"200ms\", \"400ms\"]\n\
         progress_min_interval = \"100ms\"\n",
        emu.api_url()
    )
}

async fn surfaced_receipts(h: &Herald) -> usize {
    let (_, body) = h.get("/v1/deliveries?status=surfaced").await;
    body["deliveries"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn end_to_end_progress_is_edited_in_place() {
    let emu = TelegramEmulator::start(TOKEN).await;
    emu.chat(CHAT, ChatKind::Private);
    let h = Herald::start(&config(&emu, CHAT, ""));
    h.post_events(&event("r", "w", "t", 1, "running", json!({})))
        .await;
    for seq in 2..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        h.post_events(&event(
            "r",
            "w",
            "t",
            seq,
            "running_tool",
            json!({"tool": format!("step {seq}")}),
        ))
        .await;
    }
    h.post_events(&event(
        "r",
        "w",
        "t",
        4,
        "completed",
        json!({"summary": "<b>green</b> & done"}),
    ))
    .await;
    h.wait_for("final edit and notification", Duration::from_secs(20), || async {
        let msgs = emu.messages(CHAT);
        let done = msgs.first()?["text"].as_str()?.contains("completed");
        (msgs.len() == 2 && done).then_some(())
    })
    .await;
    let seen = emu.seen();
    assert_eq!(seen.iter().filter(|s| s.method == "sendmessage").count(), 2);
    assert!(seen.iter().any(|s| s.method == "editmessagetext"));
    let note = emu.messages(CHAT)[1]["text"].as_str().unwrap().to_owned();
    assert!(note.contains("<b>green</b> & done"), "{note}");
    assert_eq!(emu.rate_limited(), 0);
    assert!(emu.early().is_empty(), "{:?}", emu.early());
}

#[tokio::test]
async fn end_to_end_a_busy_supergroup_keeps_both_group_limits() {
    const GROUP: i64 = -100_777;
    let emu = TelegramEmulator::start(TOKEN).await;
    emu.chat(GROUP, ChatKind::Supergroup);
    let h = Herald::start(&config(&emu, GROUP, ""));
    let started = Instant::now();
    let mut seq = 0;
    while started.elapsed() < Duration::from_secs(25) {
        seq += 1;
        let batch: Vec<_> = (0..50)
            .map(|t| {
                event(
                    "busy",
                    "w",
                    &format!("t{t}"),
                    seq,
                    "running_tool",
                    json!({"tool": format!("step {seq}")}),
                )
            })
            .collect();
        h.post_events(&json!(batch)).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let calls: Vec<_> = emu.seen().into_iter().filter(|s| s.status == 200).collect();
    eprintln!(
        "25 s, 50 busy tasks in one supergroup: {} calls, {} 429s",
        calls.len(),
        emu.rate_limited()
    );
    assert_eq!(emu.rate_limited(), 0, "herald earned a 429");
    assert!(emu.early().is_empty(), "{:?}", emu.early());
    // One a second would allow 25; twenty a minute allows 20: the group
    // limit binds, and herald reaches it.
    assert!(
        (18..=20).contains(&calls.len()),
        "{} calls in 25 s: the 20-per-minute group limit at 0.9 of the rate or better, never over",
        calls.len()
    );
}

#[tokio::test]
async fn end_to_end_terminal_is_delivered_after_a_429_storm() {
    let emu = TelegramEmulator::start(TOKEN).await;
    emu.chat(CHAT, ChatKind::Private);
    let h = Herald::start(&config(&emu, CHAT, "progress = false"));
    emu.inject(vec![
        Fault::RetryAfter(1),
        Fault::RetryAfter(1),
        Fault::RetryAfter(1),
    ]);
    h.post_events(&event("r", "w", "t", 1, "failed", json!({"reason": "oom"})))
        .await;
    h.wait_for("surfaced", Duration::from_secs(20), || async {
        (surfaced_receipts(&h).await == 1).then_some(())
    })
    .await;
    assert_eq!(emu.messages(CHAT).len(), 1);
    let sends: Vec<_> = emu
        .seen()
        .into_iter()
        .filter(|s| s.method == "sendmessage")
        .collect();
    assert_eq!(sends.len(), 4, "three 429s then the delivery");
}

#[tokio::test]
async fn end_to_end_group_migration_is_followed_and_remembered() {
    let emu = TelegramEmulator::start(TOKEN).await;
    emu.chat(-42, ChatKind::Group);
    emu.migrate(-42, -100_042);
    let mut h = Herald::start(&config(&emu, -42, "progress = false"));
    h.post_events(&event("r", "w", "t1", 1, "completed", json!({})))
        .await;
    h.wait_for("surfaced", Duration::from_secs(20), || async {
        (surfaced_receipts(&h).await == 1).then_some(())
    })
    .await;
    assert_eq!(emu.messages(-100_042).len(), 1);
    // After a restart herald goes straight to the supergroup.
    h.kill9();
    h.spawn();
    let before = emu.seen().len();
    h.post_events(&event("r", "w", "t2", 1, "completed", json!({})))
        .await;
    h.wait_for("second", Duration::from_secs(20), || async {
        (surfaced_receipts(&h).await == 2).then_some(())
    })
    .await;
    let after: Vec<_> = emu.seen().into_iter().skip(before).collect();
    assert_eq!(after.len(), 1, "no detour through the old group id: {after:?}");
    assert_eq!(after[0].args["chat_id"], -100_042);
}

/// Waits until `n` receipts are surfaced.
async fn surfaced_n(h: &Herald, n: usize) {
    h.wait_for("surfaced receipts", Duration::from_secs(30), || async {
        (surfaced_receipts(h).await == n).then_some(())
    })
    .await;
}

fn probes(emu: &TelegramEmulator) -> Vec<emulators::telegram::Seen> {
    emu.seen()
        .into_iter()
        .filter(|s| s.method == "editmessagetext")
        .collect()
}

#[tokio::test]
async fn end_to_end_a_lost_answer_is_found_by_probing_not_sent_twice() {
    let emu = TelegramEmulator::start(TOKEN).await;
    emu.chat(-42, ChatKind::Group);
    let h = Herald::start(&config(&emu, -42, "progress = false"));
    h.post_events(&event("r", "w", "t1", 1, "completed", json!({})))
        .await;
    surfaced_n(&h, 1).await;
    // Someone writes in the group; then herald's next send is applied but
    // its answer never comes.
    let foreign = emu.foreign(-42, "hello from a person");
    emu.inject(vec![Fault::ApplyThenHang]);
    h.post_events(&event("r", "w", "t2", 1, "failed", json!({"reason": "oom"})))
        .await;
    surfaced_n(&h, 2).await;
    let messages = emu.messages(-42);
    let t2: Vec<_> = messages
        .iter()
        .filter(|m| m["text"].as_str().unwrap_or("").contains("w · t2"))
        .collect();
    assert_eq!(t2.len(), 1, "the lost notification was sent twice: {messages:?}");
    let probes = probes(&emu);
    assert!(!probes.is_empty(), "no probe was made");
    assert!(
        probes
            .iter()
            .any(|p| p.status == 400 && p.args["message_id"] == t2[0]["message_id"]),
        "the lost message was found by a probe answering 'not modified': {probes:?}"
    );
    // The person's message was asked about at most, never changed.
    assert_eq!(
        messages.iter().find(|m| m["message_id"] == foreign).unwrap()["text"],
        "hello from a person"
    );
    assert_eq!(emu.rate_limited(), 0);
    assert!(emu.early().is_empty(), "{:?}", emu.early());
    let (_, body) = h.get("/v1/deliveries?status=surfaced").await;
    let ids: Vec<&Value> = body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["message_id"])
        .collect();
    assert!(ids.contains(&&json!(t2[0]["message_id"].to_string())), "{ids:?}");
}

#[tokio::test]
async fn end_to_end_a_broadcast_channel_is_never_probed() {
    const CHANNEL: i64 = -100_555;
    let emu = TelegramEmulator::start(TOKEN).await;
    emu.chat(CHANNEL, ChatKind::Channel);
    let h = Herald::start(&config(&emu, CHANNEL, "progress = false"));
    h.post_events(&event("r", "w", "t1", 1, "completed", json!({})))
        .await;
    surfaced_n(&h, 1).await;
    // Another admin posts; herald's next send is applied but unanswered.
    let admin_post = emu.foreign(CHANNEL, "an admin's announcement");
    emu.inject(vec![Fault::ApplyThenHang]);
    h.post_events(&event("r", "w", "t2", 1, "completed", json!({})))
        .await;
    surfaced_n(&h, 2).await;
    assert!(
        probes(&emu).is_empty(),
        "a probe in a broadcast channel could edit another admin's post: {:?}",
        probes(&emu)
    );
    let messages = emu.messages(CHANNEL);
    assert_eq!(
        messages.iter().find(|m| m["message_id"] == admin_post).unwrap()["text"],
        "an admin's announcement"
    );
    // At-least-once there: the notification may arrive twice, never never.
    let t2 = messages
        .iter()
        .filter(|m| m["text"].as_str().unwrap_or("").contains("w · t2"))
        .count();
    assert!((1..=2).contains(&t2), "{messages:?}");
    let (_, body) = h.get("/v1/deliveries?status=surfaced").await;
    let note = body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|d| d["last_error"].as_str().map(str::to_owned))
        .unwrap_or_default();
    assert!(
        note.contains("could not check"),
        "the receipt says it was sent unchecked: {body}"
    );
}
