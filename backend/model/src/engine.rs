//! The scheduler's decisions, as one pure function: `decide(run, event, now) -> effects`.
//!
//! The store loads a run (`RunView`), calls `decide`, and applies the effects in the same
//! transaction; nothing here does IO or reads a clock. Properties (checked by property tests on
//! random DAGs): a task is queued only when its trigger rule is met by its upstream tasks' final
//! states; every run ends; a task makes at most `retries + 1` attempts between clears; and
//! deciding the same event twice changes nothing the second time.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::state::{RunState, TaskState};
use crate::template::{self, Context};
use crate::workflow::kinds::TaskKind;
use crate::workflow::{FailureStrategy, OnTimeout, TaskIdx, TriggerRule, Workflow};

/// A run as the engine sees it.
#[derive(Clone, Debug)]
pub struct RunView<'a> {
    pub workflow: &'a Workflow,
    pub run_id: String,
    pub state: RunState,
    pub logical_time: DateTime<Utc>,
    pub zone: Tz,
    /// Workflow params merged with the trigger's.
    pub params: BTreeMap<String, Value>,
    pub tasks: Vec<TaskView>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskView {
    pub state: TaskState,
    /// Attempts made so far (the current one's number, 0 before the first).
    pub attempts: u32,
    /// `attempts` when the task was last cleared: retries count from here.
    pub attempts_at_clear: u32,
    pub outputs: BTreeMap<String, String>,
}

impl Default for TaskView {
    /// A task of a run that has not started.
    fn default() -> Self {
        TaskView { state: TaskState::Pending, attempts: 0, attempts_at_clear: 0, outputs: BTreeMap::new() }
    }
}

/// Something that happened to a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run may start.
    Start,
    /// A worker started the attempt.
    AttemptStarted { task: TaskIdx, attempt: u32 },
    /// An attempt ended.
    AttemptEnded { task: TaskIdx, attempt: u32, outcome: Outcome },
    /// The attempt ran past its task's timeout.
    AttemptTimedOut { task: TaskIdx, attempt: u32 },
    /// Stop everything; the run ends cancelled.
    Cancel,
    /// Run these tasks again (and, with `downstream`, everything after them).
    Clear { tasks: Vec<TaskIdx>, downstream: bool },
    /// Run again every task that failed, was cancelled or never ran because of a failure.
    RerunFailed,
    /// Set a task's state by hand.
    Mark { task: TaskIdx, state: MarkAs },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkAs {
    Succeeded,
    Failed,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Succeeded {
        #[serde(default)]
        outputs: BTreeMap<String, String>,
    },
    Failed {
        reason: String,
    },
    TimedOut,
    /// Its worker vanished (lease expired).
    Lost,
    /// Killed from outside the engine's own decisions (a worker shutting down).
    Cancelled,
}

/// What the store must do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// The task moves to `state`.
    Task { task: TaskIdx, state: TaskState, reason: Option<String> },
    /// Record the finished attempt's outputs on the task.
    Outputs { task: TaskIdx, outputs: BTreeMap<String, String> },
    /// Put attempt number `attempt` of the task in the queue, ready at `not_before`.
    Enqueue { task: TaskIdx, attempt: u32, not_before: DateTime<Utc>, rendered: RenderedTask },
    /// Stop the running (or queued) attempt.
    Kill { task: TaskIdx, attempt: u32 },
    /// The run moves to `state`.
    Run { state: RunState },
    /// Tell people (through the outbox).
    Notify { kind: Notice, task: Option<TaskIdx>, message: String },
}

/// What a worker receives for an attempt: the kind's settings and params, templates rendered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RenderedTask {
    pub kind: Value,
    pub params: BTreeMap<String, Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Notice {
    RunSucceeded,
    RunFailed,
    RunCancelled,
    TaskFailed,
    TaskRetrying,
    TimeoutWarning,
}

/// What a trigger rule says, given the upstream tasks' states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    Wait,
    Run,
    Skip,
    UpstreamFailed,
}

