//! A Discord REST emulator (API v10, the two calls herald makes), faithful
//! where herald depends on it: bot-token auth, message objects with
//! snowflake ids, error bodies with `code` and `message` (10003, 10008,
//! 50001, 50013, 50035 with nested `errors`), per-channel fixed-window
//! buckets for creates and edits (5 per 5 s) plus a global 50 per second,
//! `X-RateLimit-*` headers and 429 bodies, `nonce` + `enforce_nonce`
//! de-duplication, threads started from a message (`POST
//! /channels/{id}/messages/{message}/threads`: the thread is a channel
//! with the message's id, 160004 when the message has one already, 10008
//! when it is gone, 50035 for a bad name or archive duration, no thread in
//! a thread; its own 5 per 5 s bucket per channel; messages then go into
//! the thread's own channel and buckets), and a record of every request. A request for a bucket
//! inside a retry-after it was told is counted as a violation (see
//! `lockout.rs`). Faults can be injected: error statuses, slow answers,
//! and "apply then never answer".

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{Value, json};

use super::chaos::{Chaos, Draw};
use super::discord_gateway::DiscordGateway;
use super::lockout::{Early, Lockouts};

/// Discord's epoch for snowflakes (2015-01-01).
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
const BUCKET_LIMIT: u32 = 5;
const BUCKET_WINDOW: Duration = Duration::from_secs(5);
const GLOBAL_LIMIT: usize = 50;
const NONCE_WINDOW: Duration = Duration::from_secs(120);

/// A fault applied to the next request (after the auth check).
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and a Discord error body (`code`, `message`).
    Error(u16, i64, &'static str),
    /// Answer 502 with a plain-text body, like Discord's edge does.
    BadGateway,
    /// A global 429 with this many seconds.
    GlobalRateLimit(f64),
    /// Wait, then handle normally.
    Delay(Duration),
    /// Apply a create or edit, then never answer.
    ApplyThenHang,
}

/// One request as seen by the emulator.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `POST`, `PATCH`, or `THREAD` (a thread started from a message).
    pub method: &'static str,
    /// Channel id.
    pub channel: String,
    /// The JSON body.
    pub body: Value,
    /// The status answered (0 when it never answered).
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

#[derive(Default)]
struct Bucket {
    start: Option<Instant>,
    count: u32,
}

impl Bucket {
    /// Count a request; `Err(retry_after)` when the window is full.
    fn take(&mut self, now: Instant) -> Result<(u32, Duration), Duration> {
        let start = match self.start {
            Some(s) if now.duration_since(s) < BUCKET_WINDOW => s,
            _ => {
                self.start = Some(now);
                self.count = 0;
                now
            }
        };
        let reset_after = BUCKET_WINDOW - now.duration_since(start);
        if self.count >= BUCKET_LIMIT {
            return Err(reset_after);
        }
        self.count += 1;
        Ok((BUCKET_LIMIT - self.count, reset_after))
    }
}

#[derive(Default)]
struct Channel {
    messages: BTreeMap<u64, Value>,
    nonces: HashMap<String, (u64, Instant)>,
    creates: Bucket,
    edits: Bucket,
    /// Threads started from this channel's messages.
    threads: Bucket,
    /// For a thread: the channel it was started in, and its name.
    thread_of: Option<(String, String)>,
    /// The bot lacks Create Public Threads here.
    no_threads: bool,
}

