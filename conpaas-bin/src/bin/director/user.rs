//! `director user list|show|credit|disable|enable|delete|passwd`: the operator's account
//! commands. Parsing and printing only: each is a use-case of `conpaas_core::director::accounts`,
//! audited as the operator `operator:USER@HOST` (docs/operations.md, "Managing users").

use std::io::{BufRead as _, Read as _, Write as _};
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::NaiveDateTime;
use clap::Subcommand;
use conpaas_core::config::LoadedConfig;
use conpaas_core::director;
use conpaas_core::director::accounts::{self, BelowZero, UserRef};
use conpaas_core::director::audit::AuditContext;
use conpaas_core::model::CreditChange;
use conpaas_core::store::{self, Store, UserSummary};

use super::prompt::prompt;

/// The account commands.
#[derive(Debug, Subcommand)]
pub(super) enum UserCommand {
    /// Every user, one line each: uid, name, e-mail, credit, applications, services, created,
    /// disabled (--json: one JSON object per line).
    List {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One user: names, e-mail, credit, how many applications and services, created, disabled.
    Show {
        /// A user name or uid (digits that are one user's uid and another's name are refused:
        /// say uid:N or name:N).
        user: String,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Add (+N), take away (-N) or set (=N) a user's credit; never below 0. One transaction:
    /// a manager's charge at the same moment is never lost.
    Credit {
        /// A user name or uid.
        user: String,
        /// +N, -N or =N.
        #[arg(allow_hyphen_values = true, value_name = "+N|-N|=N", value_parser = credit_change)]
        change: CreditChange,
        /// A subtraction larger than the credit takes it to 0 instead of being refused.
        #[arg(long)]
        stop_at_zero: bool,
    },
    /// Refuse the user's logins, certificates and user certificates; their services keep
    /// running and are charged as before.
    Disable {
        /// A user name or uid.
        user: String,
    },
    /// Let a disabled user in again.
    Enable {
        /// A user name or uid.
        user: String,
    },
    /// Delete a user and their (empty) applications; refused while they have services (each a
    /// VM the accounting keeps): stop those first.
    Delete {
        /// A user name or uid.
        user: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Set a user's password: asked hidden and twice, or one line from standard input.
    Passwd {
        /// A user name or uid.
        user: String,
        /// Read the password from the first line of standard input, without asking.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// `+N`, `-N`, `=N`.
fn credit_change(text: &str) -> Result<CreditChange, String> {
    text.parse().map_err(|error| format!("{error}"))
}

pub(super) fn run(loaded: &LoadedConfig, command: UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::List { json } => {
            let Some(store) = read_only_store(loaded)? else {
                return Ok(ExitCode::FAILURE);
            };
            let users = accounts::list_users_blocking(&store).context("listing the users")?;
            print_list(&users, json)
        }
        UserCommand::Show { user, json } => {
            let Some(store) = read_only_store(loaded)? else {
                return Ok(ExitCode::FAILURE);
            };
            match accounts::show_user_blocking(&store, &UserRef::parse(&user)) {
                Ok(summary) => print_show(&summary, json),
                Err(error) => refused(error, "nothing to show"),
            }
        }
        UserCommand::Credit {
            user,
            change,
            stop_at_zero,
        } => credit(loaded, &user, change, stop_at_zero),
        UserCommand::Disable { user } => switch(loaded, &user, true),
        UserCommand::Enable { user } => switch(loaded, &user, false),
        UserCommand::Delete { user, yes } => delete(loaded, &user, yes),
        UserCommand::Passwd {
            user,
            password_stdin,
        } => passwd(loaded, &user, password_stdin),
    }
}

/// The operator at this terminal, as the audit log names them: `operator:USER@HOST`, USER
/// being whoever ran sudo (`SUDO_USER`) if anyone did, else the account this runs as.
fn operator() -> AuditContext {
    let user = std::env::var("SUDO_USER")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(account_name)
        .unwrap_or_else(|| "unknown".to_owned());
    let host = hostname::get()
        .ok()
        .and_then(|host| host.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned());
    AuditContext::operator_named(&format!("{user}@{host}"))
}

/// The name of the account this process runs as: its uid (the owner of `/proc/self`) looked
/// up in `/etc/passwd`, else `$USER`.
fn account_name() -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let by_uid = std::fs::metadata("/proc/self").ok().and_then(|meta| {
        let uid = meta.uid().to_string();
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            (fields.nth(1)? == uid).then(|| name.to_owned())
        })
    });
    by_uid.or_else(|| std::env::var("USER").ok().filter(|name| !name.is_empty()))
}

/// The store to read, not migrated (reading never changes the database); `None` (said why)
/// when this version's migrations are not all applied.
fn read_only_store(loaded: &LoadedConfig) -> anyhow::Result<Option<Store>> {
    let store = Store::connect(&loaded.config.store)?;
    let pending = store.run_blocking(store::pending_migrations)?;
    if !pending.is_empty() {
        eprintln!(
            "E: the database of {} is not up to date ({} migration(s) pending): start this \
             version's director once (`director serve`), which migrates it",
            loaded.path.display(),
            pending.len()
        );
        return Ok(None);
    }
    Ok(Some(store))
}

/// The store to change, migrated first (as `adduser` does).
fn store(loaded: &LoadedConfig) -> anyhow::Result<Store> {
    Ok(Store::open(&loaded.config.store)?)
}

/// Prints an operator's refusal (`E: ...; nothing changed`) and answers exit status 1; any
/// other error is a failure.
fn refused(error: director::Error, nothing: &str) -> anyhow::Result<ExitCode> {
    match error {
        director::Error::UnknownUser(_)
        | director::Error::AmbiguousUser { .. }
        | director::Error::CreditBelowZero { .. }
        | director::Error::CreditOverflow { .. }
        | director::Error::UserHasServices { .. }
        | director::Error::Invalid { .. } => {
            eprintln!("E: {error}; {nothing}");
            Ok(ExitCode::FAILURE)
        }
        other => Err(other.into()),
    }
}

fn time(at: Option<NaiveDateTime>) -> String {
    at.map_or_else(
        || "-".to_owned(),
        |at| at.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

fn utc(at: NaiveDateTime) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// One user as a JSON object (`list --json`, `show --json`).
fn json(summary: &UserSummary) -> serde_json::Value {
    let user = &summary.user;
    serde_json::json!({
        "uid": user.uid.0,
        "username": user.username,
        "email": user.email,
        "fname": user.fname,
        "lname": user.lname,
        "affiliation": user.affiliation,
        "credit": user.credit.0,
        "applications": summary.n_applications,
        "services": summary.n_services,
        // As stored: UTC for accounts this director made, local time for a 1.2 database's.
        "created": user.created.map(|at| at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
        "disabled": user.disabled.map(utc),
    })
}

/// Writes `lines` to standard output; a closed pipe (`| head`) ends quietly.
fn print_lines(lines: impl IntoIterator<Item = String>) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}

fn print_list(users: &[UserSummary], as_json: bool) -> anyhow::Result<ExitCode> {
    if as_json {
        return print_lines(users.iter().map(|summary| json(summary).to_string()));
    }
    let mut rows = vec![[
        "UID".to_owned(),
        "USERNAME".to_owned(),
        "E-MAIL".to_owned(),
        "CREDIT".to_owned(),
        "APPS".to_owned(),
        "SERVICES".to_owned(),
        "CREATED".to_owned(),
        "DISABLED".to_owned(),
    ]];
    for summary in users {
        let user = &summary.user;
        rows.push([
            user.uid.to_string(),
            user.username.clone(),
            user.email.clone().unwrap_or_else(|| "-".to_owned()),
            user.credit.to_string(),
            summary.n_applications.to_string(),
            summary.n_services.to_string(),
            time(user.created),
            user.disabled.map_or_else(|| "-".to_owned(), utc),
        ]);
    }
    let mut widths = [0; 8];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    print_lines(rows.iter().map(|row| {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        cells.join("  ").trim_end().to_owned()
    }))
}

fn print_show(summary: &UserSummary, as_json: bool) -> anyhow::Result<ExitCode> {
    if as_json {
        return print_lines([json(summary).to_string()]);
    }
    let user = &summary.user;
    let text = |value: &Option<String>| match value.as_deref() {
        None | Some("") => "-".to_owned(),
        Some(text) => text.to_owned(),
    };
    print_lines([
        format!("uid           {}", user.uid),
        format!("username      {}", user.username),
        format!("e-mail        {}", text(&user.email)),
        format!("first name    {}", text(&user.fname)),
        format!("last name     {}", text(&user.lname)),
        format!("affiliation   {}", text(&user.affiliation)),
        format!("credit        {}", user.credit),
        format!("applications  {}", summary.n_applications),
        format!("services      {}", summary.n_services),
        format!("created       {}", time(user.created)),
        format!(
            "disabled      {}",
            user.disabled
                .map_or_else(|| "no".to_owned(), |at| format!("since {}", utc(at)))
        ),
    ])
}

fn credit(
    loaded: &LoadedConfig,
    user: &str,
    change: CreditChange,
    stop_at_zero: bool,
) -> anyhow::Result<ExitCode> {
    let store = store(loaded)?;
    let below_zero = if stop_at_zero {
        BelowZero::StopAtZero
    } else {
        BelowZero::Refuse
    };
    let who = UserRef::parse(user);
    let changed = operator()
        .sync_scope(|| accounts::change_credit_blocking(&store, &who, change, below_zero));
    match changed {
        Ok(adjusted) => {
            let user = &adjusted.user;
            let stopped = if change.apply(adjusted.before).is_none() {
                ", stopped at 0"
            } else {
                ""
            };
            println!(
                "{} (uid {}): credit {} -> {} ({change}{stopped})",
                user.username, user.uid, adjusted.before, user.credit
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error @ director::Error::CreditBelowZero { .. }) => {
            refused(error, "nothing changed (--stop-at-zero takes it to 0)")
        }
        Err(error) => refused(error, "nothing changed"),
    }
}

fn switch(loaded: &LoadedConfig, user: &str, disable: bool) -> anyhow::Result<ExitCode> {
    let store = store(loaded)?;
    let who = UserRef::parse(user);
    let switched = operator().sync_scope(|| {
        if disable {
            accounts::disable_user_blocking(&store, &who)
        } else {
            accounts::enable_user_blocking(&store, &who)
        }
    });
    let switched = match switched {
        Ok(switched) => switched,
        Err(error) => return refused(error, "nothing changed"),
    };
    let user = &switched.user;
    match (disable, switched.changed, user.disabled) {
        (true, true, _) => println!(
            "{} (uid {}) disabled: logins, certificate requests and user certificates are \
             refused; services keep running and are charged as before",
            user.username, user.uid
        ),
        (true, false, since) => println!(
            "{} (uid {}) was already disabled (since {}); nothing changed",
            user.username,
            user.uid,
            since.map_or_else(|| "-".to_owned(), utc)
        ),
        (false, true, _) => println!("{} (uid {}) enabled", user.username, user.uid),
        (false, false, _) => println!(
            "{} (uid {}) was not disabled; nothing changed",
            user.username, user.uid
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn delete(loaded: &LoadedConfig, user: &str, yes: bool) -> anyhow::Result<ExitCode> {
    let store = store(loaded)?;
    let who = UserRef::parse(user);
    let summary = match accounts::show_user_blocking(&store, &who) {
        Ok(summary) => summary,
        Err(error) => return refused(error, "nothing changed"),
    };
    // With services the deletion is refused (and recorded) without asking.
    if !yes && summary.n_services == 0 {
        let user = &summary.user;
        let answer = prompt(&format!(
            "Delete user {} (uid {}, {} application(s), {} credit)? [y/N] ",
            user.username, user.uid, summary.n_applications, user.credit
        ))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            eprintln!("not deleted");
            return Ok(ExitCode::FAILURE);
        }
    }
    // By id from here: the account confirmed is the one deleted.
    let by_id = UserRef::Id(summary.user.uid);
    match operator().sync_scope(|| accounts::delete_user_blocking(&store, &by_id)) {
        Ok(deleted) => {
            println!(
                "deleted {} (uid {}) and {} application(s); {} credit went with the account",
                deleted.user.username,
                deleted.user.uid,
                deleted.n_applications,
                deleted.user.credit
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(director::Error::UserHasServices { username, services }) => {
            let sids: Vec<String> = services.iter().map(ToString::to_string).collect();
            eprintln!(
                "E: {username} still has {} service(s) (sid {}), each a VM the accounting keeps \
                 until it is gone; nothing changed",
                services.len(),
                sids.join(", ")
            );
            eprintln!(
                "E: stop them first: the user runs `cpsclient terminate SID`, or, to stop them \
                 without the user, `director user disable {username}` then `director user credit \
                 {username} =0`: each manager stops its service at its next hourly charge"
            );
            Ok(ExitCode::FAILURE)
        }
        Err(error) => refused(error, "nothing changed"),
    }
}

fn passwd(loaded: &LoadedConfig, user: &str, password_stdin: bool) -> anyhow::Result<ExitCode> {
    let store = store(loaded)?;
    let who = UserRef::parse(user);
    // The account first: a name that is nobody's is said before the password is typed.
    if let Err(error) = accounts::show_user_blocking(&store, &who) {
        return refused(error, "nothing changed");
    }
    let password = if password_stdin {
        // One line (at most 64 KiB), as `docker login --password-stdin` reads it.
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .take(64 * 1024)
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        line.strip_suffix('\r').unwrap_or(line).to_owned()
    } else {
        match super::adduser::ask_new_password()? {
            Some(password) => password,
            None => {
                eprintln!(
                    "E: no password after {} attempts (empty, or the two differed); nothing \
                     changed",
                    super::adduser::PASSWORD_ATTEMPTS
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    };
    if password.is_empty() {
        eprintln!("E: the password is empty; nothing changed");
        return Ok(ExitCode::FAILURE);
    }
    match operator().sync_scope(|| accounts::set_password_blocking(&store, &who, password.into())) {
        Ok(user) => {
            println!("password of {} (uid {}) changed", user.username, user.uid);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => refused(error, "nothing changed"),
    }
}
