//! The `application` table: a user's named groups of services.

use diesel::prelude::*;

use super::Error;
use super::conn::{DbConnection, on_backend, write_transaction};
use super::rows::ApplicationRow;
use super::schema::{application, service, user};
use crate::model::{AppId, Application, UserId};

/// Creates an application for a user; refuses a name the user already has
/// ([`Error::ApplicationNameTaken`]), as 1.2's `/createapp` did.
///
/// There is no unique index behind the check (1.2's `/renameapp` allowed
/// duplicates, so an adopted database may hold some): the check and the insert
/// share one transaction that serialises writers (SQLite) or locks the user's row
/// (PostgreSQL).
pub fn create_application(
    conn: &mut DbConnection,
    uid: UserId,
    name: &str,
) -> Result<Application, Error> {
    create_application_capped(conn, uid, name, None)
}

/// [`create_application`] refused with [`Error::LimitReached`] when the user already has
/// `max_applications` (counted under the same lock as the insert, so concurrent creations
/// cannot pass the cap together).
pub fn create_application_capped(
    conn: &mut DbConnection,
    uid: UserId,
    name: &str,
    max_applications: Option<u32>,
) -> Result<Application, Error> {
    write_transaction(conn, |conn| {
        lock_user(conn, uid)?;
        if let Some(max) = max_applications {
            let n_applications: i64 = application::table
                .filter(application::user_id.eq(uid))
                .count()
                .get_result(conn)?;
            if n_applications >= i64::from(max) {
                return Err(Error::LimitReached {
                    uid,
                    what: "applications",
                    max,
                });
            }
        }
        let n_same_name: i64 = application::table
            .filter(application::user_id.eq(uid))
            .filter(application::name.eq(name))
            .count()
            .get_result(conn)?;
        if n_same_name > 0 {
            return Err(Error::ApplicationNameTaken {
                uid,
                name: name.to_owned(),
            });
        }
        let row: ApplicationRow = diesel::insert_into(application::table)
            .values((application::name.eq(name), application::user_id.eq(uid)))
            .returning(application::all_columns)
            .get_result(conn)?;
        Ok(Application::from(row))
    })
}

/// Makes sure the user exists and, on PostgreSQL, locks their row until the
/// transaction ends, so that per-user checks (application names) are not raced by
/// another replica. SQLite's `BEGIN IMMEDIATE` already serialises writers.
pub(crate) fn lock_user(conn: &mut DbConnection, uid: UserId) -> Result<(), Error> {
    let found = match conn {
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(c) => user::table.find(uid).select(user::uid).first::<UserId>(c),
        #[cfg(feature = "postgres")]
        DbConnection::Pg(c) => user::table
            .find(uid)
            .select(user::uid)
            .for_update()
            .first::<UserId>(c),
    }
    .optional()?;
    match found {
        Some(_) => Ok(()),
        None => Err(Error::UserNotFound(uid)),
    }
}

/// The application `aid` if `uid` owns it; on PostgreSQL its row stays locked until
/// the transaction ends, so that a service insert (which takes the same lock) and
/// the application's deletion never interleave across replicas.
pub(crate) fn lock_application_owned(
    conn: &mut DbConnection,
    aid: AppId,
    uid: UserId,
) -> Result<Option<Application>, Error> {
    let owned = application::table
        .filter(application::aid.eq(aid))
        .filter(application::user_id.eq(uid))
        .select(application::all_columns);
    let row: Option<ApplicationRow> = match conn {
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(c) => owned.get_result(c),
        #[cfg(feature = "postgres")]
        DbConnection::Pg(c) => owned.for_update().get_result(c),
    }
    .optional()?;
    Ok(row.map(Application::from))
}

/// The user's applications, ascending `aid` (1.2's order).
pub fn list_applications(conn: &mut DbConnection, uid: UserId) -> Result<Vec<Application>, Error> {
    let rows: Vec<ApplicationRow> = on_backend!(conn, |c| application::table
        .filter(application::user_id.eq(uid))
        .order(application::aid.asc())
        .select(ApplicationRow::as_select())
        .load(c))?;
    Ok(rows.into_iter().map(Application::from).collect())
}

/// The user's applications, ascending `aid`, or `None` when there is no user `uid` or the
/// operator disabled them (the user rule refuses them as it refuses an unknown user). One
/// statement (the user left-joined with their applications): a listing checks its caller
/// and lists under one read lock of the database, which was a quarter of its CPU when
/// taken twice.
pub fn list_applications_of_user(
    conn: &mut DbConnection,
    uid: UserId,
) -> Result<Option<Vec<Application>>, Error> {
    let rows: Vec<(UserId, Option<ApplicationRow>)> = on_backend!(conn, |c| user::table
        .left_join(application::table)
        .filter(user::uid.eq(uid))
        .filter(user::disabled.is_null())
        .order(application::aid.asc())
        .select((user::uid, Option::<ApplicationRow>::as_select()))
        .load(c))?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        rows.into_iter()
            .filter_map(|(_, row)| row.map(Application::from))
            .collect(),
    ))
}

/// The application `aid` if `uid` owns it.
pub fn find_application_owned(
    conn: &mut DbConnection,
    aid: AppId,
    uid: UserId,
) -> Result<Option<Application>, Error> {
    let row = application::table
        .filter(application::aid.eq(aid))
        .filter(application::user_id.eq(uid))
        .select(ApplicationRow::as_select())
        .get_result(conn)
        .optional()?;
    Ok(row.map(Application::from))
}

