//! Hints between the replicas of one store: an ingest on one replica
//! wakes the actor of a channel another replica holds, and a web message
//! one replica posts appears live on every replica's page. Sent through
//! the store (`store/hints.rs`: PostgreSQL `NOTIFY`; nothing on SQLite,
//! which one process serves). A hint only saves latency: actors poll the
//! store anyway, and a listener that lost its connection wakes every actor
//! once it is back.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::delivery::Wakers;
use crate::store::{Store, StoreError};
use crate::web::WebChannel;

/// Channel names per hint at most, well inside PostgreSQL's 8,000-byte
/// notification payload.
const NAMES_PER_HINT: usize = 64;

/// What one replica tells the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Hint {
    /// New work in the store for these channels' actors (`urgent`:
    /// terminal receipts, which go before progress work).
    Work {
        /// Channels with new terminal receipts.
        urgent: Vec<String>,
        /// Channels with other new work.
        touched: Vec<String>,
    },
    /// A web channel message was posted or edited.
    Web {
        /// Web channel name.
        channel: String,
        /// Message id.
        id: i64,
        /// `post` or `edit`.
        op: String,
    },
}

/// A hint with the process that sent it, so a replica skips its own.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    #[serde(flatten)]
    hint: Hint,
}

/// Where this process's hints go out. Cheap to clone; sends nothing until
/// [`connect`] ran (and never on a store only one process serves).
#[derive(Clone, Default)]
pub struct Bus {
    out: Arc<OnceLock<mpsc::UnboundedSender<Hint>>>,
}

impl Bus {
    /// Send `hint` to the other replicas (soon, batched with others).
    pub fn send(&self, hint: Hint) {
        if let Some(tx) = self.out.get() {
            // A closed sender means the process is stopping.
            let _stopping = tx.send(hint).is_err();
        }
    }
}

/// Connect `bus` to the store's hints, and act on the other replicas':
/// wake this replica's actors, show web messages to this replica's viewers.
pub async fn connect(store: &Store, bus: &Bus, wakers: Wakers, web: WebChannel) -> Result<(), StoreError> {
    let Some(feed) = store.listen().await? else {
        return Ok(());
    };
    let origin = crate::store::new_progress_key();
    let (tx, rx) = mpsc::unbounded_channel();
    if bus.out.set(tx).is_err() {
        return Ok(());
    }
    tokio::spawn(send_hints(store.clone(), origin.clone(), rx));
    tokio::spawn(take_hints(feed, origin, wakers, web));
    Ok(())
}

/// Merge what is queued into as few notifications as possible and send
/// them.
async fn send_hints(store: Store, origin: String, mut rx: mpsc::UnboundedReceiver<Hint>) {
    while let Some(first) = rx.recv().await {
        let mut urgent = BTreeSet::new();
        let mut touched = BTreeSet::new();
        let mut web = Vec::new();
        let mut next = Some(first);
        while let Some(hint) = next {
            match hint {
                Hint::Work {
                    urgent: u,
                    touched: t,
                } => {
                    urgent.extend(u);
                    touched.extend(t);
                }
                web_hint @ Hint::Web { .. } => web.push(web_hint),
            }
            next = rx.try_recv().ok();
        }
        touched.retain(|c| !urgent.contains(c));
        let urgent: Vec<String> = urgent.into_iter().collect();
        let touched: Vec<String> = touched.into_iter().collect();
        let mut hints = web;
        for chunk in urgent.chunks(NAMES_PER_HINT) {
            hints.push(Hint::Work {
                urgent: chunk.to_vec(),
                touched: Vec::new(),
            });
        }
        for chunk in touched.chunks(NAMES_PER_HINT) {
            hints.push(Hint::Work {
                urgent: Vec::new(),
                touched: chunk.to_vec(),
            });
        }
        for hint in hints {
            let envelope = Envelope {
                from: origin.clone(),
                hint,
            };
            let text = match serde_json::to_string(&envelope) {
                Ok(t) => t,
                Err(e) => {
                    warn!(error = %e, "could not encode a hint for the other replicas");
                    continue;
                }
            };
            if let Err(e) = store.announce(&text).await {
                // They poll; this only costs them latency.
                debug!(error = %e, "could not send a hint to the other replicas");
            }
        }
    }
}

/// Act on the other replicas' hints.
async fn take_hints(mut feed: crate::store::HintFeed, origin: String, wakers: Wakers, web: WebChannel) {
    while let Some(item) = feed.recv().await {
        let Some(text) = item else {
            // Hints may have been missed while the listener reconnected.
            wakers.wake_every_local();
            continue;
        };
        let envelope: Envelope = match serde_json::from_str(&text) {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "ignored a hint that is not one of herald's");
                continue;
            }
        };
        if envelope.from == origin {
            continue;
        }
        match envelope.hint {
            Hint::Work { urgent, touched } => {
                wakers.wake_local_urgent(&urgent);
                wakers.wake_local(&touched);
            }
            Hint::Web { channel, id, op } => web.show_from_elsewhere(&channel, id, &op).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_round_trip_as_json() {
        let envelope = Envelope {
            from: "x".into(),
            hint: Hint::Work {
                urgent: vec!["a".into()],
                touched: vec![],
            },
        };
        let text = serde_json::to_string(&envelope).unwrap();
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(back.hint, envelope.hint);
        let web = r#"{"from":"y","kind":"web","channel":"c","id":3,"op":"edit"}"#;
        let back: Envelope = serde_json::from_str(web).unwrap();
        assert_eq!(
            back.hint,
            Hint::Web {
                channel: "c".into(),
                id: 3,
                op: "edit".into()
            }
        );
    }
}
