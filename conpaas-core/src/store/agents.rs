//! The `agent_vm` and `service_cloud_key` tables: the agent VMs managers start through the
//! director, with the lifecycle of the service rows (a row before its VM, completed once the VM
//! exists, claimed before it is terminated, deleted once the cloud confirms), and each
//! service's credential for the managers' cloud.

use diesel::prelude::*;

use super::Error;
use super::conn::{DbConnection, write_transaction};
use super::rows::{AgentRow, truncate_to_micros};
use super::schema::{agent_vm, service, service_cloud_key};
use crate::model::{Lifecycle, ServiceId, UserId};

/// One agent VM of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentVm {
    /// The director's id of the agent: the OCCI id its manager holds, never reused.
    pub id: i32,
    /// The service whose manager asked for it.
    pub sid: ServiceId,
    /// The service's owner.
    pub uid: UserId,
    /// The cloud's name (`iaas` for the default).
    pub cloud: String,
    /// The name the manager gave it.
    pub name: String,
    /// The cloud's id of the VM; `None` while it is being created.
    pub vmid: Option<String>,
    /// The VM's address; `None` while it is being created.
    pub address: Option<String>,
    /// Where the row is in the VM's lifecycle.
    pub lifecycle: Lifecycle,
    /// When the manager asked (UTC).
    pub created: chrono::NaiveDateTime,
}

/// Why [`insert_agent`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentRefusal {
    /// The service is gone, or not running (being started, stopped or undone).
    ServiceNotRunning,
    /// The service has `max` agents already.
    ServiceCap {
        /// The cap.
        max: u32,
    },
    /// The service's owner has `max` agents already, over all their services.
    UserCap {
        /// The cap.
        max: u32,
    },
}

/// Inserts the row of a new agent VM of service `sid` (lifecycle `starting`), in one
/// transaction that checks the service is running and the caps hold (`None`: no cap): a
/// service being stopped gets no new agent, so the stop's listing of its agents is complete.
pub fn insert_agent(
    conn: &mut DbConnection,
    sid: ServiceId,
    cloud: &str,
    name: &str,
    caps: (Option<u32>, Option<u32>),
    created: chrono::DateTime<chrono::Utc>,
) -> Result<Result<AgentVm, AgentRefusal>, Error> {
    let created = truncate_to_micros(created.naive_utc());
    write_transaction(conn, |conn| {
        let owner: Option<(UserId, String)> = service::table
            .find(sid)
            .select((service::user_id, service::lifecycle))
            .first(conn)
            .optional()?;
        let uid = match owner {
            Some((uid, lifecycle)) if lifecycle == Lifecycle::Running.as_str() => uid,
            _ => return Ok(Err(AgentRefusal::ServiceNotRunning)),
        };
        // The owner's row is the lock both caps are counted under (as services are).
        super::applications::lock_user(conn, uid)?;
        let (per_service, per_user) = caps;
        if let Some(max) = per_service {
            let n: i64 = agent_vm::table
                .filter(agent_vm::sid.eq(sid))
                .count()
                .get_result(conn)?;
            if n >= i64::from(max) {
                return Ok(Err(AgentRefusal::ServiceCap { max }));
            }
        }
        if let Some(max) = per_user {
            let n: i64 = agent_vm::table
                .filter(agent_vm::uid.eq(uid))
                .count()
                .get_result(conn)?;
            if n >= i64::from(max) {
                return Ok(Err(AgentRefusal::UserCap { max }));
            }
        }
        let row = diesel::insert_into(agent_vm::table)
            .values((
                agent_vm::sid.eq(sid),
                agent_vm::uid.eq(uid),
                agent_vm::cloud.eq(cloud),
                agent_vm::name.eq(name),
                agent_vm::lifecycle.eq(Lifecycle::Starting.as_str()),
                agent_vm::created.eq(created),
            ))
            .returning(agent_vm::all_columns)
            .get_result::<AgentRow>(conn)?;
        Ok(Ok(AgentVm::from(row)))
    })
}

