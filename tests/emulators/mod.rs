//! Fake platform endpoints for the integration tests, started on loopback
//! ports inside the test process.

#![allow(dead_code)]
// Handlers return ready HTTP responses as their error type; boxing them
// would only obscure the emulators.
#![allow(clippy::result_large_err)]

pub mod chaos;
pub mod discord;
pub mod discord_gateway;
pub mod lockout;
pub mod pagerduty;
pub mod slack;
pub mod slack_socket;
pub mod slack_webhook;
pub mod tally;
pub mod telegram;
pub mod webhook;
