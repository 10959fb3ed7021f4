//! Fake platform endpoints for the integration tests, started on loopback
//! ports inside the test process.

#![allow(dead_code)]

pub mod webhook;
