//! The PostgreSQL connection through the real binary: herald started
//! before its database answers, and a database that goes away while herald
//! runs. Between herald and PostgreSQL sits a loopback TCP relay the test
//! can cut and restore.
//!
//! The first half needs no server (nothing listens behind the relay yet)
//! and runs in both suites; the second half needs the PostgreSQL of the
//! run (`HERALD_TEST_PG_URL`) and runs when the suite is on PostgreSQL.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{WEB_ONLY, event, herald_bin};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const PASSWORD: &str = "pg-secret-7c1d9e";

fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

/// A relay from a loopback port to `upstream`, which can be cut (every
/// connection dropped, the port closed) and restored.
struct Relay {
    port: u16,
    accept: Option<JoinHandle<()>>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    fn new(port: u16) -> Relay {
        Relay {
            port,
            accept: None,
            links: Arc::default(),
        }
    }

    async fn open(&mut self, upstream: &str) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let upstream = upstream.to_owned();
        let links = self.links.clone();
        self.accept = Some(tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let upstream = upstream.clone();
                links.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _closed = tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                            .await
                            .is_err();
                    }
                }));
            }
        }));
    }

    fn cut(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

struct Process {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    base: String,
    client: reqwest::Client,
}

impl Process {
    fn start(dir: &std::path::Path, listen: u16, store_url: &str) -> Process {
        let config = dir.join("herald.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{listen}\"\n\n[store]\nurl = \"{store_url}\"\n{WEB_ONLY}"
            ),
        )
        .unwrap();
        let mut child = Command::new(herald_bin())
            .args(["serve", "--config"])
            .arg(&config)
            .env("HERALD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Process {
            child,
            log,
            base: format!("http://127.0.0.1:{listen}"),
            client: reqwest::Client::new(),
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    async fn wait_until(&self, what: &str, timeout: Duration, check: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !check(self) {
            assert!(
                Instant::now() < deadline,
                "{what} did not happen; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn status(&self, path: &str) -> Option<(u16, Option<String>, Value)> {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()?;
        let status = res.status().as_u16();
        let retry = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Some((status, retry, res.json().await.unwrap_or(Value::Null)))
    }

    async fn post(&self, body: &Value) -> Option<u16> {
        let res = self
            .client
            .post(format!("{}/v1/events", self.base))
            .bearer_auth("test-token")
            .json(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .ok()?;
        Some(res.status().as_u16())
    }

    async fn ready_within(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((200, _, _)) = self.status("/readyz").await {
                return;
            }
            assert!(Instant::now() < deadline, "never ready; log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _gone = self.child.kill().is_err();
        let _reaped = self.child.wait().is_err();
    }
}

#[tokio::test]
async fn herald_waits_for_postgres_and_loses_no_accepted_event_when_it_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let relay_port = free_port();
    let mut relay = Relay::new(relay_port);
    // A database of its own on the run's server when there is one; the
    // URL carries a password (trust auth ignores it) that must never show.
    let database = if common::store::on_postgres() {
        let url = reqwest::Url::parse(&common::store::url(dir.path())).unwrap();
        Some((url.port().unwrap(), url.path().to_owned()))
    } else {
        None
    };
    let path = database.as_ref().map_or("/herald".to_owned(), |(_, p)| p.clone());
    let store_url = format!("postgres://herald:{PASSWORD}@127.0.0.1:{relay_port}{path}");
    let herald = Process::start(dir.path(), free_port(), &store_url);

    // Nothing behind the relay: herald answers, but is not ready.
    herald
        .wait_until("a retry message", Duration::from_secs(20), |p| {
            p.log().contains("could not connect to PostgreSQL; retrying")
        })
        .await;
    let (status, _, body) = herald.status("/healthz").await.expect("healthz answers");
    assert_eq!((status, body["status"].as_str()), (200, Some("starting")));
    let (status, retry, body) = herald.status("/readyz").await.expect("readyz answers");
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry.as_deref(), Some("2"));
    assert!(
        body["error"].as_str().unwrap().contains("store is not reachable"),
        "{body}"
    );
    let accepted = herald
        .post(&json!([event("r", "w", "early", 1, "completed", json!({}))]))
        .await;
    assert_eq!(
        accepted,
        Some(503),
        "nothing is accepted before the store is there"
    );
    assert!(
        herald
            .log()
            .contains(&format!("postgres://herald:***@127.0.0.1:{relay_port}"))
    );

    let Some((pg_port, _)) = database else {
        assert!(!herald.log().contains(PASSWORD), "{}", herald.log());
        return;
    };

    // The server appears: herald connects, migrates and serves.
    relay.open(&format!("127.0.0.1:{pg_port}")).await;
    herald.ready_within(Duration::from_secs(30)).await;
    let mut accepted: Vec<String> = Vec::new();
    for i in 0..5 {
        let task = format!("before-{i}");
        if herald
            .post(&json!([event("r", "w", &task, 1, "completed", json!({}))]))
            .await
            == Some(202)
        {
            accepted.push(task);
        }
    }
    assert_eq!(accepted.len(), 5, "{}", herald.log());

    // The connection goes away under load: some posts fail, none is
    // reported accepted without being stored.
    relay.cut();
    for i in 0..2 {
        let task = format!("during-{i}");
        match herald
            .post(&json!([event("r", "w", &task, 1, "completed", json!({}))]))
            .await
        {
            Some(202) => accepted.push(task),
            // Refused as "send it again", not as a server fault.
            other => assert_eq!(other, Some(503), "{}", herald.log()),
        }
    }
    let (status, _, _) = herald.status("/readyz").await.expect("readyz answers");
    assert_eq!(status, 503, "not ready while the store is gone");

    // Back: herald reconnects by itself; every accepted event is there and
    // delivered, and later posts are accepted again.
    relay.open(&format!("127.0.0.1:{pg_port}")).await;
    herald.ready_within(Duration::from_secs(30)).await;
    for i in 0..5 {
        let task = format!("after-{i}");
        assert_eq!(
            herald
                .post(&json!([event("r", "w", &task, 1, "completed", json!({}))]))
                .await,
            Some(202),
            "{}",
            herald.log()
        );
        accepted.push(task);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, _, body) = herald
            .status("/v1/deliveries?status=surfaced&limit=100")
            .await
            .unwrap();
        let surfaced: Vec<String> = body["deliveries"]
            .as_array()
            .map(|d| {
                d.iter()
                    .filter_map(|r| r["task_id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if accepted.iter().all(|t| surfaced.contains(t)) {
            break;
        }
        if Instant::now() >= deadline {
            let (_, _, all) = herald.status("/v1/deliveries?limit=100").await.unwrap();
            panic!(
                "accepted {accepted:?}, delivered {surfaced:?}; receipts {all}; log:\n{}",
                herald.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!herald.log().contains(PASSWORD), "{}", herald.log());
}

/// The store URL a running test herald was configured with.
fn store_url_of(h: &common::Herald) -> String {
    let text = std::fs::read_to_string(&h.config).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("url = "))
        .expect("a store url");
    line.trim_start_matches("url = ").trim_matches('"').to_owned()
}

#[tokio::test]
async fn a_second_herald_on_one_sqlite_file_waits_and_takes_over() {
    if common::store::on_postgres() {
        // Not this backend's behaviour: several heralds serve one
        // PostgreSQL database at once (tests/replicas.rs).
        return;
    }
    let mut first = common::Herald::start(WEB_ONLY);
    let url = store_url_of(&first);
    let dir = tempfile::tempdir().unwrap();
    let second = Process::start(dir.path(), free_port(), &url);
    second
        .wait_until(
            "the second herald to say it waits",
            Duration::from_secs(20),
            |p| {
                p.log()
                    .contains("another herald serve has this store; waiting for it to stop")
            },
        )
        .await;
    let (status, _, _) = second
        .status("/readyz")
        .await
        .expect("the waiting herald answers");
    assert_eq!(status, 503);
    assert_eq!(
        second
            .post(&json!([event("r", "w", "refused", 1, "completed", json!({}))]))
            .await,
        Some(503)
    );
    let (status, _) = first
        .post_events(&json!([event("r", "w", "by-first", 1, "completed", json!({}))]))
        .await;
    assert_eq!(status, 202);

    // The first one dies: the second takes over within its retry step.
    first.kill9();
    second.ready_within(Duration::from_secs(15)).await;
    assert_eq!(
        second
            .post(&json!([event("r", "w", "by-second", 1, "completed", json!({}))]))
            .await,
        Some(202)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, _, body) = second.status("/v1/deliveries?status=surfaced").await.unwrap();
        let surfaced: Vec<&str> = body["deliveries"]
            .as_array()
            .map(|d| d.iter().filter_map(|r| r["task_id"].as_str()).collect())
            .unwrap_or_default();
        if surfaced.contains(&"by-first") && surfaced.contains(&"by-second") {
            assert!(!surfaced.contains(&"refused"));
            break;
        }
        assert!(Instant::now() < deadline, "{surfaced:?}; log:\n{}", second.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
