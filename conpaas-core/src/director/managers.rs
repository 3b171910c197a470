//! What managers ask of the director: credit, agent certificates (termination is in services).

use super::audit::{AuditOutcome, Event};
use super::metrics::DecrementResult;
use super::{Director, Error, parse_int};
use crate::model::ErrorChain;
use crate::model::{Credit, Role, ServiceId, UserId};
use crate::store;

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
        charged.map(|(covered, _)| covered)
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
        charged.map(|(covered, _)| covered)
    }

    /// Counts a charge's outcome in the metrics.
    fn count_charge(&self, charged: &Result<(bool, bool), Error>) {
        let result = match charged {
            Ok((true, false)) => DecrementResult::Applied,
            Ok((true, true)) => DecrementResult::Deferred,
            Ok((false, _)) | Err(_) => DecrementResult::Refused,
        };
        self.inner.metrics.decrement(result);
    }

    /// [`charge`](Self::charge)'s work, retried until `deadline`: whether the charge is
    /// covered, and whether it was deferred.
    async fn charge_counted(
        &self,
        uid: UserId,
        decrement: Option<&str>,
        deadline: tokio::time::Instant,
    ) -> Result<(bool, bool), Error> {
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
                    return Ok((false, false));
                }
            },
        };
        let amount = Credit(amount);
        let event = Event::new("credit.decremented", AuditOutcome::Ok)
            .uid(uid)
            .detail("amount", amount.0);
        // A 1.2 manager takes any answer but `{"error": false}` (an error answer, a timeout)
        // as "out of credit" and terminates its service: a busy, locked or failing database
        // (the director's own fault) must not end a user's service. So failures are retried
        // within a bound (1.2 managers wait for the answer without a timeout); past it the
        // charge is kept in memory, applied by the next maintenance pass, and the manager is
        // told the credit covered it (docs/operations.md, "Credit when the database fails").
        let mut delay = std::time::Duration::from_millis(50);
        loop {
            let applied = event.to_new();
            let refused = event.clone().outcome(AuditOutcome::Refused).to_new();
            match self
                .inner
                .store
                .run(move |conn| {
                    store::write_transaction(conn, |conn| {
                        let charged = store::decrement_credit(conn, uid, amount)?;
                        store::record_audit_event(conn, if charged { &applied } else { &refused })?;
                        Ok::<_, store::Error>(charged)
                    })
                })
                .await
            {
                Ok(charged) => return Ok((charged, false)),
                Err(error) if tokio::time::Instant::now() + delay < deadline => {
                    tracing::warn!(uid = %uid, error = %ErrorChain(&error), "credit charge failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(2));
                }
                Err(error) => {
                    tracing::error!(uid = %uid, amount = amount.0, error = %ErrorChain(&error), "credit charge still failing: deferred to the next maintenance pass, the manager is told it was covered");
                    self.inner
                        .deferred_charges
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((uid, amount));
                    self.audit(event.outcome(AuditOutcome::Deferred));
                    return Ok((true, true));
                }
            }
        }
    }

    /// Applies the credit charges the database could not take when managers asked
    /// ([`charge`](Self::charge) deferred them), each once; a charge larger than the credit
    /// left takes the credit to 0. Answers how many were applied; the others stay for the
    /// next pass.
    pub async fn apply_deferred_charges(&self) -> usize {
        let pending: Vec<(UserId, Credit)> = std::mem::take(
            &mut *self
                .inner
                .deferred_charges
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let mut applied = 0;
        let mut failed = Vec::new();
        for (uid, amount) in pending {
            let event = Event::new("credit.decremented", AuditOutcome::Ok)
                .uid(uid)
                .detail("amount", amount.0)
                .detail("deferred", true)
                .to_new();
            match self
                .inner
                .store
                .run(move |conn| {
                    store::write_transaction(conn, |conn| {
                        let charged = store::charge_owed(conn, uid, amount)?;
                        store::record_audit_event(conn, &event)?;
                        Ok::<_, store::Error>(charged)
                    })
                })
                .await
            {
                Ok(_) => applied += 1,
                Err(error) => {
                    tracing::warn!(uid = %uid, amount = amount.0, error = %ErrorChain(&error), "a deferred credit charge failed again");
                    failed.push((uid, amount));
                }
            }
        }
        if !failed.is_empty() {
            self.inner
                .deferred_charges
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(failed);
        }
        applied
    }

    /// Credit charges waiting for [`apply_deferred_charges`](Self::apply_deferred_charges).
    pub fn deferred_charges(&self) -> usize {
        self.inner
            .deferred_charges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
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
