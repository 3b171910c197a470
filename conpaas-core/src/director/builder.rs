//! [`DirectorBuilder`]: a director from typed parts (a store, a CA, clouds, VPN settings,
//! templates, the director's URL and TLS identity), with director.cfg as one producer of them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};

use super::Error;
use super::fetch::Fetcher;
use super::manifest::{JobCounts, ManifestSettings};
use super::state::{DEFAULT_START_TIMEOUT, Director, Inner, MANAGER_CALL_TIMEOUT, UserLimits};
use crate::bootstrap::TemplateSource;
use crate::ca::{CertificateAuthority, DirectorTlsFiles};
use crate::cloud::CloudRegistry;
use crate::config::{DEFAULT_MANAGER_PORT, DirectorUrl, LoadedConfig};
use crate::manager_client::{ManagerClient, PeerCheck};
use crate::model::{Credit, Role};
use crate::store::{HashingPool, HashingSettings, Store, StoreSettings};
use crate::vpn::{BootstrapNode, VpnPlan, VpnSettings};

/// How long a manager's credit charge is retried while the database fails, by default: 1.2
/// managers wait for the answer without a timeout, and half a minute outlasts a backup or a
/// migration holding the SQLite write lock.
pub const DEFAULT_CHARGE_PATIENCE: Duration = crate::config::DEFAULT_CHARGE_PATIENCE;

/// RSA keys generated ahead of demand by default: a burst of eight `/getcerts` or `/start`
/// calls finds its keys ready (80 ms of CPU each to make, 1.2 KiB each to hold).
pub const DEFAULT_KEY_POOL: usize = 8;

/// The director's own certificate and key, PEM: its TLS client identity towards managers
/// (and, for the `api::server` listener, its server identity). Must be issued by the
/// director's CA with `role=frontend` (as [`CertificateAuthority::issue_director_cert`] does).
#[derive(Clone)]
#[non_exhaustive]
pub struct TlsIdentity {
    /// The certificate (chain), PEM.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: SecretString,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// A certificate and key in PEM.
    pub fn new(cert_pem: impl Into<String>, key_pem: SecretString) -> Self {
        TlsIdentity {
            cert_pem: cert_pem.into(),
            key_pem,
        }
    }

    /// `cert.pem` and `key.pem` of a `CERT_DIR` (the key must be mode 0600).
    pub fn from_cert_dir(cert_dir: &std::path::Path) -> Result<Self, crate::ca::Error> {
        let files = DirectorTlsFiles::read(cert_dir)?;
        Ok(TlsIdentity {
            cert_pem: String::from_utf8_lossy(&files.cert_pem).into_owned(),
            key_pem: String::from_utf8_lossy(&files.key_pem).into_owned().into(),
        })
    }
}

enum StorePart {
    Opened(Store),
    Settings(StoreSettings),
}

/// Builds a [`Director`] from typed parts. Required: a store, a CA and the clouds; the rest
/// has defaults (the embedded templates, no VPN, no `DIRECTOR_URL`, which starting services
/// needs, a director certificate issued in memory by the CA).
///
/// ```
/// use std::sync::Arc;
/// use conpaas_core::ca::{CertificateAuthority, KeyAlgorithm};
/// use conpaas_core::cloud::{CloudRegistry, DummyCloud};
/// use conpaas_core::director::Director;
/// use conpaas_core::store::Store;
///
/// let dir = tempfile::tempdir()?;
/// let vms = dir.path().join("vms");
/// let director = Director::builder()
///     .store(Store::open_in_memory()?)
///     .ca(CertificateAuthority::generate(KeyAlgorithm::EcdsaP256)?)
///     .clouds(
///         CloudRegistry::builder()
///             .cloud("local", Arc::new(DummyCloud::new("local", vms)))
///             .build()?,
///     )
///     .director_url("https://director.example.org:5555".parse()?)
///     .build()?;
/// assert_eq!(director.available_clouds(), ["local"]);
/// // 1.2's clients name the default cloud `default`.
/// assert_eq!(director.client_cloud_names(), ["default"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct DirectorBuilder {
    store: Option<StorePart>,
    ca: Option<Arc<CertificateAuthority>>,
    clouds: Option<CloudRegistry>,
    vpn: Option<VpnSettings>,
    vpn_bootstrap_nodes: Vec<BootstrapNode>,
    templates: TemplateSource,
    tarball: Option<PathBuf>,
    director_url: Option<DirectorUrl>,
    tls_identity: Option<TlsIdentity>,
    open_registration: bool,
    max_credit: Option<Credit>,
    user_limits: UserLimits,
    agents: super::AgentSettings,
    start_timeout: Duration,
    manager_port: u16,
    manager_timeout: Duration,
    charge_patience: Duration,
    charge_journal: Option<PathBuf>,
    manifest: ManifestSettings,
    hashing: HashingSettings,
    login_throttle: super::LoginThrottleSettings,
    key_pool: usize,
    metrics_allow: Vec<ipnet::IpNet>,
    metrics_token: Option<SecretString>,
    clock: Arc<dyn super::Clock>,
    inline_blocking: bool,
    audit_queue: usize,
}

