//! Checks that may use the network: the clock (against a cloud's `Date` header, else against
//! the times the installation recorded), each cloud's credentials, and a TLS handshake with the
//! running director.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, TimeDelta, Utc};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::UnixTime;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;

use super::{CheckOptions, CheckResult, error_chain, show_duration, show_time};
use crate::ca::{CA_CERT_FILE, CERT_FILE, CertInfo};
use crate::cloud::{self, CloudRegistry, CloudSettings, DriverSettings};
use crate::config::LoadedConfig;
use crate::manager_client::signatures::HandshakeSignatures;
use crate::store::DatabaseUrl;

pub(super) async fn checks(loaded: &LoadedConfig, options: &CheckOptions) -> Vec<CheckResult> {
    let mut results = vec![clock(loaded, options).await];
    results.extend(clouds(loaded, options).await);
    results.push(services(loaded, options).await);
    results.push(rowless_vms(loaded, options).await);
    results.push(director_tls(loaded, options).await);
    results
}

/// Each started service's VM still exists in its cloud (the Troubleshooting guide's "is the
/// manager VM there"); a VM gone leaves a row clients still list.
async fn services(loaded: &LoadedConfig, options: &CheckOptions) -> CheckResult {
    const WHAT: &str = "service VMs";
    if !options.network {
        return CheckResult::skipped(
            "services",
            WHAT,
            "the clouds were not asked about the services' VMs (--no-network)",
        );
    }
    let rows = match crate::store::Store::open_read_only(&loaded.config.store) {
        Ok(store) => store.run(crate::store::list_all_services).await,
        Err(error) => Err(error),
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(error) => {
            return CheckResult::skipped(
                "services",
                WHAT,
                format!("the services could not be read: {}", error_chain(&error)),
            );
        }
    };
    let registry = CloudRegistry::new(
        loaded.config.clouds(),
        &loaded.config.conf_dir.join("dummy-cloud"),
    );
    let mut gone = Vec::new();
    let mut unknown_cloud = Vec::new();
    let mut unanswered = Vec::new();
    let mut n_checked = 0;
    for row in &rows {
        let (Some(vmid), Some(cloud_name)) = (&row.vmid, &row.cloud) else {
            continue;
        };
        let Some(cloud) = registry
            .get(cloud_name)
            .map(|registered| registered.cloud())
        else {
            unknown_cloud.push(format!("sid {} on {cloud_name}", row.sid));
            continue;
        };
        n_checked += 1;
        match tokio::time::timeout(options.network_timeout, cloud.node_state(vmid)).await {
            Ok(Ok(cloud::NodeState::Gone)) => {
                gone.push(format!("sid {} ({cloud_name} {vmid})", row.sid))
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => unanswered.push(format!("sid {}: {}", row.sid, error_chain(&error))),
            Err(_) => unanswered.push(format!("sid {}: no answer in time", row.sid)),
        }
    }
    if !unknown_cloud.is_empty() {
        return CheckResult::error(
            "services",
            WHAT,
            format!(
                "service(s) on clouds no longer configured: {}",
                unknown_cloud.join(", ")
            ),
            "add the cloud's section back to director.cfg: without it their VMs can be neither \
             stopped nor checked",
        );
    }
    if !gone.is_empty() {
        return CheckResult::warning(
            "services",
            WHAT,
            format!(
                "the VM of {} service(s) is gone from its cloud: {}",
                gone.len(),
                gone.join(", ")
            ),
            "the manager was terminated outside the director: stop those services (`/stop/<sid>`) \
             so that clients no longer list them",
        );
    }
    if !unanswered.is_empty() {
        return CheckResult::warning(
            "services",
            WHAT,
            format!(
                "the clouds could not say whether some VMs exist: {}",
                unanswered.join("; ")
            ),
            "see the cloud credentials line above",
        );
    }
    CheckResult::ok(
        "services",
        WHAT,
        format!("the VM of each of the {n_checked} started service(s) exists"),
    )
}

/// VMs of this installation (by client-token prefix) that no service row records: what the
/// director's reaper terminates after `REAP_GRACE`. Dummy clouds are local files and always
/// checked; real clouds only with the network.
async fn rowless_vms(loaded: &LoadedConfig, options: &CheckOptions) -> CheckResult {
    const WHAT: &str = "VMs without a service";
    let ca_path = loaded.config.ca.cert_dir.join(CA_CERT_FILE);
    let tag = match std::fs::read(&ca_path)
        .ok()
        .and_then(|text| CertificateDer::from_pem_slice(&text).ok())
    {
        Some(der) => crate::ca::installation_tag(&der),
        None => {
            return CheckResult::skipped(
                "reaper",
                WHAT,
                format!(
                    "no CA certificate in {}: the installation's VMs cannot be named",
                    ca_path.display()
                ),
            );
        }
    };
    let prefix = format!("cps-{tag}-s");
    let registry = CloudRegistry::new(
        loaded.config.clouds(),
        &loaded.config.conf_dir.join("dummy-cloud"),
    );
    let mut listed = Vec::new();
    let mut skipped = Vec::new();
    let mut unanswered = Vec::new();
    for registered in registry.iter() {
        let local = registered
            .settings()
            .is_some_and(|settings| matches!(settings.driver, DriverSettings::Dummy));
        if !local && !options.network {
            skipped.push(registered.name().to_owned());
            continue;
        }
        match tokio::time::timeout(
            options.network_timeout,
            registered.cloud().list_nodes(&prefix),
        )
        .await
        {
            Ok(Ok(nodes)) => listed.extend(
                nodes
                    .into_iter()
                    .map(|node| (registered.name().to_owned(), node)),
            ),
            Ok(Err(cloud::Error::Unsupported { .. })) => skipped.push(registered.name().to_owned()),
            Ok(Err(error)) => {
                unanswered.push(format!("{}: {}", registered.name(), error_chain(&error)))
            }
            Err(_) => unanswered.push(format!("{}: no answer in time", registered.name())),
        }
    }
    let sids: Vec<crate::model::ServiceId> = listed
        .iter()
        .filter_map(|(_, node)| node.client_token.strip_prefix(&prefix)?.parse().ok())
        .map(crate::model::ServiceId)
        .collect();
    let rows = match crate::store::Store::open_read_only(&loaded.config.store) {
        Ok(store) => {
            store
                .run(move |conn| crate::store::service_vms(conn, &sids))
                .await
        }
        Err(error) => Err(error),
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(error) => {
            return CheckResult::skipped(
                "reaper",
                WHAT,
                format!("the services could not be read: {}", error_chain(&error)),
            );
        }
    };
    let rowless: Vec<String> = listed
        .iter()
        .filter(|(_, node)| {
            let sid: Option<i32> = node
                .client_token
                .strip_prefix(&prefix)
                .and_then(|digits| digits.parse().ok());
            match rows.iter().find(|(row_sid, _)| Some(row_sid.0) == sid) {
                None => true,
                Some((_, None)) => false,
                Some((_, Some(vmid))) => *vmid != node.vmid,
            }
        })
        .map(|(cloud, node)| format!("{cloud} {}", node.vmid))
        .collect();
    if !rowless.is_empty() {
        return CheckResult::warning(
            "reaper",
            WHAT,
            format!(
                "{} VM(s) of this installation have no service row: {}",
                rowless.len(),
                rowless.join(", ")
            ),
            "a running `director serve` terminates them once they are older than REAP_GRACE \
             (see docs/operations.md, \"The reaper\"); they keep costing money until then",
        );
    }
    if !unanswered.is_empty() {
        return CheckResult::warning(
            "reaper",
            WHAT,
            format!(
                "some clouds could not list their VMs: {}",
                unanswered.join("; ")
            ),
            "see the cloud credentials lines above",
        );
    }
    let mut found = format!(
        "each of the {} VM(s) of this installation has its service row",
        listed.len()
    );
    if !skipped.is_empty() {
        found.push_str(&format!(" (not listed: {})", skipped.join(", ")));
    }
    CheckResult::ok("reaper", WHAT, found)
}

/// The API endpoint of a real cloud; `None` for the dummy one.
fn cloud_endpoint(settings: &CloudSettings) -> Option<String> {
    match &settings.driver {
        DriverSettings::Dummy => None,
        DriverSettings::Ec2(ec2) => Some(ec2.api_url()),
        DriverSettings::OpenNebula(one) => Some(one.url.to_string()),
        DriverSettings::OpenNebulaXmlRpc(one) => Some(one.url()),
        DriverSettings::OpenStack(openstack) => Some(openstack.auth_url.clone()),
    }
}

const CLOCK_WHAT: &str = "system clock";
const CLOCK_FIX: &str = "synchronise the clock with NTP (`timedatectl set-ntp true`, or \
     `ntpdate pool.ntp.org` as the ConPaaS 1.2 guide did): a wrong clock makes certificates \
     look not yet valid or expired to the director, its clients or the manager VMs";

async fn clock(loaded: &LoadedConfig, options: &CheckOptions) -> CheckResult {
    let endpoints: Vec<(String, String)> = loaded
        .config
        .clouds()
        .filter_map(|cloud| cloud_endpoint(cloud).map(|url| (cloud.name.clone(), url)))
        .collect();
    let why_local = if !options.network {
        "--no-network: no reference clock was asked"
    } else if endpoints.is_empty() {
        "no real cloud is configured to ask for the time"
    } else {
        "no cloud endpoint answered with a Date header"
    };
    if options.network {
        for (name, url) in &endpoints {
            if let Some(result) = clock_against(name, url, options).await {
                return result;
            }
        }
    }
    let loaded = loaded.clone();
    let tolerance = options.clock_tolerance;
    let local = tokio::task::spawn_blocking(move || clock_heuristic(&loaded, tolerance)).await;
    match local {
        Ok(result) => {
            let mut result = result;
            result.found = format!("{} ({why_local})", result.found);
            result
        }
        Err(_) => CheckResult::skipped(
            "clock",
            CLOCK_WHAT,
            "the clock was not checked: the check was cancelled",
        ),
    }
}

/// A TLS client configuration that accepts any server certificate (signatures of the handshake
/// are still checked), on the crate's one crypto provider: reqwest brings none of its own.
fn unverified_tls() -> Option<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    config
        .dangerous()
        .set_certificate_verifier(Arc::new(AnyCertificate {
            signatures: HandshakeSignatures::of(&provider),
        }));
    Some(config)
}

