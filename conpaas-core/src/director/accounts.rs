//! Accounts: creating users (`director adduser`, `/new_user`), checking passwords, and the
//! operator's account commands (`director user list|show|credit|disable|enable|delete|passwd`).

use secrecy::{ExposeSecret as _, SecretString};

use super::Error;
use super::audit::{AuditOutcome, Event};
use crate::model::{Credit, CreditChange, User, UserId};
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
/// client's network for the director (see [`HashingPool::verify_as`]). A user the operator
/// disabled is refused (`None`) after the same check, as slowly as a wrong password.
pub async fn login_as(
    store: &Store,
    hashing: &HashingPool,
    key: HashingKey,
    username: &str,
    password: &str,
) -> Result<Option<User>, Error> {
    Ok(
        match check_login_as(store, hashing, key, username, password).await? {
            Checked::Accepted(user) => Some(user),
            Checked::Refused | Checked::Disabled(_) => None,
        },
    )
}

/// What a password check came to.
#[derive(Debug)]
pub(super) enum Checked {
    /// The password is the user's.
    Accepted(User),
    /// No such user, or not their password.
    Refused,
    /// The password is the user's, but the operator disabled them.
    Disabled(User),
}

/// [`login_as`], telling a disabled user's right password from a refusal (for the audit log).
pub(super) async fn check_login_as(
    store: &Store,
    hashing: &HashingPool,
    key: HashingKey,
    username: &str,
    password: &str,
) -> Result<Checked, Error> {
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
        return Ok(Checked::Refused);
    };
    match verification {
        Verification::Mismatch => Ok(Checked::Refused),
        // Checked all the same, so that the answer's delay tells nothing.
        Verification::Match | Verification::MatchLegacy if user.is_disabled() => {
            Ok(Checked::Disabled(user))
        }
        Verification::Match => Ok(Checked::Accepted(user)),
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
            Ok(Checked::Accepted(user))
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

// The operator's account commands (`director user ...`): each change is made with its audit
// event in one transaction; a refusal of a known user is recorded too (`refused`), after the
// transaction rolled back. Events carry the current `AuditContext`: the command line runs them
// in `AuditContext::operator_named(..).sync_scope(..)`, an embedder in its own scope.

/// How an operator names an account: `alice`, `3`, `uid:3`, `name:3`.
///
/// Digits alone name the account with that id or the account with that name; when those are
/// two accounts, [`Error::AmbiguousUser`] says so (and `uid:` or `name:` decides).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserRef {
    /// By id (`uid:3`).
    Id(UserId),
    /// By user name, exactly as stored (`alice`, `name:alice`).
    Name(String),
    /// Digits alone (`3`): an id or a name.
    IdOrName(UserId, String),
}

impl UserRef {
    /// How the operator's text names an account (never refused: a text that is no id is a
    /// name, and `uid:` followed by no id is a name too).
    pub fn parse(text: &str) -> UserRef {
        if let Some(name) = text.strip_prefix("name:") {
            return UserRef::Name(name.to_owned());
        }
        if let Some(id) = text.strip_prefix("uid:")
            && let Some(uid) = digits_id(id)
        {
            return UserRef::Id(uid);
        }
        match digits_id(text) {
            Some(uid) => UserRef::IdOrName(uid, text.to_owned()),
            None => UserRef::Name(text.to_owned()),
        }
    }
}

/// `text` as a user id when it is ASCII digits alone.
fn digits_id(text: &str) -> Option<UserId> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().map(UserId)
}

impl std::fmt::Display for UserRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserRef::Id(uid) => write!(f, "uid:{uid}"),
            UserRef::Name(name) => write!(f, "{name:?}"),
            UserRef::IdOrName(_, text) => f.write_str(text),
        }
    }
}

