//! The JSON documents of Keystone v3, Nova v2.1, Neutron v2.0 and Glance v2 that the driver
//! reads, and what it makes of them (server statuses, addresses, error messages).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::cloud::NodeState;

/// What a token answer gives the driver besides the token itself.
#[derive(Debug)]
pub(super) struct ParsedToken {
    pub(super) expires_at: Option<DateTime<Utc>>,
    pub(super) catalog: Catalog,
}

/// The service catalog of a token.
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub(super) struct Catalog(Vec<CatalogEntry>);

#[derive(Debug, Deserialize)]
struct CatalogEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    endpoints: Vec<CatalogEndpoint>,
}

#[derive(Debug, Deserialize)]
struct CatalogEndpoint {
    interface: String,
    url: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    region_id: Option<String>,
}

impl Catalog {
    /// The URL of the first `interface` endpoint of the service of type `kind` (in `region`
    /// when given: Keystone names it `region_id`, and `region` before Mitaka).
    pub(super) fn endpoint(
        &self,
        kind: &str,
        interface: &str,
        region: Option<&str>,
    ) -> Option<&str> {
        self.0
            .iter()
            .filter(|entry| entry.kind == kind)
            .flat_map(|entry| entry.endpoints.iter())
            .find(|endpoint| {
                endpoint.interface == interface
                    && region.is_none_or(|region| {
                        endpoint.region_id.as_deref() == Some(region)
                            || endpoint.region.as_deref() == Some(region)
                    })
            })
            .map(|endpoint| endpoint.url.as_str())
    }
}

#[derive(Debug, Deserialize)]
struct TokenDocument {
    token: TokenBody,
}

#[derive(Debug, Deserialize)]
struct TokenBody {
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    catalog: Catalog,
}

/// The body of a `POST /v3/auth/tokens` answer.
pub(super) fn parse_token(body: &str) -> Result<ParsedToken, serde_json::Error> {
    let document: TokenDocument = serde_json::from_str(body)?;
    Ok(ParsedToken {
        expires_at: document.token.expires_at.as_deref().and_then(parse_time),
        catalog: document.token.catalog,
    })
}

/// An ISO 8601 time as OpenStack writes it (`2015-11-06T15:32:17.893769Z`, or Nova's
/// `2013-09-23T13:37:00Z`; some releases leave out the zone, which is UTC).
pub(super) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|naive| naive.and_utc())
        })
}

/// The message of an OpenStack error answer: Nova's `{"forbidden": {"message": ..}}`,
/// Keystone's `{"error": {"message": ..}}`, Neutron's `{"NeutronError": {"type": ..,
/// "message": ..}}` (as `type: message`).
pub(super) fn error_message(body: &str) -> Option<String> {
    let document: Value = serde_json::from_str(body).ok()?;
    let object = document.as_object()?;
    object.values().find_map(|inner| {
        let message = inner.get("message")?.as_str()?;
        Some(match inner.get("type").and_then(Value::as_str) {
            Some(kind) if !kind.is_empty() => format!("{kind}: {message}"),
            _ => message.to_owned(),
        })
    })
}

/// A server as `GET /servers/{id}` and `GET /servers/detail` give it.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Server {
    pub(super) id: String,
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) status: String,
    #[serde(default)]
    pub(super) addresses: BTreeMap<String, Vec<Address>>,
    #[serde(default)]
    pub(super) metadata: BTreeMap<String, Value>,
    #[serde(default)]
    pub(super) created: Option<String>,
    #[serde(default)]
    pub(super) fault: Option<Fault>,
}

/// One address of a server.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Address {
    pub(super) addr: String,
    #[serde(default)]
    pub(super) version: u8,
    #[serde(rename = "OS-EXT-IPS:type", default)]
    pub(super) kind: Option<String>,
}

/// Why a server is in `ERROR`.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Fault {
    #[serde(default)]
    pub(super) message: String,
}

/// What a server's status means to the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    /// `ACTIVE`.
    Active,
    /// `BUILD` and the other transient statuses: wait.
    Transient,
    /// `ERROR`, `SHUTOFF`, `SOFT_DELETED`, `SHELVED`…: it will not serve, but still exists
    /// and must be deleted.
    Dead,
    /// `DELETED`.
    Deleted,
}

