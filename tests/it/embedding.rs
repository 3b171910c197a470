//! The library as an embedder uses it: a director built from typed parts (no director.cfg, a
//! CA in memory), an embedder's own cloud behind the whole 1.2 API over real TLS, the
//! maintenance loop, and cpscheck's cloud checks on that cloud.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use conpaas_core::api::server::{Listener, TransportSettings};
use conpaas_core::ca::{CertificateAuthority, KeyAlgorithm};
use conpaas_core::check::{self, CheckOptions, Status};
use conpaas_core::cloud::{self, Cloud, CloudRegistry, DummyCloud, Node, NodeRequest, NodeState};
use conpaas_core::director::accounts::{self, NewAccount};
use conpaas_core::director::{Director, MaintenanceSettings, TlsIdentity};
use conpaas_core::model::{Credit, UserId};
use conpaas_core::store::{self, DatabaseUrl, NewService, Store, StoreSettings};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::ExposeSecret as _;

/// An embedder's cloud: VMs in a map, creation refusable, probe failable.
#[derive(Debug, Default)]
struct PodCloud {
    vms: Mutex<BTreeMap<String, String>>,
    refuse_creates: AtomicBool,
    probe_fails: AtomicBool,
}

impl PodCloud {
    fn vmids(&self) -> Vec<String> {
        self.vms.lock().unwrap().keys().cloned().collect()
    }
}

#[async_trait]
impl Cloud for PodCloud {
    fn name(&self) -> &str {
        "pods"
    }

    fn driver(&self) -> &'static str {
        "pods"
    }

    async fn create_node(&self, request: NodeRequest) -> Result<Node, cloud::Error> {
        if self.refuse_creates.load(Ordering::SeqCst) {
            return Err(cloud::Error::Refused {
                code: "Quota".into(),
                message: "no pods left".into(),
            });
        }
        let vmid = format!("pod-{}", request.client_token);
        self.vms
            .lock()
            .unwrap()
            .insert(vmid.clone(), request.client_token);
        Ok(Node::new(vmid, "10.9.8.7", None))
    }

    async fn kill_node(&self, vmid: &str) -> Result<(), cloud::Error> {
        self.vms.lock().unwrap().remove(vmid);
        Ok(())
    }

    async fn node_state(&self, vmid: &str) -> Result<NodeState, cloud::Error> {
        Ok(if self.vms.lock().unwrap().contains_key(vmid) {
            NodeState::Running
        } else {
            NodeState::Gone
        })
    }

    async fn find_node(&self, client_token: &str) -> Result<Option<String>, cloud::Error> {
        Ok(self
            .vms
            .lock()
            .unwrap()
            .iter()
            .find(|(_, token)| token.as_str() == client_token)
            .map(|(vmid, _)| vmid.clone()))
    }

    async fn probe(&self) -> Result<(), cloud::Error> {
        if self.probe_fails.load(Ordering::SeqCst) {
            return Err(cloud::Error::Unavailable("the pod API is down".into()));
        }
        Ok(())
    }
}

struct Embedded {
    _dir: tempfile::TempDir,
    director: Director,
    pods: Arc<PodCloud>,
    ca: Arc<CertificateAuthority>,
}

fn embedded() -> Embedded {
    let dir = tempfile::tempdir().unwrap();
    let pods = Arc::new(PodCloud::default());
    let ca = Arc::new(CertificateAuthority::generate(KeyAlgorithm::EcdsaP256).unwrap());
    let registry = CloudRegistry::builder()
        .cloud(
            "local",
            Arc::new(DummyCloud::new("local", dir.path().join("vms"))),
        )
        .cloud_with_section("pods", pods.clone(), vec![("DRIVER".into(), "pods".into())])
        .build()
        .unwrap();
    let director = Director::builder()
        .store(
            Store::open(
                &StoreSettings::new(DatabaseUrl::Sqlite(dir.path().join("director.db")))
                    .max_connections(4),
            )
            .unwrap(),
        )
        .shared_ca(ca.clone())
        .clouds(registry)
        .director_url("https://localhost:5555".parse().unwrap())
        .build()
        .unwrap();
    Embedded {
        _dir: dir,
        director,
        pods,
        ca,
    }
}

async fn add_alice(director: &Director, credit: i64) -> UserId {
    accounts::add_user(
        director.store(),
        NewAccount::new(
            "alice",
            "alice@example.org",
            "pw".to_owned().into(),
            Credit(credit),
        ),
    )
    .await
    .unwrap()
    .uid
}

