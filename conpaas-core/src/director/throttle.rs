//! Password guessing protection: failed logins counted per client (an address, or an account
//! for the frontend, which calls for all its users from one address), refused for a while past
//! a threshold (1.2 answered every guess at once, forever).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How far back failed attempts count.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Failed attempts an address may make within [`WINDOW`]; further ones are refused unchecked.
pub const MAX_FAILURES: usize = 20;
/// Addresses tracked at most; beyond, the oldest records are forgotten first (memory bound).
const MAX_ADDRESSES: usize = 100_000;

/// Who failed: a client address, or, behind the PHP frontend (which holds the director's
/// certificate and calls for all its users from one address), the account tried.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LoginSource {
    /// A client connecting directly.
    Address(IpAddr),
    /// An account tried through the frontend.
    Account(String),
}

/// Failed password checks per source. Per process: with several director replicas a source
/// gets this allowance from each, which still turns millions of guesses into dozens.
#[derive(Debug, Default)]
pub(super) struct LoginThrottle {
    failures: Mutex<HashMap<LoginSource, VecDeque<Instant>>>,
}

impl LoginThrottle {
    /// Whether `from` may try a password now.
    pub(super) fn allows(&self, from: &LoginSource, now: Instant) -> bool {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match failures.get_mut(from) {
            None => true,
            Some(times) => {
                prune(times, now);
                if times.is_empty() {
                    failures.remove(from);
                    return true;
                }
                times.len() < MAX_FAILURES
            }
        }
    }

    /// Records a failed attempt from `from`.
    pub(super) fn failed(&self, from: LoginSource, now: Instant) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if failures.len() >= MAX_ADDRESSES && !failures.contains_key(&from) {
            failures.retain(|_, times| {
                prune(times, now);
                !times.is_empty()
            });
            if failures.len() >= MAX_ADDRESSES {
                // Still full of live records: make room rather than grow without bound.
                failures.clear();
            }
        }
        let times = failures.entry(from).or_default();
        prune(times, now);
        times.push_back(now);
        while times.len() > MAX_FAILURES {
            times.pop_front();
        }
    }
}

fn prune(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|first| now.duration_since(*first) >= WINDOW)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_the_threshold_until_the_window_passes() {
        let throttle = LoginThrottle::default();
        let ip = LoginSource::Address("192.0.2.1".parse().unwrap());
        let other = LoginSource::Account("alice".into());
        let start = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert!(throttle.allows(&ip, start));
            throttle.failed(ip.clone(), start);
        }
        assert!(!throttle.allows(&ip, start));
        assert!(
            throttle.allows(&other, start),
            "other sources are not affected"
        );
        assert!(!throttle.allows(&ip, start + WINDOW - Duration::from_secs(1)));
        assert!(throttle.allows(&ip, start + WINDOW));
    }
}
