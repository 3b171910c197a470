//! The OpenAPI 3.1 document of every route (`GET /openapi.json`, `docs/openapi.json`), made
//! from [`super::ROUTES`] and one description per route kept here as data (`DOCS`).
//!
//! Each route's methods, path, security and tag come from its [`Route`]; `DOCS` adds what
//! the table does not know (summary, parameters, answers), keyed by path. The answers every
//! route of an [`Access`] shares (the certificate refusals, the 1.2 managers' `Connection:
//! close`, the 400/413/500 pages) are added from the access, not repeated per route. A test
//! checks that each route has exactly one description and each description a route.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{Access, Origin, ROUTES, Route, VERSION};

/// Where a parameter is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum In {
    /// A `{name}` segment of the path.
    Path,
    /// A named parameter: the query string, or (POST) a form field of the body.
    Field,
    /// A file part of a multipart body.
    File,
}

/// What a parameter's text must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Any text.
    Text,
    /// An integer as Python's `int()` reads it (spaces and one sign allowed).
    Integer,
    /// ASCII digits only (an integer path segment; anything else is a 404).
    Digits,
    /// A JSON document as text.
    JsonText,
    /// A PEM certificate signing request.
    Pem,
}

/// One parameter of a route.
#[derive(Debug)]
struct Param {
    name: &'static str,
    place: In,
    kind: Kind,
    required: bool,
    about: &'static str,
    example: Option<&'static str>,
}

const fn path(name: &'static str, kind: Kind, about: &'static str, example: &'static str) -> Param {
    Param {
        name,
        place: In::Path,
        kind,
        required: true,
        about,
        example: Some(example),
    }
}

const fn field(name: &'static str, kind: Kind, required: bool, about: &'static str) -> Param {
    Param {
        name,
        place: In::Field,
        kind,
        required,
        about,
        example: None,
    }
}

/// The JSON value of an answer (the `components/schemas` are the row shapes of
/// `spec/data-model.md` §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    True,
    False,
    User,
    Application,
    Service,
    Services,
    Applications,
    Names,
    Manifest,
    ErrorObject,
    Callback,
    Agents,
}

