//! PagerDuty channels end to end: the real binary sends Events API v2
//! events to the emulator (`emulators/pagerduty.rs`): a failed task
//! triggers an alert keyed by the task, a completed one resolves its key;
//! invalid events fail for good with PagerDuty's reason, server errors and
//! lost answers are retried under the same key (one alert, never two), and
//! the routing key appears in no log line, no API answer, no stored error.

mod common;
mod emulators;

use common::{Herald, event};
use emulators::pagerduty::{Fault, PagerDutyEmulator};
use serde_json::json;

const KEY: &str = "R0UTINGKEY0123456789abcdef012345";

fn config(pd: &PagerDutyEmulator, key: &str) -> String {
    format!(
        "[[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n\
         [channels.oncall]\nadapter = \"pagerduty\"\nrouting_key = \"{key}\"\napi_url = \"{}\"\n\
         severity = \"critical\"\ntimeout = \"1s\"\n\n\
         [[routes]]\nmatch = {{ run_id = \"r\" }}\nchannels = [\"oncall\"]\n\n\
         [delivery]\nretry_schedule = [\"100ms\", \"200ms\"]\n",
        pd.api_url()
    )
}

fn log_of(h: &Herald) -> String {
    h.log.lock().unwrap().join("\n")
}

#[tokio::test]
async fn a_failure_triggers_an_alert_for_its_task_and_a_completion_resolves_its_key() {
    let pd = PagerDutyEmulator::start().await;
    let h = Herald::start(&config(&pd, KEY));
    let (status, _) = h
        .post_events(&json!([
            event(
                "r",
                "build-7",
                "compile",
                1,
                "failed",
                json!({"reason": "linker error <@everyone>"})
            ),
            event(
                "r",
                "build-7",
                "test",
                1,
                "completed",
                json!({"summary": "all green"})
            ),
        ]))
        .await;
    assert_eq!(status, 202);
    h.wait_deliveries("surfaced", 2).await;
    let events = pd.events();
    assert_eq!(events.len(), 2, "{events:#?}");
    let trigger = events
        .iter()
        .find(|e| e["event_action"] == "trigger")
        .expect("a trigger");
    assert_eq!(trigger["routing_key"], KEY);
    assert_eq!(trigger["dedup_key"], "herald/r/build-7/compile");
    let summary = trigger["payload"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("build-7") && summary.contains("compile"),
        "{summary}"
    );
    assert!(
        summary.contains("failed") && summary.contains("linker error"),
        "{summary}"
    );
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["source"], "build-7");
    assert_eq!(trigger["client"], "herald");
    let resolve = events
        .iter()
        .find(|e| e["event_action"] == "resolve")
        .expect("a resolve");
    assert_eq!(resolve["dedup_key"], "herald/r/build-7/test");
    let alerts = pd.alerts();
    assert_eq!(alerts["herald/r/build-7/compile"].status, "triggered");
    assert_eq!(pd.over_limit(), 0);
}

#[tokio::test]
async fn server_errors_and_lost_answers_are_retried_into_one_alert() {
    let pd = PagerDutyEmulator::start().await;
    pd.inject(vec![Fault::Http(500), Fault::Http(503), Fault::ApplyThenHang]);
    let h = Herald::start(&config(&pd, KEY));
    h.post_events(&json!([event(
        "r",
        "w",
        "flaky",
        1,
        "failed",
        json!({"reason": "x"})
    )]))
    .await;
    let done = h.wait_deliveries("surfaced", 1).await;
    assert!(done[0]["attempts"].as_i64().unwrap() >= 4, "{done:?}");
    let alerts = pd.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts["herald/r/w/flaky"];
    // The lost answer's event was applied, and its resend de-duplicated
    // into the same alert.
    assert_eq!((alert.status.as_str(), alert.triggers), ("triggered", 2));
}

#[tokio::test]
async fn an_invalid_event_fails_for_good_with_pagerdutys_reason() {
    let pd = PagerDutyEmulator::start().await;
    let short = &KEY[..31];
    let h = Herald::start(&config(&pd, short));
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
    assert!(error.contains("400") && error.contains("routing_key"), "{error}");
    assert_eq!(failed[0]["attempts"], 1, "a 400 is never retried");
    assert!(pd.events().is_empty());
}

#[tokio::test]
async fn the_routing_key_never_shows_in_logs_answers_or_stored_errors() {
    let pd = PagerDutyEmulator::start().await;
    // An intermediary answers 400 quoting the whole request, key and all.
    pd.inject(vec![Fault::EchoInvalid]);
    let h = Herald::start(&config(&pd, KEY));
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
    let stored = failed[0]["last_error"].as_str().unwrap();
    assert!(stored.contains("could not process"), "{stored}");
    assert!(!stored.contains(KEY), "{stored}");
    let (_, all) = h.get("/v1/deliveries").await;
    assert!(!all.to_string().contains(KEY));
    let metrics = h
        .client
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains(KEY));
    assert!(!log_of(&h).contains(KEY), "{}", log_of(&h));
}
