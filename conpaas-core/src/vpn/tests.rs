//! Unit tests of the VPN planner: every case renders to one line checked by `check`.

use std::fmt::Write as _;

use ipnet::Ipv4Net;

use super::{
    Error, SubnetArithmetic, VpnPlan, VpnSettings, manager_address, parse_recorded_subnet,
};

fn settings(arithmetic: SubnetArithmetic, base: &str, netmask: &str, bits: u8) -> VpnSettings {
    VpnSettings {
        base_network: base.parse().unwrap(),
        netmask: netmask.parse().unwrap(),
        service_bits: bits,
        arithmetic,
    }
}

fn documented(base: &str, netmask: &str, bits: u8) -> VpnSettings {
    settings(SubnetArithmetic::Documented, base, netmask, bits)
}

fn legacy(base: &str, netmask: &str, bits: u8) -> VpnSettings {
    settings(SubnetArithmetic::Legacy, base, netmask, bits)
}

/// Renders the plan (or its error), its first candidates and what `allocate`
/// gives with `existing` recorded, and compares with `expect`.
fn check(settings: VpnSettings, existing: &[&str], expect: &str) {
    let actual = match VpnPlan::new(&settings) {
        Err(err) => format!("error: {err}"),
        Ok(plan) => {
            let mut out = format!(
                "{} x /{}, {} agents ({} usable):",
                plan.services_per_application(),
                plan.subnet_prefix(),
                plan.agents_per_service(),
                plan.usable_agent_addresses(),
            );
            for subnet in plan.candidates().take(4) {
                write!(out, " {subnet}").unwrap();
            }
            if plan.services_per_application() > 4 {
                out.push_str(" ...");
            }
            let existing: Vec<Ipv4Net> = existing
                .iter()
                .map(|text| parse_recorded_subnet(text).unwrap())
                .collect();
            match plan.allocate(&existing) {
                Ok(subnet) => write!(out, "; next {subnet}").unwrap(),
                Err(err) => write!(out, "; error: {err}").unwrap(),
            }
            out
        }
    };
    assert_eq!(
        actual, expect,
        "settings: {settings:?}, existing: {existing:?}"
    );
}

#[test]
fn documented_worked_example() {
    // The installation guide: 32 services of 32767 agents, /17 subnets.
    check(
        documented("172.16.0.0", "255.240.0.0", 5),
        &[],
        "32 x /17, 32767 agents (32764 usable): 172.16.0.0/17 172.16.128.0/17 172.17.0.0/17 \
         172.17.128.0/17 ...; next 172.16.0.0/17",
    );
    check(
        documented("172.16.0.0", "255.240.0.0", 5),
        &["172.16.0.0/17"],
        "32 x /17, 32767 agents (32764 usable): 172.16.0.0/17 172.16.128.0/17 172.17.0.0/17 \
         172.17.128.0/17 ...; next 172.16.128.0/17",
    );
}

#[test]
fn legacy_upstream_unit_test() {
    // 1.2.0's own test: bits 6 gives 172.16.0.0/14, then 172.20.0.0/14.
    let head = "4 x /14, 262143 agents (262140 usable): 172.16.0.0/14 172.20.0.0/14 \
                172.24.0.0/14 172.28.0.0/14";
    check(
        legacy("172.16.0.0", "255.240.0.0", 6),
        &[],
        &format!("{head}; next 172.16.0.0/14"),
    );
    check(
        legacy("172.16.0.0", "255.240.0.0", 6),
        &["172.16.0.0/14"],
        &format!("{head}; next 172.20.0.0/14"),
    );
}

