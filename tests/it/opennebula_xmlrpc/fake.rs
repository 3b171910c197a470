//! A faithful local OpenNebula XML-RPC endpoint (`POST /RPC2`), written from OpenNebula's
//! published XML-RPC reference and its sources (release 7.2.0: `src/rm`, `Request.cc`'s
//! messages, `Template::merge`, `VirtualMachine::to_xml_extended` / `to_xml_short`,
//! `DispatchManager::terminate`), and checked against OpenNebula's own client and schemas:
//! `tests/support/pyone_check.py` drives it with pyone and validates every VM document it
//! serves against `vm.xsd` / `vm_pool.xsd` (`pyone.rs`).
//!
//! What it does as oned does: every call begins with the session `USER:PASSWORD` (a wrong one
//! is `AUTHENTICATION`, 0x100, "User couldn't be authenticated, aborting call."); answers are
//! `[true, result, 0]` or `[false, message, code, id, 0]`; `one.template.instantiate`
//! *replaces* a template's attribute (a whole `CONTEXT`) with the extra template's of the same
//! name; templates sent as XML (`<TEMPLATE>…`) are read, the text syntax is refused as a parse
//! error (the driver and pyone send XML); attributes oned does not know go to the VM's
//! `USER_TEMPLATE`; `$NAME` and `$NIC[IP]` are substituted in the `CONTEXT`, and `ETH0_*`,
//! `DISK_ID` and `TARGET` are added; a NIC's IP is leased at creation; `one.vmpool.info`
//! answers the short document of 5.8+ (its `USER_TEMPLATE` has only `LABELS`); terminating a
//! VM in `PROLOG` or `BOOT` is an `ACTION` refusal, a `DONE` one a success; a quota of VMs is
//! `AUTHORIZATION`. Simplified: a VM lives by its reads (`PENDING`, then `ACTIVE` `PROLOG`,
//! `BOOT`, `RUNNING`), a terminated VM is `DONE` at once (oned passes through `SHUTDOWN` and
//! `EPILOG`), one user owns every VM.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// OpenNebula's error codes.
pub const AUTHENTICATION: i64 = 0x0100;
pub const AUTHORIZATION: i64 = 0x0200;
pub const NO_EXISTS: i64 = 0x0400;
pub const ACTION: i64 = 0x0800;
pub const XML_RPC_API: i64 = 0x1000;
pub const INTERNAL: i64 = 0x2000;
pub const ALLOCATE: i64 = 0x4000;

/// A VM template of the server.
#[derive(Debug, Clone)]
pub struct VmTemplate {
    pub id: u64,
    pub name: String,
    pub image_id: u64,
    pub network_id: u64,
    /// Its `CONTEXT`, which an instantiate's extra `CONTEXT` replaces whole.
    pub context: Vec<(String, String)>,
}

/// What the server accepts; [`FakeConfig::new`] matches this module's tests.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    pub user: String,
    pub uid: u64,
    pub password: String,
    /// Login tokens accepted in place of the password.
    pub tokens: Vec<String>,
    pub templates: Vec<VmTemplate>,
    pub images: Vec<u64>,
    /// Network ids and the first address each leases.
    pub networks: Vec<(u64, Ipv4Addr)>,
    /// At which `one.vm.info` a VM is `RUNNING` (0 and 1 alike: the first); the two reads
    /// before show it in `BOOT` and `PROLOG`, earlier ones `PENDING`.
    pub reads_until_running: u32,
    /// The user's quota of VMs not `DONE`.
    pub max_vms: Option<usize>,
}

impl FakeConfig {
    /// User `conpaas` (uid 5) / `opennebula`, login token `tok3n`; template 7 (`conpaas`:
    /// image 42, network 1, a `CONTEXT` with `NETWORK` and `SSH_PUBLIC_KEY`), image 42, network
    /// 1 leasing from 192.168.0.17; VMs `RUNNING` at their first read; no quota.
    pub fn new() -> Self {
        FakeConfig {
            user: "conpaas".into(),
            uid: 5,
            password: "opennebula".into(),
            tokens: vec!["tok3n".into()],
            templates: vec![VmTemplate {
                id: 7,
                name: "conpaas".into(),
                image_id: 42,
                network_id: 1,
                context: vec![
                    ("NETWORK".into(), "YES".into()),
                    ("SSH_PUBLIC_KEY".into(), "$USER[SSH_PUBLIC_KEY]".into()),
                ],
            }],
            images: vec![42],
            networks: vec![(1, Ipv4Addr::new(192, 168, 0, 17))],
            reads_until_running: 1,
            max_vms: None,
        }
    }
}

/// Fault switches; all off by default.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Refuse every session (`AUTHENTICATION`), even the right one.
    pub unauthorized: bool,
    /// Answer the next N creates with HTTP 503 without creating anything (a proxy in front of
    /// an oned that is down).
    pub create_errors: u32,
    /// Create the VM of the next N creates, then answer 503 (lost answers).
    pub create_errors_after_creating: u32,
    /// Refuse the next N creates with `INTERNAL` ("oned cluster in election mode"), creating
    /// nothing.
    pub create_internal: u32,
    /// Create the VM of the next N creates, then refuse with a quota message anyway.
    pub refusals_after_creating: u32,
    /// Wait this long before answering a create (the VM is made first).
    pub slow_create: Duration,
    /// Wait this long before answering `one.vm.info` and `one.vmpool.info`.
    pub slow_reads: Duration,
    /// Answer the next N `one.vm.info` with HTTP 503.
    pub read_errors: u32,
    /// The VM turns `ACTIVE`/`BOOT_FAILURE` at its Nth read (0: at creation).
    pub fail_after_reads: Option<u32>,
}