/// The account `who` names ([`Error::UnknownUser`], [`Error::AmbiguousUser`]).
fn find_account(conn: &mut store::DbConnection, who: &UserRef) -> Result<User, Error> {
    let found = match who {
        UserRef::Id(uid) => store::find_user(conn, *uid)?,
        UserRef::Name(name) => store::find_user_by_username(conn, name)?,
        UserRef::IdOrName(uid, text) => {
            let by_id = store::find_user(conn, *uid)?;
            let by_name = store::find_user_by_username(conn, text)?;
            match (by_id, by_name) {
                (Some(by_id), Some(by_name)) if by_id.uid != by_name.uid => {
                    return Err(Error::AmbiguousUser {
                        text: text.clone(),
                        by_id: by_id.username,
                        by_name: by_name.uid,
                    });
                }
                (Some(user), _) | (None, Some(user)) => Some(user),
                (None, None) => None,
            }
        }
    };
    found.ok_or_else(|| Error::UnknownUser(who.to_string()))
}

/// Every user, ascending uid, with how many applications and services each has
/// (`director user list`).
pub async fn list_users(store: &Store) -> Result<Vec<store::UserSummary>, Error> {
    Ok(store.run(store::list_user_summaries).await?)
}

/// [`list_users`] for synchronous callers (the command line).
pub fn list_users_blocking(store: &Store) -> Result<Vec<store::UserSummary>, Error> {
    Ok(store.run_blocking(store::list_user_summaries)?)
}

/// The user `who` names, with how many applications and services they have (`director user
/// show`).
pub async fn show_user(store: &Store, who: &UserRef) -> Result<store::UserSummary, Error> {
    let who = who.clone();
    store.run(move |conn| summary_of(conn, &who)).await
}

/// [`show_user`] for synchronous callers.
pub fn show_user_blocking(store: &Store, who: &UserRef) -> Result<store::UserSummary, Error> {
    store.run_blocking(|conn| summary_of(conn, who))
}

fn summary_of(conn: &mut store::DbConnection, who: &UserRef) -> Result<store::UserSummary, Error> {
    let user = find_account(conn, who)?;
    store::user_summary(conn, user.uid)?.ok_or_else(|| Error::UnknownUser(who.to_string()))
}

/// What [`change_credit`] does with a change that would take the credit below zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BelowZero {
    /// Refuse it ([`Error::CreditBelowZero`]); nothing changes.
    Refuse,
    /// A subtraction larger than the credit takes it to zero (the store never holds less).
    StopAtZero,
}

/// What [`change_credit`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreditAdjusted {
    /// The user, with the credit after the change.
    pub user: User,
    /// The credit before.
    pub before: Credit,
}

/// Adds, takes away or sets the credit of the user `who` names (`director user credit`), with
/// its `credit.adjusted` event, in one transaction that locks the user's row: a manager's
/// charge at the same moment is applied before or after it, never lost. A change below zero is
/// refused unless `below_zero` says to stop at zero; a refusal is recorded (`refused`).
pub async fn change_credit(
    store: &Store,
    who: &UserRef,
    change: CreditChange,
    below_zero: BelowZero,
) -> Result<CreditAdjusted, Error> {
    let who = who.clone();
    let event = credit_event();
    let refused = store
        .run(move |conn| change_credit_on(conn, &who, change, below_zero, event))
        .await;
    record_refusal(store, refused).await
}

/// [`change_credit`] for synchronous callers.
pub fn change_credit_blocking(
    store: &Store,
    who: &UserRef,
    change: CreditChange,
    below_zero: BelowZero,
) -> Result<CreditAdjusted, Error> {
    let event = credit_event();
    let refused = store.run_blocking(|conn| change_credit_on(conn, who, change, below_zero, event));
    record_refusal_blocking(store, refused)
}

fn credit_event() -> Event {
    Event::new("credit.adjusted", AuditOutcome::Ok)
}

/// A use-case's error, with the event to record when it is the refusal of a known user.
struct Refused {
    error: Error,
    event: Option<Event>,
}

impl From<Error> for Box<Refused> {
    fn from(error: Error) -> Box<Refused> {
        Box::new(Refused { error, event: None })
    }
}

