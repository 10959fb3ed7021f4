//! Every API error is JSON: `{"error": "<sentence>", ...detail}` (SPEC §3),
//! turned into a response in this one place.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// An error answer: status, sentence, extra fields.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Map<String, Value>,
}

impl ApiError {
    /// An error with just a sentence.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let mut body = Map::new();
        body.insert("error".into(), Value::String(message.into()));
        ApiError { status, body }
    }

    /// Add a detail field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.body.insert(key.into(), value.into());
        self
    }

    /// `500`, for store failures: the answer carries the sentence only;
    /// the cause goes to the log (redacted like every log line).
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{context}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, context)
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The sentence it answers with.
    pub fn message(&self) -> &str {
        self.body.get("error").and_then(Value::as_str).unwrap_or("")
    }

    /// `503`, when the store is unavailable or herald is shutting down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(Value::Object(self.body))).into_response()
    }
}

/// A typed answer (one of `shapes.rs`) with a status.
pub fn answer<T: serde::Serialize>(status: StatusCode, body: T) -> Response {
    (status, Json(body)).into_response()
}

/// A JSON success answer with a status.
pub fn ok(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// `{"error": ...}` for unmatched paths, so even a typo'd URL answers JSON.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}
