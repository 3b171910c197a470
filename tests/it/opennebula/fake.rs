//! A faithful local OpenNebula OCCI 0.x server (`spec/clouds.md` §7 and §10.1): Basic auth
//! with the SHA-1 of the password, `POST /compute` parsed and validated, VMs that go
//! `PENDING` -> `ACTIVE` -> `DONE`, the answers of §7.2, and switches for the faults a driver
//! must survive. It binds 127.0.0.1:0 on the test's runtime and stops when dropped.
//!
//! Where OpenNebula releases differ it answers as OpenNebula 3.8's `occi-server` does: a
//! refused create (an instance type the server does not enable, an image or network `oned`
//! does not know) is **500** with OpenNebula's message as plain text (`halt 500, message`); a
//! create answers `PENDING`, never `ACTIVE`; deleted (`DONE`) VMs are left out of
//! `GET /compute` but still answer `GET /compute/<id>` as `DONE`; deleting a `DONE` VM is
//! **500** (`oned`: wrong state); a 401 has an empty body (`halt 401`). A body the server
//! cannot read at all (not XML, no `COMPUTE`) is 400.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What the server accepts; [`FakeConfig::new`] matches the test settings of this module.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// The OpenNebula user.
    pub user: String,
    /// The password in clear (clients send its SHA-1).
    pub password: String,
    /// `INSTANCE_TYPE` values accepted.
    pub instance_types: Vec<String>,
    /// Image ids (`/storage/<id>`).
    pub images: Vec<u64>,
    /// Network ids and the first address each leases (`/network/<id>`).
    pub networks: Vec<(u64, Ipv4Addr)>,
    /// At which `GET /compute/<id>` a VM is `ACTIVE` (0 and 1 alike: the first); the create
    /// answer is `PENDING` whatever this is, as 3.8's.
    pub reads_until_active: u32,
    /// Whether `GET /compute` still lists deleted VMs as `DONE` (OpenNebula 2.x); 3.8 leaves
    /// them out. `GET /compute/<id>` answers a deleted VM as `DONE` either way.
    pub keep_done: bool,
}

impl FakeConfig {
    /// User `oneadmin` / `opennebula`, types small/medium/large, image 42, network 1
    /// leasing from 192.168.0.17, VMs `PENDING` when created and `ACTIVE` at their first read,
    /// deleted VMs left out of the listing (3.8).
    pub fn new() -> Self {
        FakeConfig {
            user: "oneadmin".into(),
            password: "opennebula".into(),
            instance_types: vec!["small".into(), "medium".into(), "large".into()],
            images: vec![42],
            networks: vec![(1, Ipv4Addr::new(192, 168, 0, 17))],
            reads_until_active: 1,
            keep_done: false,
        }
    }
}

/// Fault switches; all off by default. VMs take the VM-related ones when they are created.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer every request 401.
    pub unauthorized: bool,
    /// Answer the next N `POST /compute` with 500 without creating anything: the server
    /// failing, not refusing (Sinatra's HTML error page, as when `occi-server` raises).
    pub create_errors: u32,
    /// Create the VM of the next N `POST /compute`, then fail as `create_errors` does (lost
    /// answers).
    pub create_errors_after_creating: u32,
    /// Create the VM of the next N `POST /compute`, then answer a 3.8 refusal (500 with a
    /// message) anyway: a server whose refusal cannot be trusted.
    pub refusals_after_creating: u32,
    /// Answer the next N `DELETE /compute/<id>` of a live VM with a 3.8 refusal (500 with a
    /// message), deleting nothing.
    pub delete_refusals: u32,
    /// Wait this long before answering `POST /compute` (the VM is created first).
    pub slow_create: Duration,
    /// Wait this long before answering every `GET`.
    pub slow_reads: Duration,
    /// Answer the next N `GET /compute/<id>` with 503.
    pub read_errors: u32,
    /// Leave `IP` out of the create answer and of a VM's first N reads.
    pub ip_after_reads: u32,
    /// The VM turns `FAILED` at its Nth read (0: already in the create answer).
    pub fail_after_reads: Option<u32>,
}

