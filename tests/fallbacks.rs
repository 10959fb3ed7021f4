//! Delivery contracts on herald's side (SPEC §6.10) through the real binary:
//! a notification its channel fails for good (a Slack webhook whose channel
//! was archived), or has not surfaced within `[contracts] surface_within`
//! (a webhook receiver that is down), is also sent once to the channel's
//! `fallback`, marked as a fallback and naming the channel that missed; the
//! miss is journaled with the task, listed on `/v1/deliveries`, counted in
//! `herald_delivery_sla_missed_total{channel}`; the channel that missed
//! keeps retrying; a channel that delivers in time never falls back.

mod common;
mod emulators;

use std::time::{Duration, Instant};

use common::{Herald, event};
use emulators::slack_webhook::{Hook, SlackWebhookEmulator};
use serde_json::{Value, json};

fn config(channels: &str, contracts: &str) -> String {
    format!(
        "[[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n{channels}\n\
         [delivery]\nprogress_min_interval = \"50ms\"\nretry_schedule = [\"200ms\", \"500ms\"]\n\n\
         [contracts]\n{contracts}\n"
    )
}

async fn missed_total(h: &Herald, channel: &str) -> i64 {
    h.metric(&format!(
        "herald_delivery_sla_missed_total{{channel=\"{channel}\"}}"
    ))
    .await
    .unwrap_or(0)
}

fn of_channel(deliveries: &[Value], channel: &str) -> Vec<Value> {
    deliveries
        .iter()
        .filter(|d| d["channel"] == channel)
        .cloned()
        .collect()
}

/// Herald's journaled misses of a task.
async fn journaled_misses(h: &Herald, task: &str) -> Vec<Value> {
    h.journal("r", "w", task)
        .await
        .into_iter()
        .filter(|e| e["event"]["extra"]["condition"] == "missed")
        .collect()
}

#[tokio::test]
async fn a_notification_its_channel_fails_for_good_goes_to_the_fallback_once() {
    let slack = SlackWebhookEmulator::start().await;
    let archived = slack.hook("archived", Hook::Archived);
    let team = slack.hook("team", Hook::Working);
    let h = Herald::start(&config(
        &format!(
            "[channels.ops]\nadapter = \"slack_webhook\"\nurl = \"{archived}\"\nfallback = \"team\"\n\n\
             [channels.team]\nadapter = \"slack_webhook\"\nurl = \"{team}\"\n\n\
             [defaults]\nchannels = [\"ops\"]\n"
        ),
        "",
    ));
    h.post_events(&json!([event(
        "r",
        "w",
        "build",
        1,
        "completed",
        json!({"summary": "all green"})
    )]))
    .await;
    let message = h
        .wait_for("the fallback's message", Duration::from_secs(10), || async {
            slack.messages("team").into_iter().next()
        })
        .await;
    let text = message["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("w · build (fallback for ops)") && text.contains("all green"),
        "{text}"
    );
    // The blocks say why.
    let blocks = message["blocks"].to_string();
    assert!(
        blocks.contains("fallback for") && blocks.contains("channel_is_archived"),
        "{blocks}"
    );
    // Listed: the miss on the receipt that missed, the fallback naming it.
    let all = h
        .wait_for("the fallback surfaced", Duration::from_secs(5), || async {
            let all = h.deliveries(None).await;
            of_channel(&all, "team")
                .iter()
                .any(|d| d["status"] == "surfaced")
                .then_some(all)
        })
        .await;
    let ops = &of_channel(&all, "ops")[0];
    assert_eq!(ops["status"], "failed");
    assert!(
        ops["missed_at"]
            .as_str()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
        "{ops}"
    );
    let reason = ops["miss_reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("failed: ") && reason.contains("410"),
        "{reason}"
    );
    let fallback = &of_channel(&all, "team")[0];
    assert_eq!(fallback["fallback_for"], "ops");
    assert_eq!(fallback["state"], "completed");
    // Journaled and counted, once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(slack.messages("team").len(), 1);
    let misses = journaled_misses(&h, "build").await;
    assert_eq!(misses.len(), 1, "{misses:#?}");
    assert_eq!(misses[0]["event"]["channel"], "team");
    assert_eq!(misses[0]["event"]["extra"]["missed_channel"], "ops");
    assert_eq!(missed_total(&h, "ops").await, 1);
    // The task itself is unchanged by the miss.
    let (_, workers) = h.get("/v1/workers?run_id=r").await;
    assert_eq!(workers["workers"][0]["state"], "completed", "{workers}");
}

