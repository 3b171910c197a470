//! Issue 12: several real `director serve` processes on one PostgreSQL database, set up as
//! docs/operations.md ("Scale-out") says: the same director.cfg and CERT_DIR (CA key
//! included) on every replica, only the listen port differs. Credit charged through both
//! replicas loses nothing; concurrent starts through both never share a VPN subnet; a replica
//! killed mid-start is cleaned up by the other; maintenance runs on one replica at a time; and
//! PostgreSQL ending the director's connections mid-traffic gives the documented error answers,
//! after which the pool recovers without a restart.
//!
//! The replicas share one data directory, which gives them one director.cfg, one CERT_DIR and
//! one dummy cloud (its VMs are files there, so each replica sees the other's VMs, as replicas
//! on one cloud account do).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conpaas_core::store::{self, DatabaseUrl, Store, StoreSettings};
use diesel::{Connection as _, RunQueryDsl as _};
use serde_json::{Value, json};

mod support;
use support::{Database, admin, client, director, here_document, vm_files};

/// One installation on PostgreSQL: `director init`, then director.cfg pointed at the database.
struct Installation {
    // Dropped after the replicas (declared in the tests after it), before the database.
    _temp: tempfile::TempDir,
    data: PathBuf,
    pg: Database,
    ca: String,
}

impl Installation {
    /// `conpaas` and `director` are more lines for those sections of director.cfg.
    fn new(test: &str, conpaas: &str, director_lines: &str) -> Installation {
        let temp = tempfile::tempdir().unwrap();
        let data = temp.path().join("data");
        director(&data, &["init", "localhost"]);
        let pg = Database::create(&format!("replicas_{test}"));
        let config = data.join("director.cfg");
        let text: String = std::fs::read_to_string(&config)
            .unwrap()
            .lines()
            .map(|line| match line.trim() {
                "[conpaas]" => format!("[conpaas]\n{conpaas}"),
                "[director]" => format!("[director]\n{director_lines}"),
                _ if line.trim_start().starts_with("DATABASE_URI") => {
                    format!("DATABASE_URI = {}\n", pg.url())
                }
                _ => format!("{line}\n"),
            })
            .collect();
        std::fs::write(&config, text).unwrap();
        // Nothing may go on in the SQLite file `init` made.
        std::fs::remove_file(data.join("director.db")).unwrap();
        let ca = std::fs::read_to_string(data.join("certs/ca_cert.pem")).unwrap();
        Installation {
            _temp: temp,
            data,
            pg,
            ca,
        }
    }

    fn add_user(&self, name: &str, credit: i64) {
        let email = format!("{name}@example.org");
        let credit = credit.to_string();
        director(
            &self.data,
            &["adduser", &email, name, "pw", "--credit", &credit],
        );
    }

    fn serve(&self, name: &'static str, rust_log: &str) -> Replica {
        Replica::start(&self.data, name, rust_log)
    }

