//! The test harness of the HTTPS API: a real director (config file, CA, SQLite, dummy cloud)
//! served in-process over real TLS on 127.0.0.1:0, and the clients that talk to it.
//!
//! [`TestDirector::start`] builds a temporary data directory, runs `setup::init` on it (the
//! `director init` of the binary) and serves `api::router` on a runtime thread of its own, so
//! a test may block (running `curl`, `python3` or `openssl`) without stalling the server. The
//! server stops when the `TestDirector` is dropped.

// Test code: a panic is a test failure, with the message saying what went wrong.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod clients;
pub mod http;
pub mod manager;
pub mod pyopenssl;
pub mod raw;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use conpaas_core::api::server::{Listener, TransportSettings, TransportStats};
use conpaas_core::ca::{CA_CERT_FILE, CERT_FILE, CertificateAuthority, KEY_FILE};
use conpaas_core::config::{self, ConfigSource, LoadedConfig};
use conpaas_core::director::accounts::{self, NewAccount};
use conpaas_core::director::{Director, DirectorBuilder, LoginThrottleSettings};
use conpaas_core::model::{Credit, ServiceId, UserId};
use conpaas_core::store::HashingSettings;
use secrecy::{ExposeSecret, SecretString};

pub use http::{Http, Reply};

/// How a [`TestDirector`] is configured; [`Options::new`] is the fast default (ECDSA keys).
#[derive(Debug, Clone)]
pub struct Options {
    rsa: bool,
    vpn: Option<Vpn>,
    open_registration: bool,
    max_credit: Option<i64>,
    postgres: bool,
    director_lines: String,
    /// Keys added to `[iaas]` and sections after `[director]` (other clouds).
    iaas_lines: String,
    sections: String,
    hashing: Option<HashingSettings>,
    login_throttle: Option<LoginThrottleSettings>,
    transport: Option<TransportSettings>,
}

#[derive(Debug, Clone, Copy)]
struct Vpn {
    bits: u8,
    legacy: bool,
}

impl Options {
    /// ECDSA P-256 keys (fast), no VPN, closed registration, no credit cap.
    pub fn new() -> Self {
        Options {
            rsa: false,
            vpn: None,
            open_registration: false,
            max_credit: None,
            postgres: false,
            director_lines: String::new(),
            iaas_lines: String::new(),
            sections: String::new(),
            hashing: None,
            login_throttle: None,
            transport: None,
        }
    }

    /// The password hashing pool's size (`DirectorBuilder::hashing`).
    pub fn hashing(mut self, settings: HashingSettings) -> Self {
        self.hashing = Some(settings);
        self
    }

    /// The login throttle's policy (`DirectorBuilder::login_throttle`), to shorten its waits.
    pub fn login_throttle(mut self, settings: LoginThrottleSettings) -> Self {
        self.login_throttle = Some(settings);
        self
    }

    /// The default key type of an installation: RSA-2048 (what the main stories use).
    pub fn rsa(mut self) -> Self {
        self.rsa = true;
        self
    }

    /// `VPN_BASE_NETWORK = 172.16.0.0`, `VPN_NETMASK = 255.240.0.0`, `VPN_SERVICE_BITS = bits`,
    /// and `VPN_LEGACY_SUBNETS = legacy`.
    pub fn vpn(mut self, bits: u8, legacy: bool) -> Self {
        self.vpn = Some(Vpn { bits, legacy });
        self
    }

    /// `[director] OPEN_REGISTRATION = true`.
    pub fn open_registration(mut self) -> Self {
        self.open_registration = true;
        self
    }

    /// `[conpaas] MAX_CREDIT = max`.
    pub fn max_credit(mut self, max: i64) -> Self {
        self.max_credit = Some(max);
        self
    }

    /// Another cloud beside the dummy `[iaas]`: `OTHER_CLOUDS = name` and its section.
    pub fn other_cloud(mut self, name: &str, section: &str) -> Self {
        self.iaas_lines
            .push_str(&format!("OTHER_CLOUDS = {name}\n"));
        self.sections.push_str(&format!("\n[{name}]\n{section}\n"));
        self
    }

    /// One more `KEY = value` line in `[director]`.
    pub fn director_setting(mut self, key: &str, value: &str) -> Self {
        self.director_lines.push_str(&format!("{key} = {value}\n"));
        self
    }

    /// The listener's settings (the default lifts the per-address and per-network caps, every
    /// test client coming from 127.0.0.1).
    pub fn transport(mut self, settings: TransportSettings) -> Self {
        self.transport = Some(settings);
        self
    }

