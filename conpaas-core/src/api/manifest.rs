//! `/upload_manifest`: an application and its services from a JSON manifest (director-api.md
//! §3.15). Creation and naming are done here; the steps that need the manager itself (code
//! archives, startup scripts, `Start`, scaling, MySQL and XtreemFS set-up) are refused by name.

use axum::response::Response;
use serde_json::Value;

use super::answer::{self, Cors};
use super::params::Params;
use crate::director::{Director, StartRequest};
use crate::model::UserId;

/// The types a manifest may name (`helloworld` is accepted by `/start` only, as in 1.2).
const MANIFEST_TYPES: [&str; 8] = [
    "php", "java", "mysql", "scalaris", "hadoop", "selenium", "xtreemfs", "taskfarm",
];

/// Keys whose processing needs calls to the new service's manager.
const MANAGER_KEYS: [&str; 6] = [
    "Archive",
    "StartupScript",
    "StartupInstances",
    "Password",
    "Dump",
    "VolumeStartup",
];

/// One service of a validated manifest.
#[derive(Debug, Clone)]
struct ServiceEntry {
    service_type: String,
    cloud: String,
    name: Option<String>,
    manager_steps: Vec<&'static str>,
}

/// A manifest that passed 1.2's validation.
#[derive(Debug, Clone)]
struct Manifest {
    application: Option<String>,
    services: Vec<ServiceEntry>,
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

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

/// 1.2's validation, with `false` instead of its 500s for unusable structures.
fn validate(text: &str) -> Result<Manifest, Unusable> {
    let refuse = || Unusable;
    let document: Value = serde_json::from_str(text).map_err(|_| refuse())?;
    let Value::Object(top) = document else {
        return Err(refuse());
    };
    let entries: Vec<Value> = match top.get("Services") {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Object(members)) if members.is_empty() => Vec::new(),
        Some(Value::String(text)) if text.is_empty() => Vec::new(),
        _ => return Err(refuse()),
    };
    let mut services = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Object(entry) = entry else {
            return Err(refuse());
        };
        let Some(service_type) = entry
            .get("Type")
            .and_then(text_of)
            .filter(|t| !t.is_empty())
        else {
            return Err(refuse());
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
        let mut manager_steps: Vec<&'static str> = MANAGER_KEYS
            .into_iter()
            .filter(|key| entry.get(*key).is_some_and(truthy))
            .collect();
        if entry.get("Start").is_some_and(truthy) {
            manager_steps.push("Start");
        }
        services.push(ServiceEntry {
            service_type,
            cloud,
            name,
            manager_steps,
        });
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

/// Processes a validated manifest; `Err(message)` is the error object's `msg`.
async fn process(director: &Director, uid: UserId, manifest: Manifest) -> Result<(), String> {
    let Some(name) = manifest.application else {
        return Err("Application is not defined".to_owned());
    };
    // Looked up among the caller's applications only (1.2 took anyone's, then failed).
    let apps = director
        .applications(uid)
        .await
        .map_err(|_| "internal error".to_owned())?;
    let app = match apps
        .into_iter()
        .find(|app| app.name.as_deref() == Some(name.as_str()))
    {
        Some(app) => app,
        None => director
            .create_application(uid, &name)
            .await
            .map_err(|error| error.to_string())?,
    };
    for entry in manifest.services {
        if !MANIFEST_TYPES.contains(&entry.service_type.as_str()) {
            return Err(format!("Service {} does not exists", entry.service_type));
        }
        if let Some(step) = entry.manager_steps.first() {
            return Err(format!(
                "Service {}: manifest key {step} needs the manager, which this director does not drive yet",
                entry.service_type
            ));
        }
        let start = StartRequest {
            uid,
            service_type: entry.service_type.clone(),
            cloud: entry.cloud.clone(),
            appid: Some(app.aid.to_string()),
        };
        let service = director
            .start_service(start)
            .await
            .map_err(|error| match error {
                crate::director::Error::UnknownServiceType(_)
                | crate::director::Error::ApplicationNotFound(_) => error.to_string(),
                other => {
                    tracing::warn!(error = %other, "manifest service creation failed");
                    let response_text = match other {
                        crate::director::Error::InsufficientCredit
                        | crate::director::Error::UnknownCloud(_)
                        | crate::director::Error::StartTimeout
                        | crate::director::Error::Vpn(_) => other.to_string(),
                        _ => "internal error, see the director's log".to_owned(),
                    };
                    format!("Error upon service creation: {response_text}")
                }
            })?;
        if let Some(name) = &entry.name {
            director
                .rename_service(uid, service.sid, name)
                .await
                .map_err(|_| "internal error, see the director's log".to_owned())?;
        }
    }
    Ok(())
}

/// The route: validation answers at once; `thread` runs the rest in the background and
/// answers `true` (as 1.2 did), otherwise the final verdict is the answer.
pub(super) async fn upload(director: &Director, uid: UserId, params: &Params) -> Response {
    let Some(text) = params.required("manifest") else {
        return answer::no(Cors::Yes);
    };
    let Ok(manifest) = validate(text) else {
        return answer::no(Cors::No);
    };
    if params.required("thread").is_some() {
        let director = director.clone();
        tokio::spawn(async move {
            if let Err(message) = process(&director, uid, manifest).await {
                tracing::info!(uid = %uid, %message, "background manifest failed");
            }
        });
        return answer::yes(Cors::No);
    }
    match process(director, uid, manifest).await {
        Ok(()) => answer::yes(Cors::No),
        Err(message) => answer::error_object(&message, Cors::Yes),
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
        assert_eq!(ok.services[0].manager_steps, vec!["Start"]);
        assert_eq!(ok.services[0].name.as_deref(), Some("w"));
    }
}
