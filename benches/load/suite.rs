//! The scenarios of issue 10's table, each run against the director and, where a ratio means
//! something, against the bare baseline in the same run, interleaved, medians of the
//! repetitions. Prints one markdown table: figure, target, measured, baseline, ratio, verdict.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::http::{Method, StatusCode};

use crate::client::{self, BoxError, Job, Limit, Mode, Outcome, Target};
use crate::install::{self, Installation, Served};
use crate::procfs::{self, PeakSampler, mib};

/// What to run.
pub struct Settings {
    /// The `director` binary.
    pub director: PathBuf,
    /// Repetitions of each ratio scenario (director and baseline interleaved).
    pub reps: usize,
    /// Seconds of each timed run.
    pub secs: f64,
    /// Scenario names to run (all when empty).
    pub only: Vec<String>,
    /// Logins of the burst.
    pub burst_logins: u64,
    /// Connections of the many-connections scenario.
    pub connections: usize,
    /// Fail (exit 1) when a scenario had errors or lost updates (targets are not checked).
    pub check: bool,
}

/// One line of the report.
struct Row {
    figure: String,
    target: String,
    measured: String,
    baseline: String,
    ratio: String,
    verdict: &'static str,
    /// Errors, failed connections or lost updates: the run itself went wrong.
    failed: bool,
    /// The `--only` name of the scenario that measured it.
    scenario: &'static str,
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "—",
    }
}

struct Context {
    settings: Settings,
    director_bin: PathBuf,
    installation: Installation,
    director: Served,
    baseline: Served,
    runtime: tokio::runtime::Runtime,
    rows: Vec<Row>,
}

impl Context {
    fn secs(&self) -> Limit {
        Limit::For(Duration::from_secs_f64(self.settings.secs))
    }

    fn run(
        &self,
        target: &Arc<Target>,
        job: &Arc<Job>,
        mode: Mode,
        concurrency: usize,
        limit: Limit,
    ) -> Outcome {
        self.runtime.block_on(client::run(
            target.clone(),
            job.clone(),
            mode,
            concurrency,
            limit,
            false,
        ))
    }

    /// `reps` interleaved runs against the director and the baseline: the median run of each
    /// (by rate).
    fn paired(
        &self,
        director: (&Arc<Target>, &Arc<Job>),
        baseline: (&Arc<Target>, &Arc<Job>),
        mode: Mode,
        concurrency: usize,
    ) -> (Outcome, Outcome) {
        let (director_pid, baseline_pid) = (self.director.pid, self.baseline.pid);
        // A short warm-up of each: connections, caches, the pool's threads.
        let warm = Limit::For(Duration::from_millis(300));
        self.run(director.0, director.1, mode, concurrency, warm);
        self.run(baseline.0, baseline.1, mode, concurrency, warm);
        let mut ours = Vec::new();
        let mut bare = Vec::new();
        for _ in 0..self.settings.reps.max(1) {
            ours.push(server_cpu(director_pid, || {
                self.run(director.0, director.1, mode, concurrency, self.secs())
            }));
            bare.push(server_cpu(baseline_pid, || {
                self.run(baseline.0, baseline.1, mode, concurrency, self.secs())
            }));
        }
        (median(ours), median(bare))
    }

    fn wanted(&self, name: &str) -> bool {
        self.settings.only.is_empty() || self.settings.only.iter().any(|only| only == name)
    }

    fn user(&self, addr: std::net::SocketAddr) -> Arc<Target> {
        Arc::new(self.installation.user_target(addr).expect("user target"))
    }

    fn manager(&self, addr: std::net::SocketAddr) -> Arc<Target> {
        Arc::new(
            self.installation
                .manager_target(addr)
                .expect("manager target"),
        )
    }

    fn anonymous(&self, addr: std::net::SocketAddr) -> Arc<Target> {
        Arc::new(
            Target::new(addr, "localhost", &self.installation.ca_pem, None)
                .expect("anonymous target"),
        )
    }
}

