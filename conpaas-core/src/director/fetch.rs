//! Downloads of the URLs a manifest names (`Archive`, `StartupScript`, `Dump`), made by the
//! director itself and therefore guarded (spec/director-api.md §6 item 14): http and https
//! only, no loopback, private, link-local or metadata address unless the operator allows it
//! (metadata never), every redirect hop and every resolved address checked, size and time
//! bounded.

use crate::model::ErrorChain;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The most bytes a download may have by default (a code archive or a database dump).
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 64 * 1024 * 1024;

/// How long a download may take by default, body included.
pub const DEFAULT_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// How many redirects a download follows, each hop checked as the first URL.
const MAX_REDIRECTS: usize = 5;

/// What the director may download: [`DownloadPolicy::recommended`] and the setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DownloadPolicy {
    /// Allow loopback, private, shared, link-local and unique-local addresses
    /// (`[director] MANIFEST_ALLOW_PRIVATE_URLS`). Cloud metadata addresses stay refused.
    pub allow_private: bool,
    /// The most bytes one download may have.
    pub max_bytes: u64,
    /// How long one download may take (connection, redirects and body).
    pub timeout: Duration,
}

impl DownloadPolicy {
    /// The defaults: 64 MiB, 5 minutes, private addresses as `allow_private` says.
    pub fn recommended(allow_private: bool) -> DownloadPolicy {
        DownloadPolicy {
            allow_private,
            max_bytes: DEFAULT_MAX_DOWNLOAD_BYTES,
            timeout: DEFAULT_DOWNLOAD_TIMEOUT,
        }
    }

    setters! {
        allow_private: bool,
        max_bytes: u64,
        timeout: Duration,
    }
}

/// A download was refused or failed. The messages go to the user who named the URL, so they
/// say what was wrong with it and nothing about the director.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The text is not an absolute URL.
    #[error("not a URL")]
    NotAUrl,
    /// The scheme is not http or https (`file:`, `ftp:`, ...).
    #[error("only http and https URLs are downloaded, not {0}:")]
    Scheme(String),
    /// The URL has no host.
    #[error("the URL names no host")]
    NoHost,
    /// The host is, or resolves only to, an address the policy refuses.
    #[error("{address} is {kind}, which this director does not download from")]
    Address {
        /// The refused address.
        address: IpAddr,
        /// What kind of address it is (`a loopback address`, ...).
        kind: &'static str,
    },
    /// The host name does not resolve.
    #[error("the host {0} cannot be resolved")]
    Unresolved(String),
    /// Too many redirects.
    #[error("more than {MAX_REDIRECTS} redirects")]
    Redirects,
    /// The server answered a status other than 200.
    #[error("the server answered status {0}")]
    Status(u16),
    /// The body is larger than the policy allows.
    #[error("larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The download took longer than the policy allows.
    #[error("no complete answer within {0} s")]
    Timeout(u64),
    /// Connecting or reading failed.
    #[error("the server could not be reached")]
    Connection,
}

impl FetchError {
    /// Whether the policy refused the URL (rather than the download failing).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            FetchError::NotAUrl
                | FetchError::Scheme(_)
                | FetchError::NoHost
                | FetchError::Address { .. }
                | FetchError::Redirects
        )
    }
}

/// A downloaded file.
#[derive(Clone)]
#[non_exhaustive]
pub struct Download {
    /// The last segment of the URL's path (1.2 sent it as the file name), or `fallback`.
    pub file_name: String,
    /// The content.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("file_name", &self.file_name)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Why an address is refused, or `None` when it may be downloaded from. Metadata addresses are
/// refused whatever `allow_private` says: they hand out the director host's cloud credentials.
pub fn refused_address(address: IpAddr, allow_private: bool) -> Option<&'static str> {
    let kind = match address {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }?;
    if allow_private && kind != METADATA {
        return None;
    }
    Some(kind)
}

const METADATA: &str = "a cloud metadata address";

