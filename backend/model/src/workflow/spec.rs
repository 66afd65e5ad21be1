//! The workflow document as users write it (YAML or JSON). Serde types only; `validate` turns a
//! `WorkflowSpec` into a checked `Workflow`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cron::Dialect;

/// A workflow: a DAG of tasks, its parameters and (optionally) its schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSpec {
    /// Unique in its project: lowercase letters, digits, `-` and `_`, starting with a letter.
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Who to ask about it (an email or a team name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Parameters with defaults; a trigger may override them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, ParamSpec>,
    /// How many runs of this workflow may be active at once. Default: 16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active_runs: Option<u32>,
    /// What a failed task does to the rest of the run. Default: `continue`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub failure_strategy: FailureStrategy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleSpec>,
    pub tasks: Vec<TaskSpec>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A parameter: a bare default value, or a description of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ParamSpec {
    Full {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default: Option<Value>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        description: String,
        /// A trigger must give a value when there is no default.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        required: bool,
    },
    Value(Value),
}

impl ParamSpec {
    pub fn default_value(&self) -> Option<&Value> {
        match self {
            ParamSpec::Full { default, .. } => default.as_ref(),
            ParamSpec::Value(v) => Some(v),
        }
    }

    pub fn required(&self) -> bool {
        matches!(self, ParamSpec::Full { required: true, default: None, .. })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureStrategy {
    /// Other branches go on; the run fails at the end.
    #[default]
    Continue,
    /// Stop the run: running tasks are killed, waiting ones cancelled.
    Stop,
}

/// When the workflow runs by itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// The cron expression (see `dialect`).
    pub cron: String,
    #[serde(default, skip_serializing_if = "is_default")]
    pub dialect: Dialect,
    /// IANA zone the expression is read in. Default: UTC.
    #[serde(default = "utc", skip_serializing_if = "is_utc")]
    pub timezone: String,
    /// No fire before this instant (RFC 3339, or a date meaning midnight in `timezone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// No fire after this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Fires missed while the scheduler was down or the schedule paused. Default: `latest`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub catchup: Catchup,
    /// With `catchup: all`, at most this many missed fires are made up. Default: 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_catchup: Option<u32>,
    /// What a fire does while the previous run is still active. Default: `allow`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub overlap: Overlap,
    /// Start paused. Default: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

fn utc() -> String {
    "UTC".into()
}

fn is_utc(s: &String) -> bool {
    s == "UTC"
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Catchup {
    /// Missed fires are dropped; the next fire is the next one in the future.
    Skip,
    /// Only the most recent missed fire runs.
    #[default]
    Latest,
    /// Every missed fire runs, oldest first, up to `max_catchup`.
    All,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Start the new run alongside (within `max_active_runs`).
    #[default]
    Allow,
    /// Drop the new fire.
    Skip,
    /// Create the run, start it when the previous one ends.
    Queue,
    /// Cancel the active run, then start the new one.
    CancelPrevious,
}

/// One task of the DAG.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Unique in the workflow: letters, digits, `-` and `_`.
    pub id: String,
    /// `noop`, `sleep`, `shell`, `python`, `http`, `sql`, `plugin`, `switch`, `sub_workflow`, `dependency`.
    pub kind: String,
    /// The kind's settings (see the kind's schema).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub config: Value,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// When this task runs, given its upstream tasks' states. Default: `all_success`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub trigger_rule: TriggerRule,
    /// Retries after a failure: a count, or a full policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetriesSpec>,
    /// Time limit per attempt: a duration ("30m"), or `{after, on_timeout}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<TimeoutSpec>,
    /// Higher runs first among ready tasks. Default: 0.
    #[serde(default, skip_serializing_if = "is_default")]
    pub priority: i32,
    /// The worker pool to run on. Default: `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Only workers of this region run it. Default: any region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Only workers carrying every one of these labels run it (e.g. `{arch: arm64}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesSpec>,
    /// Task parameters, rendered with the templating macros; they override workflow params.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Value>,
}

/// Airflow's trigger rules, over the upstream tasks' final states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    /// Every upstream succeeded.
    #[default]
    AllSuccess,
    /// Every upstream finished, whatever its state.
    AllDone,
    /// Every upstream failed.
    AllFailed,
    /// At least one upstream succeeded (runs as soon as one does).
    OneSuccess,
    /// At least one upstream failed (runs as soon as one does).
    OneFailed,
    /// No upstream failed (succeeded or skipped).
    NoneFailed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RetriesSpec {
    Count(u32),
    Policy {
        count: u32,
        #[serde(default)]
        backoff: BackoffKind,
        /// Wait before the first retry. Default: "10s".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delay: Option<DurationSpec>,
        /// Upper bound of the wait. Default: "1h".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_delay: Option<DurationSpec>,
        /// Spread retries randomly over ±25% of the wait. Default: true.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jitter: Option<bool>,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackoffKind {
    Fixed,
    /// delay × 2^(retry − 1), capped at max_delay.
    #[default]
    Exponential,
}

/// A duration: "90s", "15m", "1h30m", or a number of seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum DurationSpec {
    Seconds(f64),
    Text(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum TimeoutSpec {
    After(DurationSpec),
    Policy {
        after: DurationSpec,
        #[serde(default)]
        on_timeout: OnTimeout,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// Kill the attempt; it counts as a failure (and may be retried).
    #[default]
    Fail,
    /// Let it run on; raise a warning event.
    Warn,
}

/// What the task needs from a worker.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcesSpec {
    /// CPU cores (fractions allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Memory: "512Mi", "2Gi", "1G", or bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<u32>,
}
