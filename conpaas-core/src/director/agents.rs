//! Agent VMs: the director as its managers' cloud. A 1.2 manager starts its agents through the
//! OpenNebula OCCI 0.x routes (`api`), with a credential scoped to its one service; each agent
//! becomes a VM on the real cloud through the same drivers as managers, with a row of its own
//! kept through the service rows' lifecycle (a row before its VM, claimed before it is
//! terminated, deleted once the cloud confirms). The operator's cloud credentials never reach a
//! manager (unless [`ManagersCloud::CopyCredentials`] keeps 1.2's behaviour).

use std::collections::HashSet;

use crate::bootstrap;
use crate::cloud::NodeRequest;
use crate::model::{ErrorChain, Lifecycle, ServiceId, UserId};
use crate::store::{self, AgentRefusal, AgentVm};

use super::audit::{AuditOutcome, Event};
use super::{Director, Error};

/// Where managers start their agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ManagersCloud {
    /// Through the director (the default): each manager's config.cfg names one cloud section
    /// per configured cloud, each pointing at the director's OCCI routes with a credential of
    /// that service only. Agents are accounted for, capped, listed and terminated with their
    /// service.
    #[default]
    Director,
    /// As 1.2 did (`[director] COPY_CLOUD_CREDENTIALS = yes`): the operator's cloud sections,
    /// credentials included, copied into every manager's config.cfg. Agents are invisible to
    /// the director.
    CopyCredentials,
}

use crate::config::{DEFAULT_MAX_AGENTS_PER_SERVICE, DEFAULT_MAX_AGENTS_PER_USER};

/// How managers start agents, and how many they may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentSettings {
    /// Through the director, or with copied credentials.
    pub managers_cloud: ManagersCloud,
    /// Agent VMs one service may have at once (`None`: no cap).
    pub max_per_service: Option<u32>,
    /// Agent VMs one user may have at once, over all their services (`None`: no cap).
    pub max_per_user: Option<u32>,
}

impl AgentSettings {
    /// Through the director, [`DEFAULT_MAX_AGENTS_PER_SERVICE`](crate::config::DEFAULT_MAX_AGENTS_PER_SERVICE)
    /// and [`DEFAULT_MAX_AGENTS_PER_USER`](crate::config::DEFAULT_MAX_AGENTS_PER_USER).
    pub fn recommended() -> Self {
        AgentSettings {
            managers_cloud: ManagersCloud::Director,
            max_per_service: Some(DEFAULT_MAX_AGENTS_PER_SERVICE),
            max_per_user: Some(DEFAULT_MAX_AGENTS_PER_USER),
        }
    }

    setters! {
        managers_cloud: ManagersCloud,
        max_per_service: Option<u32>,
        max_per_user: Option<u32>,
    }
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings::recommended()
    }
}

/// A manager authenticated on the managers' cloud: its service and the cloud it named.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentCaller {
    /// The manager's service.
    pub sid: ServiceId,
    /// The service's owner.
    pub uid: UserId,
    /// The cloud of the config.cfg section the manager used (`iaas` for the default).
    pub cloud: String,
}

/// What a manager asks for when it starts an agent.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AgentRequest {
    /// The VM's name (1.2 managers send `conpaas-agent-<type>-u<uid>-s<sid>`).
    pub name: String,
    /// The agent's boot script, as the manager rendered it (its cloud part is replaced by the
    /// director's for the real cloud).
    pub user_data: String,
}

impl AgentRequest {
    /// An agent named `name` booting `user_data`.
    pub fn new(name: impl Into<String>, user_data: impl Into<String>) -> Self {
        AgentRequest {
            name: name.into(),
            user_data: user_data.into(),
        }
    }
}

/// The user name a manager presents on the managers' cloud for `cloud`: `s<sid>@<cloud>`.
pub fn agent_cloud_user(sid: ServiceId, cloud: &str) -> String {
    format!("s{sid}@{cloud}")
}

/// The service and cloud of an [`agent_cloud_user`] name.
fn parse_agent_cloud_user(user: &str) -> Option<(ServiceId, &str)> {
    let (service, cloud) = user.split_once('@')?;
    let digits = service.strip_prefix('s')?;
    if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((ServiceId(digits.parse().ok()?), cloud))
}

/// What the store keeps of a key: the SHA-256 (hex) of the SHA-1 (hex) a manager sends.
fn stored_hash(sha1_hex: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        sha1_hex.to_ascii_lowercase().as_bytes(),
    );
    hex::encode(digest.as_ref())
}

