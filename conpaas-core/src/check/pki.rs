//! Checks of CERT_DIR: the four files, key modes, key/certificate pairs, the chain, the
//! director's identity and host name, validity and 1.2-made certificates.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::x509::X509Version;

use super::{CheckOptions, CheckResult, show_duration, show_time};
use crate::ca::{CA_CERT_FILE, CA_KEY_FILE, CERT_FILE, CertIdentity, CertInfo, KEY_FILE};
use crate::config::LoadedConfig;

/// The CN 1.2 managers recognise the CA by.
const CA_CN: &str = "CA";
/// The role of the director's own certificate.
const FRONTEND_ROLE: &str = "frontend";

/// A file of CERT_DIR as read.
struct PkiFile {
    path: PathBuf,
    contents: io::Result<Vec<u8>>,
}

pub(super) fn checks(
    loaded: &LoadedConfig,
    options: &CheckOptions,
    now: DateTime<Utc>,
) -> Vec<CheckResult> {
    let cert_dir = &loaded.config.ca.cert_dir;
    let host = loaded
        .config
        .director_url
        .as_ref()
        .map(|url| url.host().to_owned());
    let reinit = format!(
        "`director init {} --force` (a new CA and director certificate: users fetch new \
         certificates, running managers must be restarted)",
        host.as_deref().unwrap_or("HOSTNAME")
    );
    // Problems of the director's own certificate only: a new one under the same CA keeps every
    // issued certificate (users', managers', agents') working, a new CA would not.
    let reissue = format!(
        "`director init --keep-ca {}` (a new director certificate under the same CA: issued \
         certificates keep working)",
        host.as_deref().unwrap_or("HOSTNAME")
    );
    let mut results = Vec::new();

    let [ca_cert, ca_key, cert, key] =
        [CA_CERT_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE].map(|name| read(cert_dir, name));
    let unreadable: Vec<CheckResult> = [&ca_cert, &ca_key, &cert, &key]
        .into_iter()
        .filter_map(|file| file.unreadable(&reinit))
        .collect();
    if unreadable.is_empty() {
        results.push(CheckResult::ok(
            "pki.files",
            "certificate files",
            format!(
                "CERT_DIR {} holds {CA_CERT_FILE}, {CA_KEY_FILE}, {CERT_FILE} and {KEY_FILE}",
                cert_dir.display()
            ),
        ));
    }
    results.extend(unreadable);
    for file in [&ca_key, &key] {
        results.extend(key_mode(&file.path));
    }

    let ca_der = ca_cert.certificate(&mut results, &reinit);
    let cert_der = cert.certificate(&mut results, &reinit);
    let ca_x509 = ca_der.as_deref().and_then(parse);
    let cert_x509 = cert_der.as_deref().and_then(parse);

    if let (Some(der), Some(x509)) = (&ca_der, &ca_x509) {
        results.push(ca_identity(&ca_cert.path, der, x509, &reinit));
    }
    if let (Some(x509), Some(key_bytes)) = (&ca_x509, ca_key.bytes()) {
        results.push(key_matches(
            "pki.ca-key",
            "CA key matches the CA certificate",
            &ca_key.path,
            key_bytes,
            &ca_cert.path,
            x509,
            format!("restore the CA's key and certificate together from a backup, or run {reinit}"),
        ));
    }
    if let (Some(x509), Some(key_bytes)) = (&cert_x509, key.bytes()) {
        results.push(key_matches(
            "pki.director-key",
            "director key matches the director certificate",
            &key.path,
            key_bytes,
            &cert.path,
            x509,
            format!(
                "restore the director's key and certificate together from a backup, or run {reissue}"
            ),
        ));
    }
    if let (Some(ca_x509), Some(cert_x509)) = (&ca_x509, &cert_x509) {
        results.push(chain(
            &cert.path,
            cert_x509,
            &ca_cert.path,
            ca_x509,
            &reissue,
        ));
    }
    if let Some(der) = &cert_der {
        results.push(director_identity(&cert.path, der, &reissue));
    }
    for (file, der, fix) in [(&ca_cert, &ca_der, &reinit), (&cert, &cert_der, &reissue)] {
        if let Some(der) = der {
            results.extend(validity(&file.path, der, options, now, fix));
        }
    }
    for (file, x509, fix) in [(&ca_cert, &ca_x509, &reinit), (&cert, &cert_x509, &reissue)] {
        if let Some(x509) = x509 {
            results.push(legacy(&file.path, x509, fix));
        }
    }
    if let Some(der) = &cert_der {
        results.push(hostname(loaded, &cert.path, der));
    }
    if let (Some(x509), Some(host)) = (&cert_x509, &host) {
        results.push(san(&cert.path, x509, host, &reissue));
    }
    results
}

