//! The OpenStack driver against the fake cloud: what it sends, how it waits, and what it leaves
//! behind when something fails (nothing: no server, no floating IP).

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use base64::Engine as _;
use conpaas_core::cloud::{
    Cloud, Error, NodeRequest, NodeState, OpenStackApplicationCredential, OpenStackCloud,
    OpenStackCredential, OpenStackPassword, OpenStackProject, OpenStackSettings, OpenStackTuning,
};
use secrecy::SecretString;

use super::fake::{
    APP_CREDENTIAL_ID, FakeConfig, FakeOpenStack, Faults, IMAGE_ID, PRIVATE_NET, PUBLIC_NET,
};

const TOKEN: &str = "cps-1a2b3c4d-s5";

/// A boot script with what must survive base64: quotes, UTF-8, a private key marker.
const SCRIPT: &str =
    "#!/bin/bash\n# ConPaaS manager\necho \"<&> 'é' $HOME\"\n-----BEGIN PRIVATE KEY-----\nexit 0\n";

pub(super) fn password(password: &str) -> OpenStackCredential {
    OpenStackCredential::Password(OpenStackPassword::new(
        "alice",
        SecretString::from(password),
        OpenStackProject::Name("conpaas".into()),
    ))
}

pub(super) fn settings(fake: &FakeOpenStack) -> OpenStackSettings {
    OpenStackSettings::new(
        // Without /v3, as some openrc files have it.
        format!("{}/identity", fake.base()),
        password("secret-pw"),
        "ubuntu-24.04",
        "m1.small",
    )
    .network("private")
    .key_name("conpaas")
    .security_group_name("managers")
    .boot_timeout(Duration::from_secs(5))
}

/// Everything short: polls every 10 ms, 3 attempts, millisecond backoff.
fn tuning() -> OpenStackTuning {
    OpenStackTuning::standard()
        .request_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(1))
        .poll_interval(Duration::from_millis(10))
        .max_attempts(NonZeroU32::new(3).unwrap())
        .backoff_initial(Duration::from_millis(2))
        .backoff_max(Duration::from_millis(10))
}

fn cloud(settings: &OpenStackSettings) -> OpenStackCloud {
    OpenStackCloud::with_tuning("iaas", settings, tuning()).unwrap()
}

fn request() -> NodeRequest {
    NodeRequest::new("conpaas-manager-php-u1-s5", SCRIPT, TOKEN).tags(vec![
        ("ConPaaS-Director".into(), "1a2b3c4d".into()),
        ("ConPaaS-User".into(), "1".into()),
        ("ConPaaS-App".into(), "1".into()),
        ("ConPaaS-Service".into(), "5".into()),
    ])
}

async fn fake() -> FakeOpenStack {
    FakeOpenStack::start(FakeConfig::new()).await
}

/// Waits until the spawned clean-up of a dropped create has run.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < Duration::from_secs(5), "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn create_boots_a_server_with_our_script_and_kill_deletes_it() {
    let fake = fake().await;
    let cloud = cloud(&settings(&fake));
    assert_eq!(cloud.driver(), "openstack");
    cloud.probe().await.unwrap();

    let node = cloud.create_node(request()).await.unwrap();
    let server = fake.server(&node.vmid).expect("the server exists");
    assert_eq!(server.status, "ACTIVE");
    assert_eq!(server.name, "conpaas-manager-php-u1-s5-cps-1a2b3c4d-s5");
    assert_eq!(server.image_id, IMAGE_ID, "the image name was resolved");
    assert_eq!(server.flavor_id, "2", "the flavor name was resolved");
    assert_eq!(server.network_id, PRIVATE_NET);
    assert_eq!(server.user_data.as_deref(), Some(SCRIPT.as_bytes()));
    assert_eq!(server.key_name.as_deref(), Some("conpaas"));
    assert_eq!(server.security_groups, ["managers"]);
    assert_eq!(
        server
            .metadata
            .get("conpaas_client_token")
            .map(String::as_str),
        Some(TOKEN)
    );
    assert_eq!(
        server.metadata.get("ConPaaS-Service").map(String::as_str),
        Some("5")
    );
    // Without a floating IP pool the fixed address is the public one.
    assert_eq!(node.public_ip, server.fixed_ip.to_string());
    assert_eq!(node.private_ip.as_deref(), Some(node.public_ip.as_str()));
    assert!(fake.floating_ips().is_empty());
    // Every compute call pins microversion 2.1; one token served every call.
    for seen in fake.seen() {
        if seen.path.starts_with("/compute/v2.1/") {
            assert_eq!(
                seen.microversion.as_deref(),
                Some("compute 2.1"),
                "{seen:?}"
            );
        }
        assert!(
            seen.user_agent
                .as_deref()
                .unwrap_or_default()
                .ends_with("(OpenStack)"),
            "{seen:?}"
        );
    }
    assert_eq!(fake.count("POST", "/identity/v3/auth/tokens"), 1);
    assert_eq!(fake.count("POST", "/compute/v2.1/servers"), 1);

    assert_eq!(
        cloud.node_state(&node.vmid).await.unwrap(),
        NodeState::Running
    );
    assert_eq!(
        cloud.find_node(TOKEN).await.unwrap(),
        Some(node.vmid.clone())
    );
    assert_eq!(cloud.find_node("cps-1a2b3c4d-s").await.unwrap(), None);
    // Found through Nova's name filter, anchored at the end of the name.
    assert!(
        fake.seen()
            .iter()
            .any(|seen| seen.path == "/compute/v2.1/servers/detail"
                && seen
                    .query
                    .as_deref()
                    .unwrap_or_default()
                    .starts_with("name=cps-1a2b3c4d-s5%24&")),
        "{:?}",
        fake.seen()
    );

    cloud.kill_node(&node.vmid).await.unwrap();
    assert_eq!(fake.server(&node.vmid).unwrap().status, "DELETED");
    assert_eq!(cloud.node_state(&node.vmid).await.unwrap(), NodeState::Gone);
    assert_eq!(cloud.find_node(TOKEN).await.unwrap(), None);
    // A second kill of a server Nova no longer knows is a success.
    cloud.kill_node(&node.vmid).await.unwrap();
}