/// Records the VM of an agent being created (`starting` → `running`); `None` when the row is
/// no longer `starting` (a DELETE, the service's stop or reconciliation claimed it while the VM
/// booted) or is gone: the caller must terminate its VM.
pub fn complete_agent(
    conn: &mut DbConnection,
    id: i32,
    vmid: &str,
    address: &str,
) -> Result<Option<AgentVm>, Error> {
    write_transaction(conn, |conn| {
        let n_rows = diesel::update(
            agent_vm::table
                .filter(agent_vm::id.eq(id))
                .filter(agent_vm::lifecycle.eq(Lifecycle::Starting.as_str())),
        )
        .set((
            agent_vm::vmid.eq(vmid),
            agent_vm::address.eq(address),
            agent_vm::lifecycle.eq(Lifecycle::Running.as_str()),
        ))
        .execute(conn)?;
        if n_rows == 0 {
            return Ok(None);
        }
        find_agent(conn, id)
    })
}

/// The agent with this id, whatever its service.
pub fn find_agent(conn: &mut DbConnection, id: i32) -> Result<Option<AgentVm>, Error> {
    Ok(agent_vm::table
        .find(id)
        .select(AgentRow::as_select())
        .first(conn)
        .optional()?
        .map(AgentVm::from))
}

/// The agents of service `sid`, ascending id.
pub fn list_agents_of_service(
    conn: &mut DbConnection,
    sid: ServiceId,
) -> Result<Vec<AgentVm>, Error> {
    Ok(agent_vm::table
        .filter(agent_vm::sid.eq(sid))
        .order(agent_vm::id.asc())
        .select(AgentRow::as_select())
        .load(conn)?
        .into_iter()
        .map(AgentVm::from)
        .collect())
}

/// The agents of all of user `uid`'s services, ascending id.
pub fn list_agents_of_user(conn: &mut DbConnection, uid: UserId) -> Result<Vec<AgentVm>, Error> {
    Ok(agent_vm::table
        .filter(agent_vm::uid.eq(uid))
        .order(agent_vm::id.asc())
        .select(AgentRow::as_select())
        .load(conn)?
        .into_iter()
        .map(AgentVm::from)
        .collect())
}

/// Every agent row, ascending id (the reaper's survey, metrics, diagnostics).
pub fn list_all_agents(conn: &mut DbConnection) -> Result<Vec<AgentVm>, Error> {
    Ok(agent_vm::table
        .order(agent_vm::id.asc())
        .select(AgentRow::as_select())
        .load(conn)?
        .into_iter()
        .map(AgentVm::from)
        .collect())
}

/// Every agent row not `running`, ascending id: what reconciliation settles.
pub fn list_unsettled_agents(conn: &mut DbConnection) -> Result<Vec<AgentVm>, Error> {
    Ok(agent_vm::table
        .filter(agent_vm::lifecycle.ne(Lifecycle::Running.as_str()))
        .order(agent_vm::id.asc())
        .select(AgentRow::as_select())
        .load(conn)?
        .into_iter()
        .map(AgentVm::from)
        .collect())
}

/// Moves agent `id` from `from` to `to` in one conditional UPDATE: the row as it is now if this
/// call made the change, `None` otherwise (gone, or another actor owns it).
pub fn claim_agent(
    conn: &mut DbConnection,
    id: i32,
    from: Lifecycle,
    to: Lifecycle,
) -> Result<Option<AgentVm>, Error> {
    write_transaction(conn, |conn| {
        let n_rows = diesel::update(
            agent_vm::table
                .filter(agent_vm::id.eq(id))
                .filter(agent_vm::lifecycle.eq(from.as_str())),
        )
        .set(agent_vm::lifecycle.eq(to.as_str()))
        .execute(conn)?;
        if n_rows == 0 {
            return Ok(None);
        }
        find_agent(conn, id)
    })
}

/// Records in a claimed agent row (no VM recorded yet) the VM a create made after losing the
/// row to the claim, so that it stays known until confirmed gone; `false` when the row is
/// gone, not claimed or records a VM.
pub fn record_claimed_agent_vm(
    conn: &mut DbConnection,
    id: i32,
    vmid: &str,
) -> Result<bool, Error> {
    let n_rows = diesel::update(
        agent_vm::table
            .filter(agent_vm::id.eq(id))
            .filter(agent_vm::vmid.is_null())
            .filter(
                agent_vm::lifecycle
                    .eq_any([Lifecycle::Undoing.as_str(), Lifecycle::Stopping.as_str()]),
            ),
    )
    .set(agent_vm::vmid.eq(vmid))
    .execute(conn)?;
    Ok(n_rows == 1)
}

