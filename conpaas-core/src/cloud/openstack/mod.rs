//! The OpenStack driver: manager VMs through OpenStack's own APIs, Keystone v3 (a password
//! or an application credential), Nova v2.1 and Neutron v2.0 (and Glance v2 to find an image
//! by name). ConPaaS 1.2 reached OpenStack through Nova's EC2-compatible API, which OpenStack
//! removed after Liberty; this is the driver for the clouds of today.
//!
//! **Why a client of its own.** The driver needs a dozen calls: a token, `POST /servers`,
//! `GET /servers/{id}`, `GET /servers/detail`, `DELETE /servers/{id}`, flavor, image and
//! network look-ups and three floating-IP calls. The `openstack` crate (osauth) waits and
//! retries in its own way, with `serde_yaml`, `waiter` and `log` besides, and has seen few
//! releases; `openstack_sdk` is generated from the services' OpenAPI documents, complete and
//! maintained, but pulls reqwest 0.13 beside our 0.12, `config`, `dialoguer`, `dirs`, `open`,
//! hyper with every feature, `postcard` and its per-service crates: several dozen crates for
//! embedders, and its retries would stand between the driver and what it must decide itself
//! (whether a lost create answer made a server). The JSON is small and stable, so the driver
//! speaks it with reqwest and serde_json, which the crate has already.
//!
//! **Creating a server.** `POST /servers` with the server's `name` carrying the client token
//! (`conpaas-manager-php-u1-s5-cps-1a2b3c4d-s5`, as the OpenNebula driver names its VMs), the
//! token also in `metadata` (`conpaas_client_token`) with the request's tags, `imageRef`,
//! `flavorRef`, `networks: [{uuid}]`, `user_data` (base64, at most 65535 bytes: Nova's
//! limit), `key_name` and `security_groups`. Then `GET /servers/{id}` every
//! [`OpenStackTuning::poll_interval`] until `ACTIVE` with a fixed address. With a
//! `FLOATING_IP_POOL` the driver then allocates a Neutron floating IP on the server's port
//! (`POST /v2.0/floatingips`), described as `conpaas-rs server <id> <token>` so that it is
//! found again and released with the server. All within `BOOT_TIMEOUT`.
//!
//! **Finding servers again.** Nova's `name` filter (a regular expression) narrows
//! `GET /servers/detail`, and the driver keeps only the servers whose name ends in the token
//! *and* whose metadata holds it: before a create is sent again after a lost answer, when the
//! director reconciles after a crash ([`Cloud::find_node`]) and for the reaper
//! ([`Cloud::list_nodes`]). Server tags would do the same, but tags at create need
//! microversion 2.52 (Pike); names and metadata work with every Nova since Liberty at 2.1,
//! the microversion the driver sends.
//!
//! **No orphans.** Refusals (4xx: quota exceeded is 403, a bad flavor 400) are never sent
//! again. A create whose answer was lost (a timeout, a 5xx) is searched for by its token
//! before any resend, and duplicates are deleted once the outcome is known. A server that
//! fails (`ERROR`), times out, or whose floating IP cannot be had is deleted, its floating
//! IP released, before the error returns; a create whose future is dropped does the same
//! from a task of its own. Deleting a server first releases the floating IPs the driver
//! allocated for it (they cost money and outlive the server).

mod api;
mod session;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::{Method, StatusCode};
use rustls_pki_types::CertificateDer;
use serde_json::{Map, Value, json};

use super::openstack_settings::OpenStackSettings;
use super::provider::{Cloud, Error, ListedNode, Node, NodeRequest, NodeState};
use super::tokened::{self, Abandoned, TokenedCloud, name_has_token, token_in_name};
use crate::model::ErrorChain;
use api::{FloatingIp, Named, Network, Server, Status};
use session::{Answer, Failure, Service, Session};

/// The most bytes of base64 user data Nova accepts (its API schema: 65535).
pub const NOVA_USER_DATA_LIMIT: usize = 65_535;

/// The metadata key holding the client token.
const TOKEN_METADATA_KEY: &str = "conpaas_client_token";

/// How the description of a floating IP the driver allocated starts.
const FLOATING_IP_MARK: &str = "conpaas-rs server";

/// The most pages of a listing followed (a thousand servers each).
const MAX_PAGES: usize = 100;

