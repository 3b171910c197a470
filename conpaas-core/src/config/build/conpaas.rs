//! `[conpaas]`: the CA's key algorithm and the VPN keys.

use super::*;
use crate::vpn::{BootstrapNode, EXPECTED_BOOTSTRAP_NODE};

pub(super) fn parse_key_algorithm(text: &str) -> Result<KeyAlgorithm, String> {
    match text.to_ascii_lowercase().as_str() {
        "rsa" => Ok(KeyAlgorithm::Rsa2048),
        "ecdsa" => Ok(KeyAlgorithm::EcdsaP256),
        _ => Err("a key algorithm: rsa (RSA-2048) or ecdsa (ECDSA P-256)".to_owned()),
    }
}

impl Builder<'_> {
    /// `VPN_BOOTSTRAP_NODES`: one node per line (the first may follow `=`, the others are
    /// indented continuation lines); each entry is checked and a bad one is named by its own
    /// line. Empty or absent: none (IPOP's built-in list).
    pub(super) fn vpn_bootstrap_nodes(&mut self, vpn_set: bool) -> Checked<Vec<BootstrapNode>> {
        const KEY: &str = "VPN_BOOTSTRAP_NODES";
        let Some(value) = self.find_nonempty("conpaas", KEY)? else {
            return Ok(Vec::new());
        };
        // Continuation lines keep their line numbers unless interpolation added lines.
        let segments: Vec<&str> = value.text.split('\n').collect();
        let line_of = |index: usize| match index {
            0 => value.line,
            _ if segments.len() == value.continuation_lines.len() + 1 => {
                value.continuation_lines[index - 1]
            }
            _ => value.line,
        };
        let mut nodes = Vec::new();
        let mut bad = false;
        for (index, segment) in segments.iter().enumerate() {
            let entry = py_strip(segment);
            if entry.is_empty() {
                continue;
            }
            match BootstrapNode::from_str(entry) {
                Ok(node) => nodes.push(node),
                Err(_) => {
                    let location = self.location("conpaas", Some(line_of(index)), Some(KEY));
                    self.problems.push(Problem {
                        location,
                        kind: ProblemKind::Invalid {
                            expected: EXPECTED_BOOTSTRAP_NODE.to_owned(),
                            got: entry.to_owned(),
                        },
                    });
                    bad = true;
                }
            }
        }
        if bad {
            return Err(Reported);
        }
        if !vpn_set {
            self.warn(
                "conpaas",
                Some(value.line),
                Some(KEY),
                WarningKind::VpnSwitchWithoutVpn,
            );
        }
        Ok(nodes)
    }

    pub(super) fn vpn(&mut self) -> Checked<Option<VpnSettings>> {
        const BASE: &str = "VPN_BASE_NETWORK";
        const NETMASK: &str = "VPN_NETMASK";
        const BITS: &str = "VPN_SERVICE_BITS";
        const EXPECTED_BASE: &str = "a dotted IPv4 address, such as 172.16.0.0";
        const EXPECTED_NETMASK: &str = "a dotted IPv4 netmask, such as 255.240.0.0";
        const EXPECTED_BITS: &str = "an integer between 0 and 30";
        let base = self.find_nonempty("conpaas", BASE);
        let netmask = self.find_nonempty("conpaas", NETMASK);
        let bits = self.find_nonempty("conpaas", BITS);
        let legacy = self.optional("conpaas", "vpn_legacy_subnets", parse_bool);
        let (Ok(base), Ok(netmask), Ok(bits), Ok(legacy)) = (base, netmask, bits, legacy) else {
            return Err(Reported);
        };
        let (base, netmask, bits) = match (base, netmask, bits) {
            (None, None, None) => {
                if legacy.is_some() {
                    let line = self
                        .ini
                        .get("conpaas", "vpn_legacy_subnets")
                        .ok()
                        .flatten()
                        .map(|value| value.line);
                    self.warn(
                        "conpaas",
                        line,
                        Some("VPN_LEGACY_SUBNETS"),
                        WarningKind::VpnSwitchWithoutVpn,
                    );
                }
                return Ok(None);
            }
            (Some(base), Some(netmask), Some(bits)) => (base, netmask, bits),
            (base, netmask, bits) => {
                // 1.2 silently ran without a VPN here; say which keys are missing.
                let present: Vec<&str> = [
                    (BASE, base.is_some()),
                    (NETMASK, netmask.is_some()),
                    (BITS, bits.is_some()),
                ]
                .into_iter()
                .filter_map(|(key, present)| present.then_some(key))
                .collect();
                let because = format!(
                    "since {} {} set (the VPN needs all three VPN_* keys or none)",
                    present.join(" and "),
                    if present.len() == 1 { "is" } else { "are" }
                );
                for (key, expected, found) in [
                    (BASE, EXPECTED_BASE, base.is_some()),
                    (NETMASK, EXPECTED_NETMASK, netmask.is_some()),
                    (BITS, EXPECTED_BITS, bits.is_some()),
                ] {
                    if !found {
                        self.missing("conpaas", key, format!("{expected}, {because}"));
                    }
                }
                return Err(Reported);
            }
        };
        let base_network = Ipv4Addr::from_str(&base.text)
            .map_err(|_| self.invalid("conpaas", &base, EXPECTED_BASE));
        // Only the dotted form works end to end: IPOP on the VMs receives the text verbatim.
        let netmask_addr = Ipv4Addr::from_str(&netmask.text).map_err(|_| {
            self.invalid(
                "conpaas",
                &netmask,
                format!("{EXPECTED_NETMASK} (not a prefix length)"),
            )
        });
        let service_bits = parse_integer(&bits.text, 0, 30)
            .ok()
            .and_then(|number| u8::try_from(number).ok())
            .ok_or_else(|| self.invalid("conpaas", &bits, EXPECTED_BITS));
        let (Ok(base_network), Ok(netmask_addr), Ok(service_bits)) =
            (base_network, netmask_addr, service_bits)
        else {
            return Err(Reported);
        };
        let settings = VpnSettings {
            base_network,
            netmask: netmask_addr,
            service_bits,
            arithmetic: if legacy == Some(true) {
                SubnetArithmetic::Legacy
            } else {
                SubnetArithmetic::Documented
            },
        };
        if let Err(source) = VpnPlan::new(&settings) {
            let key = source.setting_key().unwrap_or(NETMASK);
            let line = [(BASE, &base), (NETMASK, &netmask), (BITS, &bits)]
                .into_iter()
                .find(|(name, _)| *name == key)
                .map(|(_, value)| value.line);
            let location = self.location("conpaas", line, Some(key));
            self.problems.push(Problem {
                location,
                kind: ProblemKind::VpnPlan { source },
            });
            return Err(Reported);
        }
        Ok(Some(settings))
    }
}