/// A VM as the server keeps it.
#[derive(Debug, Clone)]
pub struct Vm {
    pub id: u64,
    pub name: String,
    pub state: u32,
    pub lcm_state: u32,
    pub ip: Ipv4Addr,
    pub image_id: u64,
    pub network_id: u64,
    pub template_id: Option<u64>,
    pub cpu: String,
    pub vcpu: Option<String>,
    pub memory: String,
    /// `CONTEXT` after substitution, with oned's own variables.
    pub context: Vec<(String, String)>,
    /// `USER_TEMPLATE`.
    pub user_template: Vec<(String, String)>,
    /// `one.vm.info` answered so far.
    pub reads: u32,
    pub stime: i64,
    pub etime: i64,
    reads_until_running: u32,
    fail_after_reads: Option<u32>,
}

impl Vm {
    /// A context variable.
    pub fn context(&self, key: &str) -> Option<&str> {
        lookup(&self.context, key)
    }

    /// A user template attribute.
    pub fn user(&self, key: &str) -> Option<&str> {
        lookup(&self.user_template, key)
    }

    /// The boot script, from `CONTEXT/START_SCRIPT_BASE64`.
    pub fn script(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(self.context("START_SCRIPT_BASE64")?)
            .ok()
    }

    /// Whether the VM is `DONE`.
    pub fn is_done(&self) -> bool {
        self.state == 6
    }
}

fn lookup<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}

/// One call the server received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `one.vm.info`...; `HTTP <method> <path>` for what was no XML-RPC call.
    pub method: String,
    /// The parameters after the session, as text.
    pub params: Vec<String>,
    pub authorized: bool,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug)]
struct Shared {
    config: FakeConfig,
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
    /// Every VM and pool document served, for the schema check.
    served: Vec<String>,
}

