//! Alerts in (SPEC §3.4) through the real binary: a real Prometheus
//! Alertmanager 0.25 (single instance, `send_resolved: true`, a short
//! `repeat_interval`) notifies herald, which routes by the alerts' team
//! label to Discord, Slack and Telegram (their emulators): five alerts fire
//! → one live message each per platform, saying firing and naming the
//! instance; Alertmanager's repeats add nothing; they resolve → the same
//! message says resolved and one resolved notification each. A Grafana
//! payload posted directly gets one firing message per platform; a channel
//! with `notify_resolved = false` gets no resolved notification; an alert
//! webhook without a token is 401 and a bad payload a 400 naming its field,
//! with nothing stored.

mod common;
mod emulators;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::Herald;
use emulators::discord::DiscordEmulator;
use emulators::slack::SlackEmulator;
use emulators::tally::{self, Shown};
use emulators::telegram::{ChatKind, TelegramEmulator};
use serde_json::{Value, json};

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
const CHAT: i64 = 777;

struct Platforms {
    discord: DiscordEmulator,
    slack: SlackEmulator,
    telegram: TelegramEmulator,
}

impl Platforms {
    async fn start() -> Platforms {
        let telegram = TelegramEmulator::start("1:tg").await;
        telegram.chat(CHAT, ChatKind::Private);
        Platforms {
            discord: DiscordEmulator::start("dtoken", &["9001"]).await,
            slack: SlackEmulator::start("xoxb-t", &["C1"]).await,
            telegram,
        }
    }

    /// herald routing the infra team's alerts to all three; Telegram skips
    /// resolved notifications when `quiet_telegram`.
    fn config(&self, quiet_telegram: bool) -> String {
        format!(
            "[[sources]]\nname = \"alerting\"\ntoken = \"test-token\"\n\n\
             [adapters.discord]\ntoken = \"dtoken\"\napi_url = \"{}\"\n\n\
             [adapters.slack]\ntoken = \"xoxb-t\"\napi_url = \"{}\"\n\n\
             [adapters.telegram]\ntoken = \"1:tg\"\napi_url = \"{}\"\n\n\
             [channels.d]\nadapter = \"discord\"\nid = \"9001\"\n\n\
             [channels.s]\nadapter = \"slack\"\nid = \"C1\"\n\n\
             [channels.t]\nadapter = \"telegram\"\nid = \"{CHAT}\"\nnotify_resolved = {}\n\n\
             [channels.main]\nadapter = \"web\"\n\n\
             [[routes]]\nmatch = {{ \"labels.team\" = \"infra\" }}\nchannels = [\"d\", \"s\", \"t\"]\n\n\
             [defaults]\nchannels = [\"main\"]\n\n\
             [delivery]\nretry_schedule = [\"200ms\", \"500ms\"]\nprogress_min_interval = \"200ms\"\n",
            self.discord.api_url(),
            self.slack.api_url(),
            self.telegram.api_url(),
            !quiet_telegram,
        )
    }

    /// What each platform shows of the alerts named `prefix` + one digit.
    fn shown(&self, prefix: &str) -> [Shown; 3] {
        let len = prefix.len() + 1;
        let d: Vec<(String, bool)> = self
            .discord
            .messages("9001")
            .iter()
            .map(tally::discord_message)
            .collect();
        let s: Vec<(String, bool)> = self
            .slack
            .messages("C1")
            .iter()
            .map(tally::slack_message)
            .collect();
        let t: Vec<(String, bool)> = self
            .telegram
            .messages(CHAT)
            .iter()
            .map(tally::telegram_message)
            .collect();
        [
            Shown::count(&d, prefix, len),
            Shown::count(&s, prefix, len),
            Shown::count(&t, prefix, len),
        ]
    }

    fn no_early_requests(&self) {
        assert!(self.discord.early().is_empty(), "{:?}", self.discord.early());
        assert!(self.slack.early().is_empty(), "{:?}", self.slack.early());
        assert!(self.telegram.early().is_empty(), "{:?}", self.telegram.early());
    }
}

/// A running Alertmanager notifying `webhook` with `token`.
struct Alertmanager {
    base: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        // Stopped with the test; it may have exited already.
        if self.child.kill().is_ok() {
            let _reaped = self.child.wait().is_ok();
        }
    }
}

