//! [`HashingPool`]: password hashing on a few dedicated threads, each reusing one argon2
//! memory, behind a bounded queue that is fair between clients, so that a burst of logins
//! costs bounded CPU and memory and a flood from many networks cannot starve one network's
//! logins.
//!
//! On tokio's blocking pool every login could take a thread of its own (up to 512), each
//! leaving argon2's 19 MiB resident (issue 10). Here at most `workers` hashes run at once and
//! `queue` more wait. A worker idle for `linger` frees its memory. See docs/operations.md,
//! "Password hashing".
//!
//! Fairness (issue 22: about 118 addresses guessing kept the queue full, and a right password
//! waited behind them until it was refused as busy): each check carries a [`HashingKey`] (the
//! director uses the client's network). Workers take the keys in turn, each key's checks in
//! arrival order. A check that finds the queue full takes the place of the newest queued check
//! of the key holding the most checks, if that key holds more than its own (the dropped check
//! fails at once with [`Error::HashingBusy`]); otherwise it waits up to `wait` for a place,
//! and places go to the waiting check whose key holds the fewest, then to the oldest. So a
//! network with one check under way is never refused while another holds several.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroUsize;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret as _, SecretString};

use super::Error;
use super::password::{self, Argon2Memory, Verification};

/// How the [`HashingPool`] is sized: [`HashingSettings::recommended`] and the setters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

    setters! {
        workers: usize,
        queue: usize,
        wait: Duration,
        linger: Duration,
    }
}

impl Default for HashingSettings {
    fn default() -> Self {
        HashingSettings::recommended()
    }
}

/// Whose work a check is, for the pool's fairness: keys are served in turn, and a full queue
/// makes room for a key holding few checks at the expense of the key holding the most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashingKey(u64);

impl HashingKey {
    /// The key of [`HashingPool::verify`] and [`HashingPool::hash`]: callers that name no key
    /// share one.
    pub const SHARED: HashingKey = HashingKey(0);

    /// The key of `who` (a network, an account name...), as a 64-bit digest.
    pub fn of(who: &impl std::hash::Hash) -> HashingKey {
        use std::hash::Hasher as _;
        let mut hasher = std::hash::DefaultHasher::new();
        who.hash(&mut hasher);
        HashingKey(hasher.finish())
    }
}

/// A check: run in a worker's memory, or given `None` when it is dropped unrun to make room
/// for another key's (it answers busy).
type Job = Box<dyn FnOnce(Option<&mut Argon2Memory>) + Send>;

/// The checks of one key.
#[derive(Default)]
struct Turn {
    /// Queued checks (with their arrival numbers), oldest first.
    queued: VecDeque<(u64, Job)>,
    /// Checks of this key in the pool: queued, running and waiting for a place.
    held: usize,
}

/// A check waiting for a place in the full queue.
struct Waiter {
    key: HashingKey,
    seq: u64,
    job: Job,
    placed: tokio::sync::oneshot::Sender<()>,
}

struct Queue {
    keys: HashMap<HashingKey, Turn>,
    /// The keys with queued checks, in the order workers serve them.
    turns: VecDeque<HashingKey>,
    waiting: Vec<Waiter>,
    n_queued: usize,
    n_running: usize,
    /// Checks running or queued at most: `workers + queue`.
    places: usize,
    /// Arrival numbers.
    next_seq: u64,
    stopping: bool,
}

impl Queue {
    fn held(&self, key: HashingKey) -> usize {
        self.keys.get(&key).map_or(0, |turn| turn.held)
    }

    fn has_place(&self) -> bool {
        self.n_queued + self.n_running < self.places
    }

    /// Queues a check of `key` (already counted in its `held`).
    fn enqueue(&mut self, key: HashingKey, seq: u64, job: Job) {
        let turn = self.keys.entry(key).or_default();
        if turn.queued.is_empty() {
            self.turns.push_back(key);
        }
        turn.queued.push_back((seq, job));
        self.n_queued += 1;
    }

    /// A check of `key` is over (run, dropped or given up).
    fn release(&mut self, key: HashingKey) {
        if let Some(turn) = self.keys.get_mut(&key) {
            turn.held = turn.held.saturating_sub(1);
            if turn.held == 0 && turn.queued.is_empty() {
                self.keys.remove(&key);
            }
        }
    }

    /// The next check to run: the oldest of the key whose turn it is.
    fn next(&mut self) -> Option<(HashingKey, Job)> {
        while let Some(key) = self.turns.pop_front() {
            let Some(turn) = self.keys.get_mut(&key) else {
                continue;
            };
            let Some((_, job)) = turn.queued.pop_front() else {
                continue;
            };
            if !turn.queued.is_empty() {
                self.turns.push_back(key);
            }
            self.n_queued -= 1;
            self.n_running += 1;
            return Some((key, job));
        }
        None
    }

