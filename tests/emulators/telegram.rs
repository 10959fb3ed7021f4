//! A Telegram Bot API emulator for `sendMessage` and `editMessageText`:
//! `{ok, result}` envelopes, case-insensitive method names, JSON and form
//! bodies, HTML parse-mode validation (allowed tags, balance, entities) with
//! Telegram's "can't parse entities" errors, the 4096-character limit after
//! entity parsing, "message is not modified", chat not found, blocked and
//! kicked bots, group → supergroup migration, replies (`reply_parameters`
//! naming a message of the chat, else "message to be replied not found"
//! unless `allow_sending_without_reply`; kept through edits as
//! `reply_to_message`), and Telegram's limits as its
//! bot FAQ states them: one message per second in any chat *and* 20 per
//! minute in a group or supergroup (both, sends and edits alike), 30 per
//! second per bot; over a limit, 429 with `retry_after` in whole seconds,
//! and a request for a chat inside a retry-after it was told is counted as
//! a violation (see `lockout.rs`). A request log and injected faults.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

use super::chaos::{Chaos, Draw};
use super::lockout::{Early, Lockouts};

const NOT_MODIFIED: &str = "Bad Request: message is not modified: specified new message content and reply markup \
                            are exactly the same as a current content and reply markup of the message";
const ALLOWED_TAGS: &[&str] = &[
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "a",
    "code",
    "pre",
    "tg-spoiler",
    "blockquote",
    "span",
];

/// A fault applied to the next call.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with `parameters.retry_after`.
    RetryAfter(u64),
    /// This HTTP status with an `ok:false` body.
    Http(u16),
    /// Apply the call, then never answer.
    ApplyThenHang,
}

/// Kinds of chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatKind {
    Private,
    Group,
    Supergroup,
    /// A broadcast channel (the bot an admin that may edit others' posts).
    Channel,
}

#[derive(Debug, Clone)]
struct Chat {
    kind: ChatKind,
    migrated_to: Option<i64>,
    blocked: bool,
    kicked: bool,
    messages: BTreeMap<i64, Value>,
    /// Calls in the last second.
    second: VecDeque<Instant>,
    /// Calls in the last minute (groups).
    minute: VecDeque<Instant>,
}

/// One call as seen.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method, lower-cased.
    pub method: String,
    /// Arguments.
    pub args: Value,
    /// HTTP status (0: never answered).
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    /// (chat, who) each new message notified: `user:<id>` for a text
    /// mention, `@<username>` for a username mention.
    pings: Vec<(i64, String)>,
    token: String,
    chats: HashMap<i64, Chat>,
    faults: VecDeque<Fault>,
    seen: Vec<Seen>,
    global: VecDeque<Instant>,
    lockouts: Lockouts,
    chaos: Option<Chaos>,
    next_id: i64,
    rate_limited: usize,
    /// Updates for the bot not yet confirmed by a poll past them.
    updates: VecDeque<Value>,
    next_update: i64,
    /// A webhook is set: `getUpdates` answers 409.
    webhook_set: bool,
    /// The newest `getUpdates`: a newer one ends a waiting older one.
    poll_generation: u64,
    /// `getUpdates` answered 409 (two pollers, or a webhook set).
    conflicts: usize,
    /// `getUpdates` answered with updates or after its wait.
    polls: usize,
    /// Keep updates a poll confirmed (as if Telegram had not seen the
    /// confirmation: herald crashed before its next poll).
    keep_confirmed: bool,
}