/// A VM as the server keeps it.
#[derive(Debug, Clone)]
pub struct Vm {
    /// The numeric id.
    pub id: u64,
    /// `NAME`.
    pub name: String,
    /// `INSTANCE_TYPE`.
    pub instance_type: String,
    /// From `DISK/STORAGE@href`.
    pub image_id: u64,
    /// From `NIC/NETWORK@href`.
    pub network_id: u64,
    /// The leased address.
    pub ip: Ipv4Addr,
    /// `INIT`, `PENDING`, `ACTIVE`, `FAILED`, `DONE`.
    pub state: String,
    /// `OS/TYPE@arch` of the request, which OCCI honours with the `common.erb` addition of
    /// ConPaaS's installation guide.
    pub arch: Option<String>,
    /// `GET /compute/<id>` answered so far.
    pub reads: u32,
    /// `CONTEXT`, in request order, `$NAME` and `$NIC[IP]` substituted.
    pub context: Vec<(String, String)>,
    /// `CONTEXT/USERDATA`, hex-decoded: the boot script.
    pub user_data: Option<Vec<u8>>,
    reads_until_active: u32,
    ip_after_reads: u32,
    fail_after_reads: Option<u32>,
}

impl Vm {
    /// A context variable.
    pub fn context(&self, key: &str) -> Option<&str> {
        self.context
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `POST`...
    pub method: String,
    /// The path.
    pub path: String,
    /// Whether the credentials were right.
    pub authorized: bool,
    /// The `Content-Type` header, if any (1.2 sent none).
    pub content_type: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
}

#[derive(Debug)]
struct Shared {
    config: FakeConfig,
    /// `http` or `https`, for the URLs in answers.
    scheme: &'static str,
    addr: SocketAddr,
    state: Mutex<World>,
}

#[derive(Debug, Default)]
struct World {
    faults: Faults,
    vms: Vec<Vm>,
    next_id: u64,
    leases: u32,
    seen: Vec<Seen>,
}

/// A running fake OCCI server.
pub struct FakeOcci {
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for FakeOcci {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl FakeOcci {
    /// Starts a server with `config` on 127.0.0.1 at a free port, on the current runtime.
    pub async fn start(config: FakeConfig) -> FakeOcci {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        FakeOcci::serve(listener, "http", config)
    }

    /// [`FakeOcci::start`] over TLS, with a certificate for `localhost` and `127.0.0.1`
    /// issued by a fresh CA, whose certificate is returned for the client to trust.
    pub async fn start_tls(config: FakeConfig) -> (FakeOcci, CertificateDer<'static>) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "fake OCCI CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
        let listener = TlsListener {
            tcp: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
        };
        (FakeOcci::serve(listener, "https", config), ca.der().clone())
    }

    fn serve<L>(listener: L, scheme: &'static str, config: FakeConfig) -> FakeOcci
    where
        L: axum::serve::Listener<Addr = SocketAddr>,
    {
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            config,
            scheme,
            addr,
            state: Mutex::new(World {
                // OpenNebula ids of a fresh install start at 0; start higher so a stray "0"
                // is never mistaken for a VM.
                next_id: 40,
                ..World::default()
            }),
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
        FakeOcci {
            shared,
            stop: Some(stop),
        }
    }

    /// `http://127.0.0.1:<port>` (`https` for [`FakeOcci::start_tls`]).
    pub fn url(&self) -> String {
        format!("{}://{}", self.shared.scheme, self.shared.addr)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.shared.addr.port()
    }

    /// Replaces the fault switches.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.state.lock().unwrap().faults = faults;
    }

    /// Every VM ever created, deleted (`DONE`) ones included.
    pub fn vms(&self) -> Vec<Vm> {
        self.shared.state.lock().unwrap().vms.clone()
    }

    /// The VM with id `vmid`.
    pub fn vm(&self, vmid: &str) -> Option<Vm> {
        self.vms().into_iter().find(|vm| vm.id.to_string() == vmid)
    }

    /// The VMs not `DONE`.
    pub fn live_vms(&self) -> Vec<Vm> {
        self.vms()
            .into_iter()
            .filter(|vm| vm.state != "DONE")
            .collect()
    }

    /// Every request received, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.state.lock().unwrap().seen.clone()
    }

    /// How many `method path` requests were received.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|seen| seen.method == method && seen.path == path)
            .count()
    }

