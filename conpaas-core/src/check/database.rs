//! Checks of the database: it opens, it takes writes (tested in a rolled-back transaction), and
//! its migrations are current.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use diesel::connection::SimpleConnection;

use super::{CheckResult, error_chain};
use crate::config::LoadedConfig;
use crate::store::{self, DatabaseUrl, DbConnection, Store};

/// A table name no migration uses; created and dropped again by the rollback.
const PROBE_TABLE: &str = "cpscheck_write_probe";

pub(super) fn checks(loaded: &LoadedConfig) -> Vec<CheckResult> {
    let settings = &loaded.config.store;
    let target = match &settings.url {
        DatabaseUrl::Sqlite(path) => format!("the SQLite database {}", path.display()),
        // The configuration refuses it; an embedder's settings may still hold it.
        DatabaseUrl::SqliteMemory => "the in-memory SQLite database".to_owned(),
        // The URL may carry a password.
        DatabaseUrl::Postgres(_) => "the PostgreSQL database of DATABASE_URI".to_owned(),
    };
    let mut results = Vec::new();
    let mut read_only = false;
    if let DatabaseUrl::Sqlite(path) = &settings.url {
        match sqlite_files(path, &target) {
            SqliteFiles::Missing(result) => return vec![result],
            SqliteFiles::Present(problems) => {
                read_only = !problems.is_empty();
                results.extend(problems);
            }
        }
    }
    // Store::connect creates nothing here: the file exists (checked above) or the database is
    // a server. It does switch a 1.2 SQLite file to WAL, as the director's start would.
    let store = match Store::connect(settings) {
        Ok(store) => store,
        Err(error) => {
            results.push(CheckResult::error(
                "database.open",
                "database opens",
                format!("{target} cannot be opened: {}", error_chain(&error)),
                "check DATABASE_URI in the [director] section and that the director's user may \
                 read and write the database (and its directory, for SQLite)",
            ));
            return results;
        }
    };
    results.push(CheckResult::ok(
        "database.open",
        "database opens",
        format!("{target} opens"),
    ));
    if !read_only {
        results.push(match store.run_blocking(write_probe) {
            Ok(()) => CheckResult::ok(
                "database.writable",
                "database takes writes",
                format!("{target} takes writes (tested in a transaction rolled back)"),
            ),
            Err(error) => CheckResult::error(
                "database.writable",
                "database takes writes",
                format!("{target} refuses writes: {}", error_chain(&error)),
                "give the director's user write access to the database (for SQLite: the file, \
                 its -wal and -shm files and its directory; for PostgreSQL: a role that may \
                 create tables and write) and make sure the disk is not full or mounted \
                 read-only",
            ),
        });
    }
    results.push(match store.pending_migrations() {
        Ok(pending) if pending.is_empty() => CheckResult::ok(
            "database.migrations",
            "database schema is current",
            format!("{target} has every migration applied"),
        ),
        Ok(pending) => CheckResult::warning(
            "database.migrations",
            "database schema is current",
            format!(
                "{target} lacks {} migration(s) ({}): the director applies them at start",
                pending.len(),
                pending.join(", ")
            ),
            "back up the database (a 1.2 one is rebuilt in place), then start the director",
        ),
        Err(error) => CheckResult::error(
            "database.migrations",
            "database schema is current",
            format!(
                "the migrations of {target} cannot be read: {}",
                error_chain(&error)
            ),
            "check that DATABASE_URI names the director's database",
        ),
    });
    results.extend(accounts(&store));
    results
}

