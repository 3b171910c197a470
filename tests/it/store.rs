//! Tests of the store area: adopting a 1.2 `director.db`, credit under concurrency,
//! users, services and subnets, id non-reuse, and a PostgreSQL smoke test.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use conpaas_core::model::{AppId, Credit, ServiceId, ServiceType, UserId};
use conpaas_core::store::{
    self, DatabaseUrl, ManagerVm, NewPassword, NewService, NewUser, Store, StoreSettings,
};
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};

/// The DDL ConPaaS 1.2 produces on SQLite, as spec/data-model.md §1 gives it.
const DDL_1_2: &str = "
CREATE TABLE user(uid INTEGER NOT NULL PRIMARY KEY, username VARCHAR(80) NOT NULL UNIQUE, fname VARCHAR(256), lname VARCHAR(256), email VARCHAR(256) UNIQUE, affiliation VARCHAR(256), password VARCHAR(256), created DATETIME, credit INTEGER);
CREATE TABLE application(aid INTEGER NOT NULL PRIMARY KEY, name VARCHAR(256), user_id INTEGER REFERENCES user(uid));
CREATE TABLE service(sid INTEGER NOT NULL PRIMARY KEY, name VARCHAR(256), type VARCHAR(32), state VARCHAR(32), created DATETIME, manager VARCHAR(512), vmid VARCHAR(256), cloud VARCHAR(128), subnet VARCHAR(18), user_id INTEGER REFERENCES user(uid), application_id INTEGER REFERENCES application(aid));
";

/// md5("secret"), as 1.2 stored it.
const MD5_SECRET: &str = "5ebe2294ecd0e0f08eab7690d2a6ee69";

fn settings(path: &Path) -> StoreSettings {
    StoreSettings::new(DatabaseUrl::Sqlite(path.to_owned())).max_connections(8)
}

/// A 1.2-shaped database file made with raw SQL, as the Python director left it.
fn old_database(dir: &Path, rows: &str) -> PathBuf {
    let path = dir.join("director.db");
    let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    // diesel turns foreign keys on; Python's sqlite3, which 1.2 used, leaves them off.
    conn.batch_execute("PRAGMA foreign_keys = OFF").unwrap();
    conn.batch_execute(DDL_1_2).unwrap();
    conn.batch_execute(rows).unwrap();
    path
}

fn ts(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap()
}

#[derive(QueryableByName)]
struct Hash {
    #[diesel(sql_type = Nullable<Text>)]
    password: Option<String>,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn raw(path: &Path) -> SqliteConnection {
    SqliteConnection::establish(path.to_str().unwrap()).unwrap()
}

fn stored_hash(path: &Path, username: &str) -> Option<String> {
    diesel::sql_query("SELECT password FROM user WHERE username = ?")
        .bind::<Text, _>(username)
        .get_result::<Hash>(&mut raw(path))
        .unwrap()
        .password
}

fn count(path: &Path, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<Count>(&mut raw(path))
        .unwrap()
        .n
}

/// THE acceptance test: a 1.2 director.db is opened, upgraded in place, and keeps
/// working: old password, old rows, and ids that are never given twice.
#[tokio::test]
async fn adopts_a_1_2_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = old_database(
        dir.path(),
        &format!(
            "INSERT INTO user VALUES (1, 'u1', 'F', 'L', 'u1@x.org', 'A', '{MD5_SECRET}', '2013-06-21 10:33:44.806507', 120);
             INSERT INTO application VALUES (1, 'New Application', 1);
             INSERT INTO service VALUES (1, 'New php service', 'php', 'INIT', '2013-06-21 10:33:58.178969',
                                         '127.0.0.3', '3', 'iaas', '172.16.0.0/14', 1, 1);
             INSERT INTO service VALUES (2, 'db', 'mysql', 'INIT', '2013-06-21 10:35:00.000000',
                                         '203.0.113.7', 'i-12ab34cd', 'ec2', NULL, 1, 1);"
        ),
    );

