//! The operator's account commands as a library (`director::accounts`, what `director user`
//! calls), on SQLite and PostgreSQL: a credit change racing managers' charges loses no update,
//! each change writes one audit event in its transaction, refusals change nothing and are
//! recorded, a user with services is never deleted.

use std::path::Path;

use conpaas_core::director::Error;
use conpaas_core::director::accounts::{self, AccountSwitched, BelowZero, NewAccount, UserRef};
use conpaas_core::director::audit::{AuditContext, AuditQuery};
use conpaas_core::model::{Credit, CreditChange, ServiceType, UserId};
use conpaas_core::store::{self, DatabaseUrl, NewService, Store, StoreSettings};
use diesel::Connection as _;
use diesel::connection::SimpleConnection as _;

const POSTGRES_SERVER: &str = "postgresql://postgres@127.0.0.1:5432";

fn sqlite(dir: &Path) -> Store {
    Store::open(
        &StoreSettings::new(DatabaseUrl::Sqlite(dir.join("director.db"))).max_connections(8),
    )
    .unwrap()
}

/// Runs `scenario` on a fresh PostgreSQL database of its own, dropped afterwards (also when the
/// scenario fails). The server is always there on the machine and CI: its absence fails.
async fn on_postgres<F, Fut>(scenario: F)
where
    F: FnOnce(Store) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("conpaas_accounts_{}_{nanos}", std::process::id());
    let mut admin = diesel::PgConnection::establish(&format!("{POSTGRES_SERVER}/postgres"))
        .expect("the local PostgreSQL server (127.0.0.1:5432) must run for these tests");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let settings = StoreSettings::new(DatabaseUrl::Postgres(format!("{POSTGRES_SERVER}/{name}")))
        .max_connections(8);
    // On its own task, so that a failed assertion still lets the database be dropped.
    let outcome =
        tokio::spawn(async move { scenario(Store::open(&settings).unwrap()).await }).await;
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .unwrap();
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

async fn add_user(store: &Store, name: &str, credit: i64) -> UserId {
    let account = NewAccount::new(
        name,
        format!("{name}@example.org"),
        format!("pw-of-{name}").into(),
        Credit(credit),
    );
    accounts::add_user(store, account).await.unwrap().uid
}

