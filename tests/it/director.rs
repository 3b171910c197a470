//! The director's use-cases as a library: the start saga on the dummy cloud and the
//! reconciliation of starts a crash left half-done.

use std::path::Path;
use std::time::Duration;

use conpaas_core::config::{self, ConfigSource, LoadedConfig};
use conpaas_core::director::{Director, StartRequest, accounts, setup};
use conpaas_core::model::{Credit, ServiceType, UserId};
use conpaas_core::store::{self, NewService};

fn data_dir(dir: &Path) -> LoadedConfig {
    let source = ConfigSource::resolve_with(
        None,
        Some(dir.join("data")),
        None,
        Path::new("/nonexistent"),
    );
    let loaded = config::load(&source).unwrap();
    // ECDSA keeps the test fast; RSA is exercised elsewhere.
    let cfg = std::fs::read_to_string(&loaded.path)
        .unwrap()
        .replace("[iaas]", "KEY_ALGORITHM = ecdsa\n\n[iaas]");
    std::fs::write(&loaded.path, cfg).unwrap();
    let loaded = config::load(&source).unwrap();
    setup::init(&loaded, "localhost", false).unwrap();
    loaded
}

async fn user(director: &Director, name: &str, credit: i64) -> UserId {
    let account = accounts::NewAccount::new(
        name,
        format!("{name}@example.org"),
        "pw".to_owned().into(),
        Credit(credit),
    );
    accounts::add_user(director.store(), account)
        .await
        .unwrap()
        .uid
}

async fn credit(director: &Director, uid: UserId) -> i64 {
    director.user(uid).await.unwrap().unwrap().credit.0
}

#[tokio::test]
async fn start_and_stop_on_the_dummy_cloud() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = data_dir(dir.path());
    let director = Director::open(&loaded).unwrap();
    let uid = user(&director, "alice", 2).await;
    let start = |cloud: &str| StartRequest::new(uid, "php").cloud(cloud);
    let service = director.start_service(start("default")).await.unwrap();
    assert_eq!(service.manager.as_deref(), Some("127.0.0.3"));
    assert_eq!(service.cloud.as_deref(), Some("iaas"));
    let vm = loaded
        .config
        .conf_dir
        .join("dummy-cloud")
        .join(format!("{}.sh", service.vmid.clone().unwrap()));
    let script = std::fs::read_to_string(&vm).unwrap();
    assert!(
        script.contains(&format!("SERVICE_ID = {}\n", service.sid)),
        "{script}"
    );
    assert!(script.contains("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(credit(&director, uid).await, 1);

    // An unknown cloud costs nothing and leaves nothing.
    let error = director.start_service(start("nowhere")).await.unwrap_err();
    assert!(error.to_string().contains("nowhere"), "{error}");
    assert_eq!(credit(&director, uid).await, 1);
    assert_eq!(director.services(uid).await.unwrap().len(), 1);

    // Credit runs out: refused, nothing created.
    director.start_service(start("default")).await.unwrap();
    let error = director.start_service(start("default")).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "Could not add nodes. Not enough credits."
    );
    assert_eq!(director.services(uid).await.unwrap().len(), 2);

    assert!(director.stop_service(uid, service.sid).await.unwrap());
    assert!(!vm.exists(), "the dummy VM outlived its service");
    assert!(!director.stop_service(uid, service.sid).await.unwrap());
}

#[tokio::test]
async fn a_missing_template_costs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = data_dir(dir.path());
    std::fs::remove_file(loaded.config.conf_dir.join("scripts/manager/manager-setup")).unwrap();
    let director = Director::open(&loaded).unwrap();
    let uid = user(&director, "bob", 5).await;
    let request = StartRequest::new(uid, "php");
    let error = director.start_service(request).await.unwrap_err();
    assert!(error.to_string().contains("manager-setup"), "{error}");
    assert_eq!(credit(&director, uid).await, 5);
    assert!(director.services(uid).await.unwrap().is_empty());
    assert!(
        std::fs::read_dir(loaded.config.conf_dir.join("dummy-cloud"))
            .map_or(true, |mut d| d.next().is_none())
    );
}

