//! An orchestrator's own cloud behind the director: its probe (what `director serve` runs at
//! start and each maintenance pass), the real start, list, stop and reconciliation of a crashed
//! start, on a temporary SQLite store, with nothing configured by file. Run with `cargo run -p conpaas-core --example custom_cloud`.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use conpaas_core::ca::{CertificateAuthority, KeyAlgorithm};
use conpaas_core::cloud::{Cloud, CloudRegistry, Error, Node, NodeRequest, NodeState};
use conpaas_core::director::accounts::{self, NewAccount};
use conpaas_core::director::{Director, StartRequest};
use conpaas_core::model::Credit;
use conpaas_core::store::{self, DatabaseUrl, NewService, Store, StoreSettings};

/// "VMs" in a map: what an orchestrator would back with its own API (Kubernetes pods,
/// Firecracker microVMs, a test double...).
#[derive(Debug, Default)]
struct PodCloud {
    /// vmid -> client token of the VM.
    vms: Mutex<BTreeMap<String, String>>,
}

impl PodCloud {
    fn running(&self) -> Vec<String> {
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

    async fn create_node(&self, request: NodeRequest) -> Result<Node, Error> {
        // The user-data is the manager's boot script, with its key: it must reach the VM only.
        assert!(request.user_data.contains("BEGIN"));
        let vmid = format!("pod-{}", request.client_token);
        self.vms
            .lock()
            .unwrap()
            .insert(vmid.clone(), request.client_token);
        Ok(Node::new(vmid, "10.1.2.3", None))
    }

    async fn kill_node(&self, vmid: &str) -> Result<(), Error> {
        self.vms.lock().unwrap().remove(vmid);
        Ok(())
    }

    async fn node_state(&self, vmid: &str) -> Result<NodeState, Error> {
        let known = self.vms.lock().unwrap().contains_key(vmid);
        Ok(if known {
            NodeState::Running
        } else {
            NodeState::Gone
        })
    }

    async fn find_node(&self, client_token: &str) -> Result<Option<String>, Error> {
        let vms = self.vms.lock().unwrap();
        Ok(vms
            .iter()
            .find(|(_, token)| token.as_str() == client_token)
            .map(|(vmid, _)| vmid.clone()))
    }

    async fn probe(&self) -> Result<(), Error> {
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let pods = Arc::new(PodCloud::default());
    // Building blocks (migrations, the director's certificate): before the runtime starts.
    let director = Director::builder()
        .store(Store::open(
            &StoreSettings::new(DatabaseUrl::Sqlite(dir.path().join("director.db")))
                .max_connections(4),
        )?)
        .ca(CertificateAuthority::generate(KeyAlgorithm::EcdsaP256)?)
        .clouds(
            CloudRegistry::builder()
                .cloud("pods", pods.clone())
                .build()?,
        )
        .director_url("https://director.example.org:5555".parse()?)
        .build()?;
    tokio::runtime::Runtime::new()?.block_on(story(&director, &pods))
}

async fn story(director: &Director, pods: &PodCloud) -> Result<(), Box<dyn std::error::Error>> {
    println!("clouds: {:?}", director.available_clouds());
    assert_eq!(director.available_clouds(), ["pods"]);
    // What `/available_clouds` answers: 1.2's clients name the default cloud `default`.
    assert_eq!(director.client_cloud_names(), ["default"]);
    // The probe a serving director runs at start and at each maintenance interval: the
    // `conpaas_cloud_up` gauge and `/readyz`'s "degraded" come from it.
    let health = director.probe_clouds().await;
    println!("probed: {} up: {}", health[0].cloud, health[0].up);
    assert!(health[0].up, "{:?}", health[0].problem);
    assert_eq!(director.cloud_health()["pods"], health[0]);

    let alice = accounts::add_user(
        director.store(),
        NewAccount::new(
            "alice",
            "alice@example.org",
            "correct horse".to_owned().into(),
            Credit(5),
        ),
    )
    .await?;

    // Start: row, credit, manager certificate, boot script, the embedder's VM.
    let service = director
        .start_service(StartRequest::new(alice.uid, "php"))
        .await?;
    println!(
        "started service {} on {} at {}",
        service.sid,
        service.cloud.as_deref().unwrap_or("?"),
        service.manager.as_deref().unwrap_or("?")
    );
    assert_eq!(service.cloud.as_deref(), Some("pods"));
    assert_eq!(pods.running().len(), 1);
    let listed = director.services(alice.uid).await?;
    println!("listed: {} service(s)", listed.len());
    let credit = director.user(alice.uid).await?.map(|user| user.credit);
    println!("credit after the start: {:?}", credit.map(|c| c.0));
    assert_eq!(credit, Some(Credit(4)));

    // Stop: the VM goes with the row.
    assert!(director.stop_service(alice.uid, service.sid).await?);
    println!("stopped; VMs left: {}", pods.running().len());
    assert!(pods.running().is_empty());

    // A crash between the VM's creation and the row's completion: a row without a VM, and a
    // VM under that row's client token. Reconciliation finds and terminates the VM, deletes
    // the row and refunds the credit.
    let app = director.applications(alice.uid).await?[0].aid;
    let new = NewService::new(alice.uid, app, "php".parse()?);
    let half = director
        .store()
        .run(move |conn| store::insert_service::<store::Error, _>(conn, &new, |_| Ok(None)))
        .await?;
    pods.vms
        .lock()
        .unwrap()
        .insert("pod-orphan".into(), director.client_token(half.sid));
    let undone = director.reconcile(Duration::ZERO).await?;
    println!(
        "reconciled {undone} interrupted start(s); VMs left: {}",
        pods.running().len()
    );
    assert_eq!(undone, 1);
    assert!(pods.running().is_empty());
    assert!(director.services(alice.uid).await?.is_empty());
    Ok(())
}
