//! No VM outlives its row, no credit moves twice, no service dies of the director's own faults:
//! stop and delete racing starts, idempotent undo, a full database, a locked database under
//! the credit callback, and the reaper.

use std::collections::BTreeSet;
use std::time::Duration;

use conpaas_core::director::{
    ChargeJournal, Director, MaintenanceSettings, ReaperMode, StartRequest,
};
use conpaas_core::model::{AppId, Credit, ServiceId, UserId};
use conpaas_core::store::{self, NewService};
use diesel::Connection as _;
use diesel::connection::SimpleConnection as _;

use crate::support::{Options, TestDirector};

/// Every VM file of the dummy cloud and every row's VM, compared: no VM without its row, no
/// row (with a VM) without its VM.
async fn assert_consistent(test: &TestDirector) {
    let director = test.director();
    let rows = director
        .store()
        .run(store::list_all_services)
        .await
        .unwrap();
    let row_vms: BTreeSet<String> = rows.iter().filter_map(|row| row.vmid.clone()).collect();
    let dir = test.data_dir().join("dummy-cloud");
    let files: BTreeSet<String> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|name| name.strip_suffix(".sh").map(str::to_owned))
            .collect(),
        Err(_) => BTreeSet::new(),
    };
    let orphans: Vec<&String> = files.difference(&row_vms).collect();
    let lost: Vec<&String> = row_vms.difference(&files).collect();
    assert!(orphans.is_empty(), "VMs without a row: {orphans:?}");
    assert!(lost.is_empty(), "rows whose VM is gone: {lost:?}");
}

