//! The EC2 driver against a real EC2 API server: moto's, started from `CONPAAS_TEST_PYTHON`
//! (scripts/test.sh installs it into target/pyenv) through `tests/support/moto_ec2.py`, and
//! read back with boto3, an EC2 client that is not ours. One moto serves every test; each test
//! works in a region of its own, so their instances never mix.

// Test code: a panic is a test failure, with the message saying what went wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod imds;
mod three_clouds;
mod vpc;

use std::fs;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use conpaas_core::cloud::{
    Cloud, Ec2Cloud, Ec2Credentials, Ec2Region, Ec2Settings, Ec2Tuning, EndpointUrl, Error,
    NodeRequest, NodeState, UrlScheme,
};
use conpaas_core::config::{self, ConfigSource};
use conpaas_core::director::accounts::{self, NewAccount};
use conpaas_core::director::{self, Director, StartRequest};
use conpaas_core::model::Credit;
use secrecy::SecretString;
use serde_json::Value;

/// An AMI moto knows in every region (it refuses unknown ones, as AWS does).
pub(crate) const IMAGE: &str = "ami-1e749f67";

fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(checked_python).clone()
}

fn checked_python() -> PathBuf {
    let python = std::env::var_os("CONPAAS_TEST_PYTHON").unwrap_or_else(|| {
        panic!(
            "CONPAAS_TEST_PYTHON is not set: the EC2 tests need moto; run scripts/test.sh, \
             which installs tests/support/requirements.txt into target/pyenv and sets it"
        )
    });
    let python = PathBuf::from(python);
    let check = Command::new(&python)
        .args(["-c", "import moto.server, boto3"])
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", python.display()));
    assert!(
        check.status.success(),
        "moto is not installed for {}: run scripts/test.sh (it installs \
         tests/support/requirements.txt)\n{}",
        python.display(),
        String::from_utf8_lossy(&check.stderr)
    );
    python
}

fn support_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/moto_ec2.py")
}

/// moto's server on 127.0.0.1; killed on drop, and exits by itself when this process ends
/// (its stdin closes), which covers the shared instance kept in a static.
pub(crate) struct Moto {
    pub(crate) port: u16,
    child: Child,
    _stdin: ChildStdin,
    _log: tempfile::NamedTempFile,
}

impl Moto {
    fn start() -> Moto {
        let python = python();
        // moto needs an explicit port: take a free one from the kernel.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new(&python)
            .arg(support_script())
            .args(["serve", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start moto: {error}"));
        let stdin = child.stdin.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "moto exited ({status}) before answering:\n{}",
                    fs::read_to_string(log.path()).unwrap_or_default()
                );
            }
            if answers_http(port) {
                break;
            }
            assert!(Instant::now() < deadline, "moto did not answer in 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto {
            port,
            child,
            _stdin: stdin,
            _log: log,
        }
    }

