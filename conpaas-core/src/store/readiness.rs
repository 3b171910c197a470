//! Whether the database takes writes, for the director's readiness answer (`/readyz`).

use super::{DbConnection, Error};

/// Checks that the database accepts a write, changing nothing: a write transaction whose one
/// write is rolled back. SQLite: `BEGIN IMMEDIATE` (the write lock, waiting as writers do)
/// and the header's `user_version` set to itself, which a read-only file or mount refuses.
/// PostgreSQL: a read-write transaction locking the `user` table for writing (a standby or a
/// read-only transaction refuses), without waiting for the lock.
pub fn check_writable(conn: &mut DbConnection) -> Result<(), Error> {
    use diesel::RunQueryDsl as _;
    /// Every way out of the transaction rolls it back: a write that worked, or the failure.
    enum Rollback {
        Wrote,
        Failed(Error),
    }
    impl From<Error> for Rollback {
        fn from(error: Error) -> Self {
            Rollback::Failed(error)
        }
    }
    let checked = super::write_transaction(conn, |conn| -> Result<(), Rollback> {
        let wrote = match conn {
            #[cfg(feature = "sqlite")]
            DbConnection::Sqlite(c) => {
                #[derive(diesel::QueryableByName)]
                struct Version {
                    #[diesel(sql_type = diesel::sql_types::Integer)]
                    user_version: i32,
                }
                diesel::sql_query("PRAGMA user_version")
                    .get_result::<Version>(c)
                    .and_then(|version| {
                        diesel::sql_query(format!("PRAGMA user_version = {}", version.user_version))
                            .execute(c)
                    })
            }
            #[cfg(feature = "postgres")]
            DbConnection::Pg(c) => diesel::sql_query("SET TRANSACTION READ WRITE")
                .execute(c)
                .and_then(|_| {
                    diesel::sql_query("LOCK TABLE \"user\" IN ROW EXCLUSIVE MODE NOWAIT").execute(c)
                }),
        };
        match wrote {
            Ok(_) => Err(Rollback::Wrote),
            Err(error) => Err(Rollback::Failed(Error::from(error))),
        }
    });
    match checked {
        Ok(()) | Err(Rollback::Wrote) => Ok(()),
        Err(Rollback::Failed(error)) => Err(error),
    }
}

/// The names of this build's migrations the database has not applied, oldest first (on the
/// request connection: readiness checks must not open connections of their own).
pub fn pending_migrations(conn: &mut DbConnection) -> Result<Vec<String>, Error> {
    super::migrate::pending(conn)
}

/// The database's schema against this build's migrations, on the request connection (see
/// [`Store::schema_status`](super::Store::schema_status)). Only reads.
pub fn schema_status(conn: &mut DbConnection) -> Result<super::SchemaStatus, Error> {
    super::migrate::schema_status(conn)
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use diesel::RunQueryDsl as _;

    use super::*;

    #[tokio::test]
    async fn a_database_that_refuses_writes_is_not_writable() {
        let (store, _dir) = crate::store::test_support::sqlite_store();
        store.run(check_writable).await.unwrap();
        assert!(store.run(pending_migrations).await.unwrap().is_empty());
        // The check changed nothing.
        let users = store.run(crate::store::count_users).await.unwrap();
        assert_eq!(users, 0);
        let refused = store
            .run(|conn| -> Result<(), Error> {
                if let DbConnection::Sqlite(c) = conn {
                    diesel::sql_query("PRAGMA query_only = ON").execute(c)?;
                }
                check_writable(conn)
            })
            .await;
        let error = crate::model::ErrorChain(&refused.unwrap_err()).to_string();
        assert!(error.contains("readonly"), "{error}");
    }
}
