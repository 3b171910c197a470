//! Turns a parsed director.cfg into a [`DirectorConfig`]: every key checked, every problem collected.
//! One file per part of the file, as docs/config.md is laid out: `[conpaas]` (conpaas.rs),
//! `[director]` (director.rs), the cloud sections (clouds.rs); the collecting `Builder` here.

mod clouds;
mod conpaas;
mod director;

use conpaas::parse_key_algorithm;
use director::{parse_metrics_allow, parse_reaper_mode};

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

use crate::ca::{CaSettings, KeyAlgorithm};
use crate::cloud::{
    AddressPolicy, CloudSettings, DriverSettings, Ec2Credentials, Ec2Settings, InstanceType,
    MetadataTokens, OpenNebulaSettings,
};
use crate::cloud::{OpenNebulaVm, OpenNebulaVmSpec, OpenNebulaXmlRpcSettings};
use crate::cloud::{
    OpenStackApplicationCredential, OpenStackCredential, OpenStackInterface, OpenStackPassword,
    OpenStackProject, OpenStackSettings,
};
use crate::model::Credit;
use crate::store::{DatabaseUrl, StoreSettings};
use crate::vpn::{SubnetArithmetic, VpnPlan, VpnSettings};

use super::error::{Location, Problem, ProblemKind, Warning, WarningKind};
use super::ini::{DEFAULT_SECTION, Ini, Value, py_strip};
use super::values::{
    DirectorUrl, EXPECTED_DATABASE_URI, EXPECTED_DIRECTOR_URL, parse_bool, parse_database_url,
    parse_ec2_region, parse_endpoint, parse_integer, parse_ipv4, parse_netmask, shown_value,
};
use super::{
    ConnectionLimits, DEFAULT_BOOT_TIMEOUT, DEFAULT_CHARGE_PATIENCE, DEFAULT_DB_MAX_CONNECTIONS,
    DEFAULT_MAINTENANCE_INTERVAL, DEFAULT_MANAGER_PORT, DEFAULT_MAX_APPLICATIONS_PER_USER,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    DEFAULT_MAX_CONNECTIONS_PER_NETWORK, DEFAULT_MAX_SERVICES_PER_USER, DEFAULT_REAP_GRACE,
    DEFAULT_REQUEST_BODY_TIMEOUT, DEFAULT_WRITE_TIMEOUT, DirectorConfig, ReaperMode,
    default_max_anonymous_connections,
};

/// The sections the director reads besides the clouds.
const DIRECTOR_SECTIONS: [&str; 3] = ["conpaas", "director", "iaas"];

/// Section names that cannot be clouds: the director's own sections, the
/// `[manager]` section 1.2 wrote at run time, and `[DEFAULT]`.
const RESERVED_SECTIONS: [&str; 5] = ["conpaas", "director", "manager", "iaas", DEFAULT_SECTION];

/// Keys of `[conpaas]`.
pub(crate) const CONPAAS_KEYS: &[&str] = &[
    "CONF_DIR",
    "CERT_DIR",
    "VPN_BASE_NETWORK",
    "VPN_NETMASK",
    "VPN_SERVICE_BITS",
    "VPN_LEGACY_SUBNETS",
    "VPN_BOOTSTRAP_NODES",
    "KEY_ALGORITHM",
    "MAX_CREDIT",
];

/// Keys of `[director]`.
pub(crate) const DIRECTOR_KEYS: &[&str] = &[
    "DATABASE_URI",
    "DIRECTOR_URL",
    "DEBUG",
    "OPEN_REGISTRATION",
    "DB_MAX_CONNECTIONS",
    "MANAGER_PORT",
    "MANIFEST_ALLOW_PRIVATE_URLS",
    "MAINTENANCE_INTERVAL",
    "RECONCILE_GRACE",
    "REAP_GRACE",
    "REAPER",
    "CHARGE_PATIENCE",
    "MAX_APPLICATIONS_PER_USER",
    "MAX_SERVICES_PER_USER",
    "COPY_CLOUD_CREDENTIALS",
    "MAX_AGENTS_PER_SERVICE",
    "MAX_AGENTS_PER_USER",
    "METRICS_ALLOW",
    "METRICS_TOKEN_FILE",
    "AUDIT_QUEUE",
    "MAX_CONNECTIONS",
    "MAX_ANONYMOUS_CONNECTIONS",
    "MAX_CONNECTIONS_PER_ADDRESS",
    "MAX_CONNECTIONS_PER_NETWORK",
    "REQUEST_BODY_TIMEOUT",
    "WRITE_TIMEOUT",
];