/// How the driver paces its HTTP calls. [`OpenStackTuning::standard`] is what the director
/// uses; tests shorten everything with the setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OpenStackTuning {
    /// The most one HTTP call may take, connection and answer included.
    pub request_timeout: Duration,
    /// The most establishing a connection may take.
    pub connect_timeout: Duration,
    /// The pause between two `GET /servers/{id}` while a server builds.
    pub poll_interval: Duration,
    /// How many times one call is tried when the service is unreachable or answers 5xx.
    pub max_attempts: NonZeroU32,
    /// The pause before the first retry; it doubles with every further retry.
    pub backoff_initial: Duration,
    /// The longest pause between two retries.
    pub backoff_max: Duration,
    /// CA certificates trusted for `https` endpoints besides the system's (embedders, tests).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl OpenStackTuning {
    /// 30 s per call (10 s to connect), a server polled every 5 s, 4 attempts with pauses of
    /// 0.5 s, 1 s, 2 s (jittered, at most 8 s).
    pub fn standard() -> OpenStackTuning {
        OpenStackTuning {
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

    /// The pause before retry number `retry` (1 = the first retry): doubling from
    /// `backoff_initial`, capped at `backoff_max`, the upper half jittered.
    fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1).min(16))
            .unwrap_or(u32::MAX);
        let full = self
            .backoff_initial
            .saturating_mul(factor)
            .min(self.backoff_max);
        let half = full / 2;
        let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = if jitter_nanos == 0 {
            0
        } else {
            rand::Rng::gen_range(&mut rand::thread_rng(), 0..=jitter_nanos)
        };
        half + Duration::from_nanos(jitter)
    }
}

/// A cloud of manager VMs on OpenStack. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OpenStackCloud {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    settings: OpenStackSettings,
    session: Session,
}

/// What the section's names resolve to on the cloud.
#[derive(Debug, Clone)]
struct Resolved {
    image_id: String,
    flavor_id: String,
    network: Network,
    pool: Option<Network>,
}

/// How `POST /servers` ended.
struct Created {
    vmid: String,
    /// Whether an attempt may have created a server we did not get the answer of: then the
    /// token is searched for duplicates once the outcome is known.
    ambiguous: bool,
}

impl OpenStackCloud {
    /// The driver of cloud `name` (`iaas` or an `OTHER_CLOUDS` section) with the
    /// [standard](OpenStackTuning::standard) timeouts. Does no network IO; for an `https`
    /// Keystone it reads the system's CA certificates.
    pub fn new(name: impl Into<String>, settings: &OpenStackSettings) -> Result<Self, Error> {
        Self::with_tuning(name, settings, OpenStackTuning::standard())
    }

    /// [`OpenStackCloud::new`] with other timeouts, retries and poll interval.
    pub fn with_tuning(
        name: impl Into<String>,
        settings: &OpenStackSettings,
        tuning: OpenStackTuning,
    ) -> Result<Self, Error> {
        let name = name.into();
        let session = Session::new(&name, settings, tuning)?;
        Ok(OpenStackCloud {
            inner: Arc::new(Inner {
                name,
                settings: settings.clone(),
                session,
            }),
        })
    }

    /// The `name` a server is created with: the director's name, then the client token, so
    /// that Nova's name filter finds the server of a token.
    pub fn server_name(request_name: &str, client_token: &str) -> String {
        tokened::name_with_token(request_name, client_token)
    }
}

/// Whether Nova takes `key` as a metadata key (its schema: 1 to 255 of these characters).
fn is_metadata_key(key: &str) -> bool {
    (1..=255).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.' | b' '))
}

/// The description of a floating IP allocated for `server_id`.
fn floating_ip_description(server_id: &str, token: &str) -> String {
    format!("{FLOATING_IP_MARK} {server_id} {token}")
}

/// Whether a floating IP's description says the driver allocated it for `server_id`.
fn described_for(floating_ip: &FloatingIp, server_id: &str) -> bool {
    floating_ip
        .description
        .as_deref()
        .and_then(|text| text.strip_prefix(FLOATING_IP_MARK))
        .and_then(|rest| rest.split_whitespace().next())
        .is_some_and(|id| id == server_id)
}

impl TokenedCloud for Inner {
    const WHAT: &'static str = "server";

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
    /// The body of `POST /servers`. It holds the boot script (and so the manager's private
    /// key): never logged.
    fn server_body(&self, request: &NodeRequest, resolved: &Resolved, user_data: String) -> Value {
        let settings = &self.settings;
        let mut metadata = Map::new();
        let token = &request.client_token;
        if !token.is_empty() {
            metadata.insert(TOKEN_METADATA_KEY.into(), Value::String(token.clone()));
        }
        for (key, value) in &request.tags {
            if !is_metadata_key(key) || value.len() > 255 || metadata.contains_key(key) {
                tracing::debug!(cloud = %self.name, key, "metadata item skipped");
                continue;
            }
            metadata.insert(key.clone(), Value::String(value.clone()));
        }
        let mut server = json!({
            "name": OpenStackCloud::server_name(&request.name, token),
            "imageRef": resolved.image_id,
            "flavorRef": resolved.flavor_id,
            "networks": [{ "uuid": resolved.network.id }],
            "user_data": user_data,
            "metadata": metadata,
        });
        if let Some(object) = server.as_object_mut() {
            if let Some(key_name) = &settings.key_name {
                object.insert("key_name".into(), json!(key_name));
            }
            if let Some(group) = &settings.security_group_name {
                object.insert("security_groups".into(), json!([{ "name": group }]));
            }
        }
        json!({ "server": server })
    }