impl Server {
    pub(super) fn status(&self) -> Status {
        match self.status.as_str() {
            "ACTIVE" => Status::Active,
            "DELETED" => Status::Deleted,
            "ERROR" | "SHUTOFF" | "SOFT_DELETED" | "SHELVED" | "SHELVED_OFFLOADED"
            | "SUSPENDED" | "PAUSED" | "STOPPED" => Status::Dead,
            // BUILD, REBOOT, HARD_REBOOT, REBUILD, MIGRATING, RESIZE, VERIFY_RESIZE,
            // REVERT_RESIZE, PASSWORD, RESCUE, UNKNOWN and any later one: the server exists,
            // and calling it gone would let the director forget a server that costs money.
            _ => Status::Transient,
        }
    }

    /// The director's view.
    pub(super) fn node_state(&self) -> NodeState {
        match self.status() {
            Status::Active => NodeState::Running,
            Status::Transient => NodeState::Pending,
            Status::Dead | Status::Deleted => NodeState::Gone,
        }
    }

    /// The first fixed IPv4 address, preferring those on the network called `network`.
    pub(super) fn fixed_ipv4(&self, network: Option<&str>) -> Option<String> {
        self.address(network, "fixed")
    }

    /// The first floating IPv4 address.
    pub(super) fn floating_ipv4(&self) -> Option<String> {
        self.address(None, "floating")
    }

    fn address(&self, network: Option<&str>, kind: &str) -> Option<String> {
        let preferred = network.and_then(|name| self.addresses.get(name));
        preferred
            .into_iter()
            .chain(self.addresses.values())
            .flatten()
            .find(|address| {
                address.version == 4
                    // Without the extension every address is fixed.
                    && address.kind.as_deref().unwrap_or("fixed") == kind
            })
            .map(|address| address.addr.clone())
    }

    /// A metadata value that is a string.
    pub(super) fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }
}

/// A Neutron network.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Network {
    pub(super) id: String,
    #[serde(default)]
    pub(super) name: String,
    #[serde(rename = "router:external", default)]
    pub(super) external: bool,
}

/// A Neutron port.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Port {
    pub(super) id: String,
}

/// A Neutron floating IP.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct FloatingIp {
    pub(super) id: String,
    #[serde(default)]
    pub(super) floating_ip_address: String,
    #[serde(default)]
    pub(super) description: Option<String>,
}

/// A Glance image or a Nova flavor: what the look-ups need.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Named {
    pub(super) id: String,
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) status: Option<String>,
}

/// Whether `text` has the form of an OpenStack id (a UUID, with or without dashes): what
/// Nova, Neutron and Glance give their resources. Anything else names a resource.
pub(super) fn is_uuid(text: &str) -> bool {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let dashes_ok = match text.len() {
        32 => true,
        36 => text
            .char_indices()
            .all(|(at, c)| (c == '-') == matches!(at, 8 | 13 | 18 | 23)),
        _ => false,
    };
    dashes_ok && hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
}

