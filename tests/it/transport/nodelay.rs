//! Every accepted connection has `TCP_NODELAY`: an answer written in several parts (headers,
//! then TLS records of the body) must not wait for the client's delayed ACK (up to 40 ms on
//! Linux) before its last part leaves. The socket options of the director's own sockets are
//! read in-process (the test director serves in this process), so the check does not depend
//! on timing.

use std::os::fd::{OwnedFd, RawFd};

use crate::support::TestDirector;

/// Duplicates of this process's TCP sockets whose local port is `port` and whose peer is
/// `peer`: the director's end of one client connection.
fn server_ends(port: u16, peer: std::net::SocketAddr) -> Vec<OwnedFd> {
    let pidfd = rustix::process::pidfd_open(
        rustix::process::getpid(),
        rustix::process::PidfdFlags::empty(),
    )
    .unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !target.to_string_lossy().starts_with("socket:") {
            continue;
        }
        let Ok(copy) =
            rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty())
        else {
            continue;
        };
        let socket = socket2::SockRef::from(&copy);
        let local = socket.local_addr().ok().and_then(|a| a.as_socket());
        let remote = socket.peer_addr().ok().and_then(|a| a.as_socket());
        if local.is_some_and(|local| local.port() == port) && remote == Some(peer) {
            found.push(copy);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_connections_do_not_wait_for_delayed_acks() {
    let director = TestDirector::start();
    // A kept-alive client connection with one multi-segment answer on it (the OpenAPI
    // document is well over a TCP segment).
    let tcp = tokio::net::TcpStream::connect(director.addr())
        .await
        .unwrap();
    let client_end = tcp.local_addr().unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        crate::support::http::client_tls(&director.ca_pem(), None),
    ));
    let mut stream = tls
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream
        .write_all(b"GET /openapi.json HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 64 * 1024];
    let n = stream.read(&mut answer).await.unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &answer[..n.min(64)]
    );

    let ends = server_ends(director.port(), client_end);
    assert_eq!(
        ends.len(),
        1,
        "the director's end of {client_end}: {ends:?}"
    );
    assert!(
        socket2::SockRef::from(&ends[0]).tcp_nodelay().unwrap(),
        "the director's end of {client_end} has Nagle's algorithm on"
    );
}
