//! The OpenNebula driver against the fake OCCI server: what it sends, how it waits, and what
//! it leaves behind when a boot fails (nothing).

use std::net::Ipv4Addr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use conpaas_core::cloud::{
    Cloud, EndpointUrl, Error, InstanceType, NodeRequest, NodeState, OpenNebulaCloud,
    OpenNebulaSettings, OpenNebulaTuning, UrlScheme,
};
use secrecy::SecretString;

use super::fake::{FakeConfig, FakeOcci, Faults};

const TOKEN: &str = "cps-1a2b3c4d-s5";

/// A boot script with what must survive the hex transport: quotes, XML specials, UTF-8.
const SCRIPT: &str = "#!/bin/bash\n# ConPaaS manager\necho \"<&> 'é' $HOME\"\nexit 0\n";

pub(super) fn settings(fake: &FakeOcci, password: &str) -> OpenNebulaSettings {
    OpenNebulaSettings::new(
        EndpointUrl::new(UrlScheme::Http, "127.0.0.1", Some(fake.port())),
        "oneadmin",
        SecretString::from(password),
        42,
        1,
    )
    .instance_type(InstanceType::Small)
    .vm_network(
        Ipv4Addr::new(192, 168, 0, 1),
        Ipv4Addr::new(255, 255, 255, 0),
        Ipv4Addr::new(8, 8, 8, 8),
    )
    .os_arch("x86_64")
    .os_root("hda")
    .disk_target("hda")
    .context_target("hdc")
    .boot_timeout(Duration::from_secs(5))
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
        .extra_roots(Vec::new())
}

fn cloud(settings: &OpenNebulaSettings) -> OpenNebulaCloud {
    OpenNebulaCloud::with_tuning("iaas", settings, tuning()).unwrap()
}

fn request() -> NodeRequest {
    NodeRequest::new("conpaas-manager-php-u1-s5", SCRIPT, TOKEN).tags(vec![
        ("ConPaaS-Director".into(), "1a2b3c4d".into()),
        ("ConPaaS-User".into(), "1".into()),
        ("ConPaaS-App".into(), "1".into()),
        ("ConPaaS-Service".into(), "5".into()),
    ])
}

async fn fake(reads_until_active: u32) -> FakeOcci {
    FakeOcci::start(FakeConfig {
        reads_until_active,
        ..FakeConfig::new()
    })
    .await
}

#[tokio::test]
async fn create_boots_a_vm_with_our_script_and_kill_ends_it() {
    let fake = fake(0).await;
    let cloud = cloud(&settings(&fake, "opennebula"));
    assert_eq!(cloud.driver(), "opennebula");
    cloud.probe().await.unwrap();

    let node = cloud.create_node(request()).await.unwrap();
    let vm = fake.vm(&node.vmid).expect("the VM exists on the server");
    assert_eq!(vm.state, "ACTIVE");
    assert_eq!(node.public_ip, vm.ip.to_string());
    assert_eq!(node.private_ip.as_deref(), Some(node.public_ip.as_str()));

    // What 1.2 sent, plus the token in the name.
    assert_eq!(vm.name, "conpaas-manager-php-u1-s5-cps-1a2b3c4d-s5");
    assert_eq!(vm.instance_type, "small");
    assert_eq!((vm.image_id, vm.network_id), (42, 1));
    assert_eq!(vm.user_data.as_deref(), Some(SCRIPT.as_bytes()));
    assert_eq!(vm.context("USERDATA"), Some(hex::encode(SCRIPT).as_str()));
    assert_eq!(vm.context("TARGET"), Some("hdc"));
    assert_eq!(vm.context("IP_GATEWAY"), Some("192.168.0.1"));
    assert_eq!(vm.context("NETMASK"), Some("255.255.255.0"));
    assert_eq!(vm.context("NAMESERVER"), Some("8.8.8.8"));
    assert_eq!(vm.context("HOSTNAME"), Some(vm.name.as_str()));
    assert_eq!(vm.context("IP_PUBLIC"), Some(node.public_ip.as_str()));
    assert_eq!(vm.context("CONPAAS_CLIENT_TOKEN"), Some(TOKEN));
    assert_eq!(vm.context("CONPAAS_SERVICE"), Some("5"));
    let keys: Vec<&str> = vm
        .context
        .iter()
        .map(|(key, _)| key.as_str())
        .take(7)
        .collect();
    assert_eq!(
        keys,
        [
            "USERDATA",
            "TARGET",
            "IP_GATEWAY",
            "HOSTNAME",
            "NETMASK",
            "IP_PUBLIC",
            "NAMESERVER"
        ]
    );
    for seen in fake.seen() {
        assert!(seen.authorized, "{seen:?}");
        // 1.2 sent no Content-Type, and the OCCI server does not need one.
        assert_eq!(seen.content_type, None, "{seen:?}");
        assert!(
            seen.user_agent
                .as_deref()
                .unwrap_or_default()
                .ends_with("(OpenNebula)")
        );
    }
    assert_eq!(fake.count("POST", "/compute"), 1);

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
    assert_eq!(fake.vm(&node.vmid).unwrap().state, "DONE");
    assert_eq!(cloud.node_state(&node.vmid).await.unwrap(), NodeState::Gone);
    assert_eq!(cloud.find_node(TOKEN).await.unwrap(), None);
    // Killing again (OpenNebula 3.8 answers 500, and the VM reads DONE) and killing what
    // never existed (404) both succeed.
    cloud.kill_node(&node.vmid).await.unwrap();
    assert_eq!(fake.count("DELETE", &format!("/compute/{}", node.vmid)), 2);
    cloud.kill_node("999").await.unwrap();
    assert_eq!(cloud.node_state("999").await.unwrap(), NodeState::Gone);
}

