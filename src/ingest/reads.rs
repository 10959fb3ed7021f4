//! Who may read (SPEC §3.2): with `[server] read_tokens` set, `GET /v1/...`,
//! `/openapi.json`, `/` and `/channels/...` need a read or source token,
//! as Bearer or as the password of HTTP Basic, so a browser can open a web
//! channel page (its event stream then carries the same credentials).
//! `/healthz`, `/readyz` and `/metrics` stay open for probes and scrapers.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use super::auth::authorize_read;
use super::error::ApiError;
use crate::config::Config;

/// Whether `path` is one of the reads `read_tokens` close.
fn is_guarded(path: &str) -> bool {
    path == "/" || path == "/openapi.json" || path.starts_with("/v1/") || path.starts_with("/channels/")
}

/// Middleware: refuse guarded reads without a valid token, with `401` and
/// `WWW-Authenticate: Basic realm="herald"`.
pub async fn guard(
    State(config): State<watch::Receiver<Arc<Config>>>,
    request: Request,
    next: Next,
) -> Response {
    let reading = matches!(*request.method(), Method::GET | Method::HEAD);
    if reading && is_guarded(request.uri().path()) {
        let config = config.borrow().clone();
        if !authorize_read(request.headers(), &config.server.read_tokens, &config.sources) {
            crate::metrics::rejected("unauthorized_read");
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "reading needs a read token (Bearer, or Basic password)",
            )
            .into_response();
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"herald\""),
            );
            return response;
        }
    }
    next.run(request).await
}
