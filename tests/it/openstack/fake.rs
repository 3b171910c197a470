//! A faithful local OpenStack: Keystone v3 (version discovery, `POST /v3/auth/tokens` with
//! the `password` and `application_credential` methods, a catalog pointing at itself), Nova
//! v2.1 with microversions (servers create/show/list/delete, flavors, key pairs), Glance v2
//! (images) and Neutron v2.0 (networks, ports, floating IPs, security groups), written from
//! the published API references, with quotas and fault switches. It binds 127.0.0.1:0 on the
//! test's runtime and stops when dropped. `tests/support/openstacksdk_check.py` drives it
//! with OpenStack's own SDK (openstacksdk, keystoneauth1), so that it cannot drift into
//! agreeing only with our driver.
//!
//! The services live under one port as devstack lays them out: `/identity`, `/compute`,
//! `/image`, `/networking`. Where services differ in how they answer errors, each answers in
//! its own way: Keystone `{"error": {"code", "title", "message"}}`, Nova
//! `{"badRequest"|"forbidden"|"itemNotFound": {"code", "message"}}`, Neutron
//! `{"NeutronError": {"type", "message", "detail"}}` (quota exceeded is 409 `OverQuota`, where
//! Nova's is 403), Glance an HTML page. A token missing, expired or revoked is 401 from every
//! service (keystonemiddleware's answer).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// The highest Nova microversion served (2024.1 Caracal's).
pub const MAX_MICROVERSION: (u32, u32) = (2, 96);

/// A network of the fake.
#[derive(Debug, Clone)]
pub struct FakeNetwork {
    /// The id.
    pub id: String,
    /// The name.
    pub name: String,
    /// `router:external`: floating IPs come from it.
    pub external: bool,
    /// The first address it hands out.
    pub first: Ipv4Addr,
}

/// What the cloud holds and accepts; [`FakeConfig::new`] matches the tests' settings.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// User name, password and domain name.
    pub user: String,
    /// The user's password.
    pub password: String,
    /// The domain of user and project.
    pub domain: String,
    /// The project's name and id.
    pub project: (String, String),
    /// An application credential: id and secret.
    pub application_credential: (String, String),
    /// The region of every endpoint.
    pub region: String,
    /// Images: id and name.
    pub images: Vec<(String, String)>,
    /// Flavors: id and name.
    pub flavors: Vec<(String, String)>,
    /// Networks.
    pub networks: Vec<FakeNetwork>,
    /// Key pair names.
    pub keypairs: Vec<String>,
    /// Security group names (besides `default`).
    pub security_groups: Vec<String>,
    /// The instances quota.
    pub max_servers: usize,
    /// The floating IP quota.
    pub max_floating_ips: usize,
    /// At which `GET /servers/{id}` a server is `ACTIVE` (0 and 1 alike: the first).
    pub polls_until_active: u32,
    /// How long a token lives.
    pub token_lifetime: chrono::TimeDelta,
}

pub const IMAGE_ID: &str = "5c6e1a44-6d2b-4a8b-9f0e-7e5a1c2b3d4e";
pub const PRIVATE_NET: &str = "1f0e8c2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b";
pub const PUBLIC_NET: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
pub const APP_CREDENTIAL_ID: &str = "4d2c6a1e0f9b8a7c6d5e4f3a2b1c0d9e";

impl FakeConfig {
    /// User `alice` / `secret-pw` in `Default`, project `conpaas`, application credential
    /// `APP_CREDENTIAL_ID` / `app-secret`, region `RegionOne`, image `ubuntu-24.04`, flavors
    /// `m1.small` (id 2) and `m1.large` (id 4), networks `private` (10.0.0.10 on) and
    /// external `public` (172.24.4.100 on), key pair `conpaas`, security group `managers`,
    /// quotas of 10 servers and 10 floating IPs, servers `ACTIVE` at their first read.
    pub fn new() -> Self {
        FakeConfig {
            user: "alice".into(),
            password: "secret-pw".into(),
            domain: "Default".into(),
            project: ("conpaas".into(), "8e2f0c4b6a1d4e3f9b7a5c3e1d0f2a4b".into()),
            application_credential: (APP_CREDENTIAL_ID.into(), "app-secret".into()),
            region: "RegionOne".into(),
            images: vec![(IMAGE_ID.into(), "ubuntu-24.04".into())],
            flavors: vec![
                ("2".into(), "m1.small".into()),
                ("4".into(), "m1.large".into()),
            ],
            networks: vec![
                FakeNetwork {
                    id: PRIVATE_NET.into(),
                    name: "private".into(),
                    external: false,
                    first: Ipv4Addr::new(10, 0, 0, 10),
                },
                FakeNetwork {
                    id: PUBLIC_NET.into(),
                    name: "public".into(),
                    external: true,
                    first: Ipv4Addr::new(172, 24, 4, 100),
                },
            ],
            keypairs: vec!["conpaas".into()],
            security_groups: vec!["managers".into()],
            max_servers: 10,
            max_floating_ips: 10,
            polls_until_active: 1,
            token_lifetime: chrono::TimeDelta::hours(1),
        }
    }
}

/// Fault switches; all off by default.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer the next N token requests 503.
    pub keystone_errors: u32,
    /// Answer the next N `POST /servers` 500 without creating anything.
    pub create_errors: u32,
    /// Create the server of the next N `POST /servers`, then answer 500 (lost answers).
    pub create_errors_after_creating: u32,
    /// Wait this long before answering `POST /servers` (the server is created first).
    pub slow_create: Duration,
    /// Answer the next N `GET /servers/{id}` 503.
    pub read_errors: u32,
    /// A new server turns `ERROR` at its Nth read (0: at once).
    pub fail_after_reads: Option<u32>,
    /// New servers stay `BUILD`.
    pub stall_build: bool,
    /// Allocate the floating IP of the next N `POST /floatingips`, then answer 502.
    pub floating_ip_errors_after_creating: u32,
    /// Answer the next N `DELETE /servers/{id}` 409 (a task in progress), deleting nothing.
    pub delete_conflicts: u32,
}

/// A server as the fake keeps it.
#[derive(Debug, Clone)]
pub struct FakeServer {
    /// The id (a UUID).
    pub id: String,
    /// `name`.
    pub name: String,
    /// `BUILD`, `ACTIVE`, `ERROR`, `DELETED`.
    pub status: String,
    /// `imageRef`, `flavorRef`.
    pub image_id: String,
    /// The flavor id.
    pub flavor_id: String,
    /// The network of its port.
    pub network_id: String,
    /// That network's name (Nova keys `addresses` by it).
    pub network_name: String,
    /// Its fixed address.
    pub fixed_ip: Ipv4Addr,
    /// Its port.
    pub port_id: String,
    /// `metadata`.
    pub metadata: BTreeMap<String, String>,
    /// `user_data`, base64-decoded: the boot script.
    pub user_data: Option<Vec<u8>>,
    /// `key_name`.
    pub key_name: Option<String>,
    /// `security_groups` names.
    pub security_groups: Vec<String>,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// `GET /servers/{id}` answered so far.
    pub reads: u32,
    fail_after_reads: Option<u32>,
    stall: bool,
}

