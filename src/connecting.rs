//! Starting before the store answers: a PostgreSQL server may be down or
//! still starting when herald starts, or another herald process may be
//! serving from an SQLite store (one process at a time: the second waits
//! as a standby and takes over within about a second of the first one's
//! end; PostgreSQL serves several replicas at once). `serve` then keeps trying, saying so in
//! the log each time, while its port already answers:
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
/// How often a herald waiting for another to stop asks again.
const HOLD_RETRY_WAIT: Duration = Duration::from_secs(1);

/// Open the store. SQLite opens at once or fails (a bad path is not going
/// to fix itself). PostgreSQL is tried until it answers, and either store
/// while another herald process has it, while `listener` serves the 503
/// answers; `Ok(None)` when a shutdown signal came first.
pub async fn open_store(
    config: &StoreConfig,
    listener: &std::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Option<Store>> {
    if !is_postgres(&config.url) {
        // SQLite opens at once or fails, unless another herald has it.
        match open_and_hold(&config.url).await {
            Ok(store) => return Ok(Some(store)),
            Err(StoreError::InUse(_)) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("could not open the store at {}", config.shown()));
            }
        }
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
    let store = loop {
        match Store::open(&config.url, CONNECT_TIMEOUT).await {
            Ok(store) => break store,
            Err(e) => {
                log_retry(config, attempt, &e, wait);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_RETRY_WAIT);
                attempt += 1;
            }
        }
    };
    // Open; now wait to be the one herald serving from it. Asking is
    // cheap, and a standby should take over soon after the holder dies.
    let mut waited = 0u32;
    loop {
        match store.hold().await {
            Ok(()) => {
                if attempt > 1 {
                    info!(store = %config.shown(), attempt, "connected to the store");
                }
                return store;
            }
            Err(e) => {
                let in_use = matches!(e, StoreError::InUse(_));
                let wait = if in_use { HOLD_RETRY_WAIT } else { MAX_RETRY_WAIT };
                // A standby may wait for hours: say so now and then, not
                // every second.
                if !in_use || waited.is_multiple_of(60) {
                    log_retry(config, attempt, &e, wait);
                }
                waited += 1;
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

fn log_retry(config: &StoreConfig, attempt: u32, e: &StoreError, wait: Duration) {
    warn!(
        store = %config.shown(),
        attempt,
        error = %crate::redact::clean(&e.to_string()),
        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        "{}",
        why(e)
    );
}

/// Open the store and become the herald that serves from it (one try).
async fn open_and_hold(url: &str) -> Result<Store, StoreError> {
    let store = Store::open(url, CONNECT_TIMEOUT).await?;
    if let Err(e) = store.hold().await {
        store.close().await;
        return Err(e);
    }
    Ok(store)
}

/// The sentence for the log: what the operator should look at.
fn why(e: &StoreError) -> &'static str {
    match e {
        StoreError::InUse(_) => "another herald serve has this store; waiting for it to stop",
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
