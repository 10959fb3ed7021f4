//! The Discord Gateway (API v10), as Discord documents it
//! (discord.com/developers/docs/events/gateway), for a bot that takes its
//! interactions there: `Hello` with a heartbeat interval; `Identify` with
//! the bot token (a wrong one closes with 4004) and an integer `intents`,
//! at most one per 5 s (`max_concurrency` 1); `Ready` with a session and
//! its `resume_gateway_url`; heartbeats answered with `Heartbeat ACK`, a
//! connection that misses them closed; at most 120 sends a minute (over:
//! 4008); `Resume` replays what the session missed, or `Invalid Session`;
//! anything before identifying closes with 4003, an unknown opcode 4001, a
//! second identify 4005. `INTERACTION_CREATE` goes to every ready session
//! (as Discord sends events to each session of a shard). The answer is
//! `POST /interactions/{id}/{token}/callback` (served by the REST
//! emulator): within 3 s, once (40060 after), known id and token (10062
//! otherwise). Every departure from this is kept as a violation.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Discord's initial-response deadline for an interaction.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(3);
/// Gateway sends allowed per connection per minute.
const SENDS_PER_MINUTE: usize = 120;
/// Identifies allowed per 5 s (`max_concurrency` 1).
const IDENTIFY_EVERY: Duration = Duration::from_secs(5);
/// The application herald's bot belongs to.
pub const APPLICATION_ID: &str = "100000000000000009";

/// One answer to an interaction, as posted to its callback.
#[derive(Debug, Clone)]
pub struct Callback {
    pub interaction_id: String,
    pub body: Value,
    /// HTTP status answered.
    pub status: u16,
    /// From dispatching the interaction to its answer.
    pub after: Duration,
}

/// An interaction dispatched, waiting for its answer.
#[derive(Debug, Clone)]
pub struct Dispatched {
    pub token: String,
    pub payload: Value,
    pub sent: Instant,
    pub answered: bool,
}

struct Session {
    tx: Option<mpsc::UnboundedSender<Message>>,
    seq: u64,
    events: Vec<(u64, Value)>,
}

struct Inner {
    token: String,
    /// This gateway's URL (what `Ready` says to resume at).
    url: String,
    heartbeat_interval: Duration,
    sessions: HashMap<String, Session>,
    identifies: Vec<Instant>,
    interactions: HashMap<String, Dispatched>,
    callbacks: Vec<Callback>,
    violations: Vec<String>,
    auth_failures: usize,
    connections: usize,
    next_id: u64,
}

