//! `~/.conpaas`, laid out as the 1.2 client keeps it so that both clients share it: the files
//! `target` (the director's URL), `username`, `password` (plain text, as 1.2 wrote it), and
//! the three members of `/getcerts`' archive, `cert.pem`, `key.pem`, `ca_cert.pem`.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};

use super::{Certificates, Error};
use crate::ca::CertInfo;

/// The members of `/getcerts`' archive, written under these names.
pub const CERT_FILES: [&str; 3] = ["cert.pem", "key.pem", "ca_cert.pem"];

/// The client's configuration directory (`~/.conpaas`, or `$CONPAAS_DIR`).
#[derive(Debug, Clone)]
pub struct ConfDir {
    path: PathBuf,
}

/// What `target`, `username` and `password` hold.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Credentials {
    /// The director's URL, `https://host:5555`, without a trailing `/`.
    pub target: String,
    /// The user name.
    pub username: String,
    /// The password (1.2 sends it with every call).
    pub password: SecretString,
}

/// The user's certificate and key, and the CA certificate, as PEM: read from a
/// [`ConfDir`] ([`ConfDir::identity`]) or from memory ([`Identity::from_pem`]).
#[derive(Clone)]
#[non_exhaustive]
pub struct Identity {
    /// `cert.pem`.
    pub cert_pem: Vec<u8>,
    /// `key.pem`.
    pub key_pem: SecretString,
    /// `ca_cert.pem`.
    pub ca_pem: Vec<u8>,
    /// The user's `UID`, read from `cert.pem`.
    pub uid: String,
    /// When `cert.pem` expires.
    pub not_after: DateTime<Utc>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("uid", &self.uid)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The director at `target` (`https://host:5555`; a trailing `/` is dropped) for
    /// `username` with `password`.
    pub fn new(
        target: impl Into<String>,
        username: impl Into<String>,
        password: SecretString,
    ) -> Self {
        Credentials {
            target: target.into().trim().trim_end_matches('/').to_owned(),
            username: username.into(),
            password,
        }
    }
}

impl Identity {
    /// The identity of `cert_pem` (its `UID` and end of validity read from it), with its
    /// private key and the CA certificate.
    ///
    /// # Errors
    ///
    /// [`Error::Certificate`] when `cert_pem` is not a certificate.
    pub fn from_pem(
        cert_pem: Vec<u8>,
        key_pem: SecretString,
        ca_pem: Vec<u8>,
    ) -> Result<Self, Error> {
        Identity::read(cert_pem, key_pem, ca_pem, Path::new(CERT_FILES[0]))
    }

    /// [`Identity::from_pem`], an error naming `cert_path`.
    fn read(
        cert_pem: Vec<u8>,
        key_pem: SecretString,
        ca_pem: Vec<u8>,
        cert_path: &Path,
    ) -> Result<Self, Error> {
        let info = CertInfo::parse(&cert_pem).map_err(|source| Error::Certificate {
            path: cert_path.to_owned(),
            source,
        })?;
        Ok(Identity {
            cert_pem,
            key_pem,
            ca_pem,
            uid: info.identity.uid.unwrap_or_default(),
            not_after: info.not_after,
        })
    }
}