    /// `name`'s certificate and key (fetched with `/getcerts` from `base`).
    async fn user_identity(&self, base: &str, name: &str) -> (String, String) {
        let zip = client(&self.ca, None)
            .post(format!("{base}/getcerts"))
            .form(&[("username", name), ("password", "pw")])
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        let mut member = |member: &str| {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut archive.by_name(member).unwrap(), &mut text)
                .unwrap();
            text
        };
        (member("cert.pem"), member("key.pem"))
    }

    /// A client holding `name`'s certificate (fetched with `/getcerts` from `base`).
    async fn user(&self, base: &str, name: &str) -> reqwest::Client {
        let (cert, key) = self.user_identity(base, name).await;
        client(&self.ca, Some((&cert, &key)))
    }

    /// A client holding the manager certificate of the dummy VM `vmid` (from its user-data,
    /// as a manager VM gets it).
    fn manager(&self, vmid: &str) -> reqwest::Client {
        let path = self.data.join("dummy-cloud").join(format!("{vmid}.sh"));
        let script = std::fs::read_to_string(&path).unwrap();
        let cert = here_document(&script, "cert.pem").unwrap();
        let key = here_document(&script, "key.pem").unwrap();
        client(&self.ca, Some((&cert, &key)))
    }

    /// The database, read directly (not through a director).
    fn store(&self) -> Store {
        Store::connect(&StoreSettings::new(DatabaseUrl::Postgres(self.pg.url())).max_connections(2))
            .unwrap()
    }

    /// The rows (sid, vmid) and `user`'s credit.
    fn database(&self, user: &str) -> (Vec<(i32, Option<String>)>, i64) {
        let store = self.store();
        let rows = store.run_blocking(store::list_all_services).unwrap();
        let user = user.to_owned();
        let credit = store
            .run_blocking(move |conn| store::find_user_by_username(conn, &user))
            .unwrap()
            .unwrap()
            .credit
            .0;
        (
            rows.into_iter().map(|row| (row.sid.0, row.vmid)).collect(),
            credit,
        )
    }

    /// Waits until every row has its VM, every VM its row, and `user`'s credit is `credit`
    /// less one per row; answers the number of rows.
    fn wait_consistent(&self, user: &str, credit: i64, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let (rows, left) = self.database(user);
            let row_vms: BTreeSet<String> =
                rows.iter().filter_map(|(_, vmid)| vmid.clone()).collect();
            let files = vm_files(&self.data);
            let incomplete = rows.iter().filter(|(_, vmid)| vmid.is_none()).count();
            if incomplete == 0 && row_vms == files && credit - left == rows.len() as i64 {
                return rows.len();
            }
            assert!(
                Instant::now() < deadline,
                "{incomplete} row(s) without a VM, rows' VMs {row_vms:?} vs VM files {files:?}, \
                 credit {left} of {credit} for {} row(s)",
                rows.len()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// One `director serve --log-format json` of an installation, its log collected.
struct Replica {
    name: &'static str,
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Replica {
    fn start(data: &Path, name: &'static str, rust_log: &str) -> Replica {
        let mut child = Command::new(env!("CARGO_BIN_EXE_director"))
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .env_remove("DIRECTOR_CFG")
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let reader = {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push(line);
                }
            })
        };
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let port = first
            .trim()
            .strip_prefix("listening on https://127.0.0.1:")
            .unwrap_or_else(|| panic!("{name}: first line {first:?}: {:#?}", log.lock().unwrap()))
            .parse()
            .unwrap();
        Replica {
            name,
            child,
            port,
            log,
            reader: Some(reader),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// SIGKILL: no shutdown, no cleanup, as when a machine dies.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for the exit and the end of the log.
    fn stop(&mut self) -> Vec<String> {
        let status = Command::new("kill")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "{}: {exit:?}", self.name);
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.log()
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// No panic in any replica's log.
fn assert_no_panic(replicas: &[&Replica]) {
    for replica in replicas {
        for line in replica.log() {
            assert!(!line.contains("panicked"), "{}: {line}", replica.name);
        }
    }
}

/// An answer as the tests judge it.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    async fn of(request: reqwest::RequestBuilder) -> Result<Answer, String> {
        let response = request.send().await.map_err(|error| format!("{error:?}"))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response
            .text()
            .await
            .map_err(|error| format!("{error:?}"))?;
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {self:?}"))
    }
}

const MANAGERS: usize = 8;
const DECREMENTS: usize = 1000;

/// 8 managers charge one user 1,000 times in all, each call through one replica or the other:
/// not one charge lost or applied twice, and the credit ends exactly at zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_charged_through_two_replicas_is_exact() {
    let install = Installation::new("credit", "KEY_ALGORITHM = ecdsa\n", "");
    // One credit per start, then exactly the decrements.
    install.add_user("alice", (MANAGERS + DECREMENTS) as i64);
    let replicas = [install.serve("a", "warn"), install.serve("b", "warn")];
    let user = install.user(&replicas[0].url(""), "alice").await;
    let mut started = Vec::new();
    for n in 0..MANAGERS {
        let answer = Answer::of(user.post(replicas[n % 2].url("/start/php")))
            .await
            .unwrap();
        let service = answer.json();
        let (Some(sid), Some(vmid)) = (service["sid"].as_i64(), service["vmid"].as_str()) else {
            panic!("start {n}: {answer:?}");
        };
        started.push((sid, install.manager(vmid)));
    }
    assert_eq!(install.database("alice").1, DECREMENTS as i64);

    let urls: Arc<[String; 2]> = Arc::new([
        replicas[0].url("/callback/decrementUserCredit.php"),
        replicas[1].url("/callback/decrementUserCredit.php"),
    ]);
    let t0 = Instant::now();
    let mut managers = tokio::task::JoinSet::new();
    for (n, (sid, manager)) in started.iter().cloned().enumerate() {
        let urls = urls.clone();
        managers.spawn(async move {
            let sid = sid.to_string();
            for k in 0..DECREMENTS / MANAGERS {
                let url = &urls[(n + k) % 2];
                let answer = Answer::of(
                    manager
                        .post(url)
                        .form(&[("sid", sid.as_str()), ("decrement", "1")]),
                )
                .await
                .unwrap();
                assert_eq!(
                    (answer.status, answer.json()),
                    (200, json!({"error": false})),
                    "manager of s{sid}, charge {k} through {url}"
                );
            }
        });
    }
    while let Some(done) = managers.join_next().await {
        done.unwrap();
    }
    eprintln!(
        "{DECREMENTS} charges through 2 replicas in {:?}",
        t0.elapsed()
    );
    assert_eq!(install.database("alice").1, 0, "credit after the charges");
    // Nothing left: one more charge is refused, through either replica, and changes nothing.
    for url in urls.iter() {
        let answer = Answer::of(
            started[0]
                .1
                .post(url)
                .form(&[("sid", started[0].0.to_string()), ("decrement", "1".into())]),
        )
        .await
        .unwrap();
        assert_eq!(answer.json(), json!({"error": true}), "{url}");
    }
    assert_eq!(install.database("alice").1, 0);
    assert_no_panic(&[&replicas[0], &replicas[1]]);
}