/// A new random key for a manager, and its hash for the store.
pub(super) fn new_cloud_key() -> (secrecy::SecretString, String) {
    use rand::RngCore as _;
    use sha1::Digest as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let key = hex::encode(bytes);
    let sha1_hex = hex::encode(sha1::Sha1::digest(key.as_bytes()));
    let hash = stored_hash(&sha1_hex);
    (key.into(), hash)
}

impl Director {
    /// How managers start agents, and the caps.
    pub fn agent_settings(&self) -> AgentSettings {
        self.inner.agents
    }

    /// The manager presenting `user` (`s<sid>@<cloud>`) and `sha1_hex` (the SHA-1, in hex, of
    /// its key: OpenNebula's OCCI authentication), compared in constant time; `None` when
    /// the name, the key or the cloud is wrong, or the service is gone.
    pub async fn authenticate_agent_cloud(
        &self,
        user: &str,
        sha1_hex: &str,
    ) -> Result<Option<AgentCaller>, Error> {
        use subtle::ConstantTimeEq as _;
        let Some((sid, cloud)) = parse_agent_cloud_user(user) else {
            return Ok(None);
        };
        if self.inner.clouds.get(cloud).is_none() || cloud == "default" {
            return Ok(None);
        }
        let found = self
            .inner
            .store
            .read(move |conn| store::find_cloud_key(conn, sid))
            .await?;
        let Some((hash, _lifecycle, uid)) = found else {
            return Ok(None);
        };
        let presented = stored_hash(sha1_hex);
        if !bool::from(presented.as_bytes().ct_eq(hash.as_bytes())) {
            return Ok(None);
        }
        Ok(Some(AgentCaller {
            sid,
            uid,
            cloud: self
                .inner
                .clouds
                .get(cloud)
                .map_or_else(|| cloud.to_owned(), |c| c.name().to_owned()),
        }))
    }

    /// The idempotency token of agent `id` of service `sid` on any cloud.
    pub fn agent_client_token(&self, sid: ServiceId, id: i32) -> String {
        format!("cps-{}-s{sid}-a{id}", self.inner.installation_tag)
    }

    /// Starts an agent VM for `caller`'s service on `caller`'s cloud: the row (refused when the
    /// service is not running or a cap is reached), the VM under the agent's client token with
    /// the director's cloud part in place of the manager's, the completed row. Runs to its end
    /// in a task of its own (a manager that hangs up leaves no half agent); a failure
    /// terminates what was created and deletes the row.
    pub async fn create_agent(
        &self,
        caller: &AgentCaller,
        request: AgentRequest,
    ) -> Result<AgentVm, Error> {
        let director = self.clone();
        let caller = caller.clone();
        let context = super::audit::AuditContext::current();
        tokio::spawn(context.scope(async move {
            let created = director.create_agent_inner(&caller, request).await;
            if let Err(error) = &created {
                let outcome = match error {
                    Error::LimitReached { .. } | Error::ServiceNotFound(_) => AuditOutcome::Refused,
                    _ => AuditOutcome::Failed,
                };
                director.audit(
                    Event::new("agent.created", outcome)
                        .uid(caller.uid)
                        .sid(caller.sid)
                        .detail("cloud", caller.cloud.clone())
                        .detail("reason", error.to_string()),
                );
                director.inner.metrics.agent(
                    if outcome == AuditOutcome::Refused {
                        super::metrics::AgentEvent::Refused
                    } else {
                        super::metrics::AgentEvent::Failed
                    },
                    &caller.cloud,
                );
            }
            created
        }))
        .await
        .map_err(|_| Error::Cancelled)?
    }