/// Serves `director` over TLS with an identity issued in memory; answers the address.
async fn serve(
    director: &Director,
    ca: &CertificateAuthority,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let issued = ca.issue_director_cert("localhost").unwrap();
    let identity = TlsIdentity::new(issued.cert_pem, issued.key_pem.unwrap());
    let tls = conpaas_core::api::tls::server_config(
        identity.cert_pem.as_bytes(),
        identity.key_pem.expose_secret().as_bytes(),
        ca.cert_pem().as_bytes(),
    )
    .unwrap();
    let listener = Listener::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        tls,
        TransportSettings::recommended(),
    )
    .await
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = conpaas_core::api::router(director.clone());
    tokio::spawn(listener.serve(router, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

fn client(ca: &CertificateAuthority, uid: UserId) -> reqwest::Client {
    let user = ca
        .issue_user_cert(uid, "alice", "alice@example.org")
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(user.cert_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(user.key_pem.unwrap().expose_secret().as_bytes())
                .unwrap(),
        )
        .unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap()
}

async fn credit(director: &Director, uid: UserId) -> i64 {
    director.user(uid).await.unwrap().unwrap().credit.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedders_cloud_serves_the_whole_api() {
    let embedded = embedded();
    let director = &embedded.director;
    let uid = add_alice(director, 3).await;
    let (addr, _stop) = serve(director, &embedded.ca).await;
    let http = client(&embedded.ca, uid);
    let base = format!("https://localhost:{}", addr.port());

    let clouds = http
        .get(format!("{base}/available_clouds"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(clouds, r#"["default", "pods"]"#);

    let started: serde_json::Value = http
        .post(format!("{base}/start/php/pods"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(started["cloud"], "pods", "{started}");
    assert_eq!(started["manager"], "10.9.8.7", "{started}");
    let sid = started["sid"].as_i64().unwrap();
    assert_eq!(embedded.pods.vmids().len(), 1);
    assert_eq!(credit(director, uid).await, 2);
    // The embedder's section reaches the manager's config.cfg beside the default cloud's.
    let listed: serde_json::Value = http
        .get(format!("{base}/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    // A refused create undoes the start: no row, no VM, the credit back.
    embedded.pods.refuse_creates.store(true, Ordering::SeqCst);
    let refused = http
        .post(format!("{base}/start/php/pods"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(refused.contains("\"error\": true"), "{refused}");
    assert_eq!(credit(director, uid).await, 2);
    assert_eq!(director.services(uid).await.unwrap().len(), 1);
    assert_eq!(embedded.pods.vmids().len(), 1);

    let stopped = http
        .post(format!("{base}/stop/{sid}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(stopped, "true");
    assert!(embedded.pods.vmids().is_empty());
    assert!(director.services(uid).await.unwrap().is_empty());

    // The default cloud is the first registered one, a built-in driver beside the embedder's.
    let default: serde_json::Value = http
        .post(format!("{base}/start/php"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(default["cloud"], "local", "{default}");
    // Every registered cloud gets a section in the manager's config.cfg, in order, pointing at
    // the director (the managers' cloud): the default one as `[iaas]`, which 1.2 managers read.
    let vmid = default["vmid"].as_str().unwrap();
    let sid = default["sid"].as_i64().unwrap();
    let script =
        std::fs::read_to_string(embedded._dir.path().join("vms").join(format!("{vmid}.sh")))
            .unwrap();
    let iaas = script.find("[iaas]\nDRIVER = opennebula\n").expect(&script);
    let pods = script.find("[pods]\nDRIVER = opennebula\n").expect(&script);
    assert!(iaas < pods, "{script}");
    assert!(
        script.contains(&format!("USER = s{sid}@local\n")),
        "{script}"
    );
    assert!(
        script.contains(&format!("USER = s{sid}@pods\n")),
        "{script}"
    );
    assert!(script.contains("OTHER_CLOUDS = pods\n"), "{script}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_undoes_a_crashed_start_on_an_embedders_cloud_then_stops() {
    let embedded = embedded();
    let director = embedded.director.clone();
    let uid = add_alice(&director, 3).await;
    // What a crash between the VM's creation and the row's completion leaves.
    let aid = director.applications(uid).await.unwrap()[0].aid;
    let new = NewService::new(uid, aid, "php".parse().unwrap());
    let half = director
        .store()
        .run(move |conn| {
            store::write_transaction(conn, |conn| {
                store::decrement_credit(conn, uid, Credit(1))?;
                store::insert_service::<store::Error, _>(conn, &new, |_| Ok(None))
            })
        })
        .await
        .unwrap();
    embedded
        .pods
        .vms
        .lock()
        .unwrap()
        .insert("pod-crashed".into(), director.client_token(half.sid));
    assert_eq!(credit(&director, uid).await, 2);

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let settings =
        MaintenanceSettings::every(Duration::from_millis(50)).with_reconcile_grace(Duration::ZERO);
    let maintenance = tokio::spawn(director.clone().run_maintenance_with(settings, async {
        let _ = stopped.await;
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !director.services(uid).await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "maintenance did not reconcile"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(embedded.pods.vmids().is_empty(), "the VM outlived its row");
    assert_eq!(
        credit(&director, uid).await,
        3,
        "the credit was not refunded"
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), maintenance)
        .await
        .expect("maintenance did not stop on shutdown")
        .unwrap();
}

#[tokio::test]
async fn cloud_checks_probe_an_embedders_cloud() {
    let embedded = embedded();
    let options = CheckOptions::recommended();
    let results = check::cloud_checks(embedded.director.clouds(), None, &options).await;
    let lines: Vec<String> = results.iter().map(|result| result.line()).collect();
    assert_eq!(results.len(), 2, "{lines:?}");
    assert!(
        results.iter().all(|result| result.status == Status::Ok),
        "{lines:?}"
    );
    assert!(
        lines[1].contains("cloud pods (pods driver) answered its probe"),
        "{lines:?}"
    );

    embedded.pods.probe_fails.store(true, Ordering::SeqCst);
    let results = check::cloud_checks(embedded.director.clouds(), None, &options).await;
    assert_eq!(results[1].status, Status::Error, "{:?}", results[1].line());
    assert!(
        results[1].line().contains("the pod API is down"),
        "{}",
        results[1].line()
    );
}

#[test]
fn a_builder_without_its_required_parts_says_which() {
    let error = Director::builder().build().unwrap_err();
    assert!(error.to_string().contains("the CA"), "{error}");
    let ca = CertificateAuthority::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let error = Director::builder().ca(ca).build().unwrap_err();
    assert!(error.to_string().contains("the clouds"), "{error}");
}

#[tokio::test]
async fn maintenance_with_the_recommended_settings_stops_on_shutdown() {
    let embedded = embedded();
    // The one-line form an embedder spawns beside its server.
    let run = embedded.director.clone().run_maintenance(async {});
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("maintenance did not stop on a completed shutdown");
}

/// An embedder's code mixing layers uses `?` into `conpaas_core::Error` from each of them, and
/// a driver's own error keeps its cause (issue 23, "errors with their causes").
#[test]
fn every_layers_error_converts_into_the_crate_error_with_its_cause() {
    /// What an SDK's error looks like: a message and a cause of its own.
    #[derive(Debug)]
    struct SdkError(std::io::Error);
    impl std::fmt::Display for SdkError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("the SDK's request failed")
        }
    }
    impl std::error::Error for SdkError {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn describe() -> Result<(), conpaas_core::Error> {
        let sdk = SdkError(std::io::Error::other("throttled by the API"));
        Err(cloud::Error::driver("describing instances", sdk))?;
        Ok(())
    }
    fn registry() -> Result<CloudRegistry, conpaas_core::Error> {
        Ok(CloudRegistry::builder().build()?)
    }
    fn client() -> Result<(), conpaas_core::Error> {
        Err(conpaas_core::client::Error::Usage("no such service".into()))?;
        Ok(())
    }
    fn tls() -> Result<(), conpaas_core::Error> {
        conpaas_core::api::tls::server_config(b"", b"", b"")?;
        Ok(())
    }

    let error = describe().unwrap_err();
    assert!(matches!(
        error,
        conpaas_core::Error::Cloud(cloud::Error::Driver { .. })
    ));
    assert_eq!(
        conpaas_core::error::ErrorChain(&error).to_string(),
        "describing instances: the SDK's request failed: throttled by the API"
    );
    assert!(matches!(
        registry().unwrap_err(),
        conpaas_core::Error::CloudRegistry(cloud::RegistryError::Empty)
    ));
    assert!(matches!(
        client().unwrap_err(),
        conpaas_core::Error::Client(_)
    ));
    assert!(matches!(tls().unwrap_err(), conpaas_core::Error::Tls(_)));
}
