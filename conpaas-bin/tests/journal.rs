//! The real `director serve` with managers charging credit while another connection holds
//! the SQLite write lock longer than the charge patience: every charge is answered
//! `{"error": false}` and deferred to the journal. The director is then stopped (SIGTERM) or
//! killed (SIGKILL) with the database still locked, the lock released, the director started
//! again: no accepted charge is lost and none is applied twice.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conpaas_core::director::ChargeJournal;
use conpaas_core::store::{self, DatabaseUrl, Store, StoreSettings};
use diesel::Connection as _;
use diesel::connection::SimpleConnection as _;
use serde_json::{Value, json};

mod support;
use support::{client, director, here_document, serve};

const CREDIT: i64 = 1000;
const MANAGERS: usize = 4;
const CHARGES_PER_MANAGER: usize = 5;
/// Each charge's amount: not 1, so that a charge applied twice or a wrong amount shows.
const AMOUNT: i64 = 3;

/// alice's credit, read from the database file (reads pass the write lock: WAL).
fn credit(data: &Path) -> i64 {
    let store = Store::connect(
        &StoreSettings::new(DatabaseUrl::Sqlite(data.join("director.db"))).max_connections(1),
    )
    .unwrap();
    store
        .run_blocking(|conn| store::find_user_by_username(conn, "alice"))
        .unwrap()
        .unwrap()
        .credit
        .0
}

/// Holds the SQLite write lock (as a backup or an operator's sqlite3 would) until `release`.
fn hold_write_lock(data: &Path) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let db = data.join("director.db");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let mut conn = diesel::SqliteConnection::establish(db.to_str().unwrap()).unwrap();
        // Waits for a write of the director's in progress (an audit batch) to end, as
        // sqlite3 would.
        conn.batch_execute(
            "PRAGMA busy_timeout = 10000; BEGIN IMMEDIATE; UPDATE user SET credit = credit WHERE uid = 1;",
        )
        .unwrap();
        locked_tx.send(()).unwrap();
        let _ = release_rx.recv();
        conn.batch_execute("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();
    (release_tx, holder)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Sigterm,
    Sigkill,
}

async fn deferred_charges_survive(ending: Ending) {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    director(&data, &["init", "localhost"]);
    let cfg = data.join("director.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[director]\n",
        "[director]\nCHARGE_PATIENCE = 1\nDB_MAX_CONNECTIONS = 32\nMAINTENANCE_INTERVAL = 3600\n",
    );
    let text = text.replace("[conpaas]\n", "[conpaas]\nKEY_ALGORITHM = ecdsa\n");
    std::fs::write(&cfg, text).unwrap();
    let credit_arg = CREDIT.to_string();
    director(
        &data,
        &[
            "adduser",
            "alice@example.org",
            "alice",
            "pw",
            "--credit",
            &credit_arg,
        ],
    );
    let log = temp.path().join("first.log");
    let (mut first, port) = serve(
        &data,
        "warn",
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let base = format!("https://localhost:{port}");
    let ca = std::fs::read_to_string(data.join("certs/ca_cert.pem")).unwrap();

    // alice's certificate, then MANAGERS services, each manager's certificate taken from its
    // VM's boot script as a manager VM gets it.
    let (cert, key) = support::user_certificates(&base, &ca, "alice", "pw").await;
    let user = client(&ca, Some((&cert, &key)));
    let mut managers = Vec::new();
    for n in 0..MANAGERS {
        let service: Value = user
            .post(format!("{base}/start/php"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let (Some(sid), Some(vmid)) = (service["sid"].as_i64(), service["vmid"].as_str()) else {
            panic!("start {n}: {service}");
        };
        let script =
            std::fs::read_to_string(data.join("dummy-cloud").join(format!("{vmid}.sh"))).unwrap();
        let cert = here_document(&script, "cert.pem").unwrap();
        let key = here_document(&script, "key.pem").unwrap();
        managers.push((sid, client(&ca, Some((&cert, &key)))));
    }
    let before = credit(&data);
    assert_eq!(before, CREDIT - MANAGERS as i64, "one credit per start");

    // The database refuses writes for longer than the charge patience (1 s) plus SQLite's
    // busy timeout (5 s): every charge is deferred, and answered as covered.
    let (release, holder) = hold_write_lock(&data);
    let t0 = Instant::now();
    let mut charges = tokio::task::JoinSet::new();
    for (sid, manager) in managers {
        for k in 0..CHARGES_PER_MANAGER {
            let manager = manager.clone();
            let url = format!("{base}/callback/decrementUserCredit.php");
            charges.spawn(async move {
                let answer = manager
                    .post(url)
                    .form(&[("sid", sid.to_string()), ("decrement", AMOUNT.to_string())])
                    .send()
                    .await
                    .unwrap();
                let status = answer.status().as_u16();
                let body: Value = answer.json().await.unwrap();
                assert_eq!(
                    (status, body),
                    (200, json!({"error": false})),
                    "manager of s{sid}, charge {k}"
                );
            });
        }
    }
    while let Some(done) = charges.join_next().await {
        done.unwrap();
    }
    let n_charges = (MANAGERS * CHARGES_PER_MANAGER) as i64;
    eprintln!("{n_charges} charges answered in {:?}", t0.elapsed());
    let journal = ChargeJournal::in_dir(&data);
    assert_eq!(journal.read().unwrap().pending.len(), n_charges as usize);
    assert_eq!(credit(&data), before, "nothing applied while locked");

    // The director ends with the database still locked.
    match ending {
        Ending::Sigterm => {
            let status = Command::new("kill")
                .arg(first.id().to_string())
                .status()
                .unwrap();
            assert!(status.success());
            let exit = first.wait().unwrap();
            assert!(
                exit.success(),
                "{exit:?}: {}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        Ending::Sigkill => {
            first.kill().unwrap();
            first.wait().unwrap();
        }
    }
    assert_eq!(credit(&data), before, "nothing applied while locked");
    release.send(()).unwrap();
    holder.join().unwrap();

    // The next start applies each journaled charge once, before it serves.
    let (mut second, _) = serve(&data, "warn", Stdio::null());
    let expected = before - n_charges * AMOUNT;
    assert_eq!(credit(&data), expected, "after the restart");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(credit(&data), expected, "applied twice");
    assert!(journal.read().unwrap().pending.is_empty());
    let status = Command::new("kill")
        .arg(second.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(second.wait().unwrap().success());
    assert_eq!(credit(&data), expected);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_charges_survive_sigterm_applied_once() {
    deferred_charges_survive(Ending::Sigterm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_charges_survive_sigkill_applied_once() {
    deferred_charges_survive(Ending::Sigkill).await;
}
