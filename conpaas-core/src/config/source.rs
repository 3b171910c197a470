//! Where director.cfg comes from (`--config`, `--data-dir`, `DIRECTOR_CFG`, /etc, the embedded
//! default) and loading it, generating the default data directory on first use.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::error::Error;
use super::{
    CONFIG_ENV_VAR, CONFIG_FILE_NAME, DEFAULT_DATA_DIR, DEFAULT_DIRECTOR_URL, LoadedConfig,
    SYSTEM_CONFIG_FILE, parse_bytes,
};

/// Where the configuration comes from, decided once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigSource {
    /// A director.cfg that must exist.
    File {
        /// The file, as given.
        path: PathBuf,
        /// Who named it.
        origin: FileOrigin,
    },
    /// A data directory: created (0700) with a generated director.cfg when missing.
    DataDir {
        /// The directory, as given.
        dir: PathBuf,
        /// Who named it.
        origin: DataDirOrigin,
    },
}

/// Who named a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileOrigin {
    /// `--config FILE`.
    CommandLine,
    /// The `DIRECTOR_CFG` environment variable.
    Environment,
    /// [`SYSTEM_CONFIG_FILE`], which exists.
    System,
}

/// Who named a data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataDirOrigin {
    /// `--data-dir DIR`.
    CommandLine,
    /// Nothing was given: [`DEFAULT_DATA_DIR`] in the working directory.
    Embedded,
}

impl ConfigSource {
    /// Picks the source, first match wins: `--config FILE`, `--data-dir DIR`,
    /// `DIRECTOR_CFG` (when non-empty), [`SYSTEM_CONFIG_FILE`] when it exists,
    /// else the embedded default data directory `./conpaas-data`.
    ///
    /// Reads the environment: for binaries. Tests use [`ConfigSource::resolve_with`].
    pub fn resolve(cli_config: Option<PathBuf>, cli_data_dir: Option<PathBuf>) -> ConfigSource {
        ConfigSource::resolve_with(
            cli_config,
            cli_data_dir,
            std::env::var_os(CONFIG_ENV_VAR),
            Path::new(SYSTEM_CONFIG_FILE),
        )
    }

    /// [`ConfigSource::resolve`] with the value of `DIRECTOR_CFG` and the
    /// system file's path given (only its existence is checked).
    pub fn resolve_with(
        cli_config: Option<PathBuf>,
        cli_data_dir: Option<PathBuf>,
        env_config: Option<OsString>,
        system_config: &Path,
    ) -> ConfigSource {
        if let Some(path) = cli_config {
            return ConfigSource::File {
                path,
                origin: FileOrigin::CommandLine,
            };
        }
        if let Some(dir) = cli_data_dir {
            return ConfigSource::DataDir {
                dir,
                origin: DataDirOrigin::CommandLine,
            };
        }
        if let Some(path) = env_config.filter(|value| !value.is_empty()) {
            return ConfigSource::File {
                path: PathBuf::from(path),
                origin: FileOrigin::Environment,
            };
        }
        if system_config.is_file() {
            return ConfigSource::File {
                path: system_config.to_path_buf(),
                origin: FileOrigin::System,
            };
        }
        ConfigSource::DataDir {
            dir: Path::new(".").join(DEFAULT_DATA_DIR),
            origin: DataDirOrigin::Embedded,
        }
    }

    /// The director.cfg this source reads.
    pub fn config_path(&self) -> PathBuf {
        match self {
            ConfigSource::File { path, .. } => path.clone(),
            ConfigSource::DataDir { dir, .. } => dir.join(CONFIG_FILE_NAME),
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File { path, origin } => match origin {
                FileOrigin::CommandLine => write!(f, "--config {}", path.display()),
                FileOrigin::Environment => write!(f, "{CONFIG_ENV_VAR}={}", path.display()),
                FileOrigin::System => write!(f, "{}", path.display()),
            },
            ConfigSource::DataDir { dir, origin } => match origin {
                DataDirOrigin::CommandLine => write!(f, "--data-dir {}", dir.display()),
                DataDirOrigin::Embedded => {
                    write!(f, "the default data directory {}", dir.display())
                }
            },
        }
    }
}

/// Reads and checks the configuration of `source`. A data directory is
/// created (0700) and given a generated director.cfg (0600) when missing;
/// an explicit file that does not exist is an error, never ignored as in 1.2.
pub fn load(source: &ConfigSource) -> Result<LoadedConfig, Error> {
    match source {
        ConfigSource::File { path, .. } => read_and_parse(path, false),
        ConfigSource::DataDir { dir, .. } => {
            let dir = std::path::absolute(dir).map_err(|source| Error::Io {
                path: dir.clone(),
                action: "find the data directory",
                source,
            })?;
            let generated = prepare_data_dir(&dir)?;
            read_and_parse(&dir.join(CONFIG_FILE_NAME), generated)
        }
    }
}

