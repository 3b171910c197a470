//! A stand-in for a ConPaaS 1.2 manager over real TLS, answering as the real one does: by
//! default `HTTP/1.0 200`, no `Content-Length`, the body ended by closing TCP *without* a TLS
//! close_notify (what 1.2's `BaseHTTPServer` on pyOpenSSL sends), and only after checking its
//! caller's certificate as 1.2's manager does (`spec/certificates.md` §11.2). A client that
//! cannot read real managers fails against it. [`Answering`] selects a well-behaved HTTP/1.1
//! framing, a chunked one, or an answer cut mid-JSON.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::Query;
use conpaas_core::ca::CertIdentity;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One call the manager received.
#[derive(Debug, Clone)]
pub struct ManagerCall {
    /// `GET`, `POST` (JSON-RPC) or `UPLOAD` (multipart).
    pub form: &'static str,
    pub method: String,
    /// JSON-RPC parameters; for GET, `None` when the `params` pair was absent.
    pub params: Option<Value>,
    /// The file part of an upload: field, file name, content.
    pub file: Option<(String, String, Vec<u8>)>,
    /// The request's Content-Type.
    pub content_type: Option<String>,
    /// The `id` of the call (query pair or JSON member).
    pub id: Option<Value>,
    /// The `role` of the caller's (verified) certificate.
    pub caller_role: Option<String>,
}

/// How the manager frames its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Answering {
    /// As 1.2: `HTTP/1.0`, no length, TCP closed without close_notify.
    #[default]
    Release12,
    /// `HTTP/1.1` with `Content-Length`, TLS closed with close_notify.
    WellBehaved,
    /// `HTTP/1.1` chunked, TCP closed without close_notify after the last chunk.
    Chunked,
    /// As [`Answering::Release12`], but the connection is cut halfway through the body.
    CutMidJson,
}

/// The answer to a call (the whole JSON body, e.g. `{"result": .., "error": null, "id": "1"}`).
pub type Handler =
    Arc<dyn Fn(ManagerCall) -> Pin<Box<dyn Future<Output = Value> + Send>> + Send + Sync>;

/// A running test manager.
#[derive(Clone)]
pub struct TestManager {
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<ManagerCall>>>,
    answering: Arc<Mutex<Answering>>,
    refused: Arc<AtomicUsize>,
}

