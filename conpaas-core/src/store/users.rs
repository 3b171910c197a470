//! The `user` table: accounts, logins (with the MD5-to-argon2id upgrade) and credit.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use secrecy::{ExposeSecret, SecretString};

use super::conn::{DbConnection, on_backend, write_transaction};
use super::names;
use super::password::{self, Verification};
use super::rows::{UserRow, now_utc};
use super::schema::{application, user};
use super::{DEFAULT_APPLICATION_NAME, Error};
use crate::model::{Credit, User, UserId};

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
/// it is accepted once only in its old form.
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
    match password::verify_password(stored.expose_secret(), password) {
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
