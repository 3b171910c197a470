//! Checks of CONF_DIR: the ConPaaS.tar.gz the manager VMs download and the templates their
//! contextualisation script is made of.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Component, Path};

use super::{CheckResult, Status};
use crate::cloud::DriverSettings;
use crate::config::LoadedConfig;

/// The tarball's name in CONF_DIR, served at `/download/ConPaaS.tar.gz`.
const TARBALL: &str = "ConPaaS.tar.gz";
/// The directory the VMs' `manager-setup` expects the tarball to unpack into.
const TOP_DIR: &str = "ConPaaS";
/// Parts of the tree the 1.2 managers start from (`spec/manager-bootstrap.md` §8-§9).
const EXPECTED_SUBDIRS: [&str; 2] = ["ConPaaS/sbin/manager", "ConPaaS/src/conpaas"];
/// The templates every contextualisation script is built from (`bootstrap::Templates::load`).
const REQUIRED_TEMPLATES: [&str; 3] = [
    "scripts/manager/manager-setup",
    "scripts/manager/default-manager-start",
    "config/manager/default-manager.cfg",
];

pub(super) fn checks(loaded: &LoadedConfig) -> Vec<CheckResult> {
    let mut results = vec![tarball(loaded)];
    results.extend(templates(loaded));
    results
}

/// Whether a cloud that starts real VMs is configured: they download the tarball.
fn real_clouds(loaded: &LoadedConfig) -> bool {
    loaded
        .config
        .clouds()
        .any(|cloud| !matches!(cloud.driver, DriverSettings::Dummy))
}

fn tarball(loaded: &LoadedConfig) -> CheckResult {
    let what = "ConPaaS.tar.gz for the manager VMs";
    let path = loaded.config.conf_dir.join(TARBALL);
    let shown = path.display();
    // The dummy cloud starts no VM, so nothing downloads the tarball yet.
    let (severity, consequence) = if real_clouds(loaded) {
        (
            Status::Error,
            "every manager VM fails to download it and never starts its manager",
        )
    } else {
        (
            Status::Warning,
            "harmless on the dummy cloud alone, but manager VMs on a real cloud would fail to \
             download it",
        )
    };
    let fix = format!(
        "put the ConPaaS services tree there: `tar -czf {shown} ConPaaS` from the directory \
         holding the unpacked ConPaaS 1.2 release's ConPaaS/ tree"
    );
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return CheckResult::problem(
                "files.tarball",
                severity,
                what,
                format!("{shown} does not exist: {consequence}"),
                fix,
            );
        }
        Err(error) => {
            return CheckResult::problem(
                "files.tarball",
                severity,
                what,
                format!("{shown} cannot be read ({error}): {consequence}"),
                "make it readable by the director's user",
            );
        }
    };
    match tar_summary(file) {
        Err(error) => CheckResult::problem(
            "files.tarball",
            severity,
            what,
            format!("{shown} is not a readable gzip tar ({error}): {consequence}"),
            fix,
        ),
        Ok(summary) if !summary.top_dirs.contains_key(TOP_DIR) => {
            let tops: Vec<&str> = summary.top_dirs.keys().map(String::as_str).collect();
            CheckResult::problem(
                "files.tarball",
                severity,
                what,
                format!(
                    "{shown} has no top-level {TOP_DIR}/ directory (it holds {}): the VMs unpack \
                     it and run {TOP_DIR}/sbin/manager/..., so {consequence}",
                    if tops.is_empty() {
                        "nothing".to_owned()
                    } else {
                        tops.join(", ")
                    }
                ),
                fix,
            )
        }
        Ok(summary) => {
            let absent: Vec<&str> = EXPECTED_SUBDIRS
                .iter()
                .zip(summary.subdirs_seen)
                .filter(|(_, seen)| !seen)
                .map(|(dir, _)| *dir)
                .collect();
            if absent.is_empty() {
                CheckResult::ok(
                    "files.tarball",
                    what,
                    format!(
                        "{shown} is a gzip tar of {} entries with the {TOP_DIR}/ tree the VMs \
                         unpack",
                        summary.n_entries
                    ),
                )
            } else {
                CheckResult::warning(
                    "files.tarball",
                    what,
                    format!(
                        "{shown} has a {TOP_DIR}/ directory but no {}: ConPaaS 1.2 managers \
                         start from there",
                        absent.join(" or ")
                    ),
                    fix,
                )
            }
        }
    }
}

/// What a tarball holds, enough to judge it.
struct TarSummary {
    n_entries: usize,
    /// Top-level names, mapped to the number of entries under each.
    top_dirs: BTreeMap<String, usize>,
    /// Which of [`EXPECTED_SUBDIRS`] some entry is in (or is).
    subdirs_seen: [bool; EXPECTED_SUBDIRS.len()],
}