/// Accepts every server certificate: the clock check reads only a `Date` header.
#[derive(Debug)]
struct AnyCertificate {
    signatures: HandshakeSignatures,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.supported_schemes()
    }
}

/// Compares the local clock with the `Date` header of the cloud endpoint `url`; `None` when it
/// gives none.
async fn clock_against(name: &str, url: &str, options: &CheckOptions) -> Option<CheckResult> {
    // The certificate is not verified: only the Date header is read and nothing is sent, and
    // verifying needs the very clock being checked (a clock far off fails every handshake).
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(unverified_tls()?)
        .timeout(options.network_timeout)
        .build()
        .ok()?;
    let before = Utc::now();
    let response = client.get(url).send().await.ok()?;
    let after = Utc::now();
    let date = response
        .headers()
        .get(reqwest::header::DATE)?
        .to_str()
        .ok()?;
    let remote = DateTime::parse_from_rfc2822(date).ok()?.with_timezone(&Utc);
    // The server stamped its answer somewhere between our send and receive, and its Date
    // drops the fraction of its second: compare middles.
    let local = before + (after - before) / 2;
    let offset = local - (remote + TimeDelta::milliseconds(500));
    let shown_offset = if offset.abs() < TimeDelta::seconds(1) {
        "within a second of".to_owned()
    } else {
        format!(
            "{} {}",
            show_duration(offset),
            if offset > TimeDelta::zero() {
                "ahead of"
            } else {
                "behind"
            }
        )
    };
    let found = format!(
        "the clock ({}) is {shown_offset} the Date header of cloud {name} ({url}: {})",
        show_time(local),
        show_time(remote)
    );
    Some(if offset.abs() > options.clock_tolerance {
        CheckResult::warning("clock", CLOCK_WHAT, found, CLOCK_FIX)
    } else {
        CheckResult::ok("clock", CLOCK_WHAT, found)
    })
}

