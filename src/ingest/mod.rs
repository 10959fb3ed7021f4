//! The HTTP API (SPEC §3): thin axum handlers that parse, authenticate,
//! call the store and answer. Errors become JSON in `error.rs`.

mod auth;
pub mod body;
pub mod error;
pub(crate) mod extract;
pub mod openapi;
mod pages;
pub mod plan;
mod queries;
pub mod reads;
pub mod shapes;
pub mod writer;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use crate::config::Config;
use crate::store::Store;
pub use auth::{Auth, authenticate};
pub use error::ApiError;
use shapes::{Accepted, ErrorBody, EventsIn, Health, Reloaded};
use writer::IngestWriter;

/// Something that re-reads the config (`POST /-/reload`, SIGHUP).
#[async_trait::async_trait]
pub trait Reload: Send + Sync {
    /// Re-read and apply; `Err` carries every config error.
    async fn reload(&self) -> Result<String, String>;
}

/// Something that re-drives a failed receipt's channel (`POST
/// /v1/deliveries/{id}/retry`).
pub trait Waker: Send + Sync {
    /// New work is in the store for `channel`.
    fn wake(&self, channel: &str);
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// The group-commit writer.
    pub writer: IngestWriter,
    /// The current config.
    pub config: watch::Receiver<Arc<Config>>,
    /// Config reloader.
    pub reloader: Arc<dyn Reload>,
    /// Wakes channel actors.
    pub waker: Arc<dyn Waker>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
}

/// The API routes (the web channel's pages are merged in by the caller).
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/alerts/alertmanager", post(post_alertmanager))
        .route("/v1/alerts/grafana", post(post_grafana))
        .route("/v1/inbound/slack", post(crate::inbound::slack))
        .route("/v1/inbound/discord", post(crate::inbound::discord))
        .route("/v1/inbound/telegram", post(crate::inbound::telegram))
        .route("/v1/workers", get(queries::workers))
        .route(
            "/v1/workers/{run_id}/{worker_id}/{task_id}/events",
            get(queries::journal),
        )
        .route("/v1/deliveries", get(queries::deliveries))
        .route("/v1/replicas", get(queries::replicas))
        .route("/v1/deliveries/retry", post(queries::retry_deliveries))
        .route("/v1/deliveries/{id}/retry", post(queries::retry_delivery))
        .route("/-/reload", post(reload))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .route("/openapi.json", get(openapi::document))
        // Ingest enforces `server.max_body_bytes` itself, with a JSON 413.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// The JSON 404 for unknown paths.
pub use error::not_found;

fn check_auth(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match authenticate(headers, &state.config.borrow().sources) {
        Auth::Source(_) | Auth::Open => Ok(()),
        Auth::Denied => {
            crate::metrics::rejected("unauthorized");
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer <token> from [[sources]])",
            ))
        }
    }
}

/// Ingest worker events (SPEC §3.1): durable before the answer.
#[utoipa::path(post, path = "/v1/events", tag = "ingest",
    request_body(content = EventsIn, description = "One event, an array, or NDJSON (application/x-ndjson)",
        content_type = "application/json"),
    responses(
        (status = 202, description = "Stored (journaled) before this answer", body = Accepted),
        (status = 400, description = "Bad input; nothing was stored", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 413, description = "Body larger than server.max_body_bytes", body = ErrorBody),
        (status = 503, description = "Store unreachable or herald stopping; nothing was stored", body = ErrorBody),
    ),
    security(("bearer" = []), ()))]
async fn post_events(State(state): State<AppState>, request: Request<axum::body::Body>) -> Response {
    match ingest(state, request).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn ingest(state: AppState, request: Request<axum::body::Body>) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    check_auth(&state, &parts.headers)?;
    let bytes = read_body(&state, &parts, body).await?;
    let content_type = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let events =
        body::parse_events(&bytes, body::Framing::from_content_type(content_type)).inspect_err(|_| {
            crate::metrics::rejected("invalid");
        })?;
    let mut events = events;
    let policies = state.config.borrow().event_policies.clone();
    let mut runtime = crate::alert_policy::use_allowed(&policies, &mut events);
    if !runtime.is_empty() {
        // Channels the running config has are kept already (a worker may
        // send its policy with every event: one write per new target, not
        // per event).
        let config = state.config.borrow();
        runtime.retain(|c| !config.channels.contains_key(&c.name));
    }
    if !runtime.is_empty() {
        state.store.register_runtime_channels(&runtime).await.map_err(|e| {
            tracing::warn!(error = %e, "events were not stored: their alert policies' channels could not be kept");
            ApiError::unavailable("the store is unreachable; nothing was stored, send the batch again")
        })?;
    }
    let report = commit(&state, events).await?;
    Ok(error::answer(StatusCode::ACCEPTED, accepted(&report)))
}

fn accepted(report: &plan::RequestReport) -> Accepted {
    Accepted {
        accepted: report.accepted as u64,
        duplicates: report.duplicates as u64,
    }
}

/// Commit events through the group-commit writer: durable when it returns.
async fn commit(
    state: &AppState,
    events: Vec<crate::protocol::FleetWorkerEvent>,
) -> Result<plan::RequestReport, ApiError> {
    state.writer.commit(events).await.map_err(|e| match e {
        writer::CommitError::Stopped => {
            ApiError::unavailable("herald is shutting down; nothing was stored, send the batch again")
        }
        writer::CommitError::Store(e) if e.is_transient() => {
            tracing::warn!(error = %e, "events were not stored: the store is unreachable");
            ApiError::unavailable("the store is unreachable; nothing was stored, send the batch again")
        }
        writer::CommitError::Store(e) => ApiError::internal("events were not stored", e),
    })
}

