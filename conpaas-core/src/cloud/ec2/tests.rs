//! The driver against a scripted EC2 endpoint on 127.0.0.1:0: what it sends, how it retries,
//! and that every failure after `RunInstances` terminates the instance. (The tests against a
//! real EC2 implementation, moto, are in `tests/it/ec2/`.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use secrecy::SecretString;

use super::*;
use crate::cloud::{Ec2Region, EndpointUrl, UrlScheme};

/// One request the fake received.
#[derive(Debug, Clone)]
struct Call {
    action: String,
    params: Vec<(String, String)>,
    authorization: String,
    host: String,
    amz_date: String,
    security_token: String,
}

impl Call {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// What the fake answers.
struct Answer {
    status: u16,
    body: String,
    delay: Duration,
}

fn ok(body: String) -> Answer {
    Answer {
        status: 200,
        body,
        delay: Duration::ZERO,
    }
}

fn fail(status: u16, code: &str) -> Answer {
    Answer {
        status,
        body: format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
             <Message>scripted {code}</Message></Error></Errors><RequestID>rq</RequestID></Response>"
        ),
        delay: Duration::ZERO,
    }
}

/// An instance set with one instance, launched by [`request`] (its client token); `ip` empty
/// means none.
fn instance_xml(root: &str, id: &str, state: &str, ip: &str, private_ip: &str) -> String {
    let ip = if ip.is_empty() {
        String::new()
    } else {
        format!("<ipAddress>{ip}</ipAddress>")
    };
    format!(
        "<{root} xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>rq</requestId>\
         <reservationSet><item><instancesSet><item><instanceId>{id}</instanceId>\
         <instanceState><code>0</code><name>{state}</name></instanceState>{ip}\
         <clientToken>cps-0123abcd-s7</clientToken><privateIpAddress>{private_ip}</privateIpAddress></item></instancesSet></item>\
         </reservationSet></{root}>"
    )
}

fn run(state: &str, ip: &str) -> Answer {
    ok(instance_xml(
        "RunInstancesResponse",
        "i-0abc",
        state,
        ip,
        "10.0.0.5",
    ))
}

fn describe(state: &str, ip: &str) -> Answer {
    ok(instance_xml(
        "DescribeInstancesResponse",
        "i-0abc",
        state,
        ip,
        "10.0.0.5",
    ))
}

fn terminated() -> Answer {
    ok(
        "<TerminateInstancesResponse><instancesSet><item><instanceId>i-0abc</instanceId>\
        <currentState><code>32</code><name>shutting-down</name></currentState></item>\
        </instancesSet></TerminateInstancesResponse>"
            .to_owned(),
    )
}

type Script = dyn Fn(&Call, usize) -> Answer + Send + Sync;

/// A scripted EC2 endpoint: `script(call, n)` answers the `n`th (0-based) call of its action.
struct Fake {
    port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            index += 3;
        } else {
            out.push(if bytes[index] == b'+' {
                b' '
            } else {
                bytes[index]
            });
            index += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

impl Fake {
    async fn start(script: impl Fn(&Call, usize) -> Answer + Send + Sync + 'static) -> Fake {
        let calls = Arc::new(Mutex::new(Vec::<Call>::new()));
        let script: Arc<Script> = Arc::new(script);
        let recorded = calls.clone();
        let handler = move |headers: axum::http::HeaderMap, body: String| {
            let recorded = recorded.clone();
            let script = script.clone();
            async move {
                let params: Vec<(String, String)> = body
                    .split('&')
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                        (percent_decode(name), percent_decode(value))
                    })
                    .collect();
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let call = Call {
                    action: params
                        .iter()
                        .find(|(name, _)| name == "Action")
                        .map(|(_, value)| value.clone())
                        .unwrap_or_default(),
                    authorization: header("authorization"),
                    host: header("host"),
                    amz_date: header("x-amz-date"),
                    security_token: header("x-amz-security-token"),
                    params,
                };
                let nth = {
                    let mut calls = recorded.lock().unwrap();
                    let nth = calls
                        .iter()
                        .filter(|done| done.action == call.action)
                        .count();
                    calls.push(call.clone());
                    nth
                };
                let answer = script(&call, nth);
                tokio::time::sleep(answer.delay).await;
                (
                    axum::http::StatusCode::from_u16(answer.status).unwrap(),
                    answer.body,
                )
            }
        };
        let app = axum::Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Fake {
            port,
            calls,
            server,
        }
    }

    fn calls(&self, action: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|call| call.action == action)
            .cloned()
            .collect()
    }

    fn all_actions(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|call| call.action.clone())
            .collect()
    }
}