    let store = Store::open(&settings(&path)).unwrap();
    assert!(store.pending_migrations().unwrap().is_empty());

    // The copied rows kept their values, timestamps included.
    let user = store
        .run(|conn| store::find_user(conn, UserId(1)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.username, "u1");
    assert_eq!(
        (
            user.fname.as_deref(),
            user.lname.as_deref(),
            user.email.as_deref(),
            user.affiliation.as_deref()
        ),
        (Some("F"), Some("L"), Some("u1@x.org"), Some("A"))
    );
    assert_eq!(user.credit, Credit(120));
    assert_eq!(user.created, Some(ts("2013-06-21 10:33:44.806507")));
    let services = store
        .run(|conn| store::list_services_for_user(conn, UserId(1)))
        .await
        .unwrap();
    assert_eq!(services.len(), 2);
    let s1 = &services[0];
    assert_eq!(s1.sid, ServiceId(1));
    assert_eq!(s1.name.as_deref(), Some("New php service"));
    assert_eq!(s1.service_type.as_deref(), Some("php"));
    assert_eq!(s1.state.as_deref(), Some("INIT"));
    assert_eq!(s1.created, Some(ts("2013-06-21 10:33:58.178969")));
    assert_eq!(
        (
            s1.manager.as_deref(),
            s1.vmid.as_deref(),
            s1.cloud.as_deref(),
            s1.subnet.as_deref()
        ),
        (
            Some("127.0.0.3"),
            Some("3"),
            Some("iaas"),
            Some("172.16.0.0/14")
        )
    );
    assert_eq!((s1.user_id, s1.application_id), (UserId(1), AppId(1)));
    assert_eq!(services[1].created, Some(ts("2013-06-21 10:35:00")));
    assert_eq!(services[1].vmid.as_deref(), Some("i-12ab34cd"));
    let apps = store
        .run(|conn| store::list_applications(conn, UserId(1)))
        .await
        .unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(
        (apps[0].aid, apps[0].name.as_deref()),
        (AppId(1), Some("New Application"))
    );

    // A wrong password fails and changes nothing.
    let wrong = store
        .run(|conn| store::login(conn, "u1", "Secret"))
        .await
        .unwrap();
    assert_eq!(wrong, None);
    assert_eq!(stored_hash(&path, "u1").as_deref(), Some(MD5_SECRET));

    // The old password works once in its MD5 form, and is upgraded on that login.
    let logged_in = store
        .run(|conn| store::login(conn, "u1", "secret"))
        .await
        .unwrap();
    assert_eq!(logged_in, Some(user.clone()));
    let upgraded = stored_hash(&path, "u1").unwrap();
    assert!(upgraded.starts_with("$argon2id$"), "{upgraded}");
    assert!(
        store
            .run(|conn| store::login(conn, "u1", "secret"))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store
            .run(|conn| store::login(conn, "u1", "wrong"))
            .await
            .unwrap(),
        None
    );
    // The wire's `password` is the MD5 of what the caller sent, still 1.2's value.
    assert_eq!(store::password::md5_hex("secret"), MD5_SECRET);

    // Ids: delete the highest service and application, create again: no reuse.
    let deleted = store
        .run(|conn| store::delete_service(conn, ServiceId(2)))
        .await
        .unwrap();
    assert_eq!(deleted.map(|s| s.sid), Some(ServiceId(2)));
    let new = NewService::new(UserId(1), AppId(1), ServiceType::Php);
    let s3 = store
        .run(move |conn| store::insert_service(conn, &new, |_| Ok::<_, store::Error>(None)))
        .await
        .unwrap();
    assert_eq!(s3.sid, ServiceId(3));
    let app2 = store
        .run(|conn| store::create_application(conn, UserId(1), "two"))
        .await
        .unwrap();
    assert_eq!(app2.aid, AppId(2));
    assert!(
        store
            .run(move |conn| store::delete_application_owned(conn, AppId(2), UserId(1)))
            .await
            .unwrap()
    );
    let app3 = store
        .run(|conn| store::create_application(conn, UserId(1), "three"))
        .await
        .unwrap();
    assert_eq!(app3.aid, AppId(3));
    let u2 = store
        .run(|conn| store::create_user(conn, &md5_user("u2", 1)))
        .await
        .unwrap();
    assert_eq!(u2.uid, UserId(2));

    // Reopening (a restart) keeps the counters.
    drop(store);
    let store = Store::open(&settings(&path)).unwrap();
    store
        .run(|conn| store::delete_service(conn, ServiceId(3)))
        .await
        .unwrap();
    let s4 = store
        .run(move |conn| store::insert_service(conn, &new, |_| Ok::<_, store::Error>(None)))
        .await
        .unwrap();
    assert_eq!(s4.sid, ServiceId(4));
}

/// One `check` per adoption rule: the rows given, and what opening them does.
#[test]
fn adoption_rules() {
    enum Expect {
        /// Opens; the query answers this number.
        Opens(&'static str, i64),
        /// Refuses, naming this constraint; the data stays as it was.
        Refuses(&'static str),
    }
    fn check(rows: &str, expect: Expect) {
        let dir = tempfile::tempdir().unwrap();
        let path = old_database(dir.path(), rows);
        let before = count(&path, "SELECT count(*) AS n FROM service")
            + count(&path, "SELECT count(*) AS n FROM user");
        match (Store::open(&settings(&path)), expect) {
            (Ok(_), Expect::Opens(query, n)) => {
                assert_eq!(count(&path, query), n, "{rows}\n{query}")
            }
            (Err(err), Expect::Refuses(constraint)) => {
                let chain = format!(
                    "{err}: {}",
                    std::error::Error::source(&err)
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                );
                assert!(chain.contains(constraint), "{rows}\n{chain}");
                let after = count(&path, "SELECT count(*) AS n FROM service")
                    + count(&path, "SELECT count(*) AS n FROM user");
                assert_eq!(before, after);
                // Still the 1.2 table: no AUTOINCREMENT yet.
                assert_eq!(
                    count(
                        &path,
                        "SELECT count(*) AS n FROM sqlite_master WHERE sql LIKE '%AUTOINCREMENT%'"
                    ),
                    0
                );
            }
            (Ok(_), Expect::Refuses(constraint)) => panic!("opened, expected {constraint}: {rows}"),
            (Err(err), Expect::Opens(..)) => {
                panic!("{err}: {:?}\n{rows}", std::error::Error::source(&err))
            }
        }
    }
    let user = |uid: i32, credit: &str| {
        format!(
            "INSERT INTO user (uid, username, email, credit) VALUES ({uid}, 'u{uid}', 'u{uid}@x', {credit});"
        )
    };
    // Credit coercion: integers kept, reals truncated, anything else 0, never negative.
    check(
        &user(1, "'120'"),
        Expect::Opens(
            "SELECT credit AS n FROM user WHERE typeof(credit) = 'integer'",
            120,
        ),
    );
    check(
        &user(1, "'abc'"),
        Expect::Opens("SELECT credit AS n FROM user", 0),
    );
    check(
        &user(1, "NULL"),
        Expect::Opens("SELECT credit AS n FROM user", 0),
    );
    check(
        &user(1, "-5"),
        Expect::Opens("SELECT credit AS n FROM user", 0),
    );
    check(
        &user(1, "12.7"),
        Expect::Opens("SELECT credit AS n FROM user", 12),
    );
    check(
        &user(1, "X'00'"),
        Expect::Opens("SELECT credit AS n FROM user", 0),
    );
    // A service without user_id takes its application's owner.
    check(
        &format!(
            "{} INSERT INTO application VALUES (1, 'a', 1);
             INSERT INTO service (sid, name, application_id) VALUES (7, 's', 1);",
            user(1, "1")
        ),
        Expect::Opens("SELECT user_id AS n FROM service WHERE sid = 7", 1),
    );
    // The sequences start at the highest id present.
    check(
        &format!(
            "{} {} INSERT INTO application VALUES (9, 'a', 5);",
            user(1, "1"),
            user(5, "1")
        ),
        Expect::Opens(
            "SELECT seq AS n FROM sqlite_sequence WHERE name = 'application'",
            9,
        ),
    );
    check(
        &format!("{} {}", user(1, "1"), user(5, "1")),
        Expect::Opens(
            "SELECT seq AS n FROM sqlite_sequence WHERE name = 'user'",
            5,
        ),
    );
    // Rows that cannot be adopted are refused, never dropped.
    check(
        &format!(
            "{} INSERT INTO application VALUES (1, 'a', 99);",
            user(1, "1")
        ),
        Expect::Refuses("application_rows_without_a_valid_owner"),
    );
    check(
        &format!(
            "{} INSERT INTO application VALUES (1, 'a', NULL);",
            user(1, "1")
        ),
        Expect::Refuses("application_rows_without_a_valid_owner"),
    );
    check(
        &format!(
            "{} INSERT INTO service (sid, user_id, application_id) VALUES (1, 1, 42);",
            user(1, "1")
        ),
        Expect::Refuses("service_rows_without_a_valid_application"),
    );
    check(
        &format!(
            "{} INSERT INTO application VALUES (1, 'a', 1);
             INSERT INTO service (sid, user_id, application_id) VALUES (1, 99, 1);",
            user(1, "1")
        ),
        Expect::Refuses("service_rows_without_a_valid_owner"),
    );
    check(
        &format!(
            "{} INSERT INTO application VALUES (1, 'a', 1);
             INSERT INTO service (sid, user_id, application_id, subnet) VALUES (1, 1, 1, '172.16.0.0/14');
             INSERT INTO service (sid, user_id, application_id, subnet) VALUES (2, 1, 1, '172.16.0.0/14');",
            user(1, "1")
        ),
        Expect::Refuses("services_sharing_a_subnet_in_one_application"),
    );
    // Duplicate application names (1.2's /renameapp) are kept.
    check(
        &format!(
            "{} INSERT INTO application VALUES (1, 'a', 1); INSERT INTO application VALUES (2, 'a', 1);",
            user(1, "1")
        ),
        Expect::Opens("SELECT count(*) AS n FROM application WHERE name = 'a'", 2),
    );
}

fn md5_user(name: &str, credit: i64) -> NewUser {
    NewUser::new(
        name.to_owned(),
        NewPassword::Hash(store::password::md5_hex("secret").into()),
        Credit(credit),
    )
    .email(format!("{name}@example.org"))
}

fn fresh() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&settings(&dir.path().join("director.db"))).unwrap();
    (store, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_decrements_lose_no_update() {
    let (store, _dir) = fresh();
    let uid = store
        .run(|conn| store::create_user(conn, &md5_user("u1", 50)))
        .await
        .unwrap()
        .uid;
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .run(move |conn| store::decrement_credit(conn, uid, Credit(1)))
                    .await
            })
        })
        .collect();
    let mut n_charged = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() {
            n_charged += 1;
        }
    }
    assert_eq!(n_charged, 50);
    let user = store
        .run(move |conn| store::find_user(conn, uid))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.credit, Credit(0));
    // Down to zero exactly, then refused; negative amounts are an error.
    assert!(
        !store
            .run(move |conn| store::decrement_credit(conn, uid, Credit(1)))
            .await
            .unwrap()
    );
    let err = store
        .run(move |conn| store::decrement_credit(conn, uid, Credit(-1)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, store::Error::NegativeAmount(Credit(-1))),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_starts_get_different_subnets() {
    let (store, _dir) = fresh();
    let uid = store
        .run(|conn| store::create_user(conn, &md5_user("u1", 50)))
        .await
        .unwrap()
        .uid;
    let aid = store
        .run(move |conn| store::default_application(conn, uid))
        .await
        .unwrap()
        .unwrap()
        .aid;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            let new = NewService::new(uid, aid, ServiceType::Php);
            tokio::spawn(async move {
                store
                    .run(move |conn| {
                        store::insert_service(conn, &new, |taken: &[String]| {
                            // The lowest free /24 of 10.0.0.0/16, as a planner would.
                            let free = (0..=255)
                                .map(|i| format!("10.0.{i}.0/24"))
                                .find(|candidate| !taken.contains(candidate));
                            Ok::<_, store::Error>(free)
                        })
                    })
                    .await
            })
        })
        .collect();
    let mut subnets = Vec::new();
    for task in tasks {
        subnets.push(task.await.unwrap().unwrap().subnet.unwrap());
    }
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_of_one_name() {
    let (store, dir) = fresh();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut new = md5_user("same", 5);
                new.email = Some(format!("{i}@example.org"));
                store.run(move |conn| store::create_user(conn, &new)).await
            })
        })
        .collect();
    let mut n_created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => n_created += 1,
            Err(store::Error::UsernameTaken(name)) => assert_eq!(name, "same"),
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(n_created, 1);
    let path = dir.path().join("director.db");
    assert_eq!(count(&path, "SELECT count(*) AS n FROM user"), 1);
    assert_eq!(count(&path, "SELECT count(*) AS n FROM application"), 1);
}

