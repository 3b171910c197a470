//! The `service` table: rows inserted before their manager VM exists, completed
//! once it has an address, and deleted after it is destroyed.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::Error;
use super::applications::{lock_application_owned, lock_user};
use super::conn::{DbConnection, on_backend, write_transaction};
use super::rows::{ServiceRow, truncate_to_micros};
use super::schema::{abandoned_vm, service, user};
use crate::model::{AppId, Credit, Lifecycle, Service, ServiceId, ServiceType, UserId};

/// The state column's only value: the director never changes it (the real state
/// lives in the manager).
pub const INITIAL_STATE: &str = "INIT";

/// A service to insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewService {
    /// Owner.
    pub user_id: UserId,
    /// Containing application; must belong to `user_id`.
    pub application_id: AppId,
    /// The type; the row's name becomes `New <type> service`.
    pub service_type: ServiceType,
}

impl NewService {
    /// A service of `service_type` for `user_id` in their application `application_id`.
    pub fn new(user_id: UserId, application_id: AppId, service_type: ServiceType) -> Self {
        NewService {
            user_id,
            application_id,
            service_type,
        }
    }

    setters! {
        user_id: UserId,
        application_id: AppId,
        service_type: ServiceType,
    }
}

/// Where a started service's manager VM is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManagerVm {
    /// The VM's public IP address, as text.
    pub manager: String,
    /// The cloud's id of the VM.
    pub vmid: String,
    /// The cloud's name (`iaas` for the default cloud).
    pub cloud: String,
}

impl ManagerVm {
    /// The VM `vmid` of cloud `cloud` (`iaas` for the default), at `manager`.
    pub fn new(
        manager: impl Into<String>,
        vmid: impl Into<String>,
        cloud: impl Into<String>,
    ) -> Self {
        ManagerVm {
            manager: manager.into(),
            vmid: vmid.into(),
            cloud: cloud.into(),
        }
    }
}

/// Inserts a service row (state `INIT`, no VM yet) with a VPN subnet chosen in the
/// same transaction.
///
/// `choose_subnet` gets the subnets already recorded in the application and
/// answers the new service's (or `None`: no VPN). The application's row is locked
/// (SQLite: the write lock; PostgreSQL: the row) while it runs, so two concurrent
/// starts see each other's choices; the unique `(application_id, subnet)`
/// constraint is the last line of defence ([`Error::SubnetTaken`]). An error of
/// `choose_subnet` rolls back and is returned as it is.
///
/// [`Error::ApplicationNotFound`] when the application does not exist or does not
/// belong to the user.
pub fn insert_service<E, F>(
    conn: &mut DbConnection,
    new: &NewService,
    choose_subnet: F,
) -> Result<Service, E>
where
    E: From<Error>,
    F: FnOnce(&[String]) -> Result<Option<String>, E>,
{
    insert_service_capped(conn, new, None, choose_subnet)
}

/// [`insert_service`] refused with [`Error::LimitReached`] when the user already has
/// `max_services` services, in any application (counted with the user's row locked, so
/// concurrent starts cannot pass the cap together).
pub fn insert_service_capped<E, F>(
    conn: &mut DbConnection,
    new: &NewService,
    max_services: Option<u32>,
    choose_subnet: F,
) -> Result<Service, E>
where
    E: From<Error>,
    F: FnOnce(&[String]) -> Result<Option<String>, E>,
{
    insert_service_at(conn, new, max_services, chrono::Utc::now(), choose_subnet)
}

