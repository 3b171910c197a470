//! Deadlines hyper does not keep: on a request's whole body ([`DeadlineBody`]) and on writing
//! an answer ([`WriteDeadline`]). hyper bounds the headers only; without these a client
//! dripping a body a byte at a time, or one that stops reading its answers, holds its
//! connection for as long as it likes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::stats::{Phase, TransportStats};

/// A request body that fails once `deadline` passes, set when the headers arrived and never
/// moved by the data that trickles in: the whole body is bounded, not the gap between bytes.
/// hyper then closes the connection, the body being unread.
#[derive(Debug)]
pub(super) struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    /// Made at the first wait only: most requests have no body, or one already read.
    timer: Option<Pin<Box<Sleep>>>,
    stats: TransportStats,
    expired: bool,
}

impl DeadlineBody {
    pub(super) fn new(inner: Incoming, timeout: Duration, stats: TransportStats) -> DeadlineBody {
        DeadlineBody {
            inner,
            deadline: Instant::now() + timeout,
            timer: None,
            stats,
            expired: false,
        }
    }

    fn expire(&mut self) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if !self.expired {
            self.expired = true;
            self.stats.count_timed_out(Phase::Body);
        }
        Poll::Ready(Some(Err(BodyError::TimedOut)))
    }
}

/// Why a [`DeadlineBody`] failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum BodyError {
    /// The body did not arrive in time.
    #[error("request body not received in time")]
    TimedOut,
    /// hyper's own error (the connection broke, a malformed chunk).
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.expired || Instant::now() >= this.deadline {
            return this.expire();
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(BodyError::from)));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(timer.as_mut().poll(cx));
        this.expire()
    }

    fn is_end_stream(&self) -> bool {
        !self.expired && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket whose writes fail with `TimedOut` once they make no progress for `timeout`: the
/// peer stopped reading and the send buffers are full. Progress (any byte taken) starts the
/// wait anew, so a slow but reading client is served; reads pass through.
#[derive(Debug)]
pub(super) struct WriteDeadline<IO> {
    io: IO,
    timeout: Duration,
    /// Running while writes wait; none while they make progress.
    stall: Option<Pin<Box<Sleep>>>,
    stats: TransportStats,
}

impl<IO> WriteDeadline<IO> {
    pub(super) fn new(io: IO, timeout: Duration, stats: TransportStats) -> WriteDeadline<IO> {
        WriteDeadline {
            io,
            timeout,
            stall: None,
            stats,
        }
    }

    /// The outcome of a write-side call: progress stops the stall timer, waiting runs it.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stall = None;
            return polled;
        }
        let timeout = self.timeout;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(stall.as_mut().poll(cx));
        self.stats.count_timed_out(Phase::Write);
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read nothing of the answer in time",
        )))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteDeadline<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.watch(cx, polled)
    }
}
