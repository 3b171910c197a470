//! The users' side of ConPaaS 1.2, what the Python `cpsclient` did (`conpaas-client/cps/` at
//! 1.2.0), for `cpsclient` and any other program: the director's routes
//! ([`DirectorClient`]), the `~/.conpaas` directory both clients share ([`ConfDir`]), and the
//! managers' JSON-RPC calls of the 1.2 service modules ([`Managers`], [`services`]).
//!
//! The director's answers are typed ([`User`], [`Application`], [`Service`], [`Manifest`],
//! [`Certificates`], [`Agent`]), each keeping its JSON in `raw`; the managers' stay JSON values.
//!
//! Changed from 1.2: the director's certificate is verified against the CA fetched by
//! `credentials` (the first fetch is checked after the fact, see [`Trust::FirstUse`]); the
//! manager's certificate is checked as 1.2 checked it (the CA, `role=manager` and the user's
//! `UID`); an expired user certificate is reported before it is refused.

mod answers;
mod confdir;
mod director;
mod manager;
pub mod services;

use std::path::PathBuf;

use chrono::{DateTime, Utc};

pub use answers::{Agent, Application, Certificates, Manifest, ManifestService, Service, User};
pub use confdir::{CERT_FILES, ConfDir, Credentials, Identity};
pub use director::{Answer, DIRECTOR_TIMEOUT, DirectorClient, Trust};
pub use manager::{MANAGER_PORT, Managers, TASKFARM_PORT};

/// What went wrong in a client call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The director or a manager answered, and said no (`false`, an error object, an `error`
    /// member); the text is theirs.
    #[error("{0}")]
    Refused(String),
    /// A command's argument is not usable.
    #[error("{0}")]
    Usage(String),
    /// `credentials` has not been run (no `target` or no certificates in the directory).
    #[error("no credentials in {} (no director URL or no certificates)", .0.display())]
    NoCredentials(PathBuf),
    /// The user's certificate has expired.
    #[error("your certificate {} expired on {not_after}", path.display())]
    CertificateExpired {
        /// `cert.pem`.
        path: PathBuf,
        /// Its end of validity.
        not_after: DateTime<Utc>,
    },
    /// A certificate file cannot be read as one.
    #[error("{} is not a usable certificate", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::ca::Error,
    },
    /// A file of the configuration directory (or one given to a command) failed.
    #[error("cannot {action} {}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What was attempted.
        action: &'static str,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The director's URL is not `https://host[:port]`.
    #[error("invalid director URL {0:?}: try something like https://conpaas.example.com:5555")]
    InvalidUrl(String),
    /// The TLS material cannot be used.
    #[error("tls: {0}")]
    Tls(String),
    /// The director's certificate does not chain to the CA its archive holds.
    #[error(
        "the director's certificate is not from the CA it handed out ({0}): someone may be \
         between you and the director; nothing was stored"
    )]
    UntrustedDirector(String),
    /// The director could not be reached or the TLS handshake failed.
    #[error("{0}")]
    Transport(TransportProblem),
    /// The director answered an HTTP error status (1.2: "try updating your certificates").
    #[error(
        "cannot perform the requested action: the director answered {status} to {route}{}",
        if text.is_empty() { String::new() } else { format!(" ({text})") }
    )]
    Status {
        /// The status.
        status: u16,
        /// The route called.
        route: String,
        /// The start of the body.
        text: String,
    },
    /// An answer is not of the expected shape.
    #[error("unexpected answer: {0}")]
    Answer(String),
    /// A manager call failed below the application level.
    #[error("the manager of service {sid} at {manager}")]
    Manager {
        /// The service.
        sid: i64,
        /// Its manager's address.
        manager: String,
        /// Why.
        #[source]
        source: crate::manager_client::Error,
    },
    /// `terminate` could not ask the manager whether its service is stopped (unreachable,
    /// refusing TLS, not answering); `terminate --force` stops it without asking.
    #[error("cannot ask the manager of service {sid} whether the service is stopped")]
    ManagerUnreachable {
        /// The service.
        sid: i64,
        /// The failed call ([`Error::Manager`]).
        #[source]
        source: Box<Error>,
    },
    /// A wait for a state ended without reaching it.
    #[error("service {sid} did not reach {state} within {} s (last: {last})", .waited.as_secs())]
    WaitTimeout {
        /// The service.
        sid: i64,
        /// The state waited for.
        state: String,
        /// The last state seen, or why none was.
        last: String,
        /// How long was waited.
        waited: std::time::Duration,
    },
}

/// What a `cpsclient` user types to get past an error whose message does not say it.
const RENEW: &str = "try updating your client certificates with `cpsclient credentials`";

