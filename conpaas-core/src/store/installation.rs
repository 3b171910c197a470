//! The `installation` table: which installation (CA) the database belongs to, and whether the
//! reaper is held because the clouds know services the database does not (a restored older
//! backup); and the service id counter, which proves it.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::Error;
use super::conn::{DbConnection, on_backend, write_transaction};
use super::copy::id_counter;
use super::schema::installation;
use crate::model::ServiceId;

/// The database's record of its installation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Installation {
    /// The tag of the CA the database was set up with (8 hex digits).
    pub tag: String,
    /// When it was recorded (UTC).
    pub recorded: NaiveDateTime,
    /// Set while the reaper is held (see [`hold_reaper`]).
    pub hold: Option<ReaperHold>,
}

/// Why the reaper terminates nothing: a cloud listed a VM of this installation whose service
/// id the database never gave, so the database is older than the cloud (a restored backup).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReaperHold {
    /// When the hold began (UTC).
    pub since: NaiveDateTime,
    /// The highest service id listed then.
    pub listed_sid: ServiceId,
    /// The highest service id the database had given then.
    pub allocated_sid: ServiceId,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = installation)]
struct InstallationRow {
    tag: String,
    recorded: NaiveDateTime,
    held_since: Option<NaiveDateTime>,
    held_listed_sid: Option<i32>,
    held_allocated_sid: Option<i32>,
}

impl From<InstallationRow> for Installation {
    fn from(row: InstallationRow) -> Installation {
        let hold = match (row.held_since, row.held_listed_sid, row.held_allocated_sid) {
            (Some(since), Some(listed), Some(allocated)) => Some(ReaperHold {
                since,
                listed_sid: ServiceId(listed),
                allocated_sid: ServiceId(allocated),
            }),
            _ => None,
        };
        Installation {
            tag: row.tag,
            recorded: row.recorded,
            hold,
        }
    }
}

fn now_utc() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// The database's record of its installation; `None` for a database made before migration 6
/// (or never set up by `director init` / `serve`).
pub fn find_installation(conn: &mut DbConnection) -> Result<Option<Installation>, Error> {
    let row: Option<InstallationRow> = on_backend!(conn, |c| installation::table
        .filter(installation::id.eq(1))
        .select(InstallationRow::as_select())
        .get_result(c)
        .optional())?;
    Ok(row.map(Installation::from))
}

/// Records `tag` as the database's installation, replacing another (a new CA: `director init
/// --force`), which also ends a hold (the held VMs were the old CA's). The same tag is kept
/// as it is.
pub fn record_installation(conn: &mut DbConnection, tag: &str) -> Result<(), Error> {
    write_transaction(conn, |conn| {
        // Two replicas adopting a database at once both insert: the second changes nothing.
        on_backend!(conn, |c| diesel::insert_into(installation::table)
            .values((
                installation::id.eq(1),
                installation::tag.eq(tag),
                installation::recorded.eq(now_utc()),
            ))
            .on_conflict_do_nothing()
            .execute(c))?;
        on_backend!(conn, |c| diesel::update(
            installation::table
                .filter(installation::id.eq(1))
                .filter(installation::tag.ne(tag))
        )
        .set((
            installation::tag.eq(tag),
            installation::recorded.eq(now_utc()),
            installation::held_since.eq(None::<NaiveDateTime>),
            installation::held_listed_sid.eq(None::<i32>),
            installation::held_allocated_sid.eq(None::<i32>),
        ))
        .execute(c))?;
        Ok(())
    })
}

