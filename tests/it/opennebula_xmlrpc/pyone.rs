//! The fake oned checked against OpenNebula's own client and schemas: pyone (its bindings
//! generated from OpenNebula's XSD files) drives it through `tests/support/pyone_check.py`, and
//! every VM and pool document it served to the driver — in every state a create, a boot, a
//! listing and a terminate go through — is validated against `vm.xsd` / `vm_pool.xsd` of
//! OpenNebula 7.2.0 (`tests/support/opennebula-xsd/`).

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use conpaas_core::cloud::{
    Cloud, NodeRequest, OpenNebulaTuning, OpenNebulaVm, OpenNebulaXmlRpcCloud,
};

use super::driver::settings;
use super::fake::{FakeConfig, FakeOne};

fn python() -> PathBuf {
    let python = std::env::var_os("CONPAAS_TEST_PYTHON").unwrap_or_else(|| {
        panic!(
            "CONPAAS_TEST_PYTHON is not set: this test needs pyone and xmlschema; run \
             scripts/test.sh, which installs tests/support/requirements.txt into target/pyenv \
             and sets it"
        )
    });
    PathBuf::from(python)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyone_reads_the_fake_and_its_documents_follow_opennebulas_schemas() {
    let fake = FakeOne::start(FakeConfig {
        reads_until_running: 4,
        ..FakeConfig::new()
    })
    .await;
    // The driver's run: PENDING, PROLOG, BOOT, RUNNING, a listing, DONE.
    let tuning = OpenNebulaTuning::standard()
        .poll_interval(Duration::from_millis(10))
        .max_attempts(NonZeroU32::new(3).unwrap());
    let cloud = OpenNebulaXmlRpcCloud::with_tuning(
        "iaas",
        &settings(&fake, "opennebula", OpenNebulaVm::Template(7)),
        tuning,
    )
    .unwrap();
    let request = NodeRequest::new(
        "conpaas-manager-php-u1-s5",
        "#!/bin/sh\n",
        "cps-1a2b3c4d-s5",
    )
    .tag("ConPaaS-Service", "5");
    let node = cloud.create_node(request).await.unwrap();
    assert_eq!(cloud.list_nodes("cps-1a2b3c4d-s").await.unwrap().len(), 1);
    cloud.kill_node(&node.vmid).await.unwrap();
    cloud.node_state(&node.vmid).await.unwrap();
    let served = fake.served_documents();
    assert!(served.len() >= 6, "{served:?}");
    let docs = tempfile::tempdir().unwrap();
    for (index, document) in served.iter().enumerate() {
        std::fs::write(docs.path().join(format!("driver-{index:02}.xml")), document).unwrap();
    }

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = python();
    let url = fake.url();
    let xsd = root.join("tests/support/opennebula-xsd");
    let script = root.join("tests/support/pyone_check.py");
    let docs_path = docs.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(script)
            .args([url.as_str(), "conpaas", "opennebula"])
            .arg(xsd)
            .arg(docs_path)
            .output()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", python.display()))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pyone_check.py failed (are pyone and xmlschema installed? scripts/test.sh installs \
         tests/support/requirements.txt)\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("vm.info: pyone-check 3/3 192.168.0."),
        "{stdout}"
    );
    assert!(
        stdout.contains("wrong password: OneAuthenticationException"),
        "{stdout}"
    );
    assert!(
        stdout.contains("missing template: OneNoExistsException"),
        "{stdout}"
    );
    let counts = stdout
        .lines()
        .find(|line| line.starts_with("schemas: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let vm_documents = served.iter().filter(|doc| doc.starts_with("<VM>")).count() + 1;
    assert!(
        counts.starts_with(&format!("schemas: {vm_documents} VM and ")),
        "{counts} (served {served:?})"
    );
    assert_eq!(stdout.lines().last(), Some("ok"), "{stdout}");
}
