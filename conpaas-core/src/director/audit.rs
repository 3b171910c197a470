//! The audit log: structured events of who did what, from where, with which outcome
//! (docs/operations.md, "Audit log"), appended to the store's `audit_event` table.
//!
//! Who acted, from which address and in which request comes from the [`AuditContext`] the
//! code runs in: the router sets one for every request ([`AuditContext::scope`]); code outside
//! any scope (the command line, an embedder's own calls) acts as the `operator`. An event of a
//! change is written in the change's own transaction, so that neither exists without the
//! other, and a certificate's event is committed before the certificate leaves the director.
//! Events that change nothing else (logins) are queued and written in batches a moment later
//! ([`Director::flush_audit`] writes them at once), so that a flood of refused logins costs
//! one transaction per batch, not one per attempt.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};

use super::{Director, Error};
use crate::model::{AppId, ErrorChain, ServiceId, UserId};
use crate::store::{self, NewAuditEvent, Store};

pub use crate::store::{AuditEvent, AuditQuery};

/// How long a queued event waits for others to share its transaction.
const BATCH_DELAY: Duration = Duration::from_millis(100);

/// The most events of each priority (refused logins; the rest) queued by default: past it,
/// events are dropped and
/// counted (the database is failing or far behind, and memory must stay bounded: about 5 MB
/// for both lanes).
pub const DEFAULT_AUDIT_QUEUE: usize = crate::config::DEFAULT_AUDIT_QUEUE;

/// Who is acting, from where, in which request: read by every event made in its
/// [`scope`](AuditContext::scope).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditContext {
    /// `user:3`, `manager:3/7`, `agent:3/7`, `frontend`, `anonymous` (the request log's
    /// `caller`), `operator` or `director`.
    pub principal: String,
    /// The client's address.
    pub source: Option<IpAddr>,
    /// The director's id of the request (the answer's `x-request-id`).
    pub request_id: Option<String>,
    /// The `x-request-id` the client sent, if any: a client chooses it, so it is kept apart
    /// from [`request_id`](Self::request_id) and never trusted to tell requests apart.
    pub client_request_id: Option<String>,
}

tokio::task_local! {
    static CONTEXT: AuditContext;
}

impl AuditContext {
    /// A request's context.
    pub fn request(
        principal: impl Into<String>,
        source: Option<IpAddr>,
        request_id: Option<String>,
    ) -> AuditContext {
        AuditContext {
            principal: principal.into(),
            source,
            request_id,
            client_request_id: None,
        }
    }

    /// The same context, with the `x-request-id` the client sent.
    pub fn client_request_id(mut self, id: Option<String>) -> AuditContext {
        self.client_request_id = id;
        self
    }

    /// The operator (the command line): the context outside any scope.
    pub fn operator() -> AuditContext {
        AuditContext::request("operator", None, None)
    }

    /// The operator named `who` (the command line gives `USER@HOST`): principal
    /// `operator:USER@HOST`. Characters other than printable ASCII become `?`, and the text is
    /// cut to [`MAX_AUDIT_TEXT`](crate::store::MAX_AUDIT_TEXT) bytes.
    pub fn operator_named(who: &str) -> AuditContext {
        let principal: String = format!("operator:{who}")
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '?' })
            .take(crate::store::MAX_AUDIT_TEXT)
            .collect();
        AuditContext::request(principal, None, None)
    }

    /// The director's own background work (maintenance: reconciliation, the reaper).
    pub fn director() -> AuditContext {
        AuditContext::request("director", None, None)
    }

    /// Runs `work` with this context: the events it makes (on this task) carry it.
    pub async fn scope<F: Future>(self, work: F) -> F::Output {
        CONTEXT.scope(self, work).await
    }

    /// Runs `work`, synchronous code such as the command line's, with this context: the
    /// events it makes on this thread carry it.
    pub fn sync_scope<R>(self, work: impl FnOnce() -> R) -> R {
        CONTEXT.sync_scope(self, work)
    }

    /// The context of the running scope, or [`AuditContext::operator`] outside any.
    pub fn current() -> AuditContext {
        CONTEXT
            .try_with(Clone::clone)
            .unwrap_or_else(|_| AuditContext::operator())
    }
}

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditOutcome {
    /// Done.
    Ok,
    /// Refused (a wrong password, not enough credit).
    Refused,
    /// Refused without looking (too many failed logins, the hashing queue full).
    Throttled,
    /// Tried and failed (a start undone).
    Failed,
    /// Accepted now, applied later (a credit charge the database could not take).
    Deferred,
}

