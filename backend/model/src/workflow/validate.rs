//! From a document to a checked `Workflow`: every rule, every error with its line and task.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::dag::{Dag, TaskIdx};
use super::kinds::TaskKind;
use super::problem::Problem;
use super::spec::{
    BackoffKind, Catchup, DurationSpec, FailureStrategy, OnTimeout, Overlap, ParamSpec, RetriesSpec, TimeoutSpec,
    TriggerRule, WorkflowSpec,
};
use crate::cron::{CronExpr, parse_zone};
use crate::template;

/// The pool of tasks the scheduler runs itself (sub-workflows, dependencies).
pub const INTERNAL_POOL: &str = "orrery-internal";

/// The most tasks one workflow may have.
pub const MAX_TASKS: usize = 5_000;
const DEFAULT_MAX_ACTIVE_RUNS: u32 = 16;

/// One problem in a workflow document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    /// 1-based line in the YAML/JSON text, when known.
    pub line: Option<usize>,
    /// The task it concerns, when it concerns one.
    pub task: Option<String>,
    pub problem: Problem,
}

impl SpecError {
    /// The problem in English.
    pub fn message(&self) -> String {
        self.problem.to_string()
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = self.line {
            write!(f, "line {l}: ")?;
        }
        if let Some(t) = &self.task {
            write!(f, "task `{t}`: ")?;
        }
        write!(f, "{}", self.problem)
    }
}

/// Every problem found, in document order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// A checked workflow.
#[derive(Clone, Debug, PartialEq)]
pub struct Workflow {
    /// The document, as accepted (this is what a version stores).
    pub spec: WorkflowSpec,
    pub tasks: Vec<Task>,
    pub dag: Dag,
    pub schedule: Option<Schedule>,
    pub max_active_runs: u32,
    pub failure_strategy: FailureStrategy,
    /// Workflow parameters with their defaults (those without a default are required).
    pub params: BTreeMap<String, Option<Value>>,
    index: HashMap<String, TaskIdx>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    pub id: String,
    pub kind: TaskKind,
    pub trigger_rule: TriggerRule,
    pub retry: RetryPolicy,
    pub timeout: Option<Timeout>,
    pub priority: i32,
    pub pool: String,
    pub region: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub resources: Resources,
    pub params: BTreeMap<String, Value>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so at most `retries + 1` attempts).
    pub retries: u32,
    pub backoff: BackoffKind,
    pub delay: Duration,
    pub max_delay: Duration,
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 0,
            backoff: BackoffKind::Exponential,
            delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(3600),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 = the first retry). Jitter spreads it over ±25%,
    /// drawn from `seed` so the decision is a pure function of its inputs.
    pub fn delay_before(&self, retry: u32, seed: u64) -> Duration {
        let base = match self.backoff {
            BackoffKind::Fixed => self.delay,
            BackoffKind::Exponential => {
                self.delay.saturating_mul(1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX))
            }
        }
        .min(self.max_delay);
        if !self.jitter || base.is_zero() {
            return base;
        }
        // splitmix64 of the seed → a factor in [0.75, 1.25).
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
        base.mul_f64(0.75 + unit * 0.5).min(self.max_delay.mul_f64(1.25))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout {
    pub after: Duration,
    pub on_timeout: OnTimeout,
}

/// What a task needs from a worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_millis: u32,
    pub memory_bytes: u64,
    pub gpu: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub cron: CronExpr,
    pub zone: Tz,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub catchup: Catchup,
    pub max_catchup: u32,
    pub overlap: Overlap,
    pub paused: bool,
}

impl Schedule {
    /// The ticks in `[from, to]`, oldest first, at most `limit` (a backfill's logical times).
    pub fn ticks_between(&self, from: DateTime<Utc>, to: DateTime<Utc>, limit: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut cursor = from - chrono::Duration::seconds(1);
        while out.len() < limit {
            match self.cron.next_after(self.zone, cursor) {
                Some(t) if t <= to => {
                    out.push(t);
                    cursor = t;
                }
                _ => break,
            }
        }
        out
    }
}