    /// Takes the newest queued check of the key holding the most, if it holds more than
    /// `key` (the newcomer counted): the place it leaves is the newcomer's.
    fn displace_for(&mut self, key: HashingKey) -> Option<Job> {
        let held = self.held(key);
        let (victim, _) = self
            .keys
            .iter()
            .filter(|(other, turn)| **other != key && !turn.queued.is_empty())
            .map(|(other, turn)| {
                let newest = turn.queued.back().map_or(0, |(seq, _)| *seq);
                (*other, (turn.held, newest))
            })
            .max_by_key(|(_, rank)| *rank)?;
        if self.held(victim) <= held {
            return None;
        }
        let turn = self.keys.get_mut(&victim)?;
        let (_, job) = turn.queued.pop_back()?;
        if turn.queued.is_empty() {
            self.turns.retain(|other| *other != victim);
        }
        self.n_queued -= 1;
        self.release(victim);
        Some(job)
    }

    /// Gives free places to waiting checks, the fewest-holding key first, then the oldest;
    /// answers how many were placed.
    fn place_waiters(&mut self) -> usize {
        let mut n_placed = 0;
        while self.has_place() {
            // A waiter whose caller went away needs no place.
            let mut index = 0;
            while index < self.waiting.len() {
                if self.waiting[index].placed.is_closed() {
                    let gone = self.waiting.swap_remove(index);
                    self.release(gone.key);
                } else {
                    index += 1;
                }
            }
            let Some(index) = (0..self.waiting.len()).min_by_key(|index| {
                let waiter = &self.waiting[*index];
                (self.held(waiter.key), waiter.seq)
            }) else {
                break;
            };
            let waiter = self.waiting.swap_remove(index);
            self.enqueue(waiter.key, waiter.seq, waiter.job);
            let _ = waiter.placed.send(());
            n_placed += 1;
        }
        n_placed
    }
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    linger: Duration,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Stops the workers when the last [`HashingPool`] handle is dropped.
struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.ready.notify_all();
    }
}

/// Argon2 on dedicated threads with a bounded queue fair between [`HashingKey`]s; cheap to
/// clone (one pool).
///
/// Its async calls bound their wait with `tokio::time`: call them on a runtime with the time
/// driver enabled (`enable_all()`/`enable_time()`; `#[tokio::main]` has it).
#[derive(Clone)]
pub struct HashingPool {
    owner: Arc<Owner>,
    wait: Duration,
    /// Password checks run so far (real or dummy), for tests and operators' counters.
    n_verifications: Arc<AtomicU64>,
}

impl std::fmt::Debug for HashingPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashingPool")
            .field("free_places", &self.free_places())
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

/// Where a submitted check went.
enum Admission {
    Queued,
    /// Queued in place of another key's check, which answers busy.
    Displaced(Job),
    Waiting(tokio::sync::oneshot::Receiver<()>),
}

