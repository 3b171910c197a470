//! What one certificate costs the director: a user's (`/getcerts`, RSA and ECDSA keys) and an
//! agent's (`/ca/get_cert.php`, signing a manager's RSA CSR), under an RSA-2048 CA.
//!
//! Run with `cargo bench --bench ca_issue`; numbers are in docs/certificates.md.

// A bench that cannot set up has nothing to measure: panicking is the report. And
// `criterion_group!` generates an undocumented `pub fn`.
#![allow(clippy::unwrap_used, missing_docs)]

use conpaas_core::ca::{CaSettings, CertificateAuthority, IfExists, KeyAlgorithm};
use conpaas_core::model::{ServiceId, UserId};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_RSA_SHA256};

/// A CA in a fresh temporary directory (kept alive by the returned guard).
fn ca(key_algorithm: KeyAlgorithm) -> (tempfile::TempDir, CertificateAuthority) {
    let dir = tempfile::tempdir().unwrap();
    let settings = CaSettings::new(dir.path().to_owned(), key_algorithm);
    let ca = CertificateAuthority::create(&settings, IfExists::Fail).unwrap();
    (dir, ca)
}

/// What a manager sends: an RSA-2048 CSR for an agent.
fn agent_csr() -> String {
    let key = KeyPair::generate_for(&PKCS_RSA_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "ConPaaS");
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn issue(c: &mut Criterion) {
    let mut group = c.benchmark_group("ca_issue");
    group.throughput(Throughput::Elements(1));

    // The key type of the issued certificate varies; the CA stays RSA (the default).
    let (_rsa_dir, rsa_ca) = ca(KeyAlgorithm::Rsa2048);
    group.bench_function("user_cert_rsa2048", |b| {
        b.iter(|| {
            rsa_ca
                .issue_user_cert(UserId(7), "alice", "alice@example.org")
                .unwrap()
        })
    });

    let (ecdsa_dir, _) = ca(KeyAlgorithm::Rsa2048);
    let ecdsa_settings = CaSettings::new(ecdsa_dir.path().to_owned(), KeyAlgorithm::EcdsaP256);
    let rsa_ca_ecdsa_leaves = CertificateAuthority::load(&ecdsa_settings).unwrap();
    group.bench_function("user_cert_ecdsa_p256", |b| {
        b.iter(|| {
            rsa_ca_ecdsa_leaves
                .issue_user_cert(UserId(7), "alice", "alice@example.org")
                .unwrap()
        })
    });

    let csr = agent_csr();
    group.bench_function("sign_agent_csr_rsa2048", |b| {
        b.iter(|| {
            rsa_ca
                .sign_agent_csr(csr.as_bytes(), UserId(7), ServiceId(101))
                .unwrap()
        })
    });

    group.finish();
}

criterion_group!(benches, issue);
criterion_main!(benches);
