//! A raw HTTPS client shaped like the 1.2 managers' (spec/manager-bootstrap.md §11.1): no SNI,
//! a hand-built request, and the answer read until the server closes the connection.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Identity, Reply, TestDirector};

/// The multipart boundary of the 1.2 managers' client, `$` included.
pub const MANAGER_BOUNDARY: &str = "----------_BoUnDaRy_StRiNg_$";

/// A multipart body exactly as the managers' `_encode_multipart_formdata` built it: each
/// field, then each file (`(name, file name, content)`, typed `application/octet-stream`),
/// CRLF line ends, closing boundary and CRLF.
pub fn manager_multipart(fields: &[(&str, &str)], files: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{MANAGER_BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    for (name, filename, content) in files {
        body.extend_from_slice(
            format!(
                "--{MANAGER_BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{MANAGER_BOUNDARY}--\r\n").as_bytes());
    body
}

/// The request line and headers Python 2's `httplib` sent for the managers: `Host` with the
/// port, `Accept-Encoding: identity`, the content type and length, no `Connection` header.
pub fn manager_request(director: &TestDirector, path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost:{}\r\nAccept-Encoding: identity\r\n\
         content-type: multipart/form-data; boundary={MANAGER_BOUNDARY}\r\ncontent-length: {}\r\n\r\n",
        director.port(),
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// The request `wget --post-data` of the TaskFarm helper sends (spec/manager-bootstrap.md
/// §11.6): urlencoded, and `Connection: Keep-Alive` as wget 1.12 asked.
pub fn wget_request(director: &TestDirector, path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nUser-Agent: Wget/1.12 (linux-gnu)\r\nAccept: */*\r\n\
         Host: localhost:{}\r\nConnection: Keep-Alive\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        director.port(),
        body.len()
    )
    .into_bytes()
}

/// Sends `request` over a new TLS connection (no SNI, like pyOpenSSL) presenting `identity`,
/// then reads until the server closes the connection, as the 1.2 managers do. A server that
/// keeps the connection open fails the test after `patience`.
pub async fn send_until_close(
    director: &TestDirector,
    identity: Option<&Identity>,
    what: &str,
    request: &[u8],
    patience: Duration,
) -> Reply {
    let mut tls = connect(director, identity, what).await;
    tls.write_all(request).await.unwrap();
    tls.flush().await.unwrap();
    let mut raw = Vec::new();
    match tokio::time::timeout(patience, read_to_close(&mut tls, &mut raw)).await {
        Ok(()) => {}
        Err(_) => panic!(
            "{what}: the server did not close the connection within {patience:?} after answering \
             (a 1.2 manager reads until the connection closes); got so far:\n{}",
            String::from_utf8_lossy(&raw)
        ),
    }
    parse_response(what, &raw)
}

/// Sends `request` (typically a head announcing a body that is not sent) and returns the
/// first answer the server gives, interim `100 Continue` included, reading only as far as the
/// answer's head (and its body when it has a length). An error if nothing comes within
/// `patience`.
pub async fn send_and_read_first_answer(
    director: &TestDirector,
    identity: Option<&Identity>,
    what: &str,
    request: &[u8],
    patience: Duration,
) -> Result<Reply, String> {
    let mut tls = connect(director, identity, what).await;
    tls.write_all(request).await.unwrap();
    tls.flush().await.unwrap();
    let mut raw = Vec::new();
    let read = async {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            if let Some(split) = raw.windows(4).position(|window| window == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|value| value.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if raw.len() >= split + 4 + length {
                    return;
                }
            }
            match tls.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => raw.extend_from_slice(&buffer[..n]),
            }
        }
    };
    if tokio::time::timeout(patience, read).await.is_err() {
        return Err(format!(
            "{what}: no answer within {patience:?} (the server waits for the body it was told \
             about); got so far: {:?}",
            String::from_utf8_lossy(&raw)
        ));
    }
    Ok(parse_response(what, &raw))
}

async fn connect(
    director: &TestDirector,
    identity: Option<&Identity>,
    what: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(director.ca_pem().as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(identity) => {
            let chain = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    // pyOpenSSL sent no SNI.
    config.enable_sni = false;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(director.addr())
        .await
        .unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap_or_else(|error| panic!("{what}: TLS handshake failed: {error}"))
}

/// Reads until EOF; a TLS close without close_notify also counts as the end (the 1.2 client
/// did not care how the connection ended).
async fn read_to_close<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, raw: &mut Vec<u8>) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) => return,
            Ok(n) => raw.extend_from_slice(&buffer[..n]),
            Err(_) => return,
        }
    }
}

/// Parses a complete HTTP/1.1 response (length-delimited, chunked, or until close).
pub fn parse_response(what: &str, raw: &[u8]) -> Reply {
    let Some(split) = raw.windows(4).position(|window| window == b"\r\n\r\n") else {
        panic!(
            "{what}: no complete response head in {:?}",
            String::from_utf8_lossy(raw)
        );
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{what}: bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.clone())
    };
    let body = if header("transfer-encoding").is_some_and(|value| value.contains("chunked")) {
        dechunk(what, rest)
    } else if let Some(length) = header("content-length") {
        let length: usize = length.parse().unwrap();
        assert!(
            rest.len() >= length,
            "{what}: body shorter than its Content-Length"
        );
        rest[..length].to_vec()
    } else {
        rest.to_vec()
    };
    Reply {
        what: what.to_owned(),
        status,
        headers,
        body,
    }
}

fn dechunk(what: &str, mut data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|window| window == b"\r\n") else {
            panic!("{what}: truncated chunked body");
        };
        let size_text = String::from_utf8_lossy(&data[..end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("{what}: bad chunk size {size_text:?}"));
        data = &data[end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}