impl From<store::Error> for Box<Refused> {
    fn from(error: store::Error) -> Box<Refused> {
        Box::<Refused>::from(Error::from(error))
    }
}

/// A use-case's answer, or its error and the event of the refusal to record.
type MaybeRefused<T> = Result<T, Box<Refused>>;

async fn record_refusal<T>(store: &Store, result: MaybeRefused<T>) -> Result<T, Error> {
    let refused = match result {
        Ok(value) => return Ok(value),
        Err(refused) => *refused,
    };
    match refused {
        Refused { error, event: None } => Err(error),
        Refused {
            error,
            event: Some(event),
        } => {
            let new = event.to_new();
            if let Err(failed) = store
                .run(move |conn| store::record_audit_event(conn, &new))
                .await
            {
                tracing::warn!(error = %crate::model::ErrorChain(&failed), "cannot record the refusal in the audit log");
            }
            Err(error)
        }
    }
}

fn record_refusal_blocking<T>(store: &Store, result: MaybeRefused<T>) -> Result<T, Error> {
    let refused = match result {
        Ok(value) => return Ok(value),
        Err(refused) => *refused,
    };
    match refused {
        Refused { error, event: None } => Err(error),
        Refused {
            error,
            event: Some(event),
        } => {
            let new = event.to_new();
            if let Err(failed) = store.run_blocking(|conn| store::record_audit_event(conn, &new)) {
                tracing::warn!(error = %crate::model::ErrorChain(&failed), "cannot record the refusal in the audit log");
            }
            Err(error)
        }
    }
}

fn change_credit_on(
    conn: &mut store::DbConnection,
    who: &UserRef,
    change: CreditChange,
    below_zero: BelowZero,
    event: Event,
) -> MaybeRefused<CreditAdjusted> {
    let user = find_account(conn, who)?;
    let event = event
        .uid(user.uid)
        .username(&user.username)
        .detail("change", change.to_string());
    let clamp = below_zero == BelowZero::StopAtZero;
    let changed = store::write_transaction(conn, |conn| {
        let changed = store::change_credit(conn, user.uid, change, clamp)?;
        let stopped_at_zero = change.apply(changed.before).is_none();
        let mut event = event
            .clone()
            .detail("before", changed.before.0)
            .detail("after", changed.after.0);
        if stopped_at_zero {
            event = event.detail("stopped_at_zero", true);
        }
        store::record_audit_event(conn, &event.to_new())?;
        Ok::<_, store::Error>(changed)
    });
    match changed {
        Ok(changed) => Ok(CreditAdjusted {
            user: User {
                credit: changed.after,
                ..user
            },
            before: changed.before,
        }),
        Err(store::Error::CreditBelowZero { credit, .. }) => Err(Box::new(Refused {
            error: Error::CreditBelowZero {
                username: user.username,
                credit,
                change,
            },
            event: Some(
                event
                    .outcome(AuditOutcome::Refused)
                    .detail("credit", credit.0)
                    .detail("reason", "below zero"),
            ),
        })),
        Err(store::Error::CreditOverflow { credit, .. }) => Err(Box::new(Refused {
            error: Error::CreditOverflow {
                username: user.username,
                credit,
                change,
            },
            event: Some(
                event
                    .outcome(AuditOutcome::Refused)
                    .detail("credit", credit.0)
                    .detail("reason", "overflow"),
            ),
        })),
        // Deleted meanwhile.
        Err(store::Error::UserNotFound(_)) => Err(Error::UnknownUser(who.to_string()).into()),
        Err(other) => Err(other.into()),
    }
}

/// What [`disable_user`] or [`enable_user`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccountSwitched {
    /// The user, as the command left them.
    pub user: User,
    /// Whether the command changed them (`false`: they already were so; nothing recorded).
    pub changed: bool,
}

