//! The handshake-signature half of a custom rustls `ServerCertVerifier`: the crate's verifiers
//! decide about the server's certificate in their own way (record it, accept any, require a
//! manager's) but verify the handshake's signatures exactly as rustls' own verifiers do, with
//! the crypto provider's algorithms. One copy of that delegation, so that the three cannot
//! drift apart in what they accept (1.2 managers are pyOpenSSL servers; a scheme dropped here
//! would fail their handshakes).

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::CertificateDer;
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The signature algorithms of a crypto provider, as a `ServerCertVerifier` delegates to them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HandshakeSignatures {
    algorithms: WebPkiSupportedAlgorithms,
}

impl HandshakeSignatures {
    /// The algorithms `provider` verifies signatures with.
    pub(crate) fn of(provider: &CryptoProvider) -> Self {
        HandshakeSignatures {
            algorithms: provider.signature_verification_algorithms,
        }
    }

    /// The algorithms themselves, for verifying a certificate chain with them.
    pub(crate) fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
        &self.algorithms
    }

    /// `ServerCertVerifier::verify_tls12_signature`.
    pub(crate) fn verify_tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    /// `ServerCertVerifier::verify_tls13_signature`.
    pub(crate) fn verify_tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    /// `ServerCertVerifier::supported_verify_schemes`.
    pub(crate) fn supported_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