const SECRET: &str = "wJalrXUtnFEMI-never-logged";

fn settings(port: u16, boot_timeout: Duration) -> Ec2Settings {
    Ec2Settings::new(
        "AKIDTEST",
        SecretString::from(SECRET),
        "ami-1e749f67",
        "t1.micro",
        "conpaas",
        "conpaas-key",
        Ec2Region::new("eu-west-1"),
    )
    .endpoint(EndpointUrl::new(UrlScheme::Http, "127.0.0.1", Some(port)))
    .boot_timeout(boot_timeout)
}

fn fast() -> Ec2Tuning {
    Ec2Tuning {
        poll_interval: Duration::from_millis(10),
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(2),
        max_attempts: 3,
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(4),
        environment: Some(AwsEnvironment::empty()),
    }
}

fn cloud(fake: &Fake, boot_timeout: Duration) -> Ec2Cloud {
    cloud_tuned(fake.port, boot_timeout, fast())
}

fn cloud_tuned(port: u16, boot_timeout: Duration, tuning: Ec2Tuning) -> Ec2Cloud {
    Ec2Cloud::with_tuning("iaas", settings(port, boot_timeout), tuning).unwrap()
}

fn request() -> NodeRequest {
    NodeRequest::new(
        "conpaas-manager-php-u1-s7",
        "#!/bin/bash\necho 'key=+/='\n",
        "cps-0123abcd-s7",
    )
    .tag("ConPaaS-Director", "0123abcd")
    .tag("ConPaaS-Service", "7")
}

/// A script from per-action lists: the `n`th call gets the `n`th answer, later calls the last.
fn scripted(
    mut answers: HashMap<&'static str, Vec<fn() -> Answer>>,
) -> impl Fn(&Call, usize) -> Answer {
    let answers: HashMap<String, Vec<fn() -> Answer>> = answers
        .drain()
        .map(|(action, list)| (action.to_owned(), list))
        .collect();
    move |call, nth| match answers.get(&call.action) {
        Some(list) if !list.is_empty() => list[nth.min(list.len() - 1)](),
        _ => fail(400, "InvalidAction"),
    }
}

#[tokio::test]
async fn create_sends_the_parameters_tags_and_a_signature() {
    let fake = Fake::start(scripted(HashMap::from([
        (
            "RunInstances",
            vec![(|| run("pending", "")) as fn() -> Answer],
        ),
        (
            "DescribeInstances",
            vec![
                // EC2 is eventually consistent: a new instance may be unknown for a moment.
                || fail(400, "InvalidInstanceID.NotFound"),
                || describe("pending", ""),
                || describe("running", "54.1.2.3"),
            ],
        ),
    ])))
    .await;
    let node = cloud(&fake, Duration::from_secs(5))
        .create_node(request())
        .await
        .unwrap();
    assert_eq!(
        node,
        Node::new("i-0abc", "54.1.2.3", Some("10.0.0.5".into()))
    );
    let runs = fake.calls("RunInstances");
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    for (name, value) in [
        ("Version", "2016-11-15"),
        ("ImageId", "ami-1e749f67"),
        ("InstanceType", "t1.micro"),
        ("KeyName", "conpaas-key"),
        ("SecurityGroup.1", "conpaas"),
        ("MinCount", "1"),
        ("MaxCount", "1"),
        ("ClientToken", "cps-0123abcd-s7"),
        ("TagSpecification.1.ResourceType", "instance"),
        ("TagSpecification.1.Tag.1.Key", "Name"),
        (
            "TagSpecification.1.Tag.1.Value",
            "conpaas-manager-php-u1-s7",
        ),
        ("TagSpecification.1.Tag.2.Key", "ConPaaS-Director"),
        ("TagSpecification.1.Tag.2.Value", "0123abcd"),
        ("TagSpecification.1.Tag.3.Key", "ConPaaS-Service"),
        ("TagSpecification.1.Tag.3.Value", "7"),
    ] {
        assert_eq!(run.param(name), Some(value), "{name}");
    }
    let user_data = base64::engine::general_purpose::STANDARD
        .decode(run.param("UserData").unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(user_data).unwrap(), request().user_data);
    assert_eq!(run.host, format!("127.0.0.1:{}", fake.port));
    let date = &run.amz_date[..8];
    assert!(
        run.authorization.starts_with(&format!(
            "AWS4-HMAC-SHA256 Credential=AKIDTEST/{date}/eu-west-1/ec2/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, Signature="
        )),
        "{}",
        run.authorization
    );
    let polls = fake.calls("DescribeInstances");
    assert_eq!(polls.len(), 3);
    assert!(
        polls
            .iter()
            .all(|poll| poll.param("InstanceId.1") == Some("i-0abc"))
    );
    assert!(fake.calls("TerminateInstances").is_empty());
}