impl Alertmanager {
    async fn start(webhook: &str, token: &str) -> Alertmanager {
        let dir = tempfile::tempdir().expect("a temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // One group per alert, sent at once, repeated every 2 s while
        // firing (so repeats happen during the test), resolved sent.
        let config = format!(
            "route:\n  receiver: herald\n  group_by: ['alertname', 'instance']\n  group_wait: 0s\n  \
             group_interval: 1s\n  repeat_interval: 2s\n\
             receivers:\n  - name: herald\n    webhook_configs:\n      - url: '{webhook}'\n        \
             send_resolved: true\n        http_config:\n          authorization:\n            \
             credentials: '{token}'\n"
        );
        let path = dir.path().join("alertmanager.yml");
        std::fs::write(&path, config).expect("write the Alertmanager config");
        let child = std::process::Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", path.display()))
            .arg(format!("--storage.path={}", dir.path().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // One instance, as its docs run one (no gossip to settle).
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Alertmanager");
        let am = Alertmanager {
            base: format!("http://127.0.0.1:{port}"),
            child,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        for _ in 0..400 {
            if let Ok(r) = client.get(format!("{}/-/ready", am.base)).send().await
                && r.status().is_success()
            {
                return am;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("Alertmanager did not become ready");
    }

    /// Post alerts to Alertmanager's API (as Prometheus does).
    async fn post(&self, alerts: &Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v2/alerts", self.base))
            .json(alerts)
            .send()
            .await
            .expect("post alerts to Alertmanager");
        assert!(r.status().is_success(), "{}", r.status());
    }
}

fn am_alert(instance: &str, starts: &str, ends: Option<&str>) -> Value {
    let mut a = json!({
        "labels": {"alertname": "HighLatency", "instance": instance, "team": "infra", "severity": "warning"},
        "annotations": {"summary": format!("p99 above 2 s on {instance}")},
        "startsAt": starts,
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=latency",
    });
    if let Some(e) = ends {
        a["endsAt"] = json!(e);
    }
    a
}

const INSTANCES: [&str; 5] = ["inst1", "inst2", "inst3", "inst4", "inst5"];

fn tasks(prefix: &str) -> Vec<String> {
    (1..=5).map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test]
async fn alertmanager_alerts_are_one_live_message_each_edited_when_they_resolve() {
    if !Path::new(ALERTMANAGER).exists() {
        eprintln!(
            "SKIPPED: {ALERTMANAGER} is not installed (scripts/test installs Debian's prometheus-alertmanager)"
        );
        return;
    }
    let platforms = Platforms::start().await;
    let h = Herald::start(&platforms.config(false));
    let am = Alertmanager::start(&h.url("/v1/alerts/alertmanager"), "test-token").await;
    let starts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let firing: Vec<Value> = INSTANCES.iter().map(|i| am_alert(i, &starts, None)).collect();
    am.post(&Value::Array(firing)).await;

    // Five live messages per platform, firing, naming the instance.
    let prefix = "HighLatency on inst";
    let names = tasks(prefix);
    h.wait_for(
        "five firing live messages per platform",
        Duration::from_secs(30),
        || async {
            let shown = platforms.shown(prefix);
            shown.iter().all(|s| s.all_show(&names, "firing")).then_some(())
        },
    )
    .await;
    // Alertmanager repeats every 2 s (and re-sends at each 1 s flush):
    // nothing new appears.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for shown in platforms.shown(prefix) {
        assert_eq!(shown.faults(&names).2, 0, "re-posted: {:?}", shown.progress);
        assert!(shown.terminal.is_empty(), "{:?}", shown.terminal);
        assert_eq!(shown.progress.len(), 5, "{:?}", shown.progress);
    }
    let (_, workers) = h.get("/v1/workers?run_id=alertmanager&limit=100").await;
    assert_eq!(workers["workers"].as_array().map(Vec::len), Some(5), "{workers}");
    // Alertmanager did repeat them (herald counted the repeats as duplicates).
    let repeats = h.metric("herald_events_duplicate_total").await.unwrap_or(0);
    assert!(repeats >= 5, "no repeats seen: {repeats}");

    // They resolve: each live message says resolved; one notification each.
    let ends = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let resolved: Vec<Value> = INSTANCES
        .iter()
        .map(|i| am_alert(i, &starts, Some(&ends)))
        .collect();
    am.post(&Value::Array(resolved)).await;
    h.wait_for(
        "resolved everywhere, notified once",
        Duration::from_secs(40),
        || async {
            let shown = platforms.shown(prefix);
            shown
                .iter()
                .all(|s| s.all_show(&names, "resolved") && s.faults(&names) == (0, 0, 0))
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for shown in platforms.shown(prefix) {
        assert_eq!(
            shown.faults(&names),
            (0, 0, 0),
            "{:?} {:?}",
            shown.progress,
            shown.terminal
        );
    }
    // The headline links to the alert's source.
    let source = "http://prometheus.example:9090/graph?g0.expr=latency";
    let d = &platforms.discord.messages("9001")[0];
    assert_eq!(d["embeds"][0]["url"], source, "{d}");
    let s = platforms.slack.messages("C1")[0].to_string();
    assert!(s.contains(&format!("<{source}|source>")), "{s}");
    platforms.no_early_requests();
}

#[tokio::test]
async fn a_grafana_alert_posted_directly_fires_once_per_platform_and_bad_posts_store_nothing() {
    let platforms = Platforms::start().await;
    let text = platforms.config(true);
    let h = Herald::start_full(|dir| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 65536\n\n[store]\nurl = \"{}\"\n\n{text}",
            common::store::url(dir)
        )
    });
    let grafana = json!({
        "receiver": "herald", "status": "firing", "orgId": 1, "version": "1",
        "groupKey": "{}:{alertname=\"DiskFull\"}", "truncatedAlerts": 0,
        "groupLabels": {"alertname": "DiskFull"}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://grafana.example/", "title": "[FIRING:1] DiskFull", "state": "alerting",
        "message": "disk",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "DiskFull", "instance": "db7", "team": "infra"},
            "annotations": {"summary": "disk 95% full"},
            "startsAt": "2026-12-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://grafana.example/alerting/grafana/x/view",
            "fingerprint": "1a2b3c4d", "silenceURL": "http://grafana.example/silence",
            "dashboardURL": "", "panelURL": "", "values": {"A": 95}, "valueString": "[ var='A' value=95 ]"
        }]
    });
    let post = |path: &'static str, body: Value, token: Option<&'static str>| {
        let client = h.client.clone();
        let url = h.url(path);
        async move {
            let mut req = client.post(url).json(&body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.expect("post");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // No token, a wrong one: 401, nothing stored.
    assert_eq!(post("/v1/alerts/grafana", grafana.clone(), None).await.0, 401);
    assert_eq!(
        post("/v1/alerts/alertmanager", grafana.clone(), Some("nope"))
            .await
            .0,
        401
    );
    // Grafana's payload on Alertmanager's endpoint is refused by version.
    let (status, body) = post("/v1/alerts/alertmanager", grafana.clone(), Some("test-token")).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("version")), "{body}");
    let mut bad_time = grafana.clone();
    bad_time["alerts"][0]["startsAt"] = json!("yesterday");
    let (status, body) = post("/v1/alerts/grafana", bad_time, Some("test-token")).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("alerts[0].startsAt")),
        "{body}"
    );
    // Past max_body_bytes (64 KiB here): 413, with the body read and thrown
    // away first so the client reads the answer rather than a reset (without
    // that, one try in a few dozen ended in a reset on this machine).
    for _ in 0..40 {
        let mut huge = grafana.clone();
        huge["message"] = json!("x".repeat(700 * 1024));
        let (status, body) = post("/v1/alerts/grafana", huge, Some("test-token")).await;
        assert_eq!(status, 413, "{body}");
        assert_eq!(body["max_body_bytes"], 65536, "{body}");
    }
    // A client that asks `Expect: 100-continue` is refused from the headers,
    // without sending a byte of its body.
    let (status, answer) = declare_oversized(&h.base, "/v1/alerts/grafana", 10 << 20).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("max_body_bytes"), "{answer}");
    let (status, body) = post("/v1/alerts/grafana", json!({"version": "1"}), Some("test-token")).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("alerts")), "{body}");
    let (_, workers) = h.get("/v1/workers?run_id=grafana").await;
    assert_eq!(workers["workers"].as_array().map(Vec::len), Some(0), "{workers}");

    // Accepted, twice (a repeat): one firing message per platform.
    for _ in 0..2 {
        let (status, body) = post("/v1/alerts/grafana", grafana.clone(), Some("test-token")).await;
        assert_eq!(status, 200, "{body}");
    }
    let prefix = "DiskFull on db";
    let names = vec!["DiskFull on db7".to_owned()];
    h.wait_for(
        "one firing message per platform",
        Duration::from_secs(15),
        || async {
            let shown = platforms.shown(prefix);
            shown.iter().all(|s| s.all_show(&names, "firing")).then_some(())
        },
    )
    .await;
    // Resolved: edited everywhere; Telegram (notify_resolved = false) gets
    // no notification, the others one.
    let mut resolved = grafana.clone();
    resolved["status"] = json!("resolved");
    resolved["alerts"][0]["status"] = json!("resolved");
    resolved["alerts"][0]["endsAt"] = json!("2026-12-01T10:30:00Z");
    let (status, body) = post("/v1/alerts/grafana", resolved, Some("test-token")).await;
    assert_eq!(status, 200, "{body}");
    h.wait_for("resolved everywhere", Duration::from_secs(15), || async {
        let [d, s, t] = platforms.shown(prefix);
        (d.all_show(&names, "resolved")
            && s.all_show(&names, "resolved")
            && t.all_show(&names, "resolved")
            && d.terminal.len() == 1
            && s.terminal.len() == 1)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let [d, s, t] = platforms.shown(prefix);
    assert_eq!(d.faults(&names), (0, 0, 0));
    assert_eq!(s.faults(&names), (0, 0, 0));
    assert!(t.terminal.is_empty(), "notify_resolved = false: {:?}", t.terminal);
    assert_eq!(t.progress.len(), 1);
    platforms.no_early_requests();
}

#[tokio::test]
async fn a_firing_alert_pages_channels_without_live_messages_and_its_resolution_resolves() {
    let pd = emulators::pagerduty::PagerDutyEmulator::start().await;
    let h = Herald::start(&format!(
        "[[sources]]\nname = \"alerting\"\ntoken = \"test-token\"\n\n\
         [channels.pager]\nadapter = \"pagerduty\"\nrouting_key = \"R0UTINGKEY0123456789abcdef012345\"\napi_url = \"{}\"\n\n\
         [channels.main]\nadapter = \"web\"\n\n\
         [[routes]]\nmatch = {{ run_id = \"alertmanager\", state = \"firing\", \"labels.severity\" = \"critical\" }}\n\
         channels = [\"pager\"]\ncontinue = true\n\n\
         [defaults]\nchannels = [\"main\"]\n\n\
         [[routes]]\nmatch = {{ run_id = \"alertmanager\" }}\nchannels = [\"main\"]\n",
        pd.api_url()
    ));
    let alert = |status: &str| {
        json!({"version": "4", "status": status, "alerts": [{
            "status": status,
            "labels": {"alertname": "NodeDown", "instance": "n1", "severity": "critical"},
            "annotations": {"summary": "node n1 is down"},
            "startsAt": "2026-12-01T10:00:00Z", "endsAt": "2026-12-01T10:20:00Z",
            "generatorURL": "http://prometheus.example/graph", "fingerprint": "cafe"
        }]})
    };
    for status in ["firing", "firing"] {
        let r = h
            .client
            .post(h.url("/v1/alerts/alertmanager"))
            .bearer_auth("test-token")
            .json(&alert(status))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
    }
    let trigger = h
        .wait_for("the page", Duration::from_secs(10), || async {
            pd.events().into_iter().find(|e| e["event_action"] == "trigger")
        })
        .await;
    assert_eq!(
        trigger["dedup_key"],
        "herald/alertmanager/NodeDown/cafe@2026-12-01T10:00:00Z"
    );
    assert!(
        trigger["payload"]["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("NodeDown on n1"),
        "{trigger}"
    );
    assert_eq!(trigger["links"][0]["href"], "http://prometheus.example/graph");
    let r = h
        .client
        .post(h.url("/v1/alerts/alertmanager"))
        .bearer_auth("test-token")
        .json(&alert("resolved"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    h.wait_for("the resolve", Duration::from_secs(10), || async {
        pd.events().into_iter().find(|e| e["event_action"] == "resolve")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        pd.events().len(),
        2,
        "one trigger (the repeat is a duplicate), one resolve: {:#?}",
        pd.events()
    );
}

#[tokio::test]
async fn a_firing_alert_is_not_held_to_worker_contracts() {
    let h = Herald::start(
        "[[sources]]\nname = \"alerting\"\ntoken = \"test-token\"\n\n[channels.main]\nadapter = \"web\"\n\n\
         [defaults]\nchannels = [\"main\"]\n\n[contracts]\nheartbeat = \"1s\"\ndeadline = \"2s\"\n",
    );
    let payload = json!({"version": "4", "alerts": [{"status": "firing",
        "labels": {"alertname": "Quiet", "instance": "q1"}, "startsAt": "2026-12-01T10:00:00Z"}]});
    let r = h
        .client
        .post(h.url("/v1/alerts/alertmanager"))
        .bearer_auth("test-token")
        .json(&payload)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    // Silent past the heartbeat and open past the deadline: still firing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, body) = h.get("/v1/workers?run_id=alertmanager").await;
    assert_eq!(body["workers"][0]["state"], "firing", "{body}");
    let task = body["workers"][0]["task_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (_, journal) = h
        .get(&format!("/v1/workers/alertmanager/Quiet/{task}/events"))
        .await;
    assert_eq!(journal["events"].as_array().map(Vec::len), Some(1), "{journal}");
}

/// Send a request's head declaring `declared` body bytes and asking
/// `Expect: 100-continue`, and read herald's answer without sending the body:
/// its status and the raw text.
async fn declare_oversized(base: &str, path: &str, declared: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = base.trim_start_matches("http://").trim_end_matches('/');
    let mut socket = tokio::net::TcpStream::connect(authority).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer test-token\r\n\
         Content-Type: application/json\r\nContent-Length: {declared}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.expect("write head");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
        .await
        .expect("herald answers without waiting for the body")
        .expect("read answer");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, answer)
}
