//! The `user` table: accounts, logins (with the MD5-to-argon2id upgrade) and credit.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use secrecy::{ExposeSecret, SecretString};

use super::conn::{DbConnection, on_backend, write_transaction};
use super::names;
use super::password::{self, Verification};
use super::rows::{UserRow, now_utc};
use super::schema::{application, service, user};
use super::{DEFAULT_APPLICATION_NAME, Error};
use crate::model::{Credit, CreditChange, ServiceId, User, UserId};

/// The user name nobody may register: the managers' 1.2 certificate check lets any
/// certificate whose CN is `CA` through, and a user's CN is their user name.
pub const RESERVED_USERNAME: &str = "CA";

/// The password of a new account.
#[non_exhaustive]
pub enum NewPassword {
    /// A plaintext password, hashed with argon2id by [`create_user`].
    Plaintext(SecretString),
    /// A hash made beforehand with [`password::hash_password`] (or a 1.2 MD5 hex
    /// digest, upgraded at the first login). Stored as given.
    Hash(SecretString),
}

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NewPassword::Plaintext(_) => f.write_str("Plaintext(<redacted>)"),
            NewPassword::Hash(_) => f.write_str("Hash(<redacted>)"),
        }
    }
}

/// A new account, as `/new_user` and `director adduser` give it.
#[derive(Debug)]
#[non_exhaustive]
pub struct NewUser {
    /// Login name; unique, never [`RESERVED_USERNAME`].
    pub username: String,
    /// First name.
    pub fname: Option<String>,
    /// Last name.
    pub lname: Option<String>,
    /// E-mail; unique when present.
    pub email: Option<String>,
    /// Free text.
    pub affiliation: Option<String>,
    /// The password.
    pub password: NewPassword,
    /// Initial credit; never negative.
    pub credit: Credit,
}

impl NewUser {
    /// The account `username` with `password` and `credit`; no names, e-mail or affiliation
    /// (set them with the setters).
    pub fn new(username: impl Into<String>, password: NewPassword, credit: Credit) -> Self {
        NewUser {
            username: username.into(),
            fname: None,
            lname: None,
            email: None,
            affiliation: None,
            password,
            credit,
        }
    }

    setters! {
        fname: some into String,
        lname: some into String,
        email: some into String,
        affiliation: some into String,
    }
}

/// Creates a user and their default application `New Application` in one
/// transaction, as 1.2's `/new_user` did.
///
/// Duplicates are decided inside the transaction ([`Error::UsernameTaken`] first,
/// then [`Error::EmailTaken`], the order of 1.2's checks); a concurrent insert that
/// wins the race hits the unique constraints and gets the same errors.
///
/// User names collide by [`names::username_key`] (NFKC and case folding): a name whose key
/// an existing user's name has is [`Error::UsernameTaken`], whatever the spelling.
pub fn create_user(conn: &mut DbConnection, new: &NewUser) -> Result<User, Error> {
    if names::username_key(&new.username) == names::username_key(RESERVED_USERNAME) {
        return Err(Error::UsernameReserved(new.username.clone()));
    }
    if new.credit.0 < 0 {
        return Err(Error::NegativeAmount(new.credit));
    }
    // Hash before the transaction: argon2 takes a while and the write lock should not.
    let hash = match &new.password {
        NewPassword::Plaintext(plain) => password::hash_password(plain.expose_secret())?,
        NewPassword::Hash(hash) if password::is_known_hash(hash.expose_secret()) => {
            hash.expose_secret().to_owned()
        }
        NewPassword::Hash(_) => return Err(Error::UnknownPasswordHash),
    };
    let created = write_transaction(conn, |conn| {
        if find_colliding_username(conn, &new.username)?.is_some() {
            return Err(Error::UsernameTaken(new.username.clone()));
        }
        if let Some(email) = &new.email {
            let n_same_email: i64 = user::table
                .filter(user::email.eq(email))
                .count()
                .get_result(conn)?;
            if n_same_email > 0 {
                return Err(Error::EmailTaken(email.clone()));
            }
        }
        let row: UserRow = diesel::insert_into(user::table)
            .values((
                user::username.eq(&new.username),
                user::fname.eq(&new.fname),
                user::lname.eq(&new.lname),
                user::email.eq(&new.email),
                user::affiliation.eq(&new.affiliation),
                user::password.eq(&hash),
                user::created.eq(now_utc()),
                user::credit.eq(new.credit),
            ))
            .returning(user::all_columns)
            .get_result(conn)?;
        diesel::insert_into(application::table)
            .values((
                application::name.eq(DEFAULT_APPLICATION_NAME),
                application::user_id.eq(row.uid),
            ))
            .execute(conn)?;
        Ok(User::from(row))
    });
    created.map_err(|err| {
        if let Error::Query(db) = &err
            && let Some(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)) =
                db.as_query()
        {
            return if super::violation_mentions(info.as_ref(), "email") {
                Error::EmailTaken(new.email.clone().unwrap_or_default())
            } else {
                Error::UsernameTaken(new.username.clone())
            };
        }
        err
    })
}

