//! The clouds of one director: any [`Cloud`] registered under a name. The configured ones
//! (`default` is `[iaas]`, every `OTHER_CLOUDS` name its own section) are registrations like
//! an embedder's own.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use super::provider::{Cloud, Error, Node, NodeRequest, NodeState};
use super::{CloudSettings, DriverSettings, DummyCloud};

/// The name clients give the default cloud (`[iaas]`, stored as `iaas` in `service.cloud`).
pub const DEFAULT_CLOUD_ALIAS: &str = "default";

/// One cloud of the registry: its driver, the name services record, and the section copied
/// into each manager's `config.cfg`.
#[derive(Clone)]
pub struct RegisteredCloud {
    name: String,
    cloud: Arc<dyn Cloud>,
    section: Vec<(String, String)>,
    settings: Option<CloudSettings>,
}

impl std::fmt::Debug for RegisteredCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The section may hold credentials in clear: only its keys are shown.
        let keys: Vec<&str> = self.section.iter().map(|(key, _)| key.as_str()).collect();
        f.debug_struct("RegisteredCloud")
            .field("name", &self.name)
            .field("driver", &self.cloud.driver())
            .field("section_keys", &keys)
            .finish_non_exhaustive()
    }
}

impl RegisteredCloud {
    /// The name stored in `service.cloud` and given in `/start/<type>/<cloud>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The driver.
    pub fn cloud(&self) -> &Arc<dyn Cloud> {
        &self.cloud
    }

    /// The `KEY = value` lines copied into each manager's `config.cfg` under `[name]` (1.2
    /// managers start their agents on the clouds they find there).
    pub fn section(&self) -> &[(String, String)] {
        &self.section
    }

    /// The director.cfg section this cloud was built from; `None` for a cloud registered by
    /// an embedder.
    pub fn settings(&self) -> Option<&CloudSettings> {
        self.settings.as_ref()
    }
}

/// A registry could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two clouds were registered under one name.
    #[error("cloud {0:?} is registered twice")]
    Duplicate(String),
    /// The name is empty, `default` (the alias of the default cloud) or holds characters a
    /// URL path segment or an INI section header cannot carry.
    #[error("{0:?} cannot name a cloud: use letters, digits, '-', '_' or '.'")]
    InvalidName(String),
    /// [`CloudRegistryBuilder::default_cloud`] names no registered cloud.
    #[error("the default cloud {0:?} is not registered")]
    UnknownDefault(String),
    /// The registry has no cloud: nothing could ever be started.
    #[error("no cloud is registered")]
    Empty,
}

/// Builds a [`CloudRegistry`]: the configured clouds, an embedder's own, or both.
///
/// ```
/// use std::sync::Arc;
/// use conpaas_core::cloud::{CloudRegistry, DummyCloud};
///
/// let dir = tempfile::tempdir()?;
/// let registry = CloudRegistry::builder()
///     .cloud("local", Arc::new(DummyCloud::new("local", dir.path())))
///     .build()?;
/// assert_eq!(registry.names(), ["local"]);
/// assert_eq!(registry.client_names(), ["default"]);
/// assert_eq!(registry.get("default").map(|c| c.name()), Some("local"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct CloudRegistryBuilder {
    clouds: Vec<RegisteredCloud>,
    default: Option<String>,
}

impl CloudRegistryBuilder {
    /// Registers `cloud` under `name`, with no section for the managers' `config.cfg`. The
    /// first cloud registered is the default one unless [`default_cloud`](Self::default_cloud)
    /// or a configured `[iaas]` says otherwise.
    pub fn cloud(self, name: impl Into<String>, cloud: Arc<dyn Cloud>) -> Self {
        self.cloud_with_section(name, cloud, Vec::new())
    }

    /// Registers `cloud` under `name`, copying `section` (upper-case keys) into every
    /// manager's `config.cfg` as `[name]`.
    pub fn cloud_with_section(
        mut self,
        name: impl Into<String>,
        cloud: Arc<dyn Cloud>,
        section: Vec<(String, String)>,
    ) -> Self {
        self.clouds.push(RegisteredCloud {
            name: name.into(),
            cloud,
            section,
            settings: None,
        });
        self
    }

    /// Makes the cloud registered (or to be registered) under `name` the one users call
    /// `default`.
    pub fn default_cloud(mut self, name: impl Into<String>) -> Self {
        self.default = Some(name.into());
        self
    }

    /// Registers the built-in driver of a director.cfg cloud section. Dummy clouds keep their
    /// VMs' user-data in `dummy_dir` (the default cloud) or `dummy_dir/<name>/`, so that
    /// `DATA/dummy-cloud/<vmid>.sh` is where operators look.
    pub fn configured(mut self, settings: &CloudSettings, dummy_dir: &Path) -> Self {
        let cloud = built_in_driver(settings, dummy_dir);
        if settings.is_default() && self.default.is_none() {
            self.default = Some(settings.name.clone());
        }
        self.clouds.push(RegisteredCloud {
            name: settings.name.clone(),
            cloud,
            section: settings.section.clone(),
            settings: Some(settings.clone()),
        });
        self
    }

