//! Upgrades, downgrades and adopting a 1.2 installation, with the real binaries (issue 26, 5):
//! the tools said to only read (`director backup`, `cpscheck`, `director audit`) leave a 1.2
//! `director.db` byte for byte as it was; an older build refuses a database a newer one
//! migrated, on SQLite and PostgreSQL; and docs/operations.md's "Adopting a 1.2
//! installation", run step by step on a 1.2 database and 1.2 certificates, ends with a served
//! director answering 1.2 client calls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use diesel::connection::SimpleConnection as _;
use diesel::{Connection as _, RunQueryDsl as _};

mod support;
use support::{Database, client, terminate};

/// The DDL ConPaaS 1.2 produces on SQLite (spec/data-model.md §1), as in tests/it/store.rs.
const DDL_1_2: &str = "
CREATE TABLE user(uid INTEGER NOT NULL PRIMARY KEY, username VARCHAR(80) NOT NULL UNIQUE, fname VARCHAR(256), lname VARCHAR(256), email VARCHAR(256) UNIQUE, affiliation VARCHAR(256), password VARCHAR(256), created DATETIME, credit INTEGER);
CREATE TABLE application(aid INTEGER NOT NULL PRIMARY KEY, name VARCHAR(256), user_id INTEGER REFERENCES user(uid));
CREATE TABLE service(sid INTEGER NOT NULL PRIMARY KEY, name VARCHAR(256), type VARCHAR(32), state VARCHAR(32), created DATETIME, manager VARCHAR(512), vmid VARCHAR(256), cloud VARCHAR(128), subnet VARCHAR(18), user_id INTEGER REFERENCES user(uid), application_id INTEGER REFERENCES application(aid));
";

/// md5("secret"), as 1.2 stored passwords.
const MD5_SECRET: &str = "5ebe2294ecd0e0f08eab7690d2a6ee69";

