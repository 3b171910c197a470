//! Tests of the ca area: what the CA issues, read back by the `openssl` command line (a
//! reader nobody here wrote) and by x509-parser, and CAs and CSRs made by `openssl` the way
//! ConPaaS 1.2 made them.

// The helpers below are test code too: a panic there is a test failure.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use conpaas_core::ca::{
    CA_CERT_FILE, CA_KEY_FILE, CERT_FILE, CaSettings, CertIdentity, CertInfo, CertificateAuthority,
    Error, IfExists, IssuedCertificate, KEY_FILE, KeyAlgorithm, VerifiedCsr,
};
use conpaas_core::model::{Role, ServiceId, UserId};
use secrecy::ExposeSecret;

/// An openssl configuration for `req`: no extensions (so `-x509` makes a v1 certificate, as
/// pyOpenSSL did) and the "all string types" mask of OpenSSL 0.9.8, which picks
/// PrintableString, T61String or BMPString like the 1.2 director's OpenSSL did.
const OPENSSL_1_2_CONFIG: &str = "\
[req]
distinguished_name = dn
string_mask = default
prompt = no
[dn]
CN = unused
";

/// A temporary directory where `openssl` runs.
struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    fn new() -> Self {
        let workdir = Workdir {
            dir: tempfile::tempdir().unwrap(),
        };
        workdir.write("req.cnf", OPENSSL_1_2_CONFIG);
        workdir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, contents).unwrap();
        path
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).unwrap()
    }

    /// Runs `openssl args` here; panics unless it succeeds; returns stdout.
    fn openssl(&self, args: &[&str]) -> String {
        String::from_utf8(self.openssl_bytes(args)).unwrap()
    }

    /// Same, for binary output.
    fn openssl_bytes(&self, args: &[&str]) -> Vec<u8> {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "openssl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    /// `openssl verify` of `cert` against `ca`, for both TLS purposes: directors, managers
    /// and agents are servers and clients.
    fn verify(&self, ca: &str, cert: &str) {
        let out = self.openssl(&["verify", "-CAfile", ca, cert]);
        assert_eq!(out.trim(), format!("{cert}: OK"));
        for purpose in ["sslclient", "sslserver"] {
            let out = self.openssl(&["verify", "-purpose", purpose, "-CAfile", ca, cert]);
            assert_eq!(out.trim(), format!("{cert}: OK"), "{purpose}");
        }
    }

    /// [`Self::verify`], and the same under RFC 5280's rules (`-x509_strict`), which a v1 CA
    /// made by 1.2 cannot pass but ours must.
    fn verify_strict(&self, ca: &str, cert: &str) {
        self.verify(ca, cert);
        for purpose in ["sslclient", "sslserver"] {
            let out = self.openssl(&[
                "verify",
                "-x509_strict",
                "-purpose",
                purpose,
                "-CAfile",
                ca,
                cert,
            ]);
            assert_eq!(out.trim(), format!("{cert}: OK"), "{purpose}");
        }
    }

    /// The subject as `openssl x509 -nameopt <nameopt>` prints it, without `subject=`.
    fn subject(&self, cert: &str, nameopt: &str) -> String {
        let out = self.openssl(&[
            "x509", "-in", cert, "-noout", "-subject", "-nameopt", nameopt,
        ]);
        out.trim().trim_start_matches("subject=").to_owned()
    }

    /// The attributes of the issuer and then the subject, with the value types `openssl
    /// asn1parse` names: `[("emailAddress", "IA5STRING"), ("commonName", "UTF8STRING"), ...]`.
    fn name_types(&self, cert: &str) -> Vec<(String, String)> {
        // Latin-1 values come out as raw octets.
        let out =
            String::from_utf8_lossy(&self.openssl_bytes(&["asn1parse", "-in", cert])).into_owned();
        let lines: Vec<&str> = out.lines().collect();
        // Each attribute is an OBJECT line followed by its string value line; extensions
        // also have OBJECT lines, followed by BOOLEAN or OCTET STRING.
        lines
            .windows(2)
            .filter(|pair| pair[0].contains("prim: OBJECT"))
            .filter_map(|pair| {
                let name = pair[0].rsplit(':').next()?.trim().to_owned();
                let kind = pair[1]
                    .split("prim:")
                    .nth(1)?
                    .split(':')
                    .next()?
                    .trim()
                    .to_owned();
                let is_text = kind.ends_with("STRING")
                    && !kind.starts_with("OCTET")
                    && !kind.starts_with("BIT");
                is_text.then_some((name, kind))
            })
            .collect()
    }

    /// The public key of a certificate and of a private key agree.
    fn key_matches(&self, cert: &str, key: &str) {
        let from_cert = self.openssl(&["x509", "-in", cert, "-noout", "-pubkey"]);
        let from_key = self.openssl(&["pkey", "-in", key, "-pubout"]);
        assert_eq!(from_cert, from_key, "{cert} vs {key}");
    }

    fn serial(&self, cert: &str) -> String {
        let out = self.openssl(&["x509", "-in", cert, "-noout", "-serial"]);
        out.trim().trim_start_matches("serial=").to_lowercase()
    }

    fn text(&self, cert: &str) -> String {
        self.openssl(&["x509", "-in", cert, "-noout", "-text"])
    }
}

