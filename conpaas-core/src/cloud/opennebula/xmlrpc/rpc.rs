//! A small XML-RPC client for oned: the method call encoded by hand, the answer read with
//! roxmltree, over the HTTP client the OCCI driver uses (same TLS roots, timeouts, retries and
//! failure classification).
//!
//! OpenNebula answers every call with one array, `[success (boolean), result (string, int or
//! i8), error code (int), ...]` (`RequestXRPC::make_response`); a refusal carries its message
//! in the second element and one of the codes of `Request::ErrorCode` in the third.

use reqwest::StatusCode;
use secrecy::{ExposeSecret as _, SecretString};

use super::super::OpenNebulaTuning;
use super::super::transport::{Failure, classify, http_client, quote, read_limited};
use crate::cloud::{Error, OpenNebulaXmlRpcSettings};

/// OpenNebula's error codes (`Request::ErrorCode`, the third element of a failed answer).
pub(super) mod code {
    /// The session (`USER:PASSWORD`) was not accepted.
    pub(crate) const AUTHENTICATION: i64 = 0x0100;
    /// The user may not do this (permissions, quotas).
    pub(crate) const AUTHORIZATION: i64 = 0x0200;
    /// The object (VM, template, image, network) does not exist.
    pub(crate) const NO_EXISTS: i64 = 0x0400;
    /// The action is not possible in the object's state.
    pub(crate) const ACTION: i64 = 0x0800;
    /// The call was malformed (a wrong parameter).
    pub(crate) const XML_RPC_API: i64 = 0x1000;
    /// oned failed or could not serve the call now (an HA cluster electing its leader).
    pub(crate) const INTERNAL: i64 = 0x2000;
    /// The object could not be allocated (an image or network it names, leases...).
    pub(crate) const ALLOCATE: i64 = 0x4000;
    /// The object is locked.
    pub(crate) const LOCKED: i64 = 0x8000;
    /// An HA cluster could not replicate the change: whether it was applied is unknown.
    pub(crate) const REPLICATION: i64 = 0x10000;
}

/// The name of an OpenNebula error code, for messages and [`Error::Refused::code`].
pub(super) fn code_name(value: i64) -> String {
    match value {
        code::AUTHENTICATION => "AUTHENTICATION".into(),
        code::AUTHORIZATION => "AUTHORIZATION".into(),
        code::NO_EXISTS => "NO_EXISTS".into(),
        code::ACTION => "ACTION".into(),
        code::XML_RPC_API => "XML_RPC_API".into(),
        code::INTERNAL => "INTERNAL".into(),
        code::ALLOCATE => "ALLOCATE".into(),
        code::LOCKED => "LOCKED".into(),
        code::REPLICATION => "REPLICATION".into(),
        other => format!("0x{other:x}"),
    }
}

/// A parameter of a call (after the session, which every call begins with).
#[derive(Debug, Clone, Copy)]
pub(super) enum Param<'a> {
    /// `<string>`.
    Str(&'a str),
    /// `<int>` (32 bits, as oned's `i`).
    Int(i32),
    /// `<boolean>`.
    Bool(bool),
}

/// A value of an answer, as far as the driver reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    /// `<boolean>`.
    Bool(bool),
    /// `<int>`, `<i4>` or `<i8>`.
    Int(i64),
    /// `<string>`, or a value without a type.
    Str(String),
    /// Any other type (named), which no answer the driver reads has.
    Other(String),
}

/// OpenNebula said no: `success` was false.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    /// The error code (see [`code`]).
    pub(super) code: i64,
    /// OpenNebula's message, `[one.method] ...`.
    pub(super) message: String,
}

/// What one call answered: the result, or OpenNebula's refusal.
pub(super) type Answer = Result<Value, Refusal>;

