//! HTTP: the TLS accept loop and the ConPaaS 1.2 routes. The only layer that knows HTTP and JSON.

mod answer;
pub(crate) mod auth;
mod error;
mod handlers;
#[cfg(feature = "manifest")]
mod manifest;
mod occi;
pub mod openapi;
mod ops;
pub mod params;
pub mod server;
pub mod tls;
mod trace;
pub mod wire;

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};

use crate::director::audit::AuditContext;
use crate::director::{Director, Outcome};
pub use ops::VERSION;
pub use server::PeerInfo;
pub use trace::ClientRequestId;

/// Who may call a route (`spec/director-api.md` §1.6, and the operators' routes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Anyone (a certificate, if presented, may widen what the route does).
    Anyone,
    /// A user name and password in the parameters.
    Password,
    /// A user's certificate.
    User,
    /// A manager's certificate (these answers close the connection).
    Manager,
    /// The frontend's certificate or an address of `METRICS_ALLOW`.
    Operator,
    /// A manager's key for the managers' cloud: HTTP Basic, the user `s<sid>@<cloud>` and the
    /// SHA-1 (hex) of its key, as OpenNebula's OCCI server takes them.
    CloudKey,
}

/// In a request's extensions: its connection spoke TLS 1.0 or 1.1 (a 1.2 manager's libcloud;
/// `server::Listener::legacy_tls`, feature `legacy-tls`), on which only the managers' cloud
/// routes are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LegacyTlsConnection;

/// Where a route comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// ConPaaS 1.2's API, answered as 1.2 did.
    V1_2,
    /// Added by ConPaaS 1.3 (`spec/director-api.md` appendix A).
    V1_3,
    /// This director's own (health, readiness, metrics).
    Ours,
    /// This director's agent VMs: the managers' cloud (OpenNebula's OCCI 0.x routes, which 1.2
    /// managers call) and the users' listing.
    Agents,
}

/// One route of the router: the one table the router, the `Allow` headers, the request log,
/// the OpenAPI document and the docs' tidy test are made from.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct Route {
    /// Its methods as Flask's `Allow` header listed them (`GET, POST`); GET routes also
    /// answer HEAD, every route OPTIONS.
    pub methods: &'static str,
    /// The path pattern: `{name}` is one non-empty segment.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Where it comes from.
    pub origin: Origin,
    handler: fn(MethodFilter) -> MethodRouter<Director>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("methods", &self.methods)
            .field("path", &self.path)
            .field("access", &self.access)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

macro_rules! route {
    ($methods:literal, $path:literal, $access:ident, $origin:ident, $handler:path) => {
        Route {
            methods: $methods,
            path: $path,
            access: Access::$access,
            origin: Origin::$origin,
            handler: |filter| on(filter, $handler),
        }
    };
}