fn settings(dir: &Path, key_algorithm: KeyAlgorithm) -> CaSettings {
    CaSettings::new(dir.to_owned(), key_algorithm)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Writes an issued certificate (and its key, if any) as `<name>.pem` and `<name>_key.pem`.
fn save(workdir: &Workdir, name: &str, issued: &IssuedCertificate) -> String {
    let cert = format!("{name}.pem");
    workdir.write(&cert, &issued.cert_pem);
    if let Some(key) = &issued.key_pem {
        workdir.write(&format!("{name}_key.pem"), key.expose_secret());
    }
    cert
}

#[test]
fn openssl_accepts_every_certificate_kind() {
    let workdir = Workdir::new();
    let cert_dir = workdir.path("certs");
    let ca =
        CertificateAuthority::create(&settings(&cert_dir, KeyAlgorithm::Rsa2048), IfExists::Fail)
            .unwrap();
    let ca_file = cert_dir.join(CA_CERT_FILE).display().to_string();

    // The CA itself.
    assert_eq!(
        workdir.subject(&ca_file, "RFC2253"),
        "O=ConPaaS,CN=CA,emailAddress=info@conpaas.eu"
    );
    let ca_text = workdir.text(&ca_file);
    assert!(ca_text.contains("Version: 3 (0x2)"), "{ca_text}");
    assert!(
        ca_text.contains("Signature Algorithm: sha256WithRSAEncryption"),
        "{ca_text}"
    );
    assert!(
        ca_text.contains("X509v3 Basic Constraints: critical\n                CA:TRUE"),
        "{ca_text}"
    );
    assert!(ca_text.contains("Certificate Sign, CRL Sign"), "{ca_text}");
    assert!(
        ca_text.contains("X509v3 Subject Key Identifier"),
        "{ca_text}"
    );
    assert!(
        !ca_text.contains("Extended Key Usage") && !ca_text.contains("Netscape"),
        "{ca_text}"
    );
    workdir.key_matches(&ca_file, &cert_dir.join(CA_KEY_FILE).display().to_string());

    // The director's certificate, written to CERT_DIR.
    let director = ca.write_director_cert("localhost", IfExists::Fail).unwrap();
    let director_file = cert_dir.join(CERT_FILE).display().to_string();
    workdir.verify_strict(&ca_file, &director_file);
    assert_eq!(
        workdir.subject(&director_file, "RFC2253"),
        "O=ConPaaS,CN=localhost,emailAddress=info@conpaas.eu,role=frontend"
    );
    let san = workdir.openssl(&[
        "x509",
        "-in",
        &director_file,
        "-noout",
        "-ext",
        "subjectAltName",
    ]);
    assert!(
        san.contains("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1"),
        "{san}"
    );
    workdir.key_matches(
        &director_file,
        &cert_dir.join(KEY_FILE).display().to_string(),
    );
    assert_eq!(director.role, Role::Frontend);

    // A user's certificate.
    let user = ca
        .issue_user_cert(UserId(7), "alice", "alice@example.org")
        .unwrap();
    let user_file = save(&workdir, "user", &user);
    workdir.verify_strict(&ca_file, &user_file);
    assert_eq!(
        workdir.subject(&user_file, "RFC2253"),
        "role=user,emailAddress=alice@example.org,O=Contrail,UID=7,CN=alice,serviceLocator=0"
    );
    assert_eq!(
        workdir.subject(&user_file, "oid"),
        "1.3.6.1.5.5.7.48.1.7=0, 2.5.4.3=alice, 0.9.2342.19200300.100.1.1=7, 2.5.4.10=Contrail, \
         1.2.840.113549.1.9.1=alice@example.org, 2.5.4.72=user"
    );
    workdir.key_matches(&user_file, "user_key.pem");

    // A manager's certificate.
    let manager = ca.issue_manager_cert(UserId(1), ServiceId(5)).unwrap();
    let manager_file = save(&workdir, "manager", &manager);
    workdir.verify_strict(&ca_file, &manager_file);
    assert_eq!(
        workdir.subject(&manager_file, "RFC2253"),
        "role=manager,emailAddress=info@conpaas.eu,O=Contrail,UID=1,CN=ConPaaS,serviceLocator=5"
    );
    workdir.key_matches(&manager_file, "manager_key.pem");

    // An agent's certificate from a SHA-256 CSR made by openssl.
    workdir.openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "agent_key.pem",
        "-sha256",
        "-subj",
        "/UID=1/serviceLocator=5/O=ConPaaS/emailAddress=info@conpaas.eu/CN=ConPaaS/role=agent",
        "-out",
        "agent.csr",
    ]);
    let agent = ca
        .sign_agent_csr(
            workdir.read("agent.csr").as_bytes(),
            UserId(1),
            ServiceId(5),
        )
        .unwrap();
    let agent_file = save(&workdir, "agent", &agent);
    workdir.verify_strict(&ca_file, &agent_file);
    assert_eq!(
        workdir.subject(&agent_file, "RFC2253"),
        "role=agent,emailAddress=info@conpaas.eu,O=ConPaaS,UID=1,CN=ConPaaS,serviceLocator=5"
    );
    workdir.key_matches(&agent_file, "agent_key.pem");

    // What every leaf shares.
    let mut serials = Vec::new();
    for (issued, file) in [
        (&director, &director_file),
        (&user, &user_file),
        (&manager, &manager_file),
        (&agent, &agent_file),
    ] {
        let text = workdir.text(file);
        assert!(text.contains("Version: 3 (0x2)"), "{text}");
        assert!(
            text.contains("Signature Algorithm: sha256WithRSAEncryption"),
            "{text}"
        );
        assert!(text.contains("CA:FALSE"), "{text}");
        assert!(
            text.contains("Digital Signature, Key Encipherment"),
            "{text}"
        );
        assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
        assert!(
            !text.contains("Extended Key Usage") && !text.contains("Netscape"),
            "{text}"
        );
        // Issuer (the CA's three attributes), then subject.
        let types = workdir.name_types(file);
        assert_eq!(types[..3], workdir.name_types(&ca_file)[3..]);
        for (name, kind) in &types {
            let expected = if name == "emailAddress" {
                "IA5STRING"
            } else {
                "UTF8STRING"
            };
            assert_eq!(kind, expected, "{file}: {name} in {types:?}");
        }
        let serial = workdir.serial(file);
        assert_eq!(serial, issued.serial, "{file}");
        assert_eq!(serial.len(), 32, "{file}: 128-bit serial");
        serials.push(serial);
        // x509-parser reads the same serial and times.
        let info = CertInfo::parse(issued.cert_pem.as_bytes()).unwrap();
        assert_eq!(info.serial, issued.serial);
        assert_eq!(
            (info.not_before, info.not_after),
            (issued.not_before, issued.not_after)
        );
        assert!(!info.legacy);
    }
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 4, "serials differ");

    // Keys are private, certificates are not; the directory is the CA's own.
    for key in [CA_KEY_FILE, KEY_FILE] {
        assert_eq!(mode(&cert_dir.join(key)), 0o600, "{key}");
    }
    assert_eq!(mode(&cert_dir) & 0o077, 0);
}

