//! Which connections the listener serves: caps per address and per network, and an anonymous
//! pool that cannot take the places of clients with a certificate of the director's CA.
//!
//! Every connection starts anonymous: nobody is known before the TLS handshake ends. Anonymous
//! connections (handshaking, or done without a client certificate) hold at most
//! `max_anonymous_connections` places, so at least `max_connections - max_anonymous_connections`
//! are always left for connections that authenticated. When a newcomer finds the anonymous
//! places (or all places) held, it is not simply refused — a manager whose handshake has not
//! happened yet would be locked out by whoever holds them — but an anonymous connection of the
//! network holding the most anonymous places is evicted: fair share, so a flood only pushes
//! itself out. Only when the newcomer's own network holds the most is the newcomer refused.
//!
//! One mutex guards every count; a [`Slot`] is counted once at admission and given back
//! once, by eviction or by its drop, whichever comes first (the `released` flag, only written
//! under the lock, says which did).

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use tokio::sync::Notify;

use super::stats::{Eviction, Refusal, TransportStats};

/// The admission limits, already made consistent (every cap at least 1).
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) max_connections: usize,
    pub(super) max_anonymous: usize,
    pub(super) per_address: usize,
    pub(super) per_network: usize,
}

/// Who counts as one address: an IPv4 address (also when mapped into IPv6), or the /64 of an
/// IPv6 address (one host or site usually holds a whole /64).
pub(super) fn address_of(ip: IpAddr) -> IpNet {
    match canonical(ip) {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::new_assert(v4, 32)),
        IpAddr::V6(v6) => IpNet::V6(Ipv6Net::new_assert(v6, 64).trunc()),
    }
}

/// Who counts as one network: an IPv4 /24, an IPv6 /48 (a site's allocation).
pub(super) fn network_of(ip: IpAddr) -> IpNet {
    match canonical(ip) {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::new_assert(v4, 24).trunc()),
        IpAddr::V6(v6) => IpNet::V6(Ipv6Net::new_assert(v6, 48).trunc()),
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// What the admission lock guards.
#[derive(Debug, Default)]
struct State {
    next_id: u64,
    total: usize,
    anonymous: usize,
    addresses: HashMap<IpNet, usize>,
    networks: HashMap<IpNet, Network>,
}

/// The connections of one network.
#[derive(Debug, Default)]
struct Network {
    /// Open connections, anonymous or not.
    open: usize,
    /// The anonymous ones, oldest first (ids grow).
    anonymous: BTreeMap<u64, Arc<Shared>>,
}

/// What a connection shares with the admission state.
#[derive(Debug)]
pub(super) struct Shared {
    /// Its counts were given back (evicted, or dropped). Written only under the lock.
    released: AtomicBool,
    /// Told once the connection is evicted; its task selects on it.
    pub(super) evicted: Notify,
    /// Requests being answered (0 while handshaking or idle between requests): such a
    /// connection is evicted after the others of its network.
    busy: AtomicUsize,
    address: IpNet,
}

impl Shared {
    /// Marks a request in flight until the guard is dropped.
    pub(super) fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }
}

