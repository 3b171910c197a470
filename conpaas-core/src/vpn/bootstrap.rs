//! IPOP bootstrap nodes (`[conpaas] VPN_BOOTSTRAP_NODES`, `spec/config.md` §13.7): one
//! `udp://<IPv4>:<port>` or `tcp://<IPv4>:<port>` each, handed to managers as
//! `IPOP_BOOTSTRAP_NODES`; on the VMs each becomes a transport `brunet.<node>`.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;

/// The transport IPOP reaches a bootstrap node over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// `udp://`.
    Udp,
    /// `tcp://`.
    Tcp,
}

/// One IPOP bootstrap node.
///
/// Frozen: a transport and an IPv4 socket address are all of IPOP's `udp://IP:PORT` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BootstrapNode {
    /// `udp` or `tcp`.
    pub transport: Transport,
    /// The node's IPv4 address and port (1-65535).
    pub addr: SocketAddrV4,
}

/// What a bootstrap node must look like, for messages.
pub const EXPECTED_BOOTSTRAP_NODE: &str =
    "udp://<IPv4>:<port> or tcp://<IPv4>:<port> (port 1-65535), one node per line";

/// A text that is not a bootstrap node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {EXPECTED_BOOTSTRAP_NODE}")]
#[non_exhaustive]
pub struct BadBootstrapNode;

impl FromStr for BootstrapNode {
    type Err = BadBootstrapNode;

    /// `^(udp|tcp)://<dotted IPv4>:<1-65535>$`, lower-case scheme as IPOP reads it; nothing
    /// else (no host names, no IPv6, no path): the text goes verbatim into IPOP's
    /// `bootstrap.config` on every VM.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (transport, rest) = if let Some(rest) = text.strip_prefix("udp://") {
            (Transport::Udp, rest)
        } else if let Some(rest) = text.strip_prefix("tcp://") {
            (Transport::Tcp, rest)
        } else {
            return Err(BadBootstrapNode);
        };
        let (ip, port) = rest.rsplit_once(':').ok_or(BadBootstrapNode)?;
        // Plain digits only: `u16::from_str` would take a leading `+`.
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadBootstrapNode);
        }
        let port: u16 = port.parse().map_err(|_| BadBootstrapNode)?;
        if port == 0 {
            return Err(BadBootstrapNode);
        }
        let ip = Ipv4Addr::from_str(ip).map_err(|_| BadBootstrapNode)?;
        Ok(BootstrapNode {
            transport,
            addr: SocketAddrV4::new(ip, port),
        })
    }
}

impl fmt::Display for BootstrapNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        };
        write!(f, "{scheme}://{}", self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_parse_and_print_back() {
        for text in [
            "udp://192.168.35.2:40000",
            "tcp://10.0.0.1:1",
            "udp://1.2.3.4:65535",
        ] {
            assert_eq!(text.parse::<BootstrapNode>().unwrap().to_string(), text);
        }
        for bad in [
            "",
            "udp://",
            "udp://1.2.3.4",
            "udp://1.2.3.4:",
            "udp://1.2.3.4:0",
            "udp://1.2.3.4:65536",
            "udp://1.2.3.4:+80",
            "udp://1.2.3.4:80/x",
            "UDP://1.2.3.4:80",
            "http://1.2.3.4:80",
            "udp://host.example:80",
            "udp://[::1]:80",
            "udp://1.2.3:80",
            "1.2.3.4:80",
            " udp://1.2.3.4:80",
        ] {
            assert_eq!(
                bad.parse::<BootstrapNode>(),
                Err(BadBootstrapNode),
                "{bad:?}"
            );
        }
    }
}