/// A running Gateway.
#[derive(Clone)]
pub struct DiscordGateway {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl DiscordGateway {
    /// Listen on a loopback port for the bot with `token`.
    pub async fn start(token: &str) -> DiscordGateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Mutex::new(Inner {
            token: token.to_owned(),
            url: format!("ws://{addr}"),
            heartbeat_interval: Duration::from_millis(41_250),
            sessions: HashMap::new(),
            identifies: Vec::new(),
            interactions: HashMap::new(),
            callbacks: Vec::new(),
            violations: Vec::new(),
            auth_failures: 0,
            connections: 0,
            next_id: 0,
        }));
        let accepting = inner.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(connection(accepting.clone(), stream));
            }
        });
        DiscordGateway { addr, inner }
    }

    /// The URL `GET /gateway` answers.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The heartbeat interval `Hello` asks for from now on (Discord's is
    /// about 41 s; tests shorten it to see heartbeats).
    pub fn set_heartbeat_interval(&self, interval: Duration) {
        self.inner.lock().unwrap().heartbeat_interval = interval;
    }

    /// Sessions with an open connection that identified.
    pub fn ready_sessions(&self) -> usize {
        let inner = self.inner.lock().unwrap();
        inner.sessions.values().filter(|s| s.tx.is_some()).count()
    }

    /// Connections ever accepted.
    pub fn connections(&self) -> usize {
        self.inner.lock().unwrap().connections
    }

    /// Identifies refused for a wrong token.
    pub fn auth_failures(&self) -> usize {
        self.inner.lock().unwrap().auth_failures
    }

    /// Dispatch an interaction (the parts a test chooses; id, token and
    /// the rest Discord adds are filled in) to every ready session; its id.
    pub fn dispatch(&self, mut payload: Value) -> String {
        let mut inner = self.inner.lock().unwrap();
        inner.next_id += 1;
        let id = format!("1300000000000{:06}", inner.next_id);
        let token = format!("aW50ZXJhY3Rpb246{}-{}", inner.next_id, id.len());
        let defaults = json!({
            "id": id, "application_id": APPLICATION_ID, "token": token, "version": 1,
            "locale": "en-US", "guild_locale": "en-US", "app_permissions": "0",
            "entitlements": [], "authorizing_integration_owners": {"0": "1"},
            "context": 0, "attachment_size_limit": 10_485_760,
        });
        for (k, v) in defaults.as_object().unwrap() {
            payload[k] = v.clone();
        }
        inner.interactions.insert(
            id.clone(),
            Dispatched {
                token,
                payload: payload.clone(),
                sent: Instant::now(),
                answered: false,
            },
        );
        for session in inner.sessions.values_mut() {
            let Some(tx) = &session.tx else { continue };
            session.seq += 1;
            let event = json!({"op": 0, "t": "INTERACTION_CREATE", "s": session.seq, "d": payload});
            session.events.push((session.seq, event.clone()));
            let _sent = tx.send(Message::text(event.to_string())).is_ok();
        }
        id
    }

    /// Ask every connection to reconnect and resume (opcode 7).
    pub fn ask_to_reconnect(&self) {
        let inner = self.inner.lock().unwrap();
        for session in inner.sessions.values() {
            if let Some(tx) = &session.tx {
                let _sent = tx
                    .send(Message::text(json!({"op": 7, "d": null}).to_string()))
                    .is_ok();
            }
        }
    }

    /// Answers posted so far.
    pub fn callbacks(&self) -> Vec<Callback> {
        self.inner.lock().unwrap().callbacks.clone()
    }

    /// The accepted answer to one interaction, if it came.
    pub fn answer(&self, interaction_id: &str) -> Option<Callback> {
        self.callbacks()
            .into_iter()
            .find(|c| c.interaction_id == interaction_id && c.status == 204)
    }

    /// Everything done against the rules, including interactions still
    /// unanswered after the deadline.
    pub fn violations(&self) -> Vec<String> {
        let inner = self.inner.lock().unwrap();
        let mut out = inner.violations.clone();
        for (id, d) in &inner.interactions {
            if !d.answered && d.sent.elapsed() > ANSWER_WITHIN {
                out.push(format!("interaction {id} not answered within 3 s"));
            }
        }
        out
    }

    /// `POST /interactions/{id}/{token}/callback`: the status and body to
    /// answer, and the interaction when the answer is taken.
    pub fn callback(&self, id: &str, token: &str, body: &Value) -> (u16, Value, Option<Value>) {
        let mut inner = self.inner.lock().unwrap();
        let now = Instant::now();
        let unknown = json!({"message": "Unknown interaction", "code": 10062});
        let Some(d) = inner.interactions.get(id).cloned().filter(|d| d.token == token) else {
            inner
                .violations
                .push(format!("an answer to an unknown interaction {id}"));
            return (404, unknown, None);
        };
        let after = now.duration_since(d.sent);
        let record = |inner: &mut Inner, status: u16| {
            inner.callbacks.push(Callback {
                interaction_id: id.to_owned(),
                body: body.clone(),
                status,
                after,
            });
        };
        if d.answered {
            record(&mut inner, 400);
            return (
                400,
                json!({"message": "Interaction has already been acknowledged.", "code": 40060}),
                None,
            );
        }
        if after > ANSWER_WITHIN {
            inner
                .violations
                .push(format!("interaction {id} answered after {after:?}"));
            record(&mut inner, 404);
            return (404, unknown, None);
        }
        let kind = body["type"].as_u64();
        let fits = match kind {
            Some(4 | 5) => true,
            Some(6 | 7) => d.payload["type"] == 3,
            _ => false,
        };
        if !fits {
            inner.violations.push(format!(
                "interaction {id}: response type {kind:?} does not answer it"
            ));
            record(&mut inner, 400);
            return (
                400,
                json!({"message": "Invalid Form Body", "code": 50035, "errors": {"type": {"_errors": [
                    {"code": "BASE_TYPE_CHOICES", "message": "Value must be one of valid types."}]}}}),
                None,
            );
        }
        if let Some(entry) = inner.interactions.get_mut(id) {
            entry.answered = true;
        }
        record(&mut inner, 204);
        (204, Value::Null, Some(d.payload))
    }
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}

