//! The running config, and moving to a new one: the file's config (re-read
//! on SIGHUP or `POST /-/reload`) plus the channels made at run time for
//! events' alert policies (`alert_policy.rs`, kept by the store and read
//! again every second, so every replica delivers to them). Applying a
//! config builds its adapters, moves the delivery engine to it (keeping
//! what did not change), installs its secrets in the log redactor and
//! publishes it to the rest of the process.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use herald_discord::DiscordAdapter;
use herald_messaging::{Messaging, Platform};
use herald_slack::SlackAdapter;
use herald_telegram::TelegramAdapter;
use herald_webhook::WebhookChannel;
use tokio::sync::{Mutex, watch};
use tracing::{error, info, warn};

use crate::alert_policy::RuntimeChannel;
use crate::config::{ChannelTarget, Config};
use crate::delivery::{Adapters, Delivery};
use crate::ingest::Reload;
use crate::store::Store;
use crate::web::WebChannel;

/// How often the run-time channels are read again.
pub const RUNTIME_REFRESH: Duration = Duration::from_secs(1);

/// The adapters for `config`'s channels. The web platform is one instance
/// for the process (its pages subscribe to it); webhook channels each get
/// their own signed endpoint; Discord, Slack and Telegram are one adapter
/// per bot account.
pub fn adapters(web: &WebChannel, config: &Config) -> Result<Adapters> {
    let mut adapters = Adapters::default();
    adapters.insert_platform(Platform::Web, Arc::new(web.clone()) as Arc<dyn Messaging>);
    if let Some(account) = &config.adapters.discord {
        let mut discord = DiscordAdapter::new(
            account.api_url.as_deref(),
            account.token.expose(),
            account.timeout,
        )
        .context("could not set up the Discord adapter")?;
        // No interactions endpoint: interactions come over the Gateway.
        if account.inbound_secret.is_none() {
            discord = discord.with_gateway();
        }
        adapters.insert_platform(Platform::Discord, Arc::new(discord));
    }
    if let Some(account) = &config.adapters.slack {
        let mut slack = SlackAdapter::new(
            account.api_url.as_deref(),
            account.token.expose(),
            account.timeout,
            account.history_tier,
        )
        .context("could not set up the Slack adapter")?;
        if let Some(app_token) = &account.app_token {
            slack = slack.with_app_token(app_token.expose());
        }
        adapters.insert_platform(Platform::Slack, Arc::new(slack));
    }
    if let Some(account) = &config.adapters.telegram {
        let telegram = TelegramAdapter::new(
            account.api_url.as_deref(),
            account.token.expose(),
            account.timeout,
        )
        .context("could not set up the Telegram adapter")?;
        adapters.insert_platform(Platform::Telegram, Arc::new(telegram));
    }
    for ch in config.channels.values() {
        let own: Arc<dyn Messaging> = match &ch.target {
            ChannelTarget::Webhook(hook) => {
                let headers: Vec<(String, String)> =
                    hook.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                Arc::new(
                    WebhookChannel::new(&hook.url, hook.secret.expose(), &headers, hook.timeout)
                        .with_context(|| format!("webhook channel {:?}", ch.name))?,
                )
            }
            ChannelTarget::PagerDuty(pd) => Arc::new(
                herald_pagerduty::PagerDutyChannel::new(
                    &pd.api_url,
                    pd.routing_key.expose(),
                    pd.severity,
                    pd.timeout,
                )
                .with_context(|| format!("pagerduty channel {:?}", ch.name))?,
            ),
            ChannelTarget::SlackWebhook(hook) => Arc::new(
                herald_slack_webhook::SlackWebhookChannel::new(hook.url.expose(), hook.timeout)
                    .with_context(|| format!("slack_webhook channel {:?}", ch.name))?,
            ),
            ChannelTarget::Chat { .. } => continue,
        };
        adapters.insert_channel(&ch.name, own);
    }
    Ok(adapters)
}

