//! A Slack Web API emulator for the calls herald makes: `chat.postMessage`,
//! `chat.update`, `conversations.history`, `conversations.replies`.
//! Faithful where herald depends on it: bearer auth, JSON and form bodies,
//! `ts` ids, HTTP 200 `ok:false` errors, message metadata stored and
//! returned only with `include_all_metadata`, history pages (`limit`,
//! `oldest`, `cursor`, `has_more`, `response_metadata.next_cursor`),
//! threads (a post with `thread_ts` of a channel message is a reply: the
//! parent counts `reply_count`, the reply is left out of the channel's
//! history unless `reply_broadcast`; a `thread_ts` naming no message posts
//! to the channel, as Slack does; `conversations.replies` lists the parent
//! and its replies, oldest first, `thread_not_found` for a `ts` that is no
//! message), and every limit of every method herald calls, as Slack
//! documents them: `chat.postMessage` 1 per second per channel,
//! `chat.update` (Tier 3) 50 per minute per workspace,
//! `conversations.history` and `conversations.replies` Tier 3 (50 per
//! minute per workspace, each its own) or, for commercially distributed
//! non-Marketplace apps, 1 per minute with at most 15 messages. Over a
//! limit: 429 + `Retry-After` +
//! `{"ok":false,"error":"ratelimited"}`; a request for a bucket inside a
//! retry-after it was told is counted as a violation (see `lockout.rs`).
//! A request log, and injected faults (5xx, API errors, slow,
//! apply-then-drop).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

use super::chaos::{Chaos, Draw};
use super::lockout::{Early, Lockouts};
use super::slack_socket::SocketMode;

const POSTS_PER_CHANNEL: (usize, Duration) = (1, Duration::from_secs(1));
const UPDATES_PER_WORKSPACE: (usize, Duration) = (50, Duration::from_secs(60));
/// `apps.connections.open` is Tier 3.
const OPENS_PER_APP: (usize, Duration) = (50, Duration::from_secs(60));

/// Which `conversations.history` limits the emulated app has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum History {
    /// Tier 3: 50 calls per minute per workspace, `limit` up to 999.
    #[default]
    Tier3,
    /// Commercially distributed non-Marketplace apps (since 2025): 1 call
    /// per minute, at most 15 messages per call.
    Limited,
}

impl History {
    fn limit(self) -> (usize, Duration) {
        match self {
            History::Tier3 => (50, Duration::from_secs(60)),
            History::Limited => (1, Duration::from_secs(60)),
        }
    }

    fn max_page(self) -> usize {
        match self {
            History::Tier3 => 999,
            History::Limited => 15,
        }
    }
}

/// A fault applied to the next call.
#[derive(Debug, Clone)]
pub enum Fault {
    /// HTTP 200 `{"ok": false, "error": code}`.
    ApiError(&'static str),
    /// This HTTP status with a JSON error body.
    Http(u16),
    /// HTTP 429 with `Retry-After: secs`.
    RateLimited(u64),
    /// Wait, then handle normally.
    Delay(Duration),
    /// Apply the call, then never answer.
    ApplyThenHang,
}

/// How a channel behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// The bot is a member.
    Member,
    /// Exists, bot not invited.
    NotMember,
    /// Archived.
    Archived,
}

/// One call as seen.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `chat.postMessage`, `chat.update`, `conversations.history`.
    pub method: String,
    /// Arguments (JSON body, form fields or query).
    pub args: Value,
    /// HTTP status (0: never answered).
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    token: String,
    channels: HashMap<String, ChannelKind>,
    messages: HashMap<String, Vec<Value>>,
    posts: HashMap<String, VecDeque<Instant>>,
    updates: VecDeque<Instant>,
    histories: VecDeque<Instant>,
    /// `conversations.replies` calls in the window (its own limit).
    replies: VecDeque<Instant>,
    history: History,
    lockouts: Lockouts,
    chaos: Option<Chaos>,
    /// Every call answers 503 (Slack is down).
    outage: bool,
    faults: VecDeque<Fault>,
    /// Faults for the next requests of one bucket (by prefix), taken
    /// before the untargeted ones.
    targeted: Vec<(String, Fault)>,
    seen: Vec<Seen>,
    clock: u64,
    rate_limited: usize,
    /// Uses of each `response_url` (Slack allows 5 within 30 minutes).
    responses: HashMap<String, usize>,
    /// Socket Mode, when the app has it on.
    socket: Option<SocketMode>,
    /// `apps.connections.open` calls in the last minute (Tier 3).
    opens: VecDeque<Instant>,
    /// (channel, who) each new message notified: `U…`, `subteam:S…`,
    /// `here`, `channel`, `everyone`.
    pings: Vec<(String, String)>,
}