#[test]
fn ecdsa_certificates_verify_and_only_sign() {
    let workdir = Workdir::new();
    let ca = CertificateAuthority::create(
        &settings(workdir.dir.path(), KeyAlgorithm::EcdsaP256),
        IfExists::Fail,
    )
    .unwrap();
    let user = ca
        .issue_user_cert(UserId(2), "bob", "bob@example.org")
        .unwrap();
    let user_file = save(&workdir, "user", &user);
    workdir.verify_strict(CA_CERT_FILE, &user_file);
    workdir.key_matches(&user_file, "user_key.pem");
    let text = workdir.text(&user_file);
    assert!(
        text.contains("Signature Algorithm: ecdsa-with-SHA256"),
        "{text}"
    );
    assert!(text.contains("ASN1 OID: prime256v1"), "{text}");
    assert!(
        text.contains("Digital Signature\n") && !text.contains("Key Encipherment"),
        "{text}"
    );
}

#[test]
fn sha1_csr_of_a_1_2_manager_is_signed_for_the_caller() {
    let workdir = Workdir::new();
    let ca = CertificateAuthority::create(
        &settings(workdir.dir.path(), KeyAlgorithm::EcdsaP256),
        IfExists::Fail,
    )
    .unwrap();
    // What a 1.2 manager sends (spec/certificates.md §8.1 and the §14 test vector), except
    // that it asks for someone else's identity: role=user of UID 99.
    workdir.openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "agent_key.pem",
        "-sha1",
        "-subj",
        "/UID=99/serviceLocator=101/O=ConPaaS/emailAddress=info@conpaas.eu/CN=ConPaaS/role=user",
        "-out",
        "agent.csr",
    ]);
    let csr_text = workdir.openssl(&["req", "-in", "agent.csr", "-noout", "-text"]);
    assert!(csr_text.contains("sha1WithRSAEncryption"), "{csr_text}");

    let csr_pem = workdir.read("agent.csr");
    let requested = VerifiedCsr::parse(csr_pem.as_bytes()).unwrap();
    assert_eq!(
        requested.requested_identity(),
        &CertIdentity::default()
            .with_uid("99")
            .with_service_locator("101")
            .with_role("user")
            .with_cn("ConPaaS")
    );

    let agent = ca
        .sign_agent_csr(csr_pem.as_bytes(), UserId(3), ServiceId(7))
        .unwrap();
    assert_eq!(
        (agent.role, agent.uid, agent.sid),
        (Role::Agent, Some(UserId(3)), Some(ServiceId(7)))
    );
    assert!(agent.key_pem.is_none());
    let agent_file = save(&workdir, "agent", &agent);
    workdir.verify_strict(CA_CERT_FILE, &agent_file);
    workdir.key_matches(&agent_file, "agent_key.pem");
    assert_eq!(
        workdir.subject(&agent_file, "RFC2253"),
        "role=agent,emailAddress=info@conpaas.eu,O=ConPaaS,UID=3,CN=ConPaaS,serviceLocator=7"
    );
    // The RSA key of the CSR under an EC CA: keyUsage follows the subject key.
    assert!(
        workdir
            .text(&agent_file)
            .contains("Digital Signature, Key Encipherment")
    );
    assert_eq!(
        CertIdentity::parse(&agent.cert_der).unwrap(),
        CertIdentity::default()
            .with_uid("3")
            .with_service_locator("7")
            .with_role("agent")
            .with_cn("ConPaaS")
    );
    // The DER carries exactly the attribute OIDs 1.2 peers look up (spec §14).
    for oid in [
        &[
            0x06, 0x0A, 0x09, 0x92, 0x26, 0x89, 0x93, 0xF2, 0x2C, 0x64, 0x01, 0x01,
        ][..],
        &[
            0x06, 0x09, 0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x07,
        ],
        &[0x06, 0x03, 0x55, 0x04, 0x48],
    ] {
        assert!(
            agent
                .cert_der
                .windows(oid.len())
                .any(|window| window == oid),
            "{oid:02x?}"
        );
    }
}

