//! A small client for herald's HTTP API, used by `herald send`, `herald
//! deliveries` and the demo fleet.

use std::time::Duration;

use serde_json::Value;

/// Why posting events failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer (connection refused, timeout, ...).
    #[error("could not reach herald at {url}: {source}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// Herald answered with an error.
    #[error("herald refused ({status}): {body}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The JSON error body.
        body: String,
    },
}

/// What herald answered to an accepted post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Newly stored events.
    pub accepted: u64,
    /// Repeats of known events.
    pub duplicates: u64,
}

/// Posts events to one herald.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    events_url: String,
    token: Option<String>,
}

impl Client {
    /// A client for the herald at `base_url` (e.g. `http://127.0.0.1:8600`).
    pub fn new(base_url: &str, token: Option<String>) -> Result<Client, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let base_url = base_url.trim_end_matches('/').to_owned();
        Ok(Client {
            http,
            events_url: format!("{base_url}/v1/events"),
            base_url,
            token,
        })
    }

    /// `GET path` (with its query), answering the JSON body.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.call(self.http.get(format!("{}{path}", self.base_url)), path)
            .await
    }

    /// `POST path` without a body, answering the JSON body.
    pub async fn post_empty(&self, path: &str) -> Result<Value, ClientError> {
        self.call(self.http.post(format!("{}{path}", self.base_url)), path)
            .await
    }

    async fn call(&self, mut request: reqwest::RequestBuilder, path: &str) -> Result<Value, ClientError> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let unreachable = |source| ClientError::Unreachable {
            url: format!("{}{path}", self.base_url),
            source,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.text().await.map_err(unreachable)?;
        match serde_json::from_str::<Value>(&body) {
            Ok(value) if status.is_success() => Ok(value),
            _ => Err(ClientError::Rejected {
                status: status.as_u16(),
                body,
            }),
        }
    }

    /// Post a batch of events as a JSON array.
    pub async fn post(&self, events: &[Value]) -> Result<Accepted, ClientError> {
        let mut request = self.http.post(&self.events_url).json(events);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let unreachable = |source| ClientError::Unreachable {
            url: self.events_url.clone(),
            source,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.text().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(ClientError::Rejected {
                status: status.as_u16(),
                body,
            });
        }
        let parsed: Option<Value> = serde_json::from_str(&body).ok();
        let count = |key: &str| parsed.as_ref().and_then(|p| p[key].as_u64());
        match (count("accepted"), count("duplicates")) {
            (Some(accepted), Some(duplicates)) => Ok(Accepted { accepted, duplicates }),
            _ => Err(ClientError::Rejected {
                status: status.as_u16(),
                body,
            }),
        }
    }
}
