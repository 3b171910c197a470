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
    /// `DRIVER = opennebula` with `API = xmlrpc`: OpenNebula 5.x-7.x over XML-RPC.
    OpenNebulaXmlRpc(OpenNebulaXmlRpcSettings),
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
            // The same `scripts/cloud/opennebula`: one-context gives the VM the context
            // variables 1.2's cloud part reads.
            DriverSettings::OpenNebulaXmlRpc(_) => "opennebula",
            DriverSettings::OpenStack(_) => "openstack",
        }
    }
}

/// The keys of an EC2 cloud section (`spec/config.md` §6.1, `spec/clouds.md` §6, and ours for
/// VPCs, IMDSv2 and the AWS credential chain: docs/clouds.md).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Ec2Settings {
    /// `USER` and `PASSWORD` (an access key), or AWS's standard credential chain when both are
    /// absent.
    pub credentials: Ec2Credentials,
    /// `IMAGE_ID`: the AMI id.
    pub image_id: String,
    /// `SIZE_ID`: the instance type (`t1.micro`, `m1.small`...), not checked locally.
    pub size_id: String,
    /// `SECURITY_GROUP_NAME`: a security group name (default VPC or EC2-Classic; 1.2 managers
    /// use it). Used at launch only when [`security_group_ids`](Self::security_group_ids) is
    /// empty.
    pub security_group_name: Option<String>,
    /// `SECURITY_GROUP_IDS` (ours): security group ids (`sg-…`), comma-separated in
    /// director.cfg; what a VPC subnet needs.
    pub security_group_ids: Vec<String>,
    /// `SUBNET_ID` (ours): the VPC subnet managers are placed in; absent, EC2 picks one of the
    /// default VPC.
    pub subnet_id: Option<String>,
    /// `KEY_NAME`: a key pair name in the region.
    pub key_name: String,
    /// `REGION`: the region's endpoint host.
    pub region: Ec2Region,
    /// `ENDPOINT` (ours): a URL that replaces `https://<REGION>` for every API
    /// call, e.g. a local moto server in tests. Requests are still signed for
    /// [`Ec2Region::name`].
    pub endpoint: Option<EndpointUrl>,
    /// `MANAGER_ADDRESS` (ours): which address is the manager's; [`AddressPolicy::Public`]
    /// unless set.
    pub address: AddressPolicy,
    /// `METADATA_TOKENS` (ours): whether the instances the director launches accept only
    /// IMDSv2 (token) metadata requests; [`MetadataTokens::Required`] unless set.
    pub metadata_tokens: MetadataTokens,
    /// `BOOT_TIMEOUT` (ours): how long a new VM may take to get its address.
    pub boot_timeout: Duration,
}

/// `MANAGER_ADDRESS`: which address of an EC2 instance the director records as the manager's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressPolicy {
    /// `public`: only the public IPv4 address (`ipAddress`): users and their clients must
    /// reach the manager, as in 1.2. An instance without one never becomes ready.
    Public,
    /// `public-or-private`: the public address when there is one, else the private one: for
    /// a director (and users) inside the managers' VPC, such as a private subnet's.
    PublicOrPrivate,
}

impl AddressPolicy {
    /// The value as director.cfg spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressPolicy::Public => "public",
            AddressPolicy::PublicOrPrivate => "public-or-private",
        }
    }
}

/// Where the EC2 driver finds its AWS credentials.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Ec2Credentials {
    /// `USER` (the access key id) and `PASSWORD` (the secret access key), as in 1.2.
    Keys {
        /// The access key id.
        access_key_id: String,
        /// The secret access key.
        secret_access_key: SecretString,
    },
    /// `USER` and `PASSWORD` absent: AWS's standard chain, in the order the AWS CLI and SDKs
    /// use: the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`), the shared credentials and config files (`profile`, else
    /// `AWS_PROFILE`, else `default`), then the instance role through IMDSv2.
    Chain {
        /// `PROFILE` (ours): the shared-file profile to use.
        profile: Option<String>,
    },
}

impl Ec2Credentials {
    /// An access key.
    pub fn keys(access_key_id: impl Into<String>, secret_access_key: SecretString) -> Self {
        Ec2Credentials::Keys {
            access_key_id: access_key_id.into(),
            secret_access_key,
        }
    }

    /// The standard chain with the default profile.
    pub fn chain() -> Self {
        Ec2Credentials::Chain { profile: None }
    }
}

/// `METADATA_TOKENS`: EC2's `MetadataOptions.HttpTokens` for the instances the director
/// launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetadataTokens {
    /// `required`: IMDSv2 only, AWS's recommendation. The director's cloud part fetches a
    /// token; 1.2's own `scripts/cloud/ec2` (plain GETs) does not work then and is replaced.
    Required,
    /// `optional`: IMDSv1 and IMDSv2, for images that need IMDSv1.
    Optional,
}

impl MetadataTokens {
    /// The value as director.cfg and EC2 spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            MetadataTokens::Required => "required",
            MetadataTokens::Optional => "optional",
        }
    }
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

