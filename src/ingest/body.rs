//! Reading and parsing an ingest body: one event, a JSON array, or NDJSON.
//! A batch is all-or-nothing, so parsing stops at the first bad event and
//! names it (`index`) and its field.

use axum::body::Body;
use axum::http::StatusCode;
use futures_util::StreamExt;
use serde_json::Value;

use super::error::ApiError;
use crate::protocol::{FleetWorkerEvent, parse_event};

/// How much of an oversized body herald reads and throws away before it
/// answers 413, and for how long at most. A server that closes a socket
/// with unread data makes the kernel reset it, and the client (Alertmanager,
/// curl) then reports "connection reset" instead of the 413 that says why.
const DRAIN_BYTES: usize = 16 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Read the body, refusing more than `limit` bytes with `413` as soon as the
/// limit is crossed (without buffering the rest). `wants_continue` is true
/// when the client sent `Expect: 100-continue`: it has not sent the body
/// yet, so a body declared too large is refused without reading any of it.
pub async fn read_limited(
    body: Body,
    declared_len: Option<u64>,
    limit: usize,
    wants_continue: bool,
) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than server.max_body_bytes ({limit} bytes)"),
        )
        .with("max_body_bytes", limit)
    };
    let mut stream = body.into_data_stream();
    if declared_len.is_some_and(|n| n > limit as u64) {
        if !wants_continue && declared_len.is_some_and(|n| n <= DRAIN_BYTES as u64) {
            drain(&mut stream).await;
        }
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(declared_len.map_or(8 * 1024, |n| n as usize));
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("could not read body: {e}")))?;
        if out.len() + chunk.len() > limit {
            drain(&mut stream).await;
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Read and discard what is left of a refused body, within [`DRAIN_BYTES`]
/// and [`DRAIN_TIME`], so the client reads the answer instead of a reset.
async fn drain(stream: &mut axum::body::BodyDataStream) {
    let mut left = DRAIN_BYTES;
    let discard = async {
        while let Some(Ok(chunk)) = stream.next().await {
            left = left.saturating_sub(chunk.len());
            if left == 0 {
                break;
            }
        }
    };
    if tokio::time::timeout(DRAIN_TIME, discard).await.is_err() {
        tracing::debug!("an oversized body was still arriving after {DRAIN_TIME:?}; closing");
    }
}

/// How the events are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One object or an array of objects.
    Json,
    /// One object per line.
    Ndjson,
}

impl Framing {
    /// From the `Content-Type` header.
    pub fn from_content_type(content_type: Option<&str>) -> Framing {
        match content_type {
            Some(ct) if ct.contains("ndjson") || ct.contains("jsonl") || ct.contains("json-seq") => {
                Framing::Ndjson
            }
            _ => Framing::Json,
        }
    }
}

fn invalid(message: String, index: Option<usize>, field: Option<&str>) -> ApiError {
    let mut err = ApiError::new(StatusCode::BAD_REQUEST, message);
    if let Some(i) = index {
        err = err.with("index", i);
    }
    if let Some(f) = field {
        err = err.with("field", f);
    }
    err
}

/// Parse every event or fail on the first bad one.
pub fn parse_events(bytes: &[u8], framing: Framing) -> Result<Vec<FleetWorkerEvent>, ApiError> {
    let values: Vec<Value> = match framing {
        Framing::Json => match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Array(items)) => items,
            Ok(one @ Value::Object(_)) => vec![one],
            Ok(_) => {
                return Err(invalid(
                    "body must be an event object, an array of events, or NDJSON \
                     (Content-Type: application/x-ndjson)"
                        .into(),
                    None,
                    None,
                ));
            }
            Err(e) => {
                return Err(invalid(
                    format!(
                        "body is not valid JSON: {e} (for one event per line, send \
                         Content-Type: application/x-ndjson)"
                    ),
                    None,
                    None,
                ));
            }
        },
        Framing::Ndjson => {
            let mut out = Vec::new();
            for line in bytes.split(|b| *b == b'\n') {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let index = out.len();
                match serde_json::from_slice::<Value>(line) {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        return Err(invalid(
                            format!("event {index} is not valid JSON: {e}"),
                            Some(index),
                            None,
                        ));
                    }
                }
            }
            out
        }
    };
    if values.is_empty() {
        return Err(invalid("the batch holds no events".into(), None, None));
    }
    let mut events = Vec::with_capacity(values.len());
    for (index, value) in values.into_iter().enumerate() {
        match parse_event(value) {
            Ok(ev) => events.push(ev),
            Err(e) => {
                let mut err = invalid(
                    format!("event {index} is invalid: {}", e),
                    Some(index),
                    Some(&e.field),
                );
                if let Some(states) = e.known_states {
                    err = err.with("known_states", states);
                }
                return Err(err);
            }
        }
    }
    Ok(events)
}
