//! EC2 as accounts are set up now: managers in a VPC subnet with security group ids, IMDSv2
//! required, credentials from AWS's standard chain (environment, profile file, an instance role
//! through IMDSv2 on loopback), cpscheck naming what is missing in one line each, and the
//! director's cloud part reading the metadata through a token.

use std::sync::Arc;

use conpaas_core::bootstrap::EC2_CLOUD_SCRIPT;
use conpaas_core::check::{self, CheckOptions, CheckResult, Status};
use conpaas_core::cloud::{AddressPolicy, AwsEnvironment, CloudRegistry, MetadataTokens};

use super::imds::{FakeImds, ROLE, ROLE_KEY_ID, Tokens};
use super::*;

/// A cloud whose managers may be reached at their private address (a director in the VPC).
fn in_vpc(settings: Ec2Settings) -> Ec2Cloud {
    Ec2Cloud::with_tuning(
        "iaas",
        settings.address(AddressPolicy::PublicOrPrivate),
        fast().environment(AwsEnvironment::empty()),
    )
    .unwrap()
}

#[tokio::test]
async fn managers_go_into_the_subnet_with_group_ids_and_imdsv2_required() {
    let moto = moto();
    let region = "eu-north-1";
    let ids = moto.setup(region);
    let (subnet, group) = (
        ids["subnet"].as_str().unwrap(),
        ids["group"].as_str().unwrap(),
    );
    let settings = settings(moto, region, IMAGE, Duration::from_secs(20))
        .subnet_id(subnet)
        .security_group_ids(vec![group.to_owned()]);
    let cloud = in_vpc(settings.clone());
    cloud.probe().await.unwrap();
    let node = cloud.create_node(request(1)).await.unwrap();
    let optional = in_vpc(settings.metadata_tokens(MetadataTokens::Optional));
    let other = optional.create_node(request(2)).await.unwrap();

    let instances = moto.instances(region);
    assert_eq!(instances.len(), 2, "{instances:#?}");
    let find = |vmid: &str| {
        instances
            .iter()
            .find(|instance| instance["id"] == vmid)
            .unwrap()
            .clone()
    };
    let first = find(&node.vmid);
    assert_eq!(first["subnet"], subnet);
    assert_eq!(first["group_ids"], serde_json::json!([group]));
    assert_eq!(first["http_tokens"], "required");
    // No public address in this subnet: the private one is the manager's.
    assert_eq!(Some(node.public_ip.as_str()), first["private_ip"].as_str());
    assert_eq!(find(&other.vmid)["http_tokens"], "optional");

    cloud.kill_node(&node.vmid).await.unwrap();
    cloud.kill_node(&other.vmid).await.unwrap();
    assert_eq!(
        states(&moto.instances(region)),
        ["terminated", "terminated"]
    );
}

