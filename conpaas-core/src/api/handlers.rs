//! One handler per 1.2 route: read parameters, authenticate, call the director, answer in the
//! route's 1.2 shape (`spec/director-api.md` §3).

use std::io::Write as _;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret as _, SecretString};

use super::answer::{self, Cors};
use super::auth::{self, CertifiedManager, CertifiedManagerId, CertifiedUser, CertifiedUserId};
use super::error::{Shape, respond};
use super::params::{MAX_BODY_BYTES, Params};
use super::wire;
use crate::director::{Director, LoginAttempt, LoginSource, Outcome, Registration, StartRequest};
use crate::model::{AppId, ErrorChain, ServiceId, ServiceType};
use crate::store::{self, password::md5_hex};

const CREATION: Shape = Shape::ErrorObject {
    prefix: "Error upon service creation: ",
};
const USER_CREATION: Shape = Shape::ErrorObject {
    prefix: "Error upon user creation: ",
};
const PLAIN: Shape = Shape::ErrorObject { prefix: "" };

/// The request's parameters (query string + body), read after the caller is authenticated;
/// a body over the limit is 413, an unreadable one (or one not received in time) 400.
impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = Response;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|error| {
                if super::server::is_body_timeout(&error) {
                    tracing::info!("request body not received in time; closing the connection");
                    answer::html_status(StatusCode::BAD_REQUEST)
                } else {
                    answer::html_status(StatusCode::PAYLOAD_TOO_LARGE)
                }
            })?;
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        Params::parse(parts.uri.query(), content_type, bytes)
            .await
            .map_err(|error| {
                tracing::info!(error = %ErrorChain(&error), "unreadable parameters");
                answer::html_status(StatusCode::BAD_REQUEST)
            })
    }
}

/// An integer path segment (`<int:...>`): 1.2's 404 for anything but ASCII digits.
pub(super) struct PathId(pub(super) i32);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        path_id(&text).map(PathId).ok_or_else(not_found)
    }
}

/// Who is trying a password, for the guessing throttle: the account when the frontend calls
/// (one address for all its users), the client's address otherwise.
fn login_source(caller: &auth::Caller, username: &str) -> Option<LoginSource> {
    if auth::is_frontend(caller) {
        // One character past the longest name is enough for the director to refuse an
        // overlong one (before counting or logging it): no copy of a megabyte is made.
        let bounded = username
            .chars()
            .take(store::names::MAX_USERNAME_CHARS + 1)
            .collect();
        return Some(LoginSource::Account(bounded));
    }
    caller
        .peer
        .as_ref()
        .map(|peer| LoginSource::Address(peer.remote.ip()))
}

/// An integer path segment (`<int:...>`): ASCII digits only, else 404 as in 1.2.
fn path_id(text: &str) -> Option<i32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Leading zeros are fine (`/stop/007`); an id beyond i32 names nothing.
    let significant = text.trim_start_matches('0');
    if significant.is_empty() {
        Some(0)
    } else {
        significant.parse::<i32>().ok()
    }
}

/// The answer of routes whose outcome is a bare `true`/`false`, with or without the CORS
/// header as 1.2 varied it per route.
fn verdict(result: Result<bool, crate::director::Error>, cors: Cors) -> Response {
    match result {
        Ok(true) => answer::yes(cors),
        Ok(false) => answer::no(cors),
        Err(error) => respond(&error, Shape::FalseOrStatus),
    }
}

fn not_found() -> Response {
    answer::html_status(StatusCode::NOT_FOUND)
}

