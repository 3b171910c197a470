//! The TLS accept loop: TCP -> rustls handshake (client certificate optional) -> hyper HTTP/1.1,
//! with the peer's verified certificate attached to every request it sends. Without the
//! `server` feature only [`PeerInfo`] is here, which an embedder's own transport provides.
//!
//! Every resource a peer can hold is bounded (docs/operations.md, "Connection limits"):
//!
//! - **Places.** Connections are admitted by caps per address (IPv4 address, IPv6 /64), per
//!   network (IPv4 /24, IPv6 /48) and in all; those without a verified client certificate
//!   (still in their handshake, or done without one) share an anonymous pool, so that clients
//!   with a certificate of the director's CA — users, managers, the PHP frontend — always find
//!   places. A newcomer finding the pool full evicts an anonymous connection of the network
//!   holding the most (`admission`).
//! - **Time.** Each phase has a deadline: the first byte, the TLS handshake, the headers
//!   (hyper), the whole body from the headers on, and each write of the answer (`deadline`).
//! - **Visibility.** Refusals, evictions and timeouts are counted by reason in
//!   [`TransportStats`] (the director's `/metrics`) and summed up in one `warn` line per 10 s
//!   at most.
//!
//! [`DirectorServer`] is the whole of `director serve` on top of it: a director served from its
//! director.cfg or from typed parts, the certificate reloadable while serving
//! ([`ReloadHandle`]), maintenance beside the API, deferred credit charges applied at start and
//! shutdown, the audit log written at the end.
//!
#![cfg_attr(
    not(feature = "server"),
    doc = "[`TransportStats`]: crate#features\n[`DirectorServer`]: crate#features\n\
           [`ReloadHandle`]: crate#features"
)]

#[cfg(feature = "server")]
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
#[cfg(feature = "server")]
use std::time::Duration;

#[cfg(feature = "server")]
use axum::Router;
#[cfg(feature = "server")]
use hyper::body::Incoming;
#[cfg(feature = "server")]
use hyper_util::rt::{TokioIo, TokioTimer};
#[cfg(feature = "server")]
use hyper_util::server::graceful::GracefulShutdown;
#[cfg(feature = "server")]
use hyper_util::service::TowerToHyperService;
#[cfg(feature = "server")]
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
#[cfg(feature = "server")]
use tokio::net::TcpListener;
#[cfg(feature = "server")]
use tokio_rustls::TlsAcceptor;
#[cfg(feature = "server")]
use tower::ServiceExt;

#[cfg(feature = "server")]
mod admission;
#[cfg(feature = "legacy-tls")]
mod legacy_tls;
#[cfg(feature = "legacy-tls")]
pub use legacy_tls::{LegacyTls, LegacyTlsError};
#[cfg(feature = "server")]
mod deadline;
#[cfg(feature = "server")]
mod director_server;
#[cfg(feature = "server")]
mod stats;

#[cfg(feature = "server")]
pub use director_server::{
    DirectorServer, DirectorServerBuilder, ReloadHandle, ReloadReport, ServeError,
};
#[cfg(feature = "server")]
pub use stats::{Eviction, Phase, Refusal, TransportStats};

