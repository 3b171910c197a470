//! Unit tests of the check module: line format, where a missing configuration was looked for,
//! and the configuration check on files made here.

use std::path::{Path, PathBuf};

use chrono::TimeDelta;

use super::*;

fn file_source(path: &Path) -> ConfigSource {
    ConfigSource::resolve_with(
        Some(path.to_path_buf()),
        None,
        None,
        Path::new("/nonexistent"),
    )
}

#[test]
fn lines_keep_the_1_2_prefixes_and_append_the_fix() {
    let ok = CheckResult::ok("pki.hostname", "what", "all good");
    assert_eq!(ok.line(), "OK: all good");
    let warning = CheckResult::warning("x", "what", "odd", "do this");
    assert_eq!(warning.line(), "W: odd; fix: do this");
    let error = CheckResult::error("x", "what", "broken", "do that");
    assert_eq!(error.line(), "E: broken; fix: do that");
    let skipped = CheckResult::skipped("x", "what", "not tried");
    assert_eq!(skipped.line(), "SKIP: not tried");
}

#[test]
fn results_serialize_with_lowercase_statuses() {
    let error = CheckResult::error("pki.key-mode", "private key file mode", "bad", "chmod");
    let json = serde_json::to_value(&error).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "id": "pki.key-mode",
            "status": "error",
            "what": "private key file mode",
            "found": "bad",
            "fix": "chmod",
        })
    );
    let skipped = serde_json::to_value(CheckResult::skipped("a", "b", "c")).unwrap();
    assert_eq!(skipped["status"], "skipped");
    assert_eq!(skipped["fix"], serde_json::Value::Null);
}

#[test]
fn durations_read_naturally() {
    for (delta, expect) in [
        (TimeDelta::seconds(42), "42 s"),
        (TimeDelta::seconds(-42), "42 s"),
        (TimeDelta::seconds(185), "3 min 5 s"),
        (TimeDelta::hours(5) + TimeDelta::minutes(2), "5 h 2 min"),
        (TimeDelta::days(29), "29 days"),
    ] {
        assert_eq!(show_duration(delta), expect, "{delta:?}");
    }
}

#[test]
fn a_missing_configuration_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("director.cfg");
    let Err(Error::NoConfig { looked }) = check_config(&file_source(&cfg)) else {
        panic!("a missing file must be NoConfig");
    };
    assert_eq!(looked, format!("--config {}: no such file", cfg.display()));

    let source = ConfigSource::resolve_with(
        None,
        None,
        Some(cfg.clone().into_os_string()),
        Path::new("/nonexistent"),
    );
    let Err(Error::NoConfig { looked }) = check_config(&source) else {
        panic!("a missing DIRECTOR_CFG file must be NoConfig");
    };
    assert_eq!(
        looked,
        format!("DIRECTOR_CFG={}: no such file", cfg.display())
    );

    let data = dir.path().join("data");
    let source = ConfigSource::resolve_with(None, Some(data.clone()), None, Path::new("/x"));
    let Err(Error::NoConfig { looked }) = check_config(&source) else {
        panic!("a missing data directory must be NoConfig");
    };
    assert!(
        looked.starts_with(&format!(
            "--data-dir {}: {} does not exist",
            data.display(),
            data.display()
        )),
        "{looked}"
    );
    assert!(
        !data.exists(),
        "cpscheck must not create the data directory"
    );

    let source = ConfigSource::resolve_with(None, None, None, Path::new("/nonexistent"));
    let Err(Error::NoConfig { looked }) = check_config(&source) else {
        panic!("the embedded default must be NoConfig");
    };
    assert!(looked.contains(SYSTEM_CONFIG_FILE), "{looked}");
    assert!(looked.contains("conpaas-data"), "{looked}");
}

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("director.cfg");
    let text = format!(
        "[conpaas]\nCONF_DIR = {d}\nCERT_DIR = {d}/certs\n[iaas]\nDRIVER = dummy\n\
         [director]\nDATABASE_URI = sqlite:///{d}/director.db\n{extra}",
        d = dir.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn configuration_problems_and_warnings_are_the_directors_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "MAX_CREDITS = 5\nDB_MAX_CONNECTIONS = lots\n");
    let check = check_config(&file_source(&path)).unwrap();
    assert!(check.loaded.is_none());
    let lines: Vec<String> = check.results.iter().map(CheckResult::line).collect();
    let Err(error) = config::load(&file_source(&path)) else {
        panic!("the file is invalid");
    };
    let expected: Vec<String> = error.problems().iter().map(|p| format!("E: {p}")).collect();
    assert_eq!(lines, expected);
    assert!(!lines.is_empty());

    let path = write_config(dir.path(), "COLOUR = blue\n");
    let check = check_config(&file_source(&path)).unwrap();
    assert!(check.loaded.is_some());
    let lines: Vec<String> = check.results.iter().map(CheckResult::line).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].starts_with("OK: "), "{lines:?}");
    assert_eq!(
        lines[1],
        format!(
            "W: {}:8: [director] COLOUR: unknown key, ignored",
            path.display()
        )
    );
    assert_eq!(
        lines[2],
        "OK: no VPN: services get no VPN subnet (VPN_BASE_NETWORK, VPN_NETMASK and \
         VPN_SERVICE_BITS are not set)"
    );

    // With a plan: its capacity as the installation guide counts it.
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[conpaas]\n",
        "[conpaas]\nVPN_BASE_NETWORK = 172.16.0.0\nVPN_NETMASK = 255.240.0.0\nVPN_SERVICE_BITS = 5\n",
    );
    std::fs::write(&path, text).unwrap();
    let check = check_config(&file_source(&path)).unwrap();
    let vpn = check
        .results
        .iter()
        .find(|result| result.id == "config.vpn")
        .unwrap();
    assert!(
        vpn.line()
            .starts_with("OK: 172.16.0.0/12 gives each application 32 service subnet(s) of /17"),
        "{}",
        vpn.line()
    );
}

#[test]
fn the_ec2_cloud_part_is_the_directors_own_when_missing_or_token_less() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("director.cfg");
    std::fs::write(
        &path,
        format!(
            "[conpaas]\nCONF_DIR = {d}\nCERT_DIR = {d}/certs\n[iaas]\nDRIVER = ec2\n\
             IMAGE_ID = ami-1\nSIZE_ID = t3.micro\nSECURITY_GROUP_NAME = g\nKEY_NAME = k\n\
             REGION = ec2.us-east-1.amazonaws.com\n[director]\n\
             DATABASE_URI = sqlite:///{d}/director.db\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let loaded = crate::config::load(&file_source(&path)).unwrap();
    let line = || {
        let results = files::checks(&loaded);
        let found: Vec<_> = results
            .iter()
            .filter(|result| result.id == "files.cloud-script")
            .collect();
        assert_eq!(found.len(), 1, "{results:?}");
        assert_eq!(found[0].status, Status::Ok, "{}", found[0]);
        found[0].found.clone()
    };
    assert!(line().contains("is absent"), "{}", line());
    let part = dir.path().join("scripts/cloud/ec2");
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::fs::write(
        &part,
        "#!/bin/bash\nwget http://169.254.169.254/latest/meta-data/public-ipv4 -O -\n",
    )
    .unwrap();
    assert!(line().contains("without an IMDSv2 token"), "{}", line());
    std::fs::write(&part, "#!/bin/bash\nIP_PUBLIC=10.0.0.1\n").unwrap();
    assert!(
        line().contains("exists for the ec2 cloud(s) iaas"),
        "{}",
        line()
    );
}
