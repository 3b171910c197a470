//! The OpenNebula driver for OpenNebula 5.x-7.x: manager VMs through oned's XML-RPC API
//! (`XMLRPC = https://one.example.org:2633/RPC2`), selected by `API = xmlrpc` in an
//! `opennebula` section. The OCCI driver beside it stays for OpenNebula up to 4.6, which had
//! an OCCI server (docs/clouds.md says which to use when).
//!
//! * **Create**: `one.template.instantiate(session, TEMPLATE_ID, name, false, extra)`, or
//!   without `TEMPLATE_ID` `one.vm.allocate(session, template, false)` of a template written
//!   from `IMAGE_ID`, `NET_ID`, `CPU`, `MEMORY` (`VCPU`). The boot script goes as one-context's
//!   `CONTEXT/START_SCRIPT_BASE64`, beside `NETWORK = "YES"`, `SET_HOSTNAME = "$NAME"`,
//!   `IP_PUBLIC = "$NIC[IP]"` and, when configured, `NETMASK`, `IP_GATEWAY`, `NAMESERVER` (what
//!   1.2's `scripts/cloud/opennebula` reads from `context.sh`). oned *replaces* a template's
//!   `CONTEXT` with the one of the extra template (`Template::merge` erases attributes by name
//!   before adding), so the driver first reads the template's `CONTEXT` (`one.template.info`)
//!   and sends it whole, its own variables over the template's.
//! * **Labels**: the VM's `NAME` ends with the client token (as the OCCI driver's,
//!   [`OpenNebulaCloud::vm_name`](super::OpenNebulaCloud::vm_name)); its user template gets
//!   `LABELS = "conpaas"` (Sunstone shows it), `CONPAAS_CLIENT_TOKEN` and the request's
//!   `ConPaaS-*` tags as `CONPAAS_*` attributes.
//! * **Listing**: `one.vmpool.info(session, -1, -1, -1, -1)`: the VMs of the user and its
//!   groups, every id, every state but `DONE`. The token is read from each VM's `NAME`: since
//!   5.8 the pool answer is the short document, whose `USER_TEMPLATE` keeps only `LABELS` and
//!   the scheduler's attributes, and the pool's server-side filter (its sixth parameter, a
//!   full-text search in 5.12 and a JSON `LIKE` in 6.x-7.x) needs a MySQL back-end, answers
//!   substrings, and is absent before 5.12: filtering is done here. A VM renamed by hand is not
//!   found again.
//! * **State** from `one.vm.info`: running is `STATE` 3 (`ACTIVE`) with `LCM_STATE` 3
//!   (`RUNNING`) and a `TEMPLATE/NIC/IP`; a `*_FAILURE` state, `DONE` or a VM gone end the
//!   wait. **Delete**: `one.vm.action(session, "terminate-hard", id)`; a VM unknown, `DONE` or
//!   already shutting down counts as deleted, and one in a state oned cannot terminate from
//!   (`PROLOG`, `BOOT`: an `ACTION` refusal) is tried again after the poll interval.
//!
//! Robustness is the OCCI driver's: bounded retries with backoff for reads and terminates; a
//! create refused by OpenNebula (`success = false`: a quota, a template or image that does not
//! exist) is never sent again; a create whose answer was lost (a timeout, a 5xx, a broken
//! connection) is resolved by listing the token before any resend, and duplicates are deleted;
//! a VM that fails, ends or is not running with an address within `BOOT_TIMEOUT` is deleted
//! before the error, and so is the VM of a create whose future is dropped.
//!
//! The XML-RPC client is this module's own (`rpc.rs`, some 250 lines over reqwest and
//! roxmltree, which the crate already has) rather than the `dxr` crate: the driver sends seven
//! methods with string, int and boolean parameters and reads one answer shape, while `dxr`
//! would add quick-xml, serde and proc-macro crates for every embedder, and its client builds
//! its own reqwest client, without the OCCI driver's TLS roots, timeouts and the failure
//! classification (not sent / maybe done) that decides whether a create may be sent again.