    /// The database on the local PostgreSQL server (a database made for the test and dropped
    /// with it) instead of SQLite.
    pub fn postgres(mut self) -> Self {
        self.postgres = true;
        self
    }

    fn config_text(&self, dir: &Path, database: Option<&str>) -> String {
        let dir = dir.display();
        let mut conpaas = format!(
            "[conpaas]\nCONF_DIR = {dir}\nCERT_DIR = {dir}/certs\nKEY_ALGORITHM = {}\n",
            if self.rsa { "rsa" } else { "ecdsa" }
        );
        if let Some(vpn) = self.vpn {
            conpaas.push_str(&format!(
                "VPN_BASE_NETWORK = 172.16.0.0\nVPN_NETMASK = 255.240.0.0\nVPN_SERVICE_BITS = {}\nVPN_LEGACY_SUBNETS = {}\n",
                vpn.bits, vpn.legacy
            ));
        }
        if let Some(max) = self.max_credit {
            conpaas.push_str(&format!("MAX_CREDIT = {max}\n"));
        }
        format!(
            "{conpaas}\n[iaas]\nDRIVER = dummy\n{}\n[director]\nDATABASE_URI = {}\n\
             DIRECTOR_URL = https://localhost:5555\nOPEN_REGISTRATION = {}\n{}{}",
            self.iaas_lines,
            match database {
                Some(name) => format!("{POSTGRES_SERVER}/{name}"),
                None => format!("sqlite:///{dir}/director.db"),
            },
            self.open_registration,
            self.director_lines,
            self.sections
        )
    }
}

/// The machine's PostgreSQL server (trust authentication), as the tests reach it.
const POSTGRES_SERVER: &str = "postgresql://postgres@127.0.0.1:5432";

/// Creates a database named uniquely for one test.
fn create_database() -> String {
    use diesel::{Connection, RunQueryDsl};
    let name = format!("conpaas_api_{}_{}", std::process::id(), unique());
    let mut admin = diesel::PgConnection::establish(&format!("{POSTGRES_SERVER}/postgres"))
        .expect("the local PostgreSQL server (127.0.0.1:5432) must run for these tests");
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .unwrap();
    name
}

/// Drops a test database, closing what still holds it.
fn drop_database(name: &str) {
    use diesel::{Connection, RunQueryDsl};
    if let Ok(mut admin) = diesel::PgConnection::establish(&format!("{POSTGRES_SERVER}/postgres")) {
        let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin);
    }
}

/// A client certificate and its key, as PEM text and as files (for `curl` and `python3`).
#[derive(Debug, Clone)]
pub struct Identity {
    /// A short name for messages (`alice`, `manager of s3`, `frontend`).
    pub name: String,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
    /// Where the certificate is written.
    pub cert_path: PathBuf,
    /// Where the key is written (0600).
    pub key_path: PathBuf,
}

