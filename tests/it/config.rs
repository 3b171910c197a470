//! Loading real director.cfg files from a temporary directory: the 1.2 example files, the
//! embedded default data directory, the source resolution order, and `set_director_url`.

// Helpers below are test code too: a panic there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use conpaas_core::cloud::{DriverSettings, InstanceType};
use conpaas_core::config::{
    self, ConfigSource, DataDirOrigin, Error, FileOrigin, KNOWN_KEYS, LoadedConfig, WarningKind,
};
use conpaas_core::store::DatabaseUrl;

/// 1.2.0's `director.cfg.example`, as `spec/config.md` describes it: the
/// `[conpaas]` paths, the VPN keys and every cloud key commented out, the
/// `[director]` database and debug flag, `DIRECTOR_URL` commented out (for
/// `cpsconf.py` to write).
const EXAMPLE_1_2: &str = "\
[conpaas]
# Path to ConPaaS conf dir
CONF_DIR = /etc/cpsdirector
# Path to certificates
CERT_DIR = /etc/cpsdirector/certs

# Per-application virtual private networks: 2^5 services of 2^(32-12-5)-1 agents.
# VPN_BASE_NETWORK = 172.16.0.0
# VPN_NETMASK = 255.240.0.0
# VPN_SERVICE_BITS = 5

[iaas]
# OTHER_CLOUDS = cloud1,cloud2

# Amazon EC2
# DRIVER = ec2
# USER =
# PASSWORD =
# SECURITY_GROUP_NAME =
# KEY_NAME =
# REGION = ec2.us-west-2.amazonaws.com
# IMAGE_ID = ami-0933a239
# SIZE_ID = t1.micro

# Task farming service
# PORT = 8999
# CLOUDNAME =
# TIMEUNIT = 60
# COSTUNIT = 1
# SAMPLING_WORKERS = 1
# MAXNODES = 20
# SPEEDFACTOR = 1

# OpenNebula
# DRIVER = opennebula
# IMAGE_ID =
# INST_TYPE = small
# USER =
# PASSWORD =
# URL =
# NET_ID =
# NET_GATEWAY =
# NET_NETMASK =
# NET_NAMESERVER =
# OS_ARCH =
# OS_ROOT = sda
# DISK_TARGET = sda
# CONTEXT_TARGET = sr0
# XMLRPC =

[director]
DEBUG = true
DATABASE_URI = sqlite:////etc/cpsdirector/director.db
# The director's public URL, as the VMs reach it.
#DIRECTOR_URL = https://director.example.org:5555
";

/// 1.2.0's `director.cfg.multicloud-example`, as `spec/config.md` §8 describes
/// it: an OpenNebula default cloud, `OTHER_CLOUDS = ec2virginia, amsterdam`
/// (with the space that made 1.2 drop `amsterdam`), host names as gateways.
const MULTICLOUD_1_2: &str = "\
[conpaas]
CONF_DIR = /etc/cpsdirector
CERT_DIR = /etc/cpsdirector/certs


[iaas]
# The default cloud
DRIVER = opennebula
IMAGE_ID = 42
INST_TYPE = small
USER = oneadmin
PASSWORD = password
URL = http://occi-server.example.org:4567
NET_ID = 1
NET_GATEWAY = gateway.example.org
NET_NAMESERVER = 8.8.8.8
NET_NETMASK = 255.255.255.0
OS_ARCH = x86_64
OS_ROOT = hda
DISK_TARGET = hda
CONTEXT_TARGET = hdc

# The additional clouds
OTHER_CLOUDS = ec2virginia, amsterdam

[ec2virginia]
DRIVER = ec2
USER = EC2USERNAME
PASSWORD = EC2PASSWORD
SECURITY_GROUP_NAME = my_securitygroup
KEY_NAME = my_keyname
REGION = ec2.us-east-1.amazonaws.com
IMAGE_ID = ami-bb780cd2
SIZE_ID = t1.micro

