//! Bad input: missing and empty fields, unknown names, paths and methods that do not match,
//! huge bodies, bytes that are not UTF-8, garbage CSRs, JSON bodies. Each gets its documented
//! answer, never a 500 or a glimpse of the server's insides, and the database is unchanged.

use serde_json::{Value, json};

use std::time::Duration;

use super::manager::{credit, expect_callback, start_service};
use crate::support::http::BARE;
use crate::support::raw::send_and_read_first_answer;
use crate::support::{Identity, Options, TestDirector, assert_no_failures, record_failure};

/// What a user can see of their own state: services, applications, credit.
async fn snapshot(
    director: &TestDirector,
    user: &Identity,
    username: &str,
    password: &str,
) -> (Value, Value, i64) {
    let http = director.client(user);
    (
        http.post("/list", &[]).await.bare(true),
        http.post("/listapp", &[]).await.bare(true),
        credit(director, username, password).await,
    )
}

/// The seven fields of `/new_user`, in the order 1.2 checks them.
const NEW_USER_FIELDS: [&str; 7] = [
    "username",
    "fname",
    "lname",
    "email",
    "affiliation",
    "password",
    "credit",
];

fn registration(username: &str) -> Vec<(&'static str, String)> {
    NEW_USER_FIELDS
        .iter()
        .map(|field| {
            let value = match *field {
                "username" => username.to_owned(),
                "email" => format!("{username}@example.org"),
                "credit" => "10".to_owned(),
                other => format!("{other} value"),
            };
            (*field, value)
        })
        .collect()
}

async fn exists(director: &TestDirector, username: &str, password: &str) -> bool {
    let reply = director
        .anonymous()
        .post("/login", &[("username", username), ("password", password)])
        .await;
    reply.bare(true) != Value::Bool(false)
}

#[tokio::test]
async fn new_user_names_the_first_missing_field() {
    let director = TestDirector::start();
    let frontend = director.client(&director.frontend());
    for (index, missing) in NEW_USER_FIELDS.iter().enumerate() {
        let username = format!("missing{index}");
        for empty in [false, true] {
            let fields: Vec<(&str, String)> = registration(&username)
                .into_iter()
                .filter_map(|(field, value)| match (field == *missing, empty) {
                    (false, _) => Some((field, value)),
                    (true, true) => Some((field, String::new())),
                    (true, false) => None,
                })
                .collect();
            let fields: Vec<(&str, &str)> = fields.iter().map(|(f, v)| (*f, v.as_str())).collect();
            // Both encodings the clients use.
            for reply in [
                frontend.post("/new_user", &fields).await,
                frontend.post_multipart("/new_user", &fields).await,
            ] {
                reply.expect_no_internals(&director);
                reply.expect_error(&format!("{missing} is a required field"), true);
            }
            assert!(
                !exists(&director, &username, "password value").await,
                "{username} was created"
            );
        }
    }
    // Several missing: the first in 1.2's order is named.
    let reply = frontend
        .post(
            "/new_user",
            &[
                ("username", "x"),
                ("lname", "l"),
                ("affiliation", "a"),
                ("credit", "1"),
            ],
        )
        .await;
    reply.expect_error("fname is a required field", true);
    let reply = frontend.post("/new_user", &[]).await;
    reply.expect_error("username is a required field", true);
    // "0" is present.
    let mut fields = registration("zero");
    fields.retain(|(field, _)| *field != "credit");
    fields.push(("credit", "0".to_owned()));
    let fields: Vec<(&str, &str)> = fields.iter().map(|(f, v)| (*f, v.as_str())).collect();
    let reply = frontend.post("/new_user", &fields).await;
    assert_eq!(reply.bare(true)["credit"], json!(0), "{}", reply.what);
}

