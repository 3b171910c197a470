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
    /// Time allowed for the TLS handshake; slow-loris peers are dropped after it.
    pub handshake_timeout: Duration,
    /// Time allowed to receive a request's headers (hyper needs a timer for this to work).
    pub header_read_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// How long in-flight requests may take to finish after shutdown was asked for.
    pub shutdown_grace: Duration,
}

#[cfg(feature = "server")]
impl TransportSettings {
    /// Settings fit for a director on the open Internet.
    pub fn recommended() -> Self {
        TransportSettings {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(30),
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
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(
        addr: SocketAddr,
        tls: Arc<ServerConfig>,
        settings: TransportSettings,
    ) -> std::io::Result<Listener> {
        let tcp = TcpListener::bind(addr).await?;
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
        let graceful = GracefulShutdown::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout);
        let http = Arc::new(http);
        tokio::pin!(shutdown);
        loop {
            // Waiting for a permit before accepting keeps the connection count bounded.
            let permit = tokio::select! {
                () = &mut shutdown => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
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
            let acceptor = acceptor.clone();
            let router = router.clone();
            let http = http.clone();
            let watcher = graceful.watcher();
            let handshake_timeout = settings.handshake_timeout;
            tokio::spawn(async move {
                let _permit = permit;
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