/// A request in flight on a connection ([`Shared::busy`]).
pub(super) struct Busy(Arc<Shared>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The admission state of one listener.
#[derive(Debug)]
pub(super) struct Admission {
    limits: Limits,
    state: Mutex<State>,
    stats: TransportStats,
}

/// An admitted connection's place, given back when dropped (unless evicted first).
#[derive(Debug)]
pub(super) struct Slot {
    admission: Arc<Admission>,
    id: u64,
    network: IpNet,
    shared: Arc<Shared>,
}

/// A newcomer let in, and whom it displaced.
#[derive(Debug)]
pub(super) struct Admitted {
    pub(super) slot: Slot,
    /// The limit that was full and the network of the connection evicted to make room.
    pub(super) eviction: Option<(Eviction, IpNet)>,
}

impl Admission {
    pub(super) fn new(limits: Limits, stats: TransportStats) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            state: Mutex::new(State::default()),
            stats,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the counts consistent before anything can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new connection from `ip`, evicting an anonymous one if the pool is full, or
    /// says why not; counts either in the stats.
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refusal> {
        let admitted = self.decide(ip);
        match &admitted {
            Ok(Admitted {
                eviction: Some((reason, _)),
                ..
            }) => self.stats.count_evicted(*reason),
            Ok(_) => {}
            Err(refusal) => self.stats.count_refused(*refusal),
        }
        self.stats.count_accepted();
        admitted
    }

    fn decide(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refusal> {
        let address = address_of(ip);
        let network = network_of(ip);
        let limits = self.limits;
        let mut state = self.lock();
        if state.addresses.get(&address).copied().unwrap_or(0) >= limits.per_address {
            return Err(Refusal::Address);
        }
        if state.networks.get(&network).map_or(0, |net| net.open) >= limits.per_network {
            return Err(Refusal::Network);
        }
        let mut eviction = None;
        let anonymous_full = state.anonymous >= limits.max_anonymous;
        if anonymous_full || state.total >= limits.max_connections {
            let reason = if anonymous_full {
                Eviction::Anonymous
            } else {
                Eviction::Total
            };
            match state.victim(network) {
                None => {
                    return Err(if anonymous_full {
                        Refusal::Anonymous
                    } else {
                        Refusal::Total
                    });
                }
                Some((victim_network, _)) if victim_network == network => {
                    return Err(Refusal::Anonymous);
                }
                Some((victim_network, id)) => {
                    state.evict(victim_network, id);
                    eviction = Some((reason, victim_network));
                }
            }
        }
        state.next_id += 1;
        let id = state.next_id;
        let shared = Arc::new(Shared {
            released: AtomicBool::new(false),
            evicted: Notify::new(),
            busy: AtomicUsize::new(0),
            address,
        });
        state.total += 1;
        state.anonymous += 1;
        *state.addresses.entry(address).or_insert(0) += 1;
        let entry = state.networks.entry(network).or_default();
        entry.open += 1;
        entry.anonymous.insert(id, shared.clone());
        self.publish(&state);
        drop(state);
        Ok(Admitted {
            slot: Slot {
                admission: self.clone(),
                id,
                network,
                shared,
            },
            eviction,
        })
    }

    fn publish(&self, state: &State) {
        self.stats
            .set_open(state.anonymous, state.total.saturating_sub(state.anonymous));
    }
}

impl State {
    /// The anonymous connection to evict for a newcomer of `newcomer`'s network: one of the
    /// network holding the most anonymous connections (among equals another network than the
    /// newcomer's), its oldest connection not answering a request, else its oldest. Between
    /// networks holding as many, the one whose candidate is idle and oldest goes first, so
    /// a young handshake (a manager's) is the last to go.
    fn victim(&self, newcomer: IpNet) -> Option<(IpNet, u64)> {
        let most = self
            .networks
            .values()
            .map(|network| network.anonymous.len())
            .max()
            .filter(|most| *most > 0)?;
        self.networks
            .iter()
            .filter(|(_, network)| network.anonymous.len() == most)
            .filter_map(|(key, network)| {
                let (id, idle) = network.candidate()?;
                Some(((*key != newcomer, idle, Reverse(id)), *key, id))
            })
            .max_by_key(|(rank, ..)| *rank)
            .map(|(_, key, id)| (key, id))
    }

    /// Gives back the places of anonymous connection `id` of `network` and tells its task.
    fn evict(&mut self, network: IpNet, id: u64) {
        let Some(shared) = self
            .networks
            .get_mut(&network)
            .and_then(|entry| entry.anonymous.remove(&id))
        else {
            return;
        };
        self.anonymous = self.anonymous.saturating_sub(1);
        self.release(network, shared.address);
        shared.released.store(true, Ordering::Relaxed);
        // Kept as a permit if the task is not waiting yet.
        shared.evicted.notify_one();
    }

    /// Gives back a connection's place in the total, its address and its network.
    fn release(&mut self, network: IpNet, address: IpNet) {
        self.total = self.total.saturating_sub(1);
        if let Some(open) = self.addresses.get_mut(&address) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                self.addresses.remove(&address);
            }
        }
        if let Some(entry) = self.networks.get_mut(&network) {
            entry.open = entry.open.saturating_sub(1);
            if entry.open == 0 {
                self.networks.remove(&network);
            }
        }
    }
}