/// The existing user name that `username` collides with by [`names::username_key`], if any.
///
/// The keys of existing names are computed here, at check time, so that a 1.2 database needs
/// no migration and its users keep their names as stored (one read of the `username` column:
/// milliseconds for many thousands of users). Inside [`write_transaction`] the answer holds
/// until the insert: SQLite's `BEGIN IMMEDIATE` serialises writers, and on PostgreSQL a
/// transaction-scoped advisory lock serialises registrations.
pub fn find_colliding_username(
    conn: &mut DbConnection,
    username: &str,
) -> Result<Option<String>, Error> {
    #[cfg(feature = "postgres")]
    #[allow(irrefutable_let_patterns)]
    if let DbConnection::Pg(c) = conn {
        // Held to the end of the caller's transaction (at once released outside one).
        diesel::sql_query("SELECT pg_advisory_xact_lock(216091350002)").execute(c)?;
    }
    let key = names::username_key(username);
    let existing: Vec<String> = user::table.select(user::username).load(conn)?;
    Ok(existing
        .into_iter()
        .find(|name| names::username_key(name) == key))
}

/// A user and their stored password hash, as read for a login.
#[non_exhaustive]
pub struct LoginRecord {
    /// The user.
    pub user: User,
    /// The stored hash (argon2 PHC string or 1.2 MD5 hex); `None` for an account without a
    /// password (nobody can log in to it).
    pub stored_hash: Option<SecretString>,
}

impl std::fmt::Debug for LoginRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRecord")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The user named `username` with their stored hash: the read half of a login. The password
/// is checked after it, outside any transaction (argon2 takes tens of milliseconds).
pub fn find_login(conn: &mut DbConnection, username: &str) -> Result<Option<LoginRecord>, Error> {
    let found = user::table
        .filter(user::username.eq(username))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?;
    Ok(found.map(|row| {
        let stored_hash = row.password.clone().map(SecretString::from);
        LoginRecord {
            user: User::from(row),
            stored_hash,
        }
    }))
}

/// Replaces a 1.2 MD5 hash that just matched by `upgraded` (an argon2 PHC string), only if
/// the stored hash is still `legacy`: a concurrent login may have upgraded it already, and
/// either new hash is right. Answers whether this call replaced it.
pub fn upgrade_password_hash(
    conn: &mut DbConnection,
    uid: UserId,
    legacy: &str,
    upgraded: &str,
) -> Result<bool, Error> {
    if !password::is_legacy_md5(legacy) || !password::is_known_hash(upgraded) {
        return Err(Error::UnknownPasswordHash);
    }
    let n_rows = diesel::update(
        user::table
            .filter(user::uid.eq(uid))
            .filter(user::password.eq(legacy)),
    )
    .set(user::password.eq(upgraded))
    .execute(conn)?;
    if n_rows == 1 {
        tracing::info!(%uid, "upgraded a 1.2 md5 password hash to argon2id");
    }
    Ok(n_rows == 1)
}

