//! Services: the start saga, stop, rename, lists, and the manager's own terminate call.

use std::str::FromStr;

use crate::bootstrap::{self, CloudSection, ContextInput, Templates, VpnLines};
use crate::cloud::{self, NodeRequest};
use crate::model::ErrorChain;
use crate::model::{AppId, Credit, Role, Service, ServiceId, ServiceType, UserId};
use crate::store::{self, ManagerVm, NewService};
use crate::vpn;

use super::accounts::check_name;
use super::audit::{AuditContext, AuditOutcome, Event};
use super::metrics::ServiceEvent;
use super::{Director, Error, parse_int};

/// What `/start` asks for.
#[derive(Debug, Clone)]
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
        let templates =
            tokio::task::spawn_blocking(move || Templates::from_source(&source, type_name, driver))
                .await
                .map_err(|_| Error::Cancelled)??;

        // One transaction: the credit, the row and its subnet.
        let plan = self.inner.vpn.clone();
        let max_services = self.inner.user_limits.max_services;
        let new = NewService {
            user_id: uid,
            application_id: aid,
            service_type,
        };
        let service = store
            .run(move |conn| {
                store::write_transaction(conn, |conn| {
                    if !store::decrement_credit(conn, uid, START_COST)? {
                        return Err(Error::InsufficientCredit);
                    }
                    store::insert_service_capped(conn, &new, max_services, |taken| {
                        choose_subnet(plan.as_ref(), taken)
                    })
                })
            })
            .await?;
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
            Err(error) => {
                self.undo_start(&service).await;
                Err(error)
            }
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
    ) -> Result<Service, Error> {
        let (uid, sid) = (service.user_id, service.sid);
        let manager_cert = self
            .issue(Role::Manager, move |ca| ca.issue_manager_cert(uid, sid))
            .await?;
        let vpn_lines = match (&self.inner.vpn, service.subnet.as_deref()) {
            (Some(plan), Some(text)) => {
                let subnet = vpn::parse_recorded_subnet(text)?;
                let config = plan.manager_vpn_config(subnet)?;
                Some(VpnLines {
                    subnet: config.ipop_subnet.to_string(),
                    ip_address: config.ipop_ip_address.to_string(),
                    base_ip: config.ipop_base_ip,
                    netmask: config.ipop_netmask,
                })
            }
            _ => None,
        };
        let sections: Vec<CloudSection<'_>> = self
            .inner
            .clouds
            .iter()
            .map(|registered| CloudSection {
                name: registered.name(),
                entries: registered.section(),
            })
            .collect();
        let key_pem = manager_cert.key_pem.as_ref().map(|key| {
            use secrecy::ExposeSecret as _;
            key.expose_secret().to_owned()
        });
        let service_type = service.service_type.clone().unwrap_or_default();
        let user_data = bootstrap::render(
            templates,
            &ContextInput {
                director_url,
                service_type: &service_type,
                service_id: sid.0,
                user_id: uid.0,
                app_id: service.application_id.0,
                manager_cert_pem: &manager_cert.cert_pem,
                manager_key_pem: key_pem.as_deref().unwrap_or_default(),
                ca_cert_pem: self.ca_cert_pem(),
                clouds: &sections,
                vpn: vpn_lines.as_ref(),
            },
        )?;
        let request = NodeRequest {
            name: format!("conpaas-manager-{service_type}-u{uid}-s{sid}"),
            user_data,
            client_token: self.client_token(sid),
            tags: vec![
                (
                    "ConPaaS-Director".into(),
                    self.inner.installation_tag.clone(),
                ),
                ("ConPaaS-User".into(), uid.to_string()),
                ("ConPaaS-App".into(), service.application_id.to_string()),
                ("ConPaaS-Service".into(), sid.to_string()),
            ],
        };
        let node = match tokio::time::timeout(self.inner.start_timeout, cloud.create_node(request))
            .await
        {
            Ok(result) => result?,
            Err(_) => return Err(Error::StartTimeout),
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
        let completed = self
            .inner
            .store
            .run(move |conn| {
                store::write_transaction(conn, |conn| {
                    let completed = store::complete_service(conn, sid, &vm)?;
                    if completed.is_some() {
                        store::record_audit_event(conn, &event.to_new())?;
                    }
                    Ok::<_, store::Error>(completed)
                })
            })
            .await?;
        match completed {
            Some(service) => {
                tracing::info!(sid = %sid, vmid = %node.vmid, cloud = %cloud_name, "service started");
                Ok(service)
            }
            None => {
                // The row was stopped while the VM booted: the VM must not outlive it.
                if let Err(error) = cloud.kill_node(&node.vmid).await {
                    tracing::warn!(sid = %sid, vmid = %node.vmid, error = %ErrorChain(&error), "cannot terminate the VM of a service stopped while starting");
                }
                Err(Error::ServiceNotFound(sid))
            }
        }
    }

    /// The idempotency token of service `sid`'s VM on any cloud: unique per installation.
    pub fn client_token(&self, sid: ServiceId) -> String {
        format!("cps-{}-s{sid}", self.inner.installation_tag)
    }

    /// Undoes a start that failed after its row was created: the VM (if the cloud made one
    /// under this service's token), the row, the credit.
    async fn undo_start(&self, service: &Service) {
        // The drivers terminate what they created when they fail; this covers a create the
        // start timeout cancelled mid-way: any VM under this service's token goes.
        self.terminate_by_token(service.sid).await;
        self.forget_start(service, None).await;
    }

    /// Looks for a VM under service `sid`'s client token on every cloud and terminates it;
    /// `true` when every cloud answered and nothing found is left running.
    async fn terminate_by_token(&self, sid: ServiceId) -> bool {
        let token = self.client_token(sid);
        let mut all_clouds_answered = true;
        for registered in self.inner.clouds.iter() {
            let (name, cloud) = (registered.name(), registered.cloud());
            match cloud.find_node(&token).await {
                Ok(Some(vmid)) => match cloud.kill_node(&vmid).await {
                    Ok(()) => {
                        tracing::info!(sid = %sid, cloud = %name, %vmid, "terminated the VM of an unfinished start")
                    }
                    Err(error) => {
                        all_clouds_answered = false;
                        tracing::warn!(sid = %sid, cloud = %name, %vmid, error = %ErrorChain(&error), "cannot terminate the VM of an unfinished start");
                    }
                },
                Ok(None) => {}
                Err(error) => {
                    all_clouds_answered = false;
                    tracing::warn!(sid = %sid, cloud = %name, error = %ErrorChain(&error), "cannot look for the VM of an unfinished start");
                }
            }
        }
        all_clouds_answered
    }

    /// Deletes the row of a start that did not finish and refunds its credit, in one
    /// transaction; a row that has its VM by now (or is gone) is left alone, so running this
    /// twice, or beside another replica, refunds once.
    /// `event`, when given, is recorded with the undoing.
    async fn forget_start(&self, service: &Service, event: Option<Event>) -> bool {
        let sid = service.sid;
        let event = event.map(|event| event.to_new());
        match self
            .inner
            .store
            .run(move |conn| {
                store::write_transaction(conn, |conn| {
                    let undone = store::forget_incomplete_service(conn, sid, START_COST)?;
                    if let (true, Some(event)) = (undone, &event) {
                        store::record_audit_event(conn, event)?;
                    }
                    Ok::<_, store::Error>(undone)
                })
            })
            .await
        {
            Ok(undone) => undone,
            Err(error) => {
                tracing::warn!(sid = %sid, error = %ErrorChain(&error), "cannot undo the row of a failed start");
                false
            }
        }
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

    /// Destroys the service's VM (if it has one yet), then deletes its row — only if the row
    /// still records that VM: when a start completed since `service` was read, its new VM is
    /// destroyed first. A row deleted while its VM was still being created makes that start
    /// terminate the VM itself (`complete_service` finds no row). A cloud failure keeps the
    /// row, so the VM is never forgotten.
    /// `event` names the audit event (`service.stopped`, `service.terminated`).
    pub(super) async fn destroy_service(
        &self,
        service: &Service,
        event: &'static str,
    ) -> Result<(), Error> {
        let sid = service.sid;
        let mut current = service.clone();
        // A row's VM changes at most once (none, then the started one); the bound only guards
        // against a store that keeps answering something new.
        for _ in 0..4 {
            if let (Some(vmid), Some(cloud_name)) = (&current.vmid, &current.cloud) {
                let Some(registered) = self.inner.clouds.get(cloud_name) else {
                    return Err(Error::UnknownCloud(cloud_name.clone()));
                };
                registered.cloud().kill_node(vmid).await?;
            }
            let expected = current.vmid.clone();
            let audited = Event::new(event, AuditOutcome::Ok)
                .uid(current.user_id)
                .aid(current.application_id)
                .sid(sid)
                .detail("type", current.service_type.clone())
                .detail("cloud", current.cloud.clone())
                .detail("vmid", current.vmid.clone())
                .to_new();
            let outcome = self
                .inner
                .store
                .run(move |conn| {
                    store::write_transaction(conn, |conn| {
                        let outcome = store::delete_service_if_vm(conn, sid, expected.as_deref())?;
                        if matches!(outcome, store::ConditionalDelete::Deleted(_)) {
                            store::record_audit_event(conn, &audited)?;
                        }
                        Ok::<_, store::Error>(outcome)
                    })
                })
                .await?;
            match outcome {
                store::ConditionalDelete::Deleted(_) => {
                    tracing::info!(sid = %sid, "service stopped");
                    self.inner.metrics.service(
                        ServiceEvent::Stopped,
                        current.cloud.as_deref().unwrap_or_default(),
                        current.service_type.as_deref().unwrap_or_default(),
                    );
                    return Ok(());
                }
                store::ConditionalDelete::Gone => return Ok(()),
                store::ConditionalDelete::Changed(now) => current = now,
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
    /// How old a row without a VM must be before [`Director::reconcile`] undoes it: the start
    /// timeout plus a minute, so that a start still running (in this process or in another
    /// director replica sharing the database) is never touched.
    pub fn reconcile_grace(&self) -> std::time::Duration {
        self.inner.start_timeout + std::time::Duration::from_secs(60)
    }

    /// Undoes the starts a crash left half-done: every service row still without a VM and
    /// older than `older_than` (normally [`Director::reconcile_grace`]) has its VM looked up
    /// by client token on every cloud and terminated, then the row is deleted and its credit
    /// refunded. Answers how many rows were undone.
    pub async fn reconcile(&self, older_than: std::time::Duration) -> Result<usize, Error> {
        let store = &self.inner.store;
        let incomplete = store.run(store::list_incomplete_services).await?;
        let grace =
            chrono::Duration::from_std(older_than).unwrap_or_else(|_| chrono::Duration::hours(1));
        let now = chrono::Local::now().naive_local();
        let mut undone = 0;
        for service in incomplete {
            let Some(created) = service.created else {
                continue;
            };
            if now - created < grace {
                continue;
            }
            // Keep the row while any cloud could still hold its VM: it is the only trace.
            let event = Event::new("service.reconciled", AuditOutcome::Ok)
                .uid(service.user_id)
                .aid(service.application_id)
                .sid(service.sid)
                .detail("type", service.service_type.clone())
                .detail("refunded", START_COST.0);
            if self.terminate_by_token(service.sid).await
                && self.forget_start(&service, Some(event)).await
            {
                undone += 1;
                tracing::info!(sid = %service.sid, "undid an interrupted service start");
            }
        }
        Ok(undone)
    }
}