/// An openssl configuration for `req` without extensions: `-x509` and `x509 -req` then make
/// v1 certificates, as 1.2's pyOpenSSL did (tests/it/ca.rs makes 1.2 CAs the same way).
const OPENSSL_1_2_CONFIG: &str = "\
[req]
distinguished_name = dn
string_mask = default
prompt = no
[dn]
CN = unused
";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `director --config CFG ARGS`, as the docs write it.
fn director(cfg: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_director"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("DIRECTOR_CFG")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn cpscheck(cfg: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cpscheck"))
        .arg("--config")
        .arg(cfg)
        .arg("--no-network")
        .env_remove("DIRECTOR_CFG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn succeeded(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A ConPaaS 1.2 installation as `/etc/cpsdirector` held it, in a directory of its own.
struct Installation12 {
    _temp: tempfile::TempDir,
    dir: PathBuf,
}

impl Installation12 {
    /// `director.cfg` as 1.2's `cpsconf.py` left it (its paths pointing here, the dummy cloud);
    /// `director.db` with 1.2's tables, a user with an MD5 password, an application and a
    /// service, made with raw SQL in rollback-journal mode; `certs/` with a CA and a director
    /// certificate made by openssl as 1.2 made them (X.509 v1, SHA-1, keys 0644).
    fn new(host: &str) -> Installation12 {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("cpsdirector");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(
            dir.join("director.cfg"),
            format!(
                "[conpaas]\n# Path to ConPaaS conf dir\nCONF_DIR = {d}\n# Path to certificates\n\
                 CERT_DIR = {d}/certs\n\n[iaas]\nDRIVER = dummy\n\n[director]\nDEBUG = true\n\
                 DATABASE_URI = sqlite:///{d}/director.db\nDIRECTOR_URL = https://{host}:5555\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let mut conn =
            diesel::SqliteConnection::establish(dir.join("director.db").to_str().unwrap()).unwrap();
        // Python's sqlite3, which 1.2 used, leaves foreign keys off.
        conn.batch_execute("PRAGMA foreign_keys = OFF").unwrap();
        conn.batch_execute(DDL_1_2).unwrap();
        conn.batch_execute(&format!(
            "INSERT INTO user VALUES (1, 'u1', 'F', 'L', 'u1@example.org', 'A', '{MD5_SECRET}', \
                                     '2013-06-21 10:33:44.806507', 120);
             INSERT INTO application VALUES (1, 'New Application', 1);
             INSERT INTO service VALUES (1, 'New php service', 'php', 'INIT', \
                                         '2013-06-21 10:33:58.178969', '127.0.0.3', '3', 'iaas', \
                                         '172.16.0.0/17', 1, 1);"
        ))
        .unwrap();
        drop(conn);

        let certs = dir.join("certs");
        std::fs::create_dir(&certs).unwrap();
        std::fs::write(certs.join("req.cnf"), OPENSSL_1_2_CONFIG).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&certs)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                text(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-sha1",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca_key.pkcs8",
            "-days",
            "1825",
            "-config",
            "req.cnf",
            "-subj",
            "/emailAddress=info@conpaas.eu/CN=CA/O=ConPaaS",
            "-set_serial",
            "1",
            "-out",
            "ca_cert.pem",
        ]);
        openssl(&[
            "rsa",
            "-traditional",
            "-in",
            "ca_key.pkcs8",
            "-out",
            "ca_key.pem",
        ]);
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pkcs8",
            "-config",
            "req.cnf",
            "-subj",
            &format!("/2.5.4.72=frontend/emailAddress=info@conpaas.eu/CN={host}/O=ConPaaS"),
            "-out",
            "director.csr",
        ]);
        openssl(&["rsa", "-traditional", "-in", "key.pkcs8", "-out", "key.pem"]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "director.csr",
            "-CA",
            "ca_cert.pem",
            "-CAkey",
            "ca_key.pem",
            "-sha1",
            "-set_serial",
            "2",
            "-days",
            "365",
            "-out",
            "cert.pem",
        ]);
        for name in ["req.cnf", "ca_key.pkcs8", "key.pkcs8", "director.csr"] {
            std::fs::remove_file(certs.join(name)).unwrap();
        }
        for name in ["ca_key.pem", "key.pem", "ca_cert.pem", "cert.pem"] {
            std::fs::set_permissions(certs.join(name), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        let installation = Installation12 { _temp: temp, dir };
        let cert_text = installation.openssl_text("certs/cert.pem");
        assert!(
            cert_text.contains("Version: 1 (0x0)") && cert_text.contains("sha1WithRSAEncryption"),
            "{cert_text}"
        );
        installation
    }

    fn cfg(&self) -> PathBuf {
        self.dir.join("director.cfg")
    }

    fn db(&self) -> PathBuf {
        self.dir.join("director.db")
    }

    /// `openssl x509 -text` of a certificate here.
    fn openssl_text(&self, relative: &str) -> String {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(self.dir.join(relative))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    }

    /// The files of the database beside the main one (`-wal`, `-shm`, `-journal`).
    fn database_companions(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("director.db-"))
            .collect()
    }

    /// `PRAGMA journal_mode` of the database, asked through a read-only connection.
    fn journal_mode(&self) -> String {
        #[derive(diesel::QueryableByName)]
        struct Mode {
            #[diesel(sql_type = diesel::sql_types::Text)]
            journal_mode: String,
        }
        let uri = format!("file://{}?mode=ro", self.db().display());
        let mut conn = diesel::SqliteConnection::establish(&uri).unwrap();
        diesel::sql_query("PRAGMA journal_mode")
            .get_result::<Mode>(&mut conn)
            .unwrap()
            .journal_mode
    }
}

