//! Shared helpers for the integration tests: they run the real `herald`
//! binary against a real store: an SQLite file in a temporary directory,
//! or a PostgreSQL database of its own (see `store.rs`).

#![allow(dead_code)]

pub mod outcomes;
pub mod signing;
pub mod store;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The binary under test.
pub fn herald_bin() -> &'static str {
    env!("CARGO_BIN_EXE_herald")
}

/// A running herald with its own directory, config and database.
pub struct Herald {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub base: String,
    pub client: reqwest::Client,
    child: Option<Child>,
    pub log: Arc<Mutex<Vec<String>>>,
}

/// A config for tests: listen on an ephemeral port, store in `dir`.
pub fn config_text(dir: &Path, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nurl = \"{}\"\n\n{extra}",
        store::url(dir)
    )
}

/// The default test config: one source, one web channel receiving everything.
pub const WEB_ONLY: &str = r#"
[[sources]]
name = "fleet"
token = "test-token"

[channels.main]
adapter = "web"

[defaults]
channels = ["main"]

[delivery]
progress_min_interval = "50ms"
retry_schedule = ["100ms", "200ms"]
"#;

impl Herald {
    /// Write a config with `extra` and start herald on it.
    pub fn start(extra: &str) -> Herald {
        Herald::start_full(|dir| config_text(dir, extra))
    }

    /// Start herald on a whole config made from its directory.
    pub fn start_full(make_config: impl FnOnce(&Path) -> String) -> Herald {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("herald.toml");
        std::fs::write(&config, make_config(dir.path())).expect("write config");
        let mut h = Herald {
            dir,
            config,
            base: String::new(),
            client: reqwest::Client::new(),
            child: None,
            log: Arc::default(),
        };
        h.spawn();
        h
    }

