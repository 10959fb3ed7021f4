//! The operator's side of the API (SPEC §3, §3.3): lists page past 1,000
//! with opaque cursors that stay put while new items arrive, filters on
//! deliveries, RFC 3339 times, clear 400s for a bad `limit`, `cursor` or
//! `since`; a failed channel re-driven in one call; and `herald
//! deliveries list|retry` over the same API.

mod common;
mod emulators;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use common::{Herald, event, herald_bin};
use emulators::webhook::{Receiver, Reply};
use serde_json::{Value, json};

const TWO_WEB_CHANNELS: &str = r#"
[[sources]]
name = "fleet"
token = "test-token"

[channels.main]
adapter = "web"

[channels.other]
adapter = "web"

[[routes]]
match = { run_id = "small" }
channels = ["other"]

[defaults]
channels = ["main"]

[delivery]
progress_min_interval = "50ms"
retry_schedule = ["100ms", "200ms"]
"#;

async fn post_completed(h: &Herald, run: &str, tasks: std::ops::Range<usize>) {
    let events: Vec<Value> = tasks
        .map(|i| event(run, "w", &format!("t{i}"), 1, "completed", json!({})))
        .collect();
    for chunk in events.chunks(500) {
        let (status, body) = h.post_events(&json!(chunk)).await;
        assert_eq!(status, 202, "{body}");
    }
}

/// Walk `/v1/deliveries` with `query` in pages of `limit`; `between` runs
/// after the first page.
async fn walk(h: &Herald, query: &str, limit: usize) -> Vec<Value> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/deliveries?{query}&limit={limit}&cursor={c}"),
            None => format!("/v1/deliveries?{query}&limit={limit}"),
        };
        let (status, body) = h.get(&path).await;
        assert_eq!(status, 200, "{body}");
        let page = body["deliveries"].as_array().unwrap();
        assert!(page.len() <= limit);
        seen.extend(page.iter().cloned());
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return seen,
        }
    }
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|t| t.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(t).is_ok())
}