#[tokio::test]
async fn new_user_refuses_taken_names_odd_credit_and_the_reserved_name() {
    let director = TestDirector::start();
    let frontend = director.client(&director.frontend());
    let first: Vec<(&str, String)> = registration("taken");
    let fields: Vec<(&str, &str)> = first.iter().map(|(f, v)| (*f, v.as_str())).collect();
    frontend.post("/new_user", &fields).await.bare(true);

    // Same user name, another e-mail.
    let mut again = first.clone();
    again.retain(|(field, _)| *field != "email");
    again.push(("email", "other@example.org".to_owned()));
    let fields: Vec<(&str, &str)> = again.iter().map(|(f, v)| (*f, v.as_str())).collect();
    frontend
        .post("/new_user", &fields)
        .await
        .expect_error("Username \"taken\" already taken", true);

    // Another user name, same e-mail.
    let mut again = first.clone();
    again.retain(|(field, _)| *field != "username");
    again.insert(0, ("username", "other".to_owned()));
    let fields: Vec<(&str, &str)> = again.iter().map(|(f, v)| (*f, v.as_str())).collect();
    frontend
        .post("/new_user", &fields)
        .await
        .expect_error("E-mail \"taken@example.org\" already registered", true);
    assert!(!exists(&director, "other", "password value").await);

    // Credit that is not an integer (spec §6 item 3): an error object, no account.
    for (index, credit) in ["abc", "1.0", "1e3", ""].iter().enumerate() {
        let name = format!("credit{index}");
        let mut fields = registration(&name);
        fields.retain(|(field, _)| *field != "credit");
        fields.push(("credit", (*credit).to_owned()));
        let fields: Vec<(&str, &str)> = fields.iter().map(|(f, v)| (*f, v.as_str())).collect();
        let reply = frontend.post("/new_user", &fields).await;
        reply.expect_no_internals(&director);
        reply.expect_error_object(true);
        assert!(
            !exists(&director, &name, "password value").await,
            "credit {credit:?}"
        );
    }

    // `CA` would get a certificate with CN=CA, which every 1.2 manager accepts blindly
    // (certificates.md §11.1, §13.2).
    let mut fields = registration("CA");
    fields.retain(|(field, _)| *field != "email");
    fields.push(("email", "ca@example.org".to_owned()));
    let fields: Vec<(&str, &str)> = fields.iter().map(|(f, v)| (*f, v.as_str())).collect();
    let reply = frontend.post("/new_user", &fields).await;
    reply.expect_no_internals(&director);
    reply.expect_error_object(true);
    assert!(!exists(&director, "CA", "password value").await);
}

