//! Subject names: the DN attribute OIDs and string types the 1.2 peers read, input checks,
//! subjects of each certificate kind, and reading an identity back from a certificate.

use chrono::{DateTime, Utc};
use rcgen::{DistinguishedName, DnType, DnValue};
use x509_parser::asn1_rs::Tag;
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    OID_PKCS1_RSASSAPSS, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ECDSA_WITH_SHA512,
    OID_SIG_ED25519,
};
use x509_parser::x509::{X509Name, X509Version};

use super::Error;
use crate::model::{Role, ServiceId, UserId};

/// `UID` (OpenSSL long name `userId`), RFC 4519 `uid`.
pub(crate) const OID_UID: &[u64] = &[0, 9, 2342, 19200300, 100, 1, 1];
/// `serviceLocator`: an OCSP extension OID that 1.2 uses as a DN attribute; the peers look
/// it up by OpenSSL's short name, so no other OID would be seen.
pub(crate) const OID_SERVICE_LOCATOR: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 7];
/// X.520 `role`.
pub(crate) const OID_ROLE: &[u64] = &[2, 5, 4, 72];
/// `CN`.
pub(crate) const OID_CN: &[u64] = &[2, 5, 4, 3];
/// `O`.
pub(crate) const OID_O: &[u64] = &[2, 5, 4, 10];
/// PKCS#9 `emailAddress`, inside the DN as 1.2 put it.
pub(crate) const OID_EMAIL: &[u64] = &[1, 2, 840, 113549, 1, 9, 1];

/// The e-mail address of certificates that belong to ConPaaS itself.
const CONPAAS_EMAIL: &str = "info@conpaas.eu";
/// `ub_common_name`: OpenSSL refused longer CNs, so 1.2 could never issue them.
const MAX_CN_CHARS: usize = 64;
/// `ub_emailaddress_length`.
const MAX_EMAIL_CHARS: usize = 128;
/// The CN every 1.2 manager and agent trusts without further checks: only the CA has it.
const RESERVED_CN: &str = "CA";

/// `emailAddress=info@conpaas.eu, CN=CA, O=ConPaaS`: the CA's subject, in 1.2's RDN order.
/// Managers and agents recognise the CA certificate by `CN=CA` alone.
pub(crate) fn ca_dn() -> Result<DistinguishedName, Error> {
    let mut dn = DistinguishedName::new();
    push_email(&mut dn, CONPAAS_EMAIL)?;
    push_text(&mut dn, OID_CN, RESERVED_CN);
    push_text(&mut dn, OID_O, "ConPaaS");
    Ok(dn)
}

/// The values of one leaf certificate's subject, before encoding.
pub(crate) enum Subject<'a> {
    /// `role=frontend, emailAddress=info@conpaas.eu, CN=<host>, O=ConPaaS`.
    Director { hostname: &'a str },
    /// `serviceLocator=0, CN=<name>, UID, O=Contrail, emailAddress=<email>, role=user`.
    User {
        uid: UserId,
        username: &'a str,
        email: &'a str,
    },
    /// `serviceLocator=<sid>, CN=ConPaaS, UID, O=Contrail, emailAddress=info@conpaas.eu, role=manager`.
    Manager { uid: UserId, sid: ServiceId },
    /// `serviceLocator=<sid>, CN=ConPaaS, UID, O=ConPaaS, emailAddress=info@conpaas.eu, role=agent`.
    Agent { uid: UserId, sid: ServiceId },
}

