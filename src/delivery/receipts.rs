//! The retry policy, in one place, decided from typed outcomes only: for
//! terminal receipts (`decide`) and for progress messages
//! (`decide_progress`), which share the same reading of every outcome.

use std::time::Duration;

use herald_messaging::{DeliveryOutcome, NotSurfaced};
use rand::Rng;

use crate::config::DeliveryConfig;
use crate::store::{ProgressWrite, ReceiptUpdate};

/// The wait before attempt `attempts + 1`: the schedule's step for this
/// attempt (the last step repeats), with ±20 % jitter so that receipts failed
/// together do not retry in lockstep.
pub fn backoff(schedule: &[Duration], attempts: i64) -> Duration {
    let index = usize::try_from(attempts.max(1) - 1).unwrap_or(0);
    let base = schedule
        .get(index)
        .or(schedule.last())
        .copied()
        .unwrap_or(Duration::from_secs(5));
    let factor = rand::rng().random_range(0.8..=1.2);
    base.mul_f64(factor)
}

/// What an outcome that did not surface means, for receipts and progress
/// alike.
enum Next {
    /// Retrying cannot help.
    GiveUp,
    /// Try again after this long; `backoff` when waiting on the schedule
    /// because the platform failed.
    Wait { wait: Duration, backoff: bool },
    /// The addressed message no longer exists: post a new one.
    PostAnew,
}

fn next(reason: &NotSurfaced, attempts: i64, config: &DeliveryConfig) -> Next {
    match reason {
        NotSurfaced::Permanent { .. } | NotSurfaced::Unsupported => Next::GiveUp,
        NotSurfaced::RateLimited { retry_after, .. } => Next::Wait {
            wait: *retry_after,
            backoff: false,
        },
        NotSurfaced::Moved { .. } => Next::Wait {
            wait: Duration::ZERO,
            backoff: false,
        },
        NotSurfaced::Gone => Next::PostAnew,
        NotSurfaced::Transient { .. } | NotSurfaced::Unverified { .. } => Next::Wait {
            wait: backoff(&config.retry_schedule, attempts),
            backoff: true,
        },
    }
}

fn at(now_ms: i64, wait: Duration) -> i64 {
    now_ms + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2)
}

/// Decide what to record after an attempt.
///
/// * `Surfaced` → surfaced.
/// * `RateLimited` → retry after the platform's retry-after.
/// * `Transient`, `Unverified` → next schedule step (`Unverified` marks
///   the receipt so the next attempt reconciles first).
/// * `Moved`, `Gone` (a reply's parent or thread was deleted) → again now.
/// * `Permanent`, `Unsupported` → failed now.
/// * Anything not surfaced once the receipt is older than `max_age` → failed.
pub fn decide(
    outcome: &DeliveryOutcome,
    attempts: i64,
    created_at_ms: i64,
    now_ms: i64,
    config: &DeliveryConfig,
) -> ReceiptUpdate {
    let reason = match outcome {
        DeliveryOutcome::Surfaced(handle) => {
            return ReceiptUpdate::Surfaced {
                message_id: handle.0.clone(),
            };
        }
        DeliveryOutcome::NotSurfaced(reason) => reason,
    };
    let (wait, backoff_wait) = match next(reason, attempts, config) {
        Next::GiveUp => {
            return ReceiptUpdate::Failed {
                error: reason.to_string(),
            };
        }
        Next::Wait { wait, backoff } => (wait, backoff),
        // A reply whose parent (or its thread) is gone: at once, under the
        // live message posted anew (or into a new thread).
        Next::PostAnew => (Duration::ZERO, false),
    };
    let at = at(now_ms, wait);
    let max_age_ms = i64::try_from(config.max_age.as_millis()).unwrap_or(i64::MAX / 2);
    if at - created_at_ms > max_age_ms {
        return ReceiptUpdate::Failed {
            error: format!(
                "not surfaced within max_age ({}) after {attempts} attempt(s); last: {reason}",
                humantime::format_duration(config.max_age)
            ),
        };
    }
    ReceiptUpdate::Retry {
        at,
        error: reason.to_string(),
        unverified: matches!(reason, NotSurfaced::Unverified { .. }),
        backoff: backoff_wait,
    }
}