impl HashingPool {
    /// Starts the workers (at least one; a queue of at least one).
    pub fn new(settings: &HashingSettings) -> Result<Self, Error> {
        let workers = settings.workers.max(1);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                keys: HashMap::new(),
                turns: VecDeque::new(),
                waiting: Vec::new(),
                n_queued: 0,
                n_running: 0,
                places: workers + settings.queue.max(1),
                next_seq: 0,
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
            wait: settings.wait,
            n_verifications: Arc::new(AtomicU64::new(0)),
        })
    }

    /// How many password checks ([`HashingPool::verify`]) this pool has run, dummy ones for
    /// unknown users included: what a guessing burst cost.
    pub fn n_verifications(&self) -> u64 {
        self.n_verifications.load(Ordering::Relaxed)
    }

    /// Places free for checks (running or queued) right now: 0 while a burst fills the queue.
    pub fn free_places(&self) -> usize {
        let queue = self.owner.shared.lock();
        queue
            .places
            .saturating_sub(queue.n_queued + queue.n_running)
    }

    /// Checks `password` against a stored hash; with `None` (no such user, or no password)
    /// it spends the same time on a dummy hash and answers [`Verification::Mismatch`]. Under
    /// [`HashingKey::SHARED`].
    pub async fn verify(
        &self,
        stored: Option<SecretString>,
        password: SecretString,
    ) -> Result<Verification, Error> {
        self.verify_as(HashingKey::SHARED, stored, password).await
    }

    /// [`HashingPool::verify`] on behalf of `key`: checks of different keys take turns.
    pub async fn verify_as(
        &self,
        key: HashingKey,
        stored: Option<SecretString>,
        password: SecretString,
    ) -> Result<Verification, Error> {
        let n_verifications = self.n_verifications.clone();
        self.submit(key, move |memory| {
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

    /// Hashes `password` with argon2id into a PHC string, under [`HashingKey::SHARED`].
    pub async fn hash(&self, password: SecretString) -> Result<SecretString, Error> {
        self.hash_as(HashingKey::SHARED, password).await
    }

    /// [`HashingPool::hash`] on behalf of `key`.
    pub async fn hash_as(
        &self,
        key: HashingKey,
        password: SecretString,
    ) -> Result<SecretString, Error> {
        self.submit(key, move |memory| {
            password::hash_password_with(memory, password.expose_secret())
        })
        .await?
        .map(SecretString::from)
    }

    /// Runs `work` on a worker once it has a place (see the module's docs for who gets one).
    async fn submit<T, F>(&self, key: HashingKey, work: F) -> Result<T, Error>
    where
        F: FnOnce(&mut Argon2Memory) -> T + Send + 'static,
        T: Send + 'static,
    {
        let submitted = Instant::now();
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| match memory {
            // A caller that went away (its client hung up) needs no hash.
            Some(memory) => {
                if !answer.is_closed() {
                    let _ = answer.send(Ok(work(memory)));
                }
            }
            None => {
                let _ = answer.send(Err(Error::HashingBusy {
                    waited: submitted.elapsed(),
                }));
            }
        });
        let shared = &self.owner.shared;
        let (seq, admission) = {
            let mut queue = shared.lock();
            if queue.stopping {
                return Err(Error::HashingStopped);
            }
            let seq = queue.next_seq;
            queue.next_seq += 1;
            queue.keys.entry(key).or_default().held += 1;
            let admission = if queue.has_place() {
                queue.enqueue(key, seq, job);
                Admission::Queued
            } else if let Some(displaced) = queue.displace_for(key) {
                queue.enqueue(key, seq, job);
                Admission::Displaced(displaced)
            } else {
                let (placed, was_placed) = tokio::sync::oneshot::channel();
                queue.waiting.push(Waiter {
                    key,
                    seq,
                    job,
                    placed,
                });
                Admission::Waiting(was_placed)
            };
            (seq, admission)
        };
        match admission {
            Admission::Queued => shared.ready.notify_one(),
            Admission::Displaced(displaced) => {
                shared.ready.notify_one();
                displaced(None);
            }
            Admission::Waiting(mut was_placed) => {
                // Borrowed, so that the waiter does not look abandoned (a closed channel) while
                // this call decides what its timeout means.
                match tokio::time::timeout(self.wait, &mut was_placed).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(Error::HashingStopped),
                    Err(_) => {
                        // Placed just as the wait ended: keep the place.
                        let given_up = {
                            let mut queue = shared.lock();
                            let index = queue.waiting.iter().position(|w| w.seq == seq);
                            index.map(|index| {
                                let waiter = queue.waiting.swap_remove(index);
                                queue.release(key);
                                waiter
                            })
                        };
                        if given_up.is_some() {
                            return Err(Error::HashingBusy { waited: self.wait });
                        }
                    }
                }
            }
        }
        answered.await.map_err(|_| Error::HashingStopped)?
    }
}

