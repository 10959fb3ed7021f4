//! The running config is the file's plus the channels made at run time for
//! events' own alert policies (`alert_policy.rs`), so they are delivered,
//! leased, budgeted and redacted exactly like configured channels.

use std::collections::BTreeMap;

use herald_messaging::Platform;

use super::validate::DEFAULT_WEBHOOK_TIMEOUT;
use super::{
    ChannelConfig, ChannelTarget, Config, InFlight, PagerDutyTarget, Secret, SlackWebhookTarget,
    WebhookTarget,
};
use crate::alert_policy::{RuntimeChannel, RuntimeTarget};

impl Config {
    /// This config with `channels` added (a name the file uses is left to
    /// the file; run-time names begin with `event:`, which config names
    /// cannot).
    pub fn with_runtime_channels(&self, channels: &[RuntimeChannel]) -> Config {
        let mut out = self.clone();
        for channel in channels {
            if out.channels.contains_key(&channel.name) {
                continue;
            }
            let (platform, target) = match &channel.target {
                RuntimeTarget::SlackWebhook { url } => (
                    Platform::SlackWebhook,
                    ChannelTarget::SlackWebhook(SlackWebhookTarget {
                        url: Secret::new(url.clone()),
                        timeout: DEFAULT_WEBHOOK_TIMEOUT,
                    }),
                ),
                RuntimeTarget::Webhook { url, secret } => (
                    Platform::Webhook,
                    ChannelTarget::Webhook(WebhookTarget {
                        url: url.clone(),
                        secret: Secret::new(secret.clone()),
                        headers: BTreeMap::new(),
                        timeout: DEFAULT_WEBHOOK_TIMEOUT,
                        all_events: false,
                    }),
                ),
                RuntimeTarget::PagerDuty {
                    routing_key,
                    severity,
                    api_url,
                } => (
                    Platform::PagerDuty,
                    ChannelTarget::PagerDuty(PagerDutyTarget {
                        routing_key: Secret::new(routing_key.clone()),
                        api_url: api_url.clone(),
                        severity: herald_pagerduty::PagerDutySeverity::parse(severity)
                            .unwrap_or(herald_pagerduty::PagerDutySeverity::Error),
                        timeout: DEFAULT_WEBHOOK_TIMEOUT,
                    }),
                ),
            };
            out.channels.insert(
                channel.name.clone(),
                ChannelConfig {
                    name: channel.name.clone(),
                    platform,
                    target,
                    progress: false,
                    in_flight: InFlight::default(),
                    fallback: None,
                    notify_resolved: true,
                    mention_on_failure: Vec::new(),
                    thread: false,
                },
            );
        }
        out
    }
}
