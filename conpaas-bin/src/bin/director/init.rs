//! `director init`: the CA, the director's certificate, the database and DIRECTOR_URL
//! (1.2's cpsconf.py); `--keep-ca` issues a new director certificate under the existing CA.

use std::process::ExitCode;

use conpaas_core::config::LoadedConfig;
use conpaas_core::director::setup;

use super::prompt::prompt;

pub(super) fn init(
    loaded: &LoadedConfig,
    hostname: Option<String>,
    force: bool,
    keep_ca: bool,
) -> anyhow::Result<ExitCode> {
    if keep_ca && !setup::ca_exists(loaded) {
        eprintln!(
            "E: --keep-ca: there is no CA in {}; run `director init HOSTNAME` first",
            loaded.config.ca.cert_dir.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    if !force && !keep_ca && setup::ca_exists(loaded) {
        eprintln!(
            "E: a CA already exists in {}; `director init --keep-ca HOSTNAME` issues a new \
             director certificate under it; `director init --force` replaces the CA, which \
             breaks every certificate issued so far (users, managers, agents)",
            loaded.config.ca.cert_dir.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let hostname = match hostname {
        Some(hostname) => hostname,
        None => {
            let default = loaded
                .config
                .director_url
                .as_ref()
                .map(|url| url.host().to_owned())
                .or_else(|| {
                    hostname::get()
                        .ok()
                        .and_then(|name| name.into_string().ok())
                })
                .unwrap_or_else(|| "localhost".to_owned());
            let answer = prompt(&format!("Your hostname [{default}]: "))?;
            if answer.is_empty() { default } else { answer }
        }
    };
    if keep_ca {
        let report = setup::reissue_director_cert(loaded, &hostname)?;
        println!(
            "issued a new director certificate for {} under the existing CA in {}",
            report.director_url.host(),
            loaded.config.ca.cert_dir.display()
        );
        println!(
            "DIRECTOR_URL = {} written to {}",
            report.director_url,
            loaded.path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let report = setup::init(loaded, &hostname, force)?;
    println!(
        "created the CA and the director certificate in {}",
        loaded.config.ca.cert_dir.display()
    );
    match report.migrations.len() {
        0 => println!("database ready (up to date: no migration to apply)"),
        n_applied => println!("database ready ({n_applied} migration(s) applied now)"),
    }
    println!(
        "DIRECTOR_URL = {} written to {}",
        report.director_url,
        loaded.path.display()
    );
    println!("VPN: {}", vpn_capacity(loaded));
    Ok(ExitCode::SUCCESS)
}

/// The VPN plan's capacity, or why there is none.
fn vpn_capacity(loaded: &LoadedConfig) -> String {
    match &loaded.config.vpn {
        Some(settings) => match conpaas_core::vpn::VpnPlan::new(settings) {
            Ok(plan) => plan.capacity(),
            Err(error) => error.to_string(),
        },
        None => "none: services get no VPN subnet (VPN_BASE_NETWORK, VPN_NETMASK and \
                 VPN_SERVICE_BITS are not set)"
            .to_owned(),
    }
}
