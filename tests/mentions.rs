//! Mentions (SPEC §5.4, §6.12): `mention_on_failure` on a channel and on a
//! route pings exactly those people on failure and attention
//! notifications, on Discord (`allowed_mentions` listing exactly them),
//! Slack and Telegram; text from events — `@everyone`, `<@id>`, `<!here>`,
//! `@username` — pings no one, and a task that ends well pings no one.
//! The emulators parse mentions as each platform does.

mod common;
mod emulators;

use std::time::Duration;

use common::{Herald, event};
use emulators::discord::DiscordEmulator;
use emulators::slack::SlackEmulator;
use emulators::telegram::{ChatKind, TelegramEmulator};
use serde_json::json;

const CHAT: i64 = 4400;

#[tokio::test]
async fn only_configured_mentions_ping_and_only_on_failures() {
    let discord = DiscordEmulator::start("dtoken", &["9001"]).await;
    let slack = SlackEmulator::start("xoxb-t", &["C1"]).await;
    let telegram = TelegramEmulator::start("1:tg").await;
    telegram.chat(CHAT, ChatKind::Group);
    let config = format!(
        "[[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n\
         [adapters.discord]\ntoken = \"dtoken\"\napi_url = \"{}\"\n\n\
         [adapters.slack]\ntoken = \"xoxb-t\"\napi_url = \"{}\"\n\n\
         [adapters.telegram]\ntoken = \"1:tg\"\napi_url = \"{}\"\n\n\
         [channels.d]\nadapter = \"discord\"\nid = \"9001\"\nmention_on_failure = [\"<@111>\", \"<@&222>\"]\n\n\
         [channels.s]\nadapter = \"slack\"\nid = \"C1\"\nmention_on_failure = [\"<@U024BE7LH>\"]\n\n\
         [channels.t]\nadapter = \"telegram\"\nid = \"{CHAT}\"\nmention_on_failure = [\"tg://user?id=4242\"]\n\n\
         [[routes]]\nmatch = {{ run_id = \"nightly\" }}\nchannels = [\"d\", \"s\", \"t\"]\n\
         mention_on_failure = [\"<!subteam^SAZ94GDB8>\", \"<@333>\"]\n\n\
         [defaults]\nchannels = [\"d\", \"s\", \"t\"]\n\n\
         [delivery]\nretry_schedule = [\"200ms\", \"500ms\"]\nprogress_min_interval = \"200ms\"\n",
        discord.api_url(),
        slack.api_url(),
        telegram.api_url(),
    );
    let h = Herald::start(&config);
    let hostile = "boom @everyone @here <@999> <@&998> <!here> <!channel> <@U0EVIL> @admin_user";
    let (status, body) = h
        .post_events(&json!([
            event("nightly", "w", "broken", 1, "failed", json!({"reason": hostile})),
            event(
                "nightly",
                "w",
                "fine",
                1,
                "completed",
                json!({"summary": hostile})
            ),
            event("adhoc", "w", "other", 1, "failed", json!({"reason": "exit 1"})),
        ]))
        .await;
    assert_eq!(status, 202, "{body}");
    // Two failures and one completion, each with a live message and a
    // notification per platform.
    h.wait_for("every notification", Duration::from_secs(30), || async {
        let d = discord.messages("9001").len();
        let s = slack.messages("C1").len();
        let t = telegram.messages(CHAT).len();
        (d >= 6 && s >= 6 && t >= 6).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut discord_pings: Vec<String> = discord.pings().into_iter().map(|(_, who)| who).collect();
    discord_pings.sort();
    // nightly/broken: the channel's two and the route's user; adhoc/other:
    // the channel's two. Nothing from the event text, nothing for `fine`.
    assert_eq!(
        discord_pings,
        ["role:222", "role:222", "user:111", "user:111", "user:333"],
        "{:?}",
        discord.pings()
    );
    let mut slack_pings: Vec<String> = slack.pings().into_iter().map(|(_, who)| who).collect();
    slack_pings.sort();
    assert_eq!(
        slack_pings,
        ["U024BE7LH", "U024BE7LH", "subteam:SAZ94GDB8"],
        "{:?}",
        slack.pings()
    );
    let mut telegram_pings: Vec<String> = telegram.pings().into_iter().map(|(_, who)| who).collect();
    telegram_pings.sort();
    assert_eq!(
        telegram_pings,
        ["user:4242", "user:4242"],
        "{:?}",
        telegram.pings()
    );
    // The hostile text is shown, defused.
    assert!(
        discord
            .messages("9001")
            .iter()
            .any(|m| m.to_string().contains("@\u{200B}everyone")),
        "the failure reason is shown"
    );
    assert_eq!(
        discord.rate_limited() + slack.rate_limited() + telegram.rate_limited(),
        0
    );
}
