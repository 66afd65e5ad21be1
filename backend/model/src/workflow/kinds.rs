//! Task kinds and their settings. Each kind's `config` has a JSON Schema (`kind_schemas`), so a
//! form for a new kind needs no UI code.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A task's kind with its checked settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "config", rename_all = "snake_case")]
pub enum TaskKind {
    Noop,
    Sleep(SleepConfig),
    Shell(ShellConfig),
    Python(PythonConfig),
    Http(HttpConfig),
    Sql(SqlConfig),
    Plugin(PluginConfig),
    Switch(SwitchConfig),
    SubWorkflow(SubWorkflowConfig),
    Dependency(DependencyConfig),
}

impl TaskKind {
    pub const NAMES: [&'static str; 10] =
        ["noop", "sleep", "shell", "python", "http", "sql", "plugin", "switch", "sub_workflow", "dependency"];

    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Noop => "noop",
            TaskKind::Sleep(_) => "sleep",
            TaskKind::Shell(_) => "shell",
            TaskKind::Python(_) => "python",
            TaskKind::Http(_) => "http",
            TaskKind::Sql(_) => "sql",
            TaskKind::Plugin(_) => "plugin",
            TaskKind::Switch(_) => "switch",
            TaskKind::SubWorkflow(_) => "sub_workflow",
            TaskKind::Dependency(_) => "dependency",
        }
    }

    /// Reads `config` for the kind named `kind`. The error names the field and the problem.
    pub fn from_parts(kind: &str, config: &Value) -> Result<TaskKind, String> {
        let config = if config.is_null() { Value::Object(Default::default()) } else { config.clone() };
        fn typed<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
            serde_json::from_value(v).map_err(|e| e.to_string())
        }
        Ok(match kind {
            "noop" => {
                if config.as_object().is_some_and(|o| !o.is_empty()) {
                    return Err("a noop task takes no config".into());
                }
                TaskKind::Noop
            }
            "sleep" => TaskKind::Sleep(typed(config)?),
            "shell" => TaskKind::Shell(typed(config)?),
            "python" => {
                let p: PythonConfig = typed(config)?;
                if p.script.is_some() == p.file.is_some() {
                    return Err("give exactly one of `script` (inline code) and `file` (a path on the worker)".into());
                }
                TaskKind::Python(p)
            }
            "http" => TaskKind::Http(typed(config)?),
            "sql" => TaskKind::Sql(typed(config)?),
            "plugin" => {
                let p: PluginConfig = typed(config)?;
                if !valid_plugin_name(&p.plugin) {
                    return Err(format!(
                        "plugin name {:?}: use lower-case letters, digits, '-' and '_', starting with a letter or digit \
                         (at most 63); it names the executable in the worker's plugin directory",
                        p.plugin
                    ));
                }
                TaskKind::Plugin(p)
            }
            "switch" => TaskKind::Switch(typed(config)?),
            "sub_workflow" => TaskKind::SubWorkflow(typed(config)?),
            "dependency" => TaskKind::Dependency(typed(config)?),
            other => {
                return Err(format!("unknown task kind `{other}`: use one of {}", TaskKind::NAMES.join(", ")));
            }
        })
    }

    /// Does a worker run it? (A switch is decided by the scheduler itself.)
    pub fn runs_on_worker(&self) -> bool {
        !matches!(self, TaskKind::Switch(_))
    }

    /// Labels a worker must carry to run this kind, beyond the task's own: a plugin task needs
    /// a worker that has the plugin installed (workers advertise `orrery.plugin.<name>=true`).
    pub fn required_labels(&self) -> Vec<(String, String)> {
        match self {
            TaskKind::Plugin(p) => vec![(plugin_label(&p.plugin), "true".to_owned())],
            _ => Vec::new(),
        }
    }
}

/// The label a worker advertises for each plugin it has installed.
pub fn plugin_label(name: &str) -> String {
    format!("{PLUGIN_LABEL_PREFIX}{name}")
}

/// Prefix of the plugin labels ([`plugin_label`]).
pub const PLUGIN_LABEL_PREFIX: &str = "orrery.plugin.";

/// A plugin's name: it is a file name in the worker's plugin directory, so nothing that could
/// leave it.
pub fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SleepConfig {
    /// How long to sleep, in seconds.
    pub seconds: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellConfig {
    /// The script; templating macros are rendered first.
    pub script: String,
    /// The interpreter. Default: bash.
    #[serde(default = "bash")]
    pub shell: String,
}

fn bash() -> String {
    "bash".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PythonConfig {
    /// Inline code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// A file on the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Default: python3.
    #[serde(default = "python3")]
    pub interpreter: String,
}

fn python3() -> String {
    "python3".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Default: GET.
    #[serde(default = "get")]
    pub method: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Statuses that count as success. Default: any 2xx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect_status: Vec<u16>,
    /// Outputs taken from a JSON response: name → JSON pointer ("/data/id").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
}

fn get() -> String {
    "GET".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// A connection registered for the tenant.
    pub connection: String,
    pub query: String,
}

/// A custom kind run by an executable on the worker (the exec-plugin protocol, docs/PLUGINS.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The plugin: an executable of this name in the worker's plugin directory
    /// (`orrery worker --plugin-dir`). Only workers that have it take the task.
    pub plugin: String,
    /// The plugin's own settings, handed to it as JSON on its standard input (templates rendered
    /// first); the plugin checks them.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub spec: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchConfig {
    /// Tried in order; the first whose `when` is true picks the branch.
    pub cases: Vec<SwitchCase>,
    /// The branch when no case matches. Default: none (every branch is skipped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchCase {
    /// An expression over `params`, `outputs.<task>.<key>` and `states.<task>`,
    /// e.g. `outputs.extract.rows | int > 0`.
    pub when: String,
    /// Downstream tasks of the switch that run when this case is chosen.
    pub then: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubWorkflowConfig {
    /// Another workflow of the same project; its run is a child of this task.
    pub workflow: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DependencyConfig {
    /// The workflow whose run of the same logical time must have succeeded.
    pub workflow: String,
    /// Only this task of it, rather than the whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
}

/// The JSON Schema of each kind's `config`.
pub fn kind_schemas() -> BTreeMap<&'static str, schemars::Schema> {
    let mut m = BTreeMap::new();
    m.insert("noop", schemars::json_schema!({ "type": "object", "additionalProperties": false }));
    m.insert("sleep", schemars::schema_for!(SleepConfig));
    m.insert("shell", schemars::schema_for!(ShellConfig));
    m.insert("python", schemars::schema_for!(PythonConfig));
    m.insert("http", schemars::schema_for!(HttpConfig));
    m.insert("sql", schemars::schema_for!(SqlConfig));
    m.insert("plugin", schemars::schema_for!(PluginConfig));
    m.insert("switch", schemars::schema_for!(SwitchConfig));
    m.insert("sub_workflow", schemars::schema_for!(SubWorkflowConfig));
    m.insert("dependency", schemars::schema_for!(DependencyConfig));
    m
}
