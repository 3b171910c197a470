//! `/upload_manifest` and `/delete` driving managers (spec/director-api.md §3.12, §3.15 steps
//! 2-8, §4, §6 items 14-15): a fake manager on the 1.2-behaving test manager
//! (`support::manager`: HTTP/1.0 answers ended by a TCP close without close_notify, 1.2's caller
//! check) on 127.0.0.3 (the dummy cloud's manager address), holding a manager certificate of
//! the director's CA and recording every call, a local HTTP server for the archives, scripts
//! and dumps, and a director configured with `MANAGER_PORT` / `MANIFEST_ALLOW_PRIVATE_URLS` and
//! short waits.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use conpaas_core::api::server::{Listener, TransportSettings};
use conpaas_core::ca::{CA_CERT_FILE, CERT_FILE, KEY_FILE};
use conpaas_core::config::{self, ConfigSource};
use conpaas_core::director::{Director, ManifestSettings};
use conpaas_core::model::UserId;
use serde_json::{Value, json};

use crate::support::manager::{Handler, ManagerCall, TestManager};
use crate::support::pyopenssl::PyManager;
use crate::support::{Identity, Reply, TestDirector};

/// One call a manager received.
type Call = ManagerCall;

/// How the fake manager behaves.
#[derive(Debug, Default)]
struct Behaviour {
    /// The state answered when not INIT/RUNNING: set to stay in `PROLOGUE` forever.
    never_init: bool,
    /// Answer `{"error": <message>}` to this method.
    fail: Option<(String, String)>,
    /// Set after `startup`: the next `get_service_info` answers RUNNING (then INIT again, for
    /// the next service of the manifest: all services share this one fake manager).
    started: bool,
}

/// The fake manager: what it received and how it answers.
#[derive(Clone)]
struct FakeManager {
    calls: Arc<Mutex<Vec<Call>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    /// `get_service_info` waits for a permit (the thread-mode test takes them all).
    gate: Arc<tokio::sync::Semaphore>,
}

/// The permits of [`FakeManager::gate`].
const GATE_PERMITS: u32 = 1_000_000;

