//! Services: the start saga, stop, rename, lists, and the manager's own terminate call.

use std::str::FromStr;

use crate::bootstrap::{self, CloudSection, ContextInput, Templates, VpnLines};
use crate::cloud::{self, NodeRequest};
use crate::model::ErrorChain;
use crate::model::{AppId, Credit, Lifecycle, Role, Service, ServiceId, ServiceType, UserId};
use crate::store::{self, ManagerVm, NewService};
use crate::vpn;

use super::accounts::check_name;
use super::audit::{AuditContext, AuditOutcome, Event};
use super::metrics::ServiceEvent;
use super::{Director, Error, parse_int};

/// What `/start` asks for.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StartRequest {
    /// The caller.
    pub uid: UserId,
    /// The type name from the URL.
    pub service_type: String,
    /// The cloud name from the URL (`default` when absent).
    pub cloud: String,
    /// The `appid` parameter, as sent; `None` or empty means the default application.
    pub appid: Option<String>,
}

impl StartRequest {
    /// `uid` starts a service of `service_type` on the `default` cloud, in their default
    /// application.
    pub fn new(uid: UserId, service_type: impl Into<String>) -> Self {
        StartRequest {
            uid,
            service_type: service_type.into(),
            cloud: "default".to_owned(),
            appid: None,
        }
    }

    setters! {
        cloud: into String,
        appid: some into String,
    }
}

/// The one credit a service start costs (the first hour of its manager).
const START_COST: Credit = Credit(1);

impl Director {
    /// The user's services across applications, ascending id.
    pub async fn services(&self, uid: UserId) -> Result<Vec<Service>, Error> {
        Ok(self
            .inner
            .store
            .read(move |conn| store::list_services_for_user(conn, uid))
            .await?)
    }

    /// Renames the user's service; `false` when it is not theirs. The name is checked as
    /// [`Director::create_application`] checks it.
    pub async fn rename_service(
        &self,
        uid: UserId,
        sid: ServiceId,
        name: &str,
    ) -> Result<bool, Error> {
        check_name("name", name, store::names::MAX_NAME_CHARS)?;
        let name = name.to_owned();
        let event = Event::new("service.renamed", AuditOutcome::Ok)
            .uid(uid)
            .sid(sid)
            .detail("name", name.clone())
            .to_new();
        Ok(self
            .inner
            .store
            .run(move |conn| {
                store::write_transaction(conn, |conn| {
                    let renamed = store::rename_service_owned(conn, sid, uid, &name)?;
                    if renamed {
                        store::record_audit_event(conn, &event)?;
                    }
                    Ok::<_, store::Error>(renamed)
                })
            })
            .await?)
    }

    /// Starts a service: the row (with its VPN subnet and the credit) in one transaction, the
    /// manager certificate, the context script, the VM, the completed row. Runs to its end in
    /// a task of its own, so a client that hangs up cannot leave half a service behind; any
    /// failure undoes what was done (VM terminated, row deleted, credit refunded).
    pub async fn start_service(&self, request: StartRequest) -> Result<Service, Error> {
        let director = self.clone();
        let asked = request.clone();
        // The task runs in the request's audit context.
        let context = AuditContext::current();
        let started = tokio::spawn(context.scope(async move {
            let started = director.start_service_inner(request.clone()).await;
            director.audit_failed_start(&request, &started);
            started
        }))
        .await
        .map_err(|_| Error::Cancelled)
        .and_then(|started| started);
        self.count_start(&asked, &started);
        started
    }

    /// The event of a start that did not happen (a started one is recorded with its row):
    /// `refused` when nothing was done, `failed` when what was done was undone.
    fn audit_failed_start(&self, asked: &StartRequest, started: &Result<Service, Error>) {
        let Err(error) = started else { return };
        let outcome = match error {
            Error::UnknownServiceType(_)
            | Error::UnknownCloud(_)
            | Error::ApplicationNotFound(_)
            | Error::InsufficientCredit
            | Error::NotConfigured(_)
            | Error::LimitReached { .. }
            | Error::Invalid { .. } => AuditOutcome::Refused,
            _ => AuditOutcome::Failed,
        };
        // The error's own words only, not its causes (a cloud's answer may be long).
        self.audit(
            Event::new("service.started", outcome)
                .uid(asked.uid)
                .detail("type", asked.service_type.clone())
                .detail("cloud", asked.cloud.clone())
                .detail("reason", error.to_string()),
        );
    }

