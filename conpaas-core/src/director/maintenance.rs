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

pub use crate::config::ReaperMode;

/// How old a VM without a row must be before the reaper terminates it, by default.
pub const DEFAULT_REAP_GRACE: Duration = crate::config::DEFAULT_REAP_GRACE;

/// How often maintenance runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MaintenanceSettings {
    /// The time between two passes (the first runs at once).
    pub interval: Duration,
    /// How old a `starting` row must be before reconciliation claims and undoes it; `None`
    /// means [`Director::reconcile_grace`] (the start timeout plus a minute). Starts running in
    /// this process are never touched; a shorter grace loses no VM or credit in another
    /// replica either (the start sees the claim and terminates its own VM), but that start
    /// fails.
    pub reconcile_grace: Option<Duration>,
    /// How old a VM of this installation without a service row must be before the reaper
    /// terminates it. A row is written before its VM is asked for, so a VM without a row is
    /// never one still being started (by this process or another replica); the grace only
    /// absorbs clock skew between the cloud and the director.
    pub reap_grace: Duration,
    /// What the reaper does: terminate (`on`), only report (`report`), nothing (`off`).
    pub reaper: ReaperMode,
}

impl MaintenanceSettings {
    /// A pass every five minutes with the safe grace period.
    pub fn recommended() -> Self {
        MaintenanceSettings {
            interval: crate::config::DEFAULT_MAINTENANCE_INTERVAL,
            reconcile_grace: None,
            reap_grace: DEFAULT_REAP_GRACE,
            reaper: ReaperMode::On,
        }
    }

    /// The `[director]` keys `MAINTENANCE_INTERVAL`, `RECONCILE_GRACE`, `REAP_GRACE` and
    /// `REAPER`.
    pub fn from_config(config: &crate::config::DirectorConfig) -> Self {
        MaintenanceSettings {
            interval: config.maintenance_interval,
            reconcile_grace: config.reconcile_grace,
            reap_grace: config.reap_grace,
            reaper: config.reaper,
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

    /// These settings with another reaper mode.
    pub fn with_reaper(mut self, mode: ReaperMode) -> Self {
        self.reaper = mode;
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

/// Why the reaper would terminate a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReapReason {
    /// No service row has the VM's service id.
    NoRow,
    /// The service's row records another VM (this one is a duplicate create).
    AnotherVm {
        /// The VM the row records.
        recorded: String,
    },
}

impl std::fmt::Display for ReapReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReapReason::NoRow => f.write_str("no service row"),
            ReapReason::AnotherVm { recorded } => {
                write!(f, "its service row records another VM ({recorded})")
            }
        }
    }
}

/// A VM of this installation that no service row records.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReapCandidate {
    /// The cloud's name.
    pub cloud: String,
    /// The cloud's id of the VM.
    pub vmid: String,
    /// The service id of its client token.
    pub sid: ServiceId,
    /// How old it is (by the cloud's creation time, else since this process first saw it).
    pub age: Duration,
    /// Older than the grace period: a pass that may terminate terminates it.
    pub due: bool,
    /// Why it has no row.
    pub reason: ReapReason,
}

/// What one reaper pass found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReapReport {
    /// VMs of this installation the clouds listed.
    pub listed: usize,
    /// Of those, VMs without a row, older than the grace period, terminated.
    pub reaped: Vec<(String, String)>,
    /// VMs without a row older than the grace period that the pass left running: the mode is
    /// `report` or the reaper is held ([`ReapReport::hold`]). A dry run
    /// ([`Director::reap_dry_run`]) lists here every VM without a row, young ones too.
    pub withheld: Vec<ReapCandidate>,
    /// VMs without a row still within the grace period (reaped by a later pass).
    pub young: usize,
    /// Clouds that could not list their VMs (or terminate one), with why.
    pub failures: Vec<(String, String)>,
    /// The highest service id among the VMs listed.
    pub highest_listed_sid: Option<ServiceId>,
    /// The highest service id the database had given, before this pass.
    pub highest_allocated_sid: Option<ServiceId>,
    /// A listed VM's service id is above the highest the database gave: the database is older
    /// than the clouds (a restored backup) and the reaper is held from this pass on.
    pub database_behind: bool,
    /// The reaper is held: it terminates nothing until the operator confirms
    /// ([`Director::confirm_restore`], `director reaper --confirm-restore`).
    pub hold: Option<store::ReaperHold>,
}

/// What [`Director::confirm_restore`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreConfirmation {
    /// VMs of this installation the clouds listed.
    pub listed: usize,
    /// The highest service id among them.
    pub highest_listed_sid: Option<ServiceId>,
    /// The hold it ended, if the reaper was held.
    pub hold: Option<store::ReaperHold>,
    /// The highest service id the database had given before.
    pub allocated_before: ServiceId,
    /// The highest service id given now: new services get higher ones.
    pub allocated_after: ServiceId,
}

