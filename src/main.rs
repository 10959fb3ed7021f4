//! The `herald` command line (SPEC §2).

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{SecondsFormat, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

use herald::config::{Config, LoadError};
use herald::ingest::writer::route_channels;
use herald::protocol::parse_event;
use herald::routing::RoutingInput;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Delivers worker status to the chat rooms where people watch their work"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable (coloured on a terminal).
    Human,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Config file; default config/herald.toml if present, else the built-in default.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Log format.
        #[arg(long, value_enum, default_value = "human")]
        log_format: LogFormat,
    },
    /// Validate a config without starting.
    CheckConfig {
        /// Config file; default as for serve.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the channels an event routes to, one per line.
    Routes {
        /// Config file.
        #[arg(long)]
        config: PathBuf,
        /// Event JSON file, or - for stdin.
        #[arg(long)]
        event: PathBuf,
    },
    /// Post one event (for shell scripts).
    Send {
        /// Worker id.
        #[arg(long)]
        worker: String,
        /// State (queued, running, running_tool, completed, failed, ...).
        #[arg(long)]
        state: String,
        /// Run id.
        #[arg(long, env = "HERALD_RUN", default_value = "manual")]
        run: String,
        /// Task id.
        #[arg(long, default_value = "main")]
        task: String,
        /// Summary (completed) or reason (failed).
        #[arg(long)]
        summary: Option<String>,
        /// Sequence number; default: microseconds since the epoch, so
        /// successive calls from a script are ordered.
        #[arg(long)]
        seq: Option<i64>,
        /// Tool name, for running_tool.
        #[arg(long)]
        tool: Option<String>,
        /// Exit code, for completed.
        #[arg(long, allow_negative_numbers = true)]
        exit_code: Option<i64>,
        /// A label for routing, KEY=VALUE; repeatable.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Herald's base URL.
        #[arg(long, env = "HERALD_URL", default_value = "http://127.0.0.1:8600")]
        url: String,
        /// Bearer token of a [[sources]] entry.
        #[arg(long, env = "HERALD_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// List or re-drive delivery receipts, over the HTTP API.
    Deliveries {
        #[command(subcommand)]
        action: DeliveriesAction,
        /// Herald's base URL.
        #[arg(
            long,
            env = "HERALD_URL",
            default_value = "http://127.0.0.1:8600",
            global = true
        )]
        url: String,
        /// A source token (retry) or read token (list).
        #[arg(long, env = "HERALD_TOKEN", hide_env_values = true, global = true)]
        token: Option<String>,
    },
    /// Start the gateway on the built-in default plus a simulated fleet.
    Demo {
        /// Simulated workers.
        #[arg(long, default_value_t = 20)]
        workers: usize,
        /// Listen address (default 127.0.0.1:8600).
        #[arg(long)]
        listen: Option<String>,
        /// SQLite file (default ./herald.db).
        #[arg(long)]
        db: Option<PathBuf>,
        /// Seconds per simulated step; smaller is faster.
        #[arg(long, default_value_t = 1.5)]
        pace: f64,
    },
}

#[derive(Subcommand)]
enum DeliveriesAction {
    /// Print receipts, newest first, one per line (tab-separated: id,
    /// channel, status, state, run/worker/task, accepted at, attempts,
    /// last error), every page.
    List {
        /// pending, sending, surfaced or failed.
        #[arg(long)]
        status: Option<String>,
        /// Of one channel.
        #[arg(long)]
        channel: Option<String>,
        /// Of one run.
        #[arg(long)]
        run: Option<String>,
        /// Accepted at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Stop after this many.
        #[arg(long)]
        max: Option<usize>,
        /// One JSON object per line instead.
        #[arg(long)]
        json: bool,
    },
    /// Re-drive every failed receipt of a channel (or of all channels).
    Retry {
        /// The channel; all channels when omitted.
        #[arg(long)]
        channel: Option<String>,
    },
}