/// Keys every cloud section may hold whatever its driver.
pub(crate) const CLOUD_COMMON_KEYS: &[&str] = &["DRIVER"];

/// Keys only `[iaas]` reads.
pub(crate) const IAAS_KEYS: &[&str] = &["OTHER_CLOUDS"];

/// Keys of an `ec2` cloud section.
pub(crate) const EC2_KEYS: &[&str] = &[
    "USER",
    "PASSWORD",
    "IMAGE_ID",
    "SIZE_ID",
    "SECURITY_GROUP_NAME",
    "KEY_NAME",
    "REGION",
    "ENDPOINT",
    "SUBNET_ID",
    "SECURITY_GROUP_IDS",
    "METADATA_TOKENS",
    "MANAGER_ADDRESS",
    "PROFILE",
    "BOOT_TIMEOUT",
];

/// Keys of an `opennebula` cloud section.
pub(crate) const OPENNEBULA_KEYS: &[&str] = &[
    "URL",
    "USER",
    "PASSWORD",
    "IMAGE_ID",
    "INST_TYPE",
    "NET_ID",
    "NET_GATEWAY",
    "NET_NETMASK",
    "NET_NAMESERVER",
    "OS_ARCH",
    "OS_ROOT",
    "DISK_TARGET",
    "CONTEXT_TARGET",
    "XMLRPC",
    "BOOT_TIMEOUT",
    "API",
];

/// Keys of an `opennebula` cloud section with `API = xmlrpc`.
pub(crate) const OPENNEBULA_XMLRPC_KEYS: &[&str] = &[
    "API",
    "XMLRPC",
    "USER",
    "PASSWORD",
    "TEMPLATE_ID",
    "IMAGE_ID",
    "NET_ID",
    "CPU",
    "VCPU",
    "MEMORY",
    "NET_GATEWAY",
    "NET_NETMASK",
    "NET_NAMESERVER",
    "BOOT_TIMEOUT",
];

/// Keys of an `openstack` cloud section.
pub(crate) const OPENSTACK_KEYS: &[&str] = &[
    "AUTH_URL",
    "USER",
    "PASSWORD",
    "PROJECT_NAME",
    "PROJECT_ID",
    "USER_DOMAIN_NAME",
    "PROJECT_DOMAIN_NAME",
    "APPLICATION_CREDENTIAL_ID",
    "APPLICATION_CREDENTIAL_SECRET",
    "REGION_NAME",
    "INTERFACE",
    "IMAGE_ID",
    "SIZE_ID",
    "NETWORK_ID",
    "SECURITY_GROUP_NAME",
    "KEY_NAME",
    "FLOATING_IP_POOL",
    "BOOT_TIMEOUT",
];

/// Keys the director does not read but the 1.2 managers (TaskFarm) do: copied without a warning.
pub(crate) const PASS_THROUGH_KEYS: &[&str] = &[
    "PORT",
    "CLOUDNAME",
    "TIMEUNIT",
    "COSTUNIT",
    "SAMPLING_WORKERS",
    "MAXNODES",
    "SPEEDFACTOR",
    "XMLRPC",
];

/// Marks a check whose problem has already been recorded.
#[derive(Debug, Clone, Copy)]
struct Reported;

type Checked<T> = Result<T, Reported>;

/// A whole number of seconds, 1 s to a day (the maintenance keys).
fn parse_seconds(text: &str) -> Result<Duration, String> {
    parse_integer(text, 1, 86_400)
        .map(Duration::from_secs)
        .map_err(|_| "a whole number of seconds between 1 and 86400".to_owned())
}

/// A per-user cap: 1 to a million.
fn parse_cap(text: &str) -> Result<u32, String> {
    parse_integer(text, 1, 1_000_000)
        .ok()
        .and_then(|cap| u32::try_from(cap).ok())
        .ok_or_else(|| "a whole number between 1 and 1000000".to_owned())
}

fn contains_key(keys: &[&str], key: &str) -> bool {
    keys.iter().any(|known| known.eq_ignore_ascii_case(key))
}

/// Collects problems and warnings while checking keys one by one.
struct Builder<'a> {
    ini: &'a Ini,
    problems: Vec<Problem>,
    warnings: Vec<Warning>,
}

