//! `cpsclient`: the users' command line, the ConPaaS 1.2 command set (same names and
//! arguments as 1.2's Python client) on the library's `client` layer.

// Printing results and prompts is what a command-line tool is for.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use conpaas_core::client::{
    ConfDir, Credentials, DirectorClient, Error, Identity, MANAGER_PORT, Managers, Service,
    TASKFARM_PORT, Trust, services,
};
use serde_json::{Value, json};

/// How long one manager call may take.
const MANAGER_TIMEOUT: Duration = Duration::from_secs(60);

/// The users' ConPaaS client.
#[derive(Debug, Parser)]
#[command(
    name = "cpsclient",
    version,
    about = "The ConPaaS client: applications and services on a ConPaaS director, and the \
             managers of your services (the ConPaaS 1.2 command set)",
    after_help = "Exit status: 0 done, 1 refused by the director or a manager, 2 usage or \
                  transport error. Service commands: `cpsclient usage SID` lists those of a \
                  service's type."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// The director's URL, instead of the one `credentials` stored (`target`).
    #[arg(long, global = true, value_name = "URL", env = "CONPAAS_DIRECTOR")]
    director: Option<String>,
    /// The configuration directory (default: $CONPAAS_DIR, else ~/.conpaas).
    #[arg(long, global = true, value_name = "DIR")]
    conf_dir: Option<PathBuf>,
    /// Print listings and answers as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// The managers' HTTPS port (1.2: 443).
    #[arg(long, global = true, value_name = "PORT", default_value_t = MANAGER_PORT, hide_default_value = true)]
    manager_port: u16,
    /// The task farm manager's HTTP port (1.2: 8475).
    #[arg(long, global = true, value_name = "PORT", default_value_t = TASKFARM_PORT, hide_default_value = true)]
    taskfarm_port: u16,
}

