//! End-to-end tests of the director (one binary, modules per area).

mod ca;
mod config;
mod manager_client;
mod store;
mod vpn;