/// Whether the database has a history: a user, an application or a service, now or ever (an
/// id counter above zero). An empty database beside an existing CA is a lost file or a
/// mistyped `DATABASE_URI` more often than a new installation.
pub fn has_history(conn: &mut DbConnection) -> Result<bool, Error> {
    for (table, column) in [("user", "uid"), ("application", "aid"), ("service", "sid")] {
        if id_counter(conn, table, column)? > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The highest service id the database ever gave, deleted services included (SQLite's
/// `sqlite_sequence` row of `service`, PostgreSQL's sequence of `service.sid`): ids are never
/// reused, so a VM whose client token names a higher one was started by a later state of
/// the database.
pub fn highest_allocated_sid(conn: &mut DbConnection) -> Result<ServiceId, Error> {
    let counter = id_counter(conn, "service", "sid")?;
    Ok(ServiceId(i32::try_from(counter).unwrap_or(i32::MAX)))
}

/// Moves the service id counter to at least `sid`, so that the next service gets a higher
/// id (and a client token no VM has); never lowers it. Answers the highest id given now.
pub fn advance_service_ids(conn: &mut DbConnection, sid: ServiceId) -> Result<ServiceId, Error> {
    let before = highest_allocated_sid(conn)?;
    if sid.0 <= before.0 {
        return Ok(before);
    }
    let counter = sid.0;
    match conn {
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(c) => {
            let updated = diesel::sql_query(
                "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'service'",
            )
            .bind::<diesel::sql_types::Integer, _>(counter)
            .execute(c)?;
            if updated == 0 {
                diesel::sql_query("INSERT INTO sqlite_sequence (name, seq) VALUES ('service', ?)")
                    .bind::<diesel::sql_types::Integer, _>(counter)
                    .execute(c)?;
            }
        }
        #[cfg(feature = "postgres")]
        DbConnection::Pg(c) => {
            diesel::sql_query(
                "SELECT setval(pg_get_serial_sequence('\"service\"', 'sid'), \
                 greatest($1::bigint, coalesce(pg_sequence_last_value(pg_get_serial_sequence('\"service\"', 'sid')::regclass), 0)))",
            )
            .bind::<diesel::sql_types::BigInt, _>(i64::from(counter))
            .execute(c)?;
        }
    }
    highest_allocated_sid(conn)
}

/// What [`hold_reaper`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HoldCheck {
    /// The hold in force after the check, if any.
    pub hold: Option<ReaperHold>,
    /// The hold began with this check.
    pub began: bool,
}

/// The reaper's check of the database against the clouds, `listed_sid` being the highest
/// service id among the VMs listed (listed before this call). Above the highest id the
/// database gave, the database is older than the clouds: the service id counter is moved
/// past it (so that no new service takes a listed VM's client token, which EC2 would answer
/// with that VM) and the hold begins, recorded with the installation `tag` (recorded if
/// missing). A hold lasts until [`release_reaper`]. One transaction.
pub fn hold_reaper(
    conn: &mut DbConnection,
    tag: &str,
    listed_sid: Option<ServiceId>,
) -> Result<HoldCheck, Error> {
    write_transaction(conn, |conn| {
        let found = find_installation(conn)?;
        let existing = found.as_ref().and_then(|found| found.hold.clone());
        let allocated = highest_allocated_sid(conn)?;
        let Some(listed) = listed_sid.filter(|listed| listed.0 > allocated.0) else {
            return Ok(HoldCheck {
                hold: existing,
                began: false,
            });
        };
        advance_service_ids(conn, listed)?;
        if existing.is_some() {
            return Ok(HoldCheck {
                hold: existing,
                began: false,
            });
        }
        if found.is_none() {
            record_installation(conn, tag)?;
        }
        let hold = ReaperHold {
            since: now_utc(),
            listed_sid: listed,
            allocated_sid: allocated,
        };
        on_backend!(conn, |c| diesel::update(
            installation::table.filter(installation::id.eq(1))
        )
        .set((
            installation::held_since.eq(Some(hold.since)),
            installation::held_listed_sid.eq(Some(hold.listed_sid.0)),
            installation::held_allocated_sid.eq(Some(hold.allocated_sid.0)),
        ))
        .execute(c))?;
        Ok(HoldCheck {
            hold: Some(hold),
            began: true,
        })
    })
}

/// What [`release_reaper`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Release {
    /// The hold it ended, if there was one.
    pub hold: Option<ReaperHold>,
    /// The highest service id given before.
    pub allocated_before: ServiceId,
    /// The highest service id given now (the next service's is above it).
    pub allocated_after: ServiceId,
}

/// The operator's word after a restore: the service id counter moved past `listed_sid` (the
/// highest listed on the clouds now) and the hold ended, so that the reaper terminates the
/// VMs without a row from its next pass. One transaction.
pub fn release_reaper(
    conn: &mut DbConnection,
    tag: &str,
    listed_sid: Option<ServiceId>,
) -> Result<Release, Error> {
    write_transaction(conn, |conn| {
        let found = find_installation(conn)?;
        let allocated_before = highest_allocated_sid(conn)?;
        let allocated_after = match listed_sid {
            Some(listed) => advance_service_ids(conn, listed)?,
            None => allocated_before,
        };
        let hold = found.as_ref().and_then(|found| found.hold.clone());
        if found.is_none() {
            record_installation(conn, tag)?;
        } else if hold.is_some() {
            on_backend!(conn, |c| diesel::update(
                installation::table.filter(installation::id.eq(1))
            )
            .set((
                installation::held_since.eq(None::<NaiveDateTime>),
                installation::held_listed_sid.eq(None::<i32>),
                installation::held_allocated_sid.eq(None::<i32>),
            ))
            .execute(c))?;
        }
        Ok(Release {
            hold,
            allocated_before,
            allocated_after,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn a_listed_sid_above_the_counter_holds_the_reaper_and_moves_the_counter() {
        let (store, _dir) = sqlite_store();
        store
            .run_blocking(|conn| {
                assert_eq!(find_installation(conn)?, None);
                assert!(!has_history(conn)?);
                assert_eq!(highest_allocated_sid(conn)?, ServiceId(0));
                // Nothing listed above the counter: no hold, nothing written.
                let check = hold_reaper(conn, "ab12cd34", None)?;
                assert_eq!((check.hold, check.began), (None, false));
                assert_eq!(find_installation(conn)?, None);
                let check = hold_reaper(conn, "ab12cd34", Some(ServiceId(7)))?;
                assert!(check.began);
                assert_eq!(highest_allocated_sid(conn)?, ServiceId(7));
                let found = find_installation(conn)?.unwrap();
                assert_eq!(found.tag, "ab12cd34");
                let hold = found.hold.unwrap();
                assert_eq!(
                    (hold.listed_sid, hold.allocated_sid),
                    (ServiceId(7), ServiceId(0))
                );
                // The proof is gone (the counter moved), the hold stays.
                let again = hold_reaper(conn, "ab12cd34", Some(ServiceId(7)))?;
                assert!(!again.began);
                assert!(again.hold.is_some());
                assert!(has_history(conn)?);
                let release = release_reaper(conn, "ab12cd34", Some(ServiceId(9)))?;
                assert!(release.hold.is_some());
                assert_eq!(
                    (release.allocated_before, release.allocated_after),
                    (ServiceId(7), ServiceId(9))
                );
                assert_eq!(find_installation(conn)?.unwrap().hold, None);
                // Never lowered.
                assert_eq!(advance_service_ids(conn, ServiceId(3))?, ServiceId(9));
                // Another CA's tag replaces the record and its hold.
                hold_reaper(conn, "ab12cd34", Some(ServiceId(12)))?;
                record_installation(conn, "ffffffff")?;
                let found = find_installation(conn)?.unwrap();
                assert_eq!((found.tag.as_str(), found.hold), ("ffffffff", None));
                Ok::<(), Error>(())
            })
            .unwrap();
    }
}
