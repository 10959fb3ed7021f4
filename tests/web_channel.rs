//! The built-in web channel through the real binary: one progress message
//! per task edited in place, terminal notifications once, live updates over
//! server-sent events, and crash safety of both.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Herald, WEB_ONLY, event};
use serde_json::{Value, json};

/// Messages of web channel `main`, split by kind and keyed by title.
async fn messages(h: &Herald) -> (HashMap<String, Vec<Value>>, HashMap<String, Vec<Value>>) {
    let (status, body) = h.get("/channels/main/messages").await;
    assert_eq!(status, 200, "{body}");
    let mut progress: HashMap<String, Vec<Value>> = HashMap::new();
    let mut terminal: HashMap<String, Vec<Value>> = HashMap::new();
    for m in body["messages"].as_array().unwrap() {
        let title = m["body"]["title"].as_str().unwrap().to_owned();
        let map = if m["body"]["kind"] == "terminal" {
            &mut terminal
        } else {
            &mut progress
        };
        map.entry(title).or_default().push(m.clone());
    }
    (progress, terminal)
}

#[tokio::test]
async fn one_progress_message_per_task_edited_in_place_and_one_terminal_notification() {
    let h = Herald::start(WEB_ONLY);
    for task in ["a", "b", "c"] {
        h.post_events(&event("r-web", "w1", task, 1, "queued", json!({})))
            .await;
    }
    h.wait_for("first progress messages", Duration::from_secs(10), || async {
        let (p, _) = messages(&h).await;
        (p.len() == 3).then_some(())
    })
    .await;
    for task in ["a", "b", "c"] {
        h.post_events(&json!([
            event("r-web", "w1", task, 2, "running", json!({})),
            event(
                "r-web",
                "w1",
                task,
                3,
                "running_tool",
                json!({"tool": "cargo test"})
            ),
        ]))
        .await;
    }
    h.post_events(&event(
        "r-web",
        "w1",
        "a",
        4,
        "completed",
        json!({"summary": "all green"}),
    ))
    .await;
    h.post_events(&event(
        "r-web",
        "w1",
        "b",
        4,
        "failed",
        json!({"reason": "3 tests failed"}),
    ))
    .await;

    let (progress, terminal) = h
        .wait_for("final renderings", Duration::from_secs(10), || async {
            let (p, t) = messages(&h).await;
            let states: Vec<&str> = ["a", "b", "c"]
                .iter()
                .filter_map(|task| p.get(&format!("w1 · {task}")))
                .map(|m| m[0]["body"]["state"].as_str().unwrap_or(""))
                .collect();
            (states == ["completed", "failed", "running tool"] && t.len() == 2).then_some((p, t))
        })
        .await;
    for (title, msgs) in &progress {
        assert_eq!(msgs.len(), 1, "{title} has {} progress messages", msgs.len());
    }
    // Posted while queued (the wait above), then edited in place.
    let a = &progress["w1 · a"][0];
    assert!(
        a["updated_at"].as_str() > a["created_at"].as_str(),
        "the live message was not edited: {a}"
    );
    assert_eq!(terminal["w1 · a"].len(), 1);
    assert_eq!(terminal["w1 · a"][0]["body"]["body"], "all green");
    assert_eq!(terminal["w1 · b"][0]["body"]["state"], "failed");
    assert_eq!(terminal["w1 · b"][0]["body"]["body"], "3 tests failed");

    // Each message is committed before its receipt's outcome.
    h.wait_for("both receipts surfaced", Duration::from_secs(10), || async {
        let (_, body) = h.get("/v1/deliveries?status=surfaced").await;
        (body["deliveries"].as_array()?.len() == 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn pages_render_and_updates_stream_live() {
    let h = Herald::start(WEB_ONLY);
    let index = h
        .client
        .get(h.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // `/` is the overview; it links the web channels from its data.
    assert!(
        index.contains("/v1/overview/events") && index.contains("<main>"),
        "{index}"
    );
    let (_, overview) = h.get("/v1/overview").await;
    assert_eq!(overview["channels"][0]["page"], "/channels/main", "{overview}");
    let page = h.client.get(h.url("/channels/main")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("EventSource") && html.contains("viewport"));
    assert_eq!(h.get("/channels/nope").await.0, 404);

    let res = h.client.get(h.url("/channels/main/events")).send().await.unwrap();
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut res = res;
    h.post_events(&event("r-sse", "w", "t", 1, "running", json!({})))
        .await;
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = res.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: post") && seen.contains("w · t") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "{seen}");
}

#[tokio::test]
async fn event_text_cannot_inject_markup_into_the_page() {
    let h = Herald::start(WEB_ONLY);
    let worker = "<script>alert(1)</script>";
    let summary = "<img src=x onerror=alert(1)>";
    let mut stream = h.client.get(h.url("/channels/main/events")).send().await.unwrap();
    h.post_events(&event(
        "r-x",
        worker,
        "t",
        1,
        "completed",
        json!({"summary": summary}),
    ))
    .await;
    let t = h
        .wait_for("terminal message", Duration::from_secs(10), || async {
            let (_, t) = messages(&h).await;
            (!t.is_empty()).then_some(t)
        })
        .await;
    // The message reaches the page as data: the markup verbatim, as text.
    let (title, msgs) = t.iter().next().unwrap();
    assert_eq!(title, &format!("{worker} · t"));
    assert_eq!(msgs[0]["body"]["body"], summary);
    // The live stream carries it JSON-encoded, never as markup.
    let mut seen = String::new();
    let streamed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("onerror") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(streamed, Ok(true), "{seen}");
    let data: Value = seen
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .find(|d: &Value| d.to_string().contains("onerror"))
        .expect("a JSON data line");
    assert_eq!(data["body"]["body"], summary, "{data}");
    // And the page puts every piece of message text into the DOM with
    // textContent only: no HTML-parsing sink exists in it at all.
    let html = h
        .client
        .get(h.url("/channels/main"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "DOMParser",
    ] {
        assert!(!html.contains(sink), "the page uses {sink}");
    }
    for text in ["m.title", "m.state", "m.body", "f.value"] {
        assert!(
            html.contains(&format!("textContent = {text}"))
                || html.contains(&format!("textContent = f.name + \": \" + {text}")),
            "{text} does not go through textContent"
        );
    }
}

/// kill -9 in a loop while deliveries are in flight, then restart: every
/// terminal notification surfaces exactly once and no progress message is
/// posted twice. Rounds go on until at least two restarts found receipts
/// that were in flight when the process died (and so had to be checked).
#[tokio::test]
async fn kill_9_during_delivery_loses_nothing_and_duplicates_nothing() {
    let mut h = Herald::start(WEB_ONLY);
    let per_round = 5;
    let mut rounds = 0;
    let interrupted = |h: &Herald| {
        h.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("will be reconciled"))
            .count()
    };
    while interrupted(&h) < 2 {
        assert!(rounds < 40, "40 kills never caught a delivery in flight");
        let batch: Vec<Value> = (0..per_round)
            .flat_map(|i| {
                let t = format!("t{rounds}-{i}");
                vec![
                    event("r-k9", "w", &t, 1, "running", json!({})),
                    event(
                        "r-k9",
                        "w",
                        &t,
                        2,
                        "completed",
                        json!({"summary": format!("done {t}")}),
                    ),
                ]
            })
            .collect();
        let (status, _) = h.post_events(&json!(batch)).await;
        assert_eq!(status, 202);
        tokio::time::sleep(Duration::from_millis(3 * (rounds % 8))).await;
        h.kill9();
        h.spawn();
        rounds += 1;
    }
    let tasks = rounds * per_round as u64;
    let (progress, terminal) = h
        .wait_for("all terminal notifications", Duration::from_secs(30), || async {
            let (p, t) = messages(&h).await;
            let done = t.len() == tasks as usize && p.values().all(|m| m[0]["body"]["state"] == "completed");
            (done && p.len() == tasks as usize).then_some((p, t))
        })
        .await;
    for (title, msgs) in terminal {
        assert_eq!(msgs.len(), 1, "{title}: terminal notification duplicated");
    }
    for (title, msgs) in progress {
        assert_eq!(msgs.len(), 1, "{title}: progress message re-posted");
    }
    // The web message is committed before the receipt's outcome (two
    // transactions): wait for the receipts to say surfaced too.
    h.wait_for("every receipt surfaced", Duration::from_secs(10), || async {
        let (_, body) = h.get("/v1/deliveries?status=surfaced&limit=1000").await;
        (body["deliveries"].as_array()?.len() == tasks as usize).then_some(())
    })
    .await;
    let checked = h
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("checking whether messages with an unknown outcome arrived"))
        .count();
    assert!(
        checked >= 2,
        "the interrupted receipts were not looked up before resending"
    );
    eprintln!("{rounds} kills, {} found deliveries in flight", interrupted(&h));
}

#[tokio::test]
async fn an_open_live_page_does_not_hold_a_shutdown() {
    let mut h = Herald::start(WEB_ONLY);
    let res = h.client.get(h.url("/channels/main/events")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    // The viewer stays connected; SIGTERM must still stop herald promptly
    // (the stream ends, the page reconnects to whichever herald is up).
    let started = std::time::Instant::now();
    assert_eq!(h.terminate(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(res);
}
