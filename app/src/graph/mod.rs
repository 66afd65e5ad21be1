//! The editor's document: a workflow spec and where each task sits on the canvas, with every edit
//! the canvas makes (add, connect, move, delete, rename, copy and paste, arrange) and its undo
//! history. Pure: no browser, no reactivity, so it is tested like any other Rust.

pub mod layout;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use model::workflow::WorkflowSpec;
use model::workflow::spec::TaskSpec;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A task box's size on the canvas.
pub const NODE_W: f64 = 180.0;
pub const NODE_H: f64 = 44.0;

/// A point on the canvas (graph coordinates, before pan and zoom).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pt {
    pub x: f64,
    pub y: f64,
}

/// Where each task sits, by task id.
pub type Positions = BTreeMap<String, Pt>;

/// A workflow as the editor holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub spec: WorkflowSpec,
    pub pos: Positions,
}

/// Why an edge was not added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectError {
    SelfLoop,
    Exists,
    /// The tasks the edge would close a cycle through, in order: `[to, ..., from, to]`.
    Cycle(Vec<String>),
    Unknown(String),
}

/// Tasks copied from a graph, with the edges among them.
#[derive(Clone, Debug, PartialEq)]
pub struct Clip {
    pub tasks: Vec<(TaskSpec, Pt)>,
}

impl Graph {
    /// A graph with a position for every task: those `pos` lacks are laid out (all of them
    /// when it has none, else each beside its upstream tasks).
    pub fn new(spec: WorkflowSpec, pos: Positions) -> Graph {
        let mut g = Graph { spec, pos };
        g.place_missing();
        g
    }

    pub fn task(&self, id: &str) -> Option<&TaskSpec> {
        self.spec.tasks.iter().find(|t| t.id == id)
    }

    fn task_mut(&mut self, id: &str) -> Option<&mut TaskSpec> {
        self.spec.tasks.iter_mut().find(|t| t.id == id)
    }

    pub fn ids(&self) -> Vec<String> {
        self.spec.tasks.iter().map(|t| t.id.clone()).collect()
    }

    /// Every edge as (upstream, downstream), in document order; references to unknown tasks are
    /// left out (the validator reports them).
    pub fn edges(&self) -> Vec<(String, String)> {
        let known: BTreeSet<&str> = self.spec.tasks.iter().map(|t| t.id.as_str()).collect();
        self.spec
            .tasks
            .iter()
            .flat_map(|t| t.depends_on.iter().filter(|u| known.contains(u.as_str())).map(|u| (u.clone(), t.id.clone())))
            .collect()
    }

    /// Upstream lists by index, for layout and cycle checks.
    fn upstream_indices(&self) -> Vec<Vec<usize>> {
        let index: HashMap<&str, usize> = self.spec.tasks.iter().enumerate().map(|(i, t)| (t.id.as_str(), i)).collect();
        self.spec
            .tasks
            .iter()
            .map(|t| t.depends_on.iter().filter_map(|u| index.get(u.as_str()).copied()).collect())
            .collect()
    }

    /// A fresh id for a task of `kind`: `kind_1`, `kind_2`, ...
    pub fn fresh_id(&self, base: &str) -> String {
        let base: String = base.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let taken: BTreeSet<&str> = self.spec.tasks.iter().map(|t| t.id.as_str()).collect();
        (1..).map(|i| format!("{base}_{i}")).find(|id| !taken.contains(id.as_str())).expect("an unbounded range")
    }

    /// Adds a task of `kind` with the kind's starting settings; returns its id.
    pub fn add_task(&mut self, kind: &str, at: Pt) -> String {
        let id = self.fresh_id(kind);
        self.spec.tasks.push(new_task(&id, kind));
        self.pos.insert(id.clone(), at);
        id
    }

