//! `director serve` as a library call: a director served from a new data directory's
//! director.cfg with `api::server::DirectorServer` on 127.0.0.1 at a free port, one HTTPS
//! request, its certificate renewed and reloaded while it serves (new handshakes get the new
//! one), then stopped by the future given to `serve`.
//! Run with `cargo run -p conpaas-core --example serve_director`.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use conpaas_core::api::server::DirectorServer;
use conpaas_core::config::{self, ConfigSource};
use conpaas_core::director::setup;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    // A data directory as `director --data-dir DIR serve` makes on first use: director.cfg
    // generated, then the CA, the director's certificate and the database.
    let loaded = config::load(&ConfigSource::resolve(None, Some(dir.path().join("data"))))?;
    setup::init(&loaded, "localhost", false)?;
    let cert_dir = loaded.config.ca.cert_dir.clone();
    let ca_pem = std::fs::read_to_string(cert_dir.join("ca_cert.pem"))?;

    // Opens the database and reads CERT_DIR (blocking): before the runtime.
    let server = DirectorServer::from_config(&loaded)?;
    let reload = server.reload_handle().expect("served from a director.cfg");
    tokio::runtime::Runtime::new()?.block_on(async move {
        let server = server.bind(&["127.0.0.1:0".parse()?]).await?;
        let addr = server.local_addr();
        println!("listening on https://{addr}");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));

        let client = reqwest::Client::builder()
            .use_preconfigured_tls(client_tls(&ca_pem))
            .resolve("localhost", addr)
            .build()?;
        let version = client
            .get(format!("https://localhost:{}/version", addr.port()))
            .send()
            .await?;
        println!("/version: {}", version.status());
        assert_eq!(version.status().as_u16(), 200);
        let before = presented_serial(addr, &ca_pem).await?;

        // A renewal under the same CA (`director init --keep-ca localhost`), then the reload a
        // SIGHUP makes in `director serve`: new handshakes get the new certificate.
        let renewed = loaded.clone();
        tokio::task::spawn_blocking(move || setup::reissue_director_cert(&renewed, "localhost"))
            .await??;
        let report = reload.reload_tls()?;
        println!("reloaded: {}", report.certificate());
        let after = presented_serial(addr, &ca_pem).await?;
        assert_ne!(after, before);
        assert_eq!(after, report.certificate().serial);
        println!("new handshakes get serial {after} (was {before})");

        stop.send(()).expect("still serving");
        serving.await?;
        println!("stopped");
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

/// A rustls client trusting only the director's CA, on the crate's crypto provider.
fn client_tls(ca_pem: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.expect("the CA certificate")).expect("a CA");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS 1.2 and 1.3")
    .with_root_certificates(roots)
    .with_no_client_auth()
}

/// The serial number (hexadecimal) of the certificate a new handshake with `addr` gets.
async fn presented_serial(
    addr: SocketAddr,
    ca_pem: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls(ca_pem)));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let leaf = &tls
        .get_ref()
        .1
        .peer_certificates()
        .expect("a server certificate")[0];
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf.as_ref())?;
    Ok(certificate.raw_serial_as_string().replace(':', ""))
}
