//! `[conpaas]`: the CA's key algorithm and the VPN keys.

use super::*;

pub(super) fn parse_key_algorithm(text: &str) -> Result<KeyAlgorithm, String> {
    match text.to_ascii_lowercase().as_str() {
        "rsa" => Ok(KeyAlgorithm::Rsa2048),
        "ecdsa" => Ok(KeyAlgorithm::EcdsaP256),
        _ => Err("a key algorithm: rsa (RSA-2048) or ecdsa (ECDSA P-256)".to_owned()),
    }
}

impl Builder<'_> {
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
