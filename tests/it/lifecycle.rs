//! The races of issue 20, each made deterministic with a scripted cloud: reconciliation
//! against a start completing during its pass (another replica), an undo whose terminate
//! fails, `/delete` racing `/start`. Each failed on the lifecycle before the claims.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use conpaas_core::cloud::{self, Cloud, CloudRegistry, ListedNode, Node, NodeRequest, NodeState};
use conpaas_core::director::{Director, DirectorBuilder, Error, StartRequest};
use conpaas_core::model::{Lifecycle, UserId};
use conpaas_core::store;

use crate::support::TestDirector;

/// A cloud whose creates can be held at a gate (the VM exists, the answer waits), whose
/// terminates take 300 ms and can be made to fail a number of times.
#[derive(Debug)]
struct ScriptedCloud {
    vms: std::sync::Mutex<BTreeSet<String>>,
    gate: tokio::sync::Semaphore,
    gated: AtomicBool,
    /// The VM appears when the create answers, not when it is asked for.
    appears_late: AtomicBool,
    kill_failures: AtomicU32,
}

impl Default for ScriptedCloud {
    fn default() -> Self {
        ScriptedCloud {
            vms: std::sync::Mutex::default(),
            gate: tokio::sync::Semaphore::new(0),
            gated: AtomicBool::new(false),
            appears_late: AtomicBool::new(false),
            kill_failures: AtomicU32::new(0),
        }
    }
}

impl ScriptedCloud {
    fn vms(&self) -> BTreeSet<String> {
        self.vms.lock().unwrap().clone()
    }

    async fn wait_for_vms(&self, n: usize) {
        for _ in 0..2000 {
            if self.vms.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the cloud never held {n} VM(s)");
    }
}

#[async_trait::async_trait]
impl Cloud for ScriptedCloud {
    fn name(&self) -> &str {
        "scripted"
    }

    fn driver(&self) -> &'static str {
        "dummy"
    }

    async fn create_node(&self, request: NodeRequest) -> Result<Node, cloud::Error> {
        let vmid = format!("vm-{}", request.client_token);
        let late = self.appears_late.load(Ordering::SeqCst);
        if !late {
            self.vms.lock().unwrap().insert(vmid.clone());
        }
        if self.gated.load(Ordering::SeqCst) {
            self.gate.acquire().await.unwrap().forget();
        }
        if late {
            self.vms.lock().unwrap().insert(vmid.clone());
        }
        if !self.vms.lock().unwrap().contains(&vmid) {
            return Err(cloud::Error::Failed(vmid));
        }
        Ok(Node::new(vmid, "10.0.0.9", None))
    }

    async fn kill_node(&self, vmid: &str) -> Result<(), cloud::Error> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if self
            .kill_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(cloud::Error::Unavailable(
                "terminate failed (scripted)".into(),
            ));
        }
        self.vms.lock().unwrap().remove(vmid);
        Ok(())
    }

    async fn node_state(&self, vmid: &str) -> Result<NodeState, cloud::Error> {
        Ok(if self.vms.lock().unwrap().contains(vmid) {
            NodeState::Running
        } else {
            NodeState::Gone
        })
    }

    async fn find_node(&self, client_token: &str) -> Result<Option<String>, cloud::Error> {
        let vmid = format!("vm-{client_token}");
        Ok(self.vms.lock().unwrap().contains(&vmid).then_some(vmid))
    }

    async fn list_nodes(&self, token_prefix: &str) -> Result<Vec<ListedNode>, cloud::Error> {
        Ok(self
            .vms
            .lock()
            .unwrap()
            .iter()
            .filter_map(|vmid| {
                let token = vmid.strip_prefix("vm-")?;
                token
                    .starts_with(token_prefix)
                    .then(|| ListedNode::new(vmid.clone(), token, None))
            })
            .collect())
    }

    async fn probe(&self) -> Result<(), cloud::Error> {
        Ok(())
    }
}

/// A director of `test`'s installation on `cloud` (call it twice for two replicas).
fn director(test: &TestDirector, cloud: &Arc<ScriptedCloud>, start_timeout: Duration) -> Director {
    builder(test, cloud)
        .start_timeout(start_timeout)
        .build()
        .unwrap()
}

/// The builder of [`director`], for other settings.
fn builder(test: &TestDirector, cloud: &Arc<ScriptedCloud>) -> DirectorBuilder {
    DirectorBuilder::from_config(test.loaded()).unwrap().clouds(
        CloudRegistry::builder()
            .cloud("scripted", cloud.clone())
            .build()
            .unwrap(),
    )
}

fn start(director: &Director, uid: UserId) -> tokio::task::JoinHandle<Result<(), Error>> {
    let director = director.clone();
    tokio::spawn(async move {
        director
            .start_service(StartRequest::new(uid, "php"))
            .await
            .map(drop)
    })
}