/// Limits of the transport: every one bounds a resource an anonymous peer could hold. Start
/// from [`TransportSettings::recommended`] (or [`TransportSettings::from_config`]) and change
/// what you need with the setters; fields may be added.
#[derive(Debug, Clone)]
#[non_exhaustive]
#[cfg(feature = "server")]
pub struct TransportSettings {
    /// Time allowed from the connection's accept to its first byte; a peer that opens
    /// sockets and sends nothing is dropped after it.
    pub first_byte_timeout: Duration,
    /// Time allowed for the TLS handshake (after the first byte); slow-loris peers are
    /// dropped after it.
    pub handshake_timeout: Duration,
    /// Time allowed to receive a request's headers, which is also how long a kept-alive
    /// connection may stay idle between requests (hyper counts from the end of the previous
    /// answer; it needs a timer for this to work).
    pub header_read_timeout: Duration,
    /// Time allowed to receive a request's whole body, counted from its headers and not
    /// restarted by the bytes that arrive: a body dripped a byte at a time ends its connection.
    pub request_body_timeout: Duration,
    /// How long writing an answer may make no progress (the client stopped reading) before
    /// the connection is dropped. Progress starts the wait anew: slow readers are served.
    pub write_timeout: Duration,
    /// Connections served at once. Past it a new connection evicts an anonymous one (see
    /// `max_anonymous_connections`) or is closed at once, rather than left to wait behind idle
    /// ones; the listen backlog is this size too.
    pub max_connections: usize,
    /// Of `max_connections`, how many may be anonymous: without a verified client
    /// certificate, which every connection is until its TLS handshake ends. The rest is left
    /// for connections presenting a certificate of the director's CA.
    pub max_anonymous_connections: usize,
    /// Connections served at once for one address: an IPv4 address, or an IPv6 /64 (one
    /// site's addresses). Past it the address's new connections are closed at once.
    /// `usize::MAX`: no cap (behind a load balancer).
    pub max_connections_per_address: usize,
    /// Anonymous connections served at once for one network: an IPv4 /24, or an IPv6 /48.
    /// Past it the network's new connections are closed at once; a connection that
    /// authenticates leaves its network's count. `usize::MAX`: no cap.
    pub max_connections_per_network: usize,
    /// How long in-flight requests may take to finish after shutdown was asked for.
    pub shutdown_grace: Duration,
}

#[cfg(feature = "server")]
impl TransportSettings {
    /// Settings fit for a director on the open Internet: the defaults of director.cfg
    /// ([`ConnectionLimits::recommended`](crate::config::ConnectionLimits::recommended)).
    pub fn recommended() -> Self {
        TransportSettings::from_limits(&crate::config::ConnectionLimits::recommended())
    }

    /// The limits director.cfg sets (`[director] MAX_CONNECTIONS` ... `WRITE_TIMEOUT`), with the
    /// recommended timeouts of the phases it has no key for.
    pub fn from_config(config: &crate::config::DirectorConfig) -> Self {
        TransportSettings::from_limits(&config.connections)
    }

    fn from_limits(limits: &crate::config::ConnectionLimits) -> Self {
        TransportSettings {
            first_byte_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(15),
            request_body_timeout: limits.request_body_timeout,
            write_timeout: limits.write_timeout,
            max_connections: limits.max_connections,
            max_anonymous_connections: limits.max_anonymous_connections,
            max_connections_per_address: limits.max_connections_per_address.unwrap_or(usize::MAX),
            max_connections_per_network: limits.max_connections_per_network.unwrap_or(usize::MAX),
            shutdown_grace: Duration::from_secs(30),
        }
    }

    /// Sets [`first_byte_timeout`](Self::first_byte_timeout).
    pub fn first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.first_byte_timeout = timeout;
        self
    }

    /// Sets [`handshake_timeout`](Self::handshake_timeout).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets [`header_read_timeout`](Self::header_read_timeout).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets [`request_body_timeout`](Self::request_body_timeout).
    pub fn request_body_timeout(mut self, timeout: Duration) -> Self {
        self.request_body_timeout = timeout;
        self
    }

    /// Sets [`write_timeout`](Self::write_timeout).
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Sets [`max_connections`](Self::max_connections), and
    /// [`max_anonymous_connections`](Self::max_anonymous_connections) to half of it (as
    /// director.cfg does when it sets only the first); set that afterwards to change it.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self.max_anonymous_connections = crate::config::default_max_anonymous_connections(max);
        self
    }

    /// Sets [`max_anonymous_connections`](Self::max_anonymous_connections).
    pub fn max_anonymous_connections(mut self, max: usize) -> Self {
        self.max_anonymous_connections = max;
        self
    }

    /// Sets [`max_connections_per_address`](Self::max_connections_per_address).
    pub fn max_connections_per_address(mut self, max: usize) -> Self {
        self.max_connections_per_address = max;
        self
    }

    /// Sets [`max_connections_per_network`](Self::max_connections_per_network).
    pub fn max_connections_per_network(mut self, max: usize) -> Self {
        self.max_connections_per_network = max;
        self
    }

    /// Sets [`shutdown_grace`](Self::shutdown_grace).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// The admission limits, made consistent: every cap at least 1, the anonymous share at
    /// most the whole.
    fn limits(&self) -> admission::Limits {
        let max_connections = self.max_connections.max(1);
        admission::Limits {
            max_connections,
            max_anonymous: self.max_anonymous_connections.clamp(1, max_connections),
            per_address: self.max_connections_per_address.max(1),
            per_network: self.max_connections_per_network.max(1),
        }
    }
}

