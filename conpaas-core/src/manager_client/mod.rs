//! JSON-RPC over HTTPS to managers (`spec/director-api.md` §4): the director's own certificate as
//! client certificate, the manager's certificate checked against the CA and its role. Three
//! forms, as 1.2 called them: JSON-RPC POST, JSON-RPC GET (`/?method=..&id=1&params=..`) and the
//! multipart upload POST; answers are reduced to their `result` member as 1.2 did.
//!
//! The same client serves users (the `client` layer): their certificate instead of the
//! director's, and a peer check of their own. `http://` URLs are called without TLS, as 1.2's
//! client called the task farm manager.
//!
//! One connection per call, HTTP/1.1 with `Connection: close`, over tokio-rustls. The answer
//! may be framed by `Content-Length`, chunked, or — as every 1.2 manager sends it — `HTTP/1.0`
//! ended by closing TCP without a TLS close_notify; see `http.rs` for when such an end is
//! accepted.

mod http;
// Shared with the verifiers of `client` and `check`, whose features enable this module.
pub(crate) mod signatures;

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::AsyncWriteExt as _;

use self::http::Target;
use self::signatures::HandshakeSignatures;

/// Decides whether a verified server certificate (DER) is a manager's.
pub type PeerCheck = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// A manager call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The TLS material could not be loaded.
    #[error("manager client tls: {0}")]
    Tls(String),
    /// The manager's address or URL is not usable.
    #[error("invalid manager address {0}")]
    Url(String),
    /// No TCP connection to the manager.
    #[error("cannot connect to the manager")]
    Connect(#[source] std::io::Error),
    /// The TLS handshake failed (among others: the server is not a manager of this CA).
    #[error("TLS handshake with the manager failed")]
    Handshake(#[source] std::io::Error),
    /// The connection failed while the request or the answer travelled.
    #[error("the connection to the manager failed")]
    Io(#[source] std::io::Error),
    /// The call did not finish in time.
    #[error("the manager did not answer within {} s", .0.as_secs_f64())]
    Timeout(Duration),
    /// The answer is not HTTP as this client reads it.
    #[error("the manager's answer is not understood: {0}")]
    Protocol(String),
    /// The connection ended before the answer was complete.
    #[error("the manager's answer is incomplete: {0}")]
    Incomplete(&'static str),
    /// The manager answered a status other than 200.
    #[error("manager answered status {0}")]
    Status(u16),
    /// The manager's answer is larger than [`MAX_ANSWER_BYTES`].
    #[error("the manager's answer is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
}

impl Error {
    /// Whether the call ran out of time (rather than being refused or cut).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_))
    }
}

/// The largest manager answer read: the answers the director asks for are small JSON objects,
/// and a manager (run by the user) must not be able to fill the director's memory.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// How long an upload call may take at least (a code archive can be large); calls without a
/// file use the client's own timeout.
pub const MIN_UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// A file sent by [`ManagerClient::upload`]: one file part of the multipart body.
#[derive(Clone)]
#[non_exhaustive]
pub struct Upload {
    /// The form field (`code`, `script`, `mysqldump_file`).
    pub field: &'static str,
    /// The file name announced in the part.
    pub file_name: String,
    /// The content.
    pub bytes: Vec<u8>,
}

impl Upload {
    /// The file `file_name` holding `bytes`, in the form field `field`.
    pub fn new(field: &'static str, file_name: impl Into<String>, bytes: Vec<u8>) -> Self {
        Upload {
            field,
            file_name: file_name.into(),
            bytes,
        }
    }
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The content may be a user's database dump: its size says enough.
        f.debug_struct("Upload")
            .field("field", &self.field)
            .field("file_name", &self.file_name)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// The message of a manager's error answer: the `error` member of a (reduced) answer, as 1.2's
/// manifest code tested it (`'error' in res`); a non-string error is given as its JSON text.
/// `None` for an answer without one (a `null` error member counts as none).
pub fn error_message(answer: &serde_json::Value) -> Option<String> {
    match answer.get("error")? {
        serde_json::Value::Null => None,
        serde_json::Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// 1.2's answer handling: a body that is not JSON is raw text; JSON is reduced to its `result`
/// member when present. One change: an answer with a non-null `error` member is kept whole even
/// when it also has `result`, so that a JSON-RPC error is never mistaken for a success.
fn reduce(body: Vec<u8>) -> serde_json::Value {
    let text = String::from_utf8_lossy(&body).into_owned();
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(value) if error_message(&value).is_some() => value,
        Ok(mut value) => value
            .get_mut("result")
            .map(serde_json::Value::take)
            .unwrap_or(value),
        Err(_) => serde_json::Value::String(text),
    }
}

/// The director's HTTPS client towards managers.
#[derive(Clone)]
pub struct ManagerClient {
    tls: tokio_rustls::TlsConnector,
    port: u16,
    timeout: Duration,
    upload_timeout: Duration,
}

impl std::fmt::Debug for ManagerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerClient")
            .field("port", &self.port)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Accepts a server whose chain ends at the director's CA and whose certificate passes
/// `peer_check` (role `manager`). Managers are reached by IP and their certificates name no
/// host, so there is no host name to check, as in 1.2.
#[derive(Debug)]
struct ManagerVerifier {
    roots: Arc<RootCertStore>,
    signatures: HandshakeSignatures,
    peer_check: PeerCheckDebug,
}

struct PeerCheckDebug(PeerCheck);

impl std::fmt::Debug for PeerCheckDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerCheck")
    }
}

impl ServerCertVerifier for ManagerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.signatures.algorithms().all,
        )?;
        if (self.peer_check.0)(end_entity.as_ref()) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server is not a ConPaaS manager".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.supported_schemes()
    }
}

