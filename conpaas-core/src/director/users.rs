//! Users on the wire: registration (`/new_user`), login, certificates (`/getcerts`).

use secrecy::{ExposeSecret, SecretString};

use super::accounts::Checked;
use super::audit::{AuditOutcome, Event};
use super::metrics::LoginResult;
use super::throttle::{LoginSource, Outcome};
use super::{Director, Error, parse_int};
use crate::model::{Credit, Role, User};
use crate::store::HashingKey;
use crate::store::names::fits_username;

/// How many characters of a refused overlong user name the log shows.
const LOGGED_NAME_CHARS: usize = 16;

/// Whose turn a password check takes in the hashing pool: a direct client's network (as the
/// throttle counts it), an account tried through the frontend (each of the frontend's users
/// is a client of its own, as each network is), or, for callers that name no source, one key
/// they share.
fn hashing_key(source: Option<&LoginSource>) -> HashingKey {
    match source {
        Some(LoginSource::Address(ip)) => {
            HashingKey::of(&("network", super::throttle::network(*ip)))
        }
        Some(LoginSource::Account(name)) => HashingKey::of(&("frontend", name)),
        None => HashingKey::SHARED,
    }
}

/// The fields of `/new_user`, as sent (each present and non-empty: checked by the caller).
#[derive(Debug)]
#[non_exhaustive]
pub struct Registration {
    /// Login name.
    pub username: String,
    /// First name.
    pub fname: String,
    /// Last name.
    pub lname: String,
    /// E-mail.
    pub email: String,
    /// Affiliation.
    pub affiliation: String,
    /// Plaintext password.
    pub password: SecretString,
    /// Requested credit, as text.
    pub credit: String,
}

impl Registration {
    /// The seven fields of `/new_user`, in the order 1.2 checked them (`credit` as text, as
    /// the form sent it).
    pub fn new(
        username: impl Into<String>,
        fname: impl Into<String>,
        lname: impl Into<String>,
        email: impl Into<String>,
        affiliation: impl Into<String>,
        password: SecretString,
        credit: impl Into<String>,
    ) -> Self {
        Registration {
            username: username.into(),
            fname: fname.into(),
            lname: lname.into(),
            email: email.into(),
            affiliation: affiliation.into(),
            password,
            credit: credit.into(),
        }
    }
}

/// A user's new certificate, key and the CA certificate (the three members of `certs.zip`).
#[non_exhaustive]
pub struct UserCertificates {
    /// `cert.pem`.
    pub cert_pem: String,
    /// `key.pem`.
    pub key_pem: SecretString,
    /// `ca_cert.pem`.
    pub ca_cert_pem: String,
}

/// What a password check came to ([`Director::login_attempt`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum LoginAttempt {
    /// The password is the user's.
    Accepted(User),
    /// No such user, or not their password.
    Refused,
    /// The password is the user's, but the operator disabled the account (`director user
    /// disable`). 1.2 clients get the answer of a refusal; the audit log tells it apart.
    Disabled(User),
    /// Not checked: too many failed attempts from the source lately, or the password hashing
    /// queue stayed full. 1.2 clients get the answer of a refusal.
    Throttled,
}

impl LoginAttempt {
    /// The user, when accepted.
    pub fn accepted(self) -> Option<User> {
        match self {
            LoginAttempt::Accepted(user) => Some(user),
            LoginAttempt::Refused | LoginAttempt::Disabled(_) | LoginAttempt::Throttled => None,
        }
    }
}

impl std::fmt::Debug for UserCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCertificates").finish_non_exhaustive()
    }
}