    /// `conpaas_services_total`: a started service, or a start that failed on a cloud and
    /// type that exist (refusals before anything was done are not failures).
    fn count_start(&self, asked: &StartRequest, started: &Result<Service, Error>) {
        let metrics = &self.inner.metrics;
        match started {
            Ok(service) => metrics.service(
                ServiceEvent::Started,
                service.cloud.as_deref().unwrap_or_default(),
                service.service_type.as_deref().unwrap_or_default(),
            ),
            Err(
                Error::UnknownServiceType(_)
                | Error::UnknownCloud(_)
                | Error::ApplicationNotFound(_)
                | Error::InsufficientCredit
                | Error::NotConfigured(_),
            ) => {}
            Err(_) => {
                if let (Some(registered), Ok(service_type)) = (
                    self.inner.clouds.get(&asked.cloud),
                    ServiceType::from_str(&asked.service_type),
                ) {
                    metrics.service(
                        ServiceEvent::Failed,
                        registered.name(),
                        service_type.as_str(),
                    );
                }
            }
        }
    }

    async fn start_service_inner(&self, request: StartRequest) -> Result<Service, Error> {
        let service_type = ServiceType::from_str(&request.service_type)
            .map_err(|_| Error::UnknownServiceType(request.service_type.clone()))?;
        let uid = request.uid;
        let store = &self.inner.store;
        let aid = match request.appid.as_deref().filter(|text| !text.is_empty()) {
            Some(text) => {
                let aid = parse_int(text)
                    .and_then(|aid| i32::try_from(aid).ok())
                    .map(AppId)
                    .ok_or(Error::ApplicationNotFound(None))?;
                store
                    .run(move |conn| store::find_application_owned(conn, aid, uid))
                    .await?
                    .ok_or(Error::ApplicationNotFound(Some(aid)))?
                    .aid
            }
            None => {
                store
                    .run(move |conn| store::default_application(conn, uid))
                    .await?
                    .ok_or(Error::ApplicationNotFound(None))?
                    .aid
            }
        };
        let registered = self
            .inner
            .clouds
            .get(&request.cloud)
            .cloned()
            .ok_or_else(|| Error::UnknownCloud(request.cloud.clone()))?;
        let cloud = registered.cloud().clone();
        let director_url = self
            .inner
            .director_url
            .clone()
            .ok_or(Error::NotConfigured("DIRECTOR_URL"))?;
        // Read the templates before anything is written: a missing one is an operator error
        // that must not cost a credit or leave a row.
        let source = self.inner.templates.clone();
        let driver = cloud.driver();
        let type_name = service_type.as_str();
        let templates = self
            .blocking(move || Templates::from_source(&source, type_name, driver))
            .await??;

        // One transaction: the credit, the row and its subnet.
        let plan = self.inner.vpn.clone();
        let max_services = self.inner.user_limits.max_services;
        let new = NewService {
            user_id: uid,
            application_id: aid,
            service_type,
        };
        let created = self.now();
        let service = store
            .run(move |conn| {
                store::write_transaction(conn, |conn| {
                    if !store::decrement_credit(conn, uid, START_COST)? {
                        return Err(Error::InsufficientCredit);
                    }
                    store::insert_service_at(conn, &new, max_services, created, |taken| {
                        choose_subnet(plan.as_ref(), taken)
                    })
                })
            })
            .await?;
        // From here until this task ends, reconciliation in this process leaves the row to it.
        let _running = StartInProgress::new(self, service.sid);
        tracing::info!(sid = %service.sid, uid = %uid, app = %aid, "service row created");

        match self
            .boot_manager(
                &service,
                registered.name(),
                cloud.as_ref(),
                &templates,
                &director_url,
            )
            .await
        {
            Ok(completed) => Ok(completed),
            Err(Failure::Undo(error)) => {
                self.undo_start(&service).await;
                Err(error)
            }
            Err(Failure::Leave(error)) => Err(error),
        }
    }

