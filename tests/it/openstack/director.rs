//! The director on OpenStack: services started, listed, stopped and reaped through a
//! director.cfg `DRIVER = openstack` section written as docs/clouds.md shows it.

use std::path::Path;
use std::time::Duration;

use conpaas_core::config::{self, ConfigSource, LoadedConfig};
use conpaas_core::director::{Director, StartRequest, accounts, setup};
use conpaas_core::model::{Credit, UserId};
use conpaas_core::store;

use super::fake::{APP_CREDENTIAL_ID, FakeConfig, FakeOpenStack, Faults};

/// The password section of docs/clouds.md, pointed at the fake.
fn password_section(fake: &FakeOpenStack) -> String {
    format!(
        "DRIVER = openstack\nAUTH_URL = {}\nUSER = alice\nPASSWORD = secret-pw\n\
         PROJECT_NAME = conpaas\nUSER_DOMAIN_NAME = Default\nPROJECT_DOMAIN_NAME = Default\n\
         REGION_NAME = RegionOne\nIMAGE_ID = ubuntu-24.04\nSIZE_ID = m1.small\n\
         NETWORK_ID = private\nSECURITY_GROUP_NAME = managers\nKEY_NAME = conpaas\n\
         FLOATING_IP_POOL = public\nBOOT_TIMEOUT = 60\n",
        fake.auth_url()
    )
}

/// The application-credential section of docs/clouds.md, pointed at the fake.
fn application_section(fake: &FakeOpenStack) -> String {
    format!(
        "DRIVER = openstack\nAUTH_URL = {}\nAPPLICATION_CREDENTIAL_ID = {APP_CREDENTIAL_ID}\n\
         APPLICATION_CREDENTIAL_SECRET = app-secret\nIMAGE_ID = ubuntu-24.04\nSIZE_ID = m1.small\n",
        fake.base() + "/identity"
    )
}

fn open(dir: &Path, iaas: &str, other: Option<&str>) -> (LoadedConfig, Director) {
    let mut text = format!(
        "[conpaas]\nCONF_DIR = {dir}\nCERT_DIR = {dir}/certs\nKEY_ALGORITHM = ecdsa\n\n[iaas]\n{iaas}",
        dir = dir.display()
    );
    if let Some(other) = other {
        text.push_str(&format!("OTHER_CLOUDS = os2\n\n[os2]\n{other}"));
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
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
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
async fn services_start_list_stop_and_the_reaper_reaps_on_openstack() {
    let fake = FakeOpenStack::start(FakeConfig::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let (_loaded, director) = open(dir.path(), &password_section(&fake), None);
    assert_eq!(director.client_cloud_names(), ["default"]);
    let uid = user(&director, 10).await;

    let service = director
        .start_service(StartRequest::new(uid, "php").cloud("default"))
        .await
        .unwrap();
    let vmid = service.vmid.clone().unwrap();
    let server = fake
        .server(&vmid)
        .expect("the service's server is on the cloud");
    assert_eq!(server.status, "ACTIVE");
    assert!(
        server
            .name
            .starts_with(&format!("conpaas-manager-php-u{uid}-s{}-cps-", service.sid)),
        "{}",
        server.name
    );
    // The floating IP is the manager's address; the boot script is the director's.
    let floating = fake.floating_ips();
    assert_eq!(floating.len(), 1);
    assert_eq!(service.manager, Some(floating[0].address.to_string()));
    let script = String::from_utf8(server.user_data.clone().unwrap()).unwrap();
    assert!(
        script.contains(&format!("SERVICE_ID = {}\n", service.sid)),
        "{script}"
    );
    assert!(script.contains("-----BEGIN PRIVATE KEY-----"));
    // The director is the manager's cloud: no OpenStack credential reaches the manager.
    assert!(!script.contains("DRIVER = openstack"), "{script}");
    assert!(
        script.contains(&format!("USER = s{}@iaas\n", service.sid)),
        "{script}"
    );
    assert_eq!(
        server.metadata.get("ConPaaS-Service").map(String::as_str),
        Some(service.sid.to_string().as_str())
    );
    assert_eq!(director.services(uid).await.unwrap().len(), 1);
    assert_eq!(director.user(uid).await.unwrap().unwrap().credit, Credit(9));

    // A second service whose row is then lost: the reaper finds and deletes its server and
    // releases its floating IP; the first service's server is left alone.
    let lost = director
        .start_service(StartRequest::new(uid, "php"))
        .await
        .unwrap();
    let lost_vm = lost.vmid.clone().unwrap();
    assert_eq!(fake.floating_ips().len(), 2);
    director
        .store()
        .run(move |conn| store::delete_service(conn, lost.sid))
        .await
        .unwrap();
    fake.add_server("web-frontend", &[]);
    let report = director.reap(Duration::ZERO).await.unwrap();
    assert_eq!(report.listed, 2, "{report:?}");
    assert_eq!(report.reaped, vec![("iaas".to_owned(), lost_vm.clone())]);
    assert_eq!(fake.server(&lost_vm).unwrap().status, "DELETED");
    assert_eq!(fake.server(&vmid).unwrap().status, "ACTIVE");
    assert_eq!(
        fake.floating_ips().len(),
        1,
        "the reaped server's floating IP was released"
    );
    assert_eq!(fake.live_servers().len(), 2, "ours and someone else's");

    assert!(director.stop_service(uid, service.sid).await.unwrap());
    assert_eq!(fake.server(&vmid).unwrap().status, "DELETED");
    assert!(fake.floating_ips().is_empty());
    assert!(director.services(uid).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_credential_cloud_beside_a_password_one() {
    let first = FakeOpenStack::start(FakeConfig::new()).await;
    let second = FakeOpenStack::start(FakeConfig::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let (_loaded, director) = open(
        dir.path(),
        &password_section(&first),
        Some(&application_section(&second)),
    );
    assert_eq!(director.client_cloud_names(), ["default", "os2"]);
    let uid = user(&director, 10).await;
    let on_os2 = director
        .start_service(StartRequest::new(uid, "php").cloud("os2"))
        .await
        .unwrap();
    assert_eq!(on_os2.cloud.as_deref(), Some("os2"));
    assert_eq!(second.live_servers().len(), 1);
    assert!(first.live_servers().is_empty());
    // No pool on os2: the fixed address is the manager's.
    assert_eq!(
        on_os2.manager,
        Some(second.live_servers()[0].fixed_ip.to_string())
    );
    assert!(director.stop_service(uid, on_os2.sid).await.unwrap());
    assert!(second.live_servers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_failed_start_leaves_no_server_row_or_address() {
    let fake = FakeOpenStack::start(FakeConfig {
        max_servers: 1,
        ..FakeConfig::new()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (_loaded, director) = open(dir.path(), &password_section(&fake), None);
    let uid = user(&director, 10).await;
    fake.set_faults(Faults {
        fail_after_reads: Some(1),
        ..Faults::default()
    });
    let error = director
        .start_service(StartRequest::new(uid, "php"))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("failed while booting"),
        "{error}"
    );
    assert!(fake.live_servers().is_empty());
    assert!(fake.floating_ips().is_empty());
    fake.set_faults(Faults::default());
    fake.add_server("web-frontend", &[]);
    let error = director
        .start_service(StartRequest::new(uid, "php"))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("Quota exceeded for instances"),
        "{error}"
    );
    assert!(director.services(uid).await.unwrap().is_empty());
    assert_eq!(
        director.user(uid).await.unwrap().unwrap().credit,
        Credit(10),
        "refunded"
    );
    assert_eq!(fake.live_servers().len(), 1, "only someone else's");
}