    /// How many `method` requests were received.
    pub fn count_method(&self, method: &str) -> usize {
        self.seen()
            .iter()
            .filter(|seen| seen.method == method)
            .count()
    }
}

/// The lower-case hex SHA-1 of a password, as OCCI's default auth expects it.
pub fn sha1_hex(password: &str) -> String {
    use sha1::Digest as _;
    hex::encode(sha1::Sha1::digest(password.as_bytes()))
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn xml(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// What Sinatra answers when a route raises: the server failed, it did not decide anything.
fn crashed() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/html")],
        "<h1>Internal Server Error</h1>",
    )
        .into_response()
}

fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain")],
        body.to_owned(),
    )
        .into_response()
}

fn authorized(config: &FakeConfig, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return false;
    };
    match decoded.split_once(':') {
        Some((user, password)) => user == config.user && password == sha1_hex(&config.password),
        None => false,
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
    let ok = authorized(&shared.config, &headers);
    let (delay, response) = {
        let mut world = shared.state.lock().unwrap();
        world.seen.push(Seen {
            method: method.to_string(),
            path: path.clone(),
            authorized: ok,
            content_type: header_text(&headers, header::CONTENT_TYPE),
            user_agent: header_text(&headers, header::USER_AGENT),
        });
        if !ok || world.faults.unauthorized {
            // 3.8: `halt 401`, no body.
            (Duration::ZERO, StatusCode::UNAUTHORIZED.into_response())
        } else {
            let delay = match method {
                Method::POST => world.faults.slow_create,
                Method::GET => world.faults.slow_reads,
                _ => Duration::ZERO,
            };
            (delay, route(&shared, &mut world, &method, &path, &body))
        }
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

fn route(shared: &Shared, world: &mut World, method: &Method, path: &str, body: &[u8]) -> Response {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::POST, ["compute"]) => create(shared, world, body),
        (&Method::GET, ["compute"]) => {
            let entries: String = world
                .vms
                .iter()
                .filter(|vm| shared.config.keep_done || vm.state != "DONE")
                .map(|vm| {
                    format!(
                        "<COMPUTE href=\"{}://{}/compute/{}\" name=\"{}\"/>",
                        shared.scheme,
                        shared.addr,
                        vm.id,
                        esc(&vm.name)
                    )
                })
                .collect();
            xml(
                StatusCode::OK,
                format!("<COMPUTE_COLLECTION>{entries}</COMPUTE_COLLECTION>"),
            )
        }
        (&Method::GET, ["compute", id]) => {
            if world.faults.read_errors > 0 {
                world.faults.read_errors -= 1;
                return text(StatusCode::SERVICE_UNAVAILABLE, "oned is not answering");
            }
            let Some(vm) = find(world, id) else {
                return text(
                    StatusCode::NOT_FOUND,
                    "Error: [VirtualMachineInfo] Error getting virtual machine",
                );
            };
            if vm.state != "DONE" {
                vm.reads += 1;
                if vm.fail_after_reads.is_some_and(|n| vm.reads >= n) {
                    vm.state = "FAILED".into();
                } else if vm.state == "PENDING" && vm.reads >= vm.reads_until_active {
                    vm.state = "ACTIVE".into();
                }
            }
            let document = compute_document(shared, vm);
            xml(StatusCode::OK, document)
        }
        (&Method::DELETE, ["compute", id]) => {
            let refuse = world.faults.delete_refusals > 0;
            let Some(vm) = find(world, id) else {
                return text(
                    StatusCode::NOT_FOUND,
                    &format!("[VirtualMachineAction] Error getting virtual machine [{id}]."),
                );
            };
            if vm.state == "DONE" {
                // oned refuses to finalize a VM already done; OCCI maps that to 500.
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "[VirtualMachineAction] Wrong state to perform action",
                );
            }
            if refuse {
                world.faults.delete_refusals -= 1;
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "[VirtualMachineAction] Error performing action: the host does not answer",
                );
            }
            vm.state = "DONE".into();
            StatusCode::NO_CONTENT.into_response()
        }
        (&Method::GET, ["storage"]) => {
            collection(shared, "STORAGE", "storage", &shared.config.images)
        }
        (&Method::GET, ["network"]) => {
            let ids: Vec<u64> = shared.config.networks.iter().map(|(id, _)| *id).collect();
            collection(shared, "NETWORK", "network", &ids)
        }
        (&Method::GET, ["instance_type"]) => {
            let entries: String = shared
                .config
                .instance_types
                .iter()
                .map(|name| {
                    format!(
                        "<INSTANCE_TYPE href=\"{}://{}/instance_type/{name}\" name=\"{name}\"/>",
                        shared.scheme, shared.addr
                    )
                })
                .collect();
            xml(
                StatusCode::OK,
                format!("<INSTANCE_TYPE_COLLECTION>{entries}</INSTANCE_TYPE_COLLECTION>"),
            )
        }
        (_, ["compute"] | ["compute", _] | ["storage"] | ["network"] | ["instance_type"]) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

