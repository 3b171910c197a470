//! The TLS accept loop: TCP -> rustls handshake (client certificate optional) -> hyper HTTP/1.1,
//! with the peer's verified certificate attached to every request it sends. Without the
//! `server` feature only [`PeerInfo`] is here, which an embedder's own transport provides.

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
use tokio::sync::Semaphore;
#[cfg(feature = "server")]
use tokio_rustls::TlsAcceptor;
#[cfg(feature = "server")]
use tower::ServiceExt;

/// Limits of the transport: every one bounds a resource an anonymous peer could hold.
#[derive(Debug, Clone)]
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
    /// Connections served at once. Past it a new connection is closed at once, rather than
    /// left to wait behind idle ones; the listen backlog is this size too.
    pub max_connections: usize,
    /// Connections served at once for one peer: an IPv4 address, or an IPv6 /64 (one
    /// site's addresses). Past it the peer's new connections are closed at once.
    pub max_connections_per_address: usize,
    /// How long in-flight requests may take to finish after shutdown was asked for.
    pub shutdown_grace: Duration,
}

#[cfg(feature = "server")]
impl TransportSettings {
    /// Settings fit for a director on the open Internet.
    pub fn recommended() -> Self {
        TransportSettings {
            first_byte_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(15),
            max_connections: 1024,
            // A PHP frontend (one connection per request, as many at once as Apache has
            // workers), or a class behind one NAT, is one address: a quarter of the whole.
            max_connections_per_address: 256,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Who counts as one peer for [`TransportSettings::max_connections_per_address`]: an IPv4
/// address (also when mapped into IPv6), or the /64 of an IPv6 address.
#[cfg(feature = "server")]
fn peer_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V4(v4) => std::net::IpAddr::V4(v4),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                std::net::IpAddr::V6(std::net::Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}

/// Connections open per peer ([`peer_key`]).
#[cfg(feature = "server")]
#[derive(Default)]
struct PerPeer {
    open: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One connection of a peer, counted until dropped.
#[cfg(feature = "server")]
struct PeerSlot {
    counts: Arc<PerPeer>,
    key: std::net::IpAddr,
}

#[cfg(feature = "server")]
impl PerPeer {
    /// A slot for a connection of `ip`, unless it has `limit` open already.
    fn admit(counts: &Arc<PerPeer>, ip: std::net::IpAddr, limit: usize) -> Option<PeerSlot> {
        let key = peer_key(ip);
        let mut open = counts
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(key).or_insert(0);
        if *n >= limit.max(1) {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            counts: counts.clone(),
            key,
        })
    }
}

#[cfg(feature = "server")]
impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self
            .counts
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// What the transport knows about the peer of a request, put in the request's extensions
/// (the contract is on [`router`](crate::api::router)).
#[derive(Debug, Clone)]
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
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Serves `director`'s 1.2 API ([`router`](crate::api::router)) and runs its maintenance
    /// ([`Director::run_maintenance_with`](crate::director::Director::run_maintenance_with)) beside it,
    /// until `shutdown` completes: what `director serve` does once set up.
    pub async fn serve_director(
        self,
        director: crate::director::Director,
        maintenance: crate::director::MaintenanceSettings,
        shutdown: impl Future<Output = ()>,
    ) {
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
        } = self;
        let permits = Arc::new(Semaphore::new(settings.max_connections.max(1)));
        let per_peer = Arc::new(PerPeer::default());
        let graceful = GracefulShutdown::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout);
        let http = Arc::new(http);
        tokio::pin!(shutdown);
        loop {
            let (stream, remote) = tokio::select! {
                () = &mut shutdown => break,
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
            // Past a limit the connection is closed at once: queued, it would wait behind the
            // idle connections that hold the places.
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::debug!(%remote, "connection closed: the director serves its maximum");
                continue;
            };
            let Some(slot) =
                PerPeer::admit(&per_peer, remote.ip(), settings.max_connections_per_address)
            else {
                tracing::debug!(%remote, "connection closed: its address has its maximum open");
                continue;
            };
            let acceptor = acceptor.clone();
            let router = router.clone();
            let http = http.clone();
            let watcher = graceful.watcher();
            let handshake_timeout = settings.handshake_timeout;
            let first_byte_timeout = settings.first_byte_timeout;
            tokio::spawn(async move {
                let (_permit, _slot) = (permit, slot);
                // `peek` waits for a byte without taking it (readiness alone can be spurious).
                let mut first = [0u8; 1];
                if !matches!(
                    tokio::time::timeout(first_byte_timeout, stream.peek(&mut first)).await,
                    Ok(Ok(1..))
                ) {
                    tracing::debug!(%remote, "connection closed: nothing sent");
                    return;
                }
                let tls =
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(error)) => {
                            tracing::debug!(%remote, %error, "tls handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "tls handshake timed out");
                            return;
                        }
                    };
                let peer = PeerInfo::from_tls(remote, &tls);
                let identity = crate::api::auth::ConnectionIdentity::of(&peer);
                let service = router.map_request(move |mut request: hyper::Request<Incoming>| {
                    let extensions = request.extensions_mut();
                    extensions.insert(peer.clone());
                    if let Some(identity) = &identity {
                        extensions.insert(identity.clone());
                    }
                    request
                });
                let connection =
                    http.serve_connection(TokioIo::new(tls), TowerToHyperService::new(service));
                if let Err(error) = watcher.watch(connection).await {
                    tracing::debug!(%remote, %error, "connection ended with an error");
                }
            });
        }
        drop(tcp);
        if tokio::time::timeout(settings.shutdown_grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace period over; dropping remaining connections");
        }
    }
}
