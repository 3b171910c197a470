//! What the binary tests share: a real `director serve` on an ephemeral port, and the dummy
//! cloud's VMs of a data directory.

// Each test crate uses what it needs of this module.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// `director serve` on `data` at 127.0.0.1 on a free port, logging at `rust_log` to `stderr`;
/// answers the child (its stdout taken) and the port of its first line.
pub fn serve(data: &Path, rust_log: &str, stderr: Stdio) -> (Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_director"))
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("DIRECTOR_CFG")
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let port = first
        .trim()
        .strip_prefix("listening on https://127.0.0.1:")
        .unwrap_or_else(|| panic!("first line: {first:?}"))
        .parse()
        .unwrap();
    (child, port)
}

/// The ids of the dummy cloud's VMs of `data` (`dummy-cloud/<vmid>.sh`).
pub fn vm_files(data: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(data.join("dummy-cloud")) {
        Ok(entries) => entries
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|name| name.strip_suffix(".sh").map(str::to_owned))
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// Runs `director --data-dir DATA ARGS` and asserts it succeeded.
pub fn director(data: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_director"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("DIRECTOR_CFG")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client holding `cert_pem`/`key_pem` (or none), trusting only the CA.
pub fn client(ca_pem: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    builder(ca_pem, identity).build().unwrap()
}

/// [`client`] connecting from the loopback address `source`.
pub fn client_from(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
    source: std::net::Ipv4Addr,
) -> reqwest::Client {
    builder(ca_pem, identity)
        .local_address(std::net::IpAddr::V4(source))
        .build()
        .unwrap()
}

fn builder(ca_pem: &str, identity: Option<(&str, &str)>) -> reqwest::ClientBuilder {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let tls = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(60))
}

/// A user's certificate and key (PEM), from `/getcerts` at `base` (`https://host:port`).
pub async fn user_certificates(
    base: &str,
    ca_pem: &str,
    username: &str,
    password: &str,
) -> (String, String) {
    let zip = client(ca_pem, None)
        .post(format!("{base}/getcerts"))
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut member = |name: &str| {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut archive.by_name(name).unwrap(), &mut text).unwrap();
        text
    };
    (member("cert.pem"), member("key.pem"))
}

/// The text of the here-document `cat <<EOF > /tmp/<file>` of a dummy VM's script.
pub fn here_document(script: &str, file: &str) -> Option<String> {
    let start = script.find(&format!("cat <<EOF > /tmp/{file}\n"))?;
    let body = &script[start..];
    let body = &body[body.find('\n')? + 1..];
    Some(body[..body.find("\nEOF\n")?].trim_end().to_owned() + "\n")
}

/// The machine's PostgreSQL server (trust authentication), as the tests reach it
/// (`scripts/test.sh` starts one where none answers).
pub const POSTGRES_SERVER: &str = "postgresql://postgres@127.0.0.1:5432";

/// A connection to the server's `postgres` database, for creating and dropping databases.
pub fn admin() -> diesel::PgConnection {
    use diesel::Connection as _;
    diesel::PgConnection::establish(&format!("{POSTGRES_SERVER}/postgres"))
        .expect("the local PostgreSQL server (127.0.0.1:5432) must run for these tests")
}

/// A database of one test's own (`conpaas_<name>_<pid>`), dropped with it.
pub struct Database(String);

impl Database {
    /// Creates it, dropping a leftover of an earlier run of the same name.
    pub fn create(name: &str) -> Database {
        use diesel::RunQueryDsl as _;
        let name = format!("conpaas_{name}_{}", std::process::id());
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin())
            .unwrap();
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin())
            .unwrap();
        Database(name)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("{POSTGRES_SERVER}/{}", self.0)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        use diesel::RunQueryDsl as _;
        let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0))
            .execute(&mut admin());
    }
}

/// The resident memory of process `pid`, KiB (0 once it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Stops a `director serve` child with SIGTERM (requests in flight finish) and checks that it
/// exited successfully.
pub fn terminate(mut child: Child) {
    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(child.wait().unwrap().success());
}
