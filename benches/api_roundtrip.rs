//! Round trips through the real HTTPS server (in-process, loopback, TLS): what one request of
//! each kind costs end to end, client included. Numbers go to docs/performance.md.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use conpaas_core::api::server::{Listener, TransportSettings};
use conpaas_core::ca::{CaSettings, CertificateAuthority, KeyAlgorithm};
use conpaas_core::config::{self, ConfigSource};
use conpaas_core::director::{Director, StartRequest, accounts, setup};
use conpaas_core::model::Credit;
use criterion::{Criterion, criterion_group, criterion_main};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{ExposeSecret, SecretString};

struct Bench {
    _dir: tempfile::TempDir,
    base: String,
    user: reqwest::Client,
    manager: reqwest::Client,
    anonymous: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

/// reqwest has no crypto provider of its own (the graph has aws-lc-rs only): each client takes a
/// rustls configuration trusting the CA, with `identity` (certificate and key PEM) if given.
fn client(ca_pem: &str, identity: Option<String>) -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let tls = match identity {
        Some(pem) => {
            let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap()
}

fn setup() -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let source = ConfigSource::resolve_with(
        None,
        Some(dir.path().join("d")),
        None,
        Path::new("/nonexistent"),
    );
    let loaded = config::load(&source).unwrap();
    let text = std::fs::read_to_string(&loaded.path)
        .unwrap()
        .replace("[iaas]", "KEY_ALGORITHM = ecdsa\n\n[iaas]");
    std::fs::write(&loaded.path, text).unwrap();
    let loaded = config::load(&source).unwrap();
    setup::init(&loaded, "localhost", false).unwrap();
    let director = Director::open(&loaded).unwrap();
    let cert_dir = loaded.config.ca.cert_dir.clone();
    let files = conpaas_core::ca::DirectorTlsFiles::read(&cert_dir).unwrap();
    let tls = conpaas_core::api::tls::server_config_from_files(&files).unwrap();
    let ca_pem = String::from_utf8(files.ca_cert_pem.clone()).unwrap();

    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let served = director.clone();
    std::thread::spawn(move || {
        server.block_on(async move {
            let listener = Listener::bind(
                "127.0.0.1:0".parse().unwrap(),
                tls,
                TransportSettings::recommended(),
            )
            .await
            .unwrap();
            port_tx.send(listener.local_addr().unwrap().port()).unwrap();
            listener
                .serve(conpaas_core::api::router(served), std::future::pending())
                .await;
        });
    });
    let port = port_rx.recv().unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (user_pem, manager_pem) = runtime.block_on(async {
        let account = accounts::NewAccount::new(
            "bench",
            "bench@example.org",
            "pw".to_owned().into(),
            Credit(1_000_000_000),
        );
        let user = accounts::add_user(director.store(), account).await.unwrap();
        let certs = director
            .user_certificates("bench", &SecretString::from("pw".to_owned()))
            .await
            .unwrap()
            .unwrap();
        let service = director
            .start_service(StartRequest::new(user.uid, "php"))
            .await
            .unwrap();
        let ca =
            CertificateAuthority::load(&CaSettings::new(cert_dir.clone(), KeyAlgorithm::EcdsaP256))
                .unwrap();
        let manager = ca.issue_manager_cert(user.uid, service.sid).unwrap();
        (
            format!("{}{}", certs.cert_pem, certs.key_pem.expose_secret()),
            format!(
                "{}{}",
                manager.cert_pem,
                manager.key_pem.unwrap().expose_secret()
            ),
        )
    });
    Bench {
        _dir: dir,
        base: format!("https://localhost:{port}"),
        user: client(&ca_pem, Some(user_pem)),
        manager: client(&ca_pem, Some(manager_pem)),
        anonymous: client(&ca_pem, None),
        runtime,
    }
}

fn roundtrips(c: &mut Criterion) {
    let bench = setup();
    let mut group = c.benchmark_group("api_roundtrip");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("available_services (keep-alive)", |b| {
        b.iter(|| {
            bench.runtime.block_on(async {
                let reply = bench
                    .anonymous
                    .get(format!("{}/available_services", bench.base))
                    .send()
                    .await
                    .unwrap();
                assert!(reply.status().is_success());
                reply.bytes().await.unwrap()
            })
        })
    });
    group.bench_function("list (user certificate, keep-alive)", |b| {
        b.iter(|| {
            bench.runtime.block_on(async {
                let reply = bench
                    .user
                    .post(format!("{}/list", bench.base))
                    .send()
                    .await
                    .unwrap();
                assert!(reply.status().is_success());
                reply.bytes().await.unwrap()
            })
        })
    });
    group.bench_function("decrement credit (manager, new TLS connection each)", |b| {
        b.iter(|| {
            bench.runtime.block_on(async {
                let reply = bench
                    .manager
                    .post(format!("{}/callback/decrementUserCredit.php", bench.base))
                    .form(&[("decrement", "1")])
                    .send()
                    .await
                    .unwrap();
                let body = reply.text().await.unwrap();
                assert!(body.contains("false"), "{body}");
            })
        })
    });
    group.sample_size(20);
    group.bench_function("login (argon2id)", |b| {
        b.iter(|| {
            bench.runtime.block_on(async {
                let reply = bench
                    .anonymous
                    .post(format!("{}/login", bench.base))
                    .form(&[("username", "bench"), ("password", "pw")])
                    .send()
                    .await
                    .unwrap();
                reply.bytes().await.unwrap()
            })
        })
    });
    group.finish();
}

/// The load harness: `CLIENTS` concurrent keep-alive clients send `/list` with their user
/// certificate for `LOAD_SECONDS`; prints requests per second and the process's peak memory
/// (criterion measures single requests; this measures what the server sustains).
fn load(_c: &mut Criterion) {
    const CLIENTS: usize = 32;
    const LOAD_SECONDS: u64 = 5;
    let bench = setup();
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (n_requests, n_errors) = load.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(LOAD_SECONDS);
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let client = bench.user.clone();
            let url = format!("{}/list", bench.base);
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut failed) = (0u64, 0u64);
                while tokio::time::Instant::now() < deadline {
                    match client.post(&url).send().await {
                        Ok(reply) if reply.status().is_success() => {
                            let _ = reply.bytes().await;
                            ok += 1;
                        }
                        _ => failed += 1,
                    }
                }
                (ok, failed)
            }));
        }
        let mut totals = (0u64, 0u64);
        for task in tasks {
            let (ok, failed) = task.await.unwrap();
            totals.0 += ok;
            totals.1 += failed;
        }
        totals
    });
    let peak_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_default();
    println!(
        "api_load/list: {CLIENTS} clients for {LOAD_SECONDS} s: {n_requests} requests \
         ({:.0}/s), {n_errors} errors; peak RSS of the process (server and clients) {peak_kib} KiB",
        n_requests as f64 / LOAD_SECONDS as f64
    );
    assert_eq!(n_errors, 0);
}

criterion_group!(benches, roundtrips, load);
criterion_main!(benches);