/// A running fake OpenNebula.
pub struct FakeOne {
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for FakeOne {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl FakeOne {
    /// Starts a server with `config` on 127.0.0.1 at a free port, on the current runtime.
    pub async fn start(config: FakeConfig) -> FakeOne {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            config,
            addr,
            state: Mutex::new(World {
                // A fresh install starts at 0; start higher so a stray "0" is never a VM.
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
        FakeOne {
            shared,
            stop: Some(stop),
        }
    }

    /// `http://127.0.0.1:<port>/RPC2`.
    pub fn url(&self) -> String {
        format!("http://{}/RPC2", self.shared.addr)
    }

    pub fn port(&self) -> u16 {
        self.shared.addr.port()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.state.lock().unwrap().faults = faults;
    }

    /// Every VM ever created, `DONE` ones included.
    pub fn vms(&self) -> Vec<Vm> {
        self.shared.state.lock().unwrap().vms.clone()
    }

    pub fn vm(&self, vmid: &str) -> Option<Vm> {
        self.vms().into_iter().find(|vm| vm.id.to_string() == vmid)
    }

    /// The VMs not `DONE`.
    pub fn live_vms(&self) -> Vec<Vm> {
        self.vms().into_iter().filter(|vm| !vm.is_done()).collect()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.state.lock().unwrap().seen.clone()
    }

    /// How many calls of `method` were received.
    pub fn count(&self, method: &str) -> usize {
        self.seen()
            .iter()
            .filter(|seen| seen.method == method)
            .count()
    }

    /// Every `one.vm.info` and `one.vmpool.info` document served, in order.
    pub fn served_documents(&self) -> Vec<String> {
        self.shared.state.lock().unwrap().served.clone()
    }

    /// Puts a VM into `state`/`lcm_state` (an operator's doing, a host failing).
    pub fn set_state(&self, vmid: &str, state: u32, lcm_state: u32) {
        let mut world = self.shared.state.lock().unwrap();
        let vm = world
            .vms
            .iter_mut()
            .find(|vm| vm.id.to_string() == vmid)
            .unwrap();
        vm.state = state;
        vm.lcm_state = lcm_state;
        // Frozen there: reads no longer move it.
        vm.reads_until_running = u32::MAX;
    }
}

/// An XML-RPC parameter as received.
#[derive(Debug, Clone)]
enum Param {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl Param {
    fn text(&self) -> String {
        match self {
            Param::Str(text) => text.clone(),
            Param::Int(number) => number.to_string(),
            Param::Bool(flag) => flag.to_string(),
        }
    }
}

/// A result value.
enum Out {
    Str(String),
    Int(i64),
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `value` as oned writes template values: CDATA.
fn cdata(value: &str) -> String {
    format!("<![CDATA[{}]]>", value.replace("]]>", "]]]]><![CDATA[>"))
}

fn xml_response(values: &[String]) -> Response {
    let data: String = values
        .iter()
        .map(|value| format!("<value>{value}</value>\r\n"))
        .collect();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<methodResponse>\r\n<params>\r\n\
         <param><value><array><data>\r\n{data}</data></array></value></param>\r\n\
         </params>\r\n</methodResponse>\r\n"
    );
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

fn success(out: Out) -> Response {
    let result = match out {
        Out::Str(text) => format!("<string>{}</string>", esc(&text)),
        Out::Int(number) => format!("<i4>{number}</i4>"),
    };
    xml_response(&["<boolean>1</boolean>".into(), result, "<i4>0</i4>".into()])
}

/// `[false, message, code, object id, replication index]` (`RequestXRPC::make_response`).
fn failure(code: i64, message: &str, id: i64) -> Response {
    xml_response(&[
        "<boolean>0</boolean>".into(),
        format!("<string>{}</string>", esc(message)),
        format!("<i4>{code}</i4>"),
        format!("<i4>{id}</i4>"),
        "<i8>0</i8>".into(),
    ])
}

/// xmlrpc-c's fault (an unknown method, wrong parameters).
fn fault(code: i64, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<methodResponse>\r\n<fault>\r\n<value><struct>\r\n\
         <member><name>faultCode</name>\r\n<value><i4>{code}</i4></value></member>\r\n\
         <member><name>faultString</name>\r\n<value><string>{}</string></value></member>\r\n\
         </struct></value>\r\n</fault>\r\n</methodResponse>\r\n",
        esc(message)
    );
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/html")],
        "<html><body><h1>503 Service Unavailable</h1></body></html>",
    )
        .into_response()
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

fn element_children<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
) -> impl Iterator<Item = roxmltree::Node<'a, 'input>> {
    node.children().filter(|child| child.is_element())
}

fn child<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    element_children(node).find(|child| child.tag_name().name() == name)
}

fn text_of(node: roxmltree::Node<'_, '_>) -> String {
    node.descendants()
        .filter(|part| part.is_text())
        .filter_map(|part| part.text())
        .collect()
}

/// The method name and parameters of a `<methodCall>`.
fn parse_call(body: &[u8]) -> Result<(String, Vec<Param>), String> {
    let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_owned())?;
    let document = roxmltree::Document::parse(text).map_err(|error| error.to_string())?;
    let root = document.root_element();
    if root.tag_name().name() != "methodCall" {
        return Err("no methodCall".into());
    }
    let method = child(root, "methodName")
        .map(text_of)
        .ok_or("no methodName")?;
    let mut params = Vec::new();
    if let Some(list) = child(root, "params") {
        for param in element_children(list) {
            let value = child(param, "value").ok_or("param without value")?;
            let param = match element_children(value).next() {
                None => Param::Str(text_of(value)),
                Some(typed) => match typed.tag_name().name() {
                    "string" => Param::Str(text_of(typed)),
                    "int" | "i4" | "i8" => Param::Int(
                        text_of(typed)
                            .trim()
                            .parse()
                            .map_err(|_| "bad int".to_owned())?,
                    ),
                    "boolean" => Param::Bool(text_of(typed).trim() == "1"),
                    other => return Err(format!("unsupported type {other}")),
                },
            };
            params.push(param);
        }
    }
    Ok((method, params))
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = header_text(&headers, header::CONTENT_TYPE);
    let user_agent = header_text(&headers, header::USER_AGENT);
    if method != Method::POST || uri.path() != "/RPC2" {
        let mut world = shared.state.lock().unwrap();
        world.seen.push(Seen {
            method: format!("HTTP {method} {}", uri.path()),
            params: Vec::new(),
            authorized: false,
            content_type,
            user_agent,
        });
        return if uri.path() == "/RPC2" {
            StatusCode::METHOD_NOT_ALLOWED.into_response()
        } else {
            StatusCode::NOT_FOUND.into_response()
        };
    }
    let Ok((name, params)) = parse_call(&body) else {
        return fault(-503, "Call XML not a proper XML-RPC call");
    };
    let session = match params.first() {
        Some(Param::Str(session)) => session.clone(),
        _ => String::new(),
    };
    let config = &shared.config;
    let authorized = session.split_once(':').is_some_and(|(user, secret)| {
        user == config.user
            && (secret == config.password || config.tokens.iter().any(|token| token == secret))
    });
    let (delay, response) = {
        let mut world = shared.state.lock().unwrap();
        world.seen.push(Seen {
            method: name.clone(),
            params: params.iter().skip(1).map(Param::text).collect(),
            authorized,
            content_type,
            user_agent,
        });
        if !authorized || world.faults.unauthorized {
            (
                Duration::ZERO,
                failure(
                    AUTHENTICATION,
                    &format!("[{name}] User couldn't be authenticated, aborting call."),
                    -1,
                ),
            )
        } else {
            let delay = match name.as_str() {
                "one.template.instantiate" | "one.vm.allocate" => world.faults.slow_create,
                "one.vm.info" | "one.vmpool.info" => world.faults.slow_reads,
                _ => Duration::ZERO,
            };
            (
                delay,
                route(&shared, &mut world, &name, &params[1.min(params.len())..]),
            )
        }
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
}

fn int(params: &[Param], index: usize) -> Option<i64> {
    match params.get(index) {
        Some(Param::Int(number)) => Some(*number),
        _ => None,
    }
}

fn string(params: &[Param], index: usize) -> Option<String> {
    match params.get(index) {
        Some(Param::Str(text)) => Some(text.clone()),
        _ => None,
    }
}

fn type_fault(name: &str) -> Response {
    fault(
        -501,
        &format!("Type mismatch in the parameters of {name}: see its signature"),
    )
}

fn route(shared: &Shared, world: &mut World, name: &str, params: &[Param]) -> Response {
    let config = &shared.config;
    match name {
        "one.system.version" => success(Out::Str("7.2.0".into())),
        "one.user.info" => {
            let Some(id) = int(params, 0) else {
                return type_fault(name);
            };
            if id != -1 && id != config.uid as i64 {
                return failure(
                    NO_EXISTS,
                    &format!("[{name}] Error getting user [{id}]."),
                    id,
                );
            }
            success(Out::Str(format!(
                "<USER><ID>{uid}</ID><GID>1</GID><GROUPS><ID>1</ID></GROUPS><GNAME>users</GNAME>\
                 <NAME>{user}</NAME><PASSWORD>*</PASSWORD><AUTH_DRIVER>core</AUTH_DRIVER>\
                 <ENABLED>1</ENABLED><LOGIN_TOKEN/><TEMPLATE/></USER>",
                uid = config.uid,
                user = config.user
            )))
        }
        "one.template.info" => {
            let Some(id) = int(params, 0) else {
                return type_fault(name);
            };
            match config.templates.iter().find(|t| t.id as i64 == id) {
                Some(template) => success(Out::Str(template_document(template))),
                None => failure(
                    NO_EXISTS,
                    &format!("[{name}] Error getting virtual machine template [{id}]."),
                    id,
                ),
            }
        }
        "one.image.info" => {
            let Some(id) = int(params, 0) else {
                return type_fault(name);
            };
            if !config.images.iter().any(|image| *image as i64 == id) {
                return failure(
                    NO_EXISTS,
                    &format!("[{name}] Error getting image [{id}]."),
                    id,
                );
            }
            success(Out::Str(format!(
                "<IMAGE><ID>{id}</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME>\
                 <GNAME>oneadmin</GNAME><NAME>ConPaaS</NAME><TYPE>0</TYPE><STATE>1</STATE>\
                 <TEMPLATE/></IMAGE>"
            )))
        }
        "one.vnet.info" => {
            let Some(id) = int(params, 0) else {
                return type_fault(name);
            };
            if !config.networks.iter().any(|(net, _)| *net as i64 == id) {
                return failure(
                    NO_EXISTS,
                    &format!("[{name}] Error getting virtual network [{id}]."),
                    id,
                );
            }
            success(Out::Str(format!(
                "<VNET><ID>{id}</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME>\
                 <GNAME>oneadmin</GNAME><NAME>public</NAME><TEMPLATE/></VNET>"
            )))
        }
        "one.template.instantiate" => instantiate(shared, world, params),
        "one.vm.allocate" => allocate(shared, world, params),
        "one.vm.info" => {
            let Some(id) = int(params, 0) else {
                return type_fault(name);
            };
            if world.faults.read_errors > 0 {
                world.faults.read_errors -= 1;
                return unavailable();
            }
            let Some(vm) = world.vms.iter_mut().find(|vm| vm.id as i64 == id) else {
                return failure(
                    NO_EXISTS,
                    &format!("[{name}] Error getting virtual machine [{id}]."),
                    id,
                );
            };
            advance(vm);
            let document = vm_document(config, vm);
            world.served.push(document.clone());
            success(Out::Str(document))
        }
        "one.vmpool.info" => {
            let (Some(_filter), Some(_start), Some(_end), Some(state)) = (
                int(params, 0),
                int(params, 1),
                int(params, 2),
                int(params, 3),
            ) else {
                return type_fault(name);
            };
            if !(-2..=11).contains(&state) {
                return failure(
                    XML_RPC_API,
                    &format!("[{name}] Incorrect filter_flag, state"),
                    -1,
                );
            }
            if params.len() > 4 && !string(params, 4).unwrap_or_default().is_empty() {
                // As on oned with its default SQLite back-end.
                return failure(
                    INTERNAL,
                    &format!("[{name}] JSON query search is not supported by the SQL backend"),
                    -1,
                );
            }
            let vms: String = world
                .vms
                .iter()
                .filter(|vm| match state {
                    -2 => true,
                    -1 => !vm.is_done(),
                    state => vm.state as i64 == state,
                })
                .map(|vm| short_document(config, vm))
                .collect();
            let document = format!("<VM_POOL>{vms}</VM_POOL>");
            world.served.push(document.clone());
            success(Out::Str(document))
        }
        "one.vm.action" => {
            let (Some(action), Some(id)) = (string(params, 0), int(params, 1)) else {
                return type_fault(name);
            };
            let Some(vm) = world.vms.iter_mut().find(|vm| vm.id as i64 == id) else {
                return failure(
                    NO_EXISTS,
                    &format!("[{name}] Error getting virtual machine [{id}]."),
                    id,
                );
            };
            if action != "terminate-hard" && action != "terminate" {
                return failure(
                    ACTION,
                    &format!("[{name}] Action {action} not supported here"),
                    id,
                );
            }
            terminate(name, vm)
        }
        _ => fault(-506, &format!("Requested method '{name}' not defined")),
    }
}

/// `DispatchManager::terminate`, the VM `DONE` at once.
fn terminate(name: &str, vm: &mut Vm) -> Response {
    let failed = [36, 37, 38, 39, 40, 41, 42, 44, 46, 47, 48, 49, 50, 61];
    let now = chrono::Utc::now().timestamp();
    match (vm.state, vm.lcm_state) {
        (6, _) => success(Out::Int(vm.id as i64)),
        (0..=2 | 4 | 5 | 8..=11, _) | (3, 3 | 16) => {
            vm.state = 6;
            vm.lcm_state = 0;
            vm.etime = now;
            success(Out::Int(vm.id as i64))
        }
        (3, lcm) if failed.contains(&lcm) => {
            vm.state = 6;
            vm.lcm_state = 0;
            vm.etime = now;
            success(Out::Int(vm.id as i64))
        }
        (_, lcm) => failure(
            ACTION,
            &format!(
                "[{name}] Could not terminate VM {}, wrong state {}.",
                vm.id,
                lcm_name(lcm)
            ),
            vm.id as i64,
        ),
    }
}

fn lcm_name(lcm: u32) -> String {
    match lcm {
        1 => "PROLOG".into(),
        2 => "BOOT".into(),
        3 => "RUNNING".into(),
        other => format!("LCM_STATE {other}"),
    }
}

/// A read moves the VM along its life.
fn advance(vm: &mut Vm) {
    if vm.is_done() || vm.reads_until_running == u32::MAX && vm.state != 1 {
        vm.reads += 1;
        return;
    }
    vm.reads += 1;
    let reads = vm.reads;
    if vm.fail_after_reads.is_some_and(|n| reads >= n) {
        (vm.state, vm.lcm_state) = (3, 36);
        return;
    }
    if vm.state == 3 && vm.lcm_state != 1 && vm.lcm_state != 2 {
        return;
    }
    let running = vm.reads_until_running.max(1);
    (vm.state, vm.lcm_state) = if reads >= running {
        (3, 3)
    } else if reads + 1 == running {
        (3, 2)
    } else if reads + 2 == running {
        (3, 1)
    } else {
        (1, 0)
    };
}

/// A template sent as XML: its attributes, a vector's members as `(name, members)`.
#[derive(Debug, Clone)]
enum Attr {
    Single(String, String),
    Vector(String, Vec<(String, String)>),
}

impl Attr {
    fn name(&self) -> &str {
        match self {
            Attr::Single(name, _) | Attr::Vector(name, _) => name,
        }
    }
}

fn parse_template(text: &str) -> Result<Vec<Attr>, String> {
    if !text.trim_start().starts_with('<') {
        // oned reads the text syntax too; this fake only XML (what the driver and pyone send).
        return Err("Parse error: syntax error, unexpected VARIABLE".into());
    }
    let document = roxmltree::Document::parse(text)
        .map_err(|_| "Parse error: XML Template malformed.".to_owned())?;
    Ok(element_children(document.root_element())
        .map(|node| {
            let name = node.tag_name().name().to_owned();
            if element_children(node).next().is_some() {
                Attr::Vector(
                    name,
                    element_children(node)
                        .map(|member| (member.tag_name().name().to_owned(), text_of(member)))
                        .collect(),
                )
            } else {
                Attr::Single(name, text_of(node))
            }
        })
        .collect())
}

fn single<'a>(attrs: &'a [Attr], name: &str) -> Option<&'a str> {
    attrs.iter().find_map(|attr| match attr {
        Attr::Single(n, value) if n == name => Some(value.as_str()),
        _ => None,
    })
}

fn vector<'a>(attrs: &'a [Attr], name: &str) -> Option<&'a [(String, String)]> {
    attrs.iter().find_map(|attr| match attr {
        Attr::Vector(n, members) if n == name => Some(members.as_slice()),
        _ => None,
    })
}

