//! TLS 1.0 and 1.1 for the managers' cloud only. The 1.2 managers start their agents with the
//! libcloud 0.8 bundled in ConPaaS.tar.gz, whose HTTPS connection pins `PROTOCOL_TLSv1`: TLS 1.0
//! exactly, which rustls does not speak. A [`Listener`](super::Listener) given a [`LegacyTls`]
//! reads the first record of each connection: a ClientHello whose highest version is TLS 1.0 or
//! 1.1 is answered by the system's OpenSSL with the director's certificate, and on that
//! connection the router serves only the managers' cloud routes (`/compute`: a key of one
//! service, which the manager holds anyway); every other route answers 403. Clients offering
//! TLS 1.2 or later (all others, the 1.2 managers' own pyOpenSSL calls included) get rustls as
//! before.

use std::sync::{Arc, RwLock};

use openssl::pkey::PKey;
use openssl::ssl::{SslAcceptor, SslMethod, SslVersion};
use openssl::x509::X509;

/// The OpenSSL acceptor of the legacy handshakes, with the director's certificate; reloadable
/// (a clone shares it).
#[derive(Clone)]
pub struct LegacyTls {
    acceptor: Arc<RwLock<SslAcceptor>>,
}

impl std::fmt::Debug for LegacyTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyTls").finish_non_exhaustive()
    }
}

/// The legacy acceptor could not be made from the certificate and key (OpenSSL's reasons, as
/// text: its error type stays out of the public API).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS 1.0 for the managers' cloud: {reason}")]
pub struct LegacyTlsError {
    reason: String,
}

fn refused(stack: openssl::error::ErrorStack) -> LegacyTlsError {
    LegacyTlsError {
        reason: stack.to_string(),
    }
}

fn acceptor(
    files: &crate::ca::DirectorTlsFiles,
) -> Result<SslAcceptor, openssl::error::ErrorStack> {
    let mut builder = SslAcceptor::mozilla_intermediate(SslMethod::tls_server())?;
    builder.set_min_proto_version(Some(SslVersion::TLS1))?;
    // Only the clients rustls cannot serve come here.
    builder.set_max_proto_version(Some(SslVersion::TLS1_1))?;
    // OpenSSL 3 refuses TLS 1.0's signatures (MD5+SHA-1) above security level 0; the suites
    // are those of OpenSSL 1.0.1 (AES-CBC with SHA-1, ECDHE or RSA key exchange).
    builder.set_security_level(0);
    builder.set_cipher_list("ECDHE+AES:RSA+AES:@SECLEVEL=0")?;
    let mut chain = X509::stack_from_pem(&files.cert_pem)?.into_iter();
    if let Some(leaf) = chain.next() {
        builder.set_certificate(&leaf)?;
    }
    for extra in chain {
        builder.add_extra_chain_cert(extra)?;
    }
    let key = PKey::private_key_from_pem(&files.key_pem)?;
    builder.set_private_key(&key)?;
    builder.check_private_key()?;
    Ok(builder.build())
}

impl LegacyTls {
    /// The acceptor of the director's `cert.pem` and `key.pem`.
    ///
    /// # Errors
    ///
    /// When OpenSSL refuses the certificate, the key or the protocol settings.
    pub fn from_files(files: &crate::ca::DirectorTlsFiles) -> Result<Self, LegacyTlsError> {
        Ok(LegacyTls {
            acceptor: Arc::new(RwLock::new(acceptor(files).map_err(refused)?)),
        })
    }

    /// New handshakes get the certificate of `files` (a renewal's reload).
    ///
    /// # Errors
    ///
    /// As [`from_files`](Self::from_files); the certificate in use stays.
    pub fn reload(&self, files: &crate::ca::DirectorTlsFiles) -> Result<(), LegacyTlsError> {
        let fresh = acceptor(files).map_err(refused)?;
        *self
            .acceptor
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }

    pub(super) fn ssl(&self) -> Result<openssl::ssl::Ssl, openssl::error::ErrorStack> {
        let acceptor = self
            .acceptor
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        openssl::ssl::Ssl::new(acceptor.context())
    }
}

/// Whether `first` (the start of a connection) is a TLS ClientHello whose highest version is
/// TLS 1.0 or 1.1: a handshake record, a ClientHello, `client_version` 3.1 or 3.2.
pub(super) fn is_legacy_hello(first: &[u8]) -> bool {
    matches!(
        first,
        [0x16, 0x03, _, _, _, 0x01, _, _, _, 0x03, 0x01 | 0x02, ..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_client_hellos_are_legacy() {
        let hello = |major: u8, minor: u8| {
            vec![
                0x16, 0x03, 0x01, 0x00, 0x80, 0x01, 0x00, 0x00, 0x7c, major, minor, 0,
            ]
        };
        assert!(is_legacy_hello(&hello(3, 1)));
        assert!(is_legacy_hello(&hello(3, 2)));
        // TLS 1.2 (and 1.3, which says 1.2 here), SSL 3.0, an SSLv2 hello, HTTP.
        assert!(!is_legacy_hello(&hello(3, 3)));
        assert!(!is_legacy_hello(&hello(3, 0)));
        assert!(!is_legacy_hello(&[
            0x80, 0x2e, 0x01, 0x03, 0x01, 0, 0, 0, 0, 0, 0
        ]));
        assert!(!is_legacy_hello(b"GET / HTTP/1.1\r\n"));
        assert!(!is_legacy_hello(&hello(3, 1)[..10]));
    }
}
