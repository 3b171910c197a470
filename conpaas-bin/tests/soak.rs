//! Soak: many concurrent clients of mixed traffic against one real `director serve` (users
//! starting, listing and stopping services, fetching certificates; managers decrementing
//! credit), then the database and the dummy cloud checked for consistency and the director's
//! memory reported. 20 seconds and 200 clients by default (the test command runs it); the
//! long run of docs/reliability.md:
//!
//! ```sh
//! SOAK_SECONDS=300 SOAK_CLIENTS=200 cargo test --release -p conpaas-bin --test soak -- --nocapture
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod support;
use support::{client, client_from, director, here_document, rss_kib, serve, terminate, vm_files};

const USERS: usize = 10;
const CREDIT: i64 = 1_000_000;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A tiny deterministic generator per client (no dependency for a dice roll).
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    errors: AtomicU64,
    starts: AtomicU64,
    stops: AtomicU64,
    decrements: AtomicU64,
    getcerts: AtomicU64,
}

struct User {
    name: String,
    cert: String,
    key: String,
    /// Credit charged by answers the director gave (starts, decrements).
    charged: AtomicI64,
}

#[test]
fn mixed_traffic_leaves_a_consistent_director() {
    let seconds = env_number("SOAK_SECONDS", 20);
    let n_clients = env_number("SOAK_CLIENTS", 200) as usize;
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    director(&data, &["init", "localhost"]);
    let cfg = data.join("director.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            "[conpaas]\n",
            "[conpaas]\nVPN_BASE_NETWORK = 172.16.0.0\nVPN_NETMASK = 255.240.0.0\nVPN_SERVICE_BITS = 12\nKEY_ALGORITHM = ecdsa\n",
        ),
    )
    .unwrap();
    let credit = CREDIT.to_string();
    for index in 0..USERS {
        let name = format!("user{index}");
        director(
            &data,
            &[
                "adduser",
                &format!("{name}@example.org"),
                &name,
                "pw",
                "--credit",
                &credit,
            ],
        );
    }
    let (child, port) = serve(&data, "error", Stdio::null());
    let pid = child.id();
    let base = format!("https://localhost:{port}");
    let ca_pem = std::fs::read_to_string(data.join("certs/ca_cert.pem")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tally = Arc::new(Tally::default());
    let (rss_start, rss_peak, rss_end) = runtime.block_on(async {
        // Each user's certificate, through /getcerts as the clients get it.
        let anonymous = client(&ca_pem, None);
        let mut users = Vec::new();
        for index in 0..USERS {
            let name = format!("user{index}");
            let zip = anonymous
                .post(format!("{base}/getcerts"))
                .form(&[("username", name.as_str()), ("password", "pw")])
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip.to_vec())).unwrap();
            let mut member = |file: &str| {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut archive.by_name(file).unwrap(), &mut text)
                    .unwrap();
                text
            };
            let (cert, key) = (member("cert.pem"), member("key.pem"));
            users.push(Arc::new(User {
                name,
                cert,
                key,
                charged: AtomicI64::new(0),
            }));
        }
        let rss_start = rss_kib(pid);
        let rss_peak = Arc::new(AtomicU64::new(rss_start));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let sampler = {
            let rss_peak = rss_peak.clone();
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    rss_peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };
        let mut clients = Vec::new();
        for index in 0..n_clients {
            let user = users[index % USERS].clone();
            let (ca_pem, base, tally, data) =
                (ca_pem.clone(), base.clone(), tally.clone(), data.clone());
            clients.push(tokio::spawn(async move {
                run_client(index, &user, &ca_pem, &base, &data, &tally, deadline).await;
            }));
        }
        for handle in clients {
            handle.await.unwrap();
        }
        sampler.await.unwrap();
        let rss_end = rss_kib(pid);
        (rss_start, rss_peak.load(Ordering::Relaxed), rss_end)
    });
    // SIGTERM: requests in flight finish, then the checks read a quiet database.
    terminate(child);
    check_consistency(&data, &tally);
    eprintln!(
        "soak: {seconds} s, {n_clients} clients: {} requests ({} errors), {} starts, {} stops, \
         {} decrements, {} getcerts; director RSS {} MiB at start, {} MiB peak, {} MiB at end",
        tally.requests.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
        tally.starts.load(Ordering::Relaxed),
        tally.stops.load(Ordering::Relaxed),
        tally.decrements.load(Ordering::Relaxed),
        tally.getcerts.load(Ordering::Relaxed),
        rss_start / 1024,
        rss_peak / 1024,
        rss_end / 1024
    );
    assert_eq!(tally.errors.load(Ordering::Relaxed), 0, "requests failed");
    assert!(
        tally.starts.load(Ordering::Relaxed) > 0,
        "no start in the soak"
    );
}

