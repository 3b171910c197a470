//! Password guessing protection: failed logins counted per client network (an IPv4 address,
//! an IPv6 /64) and per account, with exponential backoff past a free allowance (1.2 answered
//! every guess at once, forever).
//!
//! The policy (docs/operations.md, "Password guessing"):
//!
//! - Each key (a network, an account) may fail [`FREE_FAILURES`] times; past that, one
//!   attempt is checked only once a delay has passed since its last failure, a delay that
//!   doubles with each further failure from [`BACKOFF_BASE`] up to a cap ([`NETWORK_CAP`],
//!   [`ACCOUNT_CAP`]). A key's failures are forgotten [`FORGET_AFTER`] after its last one.
//! - Admission and counting are one step under one lock, taken *before* the password is
//!   hashed: a check under way counts as a failure until it ends, so a burst of any size
//!   gets at most the allowance of hash checks.
//! - Attempts refused by the throttle are not counted and do not lengthen the delay, so
//!   guessing cannot push an account past its cap: there is no lockout. Through the
//!   frontend (one address for everyone, throttled per account only) an attacker guessing
//!   a victim's password gets at most one check per [`ACCOUNT_CAP`] (1,440 a day), and the
//!   victim's right password is checked at the first free slot, at most [`ACCOUNT_CAP`] after
//!   the last guess, and a success clears the account's failures.
//! - A success does not clear a network's failures: an attacker with an account of their own
//!   could otherwise reset their allowance between guesses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failed attempts a key may make before backoff starts.
pub const FREE_FAILURES: u32 = 20;
/// The delay after the first failure past the allowance; each further failure doubles it.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The longest delay for a network (an IPv4 address, an IPv6 /64).
pub const NETWORK_CAP: Duration = Duration::from_secs(300);
/// The longest delay for an account: short, so that a victim's right password is checked
/// soon even while someone guesses theirs.
pub const ACCOUNT_CAP: Duration = Duration::from_secs(60);
/// How long after its last failure a key's record is kept.
pub const FORGET_AFTER: Duration = Duration::from_secs(900);
/// Keys tracked at most; beyond, forgotten records are pruned, then the whole map (memory
/// bound against an attacker with many addresses).
const MAX_KEYS: usize = 100_000;

/// Who is trying a password: a client address, or, behind the PHP frontend (which holds the
/// director's certificate and calls for all its users from one address), the account tried.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LoginSource {
    /// A client connecting directly.
    Address(IpAddr),
    /// An account tried through the frontend.
    Account(String),
}

/// What the throttle counts: a network, or an account name (as sent: a name that exists in
/// no other spelling of it, since logins compare names exactly).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Network(IpAddr),
    Account(String),
}

impl Key {
    /// IPv4 per address (also when mapped into IPv6), IPv6 per /64: one host of IPv6 usually
    /// holds a whole /64.
    fn network(ip: IpAddr) -> Key {
        match ip {
            IpAddr::V4(v4) => Key::Network(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Key::Network(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Key::Network(IpAddr::V6(prefix.into()))
                }
            },
        }
    }

    fn cap(&self) -> Duration {
        match self {
            Key::Network(_) => NETWORK_CAP,
            Key::Account(_) => ACCOUNT_CAP,
        }
    }
}

#[derive(Debug, Default)]
struct Record {
    /// Failures since the record was last cleared or forgotten.
    failures: u32,
    /// Checks admitted and not yet ended.
    pending: u32,
    last_failure: Option<Instant>,
}

impl Record {
    fn forget_if_old(&mut self, now: Instant) {
        if self.pending == 0
            && self
                .last_failure
                .is_some_and(|last| now.saturating_duration_since(last) >= FORGET_AFTER)
        {
            *self = Record::default();
        }
    }

    fn is_idle(&self) -> bool {
        self.failures == 0 && self.pending == 0
    }

    /// Whether one more check may start now.
    fn admits(&self, cap: Duration, now: Instant) -> bool {
        let counted = self.failures.saturating_add(self.pending);
        if counted < FREE_FAILURES {
            return true;
        }
        // Past the allowance: one check at a time, after the delay.
        if self.pending > 0 {
            return false;
        }
        let excess = counted + 1 - FREE_FAILURES;
        let delay = backoff(excess, cap);
        self.last_failure
            .is_none_or(|last| now.saturating_duration_since(last) >= delay)
    }
}

/// The delay before the `excess`-th attempt past the allowance: 1 s, 2 s, 4 s... up to `cap`.
fn backoff(excess: u32, cap: Duration) -> Duration {
    let doublings = excess.saturating_sub(1).min(20);
    BACKOFF_BASE.saturating_mul(1 << doublings).min(cap)
}