    /// Registers every cloud of a director.cfg (the default one first).
    pub fn configured_all<'a>(
        self,
        settings: impl IntoIterator<Item = &'a CloudSettings>,
        dummy_dir: &Path,
    ) -> Self {
        settings
            .into_iter()
            .fold(self, |builder, cloud| builder.configured(cloud, dummy_dir))
    }

    /// Checks names and builds the registry, the default cloud first.
    pub fn build(self) -> Result<CloudRegistry, RegistryError> {
        let CloudRegistryBuilder {
            mut clouds,
            default,
        } = self;
        if clouds.is_empty() {
            return Err(RegistryError::Empty);
        }
        for (index, cloud) in clouds.iter().enumerate() {
            // A configured section name was accepted by `config` already (1.2 files may use
            // names this rule would refuse).
            let name_ok = if cloud.settings.is_some() {
                !cloud.name.is_empty() && cloud.name != DEFAULT_CLOUD_ALIAS
            } else {
                valid_name(&cloud.name)
            };
            if !name_ok {
                return Err(RegistryError::InvalidName(cloud.name.clone()));
            }
            if clouds[..index].iter().any(|other| other.name == cloud.name) {
                return Err(RegistryError::Duplicate(cloud.name.clone()));
            }
        }
        if let Some(default) = default {
            let Some(index) = clouds.iter().position(|cloud| cloud.name == default) else {
                return Err(RegistryError::UnknownDefault(default));
            };
            let chosen = clouds.remove(index);
            clouds.insert(0, chosen);
        }
        Ok(CloudRegistry { clouds })
    }
}

/// A cloud name must be a URL path segment (`/start/php/<name>`) and an INI section header.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != DEFAULT_CLOUD_ALIAS
        && name.len() <= 64
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

/// The built-in driver of a configured cloud.
fn built_in_driver(cloud: &CloudSettings, dummy_dir: &Path) -> Arc<dyn Cloud> {
    match &cloud.driver {
        DriverSettings::Dummy => {
            let dir = if cloud.is_default() {
                dummy_dir.to_owned()
            } else {
                dummy_dir.join(&cloud.name)
            };
            Arc::new(DummyCloud::new(cloud.name.clone(), dir))
        }
        #[cfg(feature = "ec2")]
        DriverSettings::Ec2(ec2) => match super::Ec2Cloud::new(cloud.name.clone(), ec2.clone()) {
            Ok(driver) => Arc::new(driver),
            Err(error) => {
                tracing::warn!(cloud = %cloud.name, error = %crate::model::ErrorChain(&error), "the EC2 driver cannot start");
                Arc::new(Unavailable {
                    name: cloud.name.clone(),
                    driver: "ec2",
                })
            }
        },
        #[cfg(feature = "opennebula")]
        DriverSettings::OpenNebula(one) => {
            match super::OpenNebulaCloud::new(cloud.name.clone(), one) {
                Ok(driver) => Arc::new(driver),
                Err(error) => {
                    tracing::warn!(cloud = %cloud.name, error = %crate::model::ErrorChain(&error), "the OpenNebula driver cannot start");
                    Arc::new(Unavailable {
                        name: cloud.name.clone(),
                        driver: "opennebula",
                    })
                }
            }
        }
        #[cfg(feature = "opennebula")]
        DriverSettings::OpenNebulaXmlRpc(one) => {
            match super::OpenNebulaXmlRpcCloud::new(cloud.name.clone(), one) {
                Ok(driver) => Arc::new(driver),
                Err(error) => {
                    tracing::warn!(cloud = %cloud.name, error = %crate::model::ErrorChain(&error), "the OpenNebula XML-RPC driver cannot start");
                    Arc::new(Unavailable {
                        name: cloud.name.clone(),
                        driver: "opennebula",
                    })
                }
            }
        }
        #[cfg(feature = "openstack")]
        DriverSettings::OpenStack(openstack) => {
            match super::OpenStackCloud::new(cloud.name.clone(), openstack) {
                Ok(driver) => Arc::new(driver),
                Err(error) => {
                    tracing::warn!(cloud = %cloud.name, error = %crate::model::ErrorChain(&error), "the OpenStack driver cannot start");
                    Arc::new(Unavailable {
                        name: cloud.name.clone(),
                        driver: "openstack",
                    })
                }
            }
        }
        #[cfg(not(feature = "opennebula"))]
        DriverSettings::OpenNebulaXmlRpc(_) => not_compiled(&cloud.name, "opennebula"),
        #[cfg(not(feature = "openstack"))]
        DriverSettings::OpenStack(_) => not_compiled(&cloud.name, "openstack"),
        #[cfg(not(feature = "ec2"))]
        DriverSettings::Ec2(_) => not_compiled(&cloud.name, "ec2"),
        #[cfg(not(feature = "opennebula"))]
        DriverSettings::OpenNebula(_) => not_compiled(&cloud.name, "opennebula"),
    }
}