/// Every route: the 20 of the 1.2 API (21 patterns), the managers' cloud (`/compute`,
/// `/compute/{id}`) and the users' `/list_agents`, 1.3's `/version`, and the operators'
/// `/healthz`, `/readyz`, `/metrics` and `/openapi.json`. Each has its description in
/// [`openapi`] (a test fails otherwise).
pub const ROUTES: &[Route] = &[
    route!("POST", "/new_user", Anyone, V1_2, handlers::new_user),
    route!("POST", "/login", Password, V1_2, handlers::login),
    route!("GET, POST", "/getcerts", Password, V1_2, handlers::getcerts),
    route!(
        "GET",
        "/available_services",
        Anyone,
        V1_2,
        handlers::available_services
    ),
    route!(
        "GET",
        "/available_clouds",
        Anyone,
        V1_2,
        handlers::available_clouds
    ),
    route!("POST", "/start/{servicetype}", User, V1_2, handlers::start),
    route!(
        "POST",
        "/start/{servicetype}/{cloudname}",
        User,
        V1_2,
        handlers::start
    ),
    route!("POST", "/stop/{serviceid}", User, V1_2, handlers::stop),
    route!("POST", "/rename/{serviceid}", User, V1_2, handlers::rename),
    route!("GET, POST", "/list", User, V1_2, handlers::list),
    route!("GET, POST", "/list/{appid}", User, V1_2, handlers::list_app),
    route!("POST", "/createapp", User, V1_2, handlers::createapp),
    route!("POST", "/delete/{appid}", User, V1_2, handlers::delete),
    route!(
        "POST",
        "/renameapp/{appid}",
        User,
        V1_2,
        handlers::renameapp
    ),
    route!("GET, POST", "/listapp", User, V1_2, handlers::listapp),
    route!(
        "POST",
        "/upload_manifest",
        User,
        V1_2,
        handlers::upload_manifest
    ),
    route!(
        "POST",
        "/download_manifest/{appid}",
        User,
        V1_2,
        handlers::download_manifest
    ),
    route!(
        "POST",
        "/ca/get_cert.php",
        Manager,
        V1_2,
        handlers::get_cert
    ),
    route!(
        "POST",
        "/callback/decrementUserCredit.php",
        Manager,
        V1_2,
        handlers::decrement_credit
    ),
    route!(
        "POST",
        "/callback/terminateService.php",
        Manager,
        V1_2,
        handlers::terminate
    ),
    route!(
        "GET",
        "/download/ConPaaS.tar.gz",
        Anyone,
        V1_2,
        handlers::tarball
    ),
    route!("GET, POST", "/compute", CloudKey, Agents, occi::collection),
    route!("GET, DELETE", "/compute/{id}", CloudKey, Agents, occi::one),
    route!(
        "GET, POST",
        "/list_agents",
        User,
        Agents,
        handlers::list_agents
    ),
    route!("GET", "/version", Anyone, V1_3, ops::version),
    route!("GET", "/healthz", Anyone, Ours, ops::healthz),
    route!("GET", "/readyz", Anyone, Ours, ops::readyz),
    route!("GET", "/metrics", Operator, Ours, ops::metrics),
    route!("GET", "/openapi.json", Anyone, Ours, openapi::serve),
];

/// The route whose pattern is `pattern`, or, for routes an embedder nested under a prefix
/// (`/ops/metrics`: axum's `MatchedPath` includes it), the one it ends with.
fn route_by_pattern(pattern: &str) -> Option<&'static Route> {
    ROUTES
        .iter()
        .find(|route| route.path == pattern)
        .or_else(|| {
            ROUTES.iter().find(|route| {
                pattern
                    .strip_suffix(route.path)
                    .is_some_and(|prefix| prefix.starts_with('/') && !prefix.ends_with('/'))
            })
        })
}

/// The director's router: every route of [`ROUTES`] with 1.2's answers for everything else
/// (Flask's 404 page), request ids, the request log, metrics, body limits. Serve it with
/// [`server::Listener`], or mount it in your own server; to merge the routes into a router
/// that has its own fallback, use [`routes`] instead.
///
/// # Who is calling: the [`PeerInfo`] contract
///
/// The router learns the caller from a [`PeerInfo`] in each request's extensions: the peer's
/// address and the leaf certificate it presented. **Inserting a `PeerInfo` with a certificate
/// asserts that the TLS stack verified that certificate against the director's CA**; the
/// router then trusts its `UID`, `serviceLocator` and `role` attributes. [`server::Listener`]
/// inserts it; an embedder with its own TLS builds its `rustls::ServerConfig` with
/// [`tls::server_config`] (or its own verifier over the CA certificate) and adds the peer of
/// each connection with [`peer_layer`] (see `examples/embed_router.rs`). A request without a
/// `PeerInfo`, or with no certificate in it, is anonymous: `/login`, `/getcerts`, `/new_user`
/// (with `OPEN_REGISTRATION`) and the tarball work, certificate routes answer as 1.2 did to a
/// caller without one; `/metrics` needs a `PeerInfo` with an address of `METRICS_ALLOW` or
/// the frontend's certificate.
///
#[cfg_attr(not(feature = "server"), doc = "[`server::Listener`]: crate#features")]
pub fn router(director: Director) -> Router {
    let base = table(&director, |_| true).fallback(handlers::fallback);
    with_layers(base, director)
}