/// Checks a user name and password on this thread; `None` when either is wrong. (The
/// director checks on its [`HashingPool`](super::HashingPool) instead, with
/// [`find_login`] and [`upgrade_password_hash`] around the check.)
///
/// A 1.2 MD5 hash that matches is replaced by an argon2id hash in this call, so
/// it is accepted once only in its old form. A disabled user ([`set_user_disabled`]) is
/// refused after the same check, as slowly as a wrong password.
pub fn login(
    conn: &mut DbConnection,
    username: &str,
    password: &str,
) -> Result<Option<User>, Error> {
    let Some(LoginRecord { user, stored_hash }) = find_login(conn, username)? else {
        password::waste_verification(password);
        return Ok(None);
    };
    let Some(stored) = stored_hash else {
        password::waste_verification(password);
        return Ok(None);
    };
    let verification = password::verify_password(stored.expose_secret(), password);
    if user.is_disabled() {
        return Ok(None);
    }
    match verification {
        Verification::Mismatch => Ok(None),
        Verification::Match => Ok(Some(user)),
        Verification::MatchLegacy => {
            let upgraded = password::hash_password(password)?;
            upgrade_password_hash(conn, user.uid, stored.expose_secret(), &upgraded)?;
            Ok(Some(user))
        }
    }
}

/// How many users exist (the first start suggests `adduser` when none does).
pub fn count_users(conn: &mut DbConnection) -> Result<i64, Error> {
    Ok(user::table.count().get_result(conn)?)
}

/// Users whose credit is used up (`credit <= 0`): their managers can no longer charge.
pub fn users_without_credit(conn: &mut DbConnection) -> Result<Vec<String>, Error> {
    Ok(user::table
        .filter(user::credit.le(0))
        .order(user::uid.asc())
        .select(user::username)
        .load(conn)?)
}

/// The user with this id.
pub fn find_user(conn: &mut DbConnection, uid: UserId) -> Result<Option<User>, Error> {
    let row = on_backend!(conn, |c| user::table
        .find(uid)
        .select(UserRow::as_select())
        .get_result(c)
        .optional())?;
    Ok(row.map(User::from))
}

/// The user with exactly this user name (case-sensitive, as 1.2 on SQLite).
pub fn find_user_by_username(
    conn: &mut DbConnection,
    username: &str,
) -> Result<Option<User>, Error> {
    let row = user::table
        .filter(user::username.eq(username))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?;
    Ok(row.map(User::from))
}

/// Takes `amount` from the user's credit if it covers it; answers whether it did
/// (`false` also for an unknown user).
///
/// One conditional `UPDATE`, so concurrent charges (managers charge from several
/// timers at once, replicas share one database) never lose an update; 1.2's
/// read-modify-write did. A negative amount is refused: 1.2 let it add credit.
pub fn decrement_credit(
    conn: &mut DbConnection,
    uid: UserId,
    amount: Credit,
) -> Result<bool, Error> {
    if amount.0 < 0 {
        return Err(Error::NegativeAmount(amount));
    }
    // On the backend's own connection, which keeps the prepared statement (every manager
    // calls this each hour of each service).
    let n_rows = on_backend!(conn, |c| diesel::update(
        user::table
            .filter(user::uid.eq(uid))
            .filter(user::credit.ge(amount)),
    )
    .set(user::credit.eq(user::credit - amount))
    .execute(c))?;
    Ok(n_rows == 1)
}

/// Charges a debt the director owes the database (a manager's charge deferred while the
/// database failed): `amount`, or all the credit left when it is less, in one transaction.
/// Answers whether the user exists.
pub fn charge_owed(conn: &mut DbConnection, uid: UserId, amount: Credit) -> Result<bool, Error> {
    if amount.0 < 0 {
        return Err(Error::NegativeAmount(amount));
    }
    super::conn::write_transaction(conn, |conn| {
        if decrement_credit(conn, uid, amount)? {
            return Ok(true);
        }
        let n_rows = diesel::update(user::table.filter(user::uid.eq(uid)))
            .set(user::credit.eq(Credit(0)))
            .execute(conn)?;
        Ok(n_rows == 1)
    })
}

