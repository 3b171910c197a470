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
//! - [`cloud`]: the clouds managers run on; for now each cloud section's typed settings.
//! - [`director`]: use-cases, the only room combining store, CA, VPN and clouds.

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