/// The routes of [`router`] without a fallback, so that they can be merged
/// (`Router::merge`) into a router with a fallback of its own; requests for other paths are
/// left to that router. Same [`PeerInfo`] contract as [`router`]. To take only some of them
/// (an app with its own `/healthz` or `/metrics`), see [`conpaas_routes`] and
/// [`operator_routes`].
pub fn routes(director: Director) -> Router {
    routes_of(&director, |_| true)
}

/// The routes ConPaaS clients call — 1.2's twenty (the users', the frontend's and the
/// managers') and 1.3's `/version` — without a fallback, to merge into a router of your own
/// that keeps its own `/healthz`, `/readyz`, `/metrics` and `/openapi.json` (merging two
/// routers that both have a path panics). Mount them at the root: 1.2 clients and managers
/// call them there. Same [`PeerInfo`] contract as [`router`].
pub fn conpaas_routes(director: Director) -> Router {
    routes_of(&director, |route| route.origin != Origin::Ours)
}

/// The operators' routes — `/healthz`, `/readyz`, `/metrics`, `/openapi.json` — without a
/// fallback: merge them, or nest them under a prefix of your choice (`Router::nest("/conpaas",
/// ..)`) beside an app that has routes of these names. `/metrics` still needs the frontend's
/// certificate or an address of `METRICS_ALLOW` ([`PeerInfo`]); `/openapi.json` describes the
/// routes at the root.
pub fn operator_routes(director: Director) -> Router {
    routes_of(&director, |route| route.origin == Origin::Ours)
}

/// The routes of [`ROUTES`] that `keep`, with the router's layers, without a fallback.
fn routes_of(director: &Director, keep: impl Fn(&Route) -> bool) -> Router {
    with_layers(table(director, keep), director.clone())
}

/// The routes of [`ROUTES`] that `keep`, without layers.
fn table(director: &Director, keep: impl Fn(&Route) -> bool) -> Router {
    ROUTES
        .iter()
        .filter(|route| keep(route))
        .fold(Router::new(), |router, route| {
            router.route(route.path, (route.handler)(method_filter(route.methods)))
        })
        .with_state(director.clone())
}

/// A layer adding `peer` to every request of one connection: how an embedder's own TLS
/// accept loop fulfils the [`PeerInfo`] contract of [`router`] (see [`PeerInfo::from_tls`]).
pub fn peer_layer(peer: PeerInfo) -> tower_http::add_extension::AddExtensionLayer<PeerInfo> {
    tower_http::add_extension::AddExtensionLayer::new(peer)
}

/// The methods of a route as a filter.
fn method_filter(methods: &str) -> MethodFilter {
    let mut filter: Option<MethodFilter> = None;
    for method in methods.split(", ") {
        let one = match method {
            "GET" => MethodFilter::GET,
            "POST" => MethodFilter::POST,
            "PUT" => MethodFilter::PUT,
            "DELETE" => MethodFilter::DELETE,
            _ => continue,
        };
        filter = Some(filter.map_or(one, |filter| filter.or(one)));
    }
    filter.unwrap_or(MethodFilter::GET)
}

fn with_layers(router: Router, director: Director) -> Router {
    router
        // Refuses an announced Content-Length over the limit before reading anything (and
        // before hyper sends `100 Continue`).
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            params::MAX_BODY_BYTES,
        ))
        .layer(middleware::from_fn_with_state(director, framework))
        .layer(trace::propagate_request_id())
        .layer(trace::trace_layer())
        .layer(trace::set_request_id())
        .layer(middleware::map_request(trace::take_client_request_id))
}

/// The `Allow` value of a route as Flask wrote it (`HEAD, GET, POST, OPTIONS`).
fn allow_header(route: &Route) -> String {
    let mut allow: Vec<&str> = Vec::new();
    if route.methods.split(", ").any(|method| method == "GET") {
        allow.push("HEAD");
    }
    allow.extend(route.methods.split(", "));
    allow.push("OPTIONS");
    allow.join(", ")
}

/// The name of a method for the request counter (bounded: others are `other`).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "other",
    }
}