/// Disables the account `who` names (`director user disable`), with its `user.disabled`
/// event, in one transaction: from then on their logins and certificate requests are refused
/// as a wrong password is, and their user certificates get what an unknown user's get. Their
/// services keep running, and their managers' charges are applied as before (the credit keeps
/// measuring what the VMs use; when it runs out the managers stop, as for anyone). Requests
/// already past the check when it commits finish.
pub async fn disable_user(store: &Store, who: &UserRef) -> Result<AccountSwitched, Error> {
    switch(store, who, true).await
}

/// [`disable_user`] for synchronous callers.
pub fn disable_user_blocking(store: &Store, who: &UserRef) -> Result<AccountSwitched, Error> {
    let event = Event::new("user.disabled", AuditOutcome::Ok);
    store.run_blocking(|conn| switch_on(conn, who, true, event))
}

/// Enables the account `who` names again (`director user enable`), with its `user.enabled`
/// event.
pub async fn enable_user(store: &Store, who: &UserRef) -> Result<AccountSwitched, Error> {
    switch(store, who, false).await
}

/// [`enable_user`] for synchronous callers.
pub fn enable_user_blocking(store: &Store, who: &UserRef) -> Result<AccountSwitched, Error> {
    let event = Event::new("user.enabled", AuditOutcome::Ok);
    store.run_blocking(|conn| switch_on(conn, who, false, event))
}

async fn switch(store: &Store, who: &UserRef, disable: bool) -> Result<AccountSwitched, Error> {
    let who = who.clone();
    let name = if disable {
        "user.disabled"
    } else {
        "user.enabled"
    };
    let event = Event::new(name, AuditOutcome::Ok);
    store
        .run(move |conn| switch_on(conn, &who, disable, event))
        .await
}

fn switch_on(
    conn: &mut store::DbConnection,
    who: &UserRef,
    disable: bool,
    event: Event,
) -> Result<AccountSwitched, Error> {
    let user = find_account(conn, who)?;
    // Microseconds, as PostgreSQL keeps them: the time reads back the same on both.
    let now = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now().naive_utc(), 6);
    let disabled = disable.then_some(now);
    let changed = store::write_transaction(conn, |conn| {
        let changed = store::set_user_disabled(conn, user.uid, disabled)?;
        if changed {
            let event = event.uid(user.uid).username(&user.username);
            store::record_audit_event(conn, &event.to_new())?;
        }
        Ok::<_, store::Error>(changed)
    });
    let changed = match changed {
        Ok(changed) => changed,
        Err(store::Error::UserNotFound(_)) => return Err(Error::UnknownUser(who.to_string())),
        Err(other) => return Err(other.into()),
    };
    let user = match (changed, store::find_user(conn, user.uid)?) {
        (_, Some(user)) => user,
        (true, None) => User { disabled, ..user },
        (false, None) => return Err(Error::UnknownUser(who.to_string())),
    };
    Ok(AccountSwitched { user, changed })
}

/// Deletes the account `who` names and their (empty) applications (`director user delete`),
/// with its `user.deleted` event, in one transaction; refused ([`Error::UserHasServices`],
/// recorded) while they have any service, whatever its state: each service row is a VM that
/// the accounting keeps until the VM is gone, so the services are stopped first (by the user,
/// or by their managers once their credit is 0). Ids are never reused, so the user's
/// certificates name nobody afterwards.
pub async fn delete_user(store: &Store, who: &UserRef) -> Result<store::DeletedUser, Error> {
    let who = who.clone();
    let event = Event::new("user.deleted", AuditOutcome::Ok);
    let result = store
        .run(move |conn| delete_user_on(conn, &who, event))
        .await;
    record_refusal(store, result).await
}

/// [`delete_user`] for synchronous callers.
pub fn delete_user_blocking(store: &Store, who: &UserRef) -> Result<store::DeletedUser, Error> {
    let event = Event::new("user.deleted", AuditOutcome::Ok);
    let result = store.run_blocking(|conn| delete_user_on(conn, who, event));
    record_refusal_blocking(store, result)
}