/// Every row's VM is held, every VM has its row; answers the rows.
async fn assert_accounted(
    director: &Director,
    cloud: &ScriptedCloud,
) -> Vec<conpaas_core::model::Service> {
    let rows = director
        .store()
        .run(store::list_all_services)
        .await
        .unwrap();
    let recorded: BTreeSet<String> = rows.iter().filter_map(|row| row.vmid.clone()).collect();
    let held = cloud.vms();
    assert_eq!(
        recorded, held,
        "rows' VMs (left) and the cloud's VMs (right) differ: {rows:#?}"
    );
    rows
}

async fn credit(director: &Director, uid: UserId) -> i64 {
    director
        .store()
        .run(move |conn| store::find_user(conn, uid))
        .await
        .unwrap()
        .unwrap()
        .credit
        .0
}

/// Issue 20, case 1: another replica's reconciliation (a short `RECONCILE_GRACE`) reaches a
/// start that completes while it terminates. Before the claims, the row kept the manager
/// address of a terminated VM, charged and listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_never_leaves_a_completed_start_without_its_vm() {
    let test = TestDirector::start();
    let uid = UserId(test.add_user("racer", "pw", 10).await);
    let cloud = Arc::new(ScriptedCloud::default());
    let starting = director(&test, &cloud, Duration::from_secs(600));
    let reconciling = director(&test, &cloud, Duration::from_secs(600));
    cloud.gated.store(true, Ordering::SeqCst);
    let started = start(&starting, uid);
    cloud.wait_for_vms(1).await;
    // The other replica reconciles with no grace; its terminate takes 300 ms, and the start's
    // create answers 100 ms into it.
    let reconcile = {
        let reconciling = reconciling.clone();
        tokio::spawn(async move { reconciling.reconcile(Duration::ZERO).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    cloud.gate.add_permits(1);
    let answer = started.await.unwrap();
    reconcile.await.unwrap().unwrap();
    // Whatever else the start reached, it never stays half-done: a second pass settles what
    // the first left claimed.
    reconciling.reconcile(Duration::ZERO).await.unwrap();
    let rows = assert_accounted(&starting, &cloud).await;
    match answer {
        Ok(()) => assert_eq!(rows.len(), 1, "an answered start keeps its service"),
        Err(error) => {
            assert!(rows.is_empty(), "a failed start left {rows:?} ({error})");
            assert_eq!(
                credit(&starting, uid).await,
                10,
                "the undone start is refunded"
            );
        }
    }
}

/// Issue 20, case 2: a create outlives the start timeout, then the undo's terminate fails.
/// Before, the row was deleted and the credit refunded while the VM ran on, unrecorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_undo_keeps_the_row_until_its_vm_is_gone() {
    let test = TestDirector::start();
    let uid = UserId(test.add_user("undo", "pw", 10).await);
    let cloud = Arc::new(ScriptedCloud::default());
    let director = director(&test, &cloud, Duration::from_millis(300));
    cloud.gated.store(true, Ordering::SeqCst);
    cloud.kill_failures.store(100, Ordering::SeqCst);
    let answer = start(&director, uid).await.unwrap();
    assert!(matches!(answer, Err(Error::StartTimeout)), "{answer:?}");
    assert_eq!(cloud.vms().len(), 1, "the VM the cloud made runs on");
    let rows = director.services(uid).await.unwrap();
    assert_eq!(rows.len(), 1, "the row of a VM not yet terminated is kept");
    assert_eq!(rows[0].lifecycle, Lifecycle::Undoing);
    assert_eq!(
        credit(&director, uid).await,
        9,
        "no refund while the VM runs"
    );
    // The cloud recovers: reconciliation finishes the undo.
    cloud.kill_failures.store(0, Ordering::SeqCst);
    cloud.gate.add_permits(1);
    assert_eq!(
        director.reconcile(Duration::from_secs(3600)).await.unwrap(),
        1
    );
    assert!(director.services(uid).await.unwrap().is_empty());
    assert!(cloud.vms().is_empty());
    assert_eq!(
        credit(&director, uid).await,
        10,
        "refunded once the VM is gone"
    );
    assert_eq!(director.reconcile(Duration::ZERO).await.unwrap(), 0);
    assert_eq!(credit(&director, uid).await, 10, "and only once");
}

/// Issue 20, case 5: `/delete` of an application into which a start inserts its row while
/// `/delete` terminates another service. Before, the application's delete failed on the new
/// row and `/delete` answered 500; 1.2 answered `true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_racing_a_start_answers_true() {
    let test = TestDirector::start();
    let uid = UserId(test.add_user("deleter", "pw", 10).await);
    let cloud = Arc::new(ScriptedCloud::default());
    let director = director(&test, &cloud, Duration::from_secs(600));
    let aid = director.applications(uid).await.unwrap()[0].aid;
    start(&director, uid).await.unwrap().unwrap();
    cloud.gated.store(true, Ordering::SeqCst);
    let delete = {
        let director = director.clone();
        tokio::spawn(async move { director.delete_application(uid, aid).await })
    };
    // While `/delete` terminates the first service's VM (300 ms), a start inserts its row.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = start(&director, uid);
    let deleted = delete.await.unwrap();
    assert!(matches!(deleted, Ok(true)), "{deleted:?}");
    cloud.gate.add_permits(1);
    assert!(
        second.await.unwrap().is_err(),
        "a start into a deleted application fails"
    );
    assert!(assert_accounted(&director, &cloud).await.is_empty());
    assert!(cloud.vms().is_empty());
    assert!(
        director
            .applications(uid)
            .await
            .unwrap()
            .iter()
            .all(|app| app.aid != aid)
    );
}