/// A running emulator.
#[derive(Clone)]
pub struct TelegramEmulator {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl TelegramEmulator {
    /// Start with a bot token and no chats.
    pub async fn start(token: &str) -> TelegramEmulator {
        let inner = Arc::new(Mutex::new(Inner {
            token: token.to_owned(),
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/{bot}/{method}", post(call).get(call))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        TelegramEmulator { addr, inner }
    }

    /// The `api_url` to configure.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queue an update for the bot (its `update_id` is set); returns the id.
    pub fn push_update(&self, mut update: Value) -> i64 {
        let mut inner = self.inner.lock().unwrap();
        inner.next_update += 1;
        let id = 10_000 + inner.next_update;
        update["update_id"] = json!(id);
        inner.updates.push_back(update);
        id
    }

    /// Set or delete the bot's webhook (`getUpdates` then answers 409).
    pub fn set_webhook(&self, set: bool) {
        self.inner.lock().unwrap().webhook_set = set;
    }

    /// Keep confirmed updates and send them again to the next poll.
    pub fn keep_confirmed(&self, keep: bool) {
        self.inner.lock().unwrap().keep_confirmed = keep;
    }

    /// How many `getUpdates` were answered (not refused).
    pub fn polls(&self) -> usize {
        self.inner.lock().unwrap().polls
    }

    /// How many `getUpdates` were refused with 409.
    pub fn conflicts(&self) -> usize {
        self.inner.lock().unwrap().conflicts
    }

    /// Carry out the method a bot answered a webhook update with, as
    /// Telegram does (the same checks and limits as a call):
    /// `answerCallbackQuery` is taken as it is, others go through the API.
    /// Returns the status and the answer the bot never sees.
    pub async fn webhook_response(&self, response: &Value) -> (u16, Value) {
        let method = response["method"].as_str().unwrap_or_default().to_lowercase();
        let res = if method == "answercallbackquery" {
            if response["callback_query_id"].as_str().is_none_or(str::is_empty) {
                fail(400, "Bad Request: QUERY_ID_INVALID")
            } else {
                reply(200, json!({"ok": true, "result": true}))
            }
        } else {
            let bot = format!("bot{}", self.inner.lock().unwrap().token);
            handle(&self.inner, &bot, &method, response)
        };
        let status = res.status().as_u16();
        self.inner.lock().unwrap().seen.push(Seen {
            method: format!("webhook:{method}"),
            args: response.clone(),
            status,
        });
        let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// Add a chat.
    pub fn chat(&self, id: i64, kind: ChatKind) {
        self.inner.lock().unwrap().chats.insert(
            id,
            Chat {
                kind,
                migrated_to: None,
                blocked: false,
                kicked: false,
                messages: BTreeMap::new(),
                second: VecDeque::new(),
                minute: VecDeque::new(),
            },
        );
    }

    /// Upgrade group `from` to supergroup `to`.
    pub fn migrate(&self, from: i64, to: i64) {
        self.chat(to, ChatKind::Supergroup);
        self.inner
            .lock()
            .unwrap()
            .chats
            .get_mut(&from)
            .unwrap()
            .migrated_to = Some(to);
    }

    /// The user blocked the bot / the bot was removed from the group.
    pub fn block(&self, id: i64, kicked: bool) {
        let mut inner = self.inner.lock().unwrap();
        let chat = inner.chats.get_mut(&id).unwrap();
        if kicked {
            chat.kicked = true;
        } else {
            chat.blocked = true;
        }
    }

    /// From now on, fail a share of calls at random (`None`: stop).
    pub fn chaos(&self, chaos: Option<Chaos>) {
        self.inner.lock().unwrap().chaos = chaos;
    }

    /// Queue faults.
    pub fn inject(&self, faults: Vec<Fault>) {
        self.inner.lock().unwrap().faults.extend(faults);
    }

    /// Every call so far.
    pub fn pings(&self) -> Vec<(i64, String)> {
        self.inner.lock().unwrap().pings.clone()
    }

    /// Every call so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.clone()
    }

    /// A chat's messages, oldest first.
    pub fn messages(&self, chat: i64) -> Vec<Value> {
        self.inner
            .lock()
            .unwrap()
            .chats
            .get(&chat)
            .map(|c| c.messages.values().cloned().collect())
            .unwrap_or_default()
    }

    /// How many 429s were answered (injected ones included).
    pub fn rate_limited(&self) -> usize {
        self.inner.lock().unwrap().rate_limited
    }

    /// A message in `chat` from someone else (a person in a group, an
    /// admin in a channel); it takes an id from the same counter.
    pub fn foreign(&self, chat: i64, text: &str) -> i64 {
        let mut inner = self.inner.lock().unwrap();
        inner.next_id += 1;
        let id = inner.next_id;
        let message = json!({"message_id": id, "chat": {"id": chat}, "from": {"id": 4242, "is_bot": false, "first_name": "Ada"},
                             "text": text, "html": text});
        inner.chats.get_mut(&chat).unwrap().messages.insert(id, message);
        id
    }

    /// The next message id the counter will give.
    pub fn skip_ids(&self, n: i64) {
        self.inner.lock().unwrap().next_id += n;
    }

    /// Requests that arrived inside a retry-after they had been told.
    pub fn early(&self) -> Vec<Early> {
        self.inner.lock().unwrap().lockouts.early.clone()
    }
}

fn chat_of(args: &Value) -> i64 {
    match &args["chat_id"] {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn reply(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

fn fail(status: u16, description: &str) -> Response {
    reply(
        status,
        json!({"ok": false, "error_code": status, "description": description}),
    )
}

/// 429 for `bucket` with `retry_after` rounded up to whole seconds, which
/// is then enforced.
fn too_many(inner: &mut Inner, bucket: &str, retry_after: Duration) -> Response {
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    inner
        .lockouts
        .told(bucket, Instant::now(), Duration::from_secs(secs));
    inner.rate_limited += 1;
    reply(
        429,
        json!({"ok": false, "error_code": 429, "description": format!("Too Many Requests: retry after {secs}"),
               "parameters": {"retry_after": secs}}),
    )
}

fn arguments(headers: &HeaderMap, body: &Bytes) -> Value {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.starts_with("application/json") {
        return serde_json::from_slice(body).unwrap_or(Value::Null);
    }
    let mut args = Map::new();
    for pair in String::from_utf8_lossy(body).split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        args.insert(k.to_owned(), Value::String(v.replace('+', " ")));
    }
    Value::Object(args)
}

/// Parse Telegram HTML: returns the visible text, or Telegram's error.
pub fn parse_html(text: &str) -> Result<String, String> {
    let mut visible = String::new();
    let mut stack: Vec<String> = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'<' => {
                let end = text[i..]
                    .find('>')
                    .ok_or_else(|| format!("Unclosed start tag at byte offset {i}"))?
                    + i;
                let inner = &text[i + 1..end];
                if let Some(name) = inner.strip_prefix('/') {
                    match stack.pop() {
                        Some(open) if open == name.trim() => {}
                        _ => return Err(format!("Unexpected end tag at byte offset {i}")),
                    }
                } else {
                    let name = inner.split_whitespace().next().unwrap_or("").to_lowercase();
                    if !ALLOWED_TAGS.contains(&name.as_str()) {
                        return Err(format!("Unsupported start tag \"{name}\" at byte offset {i}"));
                    }
                    stack.push(name);
                }
                i = end + 1;
            }
            b'&' => {
                let end = text[i..]
                    .find(';')
                    .ok_or_else(|| format!("Unclosed entity at byte offset {i}"))?
                    + i;
                let entity = &text[i + 1..end];
                let c = match entity {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "quot" => '"',
                    e if e.starts_with('#') => {
                        e[1..].parse::<u32>().ok().and_then(char::from_u32).unwrap_or('?')
                    }
                    _ => return Err(format!("Unsupported entity \"{entity}\" at byte offset {i}")),
                };
                visible.push(c);
                i = end + 1;
            }
            _ => {
                let c = text[i..].chars().next().unwrap();
                visible.push(c);
                i += c.len_utf8();
            }
        }
    }
    if let Some(open) = stack.pop() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{open}\""
        ));
    }
    Ok(visible)
}

async fn call(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let method = method.to_lowercase();
    let args = arguments(&headers, &body);
    if method == "getupdates" {
        return get_updates(&inner, &bot, &args).await;
    }
    if method == "answercallbackquery" {
        let ok = bot == format!("bot{}", inner.lock().unwrap().token);
        let res = if !ok {
            fail(401, "Unauthorized")
        } else if args["callback_query_id"].as_str().is_none_or(str::is_empty) {
            fail(400, "Bad Request: QUERY_ID_INVALID")
        } else {
            reply(200, json!({"ok": true, "result": true}))
        };
        inner.lock().unwrap().seen.push(Seen {
            method,
            args,
            status: res.status().as_u16(),
        });
        return res;
    }
    let bucket = format!("chat:{}", chat_of(&args));
    let (fault, inside) = {
        let mut state = inner.lock().unwrap();
        let now = Instant::now();
        let inside = state
            .lockouts
            .arrived(&bucket, now)
            .or_else(|| state.lockouts.arrived("global", now));
        match inside {
            Some(left) => (None, Some(left)),
            None => {
                let fault = state.faults.pop_front().or_else(|| {
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
    let (res, hang) = match (fault, inside) {
        (_, Some(left)) => (too_many(&mut inner.lock().unwrap(), &bucket, left), false),
        (fault, None) => match fault {
            Some(Fault::RetryAfter(secs)) => (
                too_many(&mut inner.lock().unwrap(), &bucket, Duration::from_secs(secs)),
                false,
            ),
            Some(Fault::Http(status)) => (fail(status, "Bad Gateway"), false),
            Some(Fault::ApplyThenHang) => (handle(&inner, &bot, &method, &args), true),
            None => (handle(&inner, &bot, &method, &args), false),
        },
    };
    inner.lock().unwrap().seen.push(Seen {
        method,
        args,
        status: if hang { 0 } else { res.status().as_u16() },
    });
    if hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    res
}

fn chat_json(id: i64, kind: ChatKind) -> Value {
    match kind {
        ChatKind::Private => json!({"id": id, "type": "private", "first_name": "Ada"}),
        ChatKind::Group => json!({"id": id, "type": "group", "title": "ops"}),
        ChatKind::Supergroup => json!({"id": id, "type": "supergroup", "title": "ops"}),
        ChatKind::Channel => json!({"id": id, "type": "channel", "title": "news"}),
    }
}

fn handle(inner: &Arc<Mutex<Inner>>, bot: &str, method: &str, args: &Value) -> Response {
    let mut state = inner.lock().unwrap();
    if bot != format!("bot{}", state.token) {
        return fail(401, "Unauthorized");
    }
    let chat_id = chat_of(args);
    let now = Instant::now();
    while state
        .global
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        state.global.pop_front();
    }
    if state.global.len() >= 30 {
        let wait = Duration::from_secs(1) - now.duration_since(state.global[0]);
        return too_many(&mut state, "global", wait);
    }
    let Some(chat) = state.chats.get(&chat_id).cloned() else {
        return fail(400, "Bad Request: chat not found");
    };
    if let Some(to) = chat.migrated_to {
        return reply(
            400,
            json!({"ok": false, "error_code": 400, "description": "Bad Request: group chat was upgraded to a supergroup chat",
                   "parameters": {"migrate_to_chat_id": to}}),
        );
    }
    if chat.blocked {
        return fail(403, "Forbidden: bot was blocked by the user");
    }
    if chat.kicked {
        return fail(403, "Forbidden: bot was kicked from the supergroup chat");
    }
    if method == "getchat" {
        return reply(200, json!({"ok": true, "result": chat_json(chat_id, chat.kind)}));
    }
    // Rate limits count every send and edit that reaches a chat, failed
    // ones included: 1/s in every chat, and 20/min in groups and
    // supergroups, both at once.
    let bucket = format!("chat:{chat_id}");
    let group = chat.kind != ChatKind::Private;
    let chat_state = state.chats.get_mut(&chat_id).unwrap();
    let full = |window: &mut VecDeque<Instant>, limit: usize, per: Duration| -> Option<Duration> {
        while window.front().is_some_and(|t| now.duration_since(*t) >= per) {
            window.pop_front();
        }
        (window.len() >= limit).then(|| per - now.duration_since(window[0]))
    };
    let wait = full(&mut chat_state.second, 1, Duration::from_secs(1)).or_else(|| {
        group
            .then(|| full(&mut chat_state.minute, 20, Duration::from_secs(60)))
            .flatten()
    });
    if let Some(wait) = wait {
        return too_many(&mut state, &bucket, wait);
    }
    chat_state.second.push_back(now);
    chat_state.minute.push_back(now);
    state.global.push_back(now);
    let text = args["text"].as_str().unwrap_or("");
    let visible = if args["parse_mode"]
        .as_str()
        .is_some_and(|m| m.eq_ignore_ascii_case("html"))
    {
        match parse_html(text) {
            Ok(v) => v,
            Err(e) => return fail(400, &format!("Bad Request: can't parse entities: {e}")),
        }
    } else {
        text.to_owned()
    };
    if visible.trim().is_empty() {
        return fail(400, "Bad Request: message text is empty");
    }
    if visible.chars().count() > 4096 {
        return fail(400, "Bad Request: message is too long");
    }
    let markup = args["reply_markup"].clone();
    if let Err(why) = validate_markup(&markup) {
        return fail(400, &why);
    }
    let message_id = args["message_id"]
        .as_i64()
        .or_else(|| args["message_id"].as_str().and_then(|s| s.parse().ok()));
    if method == "editmessagetext" {
        let Some(existing) = message_id.and_then(|id| chat.messages.get(&id)) else {
            return fail(400, "Bad Request: message to edit not found");
        };
        // In a channel an admin bot may edit anyone's post; elsewhere only
        // its own messages.
        if existing["from"]["id"] != 999 && chat.kind != ChatKind::Channel {
            return fail(400, "Bad Request: message can't be edited");
        }
        // Content *and* reply markup: an edit without `reply_markup`
        // removes the keyboard, so it is a change when there was one.
        if existing["html"] == text && existing["reply_markup"] == markup {
            return fail(400, NOT_MODIFIED);
        }
    }
    // A reply names a message of this chat; one that is not there is an
    // error unless the bot allowed sending without it.
    let replied = match (method, &args["reply_parameters"]) {
        ("sendmessage", Value::Object(reply)) => {
            let parent = reply["message_id"].as_i64();
            match parent.and_then(|id| chat.messages.get(&id)) {
                Some(parent) => Some(json!({"message_id": parent["message_id"], "text": parent["text"]})),
                None if reply["allow_sending_without_reply"] == true => None,
                None => return fail(400, "Bad Request: message to be replied not found"),
            }
        }
        ("sendmessage", Value::Null) => None,
        ("sendmessage", _) => return fail(400, "Bad Request: can't parse reply parameters JSON object"),
        _ => None,
    };
    let date = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let id = match method {
        "sendmessage" => {
            state.next_id += 1;
            state.next_id
        }
        "editmessagetext" => message_id.unwrap_or(0),
        other => return fail(404, &format!("Not Found: method {other} not found")),
    };
    let mut message = json!({
        "message_id": id, "date": date, "chat": chat_json(chat_id, chat.kind),
        "from": {"id": 999, "is_bot": true, "first_name": "herald", "username": "herald_bot"},
        "text": visible, "html": text,
    });
    if !markup.is_null() {
        message["reply_markup"] = markup;
    }
    if method == "editmessagetext" {
        message["edit_date"] = json!(date);
        // An edit keeps what the message replies to.
        if let Some(parent) = message_id
            .and_then(|id| chat.messages.get(&id))
            .map(|m| m["reply_to_message"].clone())
            && !parent.is_null()
        {
            message["reply_to_message"] = parent;
        }
    } else {
        if let Some(parent) = replied {
            message["reply_to_message"] = parent;
        }
        // A new message notifies whom its text mentions.
        let pinged = telegram_pings(text, &visible);
        state.pings.extend(pinged.into_iter().map(|p| (chat_id, p)));
    }
    state
        .chats
        .get_mut(&chat_id)
        .unwrap()
        .messages
        .insert(id, message.clone());
    let mut result = message;
    result.as_object_mut().unwrap().remove("html");
    reply(200, json!({"ok": true, "result": result}))
}

/// The Bot API's rules for an inline keyboard: rows of buttons, each with
/// a non-empty `text` and exactly one action; `callback_data` 1–64 bytes.
fn validate_markup(markup: &Value) -> Result<(), String> {
    if markup.is_null() {
        return Ok(());
    }
    let Some(rows) = markup["inline_keyboard"].as_array() else {
        return Err("Bad Request: can't parse reply keyboard markup JSON object".to_owned());
    };
    for row in rows {
        let Some(buttons) = row.as_array() else {
            return Err("Bad Request: can't parse inline keyboard button: row is not an array".to_owned());
        };
        for b in buttons {
            if b["text"].as_str().is_none_or(str::is_empty) {
                return Err(
                    "Bad Request: can't parse inline keyboard button: Text must be non-empty".to_owned(),
                );
            }
            let actions = ["callback_data", "url", "switch_inline_query", "pay"]
                .iter()
                .filter(|k| !b[**k].is_null())
                .count();
            if actions != 1 {
                return Err(
                    "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                        .to_owned(),
                );
            }
            if let Some(data) = b["callback_data"].as_str()
                && !(1..=64).contains(&data.len())
            {
                return Err("Bad Request: BUTTON_DATA_INVALID".to_owned());
            }
        }
    }
    Ok(())
}

/// `getUpdates`: confirms the updates before `offset`, answers those from
/// it on at once, or waits up to `timeout` seconds for one. One poll at a
/// time, and none while a webhook is set (409, as Telegram answers).
async fn get_updates(inner: &Arc<Mutex<Inner>>, bot: &str, args: &Value) -> Response {
    let number = |v: &Value| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
    let offset = number(&args["offset"]).unwrap_or(0);
    let timeout = Duration::from_secs(number(&args["timeout"]).unwrap_or(0).clamp(0, 50) as u64);
    {
        let mut state = inner.lock().unwrap();
        if bot != format!("bot{}", state.token) {
            return fail(401, "Unauthorized");
        }
        if state.webhook_set {
            state.conflicts += 1;
            return fail(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
            );
        }
        state.poll_generation += 1;
        if !state.keep_confirmed {
            state
                .updates
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
        }
    }
    let generation = inner.lock().unwrap().poll_generation;
    let deadline = Instant::now() + timeout;
    loop {
        {
            let mut state = inner.lock().unwrap();
            // Telegram ends the older of two polls (two herald processes
            // polling one bot, or a poll the client gave up on).
            if state.poll_generation != generation {
                state.conflicts += 1;
                return fail(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                );
            }
            let ready: Vec<Value> = state
                .updates
                .iter()
                .filter(|u| state.keep_confirmed || u["update_id"].as_i64().unwrap_or(0) >= offset)
                .cloned()
                .collect();
            if !ready.is_empty() || Instant::now() >= deadline {
                // Counted apart from `seen`, which holds the calls that
                // reach chats.
                state.polls += 1;
                return reply(200, json!({"ok": true, "result": ready}));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whom a message mentions, as Telegram finds mentions: `text_mention`
/// links to `tg://user?id=` in the HTML, and `@username` (5–32 of
/// `A-Za-z0-9_`, not inside a word) in the visible text.
fn telegram_pings(html: &str, visible: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find("href=\"tg://user?id=") {
        rest = &rest[at + "href=\"tg://user?id=".len()..];
        let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !id.is_empty() {
            out.push(format!("user:{id}"));
        }
    }
    let chars: Vec<char> = visible.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if *c != '@' || (i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')) {
            continue;
        }
        let name: String = chars[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
            .collect();
        if (5..=32).contains(&name.len()) {
            out.push(format!("@{name}"));
        }
    }
    out
}
