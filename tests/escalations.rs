//! Escalation (SPEC §6.11) through the real binary, to the PagerDuty and
//! Slack-webhook emulators: a task that stays stale for `after_stale` is
//! sent once to each escalation channel (a trigger with the task's dedup
//! key, one Slack message), journaled as `escalated` events, named on the
//! live message; when it completes PagerDuty gets a resolve with the same
//! key; a task failed by herald at its deadline, or by its worker, pages at
//! once (`on_failed`); a recovered task resolves; a healthy task is never
//! escalated; restarts escalate once past `after_restarts`; an escalation
//! that was due while herald was down is sent once after the restart.

mod common;
mod emulators;

use std::time::{Duration, Instant};

use common::{Herald, event};
use emulators::pagerduty::PagerDutyEmulator;
use emulators::slack_webhook::{Hook, SlackWebhookEmulator};
use serde_json::{Value, json};

const ROUTING_KEY: &str = "R0UTINGKEY0123456789abcdef012345";

/// Herald with a web channel for every task, a PagerDuty channel and a
/// Slack webhook, and one escalation to both.
fn config(pd: &PagerDutyEmulator, hook: &str, contracts: &str, escalation: &str) -> String {
    format!(
        "[[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n\
         [channels.main]\nadapter = \"web\"\n\n\
         [channels.oncall]\nadapter = \"pagerduty\"\nrouting_key = \"{ROUTING_KEY}\"\napi_url = \"{}\"\n\
         severity = \"critical\"\n\n\
         [channels.team]\nadapter = \"slack_webhook\"\nurl = \"{hook}\"\n\n\
         [defaults]\nchannels = [\"main\"]\n\n\
         [delivery]\nprogress_min_interval = \"50ms\"\nretry_schedule = [\"100ms\", \"300ms\"]\n\n\
         [contracts]\n{contracts}\n\n\
         [[escalations]]\nmatch = {{ \"labels.team\" = \"infra\" }}\nchannels = [\"oncall\", \"team\"]\n{escalation}\n",
        pd.api_url()
    )
}

/// A PagerDuty emulator, a Slack-webhook emulator and the team's hook on it.
async fn emulators() -> (PagerDutyEmulator, SlackWebhookEmulator, String) {
    let pd = PagerDutyEmulator::start().await;
    let slack = SlackWebhookEmulator::start().await;
    let hook = slack.hook("team", Hook::Working);
    (pd, slack, hook)
}

fn infra(run: &str, task: &str, seq: i64, state: &str, mut payload: Value) -> Value {
    let extra = payload
        .as_object_mut()
        .expect("an object")
        .entry("extra")
        .or_insert_with(|| json!({}));
    extra["labels"] = json!({"team": "infra"});
    event(run, "w", task, seq, state, payload)
}

async fn journal(h: &Herald, task: &str) -> Vec<Value> {
    h.journal("r", "w", task).await
}

/// The states of herald's own events in a task's journal, oldest first.
async fn herald_states(h: &Herald, task: &str) -> Vec<String> {
    journal(h, task)
        .await
        .iter()
        .filter(|e| e["event"]["extra"]["source"] == "herald")
        .filter_map(|e| e["event"]["state"].as_str().map(str::to_owned))
        .collect()
}

async fn live_message(h: &Herald, task: &str) -> Option<Value> {
    let (_, body) = h.get("/channels/main/messages").await;
    let title = format!("w · {task}");
    body["messages"].as_array()?.iter().find_map(|m| {
        (m["body"]["title"] == title.as_str() && m["body"]["kind"] == "progress").then(|| m["body"].clone())
    })
}

fn field<'v>(message: &'v Value, name: &str) -> Option<&'v str> {
    message["fields"]
        .as_array()?
        .iter()
        .find(|f| f["name"] == name)?
        .get("value")?
        .as_str()
}

/// PagerDuty's events about one task, oldest first.
fn pd_events(pd: &PagerDutyEmulator, task: &str) -> Vec<Value> {
    let key = format!("herald/r/w/{task}");
    pd.events()
        .into_iter()
        .filter(|e| e["dedup_key"] == key.as_str())
        .collect()
}

