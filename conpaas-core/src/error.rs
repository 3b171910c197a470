//! The crate-wide error wrapping each layer's error, for embedders and binaries, and
//! [`ErrorChain`], which shows an error with its causes.

/// Shows an error with its causes on one line (defined in [`model`](crate::model), which every
/// layer may use).
pub use crate::model::ErrorChain;

/// Any error of a conpaas-core layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or validating director.cfg failed.
    #[cfg(feature = "config")]
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    /// The database failed.
    #[cfg(feature = "store")]
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// The certificate authority failed.
    #[cfg(feature = "ca")]
    #[error(transparent)]
    Ca(#[from] crate::ca::Error),
    /// VPN planning failed.
    #[error(transparent)]
    Vpn(#[from] crate::vpn::Error),
    /// A use-case failed.
    #[cfg(feature = "director")]
    #[error(transparent)]
    Director(#[from] crate::director::Error),
    /// A cloud call failed (a driver's own, or an embedder's cloud).
    #[error(transparent)]
    Cloud(#[from] crate::cloud::Error),
    /// A cloud registry could not be built.
    #[cfg(feature = "director")]
    #[error(transparent)]
    CloudRegistry(#[from] crate::cloud::RegistryError),
    /// The manager templates are missing or unusable.
    #[cfg(feature = "director")]
    #[error(transparent)]
    Bootstrap(#[from] crate::bootstrap::Error),
    /// A call of the client layer (the director's or a manager's routes, as a user) failed.
    #[cfg(feature = "client")]
    #[error(transparent)]
    Client(#[from] crate::client::Error),
    /// A call to a manager failed.
    #[cfg(feature = "manager-client")]
    #[error(transparent)]
    ManagerClient(#[from] crate::manager_client::Error),
    /// The checks could not run.
    #[cfg(feature = "check")]
    #[error(transparent)]
    Check(#[from] crate::check::Error),
    /// The TLS configuration could not be built.
    #[cfg(feature = "api")]
    #[error(transparent)]
    Tls(#[from] crate::api::tls::TlsError),
    /// A [`DirectorServer`](crate::api::server::DirectorServer) could not be set up, bound or
    /// reloaded.
    #[cfg(feature = "server")]
    #[error(transparent)]
    Serve(#[from] crate::api::server::ServeError),
}

#[cfg(test)]
mod tests {
    use std::error::Error as StdError;
    use std::io;
    use std::path::PathBuf;

    use super::ErrorChain;

    /// Walks `error`'s chain and fails when a message contains the next one (issue 11: "Is a
    /// directory (os error 21): Is a directory (os error 21)"); answers the chain's length.
    fn assert_each_cause_once(error: &(dyn StdError + 'static)) -> usize {
        let mut length = 1;
        let mut current = error;
        while let Some(cause) = current.source() {
            let (message, cause_message) = (current.to_string(), cause.to_string());
            assert!(
                !message.contains(&cause_message),
                "{current:?} says its cause {cause_message:?} in its own message {message:?}"
            );
            current = cause;
            length += 1;
        }
        length
    }

    fn os_error(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    fn path() -> PathBuf {
        PathBuf::from("/srv/conpaas/some-file")
    }

    /// One value of each variant that has a cause, from every layer (wrapped as the binaries
    /// meet them, too), each with a chain longer than one.
    fn errors_with_causes() -> Vec<Box<dyn StdError + 'static>> {
        let mut errors: Vec<Box<dyn StdError + 'static>> = Vec::new();
        // Reached for real: a directory given as director.cfg, a CA directory without a CA.
        #[cfg(feature = "config")]
        {
            let temp = tempfile::tempdir().unwrap();
            let source = crate::config::ConfigSource::resolve_with(
                Some(temp.path().to_path_buf()),
                None,
                None,
                std::path::Path::new("/nonexistent"),
            );
            let error = crate::config::load(&source).unwrap_err();
            assert!(
                matches!(error, crate::config::Error::Io { .. }),
                "{error:?}"
            );
            errors.push(Box::new(error));
        }
        #[cfg(feature = "ca")]
        {
            let missing_ca = crate::ca::CertificateAuthority::load(&crate::ca::CaSettings {
                cert_dir: PathBuf::from("/nonexistent/certs"),
                key_algorithm: crate::ca::KeyAlgorithm::EcdsaP256,
            })
            .unwrap_err();
            errors.push(Box::new(crate::Error::Ca(missing_ca)));

            // The ca and vpn layers.
            let rcgen_error = || rcgen::KeyPair::from_pem("not a key").unwrap_err();
            let x509_error = || x509_parser::error::X509Error::InvalidCertificate;
            errors.push(Box::new(crate::ca::Error::Read {
                path: path(),
                source: os_error(13),
            }));
            errors.push(Box::new(crate::ca::Error::Write {
                path: path(),
                source: os_error(28),
            }));
            errors.push(Box::new(crate::ca::Error::Malformed {
                what: "the CSR".to_owned(),
                source: x509_error(),
            }));
            errors.push(Box::new(crate::ca::Error::BadKey {
                path: path(),
                source: rcgen_error(),
            }));
            errors.push(Box::new(crate::ca::Error::CsrSignature {
                source: x509_error(),
            }));
            errors.push(Box::new(crate::ca::Error::Random(os_error(5))));
            errors.push(Box::new(crate::ca::Error::KeyPoolThread(os_error(11))));
            errors.push(Box::new(crate::ca::Error::Sign(rcgen_error())));
        }
        // The vpn layer.
        errors.push(Box::new(crate::vpn::Error::InvalidRecordedSubnet {
            text: "nonsense".to_owned(),
            source: "nonsense".parse::<ipnet::Ipv4Net>().unwrap_err(),
        }));
        errors.push(Box::new(crate::cloud::Error::Io(os_error(2))));

        #[cfg(feature = "config")]
        {
            errors.push(Box::new(crate::config::Error::Io {
                path: path(),
                action: "read the configuration",
                source: os_error(21),
            }));
            // Displayed by `Problem` after its location; its cause is the planner's.
            errors.push(Box::new(crate::config::ProblemKind::VpnPlan {
                source: crate::vpn::Error::InvalidRecordedSubnet {
                    text: "x".to_owned(),
                    source: "x".parse::<ipnet::Ipv4Net>().unwrap_err(),
                },
            }));
        }
        #[cfg(feature = "store")]
        {
            use crate::store::{DatabaseError, Error};
            let query = || DatabaseError::query(diesel::result::Error::NotFound);
            errors.push(Box::new(Error::CreateFile {
                path: path(),
                source: os_error(13),
            }));
            errors.push(Box::new(Error::Connect {
                target: "postgresql".to_owned(),
                source: DatabaseError::connect(diesel::ConnectionError::BadConnection(
                    "connection refused".to_owned(),
                )),
            }));
            errors.push(Box::new(Error::Configure {
                target: path().display().to_string(),
                source: query(),
            }));
            errors.push(Box::new(Error::Query(query())));
            errors.push(Box::new(Error::Migration(Box::new(os_error(5)))));
            errors.push(Box::new(Error::HashingThread(os_error(11))));
            errors.push(Box::new(Error::PasswordHash(
                argon2::password_hash::Error::Password,
            )));
        }
        #[cfg(feature = "director")]
        {
            use crate::director::Error;
            errors.push(Box::new(Error::Templates(os_error(13))));
            errors.push(Box::new(Error::Cloud(crate::cloud::Error::Io(os_error(
                28,
            )))));
            errors.push(Box::new(Error::Bootstrap(
                crate::bootstrap::Error::Template {
                    path: path(),
                    source: os_error(2),
                },
            )));
            errors.push(Box::new(Error::Config(crate::config::Error::Io {
                path: path(),
                action: "create the data directory",
                source: os_error(30),
            })));
            errors.push(Box::new(Error::Store(crate::store::Error::Query(
                crate::store::DatabaseError::query(diesel::result::Error::NotFound),
            ))));
            use crate::manager_client::Error as Manager;
            errors.push(Box::new(Manager::Connect(os_error(111))));
            errors.push(Box::new(Manager::Handshake(os_error(104))));
            errors.push(Box::new(Manager::Io(os_error(32))));
        }
        #[cfg(feature = "server")]
        {
            use crate::api::tls::TlsError;
            errors.push(Box::new(TlsError::Pem {
                what: "director key",
                source: rustls_pki_types::pem::Error::NoItemsFound,
            }));
            errors.push(Box::new(TlsError::Rustls(rustls::Error::General(
                "bad".to_owned(),
            ))));
            errors.push(Box::new(TlsError::Verifier(
                rustls::server::VerifierBuilderError::NoRootAnchors,
            )));
            errors.push(Box::new(crate::api::params::ParamsError::Multipart(
                multer::Error::IncompleteStream,
            )));
            use crate::api::server::ServeError;
            errors.push(Box::new(ServeError::Listener(os_error(9))));
            errors.push(Box::new(crate::Error::Serve(ServeError::Ca(
                crate::ca::Error::Read {
                    path: path(),
                    source: os_error(13),
                },
            ))));
        }
        errors
    }

    #[test]
    fn no_error_says_its_cause_twice() {
        let errors = errors_with_causes();
        assert!(errors.len() >= 20, "{}", errors.len());
        for error in &errors {
            let length = assert_each_cause_once(error.as_ref());
            assert!(
                length >= 2,
                "{error:?} has no cause: the case tests nothing"
            );
            // And the one-line form still says everything, once.
            let shown = ErrorChain(error.as_ref()).to_string();
            let cause = error.source().unwrap().to_string();
            assert_eq!(shown.matches(&cause).count(), 1, "{shown}");
        }
    }

    #[cfg(feature = "ca")]
    #[test]
    fn chain_shows_every_cause() {
        let error = crate::Error::Ca(crate::ca::Error::Read {
            path: path(),
            source: os_error(13),
        });
        assert_eq!(
            ErrorChain(&error).to_string(),
            "cannot read /srv/conpaas/some-file: Permission denied (os error 13)"
        );
    }
}