/// Airflow's semantics; `Cancelled` upstream counts as failed.
pub fn readiness(rule: TriggerRule, upstream: &[TaskState]) -> Readiness {
    if upstream.is_empty() {
        return Readiness::Run;
    }
    let total = upstream.len();
    let done = upstream.iter().filter(|s| s.is_terminal()).count();
    let succeeded = upstream.iter().filter(|s| **s == TaskState::Succeeded).count();
    let failed = upstream.iter().filter(|s| s.is_failure()).count();
    let skipped = upstream.iter().filter(|s| **s == TaskState::Skipped).count();
    let all_done = done == total;
    match rule {
        TriggerRule::AllSuccess if failed > 0 => Readiness::UpstreamFailed,
        TriggerRule::AllSuccess if skipped > 0 => Readiness::Skip,
        TriggerRule::NoneFailed if failed > 0 => Readiness::UpstreamFailed,
        TriggerRule::AllSuccess | TriggerRule::AllDone | TriggerRule::NoneFailed if all_done => Readiness::Run,
        TriggerRule::AllFailed if succeeded > 0 || skipped > 0 => Readiness::Skip,
        TriggerRule::AllFailed if all_done => Readiness::Run,
        TriggerRule::OneSuccess if succeeded > 0 => Readiness::Run,
        TriggerRule::OneSuccess if all_done && skipped == total => Readiness::Skip,
        TriggerRule::OneSuccess if all_done => Readiness::UpstreamFailed,
        TriggerRule::OneFailed if failed > 0 => Readiness::Run,
        TriggerRule::OneFailed if all_done => Readiness::Skip,
        _ => Readiness::Wait,
    }
}

/// The decision for one event. Returns no effects when the event changes nothing (a stale or
/// repeated report).
pub fn decide(run: &RunView<'_>, event: &Event, now: DateTime<Utc>) -> Vec<Effect> {
    let mut w = Working {
        run,
        states: run.tasks.iter().map(|t| t.state).collect(),
        effects: Vec::new(),
        outputs: BTreeMap::new(),
    };
    let wf = run.workflow;
    match event {
        Event::Start => {
            if run.state != RunState::Queued {
                return Vec::new();
            }
            w.effects.push(Effect::Run { state: RunState::Running });
        }
        Event::AttemptStarted { task, attempt } => {
            let t = &run.tasks[*task];
            if w.states[*task] != TaskState::Queued || t.attempts != *attempt {
                return Vec::new();
            }
            w.set(*task, TaskState::Running, None);
            return w.effects;
        }
        Event::AttemptEnded { task, attempt, outcome } => {
            let t = &run.tasks[*task];
            let current = matches!(w.states[*task], TaskState::Running | TaskState::Queued) && t.attempts == *attempt;
            if !current || run.state.is_terminal() {
                return Vec::new();
            }
            match outcome {
                Outcome::Succeeded { outputs } => {
                    if !outputs.is_empty() {
                        w.effects.push(Effect::Outputs { task: *task, outputs: outputs.clone() });
                        w.outputs.insert(*task, outputs.clone());
                    }
                    w.set(*task, TaskState::Succeeded, None);
                }
                Outcome::Failed { reason } => w.failed_attempt(*task, reason.clone(), now),
                Outcome::TimedOut => w.failed_attempt(*task, "timed out".into(), now),
                Outcome::Lost => w.failed_attempt(*task, "lost: its worker stopped answering".into(), now),
                Outcome::Cancelled => w.failed_attempt(*task, "killed on the worker".into(), now),
            }
        }
        Event::AttemptTimedOut { task, attempt } => {
            let t = &run.tasks[*task];
            if w.states[*task] != TaskState::Running || t.attempts != *attempt || run.state.is_terminal() {
                return Vec::new();
            }
            match wf.tasks[*task].timeout.map(|t| t.on_timeout) {
                Some(OnTimeout::Warn) => {
                    return vec![Effect::Notify {
                        kind: Notice::TimeoutWarning,
                        task: Some(*task),
                        message: format!("task {} runs past its timeout", wf.tasks[*task].id),
                    }];
                }
                Some(OnTimeout::Fail) => {
                    w.effects.push(Effect::Kill { task: *task, attempt: *attempt });
                    w.failed_attempt(*task, "timed out".into(), now);
                }
                None => return Vec::new(),
            }
        }
        Event::Cancel => {
            if run.state.is_terminal() {
                return Vec::new();
            }
            w.stop_all();
            w.effects.push(Effect::Run { state: RunState::Cancelled });
            w.effects.push(Effect::Notify { kind: Notice::RunCancelled, task: None, message: "run cancelled".into() });
            return w.effects;
        }
        Event::Clear { tasks, downstream } => {
            let mut targets: Vec<TaskIdx> = Vec::new();
            for &t in tasks {
                if *downstream {
                    targets.extend(wf.dag.with_downstream(t));
                } else {
                    targets.push(t);
                }
            }
            targets.sort_unstable();
            targets.dedup();
            w.clear(&targets);
        }
        Event::RerunFailed => {
            let targets: Vec<TaskIdx> = (0..w.states.len()).filter(|&t| w.states[t].is_failure()).collect();
            if targets.is_empty() {
                return Vec::new();
            }
            w.clear(&targets);
        }
        Event::Mark { task, state } => {
            let to = match state {
                MarkAs::Succeeded => TaskState::Succeeded,
                MarkAs::Failed => TaskState::Failed,
            };
            if w.states[*task] == to {
                return Vec::new();
            }
            if matches!(w.states[*task], TaskState::Running | TaskState::Queued) {
                w.effects.push(Effect::Kill { task: *task, attempt: run.tasks[*task].attempts });
            }
            w.set(*task, to, Some("marked by hand".into()));
            if run.state.is_terminal() {
                w.effects.push(Effect::Run { state: RunState::Running });
            }
        }
    }
    w.propagate(now);
    w.finish();
    w.effects
}

