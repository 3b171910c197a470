//! Embedded migrations, one set per backend, and how they are run.

#[cfg(feature = "postgres")]
use diesel::PgConnection;
#[cfg(feature = "sqlite")]
use diesel::SqliteConnection;
use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
#[cfg(feature = "sqlite")]
use diesel::sql_types::BigInt;
use diesel::sql_types::{Bool, Text};
use diesel::{QueryableByName, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::{DbConnection, Error};

/// The SQLite migrations (`conpaas-core/migrations/sqlite/`).
#[cfg(feature = "sqlite")]
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
/// The PostgreSQL migrations (`conpaas-core/migrations/postgres/`).
#[cfg(feature = "postgres")]
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A fixed key for `pg_advisory_lock`, so that director replicas starting together
/// against one PostgreSQL run the migrations one after the other.
#[cfg(feature = "postgres")]
const PG_MIGRATION_LOCK: i64 = 0x0c0a_9aa5_0001;

/// Runs every pending migration; answers the names of those it ran. A database a newer build
/// migrated is refused first ([`Error::SchemaNewer`]), before anything is written.
pub(crate) fn run_pending(conn: &mut DbConnection) -> Result<Vec<String>, Error> {
    // On PostgreSQL under the lock, so that a newer replica's migrations are seen complete.
    with_migration_lock(conn, |conn| {
        refuse_newer_schema(conn)?;
        match conn {
            #[cfg(feature = "sqlite")]
            DbConnection::Sqlite(c) => run_pending_sqlite(c),
            #[cfg(feature = "postgres")]
            DbConnection::Pg(c) => run_pending_pg(c),
        }
    })
}

/// Runs `f` holding, on PostgreSQL, the session-level advisory lock of migrations (held
/// across diesel's per-migration transactions); on SQLite, whose migrations take the write
/// lock, as it is.
fn with_migration_lock<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, Error>,
) -> Result<T, Error> {
    let postgres = match conn {
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(_) => false,
        #[cfg(feature = "postgres")]
        DbConnection::Pg(_) => true,
    };
    if !postgres {
        return f(conn);
    }
    #[cfg(feature = "postgres")]
    conn.batch_execute(&format!("SELECT pg_advisory_lock({PG_MIGRATION_LOCK})"))
        .map_err(Error::from)?;
    let done = f(conn);
    #[cfg(feature = "postgres")]
    let unlocked = conn
        .batch_execute(&format!("SELECT pg_advisory_unlock({PG_MIGRATION_LOCK})"))
        .map_err(Error::from);
    #[cfg(not(feature = "postgres"))]
    let unlocked: Result<(), Error> = Ok(());
    let done = done?;
    unlocked?;
    Ok(done)
}

/// The names of the migrations not yet applied, oldest first. Only reads.
pub(crate) fn pending(conn: &mut DbConnection) -> Result<Vec<String>, Error> {
    Ok(schema_status(conn)?.pending)
}

/// Where a database's schema stands against this build's migrations
/// ([`Store::schema_status`](super::Store::schema_status)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchemaStatus {
    /// The names of this build's migrations the database has not applied, oldest first (all
    /// of them for a 1.2 database): the director applies them at its start.
    pub pending: Vec<String>,
    /// The versions of the migrations the database records that this build does not know,
    /// oldest first: a newer version of the director upgraded it, and this build refuses to
    /// migrate or serve it ([`Error::SchemaNewer`]).
    pub unknown: Vec<String>,
    /// The version of this build's newest migration (`0008`).
    pub newest_known: String,
}

impl SchemaStatus {
    /// [`Error::SchemaNewer`] when the database records migrations this build does not know.
    pub fn newer_than_build(&self) -> Option<Error> {
        let newest_applied = self.unknown.last()?;
        Some(Error::SchemaNewer {
            newest_applied: newest_applied.clone(),
            newest_known: self.newest_known.clone(),
            unknown: self.unknown.clone(),
            build: env!("CARGO_PKG_VERSION"),
        })
    }
}