/// The attributes oned keeps in the VM's `TEMPLATE`; the others are its `USER_TEMPLATE`.
const VM_ATTRIBUTES: [&str; 12] = [
    "NAME",
    "CPU",
    "VCPU",
    "MEMORY",
    "DISK",
    "NIC",
    "CONTEXT",
    "OS",
    "GRAPHICS",
    "FEATURES",
    "TEMPLATE_ID",
    "TEMPLATE_NAME",
];

fn instantiate(shared: &Shared, world: &mut World, params: &[Param]) -> Response {
    let name = "one.template.instantiate";
    let (Some(id), Some(vm_name)) = (int(params, 0), string(params, 1)) else {
        return type_fault(name);
    };
    let Some(template) = shared.config.templates.iter().find(|t| t.id as i64 == id) else {
        return failure(
            NO_EXISTS,
            &format!("[{name}] Error getting virtual machine template [{id}]."),
            id,
        );
    };
    let mut attrs = vec![
        Attr::Single("CPU".into(), "1".into()),
        Attr::Single("MEMORY".into(), "768".into()),
        Attr::Vector(
            "DISK".into(),
            vec![("IMAGE_ID".into(), template.image_id.to_string())],
        ),
        Attr::Vector(
            "NIC".into(),
            vec![("NETWORK_ID".into(), template.network_id.to_string())],
        ),
        Attr::Vector("CONTEXT".into(), template.context.clone()),
    ];
    let extra = string(params, 3).unwrap_or_default();
    if !extra.trim().is_empty() {
        match parse_template(&extra) {
            Ok(extra) => {
                // Template::merge: erase by name, then add (a vector replaced whole).
                attrs.retain(|attr| !extra.iter().any(|new| new.name() == attr.name()));
                attrs.extend(extra);
            }
            Err(message) => return failure(INTERNAL, &format!("[{name}] {message}"), -1),
        }
    }
    if !vm_name.is_empty() {
        attrs.retain(|attr| attr.name() != "NAME");
        attrs.push(Attr::Single("NAME".into(), vm_name));
    }
    create(shared, world, name, attrs, Some(template.id))
}

