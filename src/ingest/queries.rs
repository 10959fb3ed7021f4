//! Read endpoints and the dead-letter replay.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::{ApiError, ok};
use crate::store::now_ms;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;
const RECEIPT_STATUSES: &[&str] = &["pending", "sending", "surfaced", "failed"];

fn limit(requested: Option<i64>) -> Result<i64, ApiError> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(
            ApiError::new(StatusCode::BAD_REQUEST, format!("limit must be 1..={MAX_LIMIT}"))
                .with("field", "limit"),
        ),
    }
}

/// `GET /v1/workers` parameters.
#[derive(Debug, Deserialize)]
pub struct WorkersQuery {
    run_id: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

pub async fn workers(
    State(state): State<AppState>,
    Query(q): Query<WorkersQuery>,
) -> Result<Response, ApiError> {
    let limit = limit(q.limit)?;
    let rows = state
        .store
        .workers(q.run_id.as_deref(), q.state.as_deref(), limit)
        .await
        .map_err(|e| ApiError::internal("could not list workers", e))?;
    Ok(ok(StatusCode::OK, json!({ "workers": rows })))
}

/// Journal paging parameters.
#[derive(Debug, Deserialize)]
pub struct JournalQuery {
    limit: Option<i64>,
    after: Option<i64>,
}

pub async fn journal(
    State(state): State<AppState>,
    Path((run_id, worker_id, task_id)): Path<(String, String, String)>,
    Query(q): Query<JournalQuery>,
) -> Result<Response, ApiError> {
    let limit = limit(q.limit)?;
    let after = q.after.unwrap_or(0);
    let events = state
        .store
        .journal(&run_id, &worker_id, &task_id, after, limit)
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
    let next = events.last().map(|e| e.id);
    Ok(ok(
        StatusCode::OK,
        json!({ "events": events, "next_after": next }),
    ))
}

/// `GET /v1/deliveries` parameters.
#[derive(Debug, Deserialize)]
pub struct DeliveriesQuery {
    status: Option<String>,
    limit: Option<i64>,
}

pub async fn deliveries(
    State(state): State<AppState>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Response, ApiError> {
    let limit = limit(q.limit)?;
    if let Some(s) = &q.status
        && !RECEIPT_STATUSES.contains(&s.as_str())
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("status must be one of {}", RECEIPT_STATUSES.join(", ")),
        )
        .with("field", "status"));
    }
    let rows = state
        .store
        .receipts(q.status.as_deref(), limit)
        .await
        .map_err(|e| ApiError::internal("could not list deliveries", e))?;
    Ok(ok(StatusCode::OK, json!({ "deliveries": rows })))
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