#[derive(Default)]
struct Inner {
    token: String,
    channels: HashMap<String, Channel>,
    forbidden: HashMap<String, (i64, &'static str)>,
    faults: VecDeque<Fault>,
    /// Faults for the next requests of one bucket (by prefix), taken
    /// before the untargeted ones.
    targeted: Vec<(String, Fault)>,
    seen: Vec<Seen>,
    global: VecDeque<Instant>,
    lockouts: Lockouts,
    chaos: Option<Chaos>,
    next_seq: u64,
    rate_limited: usize,
    gateway: Option<DiscordGateway>,
    /// (channel, who) each new message notified: `user:<id>`, `role:<id>`,
    /// `everyone`.
    pings: Vec<(String, String)>,
}

/// A running emulator.
#[derive(Clone)]
pub struct DiscordEmulator {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    /// Its Gateway (a bot without an interactions endpoint connects there).
    pub gateway: DiscordGateway,
}

impl DiscordEmulator {
    /// Start with a bot token and the channels that exist.
    pub async fn start(token: &str, channels: &[&str]) -> DiscordEmulator {
        let gateway = DiscordGateway::start(token).await;
        let inner = Arc::new(Mutex::new(Inner {
            token: token.to_owned(),
            channels: channels
                .iter()
                .map(|c| (c.to_string(), Channel::default()))
                .collect(),
            gateway: Some(gateway.clone()),
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/api/v10/channels/{channel}/messages", post(create))
            .route("/api/v10/channels/{channel}/messages/{message}", patch(edit))
            .route(
                "/api/v10/channels/{channel}/messages/{message}/threads",
                post(start_thread),
            )
            .route("/api/v10/gateway", get(gateway_url))
            .route("/api/v10/gateway/bot", get(gateway_bot))
            .route(
                "/api/v10/interactions/{id}/{token}/callback",
                post(interaction_callback),
            )
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        DiscordEmulator { addr, inner, gateway }
    }

    /// A press of the button `custom_id` on message `message_id` of
    /// `channel` by `user`, as the Gateway carries it (the message as
    /// Discord stores it); for [`DiscordGateway::dispatch`].
    pub fn press_interaction(&self, channel: &str, message_id: &str, custom_id: &str, user: &str) -> Value {
        let id: u64 = message_id.parse().unwrap();
        let message = self.inner.lock().unwrap().channels[channel].messages[&id].clone();
        json!({
            "type": 3, "guild_id": "200000000000000001", "channel_id": channel,
            "channel": {"id": channel, "type": 0, "name": "ops", "guild_id": "200000000000000001"},
            "member": member(user),
            "message": message,
            "data": {"custom_id": custom_id, "component_type": 2},
        })
    }

    /// `/herald <subcommand> [run]` in `channel` by `user`, as the Gateway
    /// carries it; for [`DiscordGateway::dispatch`].
    pub fn command_interaction(
        &self,
        channel: &str,
        subcommand: &str,
        run: Option<&str>,
        user: &str,
    ) -> Value {
        let options: Vec<Value> = run
            .map(|r| json!({"name": "run", "type": 3, "value": r}))
            .into_iter()
            .collect();
        json!({
            "type": 2, "guild_id": "200000000000000001", "channel_id": channel,
            "channel": {"id": channel, "type": 0, "name": "ops", "guild_id": "200000000000000001"},
            "member": member(user),
            "data": {"id": "300000000000000001", "name": "herald", "type": 1,
                     "options": [{"name": subcommand, "type": 1, "options": options}]},
        })
    }

    /// The `api_url` to configure.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/v10", self.addr)
    }

    /// Make a channel exist but refuse the bot (50001 Missing Access or
    /// 50013 Missing Permissions).
    pub fn forbid(&self, channel: &str, code: i64) {
        let message = if code == 50013 {
            "Missing Permissions"
        } else {
            "Missing Access"
        };
        let mut inner = self.inner.lock().unwrap();
        inner.channels.entry(channel.to_owned()).or_default();
        inner.forbidden.insert(channel.to_owned(), (code, message));
    }

    /// From now on, fail a share of requests at random (`None`: stop).
    pub fn chaos(&self, chaos: Option<Chaos>) {
        self.inner.lock().unwrap().chaos = chaos;
    }

    /// Queue faults for the next requests.
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

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.clone()
    }

    /// The messages of a channel, oldest first.
    pub fn messages(&self, channel: &str) -> Vec<Value> {
        let inner = self.inner.lock().unwrap();
        inner
            .channels
            .get(channel)
            .map(|c| c.messages.values().cloned().collect())
            .unwrap_or_default()
    }

    /// How many 429s were answered.
    pub fn rate_limited(&self) -> usize {
        self.inner.lock().unwrap().rate_limited
    }

    /// Requests that arrived inside a retry-after they had been told.
    pub fn early(&self) -> Vec<Early> {
        self.inner.lock().unwrap().lockouts.early.clone()
    }
}

fn error(status: u16, code: i64, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    (status, axum::Json(json!({"message": message, "code": code}))).into_response()
}

fn rate_limited(inner: &mut Inner, retry_after: Duration, global: bool, bucket: &str) -> Response {
    inner.rate_limited += 1;
    let secs = (retry_after.as_secs_f64() * 1000.0).ceil() / 1000.0;
    let told = if global { "global" } else { bucket };
    inner
        .lockouts
        .told(told, Instant::now(), Duration::from_secs_f64(secs));
    let mut res = (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(json!({"message": "You are being rate limited.", "retry_after": (secs * 1000.0).round() / 1000.0, "global": global})),
    )
        .into_response();
    let h = res.headers_mut();
    h.insert("retry-after", HeaderValue::from(secs.ceil() as u64));
    h.insert(
        "x-ratelimit-scope",
        HeaderValue::from_static(if global { "global" } else { "user" }),
    );
    if global {
        h.insert("x-ratelimit-global", HeaderValue::from_static("true"));
    } else {
        h.insert("x-ratelimit-bucket", HeaderValue::from_str(bucket).unwrap());
        h.insert("x-ratelimit-limit", HeaderValue::from(BUCKET_LIMIT));
        h.insert("x-ratelimit-remaining", HeaderValue::from(0));
        h.insert(
            "x-ratelimit-reset-after",
            HeaderValue::from_str(&format!("{secs:.3}")).unwrap(),
        );
    }
    res
}

fn with_bucket_headers(mut res: Response, bucket: &str, remaining: u32, reset_after: Duration) -> Response {
    let h = res.headers_mut();
    let reset_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + reset_after;
    h.insert("x-ratelimit-limit", HeaderValue::from(BUCKET_LIMIT));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    h.insert(
        "x-ratelimit-reset",
        HeaderValue::from_str(&format!("{:.3}", reset_at.as_secs_f64())).unwrap(),
    );
    h.insert(
        "x-ratelimit-reset-after",
        HeaderValue::from_str(&format!("{:.3}", reset_after.as_secs_f64())).unwrap(),
    );
    h.insert("x-ratelimit-bucket", HeaderValue::from_str(bucket).unwrap());
    res
}

fn invalid_form(field: &str, max: usize) -> Response {
    let mut errors = json!({});
    let mut cursor = &mut errors;
    for part in field.split('.') {
        cursor = cursor.as_object_mut().unwrap().entry(part).or_insert(json!({}));
    }
    *cursor = json!({"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": format!("Must be {max} or fewer in length.")}]});
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"code": 50035, "errors": errors, "message": "Invalid Form Body"})),
    )
        .into_response()
}

