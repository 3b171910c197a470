//! The manager VM's contextualisation script (its user-data), rendered from the templates under
//! CONF_DIR exactly as `spec/manager-bootstrap.md` §3-§6 describes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The VM-side directory the PEM here-documents are written to (1.2's literal `/tmp`).
const VM_TMP: &str = "/tmp";

/// Reading the templates failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A required template is missing or unreadable.
    #[error("cannot read manager template {}", path.display())]
    Template {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// A value would end the here-document early.
    #[error("a copied configuration value contains a line consisting of EOF")]
    HereDocument,
}

/// The texts a manager's script is made of, read from CONF_DIR for one service type and cloud.
#[derive(Debug, Clone)]
pub struct Templates {
    cloud_script: Option<String>,
    manager_setup: String,
    manager_cfg: String,
    start_script: String,
}

/// Where the manager templates come from: a CONF_DIR on disk (read at every start, so an
/// operator's edit applies to the next service), or texts held in memory by an embedder.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TemplateSource {
    /// A CONF_DIR holding `scripts/` and `config/` as 1.2 lays them out.
    Dir(PathBuf),
    /// Texts keyed by their path relative to a CONF_DIR (`scripts/manager/manager-setup`,
    /// `config/manager/default-manager.cfg`, `scripts/manager/default-manager-start`,
    /// optionally `scripts/cloud/<driver>`, `config/manager/<type>-manager.cfg` and
    /// `scripts/manager/<type>-manager-start`).
    InMemory(Arc<BTreeMap<String, String>>),
}

impl TemplateSource {
    /// Templates read from `conf_dir`.
    pub fn conf_dir(conf_dir: impl Into<PathBuf>) -> Self {
        TemplateSource::Dir(conf_dir.into())
    }

    /// Templates held in memory, keyed by their path relative to a CONF_DIR.
    pub fn in_memory<K: Into<String>, V: Into<String>>(
        files: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        TemplateSource::InMemory(Arc::new(
            files
                .into_iter()
                .map(|(path, text)| (path.into(), text.into()))
                .collect(),
        ))
    }

    /// The minimal templates of the embedded default (a dummy-cloud director), in memory.
    pub fn embedded_default() -> Self {
        Self::in_memory(DEFAULT_TEMPLATES)
    }

    /// The CONF_DIR, for a source on disk.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            TemplateSource::Dir(dir) => Some(dir),
            TemplateSource::InMemory(_) => None,
        }
    }

    fn read_optional(&self, relative: &str) -> Result<Option<String>, Error> {
        match self {
            TemplateSource::Dir(dir) => {
                let path = dir.join(relative);
                match std::fs::read_to_string(&path) {
                    Ok(text) => Ok(Some(text)),
                    Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(Error::Template { path, source }),
                }
            }
            TemplateSource::InMemory(files) => Ok(files.get(relative).cloned()),
        }
    }

    fn read_required(&self, relative: &str) -> Result<String, Error> {
        self.read_optional(relative)?
            .ok_or_else(|| Error::Template {
                path: match self {
                    TemplateSource::Dir(dir) => dir.join(relative),
                    TemplateSource::InMemory(_) => PathBuf::from(relative),
                },
                source: io::Error::from(io::ErrorKind::NotFound),
            })
    }
}

impl Templates {
    /// Reads the templates of `conf_dir` for `service_type` on a cloud of driver `cloud_driver`
    /// (`ec2`, `opennebula`, `dummy`).
    pub fn load(conf_dir: &Path, service_type: &str, cloud_driver: &str) -> Result<Self, Error> {
        Self::from_source(
            &TemplateSource::Dir(conf_dir.to_owned()),
            service_type,
            cloud_driver,
        )
    }

