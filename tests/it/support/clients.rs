//! The three real clients of the user story behind one [`Transport`] trait: reqwest, the
//! `curl` command line (posting multipart like the PHP frontend's cURL), and a Python 3
//! standard-library client shaped like the 1.2 cpsclient (`tests/support/cpsclient.py`).

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, async_fn_in_trait)]

use std::path::PathBuf;
use std::process::Command;

use super::{Identity, Reply, TestDirector, member, unzip};

/// One request of the story.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// The route, starting with `/`.
    pub path: &'a str,
    /// Form fields.
    pub fields: &'a [(&'a str, &'a str)],
    /// The client certificate, if any.
    pub identity: Option<&'a Identity>,
}

/// A client able to run the user story.
pub trait Transport {
    /// The client's name for messages.
    fn name(&self) -> &'static str;

    /// Called once the account exists: the 1.2 cpsclient stores the credentials and adds them
    /// to every call from then on; other clients ignore them.
    fn learn_credentials(&self, _username: &str, _password: &str) {}

    /// Sends one request.
    async fn send(&self, director: &TestDirector, call: Call<'_>) -> Reply;

    /// `/getcerts` without a certificate, and the certificate and key the client extracts from
    /// the archive.
    async fn getcerts(
        &self,
        director: &TestDirector,
        username: &str,
        password: &str,
    ) -> (Reply, Identity) {
        let fields = [("username", username), ("password", password)];
        let reply = self
            .send(
                director,
                Call {
                    method: "POST",
                    path: "/getcerts",
                    fields: &fields,
                    identity: None,
                },
            )
            .await;
        reply.expect_status(200);
        let members = unzip(&reply.body);
        let identity = director.save_identity(
            &format!("{username} via {}", self.name()),
            &member(&members, "cert.pem"),
            &member(&members, "key.pem"),
        );
        (reply, identity)
    }
}

/// reqwest; POSTs urlencoded.
pub struct Reqwest;

impl Transport for Reqwest {
    fn name(&self) -> &'static str {
        "reqwest"
    }

    async fn send(&self, director: &TestDirector, call: Call<'_>) -> Reply {
        let http = super::Http::new(director, call.identity);
        let mut reply = match call.method {
            "GET" => {
                let url = reqwest::Url::parse_with_params(
                    &http.url(call.path),
                    call.fields.iter().copied(),
                )
                .unwrap();
                let query = url
                    .query()
                    .map(|query| format!("?{query}"))
                    .unwrap_or_default();
                http.get(&format!("{}{query}", call.path)).await
            }
            "POST" => http.post(call.path, call.fields).await,
            other => http.request(other, call.path).await,
        };
        reply.what = format!("{} via reqwest", reply.what);
        reply
    }
}

/// The `curl` command line: `--cacert`, `--cert`/`--key`, and `--form-string` (multipart, as
/// the PHP frontend's cURL posts PHP arrays) or `--data-urlencode`.
pub struct Curl {
    /// Post multipart (`-F`) rather than urlencoded (`-d`).
    pub multipart: bool,
}

impl Transport for Curl {
    fn name(&self) -> &'static str {
        "curl"
    }

    async fn send(&self, director: &TestDirector, call: Call<'_>) -> Reply {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        match call.method {
            "GET" => {
                args.push("--get".into());
                for (name, value) in call.fields {
                    args.push("--data-urlencode".into());
                    args.push(format!("{name}={value}").into());
                }
            }
            "POST" if call.fields.is_empty() => {
                // PHP's cURL with an empty array: an empty POST.
                args.push("--data".into());
                args.push("".into());
            }
            "POST" => {
                for (name, value) in call.fields {
                    let flag = if self.multipart {
                        "--form-string"
                    } else {
                        "--data-urlencode"
                    };
                    args.push(flag.into());
                    args.push(format!("{name}={value}").into());
                }
            }
            other => {
                args.push("--request".into());
                args.push(other.into());
            }
        }
        let what = format!(
            "{} {} as {} via curl",
            call.method,
            call.path,
            call.identity
                .map_or("anonymous", |identity| identity.name.as_str())
        );
        curl(director, call.identity, &what, &args, call.path)
    }
}

