//! The service-specific commands of the 1.2 client modules (`cps/{web,php,java,mysql,xtreemfs,
//! taskfarm}.py` at 1.2.0) as one table: for each command and service type, its arguments, the
//! manager call they become and how the answer is shown. Most entries are a plain JSON-RPC
//! call; the few that are more (`toggle_debug`, `set_policy`, ...) name their own [`Call`].

use serde_json::{Map, Value, json};

use super::{Error, Managers, Service};
use crate::manager_client::Upload;

const WEB: &[&str] = &["php", "java"];

/// How one positional argument (after the service id) becomes part of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Param {
    /// An integer, as the JSON-RPC parameter of this name.
    Int(&'static str),
    /// Text, as the parameter of this name.
    Text(&'static str),
    /// Optional text, as the parameter of this name when given.
    OptionalText(&'static str),
    /// A code version id (`code-...`, 1.2 checked the prefix), as the parameter of this name.
    CodeVersion(&'static str),
    /// Optional cloud name, `cloud`, `default` when not given.
    Cloud,
    /// A file path: its content is the upload's file.
    File,
}

impl Param {
    fn optional(self) -> bool {
        matches!(self, Param::OptionalText(_) | Param::Cloud)
    }
}

/// One positional argument.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Arg {
    /// Its name in the usage line (`COUNT`, `FILE`).
    pub name: &'static str,
    /// What it becomes.
    pub param: Param,
}

/// The manager call of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Call {
    /// JSON-RPC POST of the arguments' parameters.
    Post(&'static str),
    /// JSON-RPC GET (parameters only when there are some).
    Get(&'static str),
    /// Upload POST: field `method`, the file in part `field`, the other parameters as fields.
    Upload {
        /// The manager method.
        method: &'static str,
        /// The file part's name.
        field: &'static str,
    },
    /// `download_code_version`: the answer is the code archive.
    DownloadCode,
    /// php: read `get_configuration`, flip `display_errors` with `update_php_configuration`.
    ToggleDebug,
    /// xtreemfs: `list_<TYPE>_policies` for TYPE `osd_sel`, `replica_sel`, `replication`.
    ListPolicies,
    /// xtreemfs: `set_<TYPE>_policy`; `replication` needs a factor.
    SetPolicy,
    /// mysql: `set_password` for the user `mysqldb`.
    SetPassword,
    /// taskfarm: `set_service_mode [MODE]`, only while the mode is `NA`.
    SetMode,
    /// taskfarm: upload a bag of tasks (`start_sampling`) once a mode is set.
    UploadBot,
}

/// How a successful answer is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Show {
    /// "Service SID is performing the requested operation (NAME)".
    Performing,
    /// A sentence with `{param}` filled from the parameters or the answer.
    Says(&'static str),
    /// The answer's member of this name.
    Member(&'static str),
    /// The answer's member of this name, a list, one item per line.
    Lines(&'static str),
    /// The answer's member `codeVersions` as 1.2's table (current, id, file, description).
    CodeVersions,
    /// The call prints its own result.
    Own,
}

/// One command for some service types: an entry of [`COMMANDS`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ServiceCommand {
    /// The command's name, as in 1.2.
    pub name: &'static str,
    /// The service types it applies to.
    pub types: &'static [&'static str],
    /// The arguments after the service id.
    pub args: &'static [Arg],
    /// What it does, for the usage lines.
    pub about: &'static str,
    /// The manager call.
    pub call: Call,
    /// How the answer is shown.
    pub show: Show,
}

const fn arg(name: &'static str, param: Param) -> Arg {
    Arg { name, param }
}

/// Every service-specific command of the 1.2 modules.
pub const COMMANDS: &[ServiceCommand] = &[
    // web.py (php, java)
    ServiceCommand {
        name: "add_nodes",
        types: WEB,
        args: &[
            arg("B", Param::Int("backend")),
            arg("W", Param::Int("web")),
            arg("P", Param::Int("proxy")),
            arg("CLOUD", Param::Cloud),
        ],
        about: "add B backend, W web and P proxy nodes",
        call: Call::Post("add_nodes"),
        show: Show::Performing,
    },
    ServiceCommand {
        name: "remove_nodes",
        types: WEB,
        args: &[
            arg("B", Param::Int("backend")),
            arg("W", Param::Int("web")),
            arg("P", Param::Int("proxy")),
        ],
        about: "remove B backend, W web and P proxy nodes",
        call: Call::Post("remove_nodes"),
        show: Show::Performing,
    },
    ServiceCommand {
        name: "list_keys",
        types: WEB,
        args: &[],
        about: "list authorized SSH keys",
        call: Call::Get("list_authorized_keys"),
        show: Show::Lines("authorizedKeys"),
    },
    ServiceCommand {
        name: "upload_key",
        types: WEB,
        args: &[arg("FILE", Param::File)],
        about: "upload an SSH key",
        call: Call::Upload {
            method: "upload_authorized_key",
            field: "key",
        },
        show: Show::Member("outcome"),
    },
    ServiceCommand {
        name: "list_uploads",
        types: WEB,
        args: &[],
        about: "list uploaded code versions",
        call: Call::Get("list_code_versions"),
        show: Show::CodeVersions,
    },
    ServiceCommand {
        name: "upload_code",
        types: WEB,
        args: &[arg("FILE", Param::File)],
        about: "upload a new code version",
        call: Call::Upload {
            method: "upload_code_version",
            field: "code",
        },
        show: Show::Says("Code version {codeVersionId} uploaded"),
    },
    ServiceCommand {
        name: "download_code",
        types: WEB,
        args: &[arg("VERSION", Param::CodeVersion("codeVersionId"))],
        about: "download a specific code version",
        call: Call::DownloadCode,
        show: Show::Own,
    },
    ServiceCommand {
        name: "enable_code",
        types: &["php"],
        args: &[arg("VERSION", Param::CodeVersion("codeVersionId"))],
        about: "set a specific code version active",
        call: Call::Post("update_php_configuration"),
        show: Show::Says("{codeVersionId} enabled"),
    },
    ServiceCommand {
        name: "enable_code",
        types: &["java"],
        args: &[arg("VERSION", Param::CodeVersion("codeVersionId"))],
        about: "set a specific code version active",
        call: Call::Post("update_java_configuration"),
        show: Show::Says("{codeVersionId} enabled"),
    },
    ServiceCommand {
        name: "toggle_debug",
        types: &["php"],
        args: &[],
        about: "enable/disable debug mode",
        call: Call::ToggleDebug,
        show: Show::Own,
    },
    // mysql.py
    ServiceCommand {
        name: "set_password",
        types: &["mysql"],
        args: &[arg("PASSWORD", Param::OptionalText("password"))],
        about: "set the database password (asked when not given)",
        call: Call::SetPassword,
        show: Show::Says("Password updated successfully"),
    },
    ServiceCommand {
        name: "add_nodes",
        types: &["mysql"],
        args: &[
            arg("COUNT", Param::Int("slaves")),
            arg("CLOUD", Param::Cloud),
        ],
        about: "add COUNT slave nodes",
        call: Call::Post("add_nodes"),
        show: Show::Performing,
    },
    ServiceCommand {
        name: "remove_nodes",
        types: &["mysql"],
        args: &[arg("COUNT", Param::Int("slaves"))],
        about: "remove COUNT slave nodes",
        call: Call::Post("remove_nodes"),
        show: Show::Performing,
    },
    // xtreemfs.py
    ServiceCommand {
        name: "add_nodes",
        types: &["xtreemfs"],
        args: &[arg("COUNT", Param::Int("osd")), arg("CLOUD", Param::Cloud)],
        about: "add COUNT OSD nodes",
        call: Call::Post("add_nodes"),
        show: Show::Performing,
    },
    ServiceCommand {
        name: "remove_nodes",
        types: &["xtreemfs"],
        args: &[arg("COUNT", Param::Int("osd")), arg("CLOUD", Param::Cloud)],
        about: "remove COUNT OSD nodes",
        call: Call::Post("remove_nodes"),
        show: Show::Performing,
    },
    ServiceCommand {
        name: "list_volumes",
        types: &["xtreemfs"],
        args: &[],
        about: "list the volumes",
        call: Call::Get("listVolumes"),
        show: Show::Member("volumes"),
    },
    ServiceCommand {
        name: "create_volume",
        types: &["xtreemfs"],
        args: &[arg("VOLUME", Param::Text("volumeName"))],
        about: "create a volume",
        call: Call::Post("createVolume"),
        show: Show::Says("Volume {volumeName} created"),
    },
    ServiceCommand {
        name: "delete_volume",
        types: &["xtreemfs"],
        args: &[arg("VOLUME", Param::Text("volumeName"))],
        about: "delete a volume",
        call: Call::Post("deleteVolume"),
        show: Show::Says("Volume {volumeName} deleted"),
    },
    ServiceCommand {
        name: "list_policies",
        types: &["xtreemfs"],
        args: &[arg("TYPE", Param::Text("type"))],
        about: "list the policies of TYPE: osd_sel, replica_sel or replication",
        call: Call::ListPolicies,
        show: Show::Member("policies"),
    },
    ServiceCommand {
        name: "set_policy",
        types: &["xtreemfs"],
        args: &[
            arg("TYPE", Param::Text("type")),
            arg("VOLUME", Param::Text("volumeName")),
            arg("POLICY", Param::Text("policy")),
            arg("FACTOR", Param::OptionalText("factor")),
        ],
        about: "set a volume's TYPE policy (replication needs FACTOR)",
        call: Call::SetPolicy,
        show: Show::Own,
    },
    // taskfarm.py
    ServiceCommand {
        name: "set_mode",
        types: &["taskfarm"],
        args: &[arg("MODE", Param::Text("mode"))],
        about: "select the run mode: DEMO or REAL",
        call: Call::SetMode,
        show: Show::Own,
    },
    ServiceCommand {
        name: "upload_bot",
        types: &["taskfarm"],
        args: &[
            arg("FILE", Param::File),
            arg("XTREEMFS_LOCATION", Param::Text("uriLocation")),
        ],
        about: "upload a bag of tasks and set the file location",
        call: Call::UploadBot,
        show: Show::Own,
    },
];

/// The command `name` for `service_type`.
pub fn find(name: &str, service_type: &str) -> Option<&'static ServiceCommand> {
    COMMANDS
        .iter()
        .find(|command| command.name == name && command.types.contains(&service_type))
}

/// The distinct command names, in table order.
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<&str> = Vec::new();
    for command in COMMANDS {
        if !names.contains(&command.name) {
            names.push(command.name);
        }
    }
    names
}

/// The entries named `name`.
pub fn entries(name: &str) -> impl Iterator<Item = &'static ServiceCommand> + '_ {
    COMMANDS.iter().filter(move |command| command.name == name)
}

impl ServiceCommand {
    /// `name SID ARGS...`, optional arguments in brackets.
    pub fn synopsis(&self) -> String {
        let mut line = format!("{} SID", self.name);
        for arg in self.args {
            if arg.param.optional() {
                line.push_str(&format!(" [{}]", arg.name));
            } else {
                line.push_str(&format!(" {}", arg.name));
            }
        }
        line
    }
}

/// The usage lines of `service_type`'s commands (1.2's `usage SID`).
pub fn usage(service_type: &str) -> Vec<String> {
    COMMANDS
        .iter()
        .filter(|command| command.types.contains(&service_type))
        .map(|command| format!("{:<40} # {}", command.synopsis(), command.about))
        .collect()
}

/// What a command gives: a text for people and the same as JSON.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Outcome {
    /// Lines for a terminal.
    pub text: String,
    /// The manager's answer (or what the command made of it).
    pub json: Value,
    /// A file the command downloaded (`download_code`): the suggested name and its bytes.
    pub download: Option<(String, Vec<u8>)>,
}

