//! A user the operator disabled (`director user disable`, the library's
//! `accounts::disable_user`), through the real server: their right password gets exactly what a
//! wrong one gets at `/login` and `/getcerts`, their certificate what an unknown user's gets,
//! while their service's manager keeps charging; enabled again, all works as before. On SQLite
//! and PostgreSQL.

use conpaas_core::director::accounts::{self, UserRef};
use conpaas_core::director::audit::{AuditContext, AuditQuery};
use conpaas_core::model::UserId;
use conpaas_core::store;

use super::manager::{expect_callback, manager_post, start_service};
use crate::support::{Options, Reply, TestDirector};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_user_is_refused_as_a_wrong_password_is() {
    disabled_user_is_refused(TestDirector::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_user_is_refused_as_a_wrong_password_is_on_postgresql() {
    disabled_user_is_refused(TestDirector::with(Options::new().postgres())).await;
}

/// The same answer, byte for byte where a client could look: status, media type, CORS, body.
#[track_caller]
fn same_answer(got: &Reply, reference: &Reply) {
    assert_eq!(got.status, reference.status, "{}", got.what);
    assert_eq!(
        got.header("content-type"),
        reference.header("content-type"),
        "{}",
        got.what
    );
    assert_eq!(got.has_cors(), reference.has_cors(), "{}", got.what);
    assert_eq!(got.text(), reference.text(), "{}", got.what);
}

async fn credit_of(director: &TestDirector, uid: i32) -> i64 {
    director
        .director()
        .store()
        .run(move |conn| store::find_user(conn, UserId(uid)))
        .await
        .unwrap()
        .unwrap()
        .credit
        .0
}

async fn disabled_user_is_refused(director: TestDirector) {
    let uid = director.add_user("dora", "right", 10).await;
    let user = director.user_identity("dora", "right").await;
    let started = start_service(&director, &user, i64::from(uid)).await;
    let sid = started.sid.to_string();
    let anonymous = director.anonymous();
    let login = |password: &'static str| {
        let anonymous = anonymous.clone();
        async move {
            anonymous
                .post("/login", &[("username", "dora"), ("password", password)])
                .await
        }
    };
    let getcerts = |password: &'static str| {
        let anonymous = anonymous.clone();
        async move {
            anonymous
                .post("/getcerts", &[("username", "dora"), ("password", password)])
                .await
        }
    };
    let wrong_login = login("wrong").await;
    wrong_login.expect_false(true);
    let wrong_getcerts = getcerts("wrong").await;
    let unknown = director.client(&director.forge_user_identity(uid + 1000, "nobody"));
    let unknown_listapp = unknown.post("/listapp", &[]).await;
    let unknown_list = unknown.post("/list", &[]).await;
    let unknown_createapp = unknown.post("/createapp", &[("name", "x")]).await;

    let switched = AuditContext::operator_named("tester@host")
        .scope(accounts::disable_user(
            director.director().store(),
            &UserRef::parse("dora"),
        ))
        .await
        .unwrap();
    assert!(switched.changed);
    assert!(switched.user.is_disabled());

    // The right password: what a wrong one gets, at both password routes.
    same_answer(&login("right").await, &wrong_login);
    same_answer(&getcerts("right").await, &wrong_getcerts);
    // Her certificate: what an unknown user's gets, at the listings and at a change.
    let http = director.client(&user);
    same_answer(&http.post("/listapp", &[]).await, &unknown_listapp);
    same_answer(&http.post("/list", &[]).await, &unknown_list);
    same_answer(
        &http.post("/createapp", &[("name", "x")]).await,
        &unknown_createapp,
    );
    same_answer(&http.post("/start/php", &[]).await, &unknown_createapp);

    // Her service keeps running and its manager keeps charging.
    let reply = manager_post(
        &director,
        &started.manager,
        "/callback/decrementUserCredit.php",
        &[("sid", &sid), ("decrement", "1")],
        &[],
    )
    .await;
    expect_callback(&reply, false);
    assert_eq!(
        credit_of(&director, uid).await,
        8,
        "10, -1 start, -1 charge"
    );

    // The audit log: the refused login names her and says why; the operator's event.
    director.director().flush_audit().await.unwrap();
    let events = director
        .director()
        .audit_events(AuditQuery::all().user(Some(UserId(uid)), "dora"))
        .await
        .unwrap();
    let disabled = events
        .iter()
        .find(|event| event.event == "user.disabled")
        .unwrap();
    assert_eq!(disabled.principal, "operator:tester@host");
    assert_eq!(disabled.outcome, "ok");
    let refused: Vec<_> = events
        .iter()
        .filter(|event| event.event == "login" && event.outcome == "refused")
        .collect();
    assert_eq!(
        refused
            .iter()
            .filter(|event| event.detail == r#"{"disabled":true}"#)
            .count(),
        2,
        "the login and the getcerts with the right password: {refused:?}"
    );
    assert!(
        refused
            .iter()
            .all(|event| event.detail == "{}" || event.uid == Some(UserId(uid))),
        "{refused:?}"
    );

    // Enabled again: the password and the certificate work as before.
    let switched = accounts::enable_user(director.director().store(), &UserRef::Id(UserId(uid)))
        .await
        .unwrap();
    assert!(switched.changed && !switched.user.is_disabled());
    assert_eq!(login("right").await.bare(true)["credit"], 8);
    http.post("/listapp", &[]).await.bare(true);
    getcerts("right").await.expect_status(200);
}
