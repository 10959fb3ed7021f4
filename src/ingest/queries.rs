//! Read endpoints and the dead-letter replay.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, answer};
use super::extract::Query;
use super::pages;
use super::shapes::{DeliveriesPage, ErrorBody, JournalPage, Replicas, Retried, RetriedMany, WorkersPage};
use crate::store::{ReceiptFilter, now_ms};

const RECEIPT_STATUSES: &[&str] = &["pending", "sending", "surfaced", "failed"];

/// `GET /v1/workers` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkersQuery {
    run_id: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Worker tasks, newest first (SPEC §3.3 pages).
#[utoipa::path(get, path = "/v1/workers", tag = "reads", params(WorkersQuery),
    responses((status = 200, description = "A page", body = WorkersPage), (status = 400, description = "A bad parameter, named in `field`", body = ErrorBody),
        (status = 401, description = "Missing or wrong read token", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),),
    security(("bearer" = []), ()))]
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
    Ok(answer(
        StatusCode::OK,
        WorkersPage {
            workers: rows,
            next_cursor: next,
        },
    ))
}

/// Journal paging parameters: `cursor` (or the event id `after`, as the
/// spec's table names it).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JournalQuery {
    limit: Option<i64>,
    after: Option<i64>,
    cursor: Option<String>,
}

/// One task's journal, in ingest order.
#[utoipa::path(get, path = "/v1/workers/{run_id}/{worker_id}/{task_id}/events", tag = "reads",
    params(("run_id" = String, Path), ("worker_id" = String, Path), ("task_id" = String, Path), JournalQuery),
    responses((status = 200, description = "A page", body = JournalPage),
        (status = 404, description = "No such worker task", body = ErrorBody), (status = 400, description = "A bad parameter, named in `field`", body = ErrorBody),
        (status = 401, description = "Missing or wrong read token", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),),
    security(("bearer" = []), ()))]
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
    Ok(answer(
        StatusCode::OK,
        JournalPage {
            events,
            next_cursor: next,
        },
    ))
}

/// `GET /v1/deliveries` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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

/// Delivery receipts, newest first.
#[utoipa::path(get, path = "/v1/deliveries", tag = "reads", params(DeliveriesQuery),
    responses((status = 200, description = "A page", body = DeliveriesPage), (status = 400, description = "A bad parameter, named in `field`", body = ErrorBody),
        (status = 401, description = "Missing or wrong read token", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),),
    security(("bearer" = []), ()))]
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
    Ok(answer(
        StatusCode::OK,
        DeliveriesPage {
            deliveries: rows,
            next_cursor: next,
        },
    ))
}

/// Re-drive one failed receipt (dead-letter replay).
#[utoipa::path(post, path = "/v1/deliveries/{id}/retry", tag = "deliveries",
    params(("id" = String, Path, description = "Receipt id")),
    responses((status = 202, description = "Pending again", body = Retried),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such receipt", body = ErrorBody),
        (status = 409, description = "The receipt is not failed", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody)),
    security(("bearer" = []), ()))]
pub async fn retry_delivery(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    super::check_auth(&state, &headers)?;
    match state.store.replay_receipt(&id, now_ms()).await {
        Ok(Some(channel)) => {
            state.waker.wake(&channel);
            Ok(answer(
                StatusCode::ACCEPTED,
                Retried {
                    id,
                    status: "pending".to_owned(),
                },
            ))
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
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RetryQuery {
    status: Option<String>,
    channel: Option<String>,
}

/// Re-drive every failed receipt of a channel (or of all channels) at once:
/// after fixing a channel's permissions, one call instead of one per
/// receipt. Answers how many, per channel.
/// Re-drive every failed receipt of a channel, or of all channels.
#[utoipa::path(post, path = "/v1/deliveries/retry", tag = "deliveries", params(RetryQuery),
    responses((status = 202, description = "Pending again, counted", body = RetriedMany),
        (status = 400, description = "status=failed is missing", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody)),
    security(("bearer" = []), ()))]
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
    Ok(answer(
        StatusCode::ACCEPTED,
        RetriedMany {
            retried,
            channels: counts.into_iter().collect(),
        },
    ))
}

/// `GET /v1/replicas`: the replicas of this store, whether each is alive,
/// and the channels each delivers with their lease expiries; channels no
/// live replica holds are listed apart (being taken over, or never taken).
/// Which replica delivers which channel.
#[utoipa::path(get, path = "/v1/replicas", tag = "reads",
    responses((status = 200, description = "Replicas and their leases", body = Replicas),
        (status = 401, description = "Missing or wrong read token", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody)),
    security(("bearer" = []), ()))]
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
    let view: Replicas = crate::delivery::leases::view(&replicas, &leases, &configured, now);
    Ok(answer(StatusCode::OK, view))
}
