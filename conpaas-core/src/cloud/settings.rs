//! The settings of one cloud: its section of director.cfg, typed per driver (built by `config`).

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use secrecy::SecretString;

use super::openstack_settings::OpenStackSettings;

/// How long a new VM may take to get its address when `BOOT_TIMEOUT` is not set: 300 s.
pub(crate) const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// One cloud the director can start managers on: `[iaas]` or a section named in `OTHER_CLOUDS`.
#[derive(Clone)]
#[non_exhaustive]
pub struct CloudSettings {
    /// The section name, which is also the name stored in `service.cloud`:
    /// [`CloudSettings::DEFAULT_SECTION`] (`iaas`) for the default cloud, which
    /// users call `default`; otherwise the name listed in `[iaas] OTHER_CLOUDS`.
    pub name: String,
    /// The driver and its typed keys.
    pub driver: DriverSettings,
    /// Every option the section holds, as 1.2 copied it into each manager's
    /// `config.cfg` (`spec/manager-bootstrap.md` §4): upper-cased key and
    /// interpolated value, `[DEFAULT]` keys first, then the section's own keys in
    /// file order, credentials and unknown keys included. `OTHER_CLOUDS` is the
    /// one value rewritten: its names are trimmed and joined with `,` so that
    /// 1.2 managers, which do not trim, see the same clouds as the director.
    pub section: Vec<(String, String)>,
}

impl CloudSettings {
    /// The section of the default cloud.
    pub const DEFAULT_SECTION: &'static str = "iaas";

    /// The cloud `name` (its section's name) with its driver's settings and no section to
    /// copy into managers' `config.cfg` (set it with [`section`](Self::section)).
    pub fn new(name: impl Into<String>, driver: DriverSettings) -> Self {
        CloudSettings {
            name: name.into(),
            driver,
            section: Vec::new(),
        }
    }

    setters! { section: Vec<(String, String)> }

    /// Whether this is the default cloud (`[iaas]`).
    pub fn is_default(&self) -> bool {
        self.name == Self::DEFAULT_SECTION
    }
}

impl fmt::Debug for CloudSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The copied section holds the cloud credentials in clear (the managers
        // need them), so only its keys are shown.
        let keys: Vec<&str> = self.section.iter().map(|(key, _)| key.as_str()).collect();
        f.debug_struct("CloudSettings")
            .field("name", &self.name)
            .field("driver", &self.driver)
            .field("section_keys", &keys)
            .finish()
    }
}

/// The driver of a cloud section (`DRIVER`) and its keys.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DriverSettings {
    /// `DRIVER = dummy`: no VM is started; every "VM" is a file named by the start's client
    /// token (`cps-<hex>-s<sid>`), at `127.0.0.3` as in 1.2.
    Dummy,
    /// `DRIVER = ec2`: Amazon EC2 (or an EC2-compatible endpoint).
    Ec2(Ec2Settings),
    /// `DRIVER = opennebula`: OpenNebula's OCCI 0.x server.
    OpenNebula(OpenNebulaSettings),
    /// `DRIVER = openstack`: OpenStack's own APIs (Keystone v3, Nova v2.1, Neutron).
    OpenStack(OpenStackSettings),
}

impl DriverSettings {
    /// The driver's name as 1.2 spelled it: also the name of the
    /// `scripts/cloud/<name>` file prepended to the manager's boot script.
    pub fn name(&self) -> &'static str {
        match self {
            DriverSettings::Dummy => "dummy",
            DriverSettings::Ec2(_) => "ec2",
            DriverSettings::OpenNebula(_) => "opennebula",
            DriverSettings::OpenStack(_) => "openstack",
        }
    }
}