fn chars(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

/// Discord's length rules for content and embeds.
fn validate(body: &Value) -> Result<(), Response> {
    if chars(&body["content"]) > 2000 {
        return Err(invalid_form("content", 2000));
    }
    if chars(&body["nonce"]) > 25 {
        return Err(invalid_form("nonce", 25));
    }
    let embeds = body["embeds"].as_array().cloned().unwrap_or_default();
    if embeds.len() > 10 {
        return Err(invalid_form("embeds", 10));
    }
    for (i, e) in embeds.iter().enumerate() {
        let mut total = chars(&e["title"]) + chars(&e["description"]) + chars(&e["footer"]["text"]);
        if chars(&e["title"]) > 256 {
            return Err(invalid_form(&format!("embeds.{i}.title"), 256));
        }
        if chars(&e["description"]) > 4096 {
            return Err(invalid_form(&format!("embeds.{i}.description"), 4096));
        }
        let fields = e["fields"].as_array().cloned().unwrap_or_default();
        if fields.len() > 25 {
            return Err(invalid_form(&format!("embeds.{i}.fields"), 25));
        }
        for (j, f) in fields.iter().enumerate() {
            if chars(&f["name"]) > 256 {
                return Err(invalid_form(&format!("embeds.{i}.fields.{j}.name"), 256));
            }
            if chars(&f["value"]) > 1024 {
                return Err(invalid_form(&format!("embeds.{i}.fields.{j}.value"), 1024));
            }
            total += chars(&f["name"]) + chars(&f["value"]);
        }
        if total > 6000 {
            return Err(invalid_form(&format!("embeds.{i}"), 6000));
        }
    }
    validate_components(&body["components"])?;
    if chars(&body["content"]) == 0 && embeds.is_empty() {
        return Err(error(400, 50006, "Cannot send an empty message"));
    }
    Ok(())
}

/// Discord's rules for message components (action rows of buttons): at
/// most 5 rows of 1–5 buttons; a button has a style 1–5 and a label of at
/// most 80 characters; a link button (style 5) has a `url` and no
/// `custom_id`, the others a `custom_id` of 1–100 characters.
fn validate_components(components: &Value) -> Result<(), Response> {
    let Some(rows) = components.as_array() else {
        return if components.is_null() {
            Ok(())
        } else {
            Err(invalid_form("components", 5))
        };
    };
    if rows.len() > 5 {
        return Err(invalid_form("components", 5));
    }
    for (i, row) in rows.iter().enumerate() {
        let buttons = row["components"].as_array().cloned().unwrap_or_default();
        if row["type"] != 1 || buttons.is_empty() || buttons.len() > 5 {
            return Err(invalid_form(&format!("components.{i}.components"), 5));
        }
        for (j, b) in buttons.iter().enumerate() {
            let at = format!("components.{i}.components.{j}");
            let style = b["style"].as_u64().unwrap_or(0);
            if b["type"] != 2 || !(1..=5).contains(&style) {
                return Err(invalid_form(&format!("{at}.style"), 5));
            }
            if chars(&b["label"]) > 80 {
                return Err(invalid_form(&format!("{at}.label"), 80));
            }
            let id = chars(&b["custom_id"]);
            if style == 5 {
                if b["url"].as_str().is_none() || id > 0 {
                    return Err(invalid_form(&format!("{at}.url"), 512));
                }
            } else if !(1..=100).contains(&id) {
                return Err(invalid_form(&format!("{at}.custom_id"), 100));
            }
        }
    }
    Ok(())
}

fn now_iso() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}000+00:00",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Whom a message's content mentions, as Discord parses it under the
/// request's `allowed_mentions` (none given: everything is parsed).
#[derive(Default)]
struct Mentioned {
    users: Vec<String>,
    roles: Vec<String>,
    everyone: bool,
}