#[derive(Debug, Subcommand)]
#[command(rename_all = "snake_case")]
enum Command {
    /// Set your ConPaaS credentials: asks for the director URL, user name and password, fetches
    /// your certificates into ~/.conpaas.
    Credentials {
        /// The installation's CA certificate, to verify the director from the first call
        /// (otherwise the director is checked against the CA it hands out).
        #[arg(long, value_name = "FILE")]
        cacert: Option<PathBuf>,
        /// The user name (asked when not given).
        #[arg(long)]
        username: Option<String>,
    },
    /// Fetch new certificates with the stored user name and password.
    Getcerts,
    /// List all applications.
    Listapp,
    /// Create a new application.
    Createapp {
        /// Its name.
        name: String,
    },
    /// Rename an application.
    Renameapp {
        /// The application id.
        appid: i64,
        /// The new name.
        name: String,
    },
    /// Delete an application (and stop its services).
    Deleteapp {
        /// The application id.
        appid: i64,
    },
    /// List the supported service types.
    Available,
    /// List the available clouds.
    Clouds,
    /// List the services [of an application].
    List {
        /// The application id.
        appid: Option<i64>,
    },
    /// List the agent VMs your managers started through the director [of one service].
    Agents {
        /// The service id.
        sid: Option<i64>,
    },
    /// Create a new service [inside an application, on a cloud] and wait for its manager.
    Create {
        /// The service type (see `available`).
        service_type: String,
        /// The application id.
        appid: Option<i64>,
        /// The cloud (see `clouds`).
        cloud: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Rename a service.
    Rename {
        /// The service id.
        sid: i64,
        /// The new name.
        name: String,
    },
    /// Delete a service (it must be stopped).
    Terminate {
        /// The service id.
        sid: i64,
        /// Stop the service through the director without asking its manager (one that cannot
        /// be reached): its state is not checked and it is not asked to shut its agents down.
        #[arg(long)]
        force: bool,
    },
    /// Upload a manifest (creates an application and its services).
    Manifest {
        /// The manifest file (JSON).
        file: PathBuf,
    },
    /// Download an application's manifest.
    DownloadManifest {
        /// The application id.
        appid: i64,
    },
    /// Start a service [on a cloud] and wait until it runs.
    Start {
        /// The service id.
        sid: i64,
        /// The cloud.
        #[arg(default_value = "default")]
        cloud: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Stop a running service.
    Stop {
        /// The service id.
        sid: i64,
    },
    /// Show a service's details.
    Info {
        /// The service id.
        sid: i64,
    },
    /// Show a service's logs.
    Logs {
        /// The service id.
        sid: i64,
    },
    /// Upload a startup script for the service's agents.
    StartupScript {
        /// The service id.
        sid: i64,
        /// The script.
        file: PathBuf,
    },
    /// Show the service-specific commands of a service.
    Usage {
        /// The service id.
        sid: i64,
    },
    /// Print the shell completion script for SHELL on standard output.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
struct Wait {
    /// Do not wait for the manager (1.2 waited silently, without a limit).
    #[arg(long)]
    no_wait: bool,
    /// How long to wait, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    timeout: u64,
}

/// The whole command line: the derived commands and one per service-specific command name.
fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for name in services::names() {
        let lines: Vec<String> = services::entries(name)
            .map(|entry| {
                format!(
                    "{}: {} ({})",
                    entry.types.join(", "),
                    entry.synopsis(),
                    entry.about
                )
            })
            .collect();
        let mut abouts: Vec<&str> = services::entries(name).map(|entry| entry.about).collect();
        abouts.dedup();
        let about = match abouts.as_slice() {
            [one] => (*one).to_owned(),
            _ => format!("arguments per service type: `cpsclient {name} --help`"),
        };
        cmd = cmd.subcommand(
            clap::Command::new(name)
                .about(format!("[{}] {about}", service_types(name)))
                .long_about(lines.join("\n"))
                .arg(
                    clap::Arg::new("sid")
                        .value_name("SID")
                        .required(true)
                        .value_parser(clap::value_parser!(i64))
                        .help("The service id"),
                )
                .arg(
                    clap::Arg::new("args")
                        .value_name("ARGS")
                        .num_args(0..)
                        .trailing_var_arg(true)
                        .allow_hyphen_values(true)
                        .help("The command's arguments (see `cpsclient usage SID`)"),
                ),
        );
    }
    cmd
}

fn service_types(name: &str) -> String {
    let mut types: Vec<&str> = Vec::new();
    for entry in services::entries(name) {
        for kind in entry.types {
            if !types.contains(kind) {
                types.push(kind);
            }
        }
    }
    types.join(", ")
}

fn main() -> ExitCode {
    let matches = command().get_matches();
    let global = match Global::from_arg_matches(&matches) {
        Ok(global) => global,
        Err(error) => error.exit(),
    };
    let invocation = match matches.subcommand() {
        Some((name, sub)) if services::names().contains(&name) => Invocation::Service {
            name: name.to_owned(),
            sid: sub.get_one::<i64>("sid").copied().unwrap_or_default(),
            args: sub
                .get_many::<String>("args")
                .map(|args| args.cloned().collect())
                .unwrap_or_default(),
        },
        _ => match Cli::from_arg_matches(&matches) {
            Ok(cli) => Invocation::Builtin(cli.command),
            Err(error) => error.exit(),
        },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("E: cannot start: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(&global, invocation)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report(&error);
            ExitCode::from(if error.is_refusal() { 1 } else { 2 })
        }
    }
}

fn report(error: &Error) {
    let text = conpaas_core::error::ErrorChain(error).to_string();
    for line in text.lines() {
        eprintln!("E: {line}");
    }
    // The library says what went wrong; what to type about it is the command line's.
    if let Some(hint) = error.command_line_hint() {
        eprintln!("E: {hint}");
    }
}

enum Invocation {
    Builtin(Command),
    Service {
        name: String,
        sid: i64,
        args: Vec<String>,
    },
}

/// The configuration directory, the director and (for manager calls) the managers.
struct Session {
    conf: ConfDir,
    director: DirectorClient,
    identity: Identity,
    global_json: bool,
    manager_port: u16,
    taskfarm_port: u16,
}

impl Session {
    fn open(global: &Global) -> Result<Session, Error> {
        let conf = conf_dir(global)?;
        let mut credentials = conf.credentials()?;
        if let Some(url) = &global.director {
            credentials.target = url.clone();
        }
        let identity = conf.identity()?;
        let director = DirectorClient::new(
            &credentials.target,
            Trust::Ca(identity.ca_pem.clone()),
            Some(&identity),
            &credentials.username,
            credentials.password.clone(),
        )?;
        Ok(Session {
            conf,
            director,
            identity,
            global_json: global.json,
            manager_port: global.manager_port,
            taskfarm_port: global.taskfarm_port,
        })
    }

    fn managers(&self) -> Result<Managers, Error> {
        Ok(Managers::new(&self.identity, MANAGER_TIMEOUT)?
            .with_ports(self.manager_port, self.taskfarm_port))
    }

    /// Prints `value` as JSON under `--json`, else `text`.
    fn show(&self, text: &str, value: &Value) {
        if self.global_json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else if !text.is_empty() {
            println!("{text}");
        }
    }
}

fn conf_dir(global: &Global) -> Result<ConfDir, Error> {
    match &global.conf_dir {
        Some(dir) => Ok(ConfDir::new(dir)),
        None => ConfDir::from_env()
            .ok_or_else(|| Error::Usage("neither $CONPAAS_DIR nor $HOME is set".into())),
    }
}

async fn run(global: &Global, invocation: Invocation) -> Result<(), Error> {
    let builtin = match invocation {
        Invocation::Service { name, sid, args } => {
            let session = Session::open(global)?;
            let service = session.director.service(sid).await?;
            let Some(entry) = services::find(&name, &service.service_type) else {
                return Err(Error::Usage(format!(
                    "{name} is not a command of {} services (`cpsclient usage {sid}` lists them)",
                    service.service_type
                )));
            };
            let mut args = args;
            if entry.call == services::Call::SetPassword && args.is_empty() {
                args.push(new_password()?);
            }
            let outcome = services::run(entry, &session.managers()?, &service, &args).await?;
            if let Some((name, bytes)) = &outcome.download {
                let dir = std::env::var_os("TMPDIR")
                    .filter(|dir| !dir.is_empty())
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("/tmp"));
                let path = dir.join(name);
                std::fs::write(&path, bytes).map_err(|source| Error::File {
                    path: path.clone(),
                    action: "write",
                    source,
                })?;
                let mut json = outcome.json.clone();
                json["path"] = json!(path.display().to_string());
                session.show(&format!("{} written", path.display()), &json);
            } else {
                session.show(&outcome.text, &outcome.json);
            }
            return Ok(());
        }
        Invocation::Builtin(command) => command,
    };
    match builtin {
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics when its writer fails (`| head`), and a
            // reader that went away ends the output quietly.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command(), "cpsclient", &mut script);
            let mut stdout = std::io::stdout().lock();
            match std::io::Write::write_all(&mut stdout, &script)
                .and_then(|()| std::io::Write::flush(&mut stdout))
            {
                Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(Error::File {
                        path: PathBuf::from("standard output"),
                        action: "write",
                        source: error,
                    });
                }
                _ => {}
            }
            Ok(())
        }
        Command::Credentials { cacert, username } => credentials(global, cacert, username).await,
        command => {
            let session = Session::open(global)?;
            director_or_manager(&session, command).await
        }
    }
}

