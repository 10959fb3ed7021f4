//! Slack Socket Mode: the app opens WebSockets to Slack
//! (`apps.connections.open` with an app-level token) and Slack pushes slash
//! commands and interactions over them instead of calling a public URL.
//!
//! slack-morphism keeps the connections (opening them, answering pings,
//! reconnecting after a drop or a `disconnect` frame). This module reads
//! each envelope's JSON itself and hands its payload on unchanged, so the
//! core handles it exactly as the HTTP request it stands for: slash
//! command fields as `/v1/inbound/slack` gets them, an interaction as the
//! `payload` field. Each envelope is acknowledged by its `envelope_id`
//! once the handler answered (Slack wants that within 3 s), the answer
//! carried in the acknowledgement where Slack accepts one.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use herald_messaging::{Listening, PushHandler, Pushed};
use serde_json::{Value, json};
use slack_morphism::clients_manager::{SlackSocketModeClientsManager, SlackSocketModeClientsManagerFactory};
use slack_morphism::listener::SlackClientEventsListenerEnvironment;
use slack_morphism::prelude::*;
use slack_morphism::{SlackSocketModeClientListener, SlackSocketModeWssClientId};

/// How many connections are kept open: two, so a connection Slack
/// refreshes (it asks every few hours) is covered by the other while it
/// reconnects. Slack allows ten per app.
pub const CONNECTIONS: u32 = 2;

type Manager = dyn SlackSocketModeClientsManager + Send + Sync;

/// Reads envelopes and hands them to the core's handler.
struct Envelopes {
    manager: Weak<Manager>,
    handler: Arc<dyn PushHandler>,
}

/// What an envelope asks of the app.
#[derive(Debug, PartialEq)]
enum Envelope {
    /// `hello`: connected; nothing to answer.
    Hello,
    /// `disconnect`: Slack will close this connection; open a new one.
    Disconnect,
    /// A request to acknowledge, with what it carries for the handler
    /// (`None`: a kind herald does not handle, acknowledged unhandled).
    Request {
        envelope_id: String,
        pushed: Option<Pushed>,
        accepts_response_payload: bool,
    },
    /// Not an envelope herald can read.
    Unreadable,
}

fn read(body: &str) -> Envelope {
    let Ok(envelope) = serde_json::from_str::<Value>(body) else {
        return Envelope::Unreadable;
    };
    match envelope["type"].as_str() {
        Some("hello") => Envelope::Hello,
        Some("disconnect") => Envelope::Disconnect,
        Some(kind) => {
            let Some(envelope_id) = envelope["envelope_id"].as_str() else {
                return Envelope::Unreadable;
            };
            let payload = envelope["payload"].clone();
            let pushed = match kind {
                "slash_commands" => Some(Pushed::Command(payload)),
                "interactive" => Some(Pushed::Interaction(payload)),
                _ => None,
            };
            Envelope::Request {
                envelope_id: envelope_id.to_owned(),
                pushed,
                accepts_response_payload: envelope["accepts_response_payload"].as_bool().unwrap_or(false),
            }
        }
        None => Envelope::Unreadable,
    }
}

/// The acknowledgement frame for an envelope, carrying the answer where
/// Slack takes one.
fn acknowledgement(envelope_id: &str, answer: Option<Value>, accepts_response_payload: bool) -> String {
    match answer {
        Some(payload) if accepts_response_payload => json!({"envelope_id": envelope_id, "payload": payload}),
        _ => json!({"envelope_id": envelope_id}),
    }
    .to_string()
}

#[async_trait]
impl SlackSocketModeClientListener for Envelopes {
    async fn on_message(&self, client_id: &SlackSocketModeWssClientId, body: String) -> Option<String> {
        match read(&body) {
            Envelope::Hello => {
                tracing::debug!(connection = %client_id.to_string(), "Slack Socket Mode connected");
                None
            }
            Envelope::Disconnect => {
                tracing::debug!(connection = %client_id.to_string(), "Slack asked to reconnect");
                if let Some(manager) = self.manager.upgrade() {
                    manager.restart_client(client_id).await;
                }
                None
            }
            Envelope::Request {
                envelope_id,
                pushed,
                accepts_response_payload,
            } => {
                let answer = match pushed {
                    Some(pushed) => self.handler.pushed(pushed).await,
                    None => None,
                };
                Some(acknowledgement(&envelope_id, answer, accepts_response_payload))
            }
            Envelope::Unreadable => {
                tracing::warn!(
                    bytes = body.len(),
                    "an unreadable Slack Socket Mode frame was ignored"
                );
                None
            }
        }
    }

