//! Slack incoming-webhook channels end to end: the real binary posts
//! terminal notifications (`{text, blocks}`, escaped like the Slack bot's)
//! to the emulator (`emulators/slack_webhook.rs`), at most one a second
//! per webhook (0 429s, 0 requests inside a retry-after); Slack's error
//! codes fail a notification for good with the code as the reason; the
//! webhook URL, which is its credential, shows nowhere.

mod common;
mod emulators;

use std::time::{Duration, Instant};

use common::{Herald, event};
use emulators::slack_webhook::{Hook, SlackWebhookEmulator};
use serde_json::{Value, json};

fn config(url: &str) -> String {
    format!(
        "[[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n\
         [channels.team]\nadapter = \"slack_webhook\"\nurl = \"{url}\"\ntimeout = \"1s\"\n\n\
         [[routes]]\nmatch = {{ run_id = \"r\" }}\nchannels = [\"team\"]\n\n\
         [delivery]\nretry_schedule = [\"100ms\", \"200ms\"]\n"
    )
}

#[tokio::test]
async fn notifications_arrive_escaped_one_a_second_and_never_early() {
    let slack = SlackWebhookEmulator::start().await;
    let url = slack.hook("k1", Hook::Working);
    let h = Herald::start(&config(&url));
    let started = Instant::now();
    let events: Vec<Value> = (0..4)
        .map(|i| {
            event(
                "r",
                "w",
                &format!("t{i}"),
                1,
                "failed",
                json!({"reason": format!("boom <!channel> {i}")}),
            )
        })
        .collect();
    assert_eq!(h.post_events(&json!(events)).await.0, 202);
    h.wait_deliveries("surfaced", 4).await;
    let elapsed = started.elapsed();
    let messages = slack.messages("k1");
    assert_eq!(messages.len(), 4);
    for m in &messages {
        let text = m["text"].as_str().unwrap();
        assert!(text.contains("w · t") && text.contains("failed"), "{text}");
        assert!(
            !text.contains("<!channel>") && text.contains("&lt;!channel&gt;"),
            "{text}"
        );
        assert!(m["blocks"].as_array().is_some_and(|b| !b.is_empty()), "{m}");
    }
    assert!(
        elapsed >= Duration::from_secs(3),
        "4 messages at one a second took {elapsed:?}"
    );
    assert_eq!(slack.rate_limited(), 0, "over Slack's one a second");
    assert!(slack.early().is_empty(), "{:?}", slack.early());
}

#[tokio::test]
async fn slacks_error_codes_fail_a_notification_for_good() {
    let slack = SlackWebhookEmulator::start().await;
    for (hook, code) in [
        (Some(Hook::Archived), "channel_is_archived"),
        (Some(Hook::Prohibited), "action_prohibited"),
        (None, "no_service"),
    ] {
        let url = match hook {
            Some(kind) => slack.hook(code, kind),
            None => format!("http://{}/services/T0001/B0001/revoked", slack.addr),
        };
        let h = Herald::start(&config(&url));
        h.post_events(&json!([event(
            "r",
            "w",
            "t",
            1,
            "failed",
            json!({"reason": "x"})
        )]))
        .await;
        let failed = h.wait_deliveries("failed", 1).await;
        let error = failed[0]["last_error"].as_str().unwrap();
        assert!(error.contains(code), "{code}: {error}");
        assert_eq!(failed[0]["attempts"], 1, "{code} is never retried");
    }
}

#[tokio::test]
async fn the_webhook_url_never_shows_in_logs_or_answers() {
    let slack = SlackWebhookEmulator::start().await;
    // Lost answers make herald log retries, with reasons naming the host.
    slack.chaos(Some(emulators::chaos::Chaos::new(0.3, 0.2, 7)));
    let url = slack.hook("s3cr3tk3yABCDEF", Hook::Working);
    let h = Herald::start(&config(&url));
    let events: Vec<Value> = (0..3)
        .map(|i| event("r", "w", &format!("t{i}"), 1, "completed", json!({})))
        .collect();
    h.post_events(&json!(events)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    slack.chaos(None);
    h.wait_deliveries("surfaced", 3).await;
    let (_, all) = h.get("/v1/deliveries").await;
    assert!(!all.to_string().contains("s3cr3tk3yABCDEF"), "{all}");
    let log = h.log.lock().unwrap().join("\n");
    assert!(!log.contains("s3cr3tk3yABCDEF"), "{log}");
    // Lost answers are resent: at least once, never lost.
    assert!(slack.messages("s3cr3tk3yABCDEF").len() >= 3);
}