#[tokio::test]
async fn the_credential_chain_finds_the_environment_a_profile_or_the_instance_role() {
    let moto = moto();
    let region = "eu-south-1";
    moto.setup(region);
    let chain =
        settings(moto, region, IMAGE, Duration::from_secs(20)).credentials(Ec2Credentials::chain());
    let launch = |environment: AwsEnvironment, sid: u32| {
        let settings = chain.clone();
        async move {
            let cloud =
                Ec2Cloud::with_tuning("iaas", settings, fast().environment(environment)).unwrap();
            cloud.probe().await.unwrap();
            let node = cloud.create_node(request(sid)).await.unwrap();
            cloud.kill_node(&node.vmid).await.unwrap();
        }
    };
    // An IMDS stands by: the first two must not ask it.
    let imds = FakeImds::start(Tokens::Required).await;
    let home = tempfile::tempdir().unwrap();
    let base = || {
        AwsEnvironment::empty()
            .home(home.path())
            .var("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint())
    };
    launch(
        base()
            .var("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
            .var("AWS_SECRET_ACCESS_KEY", "env-secret"),
        1,
    )
    .await;
    fs::create_dir(home.path().join(".aws")).unwrap();
    fs::write(
        home.path().join(".aws/credentials"),
        "[default]\naws_access_key_id = AKIDFROMFILE\naws_secret_access_key = file-secret\n",
    )
    .unwrap();
    launch(base(), 2).await;
    assert!(imds.seen().is_empty(), "{:?}", imds.seen());
    fs::remove_file(home.path().join(".aws/credentials")).unwrap();

    // The instance role, IMDSv2: a token first, then every GET carries it.
    launch(base(), 3).await;
    let seen = imds.seen();
    assert_eq!(seen[0].method, "PUT", "{seen:?}");
    assert_eq!(seen[0].path, "/latest/api/token");
    let gets: Vec<_> = seen.iter().filter(|seen| seen.method == "GET").collect();
    assert_eq!(gets.len(), 2, "{seen:?}");
    assert!(gets.iter().all(|get| get.with_token), "{seen:?}");
    assert!(gets[1].path.ends_with(ROLE), "{seen:?}");

    // An endpoint without the token call (IMDSv1 only): plain GETs.
    let v1 = FakeImds::start(Tokens::NoTokenApi).await;
    launch(
        AwsEnvironment::empty()
            .home(home.path())
            .var("AWS_EC2_METADATA_SERVICE_ENDPOINT", v1.endpoint()),
        4,
    )
    .await;
    assert!(v1.seen().iter().any(|seen| seen.path.ends_with(ROLE)));
    assert_eq!(
        states(&moto.instances(region)),
        ["terminated", "terminated", "terminated", "terminated"]
    );
    assert!(!ROLE_KEY_ID.is_empty());
}

/// cpscheck's cloud lines for a director.cfg whose `[iaas]` is `section`.
async fn cloud_lines(section: &str) -> Vec<CheckResult> {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[conpaas]\nCONF_DIR = {d}\nCERT_DIR = {d}/certs\n\n[iaas]\n{section}\n\
         [director]\nDATABASE_URI = sqlite:///{d}/director.db\nDIRECTOR_URL = https://localhost:5555\n",
        d = dir.path().display(),
    );
    fs::write(dir.path().join("director.cfg"), text).unwrap();
    let source = ConfigSource::resolve_with(
        Some(dir.path().join("director.cfg")),
        None,
        None,
        Path::new("/nonexistent"),
    );
    let loaded = config::load(&source).unwrap();
    check::run_checks(&loaded, &CheckOptions::recommended())
        .await
        .into_iter()
        .filter(|result| result.id == "cloud")
        .collect()
}

/// The one error line of `results`, which names `key` and says to fix it.
fn one_error_naming(results: &[CheckResult], key: &str) -> String {
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].status, Status::Error, "{}", results[0]);
    let message = &results[0].found;
    assert!(!message.contains('\n'), "{message}");
    assert!(message.contains(key), "{message}");
    results[0].to_string()
}

#[tokio::test]
async fn cpscheck_names_a_missing_image_subnet_group_or_key_pair_in_one_line() {
    let moto = moto();
    let region = "ap-south-2";
    let ids = moto.setup(region);
    let section = |image: &str, subnet: &str, group: &str, key: &str| {
        format!(
            "DRIVER = ec2\nUSER = AKIDCHECK\nPASSWORD = check-secret\nIMAGE_ID = {image}\n\
             SIZE_ID = t3.micro\nSUBNET_ID = {subnet}\nSECURITY_GROUP_IDS = {group}\n\
             KEY_NAME = {key}\nREGION = ec2.{region}.amazonaws.com\nENDPOINT = http://127.0.0.1:{port}\n",
            port = moto.port
        )
    };
    let (subnet, group) = (
        ids["subnet"].as_str().unwrap(),
        ids["group"].as_str().unwrap(),
    );
    let good = cloud_lines(&section(IMAGE, subnet, group, "conpaas")).await;
    assert_eq!(good.len(), 1, "{good:?}");
    assert_eq!(good[0].status, Status::Ok, "{}", good[0]);
    for (image, subnet, group, key, named) in [
        ("ami-0000dead", subnet, group, "conpaas", "IMAGE_ID"),
        (IMAGE, "subnet-0000dead", group, "conpaas", "SUBNET_ID"),
        (
            IMAGE,
            subnet,
            "sg-0000dead",
            "conpaas",
            "SECURITY_GROUP_IDS",
        ),
        (IMAGE, subnet, group, "nokey", "KEY_NAME"),
    ] {
        let line = one_error_naming(
            &cloud_lines(&section(image, subnet, group, key)).await,
            named,
        );
        assert!(
            line.contains(&format!("fix: correct {named} in [iaas]")),
            "{line}"
        );
    }
}