    async fn on_error(&self, error: Box<dyn std::error::Error + Send + Sync + 'static>) {
        tracing::warn!(error = %error, "Slack Socket Mode");
    }

    async fn on_disconnect(&self, client_id: &SlackSocketModeWssClientId) {
        if let Some(manager) = self.manager.upgrade() {
            manager.restart_client(client_id).await;
        }
    }
}

/// Open [`CONNECTIONS`] Socket Mode connections with `app_token` through
/// `client` and keep them until the returned [`Listening`] is dropped.
pub async fn listen(
    client: Arc<SlackClient<SlackClientHyperHttpsConnector>>,
    app_token: &str,
    handler: Arc<dyn PushHandler>,
) -> Listening {
    let environment = Arc::new(SlackClientEventsListenerEnvironment::new(client.clone()));
    let manager: Arc<Manager> = client.http_api.connector.new_clients_manager(environment);
    let envelopes = Arc::new(Envelopes {
        manager: Arc::downgrade(&manager),
        handler,
    });
    let config = SlackClientSocketModeConfig::new().with_max_connections_count(CONNECTIONS);
    let token = SlackApiToken::new(SlackApiTokenValue(app_token.to_owned()));
    // Registering only sets up the connections' state; should it fail,
    // commands over Socket Mode are not taken and the log says why.
    if let Err(e) = manager.register_new_token(&config, token, envelopes).await {
        tracing::warn!(error = %e, "could not register the Slack app token for Socket Mode");
    }
    manager.start().await;
    Listening::new(move || {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { manager.shutdown().await });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slash_command_is_handed_on_with_its_fields_and_answered_in_the_acknowledgement() {
        let body = json!({
            "envelope_id": "e1",
            "type": "slash_commands",
            "accepts_response_payload": true,
            "payload": {"command": "/herald", "text": "status run-1", "user_id": "U1"},
        })
        .to_string();
        let Envelope::Request {
            envelope_id,
            pushed,
            accepts_response_payload,
        } = read(&body)
        else {
            panic!("not a request");
        };
        assert_eq!(envelope_id, "e1");
        assert_eq!(
            pushed,
            Some(Pushed::Command(
                json!({"command": "/herald", "text": "status run-1", "user_id": "U1"})
            ))
        );
        let ack: Value = serde_json::from_str(&acknowledgement(
            "e1",
            Some(json!({"text": "hi"})),
            accepts_response_payload,
        ))
        .unwrap();
        assert_eq!(ack, json!({"envelope_id": "e1", "payload": {"text": "hi"}}));
    }

    #[test]
    fn an_interaction_is_acknowledged_without_a_payload_where_slack_takes_none() {
        let body = json!({
            "envelope_id": "e2",
            "type": "interactive",
            "accepts_response_payload": false,
            "payload": {"type": "block_actions"},
        })
        .to_string();
        let Envelope::Request {
            pushed,
            accepts_response_payload,
            ..
        } = read(&body)
        else {
            panic!("not a request");
        };
        assert_eq!(
            pushed,
            Some(Pushed::Interaction(json!({"type": "block_actions"})))
        );
        let ack: Value = serde_json::from_str(&acknowledgement(
            "e2",
            Some(json!({"x": 1})),
            accepts_response_payload,
        ))
        .unwrap();
        assert_eq!(ack, json!({"envelope_id": "e2"}));
    }

    #[test]
    fn other_frames_are_read_for_what_they_are() {
        assert_eq!(read(r#"{"type":"hello","num_connections":1}"#), Envelope::Hello);
        assert_eq!(
            read(r#"{"type":"disconnect","reason":"refresh_requested"}"#),
            Envelope::Disconnect
        );
        assert_eq!(read("not json"), Envelope::Unreadable);
        assert_eq!(read(r#"{"type":"events_api"}"#), Envelope::Unreadable);
        assert!(matches!(
            read(r#"{"type":"events_api","envelope_id":"e3","payload":{}}"#),
            Envelope::Request { pushed: None, .. }
        ));
    }
}