mod document;
mod rpc;

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;

use super::{OpenNebulaCloud, OpenNebulaTuning};
use crate::cloud::provider::{Cloud, Error, ListedNode, Node, NodeRequest, NodeState};
use crate::cloud::tokened::{Abandoned, TokenedCloud, name_has_token, token_in_name};
use crate::cloud::{OpenNebulaVm, OpenNebulaXmlRpcSettings};
use document::{Attribute, Vm};
use rpc::{Param, Refusal, Rpc, code};

use super::transport::Failure;

/// The label every VM of the director carries (`USER_TEMPLATE/LABELS`).
pub(crate) const LABEL: &str = "conpaas";

/// A cloud of manager VMs on OpenNebula 5.x-7.x over XML-RPC. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OpenNebulaXmlRpcCloud {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    settings: OpenNebulaXmlRpcSettings,
    rpc: Rpc,
}

/// How a create call ended.
struct Created {
    vmid: String,
    /// Whether an attempt may have made a VM whose answer was lost: the token is then
    /// searched for duplicates once the outcome is known.
    ambiguous: bool,
}

impl OpenNebulaXmlRpcCloud {
    /// The driver of cloud `name` with the [standard](OpenNebulaTuning::standard) timeouts.
    /// Does no network IO; for an `https` URL it reads the system's CA certificates.
    pub fn new(
        name: impl Into<String>,
        settings: &OpenNebulaXmlRpcSettings,
    ) -> Result<Self, Error> {
        Self::with_tuning(name, settings, OpenNebulaTuning::standard())
    }

    /// [`OpenNebulaXmlRpcCloud::new`] with other timeouts, retries and poll interval.
    pub fn with_tuning(
        name: impl Into<String>,
        settings: &OpenNebulaXmlRpcSettings,
        tuning: OpenNebulaTuning,
    ) -> Result<Self, Error> {
        let name = name.into();
        let rpc = Rpc::new(&name, settings, tuning)?;
        Ok(OpenNebulaXmlRpcCloud {
            inner: Arc::new(Inner {
                name,
                settings: settings.clone(),
                rpc,
            }),
        })
    }
}

/// A tag key (`ConPaaS-Service`) as a user template attribute (`CONPAAS_SERVICE`); only
/// `CONPAAS_*` ones, so that no tag can set `MEMORY` or `CONTEXT`.
fn tag_attribute(tag: &str) -> Option<String> {
    let name: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    (name.starts_with("CONPAAS_") && name != "CONPAAS_CLIENT_TOKEN").then_some(name)
}

fn vm_param(vmid: &str) -> Option<i32> {
    document::is_vm_id(vmid)
        .then(|| vmid.parse().ok())
        .flatten()
}

/// An id of director.cfg as an XML-RPC `int` (config refuses larger ones).
fn id_param(id: u64) -> i32 {
    i32::try_from(id).unwrap_or(i32::MAX)
}

impl TokenedCloud for Inner {
    const WHAT: &'static str = "VM";

    fn cloud_name(&self) -> &str {
        &self.name
    }

    fn delete_vm(&self, vmid: &str) -> impl std::future::Future<Output = Result<(), Error>> + Send {
        self.delete(vmid)
    }

    fn find_vms(
        &self,
        token: &str,
    ) -> impl std::future::Future<Output = Result<Vec<String>, Error>> + Send {
        self.find_all(token)
    }
}