/// Issue 26, 5: `director backup` and `cpscheck`, said to only read the database, switched a
/// 1.2 `director.db` to WAL mode and created `__diesel_schema_migrations` in it. They now
/// open it read-only: the file keeps every byte, and no `-wal`, `-shm` or journal is left.
#[test]
fn backup_cpscheck_and_audit_leave_a_1_2_database_as_it_was() {
    let installation = Installation12::new("localhost");
    let db = installation.db();
    let before = std::fs::read(&db).unwrap();
    assert_eq!(installation.journal_mode(), "delete");

    let copy = installation.dir.join("director-1.2.db");
    let out = director(&installation.cfg(), &["backup", copy.to_str().unwrap()]);
    succeeded(&out, "director backup");
    assert!(
        std::fs::read(&db).unwrap() == before,
        "backup wrote to the database"
    );
    assert_eq!(installation.database_companions(), Vec::<String>::new());
    // The copy holds 1.2's rows.
    let mut conn = diesel::SqliteConnection::establish(copy.to_str().unwrap()).unwrap();
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        username: String,
    }
    let names: Vec<Name> = diesel::sql_query("SELECT username FROM user")
        .load(&mut conn)
        .unwrap();
    assert_eq!(
        names.into_iter().map(|n| n.username).collect::<Vec<_>>(),
        ["u1"]
    );
    drop(conn);

    let out = cpscheck(&installation.cfg());
    let report = text(&out.stdout);
    assert!(
        report.lines().any(|line| line.starts_with("W: ")
            && line.contains(&format!("lacks {} migration(s)", migrations().len()))
            && line.contains("the director applies them at start")),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|line| line.starts_with("OK: ")
                && line.contains("takes writes (asked without writing")),
        "{report}"
    );
    // What needs the columns of later versions waits for the migration, without an error.
    assert!(
        report.lines().any(|line| line
            == "SKIP: the service starts were not checked: the database is not migrated yet (the \
                director migrates it at its start)"),
        "{report}"
    );
    assert!(
        std::fs::read(&db).unwrap() == before,
        "cpscheck wrote to the database:\n{report}"
    );
    assert_eq!(installation.database_companions(), Vec::<String>::new());

    // `director audit` only reads too, and says the log is not there yet.
    let out = director(&installation.cfg(), &["audit"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("has no audit log yet"),
        "{}",
        text(&out.stderr)
    );
    assert!(std::fs::read(&db).unwrap() == before, "audit wrote");
    assert_eq!(installation.database_companions(), Vec::<String>::new());
    assert_eq!(installation.journal_mode(), "delete");
}

/// A migration this build does not know, recorded as a newer version would have applied it.
const FUTURE_MIGRATION: &str = "9999";

/// Issue 26, 5: an older binary on a newer schema ran as if nothing were wrong. Now it refuses
/// with a message naming both versions and what to do, before writing anything; `cpscheck`
/// says the same as an `E:` line, and `director backup` still copies the database (what one
/// restores after a failed upgrade is taken with it).
#[test]
fn an_older_build_refuses_a_newer_schema_on_sqlite() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    support::director(&data, &["init", "localhost"]);
    let db = data.join("director.db");
    let mut conn = diesel::SqliteConnection::establish(db.to_str().unwrap()).unwrap();
    diesel::sql_query(format!(
        "INSERT INTO __diesel_schema_migrations (version) VALUES ('{FUTURE_MIGRATION}')"
    ))
    .execute(&mut conn)
    .unwrap();
    drop(conn);
    let cfg = data.join("director.cfg");
    let before = std::fs::read(&db).unwrap();
    let cert_before = std::fs::read(data.join("certs/cert.pem")).unwrap();

    for args in [
        &["serve", "--listen", "127.0.0.1:0"][..],
        &["adduser", "a@example.org", "alice", "pw"][..],
        &["init", "--keep-ca", "localhost"][..],
    ] {
        let out = director(&cfg, args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_newer_schema_refused(&text(&out.stderr));
    }
    assert!(std::fs::read(&db).unwrap() == before, "a refusal wrote");
    assert!(
        std::fs::read(data.join("certs/cert.pem")).unwrap() == cert_before,
        "init --keep-ca renewed the certificate before refusing"
    );

    let out = cpscheck(&cfg);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let report = text(&out.stdout);
    assert!(
        report.lines().any(|line| line.starts_with("E: ")
            && line.contains(&format!(
                "records migration(s) {FUTURE_MIGRATION} that this build"
            ))
            && line.contains(&format!("its newest is {}", newest_migration()))
            && line.contains("restore the backup taken before that upgrade")),
        "{report}"
    );

    let copy = temp.path().join("copy.db");
    succeeded(
        &director(&cfg, &["backup", copy.to_str().unwrap()]),
        "backup",
    );
    assert!(copy.is_file());
}

