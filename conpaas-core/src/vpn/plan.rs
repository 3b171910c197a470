//! `VpnPlan`: the validated split of an application network into service subnets, and allocation.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::subnet::{ManagerVpnConfig, manager_address};
use super::{Error, SubnetArithmetic, VpnSettings};

/// Addresses of every service subnet that no agent can use: the network address,
/// host #1 (IPOP uses it internally), host #2 (the manager) and the broadcast address.
pub const RESERVED_ADDRESSES: u32 = 4;

/// The longest service-subnet prefix accepted: a /29 holds the
/// [`RESERVED_ADDRESSES`] and 4 agents, while a /30 would hold no agent at all.
pub const MAX_SUBNET_PREFIX: u8 = 29;

/// How an application's VPN network is cut into service subnets, checked once at start-up.
///
/// Built from [`VpnSettings`] by [`VpnPlan::new`]; after that every question
/// (capacity, allocation, manager addresses) is infallible arithmetic except
/// for exhaustion. Candidates are the subnets of [`network`](Self::network)
/// with prefix [`subnet_prefix`](Self::subnet_prefix), in ascending order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpnPlan {
    /// The application network, aligned (host bits refused by `new`).
    network: Ipv4Net,
    /// L, between `network.prefix_len()` and [`MAX_SUBNET_PREFIX`].
    subnet_prefix: u8,
    service_bits: u8,
    arithmetic: SubnetArithmetic,
}

impl VpnPlan {
    /// Checks the settings and computes the subnet prefix L.
    ///
    /// Refused: a non-contiguous netmask; a base address with host bits set;
    /// a network smaller than a /29; and bits giving subnets longer than
    /// /[`MAX_SUBNET_PREFIX`] (room for the [`RESERVED_ADDRESSES`] plus at least
    /// one agent). With [`SubnetArithmetic::Documented`], L = P + B, so
    /// 0 <= B <= 29 - P, and 0 bits give one subnet, the whole network. With
    /// [`SubnetArithmetic::Legacy`], L = 32 - P - B as 1.2.0 computed it, so
    /// 3 - P <= B <= 32 - 2P; when L < P 1.2.0 silently ran every service
    /// without a VPN, which is an error here.
    pub fn new(settings: &VpnSettings) -> Result<VpnPlan, Error> {
        let netmask = settings.netmask;
        let network = Ipv4Net::with_netmask(settings.base_network, netmask)
            .map_err(|_| Error::NonContiguousNetmask { netmask })?;
        if network.network() != settings.base_network {
            return Err(Error::MisalignedBase {
                base: settings.base_network,
                netmask,
                network: network.network(),
            });
        }
        let network_prefix = network.prefix_len();
        if network_prefix > MAX_SUBNET_PREFIX {
            return Err(Error::NetworkTooSmall { network_prefix });
        }
        let service_bits = settings.service_bits;
        let subnet_prefix = match settings.arithmetic {
            SubnetArithmetic::Documented => {
                let prefix = u16::from(network_prefix) + u16::from(service_bits);
                match u8::try_from(prefix) {
                    Ok(prefix) if prefix <= MAX_SUBNET_PREFIX => prefix,
                    _ => {
                        return Err(Error::TooManyServiceBits {
                            network_prefix,
                            service_bits,
                            subnet_prefix: prefix,
                            max_service_bits: MAX_SUBNET_PREFIX - network_prefix,
                        });
                    }
                }
            }
            SubnetArithmetic::Legacy => {
                let prefix = 32 - i16::from(network_prefix) - i16::from(service_bits);
                if prefix < i16::from(network_prefix) {
                    return Err(Error::LegacyNoSubnets {
                        network_prefix,
                        service_bits,
                        subnet_prefix: prefix,
                    });
                }
                // prefix >= network_prefix >= 0 and at most 32 - 0 - 0.
                let prefix = u8::try_from(prefix).unwrap_or(u8::MAX);
                if prefix > MAX_SUBNET_PREFIX {
                    return Err(Error::LegacySubnetTooSmall {
                        network_prefix,
                        service_bits,
                        subnet_prefix: prefix,
                        // 32 - P - B <= 29 needs B >= 3 - P; here P + B < 3.
                        min_service_bits: (32 - MAX_SUBNET_PREFIX).saturating_sub(network_prefix),
                    });
                }
                prefix
            }
        };
        Ok(VpnPlan {
            network,
            subnet_prefix,
            service_bits,
            arithmetic: settings.arithmetic,
        })
    }

