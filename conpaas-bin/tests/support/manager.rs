//! A ConPaaS 1.2 manager emulator for the `cpsclient` tests: JSON-RPC over real TLS, checking
//! its caller's certificate as a 1.2 manager does (`spec/certificates.md` §11.2: the CA, then
//! `role=frontend`, or `role=user`/`manager` with the manager's `UID`), answering the calls of
//! the 1.2 client modules as a 1.2 manager frames them (`HTTP/1.0`, the body ended by closing
//! TCP without a TLS close_notify). A second listener answers plain HTTP, as 1.2's task farm
//! manager did. The manager's certificate is set after binding: the director issues it while
//! the client already waits for the manager, as with a booting VM.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use conpaas_core::ca::CertIdentity;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// One call the emulator answered.
#[derive(Debug, Clone)]
pub struct Call {
    /// `GET`, `POST` (JSON-RPC) or `UPLOAD` (multipart).
    pub form: &'static str,
    /// Whether it came over TLS.
    pub tls: bool,
    pub method: String,
    /// JSON-RPC parameters (`Null` for a GET without `params`); for an upload, its text
    /// fields other than `method` as an object.
    pub params: Value,
    /// An upload's file: field, file name, content.
    pub file: Option<(String, String, Vec<u8>)>,
    /// The role of the caller's verified certificate.
    pub caller_role: Option<String>,
}

/// The manager's side of things, changed by the calls.
#[derive(Debug)]
struct World {
    state: String,
    /// Polls of `get_service_info` left before a starting service is RUNNING.
    polls_to_running: u32,
    mode: String,
    display_errors: String,
    keys: Vec<String>,
    versions: Vec<String>,
    current: String,
    volumes: Vec<String>,
}

#[derive(Clone)]
pub struct Emulator {
    /// The HTTPS listener.
    pub addr: SocketAddr,
    /// The plain HTTP listener (the task farm's).
    pub http_addr: SocketAddr,
    tls: Arc<Mutex<Option<tokio_rustls::TlsAcceptor>>>,
    calls: Arc<Mutex<Vec<Call>>>,
    refused: Arc<Mutex<usize>>,
    world: Arc<Mutex<World>>,
}

