//! A local EC2 instance metadata service (IMDS) on 127.0.0.1:0, as AWS documents it ("Use the
//! Instance Metadata Service to access instance metadata", "Retrieve security credentials from
//! instance metadata"): `PUT /latest/api/token` issues a session token for the TTL asked in
//! `X-aws-ec2-metadata-token-ttl-seconds` (1 to 21600 s, else 400); `GET /latest/meta-data/…`
//! answers with a valid `X-aws-ec2-metadata-token`, and without one only when IMDSv1 is allowed
//! (else 401); an invalid token is 401. It serves the addresses, host names and id a manager's
//! cloud part reads, and an instance role's temporary credentials.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// How the instance's metadata options are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokens {
    /// `HttpTokens = required`: IMDSv2 only.
    Required,
    /// `HttpTokens = optional`: v1 GETs answered too.
    Optional,
    /// An endpoint that predates IMDSv2 (or a proxy in front of it): the token call is 404.
    NoTokenApi,
}

/// The role whose credentials the instance has.
pub const ROLE: &str = "conpaas-director";
/// The role's temporary access key id.
pub const ROLE_KEY_ID: &str = "ASIAROLEEXAMPLE";
/// The role's session token.
pub const ROLE_TOKEN: &str = "role-session-token";

/// One request the service received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The request carried a valid session token.
    pub with_token: bool,
}

struct Inner {
    tokens: Tokens,
    issued: Mutex<Vec<String>>,
    seen: Mutex<Vec<Seen>>,
    /// The instance has a public address (`public-ipv4`); else 404 as in a private subnet.
    public: bool,
}

/// The running service; stops when dropped.
pub struct FakeImds {
    port: u16,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeImds {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeImds {
    /// An IMDS for an instance with a public address.
    pub async fn start(tokens: Tokens) -> FakeImds {
        Self::start_with(tokens, true).await
    }

    /// An IMDS; `public`: whether the instance has a public address.
    pub async fn start_with(tokens: Tokens, public: bool) -> FakeImds {
        let inner = Arc::new(Inner {
            tokens,
            issued: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            public,
        });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeImds {
            port,
            inner,
            server,
        }
    }

    /// `http://127.0.0.1:<port>`, what `AWS_EC2_METADATA_SERVICE_ENDPOINT` takes.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().unwrap().clone()
    }
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().to_owned();
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let with_token = header("x-aws-ec2-metadata-token")
        .is_some_and(|token| inner.issued.lock().unwrap().iter().any(|t| t == token));
    inner.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: path.clone(),
        with_token,
    });
    if path == "/latest/api/token" {
        if inner.tokens == Tokens::NoTokenApi {
            return StatusCode::NOT_FOUND.into_response();
        }
        if method != Method::PUT {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        // A forwarded request (a container behind a proxy) is refused, as AWS does.
        if header("x-forwarded-for").is_some() {
            return StatusCode::FORBIDDEN.into_response();
        }
        let ttl = header("x-aws-ec2-metadata-token-ttl-seconds")
            .and_then(|ttl| ttl.parse::<u32>().ok())
            .filter(|ttl| (1..=21_600).contains(ttl));
        let Some(ttl) = ttl else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        let token = format!("AQAEA{}-{ttl}", inner.issued.lock().unwrap().len());
        inner.issued.lock().unwrap().push(token.clone());
        return (
            [("x-aws-ec2-metadata-token-ttl-seconds", ttl.to_string())],
            token,
        )
            .into_response();
    }
    if method != Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let token_given = header("x-aws-ec2-metadata-token").is_some();
    // A wrong token is refused; no token only where IMDSv1 is allowed.
    if !with_token && (token_given || inner.tokens == Tokens::Required) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(item) = path.strip_prefix("/latest/meta-data/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let expiration = (chrono::Utc::now() + chrono::Duration::hours(6))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let body = match item {
        "instance-id" => "i-0123456789abcdef0".to_owned(),
        "local-ipv4" => "10.7.1.23".to_owned(),
        "hostname" => "ip-10-7-1-23.eu-west-1.compute.internal".to_owned(),
        "public-ipv4" if inner.public => "54.77.1.23".to_owned(),
        "public-hostname" if inner.public => {
            "ec2-54-77-1-23.eu-west-1.compute.amazonaws.com".to_owned()
        }
        "iam/security-credentials/" => ROLE.to_owned(),
        item if item == format!("iam/security-credentials/{ROLE}") => serde_json::json!({
            "Code": "Success",
            "LastUpdated": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "Type": "AWS-HMAC",
            "AccessKeyId": ROLE_KEY_ID,
            "SecretAccessKey": "role-secret-access-key",
            "Token": ROLE_TOKEN,
            "Expiration": expiration,
        })
        .to_string(),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    body.into_response()
}
