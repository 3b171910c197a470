//! The packaging files: the systemd unit (checked by `systemd-analyze verify` where that tool
//! is installed), the Dockerfile (read here; built and run with the docs' own lines by
//! `scripts/container-docs.sh` where Docker or Podman answers) and the example HAProxy configuration (checked by `haproxy -c` where installed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Said on the terminal even when the test passes (libtest captures only `eprintln!`).
fn skip(what: &str) {
    let _ = writeln!(std::io::stderr(), "SKIP: {what}");
}

/// The `KEY=value` lines of a unit file (comments and sections left out).
fn directives(unit: &str) -> Vec<(&str, &str)> {
    unit.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && !line.starts_with('['))
        .filter_map(|line| line.split_once('='))
        .collect()
}

fn value<'a>(unit: &'a [(&'a str, &'a str)], key: &str) -> Vec<&'a str> {
    unit.iter()
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .collect()
}

#[test]
fn the_systemd_unit_is_hardened() {
    let text = read("packaging/conpaas-director.service");
    let unit = directives(&text);
    for (key, expected) in [
        ("User", "conpaas"),
        ("Group", "conpaas"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("StateDirectory", "conpaas-director"),
        ("StateDirectoryMode", "0700"),
        ("ConfigurationDirectory", "cpsdirector"),
        ("UMask", "0077"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("Environment", "DIRECTOR_CFG=/etc/cpsdirector/director.cfg"),
    ] {
        assert_eq!(value(&unit, key), [expected], "{key}");
    }
    // SIGHUP reloads the certificate (conpaas-bin/tests/reload.rs): no restart workaround.
    assert!(value(&unit, "RestartForceExitStatus").is_empty(), "{text}");
    let exec_start = value(&unit, "ExecStart");
    assert_eq!(exec_start.len(), 1);
    assert!(exec_start[0].ends_with("/director serve"), "{exec_start:?}");
    // The user the unit runs as is the one the sysusers file creates.
    let sysusers = read("packaging/conpaas-director.sysusers");
    assert!(
        sysusers
            .lines()
            .any(|line| line.starts_with("u conpaas ")
                && line.ends_with(" /var/lib/conpaas-director")),
        "{sysusers}"
    );
}

/// What `systemd-analyze verify` says about a unit file (empty when it has nothing to say).
fn verify(unit: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conpaas-director.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        said.push_str(&format!("\nexit status {}", out.status));
    }
    said
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        skip("systemd-analyze is not installed: packaging/conpaas-director.service not verified");
        return;
    }
    // verify checks that ExecStart's binary exists: the one just built stands in for it.
    let unit = read("packaging/conpaas-director.service")
        .replace("/usr/local/bin/director", env!("CARGO_BIN_EXE_director"));
    let said = verify(&unit);
    assert!(said.trim().is_empty(), "systemd-analyze verify: {said}");
    // It would say so: a directive it cannot parse is a warning (and the exit status stays 0).
    let broken = unit.replace("ProtectSystem=strict", "ProtectSystem=everything");
    let said = verify(&broken);
    assert!(
        said.contains("everything"),
        "a broken unit passed: {said:?}"
    );

    // And the sandbox is tight: systemd's own exposure score (0 best, 10 worst) at most 2.0.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conpaas-director.service");
    std::fs::write(&path, &unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    if String::from_utf8_lossy(&out.stderr).contains("unrecognized option") {
        skip("this systemd-analyze has no `security --offline`: the exposure is not scored");
        return;
    }
    assert!(out.status.success(), "exposure above 2.0:\n{report}");
    assert!(report.contains("Overall exposure level"), "{report}");
}

#[test]
fn the_dockerfile_builds_in_stages_and_runs_unprivileged() {
    let text = read("Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    let stages: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|line| line.starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert!(stages[0].ends_with(" AS build"), "{stages:?}");
    // The builder is the toolchain the workspace asks for.
    let workspace = read("Cargo.toml");
    let rust_version = workspace
        .lines()
        .find_map(|line| line.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        lines.contains(&format!("ARG RUST_VERSION={rust_version}").as_str()),
        "Dockerfile's RUST_VERSION is not the workspace's {rust_version}"
    );
    assert!(text.contains("cargo build --release --locked"), "{text}");
    // The last stage: a user of its own, the binary from the build stage, the embedded default.
    let last_stage = &text[text.rfind("\nFROM ").unwrap()..];
    let user = last_stage
        .lines()
        .find_map(|line| line.strip_prefix("USER "))
        .expect("the image sets a USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "{user}"
    );
    assert!(last_stage.contains("COPY --from=build "), "{last_stage}");
    assert!(!last_stage.contains("cargo"), "no toolchain in the image");
    assert!(
        last_stage.contains(r#"ENTRYPOINT ["director", "--data-dir", "/data"]"#),
        "{last_stage}"
    );
    assert!(last_stage.contains(r#"CMD ["serve"]"#), "{last_stage}");
    // A health check from the image's own binary (`director health`, tested in cli.rs).
    assert!(
        last_stage.contains(r#"CMD ["director", "--data-dir", "/data", "health"]"#),
        "{last_stage}"
    );
    assert!(last_stage.contains("HEALTHCHECK "), "{last_stage}");
    // The build stage drops the line tables from the binaries.
    assert!(
        text.contains("CARGO_PROFILE_RELEASE_STRIP=debuginfo"),
        "{text}"
    );
    // The build context leaves out build output and local data.
    let ignore = read(".dockerignore");
    for entry in ["target/", "conpaas-data/", ".git/"] {
        assert!(ignore.lines().any(|line| line == entry), "{entry}");
    }
}

/// The image's entry point is a command line the binary takes.
#[test]
fn the_images_command_line_is_one_the_director_takes() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_director"))
        .arg("--data-dir")
        .arg(data.path())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The directives of an HAProxy file, trimmed, comments left out.
fn haproxy_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .collect()
}

/// What `haproxy -c -f` says about `config`, its CA file pointed at a real CA certificate.
fn haproxy_check(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let init = Command::new(env!("CARGO_BIN_EXE_director"))
        .arg("--data-dir")
        .arg(&data)
        .args(["init", "localhost"])
        .env_remove("DIRECTOR_CFG")
        .output()
        .unwrap();
    assert!(init.status.success());
    let ca = data.join("certs/ca_cert.pem");
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(
        &path,
        config.replace("/etc/haproxy/conpaas-ca.pem", &ca.display().to_string()),
    )
    .unwrap();
    let out = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

/// packaging/haproxy.cfg (docs/operations.md, "Scale-out"): TCP mode with TLS passed through,
/// so that client certificates reach the directors; two replicas checked on `/readyz` with
/// the installation's CA. `haproxy -c` accepts it where haproxy is installed (it runs in front
/// of real directors in conpaas-bin/tests/replicas.rs).
#[test]
fn the_haproxy_example_passes_tls_through_to_two_replicas() {
    let text = read("packaging/haproxy.cfg");
    let lines = haproxy_lines(&text);
    assert!(lines.contains(&"mode tcp"), "{text}");
    assert!(!lines.iter().any(|line| line.starts_with("mode http")));
    // No TLS termination: no certificate on the listening side.
    for bind in lines.iter().filter(|line| line.starts_with("bind ")) {
        assert!(!bind.contains(" ssl") && !bind.contains(" crt "), "{bind}");
    }
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("http-check send") && line.contains("uri /readyz")),
        "{text}"
    );
    assert!(lines.contains(&"http-check expect status 200"), "{text}");
    let default_server = lines
        .iter()
        .find(|line| line.starts_with("default-server "))
        .unwrap();
    for option in ["check-ssl", "verify required", "ca-file ", "verifyhost "] {
        assert!(default_server.contains(option), "{default_server}");
    }
    let servers = lines
        .iter()
        .filter(|line| line.starts_with("server "))
        .count();
    assert_eq!(servers, 2, "{text}");

    if Command::new("haproxy").arg("-v").output().is_err() {
        skip("haproxy is not installed: packaging/haproxy.cfg not checked with haproxy -c");
        return;
    }
    let (valid, said) = haproxy_check(&text);
    assert!(valid, "haproxy -c: {said}");
    // It would say so.
    let (valid, said) = haproxy_check(&text.replace("mode tcp", "mode tcpx"));
    assert!(!valid, "a broken configuration passed: {said}");
}

/// `scripts/container-docs.sh` runs the docs' container lines where an engine answers (not on
/// this machine kind: no daemon, no registry); here, that it finds the lines the docs promise
/// and that CI calls it.
#[test]
fn the_container_lines_of_the_docs_are_what_the_script_runs() {
    let out = Command::new("bash")
        .arg(repo().join("scripts/container-docs.sh"))
        .arg("--list")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = listed.lines().collect();
    let operations = read("docs/operations.md");
    for line in &lines {
        assert!(operations.contains(line), "{line}");
    }
    let has = |needle: &str| lines.iter().any(|line| line.contains(needle));
    assert!(has("docker build -t conpaas-director ."), "{listed}");
    assert!(has(" init "), "{listed}");
    // adduser asks for the password on a terminal.
    assert!(
        has("run --rm -it -v conpaas-data:/data conpaas-director adduser "),
        "{listed}"
    );
    assert!(has("run -d --name director -p 5555:5555 "), "{listed}");
    assert!(has(" backup "), "{listed}");
    assert!(has("{{.State.Health.Status}}"), "{listed}");
    assert!(read(".ci/run").contains("\n./scripts/container-docs.sh\n"));
}
