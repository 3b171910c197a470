//! Password guessing protection: failed logins counted per client network (an IPv4 address,
//! an IPv6 /64) and per account and source class, with exponential backoff past a free
//! allowance (1.2 answered every guess at once, forever), and a way in for the account's owner.
//!
//! The policy (docs/operations.md, "Password guessing"):
//!
//! - Each key (a network; an account as tried by direct clients; the same account as tried
//!   through the PHP frontend) may fail [`FREE_FAILURES`] times; past that, one attempt is
//!   checked only once a delay has passed since its last failure, a delay that doubles with
//!   each further failure from [`BACKOFF_BASE`] up to a cap ([`NETWORK_CAP`], [`ACCOUNT_CAP`]).
//!   A key's failures are forgotten [`FORGET_AFTER`] after its last one.
//! - Admission and counting are one step under one lock, taken *before* the password is
//!   hashed: a check under way counts as a failure until it ends, so a burst of any size
//!   gets at most the allowance of hash checks.
//! - Attempts refused by the throttle are not counted and do not lengthen the delay, so
//!   guessing cannot push an account past its cap.
//! - A persistent guesser takes every slot the backoff frees (issue 22: a victim got 1 login
//!   in 74 while 5 addresses guessed), so the account's backoff must not be the owner's only
//!   door. Two doors stay open whatever guessers do elsewhere:
//!   - the account is counted per source class: guesses through the frontend never delay a
//!     direct login of that account, nor direct guesses a login through the frontend;
//!   - a direct login from a network that logged in to the account successfully within
//!     [`TRUST_FOR`] (the last [`TRUSTED_NETWORKS`] such networks are kept per account) is not
//!     held back by the account's backoff, only by its own network's.
//!
//!   What a guesser can still do: one sharing the owner's network (the same IPv4 address or
//!   IPv6 /64), or guessing through the frontend while the owner also uses the frontend, takes
//!   the slots of that path; the owner's other path stays open.
//! - A success through the frontend clears the account's frontend failures (the frontend asks
//!   `/login` then `/getcerts` in a row). A direct success clears nothing: its network is
//!   trusted from then on, and clearing would give guessers a new allowance at each of the
//!   owner's logins. A success never clears a network's failures: an attacker with an account
//!   of their own could otherwise reset their allowance between guesses.
//! - Memory is bounded: names are bounded before they get here (longer ones name no account,
//!   [`crate::store::names::fits_username`]) and kept only as a keyed 64-bit digest, so every
//!   record has the same small size; at most [`MAX_RECORDS`] records and
//!   [`MAX_TRUSTED_ACCOUNTS`] accounts' trusted networks are kept, and when full the records
//!   least recently active are dropped first (forgotten ones, then the oldest), never all.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, RandomState};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failed attempts a key may make before backoff starts.
pub const FREE_FAILURES: u32 = 20;
/// The delay after the first failure past the allowance; each further failure doubles it.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The longest delay for a network (an IPv4 address, an IPv6 /64).
pub const NETWORK_CAP: Duration = Duration::from_secs(300);
/// The longest delay for an account in one source class: short, so that the owner's right
/// password is checked soon once guessing pauses.
pub const ACCOUNT_CAP: Duration = Duration::from_secs(60);
/// How long after its last failure a key's record is kept.
pub const FORGET_AFTER: Duration = Duration::from_secs(900);
/// Failure records kept at most (about 64 bytes each, so about 9 MiB with the map's slack).
pub const MAX_RECORDS: usize = 100_000;
/// Networks remembered per account as having logged in to it.
pub const TRUSTED_NETWORKS: usize = 4;
/// How long a network that logged in to an account stays trusted for it after its last success.
pub const TRUST_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// Accounts whose trusted networks are kept at most (about 200 bytes each). Only right
/// passwords add to it, so guessers cannot fill it.
pub const MAX_TRUSTED_ACCOUNTS: usize = 100_000;

