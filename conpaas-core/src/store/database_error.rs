//! [`DatabaseError`]: a failure of the database itself, with diesel's and r2d2's types kept
//! out of the public API (they change with diesel's versions; embedders get a `kind()`).

use std::fmt;

/// What went wrong in the database, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatabaseErrorKind {
    /// Another writer held a lock past the busy timeout (SQLite "database is locked"), a
    /// PostgreSQL lock timeout or serialization failure, or no pooled connection came free in
    /// time: trying again later may work.
    Busy,
    /// The disk (or the database's quota) is full.
    Full,
    /// The database, its file or directory, the role or the server is read-only.
    ReadOnly,
    /// The database file or its pages are damaged (SQLite "database disk image is
    /// malformed", "file is not a database"; PostgreSQL "data corrupted", an invalid page).
    Corrupt,
    /// A unique constraint refused the write.
    UniqueViolation,
    /// Anything else.
    Other,
}

impl fmt::Display for DatabaseErrorKind {
    /// The words the log lines of failed queries carry (`database query failed (busy or
    /// locked)`); clients never see them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatabaseErrorKind::Busy => "busy or locked",
            DatabaseErrorKind::Full => "disk full",
            DatabaseErrorKind::ReadOnly => "read-only",
            DatabaseErrorKind::Corrupt => "corrupt",
            DatabaseErrorKind::UniqueViolation => "unique constraint",
            DatabaseErrorKind::Other => "other",
        })
    }
}

/// A failed query, connection or pool checkout. `Display` and `source` are those of the
/// underlying driver error.
#[derive(Debug)]
pub struct DatabaseError(Inner);

#[derive(Debug)]
enum Inner {
    Query(diesel::result::Error),
    Connect(diesel::ConnectionError),
    Pool(diesel::r2d2::PoolError),
    /// Made by [`DatabaseError::injected`].
    Injected(DatabaseErrorKind),
}

impl DatabaseError {
    pub(crate) fn query(error: diesel::result::Error) -> DatabaseError {
        DatabaseError(Inner::Query(error))
    }

    pub(crate) fn connect(error: diesel::ConnectionError) -> DatabaseError {
        DatabaseError(Inner::Connect(error))
    }

    pub(crate) fn pool(error: diesel::r2d2::PoolError) -> DatabaseError {
        DatabaseError(Inner::Pool(error))
    }

    /// The query error, for the store's own mapping of constraint violations.
    /// A failure of `kind` that no database produced: for fault injection
    /// ([`StoreFaults`](super::StoreFaults)) in simulations and tests.
    pub fn injected(kind: DatabaseErrorKind) -> DatabaseError {
        DatabaseError(Inner::Injected(kind))
    }

    pub(crate) fn as_query(&self) -> Option<&diesel::result::Error> {
        match &self.0 {
            Inner::Query(error) => Some(error),
            Inner::Connect(_) | Inner::Pool(_) | Inner::Injected(_) => None,
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> DatabaseErrorKind {
        use diesel::result::{DatabaseErrorKind as Diesel, Error as Query};
        match &self.0 {
            Inner::Pool(_) => DatabaseErrorKind::Busy,
            Inner::Injected(kind) => *kind,
            Inner::Query(Query::DatabaseError(Diesel::UniqueViolation, _)) => {
                DatabaseErrorKind::UniqueViolation
            }
            Inner::Query(Query::DatabaseError(Diesel::ReadOnlyTransaction, _)) => {
                DatabaseErrorKind::ReadOnly
            }
            Inner::Query(Query::DatabaseError(Diesel::SerializationFailure, _)) => {
                DatabaseErrorKind::Busy
            }
            Inner::Query(Query::DatabaseError(_, info)) => kind_of_message(info.message()),
            Inner::Query(other) => kind_of_message(&other.to_string()),
            Inner::Connect(error) => kind_of_message(&error.to_string()),
        }
    }
}

/// The kind a driver's message names: diesel gives SQLite's busy, full and read-only
/// results, and PostgreSQL's lock timeouts, no kind of their own.
fn kind_of_message(message: &str) -> DatabaseErrorKind {
    let message = message.to_ascii_lowercase();
    let has = |needle: &str| message.contains(needle);
    if has("database is locked")
        || has("database table is locked")
        || has("database is busy")
        || has("lock timeout")
        || has("deadlock detected")
    {
        DatabaseErrorKind::Busy
    } else if has("database or disk is full") || has("no space left on device") {
        DatabaseErrorKind::Full
    } else if has("readonly database")
        || has("read-only")
        || has("read only")
        || has("attempt to write a readonly")
    {
        DatabaseErrorKind::ReadOnly
    } else if has("malformed")
        || has("file is not a database")
        || has("data corrupted")
        || has("invalid page")
        || has("could not read block")
    {
        DatabaseErrorKind::Corrupt
    } else {
        DatabaseErrorKind::Other
    }
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Inner::Query(error) => fmt::Display::fmt(error, f),
            Inner::Connect(error) => fmt::Display::fmt(error, f),
            Inner::Pool(error) => fmt::Display::fmt(error, f),
            Inner::Injected(kind) => write!(f, "injected fault: {kind}"),
        }
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            Inner::Query(error) => error.source(),
            Inner::Connect(error) => error.source(),
            Inner::Pool(error) => error.source(),
            Inner::Injected(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_messages() {
        let cases = [
            ("database is locked", DatabaseErrorKind::Busy),
            (
                "canceling statement due to lock timeout",
                DatabaseErrorKind::Busy,
            ),
            ("database or disk is full", DatabaseErrorKind::Full),
            (
                "attempt to write a readonly database",
                DatabaseErrorKind::ReadOnly,
            ),
            (
                "cannot execute INSERT in a read-only transaction",
                DatabaseErrorKind::ReadOnly,
            ),
            (
                "database disk image is malformed",
                DatabaseErrorKind::Corrupt,
            ),
            ("file is not a database", DatabaseErrorKind::Corrupt),
            (
                "invalid page in block 7 of relation base/16384/16385",
                DatabaseErrorKind::Corrupt,
            ),
            ("no such table: user", DatabaseErrorKind::Other),
        ];
        for (message, kind) in cases {
            assert_eq!(kind_of_message(message), kind, "{message}");
        }
        assert_eq!(DatabaseErrorKind::Busy.to_string(), "busy or locked");
        assert_eq!(DatabaseErrorKind::Full.to_string(), "disk full");
    }
}
