//! The director's client towards managers, against the 1.2-behaving test manager
//! (`support::manager`) over real TLS with certificates of the director's CA: every call form
//! against every answer framing (1.2's close-delimited HTTP/1.0 without close_notify first),
//! answers cut mid-JSON refused, the role check on the server, and the 1.2 caller check on the
//! manager's side.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conpaas_core::ca::{CaSettings, CertIdentity, CertificateAuthority, IfExists, KeyAlgorithm};
use conpaas_core::manager_client::{self, ManagerClient, PeerCheck, Upload};
use conpaas_core::model::{ServiceId, UserId};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::support::manager::{Answering, TestManager};

fn manager_role() -> PeerCheck {
    Arc::new(|der: &[u8]| {
        CertIdentity::parse(der).is_ok_and(|id| id.role.as_deref() == Some("manager"))
    })
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A CA in a temporary directory, and the director's client of it.
struct Pki {
    _dir: tempfile::TempDir,
    ca: CertificateAuthority,
    /// The director's certificate and key.
    director: (String, String),
    client: ManagerClient,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::create(
            &CaSettings::new(dir.path().join("certs"), KeyAlgorithm::EcdsaP256),
            IfExists::Fail,
        )
        .unwrap();
        let director = ca.write_director_cert("localhost", IfExists::Fail).unwrap();
        let key = director
            .key_pem
            .as_ref()
            .unwrap()
            .expose_secret()
            .to_owned();
        let client = Pki::client_of(&ca, &director.cert_pem, &key);
        Pki {
            _dir: dir,
            ca,
            director: (director.cert_pem, key),
            client,
        }
    }

    fn client_of(ca: &CertificateAuthority, cert_pem: &str, key_pem: &str) -> ManagerClient {
        Pki::client_timing_out(ca, cert_pem, key_pem, Duration::from_secs(5))
    }

    fn client_timing_out(
        ca: &CertificateAuthority,
        cert_pem: &str,
        key_pem: &str,
        timeout: Duration,
    ) -> ManagerClient {
        ManagerClient::new(
            cert_pem.as_bytes(),
            key_pem.as_bytes(),
            ca.cert_pem().as_bytes(),
            manager_role(),
            timeout,
        )
        .unwrap()
    }

    /// A 1.2-behaving manager of uid 1, service 7.
    async fn manager(&self) -> TestManager {
        let manager = self.ca.issue_manager_cert(UserId(1), ServiceId(7)).unwrap();
        TestManager::echo(
            local(),
            &manager.cert_pem,
            manager.key_pem.as_ref().unwrap().expose_secret(),
            self.ca.cert_pem(),
        )
        .await
    }
}

#[tokio::test]
async fn every_call_form_reads_every_answer_framing() {
    let pki = Pki::new();
    let manager = pki.manager().await;
    let url = manager.url();
    // Larger than one TLS record and one read: the upload and its answer cross many.
    let archive: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    for answering in [
        Answering::Release12,
        Answering::WellBehaved,
        Answering::Chunked,
    ] {
        manager.set_answering(answering);
        let before = manager.calls().len();
        let shutdown = pki.client.call_at(&url, "shutdown", json!({})).await;
        assert_eq!(
            shutdown.unwrap(),
            json!({"method": "shutdown", "caller": "frontend"}),
            "{answering:?}"
        );
        let info = pki.client.get_at(&url, "get_service_info", None).await;
        assert_eq!(
            info.unwrap(),
            json!({"method": "get_service_info", "caller": "frontend"}),
            "{answering:?}"
        );
        let params = json!({"serviceNodeId": "a b&c=d"});
        let node = pki
            .client
            .get_at(&url, "get_node_info", Some(params.clone()))
            .await;
        assert_eq!(node.unwrap()["method"], "get_node_info", "{answering:?}");
        let upload = pki
            .client
            .upload_at(
                &url,
                "upload_code_version",
                Upload::new("code", "app.tar.gz", archive.clone()),
            )
            .await;
        assert_eq!(
            upload.unwrap()["method"],
            "upload_code_version",
            "{answering:?}"
        );
        let startup = pki
            .client
            .call_at(&url, "startup", json!({"cloud": "default"}))
            .await;
        assert_eq!(startup.unwrap()["method"], "startup", "{answering:?}");

        let calls = &manager.calls()[before..];
        let forms: Vec<&str> = calls.iter().map(|call| call.form).collect();
        assert_eq!(forms, ["POST", "GET", "GET", "UPLOAD", "POST"]);
        assert_eq!(calls[0].params, Some(json!({})));
        assert_eq!(calls[0].id, Some(json!("1")));
        assert_eq!(calls[0].content_type.as_deref(), Some("application/json"));
        assert_eq!(calls[1].params, None);
        assert_eq!(calls[1].id, Some(json!("1")));
        assert_eq!(calls[1].content_type.as_deref(), Some("application/json"));
        assert_eq!(calls[2].params, Some(params.clone()));
        let (field, file_name, bytes) = calls[3].file.clone().unwrap();
        assert_eq!((field.as_str(), file_name.as_str()), ("code", "app.tar.gz"));
        assert!(bytes == archive, "the archive arrived altered");
        assert_eq!(calls[4].params, Some(json!({"cloud": "default"})));
        assert!(
            calls
                .iter()
                .all(|call| call.caller_role.as_deref() == Some("frontend"))
        );
    }
}