fn find<'a>(world: &'a mut World, id: &str) -> Option<&'a mut Vm> {
    let id: u64 = id.parse().ok()?;
    world.vms.iter_mut().find(|vm| vm.id == id)
}

fn collection(shared: &Shared, element: &str, kind: &str, ids: &[u64]) -> Response {
    let entries: String = ids
        .iter()
        .map(|id| {
            format!(
                "<{element} href=\"{}://{}/{kind}/{id}\" name=\"{kind}{id}\"/>",
                shared.scheme, shared.addr
            )
        })
        .collect();
    xml(
        StatusCode::OK,
        format!("<{element}_COLLECTION>{entries}</{element}_COLLECTION>"),
    )
}

/// The `COMPUTE` document of §7.2.
fn compute_document(shared: &Shared, vm: &Vm) -> String {
    let host = format!("{}://{}", shared.scheme, shared.addr);
    let octets = vm.ip.octets();
    let mac = format!(
        "02:00:{:02x}:{:02x}:{:02x}:{:02x}",
        octets[0], octets[1], octets[2], octets[3]
    );
    let ip = if vm.reads >= vm.ip_after_reads {
        format!("<IP>{}</IP>", vm.ip)
    } else {
        String::new()
    };
    let context: String = vm
        .context
        .iter()
        .map(|(key, value)| format!("<{key}>{}</{key}>", esc(value)))
        .collect();
    format!(
        "<COMPUTE href=\"{host}/compute/{id}\"><ID>{id}</ID><NAME>{name}</NAME>\
         <INSTANCE_TYPE>{instance_type}</INSTANCE_TYPE><STATE>{state}</STATE>\
         <DISK><STORAGE href=\"{host}/storage/{image}\" name=\"ConPaaS\"/><TYPE>DISK</TYPE><TARGET>hda</TARGET></DISK>\
         <NIC><NETWORK href=\"{host}/network/{network}\" name=\"public\"/>{ip}<MAC>{mac}</MAC></NIC>\
         <CONTEXT>{context}</CONTEXT></COMPUTE>",
        id = vm.id,
        name = esc(&vm.name),
        instance_type = esc(&vm.instance_type),
        state = vm.state,
        image = vm.image_id,
        network = vm.network_id,
    )
}

/// The id at the end of a reference (`/storage/42` or `http://host/storage/42`).
fn href_id(href: &str, kind: &str) -> Option<u64> {
    href.rsplit_once(&format!("/{kind}/"))?.1.parse().ok()
}

fn child<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    node.children()
        .find(|child| child.is_element() && child.tag_name().name() == name)
}

fn create(shared: &Shared, world: &mut World, body: &[u8]) -> Response {
    if world.faults.create_errors > 0 {
        world.faults.create_errors -= 1;
        return crashed();
    }
    let vm = match parse_request(shared, world, body) {
        Ok(vm) => vm,
        Err(Invalid::Unreadable(message)) => return text(StatusCode::BAD_REQUEST, &message),
        Err(Invalid::Refused(message)) => {
            return text(StatusCode::INTERNAL_SERVER_ERROR, &message);
        }
    };
    world.next_id += 1;
    world.leases += 1;
    let document = compute_document(shared, &vm);
    world.vms.push(vm);
    if world.faults.create_errors_after_creating > 0 {
        world.faults.create_errors_after_creating -= 1;
        return crashed();
    }
    if world.faults.refusals_after_creating > 0 {
        world.faults.refusals_after_creating -= 1;
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "[VirtualMachineAllocate] Error allocating a new virtual machine. Quota exceeded",
        );
    }
    xml(StatusCode::CREATED, document)
}

/// Why a create makes no VM.
enum Invalid {
    /// The server cannot read the request: 400.
    Unreadable(String),
    /// OCCI or oned refuses what it asks for: 500 with the message, as 3.8.
    Refused(String),
}