/// Read a request's body within `server.max_body_bytes` (a JSON 413 past it).
async fn read_body(
    state: &AppState,
    parts: &axum::http::request::Parts,
    body: axum::body::Body,
) -> Result<Vec<u8>, ApiError> {
    let limit = state.config.borrow().server.max_body_bytes;
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let wants_continue = parts
        .headers
        .get(axum::http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    body::read_limited(body, declared, limit, wants_continue)
        .await
        .inspect_err(|_| {
            crate::metrics::rejected("too_large");
        })
}

/// Prometheus Alertmanager webhook (payload version 4).
#[utoipa::path(post, path = "/v1/alerts/alertmanager", tag = "alerts",
    request_body(content = Object, description = "Alertmanager's webhook payload", content_type = "application/json"),
    responses((status = 200, description = "Every alert of the payload stored", body = Accepted), (status = 400, description = "Bad input; nothing was stored", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 413, description = "Body larger than server.max_body_bytes", body = ErrorBody),
        (status = 503, description = "Store unreachable or herald stopping; nothing was stored", body = ErrorBody),),
    security(("bearer" = []), ()))]
async fn post_alertmanager(State(state): State<AppState>, request: Request<axum::body::Body>) -> Response {
    take_alerts(state, request, crate::alerts::AlertSource::Alertmanager)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// Grafana webhook contact point (payload version 1).
#[utoipa::path(post, path = "/v1/alerts/grafana", tag = "alerts",
    request_body(content = Object, description = "Grafana's webhook payload", content_type = "application/json"),
    responses((status = 200, description = "Every alert of the payload stored", body = Accepted), (status = 400, description = "Bad input; nothing was stored", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 413, description = "Body larger than server.max_body_bytes", body = ErrorBody),
        (status = 503, description = "Store unreachable or herald stopping; nothing was stored", body = ErrorBody),),
    security(("bearer" = []), ()))]
async fn post_grafana(State(state): State<AppState>, request: Request<axum::body::Body>) -> Response {
    take_alerts(state, request, crate::alerts::AlertSource::Grafana)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1/alerts/{alertmanager,grafana}`: every alert of the payload is
/// committed, or none (SPEC §3.4).
async fn take_alerts(
    state: AppState,
    request: Request<axum::body::Body>,
    source: crate::alerts::AlertSource,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    check_auth(&state, &parts.headers)?;
    let bytes = read_body(&state, &parts, body).await?;
    let payload: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        crate::metrics::rejected("invalid");
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the payload is not valid JSON: {e}"),
        )
    })?;
    let events = crate::alerts::parse(source, &payload).map_err(|e| {
        crate::metrics::rejected("invalid");
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the {} payload is invalid: {} {}",
                source.run_id(),
                e.field,
                e.message
            ),
        )
        .with("field", e.field)
    })?;
    let report = if events.is_empty() {
        plan::RequestReport::default()
    } else {
        commit(&state, events).await?
    };
    Ok(error::answer(StatusCode::OK, accepted(&report)))
}

/// Re-read the config file (as SIGHUP does).
#[utoipa::path(post, path = "/-/reload", tag = "operations",
    responses(
        (status = 200, description = "The new config is running", body = Reloaded),
        (status = 400, description = "The file is invalid; the old config stays", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "No [[sources]]: reload by SIGHUP", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn reload(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if state.config.borrow().sources.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "reload over HTTP needs a [[sources]] token; send SIGHUP instead",
        ));
    }
    check_auth(&state, &headers)?;
    match state.reloader.reload().await {
        Ok(summary) => Ok(error::answer(
            StatusCode::OK,
            Reloaded {
                reloaded: true,
                summary,
            },
        )),
        Err(errors) => Err(
            ApiError::new(StatusCode::BAD_REQUEST, "config rejected; the old config stays")
                .with("errors", errors.lines().collect::<Vec<_>>()),
        ),
    }
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
async fn healthz() -> Response {
    error::answer(
        StatusCode::OK,
        Health {
            status: "ok".to_owned(),
        },
    )
}

/// Readiness: 200 when the store answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready", body = Health),
        (status = 503, description = "The store does not answer", body = ErrorBody)))]
async fn readyz(State(state): State<AppState>) -> Response {
    if state.store.ping().await {
        error::answer(
            StatusCode::OK,
            Health {
                status: "ready".to_owned(),
            },
        )
    } else {
        ApiError::unavailable("the store is not reachable").into_response()
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn render_metrics(State(state): State<AppState>) -> Response {
    match state.store.receipt_counts().await {
        Ok(counts) => {
            for status in ["pending", "sending", "surfaced", "failed"] {
                let n = counts.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
                crate::metrics::receipts(status, n);
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not count receipts for /metrics"),
    }
    let now = crate::store::now_ms();
    match (
        state.store.replicas(now).await,
        state.store.channel_leases().await,
    ) {
        (Ok(replicas), Ok(leases)) => {
            for r in crate::delivery::leases::view(&replicas, &leases, &[], now).replicas {
                crate::metrics::channel_leases(&r.id, r.channels.len());
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "could not count channel leases for /metrics")
        }
    }
    match state.store.progress_staleness_ms(now).await {
        Ok(ms) => crate::metrics::progress_staleness(ms.unwrap_or(0) as f64 / 1000.0),
        Err(e) => tracing::warn!(error = %e, "could not measure progress staleness for /metrics"),
    }
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
