//! Diagnostics of an installation (`cpscheck`): the configuration, the certificates, the
//! database, the files the managers need, the clock, the clouds and the running director.
//!
//! Each check gives one [`CheckResult`] whose [`line`](CheckResult::line) keeps the prefix style
//! of ConPaaS 1.2's `cpscheck.py` (`OK:`, `W:`, `E:`; `SKIP:` for a check that was not run)
//! and says what was checked, what was found and, when something is wrong, how to fix it. The
//! original's only check keeps its exact wording (`spec/manager-bootstrap.md` §13):
//!
//! ```text
//! OK: The hostname part of DIRECTOR_URL (localhost) matches the cname found in /srv/certs/cert.pem (localhost)
//! ```
//!
//! Nothing here writes to the installation: a missing data directory is reported, never
//! created, and the database write test is rolled back.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use conpaas_core::check::{self, CheckOptions, Status};
//! use conpaas_core::config::{self, ConfigSource, DataDirOrigin};
//!
//! let scratch = tempfile::tempdir()?;
//! let dir = scratch.path().join("conpaas-data");
//! let source = ConfigSource::DataDir { dir: dir.clone(), origin: DataDirOrigin::CommandLine };
//! let mut options = CheckOptions::recommended();
//! options.network = false;
//! // A data directory that does not exist: reported, never created.
//! assert!(matches!(check::run(&source, &options).await, Err(check::Error::NoConfig { .. })));
//! assert!(!dir.exists());
//! // Its director.cfg alone (no CA yet, no database): errors that say how to fix them.
//! config::load(&source)?;
//! let results = check::run(&source, &options).await?;
//! for result in &results {
//!     eprintln!("{}", result.line());
//! }
//! assert!(results.iter().any(|result| result.status == Status::Error));
//! # Ok(())
//! # }
//! ```

mod database;
mod files;
mod network;
pub use network::cloud_checks;
mod pki;

use std::fmt;
use std::io;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::config::{
    self, CONFIG_ENV_VAR, CONFIG_FILE_NAME, ConfigSource, DataDirOrigin, FileOrigin, LoadedConfig,
    SYSTEM_CONFIG_FILE,
};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Status {
    /// As it should be. Printed `OK:`.
    Ok,
    /// Works, but probably not as the operator wants, or will break soon. Printed `W:`.
    Warning,
    /// Broken: something the director, a client or a manager VM needs fails. Printed `E:`.
    Error,
    /// Not run: it needs the network and `--no-network` was given, or what it needs is absent
    /// (another check reports that). Printed `SKIP:`; neither a warning nor an error, so that a
    /// healthy installation checked offline passes without warnings.
    Skipped,
}

impl Status {
    /// The line prefix without its colon: `OK`, `W`, `E` or `SKIP`.
    pub fn prefix(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "W",
            Status::Error => "E",
            Status::Skipped => "SKIP",
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CheckResult {
    /// A stable name of the check, e.g. `pki.hostname`; several results may share one (one
    /// per file, per cloud). `docs/operations.md` lists them.
    pub id: &'static str,
    /// How it came out.
    pub status: Status,
    /// What was checked, in a few words (`director key file mode`).
    pub what: String,
    /// What was found: a sentence naming the file, key or host checked.
    pub found: String,
    /// How to fix it; `None` when nothing needs fixing or the finding says it already (the
    /// configuration's `expected ..., got ...` messages).
    pub fix: Option<String>,
}

impl CheckResult {
    fn new(
        id: &'static str,
        status: Status,
        what: impl Into<String>,
        found: impl Into<String>,
        fix: Option<String>,
    ) -> Self {
        CheckResult {
            id,
            status,
            what: what.into(),
            found: found.into(),
            fix,
        }
    }

    pub(crate) fn ok(id: &'static str, what: impl Into<String>, found: impl Into<String>) -> Self {
        Self::new(id, Status::Ok, what, found, None)
    }

    pub(crate) fn warning(
        id: &'static str,
        what: impl Into<String>,
        found: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(id, Status::Warning, what, found, Some(fix.into()))
    }

    pub(crate) fn error(
        id: &'static str,
        what: impl Into<String>,
        found: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(id, Status::Error, what, found, Some(fix.into()))
    }

    /// A warning or error, by `severity`.
    pub(crate) fn problem(
        id: &'static str,
        severity: Status,
        what: impl Into<String>,
        found: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(id, severity, what, found, Some(fix.into()))
    }

    pub(crate) fn skipped(
        id: &'static str,
        what: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Self::new(id, Status::Skipped, what, found, None)
    }

    /// The printed line: `PREFIX: found`, then `; fix: ...` when there is a fix.
    pub fn line(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.prefix(), self.found)?;
        if let Some(fix) = &self.fix {
            write!(f, "; fix: {fix}")?;
        }
        Ok(())
    }
}

/// What to check and the limits used.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CheckOptions {
    /// Run the checks that use the network: the clouds' credentials, the clouds' clocks and the
    /// TLS handshake with the director. Off, they are [`Status::Skipped`].
    pub network: bool,
    /// A certificate expiring sooner than this is a warning.
    pub expiry_warning: TimeDelta,
    /// Local and reference clocks further apart than this are a warning.
    pub clock_tolerance: TimeDelta,
    /// The longest any one network operation (connect, handshake, cloud call) may take.
    pub network_timeout: Duration,
}

