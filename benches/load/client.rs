//! The load clients: N tasks, each on a kept-alive TLS connection or a new connection (and a
//! full handshake: no session resumption, like a 1.2 manager's `httplib`) per request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::http::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Any failure of a client.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where requests go and how the client authenticates.
pub struct Target {
    /// The server's socket address.
    pub addr: SocketAddr,
    /// The name its certificate is checked against (and the `Host` header).
    pub server_name: ServerName<'static>,
    connector: TlsConnector,
    /// Loopback source addresses to spread connections over (the director limits the
    /// connections of one address); none: the system's choice.
    sources: Vec<std::net::Ipv4Addr>,
    next_source: std::sync::atomic::AtomicUsize,
}

impl Target {
    /// A target trusting only `ca_pem`, presenting `client` (certificate and key PEM) if given.
    pub fn new(
        addr: SocketAddr,
        server_name: &str,
        ca_pem: &[u8],
        client: Option<(&[u8], &[u8])>,
    ) -> Result<Target, BoxError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(ca?)?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match client {
            Some((cert_pem, key_pem)) => {
                let chain = CertificateDer::pem_slice_iter(cert_pem).collect::<Result<_, _>>()?;
                builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(key_pem)?)?
            }
            None => builder.with_no_client_auth(),
        };
        // Every new connection is a full handshake, as for the 1.2 managers and ab.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Target {
            addr,
            server_name: ServerName::try_from(server_name.to_owned())?,
            connector: TlsConnector::from(Arc::new(config)),
            sources: Vec::new(),
            next_source: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// This target with its connections spread over `n` loopback source addresses
    /// (127.0.0.1, 127.0.0.2, ...), as `n` clients would come.
    pub fn with_sources(mut self, n: u8) -> Target {
        self.sources = (1..=n.max(1))
            .map(|last| std::net::Ipv4Addr::new(127, 0, 0, last))
            .collect();
        self
    }

    /// A new HTTP/1.1 connection over TLS.
    pub async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, BoxError> {
        let tcp = if self.sources.is_empty() {
            TcpStream::connect(self.addr).await?
        } else {
            let n = self.next_source.fetch_add(1, Ordering::Relaxed);
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((self.sources[n % self.sources.len()], 0)))?;
            socket.connect(self.addr).await?
        };
        tcp.set_nodelay(true)?;
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    fn host(&self) -> String {
        match &self.server_name {
            ServerName::DnsName(name) => format!("{}:{}", name.as_ref(), self.addr.port()),
            _ => self.addr.to_string(),
        }
    }
}

/// How a client uses connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One connection per client, kept alive.
    KeepAlive,
    /// A new connection, with a full handshake, for every request (`Connection: close`).
    NewConnection,
}

/// One kind of request and how to tell a good answer.
pub struct Job {
    /// The method.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// A form body (`application/x-www-form-urlencoded`), or empty.
    pub form: Bytes,
    /// Whether an answer counts as a success.
    pub check: fn(StatusCode, &[u8]) -> bool,
}

impl Job {
    /// A request of this job to `target`.
    fn request(&self, target: &Target, mode: Mode) -> Result<Request<Full<Bytes>>, BoxError> {
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str())
            .header(header::HOST, target.host());
        if !self.form.is_empty() {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        if mode == Mode::NewConnection {
            request = request.header(header::CONNECTION, "close");
        }
        Ok(request.body(Full::new(self.form.clone()))?)
    }
}

/// A 200 whose body is not 1.2's refusal `false`.
pub fn accepted(status: StatusCode, body: &[u8]) -> bool {
    status == StatusCode::OK && body != b"false"
}

/// How long a run lasts.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// Until this long has passed.
    For(Duration),
    /// This many requests in all.
    Requests(u64),
}

/// What a run measured.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Answers that passed the job's check.
    pub ok: u64,
    /// Transport failures and answers that failed the check.
    pub errors: u64,
    /// The first error, for the report.
    pub first_error: Option<String>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Latency of every request, µs, sorted.
    pub latencies_us: Vec<u32>,
    /// Bodies of the successful answers, when asked for.
    pub bodies: Vec<Bytes>,
    /// CPU time the server spent per request, µs, when measured.
    pub server_cpu_us: Option<f64>,
}

impl Outcome {
    /// Requests answered per second (successes and failures).
    pub fn rate(&self) -> f64 {
        (self.ok + self.errors) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Runs made at the same time, as one.
    pub fn merge(runs: Vec<Outcome>) -> Outcome {
        let mut all = Outcome::default();
        for run in runs {
            all.ok += run.ok;
            all.errors += run.errors;
            all.first_error = all.first_error.or(run.first_error);
            all.elapsed = all.elapsed.max(run.elapsed);
            all.latencies_us.extend(run.latencies_us);
            all.bodies.extend(run.bodies);
        }
        all.latencies_us.sort_unstable();
        all
    }

    /// The `p`-quantile of the latency (0.5, 0.99), ms.
    pub fn quantile_ms(&self, p: f64) -> f64 {
        quantile_us(&self.latencies_us, p) / 1000.0
    }
}

/// The `p`-quantile of sorted µs values, nearest rank.
pub fn quantile_us(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1])
}

