//! The user story, run by three real clients against a real director (RSA keys, as an
//! installation has by default): reqwest; `curl` posting multipart like the PHP frontend;
//! and a Python 3 client shaped like the 1.2 cpsclient. Every answer is checked against
//! spec/director-api.md: status, content type, CORS header, JSON members and their types.

use serde_json::{Value, json};

use super::shapes::{
    ExpectedService, ExpectedUser, check_application, check_applications, check_certs_zip,
    check_service, check_user, service_ids,
};
use crate::support::clients::{Call, Curl, Python, Reqwest, Transport};
use crate::support::{Identity, Options, Reply, TestDirector};

/// The nine service types `/start` accepts (spec §3.4).
pub const SERVICE_TYPES: [&str; 9] = [
    "php",
    "java",
    "mysql",
    "scalaris",
    "hadoop",
    "helloworld",
    "xtreemfs",
    "selenium",
    "taskfarm",
];

async fn send<T: Transport>(
    director: &TestDirector,
    client: &T,
    method: &str,
    path: &str,
    fields: &[(&str, &str)],
    identity: Option<&Identity>,
) -> Reply {
    client
        .send(
            director,
            Call {
                method,
                path,
                fields,
                identity,
            },
        )
        .await
}

/// The whole story for one client and one new user; `cpsclient` says whether the client adds
/// the user's credentials to every call once it has them.
async fn user_story<T: Transport>(director: &TestDirector, client: &T, username: &str) {
    let password = "p@ss wörd&=1";
    let email = format!("{username}@example.org");
    let frontend = director.frontend();

    // `cpsclient credentials` first checks that the URL is a director: a JSON list.
    let reply = send(director, client, "GET", "/available_services", &[], None).await;
    let services = reply.bare(false);
    let Some(list) = services.as_array() else {
        reply.fail("expected a JSON list");
    };
    for service_type in SERVICE_TYPES {
        if !list.iter().any(|item| item == service_type) {
            reply.fail(&format!("{service_type} is missing"));
        }
    }
    if list
        .iter()
        .any(|item| !item.is_string() || !SERVICE_TYPES.contains(&item.as_str().unwrap()))
    {
        reply.fail("only the nine 1.2 service types are listed");
    }
    let reply = send(director, client, "GET", "/available_clouds", &[], None).await;
    assert_eq!(reply.bare(false), json!(["default"]), "{}", reply.what);

    // Registration, through the frontend's certificate (closed registration).
    let expected_user = ExpectedUser {
        username,
        fname: "Ada",
        lname: "Lovelace",
        email: &email,
        affiliation: "VU Amsterdam",
        password,
        credit: 50,
    };
    let fields = [
        ("username", username),
        ("fname", "Ada"),
        ("lname", "Lovelace"),
        ("email", email.as_str()),
        ("affiliation", "VU Amsterdam"),
        ("password", password),
        ("credit", "50"),
    ];
    let reply = send(
        director,
        client,
        "POST",
        "/new_user",
        &fields,
        Some(&frontend),
    )
    .await;
    let uid = check_user(&reply, &reply.bare(true), &expected_user);
    client.learn_credentials(username, password);

    // Login, then a wrong password.
    let credentials = [("username", username), ("password", password)];
    let reply = send(director, client, "POST", "/login", &credentials, None).await;
    assert_eq!(check_user(&reply, &reply.bare(true), &expected_user), uid);
    let wrong = [("username", username), ("password", "not it")];
    send(director, client, "POST", "/login", &wrong, None)
        .await
        .expect_false(true);

    // Certificates.
    let (reply, user) = client.getcerts(director, username, password).await;
    check_certs_zip(director, &reply, uid, username, &email);

    // Applications: the default one exists; create a second one.
    let reply = send(director, client, "POST", "/listapp", &[], Some(&user)).await;
    let apps = reply.bare(true);
    let default_aid = apps
        .as_array()
        .and_then(|apps| apps.first())
        .and_then(|app| app["aid"].as_i64())
        .unwrap_or_else(|| reply.fail("expected one application"));
    check_applications(&reply, &apps, &[(default_aid, "New Application")]);

    let reply = send(
        director,
        client,
        "POST",
        "/createapp",
        &[("name", "Story app")],
        Some(&user),
    )
    .await;
    let aid = check_application(&reply, &reply.jsonify(true), "Story app");
    let reply = send(director, client, "POST", "/listapp", &[], Some(&user)).await;
    check_applications(
        &reply,
        &reply.bare(true),
        &[(default_aid, "New Application"), (aid, "Story app")],
    );

    // A service in the new application.
    let aid_text = aid.to_string();
    let reply = send(
        director,
        client,
        "POST",
        "/start/php",
        &[("appid", &aid_text)],
        Some(&user),
    )
    .await;
    let started = reply.jsonify(true);
    let expected_service = ExpectedService {
        sid: None,
        name: "New php service",
        service_type: "php",
        user_id: uid,
        application_id: aid,
        subnet: None,
    };
    let (sid, vmid) = check_service(&reply, &started, &expected_service);
    let vm = director.dummy_vm_path(&vmid);
    assert!(vm.is_file(), "the dummy VM {} exists", vm.display());
    let reply = send(director, client, "POST", "/login", &credentials, None).await;
    check_user(
        &reply,
        &reply.bare(true),
        &ExpectedUser {
            credit: 49,
            ..expected_user
        },
    );

    // Lists: all services, the application's, the default application's.
    let expected_service = ExpectedService {
        sid: Some(sid),
        ..expected_service
    };
    let reply = send(director, client, "POST", "/list", &[], Some(&user)).await;
    let list = reply.bare(true);
    assert_eq!(service_ids(&reply, &list), [sid], "{}", reply.what);
    check_service(&reply, &list[0], &expected_service);
    assert_eq!(list[0], started, "/list shows what /start answered");
    let reply = send(director, client, "GET", "/list", &[], Some(&user)).await;
    assert_eq!(reply.bare(true), list, "GET /list is POST /list");
    let reply = send(
        director,
        client,
        "POST",
        &format!("/list/{aid}"),
        &[],
        Some(&user),
    )
    .await;
    assert_eq!(reply.bare(true), list, "{}", reply.what);
    let reply = send(
        director,
        client,
        "POST",
        &format!("/list/{default_aid}"),
        &[],
        Some(&user),
    )
    .await;
    assert_eq!(reply.bare(true), json!([]), "{}", reply.what);

    // Renames (no CORS on success: spec §3.8, §3.13), non-ASCII names kept.
    let new_name = "Renamed ☃ service";
    let reply = send(
        director,
        client,
        "POST",
        &format!("/rename/{sid}"),
        &[("name", new_name)],
        Some(&user),
    )
    .await;
    reply.expect_true(false);
    let reply = send(director, client, "POST", "/list", &[], Some(&user)).await;
    check_service(
        &reply,
        &reply.bare(true)[0],
        &ExpectedService {
            name: new_name,
            ..expected_service
        },
    );
    let reply = send(
        director,
        client,
        "POST",
        &format!("/renameapp/{aid}"),
        &[("name", "Renamed app")],
        Some(&user),
    )
    .await;
    reply.expect_true(false);
    let reply = send(director, client, "POST", "/listapp", &[], Some(&user)).await;
    check_applications(
        &reply,
        &reply.bare(true),
        &[(default_aid, "New Application"), (aid, "Renamed app")],
    );

    // Stop, then delete the application.
    let reply = send(
        director,
        client,
        "POST",
        &format!("/stop/{sid}"),
        &[],
        Some(&user),
    )
    .await;
    reply.expect_true(true);
    assert!(!vm.exists(), "the dummy VM is gone after /stop");
    let reply = send(director, client, "POST", "/list", &[], Some(&user)).await;
    assert_eq!(reply.bare(true), json!([]), "{}", reply.what);
    let reply = send(
        director,
        client,
        "POST",
        &format!("/delete/{aid}"),
        &[],
        Some(&user),
    )
    .await;
    reply.expect_true(true);
    let reply = send(director, client, "POST", "/listapp", &[], Some(&user)).await;
    check_applications(
        &reply,
        &reply.bare(true),
        &[(default_aid, "New Application")],
    );
    let reply = send(director, client, "POST", "/login", &credentials, None).await;
    let after: Value = reply.bare(true);
    assert_eq!(
        after["credit"],
        json!(49),
        "stopping refunds nothing: {after}"
    );
}

