//! Tests of director.cfg validation: one check helper, the exact messages with file and line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::ca::KeyAlgorithm;
use crate::cloud::{DriverSettings, InstanceType};
use crate::cloud::{OpenStackCredential, OpenStackInterface, OpenStackProject};
use crate::store::DatabaseUrl;
use crate::vpn::SubnetArithmetic;

/// A valid file of 7 lines; cases append lines (a repeated header reopens its
/// section and a repeated key replaces the earlier value), so the first
/// appended line is line 8.
const BASE: &str = "\
[conpaas]
CONF_DIR = /etc/cpsdirector
CERT_DIR = /etc/cpsdirector/certs
[iaas]
DRIVER = dummy
[director]
DATABASE_URI = sqlite:////etc/cpsdirector/director.db
";

/// The keys of a valid EC2 section.
const EC2: &str = "\
DRIVER = ec2
USER = AKIAEXAMPLE
PASSWORD = s3cr3t
IMAGE_ID = ami-bb780cd2
SIZE_ID = t1.micro
SECURITY_GROUP_NAME = conpaas
KEY_NAME = conpaas
REGION = ec2.us-east-1.amazonaws.com
";

/// The keys of a valid OpenNebula section.
const OPENNEBULA: &str = "\
DRIVER = opennebula
URL = http://occi.example.org:4567
USER = oneadmin
PASSWORD = s3cr3t
IMAGE_ID = 42
INST_TYPE = small
NET_ID = 1
NET_GATEWAY = 192.168.0.1
NET_NETMASK = 255.255.255.0
NET_NAMESERVER = 8.8.8.8
OS_ARCH = x86_64
OS_ROOT = hda
DISK_TARGET = hda
CONTEXT_TARGET = hdc
";

/// The errors, or the warnings of a file that loads, one per line.
fn render(text: &str) -> String {
    match parse_str(Path::new("director.cfg"), text) {
        Ok(loaded) => loaded
            .warnings
            .iter()
            .map(|warning| format!("warning: {warning}\n"))
            .collect(),
        Err(error) => format!("{error}\n"),
    }
}

fn check(text: &str, expect: &str) {
    let got = render(text);
    assert_eq!(
        got, expect,
        "input:\n{text}\n--- got:\n{got}--- expected:\n{expect}"
    );
}

fn load(text: &str) -> LoadedConfig {
    match parse_str(Path::new("director.cfg"), text) {
        Ok(loaded) => loaded,
        Err(error) => panic!("{error}"),
    }
}

#[test]
fn minimal_file_loads_with_defaults() {
    let loaded = load(BASE);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let config = &loaded.config;
    assert_eq!(config.conf_dir, PathBuf::from("/etc/cpsdirector"));
    assert_eq!(config.ca.cert_dir, PathBuf::from("/etc/cpsdirector/certs"));
    assert_eq!(config.ca.key_algorithm, KeyAlgorithm::Rsa2048);
    assert_eq!(config.vpn, None);
    assert_eq!(config.max_credit, None);
    assert!(matches!(config.default_cloud.driver, DriverSettings::Dummy));
    assert_eq!(config.default_cloud.name, "iaas");
    assert_eq!(
        config.default_cloud.section,
        vec![("DRIVER".to_owned(), "dummy".to_owned())]
    );
    assert!(config.other_clouds.is_empty());
    assert_eq!(
        config.store.url,
        DatabaseUrl::Sqlite(PathBuf::from("/etc/cpsdirector/director.db"))
    );
    assert_eq!(config.store.max_connections, DEFAULT_DB_MAX_CONNECTIONS);
    assert_eq!(config.director_url, None);
    assert!(!config.debug);
    assert!(!config.open_registration);
    assert_eq!(config.connections, ConnectionLimits::recommended());
    assert_eq!(config.connections.max_connections, DEFAULT_MAX_CONNECTIONS);
    assert_eq!(config.connections.max_anonymous_connections, 512);
}

#[test]
fn connection_limits_are_read() {
    let limits = |lines: &str| load(&format!("{BASE}{lines}")).config.connections;
    let read = limits(
        "MAX_CONNECTIONS = 4096\nMAX_ANONYMOUS_CONNECTIONS = 1000\n\
         MAX_CONNECTIONS_PER_ADDRESS = off\nMAX_CONNECTIONS_PER_NETWORK = 64\n\
         REQUEST_BODY_TIMEOUT = 60\nWRITE_TIMEOUT = 5\n",
    );
    assert_eq!(read.max_connections, 4096);
    assert_eq!(read.max_anonymous_connections, 1000);
    assert_eq!(read.max_connections_per_address, None);
    assert_eq!(read.max_connections_per_network, Some(64));
    assert_eq!(read.request_body_timeout, Duration::from_secs(60));
    assert_eq!(read.write_timeout, Duration::from_secs(5));
    // The anonymous share follows MAX_CONNECTIONS when not set.
    let read = limits("MAX_CONNECTIONS = 100\nMAX_CONNECTIONS_PER_NETWORK = OFF\n");
    assert_eq!(read.max_anonymous_connections, 50);
    assert_eq!(read.max_connections_per_network, None);
    assert_eq!(
        read.max_connections_per_address,
        Some(DEFAULT_MAX_CONNECTIONS_PER_ADDRESS)
    );
    assert_eq!(limits("MAX_CONNECTIONS = 1\n").max_anonymous_connections, 1);
}

#[test]
fn our_additions_are_read() {
    let loaded = load(&format!(
        "{BASE}[conpaas]\nVPN_BASE_NETWORK = 172.16.0.0\nVPN_NETMASK = 255.240.0.0\nVPN_SERVICE_BITS = 5\n\
         VPN_LEGACY_SUBNETS = yes\nKEY_ALGORITHM = ECDSA\nMAX_CREDIT = 50\n\
         VPN_BOOTSTRAP_NODES = udp://192.168.35.2:40000\n  tcp://10.0.0.1:40001\n\
         [director]\nDIRECTOR_URL = https://director.example.org:5555\nDEBUG = on\n\
         OPEN_REGISTRATION = true\nDB_MAX_CONNECTIONS = 3\n"
    ));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let config = &loaded.config;
    let vpn = config.vpn.as_ref().unwrap();
    assert_eq!(vpn.base_network.to_string(), "172.16.0.0");
    assert_eq!(vpn.netmask.to_string(), "255.240.0.0");
    assert_eq!(vpn.service_bits, 5);
    assert_eq!(vpn.arithmetic, SubnetArithmetic::Legacy);
    let nodes: Vec<String> = config
        .vpn_bootstrap_nodes
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nodes, ["udp://192.168.35.2:40000", "tcp://10.0.0.1:40001"]);
    assert_eq!(config.ca.key_algorithm, KeyAlgorithm::EcdsaP256);
    assert_eq!(config.max_credit, Some(Credit(50)));
    assert_eq!(
        config.director_url.as_ref().unwrap().to_string(),
        "https://director.example.org:5555"
    );
    assert_eq!(loaded.require_director_url().unwrap().port(), Some(5555));
    assert!(config.debug);
    assert!(config.open_registration);
    assert_eq!(config.store.max_connections, 3);
}

