//! The load harness: concurrent TLS clients with client certificates against a director,
//! and the bare hyper + tokio-rustls baseline they are compared with (docs/performance.md).
//!
//! ```sh
//! cargo build --release --bin director
//! cargo bench --bench load -- suite                     # every scenario, table on stdout
//! cargo bench --bench load -- suite --only listapp,credit --reps 1 --secs 2
//! cargo bench --bench load -- run --url https://host:5555 --ca ca_cert.pem \
//!     --cert cert.pem --key key.pem --path /listapp -c 32 --secs 10 --pid 1234
//! cargo bench --bench load -- baseline --listen 127.0.0.1:0 --cert-dir conpaas-data/certs
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

mod baseline;
mod client;
mod install;
mod procfs;
mod suite;

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use hyper::http::Method;

use crate::client::{Job, Limit, Mode, Target};

#[derive(Debug, Parser)]
#[command(
    name = "load",
    about = "Load harness of the director (docs/performance.md)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install a director in a scratch directory, start it and the baseline, run every
    /// scenario and print the table.
    Suite {
        /// The director binary.
        #[arg(long, default_value = "target/release/director")]
        director: PathBuf,
        /// Repetitions of each director/baseline pair (medians are reported).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Seconds of each timed run.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Only these scenarios (listapp, list, handshake, credit, connections, login,
        /// getcerts, start, burst), comma-separated.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Logins of the memory burst.
        #[arg(long, default_value_t = 1000)]
        burst_logins: u64,
        /// Connections held open in the connections scenario.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Exit 1 when a scenario had errors or lost updates (targets are not checked).
        #[arg(long)]
        check: bool,
    },
    /// One scenario against any director (or any HTTPS server).
    Run {
        /// Base URL, `https://HOST:PORT`.
        #[arg(long)]
        url: String,
        /// CA certificate (PEM) the server's certificate chains to.
        #[arg(long)]
        ca: PathBuf,
        /// Client certificate (PEM).
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// Client key (PEM).
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// Path and query of the request.
        #[arg(long, default_value = "/listapp")]
        path: String,
        /// Method.
        #[arg(long, default_value = "POST")]
        method: String,
        /// Form body (`a=1&b=2`).
        #[arg(long, default_value = "")]
        form: String,
        /// A new TLS connection per request instead of keep-alive.
        #[arg(long)]
        new_connections: bool,
        /// Concurrent clients.
        #[arg(short = 'c', long, default_value_t = 32)]
        concurrency: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        /// The server's pid, to report its RSS before, during and after.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// The bare baseline server.
    Baseline {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// A director's CERT_DIR: cert.pem, key.pem, ca_cert.pem.
        #[arg(long)]
        cert_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    // `cargo bench` adds `--bench`; it means nothing here.
    let cli = Cli::parse_from(std::env::args().filter(|arg| arg != "--bench"));
    let result = match cli.command {
        Command::Suite {
            director,
            reps,
            secs,
            only,
            burst_logins,
            connections,
            check,
        } => suite::run(suite::Settings {
            director,
            reps,
            secs,
            only,
            burst_logins,
            connections,
            check,
        }),
        Command::Baseline { listen, cert_dir } => baseline::serve(listen, &cert_dir),
        Command::Run {
            url,
            ca,
            cert,
            key,
            path,
            method,
            form,
            new_connections,
            concurrency,
            secs,
            pid,
        } => run_one(RunArgs {
            url,
            ca,
            client: cert.zip(key),
            path,
            method,
            form,
            new_connections,
            concurrency,
            secs,
            pid,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("load: {error}");
            ExitCode::FAILURE
        }
    }
}

struct RunArgs {
    url: String,
    ca: PathBuf,
    client: Option<(PathBuf, PathBuf)>,
    path: String,
    method: String,
    form: String,
    new_connections: bool,
    concurrency: usize,
    secs: f64,
    pid: Option<u32>,
}

fn run_one(args: RunArgs) -> Result<(), client::BoxError> {
    let authority = args
        .url
        .strip_prefix("https://")
        .ok_or("--url must start with https://")?
        .trim_end_matches('/');
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
        .trim_matches(['[', ']']);
    let with_port = if authority.rsplit_once(':').is_some() {
        authority.to_owned()
    } else {
        format!("{authority}:443")
    };
    let addr = with_port
        .to_socket_addrs()?
        .next()
        .ok_or("the URL's host has no address")?;
    let ca_pem = std::fs::read(&args.ca)?;
    let client = match &args.client {
        Some((cert, key)) => Some((std::fs::read(cert)?, std::fs::read(key)?)),
        None => None,
    };
    let target = Arc::new(Target::new(
        addr,
        host,
        &ca_pem,
        client.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
    )?);
    let job = Arc::new(Job {
        method: Method::from_bytes(args.method.as_bytes())?,
        path: args.path,
        form: Bytes::from(args.form),
        check: client::accepted,
    });
    let mode = if args.new_connections {
        Mode::NewConnection
    } else {
        Mode::KeepAlive
    };
    let rss = |label: &str| {
        if let Some(pid) = args.pid {
            println!(
                "{label}: RSS {:.1} MiB, {} threads",
                procfs::mib(procfs::rss_kib(pid)),
                procfs::threads(pid)
            );
        }
    };
    rss("before");
    let sampler = args.pid.map(procfs::PeakSampler::start);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(client::run(
        target,
        job,
        mode,
        args.concurrency,
        Limit::For(Duration::from_secs_f64(args.secs)),
        false,
    ));
    if let Some((peak, threads)) = sampler.map(procfs::PeakSampler::finish) {
        println!(
            "during: peak RSS {:.1} MiB, {threads} threads",
            procfs::mib(peak)
        );
    }
    println!(
        "{} ok, {} errors{} in {:.1} s: {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms",
        outcome.ok,
        outcome.errors,
        outcome
            .first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        outcome.elapsed.as_secs_f64(),
        outcome.rate(),
        outcome.quantile_ms(0.5),
        outcome.quantile_ms(0.99)
    );
    std::thread::sleep(Duration::from_secs(1));
    rss("1 s after");
    Ok(())
}
