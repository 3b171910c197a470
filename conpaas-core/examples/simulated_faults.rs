//! An embedder's own fault test of the director, through the public API alone: a clock it sets
//! by hand (`director::Clock`), and a database whose next commit answer is lost
//! (`store::StoreFaults`). The start whose row committed but whose answer was lost fails, its
//! row stays `starting`, and reconciliation, once the clock says the grace has passed, undoes it
//! and refunds the credit once. Run with `cargo run -p conpaas-core --example simulated_faults`.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conpaas_core::ca::{CertificateAuthority, KeyAlgorithm};
use conpaas_core::cloud::{CloudRegistry, DummyCloud};
use conpaas_core::director::accounts::{self, NewAccount};
use conpaas_core::director::{Clock, Director, StartRequest};
use conpaas_core::model::{Credit, Lifecycle};
use conpaas_core::store::{self, DatabaseErrorKind, Store, StoreFaults};

/// The time of day the test decides.
#[derive(Debug)]
struct HandClock(Mutex<chrono::DateTime<chrono::Utc>>);

impl Clock for HandClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        *self.0.lock().unwrap()
    }
}

/// Loses the answer of the `n`th `Store::run` from now (its work is done, the caller hears
/// "busy"); 0: none.
#[derive(Debug, Default)]
struct LoseCommit(AtomicU32);

impl StoreFaults for LoseCommit {
    fn before(&self, _write: bool) -> Option<DatabaseErrorKind> {
        None
    }

    fn after(&self, write: bool) -> Option<DatabaseErrorKind> {
        let left = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (write && n > 0).then(|| n - 1)
            })
            .ok()?;
        (left == 1).then_some(DatabaseErrorKind::Busy)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_memory().unwrap();
    let faults = Arc::new(LoseCommit::default());
    let clock = Arc::new(HandClock(Mutex::new(chrono::Utc::now())));
    let director = Director::builder()
        .store(store.clone().with_faults(faults.clone()))
        .ca(CertificateAuthority::generate(KeyAlgorithm::EcdsaP256).unwrap())
        .clouds(
            CloudRegistry::builder()
                .cloud("local", Arc::new(DummyCloud::new("local", dir.path())))
                .build()
                .unwrap(),
        )
        .director_url("https://director.example.org:5555".parse().unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let user = accounts::add_user(
        &store,
        NewAccount::new("alice", "alice@example.org", "s3cret".into(), Credit(5)),
    )
    .await
    .unwrap();
    let start = || StartRequest::new(user.uid, "php");

    // A start's first store call finds the application; its second takes the credit and
    // writes the row. That one commits, but its answer is lost: the start fails.
    faults.0.store(2, Ordering::SeqCst);
    let failed = director.start_service(start()).await;
    println!("start with a lost commit answer: {}", failed.is_err());
    assert!(failed.is_err());
    let rows = store.run(store::list_all_services).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].lifecycle, Lifecycle::Starting);
    let credit = |store: Store| async move {
        store
            .run(move |conn| store::find_user(conn, user.uid))
            .await
            .unwrap()
            .unwrap()
            .credit
    };
    assert_eq!(credit(store.clone()).await, Credit(4));

    // Within the grace nothing happens; past it, by the clock, the start is undone once.
    let grace = Duration::from_secs(660);
    assert_eq!(director.reconcile(grace).await.unwrap(), 0);
    *clock.0.lock().unwrap() += chrono::Duration::seconds(661);
    assert_eq!(director.reconcile(grace).await.unwrap(), 1);
    assert_eq!(director.reconcile(grace).await.unwrap(), 0);
    assert_eq!(credit(store.clone()).await, Credit(5));
    println!("reconciled: credit back to 5");

    // Without faults a start completes.
    let service = director.start_service(start()).await.unwrap();
    assert_eq!(service.lifecycle, Lifecycle::Running);
    println!("started service {} on {:?}", service.sid, service.cloud);
}