/// One connection's life: hello, identify or resume, heartbeats, events.
async fn connection(inner: Arc<Mutex<Inner>>, stream: tokio::net::TcpStream) {
    let Ok(socket) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut frames) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let interval = {
        let mut state = inner.lock().unwrap();
        state.connections += 1;
        state.heartbeat_interval
    };
    let hello = json!({"op": 10, "d": {"heartbeat_interval": interval.as_millis() as u64}});
    if sink.send(Message::text(hello.to_string())).await.is_err() {
        return;
    }
    let mut session: Option<String> = None;
    let mut sends: VecDeque<Instant> = VecDeque::new();
    let mut last_heartbeat = Instant::now();
    // Discord allows the first heartbeat after a jittered fraction of the
    // interval, and some slack on every one.
    let grace = interval + interval / 2 + Duration::from_secs(1);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let reply = |m: Value| Message::text(m.to_string());
    loop {
        let frame = tokio::select! {
            out = rx.recv() => {
                let Some(message) = out else { break };
                if sink.send(message).await.is_err() { break }
                continue;
            }
            _ = tick.tick() => {
                if last_heartbeat.elapsed() > grace {
                    inner.lock().unwrap().violations.push(format!(
                        "no heartbeat for {:?} (interval {interval:?})", last_heartbeat.elapsed()));
                    let _closed = sink.send(close(4000, "heartbeat missed")).await.is_ok();
                    break;
                }
                continue;
            }
            frame = frames.next() => frame,
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text.to_string(),
            Some(Ok(Message::Binary(_))) => {
                inner
                    .lock()
                    .unwrap()
                    .violations
                    .push("a binary frame (etf not asked for)".to_owned());
                continue;
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => continue,
        };
        let now = Instant::now();
        while sends
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            sends.pop_front();
        }
        sends.push_back(now);
        if sends.len() > SENDS_PER_MINUTE {
            inner
                .lock()
                .unwrap()
                .violations
                .push("more than 120 gateway sends in a minute".to_owned());
            let _closed = sink.send(close(4008, "Rate limited.")).await.is_ok();
            break;
        }
        let Ok(payload) = serde_json::from_str::<Value>(&text) else {
            inner
                .lock()
                .unwrap()
                .violations
                .push(format!("an undecodable payload {text:?}"));
            let _closed = sink
                .send(close(4002, "Error while decoding payload."))
                .await
                .is_ok();
            break;
        };
        let op = payload["op"].as_u64();
        let answer = {
            let mut state = inner.lock().unwrap();
            match op {
                Some(1) => {
                    last_heartbeat = now;
                    Ok(Some(reply(json!({"op": 11}))))
                }
                Some(2) if session.is_some() => {
                    state
                        .violations
                        .push("a second identify on one connection".to_owned());
                    Err(close(4005, "Already authenticated."))
                }
                Some(2) => identify(&mut state, &payload["d"], &tx, &mut session, now, &text),
                Some(6) => resume(&mut state, &payload["d"], &tx, &mut session),
                Some(_) if session.is_none() => {
                    state.violations.push(format!("opcode {op:?} before identifying"));
                    Err(close(4003, "Not authenticated."))
                }
                Some(3 | 4 | 8) => Ok(None),
                _ => {
                    state.violations.push(format!("unknown opcode {op:?}"));
                    Err(close(4001, "Unknown opcode."))
                }
            }
        };
        match answer {
            Ok(Some(message)) => {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
            Ok(None) => {}
            Err(closing) => {
                let _closed = sink.send(closing).await.is_ok();
                break;
            }
        }
    }
    if let Some(id) = session {
        let mut state = inner.lock().unwrap();
        if let Some(s) = state.sessions.get_mut(&id) {
            s.tx = None;
        }
    }
}