#[test]
fn users_duplicates_and_reserved_name() {
    let (store, dir) = fresh();
    let path = dir.path().join("director.db");
    let u1 = store
        .run_blocking(|conn| store::create_user(conn, &md5_user("u1", 5)))
        .unwrap();
    let apps = store
        .run_blocking(|conn| store::list_applications(conn, u1.uid))
        .unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(
        apps[0].name.as_deref(),
        Some(store::DEFAULT_APPLICATION_NAME)
    );

    let mut same_name = md5_user("u1", 5);
    same_name.email = None;
    let err = store
        .run_blocking(|conn| store::create_user(conn, &same_name))
        .unwrap_err();
    assert!(
        matches!(&err, store::Error::UsernameTaken(n) if n == "u1"),
        "{err:?}"
    );
    let mut same_email = md5_user("u2", 5);
    same_email.email = Some("u1@example.org".to_owned());
    let err = store
        .run_blocking(|conn| store::create_user(conn, &same_email))
        .unwrap_err();
    assert!(
        matches!(&err, store::Error::EmailTaken(e) if e == "u1@example.org"),
        "{err:?}"
    );
    let err = store
        .run_blocking(|conn| store::create_user(conn, &md5_user("CA", 5)))
        .unwrap_err();
    assert!(
        matches!(&err, store::Error::UsernameReserved(n) if n == "CA"),
        "{err:?}"
    );
    assert_eq!(count(&path, "SELECT count(*) AS n FROM user"), 1);
    assert_eq!(count(&path, "SELECT count(*) AS n FROM application"), 1);
}