impl Network {
    /// The connection of this network to evict first, and whether it is idle: the oldest
    /// not answering a request, else the oldest.
    fn candidate(&self) -> Option<(u64, bool)> {
        self.anonymous
            .iter()
            .find(|(_, shared)| shared.busy.load(Ordering::Relaxed) == 0)
            .map(|(id, _)| (*id, true))
            .or_else(|| self.anonymous.keys().next().map(|id| (*id, false)))
    }
}

impl Slot {
    /// What the connection shares with the admission state (its eviction signal).
    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Moves the connection out of the anonymous pool: it presented a certificate the
    /// director's CA signed. False if it was evicted meanwhile (it is ending).
    pub(super) fn authenticate(&self) -> bool {
        let mut state = self.admission.lock();
        if self.shared.released.load(Ordering::Relaxed) {
            return false;
        }
        let removed = state
            .networks
            .get_mut(&self.network)
            .and_then(|entry| entry.anonymous.remove(&self.id))
            .is_some();
        if removed {
            state.anonymous = state.anonymous.saturating_sub(1);
            self.admission.publish(&state);
        }
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.admission.lock();
        if self.shared.released.swap(true, Ordering::Relaxed) {
            return;
        }
        let was_anonymous = state
            .networks
            .get_mut(&self.network)
            .and_then(|entry| entry.anonymous.remove(&self.id))
            .is_some();
        if was_anonymous {
            state.anonymous = state.anonymous.saturating_sub(1);
        }
        state.release(self.network, self.shared.address);
        self.admission.publish(&state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_connections: usize, max_anonymous: usize, cap: usize) -> Arc<Admission> {
        Admission::new(
            Limits {
                max_connections,
                max_anonymous,
                per_address: cap,
                per_network: cap,
            },
            TransportStats::new(),
        )
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn keys_group_ipv4_by_address_and_24_and_ipv6_by_64_and_48() {
        assert_eq!(address_of(ip("10.1.2.3")).to_string(), "10.1.2.3/32");
        assert_eq!(network_of(ip("10.1.2.3")).to_string(), "10.1.2.0/24");
        assert_eq!(network_of(ip("::ffff:10.1.2.3")).to_string(), "10.1.2.0/24");
        assert_eq!(
            address_of(ip("2001:db8:1:2:3::4")).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            network_of(ip("2001:db8:1:2:3::4")).to_string(),
            "2001:db8:1::/48"
        );
    }

    #[test]
    fn caps_per_address_and_network_refuse() {
        let admission = admission(100, 100, 2);
        let _a = admission.admit(ip("10.0.0.1")).unwrap();
        let _b = admission.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            admission.admit(ip("10.0.0.1")).unwrap_err(),
            Refusal::Address
        );
        assert_eq!(
            admission.admit(ip("10.0.0.2")).unwrap_err(),
            Refusal::Network
        );
        assert!(admission.admit(ip("10.0.1.1")).is_ok());
    }

    #[test]
    fn a_full_pool_evicts_the_oldest_of_the_network_holding_most() {
        let admission = admission(100, 4, 10);
        let flood: Vec<Admitted> = (0..3)
            .map(|_| admission.admit(ip("10.0.0.1")).unwrap())
            .collect();
        let other = admission.admit(ip("10.0.1.1")).unwrap();
        // The pool is full: a third network evicts the flood's oldest.
        let newcomer = admission.admit(ip("10.0.2.1")).unwrap();
        let (reason, network) = newcomer.eviction.unwrap();
        assert_eq!(reason, Eviction::Anonymous);
        assert_eq!(network.to_string(), "10.0.0.0/24");
        assert!(flood[0].slot.shared.released.load(Ordering::Relaxed));
        assert!(!flood[1].slot.shared.released.load(Ordering::Relaxed));
        // The flood's own newcomer finds its network holding the most (2 against 1, 1):
        // refused, not evicting the others.
        let _ = &other;
        assert_eq!(
            admission.admit(ip("10.0.0.2")).unwrap_err(),
            Refusal::Anonymous
        );
        assert_eq!(admission.stats.evicted(Eviction::Anonymous), 1);
        assert_eq!(admission.stats.open(), (4, 0));
    }

    #[test]
    fn authenticated_connections_leave_the_pool_and_are_never_evicted() {
        let admission = admission(4, 2, 10);
        let manager = admission.admit(ip("10.0.9.1")).unwrap();
        assert!(manager.slot.authenticate());
        let user = admission.admit(ip("10.0.8.1")).unwrap();
        assert!(user.slot.authenticate());
        assert_eq!(admission.stats.open(), (0, 2));
        let _a = admission.admit(ip("10.0.0.1")).unwrap();
        let _b = admission.admit(ip("10.0.1.1")).unwrap();
        // Total full, the anonymous places too: the newcomer evicts an anonymous one, never
        // an authenticated one.
        let newcomer = admission.admit(ip("10.0.2.1")).unwrap();
        assert!(newcomer.eviction.is_some());
        assert!(!manager.slot.shared.released.load(Ordering::Relaxed));
        assert!(!user.slot.shared.released.load(Ordering::Relaxed));
        // With every place authenticated, nothing can be evicted.
        drop((_a, _b, newcomer));
        let more: Vec<Admitted> = (1..=2)
            .map(|n| admission.admit(ip(&format!("10.0.{n}.7"))).unwrap())
            .collect();
        for admitted in &more {
            assert!(admitted.slot.authenticate());
        }
        assert_eq!(admission.admit(ip("10.0.5.1")).unwrap_err(), Refusal::Total);
    }

    #[test]
    fn a_slot_is_given_back_once_whether_evicted_or_dropped() {
        let admission = admission(2, 2, 10);
        let first = admission.admit(ip("10.0.0.1")).unwrap();
        let _second = admission.admit(ip("10.0.0.2")).unwrap();
        let third = admission.admit(ip("10.0.1.1")).unwrap();
        assert!(third.eviction.is_some());
        // Evicted: authenticating now fails, and its drop gives nothing back twice.
        assert!(!first.slot.authenticate());
        drop(first);
        assert_eq!(admission.stats.open(), (2, 0));
        let state = admission.lock();
        assert_eq!(state.total, 2);
        assert_eq!(state.addresses.len(), 2);
        drop(state);
        drop((third, _second));
        let state = admission.lock();
        assert_eq!((state.total, state.anonymous), (0, 0));
        assert!(state.addresses.is_empty() && state.networks.is_empty());
    }

    #[test]
    fn busy_connections_are_evicted_after_idle_ones() {
        let admission = admission(100, 3, 10);
        let busy = admission.admit(ip("10.0.0.1")).unwrap();
        let _request = busy.slot.shared().busy();
        let _idle = admission.admit(ip("10.0.0.2")).unwrap();
        let _other = admission.admit(ip("10.0.1.1")).unwrap();
        let newcomer = admission.admit(ip("10.0.2.1")).unwrap();
        assert!(newcomer.eviction.is_some());
        assert!(!busy.slot.shared.released.load(Ordering::Relaxed));
        assert!(_idle.slot.shared.released.load(Ordering::Relaxed));
    }
}
