//! The ConPaaS 1.2 JSON on the wire: row shapes (`spec/data-model.md` §7) and the two encodings,
//! "bare JSON" (Python's `json.dumps`) and "jsonify" (Flask's, pretty-printed, keys sorted).

use std::io;

use chrono::NaiveDateTime;
use serde::Serialize;
use serde_json::ser::Formatter;

use crate::model;

/// `created` as 1.2 rendered it: ISO 8601 without zone, six fractional digits unless zero.
pub fn timestamp(value: Option<NaiveDateTime>) -> Option<String> {
    value.map(|created| {
        if created.and_utc().timestamp_subsec_micros() == 0 {
            created.format("%Y-%m-%dT%H:%M:%S").to_string()
        } else {
            created.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
        }
    })
}

/// The user dict of `/new_user` and `/login`, in the member order 1.2 emitted.
///
/// Frozen: the 1.2 wire shape (`spec/director-api.md` §3.1); clients read exactly these members.
#[derive(Debug, Serialize)]
pub struct User {
    /// Login name.
    pub username: String,
    /// Last name.
    pub lname: Option<String>,
    /// Id.
    pub uid: i32,
    /// First name.
    pub fname: Option<String>,
    /// Affiliation.
    pub affiliation: Option<String>,
    /// Credit.
    pub credit: i64,
    /// MD5 hex of the password the caller just sent (never the stored hash).
    pub password: String,
    /// E-mail.
    pub email: Option<String>,
    /// Creation time.
    pub created: Option<String>,
}

impl User {
    /// The dict of `user`, carrying `password_md5` (computed from the submitted password).
    pub fn new(user: &model::User, password_md5: String) -> Self {
        User {
            username: user.username.clone(),
            lname: user.lname.clone(),
            uid: user.uid.0,
            fname: user.fname.clone(),
            affiliation: user.affiliation.clone(),
            credit: user.credit.0,
            password: password_md5,
            email: user.email.clone(),
            created: timestamp(user.created),
        }
    }
}

/// The application dict of `/listapp` and `/createapp`.
///
/// Frozen: the 1.2 wire shape (`spec/director-api.md` §3.14).
#[derive(Debug, Serialize)]
pub struct Application {
    /// Id.
    pub aid: i32,
    /// Name.
    pub name: Option<String>,
}

impl From<&model::Application> for Application {
    fn from(app: &model::Application) -> Self {
        Application {
            aid: app.aid.0,
            name: app.name.clone(),
        }
    }
}

/// The service dict: all eleven columns, always present, in 1.2's observed member order.
///
/// Frozen: the 1.2 wire shape (`spec/director-api.md` §3.6); `cpsclient` tabulates every member.
#[derive(Debug, Serialize)]
pub struct Service {
    /// VPN subnet.
    pub subnet: Option<String>,
    /// Owner.
    pub user_id: i32,
    /// Name.
    pub name: Option<String>,
    /// Creation time.
    pub created: Option<String>,
    /// Cloud VM id.
    pub vmid: Option<String>,
    /// Always `INIT`.
    pub state: Option<String>,
    /// Manager IP.
    pub manager: Option<String>,
    /// Id.
    pub sid: i32,
    /// Application.
    pub application_id: i32,
    /// Type name.
    #[serde(rename = "type")]
    pub service_type: Option<String>,
    /// Cloud name (`iaas` for the default).
    pub cloud: Option<String>,
}

impl From<&model::Service> for Service {
    fn from(service: &model::Service) -> Self {
        Service {
            subnet: service.subnet.clone(),
            user_id: service.user_id.0,
            name: service.name.clone(),
            created: timestamp(service.created),
            vmid: service.vmid.clone(),
            state: service.state.clone(),
            manager: service.manager.clone(),
            sid: service.sid.0,
            application_id: service.application_id.0,
            service_type: service.service_type.clone(),
            cloud: service.cloud.clone(),
        }
    }
}

/// An agent VM of `/list_agents` (new in this director).
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct Agent {
    /// The director's id of the agent (the OCCI id its manager holds).
    pub id: i32,
    /// The service whose manager started it.
    pub sid: i32,
    /// The cloud's name (`iaas` for the default).
    pub cloud: String,
    /// The name its manager gave.
    pub name: String,
    /// The cloud's VM id; null while it is being created.
    pub vmid: Option<String>,
    /// Its address; null while it is being created.
    pub ip: Option<String>,
    /// `starting`, `running`, `stopping` or `undoing`.
    pub state: &'static str,
    /// When its manager asked for it.
    pub created: Option<String>,
}

impl From<&crate::store::AgentVm> for Agent {
    fn from(agent: &crate::store::AgentVm) -> Self {
        Agent {
            id: agent.id,
            sid: agent.sid.0,
            cloud: agent.cloud.clone(),
            name: agent.name.clone(),
            vmid: agent.vmid.clone(),
            ip: agent.address.clone(),
            state: agent.lifecycle.as_str(),
            created: timestamp(Some(agent.created)),
        }
    }
}