    /// The saga's steps after the row exists.
    async fn boot_manager(
        &self,
        service: &Service,
        cloud_name: &str,
        cloud: &dyn cloud::Cloud,
        templates: &Templates,
        director_url: &str,
    ) -> Result<Service, Failure> {
        let (uid, sid) = (service.user_id, service.sid);
        let manager_cert = self
            .issue(Role::Manager, move |ca| ca.issue_manager_cert(uid, sid))
            .await?;
        let vpn_lines = match (&self.inner.vpn, service.subnet.as_deref()) {
            (Some(plan), Some(text)) => {
                let subnet = vpn::parse_recorded_subnet(text).map_err(Error::from)?;
                let config = plan.manager_vpn_config(subnet).map_err(Error::from)?;
                Some(
                    VpnLines::new(
                        config.ipop_subnet.to_string(),
                        config.ipop_ip_address.to_string(),
                        config.ipop_base_ip,
                        config.ipop_netmask,
                    )
                    .bootstrap_nodes(
                        self.inner
                            .vpn_bootstrap_nodes
                            .iter()
                            .map(ToString::to_string)
                            .collect(),
                    ),
                )
            }
            _ => None,
        };
        let through_director = self.inner.agents.managers_cloud == super::ManagersCloud::Director;
        let own_entries: Vec<(&str, Vec<(String, String)>)> = if through_director {
            // The manager's one key for the managers' cloud, stored hashed before the VM
            // exists (the manager may call as soon as it boots).
            let (key, hash) = super::agents::new_cloud_key();
            self.inner
                .store
                .run(move |conn| store::set_cloud_key(conn, sid, &hash))
                .await?;
            // The default cloud (the first registered) is the manager's `[iaas]`, whatever an
            // embedder named it: 1.2 managers find their clouds from that section.
            let names: Vec<&str> = self.inner.clouds.iter().map(|c| c.name()).collect();
            let others = names.get(1..).unwrap_or_default().join(",");
            names
                .iter()
                .enumerate()
                .map(|(index, name)| {
                    let section = if index == 0 { "iaas" } else { *name };
                    let default = (index == 0).then_some(others.as_str());
                    let entries = managers_cloud_section(director_url, sid, name, default, &key);
                    (section, entries)
                })
                .collect()
        } else {
            Vec::new()
        };
        let sections: Vec<CloudSection<'_>> = if through_director {
            own_entries
                .iter()
                .map(|(name, entries)| CloudSection { name, entries })
                .collect()
        } else {
            self.inner
                .clouds
                .iter()
                .map(|registered| CloudSection {
                    name: registered.name(),
                    entries: registered.section(),
                })
                .collect()
        };
        let key_pem = manager_cert.key_pem.as_ref().map(|key| {
            use secrecy::ExposeSecret as _;
            key.expose_secret().to_owned()
        });
        let service_type = service.service_type.clone().unwrap_or_default();
        let mut input = ContextInput::new(
            director_url,
            &service_type,
            sid.0,
            uid.0,
            service.application_id.0,
        )
        .certificates(
            &manager_cert.cert_pem,
            key_pem.as_deref().unwrap_or_default(),
            self.ca_cert_pem(),
        )
        .clouds(&sections)
        .trust_ca_for_clouds(through_director);
        if let Some(lines) = &vpn_lines {
            input = input.vpn(lines);
        }
        let user_data = bootstrap::render(templates, &input).map_err(Error::from)?;
        let request = NodeRequest::new(
            format!("conpaas-manager-{service_type}-u{uid}-s{sid}"),
            user_data,
            self.client_token(sid),
        )
        .tag("ConPaaS-Director", self.inner.installation_tag.clone())
        .tag("ConPaaS-User", uid.to_string())
        .tag("ConPaaS-App", service.application_id.to_string())
        .tag("ConPaaS-Service", sid.to_string());
        let node = match tokio::time::timeout(self.inner.start_timeout, cloud.create_node(request))
            .await
        {
            Ok(result) => result.map_err(Error::from)?,
            Err(_) => return Err(Error::StartTimeout.into()),
        };
        let vm = ManagerVm {
            manager: node.public_ip.clone(),
            vmid: node.vmid.clone(),
            cloud: cloud_name.to_owned(),
        };
        let event = Event::new("service.started", AuditOutcome::Ok)
            .uid(uid)
            .aid(service.application_id)
            .sid(sid)
            .detail("type", service_type.clone())
            .detail("cloud", cloud_name)
            .detail("vmid", node.vmid.clone())
            .detail("subnet", service.subnet.clone());
        let completed = self.complete(sid, &vm, &event).await;
        let completed = match completed {
            Ok(completed) => completed,
            // The commit may have happened although its answer was lost: the row says.
            Err(error) => match self.settle_completion(sid, &vm, &event).await {
                Some(found) => found,
                None => {
                    // The row could not be read: it stays `starting` with its VM under this
                    // service's token, for reconciliation to undo once the database answers.
                    tracing::warn!(sid = %sid, vmid = %node.vmid, error = %ErrorChain(&error), "cannot record the VM of a started service; reconciliation will undo the start");
                    return Err(Failure::Leave(error.into()));
                }
            },
        };
        match completed {
            Some(service) => {
                tracing::info!(sid = %sid, vmid = %node.vmid, cloud = %cloud_name, "service started");
                Ok(service)
            }
            None => {
                // A stop or reconciliation claimed the row while the VM booted: the VM must
                // not outlive it. Recorded in the claimed row first (so it stays known if the
                // cloud fails the terminate), then terminated, then the row settled.
                self.abandon_vm(sid, &vm).await;
                Err(Failure::Leave(Error::ServiceNotFound(sid)))
            }
        }
    }

    /// After a failed completion: the row's truth, read with the charge's patience. `Some(Some)`
    /// when the completion committed (the row runs with `vm`), `Some(None)` when the row is no
    /// longer this start's (claimed or gone), `None` when the database did not answer.
    async fn settle_completion(
        &self,
        sid: ServiceId,
        vm: &ManagerVm,
        event: &Event,
    ) -> Option<Option<Service>> {
        self.with_charge_patience(move || async move {
            match self
                .inner
                .store
                .run(move |conn| store::find_service(conn, sid))
                .await
            {
                Ok(Some(row)) if row.lifecycle == Lifecycle::Running => {
                    Some((row.vmid.as_deref() == Some(vm.vmid.as_str())).then_some(row))
                }
                // Not completed: complete it now (the conditional UPDATE decides).
                Ok(Some(row)) if row.lifecycle == Lifecycle::Starting => {
                    self.complete(sid, vm, event).await.ok()
                }
                Ok(_) => Some(None),
                Err(_) => None,
            }
        })
        .await
    }

    /// Runs `attempt` until it answers (`Some`), retrying with backoff while it fails (`None`)
    /// for at most the charge's patience (`[director] CHARGE_PATIENCE`); `None` when it kept
    /// failing. What a lost database answer is settled with.
    pub(super) async fn with_charge_patience<T, F>(
        &self,
        mut attempt: impl FnMut() -> F,
    ) -> Option<T>
    where
        F: std::future::Future<Output = Option<T>>,
    {
        let mut delay = std::time::Duration::from_millis(50);
        let deadline = tokio::time::Instant::now() + self.inner.charge_patience;
        loop {
            if let Some(answer) = attempt().await {
                return Some(answer);
            }
            if tokio::time::Instant::now() + delay >= deadline {
                return None;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(2));
        }
    }

    /// Records the started VM in its row (`starting` → `running`) with its audit event, in one
    /// transaction: `None` when the row is no longer this start's.
    async fn complete(
        &self,
        sid: ServiceId,
        vm: &ManagerVm,
        event: &Event,
    ) -> Result<Option<Service>, store::Error> {
        let recorded = vm.clone();
        let event = event.to_new();
        self.inner
            .store
            .run(move |conn| {
                store::write_transaction(conn, |conn| {
                    let completed = store::complete_service(conn, sid, &recorded)?;
                    if completed.is_some() {
                        store::record_audit_event(conn, &event)?;
                    }
                    Ok::<_, store::Error>(completed)
                })
            })
            .await
    }

    /// The idempotency token of service `sid`'s VM on any cloud: unique per installation.
    pub fn client_token(&self, sid: ServiceId) -> String {
        format!("cps-{}-s{sid}", self.inner.installation_tag)
    }

    /// Undoes a start that failed after its row was created: the row claimed (`starting` →
    /// `undoing`), every VM under this service's token terminated, then the row deleted and the
    /// credit refunded. A row another actor claimed is theirs; a row that cannot be settled now
    /// (a cloud or the database failing) stays claimed for reconciliation to finish.
    async fn undo_start(&self, service: &Service) {
        let sid = service.sid;
        let claimed = self
            .inner
            .store
            .run(move |conn| {
                store::claim_service(conn, sid, Lifecycle::Starting, Lifecycle::Undoing)
            })
            .await;
        let row = match claimed {
            Ok(Some(row)) => row,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(sid = %sid, error = %ErrorChain(&error), "cannot claim the row of a failed start; reconciliation will undo it");
                return;
            }
        };
        if let Err(error) = self.settle(&row, None, SETTLE_ATTEMPTS).await {
            tracing::warn!(sid = %sid, error = %ErrorChain(&error), "cannot undo a failed start yet; reconciliation will retry");
        }
    }

    /// A start that lost its row to a claim: its VM recorded in the claimed row (if the row is
    /// still there without one), terminated, and the row settled. If the row is gone and the
    /// terminate keeps failing, the VM is left to the reaper (it has no row).
    async fn abandon_vm(&self, sid: ServiceId, vm: &ManagerVm) {
        let recorded = vm.clone();
        let kept = self
            .inner
            .store
            .run(move |conn| store::record_abandoned_vm(conn, sid, &recorded))
            .await
            .unwrap_or(false);
        // The row is gone: the VM is recorded on its own before anything else, so that a
        // crash or a failing terminate leaves it known.
        let noted = kept || {
            let (cloud, vmid, now) = (vm.cloud.clone(), vm.vmid.clone(), self.now());
            self.inner
                .store
                .run(move |conn| store::record_abandoned(conn, sid, &cloud, &vmid, now))
                .await
                .is_ok()
        };
        let killed = self
            .kill_with_retries(sid, &vm.cloud, &vm.vmid, SETTLE_ATTEMPTS)
            .await;
        if killed && !kept {
            let (cloud, vmid) = (vm.cloud.clone(), vm.vmid.clone());
            // A record left behind is forgotten by reconciliation (the VM is gone).
            let _ = self
                .inner
                .store
                .run(move |conn| store::forget_abandoned(conn, &cloud, &vmid))
                .await;
        }
        if !killed && !noted {
            self.inner.metrics.vm_untracked();
            tracing::error!(sid = %sid, cloud = %vm.cloud, vmid = %vm.vmid, "the VM of a stopped start could neither be terminated nor recorded: only the reaper will find it");
        }
        if kept {
            let row = self
                .inner
                .store
                .run(move |conn| store::find_service(conn, sid))
                .await;
            if let Ok(Some(row)) = row
                && matches!(row.lifecycle, Lifecycle::Undoing | Lifecycle::Stopping)
                && let Err(error) = self.settle(&row, None, 1).await
            {
                tracing::warn!(sid = %sid, error = %ErrorChain(&error), "cannot settle a stopped start yet; reconciliation will retry");
            }
        }
    }

    /// Terminates `vmid` on cloud `cloud_name`, retried with backoff: `true` once the cloud
    /// accepted (or did not know the VM).
    pub(super) async fn kill_with_retries(
        &self,
        sid: ServiceId,
        cloud_name: &str,
        vmid: &str,
        attempts: u32,
    ) -> bool {
        let Some(registered) = self.inner.clouds.get(cloud_name) else {
            tracing::error!(sid = %sid, cloud = %cloud_name, %vmid, "a VM on a cloud no longer configured cannot be terminated");
            return false;
        };
        let mut delay = std::time::Duration::from_millis(250);
        for attempt in 1..=attempts.max(1) {
            match registered.cloud().kill_node(vmid).await {
                Ok(()) => return true,
                Err(error) => {
                    tracing::warn!(sid = %sid, cloud = %cloud_name, %vmid, attempt, error = %ErrorChain(&error), "cannot terminate a VM");
                }
            }
            if attempt < attempts {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(4));
            }
        }
        false
    }

    /// Looks for every VM under service `sid`'s client token on every cloud and terminates
    /// it; `true` when every cloud answered and nothing found is left running.
    async fn terminate_by_token(&self, sid: ServiceId, attempts: u32) -> bool {
        let token = self.client_token(sid);
        let mut all_clouds_answered = true;
        for registered in self.inner.clouds.iter() {
            let (name, cloud) = (registered.name(), registered.cloud());
            // A duplicate create may have left more than one; each lookup finds one.
            let mut left = 4;
            loop {
                match cloud.find_node(&token).await {
                    Ok(Some(vmid)) if left > 0 => {
                        left -= 1;
                        if self.kill_with_retries(sid, name, &vmid, attempts).await {
                            tracing::info!(sid = %sid, cloud = %name, %vmid, "terminated the VM of an unfinished start");
                        } else {
                            all_clouds_answered = false;
                            break;
                        }
                    }
                    Ok(Some(_)) => {
                        all_clouds_answered = false;
                        break;
                    }
                    Ok(None) => break,
                    Err(error) => {
                        all_clouds_answered = false;
                        tracing::warn!(sid = %sid, cloud = %name, error = %ErrorChain(&error), "cannot look for the VM of an unfinished start");
                        break;
                    }
                }
            }
        }
        all_clouds_answered
    }

    /// Finishes a claimed row (`undoing` or `stopping`): terminates its recorded VM (and, for
    /// an `undoing` row, every VM under its token), and once the clouds confirm them gone
    /// deletes the row (refunding an `undoing` row's start) with `event` in the same
    /// transaction. `Ok(Some(row))`: done by this call; `Ok(None)`: another actor settled it
    /// or it changed (a VM recorded meanwhile: the next pass sees it); `Err`: a cloud or the
    /// database failed, the row stays for a later pass.
    async fn settle(
        &self,
        row: &Service,
        event: Option<Event>,
        attempts: u32,
    ) -> Result<Option<Service>, Error> {
        let sid = row.sid;
        let lifecycle = row.lifecycle;
        // Its agents first: no agent outlives its service, and the row keeps them known.
        if !self.settle_agents(sid, attempts).await {
            return Err(Error::Cloud(cloud::Error::Unavailable(format!(
                "the agent VMs of service {sid} could not all be terminated yet; the service is \
                 kept and retried"
            ))));
        }
        if let (Some(vmid), Some(cloud_name)) = (&row.vmid, &row.cloud)
            && !self
                .kill_with_retries(sid, cloud_name, vmid, attempts)
                .await
        {
            return Err(Error::Cloud(cloud::Error::Unavailable(format!(
                "the VM {vmid} of service {sid} could not be terminated; the service is kept and its VM retried"
            ))));
        }
        let by_token = lifecycle == Lifecycle::Undoing || row.vmid.is_none();
        if by_token && !self.terminate_by_token(sid, attempts).await {
            return Err(Error::Cloud(cloud::Error::Unavailable(format!(
                "the clouds could not confirm that service {sid} has no VM left; the service is kept and retried"
            ))));
        }
        let expected = row.vmid.clone();
        let event = event.map(|event| {
            let event = if lifecycle == Lifecycle::Undoing {
                event.detail("refunded", START_COST.0)
            } else {
                event
            };
            event.to_new()
        });
        let forgotten = self
            .inner
            .store
            .run(move |conn| {
                store::write_transaction(conn, |conn| {
                    let forgotten = store::forget_service(
                        conn,
                        sid,
                        lifecycle,
                        expected.as_deref(),
                        START_COST,
                    )?;
                    if let (Some(_), Some(event)) = (&forgotten, &event) {
                        store::record_audit_event(conn, event)?;
                    }
                    Ok::<_, store::Error>(forgotten)
                })
            })
            .await?;
        Ok(forgotten)
    }

    /// Stops the user's service: its VM destroyed, its row deleted. `false` when not theirs.
    pub async fn stop_service(&self, uid: UserId, sid: ServiceId) -> Result<bool, Error> {
        self.destroy_owned(uid, sid, "service.stopped").await
    }

    /// A manager asks to be destroyed (`/callback/terminateService.php`).
    pub async fn terminate_service(&self, uid: UserId, sid: ServiceId) -> Result<bool, Error> {
        self.destroy_owned(uid, sid, "service.terminated").await
    }

    /// [`destroy_service`](Self::destroy_service) of `uid`'s service `sid`; `false` when not
    /// theirs. `event` names the audit event.
    async fn destroy_owned(
        &self,
        uid: UserId,
        sid: ServiceId,
        event: &'static str,
    ) -> Result<bool, Error> {
        let Some(service) = self
            .inner
            .store
            .run(move |conn| store::find_service_owned(conn, sid, uid))
            .await?
        else {
            return Ok(false);
        };
        self.destroy_service(&service, event).await?;
        Ok(true)
    }

    /// Destroys a service: claims its row (`running` → `stopping`, or `starting` → `undoing`,
    /// which makes a start still creating its VM terminate that VM itself), terminates its VM
    /// and deletes the row once the cloud confirms. A row another actor claimed is settled
    /// beside it (every step is idempotent). A cloud failure keeps the row, claimed, so the VM
    /// is never forgotten: the call fails and reconciliation retries.
    /// `event` names the audit event (`service.stopped`, `service.terminated`).
    pub(super) async fn destroy_service(
        &self,
        service: &Service,
        event: &'static str,
    ) -> Result<(), Error> {
        let sid = service.sid;
        let mut current = service.clone();
        // Each round either claims, settles or sees the row changed; a row changes state at
        // most three times, so the bound only guards against a store that keeps answering
        // something new.
        for _ in 0..6 {
            let claim = match current.lifecycle {
                Lifecycle::Running => Some((Lifecycle::Running, Lifecycle::Stopping)),
                Lifecycle::Starting => Some((Lifecycle::Starting, Lifecycle::Undoing)),
                Lifecycle::Stopping | Lifecycle::Undoing => None,
            };
            let row = match claim {
                Some((from, to)) => {
                    match self
                        .inner
                        .store
                        .run(move |conn| store::claim_service(conn, sid, from, to))
                        .await?
                    {
                        Some(row) => row,
                        None => {
                            // Claimed or changed by someone else: look again.
                            match self
                                .inner
                                .store
                                .run(move |conn| store::find_service(conn, sid))
                                .await?
                            {
                                Some(now) => {
                                    current = now;
                                    continue;
                                }
                                None => return Ok(()),
                            }
                        }
                    }
                }
                None => current.clone(),
            };
            let audited = Event::new(event, AuditOutcome::Ok)
                .uid(row.user_id)
                .aid(row.application_id)
                .sid(sid)
                .detail("type", row.service_type.clone())
                .detail("cloud", row.cloud.clone())
                .detail("vmid", row.vmid.clone());
            match self.settle(&row, Some(audited), SETTLE_ATTEMPTS).await? {
                Some(_) => {
                    tracing::info!(sid = %sid, "service stopped");
                    self.inner.metrics.service(
                        ServiceEvent::Stopped,
                        row.cloud.as_deref().unwrap_or_default(),
                        row.service_type.as_deref().unwrap_or_default(),
                    );
                    return Ok(());
                }
                None => match self
                    .inner
                    .store
                    .run(move |conn| store::find_service(conn, sid))
                    .await?
                {
                    Some(now) => current = now,
                    None => return Ok(()),
                },
            }
        }
        Err(Error::ServiceNotFound(sid))
    }

    /// Asks a manager to shut its service down before its VM goes (1.2's `/delete` did);
    /// best effort, bounded.
    pub(super) async fn shutdown_manager(&self, service: &Service) {
        let Some(manager) = &service.manager else {
            return;
        };
        match self
            .inner
            .managers
            .call(manager, "shutdown", serde_json::json!({}))
            .await
        {
            Ok(_) => tracing::info!(sid = %service.sid, %manager, "manager asked to shut down"),
            // A manager that does not answer must not keep its VM alive: log and go on.
            Err(error) => {
                tracing::warn!(sid = %service.sid, %manager, error = %ErrorChain(&error), "manager did not take the shutdown call")
            }
        }
    }
}