    async fn create_agent_inner(
        &self,
        caller: &AgentCaller,
        request: AgentRequest,
    ) -> Result<AgentVm, Error> {
        let registered = self
            .inner
            .clouds
            .get(&caller.cloud)
            .cloned()
            .ok_or_else(|| Error::UnknownCloud(caller.cloud.clone()))?;
        let sid = caller.sid;
        let service = self
            .inner
            .store
            .run(move |conn| store::find_service(conn, sid))
            .await?
            .filter(|service| service.lifecycle == Lifecycle::Running)
            .ok_or(Error::ServiceNotFound(sid))?;
        // The director's cloud part for the real cloud, read before anything is written.
        let source = self.inner.templates.clone();
        let driver = registered.cloud().driver();
        let cloud_part = self
            .blocking(move || bootstrap::cloud_part(&source, driver))
            .await??;
        let user_data = bootstrap::replace_cloud_part(&request.user_data, cloud_part.as_deref());

        let settings = self.inner.agents;
        let (cloud_name, name, created) = (
            registered.name().to_owned(),
            bounded_name(&request.name, sid),
            self.now(),
        );
        let inserted = self
            .inner
            .store
            .run(move |conn| {
                store::insert_agent(
                    conn,
                    sid,
                    &cloud_name,
                    &name,
                    (settings.max_per_service, settings.max_per_user),
                    created,
                )
            })
            .await?;
        let agent = match inserted {
            Ok(agent) => agent,
            Err(AgentRefusal::ServiceNotRunning) => return Err(Error::ServiceNotFound(sid)),
            Err(AgentRefusal::ServiceCap { max }) => {
                return Err(Error::LimitReached {
                    what: "agent VMs per service",
                    max,
                });
            }
            Err(AgentRefusal::UserCap { max }) => {
                return Err(Error::LimitReached {
                    what: "agent VMs",
                    max,
                });
            }
        };
        let _running = AgentStartInProgress::new(self, agent.id);
        let node_request = NodeRequest::new(
            agent.name.clone(),
            user_data,
            self.agent_client_token(sid, agent.id),
        )
        .tag("ConPaaS-Director", self.inner.installation_tag.clone())
        .tag("ConPaaS-User", service.user_id.to_string())
        .tag("ConPaaS-App", service.application_id.to_string())
        .tag("ConPaaS-Service", sid.to_string())
        .tag("ConPaaS-Agent", agent.id.to_string());
        let created = tokio::time::timeout(
            self.inner.start_timeout,
            registered.cloud().create_node(node_request),
        )
        .await;
        let node = match created {
            Ok(Ok(node)) => node,
            Ok(Err(error)) => {
                self.undo_agent(&agent).await;
                return Err(error.into());
            }
            Err(_) => {
                self.undo_agent(&agent).await;
                return Err(Error::StartTimeout);
            }
        };
        let event = Event::new("agent.created", AuditOutcome::Ok)
            .uid(service.user_id)
            .aid(service.application_id)
            .sid(sid)
            .detail("agent", agent.id)
            .detail("cloud", agent.cloud.clone())
            .detail("vmid", node.vmid.clone())
            .detail("address", node.public_ip.clone())
            .to_new();
        let completed = match self.complete_agent(agent.id, &node, &event).await {
            Ok(completed) => completed,
            // The commit may have happened although its answer was lost: the row says.
            Err(_) => match self.settle_agent_completion(agent.id, &node, &event).await {
                Some(completed) => completed,
                None => {
                    // The row cannot be read: it stays `starting` with its VM under the
                    // agent's token, for reconciliation to undo once the database answers.
                    tracing::warn!(sid = %sid, agent = agent.id, vmid = %node.vmid, "cannot record an agent VM; reconciliation will undo it");
                    return Err(Error::ServiceNotFound(sid));
                }
            },
        };
        match completed {
            Some(agent) => {
                tracing::info!(sid = %sid, agent = agent.id, cloud = %agent.cloud, vmid = %node.vmid, "agent VM started");
                self.inner
                    .metrics
                    .agent(super::metrics::AgentEvent::Created, &agent.cloud);
                Ok(agent)
            }
            None => {
                // Claimed (a DELETE, the service's stop) while the VM booted: the VM is
                // recorded in the claimed row if it can be, then terminated.
                let (id, vmid) = (agent.id, node.vmid.clone());
                let _ = self
                    .inner
                    .store
                    .run(move |conn| store::record_claimed_agent_vm(conn, id, &vmid))
                    .await;
                let killed = self
                    .kill_with_retries(sid, &agent.cloud, &node.vmid, 3)
                    .await;
                if !killed {
                    let (cloud, vmid, now) = (agent.cloud.clone(), node.vmid.clone(), self.now());
                    let _ = self
                        .inner
                        .store
                        .run(move |conn| store::record_abandoned(conn, sid, &cloud, &vmid, now))
                        .await;
                }
                // Whatever the row is now, reconciliation settles it.
                Err(Error::ServiceNotFound(sid))
            }
        }
    }

