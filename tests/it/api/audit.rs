//! The audit log (issue 11 item 6) through the real server: every event of a user's story,
//! each with its principal, source address and request id, never a secret; a certificate's
//! event is committed before the certificate leaves (a refused event keeps the certificate
//! in); the log cannot be rewritten.

use conpaas_core::director::audit::AuditQuery;
use conpaas_core::store::AuditEvent;
use diesel::connection::SimpleConnection;
use serde_json::{Value, json};

use super::manager::{manager_post, start_service};
use crate::support::TestDirector;

const PASSWORD: &str = "correct horse battery 7";

async fn events(director: &TestDirector, query: AuditQuery) -> Vec<AuditEvent> {
    let director = director.director();
    director.flush_audit().await.unwrap();
    director.audit_events(query).await.unwrap()
}

fn detail(event: &AuditEvent) -> Value {
    serde_json::from_str(&event.detail).unwrap()
}

/// The one event named `name` with `outcome`, or a failure listing what there is.
#[track_caller]
fn one<'a>(events: &'a [AuditEvent], name: &str, outcome: &str) -> &'a AuditEvent {
    let found: Vec<&AuditEvent> = events
        .iter()
        .filter(|event| event.event == name && event.outcome == outcome)
        .collect();
    match found.as_slice() {
        [event] => event,
        _ => panic!("expected one {name} {outcome} event, found {found:#?}\nall: {events:#?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_story_is_audited_with_who_where_and_which_request() {
    let director = TestDirector::start();
    let uid = director.add_user("alice", PASSWORD, 10).await;
    let anonymous = director.anonymous();

    // A refused login, with a request id the client chose.
    let refused = anonymous
        .send(
            "POST /login (wrong password)".into(),
            anonymous
                .inner()
                .post(anonymous.url("/login"))
                .header("x-request-id", "audit-test-1")
                .form(&[("username", "alice"), ("password", "not it")]),
        )
        .await;
    let refused_id = refused
        .header("x-request-id")
        .unwrap_or_else(|| refused.fail("no x-request-id"))
        .to_owned();
    assert_ne!(
        refused_id, "audit-test-1",
        "the director's own id, not the client's"
    );
    let user = director.user_identity("alice", PASSWORD).await;
    let http = director.client(&user);
    let created = http.post("/createapp", &[("name", "audited")]).await;
    let aid = created.jsonify(true)["aid"].as_i64().unwrap();
    http.post(&format!("/renameapp/{aid}"), &[("name", "audited twice")])
        .await
        .expect_true(false);
    let started = start_service(&director, &user, i64::from(uid)).await;
    let sid = started.sid.to_string();
    for amount in ["2", "1000"] {
        manager_post(
            &director,
            &started.manager,
            "/callback/decrementUserCredit.php",
            &[("sid", &sid), ("decrement", amount)],
            &[],
        )
        .await;
    }
    http.post(&format!("/stop/{sid}"), &[])
        .await
        .expect_true(true);
    http.post(&format!("/delete/{aid}"), &[])
        .await
        .expect_true(true);

    let all = events(&director, AuditQuery::all()).await;
    let user_principal = format!("user:{uid}");
    let manager_principal = format!("manager:{uid}/{sid}");

    let created_user = one(&all, "user.created", "ok");
    assert_eq!(created_user.principal, "operator");
    assert_eq!(created_user.uid.map(|uid| uid.0), Some(uid));
    assert_eq!(created_user.username.as_deref(), Some("alice"));

    let refused = one(&all, "login", "refused");
    assert_eq!(refused.principal, "anonymous");
    assert_eq!(refused.username.as_deref(), Some("alice"));
    assert_eq!(refused.request_id.as_deref(), Some(refused_id.as_str()));
    assert_eq!(refused.client_request_id.as_deref(), Some("audit-test-1"));
    assert_eq!(refused.source.as_deref(), Some("127.0.0.1"));
    assert_eq!(refused.uid, None, "a refused login names no account");

    let accepted = one(&all, "login", "ok");
    assert_eq!(accepted.uid.map(|uid| uid.0), Some(uid));
    // Request ids the director made are recorded too, one per request.
    let generated = accepted.request_id.clone().unwrap();
    assert_ne!(generated, "audit-test-1");

    // The director's own certificate (role frontend) was issued by the set-up, the operator's.
    let own = all
        .iter()
        .find(|event| event.event == "certificate.issued" && detail(event)["role"] == "frontend")
        .unwrap();
    assert_eq!(own.principal, "operator");
    let certificates: Vec<&AuditEvent> = all
        .iter()
        .filter(|event| event.event == "certificate.issued" && detail(event)["role"] != "frontend")
        .collect();
    let roles: Vec<Value> = certificates
        .iter()
        .map(|event| detail(event)["role"].clone())
        .collect();
    assert_eq!(
        roles,
        [json!("user"), json!("manager")],
        "{certificates:#?}"
    );
    // The user's certificate was issued in the login's request, to the account that logged in.
    assert_eq!(
        certificates[0].request_id.as_deref(),
        Some(generated.as_str())
    );
    assert_eq!(certificates[0].uid.map(|uid| uid.0), Some(uid));
    assert_eq!(
        certificates[1].sid.map(|sid| i64::from(sid.0)),
        Some(started.sid)
    );
    for certificate in &certificates {
        let serial = detail(certificate)["serial"].as_str().unwrap().to_owned();
        let recorded = director
            .director()
            .store()
            .run(move |conn| conpaas_core::store::find_certificate(conn, &serial))
            .await
            .unwrap();
        assert!(
            recorded.is_some(),
            "the event's serial is an issued certificate's"
        );
    }

    let app = one(&all, "application.created", "ok");
    assert_eq!(app.principal, user_principal);
    assert_eq!(app.aid.map(|aid| i64::from(aid.0)), Some(aid));
    assert_eq!(detail(app)["name"], "audited");
    assert_eq!(
        detail(one(&all, "application.renamed", "ok"))["name"],
        "audited twice"
    );

    let service = one(&all, "service.started", "ok");
    assert_eq!(service.principal, user_principal);
    assert_eq!(detail(service)["vmid"], json!(started.vmid));
    assert_eq!(detail(service)["type"], "php");

    let charged = one(&all, "credit.decremented", "ok");
    assert_eq!(charged.principal, manager_principal);
    assert_eq!(detail(charged)["amount"], 2);
    let over = one(&all, "credit.decremented", "refused");
    assert_eq!(detail(over)["amount"], 1000);

    let stopped = one(&all, "service.stopped", "ok");
    assert_eq!(stopped.principal, user_principal);
    assert_eq!(stopped.sid.map(|sid| i64::from(sid.0)), Some(started.sid));
    let deleted = one(&all, "application.deleted", "ok");
    assert_eq!(deleted.aid.map(|aid| i64::from(aid.0)), Some(aid));

    // In the order they happened.
    let order: Vec<&str> = all.iter().map(|event| event.event.as_str()).collect();
    let position = |name: &str| order.iter().position(|event| *event == name).unwrap();
    assert!(position("user.created") < position("application.created"));
    assert!(position("service.started") < position("credit.decremented"));
    assert!(position("service.stopped") < position("application.deleted"));

    // Never a secret: no password, hash, key or certificate body.
    let text = format!("{all:?}");
    for secret in [PASSWORD, "not it", "BEGIN", "$argon2"] {
        assert!(!text.contains(secret), "the audit log holds {secret:?}");
    }

    // The user's own events, the refused login by name included.
    let alice = events(
        &director,
        AuditQuery::all().user(Some(conpaas_core::model::UserId(uid)), "alice"),
    )
    .await;
    assert!(
        alice
            .iter()
            .any(|event| event.event == "login" && event.outcome == "refused")
    );
    assert!(alice.iter().all(|event| {
        event.uid.map(|u| u.0) == Some(uid) || event.username.as_deref() == Some("alice")
    }));
    let latest = events(&director, AuditQuery::all().limit(1)).await;
    assert_eq!(latest, all[all.len() - 1..]);
}

/// "A certificate's event is written before the certificate leaves the director": when the
/// event cannot be written, the certificate is not handed out (nor recorded as issued).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_certificate_leaves_without_its_event() {
    let director = TestDirector::start();
    director.add_user("bob", PASSWORD, 10).await;
    director
        .director()
        .store()
        .run(|conn| -> Result<(), conpaas_core::store::Error> {
            let conpaas_core::store::DbConnection::Sqlite(c) = conn else {
                unreachable!("the test director is on SQLite")
            };
            c.batch_execute(
                "CREATE TRIGGER refuse_certificate_events BEFORE INSERT ON audit_event \
                 WHEN NEW.event = 'certificate.issued' \
                 BEGIN SELECT RAISE(ABORT, 'audit refused'); END;",
            )
            .unwrap();
            Ok(())
        })
        .await
        .unwrap();
    let reply = director
        .anonymous()
        .post("/getcerts", &[("username", "bob"), ("password", PASSWORD)])
        .await;
    assert!(
        !reply.body.starts_with(b"PK"),
        "a certificate zip left without its audit event: {}",
        reply.what
    );
    reply.expect_no_internals(&director);
    let n_issued: i64 = director
        .director()
        .store()
        .run(|conn| -> Result<i64, conpaas_core::store::Error> {
            use diesel::prelude::*;
            #[derive(QueryableByName)]
            struct N {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            let conpaas_core::store::DbConnection::Sqlite(c) = conn else {
                unreachable!()
            };
            Ok(diesel::sql_query(
                "SELECT count(*) AS n FROM issued_certificate WHERE role = 'user'",
            )
            .get_result::<N>(c)
            .unwrap()
            .n)
        })
        .await
        .unwrap();
    assert_eq!(
        n_issued, 0,
        "the certificate was rolled back with its event"
    );
}

/// A client from `source` (a loopback address) trusting the director's CA, without a
/// certificate, keeping connections alive.
fn client_from(director: &TestDirector, source: [u8; 4]) -> reqwest::Client {
    crate::support::Http::from_source(director, None, Some(source.into()))
        .inner()
        .clone()
}

/// `POST /login` from `client`, with `x-request-id: request_id` when given; the answer's
/// body and its `x-request-id`.
async fn login(
    director: &TestDirector,
    client: &reqwest::Client,
    username: &str,
    password: &str,
    request_id: Option<&str>,
) -> (String, String) {
    let mut request = client
        .post(format!("{}/login", director.base_url()))
        .form(&[("username", username), ("password", password)]);
    if let Some(id) = request_id {
        request = request.header("x-request-id", id);
    }
    let reply = request.send().await.unwrap();
    let id = reply.headers()["x-request-id"].to_str().unwrap().to_owned();
    (reply.text().await.unwrap(), id)
}

/// Issue 22 item 6: while the database stalls, throttled logins from one address overflow the
/// audit queue (12,000 against the default 10,000 in the report; here 1,200 against
/// `AUDIT_QUEUE = 1000`, the same shape in a tenth of the time); alice's successful login, made
/// after them, is still recorded once the database is back. Only refused logins are dropped,
/// and the drop is counted by priority. Three clients sending the same `x-request-id` get
/// three request ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_survives_an_audit_flood_during_a_database_stall() {
    use diesel::Connection as _;
    let queue = 1000;
    let director = TestDirector::with(
        crate::support::Options::new().director_setting("AUDIT_QUEUE", &queue.to_string()),
    );
    let alice_uid = director.add_user("alice", PASSWORD, 10).await;
    director.add_user("bob", PASSWORD, 10).await;
    let bob = director.user_identity("bob", PASSWORD).await;
    director.director().flush_audit().await.unwrap();

    // The stall: another connection holds SQLite's write lock (in WAL mode readers go on, so
    // logins are still checked; every write waits, then fails).
    let mut holder = diesel::SqliteConnection::establish(
        director.data_dir().join("director.db").to_str().unwrap(),
    )
    .unwrap();
    holder
        .batch_execute("PRAGMA busy_timeout = 10000; BEGIN IMMEDIATE")
        .unwrap();

    let guesser = client_from(&director, [127, 0, 0, 1]);
    // The allowance of wrong passwords, then throttled guesses, 32 at a time (of another
    // account: the guessing policy is tested in its own tests).
    for _ in 0..20 {
        let (answer, _) = login(&director, &guesser, "mallory", "guess", None).await;
        assert_eq!(answer, "false");
    }
    let flood = queue * 12 / 10;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..32 {
        let (guesser, base) = (guesser.clone(), director.base_url());
        tasks.spawn(async move {
            for _ in (worker..flood).step_by(32) {
                let answer = guesser
                    .post(format!("{base}/login"))
                    .form(&[("username", "mallory"), ("password", "guess")])
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                assert_eq!(answer, "false");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let alice = client_from(&director, [127, 0, 0, 2]);
    let (answer, alice_id) = login(&director, &alice, "alice", PASSWORD, None).await;
    assert!(
        answer.contains("\"uid\""),
        "alice's right password: {answer}"
    );
    holder.batch_execute("COMMIT").unwrap();
    drop(holder);

    let all = events(&director, AuditQuery::all()).await;
    let accepted: Vec<&AuditEvent> = all
        .iter()
        .filter(|e| e.event == "login" && e.outcome == "ok")
        .filter(|e| e.uid.map(|uid| uid.0) == Some(alice_uid))
        .collect();
    assert_eq!(
        accepted.len(),
        1,
        "alice's login is recorded: {accepted:#?}"
    );
    assert_eq!(accepted[0].request_id.as_deref(), Some(alice_id.as_str()));
    let throttled = all.iter().filter(|e| e.outcome == "throttled").count();
    let dropped = director.director().audit_events_dropped();
    assert!(dropped > 0, "the flood did not overflow the queue");
    assert!(
        throttled >= queue - 20,
        "the low-priority lane was kept: {throttled} throttled logins recorded"
    );
    let metrics = director.director().metrics().encode();
    assert!(
        metrics.contains(&format!(
            "conpaas_audit_events_dropped_total{{priority=\"low\"}} {dropped}"
        )),
        "{}",
        metrics
            .lines()
            .filter(|line| line.contains("audit"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(metrics.contains("conpaas_audit_events_dropped_total{priority=\"high\"} 0"));

    // One id sent by alice, an anonymous guesser and bob: three requests, three ids.
    let shared = Some("shared-id");
    let (_, alice_again) = login(&director, &alice, "alice", PASSWORD, shared).await;
    let other = client_from(&director, [127, 0, 0, 3]);
    let (_, guess) = login(&director, &other, "bob", "guess", shared).await;
    let created = director
        .client(&bob)
        .send(
            "POST /createapp with a shared id".into(),
            director
                .client(&bob)
                .inner()
                .post(director.client(&bob).url("/createapp"))
                .header("x-request-id", "shared-id")
                .form(&[("name", "mine")]),
        )
        .await;
    let created_id = created.header("x-request-id").unwrap().to_owned();
    let mut ids = vec![alice_again, guess, created_id];
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "{ids:?}");
    let all = events(&director, AuditQuery::all()).await;
    let sharing: Vec<&AuditEvent> = all
        .iter()
        .filter(|e| e.client_request_id.as_deref() == Some("shared-id"))
        .collect();
    let mut recorded: Vec<&str> = sharing
        .iter()
        .filter_map(|e| e.request_id.as_deref())
        .collect();
    recorded.sort_unstable();
    assert_eq!(recorded, ids, "{sharing:#?}");
}
