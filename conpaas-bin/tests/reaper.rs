//! The reaper never acts on a database that cannot vouch for the cloud: the real `director
//! serve` on a restored older backup, an empty database beside the CA (a lost file), a
//! mistyped `DATABASE_URI`, and the `REAPER = report | off` modes with `director reaper
//! --dry-run` and `--confirm-restore` (docs/operations.md, "Backups" and "The reaper").

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::vm_files;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `director --data-dir DATA ARGS`, waited for.
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

/// An installation: `init`, a user `alice`, maintenance every second with a 1 s grace.
struct Installation {
    temp: tempfile::TempDir,
    data: PathBuf,
    config: String,
}

impl Installation {
    fn new() -> Installation {
        let temp = tempfile::tempdir().unwrap();
        let data = temp.path().join("data");
        let init = director(&data, &["init", "localhost"]);
        assert!(init.status.success(), "{}", text(&init.stderr));
        let adduser = director(
            &data,
            &[
                "adduser",
                "alice@example.org",
                "alice",
                "pw",
                "--credit",
                "100",
            ],
        );
        assert!(adduser.status.success(), "{}", text(&adduser.stderr));
        let config = std::fs::read_to_string(data.join("director.cfg")).unwrap();
        let installation = Installation { temp, data, config };
        installation.director_lines("");
        installation
    }

    /// director.cfg with `lines` added to `[director]` (and the short maintenance periods).
    fn director_lines(&self, lines: &str) {
        std::fs::write(
            self.data.join("director.cfg"),
            self.config.replace(
                "[director]\n",
                &format!("[director]\nMAINTENANCE_INTERVAL = 1\nREAP_GRACE = 1\n{lines}"),
            ),
        )
        .unwrap();
    }

