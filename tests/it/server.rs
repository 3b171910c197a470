//! The library's `DirectorServer` (`director serve` as an embedder calls it): served from a
//! generated data directory's director.cfg on 127.0.0.1:0, its certificate reloaded while it
//! serves (a key others can read refused, the certificate in use kept), stopped by its shutdown
//! future; and from typed parts, bound to the first address of a list that binds, or to a
//! listener bound by the caller.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use conpaas_core::api::server::{DirectorServer, ServeError};
use conpaas_core::ca::{self, CertificateAuthority, KeyAlgorithm};
use conpaas_core::cloud::{CloudRegistry, DummyCloud};
use conpaas_core::config::{self, ConfigSource};
use conpaas_core::director::{Director, setup};
use conpaas_core::store::{AuditQuery, Store};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use secrecy::ExposeSecret as _;

use crate::support::http::client_tls;

/// The certificate the server at `addr` presents to a new handshake (DER).
async fn presented(addr: SocketAddr, ca_pem: &str) -> Vec<u8> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls(ca_pem, None)));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// The serial number of a certificate (DER), hexadecimal as `CertificateSummary` gives it.
fn serial(der: &[u8]) -> String {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).unwrap();
    certificate.raw_serial_as_string().replace(':', "")
}

fn pem_der(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path).unwrap().to_vec()
}

/// `GET /version` over HTTPS, trusting only the CA.
async fn version(addr: SocketAddr, ca_pem: &str) -> u16 {
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(client_tls(ca_pem, None))
        .resolve("localhost", addr)
        .build()
        .unwrap();
    client
        .get(format!("https://localhost:{}/version", addr.port()))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn served_from_config_reloads_its_certificate_and_stops_on_its_future() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let source =
        ConfigSource::resolve_with(None, Some(data.clone()), None, Path::new("/nonexistent"));
    let loaded = config::load(&source).unwrap();
    assert!(loaded.generated);
    setup::init(&loaded, "localhost", false).unwrap();
    let certs = loaded.config.ca.cert_dir.clone();
    let ca_pem = std::fs::read_to_string(certs.join(ca::CA_CERT_FILE)).unwrap();
    let first = pem_der(&certs.join(ca::CERT_FILE));

    // Blocking (migrations, key files): before the runtime.
    let server = DirectorServer::from_config(&loaded).unwrap();
    let reload = server
        .reload_handle()
        .expect("from a director.cfg: reloadable");
    let director = server.director().clone();
    runtime().block_on(async move {
        let server = server
            .bind(&["127.0.0.1:0".parse().unwrap()])
            .await
            .unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        assert_eq!(presented(addr, &ca_pem).await, first);
        assert_eq!(version(addr, &ca_pem).await, 200);

        // A renewal under the same CA (what `director init --keep-ca` writes), and an edited
        // director.cfg, which cannot take effect while serving.
        let renewed = loaded.clone();
        tokio::task::spawn_blocking(move || setup::reissue_director_cert(&renewed, "localhost"))
            .await
            .unwrap()
            .unwrap();
        let second = pem_der(&certs.join(ca::CERT_FILE));
        assert_ne!(second, first);
        let mut text = std::fs::read_to_string(&loaded.path).unwrap();
        text.push_str("\n[conpaas]\nMAX_CREDIT = 40\n");
        std::fs::write(&loaded.path, text).unwrap();
        let report = reload.reload_tls().unwrap();
        assert_eq!(report.certificate().serial, serial(&second));
        assert_eq!(report.certificate().common_name, "localhost");
        assert!(!report.ca_changed());
        assert_eq!(report.config_changed_keys(), ["[conpaas] MAX_CREDIT"]);
        assert!(report.config_error().is_none());
        let now = presented(addr, &ca_pem).await;
        assert_eq!(serial(&now), serial(&second));
        assert_eq!(now, second);
        // The managers' TLS 1.0 handshakes (the system's OpenSSL) get the renewal too.
        assert_eq!(tls10_certificate(addr, &certs), hex::encode(&second));

        // A good pair whose key others can read is refused; the certificate in use stays.
        use std::os::unix::fs::PermissionsExt as _;
        let renewed = loaded.clone();
        tokio::task::spawn_blocking(move || setup::reissue_director_cert(&renewed, "localhost"))
            .await
            .unwrap()
            .unwrap();
        let third = pem_der(&certs.join(ca::CERT_FILE));
        let key = certs.join(ca::KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = reload.reload_tls().unwrap_err();
        assert!(
            matches!(error, ServeError::Ca(ca::Error::KeyPermissions { .. })),
            "{error:?}"
        );
        assert!(error.to_string().contains("expected 0600"), "{error}");
        assert_eq!(presented(addr, &ca_pem).await, second);
        assert_eq!(reload.current().unwrap().serial, serial(&second));
        // Once 0600, the same files load.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        reload.reload_tls().unwrap();
        assert_eq!(presented(addr, &ca_pem).await, third);

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(30), serving)
            .await
            .expect("serve returns once its shutdown future completes")
            .unwrap();
        // `serve` wrote the queued audit events before returning.
        let events: Vec<(String, String)> = director
            .audit_events(AuditQuery::all())
            .await
            .unwrap()
            .into_iter()
            .filter(|event| event.event.starts_with("config."))
            .map(|event| (event.event, event.outcome))
            .collect();
        let expected = [
            ("config.loaded", "ok"),
            ("config.reloaded", "ok"),
            ("config.reloaded", "failed"),
            ("config.reloaded", "ok"),
        ]
        .map(|(event, outcome)| (event.to_owned(), outcome.to_owned()));
        assert_eq!(events, expected);
    });
}