/// Gives `amount` credit to the user (a refund when a start fails, or an operator's
/// top-up); answers whether the user exists. Refuses a negative amount, and an
/// amount that would overflow the credit (it answers `false` then).
pub fn add_credit(conn: &mut DbConnection, uid: UserId, amount: Credit) -> Result<bool, Error> {
    if amount.0 < 0 {
        return Err(Error::NegativeAmount(amount));
    }
    let headroom = Credit(i64::MAX - amount.0);
    let n_rows = diesel::update(
        user::table
            .filter(user::uid.eq(uid))
            .filter(user::credit.le(headroom)),
    )
    .set(user::credit.eq(user::credit + amount))
    .execute(conn)?;
    Ok(n_rows == 1)
}

/// A user with how many applications and services they have (`director user list|show`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserSummary {
    /// The account.
    pub user: User,
    /// How many applications they have.
    pub n_applications: i64,
    /// How many services they have (every lifecycle: each is a VM, or one being created or
    /// terminated).
    pub n_services: i64,
}

/// Every user, ascending uid, with how many applications and services each has.
pub fn list_user_summaries(conn: &mut DbConnection) -> Result<Vec<UserSummary>, Error> {
    let rows: Vec<UserRow> = on_backend!(conn, |c| user::table
        .order(user::uid.asc())
        .select(UserRow::as_select())
        .load(c))?;
    let n_applications: std::collections::HashMap<UserId, i64> = application::table
        .group_by(application::user_id)
        .select((application::user_id, diesel::dsl::count_star()))
        .load::<(UserId, i64)>(conn)?
        .into_iter()
        .collect();
    let n_services: std::collections::HashMap<UserId, i64> = service::table
        .group_by(service::user_id)
        .select((service::user_id, diesel::dsl::count_star()))
        .load::<(UserId, i64)>(conn)?
        .into_iter()
        .collect();
    Ok(rows
        .into_iter()
        .map(|row| {
            let uid = row.uid;
            UserSummary {
                user: User::from(row),
                n_applications: n_applications.get(&uid).copied().unwrap_or(0),
                n_services: n_services.get(&uid).copied().unwrap_or(0),
            }
        })
        .collect())
}

/// The user `uid` with how many applications and services they have; `None` when there is
/// no such user.
pub fn user_summary(conn: &mut DbConnection, uid: UserId) -> Result<Option<UserSummary>, Error> {
    let Some(user) = find_user(conn, uid)? else {
        return Ok(None);
    };
    let n_applications = application::table
        .filter(application::user_id.eq(uid))
        .count()
        .get_result(conn)?;
    let n_services = service::table
        .filter(service::user_id.eq(uid))
        .count()
        .get_result(conn)?;
    Ok(Some(UserSummary {
        user,
        n_applications,
        n_services,
    }))
}

/// The user's row, locked until the transaction ends on PostgreSQL (SQLite's `BEGIN
/// IMMEDIATE` already holds the database's write lock).
fn lock_user_row(conn: &mut DbConnection, uid: UserId) -> Result<Option<User>, Error> {
    // Built in each arm: `as_select` takes the arm's backend.
    let row = match conn {
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(c) => user::table
            .find(uid)
            .select(UserRow::as_select())
            .get_result(c),
        #[cfg(feature = "postgres")]
        DbConnection::Pg(c) => user::table
            .find(uid)
            .select(UserRow::as_select())
            .for_update()
            .get_result(c),
    }
    .optional()?;
    Ok(row.map(User::from))
}

/// What [`change_credit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreditChanged {
    /// The credit before.
    pub before: Credit,
    /// The credit after.
    pub after: Credit,
}

/// Changes the user's credit as an operator asks (`director user credit`), in one
/// transaction that locks the user's row first: a manager's charge at the same moment
/// ([`decrement_credit`], a single conditional `UPDATE`) waits for it, or it for the charge,
/// and neither update is lost.
///
/// A change that would take the credit below zero is [`Error::CreditBelowZero`], unless
/// `clamp` is set: a subtraction larger than the credit then takes it to zero. One past
/// `i64::MAX` is [`Error::CreditOverflow`]. Nothing changes on an error.
pub fn change_credit(
    conn: &mut DbConnection,
    uid: UserId,
    change: CreditChange,
    clamp: bool,
) -> Result<CreditChanged, Error> {
    write_transaction(conn, |conn| {
        let before = lock_user_row(conn, uid)?
            .ok_or(Error::UserNotFound(uid))?
            .credit;
        let after = match (change.apply(before), change) {
            (Some(after), _) => after,
            (None, CreditChange::Add(_)) => {
                return Err(Error::CreditOverflow {
                    uid,
                    credit: before,
                    change,
                });
            }
            (None, CreditChange::Subtract(_)) if clamp => Credit(0),
            (None, _) => {
                return Err(Error::CreditBelowZero {
                    uid,
                    credit: before,
                    change,
                });
            }
        };
        diesel::update(user::table.filter(user::uid.eq(uid)))
            .set(user::credit.eq(after))
            .execute(conn)?;
        Ok(CreditChanged { before, after })
    })
}