/// How the login throttle counts (see docs/operations.md, "Password guessing"); tests and
/// embedders may shorten the waits: [`LoginThrottleSettings::recommended`] and the setters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginThrottleSettings {
    /// Failed attempts a network, or an account in one source class, may make before backoff.
    pub free_failures: u32,
    /// The delay after the first failure past the allowance; each further failure doubles it.
    pub backoff_base: Duration,
    /// The longest delay for a network.
    pub network_cap: Duration,
    /// The longest delay for an account in one source class.
    pub account_cap: Duration,
    /// How long after its last failure a record is kept.
    pub forget_after: Duration,
    /// Failure records kept at most; the least recently active go first when full.
    pub max_records: usize,
    /// How long a network that logged in to an account bypasses that account's backoff.
    pub trust_for: Duration,
    /// Accounts whose trusted networks are kept at most.
    pub max_trusted_accounts: usize,
}

impl LoginThrottleSettings {
    /// The documented policy: 20 free failures, then 1 s doubling up to 5 minutes for a
    /// network and 1 minute for an account in one class, failures forgotten after 15 minutes,
    /// at most 100,000 records; a network trusted for an account for 30 days after its last
    /// success there, for at most 100,000 accounts.
    pub fn recommended() -> Self {
        LoginThrottleSettings {
            free_failures: FREE_FAILURES,
            backoff_base: BACKOFF_BASE,
            network_cap: NETWORK_CAP,
            account_cap: ACCOUNT_CAP,
            forget_after: FORGET_AFTER,
            max_records: MAX_RECORDS,
            trust_for: TRUST_FOR,
            max_trusted_accounts: MAX_TRUSTED_ACCOUNTS,
        }
    }

    setters! {
        free_failures: u32,
        backoff_base: Duration,
        network_cap: Duration,
        account_cap: Duration,
        forget_after: Duration,
        max_records: usize,
        trust_for: Duration,
        max_trusted_accounts: usize,
    }
}

/// Who is trying a password: a client address, or, behind the PHP frontend (which holds the
/// director's certificate and calls for all its users from one address), the account tried.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoginSource {
    /// A client connecting directly.
    Address(IpAddr),
    /// An account tried through the frontend.
    Account(String),
}

/// The network an address is counted in: IPv4 per address (also when mapped into IPv6), IPv6
/// per /64, since one host of IPv6 usually holds a whole /64.
pub(crate) fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

/// An account name as kept here: a 64-bit digest keyed per process, so that a record has one
/// size whatever the name. Two names sharing a digest (about one chance in 10^10 among 100,000
/// names, and not one an attacker can aim at without the key) would share their counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AccountId(u64);

/// Where an account's attempts come from: each class has its own failures and backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Class {
    /// Clients connecting directly, counted per network as well.
    Direct,
    /// The PHP frontend, which calls for all its users from one address.
    Frontend,
}

/// What the throttle counts: a network, or an account in one source class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Network(IpAddr),
    Account(AccountId, Class),
}

impl Key {
    fn cap(&self, settings: &LoginThrottleSettings) -> Duration {
        match self {
            Key::Network(_) => settings.network_cap,
            Key::Account(..) => settings.account_cap,
        }
    }
}

#[derive(Debug)]
struct Record {
    /// Failures since the record was last cleared or forgotten.
    failures: u32,
    /// Checks admitted and not yet ended.
    pending: u32,
    last_failure: Option<Instant>,
    /// The last attempt seen, admitted or not: the least recently active records are dropped
    /// first when the map is full, so a guesser who keeps knocking keeps their backoff.
    last_seen: Instant,
}

impl Record {
    fn new(now: Instant) -> Self {
        Record {
            failures: 0,
            pending: 0,
            last_failure: None,
            last_seen: now,
        }
    }

    fn forget_if_old(&mut self, forget_after: Duration, now: Instant) {
        if self.pending == 0
            && self
                .last_failure
                .is_some_and(|last| now.saturating_duration_since(last) >= forget_after)
        {
            self.failures = 0;
            self.last_failure = None;
        }
    }

    fn is_idle(&self) -> bool {
        self.failures == 0 && self.pending == 0
    }

    /// Whether one more check may start now.
    fn admits(&self, cap: Duration, settings: &LoginThrottleSettings, now: Instant) -> bool {
        let counted = self.failures.saturating_add(self.pending);
        if counted < settings.free_failures {
            return true;
        }
        // Past the allowance: one check at a time, after the delay.
        if self.pending > 0 {
            return false;
        }
        let excess = counted + 1 - settings.free_failures;
        let delay = backoff(excess, settings.backoff_base, cap);
        self.last_failure
            .is_none_or(|last| now.saturating_duration_since(last) >= delay)
    }
}