/// `work`'s outcome with the CPU time `pid` spent on it per request.
fn server_cpu(pid: u32, work: impl FnOnce() -> Outcome) -> Outcome {
    let (mut outcome, ms) = cpu_ms_per_call(pid, work);
    outcome.server_cpu_us = Some(ms * 1000.0);
    outcome
}

fn median(mut runs: Vec<Outcome>) -> Outcome {
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    let middle = runs.len() / 2;
    runs.swap_remove(middle)
}

fn job(method: Method, path: &str, form: Bytes, check: fn(StatusCode, &[u8]) -> bool) -> Arc<Job> {
    Arc::new(Job {
        method,
        path: path.to_owned(),
        form,
        check,
    })
}

/// Flask's `{"error": false}` of an applied decrement.
fn decrement_applied(status: StatusCode, body: &[u8]) -> bool {
    status == StatusCode::OK
        && serde_json::from_slice::<serde_json::Value>(body)
            .is_ok_and(|answer| answer["error"] == serde_json::Value::Bool(false))
}

fn rate(outcome: &Outcome) -> String {
    let errors = if outcome.errors == 0 {
        String::new()
    } else {
        format!(
            ", **{} errors** ({})",
            outcome.errors,
            outcome.first_error.as_deref().unwrap_or("?")
        )
    };
    let cpu = outcome
        .server_cpu_us
        .map(|us| format!(", server CPU {us:.0} µs/request"))
        .unwrap_or_default();
    format!(
        "{:.0}/s, p50 {:.2} ms, p99 {:.2} ms{cpu}{errors}",
        outcome.rate(),
        outcome.quantile_ms(0.5),
        outcome.quantile_ms(0.99)
    )
}

fn cpu_ms_per_call(pid: u32, work: impl FnOnce() -> Outcome) -> (Outcome, f64) {
    let before = procfs::cpu_ticks(pid);
    let outcome = work();
    let ticks = procfs::cpu_ticks(pid).saturating_sub(before);
    let calls = (outcome.ok + outcome.errors).max(1);
    (
        outcome,
        ticks as f64 / procfs::TICKS_PER_SECOND * 1000.0 / calls as f64,
    )
}

/// Runs the suite and prints the table.
pub fn run(settings: Settings) -> Result<(), BoxError> {
    let director_bin = std::fs::canonicalize(&settings.director)
        .map_err(|error| format!("{}: {error}", settings.director.display()))?;
    let mut installation = Installation::new(&director_bin)?;
    let director = installation.serve(&director_bin, &[])?;
    eprintln!(
        "director {} pid {} on {}, first answer after {:.0} ms",
        director_bin.display(),
        director.pid,
        director.addr,
        director.start_to_first_answer.as_secs_f64() * 1000.0
    );
    // Idle: settled after start-up (the key pool filled), before any request of ours.
    std::thread::sleep(Duration::from_secs(3));
    let idle = procfs::rss_kib(director.pid);
    let mut baseline_command = Command::new(std::env::current_exe()?);
    baseline_command
        .args(["baseline", "--listen", "127.0.0.1:0", "--cert-dir"])
        .arg(installation.cert_dir());
    let baseline = install::spawn(baseline_command, &installation.ca_pem)?;
    std::thread::sleep(Duration::from_millis(500));
    let baseline_idle = procfs::rss_kib(baseline.pid);
    installation.enrol(director.addr)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut cx = Context {
        settings,
        director_bin,
        installation,
        director,
        baseline,
        runtime,
        rows: Vec::new(),
    };
    cx.rows.push(Row {
        figure: "idle RSS; start to first answer".into(),
        target: "≤ 20 MiB".into(),
        measured: format!(
            "{:.1} MiB; {:.0} ms",
            mib(idle),
            cx.director.start_to_first_answer.as_secs_f64() * 1000.0
        ),
        baseline: format!(
            "{:.1} MiB; {:.0} ms",
            mib(baseline_idle),
            cx.baseline.start_to_first_answer.as_secs_f64() * 1000.0
        ),
        ratio: format!("{:.2}", idle as f64 / baseline_idle.max(1) as f64),
        verdict: verdict(Some(mib(idle) <= 20.0)),
        failed: false,
        scenario: "",
    });

    for &(name, scenario) in SCENARIOS {
        if cx.wanted(name) {
            eprintln!("scenario {name}");
            let before = cx.rows.len();
            scenario(&mut cx);
            for row in &mut cx.rows[before..] {
                row.scenario = name;
            }
        }
    }

    let failed: Vec<&str> = cx
        .rows
        .iter()
        .filter(|row| row.failed)
        .map(|row| row.figure.as_str())
        .collect();
    println!("| figure | target | director | baseline | ratio | verdict | `--only` |");
    println!("|---|---|---|---|---|---|---|");
    for row in &cx.rows {
        let scenario = if row.scenario.is_empty() {
            "(any)"
        } else {
            row.scenario
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {scenario} |",
            row.figure, row.target, row.measured, row.baseline, row.ratio, row.verdict
        );
    }
    if cx.settings.check && !failed.is_empty() {
        return Err(format!("errors or lost updates in: {}", failed.join("; ")).into());
    }
    Ok(())
}

