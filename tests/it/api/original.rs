//! The expectations of the 1.2 director's own unit tests (`conpaas-director/test.py`), as
//! spec/director-api.md §3 quotes them, through the real server and real certificates instead
//! of `DIRECTOR_TESTING`'s form fields. Where the project fixed an answer (spec §6) the fixed
//! answer is asserted and the comment says so.

use serde_json::json;

use super::manager::{credit, expect_callback, start_service};
use super::shapes::{ExpectedService, ExpectedUser, check_application, check_service, check_user};
use crate::support::{Identity, Options, TestDirector, md5_hex};

async fn default_aid(director: &TestDirector, user: &Identity) -> i64 {
    let reply = director.client(user).post("/listapp", &[]).await;
    reply.bare(true)[0]["aid"]
        .as_i64()
        .unwrap_or_else(|| reply.fail("no default application"))
}

#[tokio::test]
async fn test_404_on_root() {
    let director = TestDirector::start();
    director.anonymous().get("/").await.expect_not_found();
}

#[tokio::test]
async fn test_login_unicode_encode_error() {
    let director = TestDirector::start();
    let password = "pässwörd☃";
    director.add_user("uni", password, 7).await;
    let reply = director
        .anonymous()
        .post("/login", &[("username", "uni"), ("password", password)])
        .await;
    let user = reply.bare(true);
    assert_eq!(user["username"], json!("uni"), "{}", reply.what);
    assert_eq!(
        user["password"],
        json!(md5_hex(password)),
        "MD5 of the UTF-8 bytes"
    );
    director
        .anonymous()
        .post("/login", &[("username", "uni"), ("password", "wröng☃")])
        .await
        .expect_false(true);
    director
        .anonymous()
        .post("/login", &[])
        .await
        .expect_false(true);
}

#[tokio::test]
async fn test_new_user_returns_every_submitted_field() {
    // 1.2's `__test_new_user`; registration open here, so no certificate is needed.
    let director = TestDirector::with(Options::new().open_registration());
    let fields = [
        ("username", "newbie"),
        ("fname", "Ñame"),
        ("lname", "Last"),
        ("email", "newbie@example.org"),
        ("affiliation", "Vrije Universiteit"),
        ("password", "pw ☃"),
        ("credit", "120"),
    ];
    let reply = director.anonymous().post("/new_user", &fields).await;
    let expected = ExpectedUser {
        username: "newbie",
        fname: "Ñame",
        lname: "Last",
        email: "newbie@example.org",
        affiliation: "Vrije Universiteit",
        password: "pw ☃",
        credit: 120,
    };
    let uid = check_user(&reply, &reply.bare(true), &expected);
    // Python's JSON encoder escaped non-ASCII; either form parses the same (checked above).
    let reply = director
        .anonymous()
        .post("/login", &[("username", "newbie"), ("password", "pw ☃")])
        .await;
    assert_eq!(check_user(&reply, &reply.bare(true), &expected), uid);
    // The account comes with its `New Application`.
    let user = director.user_identity("newbie", "pw ☃").await;
    let reply = director.client(&user).post("/listapp", &[]).await;
    let apps = reply.bare(true);
    assert_eq!(apps.as_array().map(Vec::len), Some(1), "{apps}");
    check_application(&reply, &apps[0], "New Application");
}

#[tokio::test]
async fn new_user_credit_is_capped_at_max_credit() {
    // Spec §6 item 3: with open registration the requested credit is capped.
    let director = TestDirector::with(Options::new().open_registration().max_credit(30));
    let reply = director
        .anonymous()
        .post(
            "/new_user",
            &[
                ("username", "greedy"),
                ("fname", "f"),
                ("lname", "l"),
                ("email", "greedy@example.org"),
                ("affiliation", "a"),
                ("password", "pw"),
                ("credit", "1000000"),
            ],
        )
        .await;
    assert_eq!(reply.bare(true)["credit"], json!(30), "{}", reply.what);
    assert_eq!(credit(&director, "greedy", "pw").await, 30);
}