impl Outcome {
    fn new(text: impl Into<String>, json: Value) -> Self {
        Outcome {
            text: text.into(),
            json,
            download: None,
        }
    }
}

/// The arguments, checked: JSON parameters, and the file when there is one.
struct Parsed {
    params: Map<String, Value>,
    file: Option<Upload>,
}

fn parse(command: &ServiceCommand, args: &[String]) -> Result<Parsed, Error> {
    let usage = |why: String| Error::Usage(format!("{why}; usage: {}", command.synopsis()));
    if args.len() > command.args.len() {
        return Err(usage(format!("too many arguments for {}", command.name)));
    }
    let mut params = Map::new();
    let mut file = None;
    for (index, spec) in command.args.iter().enumerate() {
        let Some(value) = args.get(index) else {
            match spec.param {
                Param::Cloud => {
                    params.insert("cloud".into(), json!("default"));
                    continue;
                }
                Param::OptionalText(_) => continue,
                _ => return Err(usage(format!("{} is missing", spec.name))),
            }
        };
        match spec.param {
            Param::Int(key) => {
                let count: i64 = value.trim().parse().map_err(|_| {
                    usage(format!("{} must be an integer, not {value:?}", spec.name))
                })?;
                params.insert(key.into(), json!(count));
            }
            Param::Text(key) | Param::OptionalText(key) => {
                params.insert(key.into(), json!(value));
            }
            Param::CodeVersion(key) => {
                if !value.starts_with("code-") {
                    return Err(usage(format!(
                        "{value:?} is not a code version id (code-...)"
                    )));
                }
                params.insert(key.into(), json!(value));
            }
            Param::Cloud => {
                params.insert("cloud".into(), json!(value));
            }
            Param::File => {
                let bytes = std::fs::read(value).map_err(|source| Error::File {
                    path: value.into(),
                    action: "read",
                    source,
                })?;
                let file_name = std::path::Path::new(value)
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_else(|| value.clone());
                file = Some((file_name, bytes));
            }
        }
    }
    let file = match (file, command.call) {
        (Some((file_name, bytes)), Call::Upload { field, .. }) => Some(Upload {
            field,
            file_name,
            bytes,
        }),
        (Some((file_name, bytes)), _) => Some(Upload {
            field: "botFile",
            file_name,
            bytes,
        }),
        (None, _) => None,
    };
    Ok(Parsed { params, file })
}

