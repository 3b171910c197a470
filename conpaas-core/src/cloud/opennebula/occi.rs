//! The OCCI 0.x documents of OpenNebula's `occi-server`: the `COMPUTE` request body, the
//! `COMPUTE` and `COMPUTE_COLLECTION` answers and the VM states (`spec/clouds.md` §7.2–§7.4).

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::cloud::NodeState;

/// A VM state as the OCCI server spells it (`STATE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum OcciState {
    /// `INIT`, `PENDING`, `HOLD`, `SUSPENDED`: not running yet (libcloud's "pending").
    Waiting(String),
    /// `ACTIVE`: deployed (OCCI hides the boot sub-states).
    Active,
    /// `STOPPED`, `FAILED`: will not boot by itself but still exists (and must be deleted).
    Dead(String),
    /// `DONE`: deleted.
    Done,
    /// Anything else (later OpenNebula releases added `POWEROFF`, `UNDEPLOYED`...).
    Other(String),
}

impl OcciState {
    pub(super) fn parse(text: &str) -> OcciState {
        let text = text.trim().to_ascii_uppercase();
        match text.as_str() {
            "ACTIVE" => OcciState::Active,
            "DONE" => OcciState::Done,
            "INIT" | "PENDING" | "HOLD" | "SUSPENDED" => OcciState::Waiting(text),
            "STOPPED" | "FAILED" => OcciState::Dead(text),
            _ => OcciState::Other(text),
        }
    }

    /// Whether a booting VM in this state has failed: libcloud maps these to "terminated".
    pub(super) fn is_terminal(&self) -> bool {
        matches!(self, OcciState::Dead(_) | OcciState::Done)
    }

    /// The director's view. An unknown state counts as pending: the VM exists, and calling
    /// it gone would let a reconciliation forget a VM that may still cost money.
    pub(super) fn node_state(&self) -> NodeState {
        match self {
            OcciState::Active => NodeState::Running,
            OcciState::Dead(_) | OcciState::Done => NodeState::Gone,
            OcciState::Waiting(_) | OcciState::Other(_) => NodeState::Pending,
        }
    }
}

impl std::fmt::Display for OcciState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OcciState::Active => f.write_str("ACTIVE"),
            OcciState::Done => f.write_str("DONE"),
            OcciState::Waiting(text) | OcciState::Dead(text) | OcciState::Other(text) => {
                f.write_str(text)
            }
        }
    }
}

/// What `POST /compute` asks for.
#[derive(Debug)]
pub(super) struct ComputeRequest<'a> {
    pub(super) name: &'a str,
    pub(super) instance_type: &'a str,
    /// `OS/TYPE@arch` (`OS_ARCH`); empty sends no `OS`.
    pub(super) os_arch: &'a str,
    pub(super) image_id: u64,
    pub(super) network_id: u64,
    /// `CONTEXT` children in order: element name (an XML name) and text.
    pub(super) context: &'a [(String, String)],
}

/// The request body: one line, no XML declaration, no namespace, as 1.2's libcloud wrote it,
/// plus `<OS><TYPE arch=".." /></OS>` as 1.2's managers send it for their agents (only the
/// architecture: `ROOT` would override the boot device OpenNebula picks for the image).
pub(super) fn compute_body(request: &ComputeRequest<'_>) -> String {
    let mut body = String::with_capacity(
        256 + request
            .context
            .iter()
            .map(|(key, value)| 2 * key.len() + value.len() + 5)
            .sum::<usize>(),
    );
    body.push_str("<COMPUTE><NAME>");
    escape_into(&mut body, request.name);
    body.push_str("</NAME><INSTANCE_TYPE>");
    escape_into(&mut body, request.instance_type);
    body.push_str("</INSTANCE_TYPE>");
    if !request.os_arch.is_empty() {
        body.push_str("<OS><TYPE arch=\"");
        escape_into(&mut body, request.os_arch);
        body.push_str("\" /></OS>");
    }
    // `write!` into a String cannot fail.
    let _ = write!(
        body,
        "<DISK><STORAGE href=\"/storage/{}\" /></DISK><NIC><NETWORK href=\"/network/{}\" /></NIC><CONTEXT>",
        request.image_id, request.network_id
    );
    for (key, value) in request.context {
        let _ = write!(body, "<{key}>");
        escape_into(&mut body, value);
        let _ = write!(body, "</{key}>");
    }
    body.push_str("</CONTEXT></COMPUTE>");
    body
}

/// XML-escapes text content and attribute values (`&`, `<`, `>`, `"`).
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
}