#[tokio::test]
async fn a_ready_run_answer_needs_no_poll() {
    let fake = Fake::start(scripted(HashMap::from([(
        "RunInstances",
        vec![(|| run("running", "54.1.2.3")) as fn() -> Answer],
    )])))
    .await;
    let node = cloud(&fake, Duration::from_secs(5))
        .create_node(request())
        .await
        .unwrap();
    assert_eq!(node.public_ip, "54.1.2.3");
    assert_eq!(fake.all_actions(), ["RunInstances"]);
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_with_the_same_token() {
    let fake = Fake::start(scripted(HashMap::from([(
        "RunInstances",
        vec![
            (|| Answer {
                status: 503,
                body: String::new(),
                delay: Duration::ZERO,
            }) as fn() -> Answer,
            || fail(400, "RequestLimitExceeded"),
            || fail(429, "TooManyRequests"),
            || run("running", "54.1.2.3"),
        ],
    )])))
    .await;
    let tuning = Ec2Tuning {
        max_attempts: 4,
        ..fast()
    };
    let node = cloud_tuned(fake.port, Duration::from_secs(5), tuning)
        .create_node(request())
        .await
        .unwrap();
    assert_eq!(node.vmid, "i-0abc");
    let runs = fake.calls("RunInstances");
    assert_eq!(runs.len(), 4);
    assert!(
        runs.iter()
            .all(|run| run.param("ClientToken") == Some("cps-0123abcd-s7"))
    );
}

#[tokio::test]
async fn refusals_are_shown_with_their_code_and_not_retried() {
    let fake = Fake::start(scripted(HashMap::from([(
        "RunInstances",
        vec![(|| fail(400, "InvalidAMIID.NotFound")) as fn() -> Answer],
    )])))
    .await;
    let error = cloud(&fake, Duration::from_secs(5))
        .create_node(request())
        .await
        .unwrap_err();
    match error {
        Error::Refused { code, message } => {
            assert_eq!(code, "InvalidAMIID.NotFound");
            assert_eq!(message, "scripted InvalidAMIID.NotFound");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.all_actions(), ["RunInstances"]);
}

#[tokio::test]
async fn a_busy_cloud_is_unavailable_after_the_bounded_attempts() {
    let fake = Fake::start(|_: &Call, _| fail(500, "InternalError")).await;
    let error = cloud(&fake, Duration::from_secs(5))
        .create_node(request())
        .await
        .unwrap_err();
    let Error::Unavailable(text) = error else {
        panic!("{error:?}")
    };
    assert!(
        text.contains("RunInstances failed after 3 attempts"),
        "{text}"
    );
    assert!(text.contains("InternalError"), "{text}");
    assert!(!text.contains(SECRET));
    assert_eq!(fake.calls("RunInstances").len(), 3);
}

#[tokio::test]
async fn an_instance_made_by_a_run_whose_answers_were_lost_is_terminated() {
    let fake = Fake::start(|call: &Call, _| match call.action.as_str() {
        "RunInstances" => fail(503, "Unavailable"),
        "DescribeInstances" if call.param("Filter.1.Value.1") == Some("cps-0123abcd-s7") => {
            describe("pending", "")
        }
        "TerminateInstances" => terminated(),
        _ => fail(400, "InvalidAction"),
    })
    .await;
    let error = cloud(&fake, Duration::from_secs(5))
        .create_node(request())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
    assert_eq!(
        fake.all_actions(),
        [
            "RunInstances",
            "RunInstances",
            "RunInstances",
            "DescribeInstances",
            "TerminateInstances"
        ]
    );
    assert_eq!(
        fake.calls("TerminateInstances")[0].param("InstanceId.1"),
        Some("i-0abc")
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let started = std::time::Instant::now();
    let error = cloud_tuned(port, Duration::from_secs(5), fast())
        .create_node(request())
        .await
        .unwrap_err();
    let Error::Unavailable(text) = error else {
        panic!("{error:?}")
    };
    assert!(text.contains("cannot connect"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn slow_answers_time_out_and_are_retried() {
    let fake = Fake::start(|_: &Call, _| Answer {
        delay: Duration::from_secs(3),
        ..run("running", "54.1.2.3")
    })
    .await;
    let tuning = Ec2Tuning {
        request_timeout: Duration::from_millis(150),
        ..fast()
    };
    let error = cloud_tuned(fake.port, Duration::from_secs(5), tuning)
        .probe()
        .await
        .unwrap_err();
    let Error::Unavailable(text) = error else {
        panic!("{error:?}")
    };
    assert!(text.contains("timed out"), "{text}");
    assert_eq!(fake.calls("DescribeInstances").len(), 3);
}

#[tokio::test]
async fn a_terminal_state_while_booting_fails_and_terminates() {
    let fake = Fake::start(scripted(HashMap::from([
        (
            "RunInstances",
            vec![(|| run("pending", "")) as fn() -> Answer],
        ),
        (
            "DescribeInstances",
            vec![|| describe("pending", ""), || describe("shutting-down", "")],
        ),
        ("TerminateInstances", vec![terminated]),
    ])))
    .await;
    let error = cloud(&fake, Duration::from_secs(5))
        .create_node(request())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Failed(vmid) if vmid == "i-0abc"),
        "{error:?}"
    );
    let kills = fake.calls("TerminateInstances");
    assert_eq!(kills.len(), 1);
    assert_eq!(kills[0].param("InstanceId.1"), Some("i-0abc"));
}

#[tokio::test]
async fn no_public_address_times_out_and_terminates() {
    let script = || {
        scripted(HashMap::from([
            (
                "RunInstances",
                vec![(|| run("pending", "")) as fn() -> Answer],
            ),
            ("DescribeInstances", vec![|| describe("running", "")]),
            ("TerminateInstances", vec![terminated]),
        ]))
    };
    let fake = Fake::start(script()).await;
    let error = cloud(&fake, Duration::from_millis(100))
        .create_node(request())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::BootTimeout { vmid, .. } if vmid == "i-0abc"),
        "{error:?}"
    );
    assert!(fake.calls("DescribeInstances").len() >= 2);
    assert_eq!(fake.calls("TerminateInstances").len(), 1);

    // A director inside the VPC may take the private address instead.
    let fake = Fake::start(script()).await;
    let settings = settings(fake.port, Duration::from_secs(5))
        .address(crate::cloud::AddressPolicy::PublicOrPrivate);
    let node = Ec2Cloud::with_tuning("iaas", settings, fast())
        .unwrap()
        .create_node(request())
        .await
        .unwrap();
    assert_eq!(node.public_ip, "10.0.0.5");
    assert!(fake.calls("TerminateInstances").is_empty());
}

#[tokio::test]
async fn poll_errors_after_the_retries_terminate() {
    let fake = Fake::start(scripted(HashMap::from([
        (
            "RunInstances",
            vec![(|| run("pending", "")) as fn() -> Answer],
        ),
        ("DescribeInstances", vec![|| fail(503, "Unavailable")]),
        ("TerminateInstances", vec![terminated]),
    ])))
    .await;
    let error = cloud(&fake, Duration::from_secs(5))
        .create_node(request())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
    assert_eq!(fake.calls("DescribeInstances").len(), 3);
    assert_eq!(fake.calls("TerminateInstances").len(), 1);
}

#[tokio::test]
async fn an_instance_not_yet_visible_is_terminated_all_the_same() {
    let fake = Fake::start(scripted(HashMap::from([
        (
            "RunInstances",
            vec![(|| run("pending", "")) as fn() -> Answer],
        ),
        (
            "TerminateInstances",
            vec![|| fail(400, "InvalidInstanceID.NotFound"), terminated],
        ),
    ])))
    .await;
    // A zero boot timeout gives up before the first poll.
    let error = cloud(&fake, Duration::ZERO)
        .create_node(request())
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::BootTimeout { seconds: 0, .. }),
        "{error:?}"
    );
    assert!(fake.calls("DescribeInstances").is_empty());
    assert_eq!(fake.calls("TerminateInstances").len(), 2);
}