/// Disables the account (`Some(when)`, UTC) or enables it (`None`); answers whether this
/// changed it (`false`: it already was so, and keeps its time). [`Error::UserNotFound`] when
/// there is no such user.
pub fn set_user_disabled(
    conn: &mut DbConnection,
    uid: UserId,
    disabled: Option<NaiveDateTime>,
) -> Result<bool, Error> {
    let of_user = user::table.filter(user::uid.eq(uid));
    let n_rows = match disabled {
        Some(at) => diesel::update(of_user.filter(user::disabled.is_null()))
            .set(user::disabled.eq(at))
            .execute(conn)?,
        None => diesel::update(of_user.filter(user::disabled.is_not_null()))
            .set(user::disabled.eq(None::<NaiveDateTime>))
            .execute(conn)?,
    };
    if n_rows == 1 {
        return Ok(true);
    }
    match find_user(conn, uid)? {
        Some(_) => Ok(false),
        None => Err(Error::UserNotFound(uid)),
    }
}

/// Replaces the user's password by `hash`, an argon2 PHC string made beforehand
/// ([`password::hash_password`]), so that no transaction waits on argon2; a 1.2 MD5 digest or
/// anything else is [`Error::UnknownPasswordHash`]. [`Error::UserNotFound`] when there is no
/// such user.
pub fn set_password_hash(
    conn: &mut DbConnection,
    uid: UserId,
    hash: &SecretString,
) -> Result<(), Error> {
    let hash = hash.expose_secret();
    if !password::is_known_hash(hash) || password::is_legacy_md5(hash) {
        return Err(Error::UnknownPasswordHash);
    }
    let n_rows = diesel::update(user::table.filter(user::uid.eq(uid)))
        .set(user::password.eq(hash))
        .execute(conn)?;
    if n_rows == 0 {
        return Err(Error::UserNotFound(uid));
    }
    Ok(())
}

/// What [`delete_user`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeletedUser {
    /// The account as it was.
    pub user: User,
    /// How many (empty) applications went with it.
    pub n_applications: i64,
}

