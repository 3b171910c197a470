//! The clouds of today in one director, each section as docs/clouds.md shows it: EC2 in a VPC
//! with IMDSv2 required (moto) as `[iaas]`, and through `OTHER_CLOUDS` OpenNebula over XML-RPC
//! (the fake oned) and native OpenStack (the fake OpenStack). On each: a service started,
//! listed, stopped, and a VM whose row is lost reaped, with every other VM left alone.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use conpaas_core::config::{self, ConfigSource, WarningKind};
use conpaas_core::director::{Director, StartRequest, accounts, setup};
use conpaas_core::model::Credit;
use conpaas_core::store;
use secrecy::SecretString;

use super::{IMAGE, moto, states};
use crate::opennebula_xmlrpc::fake::{FakeConfig as OneConfig, FakeOne};
use crate::openstack::fake::{FakeConfig as OpenStackConfig, FakeOpenStack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_director_starts_lists_stops_and_reaps_on_ec2_opennebula_and_openstack() {
    let moto = moto();
    let region = "ca-central-1";
    let ids = moto.setup(region);
    let one = FakeOne::start(OneConfig::new()).await;
    let openstack = FakeOpenStack::start(OpenStackConfig::new()).await;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let text = format!(
        "[conpaas]\nCONF_DIR = {d}\nCERT_DIR = {d}/certs\nKEY_ALGORITHM = ecdsa\n\n\
         [iaas]\nDRIVER = ec2\nUSER = AKIDTHREE\nPASSWORD = three-secret\n\
         IMAGE_ID = {IMAGE}\nSIZE_ID = t3.small\nSUBNET_ID = {subnet}\n\
         SECURITY_GROUP_IDS = {group}\nKEY_NAME = conpaas\nREGION = ec2.{region}.amazonaws.com\n\
         ENDPOINT = http://127.0.0.1:{port}\nMANAGER_ADDRESS = public-or-private\n\
         METADATA_TOKENS = required\nBOOT_TIMEOUT = 20\nOTHER_CLOUDS = nebula,stack\n\n\
         [nebula]\nDRIVER = opennebula\nAPI = xmlrpc\nXMLRPC = {one_url}\nUSER = conpaas\n\
         PASSWORD = opennebula\nTEMPLATE_ID = 7\n\n\
         [stack]\nDRIVER = openstack\nAUTH_URL = {auth_url}\nUSER = alice\nPASSWORD = secret-pw\n\
         PROJECT_NAME = conpaas\nREGION_NAME = RegionOne\nIMAGE_ID = ubuntu-24.04\n\
         SIZE_ID = m1.small\nNETWORK_ID = private\nSECURITY_GROUP_NAME = managers\n\
         KEY_NAME = conpaas\nFLOATING_IP_POOL = public\nBOOT_TIMEOUT = 60\n\n\
         [director]\nDATABASE_URI = sqlite:///{d}/director.db\nDIRECTOR_URL = https://localhost:5555\n",
        d = data.display(),
        subnet = ids["subnet"].as_str().unwrap(),
        group = ids["group"].as_str().unwrap(),
        port = moto.port,
        one_url = one.url(),
        auth_url = openstack.auth_url(),
    );
    fs::write(data.join("director.cfg"), text).unwrap();
    let source = ConfigSource::resolve_with(
        Some(data.join("director.cfg")),
        None,
        None,
        Path::new("/nonexistent"),
    );
    let loaded = config::load(&source).unwrap();
    // Only that 1.2 managers know three regions, moto's ca-central-1 not among them.
    assert!(
        loaded
            .warnings
            .iter()
            .all(|warning| matches!(warning.kind, WarningKind::RegionUnknownTo12 { .. })),
        "{:?}",
        loaded.warnings
    );
    setup::init(&loaded, "localhost", false).unwrap();
    conpaas_core::bootstrap::install_default_templates(data).unwrap();
    let director = Director::open(&loaded).unwrap();
    assert_eq!(director.available_clouds(), ["iaas", "nebula", "stack"]);
    let uid = accounts::add_user(
        director.store(),
        accounts::NewAccount::new(
            "alice",
            "alice@example.org",
            SecretString::from("alice-password"),
            Credit(10),
        ),
    )
    .await
    .unwrap()
    .uid;

    // Two services on each cloud: one kept, one whose row is then lost.
    let mut kept = Vec::new();
    let mut lost = Vec::new();
    for cloud in ["default", "nebula", "stack"] {
        for list in [&mut kept, &mut lost] {
            let service = director
                .start_service(StartRequest::new(uid, "php").cloud(cloud))
                .await
                .unwrap_or_else(|error| panic!("start on {cloud}: {error:?}"));
            assert!(service.manager.is_some(), "{service:?}");
            list.push(service);
        }
    }
    assert_eq!(
        director.user(uid).await.unwrap().unwrap().credit,
        Credit(4),
        "one credit per start"
    );
    let clouds: Vec<_> = kept.iter().map(|s| s.cloud.clone().unwrap()).collect();
    assert_eq!(clouds, ["iaas", "nebula", "stack"]);

    // Each cloud holds its two VMs, as its own client reads them.
    let ec2 = moto.instances(region);
    assert_eq!(states(&ec2), ["running", "running"]);
    for instance in &ec2 {
        assert_eq!(instance["subnet"], ids["subnet"]);
        assert_eq!(instance["http_tokens"], "required");
    }
    assert_eq!(one.live_vms().len(), 2);
    assert_eq!(openstack.live_servers().len(), 2);
    assert_eq!(openstack.floating_ips().len(), 2);

    // Listed: the director's services, and each cloud's VMs under this installation's prefix.
    assert_eq!(director.services(uid).await.unwrap().len(), 6);
    for (cloud, services) in [("iaas", 0), ("nebula", 1), ("stack", 2)] {
        let driver = director.clouds().get(cloud).unwrap().cloud().clone();
        let listed: BTreeSet<String> = driver
            .list_nodes(&director.token_prefix())
            .await
            .unwrap()
            .into_iter()
            .map(|node| node.vmid)
            .collect();
        let expected: BTreeSet<String> = [&kept[services], &lost[services]]
            .iter()
            .map(|service| service.vmid.clone().unwrap())
            .collect();
        assert_eq!(listed, expected, "{cloud}");
    }

    // Rows lost: the reaper finds those VMs on each cloud and deletes them, and only them.
    for service in &lost {
        let sid = service.sid;
        director
            .store()
            .run(move |conn| store::delete_service(conn, sid))
            .await
            .unwrap();
    }
    let report = director.reap(Duration::ZERO).await.unwrap();
    let reaped: BTreeSet<(String, String)> = report.reaped.into_iter().collect();
    let expected: BTreeSet<(String, String)> = lost
        .iter()
        .map(|s| (s.cloud.clone().unwrap(), s.vmid.clone().unwrap()))
        .collect();
    assert_eq!(reaped, expected);
    assert_eq!(states(&moto.instances(region)).len(), 2);
    let running: Vec<_> = moto
        .instances(region)
        .into_iter()
        .filter(|instance| instance["state"] == "running")
        .map(|instance| instance["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(running, [kept[0].vmid.clone().unwrap()]);
    let live_one: Vec<_> = one.live_vms().into_iter().map(|vm| vm.id).collect();
    assert_eq!(
        live_one.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [kept[1].vmid.clone().unwrap()]
    );
    let live_stack: Vec<_> = openstack
        .live_servers()
        .into_iter()
        .map(|server| server.id)
        .collect();
    assert_eq!(live_stack, [kept[2].vmid.clone().unwrap()]);
    assert_eq!(openstack.floating_ips().len(), 1, "the reaped one released");

    // Stopped: every kept service, each on its own cloud.
    for service in &kept {
        assert!(director.stop_service(uid, service.sid).await.unwrap());
    }
    assert!(director.services(uid).await.unwrap().is_empty());
    assert_eq!(
        states(&moto.instances(region)),
        ["terminated", "terminated"]
    );
    assert!(one.live_vms().is_empty());
    assert!(openstack.live_servers().is_empty());
    assert!(openstack.floating_ips().is_empty());
}