    /// Makes `to` depend on `from`, unless that is a loop, already there, or closes a cycle.
    pub fn connect(&mut self, from: &str, to: &str) -> Result<(), ConnectError> {
        if from == to {
            return Err(ConnectError::SelfLoop);
        }
        for id in [from, to] {
            if self.task(id).is_none() {
                return Err(ConnectError::Unknown(id.to_owned()));
            }
        }
        if self.task(to).is_some_and(|t| t.depends_on.iter().any(|u| u == from)) {
            return Err(ConnectError::Exists);
        }
        if let Some(path) = self.path(to, from) {
            let mut cycle = path;
            cycle.push(to.to_owned());
            return Err(ConnectError::Cycle(cycle));
        }
        self.task_mut(to).expect("checked above").depends_on.push(from.to_owned());
        Ok(())
    }

    /// A path of edges from `from` down to `to`, if there is one.
    fn path(&self, from: &str, to: &str) -> Option<Vec<String>> {
        let mut downs: HashMap<&str, Vec<&str>> = HashMap::new();
        for t in &self.spec.tasks {
            for u in &t.depends_on {
                downs.entry(u.as_str()).or_default().push(t.id.as_str());
            }
        }
        let mut came: HashMap<&str, &str> = HashMap::new();
        let mut stack = vec![from];
        while let Some(v) = stack.pop() {
            if v == to {
                let mut path = vec![to.to_owned()];
                let mut cur = to;
                while let Some(&p) = came.get(cur) {
                    path.push(p.to_owned());
                    cur = p;
                }
                path.reverse();
                return Some(path);
            }
            for &d in downs.get(v).map(Vec::as_slice).unwrap_or_default() {
                if d != from && !came.contains_key(d) {
                    came.insert(d, v);
                    stack.push(d);
                }
            }
        }
        None
    }

    pub fn disconnect(&mut self, from: &str, to: &str) {
        if let Some(t) = self.task_mut(to) {
            t.depends_on.retain(|u| u != from);
        }
    }

    /// Removes the tasks and every dependency on them.
    pub fn delete(&mut self, ids: &BTreeSet<String>) {
        self.spec.tasks.retain(|t| !ids.contains(&t.id));
        for t in &mut self.spec.tasks {
            t.depends_on.retain(|u| !ids.contains(u));
        }
        self.pos.retain(|id, _| !ids.contains(id));
    }

