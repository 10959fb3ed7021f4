//! The WebSocket side of Slack Socket Mode, as Slack documents it
//! (api.slack.com/apis/socket-mode): `apps.connections.open` (on the Web
//! API emulator, app-level token only) hands out a one-use `ticket` URL;
//! a connection with a ticket not issued, or used before, is refused; an
//! app keeps at most 10 connections; each connection first gets `hello`;
//! envelopes (`slash_commands`, `interactive`) go to one connection and
//! must be acknowledged by `envelope_id` within 3 s, with a `payload` only
//! where `accepts_response_payload` is true; `disconnect`
//! (`refresh_requested`) is followed by the connection closing. Every
//! departure from this — a late or missing acknowledgement, an
//! acknowledgement for no envelope, a payload not accepted, a refused
//! connection, an eleventh one — is kept as a violation for tests to
//! assert on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

/// Slack's acknowledgement deadline.
pub const ACK_WITHIN: Duration = Duration::from_secs(3);
/// Connections one app may keep open.
pub const MAX_CONNECTIONS: usize = 10;

/// One acknowledgement as received.
#[derive(Debug, Clone)]
pub struct Ack {
    pub envelope_id: String,
    /// `slash_commands` or `interactive`.
    pub kind: String,
    /// The acknowledgement's `payload` (`Null`: none).
    pub payload: Value,
    /// From sending the envelope to its acknowledgement.
    pub after: Duration,
}

struct Pending {
    kind: String,
    payload: Value,
    accepts_response_payload: bool,
    sent: Instant,
}

#[derive(Default)]
struct Inner {
    app_token: String,
    tickets: HashSet<String>,
    next_ticket: u64,
    connections: BTreeMap<u64, mpsc::UnboundedSender<Message>>,
    next_connection: u64,
    /// Connections ever accepted.
    accepted: usize,
    next_envelope: u64,
    turn: usize,
    pending: HashMap<String, Pending>,
    /// Every envelope's payload as sent (for resends).
    sent: HashMap<String, Value>,
    acks: Vec<Ack>,
    violations: Vec<String>,
}

/// A running Socket Mode endpoint.
#[derive(Clone)]
pub struct SocketMode {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl SocketMode {
    /// Listen on a loopback port for connections with `app_token`'s tickets.
    pub async fn start(app_token: &str) -> SocketMode {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Mutex::new(Inner {
            app_token: app_token.to_owned(),
            ..Inner::default()
        }));
        let accepting = inner.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(connection(accepting.clone(), stream));
            }
        });
        SocketMode { addr, inner }
    }

    /// The app-level token `apps.connections.open` takes.
    pub fn app_token(&self) -> String {
        self.inner.lock().unwrap().app_token.clone()
    }

    /// A new one-use WebSocket URL (what `apps.connections.open` answers).
    pub fn open_url(&self) -> String {
        let mut inner = self.inner.lock().unwrap();
        inner.next_ticket += 1;
        let ticket = format!("t{}-{}", inner.next_ticket, rand_suffix());
        inner.tickets.insert(ticket.clone());
        format!("ws://{}/link/?ticket={ticket}&app_id=A1", self.addr)
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.inner.lock().unwrap().connections.len()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.inner.lock().unwrap().accepted
    }

    /// Send an envelope of `kind` (`slash_commands`, `interactive`) with
    /// `payload` on one open connection; its `envelope_id`, or `None` when
    /// no connection is open.
    pub fn push(&self, kind: &str, payload: Value) -> Option<String> {
        let mut inner = self.inner.lock().unwrap();
        inner.next_envelope += 1;
        let envelope_id = format!("env-{}", inner.next_envelope);
        let accepts_response_payload = kind == "slash_commands";
        inner.pending.insert(
            envelope_id.clone(),
            Pending {
                kind: kind.to_owned(),
                payload: payload.clone(),
                accepts_response_payload,
                sent: Instant::now(),
            },
        );
        send_envelope(&mut inner, &envelope_id, 0)?;
        Some(envelope_id)
    }

    /// Send an envelope again, as Slack does when its acknowledgement was
    /// lost (`retry_attempt` 1).
    pub fn push_again(&self, envelope_id: &str) -> Option<()> {
        let mut inner = self.inner.lock().unwrap();
        let previous = inner.acks.iter().position(|a| a.envelope_id == envelope_id)?;
        let ack = inner.acks.remove(previous);
        let accepts_response_payload = ack.kind == "slash_commands";
        let payload = inner.sent.get(envelope_id)?.clone();
        inner.pending.insert(
            envelope_id.to_owned(),
            Pending {
                kind: ack.kind,
                payload,
                accepts_response_payload,
                sent: Instant::now(),
            },
        );
        send_envelope(&mut inner, envelope_id, 1)
    }

    /// Every acknowledgement so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.inner.lock().unwrap().acks.clone()
    }

    /// The acknowledgement of one envelope, if it came.
    pub fn ack(&self, envelope_id: &str) -> Option<Ack> {
        self.acks().into_iter().find(|a| a.envelope_id == envelope_id)
    }

    /// Everything done against the rules, including envelopes still
    /// unacknowledged after the deadline.
    pub fn violations(&self) -> Vec<String> {
        let inner = self.inner.lock().unwrap();
        let mut out = inner.violations.clone();
        for (id, pending) in &inner.pending {
            if pending.sent.elapsed() > ACK_WITHIN {
                out.push(format!("{id} ({}) not acknowledged within 3 s", pending.kind));
            }
        }
        out
    }

    /// Ask every connection to reconnect (`disconnect`, reason
    /// `refresh_requested`), then close them a second later.
    pub fn refresh(&self) {
        let connections: Vec<_> = self.inner.lock().unwrap().connections.values().cloned().collect();
        for tx in connections {
            let frame = json!({"type": "disconnect", "reason": "refresh_requested",
                "debug_info": {"host": "emulator"}});
            let _sent = tx.send(Message::text(frame.to_string())).is_ok();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _closed = tx.send(Message::Close(None)).is_ok();
            });
        }
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