impl Subject<'_> {
    /// The role attribute.
    pub(crate) fn role(&self) -> Role {
        match self {
            Subject::Director { .. } => Role::Frontend,
            Subject::User { .. } => Role::User,
            Subject::Manager { .. } => Role::Manager,
            Subject::Agent { .. } => Role::Agent,
        }
    }

    /// The owning user, for the issued-certificates table.
    pub(crate) fn uid(&self) -> Option<UserId> {
        match self {
            Subject::Director { .. } => None,
            Subject::User { uid, .. }
            | Subject::Manager { uid, .. }
            | Subject::Agent { uid, .. } => Some(*uid),
        }
    }

    /// The service, for the issued-certificates table (a user's `serviceLocator=0` is none).
    pub(crate) fn sid(&self) -> Option<ServiceId> {
        match self {
            Subject::Director { .. } | Subject::User { .. } => None,
            Subject::Manager { sid, .. } | Subject::Agent { sid, .. } => Some(*sid),
        }
    }

    /// The encoded DN, in the RDN order 1.2 produced (`spec/certificates.md` §3.4), so that
    /// byte-level comparisons with old certificates stay easy. Inputs are checked first.
    pub(crate) fn to_dn(&self) -> Result<DistinguishedName, Error> {
        let mut dn = DistinguishedName::new();
        match self {
            Subject::Director { hostname } => {
                push_text(&mut dn, OID_ROLE, Role::Frontend.as_str());
                push_email(&mut dn, CONPAAS_EMAIL)?;
                push_text(&mut dn, OID_CN, hostname);
                push_text(&mut dn, OID_O, "ConPaaS");
            }
            Subject::User {
                uid,
                username,
                email,
            } => {
                check_username(username)?;
                check_email(email)?;
                push_leaf(&mut dn, "0", username, *uid, "Contrail", email, Role::User)?;
            }
            Subject::Manager { uid, sid } => {
                let sid = sid.to_string();
                push_leaf(
                    &mut dn,
                    &sid,
                    "ConPaaS",
                    *uid,
                    "Contrail",
                    CONPAAS_EMAIL,
                    Role::Manager,
                )?;
            }
            Subject::Agent { uid, sid } => {
                let sid = sid.to_string();
                push_leaf(
                    &mut dn,
                    &sid,
                    "ConPaaS",
                    *uid,
                    "ConPaaS",
                    CONPAAS_EMAIL,
                    Role::Agent,
                )?;
            }
        }
        Ok(dn)
    }
}

/// `serviceLocator, CN, UID, O, emailAddress, role`: the order of every 1.2 leaf.
fn push_leaf(
    dn: &mut DistinguishedName,
    service_locator: &str,
    cn: &str,
    uid: UserId,
    organization: &str,
    email: &str,
    role: Role,
) -> Result<(), Error> {
    push_text(dn, OID_SERVICE_LOCATOR, service_locator);
    push_text(dn, OID_CN, cn);
    // Decimal without sign or leading zeros: managers compare it byte for byte with the
    // USER_ID the director wrote into their config, which uses the same rendering.
    push_text(dn, OID_UID, &uid.to_string());
    push_text(dn, OID_O, organization);
    push_email(dn, email)?;
    push_text(dn, OID_ROLE, role.as_str());
    Ok(())
}

/// UTF8String, what OpenSSL >= 1.1 writes; 1.2 peers read the raw octets, which for ASCII
/// are the same as the PrintableString 1.2 wrote. Never BMPString: its UTF-16 octets
/// would never compare equal on the peers.
fn push_text(dn: &mut DistinguishedName, oid: &[u64], value: &str) {
    dn.push(
        DnType::CustomDnType(oid.to_vec()),
        DnValue::Utf8String(value.to_owned()),
    );
}

/// `emailAddress` is always IA5String (OpenSSL's table fixes the type).
fn push_email(dn: &mut DistinguishedName, email: &str) -> Result<(), Error> {
    let ia5 = rcgen::string::Ia5String::try_from(email).map_err(|_| Error::InvalidEmail {
        email: email.to_owned(),
        reason: "not ASCII",
    })?;
    dn.push(
        DnType::CustomDnType(OID_EMAIL.to_vec()),
        DnValue::Ia5String(ia5),
    );
    Ok(())
}

/// A user name becomes the CN of the user's certificate.
pub(crate) fn check_username(username: &str) -> Result<(), Error> {
    let reject = |reason| {
        Err(Error::InvalidUsername {
            username: username.to_owned(),
            reason,
        })
    };
    let n_chars = username.chars().count();
    if n_chars == 0 {
        return reject("empty");
    }
    if n_chars > MAX_CN_CHARS {
        return reject("longer than 64 characters");
    }
    if username.chars().any(char::is_control) {
        return reject("contains control characters");
    }
    if username == RESERVED_CN {
        // 1.2 managers and agents accept any certificate with CN=CA without looking at
        // its UID: a user named CA would control every service of every user.
        return reject("CA is reserved for the certificate authority");
    }
    Ok(())
}

