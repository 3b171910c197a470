//! [`Lease`]: one process at a time for a background job when several directors share one
//! database (replicas on PostgreSQL), so that two replicas never act on the same row or VM
//! at once.

use super::conn::DbConnection;
use super::{Error, Store};

/// The right to run one background job now, held until dropped.
///
/// On PostgreSQL it is a session-level advisory lock (`pg_try_advisory_lock`) on a connection
/// of its own, outside the pool: dropping the lease closes that connection, which releases
/// the lock, and so does the server when the holder's process dies or its connection breaks,
/// so another replica takes over at its next try. On SQLite, one process's database, a lease
/// is always granted.
pub struct Lease {
    /// The session holding the advisory lock (PostgreSQL).
    _session: Option<DbConnection>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("database_session", &self._session.is_some())
            .finish()
    }
}

impl Store {
    /// Takes the lease of `job` (a name shared by the replicas, e.g. `"maintenance"`) unless
    /// another process holds it: `None` then. Blocking (it may open a connection): call it
    /// from a blocking thread, as [`Store::run`] closures run.
    pub fn try_lease(&self, job: &str) -> Result<Option<Lease>, Error> {
        if self.manager.is_sqlite() {
            return Ok(Some(Lease { _session: None }));
        }
        let mut session = self.manager.open()?;
        if try_advisory_lock(&mut session, job)? {
            Ok(Some(Lease {
                _session: Some(session),
            }))
        } else {
            Ok(None)
        }
    }
}

#[cfg(feature = "postgres")]
fn try_advisory_lock(session: &mut DbConnection, job: &str) -> Result<bool, Error> {
    use diesel::RunQueryDsl as _;

    #[derive(diesel::QueryableByName)]
    struct Locked {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        locked: bool,
    }
    let pg = match session {
        DbConnection::Pg(pg) => pg,
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(_) => return Ok(true),
    };
    // Advisory locks are per database, so installations sharing a server do not meet.
    let row: Locked = diesel::sql_query(
        "SELECT pg_try_advisory_lock(hashtext('conpaas:' || $1)::bigint) AS locked",
    )
    .bind::<diesel::sql_types::Text, _>(job)
    .get_result(pg)?;
    Ok(row.locked)
}

#[cfg(not(feature = "postgres"))]
fn try_advisory_lock(_session: &mut DbConnection, _job: &str) -> Result<bool, Error> {
    Ok(true)
}
