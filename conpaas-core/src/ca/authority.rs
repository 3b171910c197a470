//! The CA itself: create or load it from `CERT_DIR`, and issue the director's, users',
//! managers' and agents' certificates.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData, SanType, SerialNumber,
};
use secrecy::SecretString;
use time::{Duration, OffsetDateTime};
use x509_parser::x509::X509Version;

use super::csr::VerifiedCsr;
use super::keys::{self, KeyKind};
use super::names::{self, Subject};
use super::pool::{KeyPool, KeyPoolStats};
use super::{
    CA_CERT_FILE, CA_KEY_FILE, CERT_FILE, CaSettings, Error, KEY_FILE, KeyAlgorithm, files,
};
use crate::model::{Role, ServiceId, UserId};

/// How far `notBefore` lies in the past: VM clocks drift, and a manager booting with a slow
/// clock would otherwise find its brand-new certificate "not yet valid".
const BACKDATE: Duration = Duration::hours(1);
/// Lifetime of the CA and the director's certificate, as in 1.2.
const LONG_LIFETIME: Duration = Duration::days(5 * 365);
/// Lifetime of user, manager and agent certificates, as in 1.2.
const LEAF_LIFETIME: Duration = Duration::days(365);

/// What to do when a file about to be written already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IfExists {
    /// Refuse with [`Error::AlreadyExists`] and leave everything as it was. A new CA
    /// breaks every running service and every user certificate, so this is the default
    /// of `director init`.
    Fail,
    /// Replace the files (`director init --force`).
    Replace,
}

/// A certificate the CA just issued, with what the issued-certificates table records.
#[derive(Clone)]
#[non_exhaustive]
pub struct IssuedCertificate {
    /// The certificate, PEM (`CERTIFICATE`).
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key (PKCS#8 PEM) when the CA generated it; `None` for a signed CSR. Goes
    /// to the certificate's holder only: never stored, never logged (Debug shows nothing).
    pub key_pem: Option<SecretString>,
    /// Serial number: lowercase hex, 32 digits (see [`CertInfo::serial`](super::CertInfo)).
    pub serial: String,
    /// The `role` attribute.
    pub role: Role,
    /// The `UID` attribute; `None` for the director's certificate.
    pub uid: Option<UserId>,
    /// The `serviceLocator` attribute; `None` for the director's and users' certificates
    /// (users carry `serviceLocator=0`, which names no service).
    pub sid: Option<ServiceId>,
    /// Start of validity (an hour before issuance).
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
}

impl fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The PEM is long and says nothing a log reader needs; the key is redacted anyway.
        f.debug_struct("IssuedCertificate")
            .field("serial", &self.serial)
            .field("role", &self.role)
            .field("uid", &self.uid)
            .field("sid", &self.sid)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key_pem", &self.key_pem)
            .finish_non_exhaustive()
    }
}