/// An XML-RPC client bound to one OpenNebula endpoint and account.
#[derive(Debug)]
pub(super) struct Rpc {
    cloud: String,
    http: reqwest::Client,
    url: String,
    user: String,
    /// `USER:PASSWORD`, the first parameter of every call.
    session: SecretString,
    tuning: OpenNebulaTuning,
}

impl Rpc {
    pub(super) fn new(
        cloud: &str,
        settings: &OpenNebulaXmlRpcSettings,
        tuning: OpenNebulaTuning,
    ) -> Result<Rpc, Error> {
        let http = http_client(
            cloud,
            settings.endpoint.scheme,
            &tuning,
            "OpenNebula XML-RPC",
        )?;
        Ok(Rpc {
            cloud: cloud.to_owned(),
            http,
            url: settings.url(),
            user: settings.user.clone(),
            session: SecretString::from(format!(
                "{}:{}",
                settings.user,
                settings.password.expose_secret()
            )),
            tuning,
        })
    }

    /// The endpoint, for messages.
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    pub(super) fn tuning(&self) -> &OpenNebulaTuning {
        &self.tuning
    }

    /// One call, no retry. A refused session is final; any other refusal is the caller's.
    pub(super) async fn attempt(
        &self,
        method: &str,
        params: &[Param<'_>],
    ) -> Result<Answer, Failure> {
        let started = std::time::Instant::now();
        // The body holds the password: it is never logged.
        let body = method_call(method, self.session.expose_secret(), params);
        let sent = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "text/xml")
            .body(body)
            .send()
            .await;
        let result = match sent {
            Ok(response) => {
                let status = response.status();
                read_limited(response).await.map(|text| (status, text))
            }
            Err(error) => Err(error),
        };
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status, text) = match result {
            Ok(answer) => answer,
            Err(error) => {
                let failure = classify(error);
                tracing::debug!(cloud = %self.cloud, method, elapsed_ms, ?failure, "XML-RPC call failed");
                return Err(failure);
            }
        };
        tracing::debug!(cloud = %self.cloud, method, status = status.as_u16(), elapsed_ms, "XML-RPC call");
        if status.is_server_error() {
            // A proxy in front of oned, or oned's HTTP server failing: the call may have run.
            return Err(Failure::MaybeDone(format!(
                "the server answered {}",
                quote(&text, status)
            )));
        }
        if status != StatusCode::OK {
            return Err(Failure::Final(Error::Refused {
                code: format!("HTTP {}", status.as_u16()),
                message: format!(
                    "{method} at {}: the server answered {} (is XMLRPC the URL of OpenNebula's \
                     XML-RPC endpoint, such as https://one.example.org:2633/RPC2?)",
                    self.url,
                    quote(&text, status)
                ),
            }));
        }
        let answer = match parse_response(&text) {
            Ok(Response::Values(values)) => opennebula_answer(values),
            Ok(Response::Fault { code, message }) => {
                // xmlrpc-c's own fault: an unknown method or wrong parameter types. Sending the
                // same call again changes nothing.
                return Err(Failure::Final(Error::Refused {
                    code: format!("XML-RPC fault {code}"),
                    message: format!("{method} at {}: {}", self.url, one_line(&message)),
                }));
            }
            Err(problem) => Err(problem),
        };
        match answer {
            Ok(Err(refusal)) if refusal.code == code::AUTHENTICATION => {
                Err(Failure::Final(Error::Refused {
                    code: code_name(code::AUTHENTICATION),
                    message: format!(
                        "OpenNebula at {} refused user {:?}: check USER and PASSWORD (a \
                         password or a login token) of cloud {} (the server said: {})",
                        self.url,
                        self.user,
                        self.cloud,
                        one_line(&refusal.message)
                    ),
                }))
            }
            Ok(answer) => Ok(answer),
            // A 200 that is no OpenNebula answer (a captive proxy, a truncated body): the call
            // may have run.
            Err(problem) => Err(Failure::MaybeDone(format!("unreadable answer ({problem})"))),
        }
    }

    /// A call that may be sent again (reads, the terminate of a VM): retried with backoff
    /// while the server cannot be reached, fails, or says it cannot serve now (`INTERNAL`,
    /// `REPLICATION`). Other refusals are the caller's to judge.
    pub(super) async fn call(&self, method: &str, params: &[Param<'_>]) -> Result<Answer, Error> {
        let attempts = self.tuning.max_attempts.get();
        let mut last = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(self.tuning.backoff(attempt - 1)).await;
            }
            match self.attempt(method, params).await {
                Ok(Err(refusal)) if is_transient(&refusal) => {
                    let text = format!(
                        "OpenNebula answered {}: {}",
                        code_name(refusal.code),
                        one_line(&refusal.message)
                    );
                    tracing::info!(cloud = %self.cloud, method, attempt, attempts, failure = %text, "XML-RPC call refused for now, retrying if attempts remain");
                    last = text;
                }
                Ok(answer) => return Ok(answer),
                Err(Failure::Final(error)) => return Err(error),
                Err(Failure::NotSent(text) | Failure::MaybeDone(text)) => {
                    tracing::info!(cloud = %self.cloud, method, attempt, attempts, failure = %text, "XML-RPC call failed, retrying if attempts remain");
                    last = text;
                }
                Err(Failure::Said(answer)) => {
                    // Not produced by this client; kept total for the shared type.
                    last = format!("the server answered {}", quote(&answer.body, answer.status));
                }
            }
        }
        Err(self.unavailable(method, &last, attempts))
    }

    /// The error after `attempts` failed attempts.
    pub(super) fn unavailable(&self, method: &str, last: &str, attempts: u32) -> Error {
        Error::Unavailable(format!(
            "{method} at {}: {last} (after {attempts} attempt{})",
            self.url,
            if attempts == 1 { "" } else { "s" }
        ))
    }

    /// OpenNebula's refusal as an error: [`Error::Refused`] with the code's name.
    pub(super) fn refused(&self, refusal: &Refusal) -> Error {
        Error::Refused {
            code: code_name(refusal.code),
            message: format!("OpenNebula at {}: {}", self.url, one_line(&refusal.message)),
        }
    }
}