/// 50 concurrent starts in one application with a VPN of 32 subnets, through both replicas:
/// 32 services on 32 distinct subnets (the whole plan), 18 clear exhaustion errors, no 500,
/// and the 18 refunded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_starts_through_two_replicas_never_share_a_subnet() {
    const STARTS: usize = 50;
    // A /12 cut into 2^5 subnets of /17 (docs/vpn.md).
    let install = Installation::new(
        "subnets",
        "KEY_ALGORITHM = ecdsa\nVPN_BASE_NETWORK = 172.16.0.0\nVPN_NETMASK = 255.240.0.0\n\
         VPN_SERVICE_BITS = 5\n",
        "",
    );
    install.add_user("bob", STARTS as i64);
    let replicas = [install.serve("a", "warn"), install.serve("b", "warn")];
    let user = install.user(&replicas[0].url(""), "bob").await;
    let mut starts = tokio::task::JoinSet::new();
    for n in 0..STARTS {
        let request = user.post(replicas[n % 2].url("/start/php"));
        starts.spawn(Answer::of(request));
    }
    let mut subnets = Vec::new();
    let mut exhausted = 0;
    while let Some(answer) = starts.join_next().await {
        let answer = answer.unwrap().unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(
            answer.content_type.starts_with("application/json"),
            "{answer:?}"
        );
        let value = answer.json();
        if let Some(subnet) = value["subnet"].as_str() {
            subnets.push(subnet.to_owned());
        } else {
            assert_eq!(
                value,
                json!({
                    "error": true,
                    "msg": "Error upon service creation: no VPN subnet left in this application (32 of 32 in use)"
                }),
                "{answer:?}"
            );
            exhausted += 1;
        }
    }
    let distinct: BTreeSet<&String> = subnets.iter().collect();
    assert_eq!(
        distinct.len(),
        subnets.len(),
        "a subnet given twice: {subnets:?}"
    );
    let plan: BTreeSet<String> = (0..32)
        .map(|n| format!("172.{}.{}.0/17", 16 + n / 2, (n % 2) * 128))
        .collect();
    let given: BTreeSet<String> = subnets.iter().cloned().collect();
    assert_eq!(given, plan, "the 32 subnets of the plan");
    assert_eq!(exhausted, STARTS - 32);
    // Refused starts are refunded; every service has its VM.
    assert_eq!(
        install.wait_consistent("bob", STARTS as i64, Duration::ZERO),
        32
    );
    assert_no_panic(&[&replicas[0], &replicas[1]]);
}

