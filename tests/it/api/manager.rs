//! The manager's side (spec/manager-bootstrap.md §11, director-api.md §3.17-§3.19): the
//! certificate and key taken out of the dummy VM's user-data, requests shaped exactly like
//! the 1.2 managers' (hand-built multipart with the `$` boundary, answer read until the
//! server closes), the TaskFarm helper's urlencoded `wget` post.

use std::time::Duration;

use serde_json::json;

use super::shapes::{ExpectedService, assert_key_matches, check_service};
use crate::support::http::{BARE, JSONIFY};
use crate::support::raw::{manager_multipart, manager_request, send_until_close, wget_request};
use crate::support::{
    Identity, OID_CN, OID_EMAIL, OID_O, OID_ROLE, OID_SERVICE_LOCATOR, OID_UID, Options, Reply,
    TestDirector, openssl_subject, openssl_verify, subject_values,
};

/// How long a callback answer may keep the connection open before the test calls it a hang.
const PATIENCE: Duration = Duration::from_secs(5);

/// A started service: its id, VM id, and its manager's identity.
pub struct Started {
    pub sid: i64,
    pub vmid: String,
    pub manager: Identity,
}

/// Starts a php service for `user` (uid `uid`) in its default application and takes the
/// manager's certificate out of the VM's user-data.
pub async fn start_service(director: &TestDirector, user: &Identity, uid: i64) -> Started {
    let reply = director.client(user).post("/start/php", &[]).await;
    let value = reply.jsonify(true);
    let application_id = value["application_id"].as_i64().unwrap_or_default();
    let (sid, vmid) = check_service(
        &reply,
        &value,
        &ExpectedService {
            sid: None,
            name: "New php service",
            service_type: "php",
            user_id: uid,
            application_id,
            subnet: None,
        },
    );
    let manager = director.manager_identity(&vmid);
    Started { sid, vmid, manager }
}

/// A callback request as a 1.2 manager sends it, answer read until the server closes.
pub async fn manager_post(
    director: &TestDirector,
    identity: &Identity,
    path: &str,
    fields: &[(&str, &str)],
    files: &[(&str, &str, &[u8])],
) -> Reply {
    let body = manager_multipart(fields, files);
    let what = format!("POST {path} (1.2 manager multipart) as {}", identity.name);
    let reply = send_until_close(
        director,
        Some(identity),
        &what,
        &manager_request(director, path, &body),
        PATIENCE,
    )
    .await;
    expect_connection_close(&reply);
    reply
}

/// The answers of the callback routes say `Connection: close` (spec §1.1).
#[track_caller]
pub fn expect_connection_close(reply: &Reply) {
    let close = reply
        .header_values("connection")
        .iter()
        .any(|value| value.eq_ignore_ascii_case("close"));
    if !close {
        reply.fail("the answer of a manager route carries Connection: close");
    }
}

/// `{"error": <error>}` with `application/json`, no CORS, no `msg`.
#[track_caller]
pub fn expect_callback(reply: &Reply, error: bool) {
    let value = reply.jsonify(false);
    if value != json!({ "error": error }) {
        reply.fail(&format!("expected {{\"error\": {error}}}"));
    }
}

/// The user's credit, read through `/login`.
pub async fn credit(director: &TestDirector, username: &str, password: &str) -> i64 {
    let reply = director
        .anonymous()
        .post("/login", &[("username", username), ("password", password)])
        .await;
    let value = reply.bare(true);
    value["credit"]
        .as_i64()
        .unwrap_or_else(|| reply.fail("credit is a JSON integer"))
}

/// Checks an agent certificate answered by `/ca/get_cert.php`: a bare PEM, chaining to the
/// CA, for the CSR's key, with the caller's `UID` and `serviceLocator` and `role=agent`.
#[track_caller]
pub fn check_agent_certificate(
    director: &TestDirector,
    reply: &Reply,
    dir: &std::path::Path,
    uid: i64,
    sid: i64,
) -> String {
    reply
        .expect_status(200)
        .expect_content_type(BARE)
        .expect_cors(false);
    let pem = reply.text();
    if !pem.starts_with("-----BEGIN CERTIFICATE-----\n")
        || !pem.ends_with("-----END CERTIFICATE-----\n")
    {
        reply.fail("expected one PEM certificate and a newline");
    }
    let subject = openssl_subject(dir, &pem);
    for (oid, value) in [
        (OID_UID, uid.to_string()),
        (OID_SERVICE_LOCATOR, sid.to_string()),
        (OID_ROLE, "agent".to_owned()),
        (OID_CN, "ConPaaS".to_owned()),
        (OID_O, "ConPaaS".to_owned()),
        (OID_EMAIL, "info@conpaas.eu".to_owned()),
    ] {
        assert_eq!(
            subject_values(&subject, oid),
            [value.as_str()],
            "attribute {oid} of the agent certificate {subject:?}"
        );
    }
    openssl_verify(dir, &director.ca_path(), &pem)
        .unwrap_or_else(|error| panic!("the agent certificate does not chain to the CA: {error}"));
    let key = std::fs::read_to_string(dir.join("agent_key.pem")).unwrap();
    assert_key_matches(director, dir, &pem, &key);
    pem
}