#[test]
fn served_from_typed_parts_binds_the_first_free_address_or_names_every_failure() {
    let temp = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let ca_pem = ca.cert_pem().to_owned();
    let issued = ca.issue_director_cert("localhost").unwrap();
    let tls = conpaas_core::api::tls::server_config(
        issued.cert_pem.as_bytes(),
        issued.key_pem.as_ref().unwrap().expose_secret().as_bytes(),
        ca_pem.as_bytes(),
    )
    .unwrap();
    let director = Director::builder()
        .store(Store::open_in_memory().unwrap())
        .ca(ca)
        .clouds(
            CloudRegistry::builder()
                .cloud(
                    "dummy",
                    Arc::new(DummyCloud::new("dummy", temp.path().join("vms"))),
                )
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let builder = DirectorServer::builder(director, tls);
    assert!(builder.reload_handle().is_none(), "no CERT_DIR to read");
    runtime().block_on(async move {
        assert!(matches!(
            builder.bind(&[]).await,
            Err(ServeError::NoAddress)
        ));
        // Two addresses already taken: the error names both, in order.
        let taken = [
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        ];
        let taken_addrs = taken
            .each_ref()
            .map(|listener| listener.local_addr().unwrap());
        let error = builder.bind(&taken_addrs).await.unwrap_err();
        let ServeError::Bind { failures } = &error else {
            panic!("{error:?}");
        };
        let tried: Vec<SocketAddr> = failures.iter().map(|(addr, _)| *addr).collect();
        assert_eq!(tried, taken_addrs);
        let message = error.to_string();
        for addr in taken_addrs {
            assert!(message.contains(&format!("{addr}: ")), "{message}");
        }
        // The first that binds wins.
        let server = builder
            .bind(&[taken_addrs[0], "127.0.0.1:0".parse().unwrap()])
            .await
            .unwrap();
        assert_ne!(server.local_addr(), taken_addrs[0]);
        drop(server);

        // A listener the caller bound.
        let own = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let own_addr = own.local_addr().unwrap();
        let server = builder.bind_listener(own).await.unwrap();
        assert_eq!(server.local_addr(), own_addr);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        assert_eq!(version(own_addr, &ca_pem).await, 200);
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(30), serving)
            .await
            .expect("serve returns once its shutdown future completes")
            .unwrap();
    });
}

/// The certificate (DER, hex) a TLS 1.0 client (a 1.2 manager's libcloud) gets.
fn tls10_certificate(addr: SocketAddr, certs: &Path) -> String {
    let output = std::process::Command::new(crate::support::clients::Python::interpreter())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tls10_client.py"))
        .args(["localhost", &addr.port().to_string()])
        .arg(certs.join(ca::CA_CERT_FILE))
        .args(["CERT", "/"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}