fn allocate(shared: &Shared, world: &mut World, params: &[Param]) -> Response {
    let name = "one.vm.allocate";
    let Some(text) = string(params, 0) else {
        return type_fault(name);
    };
    match parse_template(&text) {
        Ok(attrs) => create(shared, world, name, attrs, None),
        Err(message) => failure(INTERNAL, &format!("[{name}] {message}"), -1),
    }
}

fn create(
    shared: &Shared,
    world: &mut World,
    name: &str,
    attrs: Vec<Attr>,
    template_id: Option<u64>,
) -> Response {
    let config = &shared.config;
    if world.faults.create_errors > 0 {
        world.faults.create_errors -= 1;
        return unavailable();
    }
    if world.faults.create_internal > 0 {
        world.faults.create_internal -= 1;
        return failure(
            INTERNAL,
            &format!("[{name}] Cannot process request, oned cluster in election mode"),
            -1,
        );
    }
    let allocate_error = |message: &str| {
        failure(
            ALLOCATE,
            &format!("[{name}] Error allocating a new virtual machine. {message}"),
            -1,
        )
    };
    let Some(memory) = single(&attrs, "MEMORY").filter(|m| m.parse::<u64>().is_ok_and(|m| m > 0))
    else {
        return allocate_error("VM MEMORY attribute must be a positive integer value.");
    };
    let Some(cpu) = single(&attrs, "CPU").filter(|c| c.parse::<f64>().is_ok_and(|c| c > 0.0))
    else {
        return allocate_error("VM CPU attribute must be a positive float or integer value.");
    };
    let image_id = vector(&attrs, "DISK")
        .and_then(|disk| lookup(disk, "IMAGE_ID").map(str::to_owned))
        .and_then(|id| id.parse::<u64>().ok());
    let Some(image_id) = image_id.filter(|id| config.images.contains(id)) else {
        return allocate_error(&format!(
            "Cannot get image: Error getting image [{}].",
            image_id.map(|id| id.to_string()).unwrap_or_default()
        ));
    };
    let network_id = vector(&attrs, "NIC")
        .and_then(|nic| lookup(nic, "NETWORK_ID").map(str::to_owned))
        .and_then(|id| id.parse::<u64>().ok());
    let Some((network_id, first)) = network_id
        .and_then(|id| config.networks.iter().find(|(net, _)| *net == id))
        .copied()
    else {
        return allocate_error(&format!(
            "Cannot get virtual network: Error getting virtual network [{}].",
            network_id.map(|id| id.to_string()).unwrap_or_default()
        ));
    };
    if let Some(max) = config.max_vms
        && world.vms.iter().filter(|vm| !vm.is_done()).count() >= max
    {
        return failure(
            AUTHORIZATION,
            &format!(
                "[{name}] User [{uid}] : user [{uid}] limit of {max} reached for VMS quota in user [{uid}].",
                uid = config.uid
            ),
            -1,
        );
    }
    let id = world.next_id;
    world.next_id += 1;
    let ip = Ipv4Addr::from(u32::from(first) + world.leases);
    world.leases += 1;
    let vm_name = single(&attrs, "NAME")
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("one-{id}"));
    let mac = {
        let o = ip.octets();
        format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
    };
    let mut context: Vec<(String, String)> = vector(&attrs, "CONTEXT")
        .unwrap_or_default()
        .iter()
        .map(|(key, value)| {
            (
                key.clone(),
                value
                    .replace("$NAME", &vm_name)
                    .replace("$NIC[IP]", &ip.to_string())
                    .replace("$USER[SSH_PUBLIC_KEY]", ""),
            )
        })
        .collect();
    if lookup(&context, "NETWORK") == Some("YES") {
        context.push(("ETH0_IP".into(), ip.to_string()));
        context.push(("ETH0_MAC".into(), mac));
    }
    context.push(("DISK_ID".into(), "1".into()));
    context.push(("TARGET".into(), "hda".into()));
    context.sort();
    let user_template: Vec<(String, String)> = attrs
        .iter()
        .filter_map(|attr| match attr {
            Attr::Single(name, value) if !VM_ATTRIBUTES.contains(&name.as_str()) => {
                Some((name.clone(), value.clone()))
            }
            _ => None,
        })
        .collect();
    let faults = &world.faults;
    let (state, lcm_state) = if faults.fail_after_reads == Some(0) {
        (3, 36)
    } else {
        (1, 0)
    };
    let vm = Vm {
        id,
        name: vm_name,
        state,
        lcm_state,
        ip,
        image_id,
        network_id,
        template_id,
        cpu: cpu.to_owned(),
        vcpu: single(&attrs, "VCPU").map(str::to_owned),
        memory: memory.to_owned(),
        context,
        user_template,
        reads: 0,
        stime: chrono::Utc::now().timestamp(),
        etime: 0,
        reads_until_running: config.reads_until_running,
        fail_after_reads: faults.fail_after_reads,
    };
    world.vms.push(vm);
    if world.faults.create_errors_after_creating > 0 {
        world.faults.create_errors_after_creating -= 1;
        return unavailable();
    }
    if world.faults.refusals_after_creating > 0 {
        world.faults.refusals_after_creating -= 1;
        return failure(
            AUTHORIZATION,
            &format!(
                "[{name}] User [{uid}] : user [{uid}] limit of 1 reached for VMS quota in user [{uid}].",
                uid = config.uid
            ),
            -1,
        );
    }
    success(Out::Int(id as i64))
}