    /// Renames a task, and every reference to it.
    pub fn rename(&mut self, old: &str, new: &str) -> Result<(), String> {
        if old == new {
            return Ok(());
        }
        if new.is_empty() || !new.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!("`{new}` is not a task id: use letters, digits, `-` and `_`"));
        }
        if self.task(new).is_some() {
            return Err(format!("there is already a task `{new}`"));
        }
        let Some(t) = self.task_mut(old) else { return Err(format!("there is no task `{old}`")) };
        t.id = new.to_owned();
        for t in &mut self.spec.tasks {
            for u in &mut t.depends_on {
                if u == old {
                    *u = new.to_owned();
                }
            }
        }
        if let Some(p) = self.pos.remove(old) {
            self.pos.insert(new.to_owned(), p);
        }
        Ok(())
    }

    pub fn move_by(&mut self, ids: &BTreeSet<String>, dx: f64, dy: f64) {
        for id in ids {
            if let Some(p) = self.pos.get_mut(id) {
                p.x += dx;
                p.y += dy;
            }
        }
    }

    pub fn copy(&self, ids: &BTreeSet<String>) -> Clip {
        Clip {
            tasks: self
                .spec
                .tasks
                .iter()
                .filter(|t| ids.contains(&t.id))
                .map(|t| (t.clone(), self.pos.get(&t.id).copied().unwrap_or_default()))
                .collect(),
        }
    }

    /// Adds copies of the clipped tasks under fresh ids, shifted by `offset`; edges among them are
    /// kept, edges to tasks outside the clip are not. Returns the new ids.
    pub fn paste(&mut self, clip: &Clip, offset: Pt) -> Vec<String> {
        let mut renamed: HashMap<String, String> = HashMap::new();
        for (t, _) in &clip.tasks {
            let base = t.id.trim_end_matches(|c: char| c.is_ascii_digit()).trim_end_matches('_');
            let base = if base.is_empty() { "task" } else { base };
            let id = self.fresh_id(base);
            // Reserve it before the next fresh id is picked.
            self.spec.tasks.push(new_task(&id, "noop"));
            renamed.insert(t.id.clone(), id);
        }
        self.spec.tasks.truncate(self.spec.tasks.len() - clip.tasks.len());
        let mut out = Vec::new();
        for (t, p) in &clip.tasks {
            let mut copy = t.clone();
            copy.id = renamed[&t.id].clone();
            copy.depends_on = t.depends_on.iter().filter_map(|u| renamed.get(u).cloned()).collect();
            self.pos.insert(copy.id.clone(), Pt { x: p.x + offset.x, y: p.y + offset.y });
            out.push(copy.id.clone());
            self.spec.tasks.push(copy);
        }
        out
    }

    /// Lays the whole graph out again.
    pub fn arrange(&mut self) {
        let pos = layout::layered(&self.upstream_indices());
        self.pos = self.spec.tasks.iter().map(|t| t.id.clone()).zip(pos).collect();
    }

    /// Gives a position to every task without one: a layout of the whole graph when none has one,
    /// else one step right of its upstream tasks (or below everything, for a root).
    pub fn place_missing(&mut self) {
        if self.spec.tasks.iter().all(|t| !self.pos.contains_key(&t.id)) {
            self.arrange();
            return;
        }
        let bottom = self.pos.values().map(|p| p.y).fold(f64::MIN, f64::max);
        let mut next_root_y = bottom + NODE_H + 26.0;
        for i in 0..self.spec.tasks.len() {
            let id = self.spec.tasks[i].id.clone();
            if self.pos.contains_key(&id) {
                continue;
            }
            let ups: Vec<Pt> = self.spec.tasks[i].depends_on.iter().filter_map(|u| self.pos.get(u).copied()).collect();
            let mut at = if ups.is_empty() {
                let p = Pt { x: 0.0, y: next_root_y };
                next_root_y += NODE_H + 26.0;
                p
            } else {
                Pt {
                    x: ups.iter().map(|p| p.x).fold(f64::MIN, f64::max) + NODE_W + 90.0,
                    y: ups.iter().map(|p| p.y).sum::<f64>() / ups.len() as f64,
                }
            };
            while self.pos.values().any(|p| (p.x - at.x).abs() < NODE_W && (p.y - at.y).abs() < NODE_H) {
                at.y += NODE_H + 26.0;
            }
            self.pos.insert(id, at);
        }
    }

    /// The tasks whose boxes meet the rectangle between `a` and `b`.
    pub fn within(&self, a: Pt, b: Pt) -> BTreeSet<String> {
        let (x0, x1) = (a.x.min(b.x), a.x.max(b.x));
        let (y0, y1) = (a.y.min(b.y), a.y.max(b.y));
        self.pos
            .iter()
            .filter(|(_, p)| p.x < x1 && p.x + NODE_W > x0 && p.y < y1 && p.y + NODE_H > y0)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The task whose box holds `p`, the topmost (last drawn) first.
    pub fn hit(&self, p: Pt) -> Option<String> {
        self.spec.tasks.iter().rev().find_map(|t| {
            let at = self.pos.get(&t.id)?;
            (p.x >= at.x && p.x <= at.x + NODE_W && p.y >= at.y && p.y <= at.y + NODE_H).then(|| t.id.clone())
        })
    }

    /// The bounding box of every task: (top-left, bottom-right).
    pub fn bounds(&self) -> Option<(Pt, Pt)> {
        bounds(&self.pos)
    }
}

/// The bounding box of boxes placed at `pos`: (top-left, bottom-right).
pub fn bounds(pos: &Positions) -> Option<(Pt, Pt)> {
    let mut it = pos.values();
    let first = *it.next()?;
    let (mut lo, mut hi) = (first, Pt { x: first.x + NODE_W, y: first.y + NODE_H });
    for p in it {
        lo.x = lo.x.min(p.x);
        lo.y = lo.y.min(p.y);
        hi.x = hi.x.max(p.x + NODE_W);
        hi.y = hi.y.max(p.y + NODE_H);
    }
    Some((lo, hi))
}

