//! The exec-plugin protocol (docs/PLUGINS.md): a custom task kind is an executable in the
//! worker's plugin directory. It gets the task as one JSON document on its standard input, writes
//! its log to stdout/stderr, may write `key=value` outputs to `$ORRERY_OUTPUT`, and may leave a
//! JSON result in `$ORRERY_RESULT`: `{"outputs": {"k": "v"}, "error": "why it failed"}`. Its exit
//! status decides success. It runs like a `shell` task: own process group, cgroup, clean
//! environment, cancel and timeout kill its whole tree.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::exec::{Attempt, Finish};

/// The protocol's version, sent in every document; a plugin may refuse one it does not know.
pub const PROTOCOL: u32 = 1;

/// The file a plugin may write its result to, in the attempt's directory.
pub const RESULT_FILE: &str = ".orrery-result";

/// Most bytes read from `$ORRERY_RESULT`.
const MAX_RESULT_FILE: u64 = 1024 * 1024;

/// The plugins installed in `dir`: executable regular files with a valid plugin name, sorted.
pub fn installed(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = std::fs::metadata(entry.path()) else { continue };
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 && model::workflow::valid_plugin_name(&name) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The executable for `name`, or why this worker cannot run it.
pub fn resolve(dir: Option<&Path>, name: &str) -> Result<PathBuf, String> {
    let Some(dir) = dir else {
        return Err(format!(
            "this worker has no plugin directory, so it cannot run plugin `{name}` (start it with --plugin-dir)"
        ));
    };
    if !model::workflow::valid_plugin_name(name) {
        return Err(format!("{name:?} is not a plugin name"));
    }
    let path = dir.join(name);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(path),
        Ok(_) => Err(format!("plugin `{name}` at {} is not an executable file", path.display())),
        Err(_) => Err(format!("plugin `{name}` is not installed on this worker (no {})", path.display())),
    }
}

/// The document on the plugin's standard input.
pub fn input(a: &Attempt) -> Vec<u8> {
    let config = &a.task["config"];
    let doc = json!({
        "protocol": PROTOCOL,
        "plugin": config["plugin"],
        "spec": config.get("spec").cloned().unwrap_or(Value::Null),
        "params": a.params,
        "context": {
            "tenant_id": a.tenant_id,
            "workflow": a.workflow,
            "run_id": a.run_id,
            "task_id": a.task_id,
            "attempt_id": a.attempt_id,
            "attempt": a.attempt,
            "logical_time": a.logical_time,
            "timeout_secs": a.timeout.map(|t| t.as_secs_f64()),
        },
    });
    let mut bytes = serde_json::to_vec(&doc).expect("a JSON value serializes");
    bytes.push(b'\n');
    bytes
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginResult {
    #[serde(default)]
    outputs: BTreeMap<String, Value>,
    #[serde(default)]
    error: Option<String>,
}

/// Folds the plugin's result file (if it wrote one) into how the attempt ended. `owner`: the user
/// tasks run as, whose file it must be (`exec::read_task_file`).
pub fn finish(dir: &Path, finish: Finish, owner: Option<u32>) -> Finish {
    let path = dir.join(RESULT_FILE);
    let text = match crate::exec::read_task_file(&path, MAX_RESULT_FILE, owner) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return finish,
        Err(e) => Err(e.to_string()),
        Ok((len, _)) if len > MAX_RESULT_FILE => Err(format!("it is {len} bytes; the most read is {MAX_RESULT_FILE}")),
        Ok((_, bytes)) => Ok(bytes),
    };
    let result = text.and_then(|t| serde_json::from_slice::<PluginResult>(&t).map_err(|e| e.to_string()));
    match (finish, result) {
        (Finish::Succeeded { mut outputs }, Ok(r)) => {
            for (k, v) in r.outputs {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                outputs.insert(k, v);
            }
            Finish::Succeeded { outputs }
        }
        (Finish::Succeeded { .. }, Err(e)) => Finish::Failed {
            exit_code: 0,
            reason: format!(
                "the plugin exited 0 but its result ($ORRERY_RESULT) is not valid: {e}; \
                 it must be a JSON object like {{\"outputs\": {{\"key\": \"value\"}}}}"
            ),
        },
        (Finish::Failed { exit_code, reason }, Ok(PluginResult { error: Some(error), .. })) if !error.is_empty() => {
            Finish::Failed { exit_code, reason: format!("{error} ({reason})") }
        }
        (other, _) => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(result: &str) -> tempfile_dir::Dir {
        let d = tempfile_dir::Dir::new();
        std::fs::write(d.0.join(RESULT_FILE), result).unwrap();
        d
    }

    mod tempfile_dir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let p = std::env::temp_dir().join(format!("orrery-plugin-test-{}", uuid::Uuid::now_v7().simple()));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn a_result_adds_outputs_or_explains_a_failure() {
        let ok = Finish::Succeeded { outputs: [("a".to_owned(), "1".to_owned())].into() };
        let d = dir_with(r#"{"outputs": {"app_id": "application_1_0001", "n": 3}}"#);
        assert_eq!(
            finish(&d.0, ok.clone(), None),
            Finish::Succeeded {
                outputs: [("a", "1"), ("app_id", "application_1_0001"), ("n", "3")]
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .into()
            }
        );
        let d = dir_with(r#"{"error": "the cluster refused the job: queue `etl` is full"}"#);
        assert_eq!(
            finish(&d.0, Finish::Failed { exit_code: 1, reason: "exit code 1".into() }, None),
            Finish::Failed {
                exit_code: 1,
                reason: "the cluster refused the job: queue `etl` is full (exit code 1)".into()
            }
        );
        let d = dir_with("not json");
        assert!(
            matches!(finish(&d.0, ok.clone(), None), Finish::Failed { reason, .. } if reason.contains("not valid"))
        );
        let none = tempfile_dir::Dir::new();
        assert_eq!(finish(&none.0, ok.clone(), None), ok);
    }

    #[test]
    fn only_executables_with_plugin_names_count_as_installed() {
        let d = tempfile_dir::Dir::new();
        for (name, mode) in [("spark-submit", 0o755), ("notes.txt", 0o644), ("Bad Name", 0o755), ("dbt", 0o700)] {
            let p = d.0.join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        assert_eq!(installed(&d.0).unwrap(), ["dbt", "spark-submit"]);
        assert!(resolve(Some(&d.0), "spark-submit").is_ok());
        assert!(resolve(Some(&d.0), "flink").unwrap_err().contains("not installed on this worker"));
        assert!(resolve(Some(&d.0), "../../bin/sh").unwrap_err().contains("not a plugin name"));
        assert!(resolve(None, "dbt").unwrap_err().contains("--plugin-dir"));
    }
}