    /// Start (or restart) the process on the same directory.
    pub fn spawn(&mut self) {
        let mut child = Command::new(herald_bin())
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .current_dir(self.dir.path())
            .env(
                "HERALD_LOG",
                std::env::var("HERALD_TEST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn herald");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(addr) = line.split("address=").nth(1) {
                    let addr = addr.split_whitespace().next().unwrap_or("").to_string();
                    sent = tx.send(addr).is_ok();
                }
                log.lock().unwrap().push(line);
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
            panic!(
                "herald did not start; log:\n{}",
                self.log.lock().unwrap().join("\n")
            )
        });
        self.base = format!("http://{addr}");
        self.child = Some(child);
    }

    /// `kill -9`: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill");
            child.wait().expect("wait");
        }
    }

    /// SIGTERM and wait for exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "herald did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The running process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POST a JSON body to /v1/events with the test token.
    pub async fn post_events(&self, body: &Value) -> (u16, Value) {
        let res = self
            .client
            .post(self.url("/v1/events"))
            .bearer_auth("test-token")
            .json(body)
            .send()
            .await
            .expect("post");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// A task's journal entries (`{id, received_at, event}`), oldest first.
    pub async fn journal(&self, run: &str, worker: &str, task: &str) -> Vec<Value> {
        let (_, body) = self
            .get(&format!("/v1/workers/{run}/{worker}/{task}/events?limit=100"))
            .await;
        body["events"].as_array().cloned().unwrap_or_default()
    }

    /// `herald_inbound_rejected_total` for one platform and reason.
    pub async fn inbound_rejected(&self, platform: &str, reason: &str) -> i64 {
        self.metric(&format!(
            "herald_inbound_rejected_total{{platform=\"{platform}\",reason=\"{reason}\"}}"
        ))
        .await
        .unwrap_or(0)
    }

    /// POST a platform's inbound request: `body` as it is, form-encoded
    /// or JSON, with the given (signature) headers.
    pub async fn post_inbound(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: String,
        form: bool,
    ) -> (u16, Value) {
        let content_type = if form {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        };
        let mut req = self
            .client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let res = req.send().await.expect("post");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let res = self.client.get(self.url(path)).send().await.expect("get");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Post `n` terminal events of run `burst`, one task each (`t00000`,
    /// …), in requests of `batch`; every request must be accepted.
    pub async fn post_terminal_burst(&self, n: usize, batch: usize) {
        let events: Vec<Value> = (0..n)
            .map(|i| {
                event(
                    "burst",
                    "w",
                    &format!("t{i:05}"),
                    1,
                    "completed",
                    json!({"summary": "ok"}),
                )
            })
            .collect();
        for chunk in events.chunks(batch) {
            let (status, body) = self.post_events(&Value::Array(chunk.to_vec())).await;
            assert_eq!(status, 202, "{body}");
        }
    }

    /// The text of /metrics.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("get /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of one series of /metrics (`name{labels}` as exposed),
    /// if it is there.
    pub async fn metric(&self, series: &str) -> Option<i64> {
        let prefix = format!("{series} ");
        self.metrics_text()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|n| n.trim().parse().ok())
    }

    /// `herald_receipts{status}` from /metrics (-1 when absent).
    pub async fn receipt_gauge(&self, status: &str) -> i64 {
        self.metric(&format!("herald_receipts{{status=\"{status}\"}}"))
            .await
            .unwrap_or(-1)
    }

    /// `GET /v1/deliveries` (of one status, or all), up to 1,000.
    pub async fn deliveries(&self, status: Option<&str>) -> Vec<Value> {
        let path = match status {
            Some(s) => format!("/v1/deliveries?status={s}&limit=1000"),
            None => "/v1/deliveries?limit=1000".to_owned(),
        };
        let (_, body) = self.get(&path).await;
        body["deliveries"].as_array().cloned().unwrap_or_default()
    }

    /// Wait (up to 20 s) until at least `n` deliveries have `status`.
    pub async fn wait_deliveries(&self, status: &str, n: usize) -> Vec<Value> {
        self.wait_for(
            &format!("{n} {status} deliveries"),
            Duration::from_secs(20),
            || async {
                let found = self.deliveries(Some(status)).await;
                (found.len() >= n).then_some(found)
            },
        )
        .await
    }

    /// Poll `check` until it returns Some or the timeout passes.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An event with the given identity and state (plus payload fields).
pub fn event(run: &str, worker: &str, task: &str, seq: i64, state: &str, payload: Value) -> Value {
    let mut ev = json!({"seq": seq, "run_id": run, "worker_id": worker, "task_id": task,
                        "timestamp": "2026-06-12T17:02:00Z", "state": state});
    if let (Value::Object(e), Value::Object(p)) = (&mut ev, payload) {
        e.extend(p);
    }
    ev
}

/// Slack's `block_actions` payload for a press of herald's Acknowledge
/// button (token `token`) on message `ts` of channel `C1` by `user`, with
/// the interaction's `response_url`: the same whether it arrives as an
/// HTTP `payload` field or in a Socket Mode envelope.
pub fn slack_press_payload(response_url: &str, ts: &str, token: &str, user: &str) -> Value {
    serde_json::json!({
        "type": "block_actions",
        "user": {"id": "U2", "username": user, "name": user, "team_id": "T1"},
        "api_app_id": "A1", "token": "legacy", "trigger_id": "1.2.3",
        "team": {"id": "T1", "domain": "ops"},
        "container": {"type": "message", "message_ts": ts, "channel_id": "C1", "is_ephemeral": false},
        "channel": {"id": "C1", "name": "ops"},
        "response_url": response_url,
        "actions": [{"action_id": "herald_acknowledge", "block_id": "b1", "type": "button",
                     "text": {"type": "plain_text", "text": "Acknowledge"}, "value": token,
                     "action_ts": "1700000000.000001"}],
    })
}

/// `herald demo` on an ephemeral port with a file of its own, stopped
/// when dropped — also when the test using it panics, so a failed test
/// leaves no simulated fleet running.
pub struct Demo {
    child: Child,
    /// The URLs it printed: the overview, then the web channel's page.
    pub urls: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Demo {
    /// Start it with `args` after `demo --listen 127.0.0.1:0 --db FILE`.
    pub fn start(args: &[&str]) -> Demo {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Command::new(herald_bin())
            .args(["demo", "--listen", "127.0.0.1:0", "--db"])
            .arg(dir.path().join("demo.db"))
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start herald demo");
        let mut demo = Demo {
            child,
            urls: Vec::new(),
            _dir: dir,
        };
        let stdout = demo.child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the demo's first line");
        // "herald demo: the fleet at http://HOST:PORT/ and its messages at …"
        demo.urls = line
            .split_whitespace()
            .filter(|w| w.starts_with("http://"))
            .map(str::to_owned)
            .collect();
        demo
    }

    /// The base URL (the overview's, without its slash).
    pub fn base(&self) -> String {
        self.urls
            .first()
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_default()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!("could not stop herald demo: {e}");
        }
        if let Err(e) = self.child.wait() {
            eprintln!("could not reap herald demo: {e}");
        }
    }
}
