//! The overview (SPEC §3 `GET /`; docs/operations.md) on the real binary:
//! `GET /v1/overview` counts tasks by phase and run, lists what needs
//! attention and every channel's delivery health (pending, failed, oldest
//! pending, last error redacted, 429s); `GET /v1/overview/events` streams
//! it as it changes; both need a read token where `read_tokens` is set,
//! Basic or Bearer.

mod common;
mod emulators;

use std::time::Duration;

use common::{Herald, event};
use emulators::webhook::{Receiver, Reply};
use serde_json::{Value, json};

/// A secret in a webhook URL's query: never in the overview.
const URL_SECRET: &str = "s3cr3t-in-the-url";

fn config(gone: &Receiver, busy: &Receiver) -> String {
    format!(
        r#"
[[sources]]
name = "fleet"
token = "test-token"

[channels.main]
adapter = "web"

[channels.gone]
adapter = "webhook"
url = "{}?key={URL_SECRET}"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[channels.busy]
adapter = "webhook"
url = "{}"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[defaults]
channels = ["main", "gone", "busy"]

[delivery]
progress_min_interval = "50ms"
retry_schedule = ["100ms", "30s"]
"#,
        gone.url(),
        busy.url()
    )
}

fn tally(list: &Value, state: &str) -> i64 {
    list.as_array()
        .and_then(|l| l.iter().find(|t| t["state"] == state))
        .and_then(|t| t["tasks"].as_i64())
        .unwrap_or(-1)
}

fn channel<'a>(overview: &'a Value, name: &str) -> &'a Value {
    overview["channels"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn the_overview_counts_tasks_and_shows_each_channels_delivery_health() {
    // `gone` answers 410 (given up at once), `busy` a 429 then 500s.
    let gone = Receiver::start(vec![Reply::Status(410), Reply::Status(410)]).await;
    let mut answers = vec![Reply::RetryAfter(1)];
    answers.extend(std::iter::repeat_n(Reply::Status(500), 20));
    let busy = Receiver::start(answers).await;
    let h = Herald::start(&config(&gone, &busy));
    let batch = json!([
        event("nightly", "w1", "t1", 1, "running", json!({})),
        event(
            "nightly",
            "w1",
            "t2",
            1,
            "completed",
            json!({"summary": "t2 done"})
        ),
        event("nightly", "w2", "t3", 1, "failed", json!({"reason": "disk full"})),
        event("canary", "w9", "t4", 1, "model_wait", json!({"model": "m"})),
    ]);
    assert_eq!(h.post_events(&batch).await.0, 202);

    let overview = h
        .wait_for(
            "both webhooks' receipts to settle",
            Duration::from_secs(15),
            || async {
                let (status, o) = h.get("/v1/overview").await;
                assert_eq!(status, 200, "{o}");
                let settled = channel(&o, "gone")["failed"] == 2
                    && channel(&o, "busy")["pending"] == 2
                    && channel(&o, "busy")["rate_limited_last_hour"].as_u64() >= Some(1)
                    && channel(&o, "busy")["last_error"].is_string();
                settled.then_some(o)
            },
        )
        .await;
    // Headline phases: model_wait counts as running.
    assert_eq!(tally(&overview["phases"], "running"), 2, "{overview}");
    assert_eq!(tally(&overview["phases"], "completed"), 1);
    assert_eq!(tally(&overview["phases"], "failed"), 1);
    assert_eq!(tally(&overview["phases"], "stale"), 0);
    assert_eq!(tally(&overview["counts"], "model_wait"), 1);
    // Runs, newest event first, with their own tallies.
    let runs = overview["runs"].as_array().unwrap();
    let nightly = runs.iter().find(|r| r["run_id"] == "nightly").unwrap();
    assert_eq!(nightly["tasks"], 3);
    assert_eq!(tally(&nightly["phases"], "failed"), 1);
    assert!(runs.iter().any(|r| r["run_id"] == "canary" && r["tasks"] == 1));
    // Attention: the failed task with its reason.
    let attention = overview["attention"].as_array().unwrap();
    assert_eq!(attention.len(), 1, "{attention:?}");
    assert_eq!(attention[0]["state"], "failed");
    assert_eq!(attention[0]["task_id"], "t3");
    assert_eq!(attention[0]["detail"], "disk full");
    // Health: every configured channel, its adapter, a web channel's page.
    let main = channel(&overview, "main");
    assert_eq!(main["adapter"], "web");
    assert_eq!(main["page"], "/channels/main");
    assert_eq!(main["failed"], 0);
    let gone_health = channel(&overview, "gone");
    assert_eq!(gone_health["adapter"], "webhook");
    assert!(gone_health["last_error"].is_string(), "{gone_health}");
    assert!(gone_health["page"].is_null());
    let busy_health = channel(&overview, "busy");
    let oldest = busy_health["oldest_pending_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(oldest).is_ok(), "{oldest}");
    assert!(!overview.to_string().contains(URL_SECRET), "{overview}");

    // Narrowed to one run: its counts and attention only; health stays.
    let (_, canary) = h.get("/v1/overview?run=canary").await;
    assert_eq!(canary["run"], "canary");
    assert_eq!(tally(&canary["phases"], "running"), 1, "{canary}");
    assert_eq!(tally(&canary["phases"], "failed"), 0);
    assert_eq!(canary["attention"], json!([]));
    assert_eq!(channel(&canary, "gone")["failed"], 2);
    // A bad parameter is a JSON 400 naming it.
    let (status, bad) = h.get(&format!("/v1/overview?run={}", "r".repeat(300))).await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["field"], "run");

    // The bulk replay the page's button calls drives them again.
    let res = h
        .client
        .post(h.url("/v1/deliveries/retry?status=failed&channel=gone"))
        .bearer_auth("test-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    h.wait_for("the replayed receipts", Duration::from_secs(10), || async {
        let (_, o) = h.get("/v1/overview").await;
        (channel(&o, "gone")["failed"] == 0 && channel(&o, "gone")["pending"] == 0).then_some(())
    })
    .await;
    assert_eq!(gone.received().len(), 4);
}