/// Whether `path` (normalised: no `./`, no trailing `/`) is `dir` or inside it.
fn within(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Reads the whole archive, so a truncated or corrupt file fails here as it would on the VM.
fn tar_summary(file: File) -> io::Result<TarSummary> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    let mut summary = TarSummary {
        n_entries: 0,
        top_dirs: BTreeMap::new(),
        subdirs_seen: [false; EXPECTED_SUBDIRS.len()],
    };
    for entry in archive.entries()? {
        let entry = entry?;
        let path = entry.path()?;
        // `tar -czf x.tar.gz ./ConPaaS` writes `./ConPaaS/...`; both unpack alike.
        let parts: Vec<String> = path
            .components()
            .filter_map(|component| match component {
                Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        summary.n_entries += 1;
        if let Some(top) = parts.first() {
            *summary.top_dirs.entry(top.clone()).or_default() += 1;
        }
        let path = parts.join("/");
        for (seen, dir) in summary.subdirs_seen.iter_mut().zip(EXPECTED_SUBDIRS) {
            *seen |= within(&path, dir);
        }
    }
    // Reading the entries stops at the tar end marker; read the rest so the gzip trailer's CRC
    // is checked too.
    io::copy(&mut archive.into_inner(), &mut io::sink())?;
    Ok(summary)
}

fn templates(loaded: &LoadedConfig) -> Vec<CheckResult> {
    let conf_dir = &loaded.config.conf_dir;
    let mut results = Vec::new();
    let missing: Vec<String> = REQUIRED_TEMPLATES
        .iter()
        .filter(|relative| !readable(&conf_dir.join(relative)))
        .map(|relative| conf_dir.join(relative).display().to_string())
        .collect();
    let what = "manager templates";
    if missing.is_empty() {
        results.push(CheckResult::ok(
            "files.templates",
            what,
            format!(
                "CONF_DIR {} holds the manager templates {}",
                conf_dir.display(),
                REQUIRED_TEMPLATES.join(", ")
            ),
        ));
    }
    for path in missing {
        results.push(CheckResult::error(
            "files.templates",
            what,
            format!(
                "the manager template {path} is missing or unreadable: every service start \
                 fails with \"cannot read manager template\""
            ),
            format!(
                "copy the ConPaaS 1.2 release's scripts/ and config/ trees into CONF_DIR {} \
                 (a dummy-cloud-only `director init` installs minimal ones)",
                conf_dir.display()
            ),
        ));
    }
    // One script per real driver type; the director supplies the dummy cloud's when absent.
    let mut drivers: BTreeMap<&'static str, Vec<&str>> = BTreeMap::new();
    for cloud in loaded.config.clouds() {
        if !matches!(cloud.driver, DriverSettings::Dummy) {
            drivers
                .entry(cloud.driver.name())
                .or_default()
                .push(&cloud.name);
        }
    }
    for (driver, clouds) in drivers {
        let path = conf_dir.join("scripts/cloud").join(driver);
        let what = "cloud part of the manager script";
        let clouds = clouds.join(", ");
        if driver == "ec2" {
            // The director renders its own IMDSv2 part in place of a missing or token-less one.
            let own = std::fs::read_to_string(&path).ok();
            let found = match own.as_deref() {
                None => format!(
                    "{} is absent: the managers of the ec2 cloud(s) {clouds} get the director's \
                     own cloud part (IMDSv2)",
                    path.display()
                ),
                Some(text) if crate::bootstrap::reads_metadata_without_token(text) => format!(
                    "{} reads the instance metadata without an IMDSv2 token (1.2's): the \
                     managers of the ec2 cloud(s) {clouds} get the director's own cloud part \
                     instead",
                    path.display()
                ),
                Some(_) => format!("{} exists for the ec2 cloud(s) {clouds}", path.display()),
            };
            results.push(CheckResult::ok("files.cloud-script", what, found));
            continue;
        }
        if readable(&path) {
            results.push(CheckResult::ok(
                "files.cloud-script",
                what,
                format!(
                    "{} exists for the {driver} cloud(s) {clouds}",
                    path.display()
                ),
            ));
        } else {
            results.push(CheckResult::warning(
                "files.cloud-script",
                what,
                format!(
                    "{} is missing or unreadable: the managers of the {driver} cloud(s) {clouds} \
                     get no cloud part at the top of their script (ConPaaS 1.2 logged this and \
                     went on)",
                    path.display()
                ),
                format!(
                    "copy scripts/cloud/{driver} from the ConPaaS 1.2 release into {}",
                    conf_dir.join("scripts/cloud").display()
                ),
            ));
        }
    }
    results
}

/// A regular file this process can open.
fn readable(path: &Path) -> bool {
    path.is_file() && File::open(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_count_within_their_directory_only() {
        assert!(within("ConPaaS/sbin/manager", "ConPaaS/sbin/manager"));
        assert!(within("ConPaaS/sbin/manager/x", "ConPaaS/sbin/manager"));
        assert!(!within("ConPaaS/sbin/managers", "ConPaaS/sbin/manager"));
        assert!(!within("ConPaaS/sbin", "ConPaaS/sbin/manager"));
    }

    #[test]
    fn a_dot_slash_tarball_has_the_same_top_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tar.gz");
        let gz = flate2::write::GzEncoder::new(
            File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut builder = tar::Builder::new(gz);
        for name in ["./ConPaaS/sbin/manager/run", "./ConPaaS/src/conpaas/x.py"] {
            let mut header = tar::Header::new_gnu();
            header.set_size(0);
            header.set_mode(0o644);
            builder.append_data(&mut header, name, io::empty()).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap();
        let summary = tar_summary(File::open(&path).unwrap()).unwrap();
        assert_eq!(summary.n_entries, 2);
        assert_eq!(summary.top_dirs.get(TOP_DIR), Some(&2));
        assert_eq!(summary.subdirs_seen, [true, true]);

        // Cut short: the gzip stream ends early, as a half-copied file would.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 12]).unwrap();
        assert!(tar_summary(File::open(&path).unwrap()).is_err());
    }
}