/// `POST /new_user`.
pub(super) async fn new_user(
    State(director): State<Director>,
    caller: auth::Caller,
    params: Params,
) -> Response {
    if !director.open_registration() && !auth::is_frontend(&caller) {
        tracing::info!("registration refused: no frontend certificate");
        return answer::error_object(
            "Registration is closed: use the ConPaaS frontend",
            Cors::Yes,
        );
    }
    const FIELDS: [&str; 7] = [
        "username",
        "fname",
        "lname",
        "email",
        "affiliation",
        "password",
        "credit",
    ];
    for field in FIELDS {
        if params.required(field).is_none() {
            return answer::error_object(&format!("{field} is a required field"), Cors::Yes);
        }
    }
    let field = |name: &str| params.required(name).unwrap_or_default().to_owned();
    let password = field("password");
    let registration = Registration {
        username: field("username"),
        fname: field("fname"),
        lname: field("lname"),
        email: field("email"),
        affiliation: field("affiliation"),
        password: SecretString::from(password.clone()),
        credit: field("credit"),
    };
    match director.register(registration).await {
        Ok(user) => answer::bare(&wire::User::new(&user, md5_hex(&password)), Cors::Yes),
        Err(error) => respond(&error, USER_CREATION),
    }
}

/// `POST /login`.
pub(super) async fn login(
    State(director): State<Director>,
    caller: auth::Caller,
    params: Params,
) -> Response {
    let username = params.get("username").unwrap_or_default();
    let password = SecretString::from(params.get("password").unwrap_or_default().to_owned());
    match director
        .login_attempt(username, &password, login_source(&caller, username))
        .await
    {
        // The PHP frontend compares this with md5(typed password): computed from what was just
        // sent, so no stored hash ever leaves the server.
        Ok(LoginAttempt::Accepted(user)) => answer::bare(
            &wire::User::new(&user, md5_hex(password.expose_secret())),
            Cors::Yes,
        ),
        Ok(attempt) => refused_login(&attempt),
        Err(error) => super::error::internal(&error),
    }
}

/// 1.2's `false` for a refused login, marked throttled when it was.
fn refused_login(attempt: &LoginAttempt) -> Response {
    let mut response = answer::no(Cors::Yes);
    if matches!(attempt, LoginAttempt::Throttled) {
        response.extensions_mut().insert(Outcome::Throttled);
    }
    response
}