/// Whether reading a request's body failed because the listener's body deadline passed
/// (`TransportSettings::request_body_timeout`), not because the body was too large.
pub(crate) fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    #[cfg(feature = "server")]
    {
        let mut next = Some(error);
        while let Some(error) = next {
            if let Some(deadline::BodyError::TimedOut) = error.downcast_ref() {
                return true;
            }
            next = error.source();
        }
    }
    #[cfg(not(feature = "server"))]
    let _ = error;
    false
}

/// What the transport knows about the peer of a request, put in the request's extensions
/// (the contract is on [`router`](crate::api::router)). Built by [`PeerInfo::from_tls`],
/// [`PeerInfo::anonymous`] or [`PeerInfo::verified`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The peer's socket address.
    pub remote: SocketAddr,
    /// The leaf certificate the peer presented, **already verified against the director's
    /// CA** by the TLS stack; `None` for an anonymous peer.
    pub certificate: Option<Arc<CertificateDer<'static>>>,
}

impl PeerInfo {
    /// A peer without a client certificate.
    pub fn anonymous(remote: SocketAddr) -> Self {
        PeerInfo {
            remote,
            certificate: None,
        }
    }

    /// A peer that presented `certificate`, which the caller's TLS stack **has verified
    /// against the director's CA**: the router trusts its `UID`, `serviceLocator` and `role`.
    pub fn verified(remote: SocketAddr, certificate: CertificateDer<'static>) -> Self {
        PeerInfo {
            remote,
            certificate: Some(Arc::new(certificate)),
        }
    }

    /// The peer of an accepted tokio-rustls connection: its leaf certificate, if it sent one.
    /// The connection's `ServerConfig` must verify client certificates against the
    /// director's CA ([`tls::server_config`](crate::api::tls::server_config) does), since
    /// the router trusts what this returns.
    pub fn from_tls<IO>(remote: SocketAddr, stream: &tokio_rustls::server::TlsStream<IO>) -> Self {
        let certificate = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| Arc::new(leaf.clone().into_owned()));
        PeerInfo {
            remote,
            certificate,
        }
    }
}

/// A bound, not yet serving, HTTPS listener.
#[cfg(feature = "server")]
pub struct Listener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    settings: TransportSettings,
    stats: TransportStats,
    #[cfg(feature = "legacy-tls")]
    legacy: Option<LegacyTls>,
}

