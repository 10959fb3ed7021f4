//! Slack incoming webhooks (`POST /services/T…/B…/…`), as Slack documents
//! them: a JSON body with `text` (and optionally `blocks`); `200` with the
//! plain body `ok`; errors as plain-text codes: `400 invalid_payload` (not
//! JSON), `400 no_text`, `403 action_prohibited`, `404 no_service` (an
//! unknown or revoked webhook), `410 channel_is_archived`. About one
//! message a second per webhook: beyond that `429` with `Retry-After: 1`,
//! and every request inside a retry-after it gave is counted as early.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;

use super::chaos::{Chaos, Draw};
use super::lockout::{Early, Lockouts};

/// What a webhook is, on Slack's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Posts into its channel.
    Working,
    /// Its channel was archived.
    Archived,
    /// The workspace forbids it.
    Prohibited,
}

#[derive(Default)]
struct Inner {
    hooks: HashMap<String, Hook>,
    messages: HashMap<String, Vec<Value>>,
    windows: HashMap<String, VecDeque<Instant>>,
    lockouts: Lockouts,
    rate_limited: usize,
    chaos: Option<Chaos>,
    requests: usize,
}

/// A running emulator.
#[derive(Clone)]
pub struct SlackWebhookEmulator {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl SlackWebhookEmulator {
    /// Start on a loopback port.
    pub async fn start() -> SlackWebhookEmulator {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/services/{team}/{bot}/{key}", post(incoming))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        SlackWebhookEmulator { addr, inner }
    }

    /// Create a webhook; returns its URL.
    pub fn hook(&self, key: &str, kind: Hook) -> String {
        self.inner.lock().unwrap().hooks.insert(key.to_owned(), kind);
        format!("http://{}/services/T0001/B0001/{key}", self.addr)
    }

    /// What a webhook posted, oldest first.
    pub fn messages(&self, key: &str) -> Vec<Value> {
        self.inner
            .lock()
            .unwrap()
            .messages
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    /// 429s given.
    pub fn rate_limited(&self) -> usize {
        self.inner.lock().unwrap().rate_limited
    }

    /// Requests that arrived inside a retry-after.
    pub fn early(&self) -> Vec<Early> {
        self.inner.lock().unwrap().lockouts.early.clone()
    }

    /// Every request so far.
    pub fn requests(&self) -> usize {
        self.inner.lock().unwrap().requests
    }

    /// From now on, fail a share of requests at random (`None`: stop).
    pub fn chaos(&self, chaos: Option<Chaos>) {
        self.inner.lock().unwrap().chaos = chaos;
    }
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, body).into_response()
}

async fn incoming(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((_team, _bot, key)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    let mut hang = false;
    {
        let mut state = inner.lock().unwrap();
        state.requests += 1;
        if let Some(left) = state.lockouts.arrived(&key, now) {
            state.rate_limited += 1;
            let secs = left.as_secs().max(1);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", secs.to_string())],
                "rate_limited",
            )
                .into_response();
        }
        match state.chaos.as_mut().map(Chaos::draw) {
            Some(Draw::ServerError) => return text(StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
            Some(Draw::Lost) => hang = true,
            Some(Draw::Normal) | None => {}
        }
        match state.hooks.get(&key).copied() {
            None => return text(StatusCode::NOT_FOUND, "no_service"),
            Some(Hook::Archived) => return text(StatusCode::GONE, "channel_is_archived"),
            Some(Hook::Prohibited) => return text(StatusCode::FORBIDDEN, "action_prohibited"),
            Some(Hook::Working) => {}
        }
        let Ok(message) = serde_json::from_slice::<Value>(&body) else {
            return text(StatusCode::BAD_REQUEST, "invalid_payload");
        };
        if message["text"].as_str().is_none_or(str::is_empty)
            && message["blocks"].as_array().is_none_or(Vec::is_empty)
        {
            return text(StatusCode::BAD_REQUEST, "no_text");
        }
        let window = state.windows.entry(key.clone()).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            window.pop_front();
        }
        if !window.is_empty() {
            let wait = Duration::from_secs(1);
            state.lockouts.told(&key, now, wait);
            state.rate_limited += 1;
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                "rate_limited",
            )
                .into_response();
        }
        window.push_back(now);
        state.messages.entry(key).or_default().push(message);
    }
    if hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    text(StatusCode::OK, "ok")
}