type Scenario = fn(&mut Context);

const SCENARIOS: &[(&str, Scenario)] = &[
    ("listapp", listapp),
    ("list", list),
    ("handshake", handshake),
    ("credit", credit),
    ("connections", connections),
    ("login", login),
    ("getcerts", getcerts),
    ("start", start),
    ("burst", burst),
];

fn keep_alive_read(cx: &mut Context, path: &str, target_ratio: Option<f64>) {
    let read = job(Method::POST, path, Bytes::new(), client::accepted);
    let (ours, bare) = cx.paired(
        (&cx.user(cx.director.addr), &read),
        (&cx.user(cx.baseline.addr), &read),
        Mode::KeepAlive,
        32,
    );
    let ratio = ours.rate() / bare.rate().max(1e-9);
    let met = target_ratio
        .map(|wanted| ratio >= wanted && ours.quantile_ms(0.99) <= 10.0 && ours.errors == 0);
    cx.rows.push(Row {
        figure: format!("`{path}`, user certificate, keep-alive, c=32"),
        target: target_ratio.map_or("—".into(), |wanted| {
            format!("≥ {wanted:.2} × baseline, p99 ≤ 10 ms")
        }),
        measured: rate(&ours),
        baseline: rate(&bare),
        ratio: format!("{ratio:.2}"),
        verdict: verdict(met),
        failed: ours.errors + bare.errors > 0,
        scenario: "",
    });
}

fn listapp(cx: &mut Context) {
    keep_alive_read(cx, "/listapp", Some(0.60));
}

fn list(cx: &mut Context) {
    keep_alive_read(cx, "/list", None);
}

fn handshake(cx: &mut Context) {
    let read = job(Method::POST, "/listapp", Bytes::new(), client::accepted);
    let (ours, bare) = cx.paired(
        (&cx.user(cx.director.addr), &read),
        (&cx.user(cx.baseline.addr), &read),
        Mode::NewConnection,
        8,
    );
    cx.rows.push(Row {
        figure: "new TLS connection with a user certificate per `/listapp`, c=8".into(),
        target: "—".into(),
        measured: rate(&ours),
        baseline: rate(&bare),
        ratio: format!("{:.2}", ours.rate() / bare.rate().max(1e-9)),
        verdict: verdict(None),
        failed: ours.errors + bare.errors > 0,
        scenario: "",
    });
}

/// The load user's credit, from `/login`'s answer.
fn credit_now(cx: &Context) -> Option<i64> {
    let login = job(
        Method::POST,
        "/login",
        install::login_form(),
        client::accepted,
    );
    let outcome = cx.runtime.block_on(client::run(
        cx.anonymous(cx.director.addr),
        login,
        Mode::NewConnection,
        1,
        Limit::Requests(1),
        true,
    ));
    let body = outcome.bodies.first()?;
    serde_json::from_slice::<serde_json::Value>(body).ok()?["credit"].as_i64()
}

