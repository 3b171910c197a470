//! The AWS credentials the EC2 driver signs with: the section's `USER`/`PASSWORD`, or AWS's
//! standard chain as the AWS CLI and SDKs walk it (environment, shared files, instance role
//! through IMDSv2), for a director on EC2 or beside an AWS profile.
//!
//! Chain credentials are looked up on first use, not when the cloud is built: a director whose
//! role is attached later, or whose profile file appears later, starts anyway and cpscheck says
//! what is missing. Credentials with an expiry (an instance role's) are renewed five minutes
//! before it; those without one are read again every ten minutes, so a rotated profile file is
//! picked up without a restart.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use tokio::sync::Mutex;

use super::super::settings::Ec2Credentials;
use crate::cloud::Error;

/// Where IMDS answers on every EC2 instance.
const IMDS_DEFAULT_ENDPOINT: &str = "http://169.254.169.254";

/// How long an IMDSv2 token the driver asks for lives (the most IMDS grants: 6 h).
const IMDS_TOKEN_TTL_SECONDS: &str = "21600";

/// Renew expiring credentials this long before they expire.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// Read credentials without an expiry again after this long.
const REREAD_AFTER: Duration = Duration::from_secs(10 * 60);

/// The environment variables of the AWS CLI and SDKs the chain reads.
const VARIABLES: [&str; 8] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
];

/// What AWS's credential chain reads from the process: the `AWS_*` variables of the AWS CLI
/// and SDKs and the home directory holding `.aws/`. [`AwsEnvironment::from_process`] is what a
/// director uses; an embedder or a test builds its own with [`AwsEnvironment::empty`] and the
/// setters instead of changing the process's environment.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct AwsEnvironment {
    vars: BTreeMap<String, String>,
    home: Option<PathBuf>,
}

impl fmt::Debug for AwsEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets (AWS_SECRET_ACCESS_KEY): only the names are shown.
        f.debug_struct("AwsEnvironment")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("home", &self.home)
            .finish()
    }
}

impl AwsEnvironment {
    /// Nothing set: no variables, no home directory.
    pub fn empty() -> Self {
        AwsEnvironment::default()
    }

    /// The process's `AWS_*` variables that the chain reads, and `HOME`.
    pub fn from_process() -> Self {
        let vars = VARIABLES
            .iter()
            .filter_map(|name| {
                std::env::var(name)
                    .ok()
                    .map(|value| ((*name).to_owned(), value))
            })
            .collect();
        AwsEnvironment {
            vars,
            home: std::env::var_os("HOME").map(PathBuf::from),
        }
    }