/// The body of an answer and its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Python's `json.dumps`, sent as `text/html; charset=utf-8` as 1.2 did.
    Bare(Shape),
    /// Flask's `jsonify`: `application/json`.
    Jsonify(Shape),
    /// `certs.zip`.
    Zip,
    /// A PEM certificate, as `text/html; charset=utf-8`.
    Pem,
    /// The services tarball.
    Tarball,
    /// Plain text, as `text/html; charset=utf-8`; the example body.
    Text(&'static str),
    /// 1.2's `cert_required` text naming `UID`, or also `serviceLocator` (manager routes).
    CertRequired {
        /// Whether the `serviceLocator` text is possible too.
        locator: bool,
    },
    /// A small HTML page naming the status.
    Html,
    /// The Prometheus text format.
    Prometheus,
    /// This document.
    OpenApi,
    /// No body (304, 204).
    Empty,
    /// An OCCI 0.x XML document (`application/xml`); the example.
    Xml(&'static str),
    /// Plain text (`text/plain`); the example.
    Plain(&'static str),
}

/// One outcome of a route.
#[derive(Debug)]
struct Answer {
    status: u16,
    when: &'static str,
    body: Body,
    cors: bool,
}

const fn ok(when: &'static str, body: Body, cors: bool) -> Answer {
    Answer {
        status: 200,
        when,
        body,
        cors,
    }
}

const fn status(status: u16, when: &'static str, body: Body) -> Answer {
    Answer {
        status,
        when,
        body,
        cors: false,
    }
}

/// What the document says about one route beyond its [`Route`] entry.
#[derive(Debug)]
struct RouteDoc {
    path: &'static str,
    summary: &'static str,
    description: &'static str,
    params: &'static [Param],
    answers: &'static [Answer],
}

const APPID: Param = field(
    "appid",
    Kind::Integer,
    false,
    "The application; absent or empty: the user's application with the lowest id.",
);
const NAME: Param = field(
    "name",
    Kind::Text,
    true,
    "The new name (at most 256 characters).",
);
const SERVICETYPE: Param = path(
    "servicetype",
    Kind::Text,
    "php, java, mysql, scalaris, hadoop, helloworld, xtreemfs, selenium or taskfarm.",
    "php",
);
const CREATION_REFUSED: Answer = ok(
    "refused: error object (`Unknown service type: <type>`, `Application not found`, \
     `Error upon service creation: ...`)",
    Body::Jsonify(Shape::ErrorObject),
    true,
);
const STARTED: Answer = ok(
    "started: the service dict",
    Body::Jsonify(Shape::Service),
    true,
);
const STOPPED_WHILE_BOOTING: Answer = ok(
    "stopped with /stop while booting",
    Body::Bare(Shape::False),
    true,
);
const START_DESCRIPTION: &str = "Inserts the service row (taking one credit), issues the \
    manager certificate and creates the manager VM; answers when the VM has its addresses, or \
    undoes everything (VM, row, credit) on a failure.";

/// One description per route of [`ROUTES`], in its order. Details: `docs/api.md`.
const DOCS: &[RouteDoc] = &[
    RouteDoc {
        path: "/new_user",
        summary: "Create an account and its first application",
        description: "Needs the frontend's certificate (role=frontend) unless `[director] \
            OPEN_REGISTRATION = true`. Parameters checked in this order; the first missing one \
            is named.",
        params: &[
            field(
                "username",
                Kind::Text,
                true,
                "Login name (at most 64 characters; not `CA`).",
            ),
            field("fname", Kind::Text, true, "First name."),
            field("lname", Kind::Text, true, "Last name."),
            field("email", Kind::Text, true, "E-mail address, unique."),
            field("affiliation", Kind::Text, true, "Affiliation."),
            field("password", Kind::Text, true, "The password."),
            field(
                "credit",
                Kind::Integer,
                true,
                "Initial credit, non-negative; capped by `MAX_CREDIT`.",
            ),
        ],
        answers: &[
            ok("created: the new user dict", Body::Bare(Shape::User), true),
            ok(
                "refused: error object (registration closed, `<field> is a required field`, \
                 name or e-mail taken, unusable name or credit)",
                Body::Jsonify(Shape::ErrorObject),
                true,
            ),
        ],
    },
    RouteDoc {
        path: "/login",
        summary: "Check a user name and password",
        description: "Password guessing is throttled; a throttled attempt answers `false` \
            without checking the password.",
        params: &[],
        answers: &[ok(
            "match: the user dict (`password` is the MD5 hex of the password sent)",
            Body::Bare(Shape::User),
            true,
        )],
    },
    RouteDoc {
        path: "/getcerts",
        summary: "Issue a user certificate and key",
        description: "Each call makes a new key. The archive holds `cert.pem`, `key.pem` and \
            `ca_cert.pem`, stored uncompressed, sent with `Content-Disposition: attachment; \
            filename=certs.zip` and `Cache-Control: no-store`.",
        params: &[],
        answers: &[
            ok("issued: certs.zip", Body::Zip, false),
            ok(
                "issuing failed: error object",
                Body::Jsonify(Shape::ErrorObject),
                true,
            ),
        ],
    },
    RouteDoc {
        path: "/available_services",
        summary: "The service types",
        description: "1.2's exact list, duplicate `taskfarm` included.",
        params: &[],
        answers: &[ok("the type names", Body::Bare(Shape::Names), false)],
    },
    RouteDoc {
        path: "/available_clouds",
        summary: "The cloud names",
        description: "`default` (the `[iaas]` cloud), then each name of `[iaas] OTHER_CLOUDS`.",
        params: &[],
        answers: &[ok("the cloud names", Body::Bare(Shape::Names), false)],
    },
    RouteDoc {
        path: "/start/{servicetype}",
        summary: "Start a service on the default cloud",
        description: START_DESCRIPTION,
        params: &[SERVICETYPE, APPID],
        answers: &[STARTED, CREATION_REFUSED, STOPPED_WHILE_BOOTING],
    },
    RouteDoc {
        path: "/start/{servicetype}/{cloudname}",
        summary: "Start a service on a named cloud",
        description: START_DESCRIPTION,
        params: &[
            SERVICETYPE,
            path(
                "cloudname",
                Kind::Text,
                "`default` or `iaas` (the default cloud), or a name of `OTHER_CLOUDS`.",
                "default",
            ),
            APPID,
        ],
        answers: &[STARTED, CREATION_REFUSED, STOPPED_WHILE_BOOTING],
    },
    RouteDoc {
        path: "/stop/{serviceid}",
        summary: "Destroy a service's manager VM and delete the service",
        description: "The manager is not contacted.",
        params: &[path("serviceid", Kind::Digits, "The service.", "1")],
        answers: &[
            ok("stopped", Body::Bare(Shape::True), true),
            ok(
                "no such service, or not the user's",
                Body::Bare(Shape::False),
                true,
            ),
        ],
    },
    RouteDoc {
        path: "/rename/{serviceid}",
        summary: "Rename a service",
        description: "The PHP frontend requires exactly `true`.",
        params: &[path("serviceid", Kind::Digits, "The service.", "1"), NAME],
        answers: &[
            ok("renamed", Body::Bare(Shape::True), false),
            ok("`name` missing or unusable", Body::Bare(Shape::False), true),
            ok(
                "no such service, or not the user's",
                Body::Bare(Shape::False),
                false,
            ),
        ],
    },
    RouteDoc {
        path: "/list",
        summary: "The user's services",
        description: "All the user's services across applications, ascending `sid`.",
        params: &[],
        answers: &[ok("the service dicts", Body::Bare(Shape::Services), true)],
    },
    RouteDoc {
        path: "/list/{appid}",
        summary: "The services of one of the user's applications",
        description: "`[]` when the application has none, does not exist or is someone else's.",
        params: &[path("appid", Kind::Digits, "The application.", "1")],
        answers: &[ok("the service dicts", Body::Bare(Shape::Services), true)],
    },
    RouteDoc {
        path: "/createapp",
        summary: "Create an application",
        description: "Names are unique per user.",
        params: &[NAME],
        answers: &[
            ok(
                "created: the application dict",
                Body::Jsonify(Shape::Application),
                true,
            ),
            ok("`name` missing or empty", Body::Bare(Shape::False), true),
            ok(
                "refused: error object (name taken or unusable, too many applications)",
                Body::Jsonify(Shape::ErrorObject),
                true,
            ),
        ],
    },
    RouteDoc {
        path: "/delete/{appid}",
        summary: "Delete an application and its services",
        description: "Each manager is asked to shut down (failures logged and ignored), then \
            its VM is destroyed and its row deleted.",
        params: &[path("appid", Kind::Digits, "The application.", "1")],
        answers: &[
            ok("deleted", Body::Bare(Shape::True), true),
            ok(
                "no such application, or not the user's",
                Body::Bare(Shape::False),
                true,
            ),
        ],
    },
    RouteDoc {
        path: "/renameapp/{appid}",
        summary: "Rename an application",
        description: "Duplicate names are not checked, as in 1.2.",
        params: &[path("appid", Kind::Digits, "The application.", "1"), NAME],
        answers: &[
            ok("renamed", Body::Bare(Shape::True), false),
            ok("`name` missing or unusable", Body::Bare(Shape::False), true),
            ok(
                "no such application, or not the user's",
                Body::Bare(Shape::False),
                false,
            ),
        ],
    },
    RouteDoc {
        path: "/listapp",
        summary: "The user's applications",
        description: "Ascending `aid`.",
        params: &[],
        answers: &[ok(
            "the application dicts",
            Body::Bare(Shape::Applications),
            true,
        )],
    },
    RouteDoc {
        path: "/upload_manifest",
        summary: "Create an application and its services from a manifest",
        description: "Checks the whole manifest first, then creates and drives each service \
            (docs/api.md). Downloads only public http(s) URLs; at most 4 manifests per user at \
            once.",
        params: &[
            field(
                "manifest",
                Kind::JsonText,
                true,
                "The manifest (`docs/manifest.rst` of 1.2).",
            ),
            field(
                "thread",
                Kind::Text,
                false,
                "Any non-empty value: answer once checked, process in the background.",
            ),
        ],
        answers: &[
            ok(
                "done, or accepted (`thread`)",
                Body::Bare(Shape::True),
                false,
            ),
            ok(
                "`manifest` missing or empty",
                Body::Bare(Shape::False),
                true,
            ),
            ok(
                "not JSON, or not a manifest's structure",
                Body::Bare(Shape::False),
                false,
            ),
            ok(
                "refused or failed: error object naming the service and the step",
                Body::Jsonify(Shape::ErrorObject),
                true,
            ),
        ],
    },
    RouteDoc {
        path: "/download_manifest/{appid}",
        summary: "Export an application as a manifest",
        description: "In 1.2's exact text.",
        params: &[path(
            "appid",
            Kind::Text,
            "The application, read as `int()` reads it.",
            "1",
        )],
        answers: &[
            ok("found: the manifest", Body::Bare(Shape::Manifest), false),
            ok(
                "not a number, no such application, or not the user's",
                Body::Bare(Shape::False),
                false,
            ),
        ],
    },
    RouteDoc {
        path: "/ca/get_cert.php",
        summary: "Sign an agent certificate for a manager",
        description: "Only the CSR's key is used: the subject is built from the caller's \
            certificate (role=agent). The CSR's signature must verify; RSA 2048..8192 bits or \
            ECDSA P-256.",
        params: &[Param {
            name: "csr",
            place: In::File,
            kind: Kind::Pem,
            required: true,
            about: "A PEM certificate signing request, as a file part.",
            example: None,
        }],
        answers: &[
            ok("signed: the PEM certificate", Body::Pem, false),
            status(
                400,
                "no `csr` file part, not a PEM CSR, bad signature, unsupported key",
                Body::Html,
            ),
        ],
    },
    RouteDoc {
        path: "/callback/decrementUserCredit.php",
        summary: "Charge credit to the service's owner",
        description: "The service is the certificate's. Never an error status for its own \
            failures: the manager treats anything but `{\"error\": false}` as out of credit.",
        params: &[
            field(
                "decrement",
                Kind::Integer,
                false,
                "Non-negative; absent or empty: 0.",
            ),
            field("sid", Kind::Integer, false, "Only logged."),
        ],
        answers: &[ok(
            "`{\"error\": false}`: charged, or deferred past 30 s of database failure; \
             `{\"error\": true}`: not enough credit (nothing changed), bad numbers",
            Body::Jsonify(Shape::Callback),
            false,
        )],
    },
    RouteDoc {
        path: "/callback/terminateService.php",
        summary: "Destroy the caller's own service",
        description: "The service is the certificate's; exactly `/stop` for it.",
        params: &[field("sid", Kind::Integer, false, "Ignored.")],
        answers: &[
            ok("destroyed", Body::Jsonify(Shape::Callback), false),
            ok("already gone", Body::Bare(Shape::False), true),
        ],
    },
    RouteDoc {
        path: "/download/ConPaaS.tar.gz",
        summary: "The ConPaaS services tarball",
        description: "`CONF_DIR/ConPaaS.tar.gz`, which manager and agent VMs download at boot; \
            with `ETag`, `Last-Modified` and `Cache-Control: public, max-age=43200`.",
        params: &[],
        answers: &[
            ok("the file", Body::Tarball, false),
            status(304, "`If-None-Match` equal to the `ETag`", Body::Empty),
            status(404, "the file is absent", Body::Html),
        ],
    },
    RouteDoc {
        path: "/compute",
        summary: "The managers' cloud: list or start agent VMs",
        description: "OpenNebula's OCCI 0.x dialect (`occi-server`, libcloud `api_version` \
            2.2), which 1.2 managers use to start their agents. `GET`: the calling service's \
            agents on the section's cloud, `<COMPUTE_COLLECTION>` of `<COMPUTE href=...>`. \
            `POST` (an XML `<COMPUTE>` body with `NAME` and `CONTEXT/USERDATA`, the hex of the \
            agent's boot script; no `Content-Type` needed): a VM on the real cloud, created \
            before the answer, whose `<COMPUTE>` carries `ID`, `STATE`, `INSTANCE_TYPE`, \
            `DISK/STORAGE@href` and `NIC/NETWORK@href` with `NIC/IP`. The manager's cloud part \
            of the script is replaced by the director's for the real cloud; `INSTANCE_TYPE`, \
            `CPU`, `MEMORY`, `OS`, `DISK` and `NIC` are ignored (the director's settings of the \
            cloud apply).",
        params: &[],
        answers: &[
            ok(
                "`GET`: the collection",
                Body::Xml(
                    "<COMPUTE_COLLECTION><COMPUTE href=\"/compute/12\" name=\"conpaas-agent-php-u1-s5\"/></COMPUTE_COLLECTION>",
                ),
                false,
            ),
            status(
                201,
                "`POST`: the agent VM, created",
                Body::Xml(
                    "<COMPUTE href=\"/compute/12\"><ID>12</ID><NAME>conpaas-agent-php-u1-s5</NAME><INSTANCE_TYPE>small</INSTANCE_TYPE><STATE>ACTIVE</STATE><DISK><STORAGE href=\"/storage/0\" name=\"conpaas\"/><TYPE>DISK</TYPE></DISK><NIC><NETWORK href=\"/network/0\" name=\"iaas\"/><IP>10.0.0.7</IP></NIC></COMPUTE>",
                ),
            ),
            status(
                400,
                "`POST`: not a `COMPUTE` document with `CONTEXT/USERDATA` in hex",
                Body::Plain("no CONTEXT/USERDATA: the agent's boot script is missing\n"),
            ),
            status(
                403,
                "`POST`: the service is not running, or `[director] MAX_AGENTS_PER_SERVICE` / \
                 `MAX_AGENTS_PER_USER` is reached",
                Body::Plain("at most 50 agent VMs per service\n"),
            ),
            status(
                503,
                "`POST`: the cloud failed (nothing is left behind)",
                Body::Plain("the cloud could not do it now; try again\n"),
            ),
        ],
    },
    RouteDoc {
        path: "/compute/{id}",
        summary: "The managers' cloud: one agent VM",
        description: "`GET`: its `<COMPUTE>` document (`STATE` `PENDING` while created, \
            `ACTIVE`, `DONE` while terminated). `DELETE`: terminates it (the row stays, claimed, \
            until the cloud confirms).",
        params: &[path("id", Kind::Digits, "The agent's id (`ID`).", "12")],
        answers: &[
            ok(
                "`GET`: the agent",
                Body::Xml("<COMPUTE href=\"/compute/12\"><ID>12</ID>...</COMPUTE>"),
                false,
            ),
            status(204, "`DELETE`: terminated", Body::Empty),
            status(
                404,
                "no such agent of the calling service",
                Body::Plain("no such compute resource\n"),
            ),
            status(
                503,
                "`DELETE`: the cloud failed; retried by maintenance",
                Body::Plain("the cloud could not do it now; try again\n"),
            ),
        ],
    },
    RouteDoc {
        path: "/list_agents",
        summary: "The agent VMs of the user's services",
        description: "The agent VMs the user's managers started through the director, \
            ascending `id`.",
        params: &[],
        answers: &[ok("the agent dicts", Body::Bare(Shape::Agents), true)],
    },
    RouteDoc {
        path: "/version",
        summary: "The director's version",
        description: "As ConPaaS 1.3 added it.",
        params: &[],
        answers: &[ok("the version", Body::Text(VERSION), true)],
    },
    RouteDoc {
        path: "/healthz",
        summary: "Liveness",
        description: "Answers whenever the process answers HTTP; checks nothing else.",
        params: &[],
        answers: &[ok("alive", Body::Text("ok\n"), false)],
    },
    RouteDoc {
        path: "/readyz",
        summary: "Readiness",
        description: "The database answers and takes a write, every migration is applied, the \
            CA's key is loaded.",
        params: &[],
        answers: &[
            ok("ready", Body::Text("ready\n"), false),
            status(
                503,
                "not ready: names the failed checks among `database`, `migrations`, `ca`",
                Body::Text("not ready: database\n"),
            ),
        ],
    },
    RouteDoc {
        path: "/metrics",
        summary: "The director's metrics",
        description: "For the frontend's certificate or a client address in `[director] \
            METRICS_ALLOW` (loopback by default).",
        params: &[],
        answers: &[ok("the metrics", Body::Prometheus, false)],
    },
    RouteDoc {
        path: "/openapi.json",
        summary: "This document",
        description: "The OpenAPI 3.1 document of every route (also `docs/openapi.json`).",
        params: &[],
        answers: &[ok("the document", Body::OpenApi, false)],
    },
];

const TEXT_HTML: &str = "text/html; charset=utf-8";

const INFO: &str = "The ConPaaS 1.2 director's API as this director serves it; `docs/api.md` \
    is the reference, with every message and every difference from 1.2.\n\n\
    * Parameters are read from the union of the query string and the body \
    (`application/x-www-form-urlencoded` or `multipart/form-data`), the query string winning; \
    POST routes accept them in the query string too. JSON bodies carry no parameters. \
    \"Required\" means present and non-empty.\n\
    * Application-level outcomes, refusals included, are status 200. *Bare JSON* answers are \
    JSON texts sent with `Content-Type: text/html; charset=utf-8`, as 1.2 did: their schema \
    describes the JSON value. An error object always has `error: true` and `msg`; success \
    objects never carry `msg`.\n\
    * Every route answers `OPTIONS` (200 with `Allow`), and routes allowing GET answer `HEAD`; \
    another method is a 405 HTML page with `Allow`; an unknown path a 404 HTML page. Every \
    answer carries `x-request-id`.\n\
    * Identities come from client certificates (mutual TLS, optional at the handshake, chained \
    to the installation's CA), or from `username` and `password` parameters.";

/// The document, as served and as kept in `docs/openapi.json` (pretty-printed, keys sorted,
/// a final newline).
pub fn document() -> String {
    let mut text =
        serde_json::to_string_pretty(&document_value()).unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text
}

static DOCUMENT: LazyLock<String> = LazyLock::new(document);

/// `GET /openapi.json`.
pub(super) async fn serve() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

const UNDESCRIBED: RouteDoc = RouteDoc {
    path: "",
    summary: "",
    description: "",
    params: &[],
    answers: &[],
};

fn doc_of(route: &Route) -> Option<&'static RouteDoc> {
    DOCS.iter().find(|doc| doc.path == route.path)
}

fn document_value() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        // A route without a description fails the tests; here it is still listed.
        let doc = doc_of(route).unwrap_or(&UNDESCRIBED);
        let mut item = Map::new();
        let path_params: Vec<Value> = doc
            .params
            .iter()
            .filter(|param| param.place == In::Path)
            .map(parameter)
            .collect();
        if !path_params.is_empty() {
            item.insert("parameters".into(), Value::Array(path_params));
        }
        for method in route.methods.split(", ") {
            item.insert(method.to_ascii_lowercase(), operation(route, doc, method));
        }
        paths.insert(route.path.to_owned(), Value::Object(item));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ConPaaS director",
            "version": VERSION,
            "description": INFO,
            "license": {"name": "BSD-3-Clause", "identifier": "BSD-3-Clause"},
        },
        "tags": [
            {"name": "1.2", "description": "ConPaaS 1.2's API, answered as 1.2 did."},
            {"name": "1.3", "description": "Added by ConPaaS 1.3."},
            {"name": "operators", "description": "This director's own routes."},
            {"name": "agents", "description": "Agent VMs through the director: the managers' \
                cloud (OpenNebula's OCCI 0.x dialect) and the users' listing."},
        ],
        "paths": paths,
        "components": components(),
    })
}

