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
    let account = accounts::NewAccount {
        username: name.into(),
        email: format!("{name}@example.org"),
        fname: None,
        lname: None,
        affiliation: None,
        password: "pw".to_owned().into(),
        credit: Credit(credit),
    };
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
    let start = |cloud: &str| StartRequest {
        uid,
        service_type: "php".into(),
        cloud: cloud.into(),
        appid: None,
    };
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
    let request = StartRequest {
        uid,
        service_type: "php".into(),
        cloud: "default".into(),
        appid: None,
    };
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
    let new = NewService {
        user_id: uid,
        application_id: app,
        service_type: ServiceType::Php,
    };
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
    let request = StartRequest {
        uid,
        service_type: "php".into(),
        cloud: "default".into(),
        appid: None,
    };
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