/// Builds the typed configuration, or returns every problem found (sorted by line, without duplicates).
pub(crate) fn build(
    ini: &Ini,
    reader_warnings: Vec<Warning>,
) -> Result<(DirectorConfig, Vec<Warning>), Vec<Problem>> {
    let mut builder = Builder {
        ini,
        problems: Vec::new(),
        warnings: reader_warnings,
    };
    let config = builder.director_config();
    let Builder {
        mut problems,
        mut warnings,
        ..
    } = builder;
    sort_and_dedup(
        &mut warnings,
        |warning| &warning.location,
        |warning| warning.to_string(),
    );
    match config {
        Ok(config) if problems.is_empty() => Ok((config, warnings)),
        _ => {
            sort_and_dedup(
                &mut problems,
                |problem| &problem.location,
                |problem| problem.to_string(),
            );
            Err(problems)
        }
    }
}

/// Orders by line (missing sections last), keeping the check order within a line, and drops repeats.
fn sort_and_dedup<T>(
    items: &mut Vec<T>,
    location: impl Fn(&T) -> &Location,
    text: impl Fn(&T) -> String,
) {
    items.sort_by_key(|item| location(item).line.unwrap_or(usize::MAX));
    let mut seen = HashSet::new();
    items.retain(|item| seen.insert(text(item)));
}