fn refused_v4(address: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = address.octets();
    if address == Ipv4Addr::new(169, 254, 169, 254) {
        return Some(METADATA);
    }
    Some(match (a, b, c) {
        (127, _, _) => "a loopback address",
        (0, _, _) => "an unspecified address",
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => "a private address",
        (100, 64..=127, _) => "a shared (carrier-grade NAT) address",
        (169, 254, _) => "a link-local address",
        (192, 0, 0) => "an IETF protocol address",
        (198, 18..=19, _) => "a benchmarking address",
        (224..=239, _, _) => "a multicast address",
        (240..=255, _, _) => "a reserved address",
        _ => return None,
    })
}

fn refused_v6(address: Ipv6Addr) -> Option<&'static str> {
    // Addresses that carry an IPv4 address reach that address: judge it.
    if let Some(v4) = address.to_ipv4_mapped() {
        return refused_v4(v4);
    }
    let segments = address.segments();
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [_, _, _, _, _, _, high, low] = segments;
        return refused_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)));
    }
    // IPv4-compatible (`::a.b.c.d`, deprecated), except `::` and `::1` themselves.
    if segments[..6] == [0; 6] && !address.is_loopback() && !address.is_unspecified() {
        let [_, _, _, _, _, _, high, low] = segments;
        return refused_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)));
    }
    if segments[0] == 0x2002 {
        return refused_v4(Ipv4Addr::from(
            (u32::from(segments[1]) << 16) | u32::from(segments[2]),
        ));
    }
    if address == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Some(METADATA);
    }
    Some(match segments[0] {
        _ if address.is_loopback() => "a loopback address",
        _ if address.is_unspecified() => "an unspecified address",
        0xfe80..=0xfebf => "a link-local address",
        0xfec0..=0xfeff => "a site-local address",
        0xfc00..=0xfdff => "a unique-local address",
        0xff00..=0xffff => "a multicast address",
        _ => return None,
    })
}

/// Checks what can be checked without the network: an absolute http(s) URL with a host, and
/// a literal address the policy accepts. Host names are checked when they are resolved.
pub fn check_url(text: &str, policy: &DownloadPolicy) -> Result<Url, FetchError> {
    let url = Url::parse(text.trim()).map_err(|_| FetchError::NotAUrl)?;
    check_parsed(&url, policy)?;
    Ok(url)
}

fn check_parsed(url: &Url, policy: &DownloadPolicy) -> Result<(), FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::Scheme(url.scheme().to_owned()));
    }
    let Some(host) = url.host_str() else {
        return Err(FetchError::NoHost);
    };
    // The URL parser normalises literal addresses (`0x7f000001` is 127.0.0.1, IPv6 in
    // brackets); anything else is a name, checked when resolved.
    let Ok(address) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(());
    };
    match refused_address(address, policy.allow_private) {
        Some(kind) => Err(FetchError::Address { address, kind }),
        None => Ok(()),
    }
}

/// The URL as it may be shown and logged: without user name, password, query or fragment.
pub fn shown_url(text: &str) -> String {
    match Url::parse(text.trim()) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => text.chars().take(200).collect(),
    }
}

/// The file name 1.2 announced for a downloaded URL: its last path segment.
fn file_name(url: &Url, fallback: &str) -> String {
    url.path_segments()
        .and_then(|mut segments| segments.next_back())
        .filter(|segment| !segment.is_empty())
        .map_or_else(|| fallback.to_owned(), str::to_owned)
}

/// Resolves host names like the system does, then drops the addresses the policy refuses, so
/// that a name cannot point the director at an internal service, whatever its DNS answers
/// (the check happens on the addresses actually connected to, not on an earlier lookup).
#[derive(Debug)]
struct GuardedResolver {
    allow_private: bool,
}