/// One replica SIGKILLed in the middle of concurrent starts through both: the survivor's
/// maintenance undoes what the dead one left (rows without their VM, VMs without their row),
/// so that afterwards no VM is without its row, no row without its VM, and the credit charged
/// equals the services left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_during_starts_is_cleaned_up_by_the_other() {
    const CREDIT: i64 = 100;
    // RSA keys (the default) make a start take long enough to be caught halfway. Short grace
    // periods, so that the survivor cleans up within seconds.
    let install = Installation::new(
        "crash",
        "",
        "MAINTENANCE_INTERVAL = 1\nRECONCILE_GRACE = 2\nREAP_GRACE = 1\n",
    );
    install.add_user("carol", CREDIT);
    let mut doomed = install.serve("doomed", "warn");
    let survivor = install.serve("survivor", "info");
    let user = install.user(&survivor.url(""), "carol").await;
    let mut to_doomed = tokio::task::JoinSet::new();
    let mut to_survivor = tokio::task::JoinSet::new();
    for n in 0..30 {
        if n % 3 == 2 {
            to_survivor.spawn(Answer::of(user.post(survivor.url("/start/php"))));
        } else {
            to_doomed.spawn(Answer::of(user.post(doomed.url("/start/php"))));
        }
    }
    // Killed once some starts are complete and others are not.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (rows, _) = install.database("carol");
        let complete = rows.iter().filter(|(_, vmid)| vmid.is_some()).count();
        if (complete >= 4 && rows.len() > complete) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    doomed.kill();
    // The dead replica's clients see their connections fail; the survivor's get answers.
    while to_doomed.join_next().await.is_some() {}
    while let Some(answer) = to_survivor.join_next().await {
        let answer = answer.unwrap().unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        let value = answer.json();
        assert!(
            value.get("sid").is_some() || value == json!(false) || value["error"] == json!(true),
            "{answer:?}"
        );
        assert!(!answer.body.contains("internal error"), "{answer:?}");
    }
    // What is still incomplete now is the dead replica's: the survivor's starts all answered.
    let (rows, _) = install.database("carol");
    let left_behind = rows.iter().filter(|(_, vmid)| vmid.is_none()).count();
    eprintln!(
        "after the kill: {} row(s), {left_behind} without a VM, {} VM file(s)",
        rows.len(),
        vm_files(&install.data).len()
    );
    assert!(
        !rows.is_empty(),
        "no start had begun when the replica was killed"
    );

    let n_left = install.wait_consistent("carol", CREDIT, Duration::from_secs(30));
    assert!(n_left <= 30);
    if left_behind > 0 {
        let log = survivor.log();
        assert!(
            log.iter()
                .any(|line| line.contains("settled an unfinished service start or stop")),
            "the survivor did not reconcile: {log:#?}"
        );
    }
    // The survivor serves on, and new starts work.
    let ready = Answer::of(client(&install.ca, None).get(survivor.url("/readyz")))
        .await
        .unwrap();
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    let answer = Answer::of(user.post(survivor.url("/start/php")))
        .await
        .unwrap();
    assert!(answer.json().get("sid").is_some(), "{answer:?}");
    assert_no_panic(&[&survivor]);
}