fn permissions() -> &'static str {
    "<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A>\
     <GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A><OTHER_U>0</OTHER_U>\
     <OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>"
}

fn template_document(template: &VmTemplate) -> String {
    let context: String = template
        .context
        .iter()
        .map(|(key, value)| format!("<{key}>{}</{key}>", cdata(value)))
        .collect();
    format!(
        "<VMTEMPLATE><ID>{id}</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME>\
         <GNAME>oneadmin</GNAME><NAME>{name}</NAME>{perms}<REGTIME>1700000000</REGTIME>\
         <TEMPLATE><CONTEXT>{context}</CONTEXT><CPU>{cpu}</CPU>\
         <DISK><IMAGE_ID>{image}</IMAGE_ID></DISK><MEMORY>{memory}</MEMORY>\
         <NIC><NETWORK_ID>{network}</NETWORK_ID></NIC></TEMPLATE></VMTEMPLATE>",
        id = template.id,
        name = esc(&template.name),
        perms = permissions(),
        cpu = cdata("1"),
        image = cdata(&template.image_id.to_string()),
        memory = cdata("768"),
        network = cdata(&template.network_id.to_string()),
    )
}

fn nic(vm: &Vm) -> String {
    let o = vm.ip.octets();
    format!(
        "<NIC><AR_ID>{ar}</AR_ID><BRIDGE>{br}</BRIDGE><IP>{ip}</IP><MAC>{mac}</MAC>\
         <NETWORK>{net}</NETWORK><NETWORK_ID>{id}</NETWORK_ID><NIC_ID>{nic}</NIC_ID>\
         <TARGET>{target}</TARGET></NIC>",
        ar = cdata("0"),
        br = cdata("br0"),
        ip = cdata(&vm.ip.to_string()),
        mac = cdata(&format!(
            "02:00:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3]
        )),
        net = cdata("public"),
        id = cdata(&vm.network_id.to_string()),
        nic = cdata("0"),
        target = cdata(&format!("one-{}-0", vm.id)),
    )
}

