//! Embedded migrations, one set per backend, and how they are run.

#[cfg(feature = "postgres")]
use diesel::PgConnection;
use diesel::connection::SimpleConnection;
#[cfg(feature = "sqlite")]
use diesel::sql_types::BigInt;
#[cfg(feature = "sqlite")]
use diesel::{QueryableByName, RunQueryDsl, SqliteConnection};
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

/// Runs every pending migration; answers the names of those it ran.
pub(crate) fn run_pending(conn: &mut DbConnection) -> Result<Vec<String>, Error> {
    match conn {
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(c) => run_pending_sqlite(c),
        #[cfg(feature = "postgres")]
        DbConnection::Pg(c) => run_pending_pg(c),
    }
}

/// The names of the migrations not yet applied, oldest first.
pub(crate) fn pending(conn: &mut DbConnection) -> Result<Vec<String>, Error> {
    let names = match conn {
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(c) => c
            .pending_migrations(SQLITE_MIGRATIONS)
            .map(|list| list.iter().map(|m| m.name().to_string()).collect()),
        #[cfg(feature = "postgres")]
        DbConnection::Pg(c) => c
            .pending_migrations(POSTGRES_MIGRATIONS)
            .map(|list| list.iter().map(|m| m.name().to_string()).collect()),
    };
    names.map_err(Error::Migration)
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
    // Session-level lock: held across diesel's per-migration transactions.
    conn.batch_execute(&format!("SELECT pg_advisory_lock({PG_MIGRATION_LOCK})"))
        .map_err(Error::from)?;
    let ran = conn
        .run_pending_migrations(POSTGRES_MIGRATIONS)
        .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
        .map_err(Error::Migration);
    let unlocked = conn
        .batch_execute(&format!("SELECT pg_advisory_unlock({PG_MIGRATION_LOCK})"))
        .map_err(Error::from);
    let ran = ran?;
    unlocked?;
    Ok(ran)
}
