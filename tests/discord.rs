//! The Discord adapter (serenity builders and models) against the Discord
//! REST emulator: every row of the outcome classification, then end to end
//! through the real binary.

mod common;
mod emulators;

use std::time::{Duration, Instant};

use common::outcomes::{not_surfaced, outbound, surfaced};
use common::{Herald, event};
use emulators::discord::{DiscordEmulator, Fault};
use herald_discord::DiscordAdapter;
use herald_messaging::{Call, ChannelRef, MessageHandle, MessageKind, Messaging, NotSurfaced};
use serde_json::json;

const TOKEN: &str = "bot-token-123";
const CHANNEL: &str = "111111111111111111";

async fn setup() -> (DiscordEmulator, DiscordAdapter, ChannelRef) {
    let emu = DiscordEmulator::start(TOKEN, &[CHANNEL]).await;
    let adapter = DiscordAdapter::new(Some(&emu.api_url()), TOKEN, Duration::from_secs(2)).unwrap();
    (emu, adapter, ChannelRef::new(CHANNEL))
}

#[tokio::test]
async fn create_and_edit_surface_and_never_ping() {
    let (emu, discord, to) = setup().await;
    let id = surfaced(
        &discord
            .post(&to, &outbound(MessageKind::Progress, "@everyone hi", None))
            .await,
    );
    let id2 = surfaced(
        &discord
            .edit(
                &to,
                &MessageHandle(id.clone()),
                &outbound(MessageKind::Progress, "@here", None),
            )
            .await,
    );
    assert_eq!(id, id2);
    let seen = emu.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(
            s.body["allowed_mentions"]["parse"],
            json!([]),
            "{} without allowed_mentions",
            s.method
        );
        assert!(!s.body["content"].as_str().unwrap().contains("@everyone"));
    }
    let msgs = emu.messages(CHANNEL);
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0]["edited_timestamp"].is_string());
}

#[tokio::test]
async fn terminal_notifications_carry_an_enforced_nonce_that_dedupes() {
    let (emu, discord, to) = setup().await;
    let msg = outbound(MessageKind::Terminal, "done", Some("hr00112233445566778899"));
    let first = surfaced(&discord.post(&to, &msg).await);
    let again = surfaced(&discord.post(&to, &msg).await);
    assert_eq!(
        first, again,
        "a resend with the same nonce returns the first message"
    );
    assert_eq!(emu.messages(CHANNEL).len(), 1);
    assert_eq!(emu.seen()[0].body["nonce"], "hr00112233445566778899");
    assert_eq!(emu.seen()[0].body["enforce_nonce"], true);
}