/// A running director and everything a test needs to reach it.
pub struct TestDirector {
    database: Option<String>,
    dir: tempfile::TempDir,
    loaded: LoadedConfig,
    director: Director,
    addr: SocketAddr,
    transport: TransportStats,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestDirector {
    /// A director with [`Options::new`].
    pub fn start() -> TestDirector {
        TestDirector::with(Options::new())
    }

    /// A director configured by `options`: config file written, `director init` done, server
    /// listening on 127.0.0.1 at a free port.
    pub fn with(options: Options) -> TestDirector {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_path_buf();
        let database = options.postgres.then(create_database);
        fs::write(
            data.join("director.cfg"),
            options.config_text(&data, database.as_deref()),
        )
        .unwrap();
        let source =
            ConfigSource::resolve_with(None, Some(data.clone()), None, Path::new("/nonexistent"));
        let loaded = config::load(&source).unwrap();
        conpaas_core::director::setup::init(&loaded, "localhost", false).unwrap();
        let mut builder = DirectorBuilder::from_config(&loaded).unwrap();
        if let Some(hashing) = options.hashing.clone() {
            builder = builder.hashing(hashing);
        }
        if let Some(throttle) = options.login_throttle.clone() {
            builder = builder.login_throttle(throttle);
        }
        let director = builder.build().unwrap();

        let certs = loaded.config.ca.cert_dir.clone();
        let files = conpaas_core::ca::DirectorTlsFiles::read(&certs).unwrap();
        let tls = conpaas_core::api::tls::server_config_from_files(&files).unwrap();
        // As `DirectorServer::from_config` does: TLS 1.0 for the managers' cloud routes.
        let legacy = conpaas_core::api::server::LegacyTls::from_files(&files).unwrap();
        let settings = options.transport.clone().unwrap_or_else(|| {
            TransportSettings::recommended()
                .shutdown_grace(Duration::from_secs(1))
                // Every test client comes from 127.0.0.1; the per-address and per-network
                // limits have their own tests (transport.rs).
                .max_connections_per_address(1024)
                .max_connections_per_network(1024)
        });
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let served = director.clone();
        let thread = std::thread::Builder::new()
            .name("test-director".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let listener =
                        Listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), tls, settings)
                            .await
                            .unwrap()
                            .legacy_tls(legacy);
                    addr_tx
                        .send((listener.local_addr().unwrap(), listener.stats()))
                        .unwrap();
                    // As `serve_director` does: the transport's counters in `/metrics`.
                    served
                        .metrics()
                        .attach_transport(std::sync::Arc::new(listener.stats()));
                    let router = conpaas_core::api::router(served);
                    listener
                        .serve(router, async {
                            let _ = stop_rx.await;
                        })
                        .await;
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .unwrap();
        let (addr, transport) = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the test director did not start listening");
        TestDirector {
            database,
            dir,
            loaded,
            director,
            addr,
            transport,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The data directory (CONF_DIR).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// CERT_DIR.
    pub fn cert_dir(&self) -> &Path {
        &self.loaded.config.ca.cert_dir
    }

    /// The socket address the server listens on (127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listener's counters (connections open, refused, evicted, timed out).
    pub fn transport(&self) -> &TransportStats {
        &self.transport
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `https://localhost:<port>` (clients resolve `localhost` to the listening address).
    pub fn base_url(&self) -> String {
        format!("https://localhost:{}", self.port())
    }

    /// The CA certificate file clients trust.
    pub fn ca_path(&self) -> PathBuf {
        self.cert_dir().join(CA_CERT_FILE)
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        fs::read_to_string(self.ca_path()).unwrap()
    }

    /// The configuration the director was opened from.
    pub fn loaded(&self) -> &LoadedConfig {
        &self.loaded
    }

    /// The director in-process, for setting up users without going through HTTP.
    pub fn director(&self) -> &Director {
        &self.director
    }

    /// The director's own certificate and key (`role=frontend`, no UID): what the PHP
    /// frontend presents.
    pub fn frontend(&self) -> Identity {
        Identity {
            name: "frontend".into(),
            cert_pem: fs::read_to_string(self.cert_dir().join(CERT_FILE)).unwrap(),
            key_pem: fs::read_to_string(self.cert_dir().join(KEY_FILE)).unwrap(),
            cert_path: self.cert_dir().join(CERT_FILE),
            key_path: self.cert_dir().join(KEY_FILE),
        }
    }

    /// A client without a certificate.
    pub fn anonymous(&self) -> Http {
        Http::new(self, None)
    }

    /// A client presenting `identity`.
    pub fn client(&self, identity: &Identity) -> Http {
        Http::new(self, Some(identity))
    }

    /// Writes a certificate and key into the temporary directory as an [`Identity`].
    pub fn save_identity(&self, name: &str, cert_pem: &str, key_pem: &str) -> Identity {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let slug: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let dir = self.dir.path().join("clients");
        fs::create_dir_all(&dir).unwrap();
        let cert_path = dir.join(format!("{slug}-{}-cert.pem", unique()));
        let key_path = dir.join(format!("{slug}-{}-key.pem", unique()));
        fs::write(&cert_path, cert_pem).unwrap();
        let mut key = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .unwrap();
        key.write_all(key_pem.as_bytes()).unwrap();
        Identity {
            name: name.to_owned(),
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            cert_path,
            key_path,
        }
    }

    /// Creates a user directly in the database (as `director adduser` does), with the e-mail
    /// `<username>@example.org`; returns the uid.
    pub async fn add_user(&self, username: &str, password: &str, credit: i64) -> i32 {
        let account = NewAccount::new(
            username.to_owned(),
            format!("{username}@example.org"),
            SecretString::from(password.to_owned()),
            Credit(credit),
        )
        .fname(format!("F{username}"))
        .lname(format!("L{username}"))
        .affiliation("VU");
        accounts::add_user(self.director.store(), account)
            .await
            .unwrap()
            .uid
            .0
    }

    /// The user's certificate and key, fetched with `/getcerts` and unzipped.
    pub async fn user_identity(&self, username: &str, password: &str) -> Identity {
        let reply = self
            .anonymous()
            .post(
                "/getcerts",
                &[("username", username), ("password", password)],
            )
            .await;
        reply.expect_status(200);
        let members = unzip(&reply.body);
        let cert = member(&members, "cert.pem");
        let key = member(&members, "key.pem");
        self.save_identity(username, &cert, &key)
    }

    /// A certificate for anything the CA can issue, made in-process (for identities no route
    /// hands out: a user id that does not exist, a manager of a service that does not exist).
    pub fn ca(&self) -> CertificateAuthority {
        CertificateAuthority::load(&self.loaded.config.ca).unwrap()
    }

    /// A `role=user` certificate for `uid`, whether or not that user exists.
    pub fn forge_user_identity(&self, uid: i32, username: &str) -> Identity {
        let issued = self
            .ca()
            .issue_user_cert(UserId(uid), username, &format!("{username}@example.org"))
            .unwrap();
        let key = issued.key_pem.as_ref().unwrap().expose_secret().to_owned();
        self.save_identity(&format!("user cert of uid {uid}"), &issued.cert_pem, &key)
    }

    /// A `role=manager` certificate for (`uid`, `sid`), whether or not that service exists.
    pub fn forge_manager_identity(&self, uid: i32, sid: i32) -> Identity {
        let issued = self
            .ca()
            .issue_manager_cert(UserId(uid), ServiceId(sid))
            .unwrap();
        let key = issued.key_pem.as_ref().unwrap().expose_secret().to_owned();
        self.save_identity(
            &format!("manager cert of uid {uid} sid {sid}"),
            &issued.cert_pem,
            &key,
        )
    }

    /// Where the dummy cloud keeps the user-data of VM `vmid`.
    pub fn dummy_vm_path(&self, vmid: &str) -> PathBuf {
        self.data_dir()
            .join("dummy-cloud")
            .join(format!("{vmid}.sh"))
    }

    /// The manager certificate and key embedded in the user-data of dummy VM `vmid` (the
    /// here-documents `cat <<EOF > .../cert.pem` and `.../key.pem` of the context script).
    pub fn manager_identity(&self, vmid: &str) -> Identity {
        let path = self.dummy_vm_path(vmid);
        let script = fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("no user-data at {}: {error}", path.display()));
        let cert = here_document(&script, "cert.pem");
        let key = here_document(&script, "key.pem");
        assert!(cert.contains("BEGIN CERTIFICATE"), "{cert}");
        assert!(
            key.contains("PRIVATE KEY"),
            "the key here-document holds no key"
        );
        self.save_identity(&format!("manager of vm {vmid}"), &cert, &key)
    }

    /// Writes CONF_DIR/ConPaaS.tar.gz.
    pub fn write_tarball(&self, bytes: &[u8]) {
        fs::write(self.data_dir().join("ConPaaS.tar.gz"), bytes).unwrap();
    }

    /// A scratch directory inside the temporary directory.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let dir = self
            .dir
            .path()
            .join("scratch")
            .join(format!("{name}-{}", unique()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Runs `openssl args` in `dir`; panics unless it succeeds; returns stdout.
    pub fn openssl(&self, dir: &Path, args: &[&str]) -> String {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl must be installed");
        assert!(
            output.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// A CSR as a 1.2 manager makes it: RSA-2048, SHA-1-signed, subject `subject`; written
    /// to `dir/csr.pem` (key `dir/agent_key.pem`). Returns the PEM.
    pub fn make_csr(&self, dir: &Path, subject: &str) -> String {
        self.openssl(
            dir,
            &[
                "req",
                "-new",
                "-sha1",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "agent_key.pem",
                "-subj",
                subject,
                "-out",
                "csr.pem",
            ],
        );
        fs::read_to_string(dir.join("csr.pem")).unwrap()
    }
}

impl Drop for TestDirector {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A server that panicked already failed the test that saw its errors.
            let _ = thread.join();
        }
        if let Some(name) = self.database.take() {
            drop_database(&name);
        }
    }
}

/// A number unique in this process (file names of identities).
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The text of the here-document `cat <<EOF > <dir>/<file>` ... `EOF` in `script`.
pub fn here_document(script: &str, file: &str) -> String {
    let mut lines = script.lines();
    let opener = |line: &str| {
        let line = line.trim_end();
        line.starts_with("cat <<EOF > ") && line.ends_with(&format!("/{file}"))
    };
    lines
        .by_ref()
        .find(|line| opener(line))
        .unwrap_or_else(|| panic!("no here-document for {file} in the user-data"));
    let body: Vec<&str> = lines.take_while(|line| *line != "EOF").collect();
    let mut text = body.join("\n");
    text.push('\n');
    text
}

/// The members of a ZIP archive, in archive order: (name, compression method, bytes).
pub fn unzip_entries(bytes: &[u8]) -> Vec<(String, zip::CompressionMethod, Vec<u8>)> {
    use std::io::Read as _;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec()))
        .unwrap_or_else(|error| panic!("not a ZIP archive ({error}): {}", preview(bytes)));
    (0..archive.len())
        .map(|index| {
            let mut file = archive.by_index(index).unwrap();
            let mut data = Vec::new();
            file.read_to_end(&mut data).unwrap();
            (file.name().to_owned(), file.compression(), data)
        })
        .collect()
}

/// The members of a ZIP archive as (name, text).
pub fn unzip(bytes: &[u8]) -> Vec<(String, String)> {
    unzip_entries(bytes)
        .into_iter()
        .map(|(name, _, data)| (name, String::from_utf8(data).unwrap()))
        .collect()
}

/// The text of member `name`.
pub fn member(members: &[(String, String)], name: &str) -> String {
    members
        .iter()
        .find(|(member, _)| member == name)
        .map(|(_, text)| text.clone())
        .unwrap_or_else(|| panic!("no member {name} in the archive"))
}

/// The first bytes of a body, readable, for failure messages.
pub fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(600)]).into_owned();
    if bytes.len() > 600 {
        format!("{text}... ({} bytes)", bytes.len())
    } else {
        text
    }
}

