//! The pages in a real browser (SPEC §3 `GET /`; docs/operations.md):
//! Debian's Chromium driven by playwright-core (`tests/browser/run.mjs`,
//! both installed by `scripts/test`, no browser download) against the real
//! binary.
//!
//! * `herald demo`: the overview shows running and completed tasks within
//!   10 s, and a card of the channel page is edited in place (the same
//!   element, a new state) when its task moves;
//! * a failed webhook receipt: the overview, logged in by HTTP Basic with a
//!   read token, shows it and its error, and its replay button (asking for
//!   a source token) drives it again until the receiver has it;
//! * a channel with more messages than a page keeps: 500 cards, and still
//!   500 as new ones stream in on top.
//!
//! Screenshots of each page land in `target/browser/` for people to look at.
//! Where Chromium could not be installed the tests say so and skip.

mod common;
mod emulators;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Demo, Herald, event};
use emulators::webhook::{Receiver, Reply};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser")
}

/// Whether the browser and its driver are installed; if not, say why.
fn installed() -> bool {
    let chromium = std::env::var("HERALD_CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_owned());
    if !Path::new(&chromium).exists() {
        eprintln!("SKIPPED: {chromium} is not installed (scripts/test installs Debian's chromium)");
        return false;
    }
    if !browser_dir().join("node_modules/playwright-core").exists() {
        eprintln!("SKIPPED: playwright-core is not installed (scripts/test runs npm ci in tests/browser)");
        return false;
    }
    true
}

/// Run one scenario of `run.mjs`; its measurements, or a panic with what
/// the browser saw.
async fn scenario(name: &str, base: &str, env: &[(&str, &str)]) -> Value {
    // Every wait in run.mjs has its own deadline, so the script ends.
    let mut command = Command::new("node");
    command
        .arg(browser_dir().join("run.mjs"))
        .args([name, base])
        .arg(screenshots())
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("node runs (Node.js is on the machine; see the env notes)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser scenario {name} failed:\n{stdout}\n{stderr}"
    );
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    eprintln!("{name}: {result}");
    result
}

#[tokio::test]
async fn the_demo_overview_counts_tasks_and_its_channel_edits_cards_in_place() {
    if !installed() {
        return;
    }
    // The demo as the README starts it (20 workers, its own pace), on a
    // free port and a file of its own.
    let demo = Demo::start(&[]);
    let result = scenario("demo", &demo.base(), &[]).await;
    assert!(result["countsAfterMs"].as_u64() < Some(10_000), "{result}");
    assert_ne!(result["editedFrom"], result["editedTo"]);
    for shot in ["overview.png", "overview-dark.png", "channel.png"] {
        let size = std::fs::metadata(screenshots().join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size > 10_000, "{shot}: {size} bytes");
    }
}

const READ: &str = "reader-9f3b2c";
const SOURCE: &str = "source-41d7e0";

#[tokio::test]
async fn the_replay_button_drives_a_failed_receipt_again() {
    if !installed() {
        return;
    }
    // Gone for the first notification (410: given up at once), then fine.
    let hook = Receiver::start(vec![Reply::Status(410)]).await;
    let h = Herald::start_full(|dir| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nread_tokens = [\"{READ}\"]\n\n[store]\nurl = \"{}\"\n\n\
             [[sources]]\nname = \"fleet\"\ntoken = \"{SOURCE}\"\n\n\
             [channels.main]\nadapter = \"web\"\n\n\
             [channels.hook]\nadapter = \"webhook\"\nurl = \"{}\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\n\
             [defaults]\nchannels = [\"main\", \"hook\"]\n\n[delivery]\nretry_schedule = [\"100ms\"]\n",
            common::store::url(dir),
            hook.url()
        )
    });
    let failed = h
        .client
        .post(h.url("/v1/events"))
        .bearer_auth(SOURCE)
        .json(&json!([event(
            "nightly",
            "w1",
            "build",
            1,
            "failed",
            json!({"reason": "linker error"})
        )]))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status().as_u16(), 202);
    let result = scenario(
        "replay",
        &h.base,
        &[("HERALD_READ_TOKEN", READ), ("HERALD_SOURCE_TOKEN", SOURCE)],
    )
    .await;
    assert_eq!(result["replayed"], true);
    // The receiver has the notification: refused once, then delivered.
    let got = hook.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].headers["webhook-id"], got[1].headers["webhook-id"]);
    let receipts = h
        .client
        .get(h.url("/v1/deliveries?channel=hook"))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(receipts["deliveries"][0]["status"], "surfaced", "{receipts}");
}

#[tokio::test]
async fn a_channel_page_keeps_the_newest_500_cards_as_more_arrive() {
    if !installed() {
        return;
    }
    let h = Herald::start(common::WEB_ONLY);
    // 300 tasks: a live message and a notification each, 600 in all.
    for chunk in 0..3 {
        let batch: Vec<Value> = (0..100)
            .map(|n| {
                let task = format!("t{:03}", chunk * 100 + n);
                event("r", "w", &task, 1, "completed", json!({}))
            })
            .collect();
        assert_eq!(h.post_events(&Value::Array(batch)).await.0, 202);
    }
    h.wait_for("600 web messages", Duration::from_secs(30), || async {
        let (_, body) = h.get("/channels/main/messages").await;
        // The page's snapshot is capped at 500 too; the last one posted
        // being there means all were.
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let last = messages
            .iter()
            .any(|m| m["body"]["kind"] == "terminal" && m["body"].to_string().contains("t299"));
        (messages.len() == 500 && last).then_some(())
    })
    .await;
    let result = scenario("cap", &h.base, &[("HERALD_SOURCE_TOKEN", "test-token")]).await;
    assert_eq!(result["cards"], 500);
}
