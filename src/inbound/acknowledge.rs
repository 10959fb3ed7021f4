//! A press of **Acknowledge** (SPEC §3.5). The button's token names the
//! receipt whose notification carries it (`render::acknowledge_token`);
//! the press is believed only for the message that receipt posted, in its
//! channel on that platform — a forged token (Telegram lets a client send
//! any `callback_data`) can acknowledge nothing else. The press becomes
//! herald's `acknowledged` event, committed through the ingest writer like
//! herald's other events: journaled naming the person, the task's
//! escalations stop (`tasks.rs`), its live messages name who acknowledged,
//! and its surfaced notifications are marked to be edited by their
//! channels' actors (who and when, no button).
//! One such event per task (`ACKNOWLEDGED_SEQ`): a second press, anywhere,
//! is a repeat and the first person stays named.

use chrono::Utc;
use herald_messaging::{Outbound, Platform};
use serde_json::{Map, Value};

use crate::config::ChannelTarget;
use crate::escalations::Acknowledgement;
use crate::ingest::AppState;
use crate::protocol::{ACKNOWLEDGED_SEQ, FleetWorkerEvent, WorkerState};
use crate::store::StoreError;

/// A button pressed on a platform, as its request says.
#[derive(Debug, Clone)]
pub struct Press {
    /// Where.
    pub platform: Platform,
    /// The button's token.
    pub token: String,
    /// The platform's id of the chat or channel of the pressed message.
    pub chat: String,
    /// The platform's id of the pressed message.
    pub message: String,
    /// Who pressed it, as the platform names them.
    pub person: String,
    /// The platform's id of that person (journaled with the event).
    pub person_id: String,
}

/// Why a press changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum PressError {
    /// The token is not one herald made, or names no receipt.
    #[error("this button is not herald's")]
    NotHerald,
    /// The token names a receipt posted somewhere else than the pressed
    /// message.
    #[error("this button does not belong to the message it was pressed on")]
    NotThisMessage,
    /// The task is gone from the store.
    #[error("the task of this notification is not in herald's store")]
    NoTask,
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The event could not be committed.
    #[error("the acknowledgement was not recorded: {0}")]
    Commit(#[from] crate::ingest::writer::CommitError),
}

impl PressError {
    /// The `reason` label of `herald_inbound_rejected_total`.
    pub fn label(&self) -> &'static str {
        match self {
            PressError::NotHerald => "unknown_button",
            PressError::NotThisMessage => "button_elsewhere",
            PressError::NoTask => "unknown_task",
            PressError::Store(_) | PressError::Commit(_) => "store",
        }
    }
}

/// A press that took: the pressed message as it now reads (who
/// acknowledged and when, no button), and who that is.
#[derive(Debug, Clone)]
pub struct Acknowledged {
    /// The notification's new rendering.
    pub message: Outbound,
    /// The first acknowledgement of the task (maybe someone else's).
    pub by: Acknowledgement,
}

/// Believe a press, record it, and render the pressed message anew.
pub async fn acknowledge(state: &AppState, press: &Press) -> Result<Acknowledged, PressError> {
    let receipt_id = press.token.strip_prefix("ack:").ok_or(PressError::NotHerald)?;
    let (channel, message_id) = state
        .store
        .receipt_placement(receipt_id)
        .await?
        .ok_or(PressError::NotHerald)?;
    let receipt = state
        .store
        .receipts_by_id(&[receipt_id.to_owned()])
        .await?
        .into_iter()
        .next()
        .ok_or(PressError::NotHerald)?;
    if !posted_there(
        state,
        &channel,
        message_id.as_deref(),
        receipt.thread.as_deref(),
        press,
    ) {
        return Err(PressError::NotThisMessage);
    }
    state
        .writer
        .commit(vec![acknowledged_event(
            press,
            &receipt.run_id,
            &receipt.worker_id,
            &receipt.task_id,
        )])
        .await?;
    let by = state
        .store
        .acknowledgement(&receipt.run_id, &receipt.worker_id, &receipt.task_id)
        .await?
        .ok_or(PressError::NoTask)?;
    tracing::info!(
        platform = press.platform.as_str(),
        channel,
        run_id = receipt.run_id,
        worker_id = receipt.worker_id,
        task_id = receipt.task_id,
        by = by.by,
        "a task was acknowledged"
    );
    let mentions = {
        let config = state.config.borrow();
        config.channels.get(&channel).map_or_else(Vec::new, |ch| {
            crate::mentions::merged(
                &ch.mention_on_failure,
                &config.router,
                &crate::mentions::receipt_input(&receipt),
                &channel,
                ch.platform,
            )
        })
    };
    let message = crate::render::as_acknowledged(crate::delivery::receipt_message(&receipt, &mentions), &by);
    Ok(Acknowledged { message, by })
}

/// Whether the receipt's message is the one pressed: same platform, same
/// chat (or the thread of its task's replies there, which Discord reports
/// as the chat), and the same message id once the receipt knows it.
fn posted_there(
    state: &AppState,
    channel: &str,
    message_id: Option<&str>,
    thread: Option<&str>,
    press: &Press,
) -> bool {
    let config = state.config.borrow();
    let Some(ch) = config.channels.get(channel) else {
        return false;
    };
    let in_thread = ch.thread && thread == Some(press.chat.as_str());
    let same_chat = in_thread || matches!(&ch.target, ChannelTarget::Chat { id, .. } if *id == press.chat);
    ch.platform == press.platform && same_chat && message_id.is_none_or(|m| m == press.message)
}

/// Herald's `acknowledged` event for a task.
fn acknowledged_event(press: &Press, run_id: &str, worker_id: &str, task_id: &str) -> FleetWorkerEvent {
    let mut extra = Map::new();
    extra.insert("source".to_owned(), Value::String("herald".to_owned()));
    extra.insert(
        "platform".to_owned(),
        Value::String(press.platform.as_str().to_owned()),
    );
    extra.insert("user_id".to_owned(), Value::String(press.person_id.clone()));
    FleetWorkerEvent {
        seq: ACKNOWLEDGED_SEQ,
        run_id: run_id.to_owned(),
        worker_id: worker_id.to_owned(),
        task_id: task_id.to_owned(),
        timestamp: Utc::now(),
        state: WorkerState::Acknowledged {
            by: press.person.clone(),
        },
        extra: Some(extra),
        policy: None,
    }
}
