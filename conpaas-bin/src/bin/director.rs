//! `director`: the ConPaaS director's command line: `init` (1.2's cpsconf.py), `adduser`
//! (cpsadduser.py) and `serve`.

// Printing results and prompts is what a command-line tool is for.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use conpaas_core::config::{self, ConfigSource, LoadedConfig};
use conpaas_core::director::{self, accounts, setup};
use conpaas_core::model::Credit;
use conpaas_core::store::Store;

/// The ConPaaS director.
#[derive(Debug, Parser)]
#[command(name = "director", version, about)]
struct Cli {
    /// director.cfg to use (default: $DIRECTOR_CFG, /etc/cpsdirector/director.cfg, ./conpaas-data).
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "data_dir")]
    config: Option<PathBuf>,
    /// Data directory holding director.cfg, certs/ and director.db; created when missing.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the CA, the director's certificate and the database; write DIRECTOR_URL (cpsconf.py).
    Init {
        /// Host name the VMs and clients reach the director at (asked when not given).
        hostname: Option<String>,
        /// Replace an existing CA (breaks every certificate issued so far).
        #[arg(long, conflicts_with = "keep_ca")]
        force: bool,
        /// Keep the existing CA: only issue a new director certificate for HOSTNAME and write
        /// DIRECTOR_URL (after a host name change, or to replace a 1.2-made certificate).
        #[arg(long)]
        keep_ca: bool,
    },
    /// Add a user (cpsadduser.py); asks for what is not given, the password hidden and twice.
    Adduser {
        /// E-mail address.
        email: Option<String>,
        /// User name.
        username: Option<String>,
        /// Password (visible to other local users in the process list; prefer the prompt).
        password: Option<String>,
        /// Initial credit.
        #[arg(long, default_value_t = accounts::ADDUSER_DEFAULT_CREDIT.0)]
        credit: i64,
    },
    /// Serve the HTTPS API (on the embedded default, set everything up first).
    Serve {
        /// Address to listen on (default: all addresses, the port of DIRECTOR_URL);
        /// port 0 picks a free port.
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<std::net::SocketAddr>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("E: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn load_config(cli: &Cli) -> anyhow::Result<(ConfigSource, LoadedConfig)> {
    let source = ConfigSource::resolve(cli.config.clone(), cli.data_dir.clone());
    let loaded = config::load(&source)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    if loaded.generated {
        eprintln!(
            "created the data directory configuration {}",
            loaded.path.display()
        );
    }
    Ok((source, loaded))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let (source, loaded) = load_config(&cli)?;
    match cli.command {
        Command::Init {
            hostname,
            force,
            keep_ca,
        } => init(&loaded, hostname, force, keep_ca),
        Command::Adduser {
            email,
            username,
            password,
            credit,
        } => adduser(&loaded, email, username, password, credit),
        Command::Serve { listen } => serve(&source, &loaded, listen),
    }
}

fn init(
    loaded: &LoadedConfig,
    hostname: Option<String>,
    force: bool,
    keep_ca: bool,
) -> anyhow::Result<ExitCode> {
    if keep_ca && !setup::ca_exists(loaded) {
        eprintln!(
            "E: --keep-ca: there is no CA in {}; run `director init HOSTNAME` first",
            loaded.config.ca.cert_dir.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    if !force && !keep_ca && setup::ca_exists(loaded) {
        eprintln!(
            "E: a CA already exists in {}; `director init --keep-ca HOSTNAME` issues a new \
             director certificate under it; `director init --force` replaces the CA, which \
             breaks every certificate issued so far (users, managers, agents)",
            loaded.config.ca.cert_dir.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let hostname = match hostname {
        Some(hostname) => hostname,
        None => {
            let default = loaded
                .config
                .director_url
                .as_ref()
                .map(|url| url.host().to_owned())
                .or_else(|| {
                    hostname::get()
                        .ok()
                        .and_then(|name| name.into_string().ok())
                })
                .unwrap_or_else(|| "localhost".to_owned());
            let answer = prompt(&format!("Your hostname [{default}]: "))?;
            if answer.is_empty() { default } else { answer }
        }
    };
    if keep_ca {
        let report = setup::reissue_director_cert(loaded, &hostname)?;
        println!(
            "issued a new director certificate for {} under the existing CA in {}",
            report.director_url.host(),
            loaded.config.ca.cert_dir.display()
        );
        println!(
            "DIRECTOR_URL = {} written to {}",
            report.director_url,
            loaded.path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let report = setup::init(loaded, &hostname, force)?;
    println!(
        "created the CA and the director certificate in {}",
        loaded.config.ca.cert_dir.display()
    );
    println!(
        "database ready ({} migration(s) applied now)",
        report.migrations.len()
    );
    println!(
        "DIRECTOR_URL = {} written to {}",
        report.director_url,
        loaded.path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn adduser(
    loaded: &LoadedConfig,
    email: Option<String>,
    username: Option<String>,
    password: Option<String>,
    credit: i64,
) -> anyhow::Result<ExitCode> {
    let email = match email {
        Some(email) => email,
        None => prompt("E-mail: ")?,
    };
    let username = match username {
        Some(username) => username,
        None => prompt("Username: ")?,
    };
    let password = match password {
        Some(password) => password,
        None => {
            let first = prompt_secret("Password: ")?;
            let second = prompt_secret("Repeat password: ")?;
            if first != second {
                eprintln!("E: the passwords differ; nothing changed");
                return Ok(ExitCode::FAILURE);
            }
            first
        }
    };
    if password.is_empty() {
        eprintln!("E: the password is empty; nothing changed");
        return Ok(ExitCode::FAILURE);
    }
    let store = Store::open(&loaded.config.store)?;
    store.migrate()?;
    let account = accounts::NewAccount {
        username,
        email,
        fname: Some(String::new()),
        lname: Some(String::new()),
        affiliation: Some(String::new()),
        password: password.into(),
        credit: Credit(credit),
    };
    match accounts::add_user_blocking(&store, account) {
        Ok(user) => {
            println!(
                "user {} created with uid {} and {} credit",
                user.username, user.uid, user.credit
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(
            error @ (director::Error::UsernameTaken(_)
            | director::Error::EmailTaken(_)
            | director::Error::UsernameReserved(_)
            | director::Error::Invalid { .. }),
        ) => {
            eprintln!("E: {error}; nothing changed");
            Ok(ExitCode::FAILURE)
        }
        Err(error) => Err(error).context("adding the user"),
    }
}

fn serve(
    source: &ConfigSource,
    loaded: &LoadedConfig,
    listen: Option<std::net::SocketAddr>,
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
        eprintln!(
            "set up a new director in {}: CA and certificate for {}, database, dummy cloud",
            loaded.config.conf_dir.display(),
            report.director_url
        );
    }
    let director = director::Director::open(loaded)?;
    let addr = match listen {
        Some(addr) => addr,
        None => {
            let port = loaded
                .config
                .director_url
                .as_ref()
                .map_or(setup::DEFAULT_PORT, |url| url.port_or_default());
            std::net::SocketAddr::from(([0, 0, 0, 0], port))
        }
    };
    let files = conpaas_core::ca::DirectorTlsFiles::read(&loaded.config.ca.cert_dir)?;
    let tls = conpaas_core::api::tls::server_config_from_files(&files)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let n_users = director
            .store()
            .run(conpaas_core::store::count_users)
            .await?;
        let listener = conpaas_core::api::server::Listener::bind(
            addr,
            tls,
            conpaas_core::api::server::TransportSettings::recommended(),
        )
        .await
        .with_context(|| format!("listening on {addr}"))?;
        let local = listener.local_addr()?;
        println!("listening on https://{local}");
        std::io::stdout().flush()?;
        if n_users == 0 {
            let how = match source {
                ConfigSource::DataDir { dir, .. } => format!(" --data-dir {}", dir.display()),
                ConfigSource::File { path, .. } => format!(" --config {}", path.display()),
                _ => String::new(),
            };
            eprintln!("no users yet: add one with `director{how} adduser EMAIL USERNAME PASSWORD`");
        }
        // Maintenance (undoing what a crash left half-done) runs beside the API: a replica
        // that died mid-start leaves rows another replica must clean.
        listener
            .serve_director(
                director,
                director::MaintenanceSettings::from_config(&loaded.config),
                shutdown_signal(),
            )
            .await;
        tracing::info!("stopped");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// Reads one line after showing `question` on stderr; works with piped input too.
fn prompt(question: &str) -> anyhow::Result<String> {
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    let n_read = std::io::stdin().lock().read_line(&mut line)?;
    if n_read == 0 {
        anyhow::bail!("no answer on standard input");
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Reads a secret without echo on a terminal; from a pipe, reads a line.
fn prompt_secret(question: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        Ok(rpassword::prompt_password(question)?)
    } else {
        prompt(question)
    }
}
