//! A small client of the EC2 Query API: form-encoded POSTs signed with SigV4, every call bounded
//! by timeouts and retried with exponential backoff and jitter when EC2 is busy or unreachable.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng as _;
use secrecy::ExposeSecret as _;

use super::credentials::{Credentials, Provider};
use super::sigv4;
use super::xml;
use crate::cloud::{EndpointUrl, Error};
use crate::model::ErrorChain;

/// The API version every call names (the one current AWS SDKs use).
pub(super) const API_VERSION: &str = "2016-11-15";

/// The signed body's content type.
const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// Error codes EC2 uses when it is busy rather than refusing: worth another try.
const RETRYABLE_CODES: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
];

/// Timeouts and retries of each call.
#[derive(Debug, Clone)]
pub(super) struct CallPolicy {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl CallPolicy {
    /// The pause before attempt `attempt + 1`: exponential, capped, with "equal jitter" (half
    /// fixed, half random) so that many directors throttled together do not retry together
    /// yet each still waits.
    fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self
            .backoff_base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let ceiling = exponential.min(self.backoff_max);
        let half = ceiling / 2;
        let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = Duration::from_nanos(rand::thread_rng().gen_range(0..=jitter_nanos));
        half + jitter
    }
}

/// Where and as whom the client calls.
#[derive(Clone)]
pub(super) struct Target {
    /// `https://ec2.us-east-1.amazonaws.com/`, or the `ENDPOINT` override.
    pub url: String,
    /// The `Host` header, signed.
    pub host: String,
    /// The SigV4 region.
    pub region: String,
}

impl Target {
    /// The target for `endpoint` (or `https://<endpoint_host>` when absent).
    pub fn new(endpoint: Option<&EndpointUrl>, endpoint_host: &str, region: &str) -> Target {
        let (url, host) = match endpoint {
            Some(endpoint) => {
                // The Host header hyper would send, which is what the server checks the
                // signature against: the port only when it is not the scheme's default.
                let port = endpoint
                    .port
                    .filter(|port| *port != endpoint.scheme.default_port());
                let host = crate::cloud::settings::authority(&endpoint.host, port);
                (format!("{}/", endpoint), host)
            }
            None => (
                format!("https://{endpoint_host}/"),
                endpoint_host.to_owned(),
            ),
        };
        Target {
            url,
            host,
            region: region.to_owned(),
        }
    }

    fn uses_tls(&self) -> bool {
        self.url.starts_with("https:")
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// The EC2 Query API client of one cloud section.
#[derive(Debug, Clone)]
pub(super) struct QueryClient {
    http: reqwest::Client,
    target: Arc<Target>,
    credentials: Arc<Provider>,
    policy: CallPolicy,
}

/// One failed attempt: try again, or give up at once.
enum Attempt {
    Retry(String),
    Final(Error),
}

impl QueryClient {
    /// A client of `target`. HTTPS endpoints are verified against the system's trusted roots.
    pub fn new(
        target: Target,
        credentials: Provider,
        policy: CallPolicy,
    ) -> Result<QueryClient, Error> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("conpaas-rs/", env!("CARGO_PKG_VERSION")));
        // reqwest has no crypto provider of its own (one provider in the graph: aws-lc-rs), so
        // even a plain-HTTP client is given a TLS configuration; it holds no roots then.
        let tls = if target.uses_tls() {
            tls_config()?
        } else {
            plain_tls_config()?
        };
        builder = builder.use_preconfigured_tls(tls);
        let http = builder
            .build()
            .map_err(|error| Error::Unavailable(format!("cannot build the EC2 client: {error}")))?;
        Ok(QueryClient {
            http,
            target: Arc::new(target),
            credentials: Arc::new(credentials),
            policy,
        })
    }