#[test]
fn bad_csrs_are_refused() {
    let workdir = Workdir::new();
    let ca = CertificateAuthority::create(
        &settings(workdir.dir.path(), KeyAlgorithm::EcdsaP256),
        IfExists::Fail,
    )
    .unwrap();
    let sign = |pem: &str| ca.sign_agent_csr(pem.as_bytes(), UserId(1), ServiceId(1));

    // A broken signature: one base64 character of the last line (inside the signature).
    workdir.openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "key.pem",
        "-subj",
        "/CN=ConPaaS",
        "-out",
        "good.csr",
    ]);
    let good = workdir.read("good.csr");
    assert!(sign(&good).is_ok());
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    let last_body = lines.len() - 2;
    let first = lines[last_body].remove(0);
    lines[last_body].insert(0, if first == 'A' { 'B' } else { 'A' });
    let broken = lines.join("\n") + "\n";
    assert!(
        matches!(sign(&broken), Err(Error::CsrSignature { .. })),
        "{:?}",
        sign(&broken)
    );

    // Not a CSR at all.
    for garbage in ["", "hello", "false", ca.cert_pem()] {
        assert!(
            matches!(sign(garbage), Err(Error::NotPem { .. })),
            "{garbage:?}"
        );
    }
    let not_der = "-----BEGIN CERTIFICATE REQUEST-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE REQUEST-----\n";
    assert!(matches!(sign(not_der), Err(Error::Malformed { .. })));

    // Keys too weak or of another kind.
    workdir.openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:1024",
        "-nodes",
        "-keyout",
        "weak.pem",
        "-sha1",
        "-subj",
        "/CN=ConPaaS",
        "-out",
        "weak.csr",
    ]);
    let err = sign(&workdir.read("weak.csr")).unwrap_err();
    assert!(matches!(err, Error::UnsupportedKey { .. }), "{err:?}");
    assert!(err.to_string().contains("RSA 1024 bits"), "{err}");
    workdir.openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-nodes",
        "-keyout",
        "p384.pem",
        "-subj",
        "/CN=ConPaaS",
        "-out",
        "p384.csr",
    ]);
    assert!(matches!(
        sign(&workdir.read("p384.csr")),
        Err(Error::UnsupportedKey { .. })
    ));
}

