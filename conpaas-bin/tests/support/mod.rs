//! What the binary tests share: a real `director serve` on an ephemeral port, and the dummy
//! cloud's VMs of a data directory.

// Each test crate uses what it needs of this module.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

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
