//! Footprint of a real `director serve` process under password work: its RSS (`VmRSS` of its
//! pid) idle, during and 10 s after a burst of `/login`s, and the latency of `/getcerts` (warm
//! key pool) against `/login` (one argon2id verification). Figures: docs/performance.md.
//!
//! `cargo bench --profile dev --bench footprint -- [DIRECTOR_BINARY]` (default
//! `target/debug/director`; the dev profile builds the crypto crates at opt-level 3). Knobs:
//! `FOOTPRINT_LOGINS` (1000), `FOOTPRINT_CONCURRENCY` (32), `FOOTPRINT_PORT` (15655); the
//! director inherits the environment, so `MALLOC_ARENA_MAX=2 cargo bench ...` measures glibc
//! with fewer arenas.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

const USER: &str = "bench";
const PASSWORD: &str = "bench-password";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

/// `VmRSS` of `pid`, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn threads(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn run(director: &Path, args: &[&str]) {
    let status = Command::new(director)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{director:?} {args:?}: {status}");
}

struct Served {
    child: Child,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(ca_pem: &[u8]) -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(ca.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

async fn call(client: &reqwest::Client, base: &str, path: &str) -> (Duration, bool, usize) {
    let started = Instant::now();
    let answer = client
        .post(format!("{base}{path}"))
        .form(&[("username", USER), ("password", PASSWORD)])
        .send()
        .await;
    let (ok, n_bytes) = match answer {
        Ok(answer) => {
            let ok = answer.status().is_success();
            let body = answer.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            // A refused login is `false`.
            (ok && body.as_slice() != b"false", body.len())
        }
        Err(_) => (false, 0),
    };
    (started.elapsed(), ok, n_bytes)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let director = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with("--"))
        .map_or_else(|| PathBuf::from("target/debug/director"), PathBuf::from);
    let director = std::fs::canonicalize(&director).expect("the director binary");
    let n_logins = env_number("FOOTPRINT_LOGINS", 1000);
    let concurrency = env_number("FOOTPRINT_CONCURRENCY", 32);
    let port = env_number("FOOTPRINT_PORT", 15655);

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    run(&director, &["--data-dir", &data, "init", "localhost"]);
    run(
        &director,
        &[
            "--data-dir",
            &data,
            "adduser",
            "bench@example.org",
            USER,
            PASSWORD,
        ],
    );
    let listen = format!("127.0.0.1:{port}");
    let mut served = Served {
        child: Command::new(&director)
            .args(["--data-dir", &data, "serve", "--listen", &listen])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    };
    let pid = served.child.id();
    let base = format!("https://localhost:{port}");
    let ca_pem = std::fs::read(dir.path().join("certs/ca_cert.pem")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = client(&ca_pem);

    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(answer) = client
                .get(format!("{base}/available_services"))
                .send()
                .await
                && answer.status().is_success()
            {
                break;
            }
            assert!(
                served.child.try_wait().unwrap().is_none(),
                "the director exited"
            );
            assert!(Instant::now() < deadline, "the director did not answer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    // Let the key pool fill and the start settle.
    std::thread::sleep(Duration::from_secs(3));
    println!("director: {}", director.display());
    println!(
        "MALLOC_ARENA_MAX: {}",
        std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "unset".into())
    );
    let idle = rss_kib(pid);
    println!("idle: RSS {} threads {}", mib(idle), threads(pid));

    // Sequential latencies: /login (one argon2id verification) and /getcerts (a verification
    // and a certificate with a pooled key). Rounds of 8 with pauses so the pool refills.
    let (logins, getcerts) = runtime.block_on(async {
        let mut logins = Vec::new();
        let mut getcerts = Vec::new();
        for _ in 0..3 {
            for _ in 0..8 {
                let (took, ok, _) = call(&client, &base, "/login").await;
                assert!(ok, "login failed");
                logins.push(took);
            }
            for _ in 0..8 {
                let (took, ok, n_bytes) = call(&client, &base, "/getcerts").await;
                assert!(ok && n_bytes > 1000, "getcerts failed");
                getcerts.push(took);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        (logins, getcerts)
    });
    let mut logins = logins;
    let mut getcerts = getcerts;
    logins.sort();
    getcerts.sort();
    let (login_p50, getcerts_p50) = (percentile(&logins, 0.5), percentile(&getcerts, 0.5));
    println!(
        "sequential /login p50 {} (n={}); /getcerts p50 {} p90 {} (n={}); getcerts - login = {}",
        ms(login_p50),
        logins.len(),
        ms(getcerts_p50),
        ms(percentile(&getcerts, 0.9)),
        getcerts.len(),
        ms(getcerts_p50.saturating_sub(login_p50)),
    );
    let before_burst = rss_kib(pid);
    println!("before the burst: RSS {}", mib(before_burst));

    // The burst: `concurrency` keep-alive clients sharing `n_logins` logins, RSS sampled.
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (sampling, peak) = (sampling.clone(), peak.clone());
        std::thread::spawn(move || {
            let mut peak_threads = 0;
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                peak_threads = peak_threads.max(threads(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak_threads
        })
    };
    let started = Instant::now();
    let (mut latencies, n_refused) = runtime.block_on(async {
        let next = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let (client, base, next) = (client.clone(), base.clone(), next.clone());
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    let mut refused = 0u64;
                    while next.fetch_add(1, Ordering::Relaxed) < n_logins {
                        let (took, ok, _) = call(&client, &base, "/login").await;
                        if !ok {
                            refused += 1;
                        }
                        mine.push(took);
                    }
                    (mine, refused)
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut refused = 0;
        for worker in workers {
            let (mine, n) = worker.await.unwrap();
            all.extend(mine);
            refused += n;
        }
        (all, refused)
    });
    let elapsed = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let peak_threads = sampler.join().unwrap();
    latencies.sort();
    let after_burst = rss_kib(pid);
    println!(
        "burst: {n_logins} /login at c={concurrency}: {:.0}/s, p50 {} p99 {}, refused {n_refused}; \
         peak RSS {} ({} threads); right after {}",
        n_logins as f64 / elapsed.as_secs_f64(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        mib(peak.load(Ordering::Relaxed)),
        peak_threads,
        mib(after_burst),
    );
    std::thread::sleep(Duration::from_secs(10));
    let settled = rss_kib(pid);
    println!(
        "10 s after: RSS {} threads {} ({:.2}x idle)",
        mib(settled),
        threads(pid),
        settled as f64 / idle as f64
    );
    drop(served);
}
