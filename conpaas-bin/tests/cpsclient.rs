//! `cpsclient` end to end: the director commands against a real `director serve` on an
//! ephemeral port, the manager commands against the manager emulator over real TLS (with the
//! manager certificate the director issued into the dummy VM's boot script), and the
//! `~/.conpaas` it writes read back by a Python program the way the 1.2 client reads it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/manager.rs"]
mod manager;
mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use manager::Emulator;
use serde_json::{Value, json};
use support::{director, here_document, serve, vm_files};

/// A director with the user alice, and a scratch `~/.conpaas` for her.
struct World {
    temp: tempfile::TempDir,
    child: std::process::Child,
    port: u16,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl World {
    fn start() -> World {
        let temp = tempfile::tempdir().unwrap();
        let data = temp.path().join("data");
        director(&data, &["init", "localhost"]);
        director(&data, &["adduser", "alice@example.org", "alice", "s3cret"]);
        let (child, port) = serve(&data, "error", Stdio::null());
        World { temp, child, port }
    }

    fn data(&self) -> PathBuf {
        self.temp.path().join("data")
    }

    fn conf(&self) -> PathBuf {
        self.temp.path().join("conpaas")
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// Runs `cpsclient ARGS` with `CONPAAS_DIR` set, `stdin` as its input.
    async fn run(&self, args: &[&str], stdin: &str, extra: &[&str]) -> Output {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cpsclient"));
        command
            .args(extra)
            .args(args)
            .env("CONPAAS_DIR", self.conf())
            .env("TMPDIR", self.temp.path())
            .env_remove("CONPAAS_DIRECTOR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut input, stdin.as_bytes())
            .await
            .unwrap();
        drop(input);
        tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .expect("cpsclient did not finish")
            .unwrap()
    }

    /// `run` that must succeed; answers stdout.
    async fn ok(&self, args: &[&str], extra: &[&str]) -> String {
        let out = self.run(args, "", extra).await;
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `run` with `--json` that must succeed; answers the JSON.
    async fn json(&self, args: &[&str], extra: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(extra);
        let text = self.ok(args, &all).await;
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{args:?}: {text}"))
    }

    /// `run` that must fail with `code`; answers stderr.
    async fn fails(&self, args: &[&str], extra: &[&str], code: i32) -> String {
        let out = self.run(args, "", extra).await;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        stderr
    }

    async fn credentials(&self) {
        let out = self
            .run(
                &["--director", &self.url(), "credentials"],
                "alice\ns3cret\n",
                &[],
            )
            .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The manager's certificate, key and CA from the boot script of the dummy VM `vmid`.
    fn manager_identity(&self, vmid: &str) -> (String, String, String) {
        let script =
            std::fs::read_to_string(self.data().join("dummy-cloud").join(format!("{vmid}.sh")))
                .unwrap();
        (
            here_document(&script, "cert.pem").unwrap(),
            here_document(&script, "key.pem").unwrap(),
            here_document(&script, "ca_cert.pem").unwrap(),
        )
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Reads `~/.conpaas` as cps/base.py does: `target`, `username`, `password` read whole, the
/// `UID` from `cert.pem`, then calls `/listapp` with cert.pem/key.pem (and, unlike 1.2,
/// verifying the director against ca_cert.pem).
const PYTHON_12_READER: &str = r#"
import json, os, ssl, sys, urllib.parse, urllib.request
d = sys.argv[1]
read = lambda key: open(os.path.join(d, key)).read()
target, username, password = read("target"), read("username"), read("password")
subject = ssl._ssl._test_decode_cert(os.path.join(d, "cert.pem"))["subject"]
uid = [value for rdn in subject for (key, value) in rdn if key == "userId" or key == "UID"]
ctx = ssl.create_default_context(cafile=os.path.join(d, "ca_cert.pem"))
ctx.load_cert_chain(os.path.join(d, "cert.pem"), os.path.join(d, "key.pem"))
data = urllib.parse.urlencode({"username": username, "password": password}).encode()
with urllib.request.urlopen(target + "/listapp", data, context=ctx, timeout=60) as answer:
    apps = json.loads(answer.read())
print(json.dumps({"target": target, "username": username, "password": password, "uid": uid, "apps": apps}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_stored_as_the_1_2_client_reads_them() {
    let world = World::start();
    // No credentials yet: every command says what to do.
    let stderr = world.fails(&["listapp"], &[], 2).await;
    assert!(
        stderr.contains("run `cpsclient credentials` first"),
        "{stderr}"
    );
    // A wrong password is the director's refusal.
    let out = world
        .run(
            &["--director", &world.url(), "credentials"],
            "alice\nwrong\n",
            &[],
        )
        .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("authentication failure"));
    assert!(!world.conf().join("key.pem").exists());
    // Not a director URL.
    let out = world
        .run(
            &["--director", "http://localhost:1", "credentials"],
            "alice\ns3cret\n",
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid director URL"));

    // The URL asked as 1.2 asks it; first use: the CA is checked against the certificate seen.
    let out = world
        .run(
            &["credentials"],
            &format!("{}\nalice\ns3cret\n", world.url()),
            &[],
        )
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Enter the director URL: "), "{stderr}");
    assert!(
        stderr.contains("accepted on first use (SHA-256 "),
        "{stderr}"
    );
    let conf = world.conf();
    assert_eq!(mode(&conf), 0o700);
    for file in [
        "target",
        "username",
        "password",
        "cert.pem",
        "key.pem",
        "ca_cert.pem",
    ] {
        assert_eq!(mode(&conf.join(file)), 0o600, "{file}");
    }
    assert_eq!(
        std::fs::read(conf.join("ca_cert.pem")).unwrap(),
        std::fs::read(world.data().join("certs/ca_cert.pem")).unwrap()
    );

    // A Python program reading the directory as the 1.2 client does.
    let out = std::process::Command::new("python3")
        .args(["-c", PYTHON_12_READER])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(read["target"], json!(world.url()));
    assert_eq!(
        (read["username"].clone(), read["password"].clone()),
        (json!("alice"), json!("s3cret"))
    );
    assert_eq!(read["uid"], json!(["1"]));
    assert_eq!(read["apps"][0]["name"], json!("New Application"));

    // Again, now verified against the stored CA from the first call; and with --cacert.
    let out = world
        .run(&["credentials", "--username", "alice"], "\ns3cret\n", &[])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("first use"));
    let ca = world.data().join("certs/ca_cert.pem");
    let out = world
        .run(
            &[
                "credentials",
                "--username",
                "alice",
                "--cacert",
                ca.to_str().unwrap(),
            ],
            "\ns3cret\n",
            &["--json"],
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (stored["uid"].clone(), stored["target"].clone()),
        (json!("1"), json!(world.url()))
    );
    // A CA that did not issue the director's certificate: refused, nothing replaced.
    let foreign = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let foreign_path = world.temp.path().join("foreign-ca.pem");
    std::fs::write(&foreign_path, foreign.pem()).unwrap();
    let before = std::fs::read(conf.join("cert.pem")).unwrap();
    let out = world
        .run(
            &[
                "credentials",
                "--username",
                "alice",
                "--cacert",
                foreign_path.to_str().unwrap(),
            ],
            "\ns3cret\n",
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the director's certificate is not trusted"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(conf.join("cert.pem")).unwrap(), before);
    // getcerts: new certificates with the stored password.
    world.ok(&["getcerts"], &[]).await;
    assert_ne!(std::fs::read(conf.join("cert.pem")).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_problems_are_said_plainly() {
    let world = World::start();
    world.credentials().await;
    let conf = world.conf();
    let certs = world.data().join("certs");
    let read = |path: PathBuf| std::fs::read_to_string(path).unwrap();
    // An expired certificate of the right CA: said before the director refuses it.
    let ca_key = rcgen::KeyPair::from_pem(&read(certs.join("ca_key.pem"))).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&read(certs.join("ca_cert.pem")), ca_key).unwrap();
    let key = rcgen::KeyPair::from_pem(&read(conf.join("key.pem"))).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 1]),
        "1",
    );
    dn.push(rcgen::DnType::CustomDnType(vec![2, 5, 4, 72]), "user");
    dn.push(rcgen::DnType::CommonName, "alice");
    params.distinguished_name = dn;
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let (good, good_key) = (read(conf.join("cert.pem")), read(conf.join("key.pem")));
    std::fs::write(
        conf.join("cert.pem"),
        params.signed_by(&key, &issuer).unwrap().pem(),
    )
    .unwrap();
    let stderr = world.fails(&["listapp"], &[], 2).await;
    assert!(stderr.contains("expired on 2021-01-01"), "{stderr}");
    assert!(stderr.contains("cpsclient credentials"), "{stderr}");
    // A certificate of another CA: the director refuses it at the handshake (1.2's case).
    let stranger = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 1]),
        "1",
    );
    params.distinguished_name = dn;
    std::fs::write(
        conf.join("cert.pem"),
        params.self_signed(&stranger).unwrap().pem(),
    )
    .unwrap();
    std::fs::write(conf.join("key.pem"), stranger.serialize_pem()).unwrap();
    let stderr = world.fails(&["listapp"], &[], 2).await;
    assert!(
        stderr.contains("try updating your client certificates with `cpsclient credentials`"),
        "{stderr}"
    );
    std::fs::write(conf.join("cert.pem"), good).unwrap();
    std::fs::write(conf.join("key.pem"), good_key).unwrap();
    assert!(
        world
            .ok(&["listapp"], &[])
            .await
            .contains("New Application")
    );
    // A director that is not there.
    let stderr = world
        .fails(&["listapp"], &["--director", "https://localhost:1"], 2)
        .await;
    assert!(stderr.contains("cannot reach the director"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn director_commands() {
    let world = World::start();
    world.credentials().await;
    let types = world.json(&["available"], &[]).await;
    assert!(types.as_array().unwrap().contains(&json!("php")), "{types}");
    assert_eq!(
        types
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| **t == json!("taskfarm"))
            .count(),
        1
    );
    assert!(
        world
            .ok(&["available"], &[])
            .await
            .lines()
            .any(|line| line == "mysql")
    );
    assert_eq!(world.json(&["clouds"], &[]).await, json!(["default"]));
    assert_eq!(world.ok(&["clouds"], &[]).await, "default\n");
    let text = world.ok(&["listapp"], &[]).await;
    assert_eq!(text, "aid name\n-------------------\n1   New Application\n");
    let app = world.json(&["createapp", "shop"], &[]).await;
    let aid = app["aid"].as_i64().unwrap();
    let aid_text = aid.to_string();
    assert!(
        world
            .ok(&["renameapp", &aid_text, "store"], &[])
            .await
            .contains("done.")
    );
    let apps = world.json(&["listapp"], &[]).await;
    assert_eq!(apps[1], json!({"aid": aid, "name": "store"}));
    // Refusals exit 1 with the director's words; usage errors exit 2.
    let stderr = world.fails(&["renameapp", "999", "x"], &[], 1).await;
    assert!(stderr.starts_with("E: "), "{stderr}");
    world.fails(&["renameapp", "notanumber", "x"], &[], 2).await;
    world.fails(&["create", "nosuchtype"], &[], 2).await;

    assert_eq!(world.ok(&["list"], &[]).await, "No running services\n");
    let created = world
        .json(&["create", "php", &aid_text, "--no-wait"], &[])
        .await;
    let sid = created["sid"].as_i64().unwrap();
    let sid_text = sid.to_string();
    assert_eq!(created["manager"], json!("127.0.0.3"));
    let listed = world.json(&["list", &aid_text], &[]).await;
    assert_eq!(listed[0]["sid"], json!(sid));
    assert!(
        world
            .ok(&["list"], &[])
            .await
            .starts_with("type sid application_id vmid")
    );
    assert!(
        world
            .ok(&["rename", &sid_text, "web"], &[])
            .await
            .contains("done.")
    );
    assert_eq!(world.json(&["list"], &[]).await[0]["name"], json!("web"));
    world.fails(&["rename", "999", "web"], &[], 1).await;
    assert_eq!(world.json(&["list", "1"], &[]).await, json!([]));

    // A manifest: its application is created; downloaded back.
    let manifest = world.temp.path().join("manifest.json");
    std::fs::write(
        &manifest,
        r#"{"Application": "from-manifest", "Services": []}"#,
    )
    .unwrap();
    assert!(
        world
            .ok(&["manifest", manifest.to_str().unwrap()], &[])
            .await
            .contains("done.")
    );
    let apps = world.json(&["listapp"], &[]).await;
    let made = apps
        .as_array()
        .unwrap()
        .iter()
        .find(|app| app["name"] == json!("from-manifest"))
        .unwrap()["aid"]
        .to_string();
    let downloaded = world.json(&["download_manifest", &made], &[]).await;
    assert_eq!(downloaded["Application"], json!("from-manifest"));
    let text = world.ok(&["download_manifest", &made], &[]).await;
    assert!(
        text.contains("\"Application\": \"from-manifest\""),
        "{text}"
    );
    world
        .fails(&["manifest", "/nonexistent/manifest.json"], &[], 2)
        .await;

    // deleteapp removes the application (and its services: none here).
    assert!(world.ok(&["deleteapp", &made], &[]).await.contains("done."));
    assert!(!world.ok(&["listapp"], &[]).await.contains("from-manifest"));
    world.fails(&["deleteapp", "999"], &[], 1).await;
}
