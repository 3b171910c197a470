//! HTTP: the TLS accept loop and the ConPaaS 1.2 routes. The only layer that knows HTTP and JSON.

mod answer;
pub(crate) mod auth;
mod error;
mod handlers;
#[cfg(feature = "manifest")]
mod manifest;
pub mod params;
pub mod server;
pub mod tls;
pub mod wire;

use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::director::Director;
pub use server::PeerInfo;

/// Every route of the 1.2 API: methods (as in the `Allow` header) and path pattern.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/new_user"),
    ("POST", "/login"),
    ("GET, POST", "/getcerts"),
    ("GET", "/available_services"),
    ("GET", "/available_clouds"),
    ("POST", "/start/{servicetype}"),
    ("POST", "/start/{servicetype}/{cloudname}"),
    ("POST", "/stop/{serviceid}"),
    ("POST", "/rename/{serviceid}"),
    ("GET, POST", "/list"),
    ("GET, POST", "/list/{appid}"),
    ("POST", "/createapp"),
    ("POST", "/delete/{appid}"),
    ("POST", "/renameapp/{appid}"),
    ("GET, POST", "/listapp"),
    ("POST", "/upload_manifest"),
    ("POST", "/download_manifest/{appid}"),
    ("POST", "/ca/get_cert.php"),
    ("POST", "/callback/decrementUserCredit.php"),
    ("POST", "/callback/terminateService.php"),
    ("GET", "/download/ConPaaS.tar.gz"),
];

/// The director's router: every route of `spec/director-api.md` with 1.2's answers for
/// everything else (Flask's 404 page), request logging, body limits. Serve it with
/// [`server::Listener`], or mount it in your own server; to merge the 1.2 routes into a
/// router that has its own fallback, use [`routes`] instead.
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
/// caller without one.
pub fn router(director: Director) -> Router {
    with_layers(base_routes(director).fallback(handlers::fallback))
}

/// The 1.2 routes of [`router`] without a fallback, so that they can be merged
/// (`Router::merge`) into a router with a fallback of its own; requests for other paths are
/// left to that router. Same [`PeerInfo`] contract as [`router`].
pub fn routes(director: Director) -> Router {
    with_layers(base_routes(director))
}

/// A layer adding `peer` to every request of one connection: how an embedder's own TLS
/// accept loop fulfils the [`PeerInfo`] contract of [`router`] (see [`PeerInfo::from_tls`]).
pub fn peer_layer(peer: PeerInfo) -> tower_http::add_extension::AddExtensionLayer<PeerInfo> {
    tower_http::add_extension::AddExtensionLayer::new(peer)
}

fn base_routes(director: Director) -> Router {
    Router::new()
        .route("/new_user", post(handlers::new_user))
        .route("/login", post(handlers::login))
        .route(
            "/getcerts",
            get(handlers::getcerts).post(handlers::getcerts),
        )
        .route("/available_services", get(handlers::available_services))
        .route("/available_clouds", get(handlers::available_clouds))
        .route("/start/{servicetype}", post(handlers::start))
        .route("/start/{servicetype}/{cloudname}", post(handlers::start))
        .route("/stop/{serviceid}", post(handlers::stop))
        .route("/rename/{serviceid}", post(handlers::rename))
        .route("/list", get(handlers::list).post(handlers::list))
        .route(
            "/list/{appid}",
            get(handlers::list_app).post(handlers::list_app),
        )
        .route("/createapp", post(handlers::createapp))
        .route("/delete/{appid}", post(handlers::delete))
        .route("/renameapp/{appid}", post(handlers::renameapp))
        .route("/listapp", get(handlers::listapp).post(handlers::listapp))
        .route("/upload_manifest", post(handlers::upload_manifest))
        .route(
            "/download_manifest/{appid}",
            post(handlers::download_manifest),
        )
        .route("/ca/get_cert.php", post(handlers::get_cert))
        .route(
            "/callback/decrementUserCredit.php",
            post(handlers::decrement_credit),
        )
        .route("/callback/terminateService.php", post(handlers::terminate))
        .route("/download/ConPaaS.tar.gz", get(handlers::tarball))
        .with_state(director)
}