async fn director_or_manager(session: &Session, command: Command) -> Result<(), Error> {
    let director = &session.director;
    match command {
        Command::Credentials { .. } | Command::Completions { .. } => Ok(()),
        Command::Getcerts => {
            let certificates = director.certificates().await?;
            session.conf.write_certificates(&certificates)?;
            session.show("Certificates updated", &json!(true));
            Ok(())
        }
        Command::Listapp => {
            let apps = director.listapp().await?;
            let rows: Vec<Vec<String>> = apps
                .iter()
                .map(|app| vec![app.aid.to_string(), app.name.clone()])
                .collect();
            let text = if rows.is_empty() {
                "No existing applications".to_owned()
            } else {
                services::table(&["aid", "name"], &rows)
            };
            let raw: Vec<Value> = apps.into_iter().map(|app| app.raw).collect();
            session.show(&text, &Value::Array(raw));
            Ok(())
        }
        Command::Createapp { name } => {
            let app = director.createapp(&name).await?;
            session.show(&format!("Application {} created", app.aid), &app.raw);
            Ok(())
        }
        Command::Renameapp { appid, name } => {
            director.renameapp(appid, &name).await?;
            session.show("done.", &json!(true));
            Ok(())
        }
        Command::Deleteapp { appid } => {
            director.deleteapp(appid).await?;
            session.show("done.", &json!(true));
            Ok(())
        }
        Command::Available => {
            let types = director.available_services().await?;
            session.show(&types.join("\n"), &json!(types));
            Ok(())
        }
        Command::Clouds => {
            let clouds = director.available_clouds().await?;
            session.show(&clouds.join("\n"), &json!(clouds));
            Ok(())
        }
        Command::List { appid } => {
            let list = director.list(appid).await?;
            let columns = ["type", "sid", "application_id", "vmid", "name", "manager"];
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|service| columns.iter().map(|key| cell(&service.raw, key)).collect())
                .collect();
            let text = if rows.is_empty() {
                "No running services".to_owned()
            } else {
                services::table(&columns, &rows)
            };
            let raw: Vec<Value> = list.into_iter().map(|service| service.raw).collect();
            session.show(&text, &Value::Array(raw));
            Ok(())
        }
        Command::Agents { sid } => {
            let mut agents = director.agents().await?;
            agents.retain(|agent| sid.is_none_or(|sid| agent.sid == sid));
            let columns = ["id", "sid", "cloud", "vmid", "ip", "state", "name"];
            let rows: Vec<Vec<String>> = agents
                .iter()
                .map(|agent| columns.iter().map(|key| cell(&agent.raw, key)).collect())
                .collect();
            let text = if rows.is_empty() {
                "No agent VMs".to_owned()
            } else {
                services::table(&columns, &rows)
            };
            let raw: Vec<Value> = agents.into_iter().map(|agent| agent.raw).collect();
            session.show(&text, &Value::Array(raw));
            Ok(())
        }
        Command::Create {
            service_type,
            appid,
            cloud,
            wait,
        } => {
            let types = director.available_services().await?;
            if !types.contains(&service_type) {
                return Err(Error::Usage(format!(
                    "unknown service type {service_type:?}: one of {}",
                    types.join(", ")
                )));
            }
            let service = director
                .start(&service_type, cloud.as_deref(), appid)
                .await?;
            if !session.global_json {
                println!(
                    "Service {} created; its manager is {}",
                    service.sid, service.manager
                );
            }
            // 1.2 waited for INIT; its task farm starts RUNNING.
            let state = if service.service_type == "taskfarm" {
                "RUNNING"
            } else {
                "INIT"
            };
            if !wait.no_wait {
                wait_for(session, &service, state, &wait).await?;
            }
            session.show("done.", &service.raw);
            Ok(())
        }
        Command::Rename { sid, name } => {
            director.service(sid).await?;
            director.rename(sid, &name).await?;
            session.show("done.", &json!(true));
            Ok(())
        }
        Command::Terminate { sid, force: true } => {
            let service = director.service(sid).await?;
            // Said on stderr, so that --json output stays one JSON document.
            eprintln!(
                "W: --force: the manager of service {sid} at {} was not asked: its state was not \
                 checked and it was not asked to shut down; the director terminates the agent \
                 VMs it started through the director (`cpsclient agents`), not those a manager \
                 holding cloud keys started itself (COPY_CLOUD_CREDENTIALS)",
                service.manager
            );
            director.stop(sid).await?;
            session.show("done.", &json!(true));
            Ok(())
        }
        Command::Terminate { sid, force: false } => {
            let service = director.service(sid).await?;
            // 1.2's task farm is never STOPPED: it is terminated without asking its manager.
            if service.service_type != "taskfarm" {
                let state = match session.managers()?.state(&service).await {
                    Ok(state) => state,
                    Err(error @ Error::Manager { .. }) => {
                        return Err(Error::ManagerUnreachable {
                            sid,
                            source: Box::new(error),
                        });
                    }
                    Err(error) => return Err(error),
                };
                if state != "STOPPED" && state != "INIT" {
                    return Err(Error::Refused(format!(
                        "service {sid} is in state {state}: stop it first"
                    )));
                }
            }
            director.stop(sid).await?;
            session.show("done.", &json!(true));
            Ok(())
        }
        Command::Manifest { file } => {
            let text = std::fs::read_to_string(&file).map_err(|source| Error::File {
                path: file.clone(),
                action: "read",
                source,
            })?;
            director.upload_manifest(&text).await?;
            session.show("done.", &json!(true));
            Ok(())
        }
        Command::DownloadManifest { appid } => {
            let manifest = director.download_manifest(appid).await?;
            // The manifest is JSON either way: pretty-printed, it can be uploaded again.
            let text = serde_json::to_string_pretty(&manifest.raw).unwrap_or_default();
            session.show(&text, &manifest.raw);
            Ok(())
        }
        Command::Start { sid, cloud, wait } => {
            let service = director.service(sid).await?;
            let managers = session.managers()?;
            let answer = managers
                .post(&service, "startup", json!({"cloud": cloud}))
                .await?;
            if !session.global_json {
                println!("Your service is starting up.");
            }
            if !wait.no_wait && service.service_type != "taskfarm" {
                wait_for(session, &service, "RUNNING", &wait).await?;
            }
            session.show("done.", &answer);
            Ok(())
        }
        Command::Stop { sid } => {
            let service = director.service(sid).await?;
            let managers = session.managers()?;
            let state = managers.state(&service).await?;
            if state != "RUNNING" {
                return Err(Error::Refused(format!(
                    "service {sid} is in state {state}: it cannot be stopped"
                )));
            }
            let answer = managers.post(&service, "shutdown", json!({})).await?;
            session.show(
                &format!("Service {sid} was RUNNING: shutting it down"),
                &answer,
            );
            Ok(())
        }
        Command::Info { sid } => info(session, sid).await,
        Command::Logs { sid } => {
            let service = director.service(sid).await?;
            let managers = session.managers()?;
            let (method, key) = if service.service_type == "taskfarm" {
                ("get_log", "message")
            } else {
                ("getLog", "log")
            };
            let answer = managers.get(&service, method, None).await?;
            let text = answer.get(key).map(text_of).unwrap_or_default();
            session.show(&text, &answer);
            Ok(())
        }
        Command::StartupScript { sid, file } => {
            let service = director.service(sid).await?;
            let bytes = std::fs::read(&file).map_err(|source| Error::File {
                path: file.clone(),
                action: "read",
                source,
            })?;
            let file_name = file
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            let answer = session
                .managers()?
                .upload(
                    &service,
                    &[("method", "upload_startup_script")],
                    conpaas_core::manager_client::Upload::new("script", file_name, bytes),
                )
                .await?;
            session.show("Startup script uploaded correctly.", &answer);
            Ok(())
        }
        Command::Usage { sid } => {
            let service = director.service(sid).await?;
            let lines = services::usage(&service.service_type);
            let text = if lines.is_empty() {
                format!(
                    "{} services have no specific commands",
                    service.service_type
                )
            } else {
                lines.join("\n")
            };
            session.show(&text, &json!(lines));
            Ok(())
        }
    }
}