/// An e-mail becomes an IA5String `emailAddress` of at most 128 characters.
pub(crate) fn check_email(email: &str) -> Result<(), Error> {
    let reject = |reason| {
        Err(Error::InvalidEmail {
            email: email.to_owned(),
            reason,
        })
    };
    if email.is_empty() {
        return reject("empty");
    }
    if !email.is_ascii() {
        return reject("not ASCII");
    }
    if email.len() > MAX_EMAIL_CHARS {
        return reject("longer than 128 characters");
    }
    if email.chars().any(|c| c.is_ascii_control()) {
        return reject("contains control characters");
    }
    Ok(())
}

/// A host name becomes the CN (and SAN) of the director's certificate; `[v6]` brackets are
/// dropped. Returns the name to use.
pub(crate) fn check_hostname(hostname: &str) -> Result<&str, Error> {
    let reject = |reason| {
        Err(Error::InvalidHostname {
            hostname: hostname.to_owned(),
            reason,
        })
    };
    let name = hostname
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(hostname);
    if name.is_empty() {
        return reject("empty");
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Ok(name);
    }
    if name.len() > MAX_CN_CHARS {
        return reject("longer than 64 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return reject("only letters, digits, '-', '.' and '_' are allowed (no port, no scheme)");
    }
    if name == RESERVED_CN {
        return reject("CA is reserved for the certificate authority");
    }
    Ok(name)
}

/// Who a certificate says its holder is: the ConPaaS attributes of its subject.
///
/// Each field is the *first* occurrence of the attribute, as the 1.2 director read it
/// (`spec/certificates.md` §10.2), decoded to text whatever its string type.
///
/// Read from a certificate ([`CertIdentity::parse`]); `Default` and the `with_*` setters
/// build one to compare with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertIdentity {
    /// `UID` (0.9.2342.19200300.100.1.1): the owning user's id, as text (typed:
    /// [`CertIdentity::user_id`]).
    pub uid: Option<String>,
    /// `serviceLocator` (1.3.6.1.5.5.7.48.1.7): the service id, `"0"` for users (typed:
    /// [`CertIdentity::service_id`]).
    pub service_locator: Option<String>,
    /// `role` (2.5.4.72): `frontend`, `user`, `manager` or `agent` (typed:
    /// [`CertIdentity::role`]).
    pub role: Option<String>,
    /// `CN` (2.5.4.3).
    pub cn: Option<String>,
}

impl CertIdentity {
    /// Sets [`uid`](Self::uid).
    pub fn with_uid(mut self, uid: impl Into<String>) -> Self {
        self.uid = Some(uid.into());
        self
    }

    /// Sets [`service_locator`](Self::service_locator).
    pub fn with_service_locator(mut self, service_locator: impl Into<String>) -> Self {
        self.service_locator = Some(service_locator.into());
        self
    }

    /// Sets [`role`](Self::role) (the field; [`CertIdentity::role`] reads it typed).
    pub fn with_role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// Sets [`cn`](Self::cn).
    pub fn with_cn(mut self, cn: impl Into<String>) -> Self {
        self.cn = Some(cn.into());
        self
    }

    /// The `UID` as a user id, read as 1.2 read it (Python's `int()`); `None` when absent or
    /// not an integer that fits.
    pub fn user_id(&self) -> Option<UserId> {
        parse_id(self.uid.as_deref()).map(UserId)
    }

    /// The `serviceLocator` as a service id, read as 1.2 read it; `None` when absent or not an
    /// integer that fits. Users' certificates carry `0`.
    pub fn service_id(&self) -> Option<ServiceId> {
        parse_id(self.service_locator.as_deref()).map(ServiceId)
    }

    /// The `role` as one of the four ConPaaS roles; `None` when absent or unknown.
    pub fn role(&self) -> Option<Role> {
        self.role.as_deref().and_then(|role| role.parse().ok())
    }

