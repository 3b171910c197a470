//! The managers' cloud: OpenNebula's OCCI 0.x dialect (`occi-server`, libcloud's
//! `api_version` 2.2; `spec/clouds.md` §7) as 1.2 managers speak it to start their agents.
//! `POST /compute` starts an agent VM on the real cloud through the director
//! ([`Director::create_agent`]), `GET /compute[/<id>]` lists and reads the service's agents,
//! `DELETE /compute/<id>` terminates one. Callers authenticate as OpenNebula's OCCI server
//! expects (HTTP Basic, the password as its SHA-1 in hex) with their service's own key.
//!
//! What libcloud (0.8 in the 1.2 managers, 3.x on PyPI) needs of an answer: no namespace;
//! `STATE` text and an `INSTANCE_TYPE` element in every `COMPUTE`; `DISK/STORAGE@href` and
//! `NIC/NETWORK@href` in every disk and NIC; `NIC/IP`, the agent's address, already in the
//! create's answer (a manager never polls for it); `DELETE` answers 204.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::handlers::PathId;
use crate::director::{AgentCaller, AgentRequest, Director, Error};
use crate::model::ErrorChain;
use crate::store::AgentVm;

/// The manager on the other end, from its `Authorization` header; 401 otherwise.
pub(super) struct CloudKeyCaller(AgentCaller);

impl axum::extract::FromRequestParts<Director> for CloudKeyCaller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        director: &Director,
    ) -> Result<Self, Self::Rejection> {
        caller(director, &parts.headers).await.map(CloudKeyCaller)
    }
}

async fn caller(director: &Director, headers: &HeaderMap) -> Result<AgentCaller, Response> {
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let Some((user, sha1_hex)) = credentials.as_deref().and_then(|text| text.split_once(':'))
    else {
        return Err(unauthorized());
    };
    match director.authenticate_agent_cloud(user, sha1_hex).await {
        Ok(Some(caller)) => Ok(caller),
        Ok(None) => {
            tracing::info!(user = %user.chars().take(64).collect::<String>(), "managers' cloud: credentials refused");
            Err(unauthorized())
        }
        Err(error) => Err(failure(&error)),
    }
}

fn unauthorized() -> Response {
    let mut response = text(
        StatusCode::UNAUTHORIZED,
        "Authentication failed: unknown user or key\n",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"ConPaaS director\""),
    );
    response
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The answer to a failure: refusals say why, the rest is a short 503 (logged with its cause).
fn failure(error: &Error) -> Response {
    match error {
        Error::LimitReached { what, max } => (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("at most {max} {what}\n"),
        )
            .into_response(),
        Error::ServiceNotFound(_) => text(
            StatusCode::FORBIDDEN,
            "the service is not running: no agent VM can be started\n",
        ),
        _ => {
            tracing::warn!(error = %ErrorChain(error), "managers' cloud: request failed");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the cloud could not do it now; try again\n",
            )
        }
    }
}

fn xml(status: StatusCode, document: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/xml")],
        document,
    )
        .into_response()
}

/// Escapes text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(ch),
        }
    }
    out
}

/// OpenNebula's state word for a row.
fn state(agent: &AgentVm) -> &'static str {
    use crate::model::Lifecycle;
    match agent.lifecycle {
        Lifecycle::Starting => "PENDING",
        Lifecycle::Running => "ACTIVE",
        Lifecycle::Stopping | Lifecycle::Undoing => "DONE",
    }
}

/// The `COMPUTE` document of one agent.
fn compute(agent: &AgentVm) -> String {
    let ip = agent
        .address
        .as_deref()
        .map(|ip| format!("<IP>{}</IP>", escape(ip)))
        .unwrap_or_default();
    format!(
        "<COMPUTE href=\"/compute/{id}\"><ID>{id}</ID><NAME>{name}</NAME>\
         <INSTANCE_TYPE>small</INSTANCE_TYPE><STATE>{state}</STATE>\
         <DISK><STORAGE href=\"/storage/0\" name=\"conpaas\"/><TYPE>DISK</TYPE></DISK>\
         <NIC><NETWORK href=\"/network/0\" name=\"{cloud}\"/>{ip}</NIC></COMPUTE>",
        id = agent.id,
        name = escape(&agent.name),
        state = state(agent),
        cloud = escape(&agent.cloud),
    )
}