impl Default for DirectorBuilder {
    fn default() -> Self {
        DirectorBuilder {
            store: None,
            ca: None,
            clouds: None,
            vpn: None,
            vpn_bootstrap_nodes: Vec::new(),
            templates: TemplateSource::embedded_default(),
            tarball: None,
            director_url: None,
            tls_identity: None,
            open_registration: false,
            max_credit: None,
            user_limits: UserLimits::recommended(),
            agents: super::AgentSettings::recommended(),
            start_timeout: DEFAULT_START_TIMEOUT,
            manager_port: DEFAULT_MANAGER_PORT,
            manager_timeout: MANAGER_CALL_TIMEOUT,
            charge_patience: DEFAULT_CHARGE_PATIENCE,
            charge_journal: None,
            manifest: ManifestSettings::recommended(),
            hashing: HashingSettings::recommended(),
            login_throttle: super::LoginThrottleSettings::recommended(),
            key_pool: DEFAULT_KEY_POOL,
            metrics_allow: crate::config::default_metrics_allow(),
            metrics_token: None,
            clock: Arc::new(super::SystemClock),
            inline_blocking: false,
            audit_queue: super::audit::DEFAULT_AUDIT_QUEUE,
        }
    }
}

impl std::fmt::Debug for DirectorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectorBuilder")
            .field("clouds", &self.clouds)
            .field("vpn", &self.vpn)
            .field("vpn_bootstrap_nodes", &self.vpn_bootstrap_nodes)
            .field("templates", &self.templates)
            .field("director_url", &self.director_url)
            .finish_non_exhaustive()
    }
}

impl DirectorBuilder {
    /// Every part from a director.cfg: the database of `[director] DATABASE_URI`, the CA and
    /// the director's certificate in `CERT_DIR`, the configured clouds (dummy VMs in
    /// `CONF_DIR/dummy-cloud`), the VPN keys, the templates and `ConPaaS.tar.gz` of
    /// `CONF_DIR`, `[director] CHARGE_PATIENCE`, and the deferred-charges journal
    /// [`CHARGE_JOURNAL_FILE`](super::CHARGE_JOURNAL_FILE) in `CONF_DIR` (the data
    /// directory). Reads the CA files now; the database is opened by [`build`](Self::build).
    pub fn from_config(config: &LoadedConfig) -> Result<Self, Error> {
        let settings = &config.config;
        let ca = CertificateAuthority::load(&settings.ca)?;
        let tls_identity = TlsIdentity::from_cert_dir(&settings.ca.cert_dir)?;
        let clouds = CloudRegistry::new(settings.clouds(), &settings.conf_dir.join("dummy-cloud"));
        let mut builder = DirectorBuilder::default()
            .store_settings(settings.store.clone())
            .ca(ca)
            .clouds(clouds)
            .templates(TemplateSource::conf_dir(&settings.conf_dir))
            .tarball(settings.conf_dir.join("ConPaaS.tar.gz"))
            .tls_identity(tls_identity)
            .open_registration(settings.open_registration)
            .max_credit(settings.max_credit)
            .user_limits(UserLimits {
                max_applications: Some(settings.max_applications_per_user),
                max_services: Some(settings.max_services_per_user),
            })
            .agents(super::AgentSettings {
                managers_cloud: if settings.copy_cloud_credentials {
                    super::ManagersCloud::CopyCredentials
                } else {
                    super::ManagersCloud::Director
                },
                max_per_service: Some(settings.max_agents_per_service),
                max_per_user: Some(settings.max_agents_per_user),
            })
            .manager_port(settings.manager_port)
            .charge_patience(settings.charge_patience)
            .audit_queue(settings.audit_queue)
            .charge_journal(super::journal::ChargeJournal::in_dir(&settings.conf_dir).path())
            .metrics_allow(settings.metrics_allow.clone())
            .metrics_token(super::metrics_token::read(settings)?)
            .manifest(ManifestSettings::from_config(settings));
        if let Some(vpn) = &settings.vpn {
            builder = builder.vpn(vpn.clone());
        }
        builder = builder.vpn_bootstrap_nodes(settings.vpn_bootstrap_nodes.clone());
        if let Some(url) = &settings.director_url {
            builder = builder.director_url(url.clone());
        }
        Ok(builder)
    }