#[tokio::test]
async fn reconcile_undoes_interrupted_starts_only() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = data_dir(dir.path());
    let director = Director::open(&loaded).unwrap();
    let uid = user(&director, "carol", 10).await;
    let app = director.applications(uid).await.unwrap()[0].aid;

    // A crash after the VM was created and before the row was completed: the row without
    // a VM, the credit taken, the VM running under the service's client token.
    let new = NewService::new(uid, app, ServiceType::Php);
    let row = director
        .store()
        .run(move |conn| {
            assert!(store::decrement_credit(conn, uid, Credit(1))?);
            store::insert_service(conn, &new, |_| Ok::<_, store::Error>(None))
        })
        .await
        .unwrap();
    let dummy = loaded.config.conf_dir.join("dummy-cloud");
    std::fs::create_dir_all(&dummy).unwrap();
    let vm = dummy.join(format!("{}.sh", director.client_token(row.sid)));
    std::fs::write(&vm, "#!/bin/sh\n").unwrap();
    assert_eq!(credit(&director, uid).await, 9);

    // Too recent: a start of another replica may still be running.
    assert_eq!(
        director
            .reconcile(director.reconcile_grace())
            .await
            .unwrap(),
        0
    );
    assert!(vm.exists());

    assert_eq!(director.reconcile(Duration::ZERO).await.unwrap(), 1);
    assert!(!vm.exists(), "the interrupted start's VM is still running");
    assert!(director.services(uid).await.unwrap().is_empty());
    assert_eq!(credit(&director, uid).await, 10);
}

/// cpscheck's service check: a started service whose VM disappeared from its cloud (here: the
/// dummy cloud's file removed behind the director's back) is reported.
#[tokio::test]
async fn cpscheck_notices_a_vm_gone_from_its_cloud() {
    use conpaas_core::check::{self, CheckOptions, Status};

    let dir = tempfile::tempdir().unwrap();
    let loaded = data_dir(dir.path());
    let director = Director::open(&loaded).unwrap();
    let uid = user(&director, "eve", 3).await;
    let request = StartRequest::new(uid, "php");
    let service = director.start_service(request).await.unwrap();
    let options = CheckOptions::recommended();
    let services = |results: Vec<check::CheckResult>| {
        results
            .into_iter()
            .find(|result| result.id == "services")
            .unwrap()
    };
    let before = services(check::run_checks(&loaded, &options).await);
    assert_eq!(before.status, Status::Ok, "{before}");

    let vmid = service.vmid.unwrap();
    std::fs::remove_file(
        loaded
            .config
            .conf_dir
            .join("dummy-cloud")
            .join(format!("{vmid}.sh")),
    )
    .unwrap();
    let after = services(check::run_checks(&loaded, &options).await);
    assert_eq!(after.status, Status::Warning, "{after}");
    assert!(
        after
            .to_string()
            .contains(&format!("sid {} (iaas {vmid})", service.sid)),
        "{after}"
    );
}

