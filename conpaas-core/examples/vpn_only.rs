//! The VPN planner alone, as an orchestrator embeds it: builds the plan of an application
//! network from its base network and service bits, allocates the lowest free subnets for a few
//! services (one freed and taken again) and prints each with its manager's VPN settings.
//! Needs no feature: `cargo run -p conpaas-core --example vpn_only --no-default-features`.
#![allow(
    clippy::print_stdout,
    reason = "the printed plan is what this example shows"
)]

use conpaas_core::vpn::{SubnetArithmetic, VpnPlan, VpnSettings};
use ipnet::Ipv4Net;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `[conpaas] VPN_BASE_NETWORK = 172.16.0.0`, `VPN_NETMASK = 255.240.0.0`, 5 service bits.
    let network: Ipv4Net = "172.16.0.0/12".parse()?;
    let settings = VpnSettings::new(network, 5);
    assert_eq!(settings.arithmetic, SubnetArithmetic::Documented);
    let plan = VpnPlan::new(&settings)?;
    println!(
        "network {} -> /{} subnets: {} services per application, {} agents per service",
        plan.network(),
        plan.subnet_prefix(),
        plan.services_per_application(),
        plan.agents_per_service()
    );

    // The subnets already taken in the application; each start takes the lowest free one.
    let mut taken: Vec<Ipv4Net> = Vec::new();
    for service in 1..=3 {
        let subnet = plan.allocate(&taken)?;
        let manager = plan.manager_vpn_config(subnet)?;
        println!(
            "service {service}: subnet {subnet}, manager {} (IPOP_BASE_IP {}, IPOP_NETMASK {})",
            manager.ipop_ip_address, manager.ipop_base_ip, manager.ipop_netmask
        );
        taken.push(subnet);
    }

    // Service 2 stops: its subnet is free again and the next start takes it.
    let freed = taken.remove(1);
    let again = plan.allocate(&taken)?;
    println!("service 2 stopped, freeing {freed}; service 4: subnet {again}");
    assert_eq!(freed, again, "the lowest free subnet is the one just freed");
    assert_eq!(plan.services_per_application(), 32);
    assert_eq!(again.to_string(), "172.16.128.0/17");
    Ok(())
}