/// The accounts and services the database holds: users to log in, credit left, starts a
/// crash interrupted (the director undoes them; the line says so).
fn accounts(store: &Store) -> Vec<CheckResult> {
    const WHAT_USERS: &str = "users";
    const WHAT_STARTS: &str = "service starts";
    let mut results = Vec::new();
    match store.run_blocking(|conn| {
        Ok::<_, store::Error>((
            store::count_users(conn)?,
            store::users_without_credit(conn)?,
        ))
    }) {
        Ok((0, _)) => results.push(CheckResult::warning(
            "database.users",
            WHAT_USERS,
            "the database has no users: nobody can log in",
            "add one with `director adduser EMAIL USERNAME PASSWORD`",
        )),
        Ok((n_users, broke)) if broke.is_empty() => results.push(CheckResult::ok(
            "database.users",
            WHAT_USERS,
            format!("{n_users} user(s), each with credit left"),
        )),
        Ok((n_users, broke)) => results.push(CheckResult::warning(
            "database.users",
            WHAT_USERS,
            format!(
                "{} of {n_users} user(s) have no credit left ({}): their managers terminate \
                 their services at the next hourly charge",
                broke.len(),
                broke.join(", ")
            ),
            "raise their credit in the database's user table if they should keep running",
        )),
        Err(error) => results.push(CheckResult::error(
            "database.users",
            WHAT_USERS,
            format!("the users cannot be read: {}", error_chain(&error)),
            "check DATABASE_URI names the director's database",
        )),
    }
    match store.run_blocking(store::list_incomplete_services) {
        Ok(rows) if rows.is_empty() => results.push(CheckResult::ok(
            "database.starts",
            WHAT_STARTS,
            "no service is waiting for its VM",
        )),
        Ok(rows) => {
            let sids: Vec<String> = rows.iter().map(|row| row.sid.to_string()).collect();
            results.push(CheckResult::warning(
                "database.starts",
                WHAT_STARTS,
                format!(
                    "{} service(s) have no VM recorded yet (sid {}): starts in progress, or \
                     interrupted by a crash",
                    rows.len(),
                    sids.join(", ")
                ),
                "a running director undoes interrupted starts (terminates their VM, deletes the \
                 row, refunds the credit) 11 minutes after they began; start it if it is not \
                 running",
            ));
        }
        Err(error) => results.push(CheckResult::error(
            "database.starts",
            WHAT_STARTS,
            format!("the services cannot be read: {}", error_chain(&error)),
            "check DATABASE_URI names the director's database",
        )),
    }
    results
}

/// Writes inside a transaction and rolls it back: a read-only file, directory, role or standby
/// server fails here. `BEGIN IMMEDIATE` takes SQLite's write lock at once.
fn write_probe(conn: &mut DbConnection) -> Result<(), store::Error> {
    let begin = match conn {
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(_) => "BEGIN IMMEDIATE",
        #[cfg(feature = "postgres")]
        DbConnection::Pg(_) => "BEGIN",
    };
    conn.batch_execute(begin).map_err(store::Error::Query)?;
    let written = conn.batch_execute(&format!(
        "CREATE TABLE {PROBE_TABLE} (x INTEGER); INSERT INTO {PROBE_TABLE} (x) VALUES (1);"
    ));
    let rolled_back = conn.batch_execute("ROLLBACK");
    written.map_err(store::Error::Query)?;
    rolled_back.map_err(store::Error::Query)
}

enum SqliteFiles {
    /// The file does not exist: the only line about the database.
    Missing(CheckResult),
    /// The file exists; any lines about read-only modes.
    Present(Vec<CheckResult>),
}

/// Looks at the SQLite file, its -wal/-shm files and its directory before opening anything.
///
/// The modes are read rather than tried: run as root (as 1.2's cpscheck was), every write
/// succeeds whatever the mode, yet the director's own user would be refused.
fn sqlite_files(path: &Path, target: &str) -> SqliteFiles {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match fs::metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let (found, fix) = if dir.is_dir() {
                (
                    format!("{target} does not exist yet"),
                    "run `director init HOSTNAME`, or start the director, which creates it \
                     (restore a backup instead if it held users)"
                        .to_owned(),
                )
            } else {
                (
                    format!(
                        "{target} does not exist, nor its directory {}",
                        dir.display()
                    ),
                    format!(
                        "correct DATABASE_URI (sqlite:////ABSOLUTE/PATH), or create {}",
                        dir.display()
                    ),
                )
            };
            return SqliteFiles::Missing(CheckResult::warning(
                "database.open",
                "database opens",
                found,
                fix,
            ));
        }
        _ => {}
    }
    let mut problems = Vec::new();
    let read_only = |path: &Path| {
        fs::metadata(path)
            .ok()
            .map(|metadata| metadata.permissions().mode() & 0o7777)
            .filter(|mode| mode & 0o222 == 0)
    };
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(name.into());
    }
    for file in &files {
        if let Some(mode) = read_only(file) {
            problems.push(CheckResult::error(
                "database.writable",
                "database takes writes",
                format!(
                    "{} is read-only (mode {mode:04o}): the director cannot record anything",
                    file.display()
                ),
                format!(
                    "chmod 600 {} and make the director's user its owner",
                    file.display()
                ),
            ));
        }
    }
    if let Some(mode) = read_only(dir) {
        problems.push(CheckResult::error(
            "database.writable",
            "database takes writes",
            format!(
                "the directory {} of the SQLite database is read-only (mode {mode:04o}): SQLite \
                 creates its -wal and -shm files there",
                dir.display()
            ),
            format!(
                "chmod 700 {} and make the director's user its owner",
                dir.display()
            ),
        ));
    }
    SqliteFiles::Present(problems)
}
