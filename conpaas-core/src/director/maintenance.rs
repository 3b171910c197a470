//! Background work every director runs beside its requests: reconciliation of the starts a
//! crash interrupted and the reaper of VMs that outlived their row, now and then regularly.
//! One library call, so an embedder of the router gets the same crash recovery as
//! `director serve`.

use super::metrics::MaintenanceAction;
use std::future::Future;
use std::time::Duration;

use super::audit::{AuditContext, AuditOutcome, Event};
use super::{Director, Error};
use crate::model::ErrorChain;
use crate::model::ServiceId;
use crate::store;

/// How old a VM without a row must be before the reaper terminates it, by default.
pub const DEFAULT_REAP_GRACE: Duration = crate::config::DEFAULT_REAP_GRACE;

/// How often maintenance runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MaintenanceSettings {
    /// The time between two passes (the first runs at once).
    pub interval: Duration,
    /// How old a row without a VM must be before it is undone; `None` means
    /// [`Director::reconcile_grace`] (the start timeout plus a minute), which never touches a
    /// start still running in this process or another replica.
    pub reconcile_grace: Option<Duration>,
    /// How old a VM of this installation without a service row must be before the reaper
    /// terminates it. A row is written before its VM is asked for, so a VM without a row is
    /// never one still being started (by this process or another replica); the grace only
    /// absorbs clock skew between the cloud and the director.
    pub reap_grace: Duration,
}

impl MaintenanceSettings {
    /// A pass every five minutes with the safe grace period.
    pub fn recommended() -> Self {
        MaintenanceSettings {
            interval: crate::config::DEFAULT_MAINTENANCE_INTERVAL,
            reconcile_grace: None,
            reap_grace: DEFAULT_REAP_GRACE,
        }
    }

    /// The `[director]` keys `MAINTENANCE_INTERVAL`, `RECONCILE_GRACE` and `REAP_GRACE`.
    pub fn from_config(config: &crate::config::DirectorConfig) -> Self {
        MaintenanceSettings {
            interval: config.maintenance_interval,
            reconcile_grace: config.reconcile_grace,
            reap_grace: config.reap_grace,
        }
    }

    /// `recommended` with another interval.
    pub fn every(interval: Duration) -> Self {
        MaintenanceSettings {
            interval,
            ..Self::recommended()
        }
    }

    /// These settings with another grace period (tests shorten it).
    pub fn with_reconcile_grace(mut self, grace: Duration) -> Self {
        self.reconcile_grace = Some(grace);
        self
    }

    /// These settings with another reaper grace period.
    pub fn with_reap_grace(mut self, grace: Duration) -> Self {
        self.reap_grace = grace;
        self
    }
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MaintenanceReport {
    /// Interrupted starts undone (VM terminated, row deleted, credit refunded).
    pub reconciled: usize,
    /// VMs without a row terminated by the reaper.
    pub reaped: usize,
    /// Credit charges deferred while the database failed, now applied.
    pub deferred_charges: usize,
    /// Reconciliation and the reaper did not run: another director sharing the database
    /// held their lease ([`Store::try_lease`](crate::store::Store::try_lease)), or it could
    /// not be checked.
    pub skipped: bool,
}

/// The name of the lease of reconciliation and the reaper (one replica at a time).
pub const MAINTENANCE_LEASE: &str = "maintenance";

/// What one reaper pass found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReapReport {
    /// VMs of this installation the clouds listed.
    pub listed: usize,
    /// Of those, VMs without a row, older than the grace period, terminated.
    pub reaped: Vec<(String, String)>,
    /// VMs without a row still within the grace period (reaped by a later pass).
    pub young: usize,
    /// Clouds that could not list their VMs (or terminate one), with why.
    pub failures: Vec<(String, String)>,
}

impl Director {
    /// One maintenance pass; failures are logged and the pass goes on with the next job.
    /// Its audit events are the `director`'s.
    pub async fn maintenance_pass(&self, settings: &MaintenanceSettings) -> MaintenanceReport {
        AuditContext::director()
            .scope(self.maintenance_pass_inner(settings))
            .await
    }

