//! Read endpoints and the dead-letter replay.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::{ApiError, ok};
use super::pages;
use crate::store::{ReceiptFilter, now_ms};

const RECEIPT_STATUSES: &[&str] = &["pending", "sending", "surfaced", "failed"];

/// `GET /v1/workers` parameters.
#[derive(Debug, Deserialize)]
pub struct WorkersQuery {
    run_id: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn workers(
    State(state): State<AppState>,
    Query(q): Query<WorkersQuery>,
) -> Result<Response, ApiError> {
    let limit = pages::limit(q.limit)?;
    let after = pages::position::<i64>(q.cursor.as_deref())?;
    let rows = state
        .store
        .workers(q.run_id.as_deref(), q.state.as_deref(), after, limit + 1)
        .await
        .map_err(|e| ApiError::internal("could not list workers", e))?;
    let (rows, next) = pages::split(rows, limit, |w| w.row);
    Ok(ok(
        StatusCode::OK,
        json!({ "workers": rows, "next_cursor": next }),
    ))
}

/// Journal paging parameters: `cursor` (or the event id `after`, as the
/// spec's table names it).
#[derive(Debug, Deserialize)]
pub struct JournalQuery {
    limit: Option<i64>,
    after: Option<i64>,
    cursor: Option<String>,
}

pub async fn journal(
    State(state): State<AppState>,
    Path((run_id, worker_id, task_id)): Path<(String, String, String)>,
    Query(q): Query<JournalQuery>,
) -> Result<Response, ApiError> {
    let limit = pages::limit(q.limit)?;
    let after = match pages::position::<i64>(q.cursor.as_deref())? {
        Some(id) => id,
        None => q.after.unwrap_or(0),
    };
    let events = state
        .store
        .journal(&run_id, &worker_id, &task_id, after, limit + 1)
        .await
        .map_err(|e| ApiError::internal("could not read the journal", e))?;
    if events.is_empty()
        && !state
            .store
            .task_exists(&run_id, &worker_id, &task_id)
            .await
            .map_err(|e| ApiError::internal("could not read the journal", e))?
    {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such worker task"));
    }
    let (events, next) = pages::split(events, limit, |e| e.id);
    Ok(ok(
        StatusCode::OK,
        json!({ "events": events, "next_cursor": next }),
    ))
}

/// `GET /v1/deliveries` parameters.
#[derive(Debug, Deserialize)]
pub struct DeliveriesQuery {
    status: Option<String>,
    channel: Option<String>,
    run_id: Option<String>,
    since: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

fn status_of(status: Option<&str>) -> Result<Option<String>, ApiError> {
    match status {
        Some(s) if !RECEIPT_STATUSES.contains(&s) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("status must be one of {}", RECEIPT_STATUSES.join(", ")),
        )
        .with("field", "status")),
        s => Ok(s.map(str::to_owned)),
    }
}

pub async fn deliveries(
    State(state): State<AppState>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Response, ApiError> {
    let limit = pages::limit(q.limit)?;
    let since = match &q.since {
        Some(text) => Some(crate::api_time::parse(text).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "since must be an RFC 3339 time (2026-06-12T17:02:00Z)",
            )
            .with("field", "since")
        })?),
        None => None,
    };
    let filter = ReceiptFilter {
        status: status_of(q.status.as_deref())?,
        channel: q.channel,
        run_id: q.run_id,
        since,
        after: pages::position::<(i64, String)>(q.cursor.as_deref())?,
    };
    let rows = state
        .store
        .receipts(&filter, limit + 1)
        .await
        .map_err(|e| ApiError::internal("could not list deliveries", e))?;
    let (rows, next) = pages::split(rows, limit, |r| (r.created_at, r.id.clone()));
    Ok(ok(
        StatusCode::OK,
        json!({ "deliveries": rows, "next_cursor": next }),
    ))
}

pub async fn retry_delivery(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    super::check_auth(&state, &headers)?;
    match state.store.replay_receipt(&id, now_ms()).await {
        Ok(Some(channel)) => {
            state.waker.wake(&channel);
            Ok(ok(StatusCode::ACCEPTED, json!({"id": id, "status": "pending"})))
        }
        Ok(None) => match state.store.receipt_status(&id).await {
            Ok(Some(status)) => Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("receipt {id} is {status}; only failed receipts can be retried"),
            )
            .with("status", status)),
            Ok(None) => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no receipt {id}"))),
            Err(e) => Err(ApiError::internal("could not read the receipt", e)),
        },
        Err(e) => Err(ApiError::internal("could not retry the receipt", e)),
    }
}

/// `POST /v1/deliveries/retry` parameters.
#[derive(Debug, Deserialize)]
pub struct RetryQuery {
    status: Option<String>,
    channel: Option<String>,
}

/// Re-drive every failed receipt of a channel (or of all channels) at once:
/// after fixing a channel's permissions, one call instead of one per
/// receipt. Answers how many, per channel.
pub async fn retry_deliveries(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Query(q): Query<RetryQuery>,
) -> Result<Response, ApiError> {
    super::check_auth(&state, &headers)?;
    if q.status.as_deref() != Some("failed") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "status=failed is required: only failed receipts can be retried",
        )
        .with("field", "status"));
    }
    if let Some(channel) = &q.channel
        && !state.config.borrow().channels.contains_key(channel)
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no channel {channel:?} in the config"),
        )
        .with("field", "channel"));
    }
    let counts = state
        .store
        .replay_failed(q.channel.as_deref(), now_ms())
        .await
        .map_err(|e| ApiError::internal("could not retry the receipts", e))?;
    for (channel, _) in &counts {
        state.waker.wake(channel);
    }
    let retried: i64 = counts.iter().map(|(_, n)| n).sum();
    let channels: serde_json::Map<String, serde_json::Value> =
        counts.into_iter().map(|(c, n)| (c, json!(n))).collect();
    Ok(ok(
        StatusCode::ACCEPTED,
        json!({"retried": retried, "channels": channels}),
    ))
}

/// `GET /v1/replicas`: the replicas of this store, whether each is alive,
/// and the channels each delivers with their lease expiries; channels no
/// live replica holds are listed apart (being taken over, or never taken).
pub async fn replicas(State(state): State<AppState>) -> Result<Response, ApiError> {
    let now = now_ms();
    let replicas = state
        .store
        .replicas(now)
        .await
        .map_err(|e| ApiError::internal("could not list replicas", e))?;
    let leases = state
        .store
        .channel_leases()
        .await
        .map_err(|e| ApiError::internal("could not list channel leases", e))?;
    let configured: Vec<String> = state.config.borrow().channels.keys().cloned().collect();
    let view = crate::delivery::leases::view(&replicas, &leases, &configured, now);
    let body =
        serde_json::to_value(&view).map_err(|e| ApiError::internal("could not encode the replicas", e))?;
    Ok(ok(StatusCode::OK, body))
}
