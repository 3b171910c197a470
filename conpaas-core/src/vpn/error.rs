//! The VPN layer's error: bad `VPN_*` settings at start-up, exhaustion and bad subnets later.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::plan::MAX_SUBNET_PREFIX;

/// Errors of the VPN layer.
///
/// The first group comes from [`VpnPlan::new`](super::VpnPlan::new) at start-up;
/// [`Error::setting_key`] names the `[conpaas]` key each of them is about, so the
/// config layer can report `file:line: key: message`. Messages are lowercase and
/// name the numbers involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `VPN_NETMASK` is not a run of ones followed by zeros (e.g. `255.0.255.0`).
    #[error("netmask {netmask} is not contiguous: it must be ones then zeros, like 255.240.0.0")]
    NonContiguousNetmask {
        /// The netmask as parsed.
        netmask: Ipv4Addr,
    },
    /// `VPN_BASE_NETWORK` has host bits set under `VPN_NETMASK`.
    ///
    /// 1.2.0 silently allocated from the aligned network while handing the
    /// unaligned address to IPOP; we refuse so that the two always agree.
    #[error("base network {base} has host bits set under netmask {netmask}: use {network}")]
    MisalignedBase {
        /// `VPN_BASE_NETWORK` as parsed.
        base: Ipv4Addr,
        /// `VPN_NETMASK` as parsed.
        netmask: Ipv4Addr,
        /// The aligned network address the operator probably meant.
        network: Ipv4Addr,
    },
    /// The application network itself is smaller than one usable service subnet.
    #[error(
        "a /{network_prefix} network is too small: one service subnet needs at least /{max} \
         (4 reserved addresses and an agent)",
        max = MAX_SUBNET_PREFIX
    )]
    NetworkTooSmall {
        /// The prefix length of `VPN_NETMASK`.
        network_prefix: u8,
    },
    /// Documented arithmetic: prefix + bits leaves subnets too small for the
    /// reserved addresses and one agent.
    #[error(
        "{service_bits} service bits on a /{network_prefix} network give /{subnet_prefix} subnets, \
         too small for the 4 reserved addresses and an agent: use at most {max_service_bits} bits \
         (/{max} subnets)",
        max = MAX_SUBNET_PREFIX
    )]
    TooManyServiceBits {
        /// The prefix length of `VPN_NETMASK` (P).
        network_prefix: u8,
        /// `VPN_SERVICE_BITS` (B).
        service_bits: u8,
        /// The resulting subnet prefix, P + B.
        subnet_prefix: u16,
        /// The largest usable `VPN_SERVICE_BITS` for this netmask.
        max_service_bits: u8,
    },
    /// Legacy arithmetic: 32 - P - B is shorter than the network prefix, so no
    /// subnet fits (1.2.0 then silently created services without a VPN).
    #[error(
        "legacy arithmetic gives /{subnet_prefix} subnets (32 - {network_prefix} - {service_bits}), \
         larger than the /{network_prefix} network itself: {}",
        legacy_bits_hint(*.network_prefix)
    )]
    LegacyNoSubnets {
        /// The prefix length of `VPN_NETMASK` (P).
        network_prefix: u8,
        /// `VPN_SERVICE_BITS` (B).
        service_bits: u8,
        /// The resulting subnet prefix, 32 - P - B (may be negative).
        subnet_prefix: i16,
    },
    /// Legacy arithmetic: 32 - P - B leaves subnets too small for the reserved
    /// addresses and one agent.
    #[error(
        "legacy arithmetic gives /{subnet_prefix} subnets (32 - {network_prefix} - {service_bits}), \
         too small for the 4 reserved addresses and an agent: use at least {min_service_bits} bits"
    )]
    LegacySubnetTooSmall {
        /// The prefix length of `VPN_NETMASK` (P).
        network_prefix: u8,
        /// `VPN_SERVICE_BITS` (B).
        service_bits: u8,
        /// The resulting subnet prefix, 32 - P - B.
        subnet_prefix: u8,
        /// The smallest usable `VPN_SERVICE_BITS` for this netmask.
        min_service_bits: u8,
    },
    /// Every subnet of the application is taken (by this plan or by recorded
    /// subnets that overlap it). The message is meant for the user's answer.
    #[error("no VPN subnet left in this application ({total} of {total} in use)")]
    Exhausted {
        /// How many subnets an application has under this plan.
        total: u64,
    },
    /// A `service.subnet` value read from the database is not an IPv4 CIDR network.
    #[error("recorded subnet {text:?} is not an IPv4 network like 172.16.0.0/17")]
    InvalidRecordedSubnet {
        /// The stored text.
        text: String,
        /// Why it did not parse.
        #[source]
        source: ipnet::AddrParseError,
    },
    /// The subnet has fewer than two host addresses, so there is no host #2 for
    /// the manager (/31 and /32).
    #[error("subnet {subnet} has no host #2 for the manager's address")]
    NoManagerAddress {
        /// The subnet asked about.
        subnet: Ipv4Net,
    },
}

impl Error {
    /// The `[conpaas]` key a start-up error is about, for config diagnostics;
    /// `None` for errors that happen later, while serving.
    pub fn setting_key(&self) -> Option<&'static str> {
        match self {
            Error::NonContiguousNetmask { .. } | Error::NetworkTooSmall { .. } => {
                Some("VPN_NETMASK")
            }
            Error::MisalignedBase { .. } => Some("VPN_BASE_NETWORK"),
            Error::TooManyServiceBits { .. }
            | Error::LegacyNoSubnets { .. }
            | Error::LegacySubnetTooSmall { .. } => Some("VPN_SERVICE_BITS"),
            Error::Exhausted { .. }
            | Error::InvalidRecordedSubnet { .. }
            | Error::NoManagerAddress { .. } => None,
        }
    }
}

/// The fix for [`Error::LegacyNoSubnets`]: with 32 - P - B >= P, bits can only go up to 32 - 2P.
fn legacy_bits_hint(network_prefix: u8) -> String {
    match 32u8.checked_sub(network_prefix.saturating_mul(2)) {
        Some(max_bits) => format!("use at most {max_bits} bits"),
        None => format!(
            "no number of bits works on a /{network_prefix} network with the legacy arithmetic, \
             use the documented one"
        ),
    }
}