    /// Reads the templates of `source` for `service_type` on a cloud of driver `cloud_driver`.
    /// Blocks on file IO for a [`TemplateSource::Dir`].
    pub fn from_source(
        source: &TemplateSource,
        service_type: &str,
        cloud_driver: &str,
    ) -> Result<Self, Error> {
        let cloud_script = cloud_part(source, cloud_driver)?;
        let manager_setup = source.read_required("scripts/manager/manager-setup")?;
        let mut manager_cfg = source.read_required("config/manager/default-manager.cfg")?;
        if let Some(extra) =
            source.read_optional(&format!("config/manager/{service_type}-manager.cfg"))?
        {
            manager_cfg.push_str(&extra);
        }
        // 1.2 reads the default start script even when a type-specific one replaces it.
        let default_start = source.read_required("scripts/manager/default-manager-start")?;
        let start_script = source
            .read_optional(&format!("scripts/manager/{service_type}-manager-start"))?
            .unwrap_or(default_start);
        Ok(Templates {
            cloud_script,
            manager_setup,
            manager_cfg,
            start_script,
        })
    }
}

/// The cloud part (`scripts/cloud/<driver>`) of `source` that starts the script of a VM on a
/// cloud of driver `cloud_driver`, or the director's own where 1.2's is missing or unusable
/// (dummy, EC2 with IMDSv2). Blocks on file IO for a [`TemplateSource::Dir`].
pub fn cloud_part(source: &TemplateSource, cloud_driver: &str) -> Result<Option<String>, Error> {
    let cloud_path = format!("scripts/cloud/{cloud_driver}");
    let mut cloud_script = source.read_optional(&cloud_path)?;
    if cloud_script.is_none() && cloud_driver == "dummy" {
        // 1.2.0 ships no dummy cloud part, so an adopted CONF_DIR lacks it, and without one
        // a real manager gets no IP_PUBLIC and does not start. The dummy cloud's address
        // is the director's own choice: it supplies the part.
        tracing::debug!(path = %cloud_path, "no dummy cloud part: the built-in one is used");
        cloud_script = Some(DUMMY_CLOUD_SCRIPT.to_owned());
    } else if cloud_driver == "ec2"
        && cloud_script
            .as_deref()
            .is_none_or(reads_metadata_without_token)
    {
        // The director launches EC2 managers with IMDSv2 required (METADATA_TOKENS), and
        // 1.2's part reads the metadata with plain GETs, which such instances refuse: the
        // manager would get no address. The built-in part fetches a token first (and falls
        // back to plain GETs where IMDSv1 is all there is).
        tracing::info!(path = %cloud_path, "the EC2 cloud part is missing or reads the instance metadata without an IMDSv2 token: the built-in one is used");
        cloud_script = Some(EC2_CLOUD_SCRIPT.to_owned());
    } else if cloud_script.is_none() {
        // As in 1.2: logged, not fatal.
        tracing::info!(path = %cloud_path, "no cloud configuration script found");
    }
    Ok(cloud_script)
}

/// One cloud section copied into the manager's config.cfg.
///
/// Frozen: an INI section is a name and its entries.
#[derive(Debug, Clone)]
pub struct CloudSection<'a> {
    /// Section name (`iaas`, or an `OTHER_CLOUDS` name).
    pub name: &'a str,
    /// Upper-cased keys and interpolated values, in file order.
    pub entries: &'a [(String, String)],
}

/// The VPN lines appended to the `[manager]` section when a subnet was assigned.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VpnLines {
    /// `IPOP_SUBNET`.
    pub subnet: String,
    /// `IPOP_IP_ADDRESS`.
    pub ip_address: String,
    /// `IPOP_BASE_IP`.
    pub base_ip: String,
    /// `IPOP_NETMASK`.
    pub netmask: String,
    /// `IPOP_BOOTSTRAP_NODES` (`[conpaas] VPN_BOOTSTRAP_NODES`), one node each; the line is
    /// left out when empty (IPOP then uses its built-in list).
    pub bootstrap_nodes: Vec<String>,
}

