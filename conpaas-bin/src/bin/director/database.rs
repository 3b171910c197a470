//! `director migrate-db` (one installation's database copied into another) and `director
//! backup` (SQLite's online copy).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use conpaas_core::config::LoadedConfig;
use conpaas_core::store::{self, DatabaseUrl, Store};

/// `--from`/`--to`: a DATABASE_URI (never echoed: it may hold a password).
pub(super) fn database_url(text: &str) -> Result<DatabaseUrl, String> {
    match text.parse() {
        Ok(DatabaseUrl::SqliteMemory) => Err("an in-memory database holds nothing to copy".into()),
        Ok(url) => Ok(url),
        Err(error) => Err(error.to_string()),
    }
}

/// How a database is named in messages (no password).
fn describe_database(url: &DatabaseUrl) -> String {
    match url {
        DatabaseUrl::Sqlite(path) => format!("the SQLite database {}", path.display()),
        _ => "the PostgreSQL database".to_owned(),
    }
}

pub(super) fn migrate_db(from: DatabaseUrl, to: DatabaseUrl) -> anyhow::Result<ExitCode> {
    if from == to {
        eprintln!("E: --from and --to are the same database");
        return Ok(ExitCode::from(2));
    }
    // Opening a missing SQLite file would create an empty database to copy from.
    if let DatabaseUrl::Sqlite(path) = &from
        && !path.is_file()
    {
        eprintln!(
            "E: there is no database at {}; nothing copied",
            path.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let settings =
        |url: DatabaseUrl| conpaas_core::store::StoreSettings::new(url).max_connections(2);
    let (from_name, to_name) = (describe_database(&from), describe_database(&to));
    // The source is only read (opened read-only): a 1.2 database not yet migrated is refused,
    // not rebuilt.
    let source = Store::open_read_only(&settings(from))?;
    let pending = source.pending_migrations()?;
    if !pending.is_empty() {
        eprintln!(
            "E: {from_name} is not up to date ({} migration(s) pending): start a director on it              once (after a backup: `director backup FILE`), then copy it; nothing copied",
            pending.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    let target = Store::open(&settings(to))?;
    match store::copy_database(&source, &target) {
        Ok(report) => {
            println!("copied {from_name} to {to_name}: {report} (read back from the target)");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("E: {}", conpaas_core::model::ErrorChain(&error));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `director backup FILE`: SQLite's online copy; PostgreSQL is pg_dump's job.
pub(super) fn backup(loaded: &LoadedConfig, file: &Path) -> anyhow::Result<ExitCode> {
    let database = match &loaded.config.store.url {
        DatabaseUrl::Sqlite(path) => path.clone(),
        DatabaseUrl::Postgres(_) => {
            eprintln!(
                "E: DATABASE_URI in {} is a PostgreSQL database: back it up with pg_dump \
                 (e.g. pg_dump -Fc -f FILE DATABASE); nothing copied",
                loaded.path.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        _ => {
            eprintln!("E: the database is in memory: there is nothing to back up");
            return Ok(ExitCode::FAILURE);
        }
    };
    // Opening a missing SQLite file would create an empty database: a backup creates nothing.
    if !database.is_file() {
        eprintln!(
            "E: there is no database at {} (DATABASE_URI in {}); nothing copied",
            database.display(),
            loaded.path.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    // Read-only, never migrated: a backup is what one takes before an upgrade migrates the
    // database, and a 1.2 file is left byte for byte as it was (no WAL switch, no migrations
    // table).
    let store = Store::open_read_only(&loaded.config.store)?;
    let dest = file.to_owned();
    match store.run_blocking(move |conn| store::backup_sqlite(conn, &dest)) {
        Ok(()) => {
            println!(
                "copied the database {} to {}",
                database.display(),
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error @ store::Error::BackupExists { .. }) => {
            eprintln!("E: {error}");
            Ok(ExitCode::FAILURE)
        }
        Err(error) => Err(error).with_context(|| format!("backing up to {}", file.display())),
    }
}
