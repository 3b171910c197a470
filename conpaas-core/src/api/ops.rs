//! The routes beside the 1.2 API: 1.3's `/version`, and the operators' `/healthz`, `/readyz`
//! and `/metrics` (docs/operations.md). Plain text, no internals: causes go to the log.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::answer::{self, Cors};
use super::auth;
use crate::director::{Director, Outcome};

/// This director's version, as `/version` answers it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn text(status: StatusCode, body: String, cors: Cors) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    if cors == Cors::Yes {
        response.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    response
}

/// `GET /version`: as 1.3 answered it, the version as plain text with the CORS header.
pub(super) async fn version() -> Response {
    text(StatusCode::OK, VERSION.to_owned(), Cors::Yes)
}

/// `GET /healthz`: the process answers (liveness); checks nothing else.
pub(super) async fn healthz() -> Response {
    text(StatusCode::OK, "ok\n".to_owned(), Cors::No)
}

/// `GET /readyz`: 200 `ready` when the database answers and takes writes, the migrations are
/// current and the CA's key is loaded; 503 naming the failed checks otherwise (their causes
/// are logged). A cloud that failed its last probe leaves the director ready (the rest is
/// served) and says `ready; degraded: ...` naming it, so that a balancer keeps the replica.
pub(super) async fn readyz(State(director): State<Director>) -> Response {
    let readiness = director.readiness().await;
    if readiness.is_ready() {
        let down = director.clouds_down();
        let body = if down.is_empty() {
            "ready\n".to_owned()
        } else {
            format!(
                "ready; degraded: cloud {} not usable (see the director's log)\n",
                down.join(", ")
            )
        };
        return text(StatusCode::OK, body, Cors::No);
    }
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: {}\n", readiness.failed().join(", ")),
        Cors::No,
    )
}

/// `GET /metrics`: the director's metrics in the Prometheus text format, for the frontend's
/// certificate or a client address of `[director] METRICS_ALLOW`; 403 for anyone else.
pub(super) async fn metrics(
    State(director): State<Director>,
    caller: auth::Caller,
    headers: axum::http::HeaderMap,
) -> Response {
    // A scraper elsewhere presents the token of METRICS_TOKEN_FILE (Prometheus'
    // `authorization: credentials_file`), not the director's own key.
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|token| director.metrics_token_matches(token.trim()));
    let allowed = bearer
        || auth::is_frontend(&caller)
        || caller
            .peer
            .as_ref()
            .is_some_and(|peer| director.metrics_allowed(peer.remote.ip()));
    if !allowed {
        tracing::info!(
            "metrics refused: no metrics token, allowed address or frontend certificate"
        );
        let mut page = answer::html_status(StatusCode::FORBIDDEN);
        page.extensions_mut().insert(Outcome::Refused);
        return page;
    }
    director.refresh_state_metrics().await;
    (
        [(header::CONTENT_TYPE, crate::director::metrics::CONTENT_TYPE)],
        director.metrics().encode(),
    )
        .into_response()
}
