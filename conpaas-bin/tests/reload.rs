//! SIGHUP on the real `director serve`: the TLS certificate and key are reloaded from CERT_DIR
//! for new connections while an open keep-alive connection goes on with the old ones; a
//! broken replacement is refused and the identity in use kept; a changed director.cfg is
//! named in a warning; the process lives on.

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
            ServerName::try_from("localhost").unwrap(),
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