#[cfg(feature = "server")]
impl Listener {
    /// Binds `addr` (port 0 picks a free port), with a listen backlog of
    /// [`TransportSettings::max_connections`].
    pub async fn bind(
        addr: SocketAddr,
        tls: Arc<ServerConfig>,
        settings: TransportSettings,
    ) -> std::io::Result<Listener> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does: a restarted director binds at once.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let tcp = socket.listen(u32::try_from(settings.max_connections).unwrap_or(u32::MAX))?;
        Ok(Listener {
            tcp,
            acceptor: TlsAcceptor::from(tls),
            settings,
            stats: TransportStats::new(),
            #[cfg(feature = "legacy-tls")]
            legacy: None,
        })
    }

    /// A listener on a socket already bound and listening (inherited from a supervisor, or
    /// bound by the caller before dropping privileges); its listen backlog stays as set. Call
    /// it inside a tokio runtime, which will drive the socket.
    pub fn from_std(
        listener: std::net::TcpListener,
        tls: Arc<ServerConfig>,
        settings: TransportSettings,
    ) -> std::io::Result<Listener> {
        // tokio requires it, and a blocking socket would stall a worker thread on accept.
        listener.set_nonblocking(true)?;
        Ok(Listener {
            tcp: TcpListener::from_std(listener)?,
            acceptor: TlsAcceptor::from(tls),
            settings,
            stats: TransportStats::new(),
            #[cfg(feature = "legacy-tls")]
            legacy: None,
        })
    }

    /// Answers clients whose highest TLS version is 1.0 or 1.1 with `legacy` (the system's
    /// OpenSSL), for the managers' cloud routes only: the 1.2 managers' libcloud speaks TLS 1.0
    /// alone ([`LegacyTls`]). Without it such clients fail their handshake, as before.
    #[cfg(feature = "legacy-tls")]
    pub fn legacy_tls(mut self, legacy: LegacyTls) -> Self {
        self.legacy = Some(legacy);
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The listener's counters (connections refused, evicted, timed out, open): a handle on
    /// the atomics it updates while serving, to register in a prometheus-client registry of
    /// your own ([`serve_director`](Self::serve_director) attaches them to the director's).
    pub fn stats(&self) -> TransportStats {
        self.stats.clone()
    }

    /// Serves `director`'s 1.2 API ([`router`](crate::api::router)) and runs its maintenance
    /// ([`Director::run_maintenance_with`](crate::director::Director::run_maintenance_with)) beside it,
    /// until `shutdown` completes: what `director serve` does once set up. The listener's
    /// [`stats`](Self::stats) are published in the director's `/metrics`.
    pub async fn serve_director(
        self,
        director: crate::director::Director,
        maintenance: crate::director::MaintenanceSettings,
        shutdown: impl Future<Output = ()>,
    ) {
        director
            .metrics()
            .attach_transport(Arc::new(self.stats.clone()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let background = tokio::spawn(director.clone().run_maintenance_with(maintenance, async {
            let _ = stopped.await;
        }));
        self.serve(crate::api::router(director), shutdown).await;
        let _ = stop.send(());
        // A pass in progress may wait on a cloud; it is safe to cut (every step is
        // idempotent and reconciliation redoes it), so the wait is short.
        if tokio::time::timeout(Duration::from_secs(5), background)
            .await
            .is_err()
        {
            tracing::info!("maintenance pass cut short by shutdown");
        }
    }

    /// Serves `router` until `shutdown` completes, then stops accepting and waits (bounded by
    /// `shutdown_grace`) for in-flight requests to finish.
    pub async fn serve(self, router: Router, shutdown: impl Future<Output = ()>) {
        let Listener {
            tcp,
            acceptor,
            settings,
            stats,
            #[cfg(feature = "legacy-tls")]
            legacy,
        } = self;
        let admission = admission::Admission::new(settings.limits(), stats.clone());
        let graceful = GracefulShutdown::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout);
        let shutdown_grace = settings.shutdown_grace;
        let connections = Arc::new(Connections {
            acceptor,
            #[cfg(feature = "legacy-tls")]
            legacy,
            router,
            http,
            settings,
            stats: stats.clone(),
        });
        let mut summary = Summary::default();
        let mut summary_tick = tokio::time::interval(SUMMARY_PERIOD);
        summary_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            let (stream, remote) = tokio::select! {
                () = &mut shutdown => break,
                _ = summary_tick.tick() => {
                    summary.log_if_due(&stats);
                    continue;
                }
                accepted = tcp.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // An answer of more than one segment is written in several parts (headers, TLS
            // records); with Nagle's algorithm the last one waits for the peer's delayed ACK,
            // up to 40 ms (docs/performance.md).
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%remote, %error, "cannot set TCP_NODELAY");
            }
            // Past a limit the connection is closed at once: queued, it would wait behind the
            // idle connections that hold the places.
            let admitted = match admission.admit(remote.ip()) {
                Ok(admitted) => admitted,
                Err(refusal) => {
                    tracing::debug!(%remote, reason = refusal.as_str(), "connection refused");
                    summary.refused(refusal, admission::network_of(remote.ip()));
                    summary.log_if_due(&stats);
                    continue;
                }
            };
            if let Some((reason, network)) = admitted.eviction {
                tracing::debug!(%remote, %network, reason = reason.as_str(), "anonymous connection evicted");
                summary.evicted(reason, network);
                summary.log_if_due(&stats);
            }
            tokio::spawn(connections.clone().run(
                stream,
                remote,
                admitted.slot,
                graceful.watcher(),
            ));
        }
        drop(tcp);
        if tokio::time::timeout(shutdown_grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace period over; dropping remaining connections");
        }
    }
}

