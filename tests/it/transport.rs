//! The transport's limits against peers that hold connections, on real sockets from distinct
//! loopback addresses (any 127.x.y.z reaches the director on 127.0.0.1). Issue 15: one address
//! holding its maximum of idle sockets does not delay another address, its next connection is
//! closed at once, and its idle sockets are closed after the first-byte timeout. Issue 22:
//! attackers holding the anonymous places leave users and managers served (`attack`), dripped
//! bodies and clients that stop reading are cut at their deadlines (`deadlines`), and
//! refusals and evictions are counted by reason in `/metrics` (`admission`).

mod admission;
mod attack;
mod deadlines;
mod nodelay;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use conpaas_core::api::server::{Listener, TransportSettings};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

use crate::support::http::client_tls;
use crate::support::{Identity, TestDirector};

/// A TCP connection to `addr` from `source`.
async fn connect_from(addr: SocketAddr, source: Ipv4Addr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(addr).await
}

/// A TLS connector trusting the director's CA, presenting `identity` if any.
fn connector(test: &TestDirector, identity: Option<&Identity>) -> tokio_rustls::TlsConnector {
    let tls = client_tls(
        &test.ca_pem(),
        identity.map(|identity| (identity.cert_pem.as_str(), identity.key_pem.as_str())),
    );
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
}

/// A TLS connection to the director from `source`.
async fn tls_from(
    test: &TestDirector,
    source: Ipv4Addr,
    identity: Option<&Identity>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = connect_from(test.addr(), source).await.unwrap();
    connector(test, identity)
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap()
}

/// A client from `source` opening a new connection for every request (as the PHP frontend
/// and `curl` do), presenting `identity` if any.
fn client_from(
    test: &TestDirector,
    source: Ipv4Addr,
    identity: Option<&Identity>,
) -> reqwest::Client {
    let tls = client_tls(
        &test.ca_pem(),
        identity.map(|identity| (identity.cert_pem.as_str(), identity.key_pem.as_str())),
    );
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .local_address(IpAddr::V4(source))
        .resolve("localhost", test.addr())
        .pool_max_idle_per_host(0)
        .http1_only()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Waits until `done` holds, polling; false if it did not within `within`.
async fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// The value of one series (`name{labels}`) in a Prometheus text answer.
fn series(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        (series == name_and_labels).then(|| value.parse().unwrap())
    })
}

/// A client from `source` trusting the director's CA.
fn client(test: &TestDirector, source: Ipv4Addr) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(test.ca_pem().as_bytes()).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .local_address(IpAddr::V4(source))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Whether the server closed `socket` within `within` (EOF or a reset).
async fn closed_within(socket: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(within, socket.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holding_its_idle_maximum_does_not_delay_another() {
    let test = TestDirector::start();
    let files = conpaas_core::ca::DirectorTlsFiles::read(test.cert_dir()).unwrap();
    let tls = conpaas_core::api::tls::server_config_from_files(&files).unwrap();
    let settings = TransportSettings::recommended()
        .max_connections_per_address(8)
        .first_byte_timeout(Duration::from_secs(2))
        .shutdown_grace(Duration::from_secs(1));
    let listener = Listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), tls, settings)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(listener.serve(
        conpaas_core::api::router(test.director().clone()),
        async {
            let _ = stopped.await;
        },
    ));

    // 127.0.0.1 holds its eight places with sockets that send nothing.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Its ninth is closed at once, not queued.
    let mut ninth = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut ninth, Duration::from_secs(1)).await,
        "the over-limit connection was not closed at once"
    );
    // Another address is served promptly meanwhile.
    let url = format!("https://localhost:{}/available_services", addr.port());
    let started = Instant::now();
    let answer = client(&test, Ipv4Addr::new(127, 0, 0, 2))
        .get(&url)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "another address waited {:?}",
        started.elapsed()
    );
    // The silent sockets are dropped after the first-byte timeout, and their address is
    // served again.
    for socket in &mut idle {
        assert!(
            closed_within(socket, Duration::from_secs(4)).await,
            "an idle socket outlived the first-byte timeout"
        );
    }
    let answer = client(&test, Ipv4Addr::LOCALHOST)
        .get(&url)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
    let _ = stop.send(());
    server.await.unwrap();
}