/// 1.2's `info`: the director's fields, the manager's state, and each node's address.
async fn info(session: &Session, sid: i64) -> Result<(), Error> {
    let service = session.director.service(sid).await?;
    let managers = session.managers()?;
    let state = managers.info(&service).await?;
    let mut json = service.raw.clone();
    let mut lines = Vec::new();
    if let Value::Object(fields) = &service.raw {
        for (key, value) in fields {
            if key != "state" {
                lines.push(format!("{key}: {}", text_of(value)));
            }
        }
    }
    lines.push(format!(
        "state: {}",
        state.get("state").map(text_of).unwrap_or_default()
    ));
    json["manager_info"] = state;
    if ["php", "java", "mysql", "xtreemfs"].contains(&service.service_type.as_str()) {
        let nodes = managers.get(&service, "list_nodes", None).await?;
        let mut addresses = serde_json::Map::new();
        if let Value::Object(roles) = &nodes {
            for (role, ids) in roles {
                let Some(ids) = ids.as_array() else { continue };
                let mut ips = Vec::new();
                for id in ids {
                    let details = managers
                        .get(
                            &service,
                            "get_node_info",
                            Some(json!({"serviceNodeId": id})),
                        )
                        .await?;
                    ips.push(
                        details
                            .pointer("/serviceNode/ip")
                            .map(text_of)
                            .unwrap_or_default(),
                    );
                }
                lines.push(format!("{role}: {}", ips.join(" ")));
                addresses.insert(role.clone(), json!(ips));
            }
        }
        json["nodes"] = Value::Object(addresses);
    }
    session.show(&lines.join("\n"), &json);
    Ok(())
}

