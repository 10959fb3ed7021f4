//! The config file exactly as written: serde structs with source spans, so
//! that validation can point at `PATH:LINE:COL`. Nothing here is checked
//! beyond TOML types — even required keys are optional here, so that a
//! missing one is reported with every other error instead of stopping
//! serde — and `validate.rs` turns it into a [`super::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A string as written, with its place in the file.
pub type SpannedStr = Spanned<String>;

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub sources: Vec<Spanned<RawSource>>,
    #[serde(default)]
    pub adapters: RawAdapters,
    #[serde(default)]
    pub channels: BTreeMap<String, Spanned<RawChannel>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
    pub defaults: Option<RawDefaults>,
    #[serde(default)]
    pub delivery: RawDelivery,
    #[serde(default)]
    pub contracts: RawContracts,
    #[serde(default)]
    pub escalations: Vec<Spanned<RawEscalation>>,
    #[serde(default)]
    pub event_policies: RawEventPolicies,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawEventPolicies {
    pub allow: Option<bool>,
    #[serde(default)]
    pub allowed_urls: Vec<SpannedStr>,
    pub pagerduty_api_url: Option<SpannedStr>,
}

#[derive(Debug, Deserialize)]
pub struct RawEscalation {
    #[serde(rename = "match", default)]
    pub matchers: BTreeMap<String, Spanned<RawMatcher>>,
    pub after_stale: Option<SpannedStr>,
    pub after_restarts: Option<Spanned<i64>>,
    pub on_failed: Option<bool>,
    pub channels: Option<Spanned<Vec<SpannedStr>>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawContracts {
    pub heartbeat: Option<SpannedStr>,
    pub deadline: Option<SpannedStr>,
    pub surface_within: Option<SpannedStr>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawServer {
    pub listen: Option<SpannedStr>,
    pub max_body_bytes: Option<Spanned<i64>>,
    #[serde(default)]
    pub read_tokens: Vec<SpannedStr>,
    pub public_reads: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawStore {
    pub url: Option<SpannedStr>,
    pub retention: Option<SpannedStr>,
}

#[derive(Debug, Deserialize)]
pub struct RawSource {
    pub name: Option<SpannedStr>,
    pub token: Option<SpannedStr>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawAdapters {
    pub discord: Option<Spanned<RawAccount>>,
    pub slack: Option<Spanned<RawAccount>>,
    pub telegram: Option<Spanned<RawAccount>>,
}

#[derive(Debug, Deserialize)]
pub struct RawAccount {
    pub token: Option<SpannedStr>,
    pub api_url: Option<SpannedStr>,
    pub timeout: Option<SpannedStr>,
    /// Slack only: `tier3` or `limited`.
    pub history_tier: Option<SpannedStr>,
    /// Slack only: verifies inbound requests.
    pub signing_secret: Option<SpannedStr>,
    /// Slack only: the app-level token (`xapp-…`) for Socket Mode.
    pub app_token: Option<SpannedStr>,
    /// Discord only: the application's public key (hex).
    pub public_key: Option<SpannedStr>,
    /// Telegram only: the `secret_token` given to `setWebhook`.
    pub webhook_secret: Option<SpannedStr>,
}

#[derive(Debug, Deserialize)]
pub struct RawChannel {
    pub adapter: Option<SpannedStr>,
    pub id: Option<SpannedStr>,
    pub thread_id: Option<SpannedStr>,
    pub url: Option<SpannedStr>,
    pub secret: Option<SpannedStr>,
    #[serde(default)]
    pub headers: BTreeMap<String, SpannedStr>,
    pub timeout: Option<SpannedStr>,
    pub events: Option<SpannedStr>,
    pub routing_key: Option<SpannedStr>,
    pub severity: Option<SpannedStr>,
    pub api_url: Option<SpannedStr>,
    pub progress: Option<Spanned<bool>>,
    pub max_in_flight: Option<Spanned<i64>>,
    pub adaptive_in_flight: Option<Spanned<bool>>,
    pub fallback: Option<SpannedStr>,
    pub notify_resolved: Option<bool>,
    /// Chat channels: who failure and attention notifications ping.
    pub mention_on_failure: Option<Spanned<Vec<SpannedStr>>>,
    /// Chat channels: a task's notifications as replies under its live
    /// message.
    pub thread: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
pub struct RawRoute {
    #[serde(rename = "match", default)]
    pub matchers: BTreeMap<String, Spanned<RawMatcher>>,
    pub channels: Option<Spanned<Vec<SpannedStr>>>,
    #[serde(rename = "continue", default)]
    pub continue_: bool,
    /// Who failures of the tasks this route sends ping, on its channels.
    pub mention_on_failure: Option<Spanned<Vec<SpannedStr>>>,
}

/// A matcher is one string or a list of strings (any of).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawMatcher {
    One(String),
    AnyOf(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct RawDefaults {
    pub channels: Vec<SpannedStr>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawDelivery {
    pub retry_schedule: Option<Spanned<Vec<SpannedStr>>>,
    pub max_age: Option<SpannedStr>,
    pub progress_min_interval: Option<SpannedStr>,
}