fn with_layers(router: Router) -> Router {
    router
        // Refuses an announced Content-Length over the limit before reading anything (and
        // before hyper sends `100 Continue`).
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            params::MAX_BODY_BYTES,
        ))
        .layer(middleware::from_fn(options))
        .layer(middleware::from_fn(log_request))
}

/// Whether `path` matches a route pattern (`{name}` is one non-empty segment).
fn matches(pattern: &str, path: &str) -> bool {
    let mut pattern_segments = pattern.split('/');
    let mut path_segments = path.split('/');
    loop {
        match (pattern_segments.next(), path_segments.next()) {
            (None, None) => return true,
            (Some(p), Some(s)) if p.starts_with('{') => {
                if s.is_empty() {
                    return false;
                }
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return false,
        }
    }
}

/// The route pattern a path falls under, for the log (never the query string: 1.2 clients
/// put passwords there).
fn route_of(path: &str) -> &'static str {
    ROUTES
        .iter()
        .find(|(_, pattern)| matches(pattern, path))
        .map_or("(unknown)", |(_, p)| p)
}

/// The `Allow` value of a path as Flask wrote it (`HEAD, GET, POST, OPTIONS`), if it is a route.
fn allow_header(path: &str) -> Option<String> {
    let allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|(_, pattern)| matches(pattern, path))
        .flat_map(|(methods, _)| methods.split(", "))
        .collect();
    if allowed.is_empty() {
        return None;
    }
    let mut allow: Vec<&str> = Vec::new();
    if allowed.contains(&"GET") {
        allow.push("HEAD");
    }
    allow.extend(allowed);
    allow.push("OPTIONS");
    Some(allow.join(", "))
}

/// Framework-level answers: `OPTIONS` on a route answers 200 with its `Allow` header, as Flask
/// did; a 405 gets Flask's HTML page and `Allow` list; manager routes close the connection.
async fn options(request: Request, next: Next) -> Response {
    // The 1.2 managers read answers until the connection closes: every answer of their routes
    // closes it, including the 400 and 413 given before a handler runs.
    if is_manager_route(request.uri().path()) {
        return answer::close(framework_answers(request, next).await);
    }
    framework_answers(request, next).await
}

/// The routes 1.2 managers call with their HTTP client that reads until EOF.
fn is_manager_route(path: &str) -> bool {
    path.starts_with("/callback/") || path == "/ca/get_cert.php"
}

async fn framework_answers(request: Request, next: Next) -> Response {
    if request.method() != Method::OPTIONS {
        let path = request.uri().path().to_owned();
        let response = next.run(request).await;
        if response.status() != StatusCode::METHOD_NOT_ALLOWED {
            return response;
        }
        let mut page = answer::html_status(StatusCode::METHOD_NOT_ALLOWED);
        if let Some(value) =
            allow_header(&path).and_then(|allow| HeaderValue::from_str(&allow).ok())
        {
            page.headers_mut().insert(header::ALLOW, value);
        }
        return page;
    }
    let Some(allow) = allow_header(request.uri().path()) else {
        return answer::html_status(StatusCode::NOT_FOUND);
    };
    let mut response = StatusCode::OK.into_response();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// One line per request: method, route, caller, status, latency. Never parameters or bodies.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = route_of(request.uri().path());
    let who = auth::Caller::of(request.extensions());
    let caller = auth::describe(&who);
    let remote = who.peer.as_ref().map(|peer| peer.remote);
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let remote = remote.map(|r| r.to_string()).unwrap_or_default();
    if status >= 500 {
        tracing::warn!(%method, route, caller, remote, status, latency_ms, "request");
    } else {
        tracing::info!(%method, route, caller, remote, status, latency_ms, "request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_single_segments() {
        assert!(matches("/stop/{serviceid}", "/stop/7"));
        assert!(!matches("/stop/{serviceid}", "/stop/"));
        assert!(!matches("/stop/{serviceid}", "/stop/7/x"));
        assert!(matches("/list", "/list"));
        assert!(!matches("/list", "/list/"));
        assert_eq!(
            route_of("/start/php/default"),
            "/start/{servicetype}/{cloudname}"
        );
    }
}
