//! `/upload_manifest`: an application and its services from a JSON manifest (director-api.md
//! §3.15). This file reads the JSON text (1.2's validation, then each member as the director
//! needs it) and answers; the processing is `director::manifest`'s.

use axum::response::Response;
use secrecy::SecretString;
use serde_json::{Map, Value};

use super::answer::{self, Cors};
use super::params::Params;
use crate::director::{Director, Manifest, ManifestService, Unreadable, VolumeStartup};
use crate::model::UserId;

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// Python's truth value of a JSON value, as 1.2's `if json.get(key)` tested members.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(flag) => *flag,
        Value::Number(number) => number.as_f64().is_some_and(|n| n != 0.0),
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(members) => !members.is_empty(),
    }
}

/// The manifest is unusable: 1.2 answered `false` (or a 500 for some structures; `false` now).
#[derive(Debug)]
struct Unusable;

/// The truthy member `key` of `entry`.
fn member<'a>(entry: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    entry.get(key).filter(|value| truthy(value))
}

/// A URL member: text, or unreadable.
fn url_member(
    entry: &Map<String, Value>,
    key: &'static str,
    unreadable: &mut Vec<Unreadable>,
) -> Option<String> {
    match member(entry, key)? {
        Value::String(text) => Some(text.clone()),
        _ => {
            unreadable.push(Unreadable {
                key,
                expected: "a URL",
            });
            None
        }
    }
}

/// A `StartupInstances` value as text for Python's `int()`: what `int()` made of JSON numbers
/// and booleans, strings as they are.
fn count_text(value: &Value) -> String {
    match value {
        Value::Bool(flag) => u8::from(*flag).to_string(),
        Value::Number(number) if number.is_f64() => number
            .as_f64()
            .map(|n| format!("{}", n.trunc()))
            .unwrap_or_default(),
        other => text_of(other).unwrap_or_default(),
    }
}

fn service_entry(entry: &Map<String, Value>) -> Result<ManifestService, Unusable> {
    let Some(service_type) = entry
        .get("Type")
        .and_then(text_of)
        .filter(|t| !t.is_empty())
    else {
        return Err(Unusable);
    };
    let cloud = entry
        .get("Cloud")
        .and_then(text_of)
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "default".to_owned());
    let name = entry
        .get("ServiceName")
        .and_then(text_of)
        .filter(|n| !n.is_empty());
    let mut unreadable = Vec::new();
    let archive = url_member(entry, "Archive", &mut unreadable);
    let startup_script = url_member(entry, "StartupScript", &mut unreadable);
    let dump = url_member(entry, "Dump", &mut unreadable);
    let startup_instances = match member(entry, "StartupInstances") {
        None => None,
        Some(Value::Object(counts)) => Some(
            counts
                .iter()
                .filter(|(_, value)| truthy(value))
                .map(|(key, value)| (key.clone(), count_text(value)))
                .collect(),
        ),
        Some(_) => {
            unreadable.push(Unreadable {
                key: "StartupInstances",
                expected: "an object of node counts",
            });
            None
        }
    };
    let volume_startup = match member(entry, "VolumeStartup") {
        None => None,
        Some(Value::Object(volume)) => Some(VolumeStartup {
            volume_name: volume.get("volumeName").and_then(text_of),
            owner: volume.get("owner").and_then(text_of),
        }),
        Some(_) => {
            unreadable.push(Unreadable {
                key: "VolumeStartup",
                expected: "an object {\"volumeName\": ..., \"owner\": ...}",
            });
            None
        }
    };
    Ok(ManifestService {
        service_type,
        cloud,
        name,
        archive,
        startup_script,
        start: entry.get("Start").is_some_and(truthy),
        startup_instances,
        password: member(entry, "Password")
            .and_then(text_of)
            .map(SecretString::from),
        dump,
        volume_startup,
        unreadable,
    })
}