/// [`insert_service_capped`] with the row's `created` time given (UTC), as the director's
/// `Clock` (`director::Clock`) reads it. The row starts [`Lifecycle::Starting`].
pub fn insert_service_at<E, F>(
    conn: &mut DbConnection,
    new: &NewService,
    max_services: Option<u32>,
    created: chrono::DateTime<chrono::Utc>,
    choose_subnet: F,
) -> Result<Service, E>
where
    E: From<Error>,
    F: FnOnce(&[String]) -> Result<Option<String>, E>,
{
    let created = truncate_to_micros(created.naive_utc());
    write_transaction(conn, |conn| {
        if let Some(max) = max_services {
            lock_user(conn, new.user_id)?;
            let n_services: i64 = service::table
                .filter(service::user_id.eq(new.user_id))
                .count()
                .get_result(conn)
                .map_err(Error::from)?;
            if n_services >= i64::from(max) {
                return Err(Error::LimitReached {
                    uid: new.user_id,
                    what: "services",
                    max,
                }
                .into());
            }
        }
        if lock_application_owned(conn, new.application_id, new.user_id)?.is_none() {
            return Err(Error::ApplicationNotFound(new.application_id).into());
        }
        let taken: Vec<String> = service::table
            .filter(service::application_id.eq(new.application_id))
            .filter(service::subnet.is_not_null())
            .order(service::sid.asc())
            .select(service::subnet.assume_not_null())
            .load(conn)
            .map_err(Error::from)?;
        let subnet = choose_subnet(&taken)?;
        let inserted = diesel::insert_into(service::table)
            .values((
                service::name.eq(format!("New {} service", new.service_type)),
                service::service_type.eq(new.service_type.as_str()),
                service::state.eq(INITIAL_STATE),
                service::created.eq(created),
                service::lifecycle.eq(Lifecycle::Starting.as_str()),
                service::subnet.eq(&subnet),
                service::user_id.eq(new.user_id),
                service::application_id.eq(new.application_id),
            ))
            .returning(service::all_columns)
            .get_result::<ServiceRow>(conn);
        match inserted {
            Ok(row) => Ok(Service::from(row)),
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                Err(Error::SubnetTaken {
                    application_id: new.application_id,
                    subnet: subnet.unwrap_or_default(),
                }
                .into())
            }
            Err(other) => Err(Error::from(other).into()),
        }
    })
}

/// Records the manager VM of a service being started and makes it [`Lifecycle::Running`];
/// answers the completed row. `None` if the row is no longer [`Lifecycle::Starting`] (a stop
/// or reconciliation claimed it while the VM booted) or is gone: the caller must terminate
/// its VM ([`record_abandoned_vm`] first, so that the VM stays known).
///
/// Checked statements in a transaction whose commit is checked: a write that did not reach the
/// database (disk full, read-only) is an error, never a reported success.
pub fn complete_service(
    conn: &mut DbConnection,
    sid: ServiceId,
    vm: &ManagerVm,
) -> Result<Option<Service>, Error> {
    write_transaction(conn, |conn| {
        // Only a row still starting completes: a row a stop or reconciliation claimed (or
        // deleted) meanwhile makes the start terminate its own VM.
        let n_rows = diesel::update(
            service::table
                .filter(service::sid.eq(sid))
                .filter(service::lifecycle.eq(Lifecycle::Starting.as_str())),
        )
        .set((
            service::manager.eq(&vm.manager),
            service::vmid.eq(&vm.vmid),
            service::cloud.eq(&vm.cloud),
            service::lifecycle.eq(Lifecycle::Running.as_str()),
        ))
        .execute(conn)?;
        if n_rows == 0 {
            return Ok(None);
        }
        find_service(conn, sid)
    })
}

/// The service with this id, whoever owns it (manager routes name it by certificate).
pub fn find_service(conn: &mut DbConnection, sid: ServiceId) -> Result<Option<Service>, Error> {
    let row = service::table
        .find(sid)
        .select(ServiceRow::as_select())
        .get_result(conn)
        .optional()?;
    Ok(row.map(Service::from))
}

/// The service `sid` if `uid` owns it.
pub fn find_service_owned(
    conn: &mut DbConnection,
    sid: ServiceId,
    uid: UserId,
) -> Result<Option<Service>, Error> {
    let row = on_backend!(conn, |c| service::table
        .filter(service::sid.eq(sid))
        .filter(service::user_id.eq(uid))
        .select(ServiceRow::as_select())
        .get_result(c)
        .optional())?;
    Ok(row.map(Service::from))
}