/// Makes a CA the way 1.2's cpsconf.py did: v1, SHA-1, PrintableString, PKCS#1 key.
fn make_1_2_ca(workdir: &Workdir, cert_dir: &Path) {
    make_1_2_ca_for_days(workdir, cert_dir, "1825");
}

/// [`make_1_2_ca`] valid for `days` days.
fn make_1_2_ca_for_days(workdir: &Workdir, cert_dir: &Path, days: &str) {
    fs::create_dir(cert_dir).unwrap();
    workdir.openssl(&[
        "req",
        "-x509",
        "-sha1",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "pkcs8_key.pem",
        "-days",
        days,
        "-config",
        "req.cnf",
        "-subj",
        "/emailAddress=info@conpaas.eu/CN=CA/O=ConPaaS",
        "-set_serial",
        "4611686018427387903",
        "-out",
        &cert_dir.join(CA_CERT_FILE).display().to_string(),
    ]);
    let key_path = cert_dir.join(CA_KEY_FILE).display().to_string();
    workdir.openssl(&[
        "rsa",
        "-traditional",
        "-in",
        "pkcs8_key.pem",
        "-out",
        &key_path,
    ]);
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn a_ca_made_by_1_2_loads_and_issues() {
    let workdir = Workdir::new();
    let cert_dir = workdir.path("certs");
    make_1_2_ca(&workdir, &cert_dir);
    let ca_file = cert_dir.join(CA_CERT_FILE).display().to_string();
    assert!(
        fs::read_to_string(cert_dir.join(CA_KEY_FILE))
            .unwrap()
            .starts_with("-----BEGIN RSA PRIVATE KEY-----")
    );
    let ca_text = workdir.text(&ca_file);
    assert!(
        ca_text.contains("Version: 1 (0x0)") && ca_text.contains("sha1WithRSAEncryption"),
        "{ca_text}"
    );

    let settings = settings(&cert_dir, KeyAlgorithm::Rsa2048);
    let ca = CertificateAuthority::load(&settings).unwrap();
    assert!(ca.is_legacy());
    assert!(CertInfo::parse(ca.cert_pem().as_bytes()).unwrap().legacy);
    assert_eq!(ca.cert_pem(), fs::read_to_string(&ca_file).unwrap());

    let user = ca
        .issue_user_cert(UserId(7), "alice", "alice@example.org")
        .unwrap();
    let user_file = save(&workdir, "user", &user);
    workdir.verify(&ca_file, &user_file);
    workdir.key_matches(&user_file, "user_key.pem");
    // The issuer is the old CA's subject byte for byte (PrintableString kept).
    let ca_der = workdir.openssl(&[
        "x509", "-in", &ca_file, "-noout", "-subject", "-nameopt", "RFC2253",
    ]);
    let issuer = workdir.openssl(&[
        "x509", "-in", &user_file, "-noout", "-issuer", "-nameopt", "RFC2253",
    ]);
    assert_eq!(
        issuer.trim_start_matches("issuer="),
        ca_der.trim_start_matches("subject=")
    );
    let issuer_types = workdir.name_types(&user_file)[..3].to_vec();
    assert_eq!(
        issuer_types,
        [
            ("emailAddress", "IA5STRING"),
            ("commonName", "PRINTABLESTRING"),
            ("organizationName", "PRINTABLESTRING")
        ]
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
    );
    let text = workdir.text(&user_file);
    assert!(
        text.contains("Signature Algorithm: sha256WithRSAEncryption"),
        "{text}"
    );
    // No subjectKeyIdentifier on a v1 CA: the AKI is still there, derived from its key.
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");

    let director = ca
        .write_director_cert("director.example.org", IfExists::Fail)
        .unwrap();
    workdir.verify(&ca_file, &cert_dir.join(CERT_FILE).display().to_string());
    assert_eq!(mode(&cert_dir.join(KEY_FILE)), 0o600);
    assert_eq!(director.role, Role::Frontend);

    // A 1.2 leaf (v1, SHA-1) is recognised as one to replace.
    workdir.openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "old_key.pem",
        "-sha1",
        "-config",
        "req.cnf",
        "-subj",
        "/serviceLocator=0/CN=alice/UID=7/O=Contrail/emailAddress=a@b/role=user",
        "-out",
        "old.csr",
    ]);
    workdir.openssl(&[
        "x509",
        "-req",
        "-in",
        "old.csr",
        "-CA",
        &ca_file,
        "-CAkey",
        "pkcs8_key.pem",
        "-sha1",
        "-set_serial",
        "1234",
        "-days",
        "365",
        "-out",
        "old.pem",
    ]);
    let old = CertInfo::parse(workdir.read("old.pem").as_bytes()).unwrap();
    assert!(old.legacy);
    assert_eq!(old.serial, "04d2");
    assert_eq!(old.identity.uid.as_deref(), Some("7"));

    // A key others can read is refused until the operator fixes it.
    fs::set_permissions(
        cert_dir.join(CA_KEY_FILE),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let err = CertificateAuthority::load(&settings).unwrap_err();
    assert!(
        matches!(err, Error::KeyPermissions { mode: 0o644, .. }),
        "{err:?}"
    );
}

