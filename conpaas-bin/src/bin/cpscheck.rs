//! `cpscheck`: diagnostics of a director installation (1.2's cpscheck.py, extended). One line
//! per check (`OK:`, `W:`, `E:`, `SKIP:`) or, with `--json`, a JSON array of the same results.
//! Exit 0 without errors, 1 with any error, 2 when the checks could not run at all.

// Printing the report is what this tool is for.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use conpaas_core::check::{self, CheckOptions, Status};
use conpaas_core::config::ConfigSource;

/// Exit status when cpscheck itself could not run (no configuration, bad arguments).
const EXIT_CANNOT_RUN: u8 = 2;

/// Checks a ConPaaS director installation and says how to fix what is wrong.
#[derive(Debug, Parser)]
#[command(
    name = "cpscheck",
    version,
    about = "Checks a ConPaaS director installation and says how to fix what is wrong"
)]
struct Cli {
    /// director.cfg to check (default: $DIRECTOR_CFG, /etc/cpsdirector/director.cfg, ./conpaas-data).
    #[arg(long, value_name = "FILE", conflicts_with = "data_dir")]
    config: Option<PathBuf>,
    /// Data directory holding director.cfg; never created.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print the results as a JSON array instead of lines.
    #[arg(long)]
    json: bool,
    /// Skip the checks that use the network (clouds, their clocks, the TLS handshake).
    #[arg(long)]
    no_network: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // Help and version are not failures; bad arguments mean nothing was checked.
            return if error.use_stderr() {
                ExitCode::from(EXIT_CANNOT_RUN)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing();
    match run(&cli) {
        Ok(code) => code,
        Err(error) => {
            // Each cause once, `E: ` before every line.
            let text = conpaas_core::error::ErrorChain(error.as_ref()).to_string();
            for line in text.lines() {
                eprintln!("E: {line}");
            }
            ExitCode::from(EXIT_CANNOT_RUN)
        }
    }
}

fn init_tracing() {
    // The report is the output; the library's own logs only on request.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let source = ConfigSource::resolve(cli.config.clone(), cli.data_dir.clone());
    let mut options = CheckOptions::recommended();
    options.network = !cli.no_network;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let results = runtime.block_on(check::run(&source, &options))?;

    let mut stdout = std::io::stdout().lock();
    if cli.json {
        serde_json::to_writer_pretty(&mut stdout, &results)?;
        writeln!(stdout)?;
    } else {
        for result in &results {
            writeln!(stdout, "{}", result.line())?;
        }
    }
    stdout.flush()?;
    let failed = results.iter().any(|result| result.status == Status::Error);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
