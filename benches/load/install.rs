//! A real director to load: `director init`, `adduser`, `serve` in a scratch data directory,
//! and the credentials a user and a manager of it hold (fetched the way their clients do).

use std::io::{BufRead as _, Read as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::http::Method;

use crate::client::{self, BoxError, Job, Limit, Mode, Target};

/// The load user's name and password.
pub const USER: &str = "load";
/// The load user's password.
pub const PASSWORD: &str = "load-password";
/// Accounts the login burst spreads over (8 concurrent logins each at c=32).
pub const BURST_ACCOUNTS: usize = 4;
/// Enough credit for every decrement and start of a suite.
const CREDIT: &str = "1000000000";

/// A child process killed when dropped.
pub struct Served {
    child: Child,
    /// Its pid, for `/proc`.
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Time from spawning it to its first HTTP answer.
    pub start_to_first_answer: Duration,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `command` (which prints `listening on https://ADDR` first) and waits until it
/// answers `GET /available_services` over TLS.
pub fn spawn(mut command: Command, ca_pem: &[u8]) -> Result<Served, BoxError> {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let mut stdout = std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut first = String::new();
    stdout.read_line(&mut first)?;
    let addr: SocketAddr = first
        .trim()
        .strip_prefix("listening on https://")
        .ok_or_else(|| format!("first line of the server: {first:?}"))?
        .parse()?;
    // Drain the rest of stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = stdout.read_to_end(&mut sink);
    });
    let mut served = Served {
        child,
        pid,
        addr,
        start_to_first_answer: Duration::ZERO,
    };
    let target = Arc::new(Target::new(addr, "localhost", ca_pem, None)?);
    let probe = Arc::new(Job {
        method: Method::GET,
        path: "/available_services".into(),
        form: Bytes::new(),
        check: client::accepted,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    loop {
        let outcome = runtime.block_on(client::run(
            target.clone(),
            probe.clone(),
            Mode::NewConnection,
            1,
            Limit::Requests(1),
            false,
        ));
        if outcome.ok == 1 {
            break;
        }
        if served.child.try_wait()?.is_some() {
            return Err("the server exited".into());
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err("the server did not answer within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    served.start_to_first_answer = started.elapsed();
    Ok(served)
}

/// A director installed in a scratch directory with one user, one application and one
/// running php service on the dummy cloud.
pub struct Installation {
    /// The scratch data directory.
    pub dir: tempfile::TempDir,
    /// The CA certificate clients trust.
    pub ca_pem: Vec<u8>,
    /// The user's certificate and key (from `/getcerts`).
    pub user: (Vec<u8>, Vec<u8>),
    /// The manager's certificate and key (from its VM's context script) and its service id.
    pub manager: (Vec<u8>, Vec<u8>, i64),
}

fn run_director(director: &Path, args: &[&str]) -> Result<(), BoxError> {
    let status = Command::new(director)
        .args(args)
        .env_remove("DIRECTOR_CFG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        return Err(format!("{} {args:?}: {status}", director.display()).into());
    }
    Ok(())
}

impl Installation {
    /// `director init localhost` and `adduser` in a new scratch directory.
    pub fn new(director: &Path) -> Result<Installation, BoxError> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().to_str().ok_or("scratch path")?.to_owned();
        run_director(director, &["--data-dir", &data, "init", "localhost"])?;
        run_director(
            director,
            &[
                "--data-dir",
                &data,
                "adduser",
                "load@example.org",
                USER,
                PASSWORD,
                "--credit",
                CREDIT,
            ],
        )?;
        // The sustained starts make hundreds of services for the one user.
        let config = dir.path().join("director.cfg");
        let text = std::fs::read_to_string(&config)?;
        let text = text.replacen(
            "[director]\n",
            "[director]\nMAX_SERVICES_PER_USER = 1000000\nMAX_APPLICATIONS_PER_USER = 1000000\n",
            1,
        );
        std::fs::write(&config, text)?;
        // The burst's accounts (`burst-0` ...): logins of one account are limited to 20 at
        // once (docs/operations.md, "Password guessing"); the burst comes through the
        // frontend's certificate, as the PHP frontend's logins do.
        for n in 0..BURST_ACCOUNTS {
            run_director(
                director,
                &[
                    "--data-dir",
                    &data,
                    "adduser",
                    &format!("burst-{n}@example.org"),
                    &format!("burst-{n}"),
                    PASSWORD,
                ],
            )?;
        }
        let ca_pem = std::fs::read(dir.path().join("certs/ca_cert.pem"))?;
        Ok(Installation {
            dir,
            ca_pem,
            user: (Vec::new(), Vec::new()),
            manager: (Vec::new(), Vec::new(), 0),
        })
    }

    /// `director serve` on a free loopback port, with `env` added to its environment.
    pub fn serve(&self, director: &Path, env: &[(String, String)]) -> Result<Served, BoxError> {
        let mut command = Command::new(director);
        command
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_remove("DIRECTOR_CFG")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        spawn(command, &self.ca_pem)
    }

    /// The director's own certificate directory (the baseline serves with it).
    pub fn cert_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// Fetches the user's certificates and starts one service to get a manager's.
    pub fn enrol(&mut self, addr: SocketAddr) -> Result<(), BoxError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let anonymous = Arc::new(Target::new(addr, "localhost", &self.ca_pem, None)?);
        let getcerts = Arc::new(Job {
            method: Method::POST,
            path: "/getcerts".into(),
            form: login_form(),
            check: client::accepted,
        });
        let zip = first_body(runtime.block_on(client::run(
            anonymous,
            getcerts,
            Mode::NewConnection,
            1,
            Limit::Requests(1),
            true,
        )))?;
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))?;
        let mut member = |name: &str| -> Result<Vec<u8>, BoxError> {
            let mut bytes = Vec::new();
            archive.by_name(name)?.read_to_end(&mut bytes)?;
            Ok(bytes)
        };
        self.user = (member("cert.pem")?, member("key.pem")?);
        let user = Arc::new(self.user_target(addr)?);
        let start = Arc::new(Job {
            method: Method::POST,
            path: "/start/php".into(),
            form: Bytes::new(),
            check: client::accepted,
        });
        let started = first_body(runtime.block_on(client::run(
            user,
            start,
            Mode::NewConnection,
            1,
            Limit::Requests(1),
            true,
        )))?;
        let started: serde_json::Value = serde_json::from_slice(&started)?;
        let sid = started["sid"].as_i64().ok_or("no sid in /start's answer")?;
        let vmid = started["vmid"]
            .as_str()
            .ok_or("no vmid in /start's answer")?;
        let script = std::fs::read_to_string(
            self.dir
                .path()
                .join("dummy-cloud")
                .join(format!("{vmid}.sh")),
        )?;
        self.manager = (
            here_document(&script, "cert.pem").ok_or("no cert.pem in the VM's script")?,
            here_document(&script, "key.pem").ok_or("no key.pem in the VM's script")?,
            sid,
        );
        Ok(())
    }

    /// A target presenting the user's certificate.
    pub fn user_target(&self, addr: SocketAddr) -> Result<Target, BoxError> {
        Target::new(
            addr,
            "localhost",
            &self.ca_pem,
            Some((&self.user.0, &self.user.1)),
        )
    }

    /// A target presenting the frontend's certificate (the director's own).
    pub fn frontend_target(&self, addr: SocketAddr) -> Result<Target, BoxError> {
        let cert = std::fs::read(self.dir.path().join("certs/cert.pem"))?;
        let key = std::fs::read(self.dir.path().join("certs/key.pem"))?;
        Target::new(addr, "localhost", &self.ca_pem, Some((&cert, &key)))
    }

    /// A target presenting the manager's certificate.
    pub fn manager_target(&self, addr: SocketAddr) -> Result<Target, BoxError> {
        Target::new(
            addr,
            "localhost",
            &self.ca_pem,
            Some((&self.manager.0, &self.manager.1)),
        )
    }
}

/// `username=…&password=…` of the load user.
pub fn login_form() -> Bytes {
    Bytes::from(format!("username={USER}&password={PASSWORD}"))
}

fn first_body(outcome: client::Outcome) -> Result<Bytes, BoxError> {
    outcome.bodies.into_iter().next().ok_or_else(|| {
        outcome
            .first_error
            .unwrap_or_else(|| "no answer".into())
            .into()
    })
}

/// The body of `cat <<EOF > /tmp/FILE` … `EOF` in a context script.
fn here_document(script: &str, file: &str) -> Option<Vec<u8>> {
    let start = script.find(&format!("cat <<EOF > /tmp/{file}\n"))?;
    let body = &script[start..];
    let body = &body[body.find('\n')? + 1..];
    Some((body[..body.find("\nEOF\n")?].trim_end().to_owned() + "\n").into_bytes())
}
