//! Validation as you edit: the model's own `validate` (compiled to wasm, the very code the server
//! runs on save), plus the cycle's tasks and edges so the canvas can mark them.

use std::collections::{HashMap, HashSet};

use model::workflow::{Dag, Problem, WorkflowSpec};

use super::state::Marks;
use crate::i18n::{Lang, problem};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checked {
    /// Problems of the workflow as a whole.
    pub general: Vec<String>,
    /// Problems by task id.
    pub by_task: HashMap<String, Vec<String>>,
    /// The tasks of a cycle, in order, first repeated last (empty without one).
    pub cycle: Vec<String>,
    /// The cycle's problem as a line of [`Checked::lines`] (shown first among the tasks').
    pub cycle_line: Option<String>,
    pub count: usize,
}

impl Checked {
    pub fn ok(&self) -> bool {
        self.count == 0
    }

    /// Every problem as a line: the workflow's own, then each task's (`task: problem`), the
    /// cycle first among them when there is one.
    pub fn lines(&self) -> Vec<String> {
        let mut out = self.general.clone();
        let mut tasks: Vec<(&String, &Vec<String>)> = self.by_task.iter().collect();
        tasks.sort();
        let task_lines = tasks.into_iter().flat_map(|(t, ms)| ms.iter().map(move |m| format!("{t}: {m}")));
        out.extend(self.cycle_line.clone());
        out.extend(task_lines.filter(|l| Some(l) != self.cycle_line.as_ref()));
        out
    }

    /// How the canvas marks what is wrong.
    pub fn marks(&self) -> Marks {
        let mut m = Marks::default();
        for id in self.by_task.keys() {
            m.tasks.insert(id.clone(), "invalid".into());
        }
        for w in self.cycle.windows(2) {
            m.tasks.insert(w[0].clone(), "invalid in-cycle".into());
            m.edges.insert((w[0].clone(), w[1].clone()));
        }
        m
    }
}

pub fn check(spec: &WorkflowSpec, lang: Lang) -> Checked {
    let mut c = Checked::default();
    if let Err(errors) = model::workflow::validate(spec.clone()) {
        c.count = errors.0.len();
        for e in errors.0 {
            let message = problem(lang, &e.problem);
            match e.task {
                Some(t) => {
                    if matches!(e.problem, Problem::Cycle { .. }) {
                        c.cycle_line = Some(format!("{t}: {message}"));
                    }
                    c.by_task.entry(t).or_default().push(message);
                }
                None => c.general.push(message),
            }
        }
    }
    c.cycle = cycle(spec);
    c
}

/// One cycle of the document's dependencies, as task ids (`[a, b, a]`), if there is one.
pub fn cycle(spec: &WorkflowSpec) -> Vec<String> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, t) in spec.tasks.iter().enumerate() {
        index.entry(t.id.as_str()).or_insert(i);
    }
    let upstream: Vec<Vec<usize>> = spec
        .tasks
        .iter()
        .map(|t| {
            let mut seen = HashSet::new();
            t.depends_on.iter().filter_map(|u| index.get(u.as_str()).copied()).filter(|u| seen.insert(*u)).collect()
        })
        .collect();
    match Dag::build(upstream) {
        Ok(_) => Vec::new(),
        Err(path) => path.into_iter().map(|i| spec.tasks[i].id.clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_is_found_and_marked() {
        let spec = crate::graph::from_yaml(
            "name: c\ntasks:\n  - {id: a, kind: noop, depends_on: [c]}\n  - {id: b, kind: noop, depends_on: [a]}\n  - {id: c, kind: noop, depends_on: [b]}\n  - {id: d, kind: noop, depends_on: [nope]}\n",
        )
        .unwrap();
        let c = check(&spec, Lang::En);
        assert!(!c.ok());
        assert_eq!(c.cycle.first(), c.cycle.last());
        assert_eq!(c.cycle.len(), 4);
        assert!(c.general.iter().chain(c.by_task.values().flatten()).any(|m| m.contains("cycle")), "{c:?}");
        assert!(c.by_task["d"].iter().any(|m| m.contains("nope")), "{c:?}");
        let marks = c.marks();
        assert!(marks.tasks["a"].contains("in-cycle"));
        assert_eq!(marks.edges.len(), 3);
    }
}