/// A running emulator.
#[derive(Clone)]
pub struct SlackEmulator {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl SlackEmulator {
    /// Start with a bot token and member channels (Tier 3 history).
    pub async fn start(token: &str, channels: &[&str]) -> SlackEmulator {
        SlackEmulator::start_with(token, channels, History::Tier3).await
    }

    /// Start with the given `conversations.history` limits.
    pub async fn start_with(token: &str, channels: &[&str], history: History) -> SlackEmulator {
        let clock = u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros(),
        )
        .unwrap();
        let inner = Arc::new(Mutex::new(Inner {
            token: token.to_owned(),
            channels: channels
                .iter()
                .map(|c| (c.to_string(), ChannelKind::Member))
                .collect(),
            clock,
            history,
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/api/{method}", post(call).get(call))
            .route("/actions/{channel}/{ts}", post(respond))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        SlackEmulator { addr, inner }
    }

    /// The `response_url` Slack puts in an interaction payload about the
    /// message `ts` of `channel` (on the emulator's host, as Slack's are on
    /// hooks.slack.com).
    pub fn response_url(&self, channel: &str, ts: &str) -> String {
        format!("http://{}/actions/{channel}/{ts}", self.addr)
    }

    /// The `api_url` to configure.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// Turn Socket Mode on for the app, with its app-level token.
    pub async fn enable_socket_mode(&self, app_token: &str) -> SocketMode {
        let socket = SocketMode::start(app_token).await;
        self.inner.lock().unwrap().socket = Some(socket.clone());
        socket
    }

    /// Add a channel of a given kind.
    pub fn channel(&self, id: &str, kind: ChannelKind) {
        self.inner.lock().unwrap().channels.insert(id.to_owned(), kind);
    }

    /// From now on, fail a share of calls at random (`None`: stop).
    pub fn chaos(&self, chaos: Option<Chaos>) {
        self.inner.lock().unwrap().chaos = chaos;
    }

    /// Slack goes down (every call answers 503) or comes back.
    pub fn outage(&self, down: bool) {
        self.inner.lock().unwrap().outage = down;
    }

    /// Queue faults for the next calls.
    pub fn inject(&self, faults: Vec<Fault>) {
        self.inner.lock().unwrap().faults.extend(faults);
    }

    /// Queue faults for the next requests whose rate-limit bucket starts
    /// with `bucket` (say, thread creations only), whatever other calls
    /// come first.
    pub fn inject_on(&self, bucket: &str, faults: Vec<Fault>) {
        let mut inner = self.inner.lock().unwrap();
        inner
            .targeted
            .extend(faults.into_iter().map(|f| (bucket.to_owned(), f)));
    }

    /// Every call so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.clone()
    }

    /// A channel's messages, oldest first.
    pub fn messages(&self, channel: &str) -> Vec<Value> {
        self.inner
            .lock()
            .unwrap()
            .messages
            .get(channel)
            .cloned()
            .unwrap_or_default()
    }

    /// Messages as herald would have posted them (metadata with each key),
    /// without going through the post limit: a channel's history.
    pub fn seed(&self, channel: &str, keys: &[String]) {
        let mut inner = self.inner.lock().unwrap();
        for key in keys {
            inner.clock += 100;
            let clock = inner.clock;
            let ts = format!("{}.{:06}", clock / 1_000_000, clock % 1_000_000);
            let message = json!({"type": "message", "ts": ts, "user": "U0HERALD", "bot_id": "B0HERALD", "text": key,
                "metadata": {"event_type": "herald_delivery", "event_payload": {"receipt_id": key}}});
            inner
                .messages
                .entry(channel.to_owned())
                .or_default()
                .push(message);
        }
    }

    /// Delete a message, as a person might.
    pub fn delete(&self, channel: &str, ts: &str) {
        if let Some(list) = self.inner.lock().unwrap().messages.get_mut(channel) {
            list.retain(|m| m["ts"] != ts);
        }
    }

    /// A channel's own messages (what its history lists), oldest first:
    /// no thread replies but those broadcast to the channel.
    pub fn top_level(&self, channel: &str) -> Vec<Value> {
        self.messages(channel).into_iter().filter(is_listed).collect()
    }

    /// The replies under message `parent` of a channel, oldest first.
    pub fn replies(&self, channel: &str, parent: &str) -> Vec<Value> {
        self.messages(channel)
            .into_iter()
            .filter(|m| m["thread_ts"] == parent && m["ts"] != parent)
            .collect()
    }

    /// How many 429s / `ratelimited` answers were given.
    pub fn rate_limited(&self) -> usize {
        self.inner.lock().unwrap().rate_limited
    }

    /// Requests that arrived inside a retry-after they had been told.
    pub fn early(&self) -> Vec<Early> {
        self.inner.lock().unwrap().lockouts.early.clone()
    }

    /// Who new messages notified, per channel.
    pub fn pings(&self) -> Vec<(String, String)> {
        self.inner.lock().unwrap().pings.clone()
    }

    /// Calls of one method so far.
    pub fn calls(&self, method: &str) -> usize {
        self.inner
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|s| s.method == method)
            .count()
    }
}

/// Whether a message shows in its channel (and its history): all but
/// thread replies that were not also sent to the channel.
fn is_listed(m: &Value) -> bool {
    m["thread_ts"].is_null() || m["thread_ts"] == m["ts"] || m["subtype"] == "thread_broadcast"
}

/// The limit bucket a call spends from (per channel for posts, per
/// workspace for the Tier 3 methods).
fn bucket(method: &str, args: &Value) -> String {
    match method {
        "chat.postMessage" => format!("post:{}", args["channel"].as_str().unwrap_or("")),
        other => other.to_owned(),
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn api_error(code: &str) -> Response {
    json_response(StatusCode::OK, json!({"ok": false, "error": code}))
}

/// 429 for `bucket`, telling the client to wait `retry_after` rounded up
/// to whole seconds (as Slack's `Retry-After` is), which is then enforced.
fn ratelimited(inner: &mut Inner, bucket: &str, retry_after: Duration) -> Response {
    inner.rate_limited += 1;
    let mut res = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        json!({"ok": false, "error": "ratelimited"}),
    );
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    inner
        .lockouts
        .told(bucket, Instant::now(), Duration::from_secs(secs));
    res.headers_mut().insert("retry-after", secs.into());
    res
}

/// Arguments from a JSON body, a form body (values that look like JSON are
/// parsed, as Slack does for `blocks` and `metadata`), or the query.
fn arguments(headers: &HeaderMap, body: &Bytes, query: &HashMap<String, String>) -> Value {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut args = Map::new();
    if ct.starts_with("application/json") {
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
            args = map;
        }
    } else if ct.starts_with("application/x-www-form-urlencoded") {
        for (k, v) in url_pairs(&String::from_utf8_lossy(body)) {
            let parsed = serde_json::from_str::<Value>(&v)
                .ok()
                .filter(|p| p.is_object() || p.is_array());
            args.insert(k, parsed.unwrap_or(Value::String(v)));
        }
    }
    for (k, v) in query {
        args.entry(k.clone()).or_insert(Value::String(v.clone()));
    }
    Value::Object(args)
}

fn url_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.replace('+', " ").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(&bytes[i + 1..i + 3]), 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn window_full(
    window: &mut VecDeque<Instant>,
    (limit, per): (usize, Duration),
    now: Instant,
) -> Option<Duration> {
    while window.front().is_some_and(|t| now.duration_since(*t) >= per) {
        window.pop_front();
    }
    if window.len() >= limit {
        return Some(per - now.duration_since(window[0]));
    }
    window.push_back(now);
    None
}

async fn call(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(method): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let args = arguments(&headers, &body, &query);
    let arrived = Instant::now();
    let bucket = bucket(&method, &args);
    let (fault, inside_retry_after) = {
        let mut state = inner.lock().unwrap();
        match state.lockouts.arrived(&bucket, arrived) {
            Some(left) => (None, Some(left)),
            None if state.outage => (Some(Fault::Http(503)), None),
            None => {
                let fault = take_targeted(&mut state.targeted, &bucket)
                    .or_else(|| state.faults.pop_front())
                    .or_else(|| {
                        state.chaos.as_mut().and_then(|c| match c.draw() {
                            Draw::Normal => None,
                            Draw::ServerError => Some(Fault::Http(500)),
                            Draw::Lost => Some(Fault::ApplyThenHang),
                        })
                    });
                (fault, None)
            }
        }
    };
    let mut hang = false;
    let early = match (fault, inside_retry_after) {
        (_, Some(left)) => {
            let mut state = inner.lock().unwrap();
            Some(ratelimited(&mut state, &bucket, left))
        }
        (fault, None) => match fault {
            Some(Fault::ApiError(code)) => Some(api_error(code)),
            Some(Fault::Http(status)) => Some(json_response(
                StatusCode::from_u16(status).unwrap(),
                json!({"ok": false, "error": "internal_error"}),
            )),
            Some(Fault::RateLimited(secs)) => {
                let mut state = inner.lock().unwrap();
                Some(ratelimited(&mut state, &bucket, Duration::from_secs(secs)))
            }
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                None
            }
            Some(Fault::ApplyThenHang) => {
                hang = true;
                None
            }
            None => None,
        },
    };
    let res = match early {
        Some(res) => res,
        None => handle(&inner, &method, &headers, &args),
    };
    let status = res.status().as_u16();
    inner.lock().unwrap().seen.push(Seen {
        method: method.clone(),
        args,
        status: if hang { 0 } else { status },
        at: arrived,
    });
    if hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    res
}

