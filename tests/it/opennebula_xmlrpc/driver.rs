//! The XML-RPC OpenNebula driver against the fake oned: what it sends, how it waits, and what
//! it leaves behind when a create fails (nothing the director does not know).

use std::net::Ipv4Addr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use conpaas_core::cloud::{
    Cloud, EndpointUrl, Error, NodeRequest, NodeState, OpenNebulaTuning, OpenNebulaVm,
    OpenNebulaVmSpec, OpenNebulaXmlRpcCloud, OpenNebulaXmlRpcSettings, UrlScheme,
};
use secrecy::SecretString;

use super::fake::{FakeConfig, FakeOne, Faults};

const TOKEN: &str = "cps-1a2b3c4d-s5";

/// A boot script with what must survive base64 and XML: quotes, XML specials, UTF-8.
const SCRIPT: &str = "#!/bin/bash\n# ConPaaS manager\necho \"<&> 'é' $HOME ]]>\"\nexit 0\n";

pub(super) fn settings(
    fake: &FakeOne,
    password: &str,
    vm: OpenNebulaVm,
) -> OpenNebulaXmlRpcSettings {
    OpenNebulaXmlRpcSettings::new(
        EndpointUrl::new(UrlScheme::Http, "127.0.0.1", Some(fake.port())),
        "/RPC2",
        "conpaas",
        SecretString::from(password),
        vm,
    )
    .boot_timeout(Duration::from_secs(5))
}

fn template(fake: &FakeOne) -> OpenNebulaXmlRpcSettings {
    settings(fake, "opennebula", OpenNebulaVm::Template(7))
}

/// Everything short: polls every 10 ms, 3 attempts, millisecond backoff.
fn tuning() -> OpenNebulaTuning {
    OpenNebulaTuning::standard()
        .request_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(1))
        .poll_interval(Duration::from_millis(10))
        .max_attempts(NonZeroU32::new(3).unwrap())
        .backoff_initial(Duration::from_millis(2))
        .backoff_max(Duration::from_millis(10))
}

fn cloud(settings: &OpenNebulaXmlRpcSettings) -> OpenNebulaXmlRpcCloud {
    OpenNebulaXmlRpcCloud::with_tuning("iaas", settings, tuning()).unwrap()
}

fn request() -> NodeRequest {
    NodeRequest::new("conpaas-manager-php-u1-s5", SCRIPT, TOKEN).tags(vec![
        ("ConPaaS-Director".into(), "1a2b3c4d".into()),
        ("ConPaaS-User".into(), "1".into()),
        ("ConPaaS-Service".into(), "5".into()),
    ])
}

async fn fake(reads_until_running: u32) -> FakeOne {
    FakeOne::start(FakeConfig {
        reads_until_running,
        ..FakeConfig::new()
    })
    .await
}

