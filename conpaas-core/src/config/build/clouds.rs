//! The cloud sections: `[iaas]`, the `OTHER_CLOUDS` sections, each driver's keys.

use super::*;

const EXPECTED_DRIVER: &str = "a driver: ec2, opennebula or dummy";
const EXPECTED_BOOT_TIMEOUT: &str = "a whole number of seconds between 1 and 86400";
const MAX_BOOT_TIMEOUT_SECONDS: u64 = 86_400;
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

/// Whether `text` has the form of an EC2 resource id with `prefix` (`sg-`, `subnet-`): hex after
/// the prefix.
fn is_ec2_id(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 32 && rest.bytes().all(|b| b.is_ascii_hexdigit())
    })
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

impl Builder<'_> {
    /// `[iaas] OTHER_CLOUDS`, trimmed; entries without a section or with a reserved name are errors.
    pub(super) fn other_cloud_names(&mut self) -> Vec<String> {
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

    pub(super) fn cloud(&mut self, name: &str) -> Checked<CloudSettings> {
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
        let mut section = section?;
        let driver = driver?;
        if let DriverSettings::OpenNebula(one) = &driver
            && !section.iter().any(|(key, _)| key == "OS_ARCH")
        {
            // 1.2 managers read OS_ARCH from their copy of the section and fail without it.
            section.push(("OS_ARCH".to_owned(), one.os_arch.clone()));
        }
        Ok(CloudSettings {
            name: name.to_owned(),
            driver,
            section,
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
        let credentials = self.ec2_credentials(section);
        let image_id = self.required_text(section, "image_id", "an AMI id, such as ami-bb780cd2");
        let size_id = self.required_text(section, "size_id", "an instance type, such as t1.micro");
        let security_group_ids = self.optional(section, "security_group_ids", |text| {
            let ids: Vec<String> = text
                .split(',')
                .map(py_strip)
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() && ids.iter().all(|id| is_ec2_id(id, "sg-")) {
                Ok(ids)
            } else {
                Err(
                    "security group ids separated by commas, such as sg-0a1b2c3d,sg-4e5f6a7b"
                        .to_owned(),
                )
            }
        });
        // A name is needed only when no ids are given (the director launches with the ids);
        // 1.2 managers, which get this section copied, need the name whatever the ids.
        let security_group_name = match &security_group_ids {
            Ok(Some(_)) => {
                self.optional(section, "security_group_name", |text| Ok(text.to_owned()))
            }
            Ok(None) => self
                .required_text(
                    section,
                    "security_group_name",
                    "a security group name (or SECURITY_GROUP_IDS)",
                )
                .map(Some),
            Err(Reported) => Err(Reported),
        };
        let subnet_id = self.optional(section, "subnet_id", |text| {
            if is_ec2_id(text, "subnet-") {
                Ok(text.to_owned())
            } else {
                Err("a VPC subnet id, such as subnet-0a1b2c3d".to_owned())
            }
        });
        let metadata_tokens = self.optional(section, "metadata_tokens", |text| {
            match text.to_ascii_lowercase().as_str() {
                "required" => Ok(MetadataTokens::Required),
                "optional" => Ok(MetadataTokens::Optional),
                _ => Err("required (IMDSv2 only) or optional (IMDSv1 too)".to_owned()),
            }
        });
        let address = self.optional(section, "manager_address", |text| {
            match text.to_ascii_lowercase().as_str() {
                "public" => Ok(AddressPolicy::Public),
                "public-or-private" => Ok(AddressPolicy::PublicOrPrivate),
                _ => Err(
                    "public, or public-or-private (the private address when the instance \
                          has no public one)"
                        .to_owned(),
                ),
            }
        });
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
            credentials: credentials?,
            image_id: image_id?,
            size_id: size_id?,
            security_group_name: security_group_name?,
            security_group_ids: security_group_ids?.unwrap_or_default(),
            subnet_id: subnet_id?,
            key_name: key_name?,
            region: region?,
            endpoint: endpoint?,
            address: address?.unwrap_or(AddressPolicy::Public),
            metadata_tokens: metadata_tokens?.unwrap_or(MetadataTokens::Required),
            boot_timeout: boot_timeout?,
        })
    }

    /// `USER` and `PASSWORD` together (an access key), or neither (AWS's credential chain,
    /// with `PROFILE` naming the shared-file profile).
    fn ec2_credentials(&mut self, section: &str) -> Checked<Ec2Credentials> {
        let user = self.find_nonempty(section, "user")?;
        let password = self.find_nonempty(section, "password")?;
        let profile = self.find_nonempty(section, "profile")?;
        match (user, password) {
            (Some(user), Some(password)) => {
                if let Some(profile) = profile {
                    return Err(self.invalid(
                        section,
                        &profile,
                        "no PROFILE beside USER and PASSWORD (the keys are used; remove one)",
                    ));
                }
                Ok(Ec2Credentials::keys(
                    user.text,
                    SecretString::from(password.text),
                ))
            }
            (None, None) => Ok(Ec2Credentials::Chain {
                profile: profile.map(|value| value.text),
            }),
            (Some(_), None) => Err(self.missing(
                section,
                "password",
                "the AWS secret access key of USER (or neither USER nor PASSWORD, for the AWS \
                 credential chain)",
            )),
            (None, Some(_)) => Err(self.missing(
                section,
                "user",
                "the AWS access key id of PASSWORD (or neither USER nor PASSWORD, for the AWS \
                 credential chain)",
            )),
        }
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
        const EXPECTED_ARCH: &str = "the VMs' architecture, such as x86_64";
        // Absent: the default (1.2 required the key). Present, it must be a word: it ends up
        // between double quotes in OpenNebula's template (common.erb).
        let os_arch = match self.find(section, "os_arch") {
            Ok(None) => Ok(OpenNebulaSettings::DEFAULT_OS_ARCH.to_owned()),
            Ok(Some(_)) => self.required(section, "os_arch", EXPECTED_ARCH, |text| {
                if text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
                {
                    Ok(text.to_owned())
                } else {
                    Err(EXPECTED_ARCH.to_owned())
                }
            }),
            Err(reported) => Err(reported),
        };
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
}