/// The first child element of `parent` named `name`.
fn child<'a, 'input>(
    parent: roxmltree::Node<'a, 'input>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    parent
        .children()
        .find(|node| node.is_element() && node.tag_name().name() == name)
}

/// What a `POST /compute` body asks for: its `NAME` and its `CONTEXT/USERDATA` (hex).
fn parse_create(body: &[u8]) -> Result<AgentRequest, &'static str> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8 XML")?;
    let document = roxmltree::Document::parse(text).map_err(|_| "the body is not XML")?;
    let root = document.root_element();
    if root.tag_name().name() != "COMPUTE" {
        return Err("expected a COMPUTE document");
    }
    let name = child(root, "NAME")
        .and_then(|node| node.text())
        .unwrap_or_default()
        .trim()
        .to_owned();
    let hex_data = child(root, "CONTEXT")
        .and_then(|context| child(context, "USERDATA"))
        .and_then(|node| node.text())
        .ok_or("no CONTEXT/USERDATA: the agent's boot script is missing")?;
    let bytes = hex::decode(hex_data.trim()).map_err(|_| "CONTEXT/USERDATA is not hexadecimal")?;
    let script = String::from_utf8(bytes).map_err(|_| "CONTEXT/USERDATA is not a text")?;
    Ok(AgentRequest::new(name, script))
}

/// `POST /compute`: an agent VM for the caller's service.
async fn create(director: Director, caller: AgentCaller, body: Body) -> Response {
    let body: Bytes = match axum::body::to_bytes(body, super::params::MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large\n"),
    };
    let request = match parse_create(&body) {
        Ok(request) => request,
        Err(why) => {
            tracing::info!(sid = %caller.sid, why, "managers' cloud: unreadable create");
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{why}\n"),
            )
                .into_response();
        }
    };
    match director.create_agent(&caller, request).await {
        Ok(agent) => xml(StatusCode::CREATED, compute(&agent)),
        Err(error) => failure(&error),
    }
}

/// `GET /compute`: the caller's service's agents.
async fn list(director: Director, caller: AgentCaller) -> Response {
    match director.agents_of_service(caller.sid).await {
        Ok(agents) => {
            let mut document = String::from("<COMPUTE_COLLECTION>");
            for agent in agents.iter().filter(|agent| agent.cloud == caller.cloud) {
                document.push_str(&format!(
                    "<COMPUTE href=\"/compute/{}\" name=\"{}\"/>",
                    agent.id,
                    escape(&agent.name)
                ));
            }
            document.push_str("</COMPUTE_COLLECTION>");
            xml(StatusCode::OK, document)
        }
        Err(error) => failure(&error),
    }
}

/// `GET /compute/<id>`: one agent of the caller's service.
async fn show(director: Director, caller: AgentCaller, id: i32) -> Response {
    match director.agent(caller.sid, id).await {
        Ok(Some(agent)) => xml(StatusCode::OK, compute(&agent)),
        Ok(None) => text(StatusCode::NOT_FOUND, "no such compute resource\n"),
        Err(error) => failure(&error),
    }
}

/// `DELETE /compute/<id>`: terminates one agent of the caller's service (204).
async fn delete(director: Director, caller: AgentCaller, id: i32) -> Response {
    match director.delete_agent(caller.sid, id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => text(StatusCode::NOT_FOUND, "no such compute resource\n"),
        Err(error) => failure(&error),
    }
}

