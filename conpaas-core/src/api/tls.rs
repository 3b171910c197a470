//! rustls configuration of the director: its own certificate, client certificates optional at
//! the handshake and verified against the director's CA when present.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::ServerConfig;
use std::sync::RwLock;

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
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
    /// A replacement certificate is not signed by the director's CA.
    #[error("the certificate is not issued by the director's CA")]
    NotIssuedByCa,
}

/// [`server_config`] from the files of `CERT_DIR`.
pub fn server_config_from_files(
    files: &crate::ca::DirectorTlsFiles,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config(&files.cert_pem, &files.key_pem, &files.ca_cert_pem)
}

/// The server configuration: `cert_pem`/`key_pem` are the director's (`cert.pem`, `key.pem`),
/// `ca_pem` the CA whose certificates clients may present. Its certificate cannot be
/// replaced; [`reloadable_server_config`] gives one whose certificate can.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
) -> Result<Arc<ServerConfig>, TlsError> {
    reloadable_server_config(cert_pem, key_pem, ca_pem).map(|(config, _)| config)
}

/// [`reloadable_server_config`] from the files of `CERT_DIR`.
pub fn reloadable_server_config_from_files(
    files: &crate::ca::DirectorTlsFiles,
) -> Result<(Arc<ServerConfig>, Arc<ServerIdentity>), TlsError> {
    reloadable_server_config(&files.cert_pem, &files.key_pem, &files.ca_cert_pem)
}

/// [`server_config`] whose certificate and key can be replaced while it serves
/// ([`ServerIdentity::replace`], what `director serve` does on SIGHUP): new handshakes get
/// the new certificate, open connections keep theirs. The CA that client certificates are
/// verified against is fixed.
pub fn reloadable_server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
) -> Result<(Arc<ServerConfig>, Arc<ServerIdentity>), TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    let mut ca_der = None;
    for ca in CertificateDer::pem_slice_iter(ca_pem) {
        let ca = ca.map_err(|source| TlsError::Pem {
            what: "ca certificate",
            source,
        })?;
        ca_der.get_or_insert_with(|| ca.clone());
        roots.add(ca)?;
    }
    let identity = Arc::new(ServerIdentity {
        current: RwLock::new(certified_key(cert_pem, key_pem, &provider)?),
        ca_der,
        provider: provider.clone(),
    });
    // Optional: /login, /getcerts and the tarball are reached without a certificate; a
    // certificate that is presented must still chain to the CA, as with 1.2's Apache.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(identity.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), identity))
}

/// A certificate chain and its key, checked to belong together.
fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            what: "director certificate",
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::Rustls(rustls::Error::NoCertificatesPresented));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| TlsError::Pem {
        what: "director key",
        source,
    })?;
    let certified = CertifiedKey::from_der(chain, key, provider)?;
    // from_der lets a key whose public half it cannot compute pass: not ours.
    certified.keys_match()?;
    Ok(Arc::new(certified))
}

/// The director's TLS certificate and key as a server presents them, replaceable while it
/// serves: the certificate resolver of [`reloadable_server_config`].
pub struct ServerIdentity {
    current: RwLock<Arc<CertifiedKey>>,
    /// The CA a replacement must be issued by (the first of `ca_cert.pem`).
    ca_der: Option<CertificateDer<'static>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("certificate", &self.describe())
            .finish_non_exhaustive()
    }
}

/// What a certificate is, for the log: never its key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateSummary {
    /// The subject's common name.
    pub common_name: String,
    /// The serial number, hexadecimal.
    pub serial: String,
    /// The end of its validity, RFC 3339.
    pub not_after: String,
    /// SHA-256 of the certificate (DER), hexadecimal.
    pub sha256: String,
}

impl std::fmt::Display for CertificateSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CN={} serial={} not_after={} sha256={}",
            self.common_name, self.serial, self.not_after, self.sha256
        )
    }
}

fn summary(der: &[u8]) -> Option<CertificateSummary> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let common_name = certificate
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    let not_after = certificate
        .validity()
        .not_after
        .to_datetime()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    Some(CertificateSummary {
        common_name,
        serial: certificate.raw_serial_as_string().replace(':', ""),
        not_after,
        sha256: hex::encode(digest.as_ref()),
    })
}

impl ServerIdentity {
    /// The certificate presented now.
    pub fn describe(&self) -> Option<CertificateSummary> {
        let current = self.current();
        summary(current.end_entity_cert().ok()?.as_ref())
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the certificate and key presented to new handshakes; open connections keep
    /// theirs. Refused, leaving the current one, when the PEM is unreadable, the key is not
    /// the certificate's, or the certificate is not issued by the director's CA (clients
    /// holding `ca_cert.pem` would refuse it). Answers what is presented now.
    pub fn replace(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<CertificateSummary, TlsError> {
        let certified = certified_key(cert_pem, key_pem, &self.provider)?;
        let leaf = certified.end_entity_cert()?;
        if let Some(ca) = &self.ca_der {
            issued_by(leaf.as_ref(), ca.as_ref())?;
        }
        let summary = summary(leaf.as_ref()).ok_or(TlsError::NotIssuedByCa)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = certified;
        Ok(summary)
    }

    /// [`replace`](Self::replace) with `cert.pem` and `key.pem` of a `CERT_DIR` read by
    /// [`DirectorTlsFiles::read`](crate::ca::DirectorTlsFiles::read).
    pub fn replace_from_files(
        &self,
        files: &crate::ca::DirectorTlsFiles,
    ) -> Result<CertificateSummary, TlsError> {
        self.replace(&files.cert_pem, &files.key_pem)
    }
}

/// Whether `leaf` is signed by the CA certificate `ca` (both DER).
fn issued_by(leaf: &[u8], ca: &[u8]) -> Result<(), TlsError> {
    let (_, leaf) =
        x509_parser::parse_x509_certificate(leaf).map_err(|_| TlsError::NotIssuedByCa)?;
    let (_, ca) = x509_parser::parse_x509_certificate(ca).map_err(|_| TlsError::NotIssuedByCa)?;
    leaf.verify_signature(Some(ca.public_key()))
        .map_err(|_| TlsError::NotIssuedByCa)
}

impl ResolvesServerCert for ServerIdentity {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
