//! Property tests of the engine on random DAGs: the invariants in `engine`'s module docs.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use model::engine::{Effect, Event, Outcome, Readiness, RunView, TaskView, apply, decide, readiness};
use model::state::{RunState, TaskState};
use model::workflow::{Workflow, parse_yaml};
use proptest::prelude::*;

const RULES: [&str; 6] = ["all_success", "all_done", "all_failed", "one_success", "one_failed", "none_failed"];

#[derive(Clone, Debug)]
struct Shape {
    tasks: Vec<(Vec<usize>, usize, u32)>, // upstream, rule, retries
    stop: bool,
}

fn shape() -> impl Strategy<Value = Shape> {
    (1usize..12, any::<bool>()).prop_flat_map(|(n, stop)| {
        let tasks: Vec<_> =
            (0..n).map(|j| (proptest::collection::vec(any::<bool>(), j), 0..RULES.len(), 0u32..3)).collect();
        tasks.prop_map(move |t| Shape {
            tasks: t
                .into_iter()
                .map(|(picks, rule, retries)| {
                    let ups = picks.iter().enumerate().filter(|(i, p)| **p && i % 3 != 2).map(|(i, _)| i).collect();
                    (ups, rule, retries)
                })
                .collect(),
            stop,
        })
    })
}

fn workflow(s: &Shape) -> Workflow {
    let mut doc = format!("name: w\nfailure_strategy: {}\ntasks:\n", if s.stop { "stop" } else { "continue" });
    for (i, (ups, rule, retries)) in s.tasks.iter().enumerate() {
        let deps: Vec<String> = ups.iter().map(|u| format!("t{u}")).collect();
        doc.push_str(&format!(
            "  - {{id: t{i}, kind: noop, depends_on: [{}], trigger_rule: {}, retries: {{count: {retries}, jitter: false}}}}\n",
            deps.join(", "),
            RULES[*rule]
        ));
    }
    parse_yaml(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"))
}

/// Decides, checks that deciding again is a no-op, applies, and checks every enqueue is allowed.
fn step(run: &mut RunView<'_>, event: Event) -> Vec<Effect> {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let fx = decide(run, &event, now);
    apply(run, &fx);
    let again = decide(run, &event, now);
    assert!(again.is_empty(), "re-applying {event:?} changed {again:?}");
    for e in &fx {
        if let Effect::Enqueue { task, .. } = e {
            let wf = run.workflow;
            let ups: Vec<TaskState> = wf.dag.upstream[*task].iter().map(|&u| run.tasks[u].state).collect();
            assert_eq!(
                readiness(wf.tasks[*task].trigger_rule, &ups),
                Readiness::Run,
                "task {task} queued with upstream {ups:?}"
            );
            assert!(
                ups.iter().all(|s| s.is_terminal())
                    || matches!(
                        wf.tasks[*task].trigger_rule,
                        model::workflow::TriggerRule::OneSuccess | model::workflow::TriggerRule::OneFailed
                    )
            );
        }
    }
    fx
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn every_run_ends_and_no_task_jumps_its_upstream_or_its_retries(
        s in shape(),
        rolls in proptest::collection::vec(any::<u8>(), 400),
        cancel_at in proptest::option::of(0usize..60),
    ) {
        let wf = workflow(&s);
        let mut run = RunView {
            workflow: &wf,
            run_id: "r".into(),
            state: RunState::Queued,
            logical_time: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            zone: chrono_tz::Tz::UTC,
            params: BTreeMap::new(),
            tasks: vec![TaskView::default(); wf.tasks.len()],
        };
        step(&mut run, Event::Start);
        let mut rolls = rolls.into_iter().cycle();
        for i in 0..1000 {
            if cancel_at == Some(i) {
                step(&mut run, Event::Cancel);
            }
            let queued: Vec<usize> = (0..run.tasks.len()).filter(|&t| run.tasks[t].state == TaskState::Queued).collect();
            if queued.is_empty() {
                break;
            }
            let r = rolls.next().unwrap();
            let task = queued[r as usize % queued.len()];
            let attempt = run.tasks[task].attempts;
            step(&mut run, Event::AttemptStarted { task, attempt });
            let outcome = match rolls.next().unwrap() % 5 {
                0 => Outcome::Failed { reason: "exit 1".into() },
                1 => Outcome::Lost,
                _ => Outcome::Succeeded { outputs: BTreeMap::new() },
            };
            step(&mut run, Event::AttemptEnded { task, attempt, outcome });
        }
        prop_assert!(run.state.is_terminal(), "the run ended: {:?}", run.state);
        for (t, view) in run.tasks.iter().enumerate() {
            prop_assert!(view.state.is_terminal(), "task {t} is {}", view.state);
            prop_assert!(view.attempts <= wf.tasks[t].retry.retries + 1, "task {t} made {} attempts", view.attempts);
        }
        let failed = run.tasks.iter().any(|t| t.state.is_failure());
        if run.state == RunState::Succeeded {
            prop_assert!(!failed);
        }
    }
}
