//! One service subnet: its manager's address, its manager config lines, its stored text.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::Error;

/// The values of the lines the director appends to a manager's `[manager]`
/// configuration when its service has a VPN subnet (`spec/config.md` §13.4).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManagerVpnConfig {
    /// `IPOP_SUBNET`: the service's subnet, e.g. `172.16.0.0/17`.
    pub ipop_subnet: Ipv4Net,
    /// `IPOP_IP_ADDRESS`: the manager's address, host #2 of the subnet.
    pub ipop_ip_address: Ipv4Addr,
    /// `IPOP_BASE_IP`: `VPN_BASE_NETWORK` verbatim (IPOP's DHCP covers the whole
    /// application network).
    pub ipop_base_ip: String,
    /// `IPOP_NETMASK`: `VPN_NETMASK` verbatim.
    pub ipop_netmask: String,
}

impl ManagerVpnConfig {
    /// The four `(key, value)` lines in the order 1.2.0 wrote them.
    pub fn lines(&self) -> [(&'static str, String); 4] {
        [
            ("IPOP_SUBNET", self.ipop_subnet.to_string()),
            ("IPOP_IP_ADDRESS", self.ipop_ip_address.to_string()),
            ("IPOP_BASE_IP", self.ipop_base_ip.clone()),
            ("IPOP_NETMASK", self.ipop_netmask.clone()),
        ]
    }
}

/// The manager's IPOP address in `subnet`: host #2, the network address + 2
/// (host #1 is IPOP's own).
///
/// Fails for /31 and /32, which have no hosts besides network and broadcast
/// (1.2.0 answered an error JSON there too).
pub fn manager_address(subnet: Ipv4Net) -> Result<Ipv4Addr, Error> {
    // A /30 has hosts #1 and #2 (its broadcast is #3), anything longer has fewer.
    if subnet.prefix_len() > 30 {
        return Err(Error::NoManagerAddress {
            subnet: subnet.trunc(),
        });
    }
    Ok(Ipv4Addr::from(u32::from(subnet.network()) + 2))
}

/// Parses a `service.subnet` column value (`172.16.0.0/15`, as 1.2.0 wrote it).
///
/// Surrounding whitespace is ignored and host bits are cleared, so the result
/// can be handed to [`VpnPlan::allocate`](super::VpnPlan::allocate). Anything
/// else is [`Error::InvalidRecordedSubnet`]: the director must not guess,
/// since skipping an unreadable subnet could hand its addresses out twice.
pub fn parse_recorded_subnet(text: &str) -> Result<Ipv4Net, Error> {
    text.trim()
        .parse::<Ipv4Net>()
        .map(|subnet| subnet.trunc())
        .map_err(|source| Error::InvalidRecordedSubnet {
            text: text.to_owned(),
            source,
        })
}