/// One entry of a manifest export.
///
/// Frozen: the 1.2 wire shape (`spec/director-api.md` §3.16).
#[derive(Debug, Serialize)]
pub struct ManifestService {
    /// Service name.
    #[serde(rename = "ServiceName")]
    pub service_name: Option<String>,
    /// Service type.
    #[serde(rename = "Type")]
    pub service_type: Option<String>,
    /// Cloud name.
    #[serde(rename = "Cloud")]
    pub cloud: Option<String>,
}

/// The manifest export of `/download_manifest`; 1.2's own test compares it textually.
///
/// Frozen: the 1.2 wire shape (`spec/director-api.md` §3.16), member order included.
#[derive(Debug, Serialize)]
pub struct Manifest {
    /// Services.
    #[serde(rename = "Services")]
    pub services: Vec<ManifestService>,
    /// Application name.
    #[serde(rename = "Application")]
    pub application: Option<String>,
}

/// Python 2's `json.dumps` defaults: `", "` and `": "` separators, everything outside ASCII
/// escaped as `\uXXXX`.
struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut units = [0u16; 2];
        for ch in fragment.chars() {
            if ch.is_ascii() {
                let mut byte = [0u8; 1];
                w.write_all(ch.encode_utf8(&mut byte).as_bytes())?;
            } else {
                for unit in ch.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// Serialises `value` as 1.2's bare JSON answers did.
pub fn bare_json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    // Serialising plain structs, strings and numbers into memory cannot fail.
    if value.serialize(&mut serializer).is_err() {
        return "null".to_owned();
    }
    String::from_utf8(out).unwrap_or_else(|_| "null".to_owned())
}

/// Serialises `value` as Flask 0.10's `jsonify`: 2-space indentation, keys sorted.
pub fn jsonify<T: Serialize + ?Sized>(value: &T) -> String {
    // serde_json's Map is ordered by key (no preserve_order feature): going through Value
    // sorts the members as Flask did.
    match serde_json::to_value(value) {
        Ok(tree) => serde_json::to_string_pretty(&tree).unwrap_or_else(|_| "null".to_owned()),
        Err(_) => "null".to_owned(),
    }
}

/// The error object: `{"error": true, "msg": ...}`.
///
/// Frozen: the 1.2 wire shape (`spec/director-api.md` §1.3); a success must never carry `msg`.
#[derive(Debug, Serialize)]
pub struct ErrorObject<'a> {
    /// Always true.
    pub error: bool,
    /// What went wrong, in words the clients show.
    pub msg: &'a str,
}

/// The callback result: `{"error": false}` / `{"error": true}` without `msg`.
///
/// Frozen: the 1.2 wire shape (`spec/director-api.md` §1.3).
#[derive(Debug, Serialize)]
pub struct CallbackResult {
    /// Whether the callback failed.
    pub error: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_separators_and_ascii_escapes() {
        let value = serde_json::json!([{"aid": 1}, "é😀", true]);
        assert_eq!(
            bare_json(&value),
            r#"[{"aid": 1}, "\u00e9\ud83d\ude00", true]"#
        );
    }

    #[test]
    fn manifest_matches_the_1_2_unit_test() {
        let manifest = Manifest {
            services: vec![ManifestService {
                service_name: Some("New php service".into()),
                service_type: Some("php".into()),
                cloud: Some("iaas".into()),
            }],
            application: Some("New Application".into()),
        };
        assert_eq!(
            bare_json(&manifest),
            r#"{"Services": [{"ServiceName": "New php service", "Type": "php", "Cloud": "iaas"}], "Application": "New Application"}"#
        );
    }

    #[test]
    fn jsonify_sorts_keys() {
        let text = jsonify(&ErrorObject {
            error: true,
            msg: "x",
        });
        assert_eq!(text, "{\n  \"error\": true,\n  \"msg\": \"x\"\n}");
    }

    #[test]
    fn timestamps_drop_zero_fraction() {
        let with = chrono::NaiveDate::from_ymd_opt(2013, 6, 21)
            .unwrap()
            .and_hms_micro_opt(10, 33, 44, 806507)
            .unwrap();
        assert_eq!(timestamp(Some(with)).unwrap(), "2013-06-21T10:33:44.806507");
        let without = with.with_nanosecond_zero();
        assert_eq!(timestamp(Some(without)).unwrap(), "2013-06-21T10:33:44");
    }

    trait ZeroNanos {
        fn with_nanosecond_zero(self) -> Self;
    }
    impl ZeroNanos for NaiveDateTime {
        fn with_nanosecond_zero(self) -> Self {
            chrono::Timelike::with_nanosecond(&self, 0).unwrap()
        }
    }
}