/// The database's schema against this build's migrations. Only reads: diesel's own harness
/// creates `__diesel_schema_migrations` when asked what was applied, a write that a read-only
/// connection refuses and that must not happen to a database a tool only looks at.
pub(crate) fn schema_status(conn: &mut DbConnection) -> Result<SchemaStatus, Error> {
    // (version, name) of each migration of this build, oldest first.
    let known: Vec<(String, String)> = match conn {
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(_) => {
            MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE_MIGRATIONS)
                .map(|list| list.iter().map(|m| version_and_name(m.name())).collect())
        }
        #[cfg(feature = "postgres")]
        DbConnection::Pg(_) => MigrationSource::<diesel::pg::Pg>::migrations(&POSTGRES_MIGRATIONS)
            .map(|list| list.iter().map(|m| version_and_name(m.name())).collect()),
    }
    .map_err(Error::Migration)?;
    let mut known = known;
    known.sort_by(|(a, _), (b, _)| version_order(a, b));
    let mut applied = applied_versions(conn)?;
    applied.sort_by(|a, b| version_order(a, b));
    let pending = known
        .iter()
        .filter(|(version, _)| !applied.contains(version))
        .map(|(_, name)| name.clone())
        .collect();
    let unknown = applied
        .into_iter()
        .filter(|version| !known.iter().any(|(known, _)| known == version))
        .collect();
    Ok(SchemaStatus {
        pending,
        unknown,
        newest_known: known
            .last()
            .map(|(version, _)| version.clone())
            .unwrap_or_default(),
    })
}

/// Oldest first: versions are digits (`0008`, or diesel's timestamps), so a longer one is
/// newer, and one as long compares as text.
fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn version_and_name(name: &dyn diesel::migration::MigrationName) -> (String, String) {
    (name.version().to_string(), name.to_string())
}

/// The versions `__diesel_schema_migrations` records; none when the table is absent (a 1.2
/// database, a new one).
fn applied_versions(conn: &mut DbConnection) -> Result<Vec<String>, Error> {
    #[derive(QueryableByName)]
    struct Present {
        #[diesel(sql_type = Bool)]
        present: bool,
    }
    #[derive(QueryableByName)]
    struct Version {
        #[diesel(sql_type = Text)]
        version: String,
    }
    const VERSIONS: &str = "SELECT version FROM __diesel_schema_migrations";
    let versions: Vec<Version> = match conn {
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(c) => {
            let table = diesel::sql_query(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' \
                 AND name = '__diesel_schema_migrations') AS present",
            )
            .get_result::<Present>(c)?;
            if !table.present {
                return Ok(Vec::new());
            }
            diesel::sql_query(VERSIONS).load(c)?
        }
        #[cfg(feature = "postgres")]
        DbConnection::Pg(c) => {
            let table = diesel::sql_query(
                "SELECT to_regclass('__diesel_schema_migrations') IS NOT NULL AS present",
            )
            .get_result::<Present>(c)?;
            if !table.present {
                return Ok(Vec::new());
            }
            diesel::sql_query(VERSIONS).load(c)?
        }
    };
    Ok(versions.into_iter().map(|row| row.version).collect())
}

/// Refuses a database migrated by a newer build ([`Error::SchemaNewer`]).
fn refuse_newer_schema(conn: &mut DbConnection) -> Result<(), Error> {
    match schema_status(conn)?.newer_than_build() {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

#[cfg(feature = "sqlite")]
fn run_pending_sqlite(conn: &mut SqliteConnection) -> Result<Vec<String>, Error> {
    // Migration 2 rebuilds tables that others reference; with foreign keys on,
    // dropping the old `user` table would fail or cascade. The pragma is a no-op
    // inside a transaction and diesel wraps each migration in one, so it is
    // switched here, around the whole run, and back on whatever happens.
    conn.batch_execute("PRAGMA foreign_keys = OFF")
        .map_err(|error| Error::Migration(Box::new(error)))?;
    let ran = conn
        .run_pending_migrations(SQLITE_MIGRATIONS)
        .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
        .map_err(Error::Migration);
    let restored = conn
        .batch_execute("PRAGMA foreign_keys = ON")
        .map_err(|error| Error::Migration(Box::new(error)));
    let ran = ran?;
    restored?;
    if !ran.is_empty() {
        // The migration refuses dangling rows itself; this proves nothing slipped by.
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let violations = diesel::sql_query("SELECT count(*) AS n FROM pragma_foreign_key_check")
            .get_result::<Count>(conn)
            .map_err(Error::from)?;
        if violations.n > 0 {
            return Err(Error::ForeignKeyViolations {
                n_rows: violations.n,
            });
        }
    }
    Ok(ran)
}

#[cfg(feature = "postgres")]
fn run_pending_pg(conn: &mut PgConnection) -> Result<Vec<String>, Error> {
    conn.run_pending_migrations(POSTGRES_MIGRATIONS)
        .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
        .map_err(Error::Migration)
}