/// A worker: runs jobs in its memory, frees the memory after `linger` without work, and ends
/// when the pool is dropped and the queue is empty.
fn work(shared: &Shared) {
    let mut memory = Argon2Memory::new();
    let mut queue = shared.lock();
    loop {
        if let Some((key, job)) = queue.next() {
            drop(queue);
            // A panicking hash drops its answer (the caller sees HashingStopped); the worker
            // stays.
            if std::panic::catch_unwind(AssertUnwindSafe(|| job(Some(&mut memory)))).is_err() {
                memory.release();
            }
            queue = shared.lock();
            queue.n_running -= 1;
            queue.release(key);
            // This worker takes the next check itself; wake the others for the rest.
            if queue.place_waiters() > 1 {
                shared.ready.notify_all();
            }
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
        if timeout.timed_out() && queue.n_queued == 0 {
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
        while pool.free_places() < 2 {
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
        while pool.free_places() > 0 {
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

    /// Jobs that record their label when run, the first held until released.
    struct Bench {
        pool: HashingPool,
        ran: Arc<Mutex<Vec<String>>>,
        release: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    }

    impl Bench {
        fn new(queue: usize, wait: Duration) -> Self {
            Bench {
                pool: HashingPool::new(&settings(1, queue, wait)).unwrap(),
                ran: Arc::default(),
                release: Mutex::new(None),
            }
        }

        /// Submits a job of `key` labelled `label`; the first one holds the worker until
        /// [`Bench::release`].
        fn submit(&self, key: &str, label: &str) -> tokio::task::JoinHandle<Result<(), Error>> {
            let gate = {
                let mut release = self.release.lock().unwrap();
                if release.is_none() {
                    let (sender, receiver) = std::sync::mpsc::channel::<()>();
                    *release = Some(sender);
                    Some(receiver)
                } else {
                    None
                }
            };
            let (pool, ran, label) = (self.pool.clone(), self.ran.clone(), label.to_owned());
            let key = HashingKey::of(&key);
            tokio::spawn(async move {
                pool.submit(key, move |_memory| {
                    if let Some(gate) = gate {
                        let _ = gate.recv();
                    }
                    ran.lock().unwrap().push(label);
                })
                .await
            })
        }

        fn release(&self) {
            drop(self.release.lock().unwrap().take());
        }

        /// Waits until the pool's queue is in the state `ready` describes.
        async fn until(&self, ready: impl Fn(&Queue) -> bool) {
            for _ in 0..5000 {
                if ready(&self.pool.owner.shared.lock()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            panic!("the pool never reached the expected state");
        }

        fn ran(&self) -> Vec<String> {
            self.ran.lock().unwrap().clone()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_makes_room_for_a_key_holding_fewer_checks() {
        // One worker and three queued places, all taken by key a.
        let bench = Bench::new(3, Duration::from_secs(30));
        let mut a = vec![bench.submit("a", "a1")];
        bench.until(|queue| queue.n_running == 1).await;
        for i in 2..=4 {
            a.push(bench.submit("a", &format!("a{i}")));
            bench.until(|queue| queue.n_queued == i - 1).await;
        }
        // b and c, one check each, take the places of a's newest checks at once.
        let b = bench.submit("b", "b1");
        bench
            .until(|queue| queue.held(HashingKey::of(&"b")) == 1)
            .await;
        let c = bench.submit("c", "c1");
        bench
            .until(|queue| queue.held(HashingKey::of(&"c")) == 1)
            .await;
        for displaced in a.drain(2..).rev() {
            let answer = displaced.await.unwrap();
            assert!(
                matches!(answer, Err(Error::HashingBusy { .. })),
                "{answer:?}"
            );
        }
        // a keeps as many as the others now: a newcomer of a waits rather than displaces.
        let a5 = bench.submit("a", "a5");
        bench.until(|queue| queue.waiting.len() == 1).await;
        bench.release();
        for check in a.into_iter().chain([b, c, a5]) {
            check.await.unwrap().unwrap();
        }
        // Keys take turns: b and c ran before a's second queued check would have.
        assert_eq!(bench.ran(), ["a1", "a2", "b1", "c1", "a5"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn places_go_to_the_waiting_key_holding_the_fewest_then_the_oldest() {
        // One worker and one queued place: a runs, b is queued; the others wait (none can
        // displace b, which holds no more than they do).
        let bench = Bench::new(1, Duration::from_secs(30));
        let a1 = bench.submit("a", "a1");
        bench.until(|queue| queue.n_running == 1).await;
        let b1 = bench.submit("b", "b1");
        bench.until(|queue| queue.n_queued == 1).await;
        let mut waiting = Vec::new();
        for (n, (key, label)) in [("a", "a2"), ("a", "a3"), ("c", "c1"), ("d", "d1")]
            .into_iter()
            .enumerate()
        {
            waiting.push(bench.submit(key, label));
            bench.until(|queue| queue.waiting.len() == n + 1).await;
        }
        bench.release();
        for check in [a1, b1].into_iter().chain(waiting) {
            check.await.unwrap().unwrap();
        }
        // c and d, holding one check each, got places before a's, which waited longer (in
        // arrival order, c and d would have waited for both).
        assert_eq!(bench.ran(), ["a1", "b1", "c1", "d1", "a2", "a3"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_check_gives_up_after_the_wait_and_frees_its_key() {
        let bench = Bench::new(1, Duration::from_millis(50));
        let a1 = bench.submit("a", "a1");
        bench.until(|queue| queue.n_running == 1).await;
        let b1 = bench.submit("b", "b1");
        bench.until(|queue| queue.n_queued == 1).await;
        let refused = bench.submit("c", "c1").await.unwrap();
        assert!(
            matches!(refused, Err(Error::HashingBusy { .. })),
            "{refused:?}"
        );
        bench
            .until(|queue| queue.waiting.is_empty() && queue.held(HashingKey::of(&"c")) == 0)
            .await;
        bench.release();
        a1.await.unwrap().unwrap();
        b1.await.unwrap().unwrap();
        bench.until(|queue| queue.keys.is_empty()).await;
        assert_eq!(bench.ran(), ["a1", "b1"]);
    }
}