/// What every connection task of a listener shares.
#[cfg(feature = "server")]
struct Connections {
    acceptor: TlsAcceptor,
    #[cfg(feature = "legacy-tls")]
    legacy: Option<LegacyTls>,
    router: Router,
    http: hyper::server::conn::http1::Builder,
    settings: TransportSettings,
    stats: TransportStats,
}

#[cfg(feature = "server")]
impl Connections {
    /// Serves one admitted connection until it ends or is evicted, then gives its place back.
    async fn run(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        remote: SocketAddr,
        slot: admission::Slot,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let shared = slot.shared().clone();
        tokio::select! {
            biased;
            () = shared.evicted.notified() => {
                tracing::debug!(%remote, "connection dropped: evicted for a newcomer");
            }
            () = self.serve(stream, remote, &slot, watcher) => {}
        }
        drop(slot);
    }

    async fn serve(
        &self,
        stream: tokio::net::TcpStream,
        remote: SocketAddr,
        slot: &admission::Slot,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let settings = &self.settings;
        // `peek` waits for a byte without taking it (readiness alone can be spurious).
        let mut first = [0u8; 1];
        match tokio::time::timeout(settings.first_byte_timeout, stream.peek(&mut first)).await {
            Ok(Ok(1..)) => {}
            Err(_) => {
                self.stats.count_timed_out(Phase::FirstByte);
                tracing::debug!(%remote, "connection closed: nothing sent");
                return;
            }
            Ok(_) => {
                tracing::debug!(%remote, "connection closed by the client before a byte");
                return;
            }
        }
        #[cfg(feature = "legacy-tls")]
        if let Some(legacy) = &self.legacy
            && self.peek_legacy_hello(&stream).await
        {
            return self
                .serve_legacy(legacy, stream, remote, slot, watcher)
                .await;
        }
        // Under TLS, so that the stall of the socket itself is timed, whatever rustls buffers.
        let io = deadline::WriteDeadline::new(stream, settings.write_timeout, self.stats.clone());
        let tls = match tokio::time::timeout(settings.handshake_timeout, self.acceptor.accept(io))
            .await
        {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                tracing::debug!(%remote, %error, "tls handshake failed");
                return;
            }
            Err(_) => {
                self.stats.count_timed_out(Phase::Handshake);
                tracing::debug!(%remote, "tls handshake timed out");
                return;
            }
        };
        let peer = PeerInfo::from_tls(remote, &tls);
        // rustls verified the certificate against the director's CA: the connection leaves
        // the anonymous pool and can no longer be evicted.
        if peer.certificate.is_some() && !slot.authenticate() {
            return;
        }
        self.serve_http(tls, peer, false, slot, watcher).await;
    }

    /// Whether the connection opens with a ClientHello of TLS 1.0 or 1.1 (read without taking
    /// it; given up after the handshake timeout).
    #[cfg(feature = "legacy-tls")]
    async fn peek_legacy_hello(&self, stream: &tokio::net::TcpStream) -> bool {
        let mut head = [0u8; 11];
        let deadline = tokio::time::Instant::now() + self.settings.handshake_timeout;
        loop {
            let peeked = tokio::time::timeout_at(deadline, stream.peek(&mut head)).await;
            match peeked {
                Ok(Ok(n)) if n >= head.len() => return legacy_tls::is_legacy_hello(&head),
                // Not a handshake record: no need to wait for more.
                Ok(Ok(n)) if n > 0 && head[0] != 0x16 => return false,
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return false,
                // A ClientHello's first bytes came in several segments.
                Ok(Ok(_)) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    /// A legacy client: OpenSSL's handshake, then only the managers' cloud routes.
    #[cfg(feature = "legacy-tls")]
    async fn serve_legacy(
        &self,
        legacy: &LegacyTls,
        stream: tokio::net::TcpStream,
        remote: SocketAddr,
        slot: &admission::Slot,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let settings = &self.settings;
        let io = deadline::WriteDeadline::new(stream, settings.write_timeout, self.stats.clone());
        let tls = legacy
            .ssl()
            .and_then(|ssl| tokio_openssl::SslStream::new(ssl, io));
        let mut tls = match tls {
            Ok(tls) => tls,
            Err(error) => {
                tracing::warn!(%remote, %error, "cannot set up a TLS 1.0 handshake");
                return;
            }
        };
        let handshake = std::pin::Pin::new(&mut tls).accept();
        match tokio::time::timeout(settings.handshake_timeout, handshake).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(%remote, %error, "tls 1.0 handshake failed");
                return;
            }
            Err(_) => {
                self.stats.count_timed_out(Phase::Handshake);
                tracing::debug!(%remote, "tls 1.0 handshake timed out");
                return;
            }
        }
        tracing::debug!(%remote, "a TLS 1.0/1.1 client: the managers' cloud routes only");
        self.serve_http(tls, PeerInfo::anonymous(remote), true, slot, watcher)
            .await;
    }

    /// HTTP/1.1 over an established TLS stream, with `peer` (and, on a legacy TLS connection,
    /// the marker the router reads) in every request.
    async fn serve_http<IO>(
        &self,
        tls: IO,
        peer: PeerInfo,
        legacy: bool,
        slot: &admission::Slot,
        watcher: hyper_util::server::graceful::Watcher,
    ) where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let settings = &self.settings;
        let remote = peer.remote;
        let identity = crate::api::auth::ConnectionIdentity::of(&peer);
        let stats = self.stats.clone();
        let body_timeout = settings.request_body_timeout;
        let shared = slot.shared().clone();
        let service = self
            .router
            .clone()
            .map_request(move |mut request: hyper::Request<Incoming>| {
                let extensions = request.extensions_mut();
                extensions.insert(peer.clone());
                if legacy {
                    extensions.insert(crate::api::LegacyTlsConnection);
                }
                if let Some(identity) = &identity {
                    extensions.insert(identity.clone());
                }
                request.map(|body| deadline::DeadlineBody::new(body, body_timeout, stats.clone()))
            })
            .map_future(move |answer| {
                let busy = shared.busy();
                async move {
                    let answer = answer.await;
                    drop(busy);
                    answer
                }
            });
        let connection = self
            .http
            .serve_connection(TokioIo::new(tls), TowerToHyperService::new(service));
        if let Err(error) = watcher.watch(connection).await {
            if error.is_timeout() {
                self.stats.count_timed_out(Phase::Header);
            }
            tracing::debug!(%remote, %error, "connection ended with an error");
        }
    }
}