impl VpnLines {
    /// The lines of `subnet` with the manager at `ip_address`, in the application network
    /// `base_ip`/`netmask` (the texts of [`ManagerVpnConfig`](crate::vpn::ManagerVpnConfig));
    /// no bootstrap nodes.
    pub fn new(
        subnet: impl Into<String>,
        ip_address: impl Into<String>,
        base_ip: impl Into<String>,
        netmask: impl Into<String>,
    ) -> Self {
        VpnLines {
            subnet: subnet.into(),
            ip_address: ip_address.into(),
            base_ip: base_ip.into(),
            netmask: netmask.into(),
            bootstrap_nodes: Vec::new(),
        }
    }

    setters! { bootstrap_nodes: Vec<String> }
}

/// What varies per service: [`ContextInput::new`], then
/// [`certificates`](ContextInput::certificates) and the other setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ContextInput<'a> {
    /// `[director] DIRECTOR_URL`.
    pub director_url: &'a str,
    /// Service type name.
    pub service_type: &'a str,
    /// Service id.
    pub service_id: i32,
    /// Owner id.
    pub user_id: i32,
    /// Application id.
    pub app_id: i32,
    /// The manager's certificate.
    pub manager_cert_pem: &'a str,
    /// The manager's private key (only ever written into this script).
    pub manager_key_pem: &'a str,
    /// The CA certificate.
    pub ca_cert_pem: &'a str,
    /// `[iaas]` then every other cloud, in order.
    pub clouds: &'a [CloudSection<'a>],
    /// VPN settings, when the service has a subnet.
    pub vpn: Option<&'a VpnLines>,
    /// Append the CA certificate to `/etc/ssl/certs/ca-certificates.crt` after manager-setup:
    /// where the 1.2 managers' libcloud looks for the roots of an HTTPS cloud, for the
    /// director's own OCCI routes (the managers' cloud).
    pub trust_ca_for_clouds: bool,
}

impl<'a> ContextInput<'a> {
    /// The script of service `service_id` (a `service_type`) of user `user_id` in application
    /// `app_id`, calling back at `director_url`; no clouds, no VPN.
    ///
    /// The three PEM texts start empty: set them with
    /// [`certificates`](Self::certificates) before rendering, or the manager has no identity.
    pub fn new(
        director_url: &'a str,
        service_type: &'a str,
        service_id: i32,
        user_id: i32,
        app_id: i32,
    ) -> Self {
        ContextInput {
            director_url,
            service_type,
            service_id,
            user_id,
            app_id,
            manager_cert_pem: "",
            manager_key_pem: "",
            ca_cert_pem: "",
            clouds: &[],
            vpn: None,
            trust_ca_for_clouds: false,
        }
    }

    /// Sets [`manager_cert_pem`](Self::manager_cert_pem),
    /// [`manager_key_pem`](Self::manager_key_pem) and [`ca_cert_pem`](Self::ca_cert_pem).
    pub fn certificates(
        mut self,
        manager_cert_pem: &'a str,
        manager_key_pem: &'a str,
        ca_cert_pem: &'a str,
    ) -> Self {
        self.manager_cert_pem = manager_cert_pem;
        self.manager_key_pem = manager_key_pem;
        self.ca_cert_pem = ca_cert_pem;
        self
    }

    setters! {
        clouds: &'a [CloudSection<'a>],
        vpn: some &'a VpnLines,
        trust_ca_for_clouds: bool,
    }
}

