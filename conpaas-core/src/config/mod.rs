//! `director.cfg` -> typed, validated settings for each layer; where the file comes from; the
//! embedded default; the `DIRECTOR_URL` rewrite of `director init`.
//!
//! The file is read with Python 2 `ConfigParser` rules so that existing 1.2
//! files mean what they meant (`spec/config.md` §1), then every key is checked
//! at once: [`Error::Invalid`] lists every problem as
//! `FILE:LINE: [section] KEY: expected ..., got "value"`, and odd but working
//! settings come back as [`Warning`]s in the same form. Past this module no
//! code looks at a configuration string again. Operators' reference:
//! `docs/config.md`.
//!
//! ```
//! use std::path::Path;
//! use conpaas_core::config;
//!
//! let text = "[conpaas]\nCONF_DIR = /srv/conpaas\nCERT_DIR = /srv/conpaas/certs\n\
//!             [iaas]\nDRIVER = dummy\n\
//!             [director]\nDATABASE_URI = sqlite:////srv/conpaas/director.db\n";
//! let loaded = config::parse_str(Path::new("director.cfg"), text)?;
//! assert_eq!(loaded.config.default_cloud.driver.name(), "dummy");
//! assert!(loaded.config.director_url.is_none());
//! # Ok::<(), config::Error>(())
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ca::CaSettings;
use crate::cloud::CloudSettings;
use crate::model::Credit;
use crate::store::StoreSettings;
use crate::vpn::VpnSettings;

mod build;
mod error;
mod ini;
mod rewrite;
mod source;
mod values;

pub use error::{Error, Location, Problem, ProblemKind, Warning, WarningKind};
pub use rewrite::set_director_url;
pub use source::{ConfigSource, DataDirOrigin, FileOrigin, default_config_text, load};
pub use values::DirectorUrl;

/// The name of the configuration file, also inside a data directory.
pub const CONFIG_FILE_NAME: &str = "director.cfg";
/// The environment variable naming the configuration file (as in 1.2).
pub const CONFIG_ENV_VAR: &str = "DIRECTOR_CFG";
/// The configuration file of a 1.2-style installation, used when it exists.
pub const SYSTEM_CONFIG_FILE: &str = "/etc/cpsdirector/director.cfg";
/// The data directory used when nothing else is given, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "conpaas-data";
/// `DIRECTOR_URL` of a generated director.cfg.
pub const DEFAULT_DIRECTOR_URL: &str = "https://localhost:5555";
/// `[director] DB_MAX_CONNECTIONS` when absent.
pub const DEFAULT_DB_MAX_CONNECTIONS: u32 = crate::store::StoreSettings::DEFAULT_MAX_CONNECTIONS;
/// `[director] MANAGER_PORT` when absent: managers serve HTTPS on 443.
pub const DEFAULT_MANAGER_PORT: u16 = 443;
/// `[director] MAINTENANCE_INTERVAL` when absent: reconciliation and the reaper every 5 min.
pub const DEFAULT_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(300);
/// `[director] REAP_GRACE` when absent: a VM without a row is terminated after 10 min.
pub const DEFAULT_REAP_GRACE: Duration = Duration::from_secs(600);
/// `[director] REAPER`: what the reaper does with VMs of this installation that no service row
/// records (docs/operations.md, "The reaper").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReaperMode {
    /// `on` (the default): terminates them once older than `REAP_GRACE`, unless the database
    /// is older than the clouds (then it reports them until the operator confirms).
    #[default]
    On,
    /// `report`: lists and reports them (log, metrics, audit log), terminates nothing.
    Report,
    /// `off`: no reaper at all (the clouds are not even listed).
    Off,
}

impl ReaperMode {
    /// The value as written in director.cfg.
    pub fn as_str(self) -> &'static str {
        match self {
            ReaperMode::On => "on",
            ReaperMode::Report => "report",
            ReaperMode::Off => "off",
        }
    }
}

