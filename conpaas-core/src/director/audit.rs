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

/// The most events queued: past it, events are dropped and counted (the database is failing
/// or far behind, and memory must stay bounded).
const MAX_QUEUED: usize = 10_000;

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
    /// The request's id (`x-request-id`).
    pub request_id: Option<String>,
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
        }
    }

    /// The operator (the command line): the context outside any scope.
    pub fn operator() -> AuditContext {
        AuditContext::request("operator", None, None)
    }

    /// The director's own background work (maintenance: reconciliation, the reaper).
    pub fn director() -> AuditContext {
        AuditContext::request("director", None, None)
    }

    /// Runs `work` with this context: the events it makes (on this task) carry it.
    pub async fn scope<F: Future>(self, work: F) -> F::Output {
        CONTEXT.scope(self, work).await
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

/// The queue of events waiting for their batch.
#[derive(Debug, Default)]
pub(super) struct AuditQueue {
    queued: Mutex<Vec<NewAuditEvent>>,
    /// A flushing task is running (or about to).
    flushing: AtomicBool,
    dropped: AtomicU64,
}

impl AuditQueue {
    fn take(&self) -> Vec<NewAuditEvent> {
        std::mem::take(&mut *self.queued.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts events back after a failed write (the oldest first), within the bound; answers how
    /// many did not fit and were dropped.
    fn put_back(&self, mut events: Vec<NewAuditEvent>) -> u64 {
        let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        events.append(&mut queued);
        let over = events.len().saturating_sub(MAX_QUEUED);
        events.drain(..over);
        let over = u64::try_from(over).unwrap_or(u64::MAX);
        self.dropped.fetch_add(over, Ordering::Relaxed);
        *queued = events;
        over
    }
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
    /// change belongs in the change's transaction ([`store::record_audit_event`]).
    pub fn audit(&self, event: Event) {
        let queue = &self.inner.audit;
        {
            let mut queued = queue.queued.lock().unwrap_or_else(|e| e.into_inner());
            if queued.len() >= MAX_QUEUED {
                self.inner.metrics.audit_dropped(1);
                if queue
                    .dropped
                    .fetch_add(1, Ordering::Relaxed)
                    .is_multiple_of(1000)
                {
                    tracing::warn!(
                        dropped = queue.dropped.load(Ordering::Relaxed),
                        "audit events dropped: the queue is full (the database is failing or behind)"
                    );
                }
                return;
            }
            queued.push(event.to_new());
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
                self.inner.metrics.audit_dropped(queue.put_back(events));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            queue.flushing.store(false, Ordering::Release);
            // An event queued between `take` and here found `flushing` set: take it on.
            let empty = queue
                .queued
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty();
            if empty || queue.flushing.swap(true, Ordering::AcqRel) {
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
                let dropped = self.inner.audit.put_back(events);
                self.inner.metrics.audit_dropped(dropped);
                Err(error)
            }
        }
    }

    /// Audit events dropped because the queue was full.
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
    use std::sync::Arc;

    use super::*;
    use crate::ca::{CertificateAuthority, KeyAlgorithm};
    use crate::cloud::{CloudRegistry, DummyCloud};

    #[tokio::test(flavor = "current_thread")]
    async fn the_queue_is_bounded_batched_and_counts_what_it_drops() {
        let dir = tempfile::tempdir().unwrap();
        let director = Director::builder()
            .store(Store::open_in_memory().unwrap())
            .ca(CertificateAuthority::generate(KeyAlgorithm::EcdsaP256).unwrap())
            .clouds(
                CloudRegistry::builder()
                    .cloud("local", Arc::new(DummyCloud::new("local", dir.path())))
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let context = AuditContext::request(
            "user:7",
            Some("::ffff:192.0.2.3".parse().unwrap()),
            Some("r-1".into()),
        );
        context
            .scope(async {
                // Synchronously, before the flushing task can run: 50 more than the queue holds.
                for n in 0..MAX_QUEUED + 50 {
                    director.audit(Event::new("login", AuditOutcome::Refused).detail("n", n));
                }
            })
            .await;
        assert_eq!(director.audit_events_dropped(), 50);
        assert!(
            director
                .metrics()
                .encode()
                .contains("conpaas_audit_events_dropped_total 50")
        );
        // The flushing task writes them all in one batch.
        tokio::time::sleep(BATCH_DELAY * 5).await;
        let events = director.audit_events(AuditQuery::all()).await.unwrap();
        assert_eq!(events.len(), MAX_QUEUED);
        assert_eq!(events[0].principal, "user:7");
        assert_eq!(events[0].source.as_deref(), Some("192.0.2.3"));
        assert_eq!(events[0].request_id.as_deref(), Some("r-1"));
        assert_eq!(events[0].detail, r#"{"n":0}"#);
        // Outside any scope, the operator acts; flush_audit writes at once.
        director.audit(Event::new("config.loaded", AuditOutcome::Ok));
        assert_eq!(director.flush_audit().await.unwrap(), 1);
        let last = director
            .audit_events(AuditQuery::all().limit(1))
            .await
            .unwrap();
        assert_eq!(last[0].principal, "operator");
        assert_eq!(last[0].source, None);
    }
}