/// The Slack webhook's messages naming a task.
fn hook_messages(slack: &SlackWebhookEmulator, task: &str) -> Vec<String> {
    let title = format!("w · {task}");
    slack
        .messages("team")
        .into_iter()
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .filter(|t| t.contains(&title))
        .collect()
}

/// Post `events` every `every` until the handle is aborted.
fn keep_posting(
    h: &Herald,
    every: Duration,
    make: impl Fn(i64) -> Value + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let client = h.client.clone();
    let url = h.url("/v1/events");
    tokio::spawn(async move {
        for seq in 2.. {
            tokio::time::sleep(every).await;
            let sent = client
                .post(&url)
                .bearer_auth("test-token")
                .json(&json!([make(seq)]))
                .send()
                .await;
            assert!(sent.is_ok_and(|r| r.status() == 202));
        }
    })
}

#[tokio::test]
async fn the_acceptance_run_stale_deadline_failure_and_a_healthy_task() {
    let (pd, slack, hook) = emulators().await;
    let h = Herald::start(&config(
        &pd,
        &hook,
        "heartbeat = \"3s\"",
        "after_stale = \"3s\"\non_failed = true",
    ));
    let started = Instant::now();
    h.post_events(&json!([
        infra("r", "silent", 1, "running", json!({})),
        infra(
            "r",
            "timed",
            1,
            "running",
            json!({"extra": {"timeout_seconds": 4}})
        ),
        infra("r", "healthy", 1, "running", json!({})),
    ]))
    .await;
    let timed = keep_posting(&h, Duration::from_millis(700), |seq| {
        infra("r", "timed", seq, "heartbeat", json!({}))
    });
    let healthy = keep_posting(&h, Duration::from_millis(700), |seq| {
        infra("r", "healthy", seq, "heartbeat", json!({}))
    });

    // The silent task is shown stale within a few seconds...
    h.wait_for(
        "the live message to say stale",
        Duration::from_secs(8),
        || async {
            live_message(&h, "silent")
                .await
                .filter(|m| m["state"].as_str().is_some_and(|s| s.starts_with("stale")))
        },
    )
    .await;
    let stale_after = started.elapsed();
    assert!(stale_after >= Duration::from_secs(3), "{stale_after:?}");

    // ... a timed task that only heartbeats is failed by herald at 4 s and
    // pages at once.
    let failed_trigger = h
        .wait_for(
            "a trigger for the deadline failure",
            Duration::from_secs(10),
            || async {
                pd_events(&pd, "timed")
                    .into_iter()
                    .find(|e| e["event_action"] == "trigger")
            },
        )
        .await;
    timed.abort();
    let summary = failed_trigger["payload"]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("deadline exceeded (4s)"), "{summary}");
    assert_eq!(failed_trigger["routing_key"], ROUTING_KEY);
    assert_eq!(failed_trigger["payload"]["severity"], "critical");

    // ... and after 3 s stale, PagerDuty gets one trigger for it and the
    // Slack webhook one message.
    let trigger = h
        .wait_for(
            "the stale escalation's trigger",
            Duration::from_secs(10),
            || async {
                pd_events(&pd, "silent")
                    .into_iter()
                    .find(|e| e["event_action"] == "trigger")
            },
        )
        .await;
    let paged_after = started.elapsed();
    assert!(
        paged_after >= Duration::from_secs(6),
        "paged before 3 s + 3 s: {paged_after:?}"
    );
    assert!(
        paged_after < Duration::from_secs(11),
        "paged late: {paged_after:?}"
    );
    assert_eq!(trigger["routing_key"], ROUTING_KEY);
    assert_eq!(trigger["dedup_key"], "herald/r/w/silent");
    let summary = trigger["payload"]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("w · silent") && summary.contains("stale: no event for"),
        "{summary}"
    );
    h.wait_for("the Slack webhook's message", Duration::from_secs(8), || async {
        (!hook_messages(&slack, "silent").is_empty()).then_some(())
    })
    .await;
    let live = h
        .wait_for(
            "the live message to name the escalation",
            Duration::from_secs(5),
            || async {
                live_message(&h, "silent")
                    .await
                    .filter(|m| field(m, "escalated to") == Some("oncall, team"))
            },
        )
        .await;
    assert!(
        live["state"].as_str().is_some_and(|s| s.starts_with("stale")),
        "{live}"
    );
    // Once: another look (1 s ticks) sends nothing more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pd_events(&pd, "silent").len(), 1, "{:#?}", pd.events());
    assert_eq!(
        hook_messages(&slack, "silent").len(),
        1,
        "{:#?}",
        slack.messages("team")
    );
    assert_eq!(
        herald_states(&h, "silent").await,
        ["stale", "escalated", "escalated"]
    );
    let escalated: Vec<Value> = journal(&h, "silent")
        .await
        .into_iter()
        .filter(|e| e["event"]["state"] == "escalated")
        .collect();
    let channels: Vec<&str> = escalated
        .iter()
        .filter_map(|e| e["event"]["channel"].as_str())
        .collect();
    assert!(
        channels.contains(&"oncall") && channels.contains(&"team"),
        "{escalated:#?}"
    );
    assert!(
        escalated
            .iter()
            .all(|e| e["event"]["alert_id"] == "herald/r/w/silent")
    );

    // It completes: PagerDuty resolves the same key, the live message ends
    // completed, the team hears it is over.
    h.post_events(&json!([infra(
        "r",
        "silent",
        2,
        "completed",
        json!({"summary": "done"})
    )]))
    .await;
    let resolve = h
        .wait_for("the resolve", Duration::from_secs(8), || async {
            pd_events(&pd, "silent")
                .into_iter()
                .find(|e| e["event_action"] == "resolve")
        })
        .await;
    assert_eq!(resolve["dedup_key"], "herald/r/w/silent");
    assert_eq!(pd.alerts()["herald/r/w/silent"].status, "resolved");
    h.wait_for(
        "the live message to end completed",
        Duration::from_secs(5),
        || async {
            live_message(&h, "silent")
                .await
                .filter(|m| m["state"] == "completed")
        },
    )
    .await;
    h.wait_for(
        "the team to hear it completed",
        Duration::from_secs(8),
        || async {
            hook_messages(&slack, "silent")
                .iter()
                .any(|t| t.contains("completed"))
                .then_some(())
        },
    )
    .await;

    // The healthy task was never stale nor escalated.
    healthy.abort();
    assert!(herald_states(&h, "healthy").await.is_empty());
    assert!(pd_events(&pd, "healthy").is_empty());
    assert!(hook_messages(&slack, "healthy").is_empty());
    // The timed task's journal: herald's failure and its escalations.
    assert_eq!(
        herald_states(&h, "timed").await,
        ["failed", "escalated", "escalated"]
    );
    assert_eq!(pd.over_limit(), 0);
    assert!(slack.early().is_empty(), "{:?}", slack.early());
}