#[tokio::test]
async fn start_refuses_bad_input_and_changes_nothing() {
    let director = TestDirector::start();
    let uid = director.add_user("starter", "pw", 5).await;
    let other = director.add_user("other", "pw", 5).await;
    let _ = (uid, other);
    let user = director.user_identity("starter", "pw").await;
    let other_user = director.user_identity("other", "pw").await;
    let other_aid = director
        .client(&other_user)
        .post("/listapp", &[])
        .await
        .bare(true)[0]["aid"]
        .as_i64()
        .unwrap();
    let http = director.client(&user);
    let before = snapshot(&director, &user, "starter", "pw").await;

    // (path, fields, message)
    type Case = (String, Vec<(&'static str, String)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            "/start/php".into(),
            vec![("appid", "abc".into())],
            "Application not found",
        ),
        (
            "/start/php".into(),
            vec![("appid", "99999".into())],
            "Application not found",
        ),
        (
            "/start/php".into(),
            vec![("appid", "1.0".into())],
            "Application not found",
        ),
        (
            "/start/php".into(),
            vec![("appid", other_aid.to_string())],
            "Application not found",
        ),
        ("/start/x".into(), vec![], "Unknown service type: x"),
        // The type is checked first.
        (
            "/start/x".into(),
            vec![("appid", "abc".into())],
            "Unknown service type: x",
        ),
        ("/start/PHP".into(), vec![], "Unknown service type: PHP"),
        (
            "/start/cds/default".into(),
            vec![],
            "Unknown service type: cds",
        ),
    ];
    for (path, fields, msg) in &cases {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(f, v)| (*f, v.as_str())).collect();
        let reply = http.post(path, &fields).await;
        reply.expect_no_internals(&director);
        reply.expect_error(msg, true);
    }
    // An unknown cloud: 1.2's "Error upon service creation: " prefix, without Python's
    // exception text (spec §6 item 20).
    for path in ["/start/php/nocloud", "/start/php/ec2", "/start/php/DEFAULT"] {
        let reply = http.post(path, &[]).await;
        reply.expect_no_internals(&director);
        let msg = reply.expect_error_object(true);
        assert!(
            msg.starts_with("Error upon service creation: "),
            "{}: {msg}",
            reply.what
        );
    }
    assert_eq!(snapshot(&director, &user, "starter", "pw").await, before);
    assert!(
        !director.data_dir().join("dummy-cloud").exists()
            || std::fs::read_dir(director.data_dir().join("dummy-cloud"))
                .unwrap()
                .next()
                .is_none(),
        "no VM was left behind"
    );

    // No credit left: refused, nothing charged, no row.
    let poor = director.add_user("poor", "pw", 0).await;
    let _ = poor;
    let poor_user = director.user_identity("poor", "pw").await;
    let reply = director.client(&poor_user).post("/start/php", &[]).await;
    reply.expect_no_internals(&director);
    let msg = reply.expect_error_object(true);
    assert!(
        msg.starts_with("Error upon service creation: ") && msg.contains("Not enough credits"),
        "{msg}"
    );
    assert_eq!(
        director
            .client(&poor_user)
            .post("/list", &[])
            .await
            .bare(true),
        json!([])
    );
    assert_eq!(credit(&director, "poor", "pw").await, 0);

    // No application left to default to: `Application not found` (spec §6 item 13), not 500.
    let aid = before.1[0]["aid"].as_i64().unwrap();
    http.post(&format!("/delete/{aid}"), &[])
        .await
        .expect_true(true);
    let reply = http.post("/start/php", &[]).await;
    reply.expect_no_internals(&director);
    reply.expect_error("Application not found", true);
    assert_eq!(credit(&director, "starter", "pw").await, 5);
}

#[tokio::test]
async fn empty_and_foreign_names_are_refused() {
    let director = TestDirector::start();
    let uid = i64::from(director.add_user("namer", "pw", 5).await);
    let user = director.user_identity("namer", "pw").await;
    let started = start_service(&director, &user, uid).await;
    let http = director.client(&user);
    let before = snapshot(&director, &user, "namer", "pw").await;
    let aid = before.1[0]["aid"].as_i64().unwrap();

    // `name` missing or empty: bare false, text/html, CORS (checked before ownership).
    for fields in [vec![], vec![("name", "")]] {
        http.post("/createapp", &fields).await.expect_false(true);
        http.post(&format!("/rename/{}", started.sid), &fields)
            .await
            .expect_false(true);
        http.post(&format!("/renameapp/{aid}"), &fields)
            .await
            .expect_false(true);
        http.post("/rename/99999", &fields).await.expect_false(true);
        http.post("/renameapp/99999", &fields)
            .await
            .expect_false(true);
    }
    // Not the caller's: false (1.2's 500 on /renameapp became false, spec §6 item 13).
    http.post("/rename/99999", &[("name", "x")])
        .await
        .expect_false(false);
    let reply = http.post("/renameapp/99999", &[("name", "x")]).await;
    reply.expect_no_internals(&director);
    let cors = reply.has_cors();
    reply.expect_false(cors);
    http.post("/stop/99999", &[]).await.expect_false(true);
    http.post("/delete/99999", &[]).await.expect_false(true);
    http.post("/download_manifest/99999", &[])
        .await
        .expect_false(false);
    http.post("/download_manifest/abc", &[])
        .await
        .expect_false(false);
    assert_eq!(http.post("/list/99999", &[]).await.bare(true), json!([]));
    // The application name is taken.
    http.post("/createapp", &[("name", "New Application")])
        .await
        .expect_error("Application name \"New Application\" already taken", true);
    assert_eq!(snapshot(&director, &user, "namer", "pw").await, before);
    // Leading zeros are digits (spec §1.1): /stop/007 is service 7.
    let padded = format!("/stop/{:0>5}", started.sid);
    http.post(&padded, &[]).await.expect_true(true);
}

