//! The database: diesel schema, embedded migrations, SQLite and PostgreSQL, passwords.
//!
//! The tables keep ConPaaS 1.2's names and columns (`user`, `application`,
//! `service`), so a 1.2 `director.db` is opened and upgraded in place; see
//! `docs/database.md`. Store functions are synchronous and take a
//! `&mut DbConnection`; async code reaches them through [`Store::run`], which runs
//! them on a blocking thread:
//!
//! ```
//! use conpaas_core::model::{Credit, UserId};
//! use conpaas_core::store::{self, DatabaseUrl, Store, StoreSettings};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let settings =
//!     StoreSettings::new(DatabaseUrl::Sqlite(dir.path().join("director.db"))).max_connections(2);
//! let store = tokio::task::spawn_blocking(move || Store::open(&settings)).await??;
//! // No user 1 yet: nothing is charged.
//! let charged = store.run(|conn| store::decrement_credit(conn, UserId(1), Credit(1))).await?;
//! assert!(!charged);
//! # Ok(())
//! # }
//! ```
//!
//! Short reads by key (who is calling, a user's listing) go through [`Store::read`], which
//! skips the blocking thread on SQLite. Lookups by primary key use `get_result`, not
//! `first`: `first` adds `LIMIT ?`, and SQLite re-prepares a statement whose `LIMIT` is a
//! bound parameter at every execution (its planner reads the bound value), which cost a
//! fifth of `/listapp`'s CPU.
//!
//! Without a backend (the `sqlite` or `postgres` feature) the module holds only the settings
//! values: [`DatabaseUrl`] and [`StoreSettings`].
//!
#![cfg_attr(
    not(feature = "store"),
    doc = "[`Store`]: crate#features\n[`Store::run`]: crate#features\n\
           [`Store::read`]: crate#features\n[`Store::open_in_memory`]: crate#features"
)]

use std::path::PathBuf;
#[cfg(feature = "store")]
use std::sync::Arc;
#[cfg(feature = "store")]
use std::time::Duration;

#[cfg(feature = "store")]
use diesel::r2d2::Pool;

#[cfg(feature = "store")]
use crate::model::{AppId, Credit, UserId};

#[cfg(feature = "store")]
mod agents;
#[cfg(feature = "store")]
mod applications;
#[cfg(feature = "store")]
mod audit;
#[cfg(feature = "store")]
mod audit_stream;
#[cfg(feature = "store")]
mod backup;
#[cfg(feature = "store")]
mod certificates;
#[cfg(feature = "store")]
mod charges;
#[cfg(feature = "store")]
mod conn;
#[cfg(feature = "store")]
mod copy;
#[cfg(feature = "store")]
mod database_error;
#[cfg(feature = "store")]
mod faults;
#[cfg(feature = "store")]
mod hashing;
#[cfg(feature = "store")]
mod installation;
#[cfg(feature = "store")]
mod lease;
#[cfg(feature = "store")]
mod migrate;
#[cfg(feature = "store")]
pub mod names;
#[cfg(feature = "store")]
pub mod password;
#[cfg(feature = "store")]
mod readiness;
#[cfg(feature = "store")]
mod rows;
#[cfg(feature = "store")]
mod schema;
#[cfg(feature = "store")]
mod services;
#[cfg(feature = "store")]
mod stats;
#[cfg(feature = "store")]
mod users;

#[cfg(feature = "store")]
pub use agents::{
    AgentRefusal, AgentVm, agent_vms, claim_agent, complete_agent, count_agents_of_service,
    delete_cloud_key, find_agent, find_cloud_key, forget_agent, insert_agent,
    list_agents_of_service, list_agents_of_user, list_all_agents, list_unsettled_agents,
    record_claimed_agent_vm, set_cloud_key,
};
#[cfg(feature = "store")]
pub use applications::{
    create_application, create_application_capped, default_application, delete_application_owned,
    find_application_by_name, find_application_owned, list_applications, list_applications_of_user,
    rename_application_owned,
};
#[cfg(all(feature = "store", feature = "api"))]
pub(crate) use audit::bounded_text;
#[cfg(feature = "store")]
pub use audit::{
    AuditEvent, AuditQuery, MAX_AUDIT_TEXT, NewAuditEvent, list_audit_events, record_audit_event,
    record_audit_events,
};
#[cfg(feature = "store")]
pub use audit_stream::{AUDIT_STREAM_CAPACITY, AuditStreamError, AuditSubscription};
#[cfg(feature = "store")]
pub use backup::backup_sqlite;
#[cfg(feature = "store")]
pub use certificates::{IssuedCertificate, NewCertificate, find_certificate, record_certificate};
#[cfg(feature = "store")]
pub use charges::{
    CHARGE_RETENTION, Charge, ChargeApplied, ChargeRule, apply_charge, charge_applied,
    prune_charges,
};
#[cfg(feature = "store")]
pub use conn::{DbConnection, write_transaction};
#[cfg(feature = "store")]
pub use copy::{CopyReport, copy_database};
#[cfg(feature = "store")]
pub use database_error::{DatabaseError, DatabaseErrorKind};
#[cfg(feature = "store")]
pub use faults::StoreFaults;
#[cfg(feature = "store")]
pub use hashing::{HashingKey, HashingPool, HashingSettings};
#[cfg(feature = "store")]
pub use installation::{
    HoldCheck, Installation, ReaperHold, Release, advance_service_ids, find_installation,
    has_history, highest_allocated_sid, hold_reaper, record_installation, release_reaper,
};
#[cfg(feature = "store")]
pub use lease::Lease;
#[cfg(feature = "store")]
pub use migrate::SchemaStatus;
#[cfg(feature = "store")]
pub use readiness::{check_writable, pending_migrations, schema_status};
#[cfg(feature = "store")]
pub use services::{
    AbandonedVm, ConditionalDelete, INITIAL_STATE, ManagerVm, NewService, claim_service,
    complete_service, delete_service, delete_service_if_vm, find_service, find_service_owned,
    forget_abandoned, forget_incomplete_service, forget_service, insert_service, insert_service_at,
    insert_service_capped, list_abandoned, list_all_services, list_incomplete_services,
    list_services_for_application_owned, list_services_for_user, list_services_of_user,
    list_unsettled_services, record_abandoned, record_abandoned_vm, rename_service_owned,
    service_vms,
};
#[cfg(feature = "store")]
pub use stats::{StateCounts, state_counts};
#[cfg(feature = "store")]
pub use users::{
    CreditChanged, DeletedUser, LoginRecord, NewPassword, NewUser, RESERVED_USERNAME, UserSummary,
    add_credit, change_credit, charge_owed, count_users, create_user, decrement_credit,
    delete_user, find_colliding_username, find_login, find_user, find_user_by_username,
    list_user_summaries, login, set_password_hash, set_user_disabled, upgrade_password_hash,
    user_summary, users_without_credit,
};