#[tokio::test]
async fn a_slow_boot_is_waited_for() {
    let fake = fake(6).await;
    let cloud = cloud(&settings(&fake, "opennebula"));
    let node = cloud.create_node(request()).await.unwrap();
    let vm = fake.vm(&node.vmid).unwrap();
    assert_eq!(vm.state, "ACTIVE");
    assert_eq!(vm.reads, 6, "polled until ACTIVE, not further");
    assert_eq!(fake.count("GET", &format!("/compute/{}", node.vmid)), 6);
}

#[tokio::test]
async fn a_create_answer_without_ip_is_followed_by_polls_until_one() {
    let fake = fake(0).await;
    fake.set_faults(Faults {
        ip_after_reads: 3,
        ..Faults::default()
    });
    let cloud = cloud(&settings(&fake, "opennebula"));
    let node = cloud.create_node(request()).await.unwrap();
    let vm = fake.vm(&node.vmid).unwrap();
    assert_eq!(node.public_ip, vm.ip.to_string());
    // 1.2 stored a null manager address here, or listed /compute forever: we read the VM.
    assert_eq!(fake.count("GET", &format!("/compute/{}", node.vmid)), 3);
    assert_eq!(fake.count("GET", "/compute"), 0);
}

#[tokio::test]
async fn server_errors_while_polling_are_retried() {
    let fake = fake(2).await;
    fake.set_faults(Faults {
        read_errors: 4,
        ..Faults::default()
    });
    let cloud = cloud(&settings(&fake, "opennebula"));
    let node = cloud.create_node(request()).await.unwrap();
    assert_eq!(fake.vm(&node.vmid).unwrap().state, "ACTIVE");
}

#[tokio::test]
async fn boot_timeout_deletes_the_vm() {
    let fake = fake(u32::MAX).await;
    let mut settings = settings(&fake, "opennebula");
    settings.boot_timeout = Duration::from_millis(300);
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
    assert_eq!(vm.state, "DONE", "the VM that did not boot is deleted");
    assert!(vm.reads > 3, "it was polled: {}", vm.reads);
    assert_eq!(fake.count("DELETE", &format!("/compute/{vmid}")), 1);
    assert!(fake.live_vms().is_empty());
}

#[tokio::test]
async fn a_vm_failing_while_booting_is_deleted() {
    let fake = fake(5).await;
    fake.set_faults(Faults {
        fail_after_reads: Some(2),
        ..Faults::default()
    });
    let cloud = cloud(&settings(&fake, "opennebula"));
    let error = cloud.create_node(request()).await.unwrap_err();
    let Error::Failed(vmid) = &error else {
        panic!("{error:?}");
    };
    assert_eq!(fake.vm(vmid).unwrap().reads, 2);
    assert_eq!(fake.count("DELETE", &format!("/compute/{vmid}")), 1);
    assert!(fake.live_vms().is_empty());
    assert!(
        error.to_string().contains("failed while booting"),
        "{error}"
    );
}