fn mentioned(body: &Value) -> Mentioned {
    let content = body["content"].as_str().unwrap_or("");
    let allowed = &body["allowed_mentions"];
    let parses = |kind: &str| {
        allowed.is_null()
            || allowed["parse"]
                .as_array()
                .is_some_and(|p| p.iter().any(|k| k == kind))
    };
    let listed = |key: &str, id: &str| {
        allowed[key]
            .as_array()
            .is_some_and(|l| l.iter().any(|v| v.as_str() == Some(id)))
    };
    let mut out = Mentioned::default();
    let mut rest = content;
    while let Some(at) = rest.find("<@") {
        rest = &rest[at + 2..];
        let (role, tail) = match rest.strip_prefix('&') {
            Some(t) => (true, t),
            None => (false, rest.strip_prefix('!').unwrap_or(rest)),
        };
        let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() || !tail[digits.len()..].starts_with('>') {
            continue;
        }
        if role && (parses("roles") || listed("roles", &digits)) && !out.roles.contains(&digits) {
            out.roles.push(digits);
        } else if !role && (parses("users") || listed("users", &digits)) && !out.users.contains(&digits) {
            out.users.push(digits);
        }
    }
    out.everyone = parses("everyone") && (content.contains("@everyone") || content.contains("@here"));
    out
}

/// Who a stored message notified.
fn pings_of(message: &Value) -> Vec<String> {
    let mut out: Vec<String> = message["mentions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["id"].as_str().map(|id| format!("user:{id}")))
        .collect();
    out.extend(
        message["mention_roles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(|id| format!("role:{id}"))),
    );
    if message["mention_everyone"] == true {
        out.push("everyone".to_owned());
    }
    out
}

fn message(id: u64, channel: &str, body: &Value, edited: Option<String>) -> Value {
    let mentioned = mentioned(body);
    let embeds: Vec<Value> = body["embeds"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut e| {
            e["type"] = json!("rich");
            e
        })
        .collect();
    let mut m = json!({
        "id": id.to_string(),
        "channel_id": channel,
        "author": {"id": "100000000000000001", "username": "herald", "discriminator": "0",
                   "global_name": null, "avatar": null, "bot": true},
        "content": body["content"].as_str().unwrap_or(""),
        "timestamp": now_iso(),
        "edited_timestamp": edited,
        "tts": false,
        "mention_everyone": mentioned.everyone,
        "mentions": mentioned.users.iter().map(|id| json!({"id": id, "username": format!("user{id}"),
            "discriminator": "0", "global_name": null, "avatar": null})).collect::<Vec<_>>(),
        "mention_roles": mentioned.roles,
        "attachments": [],
        "embeds": embeds,
        "components": body["components"].as_array().cloned().unwrap_or_default(),
        "pinned": false,
        "type": 0,
        "flags": 0
    });
    if let Some(n) = body.get("nonce") {
        m["nonce"] = n.clone();
    }
    m
}

enum Next {
    Answer(Response),
    Hang,
}

/// Auth, retry-afters in force, faults, channel access and the global
/// limit, common to both calls.
/// One request of the bot's global 50 per second (every REST call but the
/// interaction endpoints).
fn spend_global(state: &mut Inner, now: Instant) -> Result<(), Response> {
    while state
        .global
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        state.global.pop_front();
    }
    if state.global.len() >= GLOBAL_LIMIT {
        let wait = Duration::from_secs(1) - now.duration_since(state.global[0]);
        return Err(rate_limited(state, wait, true, "global"));
    }
    state.global.push_back(now);
    Ok(())
}

/// `GET /gateway` and `/gateway/bot` spend from the global limit like any
/// authenticated REST call, and a request inside a global retry-after is
/// counted as early.
fn gateway_gate(state: &mut Inner, headers: &HeaderMap, needs_auth: bool) -> Result<(), Response> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let authorized = auth == format!("Bot {}", state.token);
    if needs_auth && !authorized {
        return Err(error(401, 0, "401: Unauthorized"));
    }
    if !authorized {
        return Ok(());
    }
    let now = Instant::now();
    if let Some(left) = state.lockouts.arrived("global", now) {
        return Err(rate_limited(state, left, true, "global"));
    }
    spend_global(state, now)
}