/// The name of the application every new account starts with (1.2's default).
#[cfg(feature = "store")]
pub const DEFAULT_APPLICATION_NAME: &str = "New Application";

/// Where the database is: `[director] DATABASE_URI`, in SQLAlchemy's URL form, parsed by
/// [`str::parse`] (the director's configuration refuses [`DatabaseUrl::SqliteMemory`]).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatabaseUrl {
    /// `sqlite:///relative/path` or `sqlite:////absolute/path`. The path `:memory:` means
    /// [`DatabaseUrl::SqliteMemory`], as it does to SQLite, never a file of that name.
    Sqlite(PathBuf),
    /// An SQLite database in memory, private to one [`Store`] and its clones and gone when
    /// the last is dropped: `sqlite://`, `sqlite://:memory:` or `sqlite:///:memory:`. For
    /// tests and embedders; see [`Store::open_in_memory`].
    ///
    #[cfg_attr(
        not(feature = "store"),
        doc = "[`Store`]: crate#features\n[`Store::open_in_memory`]: crate#features"
    )]
    SqliteMemory,
    /// `postgresql://user:password@host:port/db` (also `postgres://`, `postgresql+psycopg2://`),
    /// normalised to a libpq URL. Contains a password: never logged.
    Postgres(String),
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            DatabaseUrl::SqliteMemory => f.write_str("SqliteMemory"),
            // The URL may carry a password.
            DatabaseUrl::Postgres(_) => f.write_str("Postgres(<redacted>)"),
        }
    }
}

/// A text that is none of the [`DatabaseUrl`] forms. The text is not repeated: it may hold a
/// password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected a database URL: sqlite:///RELATIVE/PATH, sqlite:////ABSOLUTE/PATH, \
     sqlite://:memory: or postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE"
)]
#[non_exhaustive]
pub struct InvalidDatabaseUrl;

impl std::str::FromStr for DatabaseUrl {
    type Err = InvalidDatabaseUrl;

    /// SQLAlchemy's forms. Anything else is refused rather than guessed at, so that a typo
    /// never opens a new, empty database.
    fn from_str(text: &str) -> Result<DatabaseUrl, InvalidDatabaseUrl> {
        // `sqlite://` with no path is SQLAlchemy's in-memory database.
        if matches!(
            text,
            "sqlite://" | "sqlite://:memory:" | "sqlite:///:memory:"
        ) {
            return Ok(DatabaseUrl::SqliteMemory);
        }
        if let Some(path) = text.strip_prefix("sqlite:///") {
            // A query string is SQLAlchemy syntax we do not interpret.
            if path.is_empty() || path.contains('?') {
                return Err(InvalidDatabaseUrl);
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        for scheme in ["postgresql+psycopg2://", "postgresql://", "postgres://"] {
            if let Some(rest) = text.strip_prefix(scheme) {
                // libpq takes the same URL with its own scheme name.
                return Ok(DatabaseUrl::Postgres(format!("postgresql://{rest}")));
            }
        }
        Err(InvalidDatabaseUrl)
    }
}

/// The store's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreSettings {
    /// The database.
    pub url: DatabaseUrl,
    /// Maximum pooled connections.
    pub max_connections: u32,
}

impl StoreSettings {
    /// [`max_connections`](Self::max_connections) when not set: 8.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;

    /// The database at `url`, with [`DEFAULT_MAX_CONNECTIONS`](Self::DEFAULT_MAX_CONNECTIONS).
    pub fn new(url: DatabaseUrl) -> Self {
        StoreSettings {
            url,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
        }
    }

