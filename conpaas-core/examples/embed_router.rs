//! The 1.2 routes inside an orchestrator's own axum application and its own TLS accept loop:
//! the orchestrator's route beside `/listapp`, its own `/healthz` and `/metrics` beside the
//! director's operator routes nested under `/conpaas`, its own fallback, client certificates
//! turned into the router's `PeerInfo`, and real HTTPS requests with a user's client
//! certificate.
//! Run with `cargo run -p conpaas-core --example embed_router`.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use conpaas_core::api::{self, PeerInfo};
use conpaas_core::ca::{CertificateAuthority, KeyAlgorithm};
use conpaas_core::cloud::{CloudRegistry, DummyCloud};
use conpaas_core::director::Director;
use conpaas_core::director::accounts::{self, NewAccount};
use conpaas_core::model::Credit;
use conpaas_core::store::{DatabaseUrl, Store, StoreSettings};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::ExposeSecret as _;
use tower::Layer as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let ca = Arc::new(CertificateAuthority::generate(KeyAlgorithm::EcdsaP256)?);
    let director = Director::builder()
        .store(Store::open(
            &StoreSettings::new(DatabaseUrl::Sqlite(dir.path().join("director.db")))
                .max_connections(4),
        )?)
        .shared_ca(ca.clone())
        .clouds(
            CloudRegistry::builder()
                .cloud(
                    "local",
                    Arc::new(DummyCloud::new("local", dir.path().join("vms"))),
                )
                .build()?,
        )
        .build()?;
    // The orchestrator's own TLS identity, here issued by the same CA.
    let server_cert = ca.issue_director_cert("localhost")?;
    let user = accounts::add_user_blocking(
        director.store(),
        NewAccount::new(
            "alice",
            "alice@example.org",
            "correct horse".to_owned().into(),
            Credit(5),
        ),
    )?;
    let user_cert = ca.issue_user_cert(user.uid, "alice", "alice@example.org")?;
    tokio::runtime::Runtime::new()?.block_on(async {
        // The orchestrator's own rustls configuration, with rustls' process-default provider
        // (conpaas-core brings only aws-lc-rs, so the default builders work): client
        // certificates optional, verified against the director's CA when sent (the router
        // trusts what the verifier accepted).
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes())?)?;
        let roots = Arc::new(roots);
        let verifier = rustls::server::WebPkiClientVerifier::builder(roots.clone())
            .allow_unauthenticated()
            .build()?;
        let server_key = server_cert.key_pem.as_ref().expect("a generated key");
        let tls = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(
                    server_cert.cert_pem.as_bytes(),
                )?],
                PrivateKeyDer::from_pem_slice(server_key.expose_secret().as_bytes())?,
            )?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        // The orchestrator's application: its own routes (a `/healthz` and a `/metrics` among
        // them) and fallback, the ConPaaS routes merged in at the root (where 1.2 clients call
        // them), the director's operator routes nested under a prefix.
        let app = Router::new()
            .route("/hello", get(|| async { "hello from the orchestrator" }))
            .route("/healthz", get(|| async { "orchestrator healthy" }))
            .route("/metrics", get(|| async { "orchestrator_up 1\n" }))
            .merge(api::conpaas_routes(director.clone()))
            .nest("/conpaas", api::operator_routes(director.clone()))
            .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "not ours") });

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            loop {
                let Ok((tcp, remote)) = listener.accept().await else {
                    return;
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    // The PeerInfo contract: the verified leaf of this connection.
                    let service = api::peer_layer(PeerInfo::from_tls(remote, &stream)).layer(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                        .await;
                });
            }
        });

        // A client holding alice's certificate, trusting only the CA.
        let user_key = user_cert.key_pem.as_ref().expect("a generated key");
        let client_tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(
                    user_cert.cert_pem.as_bytes(),
                )?],
                PrivateKeyDer::from_pem_slice(user_key.expose_secret().as_bytes())?,
            )?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(client_tls)
            .build()?;
        let base = format!("https://localhost:{}", addr.port());
        let hello = client
            .get(format!("{base}/hello"))
            .send()
            .await?
            .text()
            .await?;
        println!("/hello: {hello}");
        assert_eq!(hello, "hello from the orchestrator");
        let apps = client
            .get(format!("{base}/listapp"))
            .send()
            .await?
            .text()
            .await?;
        println!("/listapp with alice's certificate: {apps}");
        assert_eq!(apps, r#"[{"aid": 1, "name": "New Application"}]"#);
        let clouds = client
            .get(format!("{base}/available_clouds"))
            .send()
            .await?
            .text()
            .await?;
        println!("/available_clouds: {clouds}");
        assert_eq!(clouds, r#"["default"]"#);
        let health = client
            .get(format!("{base}/healthz"))
            .send()
            .await?
            .text()
            .await?;
        println!("/healthz: {health}");
        assert_eq!(health, "orchestrator healthy");
        let director_health = client
            .get(format!("{base}/conpaas/healthz"))
            .send()
            .await?
            .text()
            .await?;
        println!("/conpaas/healthz: {director_health}");
        assert_eq!(director_health, "ok\n");
        // The director's metrics, for a client on loopback (METRICS_ALLOW's default).
        let metrics = client.get(format!("{base}/conpaas/metrics")).send().await?;
        assert_eq!(metrics.status().as_u16(), 200);
        let metrics = metrics.text().await?;
        let listapp = metrics
            .lines()
            .find(|line| line.starts_with("conpaas_http_requests_total{route=\"/listapp\""))
            .unwrap_or_default();
        println!("/conpaas/metrics: {listapp}");
        assert!(listapp.ends_with(" 1"), "{metrics}");
        // The nested routes are counted under their own pattern.
        assert!(
            metrics.contains("conpaas_http_requests_total{route=\"/healthz\""),
            "{metrics}"
        );
        let other = client.get(format!("{base}/jobs/42")).send().await?;
        let status = other.status();
        let body = other.text().await?;
        println!("/jobs/42: {status} {body}");
        assert_eq!((status.as_u16(), body.as_str()), (404, "not ours"));
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
