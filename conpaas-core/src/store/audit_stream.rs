//! Audit events as a stream: each event a store commits to `audit_event` is also sent, once
//! committed, to every [`AuditSubscription`] of that store ([`Store::subscribe_audit`]).
//!
//! The table stays the record; the stream is for watching it without polling (an embedder's
//! SIEM feed, a test). It is bounded and lossy: a subscriber more than
//! [`AUDIT_STREAM_CAPACITY`] events behind misses the oldest and is told how many
//! ([`AuditStreamError::Lagged`]), never slowing a writer. Events carry their table id, so a
//! subscriber that lagged can read the gap back with [`list_audit_events`](super::list_audit_events).
//!
//! How "once committed" is kept without each use-case's help: the store's calls
//! ([`Store::run`], [`Store::run_blocking`]) open a publishing scope on the thread that runs
//! their closure; [`record_audit_events`](super::record_audit_events) adds its rows (with the
//! ids the database gave them) to the scope; [`write_transaction`](super::write_transaction)
//! drops those its rollback undid; the scope sends the rest when the closure returns. With no
//! subscriber, none of this happens.
//!
//! [`Store::subscribe_audit`]: super::Store::subscribe_audit
//! [`Store::run`]: super::Store::run
//! [`Store::run_blocking`]: super::Store::run_blocking

use std::cell::RefCell;
use std::sync::Arc;

use tokio::sync::broadcast;

use super::AuditEvent;

/// How many events a subscriber may fall behind before it misses some.
pub const AUDIT_STREAM_CAPACITY: usize = 1024;

/// The sending side, held by a store and its clones.
#[derive(Clone)]
pub(super) struct AuditSender(broadcast::Sender<Arc<AuditEvent>>);

impl AuditSender {
    pub(super) fn new() -> AuditSender {
        AuditSender(broadcast::channel(AUDIT_STREAM_CAPACITY).0)
    }

    pub(super) fn subscribe(&self) -> AuditSubscription {
        AuditSubscription {
            receiver: self.0.subscribe(),
        }
    }

    /// A scope publishing what `f`'s thread commits, when anyone listens.
    pub(super) fn scope(&self) -> Option<PublishScope> {
        (self.0.receiver_count() > 0).then(|| PublishScope::enter(self.0.clone()))
    }
}

/// Events committed by a store, as they commit ([`Store::subscribe_audit`](super::Store::subscribe_audit)).
#[derive(Debug)]
pub struct AuditSubscription {
    receiver: broadcast::Receiver<Arc<AuditEvent>>,
}

/// Why [`AuditSubscription::recv`] gave no event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditStreamError {
    /// The subscriber fell more than [`AUDIT_STREAM_CAPACITY`] events behind: the `missed`
    /// oldest are gone from the stream (not from the table). The next call answers the
    /// oldest kept.
    #[error("{missed} audit events missed: the subscriber fell behind")]
    Lagged {
        /// How many.
        missed: u64,
    },
    /// Every clone of the store is gone.
    #[error("the store is closed")]
    Closed,
}

impl AuditSubscription {
    /// The next committed event, waiting for one.
    ///
    /// # Errors
    ///
    /// [`AuditStreamError::Lagged`] once after events were missed;
    /// [`AuditStreamError::Closed`] when the store is gone.
    pub async fn recv(&mut self) -> Result<Arc<AuditEvent>, AuditStreamError> {
        self.receiver.recv().await.map_err(|error| match error {
            broadcast::error::RecvError::Lagged(missed) => AuditStreamError::Lagged { missed },
            broadcast::error::RecvError::Closed => AuditStreamError::Closed,
        })
    }

    /// The next committed event if one is waiting (`Ok(None)` if not).
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    pub fn try_recv(&mut self) -> Result<Option<Arc<AuditEvent>>, AuditStreamError> {
        match self.receiver.try_recv() {
            Ok(event) => Ok(Some(event)),
            Err(broadcast::error::TryRecvError::Empty) => Ok(None),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                Err(AuditStreamError::Lagged { missed })
            }
            Err(broadcast::error::TryRecvError::Closed) => Err(AuditStreamError::Closed),
        }
    }
}

struct Pending {
    sender: broadcast::Sender<Arc<AuditEvent>>,
    events: Vec<AuditEvent>,
}

thread_local! {
    /// The scope of the store call running on this thread, if anyone listens.
    static PENDING: RefCell<Option<Pending>> = const { RefCell::new(None) };
}

/// Publishes, when dropped, the events recorded on this thread since it was entered (and not
/// rolled back). Restores the scope it replaced (a store call made inside another's closure).
pub(super) struct PublishScope {
    outer: Option<Pending>,
}

impl PublishScope {
    fn enter(sender: broadcast::Sender<Arc<AuditEvent>>) -> PublishScope {
        let outer = PENDING.with(|pending| {
            pending.borrow_mut().replace(Pending {
                sender,
                events: Vec::new(),
            })
        });
        PublishScope { outer }
    }
}

impl Drop for PublishScope {
    fn drop(&mut self) {
        let ours = PENDING
            .with(|pending| std::mem::replace(&mut *pending.borrow_mut(), self.outer.take()));
        // A closure that panicked may have left a transaction open: send nothing.
        if std::thread::panicking() {
            return;
        }
        if let Some(Pending { sender, events }) = ours {
            for event in events {
                // No receiver left: nothing to do.
                let _ = sender.send(Arc::new(event));
            }
        }
    }
}

/// Whether a scope listens on this thread (so the rows' ids are worth asking for).
pub(super) fn listening() -> bool {
    PENDING.with(|pending| pending.borrow().is_some())
}

/// Adds rows just written to the scope.
pub(super) fn recorded(events: impl IntoIterator<Item = AuditEvent>) {
    PENDING.with(|pending| {
        if let Some(pending) = pending.borrow_mut().as_mut() {
            pending.events.extend(events);
        }
    });
}

/// How many events the scope holds: a transaction's mark, to [`roll_back_to`] if it fails.
pub(super) fn mark() -> usize {
    PENDING.with(|pending| pending.borrow().as_ref().map_or(0, |p| p.events.len()))
}

/// Forgets the events recorded since `mark`: their transaction did not commit.
pub(super) fn roll_back_to(mark: usize) {
    PENDING.with(|pending| {
        if let Some(pending) = pending.borrow_mut().as_mut() {
            pending.events.truncate(mark);
        }
    });
}
