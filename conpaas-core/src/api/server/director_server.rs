//! `director serve` as a library call: a director served over TLS from its director.cfg or from
//! typed parts, its certificate reloadable while it serves, maintenance beside the API,
//! deferred credit charges applied at start and at shutdown, the audit log written at the end.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::ServerConfig;

use super::{Listener, TransportSettings, TransportStats};
use crate::api::tls::{self, CertificateSummary, ServerIdentity, TlsError};
use crate::ca::{self, DirectorTlsFiles};
use crate::config::{self, LoadedConfig};
use crate::director::audit::{AuditOutcome, Event};
use crate::director::{self, Director, MaintenanceSettings};
use crate::model::ErrorChain;

/// Setting up, binding or reloading a [`DirectorServer`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The director could not be opened from its configuration (database, CA, clouds,
    /// templates).
    #[error(transparent)]
    Director(#[from] director::Error),
    /// A file of `CERT_DIR` could not be read, or `key.pem` can be read by others.
    #[error(transparent)]
    Ca(#[from] ca::Error),
    /// The TLS configuration could not be built, or a replacement certificate was refused.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// [`DirectorServerBuilder::bind`] was given no address.
    #[error("no address to listen on")]
    NoAddress,
    /// No address of the list could be bound. The message names every address with its
    /// failure, so the error has no single `source`.
    #[error("cannot listen on any address: {}", show_failures(failures))]
    Bind {
        /// Each address tried, in order, with why it could not be bound.
        failures: Vec<(SocketAddr, std::io::Error)>,
    },
    /// The listener given to [`DirectorServerBuilder::bind_listener`] cannot be served on.
    #[error("cannot serve on the given listener")]
    Listener(#[source] std::io::Error),
    /// OpenSSL refused the certificate for the managers' TLS 1.0 handshakes.
    #[cfg(feature = "legacy-tls")]
    #[error(transparent)]
    LegacyTls(super::LegacyTlsError),
}

fn show_failures(failures: &[(SocketAddr, std::io::Error)]) -> String {
    failures
        .iter()
        .map(|(addr, error)| format!("{addr}: {error}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A director to serve, not yet bound: what to serve and how. Made by
/// [`DirectorServer::from_config`] or [`DirectorServer::builder`]; [`bind`](Self::bind) or
/// [`bind_listener`](Self::bind_listener) gives the [`DirectorServer`].
pub struct DirectorServerBuilder {
    director: Director,
    tls: Arc<ServerConfig>,
    reload: Option<ReloadHandle>,
    transport: TransportSettings,
    maintenance: MaintenanceSettings,
    /// The director.cfg served, for the `config.loaded` audit event.
    config_path: Option<PathBuf>,
    /// TLS 1.0/1.1 for the 1.2 managers' libcloud (the managers' cloud routes only).
    #[cfg(feature = "legacy-tls")]
    legacy: Option<super::LegacyTls>,
}

impl std::fmt::Debug for DirectorServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectorServerBuilder")
            .field("transport", &self.transport)
            .field("maintenance", &self.maintenance)
            .field("reloadable", &self.reload.is_some())
            .field("config_path", &self.config_path)
            .finish_non_exhaustive()
    }
}

impl DirectorServerBuilder {
    /// [`DirectorServer::from_config`].
    ///
    /// # Errors
    ///
    /// As [`DirectorServer::from_config`].
    pub fn from_config(loaded: &LoadedConfig) -> Result<Self, ServeError> {
        let director = Director::open(loaded)?;
        DirectorServerBuilder::from_config_with(loaded, director)
    }

    /// [`DirectorServer::from_config`] serving a director opened by the caller (say
    /// `DirectorBuilder::from_config(&loaded)?` with settings of its own) from the same
    /// `loaded`: the TLS files of its `CERT_DIR`, its transport and maintenance settings, the
    /// certificate reloadable.
    ///
    /// # Errors
    ///
    /// [`ServeError::Ca`] when `cert.pem`, `key.pem` or `ca_cert.pem` cannot be read,
    /// [`ServeError::Tls`] when they make no TLS configuration.
    pub fn from_config_with(loaded: &LoadedConfig, director: Director) -> Result<Self, ServeError> {
        let cert_dir = loaded.config.ca.cert_dir.clone();
        let files = DirectorTlsFiles::read(&cert_dir)?;
        let (tls, identity) = tls::reloadable_server_config_from_files(&files)?;
        // Only where managers start agents through the director.
        #[cfg(feature = "legacy-tls")]
        let legacy = if director.agent_settings().managers_cloud
            == crate::director::ManagersCloud::Director
        {
            Some(super::LegacyTls::from_files(&files).map_err(ServeError::LegacyTls)?)
        } else {
            None
        };
        let reload = ReloadHandle {
            inner: Arc::new(Reload {
                director: director.clone(),
                identity,
                cert_dir,
                ca_cert_pem: Some(files.ca_cert_pem),
                started: Some(loaded.clone()),
                #[cfg(feature = "legacy-tls")]
                legacy: legacy.clone(),
            }),
        };
        Ok(DirectorServerBuilder {
            director,
            tls,
            reload: Some(reload),
            transport: TransportSettings::from_config(&loaded.config),
            maintenance: MaintenanceSettings::from_config(&loaded.config),
            config_path: Some(loaded.path.clone()),
            #[cfg(feature = "legacy-tls")]
            legacy,
        })
    }

    /// [`DirectorServer::builder`].
    pub fn new(director: Director, tls: Arc<ServerConfig>) -> Self {
        DirectorServerBuilder {
            director,
            tls,
            reload: None,
            transport: TransportSettings::recommended(),
            maintenance: MaintenanceSettings::recommended(),
            config_path: None,
            #[cfg(feature = "legacy-tls")]
            legacy: None,
        }
    }

    /// Makes the certificate reloadable from `cert_dir`'s `cert.pem` and `key.pem`
    /// ([`reload_handle`](Self::reload_handle)) into `identity`, which must be the certificate
    /// resolver of the server's `ServerConfig` (as [`tls::reloadable_server_config`] returns
    /// them). `ca_cert.pem` is read now, to tell at each reload whether it changed.
    pub fn reload_from_cert_dir(
        mut self,
        identity: Arc<ServerIdentity>,
        cert_dir: impl Into<PathBuf>,
    ) -> Self {
        let cert_dir = cert_dir.into();
        let ca_cert_pem = std::fs::read(cert_dir.join(ca::CA_CERT_FILE)).ok();
        self.reload = Some(ReloadHandle {
            inner: Arc::new(Reload {
                director: self.director.clone(),
                identity,
                cert_dir,
                ca_cert_pem,
                started: None,
                #[cfg(feature = "legacy-tls")]
                legacy: self.legacy.clone(),
            }),
        });
        self
    }

    /// Answers TLS 1.0/1.1 clients with `legacy`, for the managers' cloud routes only
    /// ([`Listener::legacy_tls`]); [`from_config`](Self::from_config) sets it up when managers
    /// start their agents through the director. Call it before
    /// [`reload_from_cert_dir`](Self::reload_from_cert_dir) for reloads to renew it too.
    #[cfg(feature = "legacy-tls")]
    pub fn legacy_tls(mut self, legacy: super::LegacyTls) -> Self {
        self.legacy = Some(legacy);
        self
    }

    /// The limits of the transport (by default [`TransportSettings::recommended`], or
    /// director.cfg's with [`from_config`](Self::from_config)).
    pub fn transport(mut self, settings: TransportSettings) -> Self {
        self.transport = settings;
        self
    }

    /// How often maintenance runs beside the API (by default
    /// [`MaintenanceSettings::recommended`], or director.cfg's with
    /// [`from_config`](Self::from_config)).
    pub fn maintenance(mut self, settings: MaintenanceSettings) -> Self {
        self.maintenance = settings;
        self
    }

    /// The director served.
    pub fn director(&self) -> &Director {
        &self.director
    }

    /// A handle reloading the certificate while the server runs, when the server knows where
    /// to read it from (a director.cfg's `CERT_DIR`, or
    /// [`reload_from_cert_dir`](Self::reload_from_cert_dir)). Taken before
    /// [`bind`](Self::bind), it already works while `bind` applies deferred charges.
    pub fn reload_handle(&self) -> Option<ReloadHandle> {
        self.reload.clone()
    }

    /// Prepares to serve, as `director serve` does, then binds the first address of `addrs`
    /// that can be bound, in order (a host name may resolve to an IPv6 address this host has
    /// no interface for; port 0 picks a free port). Preparing records the `config.loaded`
    /// audit event (from a director.cfg), then applies the deferred credit charges an earlier
    /// process left in the charge journal, for at most the charge patience (a database still
    /// failing leaves them in the journal): the server answers with up-to-date credit from its
    /// first request.
    ///
    /// # Errors
    ///
    /// [`ServeError::NoAddress`] for an empty list; [`ServeError::Bind`], naming each address
    /// and its failure, when none can be bound. The builder stays usable: bind again later.
    pub async fn bind(&self, addrs: &[SocketAddr]) -> Result<DirectorServer, ServeError> {
        if addrs.is_empty() {
            return Err(ServeError::NoAddress);
        }
        self.prepare().await;
        let mut failures = Vec::new();
        for addr in addrs {
            let bound = Listener::bind(*addr, self.tls.clone(), self.transport.clone())
                .await
                .map(|listener| self.with_legacy(listener));
            match bound.and_then(|listener| Ok((listener.local_addr()?, listener))) {
                Ok((local_addr, listener)) => return Ok(self.bound(listener, local_addr)),
                Err(error) => failures.push((*addr, error)),
            }
        }
        Err(ServeError::Bind { failures })
    }

    /// [`bind`](Self::bind) on a socket already bound and listening (inherited from a
    /// supervisor, or bound before dropping privileges): prepares as `bind` does, then serves
    /// on `listener`, whose listen backlog stays as set.
    ///
    /// # Errors
    ///
    /// [`ServeError::Listener`] when the socket cannot be made non-blocking or registered with
    /// the runtime (call it inside a tokio runtime), or has no local address.
    pub async fn bind_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> Result<DirectorServer, ServeError> {
        self.prepare().await;
        let listener = Listener::from_std(listener, self.tls.clone(), self.transport.clone())
            .map(|listener| self.with_legacy(listener))
            .map_err(ServeError::Listener)?;
        let local_addr = listener.local_addr().map_err(ServeError::Listener)?;
        Ok(self.bound(listener, local_addr))
    }

    #[cfg_attr(not(feature = "legacy-tls"), expect(clippy::unused_self))]
    fn with_legacy(&self, listener: Listener) -> Listener {
        #[cfg(feature = "legacy-tls")]
        if let Some(legacy) = &self.legacy {
            return listener.legacy_tls(legacy.clone());
        }
        listener
    }

    async fn prepare(&self) {
        if let Some(path) = &self.config_path {
            self.director.audit(
                Event::new("config.loaded", AuditOutcome::Ok)
                    .detail("file", path.display().to_string())
                    .detail("clouds", self.director.available_clouds()),
            );
        }
        // Charges deferred by a director that stopped or crashed on this journal
        // (docs/operations.md, "Credit when the database fails"), before serving.
        apply_deferred_charges(&self.director, Moment::StartUp).await;
    }

    fn bound(&self, listener: Listener, local_addr: SocketAddr) -> DirectorServer {
        DirectorServer {
            listener,
            local_addr,
            director: self.director.clone(),
            maintenance: self.maintenance.clone(),
            reload: self.reload.clone(),
        }
    }
}

/// The director served over HTTPS: the 1.2 routes ([`router`](crate::api::router)) on the
/// [`Listener`] with its connection limits, maintenance running beside them, the certificate
/// reloadable while serving ([`ReloadHandle`]), deferred credit charges applied at start and
/// at shutdown, and the audit log written before [`serve`](Self::serve) returns. What
/// `director serve` runs.
///
/// ```no_run
/// use conpaas_core::api::server::DirectorServer;
/// use conpaas_core::config::{self, ConfigSource};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let loaded = config::load(&ConfigSource::resolve(None, None))?;
/// // Opens the database (migrations) and reads CERT_DIR: before the runtime.
/// let server = DirectorServer::from_config(&loaded)?;
/// let reload = server.reload_handle().expect("from a director.cfg: reloadable");
/// tokio::runtime::Runtime::new()?.block_on(async move {
///     let server = server.bind(&["127.0.0.1:5555".parse()?]).await?;
///     println!("listening on https://{}", server.local_addr());
///     // After a renewal: new handshakes get the new certificate.
///     tokio::spawn(async move {
///         tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
///         let _ = reload.reload_tls();
///     });
///     server
///         .serve(async {
///             let _ = tokio::signal::ctrl_c().await;
///         })
///         .await;
///     Ok::<_, Box<dyn std::error::Error>>(())
/// })
/// # }
/// ```
pub struct DirectorServer {
    listener: Listener,
    local_addr: SocketAddr,
    director: Director,
    maintenance: MaintenanceSettings,
    reload: Option<ReloadHandle>,
}

impl std::fmt::Debug for DirectorServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectorServer")
            .field("local_addr", &self.local_addr)
            .field("maintenance", &self.maintenance)
            .field("reloadable", &self.reload.is_some())
            .finish_non_exhaustive()
    }
}

impl DirectorServer {
    /// A director served as its director.cfg says: opened with
    /// [`Director::open`] (this blocks: migrations, key files; call it before starting a
    /// runtime or in `spawn_blocking`), the TLS certificate, key and CA from `CERT_DIR`
    /// (reloadable: [`DirectorServerBuilder::reload_handle`]), the connection limits
    /// ([`TransportSettings::from_config`]) and the maintenance settings
    /// ([`MaintenanceSettings::from_config`]) from its keys.
    ///
    /// It does not set up a data directory nor vouch for the database: `director serve` does
    /// both first (`director::setup::init`, `director::setup::vouch_for_database`), and an
    /// embedder serving an installation that may be new or restored should too.
    ///
    /// # Errors
    ///
    /// [`ServeError::Director`] when the director cannot be opened, [`ServeError::Ca`] when a
    /// TLS file of `CERT_DIR` cannot be read, [`ServeError::Tls`] when they make no TLS
    /// configuration.
    pub fn from_config(loaded: &LoadedConfig) -> Result<DirectorServerBuilder, ServeError> {
        DirectorServerBuilder::from_config(loaded)
    }

    /// A director served from typed parts: `tls` (client certificates optional and verified
    /// against the director's CA, as [`tls::server_config`] builds it: the router trusts what
    /// it verified), with [`TransportSettings::recommended`] and
    /// [`MaintenanceSettings::recommended`] unless set. Its certificate is reloadable only
    /// with [`DirectorServerBuilder::reload_from_cert_dir`] (or call
    /// [`ServerIdentity::replace`] yourself).
    pub fn builder(director: Director, tls: Arc<ServerConfig>) -> DirectorServerBuilder {
        DirectorServerBuilder::new(director, tls)
    }

    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The director served.
    pub fn director(&self) -> &Director {
        &self.director
    }

    /// [`DirectorServerBuilder::reload_handle`].
    pub fn reload_handle(&self) -> Option<ReloadHandle> {
        self.reload.clone()
    }

    /// The listener's counters ([`Listener::stats`]); [`serve`](Self::serve) publishes them in
    /// the director's `/metrics` too.
    pub fn stats(&self) -> TransportStats {
        self.listener.stats()
    }

    /// Serves until `shutdown` completes, with maintenance beside the API
    /// ([`Listener::serve_director`]); then stops accepting, lets requests in flight finish
    /// (within [`TransportSettings::shutdown_grace`]), applies the deferred credit charges the
    /// database can take (within the charge patience; the charge journal keeps the rest for
    /// the next start), and writes the queued audit events. Logs `stopped` when done.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let DirectorServer {
            listener,
            director,
            maintenance,
            ..
        } = self;
        let shutdown = async {
            shutdown.await;
            tracing::info!("shutting down: finishing requests in flight");
        };
        // Maintenance (undoing what a crash left half-done) runs beside the API: a replica
        // that died mid-start leaves rows another replica must clean.
        listener
            .serve_director(director.clone(), maintenance, shutdown)
            .await;
        apply_deferred_charges(&director, Moment::Shutdown).await;
        if let Err(error) = director.flush_audit().await {
            tracing::warn!(error = %ErrorChain(&error), "cannot write the last audit events");
        }
        tracing::info!("stopped");
    }
}

