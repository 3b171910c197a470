//! End-to-end tests of the HTTPS API (spec/director-api.md), through real clients, real TLS
//! and a real director on the dummy cloud.

// Test code: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod audit;
mod authz;
mod bad_input;
mod credit;
mod download;
mod hostile;
mod logins;
pub mod manager;
mod openapi;
mod ops;
mod original;
mod shapes;
mod story;