/// The embedded default boots a real 1.2 manager on the dummy cloud (issue: `-s $IP_PUBLIC`
/// got nothing): the rendered script's cloud part sets `IP_PUBLIC` to the address the dummy
/// cloud records, and what it defines is what 1.2's start scripts and manager programs read.
/// The script's variable assignments and config.cfg here-document run in a real shell here,
/// followed by a stand-in for 1.2's `php-manager-start` that reports what it was given.
#[tokio::test]
async fn the_embedded_default_gives_a_1_2_manager_its_address_and_keys() {
    use conpaas_core::cloud::DUMMY_MANAGER_IP;

    assert!(
        conpaas_core::bootstrap::DUMMY_CLOUD_SCRIPT
            .lines()
            .any(|line| line == format!("IP_PUBLIC={DUMMY_MANAGER_IP}")),
        "the built-in dummy cloud part does not set the dummy cloud's manager address"
    );
    let dir = tempfile::tempdir().unwrap();
    let loaded = data_dir(dir.path());
    let conf_dir = loaded.config.conf_dir.clone();
    let shipped = conf_dir.join("scripts/cloud/dummy");
    assert_eq!(
        std::fs::read_to_string(&shipped).unwrap(),
        conpaas_core::bootstrap::DUMMY_CLOUD_SCRIPT,
        "init did not install scripts/cloud/dummy"
    );
    let director = Director::open(&loaded).unwrap();
    let uid = user(&director, "carol", 5).await;
    let start = || StartRequest::new(uid, "php");
    let user_data = |service: &conpaas_core::model::Service| {
        let vmid = service.vmid.clone().unwrap();
        std::fs::read_to_string(conf_dir.join("dummy-cloud").join(format!("{vmid}.sh"))).unwrap()
    };
    let service = director.start_service(start()).await.unwrap();
    let script = user_data(&service);

    // The parts of the script that set variables and write config.cfg, with ROOT_DIR moved
    // into a temporary directory (the rest moves certificates and downloads the code).
    let root = tempfile::tempdir().unwrap();
    let pems = script.find("cat <<EOF > /tmp/cert.pem").unwrap();
    let config_start = script.find("cat <<EOF > $ROOT_DIR/config.cfg").unwrap();
    let config_end = config_start + script[config_start..].find("\nEOF\n").unwrap() + 5;
    let assignments: String = script[pems..config_start]
        .lines()
        .filter(|line| {
            line.split_once('=').is_some_and(|(name, _)| {
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
            })
        })
        .map(|line| {
            if line.starts_with("ROOT_DIR=") {
                format!("ROOT_DIR={}\n", root.path().display())
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    let probe = format!(
        "{cloud}\n{assignments}{config}\n\
         printf '%s\\n' \"-s $IP_PUBLIC\" \"$CPS_HOME\" \"$CERT_DIR\" > $ROOT_DIR/start-args\n",
        cloud = &script[..pems],
        config = &script[config_start..config_end],
    );
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(&probe)
        .status()
        .unwrap();
    assert!(status.success(), "{probe}");
    let args = std::fs::read_to_string(root.path().join("start-args")).unwrap();
    assert_eq!(
        args,
        format!(
            "-s {DUMMY_MANAGER_IP}\n{}/ConPaaS\n/etc/cpsmanager/certs\n",
            root.path().display()
        )
    );
    let config = std::fs::read_to_string(root.path().join("config.cfg")).unwrap();
    let mut section = String::new();
    let mut keys = std::collections::HashMap::new();
    for line in config.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, value)) = line.split_once(" = ") {
            keys.insert(format!("{section}.{key}"), value.trim().to_owned());
        }
    }
    // What the 1.2 manager programs refuse to start without (spec/manager-bootstrap.md §9.2).
    for key in [
        "manager.TYPE",
        "manager.BOOTSTRAP",
        "manager.LOG_FILE",
        "manager.CREDIT_URL",
        "manager.TERMINATE_URL",
        "manager.SERVICE_ID",
        "manager.MEMCACHE_ADDR",
        "iaas.DRIVER",
    ] {
        assert!(
            keys.get(key).is_some_and(|value| !value.is_empty()),
            "{key} missing or empty in\n{config}"
        );
    }
    assert_eq!(keys["manager.MY_IP"], DUMMY_MANAGER_IP);
    assert_eq!(keys["manager.SERVICE_ID"], service.sid.to_string());
    assert_eq!(keys["manager.MEMCACHE_ADDR"], "127.0.0.1:11211");

    // A CONF_DIR adopted from 1.2 has no scripts/cloud/dummy: the director supplies the part.
    std::fs::remove_file(&shipped).unwrap();
    let adopted = director.start_service(start()).await.unwrap();
    let script = user_data(&adopted);
    assert!(
        script.starts_with(conpaas_core::bootstrap::DUMMY_CLOUD_SCRIPT),
        "{script}"
    );
}

