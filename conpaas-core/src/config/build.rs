//! Turns a parsed director.cfg into a [`DirectorConfig`]: every key checked, every problem collected.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

use crate::ca::{CaSettings, KeyAlgorithm};
use crate::cloud::{CloudSettings, DriverSettings, Ec2Settings, InstanceType, OpenNebulaSettings};
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
    DEFAULT_BOOT_TIMEOUT, DEFAULT_DB_MAX_CONNECTIONS, DEFAULT_MANAGER_PORT, DirectorConfig,
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

const EXPECTED_DRIVER: &str = "a driver: ec2, opennebula or dummy";
const EXPECTED_BOOT_TIMEOUT: &str = "a whole number of seconds between 1 and 86400";
const MAX_BOOT_TIMEOUT_SECONDS: u64 = 86_400;

/// Marks a check whose problem has already been recorded.
#[derive(Debug, Clone, Copy)]
struct Reported;

type Checked<T> = Result<T, Reported>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DriverKind {
    Dummy,
    Ec2,
    OpenNebula,
}

impl DriverKind {
    fn name(self) -> &'static str {
        match self {
            DriverKind::Dummy => "dummy",
            DriverKind::Ec2 => "ec2",
            DriverKind::OpenNebula => "opennebula",
        }
    }

    fn keys(self) -> &'static [&'static str] {
        match self {
            DriverKind::Dummy => &[],
            DriverKind::Ec2 => EC2_KEYS,
            DriverKind::OpenNebula => OPENNEBULA_KEYS,
        }
    }
}

fn parse_driver(text: &str) -> Result<DriverKind, String> {
    match text.to_ascii_lowercase().as_str() {
        "dummy" => Ok(DriverKind::Dummy),
        "ec2" => Ok(DriverKind::Ec2),
        "opennebula" => Ok(DriverKind::OpenNebula),
        "openstack" => Err(format!(
            "{EXPECTED_DRIVER} (the openstack driver of ConPaaS 1.2 is not supported)"
        )),
        _ => Err(EXPECTED_DRIVER.to_owned()),
    }
}

fn parse_key_algorithm(text: &str) -> Result<KeyAlgorithm, String> {
    match text.to_ascii_lowercase().as_str() {
        "rsa" => Ok(KeyAlgorithm::Rsa2048),
        "ecdsa" => Ok(KeyAlgorithm::EcdsaP256),
        _ => Err("a key algorithm: rsa (RSA-2048) or ecdsa (ECDSA P-256)".to_owned()),
    }
}

fn parse_instance_type(text: &str) -> Result<InstanceType, String> {
    // Exact, lower-case names: 1.2 managers, which get this section copied, compare them exactly.
    InstanceType::ALL
        .into_iter()
        .find(|instance_type| instance_type.as_str() == text)
        .ok_or_else(|| "an instance type: small, medium, large or custom".to_owned())
}