impl ManagerClient {
    /// A client presenting the director's certificate (`cert_pem`, `key_pem`) and trusting
    /// managers whose certificates chain to `ca_pem` and pass `peer_check`; every call is
    /// bounded by `timeout`.
    pub fn new(
        cert_pem: &[u8],
        key_pem: &[u8],
        ca_pem: &[u8],
        peer_check: PeerCheck,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| Error::Tls(format!("director certificate: {error}")))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|error| Error::Tls(format!("director key: {error}")))?;
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca_pem) {
            let ca = ca.map_err(|error| Error::Tls(format!("ca certificate: {error}")))?;
            roots
                .add(ca)
                .map_err(|error| Error::Tls(format!("ca certificate: {error}")))?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = ManagerVerifier {
            roots: Arc::new(roots),
            signatures: HandshakeSignatures::of(&provider),
            peer_check: PeerCheckDebug(peer_check),
        };
        // An explicit provider: the process-wide default is never relied on.
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| Error::Tls(error.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(chain, key)
            .map_err(|error| Error::Tls(error.to_string()))?;
        // Managers are reached by address and their certificates name no host: 1.2 sent no
        // SNI either.
        config.enable_sni = false;
        // Every call is a full handshake (issue #21). A 1.2 manager's pyOpenSSL server asks for
        // a client certificate but sets no session id context, so OpenSSL aborts any handshake
        // offering a session to resume ("session id context uninitialized", alert
        // internal_error): with rustls' default cache the second call to a manager failed.
        // Disabled means no session cache, no TLS 1.2 session ids or tickets offered, no
        // TLS 1.3 PSK; 1.2's own client (httplib on a fresh context each call) resumed nothing.
        config.resumption = rustls::client::Resumption::disabled();
        // Nothing else a 1.2 manager's OpenSSL could refuse: no early data (it needs a resumed
        // session anyway), no ticket request extension, and the extended master secret not
        // required (OpenSSL before 1.1.0 does not offer it).
        config.enable_early_data = false;
        config.send_ticket_request = None;
        config.require_ems = false;
        Ok(ManagerClient {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            port: 443,
            timeout,
            upload_timeout: timeout.max(MIN_UPLOAD_TIMEOUT),
        })
    }

    /// The same client calling managers on `port` instead of 443 (`[director] MANAGER_PORT`).
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The port managers are called on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://<host>:<port>/`, with an IPv6 address in brackets.
    pub fn url(&self, host: &str) -> String {
        if host.contains(':') && !host.starts_with('[') {
            format!("https://[{host}]:{}/", self.port)
        } else {
            format!("https://{host}:{}/", self.port)
        }
    }

    /// JSON-RPC POST of `method` with `params` to the manager at `host` (path `/`); answers the
    /// `result` member when present, else the whole JSON answer (see [`error_message`]).
    pub async fn call(
        &self,
        host: &str,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, Error> {
        self.call_at(&self.url(host), method, params).await
    }

    /// [`ManagerClient::call`] at a full URL (tests run managers on other ports).
    pub async fn call_at(
        &self,
        url: &str,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, Error> {
        let body = serde_json::json!({"method": method, "params": params, "id": "1"});
        let target = Target::parse(url)?;
        let answer = self
            .exchange(
                &target,
                "POST",
                "application/json",
                Some(body.to_string().as_bytes()),
                self.timeout,
                false,
            )
            .await?;
        Ok(reduce(answer))
    }

    /// JSON-RPC GET: `GET /?method=<method>&id=1[&params=<JSON>]`, the `params` pair only when
    /// there are parameters (1.2's form for `get_service_info`, `list_nodes`, `get_node_info`).
    pub async fn get(
        &self,
        host: &str,
        method: &str,
        params: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, Error> {
        self.get_at(&self.url(host), method, params).await
    }

    /// [`ManagerClient::get`] at a full URL.
    pub async fn get_at(
        &self,
        url: &str,
        method: &str,
        params: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, Error> {
        Ok(reduce(self.get_raw(url, method, params, false).await?))
    }

    /// [`ManagerClient::get_at`] answering the body's bytes as they came, for answers that are
    /// files rather than JSON (`download_code_version`). Bounded by at least
    /// [`MIN_UPLOAD_TIMEOUT`], as uploads are.
    pub async fn get_bytes_at(
        &self,
        url: &str,
        method: &str,
        params: Option<serde_json::Value>,
    ) -> Result<Vec<u8>, Error> {
        self.get_raw(url, method, params, true).await
    }

    async fn get_raw(
        &self,
        url: &str,
        method: &str,
        params: Option<serde_json::Value>,
        raw: bool,
    ) -> Result<Vec<u8>, Error> {
        let mut target = Target::parse(url)?;
        let mut query = format!("method={}&id=1", http::form_encode(method));
        if let Some(params) = params {
            query.push_str("&params=");
            query.push_str(&http::form_encode(&params.to_string()));
        }
        // The URL's own query, if any, is replaced: these pairs are the call.
        let path_end = target.target.find('?').unwrap_or(target.target.len());
        target.target.truncate(path_end);
        target.target.push('?');
        target.target.push_str(&query);
        // 1.2 sent this header on its GETs too; managers do not need it, but keep the shape.
        let timeout = if raw {
            self.upload_timeout
        } else {
            self.timeout
        };
        self.exchange(&target, "GET", "application/json", None, timeout, raw)
            .await
    }

    /// The upload POST: `multipart/form-data` with the field `method` and one file part
    /// (`upload_code_version` + `code`, `upload_startup_script` + `script`, `load_dump` +
    /// `mysqldump_file`). Bounded by at least [`MIN_UPLOAD_TIMEOUT`].
    pub async fn upload(
        &self,
        host: &str,
        method: &str,
        file: Upload,
    ) -> Result<serde_json::Value, Error> {
        self.upload_at(&self.url(host), method, file).await
    }

    /// [`ManagerClient::upload`] at a full URL.
    pub async fn upload_at(
        &self,
        url: &str,
        method: &str,
        file: Upload,
    ) -> Result<serde_json::Value, Error> {
        self.upload_fields_at(url, &[("method", method)], file)
            .await
    }

    /// The upload POST with the text `fields` given in full (the method among them): 1.2's
    /// task farm takes `uriLocation` beside `method`.
    pub async fn upload_fields_at(
        &self,
        url: &str,
        fields: &[(&str, &str)],
        file: Upload,
    ) -> Result<serde_json::Value, Error> {
        let target = Target::parse(url)?;
        let (body, content_type) =
            http::multipart(fields, file.field, &file.file_name, &file.bytes);
        drop(file);
        let answer = self
            .exchange(
                &target,
                "POST",
                &content_type,
                Some(&body),
                self.upload_timeout,
                false,
            )
            .await?;
        Ok(reduce(answer))
    }

    /// One request and its answer's body on a connection of its own, all within `timeout`;
    /// `raw` as in `http::read_answer`.
    async fn exchange(
        &self,
        target: &Target,
        method: &str,
        content_type: &str,
        body: Option<&[u8]>,
        timeout: Duration,
        raw: bool,
    ) -> Result<Vec<u8>, Error> {
        let call = async {
            let server_name = match target.host.parse::<std::net::IpAddr>() {
                Ok(ip) => ServerName::IpAddress(ip.into()),
                Err(_) => ServerName::try_from(target.host.clone())
                    .map_err(|_| Error::Url(target.host.clone()))?,
            };
            let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
                .await
                .map_err(Error::Connect)?;
            // One small request each way: nothing to gain from delaying segments.
            let _ = tcp.set_nodelay(true);
            let head = http::request_head(method, target, content_type, body.map(<[u8]>::len));
            if !target.tls {
                let mut tcp = tcp;
                tcp.write_all(&head).await.map_err(Error::Io)?;
                if let Some(body) = body {
                    tcp.write_all(body).await.map_err(Error::Io)?;
                }
                tcp.flush().await.map_err(Error::Io)?;
                return http::read_answer(&mut tcp, MAX_ANSWER_BYTES, raw).await;
            }
            let mut tls = self
                .tls
                .connect(server_name, tcp)
                .await
                .map_err(Error::Handshake)?;
            tls.write_all(&head).await.map_err(Error::Io)?;
            if let Some(body) = body {
                tls.write_all(body).await.map_err(Error::Io)?;
            }
            tls.flush().await.map_err(Error::Io)?;
            http::read_answer(&mut tls, MAX_ANSWER_BYTES, raw).await
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| Error::Timeout(timeout))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_are_reduced_as_1_2_did() {
        let check = |text: &str, expect: serde_json::Value| {
            assert_eq!(reduce(text.as_bytes().to_vec()), expect)
        };
        check(
            r#"{"result": {"state": "INIT"}, "error": null, "id": "1"}"#,
            json!({"state": "INIT"}),
        );
        check(r#"{"result": 5}"#, json!(5));
        check(
            r#"{"error": "boom", "id": "1"}"#,
            json!({"error": "boom", "id": "1"}),
        );
        // A JSON-RPC error next to a result is not a success.
        check(
            r#"{"result": null, "error": "boom"}"#,
            json!({"result": null, "error": "boom"}),
        );
        check(r#"{"state": "RUNNING"}"#, json!({"state": "RUNNING"}));
        check("not json", json!("not json"));
        assert_eq!(
            error_message(&json!({"error": "boom"})).as_deref(),
            Some("boom")
        );
        assert_eq!(
            error_message(&json!({"error": {"code": 1}})).as_deref(),
            Some(r#"{"code":1}"#)
        );
        assert_eq!(error_message(&json!({"error": null})), None);
        assert_eq!(error_message(&json!("text")), None);
        assert_eq!(error_message(&json!({"state": "INIT"})), None);
    }
}