    /// An opened store (e.g. [`Store::open_in_memory`], or one shared with other code).
    pub fn store(mut self, store: Store) -> Self {
        self.store = Some(StorePart::Opened(store));
        self
    }

    /// The store to open (and migrate) at [`build`](Self::build).
    pub fn store_settings(mut self, settings: StoreSettings) -> Self {
        self.store = Some(StorePart::Settings(settings));
        self
    }

    /// The CA (from a `CERT_DIR`, from PEM in memory, or generated).
    pub fn ca(self, ca: CertificateAuthority) -> Self {
        self.shared_ca(Arc::new(ca))
    }

    /// A CA shared with other code.
    pub fn shared_ca(mut self, ca: Arc<CertificateAuthority>) -> Self {
        self.ca = Some(ca);
        self
    }

    /// The clouds services start on: configured drivers, an embedder's own, or both.
    pub fn clouds(mut self, clouds: CloudRegistry) -> Self {
        self.clouds = Some(clouds);
        self
    }

    /// VPN address planning; without it services get no subnet (as 1.2 without `VPN_*`).
    pub fn vpn(mut self, vpn: VpnSettings) -> Self {
        self.vpn = Some(vpn);
        self
    }

    /// IPOP bootstrap nodes (`[conpaas] VPN_BOOTSTRAP_NODES`), written into the config of
    /// every manager whose service has a VPN subnet; none by default (IPOP's own list).
    pub fn vpn_bootstrap_nodes(mut self, nodes: Vec<BootstrapNode>) -> Self {
        self.vpn_bootstrap_nodes = nodes;
        self
    }

    /// Where the manager templates come from (default: the embedded minimal ones).
    pub fn templates(mut self, templates: TemplateSource) -> Self {
        self.templates = templates;
        self
    }

    /// The `ConPaaS.tar.gz` served at `/download/ConPaaS.tar.gz` (default: none, 404).
    pub fn tarball(mut self, path: impl Into<PathBuf>) -> Self {
        self.tarball = Some(path.into());
        self
    }

    /// `DIRECTOR_URL`: the director as manager VMs reach it; starting services needs it.
    pub fn director_url(mut self, url: DirectorUrl) -> Self {
        self.director_url = Some(url);
        self
    }

    /// The director's certificate and key. Without one, [`build`](Self::build) issues one in
    /// memory from the CA for the host of `DIRECTOR_URL` (or `localhost`).
    pub fn tls_identity(mut self, identity: TlsIdentity) -> Self {
        self.tls_identity = Some(identity);
        self
    }

    /// Let anyone call `/new_user`, not only the frontend's certificate (default: no).
    pub fn open_registration(mut self, open: bool) -> Self {
        self.open_registration = open;
        self
    }

    /// The most credit `/new_user` may grant (default: no cap).
    pub fn max_credit(mut self, max: Option<Credit>) -> Self {
        self.max_credit = max;
        self
    }

    /// How managers start their agents, and how many they may have (default:
    /// [`AgentSettings::recommended`](super::AgentSettings::recommended): through the
    /// director's OCCI routes, capped).
    pub fn agents(mut self, settings: super::AgentSettings) -> Self {
        self.agents = settings;
        self
    }

    /// How many applications and services each user may have (default:
    /// [`UserLimits::recommended`], what director.cfg gives when its keys are absent).
    pub fn user_limits(mut self, limits: UserLimits) -> Self {
        self.user_limits = limits;
        self
    }

    /// How long a start (VM boot included) may take before it is undone (default:
    /// [`DEFAULT_START_TIMEOUT`]). Reconciliation waits this plus a minute before undoing a
    /// start a crash interrupted.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// The port managers serve HTTPS on (default: 443).
    pub fn manager_port(mut self, port: u16) -> Self {
        self.manager_port = port;
        self
    }

