//! The authorization matrix: every route x every kind of caller, table-driven, with the
//! answer spec/director-api.md §1.6 gives plus the project's fixes (§6 items 3, 6, 10, 12):
//! user routes take only `role=user`, manager routes only `role=manager` of a live service of
//! that UID, `/list/<appid>` of someone else's application is `[]`, `/new_user` needs the
//! frontend's certificate. Afterwards the database shows that nobody reached anyone else's
//! data.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::manager::{
    check_agent_certificate, credit, expect_callback, expect_connection_close, start_service,
};
use super::shapes::{check_application, check_certs_zip};
use super::story::SERVICE_TYPES;
use crate::support::{Identity, Reply, TestDirector};

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Actor {
    /// No client certificate.
    Anonymous,
    /// The director's own certificate (`role=frontend`, no UID), as the PHP frontend uses it.
    Frontend,
    /// A valid `role=user` certificate of a user id that does not exist.
    Ghost,
    /// An agent certificate of A's service (signed at /ca/get_cert.php).
    AgentA,
    /// The manager of B's service.
    ManagerB,
    /// User B.
    UserB,
    /// The manager of A's service.
    ManagerA,
    /// User A, who owns every resource the requests name.
    UserA,
}

/// In this order for every route: the owner last, so that refusals run before a success
/// changes anything.
const ACTORS: [Actor; 8] = [
    Actor::Anonymous,
    Actor::Frontend,
    Actor::Ghost,
    Actor::AgentA,
    Actor::ManagerB,
    Actor::UserB,
    Actor::ManagerA,
    Actor::UserA,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Owner {
    A,
    B,
}

/// The expected answer of one cell.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// 401 for a request without a certificate (spec §6 item 12).
    NoCert,
    /// 401 `cert_required: client certificate does NOT provide UID` (spec §1.6 step 3).
    NoUid,
    /// The rule's own refusal: 200 bare `false` with CORS (unknown user, wrong role, service
    /// not live or not the caller's).
    AuthFalse,
    /// The route's `false` (`None`: CORS not specified for this case).
    False(Option<bool>),
    /// The route's `true`, with or without CORS.
    True(bool),
    /// An error object with this message (CORS).
    Error(&'static str),
    /// `[]` (bare, CORS).
    EmptyList,
    /// The owner's services only (bare, CORS).
    ServicesOf(Owner),
    /// The owner's applications only (bare, CORS).
    AppsOf(Owner),
    /// A's user dict.
    UserDictOfA,
    /// A's certificates archive.
    ZipOfA,
    /// The service types (bare, no CORS).
    ServiceTypes,
    /// `["default"]` (bare, no CORS).
    Clouds,
    /// `{"aid", "name"}` (jsonify, CORS).
    CreatedApp,
    /// A new service of A in A's default application (jsonify, CORS).
    StartedForA,
    /// A's manifest (bare, no CORS).
    ManifestOfA,
    /// An agent certificate for the owner's service.
    AgentOf(Owner),
    /// `{"error": false}`.
    CallbackOk,
    /// The tarball.
    Tarball,
    /// A user dict of the new account.
    Registered,
    /// No account created: an error object, or a 4xx.
    RegistrationRefused,
}

/// What a request carries.
#[derive(Debug, Clone)]
enum Body {
    None,
    Form(Vec<(String, String)>),
    Csr,
}

#[derive(Debug, Clone)]
struct Request {
    method: &'static str,
    path: String,
    body: Body,
}

/// The user rule (U) with the project's role check: `ok` for A, `foreign` for B.
fn user_rule(actor: Actor, ok: Expect, foreign: Expect) -> Expect {
    match actor {
        Actor::Anonymous => Expect::NoCert,
        Actor::Frontend => Expect::NoUid,
        Actor::Ghost | Actor::AgentA | Actor::ManagerA | Actor::ManagerB => Expect::AuthFalse,
        Actor::UserA => ok,
        Actor::UserB => foreign,
    }
}

/// The manager rule (M) with the project's role check; each manager acts on its own service.
fn manager_rule(actor: Actor, ok: fn(Owner) -> Expect) -> Expect {
    match actor {
        Actor::Anonymous => Expect::NoCert,
        Actor::Frontend => Expect::NoUid,
        Actor::Ghost | Actor::AgentA | Actor::UserA | Actor::UserB => Expect::AuthFalse,
        Actor::ManagerA => ok(Owner::A),
        Actor::ManagerB => ok(Owner::B),
    }
}

/// Everything the matrix works on.
struct World {
    identities: HashMap<Actor, Identity>,
    uid: HashMap<Owner, i64>,
    sid: HashMap<Owner, i64>,
    vmid: HashMap<Owner, String>,
    /// A's default application (renamed and listed).
    aid_a1: i64,
    /// A's second application and its service (the service is stopped by /stop).
    aid_a2: i64,
    sid_a2: i64,
    vmid_a2: String,
    /// A's third application (deleted by /delete).
    aid_a3: i64,
    /// B's default application.
    aid_b1: i64,
    /// An agent CSR made by openssl, and its directory (with the key).
    csr: String,
    csr_dir: PathBuf,
    tarball: Vec<u8>,
}

fn form(fields: &[(&str, &str)]) -> Body {
    Body::Form(
        fields
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
    )
}

/// How a row builds its request for an actor.
type RequestFor = dyn Fn(&World, Actor) -> Request;

/// One row: the route's name, its request per actor, its expectation per actor.
struct Row {
    route: &'static str,
    request: Box<RequestFor>,
    expect: Box<dyn Fn(Actor) -> Expect>,
}

fn row(
    route: &'static str,
    request: impl Fn(&World, Actor) -> Request + 'static,
    expect: impl Fn(Actor) -> Expect + 'static,
) -> Row {
    Row {
        route,
        request: Box::new(request),
        expect: Box::new(expect),
    }
}

fn post(path: String, body: Body) -> Request {
    Request {
        method: "POST",
        path,
        body,
    }
}

fn get(path: String) -> Request {
    Request {
        method: "GET",
        path,
        body: Body::None,
    }
}

/// The 20 routes (21 patterns; `/list` and `/getcerts` also by GET), in an order where every
/// destructive success comes after what it would break: terminate last.
fn rows() -> Vec<Row> {
    vec![
        row(
            "/new_user",
            |_, actor| {
                let name = format!("nu-{actor:?}");
                let email = format!("{name}@example.org");
                post(
                    "/new_user".into(),
                    form(&[
                        ("username", &name),
                        ("fname", "F"),
                        ("lname", "L"),
                        ("email", &email),
                        ("affiliation", "A"),
                        ("password", "pw"),
                        ("credit", "5"),
                    ]),
                )
            },
            |actor| match actor {
                Actor::Frontend => Expect::Registered,
                _ => Expect::RegistrationRefused,
            },
        ),
        row(
            "/login",
            |_, _| {
                post(
                    "/login".into(),
                    form(&[("username", "alice"), ("password", "pa")]),
                )
            },
            |_| Expect::UserDictOfA,
        ),
        row(
            "/getcerts (GET)",
            |_, _| get("/getcerts?username=alice&password=pa".into()),
            |_| Expect::ZipOfA,
        ),
        row(
            "/available_services",
            |_, _| get("/available_services".into()),
            |_| Expect::ServiceTypes,
        ),
        row(
            "/available_clouds",
            |_, _| get("/available_clouds".into()),
            |_| Expect::Clouds,
        ),
        row(
            "/start/php",
            |world, _| {
                post(
                    "/start/php".into(),
                    form(&[("appid", &world.aid_a1.to_string())]),
                )
            },
            |actor| {
                user_rule(
                    actor,
                    Expect::StartedForA,
                    Expect::Error("Application not found"),
                )
            },
        ),
        row(
            "/stop/<sid>",
            |world, _| post(format!("/stop/{}", world.sid_a2), Body::None),
            |actor| user_rule(actor, Expect::True(true), Expect::False(Some(true))),
        ),
        row(
            "/rename/<sid>",
            |world, actor| {
                post(
                    format!("/rename/{}", world.sid[&Owner::A]),
                    form(&[("name", &format!("renamed by {actor:?}"))]),
                )
            },
            |actor| user_rule(actor, Expect::True(false), Expect::False(Some(false))),
        ),
        row(
            "/list",
            |_, _| post("/list".into(), Body::None),
            |actor| {
                user_rule(
                    actor,
                    Expect::ServicesOf(Owner::A),
                    Expect::ServicesOf(Owner::B),
                )
            },
        ),
        row(
            "/list (GET)",
            |_, _| get("/list".into()),
            |actor| {
                user_rule(
                    actor,
                    Expect::ServicesOf(Owner::A),
                    Expect::ServicesOf(Owner::B),
                )
            },
        ),
        row(
            "/list/<aid>",
            |world, _| post(format!("/list/{}", world.aid_a1), Body::None),
            |actor| user_rule(actor, Expect::ServicesOf(Owner::A), Expect::EmptyList),
        ),
        row(
            "/createapp",
            |_, actor| {
                post(
                    "/createapp".into(),
                    form(&[("name", &format!("app of {actor:?}"))]),
                )
            },
            |actor| user_rule(actor, Expect::CreatedApp, Expect::CreatedApp),
        ),
        row(
            "/delete/<aid>",
            |world, _| post(format!("/delete/{}", world.aid_a3), Body::None),
            |actor| user_rule(actor, Expect::True(true), Expect::False(Some(true))),
        ),
        row(
            "/renameapp/<aid>",
            |world, actor| {
                post(
                    format!("/renameapp/{}", world.aid_a1),
                    form(&[("name", &format!("renamed by {actor:?}"))]),
                )
            },
            // Spec §6 item 13: `false` instead of 1.2's 500; its CORS header is not specified.
            |actor| user_rule(actor, Expect::True(false), Expect::False(None)),
        ),
        row(
            "/listapp",
            |_, _| post("/listapp".into(), Body::None),
            |actor| user_rule(actor, Expect::AppsOf(Owner::A), Expect::AppsOf(Owner::B)),
        ),
        row(
            "/upload_manifest",
            |_, actor| {
                let manifest = json!({"Application": format!("m-{actor:?}"), "Services": []});
                post(
                    "/upload_manifest".into(),
                    form(&[("manifest", &manifest.to_string())]),
                )
            },
            |actor| user_rule(actor, Expect::True(false), Expect::True(false)),
        ),
        row(
            "/download_manifest/<aid>",
            |world, _| post(format!("/download_manifest/{}", world.aid_a1), Body::None),
            |actor| user_rule(actor, Expect::ManifestOfA, Expect::False(Some(false))),
        ),
        row(
            "/ca/get_cert.php",
            |_, _| post("/ca/get_cert.php".into(), Body::Csr),
            |actor| manager_rule(actor, Expect::AgentOf),
        ),
        row(
            "/callback/decrementUserCredit.php",
            |world, actor| {
                // The sid field is only logged; send A's to show that it changes nothing.
                let _ = actor;
                post(
                    "/callback/decrementUserCredit.php".into(),
                    form(&[
                        ("sid", &world.sid[&Owner::A].to_string()),
                        ("decrement", "1"),
                    ]),
                )
            },
            |actor| manager_rule(actor, |_| Expect::CallbackOk),
        ),
        row(
            "/download/ConPaaS.tar.gz",
            |_, _| get("/download/ConPaaS.tar.gz".into()),
            |_| Expect::Tarball,
        ),
        row(
            "/callback/terminateService.php",
            |world, _| {
                post(
                    "/callback/terminateService.php".into(),
                    form(&[("sid", &world.sid[&Owner::A].to_string())]),
                )
            },
            |actor| manager_rule(actor, |_| Expect::CallbackOk),
        ),
    ]
}

async fn send(director: &TestDirector, world: &World, actor: Actor, request: &Request) -> Reply {
    let http = match world.identities.get(&actor) {
        Some(identity) => director.client(identity),
        None => director.anonymous(),
    };
    let mut reply = match (&request.method, &request.body) {
        (&"GET", _) => http.get(&request.path).await,
        (_, Body::None) => http.post(&request.path, &[]).await,
        (_, Body::Form(fields)) => {
            let fields: Vec<(&str, &str)> = fields
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            http.post(&request.path, &fields).await
        }
        (_, Body::Csr) => {
            http.post_file(&request.path, "csr", "csr.pem", world.csr.as_bytes())
                .await
        }
    };
    reply.what = format!("[{actor:?}] {}", reply.what);
    reply
}

#[track_caller]
fn check(director: &TestDirector, world: &World, expect: Expect, reply: &Reply) {
    reply.expect_no_internals(director);
    match expect {
        Expect::NoCert => reply.expect_no_certificate(),
        Expect::NoUid => reply.expect_no_uid(),
        Expect::AuthFalse => reply.expect_false(true),
        Expect::False(Some(cors)) => reply.expect_false(cors),
        Expect::False(None) => {
            let cors = reply.has_cors();
            reply.expect_false(cors);
        }
        Expect::True(cors) => reply.expect_true(cors),
        Expect::Error(msg) => reply.expect_error(msg, true),
        Expect::EmptyList => {
            if reply.bare(true) != json!([]) {
                reply.fail("expected []");
            }
        }
        Expect::ServicesOf(owner) => {
            let list = reply.bare(true);
            let Some(services) = list.as_array() else {
                reply.fail("expected a list");
            };
            if services
                .iter()
                .any(|service| service["user_id"] != json!(world.uid[&owner]))
            {
                reply.fail(&format!("only services of {owner:?} may be listed"));
            }
            if !services
                .iter()
                .any(|service| service["sid"] == json!(world.sid[&owner]))
            {
                reply.fail(&format!("the service of {owner:?} is missing"));
            }
        }
        Expect::AppsOf(owner) => {
            let list = reply.bare(true);
            let Some(apps) = list.as_array() else {
                reply.fail("expected a list");
            };
            let aids: Vec<i64> = apps.iter().filter_map(|app| app["aid"].as_i64()).collect();
            let (must, must_not) = match owner {
                Owner::A => (world.aid_a1, world.aid_b1),
                Owner::B => (world.aid_b1, world.aid_a1),
            };
            if !aids.contains(&must) || aids.contains(&must_not) || aids.len() != apps.len() {
                reply.fail(&format!("expected only the applications of {owner:?}"));
            }
        }
        Expect::UserDictOfA => {
            let user = reply.bare(true);
            if user["uid"] != json!(world.uid[&Owner::A]) || user["username"] != json!("alice") {
                reply.fail("expected alice's user dict");
            }
        }
        Expect::ZipOfA => {
            check_certs_zip(
                director,
                reply,
                world.uid[&Owner::A],
                "alice",
                "alice@example.org",
            );
        }
        Expect::ServiceTypes => {
            let list = reply.bare(false);
            for service_type in SERVICE_TYPES {
                if !list
                    .as_array()
                    .is_some_and(|list| list.contains(&json!(service_type)))
                {
                    reply.fail(&format!("{service_type} missing"));
                }
            }
        }
        Expect::Clouds => {
            if reply.bare(false) != json!(["default"]) {
                reply.fail("expected [\"default\"]");
            }
        }
        Expect::CreatedApp => {
            let value = reply.jsonify(true);
            let name = value["name"].as_str().unwrap_or_default().to_owned();
            check_application(reply, &value, &name);
        }
        Expect::StartedForA => {
            let service = reply.jsonify(true);
            if service["user_id"] != json!(world.uid[&Owner::A])
                || service["application_id"] != json!(world.aid_a1)
                || service.get("msg").is_some()
            {
                reply.fail("expected a service of A in A's default application");
            }
        }
        Expect::ManifestOfA => {
            let manifest = reply.bare(false);
            if !manifest["Application"].is_string() || !manifest["Services"].is_array() {
                reply.fail("expected a manifest object");
            }
        }
        Expect::AgentOf(owner) => {
            check_agent_certificate(
                director,
                reply,
                &world.csr_dir,
                world.uid[&owner],
                world.sid[&owner],
            );
        }
        Expect::CallbackOk => expect_callback(reply, false),
        Expect::Tarball => {
            reply
                .expect_status(200)
                .expect_content_type("application/x-tar")
                .expect_cors(false);
            if reply.body != world.tarball {
                reply.fail("expected the tarball's bytes");
            }
        }
        Expect::Registered => {
            let user = reply.bare(true);
            if !user["uid"].is_i64() {
                reply.fail("expected the new user's dict");
            }
        }
        Expect::RegistrationRefused => {
            if reply.status == 200 {
                reply.expect_error_object(true);
            } else if !(400..500).contains(&reply.status) {
                reply.fail("expected an error object or a 4xx");
            }
        }
    }
}

/// Builds the world: users A and B, their services and applications, the agent of A, a
/// ghost, the tarball.
async fn world(director: &TestDirector) -> World {
    let uid_a = i64::from(director.add_user("alice", "pa", 100).await);
    let uid_b = i64::from(director.add_user("bob", "pb", 100).await);
    let user_a = director.user_identity("alice", "pa").await;
    let user_b = director.user_identity("bob", "pb").await;
    let alice = director.client(&user_a);
    let default_app = |reply: Reply| {
        let list = reply.bare(true);
        list[0]["aid"]
            .as_i64()
            .unwrap_or_else(|| reply.fail("no application"))
    };
    let aid_a1 = default_app(alice.post("/listapp", &[]).await);
    let aid_b1 = default_app(director.client(&user_b).post("/listapp", &[]).await);
    let started_a = start_service(director, &user_a, uid_a).await;
    let started_b = start_service(director, &user_b, uid_b).await;
    let reply = alice.post("/createapp", &[("name", "A second")]).await;
    let aid_a2 = check_application(&reply, &reply.jsonify(true), "A second");
    let reply = alice
        .post("/start/php", &[("appid", &aid_a2.to_string())])
        .await;
    let second = reply.jsonify(true);
    let sid_a2 = second["sid"]
        .as_i64()
        .unwrap_or_else(|| reply.fail("no sid"));
    let vmid_a2 = second["vmid"]
        .as_str()
        .unwrap_or_else(|| reply.fail("no vmid"))
        .to_owned();
    let reply = alice.post("/createapp", &[("name", "A doomed")]).await;
    let aid_a3 = check_application(&reply, &reply.jsonify(true), "A doomed");

    let csr_dir = director.scratch("matrix-agent");
    let csr = director.make_csr(
        &csr_dir,
        &format!(
            "/UID={uid_a}/serviceLocator={}/O=ConPaaS/emailAddress=info@conpaas.eu/CN=ConPaaS/role=agent",
            started_a.sid
        ),
    );
    let reply = director
        .client(&started_a.manager)
        .post_file("/ca/get_cert.php", "csr", "csr.pem", csr.as_bytes())
        .await;
    let agent_pem = check_agent_certificate(director, &reply, &csr_dir, uid_a, started_a.sid);
    let agent_key = std::fs::read_to_string(csr_dir.join("agent_key.pem")).unwrap();
    let agent = director.save_identity("agent of A", &agent_pem, &agent_key);

    let tarball: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    director.write_tarball(&tarball);

    let mut identities = HashMap::new();
    identities.insert(Actor::Frontend, director.frontend());
    identities.insert(Actor::Ghost, director.forge_user_identity(999_999, "ghost"));
    identities.insert(Actor::AgentA, agent);
    identities.insert(Actor::ManagerA, started_a.manager.clone());
    identities.insert(Actor::ManagerB, started_b.manager.clone());
    identities.insert(Actor::UserA, user_a);
    identities.insert(Actor::UserB, user_b);
    World {
        identities,
        uid: HashMap::from([(Owner::A, uid_a), (Owner::B, uid_b)]),
        sid: HashMap::from([(Owner::A, started_a.sid), (Owner::B, started_b.sid)]),
        vmid: HashMap::from([(Owner::A, started_a.vmid), (Owner::B, started_b.vmid)]),
        aid_a1,
        aid_a2,
        sid_a2,
        vmid_a2,
        aid_a3,
        aid_b1,
        csr,
        csr_dir,
        tarball,
    }
}

#[tokio::test]
async fn every_route_answers_every_caller_as_the_spec_says() {
    let director = TestDirector::start();
    let world = world(&director).await;
    assert_eq!(credit(&director, "alice", "pa").await, 98);
    assert_eq!(credit(&director, "bob", "pb").await, 99);

    let mut failures = Vec::new();
    for row in rows() {
        for actor in ACTORS {
            let request = (row.request)(&world, actor);
            let expect = (row.expect)(actor);
            let reply = send(&director, &world, actor, &request).await;
            let manager_route =
                row.route.starts_with("/callback/") || row.route == "/ca/get_cert.php";
            // Collect every failing cell rather than stopping at the first.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                check(&director, &world, expect, &reply);
                if manager_route {
                    expect_connection_close(&reply);
                }
            }));
            if let Err(panic) = outcome {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                    .unwrap_or_default();
                failures.push(format!(
                    "{} x {actor:?} (expected {expect:?}):\n{message}",
                    row.route
                ));
            }
        }
    }

    // Nobody reached anybody else's data: the state is what the owners' own calls made it.
    let user_a = &world.identities[&Actor::UserA];
    let user_b = &world.identities[&Actor::UserB];
    let reply = director.client(user_a).post("/list", &[]).await;
    let services_a = reply.bare(true);
    let sids_a: Vec<i64> = services_a
        .as_array()
        .map(|list| list.iter().filter_map(|s| s["sid"].as_i64()).collect())
        .unwrap_or_default();
    let expected_state = [
        (
            "A's services: only the one A started in the matrix",
            sids_a.len() == 1
                && !sids_a.contains(&world.sid[&Owner::A])
                && !sids_a.contains(&world.sid_a2),
        ),
        (
            "B's services: none (its manager terminated it)",
            director.client(user_b).post("/list", &[]).await.bare(true) == json!([]),
        ),
        (
            "the VMs of stopped and terminated services are gone",
            !director.dummy_vm_path(&world.vmid[&Owner::A]).exists()
                && !director.dummy_vm_path(&world.vmid[&Owner::B]).exists()
                && !director.dummy_vm_path(&world.vmid_a2).exists(),
        ),
    ];
    for (what, ok) in expected_state {
        if !ok {
            failures.push(format!("final state: {what}; A's /list = {services_a}"));
        }
    }
    let names = |reply: Reply| -> Vec<(i64, String)> {
        reply
            .bare(true)
            .as_array()
            .map(|apps| {
                apps.iter()
                    .map(|app| {
                        (
                            app["aid"].as_i64().unwrap_or(-1),
                            app["name"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let apps_a = names(director.client(user_a).post("/listapp", &[]).await);
    let apps_a_names: Vec<&str> = apps_a.iter().map(|(_, name)| name.as_str()).collect();
    if apps_a_names != ["renamed by UserA", "A second", "app of UserA", "m-UserA"]
        || apps_a[0].0 != world.aid_a1
        || apps_a[1].0 != world.aid_a2
    {
        failures.push(format!("final state: A's applications are {apps_a:?}"));
    }
    let apps_b = names(director.client(user_b).post("/listapp", &[]).await);
    let apps_b_names: Vec<&str> = apps_b.iter().map(|(_, name)| name.as_str()).collect();
    if apps_b_names != ["New Application", "app of UserB", "m-UserB"] {
        failures.push(format!("final state: B's applications are {apps_b:?}"));
    }
    // A: 100 - 2 starts before - 1 start in the matrix - 1 charged by A's manager.
    // B: 100 - 1 start before - 1 charged by B's manager.
    let credits = (
        credit(&director, "alice", "pa").await,
        credit(&director, "bob", "pb").await,
    );
    if credits != (96, 98) {
        failures.push(format!(
            "final state: credits (A, B) are {credits:?}, expected (96, 98)"
        ));
    }
    for actor in ACTORS {
        let username = format!("nu-{actor:?}");
        let reply = director
            .anonymous()
            .post("/login", &[("username", &username), ("password", "pw")])
            .await;
        let exists = reply.bare(true) != Value::Bool(false);
        if exists != (actor == Actor::Frontend) {
            failures.push(format!(
                "final state: account {username} exists: {exists} (only the frontend may register)"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cell(s) of the authorization matrix fail:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
