//! Replays `fuzz/corpus/<target>/*` through the fuzz harness (`fuzz/src/lib.rs`, included
//! below), so every seed and every saved crash reproducer runs in CI on stable, without
//! cargo-fuzz.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/lib.rs"]
mod harness;

/// A harness function: panics on an input that breaks its target's invariant.
type Harness = fn(&[u8]);

/// Every fuzz target and its harness function.
const TARGETS: [(&str, Harness); 5] = [
    ("config", harness::config),
    ("csr", harness::csr),
    ("cert_identity", harness::cert_identity),
    ("params", harness::params),
    ("vpn_plan", harness::vpn_plan),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted, without hidden ones (libFuzzer's scratch files).
fn files(dir: &Path) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .filter(|path| !path.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    files
}

/// Runs every corpus file of `target`; a panic names the file.
fn replay(target: &str) {
    let (_, run) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no harness for {target}"));
    let seeds = files(&fuzz_dir().join("corpus").join(target));
    assert!(!seeds.is_empty(), "fuzz/corpus/{target} is empty");
    let failed: Vec<String> = seeds
        .iter()
        .filter(|seed| {
            let data = fs::read(seed).unwrap();
            catch_unwind(AssertUnwindSafe(|| run(&data))).is_err()
        })
        .map(|seed| seed.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: inputs that panic: {failed:#?}"
    );
}

#[test]
fn every_fuzz_target_is_replayed() {
    let mut targets: Vec<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .map(|file| file.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    targets.sort();
    let mut known: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    known.sort_unstable();
    assert_eq!(targets, known, "fuzz/fuzz_targets and TARGETS differ");
}

#[test]
fn config_corpus() {
    replay("config");
}

#[test]
fn csr_corpus() {
    replay("csr");
}

#[test]
fn cert_identity_corpus() {
    replay("cert_identity");
}

#[test]
fn params_corpus() {
    replay("params");
}

#[test]
fn vpn_plan_corpus() {
    replay("vpn_plan");
}

/// The seeds reach the paths they were made for, not only the refusals.
#[test]
fn seeds_reach_their_success_paths() {
    use conpaas_core::ca::{CertIdentity, VerifiedCsr};

    let seed = |target: &str, name: &str| {
        fs::read(fuzz_dir().join("corpus").join(target).join(name)).unwrap()
    };
    let config =
        |name: &str| conpaas_core::config::parse_bytes(Path::new(name), &seed("config", name));
    for accepted in ["multicloud-accepted", "vpn-and-ours"] {
        if let Err(error) = config(accepted) {
            panic!("{accepted}: {error}");
        }
    }
    // 1.2's example has every DRIVER commented out, and its multicloud example host names as
    // gateways and a cloud without a section: errors now (docs/config.md).
    for refused in [
        "director-cfg-example-1.2",
        "director-cfg-multicloud-1.2",
        "refused-values",
        "not-utf8",
    ] {
        assert!(config(refused).is_err(), "{refused}");
    }

    let csr = |name: &str| VerifiedCsr::parse(&seed("csr", name));
    let agent = csr("agent-rsa2048-sha1.pem").unwrap();
    assert_eq!(agent.requested_identity().uid.as_deref(), Some("3"));
    assert_eq!(agent.requested_identity().role.as_deref(), Some("agent"));
    for accepted in ["rsa2048-sha256.pem", "ecdsa-p256.pem", "new-label.pem"] {
        assert!(csr(accepted).is_ok(), "{accepted}");
    }
    for refused in ["rsa1024-refused.pem", "bad-signature.pem"] {
        assert!(csr(refused).is_err(), "{refused}");
    }

    let identity = |name: &str| CertIdentity::parse(&seed("cert_identity", name)).unwrap();
    let user = identity("user-v1-sha1.pem");
    assert_eq!(
        (
            user.uid.as_deref(),
            user.service_locator.as_deref(),
            user.role.as_deref()
        ),
        (Some("7"), Some("0"), Some("user"))
    );
    let manager = identity("manager-v3-sha256.der");
    assert_eq!(
        (
            manager.uid.as_deref(),
            manager.service_locator.as_deref(),
            manager.role.as_deref()
        ),
        (Some("3"), Some("101"), Some("manager"))
    );
    // A repeated UID names nobody (1.2's director took the first, the VMs the last).
    assert!(matches!(
        CertIdentity::parse(&seed("cert_identity", "repeated-uid.pem")),
        Err(conpaas_core::ca::Error::RepeatedAttribute { attribute: "UID" })
    ));
    assert_eq!(
        identity("frontend-v3.pem").role.as_deref(),
        Some("frontend")
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let params = |name: &str| {
        let data = seed("params", name);
        let mut parts = data.splitn(3, |byte| *byte == 0);
        let query = String::from_utf8(parts.next().unwrap().to_vec()).unwrap();
        let content_type = String::from_utf8(parts.next().unwrap().to_vec()).unwrap();
        let body = parts.next().unwrap().to_vec();
        runtime.block_on(conpaas_core::api::params::Params::parse(
            Some(&query),
            Some(&content_type),
            body.into(),
        ))
    };
    let manager_call = params("manager-multipart-csr").unwrap();
    assert_eq!(manager_call.get("sid"), Some("101"));
    assert!(VerifiedCsr::parse(manager_call.file("csr").unwrap()).is_ok());
    let frontend_call = params("php-frontend-multipart").unwrap();
    assert_eq!(frontend_call.get("thread"), Some("1"));
    let escapes = params("query-wins-and-escapes").unwrap();
    assert_eq!(
        (
            escapes.get("username"),
            escapes.get("a"),
            escapes.get("name")
        ),
        (Some("q"), Some(" b c"), Some("New é"))
    );
    assert!(params("not-utf8-refused").is_err());
    assert!(params("multipart-without-boundary").is_err());
}
