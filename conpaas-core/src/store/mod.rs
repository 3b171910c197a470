//! The database: diesel schema, embedded migrations, SQLite and PostgreSQL, passwords.
//! (Being written.)

use std::path::PathBuf;

/// Where the database is: `[director] DATABASE_URI`, in SQLAlchemy's URL form.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatabaseUrl {
    /// `sqlite:///relative/path` or `sqlite:////absolute/path`.
    Sqlite(PathBuf),
    /// `postgresql://user:password@host:port/db` (also `postgres://`, `postgresql+psycopg2://`),
    /// normalised to a libpq URL. Contains a password: never logged.
    Postgres(String),
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            // The URL may carry a password.
            DatabaseUrl::Postgres(_) => f.write_str("Postgres(<redacted>)"),
        }
    }
}

/// The store's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// The database.
    pub url: DatabaseUrl,
    /// Maximum pooled connections.
    pub max_connections: u32,
}

/// Errors of this layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {}
