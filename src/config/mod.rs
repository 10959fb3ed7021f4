//! Herald's configuration (SPEC §5): the validated model, loading from TOML
//! with `${VAR}` interpolation, and the built-in default.
//!
//! Loading reports every problem it can find as `PATH:LINE:COL: message`:
//! all syntax errors, all unknown keys, and all semantic errors (unknown
//! channel in a route, missing environment variable, bad matcher, bad
//! duration). A config that loads is safe to serve.

mod diagnostics;
mod env;
mod raw;
mod runtime;
mod unknown_keys;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_messaging::Platform;

use crate::routing::Router;

pub use diagnostics::{ConfigError, ConfigErrors};
pub use env::{EnvError, interpolate};

/// The default config, also shipped as `config/herald.toml`: SQLite at
/// `./herald.db`, `127.0.0.1:8600`, one web channel `main` receiving every
/// event.
pub const BUILT_IN: &str = include_str!("../../config/herald.toml");

/// Where `herald serve` looks when `--config` is not given.
pub const DEFAULT_PATH: &str = "config/herald.toml";

/// PagerDuty's Events API (US; EU accounts set `api_url`).
pub const DEFAULT_PAGERDUTY_URL: &str = "https://events.pagerduty.com";

/// A secret from the config (token, signing key). Its `Debug` and `Display`
/// never show the value, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The value, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The whole validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from, for messages.
    pub source: String,
    /// `[server]`
    pub server: ServerConfig,
    /// `[store]`
    pub store: StoreConfig,
    /// `[[sources]]`: who may post events. Empty means ingest is open, which
    /// validation allows only on a loopback address.
    pub sources: Vec<SourceConfig>,
    /// `[adapters.*]`: platform accounts.
    pub adapters: AdaptersConfig,
    /// `[channels.*]`, by name.
    pub channels: BTreeMap<String, ChannelConfig>,
    /// `[[routes]]` and `[defaults]`, compiled.
    pub router: Router,
    /// `[delivery]`
    pub delivery: DeliveryConfig,
    /// `[contracts]`: what herald watches for itself.
    pub contracts: ContractsConfig,
    /// `[[escalations]]`, compiled, in file order.
    pub escalations: Vec<crate::escalations::EscalationRule>,
    /// `[event_policies]`: whether events' own alert policies are used.
    pub event_policies: crate::alert_policy::EventPoliciesConfig,
}

/// `[contracts]`: what herald notices about a task without being told.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContractsConfig {
    /// An open task with no event for this long is marked stale by herald
    /// (its live message says so, an attention notification goes out);
    /// the worker's next event clears it. `None`: not watched.
    pub heartbeat: Option<Duration>,
    /// A task with no terminal event this long after its first is failed
    /// by herald (`deadline exceeded`); a task's own
    /// `extra.timeout_seconds` takes precedence. `None`: no default.
    pub deadline: Option<Duration>,
    /// A notification not surfaced this long after it was due, on a
    /// channel with a `fallback`, is also sent there (a permanent failure
    /// is sent there at once). `None`: only permanent failures fall back.
    pub surface_within: Option<Duration>,
}

/// `[server]`
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Largest accepted request body; larger is `413`.
    pub max_body_bytes: usize,
    /// Tokens that may read (`GET /v1/...`, the web pages); when empty,
    /// reads are open (allowed beyond loopback only with `public_reads`).
    pub read_tokens: Vec<Secret>,
    /// Serve reads without a token beyond loopback, knowingly.
    pub public_reads: bool,
}

/// `[store]`
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://PATH` (the embedded default) or `postgres://…` (several
    /// replicas, or a PostgreSQL you already run and back up). May carry
    /// a password: show it with [`StoreConfig::shown`].
    pub url: String,
    /// How long finished tasks are kept (their journal, surfaced
    /// receipts, web messages); failed receipts are kept `max_age` longer.
    pub retention: Duration,
}

/// `[store] retention` unless set.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

impl StoreConfig {
    /// The URL with any password replaced, for logs and summaries.
    pub fn shown(&self) -> String {
        match reqwest::Url::parse(&self.url) {
            Ok(mut url) if url.password().is_some() => {
                if url.set_password(Some("***")).is_ok() {
                    url.to_string()
                } else {
                    "(a URL with a password)".to_owned()
                }
            }
            _ => self.url.clone(),
        }
    }

    /// The password in the URL as written (percent-encoded), if any: a
    /// secret to keep out of logs.
    pub fn password(&self) -> Option<String> {
        let url = reqwest::Url::parse(&self.url).ok()?;
        url.password().map(str::to_owned)
    }
}

/// One `[[sources]]` entry: a named bearer token.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Shown in logs as the origin of events.
    pub name: String,
    /// The bearer token.
    pub token: Secret,
}

/// `[adapters]`: one account per platform.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdaptersConfig {
    /// `[adapters.discord]`
    pub discord: Option<AccountConfig>,
    /// `[adapters.slack]`
    pub slack: Option<AccountConfig>,
    /// `[adapters.telegram]`
    pub telegram: Option<AccountConfig>,
}

/// A platform account: its bot token and API base URL.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountConfig {
    /// Bot token.
    pub token: Secret,
    /// API base URL (platform default, a proxy, or an emulator).
    pub api_url: Option<String>,
    /// Per-request timeout; a request unanswered by then is `Unverified`.
    pub timeout: Duration,
    /// Slack: which `conversations.history` limits the app has.
    pub history_tier: herald_slack::HistoryTier,
    /// The secret inbound requests are verified with: Slack's signing
    /// secret, Discord's application public key (hex), Telegram's webhook
    /// secret token. `None`: the platform's inbound endpoint refuses all.
    pub inbound_secret: Option<Secret>,
    /// Slack: the app-level token (`xapp-…`) herald opens Socket Mode
    /// connections with, to take commands without a public URL.
    pub app_token: Option<Secret>,
}