/// Escapes what the VM's shell would expand inside the unquoted here-document: copied
/// configuration values must arrive verbatim (`spec/manager-bootstrap.md` §6), and a `$(...)`
/// in a password must never run as root on the VM.
fn shell_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        if matches!(ch, '$' | '`' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

fn pem_block(out: &mut String, target: &str, pem: &str) {
    let _ = write!(out, "cat <<EOF > {target}\n{pem}");
    if !pem.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("\nEOF\n\n");
}

/// Renders the script: cloud part, three PEM here-documents, manager-setup, config.cfg, start.
pub fn render(templates: &Templates, input: &ContextInput<'_>) -> Result<String, Error> {
    let mut out = String::with_capacity(16 * 1024);
    if let Some(cloud) = &templates.cloud_script {
        out.push_str(cloud);
    }
    out.push_str("\n\n");
    pem_block(
        &mut out,
        &format!("{VM_TMP}/cert.pem"),
        input.manager_cert_pem,
    );
    pem_block(
        &mut out,
        &format!("{VM_TMP}/key.pem"),
        input.manager_key_pem,
    );
    pem_block(
        &mut out,
        &format!("{VM_TMP}/ca_cert.pem"),
        input.ca_cert_pem,
    );
    out.push_str(
        &templates
            .manager_setup
            .replace("%DIRECTOR_URL%", input.director_url),
    );
    out.push_str("\n\n");
    if input.trust_ca_for_clouds {
        // libcloud 0.8 verifies HTTPS clouds against the first bundle it finds of four fixed
        // paths (Debian's is the second; the first is Red Hat's), and the manager images may
        // have none: the director's CA is added where a Debian image looks.
        out.push_str("mkdir -p /etc/ssl/certs\n");
        let pem = input.ca_cert_pem;
        let _ = write!(
            out,
            "cat <<EOF >> /etc/ssl/certs/ca-certificates.crt\n{pem}"
        );
        if !pem.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("EOF\n\n");
    }

    let mut config = String::new();
    for cloud in input.clouds {
        let _ = writeln!(config, "[{}]", cloud.name);
        for (key, value) in cloud.entries {
            // Continuation lines keep multi-line values readable by the manager's parser.
            let value = shell_escape(value).replace('\n', "\n\t");
            let _ = writeln!(config, "{} = {}", key.to_ascii_uppercase(), value);
        }
    }
    let manager = templates
        .manager_cfg
        .replace("%DIRECTOR_URL%", input.director_url)
        .replace("%CONPAAS_SERVICE_TYPE%", input.service_type)
        .replace("%CONPAAS_SERVICE_ID%", &input.service_id.to_string())
        .replace("%CONPAAS_USER_ID%", &input.user_id.to_string())
        .replace("%CONPAAS_APP_ID%", &input.app_id.to_string());
    config.push('\n');
    config.push_str(&manager);
    if let Some(vpn) = input.vpn {
        let _ = write!(
            config,
            "\nIPOP_SUBNET = {}\nIPOP_IP_ADDRESS = {}\nIPOP_BASE_IP = {}\nIPOP_NETMASK = {}",
            vpn.subnet, vpn.ip_address, vpn.base_ip, vpn.netmask
        );
        // The first node on the key's line, each other one an indented continuation line:
        // Python's ConfigParser joins them with newlines, and the managers split the value
        // into lines. 1.3's director wrote the value starting with a newline and without the
        // indentation, which the managers read as an empty value plus bogus `udp`/`tcp` keys
        // (`spec/config.md` §13.7).
        if let Some((first, rest)) = vpn.bootstrap_nodes.split_first() {
            let _ = write!(config, "\nIPOP_BOOTSTRAP_NODES = {}", shell_escape(first));
            for node in rest {
                let _ = write!(config, "\n\t{}", shell_escape(node));
            }
        }
    }
    if config.lines().any(|line| line == "EOF") {
        return Err(Error::HereDocument);
    }
    let _ = write!(out, "cat <<EOF > $ROOT_DIR/config.cfg\n{config}\nEOF\n\n");
    out.push_str(&templates.start_script);
    Ok(out)
}

/// An agent's boot script as its manager rendered it, with the manager's cloud part (everything
/// before the first here-document, `cat <<EOF > `, which writes the agent's certificate) replaced
/// by `cloud_part`: the agent boots on the director's cloud, not the manager's (1.2 managers
/// render OpenNebula's part, which would overwrite the DNS settings of an EC2 VM). A script
/// without a here-document is kept whole after `cloud_part`.
pub fn replace_cloud_part(agent_script: &str, cloud_part: Option<&str>) -> String {
    let rest = agent_script
        .find("cat <<EOF > ")
        .filter(|&at| at == 0 || agent_script.as_bytes()[at - 1] == b'\n')
        .map_or(agent_script, |at| &agent_script[at..]);
    let mut out = String::with_capacity(rest.len() + 4096);
    if let Some(part) = cloud_part {
        out.push_str(part);
        out.push_str("\n\n");
    }
    out.push_str(rest);
    out
}

/// The director's cloud part for EC2 (`scripts/cloud/ec2`): 1.2's variables (`IP_PUBLIC`,
/// `PRIVATE_IP`, host names, `VM_ID`) read from the instance metadata through IMDSv2, with
/// IMDSv1 as the fallback. Rendered instead of a CONF_DIR's part that is missing or reads the
/// metadata without a token (1.2's own).
pub const EC2_CLOUD_SCRIPT: &str = include_str!("templates/cloud-ec2");

/// Whether a cloud part reads EC2's instance metadata without an IMDSv2 session token.
pub(crate) fn reads_metadata_without_token(script: &str) -> bool {
    script.contains("169.254.169.254") && !script.contains("X-aws-ec2-metadata-token")
}

/// The cloud part of the dummy cloud (`scripts/cloud/dummy`): sets `IP_PUBLIC` to the address
/// the dummy cloud records for every manager (`cloud::DUMMY_MANAGER_IP`, 127.0.0.3). Installed
/// with the embedded default, and rendered when a dummy cloud's CONF_DIR has no such file.
pub const DUMMY_CLOUD_SCRIPT: &str = include_str!("templates/cloud-dummy");

/// The templates shipped with the embedded default (a dummy-cloud director): the files and
/// variables 1.2's manager start scripts and manager programs need (`IP_PUBLIC`, the
/// manager-setup variables, the `[manager]` keys, `MEMCACHE_ADDR` for php and java), so that
/// 1.2's own `scripts/manager/<type>-manager-start` can be dropped in beside them. Real clouds
/// use the ConPaaS 1.2 `scripts/` and `config/` trees.
const DEFAULT_TEMPLATES: [(&str, &str); 6] = [
    ("scripts/cloud/dummy", DUMMY_CLOUD_SCRIPT),
    (
        "scripts/manager/manager-setup",
        include_str!("templates/manager-setup"),
    ),
    (
        "config/manager/default-manager.cfg",
        include_str!("templates/default-manager.cfg"),
    ),
    (
        "scripts/manager/default-manager-start",
        include_str!("templates/default-manager-start"),
    ),
    (
        "config/manager/php-manager.cfg",
        include_str!("templates/php-manager.cfg"),
    ),
    (
        "config/manager/java-manager.cfg",
        include_str!("templates/java-manager.cfg"),
    ),
];

/// Writes the embedded templates into `conf_dir` where missing; never overwrites.
pub fn install_default_templates(conf_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (relative, text) in DEFAULT_TEMPLATES {
        let path = conf_dir.join(relative);
        if path.exists() {
            continue;
        }
        // Owned as CONF_DIR is, whoever runs `director init` there.
        if let Some(parent) = path.parent() {
            crate::data_files::create_dir_all(parent, 0o755)?;
        }
        let mode = crate::data_files::Mode::KeptOr(0o644);
        match crate::data_files::create_new(&path, text.as_bytes(), mode) {
            Ok(()) => written.push(path),
            // Another director starting at once wrote it: never overwritten.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates(dir: &Path) -> Templates {
        install_default_templates(dir).unwrap();
        Templates::load(dir, "php", "dummy").unwrap()
    }

    #[test]
    fn renders_in_the_1_2_order() {
        let dir = tempfile::tempdir().unwrap();
        let templates = templates(dir.path());
        let entries = vec![("DRIVER".to_owned(), "dummy".to_owned())];
        let clouds = [CloudSection {
            name: "iaas",
            entries: &entries,
        }];
        let vpn = VpnLines {
            subnet: "172.16.0.0/17".into(),
            ip_address: "172.16.0.2".into(),
            base_ip: "172.16.0.0".into(),
            netmask: "255.240.0.0".into(),
            bootstrap_nodes: vec!["udp://192.168.35.2:40000".into(), "tcp://10.0.0.1:1".into()],
        };
        let script = render(
            &templates,
            &ContextInput {
                director_url: "https://d.example:5555",
                service_type: "php",
                service_id: 7,
                user_id: 3,
                app_id: 2,
                manager_cert_pem: "CERT\n",
                manager_key_pem: "KEY\n",
                ca_cert_pem: "CA\n",
                clouds: &clouds,
                vpn: Some(&vpn),
                trust_ca_for_clouds: false,
            },
        )
        .unwrap();
        let cert = script
            .find("cat <<EOF > /tmp/cert.pem\nCERT\n\nEOF")
            .unwrap();
        let key = script.find("cat <<EOF > /tmp/key.pem\nKEY\n\nEOF").unwrap();
        let ca = script
            .find("cat <<EOF > /tmp/ca_cert.pem\nCA\n\nEOF")
            .unwrap();
        let setup = script.find("DIRECTOR=https://d.example:5555\n").unwrap();
        let config = script
            .find("cat <<EOF > $ROOT_DIR/config.cfg\n[iaas]\nDRIVER = dummy\n")
            .unwrap();
        let start = script.find("default-cpsmanager -c").unwrap();
        assert!(cert < key && key < ca && ca < setup && setup < config && config < start);
        assert!(script.contains("SERVICE_ID = 7\nUSER_ID = 3\nAPP_ID = 2\n"));
        assert!(
            script.contains("CREDIT_URL = https://d.example:5555/callback/decrementUserCredit.php")
        );
        assert!(script.contains("\nIPOP_SUBNET = 172.16.0.0/17\nIPOP_IP_ADDRESS = 172.16.0.2\n"));
        assert!(
            script.contains(
                "\nIPOP_BOOTSTRAP_NODES = udp://192.168.35.2:40000\n\ttcp://10.0.0.1:1\n"
            )
        );
        assert!(!script.contains("%CONPAAS") && !script.contains("%DIRECTOR_URL%"));
        let syntax = std::process::Command::new("bash")
            .arg("-n")
            .arg("-c")
            .arg(&script)
            .status();
        assert!(syntax.unwrap().success(), "bash -n refused the script");
    }

    #[test]
    fn copied_values_are_not_expanded_by_the_vm_shell() {
        let dir = tempfile::tempdir().unwrap();
        let templates = templates(dir.path());
        let entries = vec![("PASSWORD".to_owned(), "a$(reboot)`x`\\y".to_owned())];
        let clouds = [CloudSection {
            name: "iaas",
            entries: &entries,
        }];
        let script = render(
            &templates,
            &ContextInput {
                director_url: "https://d:5555",
                service_type: "mysql",
                service_id: 1,
                user_id: 1,
                app_id: 1,
                manager_cert_pem: "C\n",
                manager_key_pem: "K\n",
                ca_cert_pem: "A\n",
                clouds: &clouds,
                vpn: None,
                trust_ca_for_clouds: false,
            },
        )
        .unwrap();
        assert!(script.contains("PASSWORD = a\\$(reboot)\\`x\\`\\\\y\n"));
        assert!(!script.contains("IPOP_SUBNET"));
        // Run the config.cfg here-document through a real shell: the value arrives verbatim
        // while the template's own variables are expanded.
        let start = script.find("cat <<EOF > $ROOT_DIR/config.cfg").unwrap();
        let end = start + script[start..].find("\nEOF\n").unwrap() + 5;
        let root = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("bash")
            .arg("-c")
            .arg(&script[start..end])
            .env("ROOT_DIR", root.path())
            .env("SOURCE", "https://d:5555/download")
            .status()
            .unwrap();
        assert!(status.success());
        let written = std::fs::read_to_string(root.path().join("config.cfg")).unwrap();
        assert!(
            written.contains("PASSWORD = a$(reboot)`x`\\y\n"),
            "{written}"
        );
        assert!(
            written.contains("BOOTSTRAP = https://d:5555/download\n"),
            "{written}"
        );
    }

    #[test]
    fn ec2_gets_a_cloud_part_that_asks_for_an_imdsv2_token() {
        let dir = tempfile::tempdir().unwrap();
        install_default_templates(dir.path()).unwrap();
        // Missing: the built-in part.
        let loaded = Templates::load(dir.path(), "php", "ec2").unwrap();
        assert_eq!(loaded.cloud_script.as_deref(), Some(EC2_CLOUD_SCRIPT));
        assert!(EC2_CLOUD_SCRIPT.starts_with("#!/bin/bash\n"));
        // 1.2's own part (plain GETs of the metadata): replaced.
        let part = dir.path().join("scripts/cloud/ec2");
        std::fs::write(
            &part,
            "#!/bin/bash\nIP_PUBLIC=$(wget http://169.254.169.254/latest/meta-data/public-ipv4 -O -)\n",
        )
        .unwrap();
        let loaded = Templates::load(dir.path(), "php", "ec2").unwrap();
        assert_eq!(loaded.cloud_script.as_deref(), Some(EC2_CLOUD_SCRIPT));
        // An operator's part that uses tokens, or no metadata at all: kept.
        for own in [
            "#!/bin/bash\nT=$(curl -X PUT http://169.254.169.254/latest/api/token)\ncurl -H \"X-aws-ec2-metadata-token: $T\" http://169.254.169.254/\n",
            "#!/bin/bash\nIP_PUBLIC=10.1.2.3\n",
        ] {
            std::fs::write(&part, own).unwrap();
            let loaded = Templates::load(dir.path(), "php", "ec2").unwrap();
            assert_eq!(loaded.cloud_script.as_deref(), Some(own));
        }
    }

    #[test]
    fn the_dummy_cloud_part_is_supplied_when_absent() {
        let dir = tempfile::tempdir().unwrap();
        install_default_templates(dir.path()).unwrap();
        let shipped = dir.path().join("scripts/cloud/dummy");
        assert_eq!(
            std::fs::read_to_string(&shipped).unwrap(),
            DUMMY_CLOUD_SCRIPT
        );
        // An adopted 1.2 CONF_DIR has no scripts/cloud/dummy: the built-in part is rendered.
        std::fs::remove_file(&shipped).unwrap();
        let loaded = Templates::load(dir.path(), "php", "dummy").unwrap();
        assert_eq!(loaded.cloud_script.as_deref(), Some(DUMMY_CLOUD_SCRIPT));
        assert!(DUMMY_CLOUD_SCRIPT.contains("\nIP_PUBLIC=127.0.0.3\n"));
        // The operator's own file wins.
        std::fs::write(&shipped, "IP_PUBLIC=10.0.0.9\n").unwrap();
        let loaded = Templates::load(dir.path(), "php", "dummy").unwrap();
        assert_eq!(loaded.cloud_script.as_deref(), Some("IP_PUBLIC=10.0.0.9\n"));
        // Other drivers still get nothing for a missing part, as in 1.2.
        let loaded = Templates::load(dir.path(), "php", "opennebula").unwrap();
        assert_eq!(loaded.cloud_script, None);
        // php and java managers get MEMCACHE_ADDR; other types do not.
        let php = Templates::load(dir.path(), "php", "dummy").unwrap();
        assert!(
            php.manager_cfg
                .ends_with("CONPAAS_HOME = $CPS_HOME\nMEMCACHE_ADDR = 127.0.0.1:11211\n")
        );
        let mysql = Templates::load(dir.path(), "mysql", "dummy").unwrap();
        assert!(!mysql.manager_cfg.contains("MEMCACHE_ADDR"));
    }

    #[test]
    fn missing_required_template_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let error = Templates::load(dir.path(), "php", "ec2").unwrap_err();
        assert!(
            error.to_string().contains("scripts/manager/manager-setup"),
            "{error}"
        );
    }
}