/// Polls `get_service_info` every second until `state`, showing the wait on a terminal;
/// `ERROR` ends it as a refusal.
async fn wait_for(
    session: &Session,
    service: &Service,
    state: &str,
    wait: &Wait,
) -> Result<(), Error> {
    let managers = session.managers()?;
    let start = Instant::now();
    let limit = Duration::from_secs(wait.timeout);
    let terminal = std::io::stderr().is_terminal();
    let mut last;
    loop {
        match managers.state(service).await {
            Ok(seen) if seen == state => break,
            Ok(seen) if seen == "ERROR" => {
                if terminal {
                    eprintln!();
                }
                return Err(Error::Refused(format!(
                    "service {} is in state ERROR (see `cpsclient logs {}`)",
                    service.sid, service.sid
                )));
            }
            Ok(seen) => last = seen,
            Err(error) => last = conpaas_core::error::ErrorChain(&error).to_string(),
        }
        if start.elapsed() >= limit {
            if terminal {
                eprintln!();
            }
            return Err(Error::WaitTimeout {
                sid: service.sid,
                state: state.to_owned(),
                last,
                waited: limit,
            });
        }
        if terminal {
            eprint!(
                "\r\x1b[Kwaiting for service {} to be {state}: {} s ({last})",
                service.sid,
                start.elapsed().as_secs()
            );
            let _ = std::io::stderr().flush();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if terminal {
        eprintln!("\r\x1b[Kservice {} is {state}", service.sid);
    }
    Ok(())
}

/// 1.2's `credentials`: the URL until a director answers, then user name and password until
/// they log in, then the certificates.
async fn credentials(
    global: &Global,
    cacert: Option<PathBuf>,
    username: Option<String>,
) -> Result<(), Error> {
    let conf = conf_dir(global)?;
    let stored = conf.credentials().ok();
    let target = match &global.director {
        Some(url) => url.clone(),
        None => {
            let previous = stored
                .as_ref()
                .map(|c| c.target.clone())
                .unwrap_or_default();
            let answer = prompt(&if previous.is_empty() {
                "Enter the director URL: ".to_owned()
            } else {
                format!("Enter the director URL [{previous}]: ")
            })?;
            if answer.is_empty() { previous } else { answer }
        }
    };
    let ca = match &cacert {
        Some(path) => Some(std::fs::read(path).map_err(|source| Error::File {
            path: path.clone(),
            action: "read",
            source,
        })?),
        None => conf.ca_pem()?,
    };
    let trust = match &ca {
        Some(ca) => Trust::Ca(ca.clone()),
        None => Trust::FirstUse,
    };
    let anonymous = DirectorClient::new(&target, trust.clone(), None, "", String::new().into())?;
    match anonymous.available_services().await {
        Ok(_) => {}
        Err(Error::Answer(_)) => {
            return Err(Error::Usage(format!("no ConPaaS director at {target}")));
        }
        Err(error) => return Err(error),
    }
    let username = match username {
        Some(name) => name,
        None => {
            let previous = stored
                .as_ref()
                .map(|c| c.username.clone())
                .unwrap_or_default();
            let answer = prompt(&if previous.is_empty() {
                "Enter your username: ".to_owned()
            } else {
                format!("Enter your username [{previous}]: ")
            })?;
            if answer.is_empty() { previous } else { answer }
        }
    };
    let password = prompt_secret("Enter your password: ")?;
    let user = DirectorClient::new(&target, trust, None, &username, password.clone().into())?;
    user.login().await?;
    eprintln!("Authentication succeeded");
    let certificates = user.certificates().await?;
    let ca_in_archive = &certificates.ca_cert_pem;
    match &ca {
        // The director was verified against a CA we already trusted: the archive must
        // carry that same CA.
        Some(trusted) if trusted.trim_ascii() != ca_in_archive.trim_ascii() => {
            return Err(Error::UntrustedDirector(
                "its archive holds another CA than the one trusted".into(),
            ));
        }
        Some(_) => {}
        None => {
            user.check_recorded(ca_in_archive)?;
            eprintln!(
                "The director's CA was accepted on first use (SHA-256 {}); compare it with \
                 your operator's, or pass --cacert next time",
                ca_fingerprint(ca_in_archive)
            );
        }
    }
    conf.write_certificates(&certificates)?;
    conf.store_credentials(&Credentials::new(
        user.url().to_owned(),
        username,
        password.into(),
    ))?;
    let identity = conf.identity()?;
    if global.json {
        println!(
            "{}",
            json!({"target": user.url(), "uid": identity.uid, "not_after": identity.not_after.to_rfc3339(), "dir": conf.path().display().to_string()})
        );
    } else {
        println!(
            "Certificates stored in {} (valid until {})",
            conf.path().display(),
            identity.not_after.format("%Y-%m-%d")
        );
    }
    Ok(())
}

/// The SHA-256 of the first certificate's DER, as `openssl x509 -fingerprint -sha256` shows it.
fn ca_fingerprint(pem: &[u8]) -> String {
    use rustls::pki_types::pem::PemObject as _;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem)
        .map(|der| der.as_ref().to_vec())
        .unwrap_or_default();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Reads one line after showing `question` on stderr; works with piped input too.
fn prompt(question: &str) -> Result<String, Error> {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let n_read = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|error| Error::Usage(format!("cannot read standard input: {error}")))?;
    if n_read == 0 {
        return Err(Error::Usage("no answer on standard input".into()));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Reads a secret without echo on a terminal; from a pipe, reads a line.
fn prompt_secret(question: &str) -> Result<String, Error> {
    if std::io::stdin().is_terminal() {
        rpassword::prompt_password(question)
            .map_err(|error| Error::Usage(format!("cannot read the password: {error}")))
    } else {
        prompt(question)
    }
}

/// mysql's `set_password` without PASSWORD: asked twice, until both agree (1.2).
fn new_password() -> Result<String, Error> {
    for _ in 0..3 {
        let first = prompt_secret("Password: ")?;
        let second = prompt_secret("Retype password: ")?;
        if first == second {
            return Ok(first);
        }
        eprintln!("Passwords do not match. Try again");
    }
    Err(Error::Usage("the passwords did not match".into()))
}

fn cell(value: &Value, key: &str) -> String {
    value.get(key).map(text_of).unwrap_or_default()
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
