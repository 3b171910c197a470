//! The clouds of one director: `default` is `[iaas]`, every `OTHER_CLOUDS` name its own section.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

#[cfg(feature = "ec2")]
use super::Ec2Cloud;
#[cfg(feature = "opennebula")]
use super::OpenNebulaCloud;
use super::provider::{Cloud, Error, Node, NodeRequest, NodeState};
use super::{CloudSettings, DriverSettings, DummyCloud};

/// The name clients give the `[iaas]` cloud (stored as `iaas` in `service.cloud`).
pub const DEFAULT_CLOUD_ALIAS: &str = "default";

/// Every configured cloud, the default one first.
#[derive(Debug, Clone)]
pub struct CloudRegistry {
    clouds: Vec<(CloudSettings, Arc<dyn Cloud>)>,
}

impl CloudRegistry {
    /// Builds the drivers of `settings` (the default cloud first). Dummy clouds keep their
    /// VMs' user-data under `dummy_dir/<cloud name>/`... for the default cloud directly in
    /// `dummy_dir`, so that `DATA/dummy-cloud/<vmid>.sh` is where operators look.
    pub fn new<'a>(
        settings: impl IntoIterator<Item = &'a CloudSettings>,
        dummy_dir: &Path,
    ) -> Self {
        let clouds = settings
            .into_iter()
            .map(|cloud| {
                let driver: Arc<dyn Cloud> = match &cloud.driver {
                    DriverSettings::Dummy => {
                        let dir = if cloud.is_default() {
                            dummy_dir.to_owned()
                        } else {
                            dummy_dir.join(&cloud.name)
                        };
                        Arc::new(DummyCloud::new(cloud.name.clone(), dir))
                    }
                    #[cfg(feature = "ec2")]
                    DriverSettings::Ec2(ec2) => {
                        match Ec2Cloud::new(cloud.name.clone(), ec2.clone()) {
                            Ok(driver) => Arc::new(driver),
                            Err(error) => {
                                tracing::warn!(cloud = %cloud.name, %error, "the EC2 driver cannot start");
                                Arc::new(Unavailable {
                                    name: cloud.name.clone(),
                                    driver: "ec2",
                                })
                            }
                        }
                    }
                    #[cfg(feature = "opennebula")]
                    DriverSettings::OpenNebula(one) => {
                        match OpenNebulaCloud::new(cloud.name.clone(), one) {
                            Ok(driver) => Arc::new(driver),
                            Err(error) => {
                                tracing::warn!(cloud = %cloud.name, %error, "the OpenNebula driver cannot start");
                                Arc::new(Unavailable {
                                    name: cloud.name.clone(),
                                    driver: "opennebula",
                                })
                            }
                        }
                    }
                    #[cfg(not(feature = "ec2"))]
                    DriverSettings::Ec2(_) => not_compiled(&cloud.name, "ec2"),
                    #[cfg(not(feature = "opennebula"))]
                    DriverSettings::OpenNebula(_) => not_compiled(&cloud.name, "opennebula"),
                };
                (cloud.clone(), driver)
            })
            .collect();
        CloudRegistry { clouds }
    }

    /// The cloud a client names: `default` (or `iaas`) is `[iaas]`, any other name an
    /// `OTHER_CLOUDS` section.
    pub fn get(&self, name: &str) -> Option<(&CloudSettings, &Arc<dyn Cloud>)> {
        let name = if name == DEFAULT_CLOUD_ALIAS {
            CloudSettings::DEFAULT_SECTION
        } else {
            name
        };
        self.clouds
            .iter()
            .find(|(settings, _)| settings.name == name)
            .map(|(settings, cloud)| (settings, cloud))
    }

    /// The names `/available_clouds` lists: `default`, then the other clouds in order.
    pub fn names(&self) -> Vec<String> {
        self.clouds
            .iter()
            .map(|(settings, _)| {
                if settings.is_default() {
                    DEFAULT_CLOUD_ALIAS.to_owned()
                } else {
                    settings.name.clone()
                }
            })
            .collect()
    }

    /// Every cloud with its driver, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&CloudSettings, &Arc<dyn Cloud>)> {
        self.clouds
            .iter()
            .map(|(settings, cloud)| (settings, cloud))
    }

    /// Every cloud's settings, in order (their sections go into each manager's config).
    pub fn settings(&self) -> impl Iterator<Item = &CloudSettings> {
        self.clouds.iter().map(|(settings, _)| settings)
    }
}

/// A cloud whose driver this build cannot drive yet: every operation fails with a clear
/// error instead of pretending.
#[derive(Debug)]
struct Unavailable {
    name: String,
    driver: &'static str,
}

impl Unavailable {
    fn error(&self) -> Error {
        Error::Refused {
            code: "DriverUnavailable".into(),
            message: format!(
                "the {} driver of cloud {} is not available",
                self.driver, self.name
            ),
        }
    }
}

#[async_trait]
impl Cloud for Unavailable {
    fn name(&self) -> &str {
        &self.name
    }

    fn driver(&self) -> &'static str {
        self.driver
    }

    async fn create_node(&self, _request: NodeRequest) -> Result<Node, Error> {
        Err(self.error())
    }

    async fn kill_node(&self, _vmid: &str) -> Result<(), Error> {
        Err(self.error())
    }

    async fn node_state(&self, _vmid: &str) -> Result<NodeState, Error> {
        Err(self.error())
    }

    async fn find_node(&self, _client_token: &str) -> Result<Option<String>, Error> {
        Err(self.error())
    }

    async fn probe(&self) -> Result<(), Error> {
        Err(self.error())
    }
}

/// The driver of a section whose Cargo feature this build leaves out: every call answers that
/// the cloud is unavailable.
#[cfg(not(all(feature = "ec2", feature = "opennebula")))]
fn not_compiled(name: &str, driver: &'static str) -> Arc<dyn Cloud> {
    tracing::warn!(cloud = %name, driver, "this build has no {driver} driver (conpaas-core's `{driver}` feature is off)");
    Arc::new(Unavailable {
        name: name.to_owned(),
        driver,
    })
}
