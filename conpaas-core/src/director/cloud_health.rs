//! Whether each cloud answers with its credentials: probed when maintenance starts (so at
//! `serve`) and at each maintenance interval after, one warning line per failing cloud, the
//! `conpaas_cloud_up` gauge, and `/readyz`'s "degraded".
//!
//! A cloud down does not make the director unready: users of the other clouds, logins,
//! certificates and managers' credit calls are served all the same, so a balancer must not
//! take the replica out. Readiness says "degraded" instead.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Director;
use crate::model::ErrorChain;

/// How long one cloud's probe may take (cpscheck allows the same).
pub const CLOUD_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the last probe of one cloud found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloudHealth {
    /// The cloud's name (its section: `iaas`, or an `OTHER_CLOUDS` name).
    pub cloud: String,
    /// Its driver (`ec2`, `opennebula`, `openstack`, `dummy`, or an embedder's).
    pub driver: &'static str,
    /// Whether it answered the probe with the configured credentials and resources.
    pub up: bool,
    /// Why not, on one line (the cloud's refusal, or the timeout); `None` when up.
    pub problem: Option<String>,
    /// When the probe ended.
    pub checked_at: DateTime<Utc>,
}

impl Director {
    /// Probes every cloud at once ([`Cloud::probe`](crate::cloud::Cloud::probe), at most
    /// [`CLOUD_PROBE_TIMEOUT`] each), records the results for [`Director::cloud_health`] and
    /// the `conpaas_cloud_up` gauge, and logs one warning per failing cloud (and one line when
    /// a cloud comes back). [`Director::run_maintenance_with`] calls it before each pass.
    pub async fn probe_clouds(&self) -> Vec<CloudHealth> {
        let mut probes = tokio::task::JoinSet::new();
        for (index, registered) in self.inner.clouds.iter().enumerate() {
            let cloud = registered.cloud().clone();
            let name = registered.name().to_owned();
            probes.spawn(async move {
                let outcome = tokio::time::timeout(CLOUD_PROBE_TIMEOUT, cloud.probe()).await;
                let problem = match outcome {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => Some(ErrorChain(&error).to_string()),
                    Err(_) => Some(format!(
                        "no answer within {} s",
                        CLOUD_PROBE_TIMEOUT.as_secs()
                    )),
                };
                (index, name, cloud.driver(), problem)
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = probes.join_next().await {
            // A driver's probe that panicked is a bug of that driver, logged by the runtime;
            // its cloud keeps its last known health.
            if let Ok((index, cloud, driver, problem)) = joined {
                let health = CloudHealth {
                    cloud,
                    driver,
                    up: problem.is_none(),
                    problem,
                    checked_at: self.now(),
                };
                results.push((index, health));
            }
        }
        results.sort_by_key(|(index, _)| *index);
        let results: Vec<CloudHealth> = results.into_iter().map(|(_, health)| health).collect();
        let mut known = self
            .inner
            .cloud_health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for health in &results {
            let was_up = known.get(&health.cloud).map(|before| before.up);
            match (&health.problem, was_up) {
                (Some(problem), _) => tracing::warn!(
                    cloud = %health.cloud,
                    driver = health.driver,
                    problem = %problem,
                    "cloud {} ({} driver) is not usable: {problem}; cpscheck tells more",
                    health.cloud,
                    health.driver,
                ),
                (None, Some(false)) => tracing::info!(
                    cloud = %health.cloud,
                    driver = health.driver,
                    "cloud {} answers again",
                    health.cloud
                ),
                (None, _) => tracing::debug!(cloud = %health.cloud, "cloud answers"),
            }
            self.inner.metrics.cloud_up(&health.cloud, health.up);
            known.insert(health.cloud.clone(), health.clone());
        }
        results
    }

    /// What the last [`probe_clouds`](Director::probe_clouds) found, by cloud name; empty
    /// before the first.
    pub fn cloud_health(&self) -> BTreeMap<String, CloudHealth> {
        self.inner
            .cloud_health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The clouds the last probe found not usable, by name.
    pub fn clouds_down(&self) -> Vec<String> {
        self.cloud_health()
            .into_values()
            .filter(|health| !health.up)
            .map(|health| health.cloud)
            .collect()
    }
}