#[tokio::test]
async fn deliveries_page_past_a_thousand_with_stable_cursors_filters_and_rfc3339_times() {
    let h = Herald::start(TWO_WEB_CHANNELS);
    post_completed(&h, "big", 0..1100).await;
    post_completed(&h, "small", 0..10).await;
    h.wait_for("every receipt surfaced", Duration::from_secs(60), || async {
        let (_, body) = h.get("/v1/deliveries?status=pending&limit=1").await;
        let none_pending = body["deliveries"].as_array().is_some_and(Vec::is_empty);
        let (_, body) = h.get("/v1/deliveries?status=sending&limit=1").await;
        let none_sending = body["deliveries"].as_array().is_some_and(Vec::is_empty);
        (none_pending && none_sending).then_some(())
    })
    .await;

    // Pages of 400; 30 more arrive after the first page and shift nothing.
    let (_, first) = h.get("/v1/deliveries?limit=400").await;
    let mut seen: Vec<Value> = first["deliveries"].as_array().unwrap().clone();
    let mut cursor = first["next_cursor"].as_str().expect("more pages").to_owned();
    post_completed(&h, "late", 0..30).await;
    loop {
        let (status, body) = h.get(&format!("/v1/deliveries?limit=400&cursor={cursor}")).await;
        assert_eq!(status, 200, "{body}");
        seen.extend(body["deliveries"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    let ids: HashSet<&str> = seen.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(seen.len(), 1110, "every receipt once");
    assert_eq!(ids.len(), 1110, "no receipt twice");
    assert!(
        seen.iter().all(|d| d["run_id"] != "late"),
        "arrivals land before the first page"
    );
    // Newest first.
    let times: Vec<&str> = seen.iter().map(|d| d["created_at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    // Times are RFC 3339 UTC.
    let d = &seen[0];
    assert!(
        is_rfc3339(&d["created_at"]) && is_rfc3339(&d["surfaced_at"]),
        "{d}"
    );
    assert!(d["next_attempt_at"].is_null(), "{d}");

    // Filters.
    assert_eq!(walk(&h, "channel=other", 1000).await.len(), 10);
    assert_eq!(walk(&h, "run_id=small", 3).await.len(), 10);
    let late = walk(&h, "run_id=late&status=surfaced", 1000).await;
    let since = late
        .iter()
        .map(|d| d["created_at"].as_str().unwrap())
        .min()
        .unwrap_or("2100-01-01T00:00:00.000Z")
        .to_owned();
    let recent = walk(&h, &format!("since={since}"), 1000).await;
    assert!(
        recent.len() >= late.len() && recent.len() < 1140,
        "{}",
        recent.len()
    );
    assert!(
        recent
            .iter()
            .all(|d| d["created_at"].as_str().unwrap() >= since.as_str())
    );

    // Workers page too, newest first, with RFC 3339 times.
    let (_, workers) = h.get("/v1/workers?limit=2").await;
    assert_eq!(workers["workers"].as_array().unwrap().len(), 2);
    assert!(is_rfc3339(&workers["workers"][0]["first_seen_at"]), "{workers}");
    let next = workers["next_cursor"].as_str().expect("more workers");
    let (_, page2) = h.get(&format!("/v1/workers?limit=2&cursor={next}")).await;
    assert_ne!(page2["workers"][0], workers["workers"][0]);

    // Bad input: a clear 400 naming the parameter.
    for (path, field) in [
        ("/v1/deliveries?limit=5000", "limit"),
        ("/v1/deliveries?limit=0", "limit"),
        ("/v1/deliveries?cursor=bm90IGEgY3Vyc29y", "cursor"),
        ("/v1/deliveries?cursor=%%%", "cursor"),
        ("/v1/deliveries?since=yesterday", "since"),
        ("/v1/deliveries?status=lost", "status"),
        ("/v1/workers?cursor=abc", "cursor"),
        ("/v1/deliveries?limit=abc", "query"),
        ("/v1/workers?limit=99999999999999999999", "query"),
    ] {
        let (status, body) = h.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["field"], field, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
}

fn hook_config(receiver: &Receiver) -> String {
    format!(
        "[[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n\
         [channels.hook]\nadapter = \"webhook\"\nurl = \"{}\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\n\
         [channels.main]\nadapter = \"web\"\n\n\
         [defaults]\nchannels = [\"hook\", \"main\"]\n\n\
         [delivery]\nretry_schedule = [\"100ms\"]\nprogress_min_interval = \"50ms\"\n",
        receiver.url()
    )
}

fn cli(h: &Herald, args: &[&str], token: &str) -> (bool, String, String) {
    let out = Command::new(herald_bin())
        .args(args)
        .env("HERALD_URL", h.url(""))
        .env("HERALD_TOKEN", token)
        .output()
        .expect("herald runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_failed_channel_is_replayed_in_one_call_and_the_cli_lists_and_retries() {
    // The receiver refuses for good (410) five times, then takes all.
    let receiver = Receiver::start(vec![Reply::Status(410); 5]).await;
    let h = Herald::start(&hook_config(&receiver));
    post_completed(&h, "r", 0..5).await;
    let failed = h.wait_deliveries("failed", 5).await;
    assert!(failed.iter().all(|d| d["channel"] == "hook"), "{failed:?}");

    // The CLI lists them, every page, one line each.
    let (ok, out, err) = cli(&h, &["deliveries", "list", "--status", "failed"], "test-token");
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        lines.iter().all(|l| l.contains("\thook\tfailed\tcompleted\t")),
        "{out}"
    );
    let (ok, out, _) = cli(
        &h,
        &["deliveries", "list", "--status", "failed", "--json", "--max", "2"],
        "test-token",
    );
    assert!(ok);
    assert_eq!(out.lines().count(), 2);
    assert!(
        out.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "{out}"
    );

    // Without a source token nothing is re-driven.
    let (status, _) = (
        reqwest::Client::new()
            .post(h.url("/v1/deliveries/retry?status=failed&channel=hook"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        (),
    );
    assert_eq!(status, 401);
    let client = reqwest::Client::new();
    for (query, want) in [
        ("status=pending&channel=hook", 400),
        ("status=failed&channel=nope", 404),
    ] {
        let res = client
            .post(h.url(&format!("/v1/deliveries/retry?{query}")))
            .bearer_auth("test-token")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), want, "{query}");
    }

    // One call re-drives the channel; the fixed receiver takes them.
    let (ok, out, err) = cli(&h, &["deliveries", "retry", "--channel", "hook"], "test-token");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "5 receipt(s) will be sent again");
    h.wait_for(
        "the replayed receipts surfaced",
        Duration::from_secs(20),
        || async {
            let surfaced = walk(&h, "channel=hook&status=surfaced", 100).await;
            (surfaced.len() == 5).then_some(())
        },
    )
    .await;
    assert!(walk(&h, "status=failed", 100).await.is_empty());
    // Nothing left to retry: zero, not an error.
    let res = client
        .post(h.url("/v1/deliveries/retry?status=failed"))
        .bearer_auth("test-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["retried"], 0, "{body}");
    // A bad token is a clear error from the CLI, not a panic.
    let (ok, _, err) = cli(&h, &["deliveries", "retry"], "wrong");
    assert!(!ok);
    assert!(err.contains("401"), "{err}");
}