/// Whether `name` can be a `CONTEXT` element name that OpenNebula turns into a shell variable.
pub(super) fn is_context_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The fields of a `COMPUTE` answer the driver uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Compute {
    /// `ID`: digits only (checked, since it goes into URL paths).
    pub(super) id: String,
    /// `NAME`.
    pub(super) name: Option<String>,
    /// `STATE`.
    pub(super) state: OcciState,
    /// `IP` of the first `NIC` that has one: the VM's address.
    pub(super) ip: Option<String>,
    /// `STIME` (seconds since the epoch, as in OpenNebula's own VM XML), when the server
    /// gives it: 3.8's OCCI documents do not.
    pub(super) created: Option<chrono::DateTime<chrono::Utc>>,
}

/// An entry of `GET /compute`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CollectionEntry {
    /// The id after `/compute/` in `href`.
    pub(super) id: String,
    /// The `name` attribute, which OpenNebula 2.x/3.x servers include.
    pub(super) name: Option<String>,
}

/// An answer the driver cannot read (1.2: "Failed to parse XML").
#[derive(Debug, thiserror::Error)]
pub(super) enum ParseError {
    /// Not well-formed XML (DTDs are refused too: no entity expansion from a server).
    #[error("the answer is not well-formed XML")]
    Xml(#[from] roxmltree::Error),
    /// Another root element.
    #[error("expected a {expected} document, got <{got}>")]
    Root {
        /// The element expected.
        expected: &'static str,
        /// The element found.
        got: String,
    },
    /// A required element is absent or empty.
    #[error("the {0} element is missing")]
    Missing(&'static str),
    /// A value of the wrong shape.
    #[error("{field} is not {expected}: {got:?}")]
    Invalid {
        /// The element or attribute.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
        /// What it is.
        got: String,
    },
}

/// Whether `text` is an OpenNebula VM id: safe to put into `/compute/<id>`.
pub(super) fn is_vm_id(text: &str) -> bool {
    !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit())
}

fn element_text<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.children()
        .find(|child| child.is_element() && child.tag_name().name() == name)
        .and_then(|child| child.text())
        .map(str::trim)
        .filter(|text| !text.is_empty())
}

fn root<'a, 'input>(
    document: &'a roxmltree::Document<'input>,
    expected: &'static str,
) -> Result<roxmltree::Node<'a, 'input>, ParseError> {
    let root = document.root_element();
    // Namespaces are ignored: the 0.x dialect has none, and a proxy adding one changes nothing.
    if root.tag_name().name() != expected {
        return Err(ParseError::Root {
            expected,
            got: root.tag_name().name().to_owned(),
        });
    }
    Ok(root)
}

/// Reads a `COMPUTE` document (the answer of `POST /compute` and `GET /compute/<id>`).
pub(super) fn parse_compute(text: &str) -> Result<Compute, ParseError> {
    let document = roxmltree::Document::parse(text)?;
    let compute = root(&document, "COMPUTE")?;
    let id = element_text(compute, "ID").ok_or(ParseError::Missing("ID"))?;
    if !is_vm_id(id) {
        return Err(ParseError::Invalid {
            field: "ID",
            expected: "a number",
            got: id.to_owned(),
        });
    }
    let state = element_text(compute, "STATE").ok_or(ParseError::Missing("STATE"))?;
    let ip = compute
        .children()
        .filter(|child| child.is_element() && child.tag_name().name() == "NIC")
        .find_map(|nic| element_text(nic, "IP"));
    if let Some(ip) = ip
        && ip.parse::<IpAddr>().is_err()
    {
        return Err(ParseError::Invalid {
            field: "NIC/IP",
            expected: "an IP address",
            got: ip.to_owned(),
        });
    }
    // Informational: an unreadable or zero STIME is no creation time rather than an error.
    let created = element_text(compute, "STIME")
        .and_then(|text| text.parse::<i64>().ok())
        .filter(|seconds| *seconds > 0)
        .and_then(|seconds| chrono::DateTime::from_timestamp(seconds, 0));
    Ok(Compute {
        id: id.to_owned(),
        name: element_text(compute, "NAME").map(str::to_owned),
        state: OcciState::parse(state),
        ip: ip.map(str::to_owned),
        created,
    })
}

