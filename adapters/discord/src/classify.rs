//! Discord answers → typed outcomes, by HTTP status and Discord's JSON
//! error `code`, never by message text.

use std::time::Duration;

use herald_messaging::{Call, DeliveryOutcome, MessageHandle, NotSurfaced};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serenity::model::channel::Message;

/// Discord's error body: `{"code": 10003, "message": "Unknown Channel", ...}`.
#[derive(Debug, Deserialize)]
pub struct ApiError {
    /// Discord's JSON error code (0 for some generic errors).
    #[serde(default)]
    pub code: i64,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
}

/// A 429 body: `{"message", "retry_after": seconds (float), "global"}`.
#[derive(Debug, Deserialize)]
struct RateLimitBody {
    retry_after: Option<f64>,
    #[serde(default)]
    global: bool,
}

/// The outcome plus what the rate-limit headers said about the bucket.
#[derive(Debug)]
pub struct Answer {
    /// Surfaced or not, and why.
    pub outcome: DeliveryOutcome,
    /// `Some(wait)` when `X-RateLimit-Remaining: 0`: the bucket refills
    /// after `wait` (`X-RateLimit-Reset-After`).
    pub exhausted_for: Option<Duration>,
}

/// `Unknown Message`: on an edit, the message was deleted.
const UNKNOWN_MESSAGE: i64 = 10008;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.max(0.0)).unwrap_or(Duration::from_secs(60))
}

/// Classify one HTTP answer to a create (`Call::Post`) or edit.
pub fn classify(status: u16, headers: &HeaderMap, body: &[u8], call: Call) -> Answer {
    let exhausted_for = match (
        header(headers, "x-ratelimit-remaining").and_then(|v| v.parse::<u64>().ok()),
        header(headers, "x-ratelimit-reset-after").and_then(|v| v.parse::<f64>().ok()),
    ) {
        (Some(0), Some(after)) => Some(seconds(after)),
        _ => None,
    };
    let outcome = match status {
        200..=299 => match serde_json::from_slice::<Message>(body) {
            Ok(message) => DeliveryOutcome::Surfaced(MessageHandle(message.id.to_string())),
            // Discord said yes but the answer is unreadable: the message may
            // exist; the resend's nonce settles it.
            Err(e) => DeliveryOutcome::NotSurfaced(NotSurfaced::Unverified {
                reason: format!("unreadable success answer: {e}"),
            }),
        },
        429 => {
            let parsed: Option<RateLimitBody> = serde_json::from_slice(body).ok();
            let retry_after = parsed
                .as_ref()
                .and_then(|b| b.retry_after)
                .map(seconds)
                .or_else(|| {
                    header(headers, "retry-after")
                        .and_then(|v| v.parse::<f64>().ok())
                        .map(seconds)
                })
                .unwrap_or(Duration::from_secs(1));
            let global = parsed.is_some_and(|b| b.global)
                || header(headers, "x-ratelimit-global").is_some_and(|v| v.eq_ignore_ascii_case("true"));
            DeliveryOutcome::NotSurfaced(NotSurfaced::RateLimited { retry_after, global })
        }
        _ => {
            let error: Option<ApiError> = serde_json::from_slice(body).ok();
            let code = error.as_ref().map_or(0, |e| e.code);
            let reason = match &error {
                Some(e) => format!("HTTP {status}, Discord code {}: {}", e.code, e.message),
                None => format!("HTTP {status}"),
            };
            let reason_kind = match (status, code) {
                (404, UNKNOWN_MESSAGE) if call == Call::Edit => NotSurfaced::Gone,
                (401, _) => NotSurfaced::Permanent {
                    reason: format!("bad bot token ({reason})"),
                },
                // 50001 Missing Access, 50013 Missing Permissions, 10003
                // Unknown Channel, 50035 Invalid Form Body: no retry helps.
                (400..=499, _) => NotSurfaced::Permanent { reason },
                _ => NotSurfaced::Transient { reason },
            };
            DeliveryOutcome::NotSurfaced(reason_kind)
        }
    };
    Answer {
        outcome,
        exhausted_for,
    }
}