impl AuditOutcome {
    /// The word stored.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Refused => "refused",
            AuditOutcome::Throttled => "throttled",
            AuditOutcome::Failed => "failed",
            AuditOutcome::Deferred => "deferred",
        }
    }
}

/// One event being made: what happened, to whom, and the [`AuditContext`] current when it was
/// made. Never put a secret in it.
#[derive(Debug, Clone)]
#[must_use = "an event is recorded only by handing it to the store or the director"]
pub struct Event {
    context: AuditContext,
    at: chrono::NaiveDateTime,
    event: &'static str,
    outcome: AuditOutcome,
    uid: Option<UserId>,
    username: Option<String>,
    aid: Option<AppId>,
    sid: Option<ServiceId>,
    detail: Map<String, Value>,
}

impl Event {
    /// An event named `event` (`application.created`...) that ended `outcome`, in the current
    /// context, now.
    pub fn new(event: &'static str, outcome: AuditOutcome) -> Event {
        Event {
            context: AuditContext::current(),
            // Microseconds, as PostgreSQL keeps them: the same event reads the same on both.
            at: chrono::SubsecRound::trunc_subsecs(chrono::Utc::now().naive_utc(), 6),
            event,
            outcome,
            uid: None,
            username: None,
            aid: None,
            sid: None,
            detail: Map::new(),
        }
    }

    /// The user it concerns.
    pub fn uid(mut self, uid: UserId) -> Event {
        self.uid = Some(uid);
        self
    }

    /// The user name it concerns.
    pub fn username(mut self, username: &str) -> Event {
        self.username = Some(username.to_owned());
        self
    }

    /// The application it concerns.
    pub fn aid(mut self, aid: AppId) -> Event {
        self.aid = Some(aid);
        self
    }

    /// The service it concerns.
    pub fn sid(mut self, sid: ServiceId) -> Event {
        self.sid = Some(sid);
        self
    }

    /// A detail (never a secret).
    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Event {
        self.detail.insert(key.to_owned(), value.into());
        self
    }

    /// Another outcome.
    pub fn outcome(mut self, outcome: AuditOutcome) -> Event {
        self.outcome = outcome;
        self
    }

    /// The row to append.
    pub fn to_new(&self) -> NewAuditEvent {
        NewAuditEvent {
            at: self.at,
            event: self.event.to_owned(),
            outcome: self.outcome.as_str().to_owned(),
            principal: self.context.principal.clone(),
            source: self.context.source.map(|ip| canonical_ip(ip).to_string()),
            request_id: self.context.request_id.clone(),
            client_request_id: self.context.client_request_id.clone(),
            uid: self.uid,
            username: self.username.clone(),
            aid: self.aid,
            sid: self.sid,
            detail: Value::Object(self.detail.clone()).to_string(),
        }
    }
}

/// An IPv4 client of a dual-stack socket as `a.b.c.d`, not `::ffff:a.b.c.d`.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// How much a queued event matters when the queue is full: noise (logins refused or
/// throttled, which an attacker makes at will) never takes the place of a record (a
/// successful login, a charge, a reaped VM, a reload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Priority {
    /// A refused, throttled or failed login.
    Low,
    /// Everything else.
    High,
}

impl Priority {
    fn of(event: &NewAuditEvent) -> Priority {
        if event.event == "login" && event.outcome != AuditOutcome::Ok.as_str() {
            Priority::Low
        } else {
            Priority::High
        }
    }

    /// The metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::High => "high",
        }
    }
}

/// One priority's events waiting for their batch, oldest first.
#[derive(Debug, Default)]
struct Lane {
    events: Vec<NewAuditEvent>,
    dropped: u64,
}

#[derive(Debug, Default)]
struct Lanes {
    low: Lane,
    high: Lane,
    /// When a drop was last logged (drops are logged at most every [`DROP_LOG_EVERY`]).
    last_warned: Option<std::time::Instant>,
}

