//! The config layer's error and warnings: every message names the file, line, section and key.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in director.cfg a problem or warning is: `FILE[:LINE]: [[section]] [KEY]`.
///
/// `line` is the key's line, or the section header's line for a missing key;
/// it is `None` when the section itself is missing (or for the whole file).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Location {
    /// The file, as given (not just its name).
    pub file: PathBuf,
    /// The 1-based line number.
    pub line: Option<usize>,
    /// The section, as written in its header.
    pub section: Option<String>,
    /// The key, upper-cased.
    pub key: Option<String>,
}

impl Location {
    pub(crate) fn new(
        file: &Path,
        line: Option<usize>,
        section: Option<&str>,
        key: Option<&str>,
    ) -> Location {
        Location {
            file: file.to_path_buf(),
            line,
            section: section.map(str::to_owned),
            key: key.map(|key| key.to_ascii_uppercase()),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(":")?;
        if let Some(section) = &self.section {
            write!(f, " [{section}]")?;
        }
        if let Some(key) = &self.key {
            write!(f, " {key}")?;
        }
        if self.section.is_some() || self.key.is_some() {
            f.write_str(":")?;
        }
        Ok(())
    }
}

/// One thing wrong in director.cfg. Displays as `FILE:LINE: [section] KEY: message`.
#[derive(Debug)]
#[non_exhaustive]
pub struct Problem {
    /// Where.
    pub location: Location,
    /// What.
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.location, self.kind)
    }
}

/// What is wrong with a line or a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The file is not UTF-8 text (reported at the first bad line).
    #[error("expected UTF-8 text")]
    NotUtf8,
    /// An option or continuation comes before the first `[section]` header.
    #[error("expected a [section] header before the first option, got {line:?}")]
    NoSectionHeader {
        /// The offending line.
        line: String,
    },
    /// A line is neither a header, an option, a comment nor a continuation.
    #[error(
        "expected a [section] header, a KEY = value option, a comment or an indented continuation, got {line:?}"
    )]
    Syntax {
        /// The offending line.
        line: String,
    },
    /// A required key (or its whole section) is absent.
    #[error("expected {expected}, the key is missing{}", if *.section_missing { " (there is no such section)" } else { "" })]
    Missing {
        /// What the key should hold.
        expected: String,
        /// The section is missing too.
        section_missing: bool,
    },
    /// A value does not have the expected form.
    #[error("expected {expected}, got {got:?}")]
    Invalid {
        /// What the key should hold.
        expected: String,
        /// The value found (passwords are never echoed).
        got: String,
    },
    /// The VPN keys parse but do not make a usable plan.
    #[error(transparent)]
    VpnPlan {
        /// The planner's verdict.
        source: crate::vpn::Error,
    },
}

/// Something in director.cfg that works but is probably not what the operator meant.
///
/// Displays like a [`Problem`]; the binaries log these at `warn`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Warning {
    /// Where.
    pub location: Location,
    /// What.
    pub kind: WarningKind,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.location, self.kind)
    }
}

/// What a [`Warning`] is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WarningKind {
    /// A section the director does not read.
    #[error("unknown section, ignored")]
    UnknownSection,
    /// A section with a `DRIVER` that `[iaas] OTHER_CLOUDS` does not list.
    #[error("this cloud section is not listed in [iaas] OTHER_CLOUDS, ignored")]
    UnlistedCloud,
    /// A key of `[conpaas]` or `[director]` the director does not read.
    #[error("unknown key, ignored")]
    UnknownKey,
    /// A key of a cloud section that its driver does not read. It is still
    /// copied into every manager's configuration, as 1.2 did.
    #[error("not used by the {driver} driver, only copied to the managers")]
    UnusedCloudKey {
        /// The section's driver.
        driver: &'static str,
    },
    /// A key repeated in one section: the last value wins, as in 1.2.
    #[error("repeated key: this value replaces the one on line {first_line}")]
    RepeatedKey {
        /// The line of the earlier value.
        first_line: usize,
    },
    /// An indented line after an option continues its value, even when it looks like a comment.
    #[error(
        "this indented line continues the value of {key}; an indented # or ; does not start a comment"
    )]
    IndentedComment {
        /// The key whose value grows.
        key: String,
    },
    /// `DEBUG` has a false value: 1.2 turned debug mode on whenever the key existed.
    #[error("debug mode is off for {value:?}; ConPaaS 1.2 turned it on whatever the value")]
    DebugPresence {
        /// The value found.
        value: String,
    },
    /// An `OTHER_CLOUDS` entry had spaces around it, which made 1.2 ignore it.
    #[error(
        "cloud {name:?} had spaces around it, which made ConPaaS 1.2 ignore it; it is now a cloud"
    )]
    TrimmedCloudName {
        /// The name, trimmed.
        name: String,
    },
    /// A cloud listed twice in `OTHER_CLOUDS`.
    #[error("cloud {name:?} is listed twice; it is used once")]
    RepeatedCloud {
        /// The name.
        name: String,
    },
    /// `VPN_LEGACY_SUBNETS` or `VPN_BOOTSTRAP_NODES` without the `VPN_*` keys.
    #[error("has no effect without VPN_BASE_NETWORK, VPN_NETMASK and VPN_SERVICE_BITS")]
    VpnSwitchWithoutVpn,
    /// An EC2 region that 1.2 managers do not know.
    #[error(
        "{region:?} is not one of the three regions ConPaaS 1.2 knew: the director can use it, but 1.2 managers cannot start agents there"
    )]
    RegionUnknownTo12 {
        /// `REGION`.
        region: String,
    },
    /// A URL with a path where only scheme, host and port are used.
    #[error("the path {path:?} is ignored: only scheme, host and port are used, as in 1.2")]
    IgnoredUrlPath {
        /// The ignored path.
        path: String,
    },
    /// A relative path: it depends on the directory the director is started from.
    #[error("relative path {path:?} is resolved against the working directory")]
    RelativePath {
        /// The path.
        path: String,
    },
}

/// Errors of the config layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file named with `--config` or `DIRECTOR_CFG` does not
    /// exist (1.2 silently ignored a missing file and failed later).
    #[error("{}: no such configuration file", path.display())]
    FileNotFound {
        /// The path, as given.
        path: PathBuf,
    },
    /// Reading, writing or creating a file or directory failed.
    #[error("{}: cannot {action}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done, e.g. `read the configuration`.
        action: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The data directory's path cannot be written into director.cfg and read back as the same path.
    #[error("{}: cannot use this data directory: {reason}", path.display())]
    UnusableDataDir {
        /// The data directory.
        path: PathBuf,
        /// Why, e.g. "the path contains %(".
        reason: &'static str,
    },
    /// A host name given to [`set_director_url`](super::set_director_url) that
    /// cannot be the host of `DIRECTOR_URL`.
    #[error("expected a host name or IP address for DIRECTOR_URL, got {host:?}")]
    InvalidHost {
        /// The host given.
        host: String,
    },
    /// A string that is not an `https://HOST[:PORT]` director URL.
    #[error("expected {}, got {got:?}", super::values::EXPECTED_DIRECTOR_URL)]
    InvalidDirectorUrl {
        /// The text given.
        got: String,
    },
    /// director.cfg is wrong: every problem found, one per line, in file order.
    #[error("{}", DisplayLines(.0))]
    Invalid(Vec<Problem>),
}

/// Displays problems one per line.
struct DisplayLines<'a>(&'a [Problem]);

impl fmt::Display for DisplayLines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl Error {
    /// The problems of an [`Error::Invalid`]; empty for the other variants.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Error::Invalid(problems) => problems,
            _ => &[],
        }
    }
}
