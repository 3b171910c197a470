//! The JSON shapes of spec/data-model.md §7 and the `/getcerts` archive of spec/director-api.md
//! §3.3, checked member by member with their JSON types.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::Path;

use serde_json::Value;

use crate::support::{
    OID_CN, OID_EMAIL, OID_O, OID_ROLE, OID_SERVICE_LOCATOR, OID_UID, Reply, TestDirector,
    is_timestamp, md5_hex, openssl_subject, openssl_verify, subject_values, unzip_entries,
};

/// What a user dict must say.
#[derive(Debug, Clone, Copy)]
pub struct ExpectedUser<'a> {
    /// `username`.
    pub username: &'a str,
    /// `fname`.
    pub fname: &'a str,
    /// `lname`.
    pub lname: &'a str,
    /// `email`.
    pub email: &'a str,
    /// `affiliation`.
    pub affiliation: &'a str,
    /// The plaintext password the caller sent (the dict carries its MD5).
    pub password: &'a str,
    /// `credit`.
    pub credit: i64,
}

/// Checks a user dict: exactly the nine members, their JSON types and values, `password` =
/// MD5 of the submitted password; returns `uid`.
#[track_caller]
pub fn check_user(reply: &Reply, value: &Value, expected: &ExpectedUser<'_>) -> i64 {
    let Some(object) = value.as_object() else {
        reply.fail("expected a user dict");
    };
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    if keys
        != [
            "affiliation",
            "created",
            "credit",
            "email",
            "fname",
            "lname",
            "password",
            "uid",
            "username",
        ]
    {
        reply.fail(&format!("the user dict has the members {keys:?}"));
    }
    let text = |key: &str| object[key].as_str();
    let checks = [
        ("username", text("username") == Some(expected.username)),
        ("fname", text("fname") == Some(expected.fname)),
        ("lname", text("lname") == Some(expected.lname)),
        ("email", text("email") == Some(expected.email)),
        (
            "affiliation",
            text("affiliation") == Some(expected.affiliation),
        ),
        (
            "password (MD5 hex of the submitted password)",
            text("password") == Some(md5_hex(expected.password).as_str()),
        ),
        (
            "credit (a JSON integer)",
            object["credit"].as_i64() == Some(expected.credit) && object["credit"].is_i64(),
        ),
        ("uid (a JSON integer)", object["uid"].is_i64()),
        (
            "created (YYYY-MM-DDTHH:MM:SS[.ffffff])",
            text("created").is_some_and(is_timestamp),
        ),
    ];
    for (what, ok) in checks {
        if !ok {
            reply.fail(&format!(
                "wrong {what} in the user dict (expected {expected:?})"
            ));
        }
    }
    object["uid"].as_i64().unwrap()
}

/// What a service dict must say.
#[derive(Debug, Clone, Copy)]
pub struct ExpectedService<'a> {
    /// `sid`, when known.
    pub sid: Option<i64>,
    /// `name`.
    pub name: &'a str,
    /// `type`.
    pub service_type: &'a str,
    /// `user_id`.
    pub user_id: i64,
    /// `application_id`.
    pub application_id: i64,
    /// `subnet`.
    pub subnet: Option<&'a str>,
}

/// Checks a service dict of a started dummy-cloud service: all eleven members with their
/// JSON types, `state` INIT, `manager` 127.0.0.3, `cloud` iaas; returns (`sid`, `vmid`).
#[track_caller]
pub fn check_service(
    reply: &Reply,
    value: &Value,
    expected: &ExpectedService<'_>,
) -> (i64, String) {
    let Some(object) = value.as_object() else {
        reply.fail("expected a service dict");
    };
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    if keys
        != [
            "application_id",
            "cloud",
            "created",
            "manager",
            "name",
            "sid",
            "state",
            "subnet",
            "type",
            "user_id",
            "vmid",
        ]
    {
        reply.fail(&format!("the service dict has the members {keys:?}"));
    }
    let text = |key: &str| object[key].as_str();
    let subnet_ok = match expected.subnet {
        Some(subnet) => text("subnet") == Some(subnet),
        None => object["subnet"].is_null(),
    };
    let checks = [
        (
            "sid (a JSON integer)",
            object["sid"].is_i64()
                && expected
                    .sid
                    .is_none_or(|sid| object["sid"].as_i64() == Some(sid)),
        ),
        ("name", text("name") == Some(expected.name)),
        ("type", text("type") == Some(expected.service_type)),
        ("state", text("state") == Some("INIT")),
        ("created", text("created").is_some_and(is_timestamp)),
        (
            "manager (the dummy VM's address)",
            text("manager") == Some("127.0.0.3"),
        ),
        (
            "vmid (a string)",
            text("vmid").is_some_and(|vmid| !vmid.is_empty()),
        ),
        (
            "cloud (iaas for the default cloud)",
            text("cloud") == Some("iaas"),
        ),
        ("subnet", subnet_ok),
        (
            "user_id (a JSON integer)",
            object["user_id"].is_i64() && object["user_id"].as_i64() == Some(expected.user_id),
        ),
        (
            "application_id (a JSON integer)",
            object["application_id"].is_i64()
                && object["application_id"].as_i64() == Some(expected.application_id),
        ),
    ];
    for (what, ok) in checks {
        if !ok {
            reply.fail(&format!(
                "wrong {what} in the service dict (expected {expected:?})"
            ));
        }
    }
    (
        object["sid"].as_i64().unwrap(),
        text("vmid").unwrap().to_owned(),
    )
}

