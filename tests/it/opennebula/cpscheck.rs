//! cpscheck's cloud check against the fake OCCI server: the right password passes, a wrong one
//! is an error line naming the cloud and what to fix.

use std::path::Path;

use conpaas_core::check::{self, CheckOptions, Status};
use conpaas_core::config::{self, ConfigSource};

use super::fake::{FakeConfig, FakeOcci};

fn config_with_password(dir: &Path, fake: &FakeOcci, password: &str) -> ConfigSource {
    let text = format!(
        "[conpaas]\nCONF_DIR = {d}\nCERT_DIR = {d}/certs\n\n[iaas]\nDRIVER = opennebula\nURL = {url}\n\
         USER = oneadmin\nPASSWORD = {password}\nIMAGE_ID = 42\nINST_TYPE = small\nNET_ID = 1\n\
         NET_GATEWAY = 192.168.0.1\nNET_NETMASK = 255.255.255.0\nNET_NAMESERVER = 8.8.8.8\n\
         OS_ARCH = x86_64\nOS_ROOT = hda\nDISK_TARGET = hda\nCONTEXT_TARGET = hdc\n\n\
         [director]\nDATABASE_URI = sqlite:///{d}/director.db\nDIRECTOR_URL = https://localhost:5555\n",
        d = dir.display(),
        url = fake.url(),
    );
    std::fs::write(dir.join("director.cfg"), text).unwrap();
    ConfigSource::resolve_with(
        Some(dir.join("director.cfg")),
        None,
        None,
        Path::new("/nonexistent"),
    )
}

async fn cloud_results(source: &ConfigSource) -> Vec<check::CheckResult> {
    let loaded = config::load(source).unwrap();
    let options = CheckOptions::recommended();
    check::run_checks(&loaded, &options)
        .await
        .into_iter()
        .filter(|result| result.id == "cloud")
        .collect()
}

#[tokio::test]
async fn cloud_credentials_are_checked() {
    let fake = FakeOcci::start(FakeConfig::new()).await;
    let dir = tempfile::tempdir().unwrap();

    let good = cloud_results(&config_with_password(dir.path(), &fake, "opennebula")).await;
    assert_eq!(good.len(), 1, "{good:?}");
    assert_eq!(good[0].status, Status::Ok, "{}", good[0]);

    let bad = cloud_results(&config_with_password(dir.path(), &fake, "wrong")).await;
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].status, Status::Error, "{}", bad[0]);
    let line = bad[0].to_string();
    assert!(line.starts_with("E: cloud iaas"), "{line}");
    assert!(line.contains("Unauthorized"), "{line}");
    assert!(line.contains("PASSWORD"), "{line}");
    assert!(
        !line.contains("wrong"),
        "the password leaked into the report: {line}"
    );
}