struct Working<'r, 'w> {
    run: &'r RunView<'w>,
    states: Vec<TaskState>,
    effects: Vec<Effect>,
    /// Outputs learned in this decision (not yet in `run`).
    outputs: BTreeMap<TaskIdx, BTreeMap<String, String>>,
}

impl Working<'_, '_> {
    fn set(&mut self, task: TaskIdx, state: TaskState, reason: Option<String>) {
        if self.states[task] == state {
            return;
        }
        debug_assert!(self.states[task].can_become(state), "{} → {state}", self.states[task]);
        self.states[task] = state;
        self.effects.push(Effect::Task { task, state, reason });
    }

    fn failed_attempt(&mut self, task: TaskIdx, reason: String, now: DateTime<Utc>) {
        let spec = &self.run.workflow.tasks[task];
        let t = &self.run.tasks[task];
        let made = t.attempts - t.attempts_at_clear;
        if made <= spec.retry.retries {
            let next = t.attempts + 1;
            let delay = spec.retry.delay_before(made, seed(&self.run.run_id, task, next));
            let not_before = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
            self.effects.push(Effect::Notify {
                kind: Notice::TaskRetrying,
                task: Some(task),
                message: format!(
                    "task {} attempt {} failed ({reason}); retry {made} of {} at {not_before}",
                    spec.id, t.attempts, spec.retry.retries
                ),
            });
            match self.render(task, next) {
                Ok(rendered) => {
                    self.set(task, TaskState::Queued, Some(reason));
                    self.effects.push(Effect::Enqueue { task, attempt: next, not_before, rendered });
                }
                Err(e) => self.fail(task, e),
            }
        } else {
            self.fail(task, reason);
        }
    }

    fn fail(&mut self, task: TaskIdx, reason: String) {
        let id = &self.run.workflow.tasks[task].id;
        self.effects.push(Effect::Notify {
            kind: Notice::TaskFailed,
            task: Some(task),
            message: format!("task {id} failed: {reason}"),
        });
        self.set(task, TaskState::Failed, Some(reason));
        if self.run.workflow.failure_strategy == FailureStrategy::Stop {
            self.stop_all();
        }
    }

    /// Kills what runs and cancels what waits.
    fn stop_all(&mut self) {
        for t in 0..self.states.len() {
            match self.states[t] {
                TaskState::Running | TaskState::Queued => {
                    self.effects.push(Effect::Kill { task: t, attempt: self.run.tasks[t].attempts });
                    self.set(t, TaskState::Cancelled, Some("run stopped".into()));
                }
                TaskState::Pending => self.set(t, TaskState::Cancelled, Some("run stopped".into())),
                _ => {}
            }
        }
    }

