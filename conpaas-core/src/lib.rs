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
//! - [`client`]: the users' side (`cpsclient`): director routes, `~/.conpaas`, manager calls.
//!
//! Cargo features choose the layers (all are on by default; see [Features](#features)).
//! Without default features the crate is [`model`], [`vpn`], the [`cloud`] trait with its
//! plain types and [`store`]'s settings values: pure Rust, no C code built.
//!
//! For embedders (`docs/embedding.md`): build a [`director::Director`] from typed parts with
//! [`director::Director::builder`] (or from a director.cfg with
//! [`director::Director::open`]), register your own [`cloud::Cloud`]s in a
//! [`cloud::CloudRegistry`], and serve [`api::router`]; or merge [`api::conpaas_routes`] into
//! your own axum application and mount [`api::operator_routes`] where you choose, spawning
//! [`director::Director::run_maintenance`] beside them; or serve it all as `director serve`
//! does with [`api::server::DirectorServer`].
//!
//! A director on the dummy cloud, with a user who starts and stops a service:
//!
//! ```
//! use std::sync::Arc;
//! use conpaas_core::ca::{CertificateAuthority, KeyAlgorithm};
//! use conpaas_core::cloud::{CloudRegistry, DummyCloud};
//! use conpaas_core::director::accounts::{self, NewAccount};
//! use conpaas_core::director::{Director, StartRequest};
//! use conpaas_core::model::Credit;
//! use conpaas_core::store::{DatabaseUrl, Store, StoreSettings};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! // Building blocks (migrations, key generation): do it before the runtime starts.
//! let director = Director::builder()
//!     .store(Store::open(
//!         &StoreSettings::new(DatabaseUrl::Sqlite(dir.path().join("director.db"))).max_connections(4),
//!     )?)
//!     .ca(CertificateAuthority::generate(KeyAlgorithm::EcdsaP256)?)
//!     .clouds(
//!         CloudRegistry::builder()
//!             .cloud("dummy", Arc::new(DummyCloud::new("dummy", dir.path().join("vms"))))
//!             .build()?,
//!     )
//!     .director_url("https://localhost:5555".parse()?)
//!     .build()?;
//!
//! tokio::runtime::Runtime::new()?.block_on(async {
//!     let account = NewAccount::new("alice", "alice@example.org", "s3cret".into(), Credit(50));
//!     let alice = accounts::add_user(director.store(), account).await?;
//!     let service = director
//!         .start_service(StartRequest::new(alice.uid, "php"))
//!         .await?;
//!     // The dummy cloud's "VM" is its boot script, as a real cloud would receive it.
//!     let vmid = service.vmid.clone().unwrap_or_default();
//!     assert!(dir.path().join("vms").join(format!("{vmid}.sh")).exists());
//!     assert_eq!(director.services(alice.uid).await?.len(), 1);
//!     assert!(director.stop_service(alice.uid, service.sid).await?);
//!     assert!(director.services(alice.uid).await?.is_empty());
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })
//! # }
//! ```
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `ca` | [`ca`]: the certificate authority (aws-lc-rs, so C code is built) |
//! | `config` | [`config`]: director.cfg into each layer's settings |
//! | `sqlite`, `postgres` | [`store`]'s database backends |
//! | `ec2`, `opennebula` | the cloud drivers |
//! | `director` | [`director`], [`bootstrap`], [`cloud::CloudRegistry`] (with a backend) |
//! | `manager-client` | [`manager_client`]: calls to the managers |
//! | `api`, `manifest`, `server` | [`api`]: the routes, the manifest routes, the TLS server |
//! | `check` | [`check`]: the diagnostics of `cpscheck` |
//! | `client` | [`client`]: the users' side of `cpsclient` |
//!
//! What each pulls in, and its cost: `docs/embedding.md`. In a build without a feature, the
//! links above to what it adds lead here.
//!

// Links of the docs above to what a feature leaves out lead to the table of features.
#![cfg_attr(not(feature = "config"), doc = "[`config`]: #features")]
#![cfg_attr(not(feature = "ca"), doc = "[`ca`]: #features")]
#![cfg_attr(not(feature = "director"), doc = "[`bootstrap`]: #features")]
#![cfg_attr(not(feature = "manager-client"), doc = "[`manager_client`]: #features")]
#![cfg_attr(not(feature = "check"), doc = "[`check`]: #features")]
#![cfg_attr(not(feature = "client"), doc = "[`client`]: #features")]
#![cfg_attr(
    not(feature = "director"),
    doc = "[`director`]: #features\n[`director::Director`]: #features\n\
           [`director::Director::builder`]: #features\n[`director::Director::open`]: #features\n\
           [`director::Director::run_maintenance`]: #features\n[`cloud::CloudRegistry`]: #features"
)]
#![cfg_attr(
    not(feature = "api"),
    doc = "[`api`]: #features\n[`api::router`]: #features\n\
           [`api::conpaas_routes`]: #features\n[`api::operator_routes`]: #features"
)]
#![cfg_attr(
    not(feature = "server"),
    doc = "[`api::server::DirectorServer`]: #features"
)]
// docs.rs (nightly): each item shows the features it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

// `store` is internal; `director` and what builds on it enable it without choosing a backend.
#[cfg(all(feature = "store", not(any(feature = "sqlite", feature = "postgres"))))]
compile_error!(
    "conpaas-core: the store (and so `director`, `api`, `check`) needs a database backend: \
     enable the `sqlite` or `postgres` feature"
);

// First: its macro is used by the modules below.
#[macro_use]
mod setters;

#[cfg(feature = "api")]
pub mod api;
#[cfg(feature = "director")]
pub mod bootstrap;
#[cfg(feature = "ca")]
pub mod ca;
#[cfg(feature = "check")]
pub mod check;
#[cfg(feature = "client")]
pub mod client;
pub mod cloud;
#[cfg(feature = "config")]
pub mod config;
// Each of the CA, the configuration, the SQLite store and the director uses its part.
#[cfg(any(feature = "ca", feature = "sqlite"))]
#[cfg_attr(not(all(feature = "director", feature = "sqlite")), allow(dead_code))]
mod data_files;
#[cfg(feature = "director")]
pub mod director;
pub mod error;
#[cfg(feature = "manager-client")]
pub mod manager_client;
pub mod model;
pub mod store;
pub mod vpn;

pub use error::Error;