    setters! {
        url: DatabaseUrl,
        max_connections: u32,
    }
}

/// Errors of this layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[cfg(feature = "store")]
pub enum Error {
    /// The SQLite file's directory does not exist. SQLite creates a missing file but
    /// never a directory, and a mistyped path must not become a new empty database
    /// somewhere else.
    #[error("the directory of the sqlite database {} does not exist", path.display())]
    DatabaseDirectoryMissing {
        /// The database file.
        path: PathBuf,
    },
    /// The SQLite file does not exist, and the store was opened for reading only
    /// ([`Store::open_read_only`]), which creates nothing.
    #[error("there is no sqlite database at {}", path.display())]
    DatabaseMissing {
        /// The database file.
        path: PathBuf,
    },
    /// The SQLite file could not be created.
    #[error("cannot create the sqlite database {}", path.display())]
    CreateFile {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The SQLite path is not valid UTF-8, which diesel cannot pass to SQLite.
    #[error("the sqlite database path {} is not valid utf-8", path.display())]
    NonUtf8Path {
        /// The database file.
        path: PathBuf,
    },
    /// The URL names a backend this build of conpaas-core leaves out (its Cargo feature,
    /// `sqlite` or `postgres`, is off).
    #[error("this build has no {backend} support (enable conpaas-core's `{backend}` feature)")]
    BackendNotCompiled {
        /// The feature: `sqlite` or `postgres`.
        backend: &'static str,
    },
    /// Opening a connection failed.
    #[error("cannot connect to the database {target}")]
    Connect {
        /// The SQLite file, or `postgresql` (the URL may hold a password).
        target: String,
        /// Why.
        #[source]
        source: DatabaseError,
    },
    /// Setting the per-connection SQLite options (WAL, foreign keys, busy timeout) failed,
    /// e.g. on a read-only file or directory (WAL mode writes the file and creates `-wal`).
    #[error("cannot configure the sqlite connection to {target}")]
    Configure {
        /// The SQLite file, or "an in-memory sqlite database".
        target: String,
        /// Why.
        #[source]
        source: DatabaseError,
    },
    /// No pooled connection became free in time, or none could be opened.
    #[error("no database connection available ({})", .0.kind())]
    Pool(#[source] DatabaseError),
    /// A migration failed; the database is left at the last migration that succeeded
    /// (each runs in its own transaction).
    #[error("database migration failed")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// After migrating, SQLite's `foreign_key_check` found rows pointing nowhere.
    #[error("the database has {n_rows} row(s) violating foreign keys after migrating")]
    ForeignKeyViolations {
        /// How many.
        n_rows: i64,
    },
    /// The database records migrations this build does not know: a newer version of the
    /// director upgraded it. Nothing was run: a build must not work on a schema it does not
    /// know, and migrations cannot be undone (restore the backup taken before the upgrade).
    #[error(
        "the database's schema is newer than this build's: it records migration {newest_applied}, \
         and this build (conpaas-core {build}) knows migrations up to {newest_known}; run the \
         version that upgraded it (or a newer one), or restore the backup taken before that \
         upgrade"
    )]
    SchemaNewer {
        /// The newest migration version the database records.
        newest_applied: String,
        /// The newest migration version this build has.
        newest_known: String,
        /// Every recorded migration version this build does not know, oldest first.
        unknown: Vec<String>,
        /// This build's version (conpaas-core's).
        build: &'static str,
    },
    /// A query failed. The message names the kind of failure (busy or locked, disk full,
    /// read-only, corrupt...) for the log; the api answers clients without it.
    #[error("database query failed ({})", .0.kind())]
    Query(#[source] DatabaseError),
    /// Hashing a password failed.
    #[error("cannot hash the password")]
    PasswordHash(#[from] argon2::password_hash::Error),
    /// The memory of a password hash (19 MiB with the default parameters, what a stored hash
    /// asks for otherwise) could not be allocated.
    #[error("cannot allocate the memory of a password hash")]
    HashingMemory,
    /// Every worker of the [`HashingPool`] was busy and its queue stayed full for the
    /// configured wait: the password was not checked.
    #[error("the password hashing queue stayed full for {waited:?}")]
    HashingBusy {
        /// How long the call waited for a place in the queue.
        waited: Duration,
    },
    /// The [`HashingPool`] stopped (its workers are gone) before answering.
    #[error("the password hashing pool has stopped")]
    HashingStopped,
    /// A thread of the [`HashingPool`] could not be started.
    #[error("cannot start a password hashing thread")]
    HashingThread(#[source] std::io::Error),
    /// A pre-made password hash is neither an argon2 PHC string nor a 1.2 MD5
    /// digest (perhaps a plaintext password passed as a hash). The value is not
    /// repeated here.
    #[error("the password hash is in no known format")]
    UnknownPasswordHash,
    /// [`copy_database`]'s target already holds rows: nothing was written.
    #[error("the target database is not empty: {found}")]
    TargetNotEmpty {
        /// What it holds.
        found: CopyReport,
    },
    /// [`copy_database`] read back other counts or credit than it copied: rolled back.
    #[error(
        "the copy does not match its source (expected {expected}; found {found}); nothing was committed"
    )]
    CopyMismatch {
        /// What the source held (boxed: the error stays small on the paths that never copy).
        expected: Box<CopyReport>,
        /// What the target held before committing.
        found: Box<CopyReport>,
    },
    /// The blocking task running a store call was cancelled (the runtime is
    /// shutting down).
    #[error("the database task was cancelled")]
    Cancelled,
    /// A user with this user name exists (`/new_user`: `Username "<name>" already taken`).
    #[error("user name {0:?} already taken")]
    UsernameTaken(String),
    /// A user with this e-mail exists (`/new_user`: `E-mail "<email>" already registered`).
    #[error("e-mail {0:?} already registered")]
    EmailTaken(String),
    /// The user name is reserved (`CA`: see [`RESERVED_USERNAME`]).
    #[error("user name {0:?} is reserved")]
    UsernameReserved(String),
    /// No user has this id.
    #[error("user {0} not found")]
    UserNotFound(UserId),
    /// The user already has an application of this name (`/createapp`).
    #[error("application name {name:?} already taken by user {uid}")]
    ApplicationNameTaken {
        /// The owner.
        uid: UserId,
        /// The name asked for.
        name: String,
    },
    /// The application does not exist or belongs to another user.
    #[error("application {0} not found")]
    ApplicationNotFound(AppId),
    /// The application still holds services, which must be stopped (VM destroyed,
    /// row deleted) first.
    #[error("application {aid} still has {n_services} service(s)")]
    ApplicationNotEmpty {
        /// The application.
        aid: AppId,
        /// How many services remain.
        n_services: i64,
    },
    /// Another service of the application already has this subnet (a concurrent
    /// start won; the unique constraint caught it).
    #[error("subnet {subnet} already used in application {application_id}")]
    SubnetTaken {
        /// The application.
        application_id: AppId,
        /// The subnet chosen.
        subnet: String,
    },
    /// The user has as many applications or services as the director allows
    /// (`[director] MAX_APPLICATIONS_PER_USER`, `MAX_SERVICES_PER_USER`).
    #[error("user {uid} already has the most {what} allowed ({max})")]
    LimitReached {
        /// The user.
        uid: UserId,
        /// `applications` or `services`.
        what: &'static str,
        /// The cap.
        max: u32,
    },
    /// A credit amount or initial credit was negative.
    #[error("negative credit amount {0}")]
    NegativeAmount(Credit),
    /// An operator's credit change would take the credit below zero ([`change_credit`]).
    #[error("user {uid} has {credit} credit: {change} would take it below 0")]
    CreditBelowZero {
        /// The user.
        uid: UserId,
        /// Their credit, unchanged.
        credit: Credit,
        /// The change refused.
        change: crate::model::CreditChange,
    },
    /// An operator's credit change would take the credit past the largest integer the column
    /// holds ([`change_credit`]).
    #[error("user {uid} has {credit} credit: {change} would overflow it")]
    CreditOverflow {
        /// The user.
        uid: UserId,
        /// Their credit, unchanged.
        credit: Credit,
        /// The change refused.
        change: crate::model::CreditChange,
    },
    /// The user still has services ([`delete_user`]): each is a VM the accounting keeps, to be
    /// stopped first.
    #[error("user {uid} still has {} service(s)", services.len())]
    UserHasServices {
        /// The user.
        uid: UserId,
        /// Their services, ascending.
        services: Vec<crate::model::ServiceId>,
    },
    /// A certificate with this serial was recorded before.
    #[error("certificate serial {0} already issued")]
    SerialTaken(String),
    /// A serial number is not hexadecimal text.
    #[error("certificate serial {0:?} is not hexadecimal")]
    InvalidSerial(String),
    /// The file a backup was to be written to exists ([`backup_sqlite`] never replaces one).
    #[error("{} exists: a backup never replaces a file; remove it or name another", path.display())]
    BackupExists {
        /// The file.
        path: PathBuf,
    },
    /// The database cannot be copied by the director ([`backup_sqlite`] on PostgreSQL).
    #[error("the director does not copy a {backend} database: use pg_dump")]
    BackupUnsupported {
        /// The backend: `postgresql`.
        backend: &'static str,
    },
}

/// `?` on a diesel query inside a store function or a [`Store::run`] closure. The closures
/// take a [`DbConnection`] and so are diesel code already; the error itself is wrapped.
#[cfg(feature = "store")]
impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Error {
        Error::Query(DatabaseError::query(error))
    }
}

#[cfg(feature = "store")]
impl Error {
    /// No pooled connection came free in time, or none could be opened.
    pub(crate) fn pool(error: diesel::r2d2::PoolError) -> Error {
        Error::Pool(DatabaseError::pool(error))
    }