/// Whether a refusal says "not now" rather than "no": `INTERNAL` (oned failing, an HA cluster
/// without leader) and `REPLICATION`.
pub(super) fn is_transient(refusal: &Refusal) -> bool {
    matches!(refusal.code, code::INTERNAL | code::REPLICATION)
}

/// A server's message on one line, at most 300 characters.
pub(super) fn one_line(text: &str) -> String {
    let line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    line
}

/// `text` escaped for XML character data, without the characters XML 1.0 cannot carry.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            // Kept as such: a parser would turn a raw CR into LF.
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The `<methodCall>` of `method` with the session and `params`.
fn method_call(method: &str, session: &str, params: &[Param<'_>]) -> String {
    let mut body = String::from("<?xml version=\"1.0\"?><methodCall><methodName>");
    body.push_str(&escape(method));
    body.push_str("</methodName><params>");
    let session = Param::Str(session);
    for param in std::iter::once(&session).chain(params) {
        body.push_str("<param><value>");
        match param {
            Param::Str(text) => {
                body.push_str("<string>");
                body.push_str(&escape(text));
                body.push_str("</string>");
            }
            Param::Int(number) => body.push_str(&format!("<int>{number}</int>")),
            Param::Bool(flag) => body.push_str(if *flag {
                "<boolean>1</boolean>"
            } else {
                "<boolean>0</boolean>"
            }),
        }
        body.push_str("</value></param>");
    }
    body.push_str("</params></methodCall>");
    body
}

/// A `<methodResponse>`.
#[derive(Debug, PartialEq, Eq)]
enum Response {
    /// The values of the answer's array (OpenNebula answers one array).
    Values(Vec<Value>),
    /// A `<fault>`.
    Fault { code: i64, message: String },
}

fn element_children<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
) -> impl Iterator<Item = roxmltree::Node<'a, 'input>> {
    node.children().filter(|child| child.is_element())
}

