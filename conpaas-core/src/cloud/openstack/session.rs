//! One authenticated session with an OpenStack cloud: the Keystone v3 token and its catalog,
//! HTTP with timeouts and bounded retries, and the mapping of answers and transport failures
//! to [`cloud::Error`](crate::cloud::Error).
//!
//! The token is taken when first needed and again shortly before it expires, or once when a
//! service answers 401 (Keystone revoked it, or its clock runs ahead of ours). It lives in a
//! [`SecretString`]: never logged, never in Debug output.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use rustls_pki_types::CertificateDer;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use super::OpenStackTuning;
use super::api::{self, Catalog};
use crate::cloud::Error;
use crate::cloud::openstack_settings::{
    OpenStackCredential, OpenStackInterface, OpenStackProject, OpenStackSettings,
};
use crate::cloud::reqwest_errors::{describe, untrusted_certificate};
use crate::model::ErrorChain;

/// The most bytes of an answer the driver reads: a listing of a thousand servers fits, a
/// misbehaving server cannot exhaust memory.
const MAX_ANSWER_BYTES: usize = 8 << 20;

/// The most characters of an answer quoted in an error message.
const MAX_QUOTED_CHARS: usize = 300;

/// A token this close to its expiry is renewed before use: a call must not start with a
/// token that dies on the way.
const TOKEN_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(120);

/// The Nova microversion the driver speaks: 2.1, which every Nova since Liberty serves; the
/// driver needs nothing newer (metadata and the name filter find its servers, where tags
/// would need 2.52 and exclude older clouds).
pub(super) const COMPUTE_MICROVERSION: &str = "2.1";

/// The services the driver calls, by catalog type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Service {
    /// Nova.
    Compute,
    /// Neutron.
    Network,
    /// Glance.
    Image,
}

impl Service {
    pub(super) fn catalog_type(self) -> &'static str {
        match self {
            Service::Compute => "compute",
            Service::Network => "network",
            Service::Image => "image",
        }
    }
}

/// One answer a service gave: any status but 401 and 5xx.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: String,
}

impl Answer {
    /// The body as JSON, or an error naming the call.
    pub(super) fn json(&self, what: &str) -> Result<Value, Error> {
        serde_json::from_str(&self.body).map_err(|error| {
            Error::Unavailable(format!(
                "{what}: unreadable answer ({}): {error}",
                self.status
            ))
        })
    }
}

/// Why one attempt did not produce an [`Answer`].
#[derive(Debug)]
pub(super) enum Failure {
    /// The request never reached the service (connection refused, DNS, connect timeout): any
    /// request, even a create, may be sent again.
    NotSent(String),
    /// The request may have been acted on (timeout while waiting, connection reset, a 5xx):
    /// only idempotent requests are sent again blindly.
    MaybeDone(String),
    /// What retrying cannot change: credentials refused, a certificate not trusted, no such
    /// endpoint in the catalog.
    Final(Error),
}

impl Failure {
    fn text(&self) -> String {
        match self {
            Failure::NotSent(text) | Failure::MaybeDone(text) => text.clone(),
            Failure::Final(error) => ErrorChain(error).to_string(),
        }
    }
}