impl Error {
    /// What a user of the `cpsclient` command line does about this error, when there is
    /// something to do: the messages themselves are worded for any caller of this layer, and
    /// `cpsclient` prints this after them.
    pub fn command_line_hint(&self) -> Option<String> {
        match self {
            Error::NoCredentials(_) => Some("run `cpsclient credentials` first".to_owned()),
            Error::CertificateExpired { .. } => {
                Some("get a new one with `cpsclient credentials`".to_owned())
            }
            Error::Status { .. } => Some(RENEW.to_owned()),
            Error::Transport(problem) => problem.command_line_hint().map(str::to_owned),
            Error::ManagerUnreachable { sid, .. } => Some(format!(
                "`cpsclient terminate --force {sid}` stops it through the director without \
                 asking its manager"
            )),
            _ => None,
        }
    }

    /// Whether the other side refused (exit status 1), rather than the call failing to happen
    /// or the command being wrong (exit status 2).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Error::Refused(_) | Error::WaitTimeout { .. })
    }
}

/// Why a director call did not get an answer, said for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportProblem {
    /// The director's certificate has expired.
    DirectorCertificateExpired,
    /// The director's certificate does not verify against `ca_cert.pem`.
    DirectorUntrusted(String),
    /// The director refused the user's certificate at the handshake.
    CertificateRefused(String),
    /// No connection.
    Connect(String),
    /// No answer in time.
    Timeout,
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for TransportProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportProblem::DirectorCertificateExpired => write!(
                f,
                "the director's certificate has expired: ask its operator to renew it \
                 (`director init --keep-ca`)"
            ),
            TransportProblem::DirectorUntrusted(why) => write!(
                f,
                "the director's certificate is not trusted by ca_cert.pem ({why})"
            ),
            TransportProblem::CertificateRefused(why) => write!(
                f,
                "cannot perform the requested action: the director refused your certificate \
                 ({why})"
            ),
            TransportProblem::Connect(why) => write!(f, "cannot reach the director: {why}"),
            TransportProblem::Timeout => write!(f, "the director did not answer in time"),
            TransportProblem::Other(why) => {
                write!(f, "cannot perform the requested action: {why}")
            }
        }
    }
}

impl TransportProblem {
    /// What a `cpsclient` user does about it ([`Error::command_line_hint`]).
    fn command_line_hint(&self) -> Option<&'static str> {
        match self {
            TransportProblem::DirectorUntrusted(_) => Some(
                "if the director has a new CA, remove ca_cert.pem and run `cpsclient \
                 credentials` again",
            ),
            TransportProblem::CertificateRefused(_) | TransportProblem::Other(_) => Some(RENEW),
            TransportProblem::DirectorCertificateExpired
            | TransportProblem::Connect(_)
            | TransportProblem::Timeout => None,
        }
    }

    /// Reads the cause out of reqwest's chain (a rustls error sits inside an `io::Error`).
    fn from_reqwest(error: &reqwest::Error) -> TransportProblem {
        if error.is_timeout() {
            return TransportProblem::Timeout;
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        let mut last = error.to_string();
        while let Some(current) = source {
            let tls = current.downcast_ref::<rustls::Error>().or_else(|| {
                current
                    .downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            });
            if let Some(tls) = tls {
                return Self::from_rustls(tls);
            }
            last = current.to_string();
            source = current.source();
        }
        // Some layers box their cause in a way a downcast cannot see through: rustls' own
        // words then still say what happened.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(current) = source {
            let text = current.to_string();
            if text.contains("invalid peer certificate") {
                return if text.to_ascii_lowercase().contains("expired") {
                    TransportProblem::DirectorCertificateExpired
                } else {
                    let why = text
                        .rsplit("invalid peer certificate: ")
                        .next()
                        .unwrap_or(&text);
                    TransportProblem::DirectorUntrusted(why.to_owned())
                };
            }
            if text.contains("received fatal alert") {
                let why = text
                    .rsplit("received fatal alert: ")
                    .next()
                    .unwrap_or(&text);
                return TransportProblem::CertificateRefused(format!("TLS alert {why}"));
            }
            source = current.source();
        }
        if error.is_connect() {
            TransportProblem::Connect(last)
        } else {
            TransportProblem::Other(last)
        }
    }

    fn from_rustls(error: &rustls::Error) -> TransportProblem {
        use rustls::CertificateError;
        match error {
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ) => TransportProblem::DirectorCertificateExpired,
            rustls::Error::InvalidCertificate(other) => {
                TransportProblem::DirectorUntrusted(format!("{other:?}"))
            }
            rustls::Error::AlertReceived(alert) => {
                TransportProblem::CertificateRefused(format!("TLS alert {alert:?}"))
            }
            other => TransportProblem::Other(other.to_string()),
        }
    }
}
