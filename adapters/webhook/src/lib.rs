//! Signed outgoing webhooks as a herald [`Messaging`] adapter, following
//! Standard Webhooks: every request carries `webhook-id` (stable across
//! retries, so receivers can dedupe), `webhook-timestamp` (integer seconds
//! of this attempt) and `webhook-signature: v1,<base64 HMAC-SHA256(key,
//! "id.timestamp.body")>`, with the key from a `whsec_<base64>` secret.
//!
//! The body is a stable JSON document (see `docs/webhooks.md`), sent
//! byte-for-byte as signed.

mod body;
mod signing;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use herald_messaging::{
    Budget, ChannelRef, DeliveryOutcome, Limits, MessageHandle, Messaging, NotSurfaced, Outbound, Platform,
    Rate, Reconciliation, WRITES,
};
use rand::Rng;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

pub use body::{WEBHOOK_VERSION, document};
pub use signing::{SecretError, SigningKey};

/// Why a webhook channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The secret is not `whsec_<base64>`.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A configured header is not a valid HTTP header.
    #[error("invalid header {name:?}: {reason}")]
    Header {
        /// The header name as configured.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The URL does not parse (the reason only: a URL may carry a token).
    #[error("invalid webhook URL: {reason}")]
    Url {
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// One webhook endpoint: its URL, signing key, extra headers and timeout.
pub struct WebhookChannel {
    client: reqwest::Client,
    /// Parsed once: parsing (with IDNA) on every request was 1–2 % of
    /// herald's CPU in a webhook burst.
    url: reqwest::Url,
    key: SigningKey,
    headers: HeaderMap,
}

impl WebhookChannel {
    /// Set up an endpoint. `secret` is `whsec_<base64>`.
    pub fn new(
        url: &str,
        secret: &str,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<WebhookChannel, WebhookError> {
        let key = SigningKey::from_secret(secret)?;
        let url = reqwest::Url::parse(url).map_err(|e| WebhookError::Url {
            reason: e.to_string(),
        })?;
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| WebhookError::Header {
                name: name.clone(),
                reason: e.to_string(),
            })?;
            let header_value = HeaderValue::from_str(value).map_err(|e| WebhookError::Header {
                name: name.clone(),
                reason: e.to_string(),
            })?;
            map.insert(header_name, header_value);
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebhookChannel {
            client,
            url,
            key,
            headers: map,
        })
    }

    /// Send one signed delivery with id `id`.
    async fn deliver(&self, id: &str, msg: &Outbound) -> DeliveryOutcome {
        let body = match body::document(id, msg) {
            Ok(b) => b,
            Err(e) => {
                return DeliveryOutcome::NotSurfaced(NotSurfaced::Permanent {
                    reason: format!("could not encode the webhook body: {e}"),
                });
            }
        };
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let signature = self.key.sign(id, timestamp, &body);
        let request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body);
        match request.send().await {
            Ok(response) => classify(response, id).await,
            Err(e) => classify_error(e),
        }
    }
}

/// Turn an HTTP answer into an outcome (SPEC §7: 2xx surfaced, 410
/// permanent, 429 with Retry-After, other 4xx permanent, 408 and 5xx
/// retried).
async fn classify(response: reqwest::Response, id: &str) -> DeliveryOutcome {
    let status = response.status();
    if status.is_success() {
        return DeliveryOutcome::Surfaced(MessageHandle(id.to_owned()));
    }
    let retry_after = herald_messaging::http::retry_after(&response);
    let reason = herald_messaging::http::status_reason(response).await;
    let code = status.as_u16();
    let outcome = match code {
        410 => NotSurfaced::Permanent {
            reason: format!("endpoint gone ({reason})"),
        },
        _ => herald_messaging::http::status_outcome(code, retry_after, reason),
    };
    DeliveryOutcome::NotSurfaced(outcome)
}

/// A request that got no HTTP answer. A failed connection never reached
/// the receiver (transient); a timeout after connecting may have been
/// processed (unverified: the resend carries the same `webhook-id`).
fn classify_error(e: reqwest::Error) -> DeliveryOutcome {
    let (connect, maybe_sent) = (e.is_connect(), e.is_timeout() || e.is_request() || e.is_body());
    let reason = herald_messaging::http::reason(e);
    let outcome = if connect {
        NotSurfaced::Transient { reason }
    } else if maybe_sent {
        NotSurfaced::Unverified { reason }
    } else {
        NotSurfaced::Transient { reason }
    };
    DeliveryOutcome::NotSurfaced(outcome)
}

#[async_trait]
impl Messaging for WebhookChannel {
    fn platform(&self) -> Platform {
        Platform::Webhook
    }

    /// Receivers publish no limits. The core keeps as many deliveries in
    /// flight as the receiver's round trips and back-pressure allow; this
    /// ceiling (50,000/s, counted over 10 ms so the window stays small)
    /// only stops a runaway loop, and is what a 429's Retry-After holds.
    fn limits(&self) -> Limits {
        Limits {
            max_text_chars: 64 * 1024,
            budgets: vec![Budget::channel(WRITES, Rate::new(500, Duration::from_millis(10)))],
            enforced_by_platform: false,
        }
    }

    /// A delivery whose `webhook-id` is the message's idempotency key (the
    /// receipt id), or a fresh id when it has none.
    async fn post(&self, _to: &ChannelRef, msg: &Outbound) -> DeliveryOutcome {
        let id = match &msg.idempotency_key {
            Some(key) => key.0.clone(),
            None => fresh_id(),
        };
        self.deliver(&id, msg).await
    }

    /// Webhooks cannot edit: a new state is a new delivery (`events =
    /// "all"` channels), with its own id.
    async fn edit(&self, _to: &ChannelRef, _at: &MessageHandle, msg: &Outbound) -> DeliveryOutcome {
        self.deliver(&fresh_id(), msg).await
    }

    /// Receivers take deliveries concurrently; order across deliveries is
    /// not promised (receivers order by `occurred_at`).
    fn accepts_concurrent_posts(&self, _to: &ChannelRef) -> bool {
        true
    }

    /// A receiver cannot be asked what it got; it dedupes on `webhook-id`
    /// instead, so resending is safe.
    fn reconciliation(&self, _to: &ChannelRef) -> Reconciliation {
        Reconciliation::Resend
    }
}

fn fresh_id() -> String {
    let bits: u128 = rand::rng().random::<u128>() >> 48;
    format!("hw{bits:020x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn a_url_that_does_not_parse_is_refused_without_showing_it() {
        let refused = WebhookChannel::new("hooks/token-s3cr3t", SECRET, &[], Duration::from_secs(1));
        let Err(e) = refused else {
            panic!("a relative URL was taken");
        };
        assert!(matches!(e, WebhookError::Url { .. }), "{e}");
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        assert!(WebhookChannel::new("http://127.0.0.1:9/hook", SECRET, &[], Duration::from_secs(1)).is_ok());
    }
}
