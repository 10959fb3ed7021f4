//! Channel leases in the store, on the backend of the run: a lease is
//! granted to one replica at a time, passes on when its holder is not
//! alive, and fences every delivery write made under it: once the channel
//! has a new grant, the old holder's claims, outcomes and progress writes
//! change nothing.

mod common;

use std::time::Duration;

use herald::ingest::plan::{Batch, RoutedChannel};
use herald::protocol::parse_event;
use herald::routing::RoutingInput;
use herald::store::{Claimable, ProgressWrite, ReceiptOutcome, ReceiptUpdate, Store, StoreError, now_ms};

/// Claims that leave receipts waiting for a look-up alone.
const VERIFIED_ONLY: Claimable = Claimable {
    verified_only: true,
    parent_posted: false,
};
use serde_json::json;

fn route(_: &RoutingInput<'_>) -> Vec<RoutedChannel> {
    vec![RoutedChannel {
        name: "main".into(),
        progress: true,
    }]
}

async fn open() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&common::store::url(dir.path()), Duration::from_secs(10))
        .await
        .unwrap();
    (store, dir)
}

async fn ingest_terminal(store: &Store, task: &str) {
    let event = parse_event(json!({
        "seq": 1, "run_id": "r", "worker_id": "w", "task_id": task,
        "timestamp": "2026-12-01T00:00:00Z", "state": "completed",
    }))
    .unwrap();
    let requests = vec![vec![event]];
    let batch = Batch::new(&requests).unwrap();
    store.ingest(&batch, &route).await.unwrap();
}