/// `GET|POST /getcerts`.
pub(super) async fn getcerts(
    State(director): State<Director>,
    caller: auth::Caller,
    params: Params,
) -> Response {
    let username = params.get("username").unwrap_or_default();
    let password = SecretString::from(params.get("password").unwrap_or_default().to_owned());
    let user = match director
        .login_attempt(username, &password, login_source(&caller, username))
        .await
    {
        Ok(LoginAttempt::Accepted(user)) => user,
        Ok(attempt) => return refused_login(&attempt),
        Err(error) => return respond(&error, PLAIN),
    };
    let certificates = match director.certificates_for(user).await {
        Ok(certificates) => certificates,
        Err(error) => return respond(&error, PLAIN),
    };
    let zip = match certs_zip(
        &certificates.cert_pem,
        certificates.key_pem.expose_secret(),
        &certificates.ca_cert_pem,
    ) {
        Ok(zip) => zip,
        Err(error) => {
            tracing::warn!(error = %ErrorChain(&error), "cannot build certs.zip");
            return answer::html_status(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    (
        [
            (header::CONTENT_TYPE, "application/zip"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=certs.zip",
            ),
            // 1.2 let caches keep this for 12 hours; it holds a private key.
            (header::CACHE_CONTROL, "no-store"),
        ],
        zip,
    )
        .into_response()
}

/// The three members of `certs.zip`, stored uncompressed in 1.2's order.
fn certs_zip(cert: &str, key: &str, ca: &str) -> Result<Vec<u8>, zip::result::ZipError> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o600);
    for (name, text) in [("cert.pem", cert), ("key.pem", key), ("ca_cert.pem", ca)] {
        writer.start_file(name, options)?;
        writer.write_all(text.as_bytes())?;
    }
    Ok(writer.finish()?.into_inner())
}

/// `GET /available_services`: 1.2's exact list, duplicate `taskfarm` included.
pub(super) async fn available_services() -> Response {
    const LIST: [&str; 10] = [
        "taskfarm",
        "java",
        "mysql",
        "xtreemfs",
        "scalaris",
        "php",
        "selenium",
        "hadoop",
        "helloworld",
        "taskfarm",
    ];
    debug_assert!(LIST.iter().all(|name| name.parse::<ServiceType>().is_ok()));
    answer::bare(&LIST, Cors::No)
}

/// `GET /available_clouds`.
pub(super) async fn available_clouds(State(director): State<Director>) -> Response {
    answer::bare(&director.client_cloud_names(), Cors::No)
}

/// `POST /start/<type>` and `/start/<type>/<cloud>`.
pub(super) async fn start(
    State(director): State<Director>,
    Path(segments): Path<Vec<String>>,
    CertifiedUser(user): CertifiedUser,
    params: Params,
) -> Response {
    let mut segments = segments.into_iter();
    let service_type = segments.next().unwrap_or_default();
    let cloud = segments.next().unwrap_or_else(|| "default".to_owned());
    let start = StartRequest {
        uid: user.uid,
        service_type,
        cloud,
        appid: params.get("appid").map(str::to_owned),
    };
    match director.start_service(start).await {
        Ok(service) => answer::jsonify(&wire::Service::from(&service), Cors::Yes),
        Err(error @ crate::director::Error::UnknownServiceType(_))
        | Err(error @ crate::director::Error::ApplicationNotFound(_)) => respond(&error, PLAIN),
        Err(error) => respond(&error, CREATION),
    }
}

/// `POST /stop/<int:sid>`.
pub(super) async fn stop(
    State(director): State<Director>,
    PathId(sid): PathId,
    CertifiedUser(user): CertifiedUser,
    _params: Params,
) -> Response {
    let sid = ServiceId(sid);
    verdict(director.stop_service(user.uid, sid).await, Cors::Yes)
}

/// `POST /rename/<int:sid>`.
pub(super) async fn rename(
    State(director): State<Director>,
    PathId(sid): PathId,
    CertifiedUser(user): CertifiedUser,
    params: Params,
) -> Response {
    let sid = ServiceId(sid);
    let Some(name) = params.required("name") else {
        return answer::no(Cors::Yes);
    };
    verdict(director.rename_service(user.uid, sid, name).await, Cors::No)
}

/// A listing read with `Director::read_for_user`: `answer` for the rows, `false` for an
/// unknown user (as 1.2).
fn user_listing<T>(
    read: Result<Option<T>, crate::director::Error>,
    answer: impl FnOnce(&T) -> Response,
) -> Response {
    match read {
        Ok(Some(rows)) => answer(&rows),
        Ok(None) => answer::no(Cors::Yes),
        Err(error) => super::error::internal(&error),
    }
}

/// `GET|POST /list`.
pub(super) async fn list(
    State(director): State<Director>,
    CertifiedUserId(uid): CertifiedUserId,
    _params: Params,
) -> Response {
    let services = director
        .read_for_user(move |conn| store::list_services_of_user(conn, uid))
        .await;
    user_listing(services, |services: &Vec<_>| {
        answer::bare(
            &services.iter().map(wire::Service::from).collect::<Vec<_>>(),
            Cors::Yes,
        )
    })
}

/// `GET|POST /list_agents`: the agent VMs of the caller's services (new: 1.2's director did
/// not know them), as bare JSON like `/list`.
pub(super) async fn list_agents(
    State(director): State<Director>,
    CertifiedUserId(uid): CertifiedUserId,
    _params: Params,
) -> Response {
    match director.agents(uid).await {
        Ok(agents) => answer::bare(
            &agents.iter().map(wire::Agent::from).collect::<Vec<_>>(),
            Cors::Yes,
        ),
        Err(error) => super::error::internal(&error),
    }
}

/// `GET|POST /list/<int:aid>`: only the caller's application (1.2 listed anyone's).
pub(super) async fn list_app(
    State(director): State<Director>,
    PathId(aid): PathId,
    CertifiedUser(user): CertifiedUser,
    _params: Params,
) -> Response {
    let aid = AppId(aid);
    match director.application_services(user.uid, aid).await {
        Ok(services) => answer::bare(
            &services.iter().map(wire::Service::from).collect::<Vec<_>>(),
            Cors::Yes,
        ),
        Err(error) => super::error::internal(&error),
    }
}

/// `POST /createapp`.
pub(super) async fn createapp(
    State(director): State<Director>,
    CertifiedUser(user): CertifiedUser,
    params: Params,
) -> Response {
    let Some(name) = params.required("name") else {
        return answer::no(Cors::Yes);
    };
    match director.create_application(user.uid, name).await {
        Ok(app) => answer::jsonify(&wire::Application::from(&app), Cors::Yes),
        Err(error) => respond(&error, PLAIN),
    }
}

/// `POST /delete/<int:aid>`.
pub(super) async fn delete(
    State(director): State<Director>,
    PathId(aid): PathId,
    CertifiedUser(user): CertifiedUser,
    _params: Params,
) -> Response {
    let aid = AppId(aid);
    verdict(director.delete_application(user.uid, aid).await, Cors::Yes)
}

/// `POST /renameapp/<int:aid>`: `false` (not 1.2's 500) for an application not the caller's.
pub(super) async fn renameapp(
    State(director): State<Director>,
    PathId(aid): PathId,
    CertifiedUser(user): CertifiedUser,
    params: Params,
) -> Response {
    let aid = AppId(aid);
    let Some(name) = params.required("name") else {
        return answer::no(Cors::Yes);
    };
    verdict(
        director.rename_application(user.uid, aid, name).await,
        Cors::No,
    )
}

/// `GET|POST /listapp`.
pub(super) async fn listapp(
    State(director): State<Director>,
    CertifiedUserId(uid): CertifiedUserId,
    _params: Params,
) -> Response {
    let applications = director
        .read_for_user(move |conn| store::list_applications_of_user(conn, uid))
        .await;
    user_listing(applications, |apps: &Vec<_>| {
        answer::bare(
            &apps.iter().map(wire::Application::from).collect::<Vec<_>>(),
            Cors::Yes,
        )
    })
}

/// `POST /download_manifest/<appid>`.
#[cfg(feature = "manifest")]
pub(super) async fn download_manifest(
    State(director): State<Director>,
    Path(aid): Path<String>,
    CertifiedUser(user): CertifiedUser,
    _params: Params,
) -> Response {
    match director.manifest(user.uid, &aid).await {
        Ok(Some((app, services))) => {
            let manifest = wire::Manifest {
                services: services
                    .iter()
                    .map(|service| wire::ManifestService {
                        service_name: service.name.clone(),
                        service_type: service.service_type.clone(),
                        cloud: service.cloud.clone(),
                    })
                    .collect(),
                application: app.name,
            };
            answer::bare(&manifest, Cors::No)
        }
        Ok(None) => answer::no(Cors::No),
        Err(error) => super::error::internal(&error),
    }
}

/// `POST /upload_manifest`.
#[cfg(feature = "manifest")]
pub(super) async fn upload_manifest(
    State(director): State<Director>,
    CertifiedUser(user): CertifiedUser,
    params: Params,
) -> Response {
    super::manifest::upload(&director, user.uid, &params).await
}

/// Without the `manifest` feature both manifest routes answer 1.2's 404 page, as unknown
/// paths do.
#[cfg(not(feature = "manifest"))]
pub(super) async fn upload_manifest() -> Response {
    not_found()
}

/// See [`upload_manifest`].
#[cfg(not(feature = "manifest"))]
pub(super) async fn download_manifest() -> Response {
    not_found()
}

/// `POST /ca/get_cert.php`: PEM of the agent certificate; the identity is the caller's.
///
/// Every answer of the three manager routes carries `Connection: close`, added by the router's
/// middleware (`api::options`) for answers given before a handler runs too.
pub(super) async fn get_cert(
    State(director): State<Director>,
    CertifiedManager { uid, sid }: CertifiedManager,
    params: Params,
) -> Response {
    let Some(csr) = params.file("csr") else {
        return answer::html_status(StatusCode::BAD_REQUEST);
    };
    match director.sign_agent_csr(uid, sid, csr.to_vec()).await {
        Ok(pem) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], pem).into_response(),
        Err(crate::director::Error::Ca(error)) => {
            // The manager embeds whatever body it gets: refuse with a status and a body that
            // is plainly not PEM.
            tracing::info!(error = %ErrorChain(&error), uid = %uid, sid = %sid, "agent csr refused");
            answer::html_status(StatusCode::BAD_REQUEST)
        }
        Err(error) => super::error::internal(&error),
    }
}