#[test]
fn empty_optional_keys_count_as_absent() {
    let loaded = load(&format!(
        "{BASE}[conpaas]\nVPN_BASE_NETWORK =\nVPN_NETMASK =\nVPN_SERVICE_BITS =\nMAX_CREDIT =\n\
         [iaas]\nOTHER_CLOUDS =\n[director]\nDIRECTOR_URL =\n"
    ));
    assert_eq!(loaded.config.vpn, None);
    assert_eq!(loaded.config.max_credit, None);
    assert_eq!(loaded.config.director_url, None);
}

#[test]
fn conpaas_section_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "[conpaas]\nVPN_BASE_NETWORK = 172.16.0.0\nVPN_NETMASK = 255.240.0.0\nVPN_SERVICE_BITS = five\n",
            "director.cfg:11: [conpaas] VPN_SERVICE_BITS: expected an integer between 0 and 30, got \"five\"",
        ),
        (
            "[conpaas]\nVPN_BASE_NETWORK = 172.16.0.0\nVPN_NETMASK = 255.240.0.0\nVPN_SERVICE_BITS = -1\n",
            "director.cfg:11: [conpaas] VPN_SERVICE_BITS: expected an integer between 0 and 30, got \"-1\"",
        ),
        // One or two of the three VPN keys: 1.2 silently ran without a VPN.
        (
            "[conpaas]\nVPN_BASE_NETWORK = 172.16.0.0\n",
            "director.cfg:1: [conpaas] VPN_NETMASK: expected a dotted IPv4 netmask, such as 255.240.0.0, since VPN_BASE_NETWORK is set (the VPN needs all three VPN_* keys or none), the key is missing\n\
             director.cfg:1: [conpaas] VPN_SERVICE_BITS: expected an integer between 0 and 30, since VPN_BASE_NETWORK is set (the VPN needs all three VPN_* keys or none), the key is missing",
        ),
        (
            "[conpaas]\nVPN_NETMASK = 255.240.0.0\nVPN_SERVICE_BITS = 5\n",
            "director.cfg:1: [conpaas] VPN_BASE_NETWORK: expected a dotted IPv4 address, such as 172.16.0.0, since VPN_NETMASK and VPN_SERVICE_BITS are set (the VPN needs all three VPN_* keys or none), the key is missing",
        ),
        (
            "[conpaas]\nVPN_BASE_NETWORK = 172.16.0\nVPN_NETMASK = 12\nVPN_SERVICE_BITS = 5\n",
            "director.cfg:9: [conpaas] VPN_BASE_NETWORK: expected a dotted IPv4 address, such as 172.16.0.0, got \"172.16.0\"\n\
             director.cfg:10: [conpaas] VPN_NETMASK: expected a dotted IPv4 netmask, such as 255.240.0.0 (not a prefix length), got \"12\"",
        ),
        // The planner's verdicts, on the key each is about.
        (
            "[conpaas]\nVPN_BASE_NETWORK = 172.16.0.0\nVPN_NETMASK = 255.0.255.0\nVPN_SERVICE_BITS = 5\n",
            "director.cfg:10: [conpaas] VPN_NETMASK: netmask 255.0.255.0 is not contiguous: it must be ones then zeros, like 255.240.0.0",
        ),
        (
            "[conpaas]\nVPN_BASE_NETWORK = 172.17.0.0\nVPN_NETMASK = 255.240.0.0\nVPN_SERVICE_BITS = 5\n",
            "director.cfg:9: [conpaas] VPN_BASE_NETWORK: base network 172.17.0.0 has host bits set under netmask 255.240.0.0: use 172.16.0.0",
        ),
        (
            "[conpaas]\nVPN_BASE_NETWORK = 172.16.0.0\nVPN_NETMASK = 255.240.0.0\nVPN_SERVICE_BITS = 20\n",
            "director.cfg:11: [conpaas] VPN_SERVICE_BITS: 20 service bits on a /12 network give /32 subnets, too small for the 4 reserved addresses and an agent: use at most 17 bits (/29 subnets)",
        ),
        // Each bootstrap node is checked on its own line (blank lines between them skipped).
        (
            "[conpaas]\nVPN_BASE_NETWORK = 172.16.0.0\nVPN_NETMASK = 255.240.0.0\nVPN_SERVICE_BITS = 5\n\
             VPN_BOOTSTRAP_NODES =\n  udp://1.2.3.4:40000\n\n  udp://1.2.3.4\n\ttcp://host.example:1\n",
            "director.cfg:15: [conpaas] VPN_BOOTSTRAP_NODES: expected udp://<IPv4>:<port> or tcp://<IPv4>:<port> (port 1-65535), one node per line, got \"udp://1.2.3.4\"\n\
             director.cfg:16: [conpaas] VPN_BOOTSTRAP_NODES: expected udp://<IPv4>:<port> or tcp://<IPv4>:<port> (port 1-65535), one node per line, got \"tcp://host.example:1\"",
        ),
        (
            "[conpaas]\nVPN_BOOTSTRAP_NODES = udp://1.2.3.4:0\n",
            "director.cfg:9: [conpaas] VPN_BOOTSTRAP_NODES: expected udp://<IPv4>:<port> or tcp://<IPv4>:<port> (port 1-65535), one node per line, got \"udp://1.2.3.4:0\"",
        ),
        (
            "[conpaas]\nVPN_LEGACY_SUBNETS = maybe\n",
            "director.cfg:9: [conpaas] VPN_LEGACY_SUBNETS: expected a boolean: true, false, yes, no, on, off, 1 or 0, got \"maybe\"",
        ),
        (
            "[conpaas]\nKEY_ALGORITHM = dsa\n",
            "director.cfg:9: [conpaas] KEY_ALGORITHM: expected a key algorithm: rsa (RSA-2048) or ecdsa (ECDSA P-256), got \"dsa\"",
        ),
        (
            "[conpaas]\nMAX_CREDIT = fifty\n",
            "director.cfg:9: [conpaas] MAX_CREDIT: expected a non-negative integer, got \"fifty\"",
        ),
        (
            "[conpaas]\nMAX_CREDIT = -5\n",
            "director.cfg:9: [conpaas] MAX_CREDIT: expected a non-negative integer, got \"-5\"",
        ),
        (
            "[conpaas]\nCERT_DIR =\n",
            "director.cfg:9: [conpaas] CERT_DIR: expected a directory path, such as /etc/cpsdirector/certs, got \"\"",
        ),
    ];
    for (appended, expect) in cases {
        check(&format!("{BASE}{appended}"), &format!("{expect}\n"));
    }
}