/// Deletes the user and their applications, in one transaction, only if they have no
/// service: a service row is a VM (or one being created or terminated) that the accounting
/// must keep, so a user with any is [`Error::UserHasServices`] and nothing changes.
///
/// The user's row and then their applications' rows are locked first (on PostgreSQL; SQLite's
/// `BEGIN IMMEDIATE` holds the write lock): a start locks the same rows, in the same order,
/// before it inserts its service, so a start either commits before the check sees its service,
/// or finds the user gone. Ids are never reused: certificates issued to the user name nobody
/// afterwards.
pub fn delete_user(conn: &mut DbConnection, uid: UserId) -> Result<DeletedUser, Error> {
    write_transaction(conn, |conn| {
        let user = lock_user_row(conn, uid)?.ok_or(Error::UserNotFound(uid))?;
        let applications = application::table
            .filter(application::user_id.eq(uid))
            .select(application::aid);
        let _locked: Vec<crate::model::AppId> = match conn {
            #[cfg(feature = "sqlite")]
            DbConnection::Sqlite(c) => applications.load(c),
            #[cfg(feature = "postgres")]
            DbConnection::Pg(c) => applications.for_update().load(c),
        }?;
        let services: Vec<ServiceId> = service::table
            .filter(service::user_id.eq(uid))
            .order(service::sid.asc())
            .select(service::sid)
            .load(conn)?;
        if !services.is_empty() {
            return Err(Error::UserHasServices { uid, services });
        }
        let n_applications =
            diesel::delete(application::table.filter(application::user_id.eq(uid)))
                .execute(conn)?;
        diesel::delete(user::table.filter(user::uid.eq(uid))).execute(conn)?;
        Ok(DeletedUser {
            user,
            n_applications: i64::try_from(n_applications).unwrap_or(i64::MAX),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{new_user, sqlite_store};
    use crate::store::{DEFAULT_APPLICATION_NAME, list_applications};

    fn n_users(conn: &mut DbConnection) -> i64 {
        user::table.count().get_result(conn).unwrap()
    }

    #[test]
    fn create_makes_default_application() {
        let (store, _dir) = sqlite_store();
        store
            .run_blocking(|conn| {
                let created = create_user(conn, &new_user("u1", 120))?;
                assert_eq!(created.username, "u1");
                assert_eq!(created.credit, Credit(120));
                assert!(created.created.is_some());
                let apps = list_applications(conn, created.uid)?;
                assert_eq!(apps.len(), 1);
                assert_eq!(apps[0].name.as_deref(), Some(DEFAULT_APPLICATION_NAME));
                assert_eq!(find_user(conn, created.uid)?, Some(created.clone()));
                assert_eq!(find_user_by_username(conn, "u1")?, Some(created));
                assert_eq!(find_user_by_username(conn, "U1")?, None);
                Ok::<_, Error>(())
            })
            .unwrap();
    }

    #[test]
    fn duplicates_and_reserved_names_change_nothing() {
        let (store, _dir) = sqlite_store();
        store
            .run_blocking(|conn| {
                create_user(conn, &new_user("u1", 5))?;
                let mut same_name = new_user("u1", 5);
                same_name.email = Some("other@example.org".to_owned());
                let err = create_user(conn, &same_name).unwrap_err();
                assert!(
                    matches!(&err, Error::UsernameTaken(n) if n == "u1"),
                    "{err:?}"
                );
                let mut same_email = new_user("u2", 5);
                same_email.email = Some("u1@example.org".to_owned());
                let err = create_user(conn, &same_email).unwrap_err();
                assert!(
                    matches!(&err, Error::EmailTaken(e) if e == "u1@example.org"),
                    "{err:?}"
                );
                for reserved in ["CA", "ca", "Ca"] {
                    let err = create_user(conn, &new_user(reserved, 5)).unwrap_err();
                    assert!(matches!(err, Error::UsernameReserved(_)), "{err:?}");
                }
                let mut plaintext_as_hash = new_user("u4", 5);
                plaintext_as_hash.password = NewPassword::Hash("hunter2".into());
                let err = create_user(conn, &plaintext_as_hash).unwrap_err();
                assert!(matches!(err, Error::UnknownPasswordHash), "{err:?}");
                let err = create_user(conn, &new_user("u3", -1)).unwrap_err();
                assert!(matches!(err, Error::NegativeAmount(Credit(-1))), "{err:?}");
                assert_eq!(n_users(conn), 1);
                let n_apps: i64 = application::table.count().get_result(conn)?;
                assert_eq!(n_apps, 1);
                // Several users without e-mail are fine (NULLs are distinct).
                for name in ["n1", "n2"] {
                    let mut no_email = new_user(name, 0);
                    no_email.email = None;
                    create_user(conn, &no_email)?;
                }
                assert_eq!(n_users(conn), 3);
                Ok::<_, Error>(())
            })
            .unwrap();
    }

    #[test]
    fn unique_violation_maps_to_the_same_errors() {
        // A concurrent insert that wins the race is seen as a constraint violation:
        // simulate it by inserting behind create_user's back, then check the mapping.
        let (store, _dir) = sqlite_store();
        store
            .run_blocking(|conn| {
                create_user(conn, &new_user("u1", 5))?;
                let err = diesel::insert_into(user::table)
                    .values((user::username.eq("u1"), user::credit.eq(Credit(0))))
                    .execute(conn)
                    .unwrap_err();
                let DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) = &err
                else {
                    panic!("{err:?}")
                };
                assert!(!crate::store::violation_mentions(info.as_ref(), "email"));
                let err = diesel::insert_into(user::table)
                    .values((
                        user::username.eq("u2"),
                        user::email.eq("u1@example.org"),
                        user::credit.eq(Credit(0)),
                    ))
                    .execute(conn)
                    .unwrap_err();
                let DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) = &err
                else {
                    panic!("{err:?}")
                };
                assert!(crate::store::violation_mentions(info.as_ref(), "email"));
                Ok::<_, Error>(())
            })
            .unwrap();
    }

    #[test]
    fn login_checks_and_upgrades() {
        let (store, _dir) = sqlite_store();
        store
            .run_blocking(|conn| {
                let mut plain = new_user("argon", 1);
                plain.password = NewPassword::Plaintext("pw".into());
                let created = create_user(conn, &plain)?;
                assert_eq!(login(conn, "argon", "pw")?, Some(created));
                assert_eq!(login(conn, "argon", "PW")?, None);
                assert_eq!(login(conn, "nobody", "pw")?, None);

                create_user(conn, &new_user("legacy", 1))?;
                Ok::<_, Error>(())
            })
            .unwrap();
        let hash_of = |name: &'static str| {
            store
                .run_blocking(move |conn| {
                    user::table
                        .filter(user::username.eq(name))
                        .select(user::password)
                        .first::<Option<String>>(conn)
                        .map_err(Error::from)
                })
                .unwrap()
                .unwrap()
        };
        assert_eq!(hash_of("legacy"), password::md5_hex("secret"));
        let wrong = store
            .run_blocking(|conn| login(conn, "legacy", "wrong"))
            .unwrap();
        assert_eq!(wrong, None);
        assert_eq!(
            hash_of("legacy"),
            password::md5_hex("secret"),
            "a failed login changes nothing"
        );
        let ok = store
            .run_blocking(|conn| login(conn, "legacy", "secret"))
            .unwrap();
        assert!(ok.is_some());
        let upgraded = hash_of("legacy");
        assert!(upgraded.starts_with("$argon2id$"), "{upgraded}");
        assert!(
            store
                .run_blocking(|conn| login(conn, "legacy", "secret"))
                .unwrap()
                .is_some()
        );
        assert_eq!(
            hash_of("legacy"),
            upgraded,
            "an argon2 hash is not rehashed"
        );
        assert_eq!(
            store
                .run_blocking(|conn| login(conn, "legacy", "wrong"))
                .unwrap(),
            None
        );
    }

    #[test]
    fn credit_is_never_negative() {
        let (store, _dir) = sqlite_store();
        store
            .run_blocking(|conn| {
                let uid = create_user(conn, &new_user("u1", 3))?.uid;
                let credit =
                    |conn: &mut DbConnection| find_user(conn, uid).unwrap().unwrap().credit;
                assert!(decrement_credit(conn, uid, Credit(0))?);
                assert!(decrement_credit(conn, uid, Credit(2))?);
                assert_eq!(credit(conn), Credit(1));
                assert!(
                    !decrement_credit(conn, uid, Credit(2))?,
                    "would go below zero"
                );
                assert_eq!(credit(conn), Credit(1));
                assert!(decrement_credit(conn, uid, Credit(1))?);
                assert_eq!(credit(conn), Credit(0));
                assert!(!decrement_credit(conn, uid, Credit(1))?);
                let err = decrement_credit(conn, uid, Credit(-5)).unwrap_err();
                assert!(matches!(err, Error::NegativeAmount(Credit(-5))), "{err:?}");
                assert_eq!(credit(conn), Credit(0));
                assert!(
                    !decrement_credit(conn, UserId(999), Credit(0))?,
                    "unknown user"
                );

                assert!(add_credit(conn, uid, Credit(7))?);
                assert_eq!(credit(conn), Credit(7));
                assert!(
                    !add_credit(conn, uid, Credit(i64::MAX))?,
                    "overflow refused"
                );
                assert!(matches!(
                    add_credit(conn, uid, Credit(-1)),
                    Err(Error::NegativeAmount(_))
                ));
                assert!(!add_credit(conn, UserId(999), Credit(1))?);
                assert_eq!(credit(conn), Credit(7));
                Ok::<_, Error>(())
            })
            .unwrap();
    }
}