    fn clear(&mut self, targets: &[TaskIdx]) {
        for &t in targets {
            if matches!(self.states[t], TaskState::Running | TaskState::Queued) {
                self.effects.push(Effect::Kill { task: t, attempt: self.run.tasks[t].attempts });
            }
            if self.states[t] != TaskState::Pending {
                self.set(t, TaskState::Pending, Some("cleared".into()));
            }
        }
        if self.run.state.is_terminal() {
            self.effects.push(Effect::Run { state: RunState::Running });
        }
    }

    fn run_is_open(&self) -> bool {
        // Decisions of this event may have reopened or started the run.
        let reopened = self.effects.iter().any(|e| matches!(e, Effect::Run { state: RunState::Running }));
        self.run.state == RunState::Running || reopened
    }

    /// Walks the DAG in topological order and decides every pending task whose upstream allows.
    fn propagate(&mut self, now: DateTime<Utc>) {
        if !self.run_is_open() {
            return;
        }
        let wf = self.run.workflow;
        for &t in &wf.dag.topo {
            if self.states[t] != TaskState::Pending {
                continue;
            }
            let ups: Vec<TaskState> = wf.dag.upstream[t].iter().map(|&u| self.states[u]).collect();
            match readiness(wf.tasks[t].trigger_rule, &ups) {
                Readiness::Wait => {}
                Readiness::Skip => self.set(t, TaskState::Skipped, Some("trigger rule".into())),
                Readiness::UpstreamFailed => {
                    self.set(t, TaskState::UpstreamFailed, Some("an upstream task failed".into()))
                }
                Readiness::Run => self.start(t, now),
            }
        }
    }