fn credit(cx: &mut Context) {
    let sid = cx.installation.manager.2;
    let decrement = job(
        Method::POST,
        "/callback/decrementUserCredit.php",
        Bytes::from(format!("sid={sid}&decrement=1")),
        decrement_applied,
    );
    // The baseline answers `[]`: any 200 is its success.
    let bare_job = job(
        Method::POST,
        "/callback/decrementUserCredit.php",
        Bytes::from(format!("sid={sid}&decrement=1")),
        |status, _| status == StatusCode::OK,
    );
    let before = credit_now(cx);
    let director = cx.manager(cx.director.addr);
    let baseline = cx.manager(cx.baseline.addr);
    // Every run counts: the warm-up's applied decrements too.
    let warm = cx.run(
        &director,
        &decrement,
        Mode::NewConnection,
        16,
        Limit::For(Duration::from_millis(300)),
    );
    let mut applied = warm.ok;
    let mut ours = Vec::new();
    let mut bare = Vec::new();
    cx.run(
        &baseline,
        &bare_job,
        Mode::NewConnection,
        16,
        Limit::For(Duration::from_millis(300)),
    );
    for _ in 0..cx.settings.reps.max(1) {
        let run = server_cpu(cx.director.pid, || {
            cx.run(&director, &decrement, Mode::NewConnection, 16, cx.secs())
        });
        applied += run.ok;
        ours.push(run);
        bare.push(server_cpu(cx.baseline.pid, || {
            cx.run(&baseline, &bare_job, Mode::NewConnection, 16, cx.secs())
        }));
    }
    let after = credit_now(cx);
    let lost = match (before, after) {
        (Some(before), Some(after)) => {
            Some(before - after - i64::try_from(applied).unwrap_or(i64::MAX))
        }
        _ => None,
    };
    let (ours, bare) = (median(ours), median(bare));
    let ratio = ours.rate() / bare.rate().max(1e-9);
    cx.rows.push(Row {
        figure: "manager credit callback, new TLS connection each, c=16".into(),
        target: "≥ 0.80 × baseline handshakes, 0 lost updates".into(),
        measured: format!(
            "{}; {applied} applied, lost updates: {}",
            rate(&ours),
            lost.map_or("unknown".into(), |lost| lost.to_string())
        ),
        baseline: rate(&bare),
        ratio: format!("{ratio:.2}"),
        verdict: verdict(Some(ratio >= 0.80 && lost == Some(0) && ours.errors == 0)),
        failed: ours.errors + bare.errors > 0 || lost != Some(0),
        scenario: "",
    });
}

fn connections(cx: &mut Context) {
    let n = cx.settings.connections;
    let read = job(Method::POST, "/listapp", Bytes::new(), client::accepted);
    let mut measured = Vec::new();
    // From 16 loopback addresses: the director serves at most 256 connections of one.
    let spread = |addr| {
        Arc::new(
            cx.installation
                .user_target(addr)
                .expect("user target")
                .with_sources(16),
        )
    };
    for (pid, target) in [
        (cx.director.pid, spread(cx.director.addr)),
        (cx.baseline.pid, spread(cx.baseline.addr)),
    ] {
        let sampler = PeakSampler::start(pid);
        let (open, failed_open) = cx.runtime.block_on(client::open_connections(
            target.clone(),
            read.clone(),
            n,
            64,
        ));
        std::thread::sleep(Duration::from_secs(1));
        let held = procfs::rss_kib(pid);
        // Every connection is still served.
        let (open, failed_use) =
            cx.runtime
                .block_on(client::use_connections(target.clone(), read.clone(), open));
        let (peak, _) = sampler.finish();
        drop(open);
        std::thread::sleep(Duration::from_secs(10));
        let after = procfs::rss_kib(pid);
        measured.push((held, peak, after, failed_open + failed_use));
    }
    let ((held, peak, after, failed), (bare_held, bare_peak, bare_after, bare_failed)) =
        (measured[0], measured[1]);
    cx.rows.push(Row {
        figure: format!("RSS under {n} kept-alive TLS connections (user certificate)"),
        target: "≤ 100 MiB".into(),
        measured: format!(
            "{:.1} MiB held, peak {:.1} MiB, {:.1} MiB 10 s after closing, {failed} failed",
            mib(held),
            mib(peak),
            mib(after)
        ),
        baseline: format!(
            "{:.1} MiB held, peak {:.1} MiB, {:.1} MiB after, {bare_failed} failed",
            mib(bare_held),
            mib(bare_peak),
            mib(bare_after)
        ),
        ratio: format!("{:.2}", peak as f64 / bare_peak.max(1) as f64),
        verdict: verdict(Some(mib(peak) <= 100.0 && failed == 0)),
        failed: failed + bare_failed > 0,
        scenario: "",
    });
}