[amsterdam]
DRIVER = opennebula
IMAGE_ID = 2
INST_TYPE = small
USER = oneadmin
PASSWORD = password
URL = http://occi-server-amsterdam.example.org:4567
NET_ID = 1
NET_GATEWAY = gateway-amsterdam.example.org
NET_NAMESERVER = 8.8.8.8
NET_NETMASK = 255.255.255.0
OS_ARCH = x86_64
OS_ROOT = hda
DISK_TARGET = hda
CONTEXT_TARGET = hdc


[director]
DEBUG = true
DATABASE_URI = sqlite:////etc/cpsdirector/director.db
DIRECTOR_URL = https://director.example.org:5555
";

/// Writes `text` as `name` in `dir` and loads it as `--config`.
fn load_file(dir: &Path, name: &str, text: &str) -> Result<LoadedConfig, Error> {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    config::load(&ConfigSource::File {
        path,
        origin: FileOrigin::CommandLine,
    })
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn example_1_2_needs_a_driver() {
    let dir = tempfile::tempdir().unwrap();
    let error = load_file(dir.path(), "director.cfg", EXAMPLE_1_2).unwrap_err();
    let path = dir.path().join("director.cfg");
    assert_eq!(
        error.to_string(),
        format!(
            "{}:12: [iaas] DRIVER: expected a driver: ec2, opennebula or dummy, the key is missing",
            path.display()
        )
    );

    // What DIRECTOR_TESTING did in 1.2: the dummy driver.
    let testing = EXAMPLE_1_2.replace("# DRIVER = ec2", "DRIVER = dummy");
    let loaded = load_file(dir.path(), "director.cfg", &testing).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert!(!loaded.generated);
    let config = &loaded.config;
    assert_eq!(config.conf_dir, Path::new("/etc/cpsdirector"));
    assert_eq!(config.ca.cert_dir, Path::new("/etc/cpsdirector/certs"));
    assert_eq!(config.vpn, None);
    assert!(config.debug);
    assert_eq!(config.director_url, None);
    assert!(loaded.require_director_url().is_err());
    assert_eq!(
        config.store.url,
        DatabaseUrl::Sqlite(PathBuf::from("/etc/cpsdirector/director.db"))
    );
    assert_eq!(config.clouds().count(), 1);
}

#[test]
fn multicloud_example_checks_all_three_clouds() {
    let dir = tempfile::tempdir().unwrap();
    // 1.2 ignored `amsterdam`; now it is a cloud, and both gateways, host names
    // that the VMs cannot route through, are reported at once.
    let error = load_file(dir.path(), "multi.cfg", MULTICLOUD_1_2).unwrap_err();
    let path = dir.path().join("multi.cfg");
    let expected_gateway = "expected the gateway as a dotted IPv4 address (the VM runs \"ip route add default via\" with it, so a host name does not work)";
    assert_eq!(
        error.to_string(),
        format!(
            "{path}:15: [iaas] NET_GATEWAY: {expected_gateway}, got \"gateway.example.org\"\n\
             {path}:44: [amsterdam] NET_GATEWAY: {expected_gateway}, got \"gateway-amsterdam.example.org\"",
            path = path.display()
        )
    );

    let fixed = MULTICLOUD_1_2
        .replace(
            "NET_GATEWAY = gateway.example.org",
            "NET_GATEWAY = 192.168.0.1",
        )
        .replace(
            "NET_GATEWAY = gateway-amsterdam.example.org",
            "NET_GATEWAY = 10.0.0.1",
        );
    let loaded = load_file(dir.path(), "multi.cfg", &fixed).unwrap();
    let kinds: Vec<&WarningKind> = loaded
        .warnings
        .iter()
        .map(|warning| &warning.kind)
        .collect();
    assert_eq!(
        kinds,
        [&WarningKind::TrimmedCloudName {
            name: "amsterdam".to_owned()
        }]
    );
    assert_eq!(
        loaded.warnings[0].to_string(),
        format!(
            "{}:24: [iaas] OTHER_CLOUDS: cloud \"amsterdam\" had spaces around it, which made ConPaaS 1.2 ignore it; it is now a cloud",
            path.display()
        )
    );

    let config = &loaded.config;
    let clouds: Vec<(&str, &str)> = config
        .clouds()
        .map(|cloud| (cloud.name.as_str(), cloud.driver.name()))
        .collect();
    assert_eq!(
        clouds,
        [
            ("iaas", "opennebula"),
            ("ec2virginia", "ec2"),
            ("amsterdam", "opennebula")
        ]
    );
    let DriverSettings::OpenNebula(amsterdam) = &config.other_clouds[1].driver else {
        panic!("{:?}", config.other_clouds[1]);
    };
    assert_eq!(
        amsterdam.url.to_string(),
        "http://occi-server-amsterdam.example.org:4567"
    );
    assert_eq!(amsterdam.image_id, 2);
    assert_eq!(amsterdam.instance_type, InstanceType::Small);
    let DriverSettings::Ec2(virginia) = &config.other_clouds[0].driver else {
        panic!("{:?}", config.other_clouds[0]);
    };
    assert_eq!(virginia.region.name, "us-east-1");
    assert!(virginia.endpoint.is_none());

    // The sections the managers get: upper-cased keys in file order, the
    // OTHER_CLOUDS list trimmed so that 1.2 managers see all three clouds too.
    let iaas_keys: Vec<&str> = config
        .default_cloud
        .section
        .iter()
        .map(|(key, _)| key.as_str())
        .collect();
    assert_eq!(
        iaas_keys,
        [
            "DRIVER",
            "IMAGE_ID",
            "INST_TYPE",
            "USER",
            "PASSWORD",
            "URL",
            "NET_ID",
            "NET_GATEWAY",
            "NET_NAMESERVER",
            "NET_NETMASK",
            "OS_ARCH",
            "OS_ROOT",
            "DISK_TARGET",
            "CONTEXT_TARGET",
            "OTHER_CLOUDS"
        ]
    );
    assert_eq!(
        config.default_cloud.section.last().unwrap().1,
        "ec2virginia,amsterdam"
    );
    assert!(
        config.other_clouds[0]
            .section
            .contains(&("PASSWORD".to_owned(), "EC2PASSWORD".to_owned()))
    );
    assert_eq!(
        loaded.require_director_url().unwrap().to_string(),
        "https://director.example.org:5555"
    );
}

#[test]
fn embedded_default_data_dir_is_created_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested").join("conpaas-data");
    let source = ConfigSource::DataDir {
        dir: data.clone(),
        origin: DataDirOrigin::CommandLine,
    };
    assert_eq!(source.config_path(), data.join("director.cfg"));
    let loaded = config::load(&source).unwrap();
    assert!(loaded.generated);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.path, data.join("director.cfg"));
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&loaded.path), 0o600);

    let config = &loaded.config;
    assert_eq!(config.conf_dir, data);
    assert_eq!(config.ca.cert_dir, data.join("certs"));
    assert_eq!(
        config.store.url,
        DatabaseUrl::Sqlite(data.join("director.db"))
    );
    assert_eq!(config.default_cloud.driver.name(), "dummy");
    assert_eq!(
        loaded.require_director_url().unwrap().to_string(),
        "https://localhost:5555"
    );
    let text = fs::read_to_string(&loaded.path).unwrap();
    assert!(
        text.contains(&format!(
            "DATABASE_URI = sqlite:///{}/director.db",
            data.display()
        )),
        "{text}"
    );
    assert!(text.lines().any(|line| line.starts_with("# ")), "{text}");

    // The second start reads the file as the operator left it.
    fs::write(
        &loaded.path,
        text.replace("DRIVER = dummy", "DRIVER = dummy\nMAXNODES = 3"),
    )
    .unwrap();
    let again = config::load(&source).unwrap();
    assert!(!again.generated);
    assert_eq!(
        again.config.default_cloud.section.last().unwrap(),
        &("MAXNODES".to_owned(), "3".to_owned())
    );
}