#[tokio::test]
async fn application_credentials_and_ids_work_too() {
    let fake = fake().await;
    let settings = OpenStackSettings::new(
        fake.auth_url(),
        OpenStackCredential::ApplicationCredential(OpenStackApplicationCredential::new(
            APP_CREDENTIAL_ID,
            SecretString::from("app-secret"),
        )),
        IMAGE_ID,
        "4",
    )
    .network(PRIVATE_NET)
    .boot_timeout(Duration::from_secs(5));
    let cloud = cloud(&settings);
    cloud.probe().await.unwrap();
    let node = cloud.create_node(request()).await.unwrap();
    let server = fake.server(&node.vmid).unwrap();
    assert_eq!(
        (server.image_id.as_str(), server.flavor_id.as_str()),
        (IMAGE_ID, "4")
    );
    assert_eq!(server.security_groups, ["default"]);
    assert_eq!(server.key_name, None);
    cloud.kill_node(&node.vmid).await.unwrap();
    assert!(fake.live_servers().is_empty());
}

#[tokio::test]
async fn the_only_internal_network_is_used_when_none_is_named() {
    let fake = fake().await;
    let mut settings = settings(&fake);
    settings.network = None;
    let node = cloud(&settings).create_node(request()).await.unwrap();
    assert_eq!(fake.server(&node.vmid).unwrap().network_id, PRIVATE_NET);
}

#[tokio::test]
async fn a_floating_ip_is_the_public_address_and_is_released_with_the_server() {
    let fake = fake().await;
    let settings = settings(&fake).floating_ip_pool("public");
    let cloud = cloud(&settings);
    cloud.probe().await.unwrap();
    let node = cloud.create_node(request()).await.unwrap();
    let server = fake.server(&node.vmid).unwrap();
    let floating_ips = fake.floating_ips();
    assert_eq!(floating_ips.len(), 1);
    let floating_ip = &floating_ips[0];
    assert_eq!(floating_ip.network_id, PUBLIC_NET);
    assert_eq!(
        floating_ip.port_id.as_deref(),
        Some(server.port_id.as_str())
    );
    assert_eq!(node.public_ip, floating_ip.address.to_string());
    assert!(
        node.public_ip.starts_with("172.24.4."),
        "{}",
        node.public_ip
    );
    assert_eq!(node.private_ip, Some(server.fixed_ip.to_string()));

    cloud.kill_node(&node.vmid).await.unwrap();
    assert!(
        fake.floating_ips().is_empty(),
        "the floating IP was released"
    );
    assert!(fake.live_servers().is_empty());
}

#[tokio::test]
async fn a_floating_ip_left_detached_by_a_deleted_server_is_still_released() {
    let fake = fake().await;
    let settings = settings(&fake).floating_ip_pool("public");
    let cloud = cloud(&settings);
    let node = cloud.create_node(request()).await.unwrap();
    // Someone deletes the server behind the director's back: Neutron keeps its floating IP.
    fake.delete_server(&node.vmid);
    assert_eq!(fake.floating_ips().len(), 1);
    assert_eq!(fake.floating_ips()[0].port_id, None);
    cloud.kill_node(&node.vmid).await.unwrap();
    assert!(fake.floating_ips().is_empty());
}