    /// How long a manager has to answer a call (default: [`MANAGER_CALL_TIMEOUT`]).
    pub fn manager_timeout(mut self, timeout: Duration) -> Self {
        self.manager_timeout = timeout;
        self
    }

    /// How long a manager's credit charge is retried while the database fails (busy, locked,
    /// full) before it is deferred (kept in the [charge journal](Self::charge_journal), applied
    /// as soon as the database takes writes again) and answered as covered (default:
    /// [`DEFAULT_CHARGE_PATIENCE`]).
    pub fn charge_patience(mut self, patience: Duration) -> Self {
        self.charge_patience = patience;
        self
    }

    /// Keep deferred credit charges in this append-only file (created 0600; see
    /// [`ChargeJournal`](super::ChargeJournal)) before their managers are answered, so that a
    /// crash or a stop loses none: [`Director::apply_deferred_charges`] replays it (call it
    /// once after `build`, before serving). Default: none, deferred charges are held in memory
    /// only and lost if the process ends before the database takes them.
    /// [`from_config`](Self::from_config) sets it to the data directory's
    /// [`CHARGE_JOURNAL_FILE`](super::CHARGE_JOURNAL_FILE). Directors sharing the file
    /// (replicas on one data directory) may replay each other's charges: each applies once.
    pub fn charge_journal(mut self, path: impl Into<PathBuf>) -> Self {
        self.charge_journal = Some(path.into());
        self
    }

    /// How manifests are processed (default: [`ManifestSettings::recommended`]).
    pub fn manifest(mut self, manifest: ManifestSettings) -> Self {
        self.manifest = manifest;
        self
    }

    /// How passwords are hashed and checked (default: [`HashingSettings::recommended`], one
    /// worker per core). A login that finds the queue full waits `wait` for a place, then is
    /// refused (`/login` and `/getcerts` answer `false`, as for a wrong password).
    pub fn hashing(mut self, hashing: HashingSettings) -> Self {
        self.hashing = hashing;
        self
    }

    /// How failed logins are counted and held back (default:
    /// [`LoginThrottleSettings::recommended`](super::LoginThrottleSettings::recommended), the
    /// policy of docs/operations.md, "Password guessing"); tests shorten the waits.
    pub fn login_throttle(mut self, settings: super::LoginThrottleSettings) -> Self {
        self.login_throttle = settings;
        self
    }

    /// How many queued audit events of each priority wait in memory while the database is
    /// behind (default: [`DEFAULT_AUDIT_QUEUE`](super::audit::DEFAULT_AUDIT_QUEUE)): refused
    /// and throttled logins in one lane, every other queued event in the other, so that a
    /// flood of guesses never pushes a successful login out ([`Director::audit`]).
    pub fn audit_queue(mut self, limit: usize) -> Self {
        self.audit_queue = limit;
        self
    }

    /// How many RSA keys the CA keeps generated ahead of `/getcerts` and `/start` (default:
    /// [`DEFAULT_KEY_POOL`]; 0 generates each key on demand). Ignored for ECDSA, whose keys
    /// take microseconds. A CA shared by several directors gets the first one's pool.
    pub fn key_pool(mut self, size: usize) -> Self {
        self.key_pool = size;
        self
    }

    /// The client addresses that may read `/metrics` without the frontend's certificate
    /// (default: loopback, `127.0.0.0/8` and `::1`; empty: the certificate only).
    pub fn metrics_allow(mut self, networks: Vec<ipnet::IpNet>) -> Self {
        self.metrics_allow = networks;
        self
    }

    /// The bearer token that lets a scraper read `/metrics` from anywhere
    /// (`Authorization: Bearer TOKEN`); `None` (the default): no token is accepted.
    pub fn metrics_token(mut self, token: Option<SecretString>) -> Self {
        self.metrics_token = token;
        self
    }

