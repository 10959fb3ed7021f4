//! herald: delivers worker status to the chat rooms where people watch
//! their work. See README.md for the tour and docs/architecture.md for the
//! shape of the code.

pub mod config;
pub mod protocol;
pub mod routing;
pub mod store;
pub mod tasks;
pub mod delivery;
pub mod render;
pub mod web;
pub mod metrics;
pub mod ingest;
pub mod app;
pub mod client;
pub mod demo;
