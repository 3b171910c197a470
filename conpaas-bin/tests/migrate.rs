//! `director migrate-db`: an installation made through the API on SQLite, copied to
//! PostgreSQL, then served from PostgreSQL: the API answers the same (listings, logins,
//! credit), and new ids go on above the copied ones.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

mod support;
use support::{Database, client, director, serve};

fn migrate_db(from: &str, to: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_director"))
        .args(["migrate-db", "--from", from, "--to", to])
        .env_remove("DIRECTOR_CFG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// What the API answers about the installation: alice's login (credit), her applications and
/// services, bob's login.
struct Answers {
    login: serde_json::Value,
    listapp: String,
    list: String,
    bob: serde_json::Value,
}

async fn answers(data: &Path, port: u16, alice: (&str, &str)) -> Answers {
    let ca = std::fs::read_to_string(data.join("certs/ca_cert.pem")).unwrap();
    let base = format!("https://localhost:{port}");
    let anonymous = client(&ca, None);
    let user = client(&ca, Some(alice));
    let login = |name: &'static str, password: &'static str| {
        let anonymous = anonymous.clone();
        let base = base.clone();
        async move {
            let text = anonymous
                .post(format!("{base}/login"))
                .form(&[("username", name), ("password", password)])
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            serde_json::from_str::<serde_json::Value>(&text).unwrap()
        }
    };
    let listing = |path: &'static str| {
        let (user, base) = (user.clone(), base.clone());
        async move {
            let answer = user.post(format!("{base}{path}")).send().await.unwrap();
            answer.text().await.unwrap()
        }
    };
    Answers {
        login: login("alice", "alice-pw").await,
        listapp: listing("/listapp").await,
        list: listing("/list").await,
        bob: login("bob", "bob-pw").await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installation_moves_from_sqlite_to_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    director(data, &["init", "localhost"]);
    director(
        data,
        &[
            "adduser",
            "alice@example.org",
            "alice",
            "alice-pw",
            "--credit",
            "50",
        ],
    );
    director(
        data,
        &[
            "adduser",
            "bob@example.org",
            "bob",
            "bob-pw",
            "--credit",
            "7",
        ],
    );

    // Through the API on SQLite: alice's certificates, an application, two services.
    let (mut child, port) = serve(data, "error", Stdio::null());
    let ca = std::fs::read_to_string(data.join("certs/ca_cert.pem")).unwrap();
    let base = format!("https://localhost:{port}");
    let (cert, key) = support::user_certificates(&base, &ca, "alice", "alice-pw").await;
    let user = client(&ca, Some((&cert, &key)));
    let created = user
        .post(format!("{base}/createapp"))
        .form(&[("name", "shop")])
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success());
    for _ in 0..2 {
        let started = user.post(format!("{base}/start/php")).send().await.unwrap();
        assert!(started.text().await.unwrap().contains("\"sid\""));
    }
    let before = answers(data, port, (&cert, &key)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(before.login["credit"], 48, "two starts charged");

    let audit_before = audit_lines(data);
    assert!(
        audit_before
            .iter()
            .any(|line| line.contains("\"service.started\"")),
        "{audit_before:?}"
    );
    let pg = Database::create("migrate");
    let sqlite = format!("sqlite:///{}", data.join("director.db").display());
    let out = migrate_db(&sqlite, &pg.url());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for counted in [
        "2 user(s)",
        "3 application(s)",
        "2 service(s)",
        &format!("{} audit event(s)", audit_before.len()),
        "55 credit in all",
    ] {
        assert!(stdout.contains(counted), "{stdout}");
    }
    // Again into the now full target: refused, nothing written.
    let again = migrate_db(&sqlite, &pg.url());
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The same installation served from PostgreSQL answers the same.
    let config = data.join("director.cfg");
    let text = std::fs::read_to_string(&config).unwrap();
    let text: String = text
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("DATABASE_URI") {
                format!("DATABASE_URI = {}\n", pg.url())
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    std::fs::write(&config, text).unwrap();
    std::fs::remove_file(data.join("director.db")).unwrap();
    // The audit log came along, event for event.
    assert_eq!(audit_lines(data), audit_before);
    let (mut child, port) = serve(data, "error", Stdio::null());
    let after = answers(data, port, (&cert, &key)).await;
    assert_eq!(after.login, before.login);
    assert_eq!(after.bob, before.bob);
    assert_eq!(after.listapp, before.listapp);
    assert_eq!(after.list, before.list);
    // Ids go on above the copied ones.
    let base = format!("https://localhost:{port}");
    let user = client(&ca, Some((&cert, &key)));
    let third: serde_json::Value = serde_json::from_str(
        &user
            .post(format!("{base}/start/php"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(third["sid"], 3, "{third}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `director audit --json` of the installation in `data`, one line per event.
fn audit_lines(data: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_director"))
        .arg("--data-dir")
        .arg(data)
        .args(["audit", "--json"])
        .env_remove("DIRECTOR_CFG")
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