#[tokio::test]
async fn paths_that_match_no_route_are_404() {
    let director = TestDirector::start();
    director.add_user("walker", "pw", 5).await;
    let user = director.user_identity("walker", "pw").await;
    let http = director.client(&user);
    for (method, path) in [
        ("GET", "/"),
        ("POST", "/"),
        ("POST", "/stop/abc"),
        ("POST", "/stop/-1"),
        ("POST", "/stop/1.0"),
        ("POST", "/stop/"),
        ("POST", "/stop"),
        ("POST", "/list/"),
        ("GET", "/list/"),
        ("POST", "/list/abc"),
        ("POST", "/start/php/"),
        ("POST", "/start/"),
        ("POST", "/start/php/default/x"),
        ("POST", "/listapp/"),
        ("POST", "/login/"),
        ("POST", "/new_user/"),
        ("POST", "/LIST"),
        ("POST", "/delete/abc"),
        ("POST", "/renameapp/abc"),
        ("POST", "/rename/abc"),
        ("POST", "/download_manifest/"),
        ("POST", "/ca/get_cert.php/"),
        ("POST", "/ca/get_cert"),
        ("POST", "/callback/decrementUserCredit"),
        ("GET", "/download/other.tar.gz"),
        ("GET", "/download/"),
        ("POST", "/get_user_certs"),
        ("GET", "/user_credit"),
        ("GET", "/nothing/here"),
        ("GET", "/..%2fdirector.cfg"),
        ("GET", "/download/..%2fdirector.cfg"),
    ] {
        let reply = http.request(method, path).await;
        reply.expect_no_internals(&director);
        reply.expect_not_found();
    }
    // Anonymous callers see the same 404s.
    director.anonymous().get("/").await.expect_not_found();
    director
        .anonymous()
        .get("/nothing")
        .await
        .expect_not_found();
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow() {
    let director = TestDirector::start();
    let http = director.anonymous();
    for (method, path, allowed, refused) in [
        ("GET", "/new_user", &["POST"][..], &["GET"][..]),
        ("GET", "/login", &["POST"], &["GET"]),
        ("GET", "/start/php", &["POST"], &["GET"]),
        ("GET", "/start/php/default", &["POST"], &["GET"]),
        ("GET", "/stop/1", &["POST"], &["GET"]),
        ("GET", "/rename/1", &["POST"], &["GET"]),
        ("GET", "/createapp", &["POST"], &["GET"]),
        ("GET", "/delete/1", &["POST"], &["GET"]),
        ("GET", "/renameapp/1", &["POST"], &["GET"]),
        ("GET", "/upload_manifest", &["POST"], &["GET"]),
        ("GET", "/download_manifest/1", &["POST"], &["GET"]),
        ("GET", "/ca/get_cert.php", &["POST"], &["GET"]),
        (
            "GET",
            "/callback/decrementUserCredit.php",
            &["POST"],
            &["GET"],
        ),
        ("GET", "/callback/terminateService.php", &["POST"], &["GET"]),
        ("POST", "/available_services", &["GET"], &["POST"]),
        ("POST", "/available_clouds", &["GET"], &["POST"]),
        ("POST", "/download/ConPaaS.tar.gz", &["GET"], &["POST"]),
        ("PUT", "/list", &["GET", "POST"], &["PUT"]),
        ("DELETE", "/listapp", &["GET", "POST"], &["DELETE"]),
        ("PUT", "/getcerts", &["GET", "POST"], &["PUT"]),
        ("DELETE", "/delete/1", &["POST"], &["DELETE"]),
    ] {
        let reply = http.request(method, path).await;
        reply.expect_no_internals(&director);
        reply.expect_method_not_allowed(allowed, refused);
    }
}

/// The routes a huge body is sent to, with the caller and the content type.
fn huge_body_cases<'a>(
    director: &'a TestDirector,
    user: &'a Identity,
    manager: &'a Identity,
) -> Vec<(Option<Identity>, &'static str, &'static str)> {
    let urlencoded = "application/x-www-form-urlencoded";
    let multipart = "multipart/form-data; boundary=----------_BoUnDaRy_StRiNg_$";
    vec![
        (None, "/login", urlencoded),
        (Some(director.frontend()), "/new_user", multipart),
        (Some(user.clone()), "/createapp", urlencoded),
        (Some(user.clone()), "/upload_manifest", multipart),
        (Some(manager.clone()), "/ca/get_cert.php", multipart),
        (
            Some(manager.clone()),
            "/callback/decrementUserCredit.php",
            multipart,
        ),
    ]
}

