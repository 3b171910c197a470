//! `director`: the ConPaaS director's command line: `init` (1.2's cpsconf.py), `adduser`
//! (cpsadduser.py), `serve`, `backup`, `reaper`, and its own `completions` and `man` page.

// Printing results and prompts is what a command-line tool is for.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[path = "director/audit.rs"]
mod audit;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use conpaas_core::config::{self, ConfigSource, LoadedConfig};
use conpaas_core::director::audit::{AuditOutcome, Event};
use conpaas_core::director::{self, accounts, setup};
use conpaas_core::model::Credit;
use conpaas_core::store::{self, DatabaseUrl, Store};

/// How many times `adduser` asks for the password twice before giving up.
const PASSWORD_ATTEMPTS: usize = 3;

/// The ConPaaS director.
#[derive(Debug, Parser)]
#[command(
    name = "director",
    version,
    about = "The ConPaaS director: sets up its CA and database (init), adds users (adduser), \
             serves the HTTPS API (serve) and backs up its database (backup)"
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
        listen: Option<ListenAddr>,
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
        #[arg(long, value_name = "URL", value_parser = database_url)]
        from: DatabaseUrl,
        /// The database to fill, as DATABASE_URI (`postgresql://USER:PASSWORD@HOST/DB`);
        /// migrated first, and refused unless empty.
        #[arg(long, value_name = "URL", value_parser = database_url)]
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
    /// Print the shell completion script for SHELL on standard output.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on standard output: `director man | man -l -`.
    Man,
}

/// How `serve` writes its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// `LEVEL target: message key=value ...`
    Text,
    /// One JSON object per line.
    Json,
}