/// The keys of an OpenNebula cloud section with `API = xmlrpc`: OpenNebula 5.x-7.x through
/// its XML-RPC API (docs/clouds.md, "OpenNebula (XML-RPC)").
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OpenNebulaXmlRpcSettings {
    /// `XMLRPC`: scheme, host and port of OpenNebula's XML-RPC endpoint.
    pub endpoint: EndpointUrl,
    /// The path of `XMLRPC` (`/RPC2`); `/` when the URL names none.
    pub path: String,
    /// `USER`: the OpenNebula user name.
    pub user: String,
    /// `PASSWORD`: the user's password or a login token; the session is `USER:PASSWORD`.
    pub password: SecretString,
    /// What the VM is made from: `TEMPLATE_ID`, or `IMAGE_ID`, `NET_ID`, `CPU`, `MEMORY`.
    pub vm: OpenNebulaVm,
    /// `NET_GATEWAY`: the VM's default gateway (context `IP_GATEWAY`), when configured.
    pub gateway: Option<Ipv4Addr>,
    /// `NET_NETMASK`: the VM's netmask (context `NETMASK`), when configured.
    pub netmask: Option<Ipv4Addr>,
    /// `NET_NAMESERVER`: the VM's DNS server (context `NAMESERVER`), when configured.
    pub nameserver: Option<Ipv4Addr>,
    /// `BOOT_TIMEOUT` (ours): how long a new VM may take to be running with its address.
    pub boot_timeout: Duration,
}

impl OpenNebulaXmlRpcSettings {
    /// The XML-RPC endpoint at `endpoint` + `path` (such as `/RPC2`) with `user`'s account
    /// (`password`: the password or a login token), making VMs as `vm` says; no gateway,
    /// netmask or name server in the context (the network's own, through one-context), a boot
    /// timeout of 300 s.
    pub fn new(
        endpoint: EndpointUrl,
        path: impl Into<String>,
        user: impl Into<String>,
        password: SecretString,
        vm: OpenNebulaVm,
    ) -> Self {
        OpenNebulaXmlRpcSettings {
            endpoint,
            path: path.into(),
            user: user.into(),
            password,
            vm,
            gateway: None,
            netmask: None,
            nameserver: None,
            boot_timeout: DEFAULT_BOOT_TIMEOUT,
        }
    }

    setters! {
        endpoint: EndpointUrl,
        path: into String,
        user: into String,
        password: SecretString,
        vm: OpenNebulaVm,
        gateway: some Ipv4Addr,
        netmask: some Ipv4Addr,
        nameserver: some Ipv4Addr,
        boot_timeout: Duration,
    }

    /// The whole URL calls are posted to: `scheme://host[:port]/path`.
    pub fn url(&self) -> String {
        let path = if self.path.starts_with('/') {
            self.path.clone()
        } else {
            format!("/{}", self.path)
        };
        format!("{}{path}", self.endpoint)
    }
}

/// How an XML-RPC OpenNebula cloud makes a manager VM.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenNebulaVm {
    /// `TEMPLATE_ID`: `one.template.instantiate` of the operator's VM template (the normal way).
    Template(u64),
    /// `IMAGE_ID`, `NET_ID`, `CPU`, `MEMORY` (and `VCPU`): `one.vm.allocate` of a template the
    /// director writes.
    Allocate(OpenNebulaVmSpec),
}

/// The VM `one.vm.allocate` makes when no `TEMPLATE_ID` is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenNebulaVmSpec {
    /// `IMAGE_ID`: the image of the VM's disk.
    pub image_id: u64,
    /// `NET_ID`: the virtual network of its NIC.
    pub network_id: u64,
    /// `CPU`: the share of physical CPUs, a positive decimal such as `1` or `0.5`.
    pub cpu: String,
    /// `MEMORY`: in MB.
    pub memory_mb: u64,
    /// `VCPU`: the virtual CPUs, when configured (OpenNebula's default is 1).
    pub vcpu: Option<u32>,
}

impl OpenNebulaVmSpec {
    /// A VM of image `image_id` on network `network_id` with `cpu` (a positive decimal) CPUs
    /// and `memory_mb` MB; no `VCPU`.
    pub fn new(image_id: u64, network_id: u64, cpu: impl Into<String>, memory_mb: u64) -> Self {
        OpenNebulaVmSpec {
            image_id,
            network_id,
            cpu: cpu.into(),
            memory_mb,
            vcpu: None,
        }
    }

    setters! {
        image_id: u64,
        network_id: u64,
        cpu: into String,
        memory_mb: u64,
        vcpu: some u32,
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
    /// `security_group_name`, with the key pair `key_name`; the region's own endpoint, no
    /// subnet, IMDSv2 required and a boot timeout of 300 s. Other credentials:
    /// [`credentials`](Self::credentials). Managers are reached at their public address.
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
            credentials: Ec2Credentials::keys(access_key_id, secret_access_key),
            image_id: image_id.into(),
            size_id: size_id.into(),
            security_group_name: Some(security_group_name.into()),
            security_group_ids: Vec::new(),
            subnet_id: None,
            key_name: key_name.into(),
            region,
            endpoint: None,
            address: AddressPolicy::Public,
            metadata_tokens: MetadataTokens::Required,
            boot_timeout: DEFAULT_BOOT_TIMEOUT,
        }
    }

    setters! {
        credentials: Ec2Credentials,
        image_id: into String,
        size_id: into String,
        security_group_name: some into String,
        security_group_ids: Vec<String>,
        subnet_id: some into String,
        key_name: into String,
        region: Ec2Region,
        endpoint: some EndpointUrl,
        address: AddressPolicy,
        metadata_tokens: MetadataTokens,
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
            driver: DriverSettings::Ec2(Ec2Settings::new(
                "AKIA",
                SecretString::from("s3cr3t-value"),
                "ami-1",
                "t1.micro",
                "sg",
                "kp",
                Ec2Region::new("us-east-1"),
            )),
            section: vec![("PASSWORD".to_owned(), "s3cr3t-value".to_owned())],
        };
        let debug = format!("{cloud:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("PASSWORD"), "{debug}");
        assert!(cloud.is_default());
        assert_eq!(cloud.driver.name(), "ec2");
    }
}