#[tokio::test]
async fn a_caller_that_gives_up_leaves_no_instance() {
    let fake = Fake::start(scripted(HashMap::from([
        (
            "RunInstances",
            vec![(|| run("pending", "")) as fn() -> Answer],
        ),
        ("DescribeInstances", vec![|| describe("pending", "")]),
        ("TerminateInstances", vec![terminated]),
    ])))
    .await;
    let cloud = cloud(&fake, Duration::from_secs(60));
    let outcome =
        tokio::time::timeout(Duration::from_millis(200), cloud.create_node(request())).await;
    assert!(outcome.is_err(), "the create should still be waiting");
    for _ in 0..200 {
        if !fake.calls("TerminateInstances").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let kills = fake.calls("TerminateInstances");
    assert_eq!(kills.len(), 1);
    assert_eq!(kills[0].param("InstanceId.1"), Some("i-0abc"));
}

#[tokio::test]
async fn a_large_context_is_refused_before_any_call() {
    let fake = Fake::start(|_: &Call, _| run("running", "54.1.2.3")).await;
    let mut big = request();
    big.user_data = "#".repeat(EC2_USER_DATA_LIMIT + 1);
    let error = cloud(&fake, Duration::from_secs(5))
        .create_node(big)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Refused { code, .. } if code == "UserDataTooLarge"),
        "{error:?}"
    );
    assert!(fake.all_actions().is_empty());
}

