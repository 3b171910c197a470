//! The director on OpenNebula over XML-RPC: a director.cfg section as docs/clouds.md shows it,
//! services started, listed and stopped, and the reaper deleting a VM whose row is gone.

use std::path::Path;
use std::time::Duration;

use conpaas_core::config::{self, ConfigSource, LoadedConfig};
use conpaas_core::director::{Director, StartRequest, accounts, setup};
use conpaas_core::model::{Credit, UserId};
use conpaas_core::store;

use super::fake::{FakeConfig, FakeOne};

/// An `opennebula` section with `API = xmlrpc` for `fake`, as docs/clouds.md shows it.
pub(super) fn section(fake: &FakeOne, vm: &str) -> String {
    format!(
        "DRIVER = opennebula\nAPI = xmlrpc\nXMLRPC = {}\nUSER = conpaas\nPASSWORD = opennebula\n{vm}",
        fake.url()
    )
}

fn open(dir: &Path, iaas: &str) -> (LoadedConfig, Director) {
    let text = format!(
        "[conpaas]\nCONF_DIR = {dir}\nCERT_DIR = {dir}/certs\nKEY_ALGORITHM = ecdsa\n\n[iaas]\n{iaas}\n\
         [director]\nDATABASE_URI = sqlite:///{dir}/director.db\nDIRECTOR_URL = https://localhost:5555\n",
        dir = dir.display()
    );
    std::fs::write(dir.join("director.cfg"), text).unwrap();
    let source = ConfigSource::resolve_with(
        Some(dir.join("director.cfg")),
        None,
        None,
        Path::new("/nonexistent"),
    );
    let loaded = config::load(&source).unwrap();
    assert!(
        loaded.warnings.is_empty(),
        "the documented section warns: {:?}",
        loaded.warnings
    );
    setup::init(&loaded, "localhost", false).unwrap();
    conpaas_core::bootstrap::install_default_templates(&loaded.config.conf_dir).unwrap();
    let director = Director::open(&loaded).unwrap();
    (loaded, director)
}

async fn user(director: &Director, credit: i64) -> UserId {
    let account = accounts::NewAccount::new(
        "alice",
        "alice@example.org",
        "pw".to_owned().into(),
        Credit(credit),
    );
    accounts::add_user(director.store(), account)
        .await
        .unwrap()
        .uid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_start_list_stop_and_the_reaper_deletes_a_rowless_vm() {
    let fake = FakeOne::start(FakeConfig::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let (_loaded, director) = open(dir.path(), &section(&fake, "TEMPLATE_ID = 7\n"));
    assert_eq!(director.available_clouds(), ["iaas"]);
    let uid = user(&director, 10).await;

    let service = director
        .start_service(StartRequest::new(uid, "php"))
        .await
        .unwrap();
    assert_eq!(service.cloud.as_deref(), Some("iaas"));
    let vmid = service.vmid.clone().unwrap();
    let vm = fake.vm(&vmid).expect("the service's VM is on the server");
    assert_eq!((vm.state, vm.lcm_state), (3, 3));
    assert_eq!(service.manager.as_deref(), Some(vm.ip.to_string().as_str()));
    assert!(
        vm.name
            .starts_with(&format!("conpaas-manager-php-u{uid}-s{}-cps-", service.sid)),
        "{}",
        vm.name
    );
    // The boot script the director rendered, delivered intact through one-context.
    let script = String::from_utf8(vm.script().unwrap()).unwrap();
    assert!(
        script.contains(&format!("SERVICE_ID = {}\n", service.sid)),
        "{script}"
    );
    assert!(script.contains("-----BEGIN PRIVATE KEY-----"));
    // The director is the manager's cloud: its section, not the operator's XML-RPC one.
    assert!(
        script.contains(&format!(
            "[iaas]\nDRIVER = opennebula\nURL = https://localhost:5555\nUSER = s{}@iaas\n",
            service.sid
        )),
        "{script}"
    );
    assert!(!script.contains("API = xmlrpc"), "{script}");
    assert_eq!(
        vm.user("CONPAAS_SERVICE"),
        Some(service.sid.to_string().as_str())
    );
    assert_eq!(
        vm.user("CONPAAS_CLIENT_TOKEN"),
        Some(director.client_token(service.sid).as_str())
    );

    // Listed: the service, and the VM by this installation's token prefix.
    let services = director.services(uid).await.unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].vmid.as_deref(), Some(vmid.as_str()));
    let registered = director.clouds().get("iaas").unwrap().cloud().clone();
    let listed = registered
        .list_nodes(&director.token_prefix())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].vmid, vmid);

    assert!(director.stop_service(uid, service.sid).await.unwrap());
    assert!(fake.vm(&vmid).unwrap().is_done());
    assert!(director.services(uid).await.unwrap().is_empty());

    // A VM whose row is gone: the reaper finds it by its token and terminates it.
    let lost = director
        .start_service(StartRequest::new(uid, "php"))
        .await
        .unwrap();
    let orphan = lost.vmid.clone().unwrap();
    director
        .store()
        .run(move |conn| store::delete_service(conn, lost.sid))
        .await
        .unwrap();
    let young = director.reap(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(young.reaped, Vec::<(String, String)>::new());
    assert!(!fake.vm(&orphan).unwrap().is_done());
    let report = director.reap(Duration::ZERO).await.unwrap();
    assert_eq!(report.reaped, vec![("iaas".to_owned(), orphan.clone())]);
    assert!(fake.vm(&orphan).unwrap().is_done());
    assert!(fake.live_vms().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allocate_section_starts_and_a_quota_refusal_leaves_no_row() {
    let fake = FakeOne::start(FakeConfig {
        max_vms: Some(1),
        ..FakeConfig::new()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (_loaded, director) = open(
        dir.path(),
        &section(
            &fake,
            "IMAGE_ID = 42\nNET_ID = 1\nCPU = 1\nMEMORY = 1024\nNET_GATEWAY = 192.168.0.1\n\
             NET_NETMASK = 255.255.255.0\nNET_NAMESERVER = 8.8.8.8\n",
        ),
    );
    let uid = user(&director, 10).await;
    let first = director
        .start_service(StartRequest::new(uid, "php"))
        .await
        .unwrap();
    let vm = fake.vm(first.vmid.as_deref().unwrap()).unwrap();
    assert_eq!(vm.context("IP_GATEWAY"), Some("192.168.0.1"));
    assert_eq!(fake.count("one.vm.allocate"), 1);
    let error = director
        .start_service(StartRequest::new(uid, "php"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("quota"), "{error}");
    assert_eq!(director.services(uid).await.unwrap().len(), 1);
    assert_eq!(fake.live_vms().len(), 1);
    assert_eq!(
        director.user(uid).await.unwrap().unwrap().credit,
        Credit(9),
        "the refused start is refunded"
    );
}
