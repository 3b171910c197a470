//! Files of `CERT_DIR`: private keys created 0600 from the start, never chmod-ed afterwards;
//! replacements written beside the target and renamed over it, owned as the files they replace.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::Error;
use super::authority::IfExists;
use crate::data_files;

/// Mode of private key files: 0600, whatever a replaced key had.
pub(crate) const KEY_MODE: data_files::Mode = data_files::Mode::Private;
/// Mode of certificate files (public): 0644 when new, else the replaced file's.
pub(crate) const CERT_MODE: data_files::Mode = data_files::Mode::KeptOr(0o644);
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

/// Creates `CERT_DIR` (and parents) if missing, owned as the directory it is made in; an
/// existing directory keeps its mode and owner.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), Error> {
    data_files::create_dir_all(dir, DIR_MODE).map_err(|source| Error::Write {
        path: dir.to_owned(),
        source,
    })
}

/// Writes `contents` to `path` with `mode` ([`KEY_MODE`] or [`CERT_MODE`]).
/// [`IfExists::Fail`] creates the file exclusively, so two directors racing cannot both win;
/// [`IfExists::Replace`] writes a temporary file and renames it over the target, so a reader
/// never sees half a key. A new file belongs to the owner of `CERT_DIR`; a
/// replaced one keeps its owner, group and (a certificate's) mode, so that root renewing the
/// director's certificate (`director init --keep-ca`) leaves it to the director's user.
pub(crate) fn write(
    path: &Path,
    contents: &[u8],
    mode: data_files::Mode,
    if_exists: IfExists,
) -> Result<(), Error> {
    let written = match if_exists {
        IfExists::Fail => data_files::create_new(path, contents, mode),
        IfExists::Replace => data_files::replace(path, contents, mode),
    };
    written.map_err(|source| match source.kind() {
        io::ErrorKind::AlreadyExists if if_exists == IfExists::Fail => Error::AlreadyExists {
            path: path.to_owned(),
        },
        _ => Error::Write {
            path: path.to_owned(),
            source,
        },
    })
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
        write(&path, b"old", CERT_MODE, IfExists::Fail).unwrap();
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
