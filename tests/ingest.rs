//! SPEC §3.1 and §4 through the real binary: auth, framing, limits,
//! all-or-nothing batches, idempotency, ordering, durability.

mod common;

use common::{Herald, WEB_ONLY, event};
use serde_json::{Value, json};

async fn journal(h: &Herald, run: &str, worker: &str, task: &str) -> Vec<Value> {
    let (status, body) = h
        .get(&format!("/v1/workers/{run}/{worker}/{task}/events?limit=1000"))
        .await;
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().cloned().expect("an events list")
}

async fn worker_state(h: &Herald, run: &str) -> Vec<Value> {
    let (status, body) = h.get(&format!("/v1/workers?run_id={run}")).await;
    assert_eq!(status, 200, "{body}");
    body["workers"].as_array().cloned().expect("a workers list")
}

#[tokio::test]
async fn single_array_and_ndjson_bodies_are_accepted() {
    let h = Herald::start(WEB_ONLY);
    let (status, body) = h
        .post_events(&event("r1", "w", "t", 1, "queued", json!({})))
        .await;
    assert_eq!(
        (status, body.clone()),
        (202, json!({"accepted": 1, "duplicates": 0})),
        "{body}"
    );

    let batch = json!([
        event("r1", "w", "t", 2, "running", json!({})),
        event("r1", "w", "t", 3, "running_tool", json!({"tool": "cargo"}))
    ]);
    assert_eq!(
        h.post_events(&batch).await,
        (202, json!({"accepted": 2, "duplicates": 0}))
    );

    let ndjson = format!(
        "{}\n\n{}\n",
        event("r1", "w", "t", 4, "model_wait", json!({})),
        event("r1", "w", "t", 5, "running", json!({}))
    );
    let res = h
        .client
        .post(h.url("/v1/events"))
        .bearer_auth("test-token")
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"accepted": 2, "duplicates": 0})
    );

    let events = journal(&h, "r1", "w", "t").await;
    let seqs: Vec<i64> = events
        .iter()
        .map(|e| e["event"]["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn missing_or_wrong_token_is_401_and_stores_nothing() {
    let h = Herald::start(WEB_ONLY);
    let ev = event("r-auth", "w", "t", 1, "queued", json!({}));
    let res = h.client.post(h.url("/v1/events")).json(&ev).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 401);
    assert!(res.json::<Value>().await.unwrap()["error"].is_string());
    let res = h
        .client
        .post(h.url("/v1/events"))
        .bearer_auth("test-tokeN")
        .json(&ev)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    assert!(worker_state(&h, "r-auth").await.is_empty());
}

#[tokio::test]
async fn oversized_body_is_413_json() {
    let h = Herald::start_full(|dir| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 2048\n\n[store]\nurl = \"{}\"\n{WEB_ONLY}",
            common::store::url(dir)
        )
    });
    let big: Vec<Value> = (0..50)
        .map(|i| event("r-big", "w", "t", i, "running", json!({"pad": "x".repeat(50)})))
        .collect();
    let (status, body) = h.post_events(&json!(big)).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().unwrap().contains("max_body_bytes"));
    assert!(worker_state(&h, "r-big").await.is_empty());
    // Under the limit still works.
    let (status, _) = h
        .post_events(&event("r-big", "w", "t", 1, "running", json!({})))
        .await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn one_bad_event_rejects_the_whole_batch() {
    let h = Herald::start(WEB_ONLY);
    let batch = json!([
        event("r-bad", "w", "t", 1, "queued", json!({})),
        event("r-bad", "w", "t", 2, "running", json!({})),
        event("r-bad", "w", "t", 3, "running_tool", json!({})), // missing `tool`
        event("r-bad", "w", "t", 4, "running", json!({})),
    ]);
    let (status, body) = h.post_events(&batch).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["index"], 2);
    assert_eq!(body["field"], "tool");
    assert!(journal(&h, "r-bad", "w", "t").await.is_empty());
    assert!(worker_state(&h, "r-bad").await.is_empty());
}

#[tokio::test]
async fn unknown_state_lists_known_states() {
    let h = Herald::start(WEB_ONLY);
    let (status, body) = h
        .post_events(&event("r", "w", "t", 1, "exploded", json!({})))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["field"], "state");
    let known: Vec<&str> = body["known_states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        known.contains(&"completed") && known.contains(&"running_tool"),
        "{known:?}"
    );
}

#[tokio::test]
async fn malformed_bodies_get_clear_errors() {
    let h = Herald::start(WEB_ONLY);
    for (body, ct) in [
        ("{\"seq\": 1,", "application/json"),
        ("42", "application/json"),
        ("[]", "application/json"),
        ("{\"seq\":1}\nnot json\n", "application/x-ndjson"),
    ] {
        let res = h
            .client
            .post(h.url("/v1/events"))
            .bearer_auth("test-token")
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 400, "{body}");
        let err: Value = res.json().await.unwrap();
        assert!(err["error"].as_str().is_some_and(|s| !s.is_empty()), "{err}");
    }
    // NDJSON names the bad line's index.
    let nd = format!("{}\nnot json\n", event("r", "w", "t", 1, "queued", json!({})));
    let res = h
        .client
        .post(h.url("/v1/events"))
        .bearer_auth("test-token")
        .header("content-type", "application/x-ndjson")
        .body(nd)
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["index"], 1);
}

