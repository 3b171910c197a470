//! cpscheck's cloud check against the fake OpenStack: the right configuration passes; a wrong
//! credential, a missing flavor, image or network is one error line naming what to fix.

use std::path::Path;

use conpaas_core::check::{self, CheckOptions, Status};
use conpaas_core::config::{self, ConfigSource};

use super::fake::{FakeConfig, FakeOpenStack};

fn config_with(dir: &Path, fake: &FakeOpenStack, keys: &str) -> ConfigSource {
    let text = format!(
        "[conpaas]\nCONF_DIR = {d}\nCERT_DIR = {d}/certs\n\n[iaas]\nDRIVER = openstack\n\
         AUTH_URL = {auth_url}\nPROJECT_NAME = conpaas\n{keys}\n\
         [director]\nDATABASE_URI = sqlite:///{d}/director.db\nDIRECTOR_URL = https://localhost:5555\n",
        d = dir.display(),
        auth_url = fake.auth_url(),
    );
    std::fs::write(dir.join("director.cfg"), text).unwrap();
    ConfigSource::resolve_with(
        Some(dir.join("director.cfg")),
        None,
        None,
        Path::new("/nonexistent"),
    )
}

async fn cloud_line(source: &ConfigSource) -> (Status, String) {
    let loaded = config::load(source).unwrap();
    let results: Vec<check::CheckResult> = check::run_checks(&loaded, &CheckOptions::recommended())
        .await
        .into_iter()
        .filter(|result| result.id == "cloud")
        .collect();
    assert_eq!(results.len(), 1, "{results:?}");
    (results[0].status, results[0].to_string())
}

#[tokio::test]
async fn cpscheck_explains_each_openstack_problem_in_one_line() {
    let fake = FakeOpenStack::start(FakeConfig::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let good = "USER = alice\nPASSWORD = secret-pw\nIMAGE_ID = ubuntu-24.04\nSIZE_ID = m1.small\nNETWORK_ID = private\n";
    let (status, line) = cloud_line(&config_with(dir.path(), &fake, good)).await;
    assert_eq!(status, Status::Ok, "{line}");

    for (keys, expected) in [
        (
            good.replace("secret-pw", "wrong-pw"),
            "refused an authenticated call: Unauthorized: Keystone at",
        ),
        (
            good.replace("m1.small", "m1.huge"),
            "SIZE_ID: flavor m1.huge does not exist",
        ),
        (
            good.replace("ubuntu-24.04", "debian-3.1"),
            "IMAGE_ID: image debian-3.1 does not exist",
        ),
        (
            good.replace("NETWORK_ID = private", "NETWORK_ID = dmz"),
            "NETWORK_ID: network dmz does not exist",
        ),
    ] {
        let (status, line) = cloud_line(&config_with(dir.path(), &fake, &keys)).await;
        assert_eq!(status, Status::Error, "{line}");
        assert!(
            line.starts_with("E: cloud iaas (openstack driver, "),
            "{line}"
        );
        assert!(line.contains(expected), "{expected}: {line}");
        assert!(!line.contains("wrong-pw"), "the password leaked: {line}");
        let first_line = line.lines().next().unwrap();
        assert!(first_line.contains(expected), "{line}");
    }
}
