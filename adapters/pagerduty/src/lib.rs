//! PagerDuty as a herald [`Messaging`] adapter, through the Events API v2
//! (`POST {api_url}/v2/enqueue`). PagerDuty pages people; it has no
//! messages to edit. A notification about a task that failed or needs
//! attention is a `trigger`; one about a task that ended well (or was
//! cancelled) is a `resolve`. Both carry a `dedup_key` stable for the task,
//! so a retried trigger updates the same alert instead of paging twice,
//! and the resolve closes it.

mod event;

use std::time::Duration;

use async_trait::async_trait;
use herald_messaging::{
    Budget, ChannelRef, DeliveryOutcome, Limits, MessageHandle, Messaging, NotSurfaced, Outbound, Platform,
    Rate, Reconciliation, WRITES,
};

pub use event::{Action, EnqueueEvent, PagerDutySeverity, action_for, dedup_key, event_for};

/// Events per minute PagerDuty takes for one routing key (its support's
/// figure for the Events API; it says it throttles dynamically beyond).
pub const EVENTS_PER_MINUTE: u32 = 120;

/// How long to hold the channel after a 429 that names no wait: PagerDuty
/// documents "retry after some time", with no header.
pub const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(30);

/// Why the adapter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PagerDutyError {
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// One PagerDuty service integration: its routing key and the severity its
/// triggers carry.
pub struct PagerDutyChannel {
    client: reqwest::Client,
    endpoint: String,
    routing_key: String,
    severity: PagerDutySeverity,
}

impl PagerDutyChannel {
    /// Set up an integration. `api_url` is `https://events.pagerduty.com`
    /// (or a regional one, a proxy, an emulator).
    pub fn new(
        api_url: &str,
        routing_key: &str,
        severity: PagerDutySeverity,
        timeout: Duration,
    ) -> Result<PagerDutyChannel, PagerDutyError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(PagerDutyChannel {
            client,
            endpoint: format!("{}/v2/enqueue", api_url.trim_end_matches('/')),
            routing_key: routing_key.to_owned(),
            severity,
        })
    }
}

/// An answer as an outcome (the Events API's own table: 202 accepted, 400
/// never retried, 429 retried after some time, 5xx retried).
async fn classify(response: reqwest::Response, dedup_key: &str) -> DeliveryOutcome {
    let status = response.status().as_u16();
    if status == 202 || response.status().is_success() {
        return DeliveryOutcome::Surfaced(MessageHandle(dedup_key.to_owned()));
    }
    let wait = herald_messaging::http::retry_after(&response);
    let reason = herald_messaging::http::status_reason(response).await;
    // PagerDuty's 429 names no wait; hold the channel all the same.
    let wait = (status == 429).then(|| wait.unwrap_or(DEFAULT_RATE_LIMIT_WAIT));
    // Other 4xx: the event is invalid (a bad routing key among them), or
    // the URL or the integration is wrong; retrying cannot help.
    DeliveryOutcome::NotSurfaced(herald_messaging::http::status_outcome(status, wait, reason))
}

#[async_trait]
impl Messaging for PagerDutyChannel {
    fn platform(&self) -> Platform {
        Platform::PagerDuty
    }

    /// One routing key takes about 120 events a minute; kept across
    /// restarts like every limit a platform enforces.
    fn limits(&self) -> Limits {
        Limits {
            max_text_chars: event::SUMMARY_CHARS,
            budgets: vec![Budget::channel(
                WRITES,
                Rate::new(EVENTS_PER_MINUTE, Duration::from_secs(60)),
            )],
            enforced_by_platform: true,
        }
    }

    /// A trigger or a resolve for the message's task.
    async fn post(&self, _to: &ChannelRef, msg: &Outbound) -> DeliveryOutcome {
        let event = event_for(msg, &self.routing_key, self.severity);
        let dedup_key = event.dedup_key.clone();
        match self.client.post(&self.endpoint).json(&event).send().await {
            Ok(response) => classify(response, &dedup_key).await,
            Err(e) => herald_messaging::http::no_answer(e),
        }
    }

    /// PagerDuty has no messages to edit.
    async fn edit(
        &self,
        _to: &ChannelRef,
        _at: &herald_messaging::MessageHandle,
        _msg: &Outbound,
    ) -> DeliveryOutcome {
        DeliveryOutcome::NotSurfaced(NotSurfaced::Unsupported)
    }

    /// A trigger and the resolve that follows it must arrive in order.
    fn accepts_concurrent_posts(&self, _to: &ChannelRef) -> bool {
        false
    }

    /// PagerDuty cannot be asked what it got, but it needs not be: a
    /// resent trigger with the same `dedup_key` updates the same alert, and
    /// a resend of a resolve changes nothing.
    fn reconciliation(&self, _to: &ChannelRef) -> Reconciliation {
        Reconciliation::Resend
    }
}
