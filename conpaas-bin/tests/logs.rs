//! The request log of the real `director serve --log-format json` at debug level, over a whole
//! story (a new user, login, getcerts, createapp, start, a manager's credit decrement, stop):
//! every line is a JSON object, every answer has its `request` line with a request id, the
//! route pattern, an outcome and an integer latency, and no line holds a secret: not the
//! password, its MD5, the stored argon2 hash, nor any key or certificate body.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};

use secrecy::ExposeSecret as _;

mod support;
use support::vm_files;

const PASSWORD: &str = "Tr0ub4dor-and-3-horses";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `curl` against the director, trusting its CA; answers the body.
fn curl(data: &Path, port: u16, args: &[&str], path: &str) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", "--cacert"])
        .arg(data.join("certs/ca_cert.pem"))
        .args(args)
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {path}: {}", text(&out.stderr));
    out.stdout
}

/// The base64 lines of every PEM block of `pem` (what a leaked key or certificate looks like).
fn pem_bodies(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|line| !line.starts_with("-----") && line.len() >= 16)
        .map(str::to_owned)
        .collect()
}

/// The here-document `cat <<EOF > .../<file>` of a context script.
fn here_document(script: &str, file: &str) -> String {
    let mut lines = script.lines();
    lines
        .by_ref()
        .find(|line| line.starts_with("cat <<EOF > ") && line.ends_with(&format!("/{file}")))
        .unwrap_or_else(|| panic!("no here-document for {file}"));
    let mut body: String = lines
        .take_while(|line| *line != "EOF")
        .collect::<Vec<_>>()
        .join("\n");
    body.push('\n');
    body
}