#[test]
fn missing_sections_and_keys() {
    // No section at all: no line number.
    check(
        "",
        "director.cfg: [conpaas] CONF_DIR: expected a directory path, such as /etc/cpsdirector, the key is missing (there is no such section)\n\
         director.cfg: [conpaas] CERT_DIR: expected a directory path, such as /etc/cpsdirector/certs, the key is missing (there is no such section)\n\
         director.cfg: [iaas] DRIVER: expected a driver: ec2, opennebula or dummy, the key is missing (there is no such section)\n\
         director.cfg: [director] DATABASE_URI: expected a database URL in SQLAlchemy form: sqlite:///RELATIVE/PATH, sqlite:////ABSOLUTE/PATH or postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE (also postgres:// and postgresql+psycopg2://), the key is missing (there is no such section)\n",
    );
    // A missing key is reported at its section's header; section names are case-sensitive.
    check(
        "[conpaas]\nCONF_DIR = /etc/cpsdirector\n[Iaas]\nDRIVER = dummy\n[iaas]\n[director]\nDATABASE_URI = sqlite:///d.db\n",
        "director.cfg:1: [conpaas] CERT_DIR: expected a directory path, such as /etc/cpsdirector/certs, the key is missing\n\
         director.cfg:5: [iaas] DRIVER: expected a driver: ec2, opennebula or dummy, the key is missing\n",
    );
}

#[test]
fn the_whole_path_is_named() {
    let error = parse_str(
        Path::new("/etc/cpsdirector/director.cfg"),
        "[conpaas]\nMAX_CREDIT = x\n",
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("/etc/cpsdirector/director.cfg:2: [conpaas] MAX_CREDIT: expected a non-negative integer, got \"x\""),
        "{error}"
    );
    assert_eq!(error.problems().len(), 5);
}

#[test]
fn iaas_section_errors() {
    let cases: &[(&str, &str)] = &[
        // A ConPaaS 1.2 OpenStack section: its EC2-compatible endpoint is gone.
        (
            "[iaas]\nDRIVER = openstack\nUSER = alice\nPASSWORD = pw\nHOST = 10.0.0.1\nIMAGE_ID = ami-1\nSIZE_ID = m1.small\n",
            "director.cfg:12: [iaas] HOST: expected AUTH_URL instead: ConPaaS 1.2 reached OpenStack at HOST through Nova's EC2-compatible API, which OpenStack removed after Liberty; the openstack driver speaks Keystone v3, Nova and Neutron: write AUTH_URL (such as https://keystone.example.org:5000/v3) with USER, PASSWORD and PROJECT_NAME (or APPLICATION_CREDENTIAL_ID and APPLICATION_CREDENTIAL_SECRET), IMAGE_ID, SIZE_ID and NETWORK_ID, got \"10.0.0.1\"",
        ),
        (
            "[iaas]\nDRIVER = azure\n",
            "director.cfg:9: [iaas] DRIVER: expected a driver: ec2, opennebula or dummy, got \"azure\"",
        ),
        (
            "[iaas]\nOTHER_CLOUDS = amsterdam, director,,paris\n[paris]\nDRIVER = dummy\n",
            "director.cfg:9: [iaas] OTHER_CLOUDS: expected each name to have its own [name] section, got \"amsterdam\"\n\
             director.cfg:9: [iaas] OTHER_CLOUDS: expected names of cloud sections other than conpaas, director, manager, iaas, DEFAULT, got \"director\"",
        ),
        // An error in any listed cloud section is reported with its section.
        (
            "[iaas]\nOTHER_CLOUDS = paris\n[paris]\nDRIVER =\n",
            "director.cfg:11: [paris] DRIVER: expected a driver: ec2, opennebula or dummy, got \"\"",
        ),
    ];
    for (appended, expect) in cases {
        check(&format!("{BASE}{appended}"), &format!("{expect}\n"));
    }
}

#[test]
fn openstack_sections() {
    const KEYS: &str = "IMAGE_ID = ubuntu-24.04\nSIZE_ID = m1.small\n";
    let loaded = load(&format!(
        "{BASE}[iaas]\nDRIVER = openstack\nAUTH_URL = https://keystone.example.org:5000/\n\
         USER = alice\nPASSWORD = s3cr3t\nPROJECT_NAME = conpaas\nREGION_NAME = RegionOne\n\
         INTERFACE = Internal\nNETWORK_ID = private\nFLOATING_IP_POOL = public\n{KEYS}"
    ));
    let DriverSettings::OpenStack(openstack) = &loaded.config.default_cloud.driver else {
        panic!("{:?}", loaded.config.default_cloud.driver);
    };
    assert_eq!(openstack.auth_url, "https://keystone.example.org:5000/v3");
    assert_eq!(openstack.interface, OpenStackInterface::Internal);
    assert_eq!(openstack.region_name.as_deref(), Some("RegionOne"));
    assert_eq!(openstack.network.as_deref(), Some("private"));
    assert_eq!(openstack.floating_ip_pool.as_deref(), Some("public"));
    let OpenStackCredential::Password(password) = &openstack.credential else {
        panic!("{:?}", openstack.credential);
    };
    assert_eq!(password.user, "alice");
    assert_eq!(password.user_domain_name, "Default");
    assert_eq!(password.project, OpenStackProject::Name("conpaas".into()));
    assert!(!format!("{loaded:?}").contains("s3cr3t"));

    let loaded = load(&format!(
        "{BASE}[iaas]\nDRIVER = openstack\nAUTH_URL = http://10.0.0.5/identity/v3\n\
         APPLICATION_CREDENTIAL_ID = 4d2c\nAPPLICATION_CREDENTIAL_SECRET = app-s3cret\n{KEYS}"
    ));
    let DriverSettings::OpenStack(openstack) = &loaded.config.default_cloud.driver else {
        panic!();
    };
    assert!(matches!(
        &openstack.credential,
        OpenStackCredential::ApplicationCredential(credential) if credential.id == "4d2c"
    ));
    assert_eq!(openstack.interface, OpenStackInterface::Public);

    check(
        &format!(
            "{BASE}[iaas]\nDRIVER = openstack\nAUTH_URL = https://k/v3\nUSER = alice\n\
             PASSWORD = pw\nAPPLICATION_CREDENTIAL_ID = 4d2c\n\
             APPLICATION_CREDENTIAL_SECRET = app-s3cret\n{KEYS}"
        ),
        "director.cfg:11: [iaas] USER: expected one credential: USER, PASSWORD and PROJECT_NAME/PROJECT_ID, or APPLICATION_CREDENTIAL_ID and APPLICATION_CREDENTIAL_SECRET, not both, got \"alice\"\n",
    );
    check(
        &format!(
            "{BASE}[iaas]\nDRIVER = openstack\nAUTH_URL = keystone:5000\nUSER = alice\n\
             PASSWORD = pw\nPROJECT_NAME = a\nPROJECT_ID = b\nINTERFACE = private\n{KEYS}"
        ),
        "director.cfg:10: [iaas] AUTH_URL: expected Keystone's v3 URL, such as https://keystone.example.org:5000/v3, got \"keystone:5000\"\n\
         director.cfg:14: [iaas] PROJECT_ID: expected PROJECT_NAME or PROJECT_ID, not both, got \"b\"\n\
         director.cfg:15: [iaas] INTERFACE: expected an endpoint interface: public, internal or admin, got \"private\"\n",
    );
    check(
        &format!(
            "{BASE}[iaas]\nDRIVER = openstack\nAUTH_URL = https://k/v3\nUSER = alice\nPASSWORD = pw\n"
        ),
        "director.cfg:4: [iaas] PROJECT_NAME: expected the project the managers run in (or its id as PROJECT_ID), the key is missing\n\
         director.cfg:4: [iaas] IMAGE_ID: expected an image name or id, such as ubuntu-24.04 (Glance), the key is missing\n\
         director.cfg:4: [iaas] SIZE_ID: expected a flavor name or id, such as m1.small, the key is missing\n",
    );
}

