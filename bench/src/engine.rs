//! Acceptance runs of the delivery engine against the platform emulators
//! of tests/emulators (which model each platform's documented limits and
//! count every request sent inside a retry-after):
//!
//! * `chaos`: tasks over many channels per platform, `kill -9` every ~2 s
//!   while 10 % of calls answer 500 and 10 % lose their answer; then the
//!   faults stop and herald settles. Lost, duplicated and re-posted
//!   messages, 429s and early requests per platform.
//! * `outage`: notifications finish during a Slack outage; how long after
//!   recovery until all are delivered.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};
use tokio::process::Child;

use crate::platforms::chaos::Chaos;
use crate::platforms::discord::DiscordEmulator;
use crate::platforms::slack::SlackEmulator;
use crate::platforms::tally::{self, Shown};
use crate::platforms::telegram::{ChatKind, TelegramEmulator};

/// A release herald that can be killed and restarted on the same store.
struct Herald {
    binary: PathBuf,
    dir: tempfile::TempDir,
    config: String,
    child: Option<Child>,
    base: String,
    client: reqwest::Client,
}

impl Herald {
    async fn start(binary: &Path, extra: &str) -> Result<Herald> {
        let dir = tempfile::tempdir()?;
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 16777216\n\n[store]\nurl = \"{}\"\n\n\
             [[sources]]\nname = \"bench\"\ntoken = \"bench-token\"\n\n{extra}",
            crate::store_url(dir.path())?
        );
        let mut h = Herald {
            binary: binary.to_owned(),
            dir,
            config,
            child: None,
            base: String::new(),
            client: reqwest::Client::new(),
        };
        h.spawn().await?;
        Ok(h)
    }

    async fn spawn(&mut self) -> Result<()> {
        let (child, base) = crate::spawn_herald(&self.binary, self.dir.path(), &self.config).await?;
        self.child = Some(child);
        self.base = base;
        Ok(())
    }

    async fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    async fn post(&self, events: &[Value]) -> Result<()> {
        let body: Vec<String> = events.iter().map(Value::to_string).collect();
        let res = self
            .client
            .post(format!("{}/v1/events", self.base))
            .bearer_auth("bench-token")
            .header("content-type", "application/x-ndjson")
            .body(body.join("\n"))
            .send()
            .await?;
        if res.status().as_u16() != 202 {
            bail!("herald answered {}", res.status());
        }
        Ok(())
    }

    async fn count(&self, status: &str) -> Result<usize> {
        let body: Value = self
            .client
            .get(format!("{}/v1/deliveries?status={status}&limit=1000", self.base))
            .send()
            .await?
            .json()
            .await?;
        Ok(body["deliveries"].as_array().map_or(0, Vec::len))
    }

    /// The receipts not yet decided (pending or sending), as herald's API
    /// shows them: what a run that does not settle is left with.
    async fn undecided(&self) -> Result<Vec<Value>> {
        let mut all = Vec::new();
        for status in ["pending", "sending"] {
            let body: Value = self
                .client
                .get(format!("{}/v1/deliveries?status={status}&limit=20", self.base))
                .send()
                .await?
                .json()
                .await?;
            all.extend(body["deliveries"].as_array().cloned().unwrap_or_default());
        }
        Ok(all)
    }
}

fn event(run: &str, task: &str, seq: i64, state: &str) -> Value {
    let mut e = json!({"seq": seq, "run_id": run, "worker_id": "w", "task_id": task,
                       "timestamp": "2026-06-12T17:02:00Z", "state": state});
    match state {
        "running_tool" => e["tool"] = json!(format!("step {seq}")),
        "completed" => e["summary"] = json!(format!("{task} done")),
        _ => {}
    }
    e
}

const TASK_LEN: usize = 7;

fn task_name(channel: usize, n: usize) -> String {
    format!("tk{channel:02}{n:03}")
}

/// One platform's figures after a run.
fn line(
    name: &str,
    shown: &[Shown],
    tasks: &[Vec<String>],
    rate_limited: usize,
    early: usize,
    extra: &str,
) -> (usize, usize, usize) {
    let (mut lost, mut duplicates, mut reposts) = (0, 0, 0);
    for (shown, tasks) in shown.iter().zip(tasks) {
        let (l, d, r) = shown.faults(tasks);
        lost += l;
        duplicates += d;
        reposts += r;
    }
    println!(
        "platform={name} lost={lost} duplicates={duplicates} progress_reposts={reposts} rate_limited={rate_limited} \
         early_requests={early}{extra}"
    );
    (lost, duplicates, early)
}

