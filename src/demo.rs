//! `herald demo`: a simulated fleet posting realistic worker lifecycles to a
//! running herald over HTTP, so the web channel can be watched moving.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use rand::Rng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};
use tracing::warn;

use crate::client::Client;

const TOOLS: &[&str] = &[
    "cargo build",
    "cargo test",
    "git diff",
    "pytest -q",
    "web_search",
    "read_file",
    "kubectl apply",
];
const MODELS: &[&str] = &["claude-sonnet", "gpt-large", "local-llama"];
const TEAMS: &[&str] = &["infra", "data", "web"];

/// One simulated worker: runs tasks one after another, forever.
struct Worker {
    client: Client,
    run_id: String,
    worker_id: String,
    team: &'static str,
    pace: Duration,
}

impl Worker {
    async fn emit(&self, task_id: &str, seq: &mut i64, state: &str, payload: Value) {
        *seq += 1;
        let mut event = json!({
            "seq": *seq,
            "run_id": self.run_id,
            "worker_id": self.worker_id,
            "task_id": task_id,
            "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            "state": state,
            "extra": {"labels": {"team": self.team}},
        });
        if let (Value::Object(ev), Value::Object(extra)) = (&mut event, payload) {
            ev.extend(extra);
        }
        if let Err(e) = self.client.post(&[event]).await {
            warn!(worker = %self.worker_id, error = %e, "demo event was not accepted");
        }
    }

    async fn pause(&self, factor: f64) {
        let jitter = rand::rng().random_range(0.5..1.5);
        tokio::time::sleep(self.pace.mul_f64(factor * jitter)).await;
    }

    async fn run(self) {
        let mut task_no = 0u32;
        loop {
            task_no += 1;
            let task_id = format!("task-{task_no}");
            let mut seq = 0;
            self.emit(&task_id, &mut seq, "queued", json!({})).await;
            self.pause(0.5).await;
            self.emit(&task_id, &mut seq, "leased", json!({})).await;
            self.emit(&task_id, &mut seq, "starting", json!({})).await;
            self.pause(0.5).await;
            self.emit(&task_id, &mut seq, "running", json!({})).await;
            // Each worker's first task is one step: someone opening the
            // demo sees whole lifecycles end within seconds, not a minute.
            let steps = if task_no == 1 {
                1
            } else {
                rand::rng().random_range(2..6)
            };
            for _ in 0..steps {
                self.pause(1.0).await;
                let model = MODELS.choose(&mut rand::rng()).copied().unwrap_or("model");
                self.emit(&task_id, &mut seq, "model_wait", json!({"model": model}))
                    .await;
                self.pause(1.0).await;
                let tool = TOOLS.choose(&mut rand::rng()).copied().unwrap_or("tool");
                let call_id = format!("call-{seq}");
                self.emit(
                    &task_id,
                    &mut seq,
                    "running_tool",
                    json!({"tool": tool, "call_id": call_id}),
                )
                .await;
                self.emit(
                    &task_id,
                    &mut seq,
                    "heartbeat",
                    json!({"cpu_percent": 37.5, "memory_mb": 512}),
                )
                .await;
            }
            let roll: f64 = rand::rng().random();
            if roll < 0.05 {
                self.emit(&task_id, &mut seq, "interrupted", json!({"signal": "SIGTERM"}))
                    .await;
                self.pause(1.0).await;
                self.emit(&task_id, &mut seq, "restarted", json!({"restart_count": 1}))
                    .await;
                self.pause(1.0).await;
            }
            self.emit(
                &task_id,
                &mut seq,
                "artifact",
                json!({"kind": "report", "path": format!("out/{task_id}.json"), "size_bytes": 2048}),
            )
            .await;
            self.pause(0.5).await;
            if roll < 0.80 {
                self.emit(
                    &task_id,
                    &mut seq,
                    "completed",
                    json!({"exit_code": 0, "summary": format!("{task_id} done: {steps} steps, all checks green")}),
                )
                .await;
            } else if roll < 0.95 {
                self.emit(
                    &task_id,
                    &mut seq,
                    "failed",
                    json!({"reason": "tests failed: 3 of 120 (see out/report.json)", "recoverable": false}),
                )
                .await;
            } else {
                self.emit(
                    &task_id,
                    &mut seq,
                    "cancelled",
                    json!({"cancelled_by": "operator"}),
                )
                .await;
            }
            self.pause(2.0).await;
        }
    }
}

/// Run `workers` simulated workers against the herald at `base_url` until
/// the process stops. `pace` scales every pause between events.
pub async fn run_fleet(
    base_url: &str,
    token: Option<String>,
    workers: usize,
    pace: Duration,
) -> anyhow::Result<()> {
    let client = Client::new(base_url, token)?;
    let run_id = format!("demo-{}", Utc::now().format("%Y%m%d-%H%M%S"));
    let mut handles = Vec::new();
    for i in 0..workers {
        let worker = Worker {
            client: client.clone(),
            run_id: run_id.clone(),
            worker_id: format!("agent-{:02}", i + 1),
            team: TEAMS[i % TEAMS.len()],
            pace,
        };
        handles.push(tokio::spawn(async move {
            // Stagger the start so the fleet does not move in lockstep.
            tokio::time::sleep(Duration::from_millis(150 * i as u64)).await;
            worker.run().await;
        }));
    }
    for handle in handles {
        handle.await?;
    }
    Ok(())
}
