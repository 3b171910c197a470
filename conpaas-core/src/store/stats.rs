//! What the state gauges of `/metrics` count, read at each scrape.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable};

use super::Error;
use super::conn::DbConnection;
use super::schema::{agent_vm, application, service, user};

/// Counts of what the database holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateCounts {
    /// Accounts.
    pub users: i64,
    /// Applications.
    pub applications: i64,
    /// Services whose VM is being created (no VM id yet).
    pub services_starting: i64,
    /// Services with their VM, by cloud name.
    pub services_running: Vec<(String, i64)>,
    /// The credit of every user, summed: what managers may still charge.
    pub credit: i64,
    /// Agent VMs started through the director and not yet gone, by cloud name.
    pub agents_running: Vec<(String, i64)>,
}

/// [`StateCounts`] in one read transaction.
pub fn state_counts(conn: &mut DbConnection) -> Result<StateCounts, Error> {
    conn.transaction(|conn| {
        let users = user::table.count().get_result(conn)?;
        let applications = application::table.count().get_result(conn)?;
        let services_starting = service::table
            .filter(service::vmid.is_null())
            .count()
            .get_result(conn)?;
        let running: Vec<(Option<String>, i64)> = service::table
            .filter(service::vmid.is_not_null())
            .group_by(service::cloud)
            .select((service::cloud, diesel::dsl::count_star()))
            .order(service::cloud.asc())
            .load(conn)?;
        let agents_running: Vec<(String, i64)> = agent_vm::table
            .filter(agent_vm::vmid.is_not_null())
            .group_by(agent_vm::cloud)
            .select((agent_vm::cloud, diesel::dsl::count_star()))
            .order(agent_vm::cloud.asc())
            .load(conn)?;
        // SUM of a BIGINT is NUMERIC on PostgreSQL: cast back, on both backends.
        let credit: Option<i64> = user::table
            .select(diesel::dsl::sql::<Nullable<BigInt>>(
                "CAST(SUM(credit) AS BIGINT)",
            ))
            .first(conn)?;
        Ok(StateCounts {
            users,
            applications,
            services_starting,
            services_running: running
                .into_iter()
                .map(|(cloud, n)| (cloud.unwrap_or_default(), n))
                .collect(),
            credit: credit.unwrap_or(0),
            agents_running,
        })
    })
}
