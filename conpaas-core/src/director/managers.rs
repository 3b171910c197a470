//! What managers ask of the director: credit, agent certificates (termination is in services).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::audit::{AuditOutcome, Event};
use super::journal::ChargeJournal;
use super::metrics::DecrementResult;
use super::{Director, Error, parse_int};
use crate::model::ErrorChain;
use crate::model::{Credit, Role, ServiceId, UserId};
use crate::store;

/// What became of a manager's charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charged {
    /// Applied now (or found applied by an earlier attempt).
    Applied,
    /// Refused: the credit did not cover it, or the decrement was no non-negative integer.
    Refused,
    /// Deferred past the database's failure, kept in the journal (or, without one, in memory).
    Deferred,
    /// Deferred, but the journal write failed: held in memory only.
    DeferredUnjournaled,
}

/// A manager admitted to charge its user ([`Director::charging_manager`]), and until when
/// its charge may be retried.
#[derive(Debug)]
pub struct ManagerCharge {
    uid: UserId,
    deadline: tokio::time::Instant,
}

impl Director {
    /// Charges `decrement` credit to `uid` (`/callback/decrementUserCredit.php`): `true` when
    /// the credit covered it. One conditional UPDATE, so concurrent charges lose nothing. An
    /// absent decrement is 0 (as in 1.2); a negative or non-integer one is refused (1.2 added
    /// credit for a negative one).
    pub async fn charge(&self, uid: UserId, decrement: Option<&str>) -> Result<bool, Error> {
        let deadline = tokio::time::Instant::now() + self.inner.charge_patience;
        let charged = self.charge_counted(uid, decrement, deadline).await;
        self.count_charge(&charged);
        charged.map(|charged| charged != Charged::Refused)
    }

