//! rustls configuration of the director: its own certificate, client certificates optional at
//! the handshake and verified against the director's CA when present.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Building the TLS configuration failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM input held no usable certificate or key.
    #[error("cannot read the {what} (PEM)")]
    Pem {
        /// Which input.
        what: &'static str,
        /// The parser's complaint.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// rustls refused the certificates or key.
    #[error("rustls refused the tls configuration")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built from the CA certificate.
    #[error("cannot build the client certificate verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// [`server_config`] from the files of `CERT_DIR`.
pub fn server_config_from_files(
    files: &crate::ca::DirectorTlsFiles,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config(&files.cert_pem, &files.key_pem, &files.ca_cert_pem)
}

/// The server configuration: `cert_pem`/`key_pem` are the director's (`cert.pem`, `key.pem`),
/// `ca_pem` the CA whose certificates clients may present.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            what: "director certificate",
            source,
        })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| TlsError::Pem {
        what: "director key",
        source,
    })?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem) {
        let ca = ca.map_err(|source| TlsError::Pem {
            what: "ca certificate",
            source,
        })?;
        roots.add(ca)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    // Optional: /login, /getcerts and the tarball are reached without a certificate; a
    // certificate that is presented must still chain to the CA, as with 1.2's Apache.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