impl Lanes {
    fn lane(&mut self, priority: Priority) -> &mut Lane {
        match priority {
            Priority::Low => &mut self.low,
            Priority::High => &mut self.high,
        }
    }

    /// Whether a drop should be logged now (and notes that it is).
    fn warn_now(&mut self) -> bool {
        let now = std::time::Instant::now();
        if self
            .last_warned
            .is_some_and(|last| now.saturating_duration_since(last) < DROP_LOG_EVERY)
        {
            return false;
        }
        self.last_warned = Some(now);
        true
    }
}

/// How often, at most, dropped audit events are logged.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// The queue of events waiting for their batch: one bounded lane per [`Priority`], so that
/// a flood of refused logins drops only refused logins.
#[derive(Debug)]
pub(super) struct AuditQueue {
    lanes: Mutex<Lanes>,
    /// The most events each lane holds.
    limit: usize,
    /// A flushing task is running (or about to).
    flushing: AtomicBool,
    dropped: AtomicU64,
}

impl Default for AuditQueue {
    fn default() -> Self {
        AuditQueue::with_limit(DEFAULT_AUDIT_QUEUE)
    }
}

impl AuditQueue {
    /// A queue holding at most `limit` events of each priority.
    pub(super) fn with_limit(limit: usize) -> AuditQueue {
        AuditQueue {
            lanes: Mutex::default(),
            limit: limit.max(1),
            flushing: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_empty(&self) -> bool {
        let lanes = self.lock();
        lanes.low.events.is_empty() && lanes.high.events.is_empty()
    }

    /// Every queued event, in the order they happened.
    fn take(&self) -> Vec<NewAuditEvent> {
        let mut lanes = self.lock();
        let low = std::mem::take(&mut lanes.low.events);
        let high = std::mem::take(&mut lanes.high.events);
        drop(lanes);
        merge_in_time(low, high)
    }

    /// Queues `events` (after a failed write, the oldest first, before those queued since),
    /// each lane within its bound, dropping its oldest; answers the drops by priority.
    fn put(&self, events: Vec<NewAuditEvent>, metrics: &super::Metrics) {
        let mut lanes = self.lock();
        let mut low = Vec::new();
        let mut high = Vec::new();
        for event in events {
            match Priority::of(&event) {
                Priority::Low => low.push(event),
                Priority::High => high.push(event),
            }
        }
        let mut dropped = Vec::with_capacity(2);
        for (priority, mut older) in [(Priority::Low, low), (Priority::High, high)] {
            let lane = lanes.lane(priority);
            older.append(&mut lane.events);
            let over = older.len().saturating_sub(self.limit);
            older.drain(..over);
            lane.events = older;
            let over = u64::try_from(over).unwrap_or(u64::MAX);
            lane.dropped = lane.dropped.saturating_add(over);
            dropped.push((priority, over));
        }
        self.dropped_now(&mut lanes, &dropped, metrics);
    }

    /// Counts drops (metric, total) and logs them, at most every [`DROP_LOG_EVERY`].
    fn dropped_now(
        &self,
        lanes: &mut Lanes,
        dropped: &[(Priority, u64)],
        metrics: &super::Metrics,
    ) {
        let mut any = false;
        for &(priority, n) in dropped {
            if n > 0 {
                metrics.audit_dropped(priority, n);
                self.dropped.fetch_add(n, Ordering::Relaxed);
                any = true;
            }
        }
        if any && lanes.warn_now() {
            let (low, high) = (lanes.low.dropped, lanes.high.dropped);
            if high > 0 {
                tracing::error!(
                    dropped_high = high,
                    dropped_low = low,
                    "audit events dropped: the queue is full (the database is failing or behind)"
                );
            } else {
                tracing::warn!(
                    dropped_low = low,
                    "refused logins dropped from the audit log: their queue is full (the database \
                     is failing or behind)"
                );
            }
        }
    }
}

/// `a` and `b` (each in time order) as one list in time order; `a` first among equals.
fn merge_in_time(a: Vec<NewAuditEvent>, b: Vec<NewAuditEvent>) -> Vec<NewAuditEvent> {
    if a.is_empty() {
        return b;
    }
    if b.is_empty() {
        return a;
    }
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if y.at < x.at => b.next(),
            (Some(_), _) => a.next(),
            (None, Some(_)) => b.next(),
            (None, None) => break,
        };
        merged.extend(next);
    }
    merged
}

