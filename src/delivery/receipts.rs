//! The retry policy for terminal receipts, in one place, decided from typed
//! outcomes only (ARCHITECTURE: "retry policy lives in one place").

use std::time::Duration;

use herald_messaging::{DeliveryOutcome, NotSurfaced};
use rand::Rng;

use crate::config::DeliveryConfig;
use crate::store::ReceiptUpdate;

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

/// Decide what to record after an attempt.
///
/// * `Surfaced` → surfaced.
/// * `RateLimited` → retry after the platform's retry-after.
/// * `Transient`, `Unverified`, `Gone`, `Moved` → next schedule step
///   (`Unverified` marks the receipt so the next attempt reconciles first).
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
    let wait = match reason {
        NotSurfaced::Permanent { .. } | NotSurfaced::Unsupported => {
            return ReceiptUpdate::Failed {
                error: reason.to_string(),
            };
        }
        NotSurfaced::RateLimited { retry_after, .. } => *retry_after,
        NotSurfaced::Moved { .. } => Duration::ZERO,
        NotSurfaced::Transient { .. } | NotSurfaced::Unverified { .. } | NotSurfaced::Gone => {
            backoff(&config.retry_schedule, attempts)
        }
    };
    let at = now_ms + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
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
