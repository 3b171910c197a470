//! The `cpscheck` binary against installations made by `director init` and then broken on
//! purpose, one way per test: each asserts the exact line an operator reads and the exit code.

// Test helpers panic on setup failures by design: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// What fixes of the director's own certificate say: a new one under the same CA.
const REISSUE_CONSEQUENCE: &str =
    "(a new director certificate under the same CA: issued certificates keep working)";

fn cpscheck_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cpscheck"))
        .args(args)
        .current_dir(cwd)
        .env_remove("DIRECTOR_CFG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `cpscheck --data-dir DATA --no-network ARGS`.
fn cpscheck(data: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--data-dir", data.to_str().unwrap(), "--no-network"];
    all.extend_from_slice(args);
    cpscheck_in(data.parent().unwrap(), &all)
}

fn director(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_director"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("DIRECTOR_CFG")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn lines(out: &Output) -> Vec<String> {
    text(&out.stdout).lines().map(str::to_owned).collect()
}

/// Asserts `line` is one of the output's lines, showing everything otherwise.
fn assert_line(out: &Output, line: &str) {
    let lines = lines(out);
    assert!(
        lines.iter().any(|l| l == line),
        "expected the line\n{line}\nin\n{}\nstderr: {}",
        lines.join("\n"),
        text(&out.stderr)
    );
}

fn assert_no_line_starting(out: &Output, prefixes: &[&str]) {
    for line in lines(out) {
        assert!(
            !prefixes.iter().any(|prefix| line.starts_with(prefix)),
            "unexpected line {line}\nin\n{}",
            text(&out.stdout)
        );
    }
}

/// A tar.gz with the ConPaaS/ tree the VMs unpack.
fn write_tarball(path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for dir in [
        "ConPaaS/",
        "ConPaaS/sbin/",
        "ConPaaS/sbin/manager/",
        "ConPaaS/src/",
        "ConPaaS/src/conpaas/",
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        builder
            .append_data(&mut header, dir, std::io::empty())
            .unwrap();
    }
    let script = b"#!/bin/sh\necho manager\n";
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o755);
    header.set_size(script.len() as u64);
    builder
        .append_data(
            &mut header,
            "ConPaaS/sbin/manager/default-cpsmanager",
            &script[..],
        )
        .unwrap();
    builder.into_inner().unwrap().finish().unwrap();
}

