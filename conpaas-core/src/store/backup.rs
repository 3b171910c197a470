//! A copy of the SQLite database taken while the director serves (`director backup`).

use std::path::Path;

use super::{DbConnection, Error};

/// Writes a consistent copy of the SQLite database to `dest` with `VACUUM INTO`, SQLite's
/// online copy: it reads one snapshot in a read transaction, so the director's writers go on
/// (WAL mode) and the copy never holds half a transaction. The copy is a plain database file
/// (rollback journal, no `-wal`), opened like any other.
///
/// `dest` is created 0600 (it holds password hashes) and must not exist: a backup never
/// replaces a file ([`Error::BackupExists`]). A copy that fails is removed. On PostgreSQL this
/// is [`Error::BackupUnsupported`]: `pg_dump` is the tool there.
pub fn backup_sqlite(conn: &mut DbConnection, dest: &Path) -> Result<(), Error> {
    // A build without SQLite has only the refusal below, which needs no file name.
    #[cfg(not(feature = "sqlite"))]
    let _ = dest;
    match conn {
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(conn) => vacuum_into(conn, dest),
        #[cfg(feature = "postgres")]
        DbConnection::Pg(_) => Err(Error::BackupUnsupported {
            backend: "postgresql",
        }),
    }
}

#[cfg(feature = "sqlite")]
fn vacuum_into(conn: &mut diesel::SqliteConnection, dest: &Path) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt as _;

    use diesel::RunQueryDsl as _;
    use diesel::sql_types::Text;

    let Some(text) = dest.to_str() else {
        return Err(Error::NonUtf8Path {
            path: dest.to_owned(),
        });
    };
    // SQLite accepts an existing empty file as the target: creating it first makes it ours,
    // with our mode, and refuses one that is there already.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
    {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::BackupExists {
                path: dest.to_owned(),
            });
        }
        Err(source) => {
            return Err(Error::CreateFile {
                path: dest.to_owned(),
                source,
            });
        }
    }
    // A name starting with `file:` would be read as a URI, as in `sqlite_path_text`.
    let target = if text.starts_with("file:") {
        format!("./{text}")
    } else {
        text.to_owned()
    };
    let copied = diesel::sql_query("VACUUM INTO ?")
        .bind::<Text, _>(&target)
        .execute(conn);
    if let Err(error) = copied {
        // Removing the empty or partial copy may fail too; the copy's own error is the news.
        let _ = std::fs::remove_file(dest);
        return Err(Error::from(error));
    }
    Ok(())
}
