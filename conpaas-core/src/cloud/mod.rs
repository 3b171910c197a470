//! Clouds: where manager VMs run. The settings each cloud section of director.cfg becomes, the
//! `Cloud` trait, the drivers and the registry mapping cloud names to drivers.
//!
//! Without features this is the trait and its plain types (settings included), enough for an
//! embedder's own driver; `ec2` and `opennebula` add those drivers, `director` the registry
//! and the dummy cloud.

#[cfg(feature = "director")]
mod dummy;
#[cfg(feature = "ec2")]
mod ec2;
#[cfg(feature = "opennebula")]
mod opennebula;
#[cfg(feature = "openstack")]
mod openstack;
pub(crate) mod openstack_settings;
mod provider;
#[cfg(feature = "director")]
mod registry;
#[cfg(any(feature = "opennebula", feature = "openstack"))]
mod reqwest_errors;
pub(crate) mod settings;
#[cfg(any(feature = "opennebula", feature = "openstack"))]
mod tokened;

#[cfg(feature = "director")]
pub use dummy::{DUMMY_MANAGER_IP, DummyCloud};
#[cfg(feature = "ec2")]
pub use ec2::{AwsEnvironment, EC2_USER_DATA_LIMIT, Ec2Cloud, Ec2Tuning};
#[cfg(feature = "opennebula")]
pub use opennebula::OpenNebulaXmlRpcCloud;
#[cfg(feature = "opennebula")]
pub use opennebula::{OpenNebulaCloud, OpenNebulaTuning};
#[cfg(feature = "openstack")]
pub use openstack::{NOVA_USER_DATA_LIMIT, OpenStackCloud, OpenStackTuning};
pub use openstack_settings::{
    OpenStackApplicationCredential, OpenStackCredential, OpenStackInterface, OpenStackPassword,
    OpenStackProject, OpenStackSettings,
};
pub use provider::{Cloud, Error, ListedNode, Node, NodeRequest, NodeState};
#[cfg(feature = "director")]
pub use registry::{
    CloudRegistry, CloudRegistryBuilder, DEFAULT_CLOUD_ALIAS, RegisteredCloud, RegistryError,
};
pub use settings::{
    AddressPolicy, CloudSettings, DriverSettings, Ec2Credentials, Ec2Region, Ec2Settings,
    EndpointUrl, InstanceType, MetadataTokens, OpenNebulaSettings, UrlScheme,
};
pub use settings::{OpenNebulaVm, OpenNebulaVmSpec, OpenNebulaXmlRpcSettings};
