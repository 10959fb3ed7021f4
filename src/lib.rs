//! herald: delivers worker status to the chat rooms where people watch
//! their work. See README.md for the tour and docs/architecture.md for the
//! shape of the code.

pub mod alert_policy;
pub mod alerts;
pub mod api_time;
pub mod app;
pub mod client;
pub mod config;
pub mod connecting;
pub mod contracts;
pub mod delivery;
pub mod demo;
pub mod escalations;
pub mod fallbacks;
pub mod hints;
pub mod inbound;
pub mod ingest;
pub mod mentions;
pub mod metrics;
pub mod overview;
pub mod protocol;
pub mod redact;
pub mod reloader;
pub mod render;
pub mod retention;
pub mod routing;
pub mod store;
pub mod tasks;
pub mod web;