/// A floating IP as the fake keeps it.
#[derive(Debug, Clone)]
pub struct FakeFloatingIp {
    /// The id.
    pub id: String,
    /// The address.
    pub address: Ipv4Addr,
    /// The external network.
    pub network_id: String,
    /// The port it is attached to.
    pub port_id: Option<String>,
    /// Its description.
    pub description: String,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `POST`...
    pub method: String,
    /// The path.
    pub path: String,
    /// The query, if any.
    pub query: Option<String>,
    /// The compute microversion asked for (`OpenStack-API-Version` or the Nova header).
    pub microversion: Option<String>,
    /// The `User-Agent`.
    pub user_agent: Option<String>,
}

#[derive(Debug)]
struct Issued {
    token: String,
    expires: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct World {
    faults: Faults,
    servers: Vec<FakeServer>,
    floating_ips: Vec<FakeFloatingIp>,
    tokens: Vec<Issued>,
    seen: Vec<Seen>,
    leases: u32,
    floating_leases: u32,
    counter: u64,
}

impl World {
    fn uuid(&mut self) -> String {
        self.counter += 1;
        let random: u64 = rand::random();
        let hex = format!("{:016x}{:016x}", random, self.counter);
        format!(
            "{}-{}-4{}-a{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[13..16],
            &hex[17..20],
            &hex[20..32]
        )
    }
}

#[derive(Debug)]
struct Shared {
    config: FakeConfig,
    addr: SocketAddr,
    state: Mutex<World>,
}

/// A running fake OpenStack.
pub struct FakeOpenStack {
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for FakeOpenStack {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl FakeOpenStack {
    /// Starts a fake with `config` on 127.0.0.1 at a free port, on the current runtime.
    pub async fn start(config: FakeConfig) -> FakeOpenStack {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            config,
            addr,
            state: Mutex::new(World::default()),
        });
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        FakeOpenStack {
            shared,
            stop: Some(stop),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// Keystone's URL as an openrc file gives it: `http://127.0.0.1:<port>/identity/v3`.
    pub fn auth_url(&self) -> String {
        format!("{}/identity/v3", self.base())
    }

    /// Replaces the fault switches.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.state.lock().unwrap().faults = faults;
    }

    /// Makes every token issued so far invalid (as a Keystone restart with new fernet keys).
    pub fn revoke_tokens(&self) {
        self.shared.state.lock().unwrap().tokens.clear();
    }

    /// Every server ever created, deleted ones included.
    pub fn servers(&self) -> Vec<FakeServer> {
        self.shared.state.lock().unwrap().servers.clone()
    }

    /// The server `id`.
    pub fn server(&self, id: &str) -> Option<FakeServer> {
        self.servers().into_iter().find(|server| server.id == id)
    }

    /// The servers not deleted.
    pub fn live_servers(&self) -> Vec<FakeServer> {
        self.servers()
            .into_iter()
            .filter(|server| server.status != "DELETED")
            .collect()
    }

    /// The floating IPs allocated.
    pub fn floating_ips(&self) -> Vec<FakeFloatingIp> {
        self.shared.state.lock().unwrap().floating_ips.clone()
    }

    /// Every request received, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.state.lock().unwrap().seen.clone()
    }

    /// How many `method path` requests were received (path without the query).
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|seen| seen.method == method && seen.path == path)
            .count()
    }

    /// Deletes a server as `DELETE /servers/{id}` does (someone else deleting it): its port
    /// goes, its floating IPs stay, detached.
    pub fn delete_server(&self, id: &str) {
        let mut world = self.shared.state.lock().unwrap();
        let world = &mut *world;
        let server = world
            .servers
            .iter_mut()
            .find(|server| server.id == id)
            .unwrap();
        server.status = "DELETED".into();
        for floating_ip in &mut world.floating_ips {
            if floating_ip.port_id.as_deref() == Some(server.port_id.as_str()) {
                floating_ip.port_id = None;
            }
        }
    }

    /// Creates a server directly, as someone else (or a lost start) would have: `name` with
    /// `metadata`, ACTIVE.
    pub fn add_server(&self, name: &str, metadata: &[(&str, &str)]) -> String {
        let mut world = self.shared.state.lock().unwrap();
        let id = world.uuid();
        let port_id = world.uuid();
        world.leases += 1;
        let server = FakeServer {
            id: id.clone(),
            name: name.into(),
            status: "ACTIVE".into(),
            image_id: IMAGE_ID.into(),
            flavor_id: "2".into(),
            network_id: PRIVATE_NET.into(),
            network_name: "private".into(),
            fixed_ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 200)) + world.leases),
            port_id,
            metadata: metadata
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            user_data: None,
            key_name: None,
            security_groups: vec!["default".into()],
            created: Utc::now() - chrono::TimeDelta::hours(2),
            reads: 0,
            fail_after_reads: None,
            stall: false,
        };
        world.servers.push(server);
        id
    }
}

