//! Clouds: where manager VMs run. The settings each cloud section of director.cfg becomes, the
//! `Cloud` trait, the drivers and the registry mapping cloud names to drivers.

mod dummy;
mod ec2;
mod opennebula;
mod provider;
mod registry;
pub(crate) mod settings;

pub use dummy::{DUMMY_MANAGER_IP, DummyCloud};
pub use ec2::{AddressPolicy, EC2_USER_DATA_LIMIT, Ec2Cloud, Ec2Tuning};
pub use opennebula::{OpenNebulaCloud, OpenNebulaTuning};
pub use provider::{Cloud, Error, ListedNode, Node, NodeRequest, NodeState};
pub use registry::{
    CloudRegistry, CloudRegistryBuilder, DEFAULT_CLOUD_ALIAS, RegisteredCloud, RegistryError,
};
pub use settings::{
    CloudSettings, DriverSettings, Ec2Region, Ec2Settings, EndpointUrl, InstanceType,
    OpenNebulaSettings, UrlScheme,
};
