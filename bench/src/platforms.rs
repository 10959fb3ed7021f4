//! Rate-limit efficiency against the platform emulators the tests use
//! (tests/emulators): 50 busy tasks into one channel per platform.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;

#[allow(dead_code)]
#[path = "../../tests/emulators/chaos.rs"]
pub mod chaos;
#[allow(dead_code, clippy::result_large_err)]
#[path = "../../tests/emulators/discord.rs"]
pub mod discord;
#[allow(dead_code)]
#[path = "../../tests/emulators/discord_gateway.rs"]
pub mod discord_gateway;
#[allow(dead_code)]
#[path = "../../tests/emulators/lockout.rs"]
pub mod lockout;
#[allow(dead_code, clippy::result_large_err)]
#[path = "../../tests/emulators/slack.rs"]
pub mod slack;
#[allow(dead_code, clippy::result_large_err)]
#[path = "../../tests/emulators/slack_socket.rs"]
pub mod slack_socket;
#[allow(dead_code)]
#[path = "../../tests/emulators/tally.rs"]
pub mod tally;
#[allow(dead_code, clippy::result_large_err)]
#[path = "../../tests/emulators/telegram.rs"]
pub mod telegram;

use crate::Server;

/// One platform's figures.
struct Run {
    sends: usize,
    rate_limited: usize,
    early: usize,
    worst_staleness: f64,
}

async fn drive(
    herald: &Path,
    extra: &str,
    tasks: usize,
    seconds: u64,
    count: impl Fn() -> (usize, usize, usize),
) -> Result<Run> {
    let server = Server::start(herald, extra).await?;
    let started = Instant::now();
    let mut seq = 0;
    let mut worst: f64 = 0.0;
    while started.elapsed() < Duration::from_secs(seconds) {
        seq += 1;
        let body: Vec<String> = (0..tasks)
            .map(|t| {
                json!({"seq": seq, "run_id": "busy", "worker_id": "w", "task_id": format!("t{t}"),
                       "timestamp": "2026-06-12T17:02:00Z", "state": "running_tool", "tool": format!("step {seq}")})
                .to_string()
            })
            .collect();
        server.post(body.join("\n")).await?;
        let metrics = server.metrics().await?;
        worst = worst.max(crate::metric_sum(
            &metrics,
            "herald_progress_staleness_seconds",
            &[],
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (sends, rate_limited, early) = count();
    server.stop().await?;
    Ok(Run {
        sends,
        rate_limited,
        early,
        worst_staleness: worst,
    })
}

/// `allowed`: the most sends the emulator's limits (the platform's
/// documented ones) permit in the window.
fn report(name: &str, allowed: f64, seconds: u64, run: &Run) {
    let fraction = run.sends as f64 / allowed;
    println!(
        "platform={name} seconds={seconds} sends={} allowed={allowed:.0} fraction={fraction:.2} rate_limited={} \
         early_requests={} worst_staleness={:.1}s",
        run.sends, run.rate_limited, run.early, run.worst_staleness
    );
}

/// Discord, Slack and Telegram, `seconds` each.
pub async fn platforms(herald: &Path, tasks: usize, seconds: u64) -> Result<()> {
    let common = "[delivery]\nprogress_min_interval = \"100ms\"\n[defaults]\nchannels = [\"busy\"]\n";

    let d = discord::DiscordEmulator::start("bench", &["111"]).await;
    let extra = format!(
        "[adapters.discord]\ntoken = \"bench\"\napi_url = \"{}\"\n[channels.busy]\nadapter = \"discord\"\nid = \"111\"\n{common}",
        d.api_url()
    );
    let run = drive(herald, &extra, tasks, seconds, || {
        let ok = d.seen().iter().filter(|s| s.status == 200).count();
        (ok, d.rate_limited(), d.early().len())
    })
    .await?;
    // 5 creates and 5 edits per 5 s window.
    let windows = seconds.div_ceil(5) as f64;
    report("discord", 10.0 * windows, seconds, &run);

    let s = slack::SlackEmulator::start("xoxb-bench", &["C1"]).await;
    let extra = format!(
        "[adapters.slack]\ntoken = \"xoxb-bench\"\napi_url = \"{}\"\n[channels.busy]\nadapter = \"slack\"\nid = \"C1\"\n{common}",
        s.api_url()
    );
    let run = drive(herald, &extra, tasks, seconds, || {
        let ok = s
            .seen()
            .iter()
            .filter(|x| x.status == 200 && x.method != "conversations.history")
            .count();
        (ok, s.rate_limited(), s.early().len())
    })
    .await?;
    // 1 post per second, plus 50 updates in any minute (all usable at once).
    let updates = (50.0 * (seconds as f64 / 60.0).ceil()).min(50.0 * seconds.div_ceil(60) as f64);
    report("slack", seconds as f64 + updates, seconds, &run);

    let t = telegram::TelegramEmulator::start("1:bench").await;
    t.chat(4242, telegram::ChatKind::Private);
    let extra = format!(
        "[adapters.telegram]\ntoken = \"1:bench\"\napi_url = \"{}\"\n[channels.busy]\nadapter = \"telegram\"\nid = \"4242\"\n{common}",
        t.api_url()
    );
    let run = drive(herald, &extra, tasks, seconds, || {
        let ok = t.seen().iter().filter(|x| x.status == 200).count();
        (ok, t.rate_limited(), t.early().len())
    })
    .await?;
    // One message (send or edit) per second per private chat.
    report("telegram", seconds as f64, seconds, &run);
    if run.sends == 0 {
        bail!("nothing was sent");
    }

    let g = telegram::TelegramEmulator::start("1:bench").await;
    g.chat(-100_4242, telegram::ChatKind::Supergroup);
    let extra = format!(
        "[adapters.telegram]\ntoken = \"1:bench\"\napi_url = \"{}\"\n[channels.busy]\nadapter = \"telegram\"\nid = \"-1004242\"\n{common}",
        g.api_url()
    );
    let run = drive(herald, &extra, tasks, seconds, || {
        let ok = g.seen().iter().filter(|x| x.status == 200).count();
        (ok, g.rate_limited(), g.early().len())
    })
    .await?;
    // One per second per chat and 20 per minute per group, both.
    let allowed = (seconds as f64).min(20.0 * seconds.div_ceil(60) as f64);
    report("telegram-supergroup", allowed, seconds, &run);
    Ok(())
}
