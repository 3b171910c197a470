//! Rows as diesel loads them, private to the store, and their mapping to model records.

use chrono::NaiveDateTime;
use diesel::{Insertable, Queryable, Selectable};

use super::schema::{application, issued_certificate, service, user};
use crate::model::{AppId, Application, Credit, ServiceId, User, UserId};

/// A `user` row, password hash included (it never leaves the store).
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = user)]
pub(crate) struct UserRow {
    pub(crate) uid: UserId,
    pub(crate) username: String,
    pub(crate) fname: Option<String>,
    pub(crate) lname: Option<String>,
    pub(crate) email: Option<String>,
    pub(crate) affiliation: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) created: Option<NaiveDateTime>,
    pub(crate) credit: Credit,
    pub(crate) disabled: Option<NaiveDateTime>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> User {
        User {
            uid: row.uid,
            username: row.username,
            fname: row.fname,
            lname: row.lname,
            email: row.email,
            affiliation: row.affiliation,
            credit: row.credit,
            created: row.created,
            disabled: row.disabled,
        }
    }
}

/// An `application` row.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = application)]
pub(crate) struct ApplicationRow {
    pub(crate) aid: AppId,
    pub(crate) name: Option<String>,
    pub(crate) user_id: UserId,
}

impl From<ApplicationRow> for Application {
    fn from(row: ApplicationRow) -> Application {
        Application {
            aid: row.aid,
            name: row.name,
            user_id: row.user_id,
        }
    }
}

/// A `service` row.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = service)]
pub(crate) struct ServiceRow {
    pub(crate) sid: ServiceId,
    pub(crate) name: Option<String>,
    pub(crate) service_type: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) created: Option<NaiveDateTime>,
    pub(crate) manager: Option<String>,
    pub(crate) vmid: Option<String>,
    pub(crate) cloud: Option<String>,
    pub(crate) subnet: Option<String>,
    pub(crate) user_id: UserId,
    pub(crate) application_id: AppId,
    pub(crate) lifecycle: String,
}

impl From<ServiceRow> for crate::model::Service {
    fn from(row: ServiceRow) -> crate::model::Service {
        crate::model::Service {
            sid: row.sid,
            name: row.name,
            service_type: row.service_type,
            state: row.state,
            created: row.created,
            manager: row.manager,
            vmid: row.vmid,
            cloud: row.cloud,
            subnet: row.subnet,
            user_id: row.user_id,
            application_id: row.application_id,
            // The column's CHECK allows nothing else; an unknown text (a newer schema) is
            // read as the state that protects its VM.
            lifecycle: crate::model::Lifecycle::parse(&row.lifecycle)
                .unwrap_or(crate::model::Lifecycle::Running),
        }
    }
}

/// An `issued_certificate` row.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = issued_certificate)]
pub(crate) struct CertificateRow {
    pub(crate) serial: String,
    pub(crate) role: String,
    pub(crate) uid: Option<UserId>,
    pub(crate) sid: Option<ServiceId>,
    pub(crate) not_before: NaiveDateTime,
    pub(crate) not_after: NaiveDateTime,
    pub(crate) created: NaiveDateTime,
}

/// The current UTC time to the microsecond (every time the director writes; 1.2 wrote local
/// time, which a daylight-saving change makes ambiguous).
pub(crate) fn now_utc() -> NaiveDateTime {
    truncate_to_micros(chrono::Utc::now().naive_utc())
}

pub(crate) fn truncate_to_micros(t: NaiveDateTime) -> NaiveDateTime {
    use chrono::Timelike;
    let micros = t.nanosecond() / 1_000 * 1_000;
    t.with_nanosecond(micros).unwrap_or(t)
}

/// An `agent_vm` row.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::agent_vm)]
pub(crate) struct AgentRow {
    pub(crate) id: i32,
    pub(crate) sid: ServiceId,
    pub(crate) uid: UserId,
    pub(crate) cloud: String,
    pub(crate) name: String,
    pub(crate) vmid: Option<String>,
    pub(crate) address: Option<String>,
    pub(crate) lifecycle: String,
    pub(crate) created: NaiveDateTime,
}

impl From<AgentRow> for super::AgentVm {
    fn from(row: AgentRow) -> super::AgentVm {
        super::AgentVm {
            id: row.id,
            sid: row.sid,
            uid: row.uid,
            cloud: row.cloud,
            name: row.name,
            vmid: row.vmid,
            address: row.address,
            // The column's CHECK allows nothing else; an unknown text (a newer schema) is
            // read as the state that protects its VM.
            lifecycle: crate::model::Lifecycle::parse(&row.lifecycle)
                .unwrap_or(crate::model::Lifecycle::Running),
            created: row.created,
        }
    }
}

/// A `service_cloud_key` row.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::service_cloud_key)]
pub(crate) struct CloudKeyRow {
    pub(crate) sid: ServiceId,
    pub(crate) key_hash: String,
}

/// An `abandoned_vm` row.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::abandoned_vm)]
pub(crate) struct AbandonedRow {
    pub(crate) cloud: String,
    pub(crate) vmid: String,
    pub(crate) sid: ServiceId,
    pub(crate) noted: NaiveDateTime,
}