#[tokio::test]
async fn server_errors_on_create_give_up_after_bounded_retries() {
    let fake = fake(0).await;
    fake.set_faults(Faults {
        create_errors: u32::MAX,
        ..Faults::default()
    });
    let cloud = cloud(&settings(&fake, "opennebula"));
    let error = cloud.create_node(request()).await.unwrap_err();
    let Error::Unavailable(message) = &error else {
        panic!("{error:?}");
    };
    assert!(message.contains("POST http://127.0.0.1:"), "{message}");
    assert!(message.contains("500 Internal Server Error"), "{message}");
    assert!(message.ends_with("(after 3 attempts)"), "{message}");
    // Three creates, each followed by a look for a VM it may have made: never a blind retry.
    assert_eq!(fake.count("POST", "/compute"), 3);
    assert_eq!(fake.count("GET", "/compute"), 3);
    assert!(fake.vms().is_empty());
}

#[tokio::test]
async fn one_server_error_on_create_is_retried() {
    let fake = fake(0).await;
    fake.set_faults(Faults {
        create_errors: 1,
        ..Faults::default()
    });
    let cloud = cloud(&settings(&fake, "opennebula"));
    let node = cloud.create_node(request()).await.unwrap();
    assert_eq!(fake.count("POST", "/compute"), 2);
    assert_eq!(fake.vms().len(), 1);
    assert_eq!(fake.vms()[0].id.to_string(), node.vmid);
}

#[tokio::test]
async fn a_vm_whose_create_answer_was_lost_is_adopted_not_duplicated() {
    let fake = fake(1).await;
    fake.set_faults(Faults {
        create_errors_after_creating: 1,
        ..Faults::default()
    });
    let cloud = cloud(&settings(&fake, "opennebula"));
    let node = cloud.create_node(request()).await.unwrap();
    assert_eq!(fake.count("POST", "/compute"), 1);
    assert_eq!(fake.vms().len(), 1);
    assert_eq!(fake.live_vms()[0].id.to_string(), node.vmid);
    assert_eq!(fake.live_vms()[0].state, "ACTIVE");
}

#[tokio::test]
async fn a_create_answer_slower_than_the_request_timeout_is_adopted() {
    let fake = fake(0).await;
    fake.set_faults(Faults {
        slow_create: Duration::from_millis(800),
        ..Faults::default()
    });
    let tuning = tuning().request_timeout(Duration::from_millis(200));
    let cloud =
        OpenNebulaCloud::with_tuning("iaas", &settings(&fake, "opennebula"), tuning).unwrap();
    let node = cloud.create_node(request()).await.unwrap();
    assert_eq!(
        fake.count("POST", "/compute"),
        1,
        "a timed-out create is not sent again blindly"
    );
    assert_eq!(fake.live_vms().len(), 1);
    assert_eq!(fake.live_vms()[0].id.to_string(), node.vmid);
}

#[tokio::test]
async fn slow_reads_time_out_into_unavailable() {
    let fake = fake(0).await;
    fake.set_faults(Faults {
        slow_reads: Duration::from_millis(500),
        ..Faults::default()
    });
    let tuning = tuning().request_timeout(Duration::from_millis(100));
    let cloud =
        OpenNebulaCloud::with_tuning("iaas", &settings(&fake, "opennebula"), tuning).unwrap();
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
    assert_eq!(fake.count("GET", "/compute/41"), 3);
}

#[tokio::test]
async fn a_wrong_password_is_refused_at_once() {
    let fake = fake(0).await;
    let cloud = cloud(&settings(&fake, "not-the-password"));
    let error = cloud.create_node(request()).await.unwrap_err();
    let Error::Refused { code, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(code, "Unauthorized");
    assert!(message.contains("check USER and PASSWORD"), "{message}");
    // 3.8 says nothing more than its status.
    assert!(message.contains("401 Unauthorized"), "{message}");
    assert!(!message.contains("not-the-password"), "{message}");
    assert_eq!(fake.seen().len(), 1, "a refusal is not retried");
    assert!(!fake.seen()[0].authorized);
    assert!(fake.vms().is_empty());
    for result in [
        cloud.probe().await,
        cloud.kill_node("41").await,
        cloud.node_state("41").await.map(|_| ()),
        cloud.find_node(TOKEN).await.map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(Error::Refused { ref code, .. }) if code == "Unauthorized"),
            "{result:?}"
        );
    }
}