    /// The per-connection SQLite settings of `target` failed.
    #[cfg(feature = "sqlite")]
    pub(crate) fn configure(target: &str, error: diesel::result::Error) -> Error {
        Error::Configure {
            target: target.to_owned(),
            source: DatabaseError::query(error),
        }
    }

    /// The database failure under this error, if it is one (for [`DatabaseError::kind`]).
    pub fn database(&self) -> Option<&DatabaseError> {
        match self {
            Error::Connect { source, .. } | Error::Configure { source, .. } => Some(source),
            Error::Pool(source) | Error::Query(source) => Some(source),
            _ => None,
        }
    }
}

/// Whether a database error is about `column` (a unique-violation's column or
/// constraint name, which the backends report differently).
#[cfg(feature = "store")]
pub(crate) fn violation_mentions(
    info: &dyn diesel::result::DatabaseErrorInformation,
    column: &str,
) -> bool {
    info.column_name().is_some_and(|c| c == column)
        || info.constraint_name().is_some_and(|c| c.contains(column))
        || info.message().contains(&format!(".{column}"))
}

/// The database, as a pool of connections. Cheap to clone; clones share the pool.
#[derive(Clone)]
#[cfg(feature = "store")]
pub struct Store {
    pool: Pool<conn::Manager>,
    /// Opens the unpooled connections migrations run on.
    manager: conn::Manager,
    /// Taken by every [`Store::run`] on SQLite (see there); `None` on PostgreSQL.
    writer: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Failures injected into [`Store::run`] and [`Store::read`] ([`Store::with_faults`]).
    faults: Option<Arc<dyn StoreFaults>>,
    /// Calls run on the calling thread ([`Store::inline`]).
    inline: bool,
    /// Committed audit events, to their subscribers ([`Store::subscribe_audit`]).
    audit: audit_stream::AuditSender,
}

#[cfg(feature = "store")]
impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("state", &self.pool.state())
            .finish_non_exhaustive()
    }
}

/// Where a store call stands when [`StoreFaults`] is asked.
#[cfg(feature = "store")]
#[derive(Clone, Copy)]
enum FaultPoint {
    Before,
    After,
}

/// How long a caller waits for a free pooled connection before
/// [`Error::Pool`].
#[cfg(feature = "store")]
const POOL_CHECKOUT_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(feature = "store")]
impl Store {
    /// Opens the database and runs the pending migrations ([`Store::migrate`]).
    ///
    /// A missing SQLite file is created when its directory exists
    /// ([`Error::DatabaseDirectoryMissing`] otherwise). Back up a 1.2 database
    /// before its first opening: migration 2 rebuilds its tables.
    pub fn open(settings: &StoreSettings) -> Result<Store, Error> {
        let store = Store::connect(settings)?;
        store.migrate()?;
        Ok(store)
    }

    /// A new, migrated SQLite database in memory ([`DatabaseUrl::SqliteMemory`]), for tests
    /// and embedders' unit tests: private to this store and its clones, gone when the last
    /// is dropped. Calls are served one at a time (one pooled connection).
    ///
    /// ```
    /// use conpaas_core::store::{self, Store};
    ///
    /// let store = Store::open_in_memory()?;
    /// let n = store.run_blocking(store::count_users)?;
    /// assert_eq!(n, 0);
    /// # Ok::<(), conpaas_core::store::Error>(())
    /// ```
    pub fn open_in_memory() -> Result<Store, Error> {
        Store::open(&StoreSettings {
            url: DatabaseUrl::SqliteMemory,
            max_connections: 1,
        })
    }

    /// Opens the database for reading only: nothing is created, migrated or written. An
    /// SQLite file is opened with `mode=ro` (`SQLITE_OPEN_READONLY`) and keeps its journal mode
    /// (a 1.2 file stays in rollback-journal mode; a file in WAL mode gets the `-wal` and `-shm`
    /// files every reader needs); no migrations table is created
    /// ([`pending_migrations`](Self::pending_migrations) and
    /// [`schema_status`](Self::schema_status) only read); a PostgreSQL session's transactions
    /// are read-only. For the tools said to only read: `cpscheck`, `director backup`,
    /// `director audit`, the source of `director migrate-db`.
    ///
    /// A missing SQLite file is [`Error::DatabaseMissing`]. Writes through this store fail
    /// ([`DatabaseErrorKind::ReadOnly`]).
    pub fn open_read_only(settings: &StoreSettings) -> Result<Store, Error> {
        Store::with_manager(conn::Manager::read_only(settings.url.clone())?, settings)
    }

