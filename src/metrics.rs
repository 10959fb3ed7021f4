//! Prometheus metrics (SPEC §8). Names live here so every counter is
//! declared once and described for `/metrics` readers.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Events newly journaled.
pub const EVENTS_INGESTED: &str = "herald_events_ingested_total";
/// Events already known.
pub const EVENTS_DUPLICATE: &str = "herald_events_duplicate_total";
/// Requests rejected, by reason.
pub const EVENTS_REJECTED: &str = "herald_events_rejected_total";
/// Adapter calls, by adapter, kind and outcome.
pub const DELIVERIES: &str = "herald_deliveries_total";
/// Event accepted → terminal notification surfaced.
pub const DELIVERY_LATENCY: &str = "herald_delivery_latency_seconds";
/// Receipts by status.
pub const RECEIPTS: &str = "herald_receipts";
/// 429s and equivalents, by adapter.
pub const RATE_LIMITED: &str = "herald_rate_limited_total";
/// 1 when the last config reload succeeded.
pub const CONFIG_RELOAD_OK: &str = "herald_config_last_reload_successful";
/// Age of the stalest progress message's pending update.
pub const PROGRESS_STALENESS: &str = "herald_progress_staleness_seconds";
/// New tasks no route matched.
pub const UNROUTED: &str = "herald_tasks_unrouted_total";
/// Unverified messages sent again because the platform could not be asked.
pub const RECONCILE_FALLBACKS: &str = "herald_reconcile_fallbacks_total";
/// Receipts pulled forward when a failing platform answered again.
pub const PULLED_FORWARD: &str = "herald_receipts_pulled_forward_total";
/// Late outcomes not recorded because a newer attempt owns the receipt.
pub const LATE_OUTCOMES: &str = "herald_late_outcomes_total";
/// Channel leases held, by replica.
pub const CHANNEL_LEASES: &str = "herald_channel_leases";
/// Inbound requests refused, by platform and reason.
pub const INBOUND_REJECTED: &str = "herald_inbound_rejected_total";
/// Events whose own alert policy was ignored.
pub const EVENT_POLICIES_IGNORED: &str = "herald_event_policies_ignored_total";
/// Notifications that missed their delivery contract, by channel.
pub const SLA_MISSED: &str = "herald_delivery_sla_missed_total";
/// Rows deleted past retention, by kind.
pub const RETENTION_DELETED: &str = "herald_retention_deleted_total";

/// Install the process-wide recorder and describe every metric.
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(DELIVERY_LATENCY.to_owned()),
            &[
                0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0,
            ],
        )?
        .install_recorder()?;
    describe_counter!(EVENTS_INGESTED, "Events newly journaled.");
    describe_counter!(
        EVENTS_DUPLICATE,
        "Events ignored as repeats of a known (run, worker, task, seq)."
    );
    describe_counter!(EVENTS_REJECTED, "Ingest requests rejected, by reason.");
    describe_counter!(
        DELIVERIES,
        "Adapter calls by adapter, kind (progress|terminal) and outcome."
    );
    describe_histogram!(
        DELIVERY_LATENCY,
        "Seconds from event accepted to terminal notification surfaced."
    );
    describe_gauge!(RECEIPTS, "Delivery receipts by status.");
    describe_gauge!(
        CHANNEL_LEASES,
        "Channel leases held, by replica (live replicas only)."
    );
    describe_counter!(RATE_LIMITED, "Rate-limited answers from a platform, by adapter.");
    describe_gauge!(
        CONFIG_RELOAD_OK,
        "1 if the last config (re)load succeeded, else 0."
    );
    describe_counter!(UNROUTED, "New worker tasks that no route matched.");
    describe_counter!(
        RECONCILE_FALLBACKS,
        "Unverified messages sent again without a check because the platform could not be asked, by adapter."
    );
    describe_counter!(
        PULLED_FORWARD,
        "Receipts pulled forward from backoff when a failing platform answered again, by adapter."
    );
    describe_counter!(
        LATE_OUTCOMES,
        "Outcomes not recorded because the receipt's lease had passed to a newer attempt."
    );
    describe_counter!(
        INBOUND_REJECTED,
        "Inbound bot requests refused (unverified, stale, malformed, not configured), by platform and reason."
    );
    describe_counter!(
        EVENT_POLICIES_IGNORED,
        "Events whose own extra.alert_policy herald ignored (escalation is what [[escalations]] configures)."
    );
    describe_counter!(
        RETENTION_DELETED,
        "Rows deleted past [store] retention, by kind (tasks, events, receipts, web_messages)."
    );
    describe_counter!(
        SLA_MISSED,
        "Notifications not surfaced within [contracts] surface_within, or failed for good, on a channel with a fallback (each sent there once), by channel."
    );
    describe_gauge!(
        PROGRESS_STALENESS,
        "Seconds the stalest progress message has waited for its update (0 when all are current)."
    );
    gauge!(CONFIG_RELOAD_OK).set(1.0);
    Ok(handle)
}