    /// Whether the certificate carries exactly `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.role() == Some(role)
    }

    /// Reads the identity of a certificate given as DER or as PEM (first `CERTIFICATE` block).
    ///
    /// This does not verify the certificate: callers pass certificates their TLS stack has
    /// already verified against the CA.
    pub fn parse(cert: &[u8]) -> Result<Self, Error> {
        let der = cert_der(cert)?;
        let x509 = parse_cert(&der)?;
        Self::from_name(x509.subject())
    }

    /// [`CertIdentity::parse`] for a client certificate presented to the director: also
    /// refused ([`Error::NotForClientAuth`]) unless it is fit for client authentication —
    /// `digitalSignature` in its keyUsage when it has one, `clientAuth` (or
    /// `anyExtendedKeyUsage`) in its extendedKeyUsage when it has one. 1.2-issued leaves
    /// (no extensions) and the director's own (keyUsage `digitalSignature`, no
    /// extendedKeyUsage) pass; a CA-signed certificate meant for signing certificates or for
    /// a server does not.
    pub fn parse_client(cert: &[u8]) -> Result<Self, Error> {
        let der = cert_der(cert)?;
        let x509 = parse_cert(&der)?;
        check_client_usage(&x509)?;
        Self::from_name(x509.subject())
    }

    /// Reads the ConPaaS attributes of a DN (a certificate's or a CSR's subject). A repeated
    /// `UID`, `role` or `serviceLocator` is [`Error::RepeatedAttribute`]; for a repeated `CN`
    /// the first wins (a display name, which 1.2's clients read first too).
    pub(crate) fn from_name(name: &X509Name<'_>) -> Result<Self, Error> {
        let mut identity = CertIdentity::default();
        for attr in name.iter_attributes() {
            let Some(oid) = attr.attr_type().iter().map(Iterator::collect::<Vec<u64>>) else {
                continue;
            };
            let (slot, attribute) = match oid.as_slice() {
                OID_UID => (&mut identity.uid, "UID"),
                OID_SERVICE_LOCATOR => (&mut identity.service_locator, "serviceLocator"),
                OID_ROLE => (&mut identity.role, "role"),
                OID_CN => (&mut identity.cn, "CN"),
                _ => continue,
            };
            // 1.2's director took the first of a repeated attribute and the VMs the last: a
            // certificate with two UIDs could mean one user to the director and another to a
            // VM. We never issue an attribute twice.
            if slot.is_some() && attribute != "CN" {
                return Err(Error::RepeatedAttribute { attribute });
            }
            if slot.is_none() {
                let value = attr.attr_value();
                *slot = Some(
                    decode_string(value.header.tag(), value.data)
                        .ok_or(Error::UndecodableAttribute { attribute })?,
                );
            }
        }
        Ok(identity)
    }
}

/// Whether a certificate's extensions allow client authentication (see
/// [`CertIdentity::parse_client`]). An extension that is present but unreadable, or present
/// twice, refuses the certificate.
fn check_client_usage(x509: &X509Certificate<'_>) -> Result<(), Error> {
    let unreadable = Error::NotForClientAuth {
        reason: "unreadable or repeated usage extension",
    };
    match x509.key_usage() {
        Ok(None) => {}
        Ok(Some(usage)) if usage.value.digital_signature() => {}
        Ok(Some(_)) => {
            return Err(Error::NotForClientAuth {
                reason: "keyUsage without digitalSignature",
            });
        }
        Err(_) => return Err(unreadable),
    }
    match x509.extended_key_usage() {
        Ok(None) => Ok(()),
        Ok(Some(usage)) if usage.value.client_auth || usage.value.any => Ok(()),
        Ok(Some(_)) => Err(Error::NotForClientAuth {
            reason: "extendedKeyUsage without clientAuth",
        }),
        Err(_) => Err(unreadable),
    }
}

/// An id attribute as 1.2 read it: Python's `int()`, within `i32`.
fn parse_id(text: Option<&str>) -> Option<i32> {
    text.and_then(crate::model::parse_int)
        .and_then(|id| i32::try_from(id).ok())
}

/// Decodes a DirectoryString-like value to text: every string type 1.2-era OpenSSL could
/// have written, whatever the attribute.
pub(crate) fn decode_string(tag: Tag, data: &[u8]) -> Option<String> {
    match tag {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => String::from_utf8(data.to_vec()).ok(),
        // OpenSSL 0.9.8 wrote one byte per character for Latin-1 text.
        Tag::T61String => Some(data.iter().map(|&byte| char::from(byte)).collect()),
        Tag::BmpString => {
            if !data.len().is_multiple_of(2) {
                return None;
            }
            let units = data
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        Tag::UniversalString => {
            if !data.len().is_multiple_of(4) {
                return None;
            }
            data.chunks_exact(4)
                .map(|quad| {
                    char::from_u32(u32::from_be_bytes([quad[0], quad[1], quad[2], quad[3]]))
                })
                .collect()
        }
        _ => None,
    }
}

/// What an operator tool (cpscheck) wants to know about a certificate in use.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertInfo {
    /// The ConPaaS attributes of the subject.
    pub identity: CertIdentity,
    /// The serial in the form the issued-certificates table records: lowercase hex of the
    /// integer's big-endian octets, leading zero octets removed.
    pub serial: String,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// True for what 1.2 issued and rustls refuses: an X.509 v1 certificate, or a signature
    /// with SHA-1, MD5 or another hash weaker than SHA-256. Its holder needs a new one.
    pub legacy: bool,
    /// The X.509 version: 3, or 1 for what 1.2 made (rustls cannot use a v1 certificate as
    /// its own: `serve` refuses 1.2's director certificate before anything else).
    pub x509_version: u32,
}