/// The VMs one survey of the clouds found.
struct Survey {
    listed: usize,
    rowless: Vec<ReapCandidate>,
    failures: Vec<(String, String)>,
    highest_listed_sid: Option<ServiceId>,
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
        match self.reap_with(settings.reap_grace, settings.reaper).await {
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

    /// The tag of this installation: 8 hex digits of the MD5 of its CA certificate.
    pub fn installation_tag(&self) -> &str {
        &self.inner.installation_tag
    }

    /// The prefix of the client tokens of this installation's VMs.
    pub fn token_prefix(&self) -> String {
        format!("cps-{}-s", self.inner.installation_tag)
    }

    /// The reaper, as `REAPER = on` runs it: [`reap_with`](Self::reap_with) `ReaperMode::On`.
    pub async fn reap(&self, grace: Duration) -> Result<ReapReport, Error> {
        self.reap_with(grace, ReaperMode::On).await
    }

    /// The reaper: lists this installation's VMs on every cloud (by the client-token prefix
    /// its starts use, so other installations sharing an account are never touched) and
    /// terminates those whose service has no row (or whose row records another VM) and that
    /// are older than `grace`. A VM whose
    /// cloud gives no creation time is aged from the first pass that saw it. Rows are read
    /// after the VMs are listed, and a row is always written before its VM is asked for, so a
    /// VM being started (here or in another replica) always has its row.
    ///
    /// It never acts on a database that cannot vouch for the clouds: service ids are never
    /// reused, so a listed VM whose id is above the highest the database gave proves the
    /// database older than the clouds (a restored backup). Then the service id counter is
    /// moved past it (no new service takes that VM's client token) and the reaper is held,
    /// recorded in the database: it terminates nothing, reporting (a `warn` line each pass,
    /// the `conpaas_reaper_held` and `conpaas_reaper_withheld_vms` gauges, a `reaper.held`
    /// audit event when the hold begins) until [`confirm_restore`](Self::confirm_restore).
    /// `ReaperMode::Report` reports the same way and terminates nothing; `ReaperMode::Off`
    /// does nothing.
    pub async fn reap_with(&self, grace: Duration, mode: ReaperMode) -> Result<ReapReport, Error> {
        if mode == ReaperMode::Off {
            tracing::debug!("the reaper is off (REAPER = off)");
            self.inner.metrics.reaper(false, 0);
            return Ok(ReapReport::default());
        }
        let survey = self.survey(grace).await;
        let tag = self.inner.installation_tag.clone();
        let listed_sid = survey.highest_listed_sid;
        let (allocated, check) = self
            .inner
            .store
            .run(move |conn| -> Result<_, store::Error> {
                let allocated = store::highest_allocated_sid(conn)?;
                let check = store::hold_reaper(conn, &tag, listed_sid)?;
                Ok((allocated, check))
            })
            .await?;
        let mut report = ReapReport {
            listed: survey.listed,
            failures: survey.failures,
            young: survey.rowless.iter().filter(|vm| !vm.due).count(),
            highest_listed_sid: listed_sid,
            highest_allocated_sid: Some(allocated),
            database_behind: listed_sid.is_some_and(|listed| listed.0 > allocated.0),
            hold: check.hold,
            ..ReapReport::default()
        };
        let due: Vec<ReapCandidate> = survey.rowless.into_iter().filter(|vm| vm.due).collect();
        if check.began
            && let Some(hold) = &report.hold
        {
            self.audit(
                Event::new("reaper.held", AuditOutcome::Ok)
                    .detail("listed_sid", hold.listed_sid.0)
                    .detail("allocated_sid", hold.allocated_sid.0)
                    .detail("rowless_vms", due.len()),
            );
        }
        if let Some(hold) = &report.hold {
            tracing::warn!(
                listed_sid = %hold.listed_sid,
                allocated_sid = %hold.allocated_sid,
                since = %hold.since,
                withheld = due.len(),
                vms = %vm_list(&due),
                "the reaper terminates nothing: a cloud listed a VM whose service id this \
                 database never gave, so the database is older than the cloud (a restored \
                 backup?); once the VMs started since are dealt with, confirm with `director \
                 reaper --confirm-restore` (docs/operations.md, \"Backups\")"
            );
            report.withheld = due;
        } else if mode == ReaperMode::Report {
            if !due.is_empty() {
                tracing::warn!(
                    withheld = due.len(),
                    vms = %vm_list(&due),
                    "REAPER = report: VMs of this installation without a service row left running"
                );
            }
            report.withheld = due;
        } else {
            for candidate in due {
                let Some(registered) = self.inner.clouds.get(&candidate.cloud) else {
                    continue;
                };
                match registered.cloud().kill_node(&candidate.vmid).await {
                    Ok(()) => {
                        tracing::warn!(cloud = %candidate.cloud, vmid = %candidate.vmid, sid = %candidate.sid, "reaped a VM that had no service row");
                        self.audit(
                            Event::new("service.reaped", AuditOutcome::Ok)
                                .sid(candidate.sid)
                                .detail("cloud", candidate.cloud.clone())
                                .detail("vmid", candidate.vmid.clone()),
                        );
                        report.reaped.push((candidate.cloud, candidate.vmid));
                    }
                    Err(error) => report.failures.push((
                        candidate.cloud,
                        format!(
                            "cannot terminate {}: {}",
                            candidate.vmid,
                            ErrorChain(&error)
                        ),
                    )),
                }
            }
        }
        self.inner
            .metrics
            .reaper(report.hold.is_some(), report.withheld.len());
        Ok(report)
    }

    /// What a reaper pass in `mode` would do, doing nothing (`director reaper --dry-run`):
    /// every VM without a row in [`ReapReport::withheld`] (with whether it is due), the hold
    /// in force, and whether this pass would begin one ([`ReapReport::database_behind`]).
    pub async fn reap_dry_run(&self, grace: Duration) -> Result<ReapReport, Error> {
        let survey = self.survey(grace).await;
        let (allocated, installation) = self
            .inner
            .store
            .run(|conn| -> Result<_, store::Error> {
                Ok((
                    store::highest_allocated_sid(conn)?,
                    store::find_installation(conn)?,
                ))
            })
            .await?;
        let listed_sid = survey.highest_listed_sid;
        Ok(ReapReport {
            listed: survey.listed,
            young: survey.rowless.iter().filter(|vm| !vm.due).count(),
            withheld: survey.rowless,
            failures: survey.failures,
            highest_listed_sid: listed_sid,
            highest_allocated_sid: Some(allocated),
            database_behind: listed_sid.is_some_and(|listed| listed.0 > allocated.0),
            hold: installation.and_then(|found| found.hold),
            ..ReapReport::default()
        })
    }

    /// The operator's word after restoring a database (`director reaper --confirm-restore`):
    /// lists every cloud, moves the service id counter past the highest id listed (so that no
    /// new service reuses the id, hence the client token, of a VM started after the backup)
    /// and ends the reaper's hold, in one transaction; the next pass terminates the VMs
    /// without a row. Refused, changing nothing, when a cloud cannot list its VMs.
    pub async fn confirm_restore(&self) -> Result<RestoreConfirmation, Error> {
        let survey = self.survey(Duration::MAX).await;
        if !survey.failures.is_empty() {
            let failures: Vec<String> = survey
                .failures
                .iter()
                .map(|(cloud, why)| format!("{cloud}: {why}"))
                .collect();
            return Err(Error::CloudsUnlisted(failures.join("; ")));
        }
        let tag = self.inner.installation_tag.clone();
        let listed_sid = survey.highest_listed_sid;
        let release = self
            .inner
            .store
            .run(move |conn| store::release_reaper(conn, &tag, listed_sid))
            .await?;
        let mut event = Event::new("reaper.confirmed", AuditOutcome::Ok)
            .detail("listed_vms", survey.listed)
            .detail("allocated_before", release.allocated_before.0)
            .detail("allocated_after", release.allocated_after.0);
        if let Some(hold) = &release.hold {
            event = event.detail("held_since", hold.since.to_string());
        }
        self.audit(event);
        self.inner.metrics.reaper(false, 0);
        Ok(RestoreConfirmation {
            listed: survey.listed,
            highest_listed_sid: listed_sid,
            hold: release.hold,
            allocated_before: release.allocated_before,
            allocated_after: release.allocated_after,
        })
    }

    /// Lists this installation's VMs on every cloud and finds those without a row, each aged
    /// against `grace`.
    async fn survey(&self, grace: Duration) -> Survey {
        let prefix = self.token_prefix();
        let mut failures = Vec::new();
        let mut listed = Vec::new();
        for registered in self.inner.clouds.iter() {
            match registered.cloud().list_nodes(&prefix).await {
                Ok(nodes) => listed.extend(nodes.into_iter().map(|node| (registered, node))),
                Err(crate::cloud::Error::Unsupported { .. }) => {
                    tracing::debug!(cloud = registered.name(), "the cloud cannot list its VMs");
                }
                Err(error) => {
                    failures.push((registered.name().to_owned(), ErrorChain(&error).to_string()))
                }
            }
        }
        let sids: Vec<ServiceId> = listed
            .iter()
            .filter_map(|(_, node)| sid_of_token(&prefix, &node.client_token))
            .collect();
        let agent_ids: Vec<i32> = listed
            .iter()
            .filter_map(|(_, node)| agent_of_token(&prefix, &node.client_token))
            .map(|(_, id)| id)
            .collect();
        let highest_listed_sid = sids.iter().copied().max_by_key(|sid| sid.0);
        let mut survey = Survey {
            listed: listed.len(),
            rowless: Vec::new(),
            failures,
            highest_listed_sid,
        };
        let existing = match self
            .inner
            .store
            .run(move |conn| {
                Ok::<_, store::Error>((
                    store::service_vms(conn, &sids)?,
                    store::agent_vms(conn, &agent_ids)?,
                ))
            })
            .await
        {
            Ok(existing) => existing,
            Err(error) => {
                // Nothing is without a row when the rows cannot be read.
                survey
                    .failures
                    .push(("database".to_owned(), ErrorChain(&error).to_string()));
                return survey;
            }
        };
        let (existing, agents) = existing;
        let now = self.now();
        let mut seen_now = Vec::new();
        for (registered, node) in listed {
            // A row keeps its VM: the one it records, or (no VM recorded yet) whatever its start
            // is creating. Another VM under the row's token (a duplicate create) is an orphan.
            // An agent VM is kept by its own row, as a manager VM by its service's.
            let (sid, recorded) = if let Some(sid) = sid_of_token(&prefix, &node.client_token) {
                let recorded = existing
                    .binary_search_by_key(&sid.0, |(found, _)| found.0)
                    .ok()
                    .map(|index| existing[index].1.clone());
                (sid, recorded)
            } else if let Some((sid, id)) = agent_of_token(&prefix, &node.client_token) {
                let recorded = agents
                    .binary_search_by_key(&id, |(found, _, _)| *found)
                    .ok()
                    .filter(|&index| agents[index].1 == sid)
                    .map(|index| agents[index].2.clone());
                (sid, recorded)
            } else {
                continue;
            };
            let reason = match recorded {
                Some(None) => continue,
                Some(Some(recorded)) if recorded == node.vmid => continue,
                Some(Some(recorded)) => ReapReason::AnotherVm { recorded },
                None => ReapReason::NoRow,
            };
            let key = format!("{}/{}", registered.name(), node.vmid);
            seen_now.push(key.clone());
            let age = match node.created {
                Some(created) => (now - created).to_std().unwrap_or(Duration::ZERO),
                None => (now - self.first_seen(&key, now))
                    .to_std()
                    .unwrap_or(Duration::ZERO),
            };
            survey.rowless.push(ReapCandidate {
                cloud: registered.name().to_owned(),
                vmid: node.vmid,
                sid,
                age,
                due: age >= grace,
                reason,
            });
        }
        self.forget_unseen(&seen_now);
        survey
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

    /// Runs [`maintenance_pass`](Self::maintenance_pass) and
    /// [`probe_clouds`](Self::probe_clouds) at once and then every `settings.interval` until
    /// `shutdown` completes; a pass in progress is finished first.
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
            // Each replica probes its clouds for its own gauge and readiness, lease or not.
            tokio::join!(self.probe_clouds(), self.maintenance_pass(&settings));
        }
        tracing::debug!("maintenance stopped");
    }
}

