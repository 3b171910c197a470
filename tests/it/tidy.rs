//! Tidy checks (STYLE.md §5): the docs name every route, every source file says what it holds,
//! and the modules keep the one-way dependencies of DESIGN.md. `docs/config.md` against
//! `config::KNOWN_KEYS` is checked in `config.rs`.

use std::fs;
use std::path::{Path, PathBuf};

use conpaas_core::api::ROUTES;

/// The rooms below `api`: none of them may know about HTTP.
const BELOW_API: [&str; 10] = [
    "model",
    "client",
    "config",
    "store",
    "ca",
    "vpn",
    "cloud",
    "bootstrap",
    "manager_client",
    "director",
];

/// The rooms `director` combines: each may use only itself and `model`, so that `director`
/// is the one place passing values between them.
const LOWER_ROOMS: [&str; 6] = ["store", "ca", "vpn", "cloud", "bootstrap", "manager_client"];

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn core_src() -> PathBuf {
    workspace().join("conpaas-core/src")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Every `.rs` file below `dir`, sorted, so failures list in a stable order.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            fs::read_dir(&dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The module path of a file of conpaas-core: `store/users.rs` is `["store", "users"]`,
/// `store/mod.rs` is `["store"]`, `lib.rs` is `[]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(core_src()).unwrap();
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// A path into the crate found in a source line.
#[derive(Debug)]
struct CrateRef {
    line: usize,
    /// The top-level module the path leads into, or `*` for a glob or group at the root.
    top: String,
    text: String,
}

/// Every `crate::` and `super::` path of a file, resolved to the top-level module it reaches.
///
/// The file is rustfmt'd, so an inline `mod name {` closes at the first line holding only `}`
/// at the same indentation; `super::` inside it starts from that inline module. Comment lines
/// are skipped (doc links name other modules without depending on them).
fn crate_refs(module: &[String], source: &str) -> Vec<CrateRef> {
    let mut inline: Vec<(String, String)> = Vec::new(); // (indentation, name)
    let mut refs = Vec::new();
    for (index, line) in source.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if inline
            .last()
            .is_some_and(|(open, _)| open == indent && trimmed == "}")
        {
            inline.pop();
            continue;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        if let Some(name) = inline_module(trimmed) {
            inline.push((indent.to_owned(), name));
            continue;
        }
        let mut here = module.to_vec();
        here.extend(inline.iter().map(|(_, name)| name.clone()));
        for (start, _) in line
            .match_indices("crate::")
            .chain(line.match_indices("super::"))
        {
            let preceded_by_ident = line[..start]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
            // `super::super::x` is found twice; the first occurrence resolves it.
            let after_super = line[..start].ends_with("super::");
            if preceded_by_ident || after_super {
                continue;
            }
            let mut rest = &line[start..];
            let mut base = if let Some(tail) = rest.strip_prefix("crate::") {
                rest = tail;
                Vec::new()
            } else {
                let mut base = here.clone();
                while let Some(tail) = rest.strip_prefix("super::") {
                    rest = tail;
                    base.pop();
                }
                base
            };
            let next: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if next.is_empty() {
                base.push("*".to_owned());
            } else {
                base.push(next);
            }
            refs.push(CrateRef {
                line: index + 1,
                top: base[0].clone(),
                text: trimmed.to_owned(),
            });
        }
    }
    refs
}

/// The name of an inline module opened on this line (`mod tests {`), if any.
fn inline_module(trimmed: &str) -> Option<String> {
    let rest = trimmed
        .strip_prefix("pub ")
        .or_else(|| {
            trimmed
                .strip_prefix("pub(")
                .and_then(|r| r.split_once(") ").map(|(_, r)| r))
        })
        .unwrap_or(trimmed);
    let name = rest.strip_prefix("mod ")?.strip_suffix(" {")?;
    Some(name.to_owned())
}

/// The `crate::`/`super::` paths of every file of `room` whose target `allowed` refuses.
fn violations(room: &str, allowed: impl Fn(&str) -> bool) -> Vec<String> {
    let dir = core_src().join(room);
    let files = if dir.is_dir() {
        rust_files(&dir)
    } else {
        vec![core_src().join(format!("{room}.rs"))]
    };
    files
        .iter()
        .flat_map(|file| {
            crate_refs(&module_of(file), &read(file))
                .into_iter()
                .filter(|r| !allowed(&r.top))
                .map(move |r| format!("{}:{}: {}", relative(file), r.line, r.text))
        })
        .collect()
}

#[test]
fn every_route_has_a_heading_in_api_docs() {
    let docs = read(&workspace().join("docs/api.md"));
    let headings: Vec<&str> = docs.lines().filter(|l| l.starts_with('#')).collect();
    let mut missing = Vec::new();
    for route in ROUTES {
        let quoted = format!("`{}`", route.path);
        let documented = headings.iter().any(|heading| {
            heading.contains(&quoted) && route.methods.split(", ").all(|m| heading.contains(m))
        });
        if !documented {
            missing.push(format!("{} {}", route.methods, route.path));
        }
    }
    assert!(
        missing.is_empty(),
        "routes without a heading naming their methods and `path` in docs/api.md: {missing:?}"
    );
}

#[test]
fn api_docs_name_no_route_that_does_not_exist() {
    let docs = read(&workspace().join("docs/api.md"));
    let mut unknown = Vec::new();
    for heading in docs.lines().filter(|l| l.starts_with('#')) {
        for (index, span) in heading.split('`').enumerate() {
            let quoted = index % 2 == 1;
            if quoted && span.starts_with('/') && !ROUTES.iter().any(|route| route.path == span) {
                unknown.push(span.to_owned());
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "docs/api.md headings name paths not in api::ROUTES: {unknown:?}"
    );
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let mut undocumented = Vec::new();
    for dir in ["conpaas-core/src", "conpaas-bin/src"] {
        for file in rust_files(&workspace().join(dir)) {
            if !read(&file).starts_with("//!") {
                undocumented.push(relative(&file));
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "files not opening with a `//!` line: {undocumented:?}"
    );
}

#[test]
fn nothing_below_api_uses_api() {
    let found: Vec<String> = BELOW_API
        .iter()
        .flat_map(|room| violations(room, |top| top != "api"))
        .collect();
    assert!(found.is_empty(), "below api, uses of api: {found:#?}");
}

#[test]
fn model_imports_nothing_of_the_crate() {
    let found = violations("model", |top| top == "model");
    assert!(found.is_empty(), "model uses other modules: {found:#?}");
    let found = violations("data_files", |top| top == "data_files");
    assert!(
        found.is_empty(),
        "data_files uses other modules: {found:#?}"
    );
}

#[test]
fn lower_rooms_use_only_themselves_and_model() {
    let found: Vec<String> = LOWER_ROOMS
        .iter()
        // `data_files` is a helper of theirs (how a file of the data directory is written),
        // not a room: it imports nothing of the crate.
        .flat_map(|room| {
            violations(room, |top| {
                top == *room || top == "model" || top == "data_files"
            })
        })
        .collect();
    assert!(
        found.is_empty(),
        "rooms under director reaching each other, director, api or config: {found:#?}"
    );
}

/// The path resolution the checks above rely on.
#[test]
fn crate_refs_resolve_super_from_inline_modules() {
    let source = "\
//! A room.
use super::Error;
// use crate::api;
use crate::model::UserId;
pub(crate) mod inner {
    use super::super::ca::X;
}
mod tests {
    use super::*;
    fn f() -> crate::vpn::Y {}
}
use self::inner::Z;
";
    let module = ["store".to_owned(), "users".to_owned()];
    let tops: Vec<(usize, String)> = crate_refs(&module, source)
        .into_iter()
        .map(|r| (r.line, r.top))
        .collect();
    let expected = [
        (2, "store"),
        (4, "model"),
        (6, "store"),
        (9, "store"),
        (10, "vpn"),
    ];
    let expected: Vec<(usize, String)> = expected
        .iter()
        .map(|(line, top)| (*line, (*top).to_owned()))
        .collect();
    assert_eq!(tops, expected);
    // From a module's mod.rs, `super::` is the crate root.
    let root = crate_refs(&["model".to_owned()], "use super::{ca, vpn};\n");
    assert_eq!(root[0].top, "*");
    assert_eq!(module_of(&core_src().join("vpn/plan.rs")), ["vpn", "plan"]);
    assert_eq!(module_of(&core_src().join("vpn/mod.rs")), ["vpn"]);
    assert!(module_of(&core_src().join("lib.rs")).is_empty());
}

/// Every example runs under `cargo test` (declared `test = true, harness = false`, so its
/// `main` is executed and its assertions checked) and is listed in docs/embedding.md.
#[test]
fn every_example_runs_in_the_test_command_and_is_documented() {
    let manifest = read(&workspace().join("conpaas-core/Cargo.toml"));
    let embedding = read(&workspace().join("docs/embedding.md"));
    let dir = workspace().join("conpaas-core/examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    for name in &names {
        let declaration = format!("[[example]]\nname = \"{name}\"\n");
        let Some(start) = manifest.find(&declaration) else {
            panic!("conpaas-core/Cargo.toml declares no [[example]] {name}");
        };
        let block = &manifest[start + declaration.len()..];
        let block = &block[..block.find("\n\n").unwrap_or(block.len())];
        assert!(
            block.contains("test = true") && block.contains("harness = false"),
            "example {name} does not run under cargo test: {block}"
        );
        assert!(
            embedding.contains(&format!("`{name}`")),
            "docs/embedding.md does not mention the example {name}"
        );
    }
}