/// Reads a `COMPUTE_COLLECTION` document (`GET /compute`).
pub(super) fn parse_collection(text: &str) -> Result<Vec<CollectionEntry>, ParseError> {
    let document = roxmltree::Document::parse(text)?;
    let collection = root(&document, "COMPUTE_COLLECTION")?;
    collection
        .children()
        .filter(|child| child.is_element() && child.tag_name().name() == "COMPUTE")
        .map(|compute| {
            let href = compute
                .attribute("href")
                .ok_or(ParseError::Missing("COMPUTE@href"))?;
            let id = href
                .rsplit_once("/compute/")
                .map(|(_, id)| id.trim_end_matches('/'))
                .filter(|id| is_vm_id(id))
                .ok_or_else(|| ParseError::Invalid {
                    field: "COMPUTE@href",
                    expected: "a /compute/<number> URL",
                    got: href.to_owned(),
                })?;
            Ok(CollectionEntry {
                id: id.to_owned(),
                name: compute.attribute("name").map(str::to_owned),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_the_1_2_document() {
        let context = vec![
            ("USERDATA".to_owned(), hex::encode("#!/bin/sh\necho <&>\n")),
            ("TARGET".to_owned(), "hdc".to_owned()),
            ("HOSTNAME".to_owned(), "$NAME".to_owned()),
            ("IP_PUBLIC".to_owned(), "$NIC[IP]".to_owned()),
            ("NOTE".to_owned(), "a<b & c>d".to_owned()),
        ];
        let body = compute_body(&ComputeRequest {
            name: "conpaas-manager-php-u1-s5",
            instance_type: "small",
            os_arch: "x86_64",
            image_id: 42,
            network_id: 1,
            context: &context,
        });
        assert_eq!(
            body,
            "<COMPUTE><NAME>conpaas-manager-php-u1-s5</NAME><INSTANCE_TYPE>small</INSTANCE_TYPE>\
             <OS><TYPE arch=\"x86_64\" /></OS><DISK><STORAGE href=\"/storage/42\" /></DISK><NIC><NETWORK href=\"/network/1\" /></NIC>\
             <CONTEXT><USERDATA>23212f62696e2f73680a6563686f203c263e0a</USERDATA><TARGET>hdc</TARGET>\
             <HOSTNAME>$NAME</HOSTNAME><IP_PUBLIC>$NIC[IP]</IP_PUBLIC><NOTE>a&lt;b &amp; c&gt;d</NOTE>\
             </CONTEXT></COMPUTE>"
        );
        // Well-formed, and the text comes back unescaped.
        let document = roxmltree::Document::parse(&body).unwrap();
        let note = document
            .descendants()
            .find(|node| node.has_tag_name("NOTE"))
            .unwrap();
        assert_eq!(note.text(), Some("a<b & c>d"));
    }

    #[test]
    fn context_names() {
        for (name, ok) in [
            ("USERDATA", true),
            ("CONPAAS_SERVICE", true),
            ("X1", true),
            ("", false),
            ("1X", false),
            ("conpaas", false),
            ("A-B", false),
            ("A B", false),
        ] {
            assert_eq!(is_context_name(name), ok, "{name:?}");
        }
    }

    const ANSWER: &str = r#"<COMPUTE href="http://occi:4567/compute/42">
        <ID>42</ID><NAME>conpaas-manager-php-u1-s5</NAME><INSTANCE_TYPE>small</INSTANCE_TYPE>
        <STATE>PENDING</STATE>
        <DISK><STORAGE href="http://occi:4567/storage/42" name="ConPaaS"/><TYPE>DISK</TYPE><TARGET>hda</TARGET></DISK>
        <NIC><NETWORK href="http://occi:4567/network/1" name="public"/><IP>192.168.0.17</IP><MAC>02:00:c0:a8:00:11</MAC></NIC>
        <CONTEXT><HOSTNAME>conpaas-manager-php-u1-s5</HOSTNAME></CONTEXT>
        </COMPUTE>"#;

    #[test]
    fn compute_answer() {
        assert_eq!(
            parse_compute(ANSWER).unwrap(),
            Compute {
                id: "42".into(),
                name: Some("conpaas-manager-php-u1-s5".into()),
                state: OcciState::Waiting("PENDING".into()),
                ip: Some("192.168.0.17".into()),
                created: None,
            }
        );
    }

    fn check_compute(text: &str, expect: &str) {
        let got = match parse_compute(text) {
            Ok(compute) => format!(
                "{} {} {}",
                compute.id,
                compute.state,
                compute.ip.as_deref().unwrap_or("-")
            ),
            Err(error) => format!("error: {error}"),
        };
        assert_eq!(got, expect, "{text}");
    }

    #[test]
    fn compute_answers() {
        check_compute(
            "<COMPUTE><ID>7</ID><STATE>active</STATE><NIC><IP>10.0.0.2</IP></NIC></COMPUTE>",
            "7 ACTIVE 10.0.0.2",
        );
        // No NIC, or a NIC without IP: no address yet.
        check_compute(
            "<COMPUTE><ID>7</ID><STATE>ACTIVE</STATE></COMPUTE>",
            "7 ACTIVE -",
        );
        check_compute(
            "<COMPUTE><ID>7</ID><STATE>ACTIVE</STATE><NIC><MAC>x</MAC></NIC><NIC><IP>10.0.0.3</IP></NIC></COMPUTE>",
            "7 ACTIVE 10.0.0.3",
        );
        check_compute(
            "<COMPUTE><ID>7</ID><STATE>ACTIVE</STATE><NIC><IP> </IP></NIC></COMPUTE>",
            "7 ACTIVE -",
        );
        check_compute(
            "<COMPUTE xmlns=\"urn:x\"><ID>7</ID><STATE>FAILED</STATE></COMPUTE>",
            "7 FAILED -",
        );
        check_compute(
            "<COMPUTE><STATE>ACTIVE</STATE></COMPUTE>",
            "error: the ID element is missing",
        );
        check_compute(
            "<COMPUTE><ID>7</ID></COMPUTE>",
            "error: the STATE element is missing",
        );
        check_compute(
            "<COMPUTE><ID>../7</ID><STATE>ACTIVE</STATE></COMPUTE>",
            "error: ID is not a number: \"../7\"",
        );
        check_compute(
            "<COMPUTE><ID>7</ID><STATE>ACTIVE</STATE><NIC><IP>nope</IP></NIC></COMPUTE>",
            "error: NIC/IP is not an IP address: \"nope\"",
        );
        check_compute(
            "<ERROR>boom</ERROR>",
            "error: expected a COMPUTE document, got <ERROR>",
        );
        assert!(matches!(
            parse_compute("<COMPUTE><ID>7</ID"),
            Err(ParseError::Xml(_))
        ));
        // No entity expansion from a server.
        assert!(matches!(
            parse_compute(
                "<!DOCTYPE COMPUTE [<!ENTITY a \"aaaa\">]><COMPUTE><ID>7</ID><STATE>&a;</STATE></COMPUTE>"
            ),
            Err(ParseError::Xml(_))
        ));
    }

    #[test]
    fn an_xml_error_says_its_cause_once() {
        let Err(error) = parse_compute("<COMPUTE><ID>7</ID") else {
            panic!("parsed");
        };
        // Issue 11: the cause is the source, not repeated in the message.
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert!(!error.to_string().contains(&cause), "{error}");
        let shown = crate::model::ErrorChain(&error).to_string();
        assert_eq!(shown.matches(&cause).count(), 1, "{shown}");
        assert!(
            shown.starts_with("the answer is not well-formed XML: "),
            "{shown}"
        );
    }

    #[test]
    fn collection() {
        let text = r#"<COMPUTE_COLLECTION>
            <COMPUTE href="http://occi:4567/compute/3" name="a"/>
            <COMPUTE href="http://occi:4567/compute/12"/>
        </COMPUTE_COLLECTION>"#;
        assert_eq!(
            parse_collection(text).unwrap(),
            vec![
                CollectionEntry {
                    id: "3".into(),
                    name: Some("a".into())
                },
                CollectionEntry {
                    id: "12".into(),
                    name: None
                },
            ]
        );
        assert!(
            parse_collection("<COMPUTE_COLLECTION/>")
                .unwrap()
                .is_empty()
        );
        assert!(
            parse_collection(
                r#"<COMPUTE_COLLECTION><COMPUTE href="/storage/3"/></COMPUTE_COLLECTION>"#
            )
            .is_err()
        );
        assert!(parse_collection("<COMPUTE/>").is_err());
    }

    #[test]
    fn creation_time_when_given() {
        let with = |stime: &str| {
            parse_compute(&format!(
                "<COMPUTE><ID>7</ID><STATE>ACTIVE</STATE><STIME>{stime}</STIME></COMPUTE>"
            ))
            .unwrap()
            .created
        };
        assert_eq!(
            with("1764763200").map(|time| time.to_rfc3339()),
            Some("2025-12-03T12:00:00+00:00".to_owned())
        );
        assert_eq!(with("0"), None);
        assert_eq!(with("yesterday"), None);
        assert_eq!(parse_compute(ANSWER).unwrap().created, None);
    }

    #[test]
    fn states() {
        for (text, state, terminal) in [
            ("INIT", NodeState::Pending, false),
            ("PENDING", NodeState::Pending, false),
            ("HOLD", NodeState::Pending, false),
            ("SUSPENDED", NodeState::Pending, false),
            ("ACTIVE", NodeState::Running, false),
            ("STOPPED", NodeState::Gone, true),
            ("FAILED", NodeState::Gone, true),
            ("DONE", NodeState::Gone, true),
            ("POWEROFF", NodeState::Pending, false),
        ] {
            let parsed = OcciState::parse(text);
            assert_eq!(parsed.node_state(), state, "{text}");
            assert_eq!(parsed.is_terminal(), terminal, "{text}");
            assert_eq!(parsed.to_string(), text);
        }
    }
}