fn read(cert_dir: &Path, name: &str) -> PkiFile {
    let path = cert_dir.join(name);
    PkiFile {
        contents: fs::read(&path),
        path,
    }
}

impl PkiFile {
    /// The contents, when the file could be read.
    fn bytes(&self) -> Option<&[u8]> {
        self.contents.as_deref().ok()
    }

    /// An `E:` line for a file that could not be read.
    fn unreadable(&self, reinit: &str) -> Option<CheckResult> {
        let error = self.contents.as_ref().err()?;
        let path = self.path.display();
        Some(if error.kind() == io::ErrorKind::NotFound {
            CheckResult::error(
                "pki.files",
                "certificate files",
                format!("{path} does not exist"),
                format!("restore it from a backup of CERT_DIR, or run {reinit}"),
            )
        } else {
            CheckResult::error(
                "pki.files",
                "certificate files",
                format!("{path} cannot be read: {error}"),
                "run the director and cpscheck as the owner of CERT_DIR's files",
            )
        })
    }

    /// The DER of the file's first certificate, or an `E:` line into `results`.
    fn certificate(&self, results: &mut Vec<CheckResult>, reinit: &str) -> Option<Vec<u8>> {
        let bytes = self.bytes()?;
        let der = x509_parser::pem::Pem::iter_from_buffer(bytes)
            .map_while(Result::ok)
            .find(|pem| pem.label == "CERTIFICATE")
            .map(|pem| pem.contents);
        let problem = match &der {
            None => "holds no -----BEGIN CERTIFICATE----- block".to_owned(),
            Some(der) => match x509_parser::parse_x509_certificate(der) {
                Ok(([], _)) => return Some(der.clone()),
                Ok(_) => "holds a certificate followed by stray bytes".to_owned(),
                Err(error) => format!("holds a malformed certificate ({error})"),
            },
        };
        results.push(CheckResult::error(
            "pki.files",
            "certificate files",
            format!("{} {problem}", self.path.display()),
            format!("restore it from a backup of CERT_DIR, or run {reinit}"),
        ));
        None
    }
}

/// Parses a DER certificate already checked by [`PkiFile::certificate`].
fn parse(der: &[u8]) -> Option<X509Certificate<'_>> {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|(_, x509)| x509)
}

/// Private keys must not be readable by group or others, as the CA itself demands.
fn key_mode(path: &Path) -> Option<CheckResult> {
    let metadata = fs::metadata(path).ok()?;
    let mode = metadata.permissions().mode() & 0o7777;
    let shown = path.display();
    Some(if mode & 0o077 == 0 {
        CheckResult::ok(
            "pki.key-mode",
            "private key file mode",
            format!("{shown} is readable by its owner only (mode {mode:04o})"),
        )
    } else {
        CheckResult::error(
            "pki.key-mode",
            "private key file mode",
            format!("{shown} is readable by group or others (mode {mode:04o}), expected 0600"),
            format!("chmod 600 {shown}"),
        )
    })
}

