//! HTTP towards the OCCI server: authentication, timeouts, bounded retries with backoff, and
//! the mapping of answers and transport failures to [`cloud::Error`](crate::cloud::Error).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use rustls_pki_types::CertificateDer;
use secrecy::{ExposeSecret as _, SecretString};

use super::OpenNebulaTuning;
use crate::cloud::reqwest_errors::{describe, untrusted_certificate};
use crate::cloud::{EndpointUrl, Error, UrlScheme};
use crate::model::ErrorChain;

/// The most bytes of an answer the driver reads: a collection of thousands of VMs fits, a
/// misbehaving server cannot exhaust memory.
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// The most characters of a server's answer quoted in an error message.
const MAX_QUOTED_CHARS: usize = 200;

/// One answer the server gave (any status below 500 but 401, or a 500 that carries a
/// message: [`Failure::Said`]).
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: String,
}

/// Why one attempt did not produce an [`Answer`].
#[derive(Debug)]
pub(super) enum Failure {
    /// The request never reached the server (connection refused, DNS, connect timeout): any
    /// request, even a create, may be sent again.
    NotSent(String),
    /// The request may have been acted on (timeout while waiting, connection reset, a 5xx
    /// answer): only idempotent requests are sent again blindly.
    MaybeDone(String),
    /// A 500 whose body is the OCCI server's own message (see [`is_server_message`]): how
    /// OpenNebula 3.x reports that it refused a request. The caller judges it.
    Said(Answer),
    /// An answer or failure that retrying cannot change (401, TLS certificate errors).
    Final(Error),
}

/// An authenticated HTTP client bound to one OCCI server.
#[derive(Debug)]
pub(super) struct Transport {
    cloud: String,
    http: reqwest::Client,
    /// `scheme://host:port`, without a path: 1.2 ignored any path of `URL`.
    base: String,
    user: String,
    /// The SHA-1 of the password in lower-case hex: what OCCI's default auth compares, and
    /// so as good as the password itself.
    password_sha1: SecretString,
    tuning: OpenNebulaTuning,
}

/// The lower-case hexadecimal SHA-1 of `password` (OpenNebula's "sha1 password" auth).
pub(super) fn sha1_hex(password: &str) -> String {
    use sha1::Digest as _;
    hex::encode(sha1::Sha1::digest(password.as_bytes()))
}

impl Transport {
    pub(super) fn new(
        cloud: &str,
        url: &EndpointUrl,
        user: &str,
        password: &SecretString,
        tuning: OpenNebulaTuning,
    ) -> Result<Transport, Error> {
        let http = http_client(cloud, url.scheme, &tuning, "OpenNebula")?;
        Ok(Transport {
            cloud: cloud.to_owned(),
            http,
            base: format!(
                "{}://{}:{}",
                url.scheme.as_str(),
                bracketed(&url.host),
                url.port_or_default()
            ),
            user: user.to_owned(),
            password_sha1: SecretString::from(sha1_hex(password.expose_secret())),
            tuning,
        })
    }

    /// `scheme://host:port` of the server, for messages.
    pub(super) fn base(&self) -> &str {
        &self.base
    }

    pub(super) fn tuning(&self) -> &OpenNebulaTuning {
        &self.tuning
    }

    /// One request, no retry. Answers below 500 (except 401) come back as [`Answer`]s for the
    /// caller to judge.
    pub(super) async fn attempt(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> Result<Answer, Failure> {
        let started = Instant::now();
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .basic_auth(&self.user, Some(self.password_sha1.expose_secret()));
        if let Some(body) = body {
            // As 1.2: the body alone, with its Content-Length and no Content-Type.
            request = request.body(body.to_owned());
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
        let answer = match result {
            Ok(answer) => answer,
            Err(error) => {
                let failure = classify(error);
                tracing::debug!(cloud = %self.cloud, %method, path, elapsed_ms, ?failure, "OCCI call failed");
                return Err(failure);
            }
        };
        tracing::debug!(cloud = %self.cloud, %method, path, status = answer.status.as_u16(), elapsed_ms, "OCCI call");
        if answer.status == StatusCode::UNAUTHORIZED {
            return Err(Failure::Final(Error::Refused {
                code: "Unauthorized".into(),
                message: format!(
                    "the OCCI server at {} refused user {:?}: check USER and PASSWORD of cloud {} \
                     (the server said: {})",
                    self.base,
                    self.user,
                    self.cloud,
                    quote(&answer.body, answer.status)
                ),
            }));
        }
        if answer.status == StatusCode::INTERNAL_SERVER_ERROR && is_server_message(&answer.body) {
            return Err(Failure::Said(answer));
        }
        if answer.status.is_server_error() {
            return Err(Failure::MaybeDone(format!(
                "the server answered {}",
                quote(&answer.body, answer.status)
            )));
        }
        Ok(answer)
    }

    /// An idempotent request (GET, DELETE), retried with backoff while it fails in a way that
    /// may pass. A 500 with the server's message is retried for a GET (`oned` may be down a
    /// moment: its "connection refused" comes back so) and returned as an [`Answer`] for
    /// anything else, whose caller knows what the message can mean.
    pub(super) async fn call(&self, method: Method, path: &str) -> Result<Answer, Error> {
        let attempts = self.tuning.max_attempts.get();
        let mut last = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(self.tuning.backoff(attempt - 1)).await;
            }
            match self.attempt(method.clone(), path, None).await {
                Ok(answer) => return Ok(answer),
                Err(Failure::Said(answer)) if method != Method::GET => return Ok(answer),
                Err(Failure::Final(error)) => return Err(error),
                Err(Failure::Said(answer)) => {
                    let text =
                        format!("the server answered {}", quote(&answer.body, answer.status));
                    tracing::info!(cloud = %self.cloud, %method, path, attempt, attempts, failure = %text, "OCCI call failed, retrying if attempts remain");
                    last = text;
                }
                Err(Failure::NotSent(text) | Failure::MaybeDone(text)) => {
                    tracing::info!(cloud = %self.cloud, %method, path, attempt, attempts, failure = %text, "OCCI call failed, retrying if attempts remain");
                    last = text;
                }
            }
        }
        Err(self.unavailable(&method, path, &last, attempts))
    }