/// Send envelope `envelope_id` on the next open connection.
fn send_envelope(inner: &mut Inner, envelope_id: &str, retry_attempt: u32) -> Option<()> {
    let pending = inner.pending.get(envelope_id)?;
    let frame = json!({
        "envelope_id": envelope_id,
        "type": pending.kind,
        "accepts_response_payload": pending.accepts_response_payload,
        "payload": pending.payload,
        "retry_attempt": retry_attempt,
        "retry_reason": if retry_attempt == 0 { "" } else { "timeout" },
    });
    inner.sent.insert(envelope_id.to_owned(), pending.payload.clone());
    let open: Vec<u64> = inner.connections.keys().copied().collect();
    if open.is_empty() {
        return None;
    }
    inner.turn = inner.turn.wrapping_add(1);
    let id = open[inner.turn % open.len()];
    inner.connections[&id].send(Message::text(frame.to_string())).ok()
}

/// One connection: checks its ticket, says hello, passes envelopes out and
/// reads acknowledgements in.
async fn connection(inner: Arc<Mutex<Inner>>, stream: tokio::net::TcpStream) {
    let checking = inner.clone();
    let check = move |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let ticket = request
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("ticket=")))
            .unwrap_or("")
            .to_owned();
        let mut inner = checking.lock().unwrap();
        if !inner.tickets.remove(&ticket) {
            inner
                .violations
                .push(format!("a connection with an unknown or used ticket {ticket:?}"));
            let mut refused = ErrorResponse::new(Some("invalid ticket".to_owned()));
            *refused.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::UNAUTHORIZED;
            return Err(refused);
        }
        Ok(response)
    };
    let Ok(socket) = tokio_tungstenite::accept_hdr_async(stream, check).await else {
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let id = {
        let mut state = inner.lock().unwrap();
        if state.connections.len() >= MAX_CONNECTIONS {
            state
                .violations
                .push(format!("more than {MAX_CONNECTIONS} connections"));
            return;
        }
        state.next_connection += 1;
        state.accepted += 1;
        let id = state.next_connection;
        state.connections.insert(id, tx.clone());
        id
    };
    let (mut sink, mut frames) = socket.split();
    let hello = json!({"type": "hello", "num_connections": 1,
        "debug_info": {"host": "emulator", "build_number": 1, "approximate_connection_time": 3600},
        "connection_info": {"app_id": "A1"}});
    if sink.send(Message::text(hello.to_string())).await.is_err() {
        inner.lock().unwrap().connections.remove(&id);
        return;
    }
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(message) = out else { break };
                let closing = matches!(message, Message::Close(_));
                if closing {
                    // From now on nothing is sent here.
                    inner.lock().unwrap().connections.remove(&id);
                }
                if sink.send(message).await.is_err() || closing {
                    break;
                }
            }
            frame = frames.next() => match frame {
                Some(Ok(Message::Text(text))) => acknowledged(&inner, text.as_str()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    inner.lock().unwrap().connections.remove(&id);
}

/// An acknowledgement frame from the app.
fn acknowledged(inner: &Arc<Mutex<Inner>>, text: &str) {
    let mut state = inner.lock().unwrap();
    let Ok(frame) = serde_json::from_str::<Value>(text) else {
        state.violations.push(format!("an unreadable frame {text:?}"));
        return;
    };
    let Some(envelope_id) = frame["envelope_id"].as_str() else {
        state
            .violations
            .push(format!("a frame without envelope_id {text:?}"));
        return;
    };
    let Some(pending) = state.pending.remove(envelope_id) else {
        state
            .violations
            .push(format!("an acknowledgement for no open envelope {envelope_id}"));
        return;
    };
    let after = pending.sent.elapsed();
    if after > ACK_WITHIN {
        state
            .violations
            .push(format!("{envelope_id} acknowledged after {after:?}"));
    }
    let payload = frame["payload"].clone();
    if !payload.is_null() {
        if !pending.accepts_response_payload {
            state
                .violations
                .push(format!("{envelope_id}: a payload where none is accepted"));
        } else if let Err(why) = super::slack::validate_blocks(&payload["blocks"]) {
            state
                .violations
                .push(format!("{envelope_id}: invalid_blocks {why}"));
        }
    }
    state.acks.push(Ack {
        envelope_id: envelope_id.to_owned(),
        kind: pending.kind,
        payload,
        after,
    });
}
