//! Hostile clients (issue 15): guessing bursts against the login throttle, look-alike and
//! unbounded names, per-user caps, certificates unfit for client authentication. Every answer
//! keeps its 1.2 shape: a throttled login is a refused one (`false`), a refused name an error
//! object where the route answers error objects.

use std::time::{Duration, Instant};

use conpaas_core::director::LoginSource;

use crate::support::TestDirector;

/// The throttle's free allowance of failed attempts per network and per account.
const ALLOWANCE: u64 = 20;

/// How many checks past the allowance the backoff (1 s, doubling) can admit within `elapsed`.
fn backoff_slots(elapsed: Duration) -> u64 {
    let (mut slots, mut waited, mut delay) = (0, Duration::ZERO, Duration::from_secs(1));
    while waited + delay <= elapsed {
        waited += delay;
        delay *= 2;
        slots += 1;
    }
    slots
}

/// 300 wrong passwords at once from one address, over TLS: the check and the count are one
/// step taken before hashing, so no more than the allowance of passwords is hashed (1.2 and
/// the first throttle hashed about 105 of such a burst), and every answer is `false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_wrong_passwords_hashes_at_most_the_allowance() {
    let director = TestDirector::start();
    director.add_user("target", "right", 5).await;
    let http = director.anonymous();
    let before = director.director().hashing().n_verifications();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for attempt in 0..300 {
        let http = http.clone();
        tasks.spawn(async move {
            let password = format!("guess{attempt}");
            http.post("/login", &[("username", "target"), ("password", &password)])
                .await
        });
    }
    while let Some(reply) = tasks.join_next().await {
        reply.unwrap().expect_false(true);
    }
    let elapsed = started.elapsed();
    let n_hashed = director.director().hashing().n_verifications() - before;
    let bound = ALLOWANCE + backoff_slots(elapsed);
    assert!(
        n_hashed <= bound,
        "{n_hashed} passwords hashed in {elapsed:?}, at most {bound} allowed"
    );
    assert!(
        n_hashed >= ALLOWANCE,
        "the allowance is checked: {n_hashed}"
    );
    // Throttled: even the right password is refused unchecked right now.
    let before = director.director().hashing().n_verifications();
    http.post("/login", &[("username", "target"), ("password", "right")])
        .await
        .expect_false(true);
    assert_eq!(director.director().hashing().n_verifications(), before);
}

/// IPv6 is counted per /64 (a host usually holds a whole one) and IPv4 per address; the
/// account is counted too, whatever the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_of_one_ipv6_64_share_the_allowance() {
    let director = TestDirector::start();
    director.add_user("v6", "right", 5).await;
    director.add_user("other", "right", 5).await;
    let director = director.director().clone();
    let from = |ip: &str| Some(LoginSource::Address(ip.parse().unwrap()));
    let hashing = director.hashing().clone();
    for i in 0..ALLOWANCE {
        let ip = format!("2001:db8:5:6::{i:x}");
        let user = director
            .login_from("nobody", &format!("guess{i}").into(), from(&ip))
            .await
            .unwrap();
        assert!(user.is_none());
    }
    let before = hashing.n_verifications();
    let refused = director
        .login_from("other", &"right".into(), from("2001:db8:5:6:ffff::1"))
        .await
        .unwrap();
    assert!(refused.is_none(), "same /64: throttled");
    assert_eq!(hashing.n_verifications(), before, "refused unchecked");
    let admitted = director
        .login_from("other", &"right".into(), from("2001:db8:5:7::1"))
        .await
        .unwrap();
    assert_eq!(admitted.unwrap().username, "other", "another /64");
    // The account `nobody` now backs off from any address.
    let refused = director
        .login_from("nobody", &"x".into(), from("192.0.2.200"))
        .await
        .unwrap();
    assert!(refused.is_none());
    assert_eq!(hashing.n_verifications(), before + 1);
}

/// Through the frontend's certificate (one address for every user, so counted per account
/// only), guessing a victim's password backs off exponentially but never locks the victim
/// out: once the short delay has passed, the right password is checked and accepted.
#[tokio::test]
async fn guessing_through_the_frontend_backs_off_but_does_not_lock_the_victim_out() {
    let director = TestDirector::start();
    director.add_user("victim", "right", 5).await;
    let frontend = director.client(&director.frontend());
    let hashing = director.director().hashing().clone();
    let login = |password: &'static str| {
        let frontend = frontend.clone();
        async move {
            frontend
                .post("/login", &[("username", "victim"), ("password", password)])
                .await
        }
    };
    for _ in 0..ALLOWANCE {
        login("guess").await.expect_false(true);
    }
    let before = hashing.n_verifications();
    let attempt = Instant::now();
    login("right").await.expect_false(true);
    assert_eq!(hashing.n_verifications(), before, "in backoff: not checked");
    // After 1 s one guess is checked; the next must wait 2 s.
    tokio::time::sleep(Duration::from_millis(1100).saturating_sub(attempt.elapsed())).await;
    login("guess").await.expect_false(true);
    let last_guess = Instant::now();
    assert_eq!(hashing.n_verifications(), before + 1);
    login("right").await.expect_false(true);
    assert_eq!(hashing.n_verifications(), before + 1);
    tokio::time::sleep(Duration::from_millis(2100).saturating_sub(last_guess.elapsed())).await;
    let reply = login("right").await;
    assert_eq!(reply.bare(true)["username"], "victim");
    // The success cleared the account's failures: the victim is not left in backoff.
    login("typo").await.expect_false(true);
    let reply = login("right").await;
    assert_eq!(reply.bare(true)["username"], "victim");
}