/// Writes `events` (a batch) in one transaction.
async fn write(
    store: &Store,
    events: Vec<NewAuditEvent>,
) -> Result<(), (Vec<NewAuditEvent>, Error)> {
    let result = store
        .run({
            let events = events.clone();
            move |conn| store::record_audit_events(conn, &events)
        })
        .await;
    result.map_err(|error| (events, Error::from(error)))
}

impl Director {
    /// Queues `event` for the next batch (written within about 100 ms, or by
    /// [`flush_audit`](Self::flush_audit)). For events that change nothing else; an event of a
    /// change belongs in the change's transaction ([`store::record_audit_event`]). While the
    /// database is behind, events wait in memory, at most [`DEFAULT_AUDIT_QUEUE`] (or what
    /// [`DirectorBuilder::audit_queue`](super::DirectorBuilder::audit_queue) set) refused logins
    /// and as many other events; past that the newest refused login (or the oldest other event)
    /// is dropped, counted in `conpaas_audit_events_dropped_total` and logged.
    pub fn audit(&self, event: Event) {
        let queue = &self.inner.audit;
        let new = event.to_new();
        let priority = Priority::of(&new);
        {
            let mut lanes = queue.lock();
            let lane = lanes.lane(priority);
            if lane.events.len() >= queue.limit {
                match priority {
                    // Noise: the newest goes (the flood that overflows it is what matters
                    // least).
                    Priority::Low => {
                        lane.dropped = lane.dropped.saturating_add(1);
                        queue.dropped_now(&mut lanes, &[(priority, 1)], &self.inner.metrics);
                        return;
                    }
                    // A record: the oldest goes, as when a failed write is put back.
                    Priority::High => {
                        lane.events.remove(0);
                        lane.dropped = lane.dropped.saturating_add(1);
                        lane.events.push(new);
                        queue.dropped_now(&mut lanes, &[(priority, 1)], &self.inner.metrics);
                    }
                }
            } else {
                lane.events.push(new);
            }
        }
        if queue.flushing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to write from: the events wait for `flush_audit`.
            queue.flushing.store(false, Ordering::Release);
            return;
        };
        let director = self.clone();
        runtime.spawn(async move { director.flush_audit_queue().await });
    }

    /// The flushing task: batches until the queue stays empty.
    async fn flush_audit_queue(&self) {
        let queue = &self.inner.audit;
        loop {
            tokio::time::sleep(BATCH_DELAY).await;
            let batch = queue.take();
            if !batch.is_empty()
                && let Err((events, error)) = write(&self.inner.store, batch).await
            {
                tracing::warn!(n_events = events.len(), error = %ErrorChain(&error), "cannot write audit events; retrying");
                queue.put(events, &self.inner.metrics);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            queue.flushing.store(false, Ordering::Release);
            // An event queued between `take` and here found `flushing` set: take it on.
            if queue.is_empty() || queue.flushing.swap(true, Ordering::AcqRel) {
                return;
            }
        }
    }

    /// Writes the queued events now (at shutdown, and for tests); answers how many.
    pub async fn flush_audit(&self) -> Result<usize, Error> {
        let batch = self.inner.audit.take();
        let n = batch.len();
        match write(&self.inner.store, batch).await {
            Ok(()) => Ok(n),
            Err((events, error)) => {
                self.inner.audit.put(events, &self.inner.metrics);
                Err(error)
            }
        }
    }

    /// Every audit event from now on, as the table receives it: those of changes when their
    /// transaction commits, queued ones when their batch is written. Bounded and lossy, never
    /// slowing the director: see [`Store::subscribe_audit`].
    pub fn subscribe_audit(&self) -> store::AuditSubscription {
        self.inner.store.subscribe_audit()
    }

    /// Audit events dropped because their queue was full (of both priorities).
    pub fn audit_events_dropped(&self) -> u64 {
        self.inner.audit.dropped.load(Ordering::Relaxed)
    }

    /// The recorded events `query` selects, oldest first (queued ones once written).
    pub async fn audit_events(&self, query: AuditQuery) -> Result<Vec<AuditEvent>, Error> {
        Ok(self
            .inner
            .store
            .run(move |conn| store::list_audit_events(conn, &query))
            .await?)
    }
}

