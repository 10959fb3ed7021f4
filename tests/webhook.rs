//! Signed outgoing webhooks end to end: the real binary delivers terminal
//! notifications to a local receiver; signatures are checked with the
//! reference `standardwebhooks` library (installed by scripts/test).

mod common;
mod emulators;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Herald, event};
use emulators::webhook::{Received, Receiver, Reply};
use serde_json::{Value, json};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn config(hooks: &[(&str, &Receiver, &str)]) -> String {
    let mut text = String::from(
        "[[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n[channels.main]\nadapter = \"web\"\n\n\
         [delivery]\nretry_schedule = [\"100ms\", \"200ms\"]\nprogress_min_interval = \"50ms\"\n\n",
    );
    let names: Vec<String> = hooks.iter().map(|(n, _, _)| format!("\"{n}\"")).collect();
    for (name, receiver, extra) in hooks {
        text.push_str(&format!(
            "[channels.{name}]\nadapter = \"webhook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n{extra}\n\n",
            receiver.url()
        ));
    }
    text.push_str(&format!(
        "[defaults]\nchannels = [\"main\", {}]\n",
        names.join(", ")
    ));
    text
}

/// Check one request with the reference library, in a separate process.
fn verify_with_reference_library(request: &Received) -> Result<(), String> {
    let python = std::env::var("HERALD_TEST_PYTHON")
        .expect("HERALD_TEST_PYTHON is set by scripts/test (run the tests with ./scripts/test)");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/emulators/verify_webhook.py");
    let input = json!({
        "secret": SECRET,
        "headers": request.headers,
        "body": String::from_utf8(request.body.clone()).unwrap(),
    });
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

async fn receipt(h: &Herald, channel: &str) -> Option<Value> {
    let (_, body) = h.get("/v1/deliveries?limit=100").await;
    body["deliveries"]
        .as_array()?
        .iter()
        .find(|d| d["channel"] == channel)
        .cloned()
}

#[tokio::test]
async fn deliveries_are_signed_verifiable_and_documented() {
    let rx = Receiver::start(vec![]).await;
    let h = Herald::start(&config(&[("audit", &rx, "")]));
    h.post_events(&event(
        "nightly-1",
        "w1",
        "build",
        1,
        "running",
        json!({"extra": {"labels": {"team": "infra"}}}),
    ))
    .await;
    h.post_events(&event(
        "nightly-1",
        "w1",
        "build",
        2,
        "failed",
        json!({"reason": "linker error"}),
    ))
    .await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    // Terminal only by default: the running event sent nothing.
    assert_eq!(got.len(), 1, "{got:?}");
    let req = &got[0];
    verify_with_reference_library(req).expect("signature verifies with standardwebhooks");
    let ts: i64 = req.headers["webhook-timestamp"].parse().unwrap();
    assert!((ts - chrono::Utc::now().timestamp()).abs() < 60);
    let doc: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["type"], "task.failed");
    assert_eq!(doc["task"]["run_id"], "nightly-1");
    assert_eq!(doc["task"]["worker_id"], "w1");
    assert_eq!(doc["task"]["labels"]["team"], "infra");
    assert_eq!(doc["summary"], "linker error");
    assert_eq!(doc["id"], req.headers["webhook-id"]);

    let r = h
        .wait_for("surfaced receipt", Duration::from_secs(10), || async {
            receipt(&h, "audit").await.filter(|r| r["status"] == "surfaced")
        })
        .await;
    assert_eq!(r["id"], req.headers["webhook-id"], "webhook-id is the receipt id");

    // A tampered body does not verify: the check can fail.
    let mut forged = req.clone();
    forged.body = req
        .body
        .iter()
        .map(|b| if *b == b'l' { b'L' } else { *b })
        .collect();
    assert!(verify_with_reference_library(&forged).is_err());
}