/// A token and the endpoints its catalog gives.
struct Token {
    value: SecretString,
    expires_at: Option<DateTime<Utc>>,
    catalog: Catalog,
    /// Counts tokens taken, so that a 401 renews only the token it was answered for.
    serial: u64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("expires_at", &self.expires_at)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

/// An HTTP client bound to one cloud's Keystone, with the token it holds.
#[derive(Debug)]
pub(super) struct Session {
    cloud: String,
    http: reqwest::Client,
    settings: OpenStackSettings,
    tuning: OpenStackTuning,
    token: tokio::sync::Mutex<Option<Arc<Token>>>,
}

impl Session {
    pub(super) fn new(
        cloud: &str,
        settings: &OpenStackSettings,
        tuning: OpenStackTuning,
    ) -> Result<Session, Error> {
        let setup_error = |message: String| Error::Refused {
            code: "ClientSetup".into(),
            message,
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        if settings.auth_url.starts_with("https:") {
            // Keystone's certificate (and the services', which the catalog names) is checked
            // against the system's CA bundle; SSL_CERT_FILE / SSL_CERT_DIR point elsewhere.
            let native = rustls_native_certs::load_native_certs();
            for error in &native.errors {
                tracing::warn!(cloud, error = %ErrorChain(&error), "cannot read part of the system CA certificates");
            }
            let certs: Vec<CertificateDer<'static>> = native
                .certs
                .into_iter()
                .chain(tuning.extra_roots.iter().cloned())
                .collect();
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                tracing::warn!(
                    cloud,
                    "no CA certificate found: HTTPS to Keystone will fail (install the system CA \
                     bundle, or set SSL_CERT_FILE)"
                );
            }
        } else {
            // A catalog may still name https endpoints behind an http Keystone.
            roots.add_parsable_certificates(tuning.extra_roots.iter().cloned());
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| setup_error(format!("TLS setup: {error}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(tuning.request_timeout)
            .connect_timeout(tuning.connect_timeout)
            // A redirect could carry X-Auth-Token elsewhere; OpenStack APIs do not redirect.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "conpaas-rs/",
                env!("CARGO_PKG_VERSION"),
                " (OpenStack)"
            ))
            .build()
            .map_err(|error| setup_error(format!("HTTP client: {}", describe(&error))))?;
        Ok(Session {
            cloud: cloud.to_owned(),
            http,
            settings: settings.clone(),
            tuning,
            token: tokio::sync::Mutex::new(None),
        })
    }

    pub(super) fn tuning(&self) -> &OpenStackTuning {
        &self.tuning
    }

    /// The `auth` document of `POST /v3/auth/tokens`. It holds the password or secret: it is
    /// built just before sending and never logged.
    fn auth_body(&self) -> Value {
        match &self.settings.credential {
            OpenStackCredential::Password(password) => {
                let project = match &password.project {
                    OpenStackProject::Name(name) => json!({
                        "name": name,
                        "domain": { "name": password.project_domain_name },
                    }),
                    OpenStackProject::Id(id) => json!({ "id": id }),
                };
                json!({ "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": { "user": {
                            "name": password.user,
                            "domain": { "name": password.user_domain_name },
                            "password": password.password.expose_secret(),
                        }},
                    },
                    "scope": { "project": project },
                }})
            }
            // An application credential is scoped already: Keystone refuses a scope beside it.
            OpenStackCredential::ApplicationCredential(credential) => json!({ "auth": {
                "identity": {
                    "methods": ["application_credential"],
                    "application_credential": {
                        "id": credential.id,
                        "secret": credential.secret.expose_secret(),
                    },
                },
            }}),
        }
    }

    /// Who the credential is, for messages: never the secret.
    fn who(&self) -> String {
        match &self.settings.credential {
            OpenStackCredential::Password(password) => {
                let project = match &password.project {
                    OpenStackProject::Name(name) => {
                        format!(
                            "project {name:?} (domain {:?})",
                            password.project_domain_name
                        )
                    }
                    OpenStackProject::Id(id) => format!("project id {id:?}"),
                };
                format!(
                    "user {:?} (domain {:?}) for {project}: check USER, PASSWORD, \
                     USER_DOMAIN_NAME, PROJECT_NAME/PROJECT_ID and PROJECT_DOMAIN_NAME",
                    password.user, password.user_domain_name
                )
            }
            OpenStackCredential::ApplicationCredential(credential) => format!(
                "application credential {:?}: check APPLICATION_CREDENTIAL_ID and \
                 APPLICATION_CREDENTIAL_SECRET (and that the credential has not expired)",
                credential.id
            ),
        }
    }