    /// Records agent `id`'s VM (`starting` → `running`) with its audit event in one
    /// transaction: `None` when the row is no longer this create's.
    async fn complete_agent(
        &self,
        id: i32,
        node: &crate::cloud::Node,
        event: &crate::store::NewAuditEvent,
    ) -> Result<Option<AgentVm>, store::Error> {
        let (vmid, address, event) = (node.vmid.clone(), node.public_ip.clone(), event.clone());
        self.inner
            .store
            .run(move |conn| {
                store::write_transaction(conn, |conn| {
                    let completed = store::complete_agent(conn, id, &vmid, &address)?;
                    if completed.is_some() {
                        store::record_audit_event(conn, &event)?;
                    }
                    Ok::<_, store::Error>(completed)
                })
            })
            .await
    }

    /// After a failed completion: the row's truth, read with the charge's patience.
    /// `Some(Some)`: completed with this VM; `Some(None)`: the row is no longer this create's
    /// (claimed or gone); `None`: the database did not answer.
    async fn settle_agent_completion(
        &self,
        id: i32,
        node: &crate::cloud::Node,
        event: &crate::store::NewAuditEvent,
    ) -> Option<Option<AgentVm>> {
        self.with_charge_patience(move || async move {
            match self
                .inner
                .store
                .run(move |conn| store::find_agent(conn, id))
                .await
            {
                Ok(Some(row)) if row.lifecycle == Lifecycle::Running => {
                    Some((row.vmid.as_deref() == Some(node.vmid.as_str())).then_some(row))
                }
                Ok(Some(row)) if row.lifecycle == Lifecycle::Starting => {
                    self.complete_agent(id, node, event).await.ok()
                }
                Ok(_) => Some(None),
                Err(_) => None,
            }
        })
        .await
    }

    /// A failed create: the row claimed (`starting` → `undoing`), every VM under its token
    /// terminated, the row deleted; left to reconciliation when that cannot be done now.
    async fn undo_agent(&self, agent: &AgentVm) {
        let id = agent.id;
        let claimed = self
            .inner
            .store
            .run(move |conn| store::claim_agent(conn, id, Lifecycle::Starting, Lifecycle::Undoing))
            .await;
        if let Ok(Some(row)) = claimed
            && let Err(error) = self.settle_agent(&row, 3).await
        {
            tracing::warn!(agent = id, error = %ErrorChain(&error), "cannot undo a failed agent start yet; reconciliation will retry");
        }
    }

    /// Terminates a claimed agent row's VM (by record, and by token when none is recorded or
    /// the create was undone) and deletes the row once the cloud confirms, with its audit
    /// event. `Ok(true)`: gone; `Ok(false)`: the row changed (a VM recorded meanwhile).
    async fn settle_agent(&self, row: &AgentVm, attempts: u32) -> Result<bool, Error> {
        let (id, sid) = (row.id, row.sid);
        if let Some(vmid) = &row.vmid
            && !self
                .kill_with_retries(sid, &row.cloud, vmid, attempts)
                .await
        {
            return Err(Error::Cloud(crate::cloud::Error::Unavailable(format!(
                "agent VM {vmid} of service {sid} could not be terminated; kept and retried"
            ))));
        }
        if (row.lifecycle == Lifecycle::Undoing || row.vmid.is_none())
            && !self.terminate_agent_by_token(row, attempts).await
        {
            return Err(Error::Cloud(crate::cloud::Error::Unavailable(format!(
                "the cloud could not confirm that agent {id} of service {sid} has no VM left"
            ))));
        }
        let (lifecycle, expected) = (row.lifecycle, row.vmid.clone());
        let event = Event::new("agent.terminated", AuditOutcome::Ok)
            .uid(row.uid)
            .sid(sid)
            .detail("agent", id)
            .detail("cloud", row.cloud.clone())
            .detail("vmid", row.vmid.clone())
            .detail("was", row.lifecycle.as_str())
            .to_new();
        let forgotten = self
            .inner
            .store
            .run(move |conn| {
                store::write_transaction(conn, |conn| {
                    let forgotten = store::forget_agent(conn, id, lifecycle, expected.as_deref())?;
                    if forgotten.is_some() {
                        store::record_audit_event(conn, &event)?;
                    }
                    Ok::<_, store::Error>(forgotten)
                })
            })
            .await?;
        if forgotten.is_some() {
            tracing::info!(sid = %sid, agent = id, cloud = %row.cloud, "agent VM terminated");
            self.inner
                .metrics
                .agent(super::metrics::AgentEvent::Terminated, &row.cloud);
        }
        Ok(forgotten.is_some())
    }