    fn malformed(&self, what: &str, error: impl std::fmt::Display) -> Error {
        Error::Unavailable(format!("{what}: unreadable answer: {error}"))
    }

    /// A GET answered 200 with `key` holding a `T`; `None` on 404.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        service: Service,
        path: &str,
        key: &str,
    ) -> Result<Option<T>, Error> {
        let answer = self.session.call(service, Method::GET, path, None).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(self.session.refusal(&Method::GET, path, &answer));
        }
        let mut document = answer.json(path)?;
        let value = document
            .get_mut(key)
            .map(Value::take)
            .unwrap_or(Value::Null);
        serde_json::from_value(value)
            .map(Some)
            .map_err(|error| self.malformed(path, error))
    }

    /// The image `IMAGE_ID` names: an id Glance knows, or the one active image of that name.
    /// Without Glance in the catalog the value goes to Nova as it is.
    async fn resolve_image(&self) -> Result<String, Error> {
        let wanted = &self.settings.image;
        if self.session.endpoint(Service::Image).await?.is_none() {
            return Ok(wanted.clone());
        }
        if api::is_uuid(wanted) {
            let path = format!("/images/{}", api::encode(wanted));
            let answer = self
                .session
                .call(Service::Image, Method::GET, &path, None)
                .await?;
            if answer.status.is_success() {
                let image: Named = serde_json::from_str(&answer.body)
                    .map_err(|error| self.malformed(&path, error))?;
                return Ok(image.id);
            }
            if answer.status != StatusCode::NOT_FOUND {
                return Err(self.session.refusal(&Method::GET, &path, &answer));
            }
        }
        let path = format!("/images?name={}", api::encode(wanted));
        let images: Vec<Named> = self
            .get(Service::Image, &path, "images")
            .await?
            .unwrap_or_default();
        let active: Vec<&Named> = images
            .iter()
            .filter(|image| {
                image
                    .status
                    .as_deref()
                    .is_none_or(|status| status == "active")
            })
            .collect();
        match active.as_slice() {
            [image] => Ok(image.id.clone()),
            [] if images.is_empty() => Err(misconfigured(
                "IMAGE_ID",
                format!("image {wanted} does not exist"),
            )),
            [] => Err(misconfigured(
                "IMAGE_ID",
                format!("image {wanted} is not active"),
            )),
            several => Err(misconfigured(
                "IMAGE_ID",
                format!(
                    "{} images are named {wanted}: write the id of one",
                    several.len()
                ),
            )),
        }
    }

    /// The flavor `SIZE_ID` names: an id, else the one flavor of that name.
    async fn resolve_flavor(&self) -> Result<String, Error> {
        let wanted = &self.settings.flavor;
        let by_id: Option<Named> = self
            .get(
                Service::Compute,
                &format!("/flavors/{}", api::encode(wanted)),
                "flavor",
            )
            .await?;
        if let Some(flavor) = by_id {
            return Ok(flavor.id);
        }
        let flavors: Vec<Named> = self
            .get(Service::Compute, "/flavors/detail?limit=1000", "flavors")
            .await?
            .unwrap_or_default();
        let named: Vec<&Named> = flavors
            .iter()
            .filter(|flavor| flavor.name.as_deref() == Some(wanted.as_str()))
            .collect();
        match named.as_slice() {
            [flavor] => Ok(flavor.id.clone()),
            [] => Err(misconfigured(
                "SIZE_ID",
                format!("flavor {wanted} does not exist"),
            )),
            several => Err(misconfigured(
                "SIZE_ID",
                format!(
                    "{} flavors are named {wanted}: write the id of one",
                    several.len()
                ),
            )),
        }
    }

    /// The network `wanted` names (id or name) for `key`.
    async fn network_named(&self, key: &str, wanted: &str) -> Result<Network, Error> {
        if api::is_uuid(wanted) {
            let path = format!("/networks/{}", api::encode(wanted));
            if let Some(network) = self.get(Service::Network, &path, "network").await? {
                return Ok(network);
            }
        }
        let path = format!("/networks?name={}", api::encode(wanted));
        let networks: Vec<Network> = self
            .get(Service::Network, &path, "networks")
            .await?
            .unwrap_or_default();
        match <[Network; 1]>::try_from(networks) {
            Ok([network]) => Ok(network),
            Err(networks) if networks.is_empty() => Err(misconfigured(
                key,
                format!("network {wanted} does not exist"),
            )),
            Err(networks) => Err(misconfigured(
                key,
                format!(
                    "{} networks are named {wanted}: write the id of one",
                    networks.len()
                ),
            )),
        }
    }

    /// The manager's network: `NETWORK_ID`, or the one network the project sees that is not
    /// external (the one network at all, when it is).
    async fn resolve_network(&self) -> Result<Network, Error> {
        if let Some(wanted) = &self.settings.network {
            return self.network_named("NETWORK_ID", wanted).await;
        }
        let networks: Vec<Network> = self
            .get(Service::Network, "/networks", "networks")
            .await?
            .unwrap_or_default();
        let internal: Vec<&Network> = networks
            .iter()
            .filter(|network| !network.external)
            .collect();
        let only = match (internal.as_slice(), networks.as_slice()) {
            ([network], _) => Some((*network).clone()),
            ([], [network]) => Some(network.clone()),
            _ => None,
        };
        only.ok_or_else(|| {
            let names: Vec<&str> = networks
                .iter()
                .map(|network| network.name.as_str())
                .take(10)
                .collect();
            misconfigured(
                "NETWORK_ID",
                format!(
                    "not set, and the project sees {} networks ({}): name the managers' network",
                    networks.len(),
                    names.join(", ")
                ),
            )
        })
    }

    /// `FLOATING_IP_POOL`: an external network.
    async fn resolve_pool(&self) -> Result<Option<Network>, Error> {
        let Some(wanted) = &self.settings.floating_ip_pool else {
            return Ok(None);
        };
        let network = self.network_named("FLOATING_IP_POOL", wanted).await?;
        if !network.external {
            return Err(misconfigured(
                "FLOATING_IP_POOL",
                format!(
                    "network {wanted} is not external: floating IPs come from an external network"
                ),
            ));
        }
        Ok(Some(network))
    }

    async fn resolve(&self) -> Result<Resolved, Error> {
        Ok(Resolved {
            image_id: self.resolve_image().await?,
            flavor_id: self.resolve_flavor().await?,
            network: self.resolve_network().await?,
            pool: self.resolve_pool().await?,
        })
    }

    /// `GET /servers/{id}`; `None` when Nova does not know the server.
    async fn server(&self, vmid: &str) -> Result<Option<Server>, Error> {
        self.get(
            Service::Compute,
            &format!("/servers/{}", api::encode(vmid)),
            "server",
        )
        .await
    }

    /// `GET /servers/detail` narrowed by Nova's `name` regex, every page.
    async fn servers_named(&self, pattern: &str) -> Result<Vec<Server>, Error> {
        let mut servers: Vec<Server> = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut path = format!("/servers/detail?name={}&limit=1000", api::encode(pattern));
            if let Some(marker) = &marker {
                path.push_str(&format!("&marker={}", api::encode(marker)));
            }
            let answer = self
                .session
                .call(Service::Compute, Method::GET, &path, None)
                .await?;
            if !answer.status.is_success() {
                return Err(self.session.refusal(&Method::GET, &path, &answer));
            }
            let document = answer.json(&path)?;
            let page: Vec<Server> =
                serde_json::from_value(document.get("servers").cloned().unwrap_or(Value::Null))
                    .map_err(|error| self.malformed(&path, error))?;
            let next = document
                .get("servers_links")
                .and_then(Value::as_array)
                .is_some_and(|links| {
                    links
                        .iter()
                        .any(|link| link.get("rel").and_then(Value::as_str) == Some("next"))
                });
            let last = page.last().map(|server| server.id.clone());
            servers.extend(page);
            match (next, last) {
                (true, Some(last)) if marker.as_ref() != Some(&last) => marker = Some(last),
                _ => return Ok(servers),
            }
        }
        Err(Error::Unavailable(format!(
            "GET /servers/detail: more than {MAX_PAGES} pages"
        )))
    }

    /// Every server not deleted that carries `token` in its name and its metadata.
    async fn find_all(&self, token: &str) -> Result<Vec<String>, Error> {
        if token.is_empty() {
            return Ok(Vec::new());
        }
        let pattern = format!("{}$", api::regex_escape(token));
        Ok(self
            .servers_named(&pattern)
            .await?
            .into_iter()
            .filter(|server| {
                server.status() != Status::Deleted
                    && name_has_token(&server.name, token)
                    && server.metadata(TOKEN_METADATA_KEY) == Some(token)
            })
            .map(|server| server.id)
            .collect())
    }

    /// Every server not deleted whose name and metadata carry a token starting with `prefix`.
    async fn list_prefixed(&self, prefix: &str) -> Result<Vec<ListedNode>, Error> {
        if prefix.is_empty() {
            return Ok(Vec::new());
        }
        let servers = self.servers_named(&api::regex_escape(prefix)).await?;
        Ok(servers
            .into_iter()
            .filter(|server| server.status() != Status::Deleted)
            .filter_map(|server| {
                let token = token_in_name(&server.name, prefix)?;
                if server.metadata(TOKEN_METADATA_KEY) != Some(token) {
                    return None;
                }
                let created = server.created.as_deref().and_then(api::parse_time);
                Some(ListedNode::new(server.id.clone(), token, created))
            })
            .collect())
    }

    /// `POST /servers`. Sent again only when the previous attempt certainly did not reach
    /// Nova, or when listing shows it created nothing: never a blind second create.
    async fn post_server(&self, body: &Value, token: &str) -> Result<Created, Error> {
        let tuning = self.session.tuning();
        let attempts = tuning.max_attempts.get();
        let mut ambiguous = false;
        let mut last = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(tuning.backoff(attempt - 1)).await;
            }
            match self
                .session
                .attempt(Service::Compute, Method::POST, "/servers", Some(body))
                .await
            {
                Ok(answer) if answer.status.is_success() => {
                    match answer
                        .json("POST /servers")
                        .ok()
                        .and_then(|document| document.pointer("/server/id").cloned())
                        .and_then(|id| id.as_str().map(str::to_owned))
                    {
                        Some(vmid) => {
                            tracing::info!(cloud = %self.name, %vmid, "server created");
                            return Ok(Created { vmid, ambiguous });
                        }
                        None => {
                            // Nova said it created something: find it rather than guess.
                            last = format!("POST /servers: {} without a server id", answer.status);
                            ambiguous = true;
                        }
                    }
                }
                // A 4xx is a decision about this request (quota exceeded, a flavor too small
                // for the image): sending it again changes nothing.
                Ok(answer) => {
                    let refused = self.session.refusal(&Method::POST, "/servers", &answer);
                    tracing::warn!(cloud = %self.name, attempt, %refused, "server create refused");
                    if ambiguous {
                        self.sweep(token, None).await;
                    }
                    return Err(refused);
                }
                Err(Failure::Final(error)) => {
                    if ambiguous {
                        self.sweep(token, None).await;
                    }
                    return Err(error);
                }
                Err(Failure::NotSent(text)) => {
                    tracing::info!(cloud = %self.name, attempt, attempts, failure = %text, "server create not sent, retrying if attempts remain");
                    last = text;
                    continue;
                }
                Err(Failure::MaybeDone(text)) => {
                    tracing::info!(cloud = %self.name, attempt, attempts, failure = %text, "server create failed, looking for the server before any retry");
                    last = text;
                    ambiguous = true;
                }
            }
            if token.is_empty() {
                // Without a token a lost answer cannot be told from no server: no retry.
                return Err(session::unavailable(&last, attempt));
            }
            match self.find_all(token).await {
                Ok(found) => {
                    if let Some(vmid) = found.into_iter().next() {
                        tracing::info!(cloud = %self.name, %vmid, "the failed create made a server: adopting it");
                        return Ok(Created {
                            vmid,
                            ambiguous: true,
                        });
                    }
                }
                Err(error) => {
                    return Err(Error::Unavailable(format!(
                        "{last}; looking for a server it may have made failed too: {error}"
                    )));
                }
            }
        }
        Err(session::unavailable(&last, attempts))
    }

    /// Polls until the server is `ACTIVE` with a fixed address. A failed poll is retried
    /// until the deadline; a refusal or a dead server ends the wait.
    async fn wait_active(&self, vmid: &str, network: &Network) -> Result<Server, Error> {
        let poll_interval = self.session.tuning().poll_interval;
        loop {
            match self.server(vmid).await {
                Ok(Some(server)) => match server.status() {
                    Status::Active if server.fixed_ipv4(Some(&network.name)).is_some() => {
                        return Ok(server);
                    }
                    Status::Dead | Status::Deleted => {
                        let fault = server.fault.as_ref().map(|fault| fault.message.as_str());
                        tracing::warn!(cloud = %self.name, vmid, status = %server.status, fault, "server failed while booting");
                        return Err(Error::Failed(vmid.to_owned()));
                    }
                    Status::Active | Status::Transient => {}
                },
                Ok(None) => {
                    tracing::warn!(cloud = %self.name, vmid, "server vanished while booting");
                    return Err(Error::Failed(vmid.to_owned()));
                }
                Err(Error::Unavailable(text)) => {
                    tracing::warn!(cloud = %self.name, vmid, failure = %text, "cannot read the state of a booting server");
                }
                Err(error) => return Err(error),
            }
            tokio::time::sleep(poll_interval).await;
        }
    }

    /// The floating IPs of the project that the driver allocated for `server_id`.
    async fn floating_ips_of(&self, server_id: &str) -> Result<Vec<FloatingIp>, Error> {
        let floating_ips: Vec<FloatingIp> = self
            .get(Service::Network, "/floatingips", "floatingips")
            .await?
            .unwrap_or_default();
        Ok(floating_ips
            .into_iter()
            .filter(|floating_ip| described_for(floating_ip, server_id))
            .collect())
    }

    /// Allocates a floating IP from `pool` on the server's port on `network`; answers its
    /// address. A lost answer is resolved by looking for the description before a resend.
    async fn attach_floating_ip(
        &self,
        server_id: &str,
        token: &str,
        network: &Network,
        pool: &Network,
    ) -> Result<String, Error> {
        let path = format!(
            "/ports?device_id={}&network_id={}",
            api::encode(server_id),
            api::encode(&network.id)
        );
        let ports: Vec<api::Port> = self
            .get(Service::Network, &path, "ports")
            .await?
            .unwrap_or_default();
        let Some(port) = ports.first() else {
            tracing::warn!(cloud = %self.name, vmid = server_id, network = %network.id, "the server has no port on its network");
            return Err(Error::Failed(server_id.to_owned()));
        };
        let body = json!({ "floatingip": {
            "floating_network_id": pool.id,
            "port_id": port.id,
            "description": floating_ip_description(server_id, token),
        }});
        let tuning = self.session.tuning();
        let attempts = tuning.max_attempts.get();
        let mut last = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(tuning.backoff(attempt - 1)).await;
            }
            match self
                .session
                .attempt(Service::Network, Method::POST, "/floatingips", Some(&body))
                .await
            {
                Ok(answer) if answer.status.is_success() => {
                    let floating_ip: FloatingIp = answer
                        .json("POST /floatingips")?
                        .get_mut("floatingip")
                        .map(Value::take)
                        .and_then(|value| serde_json::from_value(value).ok())
                        .ok_or_else(|| self.malformed("POST /floatingips", "no floatingip"))?;
                    tracing::info!(cloud = %self.name, vmid = server_id, address = %floating_ip.floating_ip_address, "floating IP allocated");
                    return Ok(floating_ip.floating_ip_address);
                }
                // Neutron's refusals: 409 OverQuota, 400 ExternalIpAddressExhausted...
                Ok(answer) => {
                    return Err(self.session.refusal(&Method::POST, "/floatingips", &answer));
                }
                Err(Failure::Final(error)) => return Err(error),
                Err(Failure::NotSent(text)) => {
                    last = text;
                    continue;
                }
                Err(Failure::MaybeDone(text)) => {
                    tracing::info!(cloud = %self.name, attempt, attempts, failure = %text, "floating IP allocation failed, looking for it before any retry");
                    last = text;
                }
            }
            if let Some(found) = self.floating_ips_of(server_id).await?.into_iter().next() {
                tracing::info!(cloud = %self.name, vmid = server_id, address = %found.floating_ip_address, "the failed allocation made a floating IP: adopting it");
                return Ok(found.floating_ip_address);
            }
        }
        Err(session::unavailable(&last, attempts))
    }

    /// Releases the floating IPs the driver allocated for `server_id`.
    async fn release_floating_ips(&self, server_id: &str) -> Result<(), Error> {
        if self.session.endpoint(Service::Network).await?.is_none() {
            return Ok(());
        }
        for floating_ip in self.floating_ips_of(server_id).await? {
            let path = format!("/floatingips/{}", api::encode(&floating_ip.id));
            let answer = self
                .session
                .call(Service::Network, Method::DELETE, &path, None)
                .await?;
            if !(answer.status.is_success() || answer.status == StatusCode::NOT_FOUND) {
                return Err(self.session.refusal(&Method::DELETE, &path, &answer));
            }
            tracing::info!(cloud = %self.name, vmid = server_id, address = %floating_ip.floating_ip_address, "floating IP released");
        }
        Ok(())
    }

    /// Deletes a server and the floating IPs allocated for it; a server Nova does not know is
    /// deleted already. The floating IPs go first: they outlive the server otherwise.
    async fn delete(&self, vmid: &str) -> Result<(), Error> {
        match self.release_floating_ips(vmid).await {
            Ok(()) => {}
            // A cloud used without floating IPs must not keep its servers because Neutron
            // does not answer; one that allocates them must (a floating IP costs money).
            Err(error) if self.settings.floating_ip_pool.is_none() => {
                tracing::warn!(cloud = %self.name, vmid, error = %ErrorChain(&error), "cannot look for floating IPs of the server");
            }
            Err(error) => return Err(error),
        }
        let path = format!("/servers/{}", api::encode(vmid));
        let answer: Answer = self
            .session
            .call(Service::Compute, Method::DELETE, &path, None)
            .await?;
        if answer.status.is_success() || answer.status == StatusCode::NOT_FOUND {
            tracing::info!(cloud = %self.name, vmid, status = answer.status.as_u16(), "server deleted");
            return Ok(());
        }
        Err(self.session.refusal(&Method::DELETE, &path, &answer))
    }

    /// After `POST /servers`: waits for the server, then gives it its floating IP.
    async fn boot(&self, vmid: &str, token: &str, resolved: &Resolved) -> Result<Node, Error> {
        let server = self.wait_active(vmid, &resolved.network).await?;
        let Some(fixed) = server.fixed_ipv4(Some(&resolved.network.name)) else {
            return Err(Error::Failed(vmid.to_owned()));
        };
        let public = match &resolved.pool {
            Some(pool) => {
                self.attach_floating_ip(vmid, token, &resolved.network, pool)
                    .await?
            }
            // A cloud that gives servers a floating address of its own: that one is public.
            None => server.floating_ipv4().unwrap_or_else(|| fixed.clone()),
        };
        Ok(Node::new(vmid, public, Some(fixed)))
    }
}