/// Framework-level answers and the request counter: `OPTIONS` on a route answers 200 with
/// its `Allow` header, as Flask did; a 405 gets Flask's HTML page and `Allow` list; manager
/// routes close the connection; every answer is counted by route, status and outcome.
async fn framework(State(director): State<Director>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|matched| route_by_pattern(matched.as_str()));
    let method = method_label(request.method());
    // The 1.2 managers read answers until the connection closes: every answer of their routes
    // closes it, including the 400 and 413 given before a handler runs.
    let closes = is_manager_route(request.uri().path());
    let context = audit_context(&request);
    let legacy_refused = request.extensions().get::<LegacyTlsConnection>().is_some()
        && route.is_none_or(|route| route.access != Access::CloudKey);
    let mut response = if legacy_refused {
        // TLS 1.0/1.1 carries one service's key for its agents, nothing else.
        (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "this route needs TLS 1.2 or later\n",
        )
            .into_response()
    } else {
        context.scope(framework_answers(route, request, next)).await
    };
    if closes {
        response = answer::close(response);
    }
    let status = response.status().as_u16();
    let outcome = outcome_of(&response);
    director.metrics().request(
        route.map_or(trace::UNKNOWN_ROUTE, |route| route.path),
        method,
        status,
        outcome,
        started.elapsed(),
    );
    response
}

/// Who the request's audit events name: the caller as the request log describes it, its
/// address, the director's request id and the client's.
fn audit_context(request: &Request) -> AuditContext {
    let caller = auth::Caller::of(request.extensions());
    let source = caller.peer.as_ref().map(|peer| peer.remote.ip());
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let client_request_id = trace::ClientRequestId::of(request).map(str::to_owned);
    AuditContext::request(auth::Described(&caller).to_string(), source, request_id)
        .client_request_id(client_request_id)
}

/// The outcome an answer carries (handlers mark refusals given with status 200), else what
/// its status says.
fn outcome_of(response: &Response) -> Outcome {
    response
        .extensions()
        .get::<Outcome>()
        .copied()
        .unwrap_or_else(|| Outcome::of_status(response.status().as_u16()))
}

/// The routes 1.2 managers call with their HTTP client that reads until EOF.
fn is_manager_route(path: &str) -> bool {
    path.starts_with("/callback/") || path == "/ca/get_cert.php"
}

async fn framework_answers(route: Option<&Route>, request: Request, next: Next) -> Response {
    if request.method() != Method::OPTIONS {
        let response = next.run(request).await;
        if response.status() != StatusCode::METHOD_NOT_ALLOWED {
            return response;
        }
        let mut page = answer::html_status(StatusCode::METHOD_NOT_ALLOWED);
        if let Some(value) =
            route.and_then(|route| HeaderValue::from_str(&allow_header(route)).ok())
        {
            page.headers_mut().insert(header::ALLOW, value);
        }
        return page;
    }
    let Some(route) = route else {
        return answer::html_status(StatusCode::NOT_FOUND);
    };
    let mut response = StatusCode::OK.into_response();
    if let Ok(value) = HeaderValue::from_str(&allow_header(route)) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_operator_route_is_found_by_its_own_pattern() {
        assert_eq!(
            route_by_pattern("/conpaas/metrics").unwrap().path,
            "/metrics"
        );
        assert_eq!(route_by_pattern("/a/b/healthz").unwrap().path, "/healthz");
        assert!(route_by_pattern("/xmetrics").is_none());
        assert!(route_by_pattern("//metrics").is_none());
        assert_eq!(route_by_pattern("/list").unwrap().path, "/list");
    }

    #[test]
    fn every_pattern_is_in_the_table_once_with_its_allow_list() {
        let mut patterns: Vec<&str> = ROUTES.iter().map(|route| route.path).collect();
        patterns.sort_unstable();
        patterns.dedup();
        assert_eq!(patterns.len(), ROUTES.len());
        let list = route_by_pattern("/list").unwrap();
        assert_eq!(allow_header(list), "HEAD, GET, POST, OPTIONS");
        let stop = route_by_pattern("/stop/{serviceid}").unwrap();
        assert_eq!(allow_header(stop), "POST, OPTIONS");
        assert_eq!(
            ROUTES.iter().filter(|r| r.origin == Origin::V1_2).count(),
            21
        );
    }
}
