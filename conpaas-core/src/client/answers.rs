//! The director's answers as the 1.2 client reads them (`spec/director-api.md` §3), typed.
//!
//! Reading is tolerant, as the 1.2 clients were: members a type does not name are ignored,
//! integers sent as text (`"3"`) are read as integers, `null` where text was expected is
//! empty. Each value keeps the JSON it was read from in `raw`, for callers that show or
//! forward the director's own words. The managers' answers are service-specific and stay
//! [`serde_json::Value`] ([`Managers`](super::Managers)).

use std::io::Read as _;

use secrecy::SecretString;
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer};
use serde_json::Value;

use super::{CERT_FILES, Error};

/// Reads `value` as `T` and keeps it as `T`'s `raw`; `what` names the answer in the error.
pub(super) fn typed<T: DeserializeOwned + Raw>(what: &str, value: Value) -> Result<T, Error> {
    match T::deserialize(&value) {
        Ok(mut typed) => {
            typed.set_raw(value);
            Ok(typed)
        }
        Err(error) => Err(Error::Answer(format!("{what}: {error}: {value}"))),
    }
}

/// A typed answer that keeps its JSON.
pub(super) trait Raw {
    fn set_raw(&mut self, raw: Value);
}

macro_rules! raw {
    ($($ty:ty),*) => {$(
        impl Raw for $ty {
            fn set_raw(&mut self, raw: Value) {
                self.raw = raw;
            }
        }
    )*};
}
raw!(User, Application, Service, Manifest, Agent);

/// A user as `/login` answers it (and `/new_user`): the account's row.
#[derive(Clone, Deserialize)]
#[non_exhaustive]
pub struct User {
    /// `uid`.
    #[serde(deserialize_with = "integer")]
    pub uid: i64,
    /// `username`.
    #[serde(deserialize_with = "text")]
    pub username: String,
    /// `fname`.
    #[serde(default, deserialize_with = "optional_text")]
    pub fname: Option<String>,
    /// `lname`.
    #[serde(default, deserialize_with = "optional_text")]
    pub lname: Option<String>,
    /// `email`.
    #[serde(default, deserialize_with = "optional_text")]
    pub email: Option<String>,
    /// `affiliation`.
    #[serde(default, deserialize_with = "optional_text")]
    pub affiliation: Option<String>,
    /// `credit`; `None` when it is not an integer (1.2 on SQLite kept a `/new_user`'s
    /// `credit` text as sent).
    #[serde(default, deserialize_with = "optional_integer")]
    pub credit: Option<i64>,
    /// `password`: the MD5 hex of the password just sent, which the PHP frontend compares
    /// with its own to accept a login.
    #[serde(default, deserialize_with = "optional_text")]
    pub password: Option<String>,
    /// `created`, as the director wrote it (ISO 8601, no zone).
    #[serde(default, deserialize_with = "optional_text")]
    pub created: Option<String>,
    /// The whole object.
    #[serde(skip)]
    pub raw: Value,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password's MD5 (in `password` and `raw`) is as good as the password to 1.2.
        f.debug_struct("User")
            .field("uid", &self.uid)
            .field("username", &self.username)
            .field("credit", &self.credit)
            .finish_non_exhaustive()
    }
}

/// An application as `/listapp` and `/createapp` answer it.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct Application {
    /// `aid`.
    #[serde(deserialize_with = "integer")]
    pub aid: i64,
    /// `name`; empty when `null`.
    #[serde(default, deserialize_with = "text")]
    pub name: String,
    /// The whole object.
    #[serde(skip)]
    pub raw: Value,
}

/// One service as `/list` and `/start` answer it (1.2's eleven members).
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct Service {
    /// `sid`.
    #[serde(deserialize_with = "integer")]
    pub sid: i64,
    /// `type`, lowercase (1.2 lower-cased it to pick the module).
    #[serde(rename = "type", default, deserialize_with = "lowercase_text")]
    pub service_type: String,
    /// `name`; empty when `null`.
    #[serde(default, deserialize_with = "text")]
    pub name: String,
    /// `manager`: the manager's address (IP or host name); empty while its VM is created.
    #[serde(default, deserialize_with = "text")]
    pub manager: String,
    /// `application_id`.
    #[serde(default, deserialize_with = "optional_integer")]
    pub application_id: Option<i64>,
    /// `user_id`: the owner.
    #[serde(default, deserialize_with = "optional_integer")]
    pub user_id: Option<i64>,
    /// `vmid`: the cloud's id of the manager's VM; `None` while it is created.
    #[serde(default, deserialize_with = "optional_text")]
    pub vmid: Option<String>,
    /// `cloud`: the cloud's name (`iaas` for the default one); `None` while the VM is created.
    #[serde(default, deserialize_with = "optional_text")]
    pub cloud: Option<String>,
    /// `state`: always `INIT` from the director (the manager knows the real one).
    #[serde(default, deserialize_with = "optional_text")]
    pub state: Option<String>,
    /// `subnet`: the service's VPN subnet, when it has one.
    #[serde(default, deserialize_with = "optional_text")]
    pub subnet: Option<String>,
    /// `created`, as the director wrote it.
    #[serde(default, deserialize_with = "optional_text")]
    pub created: Option<String>,
    /// The whole object.
    #[serde(skip)]
    pub raw: Value,
}