impl Director {
    /// Creates an account and its `New Application` (`/new_user`). The credit is an integer
    /// (1.2 stored any text), never negative, capped at `MAX_CREDIT` when configured.
    pub async fn register(&self, registration: Registration) -> Result<User, Error> {
        let credit = parse_int(&registration.credit)
            .filter(|credit| *credit >= 0)
            .ok_or(Error::Invalid {
                field: "credit",
                reason: "expected a non-negative integer".into(),
            })?;
        let credit = match self.inner.max_credit {
            Some(max) if credit > max.0 => max.0,
            _ => credit,
        };
        let account = super::accounts::NewAccount {
            username: registration.username,
            email: registration.email,
            fname: Some(registration.fname),
            lname: Some(registration.lname),
            affiliation: Some(registration.affiliation),
            password: registration.password,
            credit: Credit(credit),
        };
        // Registrations share one turn in the hashing pool: a flood of them (the frontend's,
        // or anyone's with open registration) cannot crowd out logins.
        super::accounts::add_user_hashed_as(
            &self.inner.store,
            &self.inner.hashing,
            HashingKey::of(&"registration"),
            account,
        )
        .await
    }

    /// The user if the password is theirs. When the password hashing queue stays full (see
    /// [`DirectorBuilder::hashing`](super::DirectorBuilder::hashing)) the password is not
    /// checked and the answer is `None`, a refused login, which every 1.2 client understands.
    pub async fn login(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<Option<User>, Error> {
        Ok(self
            .login_attempt(username, password, None)
            .await?
            .accepted())
    }

    /// `Some(what the check came to)` once the password is checked; `None` when the hashing
    /// queue was full (logged), so that a refusal for load is not counted as a wrong password.
    async fn check_password(
        &self,
        username: &str,
        password: &SecretString,
        key: HashingKey,
    ) -> Result<Option<Checked>, Error> {
        let checked = super::accounts::check_login_as(
            &self.inner.store,
            &self.inner.hashing,
            key,
            username,
            password.expose_secret(),
        )
        .await;
        match checked {
            Ok(user) => Ok(Some(user)),
            Err(Error::Store(crate::store::Error::HashingBusy { waited })) => {
                tracing::warn!(?waited, "login refused: the password hashing queue is full");
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// [`Director::login`] for a client `from`, throttled (see [`LoginSource`] and
    /// docs/operations.md, "Password guessing"): admission is decided and counted in one step
    /// before the password is hashed, and a refused attempt gets `None`, as if wrong, without
    /// its password being checked.
    pub async fn login_from(
        &self,
        username: &str,
        password: &SecretString,
        from: Option<LoginSource>,
    ) -> Result<Option<User>, Error> {
        Ok(self
            .login_attempt(username, password, from)
            .await?
            .accepted())
    }

    /// [`Director::login_from`], saying whether a refusal was a wrong password or a throttle
    /// (`conpaas_logins_total` counts each).
    pub async fn login_attempt(
        &self,
        username: &str,
        password: &SecretString,
        from: Option<LoginSource>,
    ) -> Result<LoginAttempt, Error> {
        // A name no account can have is refused before it costs or is kept anything: not
        // throttled, hashed or audited, logged by its length and a short prefix only (issue
        // 22: 1 MB names filled the throttle's memory and the log).
        let frontend_name = match &from {
            Some(LoginSource::Account(name)) => Some(name.as_str()),
            Some(LoginSource::Address(_)) | None => None,
        };
        if let Some(name) = std::iter::once(username)
            .chain(frontend_name)
            .find(|name| !fits_username(name))
        {
            self.inner.metrics.login(LoginResult::Refused);
            let prefix: String = name.chars().take(LOGGED_NAME_CHARS).collect();
            tracing::info!(
                name_bytes = name.len(),
                name_prefix = ?prefix,
                outcome = "failed",
                "login refused: user name too long"
            );
            return Ok(LoginAttempt::Refused);
        }
        let attempt = self.login_attempt_uncounted(username, password, from).await;
        let (result, outcome) = match &attempt {
            Ok(LoginAttempt::Accepted(_)) => (LoginResult::Accepted, AuditOutcome::Ok),
            Ok(LoginAttempt::Refused | LoginAttempt::Disabled(_)) => {
                (LoginResult::Refused, AuditOutcome::Refused)
            }
            Err(_) => (LoginResult::Refused, AuditOutcome::Failed),
            Ok(LoginAttempt::Throttled) => (LoginResult::Throttled, AuditOutcome::Throttled),
        };
        self.inner.metrics.login(result);
        let mut event = Event::new("login", outcome).username(username);
        match &attempt {
            Ok(LoginAttempt::Accepted(user)) => event = event.uid(user.uid),
            Ok(LoginAttempt::Disabled(user)) => {
                event = event.uid(user.uid).detail("disabled", true);
            }
            _ => {}
        }
        self.audit(event);
        attempt
    }

    async fn login_attempt_uncounted(
        &self,
        username: &str,
        password: &SecretString,
        from: Option<LoginSource>,
    ) -> Result<LoginAttempt, Error> {
        let key = hashing_key(from.as_ref());
        let Some(source) = from else {
            return Ok(match self.check_password(username, password, key).await? {
                Some(Checked::Accepted(user)) => LoginAttempt::Accepted(user),
                Some(Checked::Refused) => LoginAttempt::Refused,
                Some(Checked::Disabled(user)) => LoginAttempt::Disabled(user),
                None => LoginAttempt::Throttled,
            });
        };
        let Some(attempt) = self
            .inner
            .logins
            .begin(&source, username, std::time::Instant::now())
        else {
            tracing::info!(
                ?source,
                outcome = "throttled",
                "login refused: too many failed attempts"
            );
            return Ok(LoginAttempt::Throttled);
        };
        // Dropped without an outcome (hashing busy, an error, the caller gone), the attempt
        // counts as nothing.
        let Some(user) = self.check_password(username, password, key).await? else {
            return Ok(LoginAttempt::Throttled);
        };
        let (outcome, answer) = match user {
            Checked::Accepted(user) => (Outcome::Succeeded, LoginAttempt::Accepted(user)),
            Checked::Refused => {
                tracing::info!(?source, outcome = "failed", "login refused: wrong password");
                (Outcome::Failed, LoginAttempt::Refused)
            }
            // Counted as a failure: a disabled account is no way past the throttle.
            Checked::Disabled(user) => {
                tracing::info!(?source, uid = %user.uid, outcome = "failed", "login refused: the account is disabled");
                (Outcome::Failed, LoginAttempt::Disabled(user))
            }
        };
        attempt.end(outcome, std::time::Instant::now());
        Ok(answer)
    }

    /// [`Director::user_certificates`] for a client at `from`, throttled as
    /// [`Director::login_from`].
    pub async fn user_certificates_from(
        &self,
        username: &str,
        password: &SecretString,
        from: Option<LoginSource>,
    ) -> Result<Option<UserCertificates>, Error> {
        let Some(user) = self.login_from(username, password, from).await? else {
            return Ok(None);
        };
        self.certificates_for(user).await.map(Some)
    }

    /// Issues a fresh certificate and key for the user if the password is theirs (`/getcerts`).
    pub async fn user_certificates(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<Option<UserCertificates>, Error> {
        let Some(user) = self.login(username, password).await? else {
            return Ok(None);
        };
        self.certificates_for(user).await.map(Some)
    }

    /// A fresh certificate and key for `user`, its serial recorded.
    pub(crate) async fn certificates_for(&self, user: User) -> Result<UserCertificates, Error> {
        let email = user.email.clone().unwrap_or_default();
        let issued = self
            .issue(Role::User, move |ca| {
                ca.issue_user_cert(user.uid, &user.username, &email)
            })
            .await?;
        let Some(key_pem) = issued.key_pem else {
            return Err(Error::Invalid {
                field: "key",
                reason: "the CA issued no key".into(),
            });
        };
        Ok(UserCertificates {
            cert_pem: issued.cert_pem,
            key_pem,
            ca_cert_pem: self.ca_cert_pem().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::director::test_support::builder;
    use crate::store::HashingSettings;

    fn director() -> (Director, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let director = builder(dir.path()).unwrap().build().unwrap();
        (director, dir)
    }

    #[tokio::test]
    async fn overlong_names_are_refused_before_anything_else() {
        let (director, _dir) = director();
        let long = "x".repeat(1 << 20);
        let sixty_five = "\u{e9}".repeat(65);
        let sources = [
            None,
            Some(LoginSource::Address("192.0.2.1".parse().unwrap())),
            Some(LoginSource::Account(long.clone())),
        ];
        for name in [&long, &sixty_five] {
            for source in sources.clone() {
                let attempt = director
                    .login_attempt(name, &"pw".into(), source)
                    .await
                    .unwrap();
                assert!(matches!(attempt, LoginAttempt::Refused), "{attempt:?}");
            }
        }
        // The frontend's account name is checked too, whatever the user name.
        let attempt = director
            .login_attempt("u", &"pw".into(), Some(LoginSource::Account(long.clone())))
            .await
            .unwrap();
        assert!(matches!(attempt, LoginAttempt::Refused));
        assert_eq!(director.hashing().n_verifications(), 0, "nothing hashed");
        assert!(director.inner.logins.is_empty(), "nothing counted");
        director.flush_audit().await.unwrap();
        let events = director
            .audit_events(crate::director::audit::AuditQuery::all())
            .await
            .unwrap();
        assert!(
            events.iter().all(|event| event.event != "login"),
            "nothing audited"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_hashing_queue_refuses_logins_without_counting_them() {
        let dir = tempfile::tempdir().unwrap();
        // One worker and one queued place, no waiting for more.
        let director = builder(dir.path())
            .unwrap()
            .hashing(HashingSettings {
                workers: 1,
                queue: 1,
                wait: Duration::from_millis(1),
                linger: Duration::from_millis(100),
            })
            .build()
            .unwrap();
        let registration = Registration {
            username: "u".into(),
            fname: "f".into(),
            lname: "l".into(),
            email: "u@example.org".into(),
            affiliation: "a".into(),
            password: "pw".into(),
            credit: "5".into(),
        };
        director.register(registration).await.unwrap();
        let source = LoginSource::Address("192.0.2.9".parse().unwrap());
        // More at once than the 20 failures the throttle allows, all with the right password.
        let logins: Vec<_> = (0..30)
            .map(|_| {
                let (director, source) = (director.clone(), source.clone());
                tokio::spawn(async move {
                    director
                        .login_from("u", &"pw".into(), Some(source))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut n_admitted = 0;
        for login in logins {
            n_admitted += usize::from(login.await.unwrap().is_some());
        }
        assert!(n_admitted >= 1, "at least the first is checked");
        assert!(n_admitted < 30, "some were refused for load: {n_admitted}");
        // Each attempt is audited with what it came to.
        let mut outcomes = Vec::new();
        for _ in 0..40 {
            director.flush_audit().await.unwrap();
            let events = director
                .audit_events(crate::director::audit::AuditQuery::all())
                .await
                .unwrap();
            outcomes = events
                .iter()
                .filter(|event| event.event == "login")
                .map(|event| event.outcome.clone())
                .collect();
            if outcomes.len() == 30 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(outcomes.len(), 30, "{outcomes:?}");
        assert_eq!(outcomes.iter().filter(|o| *o == "ok").count(), n_admitted);
        assert_eq!(
            outcomes.iter().filter(|o| *o == "throttled").count(),
            30 - n_admitted
        );
        // The refusals were not failed attempts: the source may still log in.
        let user = director
            .login_from("u", &"pw".into(), Some(source.clone()))
            .await
            .unwrap();
        assert_eq!(user.map(|user| user.username).as_deref(), Some("u"));
        // A wrong password still is one, and an unknown user costs a check too.
        assert!(
            director
                .login_from("u", &"no".into(), Some(source))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            director
                .login("nobody", &"pw".into())
                .await
                .unwrap()
                .is_none()
        );
    }
}