    fn start(&mut self, task: TaskIdx, now: DateTime<Utc>) {
        let spec = &self.run.workflow.tasks[task];
        if let TaskKind::Switch(sw) = &spec.kind {
            // Decided here, by the scheduler: no worker, no attempt.
            let ctx = self.context(0);
            let mut chosen = None;
            for case in &sw.cases {
                match template::eval_condition(&case.when, &ctx) {
                    Ok(true) => {
                        chosen = Some(case.then.clone());
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => return self.fail(task, format!("condition {:?}: {e}", case.when)),
                }
            }
            let chosen = chosen.unwrap_or_else(|| sw.default.clone());
            self.set(task, TaskState::Succeeded, Some(format!("chose [{}]", chosen.join(", "))));
            for &d in &self.run.workflow.dag.downstream[task].clone() {
                if !chosen.contains(&self.run.workflow.tasks[d].id) && self.states[d] == TaskState::Pending {
                    self.set(d, TaskState::Skipped, Some("branch not taken".into()));
                }
            }
            return;
        }
        let attempt = self.run.tasks[task].attempts + 1;
        match self.render(task, attempt) {
            Ok(rendered) => {
                self.set(task, TaskState::Queued, None);
                self.effects.push(Effect::Enqueue { task, attempt, not_before: now, rendered });
            }
            Err(e) => self.fail(task, e),
        }
    }

    fn context(&self, attempt: u32) -> Context {
        let wf = self.run.workflow;
        let mut outputs = BTreeMap::new();
        let mut states = BTreeMap::new();
        for (i, t) in wf.tasks.iter().enumerate() {
            states.insert(t.id.clone(), self.states[i].as_str().to_owned());
            let o = self.outputs.get(&i).unwrap_or(&self.run.tasks[i].outputs);
            if !o.is_empty() {
                outputs.insert(t.id.clone(), o.clone());
            }
        }
        Context {
            logical_time: self.run.logical_time,
            zone: self.run.zone,
            run_id: self.run.run_id.clone(),
            workflow: wf.name().to_owned(),
            attempt,
            params: self.run.params.clone(),
            outputs,
            states,
        }
    }

    fn render(&self, task: TaskIdx, attempt: u32) -> Result<RenderedTask, String> {
        let spec = &self.run.workflow.tasks[task];
        let mut ctx = self.context(attempt);
        // Task params are rendered against the workflow's, then join them.
        let mut params = BTreeMap::new();
        for (k, v) in &spec.params {
            params.insert(k.clone(), template::render_value(v, &ctx).map_err(|e| format!("param `{k}`: {e}"))?);
        }
        ctx.params.extend(params.clone());
        let kind = serde_json::to_value(&spec.kind).map_err(|e| e.to_string())?;
        let kind = template::render_value(&kind, &ctx).map_err(|e| format!("template: {e}"))?;
        let mut all = self.run.params.clone();
        all.extend(params);
        Ok(RenderedTask { kind, params: all })
    }

    /// Ends the run when nothing is left to do.
    fn finish(&mut self) {
        if !self.run_is_open() || self.states.iter().any(|s| !s.is_terminal()) {
            return;
        }
        let failed = self.states.iter().any(|s| s.is_failure());
        let (state, notice) =
            if failed { (RunState::Failed, Notice::RunFailed) } else { (RunState::Succeeded, Notice::RunSucceeded) };
        self.effects.push(Effect::Run { state });
        self.effects.push(Effect::Notify { kind: notice, task: None, message: format!("run {state}") });
    }
}

/// A stable seed for retry jitter: FNV-1a over the run, task and attempt.
fn seed(run_id: &str, task: TaskIdx, attempt: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in run_id.bytes().chain(task.to_le_bytes()).chain(attempt.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Applies effects to a view: what the store does, in memory (for simulations and tests).
pub fn apply(run: &mut RunView<'_>, effects: &[Effect]) {
    for e in effects {
        match e {
            Effect::Task { task, state, .. } => {
                if *state == TaskState::Pending {
                    run.tasks[*task].attempts_at_clear = run.tasks[*task].attempts;
                }
                run.tasks[*task].state = *state;
            }
            Effect::Outputs { task, outputs } => run.tasks[*task].outputs = outputs.clone(),
            Effect::Enqueue { task, attempt, .. } => run.tasks[*task].attempts = *attempt,
            Effect::Run { state } => run.state = *state,
            Effect::Kill { .. } | Effect::Notify { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::workflow::parse_yaml;

    fn view<'a>(wf: &'a Workflow) -> RunView<'a> {
        RunView {
            workflow: wf,
            run_id: "run-1".into(),
            state: RunState::Queued,
            logical_time: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            zone: Tz::UTC,
            params: BTreeMap::new(),
            tasks: vec![TaskView::default(); wf.tasks.len()],
        }
    }

    fn step(run: &mut RunView<'_>, e: Event) -> Vec<Effect> {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let fx = decide(run, &e, now);
        apply(run, &fx);
        fx
    }

    fn states(run: &RunView<'_>) -> Vec<&'static str> {
        run.tasks.iter().map(|t| t.state.as_str()).collect()
    }

    fn finish(run: &mut RunView<'_>, task: TaskIdx, outcome: Outcome) {
        let attempt = run.tasks[task].attempts;
        step(run, Event::AttemptStarted { task, attempt });
        step(run, Event::AttemptEnded { task, attempt, outcome });
    }

    fn ok() -> Outcome {
        Outcome::Succeeded { outputs: BTreeMap::new() }
    }

    fn fail() -> Outcome {
        Outcome::Failed { reason: "exit 1".into() }
    }

    #[test]
    fn a_chain_runs_in_order_and_the_run_succeeds() {
        let wf =
            parse_yaml("name: w\ntasks:\n  - {id: a, kind: noop}\n  - {id: b, kind: noop, depends_on: [a]}\n").unwrap();
        let mut run = view(&wf);
        step(&mut run, Event::Start);
        assert_eq!(states(&run), ["queued", "pending"]);
        finish(&mut run, 0, ok());
        assert_eq!(states(&run), ["succeeded", "queued"]);
        finish(&mut run, 1, ok());
        assert_eq!(run.state, RunState::Succeeded);
    }

    #[test]
    fn a_failure_retries_then_fails_and_downstream_is_upstream_failed() {
        let wf = parse_yaml(
            "name: w\ntasks:\n  - {id: a, kind: noop, retries: {count: 1, delay: 30s, jitter: false}}\n  - {id: b, kind: noop, depends_on: [a]}\n  - {id: c, kind: noop, depends_on: [a], trigger_rule: all_done}\n",
        )
        .unwrap();
        let mut run = view(&wf);
        step(&mut run, Event::Start);
        let attempt = run.tasks[0].attempts;
        step(&mut run, Event::AttemptStarted { task: 0, attempt });
        let fx = step(&mut run, Event::AttemptEnded { task: 0, attempt, outcome: fail() });
        let enqueue = fx.iter().find_map(|e| match e {
            Effect::Enqueue { attempt, not_before, .. } => Some((*attempt, *not_before)),
            _ => None,
        });
        assert_eq!(
            enqueue,
            Some((2, Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 30).unwrap())),
            "retry 1 after the 30 s delay"
        );
        finish(&mut run, 0, fail());
        assert_eq!(states(&run), ["failed", "upstream_failed", "queued"]);
        finish(&mut run, 2, ok());
        assert_eq!(run.state, RunState::Failed);
    }

    #[test]
    fn a_stale_or_repeated_report_changes_nothing() {
        let wf = parse_yaml("name: w\ntasks:\n  - {id: a, kind: noop, retries: 1}\n").unwrap();
        let mut run = view(&wf);
        step(&mut run, Event::Start);
        step(&mut run, Event::AttemptStarted { task: 0, attempt: 1 });
        step(&mut run, Event::AttemptEnded { task: 0, attempt: 1, outcome: fail() });
        // attempt 2 is queued; a late report of attempt 1 is refused
        assert!(decide(&run, &Event::AttemptEnded { task: 0, attempt: 1, outcome: ok() }, Utc::now()).is_empty());
        step(&mut run, Event::AttemptStarted { task: 0, attempt: 2 });
        let e = Event::AttemptEnded { task: 0, attempt: 2, outcome: ok() };
        assert!(!step(&mut run, e.clone()).is_empty());
        assert!(decide(&run, &e, Utc::now()).is_empty(), "the same report again is a no-op");
    }

    #[test]
    fn a_switch_takes_one_branch_and_skips_the_other() {
        let wf = parse_yaml(
            r#"
name: w
tasks:
  - {id: extract, kind: noop}
  - id: check
    kind: switch
    depends_on: [extract]
    config:
      cases:
        - {when: "outputs.extract.rows | int > 0", then: [load]}
      default: [alert]
  - {id: load, kind: noop, depends_on: [check]}
  - {id: alert, kind: noop, depends_on: [check]}
  - {id: after_load, kind: noop, depends_on: [load]}
  - {id: report, kind: noop, depends_on: [load, alert], trigger_rule: none_failed}
"#,
        )
        .unwrap();
        let mut run = view(&wf);
        step(&mut run, Event::Start);
        finish(&mut run, 0, Outcome::Succeeded { outputs: BTreeMap::from([("rows".into(), "0".into())]) });
        assert_eq!(states(&run), ["succeeded", "succeeded", "skipped", "queued", "skipped", "pending"]);
        finish(&mut run, 3, ok());
        assert_eq!(run.tasks[5].state, TaskState::Queued, "none_failed runs after a skipped branch");
        finish(&mut run, 5, ok());
        assert_eq!(run.state, RunState::Succeeded);
    }

    #[test]
    fn stop_strategy_cancels_the_rest_and_cancel_stops_everything() {
        let wf = parse_yaml(
            "name: w\nfailure_strategy: stop\ntasks:\n  - {id: a, kind: noop}\n  - {id: b, kind: noop}\n  - {id: c, kind: noop, depends_on: [b]}\n",
        )
        .unwrap();
        let mut run = view(&wf);
        step(&mut run, Event::Start);
        step(&mut run, Event::AttemptStarted { task: 1, attempt: 1 });
        let fx = step(&mut run, Event::AttemptEnded { task: 0, attempt: 1, outcome: fail() });
        assert!(fx.contains(&Effect::Kill { task: 1, attempt: 1 }), "{fx:?}");
        assert_eq!(states(&run), ["failed", "cancelled", "cancelled"]);
        assert_eq!(run.state, RunState::Failed);

        let wf =
            parse_yaml("name: w\ntasks:\n  - {id: a, kind: noop}\n  - {id: b, kind: noop, depends_on: [a]}\n").unwrap();
        let mut run = view(&wf);
        step(&mut run, Event::Start);
        step(&mut run, Event::Cancel);
        assert_eq!(states(&run), ["cancelled", "cancelled"]);
        assert_eq!(run.state, RunState::Cancelled);
        assert!(decide(&run, &Event::Cancel, Utc::now()).is_empty());
    }

    #[test]
    fn rerun_failed_clears_failures_and_reopens_the_run() {
        let wf = parse_yaml("name: w\ntasks:\n  - {id: a, kind: noop}\n  - {id: b, kind: noop, depends_on: [a]}\n  - {id: c, kind: noop}\n").unwrap();
        let mut run = view(&wf);
        step(&mut run, Event::Start);
        finish(&mut run, 0, fail());
        finish(&mut run, 2, ok());
        assert_eq!(run.state, RunState::Failed);
        step(&mut run, Event::RerunFailed);
        assert_eq!(states(&run), ["queued", "pending", "succeeded"]);
        assert_eq!(run.state, RunState::Running);
        finish(&mut run, 0, ok());
        finish(&mut run, 1, ok());
        assert_eq!(run.state, RunState::Succeeded);
        assert_eq!(run.tasks[0].attempts, 2, "attempt numbers keep counting");
    }

    #[test]
    fn params_and_outputs_are_rendered_into_the_attempt() {
        let wf = parse_yaml(
            "name: w\nparams: {region: eu}\ntasks:\n  - {id: a, kind: noop}\n  - id: b\n    kind: shell\n    depends_on: [a]\n    params: {day: \"{{ ds }}\"}\n    config: {script: \"echo {{ params.region }} {{ params.day }} {{ outputs.a.n }}\"}\n",
        )
        .unwrap();
        let mut run = view(&wf);
        run.params.insert("region".into(), Value::String("us".into()));
        step(&mut run, Event::Start);
        let attempt = run.tasks[0].attempts;
        step(&mut run, Event::AttemptStarted { task: 0, attempt });
        let fx = step(
            &mut run,
            Event::AttemptEnded {
                task: 0,
                attempt,
                outcome: Outcome::Succeeded { outputs: BTreeMap::from([("n".into(), "7".into())]) },
            },
        );
        let rendered = fx
            .iter()
            .find_map(|e| match e {
                Effect::Enqueue { rendered, .. } => Some(rendered.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(rendered.kind["config"]["script"], "echo us 2026-01-01 7");
        assert_eq!(rendered.params["day"], "2026-01-01");
    }

    #[test]
    fn trigger_rules_follow_airflow() {
        use TaskState::*;
        use TriggerRule::*;
        let cases = [
            (AllSuccess, vec![Succeeded, Running], Readiness::Wait),
            (AllSuccess, vec![Succeeded, Failed], Readiness::UpstreamFailed),
            (AllSuccess, vec![Succeeded, Skipped], Readiness::Skip),
            (AllDone, vec![Failed, Skipped], Readiness::Run),
            (AllFailed, vec![Failed, UpstreamFailed], Readiness::Run),
            (AllFailed, vec![Failed, Succeeded], Readiness::Skip),
            (OneSuccess, vec![Succeeded, Running], Readiness::Run),
            (OneSuccess, vec![Failed, Failed], Readiness::UpstreamFailed),
            (OneFailed, vec![Failed, Running], Readiness::Run),
            (OneFailed, vec![Succeeded, Succeeded], Readiness::Skip),
            (NoneFailed, vec![Succeeded, Skipped], Readiness::Run),
            (NoneFailed, vec![Succeeded, Failed], Readiness::UpstreamFailed),
        ];
        for (rule, ups, want) in cases {
            assert_eq!(readiness(rule, &ups), want, "{rule:?} {ups:?}");
        }
    }
}