#[test]
fn ec2_errors() {
    check(
        &format!("{BASE}[iaas]\nDRIVER = EC2\nPASSWORD = s3cr3t\n"),
        "director.cfg:4: [iaas] USER: expected the AWS access key id of PASSWORD (or neither USER nor PASSWORD, for the AWS credential chain), the key is missing\n\
         director.cfg:4: [iaas] IMAGE_ID: expected an AMI id, such as ami-bb780cd2, the key is missing\n\
         director.cfg:4: [iaas] SIZE_ID: expected an instance type, such as t1.micro, the key is missing\n\
         director.cfg:4: [iaas] SECURITY_GROUP_NAME: expected a security group name (or SECURITY_GROUP_IDS), the key is missing\n\
         director.cfg:4: [iaas] KEY_NAME: expected a key pair name, the key is missing\n\
         director.cfg:4: [iaas] REGION: expected an EC2 endpoint host, such as ec2.us-east-1.amazonaws.com, the key is missing\n",
    );
    let cases: &[(&str, &str)] = &[
        (
            "REGION = us-east-1\n",
            "director.cfg:17: [iaas] REGION: expected an EC2 endpoint host ec2.REGION.amazonaws.com, such as ec2.us-east-1.amazonaws.com, ec2.us-west-2.amazonaws.com, ec2.eu-west-1.amazonaws.com, got \"us-east-1\"",
        ),
        (
            "ENDPOINT = http://127.0.0.1:5000/moto\n",
            "director.cfg:17: [iaas] ENDPOINT: expected an http:// or https:// URL without a path, such as http://127.0.0.1:5000, got \"http://127.0.0.1:5000/moto\"",
        ),
        (
            "BOOT_TIMEOUT = 0\n",
            "director.cfg:17: [iaas] BOOT_TIMEOUT: expected a whole number of seconds between 1 and 86400, got \"0\"",
        ),
        (
            "SUBNET_ID = 10.0.0.0/24\n",
            "director.cfg:17: [iaas] SUBNET_ID: expected a VPC subnet id, such as subnet-0a1b2c3d, got \"10.0.0.0/24\"",
        ),
        (
            "SECURITY_GROUP_IDS = sg-0a1b, conpaas\n",
            "director.cfg:17: [iaas] SECURITY_GROUP_IDS: expected security group ids separated by commas, such as sg-0a1b2c3d,sg-4e5f6a7b, got \"sg-0a1b, conpaas\"",
        ),
        (
            "METADATA_TOKENS = v2\n",
            "director.cfg:17: [iaas] METADATA_TOKENS: expected required (IMDSv2 only) or optional (IMDSv1 too), got \"v2\"",
        ),
        (
            "PROFILE = ops\n",
            "director.cfg:17: [iaas] PROFILE: expected no PROFILE beside USER and PASSWORD (the keys are used; remove one), got \"ops\"",
        ),
        // A password is never echoed, even when its interpolation fails.
        (
            "PASSWORD = abc%(def)s\n",
            "director.cfg:17: [iaas] PASSWORD: expected %(def)s to name a key of this section or of [DEFAULT], got \"<hidden>\"",
        ),
    ];
    for (appended, expect) in cases {
        check(
            &format!("{BASE}[iaas]\n{EC2}{appended}"),
            &format!("{expect}\n"),
        );
    }
}

#[test]
fn ec2_in_a_vpc_with_the_credential_chain() {
    let loaded = load(&format!(
        "{BASE}[iaas]\nDRIVER = ec2\nIMAGE_ID = ami-bb780cd2\nSIZE_ID = t3.micro\n\
         SECURITY_GROUP_IDS = sg-0a1b2c3d, sg-4e5f6a7b\nSUBNET_ID = subnet-0123abcd\n\
         KEY_NAME = conpaas\nREGION = ec2.eu-west-1.amazonaws.com\nMETADATA_TOKENS = optional\n\
         PROFILE = ops\nMANAGER_ADDRESS = public-or-private\n"
    ));
    // BASE's own `[iaas] DRIVER` is repeated; no other warning (no key is unknown to ec2).
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let DriverSettings::Ec2(ec2) = &loaded.config.default_cloud.driver else {
        panic!("not ec2: {:?}", loaded.config.default_cloud);
    };
    assert!(matches!(
        &ec2.credentials,
        crate::cloud::Ec2Credentials::Chain { profile: Some(profile) } if profile == "ops"
    ));
    assert_eq!(ec2.security_group_ids, ["sg-0a1b2c3d", "sg-4e5f6a7b"]);
    assert_eq!(ec2.security_group_name, None);
    assert_eq!(ec2.subnet_id.as_deref(), Some("subnet-0123abcd"));
    assert_eq!(ec2.metadata_tokens, crate::cloud::MetadataTokens::Optional);
    assert_eq!(ec2.address, crate::cloud::AddressPolicy::PublicOrPrivate);
    // Only one of USER and PASSWORD: the other is named.
    check(
        &format!(
            "{BASE}[iaas]\nDRIVER = ec2\nUSER = AKIAEXAMPLE\nIMAGE_ID = ami-1\nSIZE_ID = t\n\
             SECURITY_GROUP_NAME = g\nKEY_NAME = k\nREGION = ec2.us-east-1.amazonaws.com\n"
        ),
        "director.cfg:4: [iaas] PASSWORD: expected the AWS secret access key of USER (or neither USER nor PASSWORD, for the AWS credential chain), the key is missing\n",
    );
}