/// `GET /compute/<id>` and `DELETE /compute/<id>` on one route (the key is checked before
/// the id is read).
pub(super) async fn one(
    State(director): State<Director>,
    method: axum::http::Method,
    CloudKeyCaller(caller): CloudKeyCaller,
    PathId(id): PathId,
) -> Response {
    if method == axum::http::Method::DELETE {
        delete(director, caller, id).await
    } else {
        show(director, caller, id).await
    }
}

/// `GET /compute` and `POST /compute` on one route.
pub(super) async fn collection(
    State(director): State<Director>,
    method: axum::http::Method,
    CloudKeyCaller(caller): CloudKeyCaller,
    body: Body,
) -> Response {
    if method == axum::http::Method::POST {
        create(director, caller, body).await
    } else {
        list(director, caller).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body of a 1.2 manager (bundled libcloud 0.8), as `spec/clouds.md` §7.6 says.
    const MANAGER_BODY: &str = "<COMPUTE><NAME>conpaas-agent-php-u1-s5</NAME>\
        <INSTANCE_TYPE>small</INSTANCE_TYPE><OS><TYPE arch=\"x86_64\" /><ROOT>sda</ROOT></OS>\
        <DISK><STORAGE href=\"/storage/0\" /><TARGET>sda</TARGET></DISK>\
        <NIC><NETWORK href=\"/network/0\" /></NIC><CONTEXT><HOSTNAME>$NAME</HOSTNAME>\
        <IP_PUBLIC>$NIC[IP]</IP_PUBLIC><USERDATA>23212f62696e2f73680a6563686f2068690a</USERDATA>\
        <TARGET>sdb</TARGET></CONTEXT></COMPUTE>";

    #[test]
    fn a_managers_create_is_read() {
        let request = parse_create(MANAGER_BODY.as_bytes()).unwrap();
        assert_eq!(request.name, "conpaas-agent-php-u1-s5");
        assert_eq!(request.user_data, "#!/bin/sh\necho hi\n");
    }

    #[test]
    fn bad_creates_are_refused_with_a_reason() {
        assert!(parse_create(b"not xml").is_err());
        assert!(parse_create(b"<OTHER/>").is_err());
        assert!(parse_create(b"<COMPUTE><NAME>x</NAME></COMPUTE>").is_err());
        assert!(
            parse_create(b"<COMPUTE><CONTEXT><USERDATA>zz</USERDATA></CONTEXT></COMPUTE>").is_err()
        );
        // An empty NAME (libcloud 3.x sends one) is the director's to choose.
        let request = parse_create(
            b"<COMPUTE><NAME /><CONTEXT><USERDATA>6869</USERDATA></CONTEXT></COMPUTE>",
        )
        .unwrap();
        assert_eq!(request.name, "");
    }

    #[test]
    fn answers_carry_what_libcloud_reads() {
        let agent = AgentVm {
            id: 12,
            sid: crate::model::ServiceId(5),
            uid: crate::model::UserId(1),
            cloud: "iaas".into(),
            name: "a<b".into(),
            vmid: Some("i-1".into()),
            address: Some("10.0.0.7".into()),
            lifecycle: crate::model::Lifecycle::Running,
            created: chrono::NaiveDateTime::default(),
        };
        let document = compute(&agent);
        let parsed = roxmltree::Document::parse(&document).unwrap();
        let root = parsed.root_element();
        let text_of = |name: &str| {
            root.descendants()
                .find(|node| node.tag_name().name() == name)
                .and_then(|node| node.text())
        };
        assert_eq!(text_of("ID"), Some("12"));
        assert_eq!(text_of("NAME"), Some("a<b"));
        assert_eq!(text_of("STATE"), Some("ACTIVE"));
        assert_eq!(text_of("IP"), Some("10.0.0.7"));
        assert!(text_of("INSTANCE_TYPE").is_some());
        for (element, attribute) in [("STORAGE", "/storage/"), ("NETWORK", "/network/")] {
            let href = root
                .descendants()
                .find(|node| node.tag_name().name() == element)
                .and_then(|node| node.attribute("href"))
                .unwrap();
            assert!(href.starts_with(attribute), "{href}");
        }
    }
}
