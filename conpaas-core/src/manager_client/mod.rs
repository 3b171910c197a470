//! JSON-RPC over HTTPS to managers (`spec/director-api.md` §4): the director's own certificate as
//! client certificate, the manager's certificate checked against the CA and its role.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Decides whether a verified server certificate (DER) is a manager's.
pub type PeerCheck = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// A manager call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The TLS material could not be loaded.
    #[error("manager client tls: {0}")]
    Tls(String),
    /// The call failed (connection, TLS, timeout, status).
    #[error("manager call failed: {0}")]
    Call(#[from] reqwest::Error),
    /// The manager answered a status other than 200.
    #[error("manager answered status {0}")]
    Status(u16),
}

/// The director's HTTPS client towards managers.
#[derive(Clone)]
pub struct ManagerClient {
    http: reqwest::Client,
}

impl std::fmt::Debug for ManagerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerClient").finish_non_exhaustive()
    }
}

/// Accepts a server whose chain ends at the director's CA and whose certificate passes
/// `peer_check` (role `manager`). Managers are reached by IP and their certificates name no
/// host, so there is no host name to check, as in 1.2.
#[derive(Debug)]
struct ManagerVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    peer_check: PeerCheckDebug,
}

struct PeerCheckDebug(PeerCheck);

impl std::fmt::Debug for PeerCheckDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerCheck")
    }
}

impl ServerCertVerifier for ManagerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if (self.peer_check.0)(end_entity.as_ref()) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server is not a ConPaaS manager".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ManagerClient {
    /// A client presenting the director's certificate (`cert_pem`, `key_pem`) and trusting
    /// managers whose certificates chain to `ca_pem` and pass `peer_check`; every call is
    /// bounded by `timeout`.
    pub fn new(
        cert_pem: &[u8],
        key_pem: &[u8],
        ca_pem: &[u8],
        peer_check: PeerCheck,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| Error::Tls(format!("director certificate: {error}")))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|error| Error::Tls(format!("director key: {error}")))?;
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca_pem) {
            let ca = ca.map_err(|error| Error::Tls(format!("ca certificate: {error}")))?;
            roots
                .add(ca)
                .map_err(|error| Error::Tls(format!("ca certificate: {error}")))?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = ManagerVerifier {
            roots: Arc::new(roots),
            provider: provider.clone(),
            peer_check: PeerCheckDebug(peer_check),
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| Error::Tls(error.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(chain, key)
            .map_err(|error| Error::Tls(error.to_string()))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(ManagerClient { http })
    }

    /// JSON-RPC POST of `method` with `params` to the manager at `host` (port 443, path `/`);
    /// answers the `result` member when present, else the whole JSON answer.
    pub async fn call(
        &self,
        host: &str,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, Error> {
        self.call_at(&format!("https://{host}:443/"), method, params)
            .await
    }

    /// [`ManagerClient::call`] at a full URL (tests run managers on other ports).
    pub async fn call_at(
        &self,
        url: &str,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, Error> {
        let body = serde_json::json!({"method": method, "params": params, "id": "1"});
        let response = self.http.post(url).json(&body).send().await?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(Error::Status(status.as_u16()));
        }
        let text = response.text().await?;
        // 1.2 used a non-JSON body as raw text and reduced JSON to its `result`.
        Ok(match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(mut value) => value
                .get_mut("result")
                .map(serde_json::Value::take)
                .unwrap_or(value),
            Err(_) => serde_json::Value::String(text),
        })
    }
}