fn ca_identity(path: &Path, der: &[u8], x509: &X509Certificate<'_>, reinit: &str) -> CheckResult {
    let shown = path.display();
    let cn = match CertIdentity::parse(der) {
        Ok(identity) => identity.cn,
        Err(error) => {
            return CheckResult::error(
                "pki.ca",
                "CA certificate subject",
                format!("the subject of {shown} cannot be read: {error}"),
                format!("run {reinit}"),
            );
        }
    };
    // A v1 certificate has no basicConstraints and is a CA by being self-signed, as OpenSSL
    // (and 1.2's cpsconf.py) treat it.
    let is_ca = x509.version() != X509Version::V3 || x509.is_ca();
    match (cn.as_deref(), is_ca) {
        (Some(CA_CN), true) => CheckResult::ok(
            "pki.ca",
            "CA certificate subject",
            format!("{shown} is a CA certificate with subject CN=CA"),
        ),
        (cn, true) => CheckResult::error(
            "pki.ca",
            "CA certificate subject",
            format!(
                "{shown} has subject CN={}, expected CN=CA: ConPaaS 1.2 managers recognise \
                 the CA by that name",
                cn.unwrap_or("")
            ),
            format!("run {reinit}"),
        ),
        (_, false) => CheckResult::error(
            "pki.ca",
            "CA certificate subject",
            format!("{shown} is not a CA certificate (basicConstraints CA:FALSE)"),
            format!("run {reinit}"),
        ),
    }
}

/// Whether `key_bytes` (a PEM private key) is the key of `x509`.
fn key_matches(
    id: &'static str,
    what: &str,
    key_path: &Path,
    key_bytes: &[u8],
    cert_path: &Path,
    x509: &X509Certificate<'_>,
    fix: String,
) -> CheckResult {
    let key = std::str::from_utf8(key_bytes)
        .ok()
        .and_then(|text| rcgen::KeyPair::from_pem(text).ok());
    let Some(key) = key else {
        return CheckResult::error(
            id,
            what,
            format!(
                "{} holds no private key that can be read (an unencrypted PEM key is expected)",
                key_path.display()
            ),
            fix,
        );
    };
    if key.public_key_raw() == x509.public_key().subject_public_key.data.as_ref() {
        CheckResult::ok(
            id,
            what,
            format!(
                "{} holds the private key of {}",
                key_path.display(),
                cert_path.display()
            ),
        )
    } else {
        CheckResult::error(
            id,
            what,
            format!(
                "{} does not hold the private key of {}",
                key_path.display(),
                cert_path.display()
            ),
            fix,
        )
    }
}

fn chain(
    cert_path: &Path,
    cert: &X509Certificate<'_>,
    ca_path: &Path,
    ca: &X509Certificate<'_>,
    reinit: &str,
) -> CheckResult {
    let what = "director certificate signed by the CA";
    let problem = if cert.issuer().as_raw() != ca.subject().as_raw() {
        Some(format!(
            "names the issuer {}, not the CA's subject {}",
            cert.issuer(),
            ca.subject()
        ))
    } else {
        match cert.verify_signature(Some(ca.public_key())) {
            Ok(()) => None,
            Err(error) => Some(format!(
                "has a signature the CA's key does not verify ({error})"
            )),
        }
    };
    match problem {
        None => CheckResult::ok(
            "pki.chain",
            what,
            format!(
                "{} is signed by the CA of {}",
                cert_path.display(),
                ca_path.display()
            ),
        ),
        Some(problem) => CheckResult::error(
            "pki.chain",
            what,
            format!(
                "{} {problem}: it was not issued by the CA of {}",
                cert_path.display(),
                ca_path.display()
            ),
            format!("restore CERT_DIR from one backup, or run {reinit}"),
        ),
    }
}

