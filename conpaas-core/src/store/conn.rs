//! Connections: the SQLite/PostgreSQL connection enum, the r2d2 manager that opens
//! and configures them, and the write-transaction helper.

#[cfg(feature = "sqlite")]
use std::path::{Path, PathBuf};
#[cfg(feature = "sqlite")]
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "sqlite")]
use std::sync::{Arc, Mutex};
#[cfg(feature = "sqlite")]
use std::time::Duration;

use diesel::Connection;
#[cfg(feature = "postgres")]
use diesel::PgConnection;
#[cfg(feature = "sqlite")]
use diesel::SqliteConnection;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::r2d2::{ManageConnection, R2D2Connection};

use super::{DatabaseError, DatabaseUrl, Error};
use crate::model::ErrorChain;

/// A database connection, SQLite or PostgreSQL. Store functions take `&mut DbConnection`
/// and use diesel's query builder, which works on both; the rare backend-specific
/// statement matches on the variant (another backend may be added: match with a `_` arm).
#[derive(diesel::MultiConnection)]
#[non_exhaustive]
pub enum DbConnection {
    /// An SQLite file, configured for WAL, foreign keys and a busy timeout.
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteConnection),
    /// A PostgreSQL server.
    #[cfg(feature = "postgres")]
    Pg(PgConnection),
}

/// How long an SQLite connection waits for another writer before failing with
/// "database is locked".
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens and configures connections for r2d2.
///
/// Written by hand rather than diesel's `ConnectionManager<DbConnection>`: the derived
/// `DbConnection::establish` tries each backend in turn, and SQLite accepts any
/// string as a file name, so a PostgreSQL URL with a typo would silently become a
/// new empty SQLite file. Here the backend is chosen by the parsed [`DatabaseUrl`].
#[derive(Clone)]
pub(crate) struct Manager {
    target: Target,
    /// Connections read only (see [`Manager::read_only`]).
    read_only: bool,
}

/// What a [`Manager`] connects to.
#[derive(Clone)]
enum Target {
    /// An SQLite file.
    #[cfg(feature = "sqlite")]
    File(PathBuf),
    /// An in-memory SQLite database: its shared-cache URI, and a connection held open for
    /// as long as a manager lives, because SQLite frees an in-memory database with its last
    /// connection (and r2d2 closes broken ones).
    #[cfg(feature = "sqlite")]
    Memory {
        uri: String,
        _keeper: Arc<Mutex<SqliteConnection>>,
    },
    /// A libpq URL.
    #[cfg(feature = "postgres")]
    Postgres(String),
}

#[cfg(feature = "sqlite")]
/// Numbers the in-memory databases of the process: each store gets its own.
static MEMORY_DATABASES: AtomicU64 = AtomicU64::new(0);

#[cfg(feature = "sqlite")]
/// How errors name an in-memory database.
const MEMORY_TARGET: &str = "an in-memory sqlite database";

impl Manager {
    /// Checks what can be checked before connecting (see [`Error::DatabaseDirectoryMissing`]).
    pub(crate) fn new(url: DatabaseUrl) -> Result<Manager, Error> {
        Manager::with_access(url, false)
    }

    /// Connections that only read: a missing SQLite file is not created
    /// ([`Error::DatabaseMissing`]), an SQLite file is opened with `mode=ro` and its journal
    /// mode left as it is, a PostgreSQL session's transactions are read-only.
    pub(crate) fn read_only(url: DatabaseUrl) -> Result<Manager, Error> {
        Manager::with_access(url, true)
    }

