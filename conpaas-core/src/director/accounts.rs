//! Accounts: creating users (`director adduser`, `/new_user`) and checking passwords.

use secrecy::{ExposeSecret as _, SecretString};

use super::Error;
use super::audit::{AuditOutcome, Event};
use crate::model::{Credit, User};
use crate::store::password::Verification;
use crate::store::{self, HashingKey, HashingPool, LoginRecord, NewPassword, NewUser, Store};

/// The credit `cpsadduser.py` gave a new user.
pub const ADDUSER_DEFAULT_CREDIT: Credit = Credit(50);

/// A new account as the operator or the frontend gives it.
#[derive(Debug)]
#[non_exhaustive]
pub struct NewAccount {
    /// Login name.
    pub username: String,
    /// E-mail.
    pub email: String,
    /// First name.
    pub fname: Option<String>,
    /// Last name.
    pub lname: Option<String>,
    /// Affiliation.
    pub affiliation: Option<String>,
    /// The plaintext password, hashed (argon2id) before it is stored.
    pub password: SecretString,
    /// Initial credit.
    pub credit: Credit,
}

impl NewAccount {
    /// The account `username` (e-mail `email`) with `password` and `credit`; no names or
    /// affiliation (set them with the setters).
    pub fn new(
        username: impl Into<String>,
        email: impl Into<String>,
        password: SecretString,
        credit: Credit,
    ) -> Self {
        NewAccount {
            username: username.into(),
            email: email.into(),
            fname: None,
            lname: None,
            affiliation: None,
            password,
            credit,
        }
    }

    setters! {
        fname: some into String,
        lname: some into String,
        affiliation: some into String,
    }
}

/// Creates a user and their default application `New Application` in one transaction.
pub async fn add_user(store: &Store, account: NewAccount) -> Result<User, Error> {
    let new = checked(account)?;
    let event = user_created();
    Ok(store
        .run(move |conn| create_user(conn, &new, event))
        .await?)
}

/// The event of a new account (its id comes with the row).
fn user_created() -> Event {
    Event::new("user.created", AuditOutcome::Ok)
}

/// Creates the user and records its event, in one transaction.
fn create_user(
    conn: &mut store::DbConnection,
    new: &NewUser,
    event: Event,
) -> Result<User, store::Error> {
    store::write_transaction(conn, |conn| {
        let user = store::create_user(conn, new)?;
        let event = event
            .uid(user.uid)
            .username(&user.username)
            .detail("credit", user.credit.0);
        store::record_audit_event(conn, &event.to_new())?;
        Ok(user)
    })
}

/// [`add_user`] with the password hashed on `hashing` rather than on a blocking thread.
pub async fn add_user_hashed(
    store: &Store,
    hashing: &HashingPool,
    account: NewAccount,
) -> Result<User, Error> {
    add_user_hashed_as(store, hashing, HashingKey::SHARED, account).await
}

/// [`add_user_hashed`] with the hash made on behalf of `key` (see [`HashingPool::hash_as`]).
pub async fn add_user_hashed_as(
    store: &Store,
    hashing: &HashingPool,
    key: HashingKey,
    account: NewAccount,
) -> Result<User, Error> {
    let mut new = checked(account)?;
    if let NewPassword::Plaintext(plain) = &new.password {
        new.password = NewPassword::Hash(hashing.hash_as(key, plain.clone()).await?);
    }
    let event = user_created();
    Ok(store
        .run(move |conn| create_user(conn, &new, event))
        .await?)
}

/// [`add_user`] for synchronous callers (the command line).
pub fn add_user_blocking(store: &Store, account: NewAccount) -> Result<User, Error> {
    let new = checked(account)?;
    let event = user_created();
    Ok(store.run_blocking(move |conn| create_user(conn, &new, event))?)
}

/// The store's new user for a checked account (the password still plaintext: the store hashes
/// it with argon2id).
fn checked(account: NewAccount) -> Result<NewUser, Error> {
    check_account(&account)?;
    Ok(NewUser {
        username: account.username,
        fname: account.fname,
        lname: account.lname,
        email: Some(account.email),
        affiliation: account.affiliation,
        password: NewPassword::Plaintext(account.password),
        credit: account.credit,
    })
}

/// The user named `username` if `password` is theirs; a 1.2 MD5 hash is upgraded on the way.
///
/// Three steps, so that no database connection or transaction waits on argon2: the user's row
/// is read, the password checked on `hashing` (an unknown user costs a dummy check of the same
/// price), and only a matching 1.2 hash is then replaced. A full hashing queue is
/// [`store::Error::HashingBusy`].
pub async fn login(
    store: &Store,
    hashing: &HashingPool,
    username: &str,
    password: &str,
) -> Result<Option<User>, Error> {
    login_as(store, hashing, HashingKey::SHARED, username, password).await
}