fn director_identity(path: &Path, der: &[u8], reinit: &str) -> CheckResult {
    let what = "director certificate role";
    let shown = path.display();
    let identity = match CertIdentity::parse(der) {
        Ok(identity) => identity,
        Err(error) => {
            return CheckResult::error(
                "pki.director-role",
                what,
                format!("the subject of {shown} cannot be read: {error}"),
                format!("run {reinit}"),
            );
        }
    };
    match (&identity.role, &identity.uid) {
        (Some(role), None) if role == FRONTEND_ROLE => CheckResult::ok(
            "pki.director-role",
            what,
            format!("{shown} has role=frontend and no UID, as the director's certificate must"),
        ),
        (role, uid) => CheckResult::error(
            "pki.director-role",
            what,
            format!(
                "{shown} has role={}{}, expected role=frontend and no UID: it is not a \
                 director certificate (the PHP frontend and managers check the role)",
                role.as_deref().unwrap_or("(none)"),
                uid.as_ref()
                    .map(|uid| format!(" and UID={uid}"))
                    .unwrap_or_default()
            ),
            format!("put the director's own certificate back, or run {reinit}"),
        ),
    }
}

fn validity(
    path: &Path,
    der: &[u8],
    options: &CheckOptions,
    now: DateTime<Utc>,
    reinit: &str,
) -> Option<CheckResult> {
    let what = "certificate validity";
    let info = CertInfo::parse(der).ok()?;
    let shown = path.display();
    Some(if now < info.not_before {
        CheckResult::error(
            "pki.validity",
            what,
            format!(
                "{shown} is not valid before {} and the clock says {}: the clock is behind, or \
                 the certificate was made on a machine whose clock was ahead",
                show_time(info.not_before),
                show_time(now)
            ),
            format!(
                "set the clock right (NTP), then run cpscheck again; if it persists, run {reinit}"
            ),
        )
    } else if now > info.not_after {
        CheckResult::error(
            "pki.validity",
            what,
            format!("{shown} expired on {}", show_time(info.not_after)),
            format!("run {reinit}"),
        )
    } else if info.not_after - now < options.expiry_warning {
        CheckResult::warning(
            "pki.validity",
            what,
            format!(
                "{shown} expires on {}, in {}",
                show_time(info.not_after),
                show_duration(info.not_after - now)
            ),
            format!("before then, run {reinit}"),
        )
    } else {
        CheckResult::ok(
            "pki.validity",
            what,
            format!(
                "{shown} is valid until {} ({})",
                show_time(info.not_after),
                show_duration(info.not_after - now)
            ),
        )
    })
}

fn legacy(path: &Path, x509: &X509Certificate<'_>, reinit: &str) -> CheckResult {
    let what = "certificate format";
    let shown = path.display();
    let algorithm = x509_parser::objects::oid2sn(
        &x509.signature_algorithm.algorithm,
        x509_parser::objects::oid_registry(),
    )
    .map(str::to_owned)
    .unwrap_or_else(|_| x509.signature_algorithm.algorithm.to_id_string());
    let version = match x509.version() {
        X509Version::V1 => "v1".to_owned(),
        X509Version::V2 => "v2".to_owned(),
        X509Version::V3 => "v3".to_owned(),
        X509Version(other) => format!("version {}", other + 1),
    };
    if crate::ca::CertInfo::parse(x509.as_raw()).is_ok_and(|info| info.legacy) {
        CheckResult::warning(
            "pki.legacy",
            what,
            format!(
                "{shown} is a legacy certificate as ConPaaS 1.2 made them (X.509 {version}, \
                 {algorithm}), which rustls and other current TLS stacks refuse"
            ),
            format!("run {reinit}"),
        )
    } else {
        CheckResult::ok(
            "pki.legacy",
            what,
            format!("{shown} is an X.509 {version} certificate signed with {algorithm}"),
        )
    }
}