    /// Opens the database without migrating it (for diagnostics:
    /// [`Store::pending_migrations`]). One connection is opened at once, so a bad
    /// URL or path fails here with its own error.
    pub fn connect(settings: &StoreSettings) -> Result<Store, Error> {
        Store::with_manager(conn::Manager::new(settings.url.clone())?, settings)
    }

    /// A store of connections `manager` opens.
    fn with_manager(manager: conn::Manager, settings: &StoreSettings) -> Result<Store, Error> {
        // Fail now with the real reason rather than after r2d2's timeout with a
        // summary of it.
        drop(manager.open()?);
        // An in-memory database is shared between connections by SQLite's shared cache,
        // whose table locks fail at once (no busy timeout) when two connections meet: one
        // connection serves every call, and migrations run on it too.
        let max_size = if manager.in_memory() {
            1
        } else {
            settings.max_connections.max(1)
        };
        let pool = Pool::builder()
            .max_size(max_size)
            // Connections are opened on demand; the probe above proved they can be.
            .min_idle(Some(0))
            // A server's connection can die while idle (a restart, an idle timeout): ping it
            // before use. A local SQLite file's cannot, and the ping would double the cost
            // of a short read.
            .test_on_check_out(!manager.is_sqlite())
            .connection_timeout(POOL_CHECKOUT_TIMEOUT)
            .build_unchecked(manager.clone());
        let writer = manager
            .is_sqlite()
            .then(|| Arc::new(tokio::sync::Mutex::new(())));
        Ok(Store {
            pool,
            manager,
            writer,
            faults: None,
            inline: false,
            audit: audit_stream::AuditSender::new(),
        })
    }

    /// Runs the migrations not yet applied; answers their names (empty when the
    /// database is up to date).
    pub fn migrate(&self) -> Result<Vec<String>, Error> {
        let ran = self.with_migration_connection(migrate::run_pending)?;
        for name in &ran {
            tracing::info!(migration = %name, "applied database migration");
        }
        Ok(ran)
    }

    /// The names of the migrations not yet applied, oldest first. Only reads: a database
    /// without a migrations table (1.2's) has every migration pending.
    pub fn pending_migrations(&self) -> Result<Vec<String>, Error> {
        self.with_migration_connection(migrate::pending)
    }

    /// The database's schema against this build's migrations: those not yet applied, and
    /// those applied that this build does not know (a newer version's, which
    /// [`migrate`](Self::migrate) refuses to run beside). Only reads.
    pub fn schema_status(&self) -> Result<SchemaStatus, Error> {
        self.with_migration_connection(migrate::schema_status)
    }