#[tokio::test]
async fn kill_node_takes_unknown_instances_for_gone() {
    let fake = Fake::start(|call: &Call, _| match call.param("InstanceId.1") {
        Some("i-gone") => fail(400, "InvalidInstanceID.NotFound"),
        Some("garbage") => fail(400, "InvalidInstanceID.Malformed"),
        Some("i-forbidden") => fail(401, "AuthFailure"),
        _ => terminated(),
    })
    .await;
    let cloud = cloud(&fake, Duration::from_secs(5));
    cloud.kill_node("i-0abc").await.unwrap();
    cloud.kill_node("i-gone").await.unwrap();
    cloud.kill_node("garbage").await.unwrap();
    let error = cloud.kill_node("i-forbidden").await.unwrap_err();
    assert!(
        matches!(&error, Error::Refused { code, .. } if code == "AuthFailure"),
        "{error:?}"
    );
    assert_eq!(fake.calls("TerminateInstances").len(), 4);
}

#[tokio::test]
async fn node_state_follows_the_instance_state() {
    let fake = Fake::start(|call: &Call, _| match call.param("InstanceId.1") {
        Some("i-gone") => fail(400, "InvalidInstanceID.NotFound"),
        Some(state) => ok(instance_xml(
            "DescribeInstancesResponse",
            state,
            state,
            "",
            "",
        )),
        None => fail(400, "MissingParameter"),
    })
    .await;
    let cloud = cloud(&fake, Duration::from_secs(5));
    for (vmid, expected) in [
        ("pending", NodeState::Pending),
        ("running", NodeState::Running),
        ("stopped", NodeState::Gone),
        ("terminated", NodeState::Gone),
        ("i-gone", NodeState::Gone),
    ] {
        assert_eq!(cloud.node_state(vmid).await.unwrap(), expected, "{vmid}");
    }
}

/// One `item` of an `instancesSet`; `token` empty means no `clientToken` element.
fn item(id: &str, state: &str, token: &str, launch: &str) -> String {
    let token = if token.is_empty() {
        String::new()
    } else {
        format!("<clientToken>{token}</clientToken>")
    };
    let launch = if launch.is_empty() {
        String::new()
    } else {
        format!("<launchTime>{launch}</launchTime>")
    };
    format!(
        "<item><instanceId>{id}</instanceId><instanceState><name>{state}</name></instanceState>\
         {token}{launch}</item>"
    )
}