/// All the user's services across applications, ascending `sid` (1.2's order),
/// including those whose VM is still being created.
pub fn list_services_for_user(conn: &mut DbConnection, uid: UserId) -> Result<Vec<Service>, Error> {
    let rows: Vec<ServiceRow> = on_backend!(conn, |c| service::table
        .filter(service::user_id.eq(uid))
        .order(service::sid.asc())
        .select(ServiceRow::as_select())
        .load(c))?;
    Ok(rows.into_iter().map(Service::from).collect())
}

/// The user's services across applications, ascending `sid`, or `None` when there is no
/// user `uid` or the operator disabled them: one statement, as [`list_applications_of_user`](super::list_applications_of_user).
pub fn list_services_of_user(
    conn: &mut DbConnection,
    uid: UserId,
) -> Result<Option<Vec<Service>>, Error> {
    let rows: Vec<(UserId, Option<ServiceRow>)> = on_backend!(conn, |c| user::table
        .left_join(service::table.on(service::user_id.eq(user::uid)))
        .filter(user::uid.eq(uid))
        .filter(user::disabled.is_null())
        .order(service::sid.asc())
        .select((user::uid, Option::<ServiceRow>::as_select()))
        .load(c))?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        rows.into_iter()
            .filter_map(|(_, row)| row.map(Service::from))
            .collect(),
    ))
}

/// The services of application `aid` if `uid` owns them, ascending `sid`; empty for
/// an application that is missing or someone else's (1.2 listed any application's
/// services to anyone).
pub fn list_services_for_application_owned(
    conn: &mut DbConnection,
    aid: AppId,
    uid: UserId,
) -> Result<Vec<Service>, Error> {
    // user_id always equals the application's owner (set together at insert,
    // checked there), so filtering on both is the ownership check.
    let rows = service::table
        .filter(service::application_id.eq(aid))
        .filter(service::user_id.eq(uid))
        .order(service::sid.asc())
        .select(ServiceRow::as_select())
        .load(conn)?;
    Ok(rows.into_iter().map(Service::from).collect())
}

/// Renames the service if `uid` owns it; answers whether it did.
pub fn rename_service_owned(
    conn: &mut DbConnection,
    sid: ServiceId,
    uid: UserId,
    name: &str,
) -> Result<bool, Error> {
    let n_rows = diesel::update(
        service::table
            .filter(service::sid.eq(sid))
            .filter(service::user_id.eq(uid)),
    )
    .set(service::name.eq(name))
    .execute(conn)?;
    Ok(n_rows == 1)
}

/// Deletes the service row and answers it (`None` if it was already gone). In a transaction
/// whose commit is checked. Prefer [`delete_service_if_vm`]: deleting a row whose VM was
/// recorded after the caller last read it forgets a running VM.
pub fn delete_service(conn: &mut DbConnection, sid: ServiceId) -> Result<Option<Service>, Error> {
    write_transaction(conn, |conn| {
        let Some(row) = find_service(conn, sid)? else {
            return Ok(None);
        };
        diesel::delete(service::table.find(sid)).execute(conn)?;
        Ok(Some(row))
    })
}

/// What [`delete_service_if_vm`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConditionalDelete {
    /// The row held the VM the caller expected and is deleted.
    Deleted(Service),
    /// The row records another VM than the caller expected (a start completed meanwhile):
    /// nothing was deleted; here is the row as it is now.
    Changed(Service),
    /// There is no such row (already deleted).
    Gone,
}

/// Deletes the service row only if it still records `expected_vmid` (`None`: no VM yet): the
/// row goes only together with the knowledge of its VM, so a start completing concurrently
/// (its `complete_service` then finds no row and terminates its VM) or a stop racing another
/// can never leave a VM without a row.
pub fn delete_service_if_vm(
    conn: &mut DbConnection,
    sid: ServiceId,
    expected_vmid: Option<&str>,
) -> Result<ConditionalDelete, Error> {
    write_transaction(conn, |conn| {
        let Some(row) = find_service(conn, sid)? else {
            return Ok(ConditionalDelete::Gone);
        };
        // The condition is in the DELETE itself, so that a completion committed by another
        // connection between the read and the delete (PostgreSQL's read committed) is seen.
        let target = service::table.filter(service::sid.eq(sid));
        let n_rows = match expected_vmid {
            Some(vmid) => diesel::delete(target.filter(service::vmid.eq(vmid))).execute(conn)?,
            None => diesel::delete(target.filter(service::vmid.is_null())).execute(conn)?,
        };
        if n_rows == 1 {
            return Ok(ConditionalDelete::Deleted(row));
        }
        Ok(match find_service(conn, sid)? {
            Some(now) => ConditionalDelete::Changed(now),
            None => ConditionalDelete::Gone,
        })
    })
}