/// The user's application with exactly this name (the lowest `aid` if there are
/// duplicates); used by manifests, which name their application.
pub fn find_application_by_name(
    conn: &mut DbConnection,
    uid: UserId,
    name: &str,
) -> Result<Option<Application>, Error> {
    let row = application::table
        .filter(application::user_id.eq(uid))
        .filter(application::name.eq(name))
        .order(application::aid.asc())
        .select(ApplicationRow::as_select())
        .first(conn)
        .optional()?;
    Ok(row.map(Application::from))
}

/// The user's default application: their one with the lowest `aid` (what `/start`
/// uses without `appid`). `None` once they deleted them all.
pub fn default_application(
    conn: &mut DbConnection,
    uid: UserId,
) -> Result<Option<Application>, Error> {
    let row = application::table
        .filter(application::user_id.eq(uid))
        .order(application::aid.asc())
        .select(ApplicationRow::as_select())
        .first(conn)
        .optional()?;
    Ok(row.map(Application::from))
}

/// Renames the application if `uid` owns it; answers whether it did. No duplicate
/// check, as 1.2's `/renameapp`.
pub fn rename_application_owned(
    conn: &mut DbConnection,
    aid: AppId,
    uid: UserId,
    name: &str,
) -> Result<bool, Error> {
    let n_rows = diesel::update(
        application::table
            .filter(application::aid.eq(aid))
            .filter(application::user_id.eq(uid)),
    )
    .set(application::name.eq(name))
    .execute(conn)?;
    Ok(n_rows == 1)
}

/// Deletes the application if `uid` owns it and it holds no service; answers
/// whether it did (`false`: missing or not owned).
///
/// A remaining service is [`Error::ApplicationNotEmpty`]: the caller deletes each
/// service after destroying its VM (as `/stop` does), then the application. Deleting
/// the service rows here instead would forget VMs whenever destroying one failed
/// afterwards; this way a row outlives its VM, never the reverse.
pub fn delete_application_owned(
    conn: &mut DbConnection,
    aid: AppId,
    uid: UserId,
) -> Result<bool, Error> {
    write_transaction(conn, |conn| {
        if lock_application_owned(conn, aid, uid)?.is_none() {
            return Ok(false);
        }
        let n_services: i64 = service::table
            .filter(service::application_id.eq(aid))
            .count()
            .get_result(conn)?;
        if n_services > 0 {
            return Err(Error::ApplicationNotEmpty { aid, n_services });
        }
        let n_rows =
            diesel::delete(application::table.filter(application::aid.eq(aid))).execute(conn)?;
        Ok(n_rows == 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServiceType;
    use crate::store::test_support::{new_user, sqlite_store};
    use crate::store::{NewService, create_user, delete_service, insert_service};

    #[test]
    fn create_list_rename_delete() {
        let (store, _dir) = sqlite_store();
        store
            .run_blocking(|conn| {
                let u1 = create_user(conn, &new_user("u1", 5))?.uid;
                let u2 = create_user(conn, &new_user("u2", 5))?.uid;
                let default = default_application(conn, u1)?.unwrap();
                let app = create_application(conn, u1, "web")?;
                assert_eq!(app.name.as_deref(), Some("web"));
                assert!(app.aid > default.aid);
                let err = create_application(conn, u1, "web").unwrap_err();
                assert!(
                    matches!(&err, Error::ApplicationNameTaken { uid, name } if *uid == u1 && name == "web"),
                    "{err:?}"
                );
                // Another user may use the same name.
                let other = create_application(conn, u2, "web")?;
                let err = create_application(conn, UserId(999), "x").unwrap_err();
                assert!(matches!(err, Error::UserNotFound(UserId(999))), "{err:?}");

                let listed = list_applications(conn, u1)?;
                assert_eq!(listed.iter().map(|a| a.aid).collect::<Vec<_>>(), vec![default.aid, app.aid]);
                assert_eq!(find_application_owned(conn, app.aid, u1)?, Some(app.clone()));
                assert_eq!(find_application_owned(conn, app.aid, u2)?, None);
                assert_eq!(find_application_by_name(conn, u1, "web")?, Some(app.clone()));
                assert_eq!(find_application_by_name(conn, u1, "nope")?, None);

                // Renaming allows duplicates, as 1.2's /renameapp did; lookups by
                // name then take the lowest aid.
                assert!(rename_application_owned(conn, default.aid, u1, "web")?);
                assert!(!rename_application_owned(conn, app.aid, u2, "stolen")?);
                assert_eq!(find_application_by_name(conn, u1, "web")?.map(|a| a.aid), Some(default.aid));

                // Deleting refuses while a service remains.
                let new = NewService { user_id: u1, application_id: app.aid, service_type: ServiceType::Php };
                let svc = insert_service(conn, &new, |_| Ok::<_, Error>(None))?;
                let err = delete_application_owned(conn, app.aid, u1).unwrap_err();
                assert!(matches!(err, Error::ApplicationNotEmpty { n_services: 1, .. }), "{err:?}");
                assert!(!delete_application_owned(conn, app.aid, u2)?, "not the owner");
                delete_service(conn, svc.sid)?;
                assert!(delete_application_owned(conn, app.aid, u1)?);
                assert!(!delete_application_owned(conn, app.aid, u1)?, "already gone");
                assert_eq!(find_application_owned(conn, other.aid, u2)?, Some(other.clone()));

                // The default application can go too; then there is none.
                assert!(delete_application_owned(conn, default.aid, u1)?);
                assert_eq!(default_application(conn, u1)?, None);
                // Ids are not reused.
                let again = create_application(conn, u1, "again")?;
                assert!(again.aid > app.aid && again.aid > other.aid);
                Ok::<_, Error>(())
            })
            .unwrap();
    }
}
