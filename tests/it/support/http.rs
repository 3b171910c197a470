//! The reqwest client of the tests (rustls, trusting only the installation's CA, an optional
//! client certificate) and [`Reply`], an answer with the checks of spec/director-api.md §1.3.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use serde_json::Value;

use super::{Identity, TestDirector, preview};

/// The content type of "bare JSON" answers, of the PEM of `/ca/get_cert.php` and of the 401
/// texts (spec §1.3).
pub const BARE: &str = "text/html; charset=utf-8";
/// The content type of "jsonify" answers.
pub const JSONIFY: &str = "application/json";

/// An HTTP answer, whoever the client was.
#[derive(Debug, Clone)]
pub struct Reply {
    /// What was asked, for messages (`POST /login as alice via curl`).
    pub what: String,
    /// The status code.
    pub status: u16,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// Every value of header `name` (case-insensitive).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).first().copied()
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether `Access-Control-Allow-Origin: *` is present.
    pub fn has_cors(&self) -> bool {
        self.header("access-control-allow-origin").is_some()
    }

    /// Panics with `message` and the whole answer.
    #[track_caller]
    pub fn fail(&self, message: &str) -> ! {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(name, value)| format!("  {name}: {value}"))
            .collect();
        panic!(
            "{}: {message}\n-> status {}\n{}\n  body: {}",
            self.what,
            self.status,
            headers.join("\n"),
            preview(&self.body)
        );
    }

    /// Checks the status code.
    #[track_caller]
    pub fn expect_status(&self, status: u16) -> &Self {
        if self.status != status {
            self.fail(&format!("expected status {status}"));
        }
        self
    }

    /// Checks the presence (`true`) or absence of `Access-Control-Allow-Origin: *`, and that
    /// no other CORS header is ever sent (spec §1.4).
    #[track_caller]
    pub fn expect_cors(&self, cors: bool) -> &Self {
        let values = self.header_values("access-control-allow-origin");
        match (cors, values.as_slice()) {
            (true, ["*"]) | (false, []) => {}
            (true, _) => self.fail("expected exactly one Access-Control-Allow-Origin: *"),
            (false, _) => self.fail("expected no Access-Control-Allow-Origin header"),
        }
        for (name, _) in &self.headers {
            if name.starts_with("access-control-") && name != "access-control-allow-origin" {
                self.fail(&format!("unexpected CORS header {name}"));
            }
        }
        self
    }

    /// Checks the exact content type (case and spaces after `;` ignored).
    #[track_caller]
    pub fn expect_content_type(&self, expected: &str) -> &Self {
        let normalise = |text: &str| {
            text.split(';')
                .map(|part| part.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join("; ")
        };
        match self.header("content-type") {
            Some(value) if normalise(value) == normalise(expected) => self,
            _ => self.fail(&format!("expected Content-Type: {expected}")),
        }
    }

    /// Checks that the media type (before any `;`) is `expected`.
    #[track_caller]
    pub fn expect_media_type(&self, expected: &str) -> &Self {
        let media = self.header("content-type").map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        if media.as_deref() != Some(expected) {
            self.fail(&format!("expected a {expected} answer"));
        }
        self
    }

    /// The body parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            self.fail(&format!("the body is not JSON: {error}"));
        })
    }

    /// A "bare JSON" answer (200, `text/html; charset=utf-8`), with or without CORS.
    #[track_caller]
    pub fn bare(&self, cors: bool) -> Value {
        self.expect_status(200)
            .expect_content_type(BARE)
            .expect_cors(cors);
        self.json()
    }

    /// A "jsonify" answer (200, `application/json`) holding an object.
    #[track_caller]
    pub fn jsonify(&self, cors: bool) -> Value {
        self.expect_status(200)
            .expect_content_type(JSONIFY)
            .expect_cors(cors);
        let value = self.json();
        if !value.is_object() {
            self.fail("a jsonify answer is an object");
        }
        value
    }

    /// The bare body `false` (200, `text/html; charset=utf-8`).
    #[track_caller]
    pub fn expect_false(&self, cors: bool) {
        if self.bare(cors) != Value::Bool(false) || self.text().trim() != "false" {
            self.fail("expected the bare body false");
        }
    }

    /// The bare body `true` (200, `text/html; charset=utf-8`).
    #[track_caller]
    pub fn expect_true(&self, cors: bool) {
        if self.bare(cors) != Value::Bool(true) || self.text().trim() != "true" {
            self.fail("expected the bare body true");
        }
    }

    /// The error object `{"error": true, "msg": <text>}` (200, `application/json`, exactly those
    /// two members); returns the message.
    #[track_caller]
    pub fn expect_error_object(&self, cors: bool) -> String {
        let value = self.jsonify(cors);
        let object = value.as_object().unwrap();
        match (object.get("error"), object.get("msg")) {
            (Some(Value::Bool(true)), Some(Value::String(msg))) if object.len() == 2 => msg.clone(),
            _ => self.fail("expected an error object {\"error\": true, \"msg\": <text>}"),
        }
    }

    /// The error object with message `msg` exactly.
    #[track_caller]
    pub fn expect_error(&self, msg: &str, cors: bool) {
        let got = self.expect_error_object(cors);
        if got != msg {
            self.fail(&format!("expected the message {msg:?}"));
        }
    }

    /// A framework 404: `text/html`, no CORS.
    #[track_caller]
    pub fn expect_not_found(&self) {
        self.expect_status(404)
            .expect_media_type("text/html")
            .expect_cors(false);
    }

    /// A framework 405 whose `Allow` header lists every method of `allowed` and none of
    /// `refused`.
    #[track_caller]
    pub fn expect_method_not_allowed(&self, allowed: &[&str], refused: &[&str]) {
        self.expect_status(405)
            .expect_media_type("text/html")
            .expect_cors(false);
        let Some(allow) = self.header("allow") else {
            self.fail("a 405 answer carries an Allow header");
        };
        let methods: Vec<String> = allow
            .split(',')
            .map(|method| method.trim().to_ascii_uppercase())
            .collect();
        for method in allowed {
            if !methods.iter().any(|listed| listed == method) {
                self.fail(&format!("Allow should list {method}"));
            }
        }
        for method in refused {
            if methods.iter().any(|listed| listed == method) {
                self.fail(&format!("Allow should not list {method}"));
            }
        }
    }

    /// The 401 of a certificate without a `UID` (spec §1.6 step 3): exact text, no CORS.
    #[track_caller]
    pub fn expect_no_uid(&self) {
        self.expect_status(401)
            .expect_content_type(BARE)
            .expect_cors(false);
        if self.text() != "cert_required: client certificate does NOT provide UID" {
            self.fail("expected the text `cert_required: client certificate does NOT provide UID`");
        }
    }

    /// The 401 that replaces 1.2's 500 for a request without a client certificate (spec §6
    /// item 12: "401 with the same plain-text body style"): no CORS, plain text in the style of
    /// `cert_required: ...`.
    #[track_caller]
    pub fn expect_no_certificate(&self) {
        self.expect_status(401)
            .expect_content_type(BARE)
            .expect_cors(false);
        if !self.text().starts_with("cert_required: ") {
            self.fail("expected a plain-text `cert_required: ...` body");
        }
    }

    /// Not a 5xx, and nothing of the server's insides in the body (spec §6 item 20).
    #[track_caller]
    pub fn expect_no_internals(&self, director: &TestDirector) {
        if self.status >= 500 {
            self.fail("a server error");
        }
        let text = self.text();
        let dir = director.data_dir().display().to_string();
        for leak in [
            dir.as_str(),
            "panicked",
            "diesel",
            "sqlite",
            "SQLite",
            "Traceback",
            "<type '",
            "src/",
            "Error {",
            "Os {",
        ] {
            if text.contains(leak) {
                self.fail(&format!("the body leaks internals ({leak:?})"));
            }
        }
    }
}

