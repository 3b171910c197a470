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