    /// The error after `attempts` failed attempts.
    pub(super) fn unavailable(
        &self,
        method: &Method,
        path: &str,
        last: &str,
        attempts: u32,
    ) -> Error {
        Error::Unavailable(format!(
            "{method} {}{path}: {last} (after {attempts} attempt{})",
            self.base,
            if attempts == 1 { "" } else { "s" }
        ))
    }

    /// The error for an answer the caller did not expect (4xx other than 401, a 500 with a
    /// message).
    pub(super) fn refusal(&self, method: &Method, path: &str, answer: &Answer) -> Error {
        Error::Refused {
            code: format!("HTTP {}", answer.status.as_u16()),
            message: format!(
                "{method} {}{path}: the server answered {}",
                self.base,
                quote(&answer.body, answer.status)
            ),
        }
    }
}

/// The HTTP client of one OpenNebula endpoint (OCCI or XML-RPC): for `https`, the system's CA
/// certificates plus [`OpenNebulaTuning::extra_roots`]; the tuning's timeouts; no proxy; a
/// `User-Agent` naming `api`.
pub(super) fn http_client(
    cloud: &str,
    scheme: UrlScheme,
    tuning: &OpenNebulaTuning,
    api: &str,
) -> Result<reqwest::Client, Error> {
    let setup_error = |message: String| Error::Refused {
        code: "ClientSetup".into(),
        message,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if scheme == UrlScheme::Https {
        // Like 1.2 (Python's ssl module), the server is checked against the system's CA
        // bundle; SSL_CERT_FILE / SSL_CERT_DIR point elsewhere for a private CA.
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::warn!(cloud, error = %ErrorChain(&error), "cannot read part of the system CA certificates");
        }
        let certs: Vec<CertificateDer<'static>> = native
            .certs
            .into_iter()
            .chain(tuning.extra_roots.iter().cloned())
            .collect();
        let (added, ignored) = roots.add_parsable_certificates(certs);
        if ignored > 0 {
            tracing::debug!(cloud, ignored, "unusable CA certificates skipped");
        }
        if added == 0 {
            tracing::warn!(
                cloud,
                "no CA certificate found: HTTPS to OpenNebula will fail (install the \
                     system CA bundle, or set SSL_CERT_FILE)"
            );
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| setup_error(format!("TLS setup: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(tuning.request_timeout)
        .connect_timeout(tuning.connect_timeout)
        // 1.2 (Python httplib) never went through a proxy; an HTTP_PROXY meant for the
        // outside world must not capture the private OpenNebula endpoint.
        .no_proxy()
        .user_agent(format!(
            concat!("conpaas-rs/", env!("CARGO_PKG_VERSION"), " ({})"),
            api
        ))
        .build()
        .map_err(|error| setup_error(format!("HTTP client: {}", describe(&error))))
}

impl OpenNebulaTuning {
    /// The pause before retry number `retry` (1 = the first retry): doubling from
    /// `backoff_initial`, capped at `backoff_max`, the upper half jittered so that several
    /// directors do not retry in step.
    pub(super) fn backoff(&self, retry: u32) -> Duration {
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

/// Whether a 500's body is the OCCI server's own message rather than a failure's by-product.
/// OpenNebula 3.x's `occi-server` answers what it or `oned` refuses with `halt 500, message`:
/// plain text such as `Bad instance type` or `[VirtualMachineAllocate] Error allocating a new
/// virtual machine. ...`. A server that failed (a Ruby exception: Sinatra's
/// `<h1>Internal Server Error</h1>`; a proxy's HTML page) or says nothing gives markup or an
/// empty body, and nothing tells whether the request was acted on.
pub(super) fn is_server_message(body: &str) -> bool {
    let text = body.trim();
    !text.is_empty() && !text.starts_with('<')
}

pub(super) fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

pub(super) async fn read_limited(response: reqwest::Response) -> Result<String, reqwest::Error> {
    // Cut at MAX_ANSWER_BYTES: the XML will not parse, reported as a malformed answer.
    crate::cloud::reqwest_errors::read_limited(response, MAX_ANSWER_BYTES).await
}

/// A server's answer for an error message: status and the start of the body on one line.
pub(super) fn quote(body: &str, status: StatusCode) -> String {
    crate::cloud::reqwest_errors::quote(body, status, MAX_QUOTED_CHARS)
}

pub(super) fn classify(error: reqwest::Error) -> Failure {
    // A certificate the system does not trust stays untrusted: retrying only delays.
    let bad_certificate = untrusted_certificate(&error);
    let (builder, connect) = (error.is_builder(), error.is_connect());
    // The URL is in the message already; reqwest's copy would repeat it.
    let text = describe(&error.without_url());
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
    fn sha1_of_the_password() {
        // `echo -n password | sha1sum`
        assert_eq!(
            sha1_hex("password"),
            "5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8"
        );
        assert_eq!(sha1_hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let tuning = OpenNebulaTuning {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            ..OpenNebulaTuning::standard()
        };
        for (retry, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (60, 1000),
        ] {
            for _ in 0..20 {
                let pause = tuning.backoff(retry);
                assert!(
                    pause >= Duration::from_millis(full / 2)
                        && pause <= Duration::from_millis(full),
                    "retry {retry}: {pause:?}"
                );
            }
        }
        let zero = OpenNebulaTuning {
            backoff_initial: Duration::ZERO,
            ..OpenNebulaTuning::standard()
        };
        assert_eq!(zero.backoff(3), Duration::ZERO);
    }

    #[test]
    fn server_messages_are_told_from_failure_pages() {
        for (body, said) in [
            ("Bad instance type", true),
            (
                "[VirtualMachineAllocate] Error allocating a new virtual machine. Quota exceeded",
                true,
            ),
            ("  Connection refused - connect(2)\n", true),
            ("<h1>Internal Server Error</h1>", false),
            ("<!DOCTYPE html><html><body>502</body></html>", false),
            ("", false),
            (" \n ", false),
        ] {
            assert_eq!(is_server_message(body), said, "{body:?}");
        }
    }

    #[test]
    fn quoting_answers() {
        assert_eq!(
            quote(
                "  Username\n or password\tnot correct ",
                StatusCode::UNAUTHORIZED
            ),
            "401 Unauthorized: Username or password not correct"
        );
        assert_eq!(quote("", StatusCode::BAD_GATEWAY), "502 Bad Gateway");
        assert_eq!(
            quote(&"x".repeat(1000), StatusCode::OK).len(),
            "200 OK: ".len() + 200
        );
    }

    fn transport(url: EndpointUrl, attempts: u32) -> Transport {
        let tuning = OpenNebulaTuning {
            max_attempts: std::num::NonZeroU32::new(attempts).unwrap(),
            backoff_initial: Duration::from_millis(1),
            backoff_max: Duration::from_millis(2),
            request_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            ..OpenNebulaTuning::standard()
        };
        Transport::new("iaas", &url, "oneadmin", &SecretString::from("pw"), tuning).unwrap()
    }

    #[test]
    fn base_url_ignores_path_and_defaults_the_port() {
        let http = EndpointUrl {
            scheme: UrlScheme::Http,
            host: "occi.example.org".into(),
            port: None,
        };
        assert_eq!(transport(http, 1).base(), "http://occi.example.org:80");
        let https = EndpointUrl {
            scheme: UrlScheme::Https,
            host: "::1".into(),
            port: Some(4567),
        };
        assert_eq!(transport(https, 1).base(), "https://[::1]:4567");
    }

    #[tokio::test]
    async fn refused_connections_are_retried_then_unavailable() {
        // A port nobody listens on: bind, note it, close.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = EndpointUrl {
            scheme: UrlScheme::Http,
            host: "127.0.0.1".into(),
            port: Some(port),
        };
        let transport = transport(url, 3);
        assert!(matches!(
            transport
                .attempt(Method::POST, "/compute", Some("<COMPUTE/>"))
                .await,
            Err(Failure::NotSent(_))
        ));
        match transport.call(Method::GET, "/compute").await {
            Err(Error::Unavailable(message)) => {
                assert!(
                    message.starts_with(&format!("GET http://127.0.0.1:{port}/compute: ")),
                    "{message}"
                );
                assert!(message.ends_with("(after 3 attempts)"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