type Reply = (StatusCode, Vec<(&'static str, String)>, String);

fn json_reply(status: StatusCode, body: Value) -> Reply {
    (
        status,
        vec![("Content-Type", "application/json".to_owned())],
        body.to_string(),
    )
}

fn nova_error(status: StatusCode, kind: &str, message: &str) -> Reply {
    json_reply(
        status,
        json!({ kind: { "code": status.as_u16(), "message": message } }),
    )
}

fn neutron_error(status: StatusCode, kind: &str, message: &str) -> Reply {
    json_reply(
        status,
        json!({ "NeutronError": { "type": kind, "message": message, "detail": "" } }),
    )
}

fn keystone_error(status: StatusCode, title: &str, message: &str) -> Reply {
    json_reply(
        status,
        json!({ "error": { "code": status.as_u16(), "title": title, "message": message } }),
    )
}

fn unauthorized() -> Reply {
    keystone_error(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "The request you have made requires authentication.",
    )
}

fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

fn query_map(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'+' => out.push(b' '),
            b'%' if at + 2 < bytes.len() => match u8::from_str_radix(&text[at + 1..at + 3], 16) {
                Ok(byte) => {
                    out.push(byte);
                    at += 2;
                }
                Err(_) => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        at += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}

/// The compute microversion a request asks for: `(major, minor)`, 2.1 when it asks none.
fn microversion(headers: &HeaderMap) -> Result<(u32, u32), String> {
    let asked = header_text(headers, "OpenStack-API-Version")
        .and_then(|value| {
            value.split(',').find_map(|part| {
                let mut words = part.split_whitespace();
                (words.next()? == "compute").then(|| words.next().map(str::to_owned))?
            })
        })
        .or_else(|| header_text(headers, "X-OpenStack-Nova-API-Version"));
    let Some(asked) = asked else {
        return Ok((2, 1));
    };
    if asked.eq_ignore_ascii_case("latest") {
        return Ok(MAX_MICROVERSION);
    }
    let parsed = asked
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)));
    match parsed {
        Some(version) if version >= (2, 1) && version <= MAX_MICROVERSION => Ok(version),
        _ => Err(asked),
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().map(str::to_owned);
    let (delay, (status, reply_headers, text)) = {
        let mut world = shared.state.lock().unwrap();
        world.seen.push(Seen {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            microversion: header_text(&headers, "OpenStack-API-Version")
                .or_else(|| header_text(&headers, "X-OpenStack-Nova-API-Version")),
            user_agent: header_text(&headers, "User-Agent"),
        });
        route(
            &shared,
            &mut world,
            &method,
            &path,
            query.as_deref(),
            &headers,
            &body,
        )
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut response = (status, text).into_response();
    for (name, value) in reply_headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn route(
    shared: &Shared,
    world: &mut World,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> (Duration, Reply) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let base = format!("http://{}", shared.addr);
    let query = query_map(query);
    // Version documents need no token.
    match (method, segments.as_slice()) {
        (&Method::GET, ["identity"]) => {
            return (
                Duration::ZERO,
                json_reply(
                    StatusCode::MULTIPLE_CHOICES,
                    json!({ "versions": { "values": [identity_version(&base)] } }),
                ),
            );
        }
        (&Method::GET, ["identity", "v3"]) => {
            return (
                Duration::ZERO,
                json_reply(
                    StatusCode::OK,
                    json!({ "version": identity_version(&base) }),
                ),
            );
        }
        (&Method::POST, ["identity", "v3", "auth", "tokens"]) => {
            return (Duration::ZERO, issue_token(shared, world, body));
        }
        (&Method::GET, ["compute"]) => {
            return (
                Duration::ZERO,
                json_reply(
                    StatusCode::OK,
                    json!({ "versions": [compute_version(&base, "v2.0"), compute_version(&base, "v2.1")] }),
                ),
            );
        }
        (&Method::GET, ["compute", "v2.1"]) => {
            return (
                Duration::ZERO,
                json_reply(
                    StatusCode::OK,
                    json!({ "version": compute_version(&base, "v2.1") }),
                ),
            );
        }
        (&Method::GET, ["image"]) => {
            return (
                Duration::ZERO,
                json_reply(
                    StatusCode::MULTIPLE_CHOICES,
                    json!({ "versions": [
                        { "id": "v2.16", "status": "CURRENT", "links": [{ "rel": "self", "href": format!("{base}/image/v2/") }] },
                        { "id": "v2.0", "status": "SUPPORTED", "links": [{ "rel": "self", "href": format!("{base}/image/v2/") }] },
                    ]}),
                ),
            );
        }
        (&Method::GET, ["networking"]) => {
            return (
                Duration::ZERO,
                json_reply(
                    StatusCode::OK,
                    json!({ "versions": [{ "id": "v2.0", "status": "CURRENT", "links": [{ "rel": "self", "href": format!("{base}/networking/v2.0/") }] }] }),
                ),
            );
        }
        _ => {}
    }
    // Everything else needs a valid token (keystonemiddleware).
    let now = Utc::now();
    let valid = header_text(headers, "X-Auth-Token").is_some_and(|token| {
        world
            .tokens
            .iter()
            .any(|issued| issued.token == token && issued.expires > now)
    });
    if !valid {
        return (Duration::ZERO, unauthorized());
    }
    match segments.as_slice() {
        ["compute", "v2.1", rest @ ..] => {
            let version = match microversion(headers) {
                Ok(version) => version,
                Err(asked) => {
                    return (
                        Duration::ZERO,
                        nova_error(
                            StatusCode::NOT_ACCEPTABLE,
                            "computeFault",
                            &format!(
                                "Version {asked} is not supported by the API. Minimum is 2.1 and maximum is {}.{}.",
                                MAX_MICROVERSION.0, MAX_MICROVERSION.1
                            ),
                        ),
                    );
                }
            };
            let (delay, (status, mut reply_headers, text)) =
                compute(shared, world, method, rest, &query, body, version);
            let version = format!("{}.{}", version.0, version.1);
            reply_headers.push(("OpenStack-API-Version", format!("compute {version}")));
            reply_headers.push(("X-OpenStack-Nova-API-Version", version));
            reply_headers.push((
                "Vary",
                "OpenStack-API-Version, X-OpenStack-Nova-API-Version".to_owned(),
            ));
            (delay, (status, reply_headers, text))
        }
        ["image", "v2", rest @ ..] => (Duration::ZERO, image(shared, method, rest, &query)),
        ["networking", "v2.0", rest @ ..] => (
            Duration::ZERO,
            network(shared, world, method, rest, &query, body),
        ),
        _ => (
            Duration::ZERO,
            (
                StatusCode::NOT_FOUND,
                vec![("Content-Type", "text/html".to_owned())],
                "<html><body><h1>404 Not Found</h1></body></html>".to_owned(),
            ),
        ),
    }
}

fn identity_version(base: &str) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{ "rel": "self", "href": format!("{base}/identity/v3/") }],
        "media-types": [{ "base": "application/json", "type": "application/vnd.openstack.identity-v3+json" }],
    })
}

fn compute_version(base: &str, id: &str) -> Value {
    let (version, min_version, status) = if id == "v2.1" {
        (
            format!("{}.{}", MAX_MICROVERSION.0, MAX_MICROVERSION.1),
            "2.1",
            "CURRENT",
        )
    } else {
        (String::new(), "", "SUPPORTED")
    };
    let path = if id == "v2.1" { "v2.1" } else { "v2" };
    json!({
        "id": id,
        "status": status,
        "version": version,
        "min_version": min_version,
        "updated": "2013-07-23T11:33:21Z",
        "links": [{ "rel": "self", "href": format!("{base}/compute/{path}/") }],
        "media-types": [{ "base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1" }],
    })
}

fn catalog(shared: &Shared) -> Value {
    let base = format!("http://{}", shared.addr);
    let region = &shared.config.region;
    let entry = |kind: &str, name: &str, url: String| {
        let endpoints: Vec<Value> = ["public", "internal"]
            .iter()
            .map(|interface| {
                json!({
                    "id": format!("{name}-{interface}"),
                    "interface": interface,
                    "region": region,
                    "region_id": region,
                    "url": url,
                })
            })
            .collect();
        json!({ "type": kind, "name": name, "id": format!("{name}-service"), "endpoints": endpoints })
    };
    json!([
        entry("identity", "keystone", format!("{base}/identity")),
        entry("compute", "nova", format!("{base}/compute/v2.1")),
        entry("image", "glance", format!("{base}/image")),
        entry("network", "neutron", format!("{base}/networking")),
    ])
}