fn disk(vm: &Vm) -> String {
    format!(
        "<DISK><DATASTORE>{ds}</DATASTORE><DISK_ID>{id}</DISK_ID><IMAGE>{image}</IMAGE>\
         <IMAGE_ID>{image_id}</IMAGE_ID><TARGET>{target}</TARGET><TYPE>{kind}</TYPE></DISK>",
        ds = cdata("default"),
        id = cdata("0"),
        image = cdata("ConPaaS"),
        image_id = cdata(&vm.image_id.to_string()),
        target = cdata("vda"),
        kind = cdata("FILE"),
    )
}

/// Whether the VM was deployed (it has a history record).
fn deployed(vm: &Vm) -> bool {
    vm.state == 3 || (vm.is_done() && vm.reads > 0)
}

/// The whole document of `one.vm.info` (`VirtualMachine::to_xml_extended`, `vm.xsd`).
fn vm_document(config: &FakeConfig, vm: &Vm) -> String {
    let context: String = vm
        .context
        .iter()
        .map(|(key, value)| format!("<{key}>{}</{key}>", cdata(value)))
        .collect();
    let mut template = format!(
        "<AUTOMATIC_REQUIREMENTS>{req}</AUTOMATIC_REQUIREMENTS><CONTEXT>{context}</CONTEXT>\
         <CPU>{cpu}</CPU>{disk}<MEMORY>{memory}</MEMORY>{nic}",
        req = cdata("!(PUBLIC_CLOUD = YES) & !(PIN_POLICY = PINNED)"),
        cpu = cdata(&vm.cpu),
        disk = disk(vm),
        memory = cdata(&vm.memory),
        nic = nic(vm),
    );
    if let Some(id) = vm.template_id {
        template.push_str(&format!(
            "<TEMPLATE_ID>{}</TEMPLATE_ID>",
            cdata(&id.to_string())
        ));
    }
    template.push_str(&format!("<TM_MAD_SYSTEM>{}</TM_MAD_SYSTEM>", cdata("ssh")));
    if let Some(vcpu) = &vm.vcpu {
        template.push_str(&format!("<VCPU>{}</VCPU>", cdata(vcpu)));
    }
    template.push_str(&format!("<VMID>{}</VMID>", cdata(&vm.id.to_string())));
    let user: String = vm
        .user_template
        .iter()
        .map(|(key, value)| format!("<{key}>{}</{key}>", cdata(value)))
        .collect();
    let history = if deployed(vm) {
        format!(
            "<HISTORY_RECORDS><HISTORY><OID>{id}</OID><SEQ>0</SEQ><HOSTNAME>node1</HOSTNAME>\
             <HID>0</HID><CID>0</CID><STIME>{stime}</STIME><ETIME>{etime}</ETIME>\
             <VM_MAD><![CDATA[kvm]]></VM_MAD><TM_MAD><![CDATA[ssh]]></TM_MAD><DS_ID>0</DS_ID>\
             <PLAN_ID>-1</PLAN_ID><ACTION_ID>-1</ACTION_ID><PSTIME>{stime}</PSTIME>\
             <PETIME>{stime}</PETIME><RSTIME>{stime}</RSTIME><RETIME>{etime}</RETIME>\
             <ESTIME>{etime}</ESTIME><EETIME>{etime}</EETIME><ACTION>{action}</ACTION>\
             <UID>-1</UID><GID>-1</GID><REQUEST_ID>-1</REQUEST_ID></HISTORY></HISTORY_RECORDS>",
            id = vm.id,
            stime = vm.stime,
            etime = vm.etime,
            action = if vm.is_done() { 28 } else { 0 },
        )
    } else {
        "<HISTORY_RECORDS/>".to_owned()
    };
    format!(
        "<VM><ID>{id}</ID><UID>{uid}</UID><GID>1</GID><UNAME>{uname}</UNAME><GNAME>users</GNAME>\
         <NAME>{name}</NAME>{perms}<LAST_POLL>0</LAST_POLL><STATE>{state}</STATE>\
         <LCM_STATE>{lcm}</LCM_STATE><PREV_STATE>{state}</PREV_STATE>\
         <PREV_LCM_STATE>{lcm}</PREV_LCM_STATE><RESCHED>0</RESCHED><STIME>{stime}</STIME>\
         <ETIME>{etime}</ETIME><DEPLOY_ID>{deploy}</DEPLOY_ID><MONITORING/><SCHED_ACTIONS/>\
         <TEMPLATE>{template}</TEMPLATE><USER_TEMPLATE>{user}</USER_TEMPLATE>{history}\
         <BACKUPS><BACKUP_CONFIG/><BACKUP_IDS/></BACKUPS></VM>",
        id = vm.id,
        uid = config.uid,
        uname = esc(&config.user),
        name = esc(&vm.name),
        perms = permissions(),
        state = vm.state,
        lcm = vm.lcm_state,
        stime = vm.stime,
        etime = vm.etime,
        deploy = if deployed(vm) {
            format!("one-{}", vm.id)
        } else {
            String::new()
        },
    )
}