#[test]
fn ids_never_reused_on_a_fresh_database() {
    let (store, _dir) = fresh();
    store
        .run_blocking(|conn| {
            let uid = store::create_user(conn, &md5_user("u1", 5))?.uid;
            let aid = store::default_application(conn, uid)?.unwrap().aid;
            let new = NewService::new(uid, aid, ServiceType::Hadoop);
            let none = |_: &[String]| Ok::<_, store::Error>(None);
            let s1 = store::insert_service(conn, &new, none)?;
            let s2 = store::insert_service(conn, &new, none)?;
            store::delete_service(conn, s2.sid)?;
            let s3 = store::insert_service(conn, &new, none)?;
            assert!(s3.sid > s2.sid && s2.sid > s1.sid, "{s1:?} {s2:?} {s3:?}");
            store::delete_service(conn, s3.sid)?;
            store::delete_service(conn, s1.sid)?;
            let s4 = store::insert_service(conn, &new, none)?;
            assert!(s4.sid > s3.sid);
            let vm = ManagerVm::new("127.0.0.3", "3", "iaas");
            assert_eq!(
                store::complete_service(conn, s4.sid, &vm)?
                    .unwrap()
                    .vmid
                    .as_deref(),
                Some("3")
            );

            let a2 = store::create_application(conn, uid, "a2")?;
            store::delete_application_owned(conn, a2.aid, uid)?;
            let a3 = store::create_application(conn, uid, "a3")?;
            assert!(a3.aid > a2.aid);
            Ok::<_, store::Error>(())
        })
        .unwrap();
}

