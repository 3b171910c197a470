//! Files of `CERT_DIR`: private keys created 0600 from the start, never chmod-ed afterwards;
//! replacements written beside the target and renamed over it.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;

use super::Error;
use super::authority::IfExists;

/// Mode of private key files.
pub(crate) const KEY_MODE: u32 = 0o600;
/// Mode of certificate files (public).
pub(crate) const CERT_MODE: u32 = 0o644;
/// Mode of a `CERT_DIR` we create.
const DIR_MODE: u32 = 0o700;

/// The director's TLS material as read from `CERT_DIR`: its certificate and key (server and
/// client side) and the CA certificate its peers must chain to.
#[non_exhaustive]
pub struct DirectorTlsFiles {
    /// `cert.pem`.
    pub cert_pem: Vec<u8>,
    /// `key.pem`: a private key; never logged (Debug shows nothing of it).
    pub key_pem: Vec<u8>,
    /// `ca_cert.pem`.
    pub ca_cert_pem: Vec<u8>,
}

impl std::fmt::Debug for DirectorTlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectorTlsFiles").finish_non_exhaustive()
    }
}

impl DirectorTlsFiles {
    /// The three PEM texts, as held elsewhere than in a `CERT_DIR`.
    pub fn new(cert_pem: Vec<u8>, key_pem: Vec<u8>, ca_cert_pem: Vec<u8>) -> Self {
        DirectorTlsFiles {
            cert_pem,
            key_pem,
            ca_cert_pem,
        }
    }

    /// Reads the three files of `cert_dir`; an error names the file that failed.
    pub fn read(cert_dir: &Path) -> Result<Self, Error> {
        let read = |name: &str| {
            let path = cert_dir.join(name);
            fs::read(&path).map_err(|source| Error::Read { path, source })
        };
        Ok(DirectorTlsFiles {
            cert_pem: read(super::CERT_FILE)?,
            key_pem: read(super::KEY_FILE)?,
            ca_cert_pem: read(super::CA_CERT_FILE)?,
        })
    }
}

/// Creates `CERT_DIR` (and parents) if missing; an existing directory keeps its mode.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), Error> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|source| Error::Write {
            path: dir.to_owned(),
            source,
        })
}

/// Writes `contents` to `path` with `mode`. [`IfExists::Fail`] creates the file exclusively,
/// so two directors racing cannot both win; [`IfExists::Replace`] writes a temporary file
/// with the final mode and renames it over the target, so a reader never sees half a key
/// and an old, wider mode of the target is not inherited.
pub(crate) fn write(
    path: &Path,
    contents: &[u8],
    mode: u32,
    if_exists: IfExists,
) -> Result<(), Error> {
    let write_error = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    match if_exists {
        IfExists::Fail => match write_new(path, contents, mode) {
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Err(Error::AlreadyExists {
                path: path.to_owned(),
            }),
            other => other.map_err(write_error),
        },
        IfExists::Replace => {
            let temp = temp_path(path)?;
            write_new(&temp, contents, mode)
                .and_then(|()| fs::rename(&temp, path))
                .inspect_err(|_| {
                    // Best effort: the error that matters is the one returned.
                    let _ = fs::remove_file(&temp);
                })
                .map_err(write_error)
        }
    }
}

/// Creates `path` (which must not exist) with `mode`, writes and syncs it; removes it again
/// if writing fails so no truncated key is left behind.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .inspect_err(|_| {
            let _ = fs::remove_file(path);
        })
}

/// `.name.tmp-<random>` beside `path`, so the rename stays on one file system.
fn temp_path(path: &Path) -> Result<PathBuf, Error> {
    let mut random = [0u8; 8];
    rand::rngs::OsRng
        .try_fill_bytes(&mut random)
        .map_err(Error::random)?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy())
        .unwrap_or_default();
    Ok(path.with_file_name(format!(".{name}.tmp-{}", hex::encode(random))))
}

/// Reads a text file.
pub(crate) fn read(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads a private key file, refusing one that group or others can read.
pub(crate) fn read_private(path: &Path) -> Result<String, Error> {
    check_private_mode(path)?;
    read(path)
}

/// Refuses a private key file that group or others can read ([`Error::KeyPermissions`]).
pub(crate) fn check_private_mode(path: &Path) -> Result<(), Error> {
    let metadata = fs::metadata(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::KeyPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Whether `path` exists (a dangling symlink or an unreadable parent counts as existing, so
/// that we refuse rather than clobber).
pub(crate) fn exists(path: &Path) -> bool {
    !matches!(fs::symlink_metadata(path), Err(err) if err.kind() == io::ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn fail_creates_with_mode_and_refuses_existing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write(&path, b"one", KEY_MODE, IfExists::Fail).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let err = write(&path, b"two", KEY_MODE, IfExists::Fail).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
        assert_eq!(fs::read(&path).unwrap(), b"one");
    }

    #[test]
    fn replace_does_not_inherit_a_wider_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write(&path, b"old", 0o644, IfExists::Fail).unwrap();
        // Explicitly, whatever the umask.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write(&path, b"new", KEY_MODE, IfExists::Replace).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(fs::read(&path).unwrap(), b"new");
        // No temporary file left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn readable_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write(&path, b"secret", KEY_MODE, IfExists::Fail).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_private(&path).unwrap_err();
        assert!(
            matches!(err, Error::KeyPermissions { mode: 0o640, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_private(&path).unwrap(), "secret");
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.pem");
        assert!(!exists(&path));
        assert!(matches!(read_private(&path), Err(Error::Read { .. })));
    }
}