/// When deferred charges are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    StartUp,
    Shutdown,
}

impl Moment {
    fn as_str(self) -> &'static str {
        match self {
            Moment::StartUp => "at start-up",
            Moment::Shutdown => "at shutdown",
        }
    }
}

/// Applies the deferred credit charges (the journal's and this process's), for at most the
/// charge patience: a database still failing leaves them in the journal for the next start.
async fn apply_deferred_charges(director: &Director, moment: Moment) {
    let when = moment.as_str();
    let bound = director.charge_patience();
    match tokio::time::timeout(bound, director.apply_deferred_charges()).await {
        Ok(0) => {}
        Ok(n_applied) => {
            tracing::info!(n_applied, "applied deferred credit charges {when}");
        }
        Err(_) => {
            tracing::warn!(
                "deferred credit charges not all applied {when} within {bound:?}: the journal keeps them"
            );
        }
    }
    let left = director.deferred_charges();
    if left > 0 && moment == Moment::Shutdown {
        match director.charge_journal() {
            Some(journal) => tracing::warn!(
                left,
                journal = %journal.path().display(),
                "stopping with deferred credit charges the database has not taken: the next start applies them from the journal"
            ),
            None => tracing::error!(
                left,
                "stopping with deferred credit charges held in memory only: they are lost"
            ),
        }
    }
}

