//! `director serve`: the data directory set up on first use, the database vouched for, then
//! the library's `DirectorServer` on the `--listen` address, SIGHUP reloading its certificate
//! and SIGINT or SIGTERM stopping it.

use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use conpaas_core::api::server::{DirectorServerBuilder, ReloadHandle, ServeError};
use conpaas_core::config::{ConfigSource, DataDirOrigin, LoadedConfig};
use conpaas_core::director::{self, setup};

use super::vouch::vouch;

/// `--listen`'s value: a host (an IP address or a name, resolved when serving) and a port.
#[derive(Debug, Clone)]
pub(super) struct ListenAddr {
    host: String,
    port: u16,
}

impl std::str::FromStr for ListenAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<ListenAddr, String> {
        const EXPECTED: &str =
            "expected HOST:PORT, e.g. 127.0.0.1:5555, [::1]:5555, 0.0.0.0:5555 or localhost:5555";
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(ListenAddr {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(format!("{EXPECTED} (no port)"));
        };
        let Ok(port) = port.parse::<u16>() else {
            return Err(format!(
                "{EXPECTED} (the port {port:?} is not a number up to 65535)"
            ));
        };
        if host.is_empty() {
            return Err(format!("{EXPECTED} (no host)"));
        }
        if host.contains([':', '[', ']', '/']) || host.chars().any(char::is_whitespace) {
            return Err(format!(
                "{EXPECTED} ({host:?} is neither an IP address nor a host name; an IPv6 address \
                 goes in brackets)"
            ));
        }
        Ok(ListenAddr {
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Refuses 1.2's own director certificate (X.509 v1), which rustls cannot use as the
/// director's identity, saying what to do, rather than failing after the database was migrated
/// with rustls's `UnsupportedCertVersion`. Other problems of the file are left to the TLS set-up,
/// which names them.
fn refuse_a_1_2_certificate(loaded: &LoadedConfig) -> Option<ExitCode> {
    let path = loaded.config.ca.cert_dir.join(conpaas_core::ca::CERT_FILE);
    let info = conpaas_core::ca::CertInfo::parse(&std::fs::read(&path).ok()?).ok()?;
    if info.x509_version != 1 {
        return None;
    }
    let host = loaded
        .config
        .director_url
        .as_ref()
        .map_or("HOSTNAME", |url| url.host());
    eprintln!(
        "E: {} is an X.509 v1 certificate, as ConPaaS 1.2 made them, which the director's TLS \
         (rustls) cannot use: run `director init --keep-ca {host}` first, which issues a new \
         director certificate under the same CA (docs/operations.md, \"Adopting a 1.2 \
         installation\"); nothing was changed",
        path.display()
    );
    Some(ExitCode::FAILURE)
}

pub(super) fn serve(
    source: &ConfigSource,
    loaded: &LoadedConfig,
    listen: Option<ListenAddr>,
    new_database: bool,
) -> anyhow::Result<ExitCode> {
    // A data directory (the embedded default or --data-dir) is set up on first use; an
    // operator's own director.cfg is never acted on without `init`.
    let data_dir = match source {
        ConfigSource::DataDir { dir, .. } => Some(dir.clone()),
        _ => None,
    };
    if !setup::ca_exists(loaded) {
        if data_dir.is_none() {
            eprintln!(
                "E: no CA in {}: run `director init HOSTNAME` first",
                loaded.config.ca.cert_dir.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        let hostname = loaded
            .config
            .director_url
            .as_ref()
            .map_or("localhost", |url| url.host())
            .to_owned();
        let report = setup::init(loaded, &hostname, false)?;
        // Through the log, so that `--log-format json` keeps standard error all JSON.
        tracing::info!(
            "set up a new director in {}: CA and certificate for {}, database, dummy cloud",
            loaded.config.conf_dir.display(),
            report.director_url
        );
    } else if let Some(refused) = refuse_a_1_2_certificate(loaded) {
        // Before the database is vouched for, which migrates a 1.2 one.
        return Ok(refused);
    } else if let Some(refused) = vouch(loaded, new_database)? {
        // Before anything else opens the database: a missing file is not created.
        return Ok(refused);
    }
    let director = director::Director::open(loaded)?;
    // The embedded default (no --config, --data-dir or DIRECTOR_CFG: someone trying it out)
    // serves this host only unless told otherwise; an installation serves every address.
    let embedded = matches!(
        source,
        ConfigSource::DataDir {
            origin: DataDirOrigin::Embedded,
            ..
        }
    );
    let listen_is_default = listen.is_none();
    let (addrs, asked) = match listen {
        Some(listen) => (resolve(&listen)?, listen.to_string()),
        None => {
            let port = loaded
                .config
                .director_url
                .as_ref()
                .map_or(setup::DEFAULT_PORT, |url| url.port_or_default());
            let ip = if embedded {
                std::net::Ipv4Addr::LOCALHOST
            } else {
                std::net::Ipv4Addr::UNSPECIFIED
            };
            let addr = SocketAddr::from((ip, port));
            (vec![addr], addr.to_string())
        }
    };
    let server = DirectorServerBuilder::from_config_with(loaded, director)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Before the first connection: from now on SIGHUP reloads instead of ending the process.
        #[cfg(unix)]
        {
            let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
            if let Some(reload) = server.reload_handle() {
                tokio::spawn(reload_on_each(reload, hangups));
            }
        }
        let server = match server.bind(&addrs).await {
            Ok(server) => server,
            // Named as the operator wrote it (`--listen localhost:5555`), then each address.
            Err(ServeError::Bind { failures }) => {
                let failures: Vec<String> = failures
                    .iter()
                    .map(|(addr, error)| format!("{addr}: {error}"))
                    .collect();
                anyhow::bail!("cannot listen on {asked}: {}", failures.join("; "));
            }
            Err(error) => return Err(error.into()),
        };
        let n_users = server
            .director()
            .store()
            .run(conpaas_core::store::count_users)
            .await?;
        // Installed before the line that tells the world the server is up.
        let shutdown = shutdown_signal();
        println!("listening on https://{}", server.local_addr());
        std::io::stdout().flush()?;
        // systemd (`Type=notify`): units ordered after this one start once it listens. A
        // failure to tell (no NOTIFY_SOCKET: not under systemd) changes nothing.
        let _ = sd_notify::notify(
            false,
            &[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status(&format!(
                    "listening on https://{}",
                    server.local_addr()
                )),
            ],
        );
        if n_users == 0 {
            let how = match source {
                ConfigSource::DataDir { dir, .. } => format!(" --data-dir {}", dir.display()),
                ConfigSource::File { path, .. } => format!(" --config {}", path.display()),
                _ => String::new(),
            };
            tracing::info!(
                "no users yet: add one with `{}{how} adduser EMAIL USERNAME PASSWORD`",
                invocation()
            );
        }
        if embedded && listen_is_default {
            tracing::info!(
                "serving this host only: try `curl --cacert {} https://localhost:{}/version`; \
                 to serve other hosts, `serve --listen 0.0.0.0:{}`",
                loaded.config.ca.cert_dir.join("ca_cert.pem").display(),
                server.local_addr().port(),
                server.local_addr().port(),
            );
        }
        server
            .serve(async move {
                shutdown.await;
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
            })
            .await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// What SIGHUP does: reloads the TLS certificate and key from `CERT_DIR` for new connections
/// (the library logs the outcome and what changed but cannot change while serving).
#[cfg(unix)]
async fn reload_on_each(reload: ReloadHandle, mut hangups: tokio::signal::unix::Signal) {
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the TLS certificate and key");
        // Logged and audited by `reload_tls`; a refusal keeps the certificate in use.
        let _ = reload.reload_tls();
    }
}

/// How to run this binary again: `director` when that is what the shell finds on PATH, else
/// its path (`./target/release/director` for a cargo user, as the README runs it).
fn invocation() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "director".to_owned();
    };
    let exe = exe.canonicalize().unwrap_or(exe);
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            dir.join("director")
                .canonicalize()
                .is_ok_and(|found| found == exe)
        })
    });
    if on_path {
        return "director".to_owned();
    }
    match std::env::current_dir()
        .ok()
        .and_then(|cwd| exe.strip_prefix(cwd).ok().map(Path::to_path_buf))
    {
        Some(relative) => format!("./{}", relative.display()),
        None => exe.display().to_string(),
    }
}

/// The addresses `--listen` names, in the resolver's order.
fn resolve(listen: &ListenAddr) -> anyhow::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (listen.host.as_str(), listen.port)
        .to_socket_addrs()
        .with_context(|| format!("--listen {listen}: cannot resolve {:?}", listen.host))?
        .collect();
    if addrs.is_empty() {
        anyhow::bail!(
            "--listen {listen}: {:?} resolves to no address",
            listen.host
        );
    }
    Ok(addrs)
}

/// Completes on SIGINT or SIGTERM. The handlers are installed here, when it is called (not
/// when first polled): a SIGTERM sent as soon as "listening on" is printed must stop the
/// server cleanly rather than kill it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    // `ctrl_c` installs its handler on first poll; polling it once here installs it now.
    let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
    let _ = futures_poll_once(ctrl_c.as_mut());
    async move {
        #[cfg(unix)]
        {
            match term {
                Some(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => {}
                        _ = term.recv() => {}
                    }
                }
                None => {
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
    }
}

/// Polls `future` once with a waker that does nothing.
fn futures_poll_once<F: std::future::Future>(
    future: std::pin::Pin<&mut F>,
) -> std::task::Poll<F::Output> {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    future.poll(&mut context)
}