fn parse_boot_timeout(text: &str) -> Result<Duration, String> {
    parse_integer(text, 1, MAX_BOOT_TIMEOUT_SECONDS)
        .map(Duration::from_secs)
        .map_err(|_| EXPECTED_BOOT_TIMEOUT.to_owned())
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

        self.warn_unknown_keys("conpaas", CONPAAS_KEYS);
        self.warn_unknown_keys("director", DIRECTOR_KEYS);
        self.warn_unknown_sections(&other_names);

        let (
            Ok(conf_dir),
            Ok(cert_dir),
            Ok(key_algorithm),
            Ok(vpn),
            Ok(max_credit),
            Ok(default_cloud),
            Ok(database_url),
            Ok(max_connections),
            Ok(director_url),
            Ok(debug),
            Ok(open_registration),
            Ok(manager_port),
            Ok(manifest_allow_private_urls),
        ) = (
            conf_dir,
            cert_dir,
            key_algorithm,
            vpn,
            max_credit,
            default_cloud,
            database_url,
            max_connections,
            director_url,
            debug,
            open_registration,
            manager_port,
            manifest_allow_private_urls,
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

    fn vpn(&mut self) -> Checked<Option<VpnSettings>> {
        const BASE: &str = "VPN_BASE_NETWORK";
        const NETMASK: &str = "VPN_NETMASK";
        const BITS: &str = "VPN_SERVICE_BITS";
        const EXPECTED_BASE: &str = "a dotted IPv4 address, such as 172.16.0.0";
        const EXPECTED_NETMASK: &str = "a dotted IPv4 netmask, such as 255.240.0.0";
        const EXPECTED_BITS: &str = "an integer between 0 and 30";
        let base = self.find_nonempty("conpaas", BASE);
        let netmask = self.find_nonempty("conpaas", NETMASK);
        let bits = self.find_nonempty("conpaas", BITS);
        let legacy = self.optional("conpaas", "vpn_legacy_subnets", parse_bool);
        let (Ok(base), Ok(netmask), Ok(bits), Ok(legacy)) = (base, netmask, bits, legacy) else {
            return Err(Reported);
        };
        let (base, netmask, bits) = match (base, netmask, bits) {
            (None, None, None) => {
                if legacy.is_some() {
                    let line = self
                        .ini
                        .get("conpaas", "vpn_legacy_subnets")
                        .ok()
                        .flatten()
                        .map(|value| value.line);
                    self.warn(
                        "conpaas",
                        line,
                        Some("VPN_LEGACY_SUBNETS"),
                        WarningKind::VpnSwitchWithoutVpn,
                    );
                }
                return Ok(None);
            }
            (Some(base), Some(netmask), Some(bits)) => (base, netmask, bits),
            (base, netmask, bits) => {
                // 1.2 silently ran without a VPN here; say which keys are missing.
                let present: Vec<&str> = [
                    (BASE, base.is_some()),
                    (NETMASK, netmask.is_some()),
                    (BITS, bits.is_some()),
                ]
                .into_iter()
                .filter_map(|(key, present)| present.then_some(key))
                .collect();
                let because = format!(
                    "since {} {} set (the VPN needs all three VPN_* keys or none)",
                    present.join(" and "),
                    if present.len() == 1 { "is" } else { "are" }
                );
                for (key, expected, found) in [
                    (BASE, EXPECTED_BASE, base.is_some()),
                    (NETMASK, EXPECTED_NETMASK, netmask.is_some()),
                    (BITS, EXPECTED_BITS, bits.is_some()),
                ] {
                    if !found {
                        self.missing("conpaas", key, format!("{expected}, {because}"));
                    }
                }
                return Err(Reported);
            }
        };
        let base_network = Ipv4Addr::from_str(&base.text)
            .map_err(|_| self.invalid("conpaas", &base, EXPECTED_BASE));
        // Only the dotted form works end to end: IPOP on the VMs receives the text verbatim.
        let netmask_addr = Ipv4Addr::from_str(&netmask.text).map_err(|_| {
            self.invalid(
                "conpaas",
                &netmask,
                format!("{EXPECTED_NETMASK} (not a prefix length)"),
            )
        });
        let service_bits = parse_integer(&bits.text, 0, 30)
            .ok()
            .and_then(|number| u8::try_from(number).ok())
            .ok_or_else(|| self.invalid("conpaas", &bits, EXPECTED_BITS));
        let (Ok(base_network), Ok(netmask_addr), Ok(service_bits)) =
            (base_network, netmask_addr, service_bits)
        else {
            return Err(Reported);
        };
        let settings = VpnSettings {
            base_network,
            netmask: netmask_addr,
            service_bits,
            arithmetic: if legacy == Some(true) {
                SubnetArithmetic::Legacy
            } else {
                SubnetArithmetic::Documented
            },
        };
        if let Err(source) = VpnPlan::new(&settings) {
            let key = source.setting_key().unwrap_or(NETMASK);
            let line = [(BASE, &base), (NETMASK, &netmask), (BITS, &bits)]
                .into_iter()
                .find(|(name, _)| *name == key)
                .map(|(_, value)| value.line);
            let location = self.location("conpaas", line, Some(key));
            self.problems.push(Problem {
                location,
                kind: ProblemKind::VpnPlan { source },
            });
            return Err(Reported);
        }
        Ok(Some(settings))
    }

    fn find_nonempty(&mut self, section: &str, key: &str) -> Checked<Option<Value>> {
        Ok(self
            .find(section, key)?
            .filter(|value| !value.text.is_empty()))
    }

    fn database_url(&mut self) -> Checked<DatabaseUrl> {
        let (url, value) = self.required_value(
            "director",
            "database_uri",
            EXPECTED_DATABASE_URI,
            parse_database_url,
        )?;
        if let DatabaseUrl::Sqlite(path) = &url
            && path.is_relative()
        {
            self.warn(
                "director",
                Some(value.line),
                Some("DATABASE_URI"),
                WarningKind::RelativePath {
                    path: path.display().to_string(),
                },
            );
        }
        Ok(url)
    }

    /// `DEBUG` as a boolean; 1.2 turned debug mode on whenever the key existed.
    fn debug(&mut self) -> Checked<bool> {
        let Some(value) = self.find("director", "debug")? else {
            return Ok(false);
        };
        let on = if value.text.is_empty() {
            false
        } else {
            parse_bool(&value.text)
                .map_err(|expected| self.invalid("director", &value, expected))?
        };
        if !on {
            self.warn(
                "director",
                Some(value.line),
                Some("DEBUG"),
                WarningKind::DebugPresence { value: value.text },
            );
        }
        Ok(on)
    }

    /// `[iaas] OTHER_CLOUDS`, trimmed; entries without a section or with a reserved name are errors.
    fn other_cloud_names(&mut self) -> Vec<String> {
        let Ok(Some(value)) = self.find("iaas", "other_clouds") else {
            return Vec::new();
        };
        let mut names: Vec<String> = Vec::new();
        for entry in value.text.split(',') {
            let name = py_strip(entry);
            if name.is_empty() {
                continue;
            }
            if RESERVED_SECTIONS.contains(&name) {
                let expected = format!(
                    "names of cloud sections other than {}",
                    RESERVED_SECTIONS.join(", ")
                );
                self.invalid_entry(&value, expected, name);
                continue;
            }
            if self.ini.section(name).is_none() {
                self.invalid_entry(&value, "each name to have its own [name] section", name);
                continue;
            }
            if name != entry {
                self.warn(
                    "iaas",
                    Some(value.line),
                    Some("OTHER_CLOUDS"),
                    WarningKind::TrimmedCloudName {
                        name: name.to_owned(),
                    },
                );
            }
            if names.iter().any(|known| known == name) {
                self.warn(
                    "iaas",
                    Some(value.line),
                    Some("OTHER_CLOUDS"),
                    WarningKind::RepeatedCloud {
                        name: name.to_owned(),
                    },
                );
                continue;
            }
            names.push(name.to_owned());
        }
        names
    }

    fn invalid_entry(&mut self, value: &Value, expected: impl Into<String>, entry: &str) {
        let location = self.location("iaas", Some(value.line), Some(&value.key));
        self.problems.push(Problem {
            location,
            kind: ProblemKind::Invalid {
                expected: expected.into(),
                got: entry.to_owned(),
            },
        });
    }

    fn cloud(&mut self, name: &str) -> Checked<CloudSettings> {
        let kind = self.required(name, "driver", EXPECTED_DRIVER, parse_driver);
        let section = self.section_copy(name);
        let driver = match kind {
            Ok(DriverKind::Dummy) => Ok(DriverSettings::Dummy),
            Ok(DriverKind::Ec2) => self.ec2(name).map(DriverSettings::Ec2),
            Ok(DriverKind::OpenNebula) => self.opennebula(name).map(DriverSettings::OpenNebula),
            Err(reported) => Err(reported),
        };
        if let Ok(kind) = kind {
            self.warn_unused_cloud_keys(name, kind);
        }
        Ok(CloudSettings {
            name: name.to_owned(),
            driver: driver?,
            section: section?,
        })
    }

    /// The section as the managers get it (see [`CloudSettings::section`]).
    fn section_copy(&mut self, name: &str) -> Checked<Vec<(String, String)>> {
        let Some(section) = self.ini.section(name) else {
            return Ok(Vec::new());
        };
        match self.ini.items(section) {
            Ok(values) => Ok(values
                .into_iter()
                .map(|value| {
                    let text =
                        if name == CloudSettings::DEFAULT_SECTION && value.key == "other_clouds" {
                            value
                                .text
                                .split(',')
                                .map(py_strip)
                                .filter(|entry| !entry.is_empty())
                                .collect::<Vec<_>>()
                                .join(",")
                        } else {
                            value.text
                        };
                    (value.key.to_ascii_uppercase(), text)
                })
                .collect()),
            Err(problems) => {
                self.problems.extend(problems);
                Err(Reported)
            }
        }
    }

    fn boot_timeout(&mut self, section: &str) -> Checked<Duration> {
        Ok(self
            .optional(section, "boot_timeout", parse_boot_timeout)?
            .unwrap_or(DEFAULT_BOOT_TIMEOUT))
    }

    fn ec2(&mut self, section: &str) -> Checked<Ec2Settings> {
        let access_key_id = self.required_text(section, "user", "the AWS access key id");
        let secret_access_key =
            self.required(section, "password", "the AWS secret access key", |text| {
                Ok(SecretString::from(text))
            });
        let image_id = self.required_text(section, "image_id", "an AMI id, such as ami-bb780cd2");
        let size_id = self.required_text(section, "size_id", "an instance type, such as t1.micro");
        let security_group_name =
            self.required_text(section, "security_group_name", "a security group name");
        let key_name = self.required_text(section, "key_name", "a key pair name");
        let region = self
            .required_value(
                section,
                "region",
                "an EC2 endpoint host, such as ec2.us-east-1.amazonaws.com",
                parse_ec2_region,
            )
            .map(|(region, value)| {
                if !region.is_known_to_1_2() {
                    self.warn(
                        section,
                        Some(value.line),
                        Some("REGION"),
                        WarningKind::RegionUnknownTo12 { region: value.text },
                    );
                }
                region
            });
        let endpoint = self.optional(section, "endpoint", |text| match parse_endpoint(text) {
            Some((url, path)) if path.is_empty() || path == "/" => Ok(url),
            _ => Err(
                "an http:// or https:// URL without a path, such as http://127.0.0.1:5000"
                    .to_owned(),
            ),
        });
        let boot_timeout = self.boot_timeout(section);
        Ok(Ec2Settings {
            access_key_id: access_key_id?,
            secret_access_key: secret_access_key?,
            image_id: image_id?,
            size_id: size_id?,
            security_group_name: security_group_name?,
            key_name: key_name?,
            region: region?,
            endpoint: endpoint?,
            boot_timeout: boot_timeout?,
        })
    }

    fn opennebula(&mut self, section: &str) -> Checked<OpenNebulaSettings> {
        let url = self
            .required_value(
                section,
                "url",
                "the OCCI server's http:// or https:// URL, such as http://occi.example.org:4567",
                |text| {
                    parse_endpoint(text).ok_or_else(|| {
                        "the OCCI server's http:// or https:// URL, such as http://occi.example.org:4567".to_owned()
                    })
                },
            )
            .map(|((url, path), value)| {
                if !path.is_empty() && path != "/" {
                    self.warn(section, Some(value.line), Some("URL"), WarningKind::IgnoredUrlPath { path });
                }
                url
            });
        let user = self.required_text(section, "user", "the OpenNebula user name");
        let password = self.required(section, "password", "the OpenNebula password", |text| {
            Ok(SecretString::from(text))
        });
        let image_id = self.required(
            section,
            "image_id",
            "an image id (a non-negative integer)",
            |text| {
                parse_integer(text, 0, u64::MAX)
                    .map_err(|_| "an image id (a non-negative integer)".to_owned())
            },
        );
        let instance_type = self.required(
            section,
            "inst_type",
            "an instance type: small, medium, large or custom",
            parse_instance_type,
        );
        let network_id = self.required(
            section,
            "net_id",
            "a network id (a non-negative integer)",
            |text| {
                parse_integer(text, 0, u64::MAX)
                    .map_err(|_| "a network id (a non-negative integer)".to_owned())
            },
        );
        const EXPECTED_GATEWAY: &str = "the gateway as a dotted IPv4 address (the VM runs \"ip route add default via\" with it, so a host name does not work)";
        let gateway = self.required(section, "net_gateway", EXPECTED_GATEWAY, |text| {
            parse_ipv4(text, "the gateway").map_err(|_| EXPECTED_GATEWAY.to_owned())
        });
        let netmask = self.required(
            section,
            "net_netmask",
            "a dotted IPv4 netmask such as 255.255.255.0",
            parse_netmask,
        );
        let nameserver = self.required(
            section,
            "net_nameserver",
            "the DNS server as a dotted IPv4 address",
            |text| parse_ipv4(text, "the DNS server"),
        );
        let os_arch =
            self.required_text(section, "os_arch", "the VMs' architecture, such as x86_64");
        let os_root = self.required_text(section, "os_root", "the root device, such as sda");
        let disk_target = self.required_text(
            section,
            "disk_target",
            "the image's disk device, such as sda",
        );
        let context_target = self.required_text(
            section,
            "context_target",
            "the context CD-ROM device, such as sr0",
        );
        let xmlrpc = self.optional(section, "xmlrpc", |text| Ok(text.to_owned()));
        let boot_timeout = self.boot_timeout(section);
        Ok(OpenNebulaSettings {
            url: url?,
            user: user?,
            password: password?,
            image_id: image_id?,
            instance_type: instance_type?,
            network_id: network_id?,
            gateway: gateway?,
            netmask: netmask?,
            nameserver: nameserver?,
            os_arch: os_arch?,
            os_root: os_root?,
            disk_target: disk_target?,
            context_target: context_target?,
            xmlrpc: xmlrpc?,
            boot_timeout: boot_timeout?,
        })
    }

    /// Warns about keys written in a cloud section that its driver does not read
    /// (not about `[DEFAULT]`'s, which every section sees).
    fn warn_unused_cloud_keys(&mut self, name: &str, kind: DriverKind) {
        let Some(section) = self.ini.section(name) else {
            return;
        };
        let is_default = name == CloudSettings::DEFAULT_SECTION;
        let unused: Vec<(String, usize)> = section
            .entries
            .iter()
            .filter(|entry| {
                !(contains_key(CLOUD_COMMON_KEYS, &entry.key)
                    || contains_key(PASS_THROUGH_KEYS, &entry.key)
                    || contains_key(kind.keys(), &entry.key)
                    || (is_default && contains_key(IAAS_KEYS, &entry.key)))
            })
            .map(|entry| (entry.key.clone(), entry.line))
            .collect();
        for (key, line) in unused {
            self.warn(
                name,
                Some(line),
                Some(&key),
                WarningKind::UnusedCloudKey {
                    driver: kind.name(),
                },
            );
        }
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
