//! SIGHUP on the real `director serve`: the TLS certificate and key are reloaded from CERT_DIR
//! for new connections while an open keep-alive connection goes on with the old ones; a
//! broken replacement is refused and the identity in use kept; a changed director.cfg is
//! named in a warning; the process lives on. And a renewal by root in the data directory of
//! a director running as its own user leaves every file to that user.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

mod support;
use support::serve;

fn director(data: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_director"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("DIRECTOR_CFG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "director {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One TLS connection speaking HTTP/1.1 with keep-alive.
struct Connection {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl Connection {
    fn open(port: u16, ca_pem: &[u8]) -> Connection {
        Connection::open_for(port, ca_pem, "localhost")
    }

    /// A connection to 127.0.0.1 checking the certificate for `host`.
    fn open_for(port: u16, ca_pem: &[u8], host: &str) -> Connection {
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(ca.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let client = rustls::ClientConnection::new(
            Arc::new(config),
            ServerName::try_from(host.to_owned()).unwrap(),
        )
        .unwrap();
        let mut connection = Connection {
            tls: rustls::StreamOwned::new(client, tcp),
        };
        // The handshake, so that the server's certificate is known before any request.
        while connection.tls.conn.is_handshaking() {
            connection
                .tls
                .conn
                .complete_io(&mut connection.tls.sock)
                .unwrap();
        }
        connection
    }

    /// The certificate the server presented on this connection.
    fn server_certificate(&self) -> Vec<u8> {
        self.tls.conn.peer_certificates().unwrap()[0].to_vec()
    }

    /// `GET path`; answers the status and body, the connection kept open.
    fn get(&mut self, path: &str) -> (u16, String) {
        write!(
            self.tls,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: reload-test\r\n\r\n"
        )
        .unwrap();
        self.tls.flush().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            self.tls.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let status = head[9..12].parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .unwrap();
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
        let mut body = vec![0u8; length];
        self.tls.read_exact(&mut body).unwrap();
        (status, String::from_utf8(body).unwrap())
    }
}

fn pem_der(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path).unwrap().to_vec()
}

/// Waits until a line of `lines` contains `text` (past the first `from` lines).
fn wait_for(lines: &Mutex<Vec<String>>, from: usize, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(line) = lines.lock().unwrap()[from..]
            .iter()
            .find(|line| line.contains(text))
        {
            return line.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {text:?}: {:#?}",
            lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn hangup(child: &Child) {
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections_and_keeps_open_ones() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    director(&data, &["init", "localhost"]);
    let certs = data.join("certs");
    let ca_pem = std::fs::read(certs.join("ca_cert.pem")).unwrap();
    let first = pem_der(&certs.join("cert.pem"));

    let (mut child, port) = serve(&data, "info", Stdio::piped());
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().unwrap();
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                lines.lock().unwrap().push(line.unwrap());
            }
        })
    };

    let mut open = Connection::open(port, &ca_pem);
    assert_eq!(open.server_certificate(), first);
    assert_eq!(open.get("/healthz"), (200, "ok\n".to_owned()));

    // A new certificate and key under the same CA, as after a renewal; and an edited
    // director.cfg, which cannot take effect while serving.
    director(&data, &["init", "--keep-ca", "localhost"]);
    let second = pem_der(&certs.join("cert.pem"));
    assert_ne!(second, first);
    let cfg = data.join("director.cfg");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[conpaas]\nMAX_CREDIT = 40\n");
    std::fs::write(&cfg, text).unwrap();

    let before = lines.lock().unwrap().len();
    hangup(&child);
    let reloaded = wait_for(&lines, before, "reloaded the TLS certificate and key");
    assert!(reloaded.contains("common_name=localhost"), "{reloaded}");
    let warning = wait_for(&lines, before, "cannot change while serving");
    assert!(
        warning.contains("WARN") && warning.contains("[conpaas] MAX_CREDIT"),
        "{warning}"
    );

    let mut fresh = Connection::open(port, &ca_pem);
    assert_eq!(fresh.server_certificate(), second);
    assert_eq!(fresh.get("/version").0, 200);
    // The connection opened before goes on, with the certificate of its handshake.
    assert_eq!(open.get("/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(open.server_certificate(), first);

    // A broken replacement (the first key with the second certificate) is refused: the
    // certificate in use stays.
    let key = std::fs::read(certs.join("key.pem")).unwrap();
    director(&data, &["init", "--keep-ca", "localhost"]);
    std::fs::write(certs.join("key.pem"), &key).unwrap();
    let before = lines.lock().unwrap().len();
    hangup(&child);
    let failed = wait_for(&lines, before, "TLS reload failed");
    assert!(failed.contains("WARN"), "{failed}");
    assert!(!failed.contains("PRIVATE KEY"), "{failed}");
    assert_eq!(Connection::open(port, &ca_pem).server_certificate(), second);
    assert_eq!(fresh.get("/healthz"), (200, "ok\n".to_owned()));

    // A good pair whose key others can read is refused too, until it is 0600.
    use std::os::unix::fs::PermissionsExt as _;
    director(&data, &["init", "--keep-ca", "localhost"]);
    let third = pem_der(&certs.join("cert.pem"));
    let key_path = certs.join("key.pem");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = lines.lock().unwrap().len();
    hangup(&child);
    let failed = wait_for(&lines, before, "TLS reload failed");
    assert!(failed.contains("expected 0600"), "{failed}");
    assert_eq!(Connection::open(port, &ca_pem).server_certificate(), second);
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = lines.lock().unwrap().len();
    hangup(&child);
    wait_for(&lines, before, "reloaded the TLS certificate and key");
    assert_eq!(Connection::open(port, &ca_pem).server_certificate(), third);

    assert!(child.try_wait().unwrap().is_none(), "the director died");
    let status = Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    reader.join().unwrap();
}

/// The uid and gid of `nobody`, the unprivileged user every Linux system has (65534 where the
/// passwd file does not say).
fn unprivileged_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 3 && fields[0] == "nobody")
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .unwrap_or((65534, 65534))
}

/// Whether this process may give files away and run others as another user.
fn running_as_root(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let probe = dir.join("probe");
    std::fs::write(&probe, b"").unwrap();
    let root = std::fs::metadata(&probe).unwrap().uid() == 0;
    std::fs::remove_file(probe).unwrap();
    root
}

/// Every file and directory under `dir` (itself included) that `owner` does not own, with
/// its owner.
fn not_owned_by(dir: &Path, owner: (u32, u32)) -> Vec<String> {
    use std::os::unix::fs::MetadataExt as _;
    let mut strays = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        if (metadata.uid(), metadata.gid()) != owner {
            strays.push(format!(
                "{} ({}:{})",
                path.display(),
                metadata.uid(),
                metadata.gid()
            ));
        }
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                pending.push(entry.unwrap().path());
            }
        }
    }
    strays
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The `director` binary as `uid` can run it: where cargo built it, or a copy in `dir` when
/// the build directory is closed to that user.
fn director_binary_for(uid: u32, gid: u32, dir: &Path) -> std::path::PathBuf {
    use std::os::unix::process::CommandExt as _;
    let built = Path::new(env!("CARGO_BIN_EXE_director"));
    let runs = Command::new(built)
        .arg("--version")
        .uid(uid)
        .gid(gid)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if runs {
        return built.to_path_buf();
    }
    let copy = dir.join("director");
    std::fs::copy(built, &copy).unwrap();
    copy
}

