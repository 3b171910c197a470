//! The README's command lines, run as written: the first of "The two commands" and the whole
//! quick tour, in a scratch directory, against the built `director` binary (standing in for
//! `cargo run --release --bin director --`). A README line that fails fails this test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CARGO_RUN: &str = "cargo run --release --bin director --";

/// The lines of the README's ```sh block that follows `heading`.
fn sh_block(readme: &str, heading: &str) -> Vec<String> {
    let section = &readme[readme
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading}"))..];
    let start = section.find("```sh\n").unwrap() + "```sh\n".len();
    let block = &section[start..];
    block[..block.find("```").unwrap()]
        .lines()
        .map(str::to_owned)
        .collect()
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap()
}

fn director_command(line: &str) -> String {
    assert!(line.contains(CARGO_RUN), "not a director line: {line}");
    line.replace(
        CARGO_RUN,
        &format!("\"{}\"", env!("CARGO_BIN_EXE_director")),
    )
}

const CARGO_RUN_CLIENT: &str = "cargo run --release --bin cpsclient --";

#[test]
fn the_first_command_serves_the_embedded_default() {
    let lines = sh_block(&readme(), "## The two commands");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].starts_with("./scripts/test.sh"), "{lines:?}");
    let scratch = tempfile::tempdir().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new("bash")
        .args(["-c", &format!("exec {}", director_command(&lines[0]))])
        .current_dir(scratch.path())
        .env_remove("DIRECTOR_CFG")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    assert_eq!(
        first.trim(),
        "listening on https://127.0.0.1:5555",
        "README says so"
    );
    assert!(status.success(), "{status}");
    // How to reach it, how to serve other hosts, and the next step with a command that runs:
    // this binary is not on PATH, so its path, not `director`.
    let stderr = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        stderr.contains("serving this host only: try `curl --cacert "),
        "{stderr}"
    );
    assert!(stderr.contains("serve --listen 0.0.0.0:5555"), "{stderr}");
    let hint = stderr
        .lines()
        .find(|line| line.contains("no users yet"))
        .unwrap_or_else(|| panic!("no next step in {stderr}"));
    assert!(hint.contains("adduser EMAIL USERNAME PASSWORD"), "{hint}");
    assert!(!hint.contains("`director "), "not on PATH: {hint}");
    for file in [
        "director.cfg",
        "director.db",
        "certs/ca_cert.pem",
        "certs/cert.pem",
    ] {
        assert!(
            scratch.path().join("conpaas-data").join(file).exists(),
            "{file}"
        );
    }
}

#[test]
fn the_quick_tour_runs_as_written() {
    let lines = sh_block(&readme(), "## A quick tour");
    // One script, as a user pastes the block into a shell; every line must succeed. The
    // README's port becomes a free one, so that the test never meets another listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut script = String::from("set -euo pipefail\n");
    for line in &lines {
        let line = line.replace("5555", &port.to_string());
        let line = if line.contains(CARGO_RUN) {
            director_command(&line)
        } else {
            line
        };
        script.push_str(&line);
        script.push('\n');
        if line.trim_end().ends_with('&') {
            // The README's `sleep 1` follows; a loaded machine may need longer.
            script.push_str(&format!(
                "for _ in $(seq 100); do curl -s -o /dev/null --cacert d/certs/ca_cert.pem \
                 https://localhost:{port}/available_services && break; sleep 0.1; done\n"
            ));
        }
    }
    let scratch = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(scratch.path())
        .env_remove("DIRECTOR_CFG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "script:\n{script}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // What the tour promises: a login, a started service in the list, its VM's script, a backup.
    assert!(stdout.contains("\"uid\""), "{stdout}");
    assert!(stdout.contains("\"type\": \"php\""), "{stdout}");
    assert!(stdout.contains(".sh"), "{stdout}");
    assert!(scratch.path().join("cert.pem").exists());
    assert!(
        stdout.contains("copied the database"),
        "the tour's backup: {stdout}"
    );
    assert!(scratch.path().join("d-backup.db").exists());
    std::thread::sleep(Duration::from_millis(100));
}

#[test]
fn the_client_section_runs_before_the_tour_ends() {
    let readme = readme();
    let mut tour = sh_block(&readme, "## A quick tour");
    assert_eq!(
        tour.last().map(String::as_str).map(str::trim_start),
        Some("kill %1                      # stops the director (SIGTERM)")
    );
    let kill = tour.pop().unwrap();
    let client = sh_block(&readme, "## The users' client");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut script = String::from("set -euo pipefail\n");
    for line in tour.iter().chain(&client).chain(std::iter::once(&kill)) {
        let line = line.replace("5555", &port.to_string()).replace(
            CARGO_RUN_CLIENT,
            &format!("\"{}\"", env!("CARGO_BIN_EXE_cpsclient")),
        );
        let line = if line.contains(CARGO_RUN) {
            director_command(&line)
        } else {
            line
        };
        script.push_str(&line);
        script.push('\n');
        if line.trim_end().ends_with('&') {
            script.push_str(&format!(
                "for _ in $(seq 100); do curl -s -o /dev/null --cacert d/certs/ca_cert.pem \
                 https://localhost:{port}/available_services && break; sleep 0.1; done\n"
            ));
        }
    }
    let scratch = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(scratch.path())
        .env_remove("DIRECTOR_CFG")
        .env_remove("CONPAAS_DIRECTOR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "script:\n{script}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("Certificates stored in ./alice"),
        "{stdout}"
    );
    assert!(stdout.contains("\"name\": \"shop\""), "{stdout}");
    assert!(scratch.path().join("alice/key.pem").exists());
}