fn child<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    element_children(node).find(|child| child.tag_name().name() == name)
}

/// The text of an element (empty when it has none).
fn text_of(node: roxmltree::Node<'_, '_>) -> String {
    node.children()
        .filter(|child| child.is_text())
        .filter_map(|child| child.text())
        .collect()
}

fn parse_value(value: roxmltree::Node<'_, '_>) -> Result<Value, String> {
    let Some(typed) = element_children(value).next() else {
        // XML-RPC: a value without a type is a string.
        return Ok(Value::Str(text_of(value)));
    };
    let text = text_of(typed);
    match typed.tag_name().name() {
        "string" => Ok(Value::Str(text)),
        "boolean" => match text.trim() {
            "1" => Ok(Value::Bool(true)),
            "0" => Ok(Value::Bool(false)),
            other => Err(format!("boolean {other:?}")),
        },
        "int" | "i4" | "i8" => text
            .trim()
            .parse()
            .map(Value::Int)
            .map_err(|_| format!("integer {:?}", text.trim())),
        other => Ok(Value::Other(other.to_owned())),
    }
}

fn parse_response(body: &str) -> Result<Response, String> {
    let document =
        roxmltree::Document::parse(body).map_err(|error| format!("malformed XML: {error}"))?;
    let root = document.root_element();
    if root.tag_name().name() != "methodResponse" {
        return Err(format!(
            "expected methodResponse, got {}",
            root.tag_name().name()
        ));
    }
    if let Some(fault) = child(root, "fault") {
        let mut code = 0;
        let mut message = String::new();
        if let Some(members) = child(fault, "value").and_then(|value| child(value, "struct")) {
            for member in element_children(members) {
                let name = child(member, "name").map(text_of).unwrap_or_default();
                let value = child(member, "value").map(parse_value).transpose()?;
                match (name.as_str(), value) {
                    ("faultCode", Some(Value::Int(number))) => code = number,
                    ("faultString", Some(Value::Str(text))) => message = text,
                    _ => {}
                }
            }
        }
        return Ok(Response::Fault { code, message });
    }
    let value = child(root, "params")
        .and_then(|params| child(params, "param"))
        .and_then(|param| child(param, "value"))
        .ok_or("no params/param/value")?;
    let array = child(value, "array")
        .and_then(|array| child(array, "data"))
        .ok_or("the answer is not an array")?;
    let values = element_children(array)
        .filter(|node| node.tag_name().name() == "value")
        .map(parse_value)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Response::Values(values))
}

