//! Herald's own side of the worker contract (SPEC §6.10) through the real
//! binary: a task that has not ended by its deadline — its own
//! `extra.timeout_seconds`, else `[contracts] deadline` — is failed by
//! herald (`deadline exceeded (…)`), once, journaled with herald as its
//! source, delivered like any failure (the web channel's live message and
//! notification, a PagerDuty trigger where routed), also when herald was
//! down at the deadline; a task that ends in time never is; a worker cannot
//! send herald's seqs, nor a timeout that is not a positive number.

mod common;
mod emulators;

use std::time::{Duration, Instant};

use common::{Herald, event};
use emulators::pagerduty::PagerDutyEmulator;
use serde_json::{Value, json};

fn config(contracts: &str, extra: &str) -> String {
    format!(
        "[[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n[channels.main]\nadapter = \"web\"\n\n\
         [defaults]\nchannels = [\"main\"]\n\n\
         [delivery]\nprogress_min_interval = \"50ms\"\nretry_schedule = [\"100ms\", \"200ms\"]\n\n\
         {contracts}\n{extra}"
    )
}

async fn journal(h: &Herald, task: &str) -> Vec<Value> {
    let (status, body) = h.get(&format!("/v1/workers/r/w/{task}/events?limit=100")).await;
    if status == 404 {
        return Vec::new();
    }
    body["events"].as_array().cloned().unwrap_or_default()
}

async fn worker(h: &Herald, task: &str) -> Value {
    let (_, body) = h.get("/v1/workers?run_id=r&limit=1000").await;
    body["workers"]
        .as_array()
        .and_then(|w| w.iter().find(|w| w["task_id"] == task).cloned())
        .unwrap_or(Value::Null)
}

/// herald's deadline failures in a task's journal.
fn herald_failures(journal: &[Value]) -> Vec<&Value> {
    journal
        .iter()
        .filter(|e| e["event"]["extra"]["source"] == "herald")
        .collect()
}

#[tokio::test]
async fn a_task_past_the_default_deadline_is_failed_by_herald_once() {
    let h = Herald::start(&config("[contracts]\ndeadline = \"2s\"\n", ""));
    let started = Instant::now();
    h.post_events(&json!([
        event("r", "w", "hangs", 1, "running", json!({})),
        event("r", "w", "quick", 1, "running", json!({})),
    ]))
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.post_events(&json!([event(
        "r",
        "w",
        "quick",
        2,
        "completed",
        json!({"summary": "done"})
    )]))
    .await;
    let failed = h
        .wait_for(
            "herald to fail the silent task",
            Duration::from_secs(10),
            || async {
                let w = worker(&h, "hangs").await;
                (w["state"] == "failed").then_some(w)
            },
        )
        .await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "failed before its deadline: {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "noticed late: {waited:?}");
    assert_eq!(failed["event"]["reason"], "deadline exceeded (2s)", "{failed}");
    // The notification says so; herald made the event, once.
    let notification = h
        .wait_for("the failure notification", Duration::from_secs(10), || async {
            h.deliveries(None)
                .await
                .into_iter()
                .find(|r| r["task_id"] == "hangs" && r["status"] == "surfaced")
        })
        .await;
    assert_eq!(notification["channel"], "main");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hangs = journal(&h, "hangs").await;
    let made = herald_failures(&hangs);
    assert_eq!(made.len(), 1, "{hangs:#?}");
    assert_eq!(made[0]["event"]["seq"], -1);
    assert_eq!(made[0]["event"]["state"], "failed");
    // The task that ended in time was left alone.
    assert!(herald_failures(&journal(&h, "quick").await).is_empty());
    assert_eq!(worker(&h, "quick").await["state"], "completed");
    let all = h.deliveries(None).await;
    assert_eq!(
        all.iter().filter(|r| r["task_id"] == "hangs").count(),
        1,
        "{all:#?}"
    );
}

#[tokio::test]
async fn a_tasks_own_timeout_applies_and_only_to_it() {
    // No default deadline: only the task that asked for one is watched.
    let h = Herald::start(&config("", ""));
    h.post_events(&json!([
        event(
            "r",
            "w",
            "timed",
            1,
            "running",
            json!({"extra": {"timeout_seconds": 1}})
        ),
        event("r", "w", "untimed", 1, "running", json!({})),
    ]))
    .await;
    let failed = h
        .wait_for("the timed task to fail", Duration::from_secs(8), || async {
            let w = worker(&h, "timed").await;
            (w["state"] == "failed").then_some(w)
        })
        .await;
    assert_eq!(failed["event"]["reason"], "deadline exceeded (1s)");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(worker(&h, "untimed").await["state"], "running");
}

#[tokio::test]
async fn a_deadline_passed_while_herald_was_down_fails_the_task_once_after_restart() {
    let mut h = Herald::start(&config("[contracts]\ndeadline = \"2s\"\n", ""));
    h.post_events(&json!([event("r", "w", "t", 1, "running", json!({}))]))
        .await;
    h.kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    h.spawn();
    h.wait_for(
        "the failure after the restart",
        Duration::from_secs(8),
        || async { (worker(&h, "t").await["state"] == "failed").then_some(()) },
    )
    .await;
    // A second restart finds it ended: nothing is made twice.
    h.kill9();
    h.spawn();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(herald_failures(&journal(&h, "t").await).len(), 1);
}

#[tokio::test]
async fn a_missed_deadline_pages_where_failures_are_routed() {
    let pd = PagerDutyEmulator::start().await;
    let routes = format!(
        "[channels.oncall]\nadapter = \"pagerduty\"\nrouting_key = \"R0UTINGKEY0123456789abcdef012345\"\n\
         api_url = \"{}\"\n\n[[routes]]\nmatch = {{ state = \"failed\" }}\nchannels = [\"oncall\"]\ncontinue = true\n\n\
         [[routes]]\nmatch = {{ run_id = \"r\" }}\nchannels = [\"main\"]\n",
        pd.api_url()
    );
    let h = Herald::start(&config("[contracts]\ndeadline = \"1s\"\n", &routes));
    h.post_events(&json!([event("r", "w", "stuck", 1, "running", json!({}))]))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let trigger = loop {
        if let Some(t) = pd.events().into_iter().find(|e| e["event_action"] == "trigger") {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "no trigger; receipts {:#?}",
            h.deliveries(None).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(trigger["dedup_key"], "herald/r/w/stuck");
    let summary = trigger["payload"]["summary"].as_str().unwrap();
    assert!(summary.contains("deadline exceeded (1s)"), "{summary}");
}

#[tokio::test]
async fn workers_cannot_send_heralds_seqs_or_a_bad_timeout() {
    let h = Herald::start(&config("", ""));
    let (status, body) = h
        .post_events(&json!([event(
            "r",
            "w",
            "t",
            -1,
            "failed",
            json!({"reason": "forged"})
        )]))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "seq", "{body}");
    for bad in [json!(0), json!(-5), json!("60"), json!(1e12)] {
        let (status, body) = h
            .post_events(&json!([event(
                "r",
                "w",
                "t",
                1,
                "running",
                json!({"extra": {"timeout_seconds": bad}})
            )]))
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["field"], "extra.timeout_seconds", "{body}");
    }
}