/// The delay before the `excess`-th attempt past the allowance: 1 s, 2 s, 4 s... up to `cap`.
fn backoff(excess: u32, base: Duration, cap: Duration) -> Duration {
    let doublings = excess.saturating_sub(1).min(20);
    base.saturating_mul(1 << doublings).min(cap)
}

/// The networks that logged in to one account lately.
#[derive(Debug)]
struct Trusted {
    networks: [Option<(IpAddr, Instant)>; TRUSTED_NETWORKS],
    last_success: Instant,
}

impl Trusted {
    fn holds(&self, network: IpAddr, trust_for: Duration, now: Instant) -> bool {
        self.networks.iter().flatten().any(|(trusted, since)| {
            *trusted == network && now.saturating_duration_since(*since) < trust_for
        })
    }

    /// Records a success from `network`: refreshed if known, else in a free or expired slot,
    /// else in place of the network that succeeded longest ago.
    fn add(&mut self, network: IpAddr, now: Instant) {
        self.last_success = now;
        if let Some(slot) = self
            .networks
            .iter_mut()
            .flatten()
            .find(|(trusted, _)| *trusted == network)
        {
            slot.1 = now;
            return;
        }
        let oldest = self
            .networks
            .iter_mut()
            .min_by_key(|slot| slot.map(|(_, since)| since));
        if let Some(slot) = oldest {
            *slot = Some((network, now));
        }
    }
}

#[derive(Debug, Default)]
struct State {
    records: HashMap<Key, Record>,
    trusted: HashMap<AccountId, Trusted>,
}

#[derive(Debug)]
struct Shared {
    settings: LoginThrottleSettings,
    /// The key of the account digests.
    digest: RandomState,
    state: Mutex<State>,
}

/// Failed password checks per key. Per process: with several director replicas a source
/// gets this allowance from each, which still turns millions of guesses into dozens.
#[derive(Debug, Clone)]
pub(super) struct LoginThrottle {
    shared: Arc<Shared>,
}

/// How a checked attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The password was right.
    Succeeded,
    /// The password was wrong (or the user unknown).
    Failed,
}

/// An admitted attempt: counted as a failure on each of its keys until [`Attempt::end`];
/// dropped without it (the check could not be made: hashing busy, database down, caller
/// gone), it counts as nothing.
#[derive(Debug)]
pub(super) struct Attempt {
    throttle: LoginThrottle,
    keys: Vec<Key>,
    /// The account and the direct client's network, trusted for the account on a success.
    trust: Option<(AccountId, IpAddr)>,
    ended: bool,
}

impl LoginThrottle {
    pub(super) fn new(settings: LoginThrottleSettings) -> Self {
        LoginThrottle {
            shared: Arc::new(Shared {
                settings,
                digest: RandomState::new(),
                state: Mutex::default(),
            }),
        }
    }

    fn account(&self, name: &str) -> AccountId {
        AccountId(self.shared.digest.hash_one(name))
    }