#[tokio::test]
async fn bucket_headers_and_429_are_classified() {
    let (_emu, discord, to) = setup().await;
    for i in 0..5 {
        surfaced(
            &discord
                .post(&to, &outbound(MessageKind::Progress, &format!("m{i}"), None))
                .await,
        );
    }
    // The fifth answer said Remaining: 0.
    let wait = discord
        .exhausted_for(&to, Call::Post)
        .expect("exhausted after 5 creates");
    assert!(
        wait > Duration::from_secs(3) && wait <= Duration::from_secs(5),
        "{wait:?}"
    );
    match not_surfaced(
        discord
            .post(&to, &outbound(MessageKind::Progress, "m6", None))
            .await,
    ) {
        NotSurfaced::RateLimited { retry_after, global } => {
            assert!(!global);
            assert!(retry_after > Duration::from_secs(3), "{retry_after:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn global_rate_limit_is_flagged_global() {
    let (emu, discord, to) = setup().await;
    emu.inject(vec![Fault::GlobalRateLimit(0.75)]);
    match not_surfaced(
        discord
            .post(&to, &outbound(MessageKind::Progress, "x", None))
            .await,
    ) {
        NotSurfaced::RateLimited { retry_after, global } => {
            assert!(global);
            assert_eq!(retry_after, Duration::from_millis(750));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn permanent_errors_are_permanent() {
    let (emu, discord, _) = setup().await;
    let msg = outbound(MessageKind::Progress, "x", None);
    // 401: bad token.
    let wrong = DiscordAdapter::new(Some(&emu.api_url()), "nope", Duration::from_secs(2)).unwrap();
    assert!(matches!(
        not_surfaced(wrong.post(&ChannelRef::new(CHANNEL), &msg).await),
        NotSurfaced::Permanent { .. }
    ));
    // 403 50001 and 50013.
    emu.forbid("222", 50001);
    emu.forbid("333", 50013);
    for ch in ["222", "333"] {
        match not_surfaced(discord.post(&ChannelRef::new(ch), &msg).await) {
            NotSurfaced::Permanent { reason } => assert!(reason.contains("500"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
    // 404 10003 Unknown Channel.
    match not_surfaced(discord.post(&ChannelRef::new("999"), &msg).await) {
        NotSurfaced::Permanent { reason } => assert!(reason.contains("10003"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // 400 50035 Invalid Form Body.
    emu.inject(vec![Fault::Error(400, 50035, "Invalid Form Body")]);
    assert!(matches!(
        not_surfaced(discord.post(&ChannelRef::new(CHANNEL), &msg).await),
        NotSurfaced::Permanent { .. }
    ));
}

#[tokio::test]
async fn deleted_message_on_edit_is_gone() {
    let (emu, discord, to) = setup().await;
    let id = surfaced(
        &discord
            .post(&to, &outbound(MessageKind::Progress, "x", None))
            .await,
    );
    emu.delete(CHANNEL, &id);
    assert_eq!(
        not_surfaced(
            discord
                .edit(
                    &to,
                    &MessageHandle(id),
                    &outbound(MessageKind::Progress, "y", None)
                )
                .await
        ),
        NotSurfaced::Gone
    );
}

#[tokio::test]
async fn server_errors_and_refused_connections_are_transient() {
    let (emu, discord, to) = setup().await;
    let msg = outbound(MessageKind::Progress, "x", None);
    emu.inject(vec![
        Fault::Error(500, 0, "Internal Server Error"),
        Fault::BadGateway,
    ]);
    assert!(matches!(
        not_surfaced(discord.post(&to, &msg).await),
        NotSurfaced::Transient { .. }
    ));
    assert!(matches!(
        not_surfaced(discord.post(&to, &msg).await),
        NotSurfaced::Transient { .. }
    ));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/v10", closed.local_addr().unwrap());
    drop(closed);
    let nowhere = DiscordAdapter::new(Some(&url), TOKEN, Duration::from_secs(2)).unwrap();
    assert!(matches!(
        not_surfaced(nowhere.post(&to, &msg).await),
        NotSurfaced::Transient { .. }
    ));
}

#[tokio::test]
async fn applied_but_unanswered_is_unverified_and_the_resend_dedupes() {
    let emu = DiscordEmulator::start(TOKEN, &[CHANNEL]).await;
    let discord = DiscordAdapter::new(Some(&emu.api_url()), TOKEN, Duration::from_millis(500)).unwrap();
    let to = ChannelRef::new(CHANNEL);
    emu.inject(vec![Fault::ApplyThenHang]);
    let msg = outbound(MessageKind::Terminal, "done", Some("hrfeedfacefeedfacefeed"));
    assert!(matches!(
        not_surfaced(discord.post(&to, &msg).await),
        NotSurfaced::Unverified { .. }
    ));
    surfaced(&discord.post(&to, &msg).await);
    assert_eq!(
        emu.messages(CHANNEL).len(),
        1,
        "the resend returned the applied message"
    );
}

#[tokio::test]
async fn a_slow_answer_within_the_timeout_still_surfaces() {
    let (emu, discord, to) = setup().await;
    emu.inject(vec![Fault::Delay(Duration::from_millis(800))]);
    let started = Instant::now();
    surfaced(
        &discord
            .post(&to, &outbound(MessageKind::Progress, "slow", None))
            .await,
    );
    assert!(started.elapsed() >= Duration::from_millis(800));
}

#[tokio::test]
async fn a_ten_thousand_character_summary_is_cut_to_fit() {
    let (emu, discord, to) = setup().await;
    let huge = "x".repeat(10_000);
    surfaced(
        &discord
            .post(&to, &outbound(MessageKind::Terminal, &huge, Some("hrlong")))
            .await,
    );
    let m = &emu.messages(CHANNEL)[0];
    assert!(m["content"].as_str().unwrap().chars().count() <= 2000);
    assert!(m["content"].as_str().unwrap().ends_with('…'));
}

// ---- end to end through the real binary ----

fn config(emu: &DiscordEmulator, extra_channel: &str) -> String {
    format!(
        r#"
[[sources]]
name = "fleet"
token = "test-token"

[adapters.discord]
token = "{TOKEN}"
api_url = "{}"
timeout = "3s"

[channels.builds]
adapter = "discord"
id = "{CHANNEL}"
{extra_channel}

[defaults]
channels = ["builds"]

[delivery]
retry_schedule = ["200ms", "400ms"]
progress_min_interval = "100ms"
"#,
        emu.api_url()
    )
}

#[tokio::test]
async fn end_to_end_terminal_once_across_apply_then_drop() {
    let emu = DiscordEmulator::start(TOKEN, &[CHANNEL]).await;
    let h = Herald::start(&config(&emu, "progress = false"));
    emu.inject(vec![Fault::ApplyThenHang]);
    h.post_events(&event(
        "r",
        "w",
        "t",
        1,
        "completed",
        json!({"summary": "@everyone it works"}),
    ))
    .await;
    h.wait_for("surfaced receipt", Duration::from_secs(15), || async {
        let (_, body) = h.get("/v1/deliveries?status=surfaced").await;
        (body["deliveries"].as_array()?.len() == 1).then_some(())
    })
    .await;
    let msgs = emu.messages(CHANNEL);
    assert_eq!(msgs.len(), 1, "exactly one terminal notification: {msgs:?}");
    let creates: Vec<_> = emu.seen().into_iter().filter(|s| s.method == "POST").collect();
    assert_eq!(creates.len(), 2, "the first answer was dropped, so herald resent");
    assert_eq!(creates[0].body["nonce"], creates[1].body["nonce"]);
    let content = msgs[0]["content"].as_str().unwrap();
    assert!(!content.contains("@everyone"), "{content}");
    assert!(content.contains("completed"), "{content}");
    for s in emu.seen() {
        assert_eq!(s.body["allowed_mentions"]["parse"], json!([]));
    }
}

#[tokio::test]
async fn end_to_end_progress_is_edited_in_place() {
    let emu = DiscordEmulator::start(TOKEN, &[CHANNEL]).await;
    let h = Herald::start(&config(&emu, ""));
    h.post_events(&event("r", "w", "t", 1, "running", json!({})))
        .await;
    for seq in 2..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
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
    h.post_events(&event("r", "w", "t", 6, "completed", json!({"summary": "green"})))
        .await;
    h.wait_for("final edit and notification", Duration::from_secs(20), || async {
        let msgs = emu.messages(CHANNEL);
        let progress_done = msgs.first()?["content"].as_str()?.contains("completed");
        (msgs.len() == 2 && progress_done).then_some(())
    })
    .await;
    let seen = emu.seen();
    let posts = seen.iter().filter(|s| s.method == "POST").count();
    let patches = seen.iter().filter(|s| s.method == "PATCH").count();
    assert_eq!(posts, 2, "one progress message and one notification");
    assert!(patches >= 1, "progress was edited, not re-posted");
    assert_eq!(emu.rate_limited(), 0);
}

#[tokio::test]
async fn end_to_end_fifty_busy_tasks_earn_no_429() {
    let emu = DiscordEmulator::start(TOKEN, &[CHANNEL]).await;
    let h = Herald::start(&config(&emu, ""));
    let started = Instant::now();
    let mut seq = 0;
    while started.elapsed() < Duration::from_secs(12) {
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen = emu.seen();
    let posts = seen
        .iter()
        .filter(|s| s.method == "POST" && s.status == 200)
        .count();
    let patches = seen
        .iter()
        .filter(|s| s.method == "PATCH" && s.status == 200)
        .count();
    eprintln!(
        "12 s, 50 busy tasks: {posts} creates, {patches} edits, {} 429s",
        emu.rate_limited()
    );
    assert_eq!(emu.rate_limited(), 0, "herald earned a 429");
    assert!(
        emu.early().is_empty(),
        "requests inside a retry-after: {:?}",
        emu.early()
    );
    // Discord allows 5 per fixed 5 s window per bucket, counted from the
    // first call: what that allows up to the end of the run, of each kind.
    let end = Instant::now();
    let allowed = |method: &str| {
        let first = seen.iter().find(|s| s.method == method).map(|s| s.at)?;
        Some(5 * ((end - first).as_secs() / 5 + 1) as usize)
    };
    let (allowed_posts, allowed_patches) = (allowed("POST").unwrap(), allowed("PATCH").unwrap());
    eprintln!("allowed: {allowed_posts} creates, {allowed_patches} edits");
    assert!(
        posts * 10 >= allowed_posts * 9,
        "{posts} creates of {allowed_posts} allowed: under 0.9 of the rate"
    );
    assert!(
        patches * 10 >= allowed_patches * 9,
        "{patches} edits of {allowed_patches} allowed: under 0.9 of the rate"
    );
}

#[tokio::test]
async fn a_restart_spends_the_same_windows_and_earns_no_429() {
    let emu = DiscordEmulator::start(TOKEN, &[CHANNEL]).await;
    let mut h = Herald::start(&config(&emu, "progress = false"));
    // Ten notifications: five fill the 5-per-5-s create bucket at once.
    let batch: Vec<_> = (0..10)
        .map(|t| event("r", "w", &format!("t{t}"), 1, "completed", json!({})))
        .collect();
    h.post_events(&json!(batch)).await;
    h.wait_for("the first five", Duration::from_secs(10), || async {
        (emu.messages(CHANNEL).len() >= 5).then_some(())
    })
    .await;
    // A crash right after: a herald that forgot its windows would send the
    // other five at once into a full bucket.
    h.kill9();
    h.spawn();
    h.wait_for("all ten", Duration::from_secs(20), || async {
        (emu.messages(CHANNEL).len() == 10).then_some(())
    })
    .await;
    assert_eq!(emu.rate_limited(), 0, "the restarted herald earned a 429");
    assert!(emu.early().is_empty(), "{:?}", emu.early());
    let creates: Vec<Instant> = emu
        .seen()
        .iter()
        .filter(|s| s.method == "POST" && s.status == 200)
        .map(|s| s.at)
        .collect();
    assert!(
        creates[5] - creates[0] >= Duration::from_secs(5),
        "the sixth create came {:?} after the first",
        creates[5] - creates[0]
    );
}

/// A live message whose post was applied but unanswered is resent with the
/// same nonce, by then carrying a newer state; Discord answers with the
/// message as it first landed, unchanged. herald must then edit it to the
/// newest state instead of taking the resend's text as shown (the chaos
/// crash test left such messages at "running" for good).
#[tokio::test]
async fn a_live_message_resent_by_nonce_is_edited_to_the_newest_state() {
    let emu = DiscordEmulator::start(TOKEN, &[CHANNEL]).await;
    let h = Herald::start(&config(&emu, ""));
    emu.inject(vec![Fault::ApplyThenHang]);
    h.post_events(&event("r", "w", "t", 1, "running", json!({})))
        .await;
    // While the first post hangs (3 s timeout), the task moves on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.post_events(&event(
        "r",
        "w",
        "t",
        2,
        "running_tool",
        json!({"tool": "step two"}),
    ))
    .await;
    h.wait_for(
        "the live message shows the newer state",
        Duration::from_secs(20),
        || async {
            let msgs = emu.messages(CHANNEL);
            (msgs.len() == 1 && msgs[0]["content"].as_str()?.contains("running tool")).then_some(())
        },
    )
    .await;
    let seen = emu.seen();
    let posts: Vec<_> = seen.iter().filter(|s| s.method == "POST").collect();
    assert_eq!(posts.len(), 2, "the hung post was resent once");
    assert_eq!(posts[0].body["nonce"], posts[1].body["nonce"]);
    assert!(
        seen.iter().any(|s| s.method == "PATCH"),
        "the adopted message was edited to the newest state"
    );
}
