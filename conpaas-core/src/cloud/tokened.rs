//! What the drivers without an idempotency token of the cloud's own share (OpenNebula over OCCI
//! and XML-RPC, OpenStack): a VM's name carrying the start's client token, so that a listing
//! finds the VM of a lost answer, and the guard that deletes what an abandoned create made.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::provider::{Error, Node};
use crate::model::ErrorChain;

/// The name a VM is created with: the director's name, then the client token.
pub(crate) fn name_with_token(request_name: &str, client_token: &str) -> String {
    if client_token.is_empty() {
        request_name.to_owned()
    } else {
        format!("{request_name}-{client_token}")
    }
}

/// The client token a VM called `name` (by [`name_with_token`]) was created with, if it starts
/// with `prefix`: the name from the last `-<prefix>` (or the whole name, when it starts with the
/// prefix) to its end.
pub(crate) fn token_in_name<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix.is_empty() {
        return None;
    }
    let token = if name.starts_with(prefix) {
        name
    } else {
        let at = name.rfind(&format!("-{prefix}"))?;
        &name[at + 1..]
    };
    // A prefix alone is no token.
    (token.len() > prefix.len()).then_some(token)
}

/// Whether a VM called `name` was created with `token` by [`name_with_token`]. The `-` before
/// the token keeps `…-s15` from matching the token of service 5.
pub(crate) fn name_has_token(name: &str, token: &str) -> bool {
    !token.is_empty()
        && (name == token
            || name
                .strip_suffix(token)
                .is_some_and(|head| head.ends_with('-')))
}

/// A driver's state, as the create's clean-up needs it: delete one VM, find those of a token.
pub(crate) trait TokenedCloud: Send + Sync + 'static {
    /// What a VM is called on this cloud ("VM", "server"), for the logs.
    const WHAT: &'static str;

    /// The cloud's name, for the logs.
    fn cloud_name(&self) -> &str;

    /// Deletes one VM; one already gone counts as deleted.
    fn delete_vm(&self, vmid: &str) -> impl Future<Output = Result<(), Error>> + Send;

    /// The VMs named with `token`.
    fn find_vms(&self, token: &str) -> impl Future<Output = Result<Vec<String>, Error>> + Send;

    /// Removes what a failed create made: the VM, and any other the token names when an
    /// attempt's outcome was unknown. Failures are logged: the create's own error is what the
    /// caller needs.
    fn remove(
        &self,
        vmid: Option<&str>,
        token: &str,
        ambiguous: bool,
    ) -> impl Future<Output = ()> + Send {
        async move {
            if let Some(vmid) = vmid
                && let Err(error) = self.delete_vm(vmid).await
            {
                tracing::error!(cloud = %self.cloud_name(), vmid, error = %ErrorChain(&error), "cannot delete the {} of a failed start: the reaper will try again, or delete it by hand", Self::WHAT);
            }
            if ambiguous {
                self.sweep(token, vmid).await;
            }
        }
    }

    /// Deletes the VMs named with `token`, except `keep`.
    fn sweep(&self, token: &str, keep: Option<&str>) -> impl Future<Output = ()> + Send {
        async move {
            if token.is_empty() {
                return;
            }
            let what = Self::WHAT;
            match self.find_vms(token).await {
                Ok(found) => {
                    for vmid in found.iter().filter(|vmid| Some(vmid.as_str()) != keep) {
                        tracing::warn!(cloud = %self.cloud_name(), %vmid, "deleting a duplicate {what} of the same start");
                        if let Err(error) = self.delete_vm(vmid).await {
                            tracing::error!(cloud = %self.cloud_name(), %vmid, error = %ErrorChain(&error), "cannot delete a duplicate {what}: delete it by hand");
                        }
                    }
                }
                Err(error) => {
                    tracing::error!(cloud = %self.cloud_name(), error = %ErrorChain(&error), "cannot list the {what}s to remove duplicates of a start");
                }
            }
        }
    }
}

/// Deletes the VM of a create that was abandoned half-way (its future dropped, e.g. by the
/// director's start timeout), from a task of its own; [`Abandoned::settle`] ends its watch.
pub(crate) struct Abandoned<C: TokenedCloud> {
    inner: Arc<C>,
    token: String,
    vmid: Option<String>,
    armed: bool,
}

impl<C: TokenedCloud> Abandoned<C> {
    /// An armed guard for the create of `token`.
    pub(crate) fn new(inner: Arc<C>, token: String) -> Self {
        Abandoned {
            inner,
            token,
            vmid: None,
            armed: true,
        }
    }