fn described(items: &str, next_token: Option<&str>) -> Answer {
    let next = next_token
        .map(|token| format!("<nextToken>{token}</nextToken>"))
        .unwrap_or_default();
    ok(format!(
        "<DescribeInstancesResponse><reservationSet><item><instancesSet>{items}</instancesSet>\
         </item></reservationSet>{next}</DescribeInstancesResponse>"
    ))
}

#[tokio::test]
async fn find_node_filters_on_the_client_token() {
    let fake = Fake::start(|call: &Call, _| {
        let token = call.param("Filter.1.Value.1").unwrap_or_default();
        let items = match token {
            "cps-live" => {
                item("i-0", "terminated", "cps-live", "") + &item("i-1", "running", "cps-live", "")
            }
            _ => String::new(),
        };
        described(&items, None)
    })
    .await;
    let cloud = cloud(&fake, Duration::from_secs(5));
    assert_eq!(
        cloud.find_node("cps-live").await.unwrap(),
        Some("i-1".into())
    );
    assert_eq!(cloud.find_node("cps-none").await.unwrap(), None);
    let calls = fake.calls("DescribeInstances");
    assert_eq!(calls[0].param("Filter.1.Name"), Some("client-token"));
}

#[tokio::test]
async fn find_node_ignores_instances_of_other_tokens_when_the_filter_is_ignored() {
    // An EC2-compatible endpoint that ignores unknown filters answers every instance.
    let fake = Fake::start(|_: &Call, _| {
        let items = item("i-other", "running", "cps-1a2b3c4d-s6", "")
            + &item("i-none", "running", "", "")
            + &item("i-prefix", "running", "cps-1a2b3c4d-s55", "");
        described(&items, None)
    })
    .await;
    let lookup = cloud(&fake, Duration::from_secs(5));
    assert_eq!(lookup.find_node("cps-1a2b3c4d-s5").await.unwrap(), None);
    assert_eq!(
        lookup.find_node("cps-1a2b3c4d-s6").await.unwrap(),
        Some("i-other".into())
    );
    assert_eq!(fake.calls("DescribeInstances").len(), 2);
    // So a failed start whose lookup finds nothing terminates nothing.
    let fake = Fake::start(|call: &Call, _| match call.action.as_str() {
        "RunInstances" => fail(503, "Unavailable"),
        _ => described(&item("i-other", "running", "cps-1a2b3c4d-s6", ""), None),
    })
    .await;
    let error = cloud(&fake, Duration::from_secs(5))
        .create_node(request())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
    assert!(fake.calls("TerminateInstances").is_empty());
}