#[tokio::test]
async fn test_proper_start_and_stop() {
    let director = TestDirector::start();
    let uid = i64::from(director.add_user("starter", "pw", 10).await);
    let user = director.user_identity("starter", "pw").await;
    let aid = default_aid(&director, &user).await;
    let http = director.client(&user);
    // `/start/php`, `/start/php/default` and `/start/php/iaas` all reach the default cloud.
    let mut started = Vec::new();
    for path in [
        "/start/php",
        "/start/java/default",
        "/start/helloworld/iaas",
    ] {
        let reply = http.post(path, &[]).await;
        let service_type = path.split('/').nth(2).unwrap();
        let name = format!("New {service_type} service");
        let (sid, vmid) = check_service(
            &reply,
            &reply.jsonify(true),
            &ExpectedService {
                sid: None,
                name: &name,
                service_type,
                user_id: uid,
                application_id: aid,
                subnet: None,
            },
        );
        started.push((sid, vmid));
    }
    assert_eq!(credit(&director, "starter", "pw").await, 7);
    // Ids are never reused (spec §6 item 17).
    let sids: Vec<i64> = started.iter().map(|(sid, _)| *sid).collect();
    assert!(sids.windows(2).all(|pair| pair[0] < pair[1]), "{sids:?}");

    // test_stop_wrong_user.
    director.add_user("intruder", "pw", 10).await;
    let intruder = director.user_identity("intruder", "pw").await;
    for (sid, vmid) in &started {
        director
            .client(&intruder)
            .post(&format!("/stop/{sid}"), &[])
            .await
            .expect_false(true);
        assert!(director.dummy_vm_path(vmid).is_file());
    }
    // test_proper_stop.
    let (sid, vmid) = &started[0];
    http.post(&format!("/stop/{sid}"), &[])
        .await
        .expect_true(true);
    assert!(!director.dummy_vm_path(vmid).exists());
    http.post(&format!("/stop/{sid}"), &[])
        .await
        .expect_false(true);
    // A stopped service's id is not given to the next one.
    let reply = http.post("/start/php", &[]).await;
    let next = reply.jsonify(true)["sid"].as_i64().unwrap();
    assert!(next > sids[2], "sid {next} reused");
}

#[tokio::test]
async fn test_false_start_wrong_servicetype() {
    let director = TestDirector::start();
    director.add_user("wrong", "pw", 10).await;
    let user = director.user_identity("wrong", "pw").await;
    director
        .client(&user)
        .post("/start/wrong", &[])
        .await
        .expect_error("Unknown service type: wrong", true);
    assert_eq!(credit(&director, "wrong", "pw").await, 10);
}

/// Starts two services in the default application and one in another, returning the subnets.
async fn vpn_subnets(options: Options) -> (Vec<String>, String) {
    let director = TestDirector::with(options);
    let uid = i64::from(director.add_user("vpn", "pw", 10).await);
    let user = director.user_identity("vpn", "pw").await;
    let http = director.client(&user);
    let aid = default_aid(&director, &user).await;
    let mut subnets = Vec::new();
    for _ in 0..2 {
        let reply = http.post("/start/php", &[]).await;
        let value = reply.jsonify(true);
        let subnet = value["subnet"].as_str().unwrap_or_default().to_owned();
        check_service(
            &reply,
            &value,
            &ExpectedService {
                sid: None,
                name: "New php service",
                service_type: "php",
                user_id: uid,
                application_id: aid,
                subnet: Some(&subnet),
            },
        );
        subnets.push(subnet);
    }
    // Subnets are per application: another application starts from the first again.
    let reply = http.post("/createapp", &[("name", "other")]).await;
    let other = check_application(&reply, &reply.jsonify(true), "other");
    let reply = http
        .post("/start/php", &[("appid", &other.to_string())])
        .await;
    let value = reply.jsonify(true);
    let subnet = value["subnet"]
        .as_str()
        .unwrap_or_else(|| reply.fail("expected a subnet"))
        .to_owned();
    (subnets, subnet)
}

#[tokio::test]
async fn test_proper_start_vpn() {
    // 1.2's arithmetic (VPN_LEGACY_SUBNETS = true): 172.16.0.0/255.240.0.0, 6 bits -> /14.
    let (subnets, other) = vpn_subnets(Options::new().vpn(6, true)).await;
    assert_eq!(subnets, ["172.16.0.0/14", "172.20.0.0/14"]);
    assert_eq!(other, "172.16.0.0/14");
}

#[tokio::test]
async fn start_vpn_with_the_installation_guides_arithmetic() {
    // The project's default (config.md §13.6): 2^6 subnets of the /12, i.e. /18s.
    let (subnets, other) = vpn_subnets(Options::new().vpn(6, false)).await;
    assert_eq!(subnets, ["172.16.0.0/18", "172.16.64.0/18"]);
    assert_eq!(other, "172.16.0.0/18");
}

