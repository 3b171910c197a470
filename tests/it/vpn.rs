//! Property tests of the VPN planner: random plans, random allocate/free sequences.

// The helpers below are test code too: a panic there is a test failure.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use conpaas_core::vpn::{Error, SubnetArithmetic, VpnPlan, VpnSettings};
use ipnet::Ipv4Net;
use proptest::prelude::*;
use proptest::sample::Index;

/// Settings with a valid plan of at most 2^7 candidates, so that a naive model
/// can enumerate them: P, then L - P, then the bits that give that L.
fn valid_settings() -> impl Strategy<Value = VpnSettings> {
    (any::<bool>(), 0u8..=29, 0u8..=7, any::<u32>()).prop_filter_map(
        "subnet prefix out of range for the arithmetic",
        |(legacy, network_prefix, extra_bits, address)| {
            let subnet_prefix = network_prefix + extra_bits;
            if subnet_prefix > 29 {
                return None;
            }
            let (arithmetic, service_bits) = if legacy {
                // L = 32 - P - B, so B = 32 - P - L, which must not be negative.
                let bits = 32u8.checked_sub(network_prefix + subnet_prefix)?;
                (SubnetArithmetic::Legacy, bits)
            } else {
                (SubnetArithmetic::Documented, extra_bits)
            };
            Some(settings(address, network_prefix, service_bits, arithmetic))
        },
    )
}

fn settings(
    address: u32,
    network_prefix: u8,
    service_bits: u8,
    arithmetic: SubnetArithmetic,
) -> VpnSettings {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(network_prefix))
        .unwrap_or(0);
    let base_network = Ipv4Addr::from(address & mask);
    let netmask = Ipv4Addr::from(mask);
    VpnSettings::from_keys(base_network, netmask, service_bits).arithmetic(arithmetic)
}

#[derive(Debug, Clone)]
enum Op {
    Allocate,
    /// Free one of the live subnets (allocated or foreign).
    Free(Index),
    /// Record a subnet from another plan: (prefix selector, address bits).
    Foreign(u8, u32),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        6 => Just(Op::Allocate),
        2 => any::<Index>().prop_map(Op::Free),
        1 => (any::<u8>(), any::<u32>()).prop_map(|(prefix, bits)| Op::Foreign(prefix, bits)),
    ];
    prop::collection::vec(op, 1..80)
}

/// Overlap as the definition says it, independently of the planner's interval sweep.
fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(b) || b.contains(a)
}