async fn credit_of(store: &Store, uid: UserId) -> i64 {
    store
        .run(move |conn| store::find_user(conn, uid))
        .await
        .unwrap()
        .unwrap()
        .credit
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credit_changes_and_charges_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    changes_and_charges_lose_no_update(sqlite(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credit_changes_and_charges_lose_no_update_on_postgresql() {
    on_postgres(changes_and_charges_lose_no_update).await;
}

/// 200 managers' charges of 1 and 100 operator's additions of 2 at once (4 tasks of each):
/// the credit ends exactly where both say, and each addition's event saw a credit that no
/// other write changed between its `before` and its `after`.
async fn changes_and_charges_lose_no_update(store: Store) {
    let uid = add_user(&store, "busy", 1000).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let charging = store.clone();
        tasks.spawn(async move {
            let store = charging;
            for _ in 0..50 {
                let charged = store
                    .run(move |conn| store::decrement_credit(conn, uid, Credit(1)))
                    .await
                    .unwrap();
                assert!(charged);
            }
        });
        let store = store.clone();
        tasks.spawn(AuditContext::operator_named("ops@host").scope(async move {
            for _ in 0..25 {
                let adjusted = accounts::change_credit(
                    &store,
                    &UserRef::Id(uid),
                    CreditChange::Add(Credit(2)),
                    BelowZero::Refuse,
                )
                .await
                .unwrap();
                assert_eq!(adjusted.user.credit.0, adjusted.before.0 + 2);
            }
        }));
    }
    while let Some(task) = tasks.join_next().await {
        task.unwrap();
    }
    assert_eq!(credit_of(&store, uid).await, 1000 - 200 + 100 * 2);
    let events = store
        .run(|conn| store::list_audit_events(conn, &AuditQuery::all()))
        .await
        .unwrap();
    let adjusted: Vec<serde_json::Value> = events
        .iter()
        .filter(|event| event.event == "credit.adjusted")
        .map(|event| {
            assert_eq!(event.principal, "operator:ops@host");
            assert_eq!(event.outcome, "ok");
            assert_eq!(event.uid, Some(uid));
            serde_json::from_str(&event.detail).unwrap()
        })
        .collect();
    assert_eq!(adjusted.len(), 100);
    for detail in &adjusted {
        assert_eq!(detail["change"], "+2");
        assert_eq!(
            detail["after"].as_i64().unwrap(),
            detail["before"].as_i64().unwrap() + 2,
            "{detail}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_commands_are_audited_and_refusals_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    commands_are_audited(sqlite(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_commands_are_audited_and_refusals_change_nothing_on_postgresql() {
    on_postgres(commands_are_audited).await;
}

async fn commands_are_audited(store: Store) {
    AuditContext::operator_named("ops@host")
        .scope(audited_commands(store))
        .await;
}

async fn audited_commands(store: Store) {
    let alice = add_user(&store, "alice", 50).await;
    let credit = |change: &str, below_zero| {
        let store = store.clone();
        let change: CreditChange = change.parse().unwrap();
        async move {
            accounts::change_credit(&store, &UserRef::parse("alice"), change, below_zero).await
        }
    };
    let n_events = |store: Store| async move {
        store
            .run(|conn| store::list_audit_events(conn, &AuditQuery::all()))
            .await
            .unwrap()
            .len()
    };
    let before = n_events(store.clone()).await;

    // Credit: set, refused below zero (nothing changed), stopped at zero, overflow refused.
    let adjusted = credit("=5", BelowZero::Refuse).await.unwrap();
    assert_eq!(
        (adjusted.before, adjusted.user.credit),
        (Credit(50), Credit(5))
    );
    let error = credit("-10", BelowZero::Refuse).await.unwrap_err();
    assert!(
        matches!(&error, Error::CreditBelowZero { username, credit: Credit(5), .. } if username == "alice"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "alice has 5 credit: -10 would take it below 0"
    );
    assert_eq!(credit_of(&store, alice).await, 5);
    let adjusted = credit("-10", BelowZero::StopAtZero).await.unwrap();
    assert_eq!(adjusted.user.credit, Credit(0));
    credit(&format!("+{}", i64::MAX), BelowZero::Refuse)
        .await
        .unwrap();
    let error = credit("+1", BelowZero::Refuse).await.unwrap_err();
    assert!(matches!(error, Error::CreditOverflow { .. }), "{error:?}");
    assert_eq!(credit_of(&store, alice).await, i64::MAX);

    // Disable twice (the second changes nothing and records nothing), enable.
    let switched: AccountSwitched = accounts::disable_user(&store, &UserRef::parse("alice"))
        .await
        .unwrap();
    assert!(switched.changed && switched.user.is_disabled());
    let since = switched.user.disabled;
    let again = accounts::disable_user(&store, &UserRef::Id(alice))
        .await
        .unwrap();
    assert!(!again.changed);
    assert_eq!(again.user.disabled, since, "keeps the time it was disabled");
    let login = store
        .run(|conn| store::login(conn, "alice", "pw-of-alice"))
        .await
        .unwrap();
    assert_eq!(login, None, "a disabled user's right password is refused");
    let switched = accounts::enable_user(&store, &UserRef::parse("alice"))
        .await
        .unwrap();
    assert!(switched.changed && !switched.user.is_disabled());

    // A new password: the new one logs in, the old does not; no trace of either in the log.
    accounts::set_password(
        &store,
        &UserRef::parse("alice"),
        "new-secret".to_owned().into(),
    )
    .await
    .unwrap();
    for (password, accepted) in [("new-secret", true), ("pw-of-alice", false)] {
        let login = store
            .run(move |conn| store::login(conn, "alice", password))
            .await
            .unwrap();
        assert_eq!(login.is_some(), accepted, "{password}");
    }
    let error = accounts::set_password(&store, &UserRef::parse("alice"), String::new().into())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Invalid {
                field: "password",
                ..
            }
        ),
        "{error:?}"
    );

    // Names: digits that are one user's id and another's name are refused; uid: and name:
    // decide; an unknown name is said.
    let digits = add_user(&store, &alice.0.to_string(), 1).await;
    let error = accounts::show_user(&store, &UserRef::parse(&alice.0.to_string()))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::AmbiguousUser { .. }), "{error:?}");
    let by_uid = accounts::show_user(&store, &UserRef::parse(&format!("uid:{alice}")))
        .await
        .unwrap();
    assert_eq!(by_uid.user.uid, alice);
    let by_name = accounts::show_user(&store, &UserRef::parse(&format!("name:{alice}")))
        .await
        .unwrap();
    assert_eq!(by_name.user.uid, digits);
    let error = accounts::show_user(&store, &UserRef::parse("nobody"))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "no user \"nobody\"");

    // Delete: refused while a service row exists (whatever its state), then done.
    let application = store
        .run(move |conn| store::default_application(conn, alice))
        .await
        .unwrap()
        .unwrap();
    let service = store
        .run(move |conn| {
            store::insert_service(
                conn,
                &NewService::new(alice, application.aid, ServiceType::Php),
                |_: &[String]| Ok::<_, store::Error>(None),
            )
        })
        .await
        .unwrap();
    let error = accounts::delete_user(&store, &UserRef::parse("alice"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::UserHasServices { services, .. } if services == &[service.sid]),
        "{error:?}"
    );
    let summary = accounts::show_user(&store, &UserRef::Id(alice))
        .await
        .unwrap();
    assert_eq!((summary.n_applications, summary.n_services), (1, 1));
    store
        .run(move |conn| store::delete_service(conn, service.sid))
        .await
        .unwrap();
    let deleted = accounts::delete_user(&store, &UserRef::parse("alice"))
        .await
        .unwrap();
    assert_eq!(deleted.n_applications, 1);
    let error = accounts::show_user(&store, &UserRef::Id(alice))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::UnknownUser(_)), "{error:?}");
    let listed = accounts::list_users(&store).await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.user.uid).collect::<Vec<_>>(),
        [digits]
    );

    // One event per change, the refusals recorded as such, all the operator's.
    let events = store
        .run(|conn| store::list_audit_events(conn, &AuditQuery::all()))
        .await
        .unwrap();
    let events = &events[before..];
    let seen: Vec<(&str, &str)> = events
        .iter()
        .filter(|event| event.uid == Some(alice))
        .map(|event| (event.event.as_str(), event.outcome.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("credit.adjusted", "ok"),
            ("credit.adjusted", "refused"),
            ("credit.adjusted", "ok"),
            ("credit.adjusted", "ok"),
            ("credit.adjusted", "refused"),
            ("user.disabled", "ok"),
            ("user.enabled", "ok"),
            ("user.password_changed", "ok"),
            ("user.deleted", "refused"),
            ("user.deleted", "ok"),
        ]
    );
    assert!(
        events
            .iter()
            .all(|event| event.principal == "operator:ops@host"),
        "{events:?}"
    );
    let details: Vec<serde_json::Value> = events
        .iter()
        .filter(|event| event.uid == Some(alice))
        .map(|event| serde_json::from_str(&event.detail).unwrap())
        .collect();
    use serde_json::json;
    assert_eq!(
        details[0],
        json!({"change": "=5", "before": 50, "after": 5})
    );
    assert_eq!(
        details[1],
        json!({"change": "-10", "credit": 5, "reason": "below zero"})
    );
    assert_eq!(
        details[2],
        json!({"change": "-10", "before": 5, "after": 0, "stopped_at_zero": true})
    );
    assert_eq!(details[5], json!({}));
    assert_eq!(details[8], json!({"services": [service.sid.0]}));
    assert_eq!(details[9], json!({"credit": i64::MAX, "applications": 1}));
    for event in events {
        for secret in ["new-secret", "pw-of-alice", "$argon2"] {
            assert!(
                !format!("{event:?}").contains(secret),
                "{secret} in {event:?}"
            );
        }
    }
    assert_eq!(
        n_events(store).await,
        before + 10 + 1,
        "and the user.created of the digits"
    );
}