impl Workflow {
    pub fn task_index(&self, id: &str) -> Option<TaskIdx> {
        self.index.get(id).copied()
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The parameters of a run: defaults, overridden by the trigger's. A required parameter
    /// without a value is an error that names it.
    pub fn resolve_params(&self, given: &BTreeMap<String, Value>) -> Result<BTreeMap<String, Value>, String> {
        let mut out = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, default) in &self.params {
            match (given.get(name), default) {
                (Some(v), _) => {
                    out.insert(name.clone(), v.clone());
                }
                (None, Some(d)) => {
                    out.insert(name.clone(), d.clone());
                }
                (None, None) => missing.push(name.as_str()),
            }
        }
        if !missing.is_empty() {
            return Err(format!("missing required parameter(s): {}; pass them with the trigger", missing.join(", ")));
        }
        for (name, v) in given {
            out.entry(name.clone()).or_insert_with(|| v.clone());
        }
        Ok(out)
    }
}

/// Parses and checks a YAML document. Errors carry line numbers.
pub fn parse_yaml(text: &str) -> Result<Workflow, SpecErrors> {
    let spec: WorkflowSpec = yaml_serde::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        SpecErrors(vec![SpecError {
            line,
            task: None,
            problem: Problem::Syntax { detail: tidy_serde(&e.to_string()) },
        }])
    })?;
    validate_with_source(spec, Some(text))
}

/// Parses and checks a JSON document.
pub fn parse_json(text: &str) -> Result<Workflow, SpecErrors> {
    let spec: WorkflowSpec = serde_json::from_str(text).map_err(|e| {
        SpecErrors(vec![SpecError {
            line: Some(e.line()),
            task: None,
            problem: Problem::Syntax { detail: tidy_serde(&e.to_string()) },
        }])
    })?;
    validate_with_source(spec, Some(text))
}

/// Checks a document already in memory (no line numbers).
pub fn validate(spec: WorkflowSpec) -> Result<Workflow, SpecErrors> {
    validate_with_source(spec, None)
}

/// serde's messages end with " at line X column Y"; the line is reported separately.
fn tidy_serde(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

struct Lines<'a>(Option<&'a str>);

impl Lines<'_> {
    /// The line declaring task `id` (`id: x` in YAML, `"id": "x"` in JSON).
    fn task(&self, id: &str) -> Option<usize> {
        let text = self.0?;
        text.lines()
            .position(|l| {
                let l = l.trim().trim_start_matches('-').trim().trim_start_matches('{').trim();
                let rest = l.strip_prefix("id:").or_else(|| l.strip_prefix("\"id\":")).map(str::trim);
                // Block style (`id: x`), flow style (`{id: x, ...}`) and JSON (`"id": "x",`).
                rest.is_some_and(|r| {
                    r.split([',', '}']).next().unwrap_or_default().trim().trim_matches(['"', '\'']) == id
                })
            })
            .map(|i| i + 1)
    }

    /// The first line with `key:` at or after the task's line.
    fn field(&self, task: Option<&str>, key: &str) -> Option<usize> {
        let text = self.0?;
        let from = task.and_then(|t| self.task(t)).unwrap_or(1) - 1;
        text.lines()
            .enumerate()
            .skip(from)
            .find(|(_, l)| {
                let l = l.trim().trim_start_matches('-').trim();
                l.starts_with(&format!("{key}:")) || l.starts_with(&format!("\"{key}\":"))
            })
            .map(|(i, _)| i + 1)
    }
}

fn valid_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase())
        && s.len() <= 100
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn valid_task_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Edit distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known name closest to a wrong one, when one is close.
fn did_you_mean<'a>(wrong: &str, known: impl Iterator<Item = &'a str>) -> Option<String> {
    known.map(|k| (distance(wrong, k), k)).filter(|(d, k)| *d <= 2.max(k.len() / 3)).min().map(|(_, k)| k.to_owned())
}

pub fn parse_duration(d: &DurationSpec) -> Result<Duration, String> {
    match d {
        DurationSpec::Seconds(s) if s.is_finite() && *s >= 0.0 => Ok(Duration::from_secs_f64(*s)),
        DurationSpec::Seconds(s) => Err(format!("{s} is not a duration")),
        DurationSpec::Text(t) => humantime::parse_duration(t.trim())
            .map_err(|e| format!("{t:?} is not a duration ({e}); write it like \"90s\", \"15m\" or \"1h30m\"")),
    }
}

fn parse_memory(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| format!("memory {n} must be a whole number of bytes")),
        Value::String(s) => crate::units::parse_memory(s),
        other => Err(format!("memory {other} must look like \"512Mi\" or \"2Gi\"")),
    }
}