fn live(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn a_lease_is_held_by_one_live_replica_and_passes_on_when_it_is_gone() {
    let (store, _dir) = open().await;
    let now = now_ms();
    let a = store
        .take_lease("main", "a", &live(&["a", "b"]), now, 10_000)
        .await
        .unwrap()
        .expect("free");
    // b cannot take it while a is alive and the lease current.
    assert_eq!(
        store
            .take_lease("main", "b", &live(&["a", "b"]), now, 10_000)
            .await
            .unwrap(),
        None
    );
    // a renews; b still cannot.
    assert_eq!(
        store.renew_leases("a", now + 5_000, 10_000).await.unwrap(),
        vec![a.clone()]
    );
    assert_eq!(
        store
            .take_lease("main", "b", &live(&["a", "b"]), now + 12_000, 10_000)
            .await
            .unwrap(),
        None
    );
    // a is gone (not among the live): b takes it at once, with a new epoch.
    let b = store
        .take_lease("main", "b", &live(&["b"]), now + 6_000, 10_000)
        .await
        .unwrap()
        .expect("a's holder is gone");
    assert!(b.epoch > a.epoch);
    assert!(
        store
            .renew_leases("a", now + 7_000, 10_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!store.lease_held(&a).await.unwrap());
    // A lapsed lease is free even while its holder lives.
    let c = store
        .take_lease("main", "c", &live(&["b", "c"]), now + 6_000 + 10_001, 10_000)
        .await
        .unwrap()
        .expect("b's lease lapsed");
    // Handed back: free for anyone at once.
    store.release_lease(&c).await.unwrap();
    assert!(
        store
            .take_lease("main", "b", &live(&["b", "c"]), now + 16_100, 10_000)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn writes_under_a_lease_that_passed_on_change_nothing() {
    let (store, _dir) = open().await;
    ingest_terminal(&store, "t1").await;
    let now = now_ms();
    let old = store
        .take_lease("main", "a", &live(&["a"]), now, 10_000)
        .await
        .unwrap()
        .unwrap();
    let claimed = store
        .claim_receipts(&old, now, 60_000, 10, Claimable::default())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    // a stops being alive; b takes the channel and recovers a's claim.
    let new = store
        .take_lease("main", "b", &live(&["b"]), now + 1, 10_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.reclaim_unowned_receipts(&new, &[], now + 2).await.unwrap(),
        1
    );

    // a's late answer is not recorded over b's state ...
    let outcome = ReceiptOutcome {
        id: claimed[0].id.clone(),
        attempt: claimed[0].attempts,
        epoch: old.epoch,
        update: ReceiptUpdate::Failed { error: "late".into() },
        at: now + 3,
    };
    assert_eq!(store.finish_receipts(&[outcome]).await.unwrap(), vec![false]);
    // ... and a can neither claim nor write progress any more.
    assert!(matches!(
        store
            .claim_receipts(&old, now + 4, 60_000, 10, Claimable::default())
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    let task = store
        .due_progress("main", true, now + 5, 0, 10, false)
        .await
        .unwrap();
    let task = task.first().map(|j| j.task).expect("a live message to post");
    let write = ProgressWrite::Shown {
        message_id: "m-old".into(),
        version: 1,
        text_hash: None,
    };
    assert!(matches!(
        store.record_progress(task, &old, &write, now + 6).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        store.progress_post_started(task, &old, "{}", now + 6).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        store.reclaim_expired_receipts(&old, now + 7).await,
        Err(StoreError::LeaseLost { .. })
    ));
    // Nor settle what a look-up found (b decides that now).
    assert!(matches!(
        store
            .clear_unverified_receipts(&old, &[claimed[0].id.clone()], None, now + 7)
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        store.fail_unverified_before(&old, now + 7, "too old").await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        store.clear_progress_started(&old, &[task]).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        store
            .surface_unverified_receipt(&old, &claimed[0].id, "m-old", now + 7)
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert_eq!(
        store.receipt_status(&claimed[0].id).await.unwrap().as_deref(),
        Some("pending"),
        "nothing a stale holder tried changed the receipt"
    );

    // b's own attempt is recorded.
    let again = store
        .claim_receipts(&new, now + 8, 60_000, 10, VERIFIED_ONLY)
        .await
        .unwrap();
    let again = if again.is_empty() {
        // The recovered receipt waits for a check; clear it as a look-up would.
        store
            .clear_unverified_receipts(&new, &[claimed[0].id.clone()], None, now + 8)
            .await
            .unwrap();
        store
            .claim_receipts(&new, now + 9, 60_000, 10, VERIFIED_ONLY)
            .await
            .unwrap()
    } else {
        again
    };
    assert_eq!(again.len(), 1);
    let outcome = ReceiptOutcome {
        id: again[0].id.clone(),
        attempt: again[0].attempts,
        epoch: new.epoch,
        update: ReceiptUpdate::Surfaced {
            message_id: "m1".into(),
        },
        at: now + 10,
    };
    assert_eq!(store.finish_receipts(&[outcome]).await.unwrap(), vec![true]);
    store.record_progress(task, &new, &write, now + 11).await.unwrap();
}

#[tokio::test]
async fn replicas_register_and_leave() {
    let (store, _dir) = open().await;
    let now = now_ms();
    store.join("r1", "127.0.0.1:1", now, 10_000).await.unwrap();
    store.heartbeat("r1", now + 1_000, 10_000).await.unwrap();
    let rows = store.replicas(now + 1_000).await.unwrap();
    let me = rows.iter().find(|r| r.id == "r1").expect("registered");
    assert!(me.alive, "{rows:?}");
    assert_eq!(me.expires_at, now + 11_000);
    let lease = store
        .take_lease("main", "r1", &live(&["r1"]), now, 10_000)
        .await
        .unwrap()
        .unwrap();
    store.leave("r1").await.unwrap();
    assert!(
        store
            .replicas(now + 2_000)
            .await
            .unwrap()
            .iter()
            .all(|r| r.id != "r1")
    );
    assert!(
        !store.lease_held(&lease).await.unwrap(),
        "leaving hands the leases back"
    );
}

#[tokio::test]
async fn a_replica_is_alive_only_by_a_lock_in_its_own_database() {
    if !common::store::on_postgres() {
        // SQLite: one process, alive is the one that joined (tested above).
        return;
    }
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let other_url = common::store::url(dir.path());
    let other = Store::open(&other_url, Duration::from_secs(10)).await.unwrap();
    let (one, _d1) = open().await;
    // Both databases number their replicas' lock keys from 1.
    other.join("y", "127.0.0.1:2", now_ms(), 10_000).await.unwrap();
    one.join("x", "127.0.0.1:1", now_ms(), 10_000).await.unwrap();
    let rows = other.replicas(now_ms()).await.unwrap();
    assert!(rows.iter().any(|r| r.id == "y" && r.alive), "{rows:?}");
    // y's process dies (its session ends); x, in another database, holds
    // the lock with the same keys and must not keep y alive.
    let database = reqwest::Url::parse(&other_url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_owned();
    let mut admin = sqlx::PgConnection::connect(&std::env::var("HERALD_TEST_PG_URL").unwrap())
        .await
        .unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks \
         WHERE locktype = 'advisory' AND classid = 1751478881::oid AND objsubid = 2 AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = $1)",
    )
    .bind(&database)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(killed, vec![true]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let rows = other.replicas(now_ms()).await.unwrap();
        if rows.iter().any(|r| r.id == "y" && !r.alive) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "y still alive: {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        one.replicas(now_ms())
            .await
            .unwrap()
            .iter()
            .any(|r| r.id == "x" && r.alive)
    );
}

fn two_channels(_: &RoutingInput<'_>) -> Vec<RoutedChannel> {
    ["main", "other"]
        .into_iter()
        .map(|name| RoutedChannel {
            name: name.into(),
            progress: false,
        })
        .collect()
}

/// The delivery writer's group commit: outcomes and the claims of several
/// channels in one transaction, each claim fenced by its own lease, each
/// answered on its own.
#[tokio::test]
async fn one_bookkeeping_write_records_outcomes_and_claims_for_several_channels() {
    let (store, _dir) = open().await;
    let event = |task: &str| {
        parse_event(json!({
            "seq": 1, "run_id": "r", "worker_id": "w", "task_id": task,
            "timestamp": "2026-12-01T00:00:00Z", "state": "completed",
        }))
        .unwrap()
    };
    let requests = vec![vec![event("t1")]];
    store
        .ingest(&Batch::new(&requests).unwrap(), &two_channels)
        .await
        .unwrap();
    let now = now_ms();
    let main = store
        .take_lease("main", "a", &live(&["a"]), now, 10_000)
        .await
        .unwrap()
        .unwrap();
    let old_other = store
        .take_lease("other", "a", &live(&["a"]), now, 10_000)
        .await
        .unwrap()
        .unwrap();
    let first = store
        .claim_receipts(&main, now, 60_000, 10, Claimable::default())
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    // `other` passes to b; a second task arrives for both channels.
    store
        .take_lease("other", "b", &live(&["b"]), now + 1, 10_000)
        .await
        .unwrap()
        .expect("a is gone");
    let requests = vec![vec![event("t2")]];
    store
        .ingest(&Batch::new(&requests).unwrap(), &two_channels)
        .await
        .unwrap();
    let claim = |lease: &herald::store::Lease| herald::store::ClaimRequest {
        lease: lease.clone(),
        now: now_ms(),
        lease_ms: 60_000,
        limit: 10,
        which: Claimable::default(),
    };
    let outcome = ReceiptOutcome {
        id: first[0].id.clone(),
        attempt: first[0].attempts,
        epoch: main.epoch,
        update: ReceiptUpdate::Surfaced {
            message_id: "m1".into(),
        },
        at: now_ms(),
    };
    let done = store
        .finish_and_claim(&[outcome], &[claim(&main), claim(&old_other)])
        .await
        .unwrap();
    assert_eq!(done.recorded, vec![true]);
    let mut claimed = done.claimed.into_iter();
    let of_main = claimed.next().unwrap().unwrap();
    assert_eq!(of_main.len(), 1, "main's second receipt");
    assert_eq!(of_main[0].task_id, "t2");
    assert_eq!(of_main[0].channel, "main");
    match claimed.next().unwrap() {
        Err(StoreError::LeaseLost { channel }) => assert_eq!(channel, "other"),
        other => panic!("a claim under a lease that passed on: {other:?}"),
    }
    assert!(claimed.next().is_none());
}
