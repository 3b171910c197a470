//! One crypto provider (issue 8): with conpaas-core linked, an embedder's own rustls builders,
//! which use the process-default provider, work; rustls panics when it finds two compiled in.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What an embedder writes: `ServerConfig::builder()` and `ClientConfig::builder()`, no
/// provider named, then a real handshake and one message each way over them.
#[tokio::test]
async fn default_rustls_builders_work_beside_conpaas_core() {
    // This binary links conpaas-core (the other modules use it), so rustls is compiled with
    // the features of conpaas-core's whole graph: a second provider would make these panic.
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = CertificateDer::from(ca.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ca.signing_key.serialize_der()));

    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();

    // The provider rustls chose for the process is aws-lc-rs, the one conpaas-core uses.
    let chosen = rustls::crypto::CryptoProvider::get_default().unwrap();
    let aws = rustls::crypto::aws_lc_rs::default_provider();
    let suites = |provider: &rustls::crypto::CryptoProvider| {
        provider
            .cipher_suites
            .iter()
            .map(|suite| suite.suite())
            .collect::<Vec<_>>()
    };
    assert_eq!(suites(chosen), suites(&aws));

    let (client_io, server_io) = tokio::io::duplex(16 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let serving = tokio::spawn(async move {
        let mut tls = acceptor.accept(server_io).await.unwrap();
        let mut question = [0u8; 4];
        tls.read_exact(&mut question).await.unwrap();
        tls.write_all(b"pong").await.unwrap();
        tls.shutdown().await.unwrap();
        question
    });
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), client_io)
        .await
        .unwrap();
    tls.write_all(b"ping").await.unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    assert_eq!(&answer, b"pong");
    assert_eq!(&serving.await.unwrap(), b"ping");
}
