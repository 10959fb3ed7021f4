//! PagerDuty's Events API v2 (`POST /v2/enqueue`), as its reference
//! describes it: `routing_key` of exactly 32 characters, `event_action`
//! trigger / acknowledge / resolve, `dedup_key` required except on a
//! trigger (generated then), a trigger's `payload` with `summary` (at most
//! 1,024 characters), `source` and `severity` (critical / error / warning
//! / info). 202 `{"status":"success","message":"Event processed",
//! "dedup_key":…}`; an invalid event 400 `{"status":"invalid event",
//! "message":"Event object is invalid","errors":[…]}`; a body that is not
//! JSON 400 "Unrecognized object". At most 120 events a minute per routing
//! key (the figure PagerDuty's support gives), then 429 with no
//! `Retry-After` (the reference only says "retry after some time"); every
//! request inside a full window is counted as over the limit.
//!
//! Alerts are kept by `dedup_key`: a trigger opens (or updates) one, a
//! resolve closes it; a repeated trigger is de-duplicated into the same
//! alert, as PagerDuty does.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::chaos::{Chaos, Draw};

/// Events per routing key per minute.
pub const PER_MINUTE: usize = 120;

/// One alert, by dedup key.
#[derive(Debug, Clone, Default)]
pub struct Alert {
    /// Open (`triggered`, `acknowledged`) or closed (`resolved`).
    pub status: String,
    /// Acknowledges received for it.
    pub acknowledges: usize,
    /// Triggers received for it (a repeat updates the same alert).
    pub triggers: usize,
    /// Resolves received for it.
    pub resolves: usize,
    /// The newest trigger's payload.
    pub payload: Value,
}

/// A scripted answer to the next request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status (`{"status":"error"}`).
    Http(u16),
    /// Apply the event, then never answer.
    ApplyThenHang,
    /// Answer 400 quoting the whole request body (an intermediary that
    /// echoes what it got, routing key and all).
    EchoInvalid,
}

#[derive(Default)]
struct Inner {
    alerts: BTreeMap<String, Alert>,
    events: Vec<Value>,
    windows: HashMap<String, VecDeque<Instant>>,
    over_limit: usize,
    faults: VecDeque<Fault>,
    chaos: Option<Chaos>,
    generated: usize,
}

/// A running emulator.
#[derive(Clone)]
pub struct PagerDutyEmulator {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl PagerDutyEmulator {
    /// Start on a loopback port.
    pub async fn start() -> PagerDutyEmulator {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/v2/enqueue", post(enqueue))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        PagerDutyEmulator { addr, inner }
    }

    /// The `api_url` to configure.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every accepted event, oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.inner.lock().unwrap().events.clone()
    }

    /// The alerts by dedup key.
    pub fn alerts(&self) -> BTreeMap<String, Alert> {
        self.inner.lock().unwrap().alerts.clone()
    }

    /// Requests answered 429 (over 120 a minute for their routing key).
    pub fn over_limit(&self) -> usize {
        self.inner.lock().unwrap().over_limit
    }

    /// Queue faults for the next requests.
    pub fn inject(&self, faults: Vec<Fault>) {
        self.inner.lock().unwrap().faults.extend(faults);
    }

    /// From now on, fail a share of requests at random (`None`: stop).
    pub fn chaos(&self, chaos: Option<Chaos>) {
        self.inner.lock().unwrap().chaos = chaos;
    }
}

fn invalid(errors: Vec<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(
            json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
        ),
    )
        .into_response()
}