/// `POST /v3/auth/tokens`.
fn issue_token(shared: &Shared, world: &mut World, body: &[u8]) -> Reply {
    if world.faults.keystone_errors > 0 {
        world.faults.keystone_errors -= 1;
        return keystone_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            "The server is currently unavailable. Please try again at a later time.",
        );
    }
    let config = &shared.config;
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return keystone_error(StatusCode::BAD_REQUEST, "Bad Request", "Malformed JSON");
    };
    let Some(identity) = request.pointer("/auth/identity") else {
        return keystone_error(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "Expecting to find identity in auth. The server could not comply with the request since it is either malformed or otherwise incorrect. The client is assumed to be in error.",
        );
    };
    let methods: Vec<&str> = identity
        .get("methods")
        .and_then(Value::as_array)
        .map(|methods| methods.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let domain_ok = |domain: Option<&Value>| {
        domain.is_some_and(|domain| {
            domain.get("name").and_then(Value::as_str) == Some(config.domain.as_str())
                || domain.get("id").and_then(Value::as_str) == Some("default")
        })
    };
    let mut token_extra = json!({});
    match methods.as_slice() {
        ["password"] => {
            let Some(user) = identity.pointer("/password/user") else {
                return keystone_error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    "Expecting to find user in password.",
                );
            };
            let name_ok = user.get("name").and_then(Value::as_str) == Some(config.user.as_str())
                && domain_ok(user.get("domain"));
            let password_ok =
                user.get("password").and_then(Value::as_str) == Some(config.password.as_str());
            if !(name_ok && password_ok) {
                return unauthorized();
            }
            match request.pointer("/auth/scope/project") {
                Some(project) => {
                    let by_id = project.get("id").and_then(Value::as_str)
                        == Some(config.project.1.as_str());
                    let by_name = project.get("name").and_then(Value::as_str)
                        == Some(config.project.0.as_str())
                        && domain_ok(project.get("domain"));
                    if !(by_id || by_name) {
                        return unauthorized();
                    }
                }
                // Unscoped: a token without a catalog.
                None => token_extra = json!({ "unscoped": true }),
            }
        }
        ["application_credential"] => {
            let credential = identity.get("application_credential");
            let id_ok = credential
                .and_then(|credential| credential.get("id"))
                .and_then(Value::as_str)
                == Some(config.application_credential.0.as_str());
            let secret_ok = credential
                .and_then(|credential| credential.get("secret"))
                .and_then(Value::as_str)
                == Some(config.application_credential.1.as_str());
            if !(id_ok && secret_ok) {
                return unauthorized();
            }
            if request.pointer("/auth/scope").is_some() {
                return keystone_error(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    "Application credentials cannot request a scope.",
                );
            }
            token_extra = json!({ "application_credential": {
                "id": config.application_credential.0, "name": "conpaas", "restricted": true,
            }});
        }
        _ => {
            return keystone_error(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "Attempted to authenticate with an unsupported method.",
            );
        }
    }
    let now = Utc::now();
    let expires = now + config.token_lifetime;
    let token = format!("gAAAAA{}", world.uuid().replace('-', ""));
    world.tokens.push(Issued {
        token: token.clone(),
        expires,
    });
    let domain = json!({ "id": "default", "name": config.domain });
    let mut body = json!({ "token": {
        "methods": methods,
        "user": { "domain": domain, "id": "e4b2c0a8d6f94e1fa3b5c7d9e1f3a5b7", "name": config.user, "password_expires_at": null },
        "audit_ids": ["3T2dc1CGQxyJsHdDu1xkcw"],
        "expires_at": expires.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "issued_at": now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
    }});
    if token_extra.get("unscoped").is_none() {
        let token_body = body
            .get_mut("token")
            .and_then(Value::as_object_mut)
            .unwrap();
        token_body.insert(
            "project".into(),
            json!({ "domain": domain, "id": config.project.1, "name": config.project.0 }),
        );
        token_body.insert("is_domain".into(), json!(false));
        token_body.insert(
            "roles".into(),
            json!([{ "id": "9fe2ff9ee4384b1894a90878d3e92bab", "name": "member" }, { "id": "b0a6b2f6a5c04d5a9d2d6d9e3a1b8c7d", "name": "reader" }]),
        );
        token_body.insert("catalog".into(), catalog(shared));
        if let Some(credential) = token_extra.get("application_credential") {
            token_body.insert("application_credential".into(), credential.clone());
        }
    }
    (
        StatusCode::CREATED,
        vec![
            ("Content-Type", "application/json".to_owned()),
            ("X-Subject-Token", token),
        ],
        body.to_string(),
    )
}