    fn with_access(url: DatabaseUrl, read_only: bool) -> Result<Manager, Error> {
        let target = match url {
            // SQLite's own name for an in-memory database, never a file name here.
            #[cfg(feature = "sqlite")]
            DatabaseUrl::Sqlite(path) if path.as_os_str() == ":memory:" => memory_target()?,
            #[cfg(feature = "sqlite")]
            DatabaseUrl::SqliteMemory => memory_target()?,
            #[cfg(feature = "sqlite")]
            DatabaseUrl::Sqlite(path) => {
                sqlite_path_text(&path)?;
                let dir = match path.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => dir,
                    _ => Path::new("."),
                };
                // SQLite creates a missing file but not a missing directory; saying which
                // directory is missing beats its "unable to open database file".
                if !dir.is_dir() {
                    return Err(Error::DatabaseDirectoryMissing { path });
                }
                if !read_only {
                    create_private_file(&path)?;
                } else if matches!(std::fs::symlink_metadata(&path), Err(error) if error.kind() == std::io::ErrorKind::NotFound)
                {
                    return Err(Error::DatabaseMissing { path });
                }
                Target::File(path)
            }
            #[cfg(feature = "postgres")]
            DatabaseUrl::Postgres(url) => Target::Postgres(url),
            #[cfg(not(feature = "sqlite"))]
            DatabaseUrl::Sqlite(_) | DatabaseUrl::SqliteMemory => {
                return Err(Error::BackendNotCompiled { backend: "sqlite" });
            }
            #[cfg(not(feature = "postgres"))]
            DatabaseUrl::Postgres(_) => {
                return Err(Error::BackendNotCompiled {
                    backend: "postgres",
                });
            }
        };
        Ok(Manager { target, read_only })
    }

    /// Whether the database lives in memory ([`DatabaseUrl::SqliteMemory`]).
    pub(crate) fn in_memory(&self) -> bool {
        match self.target {
            #[cfg(feature = "sqlite")]
            Target::Memory { .. } => true,
            _ => false,
        }
    }

    /// Whether the database is SQLite (a file or in memory): local, no network between.
    pub(crate) fn is_sqlite(&self) -> bool {
        match self.target {
            #[cfg(feature = "sqlite")]
            Target::File(_) | Target::Memory { .. } => true,
            #[cfg(feature = "postgres")]
            Target::Postgres(_) => false,
        }
    }

    /// Opens one configured connection.
    pub(crate) fn open(&self) -> Result<DbConnection, Error> {
        match &self.target {
            #[cfg(feature = "sqlite")]
            Target::File(path) if self.read_only => {
                let conn = open_sqlite_read_only(path)?;
                Ok(DbConnection::Sqlite(conn))
            }
            #[cfg(feature = "sqlite")]
            Target::File(path) => {
                let text = sqlite_path_text(path)?;
                let conn = open_sqlite(&text, &path.display().to_string())?;
                Ok(DbConnection::Sqlite(conn))
            }
            #[cfg(feature = "sqlite")]
            Target::Memory { uri, .. } => {
                Ok(DbConnection::Sqlite(open_sqlite(uri, MEMORY_TARGET)?))
            }
            #[cfg(feature = "postgres")]
            Target::Postgres(url) => {
                let mut conn = PgConnection::establish(url).map_err(|source| Error::Connect {
                    // The URL may hold a password: name the backend only.
                    target: "postgresql".to_owned(),
                    source: DatabaseError::connect(source),
                })?;
                if self.read_only {
                    conn.batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                        .map_err(|source| Error::Configure {
                            target: "postgresql".to_owned(),
                            source: DatabaseError::query(source),
                        })?;
                }
                Ok(DbConnection::Pg(conn))
            }
        }
    }
}

#[cfg(feature = "sqlite")]
/// A new in-memory database of its own, held open by its first connection.
fn memory_target() -> Result<Target, Error> {
    let n = MEMORY_DATABASES.fetch_add(1, Ordering::Relaxed);
    // Shared cache lets the pool's connections reach the same database by name.
    let uri = format!(
        "file:conpaas-memory-{}-{n}?mode=memory&cache=shared",
        std::process::id()
    );
    let keeper = open_sqlite(&uri, MEMORY_TARGET)?;
    Ok(Target::Memory {
        uri,
        _keeper: Arc::new(Mutex::new(keeper)),
    })
}