/// `text` for a URL's path segment or query value: everything but unreserved characters
/// percent-encoded.
pub(super) fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// `text` as a regular expression matching itself (Nova's `name` filter is a regex).
pub(super) fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if !c.is_ascii_alphanumeric() && c != '-' && c != '_' {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_of_each_service() {
        for (body, message) in [
            (
                r#"{"forbidden": {"code": 403, "message": "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"}}"#,
                Some(
                    "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances",
                ),
            ),
            (
                r#"{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}"#,
                Some("The request you have made requires authentication."),
            ),
            (
                r#"{"NeutronError": {"type": "OverQuota", "message": "Quota exceeded for resources: ['floatingip'].", "detail": ""}}"#,
                Some("OverQuota: Quota exceeded for resources: ['floatingip']."),
            ),
            ("<html>404 Not Found</html>", None),
            ("", None),
        ] {
            assert_eq!(error_message(body).as_deref(), message, "{body}");
        }
    }

    #[test]
    fn statuses() {
        let server = |status: &str| Server {
            id: "x".into(),
            name: String::new(),
            status: status.into(),
            addresses: BTreeMap::new(),
            metadata: BTreeMap::new(),
            created: None,
            fault: None,
        };
        for (status, state) in [
            ("ACTIVE", NodeState::Running),
            ("BUILD", NodeState::Pending),
            ("REBOOT", NodeState::Pending),
            ("SOMETHING_NEW", NodeState::Pending),
            ("ERROR", NodeState::Gone),
            ("SHUTOFF", NodeState::Gone),
            ("SOFT_DELETED", NodeState::Gone),
            ("DELETED", NodeState::Gone),
        ] {
            assert_eq!(server(status).node_state(), state, "{status}");
        }
    }

    #[test]
    fn addresses_fixed_and_floating() {
        let server: Server = serde_json::from_value(serde_json::json!({
            "id": "9f4a",
            "addresses": {
                "other": [{"addr": "192.168.9.9", "version": 4, "OS-EXT-IPS:type": "fixed"}],
                "private": [
                    {"addr": "fd00::5", "version": 6, "OS-EXT-IPS:type": "fixed"},
                    {"addr": "10.0.0.5", "version": 4, "OS-EXT-IPS:type": "fixed"},
                    {"addr": "172.24.4.10", "version": 4, "OS-EXT-IPS:type": "floating"}
                ]
            }
        }))
        .unwrap();
        assert_eq!(
            server.fixed_ipv4(Some("private")).as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(server.fixed_ipv4(None).as_deref(), Some("192.168.9.9"));
        assert_eq!(server.floating_ipv4().as_deref(), Some("172.24.4.10"));
    }

    #[test]
    fn ids_names_and_escapes() {
        assert!(is_uuid("7b1b2a4e-3f0e-4a56-9d1c-0a1b2c3d4e5f"));
        assert!(is_uuid("7b1b2a4e3f0e4a569d1c0a1b2c3d4e5f"));
        assert!(!is_uuid("m1.small"));
        assert!(!is_uuid("None"));
        assert!(!is_uuid("7b1b2a4e-3f0e-4a56-9d1c-0a1b2c3d4e5g"));
        assert!(!is_uuid("7b1b2a4e3-f0e-4a56-9d1c-0a1b2c3d4e5f"));
        assert_eq!(encode("Ubuntu 24.04/arm"), "Ubuntu%2024.04%2Farm");
        assert_eq!(regex_escape("cps-1a2b-s5.x"), "cps-1a2b-s5\\.x");
        assert_eq!(
            parse_time("2015-11-06T15:32:17.893769Z")
                .unwrap()
                .to_rfc3339(),
            "2015-11-06T15:32:17.893769+00:00"
        );
        assert!(parse_time("2013-09-23T13:37:00").is_some());
    }

    #[test]
    fn catalog_endpoints_by_interface_and_region() {
        let token = parse_token(
            r#"{"token": {"expires_at": "2030-01-01T00:00:00.000000Z", "catalog": [
                {"type": "compute", "id": "1", "name": "nova", "endpoints": [
                    {"interface": "internal", "region_id": "RegionOne", "region": "RegionOne", "url": "http://nova.internal/v2.1"},
                    {"interface": "public", "region_id": "RegionTwo", "region": "RegionTwo", "url": "https://nova.two/v2.1"},
                    {"interface": "public", "region_id": "RegionOne", "region": "RegionOne", "url": "https://nova.one/v2.1"}
                ]}
            ]}}"#,
        )
        .unwrap();
        let catalog = &token.catalog;
        assert_eq!(
            catalog.endpoint("compute", "public", None),
            Some("https://nova.two/v2.1")
        );
        assert_eq!(
            catalog.endpoint("compute", "public", Some("RegionOne")),
            Some("https://nova.one/v2.1")
        );
        assert_eq!(
            catalog.endpoint("compute", "internal", None),
            Some("http://nova.internal/v2.1")
        );
        assert_eq!(catalog.endpoint("compute", "admin", None), None);
        assert_eq!(catalog.endpoint("network", "public", None), None);
        assert!(token.expires_at.is_some());
    }
}