/// Runs `curl` on `path` of the director with the request options `args` (what to send),
/// trusting the CA, presenting `identity`; returns the final answer (after any `100
/// Continue`).
pub fn curl(
    director: &TestDirector,
    identity: Option<&Identity>,
    what: &str,
    args: &[std::ffi::OsString],
    path: &str,
) -> Reply {
    let scratch = director.scratch("curl");
    let head_path = scratch.join("head");
    let body_path = scratch.join("body");
    let mut command = Command::new("curl");
    command
        .args(["--silent", "--show-error", "--http1.1", "--max-time", "60"])
        .arg("--cacert")
        .arg(director.ca_path())
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", director.port()))
        .arg("--dump-header")
        .arg(&head_path)
        .arg("--output")
        .arg(&body_path);
    if let Some(identity) = identity {
        command
            .arg("--cert")
            .arg(&identity.cert_path)
            .arg("--key")
            .arg(&identity.key_path);
    }
    command.args(args);
    command.arg(format!("{}{path}", director.base_url()));
    let output = command.output().expect("curl must be installed");
    assert!(
        output.status.success(),
        "{what}: curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let head = std::fs::read_to_string(&head_path).unwrap();
    // With `100 Continue` there are several heads; the last one is the answer.
    let last = head
        .split("\r\n\r\n")
        .filter(|block| block.starts_with("HTTP/"))
        .last()
        .unwrap_or_else(|| panic!("{what}: no response head in {head:?}"));
    let mut lines = last.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{what}: bad head {last:?}"));
    let headers = lines
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect();
    Reply {
        what: what.to_owned(),
        status,
        headers,
        body: std::fs::read(&body_path).unwrap(),
    }
}

/// The Python 3 client `tests/support/cpsclient.py`: urlencoded, `username` and `password`
/// added to every call once the account exists, as the 1.2 cpsclient does.
pub struct Python {
    /// The credentials the client adds to every call.
    pub credentials: std::cell::RefCell<Option<(String, String)>>,
}

impl Python {
    /// A client without stored credentials yet.
    pub fn new() -> Self {
        Python {
            credentials: std::cell::RefCell::new(None),
        }
    }

    /// The interpreter: `CONPAAS_TEST_PYTHON`, else `python3`.
    pub fn interpreter() -> String {
        std::env::var("CONPAAS_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
    }

    /// The script.
    pub fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/cpsclient.py")
    }

    fn run(&self, director: &TestDirector, what: String, args: &[String]) -> (Reply, Vec<String>) {
        let mut command = Command::new(Self::interpreter());
        command
            .arg(Self::script())
            .arg(&args[0])
            .arg("--url")
            .arg(director.base_url())
            .arg("--cacert")
            .arg(director.ca_path());
        command.args(&args[1..]);
        let output = command
            .output()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", Self::interpreter()));
        assert!(
            output.status.success(),
            "{what}: the Python client failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let headers = answer["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                (
                    pair[0].as_str().unwrap().to_ascii_lowercase(),
                    pair[1].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let body = hex::decode(answer["body"].as_str().unwrap()).unwrap();
        let extracted = answer
            .get("extracted")
            .and_then(|names| names.as_array())
            .map(|names| {
                names
                    .iter()
                    .map(|name| name.as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let reply = Reply {
            what,
            status: answer["status"].as_u64().unwrap() as u16,
            headers,
            body,
        };
        (reply, extracted)
    }

    fn credential_args(&self) -> Vec<String> {
        match &*self.credentials.borrow() {
            Some((username, password)) => vec![
                "--username".into(),
                username.clone(),
                "--password".into(),
                password.clone(),
            ],
            None => Vec::new(),
        }
    }
}

impl Transport for Python {
    fn name(&self) -> &'static str {
        "python"
    }

    fn learn_credentials(&self, username: &str, password: &str) {
        *self.credentials.borrow_mut() = Some((username.to_owned(), password.to_owned()));
    }

    async fn send(&self, director: &TestDirector, call: Call<'_>) -> Reply {
        let mut args = vec!["call".to_owned()];
        if let Some(identity) = call.identity {
            args.extend([
                "--cert".to_owned(),
                identity.cert_path.display().to_string(),
                "--key".to_owned(),
                identity.key_path.display().to_string(),
            ]);
        }
        args.extend(self.credential_args());
        args.push("--".to_owned());
        args.push(call.method.to_owned());
        args.push(call.path.to_owned());
        args.extend(
            call.fields
                .iter()
                .map(|(name, value)| format!("{name}={value}")),
        );
        let what = format!(
            "{} {} as {} via python",
            call.method,
            call.path,
            call.identity
                .map_or("anonymous", |identity| identity.name.as_str())
        );
        self.run(director, what, &args).0
    }

    async fn getcerts(
        &self,
        director: &TestDirector,
        username: &str,
        password: &str,
    ) -> (Reply, Identity) {
        let dest = director.scratch("conpaas");
        let args = vec![
            "getcerts".to_owned(),
            "--username".to_owned(),
            username.to_owned(),
            "--password".to_owned(),
            password.to_owned(),
            "--dest".to_owned(),
            dest.display().to_string(),
        ];
        let (reply, extracted) = self.run(
            director,
            "POST /getcerts as anonymous via python".into(),
            &args,
        );
        assert_eq!(
            extracted,
            ["cert.pem", "key.pem", "ca_cert.pem"],
            "what Python's zipfile extracted from certs.zip"
        );
        let read = |name: &str| std::fs::read_to_string(dest.join(name)).unwrap();
        let identity = director.save_identity(
            &format!("{username} via python"),
            &read("cert.pem"),
            &read("key.pem"),
        );
        assert_eq!(read("ca_cert.pem"), director.ca_pem());
        (reply, identity)
    }
}