/// A healthy embedded-default installation for `localhost`: `(tempdir, data dir)`.
fn healthy() -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let out = director(&data, &["init", "localhost"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = director(&data, &["adduser", "op@example.org", "op", "pw"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    write_tarball(&data.join("ConPaaS.tar.gz"));
    (temp, data)
}

fn certs(data: &Path) -> PathBuf {
    data.join("certs")
}

fn edit_config(data: &Path, from: &str, to: &str) {
    let path = data.join("director.cfg");
    let cfg = std::fs::read_to_string(&path).unwrap();
    assert!(cfg.contains(from), "{cfg}");
    std::fs::write(&path, cfg.replace(from, to)).unwrap();
}

#[test]
fn a_healthy_default_installation_passes() {
    let (_temp, data) = healthy();
    let out = cpscheck(&data, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_no_line_starting(&out, &["E:", "W:"]);
    // The original cpscheck.py's line, word for word.
    assert_line(
        &out,
        &format!(
            "OK: The hostname part of DIRECTOR_URL (localhost) matches the cname found in {}/cert.pem (localhost)",
            certs(&data).display()
        ),
    );
    assert_line(
        &out,
        &format!(
            "OK: the subjectAltName of {}/cert.pem includes localhost (DNS:localhost, IP:127.0.0.1, IP:::1)",
            certs(&data).display()
        ),
    );
    assert_line(
        &out,
        &format!(
            "OK: {}/ConPaaS.tar.gz is a gzip tar of 6 entries with the ConPaaS/ tree the VMs unpack",
            data.display()
        ),
    );
    assert_line(
        &out,
        "SKIP: no TLS handshake with the director at https://localhost:5555 was tried (--no-network)",
    );
    for line in lines(&out) {
        assert!(
            line.starts_with("OK: ") || line.starts_with("SKIP: "),
            "{line}"
        );
    }
}

#[test]
fn json_gives_the_same_results() {
    let (_temp, data) = healthy();
    std::fs::remove_file(data.join("ConPaaS.tar.gz")).unwrap();
    let plain = cpscheck(&data, &[]);
    let json = cpscheck(&data, &["--json"]);
    assert_eq!(plain.status.code(), json.status.code());
    let results: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let results = results.as_array().expect("a JSON array");
    let plain_lines = lines(&plain);
    assert_eq!(results.len(), plain_lines.len());
    for (result, line) in results.iter().zip(&plain_lines) {
        let prefix = match result["status"].as_str().unwrap() {
            "ok" => "OK",
            "warning" => "W",
            "error" => "E",
            "skipped" => "SKIP",
            other => panic!("unknown status {other}"),
        };
        let mut expected = format!("{prefix}: {}", result["found"].as_str().unwrap());
        if let Some(fix) = result["fix"].as_str() {
            expected.push_str(&format!("; fix: {fix}"));
        }
        // The clock line quotes the time of its run: the two runs may straddle a second.
        if result["id"] != "clock" {
            assert_eq!(&expected, line);
        }
        assert!(result["id"].is_string() && result["what"].is_string());
    }
    assert!(
        results
            .iter()
            .any(|r| r["id"] == "files.tarball" && r["status"] == "warning")
    );
}

#[test]
fn a_hostname_other_than_the_certificates_is_the_original_error() {
    let (_temp, data) = healthy();
    edit_config(
        &data,
        "DIRECTOR_URL = https://localhost:5555",
        "DIRECTOR_URL = https://director.example.org:5555",
    );
    let out = cpscheck(&data, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let certs = certs(&data);
    assert_line(
        &out,
        &format!(
            "E: The hostname part of DIRECTOR_URL (director.example.org) does not match the cname found in {c}/cert.pem (localhost); \
             fix: run `director init --keep-ca director.example.org` for a certificate naming director.example.org under the \
             same CA (issued certificates keep working), or set DIRECTOR_URL in {d}/director.cfg to the host the certificate \
             names",
            c = certs.display(),
            d = data.display()
        ),
    );
    assert_line(
        &out,
        &format!(
            "E: the subjectAltName of {}/cert.pem does not include director.example.org (it lists DNS:localhost, IP:127.0.0.1, \
             IP:::1), so TLS clients that check it (rustls, browsers, current curl) reject the director; fix: run `director init \
             --keep-ca director.example.org` {REISSUE_CONSEQUENCE}",
            certs.display()
        ),
    );
}

#[test]
fn a_key_others_can_read_is_an_error() {
    let (_temp, data) = healthy();
    let key = certs(&data).join("key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = cpscheck(&data, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_line(
        &out,
        &format!(
            "E: {k} is readable by group or others (mode 0644), expected 0600; fix: chmod 600 {k}",
            k = key.display()
        ),
    );
}

/// Writes `certs/cert.pem`: the director's subject and key, signed by the installation's CA,
/// valid from `not_before` to `not_after`.
fn write_director_cert(
    data: &Path,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) {
    let certs = certs(data);
    let read = |name: &str| std::fs::read_to_string(certs.join(name)).unwrap();
    let ca_key = rcgen::KeyPair::from_pem(&read("ca_key.pem")).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&read("ca_cert.pem"), ca_key).unwrap();
    let key = rcgen::KeyPair::from_pem(&read("key.pem")).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CustomDnType(vec![2, 5, 4, 72]), "frontend");
    dn.push(rcgen::DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(certs.join("cert.pem"), cert.pem()).unwrap();
}

#[test]
fn an_expired_certificate_is_an_error() {
    let (_temp, data) = healthy();
    write_director_cert(
        &data,
        rcgen::date_time_ymd(2020, 1, 1),
        rcgen::date_time_ymd(2021, 1, 1),
    );
    let out = cpscheck(&data, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_line(
        &out,
        &format!(
            "E: {}/cert.pem expired on 2021-01-01 00:00:00 UTC; fix: run `director init --keep-ca localhost` {REISSUE_CONSEQUENCE}",
            certs(&data).display()
        ),
    );
    // Only the validity is wrong: the chain, key and names still check out.
    assert_line(
        &out,
        &format!(
            "OK: {c}/cert.pem is signed by the CA of {c}/ca_cert.pem",
            c = certs(&data).display()
        ),
    );
    let errors: Vec<String> = lines(&out)
        .into_iter()
        .filter(|line| line.starts_with("E:"))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
}

#[test]
fn a_certificate_expiring_soon_is_a_warning() {
    let (_temp, data) = healthy();
    let now = time::OffsetDateTime::now_utc();
    write_director_cert(
        &data,
        now - time::Duration::days(1),
        now + time::Duration::days(10) + time::Duration::hours(1),
    );
    let out = cpscheck(&data, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let prefix = format!("W: {}/cert.pem expires on ", certs(&data).display());
    let line = lines(&out)
        .into_iter()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no expiry warning in\n{}", text(&out.stdout)));
    assert!(
        line.ends_with(&format!(
            ", in 10 days; fix: before then, run `director init --keep-ca localhost` {REISSUE_CONSEQUENCE}"
        )),
        "{line}"
    );
}

#[test]
fn a_certificate_from_another_ca_is_an_error() {
    let (_temp, data) = healthy();
    // Another installation's CA signs a certificate with this director's key and subject.
    let other = tempfile::tempdir().unwrap();
    let other_data = other.path().join("data");
    assert!(
        director(&other_data, &["init", "localhost"])
            .status
            .success()
    );
    std::fs::copy(
        certs(&data).join("key.pem"),
        certs(&other_data).join("key.pem"),
    )
    .unwrap();
    write_director_cert(
        &other_data,
        rcgen::date_time_ymd(2020, 1, 1),
        rcgen::date_time_ymd(2099, 1, 1),
    );
    std::fs::copy(
        certs(&other_data).join("cert.pem"),
        certs(&data).join("cert.pem"),
    )
    .unwrap();
    let out = cpscheck(&data, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let prefix = format!(
        "E: {}/cert.pem has a signature the CA's key does not verify (",
        certs(&data).display()
    );
    assert!(
        lines(&out).iter().any(|line| line.starts_with(&prefix)
            && line.ends_with(&format!(
                "): it was not issued by the CA of {}/ca_cert.pem; fix: restore CERT_DIR from one backup, or run \
                 `director init --keep-ca localhost` {REISSUE_CONSEQUENCE}",
                certs(&data).display()
            ))),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_key_of_another_certificate_is_an_error() {
    let (_temp, data) = healthy();
    let key = rcgen::KeyPair::generate().unwrap();
    let key_path = certs(&data).join("key.pem");
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let out = cpscheck(&data, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_line(
        &out,
        &format!(
            "E: {k} does not hold the private key of {c}/cert.pem; fix: restore the director's key and certificate together \
             from a backup, or run `director init --keep-ca localhost` {REISSUE_CONSEQUENCE}",
            k = key_path.display(),
            c = certs(&data).display()
        ),
    );
}

#[test]
fn a_missing_tarball_is_an_error_with_a_real_cloud() {
    let (_temp, data) = healthy();
    std::fs::remove_file(data.join("ConPaaS.tar.gz")).unwrap();
    let out = cpscheck(&data, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a warning on the dummy cloud: {}",
        text(&out.stdout)
    );
    let tarball = data.join("ConPaaS.tar.gz");
    let fix = format!(
        "fix: put the ConPaaS services tree there: `tar -czf {} ConPaaS` from the directory holding the unpacked ConPaaS \
         1.2 release's ConPaaS/ tree",
        tarball.display()
    );
    assert_line(
        &out,
        &format!(
            "W: {} does not exist: harmless on the dummy cloud alone, but manager VMs on a real cloud would fail to download \
             it; {fix}",
            tarball.display()
        ),
    );

    edit_config(
        &data,
        "DRIVER = dummy",
        "DRIVER = ec2\nUSER = AKIAEXAMPLE\nPASSWORD = s3cr3t\nIMAGE_ID = ami-bb780cd2\nSIZE_ID = t1.micro\n\
         SECURITY_GROUP_NAME = conpaas\nKEY_NAME = conpaas\nREGION = ec2.us-east-1.amazonaws.com",
    );
    let out = cpscheck(&data, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_line(
        &out,
        &format!(
            "E: {} does not exist: every manager VM fails to download it and never starts its manager; {fix}",
            tarball.display()
        ),
    );
    // The real cloud's part of the script is the director's own when CONF_DIR has none, and
    // the cloud is not called offline.
    assert_line(
        &out,
        &format!(
            "OK: {d}/scripts/cloud/ec2 is absent: the managers of the ec2 cloud(s) iaas get the director's own \
             cloud part (IMDSv2)",
            d = data.display()
        ),
    );
    assert_line(
        &out,
        "SKIP: cloud iaas (ec2 driver, https://ec2.us-east-1.amazonaws.com) was not asked whether it accepts the \
         configured credentials (--no-network)",
    );
}

#[test]
fn a_tarball_without_the_conpaas_tree_is_reported() {
    let (_temp, data) = healthy();
    let tarball = data.join("ConPaaS.tar.gz");
    std::fs::write(&tarball, b"this is not gzip").unwrap();
    let out = cpscheck(&data, &[]);
    let prefix = format!("W: {} is not a readable gzip tar (", tarball.display());
    assert!(
        lines(&out).iter().any(|line| line.starts_with(&prefix)),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_read_only_database_is_an_error() {
    let (_temp, data) = healthy();
    let db = data.join("director.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o400)).unwrap();
    let out = cpscheck(&data, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_line(
        &out,
        &format!(
            "E: {db} is read-only (mode 0400): the director cannot record anything; fix: chmod 600 {db} and make the \
             director's user its owner",
            db = db.display()
        ),
    );
}

#[test]
fn a_config_typo_gives_the_directors_messages() {
    let (_temp, data) = healthy();
    edit_config(&data, "DATABASE_URI =", "DATABASE_URL =");
    let out = cpscheck(&data, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let cfg = data.join("director.cfg");
    let errors: Vec<String> = lines(&out)
        .into_iter()
        .filter(|line| line.starts_with("E: "))
        .collect();
    // As for the director, an invalid file gives its problems only (warnings need a valid one).
    assert_eq!(lines(&out), errors);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!("E: {}:", cfg.display()))
            && errors[0].contains("[director] DATABASE_URI: expected "),
        "{errors:?}"
    );
    // The director refuses to start with the same words.
    let director_out = director(&data, &["adduser", "a@example.org", "alice", "pw"]);
    assert_eq!(director_out.status.code(), Some(1));
    assert!(
        text(&director_out.stderr).contains(&errors[0]["E: ".len()..]),
        "{}",
        text(&director_out.stderr)
    );
}

#[test]
fn a_missing_template_is_an_error() {
    let (_temp, data) = healthy();
    let template = data.join("scripts/manager/manager-setup");
    std::fs::remove_file(&template).unwrap();
    let out = cpscheck(&data, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_line(
        &out,
        &format!(
            "E: the manager template {} is missing or unreadable: every service start fails with \"cannot read manager \
             template\"; fix: copy the ConPaaS 1.2 release's scripts/ and config/ trees into CONF_DIR {} (a \
             dummy-cloud-only `director init` installs minimal ones)",
            template.display(),
            data.display()
        ),
    );
}

#[test]
fn no_configuration_exits_2_saying_where_it_looked() {
    let temp = tempfile::tempdir().unwrap();
    let missing = temp.path().join("data");
    let out = cpscheck_in(
        temp.path(),
        &["--data-dir", missing.to_str().unwrap(), "--no-network"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        format!(
            "E: no configuration to check: --data-dir {d}: {d} does not exist (cpscheck creates nothing; `director \
             --data-dir {d} init HOSTNAME` sets a data directory up)\n",
            d = missing.display()
        )
    );
    assert!(
        !missing.exists(),
        "cpscheck must not create the data directory"
    );
    assert!(out.stdout.is_empty());

    let cfg = temp.path().join("nope.cfg");
    let out = cpscheck_in(temp.path(), &["--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        format!(
            "E: no configuration to check: --config {}: no such file\n",
            cfg.display()
        )
    );

    let out = Command::new(env!("CARGO_BIN_EXE_cpscheck"))
        .current_dir(temp.path())
        .env("DIRECTOR_CFG", &cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        format!(
            "E: no configuration to check: DIRECTOR_CFG={}: no such file\n",
            cfg.display()
        )
    );

    // Nothing given at all: the whole resolution order is named.
    if !Path::new("/etc/cpsdirector/director.cfg").exists() {
        let out = cpscheck_in(temp.path(), &[]);
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(
            text(&out.stderr),
            "E: no configuration to check: looked at --config (not given), --data-dir (not given), $DIRECTOR_CFG (not \
             set), /etc/cpsdirector/director.cfg (no such file) and the default data directory: ./conpaas-data does not \
             exist; name the configuration with --config FILE or --data-dir DIR, or set one up with `director init \
             HOSTNAME`\n"
        );
        assert!(!temp.path().join("conpaas-data").exists());
    }
}

#[test]
fn config_and_data_dir_conflict() {
    let temp = tempfile::tempdir().unwrap();
    let out = cpscheck_in(
        temp.path(),
        &["--config", "a.cfg", "--data-dir", "d", "--no-network"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot be used with"),
        "{}",
        text(&out.stderr)
    );
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `director serve` on `port`, stopped on drop.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data: &Path, port: u16) -> Serving {
    let mut child = Command::new(env!("CARGO_BIN_EXE_director"))
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("DIRECTOR_CFG")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("listening on "), "{first}");
    Serving(child)
}

#[test]
fn the_running_director_answers_with_its_certificate() {
    let (_temp, data) = healthy();
    let port = free_port();
    edit_config(
        &data,
        "DIRECTOR_URL = https://localhost:5555",
        &format!("DIRECTOR_URL = https://localhost:{port}"),
    );
    let check = |data: &Path| {
        cpscheck_in(
            data.parent().unwrap(),
            &["--data-dir", data.to_str().unwrap()],
        )
    };

    // Nothing listens yet: a warning, not an error.
    let out = check(&data);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        lines(&out).iter().any(|line| line.starts_with(&format!(
            "W: nothing answers at localhost:{port} ("
        )) && line.ends_with(&format!(
            "): the director is not running there; fix: start it (`director serve`) or, if it runs on another port or \
             host, correct DIRECTOR_URL in {}/director.cfg",
            data.display()
        ))),
        "{}",
        text(&out.stdout)
    );

    let _serving = serve(&data, port);
    let out = check(&data);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let prefix =
        format!("OK: the director at https://localhost:{port} completed a TLS handshake (");
    assert!(
        lines(&out).iter().any(|line| line.starts_with(&prefix)
            && line.ends_with(&format!(
                ") serving {c}/cert.pem, trusted through {c}/ca_cert.pem for localhost",
                c = certs(&data).display()
            ))),
        "{}",
        text(&out.stdout)
    );

    // A new certificate on disk that the running director does not serve yet.
    let now = time::OffsetDateTime::now_utc();
    write_director_cert(
        &data,
        now - time::Duration::days(1),
        now + time::Duration::days(365),
    );
    let out = check(&data);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let prefix = format!(
        "E: the server at localhost:{port} is trusted by {}/ca_cert.pem but serves another certificate (serial ",
        certs(&data).display()
    );
    assert!(
        lines(&out).iter().any(|line| line.starts_with(&prefix)),
        "{}",
        text(&out.stdout)
    );
}

/// moto's EC2 server (started as tests/it/ec2.rs does, from `CONPAAS_TEST_PYTHON`), killed on
/// drop; it also exits when its standard input closes.
struct Moto {
    port: u16,
    child: Child,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts moto; with `check_credentials`, every call from the first on must carry credentials
/// moto's IAM knows (`INITIAL_NO_AUTH_ACTION_COUNT=0`), so any configured key is refused.
fn moto(check_credentials: bool) -> Moto {
    let python = std::env::var_os("CONPAAS_TEST_PYTHON").unwrap_or_else(|| {
        panic!(
            "CONPAAS_TEST_PYTHON is not set: the cloud credential checks need moto; run \
             scripts/test.sh, which installs tests/support/requirements.txt into target/pyenv"
        )
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/support/moto_ec2.py");
    let port = free_port();
    let mut command = Command::new(python);
    command
        .arg(script)
        .args(["serve", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if check_credentials {
        command.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
    } else {
        command.env_remove("INITIAL_NO_AUTH_ACTION_COUNT");
    }
    let mut moto = Moto {
        port,
        child: command.spawn().unwrap(),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            moto.child.try_wait().unwrap().is_none(),
            "moto exited before answering"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "moto did not answer in 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    moto
}

/// Creates the key pair `conpaas` and a VPC with a subnet and a security group in `region` of
/// the moto server on `port` (tests/support/moto_ec2.py, boto3); answers `{vpc, subnet, group}`.
fn moto_setup(port: u16, region: &str) -> serde_json::Value {
    let python = std::env::var_os("CONPAAS_TEST_PYTHON").unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/support/moto_ec2.py");
    let out = Command::new(python)
        .arg(script)
        .args(["setup", &port.to_string(), region])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Makes `[iaas]` an EC2 cloud at the moto server on `port`, and DIRECTOR_URL a port nobody uses.
fn use_moto(data: &Path, port: u16) {
    edit_config(
        data,
        "DRIVER = dummy",
        &format!(
            "DRIVER = ec2\nUSER = AKIAEXAMPLE\nPASSWORD = wrong-secret\nIMAGE_ID = ami-1e749f67\n\
             SIZE_ID = t1.micro\nSECURITY_GROUP_NAME = conpaas\nKEY_NAME = conpaas\n\
             REGION = ec2.us-east-1.amazonaws.com\nENDPOINT = http://127.0.0.1:{port}"
        ),
    );
    edit_config(
        data,
        "DIRECTOR_URL = https://localhost:5555",
        &format!("DIRECTOR_URL = https://localhost:{}", free_port()),
    );
}

#[test]
fn cloud_credentials_are_tried_and_its_clock_compared() {
    let refusing = moto(true);
    let accepting = moto(false);
    for (server, accepted) in [(&refusing, false), (&accepting, true)] {
        let (_temp, data) = healthy();
        use_moto(&data, server.port);
        if accepted {
            // The probe also asks for the security group and key pair: made in a VPC of
            // moto's, with boto3, and named by id.
            let ids = moto_setup(server.port, "us-east-1");
            edit_config(
                &data,
                "SECURITY_GROUP_NAME = conpaas",
                &format!(
                    "SUBNET_ID = {}\nSECURITY_GROUP_IDS = {}",
                    ids["subnet"].as_str().unwrap(),
                    ids["group"].as_str().unwrap()
                ),
            );
        }
        let out = cpscheck_in(
            data.parent().unwrap(),
            &["--data-dir", data.to_str().unwrap()],
        );
        let cloud = format!("cloud iaas (ec2 driver, http://127.0.0.1:{})", server.port);
        if accepted {
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
            assert_line(
                &out,
                &format!(
                    "OK: {cloud} answered an authenticated call with the configured credentials"
                ),
            );
        } else {
            assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
            assert_line(
                &out,
                &format!(
                    "E: {cloud} refused an authenticated call: AuthFailure: AWS was not able to validate the provided \
                     access credentials; fix: check USER and PASSWORD (and the other keys) in [iaas] of {}/director.cfg",
                    data.display()
                ),
            );
        }
        // moto's Date header is this machine's clock (to its second, and its own latency).
        let clock = lines(&out)
            .into_iter()
            .find(|line| line.starts_with("OK: the clock ("))
            .unwrap_or_else(|| panic!("no clock line in\n{}", text(&out.stdout)));
        assert!(
            clock.contains(&format!(
                " the Date header of cloud iaas (http://127.0.0.1:{}: ",
                server.port
            )),
            "{clock}"
        );
    }
}

#[test]
fn a_sha1_certificate_as_1_2_made_is_a_warning() {
    let (_temp, data) = healthy();
    let certs = certs(&data);
    // OpenSSL, not rcgen: rcgen cannot sign with SHA-1, which is the point.
    let csr = certs.join("director.csr");
    let ext = certs.join("san.ext");
    std::fs::write(&ext, "subjectAltName=DNS:localhost\n").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&certs)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    run(&[
        "req",
        "-new",
        "-key",
        "key.pem",
        "-subj",
        "/2.5.4.72=frontend/CN=localhost",
        "-out",
        csr.to_str().unwrap(),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        csr.to_str().unwrap(),
        "-CA",
        "ca_cert.pem",
        "-CAkey",
        "ca_key.pem",
        "-sha1",
        "-days",
        "365",
        "-extfile",
        ext.to_str().unwrap(),
        "-out",
        "cert.pem",
    ]);
    let out = cpscheck(&data, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_line(
        &out,
        &format!(
            "W: {}/cert.pem is a legacy certificate as ConPaaS 1.2 made them (X.509 v3, sha1WithRSAEncryption), which \
             rustls and other current TLS stacks refuse; fix: run `director init --keep-ca localhost` {REISSUE_CONSEQUENCE}",
            certs.display()
        ),
    );
}

#[test]
fn a_certificate_not_yet_valid_is_an_error() {
    let (_temp, data) = healthy();
    write_director_cert(
        &data,
        rcgen::date_time_ymd(2090, 1, 1),
        rcgen::date_time_ymd(2091, 1, 1),
    );
    let out = cpscheck(&data, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let prefix = format!(
        "E: {}/cert.pem is not valid before 2090-01-01 00:00:00 UTC and the clock says ",
        certs(&data).display()
    );
    let suffix = format!(
        ": the clock is behind, or the certificate was made on a machine whose clock was ahead; fix: set the clock \
         right (NTP), then run cpscheck again; if it persists, run `director init --keep-ca localhost` {REISSUE_CONSEQUENCE}"
    );
    assert!(
        lines(&out)
            .iter()
            .any(|line| line.starts_with(&prefix) && line.ends_with(&suffix)),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn accounts_without_credit_and_an_empty_database_are_warned_about() {
    let (_temp, data) = healthy();
    let out = cpscheck(&data, &[]);
    assert_line(&out, "OK: 1 user(s), each with credit left");
    assert_line(&out, "OK: no service is waiting for its VM");
    let out = director(
        &data,
        &[
            "adduser",
            "--credit",
            "0",
            "broke@example.org",
            "broke",
            "pw",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cpscheck(&data, &[]);
    assert_eq!(out.status.code(), Some(0), "a warning is not an error");
    assert_line(
        &out,
        "W: 1 of 2 user(s) have no credit left (broke): their managers terminate their services \
         at the next hourly charge; fix: raise their credit in the database's user table if they \
         should keep running",
    );
}

#[test]
fn a_vm_without_its_service_row_is_reported() {
    let (_temp, data) = healthy();
    let out = cpscheck(&data, &[]);
    assert_line(
        &out,
        "OK: each of the 0 VM(s) of this installation has its service row",
    );
    // A dummy VM of this installation (its client-token prefix comes from the CA) whose row
    // is gone, and one of another installation sharing the cloud.
    let ca = std::fs::read_to_string(certs(&data).join("ca_cert.pem")).unwrap();
    let der = pem_der(&ca);
    let tag = conpaas_core::ca::installation_tag(&der);
    let vms = data.join("dummy-cloud");
    std::fs::create_dir_all(&vms).unwrap();
    std::fs::write(vms.join(format!("cps-{tag}-s42.sh")), "#!/bin/sh\n").unwrap();
    std::fs::write(vms.join("cps-00000000-s42.sh"), "#!/bin/sh\n").unwrap();
    let out = cpscheck(&data, &[]);
    // A warning: the installation works, it only pays for VMs nobody uses.
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let warning = lines(&out)
        .into_iter()
        .find(|line| line.starts_with("W: 1 VM(s) of this installation have no service row"))
        .unwrap_or_else(|| panic!("no reaper warning: {}", text(&out.stdout)));
    assert!(
        warning.contains(&format!("iaas cps-{tag}-s42")),
        "{warning}"
    );
    assert!(!warning.contains("cps-00000000"), "{warning}");
}

/// The DER of the first PEM block of `pem`.
fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .skip_while(|line| !line.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}