impl CertInfo {
    /// Reads a certificate given as DER or as PEM (first `CERTIFICATE` block).
    pub fn parse(cert: &[u8]) -> Result<Self, Error> {
        let der = cert_der(cert)?;
        let x509 = parse_cert(&der)?;
        let validity = x509.validity();
        Ok(CertInfo {
            identity: CertIdentity::from_name(x509.subject())?,
            serial: serial_hex(x509.raw_serial()),
            not_before: timestamp(validity.not_before.timestamp())?,
            not_after: timestamp(validity.not_after.timestamp())?,
            legacy: is_legacy(&x509),
            x509_version: x509.version().0.saturating_add(1),
        })
    }
}

/// v1, or a signature algorithm outside the SHA-2/EdDSA family.
pub(crate) fn is_legacy(x509: &X509Certificate<'_>) -> bool {
    let modern = [
        OID_PKCS1_SHA256WITHRSA,
        OID_PKCS1_SHA384WITHRSA,
        OID_PKCS1_SHA512WITHRSA,
        OID_PKCS1_RSASSAPSS,
        OID_SIG_ECDSA_WITH_SHA256,
        OID_SIG_ECDSA_WITH_SHA384,
        OID_SIG_ECDSA_WITH_SHA512,
        OID_SIG_ED25519,
    ];
    x509.version() != X509Version::V3 || !modern.contains(&x509.signature_algorithm.algorithm)
}

/// Lowercase hex, leading zero octets dropped (the DER sign octet of a positive serial is one).
pub(crate) fn serial_hex(raw_serial: &[u8]) -> String {
    let start = raw_serial
        .iter()
        .position(|&byte| byte != 0)
        .unwrap_or(raw_serial.len());
    let hex = hex::encode(&raw_serial[start..]);
    if hex.is_empty() { "00".to_owned() } else { hex }
}

/// Seconds since the epoch to a UTC time.
pub(crate) fn timestamp(seconds: i64) -> Result<DateTime<Utc>, Error> {
    DateTime::from_timestamp(seconds, 0).ok_or(Error::Clock)
}

/// The DER of a certificate given as DER or PEM.
pub(crate) fn cert_der(cert: &[u8]) -> Result<Vec<u8>, Error> {
    // DER certificates start with a SEQUENCE tag; anything else is taken for PEM.
    if cert.first() == Some(&0x30) {
        return Ok(cert.to_vec());
    }
    first_pem_block(cert, &["CERTIFICATE"]).ok_or_else(|| Error::NotPem {
        what: "the certificate".to_owned(),
        label: "CERTIFICATE",
    })
}

/// The contents of the first PEM block with one of `labels`, skipping other blocks and text.
pub(crate) fn first_pem_block(text: &[u8], labels: &[&str]) -> Option<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(text)
        // A damaged block ends the search: reading on could pick a later block the sender
        // did not mean.
        .map_while(Result::ok)
        .find(|pem| labels.contains(&pem.label.as_str()))
        .map(|pem| pem.contents)
}

/// Parses a whole certificate: trailing bytes are an error.
pub(crate) fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, Error> {
    let malformed = |source| Error::Malformed {
        what: "the certificate".to_owned(),
        source,
    };
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], x509)) => Ok(x509),
        Ok(_) => Err(malformed(x509_parser::error::X509Error::InvalidCertificate)),
        Err(err) => Err(malformed(nom_error(err))),
    }
}

