//! A structured difference between two versions of a workflow: tasks added, removed, changed
//! (and which of their fields), and which workflow-level settings changed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::spec::WorkflowSpec;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorkflowDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<TaskChange>,
    /// Top-level settings that differ: `schedule`, `params`, `max_active_runs`, ...
    pub settings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskChange {
    pub id: String,
    /// The fields that differ: `kind`, `config`, `depends_on`, ...
    pub fields: Vec<String>,
}

impl WorkflowDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty() && self.settings.is_empty()
    }
}

fn fields(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

fn differing(a: &serde_json::Map<String, Value>, b: &serde_json::Map<String, Value>, skip: &[&str]) -> Vec<String> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).filter(|k| !skip.contains(&k.as_str())).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).cloned().collect()
}

/// What changed from `old` to `new`.
pub fn diff(old: &WorkflowSpec, new: &WorkflowSpec) -> WorkflowDiff {
    let old_v = fields(serde_json::to_value(old).unwrap_or_default());
    let new_v = fields(serde_json::to_value(new).unwrap_or_default());
    let settings = differing(&old_v, &new_v, &["tasks"]);
    let mut d = WorkflowDiff { settings, ..WorkflowDiff::default() };
    for t in &new.tasks {
        match old.tasks.iter().find(|o| o.id == t.id) {
            None => d.added.push(t.id.clone()),
            Some(o) => {
                let f = differing(
                    &fields(serde_json::to_value(o).unwrap_or_default()),
                    &fields(serde_json::to_value(t).unwrap_or_default()),
                    &[],
                );
                if !f.is_empty() {
                    d.changed.push(TaskChange { id: t.id.clone(), fields: f });
                }
            }
        }
    }
    d.removed = old.tasks.iter().filter(|o| !new.tasks.iter().any(|t| t.id == o.id)).map(|o| o.id.clone()).collect();
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::parse_yaml;

    #[test]
    fn added_removed_and_changed_tasks_and_settings() {
        let a = parse_yaml(
            "name: w\ntasks:\n  - id: a\n    kind: noop\n  - id: b\n    kind: sleep\n    config: { seconds: 1 }\n",
        )
        .unwrap();
        let b = parse_yaml(
            "name: w\nmax_active_runs: 2\ntasks:\n  - id: b\n    kind: sleep\n    config: { seconds: 2 }\n    priority: 5\n  - id: c\n    kind: noop\n",
        )
        .unwrap();
        let d = diff(&a.spec, &b.spec);
        assert_eq!(d.added, ["c"]);
        assert_eq!(d.removed, ["a"]);
        assert_eq!(d.changed, [TaskChange { id: "b".into(), fields: vec!["config".into(), "priority".into()] }]);
        assert_eq!(d.settings, ["max_active_runs"]);
        assert!(diff(&a.spec, &a.spec).is_empty());
    }
}
