//! The JSON shapes of the API's answers and bodies, one type each: the
//! handlers serialize these, and `openapi.rs` describes the same types,
//! so the OpenAPI document cannot drift from what is sent.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{RefOr, schema::Ref};
use utoipa::{PartialSchema, ToSchema};

use crate::delivery::leases::ReplicasView;
use crate::store::{JournalEntry, ReceiptRow, WebMessageRow, WorkerRow};

/// Every error: a sentence, and where known the parameter or field at
/// fault and (in a batch) the event's index.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What is wrong, in a sentence.
    pub error: String,
    /// The parameter or JSON field at fault (`limit`, `tool`, `cursor`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// In a batch, the index of the first bad event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
}

/// The answer to an accepted batch: newly stored events and repeats.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// Events newly journaled.
    pub accepted: u64,
    /// Events already known (dropped).
    pub duplicates: u64,
}

/// A page of worker tasks.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkersPage {
    /// Newest first.
    pub workers: Vec<WorkerRow>,
    /// Pass back as `?cursor=` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// A page of one task's journal.
#[derive(Debug, Serialize, ToSchema)]
pub struct JournalPage {
    /// In ingest order.
    pub events: Vec<JournalEntry>,
    /// Pass back as `?cursor=` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// A page of delivery receipts.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveriesPage {
    /// Newest first.
    pub deliveries: Vec<ReceiptRow>,
    /// Pass back as `?cursor=` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// A failed receipt set to be sent again.
#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    /// The receipt.
    pub id: String,
    /// Its status now (`pending`).
    pub status: String,
}

/// Failed receipts set to be sent again, all at once.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetriedMany {
    /// How many.
    pub retried: i64,
    /// How many per channel.
    pub channels: BTreeMap<String, i64>,
}

/// A process check.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` (alive), `ready` (store reachable), `starting`.
    pub status: String,
}

/// A config re-read.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reloaded {
    /// Always true in a success.
    pub reloaded: bool,
    /// The new config in one line.
    pub summary: String,
}

/// The newest messages of a web channel.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebMessages {
    /// Oldest first.
    pub messages: Vec<WebMessageRow>,
}

/// Who delivers which channel (re-exported for the document).
pub type Replicas = ReplicasView;

/// One worker event as `POST /v1/events` takes it (SPEC §4). Parsed by
/// hand (`protocol.rs`) so a rejection names its field; this schema is
/// built from the same constants (the known states).
pub struct EventIn;

impl PartialSchema for EventIn {
    fn schema() -> RefOr<Schema> {
        let string = || ObjectBuilder::new().schema_type(SchemaType::new(Type::String));
        let integer = || ObjectBuilder::new().schema_type(SchemaType::new(Type::Integer));
        let id = || {
            string()
                .min_length(Some(1))
                .max_length(Some(crate::protocol::MAX_ID_BYTES))
        };
        let states: Vec<&str> = crate::protocol::KNOWN_STATES.to_vec();
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Object))
            .description(Some(
                "A worker task's state change. `running_tool` needs `tool`, `failed` needs `reason`, \
                 `completed` may carry `summary` and `exit_code`; `extra.labels` are matched by routes.",
            ))
            .property(
                "seq",
                integer().description(Some("Per-task order: higher is newer.")),
            )
            .property("run_id", id())
            .property("worker_id", id())
            .property("task_id", id())
            .property(
                "timestamp",
                string().format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::DateTime,
                ))),
            )
            .property("state", string().enum_values(Some(states)))
            .property("tool", string())
            .property("reason", string())
            .property("summary", string())
            .property("exit_code", integer())
            .property(
                "extra",
                ObjectBuilder::new().schema_type(SchemaType::new(Type::Object)),
            )
            .required("seq")
            .required("run_id")
            .required("worker_id")
            .required("task_id")
            .required("timestamp")
            .required("state")
            .into()
    }
}

impl ToSchema for EventIn {}

/// What `POST /v1/events` takes: one event, or an array of them (NDJSON:
/// one per line, with `Content-Type: application/x-ndjson`).
pub struct EventsIn;

impl PartialSchema for EventsIn {
    fn schema() -> RefOr<Schema> {
        let one = Ref::from_schema_name("EventIn");
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(one.clone())
            .item(utoipa::openapi::schema::ArrayBuilder::new().items(one))
            .into()
    }
}

impl ToSchema for EventsIn {}
