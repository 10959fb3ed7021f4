//! For adapters that speak HTTP through reqwest: what a request that got
//! no answer means, described without its URL. A URL can carry secrets (a
//! Telegram bot token in the path, a webhook key in the query, userinfo),
//! and reqwest's error text includes it; the reason names the host only.

use crate::{DeliveryOutcome, NotSurfaced, error_chain};

/// The error's sources on one line, naming the host but never the URL.
pub fn reason(e: reqwest::Error) -> String {
    let host = e.url().and_then(|u| u.host_str()).map(str::to_owned);
    let e = e.without_url();
    match host {
        Some(host) => format!("{host}: {}", error_chain(&e)),
        None => error_chain(&e),
    }
}

/// A request that got no HTTP answer. A failed connection never reached
/// the platform (transient); after that the request may have been applied
/// (unverified: reconcile before resending).
pub fn no_answer(e: reqwest::Error) -> DeliveryOutcome {
    let connect_failed = e.is_connect();
    let reason = reason(e);
    DeliveryOutcome::NotSurfaced(if connect_failed {
        NotSurfaced::Transient { reason }
    } else {
        NotSurfaced::Unverified { reason }
    })
}

/// How much of an error answer's body a reason keeps.
const ERROR_BODY_CHARS: usize = 200;

/// A `Retry-After` header given in seconds, if the answer has one.
pub fn retry_after(response: &reqwest::Response) -> Option<std::time::Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(std::time::Duration::from_secs)
}

/// `HTTP <status>: <the start of the body>`, to explain an error answer in
/// a receipt (the status decides the outcome; the body only explains it).
pub async fn status_reason(response: reqwest::Response) -> String {
    let status = response.status();
    let text = match response.text().await {
        Ok(text) => text,
        Err(e) => format!("(body unreadable: {})", error_chain(&e.without_url())),
    };
    let snippet: String = text.trim().chars().take(ERROR_BODY_CHARS).collect();
    if snippet.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {snippet}")
    }
}

/// The outcome of an HTTP error answer, by the rules every HTTP adapter
/// shares unless its platform says otherwise: `429` waits its
/// `Retry-After` (without one it is a passing fault), `408` and `5xx` are
/// passing faults, any other `4xx` is permanent (retrying the same request
/// cannot help). `reason` explains it in the receipt.
pub fn status_outcome(status: u16, retry_after: Option<std::time::Duration>, reason: String) -> NotSurfaced {
    match status {
        429 => match retry_after {
            Some(retry_after) => NotSurfaced::RateLimited {
                retry_after,
                global: false,
            },
            None => NotSurfaced::Transient { reason },
        },
        408 => NotSurfaced::Transient { reason },
        400..=499 => NotSurfaced::Permanent { reason },
        _ => NotSurfaced::Transient { reason },
    }
}