    /// The create failed before the cloud made anything: nothing to delete.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }

    /// The cloud made `vmid`: waits for `ready` until `deadline` (the cloud's `BOOT_TIMEOUT`
    /// after the create began), then settles. A ready VM is the caller's from then on (the
    /// duplicates of an `ambiguous` create are deleted); a VM that fails or is not ready in
    /// time is deleted before the error returns.
    pub(crate) async fn settle(
        mut self,
        vmid: String,
        ambiguous: bool,
        boot_timeout: Duration,
        deadline: tokio::time::Instant,
        ready: impl Future<Output = Result<Node, Error>>,
    ) -> Result<Node, Error> {
        self.vmid = Some(vmid.clone());
        let (inner, token, what) = (self.inner.clone(), self.token.clone(), C::WHAT);
        let waited = tokio::time::timeout_at(deadline, ready).await;
        let result = waited.unwrap_or_else(|_| {
            tracing::warn!(cloud = %inner.cloud_name(), %vmid, seconds = boot_timeout.as_secs(), "{what} not ready before BOOT_TIMEOUT");
            Err(Error::BootTimeout {
                vmid: vmid.clone(),
                seconds: boot_timeout.as_secs(),
            })
        });
        match result {
            Ok(node) => {
                // From here on the VM is the caller's, even if this future is dropped.
                self.armed = false;
                if ambiguous {
                    inner.sweep(&token, Some(&vmid)).await;
                }
                tracing::info!(cloud = %inner.cloud_name(), %vmid, ip = %node.public_ip, "{what} ready");
                Ok(node)
            }
            Err(error) => {
                inner.remove(Some(&vmid), &token, ambiguous).await;
                self.armed = false;
                Err(error)
            }
        }
    }
}

impl<C: TokenedCloud> Drop for Abandoned<C> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let inner = self.inner.clone();
        let token = std::mem::take(&mut self.token);
        let vmid = self.vmid.take();
        let what = C::WHAT;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                tracing::warn!(cloud = %inner.cloud_name(), ?vmid, "{what} creation abandoned: deleting what it made");
                runtime.spawn(async move { inner.remove(vmid.as_deref(), &token, true).await });
            }
            Err(_) => {
                tracing::error!(cloud = %inner.cloud_name(), ?vmid, token, "{what} creation abandoned outside a runtime: delete the {what} by hand");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_token() {
        let name = name_with_token("conpaas-manager-php-u1-s5", "cps-1a2b3c4d-s5");
        assert_eq!(name, "conpaas-manager-php-u1-s5-cps-1a2b3c4d-s5");
        assert!(name_has_token(&name, "cps-1a2b3c4d-s5"));
        assert!(!name_has_token(&name, "cps-1a2b3c4d-s"));
        assert!(!name_has_token(
            "conpaas-manager-php-u1-s15-cps-1a2b3c4d-s15",
            "cps-1a2b3c4d-s5"
        ));
        assert!(!name_has_token("xcps-1a2b3c4d-s5", "cps-1a2b3c4d-s5"));
        assert!(name_has_token("cps-1a2b3c4d-s5", "cps-1a2b3c4d-s5"));
        assert!(!name_has_token("anything", ""));
        assert_eq!(name_with_token("vm", ""), "vm");
    }

    #[test]
    fn tokens_are_found_by_prefix() {
        let prefix = "cps-1a2b3c4d-";
        for (name, token) in [
            (
                "conpaas-manager-php-u1-s5-cps-1a2b3c4d-s5",
                Some("cps-1a2b3c4d-s5"),
            ),
            ("cps-1a2b3c4d-s7", Some("cps-1a2b3c4d-s7")),
            ("conpaas-manager-php-u1-s5-cps-99999999-s5", None),
            ("conpaas-manager-php-u1-s5xcps-1a2b3c4d-s5", None),
            ("conpaas-manager-php-u1-s5-cps-1a2b3c4d-", None),
            ("someone-elses-vm", None),
        ] {
            assert_eq!(token_in_name(name, prefix), token, "{name}");
        }
        assert_eq!(token_in_name("cps-1a2b3c4d-s7", ""), None);
        // The reaper's prefix.
        assert_eq!(
            token_in_name(
                "conpaas-manager-php-u1-s15-cps-1a2b3c4d-s15",
                "cps-1a2b3c4d-s"
            ),
            Some("cps-1a2b3c4d-s15")
        );
    }
}