    /// The instances of `region`, as boto3 reads them.
    pub(crate) fn instances(&self, region: &str) -> Vec<Value> {
        let output = Command::new(python())
            .arg(support_script())
            .args(["list", &self.port.to_string(), region])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "boto3 listing failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<Value>(&output.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// Creates the key pair `conpaas` and a VPC with a subnet and a security group in
    /// `region` (once), with boto3; answers `{vpc, subnet, group}`.
    pub(crate) fn setup(&self, region: &str) -> Value {
        let output = Command::new(python())
            .arg(support_script())
            .args(["setup", &self.port.to_string(), region])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "boto3 setup failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn endpoint(&self) -> EndpointUrl {
        EndpointUrl::new(UrlScheme::Http, "127.0.0.1", Some(self.port))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn answers_http(port: u16) -> bool {
    use std::io::Read as _;
    let Ok(mut stream) = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

/// The one moto of this test binary.
pub(crate) fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(Moto::start)
}

fn settings(moto: &Moto, region: &str, image: &str, boot_timeout: Duration) -> Ec2Settings {
    Ec2Settings::new(
        "AKIDCONPAASTEST",
        SecretString::from("conpaas-test-secret"),
        image,
        "t1.micro",
        "default",
        "conpaas",
        Ec2Region::new(region).endpoint_host(format!("ec2.{region}.amazonaws.com")),
    )
    .endpoint(moto.endpoint())
    .boot_timeout(boot_timeout)
}

fn fast() -> Ec2Tuning {
    let mut tuning = Ec2Tuning::recommended();
    tuning.poll_interval = Duration::from_millis(50);
    tuning.max_attempts = 3;
    tuning.backoff_base = Duration::from_millis(10);
    tuning.backoff_max = Duration::from_millis(50);
    tuning
}

fn cloud(settings: Ec2Settings) -> Ec2Cloud {
    Ec2Cloud::with_tuning("iaas", settings, fast()).unwrap()
}

fn request(sid: u32) -> NodeRequest {
    NodeRequest::new(
        format!("conpaas-manager-php-u1-s{sid}"),
        format!("#!/bin/bash\n# the manager of s{sid}\necho 'key material +/= stays intact'\n"),
        format!("cps-moto-s{sid}"),
    )
    .tags(vec![
        ("ConPaaS-Director".into(), "moto".into()),
        ("ConPaaS-User".into(), "1".into()),
        ("ConPaaS-App".into(), "1".into()),
        ("ConPaaS-Service".into(), sid.to_string()),
    ])
}

fn states(instances: &[Value]) -> Vec<&str> {
    instances
        .iter()
        .map(|instance| instance["state"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn create_runs_one_tagged_instance_and_kill_terminates_it() {
    let moto = moto();
    let region = "us-east-1";
    let cloud = cloud(settings(moto, region, IMAGE, Duration::from_secs(20)));
    // The probe checks the key pair too, which a fresh moto region lacks.
    let error = cloud.probe().await.unwrap_err();
    assert!(
        matches!(&error, Error::Misconfigured { key, .. } if key == "KEY_NAME"),
        "{error:?}"
    );
    moto.setup(region);
    cloud.probe().await.unwrap();
    let request = request(1);
    let node = cloud.create_node(request.clone()).await.unwrap();

    let instances = moto.instances(region);
    assert_eq!(instances.len(), 1, "{instances:#?}");
    let instance = &instances[0];
    assert_eq!(instance["id"], node.vmid.as_str());
    assert_eq!(instance["state"], "running");
    assert_eq!(instance["public_ip"], node.public_ip.as_str());
    assert_eq!(instance["private_ip"].as_str(), node.private_ip.as_deref());
    assert_eq!(instance["user_data"], request.user_data.as_str());
    assert_eq!(instance["client_token"], "cps-moto-s1");
    assert_eq!(instance["image"], IMAGE);
    assert_eq!(instance["type"], "t1.micro");
    assert_eq!(instance["key"], "conpaas");
    assert_eq!(instance["groups"], serde_json::json!(["default"]));
    // IMDSv2 only, unless the section says METADATA_TOKENS = optional.
    assert_eq!(instance["http_tokens"], "required");
    assert_eq!(
        instance["tags"],
        serde_json::json!({
            "Name": "conpaas-manager-php-u1-s1",
            "ConPaaS-Director": "moto",
            "ConPaaS-User": "1",
            "ConPaaS-App": "1",
            "ConPaaS-Service": "1",
        })
    );
    assert_eq!(
        cloud.node_state(&node.vmid).await.unwrap(),
        NodeState::Running
    );
    assert_eq!(
        cloud.find_node("cps-moto-s1").await.unwrap(),
        Some(node.vmid.clone())
    );

    cloud.kill_node(&node.vmid).await.unwrap();
    assert_eq!(states(&moto.instances(region)), ["terminated"]);
    assert_eq!(cloud.node_state(&node.vmid).await.unwrap(), NodeState::Gone);
    assert_eq!(cloud.find_node("cps-moto-s1").await.unwrap(), None);
    // Killing again, or killing what EC2 never knew, is a success.
    cloud.kill_node(&node.vmid).await.unwrap();
    cloud.kill_node("i-0123456789abcdef0").await.unwrap();
    assert_eq!(
        cloud.node_state("i-0123456789abcdef0").await.unwrap(),
        NodeState::Gone
    );
}

/// A start of installation `tag`'s service `sid`, tagged and tokened as the director does.
fn installation_request(tag: &str, sid: u32) -> NodeRequest {
    request(sid)
        .client_token(format!("cps-{tag}-s{sid}"))
        .tags(vec![
            ("ConPaaS-Director".into(), tag.into()),
            ("ConPaaS-Service".into(), sid.to_string()),
        ])
}

#[tokio::test]
async fn list_nodes_lists_this_installations_live_instances_only() {
    let moto = moto();
    let region = "sa-east-1";
    let cloud = cloud(settings(moto, region, IMAGE, Duration::from_secs(20)));
    let started_before = chrono::Utc::now() - chrono::Duration::minutes(5);
    let kept = cloud
        .create_node(installation_request("aaaa1111", 1))
        .await
        .unwrap();
    let killed = cloud
        .create_node(installation_request("aaaa1111", 2))
        .await
        .unwrap();
    let stranger = cloud
        .create_node(installation_request("bbbb2222", 1))
        .await
        .unwrap();
    // Tagged as ours but with a token of another form (not made by this installation's
    // director): not ours to reap.
    let odd = cloud
        .create_node(installation_request("aaaa1111", 9).client_token("manual-aaaa1111-s9"))
        .await
        .unwrap();
    cloud.kill_node(&killed.vmid).await.unwrap();

    let listed = cloud.list_nodes("cps-aaaa1111-s").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].vmid, kept.vmid);
    assert_eq!(listed[0].client_token, "cps-aaaa1111-s1");
    let created = listed[0].created.expect("moto gives launchTime");
    assert!(
        created > started_before && created <= chrono::Utc::now() + chrono::Duration::minutes(5),
        "{created}"
    );
    let other = cloud.list_nodes("cps-bbbb2222-s").await.unwrap();
    assert_eq!(
        other
            .iter()
            .map(|node| node.vmid.as_str())
            .collect::<Vec<_>>(),
        [stranger.vmid.as_str()]
    );
    assert_eq!(cloud.list_nodes("cps-cccc3333-s").await.unwrap(), []);
    // What boto3 sees: four instances, one terminated, so the listing did filter.
    let instances = moto.instances(region);
    assert_eq!(instances.len(), 4, "{instances:#?}");
    assert!(
        instances
            .iter()
            .any(|instance| instance["id"] == odd.vmid.as_str() && instance["state"] == "running")
    );
}

#[tokio::test]
async fn the_client_token_makes_a_repeated_create_idempotent() {
    let moto = moto();
    let region = "us-west-2";
    let cloud = cloud(settings(moto, region, IMAGE, Duration::from_secs(20)));
    let first = cloud.create_node(request(2)).await.unwrap();
    let again = cloud.create_node(request(2)).await.unwrap();
    assert_eq!(first, again);
    let other = cloud.create_node(request(3)).await.unwrap();
    assert_ne!(first.vmid, other.vmid);
    assert_eq!(states(&moto.instances(region)), ["running", "running"]);
}

#[tokio::test]
async fn a_boot_timeout_leaves_nothing_running() {
    let moto = moto();
    let region = "eu-west-1";
    // moto makes instances `running` at their first DescribeInstances: a zero timeout gives
    // up before that poll.
    let cloud = cloud(settings(moto, region, IMAGE, Duration::ZERO));
    let error = cloud.create_node(request(4)).await.unwrap_err();
    let Error::BootTimeout { vmid, .. } = &error else {
        panic!("{error:?}")
    };
    let instances = moto.instances(region);
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0]["id"], vmid.as_str());
    assert_eq!(states(&instances), ["terminated"]);
}

#[tokio::test]
async fn an_unknown_image_is_refused_and_starts_nothing() {
    let moto = moto();
    let region = "eu-central-1";
    let cloud = cloud(settings(
        moto,
        region,
        "ami-00000000",
        Duration::from_secs(20),
    ));
    let error = cloud.create_node(request(5)).await.unwrap_err();
    match &error {
        Error::Refused { code, message } => {
            assert!(code.starts_with("InvalidAMIID."), "{error:?}");
            assert!(message.contains("ami-00000000"), "{error:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(moto.instances(region).is_empty());
}

/// One captured request of our client, for botocore to sign independently.
#[derive(Debug, Clone, Default)]
struct Captured {
    host: String,
    amz_date: String,
    content_type: String,
    authorization: String,
    body: String,
}

#[tokio::test]
async fn our_signature_is_the_one_botocore_computes() {
    // moto checks no signature; botocore's SigV4 (what AWS's own Python SDK sends) does.
    let captured = Arc::new(Mutex::new(None::<Captured>));
    let seen = captured.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap, body: String| {
        let seen = seen.clone();
        async move {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            *seen.lock().unwrap() = Some(Captured {
                host: header("host"),
                amz_date: header("x-amz-date"),
                content_type: header("content-type"),
                authorization: header("authorization"),
                body,
            });
            "<DescribeInstancesResponse><reservationSet/></DescribeInstancesResponse>"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let endpoint = EndpointUrl::new(UrlScheme::Http, "127.0.0.1", Some(port));
    let settings = settings_without_moto("ap-south-1")
        .endpoint(endpoint)
        .credentials(Ec2Credentials::keys(
            "AKIDCONPAASTEST",
            SecretString::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        ));
    let cloud = cloud(settings);
    // A request whose body has characters that need encoding.
    cloud.kill_node("i-0abc/+= é").await.unwrap();
    server.abort();
    let captured = captured.lock().unwrap().clone().unwrap();

    let input = serde_json::json!({
        "url": format!("http://127.0.0.1:{port}/"),
        "host": captured.host,
        "amz_date": captured.amz_date,
        "content_type": captured.content_type,
        "body": captured.body,
        "region": "ap-south-1",
        "access_key_id": "AKIDCONPAASTEST",
        "secret": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    });
    let mut child = Command::new(python())
        .arg(support_script())
        .arg("sign")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected = String::from_utf8(output.stdout).unwrap();
    assert!(
        captured
            .authorization
            .ends_with(&format!("Signature={}", expected.trim())),
        "ours: {}\nbotocore: {expected}",
        captured.authorization
    );
    assert!(
        captured
            .body
            .contains("InstanceId.1=i-0abc%2F%2B%3D%20%C3%A9")
    );
}

fn settings_without_moto(region: &str) -> Ec2Settings {
    Ec2Settings::new(
        "AKIDCONPAASTEST",
        SecretString::from("conpaas-test-secret"),
        IMAGE,
        "t1.micro",
        "default",
        "conpaas",
        Ec2Region::new(region).endpoint_host(format!("ec2.{region}.amazonaws.com")),
    )
    .boot_timeout(Duration::from_secs(20))
}

/// A director whose default cloud is moto's EC2 in `region`, with one user holding `credit`.
struct Ec2Director {
    _dir: tempfile::TempDir,
    director: Director,
    uid: conpaas_core::model::UserId,
}

async fn ec2_director(moto: &Moto, region: &str, image: &str, credit: i64) -> Ec2Director {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let text = format!(
        "[conpaas]\nCONF_DIR = {d}\nCERT_DIR = {d}/certs\nKEY_ALGORITHM = ecdsa\n\n\
         [iaas]\nDRIVER = ec2\nUSER = AKIDDIRECTOR\nPASSWORD = director-secret\n\
         IMAGE_ID = {image}\nSIZE_ID = t1.micro\nSECURITY_GROUP_NAME = default\n\
         KEY_NAME = conpaas\nREGION = ec2.{region}.amazonaws.com\n\
         ENDPOINT = http://127.0.0.1:{port}\nBOOT_TIMEOUT = 20\n\n\
         [director]\nDATABASE_URI = sqlite:///{d}/director.db\nDIRECTOR_URL = https://localhost:5555\n",
        d = data.display(),
        port = moto.port,
    );
    fs::write(data.join("director.cfg"), text).unwrap();
    let source =
        ConfigSource::resolve_with(None, Some(data.clone()), None, Path::new("/nonexistent"));
    let loaded = config::load(&source).unwrap();
    director::setup::init(&loaded, "localhost", false).unwrap();
    // A real cloud needs ConPaaS's templates; the embedded ones and a cloud script will do.
    conpaas_core::bootstrap::install_default_templates(&data).unwrap();
    fs::create_dir_all(data.join("scripts/cloud")).unwrap();
    fs::write(
        data.join("scripts/cloud/ec2"),
        "#!/bin/bash\n# EC2 cloud script\n",
    )
    .unwrap();
    let director = Director::open(&loaded).unwrap();
    let user = accounts::add_user(
        director.store(),
        NewAccount::new(
            "alice",
            "alice@example.org",
            SecretString::from("alice-password"),
            Credit(credit),
        ),
    )
    .await
    .unwrap();
    Ec2Director {
        _dir: dir,
        director,
        uid: user.uid,
    }
}

fn php(uid: conpaas_core::model::UserId) -> StartRequest {
    StartRequest::new(uid, "php")
}

#[tokio::test]
async fn a_director_on_ec2_starts_and_stops_a_service() {
    let moto = moto();
    let region = "ap-southeast-2";
    let test = ec2_director(moto, region, IMAGE, 5).await;
    let director = &test.director;
    assert_eq!(director.available_clouds(), ["iaas"]);
    assert_eq!(director.client_cloud_names(), ["default"]);

    let started = Instant::now();
    let service = director.start_service(php(test.uid)).await.unwrap();
    let start_time = started.elapsed();
    let instances = moto.instances(region);
    assert_eq!(instances.len(), 1, "{instances:#?}");
    let instance = &instances[0];
    assert_eq!(instance["state"], "running");
    assert_eq!(service.vmid.as_deref(), instance["id"].as_str());
    assert_eq!(service.manager.as_deref(), instance["public_ip"].as_str());
    assert_eq!(service.cloud.as_deref(), Some("iaas"));
    let user_data = instance["user_data"].as_str().unwrap();
    assert!(
        user_data.starts_with("#!/bin/bash\n# EC2 cloud script\n"),
        "{user_data}"
    );
    assert!(
        user_data.contains("BEGIN"),
        "the manager's certificate is in the context"
    );
    let sid = service.sid.to_string();
    assert_eq!(instance["tags"]["ConPaaS-Service"], sid.as_str());
    assert_eq!(
        instance["tags"]["ConPaaS-User"],
        test.uid.to_string().as_str()
    );
    assert_eq!(
        instance["tags"]["Name"],
        format!("conpaas-manager-php-u{}-s{sid}", test.uid).as_str()
    );
    assert!(
        instance["client_token"]
            .as_str()
            .unwrap()
            .ends_with(&format!("-s{sid}"))
    );
    assert_eq!(
        director.user(test.uid).await.unwrap().unwrap().credit,
        Credit(4)
    );

    assert!(director.stop_service(test.uid, service.sid).await.unwrap());
    assert_eq!(states(&moto.instances(region)), ["terminated"]);
    assert!(director.services(test.uid).await.unwrap().is_empty());
    eprintln!("director start on moto: {start_time:?}");
}

#[tokio::test]
async fn a_refused_start_leaves_no_row_and_refunds_the_credit() {
    let moto = moto();
    let region = "ap-northeast-1";
    let test = ec2_director(moto, region, "ami-00000000", 5).await;
    let director = &test.director;
    let error = director.start_service(php(test.uid)).await.unwrap_err();
    assert!(
        matches!(
            &error,
            director::Error::Cloud(Error::Refused { code, .. }) if code.starts_with("InvalidAMIID.")
        ),
        "{error:?}"
    );
    assert!(moto.instances(region).is_empty());
    assert!(director.services(test.uid).await.unwrap().is_empty());
    assert_eq!(
        director.user(test.uid).await.unwrap().unwrap().credit,
        Credit(5)
    );
}
