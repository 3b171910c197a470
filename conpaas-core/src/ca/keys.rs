//! Key pairs: generating fresh ones, classifying public keys (RSA size, EC curve), and the
//! public half of a CSR in the form rcgen signs.

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, PublicKeyData, SignatureAlgorithm};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::{Error, KeyAlgorithm};

/// Smallest RSA modulus we sign with or for: what 1.2 used, and what rustls accepts.
const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus the signature verifier handles.
const MAX_RSA_BITS: usize = 8192;

/// The kind of a public key we accept; decides the leaf's keyUsage bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// RSA, 2048 to 8192 bits.
    Rsa,
    /// ECDSA on P-256.
    EcdsaP256,
}

impl KeyKind {
    /// rcgen's algorithm for this key type; for a public key it only selects the
    /// SubjectPublicKeyInfo algorithm identifier (rsaEncryption+NULL, or ecPublicKey+P-256).
    fn rcgen_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyKind::Rsa => &PKCS_RSA_SHA256,
            KeyKind::EcdsaP256 => &PKCS_ECDSA_P256_SHA256,
        }
    }

    /// Classifies a SubjectPublicKeyInfo, refusing what we do not sign with or for.
    pub(crate) fn of_spki(
        spki: &SubjectPublicKeyInfo<'_>,
        whose: &'static str,
    ) -> Result<Self, Error> {
        let unsupported = |found: String| Error::UnsupportedKey { what: whose, found };
        let algorithm = &spki.algorithm.algorithm;
        if *algorithm == OID_PKCS1_RSAENCRYPTION {
            let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
                return Err(unsupported("malformed RSA key".to_owned()));
            };
            let bits = modulus_bits(rsa.modulus);
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(unsupported(format!("RSA {bits} bits")));
            }
            return Ok(KeyKind::Rsa);
        }
        if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|any| any.as_oid().ok());
            return match curve {
                Some(curve) if curve == OID_EC_P256 => Ok(KeyKind::EcdsaP256),
                Some(curve) => Err(unsupported(format!("EC on curve {curve}"))),
                None => Err(unsupported("EC without a named curve".to_owned())),
            };
        }
        Err(unsupported(format!("algorithm {algorithm}")))
    }
}

/// Bits of a big-endian unsigned modulus (DER may prefix a zero sign octet).
fn modulus_bits(modulus: &[u8]) -> usize {
    let Some(start) = modulus.iter().position(|&byte| byte != 0) else {
        return 0;
    };
    let significant = &modulus[start..];
    // `start` indexes a non-zero octet, so leading_zeros is at most 7.
    significant.len() * 8 - significant[0].leading_zeros() as usize
}

/// A fresh key pair of the configured type.
pub(crate) fn generate(algorithm: KeyAlgorithm) -> Result<(KeyPair, KeyKind), Error> {
    let (rcgen_algorithm, kind) = match algorithm {
        // aws-lc-rs generates RSA keys (ring cannot), always with exponent 65537.
        KeyAlgorithm::Rsa2048 => (&PKCS_RSA_SHA256, KeyKind::Rsa),
        KeyAlgorithm::EcdsaP256 => (&PKCS_ECDSA_P256_SHA256, KeyKind::EcdsaP256),
    };
    let key = KeyPair::generate_for(rcgen_algorithm).map_err(Error::Sign)?;
    Ok((key, kind))
}

/// A public key taken from a verified CSR, ready to be put into a certificate.
#[derive(Debug, Clone)]
pub(crate) struct CsrPublicKey {
    /// The BIT STRING contents of the SubjectPublicKeyInfo.
    raw: Vec<u8>,
    kind: KeyKind,
}

impl CsrPublicKey {
    /// Copies the key of a SubjectPublicKeyInfo that [`KeyKind::of_spki`] accepted.
    pub(crate) fn new(spki: &SubjectPublicKeyInfo<'_>, kind: KeyKind) -> Self {
        CsrPublicKey {
            raw: spki.subject_public_key.data.to_vec(),
            kind,
        }
    }

    /// The key's type.
    pub(crate) fn kind(&self) -> KeyKind {
        self.kind
    }
}

impl PublicKeyData for CsrPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.kind.rcgen_algorithm()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulus_sizes() {
        assert_eq!(modulus_bits(&[]), 0);
        assert_eq!(modulus_bits(&[0, 0]), 0);
        assert_eq!(modulus_bits(&[1]), 1);
        assert_eq!(modulus_bits(&[0x80, 0]), 16);
        assert_eq!(modulus_bits(&[0, 0x80, 0]), 16);
        let mut modulus = vec![0u8; 257];
        modulus[1] = 0xc1;
        assert_eq!(modulus_bits(&modulus), 2048);
        modulus[1] = 0x7f;
        assert_eq!(modulus_bits(&modulus), 2047);
    }

    #[test]
    fn generated_keys_are_classified() {
        for (algorithm, expect) in [
            (KeyAlgorithm::EcdsaP256, KeyKind::EcdsaP256),
            (KeyAlgorithm::Rsa2048, KeyKind::Rsa),
        ] {
            let (key, kind) = generate(algorithm).unwrap();
            assert_eq!(kind, expect);
            let spki_der = key.subject_public_key_info();
            let (_, spki) =
                <SubjectPublicKeyInfo as x509_parser::prelude::FromDer<_>>::from_der(&spki_der)
                    .unwrap();
            assert_eq!(KeyKind::of_spki(&spki, "test").unwrap(), expect);
            // Re-encoding the public half gives the same SubjectPublicKeyInfo.
            let copy = CsrPublicKey::new(&spki, kind);
            assert_eq!(copy.subject_public_key_info(), spki_der);
        }
    }
}
