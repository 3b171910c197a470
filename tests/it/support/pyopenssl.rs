//! A manager on ConPaaS 1.2's own TLS stack (issue #21): `tests/support/pyopenssl_manager.py`,
//! pyOpenSSL configured as 1.2's `conpaas/core/https/server.py` (client certificate required,
//! no session id context, so OpenSSL aborts any resumed handshake), run by
//! `CONPAAS_TEST_PYTHON` (scripts/test.sh installs pyOpenSSL into target/pyenv). It prints the
//! calls it takes as JSON lines, collected here.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The Python of the tests, checked to have pyOpenSSL; panics saying to run scripts/test.sh
/// when there is none (never a silent skip).
pub fn python() -> PathBuf {
    let python = std::env::var_os("CONPAAS_TEST_PYTHON").unwrap_or_else(|| {
        panic!(
            "CONPAAS_TEST_PYTHON is not set: the pyOpenSSL manager tests need pyOpenSSL; run \
             scripts/test.sh, which installs tests/support/requirements.txt into target/pyenv \
             and sets it"
        )
    });
    let python = PathBuf::from(python);
    let check = Command::new(&python)
        .args(["-c", "import OpenSSL.SSL"])
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", python.display()));
    assert!(
        check.status.success(),
        "pyOpenSSL is not installed for {}: run scripts/test.sh (it installs \
         tests/support/requirements.txt)\n{}",
        python.display(),
        String::from_utf8_lossy(&check.stderr)
    );
    python
}

/// The pyOpenSSL manager; stopped on drop.
pub struct PyManager {
    /// The address it listens on.
    pub host: String,
    /// Its port.
    pub port: u16,
    child: Child,
    _stdin: ChildStdin,
    records: Arc<Mutex<Vec<Value>>>,
    _files: tempfile::TempDir,
}

impl PyManager {
    /// Serves on `host` (port chosen by the kernel) with the manager certificate and key given
    /// (PEM), trusting `ca_pem`; callers of role user/manager must carry `uid`.
    pub fn start(host: &str, cert_pem: &str, key_pem: &str, ca_pem: &str, uid: i32) -> PyManager {
        let python = python();
        let files = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = files.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let cert = write("cert.pem", cert_pem);
        let key = write("key.pem", key_pem);
        let ca = write("ca_cert.pem", ca_pem);
        // The workspace's tests/support, from this crate or conpaas-bin's tests.
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|dir| dir.join("tests/support/pyopenssl_manager.py"))
            .find(|script| script.exists())
            .expect("tests/support/pyopenssl_manager.py in the workspace");
        let mut child = Command::new(&python)
            .arg(script)
            .arg(host)
            .args([&cert, &key, &ca])
            .arg(uid.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start the pyOpenSSL manager: {error}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let records: Arc<Mutex<Vec<Value>>> = Arc::default();
        let collected = records.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let record: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|error| panic!("pyOpenSSL manager printed {line:?}: {error}"));
                if let Some(port) = record.get("listening").and_then(Value::as_u64) {
                    let _ = port_tx.send(port as u16);
                } else {
                    collected.lock().unwrap().push(record);
                }
            }
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("the pyOpenSSL manager did not start within 30 s"));
        PyManager {
            host: host.to_owned(),
            port,
            child,
            _stdin: stdin,
            records,
            _files: files,
        }
    }

    /// `https://host:port/`.
    pub fn url(&self) -> String {
        format!("https://{}:{}/", self.host, self.port)
    }

    /// Everything printed so far but the first line: calls, refused handshakes, errors.
    pub fn records(&self) -> Vec<Value> {
        self.records.lock().unwrap().clone()
    }

    /// The calls taken, in order.
    pub fn calls(&self) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|record| record["event"] == "call")
            .collect()
    }

    /// The methods of [`PyManager::calls`].
    pub fn methods(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|call| call["method"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The refused handshakes and failed requests.
    pub fn failures(&self) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|record| record["event"] != "call")
            .collect()
    }

    /// Waits (bounded) until `n` records arrived: the manager prints after the client has its
    /// answer or its error.
    pub fn wait_records(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let records = self.records();
            if records.len() >= n {
                return records;
            }
            assert!(
                Instant::now() < deadline,
                "the pyOpenSSL manager printed {records:?}, expected {n} records"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PyManager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