/// Undoes a start that did not finish: deletes the row if it still has no VM and refunds
/// `refund` to its owner, in one transaction. Idempotent: a second call (or a concurrent
/// one from another replica) finds nothing and refunds nothing. Answers whether it undid.
pub fn forget_incomplete_service(
    conn: &mut DbConnection,
    sid: ServiceId,
    refund: crate::model::Credit,
) -> Result<bool, Error> {
    write_transaction(conn, |conn| {
        let Some(row) = find_service(conn, sid)? else {
            return Ok(false);
        };
        let n_rows = diesel::delete(
            service::table
                .filter(service::sid.eq(sid))
                .filter(service::vmid.is_null())
                .filter(
                    service::lifecycle
                        .eq_any([Lifecycle::Starting.as_str(), Lifecycle::Undoing.as_str()]),
                ),
        )
        .execute(conn)?;
        if n_rows == 1 {
            super::users::add_credit(conn, row.user_id, refund)?;
        }
        Ok(n_rows == 1)
    })
}

/// Moves service `sid` from lifecycle `from` to `to` in one conditional UPDATE: answers the row
/// as it is now if this call made the change, `None` if the row is gone or was not in `from`
/// (another actor owns it). The one way a stop, an undo or reconciliation claims a row.
pub fn claim_service(
    conn: &mut DbConnection,
    sid: ServiceId,
    from: Lifecycle,
    to: Lifecycle,
) -> Result<Option<Service>, Error> {
    write_transaction(conn, |conn| {
        let n_rows = diesel::update(
            service::table
                .filter(service::sid.eq(sid))
                .filter(service::lifecycle.eq(from.as_str())),
        )
        .set(service::lifecycle.eq(to.as_str()))
        .execute(conn)?;
        if n_rows == 0 {
            return Ok(None);
        }
        find_service(conn, sid)
    })
}

/// Records in a claimed row ([`Lifecycle::Undoing`] or [`Lifecycle::Stopping`], no VM recorded
/// yet) the VM a start created after losing its row to the claim, so that the VM stays known
/// until it is confirmed gone. `false` when the row is gone, not claimed or records a VM.
pub fn record_abandoned_vm(
    conn: &mut DbConnection,
    sid: ServiceId,
    vm: &ManagerVm,
) -> Result<bool, Error> {
    write_transaction(conn, |conn| {
        let n_rows = diesel::update(
            service::table
                .filter(service::sid.eq(sid))
                .filter(service::vmid.is_null())
                .filter(
                    service::lifecycle
                        .eq_any([Lifecycle::Undoing.as_str(), Lifecycle::Stopping.as_str()]),
                ),
        )
        .set((service::vmid.eq(&vm.vmid), service::cloud.eq(&vm.cloud)))
        .execute(conn)?;
        Ok(n_rows == 1)
    })
}

