//! The `credit_charge` table: each manager credit charge applied, by its id, so that a charge
//! retried after an ambiguous commit, or replayed from the deferred-charges journal by two
//! directors at once, moves credit once (docs/operations.md, "Credit when the database fails").

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::Error;
use super::conn::{DbConnection, on_backend, write_transaction};
use super::schema::credit_charge;
use crate::model::{ChargeId, Credit, UserId};

/// How long an applied charge's id is kept: a charge is retried for seconds and replayed from
/// the journal at the next start-up, so a month is far past any replay.
pub const CHARGE_RETENTION: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// A credit charge a manager asked for, with the id it keeps through retries and replays.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Charge {
    /// Its id (given at the first attempt).
    pub id: ChargeId,
    /// The user charged.
    pub uid: UserId,
    /// How much, never negative.
    pub amount: Credit,
    /// When the manager asked (UTC).
    pub at: NaiveDateTime,
}

impl Charge {
    /// A charge of `amount` to `uid` with a new random id, asked now (to the microsecond,
    /// what the databases and the journal keep).
    pub fn new(uid: UserId, amount: Credit) -> Charge {
        use chrono::SubsecRound as _;
        Charge {
            id: ChargeId::random(),
            uid,
            amount,
            at: chrono::Utc::now().naive_utc().trunc_subsecs(6),
        }
    }

    setters! {
        id: ChargeId,
        at: NaiveDateTime,
    }
}

/// What a charge does to a credit that does not cover it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChargeRule {
    /// Refuse it, change nothing ([`decrement_credit`](super::decrement_credit)): a manager's
    /// charge answered at once.
    Covered,
    /// Take the credit to 0 ([`charge_owed`](super::charge_owed)): a charge deferred while
    /// the database failed, which the manager was told was covered.
    Owed,
}

/// What [`apply_charge`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChargeApplied {
    /// The credit was charged now and the id recorded.
    Applied,
    /// A charge with this id was applied before: nothing changed.
    AlreadyApplied,
    /// [`ChargeRule::Covered`] and the credit did not cover it (or no such user): nothing
    /// changed, the id not recorded.
    Refused,
    /// [`ChargeRule::Owed`] and no such user: nothing changed, the id not recorded.
    NoSuchUser,
}

#[derive(Insertable)]
#[diesel(table_name = credit_charge)]
struct ChargeRow<'a> {
    id: &'a str,
    uid: UserId,
    amount: Credit,
    at: NaiveDateTime,
}

/// Applies `charge` once: records its id and takes the credit in one transaction (a savepoint
/// inside the caller's, so its audit event commits with it). A charge whose id is recorded
/// changes nothing and answers [`ChargeApplied::AlreadyApplied`]; on PostgreSQL a second
/// transaction inserting the same id waits for the first and then finds it.
pub fn apply_charge(
    conn: &mut DbConnection,
    charge: &Charge,
    rule: ChargeRule,
) -> Result<ChargeApplied, Error> {
    if charge.amount.0 < 0 {
        return Err(Error::NegativeAmount(charge.amount));
    }
    write_transaction(conn, |conn| {
        let row = ChargeRow {
            id: charge.id.as_str(),
            uid: charge.uid,
            amount: charge.amount,
            at: charge.at,
        };
        let n_inserted = on_backend!(conn, |c| diesel::insert_into(credit_charge::table)
            .values(&row)
            .on_conflict_do_nothing()
            .execute(c))?;
        if n_inserted == 0 {
            return Ok(ChargeApplied::AlreadyApplied);
        }
        let charged = match rule {
            ChargeRule::Covered => super::decrement_credit(conn, charge.uid, charge.amount)?,
            ChargeRule::Owed => super::charge_owed(conn, charge.uid, charge.amount)?,
        };
        if charged {
            return Ok(ChargeApplied::Applied);
        }
        // Not applied: the id must not stay, or a later attempt would be taken for done.
        on_backend!(conn, |c| diesel::delete(
            credit_charge::table.filter(credit_charge::id.eq(charge.id.as_str()))
        )
        .execute(c))?;
        Ok(match rule {
            ChargeRule::Covered => ChargeApplied::Refused,
            ChargeRule::Owed => ChargeApplied::NoSuchUser,
        })
    })
}

/// Whether a charge with this id was applied (and not yet pruned).
pub fn charge_applied(conn: &mut DbConnection, id: &ChargeId) -> Result<bool, Error> {
    let found: i64 = on_backend!(conn, |c| credit_charge::table
        .filter(credit_charge::id.eq(id.as_str()))
        .count()
        .get_result(c))?;
    Ok(found > 0)
}

/// Forgets the ids of charges asked before `before` (UTC); answers how many.
pub fn prune_charges(conn: &mut DbConnection, before: NaiveDateTime) -> Result<usize, Error> {
    Ok(on_backend!(conn, |c| diesel::delete(
        credit_charge::table.filter(credit_charge::at.lt(before))
    )
    .execute(c))?)
}