/// Checks an application dict `{"aid": <int>, "name": <name>}` (exactly two members); returns
/// `aid`.
#[track_caller]
pub fn check_application(reply: &Reply, value: &Value, name: &str) -> i64 {
    let ok = value.as_object().is_some_and(|object| {
        object.len() == 2 && object["aid"].is_i64() && object["name"].as_str() == Some(name)
    });
    if !ok {
        reply.fail(&format!(
            "expected {{\"aid\": <int>, \"name\": {name:?}}}, got {value}"
        ));
    }
    value["aid"].as_i64().unwrap()
}

/// Checks a `/listapp` list against `(aid, name)` pairs, in order.
#[track_caller]
pub fn check_applications(reply: &Reply, value: &Value, expected: &[(i64, &str)]) {
    let Some(list) = value.as_array() else {
        reply.fail("expected a list of application dicts");
    };
    let got: Vec<(i64, String)> = list
        .iter()
        .map(|app| {
            let aid = check_application(reply, app, app["name"].as_str().unwrap_or_default());
            (aid, app["name"].as_str().unwrap().to_owned())
        })
        .collect();
    let expected: Vec<(i64, String)> = expected
        .iter()
        .map(|(aid, name)| (*aid, (*name).to_owned()))
        .collect();
    if got != expected {
        reply.fail(&format!("expected the applications {expected:?}"));
    }
}

/// The `sid`s of a list of service dicts, checking each has the eleven members.
#[track_caller]
pub fn service_ids(reply: &Reply, value: &Value) -> Vec<i64> {
    let Some(list) = value.as_array() else {
        reply.fail("expected a list of service dicts");
    };
    list.iter()
        .map(|service| {
            if service.as_object().is_none_or(|object| object.len() != 11) {
                reply.fail("every service dict has all eleven members");
            }
            service["sid"]
                .as_i64()
                .unwrap_or_else(|| reply.fail("sid is a JSON integer"))
        })
        .collect()
}

/// Checks a `/getcerts` archive (spec §3.3, certificates.md §6): the answer's headers, the
/// three stored members in order, `ca_cert.pem` verbatim, `cert.pem` for this user (read by
/// `openssl`) and chaining to the CA, `key.pem` its key. Returns (cert, key).
#[track_caller]
pub fn check_certs_zip(
    director: &TestDirector,
    reply: &Reply,
    uid: i64,
    username: &str,
    email: &str,
) -> (String, String) {
    reply
        .expect_status(200)
        .expect_content_type("application/zip")
        .expect_cors(false);
    let disposition = reply.header("content-disposition").unwrap_or_default();
    if disposition.replace('"', "") != "attachment; filename=certs.zip" {
        reply.fail("expected Content-Disposition: attachment; filename=certs.zip");
    }
    if serde_json::from_slice::<Value>(&reply.body).is_ok() {
        reply.fail(
            "the archive must not parse as JSON (the Python client would take it for an answer)",
        );
    }
    let entries = unzip_entries(&reply.body);
    let names: Vec<&str> = entries.iter().map(|(name, _, _)| name.as_str()).collect();
    if names != ["cert.pem", "key.pem", "ca_cert.pem"] {
        reply.fail(&format!("archive members {names:?}"));
    }
    if entries
        .iter()
        .any(|(_, method, _)| *method != zip::CompressionMethod::Stored)
    {
        reply.fail("the members are stored, not compressed");
    }
    let text = |index: usize| String::from_utf8(entries[index].2.clone()).unwrap();
    let (cert, key, ca) = (text(0), text(1), text(2));
    assert_eq!(ca, director.ca_pem(), "ca_cert.pem is the CA file verbatim");
    assert!(
        key.contains("PRIVATE KEY-----"),
        "key.pem holds a PEM private key"
    );
    let dir = director.scratch("getcerts");
    let subject = openssl_subject(&dir, &cert);
    for (oid, value) in [
        (OID_UID, uid.to_string()),
        (OID_SERVICE_LOCATOR, "0".to_owned()),
        (OID_ROLE, "user".to_owned()),
        (OID_CN, username.to_owned()),
        (OID_EMAIL, email.to_owned()),
        (OID_O, "Contrail".to_owned()),
    ] {
        assert_eq!(
            subject_values(&subject, oid),
            [value.as_str()],
            "attribute {oid} of the user certificate {subject:?}"
        );
    }
    openssl_verify(&dir, &director.ca_path(), &cert)
        .unwrap_or_else(|error| panic!("the user certificate does not chain to the CA: {error}"));
    assert_key_matches(director, &dir, &cert, &key);
    (cert, key)
}

/// The certificate's public key is the key's.
#[track_caller]
pub fn assert_key_matches(director: &TestDirector, dir: &Path, cert_pem: &str, key_pem: &str) {
    std::fs::write(dir.join("match-cert.pem"), cert_pem).unwrap();
    std::fs::write(dir.join("match-key.pem"), key_pem).unwrap();
    let from_cert = director.openssl(dir, &["x509", "-in", "match-cert.pem", "-noout", "-pubkey"]);
    let from_key = director.openssl(dir, &["pkey", "-in", "match-key.pem", "-pubout"]);
    assert_eq!(from_cert, from_key, "the certificate is not for this key");
}