/// The installation's certificate authority: its certificate and key, loaded once.
///
/// `Send + Sync`: share one behind an `Arc` and call it from `spawn_blocking`.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: Vec<u8>,
    /// `None` for a CA held only in memory.
    cert_dir: Option<PathBuf>,
    key_algorithm: KeyAlgorithm,
    not_after: DateTime<Utc>,
    legacy: bool,
    /// RSA keys made ahead for users' and managers' certificates, once started.
    key_pool: OnceLock<KeyPool>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_dir", &self.cert_dir)
            .field("key_algorithm", &self.key_algorithm)
            .field("not_after", &self.not_after)
            .field("legacy", &self.legacy)
            .field("key_pool", &self.key_pool.get())
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Creates a new CA in `CERT_DIR` (created 0700 if missing): a fresh key of
    /// `settings.key_algorithm` in `ca_key.pem` (0600) and a self-signed v3 certificate
    /// `emailAddress=info@conpaas.eu, CN=CA, O=ConPaaS` in `ca_cert.pem`, valid 5 × 365 days.
    ///
    /// With [`IfExists::Fail`], an existing `ca_key.pem` or `ca_cert.pem` is an error and
    /// nothing is written.
    pub fn create(settings: &CaSettings, if_exists: IfExists) -> Result<Self, Error> {
        let (key_path, cert_path) = ca_paths(&settings.cert_dir);
        if if_exists == IfExists::Fail {
            for path in [&key_path, &cert_path] {
                if files::exists(path) {
                    return Err(Error::AlreadyExists { path: path.clone() });
                }
            }
        }
        files::ensure_dir(&settings.cert_dir)?;
        let (key, cert) = new_ca(settings.key_algorithm)?;
        files::write(
            &key_path,
            key.serialize_pem().as_bytes(),
            files::KEY_MODE,
            if_exists,
        )?;
        files::write(
            &cert_path,
            cert.pem().as_bytes(),
            files::CERT_MODE,
            if_exists,
        )?;
        Self::from_parts(
            Some(&settings.cert_dir),
            settings.key_algorithm,
            cert.der().to_vec(),
            cert.pem(),
            key,
            &key_path,
            &cert_path,
        )
    }

    /// A new CA held only in memory (nothing is written): for tests and for embedders that
    /// keep the CA elsewhere (a Kubernetes Secret, Vault). Save [`cert_pem`](Self::cert_pem)
    /// and [`key_pem`](Self::key_pem) to reuse it: every certificate it issues dies with it.
    pub fn generate(key_algorithm: KeyAlgorithm) -> Result<Self, Error> {
        let (key, cert) = new_ca(key_algorithm)?;
        Self::from_parts(
            None,
            key_algorithm,
            cert.der().to_vec(),
            cert.pem(),
            key,
            Path::new("the CA key"),
            Path::new("the CA certificate"),
        )
    }

    /// The CA from PEM texts held in memory (a certificate and its unencrypted private key, as
    /// `ca_cert.pem` and `ca_key.pem` hold them), with the checks of [`load`](Self::load)
    /// except the file mode; `key_algorithm` is the type of the keys it will generate.
    pub fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        key_algorithm: KeyAlgorithm,
    ) -> Result<Self, Error> {
        let (key_path, cert_path) = (Path::new("the CA key"), Path::new("the CA certificate"));
        Self::from_texts(None, key_algorithm, cert_pem, key_pem, key_path, cert_path)
    }

    /// Loads the CA from `CERT_DIR`. Accepts what 1.2's `cpsconf.py` made (v1, SHA-1
    /// signed, key as PKCS#1 `RSA PRIVATE KEY`) as well as PKCS#8 and SEC1 keys; new
    /// certificates are SHA-256 signed either way.
    ///
    /// Refuses a `ca_key.pem` that group or others can read, a key that does not match the
    /// certificate, and keys other than RSA 2048..8192 or ECDSA P-256.
    pub fn load(settings: &CaSettings) -> Result<Self, Error> {
        let (key_path, cert_path) = ca_paths(&settings.cert_dir);
        let cert_text = files::read(&cert_path)?;
        let key_text = files::read_private(&key_path)?;
        Self::from_texts(
            Some(&settings.cert_dir),
            settings.key_algorithm,
            &cert_text,
            &key_text,
            &key_path,
            &cert_path,
        )
    }

    /// Parses and checks a CA certificate and key; the paths only name them in errors.
    fn from_texts(
        cert_dir: Option<&Path>,
        key_algorithm: KeyAlgorithm,
        cert_text: &str,
        key_text: &str,
        key_path: &Path,
        cert_path: &Path,
    ) -> Result<Self, Error> {
        let cert_der =
            names::first_pem_block(cert_text.as_bytes(), &["CERTIFICATE"]).ok_or_else(|| {
                Error::NotPem {
                    what: cert_path.display().to_string(),
                    label: "CERTIFICATE",
                }
            })?;
        let key = KeyPair::from_pem(key_text).map_err(|source| Error::BadKey {
            path: key_path.to_owned(),
            source,
        })?;
        // Re-encode the certificate rather than keep the file: a PEM with comments or a
        // trailing chain would otherwise be shipped to users and VMs as it is.
        let cert_pem = pem_encode("CERTIFICATE", &cert_der);
        Self::from_parts(
            cert_dir,
            key_algorithm,
            cert_der,
            cert_pem,
            key,
            key_path,
            cert_path,
        )
    }

    /// Loads the CA if `CERT_DIR` has one, creates it if it has neither file; half a CA (one
    /// file of the two) is an error rather than a reason to overwrite. This is what a
    /// director without configuration does on its first start.
    pub fn load_or_create(settings: &CaSettings) -> Result<Self, Error> {
        let (key_path, cert_path) = ca_paths(&settings.cert_dir);
        match (files::exists(&key_path), files::exists(&cert_path)) {
            (true, true) => Self::load(settings),
            (false, false) => match Self::create(settings, IfExists::Fail) {
                // Another director sharing CERT_DIR created it first: use theirs.
                Err(Error::AlreadyExists { .. }) => Self::load(settings),
                other => other,
            },
            (true, false) => Err(Error::IncompleteCa {
                present: key_path,
                missing: cert_path,
            }),
            (false, true) => Err(Error::IncompleteCa {
                present: cert_path,
                missing: key_path,
            }),
        }
    }

    /// Checks a loaded or created certificate and key belong together and builds the issuer.
    fn from_parts(
        cert_dir: Option<&Path>,
        key_algorithm: KeyAlgorithm,
        cert_der: Vec<u8>,
        cert_pem: String,
        key: KeyPair,
        key_path: &Path,
        cert_path: &Path,
    ) -> Result<Self, Error> {
        let x509 = names::parse_cert(&cert_der).map_err(|err| match err {
            Error::Malformed { source, .. } => Error::Malformed {
                what: cert_path.display().to_string(),
                source,
            },
            other => other,
        })?;
        let spki = x509.public_key();
        KeyKind::of_spki(spki, "CA")?;
        if key.der_bytes() != spki.subject_public_key.data.as_ref() {
            return Err(Error::KeyMismatch {
                key_path: key_path.to_owned(),
                cert_path: cert_path.to_owned(),
            });
        }
        // A v1 certificate has no extensions and is a CA by being self-signed (as OpenSSL
        // treats it); a v3 one must say CA:TRUE.
        if x509.version() == X509Version::V3 && !x509.is_ca() {
            return Err(Error::NotACa {
                path: cert_path.to_owned(),
            });
        }
        let not_after = names::timestamp(x509.validity().not_after.timestamp())?;
        let legacy = names::is_legacy(&x509);
        // The issuer name and key identifier come from the certificate as it is, so the
        // leaves' issuer and authorityKeyIdentifier match it even for a CA we did not make.
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key).map_err(|_| {
            Error::Malformed {
                what: cert_path.display().to_string(),
                source: x509_parser::error::X509Error::InvalidX509Name,
            }
        })?;
        Ok(CertificateAuthority {
            issuer,
            cert_pem,
            cert_der,
            cert_dir: cert_dir.map(Path::to_owned),
            key_algorithm,
            not_after,
            legacy,
            key_pool: OnceLock::new(),
        })
    }

    /// The CA certificate, PEM: shipped to users (`ca_cert.pem` in `certs.zip`) and VMs.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER: the trust anchor of the TLS server.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// When the CA certificate expires.
    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }

    /// True for a CA certificate made by 1.2 (v1 or SHA-1 signed). It still signs fine (and
    /// our signatures are SHA-256), but TLS peers that check the anchor's own signature may
    /// balk; replacing it means re-issuing every certificate.
    pub fn is_legacy(&self) -> bool {
        self.legacy
    }

    /// `CERT_DIR`; `None` for a CA held only in memory.
    pub fn cert_dir(&self) -> Option<&Path> {
        self.cert_dir.as_deref()
    }

    /// The key type of the keys this CA generates.
    pub fn key_algorithm(&self) -> KeyAlgorithm {
        self.key_algorithm
    }

    /// Starts keeping `size` keys generated ahead (on a background thread) for
    /// [`issue_user_cert`](Self::issue_user_cert) and
    /// [`issue_manager_cert`](Self::issue_manager_cert), when the CA's keys are RSA (ECDSA keys
    /// take microseconds: no pool). Answers whether a pool was started: not for ECDSA, for
    /// `size` 0, nor when one runs already (the first stays). Without a pool, or when it is
    /// empty, keys are generated on the caller's thread.
    pub fn start_key_pool(&self, size: usize) -> Result<bool, Error> {
        if size == 0 || self.key_algorithm != KeyAlgorithm::Rsa2048 || self.key_pool.get().is_some()
        {
            return Ok(false);
        }
        let pool = KeyPool::new(self.key_algorithm, size)?;
        // A concurrent start may have won: its pool stays, this one stops on drop.
        Ok(self.key_pool.set(pool).is_ok())
    }

    /// The key pool's counters, when a pool runs.
    pub fn key_pool_stats(&self) -> Option<KeyPoolStats> {
        self.key_pool.get().map(KeyPool::stats)
    }

    /// The key pool, when one runs (to wait for it to fill, in benchmarks).
    pub fn key_pool(&self) -> Option<&KeyPool> {
        self.key_pool.get()
    }

    /// A key for a leaf the CA generates: from the pool when one runs, else fresh.
    fn leaf_key(&self) -> Result<(KeyPair, KeyKind), Error> {
        match self.key_pool.get() {
            Some(pool) => pool.take(),
            None => keys::generate(self.key_algorithm),
        }
    }

    /// Whether the CA holds the private key of its own certificate (what the director's
    /// readiness answer checks): the key's public half equals the certificate's.
    pub fn key_matches_certificate(&self) -> bool {
        use rcgen::PublicKeyData as _;
        let Ok((_, certificate)) = x509_parser::parse_x509_certificate(&self.cert_der) else {
            return false;
        };
        certificate.public_key().raw == self.issuer.key().subject_public_key_info().as_slice()
    }

    /// The CA's private key, PEM (PKCS#8): for an embedder that stores a CA made by
    /// [`generate`](Self::generate). Whoever holds it can impersonate every ConPaaS party.
    pub fn key_pem(&self) -> SecretString {
        self.issuer.key().serialize_pem().into()
    }

    /// Issues the director's own certificate for `hostname` (the host of `DIRECTOR_URL`,
    /// no port): `role=frontend, emailAddress=info@conpaas.eu, CN=<hostname>, O=ConPaaS`,
    /// valid 5 × 365 days, with a subjectAltName for the host (dNSName, or iPAddress for an
    /// IP literal; `localhost` also gets 127.0.0.1 and ::1), because rustls and other modern
    /// clients ignore the CN. Writes nothing: see [`write_director_cert`](Self::write_director_cert).
    pub fn issue_director_cert(&self, hostname: &str) -> Result<IssuedCertificate, Error> {
        let hostname = names::check_hostname(hostname)?;
        let (key, kind) = keys::generate(self.key_algorithm)?;
        let mut sans = Vec::new();
        match hostname.parse::<IpAddr>() {
            Ok(ip) => sans.push(SanType::IpAddress(ip)),
            Err(_) => {
                let dns = rcgen::string::Ia5String::try_from(hostname).map_err(|_| {
                    Error::InvalidHostname {
                        hostname: hostname.to_owned(),
                        reason: "not ASCII",
                    }
                })?;
                sans.push(SanType::DnsName(dns));
                if hostname.eq_ignore_ascii_case("localhost") {
                    sans.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
                    sans.push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
                }
            }
        }
        let subject = Subject::Director { hostname };
        self.issue(
            &subject,
            &key,
            kind,
            LONG_LIFETIME,
            sans,
            Some(key.serialize_pem()),
        )
    }

    /// Issues the director's certificate (see [`issue_director_cert`](Self::issue_director_cert))
    /// and writes it to `CERT_DIR/cert.pem` and its key to `CERT_DIR/key.pem` (0600).
    pub fn write_director_cert(
        &self,
        hostname: &str,
        if_exists: IfExists,
    ) -> Result<IssuedCertificate, Error> {
        let Some(cert_dir) = &self.cert_dir else {
            return Err(Error::InMemory);
        };
        let key_path = cert_dir.join(KEY_FILE);
        let cert_path = cert_dir.join(CERT_FILE);
        if if_exists == IfExists::Fail {
            for path in [&key_path, &cert_path] {
                if files::exists(path) {
                    return Err(Error::AlreadyExists { path: path.clone() });
                }
            }
        }
        let issued = self.issue_director_cert(hostname)?;
        if let Some(key_pem) = &issued.key_pem {
            use secrecy::ExposeSecret;
            files::write(
                &key_path,
                key_pem.expose_secret().as_bytes(),
                files::KEY_MODE,
                if_exists,
            )?;
        }
        files::write(
            &cert_path,
            issued.cert_pem.as_bytes(),
            files::CERT_MODE,
            if_exists,
        )?;
        Ok(issued)
    }

    /// Issues a user's certificate with a fresh key (`/getcerts`):
    /// `serviceLocator=0, CN=<username>, UID=<uid>, O=Contrail, emailAddress=<email>, role=user`.
    ///
    /// The user name must be 1 to 64 characters without control characters and not `CA`;
    /// the e-mail 1 to 128 ASCII characters.
    pub fn issue_user_cert(
        &self,
        uid: UserId,
        username: &str,
        email: &str,
    ) -> Result<IssuedCertificate, Error> {
        let subject = Subject::User {
            uid,
            username,
            email,
        };
        // Check the inputs before spending time on a key.
        subject.to_dn()?;
        let (key, kind) = self.leaf_key()?;
        self.issue(
            &subject,
            &key,
            kind,
            LEAF_LIFETIME,
            Vec::new(),
            Some(key.serialize_pem()),
        )
    }

    /// Issues a manager's certificate with a fresh key (service start):
    /// `serviceLocator=<sid>, CN=ConPaaS, UID=<uid>, O=Contrail, emailAddress=info@conpaas.eu, role=manager`.
    pub fn issue_manager_cert(
        &self,
        uid: UserId,
        sid: ServiceId,
    ) -> Result<IssuedCertificate, Error> {
        let (key, kind) = self.leaf_key()?;
        let subject = Subject::Manager { uid, sid };
        self.issue(
            &subject,
            &key,
            kind,
            LEAF_LIFETIME,
            Vec::new(),
            Some(key.serialize_pem()),
        )
    }

    /// Signs an agent CSR sent by the manager of service `sid` owned by `uid`
    /// (`/ca/get_cert.php`). The CSR must be PEM, its signature must verify (SHA-1 allowed,
    /// 1.2 managers use it) and its key must be RSA >= 2048 or ECDSA P-256. Only its key is
    /// used: the subject is always
    /// `serviceLocator=<sid>, CN=ConPaaS, UID=<uid>, O=ConPaaS, emailAddress=info@conpaas.eu, role=agent`,
    /// whatever the CSR asked for, so a manager can only obtain agents of its own service.
    pub fn sign_agent_csr(
        &self,
        csr_pem: &[u8],
        uid: UserId,
        sid: ServiceId,
    ) -> Result<IssuedCertificate, Error> {
        let csr = VerifiedCsr::parse(csr_pem)?;
        let public_key = csr.public_key();
        let subject = Subject::Agent { uid, sid };
        self.issue(
            &subject,
            public_key,
            public_key.kind(),
            LEAF_LIFETIME,
            Vec::new(),
            None,
        )
    }

    /// Signs a leaf for `public_key`.
    fn issue(
        &self,
        subject: &Subject<'_>,
        public_key: &impl PublicKeyData,
        kind: KeyKind,
        lifetime: Duration,
        subject_alt_names: Vec<SanType>,
        key_pem: Option<String>,
    ) -> Result<IssuedCertificate, Error> {
        // A leaf never outlives its CA: past the CA's end every peer refuses it anyway, and the
        // recorded not_after would then lie.
        let validity = Validity::starting_now(lifetime)?.capped_at(self.not_after)?;
        let mut params = base_params(subject.to_dn()?, &validity);
        params.subject_alt_names = subject_alt_names;
        params.is_ca = IsCa::ExplicitNoCa;
        // Old clients do RSA key exchange (keyEncipherment), and OpenSSL's purpose check
        // wants digitalSignature on client certificates. An EC key cannot encipher.
        params.key_usages = match kind {
            KeyKind::Rsa => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            KeyKind::EcdsaP256 => vec![KeyUsagePurpose::DigitalSignature],
        };
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(public_key, &self.issuer)
            .map_err(Error::Sign)?;
        Ok(IssuedCertificate {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key_pem.map(SecretString::from),
            serial: validity.serial_hex,
            role: subject.role(),
            uid: subject.uid(),
            sid: subject.sid(),
            not_before: validity.not_before_utc,
            not_after: validity.not_after_utc,
        })
    }
}

