//! The director on OpenNebula: services started and stopped through director.cfg's
//! `DRIVER = opennebula` clouds (one or two fake OCCI servers, or the dummy cloud beside one).

use std::path::Path;

use conpaas_core::config::{self, ConfigSource, LoadedConfig};
use conpaas_core::director::{Director, StartRequest, accounts, setup};
use conpaas_core::model::{Credit, UserId};

use super::fake::{FakeConfig, FakeOcci, Faults};

/// An `opennebula` cloud section for `fake` (its driver keys only).
fn section(fake: &FakeOcci) -> String {
    format!(
        "DRIVER = opennebula\nURL = {}\nUSER = oneadmin\nPASSWORD = opennebula\nIMAGE_ID = 42\n\
         INST_TYPE = small\nNET_ID = 1\nNET_GATEWAY = 192.168.0.1\nNET_NETMASK = 255.255.255.0\n\
         NET_NAMESERVER = 8.8.8.8\nOS_ARCH = x86_64\nOS_ROOT = hda\nDISK_TARGET = hda\n\
         CONTEXT_TARGET = hdc\n",
        fake.url()
    )
}

/// A director whose `[iaas]` is `iaas` and, when given, whose `OTHER_CLOUDS = one2` is `one2`.
fn open(dir: &Path, iaas: &str, one2: Option<&str>) -> (LoadedConfig, Director) {
    let mut text = format!(
        "[conpaas]\nCONF_DIR = {dir}\nCERT_DIR = {dir}/certs\nKEY_ALGORITHM = ecdsa\n\n[iaas]\n{iaas}",
        dir = dir.display()
    );
    if let Some(one2) = one2 {
        text.push_str(&format!("OTHER_CLOUDS = one2\n\n[one2]\n{one2}"));
    }
    text.push_str(&format!(
        "\n[director]\nDATABASE_URI = sqlite:///{}/director.db\nDIRECTOR_URL = https://localhost:5555\n",
        dir.display()
    ));
    std::fs::write(dir.join("director.cfg"), text).unwrap();
    let source = ConfigSource::resolve_with(
        Some(dir.join("director.cfg")),
        None,
        None,
        Path::new("/nonexistent"),
    );
    let loaded = config::load(&source).unwrap();
    setup::init(&loaded, "localhost", false).unwrap();
    // A real cloud gets no default templates from init (it needs ConPaaS's own tree).
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

fn start(uid: UserId, cloud: &str) -> StartRequest {
    StartRequest::new(uid, "php").cloud(cloud)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_runs_on_one_vm_and_stop_deletes_it() {
    let fake = FakeOcci::start(FakeConfig::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let (_loaded, director) = open(dir.path(), &section(&fake), None);
    assert_eq!(director.available_clouds(), ["iaas"]);
    assert_eq!(director.client_cloud_names(), ["default"]);
    let uid = user(&director, 5).await;

    let service = director.start_service(start(uid, "default")).await.unwrap();
    assert_eq!(service.cloud.as_deref(), Some("iaas"));
    let vmid = service.vmid.clone().unwrap();
    let vm = fake.vm(&vmid).expect("the service's VM is on the server");
    assert_eq!(vm.state, "ACTIVE");
    assert_eq!(fake.live_vms().len(), 1);
    assert_eq!(service.manager.as_deref(), Some(vm.ip.to_string().as_str()));
    assert!(
        vm.name
            .starts_with(&format!("conpaas-manager-php-u{uid}-s{}-cps-", service.sid)),
        "{}",
        vm.name
    );
    // The boot script the director rendered, delivered intact.
    let script = String::from_utf8(vm.user_data.clone().unwrap()).unwrap();
    assert!(
        script.contains(&format!("SERVICE_ID = {}\n", service.sid)),
        "{script}"
    );
    assert!(script.contains("-----BEGIN CERTIFICATE-----"));
    assert!(script.contains("-----BEGIN PRIVATE KEY-----"));
    // The director is the manager's cloud: its own section, with the service's key.
    assert!(
        script.contains(&format!(
            "DRIVER = opennebula\nURL = https://localhost:5555\nUSER = s{}@iaas\n",
            service.sid
        )),
        "{script}"
    );
    assert_eq!(
        vm.context("CONPAAS_SERVICE"),
        Some(service.sid.to_string().as_str())
    );
    assert_eq!(director.user(uid).await.unwrap().unwrap().credit, Credit(4));

    assert!(director.stop_service(uid, service.sid).await.unwrap());
    assert_eq!(fake.vm(&vmid).unwrap().state, "DONE");
    assert_eq!(fake.count("DELETE", &format!("/compute/{vmid}")), 1);
    assert!(director.services(uid).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_create_leaves_no_service_row() {
    // The server knows no image 42: OpenNebula 3.8 answers the create 500 with oned's message.
    let fake = FakeOcci::start(FakeConfig {
        images: vec![7],
        ..FakeConfig::new()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (_loaded, director) = open(dir.path(), &section(&fake), None);
    let uid = user(&director, 5).await;
    let error = director
        .start_service(start(uid, "default"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("unknown image 42"), "{error}");
    assert!(director.services(uid).await.unwrap().is_empty());
    assert_eq!(
        director.user(uid).await.unwrap().unwrap().credit,
        Credit(5),
        "refunded"
    );
    assert!(fake.vms().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_failing_at_boot_leaves_neither_vm_nor_row() {
    let fake = FakeOcci::start(FakeConfig::new()).await;
    fake.set_faults(Faults {
        fail_after_reads: Some(0),
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let (_loaded, director) = open(dir.path(), &section(&fake), None);
    let uid = user(&director, 5).await;
    let error = director
        .start_service(start(uid, "default"))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("failed while booting"),
        "{error}"
    );
    assert_eq!(fake.vms().len(), 1);
    assert!(fake.live_vms().is_empty(), "the failed VM was deleted");
    assert!(director.services(uid).await.unwrap().is_empty());
    assert_eq!(director.user(uid).await.unwrap().unwrap().credit, Credit(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_opennebula_clouds_each_get_their_own_vms_and_stops() {
    let first = FakeOcci::start(FakeConfig::new()).await;
    let second = FakeOcci::start(FakeConfig {
        networks: vec![(1, std::net::Ipv4Addr::new(10, 1, 0, 10))],
        ..FakeConfig::new()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (_loaded, director) = open(dir.path(), &section(&first), Some(&section(&second)));
    assert_eq!(director.available_clouds(), ["iaas", "one2"]);
    assert_eq!(director.client_cloud_names(), ["default", "one2"]);
    let uid = user(&director, 5).await;

    let on_default = director.start_service(start(uid, "default")).await.unwrap();
    let on_one2 = director.start_service(start(uid, "one2")).await.unwrap();
    assert_eq!(
        on_default.application_id, on_one2.application_id,
        "one application"
    );
    assert_eq!(on_default.cloud.as_deref(), Some("iaas"));
    assert_eq!(on_one2.cloud.as_deref(), Some("one2"));
    assert_eq!(first.live_vms().len(), 1);
    assert_eq!(second.live_vms().len(), 1);
    assert_eq!(on_default.manager, Some(first.live_vms()[0].ip.to_string()));
    assert_eq!(on_one2.manager, Some(second.live_vms()[0].ip.to_string()));
    assert!(on_one2.manager.as_deref().unwrap().starts_with("10.1.0."));

    // Each stop goes to the cloud that holds the VM.
    assert!(director.stop_service(uid, on_one2.sid).await.unwrap());
    assert_eq!(second.count_method("DELETE"), 1);
    assert_eq!(first.count_method("DELETE"), 0);
    assert!(second.live_vms().is_empty());
    assert_eq!(first.live_vms().len(), 1);

    assert!(director.stop_service(uid, on_default.sid).await.unwrap());
    assert_eq!(first.count_method("DELETE"), 1);
    assert_eq!(second.count_method("DELETE"), 1);
    assert!(first.live_vms().is_empty());
    assert!(director.services(uid).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dummy_cloud_and_opennebula_side_by_side() {
    let fake = FakeOcci::start(FakeConfig::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let (_loaded, director) = open(dir.path(), "DRIVER = dummy\n", Some(&section(&fake)));
    let uid = user(&director, 5).await;

    let on_dummy = director.start_service(start(uid, "default")).await.unwrap();
    let on_one2 = director.start_service(start(uid, "one2")).await.unwrap();
    assert_eq!(on_dummy.manager.as_deref(), Some("127.0.0.3"));
    assert_eq!(
        fake.live_vms().len(),
        1,
        "only the one2 service is on OpenNebula"
    );
    assert_eq!(on_one2.vmid, Some(fake.live_vms()[0].id.to_string()));

    assert!(director.stop_service(uid, on_dummy.sid).await.unwrap());
    assert_eq!(fake.count_method("DELETE"), 0);
    assert!(director.stop_service(uid, on_one2.sid).await.unwrap());
    assert_eq!(fake.count_method("DELETE"), 1);
    assert!(fake.live_vms().is_empty());
}