/// Without a reference clock: the clock must not be before what this installation recorded
/// (certificates' `notBefore`, files' modification times, this program's build). It catches a
/// clock that went back, not one that runs ahead.
fn clock_heuristic(loaded: &LoadedConfig, tolerance: TimeDelta) -> CheckResult {
    let now = Utc::now();
    let cert_dir = &loaded.config.ca.cert_dir;
    let mut marks: Vec<(String, DateTime<Utc>)> = Vec::new();
    for (name, label) in [
        (CA_CERT_FILE, "the CA"),
        (CERT_FILE, "the director certificate"),
    ] {
        if let Some(info) = std::fs::read(cert_dir.join(name))
            .ok()
            .and_then(|bytes| CertInfo::parse(&bytes).ok())
        {
            marks.push((format!("notBefore of {label}"), info.not_before));
        }
    }
    let mut files: Vec<PathBuf> = vec![
        loaded.path.clone(),
        cert_dir.join(CA_CERT_FILE),
        cert_dir.join(CERT_FILE),
    ];
    if let DatabaseUrl::Sqlite(path) = &loaded.config.store.url {
        files.push(path.clone());
    }
    if let Ok(exe) = std::env::current_exe() {
        files.push(exe);
    }
    for file in files {
        if let Some(modified) = std::fs::metadata(&file)
            .and_then(|metadata| metadata.modified())
            .ok()
            .and_then(system_time)
        {
            marks.push((format!("modification of {}", file.display()), modified));
        }
    }
    let Some((label, latest)) = marks.into_iter().max_by_key(|(_, time)| *time) else {
        return CheckResult::skipped(
            "clock",
            CLOCK_WHAT,
            format!(
                "the clock ({}) was not compared with anything: no certificate or file time \
                 could be read",
                show_time(now)
            ),
        );
    };
    if latest - now > tolerance {
        CheckResult::warning(
            "clock",
            CLOCK_WHAT,
            format!(
                "the clock ({}) is {} before the {label} ({}): the clock is probably behind",
                show_time(now),
                show_duration(latest - now),
                show_time(latest)
            ),
            CLOCK_FIX,
        )
    } else {
        CheckResult::ok(
            "clock",
            CLOCK_WHAT,
            format!(
                "the clock ({}) is not before anything this installation recorded (the newest: \
                 the {label}, {}); a clock running ahead goes unnoticed this way",
                show_time(now),
                show_time(latest)
            ),
        )
    }
}

