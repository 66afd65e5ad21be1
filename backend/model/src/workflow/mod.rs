//! Workflows: the document (`spec`), its task kinds (`kinds`), the graph (`dag`), and the checked
//! form every other part of Orrery works with (`Workflow`, made by `parse_yaml`, `parse_json` or
//! `validate`).

pub mod dag;
pub mod diff;
pub mod kinds;
mod problem;
pub mod spec;
mod validate;

pub use dag::{Dag, TaskIdx};
pub use kinds::{PLUGIN_LABEL_PREFIX, TaskKind, plugin_label, valid_plugin_name};
pub use problem::Problem;
pub use spec::{Catchup, FailureStrategy, OnTimeout, Overlap, TriggerRule, WorkflowSpec};
pub use validate::{
    INTERNAL_POOL, MAX_TASKS, Resources, RetryPolicy, Schedule, SpecError, SpecErrors, Task, Timeout, Workflow,
    parse_json, parse_yaml, validate,
};

/// The JSON Schema of the workflow document (`/api/v1/schemas/workflow.json`).
pub fn json_schema() -> schemars::Schema {
    let mut schema = schemars::schema_for!(WorkflowSpec);
    schema.insert("$id".into(), "https://orrery.dev/schemas/workflow.json".into());
    schema.insert("x-task-kinds".into(), serde_json::to_value(kinds::kind_schemas()).unwrap_or_default());
    schema
}