#[test]
fn services_get_different_subnets_and_the_constraint_holds() {
    let (store, _dir) = fresh();
    store
        .run_blocking(|conn| {
            let uid = store::create_user(conn, &md5_user("u1", 5))?.uid;
            let aid = store::default_application(conn, uid)?.unwrap().aid;
            let new = NewService::new(uid, aid, ServiceType::Php);
            let chooser = |taken: &[String]| {
                let free = ["172.16.0.0/14", "172.20.0.0/14"]
                    .into_iter()
                    .find(|c| !taken.iter().any(|t| t == c));
                Ok::<_, store::Error>(free.map(str::to_owned))
            };
            let s1 = store::insert_service(conn, &new, chooser)?;
            let s2 = store::insert_service(conn, &new, chooser)?;
            assert_eq!(s1.subnet.as_deref(), Some("172.16.0.0/14"));
            assert_eq!(s2.subnet.as_deref(), Some("172.20.0.0/14"));
            let forced = store::insert_service(conn, &new, |_| {
                Ok::<_, store::Error>(Some("172.20.0.0/14".into()))
            });
            assert!(
                matches!(forced, Err(store::Error::SubnetTaken { .. })),
                "{forced:?}"
            );
            // Another application may use the same subnet.
            let other = store::create_application(conn, uid, "other")?.aid;
            let in_other = new.application_id(other);
            let s3 = store::insert_service(conn, &in_other, chooser)?;
            assert_eq!(s3.subnet.as_deref(), Some("172.16.0.0/14"));
            Ok::<_, store::Error>(())
        })
        .unwrap();
}