async fn gate(
    inner: &Arc<Mutex<Inner>>,
    headers: &HeaderMap,
    channel: &str,
    bucket: &str,
) -> Result<bool, Response> {
    let fault = {
        let mut state = inner.lock().unwrap();
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth != format!("Bot {}", state.token) {
            return Err(error(401, 0, "401: Unauthorized"));
        }
        let now = Instant::now();
        if let Some(left) = state.lockouts.arrived("global", now) {
            return Err(rate_limited(&mut state, left, true, "global"));
        }
        if let Some(left) = state.lockouts.arrived(bucket, now) {
            return Err(rate_limited(&mut state, left, false, bucket));
        }
        spend_global(&mut state, now)?;
        take_targeted(&mut state.targeted, bucket)
            .or_else(|| state.faults.pop_front())
            .or_else(|| {
                state.chaos.as_mut().and_then(|c| match c.draw() {
                    Draw::Normal => None,
                    Draw::ServerError => Some(Fault::Error(500, 0, "500: Internal Server Error")),
                    Draw::Lost => Some(Fault::ApplyThenHang),
                })
            })
    };
    let mut hang = false;
    match fault {
        Some(Fault::Error(status, code, message)) => return Err(error(status, code, message)),
        Some(Fault::BadGateway) => {
            return Err((StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>").into_response());
        }
        Some(Fault::GlobalRateLimit(secs)) => {
            let mut state = inner.lock().unwrap();
            return Err(rate_limited(
                &mut state,
                Duration::from_secs_f64(secs),
                true,
                "global",
            ));
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::ApplyThenHang) => hang = true,
        None => {}
    }
    let state = inner.lock().unwrap();
    if let Some((code, message)) = state.forbidden.get(channel) {
        return Err(error(403, *code, message));
    }
    if !state.channels.contains_key(channel) {
        return Err(error(404, 10003, "Unknown Channel"));
    }
    Ok(hang)
}

fn record(inner: &Arc<Mutex<Inner>>, method: &'static str, channel: &str, body: &Value, status: u16) {
    inner.lock().unwrap().seen.push(Seen {
        method,
        channel: channel.to_owned(),
        body: body.clone(),
        status,
        at: Instant::now(),
    });
}

async fn finish(
    inner: &Arc<Mutex<Inner>>,
    method: &'static str,
    channel: &str,
    body: &Value,
    next: Next,
) -> Response {
    match next {
        Next::Answer(res) => {
            record(inner, method, channel, body, res.status().as_u16());
            res
        }
        Next::Hang => {
            record(inner, method, channel, body, 0);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

async fn create(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let next = match gate(&inner, &headers, &channel, &format!("create-{channel}")).await {
        Err(res) => Next::Answer(res),
        Ok(hang) => {
            let answer = create_message(&inner, &channel, &body);
            if hang && answer.status().is_success() {
                Next::Hang
            } else {
                Next::Answer(answer)
            }
        }
    };
    finish(&inner, "POST", &channel, &body, next).await
}

fn create_message(inner: &Arc<Mutex<Inner>>, channel: &str, body: &Value) -> Response {
    if let Err(res) = validate(body) {
        return res;
    }
    let mut state = inner.lock().unwrap();
    let now = Instant::now();
    let bucket = format!("create-{channel}");
    // A repeated nonce with enforce_nonce returns the first message.
    if let (Some(nonce), Some(true)) = (body["nonce"].as_str(), body["enforce_nonce"].as_bool()) {
        let ch = state.channels.get_mut(channel).unwrap();
        if let Some((id, when)) = ch.nonces.get(nonce).copied()
            && now.duration_since(when) < NONCE_WINDOW
            && let Some(existing) = ch.messages.get(&id).cloned()
        {
            return (StatusCode::OK, axum::Json(existing)).into_response();
        }
    }
    let taken = state.channels.get_mut(channel).unwrap().creates.take(now);
    let (remaining, reset_after) = match taken {
        Ok(v) => v,
        Err(retry_after) => return rate_limited(&mut state, retry_after, false, &bucket),
    };
    state.next_seq += 1;
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let id = ((ms - DISCORD_EPOCH_MS) << 22) | (state.next_seq & 0x3F_FFFF);
    let msg = message(id, channel, body, None);
    // A new message notifies whom it mentions (edits notify no one).
    let pinged = pings_of(&msg);
    state
        .pings
        .extend(pinged.into_iter().map(|p| (channel.to_owned(), p)));
    let ch = state.channels.get_mut(channel).unwrap();
    ch.messages.insert(id, msg.clone());
    if let Some(nonce) = body["nonce"].as_str() {
        ch.nonces.insert(nonce.to_owned(), (id, now));
    }
    with_bucket_headers(
        (StatusCode::OK, axum::Json(msg)).into_response(),
        &bucket,
        remaining,
        reset_after,
    )
}

async fn edit(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((channel, message_id)): Path<(String, String)>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let next = match gate(&inner, &headers, &channel, &format!("edit-{channel}")).await {
        Err(res) => Next::Answer(res),
        Ok(hang) => {
            let answer = edit_message(&inner, &channel, &message_id, &body);
            if hang && answer.status().is_success() {
                Next::Hang
            } else {
                Next::Answer(answer)
            }
        }
    };
    finish(&inner, "PATCH", &channel, &body, next).await
}

fn edit_message(inner: &Arc<Mutex<Inner>>, channel: &str, message_id: &str, body: &Value) -> Response {
    if let Err(res) = validate(body) {
        return res;
    }
    let mut state = inner.lock().unwrap();
    let id: u64 = message_id.parse().unwrap_or(0);
    if !state.channels[channel].messages.contains_key(&id) {
        return error(404, 10008, "Unknown Message");
    }
    let bucket = format!("edit-{channel}");
    let taken = state
        .channels
        .get_mut(channel)
        .unwrap()
        .edits
        .take(Instant::now());
    let (remaining, reset_after) = match taken {
        Ok(v) => v,
        Err(retry_after) => return rate_limited(&mut state, retry_after, false, &bucket),
    };
    let ch = state.channels.get_mut(channel).unwrap();
    let old = ch.messages[&id].clone();
    let mut updated = message(id, channel, body, Some(now_iso()));
    updated["timestamp"] = old["timestamp"].clone();
    // An edit without `components` keeps the message's.
    if body.get("components").is_none() {
        updated["components"] = old["components"].clone();
    }
    if let Some(n) = old.get("nonce") {
        updated["nonce"] = n.clone();
    }
    ch.messages.insert(id, updated.clone());
    with_bucket_headers(
        (StatusCode::OK, axum::Json(updated)).into_response(),
        &bucket,
        remaining,
        reset_after,
    )
}

/// `POST /channels/{id}/messages/{message}/threads`: a public thread from
/// a message, which takes the message's id.
async fn start_thread(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((channel, message_id)): Path<(String, String)>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let next = match gate(&inner, &headers, &channel, &format!("thread-{channel}")).await {
        Err(res) => Next::Answer(res),
        Ok(hang) => {
            let answer = create_thread(&inner, &channel, &message_id, &body);
            if hang && answer.status().is_success() {
                Next::Hang
            } else {
                Next::Answer(answer)
            }
        }
    };
    finish(&inner, "THREAD", &channel, &body, next).await
}

fn create_thread(inner: &Arc<Mutex<Inner>>, channel: &str, message_id: &str, body: &Value) -> Response {
    let name = body["name"].as_str().unwrap_or("");
    if name.trim().is_empty() || name.chars().count() > 100 {
        return invalid_form("name", 100);
    }
    if !(body["auto_archive_duration"].is_null()
        || [60, 1440, 4320, 10080].contains(&body["auto_archive_duration"].as_i64().unwrap_or(0)))
    {
        return error(400, 50035, "Invalid Form Body");
    }
    let mut state = inner.lock().unwrap();
    if state.channels[channel].no_threads {
        return error(403, 50013, "Missing Permissions");
    }
    if state.channels[channel].thread_of.is_some() {
        return error(400, 50024, "Cannot execute action on this channel type");
    }
    let id: u64 = message_id.parse().unwrap_or(0);
    let Some(message) = state.channels[channel].messages.get(&id).cloned() else {
        return error(404, 10008, "Unknown Message");
    };
    if state.channels.contains_key(&id.to_string()) || !message["thread"].is_null() {
        return error(400, 160004, "A thread has already been created for this message");
    }
    let bucket = format!("thread-{channel}");
    let taken = state
        .channels
        .get_mut(channel)
        .unwrap()
        .threads
        .take(Instant::now());
    let (remaining, reset_after) = match taken {
        Ok(v) => v,
        Err(retry_after) => return rate_limited(&mut state, retry_after, false, &bucket),
    };
    let thread = json!({
        "id": id.to_string(), "type": 11, "guild_id": "200000000000000001", "parent_id": channel,
        "owner_id": "100000000000000001", "name": name, "message_count": 0, "member_count": 1,
        "thread_metadata": {"archived": false, "locked": false,
                            "auto_archive_duration": body["auto_archive_duration"].as_i64().unwrap_or(4320)}
    });
    state.channels.insert(
        id.to_string(),
        Channel {
            thread_of: Some((channel.to_owned(), name.to_owned())),
            ..Channel::default()
        },
    );
    let ch = state.channels.get_mut(channel).unwrap();
    if let Some(m) = ch.messages.get_mut(&id) {
        m["thread"] = thread.clone();
        m["flags"] = json!(m["flags"].as_u64().unwrap_or(0) | 32);
    }
    with_bucket_headers(
        (StatusCode::CREATED, axum::Json(thread)).into_response(),
        &bucket,
        remaining,
        reset_after,
    )
}

impl DiscordEmulator {
    /// Threads started from a channel's messages: (thread id, name).
    pub fn threads(&self, channel: &str) -> Vec<(String, String)> {
        let inner = self.inner.lock().unwrap();
        let mut out: Vec<(String, String)> = inner
            .channels
            .iter()
            .filter_map(|(id, ch)| match &ch.thread_of {
                Some((parent, name)) if parent == channel => Some((id.clone(), name.clone())),
                _ => None,
            })
            .collect();
        out.sort();
        out
    }

    /// Take Create Public Threads away from the bot in `channel`.
    pub fn forbid_threads(&self, channel: &str) {
        self.inner
            .lock()
            .unwrap()
            .channels
            .get_mut(channel)
            .unwrap()
            .no_threads = true;
    }

    /// Delete a thread, as a moderator might (its starter message stays).
    pub fn delete_thread(&self, thread: &str) {
        let mut inner = self.inner.lock().unwrap();
        let Some(ch) = inner.channels.remove(thread) else {
            return;
        };
        if let Some((parent, _)) = ch.thread_of
            && let Some(m) = inner
                .channels
                .get_mut(&parent)
                .and_then(|p| p.messages.get_mut(&thread.parse::<u64>().unwrap_or(0)))
        {
            m.as_object_mut().unwrap().remove("thread");
        }
    }

    /// Apply an interaction response to the message whose component was
    /// pressed, as Discord does: `UPDATE_MESSAGE` (7) edits it in place
    /// (validated like an edit, `components` replaced when given);
    /// `CHANNEL_MESSAGE_WITH_SOURCE` (4) and `DEFERRED_UPDATE_MESSAGE` (6)
    /// leave it. Anything else is an error Discord would show the user
    /// ("This interaction failed").
    pub fn apply_interaction_response(
        &self,
        channel: &str,
        message_id: &str,
        response: &Value,
    ) -> Result<(), String> {
        apply_response(&self.inner, channel, message_id, response)
    }

    /// Who new messages notified, per channel: `user:<id>`, `role:<id>`,
    /// `everyone`.
    pub fn pings(&self) -> Vec<(String, String)> {
        self.inner.lock().unwrap().pings.clone()
    }

    /// Delete a message, as a person in the channel might.
    pub fn delete(&self, channel: &str, id: &str) {
        let id: u64 = id.parse().unwrap();
        self.inner
            .lock()
            .unwrap()
            .channels
            .get_mut(channel)
            .unwrap()
            .messages
            .remove(&id);
    }
}

/// Apply an interaction response to the pressed message, as Discord does
/// (`UPDATE_MESSAGE` edits it; a reply or a deferral leaves it).
fn apply_response(
    inner: &Arc<Mutex<Inner>>,
    channel: &str,
    message_id: &str,
    response: &Value,
) -> Result<(), String> {
    match response["type"].as_u64() {
        Some(4 | 6) => Ok(()),
        Some(7) => {
            let data = &response["data"];
            validate(data).map_err(|r| format!("invalid UPDATE_MESSAGE data: HTTP {}", r.status()))?;
            let mut state = inner.lock().unwrap();
            let id: u64 = message_id.parse().map_err(|_| "bad message id".to_owned())?;
            let ch = state.channels.get_mut(channel).ok_or("unknown channel")?;
            let old = ch.messages.get(&id).cloned().ok_or("unknown message")?;
            let mut updated = message(id, channel, data, Some(now_iso()));
            updated["timestamp"] = old["timestamp"].clone();
            if data.get("components").is_none() {
                updated["components"] = old["components"].clone();
            }
            if let Some(n) = old.get("nonce") {
                updated["nonce"] = n.clone();
            }
            ch.messages.insert(id, updated);
            Ok(())
        }
        other => Err(format!(
            "interaction response type {other:?} does not answer a component"
        )),
    }
}

fn member(user: &str) -> Value {
    json!({"user": {"id": "555", "username": user.to_lowercase(), "global_name": user,
                    "discriminator": "0", "avatar": null},
           "roles": [], "joined_at": "2026-01-01T00:00:00.000000+00:00", "deaf": false, "mute": false,
           "flags": 0, "pending": false, "permissions": "2248473465835073"})
}

/// `GET /gateway`.
async fn gateway_url(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    let mut state = inner.lock().unwrap();
    if let Err(refused) = gateway_gate(&mut state, &headers, false) {
        return refused;
    }
    let url = state.gateway.as_ref().map(DiscordGateway::url);
    axum::Json(json!({"url": url})).into_response()
}

/// `GET /gateway/bot` (bot token required).
async fn gateway_bot(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    let mut state = inner.lock().unwrap();
    if let Err(refused) = gateway_gate(&mut state, &headers, true) {
        return refused;
    }
    let url = state.gateway.as_ref().map(DiscordGateway::url);
    axum::Json(json!({"url": url, "shards": 1, "session_start_limit":
        {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}}))
    .into_response()
}

/// `POST /interactions/{id}/{token}/callback`: not under the global limit
/// (Discord exempts interaction endpoints), checked by the Gateway, and an
/// `UPDATE_MESSAGE` applied to the pressed message.
async fn interaction_callback(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((id, token)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Some(gateway) = inner.lock().unwrap().gateway.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(answer) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"message": "400: Bad Request", "code": 50109})),
        )
            .into_response();
    };
    if let Some(data) = answer.get("data")
        && let Err(refused) = validate(data)
    {
        return refused;
    }
    let (status, reply, interaction) = gateway.callback(&id, &token, &answer);
    if let Some(interaction) = interaction
        && answer["type"] == 7
    {
        let channel = interaction["channel_id"].as_str().unwrap_or_default();
        let message = interaction["message"]["id"].as_str().unwrap_or_default();
        if let Err(why) = apply_response(&inner, channel, message, &answer) {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"message": why, "code": 50035})),
            )
                .into_response();
        }
    }
    let status = StatusCode::from_u16(status).unwrap();
    if reply.is_null() {
        status.into_response()
    } else {
        (status, axum::Json(reply)).into_response()
    }
}

/// The first fault queued for a bucket `bucket` starts with, taken out.
fn take_targeted(targeted: &mut Vec<(String, Fault)>, bucket: &str) -> Option<Fault> {
    let at = targeted
        .iter()
        .position(|(prefix, _)| bucket.starts_with(prefix.as_str()))?;
    Some(targeted.remove(at).1)
}
