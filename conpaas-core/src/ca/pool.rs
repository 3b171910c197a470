//! [`KeyPool`]: RSA keys generated ahead of demand on a background thread, so that issuing a
//! user's or a manager's certificate does not wait ~80 ms for a key.
//!
//! Bounded (`size` keys), refilled after every draw, in memory only (the keys never touch a
//! disk or a log: the pool's `Debug` shows counts). An empty pool never fails a caller: it
//! generates inline, as without a pool. Plain std threads, no async runtime.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use rcgen::KeyPair;

use super::keys::{self, KeyKind};
use super::{Error, KeyAlgorithm};

struct Stock {
    keys: VecDeque<KeyPair>,
    /// Set when the pool is dropped: the filler ends.
    stopping: bool,
    /// Keys drawn from the stock, and keys generated inline because it was empty.
    n_drawn: u64,
    n_inline: u64,
    /// When a key was last asked for (see [`REFILL_QUIET`]).
    last_draw: Option<std::time::Instant>,
}

/// How long the filler waits after the last draw before it makes a key. Making one takes a
/// core for ~80 ms: during a burst of `/getcerts` or `/start` it would compete with the very
/// requests the pool serves (on two cores a warm `/getcerts` took 14 ms longer than a
/// `/login` instead of ~1 ms), so it refills once the burst is over. Past the stock, callers
/// generate inline, which costs what refilling would.
const REFILL_QUIET: std::time::Duration = std::time::Duration::from_millis(250);

struct Shared {
    stock: Mutex<Stock>,
    /// Signalled when a key is drawn (the filler wakes) or the pool stops.
    wanted: Condvar,
    /// Signalled when a key is added (for [`KeyPool::wait_full`]).
    added: Condvar,
    size: usize,
    algorithm: KeyAlgorithm,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Stock> {
        self.stock.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counters of a [`KeyPool`], for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyPoolStats {
    /// Keys ready now.
    pub ready: usize,
    /// The most keys kept ready.
    pub size: usize,
    /// Keys handed out from the stock.
    pub drawn: u64,
    /// Keys generated on the caller's thread because the stock was empty.
    pub inline: u64,
}

/// Keys of one algorithm, generated ahead of demand by a background thread.
pub struct KeyPool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for KeyPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Counts only: never the keys.
        f.debug_struct("KeyPool")
            .field("algorithm", &self.shared.algorithm)
            .field("stats", &self.stats())
            .finish()
    }
}

impl KeyPool {
    /// Starts a thread that keeps `size` keys of `algorithm` ready (none with `size` 0).
    pub fn new(algorithm: KeyAlgorithm, size: usize) -> Result<Self, Error> {
        let shared = Arc::new(Shared {
            stock: Mutex::new(Stock {
                keys: VecDeque::with_capacity(size),
                stopping: false,
                n_drawn: 0,
                n_inline: 0,
                last_draw: None,
            }),
            wanted: Condvar::new(),
            added: Condvar::new(),
            size,
            algorithm,
        });
        if size > 0 {
            let filler = shared.clone();
            std::thread::Builder::new()
                .name("conpaas-keys".to_owned())
                .spawn(move || fill(&filler))
                .map_err(Error::KeyPoolThread)?;
        }
        Ok(KeyPool { shared })
    }

