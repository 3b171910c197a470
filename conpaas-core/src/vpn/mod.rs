//! Per-application VPN (IPOP) address planning: pure arithmetic on ipnet, no IO.
//! (Being written: planner, errors.)

use std::net::Ipv4Addr;

/// Which arithmetic turns `VPN_SERVICE_BITS` into a subnet prefix (`spec/config.md` §13.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubnetArithmetic {
    /// The installation guide's: prefix = P + B (2^B services per application). The default.
    Documented,
    /// The 1.2.0 code's: prefix = 32 - P - B. Opt-in for adopted installations.
    Legacy,
}

/// The `[conpaas] VPN_*` keys, parsed (not yet checked for a usable plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpnSettings {
    /// `VPN_BASE_NETWORK`, parsed.
    pub base_network: Ipv4Addr,
    /// `VPN_BASE_NETWORK` verbatim: copied into manager configs as `IPOP_BASE_IP`.
    pub base_network_text: String,
    /// `VPN_NETMASK`, parsed as a dotted netmask.
    pub netmask: Ipv4Addr,
    /// `VPN_NETMASK` verbatim: copied into manager configs as `IPOP_NETMASK`.
    pub netmask_text: String,
    /// `VPN_SERVICE_BITS`.
    pub service_bits: u8,
    /// `VPN_LEGACY_SUBNETS` selects [`SubnetArithmetic::Legacy`].
    pub arithmetic: SubnetArithmetic,
}

/// Errors of this layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {}