#[tokio::test]
async fn manager_story_agent_certificates_credit_and_termination() {
    let director = TestDirector::with(Options::new().rsa());
    let uid = i64::from(director.add_user("mary", "pw", 10).await);
    let user = director.user_identity("mary", "pw").await;
    let other_uid = i64::from(director.add_user("eve", "pw", 10).await);
    let Started { sid, vmid, manager } = start_service(&director, &user, uid).await;
    assert_eq!(
        credit(&director, "mary", "pw").await,
        9,
        "/start costs one credit"
    );

    // The manager certificate of the user-data: UID, serviceLocator, role=manager.
    let dir = director.scratch("manager");
    let subject = openssl_subject(&dir, &manager.cert_pem);
    assert_eq!(subject_values(&subject, OID_UID), [uid.to_string()]);
    assert_eq!(
        subject_values(&subject, OID_SERVICE_LOCATOR),
        [sid.to_string()]
    );
    assert_eq!(subject_values(&subject, OID_ROLE), ["manager"]);
    openssl_verify(&dir, &director.ca_path(), &manager.cert_pem).unwrap();

    // An agent CSR as 1.2 managers make it (SHA-1, RSA-2048).
    let agent_dir = director.scratch("agent");
    let csr = director.make_csr(
        &agent_dir,
        &format!("/UID={uid}/serviceLocator={sid}/O=ConPaaS/emailAddress=info@conpaas.eu/CN=ConPaaS/role=agent"),
    );
    let reply = manager_post(
        &director,
        &manager,
        "/ca/get_cert.php",
        &[],
        &[("csr", "csr.pem", csr.as_bytes())],
    )
    .await;
    check_agent_certificate(&director, &reply, &agent_dir, uid, sid);

    // A CSR asking for someone else's user certificate gets an agent of the caller's service.
    let hostile_dir = director.scratch("hostile");
    let hostile = director.make_csr(
        &hostile_dir,
        &format!("/UID={other_uid}/serviceLocator=999/O=ConPaaS/emailAddress=info@conpaas.eu/CN=ConPaaS/role=user"),
    );
    let reply = manager_post(
        &director,
        &manager,
        "/ca/get_cert.php",
        &[("sid", "999")],
        &[("csr", "csr.pem", hostile.as_bytes())],
    )
    .await;
    check_agent_certificate(&director, &reply, &hostile_dir, uid, sid);

    // Credit: multipart with sid, as the Python managers send it.
    let sid_text = sid.to_string();
    let reply = manager_post(
        &director,
        &manager,
        "/callback/decrementUserCredit.php",
        &[("sid", &sid_text), ("decrement", "4")],
        &[],
    )
    .await;
    expect_callback(&reply, false);
    assert_eq!(credit(&director, "mary", "pw").await, 5);

    // The TaskFarm helper: wget, urlencoded `decrement=3`, no sid.
    let what = "POST /callback/decrementUserCredit.php (wget, urlencoded)";
    let reply = send_until_close(
        &director,
        Some(&manager),
        what,
        &wget_request(
            &director,
            "/callback/decrementUserCredit.php",
            "decrement=3",
        ),
        PATIENCE,
    )
    .await;
    expect_connection_close(&reply);
    expect_callback(&reply, false);
    assert_eq!(credit(&director, "mary", "pw").await, 2);

    // More than is left: refused, nothing taken.
    let reply = manager_post(
        &director,
        &manager,
        "/callback/decrementUserCredit.php",
        &[("sid", &sid_text), ("decrement", "3")],
        &[],
    )
    .await;
    expect_callback(&reply, true);
    assert_eq!(credit(&director, "mary", "pw").await, 2);

    // Hourly charges of 1 until the credit runs out.
    let mut answers = Vec::new();
    for _ in 0..4 {
        let reply = manager_post(
            &director,
            &manager,
            "/callback/decrementUserCredit.php",
            &[("sid", &sid_text), ("decrement", "1")],
            &[],
        )
        .await;
        reply.expect_content_type(JSONIFY);
        answers.push(reply.json()["error"].clone());
    }
    assert_eq!(
        answers,
        [json!(false), json!(false), json!(true), json!(true)]
    );
    assert_eq!(credit(&director, "mary", "pw").await, 0);

    // Termination: the VM goes, the row goes; a second call finds no service.
    let vm = director.dummy_vm_path(&vmid);
    assert!(vm.is_file());
    let reply = manager_post(
        &director,
        &manager,
        "/callback/terminateService.php",
        &[("sid", &sid_text)],
        &[],
    )
    .await;
    expect_callback(&reply, false);
    assert!(!vm.exists(), "the dummy VM is gone after terminateService");
    let reply = director.client(&user).post("/list", &[]).await;
    assert_eq!(reply.bare(true), json!([]), "{}", reply.what);
    let reply = manager_post(
        &director,
        &manager,
        "/callback/terminateService.php",
        &[("sid", &sid_text)],
        &[],
    )
    .await;
    reply.expect_false(true);
    // The manager of a terminated service is nobody.
    let reply = manager_post(
        &director,
        &manager,
        "/callback/decrementUserCredit.php",
        &[("sid", &sid_text), ("decrement", "0")],
        &[],
    )
    .await;
    reply.expect_false(true);
    let reply = manager_post(
        &director,
        &manager,
        "/ca/get_cert.php",
        &[],
        &[("csr", "csr.pem", csr.as_bytes())],
    )
    .await;
    reply.expect_false(true);
    assert_eq!(
        credit(&director, "eve", "pw").await,
        10,
        "nobody charged the other user"
    );
}