    /// The application network, `VPN_BASE_NETWORK/VPN_NETMASK` (every application has the same).
    pub fn network(&self) -> Ipv4Net {
        self.network
    }

    /// The prefix length L of every service subnet.
    pub fn subnet_prefix(&self) -> u8 {
        self.subnet_prefix
    }

    /// `VPN_SERVICE_BITS` (B).
    pub fn service_bits(&self) -> u8 {
        self.service_bits
    }

    /// The arithmetic that turned B into L.
    pub fn arithmetic(&self) -> SubnetArithmetic {
        self.arithmetic
    }

    /// Subnets per application: 2^(L - P), which is 2^B with the documented arithmetic.
    pub fn services_per_application(&self) -> u64 {
        1u64 << (self.subnet_prefix - self.network.prefix_len())
    }

    /// Agents per service as the installation guide counts them: 2^(32 - L) - 1,
    /// i.e. 2^(32 - P - B) - 1 with the documented arithmetic.
    ///
    /// The guide only leaves out the manager; the addresses agents can really
    /// get are [`usable_agent_addresses`](Self::usable_agent_addresses).
    pub fn agents_per_service(&self) -> u64 {
        self.subnet_size() - 1
    }

    /// The plan's capacity in one line, as `init` and `cpscheck` print it: the network, the
    /// services per application and the agents per service as the installation guide counts
    /// them, and the addresses agents can really get.
    pub fn capacity(&self) -> String {
        format!(
            "{} gives each application {} service subnet(s) of /{}: {} agent(s) per service as \
             the installation guide counts them ({} addresses usable by agents)",
            self.network,
            self.services_per_application(),
            self.subnet_prefix,
            self.agents_per_service(),
            self.usable_agent_addresses()
        )
    }

    /// Addresses left for agents in each subnet: 2^(32 - L) - 4, without the
    /// [`RESERVED_ADDRESSES`]. Always at least 4 (L <= 29).
    pub fn usable_agent_addresses(&self) -> u64 {
        self.subnet_size() - u64::from(RESERVED_ADDRESSES)
    }

    /// The `index`-th candidate subnet (ascending from 0), or `None` past the last.
    pub fn candidate(&self, index: u64) -> Option<Ipv4Net> {
        let index = u32::try_from(index)
            .ok()
            .filter(|&index| index < self.candidate_count())?;
        Some(self.subnet_at(index))
    }

    /// All candidate subnets in ascending order: the order [`allocate`](Self::allocate) tries them.
    pub fn candidates(&self) -> impl DoubleEndedIterator<Item = Ipv4Net> + use<> {
        let plan = self.clone();
        (0..self.candidate_count()).map(move |index| plan.subnet_at(index))
    }

    /// The lowest candidate subnet that overlaps none of `existing`.
    ///
    /// `existing` are the subnets recorded for the application's services,
    /// whatever plan they came from (1.2.0's legacy arithmetic, earlier
    /// settings): a candidate is taken when it contains or is contained in any
    /// of them, not only when the text is equal as in 1.2.0. Subnets outside
    /// the application network are ignored. Runs in O(n) in the number of recorded
    /// subnets, independent of how many candidates the plan has (see below).
    pub fn allocate(&self, existing: &[Ipv4Net]) -> Result<Ipv4Net, Error> {
        let network_start = u32::from(self.network.network());
        let network_end = u32::from(self.network.broadcast());
        let shift = 32 - u32::from(self.subnet_prefix);
        // Each recorded subnet blocks a contiguous run of candidate indexes, because CIDR
        // blocks are either nested or disjoint. Most block one index (a subnet of the
        // plan's size): a bitmap of the indexes 0..=n takes those, since n subnets leave one
        // of these n + 1 free unless some block more; the rest (larger legacy subnets, and
        // anything past n) are few, and sorted. The bitmap of 2^16 services is 8 KiB, held
        // in the first-level cache: 65,536 services allocate in well under 100 µs.
        let slots = existing.len() + 1;
        let mut single = vec![0u64; slots.div_ceil(64)];
        let mut runs: Vec<(u32, u32)> = Vec::new();
        let network_mask = u32::from(self.network.netmask());
        for subnet in existing {
            // The usual case first: a subnet of the plan's size inside the network.
            let address = u32::from(subnet.addr());
            if subnet.prefix_len() == self.subnet_prefix && address & network_mask == network_start
            {
                let slot = shift_right(address - network_start, shift);
                if let Ok(slot) = usize::try_from(slot)
                    && slot < slots
                {
                    single[slot / 64] |= 1 << (slot % 64);
                    continue;
                }
            }
            let start = u32::from(subnet.network()).max(network_start);
            let end = u32::from(subnet.broadcast()).min(network_end);
            if start > end {
                continue;
            }
            let first = shift_right(start - network_start, shift);
            let last = shift_right(end - network_start, shift);
            match usize::try_from(first) {
                Ok(slot) if first == last && slot < slots => {
                    single[slot / 64] |= 1 << (slot % 64);
                }
                // One past the run's last index; a plan has at most 2^29 candidates.
                _ => runs.push((first, last + 1)),
            }
        }
        runs.sort_unstable();
        // `lowest_free` only grows, over indexes that are blocked: past the runs that start
        // at or before it, past the set bits at it, until neither moves it.
        let mut lowest_free = 0u32;
        let mut runs = runs.into_iter().peekable();
        loop {
            while let Some(&(first, past)) = runs.peek() {
                if first > lowest_free {
                    break;
                }
                lowest_free = lowest_free.max(past);
                runs.next();
            }
            let next = next_clear_bit(&single, lowest_free);
            if next == lowest_free {
                break;
            }
            lowest_free = next;
        }
        if lowest_free >= self.candidate_count() {
            return Err(Error::Exhausted {
                total: self.services_per_application(),
            });
        }
        Ok(self.subnet_at(lowest_free))
    }

