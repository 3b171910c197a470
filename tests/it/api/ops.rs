//! The routes beside the 1.2 API (docs/operations.md): `/version` as 1.3 answered it,
//! `/healthz`, `/readyz`, `/metrics` and who may read it, and request ids.

use super::manager::start_service;
use crate::support::{Options, Reply, TestDirector};

/// The value of one series (`name{labels}`) of a Prometheus text exposition; `None` when absent.
fn series(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        (series == name_and_labels).then(|| value.parse().unwrap())
    })
}

fn expect_series(reply: &Reply, name_and_labels: &str, expected: f64) {
    let text = reply.text();
    match series(&text, name_and_labels) {
        Some(value) if value == expected => {}
        found => reply.fail(&format!(
            "{name_and_labels}: expected {expected}, found {found:?}"
        )),
    }
}

#[tokio::test]
async fn version_health_and_readiness_answer_plain_text_to_anyone() {
    let director = TestDirector::start();
    let http = director.anonymous();
    let version = http.get("/version").await;
    version
        .expect_status(200)
        .expect_content_type("text/html; charset=utf-8")
        .expect_cors(true);
    assert_eq!(version.text(), conpaas_core::api::VERSION);
    assert_eq!(version.text(), env!("CARGO_PKG_VERSION"));
    http.head("/version").await.expect_status(200);
    let health = http.get("/healthz").await;
    health.expect_status(200).expect_cors(false);
    assert_eq!(health.text(), "ok\n");
    let ready = http.get("/readyz").await;
    ready.expect_status(200).expect_cors(false);
    assert_eq!(ready.text(), "ready\n");
    // Only GET (and HEAD, OPTIONS), as every GET route.
    http.post("/healthz", &[])
        .await
        .expect_method_not_allowed(&["HEAD", "GET", "OPTIONS"], &["POST"]);
    let options = http.request("OPTIONS", "/metrics").await;
    options.expect_status(200);
    assert_eq!(options.header("allow"), Some("HEAD, GET, OPTIONS"));
    // A user's certificate changes nothing.
    director.add_user("v", "pw", 5).await;
    let user = director.user_identity("v", "pw").await;
    assert_eq!(
        director.client(&user).get("/version").await.text(),
        version.text()
    );
}

/// Issue 26, 5: a replica left behind by an upgrade (another director of a newer version
/// migrated the shared database) is taken out of rotation: `/readyz` says `migrations`.
#[tokio::test]
async fn a_schema_newer_than_the_build_is_not_ready() {
    let director = TestDirector::start();
    let http = director.anonymous();
    assert_eq!(http.get("/readyz").await.text(), "ready\n");
    director
        .director()
        .store()
        .run(|conn| {
            use diesel::connection::SimpleConnection as _;
            conn.batch_execute("INSERT INTO __diesel_schema_migrations (version) VALUES ('9999')")
                .map_err(conpaas_core::store::Error::from)
        })
        .await
        .unwrap();
    let ready = http.get("/readyz").await;
    ready.expect_status(503);
    assert_eq!(ready.text(), "not ready: migrations\n");
}

#[tokio::test]
async fn every_answer_carries_the_directors_own_request_id() {
    let director = TestDirector::start();
    let http = director.anonymous();
    let mut seen = Vec::new();
    for path in ["/available_clouds", "/nothing/here", "/login"] {
        let reply = http.get(path).await;
        let id = reply
            .header("x-request-id")
            .unwrap_or_else(|| reply.fail("no x-request-id"))
            .to_owned();
        assert!(!id.is_empty() && !seen.contains(&id), "{id} after {seen:?}");
        seen.push(id);
    }
    let sent = http
        .send(
            "GET /available_clouds with an id".into(),
            http.inner()
                .get(http.url("/available_clouds"))
                .header("x-request-id", "frontend-42"),
        )
        .await;
    sent.expect_status(200);
    // A client's id is kept apart (log and audit), never taken as the request's: two clients
    // could otherwise make their requests one.
    let ids = sent.header_values("x-request-id");
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_ne!(ids[0], "frontend-42");
    assert!(
        !seen.iter().any(|id| id == ids[0]),
        "{ids:?} after {seen:?}"
    );
}

