//! The web channel's pages: `/channels/{name}` shows one, live (`/`, the
//! overview, links to them). The page loads recent messages as JSON, then follows
//! server-sent events; on every (re)connect it reloads, so a viewer that
//! missed updates catches up.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use futures_util::StreamExt;
use herald_messaging::Platform;
use serde_json::json;
use tokio::sync::watch;
use tokio_stream::wrappers::BroadcastStream;

use super::WebChannel;
use crate::config::{ChannelTarget, Config};

/// Messages a page shows at most (the newest; the page drops older ones
/// as new ones arrive).
const RECENT: i64 = 500;

const CHANNEL_PAGE: &str = include_str!("channel.html");

/// The pages' shared relative-time script, inlined where a page says
/// `/*{{RELATIVE_TIME}}*/` (no second request, no asset route).
pub(crate) const RELATIVE_TIME: &str = include_str!("relative_time.js");

#[derive(Clone)]
pub(crate) struct PagesState {
    web: WebChannel,
    config: watch::Receiver<Arc<Config>>,
}

/// The web channel's HTTP routes.
pub fn routes(web: WebChannel, config: watch::Receiver<Arc<Config>>) -> Router {
    Router::new()
        .route("/channels/{name}", get(channel_page))
        .route("/channels/{name}/messages", get(channel_messages))
        .route("/channels/{name}/events", get(channel_events))
        .with_state(PagesState { web, config })
}

/// Web channel ids (the `/channels/{id}` path) with their config names.
fn web_channels(config: &Config) -> Vec<(String, String)> {
    config
        .channels
        .values()
        .filter(|c| c.platform == Platform::Web)
        .filter_map(|c| match &c.target {
            ChannelTarget::Chat { id, .. } => Some((id.clone(), c.name.clone())),
            ChannelTarget::Webhook(_) | ChannelTarget::PagerDuty(_) | ChannelTarget::SlackWebhook(_) => None,
        })
        .collect()
}

fn not_found(name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": format!("no web channel named {name:?}")})),
    )
        .into_response()
}

fn known(state: &PagesState, name: &str) -> bool {
    web_channels(&state.config.borrow())
        .iter()
        .any(|(id, _)| id == name)
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One web channel's page, live.
#[utoipa::path(get, path = "/channels/{name}", tag = "web", params(("name" = String, Path)),
    responses((status = 200, description = "The page", body = String, content_type = "text/html"),
        (status = 401, description = "Missing or wrong read token", body = crate::ingest::shapes::ErrorBody),
        (status = 404, description = "No web channel of that name", body = crate::ingest::shapes::ErrorBody)),
    security(("bearer" = []), ()))]
pub(crate) async fn channel_page(State(state): State<PagesState>, Path(name): Path<String>) -> Response {
    if !known(&state, &name) {
        return not_found(&name);
    }
    // The name goes into HTML text (escaped) and into a script as a JSON
    // string; `<` is escaped there too so it cannot close the script tag.
    let as_json = serde_json::to_string(&name)
        .unwrap_or_else(|_| "\"\"".to_owned())
        .replace('<', "\\u003c");
    Html(
        CHANNEL_PAGE
            .replace("/*{{RELATIVE_TIME}}*/", RELATIVE_TIME)
            .replace("{{CHANNEL_JSON}}", &as_json)
            .replace("{{CHANNEL}}", &escape_html(&name)),
    )
    .into_response()
}

/// A web channel's newest messages (at most 500).
#[utoipa::path(get, path = "/channels/{name}/messages", tag = "web", params(("name" = String, Path)),
    responses((status = 200, description = "Oldest first", body = crate::ingest::shapes::WebMessages),
        (status = 401, description = "Missing or wrong read token", body = crate::ingest::shapes::ErrorBody),
        (status = 404, description = "No web channel of that name", body = crate::ingest::shapes::ErrorBody),
        (status = 503, description = "The store does not answer", body = crate::ingest::shapes::ErrorBody)),
    security(("bearer" = []), ()))]
pub(crate) async fn channel_messages(State(state): State<PagesState>, Path(name): Path<String>) -> Response {
    if !known(&state, &name) {
        return not_found(&name);
    }
    match state.web.recent(&name, RECENT).await {
        Ok(messages) => Json(crate::ingest::shapes::WebMessages { messages }).into_response(),
        Err(e) => {
            // The cause goes to the log; the answer never carries store text.
            tracing::warn!(channel = %name, error = %e, "could not read a web channel's messages");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "could not read the channel's messages; try again"})),
            )
                .into_response()
        }
    }
}

/// A web channel's messages as they are posted and edited (server-sent
/// events `post`, `edit`, `reload`).
#[utoipa::path(get, path = "/channels/{name}/events", tag = "web", params(("name" = String, Path)),
    responses((status = 200, description = "An event stream", body = String, content_type = "text/event-stream"),
        (status = 401, description = "Missing or wrong read token", body = crate::ingest::shapes::ErrorBody),
        (status = 404, description = "No web channel of that name", body = crate::ingest::shapes::ErrorBody)),
    security(("bearer" = []), ()))]
pub(crate) async fn channel_events(State(state): State<PagesState>, Path(name): Path<String>) -> Response {
    if !known(&state, &name) {
        return not_found(&name);
    }
    let updates = BroadcastStream::new(state.web.subscribe(&name));
    let stream = updates.map(|update| -> Result<Event, Infallible> {
        Ok(match update {
            Ok(update) => Event::default()
                .event(update.op)
                .json_data(&update.message)
                .unwrap_or_else(|_| Event::default().event("reload").data("")),
            // The viewer fell behind: tell the page to reload the snapshot.
            Err(_lagged) => Event::default().event("reload").data(""),
        })
    });
    let stream = stream.take_until(state.web.closed());
    sse(stream).into_response()
}

fn sse<S: Stream<Item = Result<Event, Infallible>> + Send + 'static>(stream: S) -> impl IntoResponse {
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
