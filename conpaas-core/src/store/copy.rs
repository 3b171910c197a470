//! [`copy_database`]: an installation's database moved to another backend (SQLite to
//! PostgreSQL, to run several directors on one database), ids and id counters kept.

use diesel::prelude::*;

use super::audit::AuditEvent;
use super::conn::{DbConnection, on_backend, write_transaction};
use super::rows::{
    AbandonedRow, AgentRow, ApplicationRow, CertificateRow, CloudKeyRow, ServiceRow, UserRow,
};
use super::schema::{
    abandoned_vm, agent_vm, application, audit_event, issued_certificate, service,
    service_cloud_key, user,
};
use super::{Error, Store};

/// What [`copy_database`] copied: the same counts and credit were read back from the target
/// before its transaction committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyReport {
    /// Users.
    pub users: i64,
    /// Applications.
    pub applications: i64,
    /// Services.
    pub services: i64,
    /// Issued certificates.
    pub certificates: i64,
    /// Audit events.
    pub audit_events: i64,
    /// Agent VMs, abandoned VMs and services' credentials for the managers' cloud: the VMs
    /// and keys the director keeps track of beside the services' own.
    pub vm_records: i64,
    /// The sum of the users' credit.
    pub credit: i64,
}

impl std::fmt::Display for CopyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} user(s), {} application(s), {} service(s), {} issued certificate(s), {} audit \
             event(s), {} agent and VM record(s), {} credit in all",
            self.users,
            self.applications,
            self.services,
            self.certificates,
            self.audit_events,
            self.vm_records,
            self.credit
        )
    }
}

/// Rows per `INSERT`: under SQLite's and PostgreSQL's limits on bound parameters.
const CHUNK: usize = 500;

/// The tables with generated ids, and their id column.
const COUNTED: [(&str, &str); 5] = [
    ("user", "uid"),
    ("application", "aid"),
    ("service", "sid"),
    ("audit_event", "id"),
    ("agent_vm", "id"),
];

/// Copies every user, application, service, issued certificate, audit event, agent VM,
/// abandoned VM and service credential of `source` into `target`,
/// with their ids, in one transaction on `target`, and moves `target`'s id counters past the
/// highest id `source` ever gave (so that no id is reused, as on the source). `target` must be
/// migrated and empty ([`Error::TargetNotEmpty`] otherwise, nothing written); the counts and
/// the credit are read back from `target` before committing ([`Error::CopyMismatch`] rolls it
/// all back). Blocking; `source` is only read (stop the directors using it first, or rows
/// written meanwhile are not copied).
pub fn copy_database(source: &Store, target: &Store) -> Result<CopyReport, Error> {
    let (users, applications, services, certificates, events, vms, counters) = source
        .run_blocking(|conn| -> Result<_, Error> {
            let users: Vec<UserRow> = on_backend!(conn, |c| user::table
                .order(user::uid)
                .select(UserRow::as_select())
                .load(c))?;
            let applications: Vec<ApplicationRow> = on_backend!(conn, |c| application::table
                .order(application::aid)
                .select(ApplicationRow::as_select())
                .load(c))?;
            let services: Vec<ServiceRow> = on_backend!(conn, |c| service::table
                .order(service::sid)
                .select(ServiceRow::as_select())
                .load(c))?;
            let certificates: Vec<CertificateRow> =
                on_backend!(conn, |c| issued_certificate::table
                    .order(issued_certificate::serial)
                    .select(CertificateRow::as_select())
                    .load(c))?;
            let events: Vec<AuditEvent> = on_backend!(conn, |c| audit_event::table
                .order(audit_event::id)
                .select(AuditEvent::as_select())
                .load(c))?;
            let agents: Vec<AgentRow> = on_backend!(conn, |c| agent_vm::table
                .order(agent_vm::id)
                .select(AgentRow::as_select())
                .load(c))?;
            let keys: Vec<CloudKeyRow> = on_backend!(conn, |c| service_cloud_key::table
                .order(service_cloud_key::sid)
                .select(CloudKeyRow::as_select())
                .load(c))?;
            let abandoned: Vec<AbandonedRow> = on_backend!(conn, |c| abandoned_vm::table
                .order((abandoned_vm::cloud, abandoned_vm::vmid))
                .select(AbandonedRow::as_select())
                .load(c))?;
            let mut counters = Vec::new();
            for (table, column) in COUNTED {
                counters.push(id_counter(conn, table, column)?);
            }
            Ok((
                users,
                applications,
                services,
                certificates,
                events,
                (agents, keys, abandoned),
                counters,
            ))
        })?;
    let expected = CopyReport {
        users: count(users.len()),
        applications: count(applications.len()),
        services: count(services.len()),
        certificates: count(certificates.len()),
        audit_events: count(events.len()),
        vm_records: count(vms.0.len() + vms.1.len() + vms.2.len()),
        credit: users.iter().map(|row| row.credit.0).sum(),
    };
    target.run_blocking(|conn| {
        write_transaction(conn, |conn| {
            let found = report(conn)?;
            if found != CopyReport::default() {
                return Err(Error::TargetNotEmpty { found });
            }
            for rows in users.chunks(CHUNK) {
                on_backend!(conn, |c| diesel::insert_into(user::table)
                    .values(rows)
                    .execute(c))?;
            }
            for rows in applications.chunks(CHUNK) {
                on_backend!(conn, |c| diesel::insert_into(application::table)
                    .values(rows)
                    .execute(c))?;
            }
            for rows in services.chunks(CHUNK) {
                on_backend!(conn, |c| diesel::insert_into(service::table)
                    .values(rows)
                    .execute(c))?;
            }
            for rows in certificates.chunks(CHUNK) {
                on_backend!(conn, |c| diesel::insert_into(issued_certificate::table)
                    .values(rows)
                    .execute(c))?;
            }
            for rows in events.chunks(CHUNK / 2) {
                on_backend!(conn, |c| diesel::insert_into(audit_event::table)
                    .values(rows)
                    .execute(c))?;
            }
            let (agents, keys, abandoned) = &vms;
            for rows in agents.chunks(CHUNK) {
                on_backend!(conn, |c| diesel::insert_into(agent_vm::table)
                    .values(rows)
                    .execute(c))?;
            }
            for rows in keys.chunks(CHUNK) {
                on_backend!(conn, |c| diesel::insert_into(service_cloud_key::table)
                    .values(rows)
                    .execute(c))?;
            }
            for rows in abandoned.chunks(CHUNK) {
                on_backend!(conn, |c| diesel::insert_into(abandoned_vm::table)
                    .values(rows)
                    .execute(c))?;
            }
            for ((table, column), counter) in COUNTED.into_iter().zip(&counters) {
                set_id_counter(conn, table, column, *counter)?;
            }
            let copied = report(conn)?;
            if copied != expected {
                return Err(Error::CopyMismatch {
                    expected: Box::new(expected),
                    found: Box::new(copied),
                });
            }
            Ok(copied)
        })
    })
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The counts and the credit of `conn`'s database.
fn report(conn: &mut DbConnection) -> Result<CopyReport, Error> {
    let users: i64 = on_backend!(conn, |c| user::table.count().get_result(c))?;
    let applications: i64 = on_backend!(conn, |c| application::table.count().get_result(c))?;
    let services: i64 = on_backend!(conn, |c| service::table.count().get_result(c))?;
    let certificates: i64 = on_backend!(conn, |c| issued_certificate::table.count().get_result(c))?;
    let audit_events: i64 = on_backend!(conn, |c| audit_event::table.count().get_result(c))?;
    let agents: i64 = on_backend!(conn, |c| agent_vm::table.count().get_result(c))?;
    let keys: i64 = on_backend!(conn, |c| service_cloud_key::table.count().get_result(c))?;
    let abandoned: i64 = on_backend!(conn, |c| abandoned_vm::table.count().get_result(c))?;
    // sum() of a BIGINT is NUMERIC on PostgreSQL.
    let credit: i64 = on_backend!(conn, |c| user::table
        .select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "CAST(coalesce(sum(credit), 0) AS BIGINT)"
        ))
        .get_result(c))?;
    Ok(CopyReport {
        users,
        applications,
        services,
        certificates,
        audit_events,
        vm_records: agents + keys + abandoned,
        credit,
    })
}

