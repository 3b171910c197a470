//! [`HashingPool`]: password hashing on a few dedicated threads, each reusing one argon2
//! memory, behind a bounded queue, so that a burst of logins costs bounded CPU and memory.
//!
//! On tokio's blocking pool every login could take a thread of its own (up to 512), each
//! leaving argon2's 19 MiB resident (issue 10). Here at most `workers` hashes run at once,
//! `queue` more wait, and a check that finds the queue full waits up to `wait` for a place,
//! then fails with [`Error::HashingBusy`] (the director answers it as a refused login). A
//! worker idle for `linger` frees its memory. See docs/operations.md, "Password hashing".

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::Semaphore;

use super::Error;
use super::password::{self, Argon2Memory, Verification};

/// How the [`HashingPool`] is sized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashingSettings {
    /// Threads hashing at once; each holds up to one argon2 memory (19 MiB by default).
    pub workers: usize,
    /// Checks waiting for a worker beyond those running.
    pub queue: usize,
    /// How long a check waits for a place in a full queue before it fails as busy.
    pub wait: Duration,
    /// How long an idle worker keeps its memory.
    pub linger: Duration,
}

impl HashingSettings {
    /// One worker per core, a queue of 32 per worker (about half a second of work at 30 ms a
    /// hash), a 5 s wait for a place, memory freed after 1 s idle.
    pub fn recommended() -> Self {
        let workers = std::thread::available_parallelism().map_or(2, NonZeroUsize::get);
        HashingSettings {
            workers,
            queue: 32 * workers,
            wait: Duration::from_secs(5),
            linger: Duration::from_secs(1),
        }
    }
}

impl Default for HashingSettings {
    fn default() -> Self {
        HashingSettings::recommended()
    }
}

type Job = Box<dyn FnOnce(&mut Argon2Memory) + Send>;

struct Queue {
    jobs: VecDeque<Job>,
    stopping: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    linger: Duration,
}

/// Stops the workers when the last [`HashingPool`] handle is dropped.
struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        let mut queue = self
            .shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        queue.stopping = true;
        drop(queue);
        self.shared.ready.notify_all();
    }
}

/// Argon2 on dedicated threads with a bounded queue; cheap to clone (one pool).
///
/// Its async calls bound their wait with `tokio::time`: call them on a runtime with the time
/// driver enabled (`enable_all()`/`enable_time()`; `#[tokio::main]` has it).
#[derive(Clone)]
pub struct HashingPool {
    owner: Arc<Owner>,
    /// One permit per running or queued check: `workers + queue`.
    permits: Arc<Semaphore>,
    wait: Duration,
    /// Password checks run so far (real or dummy), for tests and operators' counters.
    n_verifications: Arc<AtomicU64>,
}

impl std::fmt::Debug for HashingPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashingPool")
            .field("free_places", &self.permits.available_permits())
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl HashingPool {
    /// Starts the workers (at least one; a queue of at least one).
    pub fn new(settings: &HashingSettings) -> Result<Self, Error> {
        let workers = settings.workers.max(1);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                stopping: false,
            }),
            ready: Condvar::new(),
            linger: settings.linger,
        });
        for index in 0..workers {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("conpaas-hash-{index}"))
                .spawn(move || work(&shared))
                .map_err(Error::HashingThread)?;
        }
        Ok(HashingPool {
            owner: Arc::new(Owner { shared }),
            permits: Arc::new(Semaphore::new(workers + settings.queue.max(1))),
            wait: settings.wait,
            n_verifications: Arc::new(AtomicU64::new(0)),
        })
    }

    /// How many password checks ([`HashingPool::verify`]) this pool has run, dummy ones for
    /// unknown users included: what a guessing burst cost.
    pub fn n_verifications(&self) -> u64 {
        self.n_verifications.load(Ordering::Relaxed)
    }

    /// Checks `password` against a stored hash; with `None` (no such user, or no password)
    /// it spends the same time on a dummy hash and answers [`Verification::Mismatch`].
    pub async fn verify(
        &self,
        stored: Option<SecretString>,
        password: SecretString,
    ) -> Result<Verification, Error> {
        let n_verifications = self.n_verifications.clone();
        self.submit(move |memory| {
            n_verifications.fetch_add(1, Ordering::Relaxed);
            match &stored {
                Some(stored) => password::verify_password_with(
                    memory,
                    stored.expose_secret(),
                    password.expose_secret(),
                ),
                None => {
                    password::waste_verification_with(memory, password.expose_secret());
                    Verification::Mismatch
                }
            }
        })
        .await
    }

    /// Hashes `password` with argon2id into a PHC string.
    pub async fn hash(&self, password: SecretString) -> Result<SecretString, Error> {
        self.submit(move |memory| password::hash_password_with(memory, password.expose_secret()))
            .await?
            .map(SecretString::from)
    }

    /// Runs `work` on a worker once the queue has a place (waiting up to `wait` for one).
    async fn submit<T, F>(&self, work: F) -> Result<T, Error>
    where
        F: FnOnce(&mut Argon2Memory) -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit =
            match tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) => return Err(Error::HashingStopped),
                Err(_) => return Err(Error::HashingBusy { waited: self.wait }),
            };
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            // A caller that went away (its client hung up) needs no hash.
            if !answer.is_closed() {
                let _ = answer.send(work(memory));
            }
            drop(permit);
        });
        let shared = &self.owner.shared;
        shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .jobs
            .push_back(job);
        shared.ready.notify_one();
        answered.await.map_err(|_| Error::HashingStopped)
    }
}