fn compute(
    shared: &Shared,
    world: &mut World,
    method: &Method,
    rest: &[&str],
    query: &[(String, String)],
    body: &[u8],
    version: (u32, u32),
) -> (Duration, Reply) {
    let base = format!("http://{}/compute/v2.1", shared.addr);
    let config = &shared.config;
    let reply = match (method, rest) {
        (&Method::POST, ["servers"]) => return create_server(shared, world, body, version),
        (&Method::GET, ["servers", "detail"]) | (&Method::GET, ["servers"]) => {
            let detail = rest.len() == 2;
            let pattern = param(query, "name").map(regex::Regex::new);
            let pattern = match pattern {
                Some(Ok(pattern)) => Some(pattern),
                Some(Err(_)) => {
                    return (
                        Duration::ZERO,
                        nova_error(
                            StatusCode::BAD_REQUEST,
                            "badRequest",
                            "Invalid regular expression",
                        ),
                    );
                }
                None => None,
            };
            let mut listed: Vec<&FakeServer> = world
                .servers
                .iter()
                .filter(|server| server.status != "DELETED")
                .filter(|server| {
                    pattern
                        .as_ref()
                        .is_none_or(|pattern| pattern.is_match(&server.name))
                })
                .collect();
            // Nova sorts by created_at descending, then id.
            listed.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
            if let Some(marker) = param(query, "marker") {
                let Some(at) = listed.iter().position(|server| server.id == marker) else {
                    return (
                        Duration::ZERO,
                        nova_error(
                            StatusCode::BAD_REQUEST,
                            "badRequest",
                            &format!("marker [{marker}] not found"),
                        ),
                    );
                };
                listed.drain(..=at);
            }
            let limit = param(query, "limit")
                .and_then(|limit| limit.parse::<usize>().ok())
                .unwrap_or(1000)
                .min(1000);
            let full = listed.len() > limit;
            listed.truncate(limit);
            let servers: Vec<Value> = listed
                .iter()
                .map(|server| {
                    if detail {
                        server_document(world, server, &base, version)
                    } else {
                        json!({ "id": server.id, "name": server.name, "links": server_links(&base, &server.id) })
                    }
                })
                .collect();
            let mut document = json!({ "servers": servers });
            if (full || listed.len() == limit)
                && let Some(last) = listed.last()
            {
                let page = if detail { "servers/detail" } else { "servers" };
                document["servers_links"] = json!([{ "rel": "next", "href": format!("{base}/{page}?limit={limit}&marker={}", last.id) }]);
            }
            json_reply(StatusCode::OK, document)
        }
        (&Method::GET, ["servers", id]) => {
            if world.faults.read_errors > 0 {
                world.faults.read_errors -= 1;
                return (
                    Duration::ZERO,
                    nova_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "computeFault",
                        "The server is currently unavailable. Please try again at a later time.",
                    ),
                );
            }
            let polls_until_active = config.polls_until_active;
            let Some(server) = world
                .servers
                .iter_mut()
                .find(|server| server.id == *id && server.status != "DELETED")
            else {
                return (
                    Duration::ZERO,
                    nova_error(
                        StatusCode::NOT_FOUND,
                        "itemNotFound",
                        &format!("Instance {id} could not be found."),
                    ),
                );
            };
            server.reads += 1;
            if server.status == "BUILD" {
                if server.fail_after_reads.is_some_and(|n| server.reads >= n) {
                    server.status = "ERROR".into();
                } else if !server.stall && server.reads >= polls_until_active {
                    server.status = "ACTIVE".into();
                }
            }
            let server = server.clone();
            json_reply(
                StatusCode::OK,
                json!({ "server": server_document(world, &server, &base, version) }),
            )
        }
        (&Method::DELETE, ["servers", id]) => {
            if world.faults.delete_conflicts > 0 {
                world.faults.delete_conflicts -= 1;
                return (
                    Duration::ZERO,
                    nova_error(
                        StatusCode::CONFLICT,
                        "conflictingRequest",
                        &format!(
                            "Cannot 'delete' instance {id} while it is in task_state deleting"
                        ),
                    ),
                );
            }
            let Some(server) = world
                .servers
                .iter_mut()
                .find(|server| server.id == *id && server.status != "DELETED")
            else {
                return (
                    Duration::ZERO,
                    nova_error(
                        StatusCode::NOT_FOUND,
                        "itemNotFound",
                        &format!("Instance {id} could not be found."),
                    ),
                );
            };
            server.status = "DELETED".into();
            let port = server.port_id.clone();
            // Neutron deletes the server's port; its floating IPs stay, detached.
            for floating_ip in &mut world.floating_ips {
                if floating_ip.port_id.as_deref() == Some(port.as_str()) {
                    floating_ip.port_id = None;
                }
            }
            (StatusCode::NO_CONTENT, Vec::new(), String::new())
        }
        (&Method::GET, ["flavors", "detail"]) | (&Method::GET, ["flavors"]) => {
            let detail = rest.len() == 2;
            let flavors: Vec<Value> = config
                .flavors
                .iter()
                .map(|(id, name)| {
                    if detail {
                        flavor_document(&base, id, name, version)
                    } else {
                        json!({ "id": id, "name": name, "links": flavor_links(&base, id) })
                    }
                })
                .collect();
            json_reply(StatusCode::OK, json!({ "flavors": flavors }))
        }
        (&Method::GET, ["flavors", id]) => match config.flavors.iter().find(|(fid, _)| fid == id) {
            Some((id, name)) => json_reply(
                StatusCode::OK,
                json!({ "flavor": flavor_document(&base, id, name, version) }),
            ),
            None => nova_error(
                StatusCode::NOT_FOUND,
                "itemNotFound",
                &format!("Flavor {id} could not be found."),
            ),
        },
        (&Method::GET, ["os-keypairs"]) => {
            let keypairs: Vec<Value> = config
                .keypairs
                .iter()
                .map(|name| json!({ "keypair": keypair_document(name, false) }))
                .collect();
            json_reply(StatusCode::OK, json!({ "keypairs": keypairs }))
        }
        (&Method::GET, ["os-keypairs", name]) => {
            if config.keypairs.iter().any(|known| known == name) {
                json_reply(
                    StatusCode::OK,
                    json!({ "keypair": keypair_document(name, true) }),
                )
            } else {
                nova_error(
                    StatusCode::NOT_FOUND,
                    "itemNotFound",
                    &format!("Keypair {name} not found for user e4b2c0a8d6f94e1fa3b5c7d9e1f3a5b7"),
                )
            }
        }
        _ => nova_error(
            StatusCode::NOT_FOUND,
            "itemNotFound",
            "The resource could not be found.",
        ),
    };
    (Duration::ZERO, reply)
}

fn server_links(base: &str, id: &str) -> Value {
    json!([
        { "rel": "self", "href": format!("{base}/servers/{id}") },
        { "rel": "bookmark", "href": format!("{}/servers/{id}", base.trim_end_matches("/v2.1")) },
    ])
}

fn flavor_links(base: &str, id: &str) -> Value {
    json!([
        { "rel": "self", "href": format!("{base}/flavors/{id}") },
        { "rel": "bookmark", "href": format!("{}/flavors/{id}", base.trim_end_matches("/v2.1")) },
    ])
}

fn flavor_document(base: &str, id: &str, name: &str, version: (u32, u32)) -> Value {
    let mut flavor = json!({
        "id": id, "name": name, "ram": 2048, "disk": 20, "vcpus": 1, "swap": "",
        "OS-FLV-EXT-DATA:ephemeral": 0, "OS-FLV-DISABLED:disabled": false,
        "rxtx_factor": 1.0, "os-flavor-access:is_public": true,
        "links": flavor_links(base, id),
    });
    if version >= (2, 55) {
        flavor["description"] = Value::Null;
    }
    if version >= (2, 61) {
        flavor["extra_specs"] = json!({});
    }
    flavor
}

fn keypair_document(name: &str, full: bool) -> Value {
    let mut keypair = json!({
        "name": name,
        "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKr8s8Yp0h1d0A5uC9GQb0mQ conpaas",
        "fingerprint": "7e:eb:ab:24:ba:d1:e1:88:ae:9a:fb:66:53:df:d3:bd",
        "type": "ssh",
    });
    if full {
        keypair["user_id"] = json!("e4b2c0a8d6f94e1fa3b5c7d9e1f3a5b7");
        keypair["created_at"] = json!("2024-01-01T00:00:00.000000");
        keypair["deleted"] = json!(false);
        keypair["deleted_at"] = Value::Null;
        keypair["updated_at"] = Value::Null;
        keypair["id"] = json!(1);
    }
    keypair
}

fn server_document(world: &World, server: &FakeServer, base: &str, version: (u32, u32)) -> Value {
    let mut addresses = serde_json::Map::new();
    if server.status == "ACTIVE" {
        let network = server.network_name.clone();
        let mac = format!(
            "fa:16:3e:{:02x}:{:02x}:{:02x}",
            server.fixed_ip.octets()[1],
            server.fixed_ip.octets()[2],
            server.fixed_ip.octets()[3]
        );
        let mut list = vec![json!({
            "version": 4, "addr": server.fixed_ip.to_string(),
            "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": mac,
        })];
        for floating_ip in &world.floating_ips {
            if floating_ip.port_id.as_deref() == Some(server.port_id.as_str()) {
                list.push(json!({
                    "version": 4, "addr": floating_ip.address.to_string(),
                    "OS-EXT-IPS:type": "floating", "OS-EXT-IPS-MAC:mac_addr": mac,
                }));
            }
        }
        addresses.insert(network, Value::Array(list));
    }
    let flavor = if version >= (2, 47) {
        json!({ "vcpus": 1, "ram": 2048, "disk": 20, "ephemeral": 0, "swap": 0,
                "original_name": server.flavor_id, "extra_specs": {} })
    } else {
        json!({ "id": server.flavor_id, "links": [{ "rel": "bookmark", "href": format!("{}/flavors/{}", base.trim_end_matches("/v2.1"), server.flavor_id) }] })
    };
    let (vm_state, task_state, power_state) = match server.status.as_str() {
        "ACTIVE" => ("active", Value::Null, 1),
        "ERROR" => ("error", Value::Null, 0),
        _ => ("building", json!("spawning"), 0),
    };
    let mut document = json!({
        "id": server.id,
        "name": server.name,
        "status": server.status,
        "tenant_id": "8e2f0c4b6a1d4e3f9b7a5c3e1d0f2a4b",
        "user_id": "e4b2c0a8d6f94e1fa3b5c7d9e1f3a5b7",
        "metadata": server.metadata,
        "hostId": "2f9b3c6e0a1d",
        "image": { "id": server.image_id, "links": [] },
        "flavor": flavor,
        "created": time(server.created),
        "updated": time(server.created),
        "addresses": addresses,
        "accessIPv4": "",
        "accessIPv6": "",
        "links": server_links(base, &server.id),
        "OS-DCF:diskConfig": "MANUAL",
        "progress": 0,
        "OS-EXT-AZ:availability_zone": "nova",
        "config_drive": "",
        "key_name": server.key_name,
        "OS-SRV-USG:launched_at": if server.status == "ACTIVE" { json!(time(server.created)) } else { Value::Null },
        "OS-SRV-USG:terminated_at": null,
        "security_groups": server.security_groups.iter().map(|name| json!({ "name": name })).collect::<Vec<_>>(),
        "OS-EXT-STS:task_state": task_state,
        "OS-EXT-STS:vm_state": vm_state,
        "OS-EXT-STS:power_state": power_state,
        "os-extended-volumes:volumes_attached": [],
    });
    if server.status == "ERROR" {
        document["fault"] = json!({ "code": 500, "created": time(server.created), "message": "No valid host was found. There are not enough hosts available." });
    }
    if version >= (2, 9) {
        document["locked"] = json!(false);
    }
    if version >= (2, 19) {
        document["description"] = Value::Null;
    }
    if version >= (2, 26) {
        document["tags"] = json!([]);
    }
    document
}