#[tokio::test]
async fn a_worker_failure_pages_at_once_and_a_recovered_task_resolves_then_pages_again_when_silent_again() {
    let (pd, slack, hook) = emulators().await;
    let h = Herald::start(&config(
        &pd,
        &hook,
        "heartbeat = \"1s\"",
        "after_stale = \"1s\"\non_failed = true",
    ));
    h.post_events(&json!([
        infra("r", "broken", 1, "running", json!({})),
        infra("r", "broken", 2, "failed", json!({"reason": "exit 137"})),
        // Not the team's: routed, never escalated.
        event("r", "w", "other", 1, "failed", json!({"reason": "exit 1"})),
        infra("r", "flaky", 1, "running", json!({})),
    ]))
    .await;
    let trigger = h
        .wait_for("the failure's trigger", Duration::from_secs(8), || async {
            pd_events(&pd, "broken")
                .into_iter()
                .find(|e| e["event_action"] == "trigger")
        })
        .await;
    let summary = trigger["payload"]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("failed: exit 137"), "{summary}");

    // flaky goes stale (1 s), is escalated (1 s later), then speaks.
    h.wait_for("flaky's trigger", Duration::from_secs(8), || async {
        pd_events(&pd, "flaky")
            .into_iter()
            .find(|e| e["event_action"] == "trigger")
    })
    .await;
    h.post_events(&json!([infra(
        "r",
        "flaky",
        2,
        "running_tool",
        json!({"tool": "make"})
    )]))
    .await;
    h.wait_for("flaky's resolve", Duration::from_secs(8), || async {
        pd_events(&pd, "flaky")
            .into_iter()
            .find(|e| e["event_action"] == "resolve")
    })
    .await;
    h.wait_for(
        "the team to hear flaky recovered",
        Duration::from_secs(8),
        || async {
            hook_messages(&slack, "flaky")
                .iter()
                .any(|t| t.contains("recovered"))
                .then_some(())
        },
    )
    .await;
    let live = h
        .wait_for(
            "flaky's live message to drop the escalation",
            Duration::from_secs(5),
            || async {
                live_message(&h, "flaky")
                    .await
                    .filter(|m| m["state"] == "running tool" && field(m, "escalated to").is_none())
            },
        )
        .await;
    assert_eq!(live["severity"], "progress");
    // Silent again: a new spell, and a new trigger once it has lasted
    // `after_stale` (not at the mark: the page is the rule's, not the
    // earlier escalation's).
    h.wait_for("flaky's second stale mark", Duration::from_secs(10), || async {
        let marks = herald_states(&h, "flaky").await;
        (marks.iter().filter(|s| *s == "stale").count() == 2).then_some(())
    })
    .await;
    let marked = Instant::now();
    assert_eq!(
        pd_events(&pd, "flaky")
            .iter()
            .filter(|e| e["event_action"] == "trigger")
            .count(),
        1
    );
    h.wait_for("a second trigger for flaky", Duration::from_secs(10), || async {
        let triggers = pd_events(&pd, "flaky")
            .into_iter()
            .filter(|e| e["event_action"] == "trigger")
            .count();
        (triggers == 2).then_some(())
    })
    .await;
    assert!(
        marked.elapsed() >= Duration::from_millis(700),
        "{:?}",
        marked.elapsed()
    );
    assert!(pd_events(&pd, "other").is_empty());
    let actions: Vec<String> = pd_events(&pd, "broken")
        .iter()
        .filter_map(|e| e["event_action"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(actions, ["trigger"], "a failed task stays paged");
}

#[tokio::test]
async fn restarts_escalate_once_past_the_threshold() {
    let (pd, slack, hook) = emulators().await;
    let h = Herald::start(&config(&pd, &hook, "", "after_restarts = 2"));
    h.post_events(&json!([
        infra("r", "looping", 1, "running", json!({})),
        infra("r", "looping", 2, "restarted", json!({"restart_count": 1})),
    ]))
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(pd_events(&pd, "looping").is_empty(), "{:#?}", pd.events());
    h.post_events(&json!([infra(
        "r",
        "looping",
        3,
        "restarted",
        json!({"restart_count": 2})
    )]))
    .await;
    let trigger = h
        .wait_for("the restarts' trigger", Duration::from_secs(8), || async {
            pd_events(&pd, "looping")
                .into_iter()
                .find(|e| e["event_action"] == "trigger")
        })
        .await;
    let summary = trigger["payload"]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("restarted 2 times"), "{summary}");
    h.post_events(&json!([infra(
        "r",
        "looping",
        4,
        "restarted",
        json!({"restart_count": 3})
    )]))
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pd_events(&pd, "looping").len(), 1, "{:#?}", pd.events());
    assert_eq!(hook_messages(&slack, "looping").len(), 1);
}