impl Inner {
    fn create_method(&self) -> &'static str {
        match self.settings.vm {
            OpenNebulaVm::Template(_) => "one.template.instantiate",
            OpenNebulaVm::Allocate(_) => "one.vm.allocate",
        }
    }

    /// The `CONTEXT` of the manager VM: `base` (the template's own), then the driver's
    /// variables, which replace any of the same name.
    fn context(&self, request: &NodeRequest, base: Vec<(String, String)>) -> Vec<(String, String)> {
        let settings = &self.settings;
        let script = base64::engine::general_purpose::STANDARD.encode(request.user_data.as_bytes());
        let mut ours: Vec<(String, String)> = vec![
            ("NETWORK".into(), "YES".into()),
            ("SET_HOSTNAME".into(), "$NAME".into()),
            ("START_SCRIPT_BASE64".into(), script),
            // Literal: OpenNebula substitutes the IP leased on the VM's first NIC.
            ("IP_PUBLIC".into(), "$NIC[IP]".into()),
        ];
        if let Some(netmask) = settings.netmask {
            ours.push(("NETMASK".into(), netmask.to_string()));
        }
        if let Some(gateway) = settings.gateway {
            ours.push(("IP_GATEWAY".into(), gateway.to_string()));
        }
        if let Some(nameserver) = settings.nameserver {
            ours.push(("NAMESERVER".into(), nameserver.to_string()));
        }
        let mut context: Vec<(String, String)> = base
            .into_iter()
            .filter(|(key, _)| !ours.iter().any(|(ours, _)| ours.eq_ignore_ascii_case(key)))
            .collect();
        context.extend(ours);
        context
    }

    /// The user template attributes: the label, the token, the `ConPaaS-*` tags.
    fn labels(&self, request: &NodeRequest) -> Vec<Attribute> {
        let mut attributes = vec![Attribute::Single("LABELS".into(), LABEL.into())];
        if !request.client_token.is_empty() {
            attributes.push(Attribute::Single(
                "CONPAAS_CLIENT_TOKEN".into(),
                request.client_token.clone(),
            ));
        }
        for (key, value) in &request.tags {
            match tag_attribute(key) {
                Some(name)
                    if !value.is_empty()
                        && !attributes.iter().any(
                            |taken| matches!(taken, Attribute::Single(n, _) if *n == name),
                        ) =>
                {
                    attributes.push(Attribute::Single(name, value.clone()));
                }
                _ => {
                    tracing::debug!(cloud = %self.name, key, "tag not set as a template attribute")
                }
            }
        }
        attributes
    }

    /// The template of the create call: the extra template of `one.template.instantiate` (the
    /// operator's template's `CONTEXT` read first, see the module docs), or the whole template
    /// of `one.vm.allocate`.
    async fn create_template(&self, request: &NodeRequest) -> Result<String, Error> {
        let mut attributes = Vec::new();
        match &self.settings.vm {
            OpenNebulaVm::Template(id) => {
                let base = self.template_context(*id).await?;
                attributes.push(Attribute::Vector(
                    "CONTEXT".into(),
                    self.context(request, base),
                ));
            }
            OpenNebulaVm::Allocate(spec) => {
                let name = OpenNebulaCloud::vm_name(&request.name, &request.client_token);
                attributes.push(Attribute::Single("NAME".into(), name));
                attributes.push(Attribute::Single("CPU".into(), spec.cpu.clone()));
                if let Some(vcpu) = spec.vcpu {
                    attributes.push(Attribute::Single("VCPU".into(), vcpu.to_string()));
                }
                attributes.push(Attribute::Single(
                    "MEMORY".into(),
                    spec.memory_mb.to_string(),
                ));
                attributes.push(Attribute::Vector(
                    "DISK".into(),
                    vec![("IMAGE_ID".into(), spec.image_id.to_string())],
                ));
                attributes.push(Attribute::Vector(
                    "NIC".into(),
                    vec![("NETWORK_ID".into(), spec.network_id.to_string())],
                ));
                attributes.push(Attribute::Vector(
                    "CONTEXT".into(),
                    self.context(request, Vec::new()),
                ));
            }
        }
        attributes.extend(self.labels(request));
        Ok(document::template_xml(&attributes))
    }

    /// A refusal naming what a configured id points at as [`Error::Misconfigured`].
    fn misconfigured(&self, key: &str, what: &str, id: u64, refusal: &Refusal) -> Error {
        let problem = if refusal.code == code::NO_EXISTS {
            "does not exist".to_owned()
        } else {
            format!("cannot be used by user {:?}", self.settings.user)
        };
        Error::Misconfigured {
            key: key.to_owned(),
            message: format!(
                "{what} {id} {problem} (OpenNebula at {} said: {})",
                self.rpc.url(),
                rpc::one_line(&refusal.message)
            ),
        }
    }

    /// Reads one configured object (`one.template.info`, `one.image.info`, `one.vnet.info`):
    /// its document, or `Misconfigured` naming `key` when it does not exist or is not the
    /// user's to use.
    async fn configured(
        &self,
        method: &str,
        key: &str,
        what: &str,
        id: u64,
    ) -> Result<String, Error> {
        match self.rpc.call(method, &[Param::Int(id_param(id))]).await? {
            Ok(rpc::Value::Str(document)) => Ok(document),
            Ok(other) => Err(Error::Unavailable(format!(
                "{method} at {}: unreadable answer {other:?}",
                self.rpc.url()
            ))),
            Err(refusal) if matches!(refusal.code, code::NO_EXISTS | code::AUTHORIZATION) => {
                Err(self.misconfigured(key, what, id, &refusal))
            }
            Err(refusal) => Err(self.rpc.refused(&refusal)),
        }
    }

    async fn template_context(&self, id: u64) -> Result<Vec<(String, String)>, Error> {
        let document = self
            .configured("one.template.info", "TEMPLATE_ID", "template", id)
            .await?;
        document::parse_template_context(&document).map_err(|error| {
            Error::Unavailable(format!(
                "one.template.info at {}: unreadable template: {error}",
                self.rpc.url()
            ))
        })
    }

    /// `one.vm.info`; `None` when OpenNebula does not know the VM.
    async fn vm(&self, vmid: &str) -> Result<Option<Vm>, Error> {
        let Some(id) = vm_param(vmid) else {
            return Ok(None);
        };
        match self.rpc.call("one.vm.info", &[Param::Int(id)]).await? {
            Ok(rpc::Value::Str(text)) => document::parse_vm(&text).map(Some).map_err(|error| {
                Error::Unavailable(format!(
                    "one.vm.info at {}: unreadable VM {vmid}: {error}",
                    self.rpc.url()
                ))
            }),
            Ok(other) => Err(Error::Unavailable(format!(
                "one.vm.info at {}: unreadable answer {other:?}",
                self.rpc.url()
            ))),
            Err(refusal) if refusal.code == code::NO_EXISTS => Ok(None),
            Err(refusal) => Err(self.rpc.refused(&refusal)),
        }
    }

    /// `one.vmpool.info`: the VMs of the user and its groups that are not `DONE`.
    async fn pool(&self) -> Result<Vec<Vm>, Error> {
        let all = Param::Int(-1);
        match self
            .rpc
            .call("one.vmpool.info", &[all, all, all, all])
            .await?
        {
            Ok(rpc::Value::Str(text)) => document::parse_pool(&text).map_err(|error| {
                Error::Unavailable(format!(
                    "one.vmpool.info at {}: unreadable pool: {error}",
                    self.rpc.url()
                ))
            }),
            Ok(other) => Err(Error::Unavailable(format!(
                "one.vmpool.info at {}: unreadable answer {other:?}",
                self.rpc.url()
            ))),
            Err(refusal) => Err(self.rpc.refused(&refusal)),
        }
    }

    /// The VMs named with `token` that are not `DONE`.
    async fn find_all(&self, token: &str) -> Result<Vec<String>, Error> {
        if token.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .pool()
            .await?
            .into_iter()
            .filter(|vm| name_has_token(&vm.name, token))
            .map(|vm| vm.id)
            .collect())
    }

    async fn list_prefixed(&self, prefix: &str) -> Result<Vec<ListedNode>, Error> {
        if prefix.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .pool()
            .await?
            .into_iter()
            .filter_map(|vm| {
                let token = token_in_name(&vm.name, prefix)?.to_owned();
                Some(ListedNode::new(vm.id, token, vm.created))
            })
            .collect())
    }

    /// `one.vm.action terminate-hard`. Done when OpenNebula accepts it, or when the VM is
    /// unknown, `DONE` or shutting down already; a VM in a state terminate cannot act on
    /// (`PROLOG`, `BOOT`, a hotplug) is tried again after the poll interval, a few times.
    async fn delete(&self, vmid: &str) -> Result<(), Error> {
        let Some(id) = vm_param(vmid) else {
            return Ok(());
        };
        let tuning = self.rpc.tuning();
        let attempts = tuning.max_attempts.get();
        for attempt in 1..=attempts {
            let refusal = match self
                .rpc
                .call(
                    "one.vm.action",
                    &[Param::Str("terminate-hard"), Param::Int(id)],
                )
                .await?
            {
                Ok(_) => {
                    tracing::info!(cloud = %self.name, vmid, "VM terminated");
                    return Ok(());
                }
                Err(refusal) if refusal.code == code::NO_EXISTS => {
                    tracing::info!(cloud = %self.name, vmid, "VM already deleted (OpenNebula no longer knows it)");
                    return Ok(());
                }
                Err(refusal) => refusal,
            };
            let refused = self.rpc.refused(&refusal);
            match self.vm(vmid).await {
                Ok(None) => return Ok(()),
                Ok(Some(vm)) if vm.is_ending() => {
                    tracing::info!(cloud = %self.name, vmid, state = %vm.state_text(), "VM already deleted or being deleted");
                    return Ok(());
                }
                Ok(Some(vm)) if refusal.code == code::ACTION && attempt < attempts => {
                    tracing::info!(cloud = %self.name, vmid, state = %vm.state_text(), attempt, "OpenNebula cannot terminate the VM in its present state yet: trying again");
                    tokio::time::sleep(tuning.poll_interval.max(tuning.backoff(attempt))).await;
                }
                Ok(Some(vm)) => {
                    tracing::warn!(cloud = %self.name, vmid, state = %vm.state_text(), %refused, "OpenNebula refused to terminate a VM that still exists");
                    return Err(Error::Refused {
                        code: rpc::code_name(refusal.code),
                        message: format!(
                            "cannot terminate VM {vmid} ({}): {}",
                            vm.state_text(),
                            rpc::one_line(&refusal.message)
                        ),
                    });
                }
                Err(error) => {
                    return Err(Error::Unavailable(format!(
                        "{refused}; reading the VM to see whether it is deleted failed too: {error}"
                    )));
                }
            }
        }
        Err(Error::Unavailable(format!(
            "one.vm.action terminate-hard of VM {vmid} at {}: not possible in the VM's state \
             (after {attempts} attempts)",
            self.rpc.url()
        )))
    }

    /// The create call. Sent again only when the previous attempt certainly did not reach
    /// oned (not sent, or refused with `INTERNAL` before it ran), or when listing shows that
    /// it made nothing: never a blind second create.
    async fn send_create(&self, template: &str, request: &NodeRequest) -> Result<Created, Error> {
        let method = self.create_method();
        let name = OpenNebulaCloud::vm_name(&request.name, &request.client_token);
        let params: Vec<Param<'_>> = match &self.settings.vm {
            OpenNebulaVm::Template(id) => vec![
                Param::Int(id_param(*id)),
                Param::Str(&name),
                Param::Bool(false),
                Param::Str(template),
            ],
            OpenNebulaVm::Allocate(_) => vec![Param::Str(template), Param::Bool(false)],
        };
        let token = request.client_token.as_str();
        let tuning = self.rpc.tuning();
        let attempts = tuning.max_attempts.get();
        let mut ambiguous = false;
        let mut last = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(tuning.backoff(attempt - 1)).await;
            }
            match self.rpc.attempt(method, &params).await {
                Ok(Ok(rpc::Value::Int(id))) if id >= 0 => {
                    return Ok(Created {
                        vmid: id.to_string(),
                        ambiguous,
                    });
                }
                Ok(Ok(other)) => {
                    // A success without a readable id: a VM was made, its id is not known.
                    last = format!("unreadable answer {other:?}");
                    ambiguous = true;
                }
                Ok(Err(refusal)) if refusal.code == code::INTERNAL => {
                    // oned could not take the call (an HA cluster without leader): it did not run.
                    tracing::info!(cloud = %self.name, attempt, attempts, message = %rpc::one_line(&refusal.message), "VM create refused for now, retrying if attempts remain");
                    last = format!(
                        "OpenNebula answered INTERNAL: {}",
                        rpc::one_line(&refusal.message)
                    );
                    continue;
                }
                Ok(Err(refusal)) if refusal.code == code::REPLICATION => {
                    last = format!(
                        "OpenNebula answered REPLICATION: {}",
                        rpc::one_line(&refusal.message)
                    );
                    ambiguous = true;
                }
                Ok(Err(refusal)) => {
                    // OpenNebula's decision (a quota, a template or image that does not exist):
                    // sending it again changes nothing. No VM should exist; any the token names
                    // is deleted all the same.
                    let error = match (&self.settings.vm, refusal.code) {
                        (OpenNebulaVm::Template(id), code::NO_EXISTS) => {
                            self.misconfigured("TEMPLATE_ID", "template", *id, &refusal)
                        }
                        _ => self.rpc.refused(&refusal),
                    };
                    tracing::warn!(cloud = %self.name, attempt, error = %error, "VM create refused");
                    if !token.is_empty() {
                        self.sweep(token, None).await;
                    }
                    return Err(error);
                }
                Err(Failure::Final(error)) => return Err(error),
                Err(Failure::NotSent(text)) => {
                    tracing::info!(cloud = %self.name, attempt, attempts, failure = %text, "VM create not sent, retrying if attempts remain");
                    last = text;
                    continue;
                }
                Err(Failure::MaybeDone(text)) => {
                    tracing::info!(cloud = %self.name, attempt, attempts, failure = %text, "VM create failed, looking for the VM before any retry");
                    last = text;
                    ambiguous = true;
                }
                Err(Failure::Said(answer)) => {
                    last = format!("the server answered {}", answer.status);
                    ambiguous = true;
                }
            }
            if token.is_empty() {
                // Without a token a lost answer cannot be told from no VM: no retry.
                return Err(self.rpc.unavailable(method, &last, attempt));
            }
            match self.find_all(token).await {
                Ok(found) => {
                    if let Some(vmid) = found.into_iter().next() {
                        tracing::info!(cloud = %self.name, %vmid, "the failed create made a VM: adopting it");
                        return Ok(Created {
                            vmid,
                            ambiguous: true,
                        });
                    }
                }
                Err(error) => {
                    return Err(Error::Unavailable(format!(
                        "{method} at {}: {last}; looking for a VM it may have made failed too: {error}",
                        self.rpc.url()
                    )));
                }
            }
        }
        Err(self.rpc.unavailable(method, &last, attempts))
    }

    /// Polls `one.vm.info` until the VM is running with an IP. A failed read is retried until
    /// the deadline; a refusal or a dead VM ends the wait.
    async fn wait_ready(&self, vmid: &str) -> Result<Node, Error> {
        let poll_interval = self.rpc.tuning().poll_interval;
        loop {
            match self.vm(vmid).await {
                Ok(Some(vm)) => {
                    if vm.is_failed() || vm.is_ending() {
                        tracing::warn!(cloud = %self.name, vmid, state = %vm.state_text(), "VM failed while booting");
                        return Err(Error::Failed(vmid.to_owned()));
                    }
                    if vm.is_running()
                        && let Some(ip) = vm.ip
                    {
                        return Ok(Node::new(vmid, ip.clone(), Some(ip)));
                    }
                }
                Ok(None) => {
                    tracing::warn!(cloud = %self.name, vmid, "VM vanished while booting");
                    return Err(Error::Failed(vmid.to_owned()));
                }
                Err(Error::Unavailable(text)) => {
                    tracing::warn!(cloud = %self.name, vmid, failure = %text, "cannot read the state of a booting VM");
                }
                Err(error) => return Err(error),
            }
            tokio::time::sleep(poll_interval).await;
        }
    }

    /// `one.user.info(-1)` proves the session; then the configured template, or image and
    /// network, must exist and be usable.
    async fn probe(&self) -> Result<(), Error> {
        if let Err(refusal) = self.rpc.call("one.user.info", &[Param::Int(-1)]).await? {
            return Err(self.rpc.refused(&refusal));
        }
        match &self.settings.vm {
            OpenNebulaVm::Template(id) => {
                self.configured("one.template.info", "TEMPLATE_ID", "template", *id)
                    .await?;
            }
            OpenNebulaVm::Allocate(spec) => {
                self.configured("one.image.info", "IMAGE_ID", "image", spec.image_id)
                    .await?;
                self.configured(
                    "one.vnet.info",
                    "NET_ID",
                    "virtual network",
                    spec.network_id,
                )
                .await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Cloud for OpenNebulaXmlRpcCloud {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn driver(&self) -> &'static str {
        // `scripts/cloud/opennebula`, as for the OCCI driver.
        "opennebula"
    }

    async fn create_node(&self, request: NodeRequest) -> Result<Node, Error> {
        let inner = &self.inner;
        let boot_timeout = inner.settings.boot_timeout;
        let deadline = tokio::time::Instant::now() + boot_timeout;
        let template = inner.create_template(&request).await?;
        let token = request.client_token.clone();
        let abandoned = Abandoned::new(inner.clone(), token.clone());
        let created = match inner.send_create(&template, &request).await {
            Ok(created) => created,
            Err(error) => {
                abandoned.disarm();
                return Err(error);
            }
        };
        let vmid = created.vmid.clone();
        abandoned
            .settle(
                created.vmid.clone(),
                created.ambiguous,
                boot_timeout,
                deadline,
                inner.wait_ready(&vmid),
            )
            .await
    }

    async fn kill_node(&self, vmid: &str) -> Result<(), Error> {
        if vm_param(vmid).is_none() {
            tracing::warn!(cloud = %self.inner.name, vmid, "not an OpenNebula VM id: nothing to delete");
            return Ok(());
        }
        self.inner.delete(vmid).await
    }

    async fn node_state(&self, vmid: &str) -> Result<NodeState, Error> {
        Ok(match self.inner.vm(vmid).await? {
            Some(vm) => vm.node_state(),
            None => NodeState::Gone,
        })
    }

    async fn find_node(&self, client_token: &str) -> Result<Option<String>, Error> {
        Ok(self.inner.find_all(client_token).await?.into_iter().next())
    }

    async fn list_nodes(&self, token_prefix: &str) -> Result<Vec<ListedNode>, Error> {
        self.inner.list_prefixed(token_prefix).await
    }

    async fn probe(&self) -> Result<(), Error> {
        self.inner.probe().await
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use secrecy::SecretString;

    use super::*;
    use crate::cloud::{EndpointUrl, OpenNebulaVmSpec, UrlScheme};

    fn settings(vm: OpenNebulaVm) -> OpenNebulaXmlRpcSettings {
        OpenNebulaXmlRpcSettings::new(
            EndpointUrl::new(UrlScheme::Http, "one.example.org", Some(2633)),
            "/RPC2",
            "conpaas",
            SecretString::from("s3cr3t-pw"),
            vm,
        )
        .boot_timeout(Duration::from_secs(60))
    }

    fn request() -> NodeRequest {
        NodeRequest::new(
            "conpaas-manager-php-u1-s5",
            "#!/bin/sh\necho hi\n",
            "cps-1a2b3c4d-s5",
        )
        .tag("ConPaaS-Director", "1a2b3c4d")
        .tag("ConPaaS-Service", "5")
        .tag("Memory", "1")
        .tag("ConPaaS-Client-Token", "forged")
    }

    #[tokio::test]
    async fn the_allocate_template_carries_script_context_and_labels() {
        let spec = OpenNebulaVmSpec::new(42, 1, "0.5", 1024).vcpu(2);
        let settings =
            settings(OpenNebulaVm::Allocate(spec)).netmask(Ipv4Addr::new(255, 255, 255, 0));
        let cloud = OpenNebulaXmlRpcCloud::new("iaas", &settings).unwrap();
        let template = cloud.inner.create_template(&request()).await.unwrap();
        assert_eq!(
            template,
            "<TEMPLATE><NAME>conpaas-manager-php-u1-s5-cps-1a2b3c4d-s5</NAME><CPU>0.5</CPU>\
             <VCPU>2</VCPU><MEMORY>1024</MEMORY><DISK><IMAGE_ID>42</IMAGE_ID></DISK>\
             <NIC><NETWORK_ID>1</NETWORK_ID></NIC><CONTEXT><NETWORK>YES</NETWORK>\
             <SET_HOSTNAME>$NAME</SET_HOSTNAME>\
             <START_SCRIPT_BASE64>IyEvYmluL3NoCmVjaG8gaGkK</START_SCRIPT_BASE64>\
             <IP_PUBLIC>$NIC[IP]</IP_PUBLIC><NETMASK>255.255.255.0</NETMASK></CONTEXT>\
             <LABELS>conpaas</LABELS><CONPAAS_CLIENT_TOKEN>cps-1a2b3c4d-s5</CONPAAS_CLIENT_TOKEN>\
             <CONPAAS_DIRECTOR>1a2b3c4d</CONPAAS_DIRECTOR><CONPAAS_SERVICE>5</CONPAAS_SERVICE>\
             </TEMPLATE>"
        );
        assert_eq!(cloud.inner.create_method(), "one.vm.allocate");
    }

    #[test]
    fn our_context_replaces_the_templates_variables_of_the_same_name() {
        let cloud =
            OpenNebulaXmlRpcCloud::new("iaas", &settings(OpenNebulaVm::Template(7))).unwrap();
        let context = cloud.inner.context(
            &request(),
            vec![
                ("SSH_PUBLIC_KEY".into(), "$USER[SSH_PUBLIC_KEY]".into()),
                ("network".into(), "NO".into()),
                ("START_SCRIPT".into(), "echo operator".into()),
            ],
        );
        let keys: Vec<&str> = context.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "SSH_PUBLIC_KEY",
                "START_SCRIPT",
                "NETWORK",
                "SET_HOSTNAME",
                "START_SCRIPT_BASE64",
                "IP_PUBLIC"
            ]
        );
        assert_eq!(cloud.inner.create_method(), "one.template.instantiate");
    }

    #[test]
    fn debug_hides_the_password() {
        let cloud =
            OpenNebulaXmlRpcCloud::new("iaas", &settings(OpenNebulaVm::Template(7))).unwrap();
        let debug = format!("{cloud:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("one.example.org"), "{debug}");
    }

    #[tokio::test]
    async fn odd_vm_ids_never_reach_the_server() {
        // Nothing listens at one.example.org: these calls must not try.
        let cloud =
            OpenNebulaXmlRpcCloud::new("iaas", &settings(OpenNebulaVm::Template(7))).unwrap();
        for vmid in ["None", "", "../vm", "1/2", "-1", "99999999999"] {
            cloud.kill_node(vmid).await.unwrap();
            assert_eq!(cloud.node_state(vmid).await.unwrap(), NodeState::Gone);
        }
    }

    #[test]
    fn only_conpaas_tags_become_attributes() {
        assert_eq!(
            tag_attribute("ConPaaS-Service").as_deref(),
            Some("CONPAAS_SERVICE")
        );
        assert_eq!(tag_attribute("Memory"), None);
        assert_eq!(tag_attribute("ConPaaS-Client-Token"), None);
        assert_eq!(vm_param("41"), Some(41));
        assert_eq!(vm_param("4294967296"), None);
    }
}