/// A query string from the parameters that are set.
fn query(params: &[(&str, Option<&str>)]) -> String {
    let pairs: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", urlencoding(v))))
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// Percent-encode a query value.
fn urlencoding(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `herald deliveries …`.
async fn deliveries(action: DeliveriesAction, url: &str, token: Option<String>) -> Result<()> {
    let client = herald::client::Client::new(url, token)?;
    match action {
        DeliveriesAction::List {
            status,
            channel,
            run,
            since,
            max,
            json,
        } => {
            let mut cursor: Option<String> = None;
            let mut printed = 0usize;
            loop {
                let path = format!(
                    "/v1/deliveries{}",
                    query(&[
                        ("status", status.as_deref()),
                        ("channel", channel.as_deref()),
                        ("run_id", run.as_deref()),
                        ("since", since.as_deref()),
                        ("limit", Some("1000")),
                        ("cursor", cursor.as_deref()),
                    ])
                );
                let page = client.get(&path).await?;
                let deliveries = page["deliveries"]
                    .as_array()
                    .with_context(|| format!("herald's answer to {path} has no deliveries list: {page}"))?;
                for d in deliveries {
                    if max.is_some_and(|m| printed >= m) {
                        return Ok(());
                    }
                    printed += 1;
                    if json {
                        println!("{d}");
                        continue;
                    }
                    let text = |k: &str| d[k].as_str().unwrap_or("").replace(['\t', '\n'], " ");
                    println!(
                        "{}\t{}\t{}\t{}\t{}/{}/{}\t{}\t{}\t{}",
                        text("id"),
                        text("channel"),
                        text("status"),
                        text("state"),
                        text("run_id"),
                        text("worker_id"),
                        text("task_id"),
                        text("created_at"),
                        d["attempts"],
                        text("last_error"),
                    );
                }
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => return Ok(()),
                }
            }
        }
        DeliveriesAction::Retry { channel } => {
            let path = format!(
                "/v1/deliveries/retry{}",
                query(&[("status", Some("failed")), ("channel", channel.as_deref())])
            );
            let answer = client.post_empty(&path).await?;
            println!("{} receipt(s) will be sent again", answer["retried"]);
            Ok(())
        }
    }
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(herald::redact::RedactingStderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herald: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve { config, log_format } => {
            init_logging(log_format);
            let (cfg, path) = load(config.as_deref())?;
            herald::app::serve(cfg, path, None).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { config } => match Config::resolve(config.as_deref()) {
            Ok((cfg, _)) => {
                println!("{}", cfg.summary());
                if !herald::store::is_postgres(&cfg.store.url)
                    && let Some(note) = herald::store::held_by_another(&cfg.store.url)
                {
                    println!("note: {note}");
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Routes { config, event } => routes(&config, &event),
        Command::Send {
            worker,
            state,
            run,
            task,
            summary,
            seq,
            tool,
            exit_code,
            labels,
            url,
            token,
        } => {
            let mut event = Map::new();
            event.insert(
                "seq".into(),
                json!(seq.unwrap_or_else(|| Utc::now().timestamp_micros())),
            );
            event.insert("run_id".into(), json!(run));
            event.insert("worker_id".into(), json!(worker));
            event.insert("task_id".into(), json!(task));
            event.insert(
                "timestamp".into(),
                json!(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)),
            );
            if let Some(text) = summary {
                let key = if state == "failed" { "reason" } else { "summary" };
                event.insert(key.into(), json!(text));
            }
            if let Some(tool) = tool {
                event.insert("tool".into(), json!(tool));
            }
            if let Some(code) = exit_code {
                event.insert("exit_code".into(), json!(code));
            }
            if !labels.is_empty() {
                let labels: Map<String, Value> = labels.into_iter().map(|(k, v)| (k, json!(v))).collect();
                event.insert("extra".into(), json!({ "labels": labels }));
            }
            event.insert("state".into(), json!(state));
            let client = herald::client::Client::new(&url, token)?;
            let answer = client.post(&[Value::Object(event)]).await?;
            println!("accepted {} duplicates {}", answer.accepted, answer.duplicates);
            Ok(ExitCode::SUCCESS)
        }
        Command::Deliveries { action, url, token } => {
            deliveries(action, &url, token).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            workers,
            listen,
            db,
            pace,
        } => {
            init_logging(LogFormat::Human);
            demo(workers, listen, db, pace).await
        }
    }
}

fn load(path: Option<&std::path::Path>) -> Result<(Config, Option<PathBuf>)> {
    match Config::resolve(path) {
        Ok(v) => Ok(v),
        Err(LoadError::Invalid(errors)) => bail!("invalid config:\n{errors}"),
        Err(e) => Err(e.into()),
    }
}

fn routes(config: &std::path::Path, event: &std::path::Path) -> Result<ExitCode> {
    let cfg = match Config::load_file(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let text = if event.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("could not read the event from stdin")?;
        s
    } else {
        std::fs::read_to_string(event).with_context(|| format!("could not read {}", event.display()))?
    };
    let value: Value = serde_json::from_str(&text).context("the event is not valid JSON")?;
    let event = parse_event(value).map_err(|e| anyhow::anyhow!("invalid event: {e}"))?;
    let labels = event.labels();
    let input = RoutingInput {
        run_id: &event.run_id,
        worker_id: &event.worker_id,
        task_id: &event.task_id,
        state: event.state.name(),
        labels: &labels,
    };
    let channels = route_channels(&cfg, &input);
    if channels.is_empty() {
        eprintln!("(no route matches and no [defaults] channels: the event would be journaled, unrouted)");
    }
    for ch in channels {
        println!("{}", ch.name);
    }
    Ok(ExitCode::SUCCESS)
}

async fn demo(workers: usize, listen: Option<String>, db: Option<PathBuf>, pace: f64) -> Result<ExitCode> {
    let mut cfg = Config::built_in().map_err(|e| anyhow::anyhow!("built-in config is invalid: {e}"))?;
    if let Some(listen) = listen {
        cfg.server.listen = listen
            .parse()
            .with_context(|| format!("bad --listen {listen:?}"))?;
    }
    if let Some(db) = db {
        cfg.store.url = format!("sqlite://{}", db.display());
    }
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(herald::app::serve(cfg, None, Some(bound_tx)));
    let addr = match bound_rx.await {
        Ok(addr) => addr,
        Err(_) => {
            // serve ended before binding: surface its error.
            return match server.await? {
                Ok(()) => Ok(ExitCode::FAILURE),
                Err(e) => Err(e),
            };
        }
    };
    let base = format!("http://{addr}");
    println!("herald demo: the fleet at {base}/ and its messages at {base}/channels/main  (Ctrl-C to stop)");
    let pace = Duration::from_secs_f64(pace.max(0.01));
    let fleet = tokio::spawn(async move { herald::demo::run_fleet(&base, None, workers, pace).await });
    let result = server.await?;
    fleet.abort();
    result?;
    Ok(ExitCode::SUCCESS)
}
