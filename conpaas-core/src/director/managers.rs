//! What managers ask of the director: credit, agent certificates (termination is in services).

use super::{Director, Error, parse_int};
use crate::model::{Credit, ServiceId, UserId};
use crate::store;

impl Director {
    /// Charges `decrement` credit to `uid` (`/callback/decrementUserCredit.php`): `true` when
    /// the credit covered it. One conditional UPDATE, so concurrent charges lose nothing. An
    /// absent decrement is 0 (as in 1.2); a negative or non-integer one is refused (1.2 added
    /// credit for a negative one).
    pub async fn charge(&self, uid: UserId, decrement: Option<&str>) -> Result<bool, Error> {
        let amount = match decrement.map(str::trim).filter(|text| !text.is_empty()) {
            None => 0,
            Some(text) => match parse_int(text) {
                Some(amount) if amount >= 0 => amount,
                _ => return Ok(false),
            },
        };
        let amount = Credit(amount);
        Ok(self
            .inner
            .store
            .run(move |conn| store::decrement_credit(conn, uid, amount))
            .await?)
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
            .issue(move |ca| ca.sign_agent_csr(&csr_pem, uid, sid))
            .await?;
        Ok(issued.cert_pem)
    }
}