/// The config.cfg section of cloud `name` for service `sid`'s manager when the director is its
/// managers' cloud (`other_clouds`: for the default cloud's `[iaas]`, the other sections'
/// names, comma-separated): 1.2's OpenNebula driver (the thirteen keys its `OpenNebulaCloud` requires,
/// `spec/clouds.md` §7.6) pointed at the director's OCCI routes, with the service's own key.
/// Only `URL`, `USER` and `PASSWORD` mean anything to the director; the others are required by
/// the manager's code and ignored (the director's own settings of the real cloud apply).
fn managers_cloud_section(
    director_url: &str,
    sid: ServiceId,
    name: &str,
    other_clouds: Option<&str>,
    key: &secrecy::SecretString,
) -> Vec<(String, String)> {
    use secrecy::ExposeSecret as _;
    let mut entries: Vec<(String, String)> = [
        ("DRIVER", "opennebula"),
        ("URL", director_url.trim_end_matches('/')),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    entries.push(("USER".into(), super::agents::agent_cloud_user(sid, name)));
    entries.push(("PASSWORD".into(), key.expose_secret().to_owned()));
    for (k, v) in [
        ("IMAGE_ID", "0"),
        ("INST_TYPE", "small"),
        ("NET_ID", "0"),
        ("NET_GATEWAY", "0.0.0.0"),
        ("NET_NETMASK", "0.0.0.0"),
        ("NET_NAMESERVER", "0.0.0.0"),
        ("OS_ARCH", "x86_64"),
        ("OS_ROOT", "sda"),
        ("DISK_TARGET", "sda"),
        ("CONTEXT_TARGET", "sdb"),
    ] {
        entries.push((k.to_owned(), v.to_owned()));
    }
    // 1.2's managers split the list on commas only: no spaces.
    if let Some(others) = other_clouds.filter(|others| !others.is_empty()) {
        entries.push(("OTHER_CLOUDS".into(), others.to_owned()));
    }
    entries
}

/// Picks the subnet of a new service from its application's recorded ones.
fn choose_subnet(plan: Option<&vpn::VpnPlan>, taken: &[String]) -> Result<Option<String>, Error> {
    let Some(plan) = plan else { return Ok(None) };
    // An unreadable recorded subnet stops the start: skipping it could hand its addresses out
    // twice.
    let taken = taken
        .iter()
        .map(|text| vpn::parse_recorded_subnet(text))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(plan.allocate(&taken)?.to_string()))
}

