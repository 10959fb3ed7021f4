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

/// herald's own events in a task's journal.
fn herald_events(journal: &[Value]) -> Vec<&Value> {
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
    let made = herald_events(&hangs);
    assert_eq!(made.len(), 1, "{hangs:#?}");
    assert_eq!(made[0]["event"]["seq"], -1);
    assert_eq!(made[0]["event"]["state"], "failed");
    // The task that ended in time was left alone.
    assert!(herald_events(&journal(&h, "quick").await).is_empty());
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
    assert_eq!(herald_events(&journal(&h, "t").await).len(), 1);
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

/// The web channel's live message of a task, and its notifications.
async fn web_messages(h: &Herald, task: &str) -> (Option<Value>, Vec<Value>) {
    let (_, body) = h.get("/channels/main/messages").await;
    let title = format!("w · {task}");
    let mine: Vec<Value> = body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m["body"]["title"] == title.as_str())
        .collect();
    let live = mine.iter().find(|m| m["body"]["kind"] == "progress").cloned();
    let notes = mine
        .into_iter()
        .filter(|m| m["body"]["kind"] == "terminal")
        .collect();
    (live, notes)
}

#[tokio::test]
async fn a_silent_task_is_marked_stale_and_the_workers_next_word_clears_it() {
    let h = Herald::start(&config("[contracts]\nheartbeat = \"2s\"\n", ""));
    let started = Instant::now();
    h.post_events(&json!([
        event("r", "w", "silent", 1, "running", json!({})),
        event("r", "w", "alive", 1, "running", json!({})),
    ]))
    .await;
    // `alive` heartbeats every 700 ms; `silent` says nothing.
    let beating = {
        let client = h.client.clone();
        let url = h.url("/v1/events");
        tokio::spawn(async move {
            for seq in 2..30 {
                tokio::time::sleep(Duration::from_millis(700)).await;
                let body = json!([event("r", "w", "alive", seq, "heartbeat", json!({}))]);
                let sent = client
                    .post(&url)
                    .bearer_auth("test-token")
                    .json(&body)
                    .send()
                    .await;
                assert!(sent.is_ok_and(|r| r.status() == 202));
            }
        })
    };
    let live = h
        .wait_for(
            "the live message to say stale",
            Duration::from_secs(10),
            || async {
                let (live, _) = web_messages(&h, "silent").await;
                live.filter(|m| {
                    m["body"]["state"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("stale"))
                })
            },
        )
        .await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    assert_eq!(live["body"]["severity"], "attention", "{live}");
    // An attention notification, once; the mark is in the journal.
    let (_, notes) = h
        .wait_for("the attention notification", Duration::from_secs(5), || async {
            let (live, notes) = web_messages(&h, "silent").await;
            (!notes.is_empty()).then_some((live, notes))
        })
        .await;
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["body"]["state"], "stale");
    let marks = herald_events(&journal(&h, "silent").await).len();
    assert_eq!(marks, 1);
    // The worker speaks: the live message shows its state again.
    h.post_events(&json!([event(
        "r",
        "w",
        "silent",
        2,
        "running_tool",
        json!({"tool": "cargo build"})
    )]))
    .await;
    h.wait_for("the stale mark to clear", Duration::from_secs(5), || async {
        let (live, _) = web_messages(&h, "silent").await;
        live.filter(|m| m["body"]["state"] == "running tool")
    })
    .await;
    // It goes quiet again, and then ends: a second mark, then the end.
    h.wait_for("a second stale mark", Duration::from_secs(8), || async {
        let (_, notes) = web_messages(&h, "silent").await;
        (notes.len() == 2).then_some(())
    })
    .await;
    h.post_events(&json!([event(
        "r",
        "w",
        "silent",
        3,
        "completed",
        json!({"summary": "done"})
    )]))
    .await;
    let (live, notes) = h
        .wait_for("the end after the marks", Duration::from_secs(8), || async {
            let (live, notes) = web_messages(&h, "silent").await;
            (notes.len() == 3 && live.as_ref().is_some_and(|m| m["body"]["state"] == "completed"))
                .then_some((live, notes))
        })
        .await;
    assert!(live.is_some());
    assert_eq!(notes[2]["body"]["state"], "completed");
    let seqs: Vec<i64> = herald_events(&journal(&h, "silent").await)
        .iter()
        .filter_map(|e| e["event"]["seq"].as_i64())
        .collect();
    assert_eq!(seqs, vec![-2, -3]);
    // The heartbeating task was never marked.
    beating.abort();
    assert!(herald_events(&journal(&h, "alive").await).is_empty());
    let (_, alive_notes) = web_messages(&h, "alive").await;
    assert!(alive_notes.is_empty(), "{alive_notes:?}");
}
