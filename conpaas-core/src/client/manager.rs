//! The managers' calls of the 1.2 client (`cps/base.py` `callmanager`), on the director's own
//! [`ManagerClient`](crate::manager_client::ManagerClient) with the user's certificate: JSON-RPC
//! GET and POST and the upload POST to `https://<manager>:443/`; the task farm over plain HTTP
//! on port 8475, every call a POST and `shutdown` named `terminate_workers`, as 1.2 called it.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret as _;
use serde_json::Value;

use super::{Error, Identity, Service};
use crate::ca::CertIdentity;
use crate::manager_client::{self, ManagerClient, PeerCheck, Upload};

/// The port 1.2 managers listen on.
pub const MANAGER_PORT: u16 = 443;
/// The port of 1.2's task farm manager (plain HTTP).
pub const TASKFARM_PORT: u16 = 8475;

/// A user's calls to the managers of their services. Their answers are
/// [`serde_json::Value`]: each service type answers its own shapes, which 1.2 never fixed.
#[derive(Debug, Clone)]
pub struct Managers {
    client: ManagerClient,
    port: u16,
    taskfarm_port: u16,
}

impl Managers {
    /// Calls presenting `identity`'s certificate, accepting only a manager certificate of the
    /// same CA with `role=manager` and the user's own `UID` (1.2's user-side check), each call
    /// bounded by `timeout`.
    pub fn new(identity: &Identity, timeout: Duration) -> Result<Self, Error> {
        let uid = identity.uid.clone();
        let peer_check: PeerCheck = Arc::new(move |der: &[u8]| {
            CertIdentity::parse(der).is_ok_and(|peer| {
                peer.role.as_deref() == Some("manager") && peer.uid.as_deref() == Some(&uid)
            })
        });
        let client = ManagerClient::new(
            &identity.cert_pem,
            identity.key_pem.expose_secret().as_bytes(),
            &identity.ca_pem,
            peer_check,
            timeout,
        )
        .map_err(|error| Error::Tls(error.to_string()))?;
        Ok(Managers {
            client,
            port: MANAGER_PORT,
            taskfarm_port: TASKFARM_PORT,
        })
    }

    /// Managers on other ports than 443 and 8475 (test installations, tunnels).
    pub fn with_ports(mut self, port: u16, taskfarm_port: u16) -> Self {
        self.port = port;
        self.taskfarm_port = taskfarm_port;
        self
    }

    fn is_taskfarm(service: &Service) -> bool {
        service.service_type == "taskfarm"
    }

    /// The manager's URL for `service`.
    pub fn url(&self, service: &Service) -> String {
        let host = if service.manager.contains(':') && !service.manager.starts_with('[') {
            format!("[{}]", service.manager)
        } else {
            service.manager.clone()
        };
        if Self::is_taskfarm(service) {
            format!("http://{host}:{}/", self.taskfarm_port)
        } else {
            format!("https://{host}:{}/", self.port)
        }
    }

    fn failed(service: &Service) -> impl FnOnce(manager_client::Error) -> Error + '_ {
        move |source| Error::Manager {
            sid: service.sid,
            manager: service.manager.clone(),
            source,
        }
    }

    /// An answer with an `error` member is the manager's refusal.
    fn checked(answer: Value) -> Result<Value, Error> {
        match manager_client::error_message(&answer) {
            Some(message) => Err(Error::Refused(message)),
            None => Ok(answer),
        }
    }

    /// A JSON-RPC GET (`params` only when there are some); the task farm takes a POST.
    pub async fn get(
        &self,
        service: &Service,
        method: &str,
        params: Option<Value>,
    ) -> Result<Value, Error> {
        if Self::is_taskfarm(service) {
            return self
                .post(
                    service,
                    method,
                    params.unwrap_or_else(|| serde_json::json!({})),
                )
                .await;
        }
        let answer = self
            .client
            .get_at(&self.url(service), method, params)
            .await
            .map_err(Self::failed(service))?;
        Self::checked(answer)
    }

    /// A JSON-RPC POST.
    pub async fn post(
        &self,
        service: &Service,
        method: &str,
        params: Value,
    ) -> Result<Value, Error> {
        let method = if Self::is_taskfarm(service) && method == "shutdown" {
            "terminate_workers"
        } else {
            method
        };
        let answer = self
            .client
            .call_at(&self.url(service), method, params)
            .await
            .map_err(Self::failed(service))?;
        Self::checked(answer)
    }

    /// The upload POST: the text `fields` (`method` among them) and one file.
    pub async fn upload(
        &self,
        service: &Service,
        fields: &[(&str, &str)],
        file: Upload,
    ) -> Result<Value, Error> {
        let answer = self
            .client
            .upload_fields_at(&self.url(service), fields, file)
            .await
            .map_err(Self::failed(service))?;
        Self::checked(answer)
    }

    /// A JSON-RPC GET whose answer is a file (`download_code_version`); an answer that is a
    /// JSON object with an `error` member is the manager's refusal.
    pub async fn get_bytes(
        &self,
        service: &Service,
        method: &str,
        params: Option<Value>,
    ) -> Result<Vec<u8>, Error> {
        let bytes = self
            .client
            .get_bytes_at(&self.url(service), method, params)
            .await
            .map_err(Self::failed(service))?;
        if let Ok(answer) = serde_json::from_slice::<Value>(&bytes) {
            let answer = answer
                .get("result")
                .cloned()
                .filter(|r| !r.is_null())
                .unwrap_or(answer);
            Self::checked(answer)?;
        }
        Ok(bytes)
    }

    /// `get_service_info`: the manager's view of the service (`state` among it).
    pub async fn info(&self, service: &Service) -> Result<Value, Error> {
        self.get(service, "get_service_info", None).await
    }

    /// The `state` of [`Managers::info`].
    pub async fn state(&self, service: &Service) -> Result<String, Error> {
        let info = self.info(service).await?;
        info.get("state")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| Error::Answer(format!("get_service_info without a state: {info}")))
    }
}