/// `CERT_DIR/ca_key.pem`, `CERT_DIR/ca_cert.pem`.
/// A new CA key and its self-signed v3 certificate
/// `emailAddress=info@conpaas.eu, CN=CA, O=ConPaaS`, valid 5 × 365 days.
fn new_ca(key_algorithm: KeyAlgorithm) -> Result<(KeyPair, rcgen::Certificate), Error> {
    let (key, _) = keys::generate(key_algorithm)?;
    let validity = Validity::starting_now(LONG_LIFETIME)?;
    let mut params = base_params(names::ca_dn()?, &validity);
    // pathlen 0: there are no intermediates, and 1.2 peers recognise the CA by CN=CA,
    // so one could not be added anyway.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).map_err(Error::Sign)?;
    Ok((key, cert))
}

fn ca_paths(cert_dir: &Path) -> (PathBuf, PathBuf) {
    (cert_dir.join(CA_KEY_FILE), cert_dir.join(CA_CERT_FILE))
}

/// Validity and serial of one certificate.
struct Validity {
    serial: [u8; 16],
    serial_hex: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    not_before_utc: DateTime<Utc>,
    not_after_utc: DateTime<Utc>,
}

impl Validity {
    /// From an hour ago until `lifetime` from now, whole seconds (what the certificate can
    /// encode, so the recorded times equal the certificate's), with a fresh serial.
    fn starting_now(lifetime: Duration) -> Result<Self, Error> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let not_before = OffsetDateTime::from_unix_timestamp(now - BACKDATE.whole_seconds())
            .map_err(|_| Error::Clock)?;
        let not_after = OffsetDateTime::from_unix_timestamp(now + lifetime.whole_seconds())
            .map_err(|_| Error::Clock)?;
        let serial = random_serial()?;
        Ok(Validity {
            serial,
            serial_hex: names::serial_hex(&serial),
            not_before_utc: names::timestamp(not_before.unix_timestamp())?,
            not_after_utc: names::timestamp(not_after.unix_timestamp())?,
            not_before,
            not_after,
        })
    }
}