/// The keys of an EC2 cloud section (`spec/config.md` §6.1, `spec/clouds.md` §6).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Ec2Settings {
    /// `USER`: the AWS access key id.
    pub access_key_id: String,
    /// `PASSWORD`: the AWS secret access key.
    pub secret_access_key: SecretString,
    /// `IMAGE_ID`: the AMI id, not checked locally.
    pub image_id: String,
    /// `SIZE_ID`: the instance type (`t1.micro`, `m1.small`...), not checked locally.
    pub size_id: String,
    /// `SECURITY_GROUP_NAME`: a security group name in the region.
    pub security_group_name: String,
    /// `KEY_NAME`: a key pair name in the region.
    pub key_name: String,
    /// `REGION`: the region's endpoint host.
    pub region: Ec2Region,
    /// `ENDPOINT` (ours): a URL that replaces `https://<REGION>` for every API
    /// call, e.g. a local moto server in tests. Requests are still signed for
    /// [`Ec2Region::name`].
    pub endpoint: Option<EndpointUrl>,
    /// `BOOT_TIMEOUT` (ours): how long a new VM may take to get its address.
    pub boot_timeout: Duration,
}

/// An EC2 region as `REGION` names it: the endpoint host `ec2.<region>.amazonaws.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ec2Region {
    /// The region, e.g. `us-east-1`.
    pub name: String,
    /// The endpoint host, e.g. `ec2.us-east-1.amazonaws.com`: `REGION` verbatim.
    pub endpoint_host: String,
}

impl Ec2Region {
    /// The only three `REGION` values 1.2 (and so a 1.2 manager) knows.
    pub const KNOWN_TO_1_2: [&'static str; 3] = [
        "ec2.us-east-1.amazonaws.com",
        "ec2.us-west-2.amazonaws.com",
        "ec2.eu-west-1.amazonaws.com",
    ];

    /// The region `name` (`us-east-1`), at the endpoint host `ec2.<name>.amazonaws.com`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Ec2Region {
            endpoint_host: format!("ec2.{name}.amazonaws.com"),
            name,
        }
    }

    setters! {
        name: into String,
        endpoint_host: into String,
    }

    /// Whether 1.2 managers, which get this section copied, can use this region.
    pub fn is_known_to_1_2(&self) -> bool {
        Self::KNOWN_TO_1_2.contains(&self.endpoint_host.as_str())
    }
}

/// The keys of an OpenNebula (OCCI) cloud section (`spec/config.md` §6.2, `spec/clouds.md` §7).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OpenNebulaSettings {
    /// `URL`: the OCCI server; as in 1.2 only scheme, host and port are used.
    pub url: EndpointUrl,
    /// `USER`: the OpenNebula user name.
    pub user: String,
    /// `PASSWORD`: the OpenNebula password in clear (the client sends its SHA-1).
    pub password: SecretString,
    /// `IMAGE_ID`: the image, `/storage/<IMAGE_ID>`.
    pub image_id: u64,
    /// `INST_TYPE`: the OCCI instance type.
    pub instance_type: InstanceType,
    /// `NET_ID`: the virtual network, `/network/<NET_ID>`.
    pub network_id: u64,
    /// `NET_GATEWAY`: the VM's default gateway (context `IP_GATEWAY`).
    pub gateway: Ipv4Addr,
    /// `NET_NETMASK`: the VM's netmask (context `NETMASK`).
    pub netmask: Ipv4Addr,
    /// `NET_NAMESERVER`: the VM's DNS server (context `NAMESERVER`).
    pub nameserver: Ipv4Addr,
    /// `OS_ARCH`: the VMs' architecture, sent as `OS/TYPE@arch` for the manager VM (and by
    /// 1.2 managers for their agents); [`OpenNebulaSettings::DEFAULT_OS_ARCH`] when absent.
    pub os_arch: String,
    /// `OS_ROOT`: the root device, e.g. `sda`; only 1.2 managers send it.
    pub os_root: String,
    /// `DISK_TARGET`: the image's disk device; only 1.2 managers send it.
    pub disk_target: String,
    /// `CONTEXT_TARGET`: the context CD-ROM device (context `TARGET`), e.g. `sr0`.
    pub context_target: String,
    /// `XMLRPC`: OpenNebula's XML-RPC URL, used only by the TaskFarm service's manager.
    pub xmlrpc: Option<String>,
    /// `BOOT_TIMEOUT` (ours): how long a new VM may take to get its address.
    pub boot_timeout: Duration,
}