/// Issue 26, 1: `director init --keep-ca NEWHOST` run as root (docs/operations.md, after a
/// host name change) in the data directory of a director running as its own user left the
/// new `key.pem` to root, 0600: the SIGHUP reload failed, and the next start too. Every file
/// `init` writes now keeps the owner, group and mode of the file it replaces, or takes its
/// directory's owner.
#[test]
fn a_renewal_by_root_leaves_every_file_to_the_directors_user() {
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::process::CommandExt as _;

    let temp = tempfile::tempdir().unwrap();
    if !running_as_root(temp.path()) {
        eprintln!("SKIP: a renewal by root for another user's director needs root");
        return;
    }
    let owner = unprivileged_user();
    // The director's user must reach its data directory inside the test's.
    std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let data = temp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&data, Some(owner.0), Some(owner.1)).unwrap();

    // A first `init` by root in the empty directory the director's user owns: everything it
    // creates (director.cfg, certs/, the keys, the database, the templates) is that user's.
    director(&data, &["init", "localhost"]);
    assert_eq!(not_owned_by(&data, owner), Vec::<String>::new());
    let certs = data.join("certs");
    let cfg = data.join("director.cfg");
    // The operator's choice of modes, kept by a renewal.
    std::fs::set_permissions(
        certs.join("cert.pem"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o640)).unwrap();

    director(&data, &["init", "--keep-ca", "renewed.example.org"]);
    assert_eq!(not_owned_by(&data, owner), Vec::<String>::new());
    assert_eq!(mode_of(&certs.join("key.pem")), 0o600);
    assert_eq!(mode_of(&certs.join("cert.pem")), 0o640);
    assert_eq!(mode_of(&certs.join("ca_key.pem")), 0o600);
    assert_eq!(mode_of(&cfg), 0o640);
    assert!(
        std::fs::read_to_string(&cfg)
            .unwrap()
            .contains("DIRECTOR_URL = https://renewed.example.org:5555"),
    );

    // The director, as its user, starts and serves the new certificate for the new name.
    let binary = director_binary_for(owner.0, owner.1, temp.path());
    let mut child = Command::new(&binary)
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("DIRECTOR_CFG")
        .env("RUST_LOG", "info")
        .uid(owner.0)
        .gid(owner.1)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().unwrap();
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                lines.lock().unwrap().push(line.unwrap());
            }
        })
    };
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let Some(port) = first
        .trim()
        .strip_prefix("listening on https://127.0.0.1:")
        .and_then(|port| port.parse::<u16>().ok())
    else {
        let _ = child.kill();
        let _ = child.wait();
        reader.join().unwrap();
        panic!(
            "serve as uid {} did not start: {first:?}\n{:#?}",
            owner.0,
            lines.lock().unwrap()
        );
    };
    let ca_pem = std::fs::read(certs.join("ca_cert.pem")).unwrap();
    let mut connection = Connection::open_for(port, &ca_pem, "renewed.example.org");
    assert_eq!(
        connection.server_certificate(),
        pem_der(&certs.join("cert.pem"))
    );
    assert_eq!(connection.get("/version").0, 200);

    // Renewed by root again while it serves: the director's user reloads it on SIGHUP.
    director(&data, &["init", "--keep-ca", "third.example.org"]);
    assert_eq!(not_owned_by(&data, owner), Vec::<String>::new());
    let before = lines.lock().unwrap().len();
    hangup(&child);
    let reloaded = wait_for(&lines, before, "reloaded the TLS certificate and key");
    assert!(
        reloaded.contains("common_name=third.example.org"),
        "{reloaded}"
    );
    let mut renewed = Connection::open_for(port, &ca_pem, "third.example.org");
    assert_eq!(
        renewed.server_certificate(),
        pem_der(&certs.join("cert.pem"))
    );
    assert_eq!(renewed.get("/healthz"), (200, "ok\n".to_owned()));

    assert!(child.try_wait().unwrap().is_none(), "the director died");
    let status = Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    // Nothing the serving director or root's renewals left (the database's -wal and -shm
    // files included) belongs to anyone else.
    assert_eq!(not_owned_by(&data, owner), Vec::<String>::new());
}