    /// Calls `action` with `params` and reads the answer with `parse`; retries transport
    /// errors, timeouts, 5xx, throttling and unreadable answers up to the policy's attempts.
    /// Every action the driver uses is safe to repeat: reads, terminations, and a
    /// `RunInstances` that carries a `ClientToken`.
    pub async fn call<T>(
        &self,
        action: &str,
        params: &[(String, String)],
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, Error> {
        let body = form_body(action, params);
        let attempts = self.policy.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            // Asked before every attempt: an instance role's credentials may have been renewed
            // during the pause.
            let credentials = self.credentials.current().await?;
            let reason = match self.once(action, &body, &credentials).await {
                Ok(text) => match parse(&text) {
                    Ok(value) => return Ok(value),
                    Err(reason) => format!("unreadable answer: {reason}"),
                },
                Err(Attempt::Final(error)) => return Err(error),
                Err(Attempt::Retry(reason)) => reason,
            };
            if attempt >= attempts {
                tracing::warn!(action, attempts, %reason, "EC2 call failed");
                return Err(Error::Unavailable(format!(
                    "EC2 {action} failed after {attempts} attempts: {reason}"
                )));
            }
            let pause = self.policy.backoff(attempt);
            tracing::info!(action, attempt, ?pause, %reason, "EC2 call will be retried");
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    /// One signed POST. The body is never logged: `RunInstances` carries the user-data, which
    /// holds the manager's private key.
    async fn once(
        &self,
        action: &str,
        body: &str,
        credentials: &Credentials,
    ) -> Result<String, Attempt> {
        let target = &self.target;
        let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let session_token = credentials
            .session_token
            .as_ref()
            .map(|token| token.expose_secret());
        let mut headers = vec![
            ("content-type", CONTENT_TYPE),
            ("host", target.host.as_str()),
            ("x-amz-date", amz_date.as_str()),
        ];
        // Temporary credentials (a role's, AWS_SESSION_TOKEN) sign their token too; the
        // names stay sorted as SigV4 wants.
        if let Some(token) = session_token {
            headers.push(("x-amz-security-token", token));
        }
        let authorization = sigv4::authorization(
            credentials.secret_access_key.expose_secret(),
            &sigv4::Scope {
                access_key_id: &credentials.access_key_id,
                amz_date: &amz_date,
                region: &target.region,
                service: "ec2",
            },
            &sigv4::Request {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                payload: body.as_bytes(),
            },
        );
        let started = Instant::now();
        let mut post = self
            .http
            .post(&target.url)
            .header(reqwest::header::HOST, &target.host)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header("x-amz-date", &amz_date)
            .header(reqwest::header::AUTHORIZATION, authorization);
        if let Some(token) = session_token {
            post = post.header("x-amz-security-token", token);
        }
        let sent = post.body(body.to_owned()).send().await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                tracing::debug!(action, elapsed = ?started.elapsed(), error = %ErrorChain(&error), "EC2 call not answered");
                return Err(Attempt::Retry(transport_reason(&error)));
            }
        };
        let status = response.status();
        let request_id = response
            .headers()
            .get("x-amzn-requestid")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = response
            .text()
            .await
            .map_err(|error| Attempt::Retry(transport_reason(&error)))?;
        tracing::debug!(action, status = status.as_u16(), request_id, elapsed = ?started.elapsed(), "EC2 call answered");
        if status.is_success() {
            return Ok(text);
        }
        // 5xx and 429 are EC2 being busy whatever the code says.
        let busy = status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        match xml::api_error(&text) {
            Some(error) if busy || RETRYABLE_CODES.contains(&error.code.as_str()) => {
                Err(Attempt::Retry(format!(
                    "HTTP {}: {}: {}",
                    status.as_u16(),
                    error.code,
                    error.message
                )))
            }
            Some(error) => Err(Attempt::Final(Error::Refused {
                code: error.code,
                message: error.message,
            })),
            None if busy => Err(Attempt::Retry(format!("HTTP {}", status.as_u16()))),
            None => Err(Attempt::Final(Error::Refused {
                code: format!("HTTP{}", status.as_u16()),
                message: status
                    .canonical_reason()
                    .unwrap_or("unexpected answer")
                    .to_owned(),
            })),
        }
    }
}

/// What a transport error says, without the chain of sources reqwest keeps separately.
fn transport_reason(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "transport error"
    };
    let mut text = format!("{kind}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// TLS towards EC2: rustls with aws-lc-rs, trusting the system's root certificates (as 1.2's
/// libcloud did), kept apart from reqwest's own roots so that no other client of the process
/// (the manager client trusts only the director's CA) trusts more than it should.
fn tls_config() -> Result<rustls::ClientConfig, Error> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        let detail = loaded
            .errors
            .first()
            .map(|error| format!(": {error}"))
            .unwrap_or_default();
        return Err(Error::Unavailable(format!(
            "no trusted root certificates found for HTTPS to EC2 (install the system's CA \
             certificates, e.g. the ca-certificates package){detail}"
        )));
    }
    client_config(roots)
}

/// A TLS configuration trusting nothing, for plain-HTTP clients (reqwest is built without a
/// crypto provider of its own and wants one even then).
pub(super) fn plain_tls_config() -> Result<rustls::ClientConfig, Error> {
    client_config(rustls::RootCertStore::empty())
}

/// A client configuration trusting `roots`, on the crate's one crypto provider (aws-lc-rs).
fn client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::Unavailable(format!("TLS setup: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Percent-encodes `text` as SigV4 and the Query API want: only `A-Z a-z 0-9 - _ . ~` kept.
pub(super) fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// `Action=..&Version=..&<params>`, form-encoded.
fn form_body(action: &str, params: &[(String, String)]) -> String {
    let mut body = format!("Action={}&Version={API_VERSION}", encode(action));
    for (name, value) in params {
        body.push('&');
        body.push_str(&encode(name));
        body.push('=');
        body.push_str(&encode(value));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::UrlScheme;

    #[test]
    fn encodes_like_the_query_api() {
        assert_eq!(encode("aZ09-_.~"), "aZ09-_.~");
        assert_eq!(encode("a b+c/d=e"), "a%20b%2Bc%2Fd%3De");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(
            form_body(
                "RunInstances",
                &[("TagSpecification.1.Tag.1.Value".into(), "x y".into())]
            ),
            "Action=RunInstances&Version=2016-11-15&TagSpecification.1.Tag.1.Value=x%20y"
        );
    }

    #[test]
    fn targets() {
        let aws = Target::new(None, "ec2.us-east-1.amazonaws.com", "us-east-1");
        assert_eq!(aws.url, "https://ec2.us-east-1.amazonaws.com/");
        assert_eq!(aws.host, "ec2.us-east-1.amazonaws.com");
        assert!(aws.uses_tls());
        let endpoint = |scheme, host: &str, port| EndpointUrl {
            scheme,
            host: host.to_owned(),
            port,
        };
        let moto = endpoint(UrlScheme::Http, "127.0.0.1", Some(5000));
        let local = Target::new(Some(&moto), "ec2.x", "us-east-1");
        assert_eq!(local.url, "http://127.0.0.1:5000/");
        assert_eq!(local.host, "127.0.0.1:5000");
        assert!(!local.uses_tls());
        let default_port = endpoint(UrlScheme::Https, "::1", Some(443));
        let v6 = Target::new(Some(&default_port), "ec2.x", "r");
        assert_eq!(v6.host, "[::1]");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = CallPolicy {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_attempts: 5,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = policy.backoff(30);
            assert!(late >= Duration::from_millis(250) && late <= Duration::from_millis(500));
        }
    }
}
