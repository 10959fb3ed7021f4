//! Two store handles (two connection pools, as two herald processes would
//! have) ingesting the same tasks at once, on the backend of the run
//! (SQLite, or PostgreSQL with `HERALD_TEST_STORE=postgres`). On SQLite the
//! one write lock serialises them; on PostgreSQL the per-task advisory
//! locks must: without them both would plan from the same snapshot and one
//! task state would overwrite the other.

mod common;

use std::time::Duration;

use herald::ingest::plan::{Batch, RoutedChannel};
use herald::protocol::{FleetWorkerEvent, parse_event};
use herald::routing::RoutingInput;
use herald::store::Store;
use serde_json::json;

const TASKS: usize = 12;
const SEQS: i64 = 30;

fn ev(task: usize, seq: i64) -> FleetWorkerEvent {
    let state = if seq == SEQS { "completed" } else { "running" };
    parse_event(json!({
        "seq": seq, "run_id": "r", "worker_id": "w", "task_id": format!("t{task}"),
        "timestamp": "2026-12-01T00:00:00Z", "state": state,
    }))
    .unwrap()
}

fn route(_: &RoutingInput<'_>) -> Vec<RoutedChannel> {
    vec![RoutedChannel {
        name: "main".into(),
        progress: true,
    }]
}

/// Every event of every task, in an order of its own per side (a simple
/// deterministic shuffle), in batches of 7: both sides send everything,
/// so every event arrives twice, concurrently.
async fn side(store: Store, salt: u64) -> (usize, usize, usize) {
    let mut events: Vec<(usize, i64)> = (0..TASKS).flat_map(|t| (1..=SEQS).map(move |s| (t, s))).collect();
    let mut x = salt;
    for i in (1..events.len()).rev() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        events.swap(i, (x >> 33) as usize % (i + 1));
    }
    let (mut accepted, mut duplicates, mut receipts) = (0, 0, 0);
    for chunk in events.chunks(7) {
        let requests = vec![chunk.iter().map(|(t, s)| ev(*t, *s)).collect::<Vec<_>>()];
        let batch = Batch::new(&requests).unwrap();
        let result = store.ingest(&batch, &route).await.expect("ingest");
        accepted += result.reports[0].accepted;
        duplicates += result.reports[0].duplicates;
        receipts += result.receipts_created;
    }
    (accepted, duplicates, receipts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_database_accept_each_event_once_and_lose_no_state() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::store::url(dir.path());
    let a = Store::open(&url, Duration::from_secs(10)).await.unwrap();
    let b = Store::open(&url, Duration::from_secs(10)).await.unwrap();
    let (one, two) = tokio::join!(tokio::spawn(side(a.clone(), 7)), tokio::spawn(side(b, 1_000_003)));
    let (one, two) = (one.unwrap(), two.unwrap());

    let total = TASKS * SEQS as usize;
    assert_eq!(
        one.0 + two.0,
        total,
        "each event accepted exactly once: {one:?} {two:?}"
    );
    assert_eq!(one.1 + two.1, total, "and reported a duplicate by the other side");
    assert_eq!(one.2 + two.2, TASKS, "one receipt per task");
    assert_eq!(a.event_count().await.unwrap(), total as i64);

    let workers = a.workers(Some("r"), None, None, 100).await.unwrap();
    assert_eq!(workers.len(), TASKS);
    for w in workers {
        // The terminal event is the highest seq, so whatever the order the
        // task ends showing it, having seen every seq.
        assert_eq!(
            (w.state.as_str(), w.seq, w.max_seq, w.terminal),
            ("completed", SEQS, SEQS, true),
            "{}",
            w.task_id
        );
        assert_eq!(w.channels, vec!["main".to_owned()], "{}: routed once", w.task_id);
    }
    let receipts = a.receipts(&Default::default(), 1000).await.unwrap();
    assert_eq!(receipts.len(), TASKS);
}

/// A web post whose answer was lost (the connection went with it) is sent
/// again with the same key: the store answers with the message it holds,
/// instead of a unique-key error on every later attempt (which CI caught
/// as a receipt retried 148 times on PostgreSQL).
#[tokio::test]
async fn a_web_post_sent_again_with_its_key_is_the_same_message() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::store::url(dir.path());
    let store = Store::open(&url, Duration::from_secs(10)).await.unwrap();
    let first = store
        .web_post("main", &json!({"title": "a"}), Some("hr1"), 1)
        .await
        .unwrap();
    let again = store
        .web_post("main", &json!({"title": "a"}), Some("hr1"), 2)
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.created_at, 1);
    // Without a key every post is new; another channel has its own keys.
    let other = store
        .web_post("other", &json!({"title": "a"}), Some("hr1"), 3)
        .await
        .unwrap();
    assert_ne!(other.id, first.id);
    let a = store.web_post("main", &json!({}), None, 4).await.unwrap();
    let b = store.web_post("main", &json!({}), None, 5).await.unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(store.web_messages("main", 10).await.unwrap().len(), 3);
}
