//! The certificate authority: CA setup, issuing, CSR signing, DN fields. Sync, no DB or network IO.
//! (Being written.)

use std::path::PathBuf;

/// The key type of certificates the CA creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// RSA 2048-bit: what the old OpenSSL-based clients and VM images need. The default.
    Rsa2048,
    /// ECDSA on P-256: only for installations whose VMs all run OpenSSL >= 1.0.1.
    EcdsaP256,
}

/// Where the CA lives and what it issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSettings {
    /// `CERT_DIR`: `ca_cert.pem`, `ca_key.pem`, `cert.pem`, `key.pem`.
    pub cert_dir: PathBuf,
    /// Key type for new keys.
    pub key_algorithm: KeyAlgorithm,
}

/// Errors of this layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {}