#[tokio::test]
async fn reqwest_runs_the_user_story() {
    let director = TestDirector::with(Options::new().rsa());
    user_story(&director, &Reqwest, "ada").await;
}

/// The same story with the database on PostgreSQL (the scale-out backend).
#[tokio::test]
async fn reqwest_runs_the_user_story_on_postgresql() {
    let director = TestDirector::with(Options::new().postgres());
    user_story(&director, &Reqwest, "pg").await;
}

#[tokio::test]
async fn curl_runs_the_user_story_posting_multipart() {
    let director = TestDirector::with(Options::new().rsa());
    user_story(&director, &Curl { multipart: true }, "grace").await;
}

#[tokio::test]
async fn python_cpsclient_runs_the_user_story() {
    let director = TestDirector::with(Options::new().rsa());
    user_story(&director, &Python::new(), "barbara").await;
}

#[tokio::test]
async fn curl_urlencoded_and_query_strings_work_too() {
    // `wget`-style urlencoded posts and parameters in the query string (spec §1.2: the query
    // wins over the body).
    let director = TestDirector::start();
    director.add_user("query", "right", 5).await;
    let curl = Curl { multipart: false };
    let reply = send(
        &director,
        &curl,
        "POST",
        "/login?username=query&password=right",
        &[],
        None,
    )
    .await;
    assert_eq!(
        reply.bare(true)["username"],
        json!("query"),
        "{}",
        reply.what
    );
    let reply = send(
        &director,
        &curl,
        "POST",
        "/login?username=query&password=wrong",
        &[("password", "right")],
        None,
    )
    .await;
    reply.expect_false(true);
    let reply = send(
        &director,
        &curl,
        "GET",
        "/getcerts",
        &[("username", "query"), ("password", "right")],
        None,
    )
    .await;
    reply.expect_content_type("application/zip");
}