    /// Runs `f` on the connection migrations use: one of its own, closed afterwards, since
    /// migrating switches SQLite's foreign keys off for a while and no pooled connection may
    /// keep that; for an in-memory database the pooled one (see [`Store::connect`]), on which
    /// the migration switches them back on whatever happens.
    fn with_migration_connection<T>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if self.manager.in_memory() {
            let mut conn = self.pool.get().map_err(Error::pool)?;
            f(&mut conn)
        } else {
            let mut conn = self.manager.open()?;
            f(&mut conn)
        }
    }

    /// Runs `f` with a pooled connection on a blocking thread: the one door from
    /// async code into the store. Put a whole transaction in one `f`, with no
    /// network call inside. A panic in `f` is resumed in the caller.
    ///
    /// `f` may return any error that a store error converts into, so a use-case
    /// can mix store calls with its own checks in one closure.
    ///
    /// On SQLite the calls of `run` of one store are made one at a time, in the order they
    /// came, waiting here without holding a thread. SQLite has a single writer, and a
    /// writer that finds the database locked sleeps in its busy handler and retries (up to
    /// 100 ms a try): 16 managers decrementing credit at once had a p99 of 117 ms that
    /// way. Queued here, a write waits only for the writes before it. Reads by
    /// [`Store::read`] are not queued.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        self.injected(true, FaultPoint::Before)?;
        let turn = match &self.writer {
            Some(writer) => Some(writer.clone().lock_owned().await),
            None => None,
        };
        let done = if self.inline {
            let _turn = turn;
            let mut conn = self.pool.get().map_err(Error::pool)?;
            let _publish = self.audit.scope();
            f(&mut conn)?
        } else {
            let publish = self.audit.clone();
            self.on_blocking_thread(turn, move |conn| {
                let _publish = publish.scope();
                f(conn)
            })
            .await?
        };
        self.injected(true, FaultPoint::After)?;
        Ok(done)
    }

    /// This store (sharing its connections with the original) with `faults` deciding which
    /// of its [`run`](Self::run) and [`read`](Self::read) calls fail: for simulations and
    /// tests of how callers bear a failing database. The original store is unaffected.
    pub fn with_faults(mut self, faults: Arc<dyn StoreFaults>) -> Store {
        self.faults = Some(faults);
        self
    }

    /// This store with every call run on the calling thread, one at a time, instead of on
    /// tokio's blocking pool: a deterministic order for simulations on a current-thread
    /// runtime (with [`Store::open_in_memory`]). Never in a server: each call blocks an
    /// async worker for its whole duration.
    pub fn inline(mut self) -> Store {
        self.inline = true;
        self
    }

    /// The failure [`StoreFaults`] injects at `point`, if any.
    fn injected(&self, write: bool, point: FaultPoint) -> Result<(), Error> {
        let Some(faults) = &self.faults else {
            return Ok(());
        };
        let kind = match point {
            FaultPoint::Before => faults.before(write),
            FaultPoint::After => faults.after(write),
        };
        match kind {
            Some(kind) => Err(Error::Query(DatabaseError::injected(kind))),
            None => Ok(()),
        }
    }

    /// Runs `f` with a pooled connection on a blocking thread, holding `turn` until it is done.
    async fn on_blocking_thread<T, E, F>(
        &self,
        turn: Option<tokio::sync::OwnedMutexGuard<()>>,
        f: F,
    ) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let pool = self.pool.clone();
        let task = tokio::task::spawn_blocking(move || {
            // Held until the work is done, even if the caller stops waiting.
            let _turn = turn;
            let mut conn = pool.get().map_err(Error::pool)?;
            f(&mut conn)
        });
        match task.await {
            Ok(res) => res,
            Err(join_err) => match join_err.try_into_panic() {
                Ok(payload) => std::panic::resume_unwind(payload),
                Err(_) => Err(Error::Cancelled.into()),
            },
        }
    }

    /// Like [`Store::run`], for a read of a few rows by key that takes microseconds (who is
    /// calling, a user's listing). On SQLite, when a pooled connection is idle, `f` runs at
    /// once on the calling thread: a hop to the blocking pool and back would cost more than
    /// the read (thread wake-ups dominated the profile of `/listapp`), and a read in WAL
    /// mode never waits for a writer. Otherwise (PostgreSQL, whose reads cross the network;
    /// no idle connection) it runs on a blocking thread as [`Store::run`] does, without
    /// queueing behind the writes. `f` must not write or loop over a table.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        self.injected(false, FaultPoint::Before)?;
        let done = if self.inline {
            let mut conn = self.pool.get().map_err(Error::pool)?;
            f(&mut conn)?
        } else if self.manager.is_sqlite()
            && let Some(mut conn) = self.pool.try_get()
        {
            f(&mut conn)?
        } else {
            self.on_blocking_thread(None, f).await?
        };
        self.injected(false, FaultPoint::After)?;
        Ok(done)
    }

    /// Runs `f` with a pooled connection on the current thread, for synchronous
    /// callers (the command-line tools). Never call it on the async runtime.
    pub fn run_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E>,
        E: From<Error>,
    {
        let mut conn = self.pool.get().map_err(Error::pool)?;
        let _publish = self.audit.scope();
        f(&mut conn)
    }

    /// Every audit event this store (or a clone) commits from now on, as it commits: the
    /// director's own events and any an embedder records with
    /// [`record_audit_events`]. Bounded and lossy: see [`AuditSubscription`] and
    /// [`AUDIT_STREAM_CAPACITY`]. An event whose commit's answer was lost (the database or
    /// the network failed during COMMIT) may be in the table but not in the stream.
    ///
    /// ```
    /// use conpaas_core::director::audit::{AuditOutcome, Event};
    /// use conpaas_core::store::{self, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = Store::open_in_memory()?;
    /// let mut events = store.subscribe_audit();
    /// let event = Event::new("backup.done", AuditOutcome::Ok).to_new();
    /// store.run(move |conn| store::record_audit_event(conn, &event)).await?;
    /// let seen = events.recv().await?;
    /// assert_eq!((seen.id, seen.event.as_str()), (1, "backup.done"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn subscribe_audit(&self) -> AuditSubscription {
        self.audit.subscribe()
    }
}

#[cfg(test)]
#[cfg(feature = "store")]
pub(crate) mod test_support {
    //! A fresh migrated SQLite store in a temporary directory.

    use super::*;

    /// The store and the directory holding its file (dropped last).
    pub(crate) fn sqlite_store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let settings = StoreSettings {
            url: DatabaseUrl::Sqlite(dir.path().join("director.db")),
            max_connections: 4,
        };
        (Store::open(&settings).unwrap(), dir)
    }

    /// A user with a pre-made MD5 hash (no argon2 work, tests stay fast).
    pub(crate) fn new_user(name: &str, credit: i64) -> NewUser {
        NewUser {
            username: name.to_owned(),
            fname: Some("F".to_owned()),
            lname: Some("L".to_owned()),
            email: Some(format!("{name}@example.org")),
            affiliation: Some("A".to_owned()),
            password: NewPassword::Hash(password::md5_hex("secret").into()),
            credit: Credit(credit),
        }
    }
}

