//! `cpsclient` end to end: the director commands against a real `director serve` on an
//! ephemeral port, the manager commands against the manager emulator over real TLS (with the
//! manager certificate the director issued into the dummy VM's boot script), and the
//! `~/.conpaas` it writes read back by a Python program the way the 1.2 client reads it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/manager.rs"]
mod manager;
// The `it` suite's pyOpenSSL manager (issue 21); this crate uses part of it.
#[path = "../../tests/it/support/pyopenssl.rs"]
#[allow(dead_code)]
mod pyopenssl;
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
        // A command that reads no input may exit before it is written: a closed pipe then.
        match tokio::io::AsyncWriteExt::write_all(&mut input, stdin.as_bytes()).await {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(error) => panic!("writing cpsclient's input: {error}"),
        }
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

    // The director's own certificate expired (reloaded on SIGHUP): said as such.
    let ca_key = rcgen::KeyPair::from_pem(&read(certs.join("ca_key.pem"))).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&read(certs.join("ca_cert.pem")), ca_key).unwrap();
    let key = rcgen::KeyPair::from_pem(&read(certs.join("key.pem"))).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CustomDnType(vec![2, 5, 4, 72]), "frontend");
    dn.push(rcgen::DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    std::fs::write(
        certs.join("cert.pem"),
        params.signed_by(&key, &issuer).unwrap().pem(),
    )
    .unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &world.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut stderr = String::new();
    for _ in 0..100 {
        let out = world.run(&["listapp"], "", &[]).await;
        stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            assert_eq!(out.status.code(), Some(2), "{stderr}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stderr.contains("the director's certificate has expired"),
        "{stderr}"
    );
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

/// Creates a service of `kind` with `cpsclient create` (which waits for the manager) while
/// "booting" the emulator with the certificate the director put in the new VM's script.
async fn create_and_boot(world: &World, emulator: &Emulator, kind: &str, ports: &[&str]) -> i64 {
    let before = vm_files(&world.data());
    let boot = async {
        let vmid = loop {
            if let Some(vmid) = vm_files(&world.data()).difference(&before).next() {
                break vmid.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // The client already polls the closed manager; let it see that at least once.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (cert, key, ca) = world.manager_identity(&vmid);
        emulator.set_identity(&cert, &key, &ca);
    };
    let mut args = vec!["--json"];
    args.extend_from_slice(ports);
    let create = ["create", kind];
    let (out, ()) = tokio::join!(world.run(&create, "", &args), boot);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    created["sid"].as_i64().unwrap()
}

async fn start_emulator() -> Emulator {
    Emulator::bind("127.0.0.3".parse().unwrap()).await
}

fn ports(emulator: &Emulator) -> [String; 4] {
    [
        "--manager-port".into(),
        emulator.addr.port().to_string(),
        "--taskfarm-port".into(),
        emulator.http_addr.port().to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_manager_commands() {
    let world = World::start();
    world.credentials().await;
    let emulator = start_emulator().await;
    let ports = ports(&emulator);
    let ports: Vec<&str> = ports.iter().map(String::as_str).collect();
    let sid = create_and_boot(&world, &emulator, "php", &ports).await;
    let sid = sid.to_string();
    assert_eq!(emulator.last("get_service_info").form, "GET");

    let info = world.ok(&["info", &sid], &ports).await;
    assert!(info.contains("state: INIT"), "{info}");
    assert!(info.contains("manager: 127.0.0.3"), "{info}");
    assert!(info.contains("proxy: 10.0.0.2"), "{info}");
    assert!(
        emulator
            .calls()
            .iter()
            .any(|call| call.method == "get_node_info"
                && call.form == "GET"
                && call.params == json!({"serviceNodeId": "p1"}))
    );
    let info = world.json(&["info", &sid], &ports).await;
    assert_eq!(info["manager_info"]["state"], json!("INIT"));
    assert_eq!(info["nodes"]["web"], json!(["10.0.0.2"]));
    assert!(
        world
            .ok(&["logs", &sid], &ports)
            .await
            .contains("manager log: all is well")
    );
    assert_eq!(emulator.last("getLog").form, "GET");
    let usage = world.ok(&["usage", &sid], &ports).await;
    assert!(usage.contains("add_nodes SID B W P [CLOUD]"), "{usage}");
    assert!(usage.contains("toggle_debug SID"), "{usage}");
    // Only php's and java's commands apply.
    let stderr = world.fails(&["list_volumes", &sid], &ports, 2).await;
    assert!(stderr.contains("not a command of php services"), "{stderr}");

    // start waits until the manager says RUNNING.
    let out = world.ok(&["start", &sid], &ports).await;
    assert!(out.contains("Your service is starting up."), "{out}");
    let startup = emulator.last("startup");
    assert_eq!(
        (startup.form, startup.params),
        ("POST", json!({"cloud": "default"}))
    );
    assert!(
        world
            .ok(&["info", &sid], &ports)
            .await
            .contains("state: RUNNING")
    );
    // A running service cannot be terminated.
    let stderr = world.fails(&["terminate", &sid], &ports, 1).await;
    assert!(stderr.contains("stop it first"), "{stderr}");

    let out = world.ok(&["add_nodes", &sid, "1", "2", "3"], &ports).await;
    assert_eq!(
        out,
        format!("Service {sid} is performing the requested operation (add_nodes)\n")
    );
    assert_eq!(
        emulator.last("add_nodes").params,
        json!({"backend": 1, "web": 2, "proxy": 3, "cloud": "default"})
    );
    world
        .ok(&["add_nodes", &sid, "0", "0", "1", "ec2"], &ports)
        .await;
    assert_eq!(emulator.last("add_nodes").params["cloud"], json!("ec2"));
    world
        .ok(&["remove_nodes", &sid, "1", "0", "0"], &ports)
        .await;
    assert_eq!(
        emulator.last("remove_nodes").params,
        json!({"backend": 1, "web": 0, "proxy": 0})
    );
    let stderr = world
        .fails(&["add_nodes", &sid, "1", "x", "3"], &ports, 2)
        .await;
    assert!(stderr.contains("W must be an integer"), "{stderr}");

    let key = world.temp.path().join("id_rsa.pub");
    std::fs::write(&key, "ssh-rsa AAAA alice@laptop\n").unwrap();
    let out = world
        .ok(&["upload_key", &sid, key.to_str().unwrap()], &ports)
        .await;
    assert_eq!(out, "1 key added\n");
    let upload = emulator.last("upload_authorized_key");
    assert_eq!(upload.form, "UPLOAD");
    let (field, file_name, bytes) = upload.file.unwrap();
    assert_eq!((field.as_str(), file_name.as_str()), ("key", "id_rsa.pub"));
    assert_eq!(bytes, b"ssh-rsa AAAA alice@laptop\n");
    assert_eq!(
        world.ok(&["list_keys", &sid], &ports).await,
        "ssh-rsa AAAA alice@laptop\n"
    );

    let code = world.temp.path().join("site.tar.gz");
    std::fs::write(&code, b"\x1f\x8bcode").unwrap();
    let out = world
        .ok(&["upload_code", &sid, code.to_str().unwrap()], &ports)
        .await;
    assert_eq!(out, "Code version code-2 uploaded\n");
    assert_eq!(emulator.last("upload_code_version").file.unwrap().0, "code");
    let table = world.ok(&["list_uploads", &sid], &ports).await;
    assert!(
        table.starts_with("current codeVersionId filename"),
        "{table}"
    );
    assert!(table.contains("*       code-default"), "{table}");
    assert!(
        world
            .ok(&["enable_code", &sid, "code-2"], &ports)
            .await
            .contains("code-2 enabled")
    );
    assert_eq!(
        emulator.last("update_php_configuration").params,
        json!({"codeVersionId": "code-2"})
    );
    let stderr = world
        .fails(&["enable_code", &sid, "code-9"], &ports, 1)
        .await;
    assert!(stderr.contains("unknown code version code-9"), "{stderr}");
    world.fails(&["enable_code", &sid, "v2"], &ports, 2).await;
    let out = world.ok(&["download_code", &sid, "code-2"], &ports).await;
    let path = world.temp.path().join("code-2.tar.gz");
    assert_eq!(out, format!("{} written\n", path.display()));
    let mut expect = vec![0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe];
    expect.extend_from_slice(b"code-2");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        expect,
        "the archive arrives byte for byte"
    );

    assert_eq!(
        world.ok(&["toggle_debug", &sid], &ports).await,
        "Debug mode is now On\n"
    );
    assert_eq!(
        world.ok(&["toggle_debug", &sid], &ports).await,
        "Debug mode is now Off\n"
    );

    let script = world.temp.path().join("start.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    world
        .ok(&["startup_script", &sid, script.to_str().unwrap()], &ports)
        .await;
    let (field, file_name, _) = emulator.last("upload_startup_script").file.unwrap();
    assert_eq!((field.as_str(), file_name.as_str()), ("script", "start.sh"));

    assert!(
        world
            .ok(&["stop", &sid], &ports)
            .await
            .contains("shutting it down")
    );
    assert_eq!(emulator.last("shutdown").form, "POST");
    let stderr = world.fails(&["stop", &sid], &ports, 1).await;
    assert!(stderr.contains("state STOPPED"), "{stderr}");
    assert!(
        world
            .ok(&["terminate", &sid], &ports)
            .await
            .contains("done.")
    );
    assert_eq!(world.json(&["list"], &[]).await, json!([]));
    world.fails(&["info", &sid], &ports, 1).await;

    // Every call came over TLS with the user's certificate, which the manager accepted.
    let calls = emulator.calls();
    assert!(
        calls
            .iter()
            .all(|call| call.tls && call.caller_role.as_deref() == Some("user"))
    );
    assert_eq!(emulator.refused(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_xtreemfs_and_taskfarm_commands() {
    let world = World::start();
    world.credentials().await;
    let emulator = start_emulator().await;
    let ports = ports(&emulator);
    let ports: Vec<&str> = ports.iter().map(String::as_str).collect();
    let mysql = create_and_boot(&world, &emulator, "mysql", &ports)
        .await
        .to_string();

    // mysql
    let out = world.ok(&["set_password", &mysql, "pw1"], &ports).await;
    assert_eq!(out, "Password updated successfully\n");
    assert_eq!(
        emulator.last("set_password").params,
        json!({"user": "mysqldb", "password": "pw1"})
    );
    // Without PASSWORD it is asked twice (here from a pipe).
    let mut args = ports.clone();
    args.extend(["set_password", &mysql]);
    let out = world.run(&args, "pw2\npw2\n", &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        emulator.last("set_password").params["password"],
        json!("pw2")
    );
    world.ok(&["add_nodes", &mysql, "2"], &ports).await;
    assert_eq!(
        emulator.last("add_nodes").params,
        json!({"slaves": 2, "cloud": "default"})
    );
    world.ok(&["remove_nodes", &mysql, "1"], &ports).await;
    assert_eq!(emulator.last("remove_nodes").params, json!({"slaves": 1}));

    // xtreemfs
    let created = world
        .json(&["create", "xtreemfs", "--no-wait"], &ports)
        .await;
    let xtreemfs = created["sid"].to_string();
    world.ok(&["add_nodes", &xtreemfs, "3"], &ports).await;
    assert_eq!(
        emulator.last("add_nodes").params,
        json!({"osd": 3, "cloud": "default"})
    );
    world.ok(&["remove_nodes", &xtreemfs, "1"], &ports).await;
    assert_eq!(
        emulator.last("remove_nodes").params,
        json!({"osd": 1, "cloud": "default"})
    );
    assert_eq!(
        world
            .ok(&["create_volume", &xtreemfs, "data"], &ports)
            .await,
        "Volume data created\n"
    );
    assert_eq!(
        emulator.last("createVolume").params,
        json!({"volumeName": "data"})
    );
    assert_eq!(
        world.ok(&["list_volumes", &xtreemfs], &ports).await,
        "data\n"
    );
    assert_eq!(
        world
            .ok(&["delete_volume", &xtreemfs, "data"], &ports)
            .await,
        "Volume data deleted\n"
    );
    let stderr = world
        .fails(&["delete_volume", &xtreemfs, "data"], &ports, 1)
        .await;
    assert!(stderr.contains("no volume data"), "{stderr}");
    for kind in ["osd_sel", "replica_sel", "replication"] {
        let out = world.ok(&["list_policies", &xtreemfs, kind], &ports).await;
        assert_eq!(out, format!("policies of list_{kind}_policies\n"));
    }
    world
        .fails(&["list_policies", &xtreemfs, "bogus"], &ports, 2)
        .await;
    let out = world
        .ok(
            &["set_policy", &xtreemfs, "replication", "data", "WqRq", "2"],
            &ports,
        )
        .await;
    assert_eq!(out, "WqRq on data\nPolicy set.\n");
    assert_eq!(
        emulator.last("set_replication_policy").params,
        json!({"volumeName": "data", "policy": "WqRq", "factor": "2"})
    );
    world
        .ok(
            &["set_policy", &xtreemfs, "osd_sel", "data", "1000,3002"],
            &ports,
        )
        .await;
    assert_eq!(
        emulator.last("set_osd_sel_policy").params,
        json!({"volumeName": "data", "policy": "1000,3002"})
    );
    let stderr = world
        .fails(
            &["set_policy", &xtreemfs, "replication", "data", "WqRq"],
            &ports,
            2,
        )
        .await;
    assert!(stderr.contains("needs FACTOR"), "{stderr}");

    // taskfarm: plain HTTP on its own port; RUNNING from the start.
    emulator.set_state("RUNNING");
    let created = world.json(&["create", "taskfarm"], &ports).await;
    let taskfarm = created["sid"].to_string();
    let info = emulator.last("get_service_info");
    assert_eq!((info.tls, info.form), (false, "POST"));
    let bot = world.temp.path().join("tasks.bot");
    std::fs::write(&bot, "task 1\n").unwrap();
    let stderr = world
        .fails(
            &[
                "upload_bot",
                &taskfarm,
                bot.to_str().unwrap(),
                "192.168.1.1/vol",
            ],
            &ports,
            1,
        )
        .await;
    assert!(stderr.contains("first choose the run mode"), "{stderr}");
    world
        .fails(&["set_mode", &taskfarm, "fast"], &ports, 2)
        .await;
    assert_eq!(
        world.ok(&["set_mode", &taskfarm, "demo"], &ports).await,
        "mode DEMO\n"
    );
    assert_eq!(emulator.last("set_service_mode").params, json!(["DEMO"]));
    let stderr = world
        .fails(&["set_mode", &taskfarm, "real"], &ports, 1)
        .await;
    assert!(stderr.contains("already set to DEMO"), "{stderr}");
    let out = world
        .ok(
            &[
                "upload_bot",
                &taskfarm,
                bot.to_str().unwrap(),
                "192.168.1.1/vol",
            ],
            &ports,
        )
        .await;
    assert_eq!(out, "bag of tasks accepted\n");
    let upload = emulator.last("start_sampling");
    assert_eq!((upload.form, upload.tls), ("UPLOAD", false));
    assert_eq!(upload.params, json!({"uriLocation": "192.168.1.1/vol"}));
    assert_eq!(upload.file.unwrap().0, "botFile");
    assert!(
        world
            .ok(&["logs", &taskfarm], &ports)
            .await
            .contains("task farm log")
    );
    // 1.2's task farm is terminated without asking its manager, and stopped as
    // terminate_workers.
    assert!(
        world
            .ok(&["stop", &taskfarm], &ports)
            .await
            .contains("shutting it down")
    );
    assert!(!emulator.last("terminate_workers").tls);
    assert!(
        world
            .ok(&["terminate", &taskfarm], &ports)
            .await
            .contains("done.")
    );

    // A wait that does not end: the manager never reaches INIT.
    emulator.set_state("PROLOGUE");
    let stderr = world
        .fails(&["create", "mysql", "--timeout", "2"], &ports, 1)
        .await;
    assert!(
        stderr.contains("did not reach INIT within 2 s (last: PROLOGUE)"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_lists_every_command_and_completions_know_them() {
    let world = World::start();
    let help = world.ok(&["--help"], &[]).await;
    let mut names = vec![
        "credentials",
        "listapp",
        "createapp",
        "renameapp",
        "deleteapp",
        "available",
        "clouds",
        "list",
        "agents",
        "create",
        "rename",
        "terminate",
        "manifest",
        "download_manifest",
        "info",
        "logs",
        "start",
        "stop",
        "startup_script",
        "usage",
        "completions",
    ];
    names.extend(conpaas_core::client::services::names());
    for name in &names {
        assert!(
            help.lines()
                .any(|line| line.trim_start().starts_with(&format!("{name} "))),
            "{name} not in --help:\n{help}"
        );
    }
    let bash = world.ok(&["completions", "bash"], &[]).await;
    assert!(bash.contains("download_manifest") && bash.contains("toggle_debug"));
    // Usage errors exit 2.
    world.fails(&["renameapp"], &[], 2).await;
    world.fails(&["nosuchcommand"], &[], 2).await;
}

/// `terminate` asks the manager whether the service is stopped; when the manager cannot be
/// reached it says so and names `--force`, which stops the service through the director
/// without asking the manager and says what it skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_force_stops_a_service_whose_manager_cannot_be_reached() {
    let world = World::start();
    world.credentials().await;
    // A port on the dummy cloud's manager address where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.3:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let ports = ["--manager-port", closed.as_str()];
    let created = world.json(&["create", "php", "--no-wait"], &[]).await;
    let sid = created["sid"].as_i64().unwrap().to_string();

    let stderr = world.fails(&["terminate", &sid], &ports, 2).await;
    assert!(
        stderr.contains(&format!(
            "cannot ask the manager of service {sid} whether the service is stopped"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("cpsclient terminate --force {sid}")),
        "{stderr}"
    );
    // Nothing was stopped.
    let listed = world.json(&["list"], &[]).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    let out = world
        .run(&["--json", "terminate", "--force", &sid], "", &ports)
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--force: the manager of service {sid} at 127.0.0.3 was not asked"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("not asked to shut down"), "{stderr}");
    // stdout stays the JSON answer.
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer, json!(true));
    assert_eq!(world.ok(&["list"], &[]).await, "No running services\n");
    // An unknown service is still refused, forced or not.
    world.fails(&["terminate", "--force", "999"], &[], 1).await;
}

/// Issue 21: cpsclient's manager commands against a manager on ConPaaS 1.2's own TLS stack
/// (pyOpenSSL configured as 1.2's `server.py`: no session id context, so OpenSSL refuses any
/// resumed handshake), each twice in a row on the same manager.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_commands_reach_a_1_2_manager_twice_in_a_row() {
    let world = World::start();
    world.credentials().await;
    let before = vm_files(&world.data());
    let created = world.json(&["create", "php", "--no-wait"], &[]).await;
    let sid = created["sid"].as_i64().unwrap().to_string();
    let uid = created["user_id"].as_i64().unwrap();
    let vmid = vm_files(&world.data())
        .difference(&before)
        .next()
        .unwrap()
        .clone();
    let (cert, key, ca) = world.manager_identity(&vmid);
    let manager = pyopenssl::PyManager::start("127.0.0.3", &cert, &key, &ca, uid as i32);
    let port = manager.port.to_string();
    let ports = ["--manager-port", port.as_str()];
    let code = world.temp.path().join("site.tar.gz");
    std::fs::write(&code, b"\x1f\x8bcode").unwrap();
    let key = world.temp.path().join("id_rsa.pub");
    std::fs::write(&key, b"ssh-rsa AAAA alice@laptop\n").unwrap();
    let (code, key) = (code.to_str().unwrap(), key.to_str().unwrap());
    for round in 1..=2 {
        let info = world.ok(&["info", &sid], &ports).await;
        assert!(info.contains("state: INIT"), "round {round}: {info}");
        world.ok(&["upload_code", &sid, code], &ports).await;
    }
    // The php commands' manager calls, each twice in a row. The test manager answers only
    // what the director's own calls need (`{}` otherwise), so a command may refuse the
    // answer's shape: what is checked is that every call reaches the manager.
    let commands: [&[&str]; 9] = [
        &["add_nodes", &sid, "1", "1", "1"],
        &["remove_nodes", &sid, "1", "1", "1"],
        &["list_keys", &sid],
        &["upload_key", &sid, key],
        &["list_uploads", &sid],
        &["enable_code", &sid, "code-7"],
        &["toggle_debug", &sid],
        &["logs", &sid],
        &["info", &sid],
    ];
    for command in commands {
        for round in 1..=2 {
            let out = world.run(command, "", &ports).await;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !stderr.contains("cannot connect") && !stderr.contains("could not be reached"),
                "{command:?}, round {round}: {stderr}"
            );
        }
    }
    let methods = manager.methods();
    let count = |method: &str| methods.iter().filter(|name| *name == method).count();
    for method in [
        "add_nodes",
        "remove_nodes",
        "list_authorized_keys",
        "upload_authorized_key",
        "list_code_versions",
        "getLog",
    ] {
        assert!(count(method) >= 2, "{method}: {methods:?}");
    }
    assert!(count("get_service_info") >= 4, "{methods:?}");
    assert_eq!(count("upload_code_version"), 2, "{methods:?}");
    assert!(
        manager.failures().is_empty(),
        "refused handshakes or requests: {:?}",
        manager.failures()
    );
}

/// `[section] KEY` of the config.cfg the director wrote into a dummy VM's boot script.
fn manager_config_value(script: &str, section: &str, key: &str) -> Option<String> {
    let start = script.find("cat <<EOF > $ROOT_DIR/config.cfg\n")?;
    let body = &script[start..];
    let body = &body[..body.find("\nEOF\n")?];
    let mut current = "";
    for line in body.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name;
        } else if current == section
            && let Some(value) = line.strip_prefix(&format!("{key} = "))
        {
            return Some(value.to_owned());
        }
    }
    None
}

/// `agents` lists the agent VMs the user's managers started through the director
/// (`/list_agents`): one started as a 1.2 manager starts it (OpenNebula OCCI `POST /compute`
/// with the key of its config.cfg) is listed, filtered by service, and gone once its service
/// is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_lists_the_agent_vms_of_the_users_services() {
    let world = World::start();
    world.credentials().await;
    assert_eq!(world.ok(&["agents"], &[]).await, "No agent VMs\n");
    assert_eq!(world.json(&["agents"], &[]).await, json!([]));

    let created = world.json(&["create", "php", "--no-wait"], &[]).await;
    let sid = created["sid"].as_i64().unwrap();
    let sid_text = sid.to_string();
    let vmid = created["vmid"].as_str().unwrap();
    let script =
        std::fs::read_to_string(world.data().join("dummy-cloud").join(format!("{vmid}.sh")))
            .unwrap();
    let user = manager_config_value(&script, "iaas", "USER").expect("USER in [iaas]");
    let key = manager_config_value(&script, "iaas", "PASSWORD").expect("PASSWORD in [iaas]");
    assert_eq!(user, format!("s{sid}@iaas"));

    // The manager's call: HTTP Basic with the SHA-1 (hex) of its key, as OpenNebula's OCCI
    // server takes it, and the agent's boot script in hex.
    let sha1 = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        key.as_bytes(),
    ));
    let body = format!(
        "<COMPUTE><NAME>conpaas-agent-php-u1-s{sid}</NAME><INSTANCE_TYPE>small</INSTANCE_TYPE>\
         <CONTEXT><USERDATA>{}</USERDATA></CONTEXT></COMPUTE>",
        hex::encode("#!/bin/sh\necho agent\n")
    );
    let ca = std::fs::read_to_string(world.conf().join("ca_cert.pem")).unwrap();
    let answer = support::client(&ca, None)
        .post(format!("{}/compute", world.url()))
        .basic_auth(&user, Some(&sha1))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let text = answer.text().await.unwrap();
    assert_eq!(status, 201, "{text}");
    let id = text
        .split_once("<ID>")
        .and_then(|(_, rest)| rest.split_once("</ID>"))
        .map(|(id, _)| id.parse::<i64>().unwrap())
        .unwrap_or_else(|| panic!("{text}"));

    let listed = world.json(&["agents"], &[]).await;
    let agents = listed.as_array().unwrap();
    assert_eq!(agents.len(), 1, "{listed}");
    assert_eq!(agents[0]["id"], json!(id));
    assert_eq!(agents[0]["sid"], json!(sid));
    assert_eq!(agents[0]["cloud"], json!("iaas"));
    assert_eq!(agents[0]["state"], json!("running"));
    let agent_vmid = agents[0]["vmid"].as_str().unwrap().to_owned();
    assert!(vm_files(&world.data()).contains(&agent_vmid));
    // The table: a header naming the columns, then the agent's row in that order.
    let table = world.ok(&["agents"], &[]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["id", "sid", "cloud", "vmid", "ip", "state", "name"],
        "{table}"
    );
    let ip = agents[0]["ip"].as_str().unwrap();
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        [
            id.to_string().as_str(),
            sid_text.as_str(),
            "iaas",
            agent_vmid.as_str(),
            ip,
            "running",
            &format!("conpaas-agent-php-u1-s{sid}"),
        ],
        "{table}"
    );
    // By service: this one's, and none of another.
    assert_eq!(world.json(&["agents", &sid_text], &[]).await, listed);
    assert_eq!(world.ok(&["agents", "999"], &[]).await, "No agent VMs\n");
    world.fails(&["agents", "notanumber"], &[], 2).await;

    // The service's stop terminates its agent: the VM and the listing are gone.
    world.ok(&["terminate", "--force", &sid_text], &[]).await;
    assert!(!vm_files(&world.data()).contains(&agent_vmid));
    assert_eq!(world.ok(&["agents"], &[]).await, "No agent VMs\n");
}
