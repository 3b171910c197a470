//! `director health`: asks this host's director for `/readyz`, for a container's
//! `HEALTHCHECK` or a monitoring script. It connects to 127.0.0.1 (or `--connect`) at the port
//! of DIRECTOR_URL and checks the certificate for DIRECTOR_URL's host name against the CA of
//! CERT_DIR, as a client would; it writes nothing.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use conpaas_core::config::LoadedConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// How long the whole check may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// `director health [--connect ADDR]`: 0 when `/readyz` answers 200 (ready, or degraded),
/// 1 otherwise, the answer or the reason on one line.
pub(super) fn health(
    loaded: &LoadedConfig,
    connect: Option<SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let Some(url) = loaded.config.director_url.clone() else {
        eprintln!(
            "E: DIRECTOR_URL is not set in {}: run `director init HOSTNAME`",
            loaded.path.display()
        );
        return Ok(ExitCode::FAILURE);
    };
    let parsed = reqwest::Url::parse(&url.to_string())?;
    let host = parsed.host_str().unwrap_or("localhost").to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let connect = connect.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], port)));
    let ca_path = loaded
        .config
        .ca
        .cert_dir
        .join(conpaas_core::ca::CA_CERT_FILE);
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&ca_path)
        .map_err(|error| anyhow::anyhow!("{}: {error}", ca_path.display()))?
    {
        roots.add(cert.map_err(|error| anyhow::anyhow!("{}: {error}", ca_path.display()))?)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        // The name of DIRECTOR_URL, at this host's listener.
        .resolve(&host, connect)
        .timeout(HEALTH_TIMEOUT)
        .no_proxy()
        .build()?;
    let mut readyz = parsed.clone();
    readyz.set_path("/readyz");
    // reqwest connects to the URL's port, whatever `resolve` says: the URL carries it.
    readyz
        .set_port(Some(connect.port()))
        .map_err(|()| anyhow::anyhow!("{url} cannot take a port"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer = runtime.block_on(async {
        let response = client.get(readyz.clone()).send().await?;
        let status = response.status();
        let body = response.text().await?;
        Ok::<_, reqwest::Error>((status, body))
    });
    match answer {
        Ok((status, body)) if status.is_success() => {
            println!("{}", body.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Ok((status, body)) => {
            eprintln!("E: {readyz} at {connect}: {status}: {}", body.trim_end());
            Ok(ExitCode::FAILURE)
        }
        Err(error) => {
            eprintln!(
                "E: {readyz} at {connect}: {}",
                conpaas_core::model::ErrorChain(&error)
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