#[cfg(test)]
#[cfg(feature = "store")]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn missing_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("director.db");
        let settings = StoreSettings {
            url: DatabaseUrl::Sqlite(path.clone()),
            max_connections: 2,
        };
        let err = Store::open(&settings).unwrap_err();
        assert!(
            matches!(&err, Error::DatabaseDirectoryMissing { path: p } if *p == path),
            "{err:?}"
        );
        assert!(err.to_string().contains("no-such-dir"), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn fresh_database_is_created_and_migrated_once() {
        let (store, dir) = sqlite_store();
        assert!(dir.path().join("director.db").exists());
        assert_eq!(store.pending_migrations().unwrap(), Vec::<String>::new());
        assert_eq!(store.migrate().unwrap(), Vec::<String>::new());
        // Reopening runs nothing either.
        let settings = StoreSettings {
            url: DatabaseUrl::Sqlite(dir.path().join("director.db")),
            max_connections: 1,
        };
        let again = Store::connect(&settings).unwrap();
        assert!(again.pending_migrations().unwrap().is_empty());
    }

    #[test]
    fn connect_without_migrating_reports_pending() {
        let dir = tempfile::tempdir().unwrap();
        let settings = StoreSettings {
            url: DatabaseUrl::Sqlite(dir.path().join("director.db")),
            max_connections: 1,
        };
        let store = Store::connect(&settings).unwrap();
        let pending = store.pending_migrations().unwrap();
        // One per directory of migrations/sqlite.
        let n_migrations =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
                .unwrap()
                .count();
        assert_eq!(pending.len(), n_migrations, "{pending:?}");
        assert!(pending[0].starts_with("0001"), "{pending:?}");
        assert_eq!(store.migrate().unwrap().len(), n_migrations);
        assert!(store.pending_migrations().unwrap().is_empty());
    }

    /// `cpscheck`, `director backup` and `director audit` open the database read-only: an
    /// SQLite file in rollback-journal mode (1.2's) keeps every byte, gets no migrations
    /// table and no `-wal`; a write is refused; a missing file is not created.
    #[test]
    fn a_read_only_store_writes_nothing() {
        use diesel::Connection as _;
        use diesel::connection::SimpleConnection as _;
        let dir = tempfile::tempdir().unwrap();
        // Characters a `file:` URI must escape.
        let path = dir.path().join("a ?#%25 name.db");
        let mut raw = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        raw.batch_execute("CREATE TABLE user (uid INTEGER PRIMARY KEY, username TEXT)")
            .unwrap();
        drop(raw);
        let before = std::fs::read(&path).unwrap();

        let store =
            Store::open_read_only(&StoreSettings::new(DatabaseUrl::Sqlite(path.clone()))).unwrap();
        let schema = store.schema_status().unwrap();
        assert!(schema.pending[0].starts_with("0001"), "{schema:?}");
        assert!(schema.unknown.is_empty(), "{schema:?}");
        assert_eq!(
            store.run_blocking(count_users).unwrap(),
            0,
            "the user table of {} is read",
            path.display()
        );
        let refused = store
            .run_blocking(|conn| {
                conn.batch_execute("INSERT INTO user (username) VALUES ('a')")
                    .map_err(Error::from)
            })
            .unwrap_err();
        assert_eq!(
            refused.database().map(DatabaseError::kind),
            Some(DatabaseErrorKind::ReadOnly),
            "{refused:?}"
        );
        assert!(store.migrate().is_err());
        drop(store);
        assert!(std::fs::read(&path).unwrap() == before, "the file changed");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, [path.file_name().unwrap()]);

        let missing = dir.path().join("none.db");
        let error =
            Store::open_read_only(&StoreSettings::new(DatabaseUrl::Sqlite(missing.clone())))
                .unwrap_err();
        assert!(
            matches!(&error, Error::DatabaseMissing { path } if *path == missing),
            "{error:?}"
        );
        assert!(!missing.exists());
    }

    /// A database a newer build migrated is refused before anything is written, naming both
    /// versions.
    #[test]
    fn a_newer_schema_is_refused() {
        use diesel::connection::SimpleConnection as _;
        let (store, _dir) = sqlite_store();
        store
            .run_blocking(|conn| {
                conn.batch_execute(
                    "INSERT INTO __diesel_schema_migrations (version) VALUES ('9999'), ('10000')",
                )
                .map_err(Error::from)
            })
            .unwrap();
        let schema = store.schema_status().unwrap();
        assert!(schema.pending.is_empty(), "{schema:?}");
        assert_eq!(schema.unknown, ["9999", "10000"]);
        let newest_known = schema.newest_known.clone();
        assert!(newest_known.starts_with("00"), "{newest_known}");
        let error = store.migrate().unwrap_err();
        let Error::SchemaNewer {
            newest_applied,
            newest_known: known,
            unknown,
            ..
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!(
            (newest_applied.as_str(), known, unknown.len()),
            ("10000", &newest_known, 2)
        );
        let message = error.to_string();
        assert!(
            message.contains(&format!(
                "records migration 10000, and this build (conpaas-core {}) knows migrations up to \
                 {newest_known}",
                env!("CARGO_PKG_VERSION")
            )),
            "{message}"
        );
    }

    #[test]
    fn connections_are_configured() {
        use diesel::sql_types::{BigInt, Text};
        #[derive(diesel::QueryableByName)]
        struct Mode {
            #[diesel(sql_type = Text)]
            journal_mode: String,
        }
        #[derive(diesel::QueryableByName)]
        struct Int {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let (store, _dir) = sqlite_store();
        store
            .run_blocking(|conn| {
                let DbConnection::Sqlite(c) = conn else {
                    panic!("sqlite expected")
                };
                use diesel::RunQueryDsl;
                let mode: Mode = diesel::sql_query("PRAGMA journal_mode").get_result(c)?;
                assert_eq!(mode.journal_mode, "wal");
                let fk: Int =
                    diesel::sql_query("SELECT foreign_keys AS n FROM pragma_foreign_keys")
                        .get_result(c)?;
                assert_eq!(fk.n, 1);
                let busy: Int = diesel::sql_query("SELECT timeout AS n FROM pragma_busy_timeout")
                    .get_result(c)?;
                assert_eq!(busy.n, 5000);
                Ok::<_, Error>(())
            })
            .unwrap();
    }

    #[test]
    fn write_transactions_nest_and_roll_back() {
        let (store, _dir) = sqlite_store();
        let outcome = store.run_blocking(|conn| {
            write_transaction(conn, |conn| {
                let uid = create_user(conn, &new_user("u1", 5))?.uid;
                // A failing inner call (a savepoint) leaves the outer transaction usable.
                let err = create_user(conn, &new_user("u1", 5)).unwrap_err();
                assert!(matches!(err, Error::UsernameTaken(_)), "{err:?}");
                assert!(decrement_credit(conn, uid, Credit(5))?);
                Err::<(), _>(Error::UserNotFound(uid))
            })
        });
        assert!(
            matches!(outcome, Err(Error::UserNotFound(_))),
            "{outcome:?}"
        );
        // Everything rolled back, the user included.
        let found = store
            .run_blocking(|conn| find_user_by_username(conn, "u1"))
            .unwrap();
        assert_eq!(found, None);
        let kept = store
            .run_blocking(|conn| {
                write_transaction(conn, |conn| create_user(conn, &new_user("u1", 5)))
            })
            .unwrap();
        assert_eq!(kept.credit, Credit(5));
    }

    /// Database failures reach callers wrapped, with a kind to act on and the driver's
    /// message kept in the chain.
    #[test]
    fn database_errors_say_their_kind() {
        use diesel::connection::SimpleConnection as _;
        use diesel::{Connection as _, ExpressionMethods as _, RunQueryDsl as _};
        let (store, dir) = sqlite_store();
        let kind = |err: &Error| err.database().map(DatabaseError::kind);

        let err = store
            .run_blocking(|conn| {
                create_user(conn, &new_user("k", 1))?;
                diesel::insert_into(schema::user::table)
                    .values((
                        schema::user::username.eq("k"),
                        schema::user::credit.eq(Credit(0)),
                    ))
                    .execute(conn)?;
                Ok::<_, Error>(())
            })
            .unwrap_err();
        assert_eq!(
            kind(&err),
            Some(DatabaseErrorKind::UniqueViolation),
            "{err:?}"
        );

        let err = store
            .run_blocking(|conn| {
                conn.batch_execute("PRAGMA query_only = ON")?;
                let created = create_user(conn, &new_user("ro", 1));
                conn.batch_execute("PRAGMA query_only = OFF")?;
                created
            })
            .unwrap_err();
        assert_eq!(kind(&err), Some(DatabaseErrorKind::ReadOnly), "{err:?}");

        // Another connection holds the write lock; this one does not wait for it.
        let path = dir.path().join("director.db");
        let mut holder = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        holder.batch_execute("BEGIN IMMEDIATE").unwrap();
        let err = store
            .run_blocking(|conn| {
                conn.batch_execute("PRAGMA busy_timeout = 0")?;
                let begun = conn.batch_execute("BEGIN IMMEDIATE");
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {}",
                    conn::SQLITE_BUSY_TIMEOUT.as_millis()
                ))?;
                begun.map_err(Error::from)
            })
            .unwrap_err();
        holder.batch_execute("ROLLBACK").unwrap();
        assert_eq!(kind(&err), Some(DatabaseErrorKind::Busy), "{err:?}");
        assert_eq!(err.to_string(), "database query failed (busy or locked)");
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains("database is locked"), "{source}");

        // Not every error is a database failure.
        assert_eq!(kind(&Error::UsernameTaken("k".to_owned())), None);
    }

    #[test]
    fn database_urls_parse() {
        let cases: &[(&str, Option<DatabaseUrl>)] = &[
            (
                "sqlite:////abs/d.db",
                Some(DatabaseUrl::Sqlite("/abs/d.db".into())),
            ),
            (
                "sqlite:///rel.db",
                Some(DatabaseUrl::Sqlite("rel.db".into())),
            ),
            ("sqlite://", Some(DatabaseUrl::SqliteMemory)),
            ("sqlite://:memory:", Some(DatabaseUrl::SqliteMemory)),
            ("sqlite:///:memory:", Some(DatabaseUrl::SqliteMemory)),
            (
                "postgres://u:p@h/db",
                Some(DatabaseUrl::Postgres("postgresql://u:p@h/db".to_owned())),
            ),
            ("sqlite:///", None),
            ("sqlite:///db?mode=ro", None),
            ("sqlite://rel.db", None),
            ("mysql://u:p@h/db", None),
        ];
        for (text, expect) in cases {
            assert_eq!(text.parse::<DatabaseUrl>().ok(), *expect, "{text}");
        }
        // The refusal does not echo the text, which may hold a password.
        let err = "mysql://u:hunter2@h/db".parse::<DatabaseUrl>().unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    /// Issue 8: `:memory:` used to create a file of that name, then fail with "no such table".
    #[tokio::test]
    async fn in_memory_store_migrates_and_serves_concurrent_calls() {
        let cwd_file = std::path::Path::new(":memory:");
        let had_file = cwd_file.exists();
        let store = Store::open_in_memory().unwrap();
        assert!(store.pending_migrations().unwrap().is_empty());
        let created = store
            .run(|conn| create_user(conn, &new_user("mem", 7)))
            .await
            .unwrap();
        let found = store
            .run(move |conn| find_user(conn, created.uid))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((found.username.as_str(), found.credit), ("mem", Credit(7)));

        // Concurrent calls share the one database: every decrement lands exactly once.
        let calls = (0..7).map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .run(move |conn| decrement_credit(conn, created.uid, Credit(1)))
                    .await
            })
        });
        for call in calls.collect::<Vec<_>>() {
            assert!(call.await.unwrap().unwrap());
        }
        let left = store
            .run(move |conn| find_user(conn, created.uid))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(left.credit, Credit(0));

        // A panic inside a transaction breaks the pooled connection, which r2d2 then
        // discards; the database survives it.
        let store2 = store.clone();
        let panicked = tokio::spawn(async move {
            store2
                .run(|conn| {
                    write_transaction(conn, |conn| -> Result<(), Error> {
                        create_user(conn, &new_user("lost", 1))?;
                        panic!("boom in a transaction")
                    })
                })
                .await
        })
        .await;
        assert!(panicked.unwrap_err().is_panic());
        let names = store
            .run(|conn| {
                Ok::<_, Error>((
                    find_user_by_username(conn, "mem")?.is_some(),
                    find_user_by_username(conn, "lost")?.is_some(),
                ))
            })
            .await
            .unwrap();
        assert_eq!(names, (true, false));

        // Each in-memory store is a database of its own, and no file is made.
        let other = Store::open_in_memory().unwrap();
        assert_eq!(other.run_blocking(count_users).unwrap(), 0);
        assert_eq!(cwd_file.exists(), had_file);
    }

    #[test]
    fn a_memory_path_means_memory() {
        let settings = StoreSettings {
            url: DatabaseUrl::Sqlite(":memory:".into()),
            max_connections: 4,
        };
        let store = Store::open(&settings).unwrap();
        store
            .run_blocking(|conn| create_user(conn, &new_user("m", 1)))
            .unwrap();
        assert_eq!(store.run_blocking(count_users).unwrap(), 1);
        assert!(!std::path::Path::new(":memory:").exists());
    }

    #[tokio::test]
    async fn run_resumes_panics() {
        let (store, _dir) = sqlite_store();
        let store2 = store.clone();
        let handle = tokio::spawn(async move {
            store2
                .run(|_conn| -> Result<(), Error> { panic!("boom in store") })
                .await
        });
        let err = handle.await.unwrap_err();
        assert!(err.is_panic());
        // The store still works afterwards.
        let n = store
            .run(|conn| list_services_for_user(conn, UserId(1)))
            .await
            .unwrap();
        assert!(n.is_empty());
    }
}