/// A JSON log line: its time in microseconds since the epoch and its message.
fn event(line: &str) -> Option<(i64, String)> {
    let value: Value = serde_json::from_str(line).ok()?;
    let message = value["fields"]["message"].as_str()?.to_owned();
    Some((epoch_micros(value["timestamp"].as_str()?)?, message))
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (tracing-subscriber's UTC timestamps) in microseconds.
fn epoch_micros(text: &str) -> Option<i64> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let mut date = date.split('-').map(|part| part.parse::<i64>());
    let (year, month, day) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms = hms.split(':').map(|part| part.parse::<i64>());
    let (hour, minute, second) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
    let micros: i64 = format!("{fraction:0<6}")[..6].parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((((days * 24 + hour) * 60 + minute) * 60 + second) * 1_000_000 + micros)
}

/// One replica's maintenance passes (start and end, µs) and the times it skipped one.
fn passes(log: &[String]) -> (Vec<(i64, i64)>, Vec<i64>) {
    let (mut passes, mut skipped) = (Vec::new(), Vec::new());
    let mut open = None;
    for (at, message) in log.iter().filter_map(|line| event(line)) {
        if message == "maintenance pass: took the lease" {
            assert!(open.is_none(), "a pass began inside another: {log:#?}");
            open = Some(at);
        } else if message.starts_with("maintenance pass done") {
            passes.push((open.take().expect("a pass ended that never began"), at));
        } else if message.starts_with("maintenance pass skipped") {
            skipped.push(at);
        }
    }
    (passes, skipped)
}

/// Two replicas running maintenance every second: their passes never overlap. While one pass
/// is held up (the test locks the `service` table for 4 s), the other replica skips its
/// passes instead of running beside it, and takes over afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_runs_on_one_replica_at_a_time() {
    let install = Installation::new(
        "lease",
        "KEY_ALGORITHM = ecdsa\n",
        "MAINTENANCE_INTERVAL = 1\n",
    );
    install.add_user("dave", 10);
    let rust_log = "warn,conpaas_core::director::maintenance=debug";
    let mut replicas = [install.serve("a", rust_log), install.serve("b", rust_log)];
    tokio::time::sleep(Duration::from_secs(3)).await;
    let url = install.pg.url();
    tokio::task::spawn_blocking(move || {
        use diesel::connection::SimpleConnection as _;
        let mut conn = diesel::PgConnection::establish(&url).unwrap();
        conn.batch_execute("BEGIN; LOCK TABLE service IN ACCESS EXCLUSIVE MODE")
            .unwrap();
        std::thread::sleep(Duration::from_secs(4));
        conn.batch_execute("COMMIT").unwrap();
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let logs = [replicas[0].stop(), replicas[1].stop()];
    let (a, b) = (passes(&logs[0]), passes(&logs[1]));
    eprintln!(
        "a: {} pass(es), {} skipped; b: {} pass(es), {} skipped",
        a.0.len(),
        a.1.len(),
        b.0.len(),
        b.1.len()
    );
    let mut all: Vec<(i64, i64, &str)> =
        a.0.iter()
            .map(|&(start, end)| (start, end, "a"))
            .chain(b.0.iter().map(|&(start, end)| (start, end, "b")))
            .collect();
    all.sort();
    for pair in all.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "two passes at once: {pair:?}\na: {:#?}\nb: {:#?}",
            logs[0],
            logs[1]
        );
    }
    assert!(all.len() >= 6, "too few passes in 10 s: {all:?}");
    // The pass the lock held up, and the other replica's skips meanwhile.
    let (start, end, holder) = *all
        .iter()
        .max_by_key(|(start, end, _)| end - start)
        .unwrap();
    assert!(end - start >= 3_000_000, "no pass was held up: {all:?}");
    let others_skips = if holder == "a" { &b.1 } else { &a.1 };
    let skipped_meanwhile = others_skips
        .iter()
        .filter(|&&at| start < at && at < end)
        .count();
    assert!(
        skipped_meanwhile >= 2,
        "the other replica skipped {skipped_meanwhile} pass(es) while {holder} held the lease"
    );
    // Afterwards passes go on (on either replica).
    assert!(all.iter().any(|&(later, _, _)| later > end), "{all:?}");
}

/// What the fault test's clients saw.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: AtomicUsize,
    /// The failures, by route and status.
    failures: Mutex<std::collections::BTreeMap<(&'static str, u16), usize>>,
}

/// Whether `answer` to `route` is a success, or else the documented answer to an internal
/// failure (spec/director-api.md, docs/api.md): a generic 500 page, or the route's error object
/// saying only "internal error, see the director's log". Anything else fails the test.
fn judge(route: &str, answer: &Answer) -> bool {
    for internal in [
        "postgres",
        "diesel",
        "terminat",
        "connection",
        "sql",
        "panic",
        "backend",
    ] {
        assert!(
            !answer.body.to_ascii_lowercase().contains(internal),
            "{route}: internals in {answer:?}"
        );
    }
    if answer.status == 500 {
        assert!(
            answer.content_type.starts_with("text/html"),
            "{route}: {answer:?}"
        );
        return false;
    }
    assert_eq!(answer.status, 200, "{route}: {answer:?}");
    let value = answer.json();
    match route {
        "/login" => {
            assert_eq!(value["username"], "erin", "{route}: {answer:?}");
            true
        }
        "/listapp" => {
            assert!(value.is_array(), "{route}: {answer:?}");
            true
        }
        "/start/php" => {
            if value.get("sid").is_some() {
                return true;
            }
            assert_eq!(
                value,
                json!({"error": true, "msg": "Error upon service creation: internal error, see the director's log"}),
                "{route}: {answer:?}"
            );
            false
        }
        _ => unreachable!("{route}"),
    }
}