/// Every cloud of one director, the default one first.
#[derive(Debug, Clone)]
pub struct CloudRegistry {
    clouds: Vec<RegisteredCloud>,
}

impl CloudRegistry {
    /// A builder: register clouds, then [`CloudRegistryBuilder::build`].
    pub fn builder() -> CloudRegistryBuilder {
        CloudRegistryBuilder::default()
    }

    /// The drivers of director.cfg's clouds (`settings` yields the default cloud first), as
    /// [`CloudRegistryBuilder::configured_all`] registers them; empty when `settings` is.
    pub fn new<'a>(
        settings: impl IntoIterator<Item = &'a CloudSettings>,
        dummy_dir: &Path,
    ) -> Self {
        let clouds = settings
            .into_iter()
            .map(|cloud| RegisteredCloud {
                name: cloud.name.clone(),
                cloud: built_in_driver(cloud, dummy_dir),
                section: cloud.section.clone(),
                settings: Some(cloud.clone()),
            })
            .collect();
        CloudRegistry { clouds }
    }

    /// The cloud a client names: `default` is the default cloud (for a configured director
    /// also reachable as `iaas`), any other name the cloud registered under it.
    pub fn get(&self, name: &str) -> Option<&RegisteredCloud> {
        if name == DEFAULT_CLOUD_ALIAS {
            return self.clouds.first();
        }
        self.clouds.iter().find(|cloud| cloud.name == name)
    }

    /// The default cloud.
    pub fn default_cloud(&self) -> Option<&RegisteredCloud> {
        self.clouds.first()
    }

    /// The names the clouds are registered under, the default one first: `iaas` (the
    /// `[iaas]` section) for a configured director, an embedder's own otherwise.
    pub fn names(&self) -> Vec<String> {
        self.clouds.iter().map(|cloud| cloud.name.clone()).collect()
    }

    /// The names 1.2's clients choose from (`/available_clouds`): `default` for the default
    /// cloud, then the others as registered.
    pub fn client_names(&self) -> Vec<String> {
        self.clouds
            .iter()
            .enumerate()
            .map(|(index, cloud)| {
                if index == 0 {
                    DEFAULT_CLOUD_ALIAS.to_owned()
                } else {
                    cloud.name.clone()
                }
            })
            .collect()
    }

    /// Every cloud, the default one first.
    pub fn iter(&self) -> impl Iterator<Item = &RegisteredCloud> {
        self.clouds.iter()
    }

    /// The same registry with each driver replaced by `wrap(name, driver)` (the director
    /// times every cloud call this way).
    pub(crate) fn wrapped(self, wrap: impl Fn(&str, Arc<dyn Cloud>) -> Arc<dyn Cloud>) -> Self {
        let clouds = self
            .clouds
            .into_iter()
            .map(|registered| RegisteredCloud {
                cloud: wrap(&registered.name, registered.cloud.clone()),
                ..registered
            })
            .collect();
        CloudRegistry { clouds }
    }
}

/// A cloud whose driver cannot start (its settings were refused by the driver): every
/// operation fails with a clear error instead of pretending.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dummy(name: &str) -> Arc<dyn Cloud> {
        Arc::new(DummyCloud::new(name, std::env::temp_dir()))
    }

    #[test]
    fn the_first_or_the_named_cloud_is_the_default() {
        let registry = CloudRegistry::builder()
            .cloud("a", dummy("a"))
            .cloud("b", dummy("b"))
            .build()
            .unwrap();
        assert_eq!(registry.client_names(), ["default", "b"]);
        assert_eq!(registry.names(), ["a", "b"]);
        assert_eq!(registry.get("default").unwrap().name(), "a");
        assert_eq!(registry.get("a").unwrap().name(), "a");
        assert!(registry.get("c").is_none());
        let registry = CloudRegistry::builder()
            .cloud("a", dummy("a"))
            .cloud("b", dummy("b"))
            .default_cloud("b")
            .build()
            .unwrap();
        assert_eq!(registry.client_names(), ["default", "a"]);
        assert_eq!(registry.names(), ["b", "a"]);
        assert_eq!(registry.get("default").unwrap().name(), "b");
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", "default", "a b", "a/b", "x]"] {
            let error = CloudRegistry::builder()
                .cloud(bad, dummy(bad))
                .build()
                .unwrap_err();
            assert!(matches!(error, RegistryError::InvalidName(_)), "{bad:?}");
        }
        let error = CloudRegistry::builder()
            .cloud("a", dummy("a"))
            .cloud("a", dummy("a"))
            .build()
            .unwrap_err();
        assert!(matches!(error, RegistryError::Duplicate(name) if name == "a"));
        assert!(matches!(
            CloudRegistry::builder().build().unwrap_err(),
            RegistryError::Empty
        ));
        assert!(matches!(
            CloudRegistry::builder()
                .cloud("a", dummy("a"))
                .default_cloud("nope")
                .build()
                .unwrap_err(),
            RegistryError::UnknownDefault(name) if name == "nope"
        ));
    }
}
