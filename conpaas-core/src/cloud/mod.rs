//! Clouds: where manager VMs run. For now the settings each cloud section of director.cfg becomes;
//! the `Cloud` trait, the drivers (dummy, ec2, opennebula) and the registry come later.

mod settings;

pub use settings::{
    CloudSettings, DriverSettings, Ec2Region, Ec2Settings, EndpointUrl, InstanceType,
    OpenNebulaSettings, UrlScheme,
};