#[tokio::test]
async fn odd_decrements_are_refused_without_changing_the_credit() {
    let director = TestDirector::start();
    let uid = i64::from(director.add_user("odd", "pw", 21).await);
    let user = director.user_identity("odd", "pw").await;
    let Started { manager, .. } = start_service(&director, &user, uid).await;
    assert_eq!(credit(&director, "odd", "pw").await, 20);
    let http = director.client(&manager);
    // Spec §6 item 9: negative decrements no longer add credit; garbage answers
    // {"error": true} instead of 500 (the manager reads anything else as "out of credit").
    for decrement in [
        "-5",
        "abc",
        "1.0",
        "",
        "9999999999999999999999",
        "0x10",
        "½",
    ] {
        let reply = http
            .post(
                "/callback/decrementUserCredit.php",
                &[("decrement", decrement)],
            )
            .await;
        reply.expect_no_internals(&director);
        if decrement.is_empty() {
            // An empty value is an absent one: a decrement of 0.
            expect_callback(&reply, false);
        } else {
            expect_callback(&reply, true);
        }
        expect_connection_close(&reply);
        assert_eq!(
            credit(&director, "odd", "pw").await,
            20,
            "decrement {decrement:?}"
        );
    }
    // Absent: 0, accepted. Python's int() accepts surrounding spaces and a sign.
    let reply = http.post("/callback/decrementUserCredit.php", &[]).await;
    expect_callback(&reply, false);
    let reply = http
        .post(
            "/callback/decrementUserCredit.php",
            &[("decrement", " +2 ")],
        )
        .await;
    expect_callback(&reply, false);
    assert_eq!(credit(&director, "odd", "pw").await, 18);
    // The sid field is only logged: another number changes nothing.
    let reply = http
        .post(
            "/callback/decrementUserCredit.php",
            &[("sid", "12345"), ("decrement", "3")],
        )
        .await;
    expect_callback(&reply, false);
    assert_eq!(credit(&director, "odd", "pw").await, 15);
    // But a sid that is not an integer was a 500 in 1.2 (it was parsed to be logged); spec §6
    // item 13 makes every non-integer number of a callback {"error": true}.
    let reply = http
        .post(
            "/callback/decrementUserCredit.php",
            &[("sid", "abc"), ("decrement", "1")],
        )
        .await;
    reply.expect_no_internals(&director);
    expect_callback(&reply, true);
    assert_eq!(credit(&director, "odd", "pw").await, 15);
}

/// Answers given before a handler runs (a body over the limit, unreadable parameters) close the
/// connection too: a 1.2 manager reading until EOF must not hang on them.
#[tokio::test]
async fn early_refusals_on_manager_routes_close_the_connection() {
    let director = TestDirector::start();
    let uid = i64::from(director.add_user("early", "pw", 5).await);
    let user = director.user_identity("early", "pw").await;
    let Started { manager, .. } = start_service(&director, &user, uid).await;
    let http = director.client(&manager);
    // Non-UTF-8 parameters are refused (400) before the handler runs.
    let url = director
        .client(&manager)
        .url("/callback/decrementUserCredit.php");
    let reply = http
        .send(
            "POST non-UTF-8 form".into(),
            http.inner()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("decrement=1&name=%ff"),
        )
        .await;
    reply.expect_status(400);
    expect_connection_close(&reply);
    assert_eq!(
        credit(&director, "early", "pw").await,
        4,
        "nothing was charged"
    );
}
