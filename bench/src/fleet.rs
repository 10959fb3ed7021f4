//! Many channels at once: 1,000 channels of every kind (signed webhooks,
//! web channels, emulated Discord, Slack and Telegram), each with a few
//! tasks that start and finish, to measure the one-actor-per-channel
//! design at scale: how fast everything surfaces, webhook latency, peak
//! RSS and CPU.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::platforms::{discord::DiscordEmulator, slack::SlackEmulator, telegram};
use crate::versus::{Receiver, cpu_time, peak_rss_kib};
use crate::{metric_sum, post_ndjson, spawn_herald};

/// How the channels split: webhook, web, and the chat platforms share
/// the rest equally.
fn split(channels: usize) -> (usize, usize, usize) {
    let webhooks = channels * 6 / 10;
    let web = channels * 3 / 10;
    let chat = channels - webhooks - web;
    (webhooks, web, chat)
}

/// `channels` channels, `tasks` tasks each (running, then completed).
pub async fn fleet(herald: &Path, channels: usize, tasks: usize) -> Result<()> {
    let (webhooks, web, chat) = split(channels);
    let (discord_n, slack_n) = (chat / 3, chat / 3);
    let telegram_n = chat - discord_n - slack_n;
    let discord_ids: Vec<String> = (0..discord_n).map(|i| format!("{}", 700_000 + i)).collect();
    let slack_ids: Vec<String> = (0..slack_n).map(|i| format!("C{i:05}")).collect();
    let discord = DiscordEmulator::start(
        "dtoken",
        &discord_ids.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let slack = SlackEmulator::start(
        "xoxb-t",
        &slack_ids.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let tg = telegram::TelegramEmulator::start("1:tg").await;
    let telegram_ids: Vec<i64> = (0..telegram_n).map(|i| 900_000 + i as i64).collect();
    for id in &telegram_ids {
        tg.chat(*id, telegram::ChatKind::Private);
    }
    let rx = Receiver::default();
    let hook = rx.start().await?;

    let dir = tempfile::tempdir()?;
    let mut config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 16777216\n[store]\nurl = \"{}\"\n\
         [[sources]]\nname = \"bench\"\ntoken = \"bench-token\"\n\
         [adapters.discord]\ntoken = \"dtoken\"\napi_url = \"{}\"\n\
         [adapters.slack]\ntoken = \"xoxb-t\"\napi_url = \"{}\"\n\
         [adapters.telegram]\ntoken = \"1:tg\"\napi_url = \"{}\"\n",
        crate::store_url(dir.path())?,
        discord.api_url(),
        slack.api_url(),
        tg.api_url()
    );
    let mut names = Vec::with_capacity(channels);
    for i in 0..webhooks {
        config.push_str(&format!(
            "[channels.h{i}]\nadapter = \"webhook\"\nurl = \"{hook}?c={i}\"\n\
             secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"
        ));
        names.push(format!("h{i}"));
    }
    for i in 0..web {
        config.push_str(&format!("[channels.e{i}]\nadapter = \"web\"\n"));
        names.push(format!("e{i}"));
    }
    for (i, id) in discord_ids.iter().enumerate() {
        config.push_str(&format!(
            "[channels.d{i}]\nadapter = \"discord\"\nid = \"{id}\"\n"
        ));
        names.push(format!("d{i}"));
    }
    for (i, id) in slack_ids.iter().enumerate() {
        config.push_str(&format!("[channels.s{i}]\nadapter = \"slack\"\nid = \"{id}\"\n"));
        names.push(format!("s{i}"));
    }
    for (i, id) in telegram_ids.iter().enumerate() {
        config.push_str(&format!(
            "[channels.t{i}]\nadapter = \"telegram\"\nid = \"{id}\"\n"
        ));
        names.push(format!("t{i}"));
    }
    for name in &names {
        config.push_str(&format!(
            "[[routes]]\nmatch = {{ \"labels.channel\" = \"{name}\" }}\nchannels = [\"{name}\"]\n"
        ));
    }
    let (mut child, base) = spawn_herald(herald, dir.path(), &config).await?;
    let pid = child.id();
    let cpu_before = cpu_time(pid)?;
    let client = reqwest::Client::new();
    let lines = |state: &str, seq: usize| -> Vec<String> {
        names
            .iter()
            .flat_map(|name| {
                (0..tasks).map(move |t| {
                    json!({"seq": seq, "run_id": "fleet", "worker_id": "w", "task_id": format!("{name}-t{t}"),
                           "timestamp": "2026-06-12T17:02:00Z", "state": state, "summary": "ok",
                           "extra": {"labels": {"channel": name}}})
                    .to_string()
                })
            })
            .collect()
    };
    let started = Instant::now();
    let mut accepted: HashMap<String, Instant> = HashMap::new();
    for (state, seq) in [("running", 1), ("completed", 2)] {
        for chunk in lines(state, seq).chunks(1000) {
            post_ndjson(&client, &base, chunk.join("\n")).await?;
            if state == "completed" {
                let at = Instant::now();
                for line in chunk {
                    let v: serde_json::Value = serde_json::from_str(line)?;
                    accepted.insert(v["task_id"].as_str().unwrap_or_default().to_owned(), at);
                }
            }
        }
    }
    let receipts = channels * tasks;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut webhooks_done = None;
    loop {
        let metrics = client.get(format!("{base}/metrics")).send().await?.text().await?;
        let surfaced = metric_sum(&metrics, "herald_receipts", &["status=\"surfaced\""]);
        if webhooks_done.is_none() && rx.count() >= webhooks * tasks {
            webhooks_done = Some(started.elapsed());
        }
        if surfaced as usize >= receipts {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {surfaced} of {receipts} receipts surfaced within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = started.elapsed();
    let cpu = cpu_time(pid)? - cpu_before;
    let rss = peak_rss_kib(pid.context("pid")?).context("could not read VmHWM")?;
    child.kill().await?;
    let arrivals = rx.arrivals();
    let lat = crate::versus::latencies_ms(&accepted, &arrivals);
    let p = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let limited = [discord.rate_limited(), slack.rate_limited(), tg.rate_limited()];
    let early = [discord.early().len(), slack.early().len(), tg.early().len()];
    let (rate_limited, early) = (
        format!("{}/{}/{}", limited[0], limited[1], limited[2]),
        format!("{}/{}/{}", early[0], early[1], early[2]),
    );
    println!(
        "fleet channels={channels} (webhook {webhooks}, web {web}, discord {discord_n}, slack {slack_n}, telegram {telegram_n}) \
         tasks/channel={tasks} receipts={receipts}"
    );
    println!(
        "fleet all_surfaced_after={:.1} s webhooks_done_after={:.1} s webhook p50={:.0} ms p99={:.0} ms \
         peak_rss={:.1} MiB cpu={:.0} ms/1000 receipts 429s(discord/slack/telegram)={rate_limited} early={early}",
        all.as_secs_f64(),
        webhooks_done.unwrap_or(all).as_secs_f64(),
        p(0.5),
        p(0.99),
        rss as f64 / 1024.0,
        cpu.as_secs_f64() * 1000.0 / (receipts as f64 / 1000.0),
    );
    Ok(())
}