#[tokio::test]
async fn bodies_announced_over_the_limit_are_refused_before_they_are_sent() {
    // A request whose Content-Length is over the limit is answered 413 at once: with `Expect:
    // 100-continue` (curl sends it for bodies over 1 MiB) the body is never asked for, and
    // without it the server does not wait for 4 MiB it will refuse anyway. Reading part of
    // the body first and then closing makes clients see a broken pipe instead of the 413.
    let director = TestDirector::start();
    let uid = i64::from(director.add_user("big", "pw", 5).await);
    let user = director.user_identity("big", "pw").await;
    let started = start_service(&director, &user, uid).await;
    let mut failures = Vec::new();
    for (identity, path, content_type) in huge_body_cases(&director, &user, &started.manager) {
        // Without `Expect`, two routes are enough (each failure waits for the patience).
        let variants: &[bool] = if matches!(path, "/login" | "/ca/get_cert.php") {
            &[true, false]
        } else {
            &[true]
        };
        for &expect_continue in variants {
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: localhost:{}\r\nContent-Type: {content_type}\r\n\
                 Content-Length: {}\r\n{}\r\n",
                director.port(),
                4 * 1024 * 1024,
                if expect_continue {
                    "Expect: 100-continue\r\n"
                } else {
                    ""
                },
            );
            let what =
                format!("POST {path} announcing 4 MiB (Expect: 100-continue: {expect_continue})");
            let outcome = send_and_read_first_answer(
                &director,
                identity.as_ref(),
                &what,
                head.as_bytes(),
                Duration::from_secs(2),
            )
            .await;
            record_failure(&mut failures, &what, || {
                let reply = outcome.unwrap_or_else(|message| panic!("{message}"));
                reply.expect_no_internals(&director);
                reply.expect_status(413);
            });
        }
    }
    assert_no_failures("requests announcing a huge body", &failures);
}

#[tokio::test]
async fn options_and_head_answer_as_flask_did() {
    // Spec §1.5: OPTIONS on any route is 200 with `Allow` and an empty body; HEAD on a GET
    // route is GET without the body; neither carries the CORS header.
    let director = TestDirector::start();
    let http = director.anonymous();
    for (path, allowed) in [
        ("/login", &["POST", "OPTIONS"][..]),
        ("/list", &["GET", "HEAD", "POST", "OPTIONS"]),
        ("/stop/3", &["POST", "OPTIONS"]),
        ("/available_services", &["GET", "HEAD", "OPTIONS"]),
    ] {
        let reply = http.request("OPTIONS", path).await;
        reply.expect_status(200).expect_cors(false);
        let allow: Vec<String> = reply
            .header("allow")
            .unwrap_or_default()
            .split(',')
            .map(|method| method.trim().to_owned())
            .collect();
        let mut sorted_allow = allow.clone();
        sorted_allow.sort();
        let mut expected: Vec<String> = allowed.iter().map(|method| (*method).to_owned()).collect();
        expected.sort();
        assert_eq!(sorted_allow, expected, "{}", reply.what);
        assert!(reply.body.is_empty(), "{}", reply.what);
    }
    http.request("OPTIONS", "/nothing").await.expect_not_found();
    let get = http.get("/available_services").await;
    let head = http.head("/available_services").await;
    head.expect_status(200)
        .expect_content_type(BARE)
        .expect_cors(false);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), get.header("content-length"));
}