/// Count an inbound request refused.
pub fn inbound_rejected(platform: &'static str, reason: &'static str) {
    counter!(INBOUND_REJECTED, "platform" => platform, "reason" => reason).increment(1);
}

/// Count events whose own alert policy was ignored.
pub fn event_policies_ignored(count: usize) {
    counter!(EVENT_POLICIES_IGNORED).increment(count as u64);
}

/// Count rows deleted past retention.
pub fn retention_deleted(kind: &'static str, rows: u64) {
    if rows > 0 {
        counter!(RETENTION_DELETED, "kind" => kind).increment(rows);
    }
}

/// Count a notification that missed its delivery contract on `channel`.
pub fn sla_missed(channel: &str) {
    counter!(SLA_MISSED, "channel" => channel.to_owned()).increment(1);
}

/// Count an ingest commit.
pub fn ingested(accepted: usize, duplicates: usize, unrouted: usize) {
    counter!(EVENTS_INGESTED).increment(accepted as u64);
    counter!(EVENTS_DUPLICATE).increment(duplicates as u64);
    counter!(UNROUTED).increment(unrouted as u64);
}

/// Count a rejected request.
pub fn rejected(reason: &'static str) {
    counter!(EVENTS_REJECTED, "reason" => reason).increment(1);
}

/// Count one adapter call's outcome.
pub fn delivery(adapter: &'static str, kind: &'static str, outcome: &'static str) {
    counter!(DELIVERIES, "adapter" => adapter, "kind" => kind, "outcome" => outcome).increment(1);
    if outcome == "rate_limited" {
        counter!(RATE_LIMITED, "adapter" => adapter).increment(1);
    }
}

/// Count unverified messages sent again without a check.
pub fn reconcile_fallback(adapter: &'static str, count: usize) {
    counter!(RECONCILE_FALLBACKS, "adapter" => adapter).increment(count as u64);
}

/// Count receipts pulled forward after a recovery.
pub fn pulled_forward(adapter: &'static str, count: u64) {
    counter!(PULLED_FORWARD, "adapter" => adapter).increment(count);
}

/// Count an outcome that arrived after its lease passed on.
pub fn late_outcome() {
    counter!(LATE_OUTCOMES).increment(1);
}

/// Record a terminal notification's latency.
pub fn surfaced_latency(seconds: f64) {
    histogram!(DELIVERY_LATENCY).record(seconds);
}

/// Set the receipts gauge for one status.
pub fn receipts(status: &str, count: i64) {
    gauge!(RECEIPTS, "status" => status.to_owned()).set(count as f64);
}

/// Set the channel leases gauge of one replica.
pub fn channel_leases(replica: &str, count: usize) {
    gauge!(CHANNEL_LEASES, "replica" => replica.to_owned()).set(count as f64);
}

/// Set the progress staleness gauge.
pub fn progress_staleness(seconds: f64) {
    gauge!(PROGRESS_STALENESS).set(seconds);
}

/// Record a config reload result.
pub fn config_reloaded(ok: bool) {
    gauge!(CONFIG_RELOAD_OK).set(if ok { 1.0 } else { 0.0 });
}