#[cfg(feature = "sqlite")]
/// Opens and configures an SQLite connection to `text` (a path or URI); `target` names it in
/// errors.
fn open_sqlite(text: &str, target: &str) -> Result<SqliteConnection, Error> {
    let mut conn = SqliteConnection::establish(text).map_err(|source| Error::Connect {
        target: target.to_owned(),
        source: DatabaseError::connect(source),
    })?;
    configure_sqlite(&mut conn).map_err(|error| Error::configure(target, error))?;
    Ok(conn)
}

#[cfg(feature = "sqlite")]
/// Opens the SQLite file `path` for reading only (`mode=ro`, as `SQLITE_OPEN_READONLY`): nothing
/// is written to it, its journal mode stays (a 1.2 file keeps its rollback journal), and a
/// write is refused by SQLite. A file in WAL mode still gets the `-wal` and `-shm` files every
/// SQLite reader of it needs, as the director's own connections would.
fn open_sqlite_read_only(path: &Path) -> Result<SqliteConnection, Error> {
    let target = path.display().to_string();
    let mut conn =
        SqliteConnection::establish(&read_only_uri(path)?).map_err(|source| Error::Connect {
            target: target.clone(),
            source: DatabaseError::connect(source),
        })?;
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {};",
        SQLITE_BUSY_TIMEOUT.as_millis()
    ))
    .map_err(|error| Error::configure(&target, error))?;
    Ok(conn)
}

#[cfg(feature = "sqlite")]
/// The `file:` URI opening `path` read-only: the characters a URI path cannot hold as they are
/// percent-encoded, an absolute path after an empty authority (`file:///...`).
fn read_only_uri(path: &Path) -> Result<String, Error> {
    let Some(text) = path.to_str() else {
        return Err(Error::NonUtf8Path {
            path: path.to_owned(),
        });
    };
    let mut uri = String::from(if text.starts_with('/') {
        "file://"
    } else {
        "file:"
    });
    for byte in text.bytes() {
        match byte {
            b'?' | b'#' | b'%' | 0..=0x20 | 0x7f..=0xff => uri.push_str(&format!("%{byte:02X}")),
            _ => uri.push(char::from(byte)),
        }
    }
    uri.push_str("?mode=ro");
    Ok(uri)
}

#[cfg(feature = "sqlite")]
/// Creates a missing SQLite file 0600 before SQLite does (it would use the umask): the
/// database holds password hashes. It belongs to its directory's owner (root running `director
/// init` in the director's data directory leaves the database to the director's user); SQLite
/// gives its -wal and -shm files the same mode, and, run as root, the same owner.
fn create_private_file(path: &Path) -> Result<(), Error> {
    match crate::data_files::create_file(path, crate::data_files::Mode::Private) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(Error::CreateFile {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(feature = "sqlite")]
/// The path as the UTF-8 text diesel's SQLite `establish` takes.
fn sqlite_path_text(path: &Path) -> Result<String, Error> {
    let Some(text) = path.to_str() else {
        return Err(Error::NonUtf8Path {
            path: path.to_owned(),
        });
    };
    // SQLite reads a name starting with `file:` as a URI with options; a relative
    // path that happens to start so is meant as a file.
    if text.starts_with("file:") {
        return Ok(format!("./{text}"));
    }
    Ok(text.to_owned())
}

#[cfg(feature = "sqlite")]
/// Per-connection SQLite settings. `journal_mode` is stored in the file, the
/// others last as long as the connection, hence on every connection the pool opens.
fn configure_sqlite(conn: &mut SqliteConnection) -> diesel::QueryResult<()> {
    conn.batch_execute(&format!(
        // busy_timeout first: switching to WAL itself needs the write lock.
        "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;",
        SQLITE_BUSY_TIMEOUT.as_millis()
    ))
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = Error;

    fn connect(&self) -> Result<DbConnection, Error> {
        self.open()
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Error> {
        conn.ping().map_err(Error::from)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        // True also for a connection left inside a transaction by a panic.
        conn.is_broken()
    }
}

/// Runs a diesel query on the connection's own backend (`|c| query.load(c)`) instead of
/// through the [`DbConnection`] enum, whose `MultiConnection` writes the query's SQL text
/// anew at every execution; the backend's own connection finds the prepared statement by
/// the query's type. For the reads of every request (`Store::read`).
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            #[cfg(feature = "sqlite")]
            $crate::store::DbConnection::Sqlite($c) => $body,
            #[cfg(feature = "postgres")]
            $crate::store::DbConnection::Pg($c) => $body,
        }
    };
}
pub(crate) use on_backend;

