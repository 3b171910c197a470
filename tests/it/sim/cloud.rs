//! The simulation's cloud: VMs in memory, every answer decided by the seed's random stream.
//!
//! It behaves as the clouds the director speaks to do, faults included: a create the cloud
//! accepted leaves a VM even when its answer is lost or comes after the director stopped
//! waiting; a VM terminated while it boots makes its create fail; listings and lookups by
//! client token lag behind creates (EC2's eventual consistency); terminates fail or hang.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use conpaas_core::cloud::{self, Cloud, ListedNode, Node, NodeRequest, NodeState};

use super::{Faults, Sim};

/// One VM the cloud holds.
#[derive(Debug, Clone)]
pub struct SimVm {
    /// The client token it was created with.
    pub token: String,
    /// Creation time (the simulation's clock).
    pub created: chrono::DateTime<chrono::Utc>,
    /// From when listings and lookups by token show it.
    visible_at: chrono::DateTime<chrono::Utc>,
    /// A lookup or a listing did not show it while it existed (the cloud's lag): a director
    /// told "no VM" may forget it, and only the reaper finds it.
    pub lied: bool,
    /// It was created when its service's row (or its agent's) was no longer `starting`
    /// (claimed or gone).
    pub late: bool,
    /// Its boot script (a manager's holds its key for the managers' cloud).
    pub user_data: String,
}

/// The VMs of one cloud, kept across the director's crashes (the cloud does not crash).
#[derive(Debug, Default)]
pub struct CloudState {
    /// Live VMs by id.
    pub vms: BTreeMap<String, SimVm>,
    next_id: u64,
}

/// A cloud of the simulation, as the director's [`Cloud`] trait sees it.
#[derive(Debug)]
pub struct SimCloud {
    name: String,
    state: Arc<Mutex<CloudState>>,
    sim: Arc<Sim>,
    /// The world's store without faults: the cloud notes whether a VM arrives for a row that
    /// is still starting.
    store: conpaas_core::store::Store,
}

impl SimCloud {
    pub fn new(
        name: &str,
        state: Arc<Mutex<CloudState>>,
        sim: Arc<Sim>,
        store: conpaas_core::store::Store,
    ) -> Self {
        SimCloud {
            name: name.to_owned(),
            state,
            sim,
            store,
        }
    }

    /// Whether the row of the service (or agent) a token names is `starting`.
    fn row_starting(&self, token: &str) -> bool {
        if let Some((_, agent)) = token.rsplit_once("-a")
            && let Ok(id) = agent.parse::<i32>()
        {
            return self
                .store
                .run_blocking(|conn| conpaas_core::store::find_agent(conn, id))
                .unwrap()
                .is_some_and(|row| row.lifecycle == conpaas_core::model::Lifecycle::Starting);
        }
        let Some(sid) = token
            .rsplit("-s")
            .next()
            .and_then(|digits| digits.parse().ok())
            .map(conpaas_core::model::ServiceId)
        else {
            return false;
        };
        self.store
            .run_blocking(|conn| conpaas_core::store::find_service(conn, sid))
            .unwrap()
            .is_some_and(|row| row.lifecycle == conpaas_core::model::Lifecycle::Starting)
    }

    fn faults(&self) -> Faults {
        self.sim.faults()
    }

    fn unavailable(&self, what: &str) -> cloud::Error {
        cloud::Error::Unavailable(format!("{}: {what} (simulated)", self.name))
    }
}

#[async_trait]
impl Cloud for SimCloud {
    fn name(&self) -> &str {
        &self.name
    }