#[tokio::test]
async fn webhook_id_is_stable_across_retries() {
    let rx = Receiver::start(vec![Reply::Status(500), Reply::Status(503)]).await;
    let h = Herald::start(&config(&[("audit", &rx, "")]));
    h.post_events(&event("r", "w", "t", 1, "completed", json!({"summary": "ok"})))
        .await;
    let got = rx.wait_for(3, Duration::from_secs(10)).await;
    let ids: Vec<&str> = got.iter().map(|r| r.headers["webhook-id"].as_str()).collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[1], ids[2]);
    for req in &got {
        verify_with_reference_library(req).expect("every attempt is signed");
    }
    let r = h
        .wait_for("surfaced after retries", Duration::from_secs(10), || async {
            receipt(&h, "audit").await.filter(|r| r["status"] == "surfaced")
        })
        .await;
    assert_eq!(r["attempts"], 3);
    assert_eq!(r["id"], ids[0]);
}

#[tokio::test]
async fn gone_endpoint_fails_the_receipt_without_more_retries() {
    let rx = Receiver::start(vec![Reply::Status(410)]).await;
    let h = Herald::start(&config(&[("audit", &rx, "")]));
    h.post_events(&event("r", "w", "t", 1, "cancelled", json!({})))
        .await;
    let r = h
        .wait_for("failed receipt", Duration::from_secs(10), || async {
            receipt(&h, "audit").await.filter(|r| r["status"] == "failed")
        })
        .await;
    assert!(r["last_error"].as_str().unwrap().contains("410"), "{r}");
    // Failed is final: no next attempt is scheduled, so nothing retries it.
    assert_eq!(r["next_attempt_at"], Value::Null, "{r}");
    assert_eq!(rx.received().len(), 1, "a 410 must stop retries");
    let (_, failed) = h.get("/v1/deliveries?status=failed").await;
    assert_eq!(failed["deliveries"].as_array().unwrap().len(), 1);

    // Replay after the endpoint is back.
    let res = h
        .client
        .post(h.url(&format!("/v1/deliveries/{}/retry", r["id"].as_str().unwrap())))
        .bearer_auth("test-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    h.wait_for("replayed", Duration::from_secs(10), || async {
        receipt(&h, "audit").await.filter(|r| r["status"] == "surfaced")
    })
    .await;
    assert_eq!(rx.received().len(), 2);
}

#[tokio::test]
async fn rate_limited_endpoint_is_retried_after_retry_after() {
    let rx = Receiver::start(vec![Reply::RetryAfter(1)]).await;
    let h = Herald::start(&config(&[("audit", &rx, "")]));
    h.post_events(&event("r", "w", "t", 1, "completed", json!({})))
        .await;
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "retried after {gap:?}, before Retry-After"
    );
}

#[tokio::test]
async fn a_hanging_receiver_does_not_delay_other_channels() {
    let slow = Receiver::start(vec![Reply::Hang]).await;
    let fast = Receiver::start(vec![]).await;
    let h = Herald::start(&config(&[
        ("slow", &slow, "timeout = \"5s\""),
        ("fast", &fast, ""),
    ]));
    for i in 0..3 {
        h.post_events(&event("r", "w", &format!("t{i}"), 1, "completed", json!({})))
            .await;
    }
    let started = std::time::Instant::now();
    fast.wait_for(3, Duration::from_secs(2)).await;
    h.wait_for("web notifications", Duration::from_secs(2), || async {
        let (_, body) = h.get("/v1/deliveries?status=surfaced").await;
        let web = body["deliveries"]
            .as_array()?
            .iter()
            .filter(|d| d["channel"] == "main")
            .count();
        (web == 3).then_some(())
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    // The slow channel sends its first request (it may land after the fast
    // channel is done: the two are independent) and then waits on it: one
    // hanging request gives the adaptive limit no answer to grow on.
    slow.wait_for(1, Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        slow.received().len(),
        1,
        "the slow endpoint is still stuck on its first request"
    );
}

#[tokio::test]
async fn all_events_channel_posts_state_changes() {
    let rx = Receiver::start(vec![]).await;
    let h = Herald::start(&config(&[("stream", &rx, "events = \"all\"")]));
    h.post_events(&event("r", "w", "t", 1, "running", json!({})))
        .await;
    rx.wait_for(1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.post_events(&event("r", "w", "t", 2, "completed", json!({"summary": "ok"})))
        .await;
    let got = rx.wait_for(3, Duration::from_secs(5)).await;
    let types: Vec<String> = got
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(types.contains(&"task.progress".to_string()), "{types:?}");
    assert!(types.contains(&"task.completed".to_string()), "{types:?}");
    for req in &got {
        verify_with_reference_library(req).unwrap();
    }
}