/// `{key}` of `template` from `params`, then from `answer`.
fn fill(template: &str, params: &Map<String, Value>, answer: &Value) -> String {
    let mut out = template.to_owned();
    while let Some(start) = out.find('{') {
        let Some(len) = out[start..].find('}') else {
            break;
        };
        let key = &out[start + 1..start + len];
        let value = params
            .get(key)
            .or_else(|| answer.get(key))
            .map(|value| match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default();
        out.replace_range(start..start + len + 1, &value);
    }
    out
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The `TYPE` of `list_policies`/`set_policy` as the method's middle part.
fn policy_type(params: &Map<String, Value>) -> Result<&'static str, Error> {
    match params.get("type").and_then(Value::as_str) {
        Some("osd_sel") => Ok("osd_sel"),
        Some("replica_sel") => Ok("replica_sel"),
        Some("replication") => Ok("replication"),
        other => Err(Error::Usage(format!(
            "policy type {:?}: expected osd_sel, replica_sel or replication",
            other.unwrap_or_default()
        ))),
    }
}

/// Runs `command` on `service` with the positional `args` that follow the service id.
pub async fn run(
    command: &ServiceCommand,
    managers: &Managers,
    service: &Service,
    args: &[String],
) -> Result<Outcome, Error> {
    let Parsed { mut params, file } = parse(command, args)?;
    let sid = service.sid;
    let answer = match command.call {
        Call::Post(method) => {
            managers
                .post(service, method, Value::Object(params.clone()))
                .await?
        }
        Call::Get(method) => {
            let query = (!params.is_empty()).then(|| Value::Object(params.clone()));
            managers.get(service, method, query).await?
        }
        Call::Upload { method, .. } => {
            let file = file.ok_or_else(|| Error::Usage("FILE is missing".into()))?;
            let mut fields = vec![("method".to_owned(), method.to_owned())];
            fields.extend(
                params
                    .iter()
                    .map(|(key, value)| (key.clone(), text_of(value))),
            );
            let fields: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            managers.upload(service, &fields, file).await?
        }
        Call::DownloadCode => {
            let version = params.get("codeVersionId").map(text_of).unwrap_or_default();
            let bytes = managers
                .get_bytes(
                    service,
                    "download_code_version",
                    Some(Value::Object(params)),
                )
                .await?;
            let name = format!("{version}.tar.gz");
            let json = json!({"codeVersionId": version, "bytes": bytes.len()});
            return Ok(Outcome {
                text: String::new(),
                json,
                download: Some((name, bytes)),
            });
        }
        Call::ToggleDebug => {
            let debug = |conf: &Value| {
                conf.pointer("/phpconf/display_errors")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let before = debug(&managers.get(service, "get_configuration", None).await?);
            let next = if before == "On" { "Off" } else { "On" };
            managers
                .post(
                    service,
                    "update_php_configuration",
                    json!({"phpconf": {"display_errors": next}}),
                )
                .await?;
            let now = debug(&managers.get(service, "get_configuration", None).await?);
            return Ok(Outcome::new(
                format!("Debug mode is now {now}"),
                json!({"display_errors": now}),
            ));
        }
        Call::ListPolicies => {
            let kind = policy_type(&params)?;
            managers
                .get(service, &format!("list_{kind}_policies"), None)
                .await?
        }
        Call::SetPolicy => {
            let kind = policy_type(&params)?;
            params.remove("type");
            if kind == "replication" && !params.contains_key("factor") {
                return Err(Error::Usage(
                    "the replication policy needs FACTOR; usage: set_policy SID replication \
                     VOLUME POLICY FACTOR"
                        .into(),
                ));
            }
            if kind != "replication" {
                params.remove("factor");
            }
            let answer = managers
                .post(
                    service,
                    &format!("set_{kind}_policy"),
                    Value::Object(params),
                )
                .await?;
            let stdout = answer.get("stdout").map(text_of).unwrap_or_default();
            let text = if stdout.is_empty() {
                "Policy set.".to_owned()
            } else {
                format!("{stdout}\nPolicy set.")
            };
            return Ok(Outcome::new(text, answer));
        }
        Call::SetPassword => {
            let password = params
                .get("password")
                .map(text_of)
                .ok_or_else(|| Error::Usage("PASSWORD is missing".into()))?;
            managers
                .post(
                    service,
                    "set_password",
                    json!({"user": "mysqldb", "password": password}),
                )
                .await?
        }
        Call::SetMode => {
            let mode = params
                .get("mode")
                .map(text_of)
                .unwrap_or_default()
                .to_uppercase();
            if mode != "DEMO" && mode != "REAL" {
                return Err(Error::Usage(format!(
                    "invalid mode {mode}: use DEMO or REAL"
                )));
            }
            let old = taskfarm_mode(managers, service).await?;
            if old != "NA" {
                return Err(Error::Refused(format!("mode is already set to {old}")));
            }
            let answer = managers
                .post(service, "set_service_mode", json!([mode]))
                .await?;
            let text = answer
                .get("message")
                .map(text_of)
                .unwrap_or_else(|| format!("mode set to {mode}"));
            return Ok(Outcome::new(text, answer));
        }
        Call::UploadBot => {
            if taskfarm_mode(managers, service).await? == "NA" {
                return Err(Error::Refused(format!(
                    "to upload a bag of tasks, first choose the run mode: cpsclient set_mode \
                     {sid} DEMO|REAL"
                )));
            }
            let file = file.ok_or_else(|| Error::Usage("FILE is missing".into()))?;
            let location = params.get("uriLocation").map(text_of).unwrap_or_default();
            let answer = managers
                .upload(
                    service,
                    &[("uriLocation", &location), ("method", "start_sampling")],
                    file,
                )
                .await?;
            let text = answer
                .get("message")
                .map(text_of)
                .unwrap_or_else(|| text_of(&answer));
            return Ok(Outcome::new(text, answer));
        }
    };
    let text = match command.show {
        Show::Performing => format!(
            "Service {sid} is performing the requested operation ({})",
            command.name
        ),
        Show::Says(template) => fill(template, &params, &answer),
        Show::Member(key) => answer.get(key).map(text_of).unwrap_or_default(),
        Show::Lines(key) => answer
            .get(key)
            .and_then(Value::as_array)
            .map(|items| items.iter().map(text_of).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default(),
        Show::CodeVersions => code_versions(&answer),
        Show::Own => text_of(&answer),
    };
    Ok(Outcome::new(text, answer))
}

async fn taskfarm_mode(managers: &Managers, service: &Service) -> Result<String, Error> {
    let info = managers.info(service).await?;
    Ok(info.get("mode").map(text_of).unwrap_or_else(|| "NA".into()))
}

/// 1.2's `list_uploads` table: the current version marked with `*`.
fn code_versions(answer: &Value) -> String {
    let rows: Vec<Vec<String>> = answer
        .get("codeVersions")
        .and_then(Value::as_array)
        .map(|versions| {
            versions
                .iter()
                .map(|version| {
                    let current = if version.get("current").is_some() {
                        "*"
                    } else {
                        ""
                    };
                    let field = |key: &str| version.get(key).map(text_of).unwrap_or_default();
                    vec![
                        current.to_owned(),
                        field("codeVersionId"),
                        field("filename"),
                        field("description"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &["current", "codeVersionId", "filename", "description"],
        &rows,
    )
}

/// A table as 1.2's `prettytable`: columns as wide as their widest cell, a rule under the
/// header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|name| name.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join(" ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    out.push_str(&"-".repeat(widths.iter().sum::<usize>() + widths.len().saturating_sub(1)));
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_become_parameters() {
        let check = |name: &str, kind: &str, args: &[&str], expect: Result<Value, &str>| {
            let command = find(name, kind).unwrap();
            let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            match (parse(command, &args), expect) {
                (Ok(parsed), Ok(expect)) => assert_eq!(Value::Object(parsed.params), expect),
                (Err(error), Err(expect)) => {
                    assert!(error.to_string().contains(expect), "{error}")
                }
                (got, expect) => panic!("{name} {args:?}: {:?} vs {expect:?}", got.is_ok()),
            }
        };
        check(
            "add_nodes",
            "php",
            &["1", "2", "3"],
            Ok(json!({"backend": 1, "web": 2, "proxy": 3, "cloud": "default"})),
        );
        check(
            "add_nodes",
            "mysql",
            &["2", "ec2"],
            Ok(json!({"slaves": 2, "cloud": "ec2"})),
        );
        check(
            "remove_nodes",
            "xtreemfs",
            &["1"],
            Ok(json!({"osd": 1, "cloud": "default"})),
        );
        check(
            "add_nodes",
            "php",
            &["1", "x", "3"],
            Err("W must be an integer"),
        );
        check("add_nodes", "php", &["1"], Err("W is missing"));
        check(
            "remove_nodes",
            "mysql",
            &["1", "2"],
            Err("too many arguments"),
        );
        check("enable_code", "java", &["v1"], Err("not a code version id"));
        check("set_password", "mysql", &[], Ok(json!({})));
        assert!(find("toggle_debug", "java").is_none());
        assert_eq!(names().len(), 17);
        assert!(
            usage("xtreemfs")
                .iter()
                .any(|line| line.starts_with("set_policy SID TYPE VOLUME POLICY [FACTOR]"))
        );
    }

    #[test]
    fn tables_and_templates() {
        assert_eq!(
            table(
                &["aid", "name"],
                &[vec!["1".into(), "New Application".into()]]
            ),
            "aid name\n-------------------\n1   New Application"
        );
        let params = json!({"volumeName": "v"});
        assert_eq!(
            fill(
                "Volume {volumeName} created in {x}",
                params.as_object().unwrap(),
                &json!({"x": 3})
            ),
            "Volume v created in 3"
        );
    }
}