#[tokio::test]
async fn huge_bodies_change_nothing_and_the_server_keeps_working() {
    let director = TestDirector::start();
    let uid = i64::from(director.add_user("big", "pw", 5).await);
    let user = director.user_identity("big", "pw").await;
    let started = start_service(&director, &user, uid).await;
    let before = snapshot(&director, &user, "big", "pw").await;
    let huge = "x".repeat(4 * 1024 * 1024);
    for (identity, path, content_type) in huge_body_cases(&director, &user, &started.manager) {
        let body = if content_type.starts_with("multipart/") {
            let name = if path == "/ca/get_cert.php" {
                "csr\"; filename=\"csr.pem"
            } else {
                "fname"
            };
            format!(
                "------------_BoUnDaRy_StRiNg_$\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{huge}\r\n------------_BoUnDaRy_StRiNg_$--\r\n"
            )
        } else {
            format!("username=big&password={huge}&name={huge}")
        };
        let http = match &identity {
            Some(identity) => director.client(identity),
            None => director.anonymous(),
        };
        // The whole body pushed at once: the answer is a 413, or the server cuts the upload
        // short; never a success, never a 5xx.
        match http
            .try_post_body(path, content_type, body.into_bytes())
            .await
        {
            Ok(reply) => {
                reply.expect_no_internals(&director);
                reply.expect_status(413);
            }
            Err(error) => assert!(
                error.contains("BrokenPipe")
                    || error.contains("ConnectionReset")
                    || error.contains("BodyWrite"),
                "{error}"
            ),
        }
    }
    // Still serving, nothing changed.
    director
        .anonymous()
        .get("/available_clouds")
        .await
        .bare(false);
    assert_eq!(snapshot(&director, &user, "big", "pw").await, before);
    assert!(!exists(&director, "huge", "x").await);
}

#[tokio::test]
async fn values_that_are_not_utf8_change_nothing() {
    let director = TestDirector::start();
    director.add_user("bytes", "pw", 5).await;
    let user = director.user_identity("bytes", "pw").await;
    let before = snapshot(&director, &user, "bytes", "pw").await;
    let form = "application/x-www-form-urlencoded";
    let http = director.client(&user);
    let anonymous = director.anonymous();
    let frontend = director.client(&director.frontend());
    let multipart = |name: &str, value: &[u8]| {
        let boundary = "b0undary";
        let mut body =
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                .into_bytes();
        body.extend_from_slice(value);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={boundary}"), body)
    };
    let (mp_type, mp_body) = multipart("name", b"caf\xe9");
    let replies = vec![
        anonymous
            .post_body("/login", form, b"username=bytes&password=%FF%FE".to_vec())
            .await,
        anonymous
            .post_body("/login", form, b"username=%C3%28&password=pw".to_vec())
            .await,
        http.post_body("/createapp", form, b"name=%FF%FE".to_vec())
            .await,
        http.post_body("/createapp", form, b"name=caf\xe9".to_vec())
            .await,
        http.post_body("/createapp", &mp_type, mp_body).await,
        frontend
            .post_body(
                "/new_user",
                form,
                b"username=%FF&fname=f&lname=l&email=e%40x&affiliation=a&password=p&credit=1"
                    .to_vec(),
            )
            .await,
        http.request("POST", "/list/%FF").await,
        http.request("POST", "/start/%FF").await,
        http.request("POST", "/download_manifest/%FF").await,
    ];
    for reply in replies {
        reply.expect_no_internals(&director);
        // Refused one way or another: a 4xx, `false`, or an error object; never a success.
        if reply.status == 200 {
            let value = reply.json();
            let refused = value == Value::Bool(false)
                || value == json!([])
                || (value["error"] == json!(true) && value["msg"].is_string());
            if !refused {
                reply.fail("a value that is not UTF-8 must not be taken");
            }
        } else if !(400..500).contains(&reply.status) {
            reply.fail("expected a 4xx or a refusal");
        }
    }
    assert_eq!(snapshot(&director, &user, "bytes", "pw").await, before);
}