/// Runs `f` in a transaction that takes the write lock at once; commits if `f`
/// succeeds, rolls back otherwise. Use it to combine several store calls
/// atomically (the store's own check-then-write functions use it too).
///
/// On SQLite a plain `BEGIN` starts as a reader; upgrading to a writer after
/// another connection wrote fails at once with "database is locked" (the busy
/// timeout does not apply), so this starts with `BEGIN IMMEDIATE`, which waits for
/// the lock up front and serialises writers. On PostgreSQL it is a plain
/// transaction; the store's functions lock the rows they check. Inside an open
/// transaction it becomes a savepoint (the outer transaction's locking applies).
pub fn write_transaction<T, E, F>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<Error>,
{
    match conn {
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(c) => {
            let depth = AnsiTransactionManager::transaction_manager_status_mut(c)
                .transaction_depth()
                .map_err(Error::from)?;
            if depth.is_some() {
                AnsiTransactionManager::begin_transaction(c)
            } else {
                AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
            }
        }
        #[cfg(feature = "postgres")]
        DbConnection::Pg(c) => AnsiTransactionManager::begin_transaction(c),
    }
    .map_err(Error::from)?;
    // Audit events recorded from here are sent to subscribers only if this commits.
    let mark = super::audit_stream::mark();
    match f(conn) {
        Ok(value) => {
            let committed = match conn {
                #[cfg(feature = "sqlite")]
                DbConnection::Sqlite(c) => AnsiTransactionManager::commit_transaction(c),
                #[cfg(feature = "postgres")]
                DbConnection::Pg(c) => AnsiTransactionManager::commit_transaction(c),
            };
            if let Err(error) = committed {
                // Perhaps committed after all (the answer was lost): the table has it, the
                // stream does not (its documented loss).
                super::audit_stream::roll_back_to(mark);
                return Err(Error::from(error).into());
            }
            Ok(value)
        }
        Err(err) => {
            super::audit_stream::roll_back_to(mark);
            let rolled_back = match conn {
                #[cfg(feature = "sqlite")]
                DbConnection::Sqlite(c) => AnsiTransactionManager::rollback_transaction(c),
                #[cfg(feature = "postgres")]
                DbConnection::Pg(c) => AnsiTransactionManager::rollback_transaction(c),
            };
            // The caller's error says what went wrong; a failed rollback leaves the
            // connection marked broken, and the pool discards it.
            if let Err(rollback_err) = rolled_back {
                tracing::warn!(error = %ErrorChain(&rollback_err), "rolling back a transaction failed");
            }
            Err(err)
        }
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    /// Issue 11: "cannot configure the sqlite connection: attempt to write a readonly
    /// database" named no file. A read-only connection to a database not yet in WAL mode
    /// fails exactly there (switching to WAL writes the file).
    #[test]
    fn a_read_only_database_is_named() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("director.db");
        let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        conn.batch_execute("CREATE TABLE t (x INTEGER)").unwrap();
        drop(conn);

        let uri = format!("file:{}?mode=ro", path.display());
        let Err(error) = open_sqlite(&uri, &path.display().to_string()) else {
            panic!("a read-only connection switched to WAL");
        };
        assert!(matches!(error, Error::Configure { .. }), "{error:?}");
        let shown = crate::model::ErrorChain(&error).to_string();
        assert_eq!(
            shown,
            format!(
                "cannot configure the sqlite connection to {}: attempt to write a readonly database",
                path.display()
            )
        );
    }
}