    /// `POST /v3/auth/tokens`, retried while Keystone is unreachable or failing (a token
    /// more is harmless).
    async fn authenticate(&self, serial: u64) -> Result<Token, Error> {
        let url = format!("{}/auth/tokens", self.settings.auth_url);
        let attempts = self.tuning.max_attempts.get();
        let mut last = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(self.tuning.backoff(attempt - 1)).await;
            }
            let started = Instant::now();
            let sent = self
                .http
                .post(&url)
                .header("Accept", "application/json")
                .json(&self.auth_body())
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(error) => {
                    match classify(error) {
                        Failure::Final(error) => return Err(error),
                        failure => last = failure.text(),
                    }
                    tracing::info!(cloud = %self.cloud, attempt, attempts, failure = %last, "Keystone unreachable, retrying if attempts remain");
                    continue;
                }
            };
            let status = response.status();
            let subject = response
                .headers()
                .get("X-Subject-Token")
                .and_then(|value| value.to_str().ok())
                .map(|value| SecretString::from(value.to_owned()));
            let body = match read_limited(response).await {
                Ok(body) => body,
                Err(error) => {
                    last = describe(&error.without_url());
                    continue;
                }
            };
            let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            tracing::debug!(cloud = %self.cloud, status = status.as_u16(), elapsed_ms, "Keystone token request");
            if status.is_server_error() {
                last = format!("Keystone answered {}", quote(&body, status));
                tracing::info!(cloud = %self.cloud, attempt, attempts, failure = %last, "Keystone failing, retrying if attempts remain");
                continue;
            }
            if status == StatusCode::UNAUTHORIZED {
                return Err(Error::Refused {
                    code: "Unauthorized".into(),
                    message: format!(
                        "Keystone at {} refused {} of cloud {} (it said: {})",
                        self.settings.auth_url,
                        self.who(),
                        self.cloud,
                        api::error_message(&body).unwrap_or_else(|| quote(&body, status))
                    ),
                });
            }
            if status == StatusCode::NOT_FOUND {
                return Err(Error::Misconfigured {
                    key: "AUTH_URL".into(),
                    message: format!(
                        "{url} answered 404: {} is not a Keystone v3 endpoint",
                        self.settings.auth_url
                    ),
                });
            }
            if !status.is_success() {
                return Err(Error::Refused {
                    code: format!("HTTP {}", status.as_u16()),
                    message: format!(
                        "Keystone at {} refused a token to {} (it said: {})",
                        self.settings.auth_url,
                        self.who(),
                        api::error_message(&body).unwrap_or_else(|| quote(&body, status))
                    ),
                });
            }
            let Some(value) = subject else {
                return Err(Error::Unavailable(format!(
                    "POST {url}: {status} without an X-Subject-Token header"
                )));
            };
            let parsed = api::parse_token(&body).map_err(|error| {
                Error::Unavailable(format!("POST {url}: unreadable token ({status}): {error}"))
            })?;
            tracing::info!(cloud = %self.cloud, expires_at = ?parsed.expires_at, "Keystone token issued");
            return Ok(Token {
                value,
                expires_at: parsed.expires_at,
                catalog: parsed.catalog,
                serial,
            });
        }
        Err(Error::Unavailable(format!(
            "POST {url}: {last} (after {attempts} attempt{})",
            if attempts == 1 { "" } else { "s" }
        )))
    }

    /// The current token, taken anew when there is none, it expires soon, or `stale` names it
    /// (a service refused it).
    async fn token(&self, stale: Option<u64>) -> Result<Arc<Token>, Error> {
        let mut held = self.token.lock().await;
        if let Some(token) = held.as_ref() {
            let fresh = token
                .expires_at
                .is_none_or(|expires| expires - TOKEN_MARGIN > Utc::now());
            if fresh && stale != Some(token.serial) {
                return Ok(token.clone());
            }
        }
        let serial = held.as_ref().map_or(1, |token| token.serial + 1);
        let token = Arc::new(self.authenticate(serial).await?);
        *held = Some(token.clone());
        Ok(token)
    }

    /// Takes a token now: what `probe` checks first.
    pub(super) async fn check_token(&self) -> Result<(), Error> {
        self.token(None).await.map(|_| ())
    }

    /// The base URL of `service` from the catalog (Glance's `/v2` and Neutron's `/v2.0`
    /// added when the catalog names the unversioned endpoint); `None` when the catalog has no
    /// such service.
    pub(super) async fn endpoint(&self, service: Service) -> Result<Option<String>, Error> {
        let token = self.token(None).await?;
        Ok(self.endpoint_of(&token, service))
    }

    fn endpoint_of(&self, token: &Token, service: Service) -> Option<String> {
        let url = token.catalog.endpoint(
            service.catalog_type(),
            self.settings.interface.as_str(),
            self.settings.region_name.as_deref(),
        )?;
        let url = url.trim_end_matches('/');
        Some(match service {
            Service::Compute => url.to_owned(),
            Service::Network if url.ends_with("/v2.0") => url.to_owned(),
            Service::Network => format!("{url}/v2.0"),
            Service::Image if url.ends_with("/v2") => url.to_owned(),
            Service::Image => format!("{url}/v2"),
        })
    }

    fn no_endpoint(&self, service: Service) -> Error {
        let interface = self.settings.interface;
        let (key, place) = match &self.settings.region_name {
            Some(region) => ("REGION_NAME", format!(" in region {region:?}")),
            None => ("INTERFACE", String::new()),
        };
        let key = if interface == OpenStackInterface::Public && key == "INTERFACE" {
            "AUTH_URL"
        } else {
            key
        };
        Error::Misconfigured {
            key: key.into(),
            message: format!(
                "the catalog of the token has no {interface} {} endpoint{place}",
                service.catalog_type()
            ),
        }
    }

    /// One request to `service` at `path` (after its base URL, with its query), renewing the
    /// token once if the service answers 401. No other retry.
    pub(super) async fn attempt(
        &self,
        service: Service,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, Failure> {
        let mut stale = None;
        for round in 0..2 {
            let token = self.token(stale).await.map_err(Failure::Final)?;
            let Some(base) = self.endpoint_of(&token, service) else {
                return Err(Failure::Final(self.no_endpoint(service)));
            };
            let url = format!("{base}{path}");
            let started = Instant::now();
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header("Accept", "application/json")
                .header("X-Auth-Token", token.value.expose_secret());
            if service == Service::Compute {
                request = request
                    .header(
                        "OpenStack-API-Version",
                        format!("compute {COMPUTE_MICROVERSION}"),
                    )
                    .header("X-OpenStack-Nova-API-Version", COMPUTE_MICROVERSION);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let result = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    read_limited(response)
                        .await
                        .map(|body| Answer { status, body })
                }
                Err(error) => Err(error),
            };
            let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            // The path only: a query may carry a name, never a secret, but the body (user data,
            // passwords) is never logged.
            let answer = match result {
                Ok(answer) => answer,
                Err(error) => {
                    let failure = classify(error);
                    tracing::debug!(cloud = %self.cloud, service = service.catalog_type(), %method, path, elapsed_ms, ?failure, "OpenStack call failed");
                    return Err(failure);
                }
            };
            tracing::debug!(cloud = %self.cloud, service = service.catalog_type(), %method, path, status = answer.status.as_u16(), elapsed_ms, "OpenStack call");
            if answer.status == StatusCode::UNAUTHORIZED {
                if round == 0 {
                    tracing::info!(cloud = %self.cloud, "token refused: taking a new one");
                    stale = Some(token.serial);
                    continue;
                }
                return Err(Failure::Final(Error::Refused {
                    code: "Unauthorized".into(),
                    message: format!(
                        "{method} {url}: refused a token just issued to {} (it said: {})",
                        self.who(),
                        api::error_message(&answer.body)
                            .unwrap_or_else(|| quote(&answer.body, answer.status))
                    ),
                }));
            }
            if answer.status.is_server_error() {
                return Err(Failure::MaybeDone(format!(
                    "{method} {url}: the service answered {}",
                    quote(&answer.body, answer.status)
                )));
            }
            return Ok(answer);
        }
        Err(Failure::MaybeDone(format!("{method} {path}: no answer")))
    }

    /// An idempotent request (GET, DELETE, PUT), retried with backoff while it fails in a way
    /// that may pass.
    pub(super) async fn call(
        &self,
        service: Service,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, Error> {
        let attempts = self.tuning.max_attempts.get();
        let mut last = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(self.tuning.backoff(attempt - 1)).await;
            }
            match self.attempt(service, method.clone(), path, body).await {
                Ok(answer) => return Ok(answer),
                Err(Failure::Final(error)) => return Err(error),
                Err(Failure::NotSent(text) | Failure::MaybeDone(text)) => {
                    tracing::info!(cloud = %self.cloud, %method, path, attempt, attempts, failure = %text, "OpenStack call failed, retrying if attempts remain");
                    last = text;
                }
            }
        }
        Err(unavailable(&last, attempts))
    }

    /// The error for an answer the caller did not expect: a refusal, never retried.
    pub(super) fn refusal(&self, method: &Method, path: &str, answer: &Answer) -> Error {
        Error::Refused {
            code: format!("HTTP {}", answer.status.as_u16()),
            message: format!(
                "{method} {path}: {}",
                api::error_message(&answer.body)
                    .map(|message| format!("{}: {message}", answer.status))
                    .unwrap_or_else(|| quote(&answer.body, answer.status))
            ),
        }
    }
}