impl Emulator {
    /// Binds both listeners on `host` (free ports); connections are closed until
    /// [`Emulator::set_identity`].
    pub async fn bind(host: IpAddr) -> Emulator {
        let tls_listener = tokio::net::TcpListener::bind((host, 0)).await.unwrap();
        let http_listener = tokio::net::TcpListener::bind((host, 0)).await.unwrap();
        let emulator = Emulator {
            addr: tls_listener.local_addr().unwrap(),
            http_addr: http_listener.local_addr().unwrap(),
            tls: Arc::default(),
            calls: Arc::default(),
            refused: Arc::default(),
            world: Arc::new(Mutex::new(World {
                state: "INIT".into(),
                polls_to_running: 0,
                mode: "NA".into(),
                display_errors: "Off".into(),
                keys: Vec::new(),
                versions: vec!["code-default".into()],
                current: "code-default".into(),
                volumes: Vec::new(),
            })),
        };
        for (listener, tls) in [(tls_listener, true), (http_listener, false)] {
            let serving = emulator.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let emulator = serving.clone();
                    tokio::spawn(async move { emulator.connection(tcp, tls).await });
                }
            });
        }
        emulator
    }

    /// The manager's certificate and key, and the CA its callers must chain to.
    pub fn set_identity(&self, cert_pem: &str, key_pem: &str, ca_pem: &str) {
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(cert_pem, key_pem, ca_pem));
        *self.tls.lock().unwrap() = Some(acceptor);
    }

    /// Every call answered so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The last call of `method`.
    pub fn last(&self, method: &str) -> Call {
        self.calls()
            .into_iter()
            .rev()
            .find(|call| call.method == method)
            .unwrap_or_else(|| panic!("no call of {method}: {:?}", self.methods()))
    }

    /// The methods called, in order.
    pub fn methods(&self) -> Vec<String> {
        self.calls().into_iter().map(|call| call.method).collect()
    }

    /// Handshakes refused by the caller check.
    pub fn refused(&self) -> usize {
        *self.refused.lock().unwrap()
    }

    /// Sets the service's state (as a manager's own life would).
    pub fn set_state(&self, state: &str) {
        self.world.lock().unwrap().state = state.to_owned();
    }

    async fn connection(&self, tcp: tokio::net::TcpStream, tls: bool) {
        if !tls {
            let mut tcp = tcp;
            if let Some(request) = read_request(&mut tcp).await {
                let (call, answer) = self.answer(request, false, None);
                self.calls.lock().unwrap().push(call);
                let _ = write_answer(&mut tcp, &answer).await;
                let _ = tcp.shutdown().await;
            }
            return;
        }
        let Some(acceptor) = self.tls.lock().unwrap().clone() else {
            // Not booted yet: the port is open, the manager is not there.
            return;
        };
        let Ok(mut stream) = acceptor.accept(tcp).await else {
            *self.refused.lock().unwrap() += 1;
            return;
        };
        let caller_role = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| CertIdentity::parse(leaf.as_ref()).ok())
            .and_then(|identity| identity.role);
        let Some(request) = read_request(&mut stream).await else {
            return;
        };
        let (call, answer) = self.answer(request, true, caller_role);
        self.calls.lock().unwrap().push(call);
        if write_answer(&mut stream, &answer).await.is_err() {
            return;
        }
        // The TLS records are on the socket; close TCP under the session, without a
        // close_notify, as a 1.2 manager does.
        let (mut tcp, _session) = stream.into_inner();
        let _ = tcp.shutdown().await;
    }

    /// The call a request makes and the body to answer.
    fn answer(&self, request: Request, tls: bool, caller_role: Option<String>) -> (Call, Vec<u8>) {
        let mut call = Call {
            form: "GET",
            tls,
            method: String::new(),
            params: Value::Null,
            file: None,
            caller_role,
        };
        let content_type = request.header("content-type").unwrap_or_default();
        if request.method == "GET" {
            let query = request
                .target
                .split_once('?')
                .map(|(_, q)| q)
                .unwrap_or_default();
            for (name, value) in form_decode(query) {
                match name.as_str() {
                    "method" => call.method = value,
                    "params" => call.params = serde_json::from_str(&value).unwrap(),
                    _ => {}
                }
            }
        } else if content_type.starts_with("multipart/form-data") {
            call.form = "UPLOAD";
            let boundary = content_type
                .split("boundary=")
                .nth(1)
                .unwrap()
                .trim_matches('"');
            let mut fields = serde_json::Map::new();
            for (name, file_name, bytes) in multipart_parts(&request.body, boundary) {
                match file_name {
                    Some(file_name) => call.file = Some((name, file_name, bytes)),
                    None if name == "method" => call.method = String::from_utf8(bytes).unwrap(),
                    None => {
                        fields.insert(name, json!(String::from_utf8(bytes).unwrap()));
                    }
                }
            }
            call.params = Value::Object(fields);
        } else {
            call.form = "POST";
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            call.method = body["method"].as_str().unwrap_or_default().to_owned();
            call.params = body["params"].clone();
        }
        let result = self.result(&call);
        let body = match result {
            Ok(Answer::Json(result)) => json!({"result": result, "error": null, "id": "1"})
                .to_string()
                .into_bytes(),
            Ok(Answer::Raw(bytes)) => bytes,
            Err(message) => json!({"error": message, "id": "1"})
                .to_string()
                .into_bytes(),
        };
        (call, body)
    }

    fn result(&self, call: &Call) -> Result<Answer, String> {
        let mut world = self.world.lock().unwrap();
        let params = &call.params;
        let text = |key: &str| {
            params
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let ok = |value: Value| Ok(Answer::Json(value));
        match call.method.as_str() {
            "get_service_info" => {
                if world.polls_to_running > 0 {
                    world.polls_to_running -= 1;
                    if world.polls_to_running == 0 {
                        world.state = "RUNNING".into();
                    }
                }
                ok(
                    json!({"state": world.state, "type": "emulated", "mode": world.mode,
                          "noTotalTasks": 0, "noCompletedTasks": 0}),
                )
            }
            "startup" => {
                if world.state != "INIT" && world.state != "STOPPED" {
                    return Err(format!("ERROR: cannot start in state {}", world.state));
                }
                world.state = "PROLOGUE".into();
                world.polls_to_running = 2;
                ok(json!({"state": "PROLOGUE"}))
            }
            "shutdown" | "terminate_workers" => {
                world.state = "STOPPED".into();
                ok(json!({"state": "EPILOGUE"}))
            }
            "getLog" => ok(json!({"log": "manager log: all is well"})),
            "get_log" => ok(json!({"message": "task farm log: all is well"})),
            "list_nodes" => ok(json!({"proxy": ["p1"], "web": ["w1"], "backend": ["b1"]})),
            "get_node_info" => {
                let id = params["serviceNodeId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                ok(json!({"serviceNode": {"id": id, "ip": format!("10.0.0.{}", id.len())}}))
            }
            "add_nodes" | "remove_nodes" | "set_password" | "upload_startup_script" => {
                ok(json!({}))
            }
            "list_authorized_keys" => ok(json!({"authorizedKeys": world.keys})),
            "upload_authorized_key" => {
                let (_, _, bytes) = call.file.clone().ok_or("no key file")?;
                world
                    .keys
                    .push(String::from_utf8_lossy(&bytes).trim().to_owned());
                ok(json!({"outcome": "1 key added"}))
            }
            "list_code_versions" => {
                let versions: Vec<Value> = world
                    .versions
                    .iter()
                    .map(|id| {
                        let mut version = json!({"codeVersionId": id, "filename": format!("{id}.tar.gz"), "description": "emulated"});
                        if *id == world.current {
                            version["current"] = json!(true);
                        }
                        version
                    })
                    .collect();
                ok(json!({"codeVersions": versions}))
            }
            "upload_code_version" => {
                call.file.as_ref().ok_or("no code file")?;
                let id = format!("code-{}", world.versions.len() + 1);
                world.versions.push(id.clone());
                ok(json!({"codeVersionId": id}))
            }
            "download_code_version" => {
                let id = text("codeVersionId");
                if !world.versions.contains(&id) {
                    return Err(format!("unknown code version {id}"));
                }
                // A gzip header and bytes that are not UTF-8: the archive must arrive intact.
                let mut bytes = vec![0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe];
                bytes.extend_from_slice(id.as_bytes());
                Ok(Answer::Raw(bytes))
            }
            "update_php_configuration" | "update_java_configuration" => {
                if let Some(id) = params.get("codeVersionId").and_then(Value::as_str) {
                    if !world.versions.iter().any(|v| v == id) {
                        return Err(format!("unknown code version {id}"));
                    }
                    world.current = id.to_owned();
                }
                if let Some(flag) = params
                    .pointer("/phpconf/display_errors")
                    .and_then(Value::as_str)
                {
                    world.display_errors = flag.to_owned();
                }
                ok(json!({}))
            }
            "get_configuration" => ok(json!({"phpconf": {"display_errors": world.display_errors}})),
            "listVolumes" => ok(json!({"volumes": world.volumes.join("\n")})),
            "createVolume" => {
                world.volumes.push(text("volumeName"));
                ok(json!({}))
            }
            "deleteVolume" => {
                let name = text("volumeName");
                let before = world.volumes.len();
                world.volumes.retain(|volume| *volume != name);
                if world.volumes.len() == before {
                    return Err(format!("no volume {name}"));
                }
                ok(json!({}))
            }
            "list_osd_sel_policies" | "list_replica_sel_policies" | "list_replication_policies" => {
                ok(json!({"policies": format!("policies of {}", call.method)}))
            }
            "set_osd_sel_policy" | "set_replica_sel_policy" | "set_replication_policy" => {
                ok(json!({"stdout": format!("{} on {}", text("policy"), text("volumeName"))}))
            }
            "set_service_mode" => {
                world.mode = params[0].as_str().unwrap_or_default().to_owned();
                ok(json!({"message": format!("mode {}", world.mode)}))
            }
            "start_sampling" => ok(json!({"message": "bag of tasks accepted"})),
            other => Err(format!("unknown method {other}")),
        }
    }
}

enum Answer {
    Json(Value),
    Raw(Vec<u8>),
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    }
}