/// Failed password checks per key. Per process: with several director replicas a source
/// gets this allowance from each, which still turns millions of guesses into dozens.
#[derive(Debug, Default, Clone)]
pub(super) struct LoginThrottle {
    records: Arc<Mutex<HashMap<Key, Record>>>,
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
    ended: bool,
}

impl LoginThrottle {
    /// Admits an attempt from `source` for `username`, counting it on every key at once, or
    /// `None` when any key is in backoff (nothing counted then). A direct client is counted
    /// per network and per account; the frontend per account only.
    pub(super) fn begin(
        &self,
        source: &LoginSource,
        username: &str,
        now: Instant,
    ) -> Option<Attempt> {
        let keys = match source {
            LoginSource::Address(ip) => vec![Key::network(*ip), Key::Account(username.to_owned())],
            LoginSource::Account(name) => vec![Key::Account(name.clone())],
        };
        let mut records = self.lock();
        if records.len() + keys.len() > MAX_KEYS {
            records.retain(|_, record| {
                record.forget_if_old(now);
                !record.is_idle()
            });
            if records.len() + keys.len() > MAX_KEYS {
                // Still full of live records: make room rather than grow without bound.
                records.clear();
            }
        }
        let admitted = keys.iter().all(|key| match records.get_mut(key) {
            None => true,
            Some(record) => {
                record.forget_if_old(now);
                record.admits(key.cap(), now)
            }
        });
        if !admitted {
            return None;
        }
        for key in &keys {
            let record = records.entry(key.clone()).or_default();
            record.pending += 1;
        }
        drop(records);
        Some(Attempt {
            throttle: self.clone(),
            keys,
            ended: false,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Record>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finish(&self, keys: &[Key], outcome: Option<Outcome>, now: Instant) {
        let mut records = self.lock();
        for key in keys {
            let Some(record) = records.get_mut(key) else {
                continue;
            };
            record.pending = record.pending.saturating_sub(1);
            match (outcome, key) {
                (Some(Outcome::Failed), _) => {
                    record.failures = record.failures.saturating_add(1);
                    record.last_failure = Some(now);
                }
                (Some(Outcome::Succeeded), Key::Account(_)) => {
                    record.failures = 0;
                    record.last_failure = None;
                }
                (Some(Outcome::Succeeded), Key::Network(_)) | (None, _) => {}
            }
            if record.is_idle() {
                records.remove(key);
            }
        }
    }
}

impl Attempt {
    /// Records how the check ended.
    pub(super) fn end(mut self, outcome: Outcome, now: Instant) {
        self.ended = true;
        self.throttle.finish(&self.keys, Some(outcome), now);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.ended {
            self.throttle.finish(&self.keys, None, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> LoginSource {
        LoginSource::Address(text.parse().unwrap())
    }

    /// Fails `n` attempts from `source` at `now`, each admitted.
    fn fail(throttle: &LoginThrottle, source: &LoginSource, user: &str, n: u32, now: Instant) {
        for i in 0..n {
            let attempt = throttle
                .begin(source, user, now)
                .unwrap_or_else(|| panic!("attempt {i} refused"));
            attempt.end(Outcome::Failed, now);
        }
    }

    #[test]
    fn backs_off_exponentially_after_the_allowance_without_lockout() {
        let throttle = LoginThrottle::default();
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
        assert_eq!(backoff(1, ACCOUNT_CAP), BACKOFF_BASE);
        assert_eq!(backoff(3, ACCOUNT_CAP), BACKOFF_BASE * 4);
        assert_eq!(backoff(10, ACCOUNT_CAP), ACCOUNT_CAP);
        assert_eq!(backoff(u32::MAX, NETWORK_CAP), NETWORK_CAP);
    }

    #[test]
    fn checks_under_way_count_and_abandoned_ones_do_not() {
        let throttle = LoginThrottle::default();
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
        let throttle = LoginThrottle::default();
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
    fn accounts_are_counted_across_addresses_and_cleared_by_a_success() {
        let throttle = LoginThrottle::default();
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
                .is_none()
        );
        let frontend = LoginSource::Account("victim".into());
        assert!(throttle.begin(&frontend, "victim", now).is_none());
        // The account's delay is short and capped: the right password gets its check.
        let later = now + ACCOUNT_CAP;
        throttle
            .begin(&frontend, "victim", later)
            .unwrap()
            .end(Outcome::Succeeded, later);
        fail(&throttle, &frontend, "victim", FREE_FAILURES, later);
    }
}
