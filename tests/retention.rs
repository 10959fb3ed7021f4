//! Retention (SPEC §6.13): with `[store] retention`, finished tasks older
//! than that go with their journal, surfaced receipts and web messages, in
//! batches, counted in `herald_retention_deleted_total`; a running task, a
//! receipt still pending, and a failed receipt younger than `max_age` +
//! retention are kept (a dead letter stays replayable).

mod common;
mod emulators;

use std::time::Duration;

use common::{Herald, event};
use emulators::webhook::{Receiver, Reply};
use serde_json::{Value, json};

fn config(receiver: &Receiver, hanging: &Receiver) -> String {
    // The test config opens with `[store] url = …`: this first line is
    // still in that table.
    format!(
        "retention = \"2s\"\n\n\
         [[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n\
         [channels.main]\nadapter = \"web\"\n\n\
         [channels.hook]\nadapter = \"webhook\"\nurl = \"{}\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\n\
         [channels.slow]\nadapter = \"webhook\"\nurl = \"{}\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\ntimeout = \"1s\"\n\n\
         [[routes]]\nmatch = {{ run_id = \"dead\" }}\nchannels = [\"hook\"]\n\n\
         [[routes]]\nmatch = {{ run_id = \"stuck\" }}\nchannels = [\"slow\"]\n\n\
         [defaults]\nchannels = [\"main\"]\n\n\
         [delivery]\nprogress_min_interval = \"50ms\"\nretry_schedule = [\"1h\"]\n",
        receiver.url(),
        hanging.url(),
    )
}

#[tokio::test]
async fn finished_tasks_go_after_the_retention_and_what_is_still_owed_stays() {
    // `hook` refuses for good (a dead letter); `slow` never answers (a
    // receipt that stays pending, waiting on its retry schedule). Never:
    // a failing account sends one backed-off receipt early every few
    // seconds to notice a recovery, and a receiver that answered after
    // ten of those (on a slow CI machine, within the test) surfaced the
    // receipt, and retention then rightly took its task.
    let refusing = Receiver::start(vec![Reply::Status(410)]).await;
    let hanging = Receiver::start(vec![Reply::Hang; 1000]).await;
    let h = Herald::start(&config(&refusing, &hanging));
    let mut batch: Vec<Value> = (0..1200)
        .map(|i| event("old", "w", &format!("t{i}"), 1, "completed", json!({})))
        .collect();
    batch.push(event(
        "dead",
        "w",
        "letter",
        1,
        "failed",
        json!({"reason": "exit 1"}),
    ));
    batch.push(event("stuck", "w", "owed", 1, "completed", json!({})));
    batch.push(event("live", "w", "running", 1, "running", json!({})));
    for chunk in batch.chunks(500) {
        let (status, body) = h.post_events(&json!(chunk)).await;
        assert_eq!(status, 202, "{body}");
    }
    h.wait_deliveries("failed", 1).await;
    let (_, journal) = h.get("/v1/workers/old/w/t0/events").await;
    assert_eq!(journal["events"].as_array().map(Vec::len), Some(1), "{journal}");

    // Past the retention, the sweeps (every second here) delete the
    // finished tasks in batches of 500.
    h.wait_for("the finished tasks deleted", Duration::from_secs(30), || async {
        let gone = h
            .metric("herald_retention_deleted_total{kind=\"tasks\"}")
            .await
            .unwrap_or(0);
        let web = h
            .metric("herald_retention_deleted_total{kind=\"web_messages\"}")
            .await
            .unwrap_or(0);
        // A live message and a notification per task.
        (gone >= 1200 && web >= 2400).then_some(gone)
    })
    .await;
    assert_eq!(h.get("/v1/workers/old/w/t0/events").await.0, 404);
    let events = h.metric("herald_retention_deleted_total{kind=\"events\"}").await;
    assert!(events >= Some(1200), "{events:?}");
    let (_, surfaced) = h.get("/v1/deliveries?status=surfaced&limit=1000").await;
    assert!(
        surfaced["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["run_id"] != "old"),
        "{surfaced}"
    );
    let (_, web) = h.get("/channels/main/messages").await;
    let left: Vec<&str> = web["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["body"]["title"].as_str())
        .filter(|t| t.starts_with("w · t"))
        .collect();
    assert!(
        left.is_empty(),
        "the finished tasks' web messages are gone: {left:?}"
    );
    // Kept: the dead letter (replayable), the receipt still owed, the
    // running task (and its live message).
    let (_, failed) = h.get("/v1/deliveries?status=failed").await;
    assert_eq!(failed["deliveries"][0]["run_id"], "dead", "{failed}");
    // One read: the receipt moves between pending and sending as it is
    // retried, so two reads by status may see it twice or not at all.
    let (_, stuck) = h.get("/v1/deliveries?run_id=stuck").await;
    let owed: Vec<&str> = stuck["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["status"].as_str())
        .collect();
    assert!(
        owed.len() == 1 && matches!(owed[0], "pending" | "sending"),
        "the receipt still owed is kept, undecided: {stuck}"
    );
    assert_eq!(h.get("/v1/workers/stuck/w/owed/events").await.0, 200);
    assert_eq!(h.get("/v1/workers/live/w/running/events").await.0, 200);
    assert_eq!(h.get("/v1/workers/dead/w/letter/events").await.0, 200);
    let (_, workers) = h.get("/v1/workers?run_id=live").await;
    assert_eq!(workers["workers"].as_array().unwrap().len(), 1);
    let receipts = h
        .metric("herald_retention_deleted_total{kind=\"receipts\"}")
        .await;
    assert!(receipts >= Some(1200), "{receipts:?}");
    // The gauge follows the deletes.
    assert!(h.receipt_gauge("surfaced").await < 1200);
}
