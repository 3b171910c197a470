//! Use-cases: one function per thing an operator, a user or a manager can do. The only room
//! that combines the store, the CA, the VPN planner, the clouds and the bootstrap script.

pub mod accounts;
mod agents;
mod apps;
pub mod audit;
mod builder;
mod clock;
mod cloud_health;
pub mod fetch;
pub mod journal;
mod maintenance;
mod managers;
pub mod manifest;
mod metered;
pub mod metrics;
pub mod metrics_token;
mod process_metrics;
mod services;
pub mod setup;
mod state;
mod throttle;
mod users;

pub use agents::{AgentCaller, AgentRequest, AgentSettings, ManagersCloud, agent_cloud_user};
pub use builder::{DEFAULT_CHARGE_PATIENCE, DEFAULT_KEY_POOL, DirectorBuilder, TlsIdentity};
pub use clock::{Clock, SystemClock};
pub use cloud_health::{CLOUD_PROBE_TIMEOUT, CloudHealth};
pub use journal::{CHARGE_JOURNAL_FILE, ChargeJournal, JournalContents};
pub use maintenance::{
    DEFAULT_REAP_GRACE, MAINTENANCE_LEASE, MaintenanceReport, MaintenanceSettings, ReapCandidate,
    ReapReason, ReapReport, ReaperMode, RestoreConfirmation,
};
pub use managers::ManagerCharge;
pub use manifest::{
    MANIFEST_TYPES, Manifest, ManifestFailure, ManifestJob, ManifestService, ManifestSettings,
    Unreadable, VolumeStartup,
};
pub use metrics::{Metrics, Outcome};
pub use services::StartRequest;
pub use state::{DEFAULT_START_TIMEOUT, Director, MANAGER_CALL_TIMEOUT, Readiness, UserLimits};
pub use throttle::{LoginSource, LoginThrottleSettings};
pub use users::{LoginAttempt, Registration, UserCertificates};

pub use crate::model::parse_int;

use crate::model::{AppId, ServiceId};