    /// Every VM under agent `row`'s token on its cloud terminated; `true` when the cloud
    /// answered and none is left.
    async fn terminate_agent_by_token(&self, row: &AgentVm, attempts: u32) -> bool {
        let Some(registered) = self.inner.clouds.get(&row.cloud) else {
            return false;
        };
        let token = self.agent_client_token(row.sid, row.id);
        for _ in 0..4 {
            match registered.cloud().find_node(&token).await {
                Ok(Some(vmid)) => {
                    if !self
                        .kill_with_retries(row.sid, &row.cloud, &vmid, attempts)
                        .await
                    {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(error) => {
                    tracing::warn!(agent = row.id, error = %ErrorChain(&error), "cannot look for an agent VM");
                    return false;
                }
            }
        }
        false
    }

    /// Agent `id` of service `sid`; `None` when there is none (or it is another service's).
    pub async fn agent(&self, sid: ServiceId, id: i32) -> Result<Option<AgentVm>, Error> {
        Ok(self
            .inner
            .store
            .read(move |conn| store::find_agent(conn, id))
            .await?
            .filter(|agent| agent.sid == sid))
    }

    /// The agents of service `sid`, ascending id.
    pub async fn agents_of_service(&self, sid: ServiceId) -> Result<Vec<AgentVm>, Error> {
        Ok(self
            .inner
            .store
            .read(move |conn| store::list_agents_of_service(conn, sid))
            .await?)
    }

    /// The agents of all of user `uid`'s services, ascending id (`/list_agents`).
    pub async fn agents(&self, uid: UserId) -> Result<Vec<AgentVm>, Error> {
        Ok(self
            .inner
            .store
            .read(move |conn| store::list_agents_of_user(conn, uid))
            .await?)
    }

    /// Terminates agent `id` of service `sid` (the manager's `DELETE`): the row claimed, the
    /// VM terminated, the row deleted once the cloud confirms. `false` when the service has no
    /// such agent. A cloud failure keeps the row claimed for reconciliation (an error).
    pub async fn delete_agent(&self, sid: ServiceId, id: i32) -> Result<bool, Error> {
        let Some(agent) = self.agent(sid, id).await? else {
            return Ok(false);
        };
        let claim = match agent.lifecycle {
            Lifecycle::Running => Some((Lifecycle::Running, Lifecycle::Stopping)),
            Lifecycle::Starting => Some((Lifecycle::Starting, Lifecycle::Undoing)),
            Lifecycle::Stopping | Lifecycle::Undoing => None,
        };
        let row = match claim {
            Some((from, to)) => {
                match self
                    .inner
                    .store
                    .run(move |conn| store::claim_agent(conn, id, from, to))
                    .await?
                {
                    Some(row) => row,
                    // Another actor owns it now: it goes.
                    None => return Ok(true),
                }
            }
            None => agent,
        };
        // A create still running in this process terminates its own VM on seeing the claim.
        if row.vmid.is_none() && self.agent_start_in_progress(id) {
            return Ok(true);
        }
        self.settle_agent(&row, 3).await?;
        Ok(true)
    }

    /// Terminates every agent of service `sid` (its stop, its undo, reconciliation): each row
    /// claimed and settled. `true` when none is left.
    pub(super) async fn settle_agents(&self, sid: ServiceId, attempts: u32) -> bool {
        let agents = match self
            .inner
            .store
            .run(move |conn| store::list_agents_of_service(conn, sid))
            .await
        {
            Ok(agents) => agents,
            Err(error) => {
                tracing::warn!(sid = %sid, error = %ErrorChain(&error), "cannot list the agents of a service being stopped");
                return false;
            }
        };
        let mut all_gone = true;
        for agent in agents {
            let id = agent.id;
            let claim = match agent.lifecycle {
                Lifecycle::Running => Some((Lifecycle::Running, Lifecycle::Stopping)),
                Lifecycle::Starting => Some((Lifecycle::Starting, Lifecycle::Undoing)),
                Lifecycle::Stopping | Lifecycle::Undoing => None,
            };
            let row = match claim {
                Some((from, to)) => match self
                    .inner
                    .store
                    .run(move |conn| store::claim_agent(conn, id, from, to))
                    .await
                {
                    Ok(Some(row)) => row,
                    _ => {
                        all_gone = false;
                        continue;
                    }
                },
                None => agent,
            };
            if row.vmid.is_none() && self.agent_start_in_progress(id) {
                // Its create sees the claim and terminates its own VM; the service row waits.
                all_gone = false;
                continue;
            }
            match self.settle_agent(&row, attempts).await {
                Ok(true) => {}
                Ok(false) => all_gone = false,
                Err(error) => {
                    all_gone = false;
                    tracing::warn!(sid = %sid, agent = id, error = %ErrorChain(&error), "cannot terminate an agent VM yet");
                }
            }
        }
        all_gone
    }

    /// Settles agent rows left unfinished (a crash, a cloud failure): `starting` rows older
    /// than `older_than` whose create is not running here are claimed (`undoing`), then every
    /// claimed row has its VM terminated and is deleted. Answers how many were settled.
    pub(super) async fn reconcile_agents(&self, older_than: std::time::Duration) -> usize {
        let Ok(unsettled) = self.inner.store.run(store::list_unsettled_agents).await else {
            return 0;
        };
        let grace =
            chrono::Duration::from_std(older_than).unwrap_or_else(|_| chrono::Duration::hours(1));
        let now = self.now().naive_utc();
        let mut settled = 0;
        for agent in unsettled {
            let id = agent.id;
            if self.agent_start_in_progress(id) {
                continue;
            }
            let row = match agent.lifecycle {
                Lifecycle::Starting => {
                    if now - agent.created < grace {
                        continue;
                    }
                    match self
                        .inner
                        .store
                        .run(move |conn| {
                            store::claim_agent(conn, id, Lifecycle::Starting, Lifecycle::Undoing)
                        })
                        .await
                    {
                        Ok(Some(row)) => row,
                        _ => continue,
                    }
                }
                Lifecycle::Undoing | Lifecycle::Stopping => agent,
                Lifecycle::Running => continue,
            };
            match self.settle_agent(&row, 1).await {
                Ok(true) => settled += 1,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(agent = id, error = %ErrorChain(&error), "cannot settle an unfinished agent start or stop yet");
                }
            }
        }
        settled
    }

    fn agent_start_in_progress(&self, id: i32) -> bool {
        self.inner
            .agents_starting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&id)
    }
}

