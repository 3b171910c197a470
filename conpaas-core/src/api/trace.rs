//! The request log: tower-http's `TraceLayer` with one span per request (request id, method,
//! route pattern, caller, remote address) and one `request` event when it is answered
//! (status, outcome, latency in microseconds); every request gets the director's own id in
//! `x-request-id` (a client's is kept apart as its `client_request_id`: clients cannot make
//! their requests share an id with others'). Never the URL (1.2 clients put passwords in
//! query strings), parameters or bodies.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::MatchedPath;
use axum::http::{HeaderValue, Request, Response};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use tracing::Span;

use super::auth;

/// The route label of a request no route matched.
pub(super) const UNKNOWN_ROUTE: &str = "(unknown)";

/// The longest client-sent request id kept whole; longer ones are cut there.
const MAX_LOGGED_ID: usize = 128;

/// The director's request ids: a random prefix per router (so that replicas behind one load
/// balancer do not repeat each other) and a counter, `5f3a9c1e-2a`.
#[derive(Debug, Clone)]
pub(super) struct RequestIds {
    prefix: u32,
    next: Arc<AtomicU64>,
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::try_from(format!("{:08x}-{n:x}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

/// The `x-request-id` a client (or a proxy in front) sent, cut to 128 bytes: kept
/// beside the director's own id, never in its place.
///
/// Frozen: a newtype over the header's text, the inner value public on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequestId(pub String);

impl ClientRequestId {
    /// The client's id of a request, if it sent one (after [`take_client_request_id`]).
    pub(super) fn of<B>(request: &Request<B>) -> Option<&str> {
        request
            .extensions()
            .get::<ClientRequestId>()
            .map(|id| id.0.as_str())
    }
}

/// Moves a client's `x-request-id` out of the headers into a [`ClientRequestId`], so that
/// [`set_request_id`] gives every request the director's own. A value that is not text is
/// dropped. A layer with `axum::middleware::map_request`, outside [`set_request_id`].
pub(super) async fn take_client_request_id(mut request: Request<Body>) -> Request<Body> {
    let sent = request.headers_mut().remove("x-request-id");
    if let Some(id) = sent.as_ref().and_then(|value| value.to_str().ok()) {
        let cut = crate::store::bounded_text(id, MAX_LOGGED_ID);
        request.extensions_mut().insert(ClientRequestId(cut));
    }
    request
}

/// Sets the director's own `x-request-id` on every request (a client's was moved aside by
/// [`take_client_request_id`]).
pub(super) fn set_request_id() -> SetRequestIdLayer<RequestIds> {
    SetRequestIdLayer::x_request_id(RequestIds {
        prefix: rand::random(),
        next: Arc::new(AtomicU64::new(1)),
    })
}

/// Copies the request's `x-request-id` (the director's) into its answer.
pub(super) fn propagate_request_id() -> PropagateRequestIdLayer {
    PropagateRequestIdLayer::x_request_id()
}

type MakeSpan = fn(&Request<Body>) -> Span;
type OnResponse = fn(&Response<Body>, Duration, &Span);

/// The request span and the answer's event.
pub(super) type Trace =
    TraceLayer<SharedClassifier<ServerErrorsAsFailures>, MakeSpan, (), OnResponse, (), (), ()>;

/// The tracing layer: [`request_span`] and [`on_response`]; no event on request, body chunk
/// or stream end (the answer's event says everything).
pub(super) fn trace_layer() -> Trace {
    TraceLayer::new_for_http()
        .make_span_with(request_span as MakeSpan)
        .on_request(())
        .on_response(on_response as OnResponse)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

/// The span every line of a request is logged in.
fn request_span(request: &Request<Body>) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNKNOWN_ROUTE, MatchedPath::as_str);
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let who = auth::Caller::of(request.extensions());
    let remote = who.peer.as_ref().map(|peer| peer.remote);
    tracing::info_span!(
        "request",
        request_id = id,
        client_request_id = ClientRequestId::of(request),
        method = %request.method(),
        route,
        caller = %auth::Described(&who),
        remote = %Remote(remote),
    )
}

/// The peer's address, or nothing for a request without a [`PeerInfo`](super::PeerInfo).
struct Remote(Option<std::net::SocketAddr>);

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(remote) => remote.fmt(f),
            None => Ok(()),
        }
    }
}

/// One `request` line per answer: status, outcome, latency in whole microseconds; `warn` for
/// a 5xx.
fn on_response(response: &Response<Body>, latency: Duration, _span: &Span) {
    let status = response.status().as_u16();
    let outcome = super::outcome_of(response);
    let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    if status >= 500 {
        tracing::warn!(status, %outcome, latency_us, "request");
    } else {
        tracing::info!(status, %outcome, latency_us, "request");
    }
}