/// Deletes a claimed agent row whose VM the cloud confirmed gone: only if it is still in
/// `lifecycle` and records `expected_vmid` (`None`: none). Answers the deleted row.
pub fn forget_agent(
    conn: &mut DbConnection,
    id: i32,
    lifecycle: Lifecycle,
    expected_vmid: Option<&str>,
) -> Result<Option<AgentVm>, Error> {
    write_transaction(conn, |conn| {
        let Some(row) = find_agent(conn, id)? else {
            return Ok(None);
        };
        let target = agent_vm::table
            .filter(agent_vm::id.eq(id))
            .filter(agent_vm::lifecycle.eq(lifecycle.as_str()));
        let n_rows = match expected_vmid {
            Some(vmid) => diesel::delete(target.filter(agent_vm::vmid.eq(vmid))).execute(conn)?,
            None => diesel::delete(target.filter(agent_vm::vmid.is_null())).execute(conn)?,
        };
        Ok((n_rows == 1).then_some(row))
    })
}

/// How many agent rows service `sid` still has.
pub fn count_agents_of_service(conn: &mut DbConnection, sid: ServiceId) -> Result<i64, Error> {
    Ok(agent_vm::table
        .filter(agent_vm::sid.eq(sid))
        .count()
        .get_result(conn)?)
}

/// Records service `sid`'s credential for the managers' cloud (replacing one recorded before:
/// a start retried after a crash renders a new one).
pub fn set_cloud_key(conn: &mut DbConnection, sid: ServiceId, key_hash: &str) -> Result<(), Error> {
    write_transaction(conn, |conn| {
        diesel::delete(service_cloud_key::table.filter(service_cloud_key::sid.eq(sid)))
            .execute(conn)?;
        diesel::insert_into(service_cloud_key::table)
            .values((
                service_cloud_key::sid.eq(sid),
                service_cloud_key::key_hash.eq(key_hash),
            ))
            .execute(conn)?;
        Ok(())
    })
}

/// The recorded credential hash of service `sid`, with the service's lifecycle; `None` when the
/// service or its credential is gone.
pub fn find_cloud_key(
    conn: &mut DbConnection,
    sid: ServiceId,
) -> Result<Option<(String, Lifecycle, UserId)>, Error> {
    let found: Option<(String, String, UserId)> = service_cloud_key::table
        .inner_join(service::table.on(service::sid.eq(service_cloud_key::sid)))
        .filter(service_cloud_key::sid.eq(sid))
        .select((
            service_cloud_key::key_hash,
            service::lifecycle,
            service::user_id,
        ))
        .first(conn)
        .optional()?;
    Ok(found.map(|(hash, lifecycle, uid)| {
        (
            hash,
            Lifecycle::parse(&lifecycle).unwrap_or(Lifecycle::Stopping),
            uid,
        )
    }))
}

/// Deletes service `sid`'s credential (part of the service row's deletion).
pub fn delete_cloud_key(conn: &mut DbConnection, sid: ServiceId) -> Result<(), Error> {
    diesel::delete(service_cloud_key::table.filter(service_cloud_key::sid.eq(sid)))
        .execute(conn)?;
    Ok(())
}

/// The service and recorded VM (`None`: not yet) of each of `ids` that has a row, ascending
/// id: the reaper asks before terminating an agent VM.
pub fn agent_vms(
    conn: &mut DbConnection,
    ids: &[i32],
) -> Result<Vec<(i32, ServiceId, Option<String>)>, Error> {
    let mut found = Vec::new();
    for chunk in ids.chunks(1000) {
        let rows: Vec<(i32, ServiceId, Option<String>)> = agent_vm::table
            .filter(agent_vm::id.eq_any(chunk))
            .select((agent_vm::id, agent_vm::sid, agent_vm::vmid))
            .load(conn)?;
        found.extend(rows);
    }
    found.sort_unstable_by_key(|(id, _, _)| *id);
    Ok(found)
}