/// What is wrong with an event, as PagerDuty would list it.
fn problems(event: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    match event["routing_key"].as_str() {
        Some(k) if k.chars().count() == 32 => {}
        Some(_) => errors.push("Length of 'routing_key' is incorrect (should be 32 characters)".to_owned()),
        None => errors.push("'routing_key' is missing or blank".to_owned()),
    }
    let action = event["event_action"].as_str().unwrap_or("");
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        errors.push("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)".to_owned());
    }
    if action != "trigger" && event["dedup_key"].as_str().is_none_or(str::is_empty) {
        errors.push("'dedup_key' is missing or blank".to_owned());
    }
    if let Some(key) = event["dedup_key"].as_str()
        && key.chars().count() > 255
    {
        errors.push("'dedup_key' is too long (maximum is 255 characters)".to_owned());
    }
    if action == "trigger" {
        let payload = &event["payload"];
        match payload["summary"].as_str() {
            Some(s) if !s.is_empty() && s.chars().count() <= 1024 => {}
            Some(s) if s.chars().count() > 1024 => {
                errors.push("'payload.summary' is too long (maximum is 1024 characters)".to_owned())
            }
            _ => errors.push("'payload.summary' is missing or blank".to_owned()),
        }
        if payload["source"].as_str().is_none_or(str::is_empty) {
            errors.push("'payload.source' is missing or blank".to_owned());
        }
        if !payload["severity"]
            .as_str()
            .is_some_and(|s| ["critical", "error", "warning", "info"].contains(&s))
        {
            errors.push(
                "'payload.severity' is invalid (must be one of: critical, error, warning, info)".to_owned(),
            );
        }
    }
    errors
}

async fn enqueue(State(inner): State<Arc<Mutex<Inner>>>, body: Bytes) -> Response {
    let now = Instant::now();
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"status": "Unrecognized object", "message": "Event object format is unrecognized", "errors": ["JSON parse error"]})),
        )
            .into_response();
    };
    let mut hang = false;
    {
        let mut state = inner.lock().unwrap();
        let fault = state.faults.pop_front().or_else(|| {
            state.chaos.as_mut().and_then(|c| match c.draw() {
                Draw::Normal => None,
                Draw::ServerError => Some(Fault::Http(500)),
                Draw::Lost => Some(Fault::ApplyThenHang),
            })
        });
        match fault {
            Some(Fault::Http(status)) => {
                return (
                    StatusCode::from_u16(status).unwrap(),
                    axum::Json(json!({"status": "error", "message": "internal error"})),
                )
                    .into_response();
            }
            Some(Fault::EchoInvalid) => {
                return invalid(vec![format!(
                    "could not process {}",
                    String::from_utf8_lossy(&body)
                )]);
            }
            Some(Fault::ApplyThenHang) => hang = true,
            None => {}
        }
        let errors = problems(&event);
        if !errors.is_empty() {
            return invalid(errors);
        }
        let key = event["routing_key"].as_str().unwrap_or_default().to_owned();
        let window = state.windows.entry(key).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            window.pop_front();
        }
        if window.len() >= PER_MINUTE {
            state.over_limit += 1;
            return (StatusCode::TOO_MANY_REQUESTS, "Too many API calls at a time").into_response();
        }
        window.push_back(now);
        let dedup_key = match event["dedup_key"].as_str() {
            Some(k) if !k.is_empty() => k.to_owned(),
            _ => {
                state.generated += 1;
                format!("generated-{}", state.generated)
            }
        };
        let action = event["event_action"].as_str().unwrap_or_default().to_owned();
        let alert = state.alerts.entry(dedup_key.clone()).or_default();
        match action.as_str() {
            "trigger" => {
                // A trigger into an acknowledged alert is de-duplicated
                // into it: it stays acknowledged.
                if alert.status != "acknowledged" {
                    alert.status = "triggered".to_owned();
                }
                alert.triggers += 1;
                alert.payload = event["payload"].clone();
            }
            "acknowledge" => {
                // Only an open alert can be acknowledged; otherwise ignored.
                if alert.status == "triggered" {
                    alert.status = "acknowledged".to_owned();
                }
                alert.acknowledges += 1;
            }
            "resolve" => {
                // A resolve of a key with no open alert is accepted and ignored.
                if alert.triggers > 0 {
                    alert.status = "resolved".to_owned();
                }
                alert.resolves += 1;
            }
            _ => {}
        }
        state.events.push(event.clone());
        if !hang {
            return (
                StatusCode::ACCEPTED,
                axum::Json(
                    json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
                ),
            )
                .into_response();
        }
    }
    tokio::time::sleep(Duration::from_secs(3600)).await;
    StatusCode::GATEWAY_TIMEOUT.into_response()
}