#[tokio::test]
async fn a_template_is_instantiated_with_our_script_and_kill_ends_the_vm() {
    let fake = fake(0).await;
    let cloud = cloud(&template(&fake));
    assert_eq!(cloud.driver(), "opennebula");
    cloud.probe().await.unwrap();

    let node = cloud.create_node(request()).await.unwrap();
    let vm = fake.vm(&node.vmid).expect("the VM exists on the server");
    assert_eq!((vm.state, vm.lcm_state), (3, 3));
    assert_eq!(node.public_ip, vm.ip.to_string());
    assert_eq!(node.private_ip.as_deref(), Some(node.public_ip.as_str()));
    assert_eq!(vm.template_id, Some(7));
    assert_eq!(vm.name, "conpaas-manager-php-u1-s5-cps-1a2b3c4d-s5");
    assert_eq!(vm.script().as_deref(), Some(SCRIPT.as_bytes()));
    // one-context's variables, and what 1.2's scripts/cloud/opennebula reads.
    assert_eq!(vm.context("NETWORK"), Some("YES"));
    assert_eq!(vm.context("SET_HOSTNAME"), Some(vm.name.as_str()));
    assert_eq!(vm.context("IP_PUBLIC"), Some(node.public_ip.as_str()));
    assert_eq!(vm.context("ETH0_IP"), Some(node.public_ip.as_str()));
    assert_eq!(vm.context("NETMASK"), None, "not configured");
    // The template's own CONTEXT is kept: oned replaces it whole with the extra template's,
    // so the driver sent it back.
    assert_eq!(vm.context("SSH_PUBLIC_KEY"), Some(""));
    // The labels, in the user template.
    assert_eq!(vm.user("LABELS"), Some("conpaas"));
    assert_eq!(vm.user("CONPAAS_CLIENT_TOKEN"), Some(TOKEN));
    assert_eq!(vm.user("CONPAAS_SERVICE"), Some("5"));
    assert_eq!(vm.user("CONPAAS_DIRECTOR"), Some("1a2b3c4d"));
    for seen in fake.seen() {
        assert!(seen.authorized, "{seen:?}");
        assert_eq!(seen.content_type.as_deref(), Some("text/xml"), "{seen:?}");
        assert!(
            seen.user_agent
                .as_deref()
                .unwrap_or_default()
                .ends_with("(OpenNebula XML-RPC)"),
            "{seen:?}"
        );
    }
    assert_eq!(fake.count("one.template.instantiate"), 1);
    let instantiate = fake
        .seen()
        .into_iter()
        .find(|seen| seen.method == "one.template.instantiate")
        .unwrap();
    assert_eq!(instantiate.params[..3], ["7", vm.name.as_str(), "false"]);

    assert_eq!(
        cloud.node_state(&node.vmid).await.unwrap(),
        NodeState::Running
    );
    assert_eq!(
        cloud.find_node(TOKEN).await.unwrap(),
        Some(node.vmid.clone())
    );
    assert_eq!(cloud.find_node("cps-1a2b3c4d-s6").await.unwrap(), None);

    cloud.kill_node(&node.vmid).await.unwrap();
    assert!(fake.vm(&node.vmid).unwrap().is_done());
    assert_eq!(cloud.node_state(&node.vmid).await.unwrap(), NodeState::Gone);
    assert_eq!(cloud.find_node(TOKEN).await.unwrap(), None);
    // Killing again (a DONE VM) and killing what never existed (NO_EXISTS) both succeed.
    cloud.kill_node(&node.vmid).await.unwrap();
    assert_eq!(fake.count("one.vm.action"), 2);
    cloud.kill_node("999").await.unwrap();
    assert_eq!(cloud.node_state("999").await.unwrap(), NodeState::Gone);
}

#[tokio::test]
async fn without_a_template_the_vm_is_allocated_from_image_network_cpu_and_memory() {
    let fake = fake(0).await;
    let spec = OpenNebulaVmSpec::new(42, 1, "0.5", 1024).vcpu(2);
    let settings = settings(&fake, "opennebula", OpenNebulaVm::Allocate(spec))
        .netmask(Ipv4Addr::new(255, 255, 255, 0))
        .gateway(Ipv4Addr::new(192, 168, 0, 1))
        .nameserver(Ipv4Addr::new(8, 8, 8, 8));
    let cloud = cloud(&settings);
    cloud.probe().await.unwrap();
    assert_eq!(fake.count("one.image.info"), 1);
    assert_eq!(fake.count("one.vnet.info"), 1);
    let node = cloud.create_node(request()).await.unwrap();
    let vm = fake.vm(&node.vmid).unwrap();
    assert_eq!(fake.count("one.vm.allocate"), 1);
    assert_eq!(fake.count("one.template.instantiate"), 0);
    assert_eq!(vm.template_id, None);
    assert_eq!(vm.name, "conpaas-manager-php-u1-s5-cps-1a2b3c4d-s5");
    assert_eq!((vm.cpu.as_str(), vm.memory.as_str()), ("0.5", "1024"));
    assert_eq!(vm.vcpu.as_deref(), Some("2"));
    assert_eq!((vm.image_id, vm.network_id), (42, 1));
    assert_eq!(vm.script().as_deref(), Some(SCRIPT.as_bytes()));
    assert_eq!(vm.context("NETMASK"), Some("255.255.255.0"));
    assert_eq!(vm.context("IP_GATEWAY"), Some("192.168.0.1"));
    assert_eq!(vm.context("NAMESERVER"), Some("8.8.8.8"));
    assert_eq!(vm.context("IP_PUBLIC"), Some(node.public_ip.as_str()));
    assert_eq!(vm.user("CONPAAS_CLIENT_TOKEN"), Some(TOKEN));
}