impl CheckOptions {
    /// Everything checked; warnings 30 days before expiry and for clocks a minute apart; 10 s
    /// per network operation.
    pub fn recommended() -> Self {
        CheckOptions {
            network: true,
            expiry_warning: TimeDelta::days(30),
            clock_tolerance: TimeDelta::minutes(1),
            network_timeout: Duration::from_secs(10),
        }
    }
}

/// The checks could not run at all (cpscheck exits 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// There is no configuration where the resolution order looked.
    #[error("no configuration to check: {looked}")]
    NoConfig {
        /// Where it looked and what was missing there.
        looked: String,
    },
}

/// The configuration check's outcome: the configuration when it loaded, and the lines about it.
#[derive(Debug)]
#[non_exhaustive]
pub struct ConfigCheck {
    /// The configuration, when it parsed and validated; the other checks need it.
    pub loaded: Option<LoadedConfig>,
    /// `OK:` with the file, or one `E:` per problem; one `W:` per warning.
    pub results: Vec<CheckResult>,
}

/// Reads and validates the configuration of `source` with the director's own rules, without
/// creating anything: a data directory or director.cfg that does not exist is [`Error::NoConfig`]
/// (where `director` would create them).
pub fn check_config(source: &ConfigSource) -> Result<ConfigCheck, Error> {
    if let Some(looked) = missing_config(source) {
        return Err(Error::NoConfig { looked });
    }
    let mut results = Vec::new();
    let loaded = match config::load(source) {
        Ok(loaded) => {
            results.push(CheckResult::ok(
                "config",
                "configuration",
                format!(
                    "{} (from {source}) parses and every key is valid",
                    loaded.path.display()
                ),
            ));
            results.extend(loaded.warnings.iter().map(|warning| {
                // The warning names the line and says what is odd; the fix is editing that line.
                CheckResult::new(
                    "config",
                    Status::Warning,
                    "configuration",
                    warning.to_string(),
                    None,
                )
            }));
            // What the VPN plan allows, as the installation guide counts it (the keys were
            // checked while loading: a plan that cannot be is a configuration error above).
            let vpn = match &loaded.config.vpn {
                Some(settings) => crate::vpn::VpnPlan::new(settings)
                    .map_or_else(|error| error.to_string(), |plan| plan.capacity()),
                None => "no VPN: services get no VPN subnet (VPN_BASE_NETWORK, VPN_NETMASK and \
                         VPN_SERVICE_BITS are not set)"
                    .to_owned(),
            };
            results.push(CheckResult::ok("config.vpn", "VPN plan", vpn));
            Some(loaded)
        }
        Err(config::Error::FileNotFound { .. }) => {
            // Removed between our look and the read.
            return Err(Error::NoConfig {
                looked: missing_config(source).unwrap_or_else(|| source.to_string()),
            });
        }
        Err(error) => {
            let problems = error.problems();
            if problems.is_empty() {
                results.push(CheckResult::new(
                    "config",
                    Status::Error,
                    "configuration",
                    error_chain(&error),
                    None,
                ));
            } else {
                // The director's own messages, one line each: FILE:LINE: [section] KEY: ...
                results.extend(problems.iter().map(|problem| {
                    CheckResult::new(
                        "config",
                        Status::Error,
                        "configuration",
                        problem.to_string(),
                        None,
                    )
                }));
            }
            None
        }
    };
    Ok(ConfigCheck { loaded, results })
}