fn tag(origin: Origin) -> &'static str {
    match origin {
        Origin::V1_2 => "1.2",
        Origin::V1_3 => "1.3",
        Origin::Ours => "operators",
        Origin::Agents => "agents",
    }
}

/// `post_start_servicetype_cloudname`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for part in path.split(|c: char| !c.is_ascii_alphanumeric()) {
        if !part.is_empty() {
            id.push('_');
            id.push_str(part);
        }
    }
    id
}

fn security(access: Access) -> Value {
    match access {
        Access::User => json!([{"userCertificate": []}]),
        Access::Manager => json!([{"managerCertificate": []}]),
        Access::Operator => json!([{"frontendCertificate": []}]),
        Access::CloudKey => json!([{"agentCloudKey": []}]),
        // The password routes' credentials are parameters; OpenAPI has no scheme for them.
        Access::Anyone | Access::Password => json!([]),
    }
}

fn param_schema(param: &Param) -> Value {
    match param.kind {
        Kind::Text => json!({"type": "string", "minLength": 1}),
        Kind::Integer => json!({"type": "string", "pattern": "^\\s*[+-]?[0-9]+\\s*$"}),
        Kind::Digits => json!({"type": "string", "pattern": "^[0-9]+$"}),
        Kind::JsonText => json!({"type": "string", "contentMediaType": "application/json"}),
        Kind::Pem => json!({"type": "string", "contentMediaType": "application/pkcs10"}),
    }
}

