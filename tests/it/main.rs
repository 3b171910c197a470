//! End-to-end tests of the director (one binary, modules per area).

// Test code panics on setup failures by design: the panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod agents;
mod api;
mod ca;
mod config;
mod crypto_provider;
mod director;
mod ec2;
mod embedding;
mod fuzz_corpus;
mod lifecycle;
mod manager_client;
mod manifest;
mod opennebula;
mod opennebula_xmlrpc;
mod openstack;
mod pyopenssl_manager;
mod reliability;
mod server;
mod sim;
mod store;
mod support;
mod tidy;
mod transport;
mod vpn;