/// The resolver refused every address of a name.
#[derive(Debug)]
struct Refused(FetchError);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Refused {}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|_| Box::new(Refused(FetchError::Unresolved(host.clone()))))?
                .collect();
            let mut first_refusal = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| match refused_address(addr.ip(), allow_private) {
                    Some(kind) => {
                        first_refusal.get_or_insert(FetchError::Address {
                            address: addr.ip(),
                            kind,
                        });
                        false
                    }
                    None => true,
                })
                .collect();
            if allowed.is_empty() {
                let error = first_refusal.unwrap_or(FetchError::Unresolved(host));
                return Err(Box::new(Refused(error)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The director's download client: one per director, built on first use (reading the system's
/// root certificates takes a moment and most directors never download anything).
#[derive(Debug)]
pub struct Fetcher {
    policy: DownloadPolicy,
    client: OnceLock<Option<reqwest::Client>>,
}

impl Fetcher {
    /// A fetcher applying `policy`.
    pub fn new(policy: DownloadPolicy) -> Fetcher {
        Fetcher {
            policy,
            client: OnceLock::new(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &DownloadPolicy {
        &self.policy
    }

    fn client(&self) -> Option<&reqwest::Client> {
        self.client
            .get_or_init(|| match build_client(&self.policy) {
                Ok(client) => Some(client),
                Err(error) => {
                    tracing::warn!(%error, "cannot build the manifest download client");
                    None
                }
            })
            .as_ref()
    }

    /// Downloads `text` under the policy; `fallback` names the file when the URL's path ends
    /// with `/`.
    pub async fn fetch(&self, text: &str, fallback: &str) -> Result<Download, FetchError> {
        let url = check_url(text, &self.policy)?;
        let Some(client) = self.client() else {
            return Err(FetchError::Connection);
        };
        let name = file_name(&url, fallback);
        let timeout_secs = self.policy.timeout.as_secs();
        let result = tokio::time::timeout(self.policy.timeout, async {
            let mut response = client
                .get(url)
                .send()
                .await
                .map_err(|error| classify(error, timeout_secs))?;
            let status = response.status();
            if status.is_redirection() {
                // A redirect the client did not follow (reqwest only follows http and https
                // targets): say why when the target is one the policy refuses.
                let target = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|location| response.url().join(location).ok());
                if let Some(Err(refusal)) = target.map(|target| check_parsed(&target, &self.policy))
                {
                    return Err(refusal);
                }
            }
            if status != reqwest::StatusCode::OK {
                return Err(FetchError::Status(status.as_u16()));
            }
            let limit = self.policy.max_bytes;
            if response
                .content_length()
                .is_some_and(|length| length > limit)
            {
                return Err(FetchError::TooLarge { limit });
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|error| classify(error, timeout_secs))?
            {
                if bytes.len() as u64 + chunk.len() as u64 > limit {
                    return Err(FetchError::TooLarge { limit });
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(bytes)
        })
        .await;
        let bytes = match result {
            Ok(done) => done?,
            Err(_) => return Err(FetchError::Timeout(timeout_secs)),
        };
        Ok(Download {
            file_name: name,
            bytes,
        })
    }
}

/// A reqwest failure as the user sees it: the policy's refusal when the resolver or the
/// redirect check refused, otherwise a timeout or an unreachable server.
fn classify(error: reqwest::Error, timeout_secs: u64) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(inner) = source {
        if let Some(Refused(refusal)) = inner.downcast_ref::<Refused>() {
            return refusal.clone();
        }
        source = inner.source();
    }
    tracing::debug!(error = %ErrorChain(&error), "manifest download failed");
    if error.is_timeout() {
        FetchError::Timeout(timeout_secs)
    } else {
        FetchError::Connection
    }
}

fn build_client(policy: &DownloadPolicy) -> Result<reqwest::Client, String> {
    let redirect_policy = policy.clone();
    let redirects = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(Refused(FetchError::Redirects));
        }
        match check_parsed(attempt.url(), &redirect_policy) {
            Ok(()) => attempt.follow(),
            Err(refusal) => attempt.error(Refused(refusal)),
        }
    });
    reqwest::Client::builder()
        .use_preconfigured_tls(tls_config().map_err(|error| error.to_string())?)
        .dns_resolver(Arc::new(GuardedResolver {
            allow_private: policy.allow_private,
        }))
        // A proxy from the environment would resolve and connect for us, past the checks.
        .no_proxy()
        .redirect(redirects)
        .connect_timeout(Duration::from_secs(10))
        .timeout(policy.timeout)
        .user_agent(concat!("conpaas-director/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| error.to_string())
}

/// TLS for https downloads: the system's root certificates (as 1.2's urllib2 used), apart from
/// the manager client, which trusts only the director's CA. Without any root, https downloads
/// fail on the certificate check: never open.
fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        tracing::warn!(
            "no trusted root certificates found: manifest downloads over https will fail"
        );
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, allow_private: bool, expect: &str) {
        let policy = DownloadPolicy::recommended(allow_private);
        let got = match check_url(url, &policy) {
            Ok(_) => "ok".to_owned(),
            Err(error) => error.to_string(),
        };
        assert_eq!(got, expect, "{url} (allow_private = {allow_private})");
    }

    #[test]
    fn urls_are_checked_before_any_connection() {
        check(
            "file:///etc/passwd",
            false,
            "only http and https URLs are downloaded, not file:",
        );
        check(
            "file:///etc/passwd",
            true,
            "only http and https URLs are downloaded, not file:",
        );
        check(
            "ftp://example.org/a",
            true,
            "only http and https URLs are downloaded, not ftp:",
        );
        check("/relative/path", false, "not a URL");
        check("http://example.org/code.zip", false, "ok");
        check("https://93.184.216.34/x", false, "ok");
        check(
            "http://127.0.0.1/",
            false,
            "127.0.0.1 is a loopback address, which this director does not download from",
        );
        check("http://127.0.0.1/", true, "ok");
        check(
            "http://10.1.2.3:8080/x",
            false,
            "10.1.2.3 is a private address, which this director does not download from",
        );
        check(
            "http://169.254.169.254/latest/meta-data/",
            true,
            "169.254.169.254 is a cloud metadata address, which this director does not download from",
        );
        check(
            "http://[::ffff:192.168.1.1]/",
            false,
            "::ffff:192.168.1.1 is a private address, which this director does not download from",
        );
        check(
            "http://[fd00:ec2::254]/",
            true,
            "fd00:ec2::254 is a cloud metadata address, which this director does not download from",
        );
        check(
            "http://[fe80::1]/",
            false,
            "fe80::1 is a link-local address, which this director does not download from",
        );
        check(
            "http://0x7f000001/",
            false,
            "127.0.0.1 is a loopback address, which this director does not download from",
        );
        check("http://[2001:db8::1]/", false, "ok");
    }

    #[test]
    fn refused_ranges() {
        let refused = |text: &str| refused_address(text.parse().unwrap(), false);
        for address in [
            "0.0.0.0",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "100.64.0.1",
            "169.254.1.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "ff02::1",
            "64:ff9b::a00:1",
            "::7f00:1",
            "2002:c0a8:101::1",
        ] {
            assert!(refused(address).is_some(), "{address} should be refused");
        }
        for address in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2001:4860::8888"] {
            assert!(refused(address).is_none(), "{address} should be allowed");
        }
    }

    #[test]
    fn names_and_shown_urls() {
        let url = Url::parse("http://h/dir/app.tar.gz?v=1").unwrap();
        assert_eq!(file_name(&url, "code"), "app.tar.gz");
        let url = Url::parse("http://h/dir/").unwrap();
        assert_eq!(file_name(&url, "code"), "code");
        assert_eq!(
            shown_url("https://user:secret@h/a.sh?token=x#f"),
            "https://h/a.sh"
        );
    }

    #[tokio::test]
    async fn names_resolving_to_refused_addresses_are_not_fetched() {
        let fetcher = Fetcher::new(DownloadPolicy::recommended(false));
        let error = fetcher
            .fetch("http://localhost:9/x", "x")
            .await
            .unwrap_err();
        assert!(
            matches!(error, FetchError::Address { .. }),
            "localhost was not refused: {error}"
        );
    }
}