fn parameter(param: &Param) -> Value {
    let place = if param.place == In::Path {
        "path"
    } else {
        "query"
    };
    let mut value = json!({
        "name": param.name,
        "in": place,
        "required": param.required,
        "description": param.about,
        "schema": param_schema(param),
    });
    if let (Some(example), Value::Object(map)) = (param.example, &mut value) {
        map.insert("example".into(), json!(example));
    }
    value
}

/// The parameters a route reads by name: the route's own, and the password routes'.
fn named_params<'a>(route: &Route, doc: &'a RouteDoc) -> Vec<&'a Param> {
    static CREDENTIALS: [Param; 2] = [
        field(
            "username",
            Kind::Text,
            true,
            "The user name (absent: empty).",
        ),
        field(
            "password",
            Kind::Text,
            true,
            "The password (absent: empty).",
        ),
    ];
    let mut params: Vec<&'a Param> = Vec::new();
    if route.access == Access::Password {
        params.extend(CREDENTIALS.iter());
    }
    params.extend(doc.params.iter().filter(|param| param.place != In::Path));
    params
}

fn operation(route: &Route, doc: &RouteDoc, method: &str) -> Value {
    let mut op = Map::new();
    op.insert(
        "operationId".into(),
        json!(operation_id(method, route.path)),
    );
    op.insert("summary".into(), json!(doc.summary));
    op.insert("description".into(), json!(doc.description));
    op.insert("tags".into(), json!([tag(route.origin)]));
    op.insert("security".into(), security(route.access));
    let named = named_params(route, doc);
    if method == "GET" {
        if !named.is_empty() {
            let query: Vec<Value> = named.iter().map(|param| parameter(param)).collect();
            op.insert("parameters".into(), Value::Array(query));
        }
    } else if !named.is_empty() {
        op.insert("requestBody".into(), request_body(&named));
    }
    op.insert(
        "responses".into(),
        responses(route, doc, method, !named.is_empty()),
    );
    Value::Object(op)
}