#[tokio::test]
async fn a_slow_boot_is_waited_for_until_running() {
    let fake = fake(5).await;
    let node = cloud(&template(&fake))
        .create_node(request())
        .await
        .unwrap();
    let vm = fake.vm(&node.vmid).unwrap();
    assert_eq!((vm.state, vm.lcm_state), (3, 3));
    // PENDING, PENDING, PROLOG, BOOT, RUNNING: read until RUNNING, not further. The IP was
    // there from the first read: it is the state that is waited for.
    assert_eq!(vm.reads, 5);
    assert_eq!(fake.count("one.vm.info"), 5);
}

#[tokio::test]
async fn list_nodes_lists_this_installations_live_vms_only() {
    let fake = fake(0).await;
    let cloud = cloud(&template(&fake));
    let start = |prefix: &str, sid: u32| {
        request()
            .name(format!("conpaas-manager-php-u1-s{sid}"))
            .client_token(format!("{prefix}s{sid}"))
    };
    let kept = cloud.create_node(start("cps-aaaa1111-", 1)).await.unwrap();
    let killed = cloud.create_node(start("cps-aaaa1111-", 2)).await.unwrap();
    let stranger = cloud.create_node(start("cps-bbbb2222-", 1)).await.unwrap();
    let untokened = cloud
        .create_node(start("", 3).client_token(String::new()))
        .await
        .unwrap();
    cloud.kill_node(&killed.vmid).await.unwrap();
    assert_eq!(fake.live_vms().len(), 3);

    let listed = cloud.list_nodes("cps-aaaa1111-s").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].vmid, kept.vmid);
    assert_eq!(listed[0].client_token, "cps-aaaa1111-s1");
    let stime = fake.vm(&kept.vmid).unwrap().stime;
    assert_eq!(listed[0].created.map(|at| at.timestamp()), Some(stime));
    let other = cloud.list_nodes("cps-bbbb2222-s").await.unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].vmid, stranger.vmid);
    assert_eq!(cloud.list_nodes("cps-cccc3333-s").await.unwrap(), []);
    assert_eq!(cloud.list_nodes("").await.unwrap(), []);
    assert!(fake.vm(&untokened.vmid).is_some());
    // One pool read per listing, the VMs of the user and its groups, any state but DONE.
    let pool = fake
        .seen()
        .into_iter()
        .find(|seen| seen.method == "one.vmpool.info")
        .unwrap();
    assert_eq!(pool.params, ["-1", "-1", "-1", "-1"]);
}

#[tokio::test]
async fn find_node_skips_other_tokens() {
    let fake = fake(0).await;
    let cloud = cloud(&template(&fake));
    // Another service's VM (s15) must never match the token of s5.
    let other = request()
        .name("conpaas-manager-php-u1-s15")
        .client_token("cps-1a2b3c4d-s15");
    let node = cloud.create_node(other).await.unwrap();
    assert_eq!(cloud.find_node(TOKEN).await.unwrap(), None);
    assert_eq!(
        cloud.find_node("cps-1a2b3c4d-s15").await.unwrap(),
        Some(node.vmid.clone())
    );
}