impl Director {
    /// How old a `starting` row must be before [`Director::reconcile`] undoes it: the start
    /// timeout plus a minute, so that a start still running in another director replica
    /// sharing the database is never cut short (one in this process never is).
    pub fn reconcile_grace(&self) -> std::time::Duration {
        self.inner.start_timeout + std::time::Duration::from_secs(60)
    }

    /// Settles what starts and stops left unfinished (a crash, a cloud failure, a lost
    /// database answer): every `starting` row older than `older_than` (normally
    /// [`Director::reconcile_grace`]) whose start is not running in this process is claimed
    /// (`undoing`) *before* anything is terminated, so a start completing meanwhile sees the
    /// claim and terminates its own VM; then every claimed row (`undoing`, `stopping`) has its
    /// VMs terminated (by record and by client token on every cloud) and, once the clouds
    /// confirm them gone, is deleted (an undone start refunded); and every VM that arrived
    /// after its row was gone ([`store::list_abandoned`]) is terminated. Answers how many rows
    /// and VMs were settled.
    pub async fn reconcile(&self, older_than: std::time::Duration) -> Result<usize, Error> {
        let store = &self.inner.store;
        let unsettled = store.run(store::list_unsettled_services).await?;
        let grace =
            chrono::Duration::from_std(older_than).unwrap_or_else(|_| chrono::Duration::hours(1));
        let now = self.now().naive_utc();
        let mut settled = 0;
        for service in unsettled {
            let sid = service.sid;
            if self.start_in_progress(sid) {
                continue;
            }
            let row = match service.lifecycle {
                Lifecycle::Starting => {
                    // A row without a time (a 1.2 row) is old enough.
                    if service.created.is_some_and(|created| now - created < grace) {
                        continue;
                    }
                    match store
                        .run(move |conn| {
                            store::claim_service(conn, sid, Lifecycle::Starting, Lifecycle::Undoing)
                        })
                        .await
                    {
                        Ok(Some(row)) => row,
                        // Completed or claimed meanwhile.
                        Ok(None) => continue,
                        Err(error) => {
                            tracing::warn!(sid = %sid, error = %ErrorChain(&error), "cannot claim an interrupted start");
                            continue;
                        }
                    }
                }
                Lifecycle::Undoing | Lifecycle::Stopping => service,
                Lifecycle::Running => continue,
            };
            let event = Event::new("service.reconciled", AuditOutcome::Ok)
                .uid(row.user_id)
                .aid(row.application_id)
                .sid(sid)
                .detail("type", row.service_type.clone())
                .detail("was", row.lifecycle.as_str())
                .detail("vmid", row.vmid.clone());
            match self.settle(&row, Some(event), 1).await {
                Ok(Some(_)) => {
                    settled += 1;
                    tracing::info!(sid = %sid, was = %row.lifecycle, "settled an unfinished service start or stop");
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(sid = %sid, error = %ErrorChain(&error), "cannot settle an unfinished service start or stop yet");
                }
            }
        }
        settled += self.reconcile_agents(older_than).await;
        // VMs that arrived after their row was settled.
        for vm in store.run(store::list_abandoned).await? {
            if !self.kill_with_retries(vm.sid, &vm.cloud, &vm.vmid, 1).await {
                continue;
            }
            let (cloud, vmid) = (vm.cloud.clone(), vm.vmid.clone());
            if store
                .run(move |conn| store::forget_abandoned(conn, &cloud, &vmid))
                .await?
            {
                settled += 1;
                tracing::info!(sid = %vm.sid, cloud = %vm.cloud, vmid = %vm.vmid, "terminated a VM that arrived after its service was stopped");
            }
        }
        Ok(settled)
    }

    /// Whether service `sid`'s start is running in this process.
    fn start_in_progress(&self, sid: ServiceId) -> bool {
        self.inner
            .starting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&sid)
    }
}

/// How often the paths a client waits on (a failed start's undo, a stop) try a cloud's
/// terminate before leaving it to reconciliation.
const SETTLE_ATTEMPTS: u32 = 3;

/// Why the start saga stopped after its row existed: undo it, or leave it (another actor owns
/// the row, or the database cannot say what happened, and reconciliation will).
enum Failure {
    Undo(Error),
    Leave(Error),
}

impl<E: Into<Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::Undo(error.into())
    }
}

/// Marks a service's start as running in this process for as long as it lives.
struct StartInProgress {
    director: Director,
    sid: ServiceId,
}

impl StartInProgress {
    fn new(director: &Director, sid: ServiceId) -> Self {
        director
            .inner
            .starting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(sid);
        StartInProgress {
            director: director.clone(),
            sid,
        }
    }
}

impl Drop for StartInProgress {
    fn drop(&mut self) {
        self.director
            .inner
            .starting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.sid);
    }
}
