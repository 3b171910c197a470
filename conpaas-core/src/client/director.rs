//! The director's routes as the 1.2 client calls them (`spec/director-api.md` §5.1): form
//! fields, `username` and `password` added to every call, the user certificate presented,
//! answers JSON (or the raw archive of `/getcerts`). Unlike 1.2, the director's certificate is
//! verified against the installation's CA.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;

use super::answers::{self, Agent, Application, Certificates, Manifest, Service, User};
use super::{Error, Identity, TransportProblem};
use crate::manager_client::signatures::HandshakeSignatures;

/// How the director's certificate is trusted.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Trust {
    /// It must chain to this CA (PEM) and name the URL's host.
    Ca(Vec<u8>),
    /// Before the CA is known (the first `credentials`): any certificate is accepted and
    /// recorded, to be checked with [`DirectorClient::check_recorded`] against the CA that
    /// `/getcerts` hands out. The handshake signature is still verified.
    FirstUse,
}

/// An answer of the director: JSON, or bytes that are not JSON (the archive).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Answer {
    /// A JSON answer that is not an error object.
    Json(Value),
    /// A body that is not JSON.
    Raw(Vec<u8>),
}

/// The director's client for one user.
#[derive(Clone)]
pub struct DirectorClient {
    url: String,
    http: reqwest::Client,
    username: String,
    password: SecretString,
    recorded: Arc<Mutex<Option<Vec<CertificateDer<'static>>>>>,
}