#[test]
fn an_explicit_file_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.cfg");
    for origin in [FileOrigin::CommandLine, FileOrigin::Environment] {
        let error = config::load(&ConfigSource::File {
            path: path.clone(),
            origin,
        })
        .unwrap_err();
        assert!(matches!(error, Error::FileNotFound { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!("{}: no such configuration file", path.display())
        );
    }
}

#[test]
fn sources_resolve_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let system = dir.path().join("etc-director.cfg");
    let cli_config = || Some(PathBuf::from("/cli/director.cfg"));
    let cli_data = || Some(PathBuf::from("/cli/data"));
    let env = || Some(OsString::from("/env/director.cfg"));
    let file = |path: &str, origin| ConfigSource::File {
        path: PathBuf::from(path),
        origin,
    };

    // Without the system file.
    assert_eq!(
        ConfigSource::resolve_with(cli_config(), cli_data(), env(), &system),
        file("/cli/director.cfg", FileOrigin::CommandLine)
    );
    assert_eq!(
        ConfigSource::resolve_with(None, cli_data(), env(), &system),
        ConfigSource::DataDir {
            dir: PathBuf::from("/cli/data"),
            origin: DataDirOrigin::CommandLine
        }
    );
    assert_eq!(
        ConfigSource::resolve_with(None, None, env(), &system),
        file("/env/director.cfg", FileOrigin::Environment)
    );
    let embedded = ConfigSource::resolve_with(None, None, Some(OsString::new()), &system);
    assert_eq!(
        embedded,
        ConfigSource::DataDir {
            dir: PathBuf::from("./conpaas-data"),
            origin: DataDirOrigin::Embedded
        }
    );
    assert_eq!(
        embedded.to_string(),
        "the default data directory ./conpaas-data"
    );

    // With it: it comes after the environment, before the embedded default.
    fs::write(&system, "").unwrap();
    assert_eq!(
        ConfigSource::resolve_with(None, None, env(), &system),
        file("/env/director.cfg", FileOrigin::Environment)
    );
    let found = ConfigSource::resolve_with(None, None, None, &system);
    assert_eq!(
        found,
        ConfigSource::File {
            path: system.clone(),
            origin: FileOrigin::System
        }
    );
    assert_eq!(found.to_string(), system.display().to_string());
    assert_eq!(
        file("/env/director.cfg", FileOrigin::Environment).to_string(),
        "DIRECTOR_CFG=/env/director.cfg"
    );
}

