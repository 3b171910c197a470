//! cpscheck's cloud check against the fake oned: the right credentials pass, a wrong password
//! and a missing template are one error line each, naming the key to fix.

use std::path::Path;

use conpaas_core::check::{self, CheckOptions, Status};
use conpaas_core::config::{self, ConfigSource};

use super::director::section;
use super::fake::{FakeConfig, FakeOne};

fn config(dir: &Path, iaas: &str) -> ConfigSource {
    let text = format!(
        "[conpaas]\nCONF_DIR = {d}\nCERT_DIR = {d}/certs\n\n[iaas]\n{iaas}\n\
         [director]\nDATABASE_URI = sqlite:///{d}/director.db\nDIRECTOR_URL = https://localhost:5555\n",
        d = dir.display(),
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
async fn a_wrong_credential_and_a_missing_template_are_one_line_each() {
    let fake = FakeOne::start(FakeConfig::new()).await;
    let dir = tempfile::tempdir().unwrap();

    let good = cloud_results(&config(dir.path(), &section(&fake, "TEMPLATE_ID = 7\n"))).await;
    assert_eq!(good.len(), 1, "{good:?}");
    assert_eq!(good[0].status, Status::Ok, "{}", good[0]);
    assert!(good[0].to_string().contains(&fake.url()), "{}", good[0]);

    let wrong =
        section(&fake, "TEMPLATE_ID = 7\n").replace("PASSWORD = opennebula", "PASSWORD = wr0ng");
    let bad = cloud_results(&config(dir.path(), &wrong)).await;
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].status, Status::Error, "{}", bad[0]);
    let line = bad[0].to_string();
    assert!(
        line.starts_with("E: cloud iaas (opennebula driver, http://127.0.0.1:"),
        "{line}"
    );
    assert!(line.contains("AUTHENTICATION"), "{line}");
    assert!(line.contains("PASSWORD"), "{line}");
    assert!(
        !line.contains("wr0ng"),
        "the password leaked into the report: {line}"
    );
    assert_eq!(line.lines().count(), 1, "one line: {line}");

    let missing = cloud_results(&config(dir.path(), &section(&fake, "TEMPLATE_ID = 8\n"))).await;
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(missing[0].status, Status::Error, "{}", missing[0]);
    let line = missing[0].to_string();
    assert!(
        line.contains("TEMPLATE_ID: template 8 does not exist"),
        "{line}"
    );
    assert!(line.contains("correct TEMPLATE_ID in [iaas]"), "{line}");
}
