//! The ceiling: a minimal hyper + tokio-rustls server with the director's TLS setup (its
//! certificate and key, client certificates optional and verified against its CA, through
//! the same `conpaas_core::api::tls::server_config`), answering `[]` to every request. What
//! it costs is the TLS and HTTP work any director must do; the director's figures are given
//! as ratios to it.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http_body_util::Full;
use hyper::http::{Response, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::client::BoxError;

/// Serves on `listen` with the certificates of `cert_dir` (`cert.pem`, `key.pem`,
/// `ca_cert.pem`) until killed; prints `listening on https://ADDR` first, as the director
/// does. The runtime is the director's: multi-threaded, one worker per core.
pub fn serve(listen: SocketAddr, cert_dir: &Path) -> Result<(), BoxError> {
    let files = conpaas_core::ca::DirectorTlsFiles::read(cert_dir)?;
    let tls = conpaas_core::api::tls::server_config_from_files(&files)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let tcp = TcpListener::bind(listen).await?;
        println!("listening on https://{}", tcp.local_addr()?);
        std::io::stdout().flush()?;
        let acceptor = TlsAcceptor::from(tls);
        let http = std::sync::Arc::new(hyper::server::conn::http1::Builder::new());
        loop {
            let Ok((stream, _)) = tcp.accept().await else {
                continue;
            };
            let (acceptor, http) = (acceptor.clone(), http.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header(header::CONTENT_TYPE, "application/json")
                            .body(Full::new(Bytes::from_static(b"[]")))
                            .unwrap_or_default(),
                    )
                });
                let _ = http.serve_connection(TokioIo::new(tls), service).await;
            });
        }
    })
}