fn login(cx: &mut Context) {
    let login = job(
        Method::POST,
        "/login",
        install::login_form(),
        client::accepted,
    );
    let anonymous = cx.anonymous(cx.director.addr);
    let (outcome, cpu) = cpu_ms_per_call(cx.director.pid, || {
        cx.run(&anonymous, &login, Mode::KeepAlive, 8, cx.secs())
    });
    cx.rows.push(Row {
        figure: "`/login`, keep-alive, c=8".into(),
        target: "—".into(),
        measured: format!("{}; {cpu:.1} ms CPU per call", rate(&outcome)),
        baseline: "—".into(),
        ratio: "—".into(),
        verdict: verdict(None),
        failed: outcome.errors > 0,
        scenario: "",
    });
}

/// Rounds of `per_round` sequential calls of `job`, `pause` apart so that the key pool
/// refills: the latencies of all of them, sorted.
fn rounds(cx: &Context, target: &Arc<Target>, job: &Arc<Job>, per_round: u64) -> Outcome {
    let mut all = Outcome::default();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(3));
        let round = cx.run(target, job, Mode::KeepAlive, 1, Limit::Requests(per_round));
        all.ok += round.ok;
        all.errors += round.errors;
        all.first_error = all.first_error.or(round.first_error);
        all.elapsed += round.elapsed;
        all.latencies_us.extend(round.latencies_us);
    }
    all.latencies_us.sort_unstable();
    all
}

fn getcerts(cx: &mut Context) {
    let anonymous = cx.anonymous(cx.director.addr);
    let login = job(
        Method::POST,
        "/login",
        install::login_form(),
        client::accepted,
    );
    let getcerts = job(
        Method::POST,
        "/getcerts",
        install::login_form(),
        client::accepted,
    );
    let logins = rounds(cx, &anonymous, &login, 8);
    let warm = rounds(cx, &anonymous, &getcerts, 8);
    let extra = warm.quantile_ms(0.5) - logins.quantile_ms(0.5);
    cx.rows.push(Row {
        figure: "`/getcerts` p50, warm key pool (3 rounds of 8, sequential)".into(),
        target: "≤ `/login` p50 + 5 ms".into(),
        measured: format!(
            "p50 {:.1} ms, p90 {:.1} ms (`/login` p50 {:.1} ms: +{extra:.1} ms){}",
            warm.quantile_ms(0.5),
            warm.quantile_ms(0.9),
            logins.quantile_ms(0.5),
            if warm.errors + logins.errors > 0 {
                ", **errors**"
            } else {
                ""
            }
        ),
        baseline: "—".into(),
        ratio: "—".into(),
        verdict: verdict(Some(extra <= 5.0 && warm.errors == 0)),
        failed: warm.errors + logins.errors > 0,
        scenario: "",
    });
    sustained(cx, &anonymous, &getcerts, "`/getcerts`");
}

