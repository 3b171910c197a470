//! The `director` binary's operator commands, run as an operator would: `init`, `adduser`,
//! and what a broken configuration does to them.

// Test helpers panic on setup failures by design: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod support;

fn director(data_dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_director"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("DIRECTOR_CFG")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn director_with_config(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_director"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_creates_a_working_installation() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let out = director(&data, &["init", "director.example.org"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let certs = data.join("certs");
    for file in ["ca_cert.pem", "ca_key.pem", "cert.pem", "key.pem"] {
        assert!(certs.join(file).exists(), "{file} missing");
    }
    assert_eq!(mode(&certs.join("ca_key.pem")), 0o600);
    assert_eq!(mode(&certs.join("key.pem")), 0o600);
    assert!(data.join("director.db").exists());
    let cfg = std::fs::read_to_string(data.join("director.cfg")).unwrap();
    assert!(
        cfg.contains("DIRECTOR_URL = https://director.example.org:5555\n"),
        "{cfg}"
    );

    // A reader nobody here wrote accepts the chain and sees the frontend role.
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(certs.join("ca_cert.pem"))
        .arg(certs.join("cert.pem"))
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    let subject = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "oid", "-in"])
        .arg(certs.join("cert.pem"))
        .output()
        .unwrap();
    let subject = text(&subject.stdout);
    assert!(subject.contains("2.5.4.72=frontend"), "{subject}");
    assert!(
        subject.contains("CN=director.example.org")
            || subject.contains("2.5.4.3=director.example.org"),
        "{subject}"
    );
}