/// Read the stream until an `overview` event whose data satisfies `want`.
async fn next_overview(
    res: &mut reqwest::Response,
    seen: &mut String,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            while let Some(end) = seen.find("\n\n") {
                let frame: String = seen.drain(..end + 2).collect();
                if !frame.contains("event: overview") {
                    continue;
                }
                let data: String = frame
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                    .collect();
                let overview: Value = serde_json::from_str(&data).unwrap();
                if want(&overview) {
                    return overview;
                }
            }
            let chunk = res.chunk().await.unwrap().expect("the stream stays open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    found.expect("an overview event within 10 s")
}

#[tokio::test]
async fn the_overview_stream_sends_it_at_once_then_each_change() {
    let h = Herald::start(common::WEB_ONLY);
    let mut res = h.client.get(h.url("/v1/overview/events")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut seen = String::new();
    let first = next_overview(&mut res, &mut seen, |_| true).await;
    assert_eq!(tally(&first["phases"], "completed"), 0, "{first}");
    let started = std::time::Instant::now();
    let done = json!([event("r", "w", "t", 1, "completed", json!({}))]);
    assert_eq!(h.post_events(&done).await.0, 202);
    let next = next_overview(&mut res, &mut seen, |o| tally(&o["phases"], "completed") == 1).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(tally(&next["phases"], "running"), 0);
    // A narrowed stream, and a bad one refused before it starts.
    let narrowed = h
        .client
        .get(h.url("/v1/overview/events?run=other"))
        .send()
        .await
        .unwrap();
    assert_eq!(narrowed.status().as_u16(), 200);
    let (status, bad) = h
        .get(&format!("/v1/overview/events?run={}", "r".repeat(300)))
        .await;
    assert_eq!(status, 400, "{bad}");
}

#[tokio::test]
async fn with_read_tokens_the_overview_needs_one_by_basic_or_bearer() {
    let h = Herald::start_full(|dir| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nread_tokens = [\"reader-token\"]\n\n[store]\nurl = \"{}\"\n\n{}",
            common::store::url(dir),
            common::WEB_ONLY
        )
    });
    for path in ["/", "/v1/overview", "/v1/overview/events"] {
        let res = h.client.get(h.url(path)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 401, "{path}");
        assert_eq!(
            res.headers()["www-authenticate"],
            "Basic realm=\"herald\"",
            "{path}"
        );
        let wrong = h
            .client
            .get(h.url(path))
            .basic_auth("anyone", Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status().as_u16(), 401, "{path}");
        let basic = h
            .client
            .get(h.url(path))
            .basic_auth("anyone", Some("reader-token"))
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status().as_u16(), 200, "{path}");
    }
    let res = h
        .client
        .get(h.url("/v1/overview"))
        .bearer_auth("reader-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    assert!(!body.to_string().contains("reader-token"));
    // A read token reads; it does not replay.
    let replay = h
        .client
        .post(h.url("/v1/deliveries/retry?status=failed"))
        .bearer_auth("reader-token")
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status().as_u16(), 401);
}
