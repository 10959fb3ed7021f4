//! End to end against Prometheus Alertmanager, crash cost and memory.
//!
//! Both gateways deliver to the same local webhook receiver on the same
//! machine; latency is measured from the moment the gateway accepted the
//! notification (its HTTP answer) to the moment the receiver got it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::spawn_herald;

/// A webhook receiver recording when each notification arrived, keyed by
/// the notification's own id (herald: task id; Alertmanager: alertname).
#[derive(Clone, Default)]
pub struct Receiver {
    arrivals: Arc<Mutex<HashMap<String, Instant>>>,
    requests: Arc<Mutex<usize>>,
}

impl Receiver {
    /// Listen on an ephemeral loopback port; returns the URL.
    pub async fn start(&self) -> Result<String> {
        let app = Router::new()
            .route("/hook", post(record))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(format!("http://{addr}/hook"))
    }

    /// Distinct notifications arrived.
    pub fn count(&self) -> usize {
        self.arrivals.lock().map_or(0, |a| a.len())
    }

    /// When each notification first arrived.
    pub fn arrivals(&self) -> HashMap<String, Instant> {
        self.arrivals.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

async fn record(State(rx): State<Receiver>, body: Bytes) -> &'static str {
    let now = Instant::now();
    let Ok(doc) = serde_json::from_slice::<Value>(&body) else {
        return "ok";
    };
    let mut ids = Vec::new();
    // herald's webhook document.
    if let Some(task) = doc["task"]["task_id"].as_str() {
        ids.push(task.to_owned());
    }
    // Alertmanager's webhook payload.
    for alert in doc["alerts"].as_array().into_iter().flatten() {
        if let Some(name) = alert["labels"]["alertname"].as_str() {
            ids.push(name.to_owned());
        }
    }
    if let Ok(mut arrivals) = rx.arrivals.lock() {
        for id in ids {
            arrivals.entry(id).or_insert(now);
        }
    }
    if let Ok(mut n) = rx.requests.lock() {
        *n += 1;
    }
    "ok"
}

/// One side's figures.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub delivered_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub delivered: usize,
    /// Process CPU (user + system) per 1,000 deliveries, in ms.
    pub cpu_ms_per_1000: f64,
    /// Notifications accepted per second (first request to last answer).
    pub accepted_per_s: f64,
}

/// Concurrent posting clients on both sides.
const CLIENTS: usize = 8;

/// User + system CPU time a process has used so far (`/proc/PID/stat`,
/// fields 14 and 15, in clock ticks of 1/100 s on Linux).
pub fn cpu_time(pid: Option<u32>) -> Result<Duration> {
    let pid = pid.context("the process has no pid")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count from its end.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unreadable /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> { Ok(fields.get(i).context("short /proc stat")?.parse()?) };
    // After the name: field 3 is index 0, so utime (14) is 11, stime (15) 12.
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// CPU time every PostgreSQL server process on the machine has used so
/// far: on `--postgres` runs the database does part of herald's work, so
/// herald's CPU per delivery counts it too (the bench's server is the only
/// one running).
pub fn postgres_cpu() -> Result<Duration> {
    let mut total = Duration::ZERO;
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let is_postgres =
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres");
        if is_postgres {
            // A process that ended between the listing and the read has
            // no time left to count.
            total += cpu_time(Some(pid)).unwrap_or_default();
        }
    }
    Ok(total)
}

/// Post `n` notifications in requests of `batch` from `CLIENTS`
/// concurrent clients; `send(start, end)` posts one request. Returns when
/// each was accepted (its request's answer).
async fn post_concurrently<F, Fut>(n: usize, batch: usize, send: F) -> Result<HashMap<String, Instant>>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let send = Arc::new(send);
    let starts: Vec<usize> = (0..n).step_by(batch).collect();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let mine: Vec<usize> = starts.iter().copied().skip(c).step_by(CLIENTS).collect();
        let send = send.clone();
        clients.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for start in mine {
                let end = (start + batch).min(n);
                send(start, end).await?;
                let at = Instant::now();
                accepted.extend((start..end).map(|i| (format!("n{i}"), at)));
            }
            anyhow::Ok(accepted)
        }));
    }
    let mut all = HashMap::with_capacity(n);
    for client in clients {
        all.extend(client.await??);
    }
    Ok(all)
}