/// Runs `concurrency` clients sending `job` to `target` until `limit`.
pub async fn run(
    target: Arc<Target>,
    job: Arc<Job>,
    mode: Mode,
    concurrency: usize,
    limit: Limit,
    keep_bodies: bool,
) -> Outcome {
    let budget = Arc::new(AtomicI64::new(match limit {
        Limit::Requests(n) => i64::try_from(n).unwrap_or(i64::MAX),
        Limit::For(_) => i64::MAX,
    }));
    let started = Instant::now();
    let deadline = match limit {
        Limit::For(duration) => Some(started + duration),
        Limit::Requests(_) => None,
    };
    let clients: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (target, job, budget) = (target.clone(), job.clone(), budget.clone());
            tokio::spawn(client(target, job, mode, budget, deadline, keep_bodies))
        })
        .collect();
    let mut outcome = Outcome::default();
    for client in clients {
        let Ok(mine) = client.await else {
            outcome.errors += 1;
            continue;
        };
        outcome.ok += mine.ok;
        outcome.errors += mine.errors;
        outcome.first_error = outcome.first_error.or(mine.first_error);
        outcome.latencies_us.extend(mine.latencies_us);
        outcome.bodies.extend(mine.bodies);
    }
    outcome.elapsed = started.elapsed();
    outcome.latencies_us.sort_unstable();
    outcome
}

async fn client(
    target: Arc<Target>,
    job: Arc<Job>,
    mode: Mode,
    budget: Arc<AtomicI64>,
    deadline: Option<Instant>,
    keep_bodies: bool,
) -> Outcome {
    let mut mine = Outcome::default();
    let mut connection: Option<SendRequest<Full<Bytes>>> = None;
    loop {
        if deadline.is_some_and(|deadline| Instant::now() >= deadline)
            || budget.fetch_sub(1, Ordering::Relaxed) <= 0
        {
            break;
        }
        let started = Instant::now();
        let answer = exchange(&target, &job, mode, &mut connection).await;
        let took = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        mine.latencies_us.push(took);
        match answer {
            Ok((status, body)) if (job.check)(status, &body) => {
                mine.ok += 1;
                if keep_bodies {
                    mine.bodies.push(body);
                }
            }
            Ok((status, body)) => {
                mine.errors += 1;
                mine.first_error.get_or_insert_with(|| {
                    format!(
                        "{status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    )
                });
            }
            Err(error) => {
                mine.errors += 1;
                connection = None;
                mine.first_error.get_or_insert_with(|| error.to_string());
            }
        }
        if mode == Mode::NewConnection {
            connection = None;
        }
    }
    mine
}

async fn exchange(
    target: &Target,
    job: &Job,
    mode: Mode,
    connection: &mut Option<SendRequest<Full<Bytes>>>,
) -> Result<(StatusCode, Bytes), BoxError> {
    if connection.as_ref().is_none_or(SendRequest::is_closed) {
        *connection = Some(target.connect().await?);
    }
    let Some(sender) = connection.as_mut() else {
        return Err("no connection".into());
    };
    sender.ready().await?;
    let answer = sender.send_request(job.request(target, mode)?).await?;
    let status = answer.status();
    let body = answer.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Opens `n` kept-alive connections (`parallel` at a time), each sending `job` once; answers
/// the open connections and the number that failed.
pub async fn open_connections(
    target: Arc<Target>,
    job: Arc<Job>,
    n: usize,
    parallel: usize,
) -> (Vec<SendRequest<Full<Bytes>>>, u64) {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (target, job, semaphore) = (target.clone(), job.clone(), semaphore.clone());
            tokio::spawn(async move {
                let _permit = semaphore.acquire_owned().await.ok()?;
                let mut connection = None;
                match exchange(&target, &job, Mode::KeepAlive, &mut connection).await {
                    Ok((status, body)) if (job.check)(status, &body) => connection,
                    _ => None,
                }
            })
        })
        .collect();
    let mut open = Vec::with_capacity(n);
    let mut failed = 0;
    for task in tasks {
        match task.await {
            Ok(Some(connection)) => open.push(connection),
            _ => failed += 1,
        }
    }
    (open, failed)
}

/// Sends `job` once more on every connection of `open`; answers how many failed.
pub async fn use_connections(
    target: Arc<Target>,
    job: Arc<Job>,
    open: Vec<SendRequest<Full<Bytes>>>,
) -> (Vec<SendRequest<Full<Bytes>>>, u64) {
    let tasks: Vec<_> = open
        .into_iter()
        .map(|connection| {
            let (target, job) = (target.clone(), job.clone());
            tokio::spawn(async move {
                if connection.is_closed() {
                    return (None, false);
                }
                let mut connection = Some(connection);
                let ok = matches!(
                    exchange(&target, &job, Mode::KeepAlive, &mut connection).await,
                    Ok((status, body)) if (job.check)(status, &body)
                );
                (connection, ok)
            })
        })
        .collect();
    let mut kept = Vec::new();
    let mut failed = 0;
    for task in tasks {
        match task.await {
            Ok((Some(connection), true)) => kept.push(connection),
            _ => failed += 1,
        }
    }
    (kept, failed)
}