#[test]
fn a_whole_story_logs_json_request_lines_and_no_secret() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let init = Command::new(env!("CARGO_BIN_EXE_director"))
        .arg("--data-dir")
        .arg(&data)
        .args(["init", "localhost"])
        .env_remove("DIRECTOR_CFG")
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", text(&init.stderr));
    let log = temp.path().join("director.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_director"))
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .env_remove("DIRECTOR_CFG")
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let port: u16 = {
        use std::io::BufRead as _;
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        first
            .trim()
            .strip_prefix("listening on https://127.0.0.1:")
            .unwrap_or_else(|| panic!("{first:?}"))
            .parse()
            .unwrap()
    };
    let certs = data.join("certs");
    let frontend = [
        "--cert",
        certs.join("cert.pem").to_str().unwrap(),
        "--key",
        certs.join("key.pem").to_str().unwrap(),
    ]
    .map(str::to_owned);
    let frontend: Vec<&str> = frontend.iter().map(String::as_str).collect();
    let password = format!("password={PASSWORD}");

    // The frontend registers a user, who logs in (and once mistypes) and fetches certificates.
    let mut args = frontend.clone();
    for field in [
        "username=carol",
        "fname=Carol",
        "lname=C",
        "email=carol@example.org",
        "affiliation=VU",
        &password,
        "credit=10",
    ] {
        args.extend(["-d", field]);
    }
    let user = text(&curl(&data, port, &args, "/new_user"));
    assert!(user.contains("\"carol\""), "{user}");
    let login = ["-d", "username=carol", "-d", &password];
    assert!(text(&curl(&data, port, &login, "/login")).contains("\"uid\""));
    let wrong = ["-d", "username=carol", "-d", "password=not-it"];
    assert_eq!(text(&curl(&data, port, &wrong, "/login")), "false");
    // A password in the query string, as the Python client sends it.
    let query = format!("/login?username=carol&{password}");
    assert!(text(&curl(&data, port, &["-X", "POST"], &query)).contains("\"uid\""));
    let zip = curl(&data, port, &login, "/getcerts");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut member = |name: &str| {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut archive.by_name(name).unwrap(), &mut text).unwrap();
        text
    };
    let (user_cert, user_key) = (member("cert.pem"), member("key.pem"));
    std::fs::write(temp.path().join("cert.pem"), &user_cert).unwrap();
    std::fs::write(temp.path().join("key.pem"), &user_key).unwrap();
    let cert_path = temp.path().join("cert.pem");
    let key_path = temp.path().join("key.pem");
    let as_user = [
        "--cert",
        cert_path.to_str().unwrap(),
        "--key",
        key_path.to_str().unwrap(),
    ];

    // An application and a service in it; its manager charges credit; the user stops it.
    let mut args = as_user.to_vec();
    args.extend(["-d", "name=logged"]);
    let app: serde_json::Value =
        serde_json::from_slice(&curl(&data, port, &args, "/createapp")).unwrap();
    let appid = format!("appid={}", app["aid"]);
    let mut args = as_user.to_vec();
    args.extend(["-d", &appid]);
    let service: serde_json::Value =
        serde_json::from_slice(&curl(&data, port, &args, "/start/php")).unwrap();
    let sid = service["sid"].as_i64().unwrap();
    let vmid = vm_files(&data).into_iter().next().unwrap();
    let script =
        std::fs::read_to_string(data.join("dummy-cloud").join(format!("{vmid}.sh"))).unwrap();
    let (manager_cert, manager_key) = (
        here_document(&script, "cert.pem"),
        here_document(&script, "key.pem"),
    );
    assert!(manager_key.contains("PRIVATE KEY"));
    std::fs::write(temp.path().join("manager-cert.pem"), &manager_cert).unwrap();
    std::fs::write(temp.path().join("manager-key.pem"), &manager_key).unwrap();
    let manager_cert_path = temp.path().join("manager-cert.pem");
    let manager_key_path = temp.path().join("manager-key.pem");
    let sid_field = format!("sid={sid}");
    let charged = curl(
        &data,
        port,
        &[
            "--cert",
            manager_cert_path.to_str().unwrap(),
            "--key",
            manager_key_path.to_str().unwrap(),
            "-F",
            &sid_field,
            "-F",
            "decrement=1",
        ],
        "/callback/decrementUserCredit.php",
    );
    assert!(text(&charged).contains("false"), "{}", text(&charged));
    assert_eq!(
        text(&curl(
            &data,
            port,
            &[&as_user[..], &["-X", "POST"]].concat(),
            &format!("/stop/{sid}")
        )),
        "true"
    );

    let status = Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    let logged = std::fs::read_to_string(&log).unwrap();

    // Every line is a JSON object; every answer has its request line.
    let mut requests = Vec::new();
    for line in logged.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
        if value["fields"]["message"] == "request" && value["span"]["name"] == "request" {
            requests.push(value);
        }
    }
    let routes: Vec<&str> = requests
        .iter()
        .map(|request| request["span"]["route"].as_str().unwrap())
        .collect();
    assert_eq!(
        routes,
        [
            "/new_user",
            "/login",
            "/login",
            "/login",
            "/getcerts",
            "/createapp",
            "/start/{servicetype}",
            "/callback/decrementUserCredit.php",
            "/stop/{serviceid}",
        ],
        "{logged}"
    );
    let mut ids = Vec::new();
    for request in &requests {
        let id = request["span"]["request_id"].as_str().unwrap().to_owned();
        assert!(!id.is_empty() && !ids.contains(&id), "{request}");
        ids.push(id);
        assert!(request["fields"]["latency_us"].is_u64(), "{request}");
        assert_eq!(request["fields"]["status"], 200, "{request}");
        assert_eq!(request["span"]["method"], "POST", "{request}");
    }
    let outcomes: Vec<&str> = requests
        .iter()
        .map(|request| request["fields"]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["ok", "ok", "refused", "ok", "ok", "ok", "ok", "ok", "ok"]
    );
    assert_eq!(requests[0]["span"]["caller"], "frontend");
    assert_eq!(requests[7]["span"]["caller"], format!("manager:1/{sid}"));
    // Debug level was on: the director's own debug lines are there.
    assert!(logged.contains("\"level\":\"DEBUG\""), "{logged}");

    // No secret, in any form.
    let stored_hash = {
        use conpaas_core::store::{self, DatabaseUrl, Store, StoreSettings};
        let store = Store::connect(
            &StoreSettings::new(DatabaseUrl::Sqlite(data.join("director.db"))).max_connections(1),
        )
        .unwrap();
        let record = store
            .run_blocking(|conn| store::find_login(conn, "carol"))
            .unwrap()
            .unwrap();
        record.stored_hash.unwrap().expose_secret().to_owned()
    };
    assert!(stored_hash.starts_with("$argon2id$"), "{stored_hash}");
    let md5 = {
        use md5::Digest as _;
        hex::encode(md5::Md5::digest(PASSWORD.as_bytes()))
    };
    let director_key = std::fs::read_to_string(certs.join("key.pem")).unwrap();
    let ca_key = std::fs::read_to_string(certs.join("ca_key.pem")).unwrap();
    let mut secrets: Vec<(String, String)> = vec![
        ("the password".into(), PASSWORD.into()),
        ("its MD5".into(), md5),
        ("the argon2 hash".into(), stored_hash.clone()),
        (
            "the argon2 salt and hash".into(),
            stored_hash
                .rsplit('$')
                .take(2)
                .collect::<Vec<_>>()
                .join("$"),
        ),
        ("a PEM marker".into(), "-----BEGIN".into()),
        ("a PEM key marker".into(), "PRIVATE KEY".into()),
    ];
    for (what, pem) in [
        ("the user's key", &user_key),
        ("the user's certificate", &user_cert),
        ("the manager's key", &manager_key),
        ("the manager's certificate", &manager_cert),
        ("the director's key", &director_key),
        ("the CA's key", &ca_key),
    ] {
        for body in pem_bodies(pem) {
            secrets.push((what.to_owned(), body));
        }
    }
    for (what, secret) in &secrets {
        if let Some(line) = logged.lines().find(|line| line.contains(secret.as_str())) {
            panic!("the log holds {what} ({secret:?}): {line}");
        }
    }
}