#[tokio::test]
async fn cpscheck_explains_a_refused_credential_and_a_missing_one() {
    // An endpoint refusing every signature, as EC2 does a wrong secret key.
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::UNAUTHORIZED,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error>\
             <Code>AuthFailure</Code><Message>AWS was not able to validate the provided access \
             credentials</Message></Error></Errors><RequestID>r</RequestID></Response>",
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let results = cloud_lines(&format!(
        "DRIVER = ec2\nUSER = AKIDWRONG\nPASSWORD = wrong-secret\nIMAGE_ID = {IMAGE}\n\
         SIZE_ID = t3.micro\nSECURITY_GROUP_NAME = default\nKEY_NAME = conpaas\n\
         REGION = ec2.us-east-1.amazonaws.com\nENDPOINT = http://127.0.0.1:{port}\n"
    ))
    .await;
    let line = one_error_naming(&results, "AuthFailure");
    assert!(line.contains("USER and PASSWORD"), "{line}");
    assert!(!line.contains("wrong-secret"), "{line}");
    server.abort();

    // No keys anywhere (an embedder's cloud with an empty environment and no IMDS).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = settings(moto(), "us-east-1", IMAGE, Duration::from_secs(5))
        .credentials(Ec2Credentials::chain());
    let environment = AwsEnvironment::empty()
        .home(tempfile::tempdir().unwrap().path())
        .var(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://127.0.0.1:{closed}"),
        );
    let cloud = Ec2Cloud::with_tuning("aws", settings, fast().environment(environment)).unwrap();
    let registry = CloudRegistry::builder()
        .cloud("aws", Arc::new(cloud))
        .build()
        .unwrap();
    let results = check::cloud_checks(&registry, None, &CheckOptions::recommended()).await;
    let line = one_error_naming(&results, "no AWS credentials");
    assert!(line.contains("no instance role"), "{line}");
}

/// Runs the director's EC2 cloud part (without its system changes: host name, /etc/hosts)
/// against `imds` and answers the variables it set.
async fn cloud_part_variables(imds: &FakeImds) -> String {
    let marker = "# conpaas: system changes";
    let cut = EC2_CLOUD_SCRIPT.find(marker).expect("the marker line");
    let script = format!(
        "{}\necho \"IP_PUBLIC=$IP_PUBLIC PRIVATE_IP=$PRIVATE_IP VM_ID=$VM_ID PRIVATE_HOSTNAME=$PRIVATE_HOSTNAME\"\n",
        &EC2_CLOUD_SCRIPT[..cut]
    );
    let output = tokio::process::Command::new("bash")
        .args(["-c", &script])
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint())
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn the_cloud_part_reads_the_metadata_with_a_token_or_without_where_it_must() {
    let expected = "IP_PUBLIC=54.77.1.23 PRIVATE_IP=10.7.1.23 VM_ID=i-0123456789abcdef0 \
                    PRIVATE_HOSTNAME=ip-10-7-1-23.eu-west-1.compute.internal";
    let v2 = FakeImds::start(Tokens::Required).await;
    assert_eq!(cloud_part_variables(&v2).await, expected);
    let gets: Vec<_> = v2
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET")
        .collect();
    assert_eq!(gets.len(), 5, "{gets:?}");
    assert!(gets.iter().all(|get| get.with_token), "{gets:?}");

    let v1 = FakeImds::start(Tokens::NoTokenApi).await;
    assert_eq!(cloud_part_variables(&v1).await, expected);

    // A private subnet: the private address is the manager's.
    let private = FakeImds::start_with(Tokens::Optional, false).await;
    let variables = cloud_part_variables(&private).await;
    assert!(variables.starts_with("IP_PUBLIC=10.7.1.23 "), "{variables}");
}