/// `POST /callback/decrementUserCredit.php`.
pub(super) async fn decrement_credit(
    State(director): State<Director>,
    CertifiedManagerId { uid, sid }: CertifiedManagerId,
    params: Params,
) -> Response {
    // The service is read patiently, with the charge's bound: a database failure here must
    // not become an error answer, which the manager would take for "out of credit".
    let Some(manager) = director.charging_manager(uid, sid).await else {
        return answer::no(Cors::Yes);
    };
    let decrement = params.get("decrement");
    // `sid` is only logged, but 1.2 parsed it: garbage there is refused like a garbage
    // decrement (1.2 answered 500), the TaskFarm helper's absent `sid` is fine.
    if let Some(sent_sid) = params.get("sid")
        && crate::director::parse_int(sent_sid).is_none()
    {
        return callback_result(false);
    }
    tracing::debug!(uid = %uid, sid = %sid, sent_sid = params.get("sid").unwrap_or("-1"), "credit decrement");
    let covered = match director.charge_for(manager, decrement).await {
        Ok(covered) => covered,
        Err(error) => {
            tracing::warn!(%error, "credit decrement failed");
            false
        }
    };
    callback_result(covered)
}

/// The callbacks' `{"error": false}` / `{"error": true}`, the latter counted as refused.
fn callback_result(ok: bool) -> Response {
    let mut response = answer::jsonify(&wire::CallbackResult { error: !ok }, Cors::No);
    if !ok {
        response.extensions_mut().insert(Outcome::Refused);
    }
    response
}