    /// The manager rule's check for the credit callback: whether `sid` is a live service of
    /// `uid` (the certificate says who asks). `None` when it is not, as the manager rule
    /// refuses it; otherwise the [`ManagerCharge`] to pass to
    /// [`charge_for`](Self::charge_for).
    ///
    /// The service is read with the charge's patience, and one bound covers the read and the
    /// charge: a 1.2 manager takes an error answer for "out of credit" and ends its service,
    /// so a failing database must not fail this read either. Past the bound the
    /// certificate, which this CA issued for that user and service, is trusted.
    pub async fn charging_manager(&self, uid: UserId, sid: ServiceId) -> Option<ManagerCharge> {
        let deadline = tokio::time::Instant::now() + self.inner.charge_patience;
        let mut delay = std::time::Duration::from_millis(50);
        loop {
            match self
                .inner
                .store
                .read(move |conn| store::find_service_owned(conn, sid, uid))
                .await
            {
                Ok(Some(_)) => return Some(ManagerCharge { uid, deadline }),
                Ok(None) => return None,
                Err(error) if tokio::time::Instant::now() + delay < deadline => {
                    tracing::warn!(uid = %uid, sid = %sid, error = %ErrorChain(&error), "reading a charging manager's service failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(2));
                }
                Err(error) => {
                    tracing::error!(uid = %uid, sid = %sid, error = %ErrorChain(&error), "reading a charging manager's service still failing: its certificate is trusted");
                    return Some(ManagerCharge { uid, deadline });
                }
            }
        }
    }

    /// [`charge`](Self::charge) for a manager [`charging_manager`](Self::charging_manager)
    /// admitted, within what is left of its bound.
    pub async fn charge_for(
        &self,
        manager: ManagerCharge,
        decrement: Option<&str>,
    ) -> Result<bool, Error> {
        let charged = self
            .charge_counted(manager.uid, decrement, manager.deadline)
            .await;
        self.count_charge(&charged);
        charged.map(|charged| charged != Charged::Refused)
    }

    /// Counts a charge's outcome in the metrics.
    fn count_charge(&self, charged: &Result<Charged, Error>) {
        let result = match charged {
            Ok(Charged::Applied) => DecrementResult::Applied,
            Ok(Charged::Deferred) => DecrementResult::Deferred,
            Ok(Charged::DeferredUnjournaled) => DecrementResult::DeferredUnjournaled,
            Ok(Charged::Refused) | Err(_) => DecrementResult::Refused,
        };
        self.inner.metrics.decrement(result);
    }

    /// [`charge`](Self::charge)'s work, retried until `deadline`.
    async fn charge_counted(
        &self,
        uid: UserId,
        decrement: Option<&str>,
        deadline: tokio::time::Instant,
    ) -> Result<Charged, Error> {
        let amount = match decrement.map(str::trim).filter(|text| !text.is_empty()) {
            None => 0,
            Some(text) => match parse_int(text) {
                Some(amount) if amount >= 0 => amount,
                _ => {
                    self.audit(
                        Event::new("credit.decremented", AuditOutcome::Refused)
                            .uid(uid)
                            .detail("reason", "not a non-negative integer"),
                    );
                    return Ok(Charged::Refused);
                }
            },
        };
        // One id for every attempt, the deferral and the replays: a commit that succeeded but
        // reported an error (a connection lost at COMMIT) is found applied by the retry.
        let charge = store::Charge::new(uid, Credit(amount));
        let event = Event::new("credit.decremented", AuditOutcome::Ok)
            .uid(uid)
            .detail("amount", amount)
            .detail("charge", charge.id.to_string());
        // A 1.2 manager takes any answer but `{"error": false}` (an error answer, a timeout)
        // as "out of credit" and terminates its service: a busy, locked or failing database
        // (the director's own fault) must not end a user's service. So failures are retried
        // within a bound (1.2 managers wait for the answer without a timeout); past it the
        // charge is written to the journal, applied as soon as the database takes writes
        // again, and the manager is told the credit covered it (docs/operations.md, "Credit
        // when the database fails").
        let mut delay = std::time::Duration::from_millis(50);
        loop {
            let applied = event.to_new();
            let refused = event.clone().outcome(AuditOutcome::Refused).to_new();
            let attempt = charge.clone();
            // Bounded by the deadline, the wait for the store's turn included (on SQLite the
            // writes queue one behind the other, each up to the busy timeout). An attempt
            // still running past it may yet commit: its id makes the replay find it applied.
            let attempted = tokio::time::timeout_at(
                deadline,
                self.inner.store.run(move |conn| {
                    store::write_transaction(conn, |conn| {
                        let outcome =
                            store::apply_charge(conn, &attempt, store::ChargeRule::Covered)?;
                        match outcome {
                            store::ChargeApplied::Applied => {
                                store::record_audit_event(conn, &applied)?;
                            }
                            // Its own transaction recorded its event.
                            store::ChargeApplied::AlreadyApplied => {}
                            _ => store::record_audit_event(conn, &refused)?,
                        }
                        Ok::<_, store::Error>(outcome)
                    })
                }),
            )
            .await;
            let Ok(attempted) = attempted else {
                tracing::error!(uid = %uid, amount, "credit charge not done within its patience: deferred until the database takes writes, the manager is told it was covered");
                return Ok(self.defer_charge(charge, event).await);
            };
            match attempted {
                Ok(store::ChargeApplied::Applied) => return Ok(Charged::Applied),
                Ok(store::ChargeApplied::AlreadyApplied) => {
                    tracing::info!(uid = %uid, charge = %charge.id, "credit charge found applied by an earlier attempt");
                    return Ok(Charged::Applied);
                }
                Ok(_) => return Ok(Charged::Refused),
                Err(error) if tokio::time::Instant::now() + delay < deadline => {
                    tracing::warn!(uid = %uid, error = %ErrorChain(&error), "credit charge failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(2));
                }
                Err(error) => {
                    tracing::error!(uid = %uid, amount, error = %ErrorChain(&error), "credit charge still failing: deferred until the database takes writes, the manager is told it was covered");
                    return Ok(self.defer_charge(charge, event).await);
                }
            }
        }
    }

    /// Keeps a charge the database could not take: in the journal (when there is one) before
    /// its manager is answered, and in memory; starts the retry.
    async fn defer_charge(&self, charge: store::Charge, event: Event) -> Charged {
        let charged = match self.inner.charge_journal.clone() {
            None => Charged::Deferred,
            Some(journal) => {
                let record = charge.clone();
                let written =
                    tokio::task::spawn_blocking(move || journal.append_charge(&record)).await;
                match written {
                    Ok(Ok(())) => Charged::Deferred,
                    Ok(Err(error)) => {
                        // Still answered as covered: a 1.2 manager ends the user's service on
                        // any other answer (docs/operations.md says why).
                        tracing::error!(uid = %charge.uid, amount = charge.amount.0, charge = %charge.id, error = %ErrorChain(&error), "cannot write a deferred credit charge to the journal: held in memory only, lost if this process dies before the database takes it");
                        Charged::DeferredUnjournaled
                    }
                    Err(_) => {
                        tracing::error!(uid = %charge.uid, amount = charge.amount.0, charge = %charge.id, "the journal write of a deferred credit charge was cancelled: held in memory only");
                        Charged::DeferredUnjournaled
                    }
                }
            }
        };
        self.inner
            .deferred_charges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(charge);
        self.audit(event.outcome(AuditOutcome::Deferred));
        self.retry_deferred_charges();
        charged
    }

    /// Starts the background retry of the deferred charges, unless one runs: 250 ms, doubling
    /// to 5 s, until none is left, so that they are applied as soon as the database takes
    /// writes again, not at the next maintenance pass. It holds the director weakly: dropping
    /// the last [`Director`] ends it (the journal keeps the charges).
    fn retry_deferred_charges(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.charge_retry.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = Arc::downgrade(&self.inner);
        runtime.spawn(super::audit::AuditContext::director().scope(async move {
            let mut delay = std::time::Duration::from_millis(250);
            loop {
                tokio::time::sleep(delay).await;
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                let director = Director { inner };
                director.apply_deferred_charges().await;
                if director.deferred_charges() == 0 {
                    director.inner.charge_retry.store(false, Ordering::Release);
                    // A charge deferred between the count and the store saw a retry
                    // running and started none: take it over.
                    if director.deferred_charges() == 0
                        || director.inner.charge_retry.swap(true, Ordering::AcqRel)
                    {
                        return;
                    }
                }
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
        }));
    }

    /// Applies the credit charges the database could not take when managers asked
    /// ([`charge`](Self::charge) deferred them): this director's, and those of the charge
    /// journal (written by this process, an earlier one that stopped or crashed, or another
    /// sharing the data directory). Each is applied once, whoever replays it, by its id; a
    /// charge larger than the credit left takes it to 0. Applied ones are marked in the
    /// journal, which is compacted once nothing is pending. Stops at the first database
    /// failure; what is left stays for the retry, the next maintenance pass or the next
    /// start. Answers how many it applied now.
    ///
    /// `director serve` calls it at start-up and when it stops; an embedder with a journal
    /// calls it once after [`DirectorBuilder::build`](super::DirectorBuilder::build), before
    /// serving (the maintenance pass and the retry call it too). Also prunes the ids of
    /// charges older than [`store::CHARGE_RETENTION`], at most once an hour.
    pub async fn apply_deferred_charges(&self) -> usize {
        let _one_at_a_time = self.inner.charge_replay.lock().await;
        let mut pending: Vec<store::Charge> = self
            .inner
            .deferred_charges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut journaled = std::collections::BTreeSet::new();
        if let Some(journal) = self.inner.charge_journal.clone() {
            match tokio::task::spawn_blocking(move || journal.read()).await {
                Ok(Ok(contents)) => {
                    for charge in contents.pending {
                        journaled.insert(charge.id.clone());
                        if !pending.iter().any(|known| known.id == charge.id) {
                            pending.push(charge);
                        }
                    }
                }
                Ok(Err(error)) => {
                    tracing::error!(error = %ErrorChain(&error), "cannot read the deferred-charges journal");
                }
                Err(_) => return 0,
            }
        }
        let mut n_applied = 0;
        let mut done = Vec::new();
        for charge in pending {
            let event = Event::new("credit.decremented", AuditOutcome::Ok)
                .uid(charge.uid)
                .detail("amount", charge.amount.0)
                .detail("charge", charge.id.to_string())
                .detail("deferred", true)
                .to_new();
            let attempt = charge.clone();
            match self
                .inner
                .store
                .run(move |conn| {
                    store::write_transaction(conn, |conn| {
                        let outcome = store::apply_charge(conn, &attempt, store::ChargeRule::Owed)?;
                        if outcome == store::ChargeApplied::Applied {
                            store::record_audit_event(conn, &event)?;
                        }
                        Ok::<_, store::Error>(outcome)
                    })
                })
                .await
            {
                Ok(outcome) => {
                    match outcome {
                        store::ChargeApplied::Applied => n_applied += 1,
                        store::ChargeApplied::AlreadyApplied => {
                            tracing::info!(uid = %charge.uid, charge = %charge.id, "a deferred credit charge was already applied");
                        }
                        _ => {
                            tracing::warn!(uid = %charge.uid, amount = charge.amount.0, charge = %charge.id, "a deferred credit charge's user is gone: dropped");
                        }
                    }
                    done.push(charge.id);
                }
                Err(error) => {
                    tracing::warn!(uid = %charge.uid, amount = charge.amount.0, error = %ErrorChain(&error), "a deferred credit charge failed again");
                    break;
                }
            }
        }
        self.inner
            .deferred_charges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|charge| !done.contains(&charge.id));
        if let Some(journal) = self.inner.charge_journal.clone() {
            let marked: Vec<_> = done
                .into_iter()
                .filter(|id| journaled.contains(id))
                .collect();
            let pending_left = journaled.len() - marked.len();
            let written = tokio::task::spawn_blocking(move || {
                journal.append_applied(&marked)?;
                if pending_left == 0 {
                    journal.compact()?;
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if let Ok(Err(error)) = written {
                // The database knows them applied: a replay finds them so and changes nothing.
                tracing::warn!(error = %ErrorChain(&error), "cannot mark deferred credit charges applied in the journal");
            }
        }
        self.prune_charges().await;
        n_applied
    }

    /// Forgets the ids of charges older than [`store::CHARGE_RETENTION`], at most once an hour.
    async fn prune_charges(&self) {
        {
            let mut last = self
                .inner
                .charges_pruned
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < std::time::Duration::from_secs(3600)) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        let Ok(retention) = chrono::Duration::from_std(store::CHARGE_RETENTION) else {
            return;
        };
        let before = chrono::Utc::now().naive_utc() - retention;
        match self
            .inner
            .store
            .run(move |conn| store::prune_charges(conn, before))
            .await
        {
            Ok(n_pruned) if n_pruned > 0 => {
                tracing::info!(
                    n_pruned,
                    "forgot the ids of credit charges older than 30 days"
                );
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "cannot prune old credit charge ids");
                *self
                    .inner
                    .charges_pruned
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            }
        }
    }

    /// Credit charges this director deferred that are not applied yet.
    pub fn deferred_charges(&self) -> usize {
        self.inner
            .deferred_charges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// The deferred-charges journal, if this director has one.
    pub fn charge_journal(&self) -> Option<&ChargeJournal> {
        self.inner.charge_journal.as_ref()
    }

    /// How long a manager's charge is retried before it is deferred.
    pub fn charge_patience(&self) -> std::time::Duration {
        self.inner.charge_patience
    }

    /// Signs an agent CSR for the manager of `sid` (`/ca/get_cert.php`): the agent's identity
    /// comes from the caller, the CSR only proves possession of its key.
    pub async fn sign_agent_csr(
        &self,
        uid: UserId,
        sid: ServiceId,
        csr_pem: Vec<u8>,
    ) -> Result<String, Error> {
        let issued = self
            .issue(Role::Agent, move |ca| ca.sign_agent_csr(&csr_pem, uid, sid))
            .await?;
        Ok(issued.cert_pem)
    }
}
