//! Delivery contracts on herald's own side (SPEC §6.10): a notification
//! that a channel has not surfaced within `[contracts] surface_within` —
//! the platform is down, rate limits hold it back, herald lacks access —
//! or has failed for good, is also sent once to the channel's `fallback`,
//! marked as a fallback and naming the channel that missed. The miss is
//! journaled with the task (herald's `escalated` event to the fallback),
//! listed on `/v1/deliveries` and counted
//! (`herald_delivery_sla_missed_total{channel}`). A person hears about a
//! finished task even when their chat platform is down for an hour.
//!
//! What counts as a miss is decided here ([`miss_reason`]); the store finds
//! candidates through a due-index and records each miss once, with the
//! fallback receipt, in one transaction (so replicas and restarts agree).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tracing::{info, warn};

use crate::config::Config;
use crate::delivery::Wakers;
use crate::protocol::{FleetWorkerEvent, WorkerState};
use crate::store::{MayMiss, Miss, Store};

/// Where the seqs of journaled misses start (they count down from it by a
/// 39-bit hash of the receipt id, below every escalation seq).
pub const MISS_SEQ_BASE: i64 = -(1 << 41);

/// Most misses recorded per channel and look.
const BATCH: i64 = 200;

/// Why `receipt` missed its contract at `now`, or `None` if it has not
/// (yet): failed for good, or not surfaced within `surface_within`.
pub fn miss_reason(receipt: &MayMiss, surface_within: Option<Duration>, now: i64) -> Option<String> {
    if receipt.status == "failed" {
        return Some(match &receipt.last_error {
            Some(error) => format!("failed: {error}"),
            None => "failed".to_owned(),
        });
    }
    let within = surface_within?;
    let age = u64::try_from(now.saturating_sub(receipt.created_at)).unwrap_or(0);
    (Duration::from_millis(age) >= within).then(|| {
        let shown = Duration::from_secs(within.as_secs().max(1));
        format!("not surfaced within {}", humantime::format_duration(shown))
    })
}

/// The seq of the journaled miss of one receipt (the same whoever records it).
fn miss_seq(receipt_id: &str) -> i64 {
    crate::contracts::hashed_seq(MISS_SEQ_BASE, receipt_id)
}

/// Herald's journal entry for a miss: an `escalated` event naming the
/// fallback (`alert_id` = the receipt that missed), with the channel that
/// missed and why. Its condition is none the state machine knows, so it
/// never changes the task.
pub fn miss_event(receipt: &MayMiss, fallback: &str, reason: &str, now: DateTime<Utc>) -> FleetWorkerEvent {
    let mut extra = Map::new();
    extra.insert("source".to_owned(), Value::String("herald".to_owned()));
    extra.insert("condition".to_owned(), Value::String("missed".to_owned()));
    extra.insert(
        "missed_channel".to_owned(),
        Value::String(receipt.channel.clone()),
    );
    extra.insert("why".to_owned(), Value::String(reason.to_owned()));
    FleetWorkerEvent {
        seq: miss_seq(&receipt.id),
        run_id: receipt.run_id.clone(),
        worker_id: receipt.worker_id.clone(),
        task_id: receipt.task_id.clone(),
        timestamp: now,
        state: WorkerState::Escalated {
            channel: fallback.to_owned(),
            alert_id: Some(receipt.id.clone()),
        },
        extra: Some(extra),
        policy: None,
    }
}

/// One look: record every miss of every channel with a fallback, and wake
/// the fallbacks that got work.
pub async fn look(store: &Store, config: &Config, wakers: &Wakers) {
    let surface_within = config.contracts.surface_within;
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    let created_before =
        surface_within.map(|d| now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
    let mut woken: BTreeSet<String> = BTreeSet::new();
    for channel in config.channels.values() {
        let Some(fallback) = &channel.fallback else {
            continue;
        };
        let candidates = match store.may_miss(&channel.name, created_before, BATCH).await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, channel = %channel.name, "could not look for missed notifications; trying again");
                continue;
            }
        };
        for receipt in candidates {
            let Some(reason) = miss_reason(&receipt, surface_within, now_ms) else {
                continue;
            };
            let miss = Miss {
                receipt: receipt.id.clone(),
                channel: channel.name.clone(),
                fallback: fallback.clone(),
                journal: miss_event(&receipt, fallback, &reason, now),
                reason,
            };
            match store.record_miss(&miss, now_ms).await {
                Ok(true) => {
                    crate::metrics::sla_missed(&channel.name);
                    info!(channel = %channel.name, fallback = %fallback, receipt = %receipt.id,
                          reason = %miss.reason, "a notification missed its channel; sent to the fallback");
                    woken.insert(fallback.clone());
                }
                Ok(false) => {}
                Err(e) => {
                    warn!(error = %e, receipt = %receipt.id, "could not record a missed notification; trying again")
                }
            }
        }
    }
    wakers.wake_urgent(&woken);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(status: &str, created_at: i64, last_error: Option<&str>) -> MayMiss {
        MayMiss {
            id: "hr1".into(),
            channel: "ops".into(),
            status: status.into(),
            created_at,
            last_error: last_error.map(str::to_owned),
            run_id: "r".into(),
            worker_id: "w".into(),
            task_id: "t".into(),
        }
    }

    #[test]
    fn a_notification_misses_when_it_failed_or_waited_past_surface_within() {
        let five = Some(Duration::from_secs(300));
        assert_eq!(miss_reason(&receipt("pending", 0, None), five, 299_999), None);
        assert_eq!(
            miss_reason(&receipt("pending", 0, Some("HTTP 503")), five, 300_000).as_deref(),
            Some("not surfaced within 5m")
        );
        assert_eq!(
            miss_reason(&receipt("sending", 0, None), five, 400_000).as_deref(),
            Some("not surfaced within 5m")
        );
        assert_eq!(
            miss_reason(
                &receipt("failed", 0, Some("HTTP 410 channel_is_archived")),
                five,
                1
            )
            .as_deref(),
            Some("failed: HTTP 410 channel_is_archived")
        );
        // Without surface_within only permanent failures miss.
        assert_eq!(miss_reason(&receipt("pending", 0, None), None, i64::MAX), None);
        assert_eq!(
            miss_reason(&receipt("failed", 0, None), None, 1).as_deref(),
            Some("failed")
        );
    }

    #[test]
    fn the_journaled_miss_names_both_channels_and_is_the_same_whoever_makes_it() {
        let now = Utc::now();
        let a = miss_event(&receipt("failed", 0, None), "team", "failed", now);
        let b = miss_event(&receipt("failed", 0, None), "team", "failed", now);
        assert_eq!(a.seq, b.seq);
        assert!(a.seq < crate::contracts::ESCALATION_SEQ_BASE - (1 << 39));
        assert!(
            a.escalation_condition().is_none(),
            "never applied as an escalation"
        );
        let text = serde_json::to_value(&a).expect("json");
        assert_eq!(text["channel"], "team");
        assert_eq!(text["alert_id"], "hr1");
        assert_eq!(text["extra"]["missed_channel"], "ops");
        let back = crate::protocol::parse_stored_event(text).expect("herald's event reads back");
        assert_eq!(back, a);
    }
}