/// Holds the running config and moves the process to a new one.
pub struct Reloader {
    path: Option<PathBuf>,
    store: Store,
    config: watch::Sender<Arc<Config>>,
    /// The delivery engine (taken at shutdown).
    pub delivery: Mutex<Option<Delivery>>,
    web: WebChannel,
    /// The file's config and the run-time channels last applied.
    applied: std::sync::Mutex<(Arc<Config>, Vec<RuntimeChannel>)>,
}

impl Reloader {
    /// Hold `running` (= `base` with `runtime` added), served by `delivery`.
    pub fn new(
        path: Option<PathBuf>,
        store: Store,
        base: Arc<Config>,
        runtime: Vec<RuntimeChannel>,
        config: watch::Sender<Arc<Config>>,
        delivery: Delivery,
        web: WebChannel,
    ) -> Reloader {
        Reloader {
            path,
            store,
            config,
            delivery: Mutex::new(Some(delivery)),
            web,
            applied: std::sync::Mutex::new((base, runtime)),
        }
    }

    fn applied(&self) -> (Arc<Config>, Vec<RuntimeChannel>) {
        self.applied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Apply `base` with `runtime` added; `Err` says why nothing changed.
    async fn apply(&self, base: Arc<Config>, runtime: Vec<RuntimeChannel>) -> Result<String, String> {
        let new = base.with_runtime_channels(&runtime);
        let new_adapters = adapters(&self.web, &new).map_err(|e| format!("{e:#}"))?;
        let mut delivery = self.delivery.lock().await;
        if let Some(running) = delivery.as_mut() {
            // Checked before anything changed (a channel without an
            // adapter), or the store failed midway: the actors that run
            // keep running.
            running
                .reload(&new, &new_adapters, crate::app::DRAIN_DEADLINE)
                .await
                .map_err(|e| e.to_string())?;
        }
        let summary = new.summary();
        crate::redact::install(&new);
        self.config.send_replace(Arc::new(new));
        *self.applied.lock().unwrap_or_else(PoisonError::into_inner) = (base, runtime);
        Ok(summary)
    }

    /// Read the run-time channels again; apply them if they changed.
    pub async fn refresh_runtime_channels(&self) {
        let runtime = match self.store.runtime_channels().await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "could not read the channels of events' alert policies; trying again");
                return;
            }
        };
        let (base, applied) = self.applied();
        if runtime == applied {
            return;
        }
        let added = runtime.len().saturating_sub(applied.len());
        match self.apply(base, runtime).await {
            Ok(_) => info!(added, "channels of events' alert policies are delivered to"),
            Err(e) => warn!(error = %e, "could not add the channels of events' alert policies; trying again"),
        }
    }

    /// Read the run-time channels again every [`RUNTIME_REFRESH`], until
    /// the process stops.
    pub async fn keep_refreshing(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(RUNTIME_REFRESH);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.refresh_runtime_channels().await;
        }
    }
}

#[async_trait::async_trait]
impl Reload for Reloader {
    async fn reload(&self) -> Result<String, String> {
        let loaded = match &self.path {
            Some(path) => Config::load_file(path).map_err(|e| e.to_string()),
            None => Config::built_in().map_err(|e| e.to_string()),
        };
        let new = match loaded {
            Ok(c) => c,
            Err(errors) => {
                crate::metrics::config_reloaded(false);
                error!(%errors, "config reload rejected; keeping the running config");
                return Err(errors);
            }
        };
        let (old, runtime) = self.applied();
        if new.store.url != old.store.url || new.server.listen != old.server.listen {
            warn!("store.url and server.listen changes take effect only after a restart");
        }
        match self.apply(Arc::new(new), runtime).await {
            Ok(summary) => {
                crate::metrics::config_reloaded(true);
                info!(%summary, "config reloaded");
                Ok(summary)
            }
            Err(e) => {
                crate::metrics::config_reloaded(false);
                error!(error = %e, "config reload rejected; keeping the running config");
                Err(e)
            }
        }
    }
}