/// Reloads a serving director's TLS certificate and key from its `CERT_DIR`
/// ([`reload_tls`](Self::reload_tls)): what `director serve` does on SIGHUP. Cheap to clone;
/// each clone reloads the same server.
#[derive(Clone)]
pub struct ReloadHandle {
    inner: Arc<Reload>,
}

impl std::fmt::Debug for ReloadHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadHandle")
            .field("cert_dir", &self.inner.cert_dir)
            .field("identity", &self.inner.identity)
            .finish_non_exhaustive()
    }
}

struct Reload {
    /// Where the reload's audit event goes.
    director: Director,
    identity: Arc<ServerIdentity>,
    cert_dir: PathBuf,
    /// `ca_cert.pem` as it was at start.
    ca_cert_pem: Option<Vec<u8>>,
    /// The configuration the server started with, if it came from one.
    started: Option<LoadedConfig>,
    /// Renewed with the rustls identity.
    #[cfg(feature = "legacy-tls")]
    legacy: Option<super::LegacyTls>,
}

/// What a reload loaded, and what changed on disk that a reload cannot apply.
#[derive(Debug)]
pub struct ReloadReport {
    certificate: CertificateSummary,
    ca_changed: bool,
    config_changed_keys: Vec<String>,
    config_error: Option<config::Error>,
}

