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
    /// `opennebula` with `API = xmlrpc`.
    OpenNebulaXmlRpc,
    OpenStack,
}

impl DriverKind {
    fn name(self) -> &'static str {
        match self {
            DriverKind::Dummy => "dummy",
            DriverKind::Ec2 => "ec2",
            DriverKind::OpenNebula => "opennebula",
            DriverKind::OpenNebulaXmlRpc => "opennebula (API = xmlrpc)",
            DriverKind::OpenStack => "openstack",
        }
    }

    fn keys(self) -> &'static [&'static str] {
        match self {
            DriverKind::Dummy => &[],
            DriverKind::Ec2 => EC2_KEYS,
            DriverKind::OpenNebula => OPENNEBULA_KEYS,
            DriverKind::OpenNebulaXmlRpc => OPENNEBULA_XMLRPC_KEYS,
            DriverKind::OpenStack => OPENSTACK_KEYS,
        }
    }
}

fn parse_driver(text: &str) -> Result<DriverKind, String> {
    match text.to_ascii_lowercase().as_str() {
        "dummy" => Ok(DriverKind::Dummy),
        "ec2" => Ok(DriverKind::Ec2),
        "opennebula" => Ok(DriverKind::OpenNebula),
        "openstack" => Ok(DriverKind::OpenStack),
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

const EXPECTED_AUTH_URL: &str = "Keystone's v3 URL, such as https://keystone.example.org:5000/v3";
const EXPECTED_OPENSTACK_NO_HOST: &str = "AUTH_URL instead: ConPaaS 1.2 reached OpenStack at HOST through Nova's EC2-compatible API, which OpenStack removed after Liberty; the openstack driver speaks Keystone v3, Nova and Neutron: write AUTH_URL (such as https://keystone.example.org:5000/v3) with USER, PASSWORD and PROJECT_NAME (or APPLICATION_CREDENTIAL_ID and APPLICATION_CREDENTIAL_SECRET), IMAGE_ID, SIZE_ID and NETWORK_ID";
const EXPECTED_ONE_CREDENTIAL: &str = "one credential: USER, PASSWORD and PROJECT_NAME/PROJECT_ID, or APPLICATION_CREDENTIAL_ID and APPLICATION_CREDENTIAL_SECRET, not both";

/// `AUTH_URL`: an http(s) URL, normalised to end in `/v3`.
fn parse_auth_url(text: &str) -> Result<String, String> {
    match parse_endpoint(text) {
        Some((url, path)) if !path.contains(['?', '#']) => Ok(
            crate::cloud::openstack_settings::normalise_auth_url(&format!("{url}{path}")),
        ),
        _ => Err(EXPECTED_AUTH_URL.to_owned()),
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
        let kind = match kind {
            Ok(DriverKind::OpenNebula) => self.opennebula_api(name),
            other => other,
        };
        let section = self.section_copy(name);
        let driver = match kind {
            Ok(DriverKind::Dummy) => Ok(DriverSettings::Dummy),
            Ok(DriverKind::Ec2) => self.ec2(name).map(DriverSettings::Ec2),
            Ok(DriverKind::OpenNebula) => self.opennebula(name).map(DriverSettings::OpenNebula),
            Ok(DriverKind::OpenNebulaXmlRpc) => self
                .opennebula_xmlrpc(name)
                .map(DriverSettings::OpenNebulaXmlRpc),
            Ok(DriverKind::OpenStack) => self.openstack(name).map(DriverSettings::OpenStack),
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

    /// `API` of an `opennebula` section: `occi` (or absent) is 1.2's OCCI driver, `xmlrpc`
    /// the XML-RPC one.
    fn opennebula_api(&mut self, section: &str) -> Checked<DriverKind> {
        let api = self.optional(section, "api", |text| {
            match text.to_ascii_lowercase().as_str() {
                "occi" => Ok(DriverKind::OpenNebula),
                "xmlrpc" => Ok(DriverKind::OpenNebulaXmlRpc),
                _ => Err(
                    "the OpenNebula API: occi (OpenNebula up to 4.6) or xmlrpc (5.x-7.x)"
                        .to_owned(),
                ),
            }
        })?;
        Ok(api.unwrap_or(DriverKind::OpenNebula))
    }

    fn opennebula_xmlrpc(&mut self, section: &str) -> Checked<OpenNebulaXmlRpcSettings> {
        const EXPECTED_URL: &str =
            "OpenNebula's XML-RPC URL, such as https://one.example.org:2633/RPC2";
        let url = self.required(section, "xmlrpc", EXPECTED_URL, |text| {
            parse_endpoint(text).ok_or_else(|| EXPECTED_URL.to_owned())
        });
        let user = self.required_text(section, "user", "the OpenNebula user name");
        let password = self.required(
            section,
            "password",
            "the OpenNebula password or login token",
            |text| Ok(SecretString::from(text)),
        );
        // XML-RPC ints are 32 bits: ids beyond are no OpenNebula id.
        let id = |what: &'static str| {
            move |text: &str| {
                parse_integer(text, 0, i32::MAX as u64)
                    .map_err(|_| format!("{what} (a non-negative integer)"))
            }
        };
        let template_id = self.optional(section, "template_id", id("a VM template id"));
        let image_id = self.optional(section, "image_id", id("an image id"));
        let network_id = self.optional(section, "net_id", id("a virtual network id"));
        let cpu = self.optional(section, "cpu", |text| {
            let positive = text
                .parse::<f64>()
                .is_ok_and(|cpu| cpu.is_finite() && cpu > 0.0)
                && text
                    .bytes()
                    .all(|byte| byte.is_ascii_digit() || byte == b'.');
            if positive {
                Ok(text.to_owned())
            } else {
                Err("the share of physical CPUs, a positive decimal such as 1 or 0.5".to_owned())
            }
        });
        let memory = self.optional(section, "memory", |text| {
            parse_integer(text, 1, 1 << 40)
                .map_err(|_| "the memory in MB (a positive integer)".to_owned())
        });
        let vcpu = self.optional(section, "vcpu", |text| {
            parse_integer(text, 1, 4096)
                .ok()
                .and_then(|vcpu| u32::try_from(vcpu).ok())
                .ok_or_else(|| "the number of virtual CPUs (1 to 4096)".to_owned())
        });
        let gateway = self.optional(section, "net_gateway", |text| {
            parse_ipv4(text, "the gateway")
        });
        let netmask = self.optional(section, "net_netmask", parse_netmask);
        let nameserver = self.optional(section, "net_nameserver", |text| {
            parse_ipv4(text, "the DNS server")
        });
        let boot_timeout = self.boot_timeout(section);
        let (template_id, image_id, network_id, cpu, memory, vcpu) =
            (template_id?, image_id?, network_id?, cpu?, memory?, vcpu?);
        let vm = match template_id {
            Some(template_id) => {
                // Exactly one form: the template's own disk, NIC and size are what runs.
                let mut clash = Checked::Ok(());
                for (key, present) in [
                    ("image_id", image_id.is_some()),
                    ("net_id", network_id.is_some()),
                    ("cpu", cpu.is_some()),
                    ("memory", memory.is_some()),
                    ("vcpu", vcpu.is_some()),
                ] {
                    if present && let Ok(Some(value)) = self.find(section, key) {
                        clash = Err(self.invalid(
                            section,
                            &value,
                            "no value with TEMPLATE_ID: the VM is the template's (remove this \
                             key, or TEMPLATE_ID to have the director write the VM's template)",
                        ));
                    }
                }
                clash.map(|()| OpenNebulaVm::Template(template_id))
            }
            None => {
                let mut missing = Checked::Ok(());
                for (key, present, expected) in [
                    (
                        "image_id",
                        image_id.is_some(),
                        "an image id (or TEMPLATE_ID, a VM template id)",
                    ),
                    (
                        "net_id",
                        network_id.is_some(),
                        "a virtual network id (or TEMPLATE_ID)",
                    ),
                    (
                        "cpu",
                        cpu.is_some(),
                        "the share of physical CPUs, such as 1 (or TEMPLATE_ID)",
                    ),
                    (
                        "memory",
                        memory.is_some(),
                        "the memory in MB, such as 1024 (or TEMPLATE_ID)",
                    ),
                ] {
                    if !present {
                        missing = Err(self.missing(section, key, expected));
                    }
                }
                missing.map(|()| {
                    let spec = OpenNebulaVmSpec {
                        image_id: image_id.unwrap_or_default(),
                        network_id: network_id.unwrap_or_default(),
                        cpu: cpu.unwrap_or_default(),
                        memory_mb: memory.unwrap_or_default(),
                        vcpu,
                    };
                    OpenNebulaVm::Allocate(spec)
                })
            }
        };
        let (endpoint, path) = url?;
        Ok(OpenNebulaXmlRpcSettings {
            endpoint,
            path: if path.is_empty() {
                "/".to_owned()
            } else {
                path
            },
            user: user?,
            password: password?,
            vm: vm?,
            gateway: gateway?,
            netmask: netmask?,
            nameserver: nameserver?,
            boot_timeout: boot_timeout?,
        })
    }

    fn openstack(&mut self, section: &str) -> Checked<OpenStackSettings> {
        // A 1.2 section: HOST was the Nova EC2-compatible endpoint, which OpenStack removed
        // after Liberty. Saying so beats "AUTH_URL is missing".
        if self.find_nonempty(section, "auth_url")?.is_none()
            && let Some(host) = self.find_nonempty(section, "host")?
        {
            return Err(self.invalid(section, &host, EXPECTED_OPENSTACK_NO_HOST));
        }
        let auth_url = self.required(section, "auth_url", EXPECTED_AUTH_URL, parse_auth_url);
        let credential = self.openstack_credential(section);
        let region_name = self.optional(section, "region_name", |text| Ok(text.to_owned()));
        let interface = self.optional(section, "interface", |text| {
            OpenStackInterface::ALL
                .into_iter()
                .find(|interface| interface.as_str() == text.to_ascii_lowercase())
                .ok_or_else(|| "an endpoint interface: public, internal or admin".to_owned())
        });
        let image = self.required_text(
            section,
            "image_id",
            "an image name or id, such as ubuntu-24.04 (Glance)",
        );
        let flavor =
            self.required_text(section, "size_id", "a flavor name or id, such as m1.small");
        let network = self.optional(section, "network_id", |text| Ok(text.to_owned()));
        let security_group_name =
            self.optional(section, "security_group_name", |text| Ok(text.to_owned()));
        let key_name = self.optional(section, "key_name", |text| Ok(text.to_owned()));
        let floating_ip_pool =
            self.optional(section, "floating_ip_pool", |text| Ok(text.to_owned()));
        let boot_timeout = self.boot_timeout(section);
        Ok(OpenStackSettings {
            auth_url: auth_url?,
            credential: credential?,
            region_name: region_name?,
            interface: interface?.unwrap_or(OpenStackInterface::Public),
            image: image?,
            flavor: flavor?,
            network: network?,
            security_group_name: security_group_name?,
            key_name: key_name?,
            floating_ip_pool: floating_ip_pool?,
            boot_timeout: boot_timeout?,
        })
    }

    /// Exactly one of the two credential forms: a password (`USER`, `PASSWORD`, a project)
    /// or an application credential (`APPLICATION_CREDENTIAL_ID`, `..._SECRET`).
    fn openstack_credential(&mut self, section: &str) -> Checked<OpenStackCredential> {
        let application_id = self.find_nonempty(section, "application_credential_id")?;
        let application_secret = self.find_nonempty(section, "application_credential_secret")?;
        if application_id.is_some() || application_secret.is_some() {
            for key in ["user", "password", "project_name", "project_id"] {
                if let Some(value) = self.find_nonempty(section, key)? {
                    return Err(self.invalid(section, &value, EXPECTED_ONE_CREDENTIAL));
                }
            }
            let id = self.required_text(
                section,
                "application_credential_id",
                "the application credential's id (with APPLICATION_CREDENTIAL_SECRET)",
            );
            let secret = self.required(
                section,
                "application_credential_secret",
                "the application credential's secret (with APPLICATION_CREDENTIAL_ID)",
                |text| Ok(SecretString::from(text)),
            );
            return Ok(OpenStackCredential::ApplicationCredential(
                OpenStackApplicationCredential::new(id?, secret?),
            ));
        }
        let user = self.required_text(
            section,
            "user",
            "the OpenStack user name (or APPLICATION_CREDENTIAL_ID and APPLICATION_CREDENTIAL_SECRET instead of USER, PASSWORD and PROJECT_NAME)",
        );
        let password = self.required(section, "password", "the OpenStack password", |text| {
            Ok(SecretString::from(text))
        });
        let project_name = self.find_nonempty(section, "project_name")?;
        let project_id = self.find_nonempty(section, "project_id")?;
        let project = match (project_name, project_id) {
            (Some(name), None) => Ok(OpenStackProject::Name(name.text)),
            (None, Some(id)) => Ok(OpenStackProject::Id(id.text)),
            (Some(_), Some(id)) => {
                Err(self.invalid(section, &id, "PROJECT_NAME or PROJECT_ID, not both"))
            }
            (None, None) => Err(self.missing(
                section,
                "project_name",
                "the project the managers run in (or its id as PROJECT_ID)",
            )),
        };
        let domain = |text: &str| Ok(text.to_owned());
        let user_domain_name = self.optional(section, "user_domain_name", domain);
        let project_domain_name = self.optional(section, "project_domain_name", domain);
        let mut password = OpenStackPassword::new(user?, password?, project?);
        if let Some(domain) = user_domain_name? {
            password = password.user_domain_name(domain);
        }
        if let Some(domain) = project_domain_name? {
            password = password.project_domain_name(domain);
        }
        Ok(OpenStackCredential::Password(password))
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
