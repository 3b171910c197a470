//! The OpenNebula driver: manager VMs through OpenNebula's OCCI 0.x server (`occi-server`,
//! OpenNebula 2.x/3.x), speaking the requests 1.2's libcloud sent (`spec/clouds.md` §7).
//!
//! Creating a VM is `POST /compute`, then `GET /compute/<id>` every
//! [`OpenNebulaTuning::poll_interval`] until the VM is `ACTIVE` with an IP, within the cloud's
//! `BOOT_TIMEOUT`. A VM that fails, ends or times out is deleted before the error is returned,
//! and so is one whose creation is abandoned (the future dropped): no orphans.
//!
//! OCCI has no idempotency token, so the client token is appended to the VM's `NAME`
//! (`conpaas-manager-php-u1-s5-cps-1a2b3c4d-s5`) and also sent as the context variable
//! `CONPAAS_CLIENT_TOKEN`. Listing `/compute` then finds the VM of a start whose answer was
//! lost: before a create is sent again, when the director reconciles after a crash, and for
//! the reaper ([`Cloud::list_nodes`]).
//!
//! OpenNebula 3.8 answers a refused create with **500** and its message: a 500 whose body is
//! plain text is taken for that refusal ([`Error::Refused`], never sent again); any other 5xx
//! (an empty body, an HTML error page) may hide a VM made, and is handled as a lost answer.
//! A delete of a VM already deleted is 500 too on 3.8: it counts as done when the VM then
//! reads as `DONE` or unknown.

mod occi;
mod transport;
mod xmlrpc;

pub use xmlrpc::OpenNebulaXmlRpcCloud;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use rustls_pki_types::CertificateDer;

use super::provider::{Cloud, Error, ListedNode, Node, NodeRequest, NodeState};
use super::settings::OpenNebulaSettings;
use super::tokened::{self, Abandoned, TokenedCloud, name_has_token, token_in_name};
use crate::model::ErrorChain;
use occi::{Compute, ComputeRequest, OcciState};
use transport::{Failure, Transport};

/// How the driver paces its HTTP calls. [`OpenNebulaTuning::standard`] is what the director
/// uses; tests shorten everything with the setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OpenNebulaTuning {
    /// The most one HTTP call may take, connection and answer included.
    pub request_timeout: Duration,
    /// The most establishing a connection may take.
    pub connect_timeout: Duration,
    /// The pause between two `GET /compute/<id>` while a VM boots (1.2: 10 s).
    pub poll_interval: Duration,
    /// How many times one call is tried when the server is unreachable or answers 5xx.
    pub max_attempts: NonZeroU32,
    /// The pause before the first retry; it doubles with every further retry.
    pub backoff_initial: Duration,
    /// The longest pause between two retries.
    pub backoff_max: Duration,
    /// CA certificates trusted for an `https` URL besides the system's (embedders, tests).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl OpenNebulaTuning {
    /// 30 s per call (10 s to connect), a VM polled every 5 s, 4 attempts with pauses of
    /// 0.5 s, 1 s, 2 s (jittered, at most 8 s).
    pub fn standard() -> OpenNebulaTuning {
        OpenNebulaTuning {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(5),
            max_attempts: NonZeroU32::new(4).unwrap_or(NonZeroU32::MIN),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
            extra_roots: Vec::new(),
        }
    }

    setters! {
        request_timeout: Duration,
        connect_timeout: Duration,
        poll_interval: Duration,
        max_attempts: NonZeroU32,
        backoff_initial: Duration,
        backoff_max: Duration,
        extra_roots: Vec<CertificateDer<'static>>,
    }
}

/// A cloud of manager VMs on an OpenNebula OCCI server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OpenNebulaCloud {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    settings: OpenNebulaSettings,
    transport: Transport,
}

/// How `POST /compute` ended.
struct Created {
    vmid: String,
    /// The answer's document, when it could be read.
    first: Option<Compute>,
    /// Whether an attempt may have created a VM we did not get the answer of: then the
    /// token is searched for duplicates once the outcome is known.
    ambiguous: bool,
}

impl OpenNebulaCloud {
    /// The driver of cloud `name` (`iaas` or an `OTHER_CLOUDS` section) with the
    /// [standard](OpenNebulaTuning::standard) timeouts. Does no network IO; for an `https`
    /// URL it reads the system's CA certificates.
    pub fn new(name: impl Into<String>, settings: &OpenNebulaSettings) -> Result<Self, Error> {
        Self::with_tuning(name, settings, OpenNebulaTuning::standard())
    }

