//! The director's client towards managers, against a real HTTPS "manager" using a certificate
//! from the director's CA: JSON-RPC shape, client certificate, and the role check on the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use conpaas_core::api::server::{Listener, PeerInfo, TransportSettings};
use conpaas_core::ca::{CaSettings, CertIdentity, CertificateAuthority, IfExists, KeyAlgorithm};
use conpaas_core::manager_client::{ManagerClient, PeerCheck};
use conpaas_core::model::{ServiceId, UserId};
use secrecy::ExposeSecret;

fn manager_role() -> PeerCheck {
    Arc::new(|der: &[u8]| {
        CertIdentity::parse(der).is_ok_and(|id| id.role.as_deref() == Some("manager"))
    })
}

/// Serves JSON-RPC on `/` with `cert`/`key`; answers with the caller's role in `result`.
async fn fake_manager(ca: &CertificateAuthority, cert: &str, key: &str) -> SocketAddr {
    let tls = conpaas_core::api::tls::server_config(
        cert.as_bytes(),
        key.as_bytes(),
        ca.cert_pem().as_bytes(),
    )
    .unwrap();
    let app = axum::Router::new().route(
        "/",
        post(|peer: Option<axum::Extension<PeerInfo>>, Json(body): Json<serde_json::Value>| async move {
            let role = peer
                .and_then(|axum::Extension(peer)| peer.certificate)
                .and_then(|cert| CertIdentity::parse(cert.as_ref()).ok())
                .and_then(|id| id.role);
            Json(serde_json::json!({"result": {"method": body["method"], "caller": role}, "id": body["id"]}))
        }),
    );
    let listener = Listener::bind(
        "127.0.0.1:0".parse().unwrap(),
        tls,
        TransportSettings::recommended(),
    )
    .await
    .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(listener.serve(app, std::future::pending()));
    addr
}

#[tokio::test]
async fn calls_managers_and_refuses_impostors() {
    let dir = tempfile::tempdir().unwrap();
    let settings = CaSettings {
        cert_dir: dir.path().join("certs"),
        key_algorithm: KeyAlgorithm::EcdsaP256,
    };
    let ca = CertificateAuthority::create(&settings, IfExists::Fail).unwrap();
    let director = ca.write_director_cert("localhost", IfExists::Fail).unwrap();
    let director_key = director
        .key_pem
        .as_ref()
        .unwrap()
        .expose_secret()
        .to_owned();
    let client = ManagerClient::new(
        director.cert_pem.as_bytes(),
        director_key.as_bytes(),
        ca.cert_pem().as_bytes(),
        manager_role(),
        Duration::from_secs(5),
    )
    .unwrap();

    let manager = ca.issue_manager_cert(UserId(1), ServiceId(7)).unwrap();
    let addr = fake_manager(
        &ca,
        &manager.cert_pem,
        manager.key_pem.as_ref().unwrap().expose_secret(),
    )
    .await;
    let answer = client
        .call_at(
            &format!("https://{addr}/"),
            "shutdown",
            serde_json::json!({}),
        )
        .await
        .unwrap();
    // The `result` member, with the manager seeing the director's frontend certificate.
    assert_eq!(
        answer,
        serde_json::json!({"method": "shutdown", "caller": "frontend"})
    );

    // A server holding a user's certificate from the same CA is not a manager.
    let user = ca
        .issue_user_cert(UserId(1), "alice", "a@example.org")
        .unwrap();
    let addr = fake_manager(
        &ca,
        &user.cert_pem,
        user.key_pem.as_ref().unwrap().expose_secret(),
    )
    .await;
    let refused = client
        .call_at(
            &format!("https://{addr}/"),
            "shutdown",
            serde_json::json!({}),
        )
        .await;
    assert!(refused.is_err(), "a non-manager server was trusted");

    // A manager certificate from another CA is refused too.
    let other_dir = tempfile::tempdir().unwrap();
    let other = CertificateAuthority::create(
        &CaSettings {
            cert_dir: other_dir.path().join("certs"),
            key_algorithm: KeyAlgorithm::EcdsaP256,
        },
        IfExists::Fail,
    )
    .unwrap();
    let foreign = other.issue_manager_cert(UserId(1), ServiceId(7)).unwrap();
    let addr = fake_manager(
        &other,
        &foreign.cert_pem,
        foreign.key_pem.as_ref().unwrap().expose_secret(),
    )
    .await;
    let refused = client
        .call_at(
            &format!("https://{addr}/"),
            "shutdown",
            serde_json::json!({}),
        )
        .await;
    assert!(refused.is_err(), "a manager of another CA was trusted");

    // Nobody listening: an error, quickly (the director logs it and goes on).
    let started = std::time::Instant::now();
    assert!(
        client
            .call_at("https://127.0.0.1:1/", "shutdown", serde_json::json!({}))
            .await
            .is_err()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}
