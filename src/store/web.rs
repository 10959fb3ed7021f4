//! Storage of the built-in web channel's messages. Herald is that platform,
//! so it keeps the messages itself, and they survive restarts like a chat
//! platform's would.

use serde::Serialize;
use serde_json::Value;

use super::StoreError;
use super::columns::Columns;

/// One message of a web channel.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebMessageRow {
    /// Message id (the `MessageHandle`).
    pub id: i64,
    /// Web channel name.
    pub channel: String,
    /// The rendered message.
    #[schema(value_type = Object)]
    pub body: Value,
    /// When it was created (RFC 3339 in the API).
    #[serde(serialize_with = "crate::api_time::at")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// When it was last edited.
    #[serde(serialize_with = "crate::api_time::at")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

/// A [`WebMessageRow`] of `channel` from a row of web messages.
pub(crate) fn web_message_from(r: &impl Columns, channel: &str) -> Result<WebMessageRow, StoreError> {
    Ok(WebMessageRow {
        id: r.int("id")?,
        channel: channel.to_owned(),
        body: r.json("body")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
    })
}

/// Messages of herald's own web channel.
#[async_trait::async_trait]
pub trait WebStore: Send + Sync {
    /// Store a new web message and return it.
    async fn web_post(
        &self,
        channel: &str,
        body: &Value,
        idempotency_key: Option<&str>,
        now: i64,
    ) -> Result<WebMessageRow, StoreError>;

    /// Replace a web message's body; `None` when it does not exist.
    async fn web_edit(
        &self,
        channel: &str,
        id: i64,
        body: &Value,
        now: i64,
    ) -> Result<Option<WebMessageRow>, StoreError>;

    /// The messages posted with any of `keys` (reconciliation), as
    /// (key, message id).
    async fn web_find(&self, channel: &str, keys: &[&str]) -> Result<Vec<(String, i64)>, StoreError>;

    /// The newest `limit` messages of a web channel, oldest first.
    async fn web_messages(&self, channel: &str, limit: i64) -> Result<Vec<WebMessageRow>, StoreError>;

    /// One message of a web channel, by id (a replica showing what
    /// another one posted).
    async fn web_message(&self, channel: &str, id: i64) -> Result<Option<WebMessageRow>, StoreError>;
}
