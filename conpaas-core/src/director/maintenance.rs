//! Background work every director runs beside its requests: reconciliation of the starts a
//! crash interrupted, now and then regularly. One library call, so an embedder of the router
//! gets the same crash recovery as `director serve`.

use std::future::Future;
use std::time::Duration;

use super::Director;

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
}

impl MaintenanceSettings {
    /// A pass every five minutes with the safe grace period.
    pub fn recommended() -> Self {
        MaintenanceSettings {
            interval: Duration::from_secs(300),
            reconcile_grace: None,
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
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MaintenanceReport {
    /// Interrupted starts undone (VM terminated, row deleted, credit refunded).
    pub reconciled: usize,
}

impl Director {
    /// One maintenance pass; failures are logged and the pass goes on with the next job.
    pub async fn maintenance_pass(&self, settings: &MaintenanceSettings) -> MaintenanceReport {
        let grace = settings
            .reconcile_grace
            .unwrap_or_else(|| self.reconcile_grace());
        let mut report = MaintenanceReport::default();
        match self.reconcile(grace).await {
            Ok(0) => {}
            Ok(n_undone) => {
                report.reconciled = n_undone;
                tracing::info!(n_undone, "reconciled interrupted service starts");
            }
            Err(error) => tracing::warn!(%error, "reconciliation failed"),
        }
        report
    }

    /// Runs [`maintenance_pass`](Self::maintenance_pass) at once and then every
    /// `settings.interval` until `shutdown` completes; a pass in progress is finished first.
    /// Spawn it beside the server: `tokio::spawn(director.clone().run_maintenance(..))`.
    pub async fn run_maintenance(
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
