//! Users on the wire: registration (`/new_user`), login, certificates (`/getcerts`).

use secrecy::{ExposeSecret, SecretString};

use super::throttle::LoginSource;
use super::{Director, Error, parse_int};
use crate::model::{Credit, User};

/// The fields of `/new_user`, as sent (each present and non-empty: checked by the caller).
#[derive(Debug)]
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

/// A user's new certificate, key and the CA certificate (the three members of `certs.zip`).
pub struct UserCertificates {
    /// `cert.pem`.
    pub cert_pem: String,
    /// `key.pem`.
    pub key_pem: SecretString,
    /// `ca_cert.pem`.
    pub ca_cert_pem: String,
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
        super::accounts::add_user_hashed(&self.inner.store, &self.inner.hashing, account).await
    }

    /// The user if the password is theirs. When the password hashing queue stays full (see
    /// [`DirectorBuilder::hashing`](super::DirectorBuilder::hashing)) the password is not
    /// checked and the answer is `None`, a refused login, which every 1.2 client understands.
    pub async fn login(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<Option<User>, Error> {
        Ok(self.check_password(username, password).await?.flatten())
    }

    /// `Some(user or None)` once the password is checked; `None` when the hashing queue was
    /// full (logged), so that a refusal for load is not counted as a wrong password.
    async fn check_password(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<Option<Option<User>>, Error> {
        let checked = super::accounts::login(
            &self.inner.store,
            &self.inner.hashing,
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

    /// [`Director::login`] for a client `from`: a source with too many failed attempts lately
    /// (20 in 5 minutes) gets `None` without its password being checked, as if wrong.
    pub async fn login_from(
        &self,
        username: &str,
        password: &SecretString,
        from: Option<LoginSource>,
    ) -> Result<Option<User>, Error> {
        let now = std::time::Instant::now();
        if let Some(source) = &from
            && !self.inner.logins.allows(source, now)
        {
            tracing::info!(?source, "login refused: too many failed attempts");
            return Ok(None);
        }
        let Some(user) = self.check_password(username, password).await? else {
            return Ok(None);
        };
        if let (None, Some(source)) = (&user, from) {
            self.inner.logins.failed(source, now);
        }
        Ok(user)
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
    async fn certificates_for(&self, user: User) -> Result<UserCertificates, Error> {
        let email = user.email.clone().unwrap_or_default();
        let issued = self
            .issue(move |ca| ca.issue_user_cert(user.uid, &user.username, &email))
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