#[test]
fn identities_of_foreign_certificates_decode_every_string_type() {
    let workdir = Workdir::new();
    // OpenSSL's "default" mask writes T61String for Latin-1 text and BMPString beyond it.
    workdir.openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "key.pem",
        "-config",
        "req.cnf",
        "-utf8",
        "-subj",
        "/UID=1/serviceLocator=5/role=Ωmanager/CN=café",
        "-out",
        "foreign.pem",
    ]);
    let types: Vec<String> = workdir
        .name_types("foreign.pem")
        .into_iter()
        .map(|(_, kind)| kind)
        .collect();
    assert!(
        types.contains(&"T61STRING".to_owned()) && types.contains(&"BMPSTRING".to_owned()),
        "{types:?}"
    );
    let pem = workdir.read("foreign.pem");
    let identity = CertIdentity::parse(pem.as_bytes()).unwrap();
    assert_eq!(
        identity,
        CertIdentity::default()
            .with_uid("1")
            .with_service_locator("5")
            .with_role("Ωmanager")
            .with_cn("café")
    );
    let der = workdir.openssl_bytes(&["x509", "-in", "foreign.pem", "-outform", "DER"]);
    assert_eq!(CertIdentity::parse(&der).unwrap(), identity);
    assert!(matches!(
        CertIdentity::parse(b"garbage"),
        Err(Error::NotPem { .. })
    ));
    assert!(matches!(
        CertIdentity::parse(&der[..der.len() - 1]),
        Err(Error::Malformed { .. })
    ));
}

/// A leaf never outlives its CA: under a CA ending in 30 days, a user's certificate (365 days
/// otherwise) ends with the CA, and what is recorded says so.
#[test]
fn leaves_end_with_their_ca() {
    let workdir = Workdir::new();
    let cert_dir = workdir.path("certs");
    make_1_2_ca_for_days(&workdir, &cert_dir, "30");
    let ca = CertificateAuthority::load(&settings(&cert_dir, KeyAlgorithm::EcdsaP256)).unwrap();
    let user = ca
        .issue_user_cert(UserId(7), "alice", "alice@example.org")
        .unwrap();
    assert_eq!(user.not_after, ca.not_after());
    let info = CertInfo::parse(user.cert_pem.as_bytes()).unwrap();
    assert_eq!(info.not_after, ca.not_after());
    let user_file = save(&workdir, "user", &user);
    workdir.verify(
        &cert_dir.join(CA_CERT_FILE).display().to_string(),
        &user_file,
    );
}