    /// Where the director reads the current time (default: [`SystemClock`](super::SystemClock)).
    /// A simulation passes one derived from tokio's paused clock.
    pub fn clock(mut self, clock: Arc<dyn super::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Runs the director's short blocking work (certificate issuance, reading the manager
    /// templates) on the calling task instead of tokio's blocking pool (default: no). For
    /// deterministic simulations on a current-thread runtime, with a [`Store::inline`] store;
    /// never in a server, where it would stall the async workers.
    pub fn inline_blocking(mut self, inline: bool) -> Self {
        self.inline_blocking = inline;
        self
    }

    /// Checks the parts and builds the director. Blocks when it opens and migrates a store
    /// from settings or issues a director certificate (RSA key generation): call it before
    /// starting a runtime or on a blocking thread.
    pub fn build(self) -> Result<Director, Error> {
        let ca = self.ca.ok_or(Error::NotConfigured("the CA"))?;
        let clouds = self.clouds.ok_or(Error::NotConfigured("the clouds"))?;
        let vpn = match &self.vpn {
            Some(vpn) => Some(VpnPlan::new(vpn).map_err(|source| Error::Invalid {
                field: "VPN_SERVICE_BITS",
                reason: source.to_string(),
            })?),
            None => None,
        };
        let tls_identity = match self.tls_identity {
            Some(identity) => identity,
            None => {
                let host = self
                    .director_url
                    .as_ref()
                    .map_or("localhost", |url| url.host());
                let issued = ca.issue_director_cert(host)?;
                let Some(key_pem) = issued.key_pem else {
                    return Err(Error::NotConfigured("the director's TLS key"));
                };
                TlsIdentity::new(issued.cert_pem, key_pem)
            }
        };
        let managers =
            manager_client(&ca, &tls_identity, self.manager_timeout)?.with_port(self.manager_port);
        let store = match self.store.ok_or(Error::NotConfigured("the store"))? {
            StorePart::Opened(store) => store,
            StorePart::Settings(settings) => Store::open(&settings)?,
        };
        let hashing = HashingPool::new(&self.hashing)?;
        ca.start_key_pool(self.key_pool)?;
        let fetcher = Fetcher::new(self.manifest.download.clone());
        let installation_tag = crate::ca::installation_tag(ca.cert_der());
        let metrics = Arc::new(super::Metrics::new(ca.clone()));
        metrics.declare_clouds(clouds.iter().map(|registered| registered.name()));
        let clouds = clouds.wrapped(|name, cloud| {
            super::metered::MeteredCloud::wrap(name, cloud, metrics.clone())
        });
        Ok(Director {
            inner: Arc::new(Inner {
                store,
                hashing,
                ca,
                vpn,
                vpn_bootstrap_nodes: self.vpn_bootstrap_nodes,
                clouds,
                templates: self.templates,
                tarball: self.tarball,
                director_url: self.director_url.as_ref().map(ToString::to_string),
                open_registration: self.open_registration,
                max_credit: self.max_credit,
                user_limits: self.user_limits,
                start_timeout: self.start_timeout,
                managers,
                logins: super::throttle::LoginThrottle::new(self.login_throttle),
                manifest: self.manifest,
                fetcher,
                manifest_jobs: JobCounts::default(),
                installation_tag,
                unaged_vms: std::sync::Mutex::default(),
                charge_patience: self.charge_patience,
                deferred_charges: std::sync::Mutex::default(),
                charge_journal: self.charge_journal.map(super::journal::ChargeJournal::new),
                charge_replay: tokio::sync::Mutex::default(),
                charge_retry: std::sync::atomic::AtomicBool::new(false),
                charges_pruned: std::sync::Mutex::default(),
                metrics,
                metrics_allow: self.metrics_allow,
                metrics_token: self.metrics_token,
                audit: super::audit::AuditQueue::with_limit(self.audit_queue),
                clock: self.clock,
                inline_blocking: self.inline_blocking,
                starting: std::sync::Mutex::default(),
                agents: self.agents,
                agents_starting: std::sync::Mutex::default(),
                cloud_health: std::sync::Mutex::default(),
            }),
        })
    }
}

/// The client towards managers: the director's own certificate, managers checked by role.
fn manager_client(
    ca: &CertificateAuthority,
    identity: &TlsIdentity,
    timeout: Duration,
) -> Result<ManagerClient, Error> {
    let peer_check: PeerCheck = Arc::new(|der: &[u8]| {
        crate::ca::CertIdentity::parse(der).is_ok_and(|identity| identity.has_role(Role::Manager))
    });
    ManagerClient::new(
        identity.cert_pem.as_bytes(),
        identity.key_pem.expose_secret().as_bytes(),
        ca.cert_pem().as_bytes(),
        peer_check,
        timeout,
    )
    .map_err(|error| Error::Invalid {
        field: "the director's TLS identity",
        reason: crate::model::ErrorChain(&error).to_string(),
    })
}