/// Lowercase hex MD5 of `text` (what `/login` and `/new_user` answer as `password`).
pub fn md5_hex(text: &str) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(text.as_bytes()))
}

/// Whether `text` is a 1.2 timestamp: `YYYY-MM-DDTHH:MM:SS` with six fractional digits or none.
pub fn is_timestamp(text: &str) -> bool {
    let shape_ok = |pattern: &str| {
        text.len() == pattern.len()
            && text.bytes().zip(pattern.bytes()).all(|(c, p)| match p {
                b'9' => c.is_ascii_digit(),
                other => c == other,
            })
    };
    shape_ok("9999-99-99T99:99:99") || shape_ok("9999-99-99T99:99:99.999999")
}

/// The subject of a PEM certificate as `openssl x509 -noout -subject -nameopt oid` prints
/// it (attribute types as numeric OIDs: a reader nobody here wrote), split into `oid=value`
/// pairs in certificate order.
pub fn openssl_subject(dir: &Path, cert_pem: &str) -> Vec<String> {
    let path = dir.join(format!("subject-{}.pem", unique()));
    fs::write(&path, cert_pem).unwrap();
    let output = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "oid"])
        .arg("-in")
        .arg(&path)
        .output()
        .expect("openssl must be installed");
    assert!(
        output.status.success(),
        "openssl x509 refused the certificate: {}\n{cert_pem}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    text.trim()
        .trim_start_matches("subject=")
        .split(',')
        .map(|part| part.trim().to_owned())
        .collect()
}