#[test]
fn table_of_config_md_13_3() {
    // Each row of spec/config.md §13.3 under both arithmetics. The row with
    // bits -1 cannot be written: VPN_SERVICE_BITS is a u8 here.
    let rows: &[(&str, &str, u8, &str, &str)] = &[
        (
            "172.16.0.0",
            "255.240.0.0",
            5,
            "32 x /17, 32767 agents (32764 usable): 172.16.0.0/17 172.16.128.0/17 \
             172.17.0.0/17 172.17.128.0/17 ...; next 172.16.0.0/17",
            "8 x /15, 131071 agents (131068 usable): 172.16.0.0/15 172.18.0.0/15 \
             172.20.0.0/15 172.22.0.0/15 ...; next 172.16.0.0/15",
        ),
        (
            "172.16.0.0",
            "255.240.0.0",
            6,
            "64 x /18, 16383 agents (16380 usable): 172.16.0.0/18 172.16.64.0/18 \
             172.16.128.0/18 172.16.192.0/18 ...; next 172.16.0.0/18",
            "4 x /14, 262143 agents (262140 usable): 172.16.0.0/14 172.20.0.0/14 \
             172.24.0.0/14 172.28.0.0/14; next 172.16.0.0/14",
        ),
        (
            "172.16.0.0",
            "255.240.0.0",
            0,
            "1 x /12, 1048575 agents (1048572 usable): 172.16.0.0/12; next 172.16.0.0/12",
            "256 x /20, 4095 agents (4092 usable): 172.16.0.0/20 172.16.16.0/20 \
             172.16.32.0/20 172.16.48.0/20 ...; next 172.16.0.0/20",
        ),
        (
            "172.16.0.0",
            "255.240.0.0",
            20,
            "error: 20 service bits on a /12 network give /32 subnets, too small for the 4 \
             reserved addresses and an agent: use at most 17 bits (/29 subnets)",
            "error: legacy arithmetic gives /0 subnets (32 - 12 - 20), larger than the /12 \
             network itself: use at most 8 bits",
        ),
        (
            "172.16.0.0",
            "255.255.0.0",
            0,
            "1 x /16, 65535 agents (65532 usable): 172.16.0.0/16; next 172.16.0.0/16",
            "1 x /16, 65535 agents (65532 usable): 172.16.0.0/16; next 172.16.0.0/16",
        ),
        (
            "10.0.0.0",
            "255.0.0.0",
            5,
            "32 x /13, 524287 agents (524284 usable): 10.0.0.0/13 10.8.0.0/13 10.16.0.0/13 \
             10.24.0.0/13 ...; next 10.0.0.0/13",
            "2048 x /19, 8191 agents (8188 usable): 10.0.0.0/19 10.0.32.0/19 10.0.64.0/19 \
             10.0.96.0/19 ...; next 10.0.0.0/19",
        ),
        (
            "10.0.0.0",
            "255.255.0.0",
            8,
            "256 x /24, 255 agents (252 usable): 10.0.0.0/24 10.0.1.0/24 10.0.2.0/24 \
             10.0.3.0/24 ...; next 10.0.0.0/24",
            "error: legacy arithmetic gives /8 subnets (32 - 16 - 8), larger than the /16 \
             network itself: use at most 0 bits",
        ),
        (
            "192.168.0.0",
            "255.255.255.0",
            5,
            "32 x /29, 7 agents (4 usable): 192.168.0.0/29 192.168.0.8/29 192.168.0.16/29 \
             192.168.0.24/29 ...; next 192.168.0.0/29",
            "error: legacy arithmetic gives /3 subnets (32 - 24 - 5), larger than the /24 \
             network itself: no number of bits works on a /24 network with the legacy \
             arithmetic, use the documented one",
        ),
        (
            // 1.2.0 allocated from 172.16.0.0 and sent IPOP 172.17.0.0: refused now.
            "172.17.0.0",
            "255.240.0.0",
            5,
            "error: base network 172.17.0.0 has host bits set under netmask 255.240.0.0: \
             use 172.16.0.0",
            "error: base network 172.17.0.0 has host bits set under netmask 255.240.0.0: \
             use 172.16.0.0",
        ),
    ];
    for &(base, netmask, bits, expect_documented, expect_legacy) in rows {
        check(documented(base, netmask, bits), &[], expect_documented);
        check(legacy(base, netmask, bits), &[], expect_legacy);
    }
}