#[tokio::test]
async fn an_escalation_due_while_herald_was_down_is_sent_once_after_the_restart() {
    let (pd, slack, hook) = emulators().await;
    let mut h = Herald::start(&config(&pd, &hook, "heartbeat = \"1s\"", "after_stale = \"3s\""));
    h.post_events(&json!([infra("r", "t", 1, "running", json!({}))]))
        .await;
    h.wait_for("the stale mark", Duration::from_secs(8), || async {
        (herald_states(&h, "t").await == ["stale"]).then_some(())
    })
    .await;
    h.kill9();
    tokio::time::sleep(Duration::from_secs(4)).await;
    h.spawn();
    h.wait_for(
        "the trigger and the Slack message after the restart",
        Duration::from_secs(10),
        || async {
            let paged = pd_events(&pd, "t").iter().any(|e| e["event_action"] == "trigger");
            (paged && !hook_messages(&slack, "t").is_empty()).then_some(())
        },
    )
    .await;
    // Killed again once herald has recorded both (a Slack webhook cannot be
    // asked what it got: one killed mid-call is sent again), and back:
    // nothing is sent twice.
    h.wait_for(
        "both escalations recorded as surfaced",
        Duration::from_secs(5),
        || async {
            let surfaced = h.deliveries(Some("surfaced")).await;
            let escalations = surfaced
                .iter()
                .filter(|r| r["task_id"] == "t" && r["channel"] != "main");
            (escalations.count() == 2).then_some(())
        },
    )
    .await;
    h.kill9();
    h.spawn();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pd_events(&pd, "t").len(), 1, "{:#?}", pd.events());
    assert_eq!(hook_messages(&slack, "t").len(), 1);
    assert_eq!(herald_states(&h, "t").await, ["stale", "escalated", "escalated"]);
}

