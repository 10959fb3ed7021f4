//! Webhook channels keep several deliveries in flight, adaptively: a fast
//! receiver is saturated, a receiver that slows with load or refuses
//! beyond its capacity is not flooded, `max_in_flight` caps or fixes the
//! number, and no receipt is ever in flight twice. The real binary
//! against a receiver that counts what it holds.

mod common;
mod emulators;

use std::collections::HashMap;
use std::time::Duration;

use common::Herald;
use emulators::webhook::{Load, Receiver, Reply};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn config(receiver: &Receiver, extra: &str) -> String {
    format!(
        "[[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n\
         [channels.hook]\nadapter = \"webhook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n{extra}\n\n\
         [delivery]\nretry_schedule = [\"100ms\", \"200ms\"]\n\n\
         [defaults]\nchannels = [\"hook\"]\n",
        receiver.url()
    )
}

/// Post `n` terminal events (one task each) in batches of 500.
async fn burst(h: &Herald, n: usize) {
    h.post_terminal_burst(n, 500).await;
}

/// Every receipt arrived; how many times each `webhook-id` came.
async fn delivered(rx: &Receiver, n: usize, within: Duration) -> HashMap<String, usize> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let mut ids: HashMap<String, usize> = HashMap::new();
        for r in rx.received() {
            *ids.entry(r.headers["webhook-id"].clone()).or_default() += 1;
        }
        if ids.len() >= n {
            return ids;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "receiver got {} of {n} webhook-ids",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_fast_receiver_gets_many_deliveries_at_once_each_once() {
    // 20 ms per request whatever the load: more in flight is pure gain.
    let rx = Receiver::start_loaded(Load {
        base: Duration::from_millis(20),
        ..Load::default()
    })
    .await;
    let h = Herald::start(&config(&rx, ""));
    burst(&h, 1000).await;
    let ids = delivered(&rx, 1000, Duration::from_secs(30)).await;
    assert!(ids.values().all(|&n| n == 1), "a receipt was delivered twice");
    assert_eq!(rx.overlaps(), 0, "a receipt was in flight twice");
    assert!(
        rx.peak() >= 16,
        "the limit should have grown well past one; peak in flight {}",
        rx.peak()
    );
    assert!(rx.peak() <= 200, "above the default ceiling: {}", rx.peak());
}

#[tokio::test]
async fn a_receiver_that_slows_with_load_is_not_flooded() {
    // Each request held in parallel adds 5 ms to every other: concurrency
    // buys nothing, and round trips rise as it grows.
    let rx = Receiver::start_loaded(Load {
        base: Duration::from_millis(2),
        per_request: Duration::from_millis(5),
        capacity: None,
    })
    .await;
    let h = Herald::start(&config(&rx, ""));
    burst(&h, 400).await;
    let ids = delivered(&rx, 400, Duration::from_secs(60)).await;
    assert!(ids.values().all(|&n| n == 1));
    assert!(
        rx.peak() <= 24,
        "rising round trips should hold the limit down; peak in flight {}",
        rx.peak()
    );
}

#[tokio::test]
async fn a_receiver_at_capacity_pushes_the_limit_down_and_loses_nothing() {
    // Beyond 6 in flight the receiver answers 503 at once.
    let rx = Receiver::start_loaded(Load {
        base: Duration::from_millis(15),
        per_request: Duration::ZERO,
        capacity: Some(6),
    })
    .await;
    let h = Herald::start(&config(&rx, ""));
    burst(&h, 600).await;
    delivered(&rx, 600, Duration::from_secs(60)).await;
    h.wait_for("every receipt surfaced", Duration::from_secs(60), || async {
        (h.receipt_gauge("surfaced").await == 600).then_some(())
    })
    .await;
    let attempts = rx.received().len();
    let refused = rx.refused();
    // Additive increase probes one past the capacity now and then, and
    // each refusal shrinks the limit again: refusals stay a small share
    // (a fixed 200 in flight would have most requests refused).
    assert!(
        refused * 4 < attempts,
        "back-pressure should keep refusals few: {refused} refused of {attempts} requests"
    );
    assert!(
        rx.peak() <= 12,
        "hovering near capacity, peak in flight {}",
        rx.peak()
    );
    assert_eq!(rx.overlaps(), 0);
}

#[tokio::test]
async fn max_in_flight_caps_and_fixes_the_number() {
    let rx = Receiver::start_loaded(Load {
        base: Duration::from_millis(10),
        ..Load::default()
    })
    .await;
    let h = Herald::start(&config(&rx, "max_in_flight = 4\nadaptive_in_flight = false"));
    burst(&h, 200).await;
    delivered(&rx, 200, Duration::from_secs(30)).await;
    assert_eq!(rx.peak(), 4, "fixed at four whenever work waits");

    let capped = Receiver::start_loaded(Load {
        base: Duration::from_millis(10),
        ..Load::default()
    })
    .await;
    let h = Herald::start(&config(&capped, "max_in_flight = 3"));
    burst(&h, 200).await;
    delivered(&capped, 200, Duration::from_secs(30)).await;
    assert!(capped.peak() <= 3, "capped at three: {}", capped.peak());
}

#[test]
fn in_flight_settings_are_checked() {
    let check = |channel: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(
            &path,
            format!(
                "[[sources]]\nname = \"f\"\ntoken = \"t\"\n\n[adapters.discord]\ntoken = \"x\"\n\n{channel}\n\n\
                 [defaults]\nchannels = [\"c\"]\n"
            ),
        )
        .unwrap();
        let out = std::process::Command::new(common::herald_bin())
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = check("[channels.c]\nadapter = \"discord\"\nid = \"1\"\nmax_in_flight = 8");
    assert!(!ok);
    assert!(
        err.contains("herald.toml:11:17:")
            && err.contains("`max_in_flight` applies to webhook and web channels only"),
        "{err}"
    );
    let (ok, err) = check(&format!(
        "[channels.c]\nadapter = \"webhook\"\nurl = \"http://127.0.0.1:1/h\"\nsecret = \"{SECRET}\"\nmax_in_flight = 0"
    ));
    assert!(!ok);
    assert!(
        err.contains("max_in_flight must be between 1 and 1000, got 0"),
        "{err}"
    );
    let (ok, err) = check("[channels.c]\nadapter = \"web\"\nmax_in_flight = 16\nadaptive_in_flight = false");
    assert!(ok, "{err}");
}

#[tokio::test]
async fn a_retry_after_quiets_every_delivery_of_the_channel() {
    // The 30th request is answered 429 Retry-After: 1 while many others
    // are in flight; none may start inside that second.
    let mut script = vec![Reply::Status(200); 29];
    script.push(Reply::RetryAfter(1));
    let rx = Receiver::start_scripted(
        script,
        Load {
            base: Duration::from_millis(10),
            ..Load::default()
        },
    )
    .await;
    let h = Herald::start(&config(&rx, ""));
    burst(&h, 300).await;
    delivered(&rx, 300, Duration::from_secs(30)).await;
    assert!(rx.peak() > 1, "deliveries were concurrent");
    assert_eq!(rx.early(), 0, "requests inside the Retry-After");
}