/// PostgreSQL ends every connection of the director's database again and again for 3 s
/// (`pg_terminate_backend`, as a restart or a failover does) while clients log in, list and
/// start services: every answer is a success or the documented failure answer, never a panic
/// or internals; afterwards the same process answers again by itself, and no half-done start
/// is left once maintenance has run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_ending_the_connections_gives_clean_errors_and_the_pool_recovers() {
    const CREDIT: i64 = 1000;
    let install = Installation::new(
        "fault",
        "KEY_ALGORITHM = ecdsa\n",
        // Starts are not limited here: a fast machine makes over 100 in the fault window.
        "MAINTENANCE_INTERVAL = 1\nRECONCILE_GRACE = 1\nREAP_GRACE = 1\nMAX_SERVICES_PER_USER = 100000\n",
    );
    install.add_user("erin", CREDIT);
    let mut replica = install.serve("a", "warn");
    let user = install.user(&replica.url(""), "erin").await;
    let anonymous = client(&install.ca, None);
    let first = Answer::of(user.post(replica.url("/start/php")))
        .await
        .unwrap()
        .json();
    let manager = install.manager(first["vmid"].as_str().unwrap());
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    // A manager charging (nothing) all along: a 1.2 manager ends its service on any answer but
    // `{"error": false}`, so the database's fault must never reach it (docs/operations.md,
    // "Credit when the database fails").
    let manager_told = Arc::new(Mutex::new(Vec::new()));
    {
        let (stop, manager_told) = (stop.clone(), manager_told.clone());
        let url = replica.url("/callback/decrementUserCredit.php");
        clients.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let answer = Answer::of(manager.post(&url).form(&[("decrement", "0")]))
                    .await
                    .unwrap_or_else(|error| panic!("the credit callback: no answer: {error}"));
                if (answer.status, answer.body.as_str()) != (200, "{\"error\": false}\n")
                    && serde_json::from_str::<Value>(&answer.body).ok()
                        != Some(json!({"error": false}))
                {
                    manager_told.lock().unwrap().push(answer);
                }
            }
        });
    }
    for n in 0..4 {
        let (user, anonymous) = (user.clone(), anonymous.clone());
        let (tally, stop) = (tally.clone(), stop.clone());
        let base = replica.url("");
        clients.spawn(async move {
            let mut k = n;
            while !stop.load(Ordering::Relaxed) {
                let route = ["/login", "/listapp", "/start/php"][k % 3];
                let request = match route {
                    "/login" => anonymous
                        .post(format!("{base}{route}"))
                        .form(&[("username", "erin"), ("password", "pw")]),
                    _ => user.post(format!("{base}{route}")),
                };
                let answer = Answer::of(request)
                    .await
                    .unwrap_or_else(|error| panic!("{route}: no answer: {error}"));
                if judge(route, &answer) {
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                    *tally
                        .failures
                        .lock()
                        .unwrap()
                        .entry((route, answer.status))
                        .or_default() += 1;
                }
                k += 1;
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ok_before = tally.ok.load(Ordering::Relaxed);
    assert!(ok_before > 0, "no request succeeded before the fault");

    let name = install.pg.name().to_owned();
    let terminated = tokio::task::spawn_blocking(move || {
        #[derive(diesel::QueryableByName)]
        struct Terminated {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut admin = admin();
        let mut terminated = 0;
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            let killed: Terminated = diesel::sql_query(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS n \
                 FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind::<diesel::sql_types::Text, _>(&name)
            .get_result(&mut admin)
            .unwrap();
            terminated += killed.n;
            std::thread::sleep(Duration::from_millis(20));
        }
        terminated
    })
    .await
    .unwrap();
    let during = (
        tally.ok.load(Ordering::Relaxed) - ok_before,
        tally.failed.load(Ordering::Relaxed),
    );
    assert!(terminated > 0, "the fault ended no connection");

    // Without a restart, every route answers again within seconds.
    let recovered = Instant::now();
    loop {
        let ok_now = tally.ok.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
        if tally.ok.load(Ordering::Relaxed) >= ok_now + 6 {
            break;
        }
        assert!(
            recovered.elapsed() < Duration::from_secs(20),
            "no recovery: {} ok, {} failed",
            tally.ok.load(Ordering::Relaxed),
            tally.failed.load(Ordering::Relaxed)
        );
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
    eprintln!(
        "{terminated} connection(s) ended; during the fault {} ok, {} failed {:?}; recovered \
         in {:?}",
        during.0,
        during.1,
        tally.failures.lock().unwrap(),
        recovered.elapsed()
    );
    for route in ["/login", "/listapp", "/start/php"] {
        let request = match route {
            "/login" => anonymous
                .post(replica.url(route))
                .form(&[("username", "erin"), ("password", "pw")]),
            _ => user.post(replica.url(route)),
        };
        let answer = Answer::of(request).await.unwrap();
        assert!(judge(route, &answer), "{route} after the fault: {answer:?}");
    }
    let ready = Answer::of(anonymous.get(replica.url("/readyz")))
        .await
        .unwrap();
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    assert!(replica.alive());
    let manager_told = manager_told.lock().unwrap();
    assert!(
        manager_told.is_empty(),
        "the manager was told something else than {{\"error\": false}} {} time(s): {:?}",
        manager_told.len(),
        manager_told.first()
    );
    drop(manager_told);
    // No half-done start: maintenance undoes what the fault interrupted.
    install.wait_consistent("erin", CREDIT, Duration::from_secs(20));
    assert_no_panic(&[&replica]);
}

/// A process the test started, killed with the test.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// packaging/haproxy.cfg, as shipped but for the addresses, the CA file and the director's host
/// name (and a shorter check interval), in front of two replicas: client certificates reach
/// both directors through it (TLS passthrough), and once a replica dies the balancer's
/// readiness checks send everything to the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_in_tcp_mode_passes_client_certificates_and_fails_over() {
    if Command::new("haproxy").arg("-v").output().is_err() {
        eprintln!("SKIP: haproxy is not installed: packaging/haproxy.cfg not run");
        return;
    }
    let install = Installation::new("haproxy", "KEY_ALGORITHM = ecdsa\n", "");
    install.add_user("frank", 10);
    let mut replicas = [install.serve("a", "info"), install.serve("b", "info")];
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/haproxy.cfg"),
    )
    .unwrap();
    let rendered = shipped
        .replace(
            "/etc/haproxy/conpaas-ca.pem",
            &install.data.join("certs/ca_cert.pem").display().to_string(),
        )
        .replace("director.example.org", "localhost")
        .replace("log /dev/log local0", "")
        .replace("bind :5555", &format!("bind 127.0.0.1:{port}"))
        .replace("10.0.0.11:5555", &format!("127.0.0.1:{}", replicas[0].port))
        .replace("10.0.0.12:5555", &format!("127.0.0.1:{}", replicas[1].port))
        .replace("inter 2s", "inter 250ms");
    assert_ne!(rendered, shipped);
    let config = install.data.join("haproxy.cfg");
    std::fs::write(&config, &rendered).unwrap();
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haproxy -c: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _haproxy = Killed(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(install.data.join("haproxy.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let haproxy_log = || std::fs::read_to_string(install.data.join("haproxy.log")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "haproxy does not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let base = format!("https://localhost:{port}");

    // Each fresh client a connection of its own: the balancer spreads them over both.
    let (cert, key) = install.user_identity(&base, "frank").await;
    let mut served = [false, false];
    let deadline = Instant::now() + Duration::from_secs(20);
    while served != [true, true] {
        assert!(
            Instant::now() < deadline,
            "not both replicas served: {served:?}\n{}",
            haproxy_log()
        );
        let user = client(&install.ca, Some((&cert, &key)));
        let answer = Answer::of(user.post(format!("{base}/listapp")))
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(answer.json().is_array(), "{answer:?}");
        for (n, replica) in replicas.iter().enumerate() {
            // The director saw the user's certificate: the request line names the user.
            served[n] |= replica.log().iter().any(|line| {
                line.contains("\"route\":\"/listapp\"") && line.contains("\"caller\":\"user:")
            });
        }
    }

    // One replica dies: within seconds every new connection goes to the other.
    replicas[0].kill();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut in_a_row = 0;
    while in_a_row < 10 {
        assert!(
            Instant::now() < deadline,
            "no fail-over to the live replica\n{}",
            haproxy_log()
        );
        let fresh = client(&install.ca, None);
        match Answer::of(fresh.get(format!("{base}/readyz"))).await {
            Ok(answer) if answer.status == 200 => in_a_row += 1,
            _ => in_a_row = 0,
        }
    }
    assert_no_panic(&[&replicas[1]]);
}