/// The keys Nova's 2.1 schema allows in `server` (with what later microversions add).
const SERVER_KEYS: &[&str] = &[
    "name",
    "imageRef",
    "flavorRef",
    "adminPass",
    "metadata",
    "networks",
    "OS-DCF:diskConfig",
    "accessIPv4",
    "accessIPv6",
    "personality",
    "key_name",
    "user_data",
    "security_groups",
    "availability_zone",
    "config_drive",
    "block_device_mapping",
    "block_device_mapping_v2",
    "min_count",
    "max_count",
    "return_reservation_id",
];

fn create_server(
    shared: &Shared,
    world: &mut World,
    body: &[u8],
    version: (u32, u32),
) -> (Duration, Reply) {
    let config = &shared.config;
    let bad = |message: &str| {
        (
            Duration::ZERO,
            nova_error(StatusCode::BAD_REQUEST, "badRequest", message),
        )
    };
    if world.faults.create_errors > 0 {
        world.faults.create_errors -= 1;
        return (
            Duration::ZERO,
            nova_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "computeFault",
                "Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ and attach the Nova API log if possible.",
            ),
        );
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return bad("Malformed request body");
    };
    let Some(server) = request.get("server").and_then(Value::as_object) else {
        return bad(
            "Invalid input for field/attribute server. Value: None. 'server' is a required property",
        );
    };
    for key in server.keys() {
        let allowed = SERVER_KEYS.contains(&key.as_str())
            || (key == "description" && version >= (2, 19))
            || (key == "tags" && version >= (2, 52))
            || (key == "trusted_image_certificates" && version >= (2, 63))
            || (key == "hostname" && version >= (2, 90));
        if !allowed {
            return bad(&format!(
                "Invalid input for field/attribute server. Value: {}. Additional properties are not allowed ('{key}' was unexpected)",
                Value::Object(server.clone())
            ));
        }
    }
    let Some(name) = server
        .get("name")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty() && name.len() <= 255)
    else {
        return bad("Invalid input for field/attribute name.");
    };
    let image_id = server
        .get("imageRef")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !config.images.iter().any(|(id, _)| id == image_id) {
        return bad("Can not find requested image");
    }
    let flavor_id = server
        .get("flavorRef")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !config.flavors.iter().any(|(id, _)| id == flavor_id) {
        return bad("Invalid flavorRef provided.");
    }
    let network_id = match server.get("networks") {
        Some(Value::Array(networks)) => {
            let Some(uuid) = networks
                .first()
                .and_then(|network| network.get("uuid"))
                .and_then(Value::as_str)
            else {
                return bad("Invalid input for field/attribute networks.");
            };
            if !config.networks.iter().any(|network| network.id == uuid) {
                return bad(&format!("Network {uuid} could not be found."));
            }
            uuid.to_owned()
        }
        Some(_) => return bad("Invalid input for field/attribute networks."),
        None if version >= (2, 37) => {
            return bad(
                "Invalid input for field/attribute server. 'networks' is a required property",
            );
        }
        None => {
            let internal: Vec<&FakeNetwork> = config
                .networks
                .iter()
                .filter(|network| !network.external)
                .collect();
            match internal.as_slice() {
                [network] => network.id.clone(),
                _ => {
                    return (
                        Duration::ZERO,
                        nova_error(
                            StatusCode::CONFLICT,
                            "conflictingRequest",
                            "Multiple possible networks found, use a Network ID to be more specific.",
                        ),
                    );
                }
            }
        }
    };
    let user_data = match server.get("user_data") {
        Some(Value::String(text)) => {
            if text.len() > 65_535 {
                return bad("Invalid input for field/attribute user_data. Value: ... is too long");
            }
            match base64::engine::general_purpose::STANDARD.decode(text) {
                Ok(bytes) => Some(bytes),
                Err(_) => return bad("User data needs to be valid base 64."),
            }
        }
        Some(Value::Null) | None => None,
        Some(_) => return bad("Invalid input for field/attribute user_data."),
    };
    let mut metadata = BTreeMap::new();
    if let Some(items) = server.get("metadata") {
        let Some(items) = items.as_object() else {
            return bad("Invalid input for field/attribute metadata.");
        };
        for (key, value) in items {
            let Some(value) = value.as_str() else {
                return bad("Invalid input for field/attribute metadata. Value must be a string");
            };
            if key.is_empty() || key.len() > 255 || value.len() > 255 {
                return bad("Invalid input for field/attribute metadata.");
            }
            metadata.insert(key.clone(), value.to_owned());
        }
    }
    let key_name = server
        .get("key_name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(key_name) = &key_name
        && !config.keypairs.contains(key_name)
    {
        return bad("Invalid key_name provided.");
    }
    let mut security_groups = Vec::new();
    match server.get("security_groups") {
        Some(Value::Array(groups)) => {
            for group in groups {
                let Some(name) = group.get("name").and_then(Value::as_str) else {
                    return bad("Invalid input for field/attribute security_groups.");
                };
                if name != "default" && !config.security_groups.iter().any(|known| known == name) {
                    return bad(&format!(
                        "Unable to find security_group with name or id '{name}'"
                    ));
                }
                security_groups.push(name.to_owned());
            }
        }
        None => security_groups.push("default".into()),
        Some(_) => return bad("Invalid input for field/attribute security_groups."),
    }
    let live = world
        .servers
        .iter()
        .filter(|server| server.status != "DELETED")
        .count();
    if live >= config.max_servers {
        return (
            Duration::ZERO,
            nova_error(
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!(
                    "Quota exceeded for instances: Requested 1, but already used {live} of {} instances",
                    config.max_servers
                ),
            ),
        );
    }
    let network = config
        .networks
        .iter()
        .find(|network| network.id == network_id)
        .unwrap();
    world.leases += 1;
    let id = world.uuid();
    let port_id = world.uuid();
    let faults = world.faults.clone();
    let status = if faults.fail_after_reads == Some(0) {
        "ERROR"
    } else {
        "BUILD"
    };
    world.servers.push(FakeServer {
        id: id.clone(),
        name: name.to_owned(),
        status: status.into(),
        image_id: image_id.to_owned(),
        flavor_id: flavor_id.to_owned(),
        network_id: network_id.clone(),
        network_name: network.name.clone(),
        fixed_ip: Ipv4Addr::from(u32::from(network.first) + world.leases - 1),
        port_id,
        metadata,
        user_data,
        key_name,
        security_groups: security_groups.clone(),
        created: Utc::now(),
        reads: 0,
        fail_after_reads: faults.fail_after_reads,
        stall: faults.stall_build,
    });
    if world.faults.create_errors_after_creating > 0 {
        world.faults.create_errors_after_creating -= 1;
        return (
            Duration::ZERO,
            (
                StatusCode::BAD_GATEWAY,
                vec![("Content-Type", "text/html".to_owned())],
                "<html><body><h1>502 Bad Gateway</h1></body></html>".to_owned(),
            ),
        );
    }
    let base = format!("http://{}/compute/v2.1", shared.addr);
    let reply = (
        StatusCode::ACCEPTED,
        vec![
            ("Content-Type", "application/json".to_owned()),
            ("Location", format!("{base}/servers/{id}")),
        ],
        json!({ "server": {
            "id": id,
            "links": server_links(&base, &id),
            "OS-DCF:diskConfig": "MANUAL",
            "security_groups": security_groups.iter().map(|name| json!({ "name": name })).collect::<Vec<_>>(),
            "adminPass": "kJTmMkszoB6A",
        }})
        .to_string(),
    );
    (faults.slow_create, reply)
}