#[test]
fn settings_checked_at_start_up() {
    check(
        documented("10.0.0.0", "255.0.255.0", 5),
        &[],
        "error: netmask 255.0.255.0 is not contiguous: it must be ones then zeros, like \
         255.240.0.0",
    );
    check(
        documented("172.16.0.1", "255.240.0.0", 5),
        &[],
        "error: base network 172.16.0.1 has host bits set under netmask 255.240.0.0: use \
         172.16.0.0",
    );
    // The bound on bits: a /29 holds the 4 reserved addresses and 4 agents, a /30 none.
    check(
        documented("172.16.0.0", "255.240.0.0", 17),
        &[],
        "131072 x /29, 7 agents (4 usable): 172.16.0.0/29 172.16.0.8/29 172.16.0.16/29 \
         172.16.0.24/29 ...; next 172.16.0.0/29",
    );
    check(
        documented("172.16.0.0", "255.240.0.0", 18),
        &[],
        "error: 18 service bits on a /12 network give /30 subnets, too small for the 4 \
         reserved addresses and an agent: use at most 17 bits (/29 subnets)",
    );
    check(
        documented("172.16.0.0", "255.240.0.0", 255),
        &[],
        "error: 255 service bits on a /12 network give /267 subnets, too small for the 4 \
         reserved addresses and an agent: use at most 17 bits (/29 subnets)",
    );
    check(
        documented("192.168.0.8", "255.255.255.248", 0),
        &[],
        "1 x /29, 7 agents (4 usable): 192.168.0.8/29; next 192.168.0.8/29",
    );
    for settings in [
        documented("192.168.0.4", "255.255.255.252", 0),
        legacy("192.168.0.4", "255.255.255.252", 0),
    ] {
        check(
            settings,
            &[],
            "error: a /30 network is too small: one service subnet needs at least /29 (4 \
             reserved addresses and an agent)",
        );
    }
    // Legacy subnets can also come out too small, when P + B < 3.
    check(
        legacy("128.0.0.0", "128.0.0.0", 1),
        &[],
        "error: legacy arithmetic gives /30 subnets (32 - 1 - 1), too small for the 4 \
         reserved addresses and an agent: use at least 2 bits",
    );
    // The whole address space is odd but consistent: one /0 subnet.
    check(
        documented("0.0.0.0", "0.0.0.0", 0),
        &[],
        "1 x /0, 4294967295 agents (4294967292 usable): 0.0.0.0/0; next 0.0.0.0/0",
    );
    check(
        documented("0.0.0.0", "0.0.0.0", 0),
        &["10.0.0.0/8"],
        "1 x /0, 4294967295 agents (4294967292 usable): 0.0.0.0/0; error: no VPN subnet left \
         in this application (1 of 1 in use)",
    );
    check(
        legacy("0.0.0.0", "0.0.0.0", 3),
        &[],
        "536870912 x /29, 7 agents (4 usable): 0.0.0.0/29 0.0.0.8/29 0.0.0.16/29 0.0.0.24/29 \
         ...; next 0.0.0.0/29",
    );
}

#[test]
fn allocation_overlap_exhaustion_reuse() {
    let small = || documented("192.168.0.0", "255.255.255.0", 2);
    let head = "4 x /26, 63 agents (60 usable): 192.168.0.0/26 192.168.0.64/26 192.168.0.128/26 \
                192.168.0.192/26";
    let cases: &[(&[&str], &str)] = &[
        (&[], "next 192.168.0.0/26"),
        // A freed subnet is reused: the lowest free one wins.
        (
            &["192.168.0.0/26", "192.168.0.192/26", "192.168.0.128/26"],
            "next 192.168.0.64/26",
        ),
        (&["192.168.0.64/26"], "next 192.168.0.0/26"),
        // Overlap is CIDR containment either way, not text equality.
        (&["192.168.0.5/32"], "next 192.168.0.64/26"),
        (&["192.168.0.0/25"], "next 192.168.0.128/26"),
        (&["192.168.0.1/26"], "next 192.168.0.64/26"),
        (
            &["192.168.0.0/16"],
            "error: no VPN subnet left in this application (4 of 4 in use)",
        ),
        // Subnets outside the application network do not block anything.
        (&["10.0.0.0/8", "192.168.1.0/24"], "next 192.168.0.0/26"),
        // Duplicates (a crash-era double row) are harmless.
        (
            &["192.168.0.0/26", "192.168.0.0/26"],
            "next 192.168.0.64/26",
        ),
        (
            &[
                "192.168.0.0/26",
                "192.168.0.64/26",
                "192.168.0.128/26",
                "192.168.0.192/26",
            ],
            "error: no VPN subnet left in this application (4 of 4 in use)",
        ),
    ];
    for &(existing, expect) in cases {
        check(small(), existing, &format!("{head}; {expect}"));
    }
}