    fn driver(&self) -> &'static str {
        "dummy"
    }

    async fn create_node(&self, request: NodeRequest) -> Result<Node, cloud::Error> {
        let faults = self.faults();
        if self.sim.chance(faults.create_refused) {
            self.sim
                .trace(format!("cloud {} refuses a create", self.name));
            return Err(cloud::Error::Refused {
                code: "QuotaExceeded".into(),
                message: "simulated refusal".into(),
            });
        }
        let now = self.sim.now();
        // The cloud accepts: the VM exists from now on, whatever happens to the answer.
        let lag = if self.sim.chance(faults.stale) {
            self.sim.between(1, 40)
        } else {
            0
        };
        let late = !self.row_starting(&request.client_token);
        let vmid = {
            let mut state = self.state.lock().unwrap();
            // EC2's ClientToken: a second create with a live VM's token answers that VM.
            let existing = state
                .vms
                .iter()
                .find(|(_, vm)| vm.token == request.client_token)
                .map(|(id, _)| id.clone());
            match existing {
                Some(id) => id,
                None => {
                    state.next_id += 1;
                    let id = format!("{}-vm{}", self.name, state.next_id);
                    state.vms.insert(
                        id.clone(),
                        SimVm {
                            token: request.client_token.clone(),
                            created: now,
                            visible_at: now + chrono::Duration::seconds(lag as i64),
                            lied: false,
                            late,
                            user_data: request.user_data.clone(),
                        },
                    );
                    id
                }
            }
        };
        self.sim.trace(format!(
            "cloud {} creates {vmid} for {}",
            self.name, request.client_token
        ));
        let hangs = self.sim.chance(faults.create_hangs);
        let boot = if hangs {
            // Past any start timeout the simulation uses.
            self.sim.between(900, 3600)
        } else {
            self.sim.between(1, 30)
        };
        tokio::time::sleep(Duration::from_secs(boot)).await;
        let alive = self.state.lock().unwrap().vms.contains_key(&vmid);
        if !alive {
            return Err(cloud::Error::Failed(vmid));
        }
        if self.sim.chance(faults.create_then_errors) {
            self.sim
                .trace(format!("cloud {} loses the answer for {vmid}", self.name));
            return Err(self.unavailable("the answer to a create was lost"));
        }
        // No name a TLS client accepts: the director's calls to this manager (`/delete`'s
        // `shutdown`) fail before any socket is opened, as an unreachable manager's do,
        // without real I/O in the simulation.
        let public_ip = format!("manager {vmid}");
        Ok(Node::new(vmid, public_ip, None))
    }

    async fn kill_node(&self, vmid: &str) -> Result<(), cloud::Error> {
        let faults = self.faults();
        if self.sim.chance(faults.kill_fails) {
            self.sim
                .trace(format!("cloud {} fails to terminate {vmid}", self.name));
            return Err(self.unavailable("terminate failed"));
        }
        if self.sim.chance(faults.kill_hangs) {
            let wait = self.sim.between(20, 300);
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
        if self.state.lock().unwrap().vms.remove(vmid).is_some() {
            self.sim
                .trace(format!("cloud {} terminates {vmid}", self.name));
        }
        Ok(())
    }

    async fn node_state(&self, vmid: &str) -> Result<NodeState, cloud::Error> {
        Ok(if self.state.lock().unwrap().vms.contains_key(vmid) {
            NodeState::Running
        } else {
            NodeState::Gone
        })
    }

    async fn find_node(&self, client_token: &str) -> Result<Option<String>, cloud::Error> {
        if self.sim.chance(self.faults().lookup_fails) {
            return Err(self.unavailable("lookup failed"));
        }
        let now = self.sim.now();
        let mut state = self.state.lock().unwrap();
        let found = state
            .vms
            .iter()
            .find(|(_, vm)| vm.token == client_token && vm.visible_at <= now)
            .map(|(id, _)| id.clone());
        if found.is_none() {
            for vm in state.vms.values_mut() {
                if vm.token == client_token {
                    vm.lied = true;
                }
            }
        }
        Ok(found)
    }

    async fn list_nodes(&self, token_prefix: &str) -> Result<Vec<ListedNode>, cloud::Error> {
        if self.sim.chance(self.faults().lookup_fails) {
            return Err(self.unavailable("listing failed"));
        }
        let now = self.sim.now();
        let mut state = self.state.lock().unwrap();
        for vm in state.vms.values_mut() {
            if vm.token.starts_with(token_prefix) && vm.visible_at > now {
                vm.lied = true;
            }
        }
        Ok(state
            .vms
            .iter()
            .filter(|(_, vm)| vm.token.starts_with(token_prefix) && vm.visible_at <= now)
            .map(|(id, vm)| ListedNode::new(id.clone(), vm.token.clone(), Some(vm.created)))
            .collect())
    }

    async fn probe(&self) -> Result<(), cloud::Error> {
        Ok(())
    }
}
