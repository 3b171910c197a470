//! Checks of the database: it opens, it would take writes, and its migrations are current; all
//! asked without writing (the database is opened read-only).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{CheckResult, error_chain};
use crate::config::LoadedConfig;
use crate::store::{self, DatabaseUrl, DbConnection, Store};

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
    // Read-only: cpscheck writes nothing to the database, not even SQLite's journal mode or
    // the migrations table (a 1.2 file stays as 1.2 left it).
    let store = match Store::open_read_only(settings) {
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
    let schema = store.schema_status();
    let pending = schema
        .as_ref()
        .is_ok_and(|schema| !schema.pending.is_empty());
    if !read_only {
        let refused = match &settings.url {
            DatabaseUrl::Sqlite(path) => sqlite_refuses_writes(path),
            _ => store
                .run_blocking(|conn| server_refuses_writes(conn, pending))
                .map_err(|error| format!("cannot ask it: {}", error_chain(&error)))
                .and_then(|refused| refused.map_or(Ok(()), Err)),
        };
        results.push(match refused {
            Ok(()) => CheckResult::ok(
                "database.writable",
                "database takes writes",
                format!(
                    "{target} takes writes (asked without writing: {})",
                    match &settings.url {
                        DatabaseUrl::Sqlite(_) => "the file opens for writing",
                        _ => "a primary server, read-write transactions, the privileges",
                    }
                ),
            ),
            Err(reason) => CheckResult::error(
                "database.writable",
                "database takes writes",
                format!("{target} refuses writes: {reason}"),
                "give the director's user write access to the database (for SQLite: the file, \
                 its -wal and -shm files and its directory; for PostgreSQL: a role that may \
                 create tables and write) and make sure the disk is not full or mounted \
                 read-only",
            ),
        });
    }
    results.push(match schema {
        Ok(schema) if !schema.unknown.is_empty() => CheckResult::error(
            "database.migrations",
            "database schema is current",
            format!(
                "{target} records migration(s) {} that this build (conpaas-rs {}) does not know \
                 (its newest is {}): a newer version of the director upgraded it, and this one \
                 refuses to start on it",
                schema.unknown.join(", "),
                env!("CARGO_PKG_VERSION"),
                schema.newest_known
            ),
            "run the version that upgraded the database (and its cpscheck), or restore the \
             backup taken before that upgrade (docs/operations.md, \"Upgrades and downgrades\")",
        ),
        Ok(schema) if schema.pending.is_empty() => CheckResult::ok(
            "database.migrations",
            "database schema is current",
            format!("{target} has every migration applied"),
        ),
        Ok(schema) => CheckResult::warning(
            "database.migrations",
            "database schema is current",
            format!(
                "{target} lacks {} migration(s) ({}): the director applies them at start",
                schema.pending.len(),
                schema.pending.join(", ")
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
    results.extend(accounts(&store, pending));
    results
}

/// The accounts and services the database holds: users to log in, credit left, starts a
/// crash interrupted (the director undoes them; the line says so).
/// With `pending` migrations (a 1.2 database) the columns of later versions are not there
/// yet: what needs them is skipped, not an error.
fn accounts(store: &Store, pending: bool) -> Vec<CheckResult> {
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
        Err(_) if pending => results.push(CheckResult::skipped(
            "database.starts",
            WHAT_STARTS,
            "the service starts were not checked: the database is not migrated yet (the \
             director migrates it at its start)",
        )),
        Err(error) => results.push(CheckResult::error(
            "database.starts",
            WHAT_STARTS,
            format!("the services cannot be read: {}", error_chain(&error)),
            "check DATABASE_URI names the director's database",
        )),
    }
    results
}

/// Whether the SQLite file can be written, found without writing: it is opened for writing
/// (neither created nor truncated, nothing written), which a read-only mount or a file the
/// process may not write refuses. The modes the director's user needs are checked from the
/// mode bits before ([`sqlite_files`]): root may write anything.
fn sqlite_refuses_writes(path: &Path) -> Result<(), String> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map(drop)
        .map_err(|error| format!("{} cannot be opened for writing: {error}", path.display()))
}

/// Whether a database server would refuse the director's writes, asked without writing: a
/// standby (in recovery), read-only transactions by default for the role or database, no
/// `INSERT` or `UPDATE` on the `user` table, or (when `pending` migrations are to run) no
/// `CREATE` in the schema. `Ok(Some(reason))` when it would.
// With PostgreSQL the only backend built, `DbConnection` has one variant.
#[cfg_attr(not(feature = "sqlite"), allow(irrefutable_let_patterns))]
fn server_refuses_writes(
    conn: &mut DbConnection,
    pending: bool,
) -> Result<Option<String>, store::Error> {
    #[cfg(feature = "postgres")]
    if let DbConnection::Pg(c) = conn {
        use diesel::RunQueryDsl as _;
        use diesel::sql_types::Bool;
        #[derive(diesel::QueryableByName)]
        struct Server {
            #[diesel(sql_type = Bool)]
            standby: bool,
            #[diesel(sql_type = Bool)]
            read_only: bool,
            #[diesel(sql_type = Bool)]
            user_writable: bool,
            #[diesel(sql_type = Bool)]
            may_create: bool,
        }
        // The session's own setting is read-only (cpscheck's store is): what the role and
        // database would give the director is the setting's reset value.
        let server: Server = diesel::sql_query(
            "SELECT pg_is_in_recovery() AS standby, \
                    (SELECT reset_val FROM pg_settings \
                      WHERE name = 'default_transaction_read_only') = 'on' AS read_only, \
                    CASE WHEN to_regclass('\"user\"') IS NULL THEN true \
                         ELSE has_table_privilege('\"user\"', 'INSERT') \
                              AND has_table_privilege('\"user\"', 'UPDATE') END \
                      AS user_writable, \
                    coalesce(has_schema_privilege(current_schema(), 'CREATE'), false) \
                      AS may_create",
        )
        .get_result(c)?;
        let reason = if server.standby {
            Some("the server is a standby (in recovery): it takes no writes".to_owned())
        } else if server.read_only {
            Some(
                "default_transaction_read_only is on for the director's role or database"
                    .to_owned(),
            )
        } else if !server.user_writable {
            Some("the director's role may not INSERT and UPDATE the user table".to_owned())
        } else if pending && !server.may_create {
            Some(
                "the director's role may not CREATE in the schema, which the pending \
                 migrations need"
                    .to_owned(),
            )
        } else {
            None
        };
        return Ok(reason);
    }
    let _ = (conn, pending);
    Ok(None)
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