    /// Admits an attempt from `source` for `username`, counting it on every key at once, or
    /// `None` when a key that applies is in backoff (nothing counted then). A direct client is
    /// counted per network and per account (its direct class), though the account's backoff
    /// does not apply to a network trusted for it; the frontend per account (its frontend
    /// class) only. The caller has bounded the names ([`crate::store::names::fits_username`]).
    pub(super) fn begin(
        &self,
        source: &LoginSource,
        username: &str,
        now: Instant,
    ) -> Option<Attempt> {
        let settings = &self.shared.settings;
        let (keys, trust) = match source {
            LoginSource::Address(ip) => {
                let network = network(*ip);
                let account = self.account(username);
                (
                    vec![Key::Network(network), Key::Account(account, Class::Direct)],
                    Some((account, network)),
                )
            }
            LoginSource::Account(name) => (
                vec![Key::Account(self.account(name), Class::Frontend)],
                None,
            ),
        };
        let mut state = self.lock();
        let trusted = trust.is_some_and(|(account, network)| {
            state
                .trusted
                .get(&account)
                .is_some_and(|trusted| trusted.holds(network, settings.trust_for, now))
        });
        let mut admitted = true;
        for key in &keys {
            let Some(record) = state.records.get_mut(key) else {
                continue;
            };
            record.last_seen = now;
            record.forget_if_old(settings.forget_after, now);
            // A trusted network is held back by its own failures only.
            let exempt = trusted && matches!(key, Key::Account(..));
            if !exempt && !record.admits(key.cap(settings), settings, now) {
                admitted = false;
            }
        }
        if !admitted {
            return None;
        }
        let n_new = keys
            .iter()
            .filter(|key| !state.records.contains_key(key))
            .count();
        if !make_room(&mut state.records, n_new, settings, now) {
            // Every record has a check under way (more at once than the map holds): refuse
            // rather than grow.
            return None;
        }
        for key in &keys {
            let record = state
                .records
                .entry(*key)
                .or_insert_with(|| Record::new(now));
            record.pending += 1;
            record.last_seen = now;
        }
        drop(state);
        Some(Attempt {
            throttle: self.clone(),
            keys,
            trust,
            ended: false,
        })
    }

    /// Whether nothing is counted (for tests).
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.lock().records.is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn finish(&self, attempt: &Attempt, outcome: Option<Outcome>, now: Instant) {
        let settings = &self.shared.settings;
        let mut state = self.lock();
        for key in &attempt.keys {
            let Some(record) = state.records.get_mut(key) else {
                continue;
            };
            record.pending = record.pending.saturating_sub(1);
            record.last_seen = now;
            match (outcome, key) {
                (Some(Outcome::Failed), _) => {
                    record.failures = record.failures.saturating_add(1);
                    record.last_failure = Some(now);
                }
                (Some(Outcome::Succeeded), Key::Account(_, Class::Frontend)) => {
                    record.failures = 0;
                    record.last_failure = None;
                }
                (Some(Outcome::Succeeded), Key::Account(_, Class::Direct) | Key::Network(_))
                | (None, _) => {}
            }
            if record.is_idle() {
                state.records.remove(key);
            }
        }
        if let (Some(Outcome::Succeeded), Some((account, network))) = (outcome, attempt.trust) {
            if !state.trusted.contains_key(&account) {
                make_trusted_room(&mut state.trusted, settings, now);
            }
            state
                .trusted
                .entry(account)
                .or_insert_with(|| Trusted {
                    networks: [None; TRUSTED_NETWORKS],
                    last_success: now,
                })
                .add(network, now);
        }
    }
}

/// Makes room for `n_new` records: past the bound, forgotten and idle records go first, then
/// the least recently active eighth of those with no check under way (dropping a batch keeps
/// the cost of a full map at a sort per several thousand new keys). False when no room can be
/// made.
fn make_room(
    records: &mut HashMap<Key, Record>,
    n_new: usize,
    settings: &LoginThrottleSettings,
    now: Instant,
) -> bool {
    let max = settings.max_records.max(1);
    if records.len() + n_new <= max {
        return true;
    }
    records.retain(|_, record| {
        record.forget_if_old(settings.forget_after, now);
        !record.is_idle()
    });
    if records.len() + n_new <= max {
        return true;
    }
    let mut evictable: Vec<(Instant, Key)> = records
        .iter()
        .filter(|(_, record)| record.pending == 0)
        .map(|(key, record)| (record.last_seen, *key))
        .collect();
    let needed = records.len() + n_new - max;
    let n_evicted = needed.max(max / 8).min(evictable.len());
    if n_evicted > 0 {
        evictable.select_nth_unstable_by_key(n_evicted - 1, |(last_seen, _)| *last_seen);
        for (_, key) in &evictable[..n_evicted] {
            records.remove(key);
        }
    }
    records.len() + n_new <= max
}