/// A new task of `kind` with the settings its schema requires, filled with examples.
pub fn new_task(id: &str, kind: &str) -> TaskSpec {
    let config = match kind {
        "sleep" => serde_json::json!({ "seconds": 1 }),
        "shell" => serde_json::json!({ "script": "echo hello" }),
        "python" => serde_json::json!({ "script": "print('hello')" }),
        "http" => serde_json::json!({ "url": "https://example.com/" }),
        "sql" => serde_json::json!({ "connection": "warehouse", "query": "SELECT 1" }),
        "plugin" => serde_json::json!({ "plugin": "spark-submit" }),
        "sub_workflow" | "dependency" => serde_json::json!({ "workflow": "" }),
        "switch" => serde_json::json!({ "cases": [] }),
        _ => Value::Null,
    };
    TaskSpec {
        id: id.to_owned(),
        kind: kind.to_owned(),
        config,
        description: String::new(),
        depends_on: Vec::new(),
        trigger_rule: Default::default(),
        retries: None,
        timeout: None,
        priority: 0,
        pool: None,
        region: None,
        labels: BTreeMap::new(),
        resources: None,
        params: BTreeMap::new(),
    }
}

/// Undo and redo over whole graphs (an edit is small next to a graph, but a snapshot is simple
/// and cannot drift from what was shown).
#[derive(Clone, Debug, Default)]
pub struct History {
    past: Vec<Graph>,
    future: Vec<Graph>,
}

const HISTORY: usize = 200;

impl History {
    /// Records the graph as it was before an edit.
    pub fn record(&mut self, before: Graph) {
        if self.past.last() == Some(&before) {
            return;
        }
        self.past.push(before);
        if self.past.len() > HISTORY {
            self.past.remove(0);
        }
        self.future.clear();
    }

    pub fn undo(&mut self, current: Graph) -> Option<Graph> {
        let prev = self.past.pop()?;
        self.future.push(current);
        Some(prev)
    }

    pub fn redo(&mut self, current: Graph) -> Option<Graph> {
        let next = self.future.pop()?;
        self.past.push(current);
        Some(next)
    }

    pub fn can_undo(&self) -> bool {
        !self.past.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.future.is_empty()
    }
}

/// The document as YAML, as the YAML view shows it and a save sends it.
pub fn to_yaml(spec: &WorkflowSpec) -> String {
    yaml_serde::to_string(spec).unwrap_or_else(|e| format!("# this workflow cannot be written as YAML: {e}\n"))
}