/// Where the configuration of `source` should be and is not, or `None` when it exists.
fn missing_config(source: &ConfigSource) -> Option<String> {
    let exists = |path: &Path| match std::fs::symlink_metadata(path) {
        Ok(_) => true,
        // An unreadable parent: let loading report the real error.
        Err(error) => error.kind() != io::ErrorKind::NotFound,
    };
    match source {
        ConfigSource::File { path, origin } => {
            if exists(path) {
                return None;
            }
            Some(match origin {
                FileOrigin::CommandLine => {
                    format!("--config {}: no such file", path.display())
                }
                FileOrigin::Environment => {
                    format!("{CONFIG_ENV_VAR}={}: no such file", path.display())
                }
                _ => format!("{}: no such file", path.display()),
            })
        }
        ConfigSource::DataDir { dir, origin } => {
            let file = dir.join(CONFIG_FILE_NAME);
            if exists(&file) {
                return None;
            }
            let what = if exists(dir) {
                format!("{} does not exist", file.display())
            } else {
                format!("{} does not exist", dir.display())
            };
            Some(match origin {
                DataDirOrigin::CommandLine => format!(
                    "--data-dir {}: {what} (cpscheck creates nothing; `director --data-dir {} \
                     init HOSTNAME` sets a data directory up)",
                    dir.display(),
                    dir.display()
                ),
                _ => format!(
                    "looked at --config (not given), --data-dir (not given), ${CONFIG_ENV_VAR} \
                     (not set), {SYSTEM_CONFIG_FILE} (no such file) and the default data \
                     directory: {what}; name the configuration with --config FILE or \
                     --data-dir DIR, or set one up with `director init HOSTNAME`"
                ),
            })
        }
    }
}

/// Every check after the configuration's, in a fixed order: certificates, database, files,
/// clock, clouds, the running director. Blocking file and database work runs on a blocking
/// thread.
pub async fn run_checks(loaded: &LoadedConfig, options: &CheckOptions) -> Vec<CheckResult> {
    let local = {
        let loaded = loaded.clone();
        let options = options.clone();
        tokio::task::spawn_blocking(move || local_checks(&loaded, &options)).await
    };
    let mut results = match local {
        Ok(results) => results,
        Err(join_error) => match join_error.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(_) => vec![CheckResult::new(
                "internal",
                Status::Error,
                "checks",
                "the local checks were cancelled (the runtime is shutting down)",
                None,
            )],
        },
    };
    results.extend(network::checks(loaded, options).await);
    results
}

/// The checks that only read local files and the database: synchronous, for callers without a
/// runtime (never call it on one).
pub fn local_checks(loaded: &LoadedConfig, options: &CheckOptions) -> Vec<CheckResult> {
    let now = Utc::now();
    let mut results = pki::checks(loaded, options, now);
    results.extend(database::checks(loaded));
    results.extend(files::checks(loaded));
    results
}

/// [`check_config`], then [`run_checks`] when the configuration loaded.
pub async fn run(source: &ConfigSource, options: &CheckOptions) -> Result<Vec<CheckResult>, Error> {
    let ConfigCheck {
        loaded,
        mut results,
    } = check_config(source)?;
    if let Some(loaded) = loaded {
        results.extend(run_checks(&loaded, options).await);
    }
    Ok(results)
}

/// An error with its causes: `cannot connect ...: unable to open database file`.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    crate::model::ErrorChain(error).to_string()
}

/// A time as the lines show it: `2030-01-31 12:00:00 UTC`.
pub(crate) fn show_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A duration as the lines show it: `3 days`, `5 h 2 min`, `42 s`.
pub(crate) fn show_duration(delta: TimeDelta) -> String {
    let seconds = delta.num_seconds().unsigned_abs();
    match seconds {
        0..120 => format!("{seconds} s"),
        120..7200 => format!("{} min {} s", seconds / 60, seconds % 60),
        7200..172_800 => format!("{} h {} min", seconds / 3600, (seconds % 3600) / 60),
        _ => format!("{} days", seconds / 86_400),
    }
}

#[cfg(test)]
mod tests;