fn token_ok(state: &Inner, token: &str) -> bool {
    token == state.token || token.strip_prefix("Bot ") == Some(state.token.as_str())
}

/// `Identify`: a new session and `Ready`.
fn identify(
    state: &mut Inner,
    d: &Value,
    tx: &mpsc::UnboundedSender<Message>,
    session: &mut Option<String>,
    now: Instant,
    text: &str,
) -> Result<Option<Message>, Message> {
    if !token_ok(state, d["token"].as_str().unwrap_or("")) {
        state.auth_failures += 1;
        return Err(close(4004, "Authentication failed."));
    }
    if !d["intents"].is_u64() {
        state
            .violations
            .push(format!("identify without integer intents: {text}"));
        return Err(close(4013, "Invalid intent(s)."));
    }
    if state
        .identifies
        .last()
        .is_some_and(|t| now.duration_since(*t) < IDENTIFY_EVERY)
    {
        state
            .violations
            .push("two identifies within 5 s (max_concurrency 1)".to_owned());
    }
    state.identifies.push(now);
    let id = format!("session-{}", state.identifies.len());
    let ready = json!({"op": 0, "t": "READY", "s": 1, "d": {
        "v": 10,
        "user": {"id": "100000000000000001", "username": "herald", "discriminator": "0",
                 "global_name": null, "avatar": null, "bot": true, "verified": true,
                 "mfa_enabled": false, "flags": 0},
        "guilds": [], "private_channels": [], "relationships": [],
        "session_id": id, "session_type": "normal",
        "resume_gateway_url": state.url,
        "shard": [0, 1],
        "application": {"id": APPLICATION_ID, "flags": 0},
    }});
    state.sessions.insert(
        id.clone(),
        Session {
            tx: Some(tx.clone()),
            seq: 1,
            events: vec![(1, ready.clone())],
        },
    );
    *session = Some(id);
    Ok(Some(Message::text(ready.to_string())))
}

/// `Resume`: the session's missed events and `RESUMED`, or `Invalid Session`.
fn resume(
    state: &mut Inner,
    d: &Value,
    tx: &mpsc::UnboundedSender<Message>,
    session: &mut Option<String>,
) -> Result<Option<Message>, Message> {
    let id = d["session_id"].as_str().unwrap_or("").to_owned();
    let after = d["seq"].as_u64().unwrap_or(0);
    let token = d["token"].as_str().unwrap_or("").to_owned();
    if !token_ok(state, &token) {
        state.auth_failures += 1;
        return Err(close(4004, "Authentication failed."));
    }
    let Some(s) = state.sessions.get_mut(&id) else {
        return Ok(Some(Message::text(json!({"op": 9, "d": false}).to_string())));
    };
    s.tx = Some(tx.clone());
    for (seq, event) in &s.events {
        if *seq > after {
            let _sent = tx.send(Message::text(event.to_string())).is_ok();
        }
    }
    s.seq += 1;
    let resumed = json!({"op": 0, "t": "RESUMED", "s": s.seq, "d": {}});
    s.events.push((s.seq, resumed.clone()));
    *session = Some(id);
    Ok(Some(Message::text(resumed.to_string())))
}
