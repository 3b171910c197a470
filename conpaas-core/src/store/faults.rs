//! Fault injection: a simulation's (or a test's) hook into every store call, so that the
//! director's answers to a busy, locked, full or flaky database can be explored without one.

use super::DatabaseErrorKind;

/// Decides, for each call of [`Store::run`](super::Store::run) and
/// [`Store::read`](super::Store::read) of a store made with
/// [`Store::with_faults`](super::Store::with_faults), whether it fails and how.
///
/// `write` is `true` for [`Store::run`](super::Store::run) (which may write) and `false` for
/// [`Store::read`](super::Store::read). A failure is reported to the caller as
/// [`Error::Query`](super::Error::Query) with a [`DatabaseError`](super::DatabaseError) of the
/// given kind ([`DatabaseError::injected`](super::DatabaseError::injected)).
pub trait StoreFaults: Send + Sync + std::fmt::Debug {
    /// Asked before the call's work runs: `Some(kind)` fails the call with nothing done (a
    /// busy or locked database, a full disk, a lost connection).
    fn before(&self, write: bool) -> Option<DatabaseErrorKind>;

    /// Asked after the call's work succeeded (its transaction committed): `Some(kind)`
    /// reports a failure although the work is done, as when a connection drops while the
    /// answer to a COMMIT travels back. Callers must not assume a failed write did nothing.
    fn after(&self, write: bool) -> Option<DatabaseErrorKind>;
}