impl ConfDir {
    /// The directory at `path` (not created until something is written).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ConfDir { path: path.into() }
    }

    /// `$CONPAAS_DIR`, else `$HOME/.conpaas` (1.2's place); `None` without either.
    pub fn from_env() -> Option<Self> {
        if let Some(dir) = std::env::var_os("CONPAAS_DIR").filter(|dir| !dir.is_empty()) {
            return Some(ConfDir::new(dir));
        }
        let home = std::env::var_os("HOME").filter(|home| !home.is_empty())?;
        Some(ConfDir::new(Path::new(&home).join(".conpaas")))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The text of `name`, `None` when the file does not exist.
    pub fn read(&self, name: &str) -> Result<Option<String>, Error> {
        match fs::read_to_string(self.file(name)) {
            Ok(text) => Ok(Some(text)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::File {
                path: self.file(name),
                action: "read",
                source,
            }),
        }
    }

    /// Writes `name` (mode 0600, replacing it atomically), creating the directory (0700).
    /// 1.2 wrote these files without a trailing newline, and reads them whole: so do we.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        let io = |action: &'static str, path: PathBuf| {
            move |source: std::io::Error| Error::File {
                path,
                action,
                source,
            }
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .map_err(io("create", self.path.clone()))?;
        let tmp = self.file(&format!(".{name}.tmp"));
        let _ = fs::remove_file(&tmp);
        // Created 0600 rather than chmod-ed afterwards: the key is never readable by others.
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create", tmp.clone()))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(io("write", tmp.clone()))?;
        fs::rename(&tmp, self.file(name)).map_err(io("replace", self.file(name)))
    }

    /// `target`, `username` and `password`; [`Error::NoCredentials`] when `target` is missing.
    pub fn credentials(&self) -> Result<Credentials, Error> {
        let Some(target) = self.read("target")? else {
            return Err(Error::NoCredentials(self.path.clone()));
        };
        Ok(Credentials::new(
            target,
            self.read("username")?.unwrap_or_default(),
            self.read("password")?.unwrap_or_default().into(),
        ))
    }

    /// Stores the three files of [`Credentials`].
    pub fn store_credentials(&self, credentials: &Credentials) -> Result<(), Error> {
        self.write("target", credentials.target.as_bytes())?;
        self.write("username", credentials.username.as_bytes())?;
        self.write("password", credentials.password.expose_secret().as_bytes())
    }

    /// The CA certificate alone (`ca_cert.pem`), when present.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.read("ca_cert.pem")?.map(String::into_bytes))
    }

    /// The certificates; [`Error::NoCredentials`] when one is missing,
    /// [`Error::CertificateExpired`] when `cert.pem` has expired (the director would refuse it
    /// at the handshake with a less helpful message).
    pub fn identity(&self) -> Result<Identity, Error> {
        let mut pems = Vec::new();
        for name in CERT_FILES {
            match self.read(name)? {
                Some(pem) => pems.push(pem),
                None => return Err(Error::NoCredentials(self.path.clone())),
            }
        }
        let [cert, key, ca] =
            <[String; 3]>::try_from(pems).map_err(|_| Error::NoCredentials(self.path.clone()))?;
        let identity = Identity::read(
            cert.into_bytes(),
            key.into(),
            ca.into_bytes(),
            &self.file("cert.pem"),
        )?;
        if identity.not_after < Utc::now() {
            return Err(Error::CertificateExpired {
                path: self.file("cert.pem"),
                not_after: identity.not_after,
            });
        }
        Ok(identity)
    }

    /// Extracts `/getcerts`' archive: its three members, each 0600. Anything else in the
    /// archive is ignored, and a member name is never used as a path.
    pub fn store_certificates(&self, zip_bytes: &[u8]) -> Result<(), Error> {
        self.write_certificates(&Certificates::from_zip(zip_bytes)?)
    }

    /// Writes `cert.pem`, `key.pem` and `ca_cert.pem`, each 0600.
    ///
    /// # Errors
    ///
    /// [`Error::File`] naming the file that could not be written.
    pub fn write_certificates(&self, certificates: &Certificates) -> Result<(), Error> {
        self.write("cert.pem", &certificates.cert_pem)?;
        self.write("key.pem", certificates.key_pem.expose_secret().as_bytes())?;
        self.write("ca_cert.pem", &certificates.ca_cert_pem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn files_are_private_and_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let conf = ConfDir::new(dir.path().join("conpaas"));
        assert!(matches!(conf.credentials(), Err(Error::NoCredentials(_))));
        conf.store_credentials(&Credentials {
            target: "https://d:5555".into(),
            username: "alice".into(),
            password: "s3cret".to_owned().into(),
        })
        .unwrap();
        let mode = |path: PathBuf| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(conf.path().to_owned()), 0o700);
        assert_eq!(mode(conf.file("password")), 0o600);
        assert_eq!(
            fs::read_to_string(conf.file("target")).unwrap(),
            "https://d:5555"
        );
        let read = conf.credentials().unwrap();
        assert_eq!(
            (read.target.as_str(), read.username.as_str()),
            ("https://d:5555", "alice")
        );
        assert_eq!(read.password.expose_secret(), "s3cret");
        assert!(matches!(conf.identity(), Err(Error::NoCredentials(_))));
        assert!(conf.store_certificates(b"not a zip").is_err());
    }
}