fn misconfigured(key: &str, message: String) -> Error {
    Error::Misconfigured {
        key: key.to_owned(),
        message,
    }
}

#[async_trait]
impl Cloud for OpenStackCloud {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn driver(&self) -> &'static str {
        "openstack"
    }

    async fn create_node(&self, request: NodeRequest) -> Result<Node, Error> {
        let inner = &self.inner;
        let user_data =
            base64::engine::general_purpose::STANDARD.encode(request.user_data.as_bytes());
        if user_data.len() > NOVA_USER_DATA_LIMIT {
            return Err(Error::Refused {
                code: "UserDataTooLarge".into(),
                message: format!(
                    "the boot script is {} bytes, {} in base64: Nova accepts at most {} bytes \
                     of base64 user data",
                    request.user_data.len(),
                    user_data.len(),
                    NOVA_USER_DATA_LIMIT
                ),
            });
        }
        let boot_timeout = inner.settings.boot_timeout;
        let resolved = inner.resolve().await?;
        let body = inner.server_body(&request, &resolved, user_data);
        let token = request.client_token.clone();
        let deadline = tokio::time::Instant::now() + boot_timeout;
        let abandoned = Abandoned::new(inner.clone(), token.clone());
        let created = match inner.post_server(&body, &token).await {
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
                inner.boot(&vmid, &token, &resolved),
            )
            .await
    }

    async fn kill_node(&self, vmid: &str) -> Result<(), Error> {
        if !api::is_uuid(vmid) {
            // Not a Nova id (1.2 could store "None"): no server of this cloud to delete.
            tracing::warn!(cloud = %self.inner.name, vmid, "not a Nova server id: nothing to delete");
            return Ok(());
        }
        self.inner.delete(vmid).await
    }

    async fn node_state(&self, vmid: &str) -> Result<NodeState, Error> {
        if !api::is_uuid(vmid) {
            return Ok(NodeState::Gone);
        }
        Ok(match self.inner.server(vmid).await? {
            Some(server) => server.node_state(),
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
        let inner = &self.inner;
        inner.session.check_token().await?;
        if inner.session.endpoint(Service::Compute).await?.is_none() {
            return Err(misconfigured(
                if inner.settings.region_name.is_some() {
                    "REGION_NAME"
                } else {
                    "AUTH_URL"
                },
                format!(
                    "the catalog of the token has no {} compute endpoint",
                    inner.settings.interface
                ),
            ));
        }
        inner.resolve_image().await?;
        inner.resolve_flavor().await?;
        inner.resolve_network().await?;
        inner.resolve_pool().await?;
        if let Some(key_name) = &inner.settings.key_name {
            let path = format!("/os-keypairs/{}", api::encode(key_name));
            let keypair: Option<Value> = inner.get(Service::Compute, &path, "keypair").await?;
            if keypair.is_none() {
                return Err(misconfigured(
                    "KEY_NAME",
                    format!("key pair {key_name} does not exist"),
                ));
            }
        }
        if let Some(group) = &inner.settings.security_group_name {
            let path = format!("/security-groups?name={}", api::encode(group));
            let groups: Vec<Value> = inner
                .get(Service::Network, &path, "security_groups")
                .await?
                .unwrap_or_default();
            if groups.is_empty() {
                return Err(misconfigured(
                    "SECURITY_GROUP_NAME",
                    format!("security group {group} does not exist"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::cloud::openstack_settings::{
        OpenStackCredential, OpenStackPassword, OpenStackProject,
    };

    fn settings() -> OpenStackSettings {
        OpenStackSettings::new(
            "http://keystone.example.org:5000",
            OpenStackCredential::Password(OpenStackPassword::new(
                "alice",
                SecretString::from("pa55-word"),
                OpenStackProject::Name("conpaas".into()),
            )),
            "ubuntu",
            "m1.small",
        )
        .key_name("conpaas")
        .security_group_name("managers")
    }

    #[test]
    fn request_body() {
        let cloud = OpenStackCloud::new("iaas", &settings()).unwrap();
        let resolved = Resolved {
            image_id: "img-1".into(),
            flavor_id: "2".into(),
            network: Network {
                id: "net-1".into(),
                name: "private".into(),
                external: false,
            },
            pool: None,
        };
        let request = NodeRequest::new(
            "conpaas-manager-php-u1-s5",
            "#!/bin/sh\n",
            "cps-1a2b3c4d-s5",
        )
        .tag("ConPaaS-Director", "1a2b3c4d")
        .tag("ConPaaS-Service", "5")
        .tag("bad/key", "skipped")
        .tag("ConPaaS-Long", "x".repeat(256));
        let body = cloud
            .inner
            .server_body(&request, &resolved, "IyEvYmluL3NoCg==".into());
        assert_eq!(
            body,
            json!({"server": {
                "name": "conpaas-manager-php-u1-s5-cps-1a2b3c4d-s5",
                "imageRef": "img-1",
                "flavorRef": "2",
                "networks": [{"uuid": "net-1"}],
                "user_data": "IyEvYmluL3NoCg==",
                "metadata": {
                    "conpaas_client_token": "cps-1a2b3c4d-s5",
                    "ConPaaS-Director": "1a2b3c4d",
                    "ConPaaS-Service": "5",
                },
                "key_name": "conpaas",
                "security_groups": [{"name": "managers"}],
            }})
        );
    }

    #[test]
    fn floating_ip_descriptions_name_their_server() {
        let description =
            floating_ip_description("7b1b2a4e-3f0e-4a56-9d1c-0a1b2c3d4e5f", "cps-1-s5");
        let floating_ip = |description: Option<&str>| FloatingIp {
            id: "f".into(),
            floating_ip_address: "172.24.4.10".into(),
            description: description.map(str::to_owned),
        };
        assert!(described_for(
            &floating_ip(Some(&description)),
            "7b1b2a4e-3f0e-4a56-9d1c-0a1b2c3d4e5f"
        ));
        assert!(!described_for(
            &floating_ip(Some(&description)),
            "7b1b2a4e-3f0e-4a56-9d1c-0a1b2c3d4e50"
        ));
        assert!(!described_for(&floating_ip(Some("someone's")), "7b1b2a4e"));
        assert!(!described_for(&floating_ip(None), "7b1b2a4e"));
    }

    #[test]
    fn debug_hides_the_secrets() {
        let cloud = OpenStackCloud::new("iaas", &settings()).unwrap();
        let debug = format!("{cloud:?}");
        assert!(!debug.contains("pa55-word"), "{debug}");
        assert!(debug.contains("alice"), "{debug}");
    }

    #[tokio::test]
    async fn odd_server_ids_never_reach_the_cloud() {
        // Nothing listens at keystone.example.org: these calls must not try.
        let cloud = OpenStackCloud::new("iaas", &settings()).unwrap();
        for vmid in ["None", "", "../servers", "1/2", "42"] {
            cloud.kill_node(vmid).await.unwrap();
            assert_eq!(cloud.node_state(vmid).await.unwrap(), NodeState::Gone);
        }
    }

    #[test]
    fn user_data_limit_is_novas() {
        assert_eq!(NOVA_USER_DATA_LIMIT, 65_535);
    }
}