/// `tasks` over `channels` channels per platform, kill -9 every ~2 s for
/// `seconds`, with platform faults.
pub async fn chaos(herald: &Path, tasks: usize, channels: usize, seconds: u64) -> Result<()> {
    let discord_ids: Vec<String> = (0..channels).map(|i| format!("{}", 9000 + i)).collect();
    let slack_ids: Vec<String> = (0..channels).map(|i| format!("C{i:03}")).collect();
    let telegram_ids: Vec<i64> = (0..channels).map(|i| 7000 + i as i64).collect();
    let d_refs: Vec<&str> = discord_ids.iter().map(String::as_str).collect();
    let s_refs: Vec<&str> = slack_ids.iter().map(String::as_str).collect();
    let discord = DiscordEmulator::start("bench", &d_refs).await;
    let slack = SlackEmulator::start("xoxb-bench", &s_refs).await;
    let telegram = TelegramEmulator::start("1:bench").await;
    for chat in &telegram_ids {
        telegram.chat(*chat, ChatKind::Private);
    }
    discord.chaos(Some(Chaos::new(0.1, 0.1, 1)));
    slack.chaos(Some(Chaos::new(0.1, 0.1, 2)));
    telegram.chaos(Some(Chaos::new(0.1, 0.1, 3)));
    let mut extra = format!(
        "[adapters.discord]\ntoken = \"bench\"\napi_url = \"{}\"\ntimeout = \"2s\"\n\
         [adapters.slack]\ntoken = \"xoxb-bench\"\napi_url = \"{}\"\ntimeout = \"2s\"\n\
         [adapters.telegram]\ntoken = \"1:bench\"\napi_url = \"{}\"\ntimeout = \"2s\"\n\
         [delivery]\nprogress_min_interval = \"2s\"\nretry_schedule = [\"500ms\", \"1s\", \"2s\"]\n",
        discord.api_url(),
        slack.api_url(),
        telegram.api_url()
    );
    for i in 0..channels {
        extra.push_str(&format!(
            "[channels.d{i}]\nadapter = \"discord\"\nid = \"{}\"\n[channels.s{i}]\nadapter = \"slack\"\nid = \"{}\"\n\
             [channels.t{i}]\nadapter = \"telegram\"\nid = \"{}\"\n\
             [[routes]]\nmatch = {{ run_id = \"r{i}\" }}\nchannels = [\"d{i}\", \"s{i}\", \"t{i}\"]\n",
            discord_ids[i], slack_ids[i], telegram_ids[i]
        ));
    }
    let mut h = Herald::start(herald, &extra).await?;
    let per_channel = tasks / channels;
    let names: Vec<Vec<String>> = (0..channels)
        .map(|c| (0..per_channel).map(|n| task_name(c, n)).collect())
        .collect();
    // The tasks move through four states spread over the run; a kill
    // every two seconds.
    let started = Instant::now();
    let steps = (seconds / 2).max(4) as usize;
    let mut kills = 0;
    for step in 0..steps {
        let phase = step * 4 / steps;
        let state = ["running", "running_tool", "running_tool", "completed"][phase];
        let mut batch = Vec::new();
        for (c, tasks) in names.iter().enumerate() {
            for t in tasks {
                batch.push(event(&format!("r{c}"), t, step as i64 + 1, state));
            }
        }
        h.post(&batch).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        h.kill9().await?;
        kills += 1;
        h.spawn().await?;
    }
    discord.chaos(None);
    slack.chaos(None);
    telegram.chaos(None);
    let faults_ended = Instant::now();
    let expected = 3 * channels * per_channel;
    let shown = |c: usize| {
        let d: Vec<_> = discord
            .messages(&discord_ids[c])
            .iter()
            .map(tally::discord_message)
            .collect();
        let s: Vec<_> = slack
            .messages(&slack_ids[c])
            .iter()
            .map(tally::slack_message)
            .collect();
        let t: Vec<_> = telegram
            .messages(telegram_ids[c])
            .iter()
            .map(tally::telegram_message)
            .collect();
        (
            Shown::count(&d, "tk", TASK_LEN),
            Shown::count(&s, "tk", TASK_LEN),
            Shown::count(&t, "tk", TASK_LEN),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        // Settled: every receipt decided and every task's live message
        // posted. (Final edits may trail: Slack's 50 updates a minute per
        // workspace take minutes over 200 live messages.)
        let surfaced = h.count("surfaced").await? + h.count("failed").await?;
        let posted = (0..channels).all(|c| {
            let (d, s, t) = shown(c);
            [d, s, t]
                .iter()
                .all(|x| names[c].iter().all(|task| x.progress.contains_key(task)))
        });
        if surfaced >= expected && posted {
            break;
        }
        if Instant::now() > deadline {
            let left = h.undecided().await?;
            bail!(
                "not settled after 600 s: {surfaced} of {expected} receipts done; undecided: {}",
                serde_json::to_string(&left)?
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settled = faults_ended.elapsed();
    let failed = h.count("failed").await?;
    let completed: Vec<usize> = {
        let all: Vec<_> = (0..channels).map(shown).collect();
        [0, 1, 2]
            .iter()
            .map(|p| {
                all.iter()
                    .enumerate()
                    .map(|(c, (d, s, t))| {
                        let x = [d, s, t][*p];
                        names[c]
                            .iter()
                            .filter(|task| x.all_show(std::slice::from_ref(task), "completed"))
                            .count()
                    })
                    .sum()
            })
            .collect()
    };
    let (mut ds, mut ss, mut ts) = (Vec::new(), Vec::new(), Vec::new());
    for c in 0..channels {
        let (d, s, t) = shown(c);
        ds.push(d);
        ss.push(s);
        ts.push(t);
    }
    println!(
        "chaos: {tasks} tasks over {channels} channels per platform, {kills} kills in {:.0} s, 10 % HTTP 500 + 10 % lost \
         answers; settled {:.1} s after the faults stopped; failed receipts {failed}; live messages already showing \
         completed then: discord {} slack {} telegram {}",
        (faults_ended - started).as_secs_f64(),
        settled.as_secs_f64(),
        completed[0],
        completed[1],
        completed[2]
    );
    let history = format!(" history_calls={}", slack.calls("conversations.history"));
    let probes = format!(
        " probes={}",
        telegram
            .seen()
            .iter()
            .filter(|s| s.method == "editmessagetext" && s.status == 400)
            .count()
    );
    let mut bad = Vec::new();
    for (name, shown, rate_limited, early, extra) in [
        (
            "discord",
            &ds,
            discord.rate_limited(),
            discord.early().len(),
            String::new(),
        ),
        ("slack", &ss, slack.rate_limited(), slack.early().len(), history),
        (
            "telegram",
            &ts,
            telegram.rate_limited(),
            telegram.early().len(),
            probes,
        ),
    ] {
        let (lost, duplicates, early) = line(name, shown, &names, rate_limited, early, &extra);
        if lost > 0 || early > 0 || (name != "telegram" && duplicates > 0) {
            bad.push(name);
        }
    }
    if !bad.is_empty() {
        bail!("promises broken on {bad:?}");
    }
    Ok(())
}

/// `tasks` notifications finish over `channels` Slack channels during an
/// outage of `seconds`; time from recovery to the last delivery.
pub async fn outage(herald: &Path, tasks: usize, channels: usize, seconds: u64) -> Result<()> {
    let ids: Vec<String> = (0..channels).map(|i| format!("C{i:03}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let slack = SlackEmulator::start("xoxb-bench", &refs).await;
    let mut extra = format!(
        "[adapters.slack]\ntoken = \"xoxb-bench\"\napi_url = \"{}\"\ntimeout = \"2s\"\n",
        slack.api_url()
    );
    for (i, id) in ids.iter().enumerate() {
        extra.push_str(&format!(
            "[channels.s{i}]\nadapter = \"slack\"\nid = \"{id}\"\nprogress = false\n\
             [[routes]]\nmatch = {{ run_id = \"r{i}\" }}\nchannels = [\"s{i}\"]\n"
        ));
    }
    // The default retry schedule: its steps grow during the outage.
    let h = Herald::start(herald, &extra).await?;
    slack.outage(true);
    let spacing = Duration::from_secs(seconds) / tasks as u32;
    let down = Instant::now();
    for i in 0..tasks {
        h.post(&[event(
            &format!("r{}", i % channels),
            &format!("t{i}"),
            1,
            "completed",
        )])
        .await?;
        tokio::time::sleep(spacing).await;
    }
    let rest = Duration::from_secs(seconds).saturating_sub(down.elapsed());
    tokio::time::sleep(rest).await;
    slack.outage(false);
    let recovered = Instant::now();
    let mut within_20s = None;
    loop {
        let delivered: usize = ids.iter().map(|c| slack.messages(c).len()).sum();
        if within_20s.is_none() && recovered.elapsed() >= Duration::from_secs(20) {
            within_20s = Some(delivered);
        }
        if delivered >= tasks {
            break;
        }
        if recovered.elapsed() > Duration::from_secs(600) {
            bail!("only {delivered} of {tasks} delivered 600 s after recovery");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = recovered.elapsed();
    let physical = tasks.div_ceil(channels) as f64;
    println!(
        "outage: {tasks} notifications over {channels} Slack channels during a {seconds} s outage; all delivered {:.1} s \
         after recovery (physical limit ~{physical:.0} s at 1 post/s per channel), {} within 20 s; rate_limited={} \
         early_requests={}",
        took.as_secs_f64(),
        within_20s.unwrap_or(tasks),
        slack.rate_limited(),
        slack.early().len()
    );
    if !slack.early().is_empty() {
        bail!("requests inside a retry-after");
    }
    Ok(())
}