    /// `director serve` with `extra` arguments, its log (`warn`) in `log`.
    fn serve(&self, extra: &[&str], log: &str) -> Server {
        let log = self.temp.path().join(log);
        let mut child = Command::new(env!("CARGO_BIN_EXE_director"))
            .arg("--data-dir")
            .arg(&self.data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("DIRECTOR_CFG")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
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
        Server { child, port, log }
    }

    /// Alice's certificate and key (from `/getcerts`), as files.
    fn certs(&self, port: u16) -> (String, String) {
        let zip = self.temp.path().join("certs.zip");
        let out = self
            .curl(port, &["-d", "username=alice", "-d", "password=pw", "-o"])
            .arg(&zip)
            .arg(format!("https://localhost:{port}/getcerts"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let unzip = Command::new("python3")
            .args([
                "-c",
                "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])",
            ])
            .arg(&zip)
            .arg(self.temp.path())
            .status()
            .unwrap();
        assert!(unzip.success());
        let path = |name: &str| self.temp.path().join(name).to_str().unwrap().to_owned();
        (path("cert.pem"), path("key.pem"))
    }

    fn curl(&self, _port: u16, args: &[&str]) -> Command {
        let mut curl = Command::new("curl");
        curl.args(["-sS", "--max-time", "60", "--cacert"])
            .arg(self.data.join("certs/ca_cert.pem"))
            .args(args);
        curl
    }

    /// Starts `n` php services one after the other and waits for their VMs.
    fn start(&self, port: u16, n: usize) {
        let (cert, key) = self.certs(port);
        for _ in 0..n {
            let out = self
                .curl(port, &["--cert", &cert, "--key", &key, "-X", "POST"])
                .arg(format!("https://localhost:{port}/start/php"))
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
        let expected = self.rows().len();
        wait_for("the started VMs", || {
            let rows = self.rows();
            rows.iter().all(|(_, vmid)| vmid.is_some()) && vm_files(&self.data).len() >= expected
        });
    }

    /// The rows (sid, vmid) of the database file.
    fn rows(&self) -> Vec<(i32, Option<String>)> {
        let store = self.store();
        let rows = store.run_blocking(store_fns::list_all_services).unwrap();
        rows.into_iter().map(|row| (row.sid.0, row.vmid)).collect()
    }

    fn store(&self) -> conpaas_core::store::Store {
        use conpaas_core::store::{DatabaseUrl, Store, StoreSettings};
        Store::connect(
            &StoreSettings::new(DatabaseUrl::Sqlite(self.data.join("director.db")))
                .max_connections(1),
        )
        .unwrap()
    }
}

use conpaas_core::store as store_fns;

/// A running `director serve`, stopped with SIGTERM when dropped.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Several maintenance passes (1 s apart, 1 s grace) of a director that must not reap.
fn let_passes_run() {
    std::thread::sleep(Duration::from_secs(4));
}

fn remove_database(data: &Path) {
    for name in ["director.db", "director.db-wal", "director.db-shm"] {
        let _ = std::fs::remove_file(data.join(name));
    }
}

/// Issue "a database that does not know the installation's history makes the reaper kill
/// live VMs": an older backup restored leaves every VM running (the reaper held, saying so),
/// new services get ids above every VM's, and the VMs started since the backup are reaped
/// only after `director reaper --confirm-restore`. The old code reaped them at its first pass.
#[test]
fn a_restored_older_backup_holds_the_reaper_until_the_operator_confirms() {
    let install = Installation::new();
    let data = install.data.clone();
    let backup = install.temp.path().join("backup.db");
    let before_backup;
    let all;
    {
        let server = install.serve(&[], "first.log");
        install.start(server.port, 2);
        before_backup = vm_files(&data);
        let out = director(&data, &["backup", backup.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        install.start(server.port, 2);
        all = vm_files(&data);
        assert_eq!((before_backup.len(), all.len()), (2, 4));
    }
    remove_database(&data);
    std::fs::copy(&backup, data.join("director.db")).unwrap();

    let server = install.serve(&[], "restored.log");
    let_passes_run();
    assert_eq!(
        vm_files(&data),
        all,
        "live VMs were reaped: {}",
        server.log()
    );
    let log = server.log();
    assert!(log.contains("the reaper terminates nothing"), "{log}");
    assert!(!log.contains("reaped a VM"), "{log}");
    let started_since: BTreeSet<String> = all.difference(&before_backup).cloned().collect();

    let dry = director(&data, &["reaper", "--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let stdout = text(&dry.stdout);
    assert!(stdout.contains("the reaper is held since"), "{stdout}");
    for vmid in &started_since {
        assert!(
            stdout
                .lines()
                .any(|line| line.contains(vmid.as_str()) && line.ends_with("leave it (held)")),
            "{stdout}"
        );
    }
    // A new service takes an id above every listed VM's (never a listed VM's client token).
    install.start(server.port, 1);
    let highest = install.rows().iter().map(|(sid, _)| *sid).max().unwrap();
    assert!(highest > 4, "a new service reused service id {highest}");
    assert_eq!(vm_files(&data).len(), 5);

    let confirm = director(&data, &["reaper", "--confirm-restore"]);
    assert!(confirm.status.success(), "{}", text(&confirm.stderr));
    assert!(
        text(&confirm.stdout).contains("the reaper's hold is over"),
        "{}",
        text(&confirm.stdout)
    );
    wait_for("the VMs started since the backup to be reaped", || {
        vm_files(&data).is_disjoint(&started_since)
    });
    let left = vm_files(&data);
    assert!(before_backup.is_subset(&left), "{left:?}");
    assert_eq!(left.len(), 3, "{left:?}");
    drop(server);
    let audit = director(&data, &["audit"]);
    let audit = text(&audit.stdout);
    assert!(
        audit.contains("reaper.held") && audit.contains("reaper.confirmed"),
        "{audit}"
    );
}

/// An empty database beside the CA (the file lost) is refused, naming the database and the
/// likely causes, and is not even created; VMs untouched. `--new-database` serves it, with the
/// reaper held. The old code recreated it silently and reaped every VM.
#[test]
fn serve_refuses_an_empty_database_beside_an_existing_ca() {
    let install = Installation::new();
    let data = install.data.clone();
    {
        let server = install.serve(&[], "first.log");
        install.start(server.port, 1);
    }
    let vms = vm_files(&data);
    assert_eq!(vms.len(), 1);
    remove_database(&data);
    let out = director(&data, &["serve", "--listen", "127.0.0.1:0"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let database = data.join("director.db");
    assert!(
        stderr.contains(&database.display().to_string())
            && stderr.contains("mistyped DATABASE_URI")
            && stderr.contains("director serve --new-database"),
        "{stderr}"
    );
    assert!(!database.exists(), "the refused database was created");
    // The dry run and the confirmation refuse it too.
    let dry = director(&data, &["reaper", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(1), "{}", text(&dry.stderr));
    assert_eq!(vm_files(&data), vms);

    let server = install.serve(&["--new-database"], "new.log");
    let_passes_run();
    assert_eq!(vm_files(&data), vms, "{}", server.log());
    assert!(
        server.log().contains("the reaper terminates nothing"),
        "{}",
        server.log()
    );
}

/// A mistyped `DATABASE_URI` (another file in an existing directory) is refused the same way.
#[test]
fn serve_refuses_a_mistyped_database_uri() {
    let install = Installation::new();
    let data = install.data.clone();
    {
        let server = install.serve(&[], "first.log");
        install.start(server.port, 1);
    }
    let vms = vm_files(&data);
    let config = data.join("director.cfg");
    let cfg = std::fs::read_to_string(&config).unwrap();
    assert!(cfg.contains("director.db"));
    std::fs::write(&config, cfg.replace("director.db", "directr.db")).unwrap();
    let out = director(&data, &["serve", "--listen", "127.0.0.1:0"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("directr.db") && stderr.contains("--new-database"),
        "{stderr}"
    );
    assert!(!data.join("directr.db").exists());
    assert_eq!(vm_files(&data), vms);
}

/// `REAPER = report` and `off` leave a VM without a row running, and the dry run says what a
/// pass would do in each mode; `on` (the default) reaps it.
#[test]
fn the_reaper_modes_and_the_dry_run() {
    let install = Installation::new();
    let data = install.data.clone();
    {
        let server = install.serve(&[], "first.log");
        install.start(server.port, 2);
    }
    // One service's row lost (a crash of an older version): its VM has no row, and its
    // service id is one the database gave, so the reaper is not held.
    let rows = install.rows();
    let (lost_sid, lost_vm) = rows[0].clone();
    let kept_vm = rows[1].1.clone().unwrap();
    let lost_vm = lost_vm.unwrap();
    install
        .store()
        .run_blocking(|conn| {
            store_fns::delete_service(conn, conpaas_core::model::ServiceId(lost_sid))
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    for (mode, verdict) in [
        ("report", "report it (REAPER = report)"),
        ("off", "leave it (REAPER = off)"),
    ] {
        install.director_lines(&format!("REAPER = {mode}\n"));
        let dry = director(&data, &["reaper", "--dry-run"]);
        let stdout = text(&dry.stdout);
        assert!(dry.status.success(), "{}", text(&dry.stderr));
        assert!(
            stdout.lines().any(|line| line.contains(&lost_vm)
                && line.contains(&format!("\t{lost_sid}\t"))
                && line.contains("no service row")
                && line.ends_with(verdict)),
            "{stdout}"
        );
        let server = install.serve(&[], &format!("{mode}.log"));
        let_passes_run();
        assert!(vm_files(&data).contains(&lost_vm), "{}", server.log());
        if mode == "report" {
            assert!(server.log().contains("REAPER = report"), "{}", server.log());
        }
    }
    install.director_lines("REAPER = ON\n");
    let dry = director(&data, &["reaper", "--dry-run"]);
    let stdout = text(&dry.stdout);
    assert!(
        stdout
            .lines()
            .any(|line| line.contains(&lost_vm) && line.ends_with("terminate it")),
        "{stdout}"
    );
    let _server = install.serve(&[], "on.log");
    wait_for("the VM without a row to be reaped", || {
        !vm_files(&data).contains(&lost_vm)
    });
    assert!(vm_files(&data).contains(&kept_vm));

    install.director_lines("REAPER = maybe\n");
    let out = director(&data, &["reaper", "--dry-run"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("director.cfg:")
            && stderr.contains("[director] REAPER: expected on, report or off, got \"maybe\""),
        "{stderr}"
    );
}