#[tokio::test]
async fn test_applications_create_delete() {
    let director = TestDirector::start();
    let uid = i64::from(director.add_user("apps", "pw", 10).await);
    let user = director.user_identity("apps", "pw").await;
    let http = director.client(&user);
    // test_new_application.
    let reply = http.post("/createapp", &[("name", "New App")]).await;
    let aid = check_application(&reply, &reply.jsonify(true), "New App");
    http.post("/createapp", &[("name", "New App")])
        .await
        .expect_error("Application name \"New App\" already taken", true);
    // Another user may use the same name.
    director.add_user("apps2", "pw", 10).await;
    let user2 = director.user_identity("apps2", "pw").await;
    let reply = director
        .client(&user2)
        .post("/createapp", &[("name", "New App")])
        .await;
    check_application(&reply, &reply.jsonify(true), "New App");
    // test_delete_application, with a service in it.
    let reply = http
        .post("/start/php", &[("appid", &aid.to_string())])
        .await;
    let (_, vmid) = check_service(
        &reply,
        &reply.jsonify(true),
        &ExpectedService {
            sid: None,
            name: "New php service",
            service_type: "php",
            user_id: uid,
            application_id: aid,
            subnet: None,
        },
    );
    http.post(&format!("/delete/{aid}"), &[])
        .await
        .expect_true(true);
    assert!(
        !director.dummy_vm_path(&vmid).exists(),
        "deleting the application stops its services"
    );
    assert_eq!(http.post("/list", &[]).await.bare(true), json!([]));
    // test_delete_application_not_exists.
    http.post(&format!("/delete/{aid}"), &[])
        .await
        .expect_false(true);
    http.post("/delete/424242", &[]).await.expect_false(true);
}

#[tokio::test]
async fn test_download_manifest() {
    let director = TestDirector::start();
    let uid = i64::from(director.add_user("mf", "pw", 10).await);
    let user = director.user_identity("mf", "pw").await;
    let aid = default_aid(&director, &user).await;
    start_service(&director, &user, uid).await;
    let reply = director
        .client(&user)
        .post(&format!("/download_manifest/{aid}"), &[])
        .await;
    reply
        .expect_status(200)
        .expect_content_type(crate::support::http::BARE)
        .expect_cors(false);
    // Compared textually by the original test.
    assert_eq!(
        reply.text(),
        "{\"Services\": [{\"ServiceName\": \"New php service\", \"Type\": \"php\", \"Cloud\": \"iaas\"}], \"Application\": \"New Application\"}",
        "{}",
        reply.what
    );
    // POST only (the 405's page is checked in bad_input).
    let reply = director
        .client(&user)
        .get(&format!("/download_manifest/{aid}"))
        .await;
    reply.expect_status(405);
    assert_eq!(
        reply.header("allow").map(|allow| allow.contains("GET")),
        Some(false)
    );
}

#[tokio::test]
async fn test_credit_and_terminate() {
    let director = TestDirector::start();
    let uid = i64::from(director.add_user("credit", "pw", 120).await);
    let user = director.user_identity("credit", "pw").await;
    let started = start_service(&director, &user, uid).await;
    let manager = director.client(&started.manager);
    let sid = started.sid.to_string();
    // test_credit_right_sid_enough_credit: 120, the start took 1, decrement 119.
    let reply = manager
        .post(
            "/callback/decrementUserCredit.php",
            &[("sid", &sid), ("decrement", "119")],
        )
        .await;
    expect_callback(&reply, false);
    assert_eq!(credit(&director, "credit", "pw").await, 0);
    // test_credit_right_sid_not_enough_credit.
    let reply = manager
        .post(
            "/callback/decrementUserCredit.php",
            &[("sid", &sid), ("decrement", "1")],
        )
        .await;
    expect_callback(&reply, true);
    assert_eq!(credit(&director, "credit", "pw").await, 0);
    // test_credit_no_sid_and_decrement: a certificate naming service -1 is nobody's.
    let nobody = director.forge_manager_identity(uid as i32, -1);
    director
        .client(&nobody)
        .post("/callback/decrementUserCredit.php", &[("decrement", "1")])
        .await
        .expect_false(true);
    // A user certificate carries serviceLocator=0: no service.
    director
        .client(&user)
        .post("/callback/decrementUserCredit.php", &[("decrement", "1")])
        .await
        .expect_false(true);
    // A manager certificate of another user's uid for this sid: not theirs.
    director.add_user("thief", "pw", 5).await;
    let thief_uid = {
        let reply = director
            .anonymous()
            .post("/login", &[("username", "thief"), ("password", "pw")])
            .await;
        reply.bare(true)["uid"].as_i64().unwrap()
    };
    let forged = director.forge_manager_identity(thief_uid as i32, started.sid as i32);
    director
        .client(&forged)
        .post("/callback/terminateService.php", &[])
        .await
        .expect_false(true);
    assert!(director.dummy_vm_path(&started.vmid).is_file());
    // test_terminate_service.
    let reply = manager
        .post("/callback/terminateService.php", &[("sid", &sid)])
        .await;
    expect_callback(&reply, false);
    assert!(!director.dummy_vm_path(&started.vmid).exists());
    manager
        .post("/callback/terminateService.php", &[("sid", &sid)])
        .await
        .expect_false(true);
}

