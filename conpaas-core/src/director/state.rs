//! The director: everything the use-cases need, built once from the configuration and shared by
//! every request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::bootstrap::TemplateSource;
use crate::ca::{CertificateAuthority, IssuedCertificate};
use crate::cloud::CloudRegistry;
use crate::config::LoadedConfig;
use crate::manager_client::ManagerClient;
use crate::model::{Credit, Role, ServiceId, User, UserId};
use crate::store::{self, Store};
use crate::vpn::VpnPlan;

use super::Error;
use super::builder::DirectorBuilder;
use super::fetch::Fetcher;
use super::manifest::{JobCounts, ManifestSettings};

/// How long a service start may take (VM boot included) before it is undone.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a manager has to answer the director (1.2 waited forever).
pub const MANAGER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How many applications and services each user may have (`[director]
/// MAX_APPLICATIONS_PER_USER`, `MAX_SERVICES_PER_USER`); `None` = no cap (embedders only:
/// director.cfg always sets one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserLimits {
    /// Applications per user, the default `New Application` included.
    pub max_applications: Option<u32>,
    /// Services per user, across their applications (starting ones included).
    pub max_services: Option<u32>,
}

impl UserLimits {
    /// [`DEFAULT_MAX_APPLICATIONS_PER_USER`](crate::config::DEFAULT_MAX_APPLICATIONS_PER_USER)
    /// and [`DEFAULT_MAX_SERVICES_PER_USER`](crate::config::DEFAULT_MAX_SERVICES_PER_USER).
    pub fn recommended() -> Self {
        UserLimits {
            max_applications: Some(crate::config::DEFAULT_MAX_APPLICATIONS_PER_USER),
            max_services: Some(crate::config::DEFAULT_MAX_SERVICES_PER_USER),
        }
    }

    /// No cap at all.
    pub fn unlimited() -> Self {
        UserLimits {
            max_applications: None,
            max_services: None,
        }
    }

    setters! {
        max_applications: Option<u32>,
        max_services: Option<u32>,
    }
}

/// The director's shared state. Cheap to clone (everything inside is shared).
///
/// Made by [`Director::builder`] from typed parts, or by [`Director::open`] from a
/// director.cfg.
#[derive(Debug, Clone)]
pub struct Director {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) store: Store,
    /// Where passwords are hashed and checked (not on the blocking pool: issue 10).
    pub(super) hashing: crate::store::HashingPool,
    pub(super) ca: Arc<CertificateAuthority>,
    pub(super) vpn: Option<VpnPlan>,
    /// `[conpaas] VPN_BOOTSTRAP_NODES`, for the managers of services with a subnet.
    pub(super) vpn_bootstrap_nodes: Vec<crate::vpn::BootstrapNode>,
    pub(super) clouds: CloudRegistry,
    /// Where the manager templates are read from at each start.
    pub(super) templates: TemplateSource,
    /// `ConPaaS.tar.gz`, served to manager VMs; `None` when this director serves none.
    pub(super) tarball: Option<PathBuf>,
    pub(super) director_url: Option<String>,
    pub(super) open_registration: bool,
    pub(super) max_credit: Option<Credit>,
    pub(super) user_limits: UserLimits,
    pub(super) start_timeout: Duration,
    /// Failed password checks per client network and per account.
    pub(super) logins: super::throttle::LoginThrottle,
    /// HTTPS JSON-RPC towards managers (`shutdown` when an application is deleted, the
    /// manifest steps).
    pub(super) managers: ManagerClient,
    /// How manifests are processed.
    pub(super) manifest: ManifestSettings,
    /// The guarded client of manifest downloads.
    pub(super) fetcher: Fetcher,
    /// The running manifests of each user (a per-process bound, not state anyone relies on).
    pub(super) manifest_jobs: JobCounts,
    /// Prefix of the clients tokens of this installation's VMs (from the CA's fingerprint), so
    /// that two directors sharing a cloud account never collide.
    pub(super) installation_tag: String,
    /// How long a manager's credit charge is retried while the database fails.
    pub(super) charge_patience: Duration,
    /// Charges the database could not take in time and this director has not applied yet
    /// (also in the journal, when there is one and it could be written).
    pub(super) deferred_charges: std::sync::Mutex<Vec<store::Charge>>,
    /// Where deferred charges are kept across crashes and stops; `None`: in memory only.
    pub(super) charge_journal: Option<super::journal::ChargeJournal>,
    /// One pass applying deferred charges at a time in this process (the retry, maintenance,
    /// start-up and shutdown may overlap).
    pub(super) charge_replay: tokio::sync::Mutex<()>,
    /// Whether the background retry of deferred charges runs.
    pub(super) charge_retry: std::sync::atomic::AtomicBool,
    /// When the ids of old charges were last pruned.
    pub(super) charges_pruned: std::sync::Mutex<Option<std::time::Instant>>,
    /// When the reaper first saw each rowless VM whose cloud gives no creation time.
    pub(super) unaged_vms:
        std::sync::Mutex<std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>>,
    /// What this director counted (its own registry).
    pub(super) metrics: Arc<super::Metrics>,
    /// What the last probe of each cloud found ([`Director::probe_clouds`]).
    pub(super) cloud_health:
        std::sync::Mutex<std::collections::BTreeMap<String, super::CloudHealth>>,
    /// Who may read `/metrics` without the frontend's certificate.
    pub(super) metrics_allow: Vec<ipnet::IpNet>,
    /// The bearer token a scraper may present for `/metrics`.
    pub(super) metrics_token: Option<secrecy::SecretString>,
    /// Audit events waiting for their batch.
    pub(super) audit: super::audit::AuditQueue,
    /// The time of day recorded and compared (UTC).
    pub(super) clock: Arc<dyn super::Clock>,
    /// Blocking work on the calling task ([`DirectorBuilder::inline_blocking`]).
    pub(super) inline_blocking: bool,
    /// The services whose start is running in this process: reconciliation leaves their rows
    /// to their own task.
    pub(super) starting: std::sync::Mutex<std::collections::HashSet<ServiceId>>,
    /// How managers start agents, and the caps.
    pub(super) agents: super::AgentSettings,
    /// The agents whose create is running in this process.
    pub(super) agents_starting: super::agents::AgentsStarting,
}