fn read_and_parse(path: &Path, generated: bool) -> Result<LoadedConfig, Error> {
    let bytes = fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => Error::FileNotFound {
            path: path.to_path_buf(),
        },
        _ => Error::Io {
            path: path.to_path_buf(),
            action: "read the configuration",
            source,
        },
    })?;
    let mut loaded = parse_bytes(path, &bytes)?;
    loaded.generated = generated;
    Ok(loaded)
}

/// Creates the data directory and its director.cfg when missing; true when the file was written.
fn prepare_data_dir(dir: &Path) -> Result<bool, Error> {
    // Only a directory that is not there is created: one that cannot be looked into is
    // reported as such, not as something that could not be created.
    match fs::metadata(dir) {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            // Owned as the directory it is made in (root making `/var/lib/x/data` of a
            // directory the director's user owns leaves it to that user).
            crate::data_files::create_dir_all(dir, 0o700).map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                action: "create the data directory",
                source,
            })?;
        }
        Err(source) => {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                action: "read the data directory",
                source,
            });
        }
    }
    let path = dir.join(CONFIG_FILE_NAME);
    match fs::symlink_metadata(&path) {
        Ok(_) => return Ok(false),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        // Unsearchable directory, or not a directory at all: the file exists or not, it
        // cannot be read.
        Err(source) => {
            return Err(Error::Io {
                path,
                action: "read the configuration",
                source,
            });
        }
    }
    let text = default_config_text(dir)?;
    // create_new: two directors starting at once must not overwrite each other's file. It
    // belongs to the data directory's owner, as the rest of the directory will.
    let file = crate::data_files::create_file(&path, crate::data_files::Mode::Private);
    let mut file = match file {
        Ok(file) => file,
        Err(source) if source.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(source) => {
            return Err(Error::Io {
                path,
                action: "create the configuration",
                source,
            });
        }
    };
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| Error::Io {
            path,
            action: "write the configuration",
            source,
        })?;
    Ok(true)
}

/// The director.cfg generated for a new data directory `data_dir` (absolute):
/// the CA under `certs/`, the dummy cloud, SQLite in the directory, and
/// `DIRECTOR_URL = https://localhost:5555`.
pub fn default_config_text(data_dir: &Path) -> Result<String, Error> {
    let unusable = |reason| Error::UnusableDataDir {
        path: data_dir.to_path_buf(),
        reason,
    };
    let Some(dir) = data_dir.to_str() else {
        return Err(unusable("the path is not UTF-8"));
    };
    // The path goes into values that the reader must give back unchanged.
    if dir.contains(['\n', '\r']) {
        return Err(unusable("the path contains a line break"));
    }
    if dir.contains("%(") {
        return Err(unusable(
            "the path contains %(, which director.cfg would expand",
        ));
    }
    if dir.contains(" ;") || dir.contains("\t;") {
        return Err(unusable(
            "the path contains a ; after a space, which director.cfg reads as a comment",
        ));
    }
    if dir.trim() != dir {
        return Err(unusable("the path starts or ends with whitespace"));
    }
    if !data_dir.is_absolute() {
        return Err(unusable("the path is not absolute"));
    }
    let cert_dir = data_dir.join("certs");
    let cert_dir = cert_dir.display();
    let database = data_dir.join("director.db");
    let database = database.display();
    Ok(format!(
        "\
# director.cfg generated for the data directory {dir}.
# Every key is described in docs/config.md; edit freely, the file is not rewritten
# (except DIRECTOR_URL by `director init`).

[conpaas]
# Holds scripts/, config/ and ConPaaS.tar.gz, which the manager VMs download.
CONF_DIR = {dir}
# The certificate authority and the director's key and certificate.
CERT_DIR = {cert_dir}

[iaas]
# The dummy cloud starts no VMs. For real managers set DRIVER = ec2 or
# opennebula and that driver's keys.
DRIVER = dummy

[director]
# SQLite in the data directory. For several directors sharing one database:
# DATABASE_URI = postgresql://USER:PASSWORD@HOST/DATABASE
DATABASE_URI = sqlite:///{database}
# The director's URL as the VMs reach it; its host must be the CN of certs/cert.pem.
DIRECTOR_URL = {DEFAULT_DIRECTOR_URL}
"
    ))
}