impl From<&str> for Invalid {
    fn from(message: &str) -> Self {
        Invalid::Unreadable(message.to_owned())
    }
}

/// Validates a `COMPUTE` request as §10.1 asks, and makes its VM (not yet stored).
fn parse_request(shared: &Shared, world: &World, body: &[u8]) -> Result<Vm, Invalid> {
    let config = &shared.config;
    let text = std::str::from_utf8(body).map_err(|_| Invalid::from("the body is not UTF-8"))?;
    let document = roxmltree::Document::parse(text)
        .map_err(|error| Invalid::Unreadable(format!("malformed XML: {error}")))?;
    let compute = document.root_element();
    if compute.tag_name().name() != "COMPUTE" {
        return Err(Invalid::Unreadable(format!(
            "expected COMPUTE, got {}",
            compute.tag_name().name()
        )));
    }
    let name = child(compute, "NAME")
        .and_then(|node| node.text())
        .filter(|name| !name.trim().is_empty())
        .ok_or("NAME is missing")?
        .to_owned();
    let instance_type = child(compute, "INSTANCE_TYPE")
        .and_then(|node| node.text())
        .ok_or("INSTANCE_TYPE is missing")?
        .to_owned();
    if !config.instance_types.contains(&instance_type) {
        // occi-server 3.8 (VirtualMachineOCCI#to_one_template): no template for the type.
        return Err(Invalid::Refused("Bad instance type".to_owned()));
    }
    let arch = match child(compute, "OS") {
        Some(os) => Some(
            child(os, "TYPE")
                .and_then(|kind| kind.attribute("arch"))
                .filter(|arch| !arch.trim().is_empty())
                .ok_or("OS without TYPE@arch")?
                .to_owned(),
        ),
        None => None,
    };
    let image_id = child(compute, "DISK")
        .and_then(|disk| child(disk, "STORAGE"))
        .and_then(|storage| storage.attribute("href"))
        .and_then(|href| href_id(href, "storage"))
        .ok_or("DISK/STORAGE@href is missing or malformed")?;
    if !config.images.contains(&image_id) {
        return Err(Invalid::Refused(format!(
            "[VirtualMachineAllocate] Error allocating a new virtual machine. Error getting \
             image [{image_id}]: unknown image {image_id}."
        )));
    }
    let network_id = child(compute, "NIC")
        .and_then(|nic| child(nic, "NETWORK"))
        .and_then(|network| network.attribute("href"))
        .and_then(|href| href_id(href, "network"))
        .ok_or("NIC/NETWORK@href is missing or malformed")?;
    let first = config
        .networks
        .iter()
        .find(|(id, _)| *id == network_id)
        .map(|(_, first)| *first)
        .ok_or_else(|| {
            Invalid::Refused(format!(
                "[VirtualMachineAllocate] Error allocating a new virtual machine. Error getting \
                 virtual network [{network_id}]: unknown network {network_id}."
            ))
        })?;
    let ip = Ipv4Addr::from(u32::from(first) + world.leases);
    let mut context = Vec::new();
    let mut user_data = None;
    if let Some(node) = child(compute, "CONTEXT") {
        for variable in node.children().filter(|node| node.is_element()) {
            let key = variable.tag_name().name().to_owned();
            let value = variable
                .text()
                .unwrap_or_default()
                .replace("$NAME", &name)
                .replace("$NIC[IP]", &ip.to_string());
            if key == "USERDATA" {
                user_data = Some(
                    hex::decode(value.trim()).map_err(|_| Invalid::from("USERDATA is not hex"))?,
                );
            }
            context.push((key, value));
        }
    }
    let faults = &world.faults;
    let state = if faults.fail_after_reads == Some(0) {
        "FAILED"
    } else {
        "PENDING"
    };
    Ok(Vm {
        id: world.next_id + 1,
        name,
        instance_type,
        image_id,
        network_id,
        ip,
        state: state.into(),
        arch,
        reads: 0,
        context,
        user_data,
        reads_until_active: config.reads_until_active,
        ip_after_reads: faults.ip_after_reads,
        fail_after_reads: faults.fail_after_reads,
    })
}

/// TLS over TCP for axum: a failed handshake (a client refusing the certificate) is dropped
/// and the next connection accepted.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
