//! Process lifecycle through the real binary: config reload (SIGHUP and
//! `POST /-/reload`) and the demo.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Demo, Herald, WEB_ONLY, config_text};
use serde_json::Value;

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn reload_applies_a_valid_config_and_keeps_the_old_one_on_errors() {
    let h = Herald::start(WEB_ONLY);
    let (_, overview) = h.get("/v1/overview").await;
    assert_eq!(
        overview["channels"].as_array().map(Vec::len),
        Some(1),
        "{overview}"
    );
    assert_eq!(h.get("/channels/extra").await.0, 404);

    // A broken file is rejected over HTTP with its errors; the old config stays.
    std::fs::write(
        &h.config,
        config_text(
            h.dir.path(),
            &format!("{WEB_ONLY}\n[channels.oops]\nadapter = \"fax\"\n"),
        ),
    )
    .unwrap();
    let res = h
        .client
        .post(h.url("/-/reload"))
        .bearer_auth("test-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("unknown adapter \"fax\""),
        "{body}"
    );
    let metrics = h
        .client
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(&metrics, "herald_config_last_reload_successful"),
        Some(0.0)
    );
    assert_eq!(h.get("/readyz").await.0, 200);

    // Without a token, reload is refused.
    let res = h.client.post(h.url("/-/reload")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 401);

    // A valid file, by SIGHUP: the new web channel appears.
    std::fs::write(
        &h.config,
        config_text(
            h.dir.path(),
            &format!("{WEB_ONLY}\n[channels.extra]\nadapter = \"web\"\n"),
        ),
    )
    .unwrap();
    let pid = h.pid();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    h.wait_for("reloaded config", Duration::from_secs(15), || async {
        let (_, overview) = h.get("/v1/overview").await;
        let channels = overview["channels"].as_array()?;
        channels
            .iter()
            .any(|c| c["page"] == "/channels/extra")
            .then_some(())
    })
    .await;
    let metrics = h
        .client
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(&metrics, "herald_config_last_reload_successful"),
        Some(1.0)
    );
}

#[tokio::test]
async fn demo_moves_a_fleet_through_the_web_channel() {
    let demo = Demo::start(&["--workers", "20", "--pace", "0.02"]);
    let urls = demo.urls.clone();
    assert_eq!(urls.len(), 2, "{urls:?}");
    assert!(urls[1].ends_with("/channels/main"), "{urls:?}");
    let base = demo.base();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (workers, surfaced) = loop {
        let w: Value = client
            .get(format!("{base}/v1/workers?limit=1000"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let d: Value = client
            .get(format!("{base}/v1/deliveries?status=surfaced&limit=1000"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let workers: std::collections::HashSet<String> = w["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["worker_id"].as_str().unwrap().to_owned())
            .collect();
        let surfaced = d["deliveries"].as_array().unwrap().len();
        if workers.len() == 20 && surfaced >= 5 {
            break (workers.len(), surfaced);
        }
        assert!(
            Instant::now() < deadline,
            "demo fleet did not move: {} workers, {surfaced} surfaced",
            workers.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(workers, 20);
    assert!(surfaced >= 5);
    // Both pages it printed answer.
    for url in &urls {
        let page = client.get(url).send().await.unwrap();
        assert_eq!(page.status().as_u16(), 200, "{url}");
    }
}