#[test]
fn missing_directory_is_an_error_not_a_new_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo").join("director.db");
    let err = Store::open(&settings(&path)).unwrap_err();
    assert!(
        matches!(err, store::Error::DatabaseDirectoryMissing { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("typo"), "{err}");
    assert!(!dir.path().join("typo").exists());
}

/// PostgreSQL smoke test against the local server (`CONPAAS_TEST_POSTGRES`, default
/// `postgres://postgres@127.0.0.1:5432/postgres`): a uniquely named database is
/// created, migrated, used and dropped. The machine and CI always have the server: its absence
/// is a failure, not a skip.
#[tokio::test]
async fn postgres_smoke() {
    use diesel::PgConnection;
    let admin_url = std::env::var("CONPAAS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut admin = PgConnection::establish(&admin_url)
        .unwrap_or_else(|error| panic!("no PostgreSQL at {admin_url}: {error}"));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let db_name = format!("conpaas_test_{}_{nanos}", std::process::id());
    admin
        .batch_execute(&format!("CREATE DATABASE {db_name}"))
        .unwrap();
    let base = admin_url.rsplit_once('/').unwrap().0;
    let url = format!("{base}/{db_name}");

    // On its own task, so that a failed assertion still lets the database be dropped.
    let outcome = tokio::spawn(postgres_scenario(url)).await;
    admin
        .batch_execute(&format!("DROP DATABASE {db_name} WITH (FORCE)"))
        .unwrap();
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

/// What SQLAlchemy created for ConPaaS 1.2 on PostgreSQL, with rows inserted under
/// explicit ids (which do not move the sequences: migration 2 must).
const DDL_1_2_POSTGRES: &str = r#"
CREATE TABLE "user" (uid SERIAL NOT NULL PRIMARY KEY, username VARCHAR(80) NOT NULL UNIQUE, fname VARCHAR(256), lname VARCHAR(256), email VARCHAR(256) UNIQUE, affiliation VARCHAR(256), password VARCHAR(256), created TIMESTAMP WITHOUT TIME ZONE, credit INTEGER);
CREATE TABLE application (aid SERIAL NOT NULL PRIMARY KEY, name VARCHAR(256), user_id INTEGER REFERENCES "user" (uid));
CREATE TABLE service (sid SERIAL NOT NULL PRIMARY KEY, name VARCHAR(256), type VARCHAR(32), state VARCHAR(32), created TIMESTAMP WITHOUT TIME ZONE, manager VARCHAR(512), vmid VARCHAR(256), cloud VARCHAR(128), subnet VARCHAR(18), user_id INTEGER REFERENCES "user" (uid), application_id INTEGER REFERENCES application (aid));
INSERT INTO "user" VALUES (3, 'old', 'F', 'L', 'old@x.org', 'A', '5ebe2294ecd0e0f08eab7690d2a6ee69', '2013-06-21 10:33:44.806507', NULL);
INSERT INTO application VALUES (4, 'New Application', 3);
INSERT INTO service VALUES (5, 'New php service', 'php', 'INIT', '2013-06-21 10:33:58.178969', '127.0.0.3', '3', 'iaas', '172.16.0.0/14', NULL, 4);
"#;

async fn postgres_scenario(url: String) {
    let mut raw_pg = diesel::PgConnection::establish(&url).unwrap();
    raw_pg.batch_execute(DDL_1_2_POSTGRES).unwrap();
    drop(raw_pg);
    let settings = StoreSettings::new(DatabaseUrl::Postgres(url)).max_connections(4);
    let store = Store::connect(&settings).unwrap();
    // One per directory of conpaas-core/migrations/postgres.
    let n_migrations = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conpaas-core/migrations/postgres"
    ))
    .unwrap()
    .count();
    assert_eq!(store.pending_migrations().unwrap().len(), n_migrations);
    assert_eq!(store.migrate().unwrap().len(), n_migrations);
    assert!(
        Store::open(&settings)
            .unwrap()
            .pending_migrations()
            .unwrap()
            .is_empty()
    );

    // The adopted rows: NULL credit became 0, the service got its application's
    // owner, the timestamps read back, the MD5 password works once and is upgraded.
    let old = store
        .run(|conn| store::login(conn, "old", "secret"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((old.uid, old.credit), (UserId(3), Credit(0)));
    assert_eq!(old.created, Some(ts("2013-06-21 10:33:44.806507")));
    let old_services = store
        .run(|conn| store::list_services_for_user(conn, UserId(3)))
        .await
        .unwrap();
    assert_eq!(old_services.len(), 1);
    assert_eq!(
        (old_services[0].sid, old_services[0].application_id),
        (ServiceId(5), AppId(4))
    );
    assert_eq!(
        old_services[0].created,
        Some(ts("2013-06-21 10:33:58.178969"))
    );
    assert!(
        store
            .run(|conn| store::login(conn, "old", "secret"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .run(|conn| store::login(conn, "old", "wrong"))
            .await
            .unwrap()
            .is_none()
    );
    let new_in_old = NewService::new(UserId(3), AppId(4), ServiceType::Php);
    let s6 = store
        .run(move |conn| {
            store::insert_service(conn, &new_in_old, |taken: &[String]| {
                assert_eq!(taken, ["172.16.0.0/14".to_owned()]);
                Ok::<_, store::Error>(Some("172.20.0.0/14".to_owned()))
            })
        })
        .await
        .unwrap();
    assert_eq!(s6.sid, ServiceId(6));
    let a5 = store
        .run(|conn| store::create_application(conn, UserId(3), "second"))
        .await
        .unwrap();
    assert_eq!(a5.aid, AppId(5));

    let mut plain = md5_user("u1", 50);
    plain.password = NewPassword::Plaintext("pw".into());
    let u1 = store
        .run(move |conn| store::create_user(conn, &plain))
        .await
        .unwrap();
    assert_eq!(u1.uid, UserId(4), "above the adopted ids");
    assert!(
        store
            .run(|conn| store::login(conn, "u1", "pw"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .run(|conn| store::login(conn, "u1", "nope"))
            .await
            .unwrap()
            .is_none()
    );
    let err = store
        .run(|conn| store::create_user(conn, &md5_user("u1", 5)))
        .await
        .unwrap_err();
    assert!(matches!(err, store::Error::UsernameTaken(_)), "{err:?}");
    let legacy = store
        .run(|conn| store::create_user(conn, &md5_user("legacy", 5)))
        .await
        .unwrap();
    assert_eq!(
        store
            .run(|conn| store::login(conn, "legacy", "secret"))
            .await
            .unwrap(),
        Some(legacy)
    );

    let uid = u1.uid;
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .run(move |conn| store::decrement_credit(conn, uid, Credit(1)))
                    .await
            })
        })
        .collect();
    let mut n_charged = 0;
    for task in tasks {
        n_charged += usize::from(task.await.unwrap().unwrap());
    }
    assert_eq!(n_charged, 50);

    let aid = store
        .run(move |conn| store::default_application(conn, uid))
        .await
        .unwrap()
        .unwrap()
        .aid;
    let new = NewService::new(uid, aid, ServiceType::Php);
    let chooser = |taken: &[String]| {
        let free = ["172.16.0.0/14", "172.20.0.0/14"]
            .into_iter()
            .find(|c| !taken.iter().any(|t| t == c));
        Ok::<_, store::Error>(free.map(str::to_owned))
    };
    let s1 = store
        .run(move |conn| store::insert_service(conn, &new, chooser))
        .await
        .unwrap();
    let s2 = store
        .run(move |conn| store::insert_service(conn, &new, chooser))
        .await
        .unwrap();
    assert_ne!(s1.subnet, s2.subnet);
    let forced = store
        .run(move |conn| {
            store::insert_service(conn, &new, |_| {
                Ok::<_, store::Error>(Some("172.16.0.0/14".into()))
            })
        })
        .await;
    assert!(
        matches!(forced, Err(store::Error::SubnetTaken { .. })),
        "{forced:?}"
    );
    let vm = ManagerVm::new("203.0.113.7", "i-1", "iaas");
    let done = store
        .run(move |conn| store::complete_service(conn, s2.sid, &vm))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.created, s2.created);
    store
        .run(move |conn| store::delete_service(conn, s2.sid))
        .await
        .unwrap()
        .unwrap();
    let s3 = store
        .run(move |conn| store::insert_service(conn, &new, chooser))
        .await
        .unwrap();
    assert!(s3.sid > s2.sid);
    let err = store
        .run(move |conn| store::delete_application_owned(conn, aid, uid))
        .await
        .unwrap_err();
    assert!(
        matches!(err, store::Error::ApplicationNotEmpty { n_services: 2, .. }),
        "{err:?}"
    );
    let err = store
        .run(move |conn| store::create_application(conn, uid, store::DEFAULT_APPLICATION_NAME))
        .await
        .unwrap_err();
    assert!(
        matches!(err, store::Error::ApplicationNameTaken { .. }),
        "{err:?}"
    );

    // The listings in one statement (the user left-joined), on PostgreSQL too.
    let (apps, services, nobody) = store
        .read(move |conn| {
            Ok::<_, store::Error>((
                store::list_applications_of_user(conn, uid)?,
                store::list_services_of_user(conn, uid)?,
                store::list_applications_of_user(conn, UserId(999))?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(apps.unwrap().len(), 1);
    assert_eq!(services.unwrap().len(), 2);
    assert_eq!(nobody, None);

    // One replica at a time for a background job: a second store (another director's
    // connections) is refused the lease while the first holds it, and gets it once released.
    let other = Store::connect(&settings).unwrap();
    let (first, refused, after) = tokio::task::spawn_blocking(move || {
        let first = store.try_lease("maintenance").unwrap();
        let refused = other.try_lease("maintenance").unwrap();
        let another_job = other.try_lease("another job").unwrap();
        assert!(another_job.is_some(), "leases are per job");
        let held = first.is_some();
        drop(first);
        let after = other.try_lease("maintenance").unwrap();
        (held, refused.is_some(), after.is_some())
    })
    .await
    .unwrap();
    assert!(first && !refused && after, "{first} {refused} {after}");
}