async fn run_client(
    index: usize,
    user: &User,
    ca_pem: &str,
    base: &str,
    data: &Path,
    tally: &Tally,
    deadline: Instant,
) {
    // Each client from an address of its own, as users come from their own hosts (the
    // director serves at most 256 connections of one address).
    let source = std::net::Ipv4Addr::new(127, 0, 1, u8::try_from(index % 250).unwrap() + 1);
    let http = client_from(ca_pem, Some((&user.cert, &user.key)), source);
    let anonymous = client_from(ca_pem, None, source);
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1));
    let mut managers: BTreeMap<i64, reqwest::Client> = BTreeMap::new();
    let count = |ok: bool| {
        tally.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            tally.errors.fetch_add(1, Ordering::Relaxed);
        }
    };
    while Instant::now() < deadline {
        match dice.roll(100) {
            0..40 => {
                let reply = http.get(format!("{base}/list")).send().await;
                count(reply.is_ok_and(|reply| reply.status().is_success()));
            }
            40..60 => {
                let reply = http.post(format!("{base}/start/php")).send().await;
                let Ok(reply) = reply else {
                    count(false);
                    continue;
                };
                let body = reply.text().await.unwrap_or_default();
                let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let started = json["sid"].as_i64().zip(json["vmid"].as_str());
                count(started.is_some() || json["error"] == true);
                if let Some((sid, vmid)) = started {
                    user.charged.fetch_add(1, Ordering::Relaxed);
                    tally.starts.fetch_add(1, Ordering::Relaxed);
                    let script = vm_script(data, vmid);
                    if let (Some(cert), Some(key)) = (
                        here_document(&script, "cert.pem"),
                        here_document(&script, "key.pem"),
                    ) {
                        managers.insert(sid, client_from(ca_pem, Some((&cert, &key)), source));
                    }
                }
            }
            60..75 => {
                let Some(sid) = managers.keys().next().copied() else {
                    continue;
                };
                let reply = http.post(format!("{base}/stop/{sid}")).send().await;
                count(reply.is_ok_and(|reply| reply.status().is_success()));
                managers.remove(&sid);
                tally.stops.fetch_add(1, Ordering::Relaxed);
            }
            75..95 => {
                let Some((sid, manager)) = managers.iter().next() else {
                    continue;
                };
                let reply = manager
                    .post(format!("{base}/callback/decrementUserCredit.php"))
                    .form(&[("sid", sid.to_string()), ("decrement", "2".to_owned())])
                    .send()
                    .await;
                let Ok(reply) = reply else {
                    count(false);
                    continue;
                };
                // Flask's jsonify: an object with `error`, pretty-printed.
                let body: serde_json::Value = reply.json().await.unwrap_or_default();
                count(body["error"].is_boolean());
                if body["error"] == false {
                    user.charged.fetch_add(2, Ordering::Relaxed);
                    tally.decrements.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {
                // A password check and a new key: the heaviest call; a few only.
                if dice.roll(4) != 0 {
                    continue;
                }
                let reply = anonymous
                    .post(format!("{base}/getcerts"))
                    .form(&[("username", user.name.as_str()), ("password", "pw")])
                    .send()
                    .await;
                count(reply.is_ok_and(|reply| reply.status().is_success()));
                tally.getcerts.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    CHARGED
        .lock()
        .unwrap()
        .entry(user.name.clone())
        .or_insert_with(|| Arc::new(AtomicI64::new(0)))
        .fetch_add(user.charged.swap(0, Ordering::Relaxed), Ordering::Relaxed);
}

/// Credit charged per user by the answers every client saw.
static CHARGED: std::sync::LazyLock<std::sync::Mutex<BTreeMap<String, Arc<AtomicI64>>>> =
    std::sync::LazyLock::new(Default::default);

fn vm_script(data: &Path, vmid: &str) -> String {
    let path: PathBuf = data.join("dummy-cloud").join(format!("{vmid}.sh"));
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Every row with its VM, every VM with its row, no subnet twice in an application, and each
/// user's credit what the answers charged.
fn check_consistency(data: &Path, tally: &Tally) {
    use conpaas_core::store::{self, DatabaseUrl, Store, StoreSettings};
    let store = Store::connect(
        &StoreSettings::new(DatabaseUrl::Sqlite(data.join("director.db"))).max_connections(1),
    )
    .unwrap();
    let rows = store.run_blocking(store::list_all_services).unwrap();
    let row_vms: BTreeSet<String> = rows.iter().filter_map(|row| row.vmid.clone()).collect();
    let files = vm_files(data);
    assert!(
        rows.iter().all(|row| row.vmid.is_some()),
        "rows without a VM after the soak"
    );
    assert_eq!(row_vms, files, "rows' VMs and the cloud's VMs differ");
    let mut subnets = BTreeSet::new();
    for row in &rows {
        let subnet = row.subnet.clone().expect("a VPN subnet");
        assert!(
            subnets.insert((row.application_id.0, subnet.clone())),
            "subnet {subnet} twice"
        );
    }
    let charged = CHARGED.lock().unwrap();
    let mut total = 0;
    for index in 0..USERS {
        let name = format!("user{index}");
        let user = store
            .run_blocking(|conn| store::find_user_by_username(conn, &name))
            .unwrap()
            .unwrap();
        let expected = charged
            .get(&name)
            .map_or(0, |charged| charged.load(Ordering::Relaxed));
        assert_eq!(CREDIT - user.credit.0, expected, "credit of {name}");
        total += expected;
    }
    assert!(
        total >= i64::try_from(tally.starts.load(Ordering::Relaxed)).unwrap(),
        "charged {total}"
    );
}