fn image_document(id: &str, name: &str) -> Value {
    json!({
        "id": id, "name": name, "status": "active", "visibility": "public",
        "disk_format": "qcow2", "container_format": "bare", "size": 629_145_600,
        "min_disk": 0, "min_ram": 0, "checksum": "d41d8cd98f00b204e9800998ecf8427e",
        "owner": "8e2f0c4b6a1d4e3f9b7a5c3e1d0f2a4b", "protected": false, "os_hidden": false,
        "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
        "tags": [], "self": format!("/v2/images/{id}"), "file": format!("/v2/images/{id}/file"),
        "schema": "/v2/schemas/image",
    })
}

fn image(shared: &Shared, method: &Method, rest: &[&str], query: &[(String, String)]) -> Reply {
    let not_found = (
        StatusCode::NOT_FOUND,
        vec![("Content-Type", "text/html; charset=UTF-8".to_owned())],
        "<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n  <h1>404 Not Found</h1>\n  The resource could not be found.<br /><br />\n\n\n\n </body>\n</html>".to_owned(),
    );
    match (method, rest) {
        (&Method::GET, ["images"]) => {
            let name = param(query, "name");
            let images: Vec<Value> = shared
                .config
                .images
                .iter()
                .filter(|(_, image_name)| name.is_none_or(|name| name == image_name))
                .map(|(id, name)| image_document(id, name))
                .collect();
            json_reply(
                StatusCode::OK,
                json!({ "images": images, "schema": "/v2/schemas/images", "first": "/v2/images" }),
            )
        }
        (&Method::GET, ["images", id]) => match shared
            .config
            .images
            .iter()
            .find(|(image_id, _)| image_id == id)
        {
            Some((id, name)) => json_reply(StatusCode::OK, image_document(id, name)),
            None => not_found,
        },
        _ => not_found,
    }
}

fn network_document(network: &FakeNetwork) -> Value {
    json!({
        "id": network.id, "name": network.name, "status": "ACTIVE", "admin_state_up": true,
        "subnets": [format!("{}-subnet", network.name)], "shared": false,
        "router:external": network.external, "mtu": 1450, "port_security_enabled": true,
        "tenant_id": "8e2f0c4b6a1d4e3f9b7a5c3e1d0f2a4b", "project_id": "8e2f0c4b6a1d4e3f9b7a5c3e1d0f2a4b",
        "availability_zones": ["nova"], "availability_zone_hints": [], "description": "",
        "ipv4_address_scope": null, "ipv6_address_scope": null, "is_default": network.external,
        "l2_adjacency": true, "qos_policy_id": null, "revision_number": 1, "tags": [],
        "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
    })
}

fn floating_ip_document(world: &World, floating_ip: &FakeFloatingIp) -> Value {
    let fixed = floating_ip.port_id.as_ref().and_then(|port| {
        world
            .servers
            .iter()
            .find(|server| &server.port_id == port && server.status != "DELETED")
            .map(|server| server.fixed_ip.to_string())
    });
    json!({
        "id": floating_ip.id,
        "floating_ip_address": floating_ip.address.to_string(),
        "floating_network_id": floating_ip.network_id,
        "port_id": floating_ip.port_id,
        "fixed_ip_address": fixed,
        "router_id": floating_ip.port_id.as_ref().map(|_| "0c4e5f3a-1b2d-4c6e-8a0b-2d4f6a8c0e2a"),
        "status": if floating_ip.port_id.is_some() { "ACTIVE" } else { "DOWN" },
        "description": floating_ip.description,
        "tenant_id": "8e2f0c4b6a1d4e3f9b7a5c3e1d0f2a4b",
        "project_id": "8e2f0c4b6a1d4e3f9b7a5c3e1d0f2a4b",
        "dns_domain": "", "dns_name": "", "port_details": null, "port_forwardings": [],
        "qos_policy_id": null, "revision_number": 1, "tags": [],
        "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
    })
}