/// The original cpscheck.py's one check, in its words (`spec/manager-bootstrap.md` §13).
fn hostname(loaded: &LoadedConfig, cert_path: &Path, der: &[u8]) -> CheckResult {
    let what = "DIRECTOR_URL host matches the director certificate's CN";
    let url = match loaded.require_director_url() {
        Ok(url) => url,
        Err(error) => {
            return CheckResult::error(
                "pki.hostname",
                what,
                error.to_string(),
                format!(
                    "add DIRECTOR_URL = https://HOSTNAME:5555 to the [director] section of {}, \
                     HOSTNAME being the CN of {}",
                    loaded.path.display(),
                    cert_path.display()
                ),
            );
        }
    };
    let host = url.host();
    let cn = CertIdentity::parse(der)
        .ok()
        .and_then(|identity| identity.cn)
        .unwrap_or_default();
    // Host names compare without case; 1.2 compared exactly, which only ever differed for
    // names nobody types in two cases.
    if host.eq_ignore_ascii_case(&cn) {
        CheckResult::ok(
            "pki.hostname",
            what,
            format!(
                "The hostname part of DIRECTOR_URL ({host}) matches the cname found in {} ({cn})",
                cert_path.display()
            ),
        )
    } else {
        CheckResult::error(
            "pki.hostname",
            what,
            format!(
                "The hostname part of DIRECTOR_URL ({host}) does not match the cname found in {} \
                 ({cn})",
                cert_path.display()
            ),
            format!(
                "run `director init --keep-ca {host}` for a certificate naming {host} under the \
                 same CA (issued certificates keep working), or set DIRECTOR_URL in {} to the \
                 host the certificate names",
                loaded.path.display()
            ),
        )
    }
}

fn san(cert_path: &Path, x509: &X509Certificate<'_>, host: &str, reinit: &str) -> CheckResult {
    let what = "director certificate subjectAltName includes the DIRECTOR_URL host";
    let shown = cert_path.display();
    let names = match x509.subject_alternative_name() {
        Ok(Some(extension)) => extension.value.general_names.clone(),
        Ok(None) => {
            return CheckResult::error(
                "pki.san",
                what,
                format!(
                    "{shown} has no subjectAltName, so TLS clients that ignore the CN (rustls, \
                     browsers, current curl) reject it for {host}"
                ),
                format!("run {reinit}"),
            );
        }
        Err(error) => {
            return CheckResult::error(
                "pki.san",
                what,
                format!("{shown} has a malformed subjectAltName ({error})"),
                format!("run {reinit}"),
            );
        }
    };
    let host_ip: Option<IpAddr> = host.parse().ok();
    let mut listed = Vec::new();
    let mut found = false;
    for name in &names {
        match name {
            GeneralName::DNSName(dns) => {
                listed.push(format!("DNS:{dns}"));
                found |= host_ip.is_none() && dns_matches(dns, host);
            }
            GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                    _ => None,
                };
                match ip {
                    Some(ip) => {
                        listed.push(format!("IP:{ip}"));
                        found |= host_ip == Some(ip);
                    }
                    None => listed.push("IP:(malformed)".to_owned()),
                }
            }
            _ => {}
        }
    }
    let listed = if listed.is_empty() {
        "no host name or address".to_owned()
    } else {
        listed.join(", ")
    };
    if found {
        CheckResult::ok(
            "pki.san",
            what,
            format!("the subjectAltName of {shown} includes {host} ({listed})"),
        )
    } else {
        CheckResult::error(
            "pki.san",
            what,
            format!(
                "the subjectAltName of {shown} does not include {host} (it lists {listed}), so \
                 TLS clients that check it (rustls, browsers, current curl) reject the director"
            ),
            format!("run {reinit}"),
        )
    }
}

/// A SAN dNSName against a host: exact (without case) or a `*.` wildcard for one label.
fn dns_matches(pattern: &str, host: &str) -> bool {
    if pattern.eq_ignore_ascii_case(host) {
        return true;
    }
    match (pattern.strip_prefix("*."), host.split_once('.')) {
        (Some(suffix), Some((_, host_suffix))) => suffix.eq_ignore_ascii_case(host_suffix),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::dns_matches;

    #[test]
    fn san_names_match_like_tls_clients() {
        assert!(dns_matches("director.example.org", "Director.Example.org"));
        assert!(dns_matches("*.example.org", "director.example.org"));
        assert!(!dns_matches("*.example.org", "a.b.example.org"));
        assert!(!dns_matches("*.example.org", "example.org"));
        assert!(!dns_matches("other.example.org", "director.example.org"));
    }
}