impl OpenNebulaSettings {
    /// `OS_ARCH` when director.cfg has none: OpenNebula's KVM default would be i686.
    pub const DEFAULT_OS_ARCH: &'static str = "x86_64";

    /// The OCCI server at `url` with `user`'s account, starting VMs from the image `image_id`
    /// on the virtual network `network_id`.
    ///
    /// The rest starts as: [`InstanceType::Small`], the VM's gateway, netmask and name server
    /// `0.0.0.0` (set them with [`vm_network`](Self::vm_network) unless the image finds its
    /// own), [`DEFAULT_OS_ARCH`](Self::DEFAULT_OS_ARCH), devices `sda`, `sda` and `sr0`, no
    /// XML-RPC URL, a boot timeout of 300 s.
    pub fn new(
        url: EndpointUrl,
        user: impl Into<String>,
        password: SecretString,
        image_id: u64,
        network_id: u64,
    ) -> Self {
        OpenNebulaSettings {
            url,
            user: user.into(),
            password,
            image_id,
            instance_type: InstanceType::Small,
            network_id,
            gateway: Ipv4Addr::UNSPECIFIED,
            netmask: Ipv4Addr::UNSPECIFIED,
            nameserver: Ipv4Addr::UNSPECIFIED,
            os_arch: Self::DEFAULT_OS_ARCH.to_owned(),
            os_root: "sda".to_owned(),
            disk_target: "sda".to_owned(),
            context_target: "sr0".to_owned(),
            xmlrpc: None,
            boot_timeout: DEFAULT_BOOT_TIMEOUT,
        }
    }

    /// Sets the VM's [`gateway`](Self::gateway), [`netmask`](Self::netmask) and
    /// [`nameserver`](Self::nameserver) (`NET_GATEWAY`, `NET_NETMASK`, `NET_NAMESERVER`).
    pub fn vm_network(
        mut self,
        gateway: Ipv4Addr,
        netmask: Ipv4Addr,
        nameserver: Ipv4Addr,
    ) -> Self {
        self.gateway = gateway;
        self.netmask = netmask;
        self.nameserver = nameserver;
        self
    }

    setters! {
        url: EndpointUrl,
        user: into String,
        password: SecretString,
        image_id: u64,
        instance_type: InstanceType,
        network_id: u64,
        os_arch: into String,
        os_root: into String,
        disk_target: into String,
        context_target: into String,
        xmlrpc: some into String,
        boot_timeout: Duration,
    }
}

/// The instance types 1.2's OpenNebula driver knows (`INST_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InstanceType {
    /// `small`.
    Small,
    /// `medium`.
    Medium,
    /// `large`.
    Large,
    /// `custom` (must be enabled in the OCCI server's configuration).
    Custom,
}

impl InstanceType {
    /// Every instance type, in 1.2's order.
    pub const ALL: [InstanceType; 4] = [
        InstanceType::Small,
        InstanceType::Medium,
        InstanceType::Large,
        InstanceType::Custom,
    ];

    /// The name as written in director.cfg and sent to the OCCI server.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceType::Small => "small",
            InstanceType::Medium => "medium",
            InstanceType::Large => "large",
            InstanceType::Custom => "custom",
        }
    }
}

impl fmt::Display for InstanceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `http` or `https`.
///
/// Frozen: the two schemes the cloud APIs are reached by; another would be another driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UrlScheme {
    /// Plain HTTP, port 80 by default.
    Http,
    /// HTTP over TLS, port 443 by default.
    Https,
}

impl UrlScheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            UrlScheme::Http => "http",
            UrlScheme::Https => "https",
        }
    }

    /// The port used when the URL names none.
    pub fn default_port(self) -> u16 {
        match self {
            UrlScheme::Http => 80,
            UrlScheme::Https => 443,
        }
    }
}