#[tokio::test]
async fn the_server_saying_401_is_refused_even_with_the_right_password() {
    let fake = fake(0).await;
    fake.set_faults(Faults {
        unauthorized: true,
        ..Faults::default()
    });
    let cloud = cloud(&settings(&fake, "opennebula"));
    let error = cloud.create_node(request()).await.unwrap_err();
    assert!(
        matches!(&error, Error::Refused { code, .. } if code == "Unauthorized"),
        "{error:?}"
    );
    assert!(fake.seen()[0].authorized, "the credentials sent were right");
}

#[tokio::test]
async fn a_request_the_server_rejects_is_not_retried() {
    let fake = FakeOcci::start(FakeConfig {
        images: vec![7],
        ..FakeConfig::new()
    })
    .await;
    let cloud = cloud(&settings(&fake, "opennebula"));
    let error = cloud.create_node(request()).await.unwrap_err();
    let Error::Refused { code, message } = &error else {
        panic!("{error:?}");
    };
    // OpenNebula 3.8: oned's refusal is a 500 with its message.
    assert_eq!(code, "HTTP 500");
    assert!(message.contains("unknown image 42"), "{message}");
    assert_eq!(fake.count("POST", "/compute"), 1);
    assert!(fake.vms().is_empty());
}

#[tokio::test]
async fn an_instance_type_not_enabled_is_refused_with_the_servers_message_once() {
    let fake = FakeOcci::start(FakeConfig {
        instance_types: vec!["small".into()],
        ..FakeConfig::new()
    })
    .await;
    let mut settings = settings(&fake, "opennebula");
    settings.instance_type = InstanceType::Custom;
    let cloud = cloud(&settings);
    let error = cloud.create_node(request()).await.unwrap_err();
    let Error::Refused { code, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(code, "HTTP 500");
    assert!(
        message.ends_with("500 Internal Server Error: Bad instance type"),
        "{message}"
    );
    // Never a second create: one POST, then a look for a VM under the token (none).
    assert_eq!(fake.count("POST", "/compute"), 1);
    assert_eq!(fake.count("GET", "/compute"), 1);
    assert!(fake.vms().is_empty());
}

#[tokio::test]
async fn a_create_answered_pending_is_waited_for_until_active() {
    let fake = FakeOcci::start(FakeConfig::new()).await;
    let cloud = cloud(&settings(&fake, "opennebula"));
    let node = cloud.create_node(request()).await.unwrap();
    let vm = fake.vm(&node.vmid).unwrap();
    assert_eq!(vm.state, "ACTIVE");
    // The create answered PENDING: the driver read the VM until it was ACTIVE.
    assert_eq!(vm.reads, 1);
    assert_eq!(fake.count("GET", &format!("/compute/{}", node.vmid)), 1);
}

#[tokio::test]
async fn the_manager_vm_is_created_with_the_os_architecture() {
    let fake = FakeOcci::start(FakeConfig::new()).await;
    let node = cloud(&settings(&fake, "opennebula"))
        .create_node(request())
        .await
        .unwrap();
    assert_eq!(fake.vm(&node.vmid).unwrap().arch.as_deref(), Some("x86_64"));
    let mut i686 = settings(&fake, "opennebula");
    i686.os_arch = "i686".into();
    let node = cloud(&i686)
        .create_node(request().client_token("cps-1a2b3c4d-s6"))
        .await
        .unwrap();
    assert_eq!(fake.vm(&node.vmid).unwrap().arch.as_deref(), Some("i686"));
}

#[tokio::test]
async fn list_nodes_lists_this_installations_live_vms_only() {
    // 3.8 leaves deleted VMs out of the listing; 2.x listed them as DONE.
    for keep_done in [false, true] {
        let fake = FakeOcci::start(FakeConfig {
            keep_done,
            ..FakeConfig::new()
        })
        .await;
        let cloud = cloud(&settings(&fake, "opennebula"));
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
        assert_eq!(fake.vm(&killed.vmid).unwrap().state, "DONE");
        assert_eq!(fake.live_vms().len(), 3);

        let listed = cloud.list_nodes("cps-aaaa1111-s").await.unwrap();
        assert_eq!(listed.len(), 1, "keep_done {keep_done}: {listed:?}");
        assert_eq!(listed[0].vmid, kept.vmid);
        assert_eq!(listed[0].client_token, "cps-aaaa1111-s1");
        assert_eq!(listed[0].created, None, "3.8's OCCI gives no STIME");
        let other = cloud.list_nodes("cps-bbbb2222-s").await.unwrap();
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].vmid, stranger.vmid);
        assert_eq!(cloud.list_nodes("cps-cccc3333-s").await.unwrap(), []);
        assert_eq!(cloud.list_nodes("").await.unwrap(), []);
        assert!(fake.vm(&untokened.vmid).is_some());
    }
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let fake = fake(0).await;
    let mut settings = settings(&fake, "opennebula");
    settings.url.port = Some(port);
    let cloud = cloud(&settings);
    let error = cloud.create_node(request()).await.unwrap_err();
    assert!(
        matches!(&error, Error::Unavailable(message) if message.contains("(after 3 attempts)")),
        "{error:?}"
    );
    assert!(matches!(cloud.probe().await, Err(Error::Unavailable(_))));
}

