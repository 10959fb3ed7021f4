//! The overview at `/` and its data: `GET /v1/overview` (JSON) and
//! `GET /v1/overview/events` (server-sent `overview` events, one whenever
//! what it shows changes), so the page stays current without reloads.
//! What it holds is read by [`crate::overview::Overview`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::watch;

use super::WebChannel;
use crate::config::Config;
use crate::delivery::throttles::Throttles;
use crate::ingest::ApiError;
use crate::ingest::error::answer;
use crate::ingest::extract::Query;
use crate::ingest::shapes::ErrorBody;
use crate::overview::Overview;
use crate::store::{Store, now_ms};

/// How often an open overview is read again (a change shows within this).
pub const REFRESH: Duration = Duration::from_secs(2);

/// How long one read serves every viewer of the same run filter: a wall
/// of open pages costs the store one read per filter, not one per page.
const SHARED_FOR: Duration = Duration::from_secs(1);

/// Filters whose last read is kept; beyond, the oldest is forgotten.
const SHARED_FILTERS: usize = 64;

/// The longest run id the overview is narrowed to (longer ones match no
/// task: ids are bounded at ingest).
const MAX_RUN_ID: usize = 256;

/// The page, with the shared relative-time script inlined.
static OVERVIEW_PAGE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    include_str!("overview.html").replace("/*{{RELATIVE_TIME}}*/", super::pages::RELATIVE_TIME)
});

/// The last read of each run filter (`None`: all runs), and when.
type SharedReads = HashMap<Option<String>, (Instant, Overview)>;

/// What the overview's handlers read.
#[derive(Clone)]
pub(crate) struct OverviewState {
    store: Store,
    config: watch::Receiver<Arc<Config>>,
    throttles: Throttles,
    /// Ends the live streams when herald stops.
    web: WebChannel,
    /// The last read of each run filter, and when it was made.
    recent: Arc<std::sync::Mutex<SharedReads>>,
}

/// The overview's routes: the page and its data.
pub fn routes(
    store: Store,
    config: watch::Receiver<Arc<Config>>,
    throttles: Throttles,
    web: WebChannel,
) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/v1/overview", get(overview))
        .route("/v1/overview/events", get(overview_events))
        .with_state(OverviewState {
            store,
            config,
            throttles,
            web,
            recent: Arc::default(),
        })
}

/// `?run=`: narrow the counts and the attention list to one run.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct OverviewQuery {
    /// Only this run's tasks (the channels' health is for all runs).
    run: Option<String>,
}

impl OverviewQuery {
    fn run(&self) -> Result<Option<&str>, ApiError> {
        match self.run.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(run) if run.len() > MAX_RUN_ID => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("run must be at most {MAX_RUN_ID} bytes"),
            )
            .with("field", "run")),
            Some(run) => Ok(Some(run)),
        }
    }
}

impl OverviewState {
    /// The overview of `run`, read again unless another viewer's read of
    /// the same filter is younger than [`SHARED_FOR`].
    async fn read(&self, run: Option<&str>) -> Result<Overview, crate::store::StoreError> {
        let key = run.map(str::to_owned);
        if let Some((at, overview)) = self.recent().get(&key)
            && at.elapsed() < SHARED_FOR
        {
            return Ok(overview.clone());
        }
        let config = self.config.borrow().clone();
        let overview = Overview::read(&self.store, &config, &self.throttles, run, now_ms()).await?;
        let mut recent = self.recent();
        if recent.len() >= SHARED_FILTERS && !recent.contains_key(&key) {
            let oldest = recent
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                recent.remove(&oldest);
            }
        }
        recent.insert(key, (Instant::now(), overview.clone()));
        Ok(overview)
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, SharedReads> {
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The overview page: tasks by state, those needing attention, and
/// delivery health per channel, live.
#[utoipa::path(get, path = "/", tag = "web",
    responses((status = 200, description = "The page", body = String, content_type = "text/html"),
        (status = 401, description = "Missing or wrong read token", body = ErrorBody)),
    security(("bearer" = []), ()))]
pub(crate) async fn page() -> Html<&'static str> {
    Html(OVERVIEW_PAGE.as_str())
}

/// Tasks by state (all runs, or `run`), the runs with the newest events,
/// tasks that need attention, and every channel's delivery health.
#[utoipa::path(get, path = "/v1/overview", tag = "reads", params(OverviewQuery),
    responses((status = 200, description = "The overview", body = Overview),
        (status = 400, description = "A bad parameter, named in `field`", body = ErrorBody),
        (status = 401, description = "Missing or wrong read token", body = ErrorBody),
        (status = 500, description = "The store does not answer", body = ErrorBody)),
    security(("bearer" = []), ()))]
pub(crate) async fn overview(
    State(state): State<OverviewState>,
    Query(q): Query<OverviewQuery>,
) -> Result<Response, ApiError> {
    let overview = state
        .read(q.run()?)
        .await
        .map_err(|e| ApiError::internal("could not read the overview", e))?;
    Ok(answer(StatusCode::OK, overview))
}

/// The overview as it changes: an `overview` event (the JSON of
/// `GET /v1/overview`) at once and whenever it changes, read every 2 s;
/// `unavailable` while the store does not answer.
#[utoipa::path(get, path = "/v1/overview/events", tag = "reads", params(OverviewQuery),
    responses((status = 200, description = "An event stream", body = String, content_type = "text/event-stream"),
        (status = 400, description = "A bad parameter, named in `field`", body = ErrorBody),
        (status = 401, description = "Missing or wrong read token", body = ErrorBody)),
    security(("bearer" = []), ()))]
pub(crate) async fn overview_events(
    State(state): State<OverviewState>,
    Query(q): Query<OverviewQuery>,
) -> Result<Response, ApiError> {
    let run = q.run()?.map(str::to_owned);
    let closed = state.web.closed();
    let mut ticks = tokio::time::interval(REFRESH);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = Watching {
        state,
        run,
        ticks,
        last: None,
        down: false,
    };
    let stream = futures_util::stream::unfold(start, |mut watching| async move {
        let event = watching.next_change().await;
        Some((Ok::<Event, Infallible>(event), watching))
    });
    Ok(Sse::new(stream.take_until(closed))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// One viewer's stream: what it was last sent, to send only changes.
struct Watching {
    state: OverviewState,
    run: Option<String>,
    ticks: tokio::time::Interval,
    /// The last overview sent, without its time.
    last: Option<String>,
    /// `unavailable` was sent and nothing since.
    down: bool,
}

impl Watching {
    /// The next event to send: waits for a change.
    async fn next_change(&mut self) -> Event {
        loop {
            self.ticks.tick().await;
            match self.state.read(self.run.as_deref()).await {
                Ok(mut overview) => {
                    self.down = false;
                    // Compared without its time, which changes every tick.
                    let generated_at = std::mem::replace(&mut overview.generated_at, 0);
                    let key = match serde_json::to_string(&overview) {
                        Ok(key) => key,
                        Err(e) => {
                            tracing::warn!(error = %e, "could not serialize the overview for a viewer; trying at the next tick");
                            continue;
                        }
                    };
                    if self.last.as_ref() == Some(&key) {
                        continue;
                    }
                    overview.generated_at = generated_at;
                    match Event::default().event("overview").json_data(&overview) {
                        Ok(event) => {
                            self.last = Some(key);
                            return event;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not serialize the overview for a viewer; trying at the next tick");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the overview for a viewer");
                    self.last = None;
                    if !std::mem::replace(&mut self.down, true) {
                        return Event::default()
                            .event("unavailable")
                            .data("the store does not answer; retrying");
                    }
                }
            }
        }
    }
}