    /// Sets the variable `name` (one of the AWS CLI's, e.g.
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT`).
    #[must_use]
    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Sets the home directory whose `.aws/credentials` and `.aws/config` are read.
    #[must_use]
    pub fn home(mut self, home: impl Into<PathBuf>) -> Self {
        self.home = Some(home.into());
        self
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    fn file(&self, variable: &str, default: &str) -> Option<PathBuf> {
        match self.get(variable) {
            Some(path) => Some(PathBuf::from(path)),
            None => self
                .home
                .as_ref()
                .map(|home| home.join(".aws").join(default)),
        }
    }
}

/// One set of credentials to sign with.
#[derive(Clone)]
pub(super) struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
    /// When they stop working (an instance role's); `None` for long-term keys.
    expires: Option<DateTime<Utc>>,
    /// Where they came from, for the log.
    source: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("expires", &self.expires)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The credentials of one EC2 cloud.
#[derive(Debug)]
pub(super) enum Provider {
    /// `USER`/`PASSWORD`.
    Keys(Arc<Credentials>),
    /// The chain, with what it found last.
    Chain(Box<Chain>),
}

#[derive(Debug)]
pub(super) struct Chain {
    profile: Option<String>,
    environment: AwsEnvironment,
    imds: reqwest::Client,
    cached: Mutex<Option<(Arc<Credentials>, tokio::time::Instant)>>,
}

impl Provider {
    /// The provider of `credentials`; `environment` is what the chain reads.
    pub fn new(
        credentials: &Ec2Credentials,
        environment: AwsEnvironment,
        imds_timeout: Duration,
    ) -> Result<Provider, Error> {
        Ok(match credentials {
            Ec2Credentials::Keys {
                access_key_id,
                secret_access_key,
            } => Provider::Keys(Arc::new(Credentials {
                access_key_id: access_key_id.clone(),
                secret_access_key: secret_access_key.clone(),
                session_token: None,
                expires: None,
                source: "USER and PASSWORD".to_owned(),
            })),
            Ec2Credentials::Chain { profile } => {
                // IMDS is plain HTTP on a link-local address: no TLS, no proxy, short waits (off
                // EC2 nothing answers there, and the chain must not hang a start).
                let imds = reqwest::Client::builder()
                    .no_proxy()
                    .connect_timeout(imds_timeout)
                    .timeout(imds_timeout)
                    .redirect(reqwest::redirect::Policy::none())
                    .use_preconfigured_tls(super::query::plain_tls_config()?)
                    .build()
                    .map_err(|error| {
                        Error::Unavailable(format!("cannot build the IMDS client: {error}"))
                    })?;
                Provider::Chain(Box::new(Chain {
                    profile: profile.clone(),
                    environment,
                    imds,
                    cached: Mutex::new(None),
                }))
            }
        })
    }

    /// The credentials to sign the next call with.
    pub async fn current(&self) -> Result<Arc<Credentials>, Error> {
        match self {
            Provider::Keys(keys) => Ok(keys.clone()),
            Provider::Chain(chain) => chain.current().await,
        }
    }
}

impl Chain {
    async fn current(&self) -> Result<Arc<Credentials>, Error> {
        let mut cached = self.cached.lock().await;
        if let Some((credentials, read_at)) = cached.as_ref()
            && fresh(credentials, *read_at)
        {
            return Ok(credentials.clone());
        }
        match self.resolve().await {
            Ok(credentials) => {
                let credentials = Arc::new(credentials);
                let renewed = cached
                    .as_ref()
                    .is_some_and(|(old, _)| old.access_key_id == credentials.access_key_id);
                if !renewed {
                    tracing::info!(source = %credentials.source, access_key_id = %credentials.access_key_id, expires = ?credentials.expires, "AWS credentials found");
                }
                *cached = Some((credentials.clone(), tokio::time::Instant::now()));
                Ok(credentials)
            }
            // Renewal failed but the old credentials still work: use them, and say so.
            Err(error) => match cached.as_ref() {
                Some((old, _)) if old.expires.is_none_or(|expires| expires > Utc::now()) => {
                    tracing::warn!(error = %crate::model::ErrorChain(&error), expires = ?old.expires, "cannot renew the AWS credentials: the current ones are used until they expire");
                    Ok(old.clone())
                }
                _ => Err(error),
            },
        }
    }

    /// Walks the chain: environment, shared files, instance role.
    async fn resolve(&self) -> Result<Credentials, Error> {
        let env = &self.environment;
        if let Some(access_key_id) = env.get("AWS_ACCESS_KEY_ID") {
            let Some(secret) = env.get("AWS_SECRET_ACCESS_KEY") else {
                return Err(no_credentials(
                    "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".to_owned(),
                ));
            };
            return Ok(Credentials {
                access_key_id: access_key_id.to_owned(),
                secret_access_key: SecretString::from(secret),
                session_token: env.get("AWS_SESSION_TOKEN").map(SecretString::from),
                expires: None,
                source: "the environment (AWS_ACCESS_KEY_ID)".to_owned(),
            });
        }
        let named = self
            .profile
            .clone()
            .or_else(|| env.get("AWS_PROFILE").map(str::to_owned));
        let profile = named.clone().unwrap_or_else(|| "default".to_owned());
        let credentials_file = env.file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
        let config_file = env.file("AWS_CONFIG_FILE", "config");
        for (path, section) in [
            (credentials_file.as_deref(), profile.clone()),
            (
                config_file.as_deref(),
                if profile == "default" {
                    profile.clone()
                } else {
                    format!("profile {profile}")
                },
            ),
        ] {
            let Some(path) = path else { continue };
            if let Some(credentials) = from_shared_file(path, &section, &profile)? {
                return Ok(credentials);
            }
        }
        let files = [credentials_file, config_file]
            .into_iter()
            .flatten()
            .map(|path| path.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ");
        if named.is_some() {
            // A profile asked for by name and not found is an error, not a reason to fall
            // through to whatever role the host has.
            return Err(no_credentials(format!(
                "the profile {profile:?} has no access key in {files}"
            )));
        }
        if env
            .get("AWS_EC2_METADATA_DISABLED")
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
        {
            return Err(no_credentials(format!(
                "USER and PASSWORD are not set, nor AWS_ACCESS_KEY_ID; no profile \"default\" \
                 in {files}; and AWS_EC2_METADATA_DISABLED turns the instance role off"
            )));
        }
        let endpoint = env
            .get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .unwrap_or(IMDS_DEFAULT_ENDPOINT)
            .trim_end_matches('/')
            .to_owned();
        self.instance_role(&endpoint).await.map_err(|reason| {
            no_credentials(format!(
                "USER and PASSWORD are not set, nor AWS_ACCESS_KEY_ID; no profile \"default\" \
                 in {files}; and no instance role at {endpoint}: {reason}"
            ))
        })
    }

    /// The instance role's credentials through IMDSv2 (a session token first; IMDSv1 only
    /// where the token call is unknown). `Err` says why there are none.
    async fn instance_role(&self, endpoint: &str) -> Result<Credentials, String> {
        let token = self
            .imds
            .put(format!("{endpoint}/latest/api/token"))
            .header(
                "x-aws-ec2-metadata-token-ttl-seconds",
                IMDS_TOKEN_TTL_SECONDS,
            )
            .send()
            .await
            .map_err(|error| format!("IMDS does not answer ({})", short(&error)))?;
        let token = match token.status().as_u16() {
            200 => Some(token.text().await.map_err(|error| short(&error))?),
            // IMDSv1-only endpoints (and some proxies) do not know the token call.
            404 | 405 => None,
            403 => return Err("IMDS is disabled for this instance (HTTP 403)".to_owned()),
            status => {
                return Err(format!(
                    "IMDS answered the token request with HTTP {status}"
                ));
            }
        };
        let get = |path: String| {
            let mut request = self.imds.get(format!(
                "{endpoint}/latest/meta-data/iam/security-credentials/{path}"
            ));
            if let Some(token) = &token {
                request = request.header("x-aws-ec2-metadata-token", token.trim());
            }
            request.send()
        };
        let roles = get(String::new())
            .await
            .map_err(|error| format!("IMDS does not answer ({})", short(&error)))?;
        match roles.status().as_u16() {
            200 => {}
            404 => return Err("the instance has no IAM role".to_owned()),
            status => return Err(format!("IMDS answered HTTP {status} for the role")),
        }
        let roles = roles.text().await.map_err(|error| short(&error))?;
        let Some(role) = roles.lines().map(str::trim).find(|line| !line.is_empty()) else {
            return Err("the instance has no IAM role".to_owned());
        };
        let answer = get(role.to_owned())
            .await
            .map_err(|error| format!("IMDS does not answer ({})", short(&error)))?;
        if !answer.status().is_success() {
            return Err(format!(
                "IMDS answered HTTP {} for the role {role:?}",
                answer.status().as_u16()
            ));
        }
        let text = answer.text().await.map_err(|error| short(&error))?;
        let document: serde_json::Value = serde_json::from_str(&text)
            .map_err(|_| format!("the credentials of the role {role:?} are not JSON"))?;
        let field = |name: &str| document.get(name).and_then(serde_json::Value::as_str);
        if field("Code").is_some_and(|code| code != "Success") {
            return Err(format!(
                "IMDS could not give the credentials of the role {role:?}: {}",
                field("Code").unwrap_or_default()
            ));
        }
        let (Some(access_key_id), Some(secret), Some(session_token)) = (
            field("AccessKeyId"),
            field("SecretAccessKey"),
            field("Token"),
        ) else {
            return Err(format!(
                "the credentials of the role {role:?} lack AccessKeyId, SecretAccessKey or Token"
            ));
        };
        let expires = field("Expiration")
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|time| time.with_timezone(&Utc));
        Ok(Credentials {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: SecretString::from(secret),
            session_token: Some(SecretString::from(session_token)),
            expires,
            source: format!(
                "the instance role {role:?} (IMDS{})",
                if token.is_some() { "v2" } else { "v1" }
            ),
        })
    }
}

/// Whether cached credentials may still be used without asking again.
fn fresh(credentials: &Credentials, read_at: tokio::time::Instant) -> bool {
    match credentials.expires {
        Some(expires) => {
            let margin = chrono::Duration::from_std(RENEW_BEFORE_EXPIRY).unwrap_or_default();
            expires - margin > Utc::now()
        }
        None => read_at.elapsed() < REREAD_AFTER,
    }
}

fn no_credentials(message: String) -> Error {
    Error::Refused {
        code: "NoCredentials".to_owned(),
        message: format!("no AWS credentials: {message}"),
    }
}

fn short(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        error.to_string()
    }
}

/// The access key of `section` in the shared file at `path` (absent file: `None`).
fn from_shared_file(
    path: &Path,
    section: &str,
    profile: &str,
) -> Result<Option<Credentials>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(no_credentials(format!(
                "cannot read {}: {error}",
                path.display()
            )));
        }
    };
    let keys = shared_file_section(&text, section);
    let (Some(access_key_id), Some(secret)) = (
        keys.get("aws_access_key_id"),
        keys.get("aws_secret_access_key"),
    ) else {
        return Ok(None);
    };
    Ok(Some(Credentials {
        access_key_id: access_key_id.clone(),
        secret_access_key: SecretString::from(secret.clone()),
        session_token: keys
            .get("aws_session_token")
            .cloned()
            .map(SecretString::from),
        expires: None,
        source: format!("the profile {profile:?} of {}", path.display()),
    }))
}

/// The `key = value` pairs of `[section]` in an AWS shared file (the INI dialect of the AWS
/// CLI: `#` and `;` comments, keys case-insensitive, the last value of a key wins).
fn shared_file_section(text: &str, section: &str) -> BTreeMap<String, String> {
    let mut keys = BTreeMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            inside = header.split_whitespace().collect::<Vec<_>>().join(" ") == section;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            keys.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn shared_files_are_read_like_the_aws_cli() {
        let text = "# comment\n[default]\naws_access_key_id = AKIADEFAULT\n\
                    aws_secret_access_key=secret1\n\n[profile ops]\n\
                    AWS_ACCESS_KEY_ID = AKIAOPS\naws_secret_access_key = secret2\n\
                    aws_session_token = tok\n[ops]\naws_access_key_id = AKIACREDS\n";
        let default = shared_file_section(text, "default");
        assert_eq!(default["aws_access_key_id"], "AKIADEFAULT");
        assert_eq!(default["aws_secret_access_key"], "secret1");
        let ops = shared_file_section(text, "profile ops");
        assert_eq!(ops["aws_access_key_id"], "AKIAOPS");
        assert_eq!(ops["aws_session_token"], "tok");
        assert_eq!(shared_file_section(text, "ops").len(), 1);
        assert!(shared_file_section(text, "nope").is_empty());
    }

    fn chain(environment: AwsEnvironment, profile: Option<&str>) -> Provider {
        Provider::new(
            &Ec2Credentials::Chain {
                profile: profile.map(str::to_owned),
            },
            environment,
            Duration::from_millis(300),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn the_environment_comes_first() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".aws")).unwrap();
        std::fs::write(
            home.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = s\n",
        )
        .unwrap();
        let environment = AwsEnvironment::empty()
            .home(home.path())
            .var("AWS_ACCESS_KEY_ID", "AKIAENV")
            .var("AWS_SECRET_ACCESS_KEY", "envsecret")
            .var("AWS_SESSION_TOKEN", "envtoken");
        let found = chain(environment, None).current().await.unwrap();
        assert_eq!(found.access_key_id, "AKIAENV");
        assert_eq!(found.secret_access_key.expose_secret(), "envsecret");
        assert_eq!(
            found
                .session_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
            Some("envtoken".to_owned())
        );
        // Without the variables, the file's default profile.
        let found = chain(AwsEnvironment::empty().home(home.path()), None)
            .current()
            .await
            .unwrap();
        assert_eq!(found.access_key_id, "AKIAFILE");
        assert!(found.session_token.is_none());
    }