/// What went wrong in a use-case, in domain terms; `api` maps each variant to a 1.2 answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request field is missing or unusable.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The user name is taken.
    #[error("Username \"{0}\" already taken")]
    UsernameTaken(String),
    /// The e-mail is registered to another user.
    #[error("E-mail \"{0}\" already registered")]
    EmailTaken(String),
    /// The user name `CA` is reserved.
    #[error("Username \"{0}\" is reserved")]
    UsernameReserved(String),
    /// The application does not exist or is not the caller's.
    #[error("Application not found")]
    ApplicationNotFound(Option<AppId>),
    /// The service does not exist or is not the caller's.
    #[error("service {0} not found")]
    ServiceNotFound(ServiceId),
    /// The service type is not one of the nine 1.2 knows.
    #[error("Unknown service type: {0}")]
    UnknownServiceType(String),
    /// No cloud of this name is configured.
    #[error("unknown cloud {0:?}")]
    UnknownCloud(String),
    /// The user already has an application of this name.
    #[error("Application name \"{0}\" already taken")]
    ApplicationNameTaken(String),
    /// The user has as many applications or services as the director allows
    /// (`[director] MAX_APPLICATIONS_PER_USER`, `MAX_SERVICES_PER_USER`).
    #[error("at most {max} {what} per user")]
    LimitReached {
        /// `applications` or `services`.
        what: &'static str,
        /// The cap.
        max: u32,
    },
    /// No account has this name or id (the operator's commands, [`accounts::UserRef`]).
    #[error("no user {0}")]
    UnknownUser(String),
    /// Digits that are one account's id and another account's name.
    #[error(
        "{text} is the id of user {by_id:?} and the name of the user with id {by_name}: say \
         uid:{text} or name:{text}"
    )]
    AmbiguousUser {
        /// The digits given.
        text: String,
        /// The name of the user whose id they are.
        by_id: String,
        /// The id of the user whose name they are.
        by_name: crate::model::UserId,
    },
    /// An operator's credit change would take the credit below zero (unless told to stop at
    /// zero, [`accounts::BelowZero::StopAtZero`]).
    #[error("{username} has {credit} credit: {change} would take it below 0")]
    CreditBelowZero {
        /// The user.
        username: String,
        /// Their credit, unchanged.
        credit: crate::model::Credit,
        /// The change refused.
        change: crate::model::CreditChange,
    },
    /// An operator's credit change would take the credit past the largest integer.
    #[error("{username} has {credit} credit: {change} would overflow it")]
    CreditOverflow {
        /// The user.
        username: String,
        /// Their credit, unchanged.
        credit: crate::model::Credit,
        /// The change refused.
        change: crate::model::CreditChange,
    },
    /// The user still has services, each a VM the accounting keeps: they are stopped first
    /// ([`accounts::delete_user`]).
    #[error("{username} still has {n} service(s): stop them first", n = .services.len())]
    UserHasServices {
        /// The user.
        username: String,
        /// Their services, ascending.
        services: Vec<ServiceId>,
    },
    /// The credit does not cover the start.
    #[error("Could not add nodes. Not enough credits.")]
    InsufficientCredit,
    /// A setting the operation needs is absent.
    #[error("{0} is not configured")]
    NotConfigured(&'static str),
    /// The VM did not come up within the start timeout; the start was undone.
    #[error("the manager VM did not start in time")]
    StartTimeout,
    /// VPN planning failed (no subnet left, unreadable recorded subnet).
    #[error(transparent)]
    Vpn(#[from] crate::vpn::Error),
    /// A cloud call failed.
    #[error(transparent)]
    Cloud(#[from] crate::cloud::Error),
    /// The manager templates are missing or unusable.
    #[error(transparent)]
    Bootstrap(#[from] crate::bootstrap::Error),
    /// The CA's files exist and `--force` was not given.
    #[error(
        "a CA already exists in {0}; use --force to replace it (this breaks every issued certificate)"
    )]
    CaExists(std::path::PathBuf),
    /// An empty database (no installation recorded, no user, application or service ever)
    /// beside an existing CA, not declared new (`director serve --new-database`): a lost
    /// file, an unmounted volume or a mistyped `DATABASE_URI` more likely than a new
    /// installation, and the reaper would take every VM of the installation for an orphan.
    #[error(
        "{database} is empty (no user, application or service ever), but the CA in {} belongs \
         to an installation that may have VMs running: a mistyped DATABASE_URI, an unmounted \
         volume or a lost database file? Nothing was started. Point DATABASE_URI at the \
         installation's database (or restore it from a backup); if this installation really \
         starts afresh with this CA, run `director serve --new-database` once", .cert_dir.display()
    )]
    EmptyDatabase {
        /// The database, as the operator knows it (a path; never a password).
        database: String,
        /// The CA's directory.
        cert_dir: std::path::PathBuf,
    },
    /// The database records another installation's CA.
    #[error(
        "{database} belongs to the installation tagged {recorded}, but the CA in {} is \
         installation {tag}: DATABASE_URI or CERT_DIR names another installation's; nothing \
         was started", .cert_dir.display()
    )]
    ForeignDatabase {
        /// The database, as the operator knows it.
        database: String,
        /// The tag the database recorded.
        recorded: String,
        /// The tag of the CA in `CERT_DIR`.
        tag: String,
        /// The CA's directory.
        cert_dir: std::path::PathBuf,
    },
    /// The reaper's hold cannot be ended: some clouds did not list their VMs, so the highest
    /// service id in use is unknown.
    #[error("some clouds could not list their VMs ({0}); nothing changed")]
    CloudsUnlisted(String),
    /// The configuration is unusable for this operation.
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    /// The database failed.
    #[error(transparent)]
    Store(crate::store::Error),
    /// The certificate authority failed.
    #[error(transparent)]
    Ca(#[from] crate::ca::Error),
    /// Writing the default templates failed.
    #[error("cannot write the manager templates")]
    Templates(#[source] std::io::Error),
    /// `[director] METRICS_TOKEN_FILE` cannot be read, or is empty.
    #[error("cannot use the metrics token file {path} (METRICS_TOKEN_FILE)")]
    MetricsToken {
        /// The file.
        path: std::path::PathBuf,
        /// Why (an empty file is `InvalidData`).
        #[source]
        source: std::io::Error,
    },
    /// A blocking task was cancelled (the runtime is shutting down).
    #[error("the task was cancelled")]
    Cancelled,
}

impl From<crate::store::Error> for Error {
    fn from(error: crate::store::Error) -> Self {
        // Domain outcomes the store decides inside its transactions become domain errors here.
        match error {
            crate::store::Error::UsernameTaken(name) => Error::UsernameTaken(name),
            crate::store::Error::EmailTaken(email) => Error::EmailTaken(email),
            crate::store::Error::UsernameReserved(name) => Error::UsernameReserved(name),
            crate::store::Error::ApplicationNotFound(aid) => Error::ApplicationNotFound(Some(aid)),
            crate::store::Error::LimitReached { what, max, .. } => {
                Error::LimitReached { what, max }
            }
            other => Error::Store(other),
        }
    }
}

/// What the use-cases' unit tests share.
#[cfg(all(test, feature = "sqlite"))]
pub(crate) mod test_support {
    use std::sync::Arc;

    use super::DirectorBuilder;
    use crate::ca::{CertificateAuthority, KeyAlgorithm};
    use crate::cloud::{CloudRegistry, DummyCloud};
    use crate::store::Store;

    /// A builder with a store in memory, an ECDSA CA and a dummy cloud `local` keeping its VMs
    /// in `dir`: add what the test needs, then `build()`.
    pub(crate) fn builder(
        dir: &std::path::Path,
    ) -> Result<DirectorBuilder, Box<dyn std::error::Error>> {
        Ok(super::Director::builder()
            .store(Store::open_in_memory()?)
            .ca(CertificateAuthority::generate(KeyAlgorithm::EcdsaP256)?)
            .clouds(
                CloudRegistry::builder()
                    .cloud("local", Arc::new(DummyCloud::new("local", dir)))
                    .build()?,
            ))
    }
}