/// `--listen`'s value: a host (an IP address or a name, resolved when serving) and a port.
#[derive(Debug, Clone)]
struct ListenAddr {
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

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // These describe the binary: no configuration is read (nor a data directory created).
    match &cli.command {
        Command::Completions { shell } => {
            let mut stdout = std::io::stdout().lock();
            clap_complete::generate(*shell, &mut Cli::command(), "director", &mut stdout);
            stdout.flush()?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man => {
            let mut stdout = std::io::stdout().lock();
            clap_mangen::Man::new(Cli::command()).render(&mut stdout)?;
            stdout.flush()?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::MigrateDb { from, to } => return migrate_db(from.clone(), to.clone()),
        _ => {}
    }
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
        Command::Serve {
            listen,
            new_database,
            ..
        } => serve(&source, &loaded, listen, new_database),
        Command::Reaper {
            dry_run,
            confirm_restore,
        } => reaper(&loaded, dry_run && !confirm_restore),
        Command::Backup { file } => backup(&loaded, &file),
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
        Command::Completions { .. } | Command::Man | Command::MigrateDb { .. } => {
            Ok(ExitCode::SUCCESS)
        }
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
    match report.migrations.len() {
        0 => println!("database ready (up to date: no migration to apply)"),
        n_applied => println!("database ready ({n_applied} migration(s) applied now)"),
    }
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
    let store = Store::open(&loaded.config.store)?;
    // Before the passwords: a name that cannot be had is said before they are typed.
    match accounts::check_new_user_blocking(&store, &username, &email) {
        Ok(()) => {}
        Err(error) if is_refusal(&error) => {
            eprintln!("E: {error}; nothing changed");
            return Ok(ExitCode::FAILURE);
        }
        Err(error) => return Err(error).context("checking the user name"),
    }
    let password = match password {
        Some(password) => password,
        None => match ask_new_password()? {
            Some(password) => password,
            None => {
                eprintln!(
                    "E: no password after {PASSWORD_ATTEMPTS} attempts (empty, or the two \
                     differed); nothing changed"
                );
                return Ok(ExitCode::FAILURE);
            }
        },
    };
    if password.is_empty() {
        eprintln!("E: the password is empty; nothing changed");
        return Ok(ExitCode::FAILURE);
    }
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
        Err(error) if is_refusal(&error) => {
            eprintln!("E: {error}; nothing changed");
            Ok(ExitCode::FAILURE)
        }
        Err(error) => Err(error).context("adding the user"),
    }
}

/// Whether `adduser` was refused the account (as opposed to failing).
fn is_refusal(error: &director::Error) -> bool {
    matches!(
        error,
        director::Error::UsernameTaken(_)
            | director::Error::EmailTaken(_)
            | director::Error::UsernameReserved(_)
            | director::Error::Invalid { .. }
    )
}

/// The new password, typed twice; asks again (up to [`PASSWORD_ATTEMPTS`] times) when the two
/// differ or it is empty. `None` when no attempt gave one.
fn ask_new_password() -> anyhow::Result<Option<String>> {
    for attempt in 1..=PASSWORD_ATTEMPTS {
        let first = prompt_secret("Password: ")?;
        if first.is_empty() {
            eprintln!("the password is empty ({attempt} of {PASSWORD_ATTEMPTS})");
            continue;
        }
        let second = prompt_secret("Repeat password: ")?;
        if first == second {
            return Ok(Some(first));
        }
        eprintln!("the passwords differ ({attempt} of {PASSWORD_ATTEMPTS})");
    }
    Ok(None)
}

/// `director backup FILE`: SQLite's online copy; PostgreSQL is pg_dump's job.
/// `--from`/`--to`: a DATABASE_URI (never echoed: it may hold a password).
fn database_url(text: &str) -> Result<DatabaseUrl, String> {
    match text.parse() {
        Ok(DatabaseUrl::SqliteMemory) => Err("an in-memory database holds nothing to copy".into()),
        Ok(url) => Ok(url),
        Err(error) => Err(error.to_string()),
    }
}

/// How a database is named in messages (no password).
fn describe_database(url: &DatabaseUrl) -> String {
    match url {
        DatabaseUrl::Sqlite(path) => format!("the SQLite database {}", path.display()),
        _ => "the PostgreSQL database".to_owned(),
    }
}

fn migrate_db(from: DatabaseUrl, to: DatabaseUrl) -> anyhow::Result<ExitCode> {
    if from == to {
        eprintln!("E: --from and --to are the same database");
        return Ok(ExitCode::from(2));
    }
    // Opening a missing SQLite file would create an empty database to copy from.
    if let DatabaseUrl::Sqlite(path) = &from
        && !path.is_file()
    {
        eprintln!(
            "E: there is no database at {}; nothing copied",
            path.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let settings = |url: DatabaseUrl| conpaas_core::store::StoreSettings {
        url,
        max_connections: 2,
    };
    let (from_name, to_name) = (describe_database(&from), describe_database(&to));
    // The source is only read: a 1.2 database not yet migrated is refused, not rebuilt.
    let source = Store::connect(&settings(from))?;
    let pending = source.pending_migrations()?;
    if !pending.is_empty() {
        eprintln!(
            "E: {from_name} is not up to date ({} migration(s) pending): start a director on it              once (after a backup: `director backup FILE`), then copy it; nothing copied",
            pending.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    let target = Store::open(&settings(to))?;
    match store::copy_database(&source, &target) {
        Ok(report) => {
            println!("copied {from_name} to {to_name}: {report} (read back from the target)");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("E: {}", conpaas_core::model::ErrorChain(&error));
            Ok(ExitCode::FAILURE)
        }
    }
}

fn backup(loaded: &LoadedConfig, file: &Path) -> anyhow::Result<ExitCode> {
    let database = match &loaded.config.store.url {
        DatabaseUrl::Sqlite(path) => path.clone(),
        DatabaseUrl::Postgres(_) => {
            eprintln!(
                "E: DATABASE_URI in {} is a PostgreSQL database: back it up with pg_dump \
                 (e.g. pg_dump -Fc -f FILE DATABASE); nothing copied",
                loaded.path.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        _ => {
            eprintln!("E: the database is in memory: there is nothing to back up");
            return Ok(ExitCode::FAILURE);
        }
    };
    // Opening a missing SQLite file would create an empty database: a backup creates nothing.
    if !database.is_file() {
        eprintln!(
            "E: there is no database at {} (DATABASE_URI in {}); nothing copied",
            database.display(),
            loaded.path.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    // Not migrated: a backup is what one takes before an upgrade migrates the database.
    let store = Store::connect(&loaded.config.store)?;
    let dest = file.to_owned();
    match store.run_blocking(move |conn| store::backup_sqlite(conn, &dest)) {
        Ok(()) => {
            println!(
                "copied the database {} to {}",
                database.display(),
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error @ store::Error::BackupExists { .. }) => {
            eprintln!("E: {error}");
            Ok(ExitCode::FAILURE)
        }
        Err(error) => Err(error).with_context(|| format!("backing up to {}", file.display())),
    }
}

/// Refuses a database that cannot vouch for the clouds ([`setup::vouch_for_database`]): one
/// empty beside an existing CA (unless `new_database`), or another installation's.
fn vouch(loaded: &LoadedConfig, new_database: bool) -> anyhow::Result<Option<ExitCode>> {
    match setup::vouch_for_database(loaded, new_database) {
        Ok(setup::Vouched::Adopted) => {
            tracing::info!(
                "{} has no installation record (an earlier version's): recorded this CA's",
                setup::database_name(loaded)
            );
            Ok(None)
        }
        Ok(setup::Vouched::New) => {
            tracing::warn!(
                "{} declared new (--new-database): recorded this CA's installation; VMs already \
                 running under this CA are left alone until `director reaper --confirm-restore`",
                setup::database_name(loaded)
            );
            Ok(None)
        }
        Ok(_) => Ok(None),
        Err(
            error @ (director::Error::EmptyDatabase { .. }
            | director::Error::ForeignDatabase { .. }),
        ) => {
            eprintln!("E: {error}");
            Ok(Some(ExitCode::FAILURE))
        }
        Err(error) => Err(error.into()),
    }
}

/// `director reaper --dry-run | --confirm-restore`.
fn reaper(loaded: &LoadedConfig, dry_run: bool) -> anyhow::Result<ExitCode> {
    if !setup::ca_exists(loaded) {
        eprintln!(
            "E: no CA in {}: there is no installation, hence no VM of it",
            loaded.config.ca.cert_dir.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    if let Some(refused) = vouch(loaded, false)? {
        return Ok(refused);
    }
    let director = director::DirectorBuilder::from_config(loaded)?
        .key_pool(0)
        .build()?;
    let mode = loaded.config.reaper;
    let grace = loaded.config.reap_grace;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        if dry_run {
            let report = director.reap_dry_run(grace).await?;
            print_dry_run(&report, mode, grace);
            return anyhow::Ok(ExitCode::SUCCESS);
        }
        let confirmed = match director.confirm_restore().await {
            Ok(confirmed) => confirmed,
            Err(error @ director::Error::CloudsUnlisted(_)) => {
                eprintln!("E: {error}");
                return Ok(ExitCode::FAILURE);
            }
            Err(error) => return Err(error.into()),
        };
        director.flush_audit().await?;
        match &confirmed.hold {
            Some(hold) => println!(
                "the reaper's hold is over (held since {} UTC: a VM of service {} was listed, \
                 the database had given service ids up to {})",
                hold.since.format("%Y-%m-%d %H:%M:%S"),
                hold.listed_sid,
                hold.allocated_sid
            ),
            None => println!("the reaper was not held"),
        }
        println!(
            "{} VM(s) of this installation listed; service ids given: up to {} before, up to {} \
             now (new services get higher ones)",
            confirmed.listed, confirmed.allocated_before, confirmed.allocated_after
        );
        match mode {
            director::ReaperMode::On => println!(
                "the next maintenance pass of `director serve` terminates the VMs without a \
                 service row older than REAP_GRACE ({} s): see `director reaper --dry-run`",
                grace.as_secs()
            ),
            other => println!(
                "REAPER = {other}: VMs without a service row are not terminated (see `director \
                 reaper --dry-run`)"
            ),
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The dry run's table: one line per VM without a service row, and what a pass would do.
fn print_dry_run(
    report: &director::ReapReport,
    mode: director::ReaperMode,
    grace: std::time::Duration,
) {
    let held = report.hold.is_some() || report.database_behind;
    println!(
        "REAPER = {mode}, REAP_GRACE = {} s: {} VM(s) of this installation listed, {} without a \
         service row; service ids given up to {}",
        grace.as_secs(),
        report.listed,
        report.withheld.len(),
        report
            .highest_allocated_sid
            .map_or_else(|| "0".to_owned(), |sid| sid.to_string())
    );
    if let Some(hold) = &report.hold {
        println!(
            "the reaper is held since {} UTC: a VM of service {} was listed, the database had \
             given service ids up to {} (a restored backup?); it terminates nothing until \
             `director reaper --confirm-restore`",
            hold.since.format("%Y-%m-%d %H:%M:%S"),
            hold.listed_sid,
            hold.allocated_sid
        );
    } else if let (true, Some(listed)) = (report.database_behind, report.highest_listed_sid) {
        println!(
            "the database is older than the clouds: a VM of service {listed} is listed, which \
             this database never gave (a restored backup?); the next pass holds the reaper: it \
             terminates nothing until `director reaper --confirm-restore`"
        );
    }
    for (cloud, failure) in &report.failures {
        println!("cannot list {cloud}: {failure}");
    }
    if report.withheld.is_empty() {
        println!("nothing to terminate");
        return;
    }
    println!("CLOUD\tVMID\tSID\tAGE\tWHY\tA PASS WOULD");
    for vm in &report.withheld {
        let verdict = if mode == director::ReaperMode::Off {
            "leave it (REAPER = off)"
        } else if held {
            "leave it (held)"
        } else if !vm.due {
            "leave it (within REAP_GRACE)"
        } else if mode == director::ReaperMode::Report {
            "report it (REAPER = report)"
        } else {
            "terminate it"
        };
        println!(
            "{}\t{}\t{}\t{}s\t{}\t{verdict}",
            vm.cloud,
            vm.vmid,
            vm.sid,
            vm.age.as_secs(),
            vm.reason
        );
    }
}

fn serve(
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
    } else if let Some(refused) = vouch(loaded, new_database)? {
        // Before anything else opens the database: a missing file is not created.
        return Ok(refused);
    }
    let director = director::Director::open(loaded)?;
    let (addrs, asked) = match listen {
        Some(listen) => (resolve(&listen)?, listen.to_string()),
        None => {
            let port = loaded
                .config
                .director_url
                .as_ref()
                .map_or(setup::DEFAULT_PORT, |url| url.port_or_default());
            let addr = SocketAddr::from(([0, 0, 0, 0], port));
            (vec![addr], addr.to_string())
        }
    };
    let files = conpaas_core::ca::DirectorTlsFiles::read(&loaded.config.ca.cert_dir)?;
    let (tls, identity) = conpaas_core::api::tls::reloadable_server_config_from_files(&files)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Before the first connection: from now on SIGHUP reloads instead of ending the process.
        #[cfg(unix)]
        {
            let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
            let reload = Reload {
                director: director.clone(),
                started: loaded.clone(),
                ca_cert_pem: files.ca_cert_pem.clone(),
                identity,
            };
            tokio::spawn(reload.on_each(hangups));
        }
        #[cfg(not(unix))]
        let _ = identity;
        director.audit(
            Event::new("config.loaded", AuditOutcome::Ok)
                .detail("file", loaded.path.display().to_string())
                .detail("clouds", director.available_clouds()),
        );
        // Charges deferred by a director that stopped or crashed on this data directory
        // (docs/operations.md, "Credit when the database fails"), before serving.
        replay_deferred_charges(&director, "at start-up").await;
        let n_users = director
            .store()
            .run(conpaas_core::store::count_users)
            .await?;
        // The first address that can be bound: a name may resolve to an IPv6 address this
        // host has no interface for.
        let mut failures = Vec::new();
        let mut bound = None;
        for addr in &addrs {
            match conpaas_core::api::server::Listener::bind(
                *addr,
                tls.clone(),
                conpaas_core::api::server::TransportSettings::from_config(&loaded.config),
            )
            .await
            {
                Ok(listener) => {
                    bound = Some(listener);
                    break;
                }
                Err(error) => failures.push(format!("{addr}: {error}")),
            }
        }
        let Some(listener) = bound else {
            anyhow::bail!("cannot listen on {asked}: {}", failures.join("; "));
        };
        let local = listener.local_addr()?;
        // Installed before the line that tells the world the server is up.
        let shutdown = shutdown_signal();
        println!("listening on https://{local}");
        std::io::stdout().flush()?;
        if n_users == 0 {
            let how = match source {
                ConfigSource::DataDir { dir, .. } => format!(" --data-dir {}", dir.display()),
                ConfigSource::File { path, .. } => format!(" --config {}", path.display()),
                _ => String::new(),
            };
            tracing::info!(
                "no users yet: add one with `director{how} adduser EMAIL USERNAME PASSWORD`"
            );
        }
        // Maintenance (undoing what a crash left half-done) runs beside the API: a replica
        // that died mid-start leaves rows another replica must clean.
        listener
            .serve_director(
                director.clone(),
                director::MaintenanceSettings::from_config(&loaded.config),
                shutdown,
            )
            .await;
        replay_deferred_charges(&director, "at shutdown").await;
        if let Err(error) = director.flush_audit().await {
            tracing::warn!(error = %conpaas_core::error::ErrorChain(&error), "cannot write the last audit events");
        }
        tracing::info!("stopped");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Applies the deferred credit charges (the journal's and this process's), for at most the
/// charge patience: a database still failing leaves them in the journal for the next start.
async fn replay_deferred_charges(director: &director::Director, when: &str) {
    let bound = director.charge_patience();
    match tokio::time::timeout(bound, director.apply_deferred_charges()).await {
        Ok(0) => {}
        Ok(n_applied) => {
            tracing::info!(n_applied, "applied deferred credit charges {when}");
        }
        Err(_) => {
            tracing::warn!(
                "deferred credit charges not all applied {when} within {bound:?}: the journal keeps them"
            );
        }
    }
    let left = director.deferred_charges();
    if left > 0 && when == "at shutdown" {
        match director.charge_journal() {
            Some(journal) => tracing::warn!(
                left,
                journal = %journal.path().display(),
                "stopping with deferred credit charges the database has not taken: the next start applies them from the journal"
            ),
            None => tracing::error!(
                left,
                "stopping with deferred credit charges held in memory only: they are lost"
            ),
        }
    }
}

/// What SIGHUP does in `serve`: reloads the director's TLS certificate and key from
/// `CERT_DIR` (new handshakes get them, open connections keep theirs), and names in a warning
/// what changed but cannot change while serving.
struct Reload {
    /// Where the reload's audit event goes.
    director: director::Director,
    /// The configuration the process started with.
    started: LoadedConfig,
    /// `ca_cert.pem` as it was at start.
    ca_cert_pem: Vec<u8>,
    identity: std::sync::Arc<conpaas_core::api::tls::ServerIdentity>,
}

impl Reload {
    #[cfg(unix)]
    async fn on_each(self, mut hangups: tokio::signal::unix::Signal) {
        while hangups.recv().await.is_some() {
            self.reload();
        }
    }

    fn reload(&self) {
        tracing::info!("SIGHUP: reloading the TLS certificate and key");
        let cert_dir = &self.started.config.ca.cert_dir;
        match conpaas_core::ca::DirectorTlsFiles::read(cert_dir)
            .map_err(anyhow::Error::from)
            .and_then(|files| {
                check_key_mode(&cert_dir.join("key.pem"))?;
                let summary = self.identity.replace_from_files(&files)?;
                Ok((summary, files.ca_cert_pem))
            }) {
            Ok((summary, ca_cert_pem)) => {
                self.director.audit(
                    Event::new("config.reloaded", AuditOutcome::Ok)
                        .detail("what", "tls")
                        .detail("serial", summary.serial.to_string())
                        .detail("not_after", summary.not_after.to_string()),
                );
                tracing::info!(
                    cert = %cert_dir.join("cert.pem").display(),
                    common_name = %summary.common_name,
                    serial = %summary.serial,
                    not_after = %summary.not_after,
                    sha256 = %summary.sha256,
                    "reloaded the TLS certificate and key: new connections get them, open ones \
                     keep theirs (the certificate the director presents to managers changes at \
                     the next restart)"
                );
                if ca_cert_pem != self.ca_cert_pem {
                    tracing::warn!(
                        file = %cert_dir.join("ca_cert.pem").display(),
                        "the CA certificate changed, which cannot change while serving (client \
                         certificates are still checked against the one loaded at start): \
                         restart the director to use it"
                    );
                }
            }
            Err(error) => {
                self.director.audit(
                    Event::new("config.reloaded", AuditOutcome::Failed).detail("what", "tls"),
                );
                tracing::warn!(
                    error = %conpaas_core::error::ErrorChain(error.as_ref()),
                    "TLS reload failed: still serving the certificate loaded before"
                )
            }
        }
        // Read, never created: a data directory's generated file is not made again here.
        let path = &self.started.path;
        match std::fs::read(path)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| Ok(config::parse_bytes(path, &bytes)?))
        {
            Ok(now) => {
                let changed = self.started.changed_keys(&now);
                if !changed.is_empty() {
                    tracing::warn!(
                        file = %path.display(),
                        keys = %changed.join(", "),
                        "director.cfg changed, but these settings cannot change while serving: \
                         restart the director to apply them"
                    );
                }
            }
            Err(error) => tracing::warn!(
                file = %path.display(),
                error = %conpaas_core::error::ErrorChain(error.as_ref()),
                "director.cfg no longer loads (still serving with the settings read at start; \
                 fix it before the next restart)"
            ),
        }
    }
}

/// Refuses a key file others can read, as the CA refuses its own (a renewal done by hand
/// often leaves the umask's 0644).
fn check_key_mode(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "{} is readable by others (mode {mode:o}), expected 0600: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    Ok(())
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

/// Resolves on SIGTERM or Ctrl-C.
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
        tracing::info!("shutting down: finishing requests in flight");
    }
}

/// Polls `future` once with a waker that does nothing.
fn futures_poll_once<F: std::future::Future>(
    future: std::pin::Pin<&mut F>,
) -> std::task::Poll<F::Output> {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    future.poll(&mut context)
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