#[test]
fn ec2_settings_are_typed() {
    let loaded = load(&format!(
        "{BASE}[iaas]\n{EC2}REGION = ec2.ap-southeast-2.amazonaws.com\nENDPOINT = http://127.0.0.1:5000\nBOOT_TIMEOUT = 60\nMAXNODES = 4\n"
    ));
    let DriverSettings::Ec2(ec2) = &loaded.config.default_cloud.driver else {
        panic!("not ec2: {:?}", loaded.config.default_cloud);
    };
    let crate::cloud::Ec2Credentials::Keys {
        access_key_id,
        secret_access_key,
    } = &ec2.credentials
    else {
        panic!("not keys: {:?}", ec2.credentials);
    };
    assert_eq!(access_key_id, "AKIAEXAMPLE");
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(secret_access_key),
        "s3cr3t"
    );
    assert_eq!(ec2.metadata_tokens, crate::cloud::MetadataTokens::Required);
    assert!(ec2.subnet_id.is_none() && ec2.security_group_ids.is_empty());
    assert_eq!(ec2.region.name, "ap-southeast-2");
    assert_eq!(
        ec2.endpoint.as_ref().unwrap().to_string(),
        "http://127.0.0.1:5000"
    );
    assert_eq!(ec2.boot_timeout, Duration::from_secs(60));
    assert_eq!(
        render(&format!(
            "{BASE}[iaas]\n{EC2}REGION = ec2.ap-southeast-2.amazonaws.com\nBOOT_TIMEOUT = 60\nMAXNODES = 4\n"
        )),
        "warning: director.cfg:9: [iaas] DRIVER: repeated key: this value replaces the one on line 5\n\
         warning: director.cfg:17: [iaas] REGION: repeated key: this value replaces the one on line 16\n\
         warning: director.cfg:17: [iaas] REGION: \"ec2.ap-southeast-2.amazonaws.com\" is not one of the three regions ConPaaS 1.2 knew: the director can use it, but 1.2 managers cannot start agents there\n"
    );
}

#[test]
fn opennebula_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "NET_GATEWAY = gateway.example.org\n",
            "director.cfg:23: [iaas] NET_GATEWAY: expected the gateway as a dotted IPv4 address (the VM runs \"ip route add default via\" with it, so a host name does not work), got \"gateway.example.org\"",
        ),
        (
            "INST_TYPE = Small\nIMAGE_ID = ubuntu\nNET_ID = -1\n",
            "director.cfg:23: [iaas] INST_TYPE: expected an instance type: small, medium, large or custom, got \"Small\"\n\
             director.cfg:24: [iaas] IMAGE_ID: expected an image id (a non-negative integer), got \"ubuntu\"\n\
             director.cfg:25: [iaas] NET_ID: expected a network id (a non-negative integer), got \"-1\"",
        ),
        (
            "URL = occi.example.org:4567\nNET_NETMASK = 255.0.255.0\nNET_NAMESERVER = dns\n",
            "director.cfg:23: [iaas] URL: expected the OCCI server's http:// or https:// URL, such as http://occi.example.org:4567, got \"occi.example.org:4567\"\n\
             director.cfg:24: [iaas] NET_NETMASK: expected a dotted IPv4 netmask such as 255.255.255.0, got \"255.0.255.0\"\n\
             director.cfg:25: [iaas] NET_NAMESERVER: expected the DNS server as a dotted IPv4 address, got \"dns\"",
        ),
        (
            "OS_ARCH =\n",
            "director.cfg:23: [iaas] OS_ARCH: expected the VMs' architecture, such as x86_64, got \"\"",
        ),
    ];
    for (appended, expect) in cases {
        check(
            &format!("{BASE}[iaas]\n{OPENNEBULA}{appended}"),
            &format!("{expect}\n"),
        );
    }
}

#[test]
fn os_arch_defaults_to_x86_64_and_reaches_the_managers() {
    let without = OPENNEBULA.replace("OS_ARCH = x86_64\n", "");
    let loaded = load(&format!("{BASE}[iaas]\n{without}"));
    let cloud = &loaded.config.default_cloud;
    let DriverSettings::OpenNebula(one) = &cloud.driver else {
        panic!("not opennebula: {cloud:?}");
    };
    assert_eq!(one.os_arch, "x86_64");
    // The managers' copy of the section carries it, as 1.2 managers require the key.
    assert_eq!(
        cloud.section.last(),
        Some(&("OS_ARCH".to_owned(), "x86_64".to_owned()))
    );
    let loaded = load(&format!("{BASE}[iaas]\n{}OS_ARCH = i686\n", without));
    let DriverSettings::OpenNebula(one) = &loaded.config.default_cloud.driver else {
        panic!("not opennebula");
    };
    assert_eq!(one.os_arch, "i686");
    assert_eq!(
        loaded
            .config
            .default_cloud
            .section
            .iter()
            .filter(|(key, _)| key == "OS_ARCH")
            .count(),
        1
    );
    check(
        &format!("{BASE}[iaas]\n{without}OS_ARCH = x86\"64\n"),
        "director.cfg:22: [iaas] OS_ARCH: expected the VMs' architecture, such as x86_64, got \"x86\\\"64\"\n",
    );
}

#[test]
fn opennebula_settings_are_typed() {
    let loaded = load(&format!(
        "{BASE}[iaas]\n{OPENNEBULA}XMLRPC = http://one:2633/RPC2\n"
    ));
    let DriverSettings::OpenNebula(one) = &loaded.config.default_cloud.driver else {
        panic!("not opennebula: {:?}", loaded.config.default_cloud);
    };
    assert_eq!(one.url.to_string(), "http://occi.example.org:4567");
    assert_eq!(one.image_id, 42);
    assert_eq!(one.instance_type, InstanceType::Small);
    assert_eq!(one.network_id, 1);
    assert_eq!(one.gateway.to_string(), "192.168.0.1");
    assert_eq!(one.context_target, "hdc");
    assert_eq!(one.xmlrpc.as_deref(), Some("http://one:2633/RPC2"));
    assert_eq!(one.boot_timeout, DEFAULT_BOOT_TIMEOUT);
    // A path in URL is ignored, as in 1.2, with a warning.
    assert_eq!(
        render(&format!(
            "{BASE}[iaas]\n{OPENNEBULA}URL = https://occi.example.org/api\n"
        )),
        "warning: director.cfg:9: [iaas] DRIVER: repeated key: this value replaces the one on line 5\n\
         warning: director.cfg:23: [iaas] URL: repeated key: this value replaces the one on line 10\n\
         warning: director.cfg:23: [iaas] URL: the path \"/api\" is ignored: only scheme, host and port are used, as in 1.2\n"
    );
}