    /// The values of the four `IPOP_*` lines of the manager's configuration for `subnet`.
    ///
    /// `IPOP_BASE_IP` and `IPOP_NETMASK` are the base address and the netmask in dotted
    /// form, as 1.2.0 copied `VPN_BASE_NETWORK` and `VPN_NETMASK` (director.cfg accepts only
    /// that form, so the text is the one the operator wrote). Fails only for a subnet without a host #2 (/31, /32),
    /// which a plan never allocates.
    pub fn manager_vpn_config(&self, subnet: Ipv4Net) -> Result<ManagerVpnConfig, Error> {
        Ok(ManagerVpnConfig {
            ipop_subnet: subnet.trunc(),
            ipop_ip_address: manager_address(subnet)?,
            ipop_base_ip: self.network.network().to_string(),
            ipop_netmask: self.network.netmask().to_string(),
        })
    }

    /// 2^(32 - L), the addresses in one subnet.
    fn subnet_size(&self) -> u64 {
        1u64 << (32 - self.subnet_prefix)
    }

    /// 2^(L - P) as an index bound: at most 2^29 because L <= 29.
    fn candidate_count(&self) -> u32 {
        1u32 << (self.subnet_prefix - self.network.prefix_len())
    }

    /// The candidate at `index`; callers keep `index` below [`Self::candidate_count`],
    /// so the subnet ends at or before the network's broadcast address.
    fn subnet_at(&self, index: u32) -> Ipv4Net {
        // A /0 subnet (netmask 0.0.0.0, 0 bits) is a shift by 32: only index 0 exists.
        let offset = index
            .checked_shl(32 - u32::from(self.subnet_prefix))
            .unwrap_or(0);
        let address = Ipv4Addr::from(u32::from(self.network.network()) + offset);
        // subnet_prefix <= MAX_SUBNET_PREFIX was checked by `new`, so this is a
        // valid IPv4 prefix length; a fallback would silently hand out a wrong subnet.
        #[expect(clippy::expect_used, reason = "prefix length checked by VpnPlan::new")]
        Ipv4Net::new(address, self.subnet_prefix).expect("subnet prefix <= 29")
    }
}

/// `value >> shift`, where a shift by 32 (subnets of prefix 0) gives 0 instead of overflowing.
/// The first index at or after `from` whose bit is clear in `bits` (indexes past the bitmap
/// are clear).
fn next_clear_bit(bits: &[u64], from: u32) -> u32 {
    let Ok(from_index) = usize::try_from(from) else {
        return from;
    };
    let mut word = from_index / 64;
    let Some(&first) = bits.get(word) else {
        return from;
    };
    // The bits below `from` in its word count as set.
    let mut taken = first | ((1u64 << (from_index % 64)) - 1);
    loop {
        if taken != u64::MAX {
            let index = word * 64 + taken.trailing_ones() as usize;
            return u32::try_from(index).unwrap_or(u32::MAX);
        }
        word += 1;
        taken = bits.get(word).copied().unwrap_or(0);
    }
}

fn shift_right(value: u32, shift: u32) -> u32 {
    value.checked_shr(shift).unwrap_or(0)
}