#[tokio::test]
async fn garbage_csrs_are_refused_without_a_certificate() {
    let director = TestDirector::start();
    let uid = i64::from(director.add_user("csr", "pw", 5).await);
    let user = director.user_identity("csr", "pw").await;
    let started = start_service(&director, &user, uid).await;
    let manager = director.client(&started.manager);
    let dir = director.scratch("csr");
    let good = director.make_csr(
        &dir,
        &format!("/UID={uid}/serviceLocator={}/O=ConPaaS/emailAddress=info@conpaas.eu/CN=ConPaaS/role=agent", started.sid),
    );
    // The same CSR with one byte of its signature changed: not signed by its key.
    let tampered = {
        let der = director.openssl(
            &dir,
            &[
                "req", "-in", "csr.pem", "-outform", "DER", "-out", "csr.der",
            ],
        );
        let _ = der;
        let mut bytes = std::fs::read(dir.join("csr.der")).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(dir.join("tampered.der"), &bytes).unwrap();
        director.openssl(
            &dir,
            &[
                "req",
                "-in",
                "tampered.der",
                "-inform",
                "DER",
                "-out",
                "tampered.pem",
            ],
        );
        std::fs::read_to_string(dir.join("tampered.pem")).unwrap()
    };
    assert_ne!(tampered, good);
    let certificate_like =
        "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3Ny\n-----END CERTIFICATE REQUEST-----\n";
    for (what, content) in [
        ("garbage", b"this is not a CSR".to_vec()),
        ("empty", Vec::new()),
        (
            "PEM armour around junk",
            certificate_like.as_bytes().to_vec(),
        ),
        (
            "a certificate instead of a CSR",
            started.manager.cert_pem.as_bytes().to_vec(),
        ),
        ("a broken signature", tampered.into_bytes()),
        ("binary", (0..=255u8).collect()),
    ] {
        let reply = manager
            .post_file("/ca/get_cert.php", "csr", "csr.pem", &content)
            .await;
        reply.expect_no_internals(&director);
        // certificates.md §13.2: on refusal a non-2xx status and a body that is not PEM.
        if !(400..500).contains(&reply.status) || reply.text().contains("BEGIN CERTIFICATE") {
            reply.fail(&format!("{what}: expected a 4xx without a certificate"));
        }
    }
    // No `csr` file part: 400; a plain field named csr does not count (spec §1.2, §3.17).
    let reply = manager.post("/ca/get_cert.php", &[]).await;
    reply.expect_no_internals(&director);
    reply.expect_status(400).expect_media_type("text/html");
    let reply = manager
        .post_multipart("/ca/get_cert.php", &[("csr", &good)])
        .await;
    reply.expect_status(400).expect_media_type("text/html");
    let reply = manager
        .post_file("/ca/get_cert.php", "other", "csr.pem", good.as_bytes())
        .await;
    reply.expect_status(400).expect_media_type("text/html");
    // The good one still works.
    let reply = manager
        .post_file("/ca/get_cert.php", "csr", "csr.pem", good.as_bytes())
        .await;
    reply.expect_status(200).expect_content_type(BARE);
}

#[tokio::test]
async fn json_bodies_carry_no_parameters() {
    let director = TestDirector::start();
    let uid = i64::from(director.add_user("jason", "pw", 5).await);
    let user = director.user_identity("jason", "pw").await;
    let started = start_service(&director, &user, uid).await;
    let before = snapshot(&director, &user, "jason", "pw").await;
    let json_type = "application/json";
    let body = |value: Value| value.to_string().into_bytes();

    let reply = director
        .anonymous()
        .post_body(
            "/login",
            json_type,
            body(json!({"username": "jason", "password": "pw"})),
        )
        .await;
    reply.expect_false(true);
    let reply = director
        .client(&director.frontend())
        .post_body(
            "/new_user",
            json_type,
            body(
                json!({"username": "j2", "fname": "f", "lname": "l", "email": "j2@x",
                        "affiliation": "a", "password": "pw", "credit": "5"}),
            ),
        )
        .await;
    reply.expect_error("username is a required field", true);
    let http = director.client(&user);
    http.post_body("/createapp", json_type, body(json!({"name": "from json"})))
        .await
        .expect_false(true);
    http.post_body(
        &format!("/rename/{}", started.sid),
        json_type,
        body(json!({"name": "from json"})),
    )
    .await
    .expect_false(true);
    http.post_body(
        "/upload_manifest",
        json_type,
        body(json!({"manifest": "{}"})),
    )
    .await
    .expect_false(true);
    // Without parameters the decrement is 0: accepted, nothing charged.
    let reply = director
        .client(&started.manager)
        .post_body(
            "/callback/decrementUserCredit.php",
            json_type,
            body(json!({"decrement": 3})),
        )
        .await;
    expect_callback(&reply, false);
    assert_eq!(snapshot(&director, &user, "jason", "pw").await, before);
}

