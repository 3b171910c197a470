//! `director`: the ConPaaS director's command line: `init` (1.2's cpsconf.py), `adduser`
//! (cpsadduser.py), `user` (the operator's account commands), `serve`, `backup`, `reaper`, and
//! its own `completions` and `man` page.
//! Each subcommand lives in a module of `director/`; the serving itself is the library's
//! `DirectorServer`.

// Printing results and prompts is what a command-line tool is for.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[path = "director/adduser.rs"]
mod adduser;
#[path = "director/audit.rs"]
mod audit;
#[path = "director/database.rs"]
mod database;
#[path = "director/health.rs"]
mod health;
#[path = "director/init.rs"]
mod init;
#[path = "director/prompt.rs"]
mod prompt;
#[path = "director/reaper.rs"]
mod reaper;
#[path = "director/serve.rs"]
mod serve;
#[path = "director/user.rs"]
mod user;
#[path = "director/vouch.rs"]
mod vouch;

use clap::{CommandFactory, Parser, Subcommand};
use conpaas_core::config::{self, ConfigSource, LoadedConfig};
use conpaas_core::director::accounts;
use conpaas_core::store::DatabaseUrl;

/// The ConPaaS director.
#[derive(Debug, Parser)]
#[command(
    name = "director",
    version,
    about = "The ConPaaS director: sets up its CA and database (init), adds users (adduser) and \
             manages them (user), serves the HTTPS API (serve) and backs up its database (backup)"
)]
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
    /// Users and their credit: list, show, credit, disable, enable, delete, passwd (each
    /// change recorded in the audit log).
    User {
        #[command(subcommand)]
        command: user::UserCommand,
    },
    /// Serve the HTTPS API (on the embedded default, set everything up first).
    Serve {
        // The help is a string, not a doc comment: rustdoc reads IPv6 brackets as links.
        #[arg(
            long,
            value_name = "HOST:PORT",
            help = "Address to listen on, HOST:PORT: an IP address (0.0.0.0:5555, [::]:5555, \
                    127.0.0.1:5555) or a host name, which listens on the first of its addresses \
                    that can be bound, in the resolver's order (localhost:5555: ::1 or \
                    127.0.0.1); the first line printed says which. Default: all IPv4 \
                    addresses, the port of DIRECTOR_URL. Port 0 picks a free port"
        )]
        listen: Option<serve::ListenAddr>,
        /// Log lines as text (the default) or as JSON objects, one per line (with the request
        /// span's fields: request_id, method, route, caller, remote).
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// The database is new although CERT_DIR holds a CA: record this CA's installation in
        /// an empty database instead of refusing it. VMs already running under this CA are
        /// left alone (the reaper is held) until `director reaper --confirm-restore`.
        #[arg(long)]
        new_database: bool,
    },
    /// The reaper of VMs without a service row: what a pass would terminate (--dry-run), or
    /// the operator's word after restoring the database from a backup (--confirm-restore).
    Reaper {
        /// Print each VM of this installation without a service row (cloud, VM id, service
        /// id, age, why) and what a maintenance pass would do with it; changes nothing.
        #[arg(
            long,
            conflicts_with = "confirm_restore",
            required_unless_present = "confirm_restore"
        )]
        dry_run: bool,
        /// After restoring the database: move the service id counter past every VM the clouds
        /// list and end the reaper's hold, so that the next pass of `serve` terminates the VMs
        /// without a service row (those started since the backup).
        #[arg(long)]
        confirm_restore: bool,
    },
    /// Copy the SQLite database to FILE while the director may be serving (SQLite's online
    /// copy, VACUUM INTO); FILE must not exist. For PostgreSQL, use pg_dump.
    Backup {
        /// The copy to write (created 0600: it holds password hashes).
        file: PathBuf,
    },
    /// Copy an installation's database to another (SQLite to PostgreSQL, to run several
    /// directors on one database): users, applications, services, issued certificates and
    /// the audit log, with their ids and id counters, in one transaction; the target must be
    /// empty. Stop the directors using the source first. Reads no configuration.
    MigrateDb {
        /// The database to copy, as DATABASE_URI (`sqlite:////var/lib/conpaas/director.db`).
        #[arg(long, value_name = "URL", value_parser = database::database_url)]
        from: DatabaseUrl,
        /// The database to fill, as DATABASE_URI (`postgresql://USER:PASSWORD@HOST/DB`);
        /// migrated first, and refused unless empty.
        #[arg(long, value_name = "URL", value_parser = database::database_url)]
        to: DatabaseUrl,
    },
    /// Print the audit log (logins, certificates, applications, services, credit), oldest
    /// first: one line per event, or one JSON object per line with --json.
    Audit {
        /// Only events since: an RFC 3339 time (2026-12-06T21:00:00Z), a UTC date
        /// (2026-12-06) or a time ago (90s, 30m, 12h, 7d).
        #[arg(long, value_name = "T", value_parser = audit::since)]
        since: Option<chrono::NaiveDateTime>,
        /// Only events of this user (a user name or id; a name that is no account's finds
        /// the logins tried with it).
        #[arg(long, value_name = "U")]
        user: Option<String>,
        /// Only the latest N.
        #[arg(long, value_name = "N")]
        limit: Option<i64>,
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Ask this host's director whether it is ready (GET /readyz at the port of DIRECTOR_URL,
    /// its certificate checked against CERT_DIR's CA): exit status 0 when ready, 1 otherwise.
    /// For a container's HEALTHCHECK; writes nothing.
    Health {
        /// Connect here instead of 127.0.0.1 at DIRECTOR_URL's port (the certificate is still
        /// checked for DIRECTOR_URL's host name).
        #[arg(long, value_name = "IP:PORT")]
        connect: Option<std::net::SocketAddr>,
    },
    /// Print the shell completion script for SHELL on standard output.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on standard output: `director man | man -l -`; with
    /// --dir, write it and one page per subcommand (director-init.1, ...) into DIR.
    Man {
        /// Write director.1 and director-SUBCOMMAND.1 into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// How `serve` writes its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// `LEVEL target: message key=value ...`
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = match &cli.command {
        Command::Serve { log_format, .. } => *log_format,
        _ => LogFormat::Text,
    };
    init_tracing(log_format);
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            report(&error);
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once, `E: ` before every line (a configuration report
/// has one problem per line).
fn report(error: &anyhow::Error) {
    let text = conpaas_core::error::ErrorChain(error.as_ref()).to_string();
    for line in text.lines() {
        eprintln!("E: {line}");
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        // The request span's fields beside each line's own, so that a line is whole alone.
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<(ConfigSource, LoadedConfig)> {
    let source = ConfigSource::resolve(cli.config.clone(), cli.data_dir.clone());
    let loaded = config::load(&source)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    if loaded.generated {
        tracing::info!(
            "created the data directory configuration {}",
            loaded.path.display()
        );
    }
    Ok((source, loaded))
}

/// Writes `bytes` to standard output; a reader that went away (`| head`) ends the output
/// quietly, as with other Unix tools.
fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // These describe the binary: no configuration is read (nor a data directory created).
    match &cli.command {
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics when its writer fails (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "director", &mut script);
            write_stdout(&script)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man { dir: Some(dir) } => {
            // Every page the main one's SEE ALSO names (director-init(1), ...).
            clap_mangen::generate_to(Cli::command(), dir).map_err(|error| {
                anyhow::anyhow!("writing the manual pages into {}: {error}", dir.display())
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man { dir: None } => {
            let mut page = Vec::new();
            // As `--dir` writes them: no `help` subcommand, so no page named that is missing.
            clap_mangen::Man::new(Cli::command().disable_help_subcommand(true))
                .render(&mut page)?;
            write_stdout(&page)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::MigrateDb { from, to } => return database::migrate_db(from.clone(), to.clone()),
        _ => {}
    }
    let (source, loaded) = load_config(&cli)?;
    match cli.command {
        Command::Init {
            hostname,
            force,
            keep_ca,
        } => init::init(&loaded, hostname, force, keep_ca),
        Command::Adduser {
            email,
            username,
            password,
            credit,
        } => adduser::adduser(&loaded, email, username, password, credit),
        Command::User { command } => user::run(&loaded, command),
        Command::Serve {
            listen,
            new_database,
            ..
        } => serve::serve(&source, &loaded, listen, new_database),
        Command::Reaper {
            dry_run,
            confirm_restore,
        } => reaper::reaper(&loaded, dry_run && !confirm_restore),
        Command::Backup { file } => database::backup(&loaded, &file),
        Command::Health { connect } => health::health(&loaded, connect),
        Command::Audit {
            since,
            user,
            limit,
            json,
        } => audit::run(
            &loaded,
            audit::Asked {
                since,
                user,
                limit,
                json,
            },
        ),
        Command::Completions { .. } | Command::Man { .. } | Command::MigrateDb { .. } => {
            Ok(ExitCode::SUCCESS)
        }
    }
}