impl Validity {
    /// The same validity ending no later than `limit`.
    fn capped_at(mut self, limit: DateTime<Utc>) -> Result<Self, Error> {
        if self.not_after_utc > limit {
            self.not_after =
                OffsetDateTime::from_unix_timestamp(limit.timestamp()).map_err(|_| Error::Clock)?;
            self.not_after_utc = names::timestamp(limit.timestamp())?;
        }
        Ok(self)
    }
}

/// 16 octets from the OS CSPRNG, top bit clear (a positive INTEGER without a sign octet)
/// and the next bit set (always 16 octets long, so always 32 hex digits): 126 random bits.
/// rcgen would otherwise derive the serial from the public key, which repeats whenever
/// a key is certified twice (the same agent CSR sent again).
fn random_serial() -> Result<[u8; 16], Error> {
    let mut serial = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut serial)
        .map_err(Error::random)?;
    serial[0] = (serial[0] & 0x7f) | 0x40;
    Ok(serial)
}

/// Parameters every certificate shares: subject, validity, serial; no EKU, no nsCertType
/// (OpenSSL 0.9.8 applies purpose checks to them and the peers are both clients and servers).
fn base_params(subject: DistinguishedName, validity: &Validity) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject;
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.serial_number = Some(SerialNumber::from_slice(&validity.serial));
    params
}