#[tokio::test]
async fn metrics_count_what_a_story_did() {
    let director = TestDirector::start();
    let uid = i64::from(director.add_user("m", "pw", 5).await);
    let http = director.anonymous();
    http.post("/login", &[("username", "m"), ("password", "wrong")])
        .await
        .expect_false(true);
    http.post("/login", &[("username", "m"), ("password", "pw")])
        .await
        .expect_status(200);
    let user = director.user_identity("m", "pw").await;
    let started = start_service(&director, &user, uid).await;
    let manager = director.client(&started.manager);
    let sid = started.sid.to_string();
    let charge = |decrement: &'static str| {
        let manager = &manager;
        let sid = sid.clone();
        async move {
            manager
                .post(
                    "/callback/decrementUserCredit.php",
                    &[
                        ("uid", &uid.to_string()),
                        ("sid", &sid),
                        ("decrement", decrement),
                    ],
                )
                .await
        }
    };
    assert_eq!(charge("1").await.jsonify(false)["error"], false);
    assert_eq!(charge("-3").await.jsonify(false)["error"], true);
    director
        .client(&user)
        .post(&format!("/stop/{sid}"), &[])
        .await
        .expect_true(true);

    let metrics = http.get("/metrics").await;
    metrics
        .expect_status(200)
        .expect_content_type("text/plain; version=0.0.4; charset=utf-8");
    for (series, value) in [
        (r#"conpaas_logins_total{result="accepted"}"#, 2.0),
        (r#"conpaas_logins_total{result="refused"}"#, 1.0),
        (r#"conpaas_certificates_issued_total{role="user"}"#, 1.0),
        (r#"conpaas_certificates_issued_total{role="manager"}"#, 1.0),
        (
            r#"conpaas_services_total{event="started",cloud="iaas",type="php"}"#,
            1.0,
        ),
        (
            r#"conpaas_services_total{event="stopped",cloud="iaas",type="php"}"#,
            1.0,
        ),
        (r#"conpaas_credit_decrements_total{result="applied"}"#, 1.0),
        (r#"conpaas_credit_decrements_total{result="refused"}"#, 1.0),
        (
            r#"conpaas_cloud_call_duration_seconds_count{cloud="iaas",call="create_node"}"#,
            1.0,
        ),
        (
            r#"conpaas_cloud_call_duration_seconds_count{cloud="iaas",call="kill_node"}"#,
            1.0,
        ),
        (
            r#"conpaas_http_requests_total{route="/login",method="POST",status="200",outcome="refused"}"#,
            1.0,
        ),
        (
            r#"conpaas_http_requests_total{route="/login",method="POST",status="200",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"conpaas_http_requests_total{route="/callback/decrementUserCredit.php",method="POST",status="200",outcome="refused"}"#,
            1.0,
        ),
        (
            r#"conpaas_http_requests_total{route="/stop/{serviceid}",method="POST",status="200",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"conpaas_http_request_duration_seconds_count{route="/login"}"#,
            2.0,
        ),
        // ECDSA test keys: no pool.
        ("conpaas_key_pool_size", 0.0),
    ] {
        expect_series(&metrics, series, value);
    }
    // Neither a URL nor a secret is ever a label.
    let text = metrics.text();
    assert!(
        !text.contains("wrong") && !text.contains("password"),
        "{text}"
    );
    assert!(!text.contains(&format!("/stop/{sid}\"")), "{text}");
}

#[tokio::test]
async fn throttled_logins_are_counted_as_such() {
    let director = TestDirector::start();
    director.add_user("t", "pw", 5).await;
    let http = director.anonymous();
    let mut throttled = 0;
    for _ in 0..22 {
        http.post("/login", &[("username", "t"), ("password", "guess")])
            .await
            .expect_false(true);
        let metrics = http.get("/metrics").await.text();
        throttled = series(&metrics, r#"conpaas_logins_total{result="throttled"}"#)
            .unwrap_or_default() as u32;
    }
    assert!(throttled >= 1, "no throttled login counted");
    let metrics = http.get("/metrics").await;
    expect_series(
        &metrics,
        r#"conpaas_http_requests_total{route="/login",method="POST",status="200",outcome="throttled"}"#,
        f64::from(throttled),
    );
}

#[tokio::test]
async fn metrics_need_an_allowed_address_or_the_frontend_certificate() {
    for allow in ["none", "192.0.2.0/24, 2001:db8::1"] {
        let director = TestDirector::with(Options::new().director_setting("METRICS_ALLOW", allow));
        director.add_user("o", "pw", 5).await;
        let user = director.user_identity("o", "pw").await;
        for reply in [
            director.anonymous().get("/metrics").await,
            director.client(&user).get("/metrics").await,
        ] {
            reply
                .expect_status(403)
                .expect_media_type("text/html")
                .expect_no_internals(&director);
            assert!(!reply.text().contains("conpaas_"), "{allow}");
        }
        let frontend = director.client(&director.frontend()).get("/metrics").await;
        frontend.expect_status(200);
        expect_series(
            &frontend,
            r#"conpaas_http_requests_total{route="/metrics",method="GET",status="403",outcome="refused"}"#,
            2.0,
        );
    }
    // The default: loopback, where the tests' clients are.
    let director = TestDirector::start();
    director
        .anonymous()
        .get("/metrics")
        .await
        .expect_status(200);
}

/// A cloud refusing its credentials: the probe names it in one warning, `conpaas_cloud_up`
/// says 0 for it and 1 for the cloud that answers, and `/readyz` stays 200 (a balancer keeps
/// the replica) while saying `degraded` and which cloud; once it answers again, plain `ready`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_failing_its_probe_degrades_readiness_without_taking_the_director_out() {
    use crate::opennebula_xmlrpc::fake::{FakeConfig, FakeOne};
    let one = FakeOne::start(FakeConfig::new()).await;
    let section = |password: &str| {
        format!(
            "DRIVER = opennebula\nAPI = xmlrpc\nXMLRPC = {}\nUSER = conpaas\nPASSWORD = {password}\n\
             TEMPLATE_ID = 7\n",
            one.url()
        )
    };
    let director = TestDirector::with(Options::new().other_cloud("nebula", &section("wr0ng")));
    let http = director.anonymous();
    // Before any probe nothing is known: ready.
    assert_eq!(http.get("/readyz").await.text(), "ready\n");

    let health = director.director().probe_clouds().await;
    let summary: Vec<_> = health
        .iter()
        .map(|h| (h.cloud.as_str(), h.driver, h.up))
        .collect();
    assert_eq!(
        summary,
        [("iaas", "dummy", true), ("nebula", "opennebula", false)]
    );
    let problem = health[1].problem.as_deref().unwrap();
    assert!(problem.contains("AUTHENTICATION"), "{problem}");
    assert!(!problem.contains("wr0ng"), "the password leaked: {problem}");
    assert_eq!(director.director().clouds_down(), ["nebula"]);

    let ready = http.get("/readyz").await;
    ready.expect_status(200);
    assert_eq!(
        ready.text(),
        "ready; degraded: cloud nebula not usable (see the director's log)\n"
    );
    let metrics = director.client(&director.frontend()).get("/metrics").await;
    expect_series(&metrics, r#"conpaas_cloud_up{cloud="iaas"}"#, 1.0);
    expect_series(&metrics, r#"conpaas_cloud_up{cloud="nebula"}"#, 0.0);

    // The same cloud answering (here: the fake accepting any password is not possible, so
    // the director is opened again with the right one) reads as ready.
    let fixed = TestDirector::with(Options::new().other_cloud("nebula", &section("opennebula")));
    assert!(fixed.director().probe_clouds().await.iter().all(|h| h.up));
    assert_eq!(fixed.anonymous().get("/readyz").await.text(), "ready\n");
}

/// What an operator's dashboards expect before anything happened: the process metrics, the
/// build, counters of closed label sets at 0 (not absent), and state gauges read from the
/// database at each scrape (users, applications, services by cloud, credit outstanding).
#[tokio::test]
async fn metrics_hold_process_build_zero_counters_and_state_from_the_start() {
    let director = TestDirector::start();
    let http = director.anonymous();
    let fresh = http.get("/metrics").await;
    let text = fresh.text();
    for (series, value) in [
        (r#"conpaas_logins_total{result="accepted"}"#, 0.0),
        (r#"conpaas_logins_total{result="throttled"}"#, 0.0),
        (r#"conpaas_credit_decrements_total{result="applied"}"#, 0.0),
        (
            r#"conpaas_credit_decrements_total{result="deferred_unjournaled"}"#,
            0.0,
        ),
        (r#"conpaas_certificates_issued_total{role="agent"}"#, 0.0),
        (r#"conpaas_maintenance_total{action="reaped"}"#, 0.0),
        (
            r#"conpaas_cloud_call_errors_total{cloud="iaas",call="create_node"}"#,
            0.0,
        ),
        (
            &format!(
                r#"conpaas_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        ),
        ("conpaas_users", 0.0),
        ("conpaas_applications", 0.0),
        ("conpaas_services_starting", 0.0),
        (r#"conpaas_services_running{cloud="iaas"}"#, 0.0),
        ("conpaas_credit_outstanding", 0.0),
    ] {
        expect_series(&fresh, series, value);
    }
    for process in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_start_time_seconds",
        "process_open_fds",
        "process_max_fds",
        "process_threads",
    ] {
        let value = series(&text, process).unwrap_or_else(|| fresh.fail(process));
        assert!(value > 0.0, "{process} {value}");
    }
    assert!(
        text.contains("# TYPE process_cpu_seconds_total counter"),
        "{text}"
    );

    let uid = i64::from(director.add_user("g", "pw", 7).await);
    director.add_user("h", "pw", 3).await;
    let user = director.user_identity("g", "pw").await;
    start_service(&director, &user, uid).await;
    let after = http.get("/metrics").await;
    for (series, value) in [
        ("conpaas_users", 2.0),
        // Each user's default application, as 1.2 makes it.
        ("conpaas_applications", 2.0),
        ("conpaas_services_starting", 0.0),
        (r#"conpaas_services_running{cloud="iaas"}"#, 1.0),
        // 7 + 3, less the start's charge.
        ("conpaas_credit_outstanding", 9.0),
    ] {
        expect_series(&after, series, value);
    }
}

/// A scraper on another host needs neither an allowed address nor the director's key: the
/// token `director init` wrote into `CERT_DIR/metrics_token` (0600), sent as Prometheus sends
/// `authorization: credentials_file`, reads `/metrics`; a wrong or absent token does not.
#[tokio::test]
async fn the_metrics_token_reads_metrics_from_anywhere() {
    use std::os::unix::fs::PermissionsExt as _;
    let director = TestDirector::with(Options::new().director_setting("METRICS_ALLOW", "none"));
    let token_path = director.cert_dir().join("metrics_token");
    let mode = std::fs::metadata(&token_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_path).unwrap();
    let token = token.trim();
    assert_eq!(token.len(), 64, "256 bits in hex: {token}");
    let scrape = |authorization: Option<String>| {
        let mut curl = std::process::Command::new("curl");
        curl.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(director.ca_path());
        if let Some(value) = authorization {
            curl.args(["-H", &format!("Authorization: {value}")]);
        }
        let out = curl
            .arg(format!("https://localhost:{}/metrics", director.port()))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(scrape(Some(format!("Bearer {token}"))), "200");
    assert_eq!(scrape(None), "403");
    assert_eq!(scrape(Some("Bearer not-the-token".to_owned())), "403");
    assert_eq!(scrape(Some(format!("Basic {token}"))), "403");
    let wrong_length = &token[..63];
    assert_eq!(scrape(Some(format!("Bearer {wrong_length}"))), "403");
}