#[derive(QueryableByName)]
struct Counter {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    value: i64,
}

/// The highest id the database ever gave in `table` (deleted rows included): SQLite's
/// `sqlite_sequence` (AUTOINCREMENT) or PostgreSQL's sequence, and at least the largest id.
pub(super) fn id_counter(conn: &mut DbConnection, table: &str, column: &str) -> Result<i64, Error> {
    let counter: Counter = match conn {
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(c) => diesel::sql_query(format!(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = '{table}'), 0), \
             coalesce((SELECT max({column}) FROM \"{table}\"), 0)) AS value"
        ))
        .get_result(c)?,
        #[cfg(feature = "postgres")]
        DbConnection::Pg(c) => diesel::sql_query(format!(
            "SELECT greatest(coalesce(pg_sequence_last_value(pg_get_serial_sequence('\"{table}\"', '{column}')::regclass), 0), \
             coalesce((SELECT max({column}) FROM \"{table}\"), 0))::bigint AS value"
        ))
        .get_result(c)?,
    };
    Ok(counter.value)
}

/// Moves `table`'s id counter to `counter` (the next id is above it); `column` names the
/// id column, which PostgreSQL's sequence is found by.
#[cfg_attr(not(feature = "postgres"), expect(unused_variables))]
fn set_id_counter(
    conn: &mut DbConnection,
    table: &str,
    column: &str,
    counter: i64,
) -> Result<(), Error> {
    if counter <= 0 {
        return Ok(());
    }
    match conn {
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(c) => {
            // Inserting explicit ids already raised it to the largest; deleted ids above that
            // are kept from reuse here.
            let updated = diesel::sql_query(format!(
                "UPDATE sqlite_sequence SET seq = max(seq, {counter}) WHERE name = '{table}'"
            ))
            .execute(c)?;
            if updated == 0 {
                diesel::sql_query(format!(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES ('{table}', {counter})"
                ))
                .execute(c)?;
            }
        }
        #[cfg(feature = "postgres")]
        DbConnection::Pg(c) => {
            diesel::sql_query(format!(
                "SELECT setval(pg_get_serial_sequence('\"{table}\"', '{column}'), {counter})"
            ))
            .execute(c)?;
        }
    }
    Ok(())
}