/// A subnet from "another plan": mostly inside the application network, with a
/// prefix at or below the network's, sometimes anywhere in the address space.
fn foreign_subnet(plan: &VpnPlan, prefix_selector: u8, bits: u32) -> Ipv4Net {
    let network = plan.network();
    let (address, prefix) = if prefix_selector.is_multiple_of(8) {
        (bits, prefix_selector % 33)
    } else {
        let hostmask = u32::from(network.hostmask());
        let prefix = network.prefix_len() + prefix_selector % (33 - network.prefix_len());
        (u32::from(network.network()) | (bits & hostmask), prefix)
    };
    Ipv4Net::new(Ipv4Addr::from(address), prefix)
        .unwrap()
        .trunc()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn allocation_matches_the_model(settings in valid_settings(), ops in ops()) {
        let plan = VpnPlan::new(&settings).unwrap();
        let candidates: Vec<Ipv4Net> = plan.candidates().collect();
        prop_assert_eq!(candidates.len() as u64, plan.services_per_application());
        // (subnet, allocated by the plan rather than recorded from elsewhere)
        let mut live: Vec<(Ipv4Net, bool)> = Vec::new();
        for op in ops {
            match op {
                Op::Allocate => {
                    let existing: Vec<Ipv4Net> = live.iter().map(|(subnet, _)| *subnet).collect();
                    let lowest_free = candidates
                        .iter()
                        .find(|candidate| existing.iter().all(|e| !overlaps(candidate, e)));
                    match (plan.allocate(&existing), lowest_free) {
                        (Ok(subnet), Some(expected)) => {
                            prop_assert_eq!(subnet, *expected);
                            prop_assert!(plan.network().contains(&subnet));
                            prop_assert_eq!(subnet.prefix_len(), plan.subnet_prefix());
                            prop_assert!(existing.iter().all(|e| !overlaps(&subnet, e)));
                            live.push((subnet, true));
                        }
                        (Err(Error::Exhausted { total }), None) => {
                            prop_assert_eq!(total, plan.services_per_application());
                        }
                        (res, expected) => {
                            prop_assert!(false, "allocate gave {res:?}, the model {expected:?}");
                        }
                    }
                }
                Op::Free(index) => {
                    if !live.is_empty() {
                        live.remove(index.index(live.len()));
                    }
                }
                Op::Foreign(prefix_selector, bits) => {
                    live.push((foreign_subnet(&plan, prefix_selector, bits), false));
                }
            }
            let allocated: Vec<&Ipv4Net> =
                live.iter().filter(|(_, ours)| *ours).map(|(subnet, _)| subnet).collect();
            for (i, a) in allocated.iter().enumerate() {
                for b in &allocated[i + 1..] {
                    prop_assert!(!overlaps(a, b), "{a} and {b} overlap");
                }
            }
        }
    }

    #[test]
    fn any_settings_give_a_sound_plan_or_a_keyed_error(
        address in any::<u32>(),
        mask in any::<u32>(),
        service_bits in any::<u8>(),
        legacy in any::<bool>(),
    ) {
        let arithmetic =
            if legacy { SubnetArithmetic::Legacy } else { SubnetArithmetic::Documented };
        // Mostly contiguous masks and aligned bases, so the later checks are reached.
        let (address, mask) = match mask % 4 {
            0 => (address, mask),
            1 => (address, u32::MAX.checked_shl(mask % 33).unwrap_or(0)),
            _ => {
                let mask = u32::MAX.checked_shl(mask % 33).unwrap_or(0);
                (address & mask, mask)
            }
        };
        let settings = VpnSettings::from_keys(Ipv4Addr::from(address), Ipv4Addr::from(mask), service_bits).arithmetic(arithmetic);
        match VpnPlan::new(&settings) {
            Ok(plan) => {
                let network = plan.network();
                prop_assert_eq!(network.addr(), settings.base_network);
                prop_assert_eq!(network.netmask(), settings.netmask);
                let prefix = plan.subnet_prefix();
                prop_assert!(network.prefix_len() <= prefix && prefix <= 29);
                let expected_prefix = match arithmetic {
                    SubnetArithmetic::Legacy => 32 - i32::from(network.prefix_len()) - i32::from(service_bits),
                    _ => i32::from(network.prefix_len()) + i32::from(service_bits),
                };
                prop_assert_eq!(i32::from(prefix), expected_prefix);
                prop_assert!(plan.usable_agent_addresses() >= 4);
                prop_assert_eq!(
                    plan.services_per_application() * (plan.agents_per_service() + 1),
                    1u64 << (32 - network.prefix_len())
                );
                let first = plan.allocate(&[]).unwrap();
                prop_assert_eq!(Some(first), plan.candidate(0));
                prop_assert_eq!(first.network(), network.network());
                let last = plan.candidate(plan.services_per_application() - 1).unwrap();
                prop_assert_eq!(last.broadcast(), network.broadcast());
                prop_assert_eq!(plan.allocate(&[network]).unwrap_err().to_string(), format!(
                    "no VPN subnet left in this application ({0} of {0} in use)",
                    plan.services_per_application()
                ));
                let config = plan.manager_vpn_config(first).unwrap();
                prop_assert_eq!(
                    u32::from(config.ipop_ip_address),
                    u32::from(first.network()) + 2
                );
                prop_assert_eq!(config.ipop_base_ip, settings.base_network.to_string());
            }
            Err(err) => {
                prop_assert!(err.setting_key().is_some(), "{err:?} names no key");
                prop_assert!(!err.to_string().is_empty());
            }
        }
    }
}

#[test]
fn huge_plan_skips_occupied_ranges() {
    // 10.0.0.0/8 with 20 bits: a million /28 candidates. Thousands recorded,
    // plus one legacy-sized block: the answer is right behind them.
    let plan = VpnPlan::new(&settings(0x0a00_0000, 8, 20, SubnetArithmetic::Documented)).unwrap();
    assert_eq!(plan.services_per_application(), 1 << 20);
    let mut existing: Vec<Ipv4Net> = plan.candidates().take(5000).collect();
    existing.reverse();
    existing.push("10.1.64.0/20".parse().unwrap());
    let next = plan.allocate(&existing).unwrap();
    // 5000 /28s are 80000 addresses: 10.0.0.0 to 10.1.56.127.
    assert_eq!(next.to_string(), "10.1.56.128/28");
    existing.push(next);
    for subnet in [
        "10.1.56.144/28",
        "10.1.56.160/27",
        "10.1.56.192/26",
        "10.1.57.0/24",
    ] {
        existing.push(subnet.parse().unwrap());
    }
    existing.push("10.1.58.0/23".parse().unwrap());
    existing.push("10.1.60.0/22".parse().unwrap());
    // Everything up to the end of the /20 is taken now.
    assert_eq!(
        plan.allocate(&existing).unwrap().to_string(),
        "10.1.80.0/28"
    );
    existing.push("10.0.0.0/8".parse().unwrap());
    assert_eq!(
        plan.allocate(&existing).unwrap_err().to_string(),
        "no VPN subnet left in this application (1048576 of 1048576 in use)"
    );
}