/// A reqwest client bound to one [`TestDirector`], presenting one identity or none.
/// rustls towards the director: trusting only `ca_pem`, with an optional client certificate and
/// key. reqwest is built without a crypto provider of its own (conpaas-core links aws-lc-rs
/// only), so its clients take a configuration built here.
pub fn client_tls(ca_pem: &str, cert_and_key: Option<(&str, &str)>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    match cert_and_key {
        Some((cert_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    }
}

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    base: String,
    who: String,
}

impl Http {
    /// A client trusting only the director's CA, resolving `localhost` to its address.
    pub fn new(director: &TestDirector, identity: Option<&Identity>) -> Http {
        Http::from_source(director, identity, None)
    }

    /// [`Http::new`] connecting from the loopback address `source` (any of 127.0.0.0/8), so
    /// that the director sees another client network.
    pub fn from_source(
        director: &TestDirector,
        identity: Option<&Identity>,
        source: Option<std::net::Ipv4Addr>,
    ) -> Http {
        let tls = client_tls(
            &director.ca_pem(),
            identity.map(|identity| (identity.cert_pem.as_str(), identity.key_pem.as_str())),
        );
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .resolve("localhost", director.addr())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .http1_only();
        if let Some(source) = source {
            builder = builder.local_address(std::net::IpAddr::V4(source));
        }
        let client = builder.build().unwrap();
        Http {
            client,
            base: director.base_url(),
            who: identity.map_or_else(|| "anonymous".to_owned(), |identity| identity.name.clone()),
        }
    }

    /// The underlying client.
    pub fn inner(&self) -> &reqwest::Client {
        &self.client
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `request` and collects the answer.
    pub async fn send(&self, what: String, request: reqwest::RequestBuilder) -> Reply {
        match self.try_send(what, request).await {
            Ok(reply) => reply,
            Err(error) => panic!("{error}"),
        }
    }

    /// Sends `request` and collects the answer, or says how the exchange failed.
    pub async fn try_send(
        &self,
        what: String,
        request: reqwest::RequestBuilder,
    ) -> Result<Reply, String> {
        let what = format!("{what} as {}", self.who);
        let response = request
            .send()
            .await
            .map_err(|error| format!("{what}: request failed: {error:?}"))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .bytes()
            .await
            .map_err(|error| format!("{what}: reading the body failed: {error:?}"))?
            .to_vec();
        Ok(Reply {
            what,
            status,
            headers,
            body,
        })
    }

    /// `GET path` (parameters, if any, already in `path`).
    pub async fn get(&self, path: &str) -> Reply {
        self.send(format!("GET {path}"), self.client.get(self.url(path)))
            .await
    }

    /// `HEAD path`.
    pub async fn head(&self, path: &str) -> Reply {
        self.send(format!("HEAD {path}"), self.client.head(self.url(path)))
            .await
    }

    /// `POST path` with an urlencoded body of `fields` (the Python client's encoding).
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        self.send(
            format!("POST {path}"),
            self.client.post(self.url(path)).form(fields),
        )
        .await
    }

    /// `POST path` with a `multipart/form-data` body of `fields` (the PHP frontend's encoding).
    pub async fn post_multipart(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let mut form = reqwest::multipart::Form::new();
        for (name, value) in fields {
            form = form.text(name.to_string(), value.to_string());
        }
        self.send(
            format!("POST {path} (multipart)"),
            self.client.post(self.url(path)).multipart(form),
        )
        .await
    }

    /// `POST path` with one multipart *file* part `field` named `filename` (how managers send
    /// their CSR).
    pub async fn post_file(
        &self,
        path: &str,
        field: &str,
        filename: &str,
        content: &[u8],
    ) -> Reply {
        let part = reqwest::multipart::Part::bytes(content.to_vec())
            .file_name(filename.to_owned())
            .mime_str("application/octet-stream")
            .unwrap();
        let form = reqwest::multipart::Form::new().part(field.to_owned(), part);
        self.send(
            format!("POST {path} (multipart file {field})"),
            self.client.post(self.url(path)).multipart(form),
        )
        .await
    }

    /// `POST path` with `body` sent as `content_type`.
    pub async fn post_body(&self, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        self.send(
            format!("POST {path} ({content_type}, {} bytes)", body.len()),
            self.client
                .post(self.url(path))
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    /// [`Http::post_body`] that reports a failed exchange instead of panicking.
    pub async fn try_post_body(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        self.try_send(
            format!("POST {path} ({content_type}, {} bytes)", body.len()),
            self.client
                .post(self.url(path))
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    /// `method path` with an empty body.
    pub async fn request(&self, method: &str, path: &str) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        self.send(
            format!("{method} {path}"),
            self.client.request(method.clone(), self.url(path)),
        )
        .await
    }
}
