//! herald's benchmark harness. Each mode starts a release `herald serve` on
//! a fresh SQLite file and prints one line of figures (see bench/README.md).
//!
//! * `ingest`: durable ingest throughput and request latency.
//! * `latency`: accepted → surfaced latency of terminal notifications on the
//!   web channel at a steady event rate.
//! * `saturate`: busy tasks on one channel; achieved sends as a fraction of
//!   the channel's declared limit, 429s, worst progress staleness.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod engine;
mod fleet;
mod platforms;
mod versus;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

#[derive(Parser)]
#[command(about = "Measure herald: ingest, delivery latency, rate-limit efficiency")]
struct Args {
    /// The herald binary to measure.
    #[arg(long, default_value = "target/release/herald", global = true)]
    herald: PathBuf,
    /// Run herald on PostgreSQL: the server's admin URL; every herald of
    /// the run gets a new database there (default: SQLite in a temp dir).
    #[arg(long, global = true, env = "HERALD_BENCH_PG_URL")]
    postgres: Option<String>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Durable ingest throughput and request latency.
    Ingest {
        /// Events per request (1 = single events).
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Total events to send (after the warm-up).
        #[arg(long, default_value_t = 300_000)]
        events: usize,
        /// Route every event to the web channel (delivery runs concurrently).
        #[arg(long)]
        with_web_channel: bool,
    },
    /// Accepted → surfaced latency of terminal notifications on the web channel.
    Latency {
        /// Events per second (a quarter of them terminal).
        #[arg(long, default_value_t = 1000)]
        rate: usize,
        /// How long to send.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Terminal notifications through herald and through Prometheus
    /// Alertmanager to the same webhook receiver.
    Versus {
        /// Notifications per side and run.
        #[arg(long, default_value_t = 5000)]
        n: usize,
        /// Notifications per request.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Runs per side (medians are reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Pending receipts, kill -9, restart: time to resume, losses.
    Crash {
        /// Pending receipts.
        #[arg(long, default_value_t = 10_000)]
        n: usize,
    },
    /// Peak RSS with many active tasks across many channels.
    Memory {
        /// Active worker tasks.
        #[arg(long, default_value_t = 10_000)]
        tasks: usize,
        /// Web channels.
        #[arg(long, default_value_t = 100)]
        channels: usize,
    },
    /// Many channels of every kind, a few tasks each: time to surface,
    /// webhook latency, peak RSS, CPU.
    Fleet {
        /// Channels (60 % webhook, 30 % web, 10 % Discord, Slack, Telegram).
        #[arg(long, default_value_t = 1000)]
        channels: usize,
        /// Tasks per channel.
        #[arg(long, default_value_t = 5)]
        tasks: usize,
    },
    /// 50 busy tasks into one emulated Discord, Slack and Telegram channel.
    Platforms {
        /// Busy worker tasks.
        #[arg(long, default_value_t = 50)]
        tasks: usize,
        /// Seconds per platform.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Kill -9 every ~2 s with platform faults, on every chat platform.
    Chaos {
        /// Worker tasks (spread over the channels).
        #[arg(long, default_value_t = 200)]
        tasks: usize,
        /// Channels per platform.
        #[arg(long, default_value_t = 20)]
        channels: usize,
        /// How long the kills and faults go on.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// Notifications finishing during a Slack outage: delivery after it.
    Outage {
        /// Notifications.
        #[arg(long, default_value_t = 100)]
        tasks: usize,
        /// Slack channels.
        #[arg(long, default_value_t = 10)]
        channels: usize,
        /// Outage length.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Saturate one web channel with busy tasks.
    Saturate {
        /// Busy worker tasks.
        #[arg(long, default_value_t = 50)]
        tasks: usize,
        /// State changes per task per second.
        #[arg(long, default_value_t = 40)]
        changes: usize,
        /// How long to send.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
}

struct Server {
    child: Child,
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// The PostgreSQL server the run uses (`--postgres`), if any.
pub static POSTGRES: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The store URL of the herald kept in `dir`: an SQLite file there, or a
/// database of its own on the `--postgres` server (made with `psql` the
/// first time; a restart on the same `dir` gets the same one).
pub fn store_url(dir: &Path) -> Result<String> {
    let Some(admin) = POSTGRES.get() else {
        return Ok(format!("sqlite://{}", dir.join("bench.db").display()));
    };
    static MADE: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<PathBuf, String>>> =
        std::sync::LazyLock::new(Default::default);
    let mut made = MADE
        .lock()
        .map_err(|_| anyhow::anyhow!("store URL cache poisoned"))?;
    if let Some(url) = made.get(dir) {
        return Ok(url.clone());
    }
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("herald_bench_{}_{n}", std::process::id());
    let created = std::process::Command::new("psql")
        .arg(admin)
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(format!("CREATE DATABASE {name}"))
        .status()
        .context("could not run psql to create a bench database")?;
    if !created.success() {
        bail!("psql could not create database {name}");
    }
    let mut url = reqwest::Url::parse(admin).context("--postgres is not a URL")?;
    url.set_path(&format!("/{name}"));
    made.insert(dir.to_owned(), url.to_string());
    Ok(url.to_string())
}

/// Write `config` into `dir` and start `herald serve` on it; returns the
/// process and its base URL (read from its "listening" log line).
async fn spawn_herald(herald: &Path, dir: &Path, config: &str) -> Result<(Child, String)> {
    let path = dir.join("herald.toml");
    std::fs::write(&path, config)?;
    let mut child = Command::new(herald)
        .args(["serve", "--config"])
        .arg(&path)
        .env("HERALD_LOG", "warn,herald::app=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("could not start {}", herald.display()))?;
    let stderr = child.stderr.take().context("no stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(line) = lines.next_line().await? else {
            break;
        };
        if let Some(addr) = line.split("address=").nth(1) {
            let addr = addr.split_whitespace().next().unwrap_or_default().to_owned();
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok((child, format!("http://{addr}")));
        }
    }
    bail!("herald did not report its address")
}

impl Server {
    async fn start(herald: &Path, extra: &str) -> Result<Server> {
        let dir = tempfile::tempdir()?;
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 16777216\n\n[store]\nurl = \"{}\"\n\n\
             [[sources]]\nname = \"bench\"\ntoken = \"bench-token\"\n\n[channels.main]\nadapter = \"web\"\n\n{extra}",
            crate::store_url(dir.path())?
        );
        let (child, base) = spawn_herald(herald, dir.path(), &config).await?;
        Ok(Server {
            child,
            base,
            client: reqwest::Client::new(),
            _dir: dir,
        })
    }

    async fn post(&self, body: String) -> Result<()> {
        post_ndjson(&self.client, &self.base, body).await
    }

    async fn get(&self, path: &str) -> Result<Value> {
        Ok(self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await?
            .json()
            .await?)
    }

    async fn metrics(&self) -> Result<String> {
        Ok(self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?)
    }

    async fn stop(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// POST an NDJSON body to `base`/v1/events with the bench token; anything
/// but `202` is an error (a benchmark of rejected requests measures
/// nothing).
async fn post_ndjson(client: &reqwest::Client, base: &str, body: String) -> Result<()> {
    let res = client
        .post(format!("{base}/v1/events"))
        .bearer_auth("bench-token")
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await?;
    if res.status().as_u16() != 202 {
        bail!("herald answered {}: {}", res.status(), res.text().await?);
    }
    Ok(())
}

/// Sum of every sample of `name` whose labels contain all of `labels`.
fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn event(run: &str, worker: usize, task: usize, seq: usize, state: &str) -> String {
    json!({"seq": seq, "run_id": run, "worker_id": format!("w{worker}"), "task_id": format!("t{task}"),
           "timestamp": "2026-06-12T17:02:00Z", "state": state, "tool": format!("step {seq}"), "summary": "ok"})
    .to_string()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(url) = &args.postgres {
        POSTGRES
            .set(url.clone())
            .map_err(|_| anyhow::anyhow!("--postgres given twice"))?;
        println!(
            "store: PostgreSQL ({})",
            url.split('@').next_back().unwrap_or_default()
        );
    } else {
        println!("store: SQLite");
    }
    match args.mode {
        Mode::Ingest {
            batch,
            clients,
            events,
            with_web_channel,
        } => ingest(&args.herald, batch, clients, events, with_web_channel).await,
        Mode::Latency { rate, seconds } => latency(&args.herald, rate, seconds).await,
        Mode::Versus { n, batch, runs } => versus::versus(&args.herald, n, batch, runs).await,
        Mode::Crash { n } => versus::crash(&args.herald, n).await,
        Mode::Platforms { tasks, seconds } => platforms::platforms(&args.herald, tasks, seconds).await,
        Mode::Memory { tasks, channels } => versus::memory(&args.herald, tasks, channels).await,
        Mode::Fleet { channels, tasks } => fleet::fleet(&args.herald, channels, tasks).await,
        Mode::Chaos {
            tasks,
            channels,
            seconds,
        } => engine::chaos(&args.herald, tasks, channels, seconds).await,
        Mode::Outage {
            tasks,
            channels,
            seconds,
        } => engine::outage(&args.herald, tasks, channels, seconds).await,
        Mode::Saturate {
            tasks,
            changes,
            seconds,
        } => saturate(&args.herald, tasks, changes, seconds).await,
    }
}

fn ingest_batch(batch_no: usize, batch: usize) -> String {
    // Each batch moves a quarter as many tasks through four states, so the
    // state machine and the outbox do real work, not just the journal.
    let mut out = String::with_capacity(batch * 200);
    for i in 0..batch {
        let (task, seq) = (i / 4, i % 4 + 1);
        let state = ["queued", "running", "running_tool", "completed"][seq - 1];
        out.push_str(&event(&format!("bench-{batch_no}"), task % 64, task, seq, state));
        out.push('\n');
    }
    out
}

async fn ingest(herald: &Path, batch: usize, clients: usize, events: usize, web: bool) -> Result<()> {
    let routes = if web {
        "[defaults]\nchannels = [\"main\"]\n"
    } else {
        ""
    };
    let server = Arc::new(Server::start(herald, routes).await?);
    let requests = events.div_ceil(batch);
    let bodies: Vec<String> = (0..requests + clients).map(|n| ingest_batch(n, batch)).collect();
    for body in &bodies[requests..] {
        server.post(body.clone()).await?;
    }
    let next = Arc::new(Mutex::new(0usize));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(requests)));
    let bodies = Arc::new(bodies);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (server, next, latencies, bodies) =
            (server.clone(), next.clone(), latencies.clone(), bodies.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let n = {
                    let mut g = next.lock().await;
                    if *g >= requests {
                        break;
                    }
                    *g += 1;
                    *g - 1
                };
                let t = Instant::now();
                server.post(bodies[n].clone()).await?;
                latencies.lock().await.push(t.elapsed());
            }
            anyhow::Ok(())
        }));
    }
    for w in workers {
        w.await??;
    }
    let elapsed = started.elapsed();
    let mut lat = latencies.lock().await.clone();
    lat.sort();
    let sent = requests * batch;
    println!(
        "ingest batch={batch} clients={clients} web_channel={web} events={sent} time={:.2}s rate={:.0} events/s \
         p50={:.1}ms p99={:.1}ms max={:.1}ms",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64(),
        ms(percentile(&lat, 0.50)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default()),
    );
    Arc::try_unwrap(server)
        .ok()
        .context("server still shared")?
        .stop()
        .await
}

/// Record surfaced receipts' latency (surfaced_at − accepted), by id.
async fn collect_surfaced(server: &Server, into: &mut HashMap<String, i64>) -> Result<()> {
    let body = server.get("/v1/deliveries?status=surfaced&limit=1000").await?;
    for r in body["deliveries"].as_array().context("deliveries")? {
        // The API's times are RFC 3339 with milliseconds.
        let time = |field: &str| {
            chrono::DateTime::parse_from_rfc3339(r[field].as_str()?)
                .ok()
                .map(|t| t.timestamp_millis())
        };
        let (Some(id), Some(created), Some(surfaced)) =
            (r["id"].as_str(), time("created_at"), time("surfaced_at"))
        else {
            continue;
        };
        into.insert(id.to_owned(), surfaced - created);
    }
    Ok(())
}

async fn latency(herald: &Path, rate: usize, seconds: u64) -> Result<()> {
    let server = Server::start(herald, "[defaults]\nchannels = [\"main\"]\n").await?;
    // 100 requests a second, each with rate/100 events; every task sends
    // queued, running, running_tool, completed in consecutive requests.
    let per_tick = (rate / 100).max(1);
    let ticks = seconds as usize * 100;
    let mut seen: HashMap<String, i64> = HashMap::new();
    let started = Instant::now();
    let mut next_poll = Instant::now();
    for tick in 0..ticks {
        let mut body = String::new();
        for slot in 0..per_tick {
            let stage = tick % 4;
            let task = (tick / 4) * per_tick + slot;
            let state = ["queued", "running", "running_tool", "completed"][stage];
            body.push_str(&event("latency", task % 64, task, stage + 1, state));
            body.push('\n');
        }
        server.post(body).await?;
        if Instant::now() >= next_poll {
            collect_surfaced(&server, &mut seen).await?;
            next_poll = Instant::now() + Duration::from_millis(500);
        }
        let due = started + Duration::from_millis(10 * (tick as u64 + 1));
        tokio::time::sleep_until(due.into()).await;
    }
    let sent_for = started.elapsed();
    let terminals = (ticks / 4) * per_tick;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < terminals && Instant::now() < deadline {
        collect_surfaced(&server, &mut seen).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut lat: Vec<Duration> = seen
        .values()
        .map(|v| Duration::from_millis(u64::try_from(*v).unwrap_or(0)))
        .collect();
    lat.sort();
    println!(
        "latency rate={:.0} events/s terminals={} surfaced={} accepted→surfaced p50={:.0}ms p99={:.0}ms max={:.0}ms",
        (ticks * per_tick) as f64 / sent_for.as_secs_f64(),
        terminals,
        seen.len(),
        ms(percentile(&lat, 0.50)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default()),
    );
    server.stop().await
}

async fn saturate(herald: &Path, tasks: usize, changes: usize, seconds: u64) -> Result<()> {
    // A 10 ms per-message interval: the channel's declared rate, not the
    // per-message interval, is what binds.
    let server = Server::start(
        herald,
        "[defaults]\nchannels = [\"main\"]\n\n[delivery]\nprogress_min_interval = \"10ms\"\n",
    )
    .await?;
    let limit_per_s = 1000.0; // the web channel's declared edits per second (WEB_RATE_PER_SECOND)
    let tick = Duration::from_millis(1000 / changes.max(1) as u64);
    let mut first = String::new();
    for t in 0..tasks {
        first.push_str(&event("saturate", t, t, 1, "running"));
        first.push('\n');
    }
    server.post(first).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.metrics().await?;
    let progress_before = metric_sum(
        &before,
        "herald_deliveries_total",
        &["kind=\"progress\"", "outcome=\"surfaced\""],
    );
    let limited_before = metric_sum(&before, "herald_rate_limited_total", &[]);
    let started = Instant::now();
    let mut worst_staleness: f64 = 0.0;
    let mut seq = 1;
    while started.elapsed() < Duration::from_secs(seconds) {
        seq += 1;
        let mut body = String::new();
        for t in 0..tasks {
            body.push_str(&event("saturate", t, t, seq, "running_tool"));
            body.push('\n');
        }
        server.post(body).await?;
        let m = server.metrics().await?;
        worst_staleness = worst_staleness.max(metric_sum(&m, "herald_progress_staleness_seconds", &[]));
        let due = started + tick * (seq as u32 - 1);
        tokio::time::sleep_until(due.into()).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = server.metrics().await?;
    let sends = metric_sum(
        &after,
        "herald_deliveries_total",
        &["kind=\"progress\"", "outcome=\"surfaced\""],
    ) - progress_before;
    let limited = metric_sum(&after, "herald_rate_limited_total", &[]) - limited_before;
    println!(
        "saturate tasks={tasks} demand={} changes/s limit={limit_per_s:.0}/s sends={sends:.0} achieved={:.1}/s \
         fraction={:.3} rate_limited={limited:.0} worst_staleness={:.2}s",
        tasks * changes,
        sends / elapsed,
        sends / elapsed / limit_per_s,
        worst_staleness,
    );
    server.stop().await
}