fn request_body(params: &[&Param]) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for param in params {
        let mut schema = param_schema(param);
        if let Value::Object(map) = &mut schema {
            map.insert("description".into(), json!(param.about));
        }
        properties.insert(param.name.to_owned(), schema);
        if param.required {
            required.push(param.name);
        }
    }
    let mut schema = json!({"type": "object", "properties": properties});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    let files = params.iter().any(|param| param.place == In::File);
    let mut content = Map::new();
    if !files {
        content.insert(
            "application/x-www-form-urlencoded".into(),
            json!({"schema": schema}),
        );
    }
    let mut multipart = json!({"schema": schema});
    if files {
        let encoding: Map<String, Value> = params
            .iter()
            .filter(|param| param.place == In::File)
            .map(|param| {
                (
                    param.name.to_owned(),
                    json!({"contentType": "application/octet-stream, application/x-pem-file"}),
                )
            })
            .collect();
        if let Value::Object(map) = &mut multipart {
            map.insert("encoding".into(), Value::Object(encoding));
        }
    }
    content.insert("multipart/form-data".into(), multipart);
    json!({"required": params.iter().any(|param| param.required), "content": content})
}

/// The answers every route of an access shares.
fn access_answers(access: Access) -> &'static [Answer] {
    const PASSWORD: &[Answer] = &[ok("no match, or throttled", Body::Bare(Shape::False), true)];
    const USER: &[Answer] = &[
        status(
            401,
            "no certificate, or no integer `UID` in it",
            Body::CertRequired { locator: false },
        ),
        ok(
            "a certificate of another role than `user`, or an unknown user",
            Body::Bare(Shape::False),
            true,
        ),
    ];
    const MANAGER: &[Answer] = &[
        status(
            401,
            "no certificate, or no integer `UID` or `serviceLocator` in it",
            Body::CertRequired { locator: true },
        ),
        ok(
            "a certificate of another role than `manager`, or a service that does not \
             exist or is not the certificate user's",
            Body::Bare(Shape::False),
            true,
        ),
    ];
    const OPERATOR: &[Answer] = &[status(
        403,
        "neither the frontend's certificate nor an address of `METRICS_ALLOW`",
        Body::Html,
    )];
    const CLOUD_KEY: &[Answer] = &[status(
        401,
        "no `Authorization: Basic`, or not a live service's user and key",
        Body::Plain("Authentication failed: unknown user or key\n"),
    )];
    match access {
        Access::Anyone => &[],
        Access::CloudKey => CLOUD_KEY,
        Access::Password => PASSWORD,
        Access::User => USER,
        Access::Manager => MANAGER,
        Access::Operator => OPERATOR,
    }
}