#[tokio::test]
async fn manifests_that_cannot_be_used_are_false() {
    // Spec §3.15 validation and §6 item 13 (1.2's 500s become `false`).
    let director = TestDirector::with(Options::new());
    director.add_user("mani", "pw", 5).await;
    let user = director.user_identity("mani", "pw").await;
    let http = director.client(&user);
    let before = snapshot(&director, &user, "mani", "pw").await;
    // `Some(cors)`: the spec gives the CORS header; `None`: 1.2 answered 500 there.
    for (manifest, cors) in [
        ("{not json", Some(false)),
        ("[]", None),
        ("\"text\"", None),
        ("{\"Application\": \"m\"}", None),
        ("{\"Application\": \"m\", \"Services\": null}", None),
        ("{\"Application\": \"m\", \"Services\": 3}", None),
        ("{\"Application\": \"m\", \"Services\": \"php\"}", None),
        (
            "{\"Application\": \"m\", \"Services\": {\"Type\": \"php\"}}",
            None,
        ),
        ("{\"Application\": \"m\", \"Services\": [3]}", None),
        ("{\"Application\": \"m\", \"Services\": [{}]}", Some(false)),
        (
            "{\"Application\": \"m\", \"Services\": [{\"Type\": \"\"}]}",
            Some(false),
        ),
    ] {
        let reply = http
            .post("/upload_manifest", &[("manifest", manifest)])
            .await;
        reply.expect_no_internals(&director);
        reply.expect_false(cors.unwrap_or_else(|| reply.has_cors()));
    }
    assert_eq!(snapshot(&director, &user, "mani", "pw").await, before);
}

/// Password guessing: after 20 failed attempts from one address within five minutes, even the
/// right password is answered `false` (as if wrong) without being checked; 1.2 answered every
/// guess at once, forever.
#[tokio::test]
async fn password_guessing_is_throttled_per_address() {
    let director = TestDirector::start();
    director.add_user("target", "right", 5).await;
    let http = director.anonymous();
    let reply = http
        .post("/login", &[("username", "target"), ("password", "right")])
        .await;
    assert_eq!(reply.bare(true)["username"], "target");
    for attempt in 0..20 {
        let password = format!("guess{attempt}");
        http.post("/login", &[("username", "target"), ("password", &password)])
            .await
            .expect_false(true);
    }
    http.post("/login", &[("username", "target"), ("password", "right")])
        .await
        .expect_false(true);
    http.post(
        "/getcerts",
        &[("username", "target"), ("password", "right")],
    )
    .await
    .expect_false(true);
}

/// The PHP frontend logs every user in from one address with the director's certificate: there
/// the throttle counts per account, so one user's mistyped (or guessed) passwords do not lock
/// the others out.
#[tokio::test]
async fn behind_the_frontend_guessing_is_throttled_per_account() {
    let director = TestDirector::start();
    director.add_user("target", "right", 5).await;
    director.add_user("bystander", "pw", 5).await;
    let frontend = director.client(&director.frontend());
    for attempt in 0..20 {
        let password = format!("guess{attempt}");
        frontend
            .post("/login", &[("username", "target"), ("password", &password)])
            .await
            .expect_false(true);
    }
    frontend
        .post("/login", &[("username", "target"), ("password", "right")])
        .await
        .expect_false(true);
    let reply = frontend
        .post("/login", &[("username", "bystander"), ("password", "pw")])
        .await;
    assert_eq!(reply.bare(true)["username"], "bystander");
}