/// The same refusal on PostgreSQL, where replicas of two versions may share the database.
#[test]
fn an_older_build_refuses_a_newer_schema_on_postgresql() {
    let database = Database::create("newer_schema");
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    support::director(&data, &["init", "localhost"]);
    let cfg = data.join("director.cfg");
    let text_cfg = std::fs::read_to_string(&cfg).unwrap();
    let sqlite_line = text_cfg
        .lines()
        .find(|line| line.starts_with("DATABASE_URI"))
        .unwrap()
        .to_owned();
    std::fs::write(
        &cfg,
        text_cfg.replace(&sqlite_line, &format!("DATABASE_URI = {}", database.url())),
    )
    .unwrap();
    std::fs::remove_file(data.join("director.db")).unwrap();
    // The database made and migrated by this build, with a user.
    succeeded(
        &director(&cfg, &["adduser", "a@example.org", "alice", "pw"]),
        "adduser",
    );
    let mut conn = diesel::PgConnection::establish(&database.url()).unwrap();
    diesel::sql_query(format!(
        "INSERT INTO __diesel_schema_migrations (version) VALUES ('{FUTURE_MIGRATION}')"
    ))
    .execute(&mut conn)
    .unwrap();

    for args in [
        &["serve", "--listen", "127.0.0.1:0"][..],
        &["adduser", "b@example.org", "bob", "pw"][..],
    ] {
        let out = director(&cfg, args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_newer_schema_refused(&text(&out.stderr));
    }
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let users: Count = diesel::sql_query("SELECT count(*) AS n FROM \"user\"")
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(
        users.n, 1,
        "bob was added on a schema this build does not know"
    );

    let out = cpscheck(&cfg);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let report = text(&out.stdout);
    assert!(
        report.contains(&format!(
            "records migration(s) {FUTURE_MIGRATION} that this build"
        )),
        "{report}"
    );
    // Asked read-only, the server says it would take the director's writes.
    assert!(
        report.lines().any(|line| line
            == "OK: the PostgreSQL database of DATABASE_URI takes writes (asked without \
                writing: a primary server, read-write transactions, the privileges)"),
        "{report}"
    );
}

/// The refusal names the database's version, this build's, and what to do.
fn assert_newer_schema_refused(stderr: &str) {
    let line = stderr
        .lines()
        .find(|line| line.starts_with("E: "))
        .unwrap_or_else(|| panic!("no E: line in {stderr}"));
    for words in [
        "the database's schema is newer than this build's",
        &format!("it records migration {FUTURE_MIGRATION}"),
        &format!(
            "this build (conpaas-core {}) knows migrations up to {}",
            env!("CARGO_PKG_VERSION"),
            newest_migration()
        ),
        "run the version that upgraded it (or a newer one), or restore the backup taken \
         before that upgrade",
    ] {
        assert!(line.contains(words), "{words:?} not in {line}");
    }
}

/// docs/operations.md, "Adopting a 1.2 installation", step by step on a 1.2 `director.db` and
/// 1.2 certificates. Before issue 26 its step 3 (`serve`) stopped on 1.2's X.509 v1 director
/// certificate (`UnsupportedCertVersion`), which only step 4 renewed.
#[tokio::test]
async fn the_documented_adoption_of_a_1_2_installation_works_as_written() {
    let installation = Installation12::new("localhost");
    let cfg = installation.cfg();
    let certs = installation.dir.join("certs");
    let ca_before = std::fs::read(certs.join("ca_cert.pem")).unwrap();
    let db_before = std::fs::read(installation.db()).unwrap();

    // 1. Back up: the database copied without migrating, the file left as it was.
    let backup = installation.dir.join("director-1.2.db");
    succeeded(
        &director(&cfg, &["backup", backup.to_str().unwrap()]),
        "step 1: backup",
    );
    assert_eq!(std::fs::read(installation.db()).unwrap(), db_before);
    assert_eq!(std::fs::read(&backup).unwrap().len(), db_before.len());

    // 2. chmod 600 the keys 1.2 left readable.
    for name in ["ca_key.pem", "key.pem"] {
        std::fs::set_permissions(certs.join(name), std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    // Serving 1.2's own certificate cannot work (rustls refuses X.509 v1): refused, saying
    // what to do, before the database is touched.
    let out = director(&cfg, &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let refusal = text(&out.stderr);
    assert!(
        refusal.contains(&format!(
            "E: {}/cert.pem is an X.509 v1 certificate, as ConPaaS 1.2 made them",
            certs.display()
        )) && refusal.contains("director init --keep-ca localhost"),
        "{refusal}"
    );
    assert!(
        std::fs::read(installation.db()).unwrap() == db_before,
        "serve touched the database before refusing"
    );

    // 3. A new director certificate under the same CA (which migrates the database).
    let out = director(&cfg, &["init", "--keep-ca", "localhost"]);
    succeeded(&out, "step 3: init --keep-ca");
    assert!(
        text(&out.stderr).contains("applied database migration"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(certs.join("ca_cert.pem")).unwrap(), ca_before);
    let renewed = installation.openssl_text("certs/cert.pem");
    assert!(
        renewed.contains("Version: 3 (0x2)") && renewed.contains("sha256WithRSAEncryption"),
        "{renewed}"
    );
    assert!(
        renewed.contains("Issuer: emailAddress = info@conpaas.eu, CN = CA, O = ConPaaS"),
        "{renewed}"
    );

    // 4. Serve.
    let (child, port) = serve_config(&cfg);
    let ca = String::from_utf8(ca_before).unwrap();
    let base = format!("https://localhost:{port}");

    // 5. A 1.2 client: the MD5 password logs in, new certificates are fetched, the 1.2
    // application is listed with them.
    let anonymous = client(&ca, None);
    let login = anonymous
        .post(format!("{base}/login"))
        .form(&[("username", "u1"), ("password", "secret")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let login: serde_json::Value = serde_json::from_str(&login).unwrap();
    assert_eq!(login["uid"], 1, "{login}");
    assert_eq!(login["credit"], 120, "{login}");
    let zip = anonymous
        .post(format!("{base}/getcerts"))
        .form(&[("username", "u1"), ("password", "secret")])
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut member = |name: &str| {
        let mut text = String::new();
        archive
            .by_name(name)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    let (cert, key) = (member("cert.pem"), member("key.pem"));
    let user = client(&ca, Some((&cert, &key)));
    let listing = user
        .post(format!("{base}/listapp"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listing.contains("\"New Application\""), "{listing}");
    let services = user
        .post(format!("{base}/list"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(services.contains("\"New php service\""), "{services}");
    terminate(child);
}

/// `director --config CFG serve` on 127.0.0.1 at a free port; the child and its port.
fn serve_config(cfg: &Path) -> (std::process::Child, u16) {
    use std::io::BufRead as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_director"))
        .arg("--config")
        .arg(cfg)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("DIRECTOR_CFG")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let port = first
        .trim()
        .strip_prefix("listening on https://127.0.0.1:")
        .unwrap_or_else(|| panic!("serve did not start: {first:?}"))
        .parse()
        .unwrap();
    (child, port)
}

/// This build's migrations (`conpaas-core/migrations/sqlite/`), in order.
fn migrations() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conpaas-core/migrations/sqlite");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The version (`0009`) of this build's newest migration.
fn newest_migration() -> String {
    migrations().last().unwrap()[..4].to_owned()
}