/// Larger recorded subnets reaching past the table of single subnets `allocate` keeps (one
/// index per recorded subnet, and one more), mixed with single ones after them.
#[test]
fn allocation_past_the_single_subnets() {
    let plan = VpnPlan::new(&documented("10.0.0.0", "255.0.0.0", 20)).unwrap();
    let parse =
        |texts: &[&str]| -> Vec<Ipv4Net> { texts.iter().map(|t| t.parse().unwrap()).collect() };
    let cases: &[(&[&str], &str)] = &[
        // 2048 candidates blocked by one subnet: far past the 2-slot table.
        (&["10.0.0.0/17"], "10.0.128.0/28"),
        // ... then two singles right after it, and a larger one after those.
        (
            &[
                "10.0.128.16/28",
                "10.0.0.0/17",
                "10.0.128.0/28",
                "10.0.128.32/27",
            ],
            "10.0.128.64/28",
        ),
        // A single inside the table, a run beyond it that does not touch the gap.
        (&["10.0.0.0/28", "10.0.1.0/24"], "10.0.0.16/28"),
    ];
    for &(existing, expect) in cases {
        assert_eq!(
            plan.allocate(&parse(existing)).unwrap().to_string(),
            expect,
            "{existing:?}"
        );
    }
}

#[test]
fn exhaustion_of_the_worked_example() {
    let plan = VpnPlan::new(&documented("172.16.0.0", "255.240.0.0", 5)).unwrap();
    let all: Vec<String> = plan.candidates().map(|subnet| subnet.to_string()).collect();
    let mut existing: Vec<&str> = all.iter().map(String::as_str).collect();
    let head = "32 x /17, 32767 agents (32764 usable): 172.16.0.0/17 172.16.128.0/17 \
                172.17.0.0/17 172.17.128.0/17 ...";
    check(
        documented("172.16.0.0", "255.240.0.0", 5),
        &existing,
        &format!("{head}; error: no VPN subnet left in this application (32 of 32 in use)"),
    );
    // Free the 8th: it is the one handed out again.
    existing.remove(7);
    check(
        documented("172.16.0.0", "255.240.0.0", 5),
        &existing,
        &format!("{head}; next 172.19.128.0/17"),
    );
}

#[test]
fn legacy_subnet_recorded_under_documented_plan() {
    // An adopted application holds 1.2.0's first two /15s; the documented /17
    // plan skips every candidate inside them.
    let head = "32 x /17, 32767 agents (32764 usable): 172.16.0.0/17 172.16.128.0/17 \
                172.17.0.0/17 172.17.128.0/17 ...";
    check(
        documented("172.16.0.0", "255.240.0.0", 5),
        &["172.16.0.0/15"],
        &format!("{head}; next 172.18.0.0/17"),
    );
    check(
        documented("172.16.0.0", "255.240.0.0", 5),
        &["172.18.0.0/15", "172.16.0.0/15", "172.20.0.0/17"],
        &format!("{head}; next 172.20.128.0/17"),
    );
    // And the other way: a documented /17 blocks the legacy /15 containing it.
    check(
        legacy("172.16.0.0", "255.240.0.0", 5),
        &["172.17.128.0/17"],
        "8 x /15, 131071 agents (131068 usable): 172.16.0.0/15 172.18.0.0/15 172.20.0.0/15 \
         172.22.0.0/15 ...; next 172.18.0.0/15",
    );
}

#[test]
fn manager_addresses() {
    fn check_manager(subnet: &str, expect: &str) {
        let actual = match manager_address(subnet.parse().unwrap()) {
            Ok(address) => address.to_string(),
            Err(err) => format!("error: {err}"),
        };
        assert_eq!(actual, expect, "subnet {subnet}");
    }
    check_manager("172.16.0.0/15", "172.16.0.2");
    check_manager("172.16.128.0/17", "172.16.128.2");
    check_manager("172.16.0.9/24", "172.16.0.2");
    check_manager("10.0.0.4/30", "10.0.0.6");
    check_manager(
        "10.0.0.4/31",
        "error: subnet 10.0.0.4/31 has no host #2 for the manager's address",
    );
    check_manager(
        "10.0.0.5/32",
        "error: subnet 10.0.0.5/32 has no host #2 for the manager's address",
    );
    check_manager("0.0.0.0/0", "0.0.0.2");
}

