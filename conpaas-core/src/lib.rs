//! # conpaas-core
//!
//! The ConPaaS 1.2 director as a library, wire-compatible with the 1.2 clients
//! (the Python `cpsclient`, the PHP frontend, the managers' own HTTPS code).
//!
//! Layers, dependencies pointing one way (see `docs/ARCHITECTURE.md`):
//!
//! - [`model`]: ids and plain records; imports nothing of the crate.
//! - [`config`]: `director.cfg` into typed, validated settings for each layer.
//! - [`store`]: the database (diesel; SQLite, PostgreSQL), migrations, passwords.
//! - [`ca`]: the certificate authority (rcgen issues, x509-parser reads).
//! - [`vpn`]: per-application VPN (IPOP) address planning; pure, no IO.
//! - [`cloud`]: the `Cloud` trait and its drivers (dummy, EC2, OpenNebula), the registry.
//! - [`bootstrap`]: the manager VM's context script.
//! - [`manager_client`]: JSON-RPC over HTTPS to managers.
//! - [`director`]: use-cases, the only room combining store, CA, VPN and clouds.
//! - [`api`]: HTTP: the TLS accept loop, the 1.2 routes, the wire JSON.
//! - [`check`]: the diagnostics of `cpscheck`.

pub mod api;
pub mod bootstrap;
pub mod ca;
pub mod check;
pub mod cloud;
pub mod config;
pub mod director;
pub mod error;
pub mod manager_client;
pub mod model;
pub mod store;
pub mod vpn;

pub use error::Error;