/// `[conpaas] VPN_BOOTSTRAP_NODES` reaches the manager's config.cfg as `IPOP_BOOTSTRAP_NODES`,
/// and Python's ConfigParser, read as the 1.2 managers read it (Python 2.7's `RawConfigParser`
/// rules: continuation lines joined with newlines, no blank lines inside values), finds every
/// node: the config.cfg here-document is written by a real shell, then parsed by `python3`.
#[tokio::test]
async fn vpn_bootstrap_nodes_reach_the_manager_config_as_python_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = data_dir(dir.path());
    // The seed document's layout: the key alone, the nodes indented on the next lines.
    let cfg = std::fs::read_to_string(&loaded.path).unwrap().replace(
        "[iaas]",
        "VPN_BASE_NETWORK = 172.16.0.0\nVPN_NETMASK = 255.240.0.0\nVPN_SERVICE_BITS = 5\n\
         VPN_BOOTSTRAP_NODES =\n    udp://192.168.35.2:40000\n\n    tcp://192.168.35.2:40000\n\
         \tudp://10.1.2.3:1\n\n[iaas]",
    );
    std::fs::write(&loaded.path, cfg).unwrap();
    let source = ConfigSource::resolve_with(
        None,
        Some(dir.path().join("data")),
        None,
        Path::new("/nonexistent"),
    );
    let loaded = config::load(&source).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let expected = [
        "udp://192.168.35.2:40000",
        "tcp://192.168.35.2:40000",
        "udp://10.1.2.3:1",
    ];
    let conf_dir = loaded.config.conf_dir.clone();
    let director = Director::open(&loaded).unwrap();
    let uid = user(&director, "vpn", 5).await;
    let service = director
        .start_service(StartRequest::new(uid, "php"))
        .await
        .unwrap();
    assert!(service.subnet.is_some(), "no VPN subnet: {service:?}");
    let vmid = service.vmid.clone().unwrap();
    let script =
        std::fs::read_to_string(conf_dir.join("dummy-cloud").join(format!("{vmid}.sh"))).unwrap();
    let config_start = script.find("cat <<EOF > $ROOT_DIR/config.cfg").unwrap();
    let config_end = config_start + script[config_start..].find("\nEOF\n").unwrap() + 5;
    let root = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ROOT_DIR={}\n{}",
            root.path().display(),
            &script[config_start..config_end]
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let config_path = root.path().join("config.cfg");
    let config_text = std::fs::read_to_string(&config_path).unwrap();
    assert!(
        config_text.contains(&format!(
            "\nIPOP_BOOTSTRAP_NODES = {}\n\t{}\n\t{}",
            expected[0], expected[1], expected[2]
        )),
        "{config_text}"
    );

    // Runs on Python 2.7 and 3: on 3, RawConfigParser is given 2.7's behaviour (duplicate keys
    // allowed, a blank line ends a value). The manager splits the value into stripped lines,
    // as 1.3's managers and agents do.
    let probe = r#"
import json, sys
try:
    import ConfigParser as configparser
    parser = configparser.RawConfigParser()
except ImportError:
    import configparser
    parser = configparser.RawConfigParser(strict=False, empty_lines_in_values=False)
parser.read(sys.argv[1])
value = parser.get("manager", "IPOP_BOOTSTRAP_NODES")
nodes = [line.strip() for line in value.split("\n") if line.strip()]
options = [name.lower() for name in parser.options("manager")]
print(json.dumps({"nodes": nodes, "options": options, "subnet": parser.get("manager", "IPOP_SUBNET")}))
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", probe])
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python3 could not read config.cfg: {}\n{config_text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(read["nodes"], serde_json::json!(expected), "{config_text}");
    assert_eq!(read["subnet"], service.subnet.clone().unwrap());
    // Upstream's newline-first value made the parser see bogus `udp` / `tcp` options.
    for option in read["options"].as_array().unwrap() {
        let option = option.as_str().unwrap();
        assert!(
            !option.starts_with("udp") && !option.starts_with("tcp"),
            "bogus option {option} in\n{config_text}"
        );
    }
}