fn system_time(time: SystemTime) -> Option<DateTime<Utc>> {
    let since_epoch = time.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    DateTime::from_timestamp(i64::try_from(since_epoch.as_secs()).ok()?, 0)
}

async fn clouds(loaded: &LoadedConfig, options: &CheckOptions) -> Vec<CheckResult> {
    let registry = CloudRegistry::new(
        loaded.config.clouds(),
        &loaded.config.conf_dir.join("dummy-cloud"),
    );
    cloud_checks(&registry, Some(loaded), options).await
}

/// The cloud checks of cpscheck over any registry: each cloud is asked one authenticated call
/// ([`Cloud::probe`](crate::cloud::Cloud::probe)). Clouds built from `loaded`'s director.cfg
/// get messages naming their section; an embedder's own clouds are probed the same way.
pub async fn cloud_checks(
    registry: &CloudRegistry,
    loaded: Option<&LoadedConfig>,
    options: &CheckOptions,
) -> Vec<CheckResult> {
    let what = "cloud credentials";
    let mut results = Vec::new();
    for registered in registry.iter() {
        let driver = registered.cloud();
        let name = registered.name();
        let kind = driver.driver();
        let Some(settings) = registered.settings() else {
            results.push(embedder_cloud(name, kind, driver.as_ref(), options).await);
            continue;
        };
        let Some(endpoint) = cloud_endpoint(settings) else {
            // The dummy cloud needs no network; its probe only proves the registry built it.
            results.push(match driver.probe().await {
                Ok(()) => CheckResult::ok(
                    "cloud",
                    what,
                    format!("cloud {name} (dummy driver) is ready: it starts no VMs"),
                ),
                Err(error) => CheckResult::error(
                    "cloud",
                    what,
                    format!(
                        "cloud {name} (dummy driver) is not usable: {}",
                        error_chain(&error)
                    ),
                    match loaded {
                        Some(loaded) => format!(
                            "make {} writable by the director's user",
                            loaded.config.conf_dir.display()
                        ),
                        None => "make the dummy cloud's directory writable".to_owned(),
                    },
                ),
            });
            continue;
        };
        let section = match loaded {
            Some(loaded) => format!("[{name}] of {}", loaded.path.display()),
            None => format!("[{name}]"),
        };
        if !options.network {
            results.push(CheckResult::skipped(
                "cloud",
                what,
                format!(
                    "cloud {name} ({kind} driver, {endpoint}) was not asked whether it accepts \
                     the configured credentials (--no-network)"
                ),
            ));
            continue;
        }
        let answer = tokio::time::timeout(options.network_timeout, driver.probe()).await;
        results.push(match answer {
            Ok(Ok(())) => CheckResult::ok(
                "cloud",
                what,
                format!(
                    "cloud {name} ({kind} driver, {endpoint}) answered an authenticated call \
                     with the configured credentials"
                ),
            ),
            // The registry's stand-in for a driver that could not be built: no call was made.
            Ok(Err(cloud::Error::Refused { code, message })) if code == "DriverUnavailable" => {
                CheckResult::error(
                    "cloud",
                    what,
                    format!("cloud {name} ({kind} driver, {endpoint}) cannot be used: {message}"),
                    "run `RUST_LOG=warn cpscheck` to see why the driver could not start",
                )
            }
            Ok(Err(cloud::Error::Misconfigured { key, message })) => CheckResult::error(
                "cloud",
                what,
                format!("cloud {name} ({kind} driver, {endpoint}): {key}: {message}"),
                format!("correct {key} in {section}"),
            ),
            Ok(Err(cloud::Error::Refused { code, message })) => CheckResult::error(
                "cloud",
                what,
                format!(
                    "cloud {name} ({kind} driver, {endpoint}) refused an authenticated call: \
                     {code}: {message}"
                ),
                format!("check USER and PASSWORD (and the other keys) in {section}"),
            ),
            Ok(Err(error)) => CheckResult::error(
                "cloud",
                what,
                format!(
                    "cloud {name} ({kind} driver, {endpoint}) could not be asked: {}",
                    error_chain(&error)
                ),
                format!(
                    "check the endpoint keys in {section} and that this host reaches {endpoint} \
                     (firewall, proxy, DNS)"
                ),
            ),
            Err(_) => CheckResult::error(
                "cloud",
                what,
                format!(
                    "cloud {name} ({kind} driver, {endpoint}) did not answer within {} s",
                    options.network_timeout.as_secs()
                ),
                format!(
                    "check the endpoint keys in {section} and that this host reaches {endpoint} \
                     (firewall, proxy, DNS)"
                ),
            ),
        });
    }
    results
}