#[tokio::test]
async fn test_manifest_uploads() {
    let director = TestDirector::start();
    director.add_user("up", "pw", 10).await;
    let user = director.user_identity("up", "pw").await;
    let http = director.client(&user);
    // test_missing_manifest_argument: false with CORS.
    http.post("/upload_manifest", &[]).await.expect_false(true);
    http.post("/upload_manifest", &[("manifest", "")])
        .await
        .expect_false(true);
    // test_wrong_manifest_json: false without CORS.
    http.post("/upload_manifest", &[("manifest", "{\"Services\": [")])
        .await
        .expect_false(false);
    // test_wrong_manifest_service: a service without Type.
    http.post(
        "/upload_manifest",
        &[(
            "manifest",
            "{\"Application\": \"x\", \"Services\": [{\"ServiceName\": \"s\"}]}",
        )],
    )
    .await
    .expect_false(false);
    // test_refuse_empty_manifest.
    http.post("/upload_manifest", &[("manifest", "{\"Services\": []}")])
        .await
        .expect_error("Application is not defined", true);
    // test_correct_empty_manifest_thread: accepted at once, errors only logged.
    http.post(
        "/upload_manifest",
        &[("manifest", "{\"Services\": []}"), ("thread", "1")],
    )
    .await
    .expect_true(false);
    assert_eq!(
        http.post("/listapp", &[])
            .await
            .bare(true)
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // A manifest naming a new application with no services: created, `true` (no CORS).
    http.post(
        "/upload_manifest",
        &[(
            "manifest",
            "{\"Application\": \"From manifest\", \"Services\": []}",
        )],
    )
    .await
    .expect_true(false);
    // Naming an application the user already has (even `New Application`, which every user
    // has: 1.2 looked it up among all users' applications and failed with 500 for all but
    // the oldest): found by (user, name), `true`, nothing duplicated (spec §3.15 step 6).
    director.add_user("up2", "pw", 10).await;
    let user2 = director.user_identity("up2", "pw").await;
    director
        .client(&user2)
        .post(
            "/upload_manifest",
            &[(
                "manifest",
                "{\"Application\": \"New Application\", \"Services\": []}",
            )],
        )
        .await
        .expect_true(false);
    let reply = director.client(&user2).post("/listapp", &[]).await;
    assert_eq!(
        reply.bare(true).as_array().map(Vec::len),
        Some(1),
        "{}",
        reply.what
    );
    let reply = http.post("/listapp", &[]).await;
    let names: Vec<String> = reply
        .bare(true)
        .as_array()
        .unwrap()
        .iter()
        .map(|app| app["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, ["New Application", "From manifest"]);
}

#[tokio::test]
async fn test_available_services_and_clouds() {
    let director = TestDirector::start();
    let reply = director.anonymous().get("/available_clouds").await;
    assert_eq!(reply.bare(false), json!(["default"]));
    // The Python client sends its credentials in the query of every GET: ignored.
    let reply = director
        .anonymous()
        .get("/available_services?username=x&password=y")
        .await;
    let list = reply.bare(false);
    for service_type in super::story::SERVICE_TYPES {
        assert!(
            list.as_array()
                .is_some_and(|list| list.contains(&json!(service_type))),
            "{service_type} missing from {list}"
        );
    }
    // HEAD on a GET route: as GET, without a body.
    let reply = director.anonymous().head("/available_clouds").await;
    reply.expect_status(200);
    assert!(reply.body.is_empty());
}