fn media_type(body: Body) -> Option<&'static str> {
    Some(match body {
        Body::Bare(_) | Body::Pem | Body::Text(_) | Body::CertRequired { .. } => TEXT_HTML,
        Body::Jsonify(_) | Body::OpenApi => "application/json",
        Body::Zip => "application/zip",
        Body::Tarball => "application/x-tar",
        Body::Html => "text/html",
        Body::Prometheus => crate::director::metrics::CONTENT_TYPE,
        Body::Xml(_) => "application/xml",
        Body::Plain(_) => "text/plain; charset=utf-8",
        Body::Empty => return None,
    })
}

fn shape_schema(shape: Shape) -> Value {
    match shape {
        Shape::True => json!({"const": true}),
        Shape::False => json!({"const": false}),
        Shape::User => json!({"$ref": "#/components/schemas/User"}),
        Shape::Application => json!({"$ref": "#/components/schemas/Application"}),
        Shape::Service => json!({"$ref": "#/components/schemas/Service"}),
        Shape::Services => {
            json!({"type": "array", "items": {"$ref": "#/components/schemas/Service"}})
        }
        Shape::Applications => {
            json!({"type": "array", "items": {"$ref": "#/components/schemas/Application"}})
        }
        Shape::Names => json!({"type": "array", "items": {"type": "string"}}),
        Shape::Manifest => json!({"$ref": "#/components/schemas/Manifest"}),
        Shape::ErrorObject => json!({"$ref": "#/components/schemas/ErrorObject"}),
        Shape::Callback => json!({"$ref": "#/components/schemas/CallbackResult"}),
        Shape::Agents => json!({"type": "array", "items": {"$ref": "#/components/schemas/Agent"}}),
    }
}

