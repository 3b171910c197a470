//! Issue 22: each way a connection is refused or evicted, on real sockets, and its count by
//! reason in `/metrics`. Limits: 6 places, 3 anonymous, 2 per address, 3 per network.

use std::net::Ipv4Addr;
use std::time::Duration;

use conpaas_core::api::server::{Eviction, Refusal, TransportSettings};
use tokio::net::TcpStream;

use super::{closed_within, connect_from, series, tls_from, wait_until};
use crate::support::{Options, TestDirector};

/// Connects from `source` and waits until the listener has decided about the connection
/// (its accepted count reached `accepted`).
async fn connect(test: &TestDirector, source: Ipv4Addr, accepted: &mut u64) -> TcpStream {
    let socket = connect_from(test.addr(), source).await.unwrap();
    *accepted += 1;
    let target = *accepted;
    assert!(
        wait_until(Duration::from_secs(5), || test.transport().accepted()
            >= target)
        .await,
        "connection {target} was not accepted"
    );
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_evictions_are_counted_by_reason_in_metrics() {
    let test = TestDirector::with(
        Options::new().transport(
            TransportSettings::recommended()
                .max_connections(6)
                .max_anonymous_connections(3)
                .max_connections_per_address(2)
                .max_connections_per_network(3)
                .first_byte_timeout(Duration::from_secs(30))
                .shutdown_grace(Duration::from_secs(1)),
        ),
    );
    test.add_user("alice", "pw", 10).await;
    let user = test.user_identity("alice", "pw").await;
    let stats = test.transport().clone();
    // Setting up used (and closed) connections of its own.
    assert!(wait_until(Duration::from_secs(5), || stats.open() == (0, 0)).await);
    let mut accepted = stats.accepted();
    let ip = |c, d| Ipv4Addr::new(127, 50, c, d);

    // Two silent sockets of 127.50.0.1 fill its address; its third is closed at once.
    let mut first = connect(&test, ip(0, 1), &mut accepted).await;
    let _second = connect(&test, ip(0, 1), &mut accepted).await;
    let mut third = connect(&test, ip(0, 1), &mut accepted).await;
    assert!(closed_within(&mut third, Duration::from_secs(1)).await);
    assert_eq!(stats.refused(Refusal::Address), 1);
    // A third of the network 127.50.0.0/24 fills it; its fourth is closed at once.
    let _network_third = connect(&test, ip(0, 2), &mut accepted).await;
    let mut network_fourth = connect(&test, ip(0, 3), &mut accepted).await;
    assert!(closed_within(&mut network_fourth, Duration::from_secs(1)).await);
    assert_eq!(stats.refused(Refusal::Network), 1);
    assert_eq!(stats.open(), (3, 0));

    // The anonymous places are full: a newcomer of another network evicts the oldest
    // connection of the network holding the most.
    let _newcomer = connect(&test, ip(1, 1), &mut accepted).await;
    assert!(closed_within(&mut first, Duration::from_secs(1)).await);
    assert_eq!(stats.evicted(Eviction::Anonymous), 1);
    // 127.50.0.0/24 still holds the most (2 against 1): its own newcomer is refused rather
    // than evicting the others.
    let mut own = connect(&test, ip(0, 4), &mut accepted).await;
    assert!(closed_within(&mut own, Duration::from_secs(1)).await);
    assert_eq!(stats.refused(Refusal::Anonymous), 1);
    assert_eq!(stats.open(), (3, 0));

    // Certificate holders are admitted over the full anonymous places (the first by evicting
    // while it handshakes) and leave them once authenticated; when all places are taken the
    // next ones evict the remaining anonymous connections, and once every place is theirs a
    // newcomer has nothing to evict.
    let mut holders = Vec::new();
    for (c, d) in [(2, 1), (2, 1), (2, 2), (3, 1), (3, 1), (3, 2)] {
        holders.push(tls_from(&test, ip(c, d), Some(&user)).await);
        let n = u64::try_from(holders.len()).unwrap();
        assert!(
            wait_until(Duration::from_secs(5), || stats.open().1 == n).await,
            "{:?} open",
            stats.open()
        );
    }
    assert_eq!(stats.open(), (0, 6));
    let mut late = connect(&test, ip(4, 1), &mut accepted).await;
    assert!(closed_within(&mut late, Duration::from_secs(1)).await);
    assert_eq!(stats.refused(Refusal::Total), 1);
    drop(holders);
    assert!(wait_until(Duration::from_secs(5), || stats.open() == (0, 0)).await);

    let metrics = test.anonymous().get("/metrics").await.text();
    for (name, expected) in [
        (
            r#"conpaas_connections_refused_total{reason="address"}"#,
            1.0,
        ),
        (
            r#"conpaas_connections_refused_total{reason="network"}"#,
            1.0,
        ),
        (
            r#"conpaas_connections_refused_total{reason="anonymous"}"#,
            1.0,
        ),
        (r#"conpaas_connections_refused_total{reason="total"}"#, 1.0),
        (
            r#"conpaas_connections_evicted_total{reason="anonymous"}"#,
            2.0,
        ),
        (r#"conpaas_connections_evicted_total{reason="total"}"#, 2.0),
        // The request reading them, on a connection without a certificate.
        (r#"conpaas_connections_open{class="anonymous"}"#, 1.0),
        (r#"conpaas_connections_open{class="authenticated"}"#, 0.0),
    ] {
        assert_eq!(
            series(&metrics, name),
            Some(expected),
            "{name} in\n{metrics}"
        );
    }
}