#[test]
fn init_refuses_to_replace_a_ca_without_force() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    assert!(director(&data, &["init", "localhost"], "").status.success());
    let ca_before = std::fs::read(data.join("certs/ca_cert.pem")).unwrap();
    let cfg_before = std::fs::read(data.join("director.cfg")).unwrap();

    let out = director(&data, &["init", "other.example.org"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read(data.join("certs/ca_cert.pem")).unwrap(),
        ca_before
    );
    assert_eq!(
        std::fs::read(data.join("director.cfg")).unwrap(),
        cfg_before
    );

    let out = director(&data, &["init", "--force", "other.example.org"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_ne!(
        std::fs::read(data.join("certs/ca_cert.pem")).unwrap(),
        ca_before
    );
}

#[test]
fn init_asks_for_the_hostname_with_the_configured_default() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    // The generated configuration says https://localhost:5555: an empty answer keeps it.
    let out = director(&data, &["init"], "\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("[localhost]"),
        "{}",
        text(&out.stderr)
    );
    let out = director(&data, &["init", "--force"], "typed.example.org\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cfg = std::fs::read_to_string(data.join("director.cfg")).unwrap();
    assert!(
        cfg.contains("DIRECTOR_URL = https://typed.example.org:5555"),
        "{cfg}"
    );
}

#[test]
fn init_keeps_the_other_lines_of_an_operators_config() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let cfg = dir.join("director.cfg");
    let original = format!(
        "# my director\n[conpaas]\nCONF_DIR = {d}\nCERT_DIR = {d}/certs\n\n[iaas]\nDRIVER = dummy\n\n\
         [director]\nDEBUG = false\n; old url below\nDIRECTOR_URL = https://old.example.org:5555\n\
         DATABASE_URI = sqlite:///{d}/director.db\n",
        d = dir.display()
    );
    std::fs::write(&cfg, &original).unwrap();
    let out = director_with_config(&cfg, &["init", "new.example.org"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected = original.replace(
        "https://old.example.org:5555",
        "https://new.example.org:5555",
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), expected);
}

#[test]
fn adduser_creates_once_and_refuses_duplicates() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    assert!(director(&data, &["init", "localhost"], "").status.success());

    let out = director(
        &data,
        &["adduser", "alice@example.org", "alice", "s3cret"],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("50 credit"),
        "{}",
        text(&out.stdout)
    );

    let out = director(&data, &["adduser", "other@example.org", "alice", "x"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Username \"alice\" already taken"),
        "{}",
        text(&out.stderr)
    );

    let out = director(&data, &["adduser", "alice@example.org", "bob", "x"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("already registered"),
        "{}",
        text(&out.stderr)
    );

    let out = director(&data, &["adduser", "ca@example.org", "CA", "x"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("reserved"),
        "{}",
        text(&out.stderr)
    );

    // Prompts: e-mail, user name, password twice (piped: read as lines).
    let out = director(
        &data,
        &["adduser", "--credit", "7"],
        "bob@example.org\nbob\npw\npw\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("7 credit"));
    // Passwords that differ are asked again, at most three times.
    let out = director(
        &data,
        &["adduser"],
        "carol@example.org\ncarol\npw\nother\npw\nx\npw\ny\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the passwords differ (3 of 3)"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("E: no password after 3 attempts"),
        "{}",
        text(&out.stderr)
    );

    // The library sees the users: alice logs in with her password, not with another.
    let loaded = conpaas_core::config::load(&conpaas_core::config::ConfigSource::resolve_with(
        None,
        Some(data.clone()),
        None,
        Path::new("/nonexistent"),
    ))
    .unwrap();
    let store = conpaas_core::store::Store::open(&loaded.config.store).unwrap();
    let user = store
        .run_blocking(|conn| conpaas_core::store::login(conn, "alice", "s3cret"))
        .unwrap()
        .expect("alice logs in");
    assert_eq!(user.credit.0, 50);
    assert!(
        store
            .run_blocking(|conn| conpaas_core::store::login(conn, "alice", "bad"))
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .run_blocking(|conn| conpaas_core::store::login(conn, "carol", "pw"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_typo_in_the_config_names_file_line_and_key() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let cfg = dir.join("director.cfg");
    std::fs::write(
        &cfg,
        format!(
            "[conpaas]\nCONF_DIR = {d}\nCERT_DIR = {d}/certs\nVPN_BASE_NETWORK = 172.16.0.0\n\
             VPN_NETMASK = 255.240.0.0\nVPN_SERVICE_BITS = five\n[iaas]\nDRIVER = dummy\n\
             [director]\nDATABASE_URI = sqlite:///{d}/director.db\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let out = director_with_config(&cfg, &["init", "localhost"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a config error is a clean exit, not a panic"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:6: [conpaas] VPN_SERVICE_BITS:", cfg.display())),
        "{stderr}"
    );
    assert!(stderr.contains("\"five\""), "{stderr}");
    assert!(
        !dir.join("certs").exists(),
        "nothing written after a config error"
    );
}

#[test]
fn a_missing_config_file_is_named() {
    let temp = tempfile::tempdir().unwrap();
    let cfg = temp.path().join("nope.cfg");
    let out = director_with_config(&cfg, &["init", "localhost"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("nope.cfg"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_database_is_private() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    assert!(director(&data, &["init", "localhost"], "").status.success());
    assert_eq!(mode(&data.join("director.db")), 0o600);
    assert_eq!(mode(&data), 0o700);
}

#[test]
fn init_keep_ca_reissues_only_the_director_certificate() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let out = director(&data, &["init", "--keep-ca", "x.example.org"], "");
    assert_eq!(out.status.code(), Some(1), "no CA to keep yet");
    assert!(
        director(&data, &["init", "old.example.org"], "")
            .status
            .success()
    );
    let ca_before = std::fs::read(data.join("certs/ca_cert.pem")).unwrap();
    let cert_before = std::fs::read(data.join("certs/cert.pem")).unwrap();

    let out = director(&data, &["init", "--keep-ca", "new.example.org"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(data.join("certs/ca_cert.pem")).unwrap(),
        ca_before,
        "the CA was kept"
    );
    assert_ne!(
        std::fs::read(data.join("certs/cert.pem")).unwrap(),
        cert_before
    );
    assert_eq!(mode(&data.join("certs/key.pem")), 0o600);
    let cfg = std::fs::read_to_string(data.join("director.cfg")).unwrap();
    assert!(
        cfg.contains("DIRECTOR_URL = https://new.example.org:5555"),
        "{cfg}"
    );
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(data.join("certs/ca_cert.pem"))
        .arg(data.join("certs/cert.pem"))
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    let subject = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in"])
        .arg(data.join("certs/cert.pem"))
        .output()
        .unwrap();
    assert!(
        text(&subject.stdout).contains("new.example.org"),
        "{}",
        text(&subject.stdout)
    );
}

/// `director serve` on a fresh data directory: sets everything up, says where it listens and
/// how to add a user, serves real HTTPS, and stops cleanly on SIGTERM.
#[test]
fn serve_sets_up_a_fresh_data_dir_and_stops_on_sigterm() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let (child, port) = support::serve(&data, "info", Stdio::piped());

    let curl = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(data.join("certs/ca_cert.pem"))
        .arg(format!("https://localhost:{port}/available_clouds"))
        .output()
        .unwrap();
    assert!(curl.status.success(), "{}", text(&curl.stderr));
    assert_eq!(text(&curl.stdout), "[\"default\"]");

    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("adduser EMAIL USERNAME PASSWORD"),
        "{stderr}"
    );
    assert!(
        stderr.contains("route=\"/available_clouds\""),
        "the request is logged: {stderr}"
    );
    assert!(stderr.contains("stopped"), "{stderr}");
    for file in [
        "director.cfg",
        "director.db",
        "certs/ca_key.pem",
        "certs/cert.pem",
    ] {
        assert!(data.join(file).exists(), "{file} missing");
    }

    // An operator's own director.cfg without a CA is not set up behind their back.
    let cfg = temp.path().join("director.cfg");
    std::fs::write(
        &cfg,
        format!(
            "[conpaas]\nCONF_DIR = {d}\nCERT_DIR = {d}/certs\n[iaas]\nDRIVER = dummy\n\
             [director]\nDATABASE_URI = sqlite:///{d}/director.db\nDIRECTOR_URL = https://localhost:5555\n",
            d = temp.path().join("op").display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(temp.path().join("op")).unwrap();
    let out = director_with_config(&cfg, &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("director init"),
        "{}",
        text(&out.stderr)
    );
    assert!(!temp.path().join("op/certs").exists());
}

/// `init --keep-ca` and `init --force` keep the port of `DIRECTOR_URL`: a 1.2 installation on
/// 443 or 5561 must not silently move to 5555 (nor one without a port gain one).
#[test]
fn init_keeps_the_port_of_director_url() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    assert!(
        director(&data, &["init", "old.example.org"], "")
            .status
            .success()
    );
    let cfg = data.join("director.cfg");
    let set_url = |url: &str| {
        let text = std::fs::read_to_string(&cfg).unwrap();
        let text = text.replace("https://old.example.org:5555", url);
        assert!(text.contains(url), "{text}");
        std::fs::write(&cfg, text).unwrap();
    };
    set_url("https://old.example.org:5561");
    let out = director(&data, &["init", "--keep-ca", "new.example.org"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let text_cfg = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text_cfg.contains("DIRECTOR_URL = https://new.example.org:5561\n"),
        "{text_cfg}"
    );
    let out = director(&data, &["init", "--force", "third.example.org"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let text_cfg = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text_cfg.contains("DIRECTOR_URL = https://third.example.org:5561\n"),
        "{text_cfg}"
    );
    // No port (443 implied) stays without one.
    let text_cfg = text_cfg.replace(
        "https://third.example.org:5561",
        "https://third.example.org",
    );
    std::fs::write(&cfg, text_cfg).unwrap();
    let out = director(&data, &["init", "--keep-ca", "fourth.example.org"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let text_cfg = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text_cfg.contains("DIRECTOR_URL = https://fourth.example.org\n"),
        "{text_cfg}"
    );
}

/// Checks come before changes: `serve` refusing a CA key others can read has not opened, let
/// alone migrated, the database (on an adopted 1.2 database that migration is irreversible).
#[test]
fn serve_refuses_a_readable_ca_key_before_touching_the_database() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    assert!(director(&data, &["init", "localhost"], "").status.success());
    std::fs::remove_file(data.join("director.db")).unwrap();
    let key = data.join("certs/ca_key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = director(&data, &["serve", "--listen", "127.0.0.1:0"], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("chmod 600"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !data.join("director.db").exists(),
        "the database was opened before the checks"
    );
}

/// The lines of `stderr` that are not log lines.
fn report_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| !line.contains(" WARN ") && !line.contains(" INFO "))
        .collect()
}

/// Issue 11: only the first line of a multi-error configuration report started with `E:`.
#[test]
fn every_line_of_a_config_report_starts_with_e() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let cfg = dir.join("director.cfg");
    std::fs::write(
        &cfg,
        format!(
            "[conpaas]\nCONF_DIR = {d}\nCERT_DIR = {d}/certs\nMAX_CREDIT = fifty\n\
             VPN_BASE_NETWORK = 172.16.0.0\nVPN_NETMASK = 255.240.0.0\nVPN_SERVICE_BITS = five\n\
             [iaas]\nDRIVER = dummy\n[director]\nDATABASE_URI = sqlite:///{d}/director.db\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let out = director_with_config(&cfg, &["init", "localhost"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let lines = report_lines(&stderr);
    assert!(lines.len() >= 2, "two problems, two lines: {stderr}");
    for line in &lines {
        assert!(line.starts_with("E: "), "{line:?} in {stderr}");
    }
    assert!(stderr.contains("VPN_SERVICE_BITS"), "{stderr}");
}

/// Issue 11: "Is a directory (os error 21): Is a directory (os error 21)".
#[test]
fn an_unreadable_config_file_is_reported_once_as_unreadable() {
    let temp = tempfile::tempdir().unwrap();
    let cfg = temp.path().join("director.cfg");
    std::fs::create_dir(&cfg).unwrap();
    let out = director_with_config(&cfg, &["init", "localhost"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "E: {}: cannot read the configuration: Is a directory (os error 21)",
            cfg.display()
        )
    );
}

/// Issue 11: a data directory that cannot be looked into was reported as "cannot create" the
/// configuration. As root (which reads everything) the director runs as `nobody`.
#[test]
fn an_unsearchable_data_dir_is_reported_as_unreadable() {
    use std::os::unix::process::CommandExt as _;
    let temp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = temp.path().join("data");
    assert!(director(&data, &["init", "localhost"], "").status.success());
    let mut command = Command::new(env!("CARGO_BIN_EXE_director"));
    command
        .arg("--data-dir")
        .arg(&data)
        .args(["init", "--keep-ca", "localhost"])
        .env_remove("DIRECTOR_CFG")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    // Root reads every file whatever its mode: the child drops to `nobody` before it runs.
    let is_root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    if is_root {
        command.uid(65534).gid(65534);
    } else {
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let out = command.output().unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "E: {}: cannot read the configuration: Permission denied (os error 13)",
            data.join("director.cfg").display()
        )
    );
}

/// Issue 11: `init` always said "0 migration(s) applied now" (the store had migrated already).
#[test]
fn init_says_how_many_migrations_it_applied() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let out = director(&data, &["init", "localhost"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let n_applied: usize = stdout
        .split("database ready (")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    let n_migrations = std::fs::read_dir(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../conpaas-core/migrations/sqlite"),
    )
    .unwrap()
    .count();
    assert_eq!(n_applied, n_migrations, "{stdout}");
    // The VPN plan's capacity (none in the embedded default).
    assert!(
        stdout.contains("\nVPN: none: services get no VPN subnet"),
        "{stdout}"
    );
    let out = director(&data, &["init", "--force", "localhost"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("database ready (up to date: no migration to apply)"),
        "{}",
        text(&out.stdout)
    );
}

/// Issue 11: `director --help` showed the package's description.
#[test]
fn each_binary_has_its_own_about_text() {
    let package = env!("CARGO_PKG_DESCRIPTION");
    for (binary, about) in [
        (env!("CARGO_BIN_EXE_director"), "The ConPaaS director: "),
        (
            env!("CARGO_BIN_EXE_cpscheck"),
            "Checks a ConPaaS director installation",
        ),
        (env!("CARGO_BIN_EXE_cpsclient"), "The ConPaaS client: "),
    ] {
        let out = Command::new(binary).arg("--help").output().unwrap();
        assert!(out.status.success());
        let help = text(&out.stdout);
        assert!(help.starts_with(about), "{binary}: {help}");
        assert!(!help.contains(package), "{binary}: {help}");
    }
}

/// Issue 11: `--listen localhost:5557` was refused (IP literals only, not said).
#[test]
fn serve_listens_on_a_host_name() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_director"))
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--listen", "localhost:0"])
        .env_remove("DIRECTOR_CFG")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    child.wait().unwrap();
    let addr = first
        .trim()
        .strip_prefix("listening on https://")
        .unwrap_or_else(|| panic!("{first:?}"));
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
    assert_ne!(addr.port(), 0);

    let out = director(&data, &["serve", "--listen", "nosuchhost.invalid:5555"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("E: --listen nosuchhost.invalid:5555: cannot resolve \"nosuchhost.invalid\""),
        "{}",
        text(&out.stderr)
    );
    // What was wrong, said by the argument parser before anything is done.
    for (value, says) in [
        ("5555", "no port"),
        ("localhost:http", "is not a number"),
        ("::1:5555", "an IPv6 address goes in brackets"),
    ] {
        let out = director(&data, &["serve", "--listen", value], "");
        assert_eq!(out.status.code(), Some(2), "{value}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("expected HOST:PORT"), "{value}: {stderr}");
        assert!(stderr.contains(says), "{value}: {stderr}");
    }
}

/// Issue 11: `adduser` asked for both passwords before saying the name was taken, and gave
/// up at the first mismatch.
#[test]
fn adduser_checks_the_name_first_and_asks_again() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    assert!(director(&data, &["init", "localhost"], "").status.success());
    let out = director(
        &data,
        &["adduser", "a@example.org", "alice"],
        "pw\nother\npw\npw\n",
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("the passwords differ (1 of 3)"), "{stderr}");
    assert_eq!(stderr.matches("Repeat password: ").count(), 2, "{stderr}");

    // Taken, reserved, invalid: said before any password is asked for.
    for (email, username, says) in [
        ("b@example.org", "alice", "Username \"alice\" already taken"),
        ("c@example.org", "ca", "reserved"),
        ("d@example.org", "", "username: expected 1 to 64 characters"),
        (
            "not ascii é",
            "dora",
            "email: expected 1 to 128 ASCII characters",
        ),
    ] {
        let out = director(&data, &["adduser", email, username], "");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(says), "{username}: {stderr}");
        assert!(!stderr.contains("Password:"), "{username}: {stderr}");
    }

    let loaded = conpaas_core::config::load(&conpaas_core::config::ConfigSource::resolve_with(
        None,
        Some(data.clone()),
        None,
        Path::new("/nonexistent"),
    ))
    .unwrap();
    let store = conpaas_core::store::Store::open(&loaded.config.store).unwrap();
    assert!(
        store
            .run_blocking(|conn| conpaas_core::store::login(conn, "alice", "pw"))
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store
            .run_blocking(conpaas_core::store::count_users)
            .unwrap(),
        1
    );
}

/// `director completions SHELL` and `director man` describe the binary and touch nothing.
#[test]
fn completions_and_man_page() {
    let scratch = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_director"))
            .args(args)
            .current_dir(scratch.path())
            .env_remove("DIRECTOR_CFG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let bash = run(&["completions", "bash"]);
    for word in [
        "_director()",
        "adduser",
        "backup",
        "--data-dir",
        "--listen",
        "passwd",
        "--stop-at-zero",
    ] {
        assert!(bash.contains(word), "{word}: {bash}");
    }
    // The script is bash that bash accepts.
    let script = scratch.path().join("director.bash");
    std::fs::write(&script, &bash).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(run(&["completions", "zsh"]).starts_with("#compdef director"));
    assert!(run(&["completions", "fish"]).contains("complete -c director"));

    let man = run(&["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH director 1"),
        "{man}"
    );
    assert!(man.contains(".TH director 1"), "{man}");
    for word in ["init", "adduser", "user", "serve", "backup", "completions"] {
        assert!(man.contains(word), "{word}: {man}");
    }
    std::fs::remove_file(&script).unwrap();
    assert_eq!(
        std::fs::read_dir(scratch.path()).unwrap().count(),
        0,
        "no data directory or file was created"
    );

    // --dir: every page the main page refers to (`director-init(1)`...) exists, and man reads
    // each of them.
    let pages = tempfile::tempdir().unwrap();
    run(&["man", "--dir", pages.path().to_str().unwrap()]);
    let mut referred: Vec<String> = man
        .replace("\\-", "-")
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '(' || c == ')'))
        .filter_map(|word| word.strip_suffix("(1)"))
        .filter(|name| name.starts_with("director"))
        .map(|name| format!("{name}.1"))
        .collect();
    referred.sort();
    referred.dedup();
    assert!(referred.contains(&"director-init.1".to_owned()), "{man}");
    for page in &referred {
        let path = pages.path().join(page);
        let roff = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("{page}, named by director(1): {error}"));
        assert!(roff.contains(".TH"), "{page}: {roff}");
    }
    assert!(pages.path().join("director.1").exists());
}

/// `director backup FILE` copies the database of a serving director; the copy opens and has
/// the users; an existing file is never replaced; PostgreSQL is pg_dump's job.
#[test]
fn backup_copies_the_database_of_a_serving_director() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    assert!(director(&data, &["init", "localhost"], "").status.success());
    let out = director(&data, &["adduser", "a@example.org", "alice", "s3cret"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (mut server, _port) = support::serve(&data, "warn", Stdio::null());

    let copy = temp.path().join("backup.db");
    let out = director(&data, &["backup", copy.to_str().unwrap()], "");
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    server.wait().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("copied the database"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(mode(&copy), 0o600, "the copy holds password hashes");

    // The copy restores: a director on it knows alice and her password.
    let store = conpaas_core::store::Store::open(
        &conpaas_core::store::StoreSettings::new(conpaas_core::store::DatabaseUrl::Sqlite(
            copy.clone(),
        ))
        .max_connections(1),
    )
    .unwrap();
    assert!(store.pending_migrations().unwrap().is_empty());
    let alice = store
        .run_blocking(|conn| conpaas_core::store::login(conn, "alice", "s3cret"))
        .unwrap()
        .expect("alice is in the copy");
    assert_eq!(alice.credit.0, 50);
    drop(store);

    let before = std::fs::read(&copy).unwrap();
    let out = director(&data, &["backup", copy.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("exists"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&copy).unwrap(), before, "never replaced");

    let cfg = temp.path().join("pg.cfg");
    std::fs::write(
        &cfg,
        format!(
            "[conpaas]\nCONF_DIR = {d}\nCERT_DIR = {d}/certs\n[iaas]\nDRIVER = dummy\n\
             [director]\nDATABASE_URI = postgresql://cps:secret@db.example.org/cps\n",
            d = data.display()
        ),
    )
    .unwrap();
    let out = director_with_config(
        &cfg,
        &["backup", temp.path().join("pg.dump").to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("pg_dump"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("secret"),
        "{}",
        text(&out.stderr)
    );
    assert!(!temp.path().join("pg.dump").exists());
}

/// `director audit` reads what `adduser` and a serving director wrote (the refused login's
/// queued event written at SIGTERM), as text and as JSON lines, by user and time.
#[test]
fn audit_lists_the_events_of_the_command_line_and_of_serve() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let (child, port) = support::serve(&data, "warn", Stdio::null());
    let out = director(
        &data,
        &["adduser", "a@example.org", "alice", "pw-of-alice"],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let curl = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(data.join("certs/ca_cert.pem"))
        .args([
            "-H",
            "x-request-id: cli-audit-1",
            "-d",
            "username=alice&password=wrong",
        ])
        .arg(format!("https://localhost:{port}/login"))
        .output()
        .unwrap();
    assert_eq!(text(&curl.stdout), "false", "{}", text(&curl.stderr));
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(0));

    let out = director(&data, &["audit", "--json"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let events: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for name in [
        "certificate.issued",
        "config.loaded",
        "user.created",
        "login",
    ] {
        assert!(names.contains(&name), "no {name} in {names:?}");
    }
    let login = events.iter().find(|e| e["event"] == "login").unwrap();
    assert_eq!(login["outcome"], "refused");
    // The director's own id; the client's kept apart.
    assert_eq!(login["client_request_id"], "cli-audit-1");
    assert_ne!(login["request_id"], "cli-audit-1");
    assert!(
        login["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(login["principal"], "anonymous");
    assert_eq!(login["source"], "127.0.0.1");
    let created = events
        .iter()
        .find(|e| e["event"] == "user.created")
        .unwrap();
    assert_eq!(created["principal"], "operator");
    assert_eq!(created["detail"]["credit"], 50);
    assert!(!text(&out.stdout).contains("pw-of-alice"));

    // By user (name or id): alice's account and the login tried with her name, nothing else.
    let uid = created["uid"].to_string();
    for user in ["alice", uid.as_str()] {
        let out = director(&data, &["audit", "--user", user], "");
        let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 2, "--user {user}: {lines:?}");
        assert!(
            lines[0].contains(" user.created ok operator "),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].contains(" login refused anonymous from=127.0.0.1 request=")
                && lines[1].contains(" client_request=cli-audit-1 username=alice"),
            "{}",
            lines[1]
        );
    }
    let out = director(
        &data,
        &["audit", "--since", "1h", "--limit", "1", "--json"],
        "",
    );
    assert_eq!(text(&out.stdout).lines().count(), 1);
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let out = director(&data, &["audit", "--since", &tomorrow], "");
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "");
    let out = director(&data, &["audit", "--since", "yesterday"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("expected an RFC 3339 time"),
        "{}",
        text(&out.stderr)
    );
}

/// `director serve` with a cloud nobody answers for: one warning naming the cloud at start
/// (not a reaper warning minutes later), and `/readyz` stays 200 saying `degraded`.
#[test]
fn serve_probes_each_cloud_at_start_and_says_degraded() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    assert!(director(&data, &["init", "localhost"], "").status.success());
    // A port nothing listens on: the XML-RPC endpoint of an OpenNebula that is down.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = std::fs::read_to_string(data.join("director.cfg")).unwrap();
    let cfg = cfg.replacen("[iaas]\n", "[iaas]\nOTHER_CLOUDS = nebula\n", 1)
        + &format!(
            "\n[nebula]\nDRIVER = opennebula\nAPI = xmlrpc\nXMLRPC = http://127.0.0.1:{closed}/RPC2\n\
         USER = conpaas\nPASSWORD = opennebula\nTEMPLATE_ID = 7\n"
        );
    std::fs::write(data.join("director.cfg"), cfg).unwrap();
    let log = temp.path().join("stderr.log");
    let (child, port) = support::serve(
        &data,
        "warn",
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let warning = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if let Some(line) = text
            .lines()
            .find(|line| line.contains("cloud nebula (opennebula driver) is not usable"))
        {
            break line.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no probe warning in 30 s:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        warning.contains(&format!("127.0.0.1:{closed}")),
        "{warning}"
    );
    let ready = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "--cacert"])
        .arg(data.join("certs/ca_cert.pem"))
        .arg(format!("https://localhost:{port}/readyz"))
        .output()
        .unwrap();
    assert_eq!(
        text(&ready.stdout),
        "ready; degraded: cloud nebula not usable (see the director's log)\n\n200"
    );
    support::terminate(child);
}

/// `director completions bash | head -1` (and `man`, and cpsclient's completions): the reader
/// leaving early ends the output quietly, with status 0 and no panic.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    for (binary, args) in [
        (env!("CARGO_BIN_EXE_director"), "completions bash"),
        (env!("CARGO_BIN_EXE_director"), "man"),
        (env!("CARGO_BIN_EXE_cpsclient"), "completions bash"),
    ] {
        // `head -c 1` exits at once; a sleep first makes the writer meet the closed pipe.
        let out = Command::new("bash")
            .args([
                "-c",
                &format!("set -o pipefail; '{binary}' {args} | (head -c 1 >/dev/null; sleep 0.2)"),
            ])
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("panicked"), "{binary} {args}: {stderr}");
        assert!(out.status.success(), "{binary} {args}: {stderr}");
    }
}

/// `director health` (the container's HEALTHCHECK): 0 and `ready` while the director serves,
/// checking its certificate for DIRECTOR_URL's name against the CA; 1 and one `E:` line when
/// nothing answers.
#[test]
fn health_answers_for_the_serving_director() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    assert!(director(&data, &["init", "localhost"], "").status.success());
    let (child, port) = support::serve(&data, "warn", Stdio::null());
    let connect = format!("127.0.0.1:{port}");
    let out = director(&data, &["health", "--connect", &connect], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ready\n");
    support::terminate(child);
    let out = director(&data, &["health", "--connect", &connect], "");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "E: https://localhost:{port}/readyz at {connect}: "
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// Under systemd (`Type=notify`): `serve` sends READY=1 to NOTIFY_SOCKET once it listens (and
/// STOPPING=1 on SIGTERM), so that units ordered after it start when it answers.
#[test]
fn serve_tells_systemd_when_it_listens_and_when_it_stops() {
    use std::io::BufRead as _;
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    assert!(director(&data, &["init", "localhost"], "").status.success());
    let socket_path = temp.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_director"))
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("DIRECTOR_CFG")
        .env("RUST_LOG", "warn")
        .env("NOTIFY_SOCKET", &socket_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buffer = [0u8; 4096];
    let n = socket.recv(&mut buffer).unwrap();
    let ready = String::from_utf8_lossy(&buffer[..n]).into_owned();
    // Sent after the line naming the address: the listener is up.
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let address = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    assert!(ready.lines().any(|line| line == "READY=1"), "{ready:?}");
    assert!(
        ready.contains(&format!("STATUS=listening on {address}")),
        "{ready:?}"
    );
    support::terminate(child);
    let n = socket.recv(&mut buffer).unwrap();
    assert_eq!(String::from_utf8_lossy(&buffer[..n]).trim(), "STOPPING=1");
}

/// `director user ...` as an operator runs it, beside a serving director: without SQL the
/// operator lists, shows, credits, disables (the right password then answers `false` at once,
/// no restart), enables, sets a password (prompted or from stdin) and deletes, each change in
/// the audit log under the operator's name; refusals say why and change nothing.
#[test]
fn user_commands_manage_accounts_without_sql() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    assert!(director(&data, &["init", "localhost"], "").status.success());
    for (email, name) in [("a@example.org", "alice"), ("b@example.org", "bob")] {
        let out = director(&data, &["adduser", email, name, &format!("pw-{name}")], "");
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    // As the operator `root` would run it through sudo.
    let user = |args: &[&str], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_director"))
            .arg("--data-dir")
            .arg(&data)
            .arg("user")
            .args(args)
            .env_remove("DIRECTOR_CFG")
            .env("RUST_LOG", "warn")
            .env("SUDO_USER", "oper8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let ok = |args: &[&str], stdin: &str| {
        let out = user(args, stdin);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let refused = |args: &[&str], stdin: &str| {
        let out = user(args, stdin);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stdout)
        );
        text(&out.stderr)
    };

    let table = ok(&["list"], "");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("UID  USERNAME  E-MAIL"), "{table}");
    assert!(
        lines[1].starts_with("1    alice     a@example.org  50      1     0         "),
        "{table}"
    );
    assert!(lines[1].ends_with("  -"), "{table}");
    let listed: Vec<serde_json::Value> = ok(&["list", "--json"], "")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["username"], "bob");
    assert_eq!(
        (
            &listed[1]["credit"],
            &listed[1]["applications"],
            &listed[1]["services"],
            &listed[1]["disabled"]
        ),
        (
            &serde_json::json!(50),
            &serde_json::json!(1),
            &serde_json::json!(0),
            &serde_json::Value::Null
        )
    );

    // Credit: add, refuse below zero, stop at zero, set; bad changes are usage errors.
    assert_eq!(
        ok(&["credit", "alice", "+25"], ""),
        "alice (uid 1): credit 50 -> 75 (+25)\n"
    );
    let stderr = refused(&["credit", "1", "-100"], "");
    assert_eq!(
        stderr,
        "E: alice has 75 credit: -100 would take it below 0; nothing changed (--stop-at-zero \
         takes it to 0)\n"
    );
    assert_eq!(
        ok(&["credit", "alice", "-100", "--stop-at-zero"], ""),
        "alice (uid 1): credit 75 -> 0 (-100, stopped at 0)\n"
    );
    assert_eq!(
        ok(&["credit", "uid:1", "=12"], ""),
        "alice (uid 1): credit 0 -> 12 (=12)\n"
    );
    for bad in ["12", "x5", "=-1", "+1.5"] {
        let out = user(&["credit", "alice", bad], "");
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            text(&out.stderr).contains("expected +N (add), -N (take away) or =N (set)"),
            "{bad}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(
        refused(&["credit", "nobody", "+1"], ""),
        "E: no user \"nobody\"; nothing changed\n"
    );

    // Disabled while serving: her right password gets `false` at once; enabled, her login.
    let (server, port) = support::serve(&data, "warn", Stdio::null());
    let login = |name: &str, password: &str| {
        let out = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(data.join("certs/ca_cert.pem"))
            .args(["-d", &format!("username={name}&password={password}")])
            .arg(format!("https://localhost:{port}/login"))
            .output()
            .unwrap();
        text(&out.stdout)
    };
    let account = |answer: String| -> serde_json::Value {
        serde_json::from_str(&answer).unwrap_or_else(|_| panic!("{answer}"))
    };
    assert_eq!(account(login("alice", "pw-alice"))["username"], "alice");
    assert!(ok(&["disable", "alice"], "").starts_with("alice (uid 1) disabled: "));
    assert_eq!(login("alice", "pw-alice"), "false");
    assert!(
        ok(&["disable", "alice"], "").contains("was already disabled (since 20"),
        "nothing changed"
    );
    let shown = ok(&["show", "alice"], "");
    assert!(shown.contains("\ncredit        12\n"), "{shown}");
    assert!(shown.contains("\ndisabled      since 20"), "{shown}");
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&["show", "alice", "--json"], "")).unwrap();
    assert!(
        shown["disabled"].as_str().unwrap().ends_with('Z'),
        "{shown}"
    );
    assert_eq!(ok(&["enable", "alice"], ""), "alice (uid 1) enabled\n");
    assert_eq!(account(login("alice", "pw-alice"))["credit"], 12);

    // Passwords: from standard input, or asked twice (here piped, as lines).
    assert_eq!(
        ok(&["passwd", "alice", "--password-stdin"], "n3w-secret\n"),
        "password of alice (uid 1) changed\n"
    );
    assert_eq!(login("alice", "pw-alice"), "false");
    assert_eq!(account(login("alice", "n3w-secret"))["username"], "alice");
    assert_eq!(
        refused(&["passwd", "alice", "--password-stdin"], "\n"),
        "E: the password is empty; nothing changed\n"
    );
    ok(&["passwd", "bob"], "one\ntwo\nb0b-secret\nb0b-secret\n");
    assert_eq!(account(login("bob", "b0b-secret"))["username"], "bob");
    support::terminate(server);

    // Delete: asked first; refused with the services named while she has one.
    assert_eq!(
        refused(&["delete", "bob"], "n\n"),
        "Delete user bob (uid 2, 1 application(s), 50 credit)? [y/N] not deleted\n"
    );
    let loaded = conpaas_core::config::load(&conpaas_core::config::ConfigSource::resolve_with(
        None,
        Some(data.clone()),
        None,
        Path::new("/nonexistent"),
    ))
    .unwrap();
    let store = conpaas_core::store::Store::open(&loaded.config.store).unwrap();
    let alice = conpaas_core::model::UserId(1);
    let service = store
        .run_blocking(|conn| {
            let application = conpaas_core::store::default_application(conn, alice)?.unwrap();
            conpaas_core::store::insert_service(
                conn,
                &conpaas_core::store::NewService::new(
                    alice,
                    application.aid,
                    conpaas_core::model::ServiceType::Php,
                ),
                |_: &[String]| Ok::<_, conpaas_core::store::Error>(None),
            )
        })
        .unwrap();
    let stderr = refused(&["delete", "alice", "--yes"], "");
    assert!(
        stderr.starts_with(&format!(
            "E: alice still has 1 service(s) (sid {}), each a VM the accounting keeps until it \
             is gone; nothing changed\n",
            service.sid
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("`director user credit alice =0`"),
        "{stderr}"
    );
    assert_eq!(
        ok(&["delete", "bob"], "y\n"),
        "deleted bob (uid 2) and 1 application(s); 50 credit went with the account\n"
    );
    assert_eq!(ok(&["list"], "").lines().count(), 2, "alice is still there");

    // The audit log: each change once, refusals too, by the operator who ran sudo.
    let out = director(&data, &["audit", "--json"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("n3w-secret"));
    assert!(!text(&out.stdout).contains("b0b-secret"));
    let events: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .filter(|event: &serde_json::Value| {
            event["principal"]
                .as_str()
                .is_some_and(|p| p.starts_with("operator:"))
        })
        .collect();
    let seen: Vec<String> = events
        .iter()
        .map(|e| format!("{} {} {}", e["event"], e["outcome"], e["username"]).replace('"', ""))
        .collect();
    assert_eq!(
        seen,
        [
            "credit.adjusted ok alice",
            "credit.adjusted refused alice",
            "credit.adjusted ok alice",
            "credit.adjusted ok alice",
            "user.disabled ok alice",
            "user.enabled ok alice",
            "user.password_changed ok alice",
            "user.password_changed ok bob",
            "user.deleted refused alice",
            "user.deleted ok bob",
        ]
    );
    let host = hostname::get().unwrap().into_string().unwrap();
    assert!(
        events
            .iter()
            .all(|e| e["principal"] == format!("operator:oper8@{host}")),
        "{events:?}"
    );
}