fn body_schema(body: Body) -> Value {
    match body {
        Body::Bare(shape) | Body::Jsonify(shape) => shape_schema(shape),
        Body::Zip => json!({"contentMediaType": "application/zip"}),
        Body::Tarball => json!({"contentMediaType": "application/x-tar"}),
        Body::Pem => json!({"type": "string", "pattern": "^-----BEGIN CERTIFICATE-----"}),
        Body::Text(example) | Body::Xml(example) | Body::Plain(example) => {
            json!({"type": "string", "examples": [example]})
        }
        Body::CertRequired { locator } => {
            let mut texts = vec!["cert_required: client certificate does NOT provide UID"];
            if locator {
                texts.push("cert_required: client certificate does NOT provide serviceLocator");
            }
            json!({"type": "string", "enum": texts})
        }
        Body::Html | Body::Prometheus => json!({"type": "string"}),
        Body::OpenApi => json!({"type": "object"}),
        Body::Empty => json!({}),
    }
}

fn response_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/responses/{name}")})
}

fn responses(route: &Route, doc: &RouteDoc, method: &str, reads_params: bool) -> Value {
    // status -> the answers with it, in the order listed.
    let mut by_status: BTreeMap<u16, Vec<&Answer>> = BTreeMap::new();
    for answer in doc.answers.iter().chain(access_answers(route.access)) {
        by_status.entry(answer.status).or_default().push(answer);
    }
    let mut out = Map::new();
    for (code, answers) in &by_status {
        let mut description = String::new();
        let mut content: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        for answer in answers {
            let cors = if answer.cors { " (CORS)" } else { "" };
            let kind = match answer.body {
                Body::Bare(_) => " [bare JSON]",
                _ => "",
            };
            if !description.is_empty() {
                description.push('\n');
            }
            description.push_str(&format!("* {}{kind}{cors}", answer.when));
            if let Some(media) = media_type(answer.body) {
                let schema = body_schema(answer.body);
                let schemas = content.entry(media).or_default();
                if !schemas.contains(&schema) {
                    schemas.push(schema);
                }
            }
        }
        let mut response = Map::new();
        response.insert("description".into(), json!(description));
        let content: Map<String, Value> = content
            .into_iter()
            .map(|(media, mut schemas)| {
                let schema = if schemas.len() == 1 {
                    schemas.remove(0)
                } else {
                    json!({"oneOf": schemas})
                };
                (media.to_owned(), json!({"schema": schema}))
            })
            .collect();
        if !content.is_empty() {
            response.insert("content".into(), Value::Object(content));
        }
        let mut headers = Map::new();
        if answers.iter().any(|answer| answer.cors) {
            headers.insert(
                "Access-Control-Allow-Origin".into(),
                json!({"$ref": "#/components/headers/Cors"}),
            );
        }
        if route.access == Access::Manager {
            headers.insert(
                "Connection".into(),
                json!({"$ref": "#/components/headers/Close"}),
            );
        }
        if !headers.is_empty() {
            response.insert("headers".into(), Value::Object(headers));
        }
        out.insert(code.to_string(), Value::Object(response));
    }
    if reads_params && !out.contains_key("400") {
        out.insert("400".into(), response_ref("BadRequest"));
    }
    if method == "POST" {
        out.insert("413".into(), response_ref("TooLarge"));
    }
    out.insert("500".into(), response_ref("InternalError"));
    Value::Object(out)
}

fn nullable_string() -> Value {
    json!({"type": ["string", "null"]})
}