    #[tokio::test]
    async fn a_named_profile_that_is_missing_is_an_error() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".aws")).unwrap();
        std::fs::write(
            home.path().join(".aws/config"),
            "[profile ops]\naws_access_key_id = AKIAOPS\naws_secret_access_key = s\n",
        )
        .unwrap();
        let found = chain(AwsEnvironment::empty().home(home.path()), Some("ops"))
            .current()
            .await
            .unwrap();
        assert_eq!(found.access_key_id, "AKIAOPS");
        let error = chain(
            AwsEnvironment::empty()
                .home(home.path())
                .var("AWS_PROFILE", "missing"),
            None,
        )
        .current()
        .await
        .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("\"missing\""), "{text}");
        assert!(matches!(error, Error::Refused { code, .. } if code == "NoCredentials"));
    }

    #[tokio::test]
    async fn nothing_anywhere_says_what_was_tried() {
        // A closed loopback port stands for "not on EC2".
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let home = tempfile::tempdir().unwrap();
        let error = chain(
            AwsEnvironment::empty().home(home.path()).var(
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            ),
            None,
        )
        .current()
        .await
        .unwrap_err()
        .to_string();
        assert!(error.contains("USER and PASSWORD are not set"), "{error}");
        assert!(error.contains(".aws/credentials"), "{error}");
        assert!(error.contains("no instance role"), "{error}");
        let disabled = chain(
            AwsEnvironment::empty()
                .home(home.path())
                .var("AWS_EC2_METADATA_DISABLED", "true"),
            None,
        )
        .current()
        .await
        .unwrap_err()
        .to_string();
        assert!(disabled.contains("AWS_EC2_METADATA_DISABLED"), "{disabled}");
    }

    #[test]
    fn debug_shows_no_secret() {
        let environment = AwsEnvironment::empty().var("AWS_SECRET_ACCESS_KEY", "hunter2");
        assert!(!format!("{environment:?}").contains("hunter2"));
        let keys = Provider::new(
            &Ec2Credentials::keys("AKIA", SecretString::from("hunter2")),
            environment,
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(!format!("{keys:?}").contains("hunter2"));
    }
}