/// Deletes a claimed row whose VMs the clouds confirmed gone: only if it is still in
/// `lifecycle` and records `expected_vmid` (`None`: none), so a VM recorded meanwhile keeps
/// it. A [`Lifecycle::Undoing`] row's start never completed: its owner gets `refund` back in
/// the same transaction, and its credential for the managers' cloud goes with it. A row with
/// agent rows left is kept. Answers the deleted row; `None` when nothing matched (gone
/// already, changed, or agents left: the caller's next pass sees it as it is).
pub fn forget_service(
    conn: &mut DbConnection,
    sid: ServiceId,
    lifecycle: Lifecycle,
    expected_vmid: Option<&str>,
    refund: Credit,
) -> Result<Option<Service>, Error> {
    write_transaction(conn, |conn| {
        let Some(row) = find_service(conn, sid)? else {
            return Ok(None);
        };
        // Its agents go first: a row with agent rows left keeps them known.
        if super::agents::count_agents_of_service(conn, sid)? > 0 {
            return Ok(None);
        }
        let target = service::table
            .filter(service::sid.eq(sid))
            .filter(service::lifecycle.eq(lifecycle.as_str()));
        let n_rows = match expected_vmid {
            Some(vmid) => diesel::delete(target.filter(service::vmid.eq(vmid))).execute(conn)?,
            None => diesel::delete(target.filter(service::vmid.is_null())).execute(conn)?,
        };
        if n_rows == 0 {
            return Ok(None);
        }
        if lifecycle == Lifecycle::Undoing {
            super::users::add_credit(conn, row.user_id, refund)?;
        }
        // The manager's credential for the managers' cloud goes with it.
        super::agents::delete_cloud_key(conn, sid)?;
        Ok(Some(row))
    })
}

/// A VM created for service `sid` after its row was gone ([`record_abandoned`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AbandonedVm {
    /// The cloud's name.
    pub cloud: String,
    /// The cloud's id of the VM.
    pub vmid: String,
    /// The service it was created for (its row is gone).
    pub sid: ServiceId,
    /// When it was recorded (UTC).
    pub noted: chrono::NaiveDateTime,
}

/// Records a VM a start created after its row was settled (deleted), so that it stays known
/// until the cloud confirms it terminated ([`forget_abandoned`]); recording it twice is one
/// record.
pub fn record_abandoned(
    conn: &mut DbConnection,
    sid: ServiceId,
    cloud: &str,
    vmid: &str,
    noted: chrono::DateTime<chrono::Utc>,
) -> Result<(), Error> {
    write_transaction(conn, |conn| {
        let known = abandoned_vm::table
            .filter(abandoned_vm::cloud.eq(cloud))
            .filter(abandoned_vm::vmid.eq(vmid))
            .count()
            .get_result::<i64>(conn)?;
        if known == 0 {
            diesel::insert_into(abandoned_vm::table)
                .values((
                    abandoned_vm::cloud.eq(cloud),
                    abandoned_vm::vmid.eq(vmid),
                    abandoned_vm::sid.eq(sid),
                    abandoned_vm::noted.eq(truncate_to_micros(noted.naive_utc())),
                ))
                .execute(conn)?;
        }
        Ok(())
    })
}

/// Every abandoned VM still to terminate, oldest first.
pub fn list_abandoned(conn: &mut DbConnection) -> Result<Vec<AbandonedVm>, Error> {
    let rows: Vec<(String, String, ServiceId, chrono::NaiveDateTime)> = abandoned_vm::table
        .order((abandoned_vm::noted.asc(), abandoned_vm::vmid.asc()))
        .select((
            abandoned_vm::cloud,
            abandoned_vm::vmid,
            abandoned_vm::sid,
            abandoned_vm::noted,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(cloud, vmid, sid, noted)| AbandonedVm {
            cloud,
            vmid,
            sid,
            noted,
        })
        .collect())
}

/// Forgets an abandoned VM the cloud confirmed terminated; `false` when it was not recorded.
pub fn forget_abandoned(conn: &mut DbConnection, cloud: &str, vmid: &str) -> Result<bool, Error> {
    let n_rows = diesel::delete(
        abandoned_vm::table
            .filter(abandoned_vm::cloud.eq(cloud))
            .filter(abandoned_vm::vmid.eq(vmid)),
    )
    .execute(conn)?;
    Ok(n_rows == 1)
}

/// Every row not [`Lifecycle::Running`] (starts in progress or interrupted, stops and undos
/// in progress or left unfinished by a cloud failure or a crash), ascending `sid`: what
/// reconciliation settles.
pub fn list_unsettled_services(conn: &mut DbConnection) -> Result<Vec<Service>, Error> {
    let rows = service::table
        .filter(service::lifecycle.ne(Lifecycle::Running.as_str()))
        .order(service::sid.asc())
        .select(ServiceRow::as_select())
        .load(conn)?;
    Ok(rows.into_iter().map(Service::from).collect())
}