/// `cloud/vmid (service N)` of each VM, for a log line.
fn vm_list(vms: &[ReapCandidate]) -> String {
    vms.iter()
        .map(|vm| format!("{}/{} (service {})", vm.cloud, vm.vmid, vm.sid))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The service id of one of this installation's client tokens (`cps-<tag>-s<sid>`).
fn sid_of_token(prefix: &str, token: &str) -> Option<ServiceId> {
    let digits = token.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(ServiceId)
}

/// The service id and agent id of one of this installation's agent client tokens
/// (`cps-<tag>-s<sid>-a<id>`).
fn agent_of_token(prefix: &str, token: &str) -> Option<(ServiceId, i32)> {
    let rest = token.strip_prefix(prefix)?;
    let (sid, id) = rest.split_once("-a")?;
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits(sid) || !digits(id) {
        return None;
    }
    Some((ServiceId(sid.parse().ok()?), id.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_tokens_name_their_service_and_agent() {
        assert_eq!(
            agent_of_token("cps-ab12cd34-s", "cps-ab12cd34-s17-a3"),
            Some((ServiceId(17), 3))
        );
        assert_eq!(sid_of_token("cps-ab12cd34-s", "cps-ab12cd34-s17-a3"), None);
        for other in [
            "cps-ab12cd34-s17",
            "cps-ab12cd34-s17-a",
            "cps-ab12cd34-s-a3",
            "cps-ab12cd34-s17-ax",
            "cps-ffffffff-s17-a3",
        ] {
            assert_eq!(agent_of_token("cps-ab12cd34-s", other), None, "{other}");
        }
    }

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