impl ReloadReport {
    /// The certificate new handshakes get now.
    pub fn certificate(&self) -> &CertificateSummary {
        &self.certificate
    }

    /// Whether `ca_cert.pem` differs from the one the server started with: client
    /// certificates are still verified against that one until a restart.
    pub fn ca_changed(&self) -> bool {
        self.ca_changed
    }

    /// The `[section] KEY`s of director.cfg that changed since start (names only): they apply
    /// at the next restart. Empty for a server built from typed parts.
    pub fn config_changed_keys(&self) -> &[String] {
        &self.config_changed_keys
    }

    /// Why director.cfg no longer loads, if it does not: the server goes on with the settings
    /// read at start, but the next start would fail.
    pub fn config_error(&self) -> Option<&config::Error> {
        self.config_error.as_ref()
    }
}

impl ReloadHandle {
    /// Reads `cert.pem` and `key.pem` of `CERT_DIR` again and makes new TLS handshakes present
    /// them; **open connections keep the certificate of their handshake** and are not
    /// dropped. Records a `config.reloaded` audit event (`ok` with the new serial, or
    /// `failed`) and logs the outcome; logs a warning, too, when `ca_cert.pem` or (for a
    /// server from a director.cfg) director.cfg changed, which cannot change while serving
    /// (the report says the same). The certificate the director presents to managers as a
    /// client changes at the next restart. Reads three small files: a call on the runtime is
    /// fine.
    ///
    /// # Errors
    ///
    /// The certificate in use is kept, and the error says why the new one was refused:
    /// [`ServeError::Ca`] when a file cannot be read or `key.pem` can be read by group or
    /// others (expected mode 0600), [`ServeError::Tls`] when the PEM is unusable, the key is
    /// not the certificate's or the certificate is not issued by the director's CA.
    pub fn reload_tls(&self) -> Result<ReloadReport, ServeError> {
        let reload = &self.inner;
        let cert_dir = &reload.cert_dir;
        let loaded = (|| {
            let files = DirectorTlsFiles::read(cert_dir)?;
            // As the CA refuses its own: a renewal done by hand often leaves the umask's 0644.
            ca::check_private_mode(&cert_dir.join(ca::KEY_FILE))?;
            let summary = reload.identity.replace_from_files(&files)?;
            #[cfg(feature = "legacy-tls")]
            if let Some(legacy) = &reload.legacy {
                legacy.reload(&files).map_err(ServeError::LegacyTls)?;
            }
            Ok::<_, ServeError>((summary, files.ca_cert_pem))
        })();
        let outcome = match loaded {
            Ok((summary, ca_cert_pem)) => {
                reload.director.audit(
                    Event::new("config.reloaded", AuditOutcome::Ok)
                        .detail("what", "tls")
                        .detail("serial", summary.serial.to_string())
                        .detail("not_after", summary.not_after.to_string()),
                );
                tracing::info!(
                    cert = %cert_dir.join(ca::CERT_FILE).display(),
                    common_name = %summary.common_name,
                    serial = %summary.serial,
                    not_after = %summary.not_after,
                    sha256 = %summary.sha256,
                    "reloaded the TLS certificate and key: new connections get them, open ones \
                     keep theirs (the certificate the director presents to managers changes at \
                     the next restart)"
                );
                let ca_changed = reload
                    .ca_cert_pem
                    .as_ref()
                    .is_some_and(|started| *started != ca_cert_pem);
                if ca_changed {
                    tracing::warn!(
                        file = %cert_dir.join(ca::CA_CERT_FILE).display(),
                        "the CA certificate changed, which cannot change while serving (client \
                         certificates are still checked against the one loaded at start): \
                         restart the director to use it"
                    );
                }
                Ok((summary, ca_changed))
            }
            Err(error) => {
                reload.director.audit(
                    Event::new("config.reloaded", AuditOutcome::Failed).detail("what", "tls"),
                );
                tracing::warn!(
                    error = %ErrorChain(&error),
                    "TLS reload failed: still serving the certificate loaded before"
                );
                Err(error)
            }
        };
        let (config_changed_keys, config_error) = match &reload.started {
            Some(started) => config_changes(started),
            None => (Vec::new(), None),
        };
        let (certificate, ca_changed) = outcome?;
        Ok(ReloadReport {
            certificate,
            ca_changed,
            config_changed_keys,
            config_error,
        })
    }

    /// The certificate new handshakes get now.
    pub fn current(&self) -> Option<CertificateSummary> {
        self.inner.identity.describe()
    }
}

/// director.cfg read again (never created: a data directory's generated file is not made
/// again here) and compared with `started`; logs what cannot change while serving.
fn config_changes(started: &LoadedConfig) -> (Vec<String>, Option<config::Error>) {
    let path = &started.path;
    let now = std::fs::read(path)
        .map_err(|source| config::Error::Io {
            path: path.clone(),
            action: "read the configuration",
            source,
        })
        .and_then(|bytes| config::parse_bytes(path, &bytes));
    match now {
        Ok(now) => {
            let changed = started.changed_keys(&now);
            if !changed.is_empty() {
                tracing::warn!(
                    file = %path.display(),
                    keys = %changed.join(", "),
                    "director.cfg changed, but these settings cannot change while serving: \
                     restart the director to apply them"
                );
            }
            (changed, None)
        }
        Err(error) => {
            tracing::warn!(
                file = %path.display(),
                error = %ErrorChain(&error),
                "director.cfg no longer loads (still serving with the settings read at start; \
                 fix it before the next restart)"
            );
            (Vec::new(), Some(error))
        }
    }
}