/// The error after `attempts` failed attempts whose last failure was `last`.
pub(super) fn unavailable(last: &str, attempts: u32) -> Error {
    Error::Unavailable(format!(
        "{last} (after {attempts} attempt{})",
        if attempts == 1 { "" } else { "s" }
    ))
}

async fn read_limited(response: reqwest::Response) -> Result<String, reqwest::Error> {
    // Cut at MAX_ANSWER_BYTES: the JSON will not parse, reported as an unreadable answer.
    crate::cloud::reqwest_errors::read_limited(response, MAX_ANSWER_BYTES).await
}

/// An answer for an error message: status and the start of the body on one line.
pub(super) fn quote(body: &str, status: StatusCode) -> String {
    crate::cloud::reqwest_errors::quote(body, status, MAX_QUOTED_CHARS)
}

fn classify(error: reqwest::Error) -> Failure {
    // A certificate the system does not trust stays untrusted: retrying only delays.
    let bad_certificate = untrusted_certificate(&error);
    let (builder, connect) = (error.is_builder(), error.is_connect());
    let url = error.url().map(|url| {
        // Without the query: it may name a server; the URL's path says which call failed.
        let mut url = url.clone();
        url.set_query(None);
        url.to_string()
    });
    let text = match url {
        Some(url) => format!("{url}: {}", describe(&error.without_url())),
        None => describe(&error.without_url()),
    };
    if bad_certificate {
        Failure::Final(Error::Refused {
            code: "TlsCertificate".into(),
            message: text,
        })
    } else if builder {
        Failure::Final(Error::Refused {
            code: "InvalidRequest".into(),
            message: text,
        })
    } else if connect {
        Failure::NotSent(text)
    } else {
        Failure::MaybeDone(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_answers() {
        assert_eq!(
            quote(" a\n  b\t", StatusCode::BAD_REQUEST),
            "400 Bad Request: a b"
        );
        assert_eq!(quote("", StatusCode::BAD_GATEWAY), "502 Bad Gateway");
    }
}