/// What the readiness answer (`/readyz`) checked: each `true` when fine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Readiness {
    /// The database answers and accepts a write (rolled back).
    pub database: bool,
    /// No migration of this build is missing from the database (another replica of an older
    /// build may be serving a database this build has not migrated, or the reverse).
    pub migrations: bool,
    /// The CA's key is loaded and is its certificate's.
    pub ca: bool,
}

impl Readiness {
    /// Every check passed.
    pub fn is_ready(&self) -> bool {
        self.database && self.migrations && self.ca
    }

    /// The names of the checks that failed (`database`, `migrations`, `ca`).
    pub fn failed(&self) -> Vec<&'static str> {
        [
            ("database", self.database),
            ("migrations", self.migrations),
            ("ca", self.ca),
        ]
        .into_iter()
        .filter_map(|(name, ok)| (!ok).then_some(name))
        .collect()
    }
}

impl Director {
    /// A builder taking each part as a typed value: see [`DirectorBuilder`].
    pub fn builder() -> DirectorBuilder {
        DirectorBuilder::default()
    }

    /// Opens the database (migrating it) and the CA of `config`; the CA and the director's
    /// certificate must exist (`director init`, or `director serve` on a data directory).
    /// Blocks (database, files): call it before starting a runtime or on a blocking thread.
    pub fn open(config: &LoadedConfig) -> Result<Director, Error> {
        DirectorBuilder::from_config(config)?.build()
    }

    /// [`Director::open`] with manifest settings of the caller's choice (embedders and tests
    /// shorten the waits).
    pub fn open_with(config: &LoadedConfig, manifest: ManifestSettings) -> Result<Director, Error> {
        DirectorBuilder::from_config(config)?
            .manifest(manifest)
            .build()
    }

    /// The pool where passwords are hashed and checked (its counters show what logins cost).
    pub fn hashing(&self) -> &crate::store::HashingPool {
        &self.inner.hashing
    }

    /// The store, for embedders and tests.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The CA certificate (PEM), as shipped to users and VMs.
    pub fn ca_cert_pem(&self) -> &str {
        self.inner.ca.cert_pem()
    }

    /// The CA.
    pub fn ca(&self) -> &CertificateAuthority {
        &self.inner.ca
    }

    /// This director's metrics (served at `/metrics` by the router).
    pub fn metrics(&self) -> &super::Metrics {
        &self.inner.metrics
    }

    /// Sets the state gauges (`conpaas_users`, `conpaas_applications`,
    /// `conpaas_services_starting`, `conpaas_services_running`, `conpaas_credit_outstanding`)
    /// from what the database holds now; `/metrics` calls it before each scrape. A database
    /// that fails leaves them as they were (logged at `warn`).
    pub async fn refresh_state_metrics(&self) {
        match self.inner.store.run(store::state_counts).await {
            Ok(counts) => self.inner.metrics.set_state(&counts),
            Err(error) => tracing::warn!(
                error = %crate::model::ErrorChain(&error),
                "the state gauges of /metrics were not refreshed"
            ),
        }
    }

    /// Whether `presented` is the metrics bearer token (`[director] METRICS_TOKEN_FILE`),
    /// compared in constant time; `false` when there is none.
    pub fn metrics_token_matches(&self, presented: &str) -> bool {
        use secrecy::ExposeSecret as _;
        use subtle::ConstantTimeEq as _;
        self.inner.metrics_token.as_ref().is_some_and(|token| {
            bool::from(token.expose_secret().as_bytes().ct_eq(presented.as_bytes()))
        })
    }

    /// Whether a client at `ip` may read `/metrics` without the frontend's certificate
    /// (`[director] METRICS_ALLOW`; loopback by default).
    pub fn metrics_allowed(&self, ip: std::net::IpAddr) -> bool {
        // An IPv4 client of a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        };
        self.inner.metrics_allow.iter().any(|net| net.contains(&ip))
    }

