//! Concurrency through the real server: credit charged by many manager threads at once loses
//! no update and never goes below zero (spec §6 item 9); concurrent starts in one application
//! never share a VPN subnet (§6 item 18).

use std::collections::HashSet;

use serde_json::json;

use super::manager::{credit, start_service};
use crate::support::{Options, TestDirector};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decrements_lose_no_update() {
    decrements_lose_no_update(TestDirector::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decrements_lose_no_update_on_postgresql() {
    decrements_lose_no_update(TestDirector::with(Options::new().postgres())).await;
}

async fn decrements_lose_no_update(director: TestDirector) {
    let uid = i64::from(director.add_user("busy", "pw", 51).await);
    let user = director.user_identity("busy", "pw").await;
    let started = start_service(&director, &user, uid).await;
    assert_eq!(credit(&director, "busy", "pw").await, 50);

    let http = director.client(&started.manager);
    let sid = started.sid.to_string();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let http = http.clone();
        let sid = sid.clone();
        tasks.spawn(async move {
            http.post(
                "/callback/decrementUserCredit.php",
                &[("sid", sid.as_str()), ("decrement", "1")],
            )
            .await
        });
    }
    let (mut granted, mut refused) = (0, 0);
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.unwrap();
        let value = reply.jsonify(false);
        if value == json!({"error": false}) {
            granted += 1;
        } else if value == json!({"error": true}) {
            refused += 1;
        } else {
            reply.fail("expected {\"error\": false} or {\"error\": true}");
        }
    }
    assert_eq!(
        (granted, refused),
        (50, 14),
        "(granted, refused) of 64 charges of 1 against 50"
    );
    assert_eq!(credit(&director, "busy", "pw").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_never_share_a_subnet() {
    starts_never_share_a_subnet(Options::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_never_share_a_subnet_on_postgresql() {
    starts_never_share_a_subnet(Options::new().postgres()).await;
}

async fn starts_never_share_a_subnet(options: Options) {
    // 2 service bits under a /12: four /14 subnets per application.
    let director = TestDirector::with(options.vpn(2, false));
    director.add_user("racer", "pw", 10).await;
    let user = director.user_identity("racer", "pw").await;
    let http = director.client(&user);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let http = http.clone();
        tasks.spawn(async move { http.post("/start/php", &[]).await });
    }
    let mut subnets = Vec::new();
    let mut exhausted = 0;
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.unwrap();
        reply.expect_no_internals(&director);
        let value = reply.jsonify(true);
        if value.get("sid").is_some() {
            subnets.push(
                value["subnet"]
                    .as_str()
                    .unwrap_or_else(|| reply.fail("no subnet"))
                    .to_owned(),
            );
        } else {
            // Spec config.md §13.6: a clear error object once the plan is exhausted.
            reply.expect_error_object(true);
            exhausted += 1;
        }
    }
    let distinct: HashSet<&String> = subnets.iter().collect();
    assert_eq!(
        distinct.len(),
        subnets.len(),
        "two services share a subnet: {subnets:?}"
    );
    let mut sorted = subnets.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "172.16.0.0/14",
            "172.20.0.0/14",
            "172.24.0.0/14",
            "172.28.0.0/14"
        ],
        "the four subnets of the plan"
    );
    assert_eq!(exhausted, 2);
    // Failed starts are refunded.
    assert_eq!(credit(&director, "racer", "pw").await, 6);
    let reply = http.post("/list", &[]).await;
    assert_eq!(reply.bare(true).as_array().map(Vec::len), Some(4));
}