    /// The algorithm of the keys.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.shared.algorithm
    }

    /// A key: a pooled one if any is ready (the filler then makes its replacement), else a
    /// fresh one generated on this thread.
    pub(crate) fn take(&self) -> Result<(KeyPair, KeyKind), Error> {
        let pooled = {
            let mut stock = self.shared.lock();
            let key = stock.keys.pop_front();
            if key.is_some() {
                stock.n_drawn += 1;
            } else {
                stock.n_inline += 1;
            }
            stock.last_draw = Some(std::time::Instant::now());
            key
        };
        self.shared.wanted.notify_one();
        match pooled {
            Some(key) => Ok((key, kind_of(self.shared.algorithm))),
            None => keys::generate(self.shared.algorithm),
        }
    }

    /// The counters now.
    pub fn stats(&self) -> KeyPoolStats {
        let stock = self.shared.lock();
        KeyPoolStats {
            ready: stock.keys.len(),
            size: self.shared.size,
            drawn: stock.n_drawn,
            inline: stock.n_inline,
        }
    }

    /// Blocks until the pool holds `size` keys or `timeout` passes; answers whether it is full.
    pub fn wait_full(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut stock = self.shared.lock();
        while stock.keys.len() < self.shared.size {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            stock = self
                .shared
                .added
                .wait_timeout(stock, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

impl Drop for KeyPool {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wanted.notify_all();
    }
}

fn kind_of(algorithm: KeyAlgorithm) -> KeyKind {
    match algorithm {
        KeyAlgorithm::Rsa2048 => KeyKind::Rsa,
        KeyAlgorithm::EcdsaP256 => KeyKind::EcdsaP256,
    }
}

/// The filler: tops the stock up to `size`, generating outside the lock, and sleeps while it
/// is full. A failed generation (the system's randomness failing) is retried after a pause;
/// callers meanwhile generate inline and see the error themselves.
fn fill(shared: &Shared) {
    loop {
        {
            let mut stock = shared.lock();
            while stock.keys.len() >= shared.size && !stock.stopping {
                stock = shared
                    .wanted
                    .wait(stock)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if stock.stopping {
                return;
            }
            // Quiet for REFILL_QUIET since the last draw (draws push it back).
            while let Some(quiet_at) = stock.last_draw.map(|at| at + REFILL_QUIET)
                && !stock.stopping
            {
                let left = quiet_at.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                stock = shared
                    .wanted
                    .wait_timeout(stock, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            if stock.stopping {
                return;
            }
        }
        match keys::generate(shared.algorithm) {
            Ok((key, _)) => {
                let mut stock = shared.lock();
                if stock.stopping {
                    return;
                }
                stock.keys.push_back(key);
                drop(stock);
                shared.added.notify_all();
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_secs(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use rcgen::PublicKeyData as _;
    use x509_parser::prelude::FromDer as _;
    use x509_parser::public_key::PublicKey;
    use x509_parser::x509::SubjectPublicKeyInfo;

    use super::*;

    /// The modulus size of an RSA key, checked through its SubjectPublicKeyInfo.
    fn rsa_bits(key: &KeyPair) -> usize {
        let spki_der = key.subject_public_key_info();
        let (_, spki) = SubjectPublicKeyInfo::from_der(&spki_der).unwrap();
        assert_eq!(KeyKind::of_spki(&spki, "test").unwrap(), KeyKind::Rsa);
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            panic!("not RSA")
        };
        rsa.key_size()
    }

    #[test]
    fn pooled_keys_are_distinct_rsa_2048_and_refilled() {
        let pool = KeyPool::new(KeyAlgorithm::Rsa2048, 3).unwrap();
        assert!(pool.wait_full(Duration::from_secs(60)), "{pool:?}");
        assert_eq!(pool.stats().ready, 3);
        let mut seen = HashSet::new();
        for _ in 0..3 {
            let (key, kind) = pool.take().unwrap();
            assert_eq!(kind, KeyKind::Rsa);
            assert_eq!(rsa_bits(&key), 2048);
            // The private key parses back and is the same key.
            let again = KeyPair::from_pem(&key.serialize_pem()).unwrap();
            assert_eq!(again.der_bytes(), key.der_bytes());
            assert!(seen.insert(key.der_bytes().to_vec()), "a key came twice");
        }
        let stats = pool.stats();
        assert_eq!((stats.drawn, stats.inline), (3, 0), "{stats:?}");
        // Drawn keys are replaced, by new keys.
        assert!(pool.wait_full(Duration::from_secs(60)), "{pool:?}");
        for _ in 0..3 {
            let (key, _) = pool.take().unwrap();
            assert!(seen.insert(key.der_bytes().to_vec()), "a key came twice");
        }
        let debug = format!("{pool:?}");
        assert!(!debug.contains("PRIVATE"), "{debug}");
    }

    #[test]
    fn an_empty_pool_generates_inline() {
        // Size 0: no filler thread, every key made on demand.
        let pool = KeyPool::new(KeyAlgorithm::Rsa2048, 0).unwrap();
        let (first, _) = pool.take().unwrap();
        let (second, _) = pool.take().unwrap();
        assert_eq!(rsa_bits(&first), 2048);
        assert_ne!(first.der_bytes(), second.der_bytes());
        let stats = pool.stats();
        assert_eq!((stats.ready, stats.drawn, stats.inline), (0, 0, 2));
        // A pool drained faster than it fills still answers.
        let pool = KeyPool::new(KeyAlgorithm::Rsa2048, 1).unwrap();
        let keys: Vec<_> = (0..3).map(|_| pool.take().unwrap().0).collect();
        let distinct: HashSet<_> = keys.iter().map(|key| key.der_bytes().to_vec()).collect();
        assert_eq!(distinct.len(), 3);
        let stats = pool.stats();
        assert_eq!(stats.drawn + stats.inline, 3, "{stats:?}");
    }
}