/// `POST /callback/terminateService.php`.
pub(super) async fn terminate(
    State(director): State<Director>,
    CertifiedManager { uid, sid }: CertifiedManager,
    _params: Params,
) -> Response {
    match director.terminate_service(uid, sid).await {
        Ok(true) => answer::jsonify(&wire::CallbackResult { error: false }, Cors::No),
        Ok(false) => answer::no(Cors::Yes),
        Err(error) => respond(&error, Shape::FalseOrStatus),
    }
}

/// `GET /download/ConPaaS.tar.gz`, with the caching headers 1.2 sent (the VMs use plain wget).
pub(super) async fn tarball(State(director): State<Director>, headers: HeaderMap) -> Response {
    let Some(path) = director.tarball_path() else {
        return not_found();
    };
    let metadata = match tokio::fs::metadata(path).await {
        Ok(metadata) if metadata.is_file() => metadata,
        _ => {
            tracing::info!(path = %path.display(), "ConPaaS.tar.gz is missing");
            return not_found();
        }
    };
    let modified = metadata.modified().ok();
    let etag = format!(
        "\"{:x}-{:x}\"",
        modified
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs()),
        metadata.len()
    );
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match tokio::fs::read(path).await {
            Ok(bytes) => (
                [(header::CONTENT_TYPE, "application/x-tar")],
                Body::from(bytes),
            )
                .into_response(),
            Err(error) => {
                tracing::warn!(%error, "cannot read ConPaaS.tar.gz");
                return answer::html_status(StatusCode::INTERNAL_SERVER_ERROR);
            }
        }
    };
    let out = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, value);
    }
    if let Some(modified) = modified {
        let text = chrono::DateTime::<chrono::Utc>::from(modified)
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        if let Ok(value) = HeaderValue::from_str(&text) {
            out.insert(header::LAST_MODIFIED, value);
        }
    }
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=43200"),
    );
    response
}

/// Anything else: 1.2's 404 page.
pub(super) async fn fallback() -> Response {
    not_found()
}