    /// [`OpenNebulaCloud::new`] with other timeouts, retries and poll interval.
    pub fn with_tuning(
        name: impl Into<String>,
        settings: &OpenNebulaSettings,
        tuning: OpenNebulaTuning,
    ) -> Result<Self, Error> {
        let name = name.into();
        let transport = Transport::new(
            &name,
            &settings.url,
            &settings.user,
            &settings.password,
            tuning,
        )?;
        Ok(OpenNebulaCloud {
            inner: Arc::new(Inner {
                name,
                settings: settings.clone(),
                transport,
            }),
        })
    }

    /// The `NAME` a VM is created with: the director's name, then the client token, so that
    /// listing `/compute` finds the VM of a token (see [`OpenNebulaCloud::find_node`]).
    pub fn vm_name(request_name: &str, client_token: &str) -> String {
        tokened::name_with_token(request_name, client_token)
    }
}

/// Turns a tag key (`ConPaaS-Service`) into a context variable (`CONPAAS_SERVICE`).
fn context_key(tag: &str) -> String {
    tag.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether a value can go into a context variable as it is: OpenNebula writes each into
/// `context.sh` between double quotes, which the VM sources (the script itself is hex for
/// that reason).
fn is_plain_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/'))
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
    /// The `CONTEXT` of a manager VM: the seven variables of 1.2 (in the order 1.2.0 wrote
    /// them), then the client token and the tags.
    fn context(&self, request: &NodeRequest) -> Vec<(String, String)> {
        let settings = &self.settings;
        let mut context: Vec<(String, String)> = [
            // Lower-case hex: the image's rc.local pipes it through `xxd -r -p` into /bin/sh.
            ("USERDATA", hex::encode(request.user_data.as_bytes())),
            ("TARGET", settings.context_target.clone()),
            ("IP_GATEWAY", settings.gateway.to_string()),
            // Literal: OpenNebula substitutes the VM's name and the IP leased on its NIC.
            ("HOSTNAME", "$NAME".to_owned()),
            ("NETMASK", settings.netmask.to_string()),
            ("IP_PUBLIC", "$NIC[IP]".to_owned()),
            ("NAMESERVER", settings.nameserver.to_string()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        let extra = std::iter::once(("CONPAAS_CLIENT_TOKEN".to_owned(), &request.client_token))
            .chain(
                request
                    .tags
                    .iter()
                    .map(|(key, value)| (context_key(key), value)),
            );
        for (key, value) in extra {
            if value.is_empty()
                || !occi::is_context_name(&key)
                || !is_plain_value(value)
                || context.iter().any(|(taken, _)| *taken == key)
            {
                tracing::debug!(cloud = %self.name, key, "context variable skipped");
                continue;
            }
            context.push((key, value.clone()));
        }
        context
    }

    fn compute_body(&self, request: &NodeRequest) -> String {
        let name = OpenNebulaCloud::vm_name(&request.name, &request.client_token);
        let context = self.context(request);
        occi::compute_body(&ComputeRequest {
            name: &name,
            instance_type: self.settings.instance_type.as_str(),
            os_arch: self.settings.os_arch.as_str(),
            image_id: self.settings.image_id,
            network_id: self.settings.network_id,
            context: &context,
        })
    }

    fn malformed(&self, method: &Method, path: &str, error: occi::ParseError) -> Error {
        Error::Unavailable(format!(
            "{method} {}{path}: unreadable answer: {}",
            self.transport.base(),
            ErrorChain(&error)
        ))
    }

    /// `GET /compute/<id>`; `None` when the server does not know the VM.
    async fn compute(&self, vmid: &str) -> Result<Option<Compute>, Error> {
        let path = format!("/compute/{vmid}");
        let answer = self.transport.call(Method::GET, &path).await?;
        match answer.status {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => occi::parse_compute(&answer.body)
                .map(Some)
                .map_err(|error| self.malformed(&Method::GET, &path, error)),
            _ => Err(self.transport.refusal(&Method::GET, &path, &answer)),
        }
    }

    /// `DELETE /compute/<id>`; a VM the server does not know is already gone. OpenNebula 3.8
    /// refuses to delete a VM already deleted with a 500: the VM is read then, and one that is
    /// `DONE` or unknown counts as deleted.
    async fn delete(&self, vmid: &str) -> Result<(), Error> {
        let path = format!("/compute/{vmid}");
        let answer = self.transport.call(Method::DELETE, &path).await?;
        if answer.status.is_success() || answer.status == StatusCode::NOT_FOUND {
            tracing::info!(cloud = %self.name, vmid, status = answer.status.as_u16(), "VM deleted");
            return Ok(());
        }
        let refused = self.transport.refusal(&Method::DELETE, &path, &answer);
        if !answer.status.is_server_error() {
            return Err(refused);
        }
        match self.compute(vmid).await {
            Ok(None) => {
                tracing::info!(cloud = %self.name, vmid, "VM already deleted (the server no longer knows it)");
                Ok(())
            }
            Ok(Some(compute)) if compute.state == OcciState::Done => {
                tracing::info!(cloud = %self.name, vmid, "VM already deleted (DONE)");
                Ok(())
            }
            Ok(Some(compute)) => {
                tracing::warn!(cloud = %self.name, vmid, state = %compute.state, %refused, "the server refused to delete a VM that still exists");
                Err(refused)
            }
            Err(error) => Err(Error::Unavailable(format!(
                "{refused}; reading the VM to see whether it is deleted failed too: {error}"
            ))),
        }
    }

    /// Every VM not `DONE` whose name carries a client token starting with `prefix`, with
    /// that token and, when the server gives `STIME`, its creation time.
    async fn list_prefixed(&self, prefix: &str) -> Result<Vec<ListedNode>, Error> {
        if prefix.is_empty() {
            return Ok(Vec::new());
        }
        let entries = self.collection().await?;
        let mut listed = Vec::new();
        for entry in entries {
            if let Some(name) = &entry.name
                && token_in_name(name, prefix).is_none()
            {
                continue;
            }
            // The VM's own document: its state (3.8 lists no DONE VMs, 2.x did) and, for a
            // listing without names, the name.
            let Some(compute) = self.compute(&entry.id).await? else {
                continue;
            };
            if compute.state == OcciState::Done {
                continue;
            }
            let Some(token) = compute
                .name
                .as_deref()
                .or(entry.name.as_deref())
                .and_then(|name| token_in_name(name, prefix))
            else {
                continue;
            };
            listed.push(ListedNode::new(compute.id.clone(), token, compute.created));
        }
        Ok(listed)
    }

    /// `GET /compute`.
    async fn collection(&self) -> Result<Vec<occi::CollectionEntry>, Error> {
        let answer = self.transport.call(Method::GET, "/compute").await?;
        if !answer.status.is_success() {
            return Err(self.transport.refusal(&Method::GET, "/compute", &answer));
        }
        occi::parse_collection(&answer.body)
            .map_err(|error| self.malformed(&Method::GET, "/compute", error))
    }

    /// Every VM named with `token` that is not `DONE`, by listing `/compute`.
    async fn find_all(&self, token: &str) -> Result<Vec<String>, Error> {
        if token.is_empty() {
            return Ok(Vec::new());
        }
        let entries = self.collection().await?;
        let mut found = Vec::new();
        for entry in entries {
            if let Some(name) = &entry.name
                && !name_has_token(name, token)
            {
                continue;
            }
            // A listing without names needs each VM's document; one with names needs it only
            // for the candidates, to skip VMs already deleted.
            let Some(compute) = self.compute(&entry.id).await? else {
                continue;
            };
            let named = compute
                .name
                .as_deref()
                .or(entry.name.as_deref())
                .is_some_and(|name| name_has_token(name, token));
            if named && compute.state != OcciState::Done {
                found.push(compute.id);
            }
        }
        Ok(found)
    }

    /// `POST /compute`. Sent again only when the previous attempt certainly did not reach the
    /// server, or when listing shows it created nothing: never a blind second create.
    async fn post_compute(&self, body: &str, token: &str) -> Result<Created, Error> {
        let tuning = self.transport.tuning();
        let attempts = tuning.max_attempts.get();
        let mut ambiguous = false;
        let mut last = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(tuning.backoff(attempt - 1)).await;
            }
            match self
                .transport
                .attempt(Method::POST, "/compute", Some(body))
                .await
            {
                Ok(answer) if answer.status.is_success() => match occi::parse_compute(&answer.body)
                {
                    Ok(compute) => {
                        tracing::info!(cloud = %self.name, vmid = %compute.id, state = %compute.state, "VM created");
                        return Ok(Created {
                            vmid: compute.id.clone(),
                            first: Some(compute),
                            ambiguous,
                        });
                    }
                    Err(error) => {
                        // The server said it created something: find it rather than guess.
                        last = format!(
                            "unreadable answer {}: {}",
                            answer.status,
                            ErrorChain(&error)
                        );
                        ambiguous = true;
                    }
                },
                // A 4xx is a decision about this request: sending it again changes nothing.
                Ok(answer) => {
                    return Err(self.transport.refusal(&Method::POST, "/compute", &answer));
                }
                // OpenNebula 3.x refusing (an instance type not enabled, an image or a quota
                // oned refuses): its message is the answer, and a retry would be a second
                // create. No VM should exist; any the token names is deleted all the same.
                Err(Failure::Said(answer)) => {
                    let refused = self.transport.refusal(&Method::POST, "/compute", &answer);
                    tracing::warn!(cloud = %self.name, attempt, %refused, "VM create refused");
                    if !token.is_empty() {
                        self.sweep(token, None).await;
                    }
                    return Err(refused);
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
            }
            if token.is_empty() {
                // Without a token a lost answer cannot be told from no VM: no retry.
                return Err(self
                    .transport
                    .unavailable(&Method::POST, "/compute", &last, attempt));
            }
            match self.find_all(token).await {
                Ok(found) => {
                    if let Some(vmid) = found.into_iter().next() {
                        tracing::info!(cloud = %self.name, %vmid, "the failed create made a VM: adopting it");
                        return Ok(Created {
                            vmid,
                            first: None,
                            ambiguous: true,
                        });
                    }
                }
                Err(error) => {
                    return Err(Error::Unavailable(format!(
                        "POST {}/compute: {last}; looking for a VM it may have made failed too: {error}",
                        self.transport.base()
                    )));
                }
            }
        }
        Err(self
            .transport
            .unavailable(&Method::POST, "/compute", &last, attempts))
    }

    /// Polls until the VM is `ACTIVE` with an IP. A failed poll is retried until the deadline
    /// (the server may come back while the VM boots); a refusal or a dead VM ends the wait.
    async fn wait_ready(&self, vmid: &str, first: Option<Compute>) -> Result<Node, Error> {
        let poll_interval = self.transport.tuning().poll_interval;
        let mut current = first;
        loop {
            if let Some(compute) = &current {
                if compute.state.is_terminal() {
                    tracing::warn!(cloud = %self.name, vmid, state = %compute.state, "VM failed while booting");
                    return Err(Error::Failed(vmid.to_owned()));
                }
                if compute.state == OcciState::Active
                    && let Some(ip) = &compute.ip
                {
                    // OCCI gives one address; 1.2 used it as the private one too.
                    return Ok(Node::new(vmid, ip.clone(), Some(ip.clone())));
                }
            }
            tokio::time::sleep(poll_interval).await;
            current = match self.compute(vmid).await {
                Ok(Some(compute)) => Some(compute),
                Ok(None) => {
                    tracing::warn!(cloud = %self.name, vmid, "VM vanished while booting");
                    return Err(Error::Failed(vmid.to_owned()));
                }
                Err(Error::Unavailable(text)) => {
                    tracing::warn!(cloud = %self.name, vmid, failure = %text, "cannot read the state of a booting VM");
                    current
                }
                Err(error) => return Err(error),
            };
        }
    }
}

#[async_trait]
impl Cloud for OpenNebulaCloud {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn driver(&self) -> &'static str {
        "opennebula"
    }

    async fn create_node(&self, request: NodeRequest) -> Result<Node, Error> {
        let inner = &self.inner;
        let boot_timeout = inner.settings.boot_timeout;
        let deadline = tokio::time::Instant::now() + boot_timeout;
        let body = inner.compute_body(&request);
        let token = request.client_token.clone();
        let abandoned = Abandoned::new(inner.clone(), token.clone());
        let created = match inner.post_compute(&body, &token).await {
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
                inner.wait_ready(&vmid, created.first),
            )
            .await
    }

    async fn kill_node(&self, vmid: &str) -> Result<(), Error> {
        if !occi::is_vm_id(vmid) {
            // Not an OpenNebula id (1.2 could store "None"): no VM of this cloud to delete.
            tracing::warn!(cloud = %self.inner.name, vmid, "not an OpenNebula VM id: nothing to delete");
            return Ok(());
        }
        self.inner.delete(vmid).await
    }

    async fn node_state(&self, vmid: &str) -> Result<NodeState, Error> {
        if !occi::is_vm_id(vmid) {
            return Ok(NodeState::Gone);
        }
        Ok(match self.inner.compute(vmid).await? {
            Some(compute) => compute.state.node_state(),
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
        self.inner.collection().await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use secrecy::SecretString;

    use super::*;
    use crate::cloud::{EndpointUrl, InstanceType, UrlScheme};

    fn settings() -> OpenNebulaSettings {
        OpenNebulaSettings {
            url: EndpointUrl {
                scheme: UrlScheme::Http,
                host: "occi.example.org".into(),
                port: Some(4567),
            },
            user: "oneadmin".into(),
            password: SecretString::from("pw"),
            image_id: 42,
            instance_type: InstanceType::Small,
            network_id: 1,
            gateway: Ipv4Addr::new(10, 0, 0, 1),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            nameserver: Ipv4Addr::new(8, 8, 8, 8),
            os_arch: "x86_64".into(),
            os_root: "hda".into(),
            disk_target: "hda".into(),
            context_target: "hdc".into(),
            xmlrpc: None,
            boot_timeout: Duration::from_secs(300),
        }
    }

    #[test]
    fn request_body() {
        let cloud = OpenNebulaCloud::new("iaas", &settings()).unwrap();
        let body = cloud.inner.compute_body(
            &NodeRequest::new(
                "conpaas-manager-php-u1-s5",
                "#!/bin/sh\n",
                "cps-1a2b3c4d-s5",
            )
            .tag("ConPaaS-Director", "1a2b3c4d")
            .tag("ConPaaS-Service", "5")
            .tag("USERDATA", "override")
            .tag("ConPaaS-Note", "a \"quoted\" $value"),
        );
        assert_eq!(
            body,
            "<COMPUTE><NAME>conpaas-manager-php-u1-s5-cps-1a2b3c4d-s5</NAME>\
             <INSTANCE_TYPE>small</INSTANCE_TYPE><OS><TYPE arch=\"x86_64\" /></OS>\
             <DISK><STORAGE href=\"/storage/42\" /></DISK><NIC><NETWORK href=\"/network/1\" /></NIC><CONTEXT>\
             <USERDATA>23212f62696e2f73680a</USERDATA><TARGET>hdc</TARGET>\
             <IP_GATEWAY>10.0.0.1</IP_GATEWAY><HOSTNAME>$NAME</HOSTNAME>\
             <NETMASK>255.255.255.0</NETMASK><IP_PUBLIC>$NIC[IP]</IP_PUBLIC>\
             <NAMESERVER>8.8.8.8</NAMESERVER><CONPAAS_CLIENT_TOKEN>cps-1a2b3c4d-s5</CONPAAS_CLIENT_TOKEN>\
             <CONPAAS_DIRECTOR>1a2b3c4d</CONPAAS_DIRECTOR><CONPAAS_SERVICE>5</CONPAAS_SERVICE>\
             </CONTEXT></COMPUTE>"
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let cloud = OpenNebulaCloud::new("iaas", &settings()).unwrap();
        let debug = format!("{cloud:?}");
        assert!(!debug.contains("\"pw\""), "{debug}");
        assert!(!debug.contains(&transport::sha1_hex("pw")), "{debug}");
    }

    #[tokio::test]
    async fn odd_vm_ids_never_reach_the_server() {
        // Nothing listens at occi.example.org: these calls must not try.
        let cloud = OpenNebulaCloud::new("iaas", &settings()).unwrap();
        for vmid in ["None", "", "../compute", "1/2", "3?x=1"] {
            cloud.kill_node(vmid).await.unwrap();
            assert_eq!(cloud.node_state(vmid).await.unwrap(), NodeState::Gone);
        }
    }

    #[test]
    fn https_builds_with_system_roots() {
        let mut https = settings();
        https.url.scheme = UrlScheme::Https;
        https.url.port = None;
        OpenNebulaCloud::new("one2", &https).unwrap();
    }
}