fn handle(inner: &Arc<Mutex<Inner>>, method: &str, headers: &HeaderMap, args: &Value) -> Response {
    let mut state = inner.lock().unwrap();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(token) = auth.strip_prefix("Bearer ") else {
        return api_error("not_authed");
    };
    let app_token = state.socket.as_ref().map(SocketMode::app_token);
    if method == "apps.connections.open" {
        let socket = state.socket.clone();
        return match (&app_token, &socket) {
            (Some(app), Some(socket)) if app == token => {
                let now = Instant::now();
                if let Some(wait) = window_full(&mut state.opens, OPENS_PER_APP, now) {
                    return ratelimited(&mut state, "apps.connections.open", wait);
                }
                let url = socket.open_url();
                json_response(StatusCode::OK, json!({"ok": true, "url": url}))
            }
            _ if token == state.token => api_error("not_allowed_token_type"),
            _ => api_error("invalid_auth"),
        };
    }
    if app_token.as_deref() == Some(token) {
        return api_error("not_allowed_token_type");
    }
    if token != state.token {
        return api_error("invalid_auth");
    }
    let channel = args["channel"].as_str().unwrap_or("").to_owned();
    match state.channels.get(&channel) {
        None => return api_error("channel_not_found"),
        Some(ChannelKind::NotMember) if !method.starts_with("conversations.") => {
            return api_error("not_in_channel");
        }
        Some(ChannelKind::Archived) if !method.starts_with("conversations.") => {
            return api_error("is_archived");
        }
        _ => {}
    }
    let now = Instant::now();
    match method {
        "chat.postMessage" => {
            let window = state.posts.entry(channel.clone()).or_default();
            if let Some(wait) = window_full(window, POSTS_PER_CHANNEL, now) {
                return ratelimited(&mut state, &format!("post:{channel}"), wait);
            }
            if args["text"].as_str().is_none_or(str::is_empty) && args["blocks"].is_null() {
                return api_error("no_text");
            }
            if let Err(why) = validate_blocks(&args["blocks"]) {
                return invalid_blocks(&why);
            }
            // Slack's ts is the server's clock (unique per channel).
            let wall = u64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_micros(),
            )
            .unwrap();
            state.clock = (state.clock + 100).max(wall);
            let ts = format!("{}.{:06}", state.clock / 1_000_000, state.clock % 1_000_000);
            let mut message = json!({"type": "message", "ts": ts, "user": "U0HERALD", "bot_id": "B0HERALD",
                                     "text": args["text"], "blocks": args["blocks"]});
            if !args["metadata"].is_null() {
                message["metadata"] = args["metadata"].clone();
            }
            // A reply goes under a message of the channel; a `thread_ts`
            // naming none posts to the channel itself.
            if let Some(parent_ts) = args["thread_ts"].as_str().filter(|t| !t.is_empty())
                && let Some(parent) = state
                    .messages
                    .get_mut(&channel)
                    .and_then(|list| list.iter_mut().find(|m| m["ts"] == parent_ts && is_listed(m)))
            {
                let parent_ts = parent["thread_ts"].as_str().unwrap_or(parent_ts).to_owned();
                parent["thread_ts"] = json!(parent_ts);
                parent["reply_count"] = json!(parent["reply_count"].as_u64().unwrap_or(0) + 1);
                parent["latest_reply"] = json!(ts);
                message["thread_ts"] = json!(parent_ts);
                message["parent_user_id"] = json!("U0HERALD");
                let broadcast = args["reply_broadcast"] == true || args["reply_broadcast"] == "true";
                if broadcast {
                    message["subtype"] = json!("thread_broadcast");
                }
            }
            // A new message notifies whom its text and mrkdwn mention.
            let pinged = slack_pings(args);
            state
                .pings
                .extend(pinged.into_iter().map(|p| (channel.clone(), p)));
            state
                .messages
                .entry(channel.clone())
                .or_default()
                .push(message.clone());
            json_response(
                StatusCode::OK,
                json!({"ok": true, "channel": channel, "ts": ts, "message": message}),
            )
        }
        "chat.update" => {
            if let Some(wait) = window_full(&mut state.updates, UPDATES_PER_WORKSPACE, now) {
                return ratelimited(&mut state, "chat.update", wait);
            }
            if let Err(why) = validate_blocks(&args["blocks"]) {
                return invalid_blocks(&why);
            }
            let ts = args["ts"].as_str().unwrap_or("").to_owned();
            let Some(message) = state
                .messages
                .get_mut(&channel)
                .and_then(|list| list.iter_mut().find(|m| m["ts"] == ts))
            else {
                return api_error("message_not_found");
            };
            message["text"] = args["text"].clone();
            message["blocks"] = args["blocks"].clone();
            message["edited"] = json!({"user": "U0HERALD", "ts": ts});
            let (text, message) = (message["text"].clone(), message.clone());
            json_response(
                StatusCode::OK,
                json!({"ok": true, "channel": channel, "ts": ts, "text": text, "message": message}),
            )
        }
        "conversations.history" => {
            let limit = state.history.limit();
            if let Some(wait) = window_full(&mut state.histories, limit, now) {
                return ratelimited(&mut state, "conversations.history", wait);
            }
            let with_metadata = args["include_all_metadata"].as_str() == Some("true")
                || args["include_all_metadata"].as_bool() == Some(true);
            let number = |v: &Value| v.as_str().and_then(|l| l.parse::<f64>().ok()).or(v.as_f64());
            let page = number(&args["limit"])
                .map_or(100, |l| l as usize)
                .clamp(1, state.history.max_page());
            let oldest = number(&args["oldest"]).unwrap_or(0.0);
            let latest = number(&args["latest"]).unwrap_or(f64::MAX);
            // The cursor is the ts of the first message of the next page.
            let before = args["cursor"]
                .as_str()
                .and_then(|c| c.strip_prefix("next_ts:"))
                .and_then(|t| t.parse::<f64>().ok())
                .unwrap_or(f64::MAX);
            let ts = |m: &Value| {
                m["ts"]
                    .as_str()
                    .and_then(|t| t.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            let range: Vec<Value> = state
                .messages
                .get(&channel)
                .map(|list| {
                    list.iter()
                        .rev()
                        .filter(|m| is_listed(m) && ts(m) > oldest && ts(m) <= latest && ts(m) <= before)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            page_answer(range, page, with_metadata, "next_ts:")
        }
        "conversations.replies" => {
            let limit = state.history.limit();
            if let Some(wait) = window_full(&mut state.replies, limit, now) {
                return ratelimited(&mut state, "conversations.replies", wait);
            }
            let with_metadata = args["include_all_metadata"].as_str() == Some("true")
                || args["include_all_metadata"].as_bool() == Some(true);
            let number = |v: &Value| v.as_str().and_then(|l| l.parse::<f64>().ok()).or(v.as_f64());
            let page = number(&args["limit"])
                .map_or(15, |l| l as usize)
                .clamp(1, state.history.max_page());
            let oldest = number(&args["oldest"]).unwrap_or(0.0);
            let parent_ts = args["ts"].as_str().unwrap_or("").to_owned();
            let list = state.messages.get(&channel).cloned().unwrap_or_default();
            let Some(parent) = list.iter().find(|m| m["ts"] == parent_ts.as_str()) else {
                return api_error("thread_not_found");
            };
            let thread_ts = parent["thread_ts"].as_str().unwrap_or(&parent_ts).to_owned();
            let ts = |m: &Value| {
                m["ts"]
                    .as_str()
                    .and_then(|t| t.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            // Oldest first; the cursor is the ts the next page starts at.
            let from = args["cursor"]
                .as_str()
                .and_then(|c| c.strip_prefix("from_ts:"))
                .and_then(|t| t.parse::<f64>().ok())
                .unwrap_or(f64::MIN);
            let range: Vec<Value> = list
                .iter()
                .filter(|m| m["ts"] == thread_ts.as_str() || m["thread_ts"] == thread_ts.as_str())
                .filter(|m| (m["ts"] == thread_ts.as_str() || ts(m) > oldest) && ts(m) >= from)
                .cloned()
                .collect();
            page_answer(range, page, with_metadata, "from_ts:")
        }
        other => api_error(&format!("unknown_method:{other}")),
    }
}

/// One page of `range` as Slack answers a history or replies call: at
/// most `page` messages (metadata only when asked for), `has_more`, and a
/// cursor naming where the next page starts (`prefix` + its first ts).
fn page_answer(range: Vec<Value>, page: usize, with_metadata: bool, prefix: &str) -> Response {
    let has_more = range.len() > page;
    let next_cursor = range
        .get(page)
        .map(|m| format!("{prefix}{}", m["ts"].as_str().unwrap_or("")));
    let messages: Vec<Value> = range
        .into_iter()
        .take(page)
        .map(|mut m| {
            if !with_metadata {
                m.as_object_mut().unwrap().remove("metadata");
            }
            m
        })
        .collect();
    json_response(
        StatusCode::OK,
        json!({"ok": true, "messages": messages, "has_more": has_more,
               "response_metadata": {"next_cursor": next_cursor.unwrap_or_default()}}),
    )
}

/// Block Kit's rules for the blocks herald sends (Slack's block and
/// element references): at most 50 blocks of a known type; a header's
/// plain text at most 150 characters; a section's text at most 3,000; a
/// context at most 10 elements; an actions block 1–25 elements, a button's
/// plain-text label at most 75 characters, `action_id` at most 255,
/// `value` at most 2,000, `style` primary or danger.
pub(super) fn validate_blocks(blocks: &Value) -> Result<(), String> {
    let Some(blocks) = blocks.as_array() else {
        return if blocks.is_null() {
            Ok(())
        } else {
            Err("blocks must be an array".to_owned())
        };
    };
    if blocks.len() > 50 {
        return Err("no more than 50 items allowed [json-pointer:/blocks]".to_owned());
    }
    let len = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    for (i, b) in blocks.iter().enumerate() {
        let at = format!("[json-pointer:/blocks/{i}]");
        match b["type"].as_str() {
            Some("header") => {
                if b["text"]["type"] != "plain_text" || len(&b["text"]["text"]) > 150 {
                    return Err(format!("must be plain_text of at most 150 characters {at}/text"));
                }
            }
            Some("section") => {
                if len(&b["text"]["text"]) > 3000 {
                    return Err(format!("must be less than 3001 characters {at}/text"));
                }
            }
            Some("context") => {
                if b["elements"]
                    .as_array()
                    .is_none_or(|e| e.is_empty() || e.len() > 10)
                {
                    return Err(format!("must have 1-10 elements {at}/elements"));
                }
            }
            Some("divider") => {}
            Some("actions") => {
                let elements = b["elements"].as_array().cloned().unwrap_or_default();
                if elements.is_empty() || elements.len() > 25 {
                    return Err(format!("must have 1-25 elements {at}/elements"));
                }
                for (j, e) in elements.iter().enumerate() {
                    let at = format!("{at}/elements/{j}");
                    if e["type"] != "button" {
                        return Err(format!("unsupported element type {at}"));
                    }
                    if e["text"]["type"] != "plain_text" || len(&e["text"]["text"]) > 75 {
                        return Err(format!("must be plain_text of at most 75 characters {at}/text"));
                    }
                    if len(&e["action_id"]) > 255 || len(&e["value"]) > 2000 {
                        return Err(format!("action_id or value too long {at}"));
                    }
                    if !(e["style"].is_null() || e["style"] == "primary" || e["style"] == "danger") {
                        return Err(format!("must be primary or danger {at}/style"));
                    }
                }
            }
            _ => return Err(format!("unsupported block type {at}")),
        }
    }
    Ok(())
}

fn invalid_blocks(why: &str) -> Response {
    json_response(
        StatusCode::OK,
        json!({"ok": false, "error": "invalid_blocks", "errors": [why]}),
    )
}

/// A `response_url` POST: `replace_original` replaces the message's text
/// and blocks (validated as `chat.update` does); each URL takes 5 uses.
async fn respond(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((channel, ts)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let args: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut state = inner.lock().unwrap();
    state.seen.push(Seen {
        method: "response_url".to_owned(),
        args: args.clone(),
        status: 200,
        at: Instant::now(),
    });
    let uses = state.responses.entry(format!("{channel}/{ts}")).or_default();
    *uses += 1;
    if *uses > 5 {
        return (StatusCode::NOT_FOUND, "used_url").into_response();
    }
    if args["text"].as_str().is_none_or(str::is_empty) && args["blocks"].is_null() {
        return (StatusCode::BAD_REQUEST, "no_text").into_response();
    }
    if let Err(why) = validate_blocks(&args["blocks"]) {
        return (StatusCode::BAD_REQUEST, format!("invalid_blocks: {why}")).into_response();
    }
    if args["replace_original"] != true {
        return json_response(StatusCode::OK, json!({"ok": true}));
    }
    let Some(message) = state
        .messages
        .get_mut(&channel)
        .and_then(|list| list.iter_mut().find(|m| m["ts"] == ts))
    else {
        return (StatusCode::NOT_FOUND, "message_not_found").into_response();
    };
    message["text"] = args["text"].clone();
    message["blocks"] = args["blocks"].clone();
    message["edited"] = json!({"user": "U0HERALD", "ts": ts});
    json_response(StatusCode::OK, json!({"ok": true}))
}

/// Whom a message mentions, as Slack parses it: `<@U…>`/`<@W…>`,
/// `<!subteam^S…>`, `<!here>`, `<!channel>`, `<!everyone>` in `text` and in
/// mrkdwn (never plain_text) block text. Escaped text (`&lt;@U1&gt;`) is no
/// mention.
fn slack_pings(args: &Value) -> Vec<String> {
    fn mrkdwn(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if o.get("type").and_then(Value::as_str) == Some("mrkdwn")
                    && let Some(t) = o.get("text").and_then(Value::as_str)
                {
                    out.push(t.to_owned());
                }
                o.values().for_each(|v| mrkdwn(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| mrkdwn(v, out)),
            _ => {}
        }
    }
    let mut texts = vec![args["text"].as_str().unwrap_or("").to_owned()];
    mrkdwn(&args["blocks"], &mut texts);
    let mut out = Vec::new();
    for text in texts {
        let mut rest = text.as_str();
        while let Some(at) = rest.find('<') {
            rest = &rest[at + 1..];
            let Some(end) = rest.find('>') else { break };
            let inner = &rest[..end];
            let who = if let Some(u) = inner.strip_prefix('@') {
                Some(u.split('|').next().unwrap_or(u).to_owned())
            } else if let Some(g) = inner.strip_prefix("!subteam^") {
                Some(format!("subteam:{}", g.split('|').next().unwrap_or(g)))
            } else {
                match inner {
                    "!here" => Some("here".to_owned()),
                    "!channel" => Some("channel".to_owned()),
                    "!everyone" => Some("everyone".to_owned()),
                    _ => None,
                }
            };
            if let Some(who) = who
                && !out.contains(&who)
            {
                out.push(who);
            }
        }
    }
    out
}

/// The first fault queued for a bucket `bucket` starts with, taken out.
fn take_targeted(targeted: &mut Vec<(String, Fault)>, bucket: &str) -> Option<Fault> {
    let at = targeted
        .iter()
        .position(|(prefix, _)| bucket.starts_with(prefix.as_str()))?;
    Some(targeted.remove(at).1)
}