#[tokio::test]
async fn an_events_own_alert_policy_is_ignored_counted_and_kept_without_its_secrets() {
    let (pd, slack, hook) = emulators().await;
    // A webhook the event names: herald must never post to it.
    let named = slack.hook("s3cr3tw0rkerh00k", Hook::Working);
    let h = Herald::start(&config(&pd, &hook, "heartbeat = \"1s\"", "on_failed = true"));
    let policy = json!({
        "channels": [
            {"kind": "slack", "webhook_url": named},
            {"kind": "pager_duty", "routing_key": "W0RKERR0UTINGKEY", "severity": "critical"},
        ],
        "after_minutes_stale": 0.01,
        "after_attempts": 1,
    });
    let (status, body) = h
        .post_events(&json!([event(
            "r",
            "w",
            "own",
            1,
            "running",
            json!({"extra": {"alert_policy": policy}})
        )]))
        .await;
    assert_eq!(status, 202, "{body}");
    // Stale after 1 s, past its own 0.6 s: nothing goes where it says.
    h.wait_for("the stale mark", Duration::from_secs(8), || async {
        (herald_states(&h, "own").await == ["stale"]).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(slack.messages("s3cr3tw0rkerh00k").is_empty());
    assert!(pd.events().is_empty(), "{:#?}", pd.events());
    // Counted; its secrets are nowhere in what herald answers.
    assert_eq!(h.metric("herald_event_policies_ignored_total").await, Some(1));
    for path in ["/v1/workers/r/w/own/events?limit=10", "/v1/workers?run_id=r"] {
        let (_, answer) = h.get(path).await;
        let text = answer.to_string();
        assert!(text.contains("alert_policy"), "{text}");
        assert!(
            !text.contains("s3cr3tw0rkerh00k") && !text.contains("W0RKERR0UTINGKEY"),
            "{path}: {text}"
        );
    }
    // A malformed policy is refused by name, and nothing is stored.
    let (status, body) = h
        .post_events(&json!([event(
            "r",
            "w",
            "bad",
            1,
            "running",
            json!({"extra": {"alert_policy": {"channels": [{"kind": "sms"}]}}})
        )]))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "extra.alert_policy.channels[0].kind", "{body}");
    let (status, _) = h.get("/v1/workers/r/w/bad/events").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_allowed_event_policy_pages_where_it_says_and_only_there() {
    let (pd, slack, hook) = emulators().await;
    let own = slack.hook("w0rkerh00k", Hook::Working);
    let elsewhere = slack.hook("elsewhere", Hook::Working);
    let allowed = format!("http://{}/services/T0001/B0001/w0rker*", slack.addr);
    let text = format!(
        "{}\n[event_policies]\nallow = true\nallowed_urls = [\"{allowed}\"]\npagerduty_api_url = \"{}\"\n",
        config(&pd, &hook, "heartbeat = \"1s\"", "on_failed = true"),
        pd.api_url()
    );
    let h = Herald::start(&text);
    let policy = json!({
        "channels": [
            {"kind": "slack", "webhook_url": own},
            {"kind": "pager_duty", "routing_key": "W0RKERR0UTINGKEY0123456789abcdef", "severity": "warning"},
        ],
        "after_minutes_stale": 0.02,
    });
    let (status, body) = h
        .post_events(&json!([
            event("r", "w", "own", 1, "running", json!({"extra": {"alert_policy": policy}})),
            event("r", "w", "crash", 1, "running", json!({"extra": {"alert_policy": policy}})),
            event(
                "r",
                "w",
                "outside",
                1,
                "failed",
                json!({"reason": "x", "extra": {"alert_policy": {"channels": [{"kind": "slack", "webhook_url": elsewhere}]}}})
            ),
        ]))
        .await;
    assert_eq!(status, 202, "{body}");
    // A failure pages at once where its policy says.
    h.post_events(&json!([event(
        "r",
        "w",
        "crash",
        2,
        "failed",
        json!({"reason": "segfault"})
    )]))
    .await;
    let crash = h
        .wait_for("the crash's trigger", Duration::from_secs(10), || async {
            pd_events(&pd, "crash")
                .into_iter()
                .find(|e| e["event_action"] == "trigger")
        })
        .await;
    assert_eq!(crash["routing_key"], "W0RKERR0UTINGKEY0123456789abcdef");
    assert_eq!(crash["payload"]["severity"], "warning");
    // Stale at 1 s, stale 1.2 s more: paged on its own hook and key.
    let trigger = h
        .wait_for("the stale task's trigger", Duration::from_secs(10), || async {
            pd_events(&pd, "own")
                .into_iter()
                .find(|e| e["event_action"] == "trigger")
        })
        .await;
    assert_eq!(trigger["routing_key"], "W0RKERR0UTINGKEY0123456789abcdef");
    h.wait_for("the worker's own hook", Duration::from_secs(8), || async {
        let own: Vec<Value> = slack.messages("w0rkerh00k");
        own.iter()
            .any(|m| m["text"].as_str().is_some_and(|t| t.contains("w · own")))
            .then_some(())
    })
    .await;
    // It completes: resolved on the worker's key.
    h.post_events(&json!([event("r", "w", "own", 2, "completed", json!({}))]))
        .await;
    h.wait_for("the resolve", Duration::from_secs(8), || async {
        pd_events(&pd, "own")
            .into_iter()
            .find(|e| e["event_action"] == "resolve")
    })
    .await;
    // The policy outside allowed_urls was ignored and counted; nothing
    // went to the team's escalation (it matches labels.team = infra only).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(slack.messages("elsewhere").is_empty());
    assert!(pd_events(&pd, "outside").is_empty());
    assert!(hook_messages(&slack, "own").is_empty() && hook_messages(&slack, "crash").is_empty());
    assert_eq!(h.metric("herald_event_policies_ignored_total").await, Some(1));
    // Deliveries name the run-time channels; no answer shows a secret.
    let deliveries = h.deliveries(None).await;
    assert!(
        deliveries.iter().any(|d| d["channel"]
            .as_str()
            .is_some_and(|c| c.starts_with("event:slack:"))),
        "{deliveries:#?}"
    );
    for path in [
        "/v1/workers/r/w/own/events?limit=20",
        "/v1/workers?run_id=r",
        "/v1/deliveries?limit=100",
        "/v1/replicas",
    ] {
        let (_, answer) = h.get(path).await;
        let text = answer.to_string();
        assert!(
            !text.contains("w0rkerh00k") && !text.contains("W0RKERR0UTINGKEY"),
            "{path}: {text}"
        );
    }
    let log = h.log.lock().expect("the log").join("\n");
    assert!(
        !log.contains("w0rkerh00k") && !log.contains("W0RKERR0UTINGKEY"),
        "{log}"
    );
}