/// Accepted → arrived of every notification that arrived, in ms, sorted.
pub fn latencies_ms(accepted: &HashMap<String, Instant>, arrivals: &HashMap<String, Instant>) -> Vec<f64> {
    let mut lat: Vec<f64> = accepted
        .iter()
        .filter_map(|(id, at)| {
            arrivals
                .get(id)
                .map(|got| got.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    lat
}

fn figures(
    accepted: &HashMap<String, Instant>,
    arrivals: &HashMap<String, Instant>,
    first: Instant,
    cpu: Duration,
) -> Figures {
    let lat = latencies_ms(accepted, arrivals);
    let last = arrivals.values().max().copied().unwrap_or(first);
    let last_accepted = accepted.values().max().copied().unwrap_or(first);
    let accept_span = last_accepted
        .saturating_duration_since(first)
        .as_secs_f64()
        .max(1e-6);
    let span = last.saturating_duration_since(first).as_secs_f64().max(1e-6);
    let pick = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Figures {
        delivered_per_s: lat.len() as f64 / span,
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        delivered: lat.len(),
        cpu_ms_per_1000: cpu.as_secs_f64() * 1000.0 / (lat.len().max(1) as f64 / 1000.0),
        accepted_per_s: accepted.len() as f64 / accept_span,
    }
}

async fn wait_until<F: Fn() -> bool>(what: &str, within: Duration, done: F) -> Result<()> {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn herald_config(dir: &Path, hook: &str) -> Result<String> {
    Ok(format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 16777216\n[store]\nurl = \"{}\"\n\
         [[sources]]\nname = \"bench\"\ntoken = \"bench-token\"\n[channels.hook]\nadapter = \"webhook\"\n\
         url = \"{hook}\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n[defaults]\nchannels = [\"hook\"]\n\
         [delivery]\nretry_schedule = [\"200ms\", \"1s\"]\n",
        crate::store_url(dir)?
    ))
}

/// Terminal events `from..to`, NDJSON, one task each.
fn terminal_events(run: &str, from: usize, to: usize) -> String {
    (from..to)
        .map(|i| {
            json!({"seq": 1, "run_id": run, "worker_id": format!("w{}", i % 64), "task_id": format!("n{i}"),
                   "timestamp": "2026-06-12T17:02:00Z", "state": "completed", "summary": "ok"})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Send `n` notifications through herald in requests of `batch` from
/// `CLIENTS` clients, to one signed webhook channel.
async fn herald_side(herald: &Path, n: usize, batch: usize) -> Result<Figures> {
    let dir = tempfile::tempdir()?;
    let rx = Receiver::default();
    let hook = rx.start().await?;
    let (mut child, base) = spawn_herald(herald, dir.path(), &herald_config(dir.path(), &hook)?).await?;
    let pid = child.id();
    let on_postgres = crate::POSTGRES.get().is_some();
    let db_before = if on_postgres {
        postgres_cpu()?
    } else {
        Duration::ZERO
    };
    let cpu_before = cpu_time(pid)?;
    let client = reqwest::Client::new();
    let first = Instant::now();
    let accepted = post_concurrently(n, batch, move |start, end| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let res = client
                .post(format!("{base}/v1/events"))
                .bearer_auth("bench-token")
                .header("content-type", "application/x-ndjson")
                .body(terminal_events("versus", start, end))
                .send()
                .await?;
            if res.status().as_u16() != 202 {
                bail!("herald answered {}", res.status());
            }
            Ok(())
        }
    })
    .await?;
    wait_until("herald deliveries", Duration::from_secs(120), || rx.count() >= n).await?;
    let mut cpu = cpu_time(pid)? - cpu_before;
    if on_postgres {
        let db = postgres_cpu()?.saturating_sub(db_before);
        println!(
            "herald {} ms + PostgreSQL server {} ms CPU",
            cpu.as_millis(),
            db.as_millis()
        );
        cpu += db;
    }
    child.kill().await?;
    Ok(figures(&accepted, &rx.arrivals(), first, cpu))
}

/// Find the Alertmanager binary, installing Debian's package when missing.
pub fn alertmanager_binary() -> Result<PathBuf> {
    for candidate in ["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"] {
        if Path::new(candidate).exists() {
            return Ok(PathBuf::from(candidate));
        }
    }
    bail!("prometheus-alertmanager is not installed (bench/run installs it with apt-get)")
}

async fn alertmanager_side(binary: &Path, n: usize, batch: usize) -> Result<Figures> {
    let dir = tempfile::tempdir()?;
    let rx = Receiver::default();
    let hook = rx.start().await?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    // One group per alert (grouped by alertname, unique per alert), sent at
    // once (group_wait 0s), never repeated during the run.
    let config = format!(
        "route:\n  receiver: hook\n  group_by: ['alertname']\n  group_wait: 0s\n  group_interval: 1m\n  repeat_interval: 12h\n\
         receivers:\n  - name: hook\n    webhook_configs:\n      - url: '{hook}'\n        send_resolved: false\n        max_alerts: 0\n"
    );
    let cfg_path = dir.path().join("am.yml");
    std::fs::write(&cfg_path, config)?;
    let mut child = Command::new(binary)
        .arg(format!("--config.file={}", cfg_path.display()))
        .arg(format!("--storage.path={}", dir.path().display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        // A single instance, as its docs run one: with a cluster listener
        // Alertmanager waits for gossip to settle (about 10 s) before it
        // notifies, which is not how one instance is run.
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("could not start Alertmanager")?;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let ready = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(format!("{base}/-/ready")).send().await
            && r.status().is_success()
        {
            break;
        }
        if Instant::now() > ready {
            bail!("Alertmanager did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id();
    let cpu_before = cpu_time(pid)?;
    let first = Instant::now();
    let accepted = post_concurrently(n, batch, move |start, end| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let alerts: Vec<Value> = (start..end)
                .map(|i| json!({"labels": {"alertname": format!("n{i}"), "job": "bench"}, "annotations": {"summary": "ok"}}))
                .collect();
            let res = client
                .post(format!("{base}/api/v2/alerts"))
                .json(&alerts)
                .send()
                .await?;
            if !res.status().is_success() {
                bail!("Alertmanager answered {}", res.status());
            }
            Ok(())
        }
    })
    .await?;
    wait_until("Alertmanager deliveries", Duration::from_secs(180), || {
        rx.count() >= n
    })
    .await?;
    let cpu = cpu_time(pid)? - cpu_before;
    child.kill().await?;
    Ok(figures(&accepted, &rx.arrivals(), first, cpu))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Herald vs Alertmanager, `runs` times each, medians and ratios.
pub async fn versus(herald: &Path, n: usize, batch: usize, runs: usize) -> Result<()> {
    let am = alertmanager_binary()?;
    let mut h = Vec::new();
    let mut a = Vec::new();
    for run in 0..runs {
        let hf = herald_side(herald, n, batch).await?;
        println!(
            "run {run} herald:       accepted {:.0}/s delivered {}/{n} {:.0}/s p50 {:.1} ms p99 {:.1} ms cpu {:.0} ms/1000",
            hf.accepted_per_s, hf.delivered, hf.delivered_per_s, hf.p50_ms, hf.p99_ms, hf.cpu_ms_per_1000
        );
        let af = alertmanager_side(&am, n, batch).await?;
        println!(
            "run {run} alertmanager: accepted {:.0}/s delivered {}/{n} {:.0}/s p50 {:.1} ms p99 {:.1} ms cpu {:.0} ms/1000",
            af.accepted_per_s, af.delivered, af.delivered_per_s, af.p50_ms, af.p99_ms, af.cpu_ms_per_1000
        );
        h.push(hf);
        a.push(af);
    }
    let med = |v: &[Figures], f: fn(&Figures) -> f64| median(v.iter().map(f).collect());
    let (hr, ar) = (med(&h, |f| f.delivered_per_s), med(&a, |f| f.delivered_per_s));
    let (h50, a50) = (med(&h, |f| f.p50_ms), med(&a, |f| f.p50_ms));
    let (h99, a99) = (med(&h, |f| f.p99_ms), med(&a, |f| f.p99_ms));
    let (hc, ac) = (med(&h, |f| f.cpu_ms_per_1000), med(&a, |f| f.cpu_ms_per_1000));
    println!(
        "versus n={n} batch={batch} clients={CLIENTS} runs={runs} (medians; Alertmanager single instance)"
    );
    println!("| | delivered/s | p50 | p99 | CPU per 1,000 deliveries |");
    println!("|---|---:|---:|---:|---:|");
    let store = if crate::POSTGRES.get().is_some() {
        "durable, PostgreSQL; CPU includes the database server"
    } else {
        "durable, SQLite"
    };
    println!("| herald ({store}) | {hr:.0} | {h50:.1} ms | {h99:.1} ms | {hc:.0} ms |");
    println!("| Alertmanager 0.25 (in memory) | {ar:.0} | {a50:.1} ms | {a99:.1} ms | {ac:.0} ms |");
    println!(
        "| herald / Alertmanager | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
        hr / ar,
        h50 / a50,
        h99 / a99,
        hc / ac
    );
    Ok(())
}

/// 10,000 receipts pending behind a dead endpoint, `kill -9`, restart with
/// the endpoint back: time from restart to the first delivery, and losses.
pub async fn crash(herald: &Path, n: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    // A port nobody listens on: every attempt fails, receipts stay pending.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        format!("http://{}/hook", l.local_addr()?)
    };
    let (mut child, base) = spawn_herald(herald, dir.path(), &herald_config(dir.path(), &dead)?).await?;
    let client = reqwest::Client::new();
    for start in (0..n).step_by(1000) {
        let res = client
            .post(format!("{base}/v1/events"))
            .bearer_auth("bench-token")
            .header("content-type", "application/x-ndjson")
            .body(terminal_events("crash", start, (start + 1000).min(n)))
            .send()
            .await?;
        if res.status().as_u16() != 202 {
            bail!("herald answered {}", res.status());
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    child.kill().await?; // SIGKILL
    let rx = Receiver::default();
    let hook = rx.start().await?;
    let restarted = Instant::now();
    let (mut child, _) = spawn_herald(herald, dir.path(), &herald_config(dir.path(), &hook)?).await?;
    wait_until("first delivery after restart", Duration::from_secs(60), || {
        rx.count() > 0
    })
    .await?;
    let resumed = restarted.elapsed();
    wait_until("all deliveries", Duration::from_secs(300), || rx.count() >= n).await?;
    let all = restarted.elapsed();
    child.kill().await?;
    println!(
        "crash pending={n} resume_after_restart={:.0} ms all_delivered_after={:.1} s lost={}",
        resumed.as_secs_f64() * 1000.0,
        all.as_secs_f64(),
        n - rx.count().min(n)
    );
    Ok(())
}

/// Peak resident set size of a process (`VmHWM`), KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Peak RSS with `tasks` active worker tasks across `channels` web channels.
pub async fn memory(herald: &Path, tasks: usize, channels: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 16777216\n[store]\nurl = \"{}\"\n\
         [[sources]]\nname = \"bench\"\ntoken = \"bench-token\"\n[delivery]\nprogress_min_interval = \"2s\"\n",
        crate::store_url(dir.path())?
    );
    for c in 0..channels {
        config.push_str(&format!(
            "[channels.c{c}]\nadapter = \"web\"\n[[routes]]\nmatch = {{ \"labels.channel\" = \"c{c}\" }}\nchannels = [\"c{c}\"]\n"
        ));
    }
    let (mut child, base) = spawn_herald(herald, dir.path(), &config).await?;
    let pid = child.id().context("pid")?;
    let client = reqwest::Client::new();
    for round in 1..=3 {
        for start in (0..tasks).step_by(1000) {
            let body: Vec<String> = (start..(start + 1000).min(tasks))
                .map(|i| {
                    json!({"seq": round, "run_id": "mem", "worker_id": format!("w{}", i % 100), "task_id": format!("t{i}"),
                           "timestamp": "2026-06-12T17:02:00Z", "state": "running_tool", "tool": format!("step {round}"),
                           "extra": {"labels": {"channel": format!("c{}", i % channels)}}})
                    .to_string()
                })
                .collect();
            crate::post_ndjson(&client, &base, body.join("\n")).await?;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    // Let the progress messages catch up.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let peak = peak_rss_kib(pid).context("could not read VmHWM")?;
    child.kill().await?;
    println!(
        "memory tasks={tasks} channels={channels} peak_rss={:.1} MiB",
        peak as f64 / 1024.0
    );
    Ok(())
}