/// The event of an issued certificate: its serial, role, owner and validity.
pub(super) fn certificate_event(record: &store::NewCertificate) -> Event {
    let mut event = Event::new("certificate.issued", AuditOutcome::Ok)
        .detail("serial", record.serial.to_ascii_lowercase())
        .detail("role", record.role.as_str())
        .detail(
            "not_after",
            record.not_after.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
    if let Some(uid) = record.uid {
        event = event.uid(uid);
    }
    if let Some(sid) = record.sid.filter(|sid| sid.0 != 0) {
        event = event.sid(sid);
    }
    event
}

/// Records a certificate and its event in one transaction: the event is committed before the
/// certificate can leave the director.
pub(super) fn record_certificate(
    conn: &mut store::DbConnection,
    record: &store::NewCertificate,
    event: &NewAuditEvent,
) -> Result<(), store::Error> {
    store::write_transaction(conn, |conn| {
        store::record_certificate(conn, record)?;
        store::record_audit_event(conn, event)
    })
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    fn director(
        dir: &std::path::Path,
        limit: usize,
    ) -> Result<Director, Box<dyn std::error::Error>> {
        Ok(crate::director::test_support::builder(dir)?
            .audit_queue(limit)
            .build()?)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_queue_is_bounded_batched_and_counts_what_it_drops() {
        let dir = tempfile::tempdir().unwrap();
        let director = director(dir.path(), 100).unwrap();
        let context = AuditContext::request(
            "user:7",
            Some("::ffff:192.0.2.3".parse().unwrap()),
            Some("r-1".into()),
        )
        .client_request_id(Some("mine".into()));
        context
            .scope(async {
                // Synchronously, before the flushing task can run: 50 more than a lane holds.
                for n in 0..150 {
                    director
                        .audit(Event::new("credit.decremented", AuditOutcome::Ok).detail("n", n));
                }
            })
            .await;
        assert_eq!(director.audit_events_dropped(), 50);
        let metrics = director.metrics().encode();
        assert!(
            metrics.contains(r#"conpaas_audit_events_dropped_total{priority="high"} 50"#),
            "{metrics}"
        );
        assert!(metrics.contains(r#"conpaas_audit_events_dropped_total{priority="low"} 0"#));
        // The flushing task writes them in one batch: the newest 100.
        tokio::time::sleep(BATCH_DELAY * 5).await;
        let events = director.audit_events(AuditQuery::all()).await.unwrap();
        assert_eq!(events.len(), 100);
        assert_eq!(events[0].principal, "user:7");
        assert_eq!(events[0].source.as_deref(), Some("192.0.2.3"));
        assert_eq!(events[0].request_id.as_deref(), Some("r-1"));
        assert_eq!(events[0].client_request_id.as_deref(), Some("mine"));
        assert_eq!(events[0].detail, r#"{"n":50}"#);
        // Outside any scope, the operator acts; flush_audit writes at once.
        director.audit(Event::new("config.loaded", AuditOutcome::Ok));
        assert_eq!(director.flush_audit().await.unwrap(), 1);
        let last = director
            .audit_events(AuditQuery::all().limit(1))
            .await
            .unwrap();
        assert_eq!(last[0].principal, "operator");
        assert_eq!(last[0].source, None);
        assert_eq!(last[0].client_request_id, None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn refused_logins_never_push_other_events_out() {
        let dir = tempfile::tempdir().unwrap();
        let director = director(dir.path(), 10).unwrap();
        for n in 0..25 {
            director.audit(Event::new("login", AuditOutcome::Throttled).detail("n", n));
            if n == 12 {
                director.audit(Event::new("login", AuditOutcome::Ok).username("alice"));
                director.audit(Event::new("login", AuditOutcome::Refused).username("bob"));
                director.audit(Event::new("credit.decremented", AuditOutcome::Refused));
            }
        }
        // 26 refused or throttled logins for 10 places: the newest 16 dropped.
        assert_eq!(director.audit_events_dropped(), 16);
        let metrics = director.metrics().encode();
        assert!(metrics.contains(r#"conpaas_audit_events_dropped_total{priority="low"} 16"#));
        assert!(metrics.contains(r#"conpaas_audit_events_dropped_total{priority="high"} 0"#));
        assert_eq!(director.flush_audit().await.unwrap(), 12);
        let events = director.audit_events(AuditQuery::all()).await.unwrap();
        let names: Vec<_> = events
            .iter()
            .map(|e| (e.event.as_str(), e.outcome.as_str()))
            .collect();
        // In the order they happened, the two lanes merged.
        assert_eq!(names[10], ("login", "ok"), "{names:?}");
        assert_eq!(names[11], ("credit.decremented", "refused"), "{names:?}");
        assert!(events.windows(2).all(|pair| pair[0].at <= pair[1].at));
    }

    /// The stream gets what the table gets, once committed, with the table's ids: a change's
    /// event with its transaction, queued events with their batch, nothing of a transaction
    /// rolled back; a subscriber that falls behind is told how many it missed.
    #[tokio::test(flavor = "current_thread")]
    async fn subscribers_see_each_committed_event_once() {
        use crate::store::{AUDIT_STREAM_CAPACITY, AuditStreamError};
        let dir = tempfile::tempdir().unwrap();
        let director = director(dir.path(), 100).unwrap();
        let uid = crate::director::accounts::add_user_blocking(
            director.store(),
            crate::director::accounts::NewAccount {
                username: "alice".into(),
                email: "alice@example.org".into(),
                fname: None,
                lname: None,
                affiliation: None,
                password: "s3cret".to_owned().into(),
                credit: crate::model::Credit(5),
            },
        )
        .unwrap()
        .uid;
        let mut events = director.subscribe_audit();
        let app = director.create_application(uid, "shop").await.unwrap();
        // Refused in its transaction (the name is taken): no event.
        assert!(director.create_application(uid, "shop").await.is_err());
        let created = events.recv().await.unwrap();
        assert_eq!(created.event, "application.created");
        assert_eq!(created.aid, Some(app.aid));
        director.audit(Event::new("login", AuditOutcome::Refused).username("alice"));
        assert!(
            events.try_recv().unwrap().is_none(),
            "queued, not yet written"
        );
        assert_eq!(director.flush_audit().await.unwrap(), 1);
        let refused = events.recv().await.unwrap();
        assert_eq!(
            (refused.event.as_str(), refused.outcome.as_str()),
            ("login", "refused")
        );
        assert!(events.try_recv().unwrap().is_none());
        let table = director.audit_events(AuditQuery::all()).await.unwrap();
        let in_table: Vec<i64> = table.iter().map(|e| e.id).collect();
        assert!(
            in_table.ends_with(&[created.id, refused.id]),
            "{in_table:?}"
        );
        assert_eq!(*table.last().unwrap(), *refused);

        // Recorded, then rolled back with its transaction (an inner one committed first):
        // the stream never sees it.
        let undone = Event::new("application.deleted", AuditOutcome::Ok).to_new();
        let failed: Result<(), store::Error> = director
            .store()
            .run(move |conn| {
                store::write_transaction(conn, |conn| {
                    store::write_transaction(conn, |conn| {
                        store::record_audit_event(conn, &undone)
                    })?;
                    Err(store::Error::Cancelled)
                })
            })
            .await;
        assert!(failed.is_err());
        assert!(events.try_recv().unwrap().is_none());

        // One subscriber asleep: past the capacity it misses the oldest, and is told so.
        let many: Vec<_> = (0..AUDIT_STREAM_CAPACITY + 10)
            .map(|n| {
                Event::new("credit.decremented", AuditOutcome::Ok)
                    .detail("n", n)
                    .to_new()
            })
            .collect();
        director
            .store()
            .run(move |conn| store::record_audit_events(conn, &many))
            .await
            .unwrap();
        assert_eq!(
            events.recv().await,
            Err(AuditStreamError::Lagged { missed: 10 })
        );
        assert_eq!(events.recv().await.unwrap().detail, r#"{"n":10}"#);
    }
}