/// PEM with 64-column lines and LF line ends, as OpenSSL writes it.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use secrecy::ExposeSecret;
    use x509_parser::asn1_rs::Tag;
    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::oid_registry::{OID_PKCS1_SHA256WITHRSA, OID_SIG_ECDSA_WITH_SHA256};

    use super::*;
    use crate::ca::CertIdentity;

    fn settings(dir: &Path, key_algorithm: KeyAlgorithm) -> CaSettings {
        CaSettings {
            cert_dir: dir.to_owned(),
            key_algorithm,
        }
    }

    fn parse(der: &[u8]) -> X509Certificate<'_> {
        names::parse_cert(der).unwrap()
    }

    /// (dotted OID, string tag, value) of each subject attribute, in order.
    fn subject(cert: &X509Certificate<'_>) -> Vec<(String, Tag, String)> {
        cert.subject()
            .iter_rdn()
            .map(|rdn| {
                let attrs: Vec<_> = rdn.iter().collect();
                assert_eq!(attrs.len(), 1, "one attribute per RDN");
                let value = attrs[0].attr_value();
                (
                    attrs[0].attr_type().to_id_string(),
                    value.header.tag(),
                    String::from_utf8(value.data.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    fn utf8(oid: &str, value: &str) -> (String, Tag, String) {
        (oid.to_owned(), Tag::Utf8String, value.to_owned())
    }

    fn ia5(oid: &str, value: &str) -> (String, Tag, String) {
        (oid.to_owned(), Tag::Ia5String, value.to_owned())
    }

    const UID: &str = "0.9.2342.19200300.100.1.1";
    const LOCATOR: &str = "1.3.6.1.5.5.7.48.1.7";
    const ROLE: &str = "2.5.4.72";
    const CN: &str = "2.5.4.3";
    const O: &str = "2.5.4.10";
    const EMAIL: &str = "1.2.840.113549.1.9.1";

    /// The checks every leaf must pass: chains to the CA, v3, CA:FALSE, keyUsage, AKI = the
    /// CA's SKI, no EKU, serial form, validity; returns nothing, panics on failure.
    fn check_leaf(ca: &CertificateAuthority, issued: &IssuedCertificate, ec: bool) {
        let ca_x509 = parse(ca.cert_der());
        let x509 = parse(&issued.cert_der);
        assert_eq!(x509.version(), X509Version::V3);
        x509.verify_signature(Some(ca_x509.public_key())).unwrap();
        assert_eq!(x509.issuer().as_raw(), ca_x509.subject().as_raw());
        let expected_sig = if ec {
            OID_SIG_ECDSA_WITH_SHA256
        } else {
            OID_PKCS1_SHA256WITHRSA
        };
        assert_eq!(x509.signature_algorithm.algorithm, expected_sig);
        assert!(!x509.is_ca());
        assert!(x509.basic_constraints().unwrap().is_some());
        let key_usage = x509.key_usage().unwrap().unwrap().value;
        assert!(key_usage.digital_signature());
        assert!(!key_usage.key_cert_sign());
        assert!(x509.extended_key_usage().unwrap().is_none());
        let ca_ski = ca_x509
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(ski) => Some(ski.0.to_vec()),
                _ => None,
            })
            .unwrap();
        let aki = x509
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    aki.key_identifier.as_ref().map(|id| id.0.to_vec())
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(aki, ca_ski);
        assert_eq!(issued.serial.len(), 32);
        assert_eq!(names::serial_hex(x509.raw_serial()), issued.serial);
        assert_eq!(x509.raw_serial().len(), 16);
        let validity = x509.validity();
        assert_eq!(
            validity.not_before.timestamp(),
            issued.not_before.timestamp()
        );
        assert_eq!(validity.not_after.timestamp(), issued.not_after.timestamp());
        let now = Utc::now().timestamp();
        assert!((issued.not_before.timestamp() - (now - 3600)).abs() < 60);
        assert_eq!(issued.cert_pem, pem_encode("CERTIFICATE", &issued.cert_der));
    }

    #[test]
    fn create_load_and_issue_every_kind() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(&dir.path().join("certs"), KeyAlgorithm::EcdsaP256);
        let ca = CertificateAuthority::create(&settings, IfExists::Fail).unwrap();
        assert!(!ca.is_legacy());

        let ca_x509 = parse(ca.cert_der());
        assert_eq!(
            subject(&ca_x509),
            vec![
                ia5(EMAIL, "info@conpaas.eu"),
                utf8(CN, "CA"),
                utf8(O, "ConPaaS")
            ]
        );
        assert!(ca_x509.is_ca());
        let basic = ca_x509.basic_constraints().unwrap().unwrap();
        assert!(basic.critical);
        let usage = ca_x509.key_usage().unwrap().unwrap().value;
        assert!(usage.key_cert_sign() && usage.crl_sign() && !usage.digital_signature());
        assert!(ca_x509.extended_key_usage().unwrap().is_none());
        assert_eq!(names::serial_hex(ca_x509.raw_serial()).len(), 32);
        let lifetime =
            ca_x509.validity().not_after.timestamp() - ca_x509.validity().not_before.timestamp();
        assert_eq!(lifetime, 5 * 365 * 86400 + 3600);
        let key_mode = fs::metadata(settings.cert_dir.join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        let dir_mode = fs::metadata(&settings.cert_dir)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);

        // Loading gives the same CA.
        let ca = CertificateAuthority::load(&settings).unwrap();
        assert_eq!(ca.cert_der(), ca_x509.as_raw());

        let user = ca
            .issue_user_cert(UserId(7), "alice", "alice@example.org")
            .unwrap();
        check_leaf(&ca, &user, true);
        assert_eq!(
            subject(&parse(&user.cert_der)),
            vec![
                utf8(LOCATOR, "0"),
                utf8(CN, "alice"),
                utf8(UID, "7"),
                utf8(O, "Contrail"),
                ia5(EMAIL, "alice@example.org"),
                utf8(ROLE, "user"),
            ]
        );
        assert_eq!(
            (user.role, user.uid, user.sid),
            (Role::User, Some(UserId(7)), None)
        );
        let user_lifetime = user.not_after - user.not_before;
        assert_eq!(user_lifetime.num_seconds(), 365 * 86400 + 3600);
        // The key is the certificate's.
        let key = KeyPair::from_pem(user.key_pem.as_ref().unwrap().expose_secret()).unwrap();
        assert_eq!(
            key.der_bytes(),
            parse(&user.cert_der)
                .public_key()
                .subject_public_key
                .data
                .as_ref()
        );
        // Debug shows neither key nor PEM.
        let debug = format!("{user:?}");
        assert!(
            !debug.contains("PRIVATE") && !debug.contains("BEGIN"),
            "{debug}"
        );

        let manager = ca.issue_manager_cert(UserId(1), ServiceId(5)).unwrap();
        check_leaf(&ca, &manager, true);
        assert_eq!(
            subject(&parse(&manager.cert_der)),
            vec![
                utf8(LOCATOR, "5"),
                utf8(CN, "ConPaaS"),
                utf8(UID, "1"),
                utf8(O, "Contrail"),
                ia5(EMAIL, "info@conpaas.eu"),
                utf8(ROLE, "manager"),
            ]
        );
        assert_eq!(
            (manager.role, manager.uid, manager.sid),
            (Role::Manager, Some(UserId(1)), Some(ServiceId(5)))
        );
        assert_ne!(manager.serial, user.serial);

        let director = ca
            .write_director_cert("director.example.org", IfExists::Fail)
            .unwrap();
        check_leaf(&ca, &director, true);
        let director_x509 = parse(&director.cert_der);
        assert_eq!(
            subject(&director_x509),
            vec![
                utf8(ROLE, "frontend"),
                ia5(EMAIL, "info@conpaas.eu"),
                utf8(CN, "director.example.org"),
                utf8(O, "ConPaaS"),
            ]
        );
        let sans = director_x509
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value;
        assert_eq!(
            sans.general_names,
            vec![GeneralName::DNSName("director.example.org")]
        );
        assert_eq!(
            (director.role, director.uid, director.sid),
            (Role::Frontend, None, None)
        );
        let on_disk = fs::read_to_string(settings.cert_dir.join(CERT_FILE)).unwrap();
        assert_eq!(on_disk, director.cert_pem);
        let key_path = settings.cert_dir.join(KEY_FILE);
        assert_eq!(
            fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let err = ca.write_director_cert("other", IfExists::Fail).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
        ca.write_director_cert("other", IfExists::Replace).unwrap();
    }

    #[test]
    fn director_sans_for_ip_and_localhost() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::create(
            &settings(dir.path(), KeyAlgorithm::EcdsaP256),
            IfExists::Fail,
        )
        .unwrap();
        let sans_of = |host: &str| {
            let issued = ca.issue_director_cert(host).unwrap();
            let x509 = parse(&issued.cert_der);
            let sans = x509.subject_alternative_name().unwrap().unwrap().value;
            let cn = CertIdentity::parse(&issued.cert_der).unwrap().cn.unwrap();
            let names: Vec<String> = sans
                .general_names
                .iter()
                .map(|name| match name {
                    GeneralName::DNSName(dns) => format!("dns:{dns}"),
                    GeneralName::IPAddress(ip) => format!("ip:{}", ip.len()),
                    other => format!("{other:?}"),
                })
                .collect();
            (cn, names)
        };
        assert_eq!(
            sans_of("10.1.2.3"),
            ("10.1.2.3".to_owned(), vec!["ip:4".to_owned()])
        );
        assert_eq!(
            sans_of("[2001:db8::1]"),
            ("2001:db8::1".to_owned(), vec!["ip:16".to_owned()])
        );
        assert_eq!(
            sans_of("localhost"),
            (
                "localhost".to_owned(),
                vec![
                    "dns:localhost".to_owned(),
                    "ip:4".to_owned(),
                    "ip:16".to_owned()
                ]
            )
        );
        assert!(matches!(
            ca.issue_director_cert("host:5555"),
            Err(Error::InvalidHostname { .. })
        ));
    }

    #[test]
    fn rsa_leaves_can_encipher() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::create(
            &settings(dir.path(), KeyAlgorithm::Rsa2048),
            IfExists::Fail,
        )
        .unwrap();
        let user = ca
            .issue_user_cert(UserId(2), "bob", "bob@example.org")
            .unwrap();
        check_leaf(&ca, &user, false);
        let x509 = parse(&user.cert_der);
        let usage = x509.key_usage().unwrap().unwrap().value;
        assert!(usage.digital_signature() && usage.key_encipherment());
        assert!(
            user.key_pem
                .as_ref()
                .unwrap()
                .expose_secret()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
    }

    #[test]
    fn agent_subject_comes_from_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::create(
            &settings(dir.path(), KeyAlgorithm::EcdsaP256),
            IfExists::Fail,
        )
        .unwrap();
        let agent_key = KeyPair::generate().unwrap();
        // A CSR asking for everything a manager must not get.
        let mut params = CertificateParams::default();
        let dn = &mut params.distinguished_name;
        dn.push(rcgen::DnType::CustomDnType(names::OID_UID.to_vec()), "99");
        dn.push(
            rcgen::DnType::CustomDnType(names::OID_SERVICE_LOCATOR.to_vec()),
            "7",
        );
        dn.push(rcgen::DnType::CommonName, "CA");
        dn.push(
            rcgen::DnType::CustomDnType(names::OID_ROLE.to_vec()),
            "frontend",
        );
        let csr = params.serialize_request(&agent_key).unwrap().pem().unwrap();
        let verified = VerifiedCsr::parse(csr.as_bytes()).unwrap();
        assert_eq!(verified.requested_identity().uid.as_deref(), Some("99"));
        let agent = ca
            .sign_agent_csr(csr.as_bytes(), UserId(3), ServiceId(101))
            .unwrap();
        check_leaf(&ca, &agent, true);
        assert!(agent.key_pem.is_none());
        assert_eq!(
            (agent.role, agent.uid, agent.sid),
            (Role::Agent, Some(UserId(3)), Some(ServiceId(101)))
        );
        let x509 = parse(&agent.cert_der);
        assert_eq!(
            subject(&x509),
            vec![
                utf8(LOCATOR, "101"),
                utf8(CN, "ConPaaS"),
                utf8(UID, "3"),
                utf8(O, "ConPaaS"),
                ia5(EMAIL, "info@conpaas.eu"),
                utf8(ROLE, "agent"),
            ]
        );
        assert_eq!(
            x509.public_key().raw,
            agent_key.subject_public_key_info().as_slice()
        );
        // The same CSR twice gets two serials (rcgen alone would derive one from the key).
        let again = ca
            .sign_agent_csr(csr.as_bytes(), UserId(3), ServiceId(101))
            .unwrap();
        assert_ne!(again.serial, agent.serial);
    }

    #[test]
    fn refuses_to_overwrite_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path(), KeyAlgorithm::EcdsaP256);
        let first = CertificateAuthority::create(&settings, IfExists::Fail).unwrap();
        let err = CertificateAuthority::create(&settings, IfExists::Fail).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
        assert_eq!(
            CertificateAuthority::load(&settings).unwrap().cert_der(),
            first.cert_der()
        );
        let second = CertificateAuthority::create(&settings, IfExists::Replace).unwrap();
        assert_ne!(second.cert_der(), first.cert_der());
        assert_eq!(
            CertificateAuthority::load(&settings).unwrap().cert_der(),
            second.cert_der()
        );
        assert_eq!(
            CertificateAuthority::load_or_create(&settings)
                .unwrap()
                .cert_der(),
            second.cert_der()
        );
    }

    #[test]
    fn load_or_create_refuses_half_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path(), KeyAlgorithm::EcdsaP256);
        let created = CertificateAuthority::load_or_create(&settings).unwrap();
        assert_eq!(
            CertificateAuthority::load_or_create(&settings)
                .unwrap()
                .cert_der(),
            created.cert_der()
        );
        fs::remove_file(dir.path().join(CA_CERT_FILE)).unwrap();
        let err = CertificateAuthority::load_or_create(&settings).unwrap_err();
        assert!(matches!(err, Error::IncompleteCa { .. }), "{err:?}");
        assert!(matches!(
            CertificateAuthority::load(&settings),
            Err(Error::Read { .. })
        ));
    }

    #[test]
    fn load_checks_key_and_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path(), KeyAlgorithm::EcdsaP256);
        let ca = CertificateAuthority::create(&settings, IfExists::Fail).unwrap();
        ca.write_director_cert("director", IfExists::Fail).unwrap();
        let ca_key = dir.path().join(CA_KEY_FILE);
        let ca_cert = dir.path().join(CA_CERT_FILE);

        // A key others can read.
        fs::set_permissions(&ca_key, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            CertificateAuthority::load(&settings),
            Err(Error::KeyPermissions { .. })
        ));
        fs::set_permissions(&ca_key, fs::Permissions::from_mode(0o600)).unwrap();

        // The director's key beside the CA's certificate.
        let original_key = fs::read(&ca_key).unwrap();
        fs::write(&ca_key, fs::read(dir.path().join(KEY_FILE)).unwrap()).unwrap();
        assert!(matches!(
            CertificateAuthority::load(&settings),
            Err(Error::KeyMismatch { .. })
        ));

        // A leaf with its own key is no CA.
        fs::write(&ca_cert, fs::read(dir.path().join(CERT_FILE)).unwrap()).unwrap();
        assert!(matches!(
            CertificateAuthority::load(&settings),
            Err(Error::NotACa { .. })
        ));

        // Garbage.
        fs::write(&ca_key, &original_key).unwrap();
        fs::write(&ca_cert, "not a certificate").unwrap();
        assert!(matches!(
            CertificateAuthority::load(&settings),
            Err(Error::NotPem { .. })
        ));
        fs::write(&ca_cert, ca.cert_pem()).unwrap();
        fs::write(
            &ca_key,
            "-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(matches!(
            CertificateAuthority::load(&settings),
            Err(Error::BadKey { .. })
        ));
    }

    #[test]
    fn user_inputs_are_checked_before_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::create(
            &settings(dir.path(), KeyAlgorithm::EcdsaP256),
            IfExists::Fail,
        )
        .unwrap();
        let long = "x".repeat(65);
        for (username, email) in [
            ("CA", "a@b"),
            ("", "a@b"),
            (long.as_str(), "a@b"),
            ("ok", ""),
            ("ok", "é@b"),
        ] {
            let err = ca.issue_user_cert(UserId(1), username, email).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidUsername { .. } | Error::InvalidEmail { .. }
                ),
                "{username:?} {email:?}: {err:?}"
            );
        }
    }

    #[test]
    fn the_ca_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CertificateAuthority>();
        assert_send_sync::<IssuedCertificate>();
    }
}