#[tokio::test]
async fn a_missing_template_is_misconfigured_and_nothing_is_created() {
    let fake = fake(0).await;
    let cloud = cloud(&settings(&fake, "opennebula", OpenNebulaVm::Template(8)));
    let error = cloud.create_node(request()).await.unwrap_err();
    let Error::Misconfigured { key, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(key, "TEMPLATE_ID");
    assert!(
        message.starts_with("template 8 does not exist"),
        "{message}"
    );
    assert_eq!(
        fake.count("one.template.info"),
        1,
        "a refusal is not retried"
    );
    assert_eq!(fake.count("one.template.instantiate"), 0);
    assert!(fake.vms().is_empty());
    let probed = cloud.probe().await.unwrap_err();
    assert!(
        matches!(&probed, Error::Misconfigured { key, .. } if key == "TEMPLATE_ID"),
        "{probed:?}"
    );
}

#[tokio::test]
async fn an_allocate_oned_refuses_is_not_retried_and_leaves_no_vm() {
    let fake = fake(0).await;
    let spec = OpenNebulaVmSpec::new(43, 1, "1", 512);
    let cloud = cloud(&settings(&fake, "opennebula", OpenNebulaVm::Allocate(spec)));
    let error = cloud.create_node(request()).await.unwrap_err();
    let Error::Refused { code, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(code, "ALLOCATE");
    assert!(message.contains("Error getting image [43]"), "{message}");
    assert_eq!(fake.count("one.vm.allocate"), 1);
    assert!(fake.vms().is_empty());
    let probed = cloud.probe().await.unwrap_err();
    let Error::Misconfigured { key, message } = &probed else {
        panic!("{probed:?}");
    };
    assert_eq!(key, "IMAGE_ID");
    assert!(message.starts_with("image 43 does not exist"), "{message}");
    let spec = OpenNebulaVmSpec::new(42, 2, "1", 512);
    let cloud = self::cloud(&settings(&fake, "opennebula", OpenNebulaVm::Allocate(spec)));
    let probed = cloud.probe().await.unwrap_err();
    assert!(
        matches!(&probed, Error::Misconfigured { key, message } if key == "NET_ID" && message.starts_with("virtual network 2 does not exist")),
        "{probed:?}"
    );
}

#[tokio::test]
async fn a_quota_exceeded_is_refused_once_and_leaves_no_new_vm() {
    let fake = FakeOne::start(FakeConfig {
        max_vms: Some(1),
        ..FakeConfig::new()
    })
    .await;
    let cloud = cloud(&template(&fake));
    let first = cloud.create_node(request()).await.unwrap();
    let error = cloud
        .create_node(request().client_token("cps-1a2b3c4d-s6"))
        .await
        .unwrap_err();
    let Error::Refused { code, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(code, "AUTHORIZATION");
    assert!(
        message.contains("limit of 1 reached for VMS quota"),
        "{message}"
    );
    assert_eq!(
        fake.count("one.template.instantiate"),
        2,
        "never sent again"
    );
    assert_eq!(fake.live_vms().len(), 1);
    assert_eq!(fake.live_vms()[0].id.to_string(), first.vmid);
}

#[tokio::test]
async fn a_refusal_that_made_a_vm_anyway_leaves_none() {
    let fake = fake(0).await;
    fake.set_faults(Faults {
        refusals_after_creating: 1,
        ..Faults::default()
    });
    let cloud = cloud(&template(&fake));
    let error = cloud.create_node(request()).await.unwrap_err();
    assert!(
        matches!(&error, Error::Refused { message, .. } if message.contains("quota")),
        "{error:?}"
    );
    assert_eq!(fake.count("one.template.instantiate"), 1);
    assert_eq!(fake.vms().len(), 1);
    assert!(fake.live_vms().is_empty(), "the VM it made was deleted");
}

#[tokio::test]
async fn a_vm_whose_create_answer_was_lost_is_adopted_not_duplicated() {
    let fake = fake(1).await;
    fake.set_faults(Faults {
        create_errors_after_creating: 1,
        ..Faults::default()
    });
    let cloud = cloud(&template(&fake));
    let node = cloud.create_node(request()).await.unwrap();
    assert_eq!(fake.count("one.template.instantiate"), 1);
    assert_eq!(fake.vms().len(), 1, "exactly one VM kept");
    assert_eq!(fake.live_vms()[0].id.to_string(), node.vmid);
}

#[tokio::test]
async fn server_errors_on_create_give_up_after_bounded_retries_and_leave_nothing() {
    let fake = fake(0).await;
    fake.set_faults(Faults {
        create_errors: u32::MAX,
        ..Faults::default()
    });
    let cloud = cloud(&template(&fake));
    let error = cloud.create_node(request()).await.unwrap_err();
    let Error::Unavailable(message) = &error else {
        panic!("{error:?}");
    };
    assert!(
        message.starts_with("one.template.instantiate at http://127.0.0.1:"),
        "{message}"
    );
    assert!(message.contains("503 Service Unavailable"), "{message}");
    assert!(message.ends_with("(after 3 attempts)"), "{message}");
    // Three creates, each followed by a look for a VM it may have made: never a blind retry.
    assert_eq!(fake.count("one.template.instantiate"), 3);
    assert_eq!(fake.count("one.vmpool.info"), 3);
    assert!(fake.vms().is_empty());
}

#[tokio::test]
async fn oned_without_leader_is_asked_again_without_a_search() {
    let fake = fake(0).await;
    fake.set_faults(Faults {
        create_internal: 1,
        ..Faults::default()
    });
    let cloud = cloud(&template(&fake));
    let node = cloud.create_node(request()).await.unwrap();
    assert_eq!(fake.count("one.template.instantiate"), 2);
    assert_eq!(
        fake.count("one.vmpool.info"),
        0,
        "INTERNAL: nothing was created"
    );
    assert_eq!(fake.vms().len(), 1);
    assert_eq!(fake.vms()[0].id.to_string(), node.vmid);
}

#[tokio::test]
async fn a_create_answer_slower_than_the_request_timeout_is_adopted() {
    let fake = fake(0).await;
    fake.set_faults(Faults {
        slow_create: Duration::from_millis(800),
        ..Faults::default()
    });
    let tuning = tuning().request_timeout(Duration::from_millis(200));
    let cloud = OpenNebulaXmlRpcCloud::with_tuning("iaas", &template(&fake), tuning).unwrap();
    let node = cloud.create_node(request()).await.unwrap();
    assert_eq!(
        fake.count("one.template.instantiate"),
        1,
        "a timed-out create is not sent again blindly"
    );
    assert_eq!(fake.live_vms().len(), 1);
    assert_eq!(fake.live_vms()[0].id.to_string(), node.vmid);
}

#[tokio::test]
async fn stalled_reads_time_out_into_unavailable() {
    let fake = fake(0).await;
    fake.set_faults(Faults {
        slow_reads: Duration::from_millis(500),
        ..Faults::default()
    });
    let tuning = tuning().request_timeout(Duration::from_millis(100));
    let cloud = OpenNebulaXmlRpcCloud::with_tuning("iaas", &template(&fake), tuning).unwrap();
    let started = Instant::now();
    let error = cloud.node_state("41").await.unwrap_err();
    assert!(
        matches!(&error, Error::Unavailable(message) if message.contains("after 3 attempts")),
        "{error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.count("one.vm.info"), 3);
}

#[tokio::test]
async fn server_errors_while_polling_are_retried() {
    let fake = fake(2).await;
    fake.set_faults(Faults {
        read_errors: 4,
        ..Faults::default()
    });
    let node = cloud(&template(&fake))
        .create_node(request())
        .await
        .unwrap();
    let vm = fake.vm(&node.vmid).unwrap();
    assert_eq!((vm.state, vm.lcm_state), (3, 3));
}

#[tokio::test]
async fn boot_timeout_deletes_the_vm() {
    let fake = fake(u32::MAX).await;
    let settings = template(&fake).boot_timeout(Duration::from_millis(300));
    let cloud = cloud(&settings);
    let started = Instant::now();
    let error = cloud.create_node(request()).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let Error::BootTimeout { vmid, .. } = &error else {
        panic!("{error:?}");
    };
    let vm = fake.vm(vmid).unwrap();
    assert!(vm.is_done(), "the VM that did not boot is deleted");
    assert!(vm.reads > 3, "it was polled: {}", vm.reads);
    assert_eq!(fake.count("one.vm.action"), 1);
    assert!(fake.live_vms().is_empty());
}

#[tokio::test]
async fn a_vm_failing_while_booting_is_deleted() {
    let fake = fake(5).await;
    fake.set_faults(Faults {
        fail_after_reads: Some(2),
        ..Faults::default()
    });
    let cloud = cloud(&template(&fake));
    let error = cloud.create_node(request()).await.unwrap_err();
    let Error::Failed(vmid) = &error else {
        panic!("{error:?}");
    };
    let vm = fake.vm(vmid).unwrap();
    assert_eq!(
        vm.reads, 2,
        "read until it failed; terminated from BOOT_FAILURE at once"
    );
    assert!(vm.is_done());
    assert_eq!(fake.count("one.vm.action"), 1);
    assert!(fake.live_vms().is_empty());
    assert!(
        error.to_string().contains("failed while booting"),
        "{error}"
    );
}

#[tokio::test]
async fn an_abandoned_create_deletes_its_vm() {
    let fake = fake(u32::MAX).await;
    let cloud = cloud(&template(&fake));
    // The director's own start timeout drops the create future half-way.
    let dropped =
        tokio::time::timeout(Duration::from_millis(200), cloud.create_node(request())).await;
    assert!(dropped.is_err(), "the VM never boots");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fake.live_vms().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.vms().len(), 1);
    assert!(fake.live_vms().is_empty(), "{:?}", fake.vms());
}

#[tokio::test]
async fn a_vm_oned_cannot_terminate_yet_is_tried_again_then_reported() {
    let fake = fake(0).await;
    let cloud = cloud(&template(&fake));
    let node = cloud.create_node(request()).await.unwrap();
    // Stuck in BOOT (a host that does not answer): terminate is an ACTION refusal there.
    fake.set_state(&node.vmid, 3, 2);
    let error = cloud.kill_node(&node.vmid).await.unwrap_err();
    let Error::Refused { code, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(code, "ACTION");
    assert!(message.contains("ACTIVE/BOOT"), "{message}");
    assert_eq!(fake.count("one.vm.action"), 3, "tried again, boundedly");
    assert_eq!(fake.live_vms().len(), 1);
    // Once it runs, terminate works.
    fake.set_state(&node.vmid, 3, 3);
    cloud.kill_node(&node.vmid).await.unwrap();
    assert!(fake.live_vms().is_empty());
}

#[tokio::test]
async fn a_wrong_password_is_refused_at_once_and_a_login_token_works() {
    let fake = fake(0).await;
    let cloud = cloud(&settings(
        &fake,
        "not-the-password",
        OpenNebulaVm::Template(7),
    ));
    let error = cloud.create_node(request()).await.unwrap_err();
    let Error::Refused { code, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(code, "AUTHENTICATION");
    assert!(message.contains("check USER and PASSWORD"), "{message}");
    assert!(
        message.contains("User couldn't be authenticated"),
        "{message}"
    );
    assert!(!message.contains("not-the-password"), "{message}");
    assert_eq!(fake.seen().len(), 1, "a refusal is not retried");
    assert!(!fake.seen()[0].authorized);
    assert!(fake.vms().is_empty());
    for result in [
        cloud.probe().await,
        cloud.kill_node("41").await,
        cloud.node_state("41").await.map(|_| ()),
        cloud.find_node(TOKEN).await.map(|_| ()),
        cloud.list_nodes("cps-").await.map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(Error::Refused { ref code, .. }) if code == "AUTHENTICATION"),
            "{result:?}"
        );
    }
    let debug = format!("{cloud:?}");
    assert!(!debug.contains("not-the-password"), "{debug}");

    let with_token = self::cloud(&settings(&fake, "tok3n", OpenNebulaVm::Template(7)));
    with_token.probe().await.unwrap();
    let node = with_token.create_node(request()).await.unwrap();
    assert!(fake.vm(&node.vmid).is_some());
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let fake = fake(0).await;
    let mut settings = template(&fake);
    settings.endpoint.port = Some(port);
    let cloud = cloud(&settings);
    let error = cloud.create_node(request()).await.unwrap_err();
    assert!(
        matches!(&error, Error::Unavailable(message) if message.contains("(after 3 attempts)")),
        "{error:?}"
    );
    assert!(matches!(cloud.probe().await, Err(Error::Unavailable(_))));
}

#[tokio::test]
async fn a_wrong_path_is_refused_with_a_hint() {
    let fake = fake(0).await;
    let settings = template(&fake).path("/");
    let error = cloud(&settings).probe().await.unwrap_err();
    let Error::Refused { code, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(code, "HTTP 404");
    assert!(message.contains("/RPC2"), "{message}");
}