/// The short document of `one.vmpool.info` (`VirtualMachine::to_xml_short`, `vm_pool.xsd`):
/// its `USER_TEMPLATE` keeps only `LABELS` (and the scheduler's attributes, unused here).
fn short_document(config: &FakeConfig, vm: &Vm) -> String {
    let labels = vm
        .user("LABELS")
        .filter(|labels| !labels.is_empty())
        .map(|labels| {
            format!(
                "<USER_TEMPLATE><LABELS>{}</LABELS></USER_TEMPLATE>",
                esc(labels)
            )
        })
        .unwrap_or_else(|| "<USER_TEMPLATE/>".to_owned());
    let history = if deployed(vm) {
        format!(
            "<HISTORY_RECORDS><HISTORY><OID>{}</OID><SEQ>0</SEQ><HOSTNAME>node1</HOSTNAME>\
             <HID>0</HID><CID>0</CID><DS_ID>0</DS_ID><VM_MAD><![CDATA[kvm]]></VM_MAD>\
             <TM_MAD><![CDATA[ssh]]></TM_MAD><ACTION>0</ACTION></HISTORY></HISTORY_RECORDS>",
            vm.id
        )
    } else {
        "<HISTORY_RECORDS/>".to_owned()
    };
    format!(
        "<VM><ID>{id}</ID><UID>{uid}</UID><GID>1</GID><UNAME>{uname}</UNAME><GNAME>users</GNAME>\
         <NAME>{name}</NAME><LAST_POLL>0</LAST_POLL><STATE>{state}</STATE>\
         <LCM_STATE>{lcm}</LCM_STATE><RESCHED>0</RESCHED><STIME>{stime}</STIME>\
         <ETIME>{etime}</ETIME><DEPLOY_ID>{deploy}</DEPLOY_ID><TEMPLATE><CPU>{cpu}</CPU>\
         <MEMORY>{memory}</MEMORY><VCPU>{vcpu}</VCPU>{disk}{nic}</TEMPLATE>\
         <MONITORING/>{labels}{history}</VM>",
        id = vm.id,
        uid = config.uid,
        uname = esc(&config.user),
        name = esc(&vm.name),
        state = vm.state,
        lcm = vm.lcm_state,
        stime = vm.stime,
        etime = vm.etime,
        deploy = if deployed(vm) {
            format!("one-{}", vm.id)
        } else {
            String::new()
        },
        cpu = esc(&vm.cpu),
        memory = esc(&vm.memory),
        vcpu = esc(vm.vcpu.as_deref().unwrap_or("")),
        disk = disk(vm),
        nic = nic(vm),
    )
}
