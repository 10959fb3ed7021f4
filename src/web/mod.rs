//! Herald's built-in web channel: a [`Messaging`] implementation whose
//! "platform" is herald itself. Messages are kept in the store and pushed
//! live to `/channels/{name}` with server-sent events, so the embedded
//! default works with nothing but a browser.

pub(crate) mod overview;
pub(crate) mod pages;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use herald_messaging::{
    Budget, ChannelRef, DeliveryOutcome, EDITS, IdempotencyKey, Limits, LookupPage, LookupQuery,
    MessageHandle, Messaging, NotSurfaced, Outbound, POSTS, Platform, Rate, Reconciliation,
};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::store::{Store, WebMessageRow, now_ms};

pub use pages::routes;

/// Posts, and separately edits, per second and web channel.
pub const WEB_RATE_PER_SECOND: u32 = 1000;

/// Live updates buffered per viewer before a slow one must reload.
const UPDATE_BUFFER: usize = 256;

/// One live update pushed to viewers of a web channel.
#[derive(Debug, Clone, Serialize)]
pub struct WebUpdate {
    /// `post` (a new message) or `edit` (replace message `message.id`).
    pub op: &'static str,
    /// The message as it now is.
    pub message: WebMessageRow,
}

/// The web channel platform: stores messages and fans updates out to viewers.
#[derive(Clone)]
pub struct WebChannel {
    store: Store,
    hubs: Arc<Mutex<HashMap<String, broadcast::Sender<WebUpdate>>>>,
    /// Tells the other replicas, whose viewers see the same channels.
    bus: crate::hints::Bus,
    /// Becomes true when herald stops: live streams end, so a page left
    /// open does not hold the shutdown (it reconnects to another replica).
    closing: Arc<tokio::sync::watch::Sender<bool>>,
}

impl WebChannel {
    /// A web platform over `store`; what it posts is also announced on
    /// `bus`, for viewers connected to other replicas.
    pub fn new(store: Store, bus: crate::hints::Bus) -> Self {
        WebChannel {
            store,
            hubs: Arc::default(),
            bus,
            closing: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    /// End every live stream (herald is stopping).
    pub fn close_viewers(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`WebChannel::close_viewers`] was called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closing = self.closing.subscribe();
        async move {
            // An error means the channel is gone, which is closing too.
            let _gone = closing.wait_for(|closed| *closed).await.is_err();
        }
    }

    /// Another replica posted or edited message `id`: show it to this
    /// replica's viewers too.
    pub async fn show_from_elsewhere(&self, channel: &str, id: i64, op: &str) {
        let op = if op == "post" { "post" } else { "edit" };
        match self.store.web_message(channel, id).await {
            Ok(Some(message)) => self.push(op, message),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, channel, "could not read a web message another replica wrote")
            }
        }
    }

    /// Subscribe to a web channel's live updates.
    pub fn subscribe(&self, channel: &str) -> broadcast::Receiver<WebUpdate> {
        self.sender(channel).subscribe()
    }

    /// The newest messages of a web channel, oldest first.
    pub async fn recent(
        &self,
        channel: &str,
        limit: i64,
    ) -> Result<Vec<WebMessageRow>, crate::store::StoreError> {
        self.store.web_messages(channel, limit).await
    }

    fn sender(&self, channel: &str) -> broadcast::Sender<WebUpdate> {
        let mut hubs = self.hubs.lock().unwrap_or_else(PoisonError::into_inner);
        hubs.entry(channel.to_owned())
            .or_insert_with(|| broadcast::channel(UPDATE_BUFFER).0)
            .clone()
    }

    fn publish(&self, op: &'static str, message: WebMessageRow) {
        self.bus.send(crate::hints::Hint::Web {
            channel: message.channel.clone(),
            id: message.id,
            op: op.to_owned(),
        });
        self.push(op, message);
    }

    fn push(&self, op: &'static str, message: WebMessageRow) {
        // No viewer connected is the normal case, not an error.
        let _viewers = self
            .sender(&message.channel)
            .send(WebUpdate { op, message })
            .unwrap_or(0);
    }
}

fn transient(e: impl std::fmt::Display) -> DeliveryOutcome {
    DeliveryOutcome::NotSurfaced(NotSurfaced::Transient {
        reason: e.to_string(),
    })
}

#[async_trait]
impl Messaging for WebChannel {
    fn platform(&self) -> Platform {
        Platform::Web
    }

    /// The web channel is local: generous limits (a post or edit is one
    /// SQLite write and a broadcast), but still bounded so one busy fleet
    /// cannot flood every open browser.
    fn limits(&self) -> Limits {
        Limits {
            max_text_chars: 16_000,
            budgets: vec![
                Budget::channel(POSTS, Rate::new(WEB_RATE_PER_SECOND, Duration::from_secs(1))),
                Budget::channel(EDITS, Rate::new(WEB_RATE_PER_SECOND, Duration::from_secs(1))),
            ],
            enforced_by_platform: false,
        }
    }

    async fn post(&self, to: &ChannelRef, msg: &Outbound) -> DeliveryOutcome {
        let body = match serde_json::to_value(msg) {
            Ok(b) => b,
            Err(e) => return transient(e),
        };
        let key = msg.idempotency_key.as_ref().map(IdempotencyKey::as_str);
        match self.store.web_post(&to.id, &body, key, now_ms()).await {
            Ok(row) => {
                let handle = MessageHandle(row.id.to_string());
                self.publish("post", row);
                DeliveryOutcome::Surfaced(handle)
            }
            Err(e) => transient(e),
        }
    }

    async fn edit(&self, to: &ChannelRef, at: &MessageHandle, msg: &Outbound) -> DeliveryOutcome {
        let Ok(id) = at.as_str().parse::<i64>() else {
            return DeliveryOutcome::NotSurfaced(NotSurfaced::Gone);
        };
        let body = match serde_json::to_value(msg) {
            Ok(b) => b,
            Err(e) => return transient(e),
        };
        match self.store.web_edit(&to.id, id, &body, now_ms()).await {
            Ok(Some(row)) => {
                self.publish("edit", row);
                DeliveryOutcome::Surfaced(at.clone())
            }
            Ok(None) => DeliveryOutcome::NotSurfaced(NotSurfaced::Gone),
            Err(e) => transient(e),
        }
    }

    /// Posts are local writes; the page orders messages by their times.
    fn accepts_concurrent_posts(&self, _to: &ChannelRef) -> bool {
        true
    }

    fn reconciliation(&self, _to: &ChannelRef) -> Reconciliation {
        Reconciliation::Lookup
    }

    /// A crash between the web post's commit and the receipt's update
    /// leaves the outcome unknown; the idempotency keys find the messages
    /// again, all in one page (the keys are indexed).
    async fn lookup(&self, to: &ChannelRef, query: &LookupQuery<'_>) -> Result<LookupPage, NotSurfaced> {
        let keys: Vec<&str> = query.keys.iter().map(IdempotencyKey::as_str).collect();
        match self.store.web_find(&to.id, &keys).await {
            Ok(found) => Ok(LookupPage {
                found: found
                    .into_iter()
                    .map(|(key, id)| (IdempotencyKey(key), MessageHandle(id.to_string())))
                    .collect(),
                next: None,
            }),
            Err(e) => Err(NotSurfaced::Transient {
                reason: format!("could not read the web channel's messages: {e}"),
            }),
        }
    }
}