impl FakeManager {
    fn new() -> FakeManager {
        FakeManager {
            calls: Arc::default(),
            behaviour: Arc::default(),
            gate: Arc::new(tokio::sync::Semaphore::new(GATE_PERMITS as usize)),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn methods(&self) -> Vec<String> {
        self.calls().into_iter().map(|call| call.method).collect()
    }

    fn answer(&self, call: Call) -> Value {
        let method = call.method.clone();
        self.calls.lock().unwrap().push(call);
        let mut behaviour = self.behaviour.lock().unwrap();
        if let Some((failing, message)) = &behaviour.fail
            && *failing == method
        {
            return json!({"error": message, "id": "1"});
        }
        let result = match method.as_str() {
            "get_service_info" => {
                let state = if behaviour.never_init {
                    "PROLOGUE"
                } else if behaviour.started {
                    behaviour.started = false;
                    "RUNNING"
                } else {
                    "INIT"
                };
                json!({"state": state, "type": "fake"})
            }
            "startup" => {
                behaviour.started = true;
                json!({"state": "PROLOGUE"})
            }
            "upload_code_version" => json!({"codeVersionId": "code-7"}),
            "list_nodes" => json!({"masters": ["master-1"], "dir": ["dir-1"], "slaves": []}),
            "get_node_info" => json!({"serviceNode": {"id": "master-1", "ip": "10.1.2.3"}}),
            _ => json!({}),
        };
        json!({"result": result, "error": null, "id": "1"})
    }
}

/// Serves the fake manager on the 1.2-behaving test manager, on 127.0.0.3 with `identity`.
async fn serve_manager(fake: FakeManager, identity: &Identity, ca_pem: &str) -> TestManager {
    let handler: Handler = Arc::new(move |call: ManagerCall| {
        let fake = fake.clone();
        Box::pin(async move {
            // The shapes of spec/director-api.md §4.
            match call.form {
                "GET" | "POST" => {
                    assert_eq!(call.content_type.as_deref(), Some("application/json"));
                    assert_eq!(call.id, Some(json!("1")));
                }
                _ => assert!(call.file.is_some(), "an upload without its file"),
            }
            assert_eq!(call.caller_role.as_deref(), Some("frontend"));
            if call.method == "get_service_info" {
                let _permit = fake.gate.acquire().await.unwrap();
            }
            fake.answer(call)
        })
    });
    TestManager::start(
        "127.0.0.3:0".parse().unwrap(),
        &identity.cert_pem,
        &identity.key_pem,
        ca_pem,
        handler,
    )
    .await
}

/// A plain HTTP file server on 127.0.0.1 counting its hits.
#[derive(Clone)]
struct Files {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<String>>>,
}

const ARCHIVE: &[u8] = b"PK\x03\x04 a code archive";
const SCRIPT: &[u8] = b"#!/bin/sh\necho hello\n";
const DUMP: &[u8] = b"CREATE TABLE t (id INT);\n";

impl Files {
    async fn start() -> Files {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let recorded = hits.clone();
        let app = Router::new().fallback(move |request: Request| {
            let hits = recorded.clone();
            async move {
                let path = request.uri().path().to_owned();
                hits.lock().unwrap().push(path.clone());
                match path.as_str() {
                    "/code/app.tar.gz" => ARCHIVE.to_vec().into_response(),
                    "/scripts/start.sh" => SCRIPT.to_vec().into_response(),
                    "/db/dump.sql" => DUMP.to_vec().into_response(),
                    "/big.tar.gz" => vec![b'x'; 4096].into_response(),
                    "/to-file" => (
                        StatusCode::FOUND,
                        [(header::LOCATION, "file:///etc/passwd")],
                    )
                        .into_response(),
                    "/to-metadata" => (
                        StatusCode::FOUND,
                        [(header::LOCATION, "http://169.254.169.254/latest/meta-data/")],
                    )
                        .into_response(),
                    _ => StatusCode::NOT_FOUND.into_response(),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Files { addr, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

/// What differs between the directors of these tests.
struct Setup {
    allow_private: bool,
    state_timeout: Duration,
    max_jobs: usize,
    max_bytes: u64,
    never_init: bool,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            allow_private: true,
            state_timeout: Duration::from_secs(10),
            max_jobs: 4,
            max_bytes: 1024 * 1024,
            never_init: false,
        }
    }
}

/// A director serving the API with the manifest settings of a [`Setup`], on the database and
/// CA of a [`TestDirector`] (which provides the user and the certificates).
struct World {
    /// Kept for its server, database and CA, which `director` shares.
    _base: TestDirector,
    director: Director,
    addr: SocketAddr,
    uid: i32,
    client: reqwest::Client,
    manager: FakeManager,
    /// The server of `manager`.
    test_manager: TestManager,
    /// The manager on 1.2's own TLS stack, when the director calls it instead (issue #21).
    py: Option<PyManager>,
    files: Files,
}

impl World {
    async fn start(setup: Setup) -> World {
        World::start_with(setup, false).await
    }

    /// A world whose director calls the pyOpenSSL manager (`support::pyopenssl`) on
    /// 127.0.0.3 instead of the rustls fake one.
    async fn start_pyopenssl(setup: Setup) -> World {
        World::start_with(setup, true).await
    }

    async fn start_with(setup: Setup, pyopenssl: bool) -> World {
        let base = TestDirector::start();
        let uid = base.add_user("mani", "pw", 50).await;
        let user = base.user_identity("mani", "pw").await;

        let manager = FakeManager::new();
        manager.behaviour.lock().unwrap().never_init = setup.never_init;
        // The director checks the role only: any manager certificate of its CA will do.
        let manager_identity = base.forge_manager_identity(uid, 1);
        let test_manager = serve_manager(manager.clone(), &manager_identity, &base.ca_pem()).await;
        let py = pyopenssl.then(|| {
            PyManager::start(
                "127.0.0.3",
                &manager_identity.cert_pem,
                &manager_identity.key_pem,
                &base.ca_pem(),
                uid,
            )
        });
        let port = match &py {
            Some(py) => py.port,
            None => test_manager.addr.port(),
        };
        let files = Files::start().await;

        // The two keys this work added, through the real configuration file.
        let cfg = base.data_dir().join("director.cfg");
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        assert!(text.trim_end().lines().any(|line| line == "[director]"));
        text.push_str(&format!(
            "MANAGER_PORT = {port}\nMANIFEST_ALLOW_PRIVATE_URLS = {}\n",
            setup.allow_private
        ));
        std::fs::write(&cfg, text).unwrap();
        let source = ConfigSource::resolve_with(
            None,
            Some(base.data_dir().to_path_buf()),
            None,
            Path::new("/nonexistent"),
        );
        let loaded = config::load(&source).unwrap();
        assert_eq!(loaded.config.manager_port, port);
        assert_eq!(
            loaded.config.manifest_allow_private_urls,
            setup.allow_private
        );
        let mut settings = ManifestSettings::from_config(&loaded.config);
        settings.poll_interval = Duration::from_millis(50);
        settings.state_timeout = setup.state_timeout;
        settings.volume_delay = Duration::from_millis(10);
        settings.max_jobs_per_user = setup.max_jobs;
        settings.download.max_bytes = setup.max_bytes;
        let director = Director::open_with(&loaded, settings).unwrap();

        let certs = base.cert_dir();
        let tls = conpaas_core::api::tls::server_config(
            &std::fs::read(certs.join(CERT_FILE)).unwrap(),
            &std::fs::read(certs.join(KEY_FILE)).unwrap(),
            &std::fs::read(certs.join(CA_CERT_FILE)).unwrap(),
        )
        .unwrap();
        let listener = Listener::bind(
            "127.0.0.1:0".parse().unwrap(),
            tls,
            TransportSettings::recommended(),
        )
        .await
        .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(listener.serve(
            conpaas_core::api::router(director.clone()),
            std::future::pending(),
        ));
        let tls = crate::support::http::client_tls(
            &base.ca_pem(),
            Some((user.cert_pem.as_str(), user.key_pem.as_str())),
        );
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .resolve("localhost", addr)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        World {
            _base: base,
            director,
            addr,
            uid,
            client,
            manager,
            test_manager,
            py,
            files,
        }
    }

    /// `POST /upload_manifest` with `manifest` (and `thread=1` when asked).
    async fn upload(&self, manifest: &Value, thread: bool) -> Reply {
        let text = manifest.to_string();
        let mut fields = vec![("manifest", text.as_str())];
        if thread {
            fields.push(("thread", "1"));
        }
        self.post("/upload_manifest", &fields).await
    }

    /// `POST path` with the form `fields`, as the user.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let url = format!("https://localhost:{}{path}", self.addr.port());
        let response = self.client.post(url).form(fields).send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_ascii_lowercase(),
                    value.to_str().unwrap().to_owned(),
                )
            })
            .collect();
        Reply {
            what: format!("POST {path} {fields:?}"),
            status,
            headers,
            body: response.bytes().await.unwrap().to_vec(),
        }
    }

    async fn services(&self) -> Vec<conpaas_core::model::Service> {
        self.director.services(UserId(self.uid)).await.unwrap()
    }

    async fn credit(&self) -> i64 {
        self.director
            .user(UserId(self.uid))
            .await
            .unwrap()
            .unwrap()
            .credit
            .0
    }
}

/// Waits (bounded) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_php_manifest_drives_its_manager_step_by_step() {
    let world = World::start(Setup::new()).await;
    let manifest = json!({
        "Application": "shop",
        "Services": [
            {"Type": "mysql", "ServiceName": "db"},
            {
                "Type": "php",
                "ServiceName": "web",
                "Archive": world.files.url("/code/app.tar.gz"),
                "StartupScript": world.files.url("/scripts/start.sh"),
                "Start": 1,
                "StartupInstances": {"backend": "5"},
            },
        ],
    });
    world.upload(&manifest, false).await.expect_true(false);

    let calls = world.manager.calls();
    let methods = world.manager.methods();
    assert_eq!(
        methods,
        [
            // mysql: on the dummy cloud the director first checks that a manager answers at
            // all, then waits for it as 1.2 did; nothing else is asked.
            "get_service_info",
            "get_service_info",
            // php: the same check, the wait, then its steps.
            "get_service_info",
            "get_service_info",
            "upload_code_version",
            "update_php_configuration",
            "list_nodes",
            "get_node_info",
            "upload_startup_script",
            "startup",
            "get_service_info",
            "add_nodes",
        ]
    );
    let forms: Vec<&str> = calls.iter().map(|call| call.form).collect();
    assert_eq!(
        forms,
        [
            "GET", "GET", "GET", "GET", "UPLOAD", "POST", "GET", "GET", "UPLOAD", "POST", "GET",
            "POST"
        ]
    );
    // GET without parameters carries no `params` pair.
    assert_eq!(calls[0].params, None);
    assert_eq!(
        calls[4].file,
        Some(("code".into(), "app.tar.gz".into(), ARCHIVE.to_vec()))
    );
    assert_eq!(calls[5].params, Some(json!({"codeVersionId": "code-7"})));
    assert_eq!(calls[6].params, None);
    assert_eq!(calls[7].params, Some(json!({"serviceNodeId": "master-1"})));
    // The environment snippet (the MySQL master's address), then the downloaded script.
    let (field, file_name, script) = calls[8].file.clone().unwrap();
    assert_eq!((field.as_str(), file_name.as_str()), ("script", "start.sh"));
    let expected = format!(
        "echo \"env[MYSQL_IP]='10.1.2.3'\" >> /root/ConPaaS/src/conpaas/services/webservers/etc/fpm.tmpl\n\
         export MYSQL_IP='10.1.2.3'\n{}",
        String::from_utf8(SCRIPT.to_vec()).unwrap()
    );
    assert_eq!(String::from_utf8(script).unwrap(), expected);
    assert_eq!(calls[9].params, Some(json!({"cloud": "default"})));
    assert_eq!(
        calls[11].params,
        Some(json!({"proxy": 1, "web": 1, "backend": 5, "cloud": "default"}))
    );

    let services = world.services().await;
    let names: Vec<(Option<&str>, Option<&str>)> = services
        .iter()
        .map(|s| (s.service_type.as_deref(), s.name.as_deref()))
        .collect();
    assert_eq!(
        names,
        [(Some("mysql"), Some("db")), (Some("php"), Some("web"))]
    );
    assert_eq!(
        world.files.hits(),
        ["/code/app.tar.gz", "/scripts/start.sh"]
    );

    // A php service without a script still gets one: the snippet alone, as env.sh.
    let manifest = json!({"Application": "shop", "Services": [{"Type": "php"}]});
    world.upload(&manifest, false).await.expect_true(false);
    let calls = world.manager.calls();
    let last = calls.last().unwrap();
    let (field, file_name, script) = last.file.clone().unwrap();
    assert_eq!((field.as_str(), file_name.as_str()), ("script", "env.sh"));
    assert!(
        String::from_utf8(script)
            .unwrap()
            .starts_with("echo \"env[MYSQL_IP]")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_password_dump_and_xtreemfs_volume() {
    let world = World::start(Setup::new()).await;
    let manifest = json!({
        "Application": "data",
        "Services": [
            {
                "Type": "mysql",
                "Start": true,
                "Password": "s3cret",
                "Dump": world.files.url("/db/dump.sql"),
            },
            {
                "Type": "xtreemfs",
                "Start": "1",
                "VolumeStartup": {"volumeName": "vol", "owner": "alice"},
                "StartupInstances": {"osd": 2},
            },
        ],
    });
    world.upload(&manifest, false).await.expect_true(false);
    let calls = world.manager.calls();
    assert_eq!(
        world.manager.methods(),
        [
            // On the dummy cloud each service starts with "is a manager there?".
            "get_service_info",
            "get_service_info",
            "startup",
            "get_service_info",
            "set_password",
            "load_dump",
            "get_service_info",
            "get_service_info",
            "startup",
            "get_service_info",
            "createVolume",
            "add_nodes",
        ]
    );
    assert_eq!(
        calls[4].params,
        Some(json!({"user": "mysqldb", "password": "s3cret"}))
    );
    assert_eq!(
        calls[5].file,
        Some(("mysqldump_file".into(), "dump.sql".into(), DUMP.to_vec()))
    );
    assert_eq!(
        calls[10].params,
        Some(json!({"volumeName": "vol", "owner": "alice"}))
    );
    assert_eq!(
        calls[11].params,
        Some(json!({"osd": 2, "cloud": "default"}))
    );
    // Not started: Password and Dump are not used (nor downloaded), as in 1.2.
    let hits_before = world.files.hits().len();
    let manifest = json!({
        "Application": "data",
        "Services": [{"Type": "mysql", "Password": "x", "Dump": world.files.url("/db/dump.sql")}],
    });
    world.upload(&manifest, false).await.expect_true(false);
    assert_eq!(world.manager.methods().last().unwrap(), "get_service_info");
    assert_eq!(world.files.hits().len(), hits_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_error_stops_the_manifest() {
    let world = World::start(Setup::new()).await;
    world.manager.behaviour.lock().unwrap().fail = Some(("startup".into(), "boom".into()));
    let manifest = json!({
        "Application": "app",
        "Services": [
            {"Type": "scalaris", "Start": 1, "StartupInstances": {"scalaris": 3}},
            {"Type": "hadoop"},
        ],
    });
    let reply = world.upload(&manifest, false).await;
    reply.expect_error("boom", true);
    assert_eq!(
        world.manager.methods(),
        // The dummy cloud's "is a manager there" call, the wait, the failing step.
        ["get_service_info", "get_service_info", "startup"],
        "nothing after the failing step"
    );
    // The service created before the failure stays; the next one was never created.
    let services = world.services().await;
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].service_type.as_deref(), Some("scalaris"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dangerous_urls_are_refused_before_anything_is_downloaded() {
    let world = World::start(Setup {
        allow_private: false,
        ..Setup::new()
    })
    .await;
    let credit = world.credit().await;
    let cases = [
        (
            json!({"Type": "selenium", "StartupScript": "file:///etc/passwd"}),
            "Service selenium: StartupScript file:///etc/passwd refused: only http and https URLs are downloaded, not file:",
        ),
        (
            json!({"Type": "php", "Archive": world.files.url("/code/app.tar.gz")}),
            &*format!(
                "Service php: Archive {} refused: 127.0.0.1 is a loopback address, which this director does not download from",
                world.files.url("/code/app.tar.gz")
            ),
        ),
        (
            json!({"Type": "mysql", "Start": 1, "Dump": "http://169.254.169.254/latest/meta-data/"}),
            "Service mysql: Dump http://169.254.169.254/latest/meta-data/ refused: 169.254.169.254 is a cloud metadata address, which this director does not download from",
        ),
        (
            json!({"Type": "java", "Archive": "ftp://example.org/a.war"}),
            "Service java: Archive ftp://example.org/a.war refused: only http and https URLs are downloaded, not ftp:",
        ),
        (
            json!({"Type": "hadoop", "Start": 1, "StartupInstances": {"workers": "many"}}),
            "Service hadoop: StartupInstances workers must be an integer, not \"many\"",
        ),
        (
            json!({"Type": "php", "Archive": ["http://example.org/a.zip"]}),
            "Service php: Archive must be a URL",
        ),
        (
            json!({"Type": "taskfarm", "Start": 1}),
            "Service taskfarm: StartupScript and Start are not supported for taskfarm services (their manager does not serve the director's protocol); start it from its own client",
        ),
    ];
    for (service, message) in cases {
        // The later service is refused before the first one is created.
        let manifest = json!({"Application": "x", "Services": [{"Type": "php"}, service]});
        world
            .upload(&manifest, false)
            .await
            .expect_error(message, true);
        // In thread mode too: the checks come before the answer.
        world
            .upload(&manifest, true)
            .await
            .expect_error(message, true);
    }
    assert!(world.services().await.is_empty(), "nothing was created");
    assert_eq!(world.credit().await, credit);
    assert!(world.manager.calls().is_empty());

    // A name resolving to a refused address is refused when resolved, before any connection.
    let by_name = format!(
        "http://localhost:{}/scripts/start.sh",
        world.files.addr.port()
    );
    let manifest =
        json!({"Application": "x", "Services": [{"Type": "scalaris", "StartupScript": by_name}]});
    let message = world
        .upload(&manifest, false)
        .await
        .expect_error_object(true);
    assert!(
        message.starts_with("Service scalaris: StartupScript http://localhost:")
            && message
                .ends_with("is a loopback address, which this director does not download from"),
        "{message}"
    );
    assert!(world.files.hits().is_empty(), "something was downloaded");

    // A taskfarm service that needs nothing of its manager is created and named, without
    // waiting for a manager the director cannot talk to.
    let manifest =
        json!({"Application": "x", "Services": [{"Type": "taskfarm", "ServiceName": "tf"}]});
    world.upload(&manifest, false).await.expect_true(false);
    // Only the scalaris service above asked (the dummy cloud's check, then the wait).
    assert_eq!(
        world.manager.methods(),
        ["get_service_info", "get_service_info"]
    );
    let services = world.services().await;
    assert_eq!(services.last().unwrap().name.as_deref(), Some("tf"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_and_sizes_are_checked() {
    let world = World::start(Setup {
        max_bytes: 1024,
        ..Setup::new()
    })
    .await;
    let cases = [
        (
            "/to-file",
            "only http and https URLs are downloaded, not file:",
        ),
        (
            "/to-metadata",
            "169.254.169.254 is a cloud metadata address, which this director does not download from",
        ),
        ("/big.tar.gz", "larger than 1024 bytes"),
        ("/missing.sh", "the server answered status 404"),
    ];
    for (path, reason) in cases {
        let verdict = if reason.starts_with("larger") || reason.starts_with("the server") {
            "could not be downloaded"
        } else {
            "refused"
        };
        let manifest = json!({"Application": "r", "Services": [{"Type": "selenium", "StartupScript": world.files.url(path)}]});
        world.upload(&manifest, false).await.expect_error(
            &format!(
                "Service selenium: StartupScript {} {verdict}: {reason}",
                world.files.url(path)
            ),
            true,
        );
    }
    // Only the first hop of each was fetched; nothing reached the manager but the waits.
    assert_eq!(
        world.files.hits(),
        ["/to-file", "/to-metadata", "/big.tar.gz", "/missing.sh"]
    );
    assert!(
        world
            .manager
            .methods()
            .iter()
            .all(|method| method == "get_service_info")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_mode_answers_at_once_and_jobs_are_bounded() {
    let world = World::start(Setup {
        max_jobs: 1,
        ..Setup::new()
    })
    .await;
    // Hold every get_service_info until the test lets it through.
    let held = world.manager.gate.acquire_many(GATE_PERMITS).await.unwrap();
    let manifest = json!({
        "Application": "bg",
        "Services": [{"Type": "selenium", "Start": 1, "StartupInstances": {"node": 3}}],
    });
    let started = Instant::now();
    world.upload(&manifest, true).await.expect_true(false);
    assert!(started.elapsed() < Duration::from_secs(5));
    // The job is waiting for its manager's first answer: nothing was done yet.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        world.manager.calls().is_empty(),
        "the manager was driven before the answer"
    );
    // The user's one job slot is taken: a second manifest is refused at once, in both modes.
    for thread in [true, false] {
        world.upload(&manifest, thread).await.expect_error(
            "Too many manifests in progress: at most 1 at a time, try again later",
            true,
        );
    }
    drop(held);
    eventually("add_nodes", || {
        world.manager.methods().contains(&"add_nodes".to_owned())
    })
    .await;
    let calls = world.manager.calls();
    assert_eq!(
        calls.last().unwrap().params,
        Some(json!({"node": 3, "cloud": "default"}))
    );
    // The slot is free again once the job is done.
    let empty = json!({"Application": "bg", "Services": []});
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = world.upload(&empty, false).await;
        if reply.status == 200 && reply.text() == "true" {
            break;
        }
        assert!(Instant::now() < deadline, "the job slot was not released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Background failures are only logged, as in 1.2.
    world
        .upload(&json!({"Services": []}), true)
        .await
        .expect_true(false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_that_never_reaches_init_times_out() {
    let world = World::start(Setup {
        state_timeout: Duration::from_millis(500),
        never_init: true,
        ..Setup::new()
    })
    .await;
    let started = Instant::now();
    let reply = world
        .upload(
            &json!({"Application": "t", "Services": [{"Type": "mysql", "Start": 1}]}),
            false,
        )
        .await;
    let sid = world.services().await[0].sid;
    reply.expect_error(
        &format!(
            "Service {sid}: the manager did not reach state INIT within 0.5 s (last: state PROLOGUE)"
        ),
        true,
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let polls = world.manager.methods();
    assert!(polls.len() >= 2, "polled only {polls:?}");
    assert!(polls.iter().all(|method| method == "get_service_info"));
}

/// On the plain dummy cloud no manager answers: a manifest that asks nothing of its managers
/// creates and names its services at once (1.2 waited for a manager forever), one that does
/// ask is refused by the manager step with a clear message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dummy_cloud_manifests_do_not_wait_for_absent_managers() {
    let director = TestDirector::start();
    director.add_user("dora", "pw", 10).await;
    let user = director.user_identity("dora", "pw").await;
    let http = director.client(&user);
    let manifest = json!({
        "Application": "plain",
        "Services": [{"Type": "php", "ServiceName": "front"}, {"Type": "mysql"}]
    });
    let started = Instant::now();
    let reply = http
        .post("/upload_manifest", &[("manifest", &manifest.to_string())])
        .await;
    reply.expect_true(false);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "waited for absent managers"
    );
    let list = http.post("/list", &[]).await.bare(true);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|service| service["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["front", "New mysql service"]);

    let manifest = json!({"Application": "plain", "Services": [{"Type": "mysql", "Start": 1}]});
    let started = Instant::now();
    let reply = http
        .post("/upload_manifest", &[("manifest", &manifest.to_string())])
        .await;
    let msg = reply.expect_error_object(true);
    assert!(
        msg.contains("no manager answers on the dummy cloud"),
        "{msg}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// `/delete` of an application asks each service's manager to shut down (`spec/director-api.md`
/// §3.12) before its VM goes: with a manager answering as 1.2's do, the call is taken and read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_reaches_the_manager_with_shutdown() {
    let world = World::start(Setup::new()).await;
    let manifest = json!({"Application": "doomed", "Services": [{"Type": "mysql"}]});
    world.upload(&manifest, false).await.expect_true(false);
    let services = world.services().await;
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].manager.as_deref(), Some("127.0.0.3"));
    let aid = services[0].application_id;
    let polls = world.manager.calls().len();

    world
        .post(&format!("/delete/{aid}"), &[])
        .await
        .expect_true(true);
    let calls = world.test_manager.calls();
    let shutdown = &calls[polls..];
    assert_eq!(shutdown.len(), 1, "{shutdown:?}");
    assert_eq!(
        (shutdown[0].form, shutdown[0].method.as_str()),
        ("POST", "shutdown")
    );
    assert_eq!(shutdown[0].params, Some(json!({})));
    assert_eq!(shutdown[0].caller_role.as_deref(), Some("frontend"));
    assert!(
        world.services().await.is_empty(),
        "the service was not stopped"
    );
    assert!(
        world
            .director
            .applications(UserId(world.uid))
            .await
            .unwrap()
            .iter()
            .all(|app| app.aid != aid),
        "the application was not deleted"
    );
}

/// Issue #21: every php manifest step, against a manager on 1.2's own TLS stack (pyOpenSSL
/// requiring a client certificate, no session id context: a resumed handshake is refused),
/// each step more than once in a row on the same manager: the manifest is uploaded twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_php_manifest_drives_a_1_2_pyopenssl_manager() {
    let world = World::start_pyopenssl(Setup::new()).await;
    let py = world.py.as_ref().unwrap();
    let manifest = json!({
        "Application": "shop",
        "Services": [
            {"Type": "mysql", "ServiceName": "db"},
            {
                "Type": "php",
                "ServiceName": "web",
                "Archive": world.files.url("/code/app.tar.gz"),
                "StartupScript": world.files.url("/scripts/start.sh"),
                "Start": 1,
                "StartupInstances": {"backend": "5"},
            },
        ],
    });
    let one_upload = [
        "get_service_info",
        "get_service_info",
        "get_service_info",
        "get_service_info",
        "upload_code_version",
        "update_php_configuration",
        "list_nodes",
        "get_node_info",
        "upload_startup_script",
        "startup",
        "get_service_info",
        "add_nodes",
    ];
    for round in 1..=2 {
        world.upload(&manifest, false).await.expect_true(false);
        assert!(
            py.failures().is_empty(),
            "round {round}: {:?}",
            py.failures()
        );
        assert_eq!(py.methods(), one_upload.repeat(round), "round {round}");
    }
    assert!(
        world.manager.calls().is_empty(),
        "the rustls fake manager was called"
    );
    let calls = py.calls();
    assert_eq!(calls.len(), 24);
    for call in &calls {
        assert_eq!(call["resumed"], false, "{call}");
        assert_eq!(call["caller"]["role"], "frontend", "{call}");
    }
    for offset in [0, 12] {
        let calls = &calls[offset..offset + 12];
        let forms: Vec<&str> = calls
            .iter()
            .map(|call| call["form"].as_str().unwrap())
            .collect();
        assert_eq!(
            forms,
            [
                "GET", "GET", "GET", "GET", "UPLOAD", "POST", "GET", "GET", "UPLOAD", "POST",
                "GET", "POST"
            ]
        );
        for call in calls {
            match call["form"].as_str().unwrap() {
                "GET" | "POST" => {
                    assert_eq!(call["content_type"], "application/json", "{call}");
                    assert_eq!(call["id"], "1", "{call}");
                }
                _ => assert!(
                    call["content_type"]
                        .as_str()
                        .unwrap()
                        .starts_with("multipart/form-data; boundary=")
                ),
            }
        }
        assert_eq!(calls[0]["params"], Value::Null);
        assert_eq!(calls[4]["method"], "upload_code_version");
        assert_eq!(calls[4]["file"]["field"], "code");
        assert_eq!(calls[4]["file"]["filename"], "app.tar.gz");
        assert_eq!(calls[4]["file"]["len"], ARCHIVE.len());
        assert_eq!(calls[5]["params"], json!({"codeVersionId": "code-7"}));
        assert_eq!(calls[7]["params"], json!({"serviceNodeId": "master-1"}));
        assert_eq!(calls[8]["method"], "upload_startup_script");
        assert_eq!(calls[8]["file"]["field"], "script");
        assert_eq!(calls[8]["file"]["filename"], "start.sh");
        assert!(
            calls[8]["file"]["text"]
                .as_str()
                .unwrap()
                .ends_with("echo hello\n")
        );
        assert_eq!(calls[9]["params"], json!({"cloud": "default"}));
        assert_eq!(
            calls[11]["params"],
            json!({"proxy": 1, "web": 1, "backend": 5, "cloud": "default"})
        );
    }
}

/// Issue #21: `/delete`'s `shutdown` reaches a manager on 1.2's own TLS stack twice in a row,
/// right after the manifest's calls to the same manager.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_shuts_a_1_2_pyopenssl_manager_down_twice_in_a_row() {
    let world = World::start_pyopenssl(Setup::new()).await;
    let py = world.py.as_ref().unwrap();
    for name in ["first", "second"] {
        let manifest = json!({"Application": name, "Services": [{"Type": "mysql"}]});
        world.upload(&manifest, false).await.expect_true(false);
    }
    let services = world.services().await;
    assert_eq!(services.len(), 2);
    let polls = py.calls().len();
    assert_eq!(polls, 4, "{:?}", py.methods());
    for service in &services {
        assert_eq!(service.manager.as_deref(), Some("127.0.0.3"));
        world
            .post(&format!("/delete/{}", service.application_id), &[])
            .await
            .expect_true(true);
    }
    assert!(py.failures().is_empty(), "{:?}", py.failures());
    let calls = py.calls();
    let shutdowns = &calls[polls..];
    assert_eq!(shutdowns.len(), 2, "{shutdowns:?}");
    for call in shutdowns {
        assert_eq!(call["form"], "POST");
        assert_eq!(call["method"], "shutdown");
        assert_eq!(call["params"], json!({}));
        assert_eq!(call["caller"]["role"], "frontend");
        assert_eq!(call["resumed"], false);
    }
    assert!(
        world.services().await.is_empty(),
        "the services were not stopped"
    );
}