    async fn maintenance_pass_inner(&self, settings: &MaintenanceSettings) -> MaintenanceReport {
        let grace = settings
            .reconcile_grace
            .unwrap_or_else(|| self.reconcile_grace());
        // This process's own deferred charges, whoever holds the lease.
        let mut report = MaintenanceReport {
            deferred_charges: self.apply_deferred_charges().await,
            ..MaintenanceReport::default()
        };
        let metrics = &self.inner.metrics;
        metrics.maintenance(MaintenanceAction::DeferredCharges, report.deferred_charges);
        let store = self.inner.store.clone();
        let lease = match tokio::task::spawn_blocking(move || store.try_lease(MAINTENANCE_LEASE))
            .await
        {
            Ok(Ok(Some(lease))) => lease,
            Ok(Ok(None)) => {
                tracing::info!("maintenance pass skipped: another director holds its lease");
                report.skipped = true;
                return report;
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %ErrorChain(&error), "maintenance pass skipped: cannot take its lease");
                report.skipped = true;
                return report;
            }
            Err(_) => {
                report.skipped = true;
                return report;
            }
        };
        // Paired with "maintenance pass done": how operators (and conpaas-bin/tests/replicas.rs)
        // see which replica held the lease when.
        tracing::debug!("maintenance pass: took the lease");
        match self.reconcile(grace).await {
            Ok(0) => {}
            Ok(n_undone) => {
                report.reconciled = n_undone;
                tracing::info!(n_undone, "reconciled interrupted service starts");
            }
            Err(error) => tracing::warn!(error = %ErrorChain(&error), "reconciliation failed"),
        }
        match self.reap(settings.reap_grace).await {
            Ok(reaped) => {
                report.reaped = reaped.reaped.len();
                for (cloud, failure) in &reaped.failures {
                    tracing::warn!(cloud, failure, "the reaper could not check a cloud");
                }
            }
            Err(error) => tracing::warn!(error = %ErrorChain(&error), "the reaper failed"),
        }
        metrics.maintenance(MaintenanceAction::Reconciled, report.reconciled);
        metrics.maintenance(MaintenanceAction::Reaped, report.reaped);
        // Logged while the lease is still held, so that no other replica's pass can be seen
        // to begin before this one ends.
        tracing::debug!(
            reconciled = report.reconciled,
            reaped = report.reaped,
            "maintenance pass done"
        );
        // Released (its session closed) off the async workers.
        let _ = tokio::task::spawn_blocking(move || drop(lease)).await;
        report
    }

    /// The prefix of the client tokens of this installation's VMs.
    pub fn token_prefix(&self) -> String {
        format!("cps-{}-s", self.inner.installation_tag)
    }

    /// The reaper: lists this installation's VMs on every cloud (by the client-token prefix
    /// its starts use, so other installations sharing an account are never touched) and
    /// terminates those whose service has no row (or whose row records another VM) and that
    /// are older than `grace`. A VM whose
    /// cloud gives no creation time is aged from the first pass that saw it. Rows are read
    /// after the VMs are listed, and a row is always written before its VM is asked for, so a
    /// VM being started (here or in another replica) always has its row.
    pub async fn reap(&self, grace: Duration) -> Result<ReapReport, Error> {
        let prefix = self.token_prefix();
        let mut report = ReapReport::default();
        let mut listed = Vec::new();
        for registered in self.inner.clouds.iter() {
            match registered.cloud().list_nodes(&prefix).await {
                Ok(nodes) => listed.extend(nodes.into_iter().map(|node| (registered, node))),
                Err(crate::cloud::Error::Unsupported { .. }) => {
                    tracing::debug!(cloud = registered.name(), "the cloud cannot list its VMs");
                }
                Err(error) => report
                    .failures
                    .push((registered.name().to_owned(), ErrorChain(&error).to_string())),
            }
        }
        report.listed = listed.len();
        let sids: Vec<ServiceId> = listed
            .iter()
            .filter_map(|(_, node)| sid_of_token(&prefix, &node.client_token))
            .collect();
        let existing = self
            .inner
            .store
            .run(move |conn| store::service_vms(conn, &sids))
            .await?;
        let now = self.now();
        let mut seen_now = Vec::new();
        for (registered, node) in listed {
            let Some(sid) = sid_of_token(&prefix, &node.client_token) else {
                continue;
            };
            // A row keeps its VM: the one it records, or (no VM recorded yet) whatever its start
            // is creating. Another VM under the row's token (a duplicate create) is an orphan.
            if let Ok(index) = existing.binary_search_by_key(&sid.0, |(found, _)| found.0) {
                match &existing[index].1 {
                    None => continue,
                    Some(recorded) if *recorded == node.vmid => continue,
                    Some(_) => {}
                }
            }
            let key = format!("{}/{}", registered.name(), node.vmid);
            seen_now.push(key.clone());
            let old_enough = match node.created {
                Some(created) => (now - created).to_std().is_ok_and(|age| age >= grace),
                None => (now - self.first_seen(&key, now))
                    .to_std()
                    .is_ok_and(|age| age >= grace),
            };
            if !old_enough {
                report.young += 1;
                continue;
            }
            match registered.cloud().kill_node(&node.vmid).await {
                Ok(()) => {
                    tracing::warn!(cloud = registered.name(), vmid = %node.vmid, sid = %sid, "reaped a VM that had no service row");
                    self.audit(
                        Event::new("service.reaped", AuditOutcome::Ok)
                            .sid(sid)
                            .detail("cloud", registered.name())
                            .detail("vmid", node.vmid.clone()),
                    );
                    report
                        .reaped
                        .push((registered.name().to_owned(), node.vmid.clone()));
                }
                Err(error) => report.failures.push((
                    registered.name().to_owned(),
                    format!("cannot terminate {}: {}", node.vmid, ErrorChain(&error)),
                )),
            }
        }
        self.forget_unseen(&seen_now);
        Ok(report)
    }

    /// When the reaper first saw the VM `key` without a row.
    fn first_seen(
        &self,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> chrono::DateTime<chrono::Utc> {
        let mut seen = self
            .inner
            .unaged_vms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *seen.entry(key.to_owned()).or_insert(now)
    }

    /// Drops the first-seen times of VMs no longer listed without a row.
    fn forget_unseen(&self, still_seen: &[String]) {
        let mut seen = self
            .inner
            .unaged_vms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.retain(|key, _| still_seen.contains(key));
    }

    /// [`run_maintenance_with`](Self::run_maintenance_with) the recommended settings (a pass
    /// at once, then every five minutes). Spawn it beside the server:
    /// `tokio::spawn(director.clone().run_maintenance(shutdown))`.
    pub async fn run_maintenance(self, shutdown: impl Future<Output = ()>) {
        self.run_maintenance_with(MaintenanceSettings::recommended(), shutdown)
            .await;
    }

    /// Runs [`maintenance_pass`](Self::maintenance_pass) at once and then every
    /// `settings.interval` until `shutdown` completes; a pass in progress is finished first.
    pub async fn run_maintenance_with(
        self,
        settings: MaintenanceSettings,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut every = tokio::time::interval(settings.interval.max(Duration::from_millis(10)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = every.tick() => {}
            }
            self.maintenance_pass(&settings).await;
        }
        tracing::debug!("maintenance stopped");
    }
}

/// The service id of one of this installation's client tokens (`cps-<tag>-s<sid>`).
fn sid_of_token(prefix: &str, token: &str) -> Option<ServiceId> {
    let digits = token.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(ServiceId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_service() {
        assert_eq!(
            sid_of_token("cps-ab12cd34-s", "cps-ab12cd34-s17"),
            Some(ServiceId(17))
        );
        for other in [
            "cps-ffffffff-s17",
            "cps-ab12cd34-s",
            "cps-ab12cd34-s1x",
            "cps-ab12cd34-s-1",
        ] {
            assert_eq!(sid_of_token("cps-ab12cd34-s", other), None, "{other}");
        }
    }
}