#[tokio::test]
async fn duplicates_are_counted_and_change_nothing() {
    let h = Herald::start(WEB_ONLY);
    let first = event("r-dup", "w", "t", 1, "running", json!({}));
    assert_eq!(
        h.post_events(&first).await.1,
        json!({"accepted": 1, "duplicates": 0})
    );
    // Same key, different content: still a duplicate, the original stays.
    let changed = event("r-dup", "w", "t", 1, "model_wait", json!({}));
    let batch = json!([
        changed,
        first,
        event("r-dup", "w", "t", 2, "running_tool", json!({"tool": "x"})),
        changed
    ]);
    assert_eq!(
        h.post_events(&batch).await.1,
        json!({"accepted": 1, "duplicates": 3})
    );
    let events = journal(&h, "r-dup", "w", "t").await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event"]["state"], "running");
}

#[tokio::test]
async fn late_lower_seq_does_not_regress_and_terminal_is_final() {
    let h = Herald::start(WEB_ONLY);
    h.post_events(&json!([
        event("r-ord", "w", "t", 1, "queued", json!({})),
        event("r-ord", "w", "t", 5, "running_tool", json!({"tool": "make"})),
    ]))
    .await;
    h.post_events(&event("r-ord", "w", "t", 3, "running", json!({})))
        .await;
    let w = &worker_state(&h, "r-ord").await[0];
    assert_eq!(w["state"], "running_tool");
    assert_eq!(w["seq"], 5);

    h.post_events(&event(
        "r-ord",
        "w",
        "t",
        6,
        "completed",
        json!({"summary": "done"}),
    ))
    .await;
    h.post_events(&event("r-ord", "w", "t", 7, "running", json!({})))
        .await;
    h.post_events(&event("r-ord", "w", "t", 8, "failed", json!({"reason": "late"})))
        .await;
    let w = &worker_state(&h, "r-ord").await[0];
    assert_eq!(w["state"], "completed");
    assert_eq!(w["terminal"], true);
    assert_eq!(w["max_seq"], 8);
    // Every event is journaled all the same, in ingest order.
    let seqs: Vec<i64> = journal(&h, "r-ord", "w", "t")
        .await
        .iter()
        .map(|e| e["event"]["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 5, 3, 6, 7, 8]);
}

#[tokio::test]
async fn journal_pages_are_stable() {
    let h = Herald::start(WEB_ONLY);
    let batch: Vec<Value> = (1..=25)
        .map(|i| event("r-page", "w", "t", i, "running", json!({})))
        .collect();
    h.post_events(&json!(batch)).await;
    let mut cursor = String::new();
    let mut seen = Vec::new();
    for page_number in 0.. {
        assert!(
            page_number < 3,
            "25 events in pages of 10 took more than 3 pages: {seen:?}"
        );
        let (status, body) = h
            .get(&format!("/v1/workers/r-page/w/t/events?limit=10&cursor={cursor}"))
            .await;
        assert_eq!(status, 200, "{body}");
        let page = body["events"].as_array().unwrap().clone();
        seen.extend(page.iter().map(|e| e["event"]["seq"].as_i64().unwrap()));
        match body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());
    // The spec's `after` (an event id) still pages too.
    let (_, first) = h.get("/v1/workers/r-page/w/t/events?limit=1").await;
    let id = first["events"][0]["id"].as_i64().unwrap();
    let (_, rest) = h.get(&format!("/v1/workers/r-page/w/t/events?after={id}")).await;
    assert_eq!(rest["events"].as_array().unwrap().len(), 24);
    assert!(rest["next_cursor"].is_null());
    assert_eq!(h.get("/v1/workers/nope/w/t/events").await.0, 404);
    assert_eq!(h.get("/v1/workers?limit=0").await.0, 400);
}

#[tokio::test]
async fn accepted_events_survive_kill_9() {
    let mut h = Herald::start(WEB_ONLY);
    let mut expected = 0;
    for round in 0..5 {
        let batch: Vec<Value> = (0..200)
            .map(|i| {
                event(
                    "r-crash",
                    &format!("w{round}"),
                    &format!("t{i}"),
                    1,
                    "running",
                    json!({}),
                )
            })
            .collect();
        let (status, body) = h.post_events(&json!(batch)).await;
        assert_eq!(status, 202, "{body}");
        expected += body["accepted"].as_i64().unwrap();
    }
    // kill -9 immediately after the last 202.
    h.kill9();
    h.spawn();
    let workers = h.get("/v1/workers?run_id=r-crash&limit=1000").await.1["workers"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(workers as i64, expected);
}

#[tokio::test]
async fn health_and_readiness() {
    let mut h = Herald::start(WEB_ONLY);
    assert_eq!(h.get("/healthz").await.0, 200);
    assert_eq!(h.get("/readyz").await.0, 200);
    let (status, body) = h.get("/no/such/path").await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
    assert_eq!(h.terminate(), Some(0), "SIGTERM must exit 0");
}