#[tokio::test]
async fn an_answer_cut_mid_json_is_refused() {
    let pki = Pki::new();
    let manager = pki.manager().await;
    manager.set_answering(Answering::CutMidJson);
    let url = manager.url();
    let call = pki.client.call_at(&url, "shutdown", json!({})).await;
    assert!(
        matches!(call, Err(manager_client::Error::Incomplete(_))),
        "{call:?}"
    );
    let get = pki.client.get_at(&url, "get_service_info", None).await;
    assert!(
        matches!(get, Err(manager_client::Error::Incomplete(_))),
        "{get:?}"
    );
    // The manager did take the calls: only their answers were cut.
    assert_eq!(manager.methods(), ["shutdown", "get_service_info"]);
    // Framed the 1.2 way again, the same manager is read.
    manager.set_answering(Answering::Release12);
    assert!(
        pki.client
            .call_at(&url, "shutdown", json!({}))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn the_director_refuses_impostors() {
    let pki = Pki::new();
    // A server holding a user's certificate from the same CA is not a manager.
    let user = pki
        .ca
        .issue_user_cert(UserId(1), "alice", "a@example.org")
        .unwrap();
    let impostor = TestManager::echo(
        local(),
        &user.cert_pem,
        user.key_pem.as_ref().unwrap().expose_secret(),
        pki.ca.cert_pem(),
    )
    .await;
    let refused = pki
        .client
        .call_at(&impostor.url(), "shutdown", json!({}))
        .await;
    assert!(
        matches!(refused, Err(manager_client::Error::Handshake(_))),
        "a non-manager server was trusted: {refused:?}"
    );
    assert!(impostor.calls().is_empty());

    // A manager certificate of another CA is refused too (that manager would accept the
    // director: the refusal is the director's).
    let other_dir = tempfile::tempdir().unwrap();
    let other = CertificateAuthority::create(
        &CaSettings::new(other_dir.path().join("certs"), KeyAlgorithm::EcdsaP256),
        IfExists::Fail,
    )
    .unwrap();
    let foreign = other.issue_manager_cert(UserId(1), ServiceId(7)).unwrap();
    let foreign = TestManager::echo(
        local(),
        &foreign.cert_pem,
        foreign.key_pem.as_ref().unwrap().expose_secret(),
        pki.ca.cert_pem(),
    )
    .await;
    let refused = pki
        .client
        .call_at(&foreign.url(), "shutdown", json!({}))
        .await;
    assert!(
        matches!(refused, Err(manager_client::Error::Handshake(_))),
        "a manager of another CA was trusted: {refused:?}"
    );
    assert!(foreign.calls().is_empty());

    // Nobody listening: an error, quickly (the director logs it and goes on).
    let started = Instant::now();
    let nobody = pki
        .client
        .call_at("https://127.0.0.1:1/", "shutdown", json!({}))
        .await;
    assert!(
        matches!(nobody, Err(manager_client::Error::Connect(_))),
        "{nobody:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // A listener that never answers: the call ends at the client's timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = Pki::client_timing_out(
        &pki.ca,
        &pki.director.0,
        &pki.director.1,
        Duration::from_millis(300),
    );
    let started = Instant::now();
    let timed_out = client
        .call_at(
            &format!("https://{}/", silent.local_addr().unwrap()),
            "shutdown",
            json!({}),
        )
        .await;
    assert!(
        timed_out
            .as_ref()
            .is_err_and(manager_client::Error::is_timeout),
        "{timed_out:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn the_manager_checks_its_caller_as_1_2_did() {
    let pki = Pki::new();
    let manager = pki.manager().await;
    let url = manager.url();
    let client_with = |issued: conpaas_core::ca::IssuedCertificate| {
        Pki::client_of(
            &pki.ca,
            &issued.cert_pem,
            issued.key_pem.as_ref().unwrap().expose_secret(),
        )
    };
    // The owner's user certificate and the manager's own are accepted.
    let owner = client_with(
        pki.ca
            .issue_user_cert(UserId(1), "alice", "a@example.org")
            .unwrap(),
    );
    assert_eq!(
        owner
            .call_at(&url, "get_service_info", json!({}))
            .await
            .unwrap()["caller"],
        "user"
    );
    let itself = client_with(pki.ca.issue_manager_cert(UserId(1), ServiceId(7)).unwrap());
    assert_eq!(
        itself.get_at(&url, "list_nodes", None).await.unwrap()["caller"],
        "manager"
    );
    // Another user, and another service's manager, are refused at the handshake.
    let stranger = client_with(
        pki.ca
            .issue_user_cert(UserId(2), "bob", "b@example.org")
            .unwrap(),
    );
    assert!(stranger.call_at(&url, "shutdown", json!({})).await.is_err());
    let neighbour = client_with(pki.ca.issue_manager_cert(UserId(1), ServiceId(8)).unwrap());
    assert!(
        neighbour
            .call_at(&url, "shutdown", json!({}))
            .await
            .is_err()
    );
    assert_eq!(manager.refused(), 2);
    assert_eq!(manager.methods(), ["get_service_info", "list_nodes"]);
}