/// 1.2's validation, with `false` instead of its 500s for unusable structures.
fn validate(text: &str) -> Result<Manifest, Unusable> {
    let document: Value = serde_json::from_str(text).map_err(|_| Unusable)?;
    let Value::Object(top) = document else {
        return Err(Unusable);
    };
    let entries: Vec<Value> = match top.get("Services") {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Object(members)) if members.is_empty() => Vec::new(),
        Some(Value::String(text)) if text.is_empty() => Vec::new(),
        _ => return Err(Unusable),
    };
    let mut services = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Object(entry) = entry else {
            return Err(Unusable);
        };
        services.push(service_entry(&entry)?);
    }
    let application = top
        .get("Application")
        .and_then(text_of)
        .filter(|a| !a.is_empty());
    Ok(Manifest {
        application,
        services,
    })
}

/// The route: validation answers at once; so do the checks made before anything is created
/// (refused URLs, unreadable members, too many manifests running). Then `thread` runs the rest
/// in the background and answers `true` (as 1.2 did), otherwise the final verdict is the
/// answer.
pub(super) async fn upload(director: &Director, uid: UserId, params: &Params) -> Response {
    let Some(text) = params.required("manifest") else {
        return answer::no(Cors::Yes);
    };
    let Ok(manifest) = validate(text) else {
        return answer::no(Cors::No);
    };
    let job = match director.prepare_manifest(uid, manifest) {
        Ok(job) => job,
        Err(failure) => return answer::error_object(failure.message(), Cors::Yes),
    };
    if params.required("thread").is_some() {
        job.spawn();
        return answer::yes(Cors::No);
    }
    match job.run().await {
        Ok(()) => answer::yes(Cors::No),
        Err(failure) => answer::error_object(failure.message(), Cors::Yes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_follows_1_2() {
        assert!(validate("not json").is_err());
        assert!(validate("[]").is_err());
        assert!(validate(r#"{"Application": "a"}"#).is_err());
        assert!(validate(r#"{"Services": 5}"#).is_err());
        assert!(validate(r#"{"Services": [1]}"#).is_err());
        assert!(validate(r#"{"Services": [{"Cloud": "x"}]}"#).is_err());
        assert!(validate(r#"{"Services": [{"Type": ""}]}"#).is_err());
        let ok = validate(r#"{"Services": {}}"#).unwrap();
        assert!(ok.services.is_empty() && ok.application.is_none());
        let ok = validate(r#"{"Application": 5, "Services": [{"Type": "php", "Start": "0", "ServiceName": "w"}]}"#).unwrap();
        assert_eq!(ok.application.as_deref(), Some("5"));
        assert_eq!(ok.services[0].cloud, "default");
        assert!(ok.services[0].start);
        assert_eq!(ok.services[0].name.as_deref(), Some("w"));
    }

    #[test]
    fn members_are_read_as_1_2_tested_them() {
        let ok = validate(
            r#"{"Services": [{"Type": "php", "Start": 0, "Archive": "", "StartupScript": "http://h/s.sh",
                "StartupInstances": {"backend": "5", "web": 0, "proxy": 2.7, "x": true}}]}"#,
        )
        .unwrap();
        let entry = &ok.services[0];
        assert!(!entry.start);
        assert_eq!(entry.archive, None);
        assert_eq!(entry.startup_script.as_deref(), Some("http://h/s.sh"));
        let mut counts = entry.startup_instances.clone().unwrap();
        counts.sort();
        let expect: Vec<(String, String)> = [("backend", "5"), ("proxy", "2"), ("x", "1")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(counts, expect);
        assert!(entry.unreadable.is_empty());

        let odd = validate(
            r#"{"Services": [{"Type": "xtreemfs", "Archive": 5, "StartupInstances": [1],
                "VolumeStartup": "v", "Password": 1234}]}"#,
        )
        .unwrap();
        let entry = &odd.services[0];
        let keys: Vec<&str> = entry.unreadable.iter().map(|bad| bad.key).collect();
        assert_eq!(keys, ["Archive", "StartupInstances", "VolumeStartup"]);
        use secrecy::ExposeSecret as _;
        assert_eq!(entry.password.as_ref().unwrap().expose_secret(), "1234");
        let volume = validate(
            r#"{"Services": [{"Type": "xtreemfs", "VolumeStartup": {"volumeName": "v"}}]}"#,
        )
        .unwrap();
        let volume = volume.services[0].volume_startup.clone().unwrap();
        assert_eq!(volume.volume_name.as_deref(), Some("v"));
        assert_eq!(volume.owner, None);
    }
}