impl std::fmt::Display for ReaperMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[director] CHARGE_PATIENCE` when absent: a manager's credit charge is retried for 30 s
/// while the database fails before it is deferred (1.2 managers wait for the answer without a
/// timeout, and half a minute outlasts a backup or a migration holding the SQLite write lock).
pub const DEFAULT_CHARGE_PATIENCE: Duration = Duration::from_secs(30);

/// `[director] AUDIT_QUEUE` when absent: audit events of each priority kept in memory while
/// the database is behind.
pub const DEFAULT_AUDIT_QUEUE: usize = 10_000;
/// `[director] MAX_APPLICATIONS_PER_USER` when absent.
pub const DEFAULT_MAX_APPLICATIONS_PER_USER: u32 = 100;
/// `[director] MAX_SERVICES_PER_USER` when absent.
pub const DEFAULT_MAX_SERVICES_PER_USER: u32 = 100;
/// `[director] MAX_AGENTS_PER_SERVICE` when absent.
pub const DEFAULT_MAX_AGENTS_PER_SERVICE: u32 = 50;
/// `[director] MAX_AGENTS_PER_USER` when absent.
pub const DEFAULT_MAX_AGENTS_PER_USER: u32 = 200;
/// `[director] MAX_CONNECTIONS` when absent: connections the HTTPS listener serves at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// `[director] MAX_CONNECTIONS_PER_ADDRESS` when absent. A PHP frontend (one connection per
/// request, as many at once as Apache has workers) or a class behind one NAT is one address.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;
/// `[director] MAX_CONNECTIONS_PER_NETWORK` when absent: a quarter of the default
/// `MAX_CONNECTIONS`, so that four networks cannot hold every place.
pub const DEFAULT_MAX_CONNECTIONS_PER_NETWORK: usize = 256;
/// `[director] REQUEST_BODY_TIMEOUT` when absent: a request's body (1 MiB at most) must arrive
/// within 30 s of its headers, at least 35 KB/s for the largest.
pub const DEFAULT_REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// `[director] WRITE_TIMEOUT` when absent: an answer whose writing makes no progress for 20 s
/// (a client that stopped reading) ends its connection.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(20);

/// `[director] MAX_ANONYMOUS_CONNECTIONS` when absent: half of `max_connections`, so that the
/// other half is always left for clients presenting a certificate of the director's CA.
pub fn default_max_anonymous_connections(max_connections: usize) -> usize {
    (max_connections / 2).max(1)
}

/// A cloud's `BOOT_TIMEOUT` when absent: 1.2 gave up on a VM without an
/// address after about five minutes (and then, unlike us, started another).
pub const DEFAULT_BOOT_TIMEOUT: Duration = crate::cloud::settings::DEFAULT_BOOT_TIMEOUT;

/// `[director] METRICS_ALLOW` when absent: loopback only (`127.0.0.0/8`, `::1`).
pub fn default_metrics_allow() -> Vec<ipnet::IpNet> {
    vec![
        ipnet::IpNet::V4(ipnet::Ipv4Net::new_assert(
            std::net::Ipv4Addr::new(127, 0, 0, 0),
            8,
        )),
        ipnet::IpNet::V6(ipnet::Ipv6Net::new_assert(
            std::net::Ipv6Addr::LOCALHOST,
            128,
        )),
    ]
}

/// Every key the director recognises, as `(section, KEY)`; `"<cloud>"` stands
/// for `[iaas]` and every section named in `OTHER_CLOUDS`. docs/config.md documents each.
pub const KNOWN_KEYS: &[(&str, &str)] = &[
    ("conpaas", "CONF_DIR"),
    ("conpaas", "CERT_DIR"),
    ("conpaas", "VPN_BASE_NETWORK"),
    ("conpaas", "VPN_NETMASK"),
    ("conpaas", "VPN_SERVICE_BITS"),
    ("conpaas", "VPN_LEGACY_SUBNETS"),
    ("conpaas", "VPN_BOOTSTRAP_NODES"),
    ("conpaas", "KEY_ALGORITHM"),
    ("conpaas", "MAX_CREDIT"),
    ("iaas", "OTHER_CLOUDS"),
    ("<cloud>", "DRIVER"),
    ("<cloud>", "USER"),
    ("<cloud>", "PASSWORD"),
    ("<cloud>", "IMAGE_ID"),
    ("<cloud>", "SIZE_ID"),
    ("<cloud>", "SECURITY_GROUP_NAME"),
    ("<cloud>", "KEY_NAME"),
    ("<cloud>", "REGION"),
    ("<cloud>", "ENDPOINT"),
    ("<cloud>", "SUBNET_ID"),
    ("<cloud>", "SECURITY_GROUP_IDS"),
    ("<cloud>", "METADATA_TOKENS"),
    ("<cloud>", "MANAGER_ADDRESS"),
    ("<cloud>", "PROFILE"),
    ("<cloud>", "BOOT_TIMEOUT"),
    ("<cloud>", "URL"),
    ("<cloud>", "INST_TYPE"),
    ("<cloud>", "NET_ID"),
    ("<cloud>", "NET_GATEWAY"),
    ("<cloud>", "NET_NETMASK"),
    ("<cloud>", "NET_NAMESERVER"),
    ("<cloud>", "OS_ARCH"),
    ("<cloud>", "OS_ROOT"),
    ("<cloud>", "DISK_TARGET"),
    ("<cloud>", "CONTEXT_TARGET"),
    ("<cloud>", "XMLRPC"),
    ("<cloud>", "API"),
    ("<cloud>", "TEMPLATE_ID"),
    ("<cloud>", "CPU"),
    ("<cloud>", "VCPU"),
    ("<cloud>", "MEMORY"),
    ("<cloud>", "AUTH_URL"),
    ("<cloud>", "PROJECT_NAME"),
    ("<cloud>", "PROJECT_ID"),
    ("<cloud>", "USER_DOMAIN_NAME"),
    ("<cloud>", "PROJECT_DOMAIN_NAME"),
    ("<cloud>", "APPLICATION_CREDENTIAL_ID"),
    ("<cloud>", "APPLICATION_CREDENTIAL_SECRET"),
    ("<cloud>", "REGION_NAME"),
    ("<cloud>", "INTERFACE"),
    ("<cloud>", "NETWORK_ID"),
    ("<cloud>", "FLOATING_IP_POOL"),
    ("<cloud>", "PORT"),
    ("<cloud>", "CLOUDNAME"),
    ("<cloud>", "TIMEUNIT"),
    ("<cloud>", "COSTUNIT"),
    ("<cloud>", "SAMPLING_WORKERS"),
    ("<cloud>", "MAXNODES"),
    ("<cloud>", "SPEEDFACTOR"),
    ("director", "DATABASE_URI"),
    ("director", "DIRECTOR_URL"),
    ("director", "DEBUG"),
    ("director", "OPEN_REGISTRATION"),
    ("director", "DB_MAX_CONNECTIONS"),
    ("director", "MANAGER_PORT"),
    ("director", "MANIFEST_ALLOW_PRIVATE_URLS"),
    ("director", "MAINTENANCE_INTERVAL"),
    ("director", "RECONCILE_GRACE"),
    ("director", "REAP_GRACE"),
    ("director", "REAPER"),
    ("director", "CHARGE_PATIENCE"),
    ("director", "MAX_APPLICATIONS_PER_USER"),
    ("director", "MAX_SERVICES_PER_USER"),
    ("director", "COPY_CLOUD_CREDENTIALS"),
    ("director", "MAX_AGENTS_PER_SERVICE"),
    ("director", "MAX_AGENTS_PER_USER"),
    ("director", "METRICS_ALLOW"),
    ("director", "METRICS_TOKEN_FILE"),
    ("director", "AUDIT_QUEUE"),
    ("director", "MAX_CONNECTIONS"),
    ("director", "MAX_ANONYMOUS_CONNECTIONS"),
    ("director", "MAX_CONNECTIONS_PER_ADDRESS"),
    ("director", "MAX_CONNECTIONS_PER_NETWORK"),
    ("director", "REQUEST_BODY_TIMEOUT"),
    ("director", "WRITE_TIMEOUT"),
];

/// The whole of director.cfg, typed: what each layer needs, built once at start.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DirectorConfig {
    /// `[conpaas] CONF_DIR`: holds `scripts/`, `config/` and `ConPaaS.tar.gz`.
    pub conf_dir: PathBuf,
    /// `[conpaas] CERT_DIR` and `KEY_ALGORITHM`.
    pub ca: CaSettings,
    /// `[conpaas] VPN_*`: `None` when none of the three keys is set. When set,
    /// [`VpnPlan::new`](crate::vpn::VpnPlan::new) has accepted them.
    pub vpn: Option<VpnSettings>,
    /// `[conpaas] VPN_BOOTSTRAP_NODES`: IPOP bootstrap nodes handed to every manager whose
    /// service has a VPN subnet (`IPOP_BOOTSTRAP_NODES`); empty = IPOP's built-in list.
    pub vpn_bootstrap_nodes: Vec<crate::vpn::BootstrapNode>,
    /// `[conpaas] MAX_CREDIT`: the most credit `/new_user` may grant; `None` = no cap.
    pub max_credit: Option<Credit>,
    /// `[director] MAX_APPLICATIONS_PER_USER`: applications a user may have.
    pub max_applications_per_user: u32,
    /// `[director] MAX_SERVICES_PER_USER`: services a user may have.
    pub max_services_per_user: u32,
    /// `[director] COPY_CLOUD_CREDENTIALS`: copy the cloud sections, credentials included,
    /// into every manager's config.cfg as 1.2 did, instead of pointing managers at the
    /// director's OCCI routes for their agents (default `false`).
    pub copy_cloud_credentials: bool,
    /// `[director] MAX_AGENTS_PER_SERVICE`: agent VMs one service may have through the
    /// director.
    pub max_agents_per_service: u32,
    /// `[director] MAX_AGENTS_PER_USER`: agent VMs one user may have, over their services.
    pub max_agents_per_user: u32,
    /// `[iaas]`: the default cloud, which users call `default`.
    pub default_cloud: CloudSettings,
    /// The sections named in `[iaas] OTHER_CLOUDS`, in list order.
    pub other_clouds: Vec<CloudSettings>,
    /// `[director] DATABASE_URI` and `DB_MAX_CONNECTIONS`.
    pub store: StoreSettings,
    /// `[director] DIRECTOR_URL`: the director as the VMs reach it. Needed to
    /// start services (see [`LoadedConfig::require_director_url`]), not to read the file.
    pub director_url: Option<DirectorUrl>,
    /// `[director] DEBUG`, as a boolean.
    pub debug: bool,
    /// `[director] OPEN_REGISTRATION`: let anyone call `/new_user`, not only the
    /// frontend's certificate.
    pub open_registration: bool,
    /// `[director] MANAGER_PORT`: the port the director calls managers on (443, as managers
    /// listen; another port serves test set-ups).
    pub manager_port: u16,
    /// `[director] MANIFEST_ALLOW_PRIVATE_URLS`: let manifests name URLs on loopback, private
    /// and link-local addresses (cloud metadata addresses stay refused).
    pub manifest_allow_private_urls: bool,
    /// `[director] MAINTENANCE_INTERVAL`: time between two maintenance passes.
    pub maintenance_interval: Duration,
    /// `[director] RECONCILE_GRACE`: how old a row without a VM must be before it is undone;
    /// `None` = the start timeout plus a minute.
    pub reconcile_grace: Option<Duration>,
    /// `[director] REAP_GRACE`: how old a VM without a row must be before it is terminated.
    pub reap_grace: Duration,
    /// `[director] REAPER`: `on`, `report` or `off`.
    pub reaper: ReaperMode,
    /// `[director] CHARGE_PATIENCE`: how long a manager's credit charge is retried while the
    /// database fails before it is deferred.
    pub charge_patience: Duration,
    /// `[director] AUDIT_QUEUE`: how many queued audit events of each priority wait in memory
    /// while the database is behind ([`DEFAULT_AUDIT_QUEUE`]).
    pub audit_queue: usize,
    /// `[director] METRICS_ALLOW`: client addresses that may read `/metrics` without the
    /// frontend's certificate (default: [`default_metrics_allow`]).
    pub metrics_allow: Vec<ipnet::IpNet>,
    /// `[director] METRICS_TOKEN_FILE`: the file holding the bearer token a scraper may send
    /// to read `/metrics` from anywhere; `None`: `CERT_DIR/metrics_token` when it exists
    /// (`director init` creates it).
    pub metrics_token_file: Option<PathBuf>,
    /// `[director] MAX_CONNECTIONS` to `WRITE_TIMEOUT`: the HTTPS listener's limits (what
    /// `api::server::TransportSettings::from_config` reads).
    pub connections: ConnectionLimits,
}

/// The HTTPS listener's limits from `[director]` (docs/operations.md, "Connection limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionLimits {
    /// `MAX_CONNECTIONS`: connections served at once.
    pub max_connections: usize,
    /// `MAX_ANONYMOUS_CONNECTIONS`: of those, connections without a verified client
    /// certificate (still in their TLS handshake, or done without one); at most
    /// `max_connections`.
    pub max_anonymous_connections: usize,
    /// `MAX_CONNECTIONS_PER_ADDRESS`: connections of one IPv4 address or IPv6 /64; `None`
    /// (`off`) = no cap, for a director behind a load balancer.
    pub max_connections_per_address: Option<usize>,
    /// `MAX_CONNECTIONS_PER_NETWORK`: connections of one IPv4 /24 or IPv6 /48; `None` (`off`)
    /// = no cap.
    pub max_connections_per_network: Option<usize>,
    /// `REQUEST_BODY_TIMEOUT`: time to receive a request's body once its headers are in.
    pub request_body_timeout: Duration,
    /// `WRITE_TIMEOUT`: how long writing an answer may make no progress.
    pub write_timeout: Duration,
}

impl ConnectionLimits {
    /// The limits when director.cfg sets none of the keys.
    pub fn recommended() -> Self {
        ConnectionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_anonymous_connections: default_max_anonymous_connections(DEFAULT_MAX_CONNECTIONS),
            max_connections_per_address: Some(DEFAULT_MAX_CONNECTIONS_PER_ADDRESS),
            max_connections_per_network: Some(DEFAULT_MAX_CONNECTIONS_PER_NETWORK),
            request_body_timeout: DEFAULT_REQUEST_BODY_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }
}

impl DirectorConfig {
    /// Every cloud: the default one first, then `OTHER_CLOUDS` in order.
    pub fn clouds(&self) -> impl Iterator<Item = &CloudSettings> {
        std::iter::once(&self.default_cloud).chain(&self.other_clouds)
    }
}

/// A director.cfg read and checked, with where it came from and what looked odd.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoadedConfig {
    /// The file read, as given (or inside the data directory).
    pub path: PathBuf,
    /// The settings.
    pub config: DirectorConfig,
    /// Things that work but look unintended; the binaries log each at `warn`.
    pub warnings: Vec<Warning>,
    /// The file was just generated for a new data directory.
    pub generated: bool,
    /// The `[director]` header's line, for the message of a missing `DIRECTOR_URL`.
    director_header_line: Option<usize>,
    /// Every `[section] KEY` with its value as read (interpolated), to tell what changed
    /// between two readings ([`LoadedConfig::changed_keys`]).
    values: Values,
}

/// The values of a file by `[section] KEY`; `Debug` shows the keys only (values may be
/// passwords).
#[derive(Clone, Default, PartialEq, Eq)]
struct Values(std::collections::BTreeMap<String, String>);

impl std::fmt::Debug for Values {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl LoadedConfig {
    /// The `[section] KEY` names whose values differ in `newer` (set, changed or removed),
    /// sorted; never the values, which may be passwords.
    pub fn changed_keys(&self, newer: &LoadedConfig) -> Vec<String> {
        let (before, after) = (&self.values.0, &newer.values.0);
        let mut changed: Vec<String> = before
            .iter()
            .filter(|(key, value)| after.get(*key) != Some(value))
            .map(|(key, _)| key.clone())
            .collect();
        changed.extend(
            after
                .keys()
                .filter(|key| !before.contains_key(*key))
                .cloned(),
        );
        changed.sort();
        changed
    }

    /// `DIRECTOR_URL`, which starting services needs (the VMs call back at it),
    /// or an error pointing at the file.
    pub fn require_director_url(&self) -> Result<&DirectorUrl, Error> {
        match &self.config.director_url {
            Some(url) => Ok(url),
            None => Err(Error::Invalid(vec![Problem {
                location: Location::new(
                    &self.path,
                    self.director_header_line,
                    Some("director"),
                    Some("DIRECTOR_URL"),
                ),
                kind: ProblemKind::Missing {
                    expected: format!(
                        "{} (the VMs call the director back at it)",
                        values::EXPECTED_DIRECTOR_URL
                    ),
                    section_missing: self.director_header_line.is_none(),
                },
            }])),
        }
    }
}

/// Reads director.cfg from `text`; `path` is only used in messages and kept in the result.
pub fn parse_str(path: &Path, text: &str) -> Result<LoadedConfig, Error> {
    let (ini, reader_warnings) = ini::Ini::parse(path, text).map_err(Error::Invalid)?;
    let (config, warnings) = build::build(&ini, reader_warnings).map_err(Error::Invalid)?;
    let values = Values(
        ini.sections()
            .iter()
            .flat_map(|section| {
                ini.items(section)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|value| {
                        (
                            format!("[{}] {}", section.name, value.key.to_ascii_uppercase()),
                            value.text,
                        )
                    })
            })
            .collect(),
    );
    Ok(LoadedConfig {
        path: path.to_path_buf(),
        config,
        warnings,
        generated: false,
        director_header_line: ini
            .section("director")
            .and_then(|section| section.header_line),
        values,
    })
}

/// Reads director.cfg from bytes, reporting the first line that is not UTF-8.
pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<LoadedConfig, Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_str(path, text),
        Err(error) => {
            let line = bytes[..error.valid_up_to()]
                .iter()
                .filter(|byte| **byte == b'\n')
                .count()
                + 1;
            Err(Error::Invalid(vec![Problem {
                location: Location::new(path, Some(line), None, None),
                kind: ProblemKind::NotUtf8,
            }]))
        }
    }
}

#[cfg(test)]
mod tests;