#[test]
fn director_section_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "DATABASE_URI = mysql://conpaas:hunter2@db/conpaas\n",
            "director.cfg:9: [director] DATABASE_URI: expected a database URL in SQLAlchemy form: sqlite:///RELATIVE/PATH, sqlite:////ABSOLUTE/PATH or postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE (also postgres:// and postgresql+psycopg2://), got \"mysql://conpaas:***@db/conpaas\"",
        ),
        (
            "DIRECTOR_URL = https://director.example.org:5555/\n",
            "director.cfg:9: [director] DIRECTOR_URL: expected an https://HOST[:PORT] URL without a path or trailing slash, such as https://director.example.org:5555, got \"https://director.example.org:5555/\"",
        ),
        (
            "DIRECTOR_URL = http://director.example.org:5555\n",
            "director.cfg:9: [director] DIRECTOR_URL: expected an https://HOST[:PORT] URL without a path or trailing slash, such as https://director.example.org:5555, got \"http://director.example.org:5555\"",
        ),
        (
            "DEBUG = verbose\n",
            "director.cfg:9: [director] DEBUG: expected a boolean: true, false, yes, no, on, off, 1 or 0, got \"verbose\"",
        ),
        (
            "OPEN_REGISTRATION = sure\n",
            "director.cfg:9: [director] OPEN_REGISTRATION: expected a boolean: true, false, yes, no, on, off, 1 or 0, got \"sure\"",
        ),
        (
            "DB_MAX_CONNECTIONS = 0\n",
            "director.cfg:9: [director] DB_MAX_CONNECTIONS: expected a positive integer, got \"0\"",
        ),
        (
            "METRICS_ALLOW = 127.0.0.1, localhost\n",
            "director.cfg:9: [director] METRICS_ALLOW: expected IP addresses or networks separated by commas (127.0.0.1, ::1, 10.0.0.0/8), or none, got \"127.0.0.1, localhost\"",
        ),
        (
            "MAX_CONNECTIONS = 0\n",
            "director.cfg:9: [director] MAX_CONNECTIONS: expected a whole number between 1 and 1000000, got \"0\"",
        ),
        (
            "MAX_CONNECTIONS = 512\nMAX_ANONYMOUS_CONNECTIONS = 600\n",
            "director.cfg:10: [director] MAX_ANONYMOUS_CONNECTIONS: expected a whole number between 1 and MAX_CONNECTIONS (512); lower it or raise MAX_CONNECTIONS, got \"600\"",
        ),
        (
            "MAX_CONNECTIONS_PER_ADDRESS = none\n",
            "director.cfg:9: [director] MAX_CONNECTIONS_PER_ADDRESS: expected a whole number between 1 and 1000000, or off, got \"none\"",
        ),
        (
            "MAX_CONNECTIONS_PER_NETWORK = -1\n",
            "director.cfg:9: [director] MAX_CONNECTIONS_PER_NETWORK: expected a whole number between 1 and 1000000, or off, got \"-1\"",
        ),
        (
            "REQUEST_BODY_TIMEOUT = 0\n",
            "director.cfg:9: [director] REQUEST_BODY_TIMEOUT: expected a whole number of seconds between 1 and 3600, got \"0\"",
        ),
        (
            "WRITE_TIMEOUT = 10s\n",
            "director.cfg:9: [director] WRITE_TIMEOUT: expected a whole number of seconds between 1 and 3600, got \"10s\"",
        ),
        (
            "REAPER = maybe\n",
            "director.cfg:9: [director] REAPER: expected on, report or off, got \"maybe\"",
        ),
        (
            "METRICS_ALLOW = 10.0.0.0/33\n",
            "director.cfg:9: [director] METRICS_ALLOW: expected IP addresses or networks separated by commas (127.0.0.1, ::1, 10.0.0.0/8), or none, got \"10.0.0.0/33\"",
        ),
        (
            "AUDIT_QUEUE = 0\n",
            "director.cfg:9: [director] AUDIT_QUEUE: expected a whole number between 1 and 10000000, got \"0\"",
        ),
    ];
    for (appended, expect) in cases {
        check(
            &format!("{BASE}[director]\n{appended}"),
            &format!("{expect}\n"),
        );
    }
}

#[test]
fn problems_come_in_file_order() {
    check(
        "[director]\nDEBUG = x\n[conpaas]\nCONF_DIR = /a\nCERT_DIR = /b\nMAX_CREDIT = y\n[iaas]\nDRIVER = z\n",
        "director.cfg:1: [director] DATABASE_URI: expected a database URL in SQLAlchemy form: sqlite:///RELATIVE/PATH, sqlite:////ABSOLUTE/PATH or postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE (also postgres:// and postgresql+psycopg2://), the key is missing\n\
         director.cfg:2: [director] DEBUG: expected a boolean: true, false, yes, no, on, off, 1 or 0, got \"x\"\n\
         director.cfg:6: [conpaas] MAX_CREDIT: expected a non-negative integer, got \"y\"\n\
         director.cfg:8: [iaas] DRIVER: expected a driver: ec2, opennebula or dummy, got \"z\"\n",
    );
}

#[test]
fn syntax_errors_stop_before_validation() {
    check(
        &format!("{BASE}this is not an option\n"),
        "director.cfg:8: [director]: expected a [section] header, a KEY = value option, a comment or an indented continuation, got \"this is not an option\"\n",
    );
    let error = parse_bytes(
        Path::new("director.cfg"),
        b"[conpaas]\nCONF_DIR = /caf\xe9\n",
    )
    .unwrap_err();
    assert_eq!(error.to_string(), "director.cfg:2: expected UTF-8 text");
}