/// `[success, result, code, ...]` as a result or a refusal.
fn opennebula_answer(values: Vec<Value>) -> Result<Answer, String> {
    let mut values = values.into_iter();
    let success = match values.next() {
        Some(Value::Bool(flag)) => flag,
        other => {
            return Err(format!(
                "the answer does not begin with a boolean: {other:?}"
            ));
        }
    };
    let result = values.next().ok_or("the answer has no result")?;
    let number = match values.next() {
        Some(Value::Int(number)) => number,
        // Some calls of old releases leave the code out of a success.
        None if success => 0,
        other => return Err(format!("the answer's error code is {other:?}")),
    };
    if success {
        return Ok(Ok(result));
    }
    let message = match result {
        Value::Str(text) => text,
        other => format!("{other:?}"),
    };
    Ok(Err(Refusal {
        code: number,
        message,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_encoded_with_the_session_first() {
        let body = method_call(
            "one.template.instantiate",
            "oneadmin:pw<&>",
            &[
                Param::Int(7),
                Param::Str("vm \"a\"\r\n\u{1}x"),
                Param::Bool(false),
            ],
        );
        assert_eq!(
            body,
            "<?xml version=\"1.0\"?><methodCall><methodName>one.template.instantiate</methodName>\
             <params><param><value><string>oneadmin:pw&lt;&amp;&gt;</string></value></param>\
             <param><value><int>7</int></value></param>\
             <param><value><string>vm &quot;a&quot;&#13;\nx</string></value></param>\
             <param><value><boolean>0</boolean></value></param></params></methodCall>"
        );
        roxmltree::Document::parse(&body).unwrap();
    }

    #[test]
    fn opennebula_answers_are_read() {
        let ok = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<methodResponse>\r\n<params>\r\n\
                  <param><value><array><data>\r\n<value><boolean>1</boolean></value>\r\n\
                  <value><i4>42</i4></value>\r\n<value><i4>0</i4></value>\r\n</data></array>\
                  </value></param>\r\n</params>\r\n</methodResponse>\r\n";
        let Response::Values(values) = parse_response(ok).unwrap() else {
            panic!()
        };
        assert_eq!(opennebula_answer(values).unwrap(), Ok(Value::Int(42)));

        let refused = "<methodResponse><params><param><value><array><data>\
                       <value><boolean>0</boolean></value>\
                       <value><string>[one.vm.info] Error getting virtual machine [9].</string></value>\
                       <value><i4>1024</i4></value><value><i4>9</i4></value><value><i8>0</i8></value>\
                       </data></array></value></param></params></methodResponse>";
        let Response::Values(values) = parse_response(refused).unwrap() else {
            panic!()
        };
        assert_eq!(
            opennebula_answer(values).unwrap(),
            Err(Refusal {
                code: code::NO_EXISTS,
                message: "[one.vm.info] Error getting virtual machine [9].".into()
            })
        );

        // An untyped value is a string; the document inside is escaped text.
        let text = "<methodResponse><params><param><value><array><data>\
                    <value><boolean>1</boolean></value><value>&lt;VM&gt;&lt;ID&gt;1&lt;/ID&gt;&lt;/VM&gt;</value>\
                    <value><int>0</int></value></data></array></value></param></params></methodResponse>";
        let Response::Values(values) = parse_response(text).unwrap() else {
            panic!()
        };
        assert_eq!(
            opennebula_answer(values).unwrap(),
            Ok(Value::Str("<VM><ID>1</ID></VM>".into()))
        );
    }

    #[test]
    fn faults_and_garbage_are_told_apart() {
        let fault = "<methodResponse><fault><value><struct>\
                     <member><name>faultCode</name><value><int>-501</int></value></member>\
                     <member><name>faultString</name><value><string>Type mismatch</string></value></member>\
                     </struct></value></fault></methodResponse>";
        assert_eq!(
            parse_response(fault).unwrap(),
            Response::Fault {
                code: -501,
                message: "Type mismatch".into()
            }
        );
        for garbage in [
            "",
            "<html>502</html>",
            "<methodResponse><params><param><value><int>1</int></value></param></params></methodResponse>",
        ] {
            assert!(parse_response(garbage).is_err(), "{garbage}");
        }
        assert!(opennebula_answer(vec![Value::Int(1)]).is_err());
        assert!(opennebula_answer(vec![Value::Bool(true)]).is_err());
        assert!(
            opennebula_answer(vec![
                Value::Bool(false),
                Value::Str("x".into()),
                Value::Str("y".into())
            ])
            .is_err()
        );
    }

    #[test]
    fn codes_are_named() {
        assert_eq!(code_name(0x0100), "AUTHENTICATION");
        assert_eq!(code_name(0x4000), "ALLOCATE");
        assert_eq!(code_name(0x40000), "0x40000");
        assert!(is_transient(&Refusal {
            code: code::INTERNAL,
            message: String::new()
        }));
        assert!(!is_transient(&Refusal {
            code: code::ACTION,
            message: String::new()
        }));
    }
}