/// Whether an edit of a surfaced notification (its task was acknowledged)
/// is settled: it showed, or nothing more can be shown there.
pub fn notification_edit_settled(outcome: &DeliveryOutcome) -> bool {
    match outcome {
        DeliveryOutcome::Surfaced(_) => true,
        DeliveryOutcome::NotSurfaced(reason) => refused_for_good(reason),
    }
}

/// Whether a call the platform did not take can never be (the message is
/// gone or moved, the platform refuses it for good or cannot do it), so
/// trying it again is pointless; else (rate limited, failing, unknown) it
/// is tried again later. Decides for notification edits and bot answers.
pub fn refused_for_good(reason: &NotSurfaced) -> bool {
    match reason {
        NotSurfaced::Gone
        | NotSurfaced::Moved { .. }
        | NotSurfaced::Permanent { .. }
        | NotSurfaced::Unsupported => true,
        NotSurfaced::RateLimited { .. } | NotSurfaced::Transient { .. } | NotSurfaced::Unverified { .. } => {
            false
        }
    }
}

/// Decide what to record after sending a progress rendering of `version`
/// that had failed `failures` times in a row before. Coalescing makes a
/// progress message's retries cheap: whatever is newest then is sent.
///
/// * `Surfaced` → shown (the caller records the handle).
/// * `Gone`, `Moved` → forget the message; the next round posts anew.
/// * `RateLimited` → not before the retry-after.
/// * `Transient`, `Unverified` → next schedule step (a post whose outcome
///   is unknown stays marked started: the next attempt reconciles first).
/// * `Permanent`, `Unsupported` → abandon this version.
pub fn decide_progress(
    outcome: &DeliveryOutcome,
    version: i64,
    failures: i64,
    now_ms: i64,
    config: &DeliveryConfig,
) -> ProgressWrite {
    let reason = match outcome {
        DeliveryOutcome::Surfaced(handle) => {
            return ProgressWrite::Shown {
                message_id: handle.0.clone(),
                version,
                text_hash: None,
            };
        }
        DeliveryOutcome::NotSurfaced(reason) => reason,
    };
    if matches!(reason, NotSurfaced::Moved { .. }) {
        // A message in a chat that moved cannot be edited in its new home.
        return ProgressWrite::Gone;
    }
    match next(reason, failures + 1, config) {
        Next::GiveUp => ProgressWrite::Abandon { version },
        Next::PostAnew => ProgressWrite::Gone,
        Next::Wait { wait, .. } => ProgressWrite::Retry { at: at(now_ms, wait) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_messaging::MessageHandle;

    fn cfg() -> DeliveryConfig {
        DeliveryConfig {
            retry_schedule: vec![Duration::from_secs(1), Duration::from_secs(5)],
            max_age: Duration::from_secs(60),
            progress_min_interval: Duration::from_secs(2),
        }
    }

    #[test]
    fn an_acknowledged_notification_edit_is_retried_only_while_it_may_still_show() {
        let not = DeliveryOutcome::NotSurfaced;
        assert!(notification_edit_settled(&DeliveryOutcome::Surfaced(
            MessageHandle("m".into())
        )));
        assert!(notification_edit_settled(&not(NotSurfaced::Gone)));
        assert!(notification_edit_settled(&not(NotSurfaced::Permanent {
            reason: "missing access".into()
        })));
        assert!(!notification_edit_settled(&not(NotSurfaced::RateLimited {
            retry_after: Duration::from_secs(1),
            global: false,
        })));
        assert!(!notification_edit_settled(&not(NotSurfaced::Transient {
            reason: "502".into()
        })));
    }

    #[test]
    fn surfaced_is_recorded() {
        let out = DeliveryOutcome::Surfaced(MessageHandle("m1".into()));
        assert_eq!(
            decide(&out, 1, 0, 0, &cfg()),
            ReceiptUpdate::Surfaced {
                message_id: "m1".into()
            }
        );
    }

    #[test]
    fn rate_limit_honours_retry_after() {
        let out = DeliveryOutcome::NotSurfaced(NotSurfaced::RateLimited {
            retry_after: Duration::from_millis(7500),
            global: false,
        });
        match decide(&out, 1, 0, 1000, &cfg()) {
            ReceiptUpdate::Retry { at, unverified, .. } => {
                assert_eq!(at, 8500);
                assert!(!unverified);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn transient_follows_schedule_with_jitter_and_last_step_repeats() {
        let out = DeliveryOutcome::NotSurfaced(NotSurfaced::Transient { reason: "503".into() });
        for attempts in [2, 3, 9] {
            match decide(&out, attempts, 0, 0, &cfg()) {
                ReceiptUpdate::Retry { at, .. } => assert!((4000..=6000).contains(&at), "{at}"),
                other => panic!("{other:?}"),
            }
        }
        match decide(&out, 1, 0, 0, &cfg()) {
            ReceiptUpdate::Retry { at, .. } => assert!((800..=1200).contains(&at), "{at}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn progress_shares_the_reading_of_every_outcome() {
        let c = cfg();
        let transient = DeliveryOutcome::NotSurfaced(NotSurfaced::Transient { reason: "503".into() });
        match decide_progress(&transient, 3, 0, 1000, &c) {
            ProgressWrite::Retry { at } => assert!((1800..=2200).contains(&at), "{at}"),
            other => panic!("{other:?}"),
        }
        match decide_progress(&transient, 3, 4, 1000, &c) {
            ProgressWrite::Retry { at } => assert!((5000..=7000).contains(&at), "{at}"),
            other => panic!("{other:?}"),
        }
        let limited = DeliveryOutcome::NotSurfaced(NotSurfaced::RateLimited {
            retry_after: Duration::from_secs(9),
            global: true,
        });
        assert!(matches!(
            decide_progress(&limited, 3, 0, 1000, &c),
            ProgressWrite::Retry { at: 10_000 }
        ));
        let gone = DeliveryOutcome::NotSurfaced(NotSurfaced::Gone);
        assert!(matches!(decide_progress(&gone, 3, 0, 0, &c), ProgressWrite::Gone));
        let moved = DeliveryOutcome::NotSurfaced(NotSurfaced::Moved {
            to: herald_messaging::ChannelRef::new("-100"),
        });
        assert!(matches!(
            decide_progress(&moved, 3, 0, 0, &c),
            ProgressWrite::Gone
        ));
        let permanent = DeliveryOutcome::NotSurfaced(NotSurfaced::Permanent { reason: "403".into() });
        assert!(matches!(
            decide_progress(&permanent, 3, 0, 0, &c),
            ProgressWrite::Abandon { version: 3 }
        ));
    }

    #[test]
    fn only_platform_failures_wait_on_backoff() {
        let c = cfg();
        let transient = DeliveryOutcome::NotSurfaced(NotSurfaced::Transient { reason: "503".into() });
        assert!(matches!(
            decide(&transient, 1, 0, 0, &c),
            ReceiptUpdate::Retry { backoff: true, .. }
        ));
        let limited = DeliveryOutcome::NotSurfaced(NotSurfaced::RateLimited {
            retry_after: Duration::from_secs(1),
            global: false,
        });
        assert!(matches!(
            decide(&limited, 1, 0, 0, &c),
            ReceiptUpdate::Retry { backoff: false, .. }
        ));
    }

    #[test]
    fn unverified_is_marked_for_reconciliation() {
        let out = DeliveryOutcome::NotSurfaced(NotSurfaced::Unverified {
            reason: "timeout".into(),
        });
        assert!(matches!(
            decide(&out, 1, 0, 0, &cfg()),
            ReceiptUpdate::Retry { unverified: true, .. }
        ));
    }

    #[test]
    fn permanent_fails_at_once_and_max_age_fails() {
        let out = DeliveryOutcome::NotSurfaced(NotSurfaced::Permanent {
            reason: "unknown channel".into(),
        });
        assert!(matches!(
            decide(&out, 1, 0, 0, &cfg()),
            ReceiptUpdate::Failed { .. }
        ));
        let out = DeliveryOutcome::NotSurfaced(NotSurfaced::Transient { reason: "503".into() });
        match decide(&out, 5, 0, 59_000, &cfg()) {
            ReceiptUpdate::Failed { error } => assert!(error.contains("max_age"), "{error}"),
            other => panic!("{other:?}"),
        }
    }
}
