//! The fake OpenStack against OpenStack's own SDK: `tests/support/openstacksdk_check.py` runs
//! openstacksdk and keystoneauth1 (from `CONPAAS_TEST_PYTHON`; scripts/test.sh installs them)
//! through version discovery, a password token, microversion negotiation, flavor, image and
//! network look-ups, a server created, shown, listed and deleted, a floating IP allocated,
//! attached and released, an application credential, and a wrong password refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::fake::{APP_CREDENTIAL_ID, FakeConfig, FakeOpenStack, IMAGE_ID, PRIVATE_NET};

/// The Python of the tests, checked to have openstacksdk; panics saying to run scripts/test.sh
/// when there is none (never a silent skip).
fn python() -> PathBuf {
    let python = std::env::var_os("CONPAAS_TEST_PYTHON").unwrap_or_else(|| {
        panic!(
            "CONPAAS_TEST_PYTHON is not set: the OpenStack fake is checked with openstacksdk; run \
             scripts/test.sh, which installs tests/support/requirements.txt into target/pyenv \
             and sets it"
        )
    });
    let python = PathBuf::from(python);
    let check = Command::new(&python)
        .args(["-c", "import openstack, keystoneauth1"])
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", python.display()));
    assert!(
        check.status.success(),
        "openstacksdk is not installed for {}: run scripts/test.sh (it installs \
         tests/support/requirements.txt)\n{}",
        python.display(),
        String::from_utf8_lossy(&check.stderr)
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstacksdk_works_against_the_fake() {
    let python = python();
    let fake = FakeOpenStack::start(FakeConfig::new()).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/openstacksdk_check.py");
    let base = fake.base();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(base)
            .arg(APP_CREDENTIAL_ID)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "openstacksdk failed:\n{stdout}\n{stderr}"
    );
    let seen: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|error| panic!("unreadable output ({error}):\n{stdout}\n{stderr}"));
    assert_eq!(seen["token_issued"], true, "{seen}");
    assert_eq!(seen["flavor_id"], "2", "{seen}");
    assert_eq!(seen["image_id"], IMAGE_ID, "{seen}");
    assert_eq!(seen["network_id"], PRIVATE_NET, "{seen}");
    assert_eq!(seen["public_external"], true, "{seen}");
    assert_eq!(seen["missing_flavor"], Value::Null, "{seen}");
    assert_eq!(seen["server_status"], "ACTIVE", "{seen}");
    assert_eq!(seen["server_name"], "sdk-check", "{seen}");
    assert_eq!(
        seen["server_metadata"]["conpaas_client_token"], "cps-sdk-s1",
        "{seen}"
    );
    assert_eq!(
        seen["server_addresses"]["private"][0], "10.0.0.10",
        "{seen}"
    );
    assert_eq!(
        seen["listed"],
        serde_json::json!([seen["server_id"]]),
        "{seen}"
    );
    assert_eq!(seen["floating_ip"], "172.24.4.100", "{seen}");
    assert_eq!(seen["floating_fixed"], "10.0.0.10", "{seen}");
    assert_eq!(seen["floating_port_is_servers"], true, "{seen}");
    assert_eq!(seen["floating_ips_left"], 0, "{seen}");
    assert_eq!(seen["deleted"], true, "{seen}");
    assert_eq!(seen["application_token_issued"], true, "{seen}");
    assert_eq!(
        seen["application_flavors"],
        serde_json::json!(["m1.large", "m1.small"]),
        "{seen}"
    );
    assert_eq!(seen["wrong_password"], "Unauthorized", "{seen}");

    // The server the SDK made, as the fake holds it: the boot script intact.
    let server = fake.server(seen["server_id"].as_str().unwrap()).unwrap();
    assert_eq!(
        server.user_data.as_deref(),
        Some(&b"#!/bin/sh\necho sdk\n"[..])
    );
    assert_eq!(server.status, "DELETED");
    // openstacksdk negotiated a microversion above 2.1 and the fake served it.
    let negotiated: Vec<String> = fake
        .seen()
        .into_iter()
        .filter(|seen| seen.path.starts_with("/compute/v2.1/servers"))
        .filter_map(|seen| seen.microversion)
        .collect();
    assert!(!negotiated.is_empty(), "openstacksdk sent no microversion");
    assert!(
        negotiated.iter().all(|version| version != "compute 2.1"),
        "{negotiated:?}"
    );
}