impl Service {
    /// The service `sid` of type `service_type` whose manager is at `manager`: enough for
    /// [`Managers`](super::Managers) to call it. Its `raw` holds these three members.
    pub fn new(sid: i64, service_type: impl Into<String>, manager: impl Into<String>) -> Self {
        let service_type = service_type.into().to_lowercase();
        let manager = manager.into();
        let raw = serde_json::json!({"sid": sid, "type": service_type, "manager": manager});
        Service {
            sid,
            service_type,
            name: String::new(),
            manager,
            application_id: None,
            user_id: None,
            vmid: None,
            cloud: None,
            state: None,
            subnet: None,
            created: None,
            raw,
        }
    }
}

/// One agent VM as `/list_agents` answers it: a VM a manager of the user's started through
/// the director (not a 1.2 route: a 1.2 director answers 404).
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct Agent {
    /// `id`: the director's id of the agent (the id its manager holds).
    #[serde(deserialize_with = "integer")]
    pub id: i64,
    /// `sid`: the service whose manager started it.
    #[serde(deserialize_with = "integer")]
    pub sid: i64,
    /// `cloud`: the cloud's name (`iaas` for the default one).
    #[serde(default, deserialize_with = "text")]
    pub cloud: String,
    /// `name`: the name its manager gave it.
    #[serde(default, deserialize_with = "text")]
    pub name: String,
    /// `vmid`: the cloud's id of the VM; `None` while it is created.
    #[serde(default, deserialize_with = "optional_text")]
    pub vmid: Option<String>,
    /// `ip`: its address; `None` while it is created.
    #[serde(default, deserialize_with = "optional_text")]
    pub ip: Option<String>,
    /// `state`: `starting`, `running`, `stopping` or `undoing`.
    #[serde(default, deserialize_with = "text")]
    pub state: String,
    /// `created`, as the director wrote it.
    #[serde(default, deserialize_with = "optional_text")]
    pub created: Option<String>,
    /// The whole object.
    #[serde(skip)]
    pub raw: Value,
}

/// An application exported by `/download_manifest`: `{"Services": [...], "Application": ...}`.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct Manifest {
    /// `Application`: its name.
    #[serde(rename = "Application", default, deserialize_with = "optional_text")]
    pub application: Option<String>,
    /// `Services`, in order.
    #[serde(rename = "Services", default)]
    pub services: Vec<ManifestService>,
    /// The whole object: a manifest `/upload_manifest` takes back.
    #[serde(skip)]
    pub raw: Value,
}

/// One entry of an exported manifest's `Services`.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct ManifestService {
    /// `ServiceName`.
    #[serde(rename = "ServiceName", default, deserialize_with = "optional_text")]
    pub service_name: Option<String>,
    /// `Type`.
    #[serde(rename = "Type", default, deserialize_with = "optional_text")]
    pub service_type: Option<String>,
    /// `Cloud`: the cloud's stored name (`iaas` for the default one), `None` while the
    /// service's VM is created.
    #[serde(rename = "Cloud", default, deserialize_with = "optional_text")]
    pub cloud: Option<String>,
}

/// The three members of `/getcerts`' archive (`certs.zip`), as PEM.
#[derive(Clone)]
#[non_exhaustive]
pub struct Certificates {
    /// `cert.pem`: the user's new certificate.
    pub cert_pem: Vec<u8>,
    /// `key.pem`: its private key.
    pub key_pem: SecretString,
    /// `ca_cert.pem`: the installation's CA certificate.
    pub ca_cert_pem: Vec<u8>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates").finish_non_exhaustive()
    }
}

