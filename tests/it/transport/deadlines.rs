//! Issue 22, item 2: a body dripped a byte at a time (with a `Content-Length` or chunked) is
//! cut at the body deadline, counted from the headers and not restarted by each byte; a
//! client that sends 400 pipelined requests and never reads an answer is dropped once the
//! writes have made no progress for the write deadline. Before, both held their connection
//! for as long as they liked (the header timeout covers headers only).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use conpaas_core::api::server::{Phase, TransportSettings};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{connector, series, tls_from, wait_until};
use crate::support::{Options, TestDirector};

const BODY_TIMEOUT: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Scheduling and the buffers' filling on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(1500);

fn director() -> TestDirector {
    TestDirector::with(
        Options::new().transport(
            TransportSettings::recommended()
                .request_body_timeout(BODY_TIMEOUT)
                .write_timeout(WRITE_TIMEOUT)
                .shutdown_grace(Duration::from_secs(1)),
        ),
    )
}

/// Sends a `/login` head then its body a byte every 250 ms; how long after the head the
/// server closed the connection (what it answered meanwhile, if anything).
async fn drip_until_closed(test: &TestDirector, chunked: bool) -> (Duration, String) {
    let tls = tls_from(test, Ipv4Addr::LOCALHOST, None).await;
    let (mut reader, mut writer) = tokio::io::split(tls);
    let framing = if chunked {
        "Transfer-Encoding: chunked"
    } else {
        "Content-Length: 1000"
    };
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n{framing}\r\n\r\n"
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    writer.flush().await.unwrap();
    let sent = Instant::now();
    let dripping = async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let byte: &[u8] = if chunked { b"1\r\na\r\n" } else { b"a" };
            if writer.write_all(byte).await.is_err() || writer.flush().await.is_err() {
                // Written into a closed connection: wait for the reader to see it.
                std::future::pending::<()>().await;
            }
        }
    };
    let mut answer = Vec::new();
    let closed = async {
        let mut buffer = [0u8; 4096];
        while let Ok(n @ 1..) = reader.read(&mut buffer).await {
            answer.extend_from_slice(&buffer[..n]);
        }
    };
    let waited = tokio::time::timeout(BODY_TIMEOUT * 5, async {
        tokio::select! {
            () = dripping => {}
            () = closed => {}
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "a dripped body (chunked: {chunked}) still held its connection after {:?}",
        BODY_TIMEOUT * 5
    );
    (
        sent.elapsed(),
        String::from_utf8_lossy(&answer).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripped_body_is_cut_at_the_body_deadline() {
    let test = director();
    for (n, chunked) in [false, true].into_iter().enumerate() {
        let (took, answer) = drip_until_closed(&test, chunked).await;
        eprintln!(
            "dripped body (chunked: {chunked}) closed after {took:?}, answered {:?}",
            answer.lines().next().unwrap_or("nothing")
        );
        assert!(
            took + Duration::from_millis(100) >= BODY_TIMEOUT && took <= BODY_TIMEOUT + MARGIN,
            "a dripped body (chunked: {chunked}) was cut after {took:?}, expected {BODY_TIMEOUT:?} \
             (+ {MARGIN:?}); answered: {answer:?}"
        );
        // Refused as unreadable (or not answered at all), never taken for a login.
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 400 "),
            "{answer}"
        );
        let n = u64::try_from(n).unwrap() + 1;
        assert!(
            wait_until(Duration::from_secs(1), || test
                .transport()
                .timed_out(Phase::Body)
                == n)
            .await,
            "body timeouts counted: {}",
            test.transport().timed_out(Phase::Body)
        );
    }
    let metrics = test.anonymous().get("/metrics").await.text();
    assert_eq!(
        series(
            &metrics,
            r#"conpaas_connections_timed_out_total{phase="body"}"#
        ),
        Some(2.0),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_at_the_write_deadline() {
    let test = director();
    // A small receive window, so that the answers fill it (and the server's send buffer)
    // quickly, as a client that stops reading does.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket
        .bind(std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .unwrap();
    let tcp = socket.connect(test.addr()).await.unwrap();
    let mut tls = connector(&test, None)
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let requests = "GET /openapi.json HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(400);
    tls.write_all(requests.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let sent = Instant::now();
    // Never read: the server's writes stall once the buffers are full, and the connection
    // must be gone within the write deadline (plus the time to fill them).
    let dropped = wait_until(WRITE_TIMEOUT + MARGIN * 2, || {
        test.transport().open() == (0, 0) && test.transport().timed_out(Phase::Write) == 1
    })
    .await;
    let took = sent.elapsed();
    eprintln!("non-reading client dropped after {took:?}");
    assert!(
        dropped,
        "a client that stopped reading still held its connection after {took:?} ({:?} open, \
         {} write timeouts)",
        test.transport().open(),
        test.transport().timed_out(Phase::Write)
    );
    assert!(
        took >= WRITE_TIMEOUT,
        "dropped after {took:?}, before the write deadline"
    );
    // The client sees the end once it reads what the buffers hold.
    let mut buffer = vec![0u8; 64 * 1024];
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(1..) = tls.read(&mut buffer).await {}
    })
    .await;
    assert!(drained.is_ok(), "the connection did not end for the client");
    let metrics = test.anonymous().get("/metrics").await.text();
    assert_eq!(
        series(
            &metrics,
            r#"conpaas_connections_timed_out_total{phase="write"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
}