fn network(
    shared: &Shared,
    world: &mut World,
    method: &Method,
    rest: &[&str],
    query: &[(String, String)],
    body: &[u8],
) -> Reply {
    let config = &shared.config;
    let matches = |key: &str, value: &str| param(query, key).is_none_or(|wanted| wanted == value);
    match (method, rest) {
        (&Method::GET, ["networks"]) => {
            let networks: Vec<Value> = config
                .networks
                .iter()
                .filter(|network| {
                    matches("id", &network.id)
                        && matches("name", &network.name)
                        && param(query, "router:external").is_none_or(|wanted| {
                            wanted.eq_ignore_ascii_case(&network.external.to_string())
                        })
                })
                .map(network_document)
                .collect();
            json_reply(StatusCode::OK, json!({ "networks": networks }))
        }
        (&Method::GET, ["networks", id]) => {
            match config.networks.iter().find(|network| network.id == *id) {
                Some(network) => json_reply(
                    StatusCode::OK,
                    json!({ "network": network_document(network) }),
                ),
                None => neutron_error(
                    StatusCode::NOT_FOUND,
                    "NetworkNotFound",
                    &format!("Network {id} could not be found."),
                ),
            }
        }
        (&Method::GET, ["ports"]) => {
            let ports: Vec<Value> = world
                .servers
                .iter()
                .filter(|server| server.status != "DELETED")
                .filter(|server| matches("device_id", &server.id) && matches("network_id", &server.network_id) && matches("id", &server.port_id))
                .map(|server| json!({
                    "id": server.port_id, "name": "", "network_id": server.network_id,
                    "device_id": server.id, "device_owner": "compute:nova",
                    "mac_address": "fa:16:3e:00:00:01", "status": "ACTIVE", "admin_state_up": true,
                    "fixed_ips": [{ "subnet_id": "private-subnet", "ip_address": server.fixed_ip.to_string() }],
                    "tenant_id": "8e2f0c4b6a1d4e3f9b7a5c3e1d0f2a4b", "project_id": "8e2f0c4b6a1d4e3f9b7a5c3e1d0f2a4b",
                    "security_groups": [], "binding:vnic_type": "normal", "tags": [], "revision_number": 1,
                }))
                .collect();
            json_reply(StatusCode::OK, json!({ "ports": ports }))
        }
        (&Method::GET, ["floatingips"]) => {
            let floating_ips: Vec<Value> = world
                .floating_ips
                .iter()
                .filter(|floating_ip| {
                    matches("floating_network_id", &floating_ip.network_id)
                        && matches(
                            "port_id",
                            floating_ip.port_id.as_deref().unwrap_or_default(),
                        )
                        && matches("description", &floating_ip.description)
                        && matches("id", &floating_ip.id)
                })
                .map(|floating_ip| floating_ip_document(world, floating_ip))
                .collect();
            json_reply(StatusCode::OK, json!({ "floatingips": floating_ips }))
        }
        (&Method::GET, ["floatingips", id]) => match world
            .floating_ips
            .iter()
            .find(|floating_ip| floating_ip.id == *id)
        {
            Some(floating_ip) => json_reply(
                StatusCode::OK,
                json!({ "floatingip": floating_ip_document(world, floating_ip) }),
            ),
            None => neutron_error(
                StatusCode::NOT_FOUND,
                "FloatingIPNotFound",
                &format!("Floating IP {id} could not be found"),
            ),
        },
        (&Method::POST, ["floatingips"]) => {
            let Ok(request) = serde_json::from_slice::<Value>(body) else {
                return neutron_error(
                    StatusCode::BAD_REQUEST,
                    "HTTPBadRequest",
                    "Malformed request body",
                );
            };
            let Some(wanted) = request.get("floatingip") else {
                return neutron_error(
                    StatusCode::BAD_REQUEST,
                    "HTTPBadRequest",
                    "Resource body required",
                );
            };
            let Some(network_id) = wanted.get("floating_network_id").and_then(Value::as_str) else {
                return neutron_error(
                    StatusCode::BAD_REQUEST,
                    "HTTPBadRequest",
                    "Failed to parse request. Required attribute 'floating_network_id' not specified",
                );
            };
            let Some(pool) = config
                .networks
                .iter()
                .find(|network| network.id == network_id && network.external)
            else {
                return neutron_error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!(
                        "Bad floatingip request: Network {network_id} is not a valid external network."
                    ),
                );
            };
            let port_id = wanted
                .get("port_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(port) = &port_id
                && !world
                    .servers
                    .iter()
                    .any(|server| &server.port_id == port && server.status != "DELETED")
            {
                return neutron_error(
                    StatusCode::NOT_FOUND,
                    "PortNotFound",
                    &format!("Port {port} could not be found."),
                );
            }
            if world.floating_ips.len() >= config.max_floating_ips {
                return neutron_error(
                    StatusCode::CONFLICT,
                    "OverQuota",
                    "Quota exceeded for resources: ['floatingip'].",
                );
            }
            let description = wanted
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            world.floating_leases += 1;
            let id = world.uuid();
            let floating_ip = FakeFloatingIp {
                id,
                address: Ipv4Addr::from(u32::from(pool.first) + world.floating_leases - 1),
                network_id: network_id.to_owned(),
                port_id,
                description,
            };
            world.floating_ips.push(floating_ip.clone());
            if world.faults.floating_ip_errors_after_creating > 0 {
                world.faults.floating_ip_errors_after_creating -= 1;
                return (
                    StatusCode::BAD_GATEWAY,
                    vec![("Content-Type", "text/html".to_owned())],
                    "<html><body><h1>502 Bad Gateway</h1></body></html>".to_owned(),
                );
            }
            json_reply(
                StatusCode::CREATED,
                json!({ "floatingip": floating_ip_document(world, &floating_ip) }),
            )
        }
        (&Method::PUT, ["floatingips", id]) => {
            let Ok(request) = serde_json::from_slice::<Value>(body) else {
                return neutron_error(
                    StatusCode::BAD_REQUEST,
                    "HTTPBadRequest",
                    "Malformed request body",
                );
            };
            let port_id = request
                .pointer("/floatingip/port_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(port) = &port_id
                && !world
                    .servers
                    .iter()
                    .any(|server| &server.port_id == port && server.status != "DELETED")
            {
                return neutron_error(
                    StatusCode::NOT_FOUND,
                    "PortNotFound",
                    &format!("Port {port} could not be found."),
                );
            }
            let Some(at) = world
                .floating_ips
                .iter()
                .position(|floating_ip| floating_ip.id == *id)
            else {
                return neutron_error(
                    StatusCode::NOT_FOUND,
                    "FloatingIPNotFound",
                    &format!("Floating IP {id} could not be found"),
                );
            };
            world.floating_ips[at].port_id = port_id;
            let floating_ip = world.floating_ips[at].clone();
            json_reply(
                StatusCode::OK,
                json!({ "floatingip": floating_ip_document(world, &floating_ip) }),
            )
        }
        (&Method::DELETE, ["floatingips", id]) => {
            let before = world.floating_ips.len();
            world
                .floating_ips
                .retain(|floating_ip| floating_ip.id != *id);
            if world.floating_ips.len() == before {
                neutron_error(
                    StatusCode::NOT_FOUND,
                    "FloatingIPNotFound",
                    &format!("Floating IP {id} could not be found"),
                )
            } else {
                (StatusCode::NO_CONTENT, Vec::new(), String::new())
            }
        }
        (&Method::GET, ["security-groups"]) => {
            let groups: Vec<Value> = std::iter::once("default")
                .chain(config.security_groups.iter().map(String::as_str))
                .filter(|name| matches("name", name))
                .map(|name| json!({
                    "id": format!("sg-{name}"), "name": name, "description": "", "stateful": true,
                    "security_group_rules": [], "tenant_id": "8e2f0c4b6a1d4e3f9b7a5c3e1d0f2a4b",
                    "project_id": "8e2f0c4b6a1d4e3f9b7a5c3e1d0f2a4b", "tags": [], "revision_number": 1,
                }))
                .collect();
            json_reply(StatusCode::OK, json!({ "security_groups": groups }))
        }
        _ => neutron_error(
            StatusCode::NOT_FOUND,
            "HTTPNotFound",
            "The resource could not be found.",
        ),
    }
}
