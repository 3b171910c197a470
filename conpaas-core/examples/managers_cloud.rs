//! The director as its managers' cloud, through the library: a service started on an
//! embedder's cloud gets a manager whose config.cfg holds no cloud credential, only a key of
//! its own service; with that key (as the OCCI routes `/compute` take it: the SHA-1 of the key)
//! the manager starts an agent VM, which the director creates on the embedder's cloud and
//! records; stopping the service terminates the agent too. Run with
//! `cargo run -p conpaas-core --example managers_cloud`.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use conpaas_core::ca::{CertificateAuthority, KeyAlgorithm};
use conpaas_core::cloud::{Cloud, CloudRegistry, Error, Node, NodeRequest, NodeState};
use conpaas_core::director::accounts::{self, NewAccount};
use conpaas_core::director::{AgentRequest, Director, StartRequest, agent_cloud_user};
use conpaas_core::model::Credit;
use conpaas_core::store::{DatabaseUrl, Store, StoreSettings};
use sha1::Digest as _;

/// An embedder's cloud: VMs in a map, each with the boot script it was given.
#[derive(Debug, Default)]
struct Vms {
    /// vmid -> (client token, boot script).
    vms: Mutex<BTreeMap<String, (String, String)>>,
}

#[async_trait]
impl Cloud for Vms {
    fn name(&self) -> &str {
        "vms"
    }

    fn driver(&self) -> &'static str {
        "vms"
    }

    async fn create_node(&self, request: NodeRequest) -> Result<Node, Error> {
        let mut vms = self.vms.lock().unwrap();
        let vmid = format!("vm-{}", vms.len() + 1);
        let ip = format!("10.0.0.{}", vms.len() + 1);
        vms.insert(vmid.clone(), (request.client_token, request.user_data));
        Ok(Node::new(vmid, ip, None))
    }

    async fn kill_node(&self, vmid: &str) -> Result<(), Error> {
        self.vms.lock().unwrap().remove(vmid);
        Ok(())
    }

    async fn node_state(&self, vmid: &str) -> Result<NodeState, Error> {
        Ok(if self.vms.lock().unwrap().contains_key(vmid) {
            NodeState::Running
        } else {
            NodeState::Gone
        })
    }

    async fn find_node(&self, client_token: &str) -> Result<Option<String>, Error> {
        let vms = self.vms.lock().unwrap();
        Ok(vms
            .iter()
            .find(|(_, (token, _))| token == client_token)
            .map(|(vmid, _)| vmid.clone()))
    }

    async fn probe(&self) -> Result<(), Error> {
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let vms = Arc::new(Vms::default());
    let director = Director::builder()
        .store(Store::open(&StoreSettings::new(DatabaseUrl::Sqlite(
            dir.path().join("director.db"),
        )))?)
        .ca(CertificateAuthority::generate(KeyAlgorithm::EcdsaP256)?)
        .clouds(CloudRegistry::builder().cloud("vms", vms.clone()).build()?)
        .director_url("https://director.example.org:5555".parse()?)
        .build()?;
    tokio::runtime::Runtime::new()?.block_on(async {
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
        let service = director
            .start_service(StartRequest::new(alice.uid, "php"))
            .await?;
        let script = vms.vms.lock().unwrap()[service.vmid.as_deref().unwrap()]
            .1
            .clone();
        // What the manager VM holds: the director's URL and a key of this one service.
        let key = script
            .lines()
            .find_map(|line| line.strip_prefix("PASSWORD = "))
            .expect("a key in config.cfg");
        assert!(script.contains("URL = https://director.example.org:5555\n"));
        println!("manager of service {} holds only its own key", service.sid);

        // The manager's libcloud authenticates as OpenNebula's OCCI server expects.
        let sent = hex::encode(sha1::Sha1::digest(key.as_bytes()));
        let user = agent_cloud_user(service.sid, "vms");
        let caller = director
            .authenticate_agent_cloud(&user, &sent)
            .await?
            .expect("the service's key");
        assert!(
            director
                .authenticate_agent_cloud(&user, &"0".repeat(40))
                .await?
                .is_none()
        );
        let agent = director
            .create_agent(
                &caller,
                AgentRequest::new(
                    "conpaas-agent-php",
                    "#!/bin/sh\ncat <<EOF > /tmp/cert.pem\n...\nEOF\n",
                ),
            )
            .await?;
        println!(
            "agent {} at {} (VM {})",
            agent.id,
            agent.address.as_deref().unwrap_or("?"),
            agent.vmid.as_deref().unwrap_or("?")
        );
        assert_eq!(vms.vms.lock().unwrap().len(), 2);
        assert_eq!(director.agents(alice.uid).await?.len(), 1);

        // The service's stop takes its agent with it.
        assert!(director.stop_service(alice.uid, service.sid).await?);
        assert!(vms.vms.lock().unwrap().is_empty());
        assert!(director.agents(alice.uid).await?.is_empty());
        println!("stopped: no VM left");
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