impl Builder<'_> {
    fn director_config(&mut self) -> Checked<DirectorConfig> {
        let conf_dir = self.path(
            "conpaas",
            "conf_dir",
            "a directory path, such as /etc/cpsdirector",
        );
        let cert_dir = self.path(
            "conpaas",
            "cert_dir",
            "a directory path, such as /etc/cpsdirector/certs",
        );
        let key_algorithm = self.optional("conpaas", "key_algorithm", parse_key_algorithm);
        let vpn = self.vpn();
        let vpn_bootstrap_nodes = self.vpn_bootstrap_nodes(matches!(vpn, Ok(Some(_))));
        let max_credit = self.optional("conpaas", "max_credit", |text| {
            let credit = parse_integer(text, 0, u64::MAX)?;
            i64::try_from(credit)
                .map(Credit)
                .map_err(|_| "a non-negative integer".to_owned())
        });

        let default_cloud = self.cloud(CloudSettings::DEFAULT_SECTION);
        let other_names = self.other_cloud_names();
        let other_clouds: Vec<Checked<CloudSettings>> =
            other_names.iter().map(|name| self.cloud(name)).collect();

        let database_url = self.database_url();
        let max_connections = self.optional("director", "db_max_connections", |text| {
            let number = parse_integer(text, 1, u64::MAX)?;
            u32::try_from(number).map_err(|_| "a positive integer".to_owned())
        });
        let director_url = self.optional("director", "director_url", |text| {
            DirectorUrl::from_str(text).map_err(|_| EXPECTED_DIRECTOR_URL.to_owned())
        });
        let debug = self.debug();
        let open_registration = self.optional("director", "open_registration", parse_bool);
        let manager_port = self.optional("director", "manager_port", |text| {
            let port = parse_integer(text, 1, u64::from(u16::MAX))?;
            u16::try_from(port).map_err(|_| "a port number between 1 and 65535".to_owned())
        });
        let manifest_allow_private_urls =
            self.optional("director", "manifest_allow_private_urls", parse_bool);
        let maintenance_interval = self.optional("director", "maintenance_interval", parse_seconds);
        let reconcile_grace = self.optional("director", "reconcile_grace", parse_seconds);
        let reap_grace = self.optional("director", "reap_grace", parse_seconds);
        let reaper = self.optional("director", "reaper", parse_reaper_mode);
        let charge_patience = self.optional("director", "charge_patience", |text| {
            parse_integer(text, 1, 3600)
                .map(Duration::from_secs)
                .map_err(|_| "a whole number of seconds between 1 and 3600".to_owned())
        });
        let max_applications = self.optional("director", "max_applications_per_user", parse_cap);
        let max_services = self.optional("director", "max_services_per_user", parse_cap);
        let copy_cloud_credentials =
            self.optional("director", "copy_cloud_credentials", parse_bool);
        let max_agents_per_service = self.optional("director", "max_agents_per_service", parse_cap);
        let max_agents_per_user = self.optional("director", "max_agents_per_user", parse_cap);
        let metrics_allow = self.optional("director", "metrics_allow", parse_metrics_allow);
        let metrics_token_file = self.optional("director", "metrics_token_file", |text| {
            Ok(PathBuf::from(text))
        });
        let audit_queue = self.optional("director", "audit_queue", |text| {
            parse_integer(text, 1, 10_000_000)
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
                .map_err(|_| "a whole number between 1 and 10000000".to_owned())
        });
        let connections = self.connection_limits();

        self.warn_unknown_keys("conpaas", CONPAAS_KEYS);
        self.warn_unknown_keys("director", DIRECTOR_KEYS);
        self.warn_unknown_sections(&other_names);

        let (
            Ok(conf_dir),
            Ok(cert_dir),
            Ok(key_algorithm),
            Ok(vpn),
            Ok(vpn_bootstrap_nodes),
            Ok(max_credit),
            Ok(default_cloud),
            Ok(database_url),
            Ok(max_connections),
            Ok(director_url),
            Ok(debug),
            Ok(open_registration),
            Ok(manager_port),
            Ok(manifest_allow_private_urls),
            Ok(maintenance_interval),
            Ok(reconcile_grace),
            Ok(reap_grace),
            Ok(reaper),
            Ok(charge_patience),
            Ok(max_applications),
            Ok(max_services),
            Ok(copy_cloud_credentials),
            Ok(max_agents_per_service),
            Ok(max_agents_per_user),
            Ok(metrics_allow),
            Ok(metrics_token_file),
            Ok(audit_queue),
            Ok(connections),
        ) = (
            conf_dir,
            cert_dir,
            key_algorithm,
            vpn,
            vpn_bootstrap_nodes,
            max_credit,
            default_cloud,
            database_url,
            max_connections,
            director_url,
            debug,
            open_registration,
            manager_port,
            manifest_allow_private_urls,
            maintenance_interval,
            reconcile_grace,
            reap_grace,
            reaper,
            charge_patience,
            max_applications,
            max_services,
            copy_cloud_credentials,
            max_agents_per_service,
            max_agents_per_user,
            metrics_allow,
            metrics_token_file,
            audit_queue,
            connections,
        )
        else {
            return Err(Reported);
        };
        let other_clouds = other_clouds.into_iter().collect::<Checked<Vec<_>>>()?;
        Ok(DirectorConfig {
            conf_dir,
            ca: CaSettings {
                cert_dir,
                key_algorithm: key_algorithm.unwrap_or(KeyAlgorithm::Rsa2048),
            },
            vpn,
            vpn_bootstrap_nodes,
            max_credit,
            default_cloud,
            other_clouds,
            store: StoreSettings {
                url: database_url,
                max_connections: max_connections.unwrap_or(DEFAULT_DB_MAX_CONNECTIONS),
            },
            director_url,
            debug,
            open_registration: open_registration.unwrap_or(false),
            manager_port: manager_port.unwrap_or(DEFAULT_MANAGER_PORT),
            manifest_allow_private_urls: manifest_allow_private_urls.unwrap_or(false),
            maintenance_interval: maintenance_interval.unwrap_or(DEFAULT_MAINTENANCE_INTERVAL),
            reconcile_grace,
            reap_grace: reap_grace.unwrap_or(DEFAULT_REAP_GRACE),
            reaper: reaper.unwrap_or_default(),
            charge_patience: charge_patience.unwrap_or(DEFAULT_CHARGE_PATIENCE),
            max_applications_per_user: max_applications
                .unwrap_or(DEFAULT_MAX_APPLICATIONS_PER_USER),
            max_services_per_user: max_services.unwrap_or(DEFAULT_MAX_SERVICES_PER_USER),
            copy_cloud_credentials: copy_cloud_credentials.unwrap_or(false),
            max_agents_per_service: max_agents_per_service
                .unwrap_or(super::DEFAULT_MAX_AGENTS_PER_SERVICE),
            max_agents_per_user: max_agents_per_user.unwrap_or(super::DEFAULT_MAX_AGENTS_PER_USER),
            metrics_allow: metrics_allow.unwrap_or_else(super::default_metrics_allow),
            metrics_token_file,
            audit_queue: audit_queue.unwrap_or(super::DEFAULT_AUDIT_QUEUE),
            connections,
        })
    }

    fn location(&self, section: &str, line: Option<usize>, key: Option<&str>) -> Location {
        Location::new(self.ini.file(), line, Some(section), key)
    }

    fn warn(&mut self, section: &str, line: Option<usize>, key: Option<&str>, kind: WarningKind) {
        let location = self.location(section, line, key);
        self.warnings.push(Warning { location, kind });
    }

    /// Looks a key up through `[DEFAULT]`; an interpolation error is recorded.
    fn find(&mut self, section: &str, key: &str) -> Checked<Option<Value>> {
        self.ini.get(section, key).map_err(|problem| {
            self.problems.push(*problem);
            Reported
        })
    }

    fn missing(&mut self, section: &str, key: &str, expected: impl Into<String>) -> Reported {
        let found = self.ini.section(section);
        let line = found.and_then(|found| found.header_line);
        let location = self.location(section, line, Some(key));
        self.problems.push(Problem {
            location,
            kind: ProblemKind::Missing {
                expected: expected.into(),
                section_missing: found.is_none(),
            },
        });
        Reported
    }

    fn invalid(&mut self, section: &str, value: &Value, expected: impl Into<String>) -> Reported {
        let location = self.location(section, Some(value.line), Some(&value.key));
        self.problems.push(Problem {
            location,
            kind: ProblemKind::Invalid {
                expected: expected.into(),
                got: shown_value(&value.key, &value.text),
            },
        });
        Reported
    }

    /// A key that must be present and non-empty (1.2's drivers required both).
    fn required<T>(
        &mut self,
        section: &str,
        key: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Checked<T> {
        self.required_value(section, key, expected, parse)
            .map(|(parsed, _)| parsed)
    }

    fn required_value<T>(
        &mut self,
        section: &str,
        key: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Checked<(T, Value)> {
        match self.find(section, key)? {
            None => Err(self.missing(section, key, expected)),
            Some(value) if value.text.is_empty() => Err(self.invalid(section, &value, expected)),
            Some(value) => match parse(&value.text) {
                Ok(parsed) => Ok((parsed, value)),
                Err(expected) => Err(self.invalid(section, &value, expected)),
            },
        }
    }

    fn required_text(&mut self, section: &str, key: &str, expected: &str) -> Checked<String> {
        self.required(section, key, expected, |text| Ok(text.to_owned()))
    }

    /// An optional key; empty counts as absent.
    fn optional<T>(
        &mut self,
        section: &str,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Checked<Option<T>> {
        match self.find(section, key)? {
            None => Ok(None),
            Some(value) if value.text.is_empty() => Ok(None),
            Some(value) => match parse(&value.text) {
                Ok(parsed) => Ok(Some(parsed)),
                Err(expected) => Err(self.invalid(section, &value, expected)),
            },
        }
    }

    /// A required path; relative paths work but depend on the working directory.
    fn path(&mut self, section: &str, key: &str, expected: &str) -> Checked<PathBuf> {
        let (path, value) =
            self.required_value(section, key, expected, |text| Ok(PathBuf::from(text)))?;
        if path.is_relative() {
            self.warn(
                section,
                Some(value.line),
                Some(key),
                WarningKind::RelativePath { path: value.text },
            );
        }
        Ok(path)
    }

    fn find_nonempty(&mut self, section: &str, key: &str) -> Checked<Option<Value>> {
        Ok(self
            .find(section, key)?
            .filter(|value| !value.text.is_empty()))
    }

    fn warn_unknown_keys(&mut self, name: &str, known: &[&str]) {
        let Some(section) = self.ini.section(name) else {
            return;
        };
        let unknown: Vec<(String, usize)> = section
            .entries
            .iter()
            .filter(|entry| !contains_key(known, &entry.key))
            .map(|entry| (entry.key.clone(), entry.line))
            .collect();
        for (key, line) in unknown {
            self.warn(name, Some(line), Some(&key), WarningKind::UnknownKey);
        }
    }

    fn warn_unknown_sections(&mut self, other_clouds: &[String]) {
        let ignored: Vec<(String, Option<usize>, bool)> = self
            .ini
            .sections()
            .iter()
            .filter(|section| {
                !DIRECTOR_SECTIONS.contains(&section.name.as_str())
                    && !other_clouds.contains(&section.name)
            })
            .map(|section| {
                (
                    section.name.clone(),
                    section.header_line,
                    section.entry("driver").is_some(),
                )
            })
            .collect();
        for (name, line, has_driver) in ignored {
            let kind = if has_driver {
                WarningKind::UnlistedCloud
            } else {
                WarningKind::UnknownSection
            };
            self.warn(&name, line, None, kind);
        }
    }
}