fn delete_user_on(
    conn: &mut store::DbConnection,
    who: &UserRef,
    event: Event,
) -> MaybeRefused<store::DeletedUser> {
    let user = find_account(conn, who)?;
    let event = event.uid(user.uid).username(&user.username);
    let deleted = store::write_transaction(conn, |conn| {
        let deleted = store::delete_user(conn, user.uid)?;
        let event = event
            .clone()
            .detail("credit", deleted.user.credit.0)
            .detail("applications", deleted.n_applications);
        store::record_audit_event(conn, &event.to_new())?;
        Ok::<_, store::Error>(deleted)
    });
    match deleted {
        Ok(deleted) => Ok(deleted),
        Err(store::Error::UserHasServices { services, .. }) => {
            let sids: Vec<i32> = services.iter().map(|sid| sid.0).collect();
            Err(Box::new(Refused {
                error: Error::UserHasServices {
                    username: user.username,
                    services,
                },
                event: Some(
                    event
                        .outcome(AuditOutcome::Refused)
                        .detail("services", sids),
                ),
            }))
        }
        Err(store::Error::UserNotFound(_)) => Err(Error::UnknownUser(who.to_string()).into()),
        Err(other) => Err(other.into()),
    }
}

/// Replaces the password of the account `who` names (`director user passwd`) by `password`,
/// hashed with argon2id before the transaction that stores it with its
/// `user.password_changed` event (which holds no trace of either). A 1.2 MD5 hash goes with
/// it. Certificates issued before stay valid until they expire.
pub async fn set_password(
    store: &Store,
    who: &UserRef,
    password: SecretString,
) -> Result<User, Error> {
    let who = who.clone();
    let event = Event::new("user.password_changed", AuditOutcome::Ok);
    store
        .run(move |conn| set_password_on(conn, &who, &password, event))
        .await
}

/// [`set_password`] for synchronous callers.
pub fn set_password_blocking(
    store: &Store,
    who: &UserRef,
    password: SecretString,
) -> Result<User, Error> {
    let event = Event::new("user.password_changed", AuditOutcome::Ok);
    store.run_blocking(|conn| set_password_on(conn, who, &password, event))
}

fn set_password_on(
    conn: &mut store::DbConnection,
    who: &UserRef,
    password: &SecretString,
    event: Event,
) -> Result<User, Error> {
    if password.expose_secret().is_empty() {
        return Err(Error::Invalid {
            field: "password",
            reason: "expected a non-empty password".into(),
        });
    }
    let user = find_account(conn, who)?;
    let hash = SecretString::from(store::password::hash_password(password.expose_secret())?);
    let stored = store::write_transaction(conn, |conn| {
        store::set_password_hash(conn, user.uid, &hash)?;
        let event = event.uid(user.uid).username(&user.username);
        store::record_audit_event(conn, &event.to_new())
    });
    match stored {
        Ok(()) => Ok(user),
        Err(store::Error::UserNotFound(_)) => Err(Error::UnknownUser(who.to_string())),
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: UserRef) {
        assert_eq!(UserRef::parse(text), expect, "{text:?}");
    }

    #[test]
    fn operators_name_users_by_name_or_id() {
        let name = |name: &str| UserRef::Name(name.to_owned());
        check("alice", name("alice"));
        check("3", UserRef::IdOrName(UserId(3), "3".to_owned()));
        check("007", UserRef::IdOrName(UserId(7), "007".to_owned()));
        check("uid:3", UserRef::Id(UserId(3)));
        check("name:3", name("3"));
        check("name:uid:3", name("uid:3"));
        check("name:", name(""));
        // Not an id: a name, which no account may have or some account has.
        for text in [
            "uid:",
            "uid:x",
            "uid:-1",
            "-3",
            "+3",
            " 3",
            "99999999999",
            "\u{663}",
        ] {
            check(text, name(text));
        }
        assert_eq!(UserRef::Id(UserId(3)).to_string(), "uid:3");
        assert_eq!(name("bob").to_string(), "\"bob\"");
        assert_eq!(UserRef::parse("42").to_string(), "42");
    }
}