/// Makes room for one more account's trusted networks: expired ones go first, then the
/// eighth whose last success is oldest.
fn make_trusted_room(
    trusted: &mut HashMap<AccountId, Trusted>,
    settings: &LoginThrottleSettings,
    now: Instant,
) {
    let max = settings.max_trusted_accounts.max(1);
    if trusted.len() < max {
        return;
    }
    trusted
        .retain(|_, entry| now.saturating_duration_since(entry.last_success) < settings.trust_for);
    if trusted.len() < max {
        return;
    }
    let mut oldest: Vec<(Instant, AccountId)> = trusted
        .iter()
        .map(|(account, entry)| (entry.last_success, *account))
        .collect();
    let n_evicted = (trusted.len() + 1 - max).max(max / 8).min(oldest.len());
    if n_evicted > 0 {
        oldest.select_nth_unstable_by_key(n_evicted - 1, |(last_success, _)| *last_success);
        for (_, account) in &oldest[..n_evicted] {
            trusted.remove(account);
        }
    }
}

impl Attempt {
    /// Records how the check ended.
    pub(super) fn end(mut self, outcome: Outcome, now: Instant) {
        self.ended = true;
        self.throttle.clone().finish(&self, Some(outcome), now);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.ended {
            self.throttle.clone().finish(self, None, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> LoginSource {
        LoginSource::Address(text.parse().unwrap())
    }

    fn frontend(name: &str) -> LoginSource {
        LoginSource::Account(name.into())
    }

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(LoginThrottleSettings::recommended())
    }

    /// Ends `n` attempts from `source` at `now` with `outcome`, each admitted.
    fn end(
        throttle: &LoginThrottle,
        source: &LoginSource,
        user: &str,
        n: u32,
        outcome: Outcome,
        now: Instant,
    ) {
        for i in 0..n {
            let attempt = throttle
                .begin(source, user, now)
                .unwrap_or_else(|| panic!("attempt {i} from {source:?} for {user} refused"));
            attempt.end(outcome, now);
        }
    }

    /// Fails `n` attempts from `source` at `now`, each admitted.
    fn fail(throttle: &LoginThrottle, source: &LoginSource, user: &str, n: u32, now: Instant) {
        end(throttle, source, user, n, Outcome::Failed, now);
    }

    fn n_records(throttle: &LoginThrottle) -> usize {
        throttle.lock().records.len()
    }

    #[test]
    fn backs_off_exponentially_after_the_allowance_without_lockout() {
        let throttle = throttle();
        let ip = address("192.0.2.1");
        let start = Instant::now();
        fail(&throttle, &ip, "u", FREE_FAILURES, start);
        assert!(throttle.begin(&ip, "u", start).is_none());
        assert!(
            throttle.begin(&address("192.0.2.2"), "v", start).is_some(),
            "another IPv4 address and account are not affected"
        );
        // 1 s, then 2 s, then 4 s...
        let mut now = start;
        for delay in [1, 2, 4, 8] {
            let delay = Duration::from_secs(delay);
            assert!(
                throttle
                    .begin(&ip, "u", now + delay - Duration::from_millis(1))
                    .is_none()
            );
            now += delay;
            fail(&throttle, &ip, "u", 1, now);
        }
        // Refusals do not count: knocking all the time does not lengthen the delay.
        for _ in 0..1000 {
            assert!(throttle.begin(&ip, "u", now).is_none());
        }
        assert!(
            throttle
                .begin(&ip, "u", now + Duration::from_secs(16))
                .is_some()
        );
        // Forgotten after a quiet while.
        let later = now + FORGET_AFTER;
        fail(&throttle, &ip, "u", FREE_FAILURES, later);
    }

    #[test]
    fn the_delay_is_capped() {
        assert_eq!(backoff(1, BACKOFF_BASE, ACCOUNT_CAP), BACKOFF_BASE);
        assert_eq!(backoff(3, BACKOFF_BASE, ACCOUNT_CAP), BACKOFF_BASE * 4);
        assert_eq!(backoff(10, BACKOFF_BASE, ACCOUNT_CAP), ACCOUNT_CAP);
        assert_eq!(backoff(u32::MAX, BACKOFF_BASE, NETWORK_CAP), NETWORK_CAP);
    }

    #[test]
    fn checks_under_way_count_and_abandoned_ones_do_not() {
        let throttle = throttle();
        let ip = address("192.0.2.1");
        let now = Instant::now();
        let attempts: Vec<_> = (0..FREE_FAILURES)
            .map(|_| throttle.begin(&ip, "u", now).unwrap())
            .collect();
        assert!(
            throttle.begin(&ip, "u", now).is_none(),
            "the allowance is in use"
        );
        drop(attempts);
        fail(&throttle, &ip, "u", FREE_FAILURES, now);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_per_address() {
        let throttle = throttle();
        let now = Instant::now();
        fail(
            &throttle,
            &address("2001:db8:1:2::1"),
            "a",
            FREE_FAILURES,
            now,
        );
        assert!(
            throttle
                .begin(&address("2001:db8:1:2:ffff:ffff:ffff:ffff"), "b", now)
                .is_none()
        );
        assert!(
            throttle
                .begin(&address("2001:db8:1:3::1"), "b", now)
                .is_some()
        );
        fail(
            &throttle,
            &address("::ffff:192.0.2.7"),
            "c",
            FREE_FAILURES,
            now,
        );
        assert!(throttle.begin(&address("192.0.2.7"), "d", now).is_none());
    }

    #[test]
    fn accounts_are_counted_across_addresses_per_class() {
        let throttle = throttle();
        let now = Instant::now();
        for i in 0..FREE_FAILURES {
            fail(
                &throttle,
                &address(&format!("198.51.100.{i}")),
                "victim",
                1,
                now,
            );
        }
        assert!(
            throttle
                .begin(&address("203.0.113.1"), "victim", now)
                .is_none(),
            "the account backs off for every direct client"
        );
        // Direct guesses do not hold back the frontend: another class.
        end(
            &throttle,
            &frontend("victim"),
            "victim",
            1,
            Outcome::Succeeded,
            now,
        );
        fail(&throttle, &frontend("victim"), "victim", FREE_FAILURES, now);
        assert!(throttle.begin(&frontend("victim"), "victim", now).is_none());
        // Nor the frontend's guesses a direct client, once the direct ones are forgotten.
        let later = now + FORGET_AFTER;
        assert!(
            throttle
                .begin(&address("203.0.113.1"), "victim", later)
                .is_some()
        );
        // The account's delay is short and capped: the right password gets its check, and a
        // success through the frontend clears the frontend's failures.
        let later = now + ACCOUNT_CAP;
        end(
            &throttle,
            &frontend("victim"),
            "victim",
            1,
            Outcome::Succeeded,
            later,
        );
        fail(
            &throttle,
            &frontend("victim"),
            "victim",
            FREE_FAILURES,
            later,
        );
    }

    #[test]
    fn a_network_that_logged_in_before_bypasses_the_accounts_backoff_only() {
        let throttle = throttle();
        let home = address("192.0.2.10");
        let now = Instant::now();
        end(&throttle, &home, "victim", 1, Outcome::Succeeded, now);
        // Guessers elsewhere put the accounts in backoff...
        for i in 0..FREE_FAILURES {
            fail(
                &throttle,
                &address(&format!("198.51.100.{i}")),
                "victim",
                1,
                now,
            );
            fail(
                &throttle,
                &address(&format!("198.51.101.{i}")),
                "bob",
                1,
                now,
            );
        }
        assert!(
            throttle
                .begin(&address("203.0.113.9"), "victim", now)
                .is_none()
        );
        assert!(
            throttle.begin(&home, "bob", now).is_none(),
            "trusted for the account that logged in only"
        );
        // ...but not for the network the owner logged in from, however often they come.
        end(&throttle, &home, "victim", 3, Outcome::Succeeded, now);
        // A direct success cleared nothing: guessers do not get a new allowance.
        assert!(
            throttle
                .begin(&address("203.0.113.9"), "victim", now)
                .is_none()
        );
        // The network's own failures still apply to it.
        fail(&throttle, &home, "victim", FREE_FAILURES, now);
        assert!(throttle.begin(&home, "victim", now).is_none());
    }

    #[test]
    fn trust_expires() {
        let throttle = throttle();
        let home = address("192.0.2.10");
        let start = Instant::now();
        end(&throttle, &home, "victim", 1, Outcome::Succeeded, start);
        let now = start + TRUST_FOR;
        for i in 0..FREE_FAILURES {
            fail(
                &throttle,
                &address(&format!("198.51.100.{i}")),
                "victim",
                1,
                now,
            );
        }
        assert!(throttle.begin(&home, "victim", now).is_none());
    }

    #[test]
    fn an_account_keeps_its_last_few_networks() {
        let throttle = throttle();
        let start = Instant::now();
        let networks: Vec<_> = (0..=TRUSTED_NETWORKS)
            .map(|i| address(&format!("192.0.2.{i}")))
            .collect();
        for (i, network) in networks.iter().enumerate() {
            let at = start + Duration::from_secs(i as u64);
            end(&throttle, network, "victim", 1, Outcome::Succeeded, at);
        }
        let now = start + Duration::from_secs(60);
        for i in 0..FREE_FAILURES {
            fail(
                &throttle,
                &address(&format!("198.51.100.{i}")),
                "victim",
                1,
                now,
            );
        }
        assert!(
            throttle.begin(&networks[0], "victim", now).is_none(),
            "the oldest of {} networks is forgotten",
            TRUSTED_NETWORKS + 1
        );
        for network in &networks[1..] {
            assert!(throttle.begin(network, "victim", now).is_some());
        }
    }

    #[test]
    fn a_full_map_drops_the_least_recently_active_records_not_all() {
        let settings = LoginThrottleSettings {
            max_records: 800,
            ..LoginThrottleSettings::recommended()
        };
        let throttle = LoginThrottle::new(settings);
        let start = Instant::now();
        // A guesser in backoff who keeps knocking, and an old quiet one.
        let persistent = address("192.0.2.1");
        let quiet = address("192.0.2.2");
        fail(&throttle, &quiet, "q", FREE_FAILURES, start);
        fail(&throttle, &persistent, "p", FREE_FAILURES, start);
        // A flood of distinct networks and names, one failure each, within the persistent
        // guesser's 1 s delay; the persistent guesser knocks (refused) all along.
        for i in 0..2000u32 {
            let now = start + Duration::from_micros(250 * u64::from(i + 1));
            fail(
                &throttle,
                &address(&flood_ip(i)),
                &format!("junk{i}"),
                1,
                now,
            );
            assert!(throttle.begin(&persistent, "p", now).is_none());
            assert!(n_records(&throttle) <= 800);
        }
        let now = start + Duration::from_millis(600);
        assert!(
            throttle.begin(&persistent, "p", now).is_none(),
            "the persistent guesser is still in backoff"
        );
        assert!(
            throttle.begin(&quiet, "q", now).is_some(),
            "the least recently active record was dropped"
        );
        // The newest records survived: at least 700 of 800 places are kept, two per network.
        let state = throttle.lock();
        for i in 1700..2000u32 {
            let ip: IpAddr = flood_ip(i).parse().unwrap();
            assert!(state.records.contains_key(&Key::Network(ip)), "{ip}");
        }
    }

    fn flood_ip(i: u32) -> String {
        format!("10.{}.{}.1", i / 256, i % 256)
    }

    #[test]
    fn a_record_costs_the_same_whatever_the_name() {
        // The bound of docs/operations.md: a key and its record in one small bucket, the name
        // kept as a digest.
        assert!(std::mem::size_of::<(Key, Record)>() <= 64);
        let throttle = LoginThrottle::new(LoginThrottleSettings {
            max_records: 100,
            ..LoginThrottleSettings::recommended()
        });
        let now = Instant::now();
        let long = "\u{10348}".repeat(64);
        for i in 0..300 {
            let name = format!("{long}{i}");
            fail(&throttle, &frontend(&name), &name, 1, now);
            assert!(n_records(&throttle) <= 100);
        }
    }

    #[test]
    fn a_map_full_of_checks_under_way_refuses_rather_than_grows() {
        let throttle = LoginThrottle::new(LoginThrottleSettings {
            max_records: 4,
            ..LoginThrottleSettings::recommended()
        });
        let now = Instant::now();
        let held: Vec<_> = (0..2)
            .map(|i| {
                throttle
                    .begin(&address(&format!("192.0.2.{i}")), "u", now)
                    .unwrap()
            })
            .collect();
        assert_eq!(n_records(&throttle), 3, "two networks and one account");
        assert!(throttle.begin(&address("192.0.2.9"), "v", now).is_none());
        drop(held);
        assert!(throttle.begin(&address("192.0.2.9"), "v", now).is_some());
    }
}
