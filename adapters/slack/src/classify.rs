//! slack-morphism errors → typed outcomes. Slack reports failures as
//! documented error codes (`{"ok": false, "error": "channel_not_found"}`,
//! often with HTTP 200); these codes are Slack's machine-readable API, and
//! this is the one place they are read.

use std::time::Duration;

use herald_messaging::{Call, NotSurfaced};
use slack_morphism::errors::SlackClientError;

/// Codes after which retrying cannot help.
const PERMANENT: &[&str] = &[
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "invalid_auth",
    "not_authed",
    "missing_scope",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "no_permission",
    "restricted_action",
    "ekm_access_denied",
    "invalid_blocks",
    "invalid_metadata_format",
    "msg_too_long",
    "no_text",
];

/// Codes Slack documents as passing.
const TRANSIENT: &[&str] = &[
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// On `chat.update`: the message is no longer there to edit.
const GONE_ON_EDIT: &[&str] = &["message_not_found", "cant_update_message", "edit_window_closed"];

/// On `chat.postMessage` with `thread_ts`: the parent is no longer there
/// (Slack mostly posts such a reply to the channel instead; where it
/// refuses, herald posts the parent anew and replies under it).
const GONE_ON_REPLY: &[&str] = &["thread_not_found"];

/// When Slack says `ratelimited` without a `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Slack limits `chat.update` and `conversations.history` per workspace,
/// `chat.postMessage` per channel: a 429 on the former holds every channel.
fn per_workspace(call: Call) -> bool {
    call != Call::Post
}

/// Classify one failed call.
pub fn classify(error: &SlackClientError, call: Call) -> NotSurfaced {
    match error {
        SlackClientError::RateLimitError(e) => NotSurfaced::RateLimited {
            retry_after: e.retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
            global: per_workspace(call),
        },
        SlackClientError::ApiError(e) => {
            let code = e.code.as_str();
            let reason = format!("Slack error {code}");
            if code == "ratelimited" {
                NotSurfaced::RateLimited {
                    retry_after: DEFAULT_RETRY_AFTER,
                    global: per_workspace(call),
                }
            } else if (call == Call::Edit && GONE_ON_EDIT.contains(&code))
                || (call == Call::Post && GONE_ON_REPLY.contains(&code))
            {
                NotSurfaced::Gone
            } else if TRANSIENT.contains(&code) {
                NotSurfaced::Transient { reason }
            } else if PERMANENT.contains(&code) {
                NotSurfaced::Permanent { reason }
            } else {
                // An undocumented code: the request itself is most likely
                // wrong, and a failed receipt stays listed and replayable.
                NotSurfaced::Permanent {
                    reason: format!("{reason} (not a known transient error)"),
                }
            }
        }
        SlackClientError::HttpError(e) => {
            let reason = format!("HTTP {}", e.status_code);
            if e.status_code.as_u16() == 429 {
                NotSurfaced::RateLimited {
                    retry_after: DEFAULT_RETRY_AFTER,
                    global: per_workspace(call),
                }
            } else if e.status_code.is_server_error() || e.status_code.as_u16() == 408 {
                NotSurfaced::Transient { reason }
            } else {
                NotSurfaced::Permanent { reason }
            }
        }
        SlackClientError::HttpProtocolError(e) => {
            let connect_failed = e
                .cause
                .as_ref()
                .and_then(|c| c.downcast_ref::<hyper_util::client::legacy::Error>())
                .is_some_and(hyper_util::client::legacy::Error::is_connect);
            let reason = error.to_string();
            if connect_failed {
                NotSurfaced::Transient { reason }
            } else {
                // The request may have reached Slack: reconcile first.
                NotSurfaced::Unverified { reason }
            }
        }
        other => NotSurfaced::Unverified {
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slack_morphism::errors::SlackClientApiError;

    fn api(code: &str) -> SlackClientError {
        SlackClientError::ApiError(SlackClientApiError::new(code.to_owned()))
    }

    #[test]
    fn a_reply_whose_parent_is_gone_posts_anew_and_other_refusals_stay_permanent() {
        assert_eq!(classify(&api("thread_not_found"), Call::Post), NotSurfaced::Gone);
        assert_eq!(classify(&api("message_not_found"), Call::Edit), NotSurfaced::Gone);
        // A look-up of a thread that is gone cannot be made: permanent,
        // so the core sends what it looked for again.
        assert!(matches!(
            classify(&api("thread_not_found"), Call::Lookup),
            NotSurfaced::Permanent { .. }
        ));
        assert!(matches!(
            classify(&api("channel_not_found"), Call::Post),
            NotSurfaced::Permanent { .. }
        ));
    }
}
