//! herald's benchmark harness: starts a release `herald serve` on a fresh
//! SQLite file and measures durable ingest (events/s, request latency).
//! Figures, not pass/fail: see bench/README.md.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

#[derive(Parser)]
#[command(about = "Measure herald's durable ingest throughput and latency")]
struct Args {
    /// The herald binary to measure.
    #[arg(long, default_value = "target/release/herald")]
    herald: PathBuf,
    /// Events per request (1 = single events).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Total events to send (after the warm-up).
    #[arg(long, default_value_t = 300_000)]
    events: usize,
    /// Route every event to the built-in web channel (progress + terminal
    /// delivery run concurrently), instead of journaling unrouted.
    #[arg(long)]
    with_web_channel: bool,
}

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

async fn start(args: &Args) -> Result<Server> {
    let dir = tempfile::tempdir()?;
    let routes = if args.with_web_channel {
        "[channels.main]\nadapter = \"web\"\n\n[defaults]\nchannels = [\"main\"]\n"
    } else {
        "[channels.main]\nadapter = \"web\"\n"
    };
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 16777216\n\n[store]\nurl = \"sqlite://{}\"\n\n\
         [[sources]]\nname = \"bench\"\ntoken = \"bench-token\"\n\n{routes}",
        dir.path().join("bench.db").display()
    );
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, config)?;
    let mut child = Command::new(&args.herald)
        .args(["serve", "--config"])
        .arg(&path)
        .env("HERALD_LOG", "warn,herald::app=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("could not start {}", args.herald.display()))?;
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
            return Ok(Server {
                child,
                base: format!("http://{addr}"),
                _dir: dir,
            });
        }
    }
    bail!("herald did not report its address")
}

fn ndjson(batch_no: usize, batch: usize) -> String {
    // Each batch moves 1/4 as many tasks through four states, so the state
    // machine, not just the journal, does real work.
    let mut out = String::with_capacity(batch * 200);
    for i in 0..batch {
        let task = i / 4;
        let seq = i % 4 + 1;
        let state = ["queued", "running", "running_tool", "completed"][seq - 1];
        let ev = json!({"seq": seq, "run_id": format!("bench-{batch_no}"), "worker_id": format!("w{}", task % 64),
            "task_id": format!("t{task}"), "timestamp": "2026-06-12T17:02:00Z", "state": state,
            "tool": "cargo test", "summary": "ok"});
        out.push_str(&ev.to_string());
        out.push('\n');
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut server = start(&args).await?;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/events", server.base);
    let requests = args.events.div_ceil(args.batch);
    let bodies: Vec<String> = (0..requests + args.clients)
        .map(|n| ndjson(n, args.batch))
        .collect();

    // Warm-up: one request per client, not measured.
    for body in &bodies[requests..] {
        post(&client, &url, body.clone()).await?;
    }
    let next = Arc::new(Mutex::new(0usize));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(requests)));
    let bodies = Arc::new(bodies);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.clients {
        let (client, url, next, latencies, bodies) = (
            client.clone(),
            url.clone(),
            next.clone(),
            latencies.clone(),
            bodies.clone(),
        );
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
                post(&client, &url, bodies[n].clone()).await?;
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
    let events = requests * args.batch;
    println!(
        "ingest batch={} clients={} web_channel={} events={} time={:.2}s rate={:.0} events/s p50={:.1}ms p99={:.1}ms max={:.1}ms",
        args.batch,
        args.clients,
        args.with_web_channel,
        events,
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        percentile(&lat, 0.50).as_secs_f64() * 1000.0,
        percentile(&lat, 0.99).as_secs_f64() * 1000.0,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
    server.child.kill().await?;
    Ok(())
}

async fn post(client: &reqwest::Client, url: &str, body: String) -> Result<()> {
    let res = client
        .post(url)
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
