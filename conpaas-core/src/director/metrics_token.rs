//! The bearer token a scraper presents to read `/metrics` from another host, without the
//! director's own certificate and key (`[director] METRICS_TOKEN_FILE`, by default
//! `CERT_DIR/metrics_token`, which `director init` creates).

use std::io;
use std::path::PathBuf;

use secrecy::SecretString;

use super::Error;
use crate::ca::IfExists;
use crate::config::DirectorConfig;

/// The token file's name in `CERT_DIR`, used when `METRICS_TOKEN_FILE` is not set.
pub const METRICS_TOKEN_FILE: &str = "metrics_token";

/// The token file this configuration names: `METRICS_TOKEN_FILE`, else
/// `CERT_DIR/metrics_token`.
pub fn path(config: &DirectorConfig) -> PathBuf {
    config
        .metrics_token_file
        .clone()
        .unwrap_or_else(|| config.ca.cert_dir.join(METRICS_TOKEN_FILE))
}

/// The token of `config`: the file's first line. `METRICS_TOKEN_FILE` set must be readable and
/// not empty; the default file may be absent (then no token is accepted).
pub fn read(config: &DirectorConfig) -> Result<Option<SecretString>, Error> {
    let path = path(config);
    let error = |source| Error::MetricsToken {
        path: path.clone(),
        source,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(source)
            if source.kind() == io::ErrorKind::NotFound && config.metrics_token_file.is_none() =>
        {
            return Ok(None);
        }
        Err(source) => return Err(error(source)),
    };
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        return Err(error(io::Error::new(
            io::ErrorKind::InvalidData,
            "the file is empty",
        )));
    }
    Ok(Some(SecretString::from(token)))
}

/// Creates `CERT_DIR/metrics_token` (0600, 256 random bits in hex) unless it exists; answers
/// whether it did.
pub fn create(config: &DirectorConfig) -> Result<bool, Error> {
    let path = config.ca.cert_dir.join(METRICS_TOKEN_FILE);
    if path.exists() {
        return Ok(false);
    }
    let token: [u8; 32] = rand::random();
    let text = format!("{}\n", hex_lower(&token));
    match crate::ca::write_private_file(&path, text.as_bytes(), IfExists::Fail) {
        Ok(()) => Ok(true),
        // Another `init` made it meanwhile: theirs stands.
        Err(crate::ca::Error::AlreadyExists { .. }) => Ok(false),
        Err(other) => Err(other.into()),
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use secrecy::ExposeSecret as _;

    use super::*;
    use crate::config::{self, ConfigSource};

    fn config(dir: &Path, extra: &str) -> DirectorConfig {
        let path = dir.join("director.cfg");
        let text = format!(
            "[conpaas]\nCONF_DIR = {d}\nCERT_DIR = {d}/certs\n[iaas]\nDRIVER = dummy\n\
             [director]\nDATABASE_URI = sqlite:///{d}/director.db\n{extra}",
            d = dir.display()
        );
        std::fs::write(&path, text).unwrap();
        let source = ConfigSource::resolve_with(Some(path), None, None, Path::new("/nonexistent"));
        config::load(&source).unwrap().config
    }

    #[test]
    fn the_default_file_is_optional_a_named_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("certs")).unwrap();
        let default = config(dir.path(), "");
        assert!(read(&default).unwrap().is_none());
        assert!(create(&default).unwrap());
        assert!(!create(&default).unwrap(), "an existing token stands");
        let token = read(&default).unwrap().unwrap();
        assert_eq!(token.expose_secret().len(), 64);

        let named = dir.path().join("scrape.token");
        let explicit = config(
            dir.path(),
            &format!("METRICS_TOKEN_FILE = {}\n", named.display()),
        );
        let missing = read(&explicit).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("scrape.token (METRICS_TOKEN_FILE)"),
            "{missing}"
        );
        std::fs::write(&named, "\n").unwrap();
        assert!(read(&explicit).is_err(), "an empty file is no token");
        std::fs::write(&named, "  s3cret-token \nsecond line\n").unwrap();
        assert_eq!(
            read(&explicit).unwrap().unwrap().expose_secret(),
            "s3cret-token"
        );
    }
}