#[test]
fn warnings() {
    let cases: &[(&str, &str)] = &[
        // 1.2 turned debug mode on whenever DEBUG existed.
        (
            "[director]\nDEBUG = false\n",
            "warning: director.cfg:9: [director] DEBUG: debug mode is off for \"false\"; ConPaaS 1.2 turned it on whatever the value",
        ),
        (
            "[director]\nDEBUG =\n",
            "warning: director.cfg:9: [director] DEBUG: debug mode is off for \"\"; ConPaaS 1.2 turned it on whatever the value",
        ),
        (
            "[conpaas]\nVPN_LEGACY_SUBNETS = true\n",
            "warning: director.cfg:9: [conpaas] VPN_LEGACY_SUBNETS: has no effect without VPN_BASE_NETWORK, VPN_NETMASK and VPN_SERVICE_BITS",
        ),
        (
            "[conpaas]\nVPN_BOOTSTRAP_NODES = udp://1.2.3.4:40000\n[director]\nUSERDATA_DIR = /x\n",
            "warning: director.cfg:9: [conpaas] VPN_BOOTSTRAP_NODES: has no effect without VPN_BASE_NETWORK, VPN_NETMASK and VPN_SERVICE_BITS\n\
             warning: director.cfg:11: [director] USERDATA_DIR: unknown key, ignored",
        ),
        (
            "[manager]\nTYPE = php\n[spare]\nDRIVER = dummy\n",
            "warning: director.cfg:8: [manager]: unknown section, ignored\n\
             warning: director.cfg:10: [spare]: this cloud section is not listed in [iaas] OTHER_CLOUDS, ignored",
        ),
        // Keys a driver does not read are still copied to the managers; task-farm keys silently.
        (
            "[iaas]\nURL = http://x\nMAXNODES = 4\nCOST_PER_TIME = $ 1.00/600\n",
            "warning: director.cfg:9: [iaas] URL: not used by the dummy driver, only copied to the managers\n\
             warning: director.cfg:11: [iaas] COST_PER_TIME: not used by the dummy driver, only copied to the managers",
        ),
        (
            "[iaas]\nOTHER_CLOUDS = paris , paris\n[paris]\nDRIVER = dummy\n",
            "warning: director.cfg:9: [iaas] OTHER_CLOUDS: cloud \"paris\" had spaces around it, which made ConPaaS 1.2 ignore it; it is now a cloud\n\
             warning: director.cfg:9: [iaas] OTHER_CLOUDS: cloud \"paris\" is listed twice; it is used once",
        ),
        (
            "[conpaas]\nCONF_DIR = conpaas\n[director]\nDATABASE_URI = sqlite:///director-test.db\n",
            "warning: director.cfg:9: [conpaas] CONF_DIR: repeated key: this value replaces the one on line 2\n\
             warning: director.cfg:9: [conpaas] CONF_DIR: relative path \"conpaas\" is resolved against the working directory\n\
             warning: director.cfg:11: [director] DATABASE_URI: repeated key: this value replaces the one on line 7\n\
             warning: director.cfg:11: [director] DATABASE_URI: relative path \"director-test.db\" is resolved against the working directory",
        ),
    ];
    for (appended, expect) in cases {
        check(&format!("{BASE}{appended}"), &format!("{expect}\n"));
    }
}

#[test]
fn cloud_sections_are_copied_for_the_managers() {
    let loaded = load(&format!(
        "[DEFAULT]\nPORT = 8999\nDRIVER = dummy\n{BASE}[iaas]\nOTHER_CLOUDS = ec2 ,  one\nCLOUDNAME = %(__name__)s\n\
         [ec2]\n{EC2}[one]\n{OPENNEBULA}PORT = 9000\n"
    ));
    let config = &loaded.config;
    let names: Vec<&str> = config.clouds().map(|cloud| cloud.name.as_str()).collect();
    assert_eq!(names, ["iaas", "ec2", "one"]);
    assert_eq!(
        config.default_cloud.section,
        [
            ("PORT", "8999"),
            ("DRIVER", "dummy"),
            ("OTHER_CLOUDS", "ec2,one"),
            ("CLOUDNAME", "iaas")
        ]
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
    );
    let ec2 = &config.other_clouds[0];
    assert_eq!(ec2.section[0], ("PORT".to_owned(), "8999".to_owned()));
    assert_eq!(ec2.section[1], ("DRIVER".to_owned(), "ec2".to_owned()));
    assert_eq!(ec2.section[3], ("PASSWORD".to_owned(), "s3cr3t".to_owned()));
    assert_eq!(ec2.section.len(), 9);
    // The section's own value replaces the default one in its place.
    assert_eq!(
        config.other_clouds[1].section[0],
        ("PORT".to_owned(), "9000".to_owned())
    );
    assert!(matches!(
        config.other_clouds[1].driver,
        DriverSettings::OpenNebula(_)
    ));
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let loaded = load(&format!(
        "{BASE}[iaas]\n{EC2}[director]\nDATABASE_URI = postgresql://conpaas:pgs3cr3t@db/conpaas\n"
    ));
    let debug = format!("{loaded:?}");
    assert!(!debug.contains("s3cr3t"), "{debug}");
    assert!(debug.contains("AKIAEXAMPLE"), "{debug}");
}

#[test]
fn director_url_is_required_for_serving() {
    let loaded = load(BASE);
    assert_eq!(
        loaded.require_director_url().unwrap_err().to_string(),
        "director.cfg:6: [director] DIRECTOR_URL: expected an https://HOST[:PORT] URL without a path or trailing slash, such as https://director.example.org:5555 (the VMs call the director back at it), the key is missing"
    );
}

#[test]
fn known_keys_match_the_checks() {
    let lists: &[(&str, &[&str])] = &[
        ("conpaas", build::CONPAAS_KEYS),
        ("director", build::DIRECTOR_KEYS),
        ("iaas", build::IAAS_KEYS),
        ("<cloud>", build::CLOUD_COMMON_KEYS),
        ("<cloud>", build::EC2_KEYS),
        ("<cloud>", build::OPENNEBULA_KEYS),
        ("<cloud>", build::OPENNEBULA_XMLRPC_KEYS),
        ("<cloud>", build::OPENSTACK_KEYS),
        ("<cloud>", build::PASS_THROUGH_KEYS),
    ];
    let mut from_lists: Vec<(&str, &str)> = lists
        .iter()
        .flat_map(|(section, keys)| keys.iter().map(move |key| (*section, *key)))
        .collect();
    from_lists.sort_unstable();
    from_lists.dedup();
    let mut known = KNOWN_KEYS.to_vec();
    known.sort_unstable();
    assert_eq!(known, from_lists);
}

#[test]
fn generated_default_parses_back() {
    let dir = Path::new("/var/lib/conpaas data");
    let text = default_config_text(dir).unwrap();
    let loaded = load(&text);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config.conf_dir, dir);
    assert_eq!(loaded.config.ca.cert_dir, dir.join("certs"));
    assert_eq!(
        loaded.config.store.url,
        DatabaseUrl::Sqlite(dir.join("director.db"))
    );
    assert_eq!(
        loaded.config.director_url.unwrap().to_string(),
        DEFAULT_DIRECTOR_URL
    );
    for (bad, reason) in [
        ("relative", "the path is not absolute"),
        (
            "/a %(b)s",
            "the path contains %(, which director.cfg would expand",
        ),
        (
            "/a ;b",
            "the path contains a ; after a space, which director.cfg reads as a comment",
        ),
        ("/a\nb", "the path contains a line break"),
        ("/a ", "the path starts or ends with whitespace"),
    ] {
        let error = default_config_text(Path::new(bad)).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("{bad}: cannot use this data directory: {reason}")
        );
    }
}

