//! Issue #21: the director's client against a manager on ConPaaS 1.2's own TLS stack
//! (`support::pyopenssl`: pyOpenSSL configured as 1.2's `conpaas/core/https/server.py`, which
//! aborts any resumed handshake). A client resuming TLS sessions fails on its second call to
//! such a manager; the director's never resumes, so every call, repeated, goes through.

// Test code: a panic is a test failure, with the message saying what went wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use conpaas_core::ca::CertIdentity;
use conpaas_core::manager_client::{ManagerClient, PeerCheck};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::TestDirector;
use crate::support::pyopenssl::PyManager;

/// A director's CA, its certificate, and a pyOpenSSL manager of uid 1 on 127.0.0.1.
struct Setup {
    base: TestDirector,
    manager: PyManager,
    director_cert: String,
    director_key: String,
}

impl Setup {
    fn start() -> Setup {
        let base = TestDirector::start();
        let identity = base.forge_manager_identity(1, 7);
        let manager = PyManager::start(
            "127.0.0.1",
            &identity.cert_pem,
            &identity.key_pem,
            &base.ca_pem(),
            1,
        );
        let certs = base.cert_dir();
        let director_cert =
            std::fs::read_to_string(certs.join(conpaas_core::ca::CERT_FILE)).unwrap();
        let director_key = std::fs::read_to_string(certs.join(conpaas_core::ca::KEY_FILE)).unwrap();
        Setup {
            base,
            manager,
            director_cert,
            director_key,
        }
    }

    /// The director's manager client, as the director builds it.
    fn client(&self) -> ManagerClient {
        let peer_check: PeerCheck = Arc::new(|der: &[u8]| {
            CertIdentity::parse(der).is_ok_and(|id| id.role.as_deref() == Some("manager"))
        });
        ManagerClient::new(
            self.director_cert.as_bytes(),
            self.director_key.as_bytes(),
            self.base.ca_pem().as_bytes(),
            peer_check,
            Duration::from_secs(10),
        )
        .unwrap()
    }
}

/// Accepts any server: only the resumption behaviour of the pyOpenSSL manager is under test.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One `get_service_info` over a connection of `connector`; the answer's text or the error.
async fn raw_call(
    connector: &tokio_rustls::TlsConnector,
    manager: &PyManager,
) -> Result<String, std::io::Error> {
    let tcp = tokio::net::TcpStream::connect((manager.host.as_str(), manager.port)).await?;
    let name = ServerName::IpAddress(manager.host.parse::<std::net::IpAddr>().unwrap().into());
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(
        b"GET /?method=get_service_info&id=1 HTTP/1.1\r\nHost: m\r\n\
          Content-Type: application/json\r\nConnection: close\r\n\r\n",
    )
    .await?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            // 1.2 managers end their answers without close_notify.
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(error) => return Err(error),
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// The pyOpenSSL manager is faithful to 1.2: a client resuming sessions (rustls' default) gets
/// its first call through and its second refused by OpenSSL, with 1.2's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_2_manager_aborts_resumed_handshakes() {
    let setup = Setup::start();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = CertificateDer::pem_slice_iter(setup.director_cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(setup.director_key.as_bytes()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.enable_sni = false;
    // rustls' default: Resumption::in_memory_sessions(256) with tickets.
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));

    let first = raw_call(&connector, &setup.manager).await;
    let first = first.unwrap_or_else(|error| panic!("{error}: {:?}", setup.manager.records()));
    assert!(
        first.starts_with("HTTP/1.0 200 OK\r\n"),
        "{first}: {:?}",
        setup.manager.records()
    );
    assert!(first.contains(r#""state": "INIT""#), "{first}");
    let second = raw_call(&connector, &setup.manager).await;
    assert!(
        second.is_err(),
        "a resumed handshake went through: {second:?}"
    );
    let records = setup.manager.wait_records(2);
    assert_eq!(records[0]["event"], "call", "{records:?}");
    assert_eq!(records[0]["resumed"], false, "{records:?}");
    assert_eq!(records[1]["event"], "tls_error", "{records:?}");
    let error = records[1]["error"].as_str().unwrap();
    assert!(
        error.contains("session id context uninitialized"),
        "OpenSSL refused the second handshake for another reason: {error}"
    );
}

/// The director's client calls the same 1.2 manager again and again: every call is a full
/// handshake, none is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_client_calls_a_1_2_manager_twice() {
    let setup = Setup::start();
    let client = setup.client();
    let url = setup.manager.url();
    for _ in 0..2 {
        let info = client.get_at(&url, "get_service_info", None).await;
        assert_eq!(
            info.unwrap(),
            json!({"state": "INIT", "type": "php"}),
            "{:?}",
            setup.manager.failures()
        );
    }
    for _ in 0..2 {
        let shutdown = client.call_at(&url, "shutdown", json!({})).await;
        assert_eq!(
            shutdown.unwrap(),
            json!({}),
            "{:?}",
            setup.manager.failures()
        );
    }
    // A clone shares the connector (and so any session cache): still no resumption.
    let again = client.clone().get_at(&url, "get_service_info", None).await;
    assert!(again.is_ok(), "{again:?}");
    assert_eq!(
        setup.manager.methods(),
        [
            "get_service_info",
            "get_service_info",
            "shutdown",
            "shutdown",
            "get_service_info"
        ]
    );
    assert!(
        setup.manager.failures().is_empty(),
        "{:?}",
        setup.manager.failures()
    );
    for call in setup.manager.calls() {
        assert_eq!(call["resumed"], false, "{call}");
        assert_eq!(call["caller"]["role"], "frontend", "{call}");
    }
}
