//! Agent CSRs from managers: parse, check proof of possession (SHA-1 included, which 1.2
//! managers use), check the key; the subject asked for is only reported, never signed.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use super::Error;
use super::keys::{CsrPublicKey, KeyKind};
use super::names::{CertIdentity, first_pem_block, nom_error};

/// PEM labels of a PKCS#10 request (`NEW` is what old Netscape-era tools wrote; OpenSSL
/// still reads it).
const CSR_LABELS: [&str; 2] = ["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"];

/// A CSR whose signature verified with its own key, and whose key we sign for.
#[derive(Debug, Clone)]
pub struct VerifiedCsr {
    public_key: CsrPublicKey,
    requested: CertIdentity,
}

impl VerifiedCsr {
    /// Parses the first `CERTIFICATE REQUEST` PEM block of `csr_pem`, verifies its
    /// signature (SHA-1 RSA signatures included: 1.2 managers make them) and requires an
    /// RSA key of 2048 to 8192 bits or an ECDSA P-256 key.
    pub fn parse(csr_pem: &[u8]) -> Result<Self, Error> {
        let der = first_pem_block(csr_pem, &CSR_LABELS).ok_or_else(|| Error::NotPem {
            what: "the CSR".to_owned(),
            label: CSR_LABELS[0],
        })?;
        let malformed = |source| Error::Malformed {
            what: "the CSR".to_owned(),
            source,
        };
        let csr = match X509CertificationRequest::from_der(&der) {
            Ok(([], csr)) => csr,
            Ok(_) => return Err(malformed(x509_parser::error::X509Error::InvalidCertificate)),
            Err(err) => return Err(malformed(nom_error(err))),
        };
        let spki = &csr.certification_request_info.subject_pki;
        // Classify first: an unsupported key gets a clearer error than a failed signature.
        let kind = KeyKind::of_spki(spki, "CSR")?;
        csr.verify_signature()
            .map_err(|source| Error::CsrSignature { source })?;
        Ok(VerifiedCsr {
            public_key: CsrPublicKey::new(spki, kind),
            requested: CertIdentity::from_name(&csr.certification_request_info.subject)?,
        })
    }

    /// What the CSR's subject asked for: only for logging a mismatch with the caller, the
    /// issued subject never copies it.
    pub fn requested_identity(&self) -> &CertIdentity {
        &self.requested
    }

    /// The key to certify.
    pub(crate) fn public_key(&self) -> &CsrPublicKey {
        &self.public_key
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P384_SHA384};

    use super::*;

    fn csr_pem(key: &KeyPair, cn: &str) -> String {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 72]), "user");
        params.serialize_request(key).unwrap().pem().unwrap()
    }

    #[test]
    fn accepts_ecdsa_and_reports_the_request() {
        let key = KeyPair::generate().unwrap();
        let csr = VerifiedCsr::parse(csr_pem(&key, "ConPaaS").as_bytes()).unwrap();
        assert_eq!(csr.requested_identity().cn.as_deref(), Some("ConPaaS"));
        assert_eq!(csr.requested_identity().role.as_deref(), Some("user"));
        assert_eq!(csr.public_key().kind(), KeyKind::EcdsaP256);
    }

    #[test]
    fn skips_text_and_other_blocks() {
        let key = KeyPair::generate().unwrap();
        let other = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let text = format!("some text\n{other}{}", csr_pem(&key, "x"));
        assert!(VerifiedCsr::parse(text.as_bytes()).is_ok());
    }

    #[test]
    fn refuses_p384() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let err = VerifiedCsr::parse(csr_pem(&key, "x").as_bytes()).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedKey { what: "CSR", .. }),
            "{err:?}"
        );
    }

    #[test]
    fn refuses_garbage() {
        for garbage in [&b""[..], b"hello", b"\x30\x03\x02\x01\x00", &[0xff; 64]] {
            let err = VerifiedCsr::parse(garbage).unwrap_err();
            assert!(matches!(err, Error::NotPem { .. }), "{err:?}");
        }
        let not_der =
            "-----BEGIN CERTIFICATE REQUEST-----\naGVsbG8=\n-----END CERTIFICATE REQUEST-----\n";
        let err = VerifiedCsr::parse(not_der.as_bytes()).unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    }

    #[test]
    fn refuses_a_broken_signature() {
        let key = KeyPair::generate().unwrap();
        let pem = csr_pem(&key, "x");
        let broken = corrupt_last_line(&pem);
        let err = VerifiedCsr::parse(broken.as_bytes()).unwrap_err();
        assert!(matches!(err, Error::CsrSignature { .. }), "{err:?}");
    }

    /// Changes one base64 character of the last body line: the last 48 octets of the DER
    /// are inside the signature BIT STRING, so the structure stays parseable.
    pub(crate) fn corrupt_last_line(pem: &str) -> String {
        let mut lines: Vec<String> = pem.lines().map(str::to_owned).collect();
        let last_body = lines.len() - 2;
        let first = lines[last_body].remove(0);
        lines[last_body].insert(0, if first == 'A' { 'B' } else { 'A' });
        lines.join("\n") + "\n"
    }
}