/// Where a cloud API listens: scheme, host and optional port, without a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct EndpointUrl {
    /// `http` or `https`.
    pub scheme: UrlScheme,
    /// A DNS name, an IPv4 address, or an IPv6 address (without brackets).
    pub host: String,
    /// The port, when the URL names one.
    pub port: Option<u16>,
}

impl EndpointUrl {
    /// `scheme://host[:port]`; `host` is a DNS name or an IP address (IPv6 without brackets).
    pub fn new(scheme: UrlScheme, host: impl Into<String>, port: Option<u16>) -> Self {
        EndpointUrl {
            scheme,
            host: host.into(),
            port,
        }
    }

    /// The port to connect to.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(self.scheme.default_port())
    }

    /// `host[:port]` as in a `Host` header: IPv6 in brackets, the port only when the URL names one.
    pub fn authority(&self) -> String {
        authority(&self.host, self.port)
    }
}

impl Ec2Settings {
    /// The account `access_key_id` (with its secret) starting instances of `image_id`
    /// (an AMI) and type `size_id` in `region`, in the security group
    /// `security_group_name`, with the key pair `key_name`; the region's own endpoint and a
    /// boot timeout of 300 s.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: SecretString,
        image_id: impl Into<String>,
        size_id: impl Into<String>,
        security_group_name: impl Into<String>,
        key_name: impl Into<String>,
        region: Ec2Region,
    ) -> Self {
        Ec2Settings {
            access_key_id: access_key_id.into(),
            secret_access_key,
            image_id: image_id.into(),
            size_id: size_id.into(),
            security_group_name: security_group_name.into(),
            key_name: key_name.into(),
            region,
            endpoint: None,
            boot_timeout: DEFAULT_BOOT_TIMEOUT,
        }
    }

    setters! {
        access_key_id: into String,
        secret_access_key: SecretString,
        image_id: into String,
        size_id: into String,
        security_group_name: into String,
        key_name: into String,
        region: Ec2Region,
        endpoint: some EndpointUrl,
        boot_timeout: Duration,
    }

    /// Where the EC2 API is: the `ENDPOINT` override, else `https://<REGION host>`.
    pub fn api_url(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.to_string(),
            None => format!("https://{}", self.region.endpoint_host),
        }
    }
}

/// `host[:port]` of a URL: an IPv6 literal in brackets, the port only when one is named.
pub(crate) fn authority(host: &str, port: Option<u16>) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.authority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_display_and_ports() {
        let url = EndpointUrl {
            scheme: UrlScheme::Http,
            host: "::1".to_owned(),
            port: Some(4567),
        };
        assert_eq!(url.to_string(), "http://[::1]:4567");
        assert_eq!(url.port_or_default(), 4567);
        let url = EndpointUrl {
            scheme: UrlScheme::Https,
            host: "occi.example.org".to_owned(),
            port: None,
        };
        assert_eq!(url.to_string(), "https://occi.example.org");
        assert_eq!(url.port_or_default(), 443);
    }

    #[test]
    fn debug_hides_secrets() {
        let cloud = CloudSettings {
            name: "iaas".to_owned(),
            driver: DriverSettings::Ec2(Ec2Settings {
                access_key_id: "AKIA".to_owned(),
                secret_access_key: SecretString::from("s3cr3t-value"),
                image_id: "ami-1".to_owned(),
                size_id: "t1.micro".to_owned(),
                security_group_name: "sg".to_owned(),
                key_name: "kp".to_owned(),
                region: Ec2Region {
                    name: "us-east-1".to_owned(),
                    endpoint_host: "ec2.us-east-1.amazonaws.com".to_owned(),
                },
                endpoint: None,
                boot_timeout: Duration::from_secs(300),
            }),
            section: vec![("PASSWORD".to_owned(), "s3cr3t-value".to_owned())],
        };
        let debug = format!("{cloud:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("PASSWORD"), "{debug}");
        assert!(cloud.is_default());
        assert_eq!(cloud.driver.name(), "ec2");
    }
}
