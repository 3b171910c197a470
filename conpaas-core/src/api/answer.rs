//! The shapes of 1.2 answers: bare JSON, jsonify JSON, error objects, the 401 texts, HTML pages.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::wire;
use crate::director::Outcome;

/// Whether an answer carries `Access-Control-Allow-Origin: *` (1.2's accidental split, kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cors {
    /// With the header.
    Yes,
    /// Without.
    No,
}

const TEXT_HTML: &str = "text/html; charset=utf-8";

fn with_cors(mut response: Response, cors: Cors) -> Response {
    if cors == Cors::Yes {
        response.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    response
}

/// A bare JSON answer (`text/html; charset=utf-8`, Python's separators).
pub fn bare<T: Serialize + ?Sized>(value: &T, cors: Cors) -> Response {
    with_cors(
        ([(header::CONTENT_TYPE, TEXT_HTML)], wire::bare_json(value)).into_response(),
        cors,
    )
}

/// Bare `true`.
pub fn yes(cors: Cors) -> Response {
    bare(&true, cors)
}

/// Bare `false`: a refusal, whatever its status says (the request log's `outcome`).
pub fn no(cors: Cors) -> Response {
    refused(bare(&false, cors))
}

/// Marks an answer given with status 200 as a refusal.
fn refused(mut response: Response) -> Response {
    response.extensions_mut().insert(Outcome::Refused);
    response
}

/// A jsonify answer (`application/json`).
pub fn jsonify<T: Serialize + ?Sized>(value: &T, cors: Cors) -> Response {
    with_cors(
        (
            [(header::CONTENT_TYPE, "application/json")],
            wire::jsonify(value),
        )
            .into_response(),
        cors,
    )
}

/// The error object `{"error": true, "msg": ...}` (jsonify), a refusal.
pub fn error_object(msg: &str, cors: Cors) -> Response {
    refused(jsonify(&wire::ErrorObject { error: true, msg }, cors))
}

/// A plain-text 401 as 1.2's `cert_required` answered.
pub fn unauthorized(body: &'static str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, TEXT_HTML)],
        body,
    )
        .into_response()
}

/// A small HTML page for framework-level statuses (404, 400, 413, 500), no internals.
pub fn html_status(status: StatusCode) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let code = status.as_u16();
    let body = format!(
        "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 3.2 Final//EN\">\n<title>{code} {reason}</title>\n<h1>{reason}</h1>\n"
    );
    (status, [(header::CONTENT_TYPE, "text/html")], body).into_response()
}

/// Marks an answer as the last on its connection: the 1.2 managers read until EOF.
pub fn close(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
