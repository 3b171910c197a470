//! HTTP: the TLS accept loop and the ConPaaS 1.2 routes. The only layer that knows HTTP and JSON.

pub mod params;
pub mod server;
pub mod tls;
pub mod wire;