#[tokio::test]
async fn an_abandoned_create_deletes_its_vm() {
    let fake = fake(u32::MAX).await;
    let cloud = cloud(&settings(&fake, "opennebula"));
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
async fn find_node_skips_other_tokens() {
    let fake = fake(0).await;
    let cloud = cloud(&settings(&fake, "opennebula"));
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
    assert_eq!(
        cloud.node_state(&node.vmid).await.unwrap(),
        NodeState::Running
    );
}

#[tokio::test]
async fn https_with_a_trusted_ca_works() {
    let (fake, ca) = FakeOcci::start_tls(FakeConfig::new()).await;
    let mut settings = settings(&fake, "opennebula");
    settings.url.scheme = UrlScheme::Https;
    settings.url.host = "localhost".into();
    let tuning = tuning().extra_roots(vec![ca]);
    let cloud = OpenNebulaCloud::with_tuning("iaas", &settings, tuning).unwrap();
    let node = cloud.create_node(request()).await.unwrap();
    assert_eq!(
        fake.vm(&node.vmid).unwrap().user_data.as_deref(),
        Some(SCRIPT.as_bytes())
    );
    cloud.kill_node(&node.vmid).await.unwrap();
    assert!(fake.live_vms().is_empty());
}

#[tokio::test]
async fn https_with_an_untrusted_certificate_is_refused_without_retries() {
    let (fake, _ca) = FakeOcci::start_tls(FakeConfig::new()).await;
    let mut settings = settings(&fake, "opennebula");
    settings.url.scheme = UrlScheme::Https;
    // Only the system's CAs: the fake's own CA is not among them.
    let cloud = cloud(&settings);
    let started = Instant::now();
    let error = cloud.create_node(request()).await.unwrap_err();
    assert!(
        matches!(&error, Error::Refused { code, .. } if code == "TlsCertificate"),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(fake.seen().is_empty(), "no request got through");
    assert!(fake.vms().is_empty());
}

#[tokio::test]
async fn a_refused_delete_of_a_live_vm_is_an_error() {
    let fake = fake(0).await;
    let cloud = cloud(&settings(&fake, "opennebula"));
    let node = cloud.create_node(request()).await.unwrap();
    fake.set_faults(Faults {
        delete_refusals: 1,
        ..Faults::default()
    });
    let error = cloud.kill_node(&node.vmid).await.unwrap_err();
    let Error::Refused { code, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(code, "HTTP 500");
    assert!(message.contains("the host does not answer"), "{message}");
    // One DELETE (not retried blindly), then the read that shows the VM still there.
    let path = format!("/compute/{}", node.vmid);
    assert_eq!(fake.count("DELETE", &path), 1);
    assert_eq!(fake.vm(&node.vmid).unwrap().state, "ACTIVE");
    cloud.kill_node(&node.vmid).await.unwrap();
    assert!(fake.live_vms().is_empty());
}

#[tokio::test]
async fn a_refusal_that_made_a_vm_anyway_leaves_none() {
    let fake = fake(0).await;
    fake.set_faults(Faults {
        refusals_after_creating: 1,
        ..Faults::default()
    });
    let cloud = cloud(&settings(&fake, "opennebula"));
    let error = cloud.create_node(request()).await.unwrap_err();
    assert!(
        matches!(&error, Error::Refused { message, .. } if message.contains("Quota exceeded")),
        "{error:?}"
    );
    assert_eq!(
        fake.count("POST", "/compute"),
        1,
        "a refusal is not retried"
    );
    assert_eq!(fake.vms().len(), 1);
    assert!(fake.live_vms().is_empty(), "the VM it made was deleted");
}
