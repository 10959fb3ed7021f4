//! Starting before the store answers: a PostgreSQL server may be down or
//! still starting when herald starts. `serve` then keeps trying to connect,
//! saying so in the log each time, while its port already answers:
//! `/healthz` 200 (the process is alive), `/readyz` and everything else 503
//! with `Retry-After`, so a load balancer or an orchestrator waits and a
//! worker's client retries instead of getting "connection refused".

use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header::RETRY_AFTER};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::StoreConfig;
use crate::ingest::ApiError;
use crate::store::{Store, StoreError, is_postgres};

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait between attempts.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// Open the store. SQLite opens at once or fails (a bad path is not going
/// to fix itself). PostgreSQL is tried until it answers, while `listener`
/// serves the 503 answers; `Ok(None)` when a shutdown signal came first.
pub async fn open_store(
    config: &StoreConfig,
    listener: &std::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Option<Store>> {
    if !is_postgres(&config.url) {
        let store = Store::open(&config.url, CONNECT_TIMEOUT)
            .await
            .with_context(|| format!("could not open the store at {}", config.shown()))?;
        return Ok(Some(store));
    }
    let clone = listener
        .try_clone()
        .context("could not share the listening socket")?;
    let waiting = TcpListener::from_std(clone).context("could not serve while connecting")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let graceful = async {
            // Either side finishing ends the interim server.
            let _closed = stopped.await.is_err();
        };
        axum::serve(waiting, interim_routes())
            .with_graceful_shutdown(graceful)
            .await
    });
    let connected = tokio::select! {
        store = connect_until_up(config) => Some(store),
        () = shutdown => None,
    };
    let _gone = stop.send(()).is_err();
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "the interim HTTP server failed"),
        Err(e) => warn!(error = %e, "the interim HTTP server panicked"),
    }
    Ok(connected)
}

async fn connect_until_up(config: &StoreConfig) -> Store {
    let mut wait = Duration::from_millis(500);
    let mut attempt = 1u32;
    loop {
        match Store::open(&config.url, CONNECT_TIMEOUT).await {
            Ok(store) => {
                if attempt > 1 {
                    info!(store = %config.shown(), attempt, "connected to the store");
                }
                return store;
            }
            Err(e) => {
                warn!(
                    store = %config.shown(),
                    attempt,
                    error = %crate::redact::clean(&e.to_string()),
                    retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "{}",
                    why(&e)
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_RETRY_WAIT);
                attempt += 1;
            }
        }
    }
}

/// The sentence for the log: what the operator should look at.
fn why(e: &StoreError) -> &'static str {
    match e {
        StoreError::Migrate(_) => "could not migrate the PostgreSQL database; retrying",
        _ => "could not connect to PostgreSQL; retrying (check store.url, the server and its pg_hba.conf)",
    }
}

fn interim_routes() -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "starting"})) }),
        )
        .fallback(not_ready)
}

async fn not_ready() -> Response {
    let mut answer = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "herald is starting: the store is not reachable yet",
    )
    .into_response();
    answer
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("2"));
    answer
}
