//! The transport's counters: connections accepted, refused, evicted and timed out, and those
//! open, in atomics any connection task updates; encoded as Prometheus metrics by whoever
//! registers [`TransportStats`] (the director's `/metrics` through `serve_director`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

/// Why a new connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Its address (IPv4 address, IPv6 /64) has `max_connections_per_address` open.
    Address,
    /// Its network (IPv4 /24, IPv6 /48) has `max_connections_per_network` open.
    Network,
    /// Every place is held by a connection with a verified client certificate: nothing to
    /// evict.
    Total,
    /// The anonymous places (or all places) are held and the newcomer's own network holds
    /// the most anonymous connections: it would only evict its own.
    Anonymous,
}

/// Which limit an anonymous connection was evicted to make room under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Eviction {
    /// `max_anonymous_connections` was reached.
    Anonymous,
    /// `max_connections` was reached.
    Total,
}

/// The phase of a connection a deadline ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// No byte within `first_byte_timeout` of the accept.
    FirstByte,
    /// TLS handshake not done within `handshake_timeout`.
    Handshake,
    /// A request's headers not received within `header_read_timeout` (also a kept-alive
    /// connection idle that long).
    Header,
    /// A request's body not received within `request_body_timeout` of its headers.
    Body,
    /// Writing made no progress for `write_timeout` (a client that stopped reading).
    Write,
}

impl Refusal {
    const ALL: [Refusal; 4] = [
        Refusal::Address,
        Refusal::Network,
        Refusal::Total,
        Refusal::Anonymous,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Address => "address",
            Refusal::Network => "network",
            Refusal::Total => "total",
            Refusal::Anonymous => "anonymous",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl Eviction {
    const ALL: [Eviction; 2] = [Eviction::Anonymous, Eviction::Total];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Eviction::Anonymous => "anonymous",
            Eviction::Total => "total",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl Phase {
    const ALL: [Phase; 5] = [
        Phase::FirstByte,
        Phase::Handshake,
        Phase::Header,
        Phase::Body,
        Phase::Write,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::FirstByte => "first_byte",
            Phase::Handshake => "handshake",
            Phase::Header => "header",
            Phase::Body => "body",
            Phase::Write => "write",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The counters of one listener (or of several sharing them). Cheap to clone: every clone
/// counts into the same atomics. Register it as a prometheus-client [`Collector`] to publish
/// them; [`Listener::serve_director`](super::Listener::serve_director) attaches it to the
/// director's metrics.
#[derive(Debug, Clone, Default)]
pub struct TransportStats {
    inner: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    accepted: AtomicU64,
    refused: [AtomicU64; 4],
    evicted: [AtomicU64; 2],
    timed_out: [AtomicU64; 5],
    open_anonymous: AtomicU64,
    open_authenticated: AtomicU64,
}

impl TransportStats {
    /// Counters at zero.
    pub fn new() -> TransportStats {
        TransportStats::default()
    }

    /// Connections accepted from the socket (admitted or not).
    pub fn accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::Relaxed)
    }

    /// Connections closed at once for `reason`.
    pub fn refused(&self, reason: Refusal) -> u64 {
        self.load(&self.inner.refused, reason.index())
    }

    /// Anonymous connections evicted to make room under `reason`'s limit.
    pub fn evicted(&self, reason: Eviction) -> u64 {
        self.load(&self.inner.evicted, reason.index())
    }

    /// Connections a deadline of `phase` ended.
    pub fn timed_out(&self, phase: Phase) -> u64 {
        self.load(&self.inner.timed_out, phase.index())
    }

    /// Connections open now: (anonymous, with a verified client certificate).
    pub fn open(&self) -> (u64, u64) {
        (
            self.inner.open_anonymous.load(Ordering::Relaxed),
            self.inner.open_authenticated.load(Ordering::Relaxed),
        )
    }

    fn load(&self, counters: &[AtomicU64], index: usize) -> u64 {
        counters
            .get(index)
            .map_or(0, |counter| counter.load(Ordering::Relaxed))
    }

    fn bump(counters: &[AtomicU64], index: usize) {
        if let Some(counter) = counters.get(index) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn count_accepted(&self) {
        self.inner.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_refused(&self, reason: Refusal) {
        Self::bump(&self.inner.refused, reason.index());
    }

    pub(super) fn count_evicted(&self, reason: Eviction) {
        Self::bump(&self.inner.evicted, reason.index());
    }

    pub(super) fn count_timed_out(&self, phase: Phase) {
        Self::bump(&self.inner.timed_out, phase.index());
    }

    /// Set under the admission lock after every change, so the two agree with each other.
    pub(super) fn set_open(&self, anonymous: usize, authenticated: usize) {
        let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        self.inner
            .open_anonymous
            .store(as_u64(anonymous), Ordering::Relaxed);
        self.inner
            .open_authenticated
            .store(as_u64(authenticated), Ordering::Relaxed);
    }
}

impl Collector for TransportStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let mut metric = encoder.encode_descriptor(
                "conpaas_connections_accepted",
                "TCP connections accepted by the listener, admitted or not",
                None,
                MetricType::Counter,
            )?;
            metric.encode_counter::<NoLabelSet, _, u64>(&self.accepted(), None)?;
        }
        {
            let mut metric = encoder.encode_descriptor(
                "conpaas_connections_refused",
                "New connections closed at once, by the limit they hit: address (per IPv4 \
                 address or IPv6 /64), network (per IPv4 /24 or IPv6 /48), total (every place \
                 held by certificate holders), anonymous (the anonymous places full and the \
                 newcomer's network holding the most of them)",
                None,
                MetricType::Counter,
            )?;
            for reason in Refusal::ALL {
                metric
                    .encode_family(&[("reason", reason.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&self.refused(reason), None)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "conpaas_connections_evicted",
                "Anonymous connections closed to admit a new one, by the limit that was full \
                 (anonymous or total); taken from the network holding the most",
                None,
                MetricType::Counter,
            )?;
            for reason in Eviction::ALL {
                metric
                    .encode_family(&[("reason", reason.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&self.evicted(reason), None)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "conpaas_connections_timed_out",
                "Connections closed by a deadline, by phase: first_byte, handshake, header \
                 (also idle kept-alive connections), body, write",
                None,
                MetricType::Counter,
            )?;
            for phase in Phase::ALL {
                metric
                    .encode_family(&[("phase", phase.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&self.timed_out(phase), None)?;
            }
        }
        let (anonymous, authenticated) = self.open();
        let mut metric = encoder.encode_descriptor(
            "conpaas_connections_open",
            "Connections open, by class: anonymous (no verified client certificate yet) or \
             authenticated",
            None,
            MetricType::Gauge,
        )?;
        for (class, open) in [("anonymous", anonymous), ("authenticated", authenticated)] {
            let gauge = ConstGauge::new(i64::try_from(open).unwrap_or(i64::MAX));
            gauge.encode(metric.encode_family(&[("class", class)])?)?;
        }
        Ok(())
    }
}