impl Certificates {
    /// Reads the archive `/getcerts` answers: its three members by name ([`CERT_FILES`]);
    /// anything else in it is ignored.
    ///
    /// # Errors
    ///
    /// [`Error::Answer`] when the bytes are not a ZIP archive or lack a member.
    pub fn from_zip(zip_bytes: &[u8]) -> Result<Certificates, Error> {
        let bad = |reason: String| Error::Answer(format!("the certificate archive{reason}"));
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes))
            .map_err(|error| bad(format!(": {error}")))?;
        let mut members = Vec::with_capacity(CERT_FILES.len());
        for name in CERT_FILES {
            let mut member = archive
                .by_name(name)
                .map_err(|_| bad(format!(" has no {name}")))?;
            let mut bytes = Vec::new();
            member
                .read_to_end(&mut bytes)
                .map_err(|error| bad(format!(": {error}")))?;
            members.push(bytes);
        }
        let [cert_pem, key_pem, ca_cert_pem] = <[Vec<u8>; 3]>::try_from(members)
            .map_err(|_| bad(" has not three members".to_owned()))?;
        let key_pem =
            String::from_utf8(key_pem).map_err(|_| bad(": key.pem is not text".into()))?;
        Ok(Certificates {
            cert_pem,
            key_pem: key_pem.into(),
            ca_cert_pem,
        })
    }
}

/// An integer, or a text holding one as Python's `int()` reads it.
fn integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let value = Value::deserialize(deserializer)?;
    as_integer(&value).ok_or_else(|| de::Error::invalid_type(unexpected(&value), &"an integer"))
}

/// [`integer`], `None` for `null` and for anything that is not one.
fn optional_integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    Ok(as_integer(&Value::deserialize(deserializer)?))
}

/// Text; `null` is empty, a number or a boolean its JSON text.
fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(as_text(Value::deserialize(deserializer)?).unwrap_or_default())
}

/// [`text`], lower-cased.
fn lowercase_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(text(deserializer)?.to_lowercase())
}

/// [`text`], `None` for `null`.
fn optional_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(as_text(Value::deserialize(deserializer)?))
}

fn as_integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => crate::model::parse_int(text),
        _ => None,
    }
}

fn as_text(value: Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text),
        other => Some(other.to_string()),
    }
}

fn unexpected(value: &Value) -> de::Unexpected<'_> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(flag) => de::Unexpected::Bool(*flag),
        Value::Number(_) => de::Unexpected::Other("a number out of range"),
        Value::String(text) => de::Unexpected::Str(text),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tolerant_of_1_2_quirks() {
        let service: Service = typed(
            "list",
            json!({"sid": "7", "type": "PHP", "name": null, "manager": "10.0.0.1",
                   "application_id": 1, "user_id": 2, "vmid": null, "cloud": null,
                   "state": "INIT", "subnet": null, "created": "2013-06-21T10:33:44", "extra": [1]}),
        )
        .unwrap();
        assert_eq!(service.sid, 7);
        assert_eq!(service.service_type, "php");
        assert_eq!(service.name, "");
        assert_eq!(service.vmid, None);
        assert_eq!(service.raw["extra"], json!([1]));

        let user: User = typed(
            "login",
            json!({"uid": 3, "username": "alice", "credit": "abc", "password": "0cc1"}),
        )
        .unwrap();
        assert_eq!((user.uid, user.credit), (3, None));
        assert_eq!(user.password.as_deref(), Some("0cc1"));
        assert!(!format!("{user:?}").contains("0cc1"));

        let error = typed::<Service>("list", json!({"sid": "seven"})).unwrap_err();
        assert!(error.to_string().contains("seven"), "{error}");
        let error = typed::<Application>("listapp", json!({"name": "x"})).unwrap_err();
        assert!(error.to_string().contains("aid"), "{error}");
    }

    #[test]
    fn agents_are_read_as_list_agents_writes_them() {
        let agent: Agent = typed(
            "list_agents",
            json!({"id": 3, "sid": "7", "cloud": "iaas", "name": "conpaas-agent-php-u1-s7",
                   "vmid": null, "ip": null, "state": "starting",
                   "created": "2026-12-06T21:40:01"}),
        )
        .unwrap();
        assert_eq!((agent.id, agent.sid), (3, 7));
        assert_eq!((agent.vmid, agent.ip), (None, None));
        assert_eq!(agent.state, "starting");
        let error = typed::<Agent>("list_agents", json!({"id": 3})).unwrap_err();
        assert!(error.to_string().contains("sid"), "{error}");
    }

    #[test]
    fn manifest_export() {
        let text = r#"{"Services": [{"ServiceName": "New php service", "Type": "php", "Cloud": "iaas"}], "Application": "New Application"}"#;
        let manifest: Manifest =
            typed("download_manifest", serde_json::from_str(text).unwrap()).unwrap();
        assert_eq!(manifest.application.as_deref(), Some("New Application"));
        assert_eq!(manifest.services[0].cloud.as_deref(), Some("iaas"));
        assert_eq!(
            manifest.raw.to_string(),
            serde_json::from_str::<Value>(text).unwrap().to_string()
        );
    }
}