/// The error inside a nom error (`Incomplete` means the input was cut short).
pub(crate) fn nom_error(
    err: x509_parser::nom::Err<x509_parser::error::X509Error>,
) -> x509_parser::error::X509Error {
    match err {
        x509_parser::nom::Err::Error(inner) | x509_parser::nom::Err::Failure(inner) => inner,
        x509_parser::nom::Err::Incomplete(_) => x509_parser::error::X509Error::InvalidCertificate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_user(username: &str, ok: bool) {
        assert_eq!(check_username(username).is_ok(), ok, "{username:?}");
    }

    #[test]
    fn usernames() {
        check_user("alice", true);
        check_user("a", true);
        check_user("élodie_ü@x!", true);
        check_user(&"x".repeat(64), true);
        check_user(&"é".repeat(64), true);
        check_user("", false);
        check_user(&"x".repeat(65), false);
        check_user("CA", false);
        check_user("ca", true);
        check_user("a\nb", false);
        check_user("a\0b", false);
    }

    #[test]
    fn emails() {
        for (email, ok) in [
            ("info@conpaas.eu", true),
            ("a", true),
            ("", false),
            ("é@x", false),
            ("a\r\n@x", false),
        ] {
            assert_eq!(check_email(email).is_ok(), ok, "{email:?}");
        }
        assert!(check_email(&"x".repeat(128)).is_ok());
        assert!(check_email(&"x".repeat(129)).is_err());
    }

    #[test]
    fn hostnames() {
        for (hostname, expect) in [
            ("director.example.org", Some("director.example.org")),
            ("localhost", Some("localhost")),
            ("10.0.0.1", Some("10.0.0.1")),
            ("::1", Some("::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("", None),
            ("[]", None),
            ("host:5555", None),
            ("https://host", None),
            ("two words", None),
            ("CA", None),
        ] {
            assert_eq!(check_hostname(hostname).ok(), expect, "{hostname:?}");
        }
    }

    #[test]
    fn string_types_decode() {
        assert_eq!(
            decode_string(Tag::PrintableString, b"42").as_deref(),
            Some("42")
        );
        assert_eq!(
            decode_string(Tag::Utf8String, "é".as_bytes()).as_deref(),
            Some("é")
        );
        assert_eq!(
            decode_string(Tag::Ia5String, b"a@b").as_deref(),
            Some("a@b")
        );
        assert_eq!(
            decode_string(Tag::T61String, b"caf\xe9").as_deref(),
            Some("café")
        );
        assert_eq!(
            decode_string(Tag::BmpString, b"\x00r\x00o\x00l\x00e").as_deref(),
            Some("role")
        );
        assert_eq!(decode_string(Tag::BmpString, b"\x00r\x00").as_deref(), None);
        assert_eq!(
            decode_string(Tag::UniversalString, b"\x00\x00\x00a\x00\x00\x00\xe9").as_deref(),
            Some("aé")
        );
        assert_eq!(decode_string(Tag::Utf8String, b"\xff").as_deref(), None);
        assert_eq!(decode_string(Tag::Integer, b"1").as_deref(), None);
    }

    #[test]
    fn serial_forms() {
        assert_eq!(serial_hex(&[0x00, 0x80, 0x01]), "8001");
        assert_eq!(serial_hex(&[0x40, 0x00]), "4000");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[]), "00");
    }

    #[test]
    fn subjects_record_role_uid_sid() {
        let agent = Subject::Agent {
            uid: UserId(3),
            sid: ServiceId(101),
        };
        assert_eq!(
            (agent.role(), agent.uid(), agent.sid()),
            (Role::Agent, Some(UserId(3)), Some(ServiceId(101)))
        );
        let user = Subject::User {
            uid: UserId(3),
            username: "bob",
            email: "b@x",
        };
        assert_eq!(
            (user.role(), user.uid(), user.sid()),
            (Role::User, Some(UserId(3)), None)
        );
        let director = Subject::Director { hostname: "h" };
        assert_eq!(
            (director.role(), director.uid(), director.sid()),
            (Role::Frontend, None, None)
        );
    }

    #[test]
    fn user_subject_checks_inputs() {
        let bad_name = Subject::User {
            uid: UserId(1),
            username: "CA",
            email: "a@b",
        };
        assert!(matches!(
            bad_name.to_dn(),
            Err(Error::InvalidUsername { .. })
        ));
        let bad_email = Subject::User {
            uid: UserId(1),
            username: "a",
            email: "",
        };
        assert!(matches!(bad_email.to_dn(), Err(Error::InvalidEmail { .. })));
    }
}