#[tokio::test]
async fn list_nodes_pages_and_keeps_only_this_installations_live_instances() {
    let fake = Fake::start(|call: &Call, _| match call.param("NextToken") {
        None => described(
            &(item(
                "i-1",
                "running",
                "cps-1a2b3c4d-s1",
                "2026-12-03T12:00:00.000Z",
            ) + &item("i-2", "terminated", "cps-1a2b3c4d-s2", "")
                + &item("i-3", "running", "cps-99999999-s3", "")
                + &item("i-4", "running", "", "")),
            Some("page-2"),
        ),
        Some("page-2") => described(
            &(item("i-5", "stopped", "cps-1a2b3c4d-s5", "not a time")
                + &item("i-6", "shutting-down", "cps-1a2b3c4d-s6", "")),
            None,
        ),
        Some(_) => fail(400, "InvalidParameterValue"),
    })
    .await;
    let cloud = cloud(&fake, Duration::from_secs(5));
    let listed = cloud.list_nodes("cps-1a2b3c4d-").await.unwrap();
    let launched = chrono::DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert_eq!(
        listed,
        [
            ListedNode::new("i-1", "cps-1a2b3c4d-s1", Some(launched)),
            ListedNode::new("i-5", "cps-1a2b3c4d-s5", None),
        ]
    );
    let calls = fake.calls("DescribeInstances");
    assert_eq!(calls.len(), 2);
    let first = &calls[0];
    assert_eq!(first.param("NextToken"), None);
    assert_eq!(first.param("MaxResults"), Some("1000"));
    assert_eq!(first.param("Filter.1.Name"), Some("instance-state-name"));
    assert_eq!(first.param("Filter.1.Value.4"), Some("stopped"));
    assert_eq!(first.param("Filter.2.Name"), Some("tag:ConPaaS-Director"));
    assert_eq!(first.param("Filter.2.Value.1"), Some("1a2b3c4d"));
    assert_eq!(calls[1].param("NextToken"), Some("page-2"));
    assert_eq!(calls[1].param("Filter.2.Value.1"), Some("1a2b3c4d"));
    // The reaper's prefix (`cps-<tag>-s`) names the same tag.
    assert_eq!(cloud.list_nodes("cps-1a2b3c4d-s").await.unwrap(), listed);
    let calls = fake.calls("DescribeInstances");
    assert_eq!(
        calls[2].param("Filter.2.Name"),
        Some("tag:ConPaaS-Director")
    );
    assert_eq!(calls[2].param("Filter.2.Value.1"), Some("1a2b3c4d"));
    // A prefix of another form filters on the tag's presence only; an empty one claims nothing.
    for other in ["mine-", "cps-", "cps-x.y-s"] {
        cloud.list_nodes(other).await.unwrap();
        let calls = fake.calls("DescribeInstances");
        let last = calls.last().unwrap();
        assert_eq!(last.param("Filter.2.Name"), Some("tag-key"), "{other}");
        assert_eq!(last.param("Filter.2.Value.1"), Some("ConPaaS-Director"));
    }
    assert_eq!(cloud.list_nodes("").await.unwrap(), []);
    // Two pages per listing, none for the empty prefix.
    assert_eq!(fake.calls("DescribeInstances").len(), 10);
}

#[tokio::test]
async fn list_nodes_stops_on_a_repeated_next_token() {
    let fake = Fake::start(|_: &Call, _| {
        described(
            &item("i-1", "running", "cps-1a2b3c4d-s1", ""),
            Some("again"),
        )
    })
    .await;
    let cloud = cloud(&fake, Duration::from_secs(5));
    let error = cloud.list_nodes("cps-1a2b3c4d-").await.unwrap_err();
    assert!(
        matches!(&error, Error::Unavailable(message) if message.contains("again")),
        "{error:?}"
    );
    assert_eq!(fake.calls("DescribeInstances").len(), 2);
}

/// A `Describe*` answer whose `set` holds one item, or none.
fn set(action: &str, set: &str, items: usize) -> Answer {
    let items = "<item><id>x</id></item>".repeat(items);
    ok(format!(
        "<{action}Response><{set}>{items}</{set}></{action}Response>"
    ))
}

#[tokio::test]
async fn probe_lists_a_few_instances_then_checks_what_the_section_names() {
    let fake = Fake::start(|call: &Call, _| match call.action.as_str() {
        "DescribeImages" => set("DescribeImages", "imagesSet", 1),
        "DescribeSecurityGroups" => set("DescribeSecurityGroups", "securityGroupInfo", 1),
        "DescribeKeyPairs" => set("DescribeKeyPairs", "keySet", 1),
        _ => describe("running", "54.1.2.3"),
    })
    .await;
    cloud(&fake, Duration::from_secs(5)).probe().await.unwrap();
    let calls = fake.calls("DescribeInstances");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].param("MaxResults"), Some("5"));
    assert_eq!(
        fake.calls("DescribeImages")[0].param("ImageId.1"),
        Some("ami-1e749f67")
    );
    assert_eq!(
        fake.calls("DescribeSecurityGroups")[0].param("GroupName.1"),
        Some("conpaas")
    );
    assert_eq!(
        fake.calls("DescribeKeyPairs")[0].param("KeyName.1"),
        Some("conpaas-key")
    );
    assert!(fake.calls("DescribeSubnets").is_empty());
}