/// At most one `warn` line per period sums up refusals and evictions.
#[cfg(feature = "server")]
const SUMMARY_PERIOD: Duration = Duration::from_secs(10);

/// Networks remembered for a summary's top network: a flood from many networks (an IPv6
/// attacker has many /48s) must not grow it without bound.
#[cfg(feature = "server")]
const SUMMARY_NETWORKS: usize = 4096;

/// Refusals and evictions since the last summary line.
#[cfg(feature = "server")]
#[derive(Debug, Default)]
struct Summary {
    last_line: Option<tokio::time::Instant>,
    refused: std::collections::BTreeMap<&'static str, u64>,
    evicted: std::collections::BTreeMap<&'static str, u64>,
    /// Per network: its refused newcomers and its evicted connections.
    networks: std::collections::HashMap<ipnet::IpNet, u64>,
}

#[cfg(feature = "server")]
impl Summary {
    fn refused(&mut self, reason: Refusal, network: ipnet::IpNet) {
        *self.refused.entry(reason.as_str()).or_insert(0) += 1;
        self.count(network);
    }

    fn evicted(&mut self, reason: Eviction, network: ipnet::IpNet) {
        *self.evicted.entry(reason.as_str()).or_insert(0) += 1;
        self.count(network);
    }

    fn count(&mut self, network: ipnet::IpNet) {
        let known = self.networks.len() < SUMMARY_NETWORKS;
        if let Some(count) = self.networks.get_mut(&network) {
            *count += 1;
        } else if known {
            self.networks.insert(network, 1);
        }
    }