/// [`login`] with the password checked (and a 1.2 hash replaced) on behalf of `key`, the
/// client's network for the director (see [`HashingPool::verify_as`]).
pub async fn login_as(
    store: &Store,
    hashing: &HashingPool,
    key: HashingKey,
    username: &str,
    password: &str,
) -> Result<Option<User>, Error> {
    let username = username.to_owned();
    let record = store
        .run(move |conn| store::find_login(conn, &username))
        .await?;
    let (user, stored) = match record {
        Some(LoginRecord { user, stored_hash }) => (Some(user), stored_hash),
        None => (None, None),
    };
    let password = SecretString::from(password.to_owned());
    let verification = hashing
        .verify_as(key, stored.clone(), password.clone())
        .await?;
    let (Some(user), Some(stored)) = (user, stored) else {
        return Ok(None);
    };
    match verification {
        Verification::Mismatch => Ok(None),
        Verification::Match => Ok(Some(user)),
        Verification::MatchLegacy => {
            let upgraded = hashing.hash_as(key, password).await?;
            let uid = user.uid;
            store
                .run(move |conn| {
                    store::upgrade_password_hash(
                        conn,
                        uid,
                        stored.expose_secret(),
                        upgraded.expose_secret(),
                    )
                })
                .await?;
            Ok(Some(user))
        }
    }
}

/// Whether a new user could have this user name and e-mail: both valid, the name not reserved
/// and not taken (in any spelling that [`store::names::username_key`] equates). For the
/// command line, which asks for the password only after this; [`add_user`] decides again, in
/// its transaction (another user may come first meanwhile).
pub fn check_new_user_blocking(store: &Store, username: &str, email: &str) -> Result<(), Error> {
    check_username(username)?;
    check_email(email)?;
    if store::names::username_key(username) == store::names::username_key(store::RESERVED_USERNAME)
    {
        return Err(Error::UsernameReserved(username.to_owned()));
    }
    let name = username.to_owned();
    let existing = store.run_blocking(move |conn| store::find_colliding_username(conn, &name))?;
    if existing.is_some() {
        return Err(Error::UsernameTaken(username.to_owned()));
    }
    Ok(())
}

/// Checks what the certificate of the user will need and what the columns hold: a user name
/// for the CN, an ASCII e-mail of 1..128 (1.2 failed later, at `/getcerts`, with a 500), other
/// fields of at most 256 characters.
fn check_account(account: &NewAccount) -> Result<(), Error> {
    check_username(&account.username)?;
    check_email(&account.email)?;
    for (field, text) in [
        ("fname", &account.fname),
        ("lname", &account.lname),
        ("affiliation", &account.affiliation),
    ] {
        let n_chars = text.as_deref().map_or(0, |text| text.chars().count());
        if n_chars > store::names::MAX_TEXT_CHARS {
            return Err(Error::Invalid {
                field,
                reason: format!(
                    "expected at most {} characters",
                    store::names::MAX_TEXT_CHARS
                ),
            });
        }
    }
    if account.credit.0 < 0 {
        return Err(Error::Invalid {
            field: "credit",
            reason: "expected a non-negative integer".into(),
        });
    }
    Ok(())
}

/// A user name the certificate's CN can hold, shown as it reads: no control or format
/// characters, no surrounding spaces.
fn check_username(username: &str) -> Result<(), Error> {
    check_name("username", username, store::names::MAX_USERNAME_CHARS)
}

/// A name (`field`) of 1..`max_chars` characters without control or format characters and
/// without surrounding spaces: [`Error::Invalid`] otherwise.
pub(super) fn check_name(field: &'static str, name: &str, max_chars: usize) -> Result<(), Error> {
    match store::names::name_problem(name, max_chars) {
        None => Ok(()),
        Some(reason) => Err(Error::Invalid { field, reason }),
    }
}

/// An e-mail the certificate's `emailAddress` can hold.
fn check_email(email: &str) -> Result<(), Error> {
    if email.is_empty()
        || email.len() > 128
        || !email.is_ascii()
        || email.chars().any(|c| c.is_ascii_control())
    {
        return Err(Error::Invalid {
            field: "email",
            reason: "expected 1 to 128 ASCII characters".into(),
        });
    }
    Ok(())
}