#[tokio::test]
async fn floating_ip_quota_exceeded_leaves_neither_server_nor_address() {
    let fake = FakeOpenStack::start(FakeConfig {
        max_floating_ips: 0,
        ..FakeConfig::new()
    })
    .await;
    let settings = settings(&fake).floating_ip_pool(PUBLIC_NET);
    let error = cloud(&settings).create_node(request()).await.unwrap_err();
    match &error {
        Error::Refused { code, message } => {
            assert_eq!(code, "HTTP 409");
            assert!(message.contains("OverQuota"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.servers().len(), 1);
    assert!(fake.live_servers().is_empty(), "the server was deleted");
    assert!(fake.floating_ips().is_empty());
    assert_eq!(
        fake.count("POST", "/networking/v2.0/floatingips"),
        1,
        "never retried"
    );
}

#[tokio::test]
async fn a_lost_floating_ip_answer_is_adopted_not_duplicated() {
    let fake = fake().await;
    fake.set_faults(Faults {
        floating_ip_errors_after_creating: 1,
        ..Faults::default()
    });
    let settings = settings(&fake).floating_ip_pool("public");
    let node = cloud(&settings).create_node(request()).await.unwrap();
    assert_eq!(fake.floating_ips().len(), 1);
    assert_eq!(node.public_ip, fake.floating_ips()[0].address.to_string());
    assert_eq!(fake.count("POST", "/networking/v2.0/floatingips"), 1);
}

#[tokio::test]
async fn server_quota_exceeded_is_refused_once_and_leaves_nothing() {
    let fake = FakeOpenStack::start(FakeConfig {
        max_servers: 0,
        ..FakeConfig::new()
    })
    .await;
    let error = cloud(&settings(&fake))
        .create_node(request())
        .await
        .unwrap_err();
    match &error {
        Error::Refused { code, message } => {
            assert_eq!(code, "HTTP 403");
            assert!(
                message.contains("Quota exceeded for instances"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        fake.count("POST", "/compute/v2.1/servers"),
        1,
        "never retried"
    );
    assert!(fake.servers().is_empty());
}

#[tokio::test]
async fn names_the_cloud_lacks_are_misconfigured_before_any_create() {
    let fake = fake().await;
    for (settings, key, message) in [
        (
            settings(&fake).flavor("m1.huge"),
            "SIZE_ID",
            "flavor m1.huge does not exist",
        ),
        (
            settings(&fake).image("debian-3.1"),
            "IMAGE_ID",
            "image debian-3.1 does not exist",
        ),
        (
            settings(&fake).network("dmz"),
            "NETWORK_ID",
            "network dmz does not exist",
        ),
        (
            settings(&fake).floating_ip_pool("private"),
            "FLOATING_IP_POOL",
            "network private is not external: floating IPs come from an external network",
        ),
        (
            settings(&fake).key_name("nobody"),
            "KEY_NAME",
            "key pair nobody does not exist",
        ),
        (
            settings(&fake).security_group_name("open"),
            "SECURITY_GROUP_NAME",
            "security group open does not exist",
        ),
    ] {
        match cloud(&settings).probe().await {
            Err(Error::Misconfigured {
                key: got,
                message: said,
            }) => {
                assert_eq!((got.as_str(), said.as_str()), (key, message));
            }
            other => panic!("{key}: {other:?}"),
        }
    }
    // A create finds the same before it asks Nova for anything.
    let error = cloud(&settings(&fake).flavor("m1.huge"))
        .create_node(request())
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Misconfigured { ref key, .. } if key == "SIZE_ID"),
        "{error:?}"
    );
    assert_eq!(fake.count("POST", "/compute/v2.1/servers"), 0);
}

#[tokio::test]
async fn a_create_nova_refuses_is_refused_not_retried() {
    // Nova's own 400 (the driver's look-up passes: Nova knows the flavor, then refuses it).
    let fake = fake().await;
    let error = cloud(
        &settings(&fake)
            .key_name("conpaas")
            .security_group_name("open"),
    )
    .create_node(request())
    .await
    .unwrap_err();
    match &error {
        Error::Refused { code, message } => {
            assert_eq!(code, "HTTP 400");
            assert!(
                message.contains("Unable to find security_group"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.count("POST", "/compute/v2.1/servers"), 1);
    assert!(fake.servers().is_empty());
}

#[tokio::test]
async fn a_wrong_password_is_refused_in_one_line_without_the_password() {
    let fake = fake().await;
    let settings = settings(&fake).credential(password("wrong-pw"));
    let error = cloud(&settings).probe().await.unwrap_err();
    let Error::Refused { code, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(code, "Unauthorized");
    assert!(message.contains("user \"alice\""), "{message}");
    assert!(message.contains("check USER, PASSWORD"), "{message}");
    assert!(!message.contains('\n'), "{message}");
    assert!(!message.contains("wrong-pw"), "{message}");
    assert_eq!(
        fake.count("POST", "/identity/v3/auth/tokens"),
        1,
        "never retried"
    );
}

#[tokio::test]
async fn keystone_failing_a_moment_is_retried() {
    let fake = fake().await;
    fake.set_faults(Faults {
        keystone_errors: 2,
        ..Faults::default()
    });
    cloud(&settings(&fake)).probe().await.unwrap();
    assert_eq!(fake.count("POST", "/identity/v3/auth/tokens"), 3);
}

#[tokio::test]
async fn an_expired_or_revoked_token_is_renewed_once() {
    let fake = FakeOpenStack::start(FakeConfig {
        // Inside the driver's margin: every call takes a new token.
        token_lifetime: chrono::TimeDelta::seconds(60),
        ..FakeConfig::new()
    })
    .await;
    let cloud = cloud(&settings(&fake));
    cloud.probe().await.unwrap();
    let tokens = fake.count("POST", "/identity/v3/auth/tokens");
    assert!(
        tokens > 1,
        "a token about to expire is renewed before use: {tokens}"
    );

    let fake = fake_with_long_tokens().await;
    let cloud = self::cloud(&settings(&fake));
    let node = cloud.create_node(request()).await.unwrap();
    assert_eq!(fake.count("POST", "/identity/v3/auth/tokens"), 1);
    fake.revoke_tokens();
    assert_eq!(
        cloud.node_state(&node.vmid).await.unwrap(),
        NodeState::Running
    );
    assert_eq!(
        fake.count("POST", "/identity/v3/auth/tokens"),
        2,
        "renewed once on 401"
    );
}

async fn fake_with_long_tokens() -> FakeOpenStack {
    fake().await
}

#[tokio::test]
async fn a_lost_create_answer_is_adopted_not_duplicated() {
    let fake = fake().await;
    fake.set_faults(Faults {
        create_errors_after_creating: 1,
        ..Faults::default()
    });
    let node = cloud(&settings(&fake))
        .create_node(request())
        .await
        .unwrap();
    assert_eq!(fake.servers().len(), 1, "exactly one server");
    assert_eq!(fake.servers()[0].id, node.vmid);
    assert_eq!(
        fake.count("POST", "/compute/v2.1/servers"),
        1,
        "no second create"
    );
}

#[tokio::test]
async fn a_create_failing_without_making_a_server_is_sent_again() {
    let fake = fake().await;
    fake.set_faults(Faults {
        create_errors: 1,
        ..Faults::default()
    });
    let node = cloud(&settings(&fake))
        .create_node(request())
        .await
        .unwrap();
    assert_eq!(fake.live_servers().len(), 1);
    assert_eq!(fake.live_servers()[0].id, node.vmid);
    assert_eq!(fake.count("POST", "/compute/v2.1/servers"), 2);
}

#[tokio::test]
async fn every_create_answer_lost_leaves_exactly_the_adopted_server() {
    // Each attempt's answer is lost, but the first one's server is found before any resend.
    let fake = fake().await;
    fake.set_faults(Faults {
        create_errors_after_creating: 5,
        ..Faults::default()
    });
    cloud(&settings(&fake))
        .create_node(request())
        .await
        .unwrap();
    assert_eq!(fake.servers().len(), 1);
}

#[tokio::test]
async fn a_create_answer_slower_than_the_request_timeout_is_adopted() {
    let fake = fake().await;
    fake.set_faults(Faults {
        slow_create: Duration::from_millis(2500),
        ..Faults::default()
    });
    let node = cloud(&settings(&fake))
        .create_node(request())
        .await
        .unwrap();
    assert_eq!(fake.servers().len(), 1);
    assert_eq!(fake.servers()[0].id, node.vmid);
}

#[tokio::test]
async fn a_server_failing_while_booting_is_deleted() {
    let fake = fake().await;
    fake.set_faults(Faults {
        fail_after_reads: Some(1),
        ..Faults::default()
    });
    let error = cloud(&settings(&fake))
        .create_node(request())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Failed(_)), "{error:?}");
    assert_eq!(fake.servers().len(), 1);
    assert!(
        fake.live_servers().is_empty(),
        "the ERROR server was deleted"
    );
}

#[tokio::test]
async fn a_stalled_build_times_out_and_is_deleted_with_its_nothing_else() {
    let fake = fake().await;
    fake.set_faults(Faults {
        stall_build: true,
        ..Faults::default()
    });
    let settings = settings(&fake)
        .floating_ip_pool("public")
        .boot_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let error = cloud(&settings).create_node(request()).await.unwrap_err();
    assert!(matches!(error, Error::BootTimeout { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(fake.live_servers().is_empty());
    assert!(fake.floating_ips().is_empty());
}

#[tokio::test]
async fn server_errors_while_polling_are_retried() {
    let fake = fake().await;
    fake.set_faults(Faults {
        read_errors: 4,
        ..Faults::default()
    });
    cloud(&settings(&fake))
        .create_node(request())
        .await
        .unwrap();
    assert_eq!(fake.live_servers().len(), 1);
}

#[tokio::test]
async fn an_abandoned_create_deletes_its_server() {
    let fake = fake().await;
    fake.set_faults(Faults {
        stall_build: true,
        ..Faults::default()
    });
    let settings = settings(&fake).floating_ip_pool("public");
    let cloud = cloud(&settings);
    let abandoned =
        tokio::time::timeout(Duration::from_millis(300), cloud.create_node(request())).await;
    assert!(abandoned.is_err(), "the create was still waiting");
    assert_eq!(fake.servers().len(), 1);
    eventually("the abandoned server is deleted", || {
        fake.live_servers().is_empty()
    })
    .await;
}

#[tokio::test]
async fn oversized_user_data_is_refused_before_any_call() {
    let fake = fake().await;
    let big = "#".repeat(49_200);
    let error = cloud(&settings(&fake))
        .create_node(NodeRequest::new("conpaas-manager-php-u1-s5", big, TOKEN))
        .await
        .unwrap_err();
    let Error::Refused { code, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(code, "UserDataTooLarge");
    assert!(message.contains("65535"), "{message}");
    assert!(fake.seen().is_empty());
    // Just under the limit goes through.
    let fits = "#".repeat(49_149);
    assert!(
        base64::engine::general_purpose::STANDARD
            .encode(&fits)
            .len()
            <= 65_535
    );
    cloud(&settings(&fake))
        .create_node(NodeRequest::new("conpaas-manager-php-u1-s5", fits, TOKEN))
        .await
        .unwrap();
}

#[tokio::test]
async fn list_nodes_lists_this_installations_live_servers_only() {
    let fake = fake().await;
    let cloud = cloud(&settings(&fake));
    let ours = cloud.create_node(request()).await.unwrap();
    let killed = cloud
        .create_node(NodeRequest::new(
            "conpaas-manager-php-u1-s6",
            SCRIPT,
            "cps-1a2b3c4d-s6",
        ))
        .await
        .unwrap();
    cloud.kill_node(&killed.vmid).await.unwrap();
    // Another installation's, one named like ours without the metadata, someone else's.
    fake.add_server(
        "conpaas-manager-php-u1-s5-cps-99999999-s5",
        &[("conpaas_client_token", "cps-99999999-s5")],
    );
    fake.add_server("conpaas-manager-php-u1-s7-cps-1a2b3c4d-s7", &[]);
    fake.add_server("web-1", &[]);
    let listed = cloud.list_nodes("cps-1a2b3c4d-s").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].vmid, ours.vmid);
    assert_eq!(listed[0].client_token, TOKEN);
    assert!(listed[0].created.is_some());
    assert_eq!(cloud.find_node("cps-1a2b3c4d-s7").await.unwrap(), None);
}

#[tokio::test]
async fn an_unreachable_keystone_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let settings = OpenStackSettings::new(
        format!("http://127.0.0.1:{port}/v3"),
        password("secret-pw"),
        "ubuntu-24.04",
        "m1.small",
    );
    let error = cloud(&settings).probe().await.unwrap_err();
    let Error::Unavailable(message) = &error else {
        panic!("{error:?}");
    };
    assert!(message.ends_with("(after 3 attempts)"), "{message}");
}

#[tokio::test]
async fn debug_output_holds_no_secret() {
    let fake = fake().await;
    let cloud = cloud(&settings(&fake));
    cloud.probe().await.unwrap();
    let debug = format!("{cloud:?}");
    assert!(!debug.contains("secret-pw"), "{debug}");
    assert!(!debug.contains("gAAAAA"), "the token leaked: {debug}");
}