fn components() -> Value {
    let html = || json!({"text/html": {"schema": {"type": "string"}}});
    json!({
        "securitySchemes": {
            "userCertificate": {
                "type": "mutualTLS",
                "description": "A user's certificate (from /getcerts): integer `UID`, `role=user`.",
            },
            "managerCertificate": {
                "type": "mutualTLS",
                "description": "A manager's certificate: integer `UID` and `serviceLocator` \
                    (a live service of that user), `role=manager`.",
            },
            "agentCloudKey": {
                "type": "http",
                "scheme": "basic",
                "description": "A manager's key for the managers' cloud, as OpenNebula's OCCI \
                    server takes it: the user `s<sid>@<cloud>` and, as the password, the SHA-1 \
                    (lower-case hex) of the key the director wrote into the manager's config.cfg.",
            },
            "frontendCertificate": {
                "type": "mutualTLS",
                "description": "The director's own certificate (`role=frontend`), which the \
                    PHP frontend presents.",
            },
        },
        "headers": {
            "Cors": {
                "description": "`*`, on the answers marked (CORS): 1.2's accidental split, kept.",
                "schema": {"const": "*"},
            },
            "Close": {
                "description": "`close`: the 1.2 managers read answers until the connection closes.",
                "schema": {"const": "close"},
            },
        },
        "responses": {
            "BadRequest": {
                "description": "Unreadable parameters (not UTF-8, a malformed multipart body).",
                "content": html(),
            },
            "TooLarge": {
                "description": "A body over 1 MiB.",
                "content": html(),
            },
            "InternalError": {
                "description": "An internal failure; the cause is in the director's log.",
                "content": html(),
            },
        },
        "schemas": {
            "User": {
                "type": "object",
                "description": "The user dict. `password` is the MD5 hex of the password sent \
                    in this request, never the stored hash.",
                "required": ["username", "lname", "uid", "fname", "affiliation", "credit",
                    "password", "email", "created"],
                "properties": {
                    "username": {"type": "string"},
                    "lname": nullable_string(),
                    "uid": {"type": "integer"},
                    "fname": nullable_string(),
                    "affiliation": nullable_string(),
                    "credit": {"type": "integer"},
                    "password": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                    "email": nullable_string(),
                    "created": {
                        "type": ["string", "null"],
                        "description": "ISO 8601 without a zone, microseconds dropped when zero.",
                    },
                },
            },
            "Application": {
                "type": "object",
                "required": ["aid", "name"],
                "properties": {"aid": {"type": "integer"}, "name": nullable_string()},
            },
            "Service": {
                "type": "object",
                "description": "The service dict, always all eleven keys. `manager`, `vmid` \
                    and `cloud` are null while the VM is being created.",
                "required": ["subnet", "user_id", "name", "created", "vmid", "state",
                    "manager", "sid", "application_id", "type", "cloud"],
                "properties": {
                    "subnet": nullable_string(),
                    "user_id": {"type": "integer"},
                    "name": nullable_string(),
                    "created": nullable_string(),
                    "vmid": nullable_string(),
                    "state": {"type": ["string", "null"], "description": "Always `INIT`."},
                    "manager": {"type": ["string", "null"], "description": "The manager's address."},
                    "sid": {"type": "integer"},
                    "application_id": {"type": "integer"},
                    "type": nullable_string(),
                    "cloud": {"type": ["string", "null"], "description": "`iaas` for the default cloud."},
                },
            },
            "Manifest": {
                "type": "object",
                "required": ["Services", "Application"],
                "properties": {
                    "Services": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["ServiceName", "Type", "Cloud"],
                            "properties": {
                                "ServiceName": nullable_string(),
                                "Type": nullable_string(),
                                "Cloud": nullable_string(),
                            },
                        },
                    },
                    "Application": nullable_string(),
                },
            },
            "ErrorObject": {
                "type": "object",
                "required": ["error", "msg"],
                "properties": {"error": {"const": true}, "msg": {"type": "string"}},
            },
            "CallbackResult": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "boolean"}},
                "additionalProperties": false,
            },
            "Agent": {
                "type": "object",
                "required": ["id", "sid", "cloud", "name", "vmid", "ip", "state", "created"],
                "properties": {
                    "id": {"type": "integer", "description": "The agent's id (its OCCI id)."},
                    "sid": {"type": "integer", "description": "Its service."},
                    "cloud": {"type": "string", "description": "`iaas` for the default cloud."},
                    "name": {"type": "string"},
                    "vmid": {"type": ["string", "null"], "description": "Null while created."},
                    "ip": {"type": ["string", "null"], "description": "Null while created."},
                    "state": {"enum": ["starting", "running", "stopping", "undoing"]},
                    "created": {"type": ["string", "null"]},
                },
                "additionalProperties": false,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_one_description_and_every_description_a_route() {
        for route in ROUTES {
            let count = DOCS.iter().filter(|doc| doc.path == route.path).count();
            assert_eq!(
                count, 1,
                "descriptions of {} in api::openapi::DOCS",
                route.path
            );
        }
        for doc in DOCS {
            assert!(
                ROUTES.iter().any(|route| route.path == doc.path),
                "api::openapi::DOCS describes {}, which is not in api::ROUTES",
                doc.path
            );
        }
    }

    #[test]
    fn path_parameters_are_those_of_the_pattern() {
        for doc in DOCS {
            let in_pattern: Vec<&str> = doc
                .path
                .split('/')
                .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            let described: Vec<&str> = doc
                .params
                .iter()
                .filter(|param| param.place == In::Path)
                .map(|param| param.name)
                .collect();
            assert_eq!(in_pattern, described, "{}", doc.path);
        }
    }

    #[test]
    fn every_operation_is_there_with_a_unique_id() {
        let value = document_value();
        let mut ids = Vec::new();
        for route in ROUTES {
            for method in route.methods.split(", ") {
                let op = &value["paths"][route.path][method.to_ascii_lowercase()];
                assert!(op.is_object(), "{method} {}", route.path);
                assert!(
                    op["responses"]["200"].is_object(),
                    "{method} {}",
                    route.path
                );
                ids.push(op["operationId"].as_str().unwrap().to_owned());
            }
        }
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count);
        assert_eq!(
            operation_id("POST", "/start/{servicetype}/{cloudname}"),
            "post_start_servicetype_cloudname"
        );
    }
}
