//! The certificate authority: CA setup, issuing, CSR signing, DN fields. Sync, no DB or network IO.
//!
//! One CA per installation lives in `CERT_DIR` (`ca_cert.pem`, `ca_key.pem`); it signs the
//! director's own certificate (`cert.pem`, `key.pem`), users' certificates (`/getcerts`),
//! managers' certificates (service start) and agents' CSRs (`/ca/get_cert.php`). The
//! subject attributes, their OIDs and string types are those the ConPaaS 1.2 peers read
//! (`spec/certificates.md` §3); everything else follows §13: X.509 v3, SHA-256, random
//! 128-bit serials, back-dated `notBefore`, a SAN on the director's certificate, and agent
//! subjects built from the caller's identity instead of the CSR's.
//!
//! Everything here is synchronous and some of it is slow (RSA key generation takes tens of
//! milliseconds): async callers run it inside `spawn_blocking`, and
//! [`CertificateAuthority::start_key_pool`] has a [`KeyPool`] thread make RSA keys ahead of
//! demand. A CA need not live in files:
//! [`CertificateAuthority::generate`] makes one in memory and
//! [`CertificateAuthority::from_pem`] loads one from PEM texts (a Kubernetes Secret, Vault).
//!
//! ```
//! use conpaas_core::ca::{CaSettings, CertificateAuthority, IfExists, KeyAlgorithm};
//! use conpaas_core::model::UserId;
//!
//! # let scratch = tempfile::tempdir().unwrap();
//! // /etc/cpsdirector/certs in 1.2
//! let settings = CaSettings::new(scratch.path().join("certs"), KeyAlgorithm::EcdsaP256);
//! let ca = CertificateAuthority::create(&settings, IfExists::Fail)?;
//! ca.write_director_cert("director.example.org", IfExists::Fail)?;
//! let issued = ca.issue_user_cert(UserId(7), "alice", "alice@example.org")?;
//! // issued.serial goes into the issued-certificates table; issued.key_pem to the user only.
//! assert_eq!(issued.serial.len(), 32);
//! assert!(settings.cert_dir.join("ca_key.pem").exists());
//! # Ok::<(), conpaas_core::ca::Error>(())
//! ```

mod authority;
mod csr;
mod files;
mod keys;
mod names;
mod pool;

use std::io;
use std::path::PathBuf;

pub use authority::{CertificateAuthority, IfExists, IssuedCertificate};
pub use csr::VerifiedCsr;
pub use files::DirectorTlsFiles;
#[cfg(feature = "server")]
pub(crate) use files::check_private_mode;

/// Writes a private file (mode 0600) as the CA writes its key: exclusively, or replacing
/// atomically.
#[cfg(feature = "director")]
pub(crate) fn write_private_file(
    path: &std::path::Path,
    contents: &[u8],
    if_exists: IfExists,
) -> Result<(), Error> {
    files::write(path, contents, files::KEY_MODE, if_exists)
}
pub use names::{CertIdentity, CertInfo};
pub use pool::{KeyPool, KeyPoolStats};

/// File name of the CA certificate inside `CERT_DIR`.
pub const CA_CERT_FILE: &str = "ca_cert.pem";
/// File name of the CA private key inside `CERT_DIR` (mode 0600).
pub const CA_KEY_FILE: &str = "ca_key.pem";
/// File name of the director's own certificate inside `CERT_DIR`.
pub const CERT_FILE: &str = "cert.pem";
/// File name of the director's own private key inside `CERT_DIR` (mode 0600).
pub const KEY_FILE: &str = "key.pem";

/// The installation tag of a CA (8 hex digits of the MD5 of its DER certificate): every
/// client token of this installation's VMs starts with `cps-<tag>-`, so that directors of
/// different installations sharing a cloud account never touch each other's VMs.
pub fn installation_tag(ca_cert_der: &[u8]) -> String {
    use md5::Digest as _;
    let mut tag = hex::encode(md5::Md5::digest(ca_cert_der));
    tag.truncate(8);
    tag
}

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
#[non_exhaustive]
pub struct CaSettings {
    /// `CERT_DIR`: `ca_cert.pem`, `ca_key.pem`, `cert.pem`, `key.pem`.
    pub cert_dir: PathBuf,
    /// Key type for new keys.
    pub key_algorithm: KeyAlgorithm,
}

impl CaSettings {
    /// The CA of `cert_dir`, issuing `key_algorithm` keys.
    pub fn new(cert_dir: impl Into<PathBuf>, key_algorithm: KeyAlgorithm) -> Self {
        CaSettings {
            cert_dir: cert_dir.into(),
            key_algorithm,
        }
    }

    setters! {
        cert_dir: into PathBuf,
        key_algorithm: KeyAlgorithm,
    }
}