fn start(director: &Director, uid: UserId, appid: Option<AppId>) -> tokio::task::JoinHandle<()> {
    let director = director.clone();
    tokio::spawn(async move {
        // Refusals (the service stopped or the application deleted under it) are expected.
        let _ = director
            .start_service({
                let mut request = StartRequest::new(uid, "php");
                request.appid = appid.map(|aid| aid.to_string());
                request
            })
            .await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_and_delete_racing_starts_leave_no_orphan() {
    // RSA keys make every start spend tens of milliseconds of CPU between its row and its VM,
    // and a dozen at once on two cores delay everything else: the window a stop or a delete
    // falls into (its read of the row and its delete drift apart).
    let test = TestDirector::with(Options::new().rsa());
    let director = test.director().clone();
    let uid = UserId(test.add_user("racer", "pw", 100_000).await);
    for round in 0..6 {
        let aid = director
            .create_application(uid, &format!("app {round}"))
            .await
            .unwrap()
            .aid;
        let starts: Vec<_> = (0..12).map(|_| start(&director, uid, Some(aid))).collect();
        // Stop every service as soon as its row appears, each in its own task; half the
        // rounds also delete the whole application meanwhile.
        let mut stoppers = Vec::new();
        let mut seen = BTreeSet::new();
        while !starts.iter().all(tokio::task::JoinHandle::is_finished) {
            for service in director.services(uid).await.unwrap() {
                if seen.insert(service.sid) {
                    let director = director.clone();
                    stoppers.push(tokio::spawn(async move {
                        let _ = director.stop_service(uid, service.sid).await;
                    }));
                }
            }
            if round % 2 == 1 && seen.len() == 6 {
                let director = director.clone();
                stoppers.push(tokio::spawn(async move {
                    let _ = director.delete_application(uid, aid).await;
                }));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for handle in starts.into_iter().chain(stoppers) {
            handle.await.unwrap();
        }
        // Whatever survived goes too, so the next round starts clean.
        for service in director.services(uid).await.unwrap() {
            director.stop_service(uid, service.sid).await.unwrap();
        }
        assert_consistent(&test).await;
    }
}

#[tokio::test]
async fn undoing_a_start_refunds_once_however_often_it_runs() {
    let test = TestDirector::start();
    let director = test.director().clone();
    let uid = UserId(test.add_user("undo", "pw", 10).await);
    let aid = director.applications(uid).await.unwrap()[0].aid;
    let new = NewService::new(uid, aid, "php".parse().unwrap());
    // The start's first transaction: the charge and the row together.
    let half = director
        .store()
        .run(move |conn| {
            store::write_transaction(conn, |conn| {
                assert!(store::decrement_credit(conn, uid, Credit(1))?);
                store::insert_service::<store::Error, _>(conn, &new, |_| Ok(None))
            })
        })
        .await
        .unwrap();
    let sid = half.sid;
    // Eight undos at once (two replicas reconciling, a retried undo...): one refund.
    let undos: Vec<_> = (0..8)
        .map(|_| {
            let store = director.store().clone();
            tokio::spawn(async move {
                store
                    .run(move |conn| store::forget_incomplete_service(conn, sid, Credit(1)))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut n_undone = 0;
    for undo in undos {
        n_undone += usize::from(undo.await.unwrap());
    }
    assert_eq!(n_undone, 1);
    assert_eq!(
        director.user(uid).await.unwrap().unwrap().credit,
        Credit(10)
    );
    assert_eq!(director.reconcile(Duration::ZERO).await.unwrap(), 0);
    assert_eq!(
        director.user(uid).await.unwrap().unwrap().credit,
        Credit(10)
    );
}

#[tokio::test]
async fn a_completed_start_is_not_undone() {
    let test = TestDirector::start();
    let director = test.director().clone();
    let uid = UserId(test.add_user("done", "pw", 10).await);
    let service = director
        .start_service(StartRequest::new(uid, "php"))
        .await
        .unwrap();
    let sid = service.sid;
    let undone = director
        .store()
        .run(move |conn| store::forget_incomplete_service(conn, sid, Credit(1)))
        .await
        .unwrap();
    assert!(!undone, "a row with its VM was undone");
    assert_eq!(director.user(uid).await.unwrap().unwrap().credit, Credit(9));
    // A stale snapshot without the VM deletes nothing either.
    let stale = director
        .store()
        .run(move |conn| store::delete_service_if_vm(conn, sid, None))
        .await
        .unwrap();
    assert!(
        matches!(stale, store::ConditionalDelete::Changed(ref now) if now.vmid == service.vmid),
        "{stale:?}"
    );
    assert_consistent(&test).await;
}

#[tokio::test]
async fn a_full_database_refuses_a_start_whole() {
    let test = TestDirector::start();
    let uid = UserId(test.add_user("full", "pw", 10).await);
    let db = test.data_dir().join("director.db");
    // A director on one connection, whose file may not grow past its size now: SQLITE_FULL,
    // the error of a full disk (`max_page_count` holds per connection).
    let store = store::Store::open(
        &store::StoreSettings::new(store::DatabaseUrl::Sqlite(db.clone())).max_connections(1),
    )
    .unwrap();
    let director = conpaas_core::director::DirectorBuilder::from_config(test.loaded())
        .unwrap()
        .store(store)
        .build()
        .unwrap();
    let pages = |conn: &mut diesel::SqliteConnection| -> i64 {
        use diesel::RunQueryDsl as _;
        #[derive(diesel::QueryableByName)]
        struct Pages {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            page_count: i64,
        }
        diesel::sql_query("PRAGMA page_count")
            .get_result::<Pages>(conn)
            .unwrap()
            .page_count
    };
    // Another connection fills the service table's last page under the same limit, so the
    // next row needs a page the file may not get (rows of no user: nothing lists them).
    let mut other = diesel::SqliteConnection::establish(db.to_str().unwrap()).unwrap();
    other
        .batch_execute("PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = OFF")
        .unwrap();
    let limit = pages(&mut other);
    other
        .batch_execute(&format!("PRAGMA max_page_count = {limit}"))
        .unwrap();
    let mut size = 2000;
    while size >= 1 {
        let filled = other.batch_execute(&format!(
            "INSERT INTO service (name, type, state, user_id, application_id) \
             VALUES (printf('%.{size}c', 'x'), 'php', 'INIT', 999999, 999999)"
        ));
        if let Err(error) = filled {
            assert!(error.to_string().contains("full"), "{error}");
            size /= 2;
        }
    }
    director
        .store()
        .run(move |conn| {
            conn.batch_execute(&format!("PRAGMA max_page_count = {limit}"))
                .map_err(store::Error::from)
        })
        .await
        .unwrap();
    let before = director.user(uid).await.unwrap().unwrap().credit;
    let started = director.start_service(StartRequest::new(uid, "php")).await;
    // The row and the charge are one transaction: neither happened. The error (logged, never
    // sent to clients) says why.
    let error = started.expect_err("the start succeeded on a full database");
    let logged = conpaas_core::model::ErrorChain(&error).to_string();
    assert!(
        logged.starts_with("database query failed (disk full)"),
        "{logged}"
    );
    assert_eq!(director.user(uid).await.unwrap().unwrap().credit, before);
    assert!(director.services(uid).await.unwrap().is_empty());
    assert_consistent(&test).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_delays_the_credit_callback_but_never_refuses_it() {
    let test = TestDirector::start();
    let director = test.director().clone();
    let uid = UserId(test.add_user("locked", "pw", 10).await);
    let db = test.data_dir().join("director.db");
    // Another process holds the write lock longer than SQLite's busy timeout (5 s): a backup,
    // an operator's sqlite3 session.
    let holder = std::thread::spawn(move || {
        let mut conn = diesel::SqliteConnection::establish(db.to_str().unwrap()).unwrap();
        conn.batch_execute("PRAGMA busy_timeout = 10000; BEGIN IMMEDIATE; UPDATE user SET credit = credit WHERE uid = 1;")
            .unwrap();
        std::thread::sleep(Duration::from_secs(6));
        conn.batch_execute("COMMIT").unwrap();
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let charged = director.charge(uid, Some("3")).await.unwrap();
    assert!(charged, "a locked database refused a manager's charge");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "the charge did not wait for the lock"
    );
    holder.join().unwrap();
    assert_eq!(director.user(uid).await.unwrap().unwrap().credit, Credit(7));
    assert_eq!(director.deferred_charges(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_patience_a_charge_is_deferred_and_applied_once() {
    let test = TestDirector::start();
    let uid = UserId(test.add_user("patient", "pw", 10).await);
    // A director whose patience is shorter than the lock, on the same database.
    let director = conpaas_core::director::DirectorBuilder::from_config(test.loaded())
        .unwrap()
        .charge_patience(Duration::from_millis(300))
        .build()
        .unwrap();
    let db = test.data_dir().join("director.db");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let mut conn = diesel::SqliteConnection::establish(db.to_str().unwrap()).unwrap();
        conn.batch_execute("PRAGMA busy_timeout = 10000; BEGIN IMMEDIATE; UPDATE user SET credit = credit WHERE uid = 1;")
            .unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(6));
        conn.batch_execute("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();
    assert!(director.charge(uid, Some("4")).await.unwrap());
    assert_eq!(director.deferred_charges(), 1);
    // Still locked: nothing applied yet.
    assert_eq!(
        director.user(uid).await.unwrap().unwrap().credit,
        Credit(10)
    );
    holder.join().unwrap();
    // Applied by the background retry as soon as the database takes writes again, not at the
    // next maintenance pass.
    wait_for_credit(&director, uid, Credit(6), Duration::from_secs(10)).await;
    assert_eq!(director.deferred_charges(), 0);
    // Applied once: a pass changes nothing.
    let report = director
        .maintenance_pass(&MaintenanceSettings::recommended())
        .await;
    assert_eq!(report.deferred_charges, 0);
    assert_eq!(director.user(uid).await.unwrap().unwrap().credit, Credit(6));
}

/// Waits until `uid`'s credit is `credit`.
async fn wait_for_credit(director: &Director, uid: UserId, credit: Credit, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let now = director.user(uid).await.unwrap().unwrap().credit;
        if now == credit {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "credit {now:?}, expected {credit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A director of `test`'s configuration (its journal in the data directory) whose charge
/// patience is shorter than the lock the tests hold.
fn impatient_director(test: &TestDirector) -> Director {
    conpaas_core::director::DirectorBuilder::from_config(test.loaded())
        .unwrap()
        .charge_patience(Duration::from_millis(300))
        .build()
        .unwrap()
}

/// Holds the SQLite write lock of `test`'s database from another connection (a backup, an
/// operator's sqlite3) until `release` is sent; answers once it holds it.
fn hold_write_lock(
    test: &TestDirector,
) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let db = test.data_dir().join("director.db");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let mut conn = diesel::SqliteConnection::establish(db.to_str().unwrap()).unwrap();
        conn.batch_execute("PRAGMA busy_timeout = 10000; BEGIN IMMEDIATE; UPDATE user SET credit = credit WHERE uid = 1;")
            .unwrap();
        locked_tx.send(()).unwrap();
        let _ = release_rx.recv();
        conn.batch_execute("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();
    (release_tx, holder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_charge_survives_its_director_and_is_applied_once_by_the_next() {
    let test = TestDirector::start();
    let uid = UserId(test.add_user("survivor", "pw", 10).await);
    let first = impatient_director(&test);
    let (release, holder) = hold_write_lock(&test);
    // The director runs on a runtime of its own, which is then shut down (its tasks, the
    // retry among them, end with it: a crash) while the database still refuses writes. Its
    // memory is gone; the journal in the data directory keeps the charge.
    let charged = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let charged = runtime.block_on(async move { first.charge(uid, Some("4")).await.unwrap() });
        runtime.shutdown_background();
        charged
    })
    .await
    .unwrap();
    assert!(charged);
    let journal = ChargeJournal::in_dir(test.data_dir());
    let kept = journal.read().unwrap();
    assert_eq!(kept.pending.len(), 1);
    assert_eq!(kept.pending[0].uid, uid);
    assert_eq!(kept.pending[0].amount, Credit(4));
    // The attempt the crash cut off still waits for the lock on a blocking thread (a real
    // crash ends it): held past SQLite's busy timeout (5 s), it gives up unapplied.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    release.send(()).unwrap();
    holder.join().unwrap();
    // Nothing applies it by itself: the director that deferred it is gone.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let director = test.director().clone();
    assert_eq!(
        director.user(uid).await.unwrap().unwrap().credit,
        Credit(10)
    );
    // The next director applies it at start-up, once.
    let next = impatient_director(&test);
    assert_eq!(next.apply_deferred_charges().await, 1);
    assert_eq!(director.user(uid).await.unwrap().unwrap().credit, Credit(6));
    assert_eq!(next.apply_deferred_charges().await, 0);
    assert_eq!(impatient_director(&test).apply_deferred_charges().await, 0);
    assert_eq!(director.user(uid).await.unwrap().unwrap().credit, Credit(6));
    // Everything applied: the journal is compacted to nothing.
    let left = journal.read().unwrap();
    assert!(left.pending.is_empty());
    assert_eq!(std::fs::metadata(journal.path()).unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_replayed_twice_and_by_two_directors_at_once_charges_once() {
    let test = TestDirector::start();
    let uid = UserId(test.add_user("replayed", "pw", 100).await);
    let journal = ChargeJournal::in_dir(test.data_dir());
    for amount in 1..=5 {
        journal
            .append_charge(&store::Charge::new(uid, Credit(amount)))
            .unwrap();
    }
    // As written before any replay, to put back below.
    let unmarked = std::fs::read_to_string(journal.path()).unwrap();
    let (a, b) = (impatient_director(&test), impatient_director(&test));
    let (n_a, n_b) = tokio::join!(a.apply_deferred_charges(), b.apply_deferred_charges());
    assert_eq!(n_a + n_b, 5, "{n_a} + {n_b}");
    let director = test.director();
    assert_eq!(
        director.user(uid).await.unwrap().unwrap().credit,
        Credit(85)
    );
    let (n_a, n_b) = tokio::join!(a.apply_deferred_charges(), b.apply_deferred_charges());
    assert_eq!((n_a, n_b), (0, 0));
    assert_eq!(
        director.user(uid).await.unwrap().unwrap().credit,
        Credit(85)
    );
    // Replayed again from a copy of the whole journal (the `applied` lines lost, as after a
    // crash between the commit and the mark): the database knows the ids.
    assert!(journal.read().unwrap().pending.is_empty());
    std::fs::write(journal.path(), unmarked).unwrap();
    assert_eq!(journal.read().unwrap().pending.len(), 5);
    assert_eq!(a.apply_deferred_charges().await, 0);
    assert_eq!(
        director.user(uid).await.unwrap().unwrap().credit,
        Credit(85)
    );
    assert!(journal.read().unwrap().pending.is_empty());
}

#[tokio::test]
async fn an_ambiguous_commit_retried_charges_once() {
    // A commit that succeeded but reported an error is retried with the same charge id: the
    // retry finds the id and changes nothing.
    let test = TestDirector::start();
    let uid = UserId(test.add_user("ambiguous", "pw", 10).await);
    let director = test.director();
    let charge = store::Charge::new(uid, Credit(3));
    for (attempt, expected) in [
        store::ChargeApplied::Applied,
        store::ChargeApplied::AlreadyApplied,
    ]
    .into_iter()
    .enumerate()
    {
        let retried = charge.clone();
        let outcome = director
            .store()
            .run(move |conn| store::apply_charge(conn, &retried, store::ChargeRule::Covered))
            .await
            .unwrap();
        assert_eq!(outcome, expected, "attempt {attempt}");
    }
    // Replayed as a deferred charge too: still once.
    let replayed = charge.clone();
    let outcome = director
        .store()
        .run(move |conn| store::apply_charge(conn, &replayed, store::ChargeRule::Owed))
        .await
        .unwrap();
    assert_eq!(outcome, store::ChargeApplied::AlreadyApplied);
    assert_eq!(director.user(uid).await.unwrap().unwrap().credit, Credit(7));
    // A refused charge leaves no id behind: it may be applied later.
    let large = store::Charge::new(uid, Credit(8));
    let id = large.id.clone();
    let outcome = director
        .store()
        .run(move |conn| store::apply_charge(conn, &large, store::ChargeRule::Covered))
        .await
        .unwrap();
    assert_eq!(outcome, store::ChargeApplied::Refused);
    assert!(
        !director
            .store()
            .run(move |conn| store::charge_applied(conn, &id))
            .await
            .unwrap()
    );
    assert_eq!(director.user(uid).await.unwrap().unwrap().credit, Credit(7));
}

#[tokio::test]
async fn a_truncated_journal_line_is_skipped_never_misapplied() {
    let test = TestDirector::start();
    let uid = UserId(test.add_user("truncated", "pw", 200).await);
    let journal = ChargeJournal::in_dir(test.data_dir());
    journal
        .append_charge(&store::Charge::new(uid, Credit(4)))
        .unwrap();
    // A crash in the middle of writing a charge of 125: the line stops inside the amount.
    let scratch = tempfile::tempdir().unwrap();
    let other = ChargeJournal::in_dir(scratch.path());
    other
        .append_charge(&store::Charge::new(uid, Credit(125)))
        .unwrap();
    let line = std::fs::read_to_string(other.path()).unwrap();
    let cut = &line[..line.find(" 125 ").unwrap() + 3];
    let mut text = std::fs::read_to_string(journal.path()).unwrap();
    text.push_str(cut);
    std::fs::write(journal.path(), text).unwrap();
    let read = journal.read().unwrap();
    assert_eq!((read.pending.len(), read.skipped), (1, 1));
    let director = impatient_director(&test);
    assert_eq!(director.apply_deferred_charges().await, 1);
    assert_eq!(
        director.user(uid).await.unwrap().unwrap().credit,
        Credit(196)
    );
}

#[tokio::test]
async fn the_reaper_terminates_only_this_installations_rowless_vms() {
    let test = TestDirector::start();
    let director = test.director().clone();
    let uid = UserId(test.add_user("reaped", "pw", 10).await);
    let kept = director
        .start_service(StartRequest::new(uid, "php"))
        .await
        .unwrap();
    let kept_vm = kept.vmid.clone().unwrap();
    // A VM of this installation whose row is gone (a stop that lost the race in an older
    // version, a crash), and one of another installation sharing the cloud. The orphan's
    // service id is one the database gave: a higher one would prove the database older than
    // the cloud and hold the reaper (`a_vm_above_the_databases_service_ids_holds_the_reaper`).
    let orphan = orphan_vm(&director, uid).await;
    let foreign = "cps-00000000-s999".to_owned();
    std::fs::write(test.dummy_vm_path(&foreign), "#!/bin/sh\n").unwrap();
    // Within the grace period nothing is touched.
    let young = director.reap(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(young.reaped, Vec::<(String, String)>::new());
    assert_eq!(young.young, 1);
    let report = director.reap(Duration::ZERO).await.unwrap();
    assert_eq!(report.listed, 2, "{report:?}");
    assert_eq!(report.reaped, vec![("iaas".to_owned(), orphan.clone())]);
    assert_eq!(report.hold, None);
    assert!(!test.dummy_vm_path(&orphan).exists());
    assert!(
        test.dummy_vm_path(&foreign).exists(),
        "another installation's VM was reaped"
    );
    assert!(
        test.dummy_vm_path(&kept_vm).exists(),
        "a VM with its row was reaped"
    );
    std::fs::remove_file(test.dummy_vm_path(&foreign)).unwrap();
    assert_consistent(&test).await;
}

/// A VM of this installation without a row whose service id the database never gave (what a
/// database restored from an older backup sees of the services started since): the reaper
/// holds, terminating nothing, moves the service id counter past it (a new service must not
/// take its client token), and reaps only after the operator's confirmation.
#[tokio::test]
async fn a_vm_above_the_databases_service_ids_holds_the_reaper_until_confirmed() {
    let test = TestDirector::start();
    let director = test.director().clone();
    let uid = UserId(test.add_user("restored", "pw", 10).await);
    let start = || StartRequest::new(uid, "php");
    let kept = director.start_service(start()).await.unwrap();
    // Started by the database's later state, which the restore lost.
    let later = director.client_token(ServiceId(kept.sid.0 + 5));
    std::fs::write(test.dummy_vm_path(&later), "#!/bin/sh\n").unwrap();
    for mode in [ReaperMode::On, ReaperMode::Report, ReaperMode::On] {
        let report = director.reap_with(Duration::ZERO, mode).await.unwrap();
        assert_eq!(report.reaped, Vec::<(String, String)>::new(), "{mode}");
        assert_eq!(report.withheld.len(), 1, "{report:?}");
        assert_eq!(report.withheld[0].vmid, later);
        let hold = report.hold.expect("the reaper is held");
        assert_eq!(hold.listed_sid, ServiceId(kept.sid.0 + 5));
        assert_eq!(hold.allocated_sid, kept.sid);
        assert!(test.dummy_vm_path(&later).exists(), "a live VM was reaped");
    }
    let metrics = director.metrics().encode();
    assert!(metrics.contains("conpaas_reaper_held 1"), "{metrics}");
    assert!(
        metrics.contains("conpaas_reaper_withheld_vms 1"),
        "{metrics}"
    );
    // The hold began once, and says so in the audit log.
    director.flush_audit().await.unwrap();
    let events = director
        .audit_events(store::AuditQuery::all())
        .await
        .unwrap();
    let held: Vec<_> = events.iter().filter(|e| e.event == "reaper.held").collect();
    assert_eq!(held.len(), 1, "{events:?}");
    // New services take ids above every listed VM's, never a listed VM's client token.
    let fresh = director.start_service(start()).await.unwrap();
    assert!(fresh.sid.0 > kept.sid.0 + 5, "{:?}", fresh.sid);
    // The dry run changes nothing and says the same.
    let dry = director.reap_dry_run(Duration::ZERO).await.unwrap();
    assert!(dry.hold.is_some());
    assert_eq!(dry.withheld.len(), 1);
    // The operator's word: the next pass reaps.
    let confirmed = director.confirm_restore().await.unwrap();
    assert!(confirmed.hold.is_some());
    assert!(confirmed.allocated_after.0 >= fresh.sid.0);
    let report = director.reap(Duration::ZERO).await.unwrap();
    assert_eq!(report.hold, None);
    assert_eq!(report.reaped, vec![("iaas".to_owned(), later.clone())]);
    assert!(!test.dummy_vm_path(&later).exists());
    assert!(test.dummy_vm_path(kept.vmid.as_ref().unwrap()).exists());
    assert_consistent(&test).await;
}

/// `REAPER = report` lists and keeps a VM without a row; `off` does not even list it.
#[tokio::test]
async fn the_reaper_in_report_or_off_mode_terminates_nothing() {
    let test = TestDirector::start();
    let director = test.director().clone();
    let uid = UserId(test.add_user("modes", "pw", 10).await);
    let orphan = orphan_vm(&director, uid).await;
    let report = director
        .reap_with(Duration::ZERO, ReaperMode::Report)
        .await
        .unwrap();
    assert_eq!(report.reaped, Vec::<(String, String)>::new());
    assert_eq!(report.withheld.len(), 1);
    assert_eq!(report.hold, None);
    let off = director
        .reap_with(Duration::ZERO, ReaperMode::Off)
        .await
        .unwrap();
    assert_eq!((off.listed, off.withheld.len()), (0, 0));
    // A maintenance pass follows its settings' mode.
    for mode in [ReaperMode::Report, ReaperMode::Off] {
        let pass = director
            .maintenance_pass(
                &MaintenanceSettings::recommended()
                    .with_reap_grace(Duration::ZERO)
                    .with_reaper(mode),
            )
            .await;
        assert_eq!(pass.reaped, 0, "{mode}");
    }
    assert!(test.dummy_vm_path(&orphan).exists());
    let on = director
        .maintenance_pass(
            &MaintenanceSettings::recommended()
                .with_reap_grace(Duration::ZERO)
                .with_reaper(ReaperMode::On),
        )
        .await;
    assert_eq!(on.reaped, 1);
    assert!(!test.dummy_vm_path(&orphan).exists());
}

/// A cloud whose creates wait for a gate and whose terminations take a while: the timing of
/// `/delete` racing a start, made deterministic.
#[derive(Debug, Default)]
struct GatedCloud {
    vms: std::sync::Mutex<BTreeSet<String>>,
    gate: tokio::sync::Notify,
    gated: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl conpaas_core::cloud::Cloud for GatedCloud {
    fn name(&self) -> &str {
        "gated"
    }

    fn driver(&self) -> &'static str {
        "gated"
    }

    async fn create_node(
        &self,
        request: conpaas_core::cloud::NodeRequest,
    ) -> Result<conpaas_core::cloud::Node, conpaas_core::cloud::Error> {
        let vmid = format!("vm-{}", request.client_token);
        self.vms.lock().unwrap().insert(vmid.clone());
        if self.gated.load(std::sync::atomic::Ordering::SeqCst) {
            self.gate.notified().await;
        }
        Ok(conpaas_core::cloud::Node::new(vmid, "10.0.0.9", None))
    }

    async fn kill_node(&self, vmid: &str) -> Result<(), conpaas_core::cloud::Error> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.vms.lock().unwrap().remove(vmid);
        Ok(())
    }

    async fn node_state(
        &self,
        vmid: &str,
    ) -> Result<conpaas_core::cloud::NodeState, conpaas_core::cloud::Error> {
        Ok(if self.vms.lock().unwrap().contains(vmid) {
            conpaas_core::cloud::NodeState::Running
        } else {
            conpaas_core::cloud::NodeState::Gone
        })
    }

    async fn find_node(
        &self,
        client_token: &str,
    ) -> Result<Option<String>, conpaas_core::cloud::Error> {
        let vmid = format!("vm-{client_token}");
        Ok(self.vms.lock().unwrap().contains(&vmid).then_some(vmid))
    }

    async fn probe(&self) -> Result<(), conpaas_core::cloud::Error> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_acting_on_a_stale_list_still_terminates_a_vm_that_completed_meanwhile() {
    let test = TestDirector::start();
    let uid = UserId(test.add_user("stale", "pw", 10).await);
    let cloud = std::sync::Arc::new(GatedCloud::default());
    let director = conpaas_core::director::DirectorBuilder::from_config(test.loaded())
        .unwrap()
        .clouds(
            conpaas_core::cloud::CloudRegistry::builder()
                .cloud("gated", cloud.clone())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let aid = director.applications(uid).await.unwrap()[0].aid;
    // Service A runs; service B's VM exists but its start has not recorded it yet.
    director
        .start_service(StartRequest::new(uid, "php"))
        .await
        .unwrap();
    cloud.gated.store(true, std::sync::atomic::Ordering::SeqCst);
    let b = start(&director, uid, None);
    while cloud.vms.lock().unwrap().len() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // `/delete` lists both, then spends 300 ms terminating A's VM; B's start completes then.
    let delete = {
        let director = director.clone();
        tokio::spawn(async move { director.delete_application(uid, aid).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    cloud.gate.notify_one();
    b.await.unwrap();
    delete.await.unwrap().unwrap();
    for service in director.services(uid).await.unwrap() {
        director.stop_service(uid, service.sid).await.unwrap();
    }
    assert!(
        cloud.vms.lock().unwrap().is_empty(),
        "VMs without a row: {:?}",
        cloud.vms.lock().unwrap()
    );
}

/// Two directors on one PostgreSQL database: while one holds the maintenance lease (a pass in
/// progress), the other's pass skips reconciliation and the reaper, and runs them once the
/// lease is released (or its holder dies: the server then ends its session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_at_a_time_runs_maintenance() {
    let test = TestDirector::with(Options::new().postgres());
    let director = test.director().clone();
    let other = store::Store::connect(&test.loaded().config.store).unwrap();
    let lease = tokio::task::spawn_blocking(move || {
        other
            .try_lease(conpaas_core::director::MAINTENANCE_LEASE)
            .unwrap()
    })
    .await
    .unwrap()
    .expect("the lease is free at first");
    let report = director
        .maintenance_pass(&MaintenanceSettings::recommended())
        .await;
    assert!(report.skipped, "{report:?}");
    tokio::task::spawn_blocking(move || drop(lease))
        .await
        .unwrap();
    let report = director
        .maintenance_pass(&MaintenanceSettings::recommended())
        .await;
    assert!(!report.skipped, "{report:?}");
}

/// A VM of this installation whose row is gone (a stop that lost a race in an older version, a
/// crash): a service started, then its row deleted behind the director's back.
async fn orphan_vm(director: &Director, uid: UserId) -> String {
    let lost = director
        .start_service(StartRequest::new(uid, "php"))
        .await
        .unwrap();
    director
        .store()
        .run(move |conn| store::delete_service(conn, lost.sid))
        .await
        .unwrap();
    lost.vmid.unwrap()
}