/// A name the cloud takes: the manager's, bounded and printable, or one of the director's.
fn bounded_name(asked: &str, sid: ServiceId) -> String {
    let name: String = asked
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect();
    if name.is_empty() {
        format!("conpaas-agent-s{sid}")
    } else {
        name
    }
}

/// Marks an agent's create as running in this process for as long as it lives.
struct AgentStartInProgress {
    director: Director,
    id: i32,
}

impl AgentStartInProgress {
    fn new(director: &Director, id: i32) -> Self {
        director
            .inner
            .agents_starting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id);
        AgentStartInProgress {
            director: director.clone(),
            id,
        }
    }
}

impl Drop for AgentStartInProgress {
    fn drop(&mut self) {
        self.director
            .inner
            .agents_starting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// The set type of [`Inner::agents_starting`](super::state::Inner).
pub(super) type AgentsStarting = std::sync::Mutex<HashSet<i32>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_name_their_service_and_cloud() {
        assert_eq!(agent_cloud_user(ServiceId(7), "iaas"), "s7@iaas");
        assert_eq!(
            parse_agent_cloud_user("s7@iaas"),
            Some((ServiceId(7), "iaas"))
        );
        assert_eq!(
            parse_agent_cloud_user("s12@my@cloud"),
            Some((ServiceId(12), "my@cloud"))
        );
        for bad in ["7@iaas", "s@iaas", "sx@iaas", "s7", "s99999999999@iaas", ""] {
            assert_eq!(parse_agent_cloud_user(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_key_is_checked_by_the_sha1_its_manager_sends() {
        use secrecy::ExposeSecret as _;
        use sha1::Digest as _;
        let (key, hash) = new_cloud_key();
        let sent = hex::encode(sha1::Sha1::digest(key.expose_secret().as_bytes()));
        assert_eq!(stored_hash(&sent), hash);
        assert_eq!(stored_hash(&sent.to_ascii_uppercase()), hash);
        assert_ne!(stored_hash(key.expose_secret()), hash);
        assert_eq!(key.expose_secret().len(), 64);
    }

    #[test]
    fn names_are_bounded() {
        assert_eq!(
            bounded_name("conpaas-agent-php-u1-s5", ServiceId(5)),
            "conpaas-agent-php-u1-s5"
        );
        assert_eq!(bounded_name("", ServiceId(5)), "conpaas-agent-s5");
        assert_eq!(bounded_name("<x>;rm", ServiceId(5)), "xrm");
        assert_eq!(bounded_name(&"a".repeat(500), ServiceId(5)).len(), 64);
    }
}