/// OID of the `UID` attribute (userId).
pub const OID_UID: &str = "0.9.2342.19200300.100.1.1";
/// OID of the `serviceLocator` attribute.
pub const OID_SERVICE_LOCATOR: &str = "1.3.6.1.5.5.7.48.1.7";
/// OID of the `role` attribute.
pub const OID_ROLE: &str = "2.5.4.72";
/// OID of the common name.
pub const OID_CN: &str = "2.5.4.3";
/// OID of the organisation.
pub const OID_O: &str = "2.5.4.10";
/// OID of emailAddress.
pub const OID_EMAIL: &str = "1.2.840.113549.1.9.1";

/// The values of attribute `oid` in a subject from [`openssl_subject`].
pub fn subject_values<'a>(subject: &'a [String], oid: &str) -> Vec<&'a str> {
    subject
        .iter()
        .filter_map(|pair| pair.strip_prefix(oid)?.strip_prefix('='))
        .collect()
}

/// `openssl verify -CAfile ca cert`: whether the certificate chains to the CA.
pub fn openssl_verify(dir: &Path, ca_path: &Path, cert_pem: &str) -> Result<(), String> {
    let path = dir.join(format!("verify-{}.pem", unique()));
    fs::write(&path, cert_pem).unwrap();
    let output = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca_path)
        .arg(&path)
        .output()
        .expect("openssl must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() && text.trim().ends_with(": OK") {
        Ok(())
    } else {
        Err(text)
    }
}

/// Runs `check`, recording its panic message (if any) in `failures` under `label`, so that a
/// table of cases reports every failing case rather than the first.
pub fn record_failure(failures: &mut Vec<String>, label: &str, check: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)) {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
            .unwrap_or_default();
        failures.push(format!("{label}:\n{message}"));
    }
}

/// Fails the test with every recorded failure.
#[track_caller]
pub fn assert_no_failures(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} case(s) of {what} fail:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
