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
//!
//! Cargo features choose the layers (all are on by default; the table, with what each pulls
//! in, is in `docs/embedding-features.md`). Without default features the crate is [`model`],
//! [`vpn`], [`ca`], the [`cloud`] trait with its plain types and [`store`]'s settings values.

// `store` is internal; `director` and what builds on it enable it without choosing a backend.
#[cfg(all(feature = "store", not(any(feature = "sqlite", feature = "postgres"))))]
compile_error!(
    "conpaas-core: the store (and so `director`, `api`, `check`) needs a database backend: \
     enable the `sqlite` or `postgres` feature"
);

#[cfg(feature = "api")]
pub mod api;
#[cfg(feature = "director")]
pub mod bootstrap;
pub mod ca;
#[cfg(feature = "check")]
pub mod check;
pub mod cloud;
#[cfg(feature = "config")]
pub mod config;
#[cfg(feature = "director")]
pub mod director;
pub mod error;
#[cfg(feature = "director")]
pub mod manager_client;
pub mod model;
pub mod store;
pub mod vpn;

pub use error::Error;