impl TestManager {
    /// Serves on `bind` with the manager certificate `cert_pem` (whose UID and serviceLocator
    /// are the manager's own, for the caller check) and `key_pem`, trusting callers of
    /// `ca_pem`; every call is answered by `handler`, then recorded.
    pub async fn start(
        bind: SocketAddr,
        cert_pem: &str,
        key_pem: &str,
        ca_pem: &str,
        handler: Handler,
    ) -> TestManager {
        let tls = tokio_rustls::TlsAcceptor::from(server_config(cert_pem, key_pem, ca_pem));
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let manager = TestManager {
            addr: listener.local_addr().unwrap(),
            calls: Arc::default(),
            answering: Arc::default(),
            refused: Arc::default(),
        };
        let serving = manager.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let manager = serving.clone();
                let tls = tls.clone();
                let handler = handler.clone();
                tokio::spawn(async move { manager.serve(tls, tcp, handler).await });
            }
        });
        manager
    }

    /// A manager answering every call with `{"result": {"method": .., "caller": <role>}}`.
    pub async fn echo(bind: SocketAddr, cert_pem: &str, key_pem: &str, ca_pem: &str) -> Self {
        let handler: Handler = Arc::new(|call: ManagerCall| {
            Box::pin(async move {
                serde_json::json!({
                    "result": {"method": call.method, "caller": call.caller_role},
                    "error": null,
                    "id": call.id,
                })
            })
        });
        TestManager::start(bind, cert_pem, key_pem, ca_pem, handler).await
    }

    /// `https://<addr>/`.
    pub fn url(&self) -> String {
        format!("https://{}/", self.addr)
    }

    /// Every call answered so far, in order.
    pub fn calls(&self) -> Vec<ManagerCall> {
        self.calls.lock().unwrap().clone()
    }

    /// The methods of [`TestManager::calls`].
    pub fn methods(&self) -> Vec<String> {
        self.calls().into_iter().map(|call| call.method).collect()
    }

    /// Changes how the next answers are framed.
    pub fn set_answering(&self, answering: Answering) {
        *self.answering.lock().unwrap() = answering;
    }

    /// How many TLS handshakes were refused (a caller the manager does not accept).
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    async fn serve(
        &self,
        tls: tokio_rustls::TlsAcceptor,
        tcp: tokio::net::TcpStream,
        handler: Handler,
    ) {
        let Ok(mut stream) = tls.accept(tcp).await else {
            self.refused.fetch_add(1, Ordering::SeqCst);
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
        let call = parse_call(request, caller_role).await;
        let answer = handler(call.clone()).await;
        self.calls.lock().unwrap().push(call);
        let body = answer.to_string().into_bytes();
        let answering = *self.answering.lock().unwrap();
        let mut out = Vec::new();
        match answering {
            Answering::Release12 | Answering::CutMidJson => {
                // What Python 2's BaseHTTPRequestHandler writes for a 1.2 manager.
                out.extend_from_slice(
                    b"HTTP/1.0 200 OK\r\nServer: BaseHTTP/0.3 Python/2.6.6\r\n\
                      Content-Type: application/json\r\n\r\n",
                );
                if answering == Answering::CutMidJson {
                    out.extend_from_slice(&body[..body.len() / 2]);
                } else {
                    out.extend_from_slice(&body);
                }
            }
            Answering::WellBehaved => {
                out.extend_from_slice(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(&body);
            }
            Answering::Chunked => {
                out.extend_from_slice(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                      Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                );
                let (first, second) = body.split_at(body.len() / 2);
                for chunk in [first, second] {
                    out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
        }
        if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
            return;
        }
        if answering == Answering::WellBehaved {
            let _ = stream.shutdown().await;
        } else {
            // The TLS records are on the socket; close TCP under the TLS session, so the
            // client sees the end without a close_notify, as from a 1.2 manager.
            let (mut tcp, _session) = stream.into_inner();
            let _ = tcp.shutdown().await;
        }
    }
}

/// A request as read off the connection.
struct RawRequest {
    method: String,
    target: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// Reads one request: the head, then a body of `Content-Length` bytes.
async fn read_request<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<RawRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head_len) = request.parse(&buf).ok()? {
            let headers: HashMap<String, String> = request
                .headers
                .iter()
                .map(|header| {
                    (
                        header.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(header.value).into_owned(),
                    )
                })
                .collect();
            let length: usize = headers
                .get("content-length")
                .map_or(0, |value| value.trim().parse().unwrap());
            let method = request.method?.to_owned();
            let target = request.path?.to_owned();
            while buf.len() < head_len + length {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(RawRequest {
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

/// The call a request makes, in the three forms of `spec/director-api.md` §4.
async fn parse_call(request: RawRequest, caller_role: Option<String>) -> ManagerCall {
    let content_type = request.headers.get("content-type").cloned();
    let mut call = ManagerCall {
        form: "GET",
        method: String::new(),
        params: None,
        file: None,
        content_type: content_type.clone(),
        id: None,
        caller_role,
    };
    if request.method == "GET" {
        let uri: axum::http::Uri = request.target.parse().unwrap();
        let Query(query) = Query::<HashMap<String, String>>::try_from_uri(&uri).unwrap();
        call.method = query.get("method").cloned().unwrap_or_default();
        call.id = query.get("id").map(|id| Value::String(id.clone()));
        call.params = query
            .get("params")
            .map(|text| serde_json::from_str(text).unwrap());
        return call;
    }
    assert_eq!(request.method, "POST", "a manager call is a GET or a POST");
    let content_type = content_type.unwrap_or_default();
    if content_type.starts_with("multipart/form-data") {
        call.form = "UPLOAD";
        let boundary = multer::parse_boundary(&content_type).unwrap();
        let body = bytes::Bytes::from(request.body);
        let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
        let mut form = multer::Multipart::new(stream, boundary);
        while let Some(field) = form.next_field().await.unwrap() {
            let name = field.name().unwrap().to_owned();
            match field.file_name().map(str::to_owned) {
                Some(file_name) => {
                    let bytes = field.bytes().await.unwrap().to_vec();
                    assert!(call.file.is_none(), "one file part only");
                    call.file = Some((name, file_name, bytes));
                }
                None => {
                    assert_eq!(name, "method");
                    call.method = field.text().await.unwrap();
                }
            }
        }
    } else {
        call.form = "POST";
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        call.method = body["method"].as_str().unwrap_or_default().to_owned();
        call.params = Some(body["params"].clone());
        call.id = Some(body["id"].clone());
    }
    call
}

/// The manager's TLS: its certificate, and a mandatory client certificate checked as 1.2's
/// manager callback does.
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

/// 1.2's manager server callback (`spec/certificates.md` §11.2): a certificate is required and
/// must chain to the CA; then `role=frontend` (the director), `role=user` with the manager's
/// `UID`, or `role=manager` with its `UID` and `serviceLocator` — nothing else. (1.2 also let
/// any leaf named `CN=CA` through; that hole is not reproduced.)
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
            Err(rustls::Error::General(format!(
                "caller refused: role {:?}, UID {:?}",
                caller.role, caller.uid
            )))
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