#[tokio::test]
async fn a_notification_not_surfaced_within_surface_within_also_goes_to_the_fallback() {
    // A receiver that is down: nothing listens on this port.
    let down = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("http://{}/hook", down.local_addr().expect("its address"));
    drop(down);
    let mut h = Herald::start(&config(
        &format!(
            "[channels.hook]\nadapter = \"webhook\"\nurl = \"{url}\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\
             fallback = \"main\"\n\n\
             [channels.main]\nadapter = \"web\"\nfallback = \"hook\"\n\n\
             [[routes]]\nmatch = {{ task_id = \"late\" }}\nchannels = [\"hook\"]\n\n\
             [defaults]\nchannels = [\"main\"]\n"
        ),
        "surface_within = \"2s\"",
    ));
    let started = Instant::now();
    h.post_events(&json!([
        event("r", "w", "late", 1, "failed", json!({"reason": "exit 2"})),
        // Delivered in time on the web channel: never falls back.
        event("r", "w", "fine", 1, "completed", json!({"summary": "ok"})),
    ]))
    .await;
    let note = h
        .wait_for(
            "the fallback on the web channel",
            Duration::from_secs(10),
            || async {
                let (_, body) = h.get("/channels/main/messages").await;
                body["messages"].as_array()?.iter().find_map(|m| {
                    (m["body"]["title"] == "w · late (fallback for hook)").then(|| m["body"].clone())
                })
            },
        )
        .await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "before surface_within: {waited:?}"
    );
    assert!(waited < Duration::from_secs(6), "late: {waited:?}");
    assert_eq!(note["state"], "failed");
    let fields = note["fields"].as_array().cloned().unwrap_or_default();
    assert!(
        fields
            .iter()
            .any(|f| f["name"] == "fallback for" && f["value"] == "hook: not surfaced within 2s"),
        "{fields:?}"
    );
    // The webhook keeps trying; the miss is recorded once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = h.deliveries(None).await;
    let hook = of_channel(&all, "hook");
    assert_eq!(hook.len(), 1, "{all:#?}");
    assert!(
        hook[0]["status"] == "pending" || hook[0]["status"] == "sending",
        "{hook:#?}"
    );
    assert_eq!(hook[0]["miss_reason"], "not surfaced within 2s");
    let main = of_channel(&all, "main");
    assert_eq!(main.len(), 2, "the task in time and the fallback: {main:#?}");
    assert!(main.iter().all(|d| d["missed_at"].is_null()));
    assert_eq!(missed_total(&h, "hook").await, 1);
    assert_eq!(missed_total(&h, "main").await, 0);
    // A restart finds the miss recorded: nothing is sent twice.
    h.kill9();
    h.spawn();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, body) = h.get("/channels/main/messages").await;
    let fallbacks = body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m["body"]["title"] == "w · late (fallback for hook)")
        .count();
    assert_eq!(fallbacks, 1);
    assert_eq!(journaled_misses(&h, "late").await.len(), 1);
}

#[tokio::test]
async fn a_fallback_must_be_a_channel_other_than_its_own() {
    let dir = tempfile_dir();
    for (fallback, wanted) in [
        ("nowhere", "unknown channel \"nowhere\""),
        ("main", "cannot be its own fallback"),
    ] {
        let path = dir.join(format!("{fallback}.toml"));
        std::fs::write(
            &path,
            format!("[channels.main]\nadapter = \"web\"\nfallback = \"{fallback}\"\n\n[contracts]\nsurface_within = \"5m\"\n"),
        )
        .expect("write the config");
        let out = std::process::Command::new(common::herald_bin())
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .expect("run check-config");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(wanted) && stderr.contains(":3:12"), "{stderr}");
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-fallbacks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir
}