/// A worker: runs jobs in its memory, frees the memory after `linger` without work, and ends
/// when the pool is dropped and the queue is empty.
fn work(shared: &Shared) {
    let mut memory = Argon2Memory::new();
    let mut queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if let Some(job) = queue.jobs.pop_front() {
            drop(queue);
            // A panicking hash drops its answer (the caller sees HashingStopped); the worker
            // stays.
            if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut memory))).is_err() {
                memory.release();
            }
            queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        if queue.stopping {
            return;
        }
        let (guard, timeout) = shared
            .ready
            .wait_timeout(queue, shared.linger)
            .unwrap_or_else(PoisonError::into_inner);
        queue = guard;
        if timeout.timed_out() && queue.jobs.is_empty() {
            memory.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(workers: usize, queue: usize, wait: Duration) -> HashingSettings {
        HashingSettings {
            workers,
            queue,
            wait,
            linger: Duration::from_millis(50),
        }
    }

    #[tokio::test]
    async fn verifies_hashes_and_wastes_time_on_unknown_users() {
        let pool = HashingPool::new(&settings(2, 4, Duration::from_secs(30))).unwrap();
        let hash = pool.hash("pw".into()).await.unwrap();
        let hash = hash.expose_secret().to_owned();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let verify = |stored: Option<&str>, given: &str| {
            pool.verify(stored.map(SecretString::from), given.into())
        };
        assert_eq!(
            verify(Some(&hash), "pw").await.unwrap(),
            Verification::Match
        );
        assert_eq!(
            verify(Some(&hash), "pW").await.unwrap(),
            Verification::Mismatch
        );
        let legacy = password::md5_hex("old");
        assert_eq!(
            verify(Some(&legacy), "old").await.unwrap(),
            Verification::MatchLegacy
        );
        // An unknown user costs a real argon2 verification: at least half of a real one.
        let started = std::time::Instant::now();
        verify(Some(&hash), "wrong").await.unwrap();
        let real = started.elapsed();
        let started = std::time::Instant::now();
        assert_eq!(verify(None, "pw").await.unwrap(), Verification::Mismatch);
        let wasted = started.elapsed();
        assert!(wasted * 2 >= real, "dummy {wasted:?} vs real {real:?}");
    }

    #[tokio::test]
    async fn concurrent_checks_all_answer() {
        let pool = HashingPool::new(&settings(2, 2, Duration::from_secs(60))).unwrap();
        let hash = pool.hash("pw".into()).await.unwrap();
        let checks = (0..8).map(|i| {
            let pool = pool.clone();
            let hash = hash.clone();
            tokio::spawn(async move {
                let given = if i % 2 == 0 { "pw" } else { "no" };
                pool.verify(Some(hash), given.into()).await.unwrap()
            })
        });
        let mut outcomes = Vec::new();
        for check in checks {
            outcomes.push(check.await.unwrap());
        }
        for (i, outcome) in outcomes.into_iter().enumerate() {
            let expect = if i % 2 == 0 {
                Verification::Match
            } else {
                Verification::Mismatch
            };
            assert_eq!(outcome, expect, "check {i}");
        }
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_after_the_wait() {
        // One worker, one queued place: the third check has nowhere to go.
        let pool = HashingPool::new(&settings(1, 1, Duration::from_millis(1))).unwrap();
        let hash = pool.hash("pw".into()).await.unwrap();
        // The worker gives its place back just after answering: wait for it, or under load
        // one of the two below may find the queue still full.
        while pool.permits.available_permits() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let running: Vec<_> = (0..2)
            .map(|_| {
                let pool = pool.clone();
                let hash = hash.clone();
                tokio::spawn(async move { pool.verify(Some(hash), "pw".into()).await })
            })
            .collect();
        // Let both take their places.
        while pool.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let refused = pool.verify(Some(hash.clone()), "pw".into()).await;
        assert!(
            matches!(refused, Err(Error::HashingBusy { .. })),
            "{refused:?}"
        );
        for check in running {
            assert_eq!(check.await.unwrap().unwrap(), Verification::Match);
        }
        // Places come back once the work is done.
        assert_eq!(
            pool.verify(Some(hash), "pw".into()).await.unwrap(),
            Verification::Match
        );
    }
}