/// A document's structure from YAML (no semantic checks: a cycle or an unknown reference still
/// makes a graph, which the validator then marks). The error names the line.
pub fn from_yaml(text: &str) -> Result<WorkflowSpec, (Option<usize>, String)> {
    yaml_serde::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        let msg = e.to_string();
        let msg = msg.rfind(" at line ").map_or(msg.clone(), |i| msg[..i].to_owned());
        (line, msg)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(yaml: &str) -> Graph {
        Graph::new(from_yaml(yaml).unwrap(), Positions::new())
    }

    const THREE: &str = "name: three\ntasks:\n  - {id: a, kind: noop}\n  - {id: b, kind: noop, depends_on: [a]}\n  - {id: c, kind: noop, depends_on: [b]}\n";

    #[test]
    fn connecting_refuses_a_cycle_and_names_it() {
        let mut g = graph(THREE);
        assert_eq!(g.connect("c", "a"), Err(ConnectError::Cycle(vec!["a".into(), "b".into(), "c".into(), "a".into()])));
        assert_eq!(g.connect("a", "a"), Err(ConnectError::SelfLoop));
        assert_eq!(g.connect("a", "b"), Err(ConnectError::Exists));
        assert_eq!(g.connect("a", "c"), Ok(()));
        assert_eq!(g.task("c").unwrap().depends_on, ["b", "a"]);
    }

    #[test]
    fn deleting_and_renaming_keep_references_whole() {
        let mut g = graph(THREE);
        g.rename("b", "middle").unwrap();
        assert_eq!(g.task("c").unwrap().depends_on, ["middle"]);
        assert!(g.pos.contains_key("middle") && !g.pos.contains_key("b"));
        assert!(g.rename("a", "c").is_err(), "taken");
        assert!(g.rename("a", "no spaces").is_err());
        g.delete(&BTreeSet::from(["middle".to_owned()]));
        assert_eq!(g.ids(), ["a", "c"]);
        assert!(g.task("c").unwrap().depends_on.is_empty());
    }

    #[test]
    fn paste_gives_fresh_ids_and_keeps_inner_edges_only() {
        let mut g = graph(THREE);
        let clip = g.copy(&BTreeSet::from(["b".to_owned(), "c".to_owned()]));
        let new = g.paste(&clip, Pt { x: 20.0, y: 20.0 });
        assert_eq!(new, ["b_1", "c_1"]);
        assert!(g.task("b_1").unwrap().depends_on.is_empty(), "a is outside the clip");
        assert_eq!(g.task("c_1").unwrap().depends_on, ["b_1"]);
        assert_eq!(g.pos["c_1"].x, g.pos["c"].x + 20.0);
    }

    #[test]
    fn new_tasks_get_fresh_ids_and_yaml_round_trips() {
        let mut g = graph(THREE);
        let id = g.add_task("shell", Pt { x: 5.0, y: 5.0 });
        assert_eq!(id, "shell_1");
        assert_eq!(g.add_task("shell", Pt::default()), "shell_2");
        let text = to_yaml(&g.spec);
        assert_eq!(from_yaml(&text).unwrap(), g.spec, "YAML → graph → YAML loses nothing:\n{text}");
        assert_eq!(to_yaml(&from_yaml(&text).unwrap()), text);
        model::workflow::validate(g.spec.clone()).expect("the new tasks are valid as they are");
    }

    #[test]
    fn a_rich_document_round_trips() {
        let text = r#"
name: rich
description: every field
tags: [etl, daily]
owner: data@example.com
params: {region: eu, day: {default: "2026-01-01", description: the day}, must: {required: true}}
max_active_runs: 2
failure_strategy: stop
schedule: {cron: "0 0 2 ? * MON-FRI", dialect: quartz, timezone: Asia/Shanghai, catchup: all, max_catchup: 5, overlap: skip}
tasks:
  - id: extract
    kind: shell
    config: {script: "echo $ORRERY_PARAM_DAY", shell: bash}
    retries: {count: 3, backoff: fixed, delay: 30s, jitter: false}
    timeout: {after: 10m, on_timeout: warn}
    priority: 5
    pool: etl
    region: eu-west
    labels: {arch: arm64}
    resources: {cpu: 0.5, memory: 512Mi, gpu: 1}
    params: {dt: "$[yyyyMMdd-1]"}
  - {id: load, kind: noop, depends_on: [extract], trigger_rule: all_done, retries: 2, timeout: 90}
"#;
        let spec = from_yaml(text).unwrap();
        let again = from_yaml(&to_yaml(&spec)).unwrap();
        assert_eq!(again, spec);
    }

    #[test]
    fn undo_and_redo_walk_the_history() {
        let mut g = graph(THREE);
        let mut h = History::default();
        h.record(g.clone());
        g.add_task("noop", Pt::default());
        let after = g.clone();
        let back = h.undo(g).unwrap();
        assert_eq!(back.ids(), ["a", "b", "c"]);
        assert!(h.can_redo());
        let again = h.redo(back).unwrap();
        assert_eq!(again, after);
        assert!(!h.can_redo());
    }

    #[test]
    fn missing_positions_are_placed_beside_their_upstream_tasks() {
        let mut g = graph(THREE);
        let mut spec = g.spec.clone();
        let mut d = new_task("d", "noop");
        d.depends_on = vec!["c".into()];
        spec.tasks.push(d);
        g = Graph::new(spec, g.pos.clone());
        assert!(g.pos["d"].x > g.pos["c"].x);
        assert_eq!(g.hit(Pt { x: g.pos["d"].x + 1.0, y: g.pos["d"].y + 1.0 }).as_deref(), Some("d"));
        let all = g.within(Pt { x: -1e6, y: -1e6 }, Pt { x: 1e6, y: 1e6 });
        assert_eq!(all.len(), 4);
    }
}
