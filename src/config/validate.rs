//! From TOML text to a validated [`Config`], collecting every error.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use herald_messaging::Platform;
use toml::Spanned;
use toml::de::DeTable;

use super::diagnostics::{ConfigErrors, Diagnostics};
use super::env::interpolate;
use super::raw::{RawAccount, RawChannel, RawConfig, RawEscalation, RawMatcher, RawRoute, SpannedStr};
use super::unknown_keys;
use super::{
    AccountConfig, AdaptersConfig, ChannelConfig, ChannelTarget, Config, ContractsConfig,
    DEFAULT_PAGERDUTY_URL, DeliveryConfig, InFlight, PagerDutyTarget, Secret, ServerConfig,
    SlackWebhookTarget, SourceConfig, StoreConfig, WebhookTarget,
};
use crate::alert_policy::EventPoliciesConfig;
use crate::escalations::EscalationRule;
use crate::protocol::{ALERT_STATES, KNOWN_STATES};
use crate::routing::{MatchField, Matcher, Route, Router};
use herald_slack::HistoryTier;

const DEFAULT_LISTEN: &str = "127.0.0.1:8600";
const DEFAULT_STORE: &str = "sqlite://herald.db";
const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;
const DEFAULT_RETRY: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(60),
    Duration::from_secs(300),
];
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
pub(crate) const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// A channel key, where it is in the file, the adapters it applies to,
/// and how to name them.
type KeyRule<'a> = (&'static str, Option<Range<usize>>, &'a [Platform], &'static str);

/// The highest `max_in_flight`: beyond this a receiver is better served
/// by several herald channels (or a queue) than by more sockets.
const MAX_IN_FLIGHT: usize = 1000;
/// Long enough that a slow platform answer is rarely mistaken for a lost
/// one (each such timeout costs a reconciliation, or on Telegram possibly a
/// duplicate), short enough that an outage is noticed.
const DEFAULT_PLATFORM_TIMEOUT: Duration = Duration::from_secs(15);

/// Parse and validate. `env` looks up `${VAR}`.
pub fn load(path: &str, text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    let mut diag = Diagnostics::new(path, text);

    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        for err in syntax_errors {
            diag.error(err.span().unwrap_or(0..0), err.message().trim().to_owned());
        }
        return Err(diag.into_errors());
    }

    let mut unknown: Vec<Vec<unknown_keys::Segment>> = Vec::new();
    let deserializer = toml::de::Deserializer::from(root.clone());
    let raw: RawConfig = match serde_ignored::deserialize(deserializer, |p| {
        unknown.push(unknown_keys::segments(&p));
    }) {
        Ok(raw) => raw,
        Err(err) => {
            diag.error(err.span().unwrap_or(0..0), err.message().trim().to_owned());
            return Err(diag.into_errors());
        }
    };
    for segments in &unknown {
        let span = unknown_keys::key_span(&root, segments);
        diag.error(span, format!("unknown key `{}`", unknown_keys::dotted(segments)));
    }

    let mut v = Validator { diag, env: &env };
    let config = v.config(path, raw);
    if v.diag.is_empty() {
        config.ok_or_else(|| v.diag.into_errors())
    } else {
        Err(v.diag.into_errors())
    }
}

struct Validator<'a, E: Fn(&str) -> Option<String>> {
    diag: Diagnostics<'a>,
    env: &'a E,
}