/// The check of a cloud an embedder registered: its probe, bounded like the others.
async fn embedder_cloud(
    name: &str,
    kind: &str,
    driver: &dyn cloud::Cloud,
    options: &CheckOptions,
) -> CheckResult {
    let what = "cloud credentials";
    if !options.network {
        return CheckResult::skipped(
            "cloud",
            what,
            format!("cloud {name} ({kind} driver) was not probed (--no-network)"),
        );
    }
    match tokio::time::timeout(options.network_timeout, driver.probe()).await {
        Ok(Ok(())) => CheckResult::ok(
            "cloud",
            what,
            format!("cloud {name} ({kind} driver) answered its probe"),
        ),
        Ok(Err(error)) => CheckResult::error(
            "cloud",
            what,
            format!(
                "cloud {name} ({kind} driver) failed its probe: {}",
                error_chain(&error)
            ),
            format!("see the {kind} driver's documentation"),
        ),
        Err(_) => CheckResult::error(
            "cloud",
            what,
            format!(
                "cloud {name} ({kind} driver) did not answer its probe within {} s",
                options.network_timeout.as_secs()
            ),
            format!("see the {kind} driver's documentation"),
        ),
    }
}

const TLS_WHAT: &str = "director answers TLS at DIRECTOR_URL";

async fn director_tls(loaded: &LoadedConfig, options: &CheckOptions) -> CheckResult {
    let Some(url) = &loaded.config.director_url else {
        return CheckResult::skipped(
            "director.tls",
            TLS_WHAT,
            "no TLS handshake with the director was tried: DIRECTOR_URL is not set",
        );
    };
    if !options.network {
        return CheckResult::skipped(
            "director.tls",
            TLS_WHAT,
            format!("no TLS handshake with the director at {url} was tried (--no-network)"),
        );
    }
    let cert_dir = &loaded.config.ca.cert_dir;
    let ca_path = cert_dir.join(CA_CERT_FILE);
    let cert_path = cert_dir.join(CERT_FILE);
    let (Ok(ca_pem), Ok(cert_pem)) = (
        tokio::fs::read(&ca_path).await,
        tokio::fs::read(&cert_path).await,
    ) else {
        return CheckResult::skipped(
            "director.tls",
            TLS_WHAT,
            format!(
                "no TLS handshake with the director at {url} was tried: the certificates cannot \
                 be read"
            ),
        );
    };
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&ca_pem).map_while(Result::ok) {
        // A CA rustls cannot use as an anchor fails the handshake below, which says why.
        let _ = roots.add(ca);
    }
    let expected = CertificateDer::pem_slice_iter(&cert_pem)
        .next()
        .and_then(Result::ok);
    let (Some(expected), false) = (expected, roots.is_empty()) else {
        return CheckResult::skipped(
            "director.tls",
            TLS_WHAT,
            format!(
                "no TLS handshake with the director at {url} was tried: {} or {} holds no \
                 usable certificate",
                ca_path.display(),
                cert_path.display()
            ),
        );
    };
    let host = url.host();
    let port = url.port_or_default();
    let Ok(server_name) = ServerName::try_from(host.to_owned()) else {
        return CheckResult::skipped(
            "director.tls",
            TLS_WHAT,
            format!("no TLS handshake was tried: {host} is not a host name TLS can check"),
        );
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder.with_root_certificates(roots).with_no_client_auth(),
        Err(error) => {
            return CheckResult::skipped(
                "director.tls",
                TLS_WHAT,
                format!("no TLS handshake was tried: the TLS client cannot be set up ({error})"),
            );
        }
    };
    let timeout = options.network_timeout;
    let not_listening = |problem: String| {
        CheckResult::warning(
            "director.tls",
            TLS_WHAT,
            format!(
                "nothing answers at {host}:{port} ({problem}): the director is not running there"
            ),
            format!(
                "start it (`director serve`) or, if it runs on another port or host, correct \
                 DIRECTOR_URL in {}",
                loaded.path.display()
            ),
        )
    };
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(error)) => return not_listening(error.to_string()),
        Err(_) => return not_listening(format!("no connection within {} s", timeout.as_secs())),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake = tokio::time::timeout(timeout, connector.connect(server_name, tcp)).await;
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            return CheckResult::error(
                "director.tls",
                TLS_WHAT,
                format!(
                    "the TLS handshake with {host}:{port} failed, trusting {} for {host}: {}",
                    ca_path.display(),
                    error_chain(&error)
                ),
                "fix what the pki lines above report, then restart the director (it reads its \
                 certificate at start); if another program holds that port, stop it",
            );
        }
        Err(_) => {
            return CheckResult::error(
                "director.tls",
                TLS_WHAT,
                format!(
                    "{host}:{port} accepted a connection but completed no TLS handshake within {} s",
                    timeout.as_secs()
                ),
                "make sure the director, not another program, listens on the port of DIRECTOR_URL",
            );
        }
    };
    let (_, connection) = tls.get_ref();
    let version = connection
        .protocol_version()
        .map(|version| format!("{version:?}"))
        .unwrap_or_default();
    let served = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.as_ref().to_vec());
    if served.as_deref() == Some(expected.as_ref()) {
        CheckResult::ok(
            "director.tls",
            TLS_WHAT,
            format!(
                "the director at {url} completed a TLS handshake ({version}) serving {}, \
                 trusted through {} for {host}",
                cert_path.display(),
                ca_path.display()
            ),
        )
    } else {
        let serial = served
            .and_then(|der| CertInfo::parse(&der).ok())
            .map(|info| format!("serial {}", info.serial))
            .unwrap_or_else(|| "unreadable".to_owned());
        CheckResult::error(
            "director.tls",
            TLS_WHAT,
            format!(
                "the server at {host}:{port} is trusted by {} but serves another certificate \
                 ({serial}) than {}",
                ca_path.display(),
                cert_path.display()
            ),
            "restart the director, which reads cert.pem at start (after `director init` it \
             still serves the old one); if several directors share the name, give them the \
             same CERT_DIR",
        )
    }
}