#[test]
fn manager_config_lines_are_dotted() {
    let settings = documented("172.16.0.0", "255.240.0.0", 5);
    assert_eq!(
        settings,
        VpnSettings::new("172.16.0.0/12".parse().unwrap(), 5)
    );
    let plan = VpnPlan::new(&settings).unwrap();
    let config = plan
        .manager_vpn_config("172.16.0.0/15".parse().unwrap())
        .unwrap();
    let rendered: Vec<String> = config
        .lines()
        .iter()
        .map(|(key, value)| format!("{key} = {value}"))
        .collect();
    assert_eq!(
        rendered,
        [
            "IPOP_SUBNET = 172.16.0.0/15",
            "IPOP_IP_ADDRESS = 172.16.0.2",
            "IPOP_BASE_IP = 172.16.0.0",
            "IPOP_NETMASK = 255.240.0.0",
        ]
    );
    let err = plan
        .manager_vpn_config("172.16.0.0/31".parse().unwrap())
        .unwrap_err();
    assert!(matches!(err, Error::NoManagerAddress { .. }), "{err:?}");
}

#[test]
fn recorded_subnet_text() {
    let cases = [
        ("172.16.0.0/15", "172.16.0.0/15"),
        (" 172.16.0.0/15\n", "172.16.0.0/15"),
        ("172.17.0.0/15", "172.16.0.0/15"),
        (
            "",
            "error: recorded subnet \"\" is not an IPv4 network like 172.16.0.0/17",
        ),
        (
            "banana",
            "error: recorded subnet \"banana\" is not an IPv4 network like 172.16.0.0/17",
        ),
        (
            "172.16.0.0",
            "error: recorded subnet \"172.16.0.0\" is not an IPv4 network like 172.16.0.0/17",
        ),
        (
            "172.16.0.0/33",
            "error: recorded subnet \"172.16.0.0/33\" is not an IPv4 network like 172.16.0.0/17",
        ),
        (
            "fd00::/8",
            "error: recorded subnet \"fd00::/8\" is not an IPv4 network like 172.16.0.0/17",
        ),
    ];
    for (text, expect) in cases {
        let actual = match parse_recorded_subnet(text) {
            Ok(subnet) => subnet.to_string(),
            Err(err) => format!("error: {err}"),
        };
        assert_eq!(actual, expect, "text {text:?}");
    }
}

#[test]
fn candidate_index() {
    let plan = VpnPlan::new(&documented("172.16.0.0", "255.240.0.0", 5)).unwrap();
    assert_eq!(plan.candidate(0), Some("172.16.0.0/17".parse().unwrap()));
    assert_eq!(plan.candidate(31), Some("172.31.128.0/17".parse().unwrap()));
    assert_eq!(plan.candidate(32), None);
    assert_eq!(plan.candidate(u64::MAX), None);
    assert_eq!(plan.candidates().next_back(), plan.candidate(31));
    assert_eq!(plan.network().to_string(), "172.16.0.0/12");
    assert_eq!(
        (plan.service_bits(), plan.arithmetic()),
        (5, SubnetArithmetic::Documented)
    );
}

#[test]
fn errors_name_their_key() {
    let key = |settings: VpnSettings| VpnPlan::new(&settings).unwrap_err().setting_key();
    assert_eq!(
        key(documented("10.0.0.0", "255.0.255.0", 1)),
        Some("VPN_NETMASK")
    );
    assert_eq!(
        key(documented("10.0.0.4", "255.255.255.252", 0)),
        Some("VPN_NETMASK")
    );
    assert_eq!(
        key(documented("10.0.0.1", "255.0.0.0", 1)),
        Some("VPN_BASE_NETWORK")
    );
    assert_eq!(
        key(documented("10.0.0.0", "255.0.0.0", 22)),
        Some("VPN_SERVICE_BITS")
    );
    assert_eq!(
        key(legacy("10.0.0.0", "255.0.0.0", 22)),
        Some("VPN_SERVICE_BITS")
    );
    assert_eq!(
        key(legacy("0.0.0.0", "0.0.0.0", 0)),
        Some("VPN_SERVICE_BITS")
    );
    assert_eq!(Error::Exhausted { total: 1 }.setting_key(), None);
}

#[test]
fn capacity_in_one_line_as_the_guide_counts() {
    // The installation guide's example: 172.16.0.0/12 and 5 bits, 32 services of /17.
    let plan = VpnPlan::new(&documented("172.16.0.0", "255.240.0.0", 5)).unwrap();
    assert_eq!(
        plan.capacity(),
        "172.16.0.0/12 gives each application 32 service subnet(s) of /17: 32767 agent(s) per \
         service as the installation guide counts them (32764 addresses usable by agents)"
    );
}