#[tokio::test]
async fn probe_names_the_key_of_what_is_missing() {
    // An empty image set (an AMI not shared with the account) and a not-found subnet code.
    let fake = Fake::start(|call: &Call, _| match call.action.as_str() {
        "DescribeImages" => set("DescribeImages", "imagesSet", 0),
        _ => describe("running", "54.1.2.3"),
    })
    .await;
    let error = cloud(&fake, Duration::from_secs(5))
        .probe()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Misconfigured { key, message } if key == "IMAGE_ID" && message.contains("ami-1e749f67")),
        "{error:?}"
    );
    let fake = Fake::start(|call: &Call, _| match call.action.as_str() {
        "DescribeImages" => set("DescribeImages", "imagesSet", 1),
        "DescribeSubnets" => fail(400, "InvalidSubnetID.NotFound"),
        _ => describe("running", "54.1.2.3"),
    })
    .await;
    let vpc = settings(fake.port, Duration::from_secs(5))
        .subnet_id("subnet-0a1b2c3d")
        .security_group_ids(vec!["sg-0a1b2c3d".to_owned()]);
    let error = Ec2Cloud::with_tuning("iaas", vpc, fast())
        .unwrap()
        .probe()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Misconfigured { key, .. } if key == "SUBNET_ID"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "SUBNET_ID of the cloud's section: the subnet subnet-0a1b2c3d does not exist in eu-west-1"
    );
}

#[tokio::test]
async fn a_vpc_launch_names_its_subnet_and_group_ids_and_requires_imdsv2() {
    let fake = Fake::start(|call: &Call, _| match call.action.as_str() {
        "RunInstances" => run("running", "54.1.2.3"),
        _ => describe("running", "54.1.2.3"),
    })
    .await;
    let vpc = settings(fake.port, Duration::from_secs(5))
        .subnet_id("subnet-0a1b2c3d")
        .security_group_ids(vec!["sg-0a1b2c3d".to_owned(), "sg-4e5f6a7b".to_owned()]);
    Ec2Cloud::with_tuning("iaas", vpc, fast())
        .unwrap()
        .create_node(request())
        .await
        .unwrap();
    let run = &fake.calls("RunInstances")[0];
    assert_eq!(run.param("SubnetId"), Some("subnet-0a1b2c3d"));
    assert_eq!(run.param("SecurityGroupId.1"), Some("sg-0a1b2c3d"));
    assert_eq!(run.param("SecurityGroupId.2"), Some("sg-4e5f6a7b"));
    // With ids the name is not sent: EC2 refuses names beside a subnet of another VPC.
    assert_eq!(run.param("SecurityGroup.1"), None);
    assert_eq!(run.param("MetadataOptions.HttpTokens"), Some("required"));
    assert_eq!(run.param("MetadataOptions.HttpEndpoint"), Some("enabled"));
}

#[tokio::test]
async fn temporary_credentials_sign_their_session_token() {
    let fake = Fake::start(|_: &Call, _| describe("running", "54.1.2.3")).await;
    let environment = AwsEnvironment::empty()
        .var("AWS_ACCESS_KEY_ID", "ASIATEMP")
        .var("AWS_SECRET_ACCESS_KEY", SECRET)
        .var("AWS_SESSION_TOKEN", "session-token-value");
    let chain = settings(fake.port, Duration::from_secs(5))
        .credentials(crate::cloud::Ec2Credentials::chain());
    let cloud = Ec2Cloud::with_tuning("iaas", chain, fast().environment(environment)).unwrap();
    cloud.node_state("i-0abc").await.unwrap();
    let call = &fake.calls("DescribeInstances")[0];
    assert_eq!(call.security_token, "session-token-value");
    let authorization = &call.authorization;
    assert!(
        authorization.contains("Credential=ASIATEMP/"),
        "{authorization}"
    );
    assert!(
        authorization.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"),
        "{authorization}"
    );
}

#[tokio::test]
async fn secrets_stay_out_of_debug_output() {
    let fake = Fake::start(|_: &Call, _| fail(403, "SignatureDoesNotMatch")).await;
    let cloud = cloud(&fake, Duration::from_secs(5));
    let debug = format!("{cloud:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("AKIDTEST"), "{debug}");
    let error = cloud.probe().await.unwrap_err();
    assert!(!error.to_string().contains(SECRET));
    assert_eq!(cloud.driver(), "ec2");
    assert_eq!(cloud.name(), "iaas");
}