impl<E: Fn(&str) -> Option<String>> Validator<'_, E> {
    fn err(&mut self, span: Range<usize>, msg: impl Into<String>) {
        self.diag.error(span, msg);
    }

    /// Interpolate `${VAR}`; on failure record the error and return None.
    fn text(&mut self, value: &SpannedStr) -> Option<String> {
        match interpolate(value.get_ref(), self.env) {
            Ok(s) => Some(s),
            Err(e) => {
                self.err(value.span(), e.to_string());
                None
            }
        }
    }

    /// A key the config needs: `None` (with `msg` at `at`, the table
    /// that lacks it) when missing.
    fn required<'r, T>(
        &mut self,
        value: &'r Option<Spanned<T>>,
        at: Range<usize>,
        msg: impl Into<String>,
    ) -> Option<&'r Spanned<T>> {
        if value.is_none() {
            self.err(at, msg);
        }
        value.as_ref()
    }

    fn non_empty(&mut self, value: &SpannedStr, what: &str) -> Option<String> {
        let s = self.text(value)?;
        if s.trim().is_empty() {
            self.err(value.span(), format!("{what} must not be empty"));
            return None;
        }
        Some(s)
    }

    fn duration(&mut self, value: &SpannedStr) -> Option<Duration> {
        let s = self.text(value)?;
        match humantime::parse_duration(&s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    value.span(),
                    format!("bad duration {s:?}: {e} (write e.g. \"500ms\", \"5s\", \"1m\", \"24h\")"),
                );
                None
            }
        }
    }

    fn config(&mut self, path: &str, raw: RawConfig) -> Option<Config> {
        let server = self.server(&raw);
        let store = self.store(&raw);
        let sources = self.sources(&raw);
        let adapters = AdaptersConfig {
            discord: raw
                .adapters
                .discord
                .as_ref()
                .and_then(|a| self.account(a, Platform::Discord)),
            slack: raw
                .adapters
                .slack
                .as_ref()
                .and_then(|a| self.account(a, Platform::Slack)),
            telegram: raw
                .adapters
                .telegram
                .as_ref()
                .and_then(|a| self.account(a, Platform::Telegram)),
        };
        let mut channels = BTreeMap::new();
        for (name, ch) in &raw.channels {
            if let Some(c) = self.channel(name, ch, &raw) {
                channels.insert(name.clone(), c);
            }
        }
        let routes: Vec<Route> = raw.routes.iter().filter_map(|r| self.route(r, &raw)).collect();
        let defaults = match &raw.defaults {
            Some(d) => d
                .channels
                .iter()
                .filter_map(|c| self.channel_ref(c, &raw))
                .collect(),
            None => Vec::new(),
        };
        let delivery = self.delivery(&raw);
        let contracts = self.contracts(&raw);
        let event_policies = self.event_policies(&raw);
        let escalations: Vec<EscalationRule> = raw
            .escalations
            .iter()
            .filter_map(|e| self.escalation(e, &raw))
            .collect();

        if let (Some(server), true) = (&server, sources.is_empty())
            && !server.listen.ip().is_loopback()
        {
            let span = raw.server.listen.as_ref().map_or(0..0, |l| l.span());
            self.err(
                span,
                "listening beyond loopback requires at least one [[sources]] token; \
                     without one anybody could post events",
            );
        }

        if let Some(server) = &server
            && !server.listen.ip().is_loopback()
            && server.read_tokens.is_empty()
            && !server.public_reads
        {
            let span = raw.server.listen.as_ref().map_or(0..0, |l| l.span());
            self.err(
                span,
                "listening beyond loopback requires [server] read_tokens: without them anybody could read \
                 every task, delivery and web channel (set server.public_reads = true to allow that knowingly)",
            );
        }

        Some(Config {
            source: path.to_owned(),
            server: server?,
            store: store?,
            sources,
            adapters,
            channels,
            router: Router::new(routes, defaults),
            delivery: delivery?,
            contracts: contracts?,
            escalations,
            event_policies: event_policies?,
        })
    }

    fn event_policies(&mut self, raw: &RawConfig) -> Option<EventPoliciesConfig> {
        let p = &raw.event_policies;
        let mut out = EventPoliciesConfig {
            allow: p.allow.unwrap_or(false),
            ..EventPoliciesConfig::default()
        };
        let mut ok = true;
        for glob in &p.allowed_urls {
            let text = self.non_empty(glob, "event_policies.allowed_urls")?;
            if let Err(e) = globset::Glob::new(&text) {
                self.err(glob.span(), format!("bad glob in allowed_urls: {e}"));
                ok = false;
            }
            out.allowed_urls.push(text);
        }
        if let Some(url) = &p.pagerduty_api_url {
            let text = self.non_empty(url, "event_policies.pagerduty_api_url")?;
            if !(text.starts_with("http://") || text.starts_with("https://")) {
                self.err(url.span(), "pagerduty_api_url is not an http:// or https:// URL");
                ok = false;
            }
            out.pagerduty_api_url = text.trim_end_matches('/').to_owned();
        }
        ok.then_some(out)
    }

    fn escalation(&mut self, raw: &Spanned<RawEscalation>, cfg: &RawConfig) -> Option<EscalationRule> {
        let e = raw.get_ref();
        let matchers = self.matchers(&e.matchers);
        let after_stale = self.positive_duration(e.after_stale.as_ref(), "escalations.after_stale");
        let after_restarts = match &e.after_restarts {
            None => Some(None),
            Some(n) => match u64::try_from(*n.get_ref()) {
                Ok(v) if v >= 1 => Some(Some(v)),
                _ => {
                    self.err(n.span(), "after_restarts must be at least 1");
                    None
                }
            },
        };
        let channels = self.channel_list(e.channels.as_ref(), raw.span(), "an [[escalations]] entry", cfg);
        let mut ok = channels.is_some();
        let channels = channels.unwrap_or_default();
        let (matchers, after_stale, after_restarts) = (matchers?, after_stale?, after_restarts?);
        let on_failed = e.on_failed.unwrap_or(false);
        if after_stale.is_none() && after_restarts.is_none() && !on_failed {
            self.err(
                raw.span(),
                "an escalation needs a condition: after_stale, after_restarts or on_failed = true",
            );
            ok = false;
        }
        ok.then_some(EscalationRule {
            matchers,
            after_stale,
            after_restarts,
            on_failed,
            channels,
        })
    }

    fn contracts(&mut self, raw: &RawConfig) -> Option<ContractsConfig> {
        let heartbeat = self.positive_duration(raw.contracts.heartbeat.as_ref(), "contracts.heartbeat")?;
        let deadline = self.positive_duration(raw.contracts.deadline.as_ref(), "contracts.deadline")?;
        let surface_within =
            self.positive_duration(raw.contracts.surface_within.as_ref(), "contracts.surface_within")?;
        Some(ContractsConfig {
            heartbeat,
            deadline,
            surface_within,
        })
    }

    /// An optional duration that must be longer than zero. `None` when it
    /// is invalid (reported); `Some(None)` when it is absent.
    fn positive_duration(&mut self, value: Option<&SpannedStr>, key: &str) -> Option<Option<Duration>> {
        let Some(value) = value else {
            return Some(None);
        };
        let d = self.duration(value)?;
        if d.is_zero() {
            self.err(value.span(), format!("{key} must be longer than 0s"));
            return None;
        }
        Some(Some(d))
    }

    fn server(&mut self, raw: &RawConfig) -> Option<ServerConfig> {
        let listen_text = match &raw.server.listen {
            Some(l) => self.text(l)?,
            None => DEFAULT_LISTEN.to_owned(),
        };
        let listen: SocketAddr = match listen_text.parse() {
            Ok(a) => a,
            Err(_) => {
                let span = raw.server.listen.as_ref().map_or(0..0, |l| l.span());
                self.err(span, format!("listen must be IP:PORT, got {listen_text:?}"));
                return None;
            }
        };
        let max_body_bytes = match &raw.server.max_body_bytes {
            None => DEFAULT_MAX_BODY,
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(v) if v >= 1024 => v,
                _ => {
                    self.err(n.span(), "max_body_bytes must be at least 1024");
                    return None;
                }
            },
        };
        let read_tokens = raw
            .server
            .read_tokens
            .iter()
            .filter_map(|t| self.non_empty(t, "read token"))
            .map(Secret::new)
            .collect();
        Some(ServerConfig {
            listen,
            max_body_bytes,
            read_tokens,
            public_reads: raw.server.public_reads.unwrap_or(false),
        })
    }

    fn store(&mut self, raw: &RawConfig) -> Option<StoreConfig> {
        let retention = self
            .positive_duration(raw.store.retention.as_ref(), "store.retention")?
            .unwrap_or(super::DEFAULT_RETENTION);
        let Some(url) = &raw.store.url else {
            return Some(StoreConfig {
                url: DEFAULT_STORE.to_owned(),
                retention,
            });
        };
        let text = self.non_empty(url, "store.url")?;
        if text.starts_with("sqlite:") {
            Some(StoreConfig { url: text, retention })
        } else if crate::store::is_postgres(&text) {
            // Checked for form only: check-config does not need the server.
            let config = StoreConfig { url: text, retention };
            match <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(&config.url) {
                Ok(_) => Some(config),
                Err(e) => {
                    let reason = match config.password() {
                        Some(p) => e.to_string().replace(&p, "***"),
                        None => e.to_string(),
                    };
                    self.err(
                        url.span(),
                        format!(
                            "store.url is not a valid PostgreSQL URL ({reason}); \
                             expected postgres://USER:PASSWORD@HOST:PORT/DATABASE"
                        ),
                    );
                    None
                }
            }
        } else {
            self.err(
                url.span(),
                "store.url must start with sqlite: (embedded) or postgres: (PostgreSQL)",
            );
            None
        }
    }

    fn sources(&mut self, raw: &RawConfig) -> Vec<SourceConfig> {
        let mut out: Vec<SourceConfig> = Vec::new();
        for spanned in &raw.sources {
            let src = spanned.get_ref();
            let name = self.required(&src.name, spanned.span(), "a [[sources]] entry needs `name`");
            let token = self.required(&src.token, spanned.span(), "a [[sources]] entry needs `token`");
            let (Some(name_at), Some(token_at)) = (name, token) else {
                continue;
            };
            let (Some(name), Some(token)) = (
                self.non_empty(name_at, "source name"),
                self.non_empty(token_at, "source token"),
            ) else {
                continue;
            };
            if out.iter().any(|s| s.name == name) {
                self.err(name_at.span(), format!("duplicate source name {name:?}"));
                continue;
            }
            out.push(SourceConfig {
                name,
                token: Secret::new(token),
            });
        }
        out
    }

    fn account(&mut self, raw: &Spanned<RawAccount>, platform: Platform) -> Option<AccountConfig> {
        let acc = raw.get_ref();
        let history_tier = match (&acc.history_tier, platform) {
            (None, _) => HistoryTier::default(),
            (Some(t), Platform::Slack) => match t.get_ref().as_str() {
                "tier3" => HistoryTier::Tier3,
                "limited" => HistoryTier::Limited,
                other => {
                    self.err(
                        t.span(),
                        format!(
                            "unknown history_tier {other:?} (expected \"tier3\" for internal and Marketplace \
                             apps, or \"limited\" for commercially distributed non-Marketplace apps)"
                        ),
                    );
                    return None;
                }
            },
            (Some(t), other) => {
                self.err(
                    t.span(),
                    format!("history_tier applies to [adapters.slack] only, not [adapters.{other}]"),
                );
                return None;
            }
        };
        let token = self.required(
            &acc.token,
            raw.span(),
            format!("[adapters.{platform}] needs `token`"),
        )?;
        let token = self.non_empty(token, "token")?;
        let api_url = match &acc.api_url {
            Some(u) => Some(self.url(u)?),
            None => None,
        };
        let timeout = match &acc.timeout {
            Some(t) => self.duration(t)?,
            None => DEFAULT_PLATFORM_TIMEOUT,
        };
        let inbound_secret = self.inbound_secret(acc, platform)?;
        let app_token = match (&acc.app_token, platform) {
            (None, _) => None,
            (Some(t), Platform::Slack) => Some(Secret::new(self.non_empty(t, "app_token")?)),
            (Some(t), other) => {
                self.err(
                    t.span(),
                    format!("app_token applies to [adapters.slack] only, not [adapters.{other}]"),
                );
                return None;
            }
        };
        Some(AccountConfig {
            token: Secret::new(token),
            api_url,
            timeout,
            history_tier,
            inbound_secret,
            app_token,
        })
    }

    /// `signing_secret` (Slack), `public_key` (Discord, 64 hex digits) or
    /// `webhook_secret` (Telegram): each only on its own platform.
    fn inbound_secret(&mut self, acc: &RawAccount, platform: Platform) -> Option<Option<Secret>> {
        let keys = [
            ("signing_secret", &acc.signing_secret, Platform::Slack),
            ("public_key", &acc.public_key, Platform::Discord),
            ("webhook_secret", &acc.webhook_secret, Platform::Telegram),
        ];
        let mut found = None;
        for (key, value, owner) in keys {
            let Some(value) = value else { continue };
            if owner != platform {
                self.err(
                    value.span(),
                    format!("{key} applies to [adapters.{owner}] only, not [adapters.{platform}]"),
                );
                return None;
            }
            let text = self.non_empty(value, key)?;
            if key == "public_key" && (text.len() != 64 || !text.chars().all(|c| c.is_ascii_hexdigit())) {
                self.err(
                    value.span(),
                    "public_key must be the application's public key: 64 hex digits",
                );
                return None;
            }
            found = Some(Secret::new(text));
        }
        Some(found)
    }

    fn url(&mut self, value: &SpannedStr) -> Option<String> {
        let s = self.text(value)?;
        if !(s.starts_with("http://") || s.starts_with("https://")) {
            self.err(value.span(), format!("{s:?} is not an http:// or https:// URL"));
            return None;
        }
        Some(s.trim_end_matches('/').to_owned())
    }

    fn channel(&mut self, name: &str, raw: &Spanned<RawChannel>, cfg: &RawConfig) -> Option<ChannelConfig> {
        let ch = raw.get_ref();
        if name.starts_with(crate::alert_policy::RUNTIME_PREFIX) {
            self.err(
                raw.span(),
                format!(
                    "channel names beginning with {:?} are herald's own (the channels of events' alert policies)",
                    crate::alert_policy::RUNTIME_PREFIX
                ),
            );
            return None;
        }
        let adapter = self.required(
            &ch.adapter,
            raw.span(),
            format!("channel {name:?} needs `adapter` (discord, slack, telegram, webhook, web, pagerduty or slack_webhook)"),
        )?;
        let adapter_text = adapter.get_ref().as_str();
        let platform = match adapter_text {
            "discord" => Platform::Discord,
            "slack" => Platform::Slack,
            "telegram" => Platform::Telegram,
            "webhook" => Platform::Webhook,
            "web" => Platform::Web,
            "pagerduty" => Platform::PagerDuty,
            "slack_webhook" => Platform::SlackWebhook,
            other => {
                self.err(
                    adapter.span(),
                    format!(
                        "unknown adapter {other:?} (expected discord, slack, telegram, webhook, web, pagerduty or slack_webhook)"
                    ),
                );
                return None;
            }
        };
        let account_configured = match platform {
            Platform::Discord => cfg.adapters.discord.is_some(),
            Platform::Slack => cfg.adapters.slack.is_some(),
            Platform::Telegram => cfg.adapters.telegram.is_some(),
            Platform::Webhook | Platform::Web | Platform::PagerDuty | Platform::SlackWebhook => true,
        };
        if !account_configured {
            self.err(
                adapter.span(),
                format!("channel {name:?} uses {platform} but [adapters.{platform}] is not configured"),
            );
        }
        self.keys_for(platform, ch);
        let target = match platform {
            Platform::Webhook => ChannelTarget::Webhook(self.webhook_target(name, ch, raw)?),
            Platform::PagerDuty => ChannelTarget::PagerDuty(self.pagerduty_target(name, ch, raw)?),
            Platform::SlackWebhook => ChannelTarget::SlackWebhook(self.slack_webhook_target(name, ch, raw)?),
            Platform::Discord | Platform::Slack | Platform::Telegram | Platform::Web => {
                let id = match (&ch.id, platform) {
                    (Some(id), _) => self.non_empty(id, "id")?,
                    (None, Platform::Web) => name.to_owned(),
                    (None, _) => {
                        self.err(
                            raw.span(),
                            format!("channel {name:?} needs `id` (the {platform} channel id)"),
                        );
                        return None;
                    }
                };
                let thread_id = match &ch.thread_id {
                    Some(t) => Some(self.non_empty(t, "thread_id")?),
                    None => None,
                };
                ChannelTarget::Chat { id, thread_id }
            }
        };
        // Webhooks cannot edit: they get state changes only with `events = "all"`.
        let progress_default = match &target {
            ChannelTarget::Webhook(hook) => hook.all_events,
            ChannelTarget::Chat { .. } => true,
            // Nothing to keep current: they page, or post once.
            ChannelTarget::PagerDuty(_) | ChannelTarget::SlackWebhook(_) => false,
        };
        let progress = match &ch.progress {
            Some(p) if *p.get_ref() && matches!(platform, Platform::PagerDuty | Platform::SlackWebhook) => {
                self.err(
                    p.span(),
                    format!("{platform} channels cannot show live progress messages (they cannot edit); they get notifications only"),
                );
                return None;
            }
            Some(p) => *p.get_ref(),
            None => progress_default,
        };
        let in_flight = self.in_flight(ch, platform)?;
        let fallback = match &ch.fallback {
            Some(f) if f.get_ref() == name => {
                self.err(f.span(), format!("channel {name:?} cannot be its own fallback"));
                return None;
            }
            Some(f) => Some(self.channel_ref(f, cfg)?),
            None => None,
        };
        let thread = match &ch.thread {
            Some(t) if *t.get_ref() && !progress => {
                self.err(
                    t.span(),
                    format!("channel {name:?}: `thread = true` puts notifications under the task's live message, which `progress = false` turns off"),
                );
                return None;
            }
            Some(t) => *t.get_ref(),
            None => false,
        };
        Some(ChannelConfig {
            name: name.to_owned(),
            platform,
            target,
            progress,
            in_flight,
            fallback,
            notify_resolved: ch.notify_resolved.unwrap_or(true),
            mention_on_failure: self.channel_mentions(ch, platform)?,
            thread,
        })
    }

    /// A chat channel's `mention_on_failure`: each of its platform's form.
    fn channel_mentions(&mut self, ch: &RawChannel, platform: Platform) -> Option<Vec<String>> {
        let Some(list) = &ch.mention_on_failure else {
            return Some(Vec::new());
        };
        if !matches!(platform, Platform::Slack | Platform::Discord | Platform::Telegram) {
            self.err(
                list.span(),
                "`mention_on_failure` applies to slack, discord and telegram channels only",
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for m in list.get_ref() {
            let raw = m.get_ref().trim();
            if crate::mentions::platform_of(raw) == Some(platform) {
                out.push(raw.to_owned());
            } else {
                self.err(
                    m.span(),
                    format!(
                        "{raw:?} is not a {platform} mention ({})",
                        mention_forms(platform)
                    ),
                );
                ok = false;
            }
        }
        ok.then_some(out)
    }

    /// Every channel key that does not apply to `platform` is an error
    /// naming the adapters it applies to.
    fn keys_for(&mut self, platform: Platform, ch: &RawChannel) {
        use Platform::*;
        let keys: [KeyRule<'_>; 10] = [
            (
                "id",
                ch.id.as_ref().map(Spanned::span),
                &[Discord, Slack, Telegram, Web],
                "chat and web channels",
            ),
            (
                "thread",
                ch.thread.as_ref().map(Spanned::span),
                &[Discord, Slack, Telegram],
                "slack, discord and telegram channels",
            ),
            (
                "thread_id",
                ch.thread_id.as_ref().map(Spanned::span),
                &[Telegram],
                "telegram channels",
            ),
            (
                "url",
                ch.url.as_ref().map(Spanned::span),
                &[Webhook, SlackWebhook],
                "webhook and slack_webhook channels",
            ),
            (
                "secret",
                ch.secret.as_ref().map(Spanned::span),
                &[Webhook],
                "webhook channels",
            ),
            (
                "events",
                ch.events.as_ref().map(Spanned::span),
                &[Webhook],
                "webhook channels",
            ),
            (
                "timeout",
                ch.timeout.as_ref().map(Spanned::span),
                &[Webhook, PagerDuty, SlackWebhook],
                "webhook, pagerduty and slack_webhook channels",
            ),
            (
                "routing_key",
                ch.routing_key.as_ref().map(Spanned::span),
                &[PagerDuty],
                "pagerduty channels",
            ),
            (
                "severity",
                ch.severity.as_ref().map(Spanned::span),
                &[PagerDuty],
                "pagerduty channels",
            ),
            (
                "api_url",
                ch.api_url.as_ref().map(Spanned::span),
                &[PagerDuty],
                "pagerduty channels",
            ),
        ];
        for (key, span, allowed, which) in keys {
            if let Some(span) = span
                && !allowed.contains(&platform)
            {
                let hint = if key == "url" && platform == Platform::PagerDuty {
                    " (a pagerduty channel takes `routing_key`, and `api_url` for another endpoint)"
                } else if key == "id" && matches!(platform, Webhook | SlackWebhook) {
                    " (it takes `url`)"
                } else {
                    ""
                };
                self.err(span, format!("`{key}` applies to {which} only{hint}"));
            }
        }
        if platform != Webhook
            && let Some((_, v)) = ch.headers.iter().next()
        {
            self.err(v.span(), "`headers` applies to webhook channels only");
        }
    }

    fn webhook_target(
        &mut self,
        name: &str,
        ch: &RawChannel,
        raw: &Spanned<RawChannel>,
    ) -> Option<WebhookTarget> {
        let url = match &ch.url {
            Some(u) => self.url(u),
            None => {
                self.err(raw.span(), format!("webhook channel {name:?} needs `url`"));
                None
            }
        };
        let secret = match &ch.secret {
            Some(s) => self.webhook_secret(s),
            None => {
                self.err(
                    raw.span(),
                    format!("webhook channel {name:?} needs `secret` (whsec_<base64>)"),
                );
                None
            }
        };
        let timeout = self.timeout(ch);
        let all_events = match &ch.events {
            None => Some(false),
            Some(e) => match e.get_ref().as_str() {
                "terminal" => Some(false),
                "all" => Some(true),
                other => {
                    self.err(
                        e.span(),
                        format!("events must be \"terminal\" or \"all\", got {other:?}"),
                    );
                    None
                }
            },
        };
        let mut headers = BTreeMap::new();
        for (k, v) in &ch.headers {
            if let Some(v) = self.text(v) {
                headers.insert(k.clone(), v);
            }
        }
        Some(WebhookTarget {
            url: url?,
            secret: secret?,
            headers,
            timeout: timeout?,
            all_events: all_events?,
        })
    }

    fn pagerduty_target(
        &mut self,
        name: &str,
        ch: &RawChannel,
        raw: &Spanned<RawChannel>,
    ) -> Option<PagerDutyTarget> {
        let routing_key = match &ch.routing_key {
            Some(k) => self.non_empty(k, "routing_key").map(Secret::new),
            None => {
                self.err(
                    raw.span(),
                    format!(
                        "pagerduty channel {name:?} needs `routing_key` (the Events API v2 integration key)"
                    ),
                );
                None
            }
        };
        let api_url = match &ch.api_url {
            Some(u) => self.url(u),
            None => Some(DEFAULT_PAGERDUTY_URL.to_owned()),
        };
        let severity = match &ch.severity {
            None => Some(herald_pagerduty::PagerDutySeverity::Error),
            Some(s) => {
                let parsed = herald_pagerduty::PagerDutySeverity::parse(s.get_ref());
                if parsed.is_none() {
                    self.err(
                        s.span(),
                        format!(
                            "severity must be critical, error, warning or info, got {:?}",
                            s.get_ref()
                        ),
                    );
                }
                parsed
            }
        };
        let timeout = self.timeout(ch);
        Some(PagerDutyTarget {
            routing_key: routing_key?,
            api_url: api_url?,
            severity: severity?,
            timeout: timeout?,
        })
    }

    fn slack_webhook_target(
        &mut self,
        name: &str,
        ch: &RawChannel,
        raw: &Spanned<RawChannel>,
    ) -> Option<SlackWebhookTarget> {
        let url = match &ch.url {
            Some(u) => self.url(u).map(Secret::new),
            None => {
                self.err(
                    raw.span(),
                    format!(
                        "slack_webhook channel {name:?} needs `url` (https://hooks.slack.com/services/…)"
                    ),
                );
                None
            }
        };
        let timeout = self.timeout(ch);
        Some(SlackWebhookTarget {
            url: url?,
            timeout: timeout?,
        })
    }

    fn timeout(&mut self, ch: &RawChannel) -> Option<Duration> {
        match &ch.timeout {
            Some(t) => self.duration(t),
            None => Some(DEFAULT_WEBHOOK_TIMEOUT),
        }
    }

    /// `max_in_flight` and `adaptive_in_flight`: only where the platform
    /// takes posts concurrently.
    fn in_flight(&mut self, ch: &RawChannel, platform: Platform) -> Option<InFlight> {
        let mut in_flight = InFlight::default();
        if !matches!(platform, Platform::Webhook | Platform::Web) {
            let keys = [
                ("max_in_flight", ch.max_in_flight.as_ref().map(Spanned::span)),
                (
                    "adaptive_in_flight",
                    ch.adaptive_in_flight.as_ref().map(Spanned::span),
                ),
            ];
            for (key, span) in keys {
                if let Some(span) = span {
                    self.err(
                        span,
                        format!(
                            "`{key}` applies to webhook and web channels only ({platform} messages are sent one at a time, in order)"
                        ),
                    );
                }
            }
            return Some(in_flight);
        }
        if let Some(max) = &ch.max_in_flight {
            match usize::try_from(*max.get_ref()) {
                Ok(n @ 1..=MAX_IN_FLIGHT) => in_flight.max = n,
                _ => {
                    self.err(
                        max.span(),
                        format!(
                            "max_in_flight must be between 1 and {MAX_IN_FLIGHT}, got {}",
                            max.get_ref()
                        ),
                    );
                    return None;
                }
            }
        }
        if let Some(adaptive) = &ch.adaptive_in_flight {
            in_flight.adaptive = *adaptive.get_ref();
        }
        Some(in_flight)
    }

    fn webhook_secret(&mut self, value: &SpannedStr) -> Option<Secret> {
        let s = self.text(value)?;
        let ok = s.strip_prefix("whsec_").is_some_and(|b64| {
            !b64.is_empty()
                && b64
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
        });
        if !ok {
            self.err(value.span(), "webhook secret must look like whsec_<base64>");
            return None;
        }
        Some(Secret::new(s))
    }

    fn channel_ref(&mut self, name: &SpannedStr, cfg: &RawConfig) -> Option<String> {
        let n = name.get_ref();
        if cfg.channels.contains_key(n) {
            Some(n.clone())
        } else {
            let known: Vec<&str> = cfg.channels.keys().map(String::as_str).collect();
            self.err(
                name.span(),
                format!("unknown channel {n:?} (defined: {})", known.join(", ")),
            );
            None
        }
    }

    /// The `channels` of a route or an escalation (`what`, the table at
    /// `at`): present, not empty, each a configured channel. `None` once
    /// any of that was reported.
    fn channel_list(
        &mut self,
        list: Option<&Spanned<Vec<SpannedStr>>>,
        at: Range<usize>,
        what: &str,
        cfg: &RawConfig,
    ) -> Option<Vec<String>> {
        let Some(list) = list else {
            self.err(at, format!("{what} needs `channels`"));
            return None;
        };
        if list.get_ref().is_empty() {
            self.err(list.span(), format!("{what} needs at least one channel"));
            return None;
        }
        let mut ok = true;
        let mut channels = Vec::new();
        for c in list.get_ref() {
            match self.channel_ref(c, cfg) {
                Some(name) => channels.push(name),
                None => ok = false,
            }
        }
        ok.then_some(channels)
    }

    fn route(&mut self, raw: &Spanned<RawRoute>, cfg: &RawConfig) -> Option<Route> {
        let route = raw.get_ref();
        let matchers = self.matchers(&route.matchers);
        let channels = self.channel_list(route.channels.as_ref(), raw.span(), "a [[routes]] entry", cfg);
        let mut ok = matchers.is_some() && channels.is_some();
        let channels = channels.unwrap_or_default();
        let mut mentions = Vec::new();
        if let Some(list) = &route.mention_on_failure {
            let platforms: Vec<Platform> = route
                .channels
                .iter()
                .flat_map(|list| list.get_ref())
                .filter_map(|c| cfg.channels.get(c.get_ref()))
                .filter_map(|c| c.get_ref().adapter.as_ref())
                .filter_map(|a| adapter_platform(a.get_ref()))
                .collect();
            for m in list.get_ref() {
                let raw = m.get_ref().trim();
                match crate::mentions::platform_of(raw) {
                    Some(p) if platforms.contains(&p) => mentions.push(raw.to_owned()),
                    Some(p) => {
                        self.err(
                            m.span(),
                            format!("{raw:?} is a {p} mention but the route sends to no {p} channel"),
                        );
                        ok = false;
                    }
                    None => {
                        self.err(
                            m.span(),
                            format!(
                                "{raw:?} is not a mention ({}; {}; {})",
                                mention_forms(Platform::Slack),
                                mention_forms(Platform::Discord),
                                mention_forms(Platform::Telegram)
                            ),
                        );
                        ok = false;
                    }
                }
            }
        }
        ok.then_some(Route {
            matchers: matchers?,
            channels,
            continue_: route.continue_,
            mentions,
        })
    }

    /// The matchers of a route or an escalation; `None` when any is bad
    /// (each reported).
    fn matchers(
        &mut self,
        raw: &BTreeMap<String, Spanned<RawMatcher>>,
    ) -> Option<Vec<(MatchField, Matcher)>> {
        let mut matchers = Vec::new();
        let mut ok = true;
        for (key, value) in raw {
            let field = match MatchField::parse(key) {
                Ok(f) => f,
                Err(e) => {
                    self.err(value.span(), e);
                    ok = false;
                    continue;
                }
            };
            let compiled = match value.get_ref() {
                RawMatcher::One(p) => Matcher::parse(p),
                RawMatcher::AnyOf(list) => Matcher::any_of(list),
            };
            match compiled {
                Ok(m) => {
                    if field == MatchField::State {
                        for s in m.exact_values() {
                            if !KNOWN_STATES.contains(&s) && !ALERT_STATES.contains(&s) {
                                self.err(
                                    value.span(),
                                    format!(
                                        "unknown state {s:?} (known: {}, {})",
                                        KNOWN_STATES.join(", "),
                                        ALERT_STATES.join(", ")
                                    ),
                                );
                                ok = false;
                            }
                        }
                    }
                    matchers.push((field, m));
                }
                Err(e) => {
                    self.err(value.span(), format!("bad matcher for {key}: {e}"));
                    ok = false;
                }
            }
        }
        ok.then_some(matchers)
    }

    fn delivery(&mut self, raw: &RawConfig) -> Option<DeliveryConfig> {
        let d = &raw.delivery;
        let retry_schedule = match &d.retry_schedule {
            None => DEFAULT_RETRY.to_vec(),
            Some(list) => {
                if list.get_ref().is_empty() {
                    self.err(list.span(), "retry_schedule needs at least one step");
                }
                let steps: Vec<Option<Duration>> = list.get_ref().iter().map(|s| self.duration(s)).collect();
                steps.into_iter().collect::<Option<Vec<_>>>()?
            }
        };
        let max_age = match &d.max_age {
            Some(s) => self.duration(s)?,
            None => DEFAULT_MAX_AGE,
        };
        let progress_min_interval = match &d.progress_min_interval {
            Some(s) => self.duration(s)?,
            None => DEFAULT_PROGRESS_INTERVAL,
        };
        Some(DeliveryConfig {
            retry_schedule,
            max_age,
            progress_min_interval,
        })
    }
}

/// The platform of an adapter name, for the chat platforms mentions apply to.
fn adapter_platform(adapter: &str) -> Option<Platform> {
    match adapter {
        "discord" => Some(Platform::Discord),
        "slack" => Some(Platform::Slack),
        "telegram" => Some(Platform::Telegram),
        _ => None,
    }
}

/// How a platform's mentions are written, for error messages.
fn mention_forms(platform: Platform) -> &'static str {
    match platform {
        Platform::Slack => "Slack: \"<@U…>\", \"<!subteam^S…>\", \"<!here>\" or \"<!channel>\"",
        Platform::Discord => "Discord: \"<@user id>\" or \"<@&role id>\"",
        Platform::Telegram => "Telegram: \"tg://user?id=<user id>\"",
        _ => "none on this platform",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "t0k".to_string())
    }

    fn errors(text: &str) -> Vec<String> {
        match load("h.toml", text, env) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn escalations_are_compiled_and_every_mistake_named() {
        let base = "[channels.oncall]\nadapter = \"pagerduty\"\nrouting_key = \"k\"\n\n";
        let ok = load(
            "h.toml",
            &format!(
                "{base}[[escalations]]\nmatch = {{ \"labels.team\" = \"infra\" }}\nafter_stale = \"10m\"\n\
                 after_restarts = 3\non_failed = true\nchannels = [\"oncall\"]\n"
            ),
            env,
        )
        .unwrap();
        let rule = &ok.escalations[0];
        assert_eq!(rule.after_stale, Some(Duration::from_secs(600)));
        assert_eq!((rule.after_restarts, rule.on_failed), (Some(3), true));
        assert_eq!(rule.channels, ["oncall"]);
        assert_eq!(rule.matchers.len(), 1);
        let e = errors(&format!("{base}[[escalations]]\nchannels = [\"oncall\"]\n"));
        assert!(
            e[0].contains("h.toml:5:1") && e[0].contains("needs a condition"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{base}[[escalations]]\non_failed = true\nchannels = [\"pager\"]\n"
        ));
        assert!(
            e[0].contains("h.toml:7:13") && e[0].contains("unknown channel \"pager\""),
            "{e:?}"
        );
        let e = errors(&format!(
            "{base}[[escalations]]\nafter_restarts = 0\nchannels = [\"oncall\"]\n"
        ));
        assert!(e[0].contains("after_restarts must be at least 1"), "{e:?}");
        let e = errors(&format!(
            "{base}[[escalations]]\nafter_stale = \"0s\"\nchannels = [\"oncall\"]\n"
        ));
        assert!(
            e[0].contains("escalations.after_stale must be longer than 0s"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{base}[[escalations]]\nmatch = {{ state = \"stuck\" }}\non_failed = true\nchannels = []\n"
        ));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e.iter().any(|m| m.contains("unknown state \"stuck\"")), "{e:?}");
        assert!(e.iter().any(|m| m.contains("at least one channel")), "{e:?}");
        let e = errors(&format!(
            "{base}[[escalations]]\non_failed = true\nchannels = [\"oncall\"]\nafter = \"1m\"\n"
        ));
        assert!(
            e[0].contains("h.toml:8:1") && e[0].ends_with("unknown key `escalations[0].after`"),
            "{e:?}"
        );
        // Routes are spanned the same way.
        let e = errors(&format!(
            "{base}[[routes]]\nchannels = [\"oncall\"]\ncontinu = true\n"
        ));
        assert!(e[0].ends_with("unknown key `routes[0].continu`"), "{e:?}");
    }

    #[test]
    fn each_platform_takes_its_own_inbound_secret() {
        let key = "a".repeat(64);
        let ok = load(
            "h.toml",
            &format!(
                "[adapters.slack]\ntoken = \"x\"\nsigning_secret = \"s\"\n\n\
                 [adapters.discord]\ntoken = \"d\"\npublic_key = \"{key}\"\n\n\
                 [adapters.telegram]\ntoken = \"1:t\"\nwebhook_secret = \"w\"\n"
            ),
            env,
        )
        .unwrap();
        let secret = |a: &Option<AccountConfig>| {
            a.as_ref()
                .and_then(|a| a.inbound_secret.as_ref())
                .map(|s| s.expose().to_owned())
        };
        assert_eq!(secret(&ok.adapters.slack).as_deref(), Some("s"));
        assert_eq!(secret(&ok.adapters.discord), Some(key));
        assert_eq!(secret(&ok.adapters.telegram).as_deref(), Some("w"));
        let e = errors("[adapters.slack]\ntoken = \"x\"\npublic_key = \"ab\"\n");
        assert!(
            e[0].contains("public_key applies to [adapters.discord] only"),
            "{e:?}"
        );
        let e = errors("[adapters.discord]\ntoken = \"x\"\npublic_key = \"xyz\"\n");
        assert!(
            e[0].contains("h.toml:3:14") && e[0].contains("64 hex digits"),
            "{e:?}"
        );
    }

    #[test]
    fn every_error_comes_at_once_with_keys_as_written() {
        let e = errors(
            "[channels.oncall]\nadapter = \"pagerduty\"\nrouting_key = \"abc\"\napi_urll = \"http://x\"\n\n\
             [channels.hook]\nadapter = \"webhook\"\nurl = \"http://example.com\"\nsecreet = \"s\"\n\n\
             [channels.bare]\nid = \"C1\"\n\n\
             [adapters.slack]\ntokn = \"x\"\n\n\
             [[sources]]\nnam = \"fleet\"\n\n\
             [[routes]]\nmatch = { run_id = \"x\" }\ncontine = true\n\n\
             [[escalations]]\non_failed = true\n",
        );
        let expected = [
            "h.toml:4:1: unknown key `channels.oncall.api_urll`",
            "needs `secret`",
            "h.toml:9:1: unknown key `channels.hook.secreet`",
            "channel \"bare\" needs `adapter`",
            "[adapters.slack] needs `token`",
            "unknown key `adapters.slack.tokn`",
            "a [[sources]] entry needs `name`",
            "a [[sources]] entry needs `token`",
            "unknown key `sources[0].nam`",
            "a [[routes]] entry needs `channels`",
            "unknown key `routes[0].contine`",
            "an [[escalations]] entry needs `channels`",
        ];
        for want in expected {
            assert!(e.iter().any(|e| e.contains(want)), "{want:?} not in {e:#?}");
        }
        assert!(!e.iter().any(|e| e.contains("serde")), "{e:#?}");
    }

    #[test]
    fn threads_are_for_chat_channels_with_a_live_message() {
        let slack = "[adapters.slack]\ntoken = \"x\"\n\n[channels.s]\nadapter = \"slack\"\nid = \"C1\"\n";
        let ok = load("h.toml", &format!("{slack}thread = true\n"), env).unwrap();
        assert!(ok.channels["s"].thread);
        let ok = load("h.toml", slack, env).unwrap();
        assert!(!ok.channels["s"].thread, "threads are asked for");
        // Without the live message there is nothing to reply under.
        let e = errors(&format!("{slack}progress = false\nthread = true\n"));
        assert!(
            e[0].contains("h.toml:8:10") && e[0].contains("`progress = false` turns off"),
            "{e:?}"
        );
        let e = errors("[channels.h]\nadapter = \"web\"\nthread = true\n");
        assert!(
            e[0].contains("h.toml:3:10")
                && e[0].contains("`thread` applies to slack, discord and telegram channels only"),
            "{e:?}"
        );
    }

    #[test]
    fn mentions_must_be_of_their_channels_platform() {
        let chats = "[adapters.slack]\ntoken = \"x\"\n\n[adapters.discord]\ntoken = \"d\"\n\n\
                     [channels.s]\nadapter = \"slack\"\nid = \"C1\"\n";
        let ok = load(
            "h.toml",
            &format!("{chats}mention_on_failure = [\"<@U1>\", \"<!here>\"]\n"),
            env,
        )
        .unwrap();
        assert_eq!(ok.channels["s"].mention_on_failure, ["<@U1>", "<!here>"]);
        // A Discord mention on a Slack channel, at its line and column.
        let e = errors(&format!("{chats}mention_on_failure = [\"<@123>\"]\n"));
        assert!(
            e[0].contains("h.toml:10:23") && e[0].contains("\"<@123>\" is not a slack mention"),
            "{e:?}"
        );
        let e = errors(&format!("{chats}mention_on_failure = [\"@ana\"]\n"));
        assert!(e[0].contains("<!subteam^S…>"), "{e:?}");
        let e = errors(
            "[channels.h]\nadapter = \"webhook\"\nurl = \"http://x\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nmention_on_failure = [\"<@1>\"]\n",
        );
        assert!(
            e.iter()
                .any(|e| e.contains("applies to slack, discord and telegram channels only")),
            "{e:?}"
        );
        // A route's mention must be of one of its channels' platforms.
        let e = errors(&format!(
            "{chats}\n[[routes]]\nchannels = [\"s\"]\nmention_on_failure = [\"<@&5>\"]\n"
        ));
        assert!(
            e[0].contains("is a discord mention but the route sends to no discord channel"),
            "{e:?}"
        );
        let routed = load(
            "h.toml",
            &format!("{chats}\n[[routes]]\nchannels = [\"s\"]\nmention_on_failure = [\"<!subteam^S1>\"]\n"),
            env,
        )
        .unwrap();
        let none = std::collections::BTreeMap::new();
        let input = crate::routing::RoutingInput {
            run_id: "r",
            worker_id: "w",
            task_id: "t",
            state: "failed",
            labels: &none,
        };
        assert_eq!(routed.router.mentions_for(&input, "s"), ["<!subteam^S1>"]);
    }

    #[test]
    fn an_app_token_is_slack_only() {
        let ok = load(
            "h.toml",
            "[adapters.slack]\ntoken = \"x\"\napp_token = \"xapp-1\"\n",
            env,
        )
        .unwrap();
        let token = ok.adapters.slack.as_ref().and_then(|a| a.app_token.as_ref());
        assert_eq!(token.map(|t| t.expose()), Some("xapp-1"));
        let e = errors("[adapters.telegram]\ntoken = \"1:t\"\napp_token = \"xapp-1\"\n");
        assert!(
            e[0].contains("h.toml:3:13") && e[0].contains("app_token applies to [adapters.slack] only"),
            "{e:?}"
        );
        let e = errors("[adapters.slack]\ntoken = \"x\"\napp_token = \"\"\n");
        assert!(e[0].contains("app_token"), "{e:?}");
    }

    #[test]
    fn event_policies_are_off_unless_allowed_and_their_globs_checked() {
        let off = load("h.toml", "", env).unwrap();
        assert!(!off.event_policies.allow);
        assert_eq!(off.event_policies.pagerduty_api_url, DEFAULT_PAGERDUTY_URL);
        let on = load(
            "h.toml",
            "[event_policies]\nallow = true\nallowed_urls = [\"https://hooks.slack.com/services/T0/*\"]\n\
             pagerduty_api_url = \"https://events.eu.pagerduty.com/\"\n",
            env,
        )
        .unwrap();
        assert!(on.event_policies.allow);
        assert_eq!(
            on.event_policies.allowed_urls,
            ["https://hooks.slack.com/services/T0/*"]
        );
        assert_eq!(
            on.event_policies.pagerduty_api_url,
            "https://events.eu.pagerduty.com"
        );
        let e = errors("[event_policies]\nallow = true\nallowed_urls = [\"https://x/[a\"]\n");
        assert!(e[0].contains("h.toml:3:17") && e[0].contains("bad glob"), "{e:?}");
        let e = errors("[event_policies]\npagerduty_api_url = \"events.pagerduty.com\"\n");
        assert!(e[0].contains("not an http:// or https:// URL"), "{e:?}");
        let e = errors("[channels.\"event:x\"]\nadapter = \"web\"\n");
        assert!(e[0].contains("are herald's own"), "{e:?}");
    }

    #[test]
    fn pagerduty_and_slack_webhook_channels_are_checked() {
        let ok = load(
            "h.toml",
            "[channels.oncall]\nadapter = \"pagerduty\"\nrouting_key = \"k\"\nseverity = \"critical\"\n\n\
             [channels.team]\nadapter = \"slack_webhook\"\nurl = \"https://hooks.slack.com/services/T/B/x\"\n",
            env,
        )
        .unwrap();
        match &ok.channels["oncall"].target {
            ChannelTarget::PagerDuty(pd) => {
                assert_eq!(pd.api_url, "https://events.pagerduty.com");
                assert_eq!(pd.severity, herald_pagerduty::PagerDutySeverity::Critical);
            }
            other => panic!("{other:?}"),
        }
        assert!(!ok.channels["oncall"].progress && !ok.channels["team"].progress);
        let e = errors("[channels.oncall]\nadapter = \"pagerduty\"\n");
        assert!(
            e[0].contains("h.toml:1:1") && e[0].contains("needs `routing_key`"),
            "{e:?}"
        );
        let e =
            errors("[channels.oncall]\nadapter = \"pagerduty\"\nrouting_key = \"k\"\nseverity = \"high\"\n");
        assert!(
            e[0].contains("h.toml:4:12") && e[0].contains("critical, error, warning or info"),
            "{e:?}"
        );
        let e =
            errors("[channels.oncall]\nadapter = \"pagerduty\"\nrouting_key = \"k\"\nurl = \"http://x\"\n");
        assert!(
            e[0].contains("`url` applies to webhook and slack_webhook channels only")
                && e[0].contains("routing_key"),
            "{e:?}"
        );
        let e = errors("[channels.oncall]\nadapter = \"pagerduty\"\nrouting_key = \"k\"\nprogress = true\n");
        assert!(e[0].contains("cannot show live progress messages"), "{e:?}");
        let e = errors("[channels.team]\nadapter = \"slack_webhook\"\n");
        assert!(e[0].contains("needs `url`"), "{e:?}");
        let e = errors("[channels.team]\nadapter = \"slack_webhook\"\nurl = \"hooks.slack.com/x\"\n");
        assert!(e[0].contains("not an http:// or https:// URL"), "{e:?}");
        let e = errors("[channels.team]\nadapter = \"slack_webhook\"\nid = \"C1\"\nurl = \"https://h/x\"\n");
        assert!(
            e[0].contains("`id` applies to chat and web channels only (it takes `url`)"),
            "{e:?}"
        );
    }

    #[test]
    fn built_in_default_is_valid() {
        let cfg = load("<built-in>", super::super::BUILT_IN, env).unwrap();
        assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:8600");
        assert_eq!(cfg.channels["main"].platform, Platform::Web);
        assert!(cfg.channels["main"].progress);
        assert_eq!(cfg.delivery.retry_schedule.len(), 5);
    }

    #[test]
    fn every_unknown_key_is_reported_with_position() {
        let errs = errors("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n\n[delivery]\nmax_agee = \"1h\"\n");
        assert_eq!(
            errs,
            vec![
                "h.toml:3:1: unknown key `server.lisen`".to_string(),
                "h.toml:6:1: unknown key `delivery.max_agee`".to_string()
            ]
        );
    }

    #[test]
    fn semantic_errors_are_all_collected() {
        let text = r#"
[[sources]]
name = "fleet"
token = "${MISSING_VAR}"

[channels.main]
adapter = "web"

[channels.x]
adapter = "carrier-pigeon"

[[routes]]
match = { state = ["failed", "exploded"], run_id = "~(" }
channels = ["main", "nope"]

[delivery]
max_age = "forever"
"#;
        let errs = errors(text);
        assert!(
            errs.iter()
                .any(|e| e.starts_with("h.toml:4:9:") && e.contains("MISSING_VAR")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("h.toml:10:11:") && e.contains("carrier-pigeon")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.contains("unknown state \"exploded\"")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.contains("bad matcher for run_id")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("h.toml:14:21:") && e.contains("unknown channel \"nope\"")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("h.toml:17:11:") && e.contains("bad duration")),
            "{errs:?}"
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let errs = errors("[server\nlisten = 1\n");
        assert!(!errs.is_empty());
        assert!(errs[0].starts_with("h.toml:1:"), "{errs:?}");
    }

    #[test]
    fn type_errors_have_positions() {
        let errs = errors("[server]\nmax_body_bytes = \"big\"\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("h.toml:2:"), "{errs:?}");
    }

    #[test]
    fn open_ingest_beyond_loopback_is_refused() {
        let errs = errors("[server]\nlisten = \"0.0.0.0:8600\"\n");
        assert!(errs[0].contains("sources"), "{errs:?}");
        let sourced =
            "[server]\nlisten = \"0.0.0.0:8600\"\nREAD\n[[sources]]\nname=\"a\"\ntoken=\"${TOKEN}\"\n";
        let errs = errors(&sourced.replace("READ", ""));
        assert!(errs.len() == 1 && errs[0].contains("read_tokens"), "{errs:?}");
        assert!(errors(&sourced.replace("READ", "read_tokens = [\"${TOKEN}\"]")).is_empty());
        assert!(errors(&sourced.replace("READ", "public_reads = true")).is_empty());
        let errs = errors(&sourced.replace("READ", "read_tokens = [\"\"]"));
        assert!(errs.iter().any(|e| e.contains("read token")), "{errs:?}");
    }

    #[test]
    fn webhook_channels_default_to_terminal_only() {
        let cfg = load(
            "h.toml",
            "[channels.audit]\nadapter = \"webhook\"\nurl = \"http://127.0.0.1:9/h\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n",
            env,
        )
        .unwrap();
        assert!(!cfg.channels["audit"].progress);
        let errs =
            errors("[channels.audit]\nadapter = \"webhook\"\nurl = \"http://x\"\nsecret = \"plain\"\n");
        assert!(errs[0].contains("whsec_"), "{errs:?}");
    }

    #[test]
    fn chat_channels_need_their_adapter_account() {
        let errs = errors("[channels.b]\nadapter = \"discord\"\nid = \"1\"\n");
        assert!(errs[0].contains("[adapters.discord]"), "{errs:?}");
        let ok = errors(
            "[adapters.discord]\ntoken = \"${TOKEN}\"\n[channels.b]\nadapter = \"discord\"\nid = \"1\"\n",
        );
        assert!(ok.is_empty(), "{ok:?}");
    }
}