    /// Logs the counts if there are any and the last line is a period old; whether it did.
    fn log_if_due(&mut self, stats: &TransportStats) -> bool {
        if self.refused.is_empty() && self.evicted.is_empty() {
            return false;
        }
        let now = tokio::time::Instant::now();
        if self
            .last_line
            .is_some_and(|last| now.duration_since(last) < SUMMARY_PERIOD)
        {
            return false;
        }
        let words = |counts: &std::collections::BTreeMap<&'static str, u64>| {
            counts
                .iter()
                .map(|(reason, count)| format!("{reason}:{count}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let (top_network, top_count) = self
            .networks
            .iter()
            .max_by_key(|(_, count)| **count)
            .map_or((String::from("-"), 0), |(network, count)| {
                (network.to_string(), *count)
            });
        let (open_anonymous, open_authenticated) = stats.open();
        tracing::warn!(
            refused = words(&self.refused),
            evicted = words(&self.evicted),
            top_network,
            top_count,
            open_anonymous,
            open_authenticated,
            "connections refused or evicted at the connection limits since the last such line (docs/operations.md, \"Connection limits\")"
        );
        self.last_line = Some(now);
        self.refused.clear();
        self.evicted.clear();
        self.networks.clear();
        true
    }
}

#[cfg(all(test, feature = "server"))]
mod tests {
    use super::*;

    #[test]
    fn the_summary_logs_at_once_then_at_most_once_a_period() {
        let stats = TransportStats::new();
        let mut summary = Summary::default();
        assert!(!summary.log_if_due(&stats), "nothing to say");
        let network: ipnet::IpNet = "10.0.0.0/24".parse().unwrap();
        summary.refused(Refusal::Anonymous, network);
        assert!(
            summary.log_if_due(&stats),
            "the first refusal is logged at once"
        );
        summary.evicted(Eviction::Anonymous, network);
        summary.refused(Refusal::Address, network);
        assert!(!summary.log_if_due(&stats), "then kept for the next line");
        assert_eq!(summary.networks.get(&network), Some(&2));
        assert_eq!(summary.refused.get("address"), Some(&1));
        // A period later (as if): the next line carries what accumulated.
        summary.last_line = summary
            .last_line
            .and_then(|last| last.checked_sub(SUMMARY_PERIOD));
        assert!(summary.log_if_due(&stats));
        assert!(summary.refused.is_empty() && summary.networks.is_empty());
    }

    #[test]
    fn settings_from_config_follow_its_keys_and_off_lifts_a_cap() {
        let text = "[conpaas]\nCONF_DIR = /c\nCERT_DIR = /c/certs\n[iaas]\nDRIVER = dummy\n\
                    [director]\nDATABASE_URI = sqlite:////c/director.db\nMAX_CONNECTIONS = 100\n\
                    MAX_CONNECTIONS_PER_ADDRESS = off\nWRITE_TIMEOUT = 7\n";
        let loaded = crate::config::parse_str(std::path::Path::new("director.cfg"), text).unwrap();
        let settings = TransportSettings::from_config(&loaded.config);
        assert_eq!(settings.max_connections, 100);
        assert_eq!(settings.max_anonymous_connections, 50);
        assert_eq!(settings.max_connections_per_address, usize::MAX);
        assert_eq!(settings.max_connections_per_network, 256);
        assert_eq!(settings.write_timeout, Duration::from_secs(7));
        assert_eq!(settings.request_body_timeout, Duration::from_secs(30));
        let limits = settings.max_anonymous_connections(500).limits();
        assert_eq!(limits.max_anonymous, 100, "never more than the whole");
    }
}