impl std::fmt::Debug for DirectorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectorClient")
            .field("url", &self.url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// How long one director call may take: `/upload_manifest` starts services synchronously.
pub const DIRECTOR_TIMEOUT: Duration = Duration::from_secs(600);

impl DirectorClient {
    /// A client of the director at `url` (`https://host:port`), presenting `identity`'s
    /// certificate when given.
    pub fn new(
        url: &str,
        trust: Trust,
        identity: Option<&Identity>,
        username: &str,
        password: SecretString,
    ) -> Result<Self, Error> {
        let url = url.trim().trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&url).map_err(|_| Error::InvalidUrl(url.clone()))?;
        if parsed.scheme() != "https" || parsed.host_str().is_none() {
            return Err(Error::InvalidUrl(url));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls_error = |error: String| Error::Tls(error);
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| tls_error(error.to_string()))?;
        let recorded = Arc::new(Mutex::new(None));
        let builder = match trust {
            Trust::Ca(ca_pem) => builder.with_root_certificates(roots(&ca_pem)?),
            Trust::FirstUse => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(RecordingVerifier {
                    signatures: HandshakeSignatures::of(&provider),
                    recorded: recorded.clone(),
                })),
        };
        let config = match identity {
            Some(identity) => {
                let chain = CertificateDer::pem_slice_iter(&identity.cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|error| tls_error(format!("cert.pem: {error}")))?;
                let key =
                    PrivateKeyDer::from_pem_slice(identity.key_pem.expose_secret().as_bytes())
                        .map_err(|error| tls_error(format!("key.pem: {error}")))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|error| tls_error(format!("cert.pem and key.pem: {error}")))?
            }
            None => builder.with_no_client_auth(),
        };
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .timeout(DIRECTOR_TIMEOUT)
            .connect_timeout(Duration::from_secs(30))
            .build()
            .map_err(|error| tls_error(error.to_string()))?;
        Ok(DirectorClient {
            url,
            http,
            username: username.to_owned(),
            password,
            recorded,
        })
    }

    /// The director's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Checks the certificate recorded under [`Trust::FirstUse`] against `ca_pem`, host name
    /// included: the archive's CA must be the one that issued the certificate the director
    /// showed.
    pub fn check_recorded(&self, ca_pem: &[u8]) -> Result<(), Error> {
        let chain = self
            .recorded
            .lock()
            .map_err(|_| Error::Tls("poisoned lock".into()))?
            .clone()
            .ok_or_else(|| Error::Tls("no director certificate was seen".into()))?;
        let (end_entity, intermediates) = chain
            .split_first()
            .ok_or_else(|| Error::Tls("the director sent no certificate".into()))?;
        let host = reqwest::Url::parse(&self.url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_default();
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let server_name =
            ServerName::try_from(host).map_err(|_| Error::InvalidUrl(self.url.clone()))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots(ca_pem)?),
            provider,
        )
        .build()
        .map_err(|error| Error::Tls(error.to_string()))?;
        verifier
            .verify_server_cert(
                end_entity,
                intermediates,
                &server_name,
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
            .map_err(|error| Error::UntrustedDirector(error.to_string()))
    }

    /// Calls `route` with `fields` (plus `username` and `password`), as a POST form or a GET
    /// query. An error object is [`Error::Refused`] with its `msg`.
    pub async fn call(
        &self,
        route: &str,
        post: bool,
        fields: &[(&str, &str)],
    ) -> Result<Answer, Error> {
        let url = format!("{}/{route}", self.url);
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("username", &self.username));
        form.push(("password", self.password.expose_secret()));
        let request = if post {
            self.http.post(&url).form(&form)
        } else {
            self.http.get(&url).query(&form)
        };
        let response = request
            .send()
            .await
            .map_err(|error| Error::Transport(TransportProblem::from_reqwest(&error)))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|error| Error::Transport(TransportProblem::from_reqwest(&error)))?;
        if status != 200 {
            return Err(Error::Status {
                status,
                route: route.to_owned(),
                text: String::from_utf8_lossy(&body).chars().take(200).collect(),
            });
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(value) if value.get("error") == Some(&Value::Bool(true)) => {
                let msg = value
                    .get("msg")
                    .and_then(Value::as_str)
                    .unwrap_or("the director refused the call");
                Err(Error::Refused(format!("{msg} while calling {route}")))
            }
            Ok(value) => Ok(Answer::Json(value)),
            Err(_) => Ok(Answer::Raw(body.to_vec())),
        }
    }

    async fn json(&self, route: &str, post: bool, fields: &[(&str, &str)]) -> Result<Value, Error> {
        match self.call(route, post, fields).await? {
            Answer::Json(value) => Ok(value),
            Answer::Raw(_) => Err(Error::Answer(format!("{route} did not answer JSON"))),
        }
    }

    /// A call answering `true` on success and `false` on refusal.
    async fn done(&self, route: &str, fields: &[(&str, &str)]) -> Result<(), Error> {
        match self.json(route, true, fields).await? {
            Value::Bool(false) | Value::Null => {
                Err(Error::Refused(format!("the director refused {route}")))
            }
            _ => Ok(()),
        }
    }

    fn list_of_strings(route: &str, value: Value) -> Result<Vec<String>, Error> {
        match value {
            Value::Array(items) => Ok(items
                .into_iter()
                .map(|item| match item {
                    Value::String(text) => text,
                    other => other.to_string(),
                })
                .collect()),
            other => Err(Error::Answer(format!(
                "{route} answered {other}, not a list"
            ))),
        }
    }

    /// `GET /available_services`: the service types (deduplicated: 1.2 lists taskfarm twice).
    pub async fn available_services(&self) -> Result<Vec<String>, Error> {
        let mut types = Self::list_of_strings(
            "available_services",
            self.json("available_services", false, &[]).await?,
        )?;
        let mut seen = std::collections::HashSet::new();
        types.retain(|name| seen.insert(name.clone()));
        Ok(types)
    }

    /// `GET /available_clouds`.
    pub async fn available_clouds(&self) -> Result<Vec<String>, Error> {
        Self::list_of_strings(
            "available_clouds",
            self.json("available_clouds", false, &[]).await?,
        )
    }

    /// `POST /login`: the user.
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] for a wrong user name or password, [`Error::Answer`] for an answer
    /// that is not a user; the transport's errors as [`call`](Self::call).
    pub async fn login(&self) -> Result<User, Error> {
        match self.json("login", true, &[]).await? {
            Value::Bool(false) => Err(Error::Refused("authentication failure".into())),
            user => answers::typed("login", user),
        }
    }

    /// `POST /getcerts`: the archive's bytes (see [`certificates`](Self::certificates)).
    pub async fn getcerts(&self) -> Result<Vec<u8>, Error> {
        match self.call("getcerts", true, &[]).await? {
            Answer::Raw(bytes) => Ok(bytes),
            Answer::Json(_) => Err(Error::Refused("authentication failure".into())),
        }
    }

    /// `POST /getcerts`, the archive read: a new certificate and key, and the CA certificate.
    ///
    /// # Errors
    ///
    /// As [`getcerts`](Self::getcerts), and [`Error::Answer`] for an archive without its
    /// three members.
    pub async fn certificates(&self) -> Result<Certificates, Error> {
        Certificates::from_zip(&self.getcerts().await?)
    }

    /// `POST /listapp`: the applications.
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] when the director answers `false`, [`Error::Answer`] for another
    /// shape; the transport's errors as [`call`](Self::call).
    pub async fn listapp(&self) -> Result<Vec<Application>, Error> {
        match self.json("listapp", true, &[]).await? {
            Value::Array(apps) => apps
                .into_iter()
                .map(|app| answers::typed("listapp", app))
                .collect(),
            Value::Bool(false) => Err(Error::Refused("the director refused listapp".into())),
            other => Err(Error::Answer(format!("listapp answered {other}"))),
        }
    }

    /// `POST /createapp`: the new application.
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] when the director answers `false` or an error object (a name
    /// already taken); [`Error::Answer`] for another shape.
    pub async fn createapp(&self, name: &str) -> Result<Application, Error> {
        match self.json("createapp", true, &[("name", name)]).await? {
            Value::Bool(false) => Err(Error::Refused("the director refused createapp".into())),
            app => answers::typed("createapp", app),
        }
    }

    /// `POST /renameapp/<aid>`.
    pub async fn renameapp(&self, aid: i64, name: &str) -> Result<(), Error> {
        self.done(&format!("renameapp/{aid}"), &[("name", name)])
            .await
    }

    /// `POST /delete/<aid>` (stops the application's services too).
    pub async fn deleteapp(&self, aid: i64) -> Result<(), Error> {
        self.done(&format!("delete/{aid}"), &[]).await
    }

    /// `POST /list` or `POST /list/<aid>`.
    pub async fn list(&self, aid: Option<i64>) -> Result<Vec<Service>, Error> {
        let route = match aid {
            Some(aid) => format!("list/{aid}"),
            None => "list".to_owned(),
        };
        match self.json(&route, true, &[]).await? {
            Value::Array(services) => services
                .into_iter()
                .map(|service| answers::typed("a service", service))
                .collect(),
            Value::Bool(false) => Err(Error::Refused(format!("the director refused {route}"))),
            other => Err(Error::Answer(format!("{route} answered {other}"))),
        }
    }

    /// The service `sid` of `/list`; [`Error::Refused`] "cannot find service" when absent.
    pub async fn service(&self, sid: i64) -> Result<Service, Error> {
        self.list(None)
            .await?
            .into_iter()
            .find(|service| service.sid == sid)
            .ok_or_else(|| Error::Refused(format!("cannot find service {sid}")))
    }

    /// `POST /list_agents`: the agent VMs the user's managers started through the director,
    /// ascending id (not a 1.2 route: a 1.2 director answers 404, an [`Error::Status`]).
    pub async fn agents(&self) -> Result<Vec<Agent>, Error> {
        match self.json("list_agents", true, &[]).await? {
            Value::Array(agents) => agents
                .into_iter()
                .map(|agent| answers::typed("an agent", agent))
                .collect(),
            Value::Bool(false) => Err(Error::Refused("the director refused list_agents".into())),
            other => Err(Error::Answer(format!("list_agents answered {other}"))),
        }
    }

    /// `POST /start/<type>[/<cloud>]` with `appid` when given: the new service.
    pub async fn start(
        &self,
        service_type: &str,
        cloud: Option<&str>,
        appid: Option<i64>,
    ) -> Result<Service, Error> {
        let route = match cloud {
            Some(cloud) => format!("start/{service_type}/{cloud}"),
            None => format!("start/{service_type}"),
        };
        let appid = appid.map(|aid| aid.to_string());
        let mut fields = Vec::new();
        if let Some(appid) = &appid {
            fields.push(("appid", appid.as_str()));
        }
        match self.json(&route, true, &fields).await? {
            Value::Bool(false) => Err(Error::Refused(format!("the director refused {route}"))),
            service => answers::typed("a service", service),
        }
    }

    /// `POST /stop/<sid>`: the service's manager VM is terminated and its row removed.
    pub async fn stop(&self, sid: i64) -> Result<(), Error> {
        self.done(&format!("stop/{sid}"), &[]).await
    }

    /// `POST /rename/<sid>`.
    pub async fn rename(&self, sid: i64, name: &str) -> Result<(), Error> {
        self.done(&format!("rename/{sid}"), &[("name", name)]).await
    }

    /// `POST /upload_manifest` with the manifest's text, synchronously (no `thread`).
    pub async fn upload_manifest(&self, manifest: &str) -> Result<(), Error> {
        self.done("upload_manifest", &[("manifest", manifest)])
            .await
    }

    /// `POST /download_manifest/<aid>`: the application as a manifest (its `raw` is the text
    /// `/upload_manifest` takes back).
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] when the application is not the user's, [`Error::Answer`] for
    /// another shape.
    pub async fn download_manifest(&self, aid: i64) -> Result<Manifest, Error> {
        match self
            .json(&format!("download_manifest/{aid}"), true, &[])
            .await?
        {
            Value::Bool(false) => Err(Error::Refused("failed downloading manifest file".into())),
            manifest => answers::typed("download_manifest", manifest),
        }
    }
}

fn roots(ca_pem: &[u8]) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem) {
        let ca = ca.map_err(|error| Error::Tls(format!("ca_cert.pem: {error}")))?;
        roots
            .add(ca)
            .map_err(|error| Error::Tls(format!("ca_cert.pem: {error}")))?;
    }
    if roots.is_empty() {
        return Err(Error::Tls("ca_cert.pem holds no certificate".into()));
    }
    Ok(roots)
}

/// Accepts the director's certificate before its CA is known, recording it (see
/// [`Trust::FirstUse`]); the handshake's signatures are verified as usual.
#[derive(Debug)]
struct RecordingVerifier {
    signatures: HandshakeSignatures,
    recorded: Arc<Mutex<Option<Vec<CertificateDer<'static>>>>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|cert| cert.clone().into_owned())
            .collect();
        if let Ok(mut recorded) = self.recorded.lock() {
            *recorded = Some(chain);
        }
        Ok(ServerCertVerified::assertion())
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
