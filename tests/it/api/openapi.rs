//! The OpenAPI document (`GET /openapi.json`, `docs/openapi.json`): kept in the repository as
//! the code generates it, valid OpenAPI 3.1, naming exactly the routes the router serves, and
//! documenting the answers a real director gives.

use std::path::{Path, PathBuf};
use std::process::Command;

use conpaas_core::api::{ROUTES, openapi};
use serde_json::Value;

use crate::support::{Reply, TestDirector};

/// How to bring `docs/openapi.json` up to date (also in docs/api.md).
const REGENERATE: &str = "UPDATE_OPENAPI=1 cargo test -p conpaas-tests --test it -- api::openapi";

fn docs_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json")
}

#[test]
fn docs_openapi_json_is_what_the_code_generates() {
    let generated = openapi::document();
    let file = docs_file();
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|value| value == "1") {
        std::fs::write(&file, &generated).unwrap();
        return;
    }
    let kept = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        kept == generated,
        "docs/openapi.json differs from what conpaas_core::api::openapi generates \
         (a route or its description changed): run `{REGENERATE}` and commit the file"
    );
}

/// The methods a path item documents, upper case, sorted.
fn methods_of(item: &Value) -> Vec<String> {
    let mut methods: Vec<String> = item
        .as_object()
        .unwrap()
        .keys()
        .filter(|key| *key != "parameters")
        .map(|key| key.to_ascii_uppercase())
        .collect();
    methods.sort();
    methods
}

/// `pattern` with each `{name}` replaced by the example of its path parameter.
fn instantiate(pattern: &str, item: &Value) -> String {
    let mut path = pattern.to_owned();
    for param in item["parameters"].as_array().into_iter().flatten() {
        let name = param["name"].as_str().unwrap();
        let example = param["example"]
            .as_str()
            .unwrap_or_else(|| panic!("{pattern}: no example for {name}"));
        path = path.replace(&format!("{{{name}}}"), example);
    }
    assert!(
        !path.contains('{'),
        "{pattern}: undocumented path parameters"
    );
    path
}

/// The `Allow` header the router sends for a route of these methods.
fn allow(methods: &[String]) -> String {
    let mut allow: Vec<&str> = Vec::new();
    if methods.iter().any(|method| method == "GET") {
        allow.push("HEAD");
    }
    // The router lists them in the table's order, which is GET before POST.
    for method in ["GET", "POST", "PUT", "DELETE"] {
        if methods.iter().any(|documented| documented == method) {
            allow.push(method);
        }
    }
    allow.push("OPTIONS");
    allow.join(", ")
}

#[tokio::test]
async fn the_router_serves_exactly_the_documented_routes() {
    let director = TestDirector::start();
    let http = director.anonymous();
    let served = http.get("/openapi.json").await;
    served
        .expect_status(200)
        .expect_content_type("application/json")
        .expect_cors(false);
    served.expect_no_internals(&director);
    assert_eq!(served.text(), openapi::document());
    assert!(!served.text().contains("servers"), "no server addresses");
    let document = served.json();
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["version"], conpaas_core::api::VERSION);
    let paths = document["paths"].as_object().unwrap();

    // Every route of the table is documented with its methods...
    for route in ROUTES {
        let item = paths
            .get(route.path)
            .unwrap_or_else(|| panic!("{} is not in the document", route.path));
        let mut methods: Vec<String> = route.methods.split(", ").map(str::to_owned).collect();
        methods.sort();
        assert_eq!(methods_of(item), methods, "{}", route.path);
    }
    assert_eq!(
        paths.len(),
        ROUTES.len(),
        "documented paths that are not routes"
    );

    // ...and the real router answers each documented path with the documented methods.
    for (pattern, item) in paths {
        let path = instantiate(pattern, item);
        let options = http.request("OPTIONS", &path).await;
        options.expect_status(200);
        assert_eq!(
            options.header("allow"),
            Some(allow(&methods_of(item)).as_str()),
            "{path}"
        );
    }
    http.get("/openapi.yaml").await.expect_not_found();
    http.get("/openapi.json/").await.expect_not_found();
}

/// The response a document gives for a status, `$ref`s followed.
fn documented_response<'a>(document: &'a Value, operation: &'a Value, status: u16) -> &'a Value {
    let response = &operation["responses"][status.to_string()];
    match response["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap();
            &document["components"]["responses"][name]
        }
        None => response,
    }
}

fn expect_documented(document: &Value, operation: &Value, reply: &Reply) {
    let response = documented_response(document, operation, reply.status);
    if !response.is_object() {
        reply.fail("status not among the documented responses");
    }
    if let Some(content) = response["content"].as_object() {
        let content_type = reply.header("content-type").unwrap_or_default();
        if !content.contains_key(content_type) {
            reply.fail(&format!(
                "Content-Type {content_type:?} not documented: {:?}",
                content.keys().collect::<Vec<_>>()
            ));
        }
    }
}

/// Each GET of a path without parameters, asked anonymously and with a user's certificate:
/// the status and content type are among those documented.
#[tokio::test]
async fn answers_are_among_the_documented_ones() {
    let director = TestDirector::start();
    director.add_user("oa", "pw", 5).await;
    let user = director.user_identity("oa", "pw").await;
    let clients = [director.anonymous(), director.client(&user)];
    let document: Value = serde_json::from_str(&openapi::document()).unwrap();
    let mut asked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        let Some(operation) = item.get("get") else {
            continue;
        };
        if path.contains('{') {
            continue;
        }
        for http in &clients {
            expect_documented(&document, operation, &http.get(path).await);
            asked += 1;
        }
    }
    assert!(asked >= 20, "{asked}");
    // A POST with its required parameters: a user's /createapp.
    let post = &document["paths"]["/createapp"]["post"];
    let created = clients[1]
        .post("/createapp", &[("name", "documented")])
        .await;
    created.jsonify(true);
    expect_documented(&document, post, &created);
    expect_documented(&document, post, &clients[0].post("/createapp", &[]).await);
}

/// openapi-spec-validator (tests/support/requirements.txt) accepts `docs/openapi.json`.
#[test]
fn the_document_is_valid_openapi_3_1() {
    let python = std::env::var_os("CONPAAS_TEST_PYTHON").unwrap_or_else(|| {
        panic!(
            "CONPAAS_TEST_PYTHON is not set: this test needs openapi-spec-validator; run \
             scripts/test.sh, which installs tests/support/requirements.txt into target/pyenv \
             and sets it"
        )
    });
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), openapi::document()).unwrap();
    let script = "import json, sys\n\
                  from openapi_spec_validator import validate\n\
                  from openapi_spec_validator.validation import OpenAPIV31SpecValidator\n\
                  validate(json.load(open(sys.argv[1])), cls=OpenAPIV31SpecValidator)\n\
                  print('valid')\n";
    let output = Command::new(&python)
        .args(["-c", script])
        .arg(file.path())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", python.display()));
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == "valid",
        "openapi-spec-validator refuses the document (or is not installed: run \
         scripts/test.sh):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
