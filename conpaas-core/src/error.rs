//! The crate-wide error wrapping each layer's error, for embedders and binaries.

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
    #[error(transparent)]
    Ca(#[from] crate::ca::Error),
    /// VPN planning failed.
    #[error(transparent)]
    Vpn(#[from] crate::vpn::Error),
    /// A use-case failed.
    #[cfg(feature = "director")]
    #[error(transparent)]
    Director(#[from] crate::director::Error),
}