/// "2026-01-01" (midnight in `zone`) or an RFC 3339 instant.
fn parse_instant(s: &str, zone: Tz) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{s:?} is not a date: write 2026-01-31 or 2026-01-31T08:00:00+08:00"))?;
    zone.from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"))
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("{s} has no midnight in {zone}"))
}

fn strings_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings_in(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings_in(x, out)),
        _ => {}
    }
}

fn validate_with_source(spec: WorkflowSpec, source: Option<&str>) -> Result<Workflow, SpecErrors> {
    let lines = Lines(source);
    let mut errors = Vec::new();
    let mut err = |line: Option<usize>, task: Option<&str>, problem: Problem| {
        errors.push(SpecError { line, task: task.map(str::to_owned), problem });
    };

    if !valid_name(&spec.name) {
        err(lines.field(None, "name"), None, Problem::WorkflowName { name: spec.name.clone() });
    }
    if spec.tasks.is_empty() {
        err(lines.field(None, "tasks"), None, Problem::NoTasks);
    }
    if spec.tasks.len() > MAX_TASKS {
        err(None, None, Problem::TooManyTasks { count: spec.tasks.len(), max: MAX_TASKS });
    }
    if spec.max_active_runs == Some(0) {
        err(lines.field(None, "max_active_runs"), None, Problem::MaxActiveRunsZero);
    }
    let mut params = BTreeMap::new();
    for (name, p) in &spec.params {
        if !valid_task_id(name) {
            err(lines.field(None, name), None, Problem::ParamName { name: name.clone() });
        }
        params.insert(name.clone(), if p.required() { None } else { p.default_value().cloned().or(Some(Value::Null)) });
        if let ParamSpec::Full { default: Some(Value::String(s)), .. } | ParamSpec::Value(Value::String(s)) = p
            && let Err(e) = template::check(s)
        {
            err(lines.field(None, name), None, Problem::ParamTemplate { name: name.clone(), detail: e.to_string() });
        }
    }

    // Task ids: valid and unique.
    let mut index: HashMap<String, TaskIdx> = HashMap::new();
    for (i, t) in spec.tasks.iter().enumerate() {
        if !valid_task_id(&t.id) {
            err(lines.task(&t.id), Some(&t.id), Problem::TaskId);
        }
        if let Some(first) = index.insert(t.id.clone(), i) {
            let first_line = lines.task(&t.id);
            let second_line = source.and_then(|text| {
                text.lines()
                    .enumerate()
                    .filter(|(_, l)| l.contains(&t.id) && l.contains("id"))
                    .nth(1)
                    .map(|(n, _)| n + 1)
            });
            err(second_line.or(first_line), Some(&t.id), Problem::DuplicateId { first: first + 1, second: i + 1 });
            index.insert(t.id.clone(), first);
        }
    }

    // Dependencies.
    let mut upstream: Vec<Vec<TaskIdx>> = vec![Vec::new(); spec.tasks.len()];
    for (i, t) in spec.tasks.iter().enumerate() {
        for dep in &t.depends_on {
            match index.get(dep) {
                Some(&u) if !upstream[i].contains(&u) => upstream[i].push(u),
                Some(_) => {
                    err(lines.field(Some(&t.id), "depends_on"), Some(&t.id), Problem::DependsTwice { dep: dep.clone() })
                }
                None => err(
                    lines.field(Some(&t.id), "depends_on"),
                    Some(&t.id),
                    Problem::UnknownDependency {
                        dep: dep.clone(),
                        suggestion: did_you_mean(dep, spec.tasks.iter().map(|t| t.id.as_str())),
                    },
                ),
            }
        }
    }
    let dag = match Dag::build(upstream.clone()) {
        Ok(d) => Some(d),
        Err(cycle) => {
            let path: Vec<&str> = cycle.iter().map(|&i| spec.tasks[i].id.as_str()).collect();
            err(
                lines.task(path[0]),
                Some(path[0]),
                Problem::Cycle { path: path.iter().map(|&p| p.to_owned()).collect() },
            );
            None
        }
    };

    // Each task's own settings.
    let mut tasks = Vec::with_capacity(spec.tasks.len());
    for t in &spec.tasks {
        let id = Some(t.id.as_str());
        let kind = match TaskKind::from_parts(&t.kind, &t.config) {
            Ok(k) => k,
            Err(e) => {
                let line = if TaskKind::NAMES.contains(&t.kind.as_str()) {
                    lines.field(id, "config")
                } else {
                    lines.field(id, "kind")
                };
                err(
                    line.or(lines.task(&t.id)),
                    id,
                    Problem::KindConfig { kind: t.kind.clone(), detail: e.to_string() },
                );
                TaskKind::Noop
            }
        };
        let mut texts = Vec::new();
        strings_in(&t.config, &mut texts);
        for v in t.params.values() {
            strings_in(v, &mut texts);
        }
        for text in texts.iter().filter(|s| template::is_template(s)) {
            if let Err(e) = template::check(text) {
                err(lines.task(&t.id), id, Problem::Template { text: text.clone(), detail: e.to_string() });
            }
        }
        if let TaskKind::Switch(sw) = &kind {
            let mine: Vec<&str> =
                spec.tasks.iter().filter(|d| d.depends_on.iter().any(|x| x == &t.id)).map(|d| d.id.as_str()).collect();
            for case in &sw.cases {
                if let Err(e) = template::check_expression(&case.when) {
                    err(
                        lines.field(id, "when"),
                        id,
                        Problem::Condition { when: case.when.clone(), detail: e.to_string() },
                    );
                }
            }
            for target in sw.cases.iter().flat_map(|c| &c.then).chain(&sw.default) {
                if !mine.contains(&target.as_str()) {
                    err(
                        lines.field(id, "then").or(lines.task(&t.id)),
                        id,
                        Problem::UnknownBranch {
                            target: target.clone(),
                            suggestion: did_you_mean(target, mine.iter().copied()),
                        },
                    );
                }
            }
        }
        let retry = match &t.retries {
            None => RetryPolicy::default(),
            Some(RetriesSpec::Count(n)) => RetryPolicy { retries: *n, ..RetryPolicy::default() },
            Some(RetriesSpec::Policy { count, backoff, delay, max_delay, jitter }) => {
                let mut p = RetryPolicy {
                    retries: *count,
                    backoff: *backoff,
                    jitter: jitter.unwrap_or(true),
                    ..RetryPolicy::default()
                };
                for (spec_d, slot, what) in [(delay, &mut p.delay, "delay"), (max_delay, &mut p.max_delay, "max_delay")]
                {
                    if let Some(d) = spec_d {
                        match parse_duration(d) {
                            Ok(v) => *slot = v,
                            Err(detail) => err(lines.field(id, what), id, Problem::RetryDelay { what, detail }),
                        }
                    }
                }
                p
            }
        };
        if retry.retries > 100 {
            err(lines.field(id, "retries"), id, Problem::TooManyRetries);
        }
        let timeout = match &t.timeout {
            None => None,
            Some(TimeoutSpec::After(d)) => parse_duration(d)
                .map(|after| Timeout { after, on_timeout: OnTimeout::Fail })
                .map_err(|detail| {
                    err(lines.field(id, "timeout"), id, Problem::Timeout { detail });
                })
                .ok(),
            Some(TimeoutSpec::Policy { after, on_timeout }) => parse_duration(after)
                .map(|after| Timeout { after, on_timeout: *on_timeout })
                .map_err(|detail| err(lines.field(id, "timeout"), id, Problem::Timeout { detail }))
                .ok(),
        };
        if timeout.is_some_and(|t| t.after.is_zero()) {
            err(lines.field(id, "timeout"), id, Problem::ZeroTimeout);
        }
        let mut resources = Resources::default();
        if let Some(r) = &t.resources {
            if let Some(cpu) = r.cpu {
                if !(cpu.is_finite() && cpu > 0.0 && cpu <= 1024.0) {
                    err(lines.field(id, "cpu"), id, Problem::Cpu { cpu: cpu.to_string() });
                }
                resources.cpu_millis = (cpu * 1000.0).round() as u32;
            }
            if let Some(m) = &r.memory {
                match parse_memory(m) {
                    Ok(b) => resources.memory_bytes = b,
                    Err(detail) => err(lines.field(id, "memory"), id, Problem::Memory { detail }),
                }
            }
            resources.gpu = r.gpu.unwrap_or(0);
        }
        // Sub-workflows and dependencies wait on other runs; the scheduler itself runs them.
        let pool = if matches!(kind, TaskKind::SubWorkflow(_) | TaskKind::Dependency(_)) {
            INTERNAL_POOL.to_owned()
        } else {
            t.pool.clone().unwrap_or_else(|| "default".into())
        };
        if pool.starts_with("orrery-") && pool != INTERNAL_POOL {
            err(lines.field(id, "pool"), id, Problem::ReservedPool { pool: pool.clone() });
        }
        if !valid_task_id(&pool) {
            err(lines.field(id, "pool"), id, Problem::PoolName { pool: pool.clone() });
        }
        let mut labels = t.labels.clone();
        labels.extend(kind.required_labels());
        tasks.push(Task {
            id: t.id.clone(),
            kind,
            trigger_rule: t.trigger_rule,
            retry,
            timeout,
            priority: t.priority,
            pool,
            region: t.region.clone(),
            labels,
            resources,
            params: t.params.clone(),
        });
    }

    let schedule = spec.schedule.as_ref().and_then(|s| {
        let cron_line = lines.field(None, "cron");
        let cron = CronExpr::parse(&s.cron, s.dialect)
            .map_err(|e| err(cron_line, None, Problem::Schedule { detail: e.to_string() }))
            .ok();
        let zone = parse_zone(&s.timezone)
            .map_err(|e| err(lines.field(None, "timezone"), None, Problem::Schedule { detail: e.to_string() }))
            .ok();
        let zone_or_utc = zone.unwrap_or(Tz::UTC);
        let start = s.start.as_deref().and_then(|v| {
            parse_instant(v, zone_or_utc)
                .map_err(|detail| err(lines.field(None, "start"), None, Problem::ScheduleStart { detail }))
                .ok()
        });
        let end = s.end.as_deref().and_then(|v| {
            parse_instant(v, zone_or_utc)
                .map_err(|detail| err(lines.field(None, "end"), None, Problem::ScheduleEnd { detail }))
                .ok()
        });
        if let (Some(a), Some(b)) = (start, end)
            && b <= a
        {
            err(lines.field(None, "end"), None, Problem::EndBeforeStart);
        }
        Some(Schedule {
            cron: cron?,
            zone: zone?,
            start,
            end,
            catchup: s.catchup,
            max_catchup: s.max_catchup.unwrap_or(100).min(10_000),
            overlap: s.overlap,
            paused: s.paused,
        })
    });

    errors.sort_by_key(|e| (e.line.unwrap_or(usize::MAX), e.task.clone()));
    match dag {
        Some(dag) if errors.is_empty() => Ok(Workflow {
            max_active_runs: spec.max_active_runs.unwrap_or(DEFAULT_MAX_ACTIVE_RUNS),
            failure_strategy: spec.failure_strategy,
            params,
            spec,
            tasks,
            dag,
            schedule,
            index,
        }),
        _ => Err(SpecErrors(errors)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name: daily-report
params:
  region: eu
schedule:
  cron: "0 2 * * *"
  timezone: Asia/Shanghai
tasks:
  - id: extract
    kind: shell
    config:
      script: echo rows=42 >> "$ORRERY_OUTPUT"
    retries: { count: 3, backoff: fixed, delay: 30s }
    timeout: 10m
  - id: check
    kind: switch
    depends_on: [extract]
    config:
      cases:
        - when: outputs.extract.rows | int > 0
          then: [load]
      default: [alert]
  - id: load
    kind: sleep
    depends_on: [check]
    config: { seconds: 1 }
    resources: { cpu: 0.5, memory: 512Mi }
  - id: alert
    kind: noop
    depends_on: [check]
"#;

    #[test]
    fn a_good_document_becomes_a_workflow() {
        let w = parse_yaml(GOOD).unwrap();
        assert_eq!(w.tasks.len(), 4);
        assert_eq!(w.dag.topo, vec![0, 1, 2, 3]);
        assert_eq!(w.tasks[0].retry.retries, 3);
        assert_eq!(w.tasks[0].timeout.unwrap().after, Duration::from_secs(600));
        assert_eq!(w.tasks[2].resources, Resources { cpu_millis: 500, memory_bytes: 512 * 1024 * 1024, gpu: 0 });
        assert_eq!(w.schedule.as_ref().unwrap().zone, chrono_tz::Asia::Shanghai);
        assert_eq!(w.params["region"], Some(Value::String("eu".into())));
        // JSON is the same document.
        let json = serde_json::to_string(&w.spec).unwrap();
        assert_eq!(parse_json(&json).unwrap().spec, w.spec);
    }

    fn errors(doc: &str) -> Vec<String> {
        parse_yaml(doc).unwrap_err().0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_cycle_is_named_with_its_path_and_line() {
        let e = errors(
            "name: w\ntasks:\n  - id: a\n    kind: noop\n    depends_on: [c]\n  - id: b\n    kind: noop\n    depends_on: [a]\n  - id: c\n    kind: noop\n    depends_on: [b]\n",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("cycle") && e[0].contains("→"), "{e:?}");
        assert!(e[0].starts_with("line "), "{e:?}");
        for id in ["a", "b", "c"] {
            assert!(
                e[0].contains(&format!("{id} →")) || e[0].ends_with(&format!("{id}; remove one of these dependencies")),
                "{e:?}"
            );
        }
    }

    #[test]
    fn lines_are_found_in_flow_style_and_json_too() {
        let e = errors(
            "name: w\ntasks:\n  - {id: a, kind: noop, depends_on: [b]}\n  - {id: b, kind: noop, depends_on: [a]}\n",
        );
        assert!(e[0].starts_with("line 3: ") || e[0].starts_with("line 4: "), "{e:?}");
        let json = "{\n  \"name\": \"w\",\n  \"tasks\": [\n    {\"id\": \"a\", \"kind\": \"nop\"}\n  ]\n}";
        let e: Vec<String> = parse_json(json).unwrap_err().0.iter().map(ToString::to_string).collect();
        assert!(e[0].starts_with("line 4: task `a`: nop config: unknown task kind"), "{e:?}");
    }

    #[test]
    fn an_unknown_dependency_suggests_the_near_one() {
        let e = errors(
            "name: w\ntasks:\n  - id: extract\n    kind: noop\n  - id: load\n    kind: noop\n    depends_on: [extrac]\n",
        );
        assert_eq!(
            e,
            [
                "line 7: task `load`: depends on `extrac`, which is not a task of this workflow (did you mean `extract`?)"
            ]
        );
    }

    #[test]
    fn a_duplicate_id_and_a_bad_cron_are_both_reported() {
        let e = errors(
            "name: w\nschedule:\n  cron: \"61 * * * *\"\ntasks:\n  - id: a\n    kind: noop\n  - id: a\n    kind: noop\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("line 3: schedule:"), "{e:?}");
        assert!(e[1].contains("used twice") && e[1].starts_with("line 7"), "{e:?}");
    }

    #[test]
    fn kind_config_and_syntax_errors_name_the_place() {
        let e = errors("name: w\ntasks:\n  - id: a\n    kind: shell\n    config: { scrpt: x }\n");
        assert!(e[0].starts_with("line 5: task `a`: shell config: unknown field `scrpt`"), "{e:?}");
        let e = errors("name: w\ntasks:\n  - id: a\n    kind: shel\n");
        assert!(e[0].contains("unknown task kind `shel`"), "{e:?}");
        let e = errors("name: w\ntasks:\n  - id: a\n    kind: noop\n    retires: 3\n");
        assert!(e[0].starts_with("line 5:") && e[0].contains("unknown field `retires`"), "{e:?}");
        let e = errors("name: w\ntasks:\n  - id: a\n    kind: shell\n    config: { script: \"echo {{ ds \" }\n");
        assert!(e[0].contains("template"), "{e:?}");
    }

    #[test]
    fn switch_branches_must_be_its_downstream_tasks() {
        let e = errors(
            "name: w\ntasks:\n  - id: s\n    kind: switch\n    config:\n      cases:\n        - when: \"true\"\n          then: [x]\n  - id: y\n    kind: noop\n    depends_on: [s]\n",
        );
        assert!(e[0].contains("branch `x` is not a task that depends on this switch"), "{e:?}");
    }

    #[test]
    fn retry_delays_grow_are_capped_and_jitter_stays_within_a_quarter() {
        let p = RetryPolicy {
            retries: 5,
            backoff: BackoffKind::Exponential,
            delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
            jitter: false,
        };
        let d: Vec<u64> = (1..=4).map(|r| p.delay_before(r, 0).as_secs()).collect();
        assert_eq!(d, [10, 20, 40, 60]);
        let j = RetryPolicy { jitter: true, ..p };
        for seed in 0..200 {
            let s = j.delay_before(2, seed).as_secs_f64();
            assert!((15.0..=25.0).contains(&s), "{s}");
        }
        assert_eq!(j.delay_before(3, 7), j.delay_before(3, 7), "the same seed gives the same delay");
    }
}
