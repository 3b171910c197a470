//! Overlong user names against the real `director serve` (issue 22): 160 failed `/login` and
//! `/getcerts` with distinct 1 MB names, anonymous and through the frontend's certificate, leave the
//! director's memory within 10 % of what it was and its log small, no line holding a name.
//! Before, each name was kept whole by the login throttle (600 such logins took the resident
//! memory from 51 to 648 MiB) and logged whole for the frontend (120 MiB of log in 2.7 s).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::io::BufRead as _;
use std::process::Stdio;
use std::time::Duration;

mod support;
use support::{client, director, rss_kib, serve, terminate};

/// Logins with overlong names (a quarter per route and caller).
const N_LOGINS: usize = 160;
/// How many are in flight at once.
const CONCURRENCY: usize = 4;
/// Each name: about 1 MB, under the 1 MiB body limit with the rest of the form.
const NAME_BYTES: usize = 1_000_000;

/// A distinct name of [`NAME_BYTES`]: its number, then filler.
fn long_name(index: usize) -> String {
    let mut name = format!("n{index:07}");
    name.push_str(&"x".repeat(NAME_BYTES - name.len()));
    name
}

/// Posts `route` (`/login` or `/getcerts`) with names `indices` from `http`, `CONCURRENCY` at
/// a time; each must answer `false`, what a wrong password gets.
async fn fail_logins(
    http: &reqwest::Client,
    base: &str,
    route: &str,
    indices: impl Iterator<Item = usize>,
) {
    let indices: Vec<usize> = indices.collect();
    for batch in indices.chunks(CONCURRENCY) {
        let mut tasks = tokio::task::JoinSet::new();
        for &index in batch {
            let (http, url) = (http.clone(), format!("{base}{route}"));
            tasks.spawn(async move {
                let body = format!("username={}&password=wrong", long_name(index));
                let reply = http
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(reply.status(), 200);
                assert_eq!(reply.text().await.unwrap(), "false");
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    }
}

#[test]
fn megabyte_names_leave_memory_and_log_as_they_were() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    director(&data, &["init", "localhost"]);
    let log = temp.path().join("director.log");
    let (child, port) = serve(
        &data,
        "info",
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let pid = child.id();
    let base = format!("https://localhost:{port}");
    let ca_pem = std::fs::read_to_string(data.join("certs/ca_cert.pem")).unwrap();
    let cert = std::fs::read_to_string(data.join("certs/cert.pem")).unwrap();
    let key = std::fs::read_to_string(data.join("certs/key.pem")).unwrap();
    let anonymous = client(&ca_pem, None);
    let frontend = client(&ca_pem, Some((&cert, &key)));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (rss_before, rss_after, log_before, log_after) = runtime.block_on(async {
        // A warm-up of the same traffic: connections, TLS sessions, buffers of a 1 MB
        // request, so that what is compared is what the names themselves leave.
        fail_logins(&anonymous, &base, "/login", 0..CONCURRENCY).await;
        fail_logins(&frontend, &base, "/getcerts", 0..CONCURRENCY).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_before = rss_kib(pid);
        let log_before = std::fs::metadata(&log).unwrap().len();
        let quarter = N_LOGINS / 4;
        for (n, (http, route)) in [
            (&anonymous, "/login"),
            (&anonymous, "/getcerts"),
            (&frontend, "/login"),
            (&frontend, "/getcerts"),
        ]
        .into_iter()
        .enumerate()
        {
            let first = 100 + n * quarter;
            fail_logins(http, &base, route, first..first + quarter).await;
        }
        // Nothing was hashed (the names were refused first), so nothing waits to be freed:
        // a short pause lets the last connections close.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_after = rss_kib(pid);
        let log_after = std::fs::metadata(&log).unwrap().len();
        (rss_before, rss_after, log_before, log_after)
    });
    terminate(child);
    eprintln!(
        "{N_LOGINS} logins with 1 MB names: director RSS {rss_before} KiB before, {rss_after} KiB \
         after; log +{} bytes",
        log_after - log_before
    );
    assert!(
        rss_after * 10 <= rss_before * 11,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    let per_login = (log_after - log_before) / N_LOGINS as u64;
    assert!(per_login < 1024, "{per_login} bytes of log per login");
    let filler = "x".repeat(64);
    let file = std::fs::File::open(&log).unwrap();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.unwrap();
        assert!(line.len() < 4096, "a long log line: {}", &line[..200]);
        assert!(
            !line.contains(&filler),
            "a name in the log: {}",
            &line[..200]
        );
    }
}
