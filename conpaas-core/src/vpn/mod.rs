//! Per-application VPN (IPOP) address planning: pure arithmetic on ipnet, no IO.
//!
//! Every application gets one IPOP overlay network, `VPN_BASE_NETWORK/VPN_NETMASK`,
//! cut into equal service subnets; each service takes the lowest free one and its
//! manager takes host #2 of it. [`VpnPlan::new`] checks the `[conpaas] VPN_*` keys
//! once at start-up, so a bad plan stops the director instead of silently
//! creating services without a VPN as 1.2.0 did. The rules for operators are in
//! `docs/vpn.md`; the 1.2.0 behaviour is in `spec/config.md` §13.
//!
//! ```
//! use conpaas_core::vpn::{SubnetArithmetic, VpnPlan, VpnSettings};
//!
//! let settings = VpnSettings::new("172.16.0.0/12".parse()?, 5);
//! assert_eq!(settings.arithmetic, SubnetArithmetic::Documented);
//! let plan = VpnPlan::new(&settings)?;
//! assert_eq!(plan.services_per_application(), 32);
//! assert_eq!(plan.agents_per_service(), 32767);
//!
//! let first = plan.allocate(&[])?;
//! assert_eq!(first.to_string(), "172.16.0.0/17");
//! let second = plan.allocate(&[first])?;
//! assert_eq!(second.to_string(), "172.16.128.0/17");
//! assert_eq!(plan.manager_vpn_config(second)?.ipop_ip_address.to_string(), "172.16.128.2");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

mod bootstrap;
mod error;
mod plan;
mod subnet;

pub use bootstrap::{BadBootstrapNode, BootstrapNode, EXPECTED_BOOTSTRAP_NODE, Transport};
pub use error::Error;
pub use plan::{MAX_SUBNET_PREFIX, RESERVED_ADDRESSES, VpnPlan};
pub use subnet::{ManagerVpnConfig, manager_address, parse_recorded_subnet};

/// Which arithmetic turns `VPN_SERVICE_BITS` into a subnet prefix (`spec/config.md` §13.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubnetArithmetic {
    /// The installation guide's: prefix = P + B (2^B services per application). The default.
    Documented,
    /// The 1.2.0 code's: prefix = 32 - P - B. Opt-in for adopted installations.
    Legacy,
}

/// The `[conpaas] VPN_*` keys, parsed (not yet checked for a usable plan). Built with
/// [`VpnSettings::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VpnSettings {
    /// `VPN_BASE_NETWORK`: copied into manager configs as `IPOP_BASE_IP`.
    pub base_network: Ipv4Addr,
    /// `VPN_NETMASK`, a dotted netmask: copied into manager configs as `IPOP_NETMASK`.
    pub netmask: Ipv4Addr,
    /// `VPN_SERVICE_BITS`.
    pub service_bits: u8,
    /// `VPN_LEGACY_SUBNETS` selects [`SubnetArithmetic::Legacy`].
    pub arithmetic: SubnetArithmetic,
}

impl VpnSettings {
    /// Each application's network is `network`, cut into 2^`service_bits` service subnets
    /// with the installation guide's arithmetic ([`SubnetArithmetic::Documented`]; set
    /// [`arithmetic`](Self::arithmetic) for 1.2.0's). [`VpnPlan::new`] checks the result.
    pub fn new(network: Ipv4Net, service_bits: u8) -> Self {
        VpnSettings {
            base_network: network.addr(),
            netmask: network.netmask(),
            service_bits,
            arithmetic: SubnetArithmetic::Documented,
        }
    }

    /// The keys as director.cfg writes them: `VPN_BASE_NETWORK`, `VPN_NETMASK` (dotted) and
    /// `VPN_SERVICE_BITS`, with the documented arithmetic. [`VpnPlan::new`] checks them.
    pub fn from_keys(base_network: Ipv4Addr, netmask: Ipv4Addr, service_bits: u8) -> Self {
        VpnSettings {
            base_network,
            netmask,
            service_bits,
            arithmetic: SubnetArithmetic::Documented,
        }
    }

    setters! {
        base_network: Ipv4Addr,
        netmask: Ipv4Addr,
        service_bits: u8,
        arithmetic: SubnetArithmetic,
    }
}

#[cfg(test)]
mod tests;