#[test]
fn set_director_url_rewrites_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("director.cfg");
    let testing = EXAMPLE_1_2.replace("# DRIVER = ec2", "DRIVER = dummy");
    fs::write(&path, &testing).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();

    // No DIRECTOR_URL option yet (only a comment, which 1.2 would have replaced).
    let url = config::set_director_url(&path, "director.example.org", Some(5555)).unwrap();
    assert_eq!(url.to_string(), "https://director.example.org:5555");
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        testing.replace(
            "[director]\n",
            "[director]\nDIRECTOR_URL = https://director.example.org:5555\n"
        )
    );
    assert_eq!(mode(&path), 0o640);

    // Then the option is replaced in place; nothing else moves.
    config::set_director_url(&path, "10.0.0.5", Some(443)).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        testing.replace(
            "[director]\n",
            "[director]\nDIRECTOR_URL = https://10.0.0.5:443\n"
        )
    );
    let loaded = config::load(&ConfigSource::File {
        path: path.clone(),
        origin: FileOrigin::CommandLine,
    })
    .unwrap();
    let url = loaded.require_director_url().unwrap();
    assert_eq!((url.host(), url.port()), ("10.0.0.5", Some(443)));
    assert_eq!(mode(&path), 0o640);
    // No temporary file is left behind.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

    let error = config::set_director_url(&path, "not a host", Some(5555)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "expected a host name or IP address for DIRECTOR_URL, got \"not a host\""
    );
    let missing = dir.path().join("nope.cfg");
    let error = config::set_director_url(&missing, "h", Some(5555)).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("{}: no such configuration file", missing.display())
    );
}

/// Tidy: every key the code recognises is documented in docs/config.md.
#[test]
fn every_known_key_is_documented() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.md");
    let text = fs::read_to_string(&docs).unwrap();
    let missing: Vec<&str> = KNOWN_KEYS
        .iter()
        .map(|(_, key)| *key)
        .filter(|key| !text.contains(&format!("`{key}`")))
        .collect();
    assert!(missing.is_empty(), "not in docs/config.md: {missing:?}");
}