/// Errors of this layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file of the CA could not be read (missing, unreadable).
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// A file of the CA (or `CERT_DIR` itself) could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The file exists and the caller asked not to replace it ([`IfExists::Fail`]).
    #[error("{} already exists; refusing to replace it", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// Only one of `ca_cert.pem` and `ca_key.pem` exists, so the CA can neither be loaded
    /// nor created without destroying the half that is there.
    #[error("{} exists but {} is missing", present.display(), missing.display())]
    IncompleteCa {
        /// The file that exists.
        present: PathBuf,
        /// The file that does not.
        missing: PathBuf,
    },
    /// A private key file can be read by group or others: the CA key signs everything, so
    /// we refuse to use it until the operator fixes the mode.
    #[error(
        "{} is readable by group or others (mode {mode:04o}); expected 0600: run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file or an upload holds no PEM block of the expected kind.
    #[error("{what} is not PEM: expected a -----BEGIN {label}----- block")]
    NotPem {
        /// What was being read (a path or "the CSR").
        what: String,
        /// The PEM label that was expected.
        label: &'static str,
    },
    /// A certificate or CSR is not valid DER (or has bytes after its end).
    #[error("{what} is malformed")]
    Malformed {
        /// What was being parsed.
        what: String,
        /// What the parser said.
        #[source]
        source: x509_parser::error::X509Error,
    },
    /// A private key file cannot be parsed (encrypted keys are not supported).
    #[error("cannot parse the private key in {} (it must be an unencrypted PEM key)", path.display())]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What rcgen said.
        #[source]
        source: rcgen::Error,
    },
    /// `ca_key.pem` does not hold the private key of `ca_cert.pem`.
    #[error("{} does not hold the key of {}", key_path.display(), cert_path.display())]
    KeyMismatch {
        /// The key file.
        key_path: PathBuf,
        /// The certificate file.
        cert_path: PathBuf,
    },
    /// `ca_cert.pem` is a v3 certificate whose basicConstraints say it is not a CA.
    #[error("{} is not a CA certificate (basicConstraints CA:FALSE or malformed)", path.display())]
    NotACa {
        /// The certificate file.
        path: PathBuf,
    },
    /// A key (the CA's, or a CSR's) is of a type or size we do not sign with or for.
    #[error("unsupported {what} key: {found}; expected RSA of 2048 to 8192 bits or ECDSA P-256")]
    UnsupportedKey {
        /// Whose key ("CA", "CSR").
        what: &'static str,
        /// What was found, e.g. "RSA 1024 bits".
        found: String,
    },
    /// The CSR's signature does not verify with its own public key: no proof that the
    /// requester holds the private key.
    #[error("the CSR's signature does not verify")]
    CsrSignature {
        /// What the verifier said.
        #[source]
        source: x509_parser::error::X509Error,
    },
    /// A user name cannot be a certificate CN: empty, longer than 64 characters, with
    /// control characters, or the reserved `CA` (which 1.2 managers trust blindly).
    #[error("invalid user name {username:?} for a certificate: {reason}")]
    InvalidUsername {
        /// The rejected name.
        username: String,
        /// Why.
        reason: &'static str,
    },
    /// An e-mail address cannot be an `emailAddress` (IA5String of 1 to 128 ASCII characters).
    #[error("invalid e-mail address {email:?} for a certificate: {reason}")]
    InvalidEmail {
        /// The rejected address.
        email: String,
        /// Why.
        reason: &'static str,
    },
    /// A host name cannot name the director's certificate.
    #[error("invalid host name {hostname:?} for the director's certificate: {reason}")]
    InvalidHostname {
        /// The rejected host name.
        hostname: String,
        /// Why.
        reason: &'static str,
    },
    /// A subject attribute of a certificate cannot be decoded as text.
    #[error("the {attribute} attribute of the certificate subject cannot be decoded as text")]
    UndecodableAttribute {
        /// The attribute's short name (`UID`, `serviceLocator`, `role`, `CN`).
        attribute: &'static str,
    },
    /// A subject attribute that names the holder (`UID`, `role`, `serviceLocator`) appears
    /// more than once: which one counts would depend on the reader (1.2's director took the
    /// first, the VMs the last), so such a certificate names nobody.
    #[error("the certificate subject has more than one {attribute} attribute")]
    RepeatedAttribute {
        /// The attribute's short name.
        attribute: &'static str,
    },
    /// The certificate may not be used to authenticate a client: its keyUsage lacks
    /// digitalSignature, or its extendedKeyUsage lacks clientAuth, or an extension is
    /// unreadable.
    #[error("the certificate is not fit for client authentication: {reason}")]
    NotForClientAuth {
        /// What is missing.
        reason: &'static str,
    },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random(#[source] std::io::Error),
    /// The system clock is outside the range a certificate validity can express.
    #[error("the system clock is outside the range certificates can express")]
    Clock,
    /// The CA is held in memory only: it has no `CERT_DIR` to write files into.
    #[error("the CA is held in memory: it has no CERT_DIR to write into")]
    InMemory,
    /// The thread of a [`KeyPool`] could not be started.
    #[error("cannot start the key pool's thread")]
    KeyPoolThread(#[source] std::io::Error),
    /// rcgen failed to generate a key or to build or sign a certificate.
    #[error("cannot generate or sign the certificate")]
    Sign(#[source] rcgen::Error),
}

impl Error {
    /// The OS random source failed; rand's error type stays out of the public API.
    pub(crate) fn random(error: rand::Error) -> Error {
        Error::Random(std::io::Error::other(error))
    }
}