/// The recorded VM (`None`: not yet) of each of `sids` that has a row, ascending `sid`: the
/// reaper asks before terminating a VM.
pub fn service_vms(
    conn: &mut DbConnection,
    sids: &[ServiceId],
) -> Result<Vec<(ServiceId, Option<String>)>, Error> {
    let mut found = Vec::new();
    // Bounded IN lists: SQLite allows 32766 parameters, PostgreSQL 65535.
    for chunk in sids.chunks(1000) {
        let rows: Vec<(ServiceId, Option<String>)> = service::table
            .filter(service::sid.eq_any(chunk))
            .select((service::sid, service::vmid))
            .load(conn)?;
        found.extend(rows);
    }
    found.sort_unstable_by_key(|(sid, _)| sid.0);
    Ok(found)
}

/// Every service of every user, ascending `sid` (diagnostics).
pub fn list_all_services(conn: &mut DbConnection) -> Result<Vec<Service>, Error> {
    let rows = service::table
        .order(service::sid.asc())
        .select(ServiceRow::as_select())
        .load(conn)?;
    Ok(rows.into_iter().map(Service::from).collect())
}

/// Services whose manager VM was never recorded (`manager` NULL), ascending `sid`:
/// starts in progress, or interrupted by a crash, for the start-up reconciliation.
pub fn list_incomplete_services(conn: &mut DbConnection) -> Result<Vec<Service>, Error> {
    let rows = service::table
        .filter(service::manager.is_null())
        .order(service::sid.asc())
        .select(ServiceRow::as_select())
        .load(conn)?;
    Ok(rows.into_iter().map(Service::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{new_user, sqlite_store};
    use crate::store::{create_user, default_application};

    /// A stand-in for the VPN planner: the first of a few subnets not yet taken.
    fn first_free(taken: &[String]) -> Result<Option<String>, Error> {
        let candidates = ["172.16.0.0/14", "172.20.0.0/14", "172.24.0.0/14"];
        Ok(candidates
            .iter()
            .find(|c| !taken.iter().any(|t| t == *c))
            .map(|c| c.to_string()))
    }

    #[test]
    fn insert_complete_list_rename_delete() {
        let (store, _dir) = sqlite_store();
        store
            .run_blocking(|conn| {
                let u1 = create_user(conn, &new_user("u1", 5))?.uid;
                let u2 = create_user(conn, &new_user("u2", 5))?.uid;
                let app = default_application(conn, u1)?.unwrap().aid;
                let new = NewService {
                    user_id: u1,
                    application_id: app,
                    service_type: ServiceType::Php,
                };
                let s1 = insert_service(conn, &new, first_free)?;
                assert_eq!(s1.name.as_deref(), Some("New php service"));
                assert_eq!(s1.service_type.as_deref(), Some("php"));
                assert_eq!(s1.state.as_deref(), Some(INITIAL_STATE));
                assert_eq!(s1.subnet.as_deref(), Some("172.16.0.0/14"));
                assert_eq!(
                    (
                        s1.manager.as_deref(),
                        s1.vmid.as_deref(),
                        s1.cloud.as_deref()
                    ),
                    (None, None, None)
                );
                assert_eq!((s1.user_id, s1.application_id), (u1, app));
                assert!(s1.created.is_some());

                let s2 = insert_service(conn, &new, |taken: &[String]| {
                    assert_eq!(taken, ["172.16.0.0/14".to_owned()]);
                    first_free(taken)
                })?;
                assert_eq!(s2.subnet.as_deref(), Some("172.20.0.0/14"));
                assert_eq!(
                    list_incomplete_services(conn)?,
                    vec![s1.clone(), s2.clone()]
                );

                let vm = ManagerVm {
                    manager: "203.0.113.7".into(),
                    vmid: "i-1".into(),
                    cloud: "iaas".into(),
                };
                let done = complete_service(conn, s1.sid, &vm)?.unwrap();
                assert_eq!(done.manager.as_deref(), Some("203.0.113.7"));
                assert_eq!(done.vmid.as_deref(), Some("i-1"));
                assert_eq!(done.cloud.as_deref(), Some("iaas"));
                assert_eq!(list_incomplete_services(conn)?, vec![s2.clone()]);
                assert_eq!(complete_service(conn, ServiceId(999), &vm)?, None);

                assert_eq!(find_service(conn, s1.sid)?, Some(done.clone()));
                assert_eq!(find_service_owned(conn, s1.sid, u1)?, Some(done.clone()));
                assert_eq!(find_service_owned(conn, s1.sid, u2)?, None);
                assert_eq!(
                    list_services_for_user(conn, u1)?,
                    vec![done.clone(), s2.clone()]
                );
                assert_eq!(list_services_for_user(conn, u2)?, vec![]);
                assert_eq!(list_services_for_application_owned(conn, app, u1)?.len(), 2);
                assert_eq!(
                    list_services_for_application_owned(conn, app, u2)?,
                    vec![],
                    "not the owner"
                );

                assert!(rename_service_owned(conn, s2.sid, u1, "db")?);
                assert!(!rename_service_owned(conn, s2.sid, u2, "stolen")?);
                assert_eq!(
                    find_service(conn, s2.sid)?.unwrap().name.as_deref(),
                    Some("db")
                );

                // A service of another user's application is refused.
                let err = insert_service(
                    conn,
                    &NewService {
                        user_id: u2,
                        application_id: app,
                        service_type: ServiceType::Java,
                    },
                    first_free,
                )
                .unwrap_err();
                assert!(
                    matches!(err, Error::ApplicationNotFound(a) if a == app),
                    "{err:?}"
                );

                // Deleting frees the subnet and never gives the id again.
                let deleted = delete_service(conn, s2.sid)?.unwrap();
                assert_eq!(deleted.name.as_deref(), Some("db"));
                assert_eq!(delete_service(conn, s2.sid)?, None);
                let s3 = insert_service(conn, &new, first_free)?;
                assert_eq!(s3.subnet.as_deref(), Some("172.20.0.0/14"));
                assert!(s3.sid > s2.sid);
                Ok::<_, Error>(())
            })
            .unwrap();
    }

    #[test]
    fn subnet_unique_and_chooser_errors() {
        #[derive(Debug)]
        enum Mine {
            Store(#[expect(dead_code, reason = "only matched by Debug")] Error),
            Planner,
        }
        impl From<Error> for Mine {
            fn from(err: Error) -> Mine {
                Mine::Store(err)
            }
        }
        let (store, _dir) = sqlite_store();
        store
            .run_blocking(|conn| {
                let u1 = create_user(conn, &new_user("u1", 5))?.uid;
                let app = default_application(conn, u1)?.unwrap().aid;
                let new = NewService { user_id: u1, application_id: app, service_type: ServiceType::Mysql };
                insert_service(conn, &new, first_free)?;
                // A chooser that ignores what is taken hits the constraint.
                let err = insert_service(conn, &new, |_| Ok::<_, Error>(Some("172.16.0.0/14".into())))
                    .unwrap_err();
                assert!(
                    matches!(&err, Error::SubnetTaken { application_id, subnet } if *application_id == app && subnet == "172.16.0.0/14"),
                    "{err:?}"
                );
                // Services without a subnet do not collide.
                insert_service(conn, &new, |_| Ok::<_, Error>(None))?;
                insert_service(conn, &new, |_| Ok::<_, Error>(None))?;
                // The chooser's own error comes back as it is and nothing is inserted.
                let err = insert_service(conn, &new, |_| Err(Mine::Planner)).unwrap_err();
                assert!(matches!(err, Mine::Planner), "{err:?}");
                assert_eq!(list_services_for_user(conn, u1)?.len(), 3);
                Ok::<_, Error>(())
            })
            .unwrap();
    }
}