    /// Whether this director can serve: the database answers and takes writes, its
    /// migrations are current, the CA's key is loaded. Failures are logged with their cause;
    /// the answer only names the checks.
    pub async fn readiness(&self) -> Readiness {
        let checked = self
            .inner
            .store
            .run(|conn| -> Result<store::SchemaStatus, store::Error> {
                store::check_writable(conn)?;
                store::schema_status(conn)
            })
            .await;
        let (database, migrations) = match checked {
            Ok(schema) if schema.pending.is_empty() && schema.unknown.is_empty() => (true, true),
            Ok(schema) if !schema.unknown.is_empty() => {
                // Another replica of a newer version migrated the shared database.
                tracing::warn!(
                    unknown = ?schema.unknown,
                    newest_known = %schema.newest_known,
                    "not ready: the database's schema is newer than this build's (upgrade this \
                     director)"
                );
                (true, false)
            }
            Ok(schema) => {
                tracing::warn!(pending = ?schema.pending, "not ready: database migrations missing");
                (true, false)
            }
            Err(error) => {
                tracing::warn!(error = %crate::model::ErrorChain(&error), "not ready: the database");
                (false, false)
            }
        };
        let ca = self.inner.ca.key_matches_certificate();
        if !ca {
            tracing::warn!("not ready: the CA's key is not its certificate's");
        }
        Readiness {
            database,
            migrations,
            ca,
        }
    }

    /// The clouds services start on.
    pub fn clouds(&self) -> &CloudRegistry {
        &self.inner.clouds
    }

    /// The names the clouds are registered under, the default one first (`iaas` for the
    /// `[iaas]` section of a director.cfg).
    pub fn available_clouds(&self) -> Vec<String> {
        self.inner.clouds.names()
    }

    /// The cloud names `/available_clouds` answers 1.2's clients: `default` for the default
    /// cloud, whatever its registered name, then the others.
    pub fn client_cloud_names(&self) -> Vec<String> {
        self.inner.clouds.client_names()
    }

    /// Where `/download/ConPaaS.tar.gz` is served from; `None` when this director serves
    /// no tarball (the route answers 404).
    pub fn tarball_path(&self) -> Option<&Path> {
        self.inner.tarball.as_deref()
    }

    /// Where the manager templates come from.
    pub fn templates(&self) -> &TemplateSource {
        &self.inner.templates
    }

    /// Whether `/new_user` is open to callers without the frontend's certificate.
    pub fn open_registration(&self) -> bool {
        self.inner.open_registration
    }

    /// The user with id `uid`, if any.
    pub async fn user(&self, uid: UserId) -> Result<Option<User>, Error> {
        Ok(self
            .inner
            .store
            .read(move |conn| store::find_user(conn, uid))
            .await?)
    }

    /// A short read that answers `None` for an unknown user ([`Store::read`]): the listings
    /// check their caller and list in one statement (`store::list_applications_of_user`).
    #[cfg(feature = "api")]
    pub(crate) async fn read_for_user<T, F>(&self, read: F) -> Result<Option<T>, Error>
    where
        F: FnOnce(&mut store::DbConnection) -> Result<Option<T>, store::Error> + Send + 'static,
        T: Send + 'static,
    {
        Ok(self.inner.store.read(read).await?)
    }

    /// Whether `sid` is a live service of `uid` (the manager rule of certificates.md §10.3).
    pub async fn service_belongs_to(&self, uid: UserId, sid: ServiceId) -> Result<bool, Error> {
        let found = self
            .inner
            .store
            .read(move |conn| store::find_service_owned(conn, sid, uid))
            .await?;
        Ok(found.is_some())
    }

    /// Runs CPU-heavy CA work (RSA key generation, signing) off the async workers and records
    /// the serial of what it issued, with its audit event.
    /// Runs short blocking work on tokio's blocking pool, or on the calling task when the
    /// director was built with [`DirectorBuilder::inline_blocking`].
    pub(super) async fn blocking<T, F>(&self, work: F) -> Result<T, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if self.inner.inline_blocking {
            return Ok(work());
        }
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| Error::Cancelled)
    }

    /// The current time (UTC) of the director's [`Clock`](super::Clock).
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.inner.clock.now()
    }

    pub(super) async fn issue<F>(&self, role: Role, work: F) -> Result<IssuedCertificate, Error>
    where
        F: FnOnce(&CertificateAuthority) -> Result<IssuedCertificate, crate::ca::Error>
            + Send
            + 'static,
    {
        let ca = self.inner.ca.clone();
        let issued = self.blocking(move || work(&ca)).await??;
        let record = super::setup::certificate_record(&issued);
        let event = super::audit::certificate_event(&record).to_new();
        self.inner
            .store
            .run(move |conn| super::audit::record_certificate(conn, &record, &event))
            .await?;
        self.inner.metrics.certificate_issued(role);
        Ok(issued)
    }
}