/// One `[channels.NAME]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelConfig {
    /// The config name.
    pub name: String,
    /// Which adapter delivers to it.
    pub platform: Platform,
    /// Where, on that platform.
    pub target: ChannelTarget,
    /// Whether it gets the live progress message (else terminal only).
    pub progress: bool,
    /// How many terminal notifications may be in flight at once, where
    /// the platform takes them concurrently (webhook and web channels).
    pub in_flight: InFlight,
    /// Where a notification goes when this channel fails it permanently or
    /// has not surfaced it within `[contracts] surface_within`.
    pub fallback: Option<String>,
    /// Whether a resolved alert is also notified (else only its live
    /// message says `resolved`).
    pub notify_resolved: bool,
    /// Who failure and attention notifications ping here, in the
    /// platform's mention syntax (checked at load).
    pub mention_on_failure: Vec<String>,
    /// A task's notifications are replies under its live message (Slack
    /// `thread_ts`, a Discord thread, Telegram `reply_parameters`), so the
    /// channel shows one line per task.
    pub thread: bool,
}

/// How a concurrent channel limits its posts in flight (`max_in_flight`,
/// `adaptive_in_flight`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// The most posts in flight at once.
    pub max: usize,
    /// Adapt below `max` to the receiver's round trips and back-pressure
    /// (else keep `max` in flight whenever work waits).
    pub adaptive: bool,
}

impl Default for InFlight {
    /// Adaptive up to 200, Vector's ceiling for the same algorithm.
    fn default() -> Self {
        InFlight {
            max: 200,
            adaptive: true,
        }
    }
}

/// Platform-specific destination of a channel.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelTarget {
    /// Discord channel id, Slack channel id, Telegram chat id, web channel name.
    Chat {
        /// The platform id.
        id: String,
        /// Telegram forum topic.
        thread_id: Option<String>,
    },
    /// Signed outgoing webhook.
    Webhook(WebhookTarget),
    /// A PagerDuty service integration (Events API v2).
    PagerDuty(PagerDutyTarget),
    /// A Slack incoming webhook.
    SlackWebhook(SlackWebhookTarget),
}

/// A PagerDuty channel's integration.
#[derive(Debug, Clone, PartialEq)]
pub struct PagerDutyTarget {
    /// The Events API v2 integration key.
    pub routing_key: Secret,
    /// `https://events.pagerduty.com` unless set (a regional endpoint, a
    /// proxy, an emulator).
    pub api_url: String,
    /// `payload.severity` of its triggers.
    pub severity: herald_pagerduty::PagerDutySeverity,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// A Slack incoming webhook channel.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackWebhookTarget {
    /// The webhook URL (it is the secret).
    pub url: Secret,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// A webhook channel's endpoint and signing key.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookTarget {
    /// Endpoint.
    pub url: String,
    /// `whsec_<base64>` signing secret.
    pub secret: Secret,
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Every state change (`true`) or terminal only.
    pub all_events: bool,
}

/// `[delivery]`
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryConfig {
    /// Waits between attempts; the last repeats.
    pub retry_schedule: Vec<Duration>,
    /// Age after which an undelivered receipt is failed.
    pub max_age: Duration,
    /// Minimum time between two edits of one progress message.
    pub progress_min_interval: Duration,
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path tried.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file was read but is not valid.
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
}

impl Config {
    /// Parse and validate config text, reading `${VAR}` from the process
    /// environment. `path` is used in error messages only.
    pub fn parse(path: &str, text: &str) -> Result<Config, ConfigErrors> {
        validate::load(path, text, |name| std::env::var(name).ok())
    }

    /// Parse with an explicit environment (for tests).
    pub fn parse_with_env(
        path: &str,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        validate::load(path, text, env)
    }

    /// The built-in default.
    pub fn built_in() -> Result<Config, ConfigErrors> {
        Config::parse("<built-in>", BUILT_IN)
    }

    /// Read and validate a file.
    pub fn load_file(path: &Path) -> Result<Config, LoadError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: display.clone(),
            source,
        })?;
        Ok(Config::parse(&display, &text)?)
    }

    /// What `serve` uses: `--config`, else `config/herald.toml` if present,
    /// else the built-in default. Returns the path read, if any.
    pub fn resolve(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>), LoadError> {
        if let Some(path) = explicit {
            return Ok((Config::load_file(path)?, Some(path.to_owned())));
        }
        let default = Path::new(DEFAULT_PATH);
        if default.exists() {
            return Ok((Config::load_file(default)?, Some(default.to_owned())));
        }
        Ok((Config::built_in()?, None))
    }

    /// One line for `check-config` and start-up logs.
    pub fn summary(&self) -> String {
        let mut per_platform: BTreeMap<&str, usize> = BTreeMap::new();
        for ch in self.channels.values() {
            *per_platform.entry(ch.platform.as_str()).or_default() += 1;
        }
        let platforms: Vec<String> = per_platform.iter().map(|(p, n)| format!("{n} {p}")).collect();
        format!(
            "{}: ok — {} channel(s) ({}), {} route(s), {} escalation(s), {} source(s), store {}, listen {}",
            self.source,
            self.channels.len(),
            platforms.join(", "),
            self.router.len(),
            self.escalations.len(),
            self.sources.len(),
            self.store.shown(),
            self.server.listen
        )
    }
}