#[test]
fn metrics_allow_takes_addresses_networks_or_none() {
    let networks = |text: &str| -> Vec<String> {
        load(&format!("{BASE}[director]\nMETRICS_ALLOW = {text}\n"))
            .config
            .metrics_allow
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(
        networks("127.0.0.1, ::1 10.1.0.0/16"),
        ["127.0.0.1/32", "::1/128", "10.1.0.0/16"]
    );
    assert!(networks("none").is_empty());
    assert!(networks("NONE").is_empty());
    // Absent or empty: loopback.
    let default: Vec<String> = load(BASE)
        .config
        .metrics_allow
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(default, ["127.0.0.0/8", "::1/128"]);
    assert_eq!(networks(""), default);
}

#[test]
fn changed_keys_name_what_differs_never_the_values() {
    let before = load(&format!("{BASE}[iaas]\nOTHER_CLOUDS =\n"));
    let same = load(&format!("{BASE}[iaas]\nOTHER_CLOUDS =\n"));
    assert!(before.changed_keys(&same).is_empty());
    let after = load(&format!(
        "{BASE}[director]\nDATABASE_URI = sqlite:////srv/other.db\nMAX_CREDIT_X = 1\n"
    ));
    assert_eq!(
        before.changed_keys(&after),
        [
            "[director] DATABASE_URI",
            "[director] MAX_CREDIT_X",
            "[iaas] OTHER_CLOUDS"
        ]
    );
}

/// The keys of a valid XML-RPC OpenNebula section (template form).
const ONE_XMLRPC: &str = "\
DRIVER = opennebula
API = xmlrpc
XMLRPC = https://one.example.org:2633/RPC2
USER = conpaas
PASSWORD = s3cr3t
";

#[test]
fn opennebula_xmlrpc_sections_take_a_template_or_a_vm_description() {
    use crate::cloud::{OpenNebulaVm, OpenNebulaVmSpec};
    let loaded = load(&format!("{BASE}[iaas]\n{ONE_XMLRPC}TEMPLATE_ID = 7\n"));
    // Only BASE's own DRIVER repeated; no key of the section is unused.
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let cloud = &loaded.config.default_cloud;
    let DriverSettings::OpenNebulaXmlRpc(one) = &cloud.driver else {
        panic!("not opennebula over XML-RPC: {cloud:?}");
    };
    assert_eq!(cloud.driver.name(), "opennebula");
    assert_eq!(one.url(), "https://one.example.org:2633/RPC2");
    assert_eq!(one.user, "conpaas");
    assert_eq!(one.vm, OpenNebulaVm::Template(7));
    assert_eq!(
        (one.gateway, one.netmask, one.nameserver),
        (None, None, None)
    );
    assert!(!format!("{cloud:?}").contains("s3cr3t"));

    let loaded = load(&format!(
        "{BASE}[iaas]\n{ONE_XMLRPC}IMAGE_ID = 42\nNET_ID = 1\nCPU = 0.5\nMEMORY = 1024\n\
         VCPU = 2\nNET_NETMASK = 255.255.255.0\nBOOT_TIMEOUT = 600\n"
    ));
    let DriverSettings::OpenNebulaXmlRpc(one) = &loaded.config.default_cloud.driver else {
        panic!("not opennebula over XML-RPC");
    };
    assert_eq!(
        one.vm,
        OpenNebulaVm::Allocate(OpenNebulaVmSpec::new(42, 1, "0.5", 1024).vcpu(2))
    );
    assert_eq!(
        one.netmask.map(|mask| mask.to_string()).as_deref(),
        Some("255.255.255.0")
    );
    assert_eq!(one.boot_timeout, Duration::from_secs(600));

    // API absent or occi: the 1.2 OCCI driver, unchanged.
    let occi = load(&format!("{BASE}[iaas]\n{OPENNEBULA}API = occi\n"));
    assert!(matches!(
        occi.config.default_cloud.driver,
        DriverSettings::OpenNebula(_)
    ));
}

#[test]
fn opennebula_xmlrpc_problems_name_their_key() {
    let cases = [
        (
            "",
            "director.cfg:4: [iaas] IMAGE_ID: expected an image id (or TEMPLATE_ID, a VM template id), the key is missing\n\
             director.cfg:4: [iaas] NET_ID: expected a virtual network id (or TEMPLATE_ID), the key is missing\n\
             director.cfg:4: [iaas] CPU: expected the share of physical CPUs, such as 1 (or TEMPLATE_ID), the key is missing\n\
             director.cfg:4: [iaas] MEMORY: expected the memory in MB, such as 1024 (or TEMPLATE_ID), the key is missing",
        ),
        (
            "TEMPLATE_ID = 7\nIMAGE_ID = 42\n",
            "director.cfg:15: [iaas] IMAGE_ID: expected no value with TEMPLATE_ID: the VM is the template's (remove this key, or TEMPLATE_ID to have the director write the VM's template), got \"42\"",
        ),
        (
            "TEMPLATE_ID = seven\n",
            "director.cfg:14: [iaas] TEMPLATE_ID: expected a VM template id (a non-negative integer), got \"seven\"",
        ),
        (
            "TEMPLATE_ID = 7\nAPI = soap\n",
            "director.cfg:15: [iaas] API: expected the OpenNebula API: occi (OpenNebula up to 4.6) or xmlrpc (5.x-7.x), got \"soap\"",
        ),
    ];
    for (appended, expect) in cases {
        let text = format!("{BASE}[iaas]\n{ONE_XMLRPC}{appended}");
        let got = render(&text);
        assert!(
            got.starts_with(expect),
            "input:\n{text}\n--- got:\n{got}--- expected:\n{expect}"
        );
    }
    let text = format!(
        "{BASE}[iaas]\n{}TEMPLATE_ID = 7\n",
        ONE_XMLRPC.replace("https://one.example.org:2633/RPC2", "one.example.org:2633")
    );
    let got = render(&text);
    assert!(
        got.contains("[iaas] XMLRPC: expected OpenNebula's XML-RPC URL"),
        "{got}"
    );
    // 1.2's OCCI keys in an XML-RPC section are not read: a warning says so.
    let loaded = load(&format!(
        "{BASE}[iaas]\n{ONE_XMLRPC}TEMPLATE_ID = 7\nINST_TYPE = small\n"
    ));
    let warnings: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("INST_TYPE") && w.contains("API = xmlrpc")),
        "{warnings:?}"
    );
}