/// The cloud examples of docs/config.md are configurations that load: each `[iaas]` block,
/// completed with `[conpaas]` and `[director]`, gives the clouds it shows.
#[test]
fn the_documented_cloud_examples_load() {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.md"))
            .unwrap();
    let blocks: Vec<&str> = docs
        .split("```ini\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .filter(|block| block.starts_with("[iaas]"))
        .collect();
    assert!(
        blocks.len() >= 3,
        "expected the EC2, OpenNebula and multi-cloud examples"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut n_clouds = Vec::new();
    for block in blocks {
        let text = format!(
            "[conpaas]\nCONF_DIR = {d}\nCERT_DIR = {d}/certs\n\n{block}\n[director]\n\
             DATABASE_URI = sqlite:///{d}/director.db\nDIRECTOR_URL = https://director.example.org:5555\n",
            d = dir.path().display()
        );
        let loaded = load_file(dir.path(), "director.cfg", &text)
            .unwrap_or_else(|error| panic!("{error}\n{block}"));
        n_clouds.push(loaded.config.clouds().count());
    }
    assert!(
        n_clouds.contains(&3),
        "the multi-cloud example gives three clouds: {n_clouds:?}"
    );
}

/// A value naming itself several times used to grow geometrically with each interpolation
/// round (fuzzing found 300 bytes that took 2 GiB): now a bounded, clear error.
#[test]
fn self_multiplying_interpolation_is_refused_quickly() {
    let text = "[conpaas]\nCONF_DIR = /x%(conf_dir)s%(conf_dir)s%(conf_dir)s%(conf_dir)s\n\
                CERT_DIR = /c\n[iaas]\nDRIVER = dummy\n[director]\nDATABASE_URI = sqlite:////tmp/d.db\n";
    let started = std::time::Instant::now();
    let error = config::parse_str(Path::new("director.cfg"), text)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("director.cfg:2: [conpaas] CONF_DIR"),
        "{error}"
    );
    assert!(error.contains("expand to at most 65536 bytes"), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

/// Every `[iaas]` example of docs/clouds.md and docs/config.md loads as it stands (with the
/// `[conpaas]` and `[director]` sections a director.cfg has besides): an operator pasting one
/// gets a director, not an error. Warnings (1.2 compatibility notes) are allowed.
#[test]
fn every_documented_cloud_section_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for doc in ["docs/clouds.md", "docs/config.md"] {
        let text = fs::read_to_string(root.join(doc)).unwrap();
        let mut blocks = text.split("```ini\n").skip(1);
        for block in blocks.by_ref() {
            let block = block.split("```").next().unwrap();
            if !block.contains("[iaas]") || block.contains("...") {
                continue;
            }
            let cfg = format!(
                "[conpaas]\nCONF_DIR = {d}\nCERT_DIR = {d}/certs\n\n{block}\n\
                 [director]\nDATABASE_URI = sqlite:///{d}/director.db\n",
                d = dir.path().display()
            );
            if let Err(error) = load_file(dir.path(), "director.cfg", &cfg) {
                panic!("a section of {doc} does not load: {error}\n{block}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} documented sections found");
}

/// The example files shipped in packaging/ (1.2 shipped `director.cfg.example` and
/// `director.cfg.multicloud-example`) load as they are, without a warning, with the clouds
/// their comments promise.
#[test]
fn the_shipped_example_files_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for (file, clouds) in [
        ("director.cfg.example", vec!["dummy"]),
        (
            "director.cfg.multicloud-example",
            vec!["ec2", "opennebula", "openstack", "opennebula"],
        ),
    ] {
        let text = fs::read_to_string(root.join("packaging").join(file)).unwrap();
        let loaded = load_file(dir.path(), file, &text)
            .unwrap_or_else(|error| panic!("packaging/{file}: {error}"));
        assert!(
            loaded.warnings.is_empty(),
            "packaging/{file}: {:?}",
            loaded.warnings
        );
        let drivers: Vec<_> = loaded
            .config
            .clouds()
            .map(|cloud| cloud.driver.name())
            .collect();
        assert_eq!(drivers, clouds, "packaging/{file}");
    }
}
