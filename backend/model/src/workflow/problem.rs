//! What can be wrong with a workflow document, as data: the API and the CLI show its English
//! text (`Display`), and the console words the same problem in the reader's language. A
//! `detail` is a message from deeper down (the YAML parser, a task kind's settings, the template
//! or cron parser) and stays as that part wrote it.

use std::fmt;

/// One problem of a workflow document, with what the reader needs to fix it. Not
/// `#[non_exhaustive]` on purpose: the console words each variant in every language it speaks,
/// and a new variant should fail its build until it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The text is not a workflow document (YAML/JSON syntax, unknown or mistyped fields).
    Syntax {
        detail: String,
    },
    WorkflowName {
        name: String,
    },
    NoTasks,
    TooManyTasks {
        count: usize,
        max: usize,
    },
    MaxActiveRunsZero,
    ParamName {
        name: String,
    },
    ParamTemplate {
        name: String,
        detail: String,
    },
    TaskId,
    /// Tasks numbered from 1.
    DuplicateId {
        first: usize,
        second: usize,
    },
    DependsTwice {
        dep: String,
    },
    UnknownDependency {
        dep: String,
        suggestion: Option<String>,
    },
    /// The task ids around the cycle, the first repeated at the end.
    Cycle {
        path: Vec<String>,
    },
    KindConfig {
        kind: String,
        detail: String,
    },
    Template {
        text: String,
        detail: String,
    },
    Condition {
        when: String,
        detail: String,
    },
    UnknownBranch {
        target: String,
        suggestion: Option<String>,
    },
    /// `what`: `delay` or `max_delay`.
    RetryDelay {
        what: &'static str,
        detail: String,
    },
    TooManyRetries,
    Timeout {
        detail: String,
    },
    ZeroTimeout,
    /// The cores as written.
    Cpu {
        cpu: String,
    },
    Memory {
        detail: String,
    },
    ReservedPool {
        pool: String,
    },
    PoolName {
        pool: String,
    },
    /// The cron expression or the time zone.
    Schedule {
        detail: String,
    },
    ScheduleStart {
        detail: String,
    },
    ScheduleEnd {
        detail: String,
    },
    EndBeforeStart,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mean = |s: &Option<String>| s.as_ref().map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default();
        match self {
            Self::Syntax { detail } => f.write_str(detail),
            Self::WorkflowName { name } => write!(
                f,
                "workflow name {name:?} is not valid: use lowercase letters, digits, '-' and '_', starting with a letter"
            ),
            Self::NoTasks => f.write_str("a workflow needs at least one task"),
            Self::TooManyTasks { count, max } => {
                write!(f, "{count} tasks is more than the {max} a workflow may have: split it into sub-workflows")
            }
            Self::MaxActiveRunsZero => f.write_str("max_active_runs must be at least 1"),
            Self::ParamName { name } => write!(f, "parameter name {name:?} may use only letters, digits, '-' and '_'"),
            Self::ParamTemplate { name, detail } => write!(f, "parameter `{name}`: {detail}"),
            Self::TaskId => f.write_str("a task id may use only letters, digits, '-' and '_' (at most 100)"),
            Self::DuplicateId { first, second } => {
                write!(f, "this id is used twice (tasks {first} and {second}): ids must be unique")
            }
            Self::DependsTwice { dep } => write!(f, "depends on `{dep}` twice"),
            Self::UnknownDependency { dep, suggestion } => {
                write!(f, "depends on `{dep}`, which is not a task of this workflow{}", mean(suggestion))
            }
            Self::Cycle { path } => {
                write!(f, "the tasks form a cycle: {}; remove one of these dependencies", path.join(" → "))
            }
            Self::KindConfig { kind, detail } => write!(f, "{kind} config: {detail}"),
            Self::Template { text, detail } => write!(f, "template {text:?}: {detail}"),
            Self::Condition { when, detail } => write!(f, "condition {when:?}: {detail}"),
            Self::UnknownBranch { target, suggestion } => {
                write!(f, "branch `{target}` is not a task that depends on this switch{}", mean(suggestion))
            }
            Self::RetryDelay { what, detail } => write!(f, "retries.{what}: {detail}"),
            Self::TooManyRetries => f.write_str("at most 100 retries"),
            Self::Timeout { detail } => write!(f, "timeout: {detail}"),
            Self::ZeroTimeout => f.write_str("a timeout must be longer than zero"),
            Self::Cpu { cpu } => write!(f, "cpu {cpu} must be between 0 and 1024 cores"),
            Self::Memory { detail } => f.write_str(detail),
            Self::ReservedPool { pool } => {
                write!(f, "pool names starting with `orrery-` are reserved; {pool:?} cannot be used")
            }
            Self::PoolName { pool } => write!(f, "pool {pool:?} may use only letters, digits, '-' and '_'"),
            Self::Schedule { detail } => write!(f, "schedule: {detail}"),
            Self::ScheduleStart { detail } => write!(f, "schedule.start: {detail}"),
            Self::ScheduleEnd { detail } => write!(f, "schedule.end: {detail}"),
            Self::EndBeforeStart => f.write_str("schedule.end must be after schedule.start"),
        }
    }
}