/// `job` at c=4 for the run's time, past what the key pool holds: its rate and CPU per call.
fn sustained(cx: &mut Context, target: &Arc<Target>, job: &Arc<Job>, what: &str) {
    std::thread::sleep(Duration::from_secs(3));
    let (outcome, cpu) = cpu_ms_per_call(cx.director.pid, || {
        cx.run(target, job, Mode::KeepAlive, 4, cx.secs())
    });
    cx.rows.push(Row {
        figure: format!("{what}, keep-alive, c=4, sustained (past the pool)"),
        target: "—".into(),
        measured: format!("{}; {cpu:.1} ms CPU per call", rate(&outcome)),
        baseline: "—".into(),
        ratio: "—".into(),
        verdict: verdict(None),
        failed: outcome.errors > 0,
        scenario: "",
    });
}

fn start(cx: &mut Context) {
    let user = cx.user(cx.director.addr);
    let start = job(Method::POST, "/start/php", Bytes::new(), client::accepted);
    let warm = rounds(cx, &user, &start, 4);
    cx.rows.push(Row {
        figure: "`/start/php` p50 on the dummy cloud, warm key pool (3 rounds of 4)".into(),
        target: "≤ 10 ms".into(),
        measured: format!(
            "p50 {:.1} ms, p90 {:.1} ms{}",
            warm.quantile_ms(0.5),
            warm.quantile_ms(0.9),
            if warm.errors > 0 { ", **errors**" } else { "" }
        ),
        baseline: "—".into(),
        ratio: "—".into(),
        verdict: verdict(Some(warm.quantile_ms(0.5) <= 10.0 && warm.errors == 0)),
        failed: warm.errors > 0,
        scenario: "",
    });
    sustained(cx, &user, &start, "`/start/php`");
}

/// The burst of logins on a director started for it (same data directory), so that its
/// figures are the logins' alone, not what the scenarios before left in the allocator.
fn burst(cx: &mut Context) {
    let n = cx.settings.burst_logins;
    let accounts = install::BURST_ACCOUNTS;
    let logins: Vec<Arc<Job>> = (0..accounts)
        .map(|account| {
            job(
                Method::POST,
                "/login",
                Bytes::from(format!(
                    "username=burst-{account}&password={}",
                    install::PASSWORD
                )),
                client::accepted,
            )
        })
        .collect();
    let fresh = cx
        .installation
        .serve(&cx.director_bin, &[])
        .expect("a second director");
    let frontend = Arc::new(
        cx.installation
            .frontend_target(fresh.addr)
            .expect("frontend target"),
    );
    std::thread::sleep(Duration::from_secs(3));
    let idle = procfs::rss_kib(fresh.pid);
    let before = idle;
    let sampler = PeakSampler::start(fresh.pid);
    // 32 clients in all: 32 / accounts per account.
    let per_account = u64::try_from(accounts).unwrap_or(1);
    let outcome = Outcome::merge(cx.runtime.block_on(futures_util::future::join_all(
        logins.iter().map(|login| {
            client::run(
                frontend.clone(),
                login.clone(),
                Mode::KeepAlive,
                32 / accounts,
                Limit::Requests(n / per_account),
                false,
            )
        }),
    )));
    let (peak, peak_threads) = sampler.finish();
    std::thread::sleep(Duration::from_secs(10));
    let after = procfs::rss_kib(fresh.pid);
    drop(fresh);
    let met = mib(peak) <= 150.0 && after as f64 <= 2.0 * idle as f64;
    cx.rows.push(Row {
        figure: format!(
            "RSS over {n} `/login` at c=32 through the frontend, {accounts} accounts (fresh director): idle, peak, 10 s after"
        ),
        target: "peak ≤ 150 MiB, after ≤ 2 × idle".into(),
        measured: format!(
            "{:.1} / {:.1} ({peak_threads} threads) / {:.1} MiB ({:.2} × idle); {}",
            mib(before),
            mib(peak),
            mib(after),
            after as f64 / idle.max(1) as f64,
            rate(&outcome)
        ),
        baseline: "—".into(),
        ratio: "—".into(),
        verdict: verdict(Some(met && outcome.errors == 0)),
        failed: outcome.errors > 0,
        scenario: "",
    });
}