async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head_len) = request.parse(&buf).ok()? {
            let headers: Vec<(String, String)> = request
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let length: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map_or(0, |(_, v)| v.trim().parse().unwrap());
            let method = request.method?.to_owned();
            let target = request.path?.to_owned();
            while buf.len() < head_len + length {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(Request {
                method,
                target,
                headers,
                body: buf[head_len..head_len + length].to_vec(),
            });
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// What Python 2's BaseHTTPRequestHandler writes for a 1.2 manager: no length.
async fn write_answer<S: AsyncWrite + Unpin>(stream: &mut S, body: &[u8]) -> std::io::Result<()> {
    let mut out = b"HTTP/1.0 200 OK\r\nServer: BaseHTTP/0.3 Python/2.6.6\r\n\
                    Content-Type: application/json\r\n\r\n"
        .to_vec();
    out.extend_from_slice(body);
    stream.write_all(&out).await?;
    stream.flush().await
}

fn form_decode(query: &str) -> Vec<(String, String)> {
    let decode = |text: &str| {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut index = 0;
        while index < bytes.len() {
            match bytes[index] {
                b'+' => out.push(b' '),
                b'%' if index + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    index += 2;
                }
                other => out.push(other),
            }
            index += 1;
        }
        String::from_utf8(out).unwrap()
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// The parts of a multipart body: name, file name (for file parts), content.
fn multipart_parts(body: &[u8], boundary: &str) -> Vec<(String, Option<String>, Vec<u8>)> {
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut positions = Vec::new();
    let mut index = 0;
    while index + delimiter.len() <= body.len() {
        if body[index..].starts_with(&delimiter) {
            positions.push(index);
            index += delimiter.len();
        } else {
            index += 1;
        }
    }
    for pair in positions.windows(2) {
        let part = &body[pair[0] + delimiter.len()..pair[1]];
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        let split = part.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&part[..split]).into_owned();
        let content = part[split + 4..].to_vec();
        let attribute = |key: &str| {
            head.split(';')
                .map(str::trim)
                .find_map(|item| item.strip_prefix(&format!("{key}=\"")))
                .and_then(|rest| rest.split('"').next())
                .map(str::to_owned)
        };
        parts.push((
            attribute("name").unwrap_or_default(),
            attribute("filename"),
            content,
        ));
    }
    parts
}

fn server_config(cert_pem: &str, key_pem: &str, ca_pem: &str) -> Arc<rustls::ServerConfig> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let own = CertIdentity::parse(chain[0].as_ref()).unwrap();
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain_check =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap();
    let verifier = CallerCheck {
        chain: chain_check,
        uid: own.uid,
        sid: own.service_locator,
    };
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, key)
        .unwrap();
    Arc::new(config)
}

/// 1.2's manager server callback: a certificate of the CA is required; then `role=frontend`,
/// `role=user` with the manager's `UID`, or `role=manager` with its `UID` and
/// `serviceLocator`.
#[derive(Debug)]
struct CallerCheck {
    chain: Arc<dyn ClientCertVerifier>,
    uid: Option<String>,
    sid: Option<String>,
}

impl ClientCertVerifier for CallerCheck {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .chain
            .verify_client_cert(end_entity, intermediates, now)?;
        let caller = CertIdentity::parse(end_entity.as_ref())
            .map_err(|error| rustls::Error::General(error.to_string()))?;
        let accepted = match caller.role.as_deref() {
            Some("frontend") => true,
            Some("user") => caller.uid.is_some() && caller.uid == self.uid,
            Some("manager") => {
                caller.uid.is_some() && caller.uid == self.uid && caller.service_locator == self.sid
            }
            _ => false,
        };
        if accepted {
            Ok(verified)
        } else {
            Err(rustls::Error::General("caller refused".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}