/// A clock an embedder (or a test) sets by hand.
#[derive(Debug)]
struct HandClock(std::sync::Mutex<chrono::DateTime<chrono::Utc>>);

impl conpaas_core::director::Clock for HandClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        *self.0.lock().unwrap()
    }
}

/// Issue 20: `created` was naive local time compared with local now, so a daylight-saving
/// jump aged every start by an hour. Now the row's time comes from the director's clock in
/// UTC and reconciliation ages rows against that clock alone: across the night local time
/// jumps (2026-03-29, 01:00 UTC in Europe), a row is undone exactly when its grace has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_ages_rows_in_utc_by_the_directors_clock() {
    let test = TestDirector::start();
    let uid = UserId(test.add_user("dst", "pw", 10).await);
    let cloud = Arc::new(ScriptedCloud::default());
    let before_jump = chrono::DateTime::parse_from_rfc3339("2026-03-29T00:50:00Z")
        .unwrap()
        .to_utc();
    let clock = Arc::new(HandClock(std::sync::Mutex::new(before_jump)));
    let director = builder(&test, &cloud).clock(clock.clone()).build().unwrap();
    let aid = director.applications(uid).await.unwrap()[0].aid;
    // A start a crash interrupted: its row, no task.
    let row = director
        .store()
        .run(move |conn| {
            store::write_transaction(conn, |conn| {
                assert!(store::decrement_credit(
                    conn,
                    uid,
                    conpaas_core::model::Credit(1)
                )?);
                store::insert_service_at(
                    conn,
                    &store::NewService::new(uid, aid, conpaas_core::model::ServiceType::Php),
                    None,
                    before_jump,
                    |_| Ok::<_, store::Error>(None),
                )
            })
        })
        .await
        .unwrap();
    assert_eq!(
        row.created,
        Some(before_jump.naive_utc()),
        "created is the clock's UTC"
    );
    let grace = Duration::from_secs(660);
    *clock.0.lock().unwrap() = before_jump + chrono::Duration::seconds(650);
    assert_eq!(
        director.reconcile(grace).await.unwrap(),
        0,
        "10 s before its grace"
    );
    *clock.0.lock().unwrap() = before_jump + chrono::Duration::seconds(670);
    assert_eq!(director.reconcile(grace).await.unwrap(), 1, "10 s after");
    assert_eq!(credit(&director, uid).await, 10);
}

/// A VM that appears only after a stop settled its row (the cloud had not yet shown it), and
/// whose terminate then fails: before, only the reaper could find it (and only on a cloud that
/// lists); now it is recorded on its own (`abandoned_vm`) and reconciliation terminates it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_arriving_after_its_row_was_settled_stays_known_until_terminated() {
    let test = TestDirector::start();
    let uid = UserId(test.add_user("late", "pw", 10).await);
    let cloud = Arc::new(ScriptedCloud::default());
    let director = director(&test, &cloud, Duration::from_secs(600));
    cloud.gated.store(true, Ordering::SeqCst);
    cloud.appears_late.store(true, Ordering::SeqCst);
    let started = start(&director, uid);
    // The stop finds no VM yet: the row is settled (refunded) at once.
    let mut sid = None;
    for _ in 0..400 {
        if let Some(row) = director.services(uid).await.unwrap().first() {
            sid = Some(row.sid);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sid = sid.expect("the start wrote its row");
    assert!(director.stop_service(uid, sid).await.unwrap());
    assert!(director.services(uid).await.unwrap().is_empty());
    // Then the VM arrives, and the cloud refuses to terminate it.
    cloud.kill_failures.store(100, Ordering::SeqCst);
    cloud.gate.add_permits(1);
    assert!(started.await.unwrap().is_err());
    assert_eq!(cloud.vms().len(), 1);
    let abandoned = director.store().run(store::list_abandoned).await.unwrap();
    assert_eq!(abandoned.len(), 1, "the VM is recorded: {abandoned:?}");
    assert_eq!(abandoned[0].sid, sid);
    // The cloud recovers: reconciliation terminates it and forgets it.
    cloud.kill_failures.store(0, Ordering::SeqCst);
    assert_eq!(
        director.reconcile(Duration::from_secs(3600)).await.unwrap(),
        1
    );
    assert!(cloud.vms().is_empty());
    assert!(
        director
            .store()
            .run(store::list_abandoned)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        credit(&director, uid).await,
        10,
        "the start that never ran is refunded once"
    );
}
